/* ONNX export of a PSPNet export graph (model/pspnet_export.h), encoded
 * with protobuf-c against ONNX's own schema (third_party/onnx/onnx.proto).
 * This room is built only when protobuf-c is installed (see the Makefile);
 * nothing else in lib/ depends on it.
 *
 * The model: input "image" float [N,3,H,W], RGB normalised as the tools do
 * ((x/255 - mean)/std), H and W 8k+1; outputs "main" (and "aux") float
 * [N,K,H,W] eval-mode logits. Opset 13, IR version 7, BatchNorm folded.
 *  - fixed size: N = 1, H x W as built; PPM pooling is AveragePool where the
 *    bins divide the stride-8 grid, else exact per-bin Slice + ReduceMean
 *    (PyTorch's adaptive edges floor(i*S/b) .. ceil((i+1)*S/b));
 *  - dynamic: N, H, W symbolic; the same Slice + ReduceMean pooling with
 *    the edges computed from the runtime shape, Resize sizes from Shape. */
#ifndef PSPKD_ONNX_PSPNET_H
#define PSPKD_ONNX_PSPNET_H

#include "model/pspnet_export.h"

#define PK_ONNX_OPSET 13
#define PK_ONNX_IR_VERSION 7
#define PK_ONNX_MAX_META 16

typedef struct pk_onnx_opts {
    int dynamic;                  /* symbolic N, H, W */
    const char *producer_version; /* e.g. PSPKD_VERSION */
    int n_meta;                   /* metadata_props, key/value strings */
    const char *meta_key[PK_ONNX_MAX_META];
    const char *meta_val[PK_ONNX_MAX_META];
} pk_onnx_opts;

/* Writes g as an ONNX model to path atomically (temp file, fsync, rename). */
int pk_onnx_write(const pk_xgraph *g, const pk_onnx_opts *o, const char *path, pk_err *e);

#endif
