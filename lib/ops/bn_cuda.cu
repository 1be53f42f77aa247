/* CUDA twin of lib/ops/bn.c: batch normalisation over [P, C] (NHWC), own
 * kernels with the CPU's semantics (batch mean and biased variance to
 * normalise, PyTorch's running update with the unbiased variance).
 *
 * Each op is three launches: a reduction where block (tile, chunk) sums 32
 * channels over one chunk of rows in double (coalesced: a warp reads 32
 * neighbouring channels of a row), a per-channel kernel that adds the
 * chunks' partial sums in chunk order and derives the affine coefficients,
 * and an elementwise apply. The chunk count depends on P and C only, so
 * results are the same on every run and every GPU. As on the CPU, the
 * forward sums are shifted by the channel's first value, and the float
 * arithmetic of the coefficients and of the apply is spelled with
 * round-to-nearest intrinsics (no FMA contraction), as the CPU build does. */
#include "ops/cuda_common.cuh"

#define BN_TX 32 /* channels per block */
#define BN_TY 8  /* row lanes per block */

static int bn_chunks(long P, int C)
{
    int tiles = (C + BN_TX - 1) / BN_TX;
    long by_rows = (P + 127) / 128;                 /* at least ~16 rows per thread lane */
    long cap = 2048 / tiles > 1 ? 2048 / tiles : 1; /* about 2048 blocks in all */
    long n = by_rows < cap ? by_rows : cap;
    return (int)(n > 0 ? n : 1);
}

/* MODE 0 (forward): s += x - shift, q += (x - shift)^2 with shift = x[0, ch];
 * MODE 1 (backward): s += dy, q += dy * (x - mean[ch]). */
template <int MODE>
__global__ void bn_reduce_kernel(double *ps, double *pq, const float *x, const float *dy,
                                 const float *mean, long P, int C, long rows_per_chunk)
{
    __shared__ double ss[BN_TY][BN_TX], sq[BN_TY][BN_TX];
    int ch = blockIdx.x * BN_TX + threadIdx.x;
    long r0 = (long)blockIdx.y * rows_per_chunk, r1 = r0 + rows_per_chunk;
    if (r1 > P)
        r1 = P;
    double s = 0.0, q = 0.0;
    if (ch < C) {
        if (MODE == 0) {
            double shift = x[ch];
            for (long r = r0 + threadIdx.y; r < r1; r += BN_TY) {
                double v = (double)x[(size_t)r * C + ch] - shift;
                s += v;
                q += v * v;
            }
        } else {
            double m = mean[ch];
            for (long r = r0 + threadIdx.y; r < r1; r += BN_TY) {
                size_t i = (size_t)r * C + ch;
                double g = dy[i];
                s += g;
                q += g * ((double)x[i] - m);
            }
        }
    }
    ss[threadIdx.y][threadIdx.x] = s;
    sq[threadIdx.y][threadIdx.x] = q;
    __syncthreads();
    if (threadIdx.y == 0 && ch < C) {
        for (int t = 1; t < BN_TY; t++) {
            s += ss[t][threadIdx.x];
            q += sq[t][threadIdx.x];
        }
        ps[(size_t)blockIdx.y * C + ch] = s;
        pq[(size_t)blockIdx.y * C + ch] = q;
    }
}

/* The elementwise passes run on a 2-D grid: x over channels, y over rows,
 * so no thread divides an index by C. */
struct bn_grid {
    dim3 grid, block;
};

static bn_grid bn_apply_grid(long P, int C)
{
    int bx = C >= 256 ? 256 : (C + 31) / 32 * 32, by = 256 / bx;
    long gy = (P + by - 1) / by;
    bn_grid g;
    g.block = dim3(bx, by);
    g.grid = dim3((C + bx - 1) / bx, (unsigned)(gy < 4096 ? gy : 4096));
    return g;
}

#define BN_ROWS_LOOP(P)                                                                        \
    for (long r = (long)blockIdx.y * blockDim.y + threadIdx.y; r < (P);                        \
         r += (long)gridDim.y * blockDim.y)

/* y = x * scale[ch] + offset[ch] */
__global__ void bn_apply_kernel(float *y, const float *x, const float *scale,
                                const float *offset, long P, int C)
{
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= C)
        return;
    float sc = scale[ch], off = offset[ch];
    BN_ROWS_LOOP(P)
    {
        size_t i = (size_t)r * C + ch;
        y[i] = __fadd_rn(__fmul_rn(x[i], sc), off);
    }
}

/* Training: y = (x - mean[ch]) * scale[ch] + beta[ch], as bn.c and PyTorch's
 * training kernel (folding the mean into an offset cancels badly when
 * |mean| >> std). */
__global__ void bn_apply_centered_kernel(float *y, const float *x, const float *mean,
                                         const float *scale, const float *beta, long P, int C)
{
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= C)
        return;
    float m = mean[ch], sc = scale[ch], b = beta[ch];
    BN_ROWS_LOOP(P)
    {
        size_t i = (size_t)r * C + ch;
        y[i] = __fadd_rn(__fmul_rn(__fsub_rn(x[i], m), sc), b);
    }
}

/* Channel ch's sums of bn_reduce_kernel's partials, in chunk order. */
__device__ inline void bn_chunk_sums(double *s, double *q, const double *ps, const double *pq,
                                     int C, int ch, int chunks)
{
    *s = 0.0;
    *q = 0.0;
    for (int k = 0; k < chunks; k++) {
        *s += ps[(size_t)k * C + ch];
        *q += pq[(size_t)k * C + ch];
    }
}

__global__ void bn_stats_kernel(float *scale, float *save_mean, float *save_rstd,
                                float *running_mean, float *running_var, const double *ps,
                                const double *pq, const float *x, const float *gamma, long P,
                                int C, int chunks, float momentum, float eps)
{
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= C)
        return;
    double s, q;
    bn_chunk_sums(&s, &q, ps, pq, C, ch, chunks);
    double dm = s / (double)P, var = q / (double)P - dm * dm;
    if (var < 0)
        var = 0;
    double mean = (double)x[ch] + dm;
    float rstd = (float)(1.0 / sqrt(var + (double)eps));
    save_mean[ch] = (float)mean;
    save_rstd[ch] = rstd;
    double unbiased = P > 1 ? var * (double)P / (double)(P - 1) : var;
    float keep = 1.0f - momentum;
    running_mean[ch] =
        __fadd_rn(__fmul_rn(keep, running_mean[ch]), __fmul_rn(momentum, (float)mean));
    running_var[ch] =
        __fadd_rn(__fmul_rn(keep, running_var[ch]), __fmul_rn(momentum, (float)unbiased));
    scale[ch] = __fmul_rn(gamma[ch], rstd);
}

__global__ void bn_eval_coef_kernel(float *scale, float *offset, const float *gamma,
                                    const float *beta, const float *running_mean,
                                    const float *running_var, int C, float eps)
{
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= C)
        return;
    float rstd = (float)(1.0 / sqrt((double)running_var[ch] + (double)eps));
    float sc = __fmul_rn(gamma[ch], rstd);
    scale[ch] = sc;
    offset[ch] = __fsub_rn(beta[ch], __fmul_rn(running_mean[ch], sc));
}

/* dbeta += sum dy, dgamma += sum dy*xhat; dx = a*dy + k1*(x - mean) + k2. */
__global__ void bn_bwd_coef_kernel(float *coef, float *dgamma, float *dbeta, const double *ps,
                                   const double *pq, const float *save_rstd, const float *gamma,
                                   long P, int C, int chunks)
{
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= C)
        return;
    double sdy, sdyx;
    bn_chunk_sums(&sdy, &sdyx, ps, pq, C, ch, chunks);
    double rstd = save_rstd[ch], g = gamma[ch];
    dbeta[ch] = __fadd_rn(dbeta[ch], (float)sdy);
    dgamma[ch] = __fadd_rn(dgamma[ch], (float)(sdyx * rstd));
    coef[ch] = (float)(g * rstd);
    coef[C + ch] = (float)(-g * rstd * rstd * rstd * sdyx / (double)P);
    coef[2 * C + ch] = (float)(-g * rstd * sdy / (double)P);
}

__global__ void bn_bwd_apply_kernel(float *dx, const float *dy, const float *x,
                                    const float *mean, const float *coef, long P, int C)
{
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= C)
        return;
    float a = coef[ch], k1 = coef[C + ch], k2 = coef[2 * C + ch], m = mean[ch];
    BN_ROWS_LOOP(P)
    {
        size_t i = (size_t)r * C + ch;
        float t = __fadd_rn(__fmul_rn(a, dy[i]), __fmul_rn(k1, __fsub_rn(x[i], m)));
        dx[i] = __fadd_rn(t, k2);
    }
}

/* bn_reduce_kernel<MODE>'s per-chunk partial sums over P in a workspace
 * (2 x chunks x C doubles, *ps and *pq) that leaves `floats` per-channel
 * coefficients after them (*coef); false when a step failed. */
template <int MODE>
static bool bn_reduce(pk_cuda_ctx *cs, const float *x, const float *dy, const float *mean,
                      long P, int C, int floats, double **ps, double **pq, float **coef,
                      int *chunks)
{
    int nc = bn_chunks(P, C), tiles = (C + BN_TX - 1) / BN_TX;
    size_t nd = (size_t)nc * C;
    char *w =
        (char *)pk_cuda_workspace(cs, 2 * nd * sizeof(double) + (size_t)floats * sizeof(float));
    if (!w)
        return false;
    *ps = (double *)w;
    *pq = *ps + nd;
    *coef = (float *)(*pq + nd);
    *chunks = nc;
    long rpc = (P + nc - 1) / nc;
    bn_reduce_kernel<MODE><<<dim3(tiles, nc), dim3(BN_TX, BN_TY), 0, cs->stream>>>(
        *ps, *pq, x, dy, mean, P, C, rpc);
    return PK_CU_LAUNCH(cs);
}

extern "C" void pk_cuda_bn_forward_train(pk_ctx *c, float *y, float *save_mean,
                                         float *save_rstd, const float *x, const float *gamma,
                                         const float *beta, float *running_mean,
                                         float *running_var, long P, int C, float momentum,
                                         float eps)
{
    pk_cuda_ctx *cs = pk_cuda_enter(c);
    double *ps, *pq;
    float *coef;
    int chunks;
    if (!cs || P <= 0 || C <= 0 ||
        !bn_reduce<0>(cs, x, NULL, NULL, P, C, C, &ps, &pq, &coef, &chunks))
        return;
    bn_stats_kernel<<<(C + 127) / 128, 128, 0, cs->stream>>>(
        coef, save_mean, save_rstd, running_mean, running_var, ps, pq, x, gamma, P, C, chunks,
        momentum, eps);
    if (!PK_CU_LAUNCH(cs))
        return;
    bn_grid g = bn_apply_grid(P, C);
    bn_apply_centered_kernel<<<g.grid, g.block, 0, cs->stream>>>(y, x, save_mean, coef, beta, P,
                                                                 C);
    PK_CU_LAUNCH(cs);
}

extern "C" void pk_cuda_bn_forward_eval(pk_ctx *c, float *y, const float *x, const float *gamma,
                                        const float *beta, const float *running_mean,
                                        const float *running_var, long P, int C, float eps)
{
    pk_cuda_ctx *cs = pk_cuda_enter(c);
    if (!cs || P <= 0 || C <= 0)
        return;
    float *coef = (float *)pk_cuda_workspace(cs, 2 * (size_t)C * sizeof(float));
    if (!coef)
        return;
    bn_eval_coef_kernel<<<(C + 127) / 128, 128, 0, cs->stream>>>(
        coef, coef + C, gamma, beta, running_mean, running_var, C, eps);
    if (!PK_CU_LAUNCH(cs))
        return;
    bn_grid g = bn_apply_grid(P, C);
    bn_apply_kernel<<<g.grid, g.block, 0, cs->stream>>>(y, x, coef, coef + C, P, C);
    PK_CU_LAUNCH(cs);
}

extern "C" void pk_cuda_bn_backward(pk_ctx *c, float *dx, float *dgamma, float *dbeta,
                                    const float *dy, const float *x, const float *save_mean,
                                    const float *save_rstd, const float *gamma, long P, int C)
{
    pk_cuda_ctx *cs = pk_cuda_enter(c);
    double *ps, *pq;
    float *coef;
    int chunks;
    if (!cs || P <= 0 || C <= 0 ||
        !bn_reduce<1>(cs, x, dy, save_mean, P, C, 3 * C, &ps, &pq, &coef, &chunks))
        return;
    bn_bwd_coef_kernel<<<(C + 127) / 128, 128, 0, cs->stream>>>(coef, dgamma, dbeta, ps, pq,
                                                                save_rstd, gamma, P, C, chunks);
    if (!PK_CU_LAUNCH(cs) || !dx)
        return;
    bn_grid g = bn_apply_grid(P, C);
    bn_bwd_apply_kernel<<<g.grid, g.block, 0, cs->stream>>>(dx, dy, x, save_mean, coef, P, C);
    PK_CU_LAUNCH(cs);
}
