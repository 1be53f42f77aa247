/* libFuzzer: a pack's image record (pk_record_parse), then what the
 * loader does with a valid one: the label check and the image, decoding
 * its JPEG when stored as one. */
#include "fuzz_util.h"
#include "store/record.h"

static void one(const uint8_t *data, size_t size)
{
    pk_record_view v;
    pk_err e;
    if (pk_record_parse(&v, data, size, &e))
        return;
    (void)pk_record_check_labels(&v, 21, &e);
    pk_image im = {0};
    if (pk_record_image(&im, &v, &e) == PK_OK)
        pk_image_free(&im);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input as it is, then with its CRC fixed. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fz_with_fixed_crc(one, data, size);
}
