/* seg-predict: image files -> colour (palette) PNG masks, optional overlays
 * and raw logits for comparison with PyTorch (see seg-predict(1)).
 *
 * Each image is run whole: normalised, padded at the bottom/right with the
 * mean to the smallest (H-1) % 8 == 0 size, one forward pass with the
 * logits upsampled to the padded size, argmax over the image's own pixels. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/tool_opts.h"
#include "core/mkdir_p.h"
#include "model/checkpoint.h"
#include "cli/device_opt.h"
#include "data/image.h"
#include "core/atomic_file.h"
#include "store/logits_cache.h"
#include "data/palette.h"
#include "store/safetensors.h"
#include "model/seg_infer.h"

#define TOOL "seg-predict"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: " TOOL " -m MODEL [options] IMAGE...\n"
            "       " TOOL " -m MODEL [options] -      (image paths on stdin, one a line)\n"
            "Segments JPEG or PNG photos and writes DIR/NAME.png, a palette PNG of the\n"
            "predicted classes (VOC colours). Each image runs whole, padded at the\n"
            "bottom/right with the mean to the next 8k+1 size.\n"
            "\n"
            "  -m, --model FILE      checkpoint (frozen or not; run in eval mode)\n"
            "  -o, --output DIR      where masks go (default .; created if missing)\n"
            "      --overlay         also write DIR/NAME_overlay.png: the colours blended\n"
            "                        onto the photo (RGB)\n"
            "      --alpha A         overlay opacity in [0, 1] (default 0.5)\n"
            "      --logits FILE     write the raw logits of the (single) image as\n"
            "                        safetensors: input [1,3,Hp,Wp] (normalised, padded),\n"
            "                        main and aux [1,K,Hp,Wp], float32, NCHW\n"
            "  -t, --threads N       compute threads (0, the default: all CPUs)\n"
            "      --device DEV      cpu, cuda or cuda:N (default: the first GPU if any)\n"
            PK_PRECISION_HELP
            "  -q, --quiet           do not list the files written\n"
            "  -h, --help            this help\n"
            "  -V, --version         print the version\n");
}

struct opts {
    const char *model, *out_dir, *logits, *device;
    pk_ctx_opts ctx;
    float alpha;
    int overlay, quiet;
    char **inputs;
    int ninputs;
    int from_stdin;
};

enum { OPT_OVERLAY = 256, OPT_ALPHA, OPT_LOGITS, OPT_DEVICE, OPT_PRECISION };

static const struct option longopts[] = {
    {"model", required_argument, 0, 'm'},      {"output", required_argument, 0, 'o'},
    {"overlay", no_argument, 0, OPT_OVERLAY},  {"alpha", required_argument, 0, OPT_ALPHA},
    {"logits", required_argument, 0, OPT_LOGITS},
    {"threads", required_argument, 0, 't'},    {"device", required_argument, 0, OPT_DEVICE},
    {"quiet", no_argument, 0, 'q'},            {"precision", required_argument, 0, OPT_PRECISION},
    {0, 0, 0, 0}};

static const pk_tool tool = {TOOL, "m:o:t:q", longopts, usage};

static int option(void *ctx, int c, const char *arg)
{
    struct opts *o = ctx;
    const pk_num_opt nums[] = {
        {OPT_ALPHA, 0, 1, "--alpha takes a number in [0, 1]", .f = &o->alpha},
        {'t', 0, 1024, "--threads takes 0..1024 (0: all CPUs)", .i = &o->ctx.threads},
    };
    switch (c) {
    case 'm': o->model = arg; break;
    case 'o': o->out_dir = arg; break;
    case 'q': o->quiet = 1; break;
    case OPT_OVERLAY: o->overlay = 1; break;
    case OPT_LOGITS: o->logits = arg; break;
    case OPT_DEVICE: o->device = arg; break;
    case OPT_PRECISION: return pk_precision_opt(TOOL, arg, &o->ctx.precision);
    default: return pk_num_option(TOOL, nums, sizeof nums / sizeof *nums, c, arg);
    }
    return PK_GO_ON;
}

/* Returns PK_GO_ON, else the exit status. */
static int parse(struct opts *o, int argc, char **argv)
{
    memset(o, 0, sizeof *o);
    o->out_dir = ".";
    o->alpha = 0.5f;
    int st = pk_getopt(&tool, argc, argv, option, o);
    if (st != PK_GO_ON)
        return st;
    if (!o->model)
        return pk_usage_error(TOOL, "need -m MODEL");
    if ((st = pk_device_opt(TOOL, o->device, &o->ctx)) != PK_GO_ON)
        return st;
    if (optind >= argc)
        return pk_usage_error(TOOL, "no input images (give files, or - to read paths from stdin)");
    o->inputs = argv + optind;
    o->ninputs = argc - optind;
    o->from_stdin = o->ninputs == 1 && !strcmp(o->inputs[0], "-");
    for (int i = 0; i < o->ninputs && !o->from_stdin; i++)
        if (!strcmp(o->inputs[i], "-"))
            return pk_usage_error(TOOL, "'-' (read paths from stdin) must be the only input");
    if (o->logits && (o->from_stdin || o->ninputs != 1))
        return pk_usage_error(TOOL, "--logits takes exactly one input image");
    return PK_GO_ON;
}

/* ---- reading photos ---- */

static int read_photo(pk_image *im, const char *path, pk_err *e)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = pk_file_read(&buf, &len, path, e);
    if (rc)
        return rc;
    if (len >= 3 && buf[0] == 0xff && buf[1] == 0xd8 && buf[2] == 0xff) {
        rc = pk_jpeg_decode(im, buf, len, e);
    } else if (len >= 8 && !memcmp(buf, "\x89PNG\r\n\x1a\n", 8)) {
        int kind = 0;
        rc = pk_png_decode_label(im, &kind, buf, len, e);
        if (!rc && kind == PK_PNG_PALETTE) {
            pk_image_free(im);
            rc = pk_fail(e, PK_EFORMAT, "palette PNGs are not supported as photos");
        } else if (!rc && kind == PK_PNG_GREY) {
            pk_image rgb = {0};
            rc = pk_image_alloc(&rgb, im->w, im->h, 3, e);
            for (size_t i = 0; !rc && i < (size_t)im->w * im->h; i++)
                rgb.px[3 * i] = rgb.px[3 * i + 1] = rgb.px[3 * i + 2] = im->px[i];
            pk_image_free(im);
            *im = rgb;
        }
    } else {
        rc = pk_fail(e, PK_EFORMAT, "not a JPEG or PNG file");
    }
    free(buf);
    if (rc)
        pk_wrap(e, "%s", path);
    return rc;
}

/* "dir/name.ext" -> "name" (malloc'd). */
static char *stem_of(const char *path)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    char *s = strdup(*b ? b : "image");
    if (s) {
        char *dot = strrchr(s, '.');
        if (dot && dot != s)
            *dot = '\0';
    }
    return s;
}

/* ---- one image ---- */

struct run {
    struct opts o;
    pk_ctx *ctx;
    pk_model *model;
    pk_seg_ws *ws;
    pk_seg_opts seg; /* only mean/std are used */
    uint8_t pal[256][3];
};

static int write_logits(struct run *r, const pk_image *im, const float *main_l,
                        const float *aux_l, pk_err *e)
{
    int k = pk_model_config(r->model)->classes;
    pk_logits_geom g;
    pk_logits_geom_init(&g, im->w, im->h);
    size_t hw = (size_t)g.pad_w * g.pad_h;
    float *in = malloc(hw * 3 * sizeof *in), *chw = malloc(hw * (k > 3 ? k : 3) * sizeof *chw);
    pk_st_writer *w = pk_st_writer_new();
    int rc = in && chw && w ? PK_OK : pk_fail(e, PK_ENOMEM, "out of memory");
    if (!rc)
        pk_seg_normalize_pad(in, g.pad_w, g.pad_h, im->px, im->w, im->h, r->seg.mean,
                             r->seg.std);
    /* HWC -> CHW for the three tensors. */
    const float *src[3] = {in, main_l, aux_l};
    const char *name[3] = {"input", "main", "aux"};
    for (int t = 0; t < 3 && !rc; t++) {
        int c = t ? k : 3;
        for (int ch = 0; ch < c; ch++)
            for (size_t p = 0; p < hw; p++)
                chw[(size_t)ch * hw + p] = src[t][p * c + ch];
        int64_t shape[4] = {1, c, g.pad_h, g.pad_w};
        rc = pk_st_add(w, name[t], PK_F32, 4, shape, chw, e);
    }
    char v[32];
    const char *mk[] = {"image_width", "image_height", "padded_width", "padded_height",
                        "classes"};
    int mv[] = {im->w, im->h, g.pad_w, g.pad_h, k};
    for (int i = 0; i < 5 && !rc; i++) {
        snprintf(v, sizeof v, "%d", mv[i]);
        rc = pk_st_set_meta(w, mk[i], v, e);
    }
    if (!rc)
        rc = pk_st_set_meta(w, "note",
                            "input: RGB (x/255-mean)/std, padded at the bottom/right with 0 "
                            "to (H-1)%8==0; main/aux: PSPNet eval-mode logits at the padded "
                            "size; the image is [:, :, :image_height, :image_width]",
                            e);
    if (!rc)
        rc = pk_st_write(w, r->o.logits, e);
    pk_st_writer_free(w);
    free(in);
    free(chw);
    return rc;
}

/* PK_EINVAL when out is the model, the image at path, or (paths given as
 * arguments) any input image, or is not a regular file. */
static int check_out(const struct run *r, const char *out, const char *path, pk_err *e)
{
    const char *in[2] = {r->o.model, path};
    int rc = pk_check_output(out, in, 2, e);
    if (!rc && !r->o.from_stdin)
        rc = pk_check_output(out, (const char *const *)r->o.inputs, r->o.ninputs, e);
    return rc;
}

/* *out = "OUT_DIR/<stem><suffix>.png" (malloc'd), checked by check_out. */
static int out_path(const struct run *r, char **out, const char *stem, const char *suffix,
                    const char *path, pk_err *e)
{
    if (asprintf(out, "%s/%s%s.png", r->o.out_dir, stem, suffix) < 0) {
        *out = NULL;
        return pk_fail(e, PK_ENOMEM, "out of memory");
    }
    return check_out(r, *out, path, e);
}

/* Before any work on images given as arguments: no two of them write the
 * same mask, and no output (masks, overlays, --logits) is an input. */
static int check_plan(const struct run *r, pk_err *e)
{
    int n = r->o.from_stdin ? 0 : r->o.ninputs, rc = PK_OK;
    char **stems = calloc((size_t)n + 1, sizeof *stems);
    if (!stems)
        return pk_fail(e, PK_ENOMEM, "out of memory");
    for (int i = 0; !rc && i < n; i++) {
        const char *path = r->o.inputs[i];
        char *mp = NULL, *op = NULL;
        if (!(stems[i] = stem_of(path)))
            rc = pk_fail(e, PK_ENOMEM, "out of memory");
        for (int j = 0; !rc && j < i; j++)
            if (!strcmp(stems[i], stems[j]))
                rc = pk_fail(e, PK_EINVAL, "%s and %s would both write %s/%s.png (refusing "
                             "to overwrite)", r->o.inputs[j], path, r->o.out_dir, stems[i]);
        if (!rc)
            rc = out_path(r, &mp, stems[i], "", path, e);
        if (!rc && r->o.overlay)
            rc = out_path(r, &op, stems[i], "_overlay", path, e);
        free(mp);
        free(op);
    }
    if (!rc && r->o.logits)
        rc = check_out(r, r->o.logits, NULL, e);
    for (int i = 0; i < n; i++)
        free(stems[i]);
    free(stems);
    return rc;
}

static int predict_one(struct run *r, const char *path, pk_err *e)
{
    pk_image im = {0}, mask = {0}, over = {0};
    float *main_l = NULL, *aux_l = NULL;
    char *stem = NULL, *mpath = NULL, *opath = NULL;
    int k = pk_model_config(r->model)->classes;
    int rc = read_photo(&im, path, e);
    if (rc)
        return rc;
    pk_logits_geom g;
    pk_logits_geom_init(&g, im.w, im.h);
    size_t n = (size_t)g.pad_w * g.pad_h * k;
    main_l = malloc(n * sizeof *main_l);
    if (r->o.logits)
        aux_l = malloc(n * sizeof *aux_l);
    if (!main_l || (r->o.logits && !aux_l) || !(stem = stem_of(path)))
        rc = pk_fail(e, PK_ENOMEM, "out of memory");
    if (!rc)
        rc = pk_seg_whole_image(r->model, im.px, im.w, im.h, 1, r->seg.mean, r->seg.std,
                                main_l, aux_l, r->ws, e);
    if (!rc)
        rc = pk_image_alloc(&mask, im.w, im.h, 1, e);
    if (!rc) {
        for (int y = 0; y < im.h; y++)
            pk_seg_argmax(mask.px + (size_t)y * im.w, main_l + (size_t)y * g.pad_w * k,
                          (size_t)im.w, k);
        rc = out_path(r, &mpath, stem, "", path, e);
    }
    if (!rc)
        rc = pk_png_write_palette(mpath, &mask, (const uint8_t(*)[3])r->pal, 256, e);
    if (!rc && r->o.overlay) {
        rc = pk_image_alloc(&over, im.w, im.h, 3, e);
        float a = r->o.alpha;
        for (size_t i = 0; !rc && i < (size_t)im.w * im.h; i++)
            for (int c = 0; c < 3; c++)
                over.px[3 * i + c] = (uint8_t)((1.0f - a) * im.px[3 * i + c] +
                                               a * r->pal[mask.px[i]][c] + 0.5f);
        if (!rc)
            rc = out_path(r, &opath, stem, "_overlay", path, e);
        if (!rc)
            rc = pk_png_write(opath, &over, e);
    }
    if (!rc && r->o.logits)
        rc = write_logits(r, &im, main_l, aux_l, e);
    if (!rc && !r->o.quiet) {
        printf("%s -> %s", path, mpath);
        if (opath)
            printf(", %s", opath);
        if (r->o.logits)
            printf(", %s", r->o.logits);
        printf(" (%dx%d)\n", im.w, im.h);
    }
    if (rc && !strstr(e->msg, path))
        pk_wrap(e, "%s", path);
    pk_image_free(&im);
    pk_image_free(&mask);
    pk_image_free(&over);
    free(main_l);
    free(aux_l);
    free(stem);
    free(mpath);
    free(opath);
    return rc;
}

static int run_stdin(struct run *r, pk_err *e)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = PK_OK, seen = 0;
    while (!rc && (n = getline(&line, &cap, stdin)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n == 0)
            continue;
        seen++;
        rc = predict_one(r, line, e);
    }
    free(line);
    if (!rc && !seen)
        rc = pk_fail(e, PK_EINVAL, "no image paths on stdin");
    return rc;
}

int main(int argc, char **argv)
{
    struct run r = {0};
    int st = parse(&r.o, argc, argv);
    if (st != PK_GO_ON)
        return st;
    pk_err e = {0, ""};
    pk_seg_opts_default(&r.seg);
    pk_voc_palette(r.pal);
    int rc = pk_mkdir_p(r.o.out_dir, &e);
    if (!rc)
        rc = check_plan(&r, &e);
    if (!rc)
        rc = pk_ctx_create(&r.ctx, &r.o.ctx, &e);
    if (!rc)
        rc = pk_checkpoint_load(&r.model, r.ctx, r.o.model, 0.0f, NULL, &e);
    if (!rc && !(r.ws = pk_seg_ws_new()))
        rc = pk_fail(&e, PK_ENOMEM, "out of memory");
    if (!rc && r.o.from_stdin)
        rc = run_stdin(&r, &e);
    for (int i = 0; !rc && !r.o.from_stdin && i < r.o.ninputs; i++)
        rc = predict_one(&r, r.o.inputs[i], &e);
    if (rc)
        fprintf(stderr, TOOL ": %s\n", e.msg);
    pk_seg_ws_free(r.ws);
    pk_model_destroy(r.model);
    pk_ctx_destroy(r.ctx);
    return rc ? 1 : 0;
}
