/* helper_png_size: copies a PNG, rewriting the width and height in its
 * IHDR chunk (and the chunk's CRC), so that a small file claims a huge
 * image. The pixel data is left as it was: a reader that checks the header
 * first refuses it without decoding anything.
 * usage: helper_png_size IN.png OUT.png WIDTH HEIGHT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/le_bytes.h"
#include "data/image.h"

static void put_be32(uint8_t *p, unsigned long v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: helper_png_size IN.png OUT.png WIDTH HEIGHT\n");
        return 2;
    }
    pk_err e = {0, ""};
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = pk_file_read(&buf, &len, argv[1], &e);
    /* signature (8), IHDR length (4), "IHDR", width, height, ..., CRC at 29 */
    if (!rc && (len < 33 || memcmp(buf + 12, "IHDR", 4)))
        rc = pk_fail(&e, PK_EFORMAT, "%s: no IHDR chunk first", argv[1]);
    if (!rc) {
        put_be32(buf + 16, strtoul(argv[3], NULL, 10));
        put_be32(buf + 20, strtoul(argv[4], NULL, 10));
        put_be32(buf + 29, pk_crc32(buf + 12, 17));
        rc = pk_file_write(argv[2], buf, len, &e);
    }
    free(buf);
    if (rc) {
        fprintf(stderr, "helper_png_size: %s\n", e.msg);
        return 1;
    }
    return 0;
}
