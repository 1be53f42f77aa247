/* 2-D convolution on NHWC activations and OHWI weights through oneDNN.
 *
 * oneDNN's fast CPU kernels (brgconv / jit avx512) take NHWC activations
 * directly but want the weights blocked (e.g. Ohwi32o forward, OIhw16o16i
 * backward-data); with plain OHWI weights it falls back to a reference loop
 * hundreds of times slower. So each primitive is created with
 * format_tag_any for the weights, and the weights (small next to the
 * activations: well under 1 ms here) are reordered into a context scratch
 * buffer on every call; the weight gradient is reordered back and
 * accumulated into the caller's OHWI dw by the reorder's sum post-op.
 *
 * Wide 3x3 stride-1 undilated convolutions (PSPNet's cls and aux heads;
 * the dilated ones of layer3/layer4 too, split into their phases by
 * conv_phase.c) run by Winograd F(4x4, 3x3) (conv_wino.c) where it gains,
 * with float errors of a few 1e-6, within the parity tolerances.
 * pk_ctx_opts.conv_algo (PSPKD_CONV) chooses.
 *
 * The bf16 precision (pk_ctx_opts.precision) keeps every tensor fp32 in
 * memory; a pass that runs in bf16 (pass_bf16: the forwards and the 3x3
 * backward-data of the direct convolutions) reads bf16 copies of its
 * activation input (pk_f32_to_bf16, into scratch) and of the weights (the
 * weights' reorder converts) and writes fp32 (oneDNN accumulates in fp32).
 * The backward of the 1x1 stride-1 convolutions runs as bf16 matmuls
 * (gemm_1x1_bf16), and Winograd's products run in bf16 (conv_wino.c).
 *
 * Primitives, their memory objects and reorders are built once per shape
 * and kept in the context's cache; the scratchpad is user-managed, so
 * nothing is allocated per call once a shape has been seen. */
#include "ops/conv_phase.h"
#include "ops/conv_wino.h"
#include "core/ctx_impl.h"
#include "ops/matmul_bf16.h"
#include "ops/ops.h"
#include "ops/ops_cuda.h"

#include <stdlib.h>
#include <string.h>

int pk_conv_out_size(int in, int k, int stride, int pad, int dil)
{
    long num = (long)in + 2L * pad - (long)dil * (k - 1) - 1;
    if (in <= 0 || k <= 0 || stride <= 0 || pad < 0 || dil <= 0 || num < 0)
        return 0;
    return (int)(num / stride + 1);
}

pk_conv_desc pk_conv_desc_make(int n, int h, int w, int ci, int co, int k, int stride,
                               int pad, int dil, int bias)
{
    pk_conv_desc d = {n, h, w, ci, co, k, stride, pad, dil, bias ? 1 : 0, 0, 0};
    d.ho = pk_conv_out_size(h, k, stride, pad, dil);
    d.wo = pk_conv_out_size(w, k, stride, pad, dil);
    return d;
}

double pk_conv_flops(const pk_conv_desc *d)
{
    return 2.0 * d->n * d->ho * d->wo * (double)d->co * d->ci * d->k * d->k;
}

static int check_desc(const pk_conv_desc *d, pk_err *e)
{
    if (d->n <= 0 || d->h <= 0 || d->w <= 0 || d->ci <= 0 || d->co <= 0 || d->k <= 0 ||
        d->stride <= 0 || d->pad < 0 || d->dil <= 0)
        return pk_fail(e, PK_EINVAL,
                       "conv: bad shape n=%d h=%d w=%d ci=%d co=%d k=%d stride=%d pad=%d dil=%d",
                       d->n, d->h, d->w, d->ci, d->co, d->k, d->stride, d->pad, d->dil);
    int ho = pk_conv_out_size(d->h, d->k, d->stride, d->pad, d->dil);
    int wo = pk_conv_out_size(d->w, d->k, d->stride, d->pad, d->dil);
    if (ho <= 0 || wo <= 0 || ho != d->ho || wo != d->wo)
        return pk_fail(e, PK_EINVAL, "conv: output %dx%d does not match %dx%d for input %dx%d",
                       d->ho, d->wo, ho, wo, d->h, d->w);
    return PK_OK;
}

/* ---- cached primitives ------------------------------------------------- */
enum conv_kind { CONV_FWD = 1, CONV_BWD_DATA, CONV_BWD_WEIGHTS };

/* A forward's folded epilogue (pk_conv_epilogue) as oneDNN runs it: the
 * scale in the weights' reorder, the shift as bias, then post-ops: the
 * residual (a sum when it is y itself, else a binary add) and the ReLU;
 * y and the residual in bf16 or fp32. */
enum { EPI_FOLD = 1, EPI_RELU = 2, EPI_SUM = 4, EPI_ADD = 8, EPI_Y16 = 16, EPI_R16 = 32 };

static int epi_of(const pk_conv_epilogue *ep, const void *y)
{
    if (!ep)
        return 0;
    return EPI_FOLD | (ep->relu ? EPI_RELU : 0) |
           (!ep->res ? 0 : ep->res == y ? EPI_SUM : EPI_ADD) | (ep->y_bf16 ? EPI_Y16 : 0) |
           (ep->res && ep->res_bf16 ? EPI_R16 : 0);
}

/* Cache key: all ints, so no padding bytes take part in the comparison. */
typedef struct conv_key {
    int tag, kind, precision, epi;
    int n, h, w, ci, co, k, stride, pad, dil, bias, ho, wo;
} conv_key;
#define CONV_KEY_TAG 0x636f6e76 /* "conv" */

/* A reorder between the caller's OHWI weights and the primitive's copy of
 * them; to_user: back to the caller's (the weight gradient, accumulated). */
typedef struct user_reorder {
    dnnl_primitive_desc_t pd; /* NULL: none, the primitive takes the user's */
    dnnl_primitive_t prim;
    dnnl_memory_t user, scratch;
    dnnl_memory_t scales; /* per output channel, at run time (EPI_FOLD) */
    size_t scratch_bytes;
    int to_user;
} user_reorder;

typedef struct conv_prim {
    dnnl_primitive_desc_t pd; /* also the hint for the backward descriptors */
    dnnl_primitive_t prim;
    /* The primitive's arguments: act = x or dx, out = y or dy, wei = w or dw
     * in the primitive's layout, bias = b or db (the shift with EPI_FOLD),
     * res = the residual of EPI_ADD. */
    dnnl_memory_t act, out, wei, bias, res, scratch;
    size_t scratch_bytes, wei_bytes;
    /* OHWI <-> wei; none when the primitive takes OHWI itself (never for
     * the weight gradient, whose reorder also does the accumulation). */
    user_reorder wr;
} conv_prim;

static void user_reorder_drop(user_reorder *r)
{
    dnnl_memory_t mems[] = {r->user, r->scratch, r->scales};
    pk_dnnl_release(r->prim, r->pd, mems, 3);
}

static void conv_prim_drop(void *v)
{
    conv_prim *p = v;
    if (!p)
        return;
    user_reorder_drop(&p->wr);
    dnnl_memory_t mems[] = {p->act, p->out, p->wei, p->bias, p->res, p->scratch};
    pk_dnnl_release(p->prim, p->pd, mems, sizeof mems / sizeof *mems);
    free(p);
}

/* The reorder between the caller's weights (user_md) and the primitive's
 * layout prim_md: user -> primitive, or back when to_user, then with
 * dst += src (the weight gradient into the caller's dw); scaled: each
 * output channel's weights times a scale given at run time. */
static int build_user_reorder(pk_ctx *c, user_reorder *r, const dnnl_memory_desc_t *user_md,
                              const dnnl_memory_desc_t *prim_md, int to_user, int scaled,
                              pk_err *e)
{
    r->to_user = to_user;
    dnnl_primitive_attr_t attr = NULL;
    int rc = pk_dnnl_attr_make(&attr, to_user, e);
    if (rc == PK_OK && scaled) {
        float runtime = DNNL_RUNTIME_F32_VAL;
        dnnl_memory_desc_t smd;
        dnnl_dims_t sdims = {user_md->dims[0]};
        rc = pk_dnnl_check(dnnl_primitive_attr_set_output_scales(attr, 1, 1 << 0, &runtime),
                           "reorder scales", e);
        if (rc == PK_OK)
            rc = pk_dnnl_check(dnnl_memory_desc_init_by_tag(&smd, 1, sdims, dnnl_f32, dnnl_a),
                               "scales descriptor", e);
        if (rc == PK_OK)
            rc = pk_dnnl_mem_make(c, &r->scales, &smd, e);
    }
    if (rc == PK_OK)
        rc = pk_dnnl_check(
            to_user ? dnnl_reorder_primitive_desc_create(&r->pd, prim_md, c->engine, user_md,
                                                         c->engine, attr)
                    : dnnl_reorder_primitive_desc_create(&r->pd, user_md, c->engine, prim_md,
                                                         c->engine, attr),
            "reorder descriptor", e);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    if (rc == PK_OK)
        rc = pk_dnnl_check(dnnl_primitive_create(&r->prim, r->pd), "reorder create", e);
    if (rc == PK_OK)
        rc = pk_dnnl_mem_make(c, &r->user, user_md, e);
    r->scratch_bytes = rc == PK_OK ? pk_dnnl_scratch_bytes(r->pd) : 0;
    if (rc == PK_OK && r->scratch_bytes)
        rc = pk_dnnl_mem_make(c, &r->scratch,
                              dnnl_primitive_desc_query_md(r->pd, dnnl_query_scratchpad_md, 0), e);
    return rc;
}

static dnnl_status_t conv_desc_init(dnnl_convolution_desc_t *cd, int kind, dnnl_alg_kind_t alg,
                                    const dnnl_memory_desc_t *act, const dnnl_memory_desc_t *wei,
                                    const dnnl_memory_desc_t *bias,
                                    const dnnl_memory_desc_t *out, const dnnl_dims_t strides,
                                    const dnnl_dims_t dil, const dnnl_dims_t pad)
{
    if (kind == CONV_FWD) /* training: also the hint of the backward passes */
        return dnnl_dilated_convolution_forward_desc_init(cd, dnnl_forward_training, alg, act,
                                                          wei, bias, out, strides, dil, pad, pad);
    if (kind == CONV_BWD_DATA)
        return dnnl_dilated_convolution_backward_data_desc_init(cd, alg, act, wei, out, strides,
                                                                dil, pad, pad);
    return dnnl_dilated_convolution_backward_weights_desc_init(cd, alg, act, wei, bias, out,
                                                               strides, dil, pad, pad);
}

/* Winograd only for wide convolutions (ci*co >= PK_WINO_MIN_CICO: the cls
 * and aux heads, and layer3/layer4 through conv_phase.c), where nearly all
 * of its gain is. The stem's, layer1's and layer2's gain 1.2-1.9x too
 * (10-40 ms of a 1.5 s R50 step), but with them in Winograd as well the
 * forced-Winograd pass of test_model_parity reaches the 1e-3 gradient
 * tolerance (R50, deep stem), so they stay direct. And only with
 * enough 4x4 output tiles: at least 32, or 16 of which at least half the
 * outputs fall inside the map. Measured here (2 threads, forward+backward
 * against direct): 4096->512 on 2 maps of 29x29 (128 tiles) 2.2x faster,
 * 1 of 60x60 3.2x, 8 of 8x8 (32) 1.6x, 2 of 15x15 (32) 1.1x, 8 of 4x4 (8)
 * 0.9x, 1 of 9x9 (9) 0.5x; 512->512 on 16 maps of 4x4 1.2x, 64 or 128 of
 * 2x2 1.7-1.8x, 4 of 5x5 (16 tiles, 39% inside) 0.6x, 16 of 2x2 0.9x. */
int pk_wino_gains(int n, int h, int w)
{
    long tiles = (long)n * ((h + 3) / 4) * ((w + 3) / 4);
    return tiles >= 32 || (tiles >= 16 && 2L * n * h * w >= tiles * 16);
}

/* 1 when d runs through conv_wino.c. */
static int use_winograd(const pk_ctx *c, const pk_conv_desc *d)
{
    return c->conv_algo != PK_CONV_DIRECT && d->k == 3 && d->stride == 1 && d->dil == 1 &&
           d->pad == 1 && (long)d->ci * d->co >= PK_WINO_MIN_CICO &&
           (c->conv_algo == PK_CONV_WINOGRAD || pk_wino_gains(d->n, d->ho, d->wo));
}

static int get_prim(pk_ctx *c, const pk_conv_desc *d, int kind, int epi, conv_prim **out,
                    pk_err *e);

/* 1 when this pass of d runs in bf16 (the bf16 precision, a direct
 * convolution). Measured here (2 threads, R18 train step at 225, oneDNN
 * 2.6): bf16 forwards (brgconv avx512_core_bf16) took 0.2-0.9x the fp32
 * time; 3x3 backward-data 0.3-0.8x (one 1.4x); 1x1 backward-data 0.6-13x
 * (the classifiers' 512/128 -> 21 13x), and backward-weights (jit_bf16)
 * 1.0-11x, worst on the strided layer2.0 convolutions and the 7x7 stem.
 * So backward-weights stays fp32 (on the fp32 x and dy the arena holds),
 * and so does the 1x1 backward-data, except for the 1x1 stride-1
 * convolutions without bias: their backward runs as two bf16 matmuls
 * (gemm_1x1_bf16). */
static int pass_bf16(const pk_ctx *c, const pk_conv_desc *d, int kind)
{
    return c->precision == PK_PREC_BF16 &&
           (kind == CONV_FWD || (kind == CONV_BWD_DATA && d->k > 1));
}

/* The post-ops of epilogue epi (the residual's descriptor res). */
static int epi_attr(dnnl_primitive_attr_t attr, int epi, const dnnl_memory_desc_t *res,
                    pk_err *e)
{
    if (!(epi & (EPI_SUM | EPI_ADD | EPI_RELU)))
        return PK_OK;
    dnnl_post_ops_t po = NULL;
    int rc = pk_dnnl_check(dnnl_post_ops_create(&po), "post-ops create", e);
    if (rc == PK_OK && (epi & EPI_SUM))
        rc = pk_dnnl_check(dnnl_post_ops_append_sum(po, 1.0f), "post-ops sum", e);
    if (rc == PK_OK && (epi & EPI_ADD))
        rc = pk_dnnl_check(dnnl_post_ops_append_binary(po, dnnl_binary_add, res),
                           "post-ops add", e);
    if (rc == PK_OK && (epi & EPI_RELU))
        rc = pk_dnnl_check(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f),
                           "post-ops relu", e);
    if (rc == PK_OK)
        rc = pk_dnnl_check(dnnl_primitive_attr_set_post_ops(attr, po), "attr post-ops", e);
    if (po)
        dnnl_post_ops_destroy(po);
    return rc;
}

static int build_prim(pk_ctx *c, const pk_conv_desc *d, int kind, int epi, conv_prim *p,
                      pk_err *e)
{
    const_dnnl_primitive_desc_t hint = NULL;
    if (kind != CONV_FWD) {
        conv_prim *fwd;
        int rc = get_prim(c, d, CONV_FWD, 0, &fwd, e);
        if (rc != PK_OK)
            return rc;
        hint = fwd->pd;
    }
    int with_bias = (d->bias && kind != CONV_BWD_DATA) || epi;
    /* bf16: the inputs of each pass in bf16 (x, w forward; dy, w backward-
     * data; x, dy backward-weights), its output in fp32. */
    int bf = pass_bf16(c, d, kind);
    dnnl_data_type_t adt = bf && kind != CONV_BWD_DATA ? dnnl_bf16 : dnnl_f32;
    dnnl_data_type_t odt = bf && kind != CONV_FWD ? dnnl_bf16 : dnnl_f32;
    dnnl_data_type_t wdt = bf && kind != CONV_BWD_WEIGHTS ? dnnl_bf16 : dnnl_f32;
    if (epi & EPI_Y16)
        odt = dnnl_bf16;
    dnnl_memory_desc_t act, out, wany, wuser, bias, res;
    dnnl_dims_t adims = {d->n, d->ci, d->h, d->w}, odims = {d->n, d->co, d->ho, d->wo};
    dnnl_dims_t wdims = {d->co, d->ci, d->k, d->k}, bdims = {d->co};
    /* oneDNN counts dilation from 0; the right padding is the left one, and
     * oneDNN's floor rule then gives PyTorch's output size. */
    dnnl_dims_t strides = {d->stride, d->stride}, dil = {d->dil - 1, d->dil - 1},
                pad = {d->pad, d->pad};
    int rc = pk_dnnl_check(dnnl_memory_desc_init_by_tag(&act, 4, adims, adt, dnnl_nhwc),
                           "src descriptor", e);
    if (rc == PK_OK)
        rc = pk_dnnl_check(dnnl_memory_desc_init_by_tag(&out, 4, odims, odt, dnnl_nhwc),
                           "dst descriptor", e);
    if (rc == PK_OK)
        rc = pk_dnnl_check(
            dnnl_memory_desc_init_by_tag(&wany, 4, wdims, wdt, dnnl_format_tag_any),
            "weights descriptor", e);
    if (rc == PK_OK)
        rc = pk_dnnl_check(dnnl_memory_desc_init_by_tag(&wuser, 4, wdims, dnnl_f32, dnnl_ohwi),
                           "OHWI descriptor", e);
    if (rc == PK_OK)
        rc = pk_dnnl_check(dnnl_memory_desc_init_by_tag(&bias, 1, bdims, dnnl_f32, dnnl_a),
                           "bias descriptor", e);
    if (rc == PK_OK)
        rc = pk_dnnl_check(dnnl_memory_desc_init_by_tag(&res, 4, odims,
                                                        epi & EPI_R16 ? dnnl_bf16 : dnnl_f32,
                                                        dnnl_nhwc),
                           "residual descriptor", e);
    if (rc != PK_OK)
        return rc;

    const dnnl_memory_desc_t *bmd = with_bias ? &bias : NULL;
    dnnl_primitive_attr_t attr = NULL;
    rc = pk_dnnl_attr_make(&attr, 0, e);
    if (rc == PK_OK)
        rc = epi_attr(attr, epi, &res, e);
    if (rc == PK_OK) {
        dnnl_convolution_desc_t cd;
        rc = pk_dnnl_check(conv_desc_init(&cd, kind, dnnl_convolution_direct, &act, &wany, bmd,
                                          &out, strides, dil, pad),
                           "convolution descriptor", e);
        if (rc == PK_OK && epi) /* folded: an inference forward, no backward follows */
            cd.prop_kind = dnnl_forward_inference;
        if (rc == PK_OK)
            rc = pk_dnnl_check(dnnl_primitive_desc_create(&p->pd, &cd, attr, c->engine, hint),
                               "convolution primitive descriptor", e);
    }
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    if (rc == PK_OK)
        rc = pk_dnnl_check(dnnl_primitive_create(&p->prim, p->pd), "convolution create", e);
    if (rc != PK_OK)
        return rc;

    const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(
        p->pd, kind == CONV_BWD_WEIGHTS ? dnnl_query_diff_weights_md : dnnl_query_weights_md, 0);
    if (!wmd)
        return pk_fail(e, PK_EBACKEND, "oneDNN: convolution has no weights descriptor");
    p->wei_bytes = dnnl_memory_desc_get_size(wmd);
    p->scratch_bytes = pk_dnnl_scratch_bytes(p->pd);
    rc = pk_dnnl_mem_make(c, &p->act, &act, e);
    if (rc == PK_OK)
        rc = pk_dnnl_mem_make(c, &p->out, &out, e);
    if (rc == PK_OK)
        rc = pk_dnnl_mem_make(c, &p->wei, wmd, e);
    if (rc == PK_OK && with_bias)
        rc = pk_dnnl_mem_make(c, &p->bias, &bias, e);
    if (rc == PK_OK && (epi & EPI_ADD))
        rc = pk_dnnl_mem_make(c, &p->res, &res, e);
    if (rc == PK_OK && p->scratch_bytes)
        rc = pk_dnnl_mem_make(c, &p->scratch,
                              dnnl_primitive_desc_query_md(p->pd, dnnl_query_scratchpad_md, 0), e);
    /* folded, the scale always goes through the reorder */
    if (rc == PK_OK &&
        (kind == CONV_BWD_WEIGHTS || epi || !dnnl_memory_desc_equal(wmd, &wuser)))
        rc = build_user_reorder(c, &p->wr, &wuser, wmd, kind == CONV_BWD_WEIGHTS, epi != 0, e);
    return rc;
}

typedef struct prim_arg {
    const pk_conv_desc *d;
    int kind, epi;
} prim_arg;

static int build_cached(pk_ctx *c, void *value, const void *arg, pk_err *e)
{
    const prim_arg *a = arg;
    return build_prim(c, a->d, a->kind, a->epi, value, e);
}

static int get_prim(pk_ctx *c, const pk_conv_desc *d, int kind, int epi, conv_prim **out,
                    pk_err *e)
{
    conv_key key = {CONV_KEY_TAG, kind, pass_bf16(c, d, kind), epi, d->n, d->h, d->w, d->ci,
                    d->co, d->k, d->stride, d->pad, d->dil, kind == CONV_BWD_DATA ? 0 : d->bias,
                    d->ho, d->wo};
    prim_arg a = {d, kind, epi};
    *out = pk_ctx_cache_get(c, &key, sizeof key, sizeof **out, build_cached, &a, conv_prim_drop, e);
    return *out ? PK_OK : e->code;
}

int pk_conv2d_winograd(pk_ctx *c, const pk_conv_desc *d, pk_err *e)
{
    return check_desc(d, e) == PK_OK ? use_winograd(c, d) : -1;
}

/* ---- execution ---------------------------------------------------------- */
/* Binds the scratchpads (one buffer: the reorder and the convolution run
 * one after the other) and the weights buffer in the primitive's layout. */
static int bind_scratch(pk_ctx *c, conv_prim *p, int wslot, const void *user_w, pk_err *e)
{
    size_t sb = p->scratch_bytes > p->wr.scratch_bytes ? p->scratch_bytes : p->wr.scratch_bytes;
    dnnl_memory_t mems[] = {p->scratch, p->wr.scratch};
    int rc = PK_OK;
    if (sb) {
        void *s = pk_ctx_scratch(c, PK_SCRATCH_DNNL, sb, e);
        if (!s)
            return PK_ENOMEM;
        for (int i = 0; i < 2 && rc == PK_OK; i++)
            if (mems[i])
                rc = pk_dnnl_bind(c, mems[i], s, e);
    }
    if (rc != PK_OK)
        return rc;
    if (!p->wr.prim) /* the primitive takes OHWI as it is */
        return pk_dnnl_bind(c, p->wei, user_w, e);
    void *wbuf = pk_ctx_scratch(c, wslot, p->wei_bytes, e);
    if (!wbuf)
        return PK_ENOMEM;
    rc = pk_dnnl_bind(c, p->wei, wbuf, e);
    if (rc == PK_OK)
        rc = pk_dnnl_bind(c, p->wr.user, user_w, e);
    return rc;
}

/* Runs r between the caller's tensor and prim_mem, the primitive's copy
 * (r->scales bound first when r has them). */
static int run_user_reorder(pk_ctx *c, const user_reorder *r, dnnl_memory_t prim_mem,
                            pk_err *e)
{
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_FROM, r->to_user ? prim_mem : r->user},
                               {DNNL_ARG_TO, r->to_user ? r->user : prim_mem}};
    int nargs = 2;
    if (r->scratch)
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, r->scratch};
    if (r->scales)
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_OUTPUT_SCALES, r->scales};
    return pk_dnnl_check(dnnl_primitive_execute(r->prim, c->stream, nargs, args), "reorder",
                         e);
}

/* Binds the caller's activation (x or dx) and output (y or dy). */
static int bind_acts(pk_ctx *c, conv_prim *p, const void *act, const void *out, pk_err *e)
{
    int rc = pk_dnnl_bind(c, p->act, act, e);
    return rc == PK_OK ? pk_dnnl_bind(c, p->out, out, e) : rc;
}

static int run_conv(pk_ctx *c, conv_prim *p, dnnl_exec_arg_t *args, int nargs, pk_err *e)
{
    if (p->scratch)
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, p->scratch};
    int rc = pk_dnnl_check(dnnl_primitive_execute(p->prim, c->stream, nargs, args),
                           "convolution execute", e);
    if (rc == PK_OK)
        rc = pk_dnnl_check(dnnl_stream_wait(c->stream), "stream wait", e);
    return rc;
}

/* An input of a pass as its primitive reads it: t itself in fp32; when
 * the pass runs in bf16, tq when the caller gave it, else a bf16 copy of
 * its n values in scratch slot `slot`, or NULL. */
static const void *pass_input_q(pk_ctx *c, int bf, int slot, const float *t,
                                const uint16_t *tq, size_t n, pk_err *e)
{
    if (!bf)
        return t;
    if (tq)
        return tq;
    uint16_t *h = pk_ctx_scratch(c, slot, n * sizeof *h, e);
    if (h)
        pk_f32_to_bf16(c, h, t, n);
    return h;
}

static const void *pass_input(pk_ctx *c, int bf, int slot, const float *t, size_t n, pk_err *e)
{
    return pass_input_q(c, bf, slot, t, NULL, n, e);
}

static size_t x_count(const pk_conv_desc *d) { return (size_t)d->n * d->h * d->w * d->ci; }
static size_t y_count(const pk_conv_desc *d) { return (size_t)d->n * d->ho * d->wo * d->co; }

static int forward(pk_ctx *c, void *y, const float *xf, const uint16_t *xq, const float *w,
                   const float *b, const pk_conv_epilogue *ep, const pk_conv_desc *d, pk_err *e)
{
    conv_prim *p;
    int epi = epi_of(ep, y);
    int rc = get_prim(c, d, CONV_FWD, epi, &p, e);
    const void *x = rc == PK_OK ? pass_input_q(c, pass_bf16(c, d, CONV_FWD), PK_SCRATCH_BF16_A,
                                               xf, xq, x_count(d), e)
                                : NULL;
    if (rc == PK_OK && !x)
        rc = PK_ENOMEM;
    if (rc == PK_OK)
        rc = bind_scratch(c, p, PK_SCRATCH_WEIGHTS, w, e);
    if (rc == PK_OK && p->wr.scales)
        rc = pk_dnnl_bind(c, p->wr.scales, ep->scale, e);
    if (rc == PK_OK && p->wr.prim)
        rc = run_user_reorder(c, &p->wr, p->wei, e);
    if (rc == PK_OK)
        rc = bind_acts(c, p, x, y, e);
    if (rc == PK_OK && p->bias)
        rc = pk_dnnl_bind(c, p->bias, ep ? ep->shift : b, e);
    if (rc == PK_OK && p->res)
        rc = pk_dnnl_bind(c, p->res, ep->res, e);
    if (rc != PK_OK)
        return rc;
    dnnl_exec_arg_t args[6] = {
        {DNNL_ARG_SRC, p->act}, {DNNL_ARG_WEIGHTS, p->wei}, {DNNL_ARG_DST, p->out}};
    int nargs = 3;
    if (p->bias)
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, p->bias};
    if (p->res) /* the binary add, the first post-op */
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, p->res};
    return run_conv(c, p, args, nargs, e);
}

int pk_conv2d_forward(pk_ctx *c, float *y, const float *x, const float *w, const float *b,
                      const pk_conv_desc *d, pk_err *e)
{
    return pk_conv2d_forward_xq(c, y, x, NULL, w, b, d, e);
}

int pk_conv_reads_xq_only(pk_ctx *c, const pk_conv_desc *d)
{
    pk_err e = {0};
    return pk_ctx_device(c) == PK_DEV_CPU && check_desc(d, &e) == PK_OK &&
           pass_bf16(c, d, CONV_FWD) && !pk_conv_phase_eligible(c, d) && !use_winograd(c, d);
}

/* The CPU forward, ep folded in when it is not NULL. */
static int forward_cpu(pk_ctx *c, void *y, const float *x, const uint16_t *xq, const float *w,
                       const float *b, const pk_conv_epilogue *ep, const pk_conv_desc *d,
                       pk_err *e)
{
    if (!x && !(xq && pk_conv_reads_xq_only(c, d)))
        return pk_fail(e, PK_EINVAL, "conv: forward: missing x (this path reads it in fp32)");
    if (pk_conv_phase_eligible(c, d))
        return pk_conv_phase_forward(c, y, x, w, b, ep, d, e);
    int saved = pk_ctx_omp_enter(c);
    int rc = use_winograd(c, d) ? pk_wino_forward(c, y, x, w, b, ep, d, e)
                                : forward(c, y, x, xq, w, b, ep, d, e);
    pk_ctx_omp_leave(saved);
    return rc;
}

int pk_conv2d_forward_xq(pk_ctx *c, float *y, const float *x, const uint16_t *xq,
                         const float *w, const float *b, const pk_conv_desc *d, pk_err *e)
{
    int rc = check_desc(d, e);
    if (rc != PK_OK)
        return rc;
    if (!y || (!x && !xq) || !w || (d->bias && !b))
        return pk_fail(e, PK_EINVAL, "conv: forward: missing %s",
                       !y ? "y" : !x && !xq ? "x" : !w ? "w" : "bias");
    PK_ON_CUDA_RETURN(c, x ? pk_cuda_conv2d_forward(c, y, x, w, b, d, e)
                           : pk_fail(e, PK_EINVAL, "conv: forward: missing x"));
    return forward_cpu(c, y, x, xq, w, b, NULL, d, e);
}

int pk_conv2d_forward_fused(pk_ctx *c, void *y, const float *x, const uint16_t *xq,
                            const float *w, const pk_conv_epilogue *ep, const pk_conv_desc *d,
                            pk_err *e)
{
    int rc = check_desc(d, e);
    if (rc != PK_OK)
        return rc;
    if (!y || (!x && !xq) || !w || !ep || !ep->scale || !ep->shift)
        return pk_fail(e, PK_EINVAL, "conv: fused forward: missing %s",
                       !y ? "y" : !x && !xq ? "x" : !w ? "w" : "the epilogue's scale or shift");
    if (d->bias)
        return pk_fail(e, PK_EINVAL, "conv: fused forward: the convolution has a bias");
    if (pk_ctx_device(c) != PK_DEV_CPU)
        return pk_fail(e, PK_EINVAL, "conv: fused forward: CPU only");
    return forward_cpu(c, y, x, xq, w, NULL, ep, d, e);
}

/* dy: as pass_input gives it (bf16 when the pass runs in bf16). */
static int backward_data(pk_ctx *c, float *dx, const void *dy, const float *w,
                         const pk_conv_desc *d, pk_err *e)
{
    conv_prim *p;
    int rc = get_prim(c, d, CONV_BWD_DATA, 0, &p, e);
    if (rc == PK_OK)
        rc = bind_scratch(c, p, PK_SCRATCH_WEIGHTS, w, e);
    if (rc == PK_OK && p->wr.prim)
        rc = run_user_reorder(c, &p->wr, p->wei, e);
    if (rc == PK_OK)
        rc = bind_acts(c, p, dx, dy, e);
    if (rc != PK_OK)
        return rc;
    dnnl_exec_arg_t args[4] = {
        {DNNL_ARG_DIFF_DST, p->out}, {DNNL_ARG_WEIGHTS, p->wei}, {DNNL_ARG_DIFF_SRC, p->act}};
    return run_conv(c, p, args, 3, e);
}

/* dy: as pass_input gives it (bf16 when the pass runs in bf16). */
static int backward_weights(pk_ctx *c, float *dw, float *db, const void *dy, const float *xf,
                            const pk_conv_desc *d, pk_err *e)
{
    conv_prim *p;
    int rc = get_prim(c, d, CONV_BWD_WEIGHTS, 0, &p, e);
    const void *x = rc == PK_OK ? pass_input(c, pass_bf16(c, d, CONV_BWD_WEIGHTS),
                                             PK_SCRATCH_BF16_A, xf, x_count(d), e)
                                : NULL;
    if (rc == PK_OK && !x)
        rc = PK_ENOMEM;
    if (rc == PK_OK)
        rc = bind_scratch(c, p, PK_SCRATCH_DWEIGHTS, dw, e);
    if (rc == PK_OK)
        rc = bind_acts(c, p, x, dy, e);
    float *dbias = NULL;
    if (rc == PK_OK && p->bias) {
        dbias = pk_ctx_scratch(c, PK_SCRATCH_DBIAS, (size_t)d->co * sizeof *dbias, e);
        rc = dbias ? pk_dnnl_bind(c, p->bias, dbias, e) : PK_ENOMEM;
    }
    if (rc != PK_OK)
        return rc;
    dnnl_exec_arg_t args[5] = {
        {DNNL_ARG_SRC, p->act}, {DNNL_ARG_DIFF_DST, p->out}, {DNNL_ARG_DIFF_WEIGHTS, p->wei}};
    int nargs = 3;
    if (p->bias)
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_BIAS, p->bias};
    rc = run_conv(c, p, args, nargs, e);
    if (rc == PK_OK) /* dw += the gradient, through the reorder's sum post-op */
        rc = run_user_reorder(c, &p->wr, p->wei, e);
    if (rc == PK_OK)
        rc = pk_dnnl_check(dnnl_stream_wait(c->stream), "stream wait", e);
    if (rc == PK_OK && db)
        for (int i = 0; i < d->co; i++)
            db[i] += dbias[i];
    return rc;
}

/* The backward of a wide-input 1x1 convolution (layer2-4's 512/1024/2048 ->
 * 128/256/512, layer4's 512 -> 2048 and the downsamples) as the two GEMMs
 * it is on NHWC tensors: dx[P,ci] = dy[P,co] w[co,ci], dw[co,ci] += dy^T x.
 * oneDNN's sgemm ran them 1.15-2.2x faster than its backward convolution
 * kernels at these shapes (2 threads, 2x29x29: 2048->512 weights 27 -> 13
 * ms; 512->2048 both 31 -> 25 ms); with 256 or fewer input channels the
 * convolution kernels were as fast or faster (0.91-1.08), so they stay. */
static int gemm_1x1(const pk_ctx *c, const pk_conv_desc *d)
{
    return c->conv_algo != PK_CONV_DIRECT && d->k == 1 && d->stride == 1 && d->pad == 0 &&
           d->dil == 1 && !d->bias && d->ci >= 512;
}

static int gemm_1x1_backward(float *dx, float *dw, const float *dy, const float *x,
                             const float *w, const pk_conv_desc *d, pk_err *e)
{
    long P = (long)d->n * d->h * d->w;
    dnnl_status_t s = dnnl_success;
    if (dx)
        s = dnnl_sgemm('N', 'N', P, d->ci, d->co, 1.0f, dy, d->co, w, d->ci, 0.0f, dx, d->ci);
    if (s == dnnl_success && dw)
        s = dnnl_sgemm('T', 'N', d->co, d->ci, P, 1.0f, dy, d->co, x, d->ci, 1.0f, dw, d->ci);
    return pk_dnnl_check(s, "sgemm (1x1 convolution backward)", e);
}

/* The same two products in the bf16 precision, for every 1x1 stride-1
 * convolution without bias: bf16 copies of dy, w and x, fp32 results
 * (oneDNN's bf16 matmul). oneDNN 2.6's bf16 backward convolution kernels
 * were slower than its fp32 ones here; its bf16 matmul runs these
 * products 1.8-2.1x faster than sgemm (1 thread, R50 layer3 shapes at
 * 2x29x29). */
static int gemm_1x1_bf16(const pk_ctx *c, const pk_conv_desc *d)
{
    return c->precision == PK_PREC_BF16 && c->conv_algo != PK_CONV_DIRECT && d->k == 1 &&
           d->stride == 1 && d->pad == 0 && d->dil == 1 && !d->bias;
}

static int gemm_1x1_backward_bf16(pk_ctx *c, float *dx, float *dw, const float *dy,
                                  const float *x, const uint16_t *xq, const float *w,
                                  const pk_conv_desc *d, pk_err *e)
{
    long P = (long)d->n * d->h * d->w, ci = d->ci, co = d->co;
    const void *dyq = pass_input(c, 1, PK_SCRATCH_BF16_B, dy, y_count(d), e);
    int rc = dyq ? PK_OK : PK_ENOMEM;
    if (rc == PK_OK && dx) { /* dx [P x ci] = dy [P x co] . w [co x ci] */
        const void *wq = pass_input(c, 1, PK_SCRATCH_WEIGHTS, w, (size_t)co * ci, e);
        pk_bmm_desc m = {1, P, ci, co, {P * co, co, 1}, {co * ci, ci, 1}, {P * ci, ci, 1}, 0};
        rc = wq ? pk_bmm_bf16(c, &m, dx, dyq, wq, e) : PK_ENOMEM;
    }
    if (rc == PK_OK && dw) { /* dw [co x ci] += dy^T [co x P] . x [P x ci] */
        const void *xb = pass_input_q(c, 1, PK_SCRATCH_BF16_A, x, xq, x_count(d), e);
        pk_bmm_desc m = {1, co, ci, P, {P * co, 1, co}, {P * ci, ci, 1}, {co * ci, ci, 1}, 1};
        rc = xb ? pk_bmm_bf16(c, &m, dw, dyq, xb, e) : PK_ENOMEM;
    }
    return rc;
}

/* Only the bf16 1x1 matmuls take xq alone: every other path (CUDA, the
 * 3x3 Winograd and phase paths, the direct kernels) reads x itself. */
int pk_conv_backward_needs_x(pk_ctx *c, const pk_conv_desc *d)
{
    return c->device != PK_DEV_CPU || !gemm_1x1_bf16(c, d);
}

/* dx == NULL skips backward-data; dw == NULL skips backward-weights (and
 * with it db, which only comes with the weight gradient). */
int pk_conv2d_backward(pk_ctx *c, float *dx, float *dw, float *db, const float *dy,
                       const float *x, const float *w, const pk_conv_desc *d, pk_err *e)
{
    return pk_conv2d_backward_xq(c, dx, dw, db, dy, x, NULL, w, d, e);
}

int pk_conv2d_backward_xq(pk_ctx *c, float *dx, float *dw, float *db, const float *dy,
                          const float *x, const uint16_t *xq, const float *w,
                          const pk_conv_desc *d, pk_err *e)
{
    int rc = check_desc(d, e);
    if (rc != PK_OK)
        return rc;
    int no_x = dw && !x && (!xq || pk_conv_backward_needs_x(c, d));
    if (!dy || (dx && !w) || no_x)
        return pk_fail(e, PK_EINVAL, "conv: backward: missing %s",
                       !dy ? "dy" : (dx && !w) ? "w" : "x");
    PK_ON_CUDA_RETURN(c, pk_cuda_conv2d_backward(c, dx, dw, db, dy, x, w, d, e));
    if (pk_conv_phase_eligible(c, d))
        return pk_conv_phase_backward(c, dx, dw, d->bias ? db : NULL, dy, x, w, d, e);
    int saved = pk_ctx_omp_enter(c);
    if (use_winograd(c, d)) {
        rc = pk_wino_backward(c, dx, dw, d->bias ? db : NULL, dy, x, w, d, e);
    } else if (gemm_1x1_bf16(c, d)) {
        rc = gemm_1x1_backward_bf16(c, dx, dw, dy, x, xq, w, d, e);
    } else if (gemm_1x1(c, d)) {
        rc = gemm_1x1_backward(dx, dw, dy, x, w, d, e); /* team: pk_ctx_omp_enter */
    } else {
        /* dy in bf16 once for both passes (where either runs in bf16) */
        int bd = dx && pass_bf16(c, d, CONV_BWD_DATA), bw = dw && pass_bf16(c, d, CONV_BWD_WEIGHTS);
        const void *dyq = pass_input(c, bd || bw, PK_SCRATCH_BF16_B, dy, y_count(d), e);
        if (!dyq)
            rc = PK_ENOMEM;
        if (rc == PK_OK && dx)
            rc = backward_data(c, dx, bd ? dyq : dy, w, d, e);
        if (rc == PK_OK && dw)
            rc = backward_weights(c, dw, d->bias ? db : NULL, bw ? dyq : dy, x, d, e);
    }
    pk_ctx_omp_leave(saved);
    return rc;
}

int pk_conv_bf16_supported(pk_ctx *c, pk_err *e)
{
    dnnl_memory_desc_t src, wei, dst;
    dnnl_dims_t adims = {1, 16, 8, 8}, wdims = {16, 16, 3, 3};
    dnnl_dims_t strides = {1, 1}, dil = {0, 0}, pad = {1, 1};
    int rc = pk_dnnl_check(dnnl_memory_desc_init_by_tag(&src, 4, adims, dnnl_bf16, dnnl_nhwc),
                           "src descriptor", e);
    if (rc == PK_OK)
        rc = pk_dnnl_check(dnnl_memory_desc_init_by_tag(&dst, 4, adims, dnnl_f32, dnnl_nhwc),
                           "dst descriptor", e);
    if (rc == PK_OK)
        rc = pk_dnnl_check(
            dnnl_memory_desc_init_by_tag(&wei, 4, wdims, dnnl_bf16, dnnl_format_tag_any),
            "weights descriptor", e);
    dnnl_convolution_desc_t cd;
    if (rc == PK_OK)
        rc = pk_dnnl_check(conv_desc_init(&cd, CONV_FWD, dnnl_convolution_direct, &src, &wei,
                                          NULL, &dst, strides, dil, pad),
                           "convolution descriptor", e);
    if (rc != PK_OK)
        return rc;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_primitive_desc_create(&pd, &cd, NULL, c->engine, NULL);
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    if (st != dnnl_success)
        return pk_fail(e, PK_EBACKEND,
                       "bf16 convolutions are not available on this CPU (oneDNN needs "
                       "AVX-512; use --precision fp32)");
    return PK_OK;
}
