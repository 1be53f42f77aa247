/* PyTorch parity of the whole PSPNet (R18, R50 7x7, R50 deep): runs the C
 * model with the formula weights of support_model.h on the fixture inputs
 * and compares with tests/fixtures/model_*.safetensors (gen_model.py, whose
 * docstring explains the two formulas and the gradient fixture's size):
 *   logits (eval and train mode) and every loss term   1e-4
 *   per-tensor gradients                               1e-3
 *   weights and running stats after 3 SGD steps        1e-4
 *   (and the 3-step change w3 - w0 itself              1e-3, or 4 ulps of w)
 * Errors are max|got-want| / max|want| per tensor (norms of sampled tensors:
 * relative); for gradients the denominator is at least grad_floor (1e-5 of
 * the model's largest gradient: some gradients are exactly zero).
 * Where PyTorch's own float32 result (logits, gradient, weights after 3
 * steps) is off float64 by more than a quarter of the tolerance, the
 * fixture carries <key>.tol = 4x that error, used instead (the 3-step
 * change of a tensor uses its gradient's). Such relaxed checks are listed.
 * Prints the worst error of each group (every error with -v) and each
 * relaxed tolerance; any mismatch exits non-zero.
 * Every model runs twice: with direct convolutions only (PK_CONV_DIRECT, the
 * algorithm PyTorch uses: the strict check), then with Winograd for every
 * wide 3x3 convolution (PK_CONV_WINOGRAD; the default takes it only on maps
 * big enough to gain, bigger than these fixtures'; float error ~10x
 * direct's, see lib/ops/conv.c); that second pass gives the tensors
 * with a fixture-relaxed tolerance (badly conditioned ones, e.g. the bin-1
 * PPM BatchNorm's gradients) WINO_RELAX times more room, and no others.
 * Usage: test_model_parity [-v] [fixture dir]. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "ops/ops.h"
#include "model/pspnet.h"
#include "store/safetensors.h"
#include "support.h"
#include "support_model.h"

#define TOL_LOGITS 1e-4
#define TOL_LOSS 1e-4
#define TOL_GRAD 1e-3
#define TOL_WEIGHTS 1e-4
#define TOL_DELTA 1e-3

typedef struct group_stat { /* worst error of a group of checks */
    const char *what;
    double worst; /* among the checks at the group's tolerance */
    char worst_name[112];
    int n, fails;
    double tol;
    int relaxed;         /* checks at a fixture-relaxed tolerance */
    double relaxed_ratio; /* their worst err / tol */
} group_stat;

typedef struct fx {
    pk_st_file *f;
    const char *label; /* "r50_deep" */
    int verbose, fails;
    double relax; /* scale of the fixture-relaxed tolerances */
} fx;

#define WINO_RELAX 4.0

static double meta(const fx *x, const char *key)
{
    const char *v = pk_st_meta(x->f, key);
    if (!v) {
        fprintf(stderr, "test_model_parity: %s: no metadata '%s'\n", x->label, key);
        exit(1);
    }
    return strtod(v, NULL);
}

static void record_tol(fx *x, group_stat *g, const char *name, double err, double tol)
{
    int bad = !(err <= tol);
    g->n++;
    g->fails += bad;
    x->fails += bad;
    if (tol != g->tol) {
        g->relaxed++;
        if (!(err / tol <= g->relaxed_ratio))
            g->relaxed_ratio = isnan(err) ? INFINITY : err / tol;
    } else if (!(err <= g->worst) || g->n - g->relaxed == 1) {
        g->worst = isnan(err) ? INFINITY : err;
        snprintf(g->worst_name, sizeof g->worst_name, "%s", name);
    }
    if (bad || x->verbose || tol != g->tol)
        printf("  %s %s %s %s: err=%.3g (tol %.2g)\n", bad ? "FAIL" : "ok  ", x->label,
               g->what, name, err, tol);
}

static void record(fx *x, group_stat *g, const char *name, double err)
{
    record_tol(x, g, name, err, g->tol);
}

/* max|got-want| / max(max|want|, floor) */
static double floor_err(const float *got, const float *want, size_t n, double floor)
{
    double e = pk_norm_err(got, want, n), mw = 0.0;
    for (size_t i = 0; i < n; i++)
        mw = fabs(want[i]) > mw ? fabs(want[i]) : mw;
    return mw >= floor || mw == 0.0 ? e : e * mw / floor;
}

static void report(const fx *x, const group_stat *g)
{
    printf("  %s %s %-10s %3d checks, worst err=%.3g (%s), tol %.0e", g->fails ? "FAIL" : "ok  ",
           x->label, g->what, g->n, g->worst, g->worst_name, g->tol);
    if (g->relaxed)
        printf("; %d at relaxed tol, worst err/tol=%.2g", g->relaxed, g->relaxed_ratio);
    printf("\n");
}

static const pk_st_tensor *need(fx *x, const char *key)
{
    const pk_st_tensor *t = pk_st_find(x->f, key);
    if (!t) {
        fprintf(stderr, "test_model_parity: %s: fixture lacks '%s'\n", x->label, key);
        exit(1);
    }
    return t;
}

static float *read_f32(fx *x, const char *key, size_t *n)
{
    const pk_st_tensor *t = need(x, key);
    float *p = pk_test_xmalloc(t->numel * sizeof *p);
    pk_err e = {0};
    if (pk_st_read_f32(x->f, key, p, t->numel, &e) != PK_OK) {
        fprintf(stderr, "test_model_parity: %s\n", e.msg);
        exit(1);
    }
    *n = t->numel;
    return p;
}

/* The fixture's relaxed tolerance "<key>.tol" (0 when there is none). */
static double relaxed_tol(fx *x, const char *key)
{
    char k[160];
    snprintf(k, sizeof k, "%s.tol", key);
    if (!pk_st_find(x->f, k))
        return 0.0;
    size_t one;
    float *v = read_f32(x, k, &one);
    double t = v[0] * x->relax;
    free(v);
    return t;
}

/* Element i (PyTorch layout) of a tensor stored in the model's buffer
 * layout lay (OHWI conv weights), or in PyTorch's own when lay is NULL. */
static float at(const float *p, const pk_tensor_info *lay, size_t i)
{
    return p[lay ? pk_test_buffer_index(lay, i) : i];
}

/* got[count] against `key`, stored full or as norm + samples. base, when
 * not NULL, turns both into changes from it; got and base are in layout
 * lay (see at()). floor: see floor_err; tol: the tolerance (0: the
 * group's). */
static void compare_ft(fx *x, group_stat *g, const char *name, const char *key,
                       const float *got, size_t count, const float *base, double floor,
                       double tol, const pk_tensor_info *lay)
{
    if (tol <= 0.0)
        tol = g->tol;
    char k[160];
    size_t n;
    if (pk_st_find(x->f, key)) {
        float *want = read_f32(x, key, &n);
        if (n != count) {
            fprintf(stderr, "test_model_parity: %s: %zu values, C has %zu\n", key, n, count);
            exit(1);
        }
        float *gd = pk_test_xmalloc(n * sizeof *gd);
        for (size_t i = 0; i < n; i++) {
            float b = base ? at(base, lay, i) : 0.0f;
            gd[i] = at(got, lay, i) - b;
            want[i] -= b;
        }
        record_tol(x, g, name, floor_err(gd, want, n, floor), tol);
        free(gd);
        free(want);
        return;
    }
    snprintf(k, sizeof k, "%s.val", key);
    float *val = read_f32(x, k, &n);
    snprintf(k, sizeof k, "%s.idx", key);
    const pk_st_tensor *it = need(x, k);
    if (it->dtype != PK_I64 || it->numel != n) {
        fprintf(stderr, "test_model_parity: %s: bad index tensor\n", k);
        exit(1);
    }
    float *gs = pk_test_xmalloc(n * sizeof *gs);
    for (size_t i = 0; i < n; i++) {
        int64_t j;
        memcpy(&j, (const char *)it->data + 8 * i, 8);
        if (j < 0 || (size_t)j >= count) {
            fprintf(stderr, "test_model_parity: %s: index out of range\n", k);
            exit(1);
        }
        float b = base ? at(base, lay, (size_t)j) : 0.0f;
        gs[i] = at(got, lay, (size_t)j) - b;
        val[i] -= b;
    }
    double err = floor_err(gs, val, n, floor);
    if (!base) { /* the norm covers every element (in any layout) */
        snprintf(k, sizeof k, "%s.norm", key);
        size_t one;
        float *nw = read_f32(x, k, &one);
        double s = 0.0;
        for (size_t i = 0; i < count; i++)
            s += (double)got[i] * got[i];
        double den = nw[0] > floor ? nw[0] : floor;
        double rel = fabs(sqrt(s) - nw[0]) / (den > 0 ? den : 1.0);
        err = rel > err ? rel : err;
        free(nw);
    }
    record_tol(x, g, name, err, tol);
    free(gs);
    free(val);
}

/* Without base: the values. With base: the changes from base, which
 * float32 storage resolves only to about an ulp of the weight, so their
 * denominator is at least 4 ulps / tolerance (a change below ~5e-4 of the
 * weight is checked to within 4 ulps instead of relatively). */
static void compare_tol(fx *x, group_stat *g, const char *name, const char *key,
                        const float *got, size_t count, const float *base, double tol,
                        const pk_tensor_info *lay)
{
    double floor = 0.0;
    if (tol <= 0.0 && !base) { /* the fixture's own relaxation, if any */
        double r = relaxed_tol(x, key);
        tol = r > g->tol ? r : 0.0;
    }
    if (base) {
        double mb = 0.0;
        for (size_t i = 0; i < count; i++)
            mb = fabs(base[i]) > mb ? fabs(base[i]) : mb;
        floor = 4.0 * FLT_EPSILON * mb / (tol > g->tol ? tol : g->tol);
    }
    compare_ft(x, g, name, key, got, count, base, floor, tol, lay);
}

static void compare(fx *x, group_stat *g, const char *name, const char *key, const float *got,
                    size_t count, const float *base)
{
    compare_tol(x, g, name, key, got, count, base, 0.0, NULL);
}

static void compare_scalar(fx *x, group_stat *g, const char *key, float got)
{
    size_t n;
    float *want = read_f32(x, key, &n);
    double err = fabs((double)got - want[0]) / (fabs(want[0]) > 1e-12 ? fabs(want[0]) : 1e-12);
    double r = relaxed_tol(x, key);
    record_tol(x, g, key, err, r > g->tol ? r : g->tol);
    free(want);
}

/* The fixture's batch: gen_model.py's formula inputs and valid_mask (image
 * 0 loses its top 3 rows, image 1 its right 5 columns). */
static pk_test_batch make_inputs(int n, int h, int w, int K, uint64_t image_stream)
{
    pk_test_batch in = pk_test_batch_make(n, h, w, K, image_stream);
    for (int b = 0; b < n; b++)
        for (int y = 0; y < h; y++)
            for (int xx = 0; xx < w; xx++)
                in.valid[((size_t)b * h + y) * w + xx] =
                    !((b == 0 && y < 3) || (b == 1 && xx >= w - 5));
    return in;
}

static pk_train_cfg train_cfg(const fx *x, pk_auxkd mode)
{
    pk_train_cfg t;
    pk_train_cfg_defaults(&t);
    t.kd_T = (float)meta(x, "T");
    t.ce_weight = (float)meta(x, "ce_w");
    t.aux_weight = (float)meta(x, "aux_w");
    t.kd_weight = (float)meta(x, "kd_w");
    t.auxkd_weight = (float)meta(x, "auxkd_w");
    t.base_lr = (float)meta(x, "base_lr");
    t.max_iter = (long)meta(x, "max_iter");
    t.power = (float)meta(x, "power");
    t.momentum = (float)meta(x, "momentum");
    t.weight_decay = (float)meta(x, "wd");
    t.head_lr_mult = (float)meta(x, "head_mult");
    t.auxkd = mode;
    return t;
}

static void die_pk(const char *what, const pk_err *e)
{
    fprintf(stderr, "test_model_parity: %s: %s\n", what, e->msg);
    exit(1);
}

/* Eval logits (stride 8 and, with `sampled`, full-res) and train-mode
 * logits and losses at n x h x w under key prefix `pre`. */
static void check_logits_losses(fx *x, pk_model *m, const char *pre, int n, int h, int w,
                                int sampled, group_stat *gl, group_stat *gs)
{
    pk_ctx *c = pk_model_ctx(m);
    int K = pk_model_config(m)->classes, h8 = (h - 1) / 8 + 1, w8 = (w - 1) / 8 + 1;
    pk_test_batch in = make_inputs(n, h, w, K, PK_TEST_STREAM_IMAGE);
    size_t full = (size_t)n * h * w * K, low = (size_t)n * h8 * w8 * K;
    float *dimg = pk_dev_alloc(c, (size_t)n * h * w * 3 * sizeof(float));
    float *dm = pk_dev_alloc(c, full * sizeof(float)), *da = pk_dev_alloc(c, full * sizeof(float));
    float *hm = pk_test_xmalloc(full * sizeof(float)), *ha = pk_test_xmalloc(full * sizeof(float));
    if (!dimg || !dm || !da) {
        fprintf(stderr, "test_model_parity: out of device memory\n");
        exit(1);
    }
    pk_dev_upload(c, dimg, in.image, (size_t)n * h * w * 3 * sizeof(float));
    pk_err e = {0};
    char key[96];
    /* eval, stride 8 */
    if (pk_model_infer(m, dm, da, dimg, n, h, w, 0, &e) != PK_OK)
        die_pk("infer", &e);
    pk_dev_download(c, hm, dm, low * sizeof(float));
    pk_dev_download(c, ha, da, low * sizeof(float));
    snprintf(key, sizeof key, "%seval.main8", pre);
    compare(x, gl, key, key, hm, low, NULL);
    snprintf(key, sizeof key, "%seval.aux8", pre);
    compare(x, gl, key, key, ha, low, NULL);
    if (sampled) { /* eval, full resolution */
        if (pk_model_infer(m, dm, da, dimg, n, h, w, 1, &e) != PK_OK)
            die_pk("infer", &e);
        pk_dev_download(c, hm, dm, full * sizeof(float));
        pk_dev_download(c, ha, da, full * sizeof(float));
        compare(x, gl, "eval.main", "eval.main", hm, full, NULL);
        compare(x, gl, "eval.aux", "eval.aux", ha, full, NULL);
    }
    /* train mode, one call per aux-KD mode (train-mode BN output does not
     * depend on the running stats the previous call updated); the larger
     * size only with the KL (the other modes' loss values are the same
     * code at another size) */
    static const pk_auxkd modes[3] = {PK_AUXKD_KL, PK_AUXKD_SMOOTHL1, PK_AUXKD_MSE};
    for (int k = 0; k < (sampled ? 3 : 1); k++) {
        pk_train_cfg t = train_cfg(x, modes[k]);
        pk_batch b = pk_test_batch_view(&in);
        pk_losses l;
        if (pk_model_forward_backward(m, &b, &t, 0, &l, &e) != PK_OK)
            die_pk("forward_backward", &e);
        snprintf(key, sizeof key, "%sloss.auxkd.%s", pre, pk_auxkd_name(modes[k]));
        compare_scalar(x, gs, key, l.aux_kd);
        if (k > 0)
            continue;
        snprintf(key, sizeof key, "%sloss.ce", pre);
        compare_scalar(x, gs, key, l.ce);
        snprintf(key, sizeof key, "%sloss.aux_ce", pre);
        compare_scalar(x, gs, key, l.aux_ce);
        snprintf(key, sizeof key, "%sloss.kd", pre);
        compare_scalar(x, gs, key, l.kd);
        snprintf(key, sizeof key, "%sloss.total", pre);
        compare_scalar(x, gs, key, l.total);
        for (int aux = 0; aux < 2; aux++) { /* stride 8, and upsampled as the losses see them */
            const float *d = pk_model_last_logits(m, aux);
            if (!d) {
                fprintf(stderr, "test_model_parity: no train logits\n");
                exit(1);
            }
            float *hl = aux ? ha : hm;
            pk_dev_download(c, hl, d, low * sizeof(float));
            snprintf(key, sizeof key, "%strain.%s8", pre, aux ? "aux" : "main");
            compare(x, gl, key, key, hl, low, NULL);
            if (sampled) {
                float *up = pk_test_xmalloc(full * sizeof *up);
                pk_resize_forward(c, up, hl, n, h8, w8, K, h, w); /* a CPU context */
                snprintf(key, sizeof key, "%strain.%s", pre, aux ? "aux" : "main");
                compare(x, gl, key, key, up, full, NULL);
                free(up);
            }
        }
    }
    pk_dev_free(c, dimg);
    pk_dev_free(c, dm);
    pk_dev_free(c, da);
    free(hm);
    free(ha);
    pk_test_batch_free(&in);
}

/* The kink-free batch of the gradient and SGD-step fixtures. */
static pk_test_batch grad_inputs(const fx *x, int K)
{
    int n = (int)meta(x, "grad_n"), hw = (int)meta(x, "grad_hw");
    return make_inputs(n, hw, hw, K, (uint64_t)meta(x, "grad_image_stream"));
}

static void die_oom(void)
{
    fprintf(stderr, "test_model_parity: out of memory\n");
    exit(1);
}

/* A host copy of one of the model's buffers (grads or params, or state). */
static float *download(pk_model *m, const float *buf, size_t count)
{
    float *h = pk_test_xmalloc(count * sizeof *h);
    pk_dev_download(pk_model_ctx(m), h, buf, count * sizeof *h);
    return h;
}

static void check_grads(fx *x, pk_model *m, group_stat *g)
{
    double floor = meta(x, "grad_floor");
    float *grads = download(m, pk_model_grads(m), pk_model_num_params(m));
    for (int i = 0; i < pk_model_tensor_count(m); i++) {
        const pk_tensor_info *t = pk_model_tensor(m, i);
        if (t->kind != PK_T_PARAM)
            continue;
        char key[128];
        snprintf(key, sizeof key, "grad.%s", t->name);
        double tol = relaxed_tol(x, key);
        compare_ft(x, g, t->name, key, grads + t->offset, t->count, NULL, floor,
                   tol > g->tol ? tol : 0.0, t);
    }
    free(grads);
}

/* The kink-free gradients: one forward_backward per aux-KD mode, the KL one
 * last, whose gradients are compared tensor by tensor. */
static void check_gradients(fx *x, pk_model *m, group_stat *gs, group_stat *gg)
{
    static const pk_auxkd modes[3] = {PK_AUXKD_SMOOTHL1, PK_AUXKD_MSE, PK_AUXKD_KL};
    pk_test_batch in = grad_inputs(x, pk_model_config(m)->classes);
    pk_batch b = pk_test_batch_view(&in);
    pk_err e = {0};
    char key[64];
    if (pk_test_model_fill(m, 1))
        die_oom();
    for (int k = 0; k < 3; k++) {
        pk_train_cfg t = train_cfg(x, modes[k]);
        pk_losses l;
        if (pk_model_forward_backward(m, &b, &t, 0, &l, &e) != PK_OK)
            die_pk("forward_backward", &e);
        snprintf(key, sizeof key, "kf.loss.auxkd.%s", pk_auxkd_name(modes[k]));
        compare_scalar(x, gs, key, l.aux_kd);
        if (modes[k] != PK_AUXKD_KL) {
            const pk_tensor_info *t = pk_model_find(m, "aux.4.bias");
            float *got = pk_test_xmalloc(t->count * sizeof *got);
            if (pk_test_model_read(m, t, 1, got))
                die_oom();
            snprintf(key, sizeof key, "grad_%s.aux.4.bias", pk_auxkd_name(modes[k]));
            compare(x, gg, key, key, got, t->count, NULL);
            free(got);
            continue;
        }
        compare_scalar(x, gs, "kf.loss.ce", l.ce);
        compare_scalar(x, gs, "kf.loss.aux_ce", l.aux_ce);
        compare_scalar(x, gs, "kf.loss.kd", l.kd);
        compare_scalar(x, gs, "kf.loss.total", l.total);
        check_grads(x, m, gg);
    }
    pk_test_batch_free(&in);
}

static void check_steps(fx *x, pk_model *m, group_stat *gw, group_stat *gd)
{
    int steps = (int)meta(x, "steps");
    pk_test_batch in = grad_inputs(x, pk_model_config(m)->classes);
    pk_batch b = pk_test_batch_view(&in);
    pk_train_cfg t = train_cfg(x, PK_AUXKD_SMOOTHL1);
    pk_err e = {0};
    /* the initial values, to check the change as well */
    if (pk_test_model_fill(m, 1))
        die_oom();
    size_t np = pk_model_num_params(m), ns = pk_model_num_state(m);
    float *p0 = download(m, pk_model_params(m), np), *s0 = download(m, pk_model_state(m), ns);
    for (int it = 0; it < steps; it++)
        if (pk_model_train_step(m, &b, &t, it, NULL, &e) != PK_OK)
            die_pk("train_step", &e);
    float *p3 = download(m, pk_model_params(m), np), *s3 = download(m, pk_model_state(m), ns);
    for (int i = 0; i < pk_model_tensor_count(m); i++) {
        const pk_tensor_info *ti = pk_model_tensor(m, i);
        if (ti->kind == PK_T_NUM_BATCHES)
            continue;
        const float *w0 = (ti->kind == PK_T_PARAM ? p0 : s0) + ti->offset;
        const float *w3 = (ti->kind == PK_T_PARAM ? p3 : s3) + ti->offset;
        char key[128], gkey[128];
        snprintf(key, sizeof key, "step3.%s", ti->name);
        snprintf(gkey, sizeof gkey, "grad.%s", ti->name);
        double tw = relaxed_tol(x, key), tg = relaxed_tol(x, gkey);
        compare_tol(x, gw, ti->name, key, w3, ti->count, NULL, tw > gw->tol ? tw : 0.0, ti);
        /* the change follows the gradient: its relaxed tolerance carries over */
        compare_tol(x, gd, ti->name, key, w3, ti->count, w0, tg > gd->tol ? tg : 0.0, ti);
    }
    free(p0);
    free(s0);
    free(p3);
    free(s3);
    group_stat gn = {"num_batches", 0, "", 0, 0, 0.0, 0, 0.0};
    record(x, &gn, "num_batches_tracked",
           pk_model_num_batches_tracked(m) == steps ? 0.0 : INFINITY);
    pk_test_batch_free(&in);
}

static void run_model(fx *x, pk_ctx *c)
{
    pk_model_cfg cfg = {0};
    const char *arch = pk_st_meta(x->f, "arch"), *stem = pk_st_meta(x->f, "stem");
    if (!arch || !stem || pk_arch_parse(arch, &cfg.arch) || pk_stem_parse(stem, &cfg.stem)) {
        fprintf(stderr, "test_model_parity: %s: bad arch/stem metadata\n", x->label);
        exit(1);
    }
    cfg.classes = (int)meta(x, "classes");
    cfg.dropout = 0.0f;
    pk_model *m = NULL;
    pk_err e = {0};
    if (pk_model_create(&m, c, &cfg, &e) != PK_OK)
        die_pk("create", &e);
    group_stat gl = {"logits", 0, "", 0, 0, TOL_LOGITS, 0, 0.0};
    group_stat gs = {"losses", 0, "", 0, 0, TOL_LOSS, 0, 0.0};
    group_stat gg = {"gradients", 0, "", 0, 0, TOL_GRAD, 0, 0.0};
    group_stat gw = {"weights@3", 0, "", 0, 0, TOL_WEIGHTS, 0, 0.0};
    group_stat gd = {"change@3", 0, "", 0, 0, TOL_DELTA, 0, 0.0};
    int n = (int)meta(x, "n"), h = (int)meta(x, "h"), w = (int)meta(x, "w");
    int big = (int)meta(x, "big");
    if (pk_test_model_fill(m, 0))
        die_oom();
    check_logits_losses(x, m, "", n, h, w, 1, &gl, &gs);
    size_t arena_train = pk_model_arena_bytes(m);
    if (pk_test_model_fill(m, 0))
        die_oom();
    check_logits_losses(x, m, "big.", n, big, big, 0, &gl, &gs);
    check_gradients(x, m, &gs, &gg);
    check_steps(x, m, &gw, &gd);
    report(x, &gl);
    report(x, &gs);
    report(x, &gg);
    report(x, &gw);
    report(x, &gd);
    printf("  info %s train arena at %dx%d: %zu bytes/image\n", x->label, h, w, arena_train);
    pk_model_destroy(m);
}

int main(int argc, char **argv)
{
    int verbose = argc > 1 && !strcmp(argv[1], "-v");
    const char *dir = argc > 1 + verbose ? argv[1 + verbose] : "tests/fixtures";
    static const char *const files[3] = {"r18_7x7", "r50_7x7", "r50_deep"};
    int fails = 0;
    for (int wino = 0; wino < 2; wino++) {
        pk_ctx *c = NULL;
        pk_ctx_opts o = {.device = PK_DEV_CPU, .threads = 0,
                         .conv_algo = wino ? PK_CONV_WINOGRAD : PK_CONV_DIRECT};
        pk_err e = {0};
        if (pk_ctx_create(&c, &o, &e) != PK_OK)
            die_pk("context", &e);
        printf("# %s\n", wino ? "Winograd for every wide 3x3 convolution"
                              : "direct convolutions only");
        for (int i = 0; i < 3; i++) {
            char path[512];
            snprintf(path, sizeof path, "%s/model_%s.safetensors", dir, files[i]);
            fx x = {NULL, files[i], verbose, 0, wino ? WINO_RELAX : 1.0};
            if (pk_st_open(&x.f, path, &e) != PK_OK) {
                fprintf(stderr, "test_model_parity: %s\n", e.msg);
                return 1;
            }
            run_model(&x, c);
            fails += x.fails;
            pk_st_close(x.f);
        }
        pk_ctx_destroy(c);
    }
    printf("test_model_parity: %s\n", fails ? "FAILED" : "all within tolerance");
    return fails ? 1 : 0;
}
