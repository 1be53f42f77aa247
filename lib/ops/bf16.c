/* fp32 <-> bf16 conversion of activations for the bf16 precision (the
 * convolutions' inputs, conv.c; the activations kept for the backward,
 * pspnet_exec.c), element by element as core/half.h rounds, over the
 * threads. bf16 -> fp32 is exact. The plain pair has a CUDA twin
 * (bf16_cuda.cu); the centred pair serves the CPU's kept activations only. */
#include "ops/ops.h"
#include "ops/ops_cuda.h"

#include <string.h>
#include "core/half.h"

#define PK_BF16_PAR_MIN 32768

void pk_f32_to_bf16(pk_ctx *c, uint16_t *dst, const float *src, size_t n)
{
    PK_ON_CUDA(c, pk_cuda_f32_to_bf16(c, dst, src, n));
    long len = (long)n;
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) if (n > PK_BF16_PAR_MIN)
    for (long i = 0; i < len; i++)
        dst[i] = pk_f32_to_bf16_one(src[i]);
}

void pk_f32_from_bf16(pk_ctx *c, float *dst, const uint16_t *src, size_t n)
{
    PK_ON_CUDA(c, pk_cuda_f32_from_bf16(c, dst, src, n));
    long len = (long)n;
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) if (n > PK_BF16_PAR_MIN)
    for (long i = 0; i < len; i++)
        dst[i] = pk_bf16_to_f32_one(src[i]);
}

void pk_f32_to_bf16_centered(pk_ctx *c, uint16_t *dst, const float *src, const float *mean,
                             long P, int C)
{
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) if (P * C > PK_BF16_PAR_MIN)
    for (long p = 0; p < P; p++)
        for (int k = 0; k < C; k++)
            dst[p * C + k] = pk_f32_to_bf16_one(src[p * C + k] - mean[k]);
}

void pk_f32_from_bf16_centered(pk_ctx *c, float *dst, const uint16_t *src, const float *mean,
                               long P, int C)
{
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) if (P * C > PK_BF16_PAR_MIN)
    for (long p = 0; p < P; p++)
        for (int k = 0; k < C; k++)
            dst[p * C + k] = mean[k] + pk_bf16_to_f32_one(src[p * C + k]);
}

float pk_bf16_to_f32(uint16_t h) { return pk_bf16_to_f32_one(h); }
