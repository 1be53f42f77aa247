#include "support.h"

#include <math.h>
#include <stdlib.h>
#include "core/rng.h"

pk_ctx *pk_test_ctx(int threads)
{
    pk_ctx *c = NULL;
    pk_err e = {0};
    pk_ctx_opts o = {.device = PK_DEV_CPU, .threads = threads};
    if (pk_ctx_create(&c, &o, &e) != PK_OK) {
        fprintf(stderr, "test: cannot create context: %s\n", e.msg);
        exit(1);
    }
    return c;
}

double pk_norm_err(const float *got, const float *want, size_t n)
{
    double maxd = 0, maxw = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (!(d <= maxd)) /* also catches NaN */
            maxd = isnan(d) ? INFINITY : d;
        if (fabs(want[i]) > maxw)
            maxw = fabs(want[i]);
    }
    return maxd / (maxw > 1e-12 ? maxw : 1e-12);
}

int pk_check_close(const char *what, const float *got, const float *want, size_t n,
                   double tol)
{
    double err = pk_norm_err(got, want, n);
    int bad = !(err <= tol);
    printf("  %s %s: err=%.3g (tol %.1g, n=%zu)\n", bad ? "FAIL" : "ok  ", what, err, tol, n);
    return bad;
}

int pk_check_grad(const char *what, pk_scalar_fn f, void *user, float *x, const float *g,
                  size_t n, int samples, double eps, double tol)
{
    size_t count = (samples <= 0 || (size_t)samples >= n) ? n : (size_t)samples;
    float *num = malloc(count * sizeof *num), *ana = malloc(count * sizeof *ana);
    if (!num || !ana) {
        free(num);
        free(ana);
        return 1;
    }
    for (size_t s = 0; s < count; s++) {
        size_t i = count == n ? s : (size_t)((double)s * (double)(n - 1) / (double)(count - 1 ? count - 1 : 1));
        float keep = x[i];
        x[i] = (float)(keep + eps);
        double fp = f(user, x);
        x[i] = (float)(keep - eps);
        double fm = f(user, x);
        x[i] = keep;
        num[s] = (float)((fp - fm) / (2 * eps));
        ana[s] = g[i];
    }
    int bad = pk_check_close(what, ana, num, count, tol);
    free(num);
    free(ana);
    return bad;
}

void pk_test_fill(float *x, size_t n, unsigned long long seed, float a)
{
    pk_rng r = pk_rng_seed(seed);
    for (size_t i = 0; i < n; i++)
        x[i] = pk_rng_uniform(&r, -a, a);
}
