/* Deterministic random numbers. pk_hash64 is a stateless mixer so that
 * counter-based draws (dropout masks, per-sample augmentation) give the same
 * values whatever the thread count or backend. */
#ifndef PSPKD_RNG_H
#define PSPKD_RNG_H

#include <math.h>
#include <stdint.h>

static inline uint64_t pk_hash64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Uniform in [0, 1) from 64 random bits (24-bit resolution, exact float). */
static inline float pk_bits_to_u01(uint64_t bits)
{
    return (float)(bits >> 40) * (1.0f / 16777216.0f);
}

typedef struct pk_rng {
    uint64_t state;
} pk_rng;

static inline pk_rng pk_rng_seed(uint64_t seed) { return (pk_rng){pk_hash64(seed)}; }
static inline uint64_t pk_rng_next(pk_rng *r)
{
    r->state += 0x9e3779b97f4a7c15ULL;
    uint64_t z = r->state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static inline float pk_rng_u01(pk_rng *r) { return pk_bits_to_u01(pk_rng_next(r)); }
static inline float pk_rng_uniform(pk_rng *r, float lo, float hi)
{
    return lo + (hi - lo) * pk_rng_u01(r);
}
/* Standard normal (Box-Muller). */
static inline float pk_rng_normal(pk_rng *r)
{
    double u1 = ((double)(pk_rng_next(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (double)(pk_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
/* Integer in [0, n). */
static inline uint32_t pk_rng_below(pk_rng *r, uint32_t n)
{
    return (uint32_t)(((pk_rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

#endif
