/* Model checkpoints: see checkpoint.h for the file contract. */
#include "model/checkpoint.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/le_bytes.h"
#include "model/checkpoint_layout_impl.h"
#include "store/safetensors.h"

#define CKPT_FORMAT "pspkd-checkpoint"
#define MOM_PREFIX "optimizer.momentum."
#define STEP_NAME "optimizer.step"

/* Keys the checkpoint writes itself; never stored among the extras. */
static const char *const reserved_keys[] = {"format", "format_version", "arch", "stem",
                                            "classes", "step", "frozen"};

static int is_reserved(const char *key)
{
    for (size_t i = 0; i < sizeof reserved_keys / sizeof *reserved_keys; i++)
        if (!strcmp(key, reserved_keys[i]))
            return 1;
    return 0;
}

const char *pk_ckpt_meta_get(const pk_ckpt_meta *meta, const char *key)
{
    if (!meta || !key)
        return NULL;
    for (int i = 0; i < meta->n_extra; i++)
        if (!strcmp(meta->extra_key[i], key))
            return meta->extra_val[i];
    return NULL;
}

int pk_ckpt_meta_set(pk_ckpt_meta *meta, const char *key, const char *value)
{
    if (!meta || !key || !value || !*key || is_reserved(key) ||
        strlen(key) >= sizeof meta->extra_key[0] || strlen(value) >= sizeof meta->extra_val[0])
        return PK_EINVAL;
    int i = 0;
    while (i < meta->n_extra && strcmp(meta->extra_key[i], key))
        i++;
    if (i == meta->n_extra) {
        if (meta->n_extra >= PK_CKPT_MAX_EXTRA)
            return PK_EINVAL;
        meta->n_extra++;
        snprintf(meta->extra_key[i], sizeof meta->extra_key[i], "%s", key);
    }
    snprintf(meta->extra_val[i], sizeof meta->extra_val[i], "%s", value);
    return PK_OK;
}

/* ---- save ------------------------------------------------------------- */

static int add_metadata(pk_st_writer *w, const pk_model *m, const pk_ckpt_meta *meta,
                        int frozen, pk_err *e)
{
    const pk_model_cfg *cfg = pk_model_config(m);
    char num[32];
    int rc = pk_st_set_meta(w, "format", CKPT_FORMAT, e);
    snprintf(num, sizeof num, "%d", PK_CKPT_FORMAT_VERSION);
    if (!rc) rc = pk_st_set_meta(w, "format_version", num, e);
    if (!rc) rc = pk_st_set_meta(w, "arch", pk_arch_name(cfg->arch), e);
    if (!rc) rc = pk_st_set_meta(w, "stem", pk_stem_name(cfg->stem), e);
    snprintf(num, sizeof num, "%d", cfg->classes);
    if (!rc) rc = pk_st_set_meta(w, "classes", num, e);
    snprintf(num, sizeof num, "%ld", meta ? meta->step : 0L);
    if (!rc) rc = pk_st_set_meta(w, "step", num, e);
    if (!rc) rc = pk_st_set_meta(w, "frozen", frozen ? "1" : "0", e);
    for (int i = 0; !rc && meta && i < meta->n_extra; i++) {
        if (is_reserved(meta->extra_key[i]))
            return pk_fail(e, PK_EINVAL, "checkpoint metadata key '%s' is reserved",
                           meta->extra_key[i]);
        rc = pk_st_set_meta(w, meta->extra_key[i], meta->extra_val[i], e);
    }
    return rc;
}

/* One pass over the tensor table: the model tensors, or (momentum = 1) the
 * optimiser's momentum for every parameter. */
static int add_tensors(pk_st_writer *w, pk_model *m, int momentum, float *out, float *scratch,
                       pk_err *e)
{
    const float *params = pk_model_params(m), *state = pk_model_state(m);
    const float *mom = pk_model_momentum(m);
    int64_t nbt = pk_model_num_batches_tracked(m);
    for (int i = 0; i < pk_model_tensor_count(m); i++) {
        const pk_tensor_info *ti = pk_model_tensor(m, i);
        int rc;
        if (momentum) {
            if (ti->kind != PK_T_PARAM)
                continue;
            char name[sizeof MOM_PREFIX + sizeof ti->name];
            snprintf(name, sizeof name, MOM_PREFIX "%s", ti->name);
            pk_ckl_read_tensor(m, mom, ti, out, scratch);
            rc = pk_st_add(w, name, PK_F32, ti->ndim, ti->shape, out, e);
        } else if (ti->kind == PK_T_NUM_BATCHES) {
            rc = pk_st_add(w, ti->name, PK_I64, ti->ndim, ti->shape, &nbt, e);
        } else {
            pk_ckl_read_tensor(m, ti->kind == PK_T_PARAM ? params : state, ti, out, scratch);
            rc = pk_st_add(w, ti->name, PK_F32, ti->ndim, ti->shape, out, e);
        }
        if (rc)
            return rc;
    }
    return PK_OK;
}

/* A frozen checkpoint never carries optimiser state, whatever
 * with_optimizer says: it is what a teacher is exported as. */
int pk_checkpoint_save(pk_model *m, const char *path, const pk_ckpt_meta *meta,
                       int with_optimizer, pk_err *e)
{
    int frozen = meta && meta->frozen;
    int with_mom = with_optimizer && !frozen;
    size_t mx = pk_ckl_max_count(m);
    float *out = malloc(mx * sizeof(float)), *scratch = malloc(mx * sizeof(float));
    pk_st_writer *w = pk_st_writer_new();
    int rc;
    if (!out || !scratch || !w) {
        rc = pk_fail(e, PK_ENOMEM, "out of memory saving %s", path);
        goto done;
    }
    pk_dev_sync(pk_model_ctx(m));
    rc = add_tensors(w, m, 0, out, scratch, e);
    if (!rc && with_mom) {
        int64_t step = meta ? meta->step : 0;
        rc = add_tensors(w, m, 1, out, scratch, e);
        if (!rc)
            rc = pk_st_add(w, STEP_NAME, PK_I64, 0, NULL, &step, e);
    }
    if (!rc)
        rc = add_metadata(w, m, meta, frozen, e);
    if (!rc)
        rc = pk_st_write(w, path, e);
done:
    pk_st_writer_free(w);
    free(out);
    free(scratch);
    return rc;
}

/* ---- load ------------------------------------------------------------- */

/* Parses a base-10 integer metadata value. */
static int parse_long(const char *s, long *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

/* The safetensors reader exposes single keys only; the free-form extras are
 * enumerated from the (already validated) header here. Keys or values too
 * long for pk_ckpt_meta, and those past PK_CKPT_MAX_EXTRA, are skipped: a
 * foreign file may carry anything there. */
static int read_extras(const char *path, pk_ckpt_meta *meta, pk_err *e)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return pk_fail(e, PK_EIO, "%s: %s", path, strerror(errno));
    unsigned char len8[8];
    uint64_t len = 0;
    char *hdr = NULL;
    int rc = PK_OK;
    if (fread(len8, 1, 8, f) != 8) {
        rc = pk_fail(e, PK_EFORMAT, "%s: truncated header", path);
        goto done;
    }
    len = pk_get64(len8);
    if (len > (100u << 20) || !(hdr = malloc(len + 1))) {
        rc = pk_fail(e, PK_EFORMAT, "%s: header length %" PRIu64 " is implausible", path, len);
        goto done;
    }
    if (fread(hdr, 1, len, f) != len) {
        rc = pk_fail(e, PK_EFORMAT, "%s: truncated header", path);
        goto done;
    }
    hdr[len] = 0;
    cJSON *root = cJSON_ParseWithLength(hdr, len);
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    const cJSON *it;
    cJSON_ArrayForEach(it, md)
    {
        if (cJSON_IsString(it) && !is_reserved(it->string))
            (void)pk_ckpt_meta_set(meta, it->string, it->valuestring);
    }
    cJSON_Delete(root);
done:
    free(hdr);
    fclose(f);
    return rc;
}

static int is_pspkd_file(const pk_st_file *f)
{
    const char *fmt = pk_st_meta(f, "format");
    return fmt && !strcmp(fmt, CKPT_FORMAT);
}

/* pspkd metadata: version, and arch/stem agreeing with the model. */
static int check_metadata(const pk_st_file *f, const pk_model *m, const char *path, pk_err *e)
{
    if (!is_pspkd_file(f))
        return PK_OK; /* e.g. "pt" from the safetensors package: tensors decide */
    long ver;
    if (parse_long(pk_st_meta(f, "format_version"), &ver) || ver < 1)
        return pk_fail(e, PK_EFORMAT, "%s: bad or missing format_version", path);
    if (ver > PK_CKPT_FORMAT_VERSION)
        return pk_fail(e, PK_EFORMAT, "%s: format_version %ld is newer than this pspkd (%d)",
                       path, ver, PK_CKPT_FORMAT_VERSION);
    const pk_model_cfg *cfg = pk_model_config(m);
    pk_arch a;
    pk_stem s;
    const char *as = pk_st_meta(f, "arch"), *ss = pk_st_meta(f, "stem");
    if (!as || pk_arch_parse(as, &a))
        return pk_fail(e, PK_EFORMAT, "%s: bad or missing arch in metadata", path);
    if (!ss || pk_stem_parse(ss, &s))
        return pk_fail(e, PK_EFORMAT, "%s: bad or missing stem in metadata", path);
    if (a != cfg->arch || s != cfg->stem)
        return pk_fail(e, PK_EFORMAT, "%s: checkpoint is %s (%s stem), the model is %s (%s stem)",
                       path, pk_arch_name(a), pk_stem_name(s), pk_arch_name(cfg->arch),
                       pk_stem_name(cfg->stem));
    return PK_OK;
}

/* Every file tensor must be a model tensor, a parameter's momentum or the
 * optimiser step. */
static int check_names(const pk_st_file *f, const pk_model *m, const char *path, pk_err *e)
{
    for (int i = 0; i < pk_st_count(f); i++) {
        const pk_st_tensor *t = pk_st_at(f, i);
        const pk_tensor_info *ti;
        if (!strncmp(t->name, MOM_PREFIX, strlen(MOM_PREFIX))) {
            ti = pk_model_find(m, t->name + strlen(MOM_PREFIX));
            if (!ti || ti->kind != PK_T_PARAM)
                return pk_fail(e, PK_EFORMAT, "%s: momentum '%s' for no model parameter", path,
                               t->name);
            continue;
        }
        if (!strcmp(t->name, STEP_NAME)) {
            if (t->ndim != 0 || t->dtype != PK_I64)
                return pk_fail(e, PK_EFORMAT, "%s: '%s' must be an I64 scalar", path, t->name);
            continue;
        }
        if (!pk_model_find(m, t->name))
            return pk_fail(e, PK_EFORMAT, "%s: unexpected tensor '%s' (not in a %s PSPNet)",
                           path, t->name, pk_arch_name(pk_model_config(m)->arch));
    }
    return PK_OK;
}

/* Validates everything the load needs; *n_mom counts momentum tensors. */
static int check_tensors(const pk_st_file *f, const pk_model *m, const char *path, int *n_mom,
                         pk_err *e)
{
    int rc = check_names(f, m, path, e);
    int n_param = 0, first_missing_mom = -1;
    *n_mom = 0;
    for (int i = 0; !rc && i < pk_model_tensor_count(m); i++) {
        const pk_tensor_info *ti = pk_model_tensor(m, i);
        const pk_st_tensor *t = pk_st_find(f, ti->name);
        if (!t)
            return pk_fail(e, PK_EFORMAT, "%s: missing tensor '%s'", path, ti->name);
        rc = pk_ckl_check(t, ti, path, e);
        if (rc || ti->kind != PK_T_PARAM)
            continue;
        n_param++;
        char name[sizeof MOM_PREFIX + sizeof ti->name];
        snprintf(name, sizeof name, MOM_PREFIX "%s", ti->name);
        const pk_st_tensor *mt = pk_st_find(f, name);
        if (mt) {
            rc = pk_ckl_check(mt, ti, path, e);
            ++*n_mom;
        } else if (first_missing_mom < 0) {
            first_missing_mom = i;
        }
    }
    if (!rc && *n_mom && *n_mom != n_param)
        rc = pk_fail(e, PK_EFORMAT, "%s: optimizer state is partial: missing '%s%s'", path,
                     MOM_PREFIX, pk_model_tensor(m, first_missing_mom)->name);
    return rc;
}

static int read_step(const pk_st_file *f, const char *path, long *step, pk_err *e)
{
    const char *s = pk_st_meta(f, "step");
    const pk_st_tensor *t = pk_st_find(f, STEP_NAME);
    long v = 0;
    if (s && parse_long(s, &v))
        return pk_fail(e, PK_EFORMAT, "%s: metadata step '%s' is not an integer", path, s);
    if (t) {
        int64_t ts = pk_ckl_scalar_i64(t);
        if (s && ts != v)
            return pk_fail(e, PK_EFORMAT, "%s: metadata step %ld disagrees with %s %" PRId64,
                           path, v, STEP_NAME, ts);
        v = (long)ts;
    }
    *step = v;
    return PK_OK;
}

/* Copies the validated tensors into the model's buffers. */
static int copy_in(pk_model *m, const pk_st_file *f, int with_mom, const char *path, pk_err *e)
{
    size_t mx = pk_ckl_max_count(m);
    float *s1 = malloc(mx * sizeof(float)), *s2 = malloc(mx * sizeof(float));
    if (!s1 || !s2) {
        free(s1);
        free(s2);
        return pk_fail(e, PK_ENOMEM, "out of memory loading %s", path);
    }
    float *params = pk_model_params(m), *state = pk_model_state(m);
    float *mom = pk_model_momentum(m);
    int64_t nbt = 0;
    for (int i = 0; i < pk_model_tensor_count(m); i++) {
        const pk_tensor_info *ti = pk_model_tensor(m, i);
        const pk_st_tensor *t = pk_st_find(f, ti->name);
        if (ti->kind == PK_T_NUM_BATCHES) {
            /* pspkd keeps one counter for all BN layers (they advance together) */
            int64_t v = pk_ckl_scalar_i64(t);
            nbt = v > nbt ? v : nbt;
            continue;
        }
        pk_ckl_write_tensor(m, ti->kind == PK_T_PARAM ? params : state, ti, t, s1, s2);
        if (ti->kind == PK_T_PARAM && with_mom) {
            char name[sizeof MOM_PREFIX + sizeof ti->name];
            snprintf(name, sizeof name, MOM_PREFIX "%s", ti->name);
            pk_ckl_write_tensor(m, mom, ti, pk_st_find(f, name), s1, s2);
        }
    }
    if (!with_mom)
        pk_dev_zero(pk_model_ctx(m), mom, pk_model_num_params(m) * sizeof(float));
    pk_model_set_num_batches_tracked(m, nbt);
    pk_dev_sync(pk_model_ctx(m));
    free(s1);
    free(s2);
    return PK_OK;
}

static int load_open_into(pk_model *m, const pk_st_file *f, const char *path,
                          pk_ckpt_meta *meta, pk_err *e)
{
    int n_mom = 0;
    long step = 0;
    int rc = check_metadata(f, m, path, e);
    if (!rc)
        rc = check_tensors(f, m, path, &n_mom, e);
    if (!rc)
        rc = read_step(f, path, &step, e);
    if (!rc && meta) {
        memset(meta, 0, sizeof *meta);
        meta->step = step;
        const char *fr = pk_st_meta(f, "frozen");
        meta->frozen = fr && !strcmp(fr, "1");
        rc = read_extras(path, meta, e);
    }
    /* nothing is written into the model before every check has passed */
    if (!rc)
        rc = copy_in(m, f, n_mom > 0, path, e);
    return rc;
}

int pk_checkpoint_load_into(pk_model *m, const char *path, pk_ckpt_meta *meta, pk_err *e)
{
    pk_st_file *f = NULL;
    int rc = pk_st_open(&f, path, e);
    if (rc)
        return rc;
    rc = load_open_into(m, f, path, meta, e);
    pk_st_close(f);
    return rc;
}

/* arch/stem/classes: from pspkd metadata, else from the tensors of a
 * semseg state_dict (bottleneck conv3 => ResNet50; layer0.3 => deep stem;
 * classes = rows of the final 1x1 conv). */
static int infer_config(const pk_st_file *f, const char *path, pk_model_cfg *cfg, pk_err *e)
{
    const pk_st_tensor *cls = pk_st_find(f, "cls.4.weight");
    if (is_pspkd_file(f)) {
        const char *as = pk_st_meta(f, "arch"), *ss = pk_st_meta(f, "stem");
        long k;
        if (!as || pk_arch_parse(as, &cfg->arch))
            return pk_fail(e, PK_EFORMAT, "%s: bad or missing arch in metadata", path);
        if (!ss || pk_stem_parse(ss, &cfg->stem))
            return pk_fail(e, PK_EFORMAT, "%s: bad or missing stem in metadata", path);
        if (parse_long(pk_st_meta(f, "classes"), &k) || k < 1 || k > 65536)
            return pk_fail(e, PK_EFORMAT, "%s: bad or missing classes in metadata", path);
        cfg->classes = (int)k;
        return PK_OK;
    }
    if (pk_st_find(f, "layer1.0.conv3.weight"))
        cfg->arch = PK_ARCH_R50;
    else if (pk_st_find(f, "layer1.0.conv2.weight"))
        cfg->arch = PK_ARCH_R18;
    else
        return pk_fail(e, PK_EFORMAT,
                       "%s: not a PSPNet state_dict (no layer1.0.conv2.weight) and no pspkd "
                       "metadata",
                       path);
    cfg->stem = pk_st_find(f, "layer0.3.weight") ? PK_STEM_DEEP : PK_STEM_7X7;
    if (!cls || cls->ndim != 4 || cls->shape[0] < 1 || cls->shape[0] > 65536)
        return pk_fail(e, PK_EFORMAT, "%s: cannot infer the class count: 'cls.4.weight' %s",
                       path, cls ? "is not a [K,512,1,1] conv weight" : "is missing");
    cfg->classes = (int)cls->shape[0];
    return PK_OK;
}

int pk_checkpoint_load(pk_model **out, pk_ctx *c, const char *path, float dropout,
                       pk_ckpt_meta *meta, pk_err *e)
{
    pk_st_file *f = NULL;
    pk_model *m = NULL;
    pk_model_cfg cfg = {.dropout = dropout};
    *out = NULL;
    int rc = pk_st_open(&f, path, e);
    if (rc)
        return rc;
    rc = infer_config(f, path, &cfg, e);
    if (!rc)
        rc = pk_model_create(&m, c, &cfg, e);
    if (!rc)
        rc = load_open_into(m, f, path, meta, e);
    pk_st_close(f);
    if (rc) {
        if (m)
            pk_model_destroy(m);
        return rc;
    }
    *out = m;
    return PK_OK;
}
