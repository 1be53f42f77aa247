/* The trainers' input stream: see train_data.h. */
#include "train/train_data.h"

#include <stdlib.h>
#include <string.h>

#include "data/loader.h"
#include "data/logits_extra.h"
#include "store/record.h"

struct pk_train_data {
    pk_loader *ld;
    pk_unlab_stream *unlab;
    /* with unlabelled packs: the batch put together, labelled crops first */
    int n_lab, n_unlab, cx;
    size_t px;
    float *image, *teacher;
    uint8_t *label, *valid;
};

static int open_unlab(pk_train_data *d, const pk_train_data_opts *o, pk_err *e)
{
    pk_unlab_stream_opts u = o->unlab;
    u.seed = o->seed;
    u.aug = o->aug;
    u.workers = o->workers;
    u.classes = o->classes;
    u.start_iter = o->start_iter;
    int rc = pk_unlab_stream_open(&d->unlab, &u, e);
    if (rc)
        return rc;
    size_t n = (size_t)o->batch + (size_t)u.batch;
    d->n_lab = o->batch;
    d->n_unlab = u.batch;
    d->cx = 2 * o->classes;
    d->px = (size_t)o->aug.crop_h * o->aug.crop_w;
    d->image = malloc(n * d->px * 3 * sizeof(float));
    d->teacher = malloc(n * d->px * (size_t)d->cx * sizeof(float));
    d->label = malloc(n * d->px);
    d->valid = malloc(n * d->px);
    if (!d->image || !d->teacher || !d->label || !d->valid)
        return pk_fail(e, PK_ENOMEM, "out of memory for a batch of %zu crops", n);
    return PK_OK;
}

void pk_train_data_close(pk_train_data *d)
{
    if (!d)
        return;
    pk_loader_close(d->ld);
    pk_unlab_stream_close(d->unlab);
    free(d->image);
    free(d->teacher);
    free(d->label);
    free(d->valid);
    free(d);
}

int pk_train_data_open(pk_train_data **out, const pk_train_data_opts *o, pk_err *e)
{
    *out = NULL;
    pk_train_data *d = calloc(1, sizeof *d);
    if (!d)
        return pk_fail(e, PK_ENOMEM, "out of memory");
    pk_loader_opts lo = {
        .pack = o->pack,
        .batch = o->batch,
        .threads = o->workers,
        .slots = 2,
        .seed = o->seed,
        .shuffle = 1,
        .drop_last = 1,
        .start_iter = o->start_iter,
        .end_iter = o->end_iter,
        .aug = o->aug,
        .part_off = o->part_off,
        .part_len = o->part_len,
    };
    if (o->cache) {
        lo.extra_fn = pk_logits_extra_fn;
        lo.extra_user = o->cache;
        lo.extra_channels = 2 * o->classes;
    }
    int rc = pk_loader_open(&d->ld, &lo, e);
    if (!rc && o->unlab.n > 0) {
        rc = o->cache ? open_unlab(d, o, e)
                      : pk_fail(e, PK_EINVAL, "unlabelled packs need the labelled pack's cache");
    }
    if (rc) {
        pk_train_data_close(d);
        return rc;
    }
    *out = d;
    return PK_OK;
}

/* The labelled batch b, then the unlabelled one u, into d's buffers. */
static void put_together(pk_train_data *d, const pk_loader_batch *b, const pk_loader_batch *u)
{
    size_t lp = (size_t)b->n * d->px, up = (size_t)u->n * d->px, cx = (size_t)d->cx;
    memcpy(d->image, b->image, lp * 3 * sizeof(float));
    memcpy(d->image + lp * 3, u->image, up * 3 * sizeof(float));
    memcpy(d->teacher, b->extra, lp * cx * sizeof(float));
    memcpy(d->teacher + lp * cx, u->extra, up * cx * sizeof(float));
    memcpy(d->label, b->label, lp);
    memset(d->label + lp, PK_IGNORE_LABEL, up); /* whatever the pack holds */
    memcpy(d->valid, b->valid, lp);
    memcpy(d->valid + lp, u->valid, up);
}

int pk_train_data_next(pk_train_data *d, pk_train_crops *c, pk_err *e)
{
    const pk_loader_batch *b = NULL, *u = NULL;
    *c = (pk_train_crops){0};
    int rc = pk_loader_next(d->ld, &b, e);
    if (rc || !b)
        return rc;
    *c = (pk_train_crops){.iter = b->iter,
                          .epoch = b->epoch,
                          .n = b->n,
                          .h = b->h,
                          .w = b->w,
                          .image = b->image,
                          .label = b->label,
                          .valid = b->valid,
                          .teacher = b->c_extra ? b->extra : NULL};
    if (!d->unlab)
        return PK_OK;
    int pack;
    if ((rc = pk_unlab_stream_next(d->unlab, &u, &pack, e)))
        return rc;
    if (u->n != d->n_unlab || b->n != d->n_lab || u->h != b->h || u->w != b->w)
        return pk_fail(e, PK_EINVAL, "unlabelled batch of %d crops %dx%d, expected %d %dx%d",
                       u->n, u->w, u->h, d->n_unlab, b->w, b->h);
    put_together(d, b, u);
    c->n = b->n + u->n;
    c->n_unlab = u->n;
    c->image = d->image;
    c->label = d->label;
    c->valid = d->valid;
    c->teacher = d->teacher;
    return PK_OK;
}

long pk_train_data_iters_per_epoch(const pk_train_data *d)
{
    return pk_loader_iters_per_epoch(d->ld);
}

int pk_train_data_unlab_pos(const pk_train_data *d, long *pos)
{
    return d->unlab ? pk_unlab_stream_pos(d->unlab, pos) : 0;
}
