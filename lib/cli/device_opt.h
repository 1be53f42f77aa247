/* The --device option every tool takes: "cpu", "cuda" or "cuda:N", and the
 * default when it is absent (the first GPU when one is present, else the
 * CPU). */
#ifndef PSPKD_DEVICE_OPT_H
#define PSPKD_DEVICE_OPT_H

#include <stddef.h>
#include "core/ctx.h"
#include "core/err.h"

/* 1 when this build has CUDA and at least one GPU is visible, else 0. */
int pk_cuda_available(void);

/* Sets o->device and o->device_index from s (NULL, "" or "auto": the
 * default above); other fields of o are left alone. Errors: PK_EINVAL for
 * a malformed value (a usage error), PK_ENOTFOUND for a device this build
 * or this machine does not have (a runtime error). */
int pk_device_parse(const char *s, pk_ctx_opts *o, pk_err *e);

/* For a tool: pk_device_parse, and on failure the tool's one line on
 * stderr, "tool: message". Returns PK_GO_ON (tool_opts.h), or the exit
 * status: 2 for a malformed value (a usage error), 1 for a device this
 * build or machine lacks. */
int pk_device_opt(const char *tool, const char *s, pk_ctx_opts *o);

/* "cpu" or "cuda:N" into buf (for logs and --help defaults). */
void pk_device_format(const pk_ctx_opts *o, char *buf, size_t cap);

#endif
