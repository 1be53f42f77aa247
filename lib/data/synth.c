/* Synthetic VOC-like samples; see synth.h for what and why.
 *
 * Rendering works in float RGB; shapes get 4-sample coverage so edges are
 * anti-aliased as in photographs, while the label takes the class at the
 * pixel centre and the 255 band then covers every class edge. */
#include "data/synth.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/rng.h"

#define PI_F 3.14159265f

enum shape { SH_TRIANGLE, SH_ELLIPSE, SH_STAR, SH_RING, SH_CROSS, SH_RECT };
enum texture { TX_PLAIN, TX_STRIPES, TX_CHECKER, TX_SPOTS, TX_GRADIENT, TX_COUNT };

/* Class slots: the shape families repeat with different colours and the
 * hue ranges overlap their neighbours', so only shape AND colour together
 * name the class. */
static const struct proto {
    int shape;
    float hue, spread; /* degrees: hue drawn uniformly in hue +- spread */
    const char *desc;
} PROTO[PK_SYNTH_MAX_CLASSES] = {
    {SH_TRIANGLE, 15, 30, "triangle, warm hues 345..45"},
    {SH_TRIANGLE, 210, 35, "triangle, cool hues 175..245"},
    {SH_ELLIPSE, 35, 30, "ellipse, warm hues 5..65"},
    {SH_ELLIPSE, 190, 35, "ellipse, cool hues 155..225"},
    {SH_STAR, 90, 40, "five-point star, hues 50..130"},
    {SH_RING, 290, 45, "ring, hues 245..335"},
    {SH_CROSS, 130, 40, "cross, hues 90..170"},
    {SH_RECT, 340, 40, "rotated rectangle, hues 300..20"},
};

const char *pk_synth_class_desc(int k)
{
    return k >= 0 && k < PK_SYNTH_MAX_CLASSES ? PROTO[k].desc : NULL;
}

void pk_synth_defaults(pk_synth_opts *o)
{
    static const int ids[] = {1, 3, 7, 8, 12, 15};
    memset(o, 0, sizeof *o);
    o->seed = 1;
    o->min_size = 97;
    o->max_size = 129;
    o->nclasses = 6;
    memcpy(o->class_ids, ids, sizeof ids);
    o->border = 1;
    o->min_objects = 1;
    o->max_objects = 4;
}

int pk_synth_check(const pk_synth_opts *o, pk_err *e)
{
    if (o->min_size < 16 || o->max_size < o->min_size || o->max_size > 4096)
        return pk_fail(e, PK_EINVAL, "image size range %d..%d outside 16..4096", o->min_size,
                       o->max_size);
    if (o->nclasses < 1 || o->nclasses > PK_SYNTH_MAX_CLASSES)
        return pk_fail(e, PK_EINVAL, "%d classes: 1..%d supported", o->nclasses,
                       PK_SYNTH_MAX_CLASSES);
    for (int i = 0; i < o->nclasses; i++) {
        if (o->class_ids[i] < 1 || o->class_ids[i] > 254)
            return pk_fail(e, PK_EINVAL, "class id %d outside 1..254", o->class_ids[i]);
        for (int j = 0; j < i; j++)
            if (o->class_ids[i] == o->class_ids[j])
                return pk_fail(e, PK_EINVAL, "class id %d given twice", o->class_ids[i]);
    }
    if (o->border < 0 || o->border > 8)
        return pk_fail(e, PK_EINVAL, "border %d outside 0..8", o->border);
    if (o->min_objects < 1 || o->max_objects < o->min_objects || o->max_objects > 16)
        return pk_fail(e, PK_EINVAL, "object count range %d..%d outside 1..16", o->min_objects,
                       o->max_objects);
    return PK_OK;
}

/* ---- small helpers ---- */

static int rand_int(pk_rng *r, int lo, int hi) /* inclusive */
{
    return lo + (int)pk_rng_below(r, (uint32_t)(hi - lo + 1));
}

static void hsv_to_rgb(float h, float s, float v, float rgb[3])
{
    h = fmodf(h, 360.0f);
    if (h < 0)
        h += 360.0f;
    float c = v * s, hp = h / 60.0f, x = c * (1.0f - fabsf(fmodf(hp, 2.0f) - 1.0f));
    float r = 0, g = 0, b = 0;
    switch ((int)hp) {
    case 0: r = c; g = x; break;
    case 1: r = x; g = c; break;
    case 2: g = c; b = x; break;
    case 3: g = x; b = c; break;
    case 4: r = x; b = c; break;
    default: r = c; b = x; break;
    }
    float m = v - c;
    rgb[0] = 255.0f * (r + m);
    rgb[1] = 255.0f * (g + m);
    rgb[2] = 255.0f * (b + m);
}

struct canvas {
    int w, h;
    float *rgb;     /* w*h*3 */
    uint8_t *label; /* w*h */
};

/* ---- shapes ---- */

struct obj {
    int shape, tex, label;
    float cx, cy, a, b, cs, sn;  /* centre, half-axes, rotation */
    float inner;                 /* ring hole / cross arm / star inner radius */
    float poly[10][2];           /* triangle (3) or star (10) vertices, unit frame */
    int npoly;
    float c0[3], c1[3];          /* texture colours */
    float period, tcs, tsn;      /* texture scale (px) and direction */
};

static int in_poly(const float (*p)[2], int n, float x, float y)
{
    int in = 0;
    for (int i = 0, j = n - 1; i < n; j = i++) {
        if ((p[i][1] > y) != (p[j][1] > y) &&
            x < (p[j][0] - p[i][0]) * (y - p[i][1]) / (p[j][1] - p[i][1]) + p[i][0])
            in = !in;
    }
    return in;
}

/* Is image point (x, y) inside the object? Also returns local coords. */
static int obj_inside(const struct obj *o, float x, float y, float *pu, float *pv)
{
    float dx = x - o->cx, dy = y - o->cy;
    float u = dx * o->cs + dy * o->sn, v = -dx * o->sn + dy * o->cs;
    float nx = u / o->a, ny = v / o->b, r2 = nx * nx + ny * ny;
    if (pu) {
        *pu = u;
        *pv = v;
    }
    switch (o->shape) {
    case SH_ELLIPSE: return r2 <= 1.0f;
    case SH_RING: return r2 <= 1.0f && r2 >= o->inner * o->inner;
    case SH_RECT: return fabsf(nx) <= 1.0f && fabsf(ny) <= 1.0f;
    case SH_CROSS:
        return (fabsf(nx) <= 1.0f && fabsf(ny) <= o->inner) ||
               (fabsf(nx) <= o->inner && fabsf(ny) <= 1.0f);
    default: return in_poly((const float(*)[2])o->poly, o->npoly, nx, ny);
    }
}

static float texture(const struct obj *o, float u, float v)
{
    float s = (u * o->tcs + v * o->tsn) / o->period, t = (-u * o->tsn + v * o->tcs) / o->period;
    switch (o->tex) {
    case TX_STRIPES: return 0.5f + 0.5f * sinf(2.0f * PI_F * s);
    case TX_CHECKER: return (float)(((int)floorf(s) + (int)floorf(t)) & 1);
    case TX_SPOTS: {
        float fs = s - floorf(s) - 0.5f, ft = t - floorf(t) - 0.5f;
        return fs * fs + ft * ft < 0.09f ? 1.0f : 0.0f;
    }
    case TX_GRADIENT: return fminf(1.0f, fmaxf(0.0f, 0.5f + 0.5f * u / o->a));
    default: return 0.0f;
    }
}

static void random_colour(pk_rng *r, float hue, float spread, float rgb[3], float *h_out,
                          float *s_out, float *v_out)
{
    float h = hue + pk_rng_uniform(r, -spread, spread);
    float s = pk_rng_uniform(r, 0.35f, 1.0f), v = pk_rng_uniform(r, 0.35f, 1.0f);
    hsv_to_rgb(h, s, v, rgb);
    *h_out = h;
    *s_out = s;
    *v_out = v;
}

static void make_obj(struct obj *o, pk_rng *r, const pk_synth_opts *opt, int w, int h)
{
    int k = (int)pk_rng_below(r, (uint32_t)opt->nclasses);
    const struct proto *p = &PROTO[k];
    float side = (float)(w < h ? w : h);
    memset(o, 0, sizeof *o);
    o->shape = p->shape;
    o->label = opt->class_ids[k];
    o->cx = pk_rng_uniform(r, 0.05f, 0.95f) * w;
    o->cy = pk_rng_uniform(r, 0.05f, 0.95f) * h;
    o->a = pk_rng_uniform(r, 0.12f, 0.40f) * side;
    o->b = o->a * pk_rng_uniform(r, 0.65f, 1.35f);
    if (o->shape == SH_STAR || o->shape == SH_CROSS)
        o->b = o->a * pk_rng_uniform(r, 0.9f, 1.1f); /* keep the points / arms readable */
    float rot = pk_rng_uniform(r, 0.0f, 2.0f * PI_F);
    o->cs = cosf(rot);
    o->sn = sinf(rot);
    switch (o->shape) {
    case SH_RING: o->inner = pk_rng_uniform(r, 0.45f, 0.65f); break;
    case SH_CROSS: o->inner = pk_rng_uniform(r, 0.28f, 0.42f); break;
    case SH_STAR: {
        float in = pk_rng_uniform(r, 0.38f, 0.5f);
        for (int i = 0; i < 10; i++) {
            float ang = -PI_F / 2 + (float)i * PI_F / 5, rad = (i & 1) ? in : 1.0f;
            o->poly[i][0] = rad * cosf(ang);
            o->poly[i][1] = rad * sinf(ang);
        }
        o->npoly = 10;
        break;
    }
    case SH_TRIANGLE: {
        float apex = pk_rng_uniform(r, -0.3f, 0.3f); /* not always isosceles */
        const float t[3][2] = {{apex, -1.0f}, {1.0f, 0.8f}, {-1.0f, 0.8f}};
        memcpy(o->poly, t, sizeof t);
        o->npoly = 3;
        break;
    }
    default: break;
    }
    float hh, ss, vv;
    random_colour(r, p->hue, p->spread, o->c0, &hh, &ss, &vv);
    hsv_to_rgb(hh + pk_rng_uniform(r, -25.0f, 25.0f), ss * pk_rng_uniform(r, 0.6f, 1.0f),
               vv * pk_rng_uniform(r, 0.45f, 0.9f), o->c1);
    o->tex = (int)pk_rng_below(r, TX_COUNT);
    o->period = pk_rng_uniform(r, 3.0f, 9.0f);
    float ta = pk_rng_uniform(r, 0.0f, PI_F);
    o->tcs = cosf(ta);
    o->tsn = sinf(ta);
}

static const float SUB[4][2] = {{-0.25f, -0.25f}, {0.25f, -0.25f}, {-0.25f, 0.25f}, {0.25f, 0.25f}};

static void draw_obj(struct canvas *cv, const struct obj *o)
{
    float ext = fmaxf(o->a, o->b) + 1.0f;
    int x0 = (int)fmaxf(0.0f, floorf(o->cx - ext)), x1 = (int)fminf(cv->w - 1, ceilf(o->cx + ext));
    int y0 = (int)fmaxf(0.0f, floorf(o->cy - ext)), y1 = (int)fminf(cv->h - 1, ceilf(o->cy + ext));
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) {
            float px = x + 0.5f, py = y + 0.5f, u, v;
            int hits = 0;
            for (int s = 0; s < 4; s++)
                hits += obj_inside(o, px + SUB[s][0], py + SUB[s][1], NULL, NULL);
            if (!hits)
                continue;
            if (obj_inside(o, px, py, &u, &v))
                cv->label[y * cv->w + x] = (uint8_t)o->label;
            float t = texture(o, u, v), shade = 1.0f + 0.15f * v / o->b, cov = hits * 0.25f;
            float *dst = cv->rgb + 3 * ((size_t)y * cv->w + x);
            for (int c = 0; c < 3; c++) {
                float col = (o->c0[c] * (1.0f - t) + o->c1[c] * t) * shade;
                dst[c] = dst[c] * (1.0f - cov) + col * cov;
            }
        }
}

/* ---- background and distractors (all labelled background) ---- */

static void draw_background(struct canvas *cv, pk_rng *r)
{
    float a[3], b[3];
    hsv_to_rgb(pk_rng_uniform(r, 0, 360), pk_rng_uniform(r, 0, 0.5f), pk_rng_uniform(r, 0.2f, 0.9f), a);
    hsv_to_rgb(pk_rng_uniform(r, 0, 360), pk_rng_uniform(r, 0, 0.5f), pk_rng_uniform(r, 0.2f, 0.9f), b);
    float ang = pk_rng_uniform(r, 0, 2 * PI_F), gx = cosf(ang), gy = sinf(ang);
    /* coarse value noise: a 6x6 grid of offsets, bilinearly interpolated */
    float grid[6][6];
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 6; j++)
            grid[i][j] = pk_rng_uniform(r, -30.0f, 30.0f);
    float half = 0.5f * sqrtf((float)cv->w * cv->w + (float)cv->h * cv->h);
    for (int y = 0; y < cv->h; y++)
        for (int x = 0; x < cv->w; x++) {
            float t = 0.5f + 0.5f * ((x - cv->w * 0.5f) * gx + (y - cv->h * 0.5f) * gy) / half;
            float fx = (float)x / cv->w * 5.0f, fy = (float)y / cv->h * 5.0f;
            int ix = (int)fx, iy = (int)fy;
            float ax = fx - ix, ay = fy - iy;
            float n = (grid[iy][ix] * (1 - ax) + grid[iy][ix + 1] * ax) * (1 - ay) +
                      (grid[iy + 1][ix] * (1 - ax) + grid[iy + 1][ix + 1] * ax) * ay;
            float *d = cv->rgb + 3 * ((size_t)y * cv->w + x);
            for (int c = 0; c < 3; c++)
                d[c] = a[c] * (1 - t) + b[c] * t + n;
        }
}

static float seg_dist(float px, float py, float x0, float y0, float x1, float y1)
{
    float dx = x1 - x0, dy = y1 - y0, l2 = dx * dx + dy * dy;
    float t = l2 > 0 ? ((px - x0) * dx + (py - y0) * dy) / l2 : 0;
    t = fminf(1.0f, fmaxf(0.0f, t));
    float ex = x0 + t * dx - px, ey = y0 + t * dy - py;
    return sqrtf(ex * ex + ey * ey);
}

/* One distractor mark: a line, a small square, a wobbly blob or an arc, in
 * any colour (so colour alone never says "object"). Labels the pixels
 * background when `relabel` (a mark drawn over objects occludes them). */
static void draw_distractor(struct canvas *cv, pk_rng *r, int relabel)
{
    float col[3];
    hsv_to_rgb(pk_rng_uniform(r, 0, 360), pk_rng_uniform(r, 0.2f, 1.0f),
               pk_rng_uniform(r, 0.2f, 1.0f), col);
    int type = relabel ? 0 : (int)pk_rng_below(r, 4);
    float cx = pk_rng_uniform(r, 0, (float)cv->w), cy = pk_rng_uniform(r, 0, (float)cv->h);
    float x1 = pk_rng_uniform(r, 0, (float)cv->w), y1 = pk_rng_uniform(r, 0, (float)cv->h);
    float th = pk_rng_uniform(r, 0.6f, relabel ? 1.2f : 2.2f);
    float rad = pk_rng_uniform(r, 2.0f, 12.0f), ph = pk_rng_uniform(r, 0, 2 * PI_F);
    int lobes = 2 + (int)pk_rng_below(r, 3) * 2 + (int)pk_rng_below(r, 2) * 5; /* 2,4,6,7,9,11 */
    float arc = pk_rng_uniform(r, 0.8f, 4.0f);
    float ext = type == 0 ? 0 : rad * 1.6f + 2;
    int bx0 = 0, bx1 = cv->w - 1, by0 = 0, by1 = cv->h - 1;
    if (type != 0) {
        bx0 = (int)fmaxf(0, cx - ext);
        bx1 = (int)fminf(cv->w - 1, cx + ext);
        by0 = (int)fmaxf(0, cy - ext);
        by1 = (int)fminf(cv->h - 1, cy + ext);
    }
    for (int y = by0; y <= by1; y++)
        for (int x = bx0; x <= bx1; x++) {
            int hits = 0, centre = 0;
            for (int s = 0; s < 5; s++) {
                float px = x + 0.5f + (s < 4 ? SUB[s][0] : 0), py = y + 0.5f + (s < 4 ? SUB[s][1] : 0);
                float dx = px - cx, dy = py - cy, in;
                switch (type) {
                case 0: in = seg_dist(px, py, cx, cy, x1, y1) <= th; break;
                case 1: in = fabsf(dx) <= rad * 0.35f && fabsf(dy) <= rad * 0.35f; break;
                case 2: {
                    float a = atan2f(dy, dx);
                    float rr = rad * (1 + 0.3f * sinf(lobes * a + ph) + 0.15f * sinf(3 * a - ph));
                    in = dx * dx + dy * dy <= rr * rr;
                    break;
                }
                default: {
                    float d = sqrtf(dx * dx + dy * dy), a = atan2f(dy, dx) - ph;
                    a = a - 2 * PI_F * floorf(a / (2 * PI_F));
                    in = fabsf(d - rad) <= th * 0.7f && a <= arc;
                    break;
                }
                }
                if (s < 4)
                    hits += in;
                else
                    centre = in;
            }
            if (!hits)
                continue;
            float cov = hits * 0.25f, *d = cv->rgb + 3 * ((size_t)y * cv->w + x);
            for (int c = 0; c < 3; c++)
                d[c] = d[c] * (1 - cov) + col[c] * cov;
            if (relabel && centre)
                cv->label[y * cv->w + x] = 0;
        }
}

/* Pixels within `r` (Chebyshev) of a different class become 255. */
static void border_band(uint8_t *out, const uint8_t *in, int w, int h, int r)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t v = in[y * w + x];
            int edge = 0;
            for (int dy = -r; dy <= r && !edge; dy++) {
                int yy = y + dy;
                if (yy < 0 || yy >= h)
                    continue;
                for (int dx = -r; dx <= r; dx++) {
                    int xx = x + dx;
                    if (xx >= 0 && xx < w && in[yy * w + xx] != v) {
                        edge = 1;
                        break;
                    }
                }
            }
            out[y * w + x] = edge ? 255 : v;
        }
}

int pk_synth_sample(pk_image *img, pk_image *label, const pk_synth_opts *o, int index,
                    pk_err *e)
{
    int rc = pk_synth_check(o, e);
    if (rc)
        return rc;
    /* a stream per sample: (seed, index) fixes it whatever the order */
    pk_rng r = pk_rng_seed(pk_hash64(o->seed) ^ (0x5ca1ab1eULL * (uint64_t)(index + 1)));
    int w = rand_int(&r, o->min_size, o->max_size), h = rand_int(&r, o->min_size, o->max_size);
    struct canvas cv = {w, h, malloc(sizeof(float) * 3 * w * h), calloc((size_t)w * h, 1)};
    img->px = label->px = NULL;
    if (!cv.rgb || !cv.label) {
        free(cv.rgb);
        free(cv.label);
        return pk_fail(e, PK_ENOMEM, "out of memory");
    }
    draw_background(&cv, &r);
    int nd = rand_int(&r, 6, 16);
    for (int i = 0; i < nd; i++)
        draw_distractor(&cv, &r, 0);
    int no = rand_int(&r, o->min_objects, o->max_objects);
    for (int i = 0; i < no; i++) {
        struct obj ob;
        make_obj(&ob, &r, o, w, h);
        draw_obj(&cv, &ob);
    }
    int occluders = rand_int(&r, 0, 2);
    for (int i = 0; i < occluders; i++)
        draw_distractor(&cv, &r, 1);

    rc = pk_image_alloc(img, w, h, 3, e);
    if (rc == PK_OK)
        rc = pk_image_alloc(label, w, h, 1, e);
    if (rc == PK_OK) {
        float sigma = pk_rng_uniform(&r, 2.0f, 8.0f);
        for (size_t i = 0; i < (size_t)w * h * 3; i++) {
            float v = cv.rgb[i] + sigma * pk_rng_normal(&r);
            img->px[i] = (uint8_t)(v <= 0 ? 0 : v >= 255 ? 255 : lrintf(v));
        }
        if (o->border > 0)
            border_band(label->px, cv.label, w, h, o->border);
        else
            memcpy(label->px, cv.label, (size_t)w * h);
    } else {
        pk_image_free(img);
    }
    free(cv.rgb);
    free(cv.label);
    return rc;
}
