/* Losses over [P, K] logits (NHWC flattened), each returning the unweighted
 * loss and ACCUMULATING weight * d(loss)/d(input) into the gradient buffer
 * (NULL: loss only). Sums are in double, softmaxes go through a max-shifted
 * log-sum-exp. No valid pixel: loss 0 and nothing is added. */
#include "ops.h"
#include "ops_cuda.h"

#include <math.h>

#define PK_LOSS_PAR_MIN 4096 /* pixels below which one thread is faster */

/* Labels >= K other than `ignore` cannot be scored either; they are skipped
 * like ignored pixels rather than read out of bounds. */
static int ce_valid(uint8_t lab, int K, int ignore)
{
    return (int)lab != ignore && (int)lab < K;
}

float pk_ce_loss(pk_ctx *c, float *dlogits, const float *logits, const uint8_t *labels,
                 long P, int K, int ignore, float weight)
{
    PK_ON_CUDA_RETURN(c, pk_cuda_ce_loss(c, dlogits, logits, labels, P, K, ignore, weight));
    long nvalid = 0;
    for (long p = 0; p < P; p++)
        nvalid += ce_valid(labels[p], K, ignore);
    if (nvalid == 0)
        return 0.0f;
    double total = 0.0, gscale = (double)weight / (double)nvalid;
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) reduction(+ : total) if (P > PK_LOSS_PAR_MIN)
    for (long p = 0; p < P; p++) {
        if (!ce_valid(labels[p], K, ignore))
            continue;
        const float *x = logits + p * K;
        int lab = labels[p];
        double m = x[0];
        for (int k = 1; k < K; k++)
            m = x[k] > m ? x[k] : m;
        double se = 0.0;
        for (int k = 0; k < K; k++)
            se += exp((double)x[k] - m);
        double lse = m + log(se);
        total += lse - (double)x[lab];
        if (dlogits) {
            float *g = dlogits + p * K;
            for (int k = 0; k < K; k++) {
                double d = exp((double)x[k] - lse) - (k == lab ? 1.0 : 0.0);
                g[k] += (float)(gscale * d);
            }
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
 * d/ds_k of T^2 * KL = T^2 * (ps_k - pt_k) / T (the T is folded into gscale). */
static double kd_pixel(float *g, const float *s, const float *t, int K, double invT,
                       double gscale)
{
    double ms = (double)s[0] * invT, mt = (double)t[0] * invT;
    for (int k = 1; k < K; k++) {
        double zs = (double)s[k] * invT, zt = (double)t[k] * invT;
        ms = zs > ms ? zs : ms;
        mt = zt > mt ? zt : mt;
    }
    double ss = 0.0, st = 0.0;
    for (int k = 0; k < K; k++) {
        ss += exp((double)s[k] * invT - ms);
        st += exp((double)t[k] * invT - mt);
    }
    double lses = ms + log(ss), lset = mt + log(st), kl = 0.0;
    for (int k = 0; k < K; k++) {
        double ls = (double)s[k] * invT - lses, lt = (double)t[k] * invT - lset;
        double pt = exp(lt);
        if (pt > 0.0)
            kl += pt * (lt - ls);
        if (g)
            g[k] += (float)(gscale * (exp(ls) - pt));
    }
    return kl;
}

float pk_kd_loss(pk_ctx *c, float *ds, const float *s, const float *t, const uint8_t *mask,
                 long P, int K, float T, float weight)
{
    PK_ON_CUDA_RETURN(c, pk_cuda_kd_loss(c, ds, s, t, mask, P, K, T, weight));
    long nvalid = count_mask(mask, P);
    if (nvalid == 0)
        return 0.0f;
    double invT = 1.0 / (double)T, total = 0.0;
    double gscale = (double)weight * (double)T / (double)nvalid;
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) reduction(+ : total) if (P > PK_LOSS_PAR_MIN)
    for (long p = 0; p < P; p++) {
        if (mask && !mask[p])
            continue;
        float *g = ds ? ds + p * K : NULL;
        total += kd_pixel(g, s + p * K, t + p * K, K, invT, gscale);
    }
    return (float)((double)T * (double)T * total / (double)nvalid);
}

float pk_smoothl1_loss(pk_ctx *c, float *ds, const float *s, const float *t,
                       const uint8_t *mask, long P, int K, float weight)
{
    PK_ON_CUDA_RETURN(c, pk_cuda_smoothl1_loss(c, ds, s, t, mask, P, K, weight));
    long nvalid = count_mask(mask, P);
    if (nvalid == 0)
        return 0.0f;
    double count = (double)nvalid * (double)K, total = 0.0;
    double gscale = (double)weight / count;
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) reduction(+ : total) if (P > PK_LOSS_PAR_MIN)
    for (long p = 0; p < P; p++) {
        if (mask && !mask[p])
            continue;
        for (int k = 0; k < K; k++) {
            long i = p * K + k;
            double d = (double)s[i] - (double)t[i], ad = fabs(d);
            /* beta = 1: quadratic strictly inside, linear from |d| = 1 (torch's split) */
            total += ad < 1.0 ? 0.5 * d * d : ad - 0.5;
            if (ds)
                ds[i] += (float)(gscale * (ad < 1.0 ? d : (d > 0 ? 1.0 : -1.0)));
        }
    }
    return (float)(total / count);
}

float pk_mse_loss(pk_ctx *c, float *ds, const float *s, const float *t, const uint8_t *mask,
                  long P, int K, float weight)
{
    PK_ON_CUDA_RETURN(c, pk_cuda_mse_loss(c, ds, s, t, mask, P, K, weight));
    long nvalid = count_mask(mask, P);
    if (nvalid == 0)
        return 0.0f;
    double count = (double)nvalid * (double)K, total = 0.0;
    double gscale = 2.0 * (double)weight / count;
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) reduction(+ : total) if (P > PK_LOSS_PAR_MIN)
    for (long p = 0; p < P; p++) {
        if (mask && !mask[p])
            continue;
        for (int k = 0; k < K; k++) {
            long i = p * K + k;
            double d = (double)s[i] - (double)t[i];
            total += d * d;
            if (ds)
                ds[i] += (float)(gscale * d);
        }
    }
    return (float)(total / count);
}
