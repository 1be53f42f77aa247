/* semseg's training transforms as one composed inverse warp (see
 * augment.h for the geometry and how it differs from four resamplings). */
#include "data/augment.h"
#include "data/augment_kernels_impl.h"

#include <limits.h>
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

static void warp_init(pk_aug_warp *g, const pk_aug_opts *o, const pk_aug_params *p, int w,
                      int h)
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
    if ((long long)w * h * 3 > INT_MAX) /* the kernels index with 32-bit offsets */
        return pk_fail(e, PK_EINVAL, "augment: %dx%d source too large", w, h);
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
static int blur_image(const pk_aug_opts *o, const pk_aug_warp *g, const uint8_t *rgb,
                      float *out, pk_aug_ws *ws, pk_err *e)
{
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
    pk_aug_span_dst d = {0};
    for (int k = 0; k < 3; k++) {
        d.scale[k] = 1.0f;
        d.fill[k] = o->mean[k]; /* semseg's rotation border, blurred like the image */
    }
    /* buffer column i is output column xlo - 2 + i; the frame covers output
     * columns [-dx, w1 - dx): inside them one span, outside reflected */
    int fa = imax(xlo - 2, -g->dx), fb = imin(xhi + 2, g->w1 - g->dx);
    for (int j = 0; j < bh; j++) {
        int y3 = reflect101(ylo - 2 + j + g->dy, g->h1);
        float *row = b + (size_t)j * bw * 3;
        d.img = row + (size_t)(fa - (xlo - 2)) * 3;
        pk_aug_span(g, rgb, y3, fa + g->dx, fb - fa, &d);
        for (int x = xlo - 2; x < xhi + 2; x++) {
            if (x >= fa && x < fb)
                continue;
            d.img = row + (size_t)(x - (xlo - 2)) * 3;
            pk_aug_span(g, rgb, y3, reflect101(x + g->dx, g->w1), 1, &d);
        }
    }
    for (int j = 0; j < bh; j++)
        pk_aug_blur5(t + (size_t)j * rw * 3, b + (size_t)j * bw * 3, rw * 3, 3);
    float inv_std[3] = {1.0f / o->std[0], 1.0f / o->std[1], 1.0f / o->std[2]};
    for (int j = 0; j < rh; j++)
        pk_aug_blur5_norm(out + ((size_t)(ylo + j) * o->crop_w + xlo) * 3,
                          t + (size_t)j * rw * 3, rw * 3, rw * 3, o->mean, inv_std);
    return PK_OK;
}

/* Output pixels [x, x+n) of row y that no source pixel reaches. */
static void fill_pad(float *img, uint8_t *label, uint8_t *valid, uint8_t ignore,
                     const pk_plane_set *planes, int nplanes, size_t at, int n)
{
    if (n <= 0)
        return;
    if (img)
        memset(img + at * 3, 0, (size_t)n * 3 * sizeof(float)); /* the mean, normalised */
    if (label)
        memset(label + at, ignore, (size_t)n);
    if (valid)
        memset(valid + at, 0, (size_t)n);
    for (int s = 0; s < nplanes; s++)
        for (int i = 0; i < n; i++)
            memset(planes[s].out + (at + (size_t)i) * (size_t)planes[s].out_stride, 0,
                   (size_t)planes[s].c * sizeof(float));
}

int pk_augment(const pk_aug_opts *o, const pk_aug_params *p, const uint8_t *rgb,
               const uint8_t *label, int w, int h, const pk_plane_set *planes,
               int nplanes, float *out_image, uint8_t *out_label, uint8_t *out_valid,
               pk_aug_ws *ws, pk_err *e)
{
    int rc = check_args(o, p, rgb, w, h, planes, nplanes, out_image, e);
    if (rc)
        return rc;
    pk_aug_warp g;
    warp_init(&g, o, p, w, h);
    int cw = o->crop_w, ch = o->crop_h;
    if (!label)
        out_label = NULL;
    /* the planes need the valid mask even when the caller does not */
    uint8_t *vrow = NULL;
    if (nplanes > 0 && !out_valid) {
        vrow = malloc((size_t)cw);
        if (!vrow)
            return pk_fail(e, PK_ENOMEM, "augment: out of memory");
    }
    pk_aug_span_dst d = {0};
    for (int k = 0; k < 3; k++) {
        d.scale[k] = 1.0f / o->std[k];
        d.bias[k] = -o->mean[k] / o->std[k];
        d.fill[k] = 0.0f;
    }
    d.src_label = label;
    d.ignore = (uint8_t)o->ignore_label;
    /* output columns inside the scaled frame */
    int xlo = imax(0, -g.dx), xhi = imin(cw, g.w1 - g.dx);
    for (int y = 0; y < ch; y++) {
        int y3 = y + g.dy;
        size_t row = (size_t)y * cw;
        if (y3 < 0 || y3 >= g.h1 || xlo >= xhi) {
            fill_pad(out_image, out_label, out_valid, d.ignore, planes, nplanes, row, cw);
            continue;
        }
        fill_pad(out_image, out_label, out_valid, d.ignore, planes, nplanes, row, xlo);
        fill_pad(out_image, out_label, out_valid, d.ignore, planes, nplanes, row + xhi,
                 cw - xhi);
        size_t at = row + (size_t)xlo;
        d.img = p->blur ? NULL : out_image + at * 3; /* the blur pass writes it */
        d.label = out_label ? out_label + at : NULL;
        d.valid = out_valid ? out_valid + at : vrow;
        pk_aug_span(&g, rgb, y3, xlo + g.dx, xhi - xlo, &d);
        if (nplanes > 0)
            pk_aug_planes_span(&g, y3, xlo + g.dx, xhi - xlo, d.valid, planes, nplanes, at);
    }
    free(vrow);
    if (p->blur) {
        pk_aug_ws local = {0};
        rc = blur_image(o, &g, rgb, out_image, ws ? ws : &local, e);
        pk_aug_ws_free(&local);
    }
    return rc;
}
