/* The unlabelled images of the batches: see unlab_stream.h. */
#include "train/unlab_stream.h"

#include <stdlib.h>

#include "core/rng.h"
#include "data/logits_extra.h"
#include "store/pack_meta.h"

#define UNLAB_SALT 0x554e4c4142ULL /* keeps each pack's draws apart from the labelled pack's */

struct pk_unlab_stream {
    int n;
    pk_loader *ld[PK_UNLAB_MAX];
    pk_unlab_sched sched;
};

void pk_unlab_stream_close(pk_unlab_stream *s)
{
    if (!s)
        return;
    for (int p = 0; p < s->n; p++)
        pk_loader_close(s->ld[p]);
    free(s);
}

/* Every pack's image count, into the schedule at the start step. */
static int start_schedule(pk_unlab_stream *s, const pk_unlab_stream_opts *o, pk_err *e)
{
    long count[PK_UNLAB_MAX];
    for (int p = 0; p < o->n; p++) {
        pk_meta m;
        int rc = pk_pack_meta_read(o->pack[p], &m, e);
        if (rc)
            return rc;
        if (m.count < o->batch)
            return pk_fail(e, PK_EINVAL, "%s: %d images, fewer than the %d unlabelled ones of "
                           "a batch", o->pack[p], m.count, o->batch);
        count[p] = m.count;
    }
    pk_unlab_sched_init(&s->sched, count, o->n);
    if (!o->pos) {
        pk_unlab_sched_skip(&s->sched, o->start_iter);
        return PK_OK;
    }
    long sum = 0;
    for (int p = 0; p < o->n; p++) {
        if (o->pos[p] < 0)
            return pk_fail(e, PK_EFORMAT, "unlabelled pack %d: position %ld", p, o->pos[p]);
        s->sched.pos[p] = o->pos[p];
        sum += o->pos[p];
    }
    if (sum != o->start_iter)
        return pk_fail(e, PK_EFORMAT, "the unlabelled packs served %ld steps, not %ld", sum,
                       o->start_iter);
    return PK_OK;
}

int pk_unlab_stream_open(pk_unlab_stream **out, const pk_unlab_stream_opts *o, pk_err *e)
{
    *out = NULL;
    if (o->n < 1 || o->n > PK_UNLAB_MAX)
        return pk_fail(e, PK_EINVAL, "%d unlabelled packs (1..%d)", o->n, PK_UNLAB_MAX);
    pk_unlab_stream *s = calloc(1, sizeof *s);
    if (!s)
        return pk_fail(e, PK_ENOMEM, "out of memory");
    int rc = start_schedule(s, o, e);
    for (int p = 0; !rc && p < o->n; p++) {
        pk_loader_opts lo = {
            .pack = o->pack[p],
            .batch = o->batch,
            .threads = o->workers,
            .slots = 2,
            .seed = pk_hash64(o->seed ^ UNLAB_SALT ^ (uint64_t)(p + 1)),
            .shuffle = 1,
            .drop_last = 1,
            .start_iter = s->sched.pos[p],
            .end_iter = 0,
            .aug = o->aug,
            .extra_fn = pk_logits_extra_fn,
            .extra_user = o->cache[p],
            .extra_channels = 2 * o->classes,
        };
        rc = pk_loader_open(&s->ld[p], &lo, e);
        if (!rc)
            s->n = p + 1;
    }
    if (rc) {
        pk_unlab_stream_close(s);
        return rc;
    }
    *out = s;
    return PK_OK;
}

int pk_unlab_stream_next(pk_unlab_stream *s, const pk_loader_batch **b, int *pack, pk_err *e)
{
    int p = pk_unlab_sched_next(&s->sched);
    int rc = pk_loader_next(s->ld[p], b, e);
    if (!rc && !*b)
        rc = pk_fail(e, PK_EINVAL, "unlabelled pack %d: the loader ended", p);
    *pack = p;
    return rc;
}

int pk_unlab_stream_pos(const pk_unlab_stream *s, long *pos)
{
    for (int p = 0; p < s->sched.n; p++)
        pos[p] = s->sched.pos[p];
    return s->sched.n;
}
