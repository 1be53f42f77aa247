/* Bilinear resize with align_corners=True on NHWC tensors, any sizes
 * (1 -> n and n -> 1 included), following PyTorch's upsample_bilinear2d:
 * src = dst * (in-1)/(out-1) (0 when out == 1), i0 = floor(src),
 * i1 = min(i0+1, in-1), weight of i1 = src - i0. */
#include "ops/ops.h"
#include "ops/resize_lerp.h"
#include "ops/ops_cuda.h"

#include <string.h>

void pk_resize_forward(pk_ctx *c, float *y, const float *x, int n, int h, int w, int ch,
                       int ho, int wo)
{
    PK_ON_CUDA(c, pk_cuda_resize_forward(c, y, x, n, h, w, ch, ho, wo));
    long rows = (long)n * ho;
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) if (rows * wo * ch > 32768)
    for (long r = 0; r < rows; r++) {
        int b = (int)(r / ho), oh = (int)(r % ho);
        pk_lerp1d lh = pk_lerp_at(oh, h, ho);
        const float *x0 = x + ((long)b * h + lh.i0) * w * ch;
        const float *x1 = x + ((long)b * h + lh.i1) * w * ch;
        float *yr = y + r * wo * ch;
        float h1 = lh.l1, h0 = 1.0f - h1;
        for (int ow = 0; ow < wo; ow++) {
            pk_lerp1d lw = pk_lerp_at(ow, w, wo);
            float w1 = lw.l1, w0 = 1.0f - w1;
            const float *a = x0 + (long)lw.i0 * ch, *bb = x0 + (long)lw.i1 * ch;
            const float *cc = x1 + (long)lw.i0 * ch, *d = x1 + (long)lw.i1 * ch;
            float *yp = yr + (long)ow * ch;
            for (int k = 0; k < ch; k++)
                yp[k] = pk_bilerp(h0, h1, w0, w1, a[k], bb[k], cc[k], d[k]);
        }
    }
}

/* The adjoint of the forward. Scattering into dx would race, so each
 * thread owns whole input rows (b, ih) and gathers from the output rows
 * whose two source rows include ih, always in the same order: the result
 * is identical for any thread count. */
void pk_resize_backward(pk_ctx *c, float *dx, const float *dy, int n, int h, int w, int ch,
                        int ho, int wo)
{
    PK_ON_CUDA(c, pk_cuda_resize_backward(c, dx, dy, n, h, w, ch, ho, wo));
    long rows = (long)n * h;
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) if (rows * w * ch > 32768)
    for (long r = 0; r < rows; r++) {
        int b = (int)(r / h), ih = (int)(r % h);
        float *dxr = dx + r * w * ch;
        memset(dxr, 0, (size_t)w * (size_t)ch * sizeof *dxr);
        for (int oh = 0; oh < ho; oh++) {
            pk_lerp1d lh = pk_lerp_at(oh, h, ho);
            float wt = 0.0f;
            if (lh.i0 == ih)
                wt += 1.0f - lh.l1;
            if (lh.i1 == ih)
                wt += lh.l1;
            if (lh.i0 != ih && lh.i1 != ih)
                continue;
            const float *dyr = dy + ((long)b * ho + oh) * wo * ch;
            for (int ow = 0; ow < wo; ow++) {
                pk_lerp1d lw = pk_lerp_at(ow, w, wo);
                float g0 = wt * (1.0f - lw.l1), g1 = wt * lw.l1;
                const float *g = dyr + (long)ow * ch;
                float *d0 = dxr + (long)lw.i0 * ch, *d1 = dxr + (long)lw.i1 * ch;
                for (int k = 0; k < ch; k++) {
                    d0[k] += g0 * g[k];
                    d1[k] += g1 * g[k];
                }
            }
        }
    }
}
