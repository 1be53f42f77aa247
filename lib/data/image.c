/* pk_image allocation and whole-file read/write shared by the JPEG and PNG
 * code. */
#include "data/image.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/atomic_file.h"

int pk_image_check_size(unsigned long w, unsigned long h, pk_err *e)
{
    if (w < 1 || h < 1 || w > PK_IMAGE_MAX_SIDE || h > PK_IMAGE_MAX_SIDE ||
        w * h > (unsigned long)PK_IMAGE_MAX_PIXELS)
        return pk_fail(e, PK_EFORMAT, "image of %lux%lu exceeds the limit (%d per side, %ld "
                       "pixels)", w, h, PK_IMAGE_MAX_SIDE, PK_IMAGE_MAX_PIXELS);
    return PK_OK;
}

int pk_image_alloc(pk_image *im, int w, int h, int c, pk_err *e)
{
    im->w = im->h = im->c = 0;
    im->px = NULL;
    if (w <= 0 || h <= 0 || c <= 0)
        return pk_fail(e, PK_EINVAL, "bad image size %dx%dx%d", w, h, c);
    im->px = malloc((size_t)w * h * c);
    if (!im->px)
        return pk_fail(e, PK_ENOMEM, "out of memory for a %dx%dx%d image", w, h, c);
    im->w = w;
    im->h = h;
    im->c = c;
    return PK_OK;
}

void pk_image_free(pk_image *im)
{
    if (!im)
        return;
    free(im->px);
    im->px = NULL;
    im->w = im->h = im->c = 0;
}

int pk_file_read(uint8_t **buf, size_t *len, const char *path, pk_err *e)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        int err = errno;
        return pk_fail(e, err == ENOENT ? PK_ENOTFOUND : PK_EIO, "%s: %s", path,
                       strerror(err));
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *p = malloc(cap);
    if (!p) {
        fclose(f);
        return pk_fail(e, PK_ENOMEM, "%s: out of memory", path);
    }
    for (;;) {
        size_t got = fread(p + n, 1, cap - n, f);
        n += got;
        if (n < cap) {
            if (ferror(f)) {
                int err = errno;
                free(p);
                fclose(f);
                return pk_fail(e, PK_EIO, "%s: read error: %s", path, strerror(err));
            }
            break; /* EOF */
        }
        uint8_t *q = realloc(p, cap * 2);
        if (!q) {
            free(p);
            fclose(f);
            return pk_fail(e, PK_ENOMEM, "%s: out of memory", path);
        }
        p = q;
        cap *= 2;
    }
    fclose(f); /* read-only stream: nothing to lose on close */
    *buf = p;
    *len = n;
    return PK_OK;
}

int pk_file_write(const char *path, const void *buf, size_t len, pk_err *e)
{
    pk_atomic_file af;
    int rc = pk_atomic_open(&af, path, e);
    if (rc != PK_OK)
        return rc;
    if (len && fwrite(buf, 1, len, af.fp) != len) {
        int err = errno;
        pk_atomic_abort(&af);
        return pk_fail(e, PK_EIO, "%s: write error: %s", path, strerror(err));
    }
    return pk_atomic_commit(&af, e);
}
