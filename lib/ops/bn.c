/* Batch normalisation over NHWC activations seen as [P, C].
 *
 * Work is split by channel: each thread owns a contiguous range of channels
 * (cut at multiples of 16 floats so threads do not share cache lines),
 * reduces them over all P rows and then writes its own channels of the
 * output. Every per-channel sum is therefore taken in the same order
 * whatever the thread count (results are bitwise reproducible), needs no
 * shared temporary, and y may alias x, dx may alias dy. Sums are in double,
 * and the forward statistics are shifted by the channel's first value, so
 * P in the hundreds of thousands with a large mean stays accurate. */
#include "core/ctx_impl.h"
#include "core/half.h"
#include "ops/bn_split_impl.h"
#include "ops/ops.h"
#include "ops/ops_cuda.h"

#include <math.h>
#include <omp.h>

/* One op's arguments, for the per-block kernels below. */
typedef struct bn_args {
    float *y, *save_mean, *save_rstd, *running_mean, *running_var; /* forward outputs */
    float *dx, *dgamma, *dbeta;                                    /* backward outputs */
    const float *x, *gamma, *beta;                                 /* inputs */
    const float *run_mean, *run_var;                               /* eval's statistics */
    const float *dy, *relu_y, *mean, *rstd;                        /* backward's */
    const uint16_t *xq; /* backward: x as bf16 of x - mean (pk_bn_backward_xc), or NULL */
    uint16_t *xc, *yq; /* training forward: bf16 of x - mean and of y, or NULL */
    long P;
    int C;
    float momentum, eps;
    int relu;
} bn_args;

/* Runs block(a, b0, nb) over channels [b0, b0 + nb), blocks of at most
 * BN_BLOCK, each thread of the team on its own channel range. */
static void for_channel_blocks(pk_ctx *c, const bn_args *a,
                               void (*block)(const bn_args *a, int b0, int nb))
{
    if (a->P <= 0 || a->C <= 0)
        return;
#pragma omp parallel num_threads(pk_bn_team_size(c, a->P, a->C))
    {
        int c0, c1;
        pk_bn_channel_range(a->C, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
        for (int b0 = c0; b0 < c1; b0 += BN_BLOCK)
            block(a, b0, c1 - b0 < BN_BLOCK ? c1 - b0 : BN_BLOCK);
    }
}

/* ReLU as pk_relu_forward writes it (NaN -> 0). */
static inline float relu_if(float v, int relu) { return relu && !(v > 0.0f) ? 0.0f : v; }

/* forward_train_block's output pass, y = (x - mean) * scale + beta as
 * PyTorch's training kernel (folding the mean into the offset cancels badly
 * when |mean| >> std), and where asked the bf16 copies of x - mean and y
 * (as pk_f32_to_bf16_centered and pk_f32_to_bf16 round them). */
static void forward_train_output(const bn_args *a, int b0, int nb, const float *mean_f,
                                 const float *scale, const float *bias)
{
    int C = a->C, relu = a->relu;
    for (long p = 0; p < a->P; p++) {
        size_t at = (size_t)p * C + b0;
        const float *xr = a->x + at;
        float *yr = a->y + at;
        float xm[BN_BLOCK], yv[BN_BLOCK];
#pragma omp simd
        for (int j = 0; j < nb; j++) {
            xm[j] = xr[j] - mean_f[j];
            yv[j] = relu_if(xm[j] * scale[j] + bias[j], relu);
            yr[j] = yv[j];
        }
        if (a->xc) {
#pragma omp simd
            for (int j = 0; j < nb; j++)
                a->xc[at + j] = pk_f32_to_bf16_one(xm[j]);
        }
        if (a->yq) {
#pragma omp simd
            for (int j = 0; j < nb; j++)
                a->yq[at + j] = pk_f32_to_bf16_one(yv[j]);
        }
    }
}

static void forward_train_block(const bn_args *a, int b0, int nb)
{
    const float *x = a->x;
    long P = a->P;
    int C = a->C;
    float momentum = a->momentum;
    double s[BN_BLOCK] = {0}, q[BN_BLOCK] = {0}, shift[BN_BLOCK];
    float scale[BN_BLOCK], mean_f[BN_BLOCK], bias[BN_BLOCK];
    for (int j = 0; j < nb; j++)
        shift[j] = x[b0 + j];
    for (long p = 0; p < P; p++) {
        const float *row = x + p * C + b0;
#pragma omp simd
        for (int j = 0; j < nb; j++) {
            double v = (double)row[j] - shift[j];
            s[j] += v;
            q[j] += v * v;
        }
    }
    for (int j = 0; j < nb; j++) {
        int ch = b0 + j;
        double dm = s[j] / (double)P;
        double var = q[j] / (double)P - dm * dm;
        if (var < 0)
            var = 0;
        double mean = shift[j] + dm;
        float rstd = (float)(1.0 / sqrt(var + (double)a->eps));
        a->save_mean[ch] = (float)mean;
        a->save_rstd[ch] = rstd;
        /* PyTorch's update; the running variance is unbiased. */
        double unbiased = P > 1 ? var * (double)P / (double)(P - 1) : var;
        a->running_mean[ch] = (1.0f - momentum) * a->running_mean[ch] + momentum * (float)mean;
        a->running_var[ch] = (1.0f - momentum) * a->running_var[ch] + momentum * (float)unbiased;
        scale[j] = a->gamma[ch] * rstd;
        mean_f[j] = (float)mean;
        bias[j] = a->beta[ch];
    }
    if (a->xc || a->yq) {
        forward_train_output(a, b0, nb, mean_f, scale, bias);
        return;
    }
    /* without the copies, the same in one loop: through forward_train_output's
     * staging arrays this pass took 14 ms where it takes 9 (R18 fp32 step) */
    for (long p = 0; p < P; p++) {
        const float *xr = x + p * C + b0;
        float *yr = a->y + p * C + b0;
#pragma omp simd
        for (int j = 0; j < nb; j++)
            yr[j] = relu_if((xr[j] - mean_f[j]) * scale[j] + bias[j], a->relu);
    }
}

static void bn_forward_train(pk_ctx *c, float *y, float *save_mean, float *save_rstd,
                             const float *x, const float *gamma, const float *beta,
                             float *running_mean, float *running_var, long P, int C,
                             float momentum, float eps, int relu, uint16_t *xc, uint16_t *yq)
{
    bn_args a = {.y = y, .save_mean = save_mean, .save_rstd = save_rstd,
                 .running_mean = running_mean, .running_var = running_var, .x = x,
                 .gamma = gamma, .beta = beta, .P = P, .C = C, .momentum = momentum,
                 .eps = eps, .relu = relu, .xc = xc, .yq = yq};
    for_channel_blocks(c, &a, forward_train_block);
}

void pk_bn_forward_train_q(pk_ctx *c, float *y, float *save_mean, float *save_rstd,
                           const float *x, const float *gamma, const float *beta,
                           float *running_mean, float *running_var, long P, int C,
                           float momentum, float eps, int relu, uint16_t *xc, uint16_t *yq)
{
    if (pk_ctx_device(c) != PK_DEV_CPU) { /* the separate passes */
        (relu ? pk_bn_relu_forward_train : pk_bn_forward_train)(
            c, y, save_mean, save_rstd, x, gamma, beta, running_mean, running_var, P, C,
            momentum, eps);
        if (xc)
            pk_f32_to_bf16_centered(c, xc, x, save_mean, P, C);
        if (yq)
            pk_f32_to_bf16(c, yq, y, (size_t)P * (size_t)C);
        return;
    }
    bn_forward_train(c, y, save_mean, save_rstd, x, gamma, beta, running_mean, running_var, P,
                     C, momentum, eps, relu, xc, yq);
}

void pk_bn_forward_train(pk_ctx *c, float *y, float *save_mean, float *save_rstd,
                         const float *x, const float *gamma, const float *beta,
                         float *running_mean, float *running_var, long P, int C,
                         float momentum, float eps)
{
    PK_ON_CUDA(c, pk_cuda_bn_forward_train(c, y, save_mean, save_rstd, x, gamma, beta,
                                           running_mean, running_var, P, C, momentum, eps));
    bn_forward_train(c, y, save_mean, save_rstd, x, gamma, beta, running_mean, running_var, P,
                     C, momentum, eps, 0, NULL, NULL);
}

void pk_bn_relu_forward_train(pk_ctx *c, float *y, float *save_mean, float *save_rstd,
                              const float *x, const float *gamma, const float *beta,
                              float *running_mean, float *running_var, long P, int C,
                              float momentum, float eps)
{
    if (pk_ctx_device(c) == PK_DEV_CUDA) { /* two kernels there */
        pk_bn_forward_train(c, y, save_mean, save_rstd, x, gamma, beta, running_mean,
                            running_var, P, C, momentum, eps);
        pk_relu_forward(c, y, y, (size_t)P * (size_t)C);
        return;
    }
    bn_forward_train(c, y, save_mean, save_rstd, x, gamma, beta, running_mean, running_var, P,
                     C, momentum, eps, 1, NULL, NULL);
}

/* The eval BN's scale and shift of channel ch. */
static inline void eval_fold_at(float *scale, float *shift, const float *gamma,
                                const float *beta, const float *mean, const float *var, int ch,
                                float eps)
{
    float rstd = (float)(1.0 / sqrt((double)var[ch] + (double)eps));
    *scale = gamma[ch] * rstd;
    *shift = beta[ch] - mean[ch] * *scale;
}

void pk_bn_eval_fold(float *scale, float *shift, const float *gamma, const float *beta,
                     const float *running_mean, const float *running_var, int C, float eps)
{
    for (int ch = 0; ch < C; ch++)
        eval_fold_at(&scale[ch], &shift[ch], gamma, beta, running_mean, running_var, ch, eps);
}

static void forward_eval_block(const bn_args *a, int b0, int nb)
{
    long P = a->P;
    int C = a->C, relu = a->relu;
    float scale[BN_BLOCK], offset[BN_BLOCK];
    for (int j = 0; j < nb; j++)
        eval_fold_at(&scale[j], &offset[j], a->gamma, a->beta, a->run_mean, a->run_var, b0 + j,
                     a->eps);
    for (long p = 0; p < P; p++) {
        const float *xr = a->x + p * C + b0;
        float *yr = a->y + p * C + b0;
#pragma omp simd
        for (int j = 0; j < nb; j++)
            yr[j] = relu_if(xr[j] * scale[j] + offset[j], relu);
    }
}

static void bn_forward_eval(pk_ctx *c, float *y, const float *x, const float *gamma,
                            const float *beta, const float *running_mean,
                            const float *running_var, long P, int C, float eps, int relu)
{
    bn_args a = {.y = y, .x = x, .gamma = gamma, .beta = beta, .run_mean = running_mean,
                 .run_var = running_var, .P = P, .C = C, .eps = eps, .relu = relu};
    for_channel_blocks(c, &a, forward_eval_block);
}

void pk_bn_forward_eval(pk_ctx *c, float *y, const float *x, const float *gamma,
                        const float *beta, const float *running_mean,
                        const float *running_var, long P, int C, float eps)
{
    PK_ON_CUDA(c, pk_cuda_bn_forward_eval(c, y, x, gamma, beta, running_mean, running_var, P,
                                          C, eps));
    bn_forward_eval(c, y, x, gamma, beta, running_mean, running_var, P, C, eps, 0);
}

void pk_bn_relu_forward_eval(pk_ctx *c, float *y, const float *x, const float *gamma,
                             const float *beta, const float *running_mean,
                             const float *running_var, long P, int C, float eps)
{
    if (pk_ctx_device(c) == PK_DEV_CUDA) {
        pk_bn_forward_eval(c, y, x, gamma, beta, running_mean, running_var, P, C, eps);
        pk_relu_forward(c, y, y, (size_t)P * (size_t)C);
        return;
    }
    bn_forward_eval(c, y, x, gamma, beta, running_mean, running_var, P, C, eps, 1);
}

/* nb values of dy from off, where the ReLU after the BN let them through
 * (relu_y > 0) as pk_relu_backward gives them, in buf; dy itself without a
 * ReLU. */
static inline const float *grad_row(const float *dy, const float *relu_y, long off, int nb,
                                    float *buf)
{
    if (!relu_y)
        return dy + off;
#pragma omp simd
    for (int j = 0; j < nb; j++) {
        float g = dy[off + j]; /* loaded unconditionally, so the select vectorizes */
        buf[j] = relu_y[off + j] > 0.0f ? g : 0.0f;
    }
    return buf;
}

/* x - mean at row offset off: from x, or (q) from the bf16 copy xq, which
 * holds it already. */
static inline __attribute__((always_inline)) float centred(const bn_args *a, long off,
                                                           const float *mean, int j, int q)
{
    return q ? pk_bf16_to_f32_one(a->xq[off + j]) : a->x[off + j] - mean[j];
}

/* With xhat = (x - mean) * rstd:
 *   dbeta += sum dy,  dgamma += sum dy*xhat,
 *   dx = gamma*rstd * (dy - mean(dy) - xhat * mean(dy*xhat)),
 * dy first masked by the following ReLU's output when relu_y is given;
 * x - mean read from xq when q. */
static inline __attribute__((always_inline)) void backward_block_q(const bn_args *a, int b0,
                                                                   int nb, int q)
{
    const float *x = a->x, *dy = a->dy, *relu_y = a->relu_y;
    long P = a->P;
    int C = a->C;
    double sdy[BN_BLOCK] = {0}, sdyx[BN_BLOCK] = {0};
    float mean[BN_BLOCK], k0[BN_BLOCK], k1[BN_BLOCK], k2[BN_BLOCK], buf[BN_BLOCK];
    for (int j = 0; j < nb; j++)
        mean[j] = a->mean[b0 + j];
    for (long p = 0; p < P; p++) {
        long off = p * C + b0;
        const float *gr = grad_row(dy, relu_y, off, nb, buf);
#pragma omp simd
        for (int j = 0; j < nb; j++) {
            double g = gr[j];
            sdy[j] += g;
            sdyx[j] += g * (q ? (double)pk_bf16_to_f32_one(a->xq[off + j])
                              : (double)x[off + j] - mean[j]);
        }
    }
    /* dx = k0*dy + k1*(x - mean) + k2 per channel. */
    for (int j = 0; j < nb; j++) {
        int ch = b0 + j;
        double rstd = a->rstd[ch], g = a->gamma[ch];
        double sum_dyxhat = sdyx[j] * rstd;
        a->dbeta[ch] += (float)sdy[j];
        a->dgamma[ch] += (float)sum_dyxhat;
        k0[j] = (float)(g * rstd);
        k1[j] = (float)(-g * rstd * rstd * rstd * sdyx[j] / (double)P);
        k2[j] = (float)(-g * rstd * sdy[j] / (double)P);
    }
    if (!a->dx)
        return;
    for (long p = 0; p < P; p++) {
        const float *gr = grad_row(dy, relu_y, p * C + b0, nb, buf);
        float *dr = a->dx + p * C + b0;
#pragma omp simd
        for (int j = 0; j < nb; j++)
            dr[j] = k0[j] * gr[j] + k1[j] * centred(a, p * C + b0, mean, j, q) + k2[j];
    }
}

static void backward_block(const bn_args *a, int b0, int nb) { backward_block_q(a, b0, nb, 0); }

static void backward_block_xq(const bn_args *a, int b0, int nb)
{
    backward_block_q(a, b0, nb, 1);
}

static void bn_backward(pk_ctx *c, float *dx, float *dgamma, float *dbeta, const float *dy,
                        const float *relu_y, const float *x, const float *save_mean,
                        const float *save_rstd, const float *gamma, long P, int C)
{
    bn_args a = {.dx = dx, .dgamma = dgamma, .dbeta = dbeta, .dy = dy, .relu_y = relu_y,
                 .x = x, .mean = save_mean, .rstd = save_rstd, .gamma = gamma, .P = P, .C = C};
    for_channel_blocks(c, &a, backward_block);
}

void pk_bn_backward(pk_ctx *c, float *dx, float *dgamma, float *dbeta, const float *dy,
                    const float *x, const float *save_mean, const float *save_rstd,
                    const float *gamma, long P, int C)
{
    PK_ON_CUDA(c, pk_cuda_bn_backward(c, dx, dgamma, dbeta, dy, x, save_mean, save_rstd, gamma,
                                      P, C));
    bn_backward(c, dx, dgamma, dbeta, dy, NULL, x, save_mean, save_rstd, gamma, P, C);
}

int pk_bn_backward_xc(pk_ctx *c, float *dx, float *dgamma, float *dbeta, const float *dy,
                      const float *relu_y, const uint16_t *xc, const float *save_mean,
                      const float *save_rstd, const float *gamma, long P, int C, pk_err *e)
{
    if (pk_ctx_device(c) != PK_DEV_CPU)
        return pk_fail(e, PK_EINVAL, "batchnorm: the backward from a bf16 copy is CPU only");
    bn_args a = {.dx = dx, .dgamma = dgamma, .dbeta = dbeta, .dy = dy, .relu_y = relu_y,
                 .xq = xc, .mean = save_mean, .rstd = save_rstd, .gamma = gamma, .P = P, .C = C};
    for_channel_blocks(c, &a, backward_block_xq);
    return PK_OK;
}

void pk_bn_relu_backward(pk_ctx *c, float *dx, float *dgamma, float *dbeta, const float *dy,
                         const float *relu_y, const float *x, const float *save_mean,
                         const float *save_rstd, const float *gamma, long P, int C)
{
    if (pk_ctx_device(c) == PK_DEV_CUDA) { /* no fused kernel: ReLU's backward into dx first */
        pk_relu_backward(c, dx, dy, relu_y, (size_t)P * (size_t)C);
        pk_bn_backward(c, dx, dgamma, dbeta, dx, x, save_mean, save_rstd, gamma, P, C);
        return;
    }
    bn_backward(c, dx, dgamma, dbeta, dy, relu_y, x, save_mean, save_rstd, gamma, P, C);
}
