/* Losses over [P, K] logits (NHWC flattened), each returning the unweighted
 * loss and ACCUMULATING weight * d(loss)/d(input) into the gradient buffer
 * (NULL: loss only). Pixel sums are in double, softmaxes go through a
 * max-shifted log-sum-exp. No valid pixel: loss 0 and nothing is added. */
#include "ops/loss_pixel.h"
#include "ops/ops.h"
#include "ops/ops_cuda.h"

#include <assert.h>
#include <math.h>

#define PK_LOSS_PAR_MIN 4096 /* pixels below which one thread is faster */

/* Per-pixel softmax work is in float with one exponential per class
 * (PyTorch's CPU kernels are float too), vectorised over the classes
 * (pk_expf_softmax); only the sums over pixels are in double. A
 * pixel's exponentials live in a stack array of PK_LOSS_KMAX, a bound that
 * pk_model_create enforces: a larger K here is the caller's bug, which
 * asserts, or where assertions are compiled out gives a NaN loss, never a
 * silent 0. */
#define KMAX_GUARD(K)                                                                    \
    do {                                                                                 \
        assert((K) <= PK_LOSS_KMAX);                                                     \
        if ((K) > PK_LOSS_KMAX)                                                          \
            return NAN;                                                                  \
    } while (0)

float pk_ce_loss(pk_ctx *c, float *dlogits, const float *logits, const uint8_t *labels,
                 long P, int K, int ignore, float weight)
{
    PK_ON_CUDA_RETURN(c, pk_cuda_ce_loss(c, dlogits, logits, labels, P, K, ignore, weight));
    KMAX_GUARD(K);
    long nvalid = 0;
    for (long p = 0; p < P; p++)
        nvalid += pk_ce_valid(labels[p], K, ignore);
    if (nvalid == 0)
        return 0.0f;
    double total = 0.0;
    float gscale = (float)((double)weight / (double)nvalid);
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) reduction(+ : total) if (P > PK_LOSS_PAR_MIN)
    for (long p = 0; p < P; p++) {
        if (!pk_ce_valid(labels[p], K, ignore))
            continue;
        total += (double)pk_ce_pixel(dlogits ? dlogits + p * K : NULL, logits + p * K,
                                     labels[p], K, gscale);
    }
    return (float)(total / (double)nvalid);
}


float pk_kd_loss(pk_ctx *c, float *ds, const float *s, const float *t, const uint8_t *mask,
                 long P, int K, float T, float weight)
{
    PK_ON_CUDA_RETURN(c, pk_cuda_kd_loss(c, ds, s, t, mask, P, K, T, weight));
    KMAX_GUARD(K);
    long nvalid = pk_count_mask(mask, P);
    if (nvalid == 0)
        return 0.0f;
    double total = 0.0;
    float invT = 1.0f / T, gscale = (float)((double)weight * (double)T / (double)nvalid);
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) reduction(+ : total) if (P > PK_LOSS_PAR_MIN)
    for (long p = 0; p < P; p++) {
        if (mask && !mask[p])
            continue;
        float *g = ds ? ds + p * K : NULL;
        total += (double)pk_kd_pixel(g, s + p * K, t + p * K, K, invT, gscale);
    }
    return (float)((double)T * (double)T * total / (double)nvalid);
}

/* The mean over valid elements (valid pixels * K) of SmoothL1 with beta 1
 * (smooth = 1) or of the squared difference (smooth = 0). */
static float regression_loss(pk_ctx *c, float *ds, const float *s, const float *t,
                             const uint8_t *mask, long P, int K, float weight, int smooth)
{
    long nvalid = pk_count_mask(mask, P);
    if (nvalid == 0)
        return 0.0f;
    double count = (double)nvalid * (double)K, total = 0.0;
    float gscale = (float)((smooth ? 1.0 : 2.0) * (double)weight / count);
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) reduction(+ : total) if (P > PK_LOSS_PAR_MIN)
    for (long p = 0; p < P; p++) {
        if (mask && !mask[p])
            continue;
        total += (double)pk_regression_pixel(ds ? ds + p * K : NULL, s + p * K, t + p * K, K,
                                             gscale, smooth);
    }
    return (float)(total / count);
}

float pk_smoothl1_loss(pk_ctx *c, float *ds, const float *s, const float *t,
                       const uint8_t *mask, long P, int K, float weight)
{
    PK_ON_CUDA_RETURN(c, pk_cuda_smoothl1_loss(c, ds, s, t, mask, P, K, weight));
    return regression_loss(c, ds, s, t, mask, P, K, weight, 1);
}

float pk_mse_loss(pk_ctx *c, float *ds, const float *s, const float *t, const uint8_t *mask,
                  long P, int K, float weight)
{
    PK_ON_CUDA_RETURN(c, pk_cuda_mse_loss(c, ds, s, t, mask, P, K, weight));
    return regression_loss(c, ds, s, t, mask, P, K, weight, 0);
}
