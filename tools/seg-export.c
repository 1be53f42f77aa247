/* seg-export: a frozen PSPNet checkpoint -> an ONNX model (see
 * seg-export(1)). The numerics stay in the library: the export graph with
 * BatchNorm folded (model/pspnet_export.h) and its ONNX encoding
 * (export/onnx_pspnet.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/tool_opts.h"
#include "export/onnx_pspnet.h"
#include "model/checkpoint.h"
#include "model/seg_infer.h"

#define TOOL "seg-export"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: " TOOL " -m MODEL -o OUT.onnx [options]\n"
            "Writes a frozen PSPNet (teacher-train --freeze or --freeze-only, student-distill\n"
            "--freeze) as an ONNX model: opset %d, BatchNorm folded into the convolutions,\n"
            "eval mode (no dropout). Input \"image\" float [N,3,H,W], RGB normalised as the\n"
            "tools do ((x/255 - mean)/std, ImageNet's mean and std), H and W 8k+1; output\n"
            "\"main\" (and with --aux \"aux\") float [N,K,H,W] logits at the input size.\n"
            "\n"
            "  -m, --model FILE      frozen checkpoint (safetensors)\n"
            "  -o, --output FILE     the ONNX file (written atomically)\n"
            "  -s, --size N|HxW      fixed input size, each side 8k+1 (default 473); N = 1\n"
            "      --dynamic         symbolic N, H and W instead (any 8k+1 size at run time)\n"
            "      --aux             also output the aux head's logits (\"aux\")\n"
            "  -q, --quiet           do not describe the file written\n"
            "  -h, --help            this help\n"
            "  -V, --version         print the version\n",
            PK_ONNX_OPSET);
}

struct opts {
    const char *model, *out;
    int h, w, dynamic, aux, quiet, size_given;
};

enum { OPT_DYNAMIC = 256, OPT_AUX };

static const struct option longopts[] = {
    {"model", required_argument, 0, 'm'},  {"output", required_argument, 0, 'o'},
    {"size", required_argument, 0, 's'},   {"dynamic", no_argument, 0, OPT_DYNAMIC},
    {"aux", no_argument, 0, OPT_AUX},      {"quiet", no_argument, 0, 'q'},
    {0, 0, 0, 0}};

static const pk_tool tool = {TOOL, "m:o:s:q", longopts, usage};

static int option(void *ctx, int c, const char *arg)
{
    struct opts *o = ctx;
    switch (c) {
    case 'm': o->model = arg; break;
    case 'o': o->out = arg; break;
    case 's':
        if (pk_parse_crop(arg, &o->h, &o->w))
            return pk_usage_error(TOOL, "--size takes N or HxW, each side 8k+1 in 1..8193 "
                                        "(e.g. 473 or 257x353)");
        o->size_given = 1;
        break;
    case 'q': o->quiet = 1; break;
    case OPT_DYNAMIC: o->dynamic = 1; break;
    case OPT_AUX: o->aux = 1; break;
    default: return pk_usage_error(TOOL, "unknown option");
    }
    return PK_GO_ON;
}

/* Same file: the same name, or the same device and inode when both exist. */
static int same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (!strcmp(a, b))
        return 1;
    return !stat(a, &sa) && !stat(b, &sb) && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static int parse(struct opts *o, int argc, char **argv)
{
    memset(o, 0, sizeof *o);
    o->h = o->w = 473;
    int st = pk_getopt(&tool, argc, argv, option, o);
    if (st != PK_GO_ON)
        return st;
    if (optind < argc)
        return pk_usage_errorf(TOOL, "unexpected argument '%s'", argv[optind]);
    if (!o->model)
        return pk_usage_error(TOOL, "need -m MODEL");
    if (!o->out)
        return pk_usage_error(TOOL, "need -o OUT.onnx");
    if (o->dynamic && o->size_given)
        return pk_usage_error(TOOL, "--size and --dynamic exclude each other");
    if (same_file(o->model, o->out))
        return pk_usage_error(TOOL, "the output would overwrite the model (-o equals -m)");
    return PK_GO_ON;
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) ? -1 : (long)st.st_size;
}

static int export(const struct opts *o, pk_model *m, pk_err *e)
{
    const pk_model_cfg *cfg = pk_model_config(m);
    /* dynamic: the graph's structure is size-independent; build it at a
     * small size and let the writer take the edges from the runtime shape */
    int h = o->dynamic ? 65 : o->h, w = o->dynamic ? 65 : o->w;
    pk_xgraph *g = NULL;
    int rc = pk_model_export_graph(m, h, w, o->aux, &g, e);
    if (rc)
        return rc;
    pk_seg_opts so;
    pk_seg_opts_default(&so);
    char classes[16], size[40], mean[64], stdv[64];
    snprintf(classes, sizeof classes, "%d", cfg->classes);
    if (o->dynamic)
        snprintf(size, sizeof size, "dynamic (8k+1)");
    else
        snprintf(size, sizeof size, "%dx%d", o->h, o->w);
    snprintf(mean, sizeof mean, "%g %g %g", so.mean[0], so.mean[1], so.mean[2]);
    snprintf(stdv, sizeof stdv, "%g %g %g", so.std[0], so.std[1], so.std[2]);
    pk_onnx_opts oo = {.dynamic = o->dynamic, .producer_version = PSPKD_VERSION};
    const char *kv[][2] = {
        {"arch", pk_arch_name(cfg->arch)},
        {"stem", pk_stem_name(cfg->stem)},
        {"classes", classes},
        {"input_size", size},
        {"input", "image: float [N,3,H,W] RGB, (pixel - mean) / std, H and W 8k+1"},
        {"mean", mean},
        {"std", stdv},
        {"outputs", o->aux ? "main aux" : "main"},
    };
    for (size_t i = 0; i < sizeof kv / sizeof *kv; i++) {
        oo.meta_key[oo.n_meta] = kv[i][0];
        oo.meta_val[oo.n_meta++] = kv[i][1];
    }
    rc = pk_onnx_write(g, &oo, o->out, e);
    pk_xgraph_free(g);
    if (!rc && !o->quiet)
        printf("%s: ONNX opset %d, %s (%s stem), %d classes, input %s, outputs %s, %.1f MB\n",
               o->out, PK_ONNX_OPSET, pk_arch_name(cfg->arch), pk_stem_name(cfg->stem),
               cfg->classes, o->dynamic ? "Nx3xHxW (dynamic)" : size,
               o->aux ? "main, aux" : "main", file_size(o->out) / 1e6);
    return rc;
}

int main(int argc, char **argv)
{
    struct opts o;
    int st = parse(&o, argc, argv);
    if (st != PK_GO_ON)
        return st;
    pk_err e = {0, ""};
    pk_ctx_opts co = {.device = PK_DEV_CPU, .threads = 1};
    pk_ctx *ctx = NULL;
    pk_model *m = NULL;
    pk_ckpt_meta meta;
    int rc = pk_ctx_create(&ctx, &co, &e);
    if (!rc)
        rc = pk_checkpoint_load(&m, ctx, o.model, 0.0f, &meta, &e);
    if (!rc && !meta.frozen)
        rc = pk_fail(&e, PK_EINVAL,
                     "%s is not a frozen model (write one with teacher-train --freeze or "
                     "--freeze-only, or student-distill --freeze)",
                     o.model);
    if (!rc)
        rc = export(&o, m, &e);
    if (rc)
        fprintf(stderr, TOOL ": %s\n", e.msg);
    pk_model_destroy(m);
    pk_ctx_destroy(ctx);
    return rc ? 1 : 0;
}
