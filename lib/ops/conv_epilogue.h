/* A convolution's folded epilogue (pk_conv_epilogue, ops.h) applied to one
 * pixel's channels [c0, c0 + nc) as they are written: the Winograd output
 * transform and the phase merge call it; oneDNN's kernels do the same with
 * their bias and post-ops. */
#ifndef PSPKD_CONV_EPILOGUE_H
#define PSPKD_CONV_EPILOGUE_H

#include "core/half.h"
#include "ops/ops.h"

#include <stddef.h>
#include <string.h>

/* pk_epilogue_row on at most PK_EPILOGUE_CHUNK channels (a stack array's
 * worth; the phase merge hands over whole pixels of up to 2048). */
#define PK_EPILOGUE_CHUNK 64

static inline void pk_epilogue_chunk(void *y, size_t at, const float *src,
                                     const pk_conv_epilogue *ep, int c0, int nc)
{
    const float *s = ep->scale + c0, *t = ep->shift + c0;
    float v[PK_EPILOGUE_CHUNK];
#pragma omp simd
    for (int q = 0; q < nc; q++)
        v[q] = src[q] * s[q] + t[q];
    if (ep->res && ep->res_bf16) {
        const uint16_t *r = (const uint16_t *)ep->res + at + c0;
#pragma omp simd
        for (int q = 0; q < nc; q++)
            v[q] += pk_bf16_to_f32_one(r[q]);
    } else if (ep->res) {
        const float *r = (const float *)ep->res + at + c0;
#pragma omp simd
        for (int q = 0; q < nc; q++)
            v[q] += r[q];
    }
    if (ep->relu) {
#pragma omp simd
        for (int q = 0; q < nc; q++)
            v[q] = v[q] > 0.0f ? v[q] : 0.0f;
    }
    if (ep->y_bf16) {
        uint16_t *d = (uint16_t *)y + at + c0;
#pragma omp simd
        for (int q = 0; q < nc; q++)
            d[q] = pk_f32_to_bf16_one(v[q]);
    } else {
        memcpy((float *)y + at + c0, v, (size_t)nc * sizeof(float));
    }
}

/* Channel c0 + q of the pixel whose channel 0 lies at offset `at` of y (and
 * of ep->res), for q < nc: y = ep(src[q]) in y's type (ep->y_bf16). ep->res
 * may be y itself. */
static inline void pk_epilogue_row(void *y, size_t at, const float *src,
                                   const pk_conv_epilogue *ep, int c0, int nc)
{
    for (int k = 0; k < nc; k += PK_EPILOGUE_CHUNK)
        pk_epilogue_chunk(y, at, src + k, ep, c0 + k,
                          nc - k < PK_EPILOGUE_CHUNK ? nc - k : PK_EPILOGUE_CHUNK);
}

#endif
