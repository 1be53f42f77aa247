/* pk_conv2d_forward_fused (the convolution with an eval BN, residual add and
 * ReLU folded in, which the bf16 precision's inference runs) against the
 * same convolution followed by those ops one by one, on every path the
 * forward can take: oneDNN's direct kernels (1x1, 3x3, strided; the
 * residual as a binary add, or as a sum when it is y itself), Winograd and
 * dilated Winograd through its phases; and a whole ResNet18 and ResNet50
 * PSPNet inference in bf16 (folded) against fp32 (not folded).
 *
 * Tolerances (normalised max error): fp32, FUSED_F32_TOL = 1e-5: the direct
 * kernels take the scale in their weights (w * s, then the sum), the
 * unfused order scales the sum, so they differ by float rounding;
 * Winograd and the phases apply the same operations in the same order and
 * must agree bit for bit. bf16 against the fp32 unfused result: test_bf16's
 * BF16_CONV_TOL / BF16_WINO_TOL (1e-2 / 3e-2), also with y (and the
 * residual, either or both) held in bf16, as the bf16 inference plan holds
 * the values that only bf16 readers read; Winograd's y in bf16 must be its
 * fp32 y rounded. Whole models, bf16 against
 * fp32 logits: FUSED_MODEL_TOL = 3e-2 (measured 4e-3 .. 9e-3),
 * and the folded BN must no longer appear in the bf16 profile. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model/pspnet.h"
#include "ops/conv_phase.h"
#include "ops/ops.h"
#include "support.h"
#include "support_model.h"

#define FUSED_F32_TOL 1e-5
#define FUSED_MODEL_TOL 3e-2
#define K 21

enum { RES_NONE, RES_OTHER, RES_SELF };

typedef struct fused_case {
    const char *name;
    pk_conv_desc d;
    int relu, res, wino; /* wino: runs through Winograd (or its phases) */
} fused_case;

static pk_ctx *ctx_of(int precision)
{
    pk_ctx_opts o = {.device = PK_DEV_CPU, .precision = precision};
    pk_ctx *c = NULL;
    pk_err e = {0};
    if (pk_ctx_create(&c, &o, &e) != PK_OK) {
        fprintf(stderr, "test_conv_fused: context: %s\n", e.msg);
        return NULL;
    }
    return c;
}

/* y = relu?(t * scale + shift (+ res)), the unfused order. */
static void epilogue_ref(float *y, const float *t, const float *scale, const float *shift,
                         const float *res, int relu, size_t P, int C)
{
    for (size_t p = 0; p < P; p++)
        for (int o = 0; o < C; o++) {
            size_t i = p * (size_t)C + o;
            float v = t[i] * scale[o] + shift[o];
            if (res)
                v += res[i];
            y[i] = relu && !(v > 0.0f) ? 0.0f : v;
        }
}

/* The fused forward of cc in context c into y (from res when RES_SELF):
 * y in bf16 when y16 and the residual when r16 (the bf16 precision's
 * values held in bf16; y itself as residual has y's type), then y widened. */
static int run_fused(pk_ctx *c, const fused_case *cc, float *y, const float *x, const float *w,
                     const float *scale, const float *shift, const float *res, size_t ny,
                     int y16, int r16, pk_err *e)
{
    if (cc->res == RES_SELF)
        r16 = y16;
    pk_conv_epilogue ep = {.scale = scale, .shift = shift, .relu = cc->relu,
                           .y_bf16 = y16, .res_bf16 = r16 && cc->res != RES_NONE};
    uint16_t *h = y16 ? pk_test_xmalloc(ny * 2) : NULL, *rh = NULL;
    void *out = y16 ? (void *)h : (void *)y;
    if (r16 && cc->res == RES_OTHER) {
        rh = pk_test_xmalloc(ny * 2);
        pk_f32_to_bf16(c, rh, res, ny);
    }
    if (cc->res == RES_SELF) {
        if (y16)
            pk_f32_to_bf16(c, h, res, ny);
        else
            memcpy(y, res, ny * sizeof *y);
        ep.res = out;
    } else if (cc->res == RES_OTHER) {
        ep.res = r16 ? (const void *)rh : (const void *)res;
    }
    int rc = pk_conv2d_forward_fused(c, out, x, NULL, w, &ep, &cc->d, e);
    if (y16)
        pk_f32_from_bf16(c, y, h, ny);
    free(h);
    free(rh);
    return rc;
}

static int case_check(pk_ctx *f32, pk_ctx *bf, const fused_case *cc)
{
    const pk_conv_desc *d = &cc->d;
    size_t nx = (size_t)d->n * d->h * d->w * d->ci, ny = (size_t)d->n * d->ho * d->wo * d->co;
    size_t nw = (size_t)d->co * d->k * d->k * d->ci, P = ny / (size_t)d->co;
    float *x = pk_test_xmalloc(nx * 4), *w = pk_test_xmalloc(nw * 4);
    float *scale = pk_test_xmalloc(d->co * 4), *shift = pk_test_xmalloc(d->co * 4);
    float *res = pk_test_xmalloc(ny * 4), *t = pk_test_xmalloc(ny * 4);
    float *want[2] = {pk_test_xmalloc(ny * 4), pk_test_xmalloc(ny * 4)};
    float *got[2] = {pk_test_xmalloc(ny * 4), pk_test_xmalloc(ny * 4)};
    float *got16 = pk_test_xmalloc(ny * 4);
    pk_test_fill(x, nx, 21, 1.0f);
    pk_test_fill(w, nw, 22, 1.0f / sqrtf((float)d->ci * d->k * d->k));
    pk_test_fill(scale, d->co, 23, 1.5f); /* signs of both kinds, as gamma has */
    pk_test_fill(shift, d->co, 24, 0.5f);
    pk_test_fill(res, ny, 25, 1.0f);
    const float *r = cc->res == RES_NONE ? NULL : res;
    int fails = 0;
    for (int p = 0; p < 2; p++) {
        pk_ctx *c = p ? bf : f32;
        pk_err e = {0};
        PK_CHECK(fails, pk_conv2d_forward(c, t, x, w, NULL, d, &e) == PK_OK, "%s: %s",
                 cc->name, e.msg);
        epilogue_ref(want[p], t, scale, shift, r, cc->relu, P, d->co);
        PK_CHECK(fails,
                 run_fused(c, cc, got[p], x, w, scale, shift, res, ny, 0, 0, &e) == PK_OK,
                 "%s fused: %s", cc->name, e.msg);
    }
    pk_err e16 = {0};
    double e16v = 0.0;
    /* y and residual in bf16, and where the residual is another tensor the
     * two mixed cases (a block's last fold writes fp32 from a bf16 input) */
    for (int mix = 0; mix < (cc->res == RES_OTHER ? 3 : 1); mix++) {
        int y16 = mix != 2, r16 = mix != 1;
        PK_CHECK(fails,
                 run_fused(bf, cc, got16, x, w, scale, shift, res, ny, y16, r16, &e16) == PK_OK,
                 "%s fused, bf16 y %d residual %d: %s", cc->name, y16, r16, e16.msg);
        double ev = pk_norm_err(got16, want[0], ny);
        PK_CHECK(fails, ev <= (cc->wino ? BF16_WINO_TOL : BF16_CONV_TOL),
                 "%s: bf16 y %d residual %d vs fp32 unfused %.3g", cc->name, y16, r16, ev);
        e16v = ev > e16v ? ev : e16v;
    }
    double e32 = pk_norm_err(got[0], want[0], ny), ebf = pk_norm_err(got[1], want[0], ny);
    double tol = cc->wino ? BF16_WINO_TOL : BF16_CONV_TOL;
    if (cc->wino) /* the same operations in the same order */
        PK_CHECK(fails, e32 == 0 && pk_norm_err(got[1], want[1], ny) == 0,
                 "%s: Winograd fused differs from unfused (fp32 %.3g, bf16 %.3g)", cc->name,
                 e32, pk_norm_err(got[1], want[1], ny));
    else
        PK_CHECK(fails, e32 <= FUSED_F32_TOL, "%s: fp32 fused vs unfused %.3g > %g", cc->name,
                 e32, FUSED_F32_TOL);
    PK_CHECK(fails, ebf <= tol && ebf > 1e-5, "%s: bf16 fused vs fp32 unfused %.3g (tol %g)",
             cc->name, ebf, tol);
    PK_CHECK(fails, e16v <= tol, "%s: bf16 fused with y in bf16 vs fp32 unfused %.3g (tol %g)",
             cc->name, e16v, tol);
    if (cc->wino && cc->res == RES_NONE) { /* got16 (y in bf16): the fp32 y rounded */
        memcpy(t, got[1], ny * sizeof *t);
        uint16_t *r = pk_test_xmalloc(ny * 2);
        pk_f32_to_bf16(bf, r, t, ny);
        pk_f32_from_bf16(bf, t, r, ny);
        free(r);
        PK_CHECK(fails, pk_norm_err(got16, t, ny) == 0,
                 "%s: y in bf16 is not the fp32 epilogue rounded", cc->name);
    }
    printf("  %s fused %s: fp32 vs unfused %.2e, bf16 vs fp32 %.2e, bf16 y%s %.2e (tol %g)\n",
           fails ? "FAIL" : "ok  ", cc->name, e32, ebf,
           cc->res == RES_OTHER ? " or residual (worst of 3 mixes)"
           : cc->res            ? " and residual"
                                : "",
           e16v,
           tol);
    free(x);
    free(w);
    free(scale);
    free(shift);
    free(res);
    free(t);
    free(got16);
    for (int p = 0; p < 2; p++) {
        free(want[p]);
        free(got[p]);
    }
    return fails;
}

static int op_checks(pk_ctx *f32, pk_ctx *bf)
{
    fused_case cases[] = {
        {"1x1 96->64 BN", pk_conv_desc_make(2, 9, 11, 96, 64, 1, 1, 0, 1, 0), 0, RES_NONE, 0},
        {"1x1 64->128 BN+ReLU", pk_conv_desc_make(2, 9, 11, 64, 128, 1, 1, 0, 1, 0), 1,
         RES_NONE, 0},
        {"1x1 64->128 BN+add+ReLU", pk_conv_desc_make(2, 9, 11, 64, 128, 1, 1, 0, 1, 0), 1,
         RES_OTHER, 0},
        {"1x1 64->128 BN+add(y)+ReLU", pk_conv_desc_make(2, 9, 11, 64, 128, 1, 1, 0, 1, 0), 1,
         RES_SELF, 0},
        {"3x3 32->48 s2 BN+ReLU", pk_conv_desc_make(2, 15, 13, 32, 48, 3, 2, 1, 1, 0), 1,
         RES_NONE, 0},
        {"3x3 64->64 BN+add+ReLU", pk_conv_desc_make(2, 15, 15, 64, 64, 3, 1, 1, 1, 0), 1,
         RES_OTHER, 0},
        {"Winograd 3x3 256->256 BN+ReLU", pk_conv_desc_make(2, 16, 16, 256, 256, 3, 1, 1, 1, 0),
         1, RES_NONE, 1},
        {"Winograd 3x3 256->256 BN+add+ReLU",
         pk_conv_desc_make(2, 16, 16, 256, 256, 3, 1, 1, 1, 0), 1, RES_OTHER, 1},
        {"dilated 2 Winograd 3x3 256->256 BN+ReLU",
         pk_conv_desc_make(1, 30, 30, 256, 256, 3, 1, 2, 2, 0), 1, RES_NONE, 1},
        {"dilated 4 Winograd 3x3 256->256 BN+add(y)",
         pk_conv_desc_make(1, 30, 30, 256, 256, 3, 1, 4, 4, 0), 0, RES_SELF, 1},
    };
    int fails = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        pk_err e = {0};
        int wino = pk_conv2d_winograd(f32, &cases[i].d, &e) == 1 ||
                   pk_conv_phase_eligible(f32, &cases[i].d);
        PK_CHECK(fails, wino == cases[i].wino, "%s: takes the %s path", cases[i].name,
                 wino ? "Winograd" : "direct");
        fails += case_check(f32, bf, &cases[i]);
    }
    return fails;
}

static int refusal_checks(pk_ctx *f32)
{
    int fails = 0;
    pk_err e = {0};
    float v[64] = {0}, s[8] = {0};
    pk_conv_desc d = pk_conv_desc_make(1, 2, 2, 4, 8, 1, 1, 0, 1, 1);
    pk_conv_epilogue ep = {.scale = s, .shift = s};
    PK_CHECK(fails, pk_conv2d_forward_fused(f32, v, v, NULL, v, &ep, &d, &e) == PK_EINVAL,
             "a convolution with a bias accepted");
    d.bias = 0;
    pk_conv_epilogue none = {.shift = s};
    PK_CHECK(fails, pk_conv2d_forward_fused(f32, v, v, NULL, v, &none, &d, &e) == PK_EINVAL,
             "an epilogue without a scale accepted");
    printf("  %s fused: a bias or a missing scale refused\n", fails ? "FAIL" : "ok  ");
    return fails;
}

/* 1 when m's profile books time to BatchNorm. */
static int profile_has_bn(const pk_model *m)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        exit(1);
    pk_model_profile_print(m, f);
    fclose(f);
    int has = buf && strstr(buf, "batchnorm") != NULL;
    free(buf);
    return has;
}

/* One inference of arch in both precisions from the same weights. */
static int model_check(pk_ctx *f32, pk_ctx *bf, pk_arch arch, int h)
{
    int fails = 0, n = 2, h8 = (h - 1) / 8 + 1;
    size_t ni = (size_t)n * h * h * 3, nl = (size_t)n * h8 * h8 * K;
    float *img = pk_test_xmalloc(ni * 4), *main_l[2], *aux_l[2];
    pk_test_fill(img, ni, 31, 1.0f);
    pk_model_cfg cfg = {arch, arch == PK_ARCH_R50 ? PK_STEM_DEEP : PK_STEM_7X7, K, 0.1f};
    int bn_seen[2] = {0, 0};
    for (int p = 0; p < 2; p++) {
        pk_model *m = NULL;
        pk_err e = {0};
        if (pk_model_create(&m, p ? bf : f32, &cfg, &e) != PK_OK || pk_test_model_fill(m, 1)) {
            fprintf(stderr, "test_conv_fused: create: %s\n", e.msg);
            exit(1);
        }
        main_l[p] = pk_test_xmalloc(nl * 4);
        aux_l[p] = pk_test_xmalloc(nl * 4);
        pk_model_set_profile(m, 1);
        PK_CHECK(fails, pk_model_infer(m, main_l[p], aux_l[p], img, n, h, h, 0, &e) == PK_OK,
                 "%s infer: %s", pk_arch_name(arch), e.msg);
        bn_seen[p] = profile_has_bn(m);
        pk_model_destroy(m);
    }
    double em = pk_norm_err(main_l[1], main_l[0], nl), ea = pk_norm_err(aux_l[1], aux_l[0], nl);
    PK_CHECK(fails, em <= FUSED_MODEL_TOL && ea <= FUSED_MODEL_TOL,
             "%s inference bf16 vs fp32: main %.3g aux %.3g > %g", pk_arch_name(arch), em, ea,
             FUSED_MODEL_TOL);
    PK_CHECK(fails, bn_seen[0] && !bn_seen[1],
             "%s inference: BatchNorm profiled in fp32 %d, in bf16 %d (folded: 1, 0)",
             pk_arch_name(arch), bn_seen[0], bn_seen[1]);
    printf("  %s %s inference 2x%dx%d, bf16 (BN folded) vs fp32: main %.2e aux %.2e (tol %g)\n",
           fails ? "FAIL" : "ok  ", pk_arch_name(arch), h, h, em, ea, FUSED_MODEL_TOL);
    for (int p = 0; p < 2; p++) {
        free(main_l[p]);
        free(aux_l[p]);
    }
    free(img);
    return fails;
}

int main(void)
{
    pk_ctx *f32 = ctx_of(PK_PREC_FP32);
    if (!f32)
        return 1;
    pk_err e = {0};
    if (pk_conv_bf16_supported(f32, &e) != PK_OK) {
        printf("test_conv_fused: skipped: %s\n", e.msg);
        pk_ctx_destroy(f32);
        return 0;
    }
    pk_ctx *bf = ctx_of(PK_PREC_BF16);
    if (!bf)
        return 1;
    int fails = op_checks(f32, bf);
    fails += refusal_checks(f32);
    fails += model_check(f32, bf, PK_ARCH_R18, 65);
    fails += model_check(f32, bf, PK_ARCH_R50, 65);
    pk_ctx_destroy(bf);
    pk_ctx_destroy(f32);
    if (fails)
        fprintf(stderr, "test_conv_fused: %d failure(s)\n", fails);
    return fails ? 1 : 0;
}
