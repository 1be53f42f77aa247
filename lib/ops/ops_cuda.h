/* The CUDA twins of the ops in ops.h (lib/ops/NAME_cuda.cu), same arguments
 * and semantics, every pointer a device pointer of c's device (the host
 * arrays of pointers and sizes of concat excepted). The public ops in
 * lib/ops/NAME.c forward here when pk_ctx_device(c) == PK_DEV_CUDA, so
 * callers never name these directly; tests and benchmarks use the status
 * and memory functions at the end. Declared in every build, defined only
 * in PSPKD_CUDA builds (the dispatch macros below reference them only
 * there).
 *
 * Errors: ops that return void cannot report a failed CUDA, cuDNN or
 * cuBLAS call, so the first failure ("file:line: call: reason") is kept
 * in the context and handed over by the next op that returns a status
 * (the convolutions) or by pk_cuda_status. */
#ifndef PSPKD_OPS_CUDA_H
#define PSPKD_OPS_CUDA_H

#ifdef __cplusplus
extern "C" {
#endif
#include "ops/ops.h"

/* The first statement of each public op in lib/NAME.c: a CUDA context's
 * call goes to the twin; in a build without CUDA it expands to nothing. */
#ifdef PSPKD_CUDA
#define PK_ON_CUDA(c, call)                                                              \
    do {                                                                                 \
        if (pk_ctx_device(c) == PK_DEV_CUDA) {                                           \
            call;                                                                        \
            return;                                                                      \
        }                                                                                \
    } while (0)
#define PK_ON_CUDA_RETURN(c, call)                                                       \
    do {                                                                                 \
        if (pk_ctx_device(c) == PK_DEV_CUDA)                                             \
            return call;                                                                 \
    } while (0)
#else
#define PK_ON_CUDA(c, call) ((void)0)
#define PK_ON_CUDA_RETURN(c, call) ((void)0)
#endif

int pk_cuda_conv2d_forward(pk_ctx *c, float *y, const float *x, const float *w,
                           const float *b, const pk_conv_desc *d, pk_err *e);
int pk_cuda_conv2d_backward(pk_ctx *c, float *dx, float *dw, float *db, const float *dy,
                            const float *x, const float *w, const pk_conv_desc *d, pk_err *e);

void pk_cuda_f32_to_bf16(pk_ctx *c, uint16_t *dst, const float *src, size_t n);
void pk_cuda_f32_from_bf16(pk_ctx *c, float *dst, const uint16_t *src, size_t n);

pk_bn_train_fn pk_cuda_bn_forward_train;
pk_bn_eval_fn pk_cuda_bn_forward_eval;
void pk_cuda_bn_backward(pk_ctx *c, float *dx, float *dgamma, float *dbeta, const float *dy,
                         const float *x, const float *save_mean, const float *save_rstd,
                         const float *gamma, long P, int C);

void pk_cuda_relu_forward(pk_ctx *c, float *y, const float *x, size_t n);
void pk_cuda_relu_backward(pk_ctx *c, float *dx, const float *dy, const float *y, size_t n);
void pk_cuda_add_forward(pk_ctx *c, float *y, const float *a, const float *b, size_t n);
void pk_cuda_accumulate(pk_ctx *c, float *y, const float *x, size_t n);
void pk_cuda_concat_forward(pk_ctx *c, float *y, const float *const *xs, const int *cs,
                            int k, long P);
void pk_cuda_concat_backward(pk_ctx *c, float *const *dxs, const float *dy, const int *cs,
                             int k, long P);
void pk_cuda_dropout2d_forward(pk_ctx *c, float *y, uint8_t *keep, const float *x, int n,
                               long hw, int ch, float p, uint64_t seed, long first);
void pk_cuda_dropout2d_backward(pk_ctx *c, float *dx, const float *dy, const uint8_t *keep,
                                int n, long hw, int ch, float p);

void pk_cuda_maxpool_forward(pk_ctx *c, float *y, int32_t *argmax, const float *x, int n,
                             int h, int w, int ch, int k, int stride, int pad);
void pk_cuda_maxpool_backward(pk_ctx *c, float *dx, const float *dy, const int32_t *argmax,
                              int n, int h, int w, int ch, int ho, int wo);
void pk_cuda_adapool_forward(pk_ctx *c, float *y, const float *x, int n, int h, int w,
                             int ch, int bins);
void pk_cuda_adapool_backward(pk_ctx *c, float *dx, const float *dy, int n, int h, int w,
                              int ch, int bins);

void pk_cuda_resize_forward(pk_ctx *c, float *y, const float *x, int n, int h, int w, int ch,
                            int ho, int wo);
void pk_cuda_resize_backward(pk_ctx *c, float *dx, const float *dy, int n, int h, int w,
                             int ch, int ho, int wo);

/* The losses wait for the device (they return the value to the host). */
float pk_cuda_ce_loss(pk_ctx *c, float *dlogits, const float *logits, const uint8_t *labels,
                      long P, int K, int ignore, float weight);
float pk_cuda_kd_loss(pk_ctx *c, float *ds, const float *s, const float *t,
                      const uint8_t *mask, long P, int K, float T, float weight);
float pk_cuda_smoothl1_loss(pk_ctx *c, float *ds, const float *s, const float *t,
                            const uint8_t *mask, long P, int K, float weight);
float pk_cuda_mse_loss(pk_ctx *c, float *ds, const float *s, const float *t,
                       const uint8_t *mask, long P, int K, float weight);

void pk_cuda_sgd_step(pk_ctx *c, float *param, float *momentum_buf, const float *grad,
                      const pk_param_group *groups, int ngroups, float lr, float momentum,
                      float weight_decay);

/* Which library a 1x1 stride-1 convolution may use: both timed, the
 * faster kept (AUTO, the default), or one forced (the tests check each).
 * Affects shapes first seen after the call. PK_ENOTFOUND when cuBLAS is
 * asked for but libcublas could not be loaded; PK_EINVAL for a CPU
 * context or an unknown value. */
enum { PK_CUDA_CONV_AUTO = 0, PK_CUDA_CONV_CUDNN = 1, PK_CUDA_CONV_CUBLAS = 2 };
int pk_cuda_set_conv_engine(pk_ctx *c, int engine);

/* PK_OK, or the first failure kept since the last call (copied into e and
 * cleared). Waits for queued work first, so asynchronous kernel faults are
 * seen too. A CPU context always reports PK_OK. */
int pk_cuda_status(pk_ctx *c, pk_err *e);

/* Bytes held through pk_dev_alloc and the context's workspace: now, and
 * the most at any time since creation or the last reset. */
void pk_cuda_mem_stats(pk_ctx *c, size_t *current, size_t *peak);
void pk_cuda_mem_reset_peak(pk_ctx *c);

#ifdef __cplusplus
}
#endif

#endif
