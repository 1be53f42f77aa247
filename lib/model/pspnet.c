/* PSPNet model object: creation, the parameter/state buffers and their
 * accessors, PyTorch-style initialisation, LR groups and FLOP counting. */
#include "model/pspnet_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/rng.h"

const char *pk_arch_name(pk_arch a)
{
    return a == PK_ARCH_R18 ? "resnet18" : a == PK_ARCH_R50 ? "resnet50" : "?";
}

const char *pk_stem_name(pk_stem s)
{
    return s == PK_STEM_7X7 ? "7x7" : s == PK_STEM_DEEP ? "deep" : "?";
}

int pk_arch_parse(const char *s, pk_arch *out)
{
    if (!strcmp(s, "resnet18") || !strcmp(s, "r18")) {
        *out = PK_ARCH_R18;
        return PK_OK;
    }
    if (!strcmp(s, "resnet50") || !strcmp(s, "r50")) {
        *out = PK_ARCH_R50;
        return PK_OK;
    }
    return PK_EINVAL;
}

int pk_stem_parse(const char *s, pk_stem *out)
{
    if (!strcmp(s, "7x7")) {
        *out = PK_STEM_7X7;
        return PK_OK;
    }
    if (!strcmp(s, "deep")) {
        *out = PK_STEM_DEEP;
        return PK_OK;
    }
    return PK_EINVAL;
}

int pk_model_create(pk_model **out, pk_ctx *c, const pk_model_cfg *cfg, pk_err *e)
{
    *out = NULL;
    if (cfg->arch != PK_ARCH_R18 && cfg->arch != PK_ARCH_R50)
        return pk_fail(e, PK_EINVAL, "model: unknown architecture %d", (int)cfg->arch);
    if (cfg->stem != PK_STEM_7X7 && cfg->stem != PK_STEM_DEEP)
        return pk_fail(e, PK_EINVAL, "model: unknown stem %d", (int)cfg->stem);
    /* also the losses' bound: their per-pixel softmax is on the stack */
    _Static_assert(255 <= PK_LOSS_KMAX, "the losses take at most PK_LOSS_KMAX classes");
    if (cfg->classes < 1 || cfg->classes > 255)
        return pk_fail(e, PK_EINVAL, "model: classes must be in 1..255 (labels are bytes, "
                                     "255 = ignore), got %d", cfg->classes);
    if (!(cfg->dropout >= 0.0f && cfg->dropout < 1.0f))
        return pk_fail(e, PK_EINVAL, "model: dropout must be in [0, 1), got %g",
                       (double)cfg->dropout);
    pk_model *m = calloc(1, sizeof *m);
    if (!m)
        return pk_fail(e, PK_ENOMEM, "model: out of memory");
    m->ctx = c;
    m->cfg = *cfg;
    int rc = pk_model_build_table(m, e);
    if (rc != PK_OK) {
        pk_model_destroy(m);
        return rc;
    }
    size_t pb = m->nparams * sizeof(float), sb = m->nstate * sizeof(float);
    m->params = pk_dev_alloc(c, pb);
    m->grads = pk_dev_alloc(c, pb);
    m->momentum = pk_dev_alloc(c, pb);
    m->state = pk_dev_alloc(c, sb);
    if (!m->params || !m->grads || !m->momentum || !m->state) {
        pk_model_destroy(m);
        return pk_fail(e, PK_ENOMEM, "model: cannot allocate %zu MB of parameter buffers",
                       (3 * pb + sb) >> 20);
    }
    /* zero until pk_model_init or a checkpoint load; alignment gaps stay zero */
    pk_dev_zero(c, m->params, pb);
    pk_dev_zero(c, m->grads, pb);
    pk_dev_zero(c, m->momentum, pb);
    pk_dev_zero(c, m->state, sb);
    *out = m;
    return PK_OK;
}

void pk_model_destroy(pk_model *m)
{
    if (!m)
        return;
    pk_conv_keep_release(m->ctx); /* the transforms of its weights among them */
    pk_dev_free(m->ctx, m->params);
    pk_dev_free(m->ctx, m->grads);
    pk_dev_free(m->ctx, m->momentum);
    pk_dev_free(m->ctx, m->state);
    pk_dev_free(m->ctx, m->arena);
    pk_plan_free(&m->train_plan);
    free(m->unpacked);
    free(m->fold);
    pk_plan_free(&m->infer_plan);
    free(m->tensors);
    free(m->layers);
    free(m);
}

const pk_model_cfg *pk_model_config(const pk_model *m) { return &m->cfg; }
pk_ctx *pk_model_ctx(pk_model *m) { return m->ctx; }
int pk_model_tensor_count(const pk_model *m) { return m->ntensors; }

const pk_tensor_info *pk_model_tensor(const pk_model *m, int i)
{
    return i >= 0 && i < m->ntensors ? &m->tensors[i] : NULL;
}

const pk_tensor_info *pk_model_find(const pk_model *m, const char *name)
{
    for (int i = 0; i < m->ntensors; i++)
        if (!strcmp(m->tensors[i].name, name))
            return &m->tensors[i];
    return NULL;
}

size_t pk_model_num_params(const pk_model *m) { return m->nparams; }
size_t pk_model_num_state(const pk_model *m) { return m->nstate; }
float *pk_model_params(pk_model *m) { return m->params; }
float *pk_model_grads(pk_model *m) { return m->grads; }
float *pk_model_momentum(pk_model *m) { return m->momentum; }
float *pk_model_state(pk_model *m) { return m->state; }
int64_t pk_model_num_batches_tracked(const pk_model *m) { return m->num_batches; }
void pk_model_set_num_batches_tracked(pk_model *m, int64_t v) { m->num_batches = v; }

int pk_model_param_groups(const pk_model *m, float head_mult, pk_param_group *groups,
                          int max_groups)
{
    pk_param_group g[2] = {{0, m->nbackbone, 1.0f},
                           {m->nbackbone, m->nparams - m->nbackbone, head_mult}};
    for (int i = 0; i < 2 && i < max_groups; i++)
        groups[i] = g[i];
    return 2;
}

/* The fan of a conv weight [co, ci, k, k]. */
static double fan(const pk_tensor_info *t, int out)
{
    return (double)(out ? t->shape[0] : t->shape[1]) * (double)t->shape[2] *
           (double)t->shape[3];
}

/* Fills d[n] from a counter-based stream (key, index): normal (sd > 0, Box-
 * Muller pairs) or uniform in [-b, b] (sd == 0); the same values for any
 * thread count. */
static void fill_random(pk_ctx *c, float *d, size_t n, uint64_t key, float sd, float b)
{
    long pairs = (long)((n + 1) / 2);
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) if (n > 65536)
    for (long j = 0; j < pairs; j++) {
        uint64_t h1 = pk_hash64(key + 2 * (uint64_t)j), h2 = pk_hash64(key + 2 * (uint64_t)j + 1);
        float v0, v1;
        if (sd > 0.0f) {
            double u1 = ((double)(h1 >> 11) + 1.0) * (1.0 / 9007199254740992.0); /* (0, 1] */
            double u2 = (double)(h2 >> 11) * (1.0 / 9007199254740992.0);
            double r = sqrt(-2.0 * log(u1)), a = 6.283185307179586 * u2;
            v0 = sd * (float)(r * cos(a));
            v1 = sd * (float)(r * sin(a));
        } else {
            v0 = b * (2.0f * pk_bits_to_u01(h1) - 1.0f);
            v1 = b * (2.0f * pk_bits_to_u01(h2) - 1.0f);
        }
        d[2 * j] = v0;
        if ((size_t)(2 * j + 1) < n)
            d[2 * j + 1] = v1;
    }
}

void pk_model_zero_residual(pk_model *m)
{
    const char *last = m->cfg.arch == PK_ARCH_R50 ? ".bn3.weight" : ".bn2.weight";
    size_t l = strlen(last);
    for (int i = 0; i < m->ntensors; i++) {
        const pk_tensor_info *t = &m->tensors[i];
        size_t n = strlen(t->name);
        /* layer1..layer4 blocks ("layer0" is semseg's stem) */
        if (t->kind == PK_T_PARAM && !strncmp(t->name, "layer", 5) && t->name[5] != '0' &&
            n > l && !strcmp(t->name + n - l, last))
            pk_dev_zero(m->ctx, m->params + t->offset, t->count * sizeof(float));
    }
}

int pk_model_init(pk_model *m, uint64_t seed, pk_err *e)
{
    float *p = calloc(m->nparams, sizeof *p), *s = calloc(m->nstate ? m->nstate : 1, sizeof *s);
    if (!p || !s) { /* the weights are left alone */
        free(p);
        free(s);
        return pk_fail(e, PK_ENOMEM, "model: out of memory initialising the weights (%zu MB)",
                       (m->nparams + m->nstate) * sizeof(float) >> 20);
    }
    for (int i = 0; i < m->ntensors; i++) {
        const pk_tensor_info *t = &m->tensors[i];
        const char *dot = strrchr(t->name, '.');
        int is_bias = dot && !strcmp(dot, ".bias"), is_mean = strstr(t->name, "running_mean") != NULL;
        uint64_t key = pk_hash64(seed ^ pk_hash64((uint64_t)i + 1)) << 24; /* room for indices */
        if (t->kind == PK_T_RUNNING) {
            for (size_t j = 0; j < t->count; j++)
                s[t->offset + j] = is_mean ? 0.0f : 1.0f;
            continue;
        }
        if (t->kind != PK_T_PARAM)
            continue;
        float *d = p + t->offset;
        if (t->is_conv_weight && !t->head) {
            /* kaiming_normal_(mode='fan_out', nonlinearity='relu') */
            fill_random(m->ctx, d, t->count, key, (float)sqrt(2.0 / fan(t, 1)), 0.0f);
        } else if (t->is_conv_weight) {
            /* nn.Conv2d's default: kaiming_uniform_(a=sqrt(5)) = U(+-1/sqrt(fan_in)) */
            fill_random(m->ctx, d, t->count, key, 0.0f, (float)(1.0 / sqrt(fan(t, 0))));
        } else if (i > 0 && m->tensors[i - 1].is_conv_weight && is_bias) {
            /* conv bias: U(+-1/sqrt(fan_in)) of the weight just before */
            fill_random(m->ctx, d, t->count, key, 0.0f,
                        (float)(1.0 / sqrt(fan(&m->tensors[i - 1], 0))));
        } else { /* BatchNorm: weight 1, bias 0 */
            for (size_t j = 0; j < t->count; j++)
                d[j] = is_bias ? 0.0f : 1.0f;
        }
    }
    pk_dev_upload(m->ctx, m->params, p, m->nparams * sizeof *p);
    if (m->nstate)
        pk_dev_upload(m->ctx, m->state, s, m->nstate * sizeof *s);
    pk_dev_zero(m->ctx, m->momentum, m->nparams * sizeof(float));
    m->num_batches = 0;
    free(p);
    free(s);
    return PK_OK;
}

double pk_model_flops(const pk_model *m, int h, int w)
{
    pk_plan p = {.train = 1, .n = 1, .h = h, .w = w, .upsample = 1, .with_aux = 1};
    pk_err e = {0};
    double f = 0.0;
    if (pk_graph_build(m, &p, &e) == PK_OK)
        for (int i = 0; i < p.nnodes; i++)
            if (p.nodes[i].kind == PK_N_CONV)
                f += pk_conv_flops(&p.nodes[i].conv);
    pk_plan_free(&p);
    return f;
}
