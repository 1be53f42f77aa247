/* Emits a plan's graph: the PSPNet forward as a list of op nodes over
 * values with NHWC shapes. Walks the architecture in the same order as
 * pspnet_table.c, taking one pk_layer per convolution. Storage, liveness and
 * in-place decisions are pspnet_plan.c's job. */
#include "model/pspnet_impl.h"

#include <stdlib.h>
#include <string.h>
#include "core/grow.h"

int pk_plan_value(pk_plan *p, int n, int h, int w, int c, size_t floats, pk_err *e)
{
    pk_value *v = pk_grow(p->vals, &p->cap_vals, p->nvals, 512, sizeof *v);
    if (!v) {
        pk_fail(e, PK_ENOMEM, "model: out of memory planning activations");
        return -1;
    }
    p->vals = v;
    v += p->nvals;
    memset(v, 0, sizeof *v);
    v->n = n;
    v->h = h;
    v->w = w;
    v->c = c;
    v->floats = floats;
    v->storage = -1;
    v->producer = -1;
    v->grad = -1;
    v->last_fwd = -1;
    v->bwd_need = -1;
    v->bwd_first = -1;
    v->shadow = -1;
    v->unpacked = -1;
    v->center = -1;
    v->def = -1;
    v->last = -1;
    return p->nvals++;
}

int pk_plan_node(pk_plan *p, int kind, int group, pk_err *e)
{
    pk_node *nd = pk_grow(p->nodes, &p->cap_nodes, p->nnodes, 256, sizeof *nd);
    if (!nd) {
        pk_fail(e, PK_ENOMEM, "model: out of memory planning the graph");
        return -1;
    }
    p->nodes = nd;
    nd += p->nnodes;
    memset(nd, 0, sizeof *nd);
    nd->kind = kind;
    nd->fold_res = nd->fold_out = -1;
    nd->group = group;
    nd->layer = -1;
    nd->out = -1;
    nd->save0 = nd->save1 = -1;
    for (int j = 0; j < PK_NODE_MAX_IN; j++)
        nd->gin[j] = -1;
    return p->nnodes++;
}

/* Builder state: a failed step sets `fail` and every later step is a no-op,
 * so the walk reads straight through and the status is checked once. */
typedef struct gb {
    const pk_model *m;
    pk_plan *p;
    pk_err *e;
    int cursor; /* next pk_layer */
    int fail;
} gb;

static size_t nhwc_count(int n, int h, int w, int c)
{
    return (size_t)n * (size_t)h * (size_t)w * (size_t)c;
}

static int act(gb *g, int n, int h, int w, int c)
{
    if (g->fail)
        return -1;
    int v = pk_plan_value(g->p, n, h, w, c, nhwc_count(n, h, w, c), g->e);
    if (v < 0)
        g->fail = 1;
    return v;
}

/* A saved value of `floats` words (statistics, argmax, masks). */
static int saved(gb *g, size_t floats)
{
    if (g->fail)
        return -1;
    int v = pk_plan_value(g->p, 1, 1, 1, (int)floats, floats, g->e);
    if (v < 0)
        g->fail = 1;
    return v;
}

/* A node reading ins[0..nin) and writing a new value of the given shape. */
static int emit(gb *g, int kind, int group, const int *ins, int nin, int n, int h, int w,
                int c)
{
    if (g->fail)
        return -1;
    int out = act(g, n, h, w, c);
    int id = out < 0 ? -1 : pk_plan_node(g->p, kind, group, g->e);
    if (id < 0) {
        g->fail = 1;
        return -1;
    }
    pk_node *nd = &g->p->nodes[id];
    nd->nin = nin;
    for (int j = 0; j < nin; j++)
        nd->in[j] = ins[j];
    nd->out = out;
    g->p->vals[out].producer = id;
    return id;
}

static const pk_value *val(gb *g, int v) { return &g->p->vals[v]; }

static int out_of(gb *g, int node) { return node < 0 ? -1 : g->p->nodes[node].out; }

/* The convolution of layer li. */
static int conv_at(gb *g, int x, int li)
{
    if (g->fail)
        return -1;
    if (li < 0 || li >= g->m->nlayers) {
        pk_fail(g->e, PK_EINVAL, "model: internal error: layer list exhausted");
        g->fail = 1;
        return -1;
    }
    const pk_layer *L = &g->m->layers[li];
    const pk_value *xv = val(g, x);
    if (xv->c != L->ci) {
        pk_fail(g->e, PK_EINVAL, "model: internal error: %s expects %d channels, got %d",
                g->m->tensors[L->w].name, L->ci, xv->c);
        g->fail = 1;
        return -1;
    }
    pk_conv_desc d = pk_conv_desc_make(xv->n, xv->h, xv->w, L->ci, L->co, L->k, L->stride,
                                       L->pad, L->dil, L->b >= 0);
    int node = emit(g, PK_N_CONV, L->group, &x, 1, xv->n, d.ho, d.wo, L->co);
    if (node < 0)
        return -1;
    g->p->nodes[node].layer = li;
    g->p->nodes[node].conv = d;
    return node;
}

static int bn(gb *g, int x, int li)
{
    const pk_value *xv = val(g, x);
    int node = emit(g, PK_N_BN, g->m->layers[li].group, &x, 1, xv->n, xv->h, xv->w, xv->c);
    if (node < 0)
        return -1;
    pk_node *nd = &g->p->nodes[node];
    nd->layer = li;
    if (g->p->train) {
        int c = g->m->layers[li].co;
        int s0 = saved(g, (size_t)c), s1 = saved(g, (size_t)c);
        nd->save0 = s0;
        nd->save1 = s1;
    }
    return out_of(g, node);
}

static int relu(gb *g, int x, int group)
{
    if (g->fail)
        return -1;
    const pk_value *xv = val(g, x);
    return out_of(g, emit(g, PK_N_RELU, group, &x, 1, xv->n, xv->h, xv->w, xv->c));
}

/* Layer li's conv -> BN (when the layer has one) -> ReLU (when asked). */
static int cbr_at(gb *g, int x, int li, int with_relu)
{
    int y = out_of(g, conv_at(g, x, li));
    if (y < 0)
        return -1;
    if (g->m->layers[li].bn >= 0)
        y = bn(g, y, li);
    if (with_relu && y >= 0)
        y = relu(g, y, g->m->layers[li].group);
    return y;
}

/* The same for the next layer of the walk. */
static int cbr(gb *g, int x, int with_relu)
{
    return g->fail ? -1 : cbr_at(g, x, g->cursor++, with_relu);
}

static int maxpool(gb *g, int x, int group)
{
    if (g->fail)
        return -1;
    const pk_value *xv = val(g, x);
    int ho = pk_pool_out_size(xv->h, 3, 2, 1), wo = pk_pool_out_size(xv->w, 3, 2, 1);
    int n = xv->n, c = xv->c;
    int node = emit(g, PK_N_MAXPOOL, group, &x, 1, n, ho, wo, c);
    int am = saved(g, nhwc_count(n, ho, wo, c)); /* int32 argmax */
    if (node < 0 || am < 0)
        return -1;
    g->p->nodes[node].save0 = am;
    return out_of(g, node);
}

static int add_relu(gb *g, int a, int b, int group)
{
    if (g->fail)
        return -1;
    const pk_value *av = val(g, a);
    int ins[2] = {a, b};
    int y = out_of(g, emit(g, PK_N_ADD, group, ins, 2, av->n, av->h, av->w, av->c));
    return y < 0 ? -1 : relu(g, y, group);
}

static int adapool(gb *g, int x, int bins)
{
    if (g->fail)
        return -1;
    const pk_value *xv = val(g, x);
    int node = emit(g, PK_N_ADAPOOL, PK_G_PPM, &x, 1, xv->n, bins, bins, xv->c);
    if (node < 0)
        return -1;
    g->p->nodes[node].bins = bins;
    return out_of(g, node);
}

static int resize(gb *g, int x, int ho, int wo, int group)
{
    if (g->fail)
        return -1;
    const pk_value *xv = val(g, x);
    return out_of(g, emit(g, PK_N_RESIZE, group, &x, 1, xv->n, ho, wo, xv->c));
}

static int dropout(gb *g, int x, int id, int group)
{
    if (g->fail)
        return -1;
    if (!g->p->train || g->m->cfg.dropout <= 0.0f)
        return x; /* identity */
    const pk_value *xv = val(g, x);
    int n = xv->n, c = xv->c;
    int node = emit(g, PK_N_DROPOUT, group, &x, 1, n, xv->h, xv->w, c);
    int keep = saved(g, ((size_t)n * (size_t)c + 3) / 4); /* bytes */
    if (node < 0 || keep < 0)
        return -1;
    g->p->nodes[node].save0 = keep;
    g->p->nodes[node].drop_id = id;
    return out_of(g, node);
}

static int stem(gb *g, int x)
{
    int deep = g->m->cfg.stem == PK_STEM_DEEP;
    x = cbr(g, x, 1);
    if (deep) {
        x = cbr(g, x, 1);
        x = cbr(g, x, 1);
    }
    return maxpool(g, x, PK_G_STEM);
}

/* One residual block; its downsample, when it has one, is the next layer. */
static int block(gb *g, int x, int group)
{
    if (g->fail)
        return -1;
    int nconv = g->m->ad.bottleneck ? 3 : 2;
    int y = x;
    for (int i = 0; i < nconv; i++)
        y = cbr(g, y, i < nconv - 1);
    int shortcut = x;
    if (g->cursor < g->m->nlayers && g->m->layers[g->cursor].downsample)
        shortcut = cbr(g, x, 0);
    return add_relu(g, y, shortcut, group);
}

int pk_graph_build(const pk_model *m, pk_plan *p, pk_err *e)
{
    gb g = {m, p, e, 0, 0};
    p->h8 = (p->h - 1) / 8 + 1;
    p->w8 = (p->w - 1) / 8 + 1;
    int n = p->n, K = m->cfg.classes;
    int x = act(&g, n, p->h, p->w, 3);
    if (x >= 0)
        p->vals[x].ext = PK_EXT_IMAGE;
    p->v_image = x;
    x = stem(&g, x);
    p->v_aux = -1;
    for (int li = 0; li < 4; li++) {
        for (int bi = 0; bi < m->ad.blocks[li]; bi++)
            x = block(&g, x, PK_G_LAYER1 + li);
        if (li == 2 && p->with_aux) {
            /* aux on layer3's output (its layers are the table's last two),
             * emitted here so that layer3's output dies before layer4's end */
            int y = cbr_at(&g, x, m->nlayers - 2, 1);
            y = dropout(&g, y, 1, PK_G_AUX);
            y = cbr_at(&g, y, m->nlayers - 1, 0);
            p->v_aux = p->upsample ? resize(&g, y, p->h, p->w, PK_G_AUX) : y;
        }
    }
    if (!g.fail && (p->vals[x].h != p->h8 || p->vals[x].w != p->w8)) {
        pk_fail(e, PK_EINVAL, "model: internal error: layer4 is %dx%d, expected %dx%d",
                p->vals[x].h, p->vals[x].w, p->h8, p->w8);
        g.fail = 1;
    }
    /* PPM: [x, up(p1), up(p2), up(p3), up(p6)] */
    static const int bins[4] = {1, 2, 3, 6};
    int cat_in[5] = {x, -1, -1, -1, -1};
    for (int b = 0; b < 4; b++) {
        int y = adapool(&g, x, bins[b]);
        y = cbr(&g, y, 1);
        cat_in[b + 1] = resize(&g, y, p->h8, p->w8, PK_G_PPM);
    }
    int cat = -1;
    if (!g.fail) {
        int C = 0;
        for (int j = 0; j < 5; j++)
            C += p->vals[cat_in[j]].c;
        cat = out_of(&g, emit(&g, PK_N_CONCAT, PK_G_PPM, cat_in, 5, n, p->h8, p->w8, C));
    }
    /* cls */
    int y = cbr(&g, cat, 1);
    y = dropout(&g, y, 0, PK_G_CLS);
    int main8 = cbr(&g, y, 0);
    p->v_main8 = main8;
    p->v_main = p->upsample ? resize(&g, main8, p->h, p->w, PK_G_CLS) : main8;
    if (g.fail)
        return e->code ? e->code : PK_EINVAL;
    if (g.cursor != m->nlayers - 2)
        return pk_fail(e, PK_EINVAL, "model: internal error: %d of %d layers used", g.cursor,
                       m->nlayers);
    if (p->vals[p->v_main].c != K)
        return pk_fail(e, PK_EINVAL, "model: internal error: logits have %d channels",
                       p->vals[p->v_main].c);
    if (!p->train) { /* inference writes the logits straight into the caller's buffers */
        p->vals[p->v_main].ext = PK_EXT_MAIN;
        if (p->v_aux >= 0)
            p->vals[p->v_aux].ext = PK_EXT_AUX;
    }
    return PK_OK;
}
