/* Bilinear resize (align_corners=True): forward and backward against naive
 * double-precision loops written from the definition, finite differences,
 * the adjoint identity, corner cases (1 -> n, n -> 1, same size) and a
 * backward that is bit-identical for 1 and 2 threads. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "ops/ops.h"
#include "support.h"

static float *falloc(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof *p);
    if (!p) {
        fprintf(stderr, "test_resize: out of memory\n");
        exit(1);
    }
    return p;
}

/* Source coordinate of output index o: o * (in-1)/(out-1), 0 for out == 1. */
static void src_taps(int o, int in, int out, int *i0, int *i1, double *l1)
{
    double s = out > 1 ? (double)o * (in - 1) / (out - 1) : 0.0;
    *i0 = (int)floor(s);
    if (*i0 > in - 1)
        *i0 = in - 1;
    *i1 = *i0 + 1 < in ? *i0 + 1 : in - 1;
    *l1 = s - *i0;
}

/* The four source pixels (indices into the [n, h, w] input grid) of output
 * pixel (b, oh, ow) and their weights. */
static void taps4(size_t src[4], double wt[4], int b, int oh, int ow, int h, int w, int ho,
                  int wo)
{
    int h0, h1, w0, w1;
    double a, bw;
    src_taps(oh, h, ho, &h0, &h1, &a);
    src_taps(ow, w, wo, &w0, &w1, &bw);
    size_t r0 = ((size_t)b * h + h0) * w, r1 = ((size_t)b * h + h1) * w;
    src[0] = r0 + w0, src[1] = r0 + w1, src[2] = r1 + w0, src[3] = r1 + w1;
    wt[0] = (1 - a) * (1 - bw), wt[1] = (1 - a) * bw, wt[2] = a * (1 - bw), wt[3] = a * bw;
}

/* The resize from the definition, in double: y from x (adjoint = 0), or
 * its adjoint, dx from dy, each output gradient spread over its four
 * source pixels (adjoint = 1). */
static void naive(float *out, const float *in, int n, int h, int w, int ch, int ho, int wo,
                  int adjoint)
{
    size_t nout = (size_t)n * (adjoint ? h * w : ho * wo) * ch;
    double *acc = calloc(nout, sizeof *acc);
    if (!acc)
        exit(1);
    for (int b = 0; b < n; b++)
        for (int oh = 0; oh < ho; oh++)
            for (int ow = 0; ow < wo; ow++) {
                size_t src[4], o = ((size_t)b * ho + oh) * wo + ow;
                double wt[4];
                taps4(src, wt, b, oh, ow, h, w, ho, wo);
                for (int k = 0; k < ch; k++)
                    for (int t = 0; t < 4; t++) {
                        if (adjoint)
                            acc[src[t] * ch + k] += wt[t] * in[o * ch + k];
                        else
                            acc[o * ch + k] += wt[t] * in[src[t] * ch + k];
                    }
            }
    for (size_t i = 0; i < nout; i++)
        out[i] = (float)acc[i];
    free(acc);
}

typedef struct rs_fn {
    pk_ctx *c;
    int n, h, w, ch, ho, wo;
    const float *r;
    float *y;
} rs_fn;

static double rs_f(void *u, const float *x)
{
    rs_fn *a = u;
    pk_resize_forward(a->c, a->y, x, a->n, a->h, a->w, a->ch, a->ho, a->wo);
    double s = 0;
    size_t ny = (size_t)a->n * a->ho * a->wo * a->ch;
    for (size_t i = 0; i < ny; i++)
        s += (double)a->y[i] * a->r[i];
    return s;
}

static int check_case(pk_ctx *c, int n, int h, int w, int ch, int ho, int wo)
{
    int fails = 0;
    char what[160];
    size_t nx = (size_t)n * h * w * ch, ny = (size_t)n * ho * wo * ch;
    float *x = falloc(nx), *y = falloc(ny), *yref = falloc(ny), *dy = falloc(ny),
          *dx = falloc(nx), *dxref = falloc(nx), *tmp = falloc(ny);
    pk_test_fill(x, nx, (unsigned long long)(h * 131 + w * 17 + ho), 1.0f);
    pk_test_fill(dy, ny, (unsigned long long)(ho * 7 + wo), 1.0f);

    pk_resize_forward(c, y, x, n, h, w, ch, ho, wo);
    naive(yref, x, n, h, w, ch, ho, wo, 0);
    snprintf(what, sizeof what, "forward %dx%d -> %dx%d (n=%d ch=%d) vs naive", h, w, ho, wo,
             n, ch);
    fails += pk_check_close(what, y, yref, ny, 1e-6);

    for (size_t i = 0; i < nx; i++)
        dx[i] = NAN; /* the backward must assign every element */
    pk_resize_backward(c, dx, dy, n, h, w, ch, ho, wo);
    naive(dxref, dy, n, h, w, ch, ho, wo, 1);
    snprintf(what, sizeof what, "backward %dx%d -> %dx%d vs naive scatter", h, w, ho, wo);
    fails += pk_check_close(what, dx, dxref, nx, 1e-6);

    /* adjoint: <R x, dy> == <x, R^T dy> */
    double lhs = 0, rhs = 0, mag = 0;
    for (size_t i = 0; i < ny; i++)
        lhs += (double)y[i] * dy[i], mag += fabs((double)y[i] * dy[i]);
    for (size_t i = 0; i < nx; i++)
        rhs += (double)x[i] * dx[i];
    double adj = fabs(lhs - rhs) / (mag > 1e-12 ? mag : 1e-12);
    printf("  %s adjoint %dx%d -> %dx%d: rel=%.3g\n", adj <= 1e-6 ? "ok  " : "FAIL", h, w, ho,
           wo, adj);
    fails += !(adj <= 1e-6);

    rs_fn a = {c, n, h, w, ch, ho, wo, dy, tmp};
    snprintf(what, sizeof what, "finite difference %dx%d -> %dx%d", h, w, ho, wo);
    fails += pk_check_grad(what, rs_f, &a, x, dx, nx, 60, 1e-2, 1e-3);
    free(x), free(y), free(yref), free(dy), free(dx), free(dxref), free(tmp);
    return fails;
}

static int test_exact_cases(pk_ctx *c)
{
    int fails = 0;
    /* same size is a copy */
    float x[2 * 3 * 4 * 2], y[2 * 3 * 4 * 2];
    pk_test_fill(x, 48, 11, 1.0f);
    pk_resize_forward(c, y, x, 2, 3, 4, 2, 3, 4);
    fails += pk_check_close("same size is identity", y, x, 48, 0.0);
    /* 1x1 -> 4x5 broadcasts the pixel (PPM bin 1) */
    float one[3] = {1.5f, -2.0f, 0.25f}, big[4 * 5 * 3], want[4 * 5 * 3];
    for (int i = 0; i < 20; i++)
        memcpy(want + 3 * i, one, sizeof one);
    pk_resize_forward(c, big, one, 1, 1, 1, 3, 4, 5);
    fails += pk_check_close("1x1 -> 4x5 broadcast", big, want, 60, 0.0);
    /* n -> 1 takes the top-left corner (align_corners: scale 0) */
    float corner[2];
    float src[3 * 3 * 2];
    pk_test_fill(src, 18, 12, 1.0f);
    pk_resize_forward(c, corner, src, 1, 3, 3, 2, 1, 1);
    fails += pk_check_close("3x3 -> 1x1 corner", corner, src, 2, 0.0);
    /* corners are preserved exactly when upsampling */
    float up[1 * 9 * 13 * 1], sm[1 * 3 * 4 * 1];
    pk_test_fill(sm, 12, 13, 1.0f);
    pk_resize_forward(c, up, sm, 1, 3, 4, 1, 9, 13);
    float gotc[4] = {up[0], up[12], up[8 * 13], up[8 * 13 + 12]};
    float wantc[4] = {sm[0], sm[3], sm[8], sm[11]};
    fails += pk_check_close("upsample keeps the four corners", gotc, wantc, 4, 0.0);
    return fails;
}

/* Large enough that the 2-thread context splits the rows. */
static int test_threads(pk_ctx *c1, pk_ctx *c2)
{
    int fails = 0;
    const int n = 2, h = 33, w = 33, ch = 8, ho = 129, wo = 129;
    size_t nx = (size_t)n * h * w * ch, ny = (size_t)n * ho * wo * ch;
    float *dy = falloc(ny), *d1 = falloc(nx), *d2 = falloc(nx), *y1 = falloc(ny),
          *y2 = falloc(ny);
    pk_test_fill(dy, ny, 21, 1.0f);
    pk_resize_backward(c1, d1, dy, n, h, w, ch, ho, wo);
    pk_resize_backward(c2, d2, dy, n, h, w, ch, ho, wo);
    PK_CHECK(fails, memcmp(d1, d2, nx * sizeof *d1) == 0,
             "resize backward differs between 1 and 2 threads");
    pk_resize_forward(c1, y1, dy, n, ho, wo, ch, h, w);
    pk_resize_forward(c2, y2, dy, n, ho, wo, ch, h, w);
    PK_CHECK(fails, memcmp(y1, y2, nx * sizeof *y1) == 0,
             "resize forward differs between 1 and 2 threads");
    printf("  %s backward/forward bit-identical for 1 and 2 threads\n", fails ? "FAIL" : "ok  ");
    free(dy), free(d1), free(d2), free(y1), free(y2);
    return fails;
}

int main(void)
{
    pk_ctx *c1 = pk_test_ctx(1), *c2 = pk_test_ctx(2);
    int fails = 0;
    fails += check_case(c2, 2, 3, 4, 3, 9, 13);   /* up, odd factor */
    fails += check_case(c2, 2, 9, 13, 3, 4, 5);   /* down */
    fails += check_case(c2, 1, 6, 6, 2, 41, 41);  /* x8 (logits at stride 8) */
    fails += check_case(c2, 2, 1, 1, 4, 6, 6);    /* 1 -> n (PPM bin 1) */
    fails += check_case(c2, 1, 7, 5, 2, 1, 1);    /* n -> 1 */
    fails += check_case(c2, 1, 1, 7, 2, 3, 1);    /* mixed 1 -> n and n -> 1 */
    fails += check_case(c2, 1, 2, 3, 2, 6, 6);    /* 2 and 3 (PPM bins) -> 6 */
    fails += check_case(c2, 1, 4, 4, 2, 4, 4);    /* same size */
    fails += test_exact_cases(c2);
    fails += test_threads(c1, c2);
    pk_ctx_destroy(c1);
    pk_ctx_destroy(c2);
    if (fails)
        printf("test_resize: %d failure(s)\n", fails);
    return fails != 0;
}
