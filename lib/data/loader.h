/* The training data loader: worker threads read records from a pack (an
 * LMDB written by voc-pack), decode, augment (lib/data/augment.h) and fill
 * batches ahead of the trainer in a ring of `slots` batch buffers (bounded
 * memory: slots x one batch).
 *
 * Order: iteration `it` (0-based, counted across epochs) is batch
 * it % iters_per_epoch of epoch it / iters_per_epoch. Each epoch's order is
 * a Fisher-Yates shuffle (pk_rng) seeded from (seed, epoch); each sample's
 * augmentation is seeded from (seed, epoch, record index). So the batches
 * are the same whatever the thread count, and opening with start_iter = k
 * gives exactly the batches k, k+1, ... of an uninterrupted run (resume).
 * With drop_last (semseg's train loader) an epoch has count / batch
 * iterations; without, ceil(count / batch) and the last batch is smaller.
 *
 * Extra planes (the teacher-logits cache): extra_fn is called by the
 * workers (concurrently: it must be thread-safe) for each sample's key and
 * fills a pk_extra_planes; the planes are warped with the image and stored
 * in the batch's `extra`, the sets' channels concatenated in order. */
#ifndef PSPKD_LOADER_H
#define PSPKD_LOADER_H

#include <stdint.h>
#include "data/augment.h"
#include "core/err.h"
#include "store/record.h"

#define PK_EXTRA_SETS_MAX 4

/* Plane sets for one key, filled by an extra_fn. Each set's data, h, w, c
 * and m (see pk_plane_set; out and out_stride are the loader's) must stay
 * valid until the next call on the same struct. The struct belongs to one
 * worker and is reused from sample to sample; pk_extra_planes_alloc gives
 * storage in it that lives that long. */
typedef struct pk_extra_planes {
    int n; /* sets filled (0..PK_EXTRA_SETS_MAX) */
    pk_plane_set set[PK_EXTRA_SETS_MAX];
    float *store[PK_EXTRA_SETS_MAX];
    size_t cap[PK_EXTRA_SETS_MAX];
} pk_extra_planes;

/* Storage for set i: sets set[i].data (to the returned buffer), h, w, c;
 * the caller fills the floats, set[i].m and n. NULL (with e) on failure. */
float *pk_extra_planes_alloc(pk_extra_planes *p, int i, int h, int w, int c, pk_err *e);
void pk_extra_planes_free(pk_extra_planes *p);

/* img_w x img_h is the record's image size. Returns PK_OK or a status with
 * e filled (the loader prefixes the key). */
typedef int (*pk_extra_fn)(void *user, const char *key, int img_w, int img_h,
                           pk_extra_planes *out, pk_err *e);

typedef struct pk_loader_opts {
    const char *pack;  /* pack path */
    int batch;         /* samples per batch (B >= 1) */
    int threads;       /* worker threads (>= 1) */
    int slots;         /* batch buffers in the ring (>= 2; 0: 2) */
    uint64_t seed;
    int shuffle;       /* 1: shuffle every epoch; 0: record order */
    int drop_last;     /* 1: drop the last incomplete batch of an epoch */
    long start_iter;   /* first iteration to produce (resume) */
    long end_iter;     /* stop before this iteration (0: never) */
    pk_aug_opts aug;   /* crop size, distributions, mean/std */
    pk_extra_fn extra_fn; /* NULL: no extra planes */
    void *extra_user;
    int extra_channels;   /* total channels extra_fn provides (when set) */
    /* Data parallel: only positions [part_off, part_off + part_len) of each
     * batch (the rank's share; same samples and augmentation as in the whole
     * batch); part_len 0: the whole batch. Needs drop_last. */
    int part_off, part_len;
} pk_loader_opts;

/* B = opts.batch crops of opts.aug.crop_h x crop_w, valid until the next
 * pk_loader_next or pk_loader_close. */
typedef struct pk_loader_batch {
    long iter;       /* global iteration */
    long epoch;
    long index;      /* batch index within the epoch */
    int n;           /* samples in this batch (< B only for a last batch without drop_last) */
    int h, w;        /* crop size */
    int c_extra;     /* extra channels (0 when no extra_fn) */
    float *image;    /* [n, h, w, 3] normalised RGB, NHWC */
    uint8_t *label;  /* [n, h, w] */
    uint8_t *valid;  /* [n, h, w]: 0 on padding / rotation border */
    float *extra;    /* [n, h, w, c_extra] or NULL */
    const int *record; /* [n] record index (0-based, pack order) of each sample */
} pk_loader_batch;

typedef struct pk_loader pk_loader;

/* Opens the pack, reads its metadata and key list, allocates the ring and
 * starts the workers. Fails with a message on a bad option, a missing or
 * unreadable pack, or a pack too small for one batch with drop_last. */
int pk_loader_open(pk_loader **ld, const pk_loader_opts *opts, pk_err *e);
/* Blocks until the next batch is ready and points *batch at it. At
 * end_iter, returns PK_OK with *batch = NULL. A worker's error (corrupt
 * record, decode failure, extra_fn failure) is returned here for the batch
 * holding that sample, as "<key>: <what>"; the loader then stays failed. */
int pk_loader_next(pk_loader *ld, const pk_loader_batch **batch, pk_err *e);
/* Stops the workers and frees everything (NULL is fine). */
void pk_loader_close(pk_loader *ld);

/* Number of image records, iterations per epoch, the pack's metadata, and
 * the key of record i. */
int pk_loader_count(const pk_loader *ld);
long pk_loader_iters_per_epoch(const pk_loader *ld);
const pk_meta *pk_loader_meta(const pk_loader *ld);
const char *pk_loader_key(const pk_loader *ld, int record);

#endif
