/* Activation memory planning. After pspnet_graph.c has emitted the nodes,
 *  1. ReLU and the residual add run in place when their input has no other
 *     reader (forward and backward), sharing its storage;
 *  2. in training (whose graph ends at the stride-8 logits: the loss step
 *     upsamples them into a shared full-resolution buffer, where it writes
 *     their gradient, on CUDA into a second one for the logits themselves
 *     (pk_branch_loss)), a backward
 *     pass over the nodes decides where each
 *     activation gradient lives: the first contribution (in backward order)
 *     is assigned - in place over the output gradient for BN, ReLU and the
 *     add - and later ones go through a scratch value and are accumulated;
 *  3. every storage gets a live interval on a timeline (forward node i at
 *     time i, the losses at F, the backward of node i at 2F - i) and a
 *     first-fit offset among the storages it overlaps, largest first.
 * In the bf16 precision's training on the CPU, each activation the
 * backward reads (a convolution's or BN's input, a ReLU's output) is kept
 * in bf16: packed into a half-size shadow right after the forward
 * computes it, so its fp32 storage ends with its last forward reader, and
 * unpacked into fp32 again when the backward first reads it
 * (pspnet_exec.c). That halves what the
 * activations kept across the forward-backward turn cost, as PyTorch's
 * autocast keeps its convolutions' bf16 outputs. A BN's input is kept as
 * x - mean (its batch mean, packed after the BN's forward): its backward
 * normalises x again with the fp32 statistics, and with x itself rounded
 * a channel whose spread is small next to its mean (the PPM's 1x1 bin
 * over a small batch) lost all of x - mean; the train step's gradient
 * cosine against fp32 fell to 0.01. The BN's backward reads that shadow
 * directly (pk_bn_backward_xc), so such a value has no fp32 copy at all.
 * (On CUDA the bf16 precision changes only the convolutions, which round
 * their operands themselves: no shadows, no folds.)
 * In the bf16 precision's inference (on the CPU), each convolution
 * followed by its BN folds the BN into its forward, with the ReLU or the
 * residual add and ReLU after it (pk_conv2d_forward_fused): the BN, add and
 * ReLU then make no pass of their own over their output. The value the
 * convolution then writes is born at the convolution, so that it never
 * shares memory with the convolution's input; the values in between are
 * never written and get no memory. A fold's output whose readers all take
 * bf16 (direct convolutions, which read their input in bf16 anyway, and
 * folded residual adds) is written and held in bf16: no conversion pass
 * before those convolutions, and half the bytes written and read.
 * The result is one arena size, reused by every call with the same shape. */
#include "model/pspnet_impl.h"

#include <stdlib.h>
#include <string.h>

#define PK_ARENA_ALIGN 16 /* floats: 64-byte aligned values */

void pk_plan_free(pk_plan *p)
{
    free(p->nodes);
    free(p->vals);
    free(p->stor_off);
    free(p->stor_size);
    free(p->stor_def);
    free(p->stor_last);
    memset(p, 0, sizeof *p);
}

static int new_storage(pk_plan *p, pk_err *e)
{
    if (p->nstor == p->cap_stor) {
        int cap = p->cap_stor ? 2 * p->cap_stor : 512;
        size_t *o = realloc(p->stor_off, (size_t)cap * sizeof *o);
        if (o)
            p->stor_off = o;
        size_t *s = o ? realloc(p->stor_size, (size_t)cap * sizeof *s) : NULL;
        if (s)
            p->stor_size = s;
        int *d = s ? realloc(p->stor_def, (size_t)cap * sizeof *d) : NULL;
        if (d)
            p->stor_def = d;
        int *l = d ? realloc(p->stor_last, (size_t)cap * sizeof *l) : NULL;
        if (!l) {
            pk_fail(e, PK_ENOMEM, "model: out of memory planning the arena");
            return -1;
        }
        p->stor_last = l;
        p->cap_stor = cap;
    }
    p->stor_size[p->nstor] = 0;
    return p->nstor++;
}

static void use(pk_plan *p, int v, int t)
{
    if (v >= 0 && t > p->vals[v].last)
        p->vals[v].last = t;
}

/* A value that lives in its own new storage (or `share`'s when >= 0). */
static int place(pk_plan *p, int v, int share, int def, pk_err *e)
{
    int s = share >= 0 ? p->vals[share].storage : new_storage(p, e);
    if (s < 0)
        return -1;
    p->vals[v].storage = s;
    p->vals[v].def = def;
    use(p, v, def);
    return 0;
}

/* The ReLU node that pspnet_exec.c runs fused into node i (a BN or residual add whose
 * output only that ReLU reads, and which comes right after it), or NULL.
 * Nothing reads the pre-ReLU value later: BN's backward reads its input and
 * saved statistics, ReLU's its own output, the add's nothing. */
const pk_node *pk_plan_fused_relu(const pk_plan *p, int i)
{
    const pk_node *nd = &p->nodes[i], *next = i + 1 < p->nnodes ? &p->nodes[i + 1] : NULL;
    if ((nd->kind != PK_N_BN && nd->kind != PK_N_ADD) || !next || next->kind != PK_N_RELU ||
        next->in[0] != nd->out || p->vals[nd->out].nuse != 1 ||
        p->vals[nd->out].ext != PK_EXT_NONE)
        return NULL;
    return next;
}

static int inplace_fwd(const pk_plan *p, const pk_node *nd)
{
    if (nd->kind != PK_N_RELU && nd->kind != PK_N_ADD)
        return 0;
    const pk_value *x = &p->vals[nd->in[0]];
    return x->ext == PK_EXT_NONE && p->vals[nd->out].ext == PK_EXT_NONE && x->nuse == 1 &&
           x->bwd_need < 0;
}

/* v is read by the backward at time B (the latest and earliest such times
 * count). */
static void need_at(pk_plan *p, int v, int B)
{
    if (v < 0)
        return;
    pk_value *x = &p->vals[v];
    if (B > x->bwd_need)
        x->bwd_need = B;
    if (x->bwd_first < 0 || B < x->bwd_first)
        x->bwd_first = B;
}

/* The same for an activation (what the bf16 precision may keep in bf16). */
static void need_act_at(pk_plan *p, int v, int B)
{
    need_at(p, v, B);
    if (v >= 0)
        p->vals[v].kept_act = 1;
}

/* What the backward of node i reads (other than its output gradient). */
static void mark_backward_needs(pk_plan *p, int F)
{
    for (int i = 0; i < F; i++) {
        pk_node *nd = &p->nodes[i];
        int B = 2 * F - i;
        switch (nd->kind) {
        case PK_N_CONV:
            need_act_at(p, nd->in[0], B);
            break;
        case PK_N_BN:
            need_act_at(p, nd->in[0], B);
            need_at(p, nd->save0, B);
            need_at(p, nd->save1, B);
            break;
        case PK_N_RELU:
            /* and at B + 1: the BN before it may run this backward fused
             * into its own, one step later (pspnet_exec.c) */
            need_act_at(p, nd->out, B);
            need_at(p, nd->out, B + 1);
            break;
        case PK_N_MAXPOOL:
        case PK_N_DROPOUT:
            need_at(p, nd->save0, B);
            break;
        default:
            break;
        }
    }
}

/* Gives every kept activation (not the caller's image) a bf16 shadow and
 * an fp32 value to unpack it into; a BN's input is kept centred. */
static int add_shadows(pk_plan *p, int F, pk_err *e)
{
    for (int i = 0; i < F; i++)
        if (p->nodes[i].kind == PK_N_BN)
            p->vals[p->nodes[i].in[0]].center = p->nodes[i].save0;
    int nv = p->nvals;
    for (int v = 0; v < nv; v++) {
        pk_value x = p->vals[v];
        if (!x.kept_act || x.ext != PK_EXT_NONE)
            continue;
        size_t count = (size_t)x.n * x.h * x.w * x.c;
        int s = pk_plan_value(p, x.n, x.h, x.w, x.c, (count + 1) / 2, e);
        if (s < 0)
            return -1;
        /* a BN's input that only the BN reads: its backward reads the
         * shadow as it is (pk_bn_backward_xc), so no fp32 copy */
        int u = -1;
        if (!(x.center >= 0 && x.nuse == 1) &&
            (u = pk_plan_value(p, x.n, x.h, x.w, x.c, x.floats, e)) < 0)
            return -1;
        p->vals[v].shadow = s;
        p->vals[v].unpacked = u;
    }
    return 0;
}

/* v: an arena value read only by node `by`. */
static int only_input_of(const pk_plan *p, int v, const pk_node *by)
{
    return p->vals[v].nuse == 1 && p->vals[v].ext == PK_EXT_NONE && by->in[0] == v;
}

/* Marks what each convolution folds in (see the top of this file). */
static void mark_folds(const pk_model *m, pk_plan *p, int F)
{
    for (int i = 0; i + 1 < F; i++) {
        pk_node *nd = &p->nodes[i];
        const pk_node *bn = &p->nodes[i + 1];
        if (nd->kind != PK_N_CONV || m->layers[nd->layer].b >= 0 || bn->kind != PK_N_BN ||
            !only_input_of(p, nd->out, bn))
            continue;
        const pk_node *n2 = i + 2 < F ? &p->nodes[i + 2] : NULL;
        const pk_node *n3 = i + 3 < F ? &p->nodes[i + 3] : NULL;
        nd->fold = 1;
        nd->fold_out = bn->out;
        if (n2 && n2->kind == PK_N_RELU && only_input_of(p, bn->out, n2)) {
            nd->fold = 2;
            nd->fold_out = n2->out;
        } else if (n2 && n2->kind == PK_N_ADD && n3 && n3->kind == PK_N_RELU &&
                   p->vals[bn->out].nuse == 1 && p->vals[bn->out].ext == PK_EXT_NONE &&
                   (n2->in[0] == bn->out || n2->in[1] == bn->out) &&
                   only_input_of(p, n2->out, n3)) {
            nd->fold = 3;
            nd->fold_res = n2->in[0] == bn->out ? n2->in[1] : n2->in[0];
            nd->fold_out = n3->out;
        }
        i += nd->fold;
    }
}

/* 1 when every forward reader of v takes it in bf16: a convolution that
 * reads only its bf16 copy, or a folded add that takes it as residual. */
static int read_as_half(const pk_model *m, const pk_plan *p, int F, int v)
{
    for (int k = 0; k < F; k++) {
        const pk_node *nd = &p->nodes[k];
        for (int j = 0; j < nd->nin; j++) {
            if (nd->in[j] != v)
                continue;
            if (nd->kind == PK_N_CONV && pk_conv_reads_xq_only(m->ctx, &nd->conv))
                continue;
            if (nd->kind == PK_N_ADD && k >= 2 && p->nodes[k - 2].fold == 3 &&
                p->nodes[k - 2].fold_res == v)
                continue;
            return 0;
        }
    }
    return 1;
}

/* Marks the folds' outputs held in bf16. A residual that the add runs in
 * place over shares the output's memory (oneDNN's sum post-op), and so its
 * type. */
static void mark_halves(const pk_model *m, pk_plan *p, int F)
{
    for (int i = 0; i < F; i++) {
        const pk_node *nd = &p->nodes[i];
        if (nd->fold) {
            pk_value *v = &p->vals[nd->fold_out];
            v->half = v->ext == PK_EXT_NONE && read_as_half(m, p, F, nd->fold_out);
        }
    }
    for (int i = 0; i < F; i++) {
        const pk_node *nd = &p->nodes[i];
        if (nd->fold == 3 && p->nodes[i + 2].in[0] == nd->fold_res &&
            inplace_fwd(p, &p->nodes[i + 2])) {
            pk_value *r = &p->vals[nd->fold_res], *o = &p->vals[nd->fold_out];
            r->half = o->half = r->half && o->half;
        }
    }
    for (int v = 0; v < p->nvals; v++)
        if (p->vals[v].half)
            p->vals[v].floats = ((size_t)p->vals[v].n * p->vals[v].h * p->vals[v].w *
                                     p->vals[v].c + 1) / 2;
}

/* After placement: a fold's output is born at its convolution; the values
 * it skips, unless they carry its output's storage, get none. */
static void place_folds(pk_plan *p, int F)
{
    for (int i = 0; i < F; i++) {
        const pk_node *nd = &p->nodes[i];
        if (!nd->fold)
            continue;
        pk_value *out = &p->vals[nd->fold_out];
        if (out->def > i)
            out->def = i;
        for (int k = 0; k < nd->fold; k++) {
            pk_value *v = &p->vals[p->nodes[i + k].out];
            if (v != out && v->storage != out->storage)
                v->storage = -1;
            else if (v != out) /* never written: no wider than the output */
                v->floats = out->floats;
        }
        i += nd->fold;
    }
}

static int place_forward(pk_plan *p, int F, pk_err *e)
{
    for (int i = 0; i < F; i++) {
        pk_node *nd = &p->nodes[i];
        for (int j = 0; j < nd->nin; j++)
            use(p, nd->in[j], i);
        int out = nd->out;
        if (p->vals[out].ext == PK_EXT_NONE &&
            place(p, out, inplace_fwd(p, nd) ? nd->in[0] : -1, i, e) < 0)
            return -1;
        /* a ReLU that runs fused into the BN or add before it (pspnet_exec.c)
         * packs its shadow at that node's step */
        int born = i > 0 && pk_plan_fused_relu(p, i - 1) == nd ? i - 1 : i;
        if (p->vals[out].shadow >= 0 && place(p, p->vals[out].shadow, -1, born, e) < 0)
            return -1;
        if ((nd->save0 >= 0 && place(p, nd->save0, -1, i, e) < 0) ||
            (nd->save1 >= 0 && place(p, nd->save1, -1, i, e) < 0))
            return -1;
    }
    for (int v = 0; v < p->nvals; v++) {
        const pk_value *x = &p->vals[v];
        if (x->shadow < 0) {
            use(p, v, x->bwd_need);
            continue;
        }
        use(p, x->shadow, x->bwd_need); /* v itself ends with its forward */
        if (x->unpacked < 0)
            continue;
        if (place(p, x->unpacked, -1, x->bwd_first, e) < 0)
            return -1;
        use(p, x->unpacked, x->bwd_need);
    }
    return 0;
}

/* A new value shaped like v (a gradient or scratch gradient of v). */
static int like(pk_plan *p, int v, pk_err *e)
{
    pk_value x = p->vals[v];
    return pk_plan_value(p, x.n, x.h, x.w, x.c, x.floats, e);
}

static int plan_backward(pk_plan *p, int F, int full_logits, pk_err *e)
{
    int outs[2] = {p->v_main, p->v_aux};
    for (int k = 0; k < 2; k++) { /* the loss step writes the logit gradients */
        int g = like(p, outs[k], e);
        if (g < 0 || place(p, g, -1, F, e) < 0)
            return -1;
        p->vals[outs[k]].grad = g;
        use(p, outs[k], F);
        use(p, outs[k], 2 * F + 1); /* kept for pk_model_last_logits */
    }
    /* the loss step's full-resolution logit gradient (and logits, where it
     * needs them), main's and then aux's in the same buffers */
    int K = p->vals[p->v_main].c;
    p->v_full = pk_plan_value(p, p->n, p->h, p->w, K, (size_t)p->n * p->h * p->w * K, e);
    p->v_dfull = p->v_full < 0 ? -1 : like(p, p->v_full, e);
    if (p->v_dfull < 0 || (full_logits && place(p, p->v_full, -1, F, e) < 0) ||
        place(p, p->v_dfull, -1, F, e) < 0)
        return -1;
    for (int i = F - 1; i >= 0; i--) {
        int B = 2 * F - i;
        int dy = p->vals[p->nodes[i].out].grad;
        if (dy < 0)
            continue; /* the output does not reach a loss */
        use(p, dy, B);
        for (int j = 0; j < p->nodes[i].nin; j++) {
            pk_node *nd = &p->nodes[i];
            int x = nd->in[j];
            if (p->vals[x].ext != PK_EXT_NONE)
                continue; /* the image needs no gradient */
            int gx = p->vals[x].grad;
            if (gx < 0) { /* first contribution: assigned */
                int inplace = nd->kind == PK_N_BN || nd->kind == PK_N_RELU ||
                              (nd->kind == PK_N_ADD && j == 0);
                int g = like(p, x, e);
                if (g < 0 || place(p, g, inplace ? dy : -1, B, e) < 0)
                    return -1;
                p->vals[x].grad = g;
                p->nodes[i].gin[j] = g;
            } else if (nd->kind == PK_N_ADD) { /* accumulates dy directly */
                nd->gin[j] = gx;
                nd->gacc[j] = 1;
                use(p, gx, B);
            } else { /* into scratch, then accumulated */
                int s = like(p, x, e);
                if (s < 0 || place(p, s, -1, B, e) < 0)
                    return -1;
                p->nodes[i].gin[j] = s;
                p->nodes[i].gacc[j] = 1;
                use(p, gx, B);
            }
        }
    }
    return 0;
}

typedef struct span {
    size_t lo, hi;
} span;

static int by_lo(const void *a, const void *b)
{
    size_t x = ((const span *)a)->lo, y = ((const span *)b)->lo;
    return x < y ? -1 : x > y;
}

static int assign_offsets(pk_plan *p, pk_err *e)
{
    int S = p->nstor;
    for (int s = 0; s < S; s++) {
        p->stor_def[s] = 1 << 30;
        p->stor_last[s] = -1;
        p->stor_size[s] = 0;
    }
    for (int v = 0; v < p->nvals; v++) {
        const pk_value *x = &p->vals[v];
        int s = x->storage;
        if (s < 0)
            continue;
        size_t sz = (x->floats + PK_ARENA_ALIGN - 1) / PK_ARENA_ALIGN * PK_ARENA_ALIGN;
        if (sz > p->stor_size[s])
            p->stor_size[s] = sz;
        if (x->def < p->stor_def[s])
            p->stor_def[s] = x->def;
        int last = x->last > x->def ? x->last : x->def;
        if (last > p->stor_last[s])
            p->stor_last[s] = last;
    }
    int *order = malloc((size_t)(S ? S : 1) * sizeof *order);
    span *busy = malloc((size_t)(S ? S : 1) * sizeof *busy);
    if (!order || !busy) {
        free(order);
        free(busy);
        return pk_fail(e, PK_ENOMEM, "model: out of memory planning the arena");
    }
    for (int s = 0; s < S; s++)
        order[s] = s;
    /* largest first (insertion sort: qsort has no context argument) */
    for (int a = 1; a < S; a++) {
        int key = order[a], b = a - 1;
        while (b >= 0 && (p->stor_size[order[b]] < p->stor_size[key] ||
                          (p->stor_size[order[b]] == p->stor_size[key] && order[b] > key))) {
            order[b + 1] = order[b];
            b--;
        }
        order[b + 1] = key;
    }
    size_t total = 0;
    for (int a = 0; a < S; a++) {
        int s = order[a], nb = 0;
        for (int b = 0; b < a; b++) {
            int t = order[b];
            if (p->stor_def[t] <= p->stor_last[s] && p->stor_def[s] <= p->stor_last[t])
                busy[nb++] = (span){p->stor_off[t], p->stor_off[t] + p->stor_size[t]};
        }
        qsort(busy, (size_t)nb, sizeof *busy, by_lo);
        size_t off = 0;
        for (int b = 0; b < nb; b++) {
            if (off + p->stor_size[s] <= busy[b].lo)
                break;
            if (busy[b].hi > off)
                off = busy[b].hi;
        }
        p->stor_off[s] = off;
        if (off + p->stor_size[s] > total)
            total = off + p->stor_size[s];
    }
    p->arena_floats = total;
    free(order);
    free(busy);
    return PK_OK;
}

int pk_plan_build(pk_model *m, pk_plan *p, int train, int n, int h, int w, int upsample,
                  int with_aux, pk_err *e)
{
    pk_plan_free(p);
    *p = (pk_plan){.train = train, .n = n, .h = h, .w = w, .upsample = upsample,
                   .with_aux = with_aux};
    int rc = pk_graph_build(m, p, e);
    if (rc != PK_OK) {
        pk_plan_free(p);
        return rc;
    }
    int F = p->nnodes;
    for (int i = 0; i < F; i++)
        for (int j = 0; j < p->nodes[i].nin; j++)
            p->vals[p->nodes[i].in[j]].nuse++;
    if (train)
        mark_backward_needs(p, F);
    /* bf16 shadows and folds are the CPU's: on CUDA the bf16 precision
     * changes the convolutions alone (conv_cuda.cu) */
    int cpu_bf16 =
        pk_ctx_precision(m->ctx) == PK_PREC_BF16 && pk_ctx_device(m->ctx) == PK_DEV_CPU;
    if (train && cpu_bf16 && add_shadows(p, F, e) < 0) {
        pk_plan_free(p);
        return e->code;
    }
    int fold = !train && cpu_bf16;
    if (fold) {
        mark_folds(m, p, F);
        mark_halves(m, p, F);
    }
    if (place_forward(p, F, e) < 0 ||
        (train && plan_backward(p, F, pk_ctx_device(m->ctx) != PK_DEV_CPU, e) < 0)) {
        pk_plan_free(p);
        return e->code;
    }
    if (fold)
        place_folds(p, F);
    if (assign_offsets(p, e) != PK_OK) {
        pk_plan_free(p);
        return e->code;
    }
    p->built = 1;
    return PK_OK;
}

int pk_model_reserve_arena(pk_model *m, const pk_plan *p, pk_err *e)
{
    if (p->arena_floats <= m->arena_cap)
        return PK_OK;
    pk_dev_free(m->ctx, m->arena);
    m->arena_cap = 0;
    m->logits_ready = 0;
    m->arena = pk_dev_alloc(m->ctx, p->arena_floats * sizeof(float));
    if (!m->arena)
        return pk_fail(e, PK_ENOMEM, "model: cannot allocate a %zu MB activation arena",
                       (p->arena_floats * sizeof(float)) >> 20);
    m->arena_cap = p->arena_floats;
    return PK_OK;
}
