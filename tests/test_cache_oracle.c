/* Oracle checks of the teacher-logits cache path (issue 12, item 1).
 *
 * 1. Labels as the teacher. A pack of drawn images with known labels (odd
 *    and even sizes) and a logits cache made from the labels themselves:
 *    cell (i, j) of an image's stride-8 grid (row i, column j) holds
 *    one-hot logits of the class at image pixel (x, y) = (8j, 8i), the pixel
 *    teacher-dump's whole-image pass puts there (pk_logits_geom: the image
 *    sits at the top-left of the padded (8k+1) frame and the x8
 *    align_corners upsampling puts pixel x at grid x/8); cells beyond the
 *    image (the padding) take the nearest image pixel's class. Main has
 *    margin 10 on the class c, aux margin 6 on class (c + 1) % K, so a
 *    main/aux swap or a channel shift cannot pass. Through the loader
 *    (pk_logits_extra_fn, as student-distill) with scale, rotate, blur,
 *    flip and crop each alone and all together, the warped planes' argmax
 *    must equal the augmented label (aux: label + 1 mod K) on >= 99.5 % of
 *    the counted pixels: valid, not 255, and no pixel of another label,
 *    255 or padding, nor the crop's edge, within Chebyshev distance
 *    ceil(8 * scale) + 2 (one stride in the augmented image, plus two). The
 *    valid mask must be exactly the part of the crop the source covers
 *    (recomputed here from the drawn parameters in double precision), with
 *    label 255, zero planes and (crop padding) the mean image outside it.
 *    Each case prints one line: pixels counted and the main / aux
 *    agreement on them, the same over every valid non-255 pixel (for
 *    information: near a border the stride-8 grid cannot follow the label),
 *    and check 2's figures.
 * 2. Sub-pixel alignment. Check 1's distance rule makes it blind to a shift
 *    of the planes by up to about a stride, so a second cache over the
 *    same pack holds the pixel coordinates themselves (main = (x, y, 0...),
 *    aux = (y, x, 0...) at cell (i, j): x = 8j, y = 8i) and the images are
 *    the ramps R = x, G = y: wherever the crop samples source point
 *    (x0, y0), image and planes must both read (x0, y0), to 0.02 px.
 * 3. Cache vs online teacher. A small ResNet18 PSPNet dumps a cache the
 *    way teacher-dump does (pk_record_image, pk_seg_whole_image without
 *    upsampling, pk_logits_encode) and is run online the way
 *    student-distill --teacher runs it (pk_model_infer at full resolution
 *    on the crops of pk_train_data): on un-augmented 8k+1 images the
 *    cached main and aux logits, as pk_train_data's teacher planes at every
 *    pixel and through pk_logits_cache_get on the grid, equal the online
 *    ones within fp16 rounding: |d| <= 2^-10 |v| + 1e-4, v the largest
 *    magnitude among the values interpolated. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/rng.h"
#include "data/augment.h"
#include "data/image.h"
#include "data/loader.h"
#include "data/logits_extra.h"
#include "model/pspnet.h"
#include "model/seg_infer.h"
#include "store/pack.h"
#include "core/le_bytes.h"
#include "store/logits_cache.h"
#include "store/record.h"
#include "train/train_data.h"
#include "support.h"
#include "support_model.h"

static int failures;
static char dir[64];

#define K 5
#define MAIN_MARGIN 10.0f
#define AUX_MARGIN 6.0f
#define MIN_AGREE 0.995
#define RAMP_TOL 0.02
#define ITERS 6 /* loader iterations per case: one epoch of NIMG samples each */
#define AUG_SEED 12

static void die(const char *what, const pk_err *e)
{
    fprintf(stderr, "test_cache_oracle: %s: %s\n", what, e ? e->msg : "out of memory");
    exit(1);
}

static int imin(int a, int b) { return a < b ? a : b; }
static int imax(int a, int b) { return a > b ? a : b; }

/* ---- packs and caches --------------------------------------------------- */

typedef struct img_rec {
    int w, h;
    uint8_t *rgb, *lbl;
    uint8_t *cls; /* the class map without the 255 band (oracle images) */
    char key[64];
} img_rec;

static void rec_free(img_rec *r)
{
    free(r->rgb);
    free(r->lbl);
    free(r->cls);
    memset(r, 0, sizeof *r);
}

/* Writes n records (RGB8) and the metadata; *pack_id receives the id. */
static void write_pack(const char *path, img_rec *r, int n, uint64_t *pack_id)
{
    pk_err e = {0, ""};
    pk_pack_writer *w;
    if (pk_pack_writer_open(&w, path, 0, 1, &e))
        die(path, &e);
    pk_meta *m = calloc(1, sizeof *m);
    if (!m)
        die("pack metadata", NULL);
    m->version = PK_META_VERSION;
    m->record_version = PK_RECORD_VERSION;
    m->count = n;
    m->classes = K;
    m->image_enc = PK_IMG_RGB8;
    m->pack_id = PK_PACK_ID_INIT;
    for (int c = 0; c < K; c++)
        snprintf(m->names[c], sizeof m->names[c], "class%d", c);
    for (int i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "img%dx%d", r[i].w, r[i].h);
        uint8_t *rec;
        size_t len;
        if (pk_record_key(r[i].key, sizeof r[i].key, i, id, &e) ||
            pk_record_encode(&rec, &len, id, r[i].w, r[i].h, PK_IMG_RGB8, r[i].rgb,
                             (size_t)r[i].w * r[i].h * 3, r[i].lbl, &e))
            die(id, &e);
        pk_pack_id_add(&m->pack_id, r[i].key, pk_get32(rec + len - 4));
        if (pk_pack_writer_put(w, r[i].key, rec, len, &e))
            die(r[i].key, &e);
        free(rec);
    }
    uint8_t *mv;
    size_t mlen;
    if (pk_meta_encode(&mv, &mlen, m, &e) || pk_pack_writer_put(w, PK_META_KEY, mv, mlen, &e))
        die("pack metadata", &e);
    free(mv);
    *pack_id = m->pack_id;
    free(m);
    if (pk_pack_writer_finish(w, &e))
        die(path, &e);
}

/* Writes a cache for the pack: record i's logits main[i], aux[i] on
 * pk_logits_geom_init(w, h)'s grid. */
static void write_cache(const char *path, const img_rec *r, int n, uint64_t pack_id,
                        float *const *main_l, float *const *aux_l)
{
    pk_err e = {0, ""};
    pk_pack_writer *w;
    if (pk_pack_writer_open(&w, path, 0, 1, &e))
        die(path, &e);
    for (int i = 0; i < n; i++) {
        pk_logits_geom g;
        pk_logits_geom_init(&g, r[i].w, r[i].h);
        uint8_t *buf;
        size_t len;
        if (pk_logits_encode(&buf, &len, r[i].key, &g, K, main_l[i], aux_l[i], &e) ||
            pk_pack_writer_put(w, r[i].key, buf, len, &e))
            die(r[i].key, &e);
        free(buf);
    }
    pk_logits_meta m = {0};
    m.version = PK_LOGITS_META_VERSION;
    m.record_version = PK_LOGITS_VERSION;
    m.teacher_hash = 0x0123456789abcdefULL;
    m.pack_id = pack_id;
    m.count = n;
    m.classes = K;
    m.stride = PK_LOGITS_STRIDE;
    snprintf(m.arch, sizeof m.arch, "oracle");
    snprintf(m.stem, sizeof m.stem, "none");
    uint8_t *buf;
    size_t len;
    if (pk_logits_meta_encode(&buf, &len, &m, &e) ||
        pk_pack_writer_put(w, PK_META_KEY, buf, len, &e))
        die("cache metadata", &e);
    free(buf);
    if (pk_pack_writer_finish(w, &e))
        die(path, &e);
}

static pk_logits_cache *open_cache(const char *path, const char *pack)
{
    pk_err e = {0, ""};
    pk_logits_cache *c;
    if (pk_logits_cache_open(&c, path, &e))
        die(path, &e);
    if (pk_logits_cache_check_pack(c, pack, &e))
        die("check_pack", &e);
    return c;
}

/* ---- the oracle images ---------------------------------------------------- */

#define NIMG 3
static const int oracle_size[NIMG][2] = {{65, 65}, {64, 80}, {97, 73}}; /* w, h */

/* Background 0, a disc (1), a rectangle (2), a tilted band along the
 * bottom (3), a short thin stripe and a small square (4, narrower than a
 * stride), placed differently per image. */
static int clean_class(int i, int w, int h, int x, int y)
{
    int c = 0;
    double m = imin(w, h);
    double dx = x - (0.24 + 0.03 * i) * w, dy = y - (0.30 - 0.03 * i) * h;
    if (dx * dx + dy * dy < (0.2 * m) * (0.2 * m))
        c = 1;
    if (x >= 0.54 * w && x < 0.96 * w && y >= (0.04 + 0.02 * i) * h && y < 0.56 * h)
        c = 2;
    if (y > 0.68 * h + (0.12 - 0.12 * i) * (x - 0.5 * w))
        c = 3;
    if ((fabs(x - 0.6 * y - 0.5 * w) < 1.5 && y >= 0.58 * h && y < 0.78 * h) ||
        (x >= 0.06 * w && x < 0.06 * w + 5 && y >= 0.76 * h && y < 0.76 * h + 4))
        c = 4;
    return c;
}

/* RGB: R = x, G = y (the ramps of check 2), B from the class. Label: the
 * class, 255 within one pixel (Chebyshev) of another class, as VOC's
 * boundary band. */
static void make_oracle_images(img_rec *r)
{
    for (int i = 0; i < NIMG; i++) {
        int w = oracle_size[i][0], h = oracle_size[i][1];
        r[i].w = w;
        r[i].h = h;
        r[i].rgb = malloc((size_t)w * h * 3);
        r[i].lbl = malloc((size_t)w * h);
        r[i].cls = malloc((size_t)w * h);
        if (!r[i].rgb || !r[i].lbl || !r[i].cls)
            die("images", NULL);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                r[i].cls[(size_t)y * w + x] = (uint8_t)clean_class(i, w, h, x, y);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                size_t p = (size_t)y * w + x;
                int c = r[i].cls[p], band = 0;
                for (int v = imax(0, y - 1); v <= imin(h - 1, y + 1); v++)
                    for (int u = imax(0, x - 1); u <= imin(w - 1, x + 1); u++)
                        band |= r[i].cls[(size_t)v * w + u] != c;
                r[i].lbl[p] = band ? 255 : (uint8_t)c;
                r[i].rgb[p * 3] = (uint8_t)x;
                r[i].rgb[p * 3 + 1] = (uint8_t)y;
                r[i].rgb[p * 3 + 2] = (uint8_t)(40 * c + 20);
            }
    }
}

/* The labels-as-teacher grid (onehot = 1) or the coordinate grid. */
static void oracle_logits(const img_rec *r, int onehot, float **main_l, float **aux_l)
{
    pk_logits_geom g;
    pk_logits_geom_init(&g, r->w, r->h);
    size_t n = (size_t)g.grid_w * g.grid_h * K;
    float *m = calloc(n, sizeof *m), *a = calloc(n, sizeof *a);
    if (!m || !a)
        die("logits", NULL);
    for (int gy = 0; gy < g.grid_h; gy++)
        for (int gx = 0; gx < g.grid_w; gx++) {
            size_t o = ((size_t)gy * g.grid_w + gx) * K;
            int x = PK_LOGITS_STRIDE * gx, y = PK_LOGITS_STRIDE * gy;
            if (onehot) {
                int c = r->cls[(size_t)imin(y, r->h - 1) * r->w + imin(x, r->w - 1)];
                m[o + c] = MAIN_MARGIN;
                a[o + (c + 1) % K] = AUX_MARGIN;
            } else {
                m[o] = (float)x;
                m[o + 1] = (float)y;
                a[o] = (float)y;
                a[o + 1] = (float)x;
            }
        }
    *main_l = m;
    *aux_l = a;
}

/* ---- check 1 and 2: the augmented cache ------------------------------- */

typedef struct aug_case {
    const char *name;
    int cw, ch;
    float smin, smax, rot_p, blur_p, flip_p;
    int none;
} aug_case;

/* Crops of 105 hold every unscaled image (97 x 80 at most) with padding;
 * 201 every image scaled x2; 73 x 89 cuts the 97-wide image and pads the
 * rest. */
static const aug_case cases[] = {
    {"none", 105, 105, 1, 1, 0, 0, 0, 1},
    {"scale", 201, 201, 0.5f, 2, 0, 0, 0, 0},
    {"rotate", 105, 105, 1, 1, 1, 0, 0, 0},
    {"blur", 105, 105, 1, 1, 0, 1, 0, 0},
    {"flip", 105, 105, 1, 1, 0, 0, 1, 0},
    {"crop", 73, 89, 1, 1, 0, 0, 0, 0},
    {"all", 89, 81, 0.5f, 2, 1, 1, 1, 0},
    {"train", 81, 81, 0.5f, 2, 0.5f, 0.5f, 0.5f, 0}, /* semseg's probabilities */
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

typedef struct case_stats {
    int samples;
    long valid;
    long counted, main_ok, aux_ok;    /* > one stride from a border */
    long near_n, near_main, near_aux; /* every valid pixel not 255 */
    long mask_bad;         /* valid-mask / padding violations */
    long ramp_n;           /* pixels of the coordinate check */
    double ramp_err;       /* its largest |plane - image| in pixels */
} case_stats;

/* The augmentation's geometry recomputed in double from the drawn
 * parameters, following augment.h's (cv2's) conventions. */
typedef struct geo {
    int w1, h1, dx, dy, flip;
    double ca, sa;
} geo;

static geo geo_init(const pk_aug_opts *o, const pk_aug_params *p, int w, int h)
{
    geo g;
    g.w1 = (int)lrint((double)w * p->scale);
    g.h1 = (int)lrint((double)h * p->scale);
    g.w1 = g.w1 < 1 ? 1 : g.w1;
    g.h1 = g.h1 < 1 ? 1 : g.h1;
    g.dx = p->off_x - imax(o->crop_w - g.w1, 0) / 2;
    g.dy = p->off_y - imax(o->crop_h - g.h1, 0) / 2;
    g.flip = p->flip;
    double t = p->rotate ? (double)p->angle * (3.14159265358979323846 / 180.0) : 0.0;
    g.ca = cos(t);
    g.sa = sin(t);
    return g;
}

/* Output pixel (x, y): *in_frame when it lies in the scaled frame (else it
 * is crop padding); returns the signed distance (pixels) of the unflipped,
 * unrotated point inside the scaled source's [-0.5, w1 - 0.5) x
 * [-0.5, h1 - 0.5) box (negative: outside, the rotation border). */
static double geo_inside(const geo *g, int x, int y, int *in_frame)
{
    int x3 = x + g->dx, y3 = y + g->dy;
    *in_frame = x3 >= 0 && x3 < g->w1 && y3 >= 0 && y3 < g->h1;
    /* undo the flip, then cv2's rotation about (w1/2, h1/2):
     * dst - c = [a b; -b a](src - c)  =>  src - c = [a -b; b a](dst - c) */
    double x2 = g->flip ? g->w1 - 1 - x3 : x3, y2 = y3;
    double cx = g->w1 / 2.0, cy = g->h1 / 2.0;
    double sx = g->ca * (x2 - cx) - g->sa * (y2 - cy) + cx;
    double sy = g->sa * (x2 - cx) + g->ca * (y2 - cy) + cy;
    double d = sx + 0.5;
    d = fmin(d, g->w1 - 0.5 - sx);
    d = fmin(d, sy + 0.5);
    return fmin(d, g->h1 - 0.5 - sy);
}

static int argmax(const float *v, int k)
{
    int b = 0;
    for (int j = 1; j < k; j++)
        if (v[j] > v[b])
            b = j;
    return b;
}

/* S[(y+1)*(w+1) + x+1] = number of "edge" pixels in [0..x] x [0..y]; an
 * edge pixel is 255 or differs from a 4-neighbour. */
static void edge_integral(const uint8_t *lbl, int w, int h, int *S)
{
    memset(S, 0, (size_t)(w + 1) * sizeof *S);
    for (int y = 0; y < h; y++) {
        int run = 0;
        S[(size_t)(y + 1) * (w + 1)] = 0;
        for (int x = 0; x < w; x++) {
            const uint8_t *p = lbl + (size_t)y * w + x;
            int e = *p == 255 || (x > 0 && p[-1] != *p) || (x + 1 < w && p[1] != *p) ||
                    (y > 0 && p[-w] != *p) || (y + 1 < h && p[w] != *p);
            run += e;
            S[(size_t)(y + 1) * (w + 1) + x + 1] = S[(size_t)y * (w + 1) + x + 1] + run;
        }
    }
}

/* Edge pixels in [x0, x1) x [y0, y1). */
static int box_sum(const int *S, int w, int x0, int y0, int x1, int y1)
{
    return S[(size_t)y1 * (w + 1) + x1] - S[(size_t)y0 * (w + 1) + x1] -
           S[(size_t)y1 * (w + 1) + x0] + S[(size_t)y0 * (w + 1) + x0];
}

/* One augmented sample of the one-hot run (ext: [h, w, 2K]) and the same
 * sample of the coordinate run (ramp). */
static void check_sample(const pk_aug_opts *ao, const img_rec *src, const pk_aug_params *p,
                         const float *img, const uint8_t *lbl, const uint8_t *val,
                         const float *ext, const float *ramp, int *S, case_stats *st)
{
    int cw = ao->crop_w, ch = ao->crop_h, c2 = 2 * K;
    geo g = geo_init(ao, p, src->w, src->h);
    int r = (int)ceil(8.0 * p->scale) + 1; /* no edge pixel within r */
    edge_integral(lbl, cw, ch, S);
    for (int y = 0; y < ch; y++)
        for (int x = 0; x < cw; x++) {
            size_t i = (size_t)y * cw + x;
            const float *e = ext + i * c2, *q = ramp + i * c2;
            int in_frame;
            double d = geo_inside(&g, x, y, &in_frame);
            /* the mask: 1 exactly where the source covers the crop */
            int want = !in_frame ? 0 : d > 1e-3 ? 1 : d < -1e-3 ? 0 : val[i];
            int bad = val[i] != want;
            if (!val[i]) {
                bad |= lbl[i] != 255;
                for (int k = 0; k < c2; k++)
                    bad |= e[k] != 0.0f || q[k] != 0.0f;
            }
            if (!in_frame)
                bad |= img[i * 3] != 0.0f || img[i * 3 + 1] != 0.0f || img[i * 3 + 2] != 0.0f;
            if (bad && st->mask_bad++ < 5)
                fprintf(stderr, "  mask: pixel (%d,%d) valid %d (want %d) label %d\n", x, y,
                        val[i], want, lbl[i]);
            if (!val[i])
                continue;
            st->valid++;
            /* check 2: the planes read the coordinates the image reads */
            double R = img[i * 3] * ao->std[0] + ao->mean[0];
            double G = img[i * 3 + 1] * ao->std[1] + ao->mean[1];
            int lo = p->blur ? 6 : 1, ok = R >= lo - 0.5 && R <= src->w - lo - 0.5 &&
                                         G >= lo - 0.5 && G <= src->h - lo - 0.5;
            if (ok && p->blur) /* the 5x5 window must be inside the source */
                for (int v = y - 2; v <= y + 2 && ok; v++)
                    for (int u = x - 2; u <= x + 2 && ok; u++)
                        ok = u >= 0 && v >= 0 && u < cw && v < ch && val[(size_t)v * cw + u];
            if (ok) {
                double err = fmax(fmax(fabs(q[0] - R), fabs(q[1] - G)),
                                  fmax(fabs(q[K] - G), fabs(q[K + 1] - R)));
                st->ramp_n++;
                st->ramp_err = fmax(st->ramp_err, err);
            }
            /* check 1: the labels as teacher */
            if (lbl[i] == 255)
                continue;
            int am = argmax(e, K) == lbl[i], aa = argmax(e + K, K) == (lbl[i] + 1) % K;
            st->near_n++;
            st->near_main += am;
            st->near_aux += aa;
            /* at the crop's edge what lies beyond is not known */
            if (x - r < 0 || y - r < 0 || x + r >= cw || y + r >= ch ||
                box_sum(S, cw, x - r, y - r, x + r + 1, y + r + 1))
                continue;
            st->counted++;
            st->main_ok += am;
            st->aux_ok += aa;
        }
}

typedef struct run_ctx {
    const char *pack;
    pk_logits_cache *onehot, *ramp;
    const img_rec *img;
} run_ctx;

static pk_loader *open_loader(const run_ctx *rc, const pk_aug_opts *ao, pk_logits_cache *c)
{
    pk_loader_opts lo;
    memset(&lo, 0, sizeof lo);
    lo.pack = rc->pack;
    lo.batch = NIMG;
    lo.threads = 2;
    lo.seed = AUG_SEED;
    lo.shuffle = 1;
    lo.drop_last = 1;
    lo.end_iter = ITERS;
    lo.aug = *ao;
    lo.extra_fn = pk_logits_extra_fn;
    lo.extra_user = c;
    lo.extra_channels = 2 * K;
    pk_err e = {0, ""};
    pk_loader *ld;
    if (pk_loader_open(&ld, &lo, &e))
        die("loader", &e);
    return ld;
}

static void run_case(const run_ctx *rc, const aug_case *cs)
{
    pk_aug_opts ao;
    pk_aug_opts_default(&ao, cs->ch, cs->cw);
    ao.scale_min = cs->smin;
    ao.scale_max = cs->smax;
    ao.rotate_p = cs->rot_p;
    ao.blur_p = cs->blur_p;
    ao.flip_p = cs->flip_p;
    ao.none = cs->none;
    /* the same seed and options: the same parameters in both runs */
    pk_loader *a = open_loader(rc, &ao, rc->onehot), *b = open_loader(rc, &ao, rc->ramp);
    size_t px = (size_t)cs->cw * cs->ch;
    int *S = malloc((size_t)(cs->cw + 1) * (cs->ch + 1) * sizeof *S);
    if (!S)
        die("integral", NULL);
    case_stats st = {0};
    int nrot = 0, nflip = 0, nblur = 0, npad = 0, ncut = 0;
    float smin = 99, smax = 0;
    pk_err e = {0, ""};
    for (;;) {
        const pk_loader_batch *ba, *bb;
        if (pk_loader_next(a, &ba, &e) || pk_loader_next(b, &bb, &e))
            die(cs->name, &e);
        if (!ba || !bb)
            break;
        for (int s = 0; s < ba->n; s++) {
            const img_rec *src = &rc->img[ba->record[s]];
            if (bb->record[s] != ba->record[s] ||
                memcmp(bb->label + s * px, ba->label + s * px, px))
                PK_CHECK(failures, 0, "%s: the two runs differ", cs->name);
            pk_aug_params p;
            pk_rng r = pk_rng_seed(pk_aug_sample_seed(AUG_SEED, (uint64_t)ba->epoch,
                                                      (uint64_t)ba->record[s]));
            pk_aug_draw(&p, &ao, src->w, src->h, &r);
            check_sample(&ao, src, &p, ba->image + s * px * 3, ba->label + s * px,
                         ba->valid + s * px, ba->extra + s * px * 2 * K,
                         bb->extra + s * px * 2 * K, S, &st);
            st.samples++;
            nrot += p.rotate;
            nflip += p.flip;
            nblur += p.blur;
            int w1 = (int)lrint(src->w * p.scale), h1 = (int)lrint(src->h * p.scale);
            npad += w1 < cs->cw || h1 < cs->ch;
            ncut += w1 > cs->cw || h1 > cs->ch;
            smin = fminf(smin, p.scale);
            smax = fmaxf(smax, p.scale);
        }
    }
    pk_loader_close(a);
    pk_loader_close(b);
    free(S);
    double am = st.counted ? 100.0 * st.main_ok / st.counted : 0.0;
    double aa = st.counted ? 100.0 * st.aux_ok / st.counted : 0.0;
    printf("  case %-6s counted %5ld px  agreement main %7.3f %%  aux %7.3f %% | all %6ld px  "
           "main %6.2f %%  aux %6.2f %% | ramp %6ld px  max err %.1e px | %2d samples: scale "
           "%.2f..%.2f, rot %2d, blur %2d, flip %2d, padded %2d, cut %2d\n",
           cs->name, st.counted, am, aa, st.near_n,
           100.0 * st.near_main / (st.near_n ? st.near_n : 1),
           100.0 * st.near_aux / (st.near_n ? st.near_n : 1), st.ramp_n, st.ramp_err,
           st.samples, smin, smax, nrot, nblur, nflip, npad, ncut);
    PK_CHECK(failures, st.samples == ITERS * NIMG, "%s: %d samples", cs->name, st.samples);
    PK_CHECK(failures, st.mask_bad == 0, "%s: %ld pixels break the valid mask", cs->name,
             st.mask_bad);
    PK_CHECK(failures, st.counted >= st.valid / 100 && st.counted > 1000,
             "%s: only %ld of %ld valid pixels counted", cs->name, st.counted, st.valid);
    PK_CHECK(failures, am >= 100.0 * MIN_AGREE && aa >= 100.0 * MIN_AGREE,
             "%s: agreement main %.3f %% aux %.3f %% < %.1f %%", cs->name, am, aa,
             100.0 * MIN_AGREE);
    PK_CHECK(failures, st.ramp_n > st.valid / 4 && st.ramp_err <= RAMP_TOL,
             "%s: planes vs image coordinates: max err %.3g px over %ld px", cs->name,
             st.ramp_err, st.ramp_n);
    /* each case does what it says */
    int want_rot = cs->rot_p == 1 ? st.samples : cs->rot_p == 0 ? 0 : -1;
    int want_blur = cs->blur_p == 1 ? st.samples : cs->blur_p == 0 ? 0 : -1;
    int want_flip = cs->flip_p == 1 ? st.samples : cs->flip_p == 0 ? 0 : -1;
    PK_CHECK(failures, (want_rot < 0 || nrot == want_rot) && (want_blur < 0 || nblur == want_blur)
                           && (want_flip < 0 || nflip == want_flip) && npad > 0,
             "%s: transforms drawn: rot %d blur %d flip %d padded %d", cs->name, nrot, nblur,
             nflip, npad);
}

static void test_labels_as_teacher(void)
{
    img_rec img[NIMG];
    memset(img, 0, sizeof img);
    make_oracle_images(img);
    char pack[128], c1[128], c2[128];
    snprintf(pack, sizeof pack, "%s/oracle_pack.lmdb", dir);
    snprintf(c1, sizeof c1, "%s/oracle_onehot.lmdb", dir);
    snprintf(c2, sizeof c2, "%s/oracle_ramp.lmdb", dir);
    uint64_t pack_id;
    write_pack(pack, img, NIMG, &pack_id);
    float *m[NIMG], *a[NIMG];
    for (int onehot = 1; onehot >= 0; onehot--) {
        for (int i = 0; i < NIMG; i++)
            oracle_logits(&img[i], onehot, &m[i], &a[i]);
        write_cache(onehot ? c1 : c2, img, NIMG, pack_id, m, a);
        for (int i = 0; i < NIMG; i++) {
            free(m[i]);
            free(a[i]);
        }
    }
    run_ctx rc = {pack, open_cache(c1, pack), open_cache(c2, pack), img};
    printf("  labels as teacher: one-hot main +%g on the label, aux +%g on label+1 mod %d; "
           "counted: no other label, 255 or padding within ceil(8*scale)+2 px\n",
           (double)MAIN_MARGIN, (double)AUX_MARGIN, K);
    for (int i = 0; i < NCASES; i++)
        run_case(&rc, &cases[i]);
    pk_logits_cache_close(rc.onehot);
    pk_logits_cache_close(rc.ramp);
    for (int i = 0; i < NIMG; i++)
        rec_free(&img[i]);
    unlink(pack);
    unlink(c1);
    unlink(c2);
}

/* ---- check 3: the cache vs the online teacher ------------------------- */

#define NON 3
/* two 8k+1 sizes (the crop of the loader comparison) and one padded; the
 * grids are not square, so a transposed plane would show */
#define OW 41
#define OH 25
static const int online_size[NON][2] = {{OW, OH}, {OW, OH}, {30, 20}}; /* w, h */

/* |got - want| against fp16 rounding of values up to vmax. */
static double f16_ratio(double got, double want, double vmax)
{
    return fabs(got - want) / (0x1p-10 * vmax + 1e-4);
}

static void test_online_teacher(void)
{
    pk_err e = {0, ""};
    pk_ctx *ctx = pk_test_ctx(0);
    pk_model_cfg cfg = {PK_ARCH_R18, PK_STEM_7X7, K, 0.1f};
    pk_model *m = NULL;
    if (pk_model_create(&m, ctx, &cfg, &e))
        die("model", &e);
    if (pk_test_model_fill(m, 0))
        die("model fill", NULL);
    img_rec img[NON];
    memset(img, 0, sizeof img);
    for (int i = 0; i < NON; i++) {
        int w = online_size[i][0], h = online_size[i][1];
        img[i].w = w;
        img[i].h = h;
        img[i].rgb = malloc((size_t)w * h * 3);
        img[i].lbl = calloc((size_t)w * h, 1);
        if (!img[i].rgb || !img[i].lbl)
            die("images", NULL);
        pk_rng r = pk_rng_seed(1000 + (uint64_t)i);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int k = 0; k < 3; k++) /* smooth shapes plus noise */
                    img[i].rgb[((size_t)y * w + x) * 3 + k] =
                        (uint8_t)(((x * (k + 1) + y * (3 - k) + 16 * i) * 5) % 200 +
                                  pk_rng_below(&r, 56));
    }
    char pack[128], cache[128];
    snprintf(pack, sizeof pack, "%s/online_pack.lmdb", dir);
    snprintf(cache, sizeof cache, "%s/online_cache.lmdb", dir);
    uint64_t pack_id;
    write_pack(pack, img, NON, &pack_id);

    /* teacher-dump's compute(): the record's image, the whole-image pass at
     * stride 8, pk_logits_encode */
    pk_seg_opts so;
    pk_seg_opts_default(&so);
    pk_seg_ws *ws = pk_seg_ws_new();
    float *gm[NON], *ga[NON];
    for (int i = 0; i < NON; i++) {
        pk_logits_geom g;
        pk_logits_geom_init(&g, img[i].w, img[i].h);
        size_t n = (size_t)g.grid_w * g.grid_h * K;
        gm[i] = pk_test_xmalloc(n * sizeof(float));
        ga[i] = pk_test_xmalloc(n * sizeof(float));
        uint8_t *rec;
        size_t len;
        pk_record_view rv;
        pk_image im = {0};
        if (!ws || pk_record_encode(&rec, &len, "x", img[i].w, img[i].h, PK_IMG_RGB8,
                                    img[i].rgb, (size_t)img[i].w * img[i].h * 3, img[i].lbl,
                                    &e) ||
            pk_record_parse(&rv, rec, len, &e) || pk_record_image(&im, &rv, &e) ||
            pk_seg_whole_image(m, im.px, img[i].w, img[i].h, 0, so.mean, so.std, gm[i],
                               ga[i], ws, &e))
            die("teacher pass", &e);
        pk_image_free(&im);
        free(rec);
    }
    write_cache(cache, img, NON, pack_id, gm, ga);
    pk_logits_cache *c = open_cache(cache, pack);

    /* (a) the grid read back, against the online teacher on the padded
     * image teacher-dump sees, at full resolution: pixel (8j, 8i) */
    double grid_d = 0, grid_ratio = 0, vmax_all = 0;
    long grid_n = 0;
    for (int i = 0; i < NON; i++) {
        pk_logits_geom g;
        pk_logits_geom_init(&g, img[i].w, img[i].h);
        size_t n = (size_t)g.grid_w * g.grid_h * K, full = (size_t)g.pad_w * g.pad_h * K;
        float *cm = pk_test_xmalloc(n * 4), *ca = pk_test_xmalloc(n * 4);
        float *in = pk_test_xmalloc((size_t)g.pad_w * g.pad_h * 3 * 4);
        float *om = pk_test_xmalloc(full * 4), *oa = pk_test_xmalloc(full * 4);
        if (pk_logits_cache_get(c, img[i].key, img[i].w, img[i].h, cm, ca, NULL, &e))
            die("cache get", &e);
        pk_seg_normalize_pad(in, g.pad_w, g.pad_h, img[i].rgb, img[i].w, img[i].h, so.mean,
                             so.std);
        if (pk_model_infer(m, om, oa, in, 1, g.pad_h, g.pad_w, 1, &e))
            die("online teacher", &e);
        for (int gy = 0; gy < g.grid_h; gy++)
            for (int gx = 0; gx < g.grid_w; gx++)
                for (int k = 0; k < K; k++) {
                    size_t ci = ((size_t)gy * g.grid_w + gx) * K + k;
                    size_t oi = ((size_t)(8 * gy) * g.pad_w + 8 * gx) * K + k;
                    for (int pl = 0; pl < 2; pl++) {
                        double got = pl ? ca[ci] : cm[ci], want = pl ? oa[oi] : om[oi];
                        grid_d = fmax(grid_d, fabs(got - want));
                        grid_ratio = fmax(grid_ratio, f16_ratio(got, want, fabs(want)));
                        vmax_all = fmax(vmax_all, fabs(want));
                        grid_n++;
                    }
                }
        free(cm);
        free(ca);
        free(in);
        free(om);
        free(oa);
    }
    printf("  cache vs online, grid (%ld values, |logit| <= %.3g): max |d| %.3g, "
           "max |d| / (2^-10 |v| + 1e-4) = %.3f\n",
           grid_n, vmax_all, grid_d, grid_ratio);
    PK_CHECK(failures, grid_n > 0 && grid_ratio <= 1.0,
             "cached grid differs from the online teacher beyond fp16: ratio %.3f", grid_ratio);
    PK_CHECK(failures, vmax_all > 0.1, "the teacher's logits are all tiny (%.3g)", vmax_all);

    /* (b) student-distill's two modes on the same un-augmented crops, taken
     * from its input stream (pk_train_data): the cache's planes, warped by
     * the loader, against the online teacher run on the crops' images as
     * train_loop.c runs it, every pixel. Only the 8k+1 records count (all
     * valid; the other is padded by the crop, centred, unlike teacher-dump's
     * bottom-right padding, so its teacher input differs). The fp16 bound
     * takes the largest of the four grid values interpolated: the online
     * logits at the crop's pixels (8j, 8i). */
    pk_train_data_opts to = {.pack = pack, .batch = NON, .workers = 1, .seed = 3,
                             .end_iter = 1, .cache = c, .classes = K};
    pk_aug_opts_default(&to.aug, OH, OW);
    to.aug.none = 1;
    pk_train_data *td;
    pk_train_crops b;
    if (pk_train_data_open(&td, &to, &e) || pk_train_data_next(td, &b, &e) || b.n != NON ||
        !b.teacher || b.h != OH || b.w != OW)
        die("train data", &e);
    size_t px = OW * OH;
    float *om = pk_test_xmalloc((size_t)b.n * px * K * 4);
    float *oa = pk_test_xmalloc((size_t)b.n * px * K * 4);
    if (pk_model_infer(m, om, oa, b.image, b.n, OH, OW, 1, &e))
        die("online teacher", &e);
    double full_d = 0, full_ratio = 0;
    long full_n = 0;
    int full_crops = 0;
    for (int s = 0; s < b.n; s++) {
        size_t nvalid = 0;
        for (size_t i = 0; i < px; i++)
            nvalid += b.valid[(size_t)s * px + i];
        if (nvalid != px)
            continue;
        full_crops++;
        for (int y = 0; y < OH; y++)
            for (int x = 0; x < OW; x++) {
                size_t i = (size_t)s * px + (size_t)y * OW + x;
                int cx[2] = {x / 8 * 8, imin(x / 8 * 8 + 8, OW - 1)};
                int cy[2] = {y / 8 * 8, imin(y / 8 * 8 + 8, OH - 1)};
                for (int pl = 0; pl < 2; pl++) {
                    const float *on = pl ? oa : om;
                    for (int k = 0; k < K; k++) {
                        double v = 0;
                        for (int u = 0; u < 2; u++)
                            for (int t = 0; t < 2; t++)
                                v = fmax(v, fabs(on[((size_t)s * px + (size_t)cy[u] * OW +
                                                     cx[t]) * K + k]));
                        double got = b.teacher[i * 2 * K + (size_t)pl * K + k];
                        double want = on[i * K + k];
                        full_d = fmax(full_d, fabs(got - want));
                        full_ratio = fmax(full_ratio, f16_ratio(got, want, v));
                        full_n++;
                    }
                }
            }
    }
    printf("  cache vs online, student-distill crops (%ld values): max |d| %.3g, max |d| / "
           "(2^-10 |v| + 1e-4) = %.3f\n",
           full_n, full_d, full_ratio);
    PK_CHECK(failures, full_crops == 2 && full_ratio <= 1.0,
             "cached planes differ from the online teacher beyond fp16: ratio %.3f over %d "
             "crops",
             full_ratio, full_crops);
    free(om);
    free(oa);
    pk_train_data_close(td);
    pk_logits_cache_close(c);
    for (int i = 0; i < NON; i++) {
        free(gm[i]);
        free(ga[i]);
        rec_free(&img[i]);
    }
    pk_seg_ws_free(ws);
    pk_model_destroy(m);
    pk_ctx_destroy(ctx);
    unlink(pack);
    unlink(cache);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/pk_oracle_XXXXXX");
    if (!mkdtemp(dir))
        abort();
    test_labels_as_teacher();
    test_online_teacher();
    rmdir(dir);
    if (failures) {
        fprintf(stderr, "test_cache_oracle: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_cache_oracle: ok\n");
    return 0;
}
