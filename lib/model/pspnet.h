/* PSPNet with a dilated ResNet18/50 backbone (output stride 8), numerically
 * matching hszhao/semseg's PSPNet; see pspkd(7) (man/man7/pspkd.7), "The
 * model" and "Training", and for the files the model is trained from and
 * writes, pspkd-data(5), pspkd-logits(5) and pspkd-log(5) (man/man5).
 *
 * Storage: trainable parameters, their gradients and SGD momentum each live in
 * ONE contiguous device buffer; BatchNorm running statistics in a second
 * "state" buffer. Conv weights are OHWI inside the buffer; every tensor has a
 * table entry with its semseg state_dict() name and PyTorch shape, so
 * checkpoint I/O converts at the file boundary. Activations live in an arena
 * planned once per (mode, n, h, w) and reused. */
#ifndef PSPKD_PSPNET_H
#define PSPKD_PSPNET_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "core/comm.h"
#include "core/ctx.h"
#include "ops/ops.h"

typedef enum { PK_ARCH_R18 = 0, PK_ARCH_R50 = 1 } pk_arch;
typedef enum { PK_STEM_7X7 = 0, PK_STEM_DEEP = 1 } pk_stem; /* torchvision / semseg deep stem */

typedef struct pk_model_cfg {
    pk_arch arch;
    pk_stem stem;
    int classes;   /* 21 for VOC */
    float dropout; /* Dropout2d p in cls/aux heads (semseg: 0.1) */
} pk_model_cfg;

const char *pk_arch_name(pk_arch a);            /* "resnet18" / "resnet50" */
const char *pk_stem_name(pk_stem s);            /* "7x7" / "deep" */
int pk_arch_parse(const char *s, pk_arch *out); /* accepts resnet18|r18|resnet50|r50 */
int pk_stem_parse(const char *s, pk_stem *out); /* accepts 7x7|deep */

/* One named tensor of the state_dict. */
typedef enum {
    PK_T_PARAM = 0,      /* trainable: in the param/grad/momentum buffers */
    PK_T_RUNNING = 1,    /* BN running_mean / running_var: in the state buffer */
    PK_T_NUM_BATCHES = 2 /* BN num_batches_tracked (I64 in files): one per BN */
} pk_tensor_kind;

typedef struct pk_tensor_info {
    char name[96];     /* semseg name, e.g. "layer1.0.conv1.weight" */
    pk_tensor_kind kind;
    int ndim;
    int64_t shape[4];  /* PyTorch shape (OIHW for conv weights) */
    int is_conv_weight;/* stored OHWI in the buffer */
    size_t offset;     /* in floats, into params (PARAM) or state (RUNNING) */
    size_t count;
    int head;          /* 1: ppm/cls/aux (10x LR), 0: backbone */
} pk_tensor_info;

typedef struct pk_model pk_model;

int pk_model_create(pk_model **out, pk_ctx *c, const pk_model_cfg *cfg, pk_err *e);
void pk_model_destroy(pk_model *m);
const pk_model_cfg *pk_model_config(const pk_model *m);
pk_ctx *pk_model_ctx(pk_model *m);

/* PyTorch-style default initialisation (semseg's ResNet: kaiming_normal
 * fan_out for backbone convs, BN weight 1 bias 0; heads as nn.Conv2d's
 * default), deterministic in seed. Resets running stats and momentum.
 * PK_ENOMEM (the model unchanged) when its host staging buffers cannot be
 * allocated. pk_model_create leaves every buffer zero: a model gets its
 * values from this or from a checkpoint load. */
int pk_model_init(pk_model *m, uint64_t seed, pk_err *e);
/* torchvision's zero_init_residual: the last BatchNorm weight of every
 * residual block (bn3 of a bottleneck, bn2 of a basic block) set to 0, so
 * that each block starts as the identity. A from-scratch ResNet50 then
 * trains markedly faster (Goyal et al. 2017); call after pk_model_init. */
void pk_model_zero_residual(pk_model *m);

int pk_model_tensor_count(const pk_model *m);
const pk_tensor_info *pk_model_tensor(const pk_model *m, int i);
const pk_tensor_info *pk_model_find(const pk_model *m, const char *name);
size_t pk_model_num_params(const pk_model *m); /* floats in the param buffer */
size_t pk_model_num_state(const pk_model *m);  /* floats in the state buffer */
float *pk_model_params(pk_model *m);           /* device pointers */
float *pk_model_grads(pk_model *m);
float *pk_model_momentum(pk_model *m);
float *pk_model_state(pk_model *m);
int64_t pk_model_num_batches_tracked(const pk_model *m); /* same for every BN */
void pk_model_set_num_batches_tracked(pk_model *m, int64_t v);
/* LR groups over the param buffer: backbone x1, heads x head_mult. */
int pk_model_param_groups(const pk_model *m, float head_mult, pk_param_group *groups,
                          int max_groups);
/* Forward FLOPs (2*MACs) per image at h x w, convolutions only. */
double pk_model_flops(const pk_model *m, int h, int w);

/* A training batch (host or device memory per the context's device).
 * Loss masks: CE and aux CE skip pixels labelled ignore_label (255; the
 * augmentation labels every pixel it pads 255); KD and aux-KD average over
 * the pixels with valid != 0 (all when valid is NULL) whatever their label
 * (the teacher's soft targets are informative at 255 object borders). KD
 * terms are computed only when their teacher logits are given and their
 * weight is > 0; the aux KL uses the main KD's temperature (and T^2). */
typedef struct pk_batch {
    int n, h, w;                 /* (h-1)%8 == 0 and (w-1)%8 == 0 */
    const float *image;          /* [n,h,w,3] normalised */
    const uint8_t *label;        /* [n,h,w], 255 = ignore */
    const uint8_t *valid;        /* [n,h,w] or NULL: 0 = padded by augmentation */
    const float *teacher_main;   /* [n,h,w,K] or NULL: teacher main logits */
    const float *teacher_aux;    /* [n,h,w,K] or NULL: teacher aux logits */
} pk_batch;

typedef enum { PK_AUXKD_KL = 0, PK_AUXKD_SMOOTHL1 = 1, PK_AUXKD_MSE = 2 } pk_auxkd;
const char *pk_auxkd_name(pk_auxkd d);
int pk_auxkd_parse(const char *s, pk_auxkd *out);

typedef struct pk_train_cfg {
    float base_lr;        /* 0.01 */
    float momentum;       /* 0.9 */
    float weight_decay;   /* 1e-4 */
    float power;          /* 0.9 (poly) */
    long max_iter;
    float head_lr_mult;   /* 10 */
    float ce_weight;      /* weight of the main CE (1; the seed's preset 0.25) */
    float aux_weight;     /* 0.4 */
    float kd_weight;      /* w_kd (0 = off) */
    float kd_T;           /* temperature */
    float auxkd_weight;   /* w_auxkd (0 = off) */
    pk_auxkd auxkd;
    int ignore_label;     /* 255 */
    uint64_t seed;        /* dropout masks: hash(seed, iter, layer) */
} pk_train_cfg;
void pk_train_cfg_defaults(pk_train_cfg *t); /* semseg's VOC recipe, KD off */

typedef struct pk_losses {
    float total, ce, aux_ce, kd, aux_kd; /* unweighted terms; total is weighted */
    float lr;
} pk_losses;

/* Data parallel (core/comm.h): this model is one of the comm's ranks,
 * each training on its own equal share of every global batch; its batches
 * are the global batch's samples first, first+1, ... From then on training
 * BN is SyncBN (ops/bn_sync.h), dropout masks are those of the global
 * sample indices, the losses are normalised over the global count of valid
 * pixels (and reported for the global batch), and the backward ends with
 * the gradients summed over the ranks, so that every rank's SGD step is
 * the one-process step on the global batch. comm NULL or of size 1: one
 * process. CPU contexts only for size > 1 (no CUDA SyncBN yet). The model
 * does not own comm. */
int pk_model_set_comm(pk_model *m, pk_comm *comm, long first_sample, pk_err *e);
pk_comm *pk_model_comm(const pk_model *m);

/* Training-mode forward (batch-stat BN, running-stat update, dropout),
 * losses, backward into the grad buffer (zeroed first). Needs n >= 2 over
 * the global batch. */
int pk_model_forward_backward(pk_model *m, const pk_batch *b, const pk_train_cfg *t,
                              long iter, pk_losses *out, pk_err *e);
/* SGD with poly LR at iteration `iter` (0-based; LR uses iter as semseg's
 * current_iter - 1) over the param groups. num_batches_tracked is not
 * touched here: the forward increments it. Returns the LR used. */
float pk_model_sgd_step(pk_model *m, const pk_train_cfg *t, long iter);
/* The L2 norm of the grad buffer (after pk_model_forward_backward): NaN or
 * infinity when a gradient is not finite. On a GPU it copies the gradients
 * to the host in 4 MiB pieces. */
int pk_model_grad_norm(pk_model *m, double *norm, pk_err *e);
/* Both of the above. */
int pk_model_train_step(pk_model *m, const pk_batch *b, const pk_train_cfg *t, long iter,
                        pk_losses *out, pk_err *e);

/* Eval-mode forward (running BN stats, no dropout) on [n,h,w,3]. main and
 * aux (aux may be NULL) receive [n,H,W,K] logits: H,W = h,w when upsample
 * is 1, else the stride-8 grid ((h-1)/8+1, (w-1)/8+1). Keeps only what
 * inference needs. */
int pk_model_infer(pk_model *m, float *main_logits, float *aux_logits, const float *image,
                   int n, int h, int w, int upsample, pk_err *e);

/* The stride-8 [n,(h-1)/8+1,(w-1)/8+1,K] main (aux = 0) or aux (aux = 1)
 * logits of the last pk_model_forward_backward (the losses see them
 * upsampled x8 with align_corners), in the activation arena (device
 * memory); NULL when there are none. Valid until the next forward of any
 * kind on this model. */
const float *pk_model_last_logits(const pk_model *m, int aux);

/* Activation arena bytes for the last planned shape, per image. */
size_t pk_model_arena_bytes(const pk_model *m);
/* Plans (and allocates the arena for) a training (train = 1) or inference
 * (upsampled, with aux) call at n x h x w ahead of time, so that a tool can
 * fail early and the calls themselves allocate nothing; *bytes_per_image
 * (may be NULL) receives that plan's arena bytes per image. */
int pk_model_plan(pk_model *m, int train, int n, int h, int w, size_t *bytes_per_image,
                  pk_err *e);

/* Per-layer timing (off by default). */
void pk_model_set_profile(pk_model *m, int on);
void pk_model_profile_print(const pk_model *m, FILE *f);
void pk_model_profile_reset(pk_model *m);

#endif
