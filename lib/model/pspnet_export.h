/* The eval-mode PSPNet forward as a flat list of operations with every
 * BatchNorm folded into the convolution before it: what a model exporter
 * (seg-export's ONNX writer) walks. Built from the same graph the
 * inference plan runs (pspnet_graph.c), so the two cannot disagree.
 *
 * Values are numbered 0..nvals-1; value 0 is the normalised image
 * [n,3,h,w]. Shapes are those at the size the graph was built for; every
 * attribute but the adaptive-pool bin edges and the resize targets is
 * independent of the size. */
#ifndef PSPKD_PSPNET_EXPORT_H
#define PSPKD_PSPNET_EXPORT_H

#include "model/pspnet.h"

typedef enum {
    PK_XOP_CONV = 0, /* conv (+ folded BN): weight OIHW, bias always present */
    PK_XOP_RELU,
    PK_XOP_ADD,      /* in[0] + in[1] */
    PK_XOP_MAXPOOL,  /* 3x3, stride 2, pad 1 */
    PK_XOP_ADAPOOL,  /* adaptive average pool to bins x bins (PyTorch's edges) */
    PK_XOP_RESIZE,   /* bilinear, align_corners, to the spatial size of `like` */
    PK_XOP_CONCAT    /* along channels */
} pk_xop_kind;

typedef struct pk_xop {
    pk_xop_kind kind;
    int nin, in[5], out;
    int h, w, c;           /* output shape at the built size (batch 1) */
    /* CONV */
    char name[64];         /* the conv's module path, e.g. "layer1.0.conv1" */
    int ci, co, k, stride, pad, dil;
    const float *weight;   /* [co,ci,k,k], BN folded */
    const float *bias;     /* [co] */
    int folded_bn;         /* 1 when a BatchNorm was folded in */
    /* ADAPOOL */
    int bins;
    /* RESIZE */
    int like;              /* the value whose H x W the output takes */
} pk_xop;

typedef struct pk_xgraph {
    pk_xop *ops;
    int nops;
    int nvals;
    int v_image, v_main, v_aux; /* v_aux -1 without aux */
    int h, w, classes;
    float *store;               /* every folded weight and bias */
} pk_xgraph;

/* Builds the graph for a 1 x 3 x h x w input ((h-1) % 8 == 0, the same for
 * w); with_aux adds the aux head's output (upsampled to h x w as well). */
int pk_model_export_graph(pk_model *m, int h, int w, int with_aux, pk_xgraph **out,
                          pk_err *e);
void pk_xgraph_free(pk_xgraph *g);

#endif
