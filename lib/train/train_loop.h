/* The training loop shared by teacher-train and student-distill.
 *
 * One run: (resume) -> for each iteration: next augmented batch from the
 * loader, teacher logits (the cache's warped planes, or an online teacher's
 * eval forward on the same crops), pk_model_train_step, a log row and the
 * progress line; validation at epoch boundaries; a checkpoint every
 * ckpt_every steps; at the end the output model.
 *
 * Determinism: a run resumed from the checkpoint of step s is the
 * uninterrupted run: the checkpoint holds weights, BN running statistics,
 * num_batches_tracked and momentum (all F32/I64, exact), the loader
 * restarts at iteration s with the same per-epoch order and per-sample
 * augmentation, the LR is a function of the iteration, and dropout masks
 * are drawn from (seed, iteration).
 *
 * Stopping: the caller's stop callback is polled after every step (and
 * between validation images). When it returns non-zero (a tool returns the
 * SIGINT or SIGTERM its handler recorded) the loop writes a checkpoint of
 * the last completed step into the checkpoint directory and returns with
 * result->signal set to that value; the tool then exits 128 + signal (130,
 * 143). The library installs no handlers.
 *
 * Non-finite steps: after each forward/backward the loss and the gradient
 * norm must be finite; otherwise the run fails ("step N: non-finite loss
 * ...") before the update, naming the newest checkpoint (kept), and the
 * output is not written.
 *
 * Locks: a run holds exclusive flocks on OUTPUT.lock and LOG.lock (beside
 * them, removed at the end) and on CKPT_DIR/.lock (the directory is created
 * when missing), so a second run on any of them fails at once
 * (core/run_lock.h). */
#ifndef PSPKD_TRAIN_LOOP_H
#define PSPKD_TRAIN_LOOP_H

#include <stdint.h>
#include "data/augment.h"
#include "store/logits_cache.h"
#include "model/pspnet.h"
#include "train/train_val.h"
#include "train/unlab_mix.h"

typedef struct pk_train_opts {
    const char *tool;  /* progress label and checkpoint metadata */
    /* data */
    const char *data;  /* training pack */
    int batch;         /* 16 */
    int crop_h, crop_w;/* 473 */
    int augment;       /* 1: semseg's chain; 0: centred pad/crop only */
    float scale_min, scale_max, rotate; /* 0.5, 2, 10 degrees */
    int workers;       /* loader threads (1) */
    uint64_t seed;     /* shuffle, augmentation, dropout, init */
    long iters;        /* total iterations; 0: epochs x iterations per epoch */
    int epochs;        /* 50 */
    /* model (used by pk_train_main) */
    pk_arch arch;
    pk_stem stem;
    int stem_set;      /* --stem given; else deep for ResNet50, 7x7 for ResNet18 */
    int classes;       /* 0: from the pack */
    float dropout;     /* 0.1 */
    const char *init;  /* ImageNet safetensors or NULL */
    int zero_residual; /* --zero-init-residual */
    int threads;       /* compute threads (0: all) */
    const char *device_arg; /* --device as given (NULL: the first GPU if any) */
    pk_device device;  /* set from device_arg by pk_train_main */
    int device_index;
    int precision;     /* --precision: pk_precision (ctx.h) */
    /* optimisation and losses (max_iter and seed are set by the loop) */
    pk_train_cfg cfg;
    /* teacher (student-distill): at most one */
    const char *logits;  /* cache path */
    const char *teacher; /* frozen teacher checkpoint, run online */
    int no_kd;           /* plain student: no teacher at all */
    /* unlabelled packs with their caches (student-distill --unlabeled): KD
     * terms only; round(batch x unlab_ratio) of each batch's images
     * (lib/train/unlab_mix.h). Need `logits`. */
    int n_unlab;
    const char *unlab_pack[PK_UNLAB_MAX], *unlab_logits[PK_UNLAB_MAX];
    double unlab_ratio;
    /* checkpoints */
    const char *ckpt_dir; /* NULL: derived from output */
    long ckpt_every;      /* steps; 0: once per epoch */
    int keep;             /* 3 */
    const char *resume;   /* checkpoint file, or a checkpoint directory */
    /* records */
    const char *log;      /* CSV log (train_log.h) or NULL */
    const char *val;      /* validation pack or NULL */
    int val_every;        /* epochs (1) */
    double progress_every;/* seconds between progress lines off a TTY (30) */
    int quiet;
    /* output */
    const char *output;
    int freeze;           /* write the final model frozen */
} pk_train_opts;

/* Defaults: semseg's VOC recipe (see teacher-train(1)). */
void pk_train_opts_defaults(pk_train_opts *o, const char *tool);

/* The teacher for one run (at most one of the two; both NULL: no KD). */
typedef struct pk_train_teacher {
    pk_logits_cache *cache;
    pk_model *model;
    pk_logits_cache *unlab_cache[PK_UNLAB_MAX]; /* o->unlab_logits, opened */
} pk_train_teacher;

typedef struct pk_train_result {
    long start_step, step, max_iter;
    int signal;        /* what stop returned when it stopped the run, else 0 */
    double seconds;    /* training wall time of this run */
    double img_s;      /* images per second over this run's steps */
    char checkpoint[4096]; /* the last checkpoint written, "" if none */
} pk_train_result;

/* Runs the loop on m (created, initialised, classes matching the pack).
 * Resumes first when o->resume is set. stop (may be NULL) is polled with
 * stop_ctx as above. Writes o->output at the end unless stopped. */
int pk_train_run(pk_model *m, const pk_train_opts *o, const pk_train_teacher *t,
                 pk_stop_fn *stop, void *stop_ctx, pk_train_result *r, pk_err *e);

#endif
