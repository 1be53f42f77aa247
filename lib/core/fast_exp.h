/* e^x for the max-shifted softmaxes of the losses (x <= 0), in a form that
 * vectorises. glibc's expf gets its vector variants (libmvec) only under
 * -ffast-math, which the loss kernels cannot take (it would reassociate
 * their double sums and drop their NaN checks), and the per-pixel
 * softmaxes call it once or twice per logit: as a scalar call per logit
 * the CE and KL terms took about half of the loss step's 37 ms (R18,
 * 2x225x225, 2 threads).
 *
 * Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, then Cephes's degree-6
 * polynomial for e^r, scaled by 2^n through the exponent bits: within
 * 1 ulp of exp on [-87.33, 0] (test_fast_exp: 8e-8), 0 below -87.33 (where
 * expf gives subnormals < 1.2e-38), NaN for NaN. Above 87 it is not meant
 * to be used (it saturates at e^87). */
#ifndef PSPKD_FAST_EXP_H
#define PSPKD_FAST_EXP_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float pk_expf_softmax(float x)
{
    const float lo = -87.33654f, hi = 87.0f;
    float xc = x < hi ? x : hi; /* NaN -> hi: no NaN reaches the int conversion */
    xc = xc > lo ? xc : lo;
    /* n = round(x / ln2) by the 1.5 * 2^23 shift: floorf is a library
     * call here (it would not vectorise) */
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float z = r * r, p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * z + r + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float s;
    memcpy(&s, &bits, sizeof s);
    float y = p * s;
    return x < lo ? 0.0f : x == x ? y : x;
}

#endif
