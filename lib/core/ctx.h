/* The compute context: device, thread count, backend handles (oneDNN engine
 * and stream, later cuDNN/cuBLAS), per-shape primitive cache and workspace.
 * Every op takes one; there is no global state. A context is used by one
 * thread at a time (ops parallelise internally). */
#ifndef PSPKD_CTX_H
#define PSPKD_CTX_H

#include <stddef.h>
#include "core/err.h"

typedef enum { PK_DEV_CPU = 0, PK_DEV_CUDA = 1 } pk_device;

/* How CPU 3x3 convolutions run. AUTO: Winograd (dilated ones through their
 * phases) for wide ones on maps big enough to gain, direct otherwise;
 * DIRECT: oneDNN's direct algorithm always (PyTorch's); WINOGRAD: Winograd
 * for every wide one whatever the map size (for tests of its numerics). */
typedef enum pk_conv_algo { PK_CONV_AUTO = 0, PK_CONV_DIRECT, PK_CONV_WINOGRAD } pk_conv_algo;

/* The precision of the convolution math (PyTorch autocast's split): FP32
 * everywhere, or BF16 convolution inputs and weights with fp32
 * accumulation and fp32 outputs; master weights, momentum, BatchNorm,
 * losses, softmax/KL and the SGD step stay fp32 in both (conv.c). */
typedef enum pk_precision { PK_PREC_FP32 = 0, PK_PREC_BF16 } pk_precision;

typedef struct pk_ctx_opts {
    pk_device device;
    int device_index; /* CUDA ordinal */
    int threads;      /* 0: all online CPUs (or OMP_NUM_THREADS when set) */
    int tf32;         /* CUDA only: allow TF32 math (PyTorch's default) */
    int conv_algo;    /* CPU 3x3 convolutions, pk_conv_algo (conv.c); PK_CONV_AUTO
                         takes the environment's PSPKD_CONV=auto|direct|winograd */
    int precision;    /* pk_precision of the convolutions */
} pk_ctx_opts;

typedef struct pk_ctx pk_ctx;

int pk_ctx_create(pk_ctx **out, const pk_ctx_opts *opts, pk_err *e);
void pk_ctx_destroy(pk_ctx *c);
int pk_ctx_threads(const pk_ctx *c);
pk_device pk_ctx_device(const pk_ctx *c);
pk_precision pk_ctx_precision(const pk_ctx *c);
/* "fp32" or "bf16". */
const char *pk_precision_name(int precision);

/* Memory on the context's device (64-byte aligned on the CPU). */
void *pk_dev_alloc(pk_ctx *c, size_t bytes);
void pk_dev_free(pk_ctx *c, void *p);
void pk_dev_zero(pk_ctx *c, void *p, size_t bytes);
void pk_dev_upload(pk_ctx *c, void *dst_dev, const void *src_host, size_t bytes);
void pk_dev_download(pk_ctx *c, void *dst_host, const void *src_dev, size_t bytes);
/* Waits for queued device work (no-op on the CPU). */
void pk_dev_sync(pk_ctx *c);

#endif
