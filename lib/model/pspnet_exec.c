/* Runs a plan's nodes: the forward in order, the backward in reverse, each
 * node one call into the op library on pointers resolved from the arena. */
#include "model/pspnet_impl.h"

#include "core/rng.h"
#include "ops/bn_sync.h"

#include <stdlib.h>
#include <string.h>

float *pk_plan_ptr(const pk_model *m, const pk_plan *p, float *const *ext, int v)
{
    if (v < 0)
        return NULL;
    const pk_value *x = &p->vals[v];
    if (x->ext != PK_EXT_NONE)
        return ext[x->ext];
    return x->storage < 0 ? NULL : m->arena + p->stor_off[x->storage]; /* < 0: folded away */
}

static size_t count_of(const pk_value *v)
{
    return (size_t)v->n * (size_t)v->h * (size_t)v->w * (size_t)v->c;
}

static long pixels_of(const pk_value *v) { return (long)v->n * v->h * v->w; }

/* After the forward computed v: its bf16 shadow, where the plan keeps one
 * (a BN's input waits for the BN, below). */
static void pack_kept(pk_model *m, const pk_plan *p, float *const *ext, int v)
{
    const pk_value *x = &p->vals[v];
    if (x->shadow >= 0 && x->center < 0)
        pk_f32_to_bf16(m->ctx, (uint16_t *)pk_plan_ptr(m, p, ext, x->shadow),
                       pk_plan_ptr(m, p, ext, v), count_of(x));
}

/* After a BN's forward: its input's shadow, as x - the batch mean. */
static void pack_bn_input(pk_model *m, const pk_plan *p, float *const *ext, const pk_node *nd)
{
    const pk_value *x = &p->vals[nd->in[0]];
    if (nd->kind == PK_N_BN && x->shadow >= 0)
        pk_f32_to_bf16_centered(m->ctx, (uint16_t *)pk_plan_ptr(m, p, ext, x->shadow),
                                pk_plan_ptr(m, p, ext, nd->in[0]),
                                pk_plan_ptr(m, p, ext, x->center), pixels_of(x), x->c);
}

/* v rounded to bf16, as its shadow holds it (not centred), or NULL. */
static const uint16_t *bf16_copy(const pk_model *m, const pk_plan *p, float *const *ext, int v)
{
    const pk_value *x = &p->vals[v];
    return x->shadow >= 0 && x->center < 0 ? (const uint16_t *)pk_plan_ptr(m, p, ext, x->shadow)
                                           : NULL;
}

/* A convolution's input v: *x in fp32, or NULL where the plan holds v in
 * bf16, and *xq its bf16 copy where there is one. */
static void conv_input(const pk_model *m, const pk_plan *p, float *const *ext, int v,
                       const float **x, const uint16_t **xq)
{
    const float *t = pk_plan_ptr(m, p, ext, v);
    *x = p->vals[v].half ? NULL : t;
    *xq = p->vals[v].half ? (const uint16_t *)t : bf16_copy(m, p, ext, v);
}

/* An activation the backward reads: v itself, or where the plan keeps it
 * in bf16, its fp32 copy, unpacked the first time this backward reads it. */
static float *kept(pk_model *m, const pk_plan *p, float *const *ext, int v)
{
    const pk_value *x = &p->vals[v];
    if (x->shadow < 0)
        return pk_plan_ptr(m, p, ext, v);
    float *u = pk_plan_ptr(m, p, ext, x->unpacked);
    if (!m->unpacked[v]) {
        const uint16_t *s = (const uint16_t *)pk_plan_ptr(m, p, ext, x->shadow);
        if (x->center >= 0)
            pk_f32_from_bf16_centered(m->ctx, u, s, pk_plan_ptr(m, p, ext, x->center),
                                      pixels_of(x), x->c);
        else
            pk_f32_from_bf16(m->ctx, u, s, count_of(x));
        m->unpacked[v] = 1;
    }
    return u;
}

/* The BN tensors of layer L. */
typedef struct bn_ptrs {
    float *gamma, *beta, *mean, *var, *dgamma, *dbeta;
} bn_ptrs;

static bn_ptrs bn_of(pk_model *m, const pk_layer *L)
{
    const pk_tensor_info *t = &m->tensors[L->bn];
    return (bn_ptrs){m->params + t[0].offset, m->params + t[1].offset,
                     m->state + t[2].offset,  m->state + t[3].offset,
                     m->grads + t[0].offset,  m->grads + t[1].offset};
}

static uint64_t dropout_seed(const pk_exec_args *a, int id)
{
    return pk_hash64(a->drop_seed + 0x632be59bd9b4e019ULL * (uint64_t)(id + 1));
}

/* A device-side copy (a one-input concatenation is a copy). */
static void copy_value(pk_ctx *c, float *dst, const float *src, const pk_value *v)
{
    const float *xs[1] = {src};
    int cs[1] = {v->c};
    pk_concat_forward(c, dst, xs, cs, 1, pixels_of(v));
}

/* *packed: set when the node wrote the bf16 shadows pack_kept and
 * pack_bn_input would (the BN's training forward writes them as it goes). */
static int forward_node(pk_model *m, const pk_plan *p, const pk_node *nd,
                        const pk_node *relu, const pk_exec_args *a, int *packed, pk_err *e)
{
    pk_ctx *c = m->ctx;
    float *const *ext = a->ext;
    const pk_value *xv = &p->vals[nd->in[0]], *yv = &p->vals[nd->out];
    float *x = pk_plan_ptr(m, p, ext, nd->in[0]), *y = pk_plan_ptr(m, p, ext, nd->out);
    if (relu) /* fused: write the ReLU's output directly */
        y = pk_plan_ptr(m, p, ext, relu->out);
    const pk_layer *L = nd->layer >= 0 ? &m->layers[nd->layer] : NULL;
    for (int j = 0; j < nd->nin; j++)
        if (nd->kind != PK_N_CONV && p->vals[nd->in[j]].half)
            return pk_fail(e, PK_EINVAL, "model: internal error: node kind %d reads bf16",
                           nd->kind);
    switch (nd->kind) {
    case PK_N_CONV: {
        const float *w = m->params + m->tensors[L->w].offset;
        const float *b = L->b >= 0 ? m->params + m->tensors[L->b].offset : NULL;
        /* packed right after its producer, or held in bf16: the bf16
         * convolutions take it */
        const float *xf;
        const uint16_t *xq;
        conv_input(m, p, ext, nd->in[0], &xf, &xq);
        if (pk_conv2d_forward_xq(c, y, xf, xq, w, b, &nd->conv, e) != PK_OK)
            return pk_wrap(e, "%s", m->tensors[L->w].name);
        break;
    }
    case PK_N_BN: {
        bn_ptrs bp = bn_of(m, L);
        float *sm = pk_plan_ptr(m, p, ext, nd->save0), *sr = pk_plan_ptr(m, p, ext, nd->save1);
        if (a->train && pk_dist_active(m)) {
            if (pk_bn_sync_forward_train(c, m->comm, y, sm, sr, x, bp.gamma, bp.beta, bp.mean,
                                         bp.var, pixels_of(xv), xv->c, PK_BN_MOMENTUM,
                                         PK_BN_EPS, relu != NULL, e) != PK_OK)
                return pk_wrap(e, "%s", m->tensors[L->bn].name);
        } else if (a->train) {
            const pk_value *ov = &p->vals[relu ? relu->out : nd->out];
            uint16_t *xc = xv->shadow >= 0 ? (uint16_t *)pk_plan_ptr(m, p, ext, xv->shadow) : NULL;
            uint16_t *yq = ov->shadow >= 0 && ov->center < 0
                               ? (uint16_t *)pk_plan_ptr(m, p, ext, ov->shadow)
                               : NULL;
            pk_bn_forward_train_q(c, y, sm, sr, x, bp.gamma, bp.beta, bp.mean, bp.var,
                                  pixels_of(xv), xv->c, PK_BN_MOMENTUM, PK_BN_EPS, relu != NULL,
                                  xc, yq);
            *packed = 1;
        } else
            (relu ? pk_bn_relu_forward_eval : pk_bn_forward_eval)(
                c, y, x, bp.gamma, bp.beta, bp.mean, bp.var, pixels_of(xv), xv->c, PK_BN_EPS);
        break;
    }
    case PK_N_RELU:
        pk_relu_forward(c, y, x, count_of(xv));
        break;
    case PK_N_ADD: {
        const float *b = pk_plan_ptr(m, p, ext, nd->in[1]);
        if (relu)
            pk_add_relu_forward(c, y, x, b, count_of(xv));
        else if (y == x) /* in place */
            pk_accumulate(c, y, b, count_of(xv));
        else
            pk_add_forward(c, y, x, b, count_of(xv));
        break;
    }
    case PK_N_MAXPOOL:
        pk_maxpool_forward(c, y, (int32_t *)pk_plan_ptr(m, p, ext, nd->save0), x, xv->n, xv->h,
                           xv->w, xv->c, 3, 2, 1);
        break;
    case PK_N_ADAPOOL:
        pk_adapool_forward(c, y, x, xv->n, xv->h, xv->w, xv->c, nd->bins);
        break;
    case PK_N_RESIZE:
        pk_resize_forward(c, y, x, xv->n, xv->h, xv->w, xv->c, yv->h, yv->w);
        break;
    case PK_N_CONCAT: {
        const float *xs[PK_NODE_MAX_IN];
        int cs[PK_NODE_MAX_IN];
        for (int j = 0; j < nd->nin; j++) {
            xs[j] = pk_plan_ptr(m, p, ext, nd->in[j]);
            cs[j] = p->vals[nd->in[j]].c;
        }
        pk_concat_forward(c, y, xs, cs, nd->nin, pixels_of(yv));
        break;
    }
    case PK_N_DROPOUT:
        pk_dropout2d_forward_at(c, y, (uint8_t *)pk_plan_ptr(m, p, ext, nd->save0), x, xv->n,
                                (long)xv->h * xv->w, xv->c, a->dropout,
                                dropout_seed(a, nd->drop_id), m->sample0);
        break;
    default:
        return pk_fail(e, PK_EINVAL, "model: internal error: node kind %d", nd->kind);
    }
    return PK_OK;
}

/* Convolution node nd with the nodes it folds in (pspnet_plan.c): its BN
 * as a scale and shift, and the residual and ReLU after it. */
static int forward_folded(pk_model *m, const pk_plan *p, const pk_node *nd,
                          const pk_exec_args *a, pk_err *e)
{
    const pk_layer *L = &m->layers[nd->layer];
    int co = nd->conv.co;
    if (m->fold_cap < co) {
        float *f = realloc(m->fold, 2 * (size_t)co * sizeof *f);
        if (!f)
            return pk_fail(e, PK_ENOMEM, "model: out of memory");
        m->fold = f;
        m->fold_cap = co;
    }
    bn_ptrs bp = bn_of(m, L); /* the BN node after it is the same layer's */
    pk_bn_eval_fold(m->fold, m->fold + co, bp.gamma, bp.beta, bp.mean, bp.var, co, PK_BN_EPS);
    int res = nd->fold == 3 ? nd->fold_res : -1;
    pk_conv_epilogue ep = {m->fold, m->fold + co, pk_plan_ptr(m, p, a->ext, res), nd->fold >= 2,
                           res >= 0 && p->vals[res].half, p->vals[nd->fold_out].half};
    const float *x;
    const uint16_t *xq;
    conv_input(m, p, a->ext, nd->in[0], &x, &xq);
    if (pk_conv2d_forward_fused(m->ctx, pk_plan_ptr(m, p, a->ext, nd->fold_out), x, xq,
                                m->params + m->tensors[L->w].offset, &ep, &nd->conv,
                                e) != PK_OK)
        return pk_wrap(e, "%s", m->tensors[L->w].name);
    return PK_OK;
}

int pk_exec_forward(pk_model *m, const pk_plan *p, const pk_exec_args *a, pk_err *e)
{
    for (int i = 0; i < p->nnodes; i++) {
        const pk_node *nd = &p->nodes[i], *relu = pk_plan_fused_relu(p, i);
        double t0 = m->profile ? pk_prof_now(m) : 0.0;
        if (nd->fold) { /* booked to the convolution */
            int rc = forward_folded(m, p, nd, a, e);
            if (rc != PK_OK)
                return rc;
            if (m->profile)
                pk_prof_add(m, nd->group, nd->kind, PK_PROF_FWD, pk_prof_now(m) - t0);
            i += nd->fold;
            continue;
        }
        int packed = 0;
        int rc = forward_node(m, p, nd, relu, a, &packed, e);
        if (rc != PK_OK)
            return rc;
        /* fused, the pre-ReLU value never exists and is never kept */
        if (!packed) {
            pack_kept(m, p, a->ext, relu ? relu->out : nd->out);
            pack_bn_input(m, p, a->ext, nd);
        }
        if (m->profile) /* a fused ReLU's time is booked to the BN or add */
            pk_prof_add(m, nd->group, nd->kind, PK_PROF_FWD, pk_prof_now(m) - t0);
        i += relu != NULL;
    }
    return PK_OK;
}

/* The ReLU node whose backward can be fused into BN node i's (see
 * pk_plan_fused_relu; the ReLU's input gradient then never materialises),
 * or NULL: on the CPU, and when the ReLU writes that gradient directly. */
static const pk_node *fusable_relu_backward(const pk_model *m, const pk_plan *p, int i)
{
    const pk_node *relu = pk_plan_fused_relu(p, i);
    if (!relu || p->nodes[i].kind != PK_N_BN || relu->gacc[0] ||
        pk_ctx_device(m->ctx) != PK_DEV_CPU)
        return NULL;
    return relu;
}

static int backward_node(pk_model *m, const pk_plan *p, const pk_node *nd,
                         const pk_node *relu, const pk_exec_args *a, pk_err *e)
{
    pk_ctx *c = m->ctx;
    float *const *ext = a->ext;
    const pk_value *xv = &p->vals[nd->in[0]], *yv = &p->vals[nd->out];
    const float *dy = pk_plan_ptr(m, p, ext, yv->grad);
    float *dx = pk_plan_ptr(m, p, ext, nd->gin[0]); /* NULL: not needed */
    const pk_layer *L = nd->layer >= 0 ? &m->layers[nd->layer] : NULL;
    switch (nd->kind) {
    case PK_N_CONV: {
        const pk_tensor_info *tw = &m->tensors[L->w];
        float *db = L->b >= 0 ? m->grads + m->tensors[L->b].offset : NULL;
        const uint16_t *xq = bf16_copy(m, p, ext, nd->in[0]);
        const float *x = !xq || pk_conv_backward_needs_x(c, &nd->conv) ? kept(m, p, ext, nd->in[0])
                                                                       : NULL;
        if (pk_conv2d_backward_xq(c, dx, m->grads + tw->offset, db, dy, x, xq,
                                  m->params + tw->offset, &nd->conv, e) != PK_OK)
            return pk_wrap(e, "%s (backward)", tw->name);
        break;
    }
    case PK_N_BN: {
        bn_ptrs bp = bn_of(m, L);
        const float *sm = pk_plan_ptr(m, p, ext, nd->save0);
        const float *sr = pk_plan_ptr(m, p, ext, nd->save1);
        /* x's shadow as it is, where the plan keeps no fp32 copy of x */
        const uint16_t *xc = xv->shadow >= 0 && xv->center >= 0 && xv->unpacked < 0
                                 ? (const uint16_t *)pk_plan_ptr(m, p, ext, xv->shadow)
                                 : NULL;
        const float *x = xc ? NULL : kept(m, p, ext, nd->in[0]);
        /* the fused ReLU's output gradient and output, or the BN's own dy */
        const float *g = relu ? pk_plan_ptr(m, p, ext, p->vals[relu->out].grad) : dy;
        const float *ry = relu ? kept(m, p, ext, relu->out) : NULL;
        if (pk_dist_active(m)) {
            if (pk_bn_sync_backward(c, m->comm, dx, bp.dgamma, bp.dbeta, g, ry, x, xc, sm, sr,
                                    bp.gamma, pixels_of(xv), xv->c, e) != PK_OK)
                return pk_wrap(e, "%s (backward)", m->tensors[L->bn].name);
        } else if (xc) {
            if (pk_bn_backward_xc(c, dx, bp.dgamma, bp.dbeta, g, ry, xc, sm, sr, bp.gamma,
                                  pixels_of(xv), xv->c, e) != PK_OK)
                return pk_wrap(e, "%s (backward)", m->tensors[L->bn].name);
        } else if (relu) /* the ReLU's backward fused here */
            pk_bn_relu_backward(c, dx, bp.dgamma, bp.dbeta, g, ry, x, sm, sr, bp.gamma,
                                pixels_of(xv), xv->c);
        else
            pk_bn_backward(c, dx, bp.dgamma, bp.dbeta, dy, x, sm, sr, bp.gamma, pixels_of(xv),
                           xv->c);
        break;
    }
    case PK_N_RELU:
        pk_relu_backward(c, dx, dy, kept(m, p, ext, nd->out), count_of(xv));
        break;
    case PK_N_ADD: /* both inputs receive dy */
        for (int j = 0; j < 2; j++) {
            float *g = pk_plan_ptr(m, p, ext, nd->gin[j]);
            if (!g)
                continue;
            if (nd->gacc[j])
                pk_accumulate(c, g, dy, count_of(yv));
            else if (g != dy)
                copy_value(c, g, dy, yv);
        }
        return PK_OK; /* accumulation done */
    case PK_N_MAXPOOL:
        pk_maxpool_backward(c, dx, dy, (const int32_t *)pk_plan_ptr(m, p, ext, nd->save0),
                            xv->n, xv->h, xv->w, xv->c, yv->h, yv->w);
        break;
    case PK_N_ADAPOOL:
        pk_adapool_backward(c, dx, dy, xv->n, xv->h, xv->w, xv->c, nd->bins);
        break;
    case PK_N_RESIZE:
        pk_resize_backward(c, dx, dy, xv->n, xv->h, xv->w, xv->c, yv->h, yv->w);
        break;
    case PK_N_CONCAT: {
        float *dxs[PK_NODE_MAX_IN];
        int cs[PK_NODE_MAX_IN];
        for (int j = 0; j < nd->nin; j++) {
            dxs[j] = pk_plan_ptr(m, p, ext, nd->gin[j]);
            cs[j] = p->vals[nd->in[j]].c;
        }
        pk_concat_backward(c, dxs, dy, cs, nd->nin, pixels_of(yv));
        break;
    }
    case PK_N_DROPOUT:
        pk_dropout2d_backward(c, dx, dy, (const uint8_t *)pk_plan_ptr(m, p, ext, nd->save0),
                              xv->n, (long)xv->h * xv->w, xv->c, a->dropout);
        break;
    default:
        return pk_fail(e, PK_EINVAL, "model: internal error: node kind %d", nd->kind);
    }
    for (int j = 0; j < nd->nin; j++) /* contributions through scratch */
        if (nd->gacc[j])
            pk_accumulate(c, pk_plan_ptr(m, p, ext, p->vals[nd->in[j]].grad),
                          pk_plan_ptr(m, p, ext, nd->gin[j]), count_of(&p->vals[nd->in[j]]));
    return PK_OK;
}

int pk_exec_backward(pk_model *m, const pk_plan *p, const pk_exec_args *a, pk_err *e)
{
    if (m->unpacked_cap < p->nvals) {
        unsigned char *u = realloc(m->unpacked, (size_t)p->nvals);
        if (!u)
            return pk_fail(e, PK_ENOMEM, "model: out of memory");
        m->unpacked = u;
        m->unpacked_cap = p->nvals;
    }
    memset(m->unpacked, 0, (size_t)p->nvals);
    for (int i = p->nnodes - 1; i >= 0; i--) {
        const pk_node *nd = &p->nodes[i], *relu = NULL;
        /* a BN+ReLU pair: the ReLU's backward runs inside the BN's (and is
         * booked to it), its input gradient skipped */
        if (i > 0 && (relu = fusable_relu_backward(m, p, i - 1)) != NULL)
            nd = &p->nodes[--i];
        if (p->vals[nd->out].grad < 0)
            continue;
        double t0 = m->profile ? pk_prof_now(m) : 0.0;
        int rc = backward_node(m, p, nd, relu, a, e);
        if (rc != PK_OK)
            return rc;
        if (m->profile)
            pk_prof_add(m, nd->group, nd->kind, PK_PROF_BWD, pk_prof_now(m) - t0);
    }
    return PK_OK;
}
