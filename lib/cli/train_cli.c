/* The trainers' shared command line and run: see train_cli.h. */
#include "cli/train_cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "model/checkpoint.h"
#include "cli/device_opt.h"
#include "store/pack_meta.h"
#include "cli/tool_opts.h"

enum {
    O_ARCH = PK_TRAIN_OPT_BASE, O_STEM, O_CLASSES, O_DROPOUT, O_INIT, O_RESUME, O_ITERS,
    O_EPOCHS, O_CROP, O_SCALE, O_ROTATE, O_AUGMENT, O_LR, O_MOMENTUM, O_WD, O_POWER,
    O_AUXW, O_SEED, O_THREADS, O_WORKERS, O_DEVICE, O_CKPT_DIR, O_CKPT_EVERY, O_KEEP,
    O_LOG, O_VAL, O_VAL_EVERY, O_PROGRESS, O_FREEZE
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
};

int pk_train_cli_longopts(struct option *dst, int cap)
{
    int n = (int)(sizeof common / sizeof *common);
    if (n > cap)
        return -1;
    memcpy(dst, common, sizeof common);
    return n;
}

void pk_train_cli_help(FILE *f)
{
    fputs("Data and schedule:\n"
          "  -d, --data PACK        training pack (voc-pack)\n"
          "  -o, --output FILE      the trained model (safetensors)\n"
          "      --iters N          iterations (overrides --epochs)\n"
          "      --epochs N         epochs of (images / batch) iterations (50)\n"
          "  -b, --batch N          images per step, >= 2 (16)\n"
          "      --crop N|HxW       training crop, (N-1) % 8 == 0 (473)\n"
          "      --augment full|none  semseg's augmentation, or centred crop only (full)\n"
          "      --scale MIN,MAX    random scale range (0.5,2)\n"
          "      --rotate DEG       random rotation in [-DEG, DEG] (10)\n"
          "      --seed N           shuffle, augmentation, dropout and init seed (1)\n"
          "Model:\n"
          "      --classes K        class count (default: the pack's)\n"
          "      --dropout P        Dropout2d in the cls and aux heads (0.1)\n"
          "      --init FILE        ImageNet backbone weights (torchvision names)\n"
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
          "  -q, --quiet            no progress or notes on stderr\n"
          "  -h, --help             this help\n"
          "  -V, --version          print the version\n",
          f);
}

#define BAD(...) (snprintf(msg, cap, __VA_ARGS__), -1)

static int parse_crop(const char *s, int *h, int *w)
{
    char a[32];
    const char *x = strchr(s, 'x');
    long vh, vw;
    if (!x) {
        if (pk_parse_long(s, 9, 4097, &vh, NULL))
            return -1;
        vw = vh;
    } else {
        if ((size_t)(x - s) >= sizeof a)
            return -1;
        memcpy(a, s, (size_t)(x - s));
        a[x - s] = 0;
        if (pk_parse_long(a, 9, 4097, &vh, NULL) || pk_parse_long(x + 1, 9, 4097, &vw, NULL))
            return -1;
    }
    if ((vh - 1) % 8 || (vw - 1) % 8)
        return -1;
    *h = (int)vh;
    *w = (int)vw;
    return 0;
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

int pk_train_cli_option(pk_train_opts *o, int code, const char *arg, char *msg, size_t cap)
{
    long l;
    double x;
    switch (code) {
    case 'd': o->data = arg; return 1;
    case 'o': o->output = arg; return 1;
    case 'q': o->quiet = 1; return 1;
    case 'b':
        if (pk_parse_long(arg, 2, 4096, &l, NULL))
            return BAD("--batch takes 2..4096 (BatchNorm needs 2 images)");
        o->batch = (int)l;
        return 1;
    case O_ARCH:
        if (pk_arch_parse(arg, &o->arch))
            return BAD("--arch takes resnet18 or resnet50");
        return 1;
    case O_STEM:
        if (pk_stem_parse(arg, &o->stem))
            return BAD("--stem takes 7x7 or deep");
        o->stem_set = 1;
        return 1;
    case O_CLASSES:
        if (pk_parse_long(arg, 1, 255, &l, NULL))
            return BAD("--classes takes 1..255");
        o->classes = (int)l;
        return 1;
    case O_DROPOUT:
        if (pk_parse_double(arg, 0, 0.99, &x))
            return BAD("--dropout takes 0..0.99");
        o->dropout = (float)x;
        return 1;
    case O_INIT: o->init = arg; return 1;
    case O_RESUME: o->resume = arg; return 1;
    case O_ITERS:
        if (pk_parse_long(arg, 1, 99999999L, &l, NULL))
            return BAD("--iters takes 1..99999999");
        o->iters = l;
        return 1;
    case O_EPOCHS:
        if (pk_parse_long(arg, 1, 100000, &l, NULL))
            return BAD("--epochs takes 1..100000");
        o->epochs = (int)l;
        return 1;
    case O_CROP:
        if (parse_crop(arg, &o->crop_h, &o->crop_w))
            return BAD("--crop takes N or HxW with (N-1) %% 8 == 0, e.g. 473 or 33x41");
        return 1;
    case O_SCALE:
        if (parse_scale(arg, &o->scale_min, &o->scale_max))
            return BAD("--scale takes MIN,MAX with 0.01 <= MIN <= MAX <= 100");
        return 1;
    case O_ROTATE:
        if (pk_parse_double(arg, 0, 180, &x))
            return BAD("--rotate takes 0..180 degrees");
        o->rotate = (float)x;
        return 1;
    case O_AUGMENT:
        if (!strcmp(arg, "full"))
            o->augment = 1;
        else if (!strcmp(arg, "none"))
            o->augment = 0;
        else
            return BAD("--augment takes full or none");
        return 1;
    case O_LR:
    case O_MOMENTUM:
    case O_WD:
    case O_POWER:
    case O_AUXW: {
        static const char *const names[] = {"--lr", "--momentum", "--weight-decay", "--power",
                                            "--aux-weight"};
        float *dst[] = {&o->cfg.base_lr, &o->cfg.momentum, &o->cfg.weight_decay,
                        &o->cfg.power, &o->cfg.aux_weight};
        int i = code - O_LR;
        if (pk_parse_double(arg, 0, 1000, &x))
            return BAD("%s takes a number in 0..1000", names[i]);
        *dst[i] = (float)x;
        return 1;
    }
    case O_SEED: {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(arg, &end, 10);
        if (errno || end == arg || *end || arg[0] == '-')
            return BAD("--seed takes a non-negative integer");
        o->seed = v;
        return 1;
    }
    case O_THREADS:
        if (pk_parse_long(arg, 0, 1024, &l, NULL))
            return BAD("--threads takes 0..1024");
        o->threads = (int)l;
        return 1;
    case O_WORKERS:
        if (pk_parse_long(arg, 1, 256, &l, NULL))
            return BAD("--workers takes 1..256");
        o->workers = (int)l;
        return 1;
    case O_DEVICE: o->device_arg = arg; return 1;
    case O_CKPT_DIR: o->ckpt_dir = arg; return 1;
    case O_CKPT_EVERY:
        if (pk_parse_long(arg, 0, 99999999L, &l, NULL))
            return BAD("--ckpt-every takes 0..99999999 steps");
        o->ckpt_every = l;
        return 1;
    case O_KEEP:
        if (pk_parse_long(arg, 1, 1000000, &l, NULL))
            return BAD("--keep takes 1..1000000");
        o->keep = (int)l;
        return 1;
    case O_LOG: o->log = arg; return 1;
    case O_VAL: o->val = arg; return 1;
    case O_VAL_EVERY:
        if (pk_parse_long(arg, 1, 100000, &l, NULL))
            return BAD("--val-every takes 1..100000 epochs");
        o->val_every = (int)l;
        return 1;
    case O_PROGRESS:
        if (pk_parse_double(arg, 0, 1e6, &x))
            return BAD("--progress-every takes 0..1e6 seconds");
        o->progress_every = x;
        return 1;
    case O_FREEZE: o->freeze = 1; return 1;
    default: return 0;
    }
}

int pk_train_cli_finish(pk_train_opts *o, char *msg, size_t cap)
{
    pk_ctx_opts co = {0};
    pk_err e = {0, ""};
    int rc = pk_device_parse(o->device_arg, &co, &e);
    if (rc) {
        snprintf(msg, cap, "%s", e.msg);
        return rc == PK_EINVAL ? -1 : 1;
    }
    o->device = co.device;
    o->device_index = co.device_index;
    if (!o->stem_set)
        o->stem = o->arch == PK_ARCH_R18 ? PK_STEM_7X7 : PK_STEM_DEEP;
    if (!o->data)
        return BAD("missing -d PACK");
    if (!o->output)
        return BAD("missing -o OUTPUT");
    return 0;
}

/* ---- the run -------------------------------------------------------------- */

static int fail(const char *tool, const pk_err *e)
{
    fprintf(stderr, "%s: %s\n", tool, e->msg);
    return 1;
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
        return pk_logits_cache_check_pack(t->cache, o->data, e); /* names the cache */
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

int pk_train_main(pk_train_opts *o)
{
    pk_err e = {0, ""};
    pk_meta meta;
    if (pk_pack_meta_read(o->data, &meta, &e))
        return fail(o->tool, &e);
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
                      .threads = o->threads, .tf32 = 0};
    pk_ctx *ctx = NULL;
    pk_model *m = NULL;
    pk_train_teacher t = {0};
    int status = 1;
    if (pk_ctx_create(&ctx, &co, &e))
        goto out;
    pk_model_cfg mc = {.arch = o->arch, .stem = o->stem, .classes = o->classes,
                       .dropout = o->dropout};
    if (pk_model_create(&m, ctx, &mc, &e) || pk_model_init(m, o->seed, &e))
        goto out;
    if (o->init && pk_load_imagenet(m, o->init, &e))
        goto out;
    if (open_teacher(o, ctx, &t, &e))
        goto out;
    if (!o->quiet) {
        long ipe = meta.count / o->batch;
        fprintf(stderr,
                "%s: %s (%s stem), %d classes, %.2fM parameters; %d images, %ld "
                "iterations/epoch, %ld iterations of %d x %dx%d; %s\n",
                o->tool, pk_arch_name(o->arch), pk_stem_name(o->stem), o->classes,
                pk_model_num_params(m) / 1e6, meta.count, ipe,
                o->iters > 0 ? o->iters : (long)o->epochs * ipe, o->batch, o->crop_h,
                o->crop_w,
                t.cache ? "teacher: logits cache" : t.model ? "teacher: online" : "no teacher");
    }
    pk_train_result res;
    if (pk_train_run(m, o, &t, &res, &e))
        goto out;
    status = res.signal ? 128 + res.signal : 0;
    if (!o->quiet && !res.signal && res.step > res.start_step)
        fprintf(stderr, "%s: %ld steps in %.1fs, %.2f img/s\n", o->tool,
                res.step - res.start_step, res.seconds, res.img_s);
out:
    if (status == 1)
        fail(o->tool, &e);
    if (t.cache)
        pk_logits_cache_close(t.cache);
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
    if (!pk_ctx_create(&ctx, &co, &e) && !pk_checkpoint_load(&m, ctx, in, 0.0f, &meta, &e)) {
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
