/* The bf16 precision (pk_ctx_opts.precision = PK_PREC_BF16) against fp32 on
 * the same inputs: the fp32 -> bf16 rounding, every convolution path
 * (direct, strided, dilated, with bias, the 1x1 that bf16 runs as matmuls,
 * Winograd, dilated Winograd) forward and backward, checking that exactly
 * the passes conv.c runs in bf16 differ from fp32, and a whole ResNet18
 * and ResNet50 PSPNet training step (losses, gradient direction).
 *
 * Tolerances (normalised error max|bf16 - fp32| / max|fp32|): bf16 keeps 8
 * significant bits, so each rounded input is off by at most 2^-8 (0.4 %)
 * relative; a product of two by ~2^-7, and a sum of many such products
 * with random signs stays well under that relative to the largest output.
 * Convolutions: BF16_CONV_TOL = 1e-2 (measured 1.6e-3..2.4e-3). Winograd
 * F(4x4, 3x3) with bf16 products: BF16_WINO_TOL = 3e-2 (measured 1.4e-2 ..
 * 1.6e-2): its transforms sum each output from 36 rounded products with
 * coefficients up to (27/8)^2, so the same rounding of the operands costs
 * it about 7x what it costs the direct convolution. Train step:
 * total loss within 1e-2 relative, cosine of the whole gradient >= 0.99
 * (the issue's), on the kink-free formula weights (support_model.h): with
 * the plain ones no ReLU input is kept away from 0 and the batch-2 step is
 * so ill-conditioned (the bin-1 PPM branch normalises 2 values, whose
 * gradient is 0 up to rounding) that fp32 itself, run on the same weights
 * rounded to bf16, gives gradient cosines of 0.93 (R18) and -0.04 (R50)
 * against fp32. Even kink-free, single backbone tensors reach per-tensor
 * cosines of 0.3-0.9 in both that fp32 control and bf16; the whole
 * gradient, which the heads dominate, is within 0.999. The bf16 step keeps
 * the activations its backward reads in bf16 (pspnet_plan.c): its arena
 * must come out at most BF16_ARENA_MAX of fp32's (measured 0.59 / 0.58 for
 * R18 / R50, here and at 2x225x225 in bench_model).
 *
 * Where oneDNN cannot run bf16 convolutions (a CPU without AVX-512; on
 * AVX-512 CPUs without avx512_bf16 it emulates them), the test prints why
 * and skips. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model/pspnet.h"
#include "ops/ops.h"
#include "support.h"
#include "support_model.h"

#define BF16_ARENA_MAX 0.75
#define K 21

static pk_ctx *ctx_of(int precision, int conv_algo, pk_err *e)
{
    pk_ctx_opts o = {.device = PK_DEV_CPU, .threads = 0, .conv_algo = conv_algo,
                     .precision = precision};
    pk_ctx *c = NULL;
    return pk_ctx_create(&c, &o, e) == PK_OK ? c : NULL;
}

static float f32_of_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static int rounding_checks(pk_ctx *c)
{
    int fails = 0;
    /* 1 + 2^-8 (a tie: even stays 1), 1 + 3*2^-8 (tie: up to 1 + 2^-6),
     * 1 + 2^-8 + 2^-20 (above the tie: up), exact values, -0, inf, NaN */
    float in[] = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, 1.0f + 0x1p-8f + 0x1p-20f, 1.5f, -2.0f,
                  -0.0f, INFINITY, -INFINITY, NAN, f32_of_bits(0x7f7fffffu)};
    float want[] = {1.0f, 1.0f + 0x1p-6f, 1.0f + 0x1p-7f, 1.5f, -2.0f, -0.0f, INFINITY,
                    -INFINITY, NAN, INFINITY};
    enum { N = sizeof in / sizeof *in };
    uint16_t h[N];
    pk_f32_to_bf16(c, h, in, N);
    for (int i = 0; i < N; i++) {
        float got = pk_bf16_to_f32(h[i]);
        int same = isnan(want[i]) ? isnan(got) : got == want[i] && signbit(got) == signbit(want[i]);
        PK_CHECK(fails, same, "bf16 of %a: got %a, want %a", in[i], got, want[i]);
    }
    /* random values, the parallel path: relative error <= 2^-8 (8 bits) */
    size_t n = 100000;
    float *x = pk_test_xmalloc(n * sizeof *x);
    uint16_t *hx = pk_test_xmalloc(n * sizeof *hx);
    pk_test_fill(x, n, 7, 1000.0f);
    pk_f32_to_bf16(c, hx, x, n);
    double worst = 0;
    for (size_t i = 0; i < n; i++)
        if (x[i] != 0.0f) {
            double r = fabs(pk_bf16_to_f32(hx[i]) - x[i]) / fabs(x[i]);
            worst = r > worst ? r : worst;
        }
    PK_CHECK(fails, worst <= 0x1p-8, "bf16 rounding: relative error %.3g > 2^-8", worst);
    printf("  %s fp32 -> bf16 rounding (ties to even, NaN, inf; max rel. error %.3g)\n",
           fails ? "FAIL" : "ok  ", worst);
    free(x);
    free(hx);
    return fails;
}

/* Which results of a convolution the bf16 precision computes in bf16
 * (conv.c's split); the others must equal fp32's bit for bit. */
enum { RUN_Y = 1, RUN_DX = 2, RUN_DW = 4 };

/* One convolution in both precisions on the same inputs. */
typedef struct conv_case {
    const char *name;
    pk_conv_desc d;
    int bf16_runs; /* RUN_* */
    double tol;
} conv_case;

static int conv_case_check(pk_ctx *f32, pk_ctx *bf, const conv_case *cc)
{
    const pk_conv_desc *d = &cc->d;
    size_t nx = (size_t)d->n * d->h * d->w * d->ci, ny = (size_t)d->n * d->ho * d->wo * d->co;
    size_t nw = (size_t)d->co * d->k * d->k * d->ci;
    float *x = pk_test_xmalloc(nx * 4), *w = pk_test_xmalloc(nw * 4), *b = pk_test_xmalloc(d->co * 4);
    float *dy = pk_test_xmalloc(ny * 4);
    float *y[2], *dx[2], *dw[2], *db[2];
    pk_test_fill(x, nx, 11, 1.0f);
    pk_test_fill(w, nw, 12, 1.0f / sqrtf((float)d->ci * d->k * d->k));
    pk_test_fill(b, d->co, 13, 0.1f);
    pk_test_fill(dy, ny, 14, 1.0f);
    int fails = 0;
    double err[4] = {0};
    for (int p = 0; p < 2; p++) {
        pk_ctx *c = p ? bf : f32;
        pk_err e = {0};
        y[p] = pk_test_xmalloc(ny * 4);
        dx[p] = pk_test_xmalloc(nx * 4);
        dw[p] = calloc(nw, 4);
        db[p] = calloc(d->co, 4);
        if (!dw[p] || !db[p])
            exit(1);
        PK_CHECK(fails, pk_conv2d_forward(c, y[p], x, w, d->bias ? b : NULL, d, &e) == PK_OK,
                 "%s forward: %s", cc->name, e.msg);
        PK_CHECK(fails,
                 pk_conv2d_backward(c, dx[p], dw[p], d->bias ? db[p] : NULL, dy, x, w, d, &e) ==
                     PK_OK,
                 "%s backward: %s", cc->name, e.msg);
    }
    err[0] = pk_norm_err(y[1], y[0], ny);
    err[1] = pk_norm_err(dx[1], dx[0], nx);
    err[2] = pk_norm_err(dw[1], dw[0], nw);
    err[3] = d->bias ? pk_norm_err(db[1], db[0], d->co) : 0;
    const char *what[] = {"y", "dx", "dw", "db"};
    const int run[] = {RUN_Y, RUN_DX, RUN_DW, RUN_DW};
    for (int i = 0; i < 4; i++) {
        PK_CHECK(fails, err[i] <= cc->tol, "%s %s: bf16 vs fp32 error %.3g > %g", cc->name,
                 what[i], err[i], cc->tol);
        /* the bf16 kernels really ran where conv.c says, and nowhere else
         * (db comes with dw but is summed in fp32: always equal) */
        if (i < 3 && (cc->bf16_runs & run[i]))
            PK_CHECK(fails, err[i] > 1e-5, "%s %s: bf16 result equals fp32's: no bf16 kernel?",
                     cc->name, what[i]);
        else
            PK_CHECK(fails, err[i] == 0, "%s %s: differs from fp32 (%.3g) in an fp32 pass",
                     cc->name, what[i], err[i]);
    }
    printf("  %s conv %s bf16 vs fp32: y %.2e dx %.2e dw %.2e db %.2e (tol %g)\n",
           fails ? "FAIL" : "ok  ", cc->name, err[0], err[1], err[2], err[3], cc->tol);
    for (int p = 0; p < 2; p++) {
        free(y[p]);
        free(dx[p]);
        free(dw[p]);
        free(db[p]);
    }
    free(x);
    free(w);
    free(b);
    free(dy);
    return fails;
}

static int conv_checks(pk_ctx *f32, pk_ctx *bf)
{
    const double T = BF16_CONV_TOL, W = BF16_WINO_TOL;
    conv_case cases[] = {
        {"3x3 64->64 15x15", pk_conv_desc_make(2, 15, 15, 64, 64, 3, 1, 1, 1, 0), RUN_Y | RUN_DX, T},
        {"7x7 s2 3->64 33x33 (stem)", pk_conv_desc_make(2, 33, 33, 3, 64, 7, 2, 3, 1, 0),
         RUN_Y | RUN_DX, T},
        {"3x3 s2 64->128 bias 16x13", pk_conv_desc_make(2, 16, 13, 64, 128, 3, 2, 1, 1, 1),
         RUN_Y | RUN_DX, T},
        {"3x3 d2 128->128 12x12", pk_conv_desc_make(2, 12, 12, 128, 128, 3, 1, 2, 2, 0),
         RUN_Y | RUN_DX, T},
        {"3x3 d4 64->64 9x11", pk_conv_desc_make(1, 9, 11, 64, 64, 3, 1, 4, 4, 0), RUN_Y | RUN_DX,
         T},
        {"1x1 512->128 8x8 (matmul)", pk_conv_desc_make(2, 8, 8, 512, 128, 1, 1, 0, 1, 0),
         RUN_Y | RUN_DX | RUN_DW, T},
        {"1x1 64->256 15x15 (matmul)", pk_conv_desc_make(2, 15, 15, 64, 256, 1, 1, 0, 1, 0),
         RUN_Y | RUN_DX | RUN_DW, T},
        {"1x1 s2 256->512 16x16 (downsample)",
         pk_conv_desc_make(2, 16, 16, 256, 512, 1, 2, 0, 1, 0), RUN_Y, T},
        {"1x1 64->21 bias 9x9 (classifier)", pk_conv_desc_make(2, 9, 9, 64, 21, 1, 1, 0, 1, 1),
         RUN_Y, T},
        {"3x3 512->512 16x16 (Winograd)", pk_conv_desc_make(2, 16, 16, 512, 512, 3, 1, 1, 1, 0),
         RUN_Y | RUN_DX | RUN_DW, W},
        {"3x3 d2 256->256 16x16 (Winograd phases)",
         pk_conv_desc_make(2, 16, 16, 256, 256, 3, 1, 2, 2, 0), RUN_Y | RUN_DX | RUN_DW, W},
    };
    int fails = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        fails += conv_case_check(f32, bf, &cases[i]);
    return fails;
}

/* A caller's own bf16 copy of x (pk_conv2d_*_xq, the kept activations of
 * the bf16 training step) gives the same results as converting here; the
 * 1x1 matmul backward then needs no fp32 x, the others still do. */
static int xq_checks(pk_ctx *bf)
{
    int fails = 0;
    pk_conv_desc cases[] = {pk_conv_desc_make(2, 8, 8, 512, 128, 1, 1, 0, 1, 0),
                            pk_conv_desc_make(2, 15, 15, 64, 64, 3, 1, 1, 1, 0)};
    for (int i = 0; i < 2; i++) {
        const pk_conv_desc *d = &cases[i];
        size_t nx = (size_t)d->n * d->h * d->w * d->ci, ny = (size_t)d->n * d->ho * d->wo * d->co;
        size_t nw = (size_t)d->co * d->k * d->k * d->ci;
        float *x = pk_test_xmalloc(nx * 4), *w = pk_test_xmalloc(nw * 4);
        float *dy = pk_test_xmalloc(ny * 4), *y[2], *dx[2], *dw[2];
        uint16_t *xq = pk_test_xmalloc(nx * 2);
        pk_test_fill(x, nx, 21, 1.0f);
        pk_test_fill(w, nw, 22, 0.05f);
        pk_test_fill(dy, ny, 23, 1.0f);
        pk_f32_to_bf16(bf, xq, x, nx);
        int needs = pk_conv_backward_needs_x(bf, d);
        PK_CHECK(fails, needs == (d->k != 1), "case %d: needs_x %d", i, needs);
        pk_err e = {0};
        for (int q = 0; q < 2; q++) {
            y[q] = pk_test_xmalloc(ny * 4);
            dx[q] = pk_test_xmalloc(nx * 4);
            dw[q] = calloc(nw, 4);
            if (!dw[q])
                exit(1);
            PK_CHECK(fails, pk_conv2d_forward_xq(bf, y[q], x, q ? xq : NULL, w, NULL, d, &e) == PK_OK,
                     "forward_xq: %s", e.msg);
            PK_CHECK(fails,
                     pk_conv2d_backward_xq(bf, dx[q], dw[q], NULL, dy, q && !needs ? NULL : x,
                                           q ? xq : NULL, w, d, &e) == PK_OK,
                     "backward_xq: %s", e.msg);
        }
        PK_CHECK(fails, !memcmp(y[0], y[1], ny * 4) && !memcmp(dx[0], dx[1], nx * 4) &&
                            !memcmp(dw[0], dw[1], nw * 4),
                 "case %d: results with the caller's bf16 x differ", i);
        if (needs) /* and without x where it is needed: an error, not a crash */
            PK_CHECK(fails, pk_conv2d_backward_xq(bf, dx[0], dw[0], NULL, dy, NULL, xq, w, d, &e) ==
                                PK_EINVAL,
                     "case %d: backward without the x it needs accepted", i);
        for (int q = 0; q < 2; q++) {
            free(y[q]);
            free(dx[q]);
            free(dw[q]);
        }
        free(x);
        free(w);
        free(dy);
        free(xq);
    }
    printf("  %s the caller's bf16 copy of x: same results, fp32 x only where needed\n",
           fails ? "FAIL" : "ok  ");
    return fails;
}

/* pk_conv_keep_begin/end: a Winograd forward inside a session keeps its
 * weights' transform and the backward-data of the same weights takes it:
 * the results are bit for bit those without a session (the same transform,
 * computed once); a backward in a later session, whose forward did not run,
 * transforms the weights itself (here changed in between) and matches the
 * same call outside any session. Plain and dilated (phases) shapes. */
static int keep_checks(pk_ctx *bf)
{
    int fails = 0;
    const pk_conv_desc ds[2] = {pk_conv_desc_make(2, 16, 16, 256, 256, 3, 1, 1, 1, 0),
                                pk_conv_desc_make(2, 17, 17, 256, 256, 3, 1, 2, 2, 0)};
    size_t kept0 = pk_conv_kept_bytes(bf);
    float *ws[2] = {NULL, NULL}; /* both alive to the end: two weight tensors, two kept */
    for (int i = 0; i < 2; i++) {
        const pk_conv_desc *d = &ds[i];
        size_t nx = (size_t)d->n * d->h * d->w * d->ci, ny = (size_t)d->n * d->ho * d->wo * d->co;
        size_t nw = (size_t)d->co * 9 * d->ci;
        float *x = pk_test_xmalloc(nx * 4), *w = ws[i] = pk_test_xmalloc(nw * 4),
              *dy = pk_test_xmalloc(ny * 4), *y[2], *dx[2], *dw[2];
        pk_test_fill(x, nx, 91, 1.0f);
        pk_test_fill(w, nw, 92, 0.1f);
        pk_test_fill(dy, ny, 93, 1.0f);
        for (int k = 0; k < 2; k++) {
            y[k] = pk_test_xmalloc(ny * 4);
            dx[k] = pk_test_xmalloc(nx * 4);
            dw[k] = calloc(nw, 4);
        }
        pk_err e = {0};
        int rc = 0;
        for (int k = 0; k < 2; k++) { /* 0: no session, 1: in one */
            if (k)
                pk_conv_keep_begin(bf);
            rc |= pk_conv2d_forward(bf, y[k], x, w, NULL, d, &e);
            rc |= pk_conv2d_backward(bf, dx[k], dw[k], NULL, dy, x, w, d, &e);
            if (k)
                pk_conv_keep_end(bf);
        }
        PK_CHECK(fails, rc == PK_OK, "keep case %d: %s", i, e.msg);
        PK_CHECK(fails,
                 !memcmp(y[0], y[1], ny * 4) && !memcmp(dx[0], dx[1], nx * 4) &&
                     !memcmp(dw[0], dw[1], nw * 4),
                 "keep case %d: results in a keep session differ", i);
        for (size_t j = 0; j < nw; j++) /* new weights: the kept transform is stale */
            w[j] *= -0.5f;
        for (int k = 0; k < 2; k++) {
            if (k)
                pk_conv_keep_begin(bf);
            rc |= pk_conv2d_backward(bf, dx[k], NULL, NULL, dy, x, w, d, &e);
            if (k)
                pk_conv_keep_end(bf);
        }
        PK_CHECK(fails, rc == PK_OK && !memcmp(dx[0], dx[1], nx * 4),
                 "keep case %d: a later session's backward used a stale transform", i);
        for (int k = 0; k < 2; k++)
            free(y[k]), free(dx[k]), free(dw[k]);
        free(x), free(dy);
    }
    free(ws[0]), free(ws[1]);
    size_t want = 2 * (size_t)36 * 256 * 256 * 2; /* two weight tensors, 8 bytes a weight */
    size_t kept = pk_conv_kept_bytes(bf) - kept0;
    PK_CHECK(fails, kept == want, "kept %zu bytes, want %zu", kept, want);
    pk_conv_keep_release(bf);
    PK_CHECK(fails, pk_conv_kept_bytes(bf) == 0, "%zu bytes kept after the release",
             pk_conv_kept_bytes(bf));
    printf("  %s Winograd's weight transform kept from forward to backward: same results, "
           "%zu bytes kept\n",
           fails ? "FAIL" : "ok  ", kept);
    return fails;
}

static double dot(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

/* One training forward+backward of arch in both precisions from the same
 * formula weights and batch: the loss and the gradient direction. */
static int train_step_check(pk_ctx *f32, pk_ctx *bf, pk_arch arch, int h)
{
    int fails = 0;
    pk_test_batch d = pk_test_batch_make(2, h, h, K, PK_TEST_STREAM_IMAGE);
    pk_batch b = pk_test_batch_view(&d);
    pk_train_cfg t = pk_test_kd_cfg(0.7f, PK_AUXKD_SMOOTHL1);
    pk_model_cfg cfg = {arch, arch == PK_ARCH_R50 ? PK_STEM_DEEP : PK_STEM_7X7, K, 0.1f};
    pk_losses l[2];
    float *g[2] = {NULL, NULL};
    size_t np = 0, arena[2] = {0, 0};
    for (int p = 0; p < 2; p++) {
        pk_model *m = NULL;
        pk_err e = {0};
        if (pk_model_create(&m, p ? bf : f32, &cfg, &e) != PK_OK || pk_test_model_fill(m, 1)) {
            fprintf(stderr, "test_bf16: create: %s\n", e.msg);
            exit(1);
        }
        PK_CHECK(fails, pk_model_forward_backward(m, &b, &t, 0, &l[p], &e) == PK_OK, "%s: %s",
                 pk_arch_name(arch), e.msg);
        np = pk_model_num_params(m);
        arena[p] = pk_model_arena_bytes(m);
        g[p] = pk_test_xmalloc(np * sizeof(float));
        memcpy(g[p], pk_model_grads(m), np * sizeof(float));
        pk_model_destroy(m);
    }
    double rel = fabs(l[1].total - l[0].total) / fabs(l[0].total);
    double cosv = dot(g[0], g[1], np) / sqrt(dot(g[0], g[0], np) * dot(g[1], g[1], np));
    PK_CHECK(fails, rel <= BF16_LOSS_TOL, "%s train step: loss %.6g (bf16) vs %.6g: rel. %.3g",
             pk_arch_name(arch), l[1].total, l[0].total, rel);
    PK_CHECK(fails, cosv >= BF16_COS_MIN, "%s train step: gradient cosine %.6f < %g",
             pk_arch_name(arch), cosv, BF16_COS_MIN);
    /* the activations kept for the backward in bf16: the arena shrinks */
    double ratio = arena[0] ? (double)arena[1] / (double)arena[0] : 1.0;
    PK_CHECK(fails, ratio <= BF16_ARENA_MAX, "%s train step: bf16 arena %zu B/img is %.2f of fp32's",
             pk_arch_name(arch), arena[1], ratio);
    printf("  %s %s train step 2x%dx%d bf16 vs fp32: loss %.6f vs %.6f (rel. %.2e), "
           "gradient cosine %.6f, arena %.2f of fp32's\n",
           fails ? "FAIL" : "ok  ", pk_arch_name(arch), h, h, l[1].total, l[0].total, rel, cosv,
           ratio);
    free(g[0]);
    free(g[1]);
    pk_test_batch_free(&d);
    return fails;
}

int main(void)
{
    pk_err e = {0};
    pk_ctx *f32 = ctx_of(PK_PREC_FP32, PK_CONV_AUTO, &e);
    if (!f32) {
        fprintf(stderr, "test_bf16: fp32 context: %s\n", e.msg);
        return 1;
    }
    pk_ctx *bf = ctx_of(PK_PREC_BF16, PK_CONV_AUTO, &e);
    if (!bf) {
        printf("test_bf16: skipped: %s\n", e.msg);
        pk_ctx_destroy(f32);
        return 0;
    }
    int fails = 0;
    PK_CHECK(fails, pk_ctx_precision(bf) == PK_PREC_BF16, "context precision");
    pk_ctx_opts bad = {.precision = 7};
    pk_ctx *c = NULL;
    PK_CHECK(fails, pk_ctx_create(&c, &bad, &e) == PK_EINVAL, "precision 7 accepted");
    fails += rounding_checks(bf);
    fails += conv_checks(f32, bf);
    fails += xq_checks(bf);
    fails += keep_checks(bf);
    fails += train_step_check(f32, bf, PK_ARCH_R18, 65);
    fails += train_step_check(f32, bf, PK_ARCH_R50, 65);
    pk_ctx_destroy(bf);
    pk_ctx_destroy(f32);
    if (fails)
        fprintf(stderr, "test_bf16: %d failure(s)\n", fails);
    return fails ? 1 : 0;
}
