/* The export graph as ONNX nodes (see onnx_pspnet.h for the model's
 * contract): one Conv per folded conv, Relu, Add, MaxPool, Concat, Resize
 * (linear, align_corners) and the PPM's adaptive pooling. */
#include "export/onnx_pspnet.h"

#include <stdlib.h>
#include <string.h>
#include "export/onnx_build_impl.h"

typedef struct ex {
    ob b;
    const pk_xgraph *g;
    const pk_onnx_opts *o;
    const char **name; /* per export value */
} ex;

static const char *kind_stem(pk_xop_kind k)
{
    static const char *const s[] = {"conv", "relu", "add", "maxpool", "ppm_pool", "resize",
                                    "concat"};
    return (unsigned)k < sizeof s / sizeof *s ? s[k] : "op";
}

static void conv(ex *x, const pk_xop *op)
{
    ob *b = &x->b;
    int64_t wd[4] = {op->co, op->ci, op->k, op->k}, bd[1] = {op->co};
    const char *in[3] = {x->name[op->in[0]],
                         ob_init_f32(b, ob_strf(b, "%s.weight", op->name), 4, wd, op->weight),
                         ob_init_f32(b, ob_strf(b, "%s.bias", op->name), 1, bd, op->bias)};
    if (b->fail)
        return;
    Onnx__NodeProto *n = ob_node(b, "Conv", op->name, 3, in, x->name[op->out]);
    int64_t k[2] = {op->k, op->k}, s[2] = {op->stride, op->stride};
    int64_t d[2] = {op->dil, op->dil}, p[4] = {op->pad, op->pad, op->pad, op->pad};
    ob_attr_ints(b, n, "kernel_shape", 2, k);
    ob_attr_ints(b, n, "strides", 2, s);
    ob_attr_ints(b, n, "pads", 4, p);
    ob_attr_ints(b, n, "dilations", 2, d);
    ob_attr_int(b, n, "group", 1);
}

/* The shape of value v (Shape node, made once per call site). */
static const char *shape_of(ex *x, const char *v)
{
    const char *out = ob_fresh(&x->b, "shape");
    ob_node(&x->b, "Shape", NULL, 1, &v, out);
    return out;
}

/* s[lo:hi] of a 1-D int64 tensor. */
static const char *slice1(ex *x, const char *s, int64_t lo, int64_t hi)
{
    ob *b = &x->b;
    const char *in[4] = {s, ob_i64(b, lo), ob_i64(b, hi), ob_i64(b, 0)};
    const char *out = ob_fresh(b, "dims");
    ob_node(b, "Slice", NULL, 4, in, out);
    return out;
}

static const char *binop(ex *x, const char *type, const char *a, const char *c)
{
    const char *in[2] = {a, c};
    const char *out = ob_fresh(&x->b, "edge");
    ob_node(&x->b, type, NULL, 2, in, out);
    return out;
}

/* v's mean over [lo, hi) along axis, keeping the axis. lo/hi are value
 * names (1-element int64). */
static const char *mean_slice(ex *x, const char *v, int axis, const char *lo, const char *hi)
{
    ob *b = &x->b;
    const char *in[4] = {v, lo, hi, ob_i64(b, axis)};
    const char *part = ob_fresh(b, "bin");
    ob_node(b, "Slice", NULL, 4, in, part);
    const char *out = ob_fresh(b, "bin_mean");
    Onnx__NodeProto *n = ob_node(b, "ReduceMean", NULL, 1, &part, out);
    int64_t ax[1] = {axis};
    ob_attr_ints(b, n, "axes", 1, ax);
    ob_attr_int(b, n, "keepdims", 1);
    return out;
}

/* Adaptive average pooling along one axis to `bins` with PyTorch's edges
 * floor(i*S/b) .. ceil((i+1)*S/b): S known (size > 0) or read from the
 * runtime shape (size 0). Averaging the rows of each bin and then its
 * columns is the bin's mean: the pooling is separable. */
static const char *adapool_axis(ex *x, const char *v, int axis, int size, int bins,
                                const char *out)
{
    ob *b = &x->b;
    const char *S = NULL;
    if (size <= 0)
        S = slice1(x, shape_of(x, v), axis, axis + 1);
    const char **parts = ob_alloc(b, (size_t)bins * sizeof *parts);
    if (!parts)
        return NULL;
    for (int i = 0; i < bins; i++) {
        const char *lo, *hi;
        if (size > 0) {
            lo = ob_i64(b, (int64_t)i * size / bins);
            hi = ob_i64(b, ((int64_t)(i + 1) * size + bins - 1) / bins);
        } else { /* int64 Div truncates: floor for these non-negative values */
            lo = binop(x, "Div", binop(x, "Mul", S, ob_i64(b, i)), ob_i64(b, bins));
            hi = binop(x, "Div",
                       binop(x, "Add", binop(x, "Mul", S, ob_i64(b, i + 1)),
                             ob_i64(b, bins - 1)),
                       ob_i64(b, bins));
        }
        parts[i] = mean_slice(x, v, axis, lo, hi);
    }
    if (b->fail)
        return NULL;
    if (!out)
        out = ob_fresh(b, "pooled");
    Onnx__NodeProto *n = ob_node(b, "Concat", NULL, bins, parts, out);
    ob_attr_int(b, n, "axis", axis);
    return out;
}

static void adapool(ex *x, const pk_xop *op)
{
    ob *b = &x->b;
    const char *in = x->name[op->in[0]], *out = x->name[op->out];
    int bins = op->bins, fixed = !x->o->dynamic;
    /* the input's grid: the value pooled is layer4's output */
    int S_h = 0, S_w = 0;
    for (int i = 0; fixed && i < x->g->nops; i++)
        if (x->g->ops[i].out == op->in[0]) {
            S_h = x->g->ops[i].h;
            S_w = x->g->ops[i].w;
        }
    if (bins == 1) {
        ob_node(b, "GlobalAveragePool", NULL, 1, &in, out);
    } else if (fixed && S_h % bins == 0 && S_w % bins == 0) {
        Onnx__NodeProto *n = ob_node(b, "AveragePool", NULL, 1, &in, out);
        int64_t k[2] = {S_h / bins, S_w / bins};
        ob_attr_ints(b, n, "kernel_shape", 2, k);
        ob_attr_ints(b, n, "strides", 2, k);
    } else {
        const char *rows = adapool_axis(x, in, 2, S_h, bins, NULL);
        adapool_axis(x, rows, 3, S_w, bins, out);
    }
}

/* Bilinear, align_corners, to the H x W of op->like; sizes [N,C,H,W]. */
static void resize(ex *x, const pk_xop *op)
{
    ob *b = &x->b;
    const char *in = x->name[op->in[0]], *sizes;
    if (!x->o->dynamic) {
        int64_t s[4] = {1, op->c, op->h, op->w};
        sizes = ob_init_i64(b, ob_strf(b, "%s_sizes", x->name[op->out]), 4, s);
    } else {
        const char *cat[2] = {slice1(x, shape_of(x, in), 0, 2),
                              slice1(x, shape_of(x, x->name[op->like]), 2, 4)};
        sizes = ob_fresh(b, "sizes");
        Onnx__NodeProto *n = ob_node(b, "Concat", NULL, 2, cat, sizes);
        ob_attr_int(b, n, "axis", 0);
    }
    const char *ins[4] = {in, "", "", sizes};
    Onnx__NodeProto *n = ob_node(b, "Resize", NULL, 4, ins, x->name[op->out]);
    ob_attr_str(b, n, "mode", "linear");
    ob_attr_str(b, n, "coordinate_transformation_mode", "align_corners");
}

static void emit(ex *x, const pk_xop *op)
{
    ob *b = &x->b;
    const char *in[5];
    for (int j = 0; j < op->nin; j++)
        in[j] = x->name[op->in[j]];
    const char *out = x->name[op->out];
    Onnx__NodeProto *n;
    switch (op->kind) {
    case PK_XOP_CONV: conv(x, op); break;
    case PK_XOP_RELU: ob_node(b, "Relu", NULL, 1, in, out); break;
    case PK_XOP_ADD: ob_node(b, "Add", NULL, 2, in, out); break;
    case PK_XOP_MAXPOOL: {
        int64_t k[2] = {3, 3}, s[2] = {2, 2}, p[4] = {1, 1, 1, 1};
        n = ob_node(b, "MaxPool", NULL, 1, in, out);
        ob_attr_ints(b, n, "kernel_shape", 2, k);
        ob_attr_ints(b, n, "strides", 2, s);
        ob_attr_ints(b, n, "pads", 4, p);
        break;
    }
    case PK_XOP_ADAPOOL: adapool(x, op); break;
    case PK_XOP_RESIZE: resize(x, op); break;
    case PK_XOP_CONCAT:
        n = ob_node(b, "Concat", NULL, op->nin, in, out);
        ob_attr_int(b, n, "axis", 1);
        break;
    }
}

static int name_values(ex *x)
{
    const pk_xgraph *g = x->g;
    x->name = ob_alloc(&x->b, (size_t)g->nvals * sizeof *x->name);
    if (!x->name)
        return -1;
    x->name[g->v_image] = "image";
    for (int i = 0; i < g->nops; i++) {
        const pk_xop *op = &g->ops[i];
        x->name[op->out] = op->kind == PK_XOP_CONV
                               ? ob_strf(&x->b, "%s", op->name)
                               : ob_strf(&x->b, "%s_%d", kind_stem(op->kind), op->out);
    }
    x->name[g->v_main] = "main";
    if (g->v_aux >= 0)
        x->name[g->v_aux] = "aux";
    return x->b.fail ? -1 : 0;
}

static Onnx__ModelProto *model(ex *x, Onnx__GraphProto *graph)
{
    ob *b = &x->b;
    Onnx__ModelProto *m = ob_alloc(b, sizeof *m);
    Onnx__OperatorSetIdProto *ops = ob_alloc(b, sizeof *ops);
    Onnx__OperatorSetIdProto **opl = ob_alloc(b, sizeof *opl);
    int nm = x->o->n_meta;
    Onnx__StringStringEntryProto **meta = ob_alloc(b, (size_t)nm * sizeof *meta);
    if (!m || !ops || !opl || !meta)
        return NULL;
    onnx__model_proto__init(m);
    onnx__operator_set_id_proto__init(ops);
    ops->domain = "";
    ops->has_version = 1;
    ops->version = PK_ONNX_OPSET;
    opl[0] = ops;
    for (int i = 0; i < nm; i++) {
        Onnx__StringStringEntryProto *kv = ob_alloc(b, sizeof *kv);
        if (!kv)
            return NULL;
        onnx__string_string_entry_proto__init(kv);
        kv->key = ob_strf(b, "%s", x->o->meta_key[i]);
        kv->value = ob_strf(b, "%s", x->o->meta_val[i]);
        meta[i] = kv;
    }
    m->has_ir_version = 1;
    m->ir_version = PK_ONNX_IR_VERSION;
    m->n_opset_import = 1;
    m->opset_import = opl;
    m->producer_name = "pspkd seg-export";
    m->producer_version = ob_strf(b, "%s", x->o->producer_version ? x->o->producer_version : "");
    m->has_model_version = 1;
    m->model_version = 1;
    m->n_metadata_props = (size_t)nm;
    m->metadata_props = meta;
    m->graph = graph;
    return b->fail ? NULL : m;
}

static Onnx__GraphProto *graph(ex *x)
{
    ob *b = &x->b;
    const pk_xgraph *g = x->g;
    for (int i = 0; i < g->nops && !b->fail; i++)
        emit(x, &g->ops[i]);
    Onnx__GraphProto *gr = ob_alloc(b, sizeof *gr);
    int nout = g->v_aux >= 0 ? 2 : 1;
    Onnx__ValueInfoProto **in = ob_alloc(b, sizeof *in);
    Onnx__ValueInfoProto **out = ob_alloc(b, (size_t)nout * sizeof *out);
    if (!gr || !in || !out)
        return NULL;
    onnx__graph_proto__init(gr);
    int dyn = x->o->dynamic;
    int64_t di[4] = {dyn ? 0 : 1, 3, dyn ? 0 : g->h, dyn ? 0 : g->w};
    int64_t dout[4] = {di[0], g->classes, di[2], di[3]};
    static const char *const sym[4] = {"N", "C", "H", "W"};
    in[0] = ob_value_info(b, "image", 4, di, sym);
    out[0] = ob_value_info(b, "main", 4, dout, sym);
    if (nout == 2)
        out[1] = ob_value_info(b, "aux", 4, dout, sym);
    gr->name = "pspnet";
    gr->n_node = b->nnodes;
    gr->node = b->nodes;
    gr->n_initializer = b->ninits;
    gr->initializer = b->inits;
    gr->n_input = 1;
    gr->input = in;
    gr->n_output = (size_t)nout;
    gr->output = out;
    return b->fail ? NULL : gr;
}

int pk_onnx_write(const pk_xgraph *g, const pk_onnx_opts *o, const char *path, pk_err *e)
{
    if (o->n_meta < 0 || o->n_meta > PK_ONNX_MAX_META)
        return pk_fail(e, PK_EINVAL, "export: %d metadata entries (at most %d)", o->n_meta,
                       PK_ONNX_MAX_META);
    ex x = {.g = g, .o = o};
    Onnx__ModelProto *m = NULL;
    if (!name_values(&x))
        m = model(&x, graph(&x));
    int rc = m ? ob_write(&m->base, path, e)
               : pk_fail(e, PK_ENOMEM, "export: out of memory building the ONNX graph");
    ob_free(&x.b);
    return rc;
}
