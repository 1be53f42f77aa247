/* libFuzzer: a logits cache's metadata record (pk_logits_meta_decode). */
#include "store/logits_cache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pk_logits_meta m;
    pk_err e;
    (void)pk_logits_meta_decode(&m, data, size, &e);
    return 0;
}
