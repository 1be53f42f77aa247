/* The software fp16 conversion (lib/core/half.h, used where the compiler
 * lacks _Float16: clang-14's fuzz build) against _Float16: every half to
 * float, and floats around every half boundary plus a sweep of bit
 * patterns to half, bit for bit (NaN payloads aside). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/half.h"
#include "support.h"

static float from_bits(uint32_t x)
{
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

int main(void)
{
#ifndef __FLT16_MANT_DIG__
    puts("  skip test_half: no _Float16 to compare with");
    return 0;
#else
    int failures = 0, shown = 0;
    for (uint32_t u = 0; u < 65536; u++) {
        float hw = pk_f16_to_f32((uint16_t)u), sw = pk_f16_to_f32_soft((uint16_t)u);
        int same = isnan(hw) ? isnan(sw) : memcmp(&hw, &sw, sizeof hw) == 0;
        if (!same && shown++ < 5)
            printf("  FAIL f16 0x%04x: %g vs %g\n", (unsigned)u, (double)hw, (double)sw);
        failures += !same;
    }
    /* Every 4099th bit pattern, and each half's neighbourhood in float: the
     * value, the midpoints to its neighbours and one ulp either side. */
    for (uint64_t x = 0; x <= UINT32_MAX; x += 4099) {
        float f = from_bits((uint32_t)x);
        uint16_t hw = pk_f32_to_f16(f), sw = pk_f32_to_f16_soft(f);
        int same = isnan(f) ? (sw & 0x7c00) == 0x7c00 && (sw & 0x3ff) : hw == sw;
        if (!same && shown++ < 10)
            printf("  FAIL f32 0x%08x: 0x%04x vs 0x%04x\n", (unsigned)x, hw, sw);
        failures += !same;
    }
    for (uint32_t u = 0; u < 0x7c00; u++) {
        float a = pk_f16_to_f32((uint16_t)u), b = pk_f16_to_f32((uint16_t)(u + 1));
        float mid = a + (b - a) / 2;
        float probes[5] = {mid, nextafterf(mid, 0), nextafterf(mid, INFINITY), a, -mid};
        for (int k = 0; k < 5; k++) {
            uint16_t hw = pk_f32_to_f16(probes[k]), sw = pk_f32_to_f16_soft(probes[k]);
            if (hw != sw && shown++ < 15)
                printf("  FAIL f32 %a: 0x%04x vs 0x%04x\n", (double)probes[k], hw, sw);
            failures += hw != sw;
        }
    }
    printf("  %s test_half: %d mismatches\n", failures ? "FAIL" : "ok", failures);
    return failures != 0;
#endif
}
