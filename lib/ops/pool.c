/* Max pooling and adaptive average pooling on NHWC activations, with
 * PyTorch's semantics: max pool pads with -inf, takes the first maximum in
 * window order on ties and propagates NaN; adaptive bins span
 * [floor(i*in/b), ceil((i+1)*in/b)). Channels are the innermost, vectorised
 * loop; threads split output rows (forward) or channel groups (max-pool
 * backward, so no two threads add into the same input element). */
#include "core/ctx_impl.h"
#include "ops/ops.h"
#include "ops/ops_cuda.h"

#include <math.h>
#include <string.h>

#define POOL_CBLK 256 /* channels handled together (accumulators on the stack) */
#define POOL_PAR_MIN 32768

int pk_pool_out_size(int in, int k, int stride, int pad)
{
    long num = (long)in + 2L * pad - k;
    if (in <= 0 || k <= 0 || stride <= 0 || pad < 0 || num < 0)
        return 0;
    return (int)(num / stride + 1);
}

/* ---- max pool ---------------------------------------------------------- */
void pk_maxpool_forward(pk_ctx *c, float *y, int32_t *argmax, const float *x, int n, int h,
                        int w, int ch, int k, int stride, int pad)
{
    PK_ON_CUDA(c, pk_cuda_maxpool_forward(c, y, argmax, x, n, h, w, ch, k, stride, pad));
    int ho = pk_pool_out_size(h, k, stride, pad), wo = pk_pool_out_size(w, k, stride, pad);
    long rows = (long)n * ho;
    if (ho <= 0 || wo <= 0 || ch <= 0)
        return;
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) \
    if (rows * wo * ch > POOL_PAR_MIN)
    for (long r = 0; r < rows; r++) {
        int b = (int)(r / ho), oh = (int)(r % ho);
        const float *xs = x + (size_t)b * h * w * ch;
        int ih0 = oh * stride - pad, ih1 = ih0 + k;
        ih0 = ih0 < 0 ? 0 : ih0;
        ih1 = ih1 > h ? h : ih1;
        for (int ow = 0; ow < wo; ow++) {
            int iw0 = ow * stride - pad, iw1 = iw0 + k;
            iw0 = iw0 < 0 ? 0 : iw0;
            iw1 = iw1 > w ? w : iw1;
            size_t o = ((size_t)r * wo + ow) * ch;
            for (int c0 = 0; c0 < ch; c0 += POOL_CBLK) {
                int nc = ch - c0 < POOL_CBLK ? ch - c0 : POOL_CBLK;
                float m[POOL_CBLK];
                int32_t idx[POOL_CBLK];
                /* Padding is -inf: it never wins; an all -inf window
                 * reports its first real element, as PyTorch does. */
                int32_t first = (int32_t)(((long)ih0 * w + iw0) * ch + c0);
                for (int j = 0; j < nc; j++) {
                    m[j] = -INFINITY;
                    idx[j] = first + j;
                }
                for (int ih = ih0; ih < ih1; ih++)
                    for (int iw = iw0; iw < iw1; iw++) {
                        int32_t base = (int32_t)(((long)ih * w + iw) * ch + c0);
                        const float *v = xs + base;
#pragma omp simd
                        for (int j = 0; j < nc; j++) {
                            /* v != v: NaN wins, as in PyTorch */
                            int take = v[j] > m[j] || v[j] != v[j];
                            m[j] = take ? v[j] : m[j];
                            idx[j] = take ? base + j : idx[j];
                        }
                    }
                memcpy(y + o + c0, m, (size_t)nc * sizeof *m);
                memcpy(argmax + o + c0, idx, (size_t)nc * sizeof *idx);
            }
        }
    }
}

void pk_maxpool_backward(pk_ctx *c, float *dx, const float *dy, const int32_t *argmax,
                         int n, int h, int w, int ch, int ho, int wo)
{
    PK_ON_CUDA(c, pk_cuda_maxpool_backward(c, dx, dy, argmax, n, h, w, ch, ho, wo));
    if (!dx || n <= 0 || h <= 0 || w <= 0 || ch <= 0)
        return;
    size_t plane = (size_t)h * w * ch, oplane = (size_t)ho * wo * ch;
    /* A channel's outputs only point at that channel's inputs: a thread
     * that owns (sample, 16-channel group) adds without races. */
    int groups = (ch + 15) / 16;
    long tasks = (long)n * groups;
    int par = (double)plane * n > POOL_PAR_MIN;
#pragma omp parallel num_threads(pk_ctx_threads(c)) if (par)
    {
#pragma omp for schedule(static)
        for (int b = 0; b < n; b++)
            memset(dx + (size_t)b * plane, 0, plane * sizeof *dx);
#pragma omp for schedule(static)
        for (long t = 0; t < tasks; t++) {
            int b = (int)(t / groups), c0 = (int)(t % groups) * 16;
            int c1 = c0 + 16 < ch ? c0 + 16 : ch;
            float *dxs = dx + (size_t)b * plane;
            const float *g = dy + (size_t)b * oplane;
            const int32_t *am = argmax + (size_t)b * oplane;
            for (size_t o = 0; o < oplane; o += (size_t)ch)
                for (int j = c0; j < c1; j++)
                    dxs[am[o + j]] += g[o + j];
        }
    }
}

/* ---- adaptive average pool --------------------------------------------- */
static int bin_start(int i, int in, int bins) { return (int)((long)i * in / bins); }
static int bin_end(int i, int in, int bins)
{
    return (int)(((long)(i + 1) * in + bins - 1) / bins);
}

void pk_adapool_forward(pk_ctx *c, float *y, const float *x, int n, int h, int w, int ch,
                        int bins)
{
    PK_ON_CUDA(c, pk_cuda_adapool_forward(c, y, x, n, h, w, ch, bins));
    if (n <= 0 || h <= 0 || w <= 0 || ch <= 0 || bins <= 0)
        return;
    long cells = (long)n * bins * bins;
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) \
    if ((double)n * h * w * ch > POOL_PAR_MIN)
    for (long r = 0; r < cells; r++) {
        int b = (int)(r / ((long)bins * bins)), i = (int)(r / bins % bins), j = (int)(r % bins);
        int h0 = bin_start(i, h, bins), h1 = bin_end(i, h, bins);
        int w0 = bin_start(j, w, bins), w1 = bin_end(j, w, bins);
        double inv = 1.0 / ((double)(h1 - h0) * (w1 - w0));
        const float *xs = x + (size_t)b * h * w * ch;
        for (int c0 = 0; c0 < ch; c0 += POOL_CBLK) {
            int nc = ch - c0 < POOL_CBLK ? ch - c0 : POOL_CBLK;
            double s[POOL_CBLK] = {0};
            for (int ih = h0; ih < h1; ih++)
                for (int iw = w0; iw < w1; iw++) {
                    const float *v = xs + ((size_t)ih * w + iw) * ch + c0;
#pragma omp simd
                    for (int q = 0; q < nc; q++)
                        s[q] += v[q];
                }
            float *out = y + (size_t)r * ch + c0;
#pragma omp simd
            for (int q = 0; q < nc; q++)
                out[q] = (float)(s[q] * inv);
        }
    }
}

/* Gathers, for every input pixel, dy/area of each bin that covers it (bins
 * overlap when the size does not divide), so rows are independent. */
void pk_adapool_backward(pk_ctx *c, float *dx, const float *dy, int n, int h, int w, int ch,
                         int bins)
{
    PK_ON_CUDA(c, pk_cuda_adapool_backward(c, dx, dy, n, h, w, ch, bins));
    if (!dx || n <= 0 || h <= 0 || w <= 0 || ch <= 0 || bins <= 0)
        return;
    long rows = (long)n * h;
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) \
    if ((double)n * h * w * ch > POOL_PAR_MIN)
    for (long r = 0; r < rows; r++) {
        int b = (int)(r / h), ih = (int)(r % h);
        const float *g = dy + (size_t)b * bins * bins * ch;
        for (int iw = 0; iw < w; iw++) {
            float *out = dx + ((size_t)r * w + iw) * ch;
            memset(out, 0, (size_t)ch * sizeof *out);
            for (int i = 0; i < bins; i++) {
                int h0 = bin_start(i, h, bins), h1 = bin_end(i, h, bins);
                if (ih < h0 || ih >= h1)
                    continue;
                for (int j = 0; j < bins; j++) {
                    int w0 = bin_start(j, w, bins), w1 = bin_end(j, w, bins);
                    if (iw < w0 || iw >= w1)
                        continue;
                    float inv = (float)(1.0 / ((double)(h1 - h0) * (w1 - w0)));
                    const float *gb = g + ((size_t)i * bins + j) * ch;
#pragma omp simd
                    for (int q = 0; q < ch; q++)
                        out[q] += gb[q] * inv;
                }
            }
        }
    }
}
