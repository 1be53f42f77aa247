/* Private to the CUDA sources (lib/ops/NAME_cuda.cu): the CUDA state of a context and the
 * helpers every CUDA op uses (checked calls that report file:line, launch
 * sizes, the shared workspace, a deterministic block reduction). */
#ifndef PSPKD_CUDA_COMMON_CUH
#define PSPKD_CUDA_COMMON_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <stddef.h>
#include <stdint.h>

extern "C" {
#include "core/ctx_impl.h"
}
#include "ops/ctx_cuda_impl.h"
#include "ops/ops_cuda.h"

struct pk_cuda_alloc_table; /* pointer -> size, for the memory counters */

/* cuBLAS is opened with dlopen when a CUDA context is created: linked in,
 * its 500 MB library would cost every process (CPU-only runs and tools that
 * never touch a GPU included) about 0.2 s and 200 MB at start. lib == NULL:
 * not available, and convolutions use cuDNN alone. */
struct pk_cublas_api {
    void *lib;
    decltype(&cublasCreate_v2) create;
    decltype(&cublasDestroy_v2) destroy;
    decltype(&cublasSetStream_v2) set_stream;
    decltype(&cublasSetMathMode) set_math_mode;
    decltype(&cublasSgemm_v2) sgemm;
    decltype(&cublasGetStatusString) status_string;
};

struct pk_cuda_ctx {
    int device;
    int tf32;
    int sm_count;
    int conv_engine; /* PK_CUDA_CONV_*: which library 1x1 convolutions may use */
    cudaStream_t stream;
    cudnnHandle_t cudnn;
    cublasHandle_t cublas; /* NULL when blas.lib is */
    pk_cublas_api blas;
    /* One workspace shared by every op on the stream (cuDNN's, BN's and
     * the losses' partial sums): ops run one after another, and a slot's
     * contents never outlive the op that asked for it. */
    void *ws;
    size_t ws_cap;
    double *host_scalar; /* pinned: loss values come back through it */
    pk_err err;          /* first failure not yet reported (code 0: none) */
    pk_cuda_alloc_table *allocs;
    size_t mem_now, mem_peak;
};

/* Records a failure ("file:line: what: reason") unless one is pending;
 * returns false so callers can write `if (!PK_CU(...)) return;`. */
bool pk_cuda_note(pk_cuda_ctx *cs, int code, const char *file, int line, const char *what,
                  const char *reason);

static inline bool pk_cuda_ok(pk_cuda_ctx *cs, cudaError_t st, const char *file, int line,
                              const char *what)
{
    return st == cudaSuccess ||
           pk_cuda_note(cs, st == cudaErrorMemoryAllocation ? PK_ENOMEM : PK_EBACKEND, file,
                        line, what, cudaGetErrorString(st));
}
static inline bool pk_cuda_ok(pk_cuda_ctx *cs, cudnnStatus_t st, const char *file, int line,
                              const char *what)
{
    return st == CUDNN_STATUS_SUCCESS ||
           pk_cuda_note(cs, st == CUDNN_STATUS_ALLOC_FAILED ? PK_ENOMEM : PK_EBACKEND, file,
                        line, what, cudnnGetErrorString(st));
}
static inline bool pk_cuda_ok(pk_cuda_ctx *cs, cublasStatus_t st, const char *file, int line,
                              const char *what)
{
    return st == CUBLAS_STATUS_SUCCESS ||
           pk_cuda_note(
               cs, st == CUBLAS_STATUS_ALLOC_FAILED ? PK_ENOMEM : PK_EBACKEND, file, line, what,
               cs && cs->blas.status_string ? cs->blas.status_string(st) : "cuBLAS error");
}

/* Checks a CUDA runtime, cuDNN or cuBLAS call. */
#define PK_CU(cs, call) pk_cuda_ok((cs), (call), __FILE__, __LINE__, #call)
/* Checks the launch just made (bad configuration, missing kernel image). */
#define PK_CU_LAUNCH(cs)                                                                       \
    pk_cuda_ok((cs), cudaGetLastError(), __FILE__, __LINE__, "kernel launch")

/* The CUDA state of c with its device made current; NULL for a context
 * without one (the public ops only forward CUDA contexts here). */
pk_cuda_ctx *pk_cuda_enter(pk_ctx *c);

/* At least `bytes` of workspace (contents lost when it grows), or NULL. */
void *pk_cuda_workspace(pk_cuda_ctx *cs, size_t bytes);

/* Hands the pending failure to e (cleared in the context) and returns its
 * code, or PK_OK when none is pending. */
int pk_cuda_take_error(pk_cuda_ctx *cs, pk_err *e);

/* Grid for a grid-stride loop over n items with `threads` per block. The
 * cap keeps launches cheap; the loops cover the rest. */
static inline unsigned pk_grid(size_t n, int threads)
{
    size_t b = (n + (size_t)threads - 1) / (size_t)threads;
    if (b < 1)
        b = 1;
    return (unsigned)(b > 65535u * 4u ? 65535u * 4u : b);
}

/* Sum of v over the block, in a fixed order (the result is the same on
 * every run); valid in thread 0. `sh` holds blockDim.x doubles. */
__device__ inline double pk_block_sum(double v, double *sh)
{
    sh[threadIdx.x] = v;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s)
            sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads();
    return r;
}

#endif
