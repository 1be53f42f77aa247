/* The losses' per-pixel work over K classes, shared by the separate loss
 * ops (loss.c) and the loss step that upsamples as it goes
 * (loss_branch.c): float per pixel, vectorised over the classes (the
 * softmaxes through pk_expf_softmax), each returning the pixel's loss and
 * ADDING its scaled gradient into g (NULL: none).
 *
 * The regression terms sum over the classes through 16 lanes in a fixed
 * order (pk_lanes_sum: lane j takes classes j, j + 16, ..., then a tree
 * joins the lanes), elementwise loops the compiler vectorises on its own.
 * Their `omp simd` reduction with the SmoothL1 branch in the loop was left
 * scalar by gcc; split and laned, CE + SmoothL1 over the R18 bench's aux
 * output (2x225x225, 21 classes, 2 threads) went from 8.4 to 5.3 ms. The
 * same lanes in CE and KL made those slower (8.9 -> 11.5 ms): there the
 * `omp simd` reductions stay. */
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

#define PK_LANES 16

/* sum of v[0..K), in the fixed order above; the lanes joined as lane j +=
 * lane j + w for w = 8, 4, 2, 1 (spelled out: constant trip counts
 * vectorise). */
static inline float pk_lanes_sum(const float *v, int K)
{
    float l[PK_LANES] = {0};
    int k0 = 0;
    for (; k0 + PK_LANES <= K; k0 += PK_LANES)
        for (int j = 0; j < PK_LANES; j++)
            l[j] += v[k0 + j];
    for (int j = 0; k0 + j < K; j++)
        l[j] += v[k0 + j];
    for (int j = 0; j < 8; j++)
        l[j] += l[j + 8];
    for (int j = 0; j < 4; j++)
        l[j] += l[j + 4];
    for (int j = 0; j < 2; j++)
        l[j] += l[j + 2];
    return l[0] + l[1];
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

/* SmoothL1 with beta 1: quadratic strictly inside, linear from |d| = 1
 * (torch's split); its derivative. */
static inline float pk_smoothl1_term(float d)
{
    float ad = fabsf(d);
    return ad < 1.0f ? 0.5f * d * d : ad - 0.5f;
}
static inline float pk_smoothl1_grad(float d)
{
    return fabsf(d) < 1.0f ? d : (d > 0.0f ? 1.0f : -1.0f);
}

/* The sum over the K classes of SmoothL1 with beta 1 (smooth = 1) or of
 * the squared difference (smooth = 0) between s and t; g += gscale * its
 * derivative (SmoothL1's, or d = s - t: the 2 is in gscale). One loop per
 * case, so that none has a branch to vectorise around. */
static inline float pk_regression_pixel(float *g, const float *s, const float *t, int K,
                                        float gscale, int smooth)
{
    float e[PK_LOSS_KMAX];
    if (smooth) {
#pragma omp simd
        for (int k = 0; k < K; k++)
            e[k] = pk_smoothl1_term(s[k] - t[k]);
        if (g) {
#pragma omp simd
            for (int k = 0; k < K; k++)
                g[k] += gscale * pk_smoothl1_grad(s[k] - t[k]);
        }
    } else {
#pragma omp simd
        for (int k = 0; k < K; k++)
            e[k] = (s[k] - t[k]) * (s[k] - t[k]);
        if (g) {
#pragma omp simd
            for (int k = 0; k < K; k++)
                g[k] += gscale * (s[k] - t[k]);
        }
    }
    return pk_lanes_sum(e, K);
}

#endif
