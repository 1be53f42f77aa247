/* The training transforms: identities, padding values, label values,
 * extra planes moving with the image, blur kernel, rotation convention,
 * determinism. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/mman.h>
#include <unistd.h>

#include "data/augment.h"
#include "support.h"

static int failures;

/* Pre-normalisation pixel value of an output image element. */
static float unnorm(const pk_aug_opts *o, const float *im, size_t i, int k)
{
    return im[i * 3 + k] * o->std[k] + o->mean[k];
}

static uint8_t *noise_rgb(int w, int h, uint64_t seed)
{
    uint8_t *p = malloc((size_t)w * h * 3);
    pk_rng r = pk_rng_seed(seed);
    for (size_t i = 0; i < (size_t)w * h * 3; i++)
        p[i] = (uint8_t)pk_rng_below(&r, 256);
    return p;
}

/* Labels drawn from {3, 7, 11}: 255 never occurs in the source. */
static uint8_t *labels_3711(int w, int h, uint64_t seed)
{
    static const uint8_t v[3] = {3, 7, 11};
    uint8_t *p = malloc((size_t)w * h);
    pk_rng r = pk_rng_seed(seed);
    for (size_t i = 0; i < (size_t)w * h; i++)
        p[i] = v[pk_rng_below(&r, 3)];
    return p;
}

typedef struct outs {
    float *im;
    uint8_t *lb, *va;
} outs;

static outs outs_new(int cw, int ch)
{
    outs o = {malloc((size_t)cw * ch * 3 * sizeof(float)), malloc((size_t)cw * ch),
              malloc((size_t)cw * ch)};
    return o;
}
static void outs_free(outs *o)
{
    free(o->im);
    free(o->lb);
    free(o->va);
}

static int run(const pk_aug_opts *o, const pk_aug_params *p, const uint8_t *rgb,
               const uint8_t *lb, int w, int h, const pk_plane_set *ps, int np, outs *out)
{
    pk_err e = {0};
    int rc = pk_augment(o, p, rgb, lb, w, h, ps, np, out->im, out->lb, out->va, NULL, &e);
    if (rc)
        fprintf(stderr, "  pk_augment: %s\n", e.msg);
    return rc;
}

/* Scale 1, rotate 0 (fired), no flip, crop = image: every pixel equal. */
static void test_identity(void)
{
    int w = 37, h = 23;
    uint8_t *rgb = noise_rgb(w, h, 1), *lb = labels_3711(w, h, 2);
    pk_aug_opts o;
    pk_aug_opts_default(&o, h, w);
    pk_aug_params p = {.scale = 1.0f, .rotate = 1, .angle = 0.0f};
    outs out = outs_new(w, h);
    PK_CHECK(failures, run(&o, &p, rgb, lb, w, h, NULL, 0, &out) == 0, "identity run");
    double maxd = 0;
    int lbad = 0, vbad = 0;
    for (size_t i = 0; i < (size_t)w * h; i++) {
        for (int k = 0; k < 3; k++)
            maxd = fmax(maxd, fabs(unnorm(&o, out.im, i, k) - rgb[i * 3 + k]));
        lbad += out.lb[i] != lb[i];
        vbad += out.va[i] != 1;
    }
    PK_CHECK(failures, maxd < 1e-3, "identity image differs by %g", maxd);
    PK_CHECK(failures, lbad == 0 && vbad == 0, "identity: %d labels, %d valid differ", lbad,
             vbad);
    printf("  ok identity (scale 1, rotate 0): max |diff| %.2g\n", maxd);
    outs_free(&out);
    free(rgb);
    free(lb);
}

/* Flip maps x to w-1-x; flipping the flipped image gives the source back. */
static void test_flip_twice(void)
{
    int w = 30, h = 17;
    uint8_t *rgb = noise_rgb(w, h, 3), *lb = labels_3711(w, h, 4);
    uint8_t *rgb2 = malloc((size_t)w * h * 3);
    pk_aug_opts o;
    pk_aug_opts_default(&o, h, w);
    pk_aug_params p = {.scale = 1.0f, .flip = 1};
    outs a = outs_new(w, h), b = outs_new(w, h);
    PK_CHECK(failures, run(&o, &p, rgb, lb, w, h, NULL, 0, &a) == 0, "flip run");
    int mirror_bad = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t i = (size_t)y * w + x, j = (size_t)y * w + (w - 1 - x);
            mirror_bad += a.lb[i] != lb[j];
            for (int k = 0; k < 3; k++) {
                float v = unnorm(&o, a.im, i, k);
                mirror_bad += fabsf(v - rgb[j * 3 + k]) > 1e-3f;
                rgb2[i * 3 + k] = (uint8_t)lrintf(v);
            }
        }
    PK_CHECK(failures, mirror_bad == 0, "flip is not x -> w-1-x (%d values)", mirror_bad);
    PK_CHECK(failures, run(&o, &p, rgb2, a.lb, w, h, NULL, 0, &b) == 0, "flip run 2");
    int bad = 0;
    for (size_t i = 0; i < (size_t)w * h; i++) {
        bad += b.lb[i] != lb[i];
        for (int k = 0; k < 3; k++)
            bad += fabsf(unnorm(&o, b.im, i, k) - rgb[i * 3 + k]) > 1e-3f;
    }
    PK_CHECK(failures, bad == 0, "flip twice differs in %d values", bad);
    printf("  ok flip twice is the identity\n");
    outs_free(&a);
    outs_free(&b);
    free(rgb);
    free(rgb2);
    free(lb);
}

/* Crop larger than the image: centred padding with mean / 255 / mask 0. */
static void test_padding(void)
{
    int w = 20, h = 10, cw = 33, ch = 24;
    uint8_t *rgb = noise_rgb(w, h, 5), *lb = labels_3711(w, h, 6);
    pk_aug_opts o;
    pk_aug_opts_default(&o, ch, cw);
    o.none = 1;
    pk_aug_params p;
    pk_rng r = pk_rng_seed(9);
    pk_aug_draw(&p, &o, w, h, &r);
    PK_CHECK(failures, p.scale == 1.0f && !p.rotate && !p.flip && !p.blur, "none draws");
    outs out = outs_new(cw, ch);
    PK_CHECK(failures, run(&o, &p, rgb, lb, w, h, NULL, 0, &out) == 0, "pad run");
    int top = (ch - h) / 2, left = (cw - w) / 2; /* semseg: pad//2 before */
    int bad = 0;
    for (int y = 0; y < ch; y++)
        for (int x = 0; x < cw; x++) {
            size_t i = (size_t)y * cw + x;
            int sy = y - top, sx = x - left;
            if (sy >= 0 && sy < h && sx >= 0 && sx < w) {
                size_t j = (size_t)sy * w + sx;
                bad += out.va[i] != 1 || out.lb[i] != lb[j];
                for (int k = 0; k < 3; k++)
                    bad += fabsf(unnorm(&o, out.im, i, k) - rgb[j * 3 + k]) > 1e-3f;
            } else {
                bad += out.va[i] != 0 || out.lb[i] != 255;
                for (int k = 0; k < 3; k++) /* the mean, i.e. 0 after normalising */
                    bad += out.im[i * 3 + k] != 0.0f;
            }
        }
    PK_CHECK(failures, bad == 0, "padding: %d wrong values", bad);
    printf("  ok centred padding: mean / 255 / mask 0 (pad %d top, %d left)\n", top, left);
    outs_free(&out);
    free(rgb);
    free(lb);
}

/* Random full-chain samples: labels are source values exactly where the
 * mask is 1 and 255 exactly where it is 0; outputs are finite. */
static void test_label_values(void)
{
    int w = 61, h = 45, cw = 49, ch = 41;
    uint8_t *rgb = noise_rgb(w, h, 7), *lb = labels_3711(w, h, 8);
    pk_aug_opts o;
    pk_aug_opts_default(&o, ch, cw);
    outs out = outs_new(cw, ch);
    int bad = 0, rot = 0, pad = 0, valid = 0;
    for (int n = 0; n < 200; n++) {
        pk_rng r = pk_rng_seed(pk_aug_sample_seed(42, 0, (uint64_t)n));
        pk_aug_params p;
        pk_aug_draw(&p, &o, w, h, &r);
        rot += p.rotate;
        if (run(&o, &p, rgb, lb, w, h, NULL, 0, &out)) {
            bad++;
            break;
        }
        for (size_t i = 0; i < (size_t)cw * ch; i++) {
            uint8_t l = out.lb[i];
            if (out.va[i]) {
                valid++;
                bad += !(l == 3 || l == 7 || l == 11);
            } else {
                pad++;
                bad += l != 255;
            }
            for (int k = 0; k < 3; k++)
                bad += !isfinite(out.im[i * 3 + k]);
        }
    }
    PK_CHECK(failures, bad == 0, "labels: %d outputs not a source value / 255 by mask", bad);
    PK_CHECK(failures, rot > 60 && rot < 140, "rotate fired %d of 200 times", rot);
    PK_CHECK(failures, pad > 0 && valid > 0, "no padded or no valid pixels seen");
    printf("  ok labels in {source} or 255 over 200 samples (%d rotated, %.1f%% masked)\n", rot,
           100.0 * pad / (pad + valid));
    outs_free(&out);
    free(rgb);
    free(lb);
}

/* Extra planes follow the image exactly: (a) a plane equal to the image's
 * R channel as float; (b) a half-resolution plane (align-corners map) of a
 * linear function that the image's R channel also holds: bilinear is exact
 * on linear functions, so both must give the pre-normalisation R values. */
static void test_planes(void)
{
    int w = 101, h = 61, cw = 57, ch = 49;
    uint8_t *rgb = noise_rgb(w, h, 10), *lb = labels_3711(w, h, 11);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            rgb[((size_t)y * w + x) * 3] = (uint8_t)(x + 2 * y); /* <= 220 */
    float *full = malloc((size_t)w * h * sizeof(float));
    for (size_t i = 0; i < (size_t)w * h; i++)
        full[i] = rgb[i * 3];
    int pw = (w - 1) / 2 + 1, ph = (h - 1) / 2 + 1, pc = 11; /* 8 + a 3-channel tail */
    float *half = malloc((size_t)pw * ph * pc * sizeof(float));
    for (int j = 0; j < ph; j++)
        for (int i = 0; i < pw; i++)
            for (int k = 0; k < pc; k++)
                half[((size_t)j * pw + i) * pc + k] = (float)(2 * i + 4 * j) + 100.0f * k;
    size_t np = (size_t)cw * ch;
    float *o1 = malloc(np * sizeof(float)), *o2 = malloc(np * 12 * sizeof(float));
    pk_plane_set ps[2] = {
        {full, h, w, 1, {1, 0, 0, 0, 1, 0}, o1, 1},
        {half, ph, pw, pc, {0.5f, 0, 0, 0, 0.5f, 0}, o2, 12}, /* stride 12 > c */
    };
    pk_aug_opts o;
    pk_aug_opts_default(&o, ch, cw);
    o.blur_p = 0.0f; /* the blur touches the image only */
    outs out = outs_new(cw, ch);
    double e1 = 0, e2 = 0;
    int zero_bad = 0, rot = 0;
    for (int n = 0; n < 40; n++) {
        pk_rng r = pk_rng_seed(pk_aug_sample_seed(5, 1, (uint64_t)n));
        pk_aug_params p;
        pk_aug_draw(&p, &o, w, h, &r);
        rot += p.rotate;
        for (size_t i = 0; i < np; i++)
            o2[i * 12 + 11] = -7.0f; /* beyond c: must stay untouched */
        if (run(&o, &p, rgb, lb, w, h, ps, 2, &out)) {
            failures++;
            break;
        }
        for (size_t i = 0; i < np; i++) {
            zero_bad += o2[i * 12 + 11] != -7.0f;
            if (!out.va[i]) {
                zero_bad += o1[i] != 0.0f || o2[i * 12] != 0.0f || o2[i * 12 + 10] != 0.0f;
                continue;
            }
            float v = unnorm(&o, out.im, i, 0);
            e1 = fmax(e1, fabs(o1[i] - v));
            e2 = fmax(e2, fabs(o2[i * 12] - v));
            e2 = fmax(e2, fabs(o2[i * 12 + 7] - 700.0f - v));
            e2 = fmax(e2, fabs(o2[i * 12 + 10] - 1000.0f - v));
        }
    }
    PK_CHECK(failures, e1 < 2e-3, "same-resolution plane differs from R by %g", e1);
    PK_CHECK(failures, e2 < 2e-3, "half-resolution plane differs from R by %g", e2);
    PK_CHECK(failures, zero_bad == 0, "invalid plane pixels not 0 / stride overrun (%d)",
             zero_bad);
    printf("  ok extra planes move with the image: max |diff| %.2g (full res), %.2g (half res),"
           " %d/40 rotated\n", e1, e2, rot);
    outs_free(&out);
    free(o1);
    free(o2);
    free(full);
    free(half);
    free(rgb);
    free(lb);
}

/* Scale and rotation follow OpenCV's conventions: recover the source point
 * of each output pixel from R = 2x+10, G = 2y+10 and push it forward
 * through cv2.getRotationMatrix2D's matrix and the resize mapping. */
static void test_geometry(void)
{
    int w = 100, h = 90, cw = 60, ch = 50;
    uint8_t *rgb = calloc((size_t)w * h * 3, 1), *lb = malloc((size_t)w * h);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            lb[(size_t)y * w + x] = (uint8_t)x; /* nearest neighbour's column */
            rgb[((size_t)y * w + x) * 3] = (uint8_t)(2 * x + 10);
            rgb[((size_t)y * w + x) * 3 + 1] = (uint8_t)(2 * y + 10);
        }
    pk_aug_opts o;
    pk_aug_opts_default(&o, ch, cw);
    const float scales[3] = {1.0f, 0.75f, 1.5f}, angles[3] = {10.0f, -7.0f, 4.0f};
    outs out = outs_new(cw, ch);
    double maxd = 0, maxl = 0;
    int checked = 0;
    for (int t = 0; t < 3; t++) {
        pk_aug_params p = {.scale = scales[t], .rotate = 1, .angle = angles[t], .flip = t == 2};
        int w1 = (int)lrint(w * (double)scales[t]), h1 = (int)lrint(h * (double)scales[t]);
        p.off_x = (w1 > cw ? w1 - cw : 0) / 3;
        p.off_y = (h1 > ch ? h1 - ch : 0) / 2;
        if (run(&o, &p, rgb, lb, w, h, NULL, 0, &out)) {
            failures++;
            break;
        }
        double th = angles[t] * 3.14159265358979323846 / 180.0, a = cos(th), b = sin(th);
        double cx = w1 / 2.0, cy = h1 / 2.0;
        for (int y = 0; y < ch; y++)
            for (int x = 0; x < cw; x++) {
                size_t i = (size_t)y * cw + x;
                if (!out.va[i])
                    continue;
                double x0 = (unnorm(&o, out.im, i, 0) - 10.0) / 2.0;
                double y0 = (unnorm(&o, out.im, i, 1) - 10.0) / 2.0;
                if (x0 < 0.5 || y0 < 0.5 || x0 > w - 1.5 || y0 > h - 1.5)
                    continue; /* clamped at the source edge */
                double x1 = (x0 + 0.5) * scales[t] - 0.5, y1 = (y0 + 0.5) * scales[t] - 0.5;
                /* cv2 M (src -> dst): [a b; -b a](p - c) + c */
                double x2 = a * (x1 - cx) + b * (y1 - cy) + cx;
                double y2 = -b * (x1 - cx) + a * (y1 - cy) + cy;
                if (p.flip)
                    x2 = w1 - 1 - x2;
                double ex = x2 - (x + p.off_x), ey = y2 - (y + p.off_y);
                maxd = fmax(maxd, fmax(fabs(ex), fabs(ey)));
                maxl = fmax(maxl, fabs(out.lb[i] - x0));
                checked++;
            }
    }
    PK_CHECK(failures, checked > 3000 && maxd < 2e-3,
             "geometry: %d pixels, max position error %g px", checked, maxd);
    PK_CHECK(failures, maxl <= 0.501, "label is not the nearest source pixel (off by %g)",
             maxl);
    printf("  ok scale/rotate/flip/crop follow cv2's conventions: %d pixels, max error %.2g px;"
           " label nearest within %.3f px\n", checked, maxd, maxl);
    outs_free(&out);
    free(rgb);
    free(lb);
}

/* The blur is OpenCV's 5x5 kernel [1 4 6 4 1]/16 (GaussianBlur(img, (5,5),
 * 0)), reflect-101 at the frame edge, mean on crop padding untouched. */
static void test_blur(void)
{
    int w = 21, h = 21, cw = 25, ch = 25;
    uint8_t *rgb = calloc((size_t)w * h * 3, 1);
    rgb[(10 * w + 10) * 3] = 160; /* impulse in the centre (R) */
    rgb[0 + 1] = 160;             /* impulse in the corner (G) */
    pk_aug_opts o;
    pk_aug_opts_default(&o, ch, cw);
    o.none = 1;
    pk_aug_params p;
    pk_rng r = pk_rng_seed(1);
    pk_aug_draw(&p, &o, w, h, &r);
    p.blur = 1;
    outs out = outs_new(cw, ch);
    PK_CHECK(failures, run(&o, &p, rgb, NULL, w, h, NULL, 0, &out) == 0, "blur run");
    const double k[5] = {1 / 16.0, 4 / 16.0, 6 / 16.0, 4 / 16.0, 1 / 16.0};
    int off = 2; /* (25 - 21) / 2 */
    double maxd = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t i = (size_t)(y + off) * cw + (x + off);
            double wr = (abs(y - 10) <= 2 && abs(x - 10) <= 2)
                            ? 160 * k[y - 10 + 2] * k[x - 10 + 2] : 0;
            /* reflect-101: the corner impulse is not duplicated */
            double wg = (y <= 2 && x <= 2) ? 160 * k[y + 2] * k[x + 2] : 0;
            maxd = fmax(maxd, fabs(unnorm(&o, out.im, i, 0) - wr));
            maxd = fmax(maxd, fabs(unnorm(&o, out.im, i, 1) - wg));
            maxd = fmax(maxd, fabs(unnorm(&o, out.im, i, 2)));
        }
    int pad_bad = 0;
    for (int y = 0; y < ch; y++)
        for (int x = 0; x < cw; x++)
            if (y < off || x < off || y >= off + h || x >= off + w)
                for (int c = 0; c < 3; c++)
                    pad_bad += out.im[((size_t)y * cw + x) * 3 + c] != 0.0f;
    PK_CHECK(failures, maxd < 1e-3, "blur differs from [1 4 6 4 1]/16 by %g", maxd);
    PK_CHECK(failures, pad_bad == 0, "blur leaked into the padding (%d values)", pad_bad);
    printf("  ok blur = cv2 5x5 kernel, reflect-101, padding untouched (max |diff| %.2g)\n",
           maxd);
    outs_free(&out);
    free(rgb);
}

/* Same (seed, epoch, index) -> same bytes; other indices or epochs draw
 * other parameters; bad offsets are rejected. */
static void test_determinism(void)
{
    int w = 80, h = 60, cw = 65, ch = 57;
    uint8_t *rgb = noise_rgb(w, h, 12), *lb = labels_3711(w, h, 13);
    float plane[4 * 3 * 2];
    pk_test_fill(plane, 24, 3, 1.0f);
    pk_aug_opts o;
    pk_aug_opts_default(&o, ch, cw);
    outs a = outs_new(cw, ch), b = outs_new(cw, ch);
    float *pa = malloc((size_t)cw * ch * 2 * sizeof(float));
    float *pb = malloc((size_t)cw * ch * 2 * sizeof(float));
    pk_plane_set sa = {plane, 3, 4, 2, {4.0f / 80, 0, 0, 0, 3.0f / 60, 0}, pa, 2};
    pk_plane_set sb = sa;
    sb.out = pb;
    int same = 1, differ = 0;
    pk_aug_ws ws = {0};
    for (int n = 0; n < 12; n++) {
        pk_aug_params p1, p2, p3;
        pk_rng r1 = pk_rng_seed(pk_aug_sample_seed(7, 3, (uint64_t)n));
        pk_rng r2 = pk_rng_seed(pk_aug_sample_seed(7, 3, (uint64_t)n));
        pk_rng r3 = pk_rng_seed(pk_aug_sample_seed(7, 4, (uint64_t)n));
        pk_aug_draw(&p1, &o, w, h, &r1);
        pk_aug_draw(&p2, &o, w, h, &r2);
        pk_aug_draw(&p3, &o, w, h, &r3);
        differ += memcmp(&p1, &p3, sizeof p1) != 0;
        pk_err e = {0};
        int rc = pk_augment(&o, &p1, rgb, lb, w, h, &sa, 1, a.im, a.lb, a.va, &ws, &e);
        rc |= pk_augment(&o, &p2, rgb, lb, w, h, &sb, 1, b.im, b.lb, b.va, NULL, &e);
        size_t np = (size_t)cw * ch;
        same &= rc == 0 && memcmp(a.im, b.im, np * 3 * sizeof(float)) == 0 &&
                memcmp(a.lb, b.lb, np) == 0 && memcmp(a.va, b.va, np) == 0 &&
                memcmp(pa, pb, np * 2 * sizeof(float)) == 0;
    }
    PK_CHECK(failures, same, "same seed gave different outputs");
    PK_CHECK(failures, differ >= 11, "epochs 3 and 4 drew the same parameters (%d/12 differ)",
             differ);
    pk_aug_params bad = {.scale = 1.0f, .off_x = 1000};
    pk_err e = {0};
    PK_CHECK(failures,
             pk_augment(&o, &bad, rgb, lb, w, h, NULL, 0, a.im, a.lb, a.va, &ws, &e) ==
                 PK_EINVAL, "offset outside the frame accepted");
    printf("  ok determinism (12 samples bit-equal; %d/12 differ across epochs); bad offset: %s\n",
           differ, e.msg);
    pk_aug_ws_free(&ws);
    free(pa);
    free(pb);
    outs_free(&a);
    outs_free(&b);
    free(rgb);
    free(lb);
}

/* A copy of n bytes that ends exactly at a PROT_NONE page: reading even
 * one byte past it (e.g. a 32-bit gather of the last pixel) faults. */
static uint8_t *fenced_copy(const uint8_t *src, size_t n, void **map, size_t *maplen)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), data = (n + pg - 1) / pg * pg;
    *maplen = data + pg;
    uint8_t *m = mmap(NULL, *maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    if (mprotect(m + data, pg, PROT_NONE)) {
        munmap(m, *maplen);
        return NULL;
    }
    *map = m;
    memcpy(m + data - n, src, n);
    return m + data - n;
}

/* Tiny sources (1x1 .. 9x2) and sources that end at an unreadable page:
 * every sample stays in bounds and gives source labels or 255. */
static void test_small_and_fenced(void)
{
    const int sizes[][2] = {{1, 1}, {2, 1}, {1, 3}, {3, 2}, {9, 2}, {41, 29}};
    int bad = 0, runs = 0;
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        int w = sizes[t][0], h = sizes[t][1], cw = 19, ch = 13;
        uint8_t *rgb0 = noise_rgb(w, h, 20 + t), *lb0 = labels_3711(w, h, 30 + t);
        void *m1, *m2;
        size_t l1, l2;
        uint8_t *rgb = fenced_copy(rgb0, (size_t)w * h * 3, &m1, &l1);
        uint8_t *lb = fenced_copy(lb0, (size_t)w * h, &m2, &l2);
        if (!rgb || !lb) {
            failures++;
            fprintf(stderr, "  FAIL mmap\n");
            return;
        }
        pk_aug_opts o;
        pk_aug_opts_default(&o, ch, cw);
        o.scale_max = 8.0f; /* large scales reach the last pixel often */
        outs out = outs_new(cw, ch);
        for (int n = 0; n < 40; n++) {
            pk_rng r = pk_rng_seed(pk_aug_sample_seed(11, t, (uint64_t)n));
            pk_aug_params p;
            pk_aug_draw(&p, &o, w, h, &r);
            if (n % 4 == 0)
                p.blur = 1;
            bad += run(&o, &p, rgb, lb, w, h, NULL, 0, &out) != 0;
            runs++;
            for (size_t i = 0; i < (size_t)cw * ch; i++) {
                uint8_t l = out.lb[i];
                bad += out.va[i] ? !(l == 3 || l == 7 || l == 11) : l != 255;
                for (int k = 0; k < 3; k++)
                    bad += !isfinite(out.im[i * 3 + k]);
            }
        }
        outs_free(&out);
        munmap(m1, l1);
        munmap(m2, l2);
        free(rgb0);
        free(lb0);
    }
    PK_CHECK(failures, bad == 0, "small / fenced sources: %d bad values", bad);
    printf("  ok %d samples of 1x1 .. 41x29 sources ending at a guard page\n", runs);
}

int main(void)
{
    test_identity();
    test_flip_twice();
    test_padding();
    test_label_values();
    test_planes();
    test_geometry();
    test_blur();
    test_determinism();
    test_small_and_fenced();
    if (failures) {
        fprintf(stderr, "test_augment: %d failures\n", failures);
        return 1;
    }
    return 0;
}
