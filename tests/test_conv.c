/* conv2d through oneDNN against naive double loops (stride, padding,
 * dilation, bias, ci != co, odd sizes), finite differences, dw/db
 * accumulation, the dx == NULL path, thread counts and the primitive cache
 * when shapes alternate. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ops/conv_phase.h"
#include "ops/conv_wino.h"
#include "ops/ops.h"
#include "support.h"

static size_t xsize(const pk_conv_desc *d) { return (size_t)d->n * d->h * d->w * d->ci; }
static size_t ysize(const pk_conv_desc *d) { return (size_t)d->n * d->ho * d->wo * d->co; }
static size_t wsize(const pk_conv_desc *d) { return (size_t)d->co * d->k * d->k * d->ci; }

/* Calls f(ctx, x/w/y indices) for every (output, tap) pair inside the input. */
#define FOR_TAPS(d, body)                                                                  \
    for (int b = 0; b < (d)->n; b++)                                                       \
        for (int oh = 0; oh < (d)->ho; oh++)                                               \
            for (int ow = 0; ow < (d)->wo; ow++)                                           \
                for (int o = 0; o < (d)->co; o++)                                          \
                    for (int kh = 0; kh < (d)->k; kh++)                                    \
                        for (int kw = 0; kw < (d)->k; kw++) {                              \
                            int ih = oh * (d)->stride - (d)->pad + kh * (d)->dil;           \
                            int iw = ow * (d)->stride - (d)->pad + kw * (d)->dil;           \
                            if (ih < 0 || ih >= (d)->h || iw < 0 || iw >= (d)->w)           \
                                continue;                                                  \
                            size_t yi = (((size_t)b * (d)->ho + oh) * (d)->wo + ow) * (d)->co + o; \
                            size_t xb = (((size_t)b * (d)->h + ih) * (d)->w + iw) * (d)->ci; \
                            size_t wb = (((size_t)o * (d)->k + kh) * (d)->k + kw) * (d)->ci; \
                            for (int i = 0; i < (d)->ci; i++) {                            \
                                size_t xi = xb + i, wi = wb + i;                           \
                                body;                                                      \
                            }                                                              \
                        }

static void ref_forward(float *y, const float *x, const float *w, const float *bias,
                        const pk_conv_desc *d)
{
    size_t ny = ysize(d);
    double *acc = calloc(ny, sizeof *acc);
    FOR_TAPS(d, acc[yi] += (double)x[xi] * w[wi]);
    for (size_t i = 0; i < ny; i++)
        y[i] = (float)(acc[i] + (d->bias ? bias[i % d->co] : 0.0));
    free(acc);
}

static void ref_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                         const float *w, const pk_conv_desc *d)
{
    double *ax = calloc(xsize(d), sizeof *ax), *aw = calloc(wsize(d), sizeof *aw);
    FOR_TAPS(d, {
        ax[xi] += (double)dy[yi] * w[wi];
        aw[wi] += (double)dy[yi] * x[xi];
    });
    for (size_t i = 0; i < xsize(d); i++)
        dx[i] = (float)ax[i];
    for (size_t i = 0; i < wsize(d); i++)
        dw[i] = (float)aw[i];
    for (int o = 0; o < d->co; o++) {
        double s = 0;
        for (size_t p = 0; p < ysize(d) / d->co; p++)
            s += dy[p * d->co + o];
        db[o] = (float)s;
    }
    free(ax);
    free(aw);
}

typedef struct case_data {
    pk_conv_desc d;
    float *x, *w, *b, *y, *dy, *dx, *dw, *db;
    float *ry, *rdx, *rdw, *rdb;
} case_data;

static void case_init(case_data *t, pk_conv_desc d, unsigned long long seed)
{
    memset(t, 0, sizeof *t);
    t->d = d;
    size_t nx = xsize(&d), ny = ysize(&d), nw = wsize(&d);
    t->x = malloc(nx * 4), t->w = malloc(nw * 4), t->b = malloc((size_t)d.co * 4);
    t->y = malloc(ny * 4), t->dy = malloc(ny * 4), t->dx = malloc(nx * 4);
    t->dw = malloc(nw * 4), t->db = malloc((size_t)d.co * 4);
    t->ry = malloc(ny * 4), t->rdx = malloc(nx * 4), t->rdw = malloc(nw * 4);
    t->rdb = malloc((size_t)d.co * 4);
    pk_test_fill(t->x, nx, seed, 1.0f);
    pk_test_fill(t->w, nw, seed + 1, 0.5f);
    pk_test_fill(t->b, (size_t)d.co, seed + 2, 0.5f);
    pk_test_fill(t->dy, ny, seed + 3, 1.0f);
    ref_forward(t->ry, t->x, t->w, t->b, &d);
    ref_backward(t->rdx, t->rdw, t->rdb, t->dy, t->x, t->w, &d);
}

static void case_free(case_data *t)
{
    float *ps[] = {t->x, t->w, t->b, t->y, t->dy, t->dx, t->dw, t->db,
                   t->ry, t->rdx, t->rdw, t->rdb};
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++)
        free(ps[i]);
}

/* Forward and backward against the reference; dw/db start from `base`
 * values so that accumulation is checked too. */
static int run_case(pk_ctx *c, case_data *t, const char *name)
{
    int fails = 0;
    pk_err e = {0};
    const pk_conv_desc *d = &t->d;
    char what[160];
    int rc = pk_conv2d_forward(c, t->y, t->x, t->w, d->bias ? t->b : NULL, d, &e);
    PK_CHECK(fails, rc == PK_OK, "%s forward: %s", name, e.msg);
    snprintf(what, sizeof what, "%s y", name);
    fails += pk_check_close(what, t->y, t->ry, ysize(d), 1e-5);

    size_t nw = wsize(d);
    float *want = malloc(nw * 4), wantb[512];
    pk_test_fill(t->dw, nw, 99, 0.25f);
    pk_test_fill(t->db, (size_t)d->co, 98, 0.25f);
    for (size_t i = 0; i < nw; i++)
        want[i] = t->dw[i] + t->rdw[i];
    for (int o = 0; o < d->co; o++)
        wantb[o] = t->db[o] + t->rdb[o];
    memset(t->dx, 0xff, xsize(d) * 4); /* NaN: dx must be assigned, not added */
    rc = pk_conv2d_backward(c, t->dx, t->dw, d->bias ? t->db : NULL, t->dy, t->x, t->w, d, &e);
    PK_CHECK(fails, rc == PK_OK, "%s backward: %s", name, e.msg);
    snprintf(what, sizeof what, "%s dx", name);
    fails += pk_check_close(what, t->dx, t->rdx, xsize(d), 1e-5);
    snprintf(what, sizeof what, "%s dw (+=)", name);
    fails += pk_check_close(what, t->dw, want, nw, 1e-5);
    if (d->bias) {
        snprintf(what, sizeof what, "%s db (+=)", name);
        fails += pk_check_close(what, t->db, wantb, (size_t)d->co, 1e-5);
    }
    free(want);
    return fails;
}

/* ---- finite differences of L = sum(y * r) ------------------------------ */
typedef struct fd_ctx {
    pk_ctx *c;
    case_data *t;
    float *x, *w, *b; /* the arrays being perturbed point into these */
} fd_ctx;

static double fd_loss(void *user, const float *unused)
{
    (void)unused;
    fd_ctx *f = user;
    const pk_conv_desc *d = &f->t->d;
    pk_err e = {0};
    if (pk_conv2d_forward(f->c, f->t->y, f->x, f->w, f->b, d, &e) != PK_OK)
        return NAN;
    double s = 0;
    for (size_t i = 0; i < ysize(d); i++)
        s += (double)f->t->y[i] * f->t->dy[i];
    return s;
}

static int fd_checks(pk_ctx *c)
{
    int fails = 0;
    case_data t;
    case_init(&t, pk_conv_desc_make(1, 6, 7, 3, 4, 3, 2, 2, 2, 1), 500);
    pk_err e = {0};
    size_t nw = wsize(&t.d);
    memset(t.dw, 0, nw * 4);
    memset(t.db, 0, (size_t)t.d.co * 4);
    int rc = pk_conv2d_backward(c, t.dx, t.dw, t.db, t.dy, t.x, t.w, &t.d, &e);
    PK_CHECK(fails, rc == PK_OK, "fd backward: %s", e.msg);
    fd_ctx f = {c, &t, t.x, t.w, t.b};
    fails += pk_check_grad("fd dx", fd_loss, &f, t.x, t.dx, xsize(&t.d), 60, 1e-2, 2e-3);
    fails += pk_check_grad("fd dw", fd_loss, &f, t.w, t.dw, nw, 60, 1e-2, 2e-3);
    fails += pk_check_grad("fd db", fd_loss, &f, t.b, t.db, (size_t)t.d.co, 0, 1e-2, 2e-3);
    case_free(&t);
    return fails;
}

/* dw += twice gives 2x; dx == NULL leaves dx alone and still fills dw. */
static int accumulate_checks(pk_ctx *c)
{
    int fails = 0;
    case_data t;
    case_init(&t, pk_conv_desc_make(2, 9, 8, 5, 7, 3, 1, 1, 1, 1), 700);
    pk_err e = {0};
    size_t nw = wsize(&t.d);
    float *two = malloc(nw * 4), twob[7];
    for (size_t i = 0; i < nw; i++)
        two[i] = 2 * t.rdw[i];
    for (int o = 0; o < 7; o++)
        twob[o] = 2 * t.rdb[o];
    memset(t.dw, 0, nw * 4);
    memset(t.db, 0, sizeof twob);
    for (int r = 0; r < 2; r++)
        PK_CHECK(fails, pk_conv2d_backward(c, NULL, t.dw, t.db, t.dy, t.x, t.w, &t.d, &e) == PK_OK,
                 "backward without dx: %s", e.msg);
    fails += pk_check_close("dx=NULL, twice: dw = 2 g", t.dw, two, nw, 1e-5);
    fails += pk_check_close("dx=NULL, twice: db = 2 g", t.db, twob, 7, 1e-5);
    free(two);
    case_free(&t);
    return fails;
}

static int error_checks(pk_ctx *c)
{
    int fails = 0;
    pk_err e = {0};
    float buf[64] = {0};
    pk_conv_desc d = pk_conv_desc_make(1, 4, 4, 1, 1, 3, 1, 1, 1, 0);
    d.ho = 5; /* inconsistent with the rule */
    PK_CHECK(fails, pk_conv2d_forward(c, buf, buf, buf, NULL, &d, &e) == PK_EINVAL,
             "a wrong output size must be rejected");
    d = pk_conv_desc_make(1, 2, 2, 1, 1, 5, 1, 0, 1, 0); /* kernel larger than input */
    PK_CHECK(fails, d.ho == 0 && pk_conv2d_forward(c, buf, buf, buf, NULL, &d, &e) == PK_EINVAL,
             "an empty output must be rejected");
    d = pk_conv_desc_make(1, 4, 4, 1, 1, 3, 1, 1, 1, 1);
    PK_CHECK(fails, pk_conv2d_forward(c, buf, buf, buf, NULL, &d, &e) == PK_EINVAL,
             "bias=1 without b must be rejected");
    printf("  %s error paths\n", fails ? "FAIL" : "ok  ");
    return fails;
}

/* Enough distinct shapes to make the cache rehash (64 slots at most half
 * full; the cases before this one fill 31), each checked against the
 * reference. */
static int many_shapes(pk_ctx *c)
{
    int fails = 0;
    float x[2 * 12 * 12 * 3], w[4 * 3 * 3 * 3], y[2 * 12 * 12 * 4], ry[2 * 12 * 12 * 4];
    pk_test_fill(x, sizeof x / sizeof *x, 900, 1.0f);
    pk_test_fill(w, sizeof w / sizeof *w, 901, 1.0f);
    double worst = 0;
    for (int h = 1; h <= 12; h++)
        for (int n = 1; n <= 2; n++) {
            pk_conv_desc d = pk_conv_desc_make(n, h, 13 - h, 3, 4, 3, 1, 1, 1, 0);
            pk_err e = {0};
            PK_CHECK(fails, pk_conv2d_forward(c, y, x, w, NULL, &d, &e) == PK_OK, "%s", e.msg);
            ref_forward(ry, x, w, NULL, &d);
            double err = pk_norm_err(y, ry, ysize(&d));
            worst = err > worst ? err : worst;
        }
    printf("  %s 24 more shapes (cache rehash): worst err=%.3g\n",
           worst <= 1e-5 ? "ok  " : "FAIL", worst);
    return fails + (worst <= 1e-5 ? 0 : 1);
}

int main(void)
{
    int fails = 0;
    /* PyTorch's output-size rule, including floor with stride 2. */
    PK_CHECK(fails, pk_conv_out_size(473, 3, 2, 1, 1) == 237, "out size 473 s2");
    PK_CHECK(fails, pk_conv_out_size(8, 3, 2, 0, 1) == 3, "out size floor");
    PK_CHECK(fails, pk_conv_out_size(60, 3, 1, 4, 4) == 60, "out size dilated");
    PK_CHECK(fails, pk_conv_out_size(2, 5, 1, 0, 1) == 0, "out size empty");
    pk_conv_desc fd = pk_conv_desc_make(2, 60, 60, 512, 512, 3, 1, 4, 4, 0);
    PK_CHECK(fails, fabs(pk_conv_flops(&fd) - 2.0 * 2 * 3600 * 512 * 512 * 9) < 1, "flops");

    pk_ctx *c = pk_test_ctx(2);
    struct {
        const char *name;
        pk_conv_desc d;
    } cases[] = {
        {"3x3 p1 bias", pk_conv_desc_make(2, 7, 9, 3, 5, 3, 1, 1, 1, 1)},
        {"3x3 s2 p2 d2 odd", pk_conv_desc_make(2, 11, 9, 6, 4, 3, 2, 2, 2, 1)},
        {"3x3 d4 p4 (layer4)", pk_conv_desc_make(1, 10, 10, 16, 20, 3, 1, 4, 4, 0)},
        {"1x1 ci>co", pk_conv_desc_make(2, 5, 6, 33, 17, 1, 1, 0, 1, 0)},
        {"1x1 1024->40 (backward as GEMMs)", pk_conv_desc_make(2, 7, 9, 1024, 40, 1, 1, 0, 1, 0)},
        {"1x1 s2 (downsample)", pk_conv_desc_make(1, 9, 7, 8, 24, 1, 2, 0, 1, 0)},
        {"7x7 s2 p3 (stem)", pk_conv_desc_make(1, 17, 15, 3, 16, 7, 2, 3, 1, 0)},
        {"3x3 s2 p0 floor", pk_conv_desc_make(1, 8, 10, 4, 4, 3, 2, 0, 1, 1)},
        {"3x3 p1 64->64", pk_conv_desc_make(1, 6, 5, 64, 64, 3, 1, 1, 1, 0)},
        /* Winograd-eligible (cls/aux head, layer1): several 4x4 tiles, ragged edges */
        {"3x3 p1 300->250 bias 11x13 (partial channel blocks)",
         pk_conv_desc_make(2, 11, 13, 300, 250, 3, 1, 1, 1, 1)},
        {"3x3 p1 256->272 bias 19x21", pk_conv_desc_make(2, 19, 21, 256, 272, 3, 1, 1, 1, 1)},
        {"3x3 p1 1024->64 13x13", pk_conv_desc_make(1, 13, 13, 1024, 64, 3, 1, 1, 1, 0)},
        /* dilated and wide: through the phases (conv_phase.c), ragged edges */
        {"3x3 d2 p2 256->256 17x19 phases", pk_conv_desc_make(2, 17, 19, 256, 256, 3, 1, 2, 2, 0)},
        {"3x3 d4 p4 256->272 bias 33x35 phases",
         pk_conv_desc_make(1, 33, 35, 256, 272, 3, 1, 4, 4, 1)},
    };
    int ncases = (int)(sizeof cases / sizeof *cases);
    case_data *data = calloc((size_t)ncases, sizeof *data);
    for (int i = 0; i < ncases; i++) {
        case_init(&data[i], cases[i].d, 100 + 10 * (unsigned long long)i);
        fails += run_case(c, &data[i], cases[i].name);
    }
    /* The same shapes again in another order: every cached primitive must
     * still give its own shape's answer. */
    for (int r = 0; r < 2; r++)
        for (int i = ncases - 1; i >= 0; i -= 2)
            fails += run_case(c, &data[i], "cached");
    fails += fd_checks(c);
    fails += accumulate_checks(c);
    fails += many_shapes(c);
    for (int i = 0; i < ncases; i++) /* still right after the rehash */
        fails += run_case(c, &data[i], "after rehash");
    fails += error_checks(c);
    pk_ctx_destroy(c);

    /* Winograd (conv_wino.c) is taken by default for wide convolutions with
     * enough tiles, PK_CONV_DIRECT turns it off; both agree with the
     * reference above. */
    pk_ctx_opts od = {.device = PK_DEV_CPU, .threads = 2, .conv_algo = PK_CONV_DIRECT};
    pk_err e = {0};
    PK_CHECK(fails, pk_ctx_create(&c, &od, &e) == PK_OK, "direct ctx: %s", e.msg);
    PK_CHECK(fails, pk_conv2d_winograd(c, &data[ncases - 4].d, &e) == 0,
             "PK_CONV_DIRECT: no Winograd");
    PK_CHECK(fails, !pk_conv_phase_eligible(c, &data[ncases - 1].d), "PK_CONV_DIRECT: no phases");
    fails += run_case(c, &data[ncases - 4], "direct");
    fails += run_case(c, &data[ncases - 1], "direct dilated");
    pk_ctx_destroy(c);
    c = pk_test_ctx(2);
    int wino = pk_conv2d_winograd(c, &data[ncases - 4].d, &e);
    printf("  info dilated 256->272 d4 runs %s\n", pk_conv_phase_eligible(c, &data[ncases - 1].d)
                                                     ? "through its phases (Winograd)"
                                                     : "direct (PSPKD_CONV=direct)");
    PK_CHECK(fails, pk_conv_phase_eligible(c, &data[ncases - 1].d) == wino,
             "dilated wide convolutions take the phases wherever Winograd exists");
    PK_CHECK(fails, wino >= 0, "winograd query: %s", e.msg);
    PK_CHECK(fails, pk_conv2d_winograd(c, &data[1].d, &e) == 0, "strided/dilated: direct");
    /* too few 4x4 tiles to gain: direct by default, Winograd when forced */
    pk_conv_desc small = pk_conv_desc_make(1, 9, 9, 256, 256, 3, 1, 1, 1, 0);
    PK_CHECK(fails, pk_conv2d_winograd(c, &small, &e) == 0, "1 map of 9x9: direct");
    /* the default's rule: at least 32 tiles, or 16 at least half inside */
    PK_CHECK(fails, pk_wino_gains(2, 29, 29) && pk_wino_gains(8, 8, 8) && pk_wino_gains(64, 2, 2) &&
                        pk_wino_gains(16, 4, 4),
             "enough tiles: Winograd");
    PK_CHECK(fails, !pk_wino_gains(1, 9, 9) && !pk_wino_gains(8, 4, 4) &&
                        !pk_wino_gains(16, 2, 2) && !pk_wino_gains(4, 5, 5),
             "too few tiles, or too ragged: direct");
    pk_ctx_destroy(c);
    pk_ctx_opts ow = {.device = PK_DEV_CPU, .threads = 2, .conv_algo = PK_CONV_WINOGRAD};
    PK_CHECK(fails, pk_ctx_create(&c, &ow, &e) == PK_OK, "winograd ctx: %s", e.msg);
    PK_CHECK(fails, pk_conv2d_winograd(c, &small, &e) == wino, "PK_CONV_WINOGRAD: 9x9 too");
    case_data sm;
    case_init(&sm, small, 777);
    fails += run_case(c, &sm, "forced Winograd 9x9");
    case_free(&sm);
    printf("  info 3x3 p1 256->272 runs %s\n",
           wino == 1 ? "Winograd" : "direct (PSPKD_CONV=direct)");
    pk_ctx_destroy(c);

    /* One thread gives the same answer as two. */
    c = pk_test_ctx(1);
    fails += run_case(c, &data[1], "1 thread");
    fails += run_case(c, &data[ncases - 5], "1 thread, Winograd");
    pk_ctx_destroy(c);
    for (int i = 0; i < ncases; i++)
        case_free(&data[i]);
    free(data);
    printf("test_conv: %s\n", fails ? "FAILED" : "passed");
    return fails ? 1 : 0;
}
