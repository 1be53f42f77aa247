/* libFuzzer: an image list for unlabelled packs (pk_voc_images_read). */
#include "data/voc_images.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_write("input", data, size);
    pk_voc_list l;
    pk_err e;
    if (pk_voc_images_read(&l, fz_tmpdir(), path, &e) == PK_OK)
        pk_voc_list_free(&l);
    return 0;
}
