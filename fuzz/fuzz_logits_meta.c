/* libFuzzer: a logits cache's metadata record (pk_logits_meta_decode). */
#include "fuzz_util.h"
#include "store/logits_cache.h"

static void one(const uint8_t *data, size_t size)
{
    pk_logits_meta m;
    pk_err e;
    (void)pk_logits_meta_decode(&m, data, size, &e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input as it is, then with its CRC fixed. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fz_with_fixed_crc(one, data, size);
}
