/* Parsing of --device cpu|cuda[:N] and the default device. */
#include "cli/device_opt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/tool_opts.h"
#ifdef PSPKD_CUDA
#include "ops/ctx_cuda_impl.h"
#endif

#define PK_MAX_CUDA_INDEX 63

static int cuda_count(void)
{
#ifdef PSPKD_CUDA
    return pk_cuda_device_count();
#else
    return 0;
#endif
}

int pk_cuda_available(void) { return cuda_count() > 0; }

int pk_device_parse(const char *s, pk_ctx_opts *o, pk_err *e)
{
    if (!s || !*s || !strcmp(s, "auto")) {
        o->device = pk_cuda_available() ? PK_DEV_CUDA : PK_DEV_CPU;
        o->device_index = 0;
        return PK_OK;
    }
    if (!strcmp(s, "cpu")) {
        o->device = PK_DEV_CPU;
        o->device_index = 0;
        return PK_OK;
    }
    long idx = 0;
    if (strncmp(s, "cuda", 4) || (s[4] && s[4] != ':'))
        return pk_fail(e, PK_EINVAL, "unknown device '%s' (cpu, cuda or cuda:N)", s);
    if (s[4] == ':') {
        char *end;
        errno = 0;
        idx = strtol(s + 5, &end, 10);
        if (errno || end == s + 5 || *end || s[5] == '-' || s[5] == '+' || idx < 0 ||
            idx > PK_MAX_CUDA_INDEX)
            return pk_fail(e, PK_EINVAL, "bad CUDA device '%s' (cuda:N, N in 0..%d)", s,
                           PK_MAX_CUDA_INDEX);
    }
#ifndef PSPKD_CUDA
    return pk_fail(e, PK_ENOTFOUND,
                   "device %s: this build has no CUDA (rebuild with make CUDA=1)", s);
#else
    int n = cuda_count();
    if (n <= 0)
        return pk_fail(e, PK_ENOTFOUND, "device %s: no CUDA device found", s);
    if (idx >= n)
        return pk_fail(e, PK_ENOTFOUND, "device %s: only %d CUDA device%s (cuda:0..%d)", s, n,
                       n == 1 ? "" : "s", n - 1);
    o->device = PK_DEV_CUDA;
    o->device_index = (int)idx;
    return PK_OK;
#endif
}

int pk_device_opt(const char *tool, const char *s, pk_ctx_opts *o)
{
    pk_err e = {0, ""};
    int rc = pk_device_parse(s, o, &e);
    if (rc == PK_EINVAL)
        return pk_usage_error(tool, e.msg);
    if (rc) {
        fprintf(stderr, "%s: %s\n", tool, e.msg);
        return 1;
    }
    return PK_GO_ON;
}

int pk_precision_parse(const char *s, int *precision, pk_err *e)
{
    if (s && !strcmp(s, "fp32"))
        *precision = PK_PREC_FP32;
    else if (s && !strcmp(s, "bf16"))
        *precision = PK_PREC_BF16;
    else
        return pk_fail(e, PK_EINVAL, "unknown precision '%s' (--precision takes fp32 or bf16)",
                       s ? s : "");
    return PK_OK;
}

int pk_precision_opt(const char *tool, const char *s, int *precision)
{
    pk_err e = {0, ""};
    return pk_precision_parse(s, precision, &e) == PK_OK ? PK_GO_ON : pk_usage_error(tool, e.msg);
}

void pk_device_format(const pk_ctx_opts *o, char *buf, size_t cap)
{
    if (o->device == PK_DEV_CUDA)
        snprintf(buf, cap, "cuda:%d", o->device_index);
    else
        snprintf(buf, cap, "cpu");
}
