/* Losses over [P, K] logits (NHWC flattened), each returning the unweighted
 * loss and ACCUMULATING weight * d(loss)/d(input) into the gradient buffer
 * (NULL: loss only). Pixel sums are in double, softmaxes go through a
 * max-shifted log-sum-exp. No valid pixel: loss 0 and nothing is added. */
#include "core/fast_exp.h"
#include "ops/ops.h"
#include "ops/ops_cuda.h"

#include <assert.h>
#include <math.h>

#define PK_LOSS_PAR_MIN 4096 /* pixels below which one thread is faster */

/* Labels >= K other than `ignore` cannot be scored either; they are skipped
 * like ignored pixels rather than read out of bounds. */
static int ce_valid(uint8_t lab, int K, int ignore)
{
    return (int)lab != ignore && (int)lab < K;
}

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
        nvalid += ce_valid(labels[p], K, ignore);
    if (nvalid == 0)
        return 0.0f;
    double total = 0.0;
    float gscale = (float)((double)weight / (double)nvalid);
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) reduction(+ : total) if (P > PK_LOSS_PAR_MIN)
    for (long p = 0; p < P; p++) {
        if (!ce_valid(labels[p], K, ignore))
            continue;
        const float *x = logits + p * K;
        int lab = labels[p];
        float ex[PK_LOSS_KMAX], m = x[0], se = 0.0f;
        for (int k = 1; k < K; k++)
            m = x[k] > m ? x[k] : m;
#pragma omp simd reduction(+ : se)
        for (int k = 0; k < K; k++) {
            ex[k] = pk_expf_softmax(x[k] - m);
            se += ex[k];
        }
        total += (double)(m + logf(se) - x[lab]);
        if (dlogits) {
            float *g = dlogits + p * K, f = gscale / se;
            for (int k = 0; k < K; k++)
                g[k] += f * ex[k];
            g[lab] -= gscale;
        }
    }
    return (float)(total / (double)nvalid);
}

static long count_mask(const uint8_t *mask, long P)
{
    if (!mask)
        return P;
    long n = 0;
    for (long p = 0; p < P; p++)
        n += mask[p] != 0;
    return n;
}

/* One pixel's KL(pt || ps) over K classes, and its gradient
 * d/ds_k of T^2 * KL = T^2 * (ps_k - pt_k) / T (the T is folded into gscale).
 * With zs = s/T - max, zt = t/T - max: log ps = zs - log Ss, log pt = zt - log St. */
static float kd_pixel(float *g, const float *s, const float *t, int K, float invT, float gscale)
{
    float es[PK_LOSS_KMAX], et[PK_LOSS_KMAX];
    float ms = s[0] * invT, mt = t[0] * invT;
    for (int k = 1; k < K; k++) {
        float zs = s[k] * invT, zt = t[k] * invT;
        ms = zs > ms ? zs : ms;
        mt = zt > mt ? zt : mt;
    }
    float ss = 0.0f, st = 0.0f;
#pragma omp simd reduction(+ : ss, st)
    for (int k = 0; k < K; k++) {
        es[k] = pk_expf_softmax(s[k] * invT - ms);
        et[k] = pk_expf_softmax(t[k] * invT - mt);
        ss += es[k];
        st += et[k];
    }
    /* sum_k pt_k (log pt_k - log ps_k) = sum_k pt_k (zt_k - zs_k) + log Ss - log St */
    float ist = 1.0f / st, iss = 1.0f / ss, dot = 0.0f;
#pragma omp simd reduction(+ : dot)
    for (int k = 0; k < K; k++)
        dot += et[k] * ((t[k] - s[k]) * invT);
    float kl = dot * ist + (ms - mt) + logf(ss * ist);
    if (g) {
#pragma omp simd
        for (int k = 0; k < K; k++)
            g[k] += gscale * (es[k] * iss - et[k] * ist);
    }
    return kl;
}

float pk_kd_loss(pk_ctx *c, float *ds, const float *s, const float *t, const uint8_t *mask,
                 long P, int K, float T, float weight)
{
    PK_ON_CUDA_RETURN(c, pk_cuda_kd_loss(c, ds, s, t, mask, P, K, T, weight));
    KMAX_GUARD(K);
    long nvalid = count_mask(mask, P);
    if (nvalid == 0)
        return 0.0f;
    double total = 0.0;
    float invT = 1.0f / T, gscale = (float)((double)weight * (double)T / (double)nvalid);
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) reduction(+ : total) if (P > PK_LOSS_PAR_MIN)
    for (long p = 0; p < P; p++) {
        if (mask && !mask[p])
            continue;
        float *g = ds ? ds + p * K : NULL;
        total += (double)kd_pixel(g, s + p * K, t + p * K, K, invT, gscale);
    }
    return (float)((double)T * (double)T * total / (double)nvalid);
}

/* The mean over valid elements (valid pixels * K) of SmoothL1 with beta 1
 * (smooth = 1) or of the squared difference (smooth = 0). */
static float regression_loss(pk_ctx *c, float *ds, const float *s, const float *t,
                             const uint8_t *mask, long P, int K, float weight, int smooth)
{
    long nvalid = count_mask(mask, P);
    if (nvalid == 0)
        return 0.0f;
    double count = (double)nvalid * (double)K, total = 0.0;
    float gscale = (float)((smooth ? 1.0 : 2.0) * (double)weight / count);
    /* per pixel in float, vectorised over the classes (as PyTorch's float
     * kernels); the sum over pixels in double */
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) reduction(+ : total) if (P > PK_LOSS_PAR_MIN)
    for (long p = 0; p < P; p++) {
        if (mask && !mask[p])
            continue;
        const float *sp = s + p * K, *tp = t + p * K;
        float *gp = ds ? ds + p * K : NULL, px = 0.0f;
#pragma omp simd reduction(+ : px)
        for (int k = 0; k < K; k++) {
            float d = sp[k] - tp[k], ad = fabsf(d), g = d;
            if (smooth) {
                /* beta = 1: quadratic strictly inside, linear from |d| = 1 (torch's split) */
                px += ad < 1.0f ? 0.5f * d * d : ad - 0.5f;
                g = ad < 1.0f ? d : (d > 0.0f ? 1.0f : -1.0f);
            } else {
                px += d * d;
            }
            if (gp)
                gp[k] += gscale * g;
        }
        total += (double)px;
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
