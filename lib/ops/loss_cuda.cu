/* CUDA twin of lib/ops/loss.c: cross-entropy with ignore, temperature KL with
 * a pixel mask, SmoothL1 and MSE, each returning the unweighted loss and
 * ACCUMULATING weight * gradient (NULL: loss only).
 *
 * Three launches and one wait per loss: the valid pixels are counted
 * (integer atomics: exact), a per-pixel pass adds the gradient (its scale
 * needs that count, read on the device) and leaves one double partial sum
 * per block, and one block adds the partials in block order. The grid size
 * depends on P only, so the value is the same on every run and GPU.
 * Per-pixel softmaxes are in double, as on the CPU. */
#include "ops/cuda_common.cuh"

#include <assert.h>
#include <math.h>

#define LS_THREADS 256
#define LS_MAX_BLOCKS 1024

enum loss_kind { LS_CE, LS_KD, LS_SL1, LS_MSE };

struct loss_ws {
    unsigned long long *count;
    double *partial, *result;
    unsigned blocks;
};

static unsigned loss_blocks(long P)
{
    long b = (P + LS_THREADS - 1) / LS_THREADS;
    return (unsigned)(b < 1 ? 1 : b > LS_MAX_BLOCKS ? LS_MAX_BLOCKS : b);
}

__device__ inline bool ce_valid(uint8_t lab, int K, int ignore)
{
    return (int)lab != ignore && (int)lab < K;
}

/* Pixels that count: valid labels (labels != NULL) or mask != 0 (mask may
 * be NULL: all). */
__global__ void count_kernel(unsigned long long *count, const uint8_t *labels,
                             const uint8_t *mask, long P, int K, int ignore)
{
    __shared__ double sh[LS_THREADS];
    long n = 0;
    for (long p = (long)blockIdx.x * blockDim.x + threadIdx.x; p < P;
         p += (long)gridDim.x * blockDim.x)
        n += labels ? ce_valid(labels[p], K, ignore) : (!mask || mask[p]);
    double s = pk_block_sum((double)n, sh); /* exact: counts are far below 2^53 */
    if (threadIdx.x == 0 && s > 0)
        atomicAdd(count, (unsigned long long)s);
}

struct loss_args {
    float *grad;
    const float *s, *t;
    const uint8_t *labels, *mask;
    long P;
    int K, ignore;
    double weight, T;
};

/* One pixel's loss term; adds its gradient scaled by gscale. */
template <int KIND> __device__ double pixel_loss(const loss_args &a, long p, double gscale)
{
    int K = a.K;
    const float *x = a.s + (size_t)p * K;
    float *g = a.grad ? a.grad + (size_t)p * K : NULL;
    if (KIND == LS_CE) {
        int lab = a.labels[p];
        double m = x[0];
        for (int k = 1; k < K; k++)
            m = x[k] > m ? x[k] : m;
        double se = 0.0;
        for (int k = 0; k < K; k++)
            se += exp((double)x[k] - m);
        double lse = m + log(se);
        if (g)
            for (int k = 0; k < K; k++) {
                double d = exp((double)x[k] - lse) - (k == lab ? 1.0 : 0.0);
                g[k] = __fadd_rn(g[k], (float)(gscale * d));
            }
        return lse - (double)x[lab];
    }
    const float *t = a.t + (size_t)p * K;
    if (KIND == LS_KD) {
        double invT = 1.0 / a.T;
        double ms = (double)x[0] * invT, mt = (double)t[0] * invT;
        for (int k = 1; k < K; k++) {
            double zs = (double)x[k] * invT, zt = (double)t[k] * invT;
            ms = zs > ms ? zs : ms;
            mt = zt > mt ? zt : mt;
        }
        double ss = 0.0, st = 0.0;
        for (int k = 0; k < K; k++) {
            ss += exp((double)x[k] * invT - ms);
            st += exp((double)t[k] * invT - mt);
        }
        double lses = ms + log(ss), lset = mt + log(st), kl = 0.0;
        for (int k = 0; k < K; k++) {
            double ls = (double)x[k] * invT - lses, lt = (double)t[k] * invT - lset;
            double pt = exp(lt);
            if (pt > 0.0)
                kl += pt * (lt - ls);
            if (g)
                g[k] = __fadd_rn(g[k], (float)(gscale * (exp(ls) - pt)));
        }
        return kl;
    }
    double total = 0.0;
    for (int k = 0; k < K; k++) {
        double d = (double)x[k] - (double)t[k];
        if (KIND == LS_SL1) {
            double ad = fabs(d);
            total += ad < 1.0 ? 0.5 * d * d : ad - 0.5;
            if (g)
                g[k] = __fadd_rn(g[k], (float)(gscale * (ad < 1.0 ? d : (d > 0 ? 1.0 : -1.0))));
        } else {
            total += d * d;
            if (g)
                g[k] = __fadd_rn(g[k], (float)(gscale * d));
        }
    }
    return total;
}

template <int KIND>
__global__ void loss_kernel(double *partial, const unsigned long long *count, loss_args a)
{
    __shared__ double sh[LS_THREADS];
    unsigned long long nvalid = *count;
    /* d(loss)/d(input) scale: CE weight/n, KD weight*T/n (the T^2 of the
     * loss over the 1/T of the softmax), SmoothL1 weight/(n*K), MSE 2x that. */
    double gscale = 0.0;
    if (nvalid > 0) {
        double n = (double)nvalid;
        gscale = KIND == LS_CE    ? a.weight / n
                 : KIND == LS_KD  ? a.weight * a.T / n
                 : KIND == LS_SL1 ? a.weight / (n * a.K)
                                  : 2.0 * a.weight / (n * a.K);
    }
    double total = 0.0;
    for (long p = (long)blockIdx.x * blockDim.x + threadIdx.x; p < a.P;
         p += (long)gridDim.x * blockDim.x) {
        bool valid =
            KIND == LS_CE ? ce_valid(a.labels[p], a.K, a.ignore) : (!a.mask || a.mask[p]);
        if (valid)
            total += pixel_loss<KIND>(a, p, gscale);
    }
    double s = pk_block_sum(total, sh);
    if (threadIdx.x == 0)
        partial[blockIdx.x] = s;
}

/* result = mul * sum(partial) / (count * per), 0 without valid pixels. */
__global__ void finish_kernel(double *result, const double *partial, unsigned blocks,
                              const unsigned long long *count, double per, double mul)
{
    __shared__ double sh[LS_THREADS];
    double s = 0.0;
    for (unsigned i = threadIdx.x; i < blocks; i += blockDim.x)
        s += partial[i];
    s = pk_block_sum(s, sh);
    if (threadIdx.x == 0)
        *result = *count ? mul * s / ((double)*count * per) : 0.0;
}

template <int KIND> static float run_loss(pk_ctx *c, const loss_args &a)
{
    if (KIND == LS_CE || KIND == LS_KD) { /* the CPU twin's bound (ops.h), the same guard */
        assert(a.K <= PK_LOSS_KMAX);
        if (a.K > PK_LOSS_KMAX)
            return NAN;
    }
    pk_cuda_ctx *cs = pk_cuda_enter(c);
    if (!cs || a.P <= 0 || a.K <= 0)
        return 0.0f;
    unsigned blocks = loss_blocks(a.P);
    char *w = (char *)pk_cuda_workspace(cs, 16 + (size_t)(blocks + 1) * sizeof(double));
    if (!w)
        return 0.0f;
    unsigned long long *count = (unsigned long long *)w;
    double *partial = (double *)(w + 16), *result = partial + blocks;
    if (!PK_CU(cs, cudaMemsetAsync(count, 0, sizeof *count, cs->stream)))
        return 0.0f;
    count_kernel<<<loss_blocks(a.P), LS_THREADS, 0, cs->stream>>>(
        count, KIND == LS_CE ? a.labels : NULL, a.mask, a.P, a.K, a.ignore);
    if (!PK_CU_LAUNCH(cs))
        return 0.0f;
    loss_kernel<KIND><<<blocks, LS_THREADS, 0, cs->stream>>>(partial, count, a);
    if (!PK_CU_LAUNCH(cs))
        return 0.0f;
    double per = KIND == LS_SL1 || KIND == LS_MSE ? (double)a.K : 1.0;
    double mul = KIND == LS_KD ? a.T * a.T : 1.0;
    finish_kernel<<<1, LS_THREADS, 0, cs->stream>>>(result, partial, blocks, count, per, mul);
    if (!PK_CU_LAUNCH(cs) ||
        !PK_CU(cs, cudaMemcpyAsync(cs->host_scalar, result, sizeof(double),
                                   cudaMemcpyDeviceToHost, cs->stream)) ||
        !PK_CU(cs, cudaStreamSynchronize(cs->stream)))
        return 0.0f;
    return (float)cs->host_scalar[0];
}

extern "C" float pk_cuda_ce_loss(pk_ctx *c, float *dlogits, const float *logits,
                                 const uint8_t *labels, long P, int K, int ignore, float weight)
{
    loss_args a = {dlogits, logits, NULL, labels, NULL, P, K, ignore, (double)weight, 1.0};
    return run_loss<LS_CE>(c, a);
}

extern "C" float pk_cuda_kd_loss(pk_ctx *c, float *ds, const float *s, const float *t,
                                 const uint8_t *mask, long P, int K, float T, float weight)
{
    loss_args a = {ds, s, t, NULL, mask, P, K, 0, (double)weight, (double)T};
    return run_loss<LS_KD>(c, a);
}

extern "C" float pk_cuda_smoothl1_loss(pk_ctx *c, float *ds, const float *s, const float *t,
                                       const uint8_t *mask, long P, int K, float weight)
{
    loss_args a = {ds, s, t, NULL, mask, P, K, 0, (double)weight, 1.0};
    return run_loss<LS_SL1>(c, a);
}

extern "C" float pk_cuda_mse_loss(pk_ctx *c, float *ds, const float *s, const float *t,
                                  const uint8_t *mask, long P, int K, float weight)
{
    loss_args a = {ds, s, t, NULL, mask, P, K, 0, (double)weight, 1.0};
    return run_loss<LS_MSE>(c, a);
}
