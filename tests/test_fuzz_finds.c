/* Inputs the fuzz harnesses (fuzz/fuzz_*.c, `make fuzz`) found to break a
 * parser, each fed to that parser again: the fix must hold without clang.
 * The same bytes sit in fuzz/corpus/<name>/crash-*. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/image.h"
#include "core/le_bytes.h"
#include "store/logits_cache.h"
#include "store/record.h"
#include "support.h"

/* fuzz_jpeg: a 45-byte JPEG whose frame header claims 64521 x 14931
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

/* fuzz_record: a 43-byte record whose header says an 11-byte id: the id
 * was copied before the length was checked, reading past the value. */
static int record_id_past_end(void)
{
    static const uint8_t in[] = {
        0x50, 0x4b, 0x44, 0x52, 0x01, 0x00, 0x2f, 0x00, 0x09, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00,
        0x40, 0x5d, 0x01, 0x0b, 0x00, 0xbd, 0x00, 0x00, 0x00, 0x3f, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x32, 0x30, 0x30, 0x37, 0x5f, 0x30, 0x06};
    /* On the heap at its exact size, so that ASan sees a read past it. */
    uint8_t *buf = malloc(sizeof in);
    if (!buf)
        return 1;
    memcpy(buf, in, sizeof in);
    int f = 0;
    pk_record_view v;
    pk_err e;
    PK_CHECK(f, pk_record_parse(&v, buf, sizeof in, &e) == PK_EFORMAT &&
             strstr(e.msg, "too short"), "record with its id past the end: %s", e.msg);
    free(buf);
    return f;
}

/* Found by reading pk_logits_parse after the record find above: a sealed
 * 52-byte logits record with a 255-byte key. Its pad byte (p[48 + 255])
 * was read before the length was checked. */
static int logits_key_past_end(void)
{
    size_t len = 52;
    uint8_t *p = calloc(1, len);
    if (!p)
        return 1;
    memcpy(p, "PKDL", 4);
    pk_put16(p + 4, PK_LOGITS_VERSION);
    pk_put16(p + 6, 48 + 256);
    pk_put16(p + 36, PK_LOGITS_STRIDE);
    p[38] = 1; /* fp16 */
    p[39] = 2; /* planes */
    pk_put16(p + 40, 255);
    pk_put32(p + len - 4, pk_crc32(p, len - 4));
    int f = 0;
    pk_logits_view v;
    pk_err e;
    PK_CHECK(f, pk_logits_parse(&v, p, len, &e) == PK_EFORMAT && strstr(e.msg, "too short"),
             "logits record with its key past the end: %s", e.msg);
    free(p);
    return f;
}

int main(void)
{
    int f = 0;
    f += jpeg_huge_size();
    f += record_id_past_end();
    f += logits_key_past_end();
    printf("  %s test_fuzz_finds\n", f ? "FAIL" : "ok");
    return f != 0;
}
