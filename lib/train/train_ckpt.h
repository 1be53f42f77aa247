/* The trainers' checkpoint directory: "step-NNNNNNNN.safetensors" files
 * (the completed step, 8 digits), each written atomically by
 * pk_checkpoint_save with the optimiser state; after each save only the
 * `keep` newest are left. Other files in the directory are never touched. */
#ifndef PSPKD_TRAIN_CKPT_H
#define PSPKD_TRAIN_CKPT_H

#include <stddef.h>
#include "model/checkpoint.h"

/* Saves m as dir/step-<meta->step>.safetensors (creating dir when it is
 * missing; its parent must exist), then removes all but the `keep` (>= 1)
 * highest-step checkpoints. path (may be NULL) receives the file written. */
int pk_ckpt_dir_save(pk_model *m, const char *dir, const pk_ckpt_meta *meta, int keep,
                     char *path, size_t cap, pk_err *e);

/* The highest-step checkpoint in dir: path and step. PK_ENOTFOUND when dir
 * holds none (or does not exist). */
int pk_ckpt_dir_latest(const char *dir, char *path, size_t cap, long *step, pk_err *e);

#endif
