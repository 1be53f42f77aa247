/* CUDA twin of lib/ops/resize.c: bilinear resize with align_corners=True on
 * NHWC tensors (PyTorch's upsample_bilinear2d source positions, computed
 * with the CPU's float formula). The backward is a gather, not atomics:
 * each input pixel walks the output pixels whose sources include it, so
 * the result is the same on every run. */
#include "ops/cuda_common.cuh"

#define RS_TX 32 /* channels per block */
#define RS_TY 8  /* lanes over output columns (forward) or rows (backward) */

struct lerp1d {
    int i0, i1;
    float l1; /* weight of i1; i0 gets 1 - l1 */
};

__device__ inline float lerp_scale(int in, int out)
{
    return out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.0f;
}

__device__ inline lerp1d lerp_at(int dst, int in, float scale)
{
    float src = scale * (float)dst;
    int i0 = (int)src;
    if (i0 > in - 1)
        i0 = in - 1;
    lerp1d r = {i0, i0 < in - 1 ? i0 + 1 : i0, src - (float)i0};
    return r;
}

/* Outputs [*lo, *hi] whose two sources may include input t: a superset
 * (one index of margin each side against float rounding); the caller
 * checks each exactly. */
__device__ inline void sources_of(int t, int out, float scale, int *lo, int *hi)
{
    if (scale == 0.0f) { /* every output reads input 0 (and input 1 with weight 0) */
        *lo = 0;
        *hi = t <= 1 ? out - 1 : -1;
        return;
    }
    float a = floorf((float)(t - 1) / scale) - 1.0f, b = ceilf((float)(t + 1) / scale) + 1.0f;
    *lo = a < 0.0f ? 0 : (int)a;
    *hi = b > (float)(out - 1) ? out - 1 : (int)b;
}

static dim3 rs_grid(int ch, long rows)
{
    return dim3((ch + RS_TX - 1) / RS_TX, (unsigned)(rows < 65535 ? rows : 65535));
}

__global__ void resize_fwd_kernel(float *y, const float *x, int n, int h, int w, int ch, int ho,
                                  int wo)
{
    int c = blockIdx.x * RS_TX + threadIdx.x;
    if (c >= ch)
        return;
    float sh = lerp_scale(h, ho), sw = lerp_scale(w, wo);
    for (long r = blockIdx.y; r < (long)n * ho; r += gridDim.y) {
        int b = (int)(r / ho), oh = (int)(r % ho);
        lerp1d lh = lerp_at(oh, h, sh);
        const float *x0 = x + ((size_t)b * h + lh.i0) * w * ch + c;
        const float *x1 = x + ((size_t)b * h + lh.i1) * w * ch + c;
        float h1 = lh.l1, h0 = 1.0f - h1;
        for (int ow = threadIdx.y; ow < wo; ow += RS_TY) {
            lerp1d lw = lerp_at(ow, w, sw);
            float w1 = lw.l1, w0 = 1.0f - w1;
            size_t a = (size_t)lw.i0 * ch, bb = (size_t)lw.i1 * ch;
            y[((size_t)r * wo + ow) * ch + c] =
                h0 * (w0 * x0[a] + w1 * x0[bb]) + h1 * (w0 * x1[a] + w1 * x1[bb]);
        }
    }
}

/* One block row per input pixel (b, ih, iw); the RS_TY lanes split the
 * candidate output rows and their sums are added in lane order. */
__global__ void resize_bwd_kernel(float *dx, const float *dy, int n, int h, int w, int ch,
                                  int ho, int wo)
{
    __shared__ float part[RS_TY][RS_TX];
    int c = blockIdx.x * RS_TX + threadIdx.x;
    float sh = lerp_scale(h, ho), sw = lerp_scale(w, wo);
    for (long r = blockIdx.y; r < (long)n * h * w; r += gridDim.y) {
        int b = (int)(r / ((long)h * w)), ih = (int)(r / w % h), iw = (int)(r % w);
        int oh0, oh1, ow0, ow1;
        sources_of(ih, ho, sh, &oh0, &oh1);
        sources_of(iw, wo, sw, &ow0, &ow1);
        float acc = 0.0f;
        if (c < ch) {
            for (int oh = oh0 + threadIdx.y; oh <= oh1; oh += RS_TY) {
                lerp1d lh = lerp_at(oh, h, sh);
                if (lh.i0 != ih && lh.i1 != ih)
                    continue;
                float wt = (lh.i0 == ih ? 1.0f - lh.l1 : 0.0f) + (lh.i1 == ih ? lh.l1 : 0.0f);
                const float *g = dy + ((size_t)b * ho + oh) * wo * ch + c;
                for (int ow = ow0; ow <= ow1; ow++) {
                    lerp1d lw = lerp_at(ow, w, sw);
                    if (lw.i0 == iw)
                        acc += wt * (1.0f - lw.l1) * g[(size_t)ow * ch];
                    if (lw.i1 == iw)
                        acc += wt * lw.l1 * g[(size_t)ow * ch];
                }
            }
        }
        part[threadIdx.y][threadIdx.x] = acc;
        __syncthreads();
        if (threadIdx.y == 0 && c < ch) {
            for (int t = 1; t < RS_TY; t++)
                acc += part[t][threadIdx.x];
            dx[(size_t)r * ch + c] = acc;
        }
        __syncthreads();
    }
}

extern "C" void pk_cuda_resize_forward(pk_ctx *c, float *y, const float *x, int n, int h, int w,
                                       int ch, int ho, int wo)
{
    pk_cuda_ctx *cs = pk_cuda_enter(c);
    if (!cs || n <= 0 || h <= 0 || w <= 0 || ch <= 0 || ho <= 0 || wo <= 0)
        return;
    resize_fwd_kernel<<<rs_grid(ch, (long)n * ho), dim3(RS_TX, RS_TY), 0, cs->stream>>>(
        y, x, n, h, w, ch, ho, wo);
    PK_CU_LAUNCH(cs);
}

extern "C" void pk_cuda_resize_backward(pk_ctx *c, float *dx, const float *dy, int n, int h,
                                        int w, int ch, int ho, int wo)
{
    pk_cuda_ctx *cs = pk_cuda_enter(c);
    if (!cs || !dx || n <= 0 || h <= 0 || w <= 0 || ch <= 0)
        return;
    if (ho <= 0 || wo <= 0) { /* no output: the gradient is zero */
        PK_CU(cs, cudaMemsetAsync(dx, 0, (size_t)n * h * w * ch * sizeof *dx, cs->stream));
        return;
    }
    resize_bwd_kernel<<<rs_grid(ch, (long)n * h * w), dim3(RS_TX, RS_TY), 0, cs->stream>>>(
        dx, dy, n, h, w, ch, ho, wo);
    PK_CU_LAUNCH(cs);
}
