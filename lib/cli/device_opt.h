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

/* --precision fp32|bf16 (ctx.h's pk_precision) into *precision; anything
 * else is PK_EINVAL naming the two. */
int pk_precision_parse(const char *s, int *precision, pk_err *e);
/* For a tool: PK_GO_ON, or the usage error's exit status (2) after its
 * one line. */
int pk_precision_opt(const char *tool, const char *s, int *precision);
/* The option's --help line. */
#define PK_PRECISION_HELP                                                                  \
    "      --precision P      convolution math: fp32, or bf16 (bf16 inputs and weights,\n" \
    "                         fp32 accumulation, master weights, BatchNorm, losses; fp32)\n"

/* "cpu" or "cuda:N" into buf (for logs and --help defaults). */
void pk_device_format(const pk_ctx_opts *o, char *buf, size_t cap);

#endif
