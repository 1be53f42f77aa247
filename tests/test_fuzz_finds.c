/* Inputs the fuzz harnesses (fuzz/fuzz_*.c, `make fuzz`) found to break a
 * parser, each fed to that parser again: the fix must hold without clang.
 * The same bytes sit in fuzz/corpus/<name>/crash-*. */
#include <stdint.h>
#include <string.h>

#include "data/image.h"
#include "support.h"

/* fuzz_jpeg: a 29-byte JPEG whose frame header claims 64521 x 14931
 * pixels. pk_jpeg_size returned that size unchecked, and a caller sizing
 * its buffer from it asked for 2.9 GB. */
static int jpeg_huge_size(void)
{
    static const uint8_t in[] = {
        0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x31, 0x01, 0x09, 0x09,
        0x08, 0x0a, 0x0c, 0x14, 0x0d, 0x0c, 0xff, 0xc0, 0x00, 0x0b, 0x08, 0x3a, 0x53, 0xfc, 0x09,
        0x01, 0x01, 0x11, 0xff, 0xff, 0xda, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x9a, 0xff, 0xd9};
    int f = 0, w = -1, h = -1;
    pk_err e;
    PK_CHECK(f, pk_jpeg_size(&w, &h, in, sizeof in, &e) == PK_EFORMAT &&
             strstr(e.msg, "exceeds"), "pk_jpeg_size of a huge header: %s", e.msg);
    pk_image im = {0};
    PK_CHECK(f, pk_jpeg_decode(&im, in, sizeof in, &e) == PK_EFORMAT && !im.px,
             "pk_jpeg_decode of a huge header: %s", e.msg);
    return f;
}

int main(void)
{
    int f = 0;
    f += jpeg_huge_size();
    printf("  %s test_fuzz_finds\n", f ? "FAIL" : "ok");
    return f != 0;
}
