/* One axis of the bilinear resize with align_corners=True (resize.c), shared
 * with the loss step that upsamples the logits as it goes (loss_branch.c). */
#ifndef PSPKD_RESIZE_LERP_H
#define PSPKD_RESIZE_LERP_H

typedef struct pk_lerp1d {
    int i0, i1;
    float l1; /* weight of i1; i0 gets 1 - l1 */
} pk_lerp1d;

static inline pk_lerp1d pk_lerp_at(int dst, int in, int out)
{
    float scale = out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.0f;
    float src = scale * (float)dst;
    int i0 = (int)src;
    if (i0 > in - 1) /* guards rounding at the last pixel */
        i0 = in - 1;
    pk_lerp1d r = {i0, i0 < in - 1 ? i0 + 1 : i0, src - (float)i0};
    return r;
}

/* The bilinear value from the four neighbours a (i0, j0), b (i0, j1),
 * c (i1, j0), d (i1, j1) with row weights h0, h1 and column weights w0, w1,
 * in pk_resize_forward's order (the loss step must match it bit for bit). */
static inline float pk_bilerp(float h0, float h1, float w0, float w1, float a, float b, float c,
                              float d)
{
    return h0 * (w0 * a + w1 * b) + h1 * (w0 * c + w1 * d);
}

#endif
