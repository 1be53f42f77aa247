/* The architecture walk that creates the layer list and the state_dict
 * tensor table, with semseg PSPNet's names, in its state_dict() order:
 * layer0 (stem), layer1..4, ppm.features.{0..3}, cls, aux. Parameters get
 * offsets in the param buffer in that order, so the backbone comes first
 * and the heads (ppm/cls/aux) form one contiguous tail. */
#include "model/pspnet_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/grow.h"

#define PK_ALIGN_FLOATS 16 /* 64-byte aligned tensors in the buffers */

pk_arch_desc pk_arch_describe(pk_arch a)
{
    if (a == PK_ARCH_R18)
        return (pk_arch_desc){0, {2, 2, 2, 2}, 512, 256, 128};
    return (pk_arch_desc){1, {3, 4, 6, 3}, 2048, 1024, 256};
}

static size_t align_up(size_t x)
{
    return (x + PK_ALIGN_FLOATS - 1) / PK_ALIGN_FLOATS * PK_ALIGN_FLOATS;
}

/* Returns the tensor's index, or -1 with e filled. */
static int add_tensor(pk_model *m, const char *name, const char *suffix, pk_tensor_kind kind,
                      int ndim, const int64_t *shape, int is_conv, int head, pk_err *e)
{
    pk_tensor_info *t = pk_grow(m->tensors, &m->cap_tensors, m->ntensors, 256, sizeof *t);
    if (!t) {
        pk_fail(e, PK_ENOMEM, "model: out of memory for the tensor table");
        return -1;
    }
    m->tensors = t;
    t += m->ntensors;
    memset(t, 0, sizeof *t);
    int len = snprintf(t->name, sizeof t->name, "%s.%s", name, suffix);
    if (len < 0 || (size_t)len >= sizeof t->name) {
        pk_fail(e, PK_EINVAL, "model: tensor name too long: %s.%s", name, suffix);
        return -1;
    }
    t->kind = kind;
    t->ndim = ndim;
    t->count = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->count *= (size_t)shape[i];
    }
    t->is_conv_weight = is_conv;
    t->head = head;
    if (kind == PK_T_PARAM) {
        t->offset = m->nparams;
        m->nparams = align_up(m->nparams + t->count);
        if (!head)
            m->nbackbone = m->nparams;
    } else if (kind == PK_T_RUNNING) {
        t->offset = m->nstate;
        m->nstate = align_up(m->nstate + t->count);
    }
    return m->ntensors++;
}

/* A convolution named `conv` (PyTorch module path) and, when bn is not
 * NULL, the BatchNorm2d named `bn` that follows it. Returns the layer index
 * or a negative status. */
static int add_layer(pk_model *m, const char *conv, const char *bn, int ci, int co, int k,
                     int stride, int pad, int dil, int bias, int group, pk_err *e)
{
    pk_layer *l = pk_grow(m->layers, &m->cap_layers, m->nlayers, 64, sizeof *l);
    if (!l)
        return -pk_fail(e, PK_ENOMEM, "model: out of memory for the layer list");
    m->layers = l;
    int head = group >= PK_G_PPM;
    pk_layer L = {ci, co, k, stride, pad, dil, -1, -1, -1, group, 0};
    int64_t wshape[4] = {co, ci, k, k}, cshape[1] = {co};
    if ((L.w = add_tensor(m, conv, "weight", PK_T_PARAM, 4, wshape, 1, head, e)) < 0)
        return -e->code;
    if (bias && (L.b = add_tensor(m, conv, "bias", PK_T_PARAM, 1, cshape, 0, head, e)) < 0)
        return -e->code;
    if (bn) {
        static const int64_t scalar[1] = {0};
        if ((L.bn = add_tensor(m, bn, "weight", PK_T_PARAM, 1, cshape, 0, head, e)) < 0 ||
            add_tensor(m, bn, "bias", PK_T_PARAM, 1, cshape, 0, head, e) < 0 ||
            add_tensor(m, bn, "running_mean", PK_T_RUNNING, 1, cshape, 0, head, e) < 0 ||
            add_tensor(m, bn, "running_var", PK_T_RUNNING, 1, cshape, 0, head, e) < 0 ||
            add_tensor(m, bn, "num_batches_tracked", PK_T_NUM_BATCHES, 0, scalar, 0, head,
                       e) < 0)
            return -e->code;
    }
    m->layers[m->nlayers] = L;
    return m->nlayers++;
}

/* snprintf into a fixed buffer that cannot overflow for our names. */
#define NAME(buf, ...) snprintf(buf, sizeof buf, __VA_ARGS__)

static int add_stem(pk_model *m, pk_err *e)
{
    if (m->cfg.stem == PK_STEM_7X7)
        return add_layer(m, "layer0.0", "layer0.1", 3, 64, 7, 2, 3, 1, 0, PK_G_STEM, e);
    int r;
    if ((r = add_layer(m, "layer0.0", "layer0.1", 3, 64, 3, 2, 1, 1, 0, PK_G_STEM, e)) < 0 ||
        (r = add_layer(m, "layer0.3", "layer0.4", 64, 64, 3, 1, 1, 1, 0, PK_G_STEM, e)) < 0 ||
        (r = add_layer(m, "layer0.6", "layer0.7", 64, 128, 3, 1, 1, 1, 0, PK_G_STEM, e)) < 0)
        return r;
    return 0;
}

/* One residual block. The dilated layers (3 and 4) have stride 1 everywhere
 * and conv2 dilation = padding = dil (semseg's rule; for the BasicBlock
 * the first 3x3 loses its stride as well). */
static int add_block(pk_model *m, const char *pre, int inplanes, int planes, int stride,
                     int dil, int downsample, int group, pk_err *e)
{
    char c1[48], b1[48], c2[48], b2[48], c3[48], b3[48], d0[48], d1[48];
    NAME(c1, "%s.conv1", pre);
    NAME(b1, "%s.bn1", pre);
    NAME(c2, "%s.conv2", pre);
    NAME(b2, "%s.bn2", pre);
    NAME(c3, "%s.conv3", pre);
    NAME(b3, "%s.bn3", pre);
    NAME(d0, "%s.downsample.0", pre);
    NAME(d1, "%s.downsample.1", pre);
    int r, out;
    if (m->ad.bottleneck) {
        out = planes * 4;
        if ((r = add_layer(m, c1, b1, inplanes, planes, 1, 1, 0, 1, 0, group, e)) < 0 ||
            (r = add_layer(m, c2, b2, planes, planes, 3, stride, dil, dil, 0, group, e)) < 0 ||
            (r = add_layer(m, c3, b3, planes, out, 1, 1, 0, 1, 0, group, e)) < 0)
            return r;
    } else {
        out = planes;
        if ((r = add_layer(m, c1, b1, inplanes, planes, 3, stride, 1, 1, 0, group, e)) < 0 ||
            (r = add_layer(m, c2, b2, planes, planes, 3, 1, dil, dil, 0, group, e)) < 0)
            return r;
    }
    if (downsample) {
        if ((r = add_layer(m, d0, d1, inplanes, out, 1, stride, 0, 1, 0, group, e)) < 0)
            return r;
        m->layers[r].downsample = 1;
    }
    return 0;
}

static int add_backbone(pk_model *m, pk_err *e)
{
    static const int planes[4] = {64, 128, 256, 512};
    static const int stride[4] = {1, 2, 1, 1}; /* layer3/4 dilated instead */
    static const int dil[4] = {1, 1, 2, 4};
    int exp = m->ad.bottleneck ? 4 : 1, r;
    int inplanes = m->cfg.stem == PK_STEM_DEEP ? 128 : 64;
    for (int li = 0; li < 4; li++) {
        /* torchvision's rule, evaluated with the original strides (layer3/4
         * had stride 2, so their first block always has a downsample) */
        int orig_stride = li == 0 ? 1 : 2;
        for (int bi = 0; bi < m->ad.blocks[li]; bi++) {
            char pre[32];
            NAME(pre, "layer%d.%d", li + 1, bi);
            int ds = bi == 0 && (orig_stride != 1 || inplanes != planes[li] * exp);
            int s = bi == 0 ? stride[li] : 1;
            if ((r = add_block(m, pre, inplanes, planes[li], s, dil[li], ds,
                               PK_G_LAYER1 + li, e)) < 0)
                return r;
            inplanes = planes[li] * exp;
        }
    }
    return 0;
}

static int add_heads(pk_model *m, pk_err *e)
{
    int C = m->ad.fea, red = C / 4, K = m->cfg.classes, r;
    for (int b = 0; b < 4; b++) {
        char conv[40], bn[40];
        NAME(conv, "ppm.features.%d.1", b);
        NAME(bn, "ppm.features.%d.2", b);
        if ((r = add_layer(m, conv, bn, C, red, 1, 1, 0, 1, 0, PK_G_PPM, e)) < 0)
            return r;
    }
    if ((r = add_layer(m, "cls.0", "cls.1", 2 * C, 512, 3, 1, 1, 1, 0, PK_G_CLS, e)) < 0 ||
        (r = add_layer(m, "cls.4", NULL, 512, K, 1, 1, 0, 1, 1, PK_G_CLS, e)) < 0 ||
        (r = add_layer(m, "aux.0", "aux.1", m->ad.aux_in, m->ad.aux_mid, 3, 1, 1, 1, 0,
                       PK_G_AUX, e)) < 0 ||
        (r = add_layer(m, "aux.4", NULL, m->ad.aux_mid, K, 1, 1, 0, 1, 1, PK_G_AUX, e)) < 0)
        return r;
    return 0;
}

int pk_model_build_table(pk_model *m, pk_err *e)
{
    m->ad = pk_arch_describe(m->cfg.arch);
    if (add_stem(m, e) < 0 || add_backbone(m, e) < 0 || add_heads(m, e) < 0)
        return e->code;
    return PK_OK;
}
