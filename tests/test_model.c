/* The PSPNet model beyond PyTorch parity: the tensor table, the arena plans
 * (replayed block by block) and their sizes, refused inputs, inference
 * output sizes, arena reuse, eval vs train mode, dropout determinism, the
 * profile, creation and initialisation, and a finite-difference check of the whole training loss
 * against the analytic gradient on a small ResNet18. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include "model/pspnet.h"
#include "model/pspnet_impl.h" /* the plan checker below reads the schedule */
#include "support.h"
#include "support_model.h"

#define K 21

static pk_model *make(pk_ctx *c, pk_arch arch, pk_stem stem, float dropout)
{
    pk_model_cfg cfg = {arch, stem, K, dropout};
    pk_model *m = NULL;
    pk_err e = {0};
    if (pk_model_create(&m, c, &cfg, &e) != PK_OK) {
        fprintf(stderr, "test_model: create: %s\n", e.msg);
        exit(1);
    }
    return m;
}

/* The formula batch with every 7th pixel out of the KD mask. */
static pk_test_batch make_data(int n, int h, int w)
{
    pk_test_batch d = pk_test_batch_make(n, h, w, K, PK_TEST_STREAM_IMAGE);
    for (size_t i = 0; i < (size_t)n * h * w; i++)
        d.valid[i] = i % 7 != 0;
    return d;
}

static pk_train_cfg kd_cfg(void) { return pk_test_kd_cfg(0.7f, PK_AUXKD_SMOOTHL1); }

static int test_table(pk_ctx *c)
{
    int fails = 0;
    static const struct {
        pk_arch a;
        pk_stem s;
        int tensors;
    } want[3] = {{PK_ARCH_R18, PK_STEM_7X7, 160},
                 {PK_ARCH_R50, PK_STEM_7X7, 358},
                 {PK_ARCH_R50, PK_STEM_DEEP, 370}};
    for (int i = 0; i < 3; i++) {
        pk_model *m = make(c, want[i].a, want[i].s, 0.1f);
        PK_CHECK(fails, pk_model_tensor_count(m) == want[i].tensors, "%s %s: %d tensors",
                 pk_arch_name(want[i].a), pk_stem_name(want[i].s), pk_model_tensor_count(m));
        /* the dilated layer4 conv2 and the heads, with semseg's names */
        const pk_tensor_info *t = pk_model_find(m, "layer4.0.conv2.weight");
        int mid = 512; /* both: layer4 planes */
        PK_CHECK(fails, t && t->shape[0] == mid && t->shape[2] == 3 && t->is_conv_weight,
                 "layer4.0.conv2.weight");
        int fea = want[i].a == PK_ARCH_R50 ? 2048 : 512;
        t = pk_model_find(m, "ppm.features.3.1.weight");
        PK_CHECK(fails, t && t->shape[0] == fea / 4 && t->shape[1] == fea && t->head,
                 "ppm.features.3.1.weight");
        t = pk_model_find(m, "cls.0.weight");
        PK_CHECK(fails, t && t->shape[1] == 2 * fea && t->shape[0] == 512, "cls.0.weight");
        t = pk_model_find(m, "aux.0.weight");
        PK_CHECK(fails, t && t->shape[0] == (want[i].a == PK_ARCH_R50 ? 256 : 128),
                 "aux.0.weight");
        t = pk_model_find(m, "cls.4.bias");
        PK_CHECK(fails, t && t->count == K && t->kind == PK_T_PARAM, "cls.4.bias");
        t = pk_model_find(m, "layer1.0.bn1.num_batches_tracked");
        PK_CHECK(fails, t && t->kind == PK_T_NUM_BATCHES && t->ndim == 0, "num_batches_tracked");
        PK_CHECK(fails, (pk_model_find(m, "layer0.3.weight") != NULL) == (want[i].s == PK_STEM_DEEP),
                 "deep stem names");
        /* two LR groups: backbone, then every head tensor */
        pk_param_group g[2];
        PK_CHECK(fails, pk_model_param_groups(m, 10.0f, g, 2) == 2, "groups");
        const pk_tensor_info *first_head = pk_model_find(m, "ppm.features.0.1.weight");
        PK_CHECK(fails, g[0].offset == 0 && g[1].offset == first_head->offset &&
                            g[1].offset + g[1].count == pk_model_num_params(m) &&
                            g[1].lr_mult == 10.0f,
                 "param groups");
        for (int k = 0; k < pk_model_tensor_count(m); k++) {
            t = pk_model_tensor(m, k);
            if (t->kind == PK_T_PARAM)
                PK_CHECK(fails, (t->offset >= g[1].offset) == t->head, "%s in the wrong group",
                         t->name);
        }
        pk_model_destroy(m);
    }
    printf("  %s tensor table: counts, names, shapes, LR groups\n", fails ? "FAIL" : "ok  ");
    return fails;
}

static int test_refusals(pk_ctx *c)
{
    int fails = 0;
    pk_model *m = make(c, PK_ARCH_R18, PK_STEM_7X7, 0.1f);
    pk_test_batch d = make_data(2, 17, 17);
    pk_batch b = pk_test_batch_view(&d);
    pk_train_cfg t = kd_cfg();
    pk_err e = {0};
    b.n = 1;
    int rc = pk_model_forward_backward(m, &b, &t, 0, NULL, &e);
    PK_CHECK(fails, rc == PK_EINVAL && strstr(e.msg, "batch >= 2"), "batch 1: rc %d '%s'", rc,
             e.msg);
    printf("  %s batch 1 refused: \"%s\"\n", fails ? "FAIL" : "ok  ", e.msg);
    b.n = 2;
    b.h = 16;
    rc = pk_model_forward_backward(m, &b, &t, 0, NULL, &e);
    PK_CHECK(fails, rc == PK_EINVAL && strstr(e.msg, "8k+1"), "16x17: rc %d '%s'", rc, e.msg);
    float out[K];
    rc = pk_model_infer(m, out, NULL, d.image, 1, 17, 20, 1, &e);
    PK_CHECK(fails, rc == PK_EINVAL, "infer 17x20 accepted");
    pk_test_batch_free(&d);
    pk_model_destroy(m);
    return fails;
}

static size_t count_finite(const float *x, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += isfinite(x[i]) != 0;
    return k;
}

static int test_infer_sizes(pk_ctx *c)
{
    int fails = 0, n = 1, h = 41, w = 33, h8 = 6, w8 = 5;
    pk_model *m = make(c, PK_ARCH_R18, PK_STEM_7X7, 0.1f);
    if (pk_test_model_fill(m, 0))
        exit(1);
    pk_test_batch d = make_data(n, h, w);
    size_t full = (size_t)n * h * w * K, low = (size_t)n * h8 * w8 * K;
    float *main = pk_test_xmalloc((full + 64) * 4), *aux = pk_test_xmalloc((full + 64) * 4);
    float *main2 = pk_test_xmalloc((full + 64) * 4), *low_m = pk_test_xmalloc((full + 64) * 4);
    pk_err e = {0};
    for (size_t i = 0; i < full + 64; i++)
        main[i] = aux[i] = main2[i] = low_m[i] = NAN;
    PK_CHECK(fails, pk_model_infer(m, main, aux, d.image, n, h, w, 1, &e) == PK_OK, "%s", e.msg);
    PK_CHECK(fails, count_finite(main, full + 64) == full && count_finite(aux, full + 64) == full,
             "full-res outputs: %zu/%zu values written", count_finite(main, full + 64), full);
    PK_CHECK(fails, pk_model_infer(m, low_m, NULL, d.image, n, h, w, 0, &e) == PK_OK, "%s",
             e.msg);
    PK_CHECK(fails, count_finite(low_m, full + 64) == low, "stride-8 output: %zu/%zu written",
             count_finite(low_m, full + 64), low);
    PK_CHECK(fails, pk_model_infer(m, main2, NULL, d.image, n, h, w, 1, &e) == PK_OK, "%s",
             e.msg);
    double err = pk_norm_err(main2, main, full);
    PK_CHECK(fails, err <= 1e-6, "main without aux differs: %g", err);
    /* align_corners x8: full-res pixel (8i, 8j) is stride-8 pixel (i, j) */
    double gerr = 0.0;
    for (int y = 0; y < h8; y++)
        for (int x = 0; x < w8; x++)
            for (int k = 0; k < K; k++) {
                double dd = fabs(main[((size_t)(8 * y) * w + 8 * x) * K + k] -
                                 low_m[((size_t)y * w8 + x) * K + k]);
                gerr = dd > gerr ? dd : gerr;
            }
    PK_CHECK(fails, gerr <= 1e-4, "upsampled grid != stride-8 logits: %g", gerr);
    printf("  %s infer %dx%d: [1,%d,%d,%d] full, [1,%d,%d,%d] stride 8, grid err %.2g\n",
           fails ? "FAIL" : "ok  ", h, w, h, w, K, h8, w8, K, gerr);
    free(main);
    free(aux);
    free(main2);
    free(low_m);
    pk_test_batch_free(&d);
    pk_model_destroy(m);
    return fails;
}

static int test_arena_and_modes(pk_ctx *c)
{
    int fails = 0;
    pk_model *m = make(c, PK_ARCH_R18, PK_STEM_7X7, 0.1f);
    if (pk_test_model_fill(m, 0))
        exit(1);
    pk_test_batch d = make_data(2, 33, 33);
    pk_batch b = pk_test_batch_view(&d);
    pk_train_cfg t = kd_cfg();
    pk_err e = {0};
    pk_losses l1, l2, l3;
    PK_CHECK(fails, pk_model_train_step(m, &b, &t, 0, &l1, &e) == PK_OK, "%s", e.msg);
    size_t train_bytes = pk_model_arena_bytes(m);
    const float *logits1 = pk_model_last_logits(m, 0);
    PK_CHECK(fails, pk_model_train_step(m, &b, &t, 1, &l2, &e) == PK_OK, "%s", e.msg);
    PK_CHECK(fails, pk_model_arena_bytes(m) == train_bytes && pk_model_last_logits(m, 0) == logits1,
             "second step replanned or moved the arena");
    PK_CHECK(fails, isfinite(l1.total) && isfinite(l2.total) && l1.lr > l2.lr,
             "losses %g %g lr %g %g", l1.total, l2.total, l1.lr, l2.lr);
    /* eval mode (running stats, no dropout) differs from the train-mode step */
    size_t full = (size_t)2 * 33 * 33 * K, low = (size_t)2 * 5 * 5 * K;
    float *ev = pk_test_xmalloc(full * 4), *tr = pk_test_xmalloc(low * 4);
    float *ev2 = pk_test_xmalloc(full * 4);
    memcpy(tr, pk_model_last_logits(m, 0), low * 4); /* stride 8 */
    PK_CHECK(fails, pk_model_infer(m, ev, NULL, d.image, 2, 33, 33, 0, &e) == PK_OK, "%s", e.msg);
    double diff = pk_norm_err(ev, tr, low);
    PK_CHECK(fails, pk_model_infer(m, ev, NULL, d.image, 2, 33, 33, 1, &e) == PK_OK, "%s", e.msg);
    size_t infer_bytes = pk_model_arena_bytes(m);
    PK_CHECK(fails, diff > 1e-2, "eval and train logits agree (%g)", diff);
    PK_CHECK(fails, pk_model_last_logits(m, 0) == NULL, "train logits survive an infer");
    PK_CHECK(fails, infer_bytes < train_bytes, "infer arena %zu >= train %zu", infer_bytes,
             train_bytes);
    /* back to training: the shared arena is large enough, nothing moves */
    PK_CHECK(fails, pk_model_forward_backward(m, &b, &t, 2, &l3, &e) == PK_OK, "%s", e.msg);
    PK_CHECK(fails, pk_model_last_logits(m, 0) == logits1, "arena moved after an infer");
    /* dropout: a function of (seed, iter); eval ignores it */
    pk_losses a, bb, cc;
    PK_CHECK(fails, pk_model_forward_backward(m, &b, &t, 7, &a, &e) == PK_OK, "%s", e.msg);
    PK_CHECK(fails, pk_model_forward_backward(m, &b, &t, 7, &bb, &e) == PK_OK, "%s", e.msg);
    PK_CHECK(fails, pk_model_forward_backward(m, &b, &t, 8, &cc, &e) == PK_OK, "%s", e.msg);
    PK_CHECK(fails, a.total == bb.total && a.total != cc.total,
             "dropout not a function of the iteration: %.9g %.9g %.9g", a.total, bb.total,
             cc.total);
    pk_model_cfg nodrop = *pk_model_config(m);
    nodrop.dropout = 0.0f;
    pk_model *m0 = NULL;
    PK_CHECK(fails, pk_model_create(&m0, c, &nodrop, &e) == PK_OK, "%s", e.msg);
    pk_dev_upload(c, pk_model_params(m0), pk_model_params(m), pk_model_num_params(m) * 4);
    pk_dev_upload(c, pk_model_state(m0), pk_model_state(m), pk_model_num_state(m) * 4);
    PK_CHECK(fails, pk_model_infer(m, ev, NULL, d.image, 2, 33, 33, 1, &e) == PK_OK, "%s", e.msg);
    PK_CHECK(fails, pk_model_infer(m0, ev2, NULL, d.image, 2, 33, 33, 1, &e) == PK_OK, "%s",
             e.msg);
    PK_CHECK(fails, pk_norm_err(ev, ev2, full) == 0.0, "eval depends on the dropout rate");
    printf("  %s arena reused across steps (train %zu, infer %zu bytes/image at 33x33 b2); "
           "eval vs train differ by %.2g; dropout seeded per iteration\n",
           fails ? "FAIL" : "ok  ", train_bytes, infer_bytes, diff);
    /* the profile */
    pk_model_set_profile(m, 1);
    PK_CHECK(fails, pk_model_train_step(m, &b, &t, 3, NULL, &e) == PK_OK, "%s", e.msg);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f) {
        pk_model_profile_print(m, f);
        fclose(f);
    }
    PK_CHECK(fails, buf && strstr(buf, "layer4") && strstr(buf, "bwd") && strstr(buf, "sgd") &&
                        strstr(buf, "conv") && strstr(buf, "%"),
             "profile output:\n%s", buf ? buf : "(none)");
    free(buf);
    pk_model_profile_reset(m);
    pk_model_set_profile(m, 0);
    free(ev);
    free(ev2);
    free(tr);
    pk_test_batch_free(&d);
    pk_model_destroy(m0);
    pk_model_destroy(m);
    return fails;
}

/* Finite differences of the whole training loss (CE + aux CE + KD + aux
 * SmoothL1) against the analytic gradient g of a few tensors across the
 * network, as directional derivatives along u = g/|g| (analytically |g|;
 * a single entry's derivative drowns in the float32 loss's rounding). The
 * kink-free weights keep every ReLU input >0.3 from 0, far beyond the
 * steps taken here. */
typedef struct fd_ctx {
    pk_model *m;
    pk_batch b;
    pk_train_cfg t;
} fd_ctx;

static double loss_at(fd_ctx *f)
{
    pk_losses l;
    pk_err e = {0};
    if (pk_model_forward_backward(f->m, &f->b, &f->t, 0, &l, &e) != PK_OK) {
        fprintf(stderr, "test_model: %s\n", e.msg);
        exit(1);
    }
    /* the weighted sum in double (l.total is rounded to float once more) */
    return (double)f->t.ce_weight * l.ce + (double)f->t.aux_weight * l.aux_ce +
           (double)f->t.kd_weight * l.kd + (double)f->t.auxkd_weight * l.aux_kd;
}

/* Tensor t's params = w + step * u (host vectors in PyTorch layout). */
static void set_tensor(pk_model *m, const pk_tensor_info *t, const float *w, const float *u,
                       double step, float *tmp)
{
    for (size_t i = 0; i < t->count; i++)
        tmp[pk_test_buffer_index(t, i)] = (float)(w[i] + step * u[i]);
    pk_dev_upload(pk_model_ctx(m), pk_model_params(m) + t->offset, tmp, t->count * 4);
}

static int test_finite_differences(pk_ctx *c)
{
    static const char *const names[] = {
        "layer0.0.weight",         "layer0.1.weight",         "layer1.0.conv2.weight",
        "layer2.0.downsample.0.weight", "layer3.1.bn1.bias",  "layer4.1.conv2.weight",
        "ppm.features.2.1.weight", "ppm.features.3.2.weight", "cls.0.weight",
        "cls.1.bias",              "cls.4.weight",            "aux.0.weight",
        "aux.4.bias"};
    int n = (int)(sizeof names / sizeof names[0]), fails = 0;
    pk_model *m = make(c, PK_ARCH_R18, PK_STEM_7X7, 0.0f);
    if (pk_test_model_fill(m, 1))
        exit(1);
    pk_test_batch d = make_data(4, 17, 17);
    fd_ctx f = {m, pk_test_batch_view(&d), kd_cfg()};
    loss_at(&f);
    /* all gradients first: every later loss_at overwrites them */
    float *g[16];
    for (int i = 0; i < n; i++) {
        const pk_tensor_info *t = pk_model_find(m, names[i]);
        g[i] = pk_test_xmalloc(t->count * 4);
        if (pk_test_model_read(m, t, 1, g[i]))
            exit(1);
    }
    double worst = 0.0;
    for (int i = 0; i < n; i++) {
        const pk_tensor_info *t = pk_model_find(m, names[i]);
        float *w = pk_test_xmalloc(t->count * 4), *tmp = pk_test_xmalloc(t->count * 4);
        if (pk_test_model_read(m, t, 0, w))
            exit(1);
        double gn = 0.0, wn = 0.0;
        for (size_t k = 0; k < t->count; k++) {
            gn += (double)g[i][k] * g[i][k];
            wn += (double)w[k] * w[k];
        }
        gn = sqrt(gn);
        for (size_t k = 0; k < t->count; k++)
            g[i][k] = (float)(g[i][k] / gn); /* u */
        /* a step that changes the loss by ~1e-4 (its terms carry float32
         * rounding of ~3e-7; larger steps meet the curvature: 1% of the
         * tensor's norm along u moves the stem's derivative by 10%) */
        double eps = 1e-4 / gn;
        eps = eps < 1e-2 * sqrt(wn) ? eps : 1e-2 * sqrt(wn);
        set_tensor(m, t, w, g[i], eps, tmp);
        double lp = loss_at(&f);
        set_tensor(m, t, w, g[i], -eps, tmp);
        double lm = loss_at(&f);
        set_tensor(m, t, w, g[i], 0.0, tmp);
        double num = (lp - lm) / (2.0 * eps), err = fabs(num - gn) / gn;
        worst = err > worst ? err : worst;
        if (!(err <= 2e-2)) {
            fails++;
            printf("  FAIL fd %s: |g| %.6g, numeric %.6g (err %.3g)\n", names[i], gn, num, err);
        }
        free(w);
        free(tmp);
        free(g[i]);
    }
    printf("  %s finite differences of the whole loss along the gradient, %d tensors: "
           "worst rel err %.3g (tol 2e-2)\n",
           fails ? "FAIL" : "ok  ", n, worst);
    pk_test_batch_free(&d);
    pk_model_destroy(m);
    return fails;
}

/* Replays a plan's schedule over an owner map of the arena (one entry per
 * 16-float block): a write makes the value the owner of its blocks, a read
 * must find every block still owned by that value. This checks the
 * planner's liveness and offsets independently of the numbers (ASan cannot
 * see inside the one arena allocation). Returns the violations. */
typedef struct replay {
    const pk_plan *p;
    int *owner;
    size_t blocks;
    int bad;
} replay;

static void span_of(const replay *r, int v, size_t *b0, size_t *b1)
{
    const pk_value *x = &r->p->vals[v];
    size_t off = r->p->stor_off[x->storage];
    *b0 = off / 16;
    *b1 = (off + x->floats + 15) / 16;
}

/* v < 0, the caller's, or never in the arena (a fold skips it, pk_plan_ptr
 * gives NULL): nothing to replay. */
static int outside(const replay *r, int v)
{
    return v < 0 || r->p->vals[v].ext != PK_EXT_NONE || r->p->vals[v].storage < 0;
}

static void wr(replay *r, int v)
{
    if (outside(r, v))
        return;
    size_t b0, b1;
    span_of(r, v, &b0, &b1);
    for (size_t b = b0; b < b1 && b < r->blocks; b++)
        r->owner[b] = v;
    if (b1 > r->blocks)
        r->bad++;
}

static void rd(replay *r, int v, const char *when, int node)
{
    if (outside(r, v))
        return;
    size_t b0, b1;
    span_of(r, v, &b0, &b1);
    for (size_t b = b0; b < b1; b++)
        if (b >= r->blocks || r->owner[b] != v) {
            if (r->bad++ < 5)
                printf("  FAIL plan: %s of node %d reads value %d, overwritten by %d\n", when,
                       node, v, b < r->blocks ? r->owner[b] : -2);
            return;
        }
}

/* An activation the backward reads, as pspnet_exec.c's kept() does: from
 * its bf16 shadow, unpacked once into its fp32 value, where it has one. */
static void rd_kept(replay *r, unsigned char *unpacked, int v, int node)
{
    const pk_value *x = &r->p->vals[v];
    if (v < 0 || x->shadow < 0) {
        rd(r, v, "backward", node);
        return;
    }
    if (!unpacked[v]) {
        rd(r, x->shadow, "unpack", node);
        rd(r, x->center, "unpack", node);
        wr(r, x->unpacked);
        unpacked[v] = 1;
    }
    rd(r, x->unpacked, "backward", node);
}

/* The BN+ReLU pair whose backward pspnet_exec.c runs fused on the CPU. */
static const pk_node *fused_relu_at(const pk_plan *p, int i)
{
    const pk_node *relu = pk_plan_fused_relu(p, i);
    return relu && p->nodes[i].kind == PK_N_BN && !relu->gacc[0] ? relu : NULL;
}

/* Replays plan p of a model on context c as pspnet_exec.c runs it,
 * including the bf16 precision's shadows (training) and folds and bf16
 * values (inference). */
static int check_plan(pk_ctx *c, const pk_plan *p)
{
    replay r = {p, NULL, p->arena_floats / 16, 0};
    r.owner = pk_test_xmalloc((r.blocks ? r.blocks : 1) * sizeof *r.owner);
    unsigned char *unpacked = calloc((size_t)p->nvals + 1, 1);
    if (!unpacked)
        exit(1);
    for (size_t b = 0; b < r.blocks; b++)
        r.owner[b] = -1;
    for (int i = 0; i < p->nnodes; i++) {
        const pk_node *nd = &p->nodes[i];
        if (nd->fold) {
            rd(&r, nd->in[0], "folded forward", i);
            if (nd->fold == 3)
                rd(&r, nd->fold_res, "folded forward", i);
            wr(&r, nd->fold_out);
            i += nd->fold;
            continue;
        }
        /* a BN or add with its ReLU runs fused (pspnet_exec.c): the ReLU's
         * output and its shadow are written at the BN's step */
        const pk_node *relu = pk_plan_fused_relu(p, i);
        for (int j = 0; j < nd->nin; j++)
            rd(&r, nd->in[j], "forward", i);
        wr(&r, relu ? relu->out : nd->out);
        wr(&r, nd->save0);
        wr(&r, nd->save1);
        const pk_value *y = &p->vals[relu ? relu->out : nd->out];
        if (y->shadow >= 0 && y->center < 0) { /* packed after its producer */
            rd(&r, relu ? relu->out : nd->out, "pack", i);
            wr(&r, y->shadow);
        }
        const pk_value *x = &p->vals[nd->in[0]];
        if (nd->kind == PK_N_BN && x->shadow >= 0) { /* packed centred after the BN */
            rd(&r, nd->in[0], "pack", i);
            rd(&r, nd->save0, "pack", i);
            wr(&r, x->shadow);
        }
        i += relu != NULL;
    }
    if (p->train) {
        for (int a = 0; a < 2; a++) { /* the loss step */
            int v = a ? p->v_aux : p->v_main;
            rd(&r, v, "loss", -1);
            wr(&r, p->v_full);
            wr(&r, p->v_dfull);
            rd(&r, p->v_full, "loss", -1);
            rd(&r, p->v_dfull, "loss", -1);
            wr(&r, p->vals[v].grad);
        }
        for (int i = p->nnodes - 1; i >= 0; i--) {
            const pk_node *nd = &p->nodes[i], *relu = NULL;
            if (i > 0 && (relu = fused_relu_at(p, i - 1)) != NULL)
                nd = &p->nodes[--i];
            int dy = p->vals[nd->out].grad;
            if (dy < 0)
                continue;
            rd(&r, relu ? p->vals[relu->out].grad : dy, "backward", i);
            const pk_value *x = &p->vals[nd->in[0]];
            switch (nd->kind) {
            case PK_N_CONV:
                if (x->shadow >= 0 && x->center < 0)
                    rd(&r, x->shadow, "backward", i);
                if (x->shadow < 0 || x->center >= 0 || pk_conv_backward_needs_x(c, &nd->conv))
                    rd_kept(&r, unpacked, nd->in[0], i);
                break;
            case PK_N_BN:
                if (x->shadow >= 0 && x->center >= 0 && x->unpacked < 0)
                    rd(&r, x->shadow, "backward", i); /* read as it is */
                else
                    rd_kept(&r, unpacked, nd->in[0], i);
                if (relu)
                    rd_kept(&r, unpacked, relu->out, i);
                rd(&r, nd->save0, "backward", i);
                rd(&r, nd->save1, "backward", i);
                break;
            case PK_N_RELU:
                rd_kept(&r, unpacked, nd->out, i);
                break;
            case PK_N_MAXPOOL:
            case PK_N_DROPOUT:
                rd(&r, nd->save0, "backward", i);
                break;
            default:
                break;
            }
            for (int j = 0; j < nd->nin; j++)
                if (nd->gacc[j] && nd->kind == PK_N_ADD)
                    rd(&r, nd->gin[j], "accumulate", i);
            for (int j = 0; j < nd->nin; j++) {
                wr(&r, nd->gin[j]);
                if (nd->gacc[j] && nd->kind != PK_N_ADD) {
                    int g = p->vals[nd->in[j]].grad;
                    rd(&r, g, "accumulate", i);
                    wr(&r, g);
                }
            }
        }
        rd(&r, p->v_main, "end", -1); /* pk_model_last_logits */
        rd(&r, p->v_aux, "end", -1);
    }
    free(r.owner);
    free(unpacked);
    return r.bad;
}

/* The arena figures the bench note quotes, and the plans' replay; planning
 * only, nothing runs. */
static int test_plan_bytes(pk_ctx *c)
{
    int fails = 0;
    pk_err e = {0};
    size_t tr18 = 0, in18 = 0, in50 = 0, tr50 = 0;
    int bad = 0;
    pk_model *m = make(c, PK_ARCH_R18, PK_STEM_7X7, 0.1f);
    PK_CHECK(fails, pk_model_plan(m, 1, 2, 225, 225, &tr18, &e) == PK_OK, "%s", e.msg);
    PK_CHECK(fails, pk_model_plan(m, 0, 1, 473, 473, &in18, &e) == PK_OK, "%s", e.msg);
    bad += check_plan(c, &m->train_plan) + check_plan(c, &m->infer_plan);
    PK_CHECK(fails, pk_model_plan(m, 1, 1, 225, 225, NULL, &e) == PK_EINVAL, "train b1 planned");
    pk_model_destroy(m);
    m = make(c, PK_ARCH_R50, PK_STEM_DEEP, 0.1f);
    PK_CHECK(fails, pk_model_plan(m, 0, 1, 473, 473, &in50, &e) == PK_OK, "%s", e.msg);
    PK_CHECK(fails, pk_model_plan(m, 1, 2, 225, 225, &tr50, &e) == PK_OK, "%s", e.msg);
    bad += check_plan(c, &m->train_plan) + check_plan(c, &m->infer_plan);
    pk_model_destroy(m);
    m = make(c, PK_ARCH_R50, PK_STEM_7X7, 0.0f); /* no dropout nodes, stride-8 infer */
    size_t unused;
    int ok = pk_model_plan(m, 1, 3, 41, 33, &unused, &e) == PK_OK;
    float out[1];
    ok = ok && pk_model_infer(m, out, NULL, NULL, 1, 17, 17, 0, &e) == PK_EINVAL; /* no image */
    bad += check_plan(c, &m->train_plan);
    pk_model_destroy(m);
    PK_CHECK(fails, ok, "R50 7x7 plans");
    PK_CHECK(fails, bad == 0, "%d arena plan violations", bad);
    printf("  %s arena plans replayed (R18 train/infer, R50 deep train/infer, R50 7x7 train): "
           "%d values read after being overwritten\n",
           bad ? "FAIL" : "ok  ", bad);
    PK_CHECK(fails, tr18 > 0 && in50 > 0 && in18 < in50, "arena sizes");
    printf("  %s arena bytes/image: R18 train b2 225 %.1f MB, R18 infer 473 %.1f MB, "
           "R50-deep infer 473 %.1f MB, R50-deep train b2 225 %.1f MB\n",
           fails ? "FAIL" : "ok  ", tr18 / 1048576.0, in18 / 1048576.0, in50 / 1048576.0,
           tr50 / 1048576.0);
    return fails;
}

/* The same replay of the bf16 precision's plans: training with the
 * activations kept in bf16 (shadows, unpacked values), inference with the
 * BN folds and the values held in bf16. */
static int test_plan_bf16(void)
{
    pk_ctx_opts o = {.device = PK_DEV_CPU, .precision = PK_PREC_BF16};
    pk_ctx *c = NULL;
    pk_err e = {0};
    if (pk_ctx_create(&c, &o, &e) != PK_OK) {
        printf("  skip bf16 arena plans: %s\n", e.msg);
        return 0;
    }
    int fails = 0, bad = 0;
    const pk_arch arch[2] = {PK_ARCH_R18, PK_ARCH_R50};
    const pk_stem stem[2] = {PK_STEM_7X7, PK_STEM_DEEP};
    for (int a = 0; a < 2; a++) {
        pk_model *m = make(c, arch[a], stem[a], 0.1f);
        size_t tr = 0, in = 0;
        PK_CHECK(fails, pk_model_plan(m, 1, 2, 225, 225, &tr, &e) == PK_OK, "%s", e.msg);
        PK_CHECK(fails, pk_model_plan(m, 0, 1, 473, 473, &in, &e) == PK_OK, "%s", e.msg);
        bad += check_plan(c, &m->train_plan) + check_plan(c, &m->infer_plan);
        size_t unused; /* test_bf16's step */
        PK_CHECK(fails, pk_model_plan(m, 1, 2, 65, 65, &unused, &e) == PK_OK, "%s", e.msg);
        bad += check_plan(c, &m->train_plan);
        int folds = 0, halves = 0;
        for (int i = 0; i < m->infer_plan.nnodes; i++)
            folds += m->infer_plan.nodes[i].fold > 0;
        for (int v = 0; v < m->infer_plan.nvals; v++)
            halves += m->infer_plan.vals[v].half;
        PK_CHECK(fails, folds > 0 && halves > 0, "%s bf16 inference: %d folds, %d bf16 values",
                 pk_arch_name(arch[a]), folds, halves);
        printf("  %s %s bf16 plans: train b2 225 %.1f MB/img, infer 473 %.1f MB with %d folds, "
               "%d values in bf16\n",
               fails ? "FAIL" : "ok  ", pk_arch_name(arch[a]), tr / 1048576.0, in / 1048576.0,
               folds, halves);
        pk_model_destroy(m);
    }
    PK_CHECK(fails, bad == 0, "%d bf16 arena plan violations", bad);
    printf("  %s bf16 arena plans replayed (R18, R50 deep; train and infer): %d values read "
           "after being overwritten\n",
           bad ? "FAIL" : "ok  ", bad);
    pk_ctx_destroy(c);
    return fails;
}

#if !defined(__SANITIZE_ADDRESS__) /* its one user is skipped under ASan */
/* The bytes of the process's address space now (VmSize). */
static size_t vm_bytes(void)
{
    unsigned long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%lu", &pages) != 1)
            pages = 0;
        fclose(f);
    }
    return (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
}
#endif

/* pk_model_create: the class-count bound (also the losses', PK_LOSS_KMAX)
 * and zero buffers; pk_model_init: deterministic, and PK_ENOMEM with the
 * model unchanged when its staging buffers cannot be had. */
static int test_create_init(pk_ctx *c)
{
    int fails = 0;
    pk_err e = {0};
    static const int bad[] = {0, 256, PK_LOSS_KMAX + 1, 1000};
    for (int i = 0; i < 4; i++) {
        pk_model_cfg cfg = {PK_ARCH_R18, PK_STEM_7X7, bad[i], 0.1f};
        pk_model *m = NULL;
        e.msg[0] = '\0';
        int rc = pk_model_create(&m, c, &cfg, &e);
        PK_CHECK(fails, rc == PK_EINVAL && !m && strstr(e.msg, "1..255"),
                 "%d classes: rc %d '%s'", bad[i], rc, e.msg);
    }
    printf("  %s more than 255 classes refused: \"%s\"\n", fails ? "FAIL" : "ok  ", e.msg);
    int f0 = fails;
    pk_model *a = make(c, PK_ARCH_R18, PK_STEM_7X7, 0.1f), *b = make(c, PK_ARCH_R18, PK_STEM_7X7, 0.1f);
    size_t np = pk_model_num_params(a), ns = pk_model_num_state(a);
    size_t nz = 0;
    for (size_t i = 0; i < np; i++)
        nz += pk_model_params(a)[i] != 0.0f || pk_model_momentum(a)[i] != 0.0f;
    for (size_t i = 0; i < ns; i++)
        nz += pk_model_state(a)[i] != 0.0f;
    PK_CHECK(fails, nz == 0, "pk_model_create: %zu non-zero values", nz);
    PK_CHECK(fails, pk_model_init(a, 3, &e) == PK_OK && pk_model_init(b, 3, &e) == PK_OK, "%s",
             e.msg);
    PK_CHECK(fails, !memcmp(pk_model_params(a), pk_model_params(b), np * sizeof(float)) &&
                        !memcmp(pk_model_state(a), pk_model_state(b), ns * sizeof(float)),
             "pk_model_init(3) twice differs");
    const pk_tensor_info *w = pk_model_find(a, "layer1.0.conv1.weight");
    const pk_tensor_info *v = pk_model_find(a, "layer1.0.bn1.running_var");
    PK_CHECK(fails, w && v && pk_model_params(a)[w->offset] != 0.0f &&
                        pk_model_state(a)[v->offset] == 1.0f,
             "pk_model_init left weights or running_var at 0");
#if defined(__SANITIZE_ADDRESS__)
    printf("  %s pk_model_init deterministic (out-of-memory case skipped under ASan)\n",
           fails > f0 ? "FAIL" : "ok  ");
#else
    /* no room for the staging buffers (~50 MB here): PK_ENOMEM, b unchanged */
    memset(pk_model_params(b), 0, np * sizeof(float));
    struct rlimit old, low;
    int rc = -1;
    if (getrlimit(RLIMIT_AS, &old) == 0) {
        low = old;
        low.rlim_cur = vm_bytes() + ((size_t)8 << 20);
        if (old.rlim_cur == RLIM_INFINITY || low.rlim_cur < old.rlim_cur) {
            setrlimit(RLIMIT_AS, &low);
            rc = pk_model_init(b, 3, &e);
            setrlimit(RLIMIT_AS, &old);
        }
    }
    nz = 0;
    for (size_t i = 0; i < np; i++)
        nz += pk_model_params(b)[i] != 0.0f;
    PK_CHECK(fails, rc == PK_ENOMEM && strstr(e.msg, "out of memory") && nz == 0,
             "pk_model_init under a low RLIMIT_AS: rc %d '%s', %zu values written", rc, e.msg,
             nz);
    printf("  %s pk_model_init deterministic; out of memory: \"%s\"\n",
           fails > f0 ? "FAIL" : "ok  ", e.msg);
#endif
    pk_model_destroy(a);
    pk_model_destroy(b);
    return fails;
}

/* pk_model_zero_residual: exactly the last BN weight of each residual block
 * (ResNet18: bn2 of 8 basic blocks; ResNet50: bn3 of 16 bottlenecks) becomes
 * 0; every other parameter keeps its initial value. */
static int test_zero_residual(pk_ctx *c)
{
    int fails = 0;
    static const struct { pk_arch arch; pk_stem stem; const char *bn; int blocks; } cases[] = {
        {PK_ARCH_R18, PK_STEM_7X7, ".bn2.weight", 8}, {PK_ARCH_R50, PK_STEM_DEEP, ".bn3.weight", 16}};
    for (int k = 0; k < 2; k++) {
        pk_model *m = make(c, cases[k].arch, cases[k].stem, 0.1f);
        pk_err e = {0};
        if (pk_model_init(m, 5, &e)) {
            fprintf(stderr, "test_model: init: %s\n", e.msg);
            exit(1);
        }
        size_t np = pk_model_num_params(m);
        float *before = malloc(np * sizeof *before);
        memcpy(before, pk_model_params(m), np * sizeof *before);
        pk_model_zero_residual(m);
        const float *after = pk_model_params(m);
        int zeroed = 0, wrong = 0;
        for (int i = 0; i < pk_model_tensor_count(m); i++) {
            const pk_tensor_info *t = pk_model_tensor(m, i);
            if (t->kind != PK_T_PARAM)
                continue;
            size_t n = strlen(t->name), l = strlen(cases[k].bn);
            int last = !strncmp(t->name, "layer", 5) && t->name[5] >= '1' && t->name[5] <= '4' &&
                       n > l && !strcmp(t->name + n - l, cases[k].bn);
            zeroed += last;
            for (size_t j = 0; j < t->count; j++)
                wrong += last ? after[t->offset + j] != 0.0f
                              : after[t->offset + j] != before[t->offset + j];
        }
        PK_CHECK(fails, zeroed == cases[k].blocks && wrong == 0,
                 "%s: %d tensors zeroed (want %d), %d values wrong", pk_arch_name(cases[k].arch),
                 zeroed, cases[k].blocks, wrong);
        free(before);
        pk_model_destroy(m);
    }
    printf("  %s zero_init_residual: the last BN weight of each block, nothing else\n",
           fails ? "FAIL" : "ok  ");
    return fails;
}

int main(void)
{
    pk_ctx *c = pk_test_ctx(0);
    int fails = 0;
    fails += test_table(c);
    fails += test_plan_bytes(c); /* before anything runs a plan */
    fails += test_plan_bf16();
    fails += test_refusals(c);
    fails += test_create_init(c);
    fails += test_zero_residual(c);
    fails += test_infer_sizes(c);
    fails += test_arena_and_modes(c);
    fails += test_finite_differences(c);
    pk_ctx_destroy(c);
    printf("test_model: %s\n", fails ? "FAILED" : "all passed");
    return fails ? 1 : 0;
}
