/* libFuzzer: a logits-cache record (pk_logits_parse), converted to float
 * as pk_logits_cache_get does. */
#include <stdlib.h>

#include "store/logits_cache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pk_logits_view v;
    pk_err e;
    if (pk_logits_parse(&v, data, size, &e))
        return 0;
    size_t n = (size_t)v.geom.grid_w * (size_t)v.geom.grid_h * (size_t)v.classes;
    float *a = malloc(n * sizeof *a + 1), *b = malloc(n * sizeof *b + 1);
    if (a && b)
        pk_logits_view_to_f32(&v, a, b);
    free(a);
    free(b);
    return 0;
}
