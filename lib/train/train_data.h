/* The trainers' input stream: the augmenting loader (lib/data/loader.h) over a
 * data pack, with the teacher-logits cache (lib/store/logits_cache.h) warped
 * along as extra planes when one is given. The trainer sees plain arrays;
 * the loader's batch type stays inside train_data.c. */
#ifndef PSPKD_TRAIN_DATA_H
#define PSPKD_TRAIN_DATA_H

#include <stdint.h>
#include "data/augment.h"
#include "core/err.h"
#include "store/logits_cache.h"
#include "train/unlab_stream.h"

typedef struct pk_train_data_opts {
    const char *pack;
    int batch, workers;
    uint64_t seed;
    long start_iter, end_iter; /* iterations [start_iter, end_iter) */
    pk_aug_opts aug;
    pk_logits_cache *cache; /* NULL: no teacher planes */
    int classes;            /* K of the cache's planes */
    /* unlabelled packs (student-distill --unlabeled; unlab.n == 0: none):
     * each batch is `batch` labelled crops, then unlab.batch unlabelled
     * ones with their label planes all 255 (lib/train/unlab_mix.h). Their
     * seed, aug, workers, classes and start_iter are set from the above. */
    pk_unlab_stream_opts unlab;
    int part_off, part_len; /* data parallel: this rank's share (loader.h); 0: all */
} pk_train_data_opts;

/* One batch: n crops of h x w (the labelled ones first, then n_unlab
 * unlabelled ones). teacher: [n,h,w,2K], the cached main logits
 * in channels [0,K) and aux in [K,2K), warped with the image, 0 on invalid
 * pixels; NULL without a cache. Valid until the next call. */
typedef struct pk_train_crops {
    long iter, epoch;
    int n, h, w, n_unlab;
    const float *image;
    const uint8_t *label, *valid;
    const float *teacher;
} pk_train_crops;

typedef struct pk_train_data pk_train_data;

/* Shuffled per epoch, drop_last (semseg's train loader). */
int pk_train_data_open(pk_train_data **d, const pk_train_data_opts *o, pk_err *e);
/* The next batch; c->n == 0 after end_iter. */
int pk_train_data_next(pk_train_data *d, pk_train_crops *c, pk_err *e);
long pk_train_data_iters_per_epoch(const pk_train_data *d);
/* The unlabelled schedule after the batches taken (pos[PK_UNLAB_MAX]);
 * returns the number of unlabelled packs (0: none). */
int pk_train_data_unlab_pos(const pk_train_data *d, long *pos);
void pk_train_data_close(pk_train_data *d);

#endif
