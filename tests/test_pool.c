/* Max pooling (PyTorch's output size, -inf padding, first max on ties,
 * argmax, backward) and adaptive average pooling (PyTorch's floor/ceil bin
 * edges on sizes that do not divide) against naive loops and finite
 * differences. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ops/ops.h"
#include "support.h"

/* ---- max pool ---------------------------------------------------------- */
static void ref_maxpool(float *y, int32_t *am, const float *x, int n, int h, int w, int ch,
                        int k, int s, int p, int ho, int wo)
{
    for (int b = 0; b < n; b++)
        for (int oh = 0; oh < ho; oh++)
            for (int ow = 0; ow < wo; ow++)
                for (int c = 0; c < ch; c++) {
                    float m = -INFINITY;
                    int32_t idx = -1;
                    for (int i = 0; i < k; i++)
                        for (int j = 0; j < k; j++) {
                            int ih = oh * s - p + i, iw = ow * s - p + j;
                            if (ih < 0 || ih >= h || iw < 0 || iw >= w)
                                continue;
                            int32_t f = (int32_t)((ih * w + iw) * ch + c);
                            float v = x[(size_t)b * h * w * ch + f];
                            if (idx < 0 || v > m) { /* strict: first max wins */
                                m = v;
                                idx = f;
                            }
                        }
                    size_t o = (((size_t)b * ho + oh) * wo + ow) * ch + c;
                    y[o] = m;
                    am[o] = idx;
                }
}

typedef struct mp_case {
    pk_ctx *c;
    int n, h, w, ch, k, s, p, ho, wo;
    float *y, *dy;
    int32_t *am;
} mp_case;

static double mp_loss(void *user, const float *x)
{
    mp_case *t = user;
    pk_maxpool_forward(t->c, t->y, t->am, x, t->n, t->h, t->w, t->ch, t->k, t->s, t->p);
    double s = 0;
    for (size_t i = 0; i < (size_t)t->n * t->ho * t->wo * t->ch; i++)
        s += (double)t->y[i] * t->dy[i];
    return s;
}

static int maxpool_case(pk_ctx *c, int n, int h, int w, int ch, int k, int s, int p,
                        float offset, const char *name)
{
    int fails = 0;
    int ho = pk_pool_out_size(h, k, s, p), wo = pk_pool_out_size(w, k, s, p);
    size_t nx = (size_t)n * h * w * ch, ny = (size_t)n * ho * wo * ch;
    float *x = malloc(nx * 4), *y = malloc(ny * 4), *ry = malloc(ny * 4), *dy = malloc(ny * 4);
    float *dx = malloc(nx * 4), *rdx = calloc(nx, 4);
    int32_t *am = malloc(ny * 4), *ram = malloc(ny * 4);
    /* Distinct values (no ties): a shuffled ramp, shifted by offset. */
    for (size_t i = 0; i < nx; i++)
        x[i] = (float)((i * 7919) % nx) * 0.1f + offset;
    pk_test_fill(dy, ny, 31, 1.0f);
    ref_maxpool(ry, ram, x, n, h, w, ch, k, s, p, ho, wo);
    pk_maxpool_forward(c, y, am, x, n, h, w, ch, k, s, p);
    char what[128];
    snprintf(what, sizeof what, "%s y", name);
    fails += pk_check_close(what, y, ry, ny, 0);
    PK_CHECK(fails, !memcmp(am, ram, ny * 4), "%s: argmax differs", name);
    for (size_t o = 0; o < ny; o++)
        rdx[(o / ((size_t)ho * wo * ch)) * h * w * ch + (size_t)ram[o]] += dy[o];
    memset(dx, 0xff, nx * 4);
    pk_maxpool_backward(c, dx, dy, am, n, h, w, ch, ho, wo);
    snprintf(what, sizeof what, "%s dx", name);
    fails += pk_check_close(what, dx, rdx, nx, 1e-6);
    if (nx <= 2000) {
        mp_case t = {c, n, h, w, ch, k, s, p, ho, wo, y, dy, am};
        snprintf(what, sizeof what, "%s fd dx", name);
        fails += pk_check_grad(what, mp_loss, &t, x, dx, nx, 0, 1e-2, 2e-3);
    }
    free(x), free(y), free(ry), free(dy), free(dx), free(rdx), free(am), free(ram);
    return fails;
}

/* Ties take the first maximum in window order; padding never wins even
 * when every real value is negative. */
static int maxpool_ties(pk_ctx *c)
{
    int fails = 0;
    float x[4 * 4 * 2];
    for (int i = 0; i < 32; i++)
        x[i] = -5.0f; /* all equal, all negative */
    x[(1 * 4 + 2) * 2 + 1] = 3.0f;
    x[(2 * 4 + 1) * 2 + 1] = 3.0f; /* a tie with the one above */
    float y[2 * 2 * 2];
    int32_t am[2 * 2 * 2];
    pk_maxpool_forward(c, y, am, x, 1, 4, 4, 2, 3, 2, 1);
    /* output (0,0) window rows 0..1, cols 0..1: first element (0,0) */
    PK_CHECK(fails, y[0] == -5.0f && am[0] == 0, "tie: y=%g am=%d", y[0], am[0]);
    /* output (1,1) channel 1 window rows 1..3, cols 1..3: (1,2) precedes (2,1) */
    PK_CHECK(fails, y[7] == 3.0f && am[7] == (1 * 4 + 2) * 2 + 1, "tie order: am=%d", am[7]);
    /* output (0,1) channel 0 window rows 0..1 cols 1..3: first is (0,1) */
    PK_CHECK(fails, am[2] == (0 * 4 + 1) * 2, "tie: am=%d", am[2]);
    printf("  %s max-pool ties and negative inputs\n", fails ? "FAIL" : "ok  ");
    return fails;
}

/* ---- adaptive average pool --------------------------------------------- */
static void ref_adapool(float *y, const float *x, int n, int h, int w, int ch, int bins)
{
    for (int b = 0; b < n; b++)
        for (int i = 0; i < bins; i++)
            for (int j = 0; j < bins; j++) {
                int h0 = (int)floor((double)i * h / bins), h1 = (int)ceil((double)(i + 1) * h / bins);
                int w0 = (int)floor((double)j * w / bins), w1 = (int)ceil((double)(j + 1) * w / bins);
                for (int c = 0; c < ch; c++) {
                    double s = 0;
                    for (int ih = h0; ih < h1; ih++)
                        for (int iw = w0; iw < w1; iw++)
                            s += x[(((size_t)b * h + ih) * w + iw) * ch + c];
                    y[(((size_t)b * bins + i) * bins + j) * ch + c] =
                        (float)(s / ((h1 - h0) * (w1 - w0)));
                }
            }
}

typedef struct ap_case {
    pk_ctx *c;
    int n, h, w, ch, bins;
    float *y, *dy;
} ap_case;

static double ap_loss(void *user, const float *x)
{
    ap_case *t = user;
    pk_adapool_forward(t->c, t->y, x, t->n, t->h, t->w, t->ch, t->bins);
    double s = 0;
    for (size_t i = 0; i < (size_t)t->n * t->bins * t->bins * t->ch; i++)
        s += (double)t->y[i] * t->dy[i];
    return s;
}

static int adapool_case(pk_ctx *c, int n, int h, int w, int ch, int bins)
{
    int fails = 0;
    size_t nx = (size_t)n * h * w * ch, ny = (size_t)n * bins * bins * ch;
    float *x = malloc(nx * 4), *y = malloc(ny * 4), *ry = malloc(ny * 4), *dy = malloc(ny * 4);
    float *dx = malloc(nx * 4), *rdx = calloc(nx, 4);
    pk_test_fill(x, nx, 41, 1.0f);
    pk_test_fill(dy, ny, 42, 1.0f);
    ref_adapool(ry, x, n, h, w, ch, bins);
    pk_adapool_forward(c, y, x, n, h, w, ch, bins);
    char what[128];
    snprintf(what, sizeof what, "adapool %dx%d c%d -> %d y", h, w, ch, bins);
    fails += pk_check_close(what, y, ry, ny, 1e-6);
    /* The reference gradient: the transpose of the reference forward, one
     * unit vector at a time would be slow; scatter dy/area instead. */
    for (int b = 0; b < n; b++)
        for (int i = 0; i < bins; i++)
            for (int j = 0; j < bins; j++) {
                int h0 = (int)floor((double)i * h / bins), h1 = (int)ceil((double)(i + 1) * h / bins);
                int w0 = (int)floor((double)j * w / bins), w1 = (int)ceil((double)(j + 1) * w / bins);
                for (int ih = h0; ih < h1; ih++)
                    for (int iw = w0; iw < w1; iw++)
                        for (int q = 0; q < ch; q++)
                            rdx[(((size_t)b * h + ih) * w + iw) * ch + q] +=
                                dy[(((size_t)b * bins + i) * bins + j) * ch + q] /
                                (float)((h1 - h0) * (w1 - w0));
            }
    memset(dx, 0xff, nx * 4);
    pk_adapool_backward(c, dx, dy, n, h, w, ch, bins);
    snprintf(what, sizeof what, "adapool %dx%d c%d -> %d dx", h, w, ch, bins);
    fails += pk_check_close(what, dx, rdx, nx, 1e-6);
    if (nx <= 4000) {
        ap_case t = {c, n, h, w, ch, bins, y, dy};
        snprintf(what, sizeof what, "adapool %dx%d -> %d fd dx", h, w, bins);
        fails += pk_check_grad(what, ap_loss, &t, x, dx, nx, 200, 1e-2, 1e-3);
    }
    free(x), free(y), free(ry), free(dy), free(dx), free(rdx);
    return fails;
}

int main(void)
{
    int fails = 0;
    PK_CHECK(fails, pk_pool_out_size(237, 3, 2, 1) == 119, "237 -> 119");
    PK_CHECK(fails, pk_pool_out_size(8, 3, 2, 1) == 4, "8 -> 4");
    PK_CHECK(fails, pk_pool_out_size(7, 3, 2, 0) == 3, "7 p0 -> 3");
    PK_CHECK(fails, pk_pool_out_size(2, 5, 1, 1) == 0, "empty");
    pk_ctx *c = pk_test_ctx(2);
    fails += maxpool_case(c, 2, 7, 9, 3, 3, 2, 1, -100.0f, "maxpool 3x3 s2 p1 odd, negative");
    fails += maxpool_case(c, 1, 8, 6, 5, 3, 2, 1, 0.0f, "maxpool 3x3 s2 p1 even");
    fails += maxpool_case(c, 2, 10, 11, 2, 2, 2, 0, 1.0f, "maxpool 2x2 s2 p0");
    fails += maxpool_case(c, 2, 33, 31, 300, 3, 2, 1, 0.0f, "maxpool threaded c300");
    fails += maxpool_ties(c);
    int sizes[][3] = {{7, 10, 3}, {5, 5, 4}, {4, 3, 2}, {13, 11, 9}, {60, 60, 40}, {29, 23, 300}};
    int bins[] = {1, 2, 3, 6};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
        for (size_t b = 0; b < 4; b++)
            fails += adapool_case(c, 2, sizes[s][0], sizes[s][1], sizes[s][2], bins[b]);
    pk_ctx_destroy(c);
    printf("test_pool: %s\n", fails ? "FAILED" : "passed");
    return fails ? 1 : 0;
}
