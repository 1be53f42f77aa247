/* Private to lib/: the CUDA half of the compute context, as C-callable
 * hooks that lib/core/ctx.c calls for PK_DEV_CUDA contexts in PSPKD_CUDA builds
 * (lib/ops/ctx_cuda.cu implements them). The state itself (stream, cuDNN and
 * cuBLAS handles, workspace, allocation counters) is struct pk_cuda_ctx in
 * lib/ops/cuda_common.cuh, reached through pk_ctx's `cuda` member. */
#ifndef PSPKD_CTX_CUDA_H
#define PSPKD_CTX_CUDA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "core/ctx.h"

/* CUDA devices visible to this process; 0 when the driver or runtime is
 * missing or reports an error (so tools can fall back to the CPU). */
int pk_cuda_device_count(void);

/* Creates c->cuda for device o->device_index: stream, handles, math mode
 * from o->tf32. On failure c->cuda stays NULL and e says why. */
int pk_cuda_ctx_init(pk_ctx *c, const pk_ctx_opts *o, pk_err *e);
/* Waits for queued work, frees everything c->cuda holds; NULL is fine. */
void pk_cuda_ctx_fini(pk_ctx *c);

/* The pk_dev_* functions of ctx.h for a CUDA context. Upload and download
 * return when the copy is complete (the caller may reuse its buffer);
 * alloc returns NULL on failure (the reason is kept for pk_cuda_status). */
void *pk_cuda_dev_alloc(pk_ctx *c, size_t bytes);
void pk_cuda_dev_free(pk_ctx *c, void *p);
void pk_cuda_dev_zero(pk_ctx *c, void *p, size_t bytes);
void pk_cuda_dev_upload(pk_ctx *c, void *dst_dev, const void *src_host, size_t bytes);
void pk_cuda_dev_download(pk_ctx *c, void *dst_host, const void *src_dev, size_t bytes);
void pk_cuda_dev_sync(pk_ctx *c);

#ifdef __cplusplus
}
#endif

#endif
