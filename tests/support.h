/* Shared helpers for the C unit tests (linked into every tests/test_*.c). */
#ifndef PSPKD_TEST_SUPPORT_H
#define PSPKD_TEST_SUPPORT_H

#include <stddef.h>
#include <stdio.h>
#include "core/ctx.h"

/* A CPU context with `threads` threads (0 = default); aborts on failure. */
pk_ctx *pk_test_ctx(int threads);

/* Normalised error max|got-want| / max(max|want|, floor). Prints one line
 * "  ok|FAIL what: err=..." and returns 0 when err <= tol, 1 otherwise. */
int pk_check_close(const char *what, const float *got, const float *want, size_t n,
                   double tol);
double pk_norm_err(const float *got, const float *want, size_t n);

/* Central finite-difference gradient check of a scalar function f(x) at x
 * against analytic grad g, on `samples` evenly spaced coordinates (all when
 * samples <= 0 or >= n). Returns 0 when the normalised error <= tol. */
typedef double (*pk_scalar_fn)(void *user, const float *x);
int pk_check_grad(const char *what, pk_scalar_fn f, void *user, float *x, const float *g,
                  size_t n, int samples, double eps, double tol);

/* Fill with a deterministic uniform [-a, a] sequence from seed. */
void pk_test_fill(float *x, size_t n, unsigned long long seed, float a);

/* The bf16 precision's convolutions against fp32 (normalised max error):
 * direct kernels, and Winograd with bf16 products (test_bf16 derives both;
 * test_conv_fused holds the folded forwards to them too). */
#define BF16_CONV_TOL 1e-2
#define BF16_WINO_TOL 3e-2
/* A bf16 train step against fp32 (the issue's): total loss within
 * BF16_LOSS_TOL relative, cosine of the whole gradient >= BF16_COS_MIN
 * (test_bf16 on the CPU, test_ops_cuda on the GPU). */
#define BF16_LOSS_TOL 1e-2
#define BF16_COS_MIN 0.99

#define PK_CHECK(failures, cond, ...)                                                   \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "  FAIL %s:%d: ", __FILE__, __LINE__);                     \
            fprintf(stderr, __VA_ARGS__);                                              \
            fputc('\n', stderr);                                                       \
            (failures)++;                                                              \
        }                                                                              \
    } while (0)

#endif
