/* The training step (forward, losses, backward, SGD) and the eval-mode
 * forward, on plans cached per shape.
 *
 * Loss masks (documented in man5/man7 too):
 *  - CE and aux CE ignore pixels whose label is `ignore_label` (255); the
 *    augmentation writes 255 into every pixel it pads, so padding is ignored
 *    without consulting `valid`;
 *  - KD and aux-KD average over the pixels with valid != 0 (all pixels when
 *    valid is NULL), whatever their label: at 255-labelled object borders the
 *    teacher's soft targets are still informative;
 *  - the aux KL uses the same temperature T as the main KD (and the T^2).
 * The loss step's time (with the final x8 upsampling and its backward) is
 * booked as "losses" in the profile. */
#include "model/pspnet_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/rng.h"

const char *pk_auxkd_name(pk_auxkd d)
{
    return d == PK_AUXKD_KL ? "kl" : d == PK_AUXKD_SMOOTHL1 ? "smoothl1"
                               : d == PK_AUXKD_MSE      ? "mse"
                                                        : "?";
}

int pk_auxkd_parse(const char *s, pk_auxkd *out)
{
    static const pk_auxkd all[3] = {PK_AUXKD_KL, PK_AUXKD_SMOOTHL1, PK_AUXKD_MSE};
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, pk_auxkd_name(all[i]))) {
            *out = all[i];
            return PK_OK;
        }
    return PK_EINVAL;
}

void pk_train_cfg_defaults(pk_train_cfg *t)
{
    memset(t, 0, sizeof *t);
    t->base_lr = 0.01f;
    t->momentum = 0.9f;
    t->weight_decay = 1e-4f;
    t->power = 0.9f;
    t->max_iter = 33050; /* semseg VOC: 50 epochs x (10582 / 16) iterations */
    t->head_lr_mult = 10.0f;
    t->ce_weight = 1.0f;
    t->aux_weight = 0.4f;
    t->kd_weight = 0.0f;
    t->kd_T = 1.0f;
    t->auxkd_weight = 0.0f;
    t->auxkd = PK_AUXKD_KL;
    t->ignore_label = 255;
    t->seed = 0;
}

static int check_shape(int n, int h, int w, pk_err *e)
{
    if (n < 1 || h < 1 || w < 1)
        return pk_fail(e, PK_EINVAL, "model: bad input size %dx%dx%d", n, h, w);
    if ((h - 1) % 8 || (w - 1) % 8)
        return pk_fail(e, PK_EINVAL,
                       "model: input %dx%d: height and width must be 8k+1 (e.g. 473, 225)", h,
                       w);
    return PK_OK;
}

/* Training also needs two images: the bin-1 PPM BatchNorm normalises over
 * the batch alone (over the global batch with SyncBN). */
static int check_train_shape(const pk_model *m, int n, int h, int w, pk_err *e)
{
    int rc = check_shape(n, h, w, e);
    if (rc == PK_OK && (long)n * pk_comm_size(m->comm) < 2)
        rc = pk_fail(e, PK_EINVAL, "training needs batch >= 2 (BatchNorm over the 1x1 PPM bin)");
    return rc;
}

/* The cached plan for this shape, rebuilt only when the shape changes. */
static int get_plan(pk_model *m, pk_plan *p, int train, int n, int h, int w, int upsample,
                    int with_aux, pk_err *e)
{
    if (!p->built || p->n != n || p->h != h || p->w != w || p->upsample != upsample ||
        p->with_aux != with_aux) {
        if (train)
            m->logits_ready = 0; /* they move with the plan */
        int rc = pk_plan_build(m, p, train, n, h, w, upsample, with_aux, e);
        if (rc != PK_OK)
            return rc;
    }
    m->last_plan = p;
    return pk_model_reserve_arena(m, p, e);
}

/* The loss terms at full resolution. The training graph ends at the
 * stride-8 logits; main's are upsampled into the full-resolution scratch,
 * the losses accumulate their gradient into the second scratch, which is
 * resized back onto main's stride-8 gradient; then the same for aux in the
 * same two buffers. */
static int losses(pk_model *m, const pk_plan *p, const pk_batch *b, const pk_train_cfg *t,
                  float *const *ext, pk_losses *out, pk_err *e)
{
    pk_ctx *c = m->ctx;
    int n = b->n, h = b->h, w = b->w, h8 = p->h8, w8 = p->w8, K = m->cfg.classes;
    float *full = pk_plan_ptr(m, p, ext, p->v_full), *dfull = pk_plan_ptr(m, p, ext, p->v_dfull);
    memset(out, 0, sizeof *out);
    /* Data parallel: each term's weight scaled by local / global count, so
     * its gradient is normalised over the global batch's valid pixels. */
    double loc[2] = {1, 1}, glob[2] = {1, 1};
    int dist = pk_dist_active(m);
    if (dist) {
        int rc = pk_dist_counts(m, b, t->ignore_label, loc, glob, e);
        if (rc)
            return rc;
    }
    /* 1 exactly in one process, so the weights below are the options' own */
    float rce = glob[0] > 0 ? (float)(loc[0] / glob[0]) : 0.0f;
    float rkd = glob[1] > 0 ? (float)(loc[1] / glob[1]) : 0.0f;
    for (int aux = 0; aux < 2; aux++) {
        int v = aux ? p->v_aux : p->v_main;
        float cw = aux ? t->aux_weight : t->ce_weight;
        float dw = aux ? t->auxkd_weight : t->kd_weight;
        pk_branch_loss_args la = {pk_plan_ptr(m, p, ext, v), n, h8, w8, K, h, w, b->label,
                                  t->ignore_label, (float)((double)cw * rce),
                                  aux ? b->teacher_aux : b->teacher_main, b->valid,
                                  !aux || t->auxkd == PK_AUXKD_KL ? PK_DISTILL_KL
                                  : t->auxkd == PK_AUXKD_SMOOTHL1 ? PK_DISTILL_SMOOTHL1
                                                                  : PK_DISTILL_MSE,
                                  t->kd_T, (float)((double)dw * rkd)};
        if (!(dw > 0.0f))
            la.distill = PK_DISTILL_NONE;
        float ce, d;
        pk_branch_loss(c, dfull, full, &la, &ce, &d);
        pk_resize_backward(c, pk_plan_ptr(m, p, ext, p->vals[v].grad), dfull, n, h8, w8, K, h,
                           w);
        if (aux) {
            out->aux_ce = ce;
            out->aux_kd = d;
        } else {
            out->ce = ce;
            out->kd = d;
        }
    }
    if (dist) {
        int rc = pk_dist_losses(m, out, loc, glob, e);
        if (rc)
            return rc;
    }
    out->total = t->ce_weight * out->ce + t->aux_weight * out->aux_ce +
                 (b->teacher_main ? t->kd_weight * out->kd : 0.0f) +
                 (b->teacher_aux ? t->auxkd_weight * out->aux_kd : 0.0f);
    return PK_OK;
}

/* The forward, the losses and the backward of one train step. */
static int forward_loss_backward(pk_model *m, const pk_plan *p, const pk_batch *b,
                                 const pk_train_cfg *t, pk_exec_args *a, pk_losses *l, pk_err *e)
{
    int rc = pk_exec_forward(m, p, a, e);
    if (rc != PK_OK)
        return rc;
    m->num_batches++;
    double t0 = m->profile ? pk_prof_now(m) : 0.0;
    if ((rc = losses(m, p, b, t, a->ext, l, e)) != PK_OK)
        return rc;
    pk_dev_zero(m->ctx, m->grads, m->nparams * sizeof(float));
    if (m->profile)
        pk_prof_add(m, PK_G_LOSS, -1, PK_PROF_FWD, pk_prof_now(m) - t0);
    return pk_exec_backward(m, p, a, e);
}

int pk_model_forward_backward(pk_model *m, const pk_batch *b, const pk_train_cfg *t,
                              long iter, pk_losses *out, pk_err *e)
{
    int rc = check_train_shape(m, b->n, b->h, b->w, e);
    if (rc != PK_OK)
        return rc;
    if (!b->image || !b->label)
        return pk_fail(e, PK_EINVAL, "model: a training batch needs an image and labels");
    if (t->auxkd != PK_AUXKD_KL && t->auxkd != PK_AUXKD_SMOOTHL1 && t->auxkd != PK_AUXKD_MSE)
        return pk_fail(e, PK_EINVAL, "model: unknown aux distillation loss %d", (int)t->auxkd);
    if ((t->kd_weight > 0.0f || (t->auxkd_weight > 0.0f && t->auxkd == PK_AUXKD_KL)) &&
        !(t->kd_T > 0.0f))
        return pk_fail(e, PK_EINVAL, "model: the KD temperature must be > 0");
    m->logits_ready = 0;
    pk_plan *p = &m->train_plan;
    if ((rc = get_plan(m, p, 1, b->n, b->h, b->w, 0, 1, e)) != PK_OK)
        return rc;
    pk_exec_args a = {{NULL, (float *)b->image, NULL, NULL}, 1, m->cfg.dropout,
                      pk_hash64(t->seed ^ pk_hash64((uint64_t)iter))};
    if (m->profile)
        m->prof_steps++;
    pk_losses l;
    /* the weights stay as they are until the backward is done */
    pk_conv_keep_begin(m->ctx);
    rc = forward_loss_backward(m, p, b, t, &a, &l, e);
    pk_conv_keep_end(m->ctx);
    if (rc != PK_OK)
        return rc;
    if (pk_dist_active(m) && (rc = pk_dist_allreduce_grads(m, e)) != PK_OK)
        return rc;
    l.lr = pk_poly_lr(t->base_lr, iter, t->max_iter, t->power);
    m->logits_ready = 1;
    if (out)
        *out = l;
    return PK_OK;
}

float pk_model_sgd_step(pk_model *m, const pk_train_cfg *t, long iter)
{
    double t0 = m->profile ? pk_prof_now(m) : 0.0;
    float lr = pk_poly_lr(t->base_lr, iter, t->max_iter, t->power);
    pk_param_group g[2];
    int ng = pk_model_param_groups(m, t->head_lr_mult, g, 2);
    pk_sgd_step(m->ctx, m->params, m->momentum, m->grads, g, ng, lr, t->momentum,
                t->weight_decay);
    if (m->profile)
        pk_prof_add(m, PK_G_SGD, -1, PK_PROF_FWD, pk_prof_now(m) - t0);
    return lr;
}

int pk_model_grad_norm(pk_model *m, double *norm, pk_err *e)
{
    size_t n = pk_model_num_params(m), chunk = (size_t)1 << 20;
    const float *g = m->grads;
    float *host = NULL;
    if (pk_ctx_device(m->ctx) != PK_DEV_CPU) {
        if (!(host = malloc((n < chunk ? n : chunk) * sizeof *host)))
            return pk_fail(e, PK_ENOMEM, "out of memory for the gradient norm");
        pk_dev_sync(m->ctx);
    }
    double ss = 0.0;
    for (size_t at = 0; at < n; at += chunk) {
        size_t k = n - at < chunk ? n - at : chunk;
        const float *x = g + at;
        if (host) {
            pk_dev_download(m->ctx, host, g + at, k * sizeof *host);
            x = host;
        }
        for (size_t i = 0; i < k; i++)
            ss += (double)x[i] * x[i];
    }
    free(host);
    *norm = sqrt(ss);
    return PK_OK;
}

int pk_model_train_step(pk_model *m, const pk_batch *b, const pk_train_cfg *t, long iter,
                        pk_losses *out, pk_err *e)
{
    pk_losses l;
    int rc = pk_model_forward_backward(m, b, t, iter, &l, e);
    if (rc != PK_OK)
        return rc;
    l.lr = pk_model_sgd_step(m, t, iter);
    if (out)
        *out = l;
    return PK_OK;
}

int pk_model_infer(pk_model *m, float *main_logits, float *aux_logits, const float *image,
                   int n, int h, int w, int upsample, pk_err *e)
{
    int rc = check_shape(n, h, w, e);
    if (rc != PK_OK)
        return rc;
    if (!main_logits || !image)
        return pk_fail(e, PK_EINVAL, "model: inference needs an image and an output buffer");
    m->logits_ready = 0;
    pk_plan *p = &m->infer_plan;
    if ((rc = get_plan(m, p, 0, n, h, w, upsample ? 1 : 0, aux_logits != NULL, e)) != PK_OK)
        return rc;
    pk_exec_args a = {{NULL, (float *)image, main_logits, aux_logits}, 0, 0.0f, 0};
    if (m->profile)
        m->prof_steps++;
    return pk_exec_forward(m, p, &a, e);
}

size_t pk_model_arena_bytes(const pk_model *m)
{
    const pk_plan *p = m->last_plan;
    return p && p->n > 0 ? p->arena_floats * sizeof(float) / (size_t)p->n : 0;
}

int pk_model_plan(pk_model *m, int train, int n, int h, int w, size_t *bytes_per_image,
                  pk_err *e)
{
    int rc = train ? check_train_shape(m, n, h, w, e) : check_shape(n, h, w, e);
    if (rc == PK_OK)
        rc = get_plan(m, train ? &m->train_plan : &m->infer_plan, train, n, h, w, !train, 1, e);
    if (rc == PK_OK && bytes_per_image)
        *bytes_per_image = pk_model_arena_bytes(m);
    return rc;
}

const float *pk_model_last_logits(const pk_model *m, int aux)
{
    if (!m->logits_ready || !m->train_plan.built)
        return NULL;
    const pk_plan *p = &m->train_plan;
    return pk_plan_ptr(m, p, NULL, aux ? p->v_aux : p->v_main);
}
