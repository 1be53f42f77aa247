#include "support_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/rng.h"

static uint64_t formula_bits(uint64_t stream, uint64_t i)
{
    return pk_hash64((stream << 32) | i);
}

double pk_test_formula_u(uint64_t stream, uint64_t i)
{
    return (double)(formula_bits(stream, i) >> 40) / 16777216.0;
}

void pk_test_formula_fill(float *x, size_t n, uint64_t stream, double lo, double hi)
{
    long len = (long)n;
#pragma omp parallel for schedule(static) if (len > 65536)
    for (long i = 0; i < len; i++)
        x[i] = (float)(lo + (hi - lo) * pk_test_formula_u(stream, (uint64_t)i));
}

void pk_test_formula_labels(uint8_t *lab, size_t n, uint64_t stream, int K)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t h = formula_bits(stream, i);
        lab[i] = (h >> 40) % 100 < 10 ? 255 : (uint8_t)((h >> 8) % (uint64_t)K);
    }
}

size_t pk_test_buffer_index(const pk_tensor_info *t, size_t i)
{
    if (!t->is_conv_weight)
        return i;
    size_t ci = (size_t)t->shape[1], kh = (size_t)t->shape[2], kw = (size_t)t->shape[3];
    size_t x = i % kw, y = i / kw % kh, c = i / (kw * kh) % ci, o = i / (kw * kh * ci);
    return ((o * kh + y) * kw + x) * ci + c;
}

/* Tensor k's formula values in PyTorch layout into dst[t->count]. */
static void formula_tensor(const pk_model *m, int k, int kinkfree, float *dst)
{
    const pk_tensor_info *t = pk_model_tensor(m, k);
    const char *leaf = strrchr(t->name, '.') + 1;
    uint64_t stream = (uint64_t)k + 1;
    int conv_bias = k > 0 && pk_model_tensor(m, k - 1)->is_conv_weight;
    if (t->is_conv_weight) {
        double a = sqrt(3.0 / (double)(t->shape[1] * t->shape[2] * t->shape[3]));
        pk_test_formula_fill(dst, t->count, stream, -a, a);
    } else if (!strcmp(leaf, "weight")) {
        pk_test_formula_fill(dst, t->count, stream, kinkfree ? 0.5 : 0.75, kinkfree ? 0.6 : 1.25);
    } else if (!strcmp(leaf, "bias") && kinkfree && !conv_bias) {
        /* +-(2.5 + 0.25|v|): away from the ReLU kink; always positive for the
         * BNs feeding a residual add (the block's last bn, downsample.1) */
        size_t len = strlen(t->name);
        const char *last = pk_model_config(m)->arch == PK_ARCH_R50 ? ".bn3.bias" : ".bn2.bias";
        int alive = !strncmp(t->name, "layer", 5) &&
                    ((len > strlen(last) && !strcmp(t->name + len - strlen(last), last)) ||
                     strstr(t->name, "downsample.1.bias") != NULL);
        for (size_t i = 0; i < t->count; i++) { /* (small: BN channels) */
            double u = -1.0 + 2.0 * pk_test_formula_u(stream, i);
            double mag = 2.5 + 0.25 * fabs(u);
            dst[i] = (float)(alive || u >= 0 ? mag : -mag);
        }
    } else if (!strcmp(leaf, "running_var")) {
        pk_test_formula_fill(dst, t->count, stream, 0.5, 1.5);
    } else { /* bias, running_mean */
        pk_test_formula_fill(dst, t->count, stream, -0.1, 0.1);
    }
}

int pk_test_model_fill(pk_model *m, int kinkfree)
{
    pk_ctx *c = pk_model_ctx(m);
    size_t np = pk_model_num_params(m), ns = pk_model_num_state(m);
    float *p = calloc(np, sizeof *p), *s = calloc(ns ? ns : 1, sizeof *s);
    float *tmp = NULL;
    if (!p || !s)
        goto fail;
    for (int k = 0; k < pk_model_tensor_count(m); k++) {
        const pk_tensor_info *t = pk_model_tensor(m, k);
        if (t->kind == PK_T_NUM_BATCHES)
            continue;
        float *dst = (t->kind == PK_T_PARAM ? p : s) + t->offset;
        free(tmp);
        if (!(tmp = malloc(t->count * sizeof *tmp)))
            goto fail;
        formula_tensor(m, k, kinkfree, tmp);
        long len = (long)t->count;
#pragma omp parallel for schedule(static) if (len > 65536)
        for (long i = 0; i < len; i++)
            dst[pk_test_buffer_index(t, (size_t)i)] = tmp[i];
    }
    pk_dev_upload(c, pk_model_params(m), p, np * sizeof *p);
    if (ns)
        pk_dev_upload(c, pk_model_state(m), s, ns * sizeof *s);
    pk_dev_zero(c, pk_model_momentum(m), np * sizeof *p);
    pk_model_set_num_batches_tracked(m, 0);
    free(tmp);
    free(p);
    free(s);
    return 0;
fail:
    free(tmp);
    free(p);
    free(s);
    return 1;
}

int pk_test_model_read(pk_model *m, const pk_tensor_info *t, int which, float *dst)
{
    const float *buf = t->kind == PK_T_RUNNING ? pk_model_state(m)
                       : which == 1           ? pk_model_grads(m)
                       : which == 2           ? pk_model_momentum(m)
                                              : pk_model_params(m);
    float *tmp = malloc(t->count * sizeof *tmp);
    if (!tmp)
        return 1;
    pk_dev_download(pk_model_ctx(m), tmp, buf + t->offset, t->count * sizeof *tmp);
    long len = (long)t->count;
#pragma omp parallel for schedule(static) if (len > 65536)
    for (long i = 0; i < len; i++)
        dst[i] = tmp[pk_test_buffer_index(t, (size_t)i)];
    free(tmp);
    return 0;
}

void *pk_test_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "test: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

pk_test_batch pk_test_batch_make(int n, int h, int w, int K, uint64_t image_stream)
{
    size_t P = (size_t)n * h * w, logits = P * (size_t)K * sizeof(float);
    pk_test_batch b = {n,
                       h,
                       w,
                       pk_test_xmalloc(P * 3 * sizeof(float)),
                       pk_test_xmalloc(logits),
                       pk_test_xmalloc(logits),
                       pk_test_xmalloc(P),
                       pk_test_xmalloc(P)};
    pk_test_formula_fill(b.image, P * 3, image_stream, -2.0, 2.0);
    pk_test_formula_fill(b.tmain, P * K, 100003, -4.0, 4.0);
    pk_test_formula_fill(b.taux, P * K, 100004, -4.0, 4.0);
    pk_test_formula_labels(b.label, P, 100002, K);
    memset(b.valid, 1, P);
    return b;
}

void pk_test_batch_free(pk_test_batch *b)
{
    free(b->image);
    free(b->tmain);
    free(b->taux);
    free(b->label);
    free(b->valid);
}

pk_batch pk_test_batch_view(const pk_test_batch *b)
{
    return (pk_batch){b->n, b->h, b->w, b->image, b->label, b->valid, b->tmain, b->taux};
}

pk_train_cfg pk_test_kd_cfg(float kd_weight, pk_auxkd auxkd)
{
    pk_train_cfg t;
    pk_train_cfg_defaults(&t);
    t.kd_weight = kd_weight;
    t.kd_T = 2.0f;
    t.auxkd_weight = 0.5f;
    t.auxkd = auxkd;
    return t;
}
