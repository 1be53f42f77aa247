/* pk_branch_loss (ops.h): one output's losses with the upsampling folded in.
 * The model's loss step used to upsample the stride-8 logits into a
 * full-resolution buffer, zero the gradient buffer, add CE's gradient,
 * add the distillation term's, then resize the gradient back: six passes
 * over [n, h, w, K] tensors (8.5 MB each for the R18 bench's 2x225x225x21),
 * memory-bound at 2 threads. Here each pixel's logits are interpolated
 * into a stack array, both terms run on them, and its gradient is stored
 * once: the only full-resolution traffic left is the teacher's logits read
 * and dfull written (the resize backward then reads it). The per-pixel
 * arithmetic is loss_pixel.h's, in the separate ops' order, so the
 * gradient is bit for bit theirs (test_loss). */
#include "ops/loss_pixel.h"
#include "ops/ops.h"
#include "ops/resize_lerp.h"

#include <string.h>

/* The separate ops, in the order the fused pass reproduces (CUDA). */
static void branch_loss_separate(pk_ctx *c, float *dfull, float *full, const pk_branch_loss_args *a,
                                 float *ce, float *distill)
{
    long P = (long)a->n * a->h * a->w;
    pk_resize_forward(c, full, a->logits, a->n, a->h8, a->w8, a->K, a->h, a->w);
    pk_dev_zero(c, dfull, (size_t)P * (size_t)a->K * sizeof(float));
    *ce = pk_ce_loss(c, a->ce_weight != 0.0f ? dfull : NULL, full, a->labels, P, a->K, a->ignore,
                     a->ce_weight);
    *distill = 0.0f;
    if (!a->teacher || a->distill == PK_DISTILL_NONE)
        return;
    if (a->distill == PK_DISTILL_KL)
        *distill = pk_kd_loss(c, dfull, full, a->teacher, a->valid, P, a->K, a->T,
                              a->distill_weight);
    else if (a->distill == PK_DISTILL_SMOOTHL1)
        *distill = pk_smoothl1_loss(c, dfull, full, a->teacher, a->valid, P, a->K,
                                    a->distill_weight);
    else
        *distill = pk_mse_loss(c, dfull, full, a->teacher, a->valid, P, a->K, a->distill_weight);
}

void pk_branch_loss(pk_ctx *c, float *dfull, float *full, const pk_branch_loss_args *a, float *ce,
                    float *distill)
{
    if (pk_ctx_device(c) != PK_DEV_CPU) {
        branch_loss_separate(c, dfull, full, a, ce, distill);
        return;
    }
    int K = a->K, h = a->h, w = a->w, h8 = a->h8, w8 = a->w8;
    if (K > PK_LOSS_KMAX) { /* pk_model_create's bound; as the separate ops, a NaN */
        *ce = *distill = NAN;
        return;
    }
    long P = (long)a->n * h * w, nce = 0;
    for (long p = 0; p < P; p++)
        nce += pk_ce_valid(a->labels[p], K, a->ignore);
    int dk = a->teacher ? a->distill : PK_DISTILL_NONE;
    long nkd = dk ? pk_count_mask(a->valid, P) : 0;
    if (nkd == 0)
        dk = PK_DISTILL_NONE;
    /* the gradient scales the separate ops use */
    float gce = nce ? (float)((double)a->ce_weight / (double)nce) : 0.0f;
    double count = (double)nkd * (double)K;
    float gkd = dk == PK_DISTILL_KL ? (float)((double)a->distill_weight * (double)a->T / (double)nkd)
                : dk ? (float)((dk == PK_DISTILL_SMOOTHL1 ? 1.0 : 2.0) *
                               (double)a->distill_weight / count)
                     : 0.0f;
    float invT = dk == PK_DISTILL_KL ? 1.0f / a->T : 1.0f;
    int ce_grad = a->ce_weight != 0.0f;
    double tce = 0.0, tkd = 0.0;
    long rows = (long)a->n * h;
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) reduction(+ : tce, tkd)
    for (long r = 0; r < rows; r++) {
        int b = (int)(r / h);
        pk_lerp1d lh = pk_lerp_at((int)(r % h), h8, h);
        const float *x0 = a->logits + ((long)b * h8 + lh.i0) * w8 * K;
        const float *x1 = a->logits + ((long)b * h8 + lh.i1) * w8 * K;
        float h1 = lh.l1, h0 = 1.0f - h1;
        for (int ow = 0; ow < w; ow++) {
            long p = r * w + ow;
            pk_lerp1d lw = pk_lerp_at(ow, w8, w);
            float w1 = lw.l1, w0 = 1.0f - w1;
            const float *q00 = x0 + (long)lw.i0 * K, *q01 = x0 + (long)lw.i1 * K;
            const float *q10 = x1 + (long)lw.i0 * K, *q11 = x1 + (long)lw.i1 * K;
            float z[PK_LOSS_KMAX], g[PK_LOSS_KMAX];
#pragma omp simd
            for (int k = 0; k < K; k++) {
                z[k] = pk_bilerp(h0, h1, w0, w1, q00[k], q01[k], q10[k], q11[k]);
                g[k] = 0.0f;
            }
            if (pk_ce_valid(a->labels[p], K, a->ignore))
                tce += (double)pk_ce_pixel(ce_grad ? g : NULL, z, a->labels[p], K, gce);
            if (dk && (!a->valid || a->valid[p])) {
                const float *t = a->teacher + p * K;
                tkd += dk == PK_DISTILL_KL
                           ? (double)pk_kd_pixel(g, z, t, K, invT, gkd)
                           : (double)pk_regression_pixel(g, z, t, K, gkd,
                                                         dk == PK_DISTILL_SMOOTHL1);
            }
            memcpy(dfull + p * K, g, (size_t)K * sizeof *g);
        }
    }
    *ce = nce ? (float)(tce / (double)nce) : 0.0f;
    *distill = !dk                    ? 0.0f
               : dk == PK_DISTILL_KL ? (float)((double)a->T * (double)a->T * tkd / (double)nkd)
                                      : (float)(tkd / count);
}
