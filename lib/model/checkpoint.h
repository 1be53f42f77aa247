/* Model checkpoints as safetensors with semseg's state_dict() names.
 *  - model tensors: exactly semseg PSPNet's names and PyTorch shapes/layouts
 *    (OIHW conv weights, F32; BN num_batches_tracked as I64);
 *  - optimiser: "optimizer.momentum.<name>" per parameter (F32) and the step
 *    in the metadata, omitted for frozen models;
 *  - __metadata__: format "pspkd-checkpoint", format_version, arch, stem,
 *    classes, step, frozen ("0"/"1"), plus free-form keys (e.g. seed).
 * Writes are atomic. Loading validates every name, shape and dtype. */
#ifndef PSPKD_CHECKPOINT_H
#define PSPKD_CHECKPOINT_H

#include "model/pspnet.h"

#define PK_CKPT_FORMAT_VERSION 1
#define PK_CKPT_MAX_EXTRA 16

typedef struct pk_ckpt_meta {
    long step;   /* completed training iterations */
    int frozen;  /* eval-only teacher: no optimiser state */
    int n_extra;
    char extra_key[PK_CKPT_MAX_EXTRA][32];
    char extra_val[PK_CKPT_MAX_EXTRA][128];
} pk_ckpt_meta;

int pk_checkpoint_save(pk_model *m, const char *path, const pk_ckpt_meta *meta,
                       int with_optimizer, pk_err *e);
/* Reads arch/stem/classes from the metadata (or infers them from the tensor
 * names and shapes when the file came from PyTorch without pspkd metadata),
 * creates the model and loads weights, running stats and, when present,
 * momentum. dropout: the Dropout2d p for the new model. */
int pk_checkpoint_load(pk_model **out, pk_ctx *c, const char *path, float dropout,
                       pk_ckpt_meta *meta, pk_err *e);
/* Loads into an existing model; fails on any architecture mismatch. */
int pk_checkpoint_load_into(pk_model *m, const char *path, pk_ckpt_meta *meta, pk_err *e);
const char *pk_ckpt_meta_get(const pk_ckpt_meta *meta, const char *key);
int pk_ckpt_meta_set(pk_ckpt_meta *meta, const char *key, const char *value);

/* ImageNet initialisation: torchvision-named ResNet weights (conv1.weight,
 * bn1.*, layer1.0.conv1.weight, ..., fc.* ignored) loaded into the backbone
 * by name (semseg's layer0 = torchvision's conv1/bn1 for the 7x7 stem; the
 * deep stem takes semseg's resnet names conv1..3/bn1..3). Fails on a missing
 * backbone tensor or a shape mismatch. */
int pk_load_imagenet(pk_model *m, const char *path, pk_err *e);

/* What an ImageNet load took and left: the backbone tensors loaded (and
 * their floats), the file's tensors ignored by name (fc.*: listed in
 * `ignored`, comma-separated, truncated with "..."), and the BatchNorm
 * counters (num_batches_tracked) skipped. */
typedef struct pk_imagenet_report {
    int loaded;
    size_t loaded_floats;
    int ignored;
    char ignored_names[160];
    int counters;
} pk_imagenet_report;

/* pk_load_imagenet, filling rep (may be NULL). Before any tensor is read it
 * refuses, naming the tensor, a file whose stem (torchvision's 7x7 conv1 or
 * semseg's deep conv1..3) or block type (basic / bottleneck) is not the
 * model's. */
int pk_load_imagenet_report(pk_model *m, const char *path, pk_imagenet_report *rep,
                            pk_err *e);

#endif
