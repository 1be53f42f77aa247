/* SyncBN over a pk_comm: see bn_sync.h. Per-channel sums are in double,
 * each thread reducing its own channels over all P rows (the order, and so
 * the result, does not depend on the thread count). */
#include "ops/bn_sync.h"
#include "core/half.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#include "core/ctx_impl.h"
#include "ops/bn_split_impl.h"

typedef struct sync_args {
    const float *x, *g, *relu_y; /* g: dy in the backward */
    const uint16_t *xc;          /* backward: bf16 of x - mean instead of x, or NULL */
    const double *mean;          /* NULL: plain sums */
    const float *mean_f;         /* backward: the saved mean */
    double *s, *q;               /* outputs [C] */
    long P;
    int C;
} sync_args;

/* Forward sums of channels [b0, b0+nb): s = sum x, or, with a mean,
 * s = sum (x - mean)^2. */
static void fwd_block(const sync_args *a, int b0, int nb)
{
    double acc[BN_BLOCK] = {0}, m[BN_BLOCK] = {0};
    if (a->mean)
        for (int j = 0; j < nb; j++)
            m[j] = a->mean[b0 + j];
    for (long p = 0; p < a->P; p++) {
        const float *row = a->x + p * a->C + b0;
        if (a->mean) {
#pragma omp simd
            for (int j = 0; j < nb; j++) {
                double v = (double)row[j] - m[j];
                acc[j] += v * v;
            }
        } else {
#pragma omp simd
            for (int j = 0; j < nb; j++)
                acc[j] += (double)row[j];
        }
    }
    memcpy(a->s + b0, acc, (size_t)nb * sizeof *acc);
}

/* dy as the ReLU after the BN lets it through. */
static inline float grad_at(const sync_args *a, long i)
{
    return !a->relu_y || a->relu_y[i] > 0.0f ? a->g[i] : 0.0f;
}

/* Backward sums: s = sum dy, q = sum dy * (x - mean). */
static void bwd_block(const sync_args *a, int b0, int nb)
{
    double s[BN_BLOCK] = {0}, q[BN_BLOCK] = {0};
    for (long p = 0; p < a->P; p++) {
        long off = p * a->C + b0;
        for (int j = 0; j < nb; j++) {
            double g = grad_at(a, off + j);
            s[j] += g;
            q[j] += g * (a->xc ? (double)pk_bf16_to_f32_one(a->xc[off + j])
                               : (double)a->x[off + j] - a->mean_f[b0 + j]);
        }
    }
    memcpy(a->s + b0, s, (size_t)nb * sizeof *s);
    memcpy(a->q + b0, q, (size_t)nb * sizeof *q);
}

static void for_blocks(pk_ctx *c, const sync_args *a, void (*fn)(const sync_args *, int, int))
{
#pragma omp parallel num_threads(pk_bn_team_size(c, a->P, a->C))
    {
        int c0, c1;
        pk_bn_channel_range(a->C, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
        for (int b0 = c0; b0 < c1; b0 += BN_BLOCK)
            fn(a, b0, c1 - b0 < BN_BLOCK ? c1 - b0 : BN_BLOCK);
    }
}

/* The op's checks and its 2C doubles of sums (NULL with e on failure). */
static double *sums(pk_ctx *c, long P, int C, pk_err *e)
{
    if (pk_ctx_device(c) != PK_DEV_CPU) {
        pk_fail(e, PK_EINVAL, "SyncBN runs on CPU contexts only");
        return NULL;
    }
    if (P < 1 || C < 1) {
        pk_fail(e, PK_EINVAL, "SyncBN: %ld rows of %d channels", P, C);
        return NULL;
    }
    return pk_ctx_scratch(c, PK_SCRATCH_OP0, 2 * (size_t)C * sizeof(double), e);
}

int pk_bn_sync_forward_train(pk_ctx *c, pk_comm *comm, float *y, float *save_mean,
                             float *save_rstd, const float *x, const float *gamma,
                             const float *beta, float *running_mean, float *running_var, long P,
                             int C, float momentum, float eps, int relu, pk_err *e)
{
    double *buf = sums(c, P, C, e);
    if (!buf)
        return e ? e->code : PK_EINVAL;
    int rc;
    double *mean = buf, *var = buf + C, Pg = (double)P * pk_comm_size(comm);
    sync_args a = {.x = x, .s = mean, .P = P, .C = C};
    for_blocks(c, &a, fwd_block);
    if ((rc = pk_comm_allreduce_f64(comm, mean, (size_t)C, e)))
        return pk_wrap(e, "SyncBN mean");
    for (int ch = 0; ch < C; ch++)
        mean[ch] /= Pg;
    a.mean = mean;
    a.s = var;
    for_blocks(c, &a, fwd_block);
    if ((rc = pk_comm_allreduce_f64(comm, var, (size_t)C, e)))
        return pk_wrap(e, "SyncBN variance");
    float *scale = pk_ctx_scratch(c, PK_SCRATCH_OP1, 3 * (size_t)C * sizeof(float), e);
    if (!scale)
        return PK_ENOMEM;
    float *mean_f = scale + C, *bias = scale + 2 * C;
    for (int ch = 0; ch < C; ch++) {
        double v = var[ch] / Pg;
        float rstd = (float)(1.0 / sqrt(v + (double)eps));
        double unbiased = Pg > 1 ? v * Pg / (Pg - 1) : v;
        save_mean[ch] = mean_f[ch] = (float)mean[ch];
        save_rstd[ch] = rstd;
        running_mean[ch] = (1.0f - momentum) * running_mean[ch] + momentum * (float)mean[ch];
        running_var[ch] = (1.0f - momentum) * running_var[ch] + momentum * (float)unbiased;
        scale[ch] = gamma[ch] * rstd;
        bias[ch] = beta[ch];
    }
    long n = P * (long)C;
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) if (n > 65536)
    for (long p = 0; p < P; p++) {
        const float *xr = x + p * C;
        float *yr = y + p * C;
        for (int j = 0; j < C; j++) {
            float v = (xr[j] - mean_f[j]) * scale[j] + bias[j];
            yr[j] = relu && !(v > 0.0f) ? 0.0f : v;
        }
    }
    return PK_OK;
}

int pk_bn_sync_backward(pk_ctx *c, pk_comm *comm, float *dx, float *dgamma, float *dbeta,
                        const float *dy, const float *relu_y, const float *x,
                        const uint16_t *xc, const float *save_mean, const float *save_rstd,
                        const float *gamma, long P, int C, pk_err *e)
{
    double *buf = sums(c, P, C, e);
    if (!buf)
        return e ? e->code : PK_EINVAL;
    int rc;
    double *sdy = buf, *sdyx = buf + C, Pg = (double)P * pk_comm_size(comm);
    sync_args a = {.x = x, .xc = xc, .g = dy, .relu_y = relu_y, .mean_f = save_mean, .s = sdy,
                   .q = sdyx, .P = P, .C = C};
    for_blocks(c, &a, bwd_block);
    for (int ch = 0; ch < C; ch++) { /* this rank's share of the parameter gradients */
        dbeta[ch] += (float)sdy[ch];
        dgamma[ch] += (float)(sdyx[ch] * save_rstd[ch]);
    }
    if ((rc = pk_comm_allreduce_f64(comm, buf, 2 * (size_t)C, e)))
        return pk_wrap(e, "SyncBN backward");
    if (!dx)
        return PK_OK;
    float *k = pk_ctx_scratch(c, PK_SCRATCH_OP1, 3 * (size_t)C * sizeof(float), e);
    if (!k)
        return PK_ENOMEM;
    float *k0 = k, *k1 = k + C, *k2 = k + 2 * C;
    for (int ch = 0; ch < C; ch++) { /* dx = k0*dy + k1*(x - mean) + k2 */
        double r = save_rstd[ch], g = gamma[ch];
        k0[ch] = (float)(g * r);
        k1[ch] = (float)(-g * r * r * r * sdyx[ch] / Pg);
        k2[ch] = (float)(-g * r * sdy[ch] / Pg);
    }
    long n = P * (long)C;
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) if (n > 65536)
    for (long p = 0; p < P; p++) {
        long off = p * C;
        for (int j = 0; j < C; j++) {
            float g = grad_at(&a, off + j);
            float xm = xc ? pk_bf16_to_f32_one(xc[off + j]) : x[off + j] - save_mean[j];
            dx[off + j] = k0[j] * g + k1[j] * xm + k2[j];
        }
    }
    return PK_OK;
}
