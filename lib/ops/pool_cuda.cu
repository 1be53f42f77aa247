/* CUDA twin of lib/ops/pool.c: max pooling (PyTorch's -inf padding, first
 * maximum in window order, NaN wins; argmax as the flat index in the
 * sample's h*w*c plane) and adaptive average pooling (floor/ceil bins).
 * Blocks are 32 channels wide (a warp reads one 128-byte run of a pixel)
 * and walk pixels along y, so no thread divides an element index. */
#include "ops/cuda_common.cuh"

#include <math.h>

#define PL_TX 32
#define PL_TY 8

/* Rows of the grid's y dimension: blockIdx.y strides over `rows`. */
#define PL_ROWS_LOOP(var, rows) for (long var = blockIdx.y; var < (rows); var += gridDim.y)

static dim3 pl_grid(int ch, long rows)
{
    return dim3((ch + PL_TX - 1) / PL_TX, (unsigned)(rows < 65535 ? rows : 65535));
}

/* ---- max pool ------------------------------------------------------------ */
__global__ void maxpool_fwd_kernel(float *y, int32_t *argmax, const float *x, int n, int h,
                                   int w, int ch, int k, int stride, int pad, int ho, int wo)
{
    int c = blockIdx.x * PL_TX + threadIdx.x;
    if (c >= ch)
        return;
    PL_ROWS_LOOP(r, (long)n * ho)
    {
        int b = (int)(r / ho), oh = (int)(r % ho);
        const float *xs = x + (size_t)b * h * w * ch;
        int ih0 = oh * stride - pad, ih1 = ih0 + k;
        ih0 = ih0 < 0 ? 0 : ih0;
        ih1 = ih1 > h ? h : ih1;
        for (int ow = threadIdx.y; ow < wo; ow += PL_TY) {
            int iw0 = ow * stride - pad, iw1 = iw0 + k;
            iw0 = iw0 < 0 ? 0 : iw0;
            iw1 = iw1 > w ? w : iw1;
            float m = -INFINITY;
            int32_t idx = (int32_t)(((long)ih0 * w + iw0) * ch + c);
            for (int ih = ih0; ih < ih1; ih++)
                for (int iw = iw0; iw < iw1; iw++) {
                    int32_t at = (int32_t)(((long)ih * w + iw) * ch + c);
                    float v = xs[at];
                    if (v > m || isnan(v)) {
                        m = v;
                        idx = at;
                    }
                }
            size_t o = ((size_t)r * wo + ow) * ch + c;
            y[o] = m;
            argmax[o] = idx;
        }
    }
}

/* dx starts at zero; each output adds its gradient at its argmax. An input
 * that wins several overlapping windows receives them in any order. */
__global__ void maxpool_bwd_kernel(float *dx, const float *dy, const int32_t *argmax, int n,
                                   size_t plane, int ch, int ho, int wo)
{
    int c = blockIdx.x * PL_TX + threadIdx.x;
    if (c >= ch)
        return;
    PL_ROWS_LOOP(r, (long)n * ho)
    {
        int b = (int)(r / ho);
        float *dxs = dx + (size_t)b * plane;
        for (int ow = threadIdx.y; ow < wo; ow += PL_TY) {
            size_t o = ((size_t)r * wo + ow) * ch + c;
            atomicAdd(dxs + argmax[o], dy[o]);
        }
    }
}

extern "C" void pk_cuda_maxpool_forward(pk_ctx *c, float *y, int32_t *argmax, const float *x,
                                        int n, int h, int w, int ch, int k, int stride, int pad)
{
    pk_cuda_ctx *cs = pk_cuda_enter(c);
    int ho = pk_pool_out_size(h, k, stride, pad), wo = pk_pool_out_size(w, k, stride, pad);
    if (!cs || n <= 0 || ho <= 0 || wo <= 0 || ch <= 0)
        return;
    maxpool_fwd_kernel<<<pl_grid(ch, (long)n * ho), dim3(PL_TX, PL_TY), 0, cs->stream>>>(
        y, argmax, x, n, h, w, ch, k, stride, pad, ho, wo);
    PK_CU_LAUNCH(cs);
}

extern "C" void pk_cuda_maxpool_backward(pk_ctx *c, float *dx, const float *dy,
                                         const int32_t *argmax, int n, int h, int w, int ch,
                                         int ho, int wo)
{
    pk_cuda_ctx *cs = pk_cuda_enter(c);
    if (!cs || !dx || n <= 0 || h <= 0 || w <= 0 || ch <= 0)
        return;
    size_t plane = (size_t)h * w * ch;
    if (!PK_CU(cs, cudaMemsetAsync(dx, 0, (size_t)n * plane * sizeof *dx, cs->stream)) ||
        ho <= 0 || wo <= 0)
        return;
    maxpool_bwd_kernel<<<pl_grid(ch, (long)n * ho), dim3(PL_TX, PL_TY), 0, cs->stream>>>(
        dx, dy, argmax, n, plane, ch, ho, wo);
    PK_CU_LAUNCH(cs);
}

/* ---- adaptive average pool ----------------------------------------------- */
__device__ inline int bin_start(int i, int in, int bins) { return (int)((long)i * in / bins); }
__device__ inline int bin_end(int i, int in, int bins)
{
    return (int)(((long)(i + 1) * in + bins - 1) / bins);
}

/* One block row per output cell (b, i, j); the PL_TY lanes split the bin's
 * rows and their double sums are added in lane order. */
__global__ void adapool_fwd_kernel(float *y, const float *x, int n, int h, int w, int ch,
                                   int bins)
{
    __shared__ double part[PL_TY][PL_TX];
    int c = blockIdx.x * PL_TX + threadIdx.x;
    long cells = (long)n * bins * bins;
    PL_ROWS_LOOP(r, cells)
    {
        int b = (int)(r / ((long)bins * bins)), i = (int)(r / bins % bins), j = (int)(r % bins);
        int h0 = bin_start(i, h, bins), h1 = bin_end(i, h, bins);
        int w0 = bin_start(j, w, bins), w1 = bin_end(j, w, bins);
        double s = 0.0;
        if (c < ch) {
            const float *xs = x + (size_t)b * h * w * ch + c;
            for (int ih = h0 + threadIdx.y; ih < h1; ih += PL_TY)
                for (int iw = w0; iw < w1; iw++)
                    s += xs[((size_t)ih * w + iw) * ch];
        }
        part[threadIdx.y][threadIdx.x] = s;
        __syncthreads();
        if (threadIdx.y == 0 && c < ch) {
            for (int t = 1; t < PL_TY; t++)
                s += part[t][threadIdx.x];
            double inv = 1.0 / ((double)(h1 - h0) * (w1 - w0));
            y[(size_t)r * ch + c] = (float)(s * inv);
        }
        __syncthreads();
    }
}

/* The bins covering input index t (a contiguous range): bin j covers t iff
 * start(j) <= t < end(j), i.e. floor(t*bins/in) <= j < ceil((t+1)*bins/in). */
__device__ inline void covering_bins(int t, int in, int bins, int *lo, int *hi)
{
    *lo = (int)((long)t * bins / in);
    int h = (int)(((long)(t + 1) * bins + in - 1) / in);
    *hi = h < bins ? h : bins;
}

/* Gather: each input pixel adds dy/area of every bin covering it, in bin
 * order as the CPU does. One block row per input row (b, ih). */
__global__ void adapool_bwd_kernel(float *dx, const float *dy, int n, int h, int w, int ch,
                                   int bins)
{
    int c = blockIdx.x * PL_TX + threadIdx.x;
    if (c >= ch)
        return;
    PL_ROWS_LOOP(r, (long)n * h)
    {
        int b = (int)(r / h), ih = (int)(r % h), i0, i1;
        covering_bins(ih, h, bins, &i0, &i1);
        const float *g = dy + (size_t)b * bins * bins * ch + c;
        for (int iw = threadIdx.y; iw < w; iw += PL_TY) {
            int j0, j1;
            covering_bins(iw, w, bins, &j0, &j1);
            float acc = 0.0f;
            for (int i = i0; i < i1; i++) {
                int h0 = bin_start(i, h, bins), h1 = bin_end(i, h, bins);
                if (ih < h0 || ih >= h1)
                    continue;
                for (int j = j0; j < j1; j++) {
                    int w0 = bin_start(j, w, bins), w1 = bin_end(j, w, bins);
                    if (iw < w0 || iw >= w1)
                        continue;
                    float inv = (float)(1.0 / ((double)(h1 - h0) * (w1 - w0)));
                    acc = __fadd_rn(acc, __fmul_rn(g[((size_t)i * bins + j) * ch], inv));
                }
            }
            dx[((size_t)r * w + iw) * ch + c] = acc;
        }
    }
}

extern "C" void pk_cuda_adapool_forward(pk_ctx *c, float *y, const float *x, int n, int h,
                                        int w, int ch, int bins)
{
    pk_cuda_ctx *cs = pk_cuda_enter(c);
    if (!cs || n <= 0 || h <= 0 || w <= 0 || ch <= 0 || bins <= 0)
        return;
    adapool_fwd_kernel<<<pl_grid(ch, (long)n * bins * bins), dim3(PL_TX, PL_TY), 0,
                         cs->stream>>>(y, x, n, h, w, ch, bins);
    PK_CU_LAUNCH(cs);
}

extern "C" void pk_cuda_adapool_backward(pk_ctx *c, float *dx, const float *dy, int n, int h,
                                         int w, int ch, int bins)
{
    pk_cuda_ctx *cs = pk_cuda_enter(c);
    if (!cs || !dx || n <= 0 || h <= 0 || w <= 0 || ch <= 0 || bins <= 0)
        return;
    adapool_bwd_kernel<<<pl_grid(ch, (long)n * h), dim3(PL_TX, PL_TY), 0, cs->stream>>>(
        dx, dy, n, h, w, ch, bins);
    PK_CU_LAUNCH(cs);
}
