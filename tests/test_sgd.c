/* SGD: three steps against PyTorch's update rule written out in double
 * (buf_1 = d_1, buf_t = m*buf_{t-1} + d_t, p -= lr*mult*buf), two groups with
 * LR multipliers 1 and 10, a gap in the buffer that belongs to no group,
 * 1 vs 2 threads; and the poly schedule. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "ops/ops.h"
#include "support.h"

enum { N = 50000 }; /* group 1 is above the parallel threshold */

static int test_sgd(pk_ctx *c1, pk_ctx *c2)
{
    int fails = 0;
    const pk_param_group groups[2] = {{0, 100, 1.0f}, {110, N - 110, 10.0f}};
    const float momentum = 0.9f, wd = 1e-4f, lrs[3] = {0.01f, 0.009f, 0.008f};
    float *p = malloc(N * sizeof *p), *buf = calloc(N, sizeof *buf), *g = malloc(N * sizeof *g),
          *p2 = malloc(N * sizeof *p2), *buf2 = calloc(N, sizeof *buf2),
          *want = malloc(N * sizeof *want), *wantb = malloc(N * sizeof *wantb);
    double *rp = malloc(N * sizeof *rp), *rb = calloc(N, sizeof *rb);
    if (!p || !buf || !g || !p2 || !buf2 || !want || !wantb || !rp || !rb)
        return 1;
    pk_test_fill(p, N, 1, 1.0f);
    memcpy(p2, p, N * sizeof *p);
    for (int i = 0; i < N; i++)
        rp[i] = p[i];
    for (int step = 0; step < 3; step++) {
        pk_test_fill(g, N, 10 + (unsigned long long)step, 0.5f);
        pk_sgd_step(c1, p, buf, g, groups, 2, lrs[step], momentum, wd);
        pk_sgd_step(c2, p2, buf2, g, groups, 2, lrs[step], momentum, wd);
        for (int i = 0; i < N; i++) {
            double mult = i < 100 ? 1.0 : i >= 110 ? 10.0 : 0.0;
            if (mult == 0.0)
                continue; /* not in any group: never touched */
            double d = g[i] + (double)wd * rp[i];
            rb[i] = step == 0 ? d : (double)momentum * rb[i] + d;
            rp[i] -= (double)lrs[step] * mult * rb[i];
        }
    }
    for (int i = 0; i < N; i++) {
        want[i] = (float)rp[i];
        wantb[i] = (float)rb[i];
    }
    fails += pk_check_close("SGD 3 steps params vs double reference", p, want, N, 1e-5);
    fails += pk_check_close("SGD 3 steps momentum vs double reference", buf, wantb, N, 1e-5);
    PK_CHECK(fails, memcmp(p, p2, N * sizeof *p) == 0, "SGD differs between 1 and 2 threads");
    float gap0[10] = {0};
    fails += pk_check_close("SGD leaves the ungrouped gap alone (buffer)", buf + 100, gap0, 10,
                            0.0);
    pk_test_fill(want, N, 1, 1.0f);
    fails += pk_check_close("SGD leaves the ungrouped gap alone (params)", p + 100, want + 100,
                            10, 0.0);
    /* first step alone is p - lr*(g + wd*p) */
    float q[4] = {1.0f, -2.0f, 0.5f, 3.0f}, qb[4] = {0}, qg[4] = {0.1f, 0.2f, -0.3f, 0.0f};
    float qw[4];
    for (int i = 0; i < 4; i++)
        qw[i] = q[i] - 0.1f * (qg[i] + 0.01f * q[i]);
    pk_param_group one = {0, 4, 1.0f};
    pk_sgd_step(c1, q, qb, qg, &one, 1, 0.1f, 0.9f, 0.01f);
    fails += pk_check_close("SGD first step = plain decayed step", q, qw, 4, 1e-7);
    free(p), free(buf), free(g), free(p2), free(buf2), free(want), free(wantb), free(rp), free(rb);
    return fails;
}

static int test_poly(void)
{
    int fails = 0;
    float got[4] = {pk_poly_lr(0.01f, 0, 100, 0.9f), pk_poly_lr(0.01f, 50, 100, 0.9f),
                    pk_poly_lr(0.01f, 99, 100, 0.9f), pk_poly_lr(0.01f, 100, 100, 0.9f)};
    float want[4] = {0.01f, (float)(0.01 * pow(0.5, 0.9)), (float)(0.01 * pow(0.01, 0.9)),
                     0.0f};
    fails += pk_check_close("poly LR base*(1-it/max)^0.9", got, want, 4, 1e-7);
    return fails;
}

int main(void)
{
    pk_ctx *c1 = pk_test_ctx(1), *c2 = pk_test_ctx(2);
    int fails = test_sgd(c1, c2) + test_poly();
    pk_ctx_destroy(c1);
    pk_ctx_destroy(c2);
    if (fails)
        printf("test_sgd: %d failure(s)\n", fails);
    return fails != 0;
}
