/* ImageNet initialisation of the backbone from torchvision-named ResNet
 * weights (see pk_load_imagenet in checkpoint.h). */
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

/* The ImageNet file's name for backbone tensor `name`, or 0 when the tensor
 * belongs to the heads (ppm/cls/aux) and keeps its initialisation. */
static int imagenet_name(const char *name, pk_stem stem, char *out, size_t n)
{
    if (!strncmp(name, "layer0.", 7)) {
        char *end;
        long idx = strtol(name + 7, &end, 10);
        const char *mod = *end == '.' ? stem_module(stem, (int)idx) : NULL;
        if (!mod)
            return 0;
        snprintf(out, n, "%s%s", mod, end);
        return 1;
    }
    if (!strncmp(name, "layer", 5) && name[5] >= '1' && name[5] <= '4' && name[6] == '.') {
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

/* fc.* (the classifier) and the BN counters are not needed: ignored. */
static int ignored(const char *name)
{
    return !strncmp(name, "fc.", 3) || ends_with(name, "num_batches_tracked");
}

/* Is file tensor `fname` the ImageNet name of some backbone tensor? */
static int known_name(const pk_model *m, const char *fname)
{
    pk_stem stem = pk_model_config(m)->stem;
    char mapped[128];
    for (int i = 0; i < pk_model_tensor_count(m); i++) {
        const pk_tensor_info *ti = pk_model_tensor(m, i);
        if (!ti->head && imagenet_name(ti->name, stem, mapped, sizeof mapped) &&
            !strcmp(mapped, fname))
            return 1;
    }
    return 0;
}

static int check_file(const pk_st_file *f, const pk_model *m, const char *path, pk_err *e)
{
    pk_stem stem = pk_model_config(m)->stem;
    char mapped[128];
    for (int i = 0; i < pk_model_tensor_count(m); i++) {
        const pk_tensor_info *ti = pk_model_tensor(m, i);
        if (ti->head || ti->kind == PK_T_NUM_BATCHES ||
            !imagenet_name(ti->name, stem, mapped, sizeof mapped))
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
        if (!ignored(name) && !known_name(m, name))
            return pk_fail(e, PK_EFORMAT,
                           "%s: unexpected tensor '%s' (not a %s backbone tensor with the %s "
                           "stem)",
                           path, name, pk_arch_name(pk_model_config(m)->arch),
                           pk_stem_name(stem));
    }
    return PK_OK;
}

int pk_load_imagenet(pk_model *m, const char *path, pk_err *e)
{
    pk_st_file *f = NULL;
    int rc = pk_st_open(&f, path, e);
    if (rc)
        return rc;
    rc = check_file(f, m, path, e);
    size_t mx = pk_ckl_max_count(m);
    float *s1 = NULL, *s2 = NULL;
    if (!rc && (!(s1 = malloc(mx * sizeof(float))) || !(s2 = malloc(mx * sizeof(float)))))
        rc = pk_fail(e, PK_ENOMEM, "out of memory loading %s", path);
    pk_stem stem = pk_model_config(m)->stem;
    char mapped[128];
    for (int i = 0; !rc && i < pk_model_tensor_count(m); i++) {
        const pk_tensor_info *ti = pk_model_tensor(m, i);
        if (ti->head || ti->kind == PK_T_NUM_BATCHES ||
            !imagenet_name(ti->name, stem, mapped, sizeof mapped))
            continue;
        float *base = ti->kind == PK_T_PARAM ? pk_model_params(m) : pk_model_state(m);
        pk_ckl_write_tensor(m, base, ti, pk_st_find(f, mapped), s1, s2);
    }
    pk_dev_sync(pk_model_ctx(m));
    free(s1);
    free(s2);
    pk_st_close(f);
    return rc;
}
