/* libFuzzer: a pack's metadata record (pk_meta_decode, as pk_pack_open
 * and pk_pack_meta_read read it). */
#include "store/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pk_meta m;
    pk_err e;
    (void)pk_meta_decode(&m, data, size, &e);
    return 0;
}
