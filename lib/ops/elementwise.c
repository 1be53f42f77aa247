/* Elementwise ops on flat buffers and NHWC tensors: ReLU, residual add,
 * accumulate, channel concatenation and Dropout2d. OpenMP over elements or
 * pixels; small tensors stay on one thread (the fork costs more than the work). */
#include "ops/ops.h"
#include "ops/ops_cuda.h"

#include <string.h>
#include "core/rng.h"

/* Below this many elements a parallel region is not worth its start-up. */
#define PK_EW_PAR_MIN 32768

void pk_relu_forward(pk_ctx *c, float *y, const float *x, size_t n)
{
    PK_ON_CUDA(c, pk_cuda_relu_forward(c, y, x, n));
    long len = (long)n;
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) if (n > PK_EW_PAR_MIN)
    for (long i = 0; i < len; i++)
        y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void pk_relu_backward(pk_ctx *c, float *dx, const float *dy, const float *y, size_t n)
{
    PK_ON_CUDA(c, pk_cuda_relu_backward(c, dx, dy, y, n));
    long len = (long)n;
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) if (n > PK_EW_PAR_MIN)
    for (long i = 0; i < len; i++) {
        float g = dy[i]; /* loaded unconditionally, so the select vectorizes */
        dx[i] = y[i] > 0.0f ? g : 0.0f;
    }
}

void pk_add_forward(pk_ctx *c, float *y, const float *a, const float *b, size_t n)
{
    PK_ON_CUDA(c, pk_cuda_add_forward(c, y, a, b, n));
    long len = (long)n;
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) if (n > PK_EW_PAR_MIN)
    for (long i = 0; i < len; i++)
        y[i] = a[i] + b[i];
}

void pk_add_relu_forward(pk_ctx *c, float *y, const float *a, const float *b, size_t n)
{
    if (pk_ctx_device(c) == PK_DEV_CUDA) { /* two kernels there */
        pk_add_forward(c, y, a, b, n);
        pk_relu_forward(c, y, y, n);
        return;
    }
    long len = (long)n;
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) if (n > PK_EW_PAR_MIN)
    for (long i = 0; i < len; i++) {
        float v = a[i] + b[i];
        y[i] = v > 0.0f ? v : 0.0f;
    }
}

void pk_accumulate(pk_ctx *c, float *y, const float *x, size_t n)
{
    PK_ON_CUDA(c, pk_cuda_accumulate(c, y, x, n));
    long len = (long)n;
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) if (n > PK_EW_PAR_MIN)
    for (long i = 0; i < len; i++)
        y[i] += x[i];
}

static long concat_width(const int *cs, int k)
{
    long ct = 0;
    for (int j = 0; j < k; j++)
        ct += cs[j];
    return ct;
}

void pk_concat_forward(pk_ctx *c, float *y, const float *const *xs, const int *cs, int k,
                       long P)
{
    PK_ON_CUDA(c, pk_cuda_concat_forward(c, y, xs, cs, k, P));
    long ct = concat_width(cs, k);
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) if (P * ct > PK_EW_PAR_MIN)
    for (long p = 0; p < P; p++) {
        float *row = y + p * ct;
        for (int j = 0; j < k; j++) {
            memcpy(row, xs[j] + p * cs[j], (size_t)cs[j] * sizeof *row);
            row += cs[j];
        }
    }
}

/* A NULL dxs[j] skips that input (its gradient is not needed). */
void pk_concat_backward(pk_ctx *c, float *const *dxs, const float *dy, const int *cs, int k,
                        long P)
{
    PK_ON_CUDA(c, pk_cuda_concat_backward(c, dxs, dy, cs, k, P));
    long ct = concat_width(cs, k);
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) if (P * ct > PK_EW_PAR_MIN)
    for (long p = 0; p < P; p++) {
        const float *row = dy + p * ct;
        for (int j = 0; j < k; j++) {
            if (dxs[j])
                memcpy(dxs[j] + p * cs[j], row, (size_t)cs[j] * sizeof *row);
            row += cs[j];
        }
    }
}

/* Scale of the kept channels; p >= 1 drops everything (as PyTorch does). */
static float dropout_scale(float p)
{
    return p >= 1.0f ? 0.0f : 1.0f / (1.0f - p);
}

/* out = in * scale where the channel is kept, 0 where dropped: the forward
 * on x, and (being linear) the backward on dy. */
static void dropout_apply(pk_ctx *c, float *out, const float *in, const uint8_t *keep, int n,
                          long hw, int ch, float scale)
{
    long rows = (long)n * hw;
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) if (rows * ch > PK_EW_PAR_MIN)
    for (long r = 0; r < rows; r++) {
        const uint8_t *kb = keep + (r / hw) * ch;
        const float *ir = in + r * ch;
        float *orow = out + r * ch;
        for (int j = 0; j < ch; j++)
            orow[j] = kb[j] ? ir[j] * scale : 0.0f;
    }
}

void pk_dropout2d_forward_at(pk_ctx *c, float *y, uint8_t *keep, const float *x, int n,
                             long hw, int ch, float p, uint64_t seed, long first)
{
    PK_ON_CUDA(c, pk_cuda_dropout2d_forward(c, y, keep, x, n, hw, ch, p, seed, first));
    /* The mask is a pure function of (seed, n*ch index): keep when the
     * uniform draw is >= p, so a channel survives with probability 1-p. */
    long nc = (long)n * ch;
    uint64_t i0 = (uint64_t)first * (uint64_t)ch;
    for (long i = 0; i < nc; i++)
        keep[i] = p < 1.0f && pk_bits_to_u01(pk_hash64(seed ^ (i0 + (uint64_t)i))) >= p;
    dropout_apply(c, y, x, keep, n, hw, ch, dropout_scale(p));
}

void pk_dropout2d_forward(pk_ctx *c, float *y, uint8_t *keep, const float *x, int n,
                          long hw, int ch, float p, uint64_t seed)
{
    pk_dropout2d_forward_at(c, y, keep, x, n, hw, ch, p, seed, 0);
}

void pk_dropout2d_backward(pk_ctx *c, float *dx, const float *dy, const uint8_t *keep, int n,
                           long hw, int ch, float p)
{
    PK_ON_CUDA(c, pk_cuda_dropout2d_backward(c, dx, dy, keep, n, hw, ch, p));
    dropout_apply(c, dx, dy, keep, n, hw, ch, dropout_scale(p));
}
