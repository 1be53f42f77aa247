/* libFuzzer: a label PNG through pk_png_decode_label (libpng as pspkd
 * drives it: the size check from the header, palette/grey/RGB paths). */
#include "data/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pk_image im = {0};
    int kind = 0;
    pk_err e;
    if (pk_png_decode_label(&im, &kind, data, size, &e) == PK_OK)
        pk_image_free(&im);
    return 0;
}
