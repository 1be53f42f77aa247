/* libFuzzer: a VOC list file (ids or 'image label' pairs) through
 * pk_voc_list_read, with the default and an explicit label folder. */
#include "data/voc_list.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_write("input", data, size);
    pk_voc_list l;
    pk_err e;
    if (pk_voc_list_read(&l, fz_tmpdir(), path, NULL, &e) == PK_OK)
        pk_voc_list_free(&l);
    if (pk_voc_list_read(&l, "", path, "labels", &e) == PK_OK)
        pk_voc_list_free(&l);
    return 0;
}
