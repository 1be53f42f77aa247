/* IEEE binary16 <-> binary32, round to nearest even (F16C when -march has it).
 * Compilers without _Float16 on the target (clang before 15 on x86, which
 * builds the fuzz harnesses) use the bit-exact software conversion below,
 * which tests/test_half.c checks against _Float16. */
#ifndef PSPKD_HALF_H
#define PSPKD_HALF_H

#include <stdint.h>
#include <string.h>

static inline uint16_t pk_f32_to_f16_soft(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    int exp = (int)((x >> 23) & 0xffu);
    uint32_t mant = x & 0x7fffffu;
    if (exp == 0xff) /* infinity, or NaN kept quiet with its top payload */
        return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u | (mant >> 13) : 0));
    int e = exp - 127 + 15;
    if (e >= 31)
        return (uint16_t)(sign | 0x7c00u);
    uint32_t r, rem, half;
    if (e <= 0) { /* a subnormal half, or zero */
        int shift = 14 - e;
        if (shift > 24)
            return sign;
        uint32_t m = exp ? mant | 0x800000u : mant;
        r = m >> shift;
        rem = m & ((1u << shift) - 1);
        half = 1u << (shift - 1);
    } else {
        r = ((uint32_t)e << 10) | (mant >> 13);
        rem = mant & 0x1fffu;
        half = 0x1000u;
    }
    if (rem > half || (rem == half && (r & 1)))
        r++; /* a carry into the exponent is the right result, up to infinity */
    return (uint16_t)(sign | r);
}

static inline float pk_f16_to_f32_soft(uint16_t u)
{
    uint32_t sign = (uint32_t)(u & 0x8000u) << 16;
    uint32_t exp = (u >> 10) & 0x1fu, mant = u & 0x3ffu;
    if (exp == 0) {
        float v = (float)mant * 0x1p-24f;
        return sign ? -v : v;
    }
    uint32_t x = sign | (exp == 31 ? 0x7f800000u : (exp + 112) << 23) | (mant << 13);
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

#ifdef __FLT16_MANT_DIG__
static inline uint16_t pk_f32_to_f16(float f)
{
    _Float16 h = (_Float16)f;
    uint16_t u;
    memcpy(&u, &h, sizeof u);
    return u;
}

static inline float pk_f16_to_f32(uint16_t u)
{
    _Float16 h;
    memcpy(&h, &u, sizeof h);
    return (float)h;
}
#else
static inline uint16_t pk_f32_to_f16(float f) { return pk_f32_to_f16_soft(f); }
static inline float pk_f16_to_f32(uint16_t u) { return pk_f16_to_f32_soft(u); }
#endif

/* The bf16 pair below is CUDA device code too (lib/ops/bf16_cuda.cu), so
 * that the GPU rounds bit for bit as the CPU does. */
#ifdef __CUDACC__
#define PK_HOST_DEVICE __host__ __device__
#else
#define PK_HOST_DEVICE
#endif

/* fp32 -> bfloat16, round to nearest even (as oneDNN's reorders and
 * PyTorch's autocast round); a NaN stays a (quiet) NaN. Integer arithmetic
 * only, so loops over it vectorise for any -march. */
static inline PK_HOST_DEVICE uint16_t pk_f32_to_bf16_one(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    uint32_t nan = (u >> 16) | 0x40u;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

/* bfloat16 -> fp32, exact. */
static inline PK_HOST_DEVICE float pk_bf16_to_f32_one(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

#endif
