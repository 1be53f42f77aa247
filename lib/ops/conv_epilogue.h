/* A convolution's folded epilogue (pk_conv_epilogue, ops.h) applied to one
 * pixel's channels [c0, c0 + nc) as they are written: the Winograd output
 * transform and the phase merge call it; oneDNN's kernels do the same with
 * their bias and post-ops. */
#ifndef PSPKD_CONV_EPILOGUE_H
#define PSPKD_CONV_EPILOGUE_H

#include "ops/ops.h"

#include <stddef.h>

/* dst[q] = ep(src[q]) for channel c0 + q of the pixel whose channel 0 lies
 * at offset `at` of y (and of ep->res); src == dst is allowed, and so is
 * ep->res == y. */
static inline void pk_epilogue_row(float *dst, const float *src, const pk_conv_epilogue *ep,
                                   size_t at, int c0, int nc)
{
    const float *s = ep->scale + c0, *t = ep->shift + c0;
    const float *r = ep->res ? ep->res + at + c0 : NULL;
    if (r) {
#pragma omp simd
        for (int q = 0; q < nc; q++) {
            float v = src[q] * s[q] + t[q] + r[q];
            dst[q] = ep->relu && !(v > 0.0f) ? 0.0f : v;
        }
    } else {
#pragma omp simd
        for (int q = 0; q < nc; q++) {
            float v = src[q] * s[q] + t[q];
            dst[q] = ep->relu && !(v > 0.0f) ? 0.0f : v;
        }
    }
}

#endif
