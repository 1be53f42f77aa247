/* libFuzzer: a logits-cache record (pk_logits_parse), converted to float
 * as pk_logits_cache_get does. */
#include <stdlib.h>

#include "fuzz_util.h"
#include "store/logits_cache.h"

static void one(const uint8_t *data, size_t size)
{
    pk_logits_view v;
    pk_err e;
    if (pk_logits_parse(&v, data, size, &e))
        return;
    size_t n = (size_t)v.geom.grid_w * (size_t)v.geom.grid_h * (size_t)v.classes;
    float *a = malloc(n * sizeof *a + 1), *b = malloc(n * sizeof *b + 1);
    if (a && b)
        pk_logits_view_to_f32(&v, a, b);
    free(a);
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input as it is, then with its CRC fixed. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fz_with_fixed_crc(one, data, size);
}
