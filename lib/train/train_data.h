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

typedef struct pk_train_data_opts {
    const char *pack;
    int batch, workers;
    uint64_t seed;
    long start_iter, end_iter; /* iterations [start_iter, end_iter) */
    pk_aug_opts aug;
    pk_logits_cache *cache; /* NULL: no teacher planes */
    int classes;            /* K of the cache's planes */
    int part_off, part_len; /* data parallel: this rank's share (loader.h); 0: all */
} pk_train_data_opts;

/* One batch: n crops of h x w. teacher: [n,h,w,2K], the cached main logits
 * in channels [0,K) and aux in [K,2K), warped with the image, 0 on invalid
 * pixels; NULL without a cache. Valid until the next call. */
typedef struct pk_train_crops {
    long iter, epoch;
    int n, h, w;
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
void pk_train_data_close(pk_train_data *d);

#endif
