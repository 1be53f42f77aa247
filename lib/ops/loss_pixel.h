/* The losses' per-pixel work over K classes, shared by the separate loss
 * ops (loss.c) and the loss step that upsamples as it goes
 * (loss_branch.c): float per pixel, vectorised over the classes (the
 * softmaxes through pk_expf_softmax), each returning the pixel's loss and
 * ADDING its scaled gradient into g (NULL: none). */
#ifndef PSPKD_LOSS_PIXEL_H
#define PSPKD_LOSS_PIXEL_H

#include "core/fast_exp.h"
#include "ops/ops.h"

#include <math.h>
#include <stdint.h>

/* Labels >= K other than `ignore` cannot be scored either; they are skipped
 * like ignored pixels rather than read out of bounds. */
static inline int pk_ce_valid(uint8_t lab, int K, int ignore)
{
    return (int)lab != ignore && (int)lab < K;
}

/* Pixels with mask[p] != 0 (all P when mask is NULL). */
static inline long pk_count_mask(const uint8_t *mask, long P)
{
    if (!mask)
        return P;
    long n = 0;
    for (long p = 0; p < P; p++)
        n += mask[p] != 0;
    return n;
}

/* -log softmax(x)[lab]; g += gscale * (softmax(x) - onehot(lab)). */
static inline float pk_ce_pixel(float *g, const float *x, int lab, int K, float gscale)
{
    float ex[PK_LOSS_KMAX], m = x[0], se = 0.0f;
    for (int k = 1; k < K; k++)
        m = x[k] > m ? x[k] : m;
#pragma omp simd reduction(+ : se)
    for (int k = 0; k < K; k++) {
        ex[k] = pk_expf_softmax(x[k] - m);
        se += ex[k];
    }
    if (g) {
        float f = gscale / se;
#pragma omp simd
        for (int k = 0; k < K; k++)
            g[k] += f * ex[k];
        g[lab] -= gscale;
    }
    return m + logf(se) - x[lab];
}

/* One pixel's KL(pt || ps) over K classes, and its gradient
 * d/ds_k of T^2 * KL = T^2 * (ps_k - pt_k) / T (the T is folded into gscale).
 * With zs = s/T - max, zt = t/T - max: log ps = zs - log Ss, log pt = zt - log St. */
static inline float pk_kd_pixel(float *g, const float *s, const float *t, int K, float invT, float gscale)
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

/* The sum over the K classes of SmoothL1 with beta 1 (smooth = 1) or of
 * the squared difference (smooth = 0) between s and t; g += gscale * its
 * derivative (SmoothL1's, or d = s - t: the 2 is in gscale). */
static inline float pk_regression_pixel(float *g, const float *s, const float *t, int K,
                                        float gscale, int smooth)
{
    float px = 0.0f;
#pragma omp simd reduction(+ : px)
    for (int k = 0; k < K; k++) {
        float d = s[k] - t[k], ad = fabsf(d), gk = d;
        if (smooth) {
            /* beta = 1: quadratic strictly inside, linear from |d| = 1 (torch's split) */
            px += ad < 1.0f ? 0.5f * d * d : ad - 0.5f;
            gk = ad < 1.0f ? d : (d > 0.0f ? 1.0f : -1.0f);
        } else {
            px += d * d;
        }
        if (g)
            g[k] += gscale * gk;
    }
    return px;
}

#endif
