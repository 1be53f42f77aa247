/* fp32 -> bf16 conversion of activations for the bf16 convolutions
 * (conv.c): round to nearest even, as oneDNN's reorders and PyTorch's
 * autocast round; NaNs stay NaNs (quiet). Integer arithmetic only, so the
 * compiler vectorises it for whatever -march the build has. */
#include "ops/ops.h"

#include <string.h>

#define PK_BF16_PAR_MIN 32768

static inline uint16_t bf16_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    uint32_t nan = (u >> 16) | 0x40u;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

void pk_f32_to_bf16(pk_ctx *c, uint16_t *dst, const float *src, size_t n)
{
    long len = (long)n;
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) if (n > PK_BF16_PAR_MIN)
    for (long i = 0; i < len; i++)
        dst[i] = bf16_of(src[i]);
}

float pk_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
