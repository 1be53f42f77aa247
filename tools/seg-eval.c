/* seg-eval: semseg's test protocol over a data pack -> per-class IoU and
 * accuracy, mIoU / mAcc / aAcc (see seg-eval(1)). The numerics are in
 * lib/model/seg_infer.c and lib/model/metrics.c; this file parses options, walks the
 * pack, saves predictions and prints the table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/stop_signals.h"
#include "cli/tool_opts.h"
#include "core/mkdir_p.h"
#include "model/checkpoint.h"
#include "cli/device_opt.h"
#include "data/image.h"
#include "store/pack.h"
#include "model/metrics.h"
#include "cli/progress.h"
#include "store/record.h"
#include "model/seg_infer.h"

#define TOOL "seg-eval"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: " TOOL " -m MODEL -d DATA [options]\n"
            "Evaluates a model on a data pack with semseg's test protocol: long side\n"
            "resized to BASE*scale, sliding CROP windows (stride ceil(2/3 CROP)), softmax\n"
            "averaged over flips, windows and scales, then a dataset confusion matrix.\n"
            "\n"
            "  -m, --model FILE      checkpoint (frozen or not; run in eval mode)\n"
            "  -d, --data PACK       data pack written by voc-pack\n"
            "      --base-size N     long side at scale 1 (default 512)\n"
            "      --crop N|HxW      window size, each side 8k+1 (default 473)\n"
            "  -s, --scales LIST     comma-separated scales (default 1.0)\n"
            "      --ms              semseg's multi-scale set 0.5,0.75,1.0,1.25,1.5,1.75\n"
            "      --flip, --no-flip average with the flipped window (default on)\n"
            "  -b, --batch N         windows per forward pass (default 2)\n"
            "  -n, --limit N         evaluate the first N images only\n"
            "      --save-dir DIR    write DIR/gray/ID.png (indices) and\n"
            "                        DIR/color/ID.png (palette) predictions\n"
            "  -t, --threads N       compute threads (0, the default: all CPUs)\n"
            "      --device DEV      cpu, cuda or cuda:N (default: the first GPU if any)\n"
            PK_PRECISION_HELP
            "      --json            print the results as JSON\n"
            "  -q, --quiet           no progress line\n"
            "  -h, --help            this help\n"
            "  -V, --version         print the version\n");
}

struct opts {
    const char *model, *data, *save_dir, *device;
    pk_ctx_opts ctx;
    pk_seg_opts seg;
    long limit; /* < 0: all */
    int json, quiet;
};

enum { OPT_BASE = 256, OPT_CROP, OPT_MS, OPT_FLIP, OPT_NOFLIP, OPT_SAVE, OPT_DEVICE, OPT_JSON,
       OPT_PRECISION };

static const struct option longopts[] = {
    {"model", required_argument, 0, 'm'},    {"data", required_argument, 0, 'd'},
    {"base-size", required_argument, 0, OPT_BASE},
    {"crop", required_argument, 0, OPT_CROP}, {"scales", required_argument, 0, 's'},
    {"ms", no_argument, 0, OPT_MS},          {"flip", no_argument, 0, OPT_FLIP},
    {"no-flip", no_argument, 0, OPT_NOFLIP}, {"batch", required_argument, 0, 'b'},
    {"limit", required_argument, 0, 'n'},    {"save-dir", required_argument, 0, OPT_SAVE},
    {"threads", required_argument, 0, 't'},  {"device", required_argument, 0, OPT_DEVICE},
    {"json", no_argument, 0, OPT_JSON},      {"quiet", no_argument, 0, 'q'},
    {"precision", required_argument, 0, OPT_PRECISION},
    {0, 0, 0, 0}};

static const pk_tool tool = {TOOL, "m:d:s:b:n:t:q", longopts, usage};

static int option(void *ctx, int c, const char *arg)
{
    struct opts *o = ctx;
    const pk_num_opt nums[] = {
        {OPT_BASE, 1, 16384, "--base-size takes 1..16384", .i = &o->seg.base_size},
        {'b', 1, 256, "--batch takes 1..256", .i = &o->seg.batch},
        {'n', 1, 1L << 40, "--limit takes a count >= 1", .l = &o->limit},
        {'t', 0, 1024, "--threads takes 0..1024 (0: all CPUs)", .i = &o->ctx.threads},
    };
    pk_err e = {0, ""};
    switch (c) {
    case 'm': o->model = arg; break;
    case 'd': o->data = arg; break;
    case OPT_SAVE: o->save_dir = arg; break;
    case OPT_JSON: o->json = 1; break;
    case 'q': o->quiet = 1; break;
    case OPT_MS: pk_seg_set_ms(&o->seg); break;
    case OPT_FLIP: o->seg.flip = 1; break;
    case OPT_NOFLIP: o->seg.flip = 0; break;
    case OPT_DEVICE: o->device = arg; break;
    case OPT_PRECISION: return pk_precision_opt(TOOL, arg, &o->ctx.precision);
    case OPT_CROP:
        if (pk_parse_crop(arg, &o->seg.crop_h, &o->seg.crop_w))
            return pk_usage_error(TOOL, PK_CROP_ERROR);
        break;
    case 's':
        if (pk_seg_parse_scales(&o->seg, arg, &e))
            return pk_usage_error(TOOL, e.msg);
        break;
    default: return pk_num_option(TOOL, nums, sizeof nums / sizeof *nums, c, arg);
    }
    return PK_GO_ON;
}

/* Returns PK_GO_ON, else the exit status. */
static int parse(struct opts *o, int argc, char **argv)
{
    memset(o, 0, sizeof *o);
    o->limit = -1;
    pk_seg_opts_default(&o->seg);
    int st = pk_getopt(&tool, argc, argv, option, o);
    if (st == PK_GO_ON)
        st = pk_device_opt(TOOL, o->device, &o->ctx);
    if (st != PK_GO_ON)
        return st;
    if (optind != argc)
        return pk_usage_error(TOOL, "unexpected argument");
    if (!o->model || !o->data)
        return pk_usage_error(TOOL, "need -m MODEL and -d DATA");
    return PK_GO_ON;
}

struct run {
    struct opts o;
    pk_stop_signals *sig; /* SIGINT/SIGTERM, polled between images */
    pk_pack *pack;
    pk_meta meta;
    pk_ctx *ctx;
    pk_model *model;
    pk_seg_ws *ws;
    pk_confusion conf;
    char *gray_dir, *color_dir;
    float *probs;
    uint8_t *pred;
    size_t probs_cap, pred_cap;
    long images;
    double seconds;
};

static int setup(struct run *r, pk_err *e)
{
    const char *path = r->o.data;
    if (pk_pack_open(&r->pack, path, e))
        return e->code; /* the message names the file */
    r->meta = *pk_pack_meta(r->pack);
    if (r->meta.unlabeled)
        return pk_fail(e, PK_EINVAL, "%s is an unlabelled pack: no labels to score against",
                       path);
    if (pk_ctx_create(&r->ctx, &r->o.ctx, e))
        return e->code;
    if (pk_checkpoint_load(&r->model, r->ctx, r->o.model, 0.0f, NULL, e))
        return e->code; /* the message names the file */
    int k = pk_model_config(r->model)->classes;
    if (k != r->meta.classes)
        return pk_fail(e, PK_EINVAL, "%s has %d classes, %s has %d", r->o.model, k, path,
                       r->meta.classes);
    if (pk_confusion_init(&r->conf, k, e))
        return e->code;
    if (!(r->ws = pk_seg_ws_new()))
        return pk_fail(e, PK_ENOMEM, "out of memory");
    if (r->o.save_dir) {
        if (asprintf(&r->gray_dir, "%s/gray", r->o.save_dir) < 0 ||
            asprintf(&r->color_dir, "%s/color", r->o.save_dir) < 0)
            return pk_fail(e, PK_ENOMEM, "out of memory");
        if (pk_mkdir_p(r->gray_dir, e) || pk_mkdir_p(r->color_dir, e))
            return e->code;
    }
    return PK_OK;
}

static int save_pred(struct run *r, const char *id, int w, int h, pk_err *e)
{
    pk_image im = {w, h, 1, r->pred};
    char *g = NULL, *c = NULL;
    int rc = PK_OK;
    /* Ids may contain '/' (list entries with directories): flatten them. */
    char *flat = strdup(id);
    if (!flat)
        return pk_fail(e, PK_ENOMEM, "out of memory");
    for (char *p = flat; *p; p++)
        if (*p == '/')
            *p = '_';
    if (asprintf(&g, "%s/%s.png", r->gray_dir, flat) < 0 ||
        asprintf(&c, "%s/%s.png", r->color_dir, flat) < 0)
        rc = pk_fail(e, PK_ENOMEM, "out of memory");
    if (!rc)
        rc = pk_png_write(g, &im, e);
    if (!rc)
        rc = pk_png_write_palette(c, &im, (const uint8_t(*)[3])r->meta.palette, 256, e);
    free(g);
    free(c);
    free(flat);
    return rc;
}

static int eval_one(struct run *r, const void *val, size_t len, pk_err *e)
{
    pk_record_view rec;
    int rc = pk_record_parse(&rec, val, len, e);
    if (rc)
        return rc;
    int w = rec.hdr.width, h = rec.hdr.height, k = r->meta.classes;
    size_t npix = (size_t)w * h;
    if (npix * k > r->probs_cap) {
        free(r->probs);
        r->probs_cap = 0;
        if (!(r->probs = malloc(npix * k * sizeof(float))))
            return pk_fail(e, PK_ENOMEM, "out of memory");
        r->probs_cap = npix * k;
    }
    if (npix > r->pred_cap) {
        free(r->pred);
        r->pred_cap = 0;
        if (!(r->pred = malloc(npix)))
            return pk_fail(e, PK_ENOMEM, "out of memory");
        r->pred_cap = npix;
    }
    pk_image im = {0};
    if ((rc = pk_record_image(&im, &rec, e)))
        return rc;
    rc = pk_seg_eval_image(r->model, &r->o.seg, im.px, w, h, r->probs, r->ws, e);
    pk_image_free(&im);
    if (rc)
        return rc;
    pk_seg_argmax(r->pred, r->probs, npix, k);
    if ((rc = pk_confusion_add(&r->conf, r->pred, rec.label, npix, PK_IGNORE_LABEL, e)))
        return rc;
    if (r->o.save_dir && (rc = save_pred(r, rec.hdr.id, w, h, e)))
        return rc;
    return PK_OK;
}

struct walk {
    struct run *r;
    pk_progress *p;
    long total;
};

static int visit(const pk_pack_rec *rec, void *user, pk_err *e)
{
    struct walk *wk = user;
    struct run *r = wk->r;
    if (pk_stop_signals_poll(r->sig))
        return pk_fail(e, PK_EIO, "interrupted after %ld images", r->images);
    if (r->images >= wk->total)
        return -1; /* done: stop the walk */
    double t0 = pk_now();
    int rc = eval_one(r, rec->data, rec->len, e);
    r->seconds += pk_now() - t0;
    if (rc)
        return pk_wrap(e, "%s", rec->key);
    r->images++;
    if (!r->o.quiet)
        pk_progress_update(wk->p, r->images, NULL);
    return 0;
}

static void print_scales(FILE *f, const pk_seg_opts *o)
{
    for (int i = 0; i < o->nscales; i++)
        fprintf(f, "%s%g", i ? "," : "", o->scales[i]);
}

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void report(const struct run *r)
{
    int k = r->conf.k;
    double iou[PK_CLASSES_MAX], acc[PK_CLASSES_MAX];
    pk_seg_scores s;
    pk_confusion_scores(&r->conf, iou, acc, &s);
    double ips = r->seconds > 0 ? r->images / r->seconds : 0.0;
    const pk_seg_opts *o = &r->o.seg;
    if (r->o.json) {
        printf("{\"images\": %ld, \"base_size\": %d, \"crop\": [%d, %d], \"scales\": [",
               r->images, o->base_size, o->crop_h, o->crop_w);
        print_scales(stdout, o);
        printf("], \"flip\": %s, \"classes\": [", o->flip ? "true" : "false");
        for (int c = 0; c < k; c++) {
            uint64_t in, un, tg;
            pk_confusion_class(&r->conf, c, &in, &un, &tg);
            printf("%s{\"id\": %d, \"name\": ", c ? ", " : "", c);
            json_string(r->meta.names[c]);
            printf(", \"iou\": %.6f, \"acc\": %.6f, \"pixels\": %llu}", iou[c], acc[c],
                   (unsigned long long)tg);
        }
        printf("], \"miou\": %.6f, \"macc\": %.6f, \"aacc\": %.6f, \"miou_present\": %.6f, "
               "\"present\": %d, \"pixels\": %llu, \"seconds\": %.3f, "
               "\"images_per_s\": %.3f}\n",
               s.miou, s.macc, s.aacc, s.miou_present, s.present,
               (unsigned long long)s.pixels, r->seconds, ips);
        return;
    }
    printf("%-3s %-16s %8s %8s %12s\n", "id", "class", "IoU", "Acc", "pixels");
    for (int c = 0; c < k; c++) {
        uint64_t in, un, tg;
        pk_confusion_class(&r->conf, c, &in, &un, &tg);
        printf("%-3d %-16s %8.4f %8.4f %12llu\n", c, r->meta.names[c], iou[c], acc[c],
               (unsigned long long)tg);
    }
    printf("mIoU %.4f  mAcc %.4f  aAcc %.4f  (mIoU over the %d present classes %.4f)\n",
           s.miou, s.macc, s.aacc, s.present, s.miou_present);
    printf("%ld images, base %d, crop %dx%d, scales ", r->images, o->base_size, o->crop_h,
           o->crop_w);
    print_scales(stdout, o);
    printf(", flip %s, %.2f images/s\n", o->flip ? "on" : "off", ips);
}

static void cleanup(struct run *r)
{
    pk_pack_close(r->pack);
    pk_confusion_free(&r->conf);
    pk_seg_ws_free(r->ws);
    pk_model_destroy(r->model);
    pk_ctx_destroy(r->ctx);
    free(r->gray_dir);
    free(r->color_dir);
    free(r->probs);
    free(r->pred);
}

int main(int argc, char **argv)
{
    struct run r = {0};
    int st = parse(&r.o, argc, argv);
    if (st != PK_GO_ON)
        return st;
    pk_err e = {0, ""};
    if (pk_stop_signals_start(&r.sig, PK_STOP_REPEAT, &e)) {
        fprintf(stderr, TOOL ": %s\n", e.msg);
        return 1;
    }
    if (setup(&r, &e)) {
        fprintf(stderr, TOOL ": %s\n", e.msg);
        cleanup(&r);
        return 1;
    }
    long total = r.o.limit >= 0 && r.o.limit < r.meta.count ? r.o.limit : r.meta.count;
    pk_progress p;
    pk_progress_init(&p, total, TOOL, stderr);
    struct walk wk = {&r, &p, total};
    int rc = pk_pack_foreach(r.pack, visit, &wk, &e);
    if (rc && rc != -1) {
        pk_progress_break(&p);
        fprintf(stderr, TOOL ": %s\n", e.msg);
        cleanup(&r);
        int stop = pk_stop_signals_poll(r.sig);
        return stop ? 128 + stop : 1; /* interrupted: 130 or 143 */
    }
    if (!r.o.quiet)
        pk_progress_finish(&p, r.images, NULL);
    report(&r);
    cleanup(&r);
    return 0;
}
