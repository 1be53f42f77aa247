/* Op-level throughput (make bench-ops). Prints one "NAME VALUE UNIT" line
 * per figure, each the median over --reps repetitions after one warm-up:
 *   sgemm_<M>                oneDNN's dnnl_sgemm on an MxMxM product, same
 *                            thread count: the reference figure;
 *   conv_<shape>_{fwd,bwd_data,bwd_weights,fwdbwd}  GFLOP/s at PSPNet layer
 *                            shapes, batch 2 (fwdbwd = 3 x forward FLOPs over
 *                            the sum of the three medians);
 *   conv_<shape>_sgemm       sgemm timed in the same repetitions as that
 *                            shape (interleaved, so both see the same load
 *                            on a shared machine);
 *   conv_<shape>_ratio_sgemm fwdbwd / conv_<shape>_sgemm (the acceptance
 *                            asks >= 0.85);
 *   these with oneDNN's direct algorithm (PSPKD_CONV=direct, PyTorch's), and
 *   where the library's default differs (Winograd for wide 3x3 shapes, the
 *   dilated ones through their phases) the same again as
 *   conv_<shape>_default_*, GFLOP/s counted as the direct algorithm's FLOPs
 *   (the time a user sees);
 *   bn_train_fwdbwd, relu_fwd, resize_x8_fwd  GB/s of compulsory traffic
 *                            (each tensor read or written once per pass). */
#include <getopt.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <dnnl.h>

#include "bench_util.h"
#include "ops/conv_phase.h"
#include "ops/ops.h"
#include "core/rng.h"

typedef struct conv_shape {
    const char *name;
    int h, ci, co, k, pad, dil;
} conv_shape;

static const conv_shape shapes[] = {
    {"l4_512_d4_29", 29, 512, 512, 3, 4, 4},
    {"l4_512_d4_60", 60, 512, 512, 3, 4, 4},
    {"l1_64_57", 57, 64, 64, 3, 1, 1},
    {"l3_256_d2_60", 60, 256, 256, 3, 2, 2},
    {"1x1_1024_256_60", 60, 1024, 256, 1, 0, 1},
};
#define NSHAPES ((int)(sizeof shapes / sizeof *shapes))
#define BATCH 2

static float *alloc_filled(pk_ctx *c, size_t n, unsigned long long seed)
{
    float *p = pk_dev_alloc(c, n * sizeof *p);
    if (!p) {
        fprintf(stderr, "bench_ops: out of memory (%zu floats)\n", n);
        exit(1);
    }
    pk_rng r = pk_rng_seed(seed);
    for (size_t i = 0; i < n; i++)
        p[i] = pk_rng_uniform(&r, -1.0f, 1.0f);
    return p;
}

static void die(const char *what, const pk_err *e)
{
    fprintf(stderr, "bench_ops: %s: %s\n", what, e->msg);
    exit(1);
}

typedef struct gemm_buf {
    int m;
    float *a, *b, *out;
} gemm_buf;

static gemm_buf gemm_make(pk_ctx *c, int m)
{
    size_t n = (size_t)m * m;
    return (gemm_buf){m, alloc_filled(c, n, 1), alloc_filled(c, n, 2), alloc_filled(c, n, 3)};
}

static void gemm_free(pk_ctx *c, gemm_buf *g)
{
    pk_dev_free(c, g->a), pk_dev_free(c, g->b), pk_dev_free(c, g->out);
}

/* Seconds for one C = A B. */
static double time_sgemm(pk_ctx *c, const gemm_buf *g)
{
    /* dnnl_sgemm sizes its OpenMP team from omp_get_max_threads(). */
    omp_set_num_threads(pk_ctx_threads(c));
    double t0 = now();
    if (dnnl_sgemm('N', 'N', g->m, g->m, g->m, 1.0f, g->a, g->m, g->b, g->m, 0.0f, g->out,
                   g->m) != dnnl_success) {
        fprintf(stderr, "bench_ops: dnnl_sgemm failed\n");
        exit(1);
    }
    return now() - t0;
}

static double gemm_gflops(const gemm_buf *g, double seconds)
{
    return 2.0 * g->m * g->m * (double)g->m / seconds * 1e-9;
}

static double bench_sgemm(pk_ctx *c, const gemm_buf *g, int reps)
{
    double *t = malloc(sizeof(double) * (size_t)(reps + 1));
    for (int r = 0; r <= reps; r++)
        t[r] = time_sgemm(c, g);
    double gf = gemm_gflops(g, median(t + 1, reps));
    free(t);
    return gf;
}

static void bench_conv(pk_ctx *c, const conv_shape *s, const char *tag, int reps,
                       const gemm_buf *g)
{
    pk_conv_desc d = pk_conv_desc_make(BATCH, s->h, s->h, s->ci, s->co, s->k, 1, s->pad, s->dil, 0);
    size_t nx = (size_t)d.n * d.h * d.w * d.ci, ny = (size_t)d.n * d.ho * d.wo * d.co;
    size_t nw = (size_t)d.co * d.k * d.k * d.ci;
    float *x = alloc_filled(c, nx, 10), *w = alloc_filled(c, nw, 11), *y = alloc_filled(c, ny, 12);
    float *dy = alloc_filled(c, ny, 13), *dx = alloc_filled(c, nx, 14);
    float *dw = alloc_filled(c, nw, 15);
    double *t[4];
    for (int k = 0; k < 4; k++)
        t[k] = malloc(sizeof(double) * (size_t)(reps + 1));
    pk_err e = {0};
    for (int r = 0; r <= reps; r++) { /* r == 0: warm-up, builds the primitives */
        double t0 = now();
        if (pk_conv2d_forward(c, y, x, w, NULL, &d, &e) != PK_OK)
            die(s->name, &e);
        double t1 = now();
        if (pk_conv2d_backward(c, dx, NULL, NULL, dy, x, w, &d, &e) != PK_OK)
            die(s->name, &e);
        double t2 = now();
        if (pk_conv2d_backward(c, NULL, dw, NULL, dy, x, w, &d, &e) != PK_OK)
            die(s->name, &e);
        double t3 = now();
        t[0][r] = t1 - t0, t[1][r] = t2 - t1, t[2][r] = t3 - t2;
        t[3][r] = time_sgemm(c, g);
    }
    static const char *kinds[3] = {"fwd", "bwd_data", "bwd_weights"};
    double f = pk_conv_flops(&d), total = 0;
    for (int k = 0; k < 3; k++) {
        double m = median(t[k] + 1, reps);
        total += m;
        printf("conv_%s%s_%s %.1f GFLOP/s\n", s->name, tag, kinds[k], f / m * 1e-9);
        free(t[k]);
    }
    double fb = 3 * f / total * 1e-9, sg = gemm_gflops(g, median(t[3] + 1, reps));
    free(t[3]);
    printf("conv_%s%s_fwdbwd %.1f GFLOP/s\n", s->name, tag, fb);
    printf("conv_%s%s_sgemm %.1f GFLOP/s\n", s->name, tag, sg);
    printf("conv_%s%s_ratio_sgemm %.2f x\n", s->name, tag, fb / sg);
    fflush(stdout);
    float *ps[] = {x, w, y, dy, dx, dw};
    for (int i = 0; i < 6; i++)
        pk_dev_free(c, ps[i]);
}

/* BN on a layer-4 sized tensor [2, 60, 60, 512]: forward reads x and writes
 * y, backward reads x and dy and writes dx: 5 tensors of traffic. */
static void bench_bn(pk_ctx *c, int reps)
{
    const long P = BATCH * 60L * 60;
    const int C = 512;
    size_t n = (size_t)P * C;
    float *x = alloc_filled(c, n, 20), *y = alloc_filled(c, n, 21), *dy = alloc_filled(c, n, 22);
    float *dx = alloc_filled(c, n, 23), *g = alloc_filled(c, C, 24), *b = alloc_filled(c, C, 25);
    float *rm = alloc_filled(c, C, 26), *rv = alloc_filled(c, C, 27), *m = alloc_filled(c, C, 28);
    float *rs = alloc_filled(c, C, 29), *dg = alloc_filled(c, C, 30), *db = alloc_filled(c, C, 31);
    for (int i = 0; i < C; i++)
        rv[i] = 1.0f;
    double *t = malloc(sizeof(double) * (size_t)(reps + 1));
    for (int r = 0; r <= reps; r++) {
        double t0 = now();
        pk_bn_forward_train(c, y, m, rs, x, g, b, rm, rv, P, C, 0.1f, 1e-5f);
        pk_bn_backward(c, dx, dg, db, dy, x, m, rs, g, P, C);
        t[r] = now() - t0;
    }
    printf("bn_train_fwdbwd %.1f GB/s\n", 5.0 * n * sizeof(float) / median(t + 1, reps) * 1e-9);
    free(t);
    float *ps[] = {x, y, dy, dx, g, b, rm, rv, m, rs, dg, db};
    for (int i = 0; i < 12; i++)
        pk_dev_free(c, ps[i]);
}

/* ReLU on a layer-1 sized tensor [2, 119, 119, 256]: read x, write y. */
static void bench_relu(pk_ctx *c, int reps)
{
    size_t n = (size_t)BATCH * 119 * 119 * 256;
    float *x = alloc_filled(c, n, 40), *y = alloc_filled(c, n, 41);
    double *t = malloc(sizeof(double) * (size_t)(reps + 1));
    for (int r = 0; r <= reps; r++) {
        double t0 = now();
        pk_relu_forward(c, y, x, n);
        t[r] = now() - t0;
    }
    printf("relu_fwd %.1f GB/s\n", 2.0 * n * sizeof(float) / median(t + 1, reps) * 1e-9);
    free(t);
    pk_dev_free(c, x), pk_dev_free(c, y);
}

/* The logits upsample: 21 channels, 60x60 -> 473x473 (x8, align_corners). */
static void bench_resize(pk_ctx *c, int reps)
{
    size_t nx = (size_t)BATCH * 60 * 60 * 21, ny = (size_t)BATCH * 473 * 473 * 21;
    float *x = alloc_filled(c, nx, 50), *y = alloc_filled(c, ny, 51);
    double *t = malloc(sizeof(double) * (size_t)(reps + 1));
    for (int r = 0; r <= reps; r++) {
        double t0 = now();
        pk_resize_forward(c, y, x, BATCH, 60, 60, 21, 473, 473);
        t[r] = now() - t0;
    }
    printf("resize_x8_fwd %.1f GB/s\n", (double)(nx + ny) * sizeof(float) / median(t + 1, reps) * 1e-9);
    free(t);
    pk_dev_free(c, x), pk_dev_free(c, y);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_ops [--reps N] [--threads N] [--gemm M]\n"
               "Median GFLOP/s of conv fwd / bwd-data / bwd-weights at PSPNet shapes\n"
               "(batch 2) next to oneDNN's sgemm, and GB/s of BN, ReLU and resize.\n");
}

int main(int argc, char **argv)
{
    int reps = 9, threads = 0, gemm = 2048;
    static const struct option longopts[] = {{"reps", required_argument, 0, 'r'},
                                             {"threads", required_argument, 0, 't'},
                                             {"gemm", required_argument, 0, 'g'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    for (int o; (o = getopt_long(argc, argv, "r:t:g:h", longopts, NULL)) != -1;) {
        switch (o) {
        case 'r': reps = atoi(optarg); break;
        case 't': threads = atoi(optarg); break;
        case 'g': gemm = atoi(optarg); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (reps < 1 || threads < 0 || gemm < 64 || optind != argc) {
        usage(stderr);
        return 2;
    }
    pk_ctx *c = NULL, *cd = NULL;
    pk_err e = {0};
    pk_ctx_opts o = {.device = PK_DEV_CPU, .threads = threads};
    if (pk_ctx_create(&c, &o, &e) != PK_OK)
        die("context", &e);
    o.conv_algo = PK_CONV_DIRECT;
    if (pk_ctx_create(&cd, &o, &e) != PK_OK)
        die("context", &e);
    printf("threads %d count\n", pk_ctx_threads(c));
    gemm_buf g = gemm_make(c, gemm);
    printf("sgemm_%d %.1f GFLOP/s\n", gemm, bench_sgemm(c, &g, reps));
    fflush(stdout);
    for (int i = 0; i < NSHAPES; i++) {
        const conv_shape *sh = &shapes[i];
        bench_conv(cd, sh, "", reps, &g);
        pk_conv_desc d =
            pk_conv_desc_make(BATCH, sh->h, sh->h, sh->ci, sh->co, sh->k, 1, sh->pad, sh->dil, 0);
        int phases = pk_conv_phase_eligible(c, &d), wino = pk_conv2d_winograd(c, &d, &e) == 1;
        if (phases || wino) {
            printf("# conv_%s_default: %s\n", sh->name,
                   phases ? "through its phases, Winograd" : "Winograd");
            bench_conv(c, sh, "_default", reps, &g);
        }
    }
    pk_ctx_destroy(cd);
    gemm_free(c, &g);
    bench_bn(c, reps);
    bench_relu(c, reps);
    bench_resize(c, reps);
    pk_ctx_destroy(c);
    return 0;
}
