/* CUDA twin of lib/ops/bf16.c: fp32 <-> bf16 on the context's stream,
 * with core/half.h's own conversions (device code there too), so NaN
 * payloads agree as well. The bf16 precision's convolutions (conv_cuda.cu)
 * round their operands with pk_cuda_round_bf16 and widen cuDNN's bf16
 * results with pk_cuda_widen_bf16. */
#include "ops/cuda_common.cuh"
#include "core/half.h"

#define BF16_THREADS 256

__global__ void round_kernel(uint16_t *dst, const float *src, size_t n)
{
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        dst[i] = pk_f32_to_bf16_one(src[i]);
}

/* accumulate 0 never reads dst (it may hold anything, NaN included). */
__global__ void widen_kernel(float *dst, const uint16_t *src, size_t n, int accumulate)
{
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        dst[i] = accumulate ? __fadd_rn(dst[i], pk_bf16_to_f32_one(src[i]))
                            : pk_bf16_to_f32_one(src[i]);
}

bool pk_cuda_round_bf16(pk_cuda_ctx *cs, uint16_t *dst, const float *src, size_t n)
{
    if (!n)
        return true;
    round_kernel<<<pk_grid(n, BF16_THREADS), BF16_THREADS, 0, cs->stream>>>(dst, src, n);
    return PK_CU_LAUNCH(cs);
}

bool pk_cuda_widen_bf16(pk_cuda_ctx *cs, float *dst, const uint16_t *src, size_t n,
                        int accumulate)
{
    if (!n)
        return true;
    widen_kernel<<<pk_grid(n, BF16_THREADS), BF16_THREADS, 0, cs->stream>>>(dst, src, n,
                                                                            accumulate);
    return PK_CU_LAUNCH(cs);
}

extern "C" void pk_cuda_f32_to_bf16(pk_ctx *c, uint16_t *dst, const float *src, size_t n)
{
    pk_cuda_ctx *cs = pk_cuda_enter(c);
    if (cs)
        pk_cuda_round_bf16(cs, dst, src, n);
}

extern "C" void pk_cuda_f32_from_bf16(pk_ctx *c, float *dst, const uint16_t *src, size_t n)
{
    pk_cuda_ctx *cs = pk_cuda_enter(c);
    if (cs)
        pk_cuda_widen_bf16(cs, dst, src, n, 0);
}
