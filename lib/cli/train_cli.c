/* The trainers' shared command line and run: see train_cli.h. */
#include "cli/train_cli.h"

#include "core/atomic_file.h"

#include <stdlib.h>
#include <string.h>

#include "model/checkpoint.h"
#include "cli/device_opt.h"
#include "store/pack_meta.h"
#include "cli/stop_signals.h"
#include "cli/tool_opts.h"

enum {
    O_ARCH = PK_TRAIN_OPT_BASE, O_STEM, O_CLASSES, O_DROPOUT, O_INIT, O_RESUME, O_ITERS,
    O_EPOCHS, O_CROP, O_SCALE, O_ROTATE, O_AUGMENT, O_LR, O_MOMENTUM, O_WD, O_POWER,
    O_AUXW, O_SEED, O_THREADS, O_WORKERS, O_DEVICE, O_CKPT_DIR, O_CKPT_EVERY, O_KEEP,
    O_LOG, O_VAL, O_VAL_EVERY, O_PROGRESS, O_FREEZE, O_ZERO_RES, O_PRECISION
};

static const struct option common[] = {
    {"data", required_argument, 0, 'd'},        {"output", required_argument, 0, 'o'},
    {"batch", required_argument, 0, 'b'},       {"quiet", no_argument, 0, 'q'},
    {"arch", required_argument, 0, O_ARCH},     {"stem", required_argument, 0, O_STEM},
    {"classes", required_argument, 0, O_CLASSES}, {"dropout", required_argument, 0, O_DROPOUT},
    {"init", required_argument, 0, O_INIT},     {"resume", required_argument, 0, O_RESUME},
    {"iters", required_argument, 0, O_ITERS},   {"epochs", required_argument, 0, O_EPOCHS},
    {"crop", required_argument, 0, O_CROP},     {"scale", required_argument, 0, O_SCALE},
    {"rotate", required_argument, 0, O_ROTATE}, {"augment", required_argument, 0, O_AUGMENT},
    {"lr", required_argument, 0, O_LR},         {"momentum", required_argument, 0, O_MOMENTUM},
    {"weight-decay", required_argument, 0, O_WD}, {"power", required_argument, 0, O_POWER},
    {"aux-weight", required_argument, 0, O_AUXW}, {"seed", required_argument, 0, O_SEED},
    {"threads", required_argument, 0, O_THREADS}, {"workers", required_argument, 0, O_WORKERS},
    {"device", required_argument, 0, O_DEVICE}, {"ckpt-dir", required_argument, 0, O_CKPT_DIR},
    {"ckpt-every", required_argument, 0, O_CKPT_EVERY},
    {"keep", required_argument, 0, O_KEEP},     {"log", required_argument, 0, O_LOG},
    {"val", required_argument, 0, O_VAL},       {"val-every", required_argument, 0, O_VAL_EVERY},
    {"progress-every", required_argument, 0, O_PROGRESS},
    {"freeze", no_argument, 0, O_FREEZE},
    {"zero-init-residual", no_argument, 0, O_ZERO_RES},
    {"precision", required_argument, 0, O_PRECISION},
};

#define NCOMMON (sizeof common / sizeof *common)

void pk_train_cli_help(FILE *f)
{
    fputs("Data and schedule:\n"
          "  -d, --data PACK        training pack (voc-pack)\n"
          "  -o, --output FILE      the trained model (safetensors)\n"
          "      --iters N          iterations (overrides --epochs)\n"
          "      --epochs N         epochs of (images / batch) iterations (50)\n"
          "  -b, --batch N          images per step, >= 2 (16)\n"
          "      --crop N|HxW       training crop, each side 8k+1 in 1..8193 (473)\n"
          "      --augment full|none  semseg's augmentation, or centred crop only (full)\n"
          "      --scale MIN,MAX    random scale range (0.5,2)\n"
          "      --rotate DEG       random rotation in [-DEG, DEG] (10)\n"
          "      --seed N           shuffle, augmentation, dropout and init seed (1)\n"
          "Model:\n"
          "      --classes K        class count (default: the pack's)\n"
          "      --dropout P        Dropout2d in the cls and aux heads (0.1)\n"
          "      --init FILE        backbone weights: ImageNet (torchvision names) or a\n"
          "                         pspkd model's (its heads are not taken)\n"
          "      --zero-init-residual  each residual block's last BN weight starts at 0\n"
          "                         (torchvision's option; faster from scratch)\n"
          "Optimiser:\n"
          "      --lr X             base LR; heads use 10x (0.01)\n"
          "      --momentum X       SGD momentum (0.9)\n"
          "      --weight-decay X   (1e-4)\n"
          "      --power X          poly LR power (0.9)\n"
          "      --aux-weight X     aux CE weight (0.4)\n"
          "Checkpoints and records:\n"
          "      --ckpt-dir DIR     periodic checkpoints (OUTPUT minus .safetensors, + .ckpt)\n"
          "      --ckpt-every N     steps between checkpoints (0: once per epoch; 0)\n"
          "      --keep K           checkpoints kept (3)\n"
          "      --resume PATH      continue from a checkpoint, or the newest in a directory\n"
          "      --log FILE         CSV log, one row per step and validation (pspkd-log(5))\n"
          "      --val PACK         validate (single scale, whole images) ...\n"
          "      --val-every N      ... every N epochs and at the end (1)\n"
          "      --progress-every S seconds between progress lines off a terminal (30)\n"
          "      --freeze           write OUTPUT frozen: eval weights, no optimiser state\n"
          "Machine:\n"
          "      --threads N        compute threads (0: all CPUs; 0)\n"
          "      --workers N        loader threads (1)\n"
          "      --device cpu|cuda[:N]  (default: the first GPU if any, else cpu)\n"
          PK_PRECISION_HELP
          "  -q, --quiet            no progress or notes on stderr\n"
          "  -h, --help             this help\n"
          "  -V, --version          print the version\n",
          f);
}

static int parse_scale(const char *s, float *lo, float *hi)
{
    char a[64];
    const char *c = strchr(s, ',');
    double x, y;
    if (!c || (size_t)(c - s) >= sizeof a)
        return -1;
    memcpy(a, s, (size_t)(c - s));
    a[c - s] = 0;
    if (pk_parse_double(a, 0.01, 100, &x) || pk_parse_double(c + 1, 0.01, 100, &y) || x > y)
        return -1;
    *lo = (float)x;
    *hi = (float)y;
    return 0;
}

/* The options that take a word. */
static int word_option(pk_train_opts *o, int code, const char *arg)
{
    const char *tool = o->tool;
    switch (code) {
    case O_ARCH:
        if (pk_arch_parse(arg, &o->arch))
            return pk_usage_error(tool, "--arch takes resnet18 or resnet50");
        break;
    case O_STEM:
        if (pk_stem_parse(arg, &o->stem))
            return pk_usage_error(tool, "--stem takes 7x7 or deep");
        o->stem_set = 1;
        break;
    case O_AUGMENT:
        if (strcmp(arg, "full") && strcmp(arg, "none"))
            return pk_usage_error(tool, "--augment takes full or none");
        o->augment = !strcmp(arg, "full");
        break;
    case O_CROP:
        if (pk_parse_crop(arg, &o->crop_h, &o->crop_w))
            return pk_usage_error(tool, PK_CROP_ERROR);
        break;
    case O_SCALE:
        if (parse_scale(arg, &o->scale_min, &o->scale_max))
            return pk_usage_error(tool, "--scale takes MIN,MAX with 0.01 <= MIN <= MAX <= 100");
        break;
    case O_SEED:
        if (pk_parse_seed(arg, &o->seed))
            return pk_usage_error(tool, "--seed takes a non-negative integer");
    }
    return PK_GO_ON;
}

int pk_train_cli_option(pk_train_opts *o, int code, const char *arg)
{
    const pk_num_opt nums[] = {
        {'b', 2, 4096, "--batch takes 2..4096 (BatchNorm needs 2 images)", .i = &o->batch},
        {O_CLASSES, 1, 255, "--classes takes 1..255", .i = &o->classes},
        {O_DROPOUT, 0, 0.99, "--dropout takes 0..0.99", .f = &o->dropout},
        {O_ITERS, 1, 99999999L, "--iters takes 1..99999999", .l = &o->iters},
        {O_EPOCHS, 1, 100000, "--epochs takes 1..100000", .i = &o->epochs},
        {O_ROTATE, 0, 180, "--rotate takes 0..180 degrees", .f = &o->rotate},
        {O_LR, 0, 1000, "--lr takes a number in 0..1000", .f = &o->cfg.base_lr},
        {O_WD, 0, 1000, "--weight-decay takes a number in 0..1000", .f = &o->cfg.weight_decay},
        {O_POWER, 0, 1000, "--power takes a number in 0..1000", .f = &o->cfg.power},
        {O_AUXW, 0, 1000, "--aux-weight takes a number in 0..1000", .f = &o->cfg.aux_weight},
        {O_THREADS, 0, 1024, "--threads takes 0..1024", .i = &o->threads},
        {O_WORKERS, 1, 256, "--workers takes 1..256", .i = &o->workers},
        {O_CKPT_EVERY, 0, 99999999L, "--ckpt-every takes 0..99999999 steps", .l = &o->ckpt_every},
        {O_KEEP, 1, 1000000, "--keep takes 1..1000000", .i = &o->keep},
        {O_VAL_EVERY, 1, 100000, "--val-every takes 1..100000 epochs", .i = &o->val_every},
        {O_PROGRESS, 0, 1e6, "--progress-every takes 0..1e6 seconds", .d = &o->progress_every},
    };
    switch (code) {
    case 'd': o->data = arg; break;
    case 'o': o->output = arg; break;
    case 'q': o->quiet = 1; break;
    case O_INIT: o->init = arg; break;
    case O_RESUME: o->resume = arg; break;
    case O_DEVICE: o->device_arg = arg; break;
    case O_CKPT_DIR: o->ckpt_dir = arg; break;
    case O_LOG: o->log = arg; break;
    case O_VAL: o->val = arg; break;
    case O_FREEZE: o->freeze = 1; break;
    case O_MOMENTUM: { /* [0, 1): at 1 or more SGD's velocity never decays */
        double d;
        if (pk_parse_double(arg, 0.0, 1.0, &d) || d >= 1.0 || (float)d >= 1.0f)
            return pk_usage_error(o->tool, "--momentum takes a number in [0, 1)");
        o->cfg.momentum = (float)d;
        break;
    }
    case O_ZERO_RES: o->zero_residual = 1; break;
    case O_PRECISION: return pk_precision_opt(o->tool, arg, &o->precision);
    case O_ARCH:
    case O_STEM:
    case O_AUGMENT:
    case O_CROP:
    case O_SCALE:
    case O_SEED: return word_option(o, code, arg);
    default: return pk_num_option(o->tool, nums, sizeof nums / sizeof *nums, code, arg);
    }
    return PK_GO_ON;
}

int pk_train_cli_parse(const pk_tool *t, int argc, char **argv, pk_opt_fn *fn, void *ctx)
{
    struct option lo[PK_TOOL_LONGOPTS_MAX + 1];
    size_t n = NCOMMON;
    memcpy(lo, common, sizeof common);
    for (const struct option *x = t->longopts; x->name && n < PK_TOOL_LONGOPTS_MAX; x++)
        lo[n++] = *x;
    lo[n] = (struct option){0, 0, 0, 0};
    char shortopts[64];
    snprintf(shortopts, sizeof shortopts, "d:o:b:q%s", t->shortopts);
    pk_tool all = {t->name, shortopts, lo, t->usage};
    int st = pk_getopt(&all, argc, argv, fn, ctx);
    if (st == PK_GO_ON && optind < argc)
        return pk_usage_error(t->name, "unexpected argument");
    return st;
}

/* After parsing: the options taken together, and the defaults that depend
 * on others (the stem) or on the machine (--device). PK_GO_ON, or the exit
 * status after the message. */
static int finish(pk_train_opts *o)
{
    pk_ctx_opts co = {0};
    int st = pk_device_opt(o->tool, o->device_arg, &co);
    if (st != PK_GO_ON)
        return st;
    o->device = co.device;
    o->device_index = co.device_index;
    if (!o->stem_set)
        o->stem = o->arch == PK_ARCH_R18 ? PK_STEM_7X7 : PK_STEM_DEEP;
    if (!o->data)
        return pk_usage_error(o->tool, "missing -d PACK");
    if (!o->output)
        return pk_usage_error(o->tool, "missing -o OUTPUT");
    return PK_GO_ON;
}

/* ---- the run -------------------------------------------------------------- */

static int fail(const char *tool, const pk_err *e)
{
    fprintf(stderr, "%s: %s\n", tool, e->msg);
    return 1;
}

/* Opens each unlabelled pack's cache and checks it against the student
 * and its pack (pk_logits_cache_check_pack: same pack id, every key). */
static int open_unlabeled(const pk_train_opts *o, pk_train_teacher *t, pk_err *e)
{
    for (int p = 0; p < o->n_unlab; p++) {
        const char *pack = o->unlab_pack[p], *logits = o->unlab_logits[p];
        pk_meta m;
        int rc = pk_pack_meta_read(pack, &m, e);
        if (rc)
            return pk_wrap(e, "--unlabeled"); /* the message names the pack */
        if (m.classes != o->classes)
            return pk_fail(e, PK_EINVAL, "%s has %d classes, the student %d (--unlabeled)",
                           pack, m.classes, o->classes);
        if ((rc = pk_logits_cache_open(&t->unlab_cache[p], logits, e)) ||
            (rc = pk_logits_cache_check_pack(t->unlab_cache[p], pack, e)))
            return pk_wrap(e, "--unlabeled"); /* the message names the cache */
    }
    return PK_OK;
}

/* Opens the teacher named by the options; checks it against the pack. */
static int open_teacher(pk_train_opts *o, pk_ctx *c, pk_train_teacher *t, pk_err *e)
{
    if (o->logits) {
        int rc = pk_logits_cache_open(&t->cache, o->logits, e);
        if (rc)
            return rc;
        const pk_logits_meta *lm = pk_logits_cache_meta(t->cache);
        if (lm->classes != o->classes)
            return pk_fail(e, PK_EINVAL, "%s: the cache has %d classes, the student %d",
                           o->logits, lm->classes, o->classes);
        rc = pk_logits_cache_check_pack(t->cache, o->data, e); /* names the cache */
        return rc ? rc : open_unlabeled(o, t, e);
    }
    if (o->teacher) {
        pk_ckpt_meta meta;
        int rc = pk_checkpoint_load(&t->model, c, o->teacher, 0.0f, &meta, e);
        if (rc)
            return rc;
        int k = pk_model_config(t->model)->classes;
        if (k != o->classes)
            return pk_fail(e, PK_EINVAL, "%s: the teacher has %d classes, the student %d",
                           o->teacher, k, o->classes);
    }
    return PK_OK;
}

/* The failure on one rank: "tool: rank R of N: message" under MPI. */
static int fail_rank(const char *tool, const pk_comm *comm, const pk_err *e)
{
    if (pk_comm_size(comm) == 1)
        return fail(tool, e);
    fprintf(stderr, "%s: rank %d of %d: %s\n", tool, pk_comm_rank(comm), pk_comm_size(comm),
            e->msg);
    return 1;
}

/* The run on one rank of comm (one process: the self communicator). */
static int train_rank(pk_train_opts *o, pk_comm *comm, pk_stop_fn *stop, void *stop_ctx);
/* Opens the world communicator and runs train_rank on this rank. */
static int train_world(pk_train_opts *o, pk_stop_signals *sig);

int pk_train_main(pk_train_opts *o)
{
    pk_err e = {0, ""};
    /* before CUDA, MPI, OpenMP or the loaders start a thread: they inherit
     * the mask */
    pk_stop_signals *sig;
    if (pk_stop_signals_start(&sig, PK_STOP_ONE_SHOT, &e))
        return fail(o->tool, &e);
    int st = train_world(o, sig);
    pk_stop_signals_free(sig);
    return st;
}

static int train_world(pk_train_opts *o, pk_stop_signals *sig)
{
    pk_err e = {0, ""};
    int st = finish(o);
    if (st != PK_GO_ON)
        return st;
    pk_comm *comm = NULL;
    if (pk_comm_open_world(&comm, &e))
        return fail(o->tool, &e);
    int size = pk_comm_size(comm), rank = pk_comm_rank(comm);
    if (o->batch % size) {
        if (rank == 0)
            fprintf(stderr, "%s: -b %d is the global batch and must split evenly over the %d "
                            "ranks\n", o->tool, o->batch, size);
        pk_comm_close(comm);
        return 2;
    }
    if (size > 1 && o->n_unlab) { /* the unlabelled streams are not split over ranks */
        if (rank == 0)
            fprintf(stderr, "%s: --unlabeled runs in one process, not under mpirun (%d ranks)\n",
                    o->tool, size);
        pk_comm_close(comm);
        return 2;
    }
    if (rank != 0)
        o->quiet = 1;
    st = train_rank(o, comm, pk_stop_signals_poll, sig);
    if (st == 1 && size > 1)
        pk_comm_abort(comm, 1); /* the other ranks may be waiting in a collective */
    pk_comm_close(comm);
    return st;
}

static int train_rank(pk_train_opts *o, pk_comm *comm, pk_stop_fn *stop, void *stop_ctx)
{
    int size = pk_comm_size(comm), rank = pk_comm_rank(comm);
    pk_err e = {0, ""};
    pk_meta meta;
    const char *in[] = {o->data, o->val, o->init, o->resume, o->teacher, o->logits, o->log};
    int nin = (int)(sizeof in / sizeof *in);
    if (pk_check_output(o->output, in, nin, &e) ||
        (o->log && pk_check_output(o->log, in, nin - 1, &e)) ||
        (o->log && pk_check_output(o->log, &o->output, 1, &e)))
        return fail(o->tool, &e);
    if (pk_pack_meta_read(o->data, &meta, &e))
        return fail_rank(o->tool, comm, &e);
    if (meta.count < 1) {
        fprintf(stderr, "%s: %s: the pack holds no images\n", o->tool, o->data);
        return 1;
    }
    if (o->classes == 0) {
        o->classes = meta.classes;
    } else if (o->classes != meta.classes) {
        fprintf(stderr, "%s: --classes %d but %s has %d classes\n", o->tool, o->classes,
                o->data, meta.classes);
        return 1;
    }
    pk_ctx_opts co = {.device = o->device, .device_index = o->device_index,
                      .threads = o->threads, .tf32 = 0, .precision = o->precision};
    pk_ctx *ctx = NULL;
    pk_model *m = NULL;
    pk_train_teacher t = {0};
    int status = 1;
    if (pk_ctx_create(&ctx, &co, &e))
        goto out;
    pk_model_cfg mc = {.arch = o->arch, .stem = o->stem, .classes = o->classes,
                       .dropout = o->dropout};
    if (pk_model_create(&m, ctx, &mc, &e) || pk_model_init(m, o->seed, &e) ||
        pk_model_set_comm(m, comm, (long)rank * (o->batch / size), &e))
        goto out;
    if (o->zero_residual)
        pk_model_zero_residual(m);
    if (o->init) {
        pk_imagenet_report rep;
        if (pk_load_imagenet_report(m, o->init, &rep, &e))
            goto out;
        if (!o->quiet)
            fprintf(stderr,
                    "%s: --init %s: loaded %d backbone tensors (%.2fM values); ignored %d "
                    "(%s)%s; the heads keep their initialisation\n",
                    o->tool, o->init, rep.loaded, rep.loaded_floats / 1e6, rep.ignored,
                    rep.ignored ? rep.ignored_names : "none",
                    rep.counters ? " and the BatchNorm counters" : "");
    }
    if (open_teacher(o, ctx, &t, &e))
        goto out;
    int nl = o->batch, nu = 0;
    if (o->n_unlab && pk_unlab_split(o->batch, o->unlab_ratio, &nl, &nu))
        nl = o->batch, nu = 0; /* refused by the loop, with the message */
    if (!o->quiet && size > 1)
        fprintf(stderr, "%s: data parallel over %d ranks (%s), %d images per rank per step\n",
                o->tool, size, pk_comm_name(comm), o->batch / size);
    if (!o->quiet) {
        long ipe = meta.count / nl;
        fprintf(stderr,
                "%s: %s (%s stem), %d classes, %.2fM parameters; %d images, %ld "
                "iterations/epoch, %ld iterations of %d x %dx%d; %s\n",
                o->tool, pk_arch_name(o->arch), pk_stem_name(o->stem), o->classes,
                pk_model_num_params(m) / 1e6, meta.count, ipe,
                o->iters > 0 ? o->iters : (long)o->epochs * ipe, o->batch, o->crop_h,
                o->crop_w,
                t.cache ? "teacher: logits cache" : t.model ? "teacher: online" : "no teacher");
        if (nu)
            fprintf(stderr, "%s: each batch: %d labelled images, %d unlabelled from %d pack%s "
                    "(KD terms only)\n", o->tool, nl, nu, o->n_unlab, o->n_unlab > 1 ? "s" : "");
    }
    pk_train_result res;
    if (pk_train_run(m, o, &t, stop, stop_ctx, &res, &e))
        goto out;
    status = res.signal ? 128 + res.signal : 0;
    if (!o->quiet && !res.signal && res.step > res.start_step)
        fprintf(stderr, "%s: %ld steps in %.1fs, %.2f img/s\n", o->tool,
                res.step - res.start_step, res.seconds, res.img_s);
out:
    if (status == 1)
        fail_rank(o->tool, comm, &e);
    if (t.cache)
        pk_logits_cache_close(t.cache);
    for (int p = 0; p < PK_UNLAB_MAX; p++)
        pk_logits_cache_close(t.unlab_cache[p]);
    pk_model_destroy(t.model);
    pk_model_destroy(m);
    pk_ctx_destroy(ctx);
    return status;
}

int pk_train_freeze_main(const char *tool, const char *in, const char *out, int threads)
{
    pk_err e = {0, ""};
    pk_ctx_opts co = {.device = PK_DEV_CPU, .threads = threads};
    pk_ctx *ctx = NULL;
    pk_model *m = NULL;
    pk_ckpt_meta meta;
    int status = 1;
    if (!pk_check_output(out, &in, 1, &e) && !pk_ctx_create(&ctx, &co, &e) &&
        !pk_checkpoint_load(&m, ctx, in, 0.0f, &meta, &e)) {
        meta.frozen = 1;
        if (!pk_checkpoint_save(m, out, &meta, 0, &e))
            status = 0;
    }
    if (status)
        fail(tool, &e);
    pk_model_destroy(m);
    pk_ctx_destroy(ctx);
    return status;
}
