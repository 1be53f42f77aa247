/* Validation during training: see train_val.h. */
#include "train/train_val.h"

#include <stdlib.h>
#include <string.h>

#include "data/augment.h"
#include "store/lmdb_util.h"
#include "store/pack_meta.h"
#include "store/record.h"

struct pk_val_set {
    pk_lmdb_reader db;
    pk_meta meta;
    int classes;
    char path[4096];
};

int pk_val_open(pk_val_set **out, const char *path, int classes, pk_err *e)
{
    *out = NULL;
    pk_val_set *v = calloc(1, sizeof *v);
    if (!v)
        return pk_fail(e, PK_ENOMEM, "out of memory");
    snprintf(v->path, sizeof v->path, "%s", path);
    v->classes = classes;
    int rc = pk_pack_meta_read(path, &v->meta, e);
    if (!rc && v->meta.classes != classes)
        rc = pk_fail(e, PK_EINVAL, "%s: validation pack has %d classes, the model %d", path,
                     v->meta.classes, classes);
    if (!rc && v->meta.count < 1)
        rc = pk_fail(e, PK_EINVAL, "%s: validation pack is empty", path);
    if (!rc)
        rc = pk_lmdb_open_read(&v->db, path, e);
    if (rc) {
        free(v);
        return rc;
    }
    *out = v;
    return PK_OK;
}

void pk_val_close(pk_val_set *v)
{
    if (!v)
        return;
    pk_lmdb_close(&v->db);
    free(v);
}

int pk_val_count(const pk_val_set *v) { return v->meta.count; }

/* Scratch reused across images (host and device). */
typedef struct val_ws {
    pk_ctx *ctx;
    float *img;       /* host [hp, wp, 3] */
    float *logits;    /* host [hp, wp, K] */
    float *d_img, *d_logits; /* device copies */
    uint8_t *rgb, *pred;
    size_t img_cap, logit_cap, rgb_cap, pred_cap;
} val_ws;

static int grow(void **p, size_t *cap, size_t need, pk_err *e)
{
    if (*cap >= need)
        return PK_OK;
    void *nb = realloc(*p, need);
    if (!nb)
        return pk_fail(e, PK_ENOMEM, "validation: out of memory (%zu bytes)", need);
    *p = nb;
    *cap = need;
    return PK_OK;
}

static void ws_free(val_ws *w)
{
    free(w->img);
    free(w->logits);
    free(w->rgb);
    free(w->pred);
    if (w->d_img)
        pk_dev_free(w->ctx, w->d_img);
    if (w->d_logits)
        pk_dev_free(w->ctx, w->d_logits);
}

static int pad8(int x) { return x + (8 - (x - 1) % 8) % 8; }

/* Forward of one record; adds its pixels to conf. */
static int eval_one(val_ws *w, pk_model *m, const pk_record_view *rv, pk_confusion *conf,
                    const pk_aug_opts *norm, pk_err *e)
{
    int W = rv->hdr.width, H = rv->hdr.height, K = pk_model_config(m)->classes;
    int wp = pad8(W), hp = pad8(H), ox = (wp - W) / 2, oy = (hp - H) / 2;
    size_t img_bytes = (size_t)wp * hp * 3 * sizeof(float);
    size_t logit_bytes = (size_t)wp * hp * K * sizeof(float);
    size_t old_img = w->img_cap, old_logit = w->logit_cap;
    int rc = grow((void **)&w->rgb, &w->rgb_cap, (size_t)W * H * 3, e);
    if (!rc)
        rc = grow((void **)&w->pred, &w->pred_cap, (size_t)W * H, e);
    if (!rc)
        rc = grow((void **)&w->img, &w->img_cap, img_bytes, e);
    if (!rc)
        rc = grow((void **)&w->logits, &w->logit_cap, logit_bytes, e);
    if (rc)
        return rc;
    /* Device buffers follow the host capacities. */
    if (w->img_cap != old_img || !w->d_img) {
        if (w->d_img)
            pk_dev_free(w->ctx, w->d_img);
        if (!(w->d_img = pk_dev_alloc(w->ctx, w->img_cap)))
            return pk_fail(e, PK_ENOMEM, "validation: no device memory");
    }
    if (w->logit_cap != old_logit || !w->d_logits) {
        if (w->d_logits)
            pk_dev_free(w->ctx, w->d_logits);
        if (!(w->d_logits = pk_dev_alloc(w->ctx, w->logit_cap)))
            return pk_fail(e, PK_ENOMEM, "validation: no device memory");
    }
    rc = pk_record_image_into(w->rgb, rv, e);
    if (rc)
        return rc;
    memset(w->img, 0, img_bytes); /* the mean, once normalised */
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            const uint8_t *s = w->rgb + ((size_t)y * W + x) * 3;
            float *d = w->img + ((size_t)(y + oy) * wp + x + ox) * 3;
            for (int c = 0; c < 3; c++)
                d[c] = ((float)s[c] - norm->mean[c]) / norm->std[c];
        }
    pk_ctx *c = w->ctx;
    pk_dev_upload(c, w->d_img, w->img, img_bytes);
    rc = pk_model_infer(m, w->d_logits, NULL, w->d_img, 1, hp, wp, 1, e);
    if (rc)
        return rc;
    pk_dev_download(c, w->logits, w->d_logits, logit_bytes);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            const float *l = w->logits + ((size_t)(y + oy) * wp + x + ox) * K;
            int best = 0;
            for (int k = 1; k < K; k++)
                if (l[k] > l[best])
                    best = k;
            w->pred[(size_t)y * W + x] = (uint8_t)best;
        }
    return pk_confusion_add(conf, w->pred, rv->label, (size_t)W * H, PK_IGNORE_LABEL, e);
}

struct visit {
    pk_model *m;
    val_ws *w;
    pk_confusion *conf;
    const pk_aug_opts *norm;
    pk_stop_fn *stop;
    void *stop_ctx;
    int interrupted;
};

static int is_meta_key(const MDB_val *k)
{
    return k->mv_size == strlen(PK_META_KEY) && !memcmp(k->mv_data, PK_META_KEY, k->mv_size);
}

static int visit(const MDB_val *key, const MDB_val *val, void *user, pk_err *e)
{
    struct visit *v = user;
    if (is_meta_key(key))
        return PK_OK;
    if (v->stop && v->stop(v->stop_ctx)) {
        v->interrupted = 1;
        return -1; /* ends the walk; not an error */
    }
    pk_record_view rv;
    int rc = pk_record_parse(&rv, val->mv_data, val->mv_size, e);
    if (!rc)
        rc = eval_one(v->w, v->m, &rv, v->conf, v->norm, e);
    if (rc)
        pk_wrap(e, "%.*s", (int)key->mv_size, (const char *)key->mv_data);
    return rc;
}

int pk_val_run(pk_val_set *v, pk_model *m, pk_stop_fn *stop, void *stop_ctx,
               pk_seg_scores *s, int *interrupted, pk_err *e)
{
    *interrupted = 0;
    pk_aug_opts norm;
    pk_aug_opts_default(&norm, 1, 1);
    pk_confusion conf;
    int rc = pk_confusion_init(&conf, v->classes, e);
    if (rc)
        return rc;
    val_ws w = {.ctx = pk_model_ctx(m)};
    struct visit st = {.m = m, .w = &w, .conf = &conf, .norm = &norm, .stop = stop,
                       .stop_ctx = stop_ctx};
    MDB_txn *txn = NULL;
    rc = pk_lmdb_txn_begin(&txn, &v->db, e);
    if (!rc) {
        rc = pk_lmdb_foreach(txn, &v->db, visit, &st, e);
        mdb_txn_abort(txn);
    }
    if (st.interrupted) {
        rc = PK_OK;
        *interrupted = 1;
    } else if (!rc) {
        pk_confusion_scores(&conf, NULL, NULL, s);
    } else {
        pk_wrap(e, "validation %s", v->path);
    }
    ws_free(&w);
    pk_confusion_free(&conf);
    return rc;
}
