/* JPEG decode/encode with libjpeg-turbo's libjpeg62 API. libjpeg calls
 * error_exit (which would exit()) on fatal errors; ours longjmps back so the
 * caller gets PK_EFORMAT. Warnings that mean the pixels are wrong (truncated
 * file, bad entropy data) are fatal too: libjpeg would otherwise hand back a
 * grey-filled image without complaint. */
#include "data/image.h"

#include <jerror.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>

struct jerr {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
};

static void jerr_exit(j_common_ptr cinfo)
{
    struct jerr *j = (struct jerr *)cinfo->err;
    j->pub.format_message(cinfo, j->msg);
    longjmp(j->jump, 1);
}

static int warning_is_fatal(int code)
{
    switch (code) {
    case JWRN_JPEG_EOF:
    case JWRN_HIT_MARKER:
    case JWRN_HUFF_BAD_CODE:
    case JWRN_MUST_RESYNC:
    case JWRN_NOT_SEQUENTIAL:
        return 1;
    default:
        return 0;
    }
}

static void jerr_emit(j_common_ptr cinfo, int level)
{
    struct jerr *j = (struct jerr *)cinfo->err;
    if (level < 0 && warning_is_fatal(j->pub.msg_code)) {
        j->pub.format_message(cinfo, j->msg);
        longjmp(j->jump, 1);
    }
    /* other warnings and trace messages are ignored (never printed) */
}

static void jerr_init(struct jerr *j)
{
    jpeg_std_error(&j->pub);
    j->pub.error_exit = jerr_exit;
    j->pub.emit_message = jerr_emit;
    j->msg[0] = '\0';
}

/* Decodes into dst (w*h*3) when dst != NULL and the size matches want_w x
 * want_h; otherwise allocates into im. Shared by the three decode calls. */
static int decode(pk_image *im, uint8_t *dst, int want_w, int want_h, int header_only,
                  int *out_w, int *out_h, const uint8_t *buf, size_t len, pk_err *e)
{
    struct jpeg_decompress_struct cinfo;
    struct jerr jerr;
    uint8_t *volatile px = NULL;
    volatile int rc = PK_OK;

    if (len == 0)
        return pk_fail(e, PK_EFORMAT, "corrupt JPEG: empty data");
    jerr_init(&jerr);
    cinfo.err = &jerr.pub;
    if (setjmp(jerr.jump)) {
        jpeg_destroy_decompress(&cinfo);
        if (!dst)
            free(px);
        return pk_fail(e, PK_EFORMAT, "corrupt JPEG: %s", jerr.msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, buf, (unsigned long)len);
    jpeg_read_header(&cinfo, TRUE);
    cinfo.out_color_space = JCS_RGB;
    jpeg_calc_output_dimensions(&cinfo);
    int w = (int)cinfo.output_width, h = (int)cinfo.output_height;
    if (out_w)
        *out_w = w;
    if (out_h)
        *out_h = h;
    /* Before header_only returns too: a caller sizes its buffer from
     * pk_jpeg_size, so a header claiming a huge image fails there. */
    if (pk_image_check_size((unsigned long)w, (unsigned long)h, e)) {
        jpeg_destroy_decompress(&cinfo);
        return PK_EFORMAT;
    }
    if (header_only) {
        jpeg_destroy_decompress(&cinfo);
        return PK_OK;
    }
    if (dst) {
        if (w != want_w || h != want_h) {
            jpeg_destroy_decompress(&cinfo);
            return pk_fail(e, PK_EFORMAT, "JPEG is %dx%d, expected %dx%d", w, h, want_w,
                           want_h);
        }
        px = dst;
    } else {
        px = malloc((size_t)w * h * 3);
        if (!px) {
            jpeg_destroy_decompress(&cinfo);
            return pk_fail(e, PK_ENOMEM, "out of memory for a %dx%d image", w, h);
        }
    }
    jpeg_start_decompress(&cinfo);
    if (cinfo.output_components != 3) {
        jpeg_abort_decompress(&cinfo);
        rc = pk_fail(e, PK_EFORMAT, "JPEG decodes to %d components, not RGB",
                     cinfo.output_components);
    } else {
        size_t stride = (size_t)w * 3;
        while (cinfo.output_scanline < cinfo.output_height) {
            JSAMPROW row = (JSAMPROW)(px + stride * cinfo.output_scanline);
            jpeg_read_scanlines(&cinfo, &row, 1);
        }
        jpeg_finish_decompress(&cinfo);
    }
    jpeg_destroy_decompress(&cinfo);
    if (rc != PK_OK) {
        if (!dst)
            free(px);
        return rc;
    }
    if (!dst) {
        im->w = w;
        im->h = h;
        im->c = 3;
        im->px = px;
    }
    return PK_OK;
}

int pk_jpeg_decode(pk_image *im, const uint8_t *buf, size_t len, pk_err *e)
{
    return decode(im, NULL, 0, 0, 0, NULL, NULL, buf, len, e);
}

int pk_jpeg_size(int *w, int *h, const uint8_t *buf, size_t len, pk_err *e)
{
    return decode(NULL, NULL, 0, 0, 1, w, h, buf, len, e);
}

int pk_jpeg_decode_into(uint8_t *rgb, int w, int h, const uint8_t *buf, size_t len,
                        pk_err *e)
{
    return decode(NULL, rgb, w, h, 0, NULL, NULL, buf, len, e);
}

int pk_jpeg_read(pk_image *im, const char *path, pk_err *e)
{
    uint8_t *buf;
    size_t len;
    int rc = pk_file_read(&buf, &len, path, e);
    if (rc != PK_OK)
        return rc;
    rc = pk_jpeg_decode(im, buf, len, e);
    free(buf);
    if (rc != PK_OK)
        pk_wrap(e, "%s", path);
    return rc;
}

int pk_jpeg_encode(uint8_t **out, size_t *len, const pk_image *im, int quality, pk_err *e)
{
    if (!im || !im->px || im->w <= 0 || im->h <= 0 || (im->c != 3 && im->c != 1))
        return pk_fail(e, PK_EINVAL, "JPEG encode needs an RGB or grey image");
    if (quality < 1 || quality > 100)
        return pk_fail(e, PK_EINVAL, "JPEG quality %d outside 1..100", quality);
    struct jpeg_compress_struct cinfo;
    struct jerr jerr;
    unsigned char *volatile mem = NULL;
    unsigned long mem_len = 0;

    jerr_init(&jerr);
    cinfo.err = &jerr.pub;
    if (setjmp(jerr.jump)) {
        jpeg_destroy_compress(&cinfo);
        free(mem);
        return pk_fail(e, PK_EFORMAT, "JPEG encode: %s", jerr.msg);
    }
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, (unsigned char **)&mem, &mem_len);
    cinfo.image_width = (JDIMENSION)im->w;
    cinfo.image_height = (JDIMENSION)im->h;
    cinfo.input_components = im->c;
    cinfo.in_color_space = im->c == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    size_t stride = (size_t)im->w * im->c;
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(im->px + stride * cinfo.next_scanline);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    *out = mem;
    *len = mem_len;
    return PK_OK;
}

int pk_jpeg_write(const char *path, const pk_image *im, int quality, pk_err *e)
{
    uint8_t *buf;
    size_t len;
    int rc = pk_jpeg_encode(&buf, &len, im, quality, e);
    if (rc != PK_OK)
        return rc;
    rc = pk_file_write(path, buf, len, e);
    free(buf);
    return rc;
}
