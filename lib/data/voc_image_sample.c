/* An image without a label encoded as a pack record: see voc_sample.h. */
#include "data/voc_sample.h"

#include <stdlib.h>
#include <string.h>
#include "store/record.h"

int pk_voc_image_encode(uint8_t **out, size_t *out_len, const pk_voc_entry *entry,
                        int image_enc, pk_err *e)
{
    uint8_t *jpeg = NULL, *ignore = NULL;
    size_t jpeg_len = 0;
    pk_image img = {0};
    int rc = pk_file_read(&jpeg, &jpeg_len, entry->image, e);
    if (rc == PK_OK && (rc = pk_jpeg_decode(&img, jpeg, jpeg_len, e)) != PK_OK)
        pk_wrap(e, "%s", entry->image);
    size_t npix = (size_t)img.w * img.h;
    if (rc == PK_OK && !(ignore = malloc(npix ? npix : 1)))
        rc = pk_fail(e, PK_ENOMEM, "out of memory");
    if (rc == PK_OK) {
        memset(ignore, PK_IGNORE_LABEL, npix);
        if (image_enc == PK_IMG_JPEG)
            rc = pk_record_encode(out, out_len, entry->id, img.w, img.h, PK_IMG_JPEG, jpeg,
                                  jpeg_len, ignore, e);
        else
            rc = pk_record_encode(out, out_len, entry->id, img.w, img.h, PK_IMG_RGB8, img.px,
                                  npix * 3, ignore, e);
    }
    free(ignore);
    free(jpeg);
    pk_image_free(&img);
    return rc;
}
