/* libFuzzer: a pack's image record (pk_record_parse), then what the
 * loader does with a valid one: the label check and the image, decoding
 * its JPEG when stored as one. */
#include "store/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pk_record_view v;
    pk_err e;
    if (pk_record_parse(&v, data, size, &e))
        return 0;
    (void)pk_record_check_labels(&v, 21, &e);
    pk_image im = {0};
    if (pk_record_image(&im, &v, &e) == PK_OK)
        pk_image_free(&im);
    return 0;
}
