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
    /* cublasGemmEx (the header overloads it for C++, so no decltype): the
     * bf16 precision's 1x1 convolutions, bf16 in, fp32 out */
    cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int,
                              int, const void *, const void *, cudaDataType, int, const void *,
                              cudaDataType, int, const void *, void *, cudaDataType, int,
                              cublasComputeType_t, cublasGemmAlgo_t);
};

struct pk_cuda_ctx {
    int device;
    int tf32;
    int bf16; /* the bf16 precision: convolutions on bf16 copies (conv_cuda.cu) */
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
    /* The bf16 precision's copies of a convolution's operands (x, w, dy and
     * the bf16 result), beside the workspace that cuDNN uses at the same
     * time; same lifetime rule. */
    void *half;
    size_t half_cap;
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
/* The same for the bf16 copies' scratch (cs->half). */
void *pk_cuda_half_scratch(pk_cuda_ctx *cs, size_t bytes);

/* The bf16 precision's conversions on cs's stream (lib/ops/bf16_cuda.cu):
 * dst = src rounded to bf16 as core/half.h rounds (nearest even, NaN stays
 * NaN); and dst = src widened (accumulate 0), or dst += src (accumulate 1).
 * False when the launch failed (noted in cs). */
bool pk_cuda_round_bf16(pk_cuda_ctx *cs, uint16_t *dst, const float *src, size_t n);
bool pk_cuda_widen_bf16(pk_cuda_ctx *cs, float *dst, const uint16_t *src, size_t n,
                        int accumulate);

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
