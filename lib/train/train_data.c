/* The trainers' input stream: see train_data.h. */
#include "train/train_data.h"

#include <stdlib.h>

#include "data/loader.h"
#include "data/logits_extra.h"

struct pk_train_data {
    pk_loader *ld;
};

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
    if (rc) {
        free(d);
        return rc;
    }
    *out = d;
    return PK_OK;
}

int pk_train_data_next(pk_train_data *d, pk_train_crops *c, pk_err *e)
{
    const pk_loader_batch *b = NULL;
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
    return PK_OK;
}

long pk_train_data_iters_per_epoch(const pk_train_data *d)
{
    return pk_loader_iters_per_epoch(d->ld);
}

void pk_train_data_close(pk_train_data *d)
{
    if (!d)
        return;
    pk_loader_close(d->ld);
    free(d);
}
