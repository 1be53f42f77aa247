/* fp32 -> bf16 conversion of activations for the bf16 convolutions
 * (conv.c), element by element as core/half.h rounds, over the threads. */
#include "ops/ops.h"

#include <string.h>
#include "core/half.h"

#define PK_BF16_PAR_MIN 32768

void pk_f32_to_bf16(pk_ctx *c, uint16_t *dst, const float *src, size_t n)
{
    long len = (long)n;
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) if (n > PK_BF16_PAR_MIN)
    for (long i = 0; i < len; i++)
        dst[i] = pk_f32_to_bf16_one(src[i]);
}

float pk_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
