/* semseg's training transforms as one composed inverse warp (see
 * augment.h for the geometry and how it differs from four resamplings). */
#include "augment.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void pk_aug_opts_default(pk_aug_opts *o, int crop_h, int crop_w)
{
    memset(o, 0, sizeof *o);
    o->crop_h = crop_h;
    o->crop_w = crop_w;
    o->scale_min = 0.5f;
    o->scale_max = 2.0f;
    o->rotate_min = -10.0f;
    o->rotate_max = 10.0f;
    o->rotate_p = 0.5f;
    o->blur_p = 0.5f;
    o->flip_p = 0.5f;
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    for (int k = 0; k < 3; k++) {
        o->mean[k] = mean[k] * 255.0f;
        o->std[k] = std[k] * 255.0f;
    }
    o->ignore_label = 255;
}

static int prob_ok(float p) { return p >= 0.0f && p <= 1.0f; }

int pk_aug_opts_check(const pk_aug_opts *o, pk_err *e)
{
    if (o->crop_h < 1 || o->crop_w < 1 || o->crop_h > 16384 || o->crop_w > 16384)
        return pk_fail(e, PK_EINVAL, "augment: crop %dx%d out of range", o->crop_w,
                       o->crop_h);
    if (!(o->scale_min > 0.0f) || !(o->scale_max >= o->scale_min) || o->scale_max > 16.0f)
        return pk_fail(e, PK_EINVAL, "augment: scale range [%g, %g] invalid",
                       (double)o->scale_min, (double)o->scale_max);
    if (!(o->rotate_max >= o->rotate_min) || fabsf(o->rotate_min) > 360.0f ||
        fabsf(o->rotate_max) > 360.0f)
        return pk_fail(e, PK_EINVAL, "augment: rotate range [%g, %g] invalid",
                       (double)o->rotate_min, (double)o->rotate_max);
    if (!prob_ok(o->rotate_p) || !prob_ok(o->blur_p) || !prob_ok(o->flip_p))
        return pk_fail(e, PK_EINVAL, "augment: probabilities must lie in [0, 1]");
    for (int k = 0; k < 3; k++)
        if (!(o->std[k] > 0.0f) || !isfinite(o->mean[k]))
            return pk_fail(e, PK_EINVAL, "augment: std must be > 0 and mean finite");
    if (o->ignore_label < 0 || o->ignore_label > 255)
        return pk_fail(e, PK_EINVAL, "augment: ignore label %d not in 0..255",
                       o->ignore_label);
    return PK_OK;
}

uint64_t pk_aug_sample_seed(uint64_t seed, uint64_t epoch, uint64_t index)
{
    return pk_hash64(pk_hash64(pk_hash64(seed) ^ epoch) ^ index);
}

/* cv2.resize's output size for factor s (rounded, at least 1). */
static int scaled_size(int n, float s)
{
    long v = lrint((double)n * (double)s);
    return v < 1 ? 1 : (int)v;
}

static int imax(int a, int b) { return a > b ? a : b; }
static int imin(int a, int b) { return a < b ? a : b; }
static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Uniform integer in [0, n) from 64 bits (n >= 1). */
static int below(uint64_t bits, int n) { return (int)(((bits >> 32) * (uint64_t)n) >> 32); }

void pk_aug_draw(pk_aug_params *p, const pk_aug_opts *o, int w, int h, pk_rng *r)
{
    float us = pk_rng_u01(r), ur = pk_rng_u01(r), ua = pk_rng_u01(r);
    float ub = pk_rng_u01(r), uf = pk_rng_u01(r);
    uint64_t by = pk_rng_next(r), bx = pk_rng_next(r);
    memset(p, 0, sizeof *p);
    if (o->none) {
        p->scale = 1.0f;
    } else {
        p->scale = o->scale_min + (o->scale_max - o->scale_min) * us;
        p->rotate = ur < o->rotate_p;
        p->angle = o->rotate_min + (o->rotate_max - o->rotate_min) * ua;
        p->blur = ub < o->blur_p;
        p->flip = uf < o->flip_p;
    }
    int w1 = scaled_size(w, p->scale), h1 = scaled_size(h, p->scale);
    int ry = imax(h1, o->crop_h) - o->crop_h + 1, rx = imax(w1, o->crop_w) - o->crop_w + 1;
    if (o->none) {
        p->off_y = (ry - 1) / 2;
        p->off_x = (rx - 1) / 2;
    } else {
        p->off_y = below(by, ry);
        p->off_x = below(bx, rx);
    }
}

void pk_aug_ws_free(pk_aug_ws *ws)
{
    if (!ws)
        return;
    free(ws->buf);
    ws->buf = NULL;
    ws->cap = 0;
}

/* The composed inverse map. Output pixel (x, y) sits at (x3, y3) =
 * (x + dx, y + dy) of the scaled frame (before padding); that frame point
 * comes from the scaled, unrotated point (x1, y1) = r * (x3, y3, 1) (flip
 * and inverse rotation), and from the source point x0 = (x1+0.5)/s - 0.5. */
typedef struct warp {
    int w, h;   /* source */
    int w1, h1; /* scaled frame */
    int dx, dy;
    float r[6];
    float inv_s;
} warp;

static void warp_init(warp *g, const pk_aug_opts *o, const pk_aug_params *p, int w, int h)
{
    g->w = w;
    g->h = h;
    g->w1 = scaled_size(w, p->scale);
    g->h1 = scaled_size(h, p->scale);
    g->dx = p->off_x - imax(o->crop_w - g->w1, 0) / 2;
    g->dy = p->off_y - imax(o->crop_h - g->h1, 0) / 2;
    double a = 1.0, b = 0.0;
    if (p->rotate) {
        double t = (double)p->angle * (3.14159265358979323846 / 180.0);
        a = cos(t);
        b = sin(t);
    }
    /* x2 = f*x3 + fo (flip); cv2's rotation about c maps src -> dst by
     * dst = [a b; -b a](src - c) + c, so src = [a -b; b a](dst - c) + c. */
    double f = p->flip ? -1.0 : 1.0, fo = p->flip ? (double)(g->w1 - 1) : 0.0;
    double cx = g->w1 / 2.0, cy = g->h1 / 2.0;
    g->r[0] = (float)(a * f);
    g->r[1] = (float)(-b);
    g->r[2] = (float)(a * (fo - cx) + b * cy + cx);
    g->r[3] = (float)(b * f);
    g->r[4] = (float)a;
    g->r[5] = (float)(b * (fo - cx) - a * cy + cy);
    g->inv_s = (float)(1.0 / (double)p->scale);
}

/* Frame point -> source point; 0 when it falls outside the rotated source
 * (the rotation border). */
static inline int map_point(const warp *g, int x3, int y3, float *x0, float *y0)
{
    float fx = (float)x3, fy = (float)y3;
    float x1 = g->r[0] * fx + g->r[1] * fy + g->r[2];
    float y1 = g->r[3] * fx + g->r[4] * fy + g->r[5];
    if (!(x1 >= -0.5f && x1 < (float)g->w1 - 0.5f && y1 >= -0.5f &&
          y1 < (float)g->h1 - 0.5f))
        return 0;
    *x0 = (x1 + 0.5f) * g->inv_s - 0.5f;
    *y0 = (y1 + 0.5f) * g->inv_s - 0.5f;
    return 1;
}

/* Bilinear interpolation setup, clamped to [0, n-1]. */
typedef struct tap {
    int i0, i1;
    float a; /* weight of i1 */
} tap;

static inline tap tap_at(float x, int n)
{
    float f = floorf(x);
    int i = (int)f;
    tap t = {clampi(i, 0, n - 1), clampi(i + 1, 0, n - 1), x - f};
    return t;
}

static inline void sample_rgb(const uint8_t *rgb, int w, int h, float x, float y,
                              float out[3])
{
    tap tx = tap_at(x, w), ty = tap_at(y, h);
    const uint8_t *r0 = rgb + (size_t)ty.i0 * w * 3, *r1 = rgb + (size_t)ty.i1 * w * 3;
    const uint8_t *p00 = r0 + tx.i0 * 3, *p01 = r0 + tx.i1 * 3;
    const uint8_t *p10 = r1 + tx.i0 * 3, *p11 = r1 + tx.i1 * 3;
    for (int k = 0; k < 3; k++) {
        float top = (float)p00[k] + tx.a * (float)(p01[k] - p00[k]);
        float bot = (float)p10[k] + tx.a * (float)(p11[k] - p10[k]);
        out[k] = top + ty.a * (bot - top);
    }
}

static inline void sample_plane(const pk_plane_set *ps, float x0, float y0, float *out)
{
    float px = ps->m[0] * x0 + ps->m[1] * y0 + ps->m[2];
    float py = ps->m[3] * x0 + ps->m[4] * y0 + ps->m[5];
    tap tx = tap_at(px, ps->w), ty = tap_at(py, ps->h);
    int c = ps->c;
    const float *r0 = ps->data + (size_t)ty.i0 * ps->w * c;
    const float *r1 = ps->data + (size_t)ty.i1 * ps->w * c;
    const float *restrict p00 = r0 + (size_t)tx.i0 * c, *restrict p01 = r0 + (size_t)tx.i1 * c;
    const float *restrict p10 = r1 + (size_t)tx.i0 * c, *restrict p11 = r1 + (size_t)tx.i1 * c;
    float w11 = tx.a * ty.a, w10 = (1.0f - tx.a) * ty.a;
    float w01 = tx.a * (1.0f - ty.a), w00 = (1.0f - tx.a) * (1.0f - ty.a);
    for (int k = 0; k < c; k++)
        out[k] = w00 * p00[k] + w01 * p01[k] + w10 * p10[k] + w11 * p11[k];
}

/* OpenCV's BORDER_REFLECT_101 index. */
static int reflect101(int x, int n)
{
    if (n == 1)
        return 0;
    while (x < 0 || x >= n)
        x = x < 0 ? -x : 2 * (n - 1) - x;
    return x;
}

static int check_args(const pk_aug_opts *o, const pk_aug_params *p, const uint8_t *rgb,
                      int w, int h, const pk_plane_set *planes, int nplanes,
                      const float *out_image, pk_err *e)
{
    int rc = pk_aug_opts_check(o, e);
    if (rc)
        return rc;
    if (!rgb || !out_image || w < 1 || h < 1)
        return pk_fail(e, PK_EINVAL, "augment: empty %dx%d source or no output", w, h);
    if (!(p->scale > 0.0f) || !isfinite(p->scale) || !isfinite(p->angle))
        return pk_fail(e, PK_EINVAL, "augment: bad parameters (scale %g, angle %g)",
                       (double)p->scale, (double)p->angle);
    int w1 = scaled_size(w, p->scale), h1 = scaled_size(h, p->scale);
    if (p->off_x < 0 || p->off_y < 0 || p->off_x > imax(w1, o->crop_w) - o->crop_w ||
        p->off_y > imax(h1, o->crop_h) - o->crop_h)
        return pk_fail(e, PK_EINVAL, "augment: crop offset (%d, %d) outside the %dx%d frame",
                       p->off_x, p->off_y, w1, h1);
    if (nplanes < 0 || (nplanes > 0 && !planes))
        return pk_fail(e, PK_EINVAL, "augment: bad plane set count %d", nplanes);
    for (int i = 0; i < nplanes; i++) {
        const pk_plane_set *ps = &planes[i];
        if (!ps->data || !ps->out || ps->w < 1 || ps->h < 1 || ps->c < 1 ||
            ps->out_stride < ps->c)
            return pk_fail(e, PK_EINVAL,
                           "augment: plane set %d: %dx%dx%d, out stride %d invalid", i,
                           ps->w, ps->h, ps->c, ps->out_stride);
        for (int k = 0; k < 6; k++)
            if (!isfinite(ps->m[k]))
                return pk_fail(e, PK_EINVAL, "augment: plane set %d: non-finite map", i);
    }
    return PK_OK;
}

/* The blurred image over the part of the crop inside the scaled frame:
 * warps that rectangle plus a 2-pixel margin (reflect-101 at the frame's
 * edge), blurs it with [1 4 6 4 1]/16 both ways and writes it normalised. */
static int blur_image(const pk_aug_opts *o, const warp *g, const uint8_t *rgb, float *out,
                      pk_aug_ws *ws, pk_err *e)
{
    static const float k5[5] = {0.0625f, 0.25f, 0.375f, 0.25f, 0.0625f};
    int xlo = imax(0, -g->dx), xhi = imin(o->crop_w, g->w1 - g->dx);
    int ylo = imax(0, -g->dy), yhi = imin(o->crop_h, g->h1 - g->dy);
    if (xlo >= xhi || ylo >= yhi)
        return PK_OK;
    int rw = xhi - xlo, rh = yhi - ylo, bw = rw + 4, bh = rh + 4;
    size_t need = (size_t)bh * bw * 3 + (size_t)bh * rw * 3;
    if (ws->cap < need) {
        float *nb = realloc(ws->buf, need * sizeof *nb);
        if (!nb)
            return pk_fail(e, PK_ENOMEM, "augment: no memory for the blur buffer");
        ws->buf = nb;
        ws->cap = need;
    }
    float *b = ws->buf, *t = ws->buf + (size_t)bh * bw * 3;
    for (int j = 0; j < bh; j++) {
        int y3 = reflect101(ylo - 2 + j + g->dy, g->h1);
        float *row = b + (size_t)j * bw * 3;
        for (int i = 0; i < bw; i++) {
            int x3 = reflect101(xlo - 2 + i + g->dx, g->w1);
            float x0, y0;
            if (map_point(g, x3, y3, &x0, &y0))
                sample_rgb(rgb, g->w, g->h, x0, y0, row + i * 3);
            else
                memcpy(row + i * 3, o->mean, 3 * sizeof(float));
        }
    }
    for (int j = 0; j < bh; j++) {
        const float *s = b + (size_t)j * bw * 3;
        float *d = t + (size_t)j * rw * 3;
        for (int i = 0; i < rw * 3; i++)
            d[i] = k5[0] * s[i] + k5[1] * s[i + 3] + k5[2] * s[i + 6] + k5[3] * s[i + 9] +
                   k5[4] * s[i + 12];
    }
    float inv_std[3] = {1.0f / o->std[0], 1.0f / o->std[1], 1.0f / o->std[2]};
    for (int j = 0; j < rh; j++) {
        const float *s0 = t + (size_t)j * rw * 3;
        size_t st = (size_t)rw * 3;
        float *d = out + ((size_t)(ylo + j) * o->crop_w + xlo) * 3;
        for (int i = 0; i < rw * 3; i++) {
            float v = k5[0] * s0[i] + k5[1] * s0[i + st] + k5[2] * s0[i + 2 * st] +
                      k5[3] * s0[i + 3 * st] + k5[4] * s0[i + 4 * st];
            d[i] = (v - o->mean[i % 3]) * inv_std[i % 3];
        }
    }
    return PK_OK;
}

int pk_augment(const pk_aug_opts *o, const pk_aug_params *p, const uint8_t *rgb,
               const uint8_t *label, int w, int h, const pk_plane_set *planes,
               int nplanes, float *out_image, uint8_t *out_label, uint8_t *out_valid,
               pk_aug_ws *ws, pk_err *e)
{
    int rc = check_args(o, p, rgb, w, h, planes, nplanes, out_image, e);
    if (rc)
        return rc;
    warp g;
    warp_init(&g, o, p, w, h);
    float inv_std[3] = {1.0f / o->std[0], 1.0f / o->std[1], 1.0f / o->std[2]};
    uint8_t ignore = (uint8_t)o->ignore_label;
    int cw = o->crop_w, ch = o->crop_h;
    for (int y = 0; y < ch; y++) {
        int y3 = y + g.dy;
        int row_in = y3 >= 0 && y3 < g.h1;
        for (int x = 0; x < cw; x++) {
            size_t i = (size_t)y * cw + x;
            int x3 = x + g.dx;
            int in_frame = row_in && x3 >= 0 && x3 < g.w1;
            float x0 = 0.0f, y0 = 0.0f;
            int ok = in_frame && map_point(&g, x3, y3, &x0, &y0);
            float *im = out_image + i * 3;
            if (ok) {
                if (!p->blur) {
                    float v[3];
                    sample_rgb(rgb, w, h, x0, y0, v);
                    for (int k = 0; k < 3; k++)
                        im[k] = (v[k] - o->mean[k]) * inv_std[k];
                }
                if (label && out_label) {
                    int lx = clampi((int)floorf(x0 + 0.5f), 0, w - 1);
                    int ly = clampi((int)floorf(y0 + 0.5f), 0, h - 1);
                    out_label[i] = label[(size_t)ly * w + lx];
                }
                for (int s = 0; s < nplanes; s++)
                    sample_plane(&planes[s], x0, y0,
                                 planes[s].out + i * (size_t)planes[s].out_stride);
            } else {
                /* the mean pixel normalises to 0; the blur pass overwrites
                 * in-frame pixels (the rotation border blurs into them) */
                if (!p->blur || !in_frame)
                    im[0] = im[1] = im[2] = 0.0f;
                if (label && out_label)
                    out_label[i] = ignore;
                for (int s = 0; s < nplanes; s++)
                    memset(planes[s].out + i * (size_t)planes[s].out_stride, 0,
                           (size_t)planes[s].c * sizeof(float));
            }
            if (out_valid)
                out_valid[i] = (uint8_t)ok;
        }
    }
    if (p->blur) {
        pk_aug_ws local = {0};
        rc = blur_image(o, &g, rgb, out_image, ws ? ws : &local, e);
        pk_aug_ws_free(&local);
    }
    return rc;
}
