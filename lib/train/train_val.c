/* Validation during training: see train_val.h. */
#include "train/train_val.h"

#include <stdlib.h>
#include <string.h>

#include "data/augment.h"
#include "model/seg_infer.h"
#include "store/logits_cache.h"
#include "store/pack.h"
#include "store/record.h"

struct pk_val_set {
    pk_pack *pack; /* its class count is the model's */
};

void pk_val_close(pk_val_set *v)
{
    if (!v)
        return;
    pk_pack_close(v->pack);
    free(v);
}

int pk_val_open(pk_val_set **out, const char *path, int classes, pk_err *e)
{
    *out = NULL;
    pk_val_set *v = calloc(1, sizeof *v);
    if (!v)
        return pk_fail(e, PK_ENOMEM, "out of memory");
    int rc = pk_pack_open(&v->pack, path, e); /* the message names the file */
    if (!rc && pk_pack_meta(v->pack)->unlabeled)
        rc = pk_fail(e, PK_EINVAL, "%s is an unlabelled pack: no labels to validate against",
                     path);
    else if (!rc && pk_pack_meta(v->pack)->classes != classes)
        rc = pk_fail(e, PK_EINVAL, "%s: validation pack has %d classes, the model %d", path,
                     pk_pack_meta(v->pack)->classes, classes);
    if (rc) {
        pk_val_close(v);
        return rc;
    }
    *out = v;
    return PK_OK;
}

int pk_val_count(const pk_val_set *v) { return pk_pack_count(v->pack); }

/* Scratch reused across images: the host buffers here, the device ones in
 * the inference workspace. */
typedef struct val_ws {
    pk_seg_ws *seg;
    float *img;    /* [hp, wp, 3] */
    float *logits; /* [hp, wp, K] */
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
    pk_seg_ws_free(w->seg);
}

/* Forward of one record; adds its pixels to conf. The image is centred in
 * its padding and normalised as (x - mean) / std, so not through
 * pk_seg_whole_image (bottom/right padding, x * (1 / std)). */
static int eval_one(val_ws *w, pk_model *m, const pk_record_view *rv, pk_confusion *conf,
                    const pk_aug_opts *norm, pk_err *e)
{
    int W = rv->hdr.width, H = rv->hdr.height, K = pk_model_config(m)->classes;
    int wp = pk_pad8(W), hp = pk_pad8(H), ox = (wp - W) / 2, oy = (hp - H) / 2;
    size_t img_bytes = (size_t)wp * hp * 3 * sizeof(float);
    int rc = grow((void **)&w->rgb, &w->rgb_cap, (size_t)W * H * 3, e);
    if (!rc)
        rc = grow((void **)&w->pred, &w->pred_cap, (size_t)W * H, e);
    if (!rc)
        rc = grow((void **)&w->img, &w->img_cap, img_bytes, e);
    if (!rc)
        rc = grow((void **)&w->logits, &w->logit_cap, (size_t)wp * hp * K * sizeof(float), e);
    if (!rc)
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
    rc = pk_seg_whole_padded(m, w->img, wp, hp, 1, w->logits, NULL, w->seg, e);
    if (rc)
        return rc;
    for (int y = 0; y < H; y++)
        pk_seg_argmax(w->pred + (size_t)y * W, w->logits + ((size_t)(y + oy) * wp + ox) * K,
                      (size_t)W, K);
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

static int visit(const pk_pack_rec *r, void *user, pk_err *e)
{
    struct visit *v = user;
    if (v->stop && v->stop(v->stop_ctx)) {
        v->interrupted = 1;
        return -1; /* ends the walk; not an error */
    }
    pk_record_view rv;
    int rc = pk_record_parse(&rv, r->data, r->len, e);
    if (!rc)
        rc = eval_one(v->w, v->m, &rv, v->conf, v->norm, e);
    if (rc)
        pk_wrap(e, "%s", r->key);
    return rc;
}

int pk_val_run(pk_val_set *v, pk_model *m, pk_stop_fn *stop, void *stop_ctx,
               pk_seg_scores *s, int *interrupted, pk_err *e)
{
    *interrupted = 0;
    pk_aug_opts norm;
    pk_aug_opts_default(&norm, 1, 1);
    pk_confusion conf;
    int rc = pk_confusion_init(&conf, pk_pack_meta(v->pack)->classes, e);
    if (rc)
        return rc;
    val_ws w = {.seg = pk_seg_ws_new()};
    if (!w.seg) {
        pk_confusion_free(&conf);
        return pk_fail(e, PK_ENOMEM, "validation: out of memory");
    }
    struct visit st = {.m = m, .w = &w, .conf = &conf, .norm = &norm, .stop = stop,
                       .stop_ctx = stop_ctx};
    rc = pk_pack_foreach(v->pack, visit, &st, e);
    if (st.interrupted) {
        rc = PK_OK;
        *interrupted = 1;
    } else if (!rc) {
        pk_confusion_scores(&conf, NULL, NULL, s);
    } else {
        pk_wrap(e, "validation %s", pk_pack_path(v->pack));
    }
    ws_free(&w);
    pk_confusion_free(&conf);
    return rc;
}
