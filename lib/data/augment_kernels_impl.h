/* Internal to augment.c: the per-row sampling and blur kernels (scalar, and
 * AVX2+FMA when the build targets it). Not a public API. */
#ifndef PSPKD_AUGMENT_KERNELS_H
#define PSPKD_AUGMENT_KERNELS_H

#include <stdint.h>
#include "data/augment.h"

/* The composed inverse map. Output pixel (x, y) sits at (x3, y3) =
 * (x + dx, y + dy) of the scaled frame (before padding); that frame point
 * comes from the scaled, unrotated point (x1, y1) = r * (x3, y3, 1) (flip
 * and inverse rotation), which is inside the rotated source when
 * -0.5 <= x1 < w1 - 0.5 (and y alike), and from the source point
 * x0 = (x1 + 0.5)/s - 0.5. */
typedef struct pk_aug_warp {
    int w, h;   /* source */
    int w1, h1; /* scaled frame */
    int dx, dy;
    float r[6];
    float inv_s;
} pk_aug_warp;

/* What a span writes: image values v*scale + bias where the point is
 * inside the rotated source, `fill` elsewhere (img may be NULL); label
 * nearest or `ignore` (label may be NULL); valid 0/1 (may be NULL). */
typedef struct pk_aug_span_dst {
    float *img;
    float scale[3], bias[3], fill[3];
    const uint8_t *src_label;
    uint8_t *label;
    uint8_t ignore;
    uint8_t *valid;
} pk_aug_span_dst;

/* n frame pixels (x3 .. x3+n-1, y3), all inside the scaled frame. */
void pk_aug_span(const pk_aug_warp *g, const uint8_t *rgb, int y3, int x3, int n,
                 const pk_aug_span_dst *d);

/* The same span's extra planes: pixels with valid[i] sample each set
 * (bilinear, clamped), the others get 0. out_index is the output pixel
 * index of the span's first pixel. */
void pk_aug_planes_span(const pk_aug_warp *g, int y3, int x3, int n, const uint8_t *valid,
                        const pk_plane_set *planes, int nplanes, size_t out_index);

/* d[i] = sum_t k[t] * s[i + t*step] for i < n (the 5-tap [1 4 6 4 1]/16). */
void pk_aug_blur5(float *d, const float *s, int n, int step);
/* The same, then normalised: d[i] = (blur - mean[c]) * inv_std[c] with c =
 * i % 3 (n a multiple of 3, interleaved RGB). */
void pk_aug_blur5_norm(float *d, const float *s, int n, int step, const float mean[3],
                       const float inv_std[3]);

#endif
