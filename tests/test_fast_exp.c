/* pk_expf_softmax (core/fast_exp.h) against expf: every float in
 * [-87.33, 0] on a dense grid and the edges (within 1 ulp, relative
 * 2^-23; measured 8e-8), 0 below the normal range, NaN for NaN. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include "core/fast_exp.h"
#include "support.h"

#define ULPS 1.0

int main(void)
{
    int fails = 0;
    double worst = 0.0;
    long n = 0;
    /* 2^22 points evenly over the range, then the small magnitudes finer */
    for (long i = 0; i <= (1L << 22); i++, n++) {
        float x = -87.33f * (float)i / (float)(1L << 22);
        double want = exp((double)x), got = pk_expf_softmax(x);
        double rel = fabs(got - want) / want;
        worst = rel > worst ? rel : worst;
    }
    for (float x = -1e-3f; x < 0.0f; x *= 0.5f, n++) {
        double want = exp((double)x), got = pk_expf_softmax(x);
        double rel = fabs(got - want) / want;
        worst = rel > worst ? rel : worst;
        if (x > -1e-30f)
            break;
    }
    double tol = ULPS * FLT_EPSILON;
    PK_CHECK(fails, worst <= tol, "relative error %.3g > %.3g", worst, tol);
    PK_CHECK(fails, pk_expf_softmax(0.0f) == 1.0f, "e^0 = %.9g", pk_expf_softmax(0.0f));
    PK_CHECK(fails, pk_expf_softmax(-100.0f) == 0.0f && pk_expf_softmax(-INFINITY) == 0.0f,
             "below the normal range: %g, %g", pk_expf_softmax(-100.0f),
             pk_expf_softmax(-INFINITY));
    PK_CHECK(fails, isnan(pk_expf_softmax(NAN)), "NaN in, %g out", pk_expf_softmax(NAN));
    printf("  %s pk_expf_softmax vs exp over %ld points in [-87.33, 0]: worst rel. error %.3g "
           "(tol %.3g); 0 below, NaN kept\n",
           fails ? "FAIL" : "ok  ", n, worst, tol);
    return fails ? 1 : 0;
}
