/* GPU throughput of the model (make bench-gpu; scripts/bench-gpu):
 *   r18_train_b8_473   ResNet18 student train step with KD losses (KL T=1 on
 *   r18_train_b16_473  the main logits, SmoothL1 between aux logits, fake
 *                      teacher logits already on the GPU, as the cache's are
 *                      after upload), batch 8 / 16 at 3x473x473;
 *   r50_infer_b8_473   ResNet50 (deep stem) teacher eval forward, main and aux
 *                      logits at full resolution, batch 8.
 * The same three cases as bench/torch_pspnet_gpu.py. Per case it prints
 * "NAME VALUE UNIT" lines: img/s (median step), the GFLOP/s that implies
 * (convolution FLOPs from pk_model_flops: ResNet18 forward 120.7 GFLOP per
 * image at 473, so a train step, counted as 3x the forward, 362 GFLOP;
 * ResNet50 deep-stem forward 340 GFLOP), the fraction of the GPU's dense TF32
 * peak that is (H100/H200 SXM 494.7 TFLOP/s, A100 156), and the peak device
 * memory of the timed steps: bytes held through the library's allocator
 * (activations, parameters, workspace; comparable to PyTorch's
 * max_memory_allocated) and the device's used memory (cudaMemGetInfo: the
 * CUDA context and cuDNN's own buffers too). Without CUDA or a GPU it says
 * so and exits 0. Options: --no-tf32, --warmup N, --iters N, --only NAME,
 * --profile (per-layer times, with a device sync per layer), --precision
 * fp32|bf16|both (default both: the fp32 cases, then the same in the bf16
 * precision as NAME_bf16, with their fraction of the dense bf16 peak, H100 /
 * H200 SXM 989.4 TFLOP/s, A100 312). */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "cli/device_opt.h"
#include "ops/ops_cuda.h"
#include "model/pspnet.h"
#include "core/rng.h"
#ifdef PSPKD_CUDA
#include <cuda_runtime_api.h>
#endif

typedef struct opts {
    int warmup, iters, tf32, profile;
    int fp32, bf16; /* which precisions run */
    const char *only;
} opts;

#ifdef PSPKD_CUDA
typedef struct bench_case {
    const char *name;
    pk_arch arch;
    pk_stem stem;
    int train, n, size;
} bench_case;

static const bench_case cases[] = {
    {"r18_train_b8_473", PK_ARCH_R18, PK_STEM_7X7, 1, 8, 473},
    {"r18_train_b16_473", PK_ARCH_R18, PK_STEM_7X7, 1, 16, 473},
    {"r50_infer_b8_473", PK_ARCH_R50, PK_STEM_DEEP, 0, 8, 473},
};
#define NCASES ((int)(sizeof cases / sizeof *cases))
#define CLASSES 21

/* Dense TF32 tensor-core peak in FLOP/s by device name (bf16's is twice
 * that); 0 when unknown. */
static double tf32_peak(const char *name)
{
    if (strstr(name, "H100") || strstr(name, "H200") || strstr(name, "GH200"))
        return 494.7e12; /* SXM datasheet; the PCIe H100 is lower (378) */
    if (strstr(name, "A100"))
        return 156e12;
    return 0.0;
}

/* Device buffers of one case, filled on the host once and uploaded. */
typedef struct inputs {
    float *image, *t_main, *t_aux, *main, *aux;
    uint8_t *label;
} inputs;

static void free_inputs(pk_ctx *c, inputs *in)
{
    pk_dev_free(c, in->image);
    pk_dev_free(c, in->t_main);
    pk_dev_free(c, in->t_aux);
    pk_dev_free(c, in->main);
    pk_dev_free(c, in->aux);
    pk_dev_free(c, in->label);
}

static int upload_random(pk_ctx *c, float **dst, size_t n, pk_rng *r, float lo, float hi)
{
    float *h = malloc(n * sizeof *h);
    *dst = pk_dev_alloc(c, n * sizeof **dst);
    if (!h || !*dst) {
        free(h);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        h[i] = pk_rng_uniform(r, lo, hi);
    pk_dev_upload(c, *dst, h, n * sizeof *h);
    free(h);
    return 0;
}

static int make_inputs(pk_ctx *c, inputs *in, const bench_case *bc)
{
    size_t pix = (size_t)bc->n * bc->size * bc->size;
    memset(in, 0, sizeof *in);
    pk_rng r = pk_rng_seed(7);
    if (upload_random(c, &in->image, pix * 3, &r, -2.0f, 2.0f))
        return -1;
    if (!bc->train) {
        in->main = pk_dev_alloc(c, pix * CLASSES * sizeof(float));
        in->aux = pk_dev_alloc(c, pix * CLASSES * sizeof(float));
        return in->main && in->aux ? 0 : -1;
    }
    if (upload_random(c, &in->t_main, pix * CLASSES, &r, -4.0f, 4.0f) ||
        upload_random(c, &in->t_aux, pix * CLASSES, &r, -4.0f, 4.0f))
        return -1;
    uint8_t *lab = malloc(pix);
    in->label = pk_dev_alloc(c, pix);
    if (!lab || !in->label) {
        free(lab);
        return -1;
    }
    for (size_t i = 0; i < pix; i++)
        lab[i] = pk_rng_u01(&r) < 0.05f ? 255 : (uint8_t)pk_rng_below(&r, CLASSES);
    pk_dev_upload(c, in->label, lab, pix);
    free(lab);
    return 0;
}

static int one_iter(pk_model *m, const bench_case *bc, const inputs *in, const pk_train_cfg *t,
                    long iter, pk_err *e)
{
    if (!bc->train)
        return pk_model_infer(m, in->main, in->aux, in->image, bc->n, bc->size, bc->size, 1, e);
    pk_batch b = {.n = bc->n,
                  .h = bc->size,
                  .w = bc->size,
                  .image = in->image,
                  .label = in->label,
                  .teacher_main = in->t_main,
                  .teacher_aux = in->t_aux};
    pk_losses l;
    return pk_model_train_step(m, &b, t, iter, &l, e);
}

/* Each case gets its own context, so the workspace and the memory counters
 * are its own. */
static int run_case(const bench_case *bc0, const opts *o, int bf16, double peak_flops)
{
    pk_err e = {0};
    pk_ctx *c = NULL;
    pk_ctx_opts co = {.device = PK_DEV_CUDA, .device_index = 0, .tf32 = o->tf32,
                      .precision = bf16 ? PK_PREC_BF16 : PK_PREC_FP32};
    char name[64];
    snprintf(name, sizeof name, "%s%s", bc0->name, bf16 ? "_bf16" : "");
    bench_case named = *bc0;
    named.name = name;
    const bench_case *bc = &named;
    if (pk_ctx_create(&c, &co, &e)) {
        fprintf(stderr, "bench_gpu: %s: %s\n", name, e.msg);
        return 1;
    }
    pk_model *m = NULL;
    pk_model_cfg cfg = {
        .arch = bc->arch, .stem = bc->stem, .classes = CLASSES, .dropout = 0.1f};
    inputs in;
    double *times = calloc((size_t)o->iters, sizeof(double));
    int rc = pk_model_create(&m, c, &cfg, &e);
    if (!rc)
        rc = pk_model_init(m, 1, &e);
    if (rc || !times) {
        fprintf(stderr, "bench_gpu: %s: %s\n", bc->name, rc ? e.msg : "out of memory");
        free(times);
        pk_model_destroy(m);
        pk_ctx_destroy(c);
        return 1;
    }
    if (make_inputs(c, &in, bc)) {
        fprintf(stderr, "bench_gpu: %s: out of memory for the inputs\n", bc->name);
        rc = 1;
        goto done;
    }
    pk_train_cfg t;
    pk_train_cfg_defaults(&t);
    t.max_iter = 1000000;
    t.kd_weight = 1.0f;
    t.kd_T = 1.0f;
    t.auxkd_weight = 1.0f;
    t.auxkd = PK_AUXKD_SMOOTHL1;
    long iter = 0;
    for (int i = 0; i < o->warmup && !rc; i++) /* includes the algorithm search */
        rc = one_iter(m, bc, &in, &t, iter++, &e);
    pk_dev_sync(c);
    pk_cuda_mem_reset_peak(c);
    size_t free0 = 0, total = 0, free_min = (size_t)-1;
    for (int i = 0; i < o->iters && !rc; i++) {
        double t0 = now();
        rc = one_iter(m, bc, &in, &t, iter++, &e);
        pk_dev_sync(c);
        times[i] = now() - t0;
        if (cudaMemGetInfo(&free0, &total) == cudaSuccess && free0 < free_min)
            free_min = free0;
    }
    if (!rc)
        rc = pk_cuda_status(c, &e);
    if (rc) {
        fprintf(stderr, "bench_gpu: %s: %s\n", bc->name, e.msg);
        goto done;
    }
    double med = median(times, o->iters);
    double flops = pk_model_flops(m, bc->size, bc->size) * bc->n * (bc->train ? 3.0 : 1.0);
    size_t held = 0, peak = 0;
    pk_cuda_mem_stats(c, &held, &peak);
    printf("%s %.2f img/s\n", bc->name, bc->n / med);
    printf("%s_gflops %.0f GFLOP/s\n", bc->name, flops / med * 1e-9);
    if (peak_flops > 0)
        printf("%s_%s_peak_frac %.3f of dense %s peak\n", bc->name, bf16 ? "bf16" : "tf32",
               flops / med / peak_flops, bf16 ? "bf16" : "TF32");
    printf("%s_peak_alloc %.0f MiB\n", bc->name, peak / 1048576.0);
    if (free_min != (size_t)-1)
        printf("%s_device_used %.0f MiB\n", bc->name, (double)(total - free_min) / 1048576.0);
    printf("%s_step %.4f s (median of %d, min %.4f, max %.4f)\n", bc->name, med, o->iters,
           times[0], times[o->iters - 1]);
    if (o->profile) {
        pk_model_profile_reset(m);
        pk_model_set_profile(m, 1);
        for (int i = 0; i < 3 && !rc; i++)
            rc = one_iter(m, bc, &in, &t, iter++, &e);
        printf("# profile %s (3 iterations, a device sync per layer)\n", bc->name);
        pk_model_profile_print(m, stdout);
    }
    fflush(stdout);
done:
    free(times);
    free_inputs(c, &in);
    pk_model_destroy(m);
    pk_ctx_destroy(c);
    return rc != 0;
}
#endif

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_gpu [--no-tf32] [--profile] [--warmup N] [--iters N] "
               "[--only NAME[,NAME]] [--precision fp32|bf16|both]\n"
               "  cases: r18_train_b8_473 r18_train_b16_473 r50_infer_b8_473\n");
}

int main(int argc, char **argv)
{
    opts o = {.warmup = 3, .iters = 10, .tf32 = 1, .fp32 = 1, .bf16 = 1};
    static const struct option lo[] = {{"no-tf32", no_argument, 0, 'n'},
                                       {"profile", no_argument, 0, 'p'},
                                       {"warmup", required_argument, 0, 'w'},
                                       {"iters", required_argument, 0, 'i'},
                                       {"only", required_argument, 0, 'o'},
                                       {"precision", required_argument, 0, 'P'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "npw:i:o:P:h", lo, NULL)) != -1) {
        switch (ch) {
        case 'n': o.tf32 = 0; break;
        case 'p': o.profile = 1; break;
        case 'w': o.warmup = atoi(optarg); break;
        case 'i': o.iters = atoi(optarg); break;
        case 'o': o.only = optarg; break;
        case 'P':
            o.fp32 = !strcmp(optarg, "fp32") || !strcmp(optarg, "both");
            o.bf16 = !strcmp(optarg, "bf16") || !strcmp(optarg, "both");
            if (!o.fp32 && !o.bf16) {
                fprintf(stderr, "bench_gpu: --precision %s: takes fp32, bf16 or both\n",
                        optarg);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc || o.iters < 1 || o.warmup < 0) {
        usage(stderr);
        return 2;
    }
#ifndef PSPKD_CUDA
    printf("bench_gpu: skipped: built without CUDA\n");
    return 0;
#else
    if (!pk_cuda_available()) {
        printf("bench_gpu: skipped: no GPU\n");
        return 0;
    }
    struct cudaDeviceProp prop;
    memset(&prop, 0, sizeof prop);
    const char *name = cudaGetDeviceProperties(&prop, 0) == cudaSuccess ? prop.name : "?";
    double peak = tf32_peak(name);
    printf("# bench_gpu: %s, TF32 %s, %d warm-up + %d timed steps per case\n", name,
           o.tf32 ? "on" : "off", o.warmup, o.iters);
    int fail = 0;
    for (int bf16 = 0; bf16 < 2; bf16++) {
        if (!(bf16 ? o.bf16 : o.fp32))
            continue;
        if (bf16 && prop.major < 8) {
            printf("bench_gpu: bf16 cases skipped: %s is compute capability %d.%d (8.0 "
                   "needed)\n",
                   name, prop.major, prop.minor);
            break;
        }
        for (int i = 0; i < NCASES; i++)
            if (!o.only || strstr(o.only, cases[i].name))
                fail |= run_case(&cases[i], &o, bf16,
                                 bf16 ? 2.0 * peak : o.tf32 ? peak : 0.0);
    }
    return fail;
#endif
}
