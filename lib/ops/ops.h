/* The op library: forward/backward pairs on NHWC float32 activations.
 *
 * Conventions (llm.c style):
 *  - arguments: context, outputs, saved values, inputs and parameters, dims;
 *  - parameter gradients ACCUMULATE (+=); activation gradients are ASSIGNED;
 *  - loss functions ACCUMULATE weight * d(loss)/d(input) into the gradient
 *    buffer (so CE and KD can share one dlogits) and return the unweighted
 *    loss value;
 *  - "P" is a pixel count N*H*W; an NHWC tensor with C channels is a [P, C]
 *    row-major matrix;
 *  - convolution weights are OHWI (co, kh, kw, ci) float32 in memory;
 *    PyTorch's OIHW appears only at the file boundary (see checkpoint.h).
 * The CPU implementation NAME.c is the specification; its CUDA twin
 * NAME_cuda.cu beside it keeps the same signatures (ops_cuda.h). */
#ifndef PSPKD_OPS_H
#define PSPKD_OPS_H

#include <stddef.h>
#include <stdint.h>
#include "core/ctx.h"

/* ---- convolution (oneDNN on the CPU) ---------------------------------- */
typedef struct pk_conv_desc {
    int n, h, w, ci;            /* input NHWC */
    int co, k, stride, pad, dil; /* square kernel k x k */
    int bias;                   /* 1: y += b[co] */
    int ho, wo;                 /* output size, filled by pk_conv_desc_make */
} pk_conv_desc;

/* PyTorch's rule: floor((in + 2*pad - dil*(k-1) - 1) / stride) + 1. */
int pk_conv_out_size(int in, int k, int stride, int pad, int dil);
pk_conv_desc pk_conv_desc_make(int n, int h, int w, int ci, int co, int k, int stride,
                               int pad, int dil, int bias);
double pk_conv_flops(const pk_conv_desc *d); /* 2*MACs of the forward */

/* y [n,ho,wo,co] = conv(x [n,h,w,ci], w [co,k,k,ci]) (+ b[co]). */
int pk_conv2d_forward(pk_ctx *c, float *y, const float *x, const float *w, const float *b,
                      const pk_conv_desc *d, pk_err *e);
/* dx (assigned; NULL to skip), dw += , db += (NULL when no bias). */
int pk_conv2d_backward(pk_ctx *c, float *dx, float *dw, float *db, const float *dy,
                       const float *x, const float *w, const pk_conv_desc *d, pk_err *e);
/* The same two with xq, x rounded to bf16, which the caller already holds
 * (the bf16 precision's kept activations, pspnet_plan.c), or NULL: a pass
 * that reads x in bf16 takes xq instead of converting x. The backward then
 * needs x itself only where pk_conv_backward_needs_x says so (else x may be
 * NULL). On CUDA, xq is ignored. */
int pk_conv2d_forward_xq(pk_ctx *c, float *y, const float *x, const uint16_t *xq,
                         const float *w, const float *b, const pk_conv_desc *d, pk_err *e);
int pk_conv2d_backward_xq(pk_ctx *c, float *dx, float *dw, float *db, const float *dy,
                          const float *x, const uint16_t *xq, const float *w,
                          const pk_conv_desc *d, pk_err *e);
/* Whether pk_conv2d_backward_xq with a non-NULL xq reads x for the weight
 * gradient (0: xq is enough). */
int pk_conv_backward_needs_x(pk_ctx *c, const pk_conv_desc *d);
/* 1 when this shape runs on the CPU by Winograd F(4x4, 3x3) (conv_wino.c:
 * 3x3, stride 1, undilated, pad 1, ci*co >= 256*256, maps big enough unless
 * pk_ctx_opts.conv_algo is PK_CONV_WINOGRAD, never with PK_CONV_DIRECT),
 * 0 when by oneDNN's direct kernel, -1 with e set for a bad shape. */
int pk_conv2d_winograd(pk_ctx *c, const pk_conv_desc *d, pk_err *e);
/* What an inference forward folds into a convolution that has no bias of
 * its own: y = conv(x, w) * scale[o] + shift[o], plus res (a tensor of y's
 * shape, which may be y itself) when res is not NULL, then max(., 0) when
 * relu. An eval BN (pk_bn_eval_fold), and the residual add and ReLU after
 * it, so that none of them makes a pass of its own over y. */
typedef struct pk_conv_epilogue {
    const float *scale, *shift; /* [co] */
    const void *res;            /* float, or uint16_t bf16 when res_bf16 */
    int relu;
    int res_bf16, y_bf16;       /* res read, y written in bf16 (the bf16 precision) */
} pk_conv_epilogue;
/* The forward with ep folded in, as pk_conv2d_forward_xq (d->bias must be
 * 0; y is a float or, with ep->y_bf16, a uint16_t tensor; x may be NULL
 * where pk_conv_reads_xq_only says xq is enough). On the CPU only:
 * oneDNN's direct kernels take the scale in their weights' reorder, the
 * shift as bias and the rest as post-ops; Winograd applies it in its output
 * transform. */
int pk_conv2d_forward_fused(pk_ctx *c, void *y, const float *x, const uint16_t *xq,
                            const float *w, const pk_conv_epilogue *ep, const pk_conv_desc *d,
                            pk_err *e);
/* 1 when the forward of d reads its input only in bf16, so that xq alone
 * will do (the bf16 precision's direct kernels on the CPU), else 0. */
int pk_conv_reads_xq_only(pk_ctx *c, const pk_conv_desc *d);
/* A train step's forward and backward of the same weights, in the bf16
 * precision on the CPU: between pk_conv_keep_begin and pk_conv_keep_end,
 * each Winograd forward keeps its weights' transform (4x the weights, in
 * bf16: 8 bytes per weight, in the context, reused by later steps) and the
 * backward-data of the same weights takes it instead of transforming them
 * again. The weights must not change in between. A no-op in other
 * precisions and on CUDA. */
void pk_conv_keep_begin(pk_ctx *c);
void pk_conv_keep_end(pk_ctx *c);
/* Bytes the context holds for kept transforms; pk_conv_keep_release frees
 * them all (pk_model_destroy calls it; a later session allocates again). */
size_t pk_conv_kept_bytes(pk_ctx *c);
void pk_conv_keep_release(pk_ctx *c);

/* PK_OK when oneDNN can run bf16 convolutions on this CPU (natively with
 * avx512_bf16, emulated on other AVX-512 CPUs), else PK_EBACKEND with
 * the reason in e. The bf16 precision (ctx.h) needs it. */
int pk_conv_bf16_supported(pk_ctx *c, pk_err *e);

/* ---- bf16 (the bf16 precision's convolution inputs, kept activations) --- */
/* dst[i] = src[i] rounded to bf16 (nearest even; NaN stays NaN). */
void pk_f32_to_bf16(pk_ctx *c, uint16_t *dst, const float *src, size_t n);
float pk_bf16_to_f32(uint16_t h);
/* dst[i] = src[i] widened to fp32 (exact). */
void pk_f32_from_bf16(pk_ctx *c, float *dst, const uint16_t *src, size_t n);
/* The same on [P, C] tensors relative to a per-channel mean: dst = bf16 of
 * (src - mean), and back, dst = mean + src. Keeps x - mean to bf16's
 * relative precision where x itself rounded would lose it. */
void pk_f32_to_bf16_centered(pk_ctx *c, uint16_t *dst, const float *src, const float *mean,
                             long P, int C);
void pk_f32_from_bf16_centered(pk_ctx *c, float *dst, const uint16_t *src, const float *mean,
                               long P, int C);

/* ---- batch normalisation over [P, C] ----------------------------------- */
/* The two forwards' signatures are types: the fused variants below and the
 * CUDA twins (ops_cuda.h) are declared with them. */
typedef void pk_bn_train_fn(pk_ctx *c, float *y, float *save_mean, float *save_rstd,
                            const float *x, const float *gamma, const float *beta,
                            float *running_mean, float *running_var, long P, int C,
                            float momentum, float eps);
typedef void pk_bn_eval_fn(pk_ctx *c, float *y, const float *x, const float *gamma,
                           const float *beta, const float *running_mean,
                           const float *running_var, long P, int C, float eps);
/* Training: batch mean / biased variance normalise; saves mean and
 * rstd = 1/sqrt(var+eps); running_mean/var updated in place with momentum
 * (new = (1-m)*old + m*batch) using the unbiased variance var*P/(P-1). */
pk_bn_train_fn pk_bn_forward_train;
/* Evaluation: the running statistics normalise. */
pk_bn_eval_fn pk_bn_forward_eval;
/* The same followed by ReLU in one pass over the data (y = max(bn(x), 0)),
 * for a BN whose only consumer is a ReLU: the model runs these fused. */
pk_bn_train_fn pk_bn_relu_forward_train;
pk_bn_eval_fn pk_bn_relu_forward_eval;
/* The training forward (with the ReLU when relu) that also writes, where
 * they are not NULL, the bf16 copies the bf16 precision keeps for the
 * backward: xc = x - the batch mean, yq = y, rounded as
 * pk_f32_to_bf16_centered and pk_f32_to_bf16 round them, in the same pass
 * over x (on the CPU; elsewhere those ops after the forward). */
void pk_bn_forward_train_q(pk_ctx *c, float *y, float *save_mean, float *save_rstd,
                           const float *x, const float *gamma, const float *beta,
                           float *running_mean, float *running_var, long P, int C,
                           float momentum, float eps, int relu, uint16_t *xc, uint16_t *yq);
/* The eval BN as y = x * scale + shift, per channel, as pk_bn_forward_eval
 * computes them (the epilogue a convolution folds in). */
void pk_bn_eval_fold(float *scale, float *shift, const float *gamma, const float *beta,
                     const float *running_mean, const float *running_var, int C, float eps);
/* dx assigned (may alias dy); dgamma, dbeta accumulate. */
void pk_bn_backward(pk_ctx *c, float *dx, float *dgamma, float *dbeta, const float *dy,
                    const float *x, const float *save_mean, const float *save_rstd,
                    const float *gamma, long P, int C);
/* The same as pk_relu_backward(dy, relu_y) and then pk_bn_backward, in one
 * pass, for a BN whose only consumer is a ReLU with output relu_y and
 * output gradient dy; dx may alias dy or relu_y. Bitwise the same. On CUDA
 * it runs those two ops, the ReLU's gradient in dx, which must be given. */
void pk_bn_relu_backward(pk_ctx *c, float *dx, float *dgamma, float *dbeta, const float *dy,
                         const float *relu_y, const float *x, const float *save_mean,
                         const float *save_rstd, const float *gamma, long P, int C);
/* pk_bn_backward (relu_y NULL) or pk_bn_relu_backward with the BN's input
 * given as the bf16 precision keeps it, xc = bf16 of x - save_mean
 * (pk_f32_to_bf16_centered), read as it is: no fp32 copy of x. CPU only
 * (PK_EINVAL elsewhere). */
int pk_bn_backward_xc(pk_ctx *c, float *dx, float *dgamma, float *dbeta, const float *dy,
                      const float *relu_y, const uint16_t *xc, const float *save_mean,
                      const float *save_rstd, const float *gamma, long P, int C, pk_err *e);

/* ---- elementwise ------------------------------------------------------- */
void pk_relu_forward(pk_ctx *c, float *y, const float *x, size_t n); /* y may == x */
/* dx = dy * (y > 0); dx may == dy. */
void pk_relu_backward(pk_ctx *c, float *dx, const float *dy, const float *y, size_t n);
void pk_add_forward(pk_ctx *c, float *y, const float *a, const float *b, size_t n);
/* y = max(a + b, 0): the residual add and its ReLU in one pass; y may == a. */
void pk_add_relu_forward(pk_ctx *c, float *y, const float *a, const float *b, size_t n);
void pk_accumulate(pk_ctx *c, float *y, const float *x, size_t n); /* y += x */

/* ---- pooling ----------------------------------------------------------- */
/* PyTorch's (ceil_mode=False) output size. */
int pk_pool_out_size(int in, int k, int stride, int pad);
/* Max pool k x k; argmax holds the flat input index (h*w*c plane) per output. */
void pk_maxpool_forward(pk_ctx *c, float *y, int32_t *argmax, const float *x, int n, int h,
                        int w, int ch, int k, int stride, int pad);
void pk_maxpool_backward(pk_ctx *c, float *dx, const float *dy, const int32_t *argmax,
                         int n, int h, int w, int ch, int ho, int wo);
/* Adaptive average pool to bins x bins with PyTorch's edges
 * start = floor(i*in/bins), end = ceil((i+1)*in/bins). */
void pk_adapool_forward(pk_ctx *c, float *y, const float *x, int n, int h, int w, int ch,
                        int bins);
void pk_adapool_backward(pk_ctx *c, float *dx, const float *dy, int n, int h, int w, int ch,
                         int bins);

/* ---- bilinear resize, align_corners=True, any sizes -------------------- */
void pk_resize_forward(pk_ctx *c, float *y, const float *x, int n, int h, int w, int ch,
                       int ho, int wo);
void pk_resize_backward(pk_ctx *c, float *dx, const float *dy, int n, int h, int w, int ch,
                        int ho, int wo);

/* ---- channel concatenation: y [P, sum cs] = [x0 | x1 | ...] ------------ */
void pk_concat_forward(pk_ctx *c, float *y, const float *const *xs, const int *cs, int k,
                       long P);
void pk_concat_backward(pk_ctx *c, float *const *dxs, const float *dy, const int *cs, int k,
                        long P);

/* ---- Dropout2d: zero whole channels with prob p, scale the rest 1/(1-p).
 * keep[n*ch] is drawn from (seed, n*ch index) by pk_hash64, so any backend
 * and thread count gives the same mask. */
void pk_dropout2d_forward(pk_ctx *c, float *y, uint8_t *keep, const float *x, int n,
                          long hw, int ch, float p, uint64_t seed);
/* The same for samples first .. first+n-1 of a larger batch: their masks
 * are those the whole batch's call gives them (data-parallel ranks). */
void pk_dropout2d_forward_at(pk_ctx *c, float *y, uint8_t *keep, const float *x, int n,
                             long hw, int ch, float p, uint64_t seed, long first);
void pk_dropout2d_backward(pk_ctx *c, float *dx, const float *dy, const uint8_t *keep, int n,
                           long hw, int ch, float p);

/* ---- losses (float per pixel, double over pixels; convention above) ---- */
/* K is at most PK_LOSS_KMAX, which pk_model_create enforces (labels are
 * uint8); CE and KD assert it (a NaN loss where assertions are off). */
#define PK_LOSS_KMAX 256
/* Softmax cross-entropy over [P, K] logits, labels uint8 (ignore -> skipped),
 * mean over valid pixels; no valid pixel: returns 0, adds nothing. */
float pk_ce_loss(pk_ctx *c, float *dlogits, const float *logits, const uint8_t *labels,
                 long P, int K, int ignore, float weight);
/* T^2 * mean over valid pixels of sum_k pt*(log pt - log ps), pt = softmax(t/T),
 * ps = softmax(s/T); teacher constant; mask NULL = all valid, else mask[p]!=0. */
float pk_kd_loss(pk_ctx *c, float *ds, const float *s, const float *t, const uint8_t *mask,
                 long P, int K, float T, float weight);
/* Mean over valid elements (valid pixels * K); SmoothL1 with beta = 1. */
float pk_smoothl1_loss(pk_ctx *c, float *ds, const float *s, const float *t,
                       const uint8_t *mask, long P, int K, float weight);
float pk_mse_loss(pk_ctx *c, float *ds, const float *s, const float *t, const uint8_t *mask,
                  long P, int K, float weight);

/* One output's part of the training loss step: the stride-8 logits
 * [n, h8, w8, K] upsampled to [n, h, w, K] (bilinear, align_corners), their
 * CE and, when `distill` is set, a distillation term against the
 * full-resolution teacher logits; *ce and *distill get the unweighted
 * losses and dfull [n, h, w, K] is ASSIGNED the weighted gradient. The
 * same as pk_resize_forward into `full`, then pk_ce_loss (its gradient
 * skipped when ce_weight is 0) and pk_kd_loss / pk_smoothl1_loss /
 * pk_mse_loss into a zeroed dfull; on the CPU in one pass that keeps each
 * pixel's logits and gradient in registers (loss_branch.c), where the
 * separate ops make six passes over full-resolution tensors. `full` (n h w K
 * floats) is used only on CUDA, which runs the separate ops. */
typedef enum { PK_DISTILL_NONE, PK_DISTILL_KL, PK_DISTILL_SMOOTHL1, PK_DISTILL_MSE } pk_distill;
typedef struct pk_branch_loss_args {
    const float *logits;
    int n, h8, w8, K, h, w;
    const uint8_t *labels;
    int ignore;
    float ce_weight;
    const float *teacher;  /* [n, h, w, K]; NULL: no distillation term */
    const uint8_t *valid;  /* its pixels (NULL: all) */
    pk_distill distill;
    float T, distill_weight;
} pk_branch_loss_args;
void pk_branch_loss(pk_ctx *c, float *dfull, float *full, const pk_branch_loss_args *a, float *ce,
                    float *distill);

/* ---- optimiser --------------------------------------------------------- */
/* torch.optim.SGD (dampening 0, no nesterov) on one buffer, per-group LR:
 *   d = g + wd*p;  buf = momentum*buf + d;  p -= lr*lr_mult*buf
 * (buf starts at zero, which equals PyTorch's first-step buf = d). */
typedef struct pk_param_group {
    size_t offset, count;
    float lr_mult;
} pk_param_group;
void pk_sgd_step(pk_ctx *c, float *param, float *momentum_buf, const float *grad,
                 const pk_param_group *groups, int ngroups, float lr, float momentum,
                 float weight_decay);
/* semseg's poly_learning_rate: base * (1 - it/max_it)^power. */
float pk_poly_lr(float base, long it, long max_it, float power);

#endif
