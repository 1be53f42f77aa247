/* ImageNet initialisation of the backbone from torchvision-named ResNet
 * weights, or from the backbone of a pspkd model (see pk_load_imagenet in
 * checkpoint.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model/checkpoint.h"
#include "model/checkpoint_layout_impl.h"
#include "store/safetensors.h"

/* semseg's layer0.<i> for a ResNet's stem module, per stem: the 7x7 stem is
 * Sequential(conv1, bn1, relu, maxpool); the deep stem is Sequential(conv1,
 * bn1, relu, conv2, bn2, relu, conv3, bn3, relu, maxpool). */
static const char *stem_module(pk_stem stem, int idx)
{
    static const char *const deep[] = {"conv1", "bn1", NULL, "conv2", "bn2",
                                       NULL,    "conv3", "bn3"};
    if (stem == PK_STEM_7X7)
        return idx == 0 ? "conv1" : idx == 1 ? "bn1" : NULL;
    return idx >= 0 && idx < 8 ? deep[idx] : NULL;
}

/* How the file names the backbone: torchvision's ResNet (conv1, bn1,
 * layer1..4, fc; semseg's conv1..3/bn1..3 for the deep stem), or PSPNet's
 * own (layer0.N, layer1..4 and the heads): a pspkd model or checkpoint,
 * e.g. one trained on other data as a stand-in for ImageNet. */
typedef enum { NAMES_TORCHVISION, NAMES_PSPNET } names;

static names file_names(const pk_st_file *f)
{
    return pk_st_find(f, "layer0.0.weight") ? NAMES_PSPNET : NAMES_TORCHVISION;
}

/* The file's name for backbone tensor `name`, or 0 when the tensor belongs
 * to the heads (ppm/cls/aux) and keeps its initialisation. */
static int imagenet_name(const char *name, pk_stem stem, names nm, char *out, size_t n)
{
    if (!strncmp(name, "layer0.", 7) && nm == NAMES_TORCHVISION) {
        char *end;
        long idx = strtol(name + 7, &end, 10);
        const char *mod = *end == '.' ? stem_module(stem, (int)idx) : NULL;
        if (!mod)
            return 0;
        snprintf(out, n, "%s%s", mod, end);
        return 1;
    }
    /* layer1..4 in both namings; layer0 here only in PSPNet's */
    if (!strncmp(name, "layer", 5) && name[5] >= '0' && name[5] <= '4' && name[6] == '.') {
        snprintf(out, n, "%s", name);
        return 1;
    }
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* fc.* (the classifier), the BN counters and, in a pspkd model, the heads
 * and the optimiser state are not needed: ignored. */
static int ignored(const char *name, names nm)
{
    static const char *const pspnet[] = {"ppm.", "cls.", "aux.", "optimizer."};
    for (size_t i = 0; nm == NAMES_PSPNET && i < sizeof pspnet / sizeof *pspnet; i++)
        if (!strncmp(name, pspnet[i], strlen(pspnet[i])))
            return 1;
    return !strncmp(name, "fc.", 3) || ends_with(name, "num_batches_tracked");
}

/* Is file tensor `fname` the ImageNet name of some backbone tensor? */
static int known_name(const pk_model *m, names nm, const char *fname)
{
    pk_stem stem = pk_model_config(m)->stem;
    char mapped[128];
    for (int i = 0; i < pk_model_tensor_count(m); i++) {
        const pk_tensor_info *ti = pk_model_tensor(m, i);
        if (!ti->head && imagenet_name(ti->name, stem, nm, mapped, sizeof mapped) &&
            !strcmp(mapped, fname))
            return 1;
    }
    return 0;
}

/* The file's stem and block type against the model's, so that a file for
 * another ResNet is refused with what it is rather than with its first odd
 * tensor. */
static int check_kind(const pk_st_file *f, const pk_model *m, names nm, const char *path,
                      pk_err *e)
{
    const pk_model_cfg *cfg = pk_model_config(m);
    const char *c1_name = nm == NAMES_PSPNET ? "layer0.0.weight" : "conv1.weight";
    const pk_st_tensor *c1 = pk_st_find(f, c1_name);
    const char *arch = pk_arch_name(cfg->arch);
    if (c1 && c1->ndim == 4) {
        int file_deep = c1->shape[2] == 3;
        if (file_deep != (cfg->stem == PK_STEM_DEEP)) {
            char sh[64];
            return pk_fail(e, PK_EFORMAT,
                           "%s: tensor '%s' has shape %s: %s, the %s model has the "
                           "%s stem (--stem %s takes this file)",
                           path, c1_name, pk_shape_str(sh, sizeof sh, c1->ndim, c1->shape),
                           file_deep ? "semseg's deep stem (conv1..3)" : "torchvision's 7x7 stem",
                           arch, pk_stem_name(cfg->stem), file_deep ? "deep" : "7x7");
        }
    }
    int file_bottleneck = pk_st_find(f, "layer1.0.conv3.weight") != NULL;
    int model_bottleneck = cfg->arch == PK_ARCH_R50;
    if (pk_st_find(f, "layer1.0.conv1.weight") && file_bottleneck != model_bottleneck)
        return pk_fail(e, PK_EFORMAT,
                       "%s: tensor 'layer1.0.conv3.weight' is %s: the file is a %s ResNet, "
                       "the model a %s",
                       path, file_bottleneck ? "present" : "absent",
                       file_bottleneck ? "bottleneck (50/101/152)" : "basic-block (18/34)",
                       arch);
    return PK_OK;
}

static int check_file(const pk_st_file *f, const pk_model *m, names nm, const char *path,
                      pk_err *e)
{
    pk_stem stem = pk_model_config(m)->stem;
    char mapped[128];
    int rc = check_kind(f, m, nm, path, e);
    if (rc)
        return rc;
    for (int i = 0; i < pk_model_tensor_count(m); i++) {
        const pk_tensor_info *ti = pk_model_tensor(m, i);
        if (ti->head || ti->kind == PK_T_NUM_BATCHES ||
            !imagenet_name(ti->name, stem, nm, mapped, sizeof mapped))
            continue;
        const pk_st_tensor *t = pk_st_find(f, mapped);
        if (!t)
            return pk_fail(e, PK_EFORMAT, "%s: missing tensor '%s' (for %s, %s stem)", path,
                           mapped, pk_arch_name(pk_model_config(m)->arch), pk_stem_name(stem));
        int rc = pk_ckl_check(t, ti, path, e);
        if (rc)
            return rc;
    }
    for (int i = 0; i < pk_st_count(f); i++) {
        const char *name = pk_st_at(f, i)->name;
        if (!ignored(name, nm) && !known_name(m, nm, name))
            return pk_fail(e, PK_EFORMAT,
                           "%s: unexpected tensor '%s' (not a %s backbone tensor with the %s "
                           "stem)",
                           path, name, pk_arch_name(pk_model_config(m)->arch),
                           pk_stem_name(stem));
    }
    return PK_OK;
}

static void report_ignored(const pk_st_file *f, names nm, pk_imagenet_report *rep)
{
    size_t len = 0, cap = sizeof rep->ignored_names;
    int full = 0;
    for (int i = 0; i < pk_st_count(f); i++) {
        const char *name = pk_st_at(f, i)->name;
        if (!ignored(name, nm))
            continue;
        if (ends_with(name, "num_batches_tracked")) {
            rep->counters++;
            continue;
        }
        rep->ignored++;
        if (full)
            continue; /* the list ends in "...": count the rest only */
        /* each name leaves room for the ", ..." (6 bytes with the NUL) that
         * may follow it */
        size_t need = strlen(name) + (len ? 2 : 0);
        full = len + need + 6 >= cap;
        len += (size_t)snprintf(rep->ignored_names + len, cap - len, "%s%s",
                                len ? ", " : "", full ? "..." : name);
    }
}

int pk_load_imagenet(pk_model *m, const char *path, pk_err *e)
{
    return pk_load_imagenet_report(m, path, NULL, e);
}

int pk_load_imagenet_report(pk_model *m, const char *path, pk_imagenet_report *rep,
                            pk_err *e)
{
    pk_imagenet_report local;
    if (!rep)
        rep = &local;
    memset(rep, 0, sizeof *rep);
    pk_st_file *f = NULL;
    int rc = pk_st_open(&f, path, e);
    if (rc)
        return rc;
    names nm = file_names(f);
    rc = check_file(f, m, nm, path, e);
    if (!rc)
        report_ignored(f, nm, rep);
    size_t mx = pk_ckl_max_count(m);
    float *s1 = NULL, *s2 = NULL;
    if (!rc && (!(s1 = malloc(mx * sizeof(float))) || !(s2 = malloc(mx * sizeof(float)))))
        rc = pk_fail(e, PK_ENOMEM, "out of memory loading %s", path);
    pk_stem stem = pk_model_config(m)->stem;
    char mapped[128];
    for (int i = 0; !rc && i < pk_model_tensor_count(m); i++) {
        const pk_tensor_info *ti = pk_model_tensor(m, i);
        if (ti->head || ti->kind == PK_T_NUM_BATCHES ||
            !imagenet_name(ti->name, stem, nm, mapped, sizeof mapped))
            continue;
        float *base = ti->kind == PK_T_PARAM ? pk_model_params(m) : pk_model_state(m);
        pk_ckl_write_tensor(m, base, ti, pk_st_find(f, mapped), s1, s2);
        rep->loaded++;
        rep->loaded_floats += ti->count;
    }
    pk_dev_sync(pk_model_ctx(m));
    free(s1);
    free(s2);
    pk_st_close(f);
    return rc;
}
