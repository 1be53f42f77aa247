/* Image I/O, pack records and metadata: round trips, and
 * every corruption (each single flipped byte, each truncation) rejected
 * with PK_EFORMAT rather than a crash. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/le_bytes.h"
#include "data/image.h"
#include "data/palette.h"
#include "store/record.h"
#include "support.h"
#include "data/voc_sample.h"

static char g_dir[] = "/tmp/pk_test_data_XXXXXX"; /* test-local scratch dir name */

static char *path_in(const char *name)
{
    static char buf[256];
    snprintf(buf, sizeof buf, "%s/%s", g_dir, name);
    return buf;
}

static void fill_rgb(pk_image *im, int w, int h)
{
    pk_image_alloc(im, w, h, 3, NULL);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = im->px + 3 * (y * w + x);
            p[0] = (uint8_t)(x * 255 / (w - 1));
            p[1] = (uint8_t)(y * 255 / (h - 1));
            p[2] = (uint8_t)((x + y) * 4);
        }
}

static int test_jpeg(void)
{
    int f = 0;
    pk_err e;
    pk_image im, back = {0};
    fill_rgb(&im, 37, 23);
    uint8_t *jpg;
    size_t len;
    PK_CHECK(f, pk_jpeg_encode(&jpg, &len, &im, 95, &e) == PK_OK, "encode: %s", e.msg);
    PK_CHECK(f, pk_jpeg_decode(&back, jpg, len, &e) == PK_OK, "decode: %s", e.msg);
    PK_CHECK(f, back.w == 37 && back.h == 23 && back.c == 3, "decoded size");
    double err = 0;
    for (size_t i = 0; i < 37 * 23 * 3; i++)
        err += abs((int)back.px[i] - (int)im.px[i]);
    err /= 37 * 23 * 3;
    PK_CHECK(f, err < 4.0, "JPEG q95 mean abs error %.2f", err);
    int w, h;
    PK_CHECK(f, pk_jpeg_size(&w, &h, jpg, len, &e) == PK_OK && w == 37 && h == 23, "size");
    uint8_t *buf = malloc(37 * 23 * 3);
    PK_CHECK(f, pk_jpeg_decode_into(buf, 37, 23, jpg, len, &e) == PK_OK &&
                    !memcmp(buf, back.px, 37 * 23 * 3), "decode_into");
    PK_CHECK(f, pk_jpeg_decode_into(buf, 23, 37, jpg, len, &e) == PK_EFORMAT,
             "decode_into wrong size accepted");
    free(buf);
    /* every truncation fails cleanly */
    int bad = 0;
    for (size_t n = 0; n < len - 2; n++) {
        pk_image t = {0};
        if (pk_jpeg_decode(&t, jpg, n, &e) != PK_EFORMAT)
            bad++;
        pk_image_free(&t);
    }
    PK_CHECK(f, bad == 0, "%d truncated JPEGs not rejected", bad);
    pk_image t = {0};
    PK_CHECK(f, pk_jpeg_decode(&t, (const uint8_t *)"hello world", 11, &e) == PK_EFORMAT &&
                    strstr(e.msg, "corrupt JPEG"), "garbage: %s", e.msg);
    PK_CHECK(f, pk_jpeg_read(&t, path_in("missing.jpg"), &e) == PK_ENOTFOUND, "missing file");
    free(jpg);
    pk_image_free(&im);
    pk_image_free(&back);
    return f;
}

static int test_png_labels(void)
{
    int f = 0;
    pk_err e;
    uint8_t pal[256][3];
    pk_voc_palette(pal);
    pk_image lab;
    pk_image_alloc(&lab, 19, 11, 1, NULL);
    for (int i = 0; i < 19 * 11; i++)
        lab.px[i] = (uint8_t)(i % 7 == 6 ? 255 : i % 7 * 3); /* 0,3,..,15 and 255 */
    PK_CHECK(f, pk_png_write_palette(path_in("l.png"), &lab, (const uint8_t(*)[3])pal, 256, &e) ==
                    PK_OK, "write palette: %s", e.msg);
    pk_image back = {0};
    int kind = 0;
    PK_CHECK(f, pk_png_read_label(&back, &kind, path_in("l.png"), &e) == PK_OK, "%s", e.msg);
    PK_CHECK(f, kind == PK_PNG_PALETTE && back.c == 1 && back.w == 19 && back.h == 11 &&
                    !memcmp(back.px, lab.px, 19 * 11), "palette PNG read as indices");
    pk_image_free(&back);

    /* the same label written as RGB colours maps back to the indices */
    pk_image rgb;
    pk_image_alloc(&rgb, 19, 11, 3, NULL);
    for (int i = 0; i < 19 * 11; i++)
        memcpy(rgb.px + 3 * i, pal[lab.px[i]], 3);
    PK_CHECK(f, pk_png_write(path_in("rgb.png"), &rgb, &e) == PK_OK, "%s", e.msg);
    PK_CHECK(f, pk_png_read_label(&back, &kind, path_in("rgb.png"), &e) == PK_OK &&
                    kind == PK_PNG_RGB && back.c == 3, "RGB PNG read as RGB");
    pk_colour_map cm;
    PK_CHECK(f, pk_colour_map_init(&cm, (const uint8_t(*)[3])pal, 21, &e) == PK_OK, "%s", e.msg);
    PK_CHECK(f, pk_label_to_indices(&back, kind, &cm, 21, &e) == PK_OK && back.c == 1 &&
                    !memcmp(back.px, lab.px, 19 * 11), "RGB mapped through the palette: %s",
             e.msg);
    pk_image_free(&back);
    /* a colour outside the first 21 classes and 255 is an error */
    memcpy(rgb.px + 3 * 5, pal[40], 3);
    pk_png_write(path_in("rgb2.png"), &rgb, &e);
    pk_png_read_label(&back, &kind, path_in("rgb2.png"), &e);
    PK_CHECK(f, pk_label_to_indices(&back, kind, &cm, 21, &e) == PK_EFORMAT &&
                    strstr(e.msg, "at (5,0)"), "unknown colour: %s", e.msg);
    pk_image_free(&back);
    /* grey labels are values; out of range values are caught */
    PK_CHECK(f, pk_png_write(path_in("g.png"), &lab, &e) == PK_OK, "%s", e.msg);
    PK_CHECK(f, pk_png_read_label(&back, &kind, path_in("g.png"), &e) == PK_OK &&
                    kind == PK_PNG_GREY && !memcmp(back.px, lab.px, 19 * 11), "grey PNG");
    PK_CHECK(f, pk_label_to_indices(&back, kind, &cm, 15, &e) == PK_EFORMAT, "15 >= 15 classes");
    PK_CHECK(f, pk_label_to_indices(&back, kind, &cm, 16, &e) == PK_OK, "%s", e.msg);
    pk_image_free(&back);
    /* truncations of the palette PNG */
    uint8_t *buf;
    size_t len;
    pk_file_read(&buf, &len, path_in("l.png"), &e);
    int bad = 0;
    for (size_t n = 0; n + 12 < len; n++) { /* the last 12 bytes are IEND */
        if (pk_png_decode_label(&back, &kind, buf, n, &e) != PK_EFORMAT)
            bad++;
        pk_image_free(&back);
    }
    PK_CHECK(f, bad == 0, "%d truncated PNGs not rejected", bad);
    free(buf);
    pk_image_free(&rgb);
    pk_image_free(&lab);
    return f;
}

static int test_record(int image_enc)
{
    int f = 0;
    pk_err e;
    pk_image im;
    fill_rgb(&im, 9, 7);
    uint8_t label[63];
    for (int i = 0; i < 63; i++)
        label[i] = (uint8_t)(i % 5 == 4 ? 255 : i % 5);
    uint8_t *jpg = NULL;
    size_t jlen = 0;
    if (image_enc == PK_IMG_JPEG)
        pk_jpeg_encode(&jpg, &jlen, &im, 90, &e);
    uint8_t *rec;
    size_t len;
    int rc = image_enc == PK_IMG_JPEG
                 ? pk_record_encode(&rec, &len, "2008_000123", 9, 7, PK_IMG_JPEG, jpg, jlen, label, &e)
                 : pk_record_encode(&rec, &len, "2008_000123", 9, 7, PK_IMG_RGB8, im.px, 189, label, &e);
    PK_CHECK(f, rc == PK_OK, "encode: %s", e.msg);
    pk_record_view v;
    PK_CHECK(f, pk_record_parse(&v, rec, len, &e) == PK_OK, "parse: %s", e.msg);
    PK_CHECK(f, v.hdr.width == 9 && v.hdr.height == 7 && !strcmp(v.hdr.id, "2008_000123") &&
                    v.hdr.image_enc == image_enc && v.hdr.label_bytes == 63 &&
                    !memcmp(v.label, label, 63), "header fields");
    pk_image got = {0};
    PK_CHECK(f, pk_record_image(&got, &v, &e) == PK_OK, "image: %s", e.msg);
    if (image_enc == PK_IMG_RGB8) {
        PK_CHECK(f, !memcmp(got.px, im.px, 189), "RGB8 image bytes");
    } else {
        pk_image want = {0};
        pk_jpeg_decode(&want, jpg, jlen, &e);
        PK_CHECK(f, !memcmp(got.px, want.px, 189), "JPEG record decodes as the JPEG");
        pk_image_free(&want);
    }
    pk_image_free(&got);
    /* every single-byte change and every truncation is rejected */
    uint8_t *copy = malloc(len + 1);
    int flips = 0, cuts = 0;
    for (size_t i = 0; i < len; i++) {
        memcpy(copy, rec, len);
        copy[i] ^= 0x5a;
        if (pk_record_parse(&v, copy, len, &e) != PK_EFORMAT)
            flips++;
    }
    for (size_t n = 0; n < len; n++)
        if (pk_record_parse(&v, rec, n, &e) != PK_EFORMAT)
            cuts++;
    memcpy(copy, rec, len);
    copy[len] = 0;
    PK_CHECK(f, pk_record_parse(&v, copy, len + 1, &e) == PK_EFORMAT, "trailing byte accepted");
    PK_CHECK(f, flips == 0 && cuts == 0, "%d flips, %d truncations accepted", flips, cuts);
    memcpy(copy, rec, len);
    copy[0] = 'X';
    pk_record_parse(&v, copy, len, &e);
    PK_CHECK(f, strstr(e.msg, "bad magic") != NULL, "magic message: %s", e.msg);
    memcpy(copy, rec, len);
    copy[4] = 2;
    pk_record_parse(&v, copy, len, &e);
    PK_CHECK(f, strstr(e.msg, "version 2") != NULL, "version message: %s", e.msg);
    memcpy(copy, rec, len);
    copy[len - 20] ^= 1;
    pk_record_parse(&v, copy, len, &e);
    PK_CHECK(f, strstr(e.msg, "CRC mismatch") != NULL, "CRC message: %s", e.msg);
    /* bad arguments to encode */
    uint8_t *r2;
    size_t l2;
    PK_CHECK(f, pk_record_encode(&r2, &l2, "", 9, 7, PK_IMG_RGB8, im.px, 189, label, &e) ==
                    PK_EINVAL, "empty id");
    PK_CHECK(f, pk_record_encode(&r2, &l2, "a", 9, 7, PK_IMG_RGB8, im.px, 188, label, &e) ==
                    PK_EINVAL, "wrong RGB size");
    free(copy);
    free(rec);
    free(jpg);
    pk_image_free(&im);
    return f;
}

static int test_meta(void)
{
    int f = 0;
    pk_err e;
    pk_meta m, back;
    memset(&m, 0, sizeof m);
    m.count = 1464;
    m.classes = 21;
    m.image_enc = PK_IMG_JPEG;
    m.pack_id = 0x0123456789abcdefULL;
    pk_voc_palette(m.palette);
    for (int i = 0; i < 21; i++)
        snprintf(m.names[i], sizeof m.names[i], "%s", pk_voc_class_name(i));
    uint8_t *buf;
    size_t len;
    PK_CHECK(f, pk_meta_encode(&buf, &len, &m, &e) == PK_OK, "%s", e.msg);
    PK_CHECK(f, pk_meta_decode(&back, buf, len, &e) == PK_OK, "%s", e.msg);
    PK_CHECK(f, back.count == 1464 && back.classes == 21 && back.image_enc == PK_IMG_JPEG &&
                    back.pack_id == m.pack_id && back.version == PK_META_VERSION &&
                    back.record_version == PK_RECORD_VERSION &&
                    !memcmp(back.palette, m.palette, 768) &&
                    !strcmp(back.names[20], "tvmonitor"), "meta round trip");
    int flips = 0, cuts = 0;
    uint8_t *copy = malloc(len);
    for (size_t i = 0; i < len; i++) {
        memcpy(copy, buf, len);
        copy[i] ^= 0x21;
        if (pk_meta_decode(&back, copy, len, &e) != PK_EFORMAT)
            flips++;
    }
    for (size_t n = 0; n < len; n++)
        if (pk_meta_decode(&back, buf, n, &e) != PK_EFORMAT)
            cuts++;
    PK_CHECK(f, flips == 0 && cuts == 0, "meta: %d flips, %d truncations accepted", flips, cuts);
    /* the metadata key sorts after every record key */
    PK_CHECK(f, strcmp("99999999_zzz", PK_META_KEY) < 0, "meta key order");
    /* pack ids depend on order and content */
    uint64_t a = PK_PACK_ID_INIT, b = PK_PACK_ID_INIT, c = PK_PACK_ID_INIT;
    pk_pack_id_add(&a, "00000000_x", 1);
    pk_pack_id_add(&a, "00000001_y", 2);
    pk_pack_id_add(&b, "00000001_y", 2);
    pk_pack_id_add(&b, "00000000_x", 1);
    pk_pack_id_add(&c, "00000000_x", 1);
    pk_pack_id_add(&c, "00000001_y", 3);
    PK_CHECK(f, a != b && a != c, "pack id order/content sensitivity");
    free(copy);
    free(buf);
    return f;
}

/* Ids that would leave a folder when used as a file name: refused by the
 * encoder, and by the parser behind a valid CRC. */
static int test_record_ids(void)
{
    int f = 0;
    pk_err e = {0, ""};
    uint8_t rgb[2 * 2 * 3] = {0}, lab[4] = {0};
    const char *bad[] = {"../../../evil", "a/b", "..", "x\ty", "a..b"};
    for (int i = 0; i < 5; i++) {
        const char *id = bad[i];
        uint8_t *buf = NULL;
        size_t len;
        PK_CHECK(f, pk_record_encode(&buf, &len, id, 2, 2, PK_IMG_RGB8, rgb, sizeof rgb, lab,
                                     &e) == PK_EINVAL && pk_record_id_problem(id),
                 "id '%s' encoded", bad[i]);
        free(buf);
    }
    PK_CHECK(f, !pk_record_id_problem("2007_000032") && !pk_record_id_problem(".hidden.x"),
             "a good id refused");
    /* Same length ids, patched in after encoding. */
    const char *patched[] = {"a/b", "..."};
    for (int i = 0; i < 2; i++) {
        uint8_t *buf = NULL;
        size_t len;
        pk_record_view v;
        if (pk_record_encode(&buf, &len, "abc", 2, 2, PK_IMG_RGB8, rgb, sizeof rgb, lab, &e)) {
            f++;
            continue;
        }
        memcpy(buf + 36, patched[i], 3);
        pk_put32(buf + len - 4, pk_crc32(buf, len - 4));
        int rc = pk_record_parse(&v, buf, len, &e);
        PK_CHECK(f, rc == PK_EFORMAT && strstr(e.msg, "bad record id"), "parsed id '%s': %s",
                 patched[i], e.msg);
        free(buf);
    }
    return f;
}

int main(void)
{
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    int f = 0;
    f += test_jpeg();
    f += test_png_labels();
    f += test_record(PK_IMG_RGB8);
    f += test_record(PK_IMG_JPEG);
    f += test_meta();
    f += test_record_ids();
    const char *names[] = {"l.png", "rgb.png", "rgb2.png", "g.png"};
    for (int i = 0; i < 4; i++)
        unlink(path_in(names[i]));
    rmdir(g_dir);
    if (f)
        fprintf(stderr, "test_data_record: %d failures\n", f);
    return f != 0;
}
