/* Private to the pspnet_*.c files: the model struct, its layer list, and the
 * execution plan (a graph of op nodes over arena values).
 *
 * The network is built in two stages. pk_model_create walks the architecture
 * once and records every convolution (with its BatchNorm) as a pk_layer plus
 * the state_dict tensor table. A plan, built per (mode, n, h, w), walks the
 * same architecture again in the same order, emitting nodes (conv, bn, relu,
 * ...) over values (activations, gradients, saved statistics); a liveness
 * pass then places every value's storage at an offset in one arena. */
#ifndef PSPKD_PSPNET_IMPL_H
#define PSPKD_PSPNET_IMPL_H

#include "model/pspnet.h"

/* BatchNorm2d's defaults, as semseg uses them (the exporter folds with the
 * same eps). */
#define PK_BN_MOMENTUM 0.1f
#define PK_BN_EPS 1e-5f

/* Profile groups: where a node's time is booked. */
enum pk_group {
    PK_G_STEM = 0,
    PK_G_LAYER1,
    PK_G_LAYER2,
    PK_G_LAYER3,
    PK_G_LAYER4,
    PK_G_PPM,
    PK_G_CLS,
    PK_G_AUX,
    PK_G_LOSS,
    PK_G_SGD,
    PK_G_COUNT
};

/* A convolution of the architecture with its optional BatchNorm. Tensor
 * indices into the table; -1 when absent. bn is the BN weight's index; its
 * bias, running_mean and running_var follow at +1, +2, +3. */
typedef struct pk_layer {
    int ci, co, k, stride, pad, dil;
    int w, b, bn;
    int group;
    int downsample; /* a block's shortcut 1x1 (reads the block input) */
} pk_layer;

/* Architecture constants. */
typedef struct pk_arch_desc {
    int bottleneck;  /* 1: Bottleneck (expansion 4), 0: BasicBlock */
    int blocks[4];
    int fea;         /* layer4 channels */
    int aux_in;      /* layer3 channels */
    int aux_mid;     /* aux head width */
} pk_arch_desc;
pk_arch_desc pk_arch_describe(pk_arch a);

/* ---- plan ---------------------------------------------------------------- */
typedef enum {
    PK_N_CONV = 0,
    PK_N_BN,
    PK_N_RELU,
    PK_N_ADD,     /* out = in0 + in1 */
    PK_N_MAXPOOL,
    PK_N_ADAPOOL,
    PK_N_RESIZE,
    PK_N_CONCAT,
    PK_N_DROPOUT,
    PK_N_KINDS
} pk_node_kind;

#define PK_NODE_MAX_IN 5

typedef struct pk_node {
    int kind, group;
    int layer;                 /* CONV/BN: the pk_layer */
    int nin, in[PK_NODE_MAX_IN];
    int out;
    int save0, save1;          /* BN mean/rstd, maxpool argmax, dropout keep; -1 */
    int bins;                  /* ADAPOOL */
    int drop_id;               /* DROPOUT: 0 cls, 1 aux (seeds its mask) */
    pk_conv_desc conv;         /* CONV */
    /* backward: where the gradient of in[j] goes (a value id; -1: none),
     * and whether it must be accumulated into grad(in[j]) afterwards. */
    int gin[PK_NODE_MAX_IN];
    unsigned char gacc[PK_NODE_MAX_IN];
    /* CONV in a bf16 inference plan: how many of the nodes after it its
     * forward folds in (pk_conv2d_forward_fused; 0 none, 1 its BN, 2 and a
     * ReLU, 3 and a residual add and ReLU), the add's other input, and the
     * value it then writes (pspnet_plan.c). */
    int fold, fold_res, fold_out;
} pk_node;

/* External values live in caller memory, not the arena. */
enum { PK_EXT_NONE = 0, PK_EXT_IMAGE, PK_EXT_MAIN, PK_EXT_AUX, PK_EXT_COUNT };

typedef struct pk_value {
    int n, h, w, c;      /* NHWC shape (saved values: n=1,h=1,w=1,c=count) */
    size_t floats;       /* storage need in 4-byte words */
    int storage;         /* arena storage id; values sharing one are in-place aliases */
    int ext;             /* PK_EXT_* */
    int producer;        /* forward node, -1 for inputs and gradients */
    int grad;            /* gradient value, -1 until a backward contribution */
    int nuse;            /* forward consumers */
    int last_fwd;        /* time of the last forward consumer, -1 */
    int bwd_need;        /* time the backward reads it, -1 */
    int bwd_first;       /* the earliest time the backward reads it, -1 */
    int kept_act;        /* an activation the backward reads (conv or BN input, ReLU output) */
    /* bf16 precision, training: the bf16 copy of a kept activation that
     * lives from its forward to its backward in its stead, and the value
     * the backward gets it back into in fp32 (pspnet_plan.c); -1: none */
    int shadow, unpacked;
    int center;          /* a BN's input: that BN's saved mean, kept as x - mean; -1 */
    int half;            /* bf16 inference: held in bf16 (uint16_t) by a fold that writes
                          * it so for readers that read it so (pspnet_plan.c) */
    int def, last;       /* liveness interval */
} pk_value;

typedef struct pk_plan {
    int built;
    int train, n, h, w, upsample, with_aux;
    int h8, w8;
    pk_node *nodes;
    int nnodes, cap_nodes;
    pk_value *vals;
    int nvals, cap_vals;
    size_t *stor_off, *stor_size;
    int *stor_def, *stor_last;
    int nstor, cap_stor;
    size_t arena_floats;
    int v_image, v_main, v_aux; /* graph outputs (full-res or stride 8) */
    int v_main8;                /* cls.4 output (stride 8) */
    int v_full, v_dfull;        /* training: full-res logits and gradient scratch */
} pk_plan;

/* ---- the model ---------------------------------------------------------- */
#define PK_PROF_FWD 0
#define PK_PROF_BWD 1

struct pk_model {
    pk_ctx *ctx;
    pk_model_cfg cfg;
    pk_arch_desc ad;
    pk_tensor_info *tensors;
    int ntensors, cap_tensors;
    pk_layer *layers;
    int nlayers, cap_layers;
    size_t nparams, nstate, nbackbone; /* floats; heads start at nbackbone */
    float *params, *grads, *momentum, *state;
    int64_t num_batches;
    float *arena;
    size_t arena_cap;                  /* floats */
    pk_plan train_plan, infer_plan;
    const pk_plan *last_plan;          /* for pk_model_arena_bytes */
    int logits_ready;                  /* train logits of the last step are in the arena */
    int profile;
    double prof[PK_G_COUNT][2];        /* seconds per group, fwd / bwd */
    double prof_kind[PK_N_KINDS][2];  /* seconds per op kind */
    long prof_steps;
    pk_comm *comm;                     /* data parallel (pspnet_dist.c); NULL: one process */
    unsigned char *unpacked;           /* per value: back from its shadow in this backward */
    int unpacked_cap;
    float *fold;                       /* a folded BN's scale and shift (pspnet_exec.c) */
    int fold_cap;                      /* channels */
    long sample0;                      /* the global index of this rank's first sample */
};

/* pspnet_table.c: the architecture walk that fills layers and tensors. */
int pk_model_build_table(pk_model *m, pk_err *e);

/* pspnet_graph.c: emits the nodes and values of a plan (shapes only). */
int pk_graph_build(const pk_model *m, pk_plan *p, pk_err *e);
int pk_plan_value(pk_plan *p, int n, int h, int w, int c, size_t floats, pk_err *e);
int pk_plan_node(pk_plan *p, int kind, int group, pk_err *e);

/* pspnet_plan.c: liveness, in-place decisions and arena offsets. */
int pk_plan_build(pk_model *m, pk_plan *p, int train, int n, int h, int w, int upsample,
                  int with_aux, pk_err *e);
void pk_plan_free(pk_plan *p);
/* The ReLU node after node i that runs fused into it (a BN or residual add
 * whose output only that ReLU reads), or NULL. */
const pk_node *pk_plan_fused_relu(const pk_plan *p, int i);
/* Makes the arena at least as large as the plan needs. */
int pk_model_reserve_arena(pk_model *m, const pk_plan *p, pk_err *e);

/* pspnet_exec.c: runs a plan. ext[PK_EXT_*] are the caller pointers. */
typedef struct pk_exec_args {
    float *ext[PK_EXT_COUNT];
    int train;
    float dropout;
    uint64_t drop_seed; /* per step */
} pk_exec_args;
float *pk_plan_ptr(const pk_model *m, const pk_plan *p, float *const *ext, int v);
int pk_exec_forward(pk_model *m, const pk_plan *p, const pk_exec_args *a, pk_err *e);
int pk_exec_backward(pk_model *m, const pk_plan *p, const pk_exec_args *a, pk_err *e);

/* pspnet_dist.c: data-parallel pieces of the training step (pk_model_set_comm).
 * Whether m trains over several ranks. */
int pk_dist_active(const pk_model *m);
/* cnt[0]: pixels the CE scores, cnt[1]: pixels the KD terms average over
 * (valid != 0), this rank's in local[], the whole group's in global[]. */
int pk_dist_counts(pk_model *m, const pk_batch *b, int ignore, double local[2],
                   double global[2], pk_err *e);
/* The loss terms of every rank combined: each term's local mean weighted by
 * its local count, summed, over the global count. */
int pk_dist_losses(pk_model *m, pk_losses *l, const double local[2], const double global[2],
                   pk_err *e);
/* Sums the gradient buffer over the ranks. */
int pk_dist_allreduce_grads(pk_model *m, pk_err *e);

/* pspnet_profile.c */
double pk_prof_now(pk_model *m); /* syncs the device when profiling */
void pk_prof_add(pk_model *m, int group, int kind, int dir, double seconds);

#endif
