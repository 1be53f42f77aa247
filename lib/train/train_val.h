/* Validation during training: a simple single-scale evaluation (not
 * semseg's sliding-window protocol, which seg-eval implements). Every record
 * of a pack is normalised, padded with the mean (0 after normalising) to
 * the smallest (H-1)%8 == 0 size with the image centred (pad//2 before,
 * like the training crop's padding), run through pk_model_infer with
 * upsample = 1, and the argmax over the image's own pixels is compared with
 * its label in a dataset-level confusion matrix (lib/model/metrics.h). */
#ifndef PSPKD_TRAIN_VAL_H
#define PSPKD_TRAIN_VAL_H

#include "model/metrics.h"
#include "model/pspnet.h"

typedef struct pk_val_set pk_val_set;

/* A stop request, polled by long runs: non-zero (e.g. the signal a tool's
 * handler recorded) stops the run at the next safe point. ctx is the
 * caller's. */
typedef int pk_stop_fn(void *ctx);

/* Opens the pack; PK_EINVAL when its class count differs from classes. */
int pk_val_open(pk_val_set **v, const char *path, int classes, pk_err *e);
void pk_val_close(pk_val_set *v);
int pk_val_count(const pk_val_set *v);

/* Evaluates m on every record. stop (may be NULL) is polled with stop_ctx
 * between images: when it returns non-zero the pass ends early with
 * *interrupted set and s left untouched. */
int pk_val_run(pk_val_set *v, pk_model *m, pk_stop_fn *stop, void *stop_ctx,
               pk_seg_scores *s, int *interrupted, pk_err *e);

#endif
