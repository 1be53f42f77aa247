/* libFuzzer: a pack's metadata record (pk_meta_decode, as pk_pack_open
 * and pk_pack_meta_read read it). */
#include "fuzz_util.h"
#include "store/record.h"

static void one(const uint8_t *data, size_t size)
{
    pk_meta m;
    pk_err e;
    (void)pk_meta_decode(&m, data, size, &e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input as it is, then with its CRC fixed. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fz_with_fixed_crc(one, data, size);
}
