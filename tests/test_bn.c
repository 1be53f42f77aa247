/* Batch norm over [P, C]: training forward (batch statistics, running-stat
 * update with unbiased variance), eval forward, backward, against double
 * references and finite differences; accumulation of dgamma/dbeta, dx
 * aliasing dy, accuracy at P = 500k with a large mean, and bitwise equal
 * results for 1 and 2 threads. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ops/ops.h"
#include "support.h"

#define EPS 1e-5f
#define MOM 0.1f

typedef struct ref_stats {
    double *mean, *var; /* biased */
} ref_stats;

static void ref_stats_of(ref_stats *r, const float *x, long P, int C)
{
    r->mean = calloc((size_t)C, sizeof(double));
    r->var = calloc((size_t)C, sizeof(double));
    for (int c = 0; c < C; c++) {
        double s = 0, q = 0;
        for (long p = 0; p < P; p++)
            s += x[p * C + c];
        double m = s / P;
        for (long p = 0; p < P; p++)
            q += (x[p * C + c] - m) * (x[p * C + c] - m);
        r->mean[c] = m;
        r->var[c] = q / P;
    }
}

static void ref_backward(float *dx, float *dg, float *db, const float *dy, const float *x,
                         const float *gamma, const ref_stats *r, long P, int C)
{
    for (int c = 0; c < C; c++) {
        double rstd = 1.0 / sqrt(r->var[c] + EPS), sdy = 0, sdyx = 0;
        for (long p = 0; p < P; p++) {
            double xh = (x[p * C + c] - r->mean[c]) * rstd;
            sdy += dy[p * C + c];
            sdyx += dy[p * C + c] * xh;
        }
        dg[c] = (float)sdyx;
        db[c] = (float)sdy;
        for (long p = 0; p < P; p++) {
            double xh = (x[p * C + c] - r->mean[c]) * rstd;
            dx[p * C + c] = (float)(gamma[c] * rstd * (dy[p * C + c] - sdy / P - xh * sdyx / P));
        }
    }
}

typedef struct bn_case {
    pk_ctx *c;
    long P;
    int C;
    float *x, *y, *dy, *gamma, *beta, *rm, *rv, *mean, *rstd;
} bn_case;

static double fd_loss(void *user, const float *unused)
{
    (void)unused;
    bn_case *t = user;
    /* Running stats are not part of the loss: update scratch copies. */
    float rm[64], rv[64];
    memcpy(rm, t->rm, (size_t)t->C * 4);
    memcpy(rv, t->rv, (size_t)t->C * 4);
    pk_bn_forward_train(t->c, t->y, t->mean, t->rstd, t->x, t->gamma, t->beta, rm, rv, t->P,
                        t->C, MOM, EPS);
    double s = 0;
    for (long i = 0; i < t->P * t->C; i++)
        s += (double)t->y[i] * t->dy[i];
    return s;
}

static int main_checks(pk_ctx *c, long P, int C, const char *name)
{
    int fails = 0;
    size_t n = (size_t)P * C;
    float *x = malloc(n * 4), *y = malloc(n * 4), *dy = malloc(n * 4), *dx = malloc(n * 4);
    float *want = malloc(n * 4), *g = malloc((size_t)C * 4), *b = malloc((size_t)C * 4);
    float *rm = malloc((size_t)C * 4), *rv = malloc((size_t)C * 4), *m = malloc((size_t)C * 4);
    float *rs = malloc((size_t)C * 4), *dg = malloc((size_t)C * 4), *dbt = malloc((size_t)C * 4);
    float *wg = malloc((size_t)C * 4), *wb = malloc((size_t)C * 4), *tmp = malloc((size_t)C * 4);
    pk_test_fill(x, n, 1, 2.0f);
    for (size_t i = 0; i < n; i++) /* per-channel offsets and scales */
        x[i] = x[i] * (1.0f + (float)(i % C) * 0.1f) + (float)(i % C) * 0.5f - 3.0f;
    pk_test_fill(dy, n, 2, 1.0f);
    pk_test_fill(g, (size_t)C, 3, 1.0f);
    pk_test_fill(b, (size_t)C, 4, 1.0f);
    pk_test_fill(rm, (size_t)C, 5, 0.5f);
    for (int i = 0; i < C; i++)
        rv[i] = 1.0f + 0.25f * (float)i / C;
    ref_stats r;
    ref_stats_of(&r, x, P, C);
    char what[128];

    /* running stats: new = 0.9 old + 0.1 batch, variance unbiased */
    float *wrm = malloc((size_t)C * 4), *wrv = malloc((size_t)C * 4);
    for (int i = 0; i < C; i++) {
        wrm[i] = (float)(0.9 * rm[i] + 0.1 * r.mean[i]);
        wrv[i] = (float)(0.9 * rv[i] + 0.1 * r.var[i] * P / (P - 1));
    }
    pk_bn_forward_train(c, y, m, rs, x, g, b, rm, rv, P, C, MOM, EPS);
    for (size_t i = 0; i < n; i++) {
        int ch = (int)(i % C);
        want[i] = (float)((x[i] - r.mean[ch]) / sqrt(r.var[ch] + EPS) * g[ch] + b[ch]);
    }
    snprintf(what, sizeof what, "%s train y", name);
    fails += pk_check_close(what, y, want, n, 1e-5);
    for (int i = 0; i < C; i++)
        tmp[i] = (float)r.mean[i];
    snprintf(what, sizeof what, "%s save_mean", name);
    fails += pk_check_close(what, m, tmp, (size_t)C, 1e-6);
    for (int i = 0; i < C; i++)
        tmp[i] = (float)(1.0 / sqrt(r.var[i] + EPS));
    snprintf(what, sizeof what, "%s save_rstd", name);
    fails += pk_check_close(what, rs, tmp, (size_t)C, 1e-6);
    snprintf(what, sizeof what, "%s running_mean", name);
    fails += pk_check_close(what, rm, wrm, (size_t)C, 1e-6);
    snprintf(what, sizeof what, "%s running_var (unbiased)", name);
    fails += pk_check_close(what, rv, wrv, (size_t)C, 1e-6);

    /* eval with the updated running stats */
    pk_bn_forward_eval(c, y, x, g, b, rm, rv, P, C, EPS);
    for (size_t i = 0; i < n; i++) {
        int ch = (int)(i % C);
        want[i] = (float)((x[i] - (double)rm[ch]) / sqrt((double)rv[ch] + EPS) * g[ch] + b[ch]);
    }
    snprintf(what, sizeof what, "%s eval y", name);
    fails += pk_check_close(what, y, want, n, 1e-5);

    /* backward: dgamma/dbeta accumulate onto existing values */
    ref_backward(want, wg, wb, dy, x, g, &r, P, C);
    pk_test_fill(dg, (size_t)C, 6, 1.0f);
    pk_test_fill(dbt, (size_t)C, 7, 1.0f);
    for (int i = 0; i < C; i++) {
        wg[i] += dg[i];
        wb[i] += dbt[i];
    }
    memset(dx, 0xff, n * 4);
    pk_bn_backward(c, dx, dg, dbt, dy, x, m, rs, g, P, C);
    snprintf(what, sizeof what, "%s dx", name);
    fails += pk_check_close(what, dx, want, n, 1e-4);
    snprintf(what, sizeof what, "%s dgamma (+=)", name);
    fails += pk_check_close(what, dg, wg, (size_t)C, 1e-5);
    snprintf(what, sizeof what, "%s dbeta (+=)", name);
    fails += pk_check_close(what, dbt, wb, (size_t)C, 1e-5);

    /* fused BN + ReLU (train and eval) == BN then ReLU, bitwise, in place too;
     * the training one updates the running stats like the plain one */
    float *fy = malloc(n * 4), *frm = malloc((size_t)C * 4), *frv = malloc((size_t)C * 4);
    float *fm = malloc((size_t)C * 4), *frs = malloc((size_t)C * 4);
    for (int mode = 0; mode < 2; mode++) {
        memcpy(frm, rm, (size_t)C * 4), memcpy(frv, rv, (size_t)C * 4);
        if (mode == 0) {
            pk_bn_forward_train(c, want, fm, frs, x, g, b, frm, frv, P, C, MOM, EPS);
            memcpy(frm, rm, (size_t)C * 4), memcpy(frv, rv, (size_t)C * 4);
            memcpy(fy, x, n * 4);
            pk_bn_relu_forward_train(c, fy, fm, frs, fy, g, b, frm, frv, P, C, MOM, EPS);
        } else {
            pk_bn_forward_eval(c, want, x, g, b, rm, rv, P, C, EPS);
            memcpy(fy, x, n * 4);
            pk_bn_relu_forward_eval(c, fy, fy, g, b, rm, rv, P, C, EPS);
        }
        pk_relu_forward(c, want, want, n);
        snprintf(what, sizeof what, "%s %s bn+relu fused, in place", name,
                 mode ? "eval" : "train");
        fails += pk_check_close(what, fy, want, n, 0);
    }
    free(fy), free(frm), free(frv), free(fm), free(frs);

    /* dx may alias dy */
    memcpy(y, dy, n * 4);
    pk_bn_backward(c, y, dg, dbt, y, x, m, rs, g, P, C);
    snprintf(what, sizeof what, "%s dx in place", name);
    fails += pk_check_close(what, y, dx, n, 0);

    /* fused ReLU + BN backward == ReLU's backward then BN's, bitwise (dx,
     * dgamma, dbeta), also with dx over dy or over the ReLU's output; the
     * ReLU output is the BN output of x, so about half the pixels pass */
    float *ry = malloc(n * 4), *rdy = malloc(n * 4), *fdx = malloc(n * 4), *ty = malloc(n * 4);
    float *ug = calloc((size_t)C, 4), *ub = calloc((size_t)C, 4);
    float *fg = calloc((size_t)C, 4), *fb = calloc((size_t)C, 4);
    pk_bn_relu_forward_eval(c, ry, x, g, b, rm, rv, P, C, EPS);
    pk_relu_backward(c, rdy, dy, ry, n);
    pk_bn_backward(c, dx, ug, ub, rdy, x, m, rs, g, P, C);
    for (int alias = 0; alias < 3; alias++) {
        memset(fg, 0, (size_t)C * 4), memset(fb, 0, (size_t)C * 4);
        memcpy(rdy, dy, n * 4);
        memcpy(ty, ry, n * 4);
        float *out = alias == 1 ? rdy : alias == 2 ? ty : fdx;
        pk_bn_relu_backward(c, out, fg, fb, rdy, ty, x, m, rs, g, P, C);
        snprintf(what, sizeof what, "%s bn+relu backward fused%s", name,
                 alias == 1 ? ", dx over dy" : alias == 2 ? ", dx over the ReLU output" : "");
        fails += pk_check_close(what, out, dx, n, 0);
        fails += pk_check_close(what, fg, ug, (size_t)C, 0);
        fails += pk_check_close(what, fb, ub, (size_t)C, 0);
    }
    free(ry), free(rdy), free(fdx), free(ty), free(ug), free(ub), free(fg), free(fb);

    free(r.mean), free(r.var), free(wrm), free(wrv);
    float *ps[] = {x, y, dy, dx, want, g, b, rm, rv, m, rs, dg, dbt, wg, wb, tmp};
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++)
        free(ps[i]);
    return fails;
}

static int fd_checks(pk_ctx *c)
{
    enum { P = 13, C = 5 };
    float x[P * C], y[P * C], dy[P * C], dx[P * C], g[C], b[C], rm[C] = {0}, rv[C];
    float m[C], rs[C], dg[C] = {0}, dbt[C] = {0};
    pk_test_fill(x, P * C, 11, 2.0f);
    pk_test_fill(dy, P * C, 12, 1.0f);
    pk_test_fill(g, C, 13, 1.0f);
    pk_test_fill(b, C, 14, 1.0f);
    for (int i = 0; i < C; i++)
        rv[i] = 1;
    bn_case t = {c, P, C, x, y, dy, g, b, rm, rv, m, rs};
    pk_bn_forward_train(c, y, m, rs, x, g, b, rm, rv, P, C, MOM, EPS);
    pk_bn_backward(c, dx, dg, dbt, dy, x, m, rs, g, P, C);
    int fails = 0;
    fails += pk_check_grad("fd dx", fd_loss, &t, x, dx, P * C, 0, 1e-2, 5e-3);
    fails += pk_check_grad("fd dgamma", fd_loss, &t, g, dg, C, 0, 1e-2, 5e-3);
    fails += pk_check_grad("fd dbeta", fd_loss, &t, b, dbt, C, 0, 1e-2, 5e-3);
    return fails;
}

/* P = 500k pixels with mean 100 and std 0.1: naive float sums would lose
 * the variance entirely; 1 and 2 threads must agree bit for bit. */
static int large_checks(void)
{
    enum { C = 32 };
    const long P = 500000;
    size_t n = (size_t)P * C;
    float *x = malloc(n * 4), *a = malloc(n * 4), *b2 = malloc(n * 4), *d = malloc(n * 4);
    float g[C], b[C], rm[C] = {0}, rv[C], m1[C], r1[C], m2[C], r2[C], tmp[C];
    float dg1[C] = {0}, db1[C] = {0}, dg2[C] = {0}, db2[C] = {0};
    pk_test_fill(x, n, 21, 0.17320508f); /* uniform: std 0.1 */
    for (size_t i = 0; i < n; i++)
        x[i] += 100.0f + (float)(i % C);
    for (int i = 0; i < C; i++)
        g[i] = 1, b[i] = 0, rv[i] = 1;
    ref_stats r;
    ref_stats_of(&r, x, P, C);
    int fails = 0;
    pk_ctx *c1 = pk_test_ctx(1), *c2 = pk_test_ctx(2);
    pk_bn_forward_train(c1, a, m1, r1, x, g, b, rm, rv, P, C, MOM, EPS);
    pk_bn_forward_train(c2, b2, m2, r2, x, g, b, rm, rv, P, C, MOM, EPS);
    for (int i = 0; i < C; i++)
        tmp[i] = (float)(1.0 / sqrt(r.var[i] + EPS));
    fails += pk_check_close("P=500k mean 100: rstd", r1, tmp, C, 1e-6);
    for (int i = 0; i < C; i++)
        tmp[i] = (float)r.mean[i];
    fails += pk_check_close("P=500k mean 100: mean", m1, tmp, C, 1e-7);
    int same = !memcmp(a, b2, n * 4) && !memcmp(m1, m2, sizeof m1) && !memcmp(r1, r2, sizeof r1);
    pk_test_fill(d, n, 22, 1.0f); /* dy */
    pk_bn_backward(c1, a, dg1, db1, d, x, m1, r1, g, P, C);
    pk_bn_backward(c2, b2, dg2, db2, d, x, m1, r1, g, P, C);
    same = same && !memcmp(a, b2, n * 4) && !memcmp(dg1, dg2, sizeof dg1) &&
           !memcmp(db1, db2, sizeof db1);
    PK_CHECK(fails, same, "results differ between 1 and 2 threads");
    printf("  %s P=500k: 1 vs 2 threads bitwise equal (fwd, bwd)\n", same ? "ok  " : "FAIL");
    pk_ctx_destroy(c1);
    pk_ctx_destroy(c2);
    free(r.mean), free(r.var);
    free(x), free(a), free(b2), free(d);
    return fails;
}

/* pk_bn_backward_xc (the BN's input as the bf16 precision keeps it, bf16
 * of x - mean) against pk_bn_backward / pk_bn_relu_backward on the fp32 x
 * that copy stands for, mean + xc: they differ only by that addition's
 * rounding, so within 1e-5. Also an error, not a crash, on no CPU. */
static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "test_bn: out of memory\n");
        exit(1);
    }
    return p;
}

static int xc_checks(pk_ctx *c, long P, int C)
{
    int fails = 0;
    size_t n = (size_t)P * C;
    float *x = xmalloc(n * 4), *xr = xmalloc(n * 4), *y = xmalloc(n * 4);
    float *dy = xmalloc(n * 4), *dx[2], *dg[2], *db[2];
    float *g = xmalloc(C * 4), *b = xmalloc(C * 4), *sm = xmalloc(C * 4),
          *sr = xmalloc(C * 4), *rm = xmalloc(C * 4), *rv = xmalloc(C * 4);
    uint16_t *xc = xmalloc(n * 2);
    pk_test_fill(x, n, 81, 3.0f);
    for (size_t i = 0; i < n; i++)
        x[i] += 5.0f; /* a mean far from 0, as the centring is for */
    pk_test_fill(dy, n, 82, 1.0f);
    pk_test_fill(g, C, 83, 1.0f);
    pk_test_fill(b, C, 84, 1.0f);
    for (int k = 0; k < 2; k++) {
        dx[k] = xmalloc(n * 4);
        dg[k] = xmalloc(C * 4);
        db[k] = xmalloc(C * 4);
    }
    for (int relu = 0; relu < 2; relu++) {
        (relu ? pk_bn_relu_forward_train : pk_bn_forward_train)(c, y, sm, sr, x, g, b, rm, rv, P,
                                                                C, 0.1f, 1e-5f);
        pk_f32_to_bf16_centered(c, xc, x, sm, P, C);
        pk_f32_from_bf16_centered(c, xr, xc, sm, P, C);
        for (int k = 0; k < 2; k++) {
            memset(dg[k], 0, C * 4);
            memset(db[k], 0, C * 4);
        }
        if (relu)
            pk_bn_relu_backward(c, dx[0], dg[0], db[0], dy, y, xr, sm, sr, g, P, C);
        else
            pk_bn_backward(c, dx[0], dg[0], db[0], dy, xr, sm, sr, g, P, C);
        pk_err e = {0};
        PK_CHECK(fails,
                 pk_bn_backward_xc(c, dx[1], dg[1], db[1], dy, relu ? y : NULL, xc, sm, sr, g, P,
                                   C, &e) == PK_OK,
                 "pk_bn_backward_xc: %s", e.msg);
        char what[96];
        snprintf(what, sizeof what, "bn%s backward from the bf16 copy P=%ld C=%d dx",
                 relu ? "+relu" : "", P, C);
        fails += pk_check_close(what, dx[1], dx[0], n, 1e-5);
        snprintf(what, sizeof what, "bn%s backward from the bf16 copy dgamma", relu ? "+relu" : "");
        fails += pk_check_close(what, dg[1], dg[0], C, 1e-5);
        snprintf(what, sizeof what, "bn%s backward from the bf16 copy dbeta", relu ? "+relu" : "");
        fails += pk_check_close(what, db[1], db[0], C, 1e-6);
    }
    for (int k = 0; k < 2; k++)
        free(dx[k]), free(dg[k]), free(db[k]);
    free(x), free(xr), free(y), free(dy), free(g), free(b), free(sm), free(sr), free(rm),
        free(rv), free(xc);
    return fails;
}

int main(void)
{
    int fails = 0;
    pk_ctx *c = pk_test_ctx(2);
    fails += xc_checks(c, 37, 7);
    fails += xc_checks(c, 3000, 70);
    fails += main_checks(c, 37, 7, "P=37 C=7");
    fails += main_checks(c, 3000, 70, "P=3000 C=70"); /* threaded, ragged split */
    fails += main_checks(c, 300, 600, "P=300 C=600"); /* two channel blocks */
    fails += fd_checks(c);
    pk_ctx_destroy(c);
    fails += large_checks();
    printf("test_bn: %s\n", fails ? "FAILED" : "passed");
    return fails ? 1 : 0;
}
