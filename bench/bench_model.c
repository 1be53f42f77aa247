/* Model throughput: median img/s of
 *   r18_train_b2_225  ResNet18 student train step with KD losses (KL on the
 *                     main logits, SmoothL1 between aux logits, fake teacher
 *                     logits), batch 2 at 3x225x225;
 *   r50_infer_b1_473  ResNet50 (deep stem) teacher eval forward, main and aux
 *                     logits at full resolution (what teacher-dump needs),
 *                     batch 1 at 473;
 *   r50_train_b2_225  ResNet50 train step (CE + 0.4 aux CE), batch 2 at 225.
 * Each case prints "NAME VALUE UNIT" lines: img/s, the GFLOP/s that implies
 * (convolution FLOPs from pk_model_flops; a train step counted as 3x the
 * forward), img per CPU-second of all threads (steadier than wall time on a
 * shared machine) and the activation arena per image; in bf16 training
 * also the weight transforms Winograd keeps from forward to backward
 * (NAME_kept, per model, not per image). --profile adds the per-layer
 * profile of the timed iterations. */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "model/pspnet.h"
#include "ops/ops.h"
#include "core/rng.h"
#include "cli/device_opt.h"

typedef struct bench_case {
    const char *name;
    pk_arch arch;
    pk_stem stem;
    int train, kd, n, size;
} bench_case;

static const bench_case cases[] = {
    {"r18_train_b2_225", PK_ARCH_R18, PK_STEM_7X7, 1, 1, 2, 225},
    {"r50_infer_b1_473", PK_ARCH_R50, PK_STEM_DEEP, 0, 0, 1, 473},
    {"r50_train_b2_225", PK_ARCH_R50, PK_STEM_DEEP, 1, 0, 2, 225},
};
#define NCASES ((int)(sizeof cases / sizeof *cases))
#define CLASSES 21

typedef struct opts {
    int warmup, iters, threads, profile, precision;
    const char *only;
} opts;

/* Synthetic inputs: normalised-looking pixels, labels with some ignore
 * pixels, teacher logits of a plausible scale. Host memory: the bench runs
 * on the CPU context. */
typedef struct inputs {
    float *image, *t_main, *t_aux;
    uint8_t *label;
} inputs;

static int make_inputs(inputs *in, const bench_case *bc)
{
    size_t pix = (size_t)bc->n * bc->size * bc->size;
    memset(in, 0, sizeof *in);
    in->image = malloc(pix * 3 * sizeof(float));
    in->label = malloc(pix);
    if (bc->kd) {
        in->t_main = malloc(pix * CLASSES * sizeof(float));
        in->t_aux = malloc(pix * CLASSES * sizeof(float));
    }
    if (!in->image || !in->label || (bc->kd && (!in->t_main || !in->t_aux)))
        return -1;
    pk_rng r = pk_rng_seed(7);
    for (size_t i = 0; i < pix * 3; i++)
        in->image[i] = pk_rng_uniform(&r, -2.0f, 2.0f);
    for (size_t i = 0; i < pix; i++)
        in->label[i] = pk_rng_u01(&r) < 0.05f ? 255 : (uint8_t)pk_rng_below(&r, CLASSES);
    for (size_t i = 0; bc->kd && i < pix * CLASSES; i++) {
        in->t_main[i] = pk_rng_uniform(&r, -4.0f, 4.0f);
        in->t_aux[i] = pk_rng_uniform(&r, -4.0f, 4.0f);
    }
    return 0;
}

static void free_inputs(inputs *in)
{
    free(in->image);
    free(in->label);
    free(in->t_main);
    free(in->t_aux);
}

static int one_iter(pk_model *m, const bench_case *bc, const inputs *in, const pk_train_cfg *t,
                    long iter, float *logits, pk_err *e)
{
    size_t plane = (size_t)bc->n * bc->size * bc->size * CLASSES;
    if (!bc->train)
        return pk_model_infer(m, logits, logits + plane, in->image, bc->n, bc->size, bc->size,
                              1, e);
    pk_batch b = {.n = bc->n, .h = bc->size, .w = bc->size, .image = in->image,
                  .label = in->label, .teacher_main = in->t_main, .teacher_aux = in->t_aux};
    pk_losses l;
    return pk_model_train_step(m, &b, t, iter, &l, e);
}

static int run_case(pk_ctx *c, const bench_case *bc, const opts *o)
{
    pk_err e = {0};
    pk_model *m = NULL;
    size_t kept0 = pk_conv_kept_bytes(c); /* an earlier case's stay in the context */
    pk_model_cfg cfg = {.arch = bc->arch, .stem = bc->stem, .classes = CLASSES, .dropout = 0.1f};
    inputs in;
    float *logits = NULL;
    double *times = calloc(2 * (size_t)o->iters, sizeof(double)), *cpu = times + o->iters;
    int rc = pk_model_create(&m, c, &cfg, &e);
    if (!rc)
        rc = pk_model_init(m, 1, &e);
    if (rc) {
        fprintf(stderr, "bench_model: %s: %s\n", bc->name, e.msg);
        free(times);
        pk_model_destroy(m);
        return 1;
    }
    if (make_inputs(&in, bc) || !times ||
        (!bc->train && !(logits = malloc(2 * (size_t)bc->n * bc->size * bc->size * CLASSES *
                                         sizeof(float))))) {
        fprintf(stderr, "bench_model: %s: out of memory\n", bc->name);
        rc = 1;
        goto done;
    }
    pk_train_cfg t;
    pk_train_cfg_defaults(&t);
    t.max_iter = 1000000;
    if (bc->kd) {
        t.kd_weight = 1.0f;
        t.kd_T = 1.0f;
        t.auxkd_weight = 1.0f;
        t.auxkd = PK_AUXKD_SMOOTHL1;
    }
    long iter = 0;
    for (int i = 0; i < o->warmup && !rc; i++)
        rc = one_iter(m, bc, &in, &t, iter++, logits, &e);
    pk_model_profile_reset(m);
    pk_model_set_profile(m, o->profile);
    for (int i = 0; i < o->iters && !rc; i++) {
        double t0 = now(), c0 = cpu_now();
        rc = one_iter(m, bc, &in, &t, iter++, logits, &e);
        pk_dev_sync(c);
        times[i] = now() - t0;
        cpu[i] = cpu_now() - c0;
    }
    if (rc) {
        fprintf(stderr, "bench_model: %s: %s\n", bc->name, e.msg);
        goto done;
    }
    double med = median(times, o->iters), med_cpu = median(cpu, o->iters);
    double flops = pk_model_flops(m, bc->size, bc->size) * bc->n * (bc->train ? 3.0 : 1.0);
    char name[64]; /* bf16 cases are NAME_bf16 */
    snprintf(name, sizeof name, "%s%s", bc->name, o->precision == PK_PREC_BF16 ? "_bf16" : "");
    printf("%s %.3f img/s\n", name, bc->n / med);
    printf("%s_gflops %.1f GFLOP/s\n", name, flops / med * 1e-9);
    printf("%s_arena %.1f MiB/img\n", name, (double)pk_model_arena_bytes(m) / 1048576.0);
    if (pk_conv_kept_bytes(c) > kept0)
        printf("%s_kept %.1f MiB\n", name, (double)(pk_conv_kept_bytes(c) - kept0) / 1048576.0);
    /* CPU seconds of all threads: steadier than wall time on a shared machine */
    printf("%s_cpu %.3f img/cpu-s\n", name, bc->n / med_cpu);
    printf("%s_step %.3f s (median of %d, min %.3f, max %.3f)\n", name, med, o->iters,
           times[0], times[o->iters - 1]);
    if (o->profile) {
        printf("# profile %s (%d timed iterations)\n", bc->name, o->iters);
        pk_model_profile_print(m, stdout);
    }
    fflush(stdout);
done:
    free(logits);
    free(times);
    free_inputs(&in);
    pk_model_destroy(m);
    return rc != 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_model [--profile] [--warmup N] [--iters N] [--threads N] "
            "[--only NAME[,NAME]] [--precision fp32|bf16]\n"
            "  cases: r18_train_b2_225 r50_infer_b1_473 r50_train_b2_225\n");
}

int main(int argc, char **argv)
{
    opts o = {.warmup = 2, .iters = 5};
    pk_err e = {0};
    static const struct option lo[] = {{"profile", no_argument, 0, 'p'},
                                       {"warmup", required_argument, 0, 'w'},
                                       {"iters", required_argument, 0, 'i'},
                                       {"threads", required_argument, 0, 't'},
                                       {"only", required_argument, 0, 'o'},
                                       {"precision", required_argument, 0, 'P'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "pw:i:t:o:P:h", lo, NULL)) != -1) {
        switch (ch) {
        case 'p': o.profile = 1; break;
        case 'w': o.warmup = atoi(optarg); break;
        case 'i': o.iters = atoi(optarg); break;
        case 't': o.threads = atoi(optarg); break;
        case 'o': o.only = optarg; break;
        case 'P':
            if (pk_precision_parse(optarg, &o.precision, &e)) {
                fprintf(stderr, "bench_model: %s\n", e.msg);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc || o.iters < 1 || o.warmup < 0 || o.threads < 0) {
        usage(stderr);
        return 2;
    }
    pk_ctx *c = NULL;
    pk_ctx_opts co = {.device = PK_DEV_CPU, .threads = o.threads, .precision = o.precision};
    if (pk_ctx_create(&c, &co, &e)) {
        fprintf(stderr, "bench_model: %s\n", e.msg);
        return 1;
    }
    printf("# bench_model: %d threads, %s, %d warm-up + %d timed iterations per case\n",
           pk_ctx_threads(c), pk_precision_name(o.precision), o.warmup, o.iters);
    int fail = 0;
    for (int i = 0; i < NCASES; i++)
        if (!o.only || strstr(o.only, cases[i].name))
            fail |= run_case(c, &cases[i], &o);
    pk_ctx_destroy(c);
    return fail;
}
