/* The unlabelled images of student-distill's batches: one augmenting loader
 * per unlabelled pack (with its teacher-logits cache as extra planes) and
 * the schedule of lib/train/unlab_mix.h that picks, step by step, the pack
 * whose loader gives that step's unlabelled crops. */
#ifndef PSPKD_UNLAB_STREAM_H
#define PSPKD_UNLAB_STREAM_H

#include <stdint.h>
#include "core/err.h"
#include "data/augment.h"
#include "data/loader.h"
#include "store/logits_cache.h"
#include "train/unlab_mix.h"

typedef struct pk_unlab_stream_opts {
    int n;                                 /* packs, 1..PK_UNLAB_MAX */
    const char *pack[PK_UNLAB_MAX];
    pk_logits_cache *cache[PK_UNLAB_MAX];  /* each pack's, checked against it */
    int batch;                             /* unlabelled crops per step (U) */
    int workers, classes;
    uint64_t seed;                         /* the run's: each pack's is drawn from it */
    pk_aug_opts aug;
    long start_iter;                       /* the step the stream starts at */
    const long *pos;                       /* the schedule at start_iter (from a
                                              checkpoint), or NULL: replayed */
} pk_unlab_stream_opts;

typedef struct pk_unlab_stream pk_unlab_stream;

int pk_unlab_stream_open(pk_unlab_stream **s, const pk_unlab_stream_opts *o, pk_err *e);
/* The next step's U crops (teacher planes in b->extra) and their pack. */
int pk_unlab_stream_next(pk_unlab_stream *s, const pk_loader_batch **b, int *pack, pk_err *e);
/* The schedule after the steps taken so far (pos[0..n)); returns n. */
int pk_unlab_stream_pos(const pk_unlab_stream *s, long *pos);
void pk_unlab_stream_close(pk_unlab_stream *s);

#endif
