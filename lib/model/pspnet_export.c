/* The export graph (pspnet_export.h): the inference plan's nodes, with each
 * BatchNorm folded into its convolution on the host:
 *   scale = gamma / sqrt(var + eps), W' = W * scale[o],
 *   b' = (b - mean) * scale + beta   (b = 0 for a conv without bias). */
#include "model/pspnet_export.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "model/checkpoint_layout_impl.h"
#include "model/pspnet_impl.h"

typedef struct xb {
    pk_model *m;
    pk_xgraph *g;
    const pk_plan *p;
    int *map;          /* plan value -> export value */
    size_t used;       /* floats of g->store handed out */
    float *s1, *s2;    /* scratch: pk_ckl_max_count floats (s1: and 4 BN vectors) */
} xb;

static size_t conv_floats(const pk_model *m, const pk_plan *p)
{
    size_t n = 0;
    for (int i = 0; i < p->nnodes; i++)
        if (p->nodes[i].kind == PK_N_CONV) {
            const pk_layer *L = &m->layers[p->nodes[i].layer];
            n += (size_t)L->co * L->ci * L->k * L->k + (size_t)L->co;
        }
    return n;
}

static void read_tensor(xb *b, int t, float *dst)
{
    const pk_tensor_info *ti = &b->m->tensors[t];
    const float *base = ti->kind == PK_T_PARAM ? b->m->params : b->m->state;
    pk_ckl_read_tensor(b->m, base, ti, dst, b->s2);
}

static pk_xop *new_op(xb *b, pk_xop_kind kind, const pk_node *nd)
{
    pk_xop *op = &b->g->ops[b->g->nops++];
    memset(op, 0, sizeof *op);
    op->kind = kind;
    op->nin = nd->nin;
    for (int j = 0; j < nd->nin; j++)
        op->in[j] = b->map[nd->in[j]];
    op->out = b->g->nvals++;
    b->map[nd->out] = op->out;
    const pk_value *v = &b->p->vals[nd->out];
    op->h = v->h;
    op->w = v->w;
    op->c = v->c;
    op->like = -1;
    return op;
}

static void conv(xb *b, const pk_node *nd)
{
    const pk_layer *L = &b->m->layers[nd->layer];
    pk_xop *op = new_op(b, PK_XOP_CONV, nd);
    const char *wname = b->m->tensors[L->w].name;
    size_t len = strlen(wname) - strlen(".weight");
    if (len >= sizeof op->name)
        len = sizeof op->name - 1;
    memcpy(op->name, wname, len);
    op->name[len] = '\0';
    op->ci = L->ci;
    op->co = L->co;
    op->k = L->k;
    op->stride = L->stride;
    op->pad = L->pad;
    op->dil = L->dil;
    float *wt = b->g->store + b->used;
    b->used += (size_t)L->co * L->ci * L->k * L->k;
    float *bias = b->g->store + b->used;
    b->used += (size_t)L->co;
    read_tensor(b, L->w, wt);
    if (L->b >= 0)
        read_tensor(b, L->b, bias);
    else
        memset(bias, 0, (size_t)L->co * sizeof *bias);
    op->weight = wt;
    op->bias = bias;
}

/* Folds the BN of node nd into the conv op that produced its input. */
static int fold_bn(xb *b, const pk_node *nd, pk_err *e)
{
    int src = b->map[nd->in[0]];
    pk_xop *op = NULL;
    for (int i = b->g->nops - 1; i >= 0 && !op; i--)
        if (b->g->ops[i].out == src)
            op = &b->g->ops[i];
    const pk_layer *L = &b->m->layers[nd->layer];
    if (!op || op->kind != PK_XOP_CONV || op->folded_bn || L->bn < 0)
        return pk_fail(e, PK_EINVAL, "export: internal error: a BatchNorm without its conv");
    int co = L->co;
    float *gamma = b->s1, *beta = b->s1 + co, *mean = b->s1 + 2 * co, *var = b->s1 + 3 * co;
    for (int j = 0; j < 4; j++)
        read_tensor(b, L->bn + j, b->s1 + (size_t)j * co);
    float *wt = (float *)op->weight, *bias = (float *)op->bias;
    size_t per = (size_t)op->ci * op->k * op->k;
    for (int o = 0; o < co; o++) {
        double s = (double)gamma[o] / sqrt((double)var[o] + (double)PK_BN_EPS);
        for (size_t i = 0; i < per; i++)
            wt[(size_t)o * per + i] = (float)(wt[(size_t)o * per + i] * s);
        bias[o] = (float)(((double)bias[o] - mean[o]) * s + beta[o]);
    }
    op->folded_bn = 1;
    b->map[nd->out] = src;
    return PK_OK;
}

static int walk(xb *b, pk_err *e)
{
    const pk_plan *p = b->p;
    int layer4 = -1;
    for (int i = 0; i < p->nnodes; i++) {
        const pk_node *nd = &p->nodes[i];
        pk_xop *op;
        switch (nd->kind) {
        case PK_N_CONV: conv(b, nd); break;
        case PK_N_BN:
            if (fold_bn(b, nd, e))
                return e->code;
            break;
        case PK_N_RELU: new_op(b, PK_XOP_RELU, nd); break;
        case PK_N_ADD: new_op(b, PK_XOP_ADD, nd); break;
        case PK_N_MAXPOOL: new_op(b, PK_XOP_MAXPOOL, nd); break;
        case PK_N_ADAPOOL:
            op = new_op(b, PK_XOP_ADAPOOL, nd);
            op->bins = nd->bins;
            layer4 = op->in[0];
            break;
        case PK_N_RESIZE:
            op = new_op(b, PK_XOP_RESIZE, nd);
            op->like = nd->group == PK_G_PPM ? layer4 : b->g->v_image;
            if (op->like < 0)
                return pk_fail(e, PK_EINVAL, "export: internal error: PPM resize before pooling");
            break;
        case PK_N_CONCAT: new_op(b, PK_XOP_CONCAT, nd); break;
        case PK_N_DROPOUT: b->map[nd->out] = b->map[nd->in[0]]; break; /* eval: identity */
        default: return pk_fail(e, PK_EINVAL, "export: internal error: node kind %d", nd->kind);
        }
    }
    return PK_OK;
}

int pk_model_export_graph(pk_model *m, int h, int w, int with_aux, pk_xgraph **out,
                          pk_err *e)
{
    *out = NULL;
    if (h < 1 || w < 1 || (h - 1) % 8 || (w - 1) % 8)
        return pk_fail(e, PK_EINVAL, "export: size %dx%d is not 8k+1 on both sides", h, w);
    pk_plan p = {.train = 0, .n = 1, .h = h, .w = w, .upsample = 1, .with_aux = with_aux};
    int rc = pk_graph_build(m, &p, e);
    if (rc) {
        pk_plan_free(&p);
        return rc;
    }
    xb b = {.m = m, .p = &p};
    pk_xgraph *g = calloc(1, sizeof *g);
    size_t mx = pk_ckl_max_count(m);
    if (g) {
        g->ops = calloc((size_t)p.nnodes, sizeof *g->ops);
        g->store = malloc(conv_floats(m, &p) * sizeof(float));
    }
    b.g = g;
    b.map = malloc((size_t)p.nvals * sizeof *b.map);
    b.s1 = malloc((mx > 4 * 8192 ? mx : 4 * 8192) * sizeof(float)); /* 4 BN vectors */
    b.s2 = malloc(mx * sizeof(float));
    if (!g || !g->ops || !g->store || !b.map || !b.s1 || !b.s2) {
        rc = pk_fail(e, PK_ENOMEM, "export: out of memory");
    } else {
        for (int i = 0; i < p.nvals; i++)
            b.map[i] = -1;
        g->v_image = 0;
        g->nvals = 1;
        b.map[p.v_image] = 0;
        g->h = h;
        g->w = w;
        g->classes = m->cfg.classes;
        rc = walk(&b, e);
    }
    if (!rc) {
        g->v_main = b.map[p.v_main];
        g->v_aux = p.v_aux >= 0 ? b.map[p.v_aux] : -1;
    }
    free(b.map);
    free(b.s1);
    free(b.s2);
    pk_plan_free(&p);
    if (rc) {
        pk_xgraph_free(g);
        return rc;
    }
    *out = g;
    return PK_OK;
}

void pk_xgraph_free(pk_xgraph *g)
{
    if (!g)
        return;
    free(g->ops);
    free(g->store);
    free(g);
}
