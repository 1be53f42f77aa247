/* ReLU, add, accumulate, concat and Dropout2d: values against naive loops,
 * finite-difference gradients, in-place use, and a dropout mask that is the
 * same for 1 and 2 threads. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "ops/ops.h"
#include "core/rng.h"
#include "support.h"

static float *falloc(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof *p);
    if (!p) {
        fprintf(stderr, "test_elementwise: out of memory\n");
        exit(1);
    }
    return p;
}

/* f(x) = sum_i op(x)_i * r_i: its gradient is the op's backward applied to r. */
typedef struct relu_fn {
    pk_ctx *c;
    const float *r;
    float *y;
    size_t n;
} relu_fn;

static double relu_f(void *u, const float *x)
{
    relu_fn *a = u;
    pk_relu_forward(a->c, a->y, x, a->n);
    double s = 0;
    for (size_t i = 0; i < a->n; i++)
        s += (double)a->y[i] * a->r[i];
    return s;
}

static int test_relu(pk_ctx *c)
{
    int fails = 0;
    size_t n = 1000;
    float *x = falloc(n), *y = falloc(n), *r = falloc(n), *dx = falloc(n), *z = falloc(n);
    pk_test_fill(x, n, 1, 1.0f);
    /* keep every input a margin away from the kink at 0 for the difference quotient */
    for (size_t i = 0; i < n; i++)
        x[i] += x[i] >= 0 ? 0.05f : -0.05f;
    pk_test_fill(r, n, 2, 1.0f);
    pk_relu_forward(c, y, x, n);
    for (size_t i = 0; i < n; i++)
        PK_CHECK(fails, y[i] == (x[i] > 0 ? x[i] : 0.0f), "relu[%zu]", i);
    pk_relu_backward(c, dx, r, y, n);
    for (size_t i = 0; i < n; i++)
        PK_CHECK(fails, dx[i] == (x[i] > 0 ? r[i] : 0.0f), "relu grad[%zu]", i);
    relu_fn a = {c, r, z, n};
    fails += pk_check_grad("relu finite difference", relu_f, &a, x, dx, n, 200, 1e-3, 1e-3);
    /* in place: y == x, then dx == dy */
    memcpy(z, x, n * sizeof *z);
    pk_relu_forward(c, z, z, n);
    fails += memcmp(z, y, n * sizeof *z) != 0;
    memcpy(z, r, n * sizeof *z);
    pk_relu_backward(c, z, z, y, n);
    fails += pk_check_close("relu backward in place", z, dx, n, 0.0);
    free(x), free(y), free(r), free(dx), free(z);
    return fails;
}

/* The fused residual add + ReLU is bitwise the two ops in sequence, also
 * in place (y == a) and for NaN (ReLU's x > 0 test sends it to 0). */
static int test_add_relu(pk_ctx *c)
{
    int fails = 0;
    size_t n = 70001;
    float *a = falloc(n), *b = falloc(n), *y = falloc(n), *want = falloc(n);
    pk_test_fill(a, n, 5, 2.0f);
    pk_test_fill(b, n, 6, 2.0f);
    a[7] = NAN;
    pk_add_forward(c, want, a, b, n);
    pk_relu_forward(c, want, want, n);
    pk_add_relu_forward(c, y, a, b, n);
    fails += pk_check_close("add+relu fused", y, want, n, 0.0);
    PK_CHECK(fails, y[7] == 0.0f, "add+relu of NaN gives 0");
    pk_add_relu_forward(c, a, a, b, n);
    fails += pk_check_close("add+relu in place", a, want, n, 0.0);
    free(a), free(b), free(y), free(want);
    return fails;
}

static int test_add_accumulate(pk_ctx *c)
{
    int fails = 0;
    size_t n = 70001; /* above the parallel threshold, odd */
    float *a = falloc(n), *b = falloc(n), *y = falloc(n), *want = falloc(n);
    pk_test_fill(a, n, 3, 2.0f);
    pk_test_fill(b, n, 4, 2.0f);
    for (size_t i = 0; i < n; i++)
        want[i] = a[i] + b[i];
    pk_add_forward(c, y, a, b, n);
    fails += pk_check_close("add", y, want, n, 0.0);
    pk_add_forward(c, a, a, b, n); /* y aliasing a */
    fails += pk_check_close("add in place", a, want, n, 0.0);
    for (size_t i = 0; i < n; i++)
        want[i] = a[i] + b[i];
    pk_accumulate(c, a, b, n);
    fails += pk_check_close("accumulate", a, want, n, 0.0);
    free(a), free(b), free(y), free(want);
    return fails;
}

typedef struct concat_fn {
    pk_ctx *c;
    const int *cs;
    int k;
    long P;
    const float *r;
    float *y;
} concat_fn;

/* x holds the k inputs back to back. */
static double concat_f(void *u, const float *x)
{
    concat_fn *a = u;
    const float *xs[4] = {0};
    long ct = 0, off = 0;
    for (int j = 0; j < a->k; j++) {
        xs[j] = x + off;
        off += a->P * a->cs[j];
        ct += a->cs[j];
    }
    pk_concat_forward(a->c, a->y, xs, a->cs, a->k, a->P);
    double s = 0;
    for (long i = 0; i < a->P * ct; i++)
        s += (double)a->y[i] * a->r[i];
    return s;
}

static int test_concat(pk_ctx *c)
{
    int fails = 0;
    const int cs[3] = {2, 5, 3};
    const int k = 3, ct = 10;
    const long P = 4001; /* P * ct above the parallel threshold */
    size_t n = (size_t)P * ct;
    float *x = falloc(n), *y = falloc(n), *r = falloc(n), *dx = falloc(n), *z = falloc(n);
    pk_test_fill(x, n, 5, 1.0f);
    pk_test_fill(r, n, 6, 1.0f);
    const float *xs[3] = {x, x + P * 2, x + P * 7};
    pk_concat_forward(c, y, xs, cs, k, P);
    for (long p = 0; p < P; p++)
        for (int j = 0, col = 0; j < k; col += cs[j], j++)
            for (int q = 0; q < cs[j]; q++)
                PK_CHECK(fails, y[p * ct + col + q] == xs[j][p * cs[j] + q],
                         "concat p=%ld input %d channel %d", p, j, q);
    float *dxs[3] = {dx, dx + P * 2, dx + P * 7};
    pk_concat_backward(c, dxs, r, cs, k, P);
    concat_fn a = {c, cs, k, P, r, z};
    fails += pk_check_grad("concat finite difference", concat_f, &a, x, dx, n, 300, 1e-2,
                           1e-3);
    /* a NULL gradient slot is skipped and leaves the others intact */
    float *sentinel = falloc((size_t)P * 5);
    for (long i = 0; i < P * 5; i++)
        sentinel[i] = 7.0f;
    memcpy(z, dx, n * sizeof *z);
    float *dxs2[3] = {dx, NULL, dx + P * 7};
    memcpy(dx + P * 2, sentinel, (size_t)P * 5 * sizeof *dx);
    pk_concat_backward(c, dxs2, r, cs, k, P);
    fails += pk_check_close("concat backward NULL slot untouched", dx + P * 2, sentinel,
                            (size_t)P * 5, 0.0);
    fails += pk_check_close("concat backward other slots", dx + P * 7, z + P * 7,
                            (size_t)P * 3, 0.0);
    free(x), free(y), free(r), free(dx), free(z), free(sentinel);
    return fails;
}

typedef struct drop_fn {
    pk_ctx *c;
    int n, ch;
    long hw;
    float p;
    uint64_t seed;
    const float *r;
    float *y;
    uint8_t *keep;
} drop_fn;

static double drop_f(void *u, const float *x)
{
    drop_fn *a = u;
    pk_dropout2d_forward(a->c, a->y, a->keep, x, a->n, a->hw, a->ch, a->p, a->seed);
    double s = 0;
    for (long i = 0; i < a->n * a->hw * a->ch; i++)
        s += (double)a->y[i] * a->r[i];
    return s;
}

static int test_dropout(pk_ctx *c1, pk_ctx *c2)
{
    int fails = 0;
    const int n = 2, ch = 8;
    const long hw = 64 * 64; /* 65536 elements: the 2-thread context really splits */
    size_t len = (size_t)n * hw * ch;
    float *x = falloc(len), *y1 = falloc(len), *y2 = falloc(len), *r = falloc(len),
          *dx = falloc(len), *want = falloc(len);
    uint8_t keep1[16], keep2[16];
    pk_test_fill(x, len, 7, 1.0f);
    pk_test_fill(r, len, 8, 1.0f);

    /* p = 0: identity, every channel kept */
    pk_dropout2d_forward(c1, y1, keep1, x, n, hw, ch, 0.0f, 42);
    fails += pk_check_close("dropout p=0 identity", y1, x, len, 0.0);
    for (int i = 0; i < n * ch; i++)
        PK_CHECK(fails, keep1[i] == 1, "dropout p=0 dropped channel %d", i);

    /* p = 0.5: the mask follows the stated hash formula and is thread-count free */
    const float p = 0.5f;
    pk_dropout2d_forward(c1, y1, keep1, x, n, hw, ch, p, 1234);
    pk_dropout2d_forward(c2, y2, keep2, x, n, hw, ch, p, 1234);
    PK_CHECK(fails, memcmp(keep1, keep2, sizeof keep1) == 0, "dropout mask differs 1 vs 2 threads");
    PK_CHECK(fails, memcmp(y1, y2, len * sizeof *y1) == 0, "dropout output differs 1 vs 2 threads");
    int kept = 0;
    for (int i = 0; i < n * ch; i++) {
        int want_keep = pk_bits_to_u01(pk_hash64(1234ULL ^ (uint64_t)i)) >= p;
        PK_CHECK(fails, keep1[i] == want_keep, "dropout mask[%d] = %d, formula %d", i, keep1[i],
                 want_keep);
        kept += keep1[i];
    }
    PK_CHECK(fails, kept > 0 && kept < n * ch, "dropout p=0.5 kept %d of %d channels", kept,
             n * ch);
    for (int b = 0; b < n; b++)
        for (long q = 0; q < hw; q++)
            for (int k = 0; k < ch; k++) {
                size_t i = ((size_t)b * hw + q) * ch + k;
                want[i] = keep1[b * ch + k] ? x[i] * 2.0f : 0.0f;
            }
    fails += pk_check_close("dropout p=0.5 whole channels, scale 1/(1-p)", y1, want, len, 0.0);

    /* another seed draws another mask */
    uint8_t keep3[16];
    pk_dropout2d_forward(c1, y2, keep3, x, n, hw, ch, p, 99);
    PK_CHECK(fails, memcmp(keep1, keep3, sizeof keep1) != 0, "dropout mask ignores the seed");

    /* drop rate over many channels */
    enum { NC = 20000 };
    uint8_t *big = malloc(NC);
    float xs[NC], ys[NC];
    if (!big)
        return fails + 1;
    for (int i = 0; i < NC; i++)
        xs[i] = 1.0f;
    pk_dropout2d_forward(c1, ys, big, xs, 1, 1, NC, 0.3f, 7);
    int dropped = 0;
    for (int i = 0; i < NC; i++)
        dropped += !big[i];
    double rate = (double)dropped / NC;
    printf("  dropout p=0.3 measured drop rate %.4f over %d channels\n", rate, NC);
    PK_CHECK(fails, fabs(rate - 0.3) < 0.02, "dropout rate %.4f, want 0.3", rate);
    free(big);

    /* p = 1 drops everything, no inf/NaN */
    pk_dropout2d_forward(c1, y2, keep3, x, n, hw, ch, 1.0f, 5);
    memset(want, 0, len * sizeof *want);
    fails += pk_check_close("dropout p=1 all zero", y2, want, len, 0.0);

    /* backward: gradient of sum(y * r) with the mask fixed by the seed */
    pk_dropout2d_backward(c1, dx, r, keep1, n, hw, ch, p);
    float *dx2 = falloc(len);
    pk_dropout2d_backward(c2, dx2, r, keep1, n, hw, ch, p);
    fails += pk_check_close("dropout backward 1 vs 2 threads", dx2, dx, len, 0.0);
    drop_fn a = {c1, n, ch, hw, p, 1234, r, y2, keep3};
    fails += pk_check_grad("dropout finite difference", drop_f, &a, x, dx, len, 200, 1e-2,
                           1e-3);
    free(x), free(y1), free(y2), free(r), free(dx), free(dx2), free(want);
    return fails;
}

int main(void)
{
    pk_ctx *c1 = pk_test_ctx(1), *c2 = pk_test_ctx(2);
    int fails = 0;
    fails += test_relu(c2);
    fails += test_add_accumulate(c2);
    fails += test_add_relu(c2);
    fails += test_concat(c2);
    fails += test_dropout(c1, c2);
    pk_ctx_destroy(c1);
    pk_ctx_destroy(c2);
    if (fails)
        printf("test_elementwise: %d failure(s)\n", fails);
    return fails != 0;
}
