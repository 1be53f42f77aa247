/* PyTorch parity: runs every op of lib/ops/ops.h on the inputs stored in
 * tests/fixtures/ops.safetensors (written by tests/fixtures/gen_ops.py) and
 * compares each output with pk_check_close's normalised error:
 *   forward values (and loss values) 1e-5, gradients 1e-4, three SGD steps 1e-5.
 * Prints the measured error per tensor; any mismatch or missing tensor makes
 * the exit status non-zero. Usage: test_parity_ops [fixture path]. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "ops/ops.h"
#include "store/safetensors.h"
#include "support.h"

#define TOL_FWD 1e-5
#define TOL_BWD 1e-4
#define TOL_SGD 1e-5

/* Everything one case allocates, freed together. */
typedef struct arena {
    void *ptr[64];
    int n;
} arena;

static void *arena_alloc(arena *a, size_t bytes)
{
    if (a->n == (int)(sizeof a->ptr / sizeof a->ptr[0])) {
        fprintf(stderr, "test_parity_ops: arena full\n");
        exit(1);
    }
    void *p = aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
    if (!p) {
        fprintf(stderr, "test_parity_ops: out of memory\n");
        exit(1);
    }
    memset(p, 0, bytes);
    a->ptr[a->n++] = p;
    return p;
}

static void arena_free(arena *a)
{
    for (int i = 0; i < a->n; i++)
        free(a->ptr[i]);
    a->n = 0;
}

typedef struct fixture {
    const pk_st_file *f;
    pk_ctx *c;
    arena mem;
    int fails;
    int checks;
} fixture;

static float *zeros(fixture *x, size_t n)
{
    return arena_alloc(&x->mem, n * sizeof(float));
}

/* Tensor "<cs>.<t>" as float32; n == 0 accepts the stored size (returned in
 * *got_n when non-NULL). A missing or mis-sized tensor is fatal: the fixture
 * and this test are out of step. */
static float *load(fixture *x, const char *cs, const char *t, size_t n, size_t *got_n)
{
    char name[128];
    snprintf(name, sizeof name, "%s.%s", cs, t);
    const pk_st_tensor *st = pk_st_find(x->f, name);
    if (!st) {
        fprintf(stderr, "test_parity_ops: fixture lacks tensor '%s'\n", name);
        exit(1);
    }
    if (n == 0)
        n = st->numel;
    float *p = zeros(x, n);
    pk_err e = {0};
    if (pk_st_read_f32(x->f, name, p, n, &e) != PK_OK) {
        fprintf(stderr, "test_parity_ops: %s\n", e.msg);
        exit(1);
    }
    if (got_n)
        *got_n = n;
    return p;
}

static int has(fixture *x, const char *cs)
{
    char name[128];
    snprintf(name, sizeof name, "%s.cfg", cs);
    return pk_st_find(x->f, name) != NULL;
}

static void cfg_ints(fixture *x, const char *cs, int *v, size_t n)
{
    float *f = load(x, cs, "cfg", n, NULL);
    for (size_t i = 0; i < n; i++)
        v[i] = (int)f[i];
}

static uint8_t *to_u8(fixture *x, const float *f, size_t n)
{
    uint8_t *u = arena_alloc(&x->mem, n);
    for (size_t i = 0; i < n; i++)
        u[i] = (uint8_t)f[i];
    return u;
}

/* Compares got with the fixture's "<cs>.<t>". */
static void expect(fixture *x, const char *cs, const char *t, const float *got, size_t n,
                   double tol)
{
    char what[128];
    snprintf(what, sizeof what, "%s.%s", cs, t);
    const float *want = load(x, cs, t, n, NULL);
    x->fails += pk_check_close(what, got, want, n, tol);
    x->checks++;
}

static void backend_failed(fixture *x, const char *cs, const pk_err *e)
{
    printf("  FAIL %s: %s\n", cs, e->msg);
    x->fails++;
}

static void run_conv(fixture *x, const char *cs)
{
    int v[10];
    cfg_ints(x, cs, v, 10);
    pk_conv_desc d = pk_conv_desc_make(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9]);
    size_t nx = (size_t)v[0] * v[1] * v[2] * v[3], nw = (size_t)v[4] * v[5] * v[5] * v[3];
    size_t ny = 0;
    float *xin = load(x, cs, "x", nx, NULL), *w = load(x, cs, "w", nw, NULL);
    float *b = d.bias ? load(x, cs, "b", (size_t)d.co, NULL) : NULL;
    float *dy = load(x, cs, "dy", 0, &ny);
    if (ny != (size_t)d.n * d.ho * d.wo * d.co) {
        printf("  FAIL %s: output size %dx%d disagrees with PyTorch's (%zu elements)\n", cs,
               d.ho, d.wo, ny);
        x->fails++;
        return;
    }
    float *y = zeros(x, ny), *dx = zeros(x, nx), *dw = zeros(x, nw);
    float *db = d.bias ? zeros(x, (size_t)d.co) : NULL;
    pk_err e = {0};
    if (pk_conv2d_forward(x->c, y, xin, w, b, &d, &e) != PK_OK) {
        backend_failed(x, cs, &e);
        return;
    }
    expect(x, cs, "y", y, ny, TOL_FWD);
    if (pk_conv2d_backward(x->c, dx, dw, db, dy, xin, w, &d, &e) != PK_OK) {
        backend_failed(x, cs, &e);
        return;
    }
    expect(x, cs, "dx", dx, nx, TOL_BWD);
    expect(x, cs, "dw", dw, nw, TOL_BWD);
    if (d.bias)
        expect(x, cs, "db", db, (size_t)d.co, TOL_BWD);
}

static void run_bn(fixture *x)
{
    int v[2];
    cfg_ints(x, "bn_train", v, 2);
    long P = v[0];
    int C = v[1];
    size_t n = (size_t)P * C;
    const char *cs = "bn_train";
    float *xin = load(x, cs, "x", n, NULL), *gamma = load(x, cs, "gamma", C, NULL),
          *beta = load(x, cs, "beta", C, NULL), *dy = load(x, cs, "dy", n, NULL);
    float *rm = load(x, cs, "running_mean_before", C, NULL),
          *rv = load(x, cs, "running_var_before", C, NULL);
    float *y = zeros(x, n), *sm = zeros(x, C), *sr = zeros(x, C), *dx = zeros(x, n),
          *dg = zeros(x, C), *db = zeros(x, C);
    pk_bn_forward_train(x->c, y, sm, sr, xin, gamma, beta, rm, rv, P, C, 0.1f, 1e-5f);
    expect(x, cs, "y", y, n, TOL_FWD);
    expect(x, cs, "save_mean", sm, C, TOL_FWD);
    expect(x, cs, "save_rstd", sr, C, TOL_FWD);
    expect(x, cs, "running_mean_after", rm, C, TOL_FWD);
    expect(x, cs, "running_var_after", rv, C, TOL_FWD);
    pk_bn_backward(x->c, dx, dg, db, dy, xin, sm, sr, gamma, P, C);
    expect(x, cs, "dx", dx, n, TOL_BWD);
    expect(x, cs, "dgamma", dg, C, TOL_BWD);
    expect(x, cs, "dbeta", db, C, TOL_BWD);

    cs = "bn_eval";
    cfg_ints(x, cs, v, 2);
    P = v[0], C = v[1], n = (size_t)P * C;
    xin = load(x, cs, "x", n, NULL), gamma = load(x, cs, "gamma", C, NULL);
    beta = load(x, cs, "beta", C, NULL);
    rm = load(x, cs, "running_mean", C, NULL), rv = load(x, cs, "running_var", C, NULL);
    y = zeros(x, n);
    pk_bn_forward_eval(x->c, y, xin, gamma, beta, rm, rv, P, C, 1e-5f);
    expect(x, cs, "y", y, n, TOL_FWD);
}

static void run_relu_add(fixture *x)
{
    size_t n = 0;
    float *xin = load(x, "relu", "x", 0, &n), *dy = load(x, "relu", "dy", n, NULL);
    float *y = zeros(x, n), *dx = zeros(x, n);
    pk_relu_forward(x->c, y, xin, n);
    expect(x, "relu", "y", y, n, TOL_FWD);
    pk_relu_backward(x->c, dx, dy, y, n);
    expect(x, "relu", "dx", dx, n, TOL_BWD);

    float *a = load(x, "add", "a", 0, &n), *b = load(x, "add", "b", n, NULL);
    y = zeros(x, n);
    pk_add_forward(x->c, y, a, b, n);
    expect(x, "add", "y", y, n, TOL_FWD);
    pk_accumulate(x->c, a, b, n); /* a += b is the same sum */
    expect(x, "add", "y", a, n, TOL_FWD);
}

static void run_maxpool(fixture *x, const char *cs)
{
    int v[9];
    cfg_ints(x, cs, v, 9);
    int n = v[0], h = v[1], w = v[2], ch = v[3], k = v[4], s = v[5], p = v[6];
    int ho = pk_pool_out_size(h, k, s, p), wo = pk_pool_out_size(w, k, s, p);
    if (ho != v[7] || wo != v[8]) {
        printf("  FAIL %s: output %dx%d, PyTorch %dx%d\n", cs, ho, wo, v[7], v[8]);
        x->fails++;
        return;
    }
    size_t nx = (size_t)n * h * w * ch, ny = (size_t)n * ho * wo * ch;
    float *xin = load(x, cs, "x", nx, NULL), *dy = load(x, cs, "dy", ny, NULL);
    float *y = zeros(x, ny), *dx = zeros(x, nx);
    int32_t *arg = arena_alloc(&x->mem, ny * sizeof *arg);
    pk_maxpool_forward(x->c, y, arg, xin, n, h, w, ch, k, s, p);
    expect(x, cs, "y", y, ny, TOL_FWD);
    pk_maxpool_backward(x->c, dx, dy, arg, n, h, w, ch, ho, wo);
    expect(x, cs, "dx", dx, nx, TOL_BWD);
}

static void run_adapool(fixture *x, const char *cs)
{
    int v[5];
    cfg_ints(x, cs, v, 5);
    int n = v[0], h = v[1], w = v[2], ch = v[3], bins = v[4];
    size_t nx = (size_t)n * h * w * ch, ny = (size_t)n * bins * bins * ch;
    float *xin = load(x, cs, "x", nx, NULL), *dy = load(x, cs, "dy", ny, NULL);
    float *y = zeros(x, ny), *dx = zeros(x, nx);
    pk_adapool_forward(x->c, y, xin, n, h, w, ch, bins);
    expect(x, cs, "y", y, ny, TOL_FWD);
    pk_adapool_backward(x->c, dx, dy, n, h, w, ch, bins);
    expect(x, cs, "dx", dx, nx, TOL_BWD);
}

static void run_resize(fixture *x, const char *cs)
{
    int v[6];
    cfg_ints(x, cs, v, 6);
    int n = v[0], h = v[1], w = v[2], ch = v[3], ho = v[4], wo = v[5];
    size_t nx = (size_t)n * h * w * ch, ny = (size_t)n * ho * wo * ch;
    float *xin = load(x, cs, "x", nx, NULL), *dy = load(x, cs, "dy", ny, NULL);
    float *y = zeros(x, ny), *dx = zeros(x, nx);
    pk_resize_forward(x->c, y, xin, n, h, w, ch, ho, wo);
    expect(x, cs, "y", y, ny, TOL_FWD);
    pk_resize_backward(x->c, dx, dy, n, h, w, ch, ho, wo);
    expect(x, cs, "dx", dx, nx, TOL_BWD);
}

static void run_concat(fixture *x)
{
    int v[4];
    cfg_ints(x, "concat", v, 4);
    long P = v[0];
    int cs[3] = {v[1], v[2], v[3]}, ct = cs[0] + cs[1] + cs[2];
    const float *xs[3];
    float *dxs[3];
    char t[8];
    for (int j = 0; j < 3; j++) {
        snprintf(t, sizeof t, "x%d", j);
        xs[j] = load(x, "concat", t, (size_t)P * cs[j], NULL);
        dxs[j] = zeros(x, (size_t)P * cs[j]);
    }
    float *dy = load(x, "concat", "dy", (size_t)P * ct, NULL), *y = zeros(x, (size_t)P * ct);
    pk_concat_forward(x->c, y, xs, cs, 3, P);
    expect(x, "concat", "y", y, (size_t)P * ct, TOL_FWD);
    pk_concat_backward(x->c, dxs, dy, cs, 3, P);
    for (int j = 0; j < 3; j++) {
        snprintf(t, sizeof t, "dx%d", j);
        expect(x, "concat", t, dxs[j], (size_t)P * cs[j], TOL_BWD);
    }
}

static void run_dropout(fixture *x, const char *cs)
{
    int v[4];
    cfg_ints(x, cs, v, 4);
    int n = v[0], ch = v[2];
    long hw = v[1];
    uint64_t seed = (uint64_t)v[3];
    float p = *load(x, cs, "p", 1, NULL);
    size_t len = (size_t)n * hw * ch;
    float *xin = load(x, cs, "x", len, NULL), *dy = load(x, cs, "dy", len, NULL);
    float *y = zeros(x, len), *dx = zeros(x, len), *keepf = zeros(x, (size_t)n * ch);
    uint8_t *keep = arena_alloc(&x->mem, (size_t)n * ch);
    pk_dropout2d_forward(x->c, y, keep, xin, n, hw, ch, p, seed);
    for (int i = 0; i < n * ch; i++)
        keepf[i] = keep[i];
    expect(x, cs, "keep", keepf, (size_t)n * ch, 0.0);
    expect(x, cs, "y", y, len, TOL_FWD);
    pk_dropout2d_backward(x->c, dx, dy, keep, n, hw, ch, p);
    expect(x, cs, "dx", dx, len, TOL_BWD);
}

static void run_losses(fixture *x)
{
    int v[3];
    cfg_ints(x, "ce", v, 3);
    long P = v[0];
    int K = v[1];
    size_t n = (size_t)P * K;
    float *logits = load(x, "ce", "logits", n, NULL);
    uint8_t *lab = to_u8(x, load(x, "ce", "labels", (size_t)P, NULL), (size_t)P);
    float w = *load(x, "ce", "weight", 1, NULL), *g = zeros(x, n);
    float loss = pk_ce_loss(x->c, g, logits, lab, P, K, v[2], w);
    expect(x, "ce", "loss", &loss, 1, TOL_FWD);
    expect(x, "ce", "dlogits", g, n, TOL_BWD);

    static const char *const regs[3] = {"kd", "smoothl1", "mse"};
    for (int r = 0; r < 3; r++) {
        const char *cs = regs[r];
        cfg_ints(x, cs, v, 2);
        P = v[0], K = v[1], n = (size_t)P * K;
        float *s = load(x, cs, "s", n, NULL), *t = load(x, cs, "t", n, NULL);
        uint8_t *mask = to_u8(x, load(x, cs, "mask", (size_t)P, NULL), (size_t)P);
        w = *load(x, cs, "weight", 1, NULL);
        g = zeros(x, n);
        if (r == 0)
            loss = pk_kd_loss(x->c, g, s, t, mask, P, K, *load(x, cs, "T", 1, NULL), w);
        else if (r == 1)
            loss = pk_smoothl1_loss(x->c, g, s, t, mask, P, K, w);
        else
            loss = pk_mse_loss(x->c, g, s, t, mask, P, K, w);
        expect(x, cs, "loss", &loss, 1, TOL_FWD);
        expect(x, cs, "ds", g, n, TOL_BWD);
    }
}

static void run_sgd(fixture *x)
{
    int v[8];
    cfg_ints(x, "sgd", v, 8);
    size_t total = (size_t)v[0];
    pk_param_group groups[2] = {{(size_t)v[1], (size_t)v[2], (float)v[3]},
                                {(size_t)v[4], (size_t)v[5], (float)v[6]}};
    long max_it = v[7];
    float *hy = load(x, "sgd", "hyper", 4, NULL); /* base lr, power, momentum, wd */
    float *p = load(x, "sgd", "p0", total, NULL), *buf = zeros(x, total);
    char t[8];
    for (int it = 0; it < 3; it++) {
        float lr = pk_poly_lr(hy[0], it, max_it, hy[1]);
        snprintf(t, sizeof t, "lr%d", it);
        expect(x, "sgd", t, &lr, 1, TOL_SGD);
        snprintf(t, sizeof t, "g%d", it);
        const float *g = load(x, "sgd", t, total, NULL);
        pk_sgd_step(x->c, p, buf, g, groups, 2, lr, hy[2], hy[3]);
        snprintf(t, sizeof t, "p%d", it + 1);
        expect(x, "sgd", t, p, total, TOL_SGD);
    }
    expect(x, "sgd", "buf3", buf, total, TOL_SGD);
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "tests/fixtures/ops.safetensors";
    pk_st_file *f = NULL;
    pk_err e = {0};
    if (pk_st_open(&f, path, &e) != PK_OK) {
        fprintf(stderr, "test_parity_ops: %s\n", e.msg);
        return 1;
    }
    fixture x = {.f = f, .c = pk_test_ctx(0)};
    char cs[32];
    for (int i = 0; i < 100; i++) {
        snprintf(cs, sizeof cs, "conv%d", i);
        if (!has(&x, cs))
            break;
        run_conv(&x, cs);
        arena_free(&x.mem);
    }
    run_bn(&x);
    arena_free(&x.mem);
    run_relu_add(&x);
    arena_free(&x.mem);
    for (int i = 0; i < 100; i++) {
        snprintf(cs, sizeof cs, "maxpool%d", i);
        if (!has(&x, cs))
            break;
        run_maxpool(&x, cs);
        arena_free(&x.mem);
    }
    static const int bins[4] = {1, 2, 3, 6};
    for (int i = 0; i < 4; i++) {
        snprintf(cs, sizeof cs, "adapool%d", bins[i]);
        run_adapool(&x, cs);
        arena_free(&x.mem);
    }
    for (int i = 0; i < 100; i++) {
        snprintf(cs, sizeof cs, "resize%d", i);
        if (!has(&x, cs))
            break;
        run_resize(&x, cs);
        arena_free(&x.mem);
    }
    run_concat(&x);
    arena_free(&x.mem);
    run_dropout(&x, "dropout");
    arena_free(&x.mem);
    run_dropout(&x, "dropout_p0");
    arena_free(&x.mem);
    run_losses(&x);
    arena_free(&x.mem);
    run_sgd(&x);
    arena_free(&x.mem);

    /* a truncated run (cases silently missing) must not pass */
    /* conv 6x(y,dx,dw)+2 db, bn 8+1, relu+add 4, maxpool 2x2, adapool 4x2,
     * resize 7x2, concat 4, dropout 2x3, losses 4x2, sgd 7 */
    int want_checks = 6 * 3 + 2 + 8 + 1 + 4 + 2 * 2 + 4 * 2 + 7 * 2 + 4 + 2 * 3 + 4 * 2 + 7;
    if (x.checks < want_checks) {
        printf("  FAIL only %d of %d comparisons ran\n", x.checks, want_checks);
        x.fails++;
    }
    printf("test_parity_ops: %d comparisons, %d failure(s)\n", x.checks, x.fails);
    pk_ctx_destroy(x.c);
    pk_st_close(f);
    return x.fails != 0;
}
