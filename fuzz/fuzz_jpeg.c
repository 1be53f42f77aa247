/* libFuzzer: a JPEG through pk_jpeg_size, pk_jpeg_decode and
 * pk_jpeg_decode_into (libjpeg as pspkd drives it). */
#include <stdlib.h>

#include "data/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pk_err e;
    int w = 0, h = 0;
    if (pk_jpeg_size(&w, &h, data, size, &e))
        return 0;
    pk_image im = {0};
    if (pk_jpeg_decode(&im, data, size, &e) == PK_OK) {
        if (im.w != w || im.h != h || im.c != 3)
            abort();
        pk_image_free(&im);
    }
    uint8_t *rgb = malloc((size_t)w * (size_t)h * 3);
    if (rgb)
        (void)pk_jpeg_decode_into(rgb, w, h, data, size, &e);
    free(rgb);
    return 0;
}
