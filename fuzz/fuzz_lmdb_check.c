/* libFuzzer: the LMDB meta-page check every pack and cache open runs
 * before mapping the file (pk_lmdb_check_file, on a temp file). */
#include "fuzz_util.h"
#include "store/lmdb_util_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pk_err e;
    (void)pk_lmdb_check_file(fz_write("input", data, size), &e);
    return 0;
}
