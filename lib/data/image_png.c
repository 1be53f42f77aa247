/* PNG read/write with libpng. libpng reports errors through png_error,
 * which we route to a longjmp back here (never libpng's stderr printer).
 *
 * Labels: palette PNGs are read as raw indices. We never call
 * png_set_palette_to_rgb / png_set_expand / rgb_to_gray: converting a VOC
 * palette label to colours or grey loses the class ids (the classic semseg
 * mistake). */
#include "data/image.h"

#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <png.h>

struct png_err {
    char msg[256];
};

static void on_error(png_structp png, png_const_charp msg)
{
    struct png_err *pe = png_get_error_ptr(png);
    snprintf(pe->msg, sizeof pe->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg; /* benign (e.g. unknown ancillary chunk): ignored */
}

struct mem_in {
    const uint8_t *p;
    size_t len, pos;
};

static void mem_read(png_structp png, png_bytep out, size_t n)
{
    struct mem_in *in = png_get_io_ptr(png);
    if (n > in->len - in->pos)
        png_error(png, "truncated file");
    memcpy(out, in->p + in->pos, n);
    in->pos += n;
}

/* want_w, want_h: the size the label must have (0: any). */
static int decode_label(pk_image *im, int *kind, const uint8_t *buf, size_t len, int want_w,
                        int want_h, pk_err *e)
{
    if (len < 8 || png_sig_cmp(buf, 0, 8))
        return pk_fail(e, PK_EFORMAT, "not a PNG file");
    struct png_err pe = {""};
    struct mem_in in = {buf, len, 0};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &pe, on_error, on_warning);
    if (!png)
        return pk_fail(e, PK_ENOMEM, "out of memory (libpng)");
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return pk_fail(e, PK_ENOMEM, "out of memory (libpng)");
    }
    uint8_t *volatile px = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(px);
        free(rows);
        return pk_fail(e, PK_EFORMAT, "corrupt PNG: %s", pe.msg);
    }
    png_set_read_fn(png, &in, mem_read);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    /* From the header, before any row is decoded or allocated. */
    int bad = PK_OK;
    if (want_w && (w != (png_uint_32)want_w || h != (png_uint_32)want_h))
        bad = pk_fail(e, PK_EFORMAT, "label %ux%u but image %dx%d", (unsigned)w, (unsigned)h,
                      want_w, want_h);
    else
        bad = pk_image_check_size(w, h, e);
    if (bad) {
        png_destroy_read_struct(&png, &info, NULL);
        return bad;
    }
    int depth = png_get_bit_depth(png, info), ctype = png_get_color_type(png, info);
    int k, c;
    const char *unsupported = NULL;
    switch (ctype) {
    case PNG_COLOR_TYPE_PALETTE:
        k = PK_PNG_PALETTE;
        c = 1;
        break;
    case PNG_COLOR_TYPE_GRAY:
        k = PK_PNG_GREY;
        c = 1;
        if (depth == 16)
            unsupported = "16-bit grey";
        break;
    case PNG_COLOR_TYPE_RGB:
    case PNG_COLOR_TYPE_RGB_ALPHA:
        k = PK_PNG_RGB;
        c = 3;
        if (depth == 16)
            unsupported = "16-bit colour";
        break;
    default:
        k = 0;
        c = 0;
        unsupported = "grey+alpha";
        break;
    }
    if (unsupported) {
        png_destroy_read_struct(&png, &info, NULL);
        return pk_fail(e, PK_EFORMAT, "unsupported label PNG (%s)", unsupported);
    }
    if (depth < 8)
        png_set_packing(png); /* one byte per pixel, values unscaled */
    if (ctype == PNG_COLOR_TYPE_RGB_ALPHA)
        png_set_strip_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t stride = (size_t)w * c;
    if (png_get_rowbytes(png, info) != stride)
        png_error(png, "unexpected row size after transforms");
    px = malloc(stride * h);
    rows = malloc(sizeof(png_bytep) * h);
    if (!px || !rows)
        png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < h; y++)
        rows[y] = px + stride * y;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    im->w = (int)w;
    im->h = (int)h;
    im->c = c;
    im->px = px;
    if (kind)
        *kind = k;
    return PK_OK;
}

int pk_png_decode_label(pk_image *im, int *kind, const uint8_t *buf, size_t len, pk_err *e)
{
    return decode_label(im, kind, buf, len, 0, 0, e);
}

int pk_png_read_label(pk_image *im, int *kind, const char *path, pk_err *e)
{
    return pk_png_read_label_sized(im, kind, path, 0, 0, e);
}

int pk_png_read_label_sized(pk_image *im, int *kind, const char *path, int w, int h,
                            pk_err *e)
{
    uint8_t *buf;
    size_t len;
    int rc = pk_file_read(&buf, &len, path, e);
    if (rc != PK_OK)
        return rc;
    rc = decode_label(im, kind, buf, len, w, h, e);
    free(buf);
    if (rc != PK_OK)
        pk_wrap(e, "%s", path);
    return rc;
}

struct mem_out {
    uint8_t *p;
    size_t len, cap;
};

static void mem_write(png_structp png, png_bytep data, size_t n)
{
    struct mem_out *o = png_get_io_ptr(png);
    if (n > o->cap - o->len) {
        size_t cap = o->cap ? o->cap : 4096;
        while (n > cap - o->len)
            cap *= 2;
        uint8_t *q = realloc(o->p, cap);
        if (!q)
            png_error(png, "out of memory");
        o->p = q;
        o->cap = cap;
    }
    memcpy(o->p + o->len, data, n);
    o->len += n;
}

static void mem_flush(png_structp png) { (void)png; }

/* Encodes im as PNG (palette when pal != NULL) into memory, then writes the
 * file atomically. */
static int write_png(const char *path, const pk_image *im, const uint8_t (*pal)[3], int npal,
                     pk_err *e)
{
    int ctype;
    if (!im || !im->px || im->w <= 0 || im->h <= 0)
        return pk_fail(e, PK_EINVAL, "%s: empty image", path);
    if (pal) {
        if (im->c != 1 || npal < 1 || npal > 256)
            return pk_fail(e, PK_EINVAL, "%s: palette PNG needs 1 channel and 1..256 colours",
                           path);
        ctype = PNG_COLOR_TYPE_PALETTE;
    } else if (im->c == 3) {
        ctype = PNG_COLOR_TYPE_RGB;
    } else if (im->c == 1) {
        ctype = PNG_COLOR_TYPE_GRAY;
    } else {
        return pk_fail(e, PK_EINVAL, "%s: cannot write a %d-channel PNG", path, im->c);
    }
    struct png_err pe = {""};
    struct mem_out out = {NULL, 0, 0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &pe, on_error, on_warning);
    if (!png)
        return pk_fail(e, PK_ENOMEM, "out of memory (libpng)");
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return pk_fail(e, PK_ENOMEM, "out of memory (libpng)");
    }
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(rows);
        free(out.p);
        return pk_fail(e, PK_EIO, "%s: PNG encode: %s", path, pe.msg);
    }
    png_set_write_fn(png, &out, mem_write, mem_flush);
    png_set_IHDR(png, info, (png_uint_32)im->w, (png_uint_32)im->h, 8, ctype,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (pal) {
        png_color colours[256];
        for (int i = 0; i < npal; i++) {
            colours[i].red = pal[i][0];
            colours[i].green = pal[i][1];
            colours[i].blue = pal[i][2];
        }
        png_set_PLTE(png, info, colours, npal);
    }
    rows = malloc(sizeof(png_bytep) * im->h);
    if (!rows)
        png_error(png, "out of memory");
    size_t stride = (size_t)im->w * im->c;
    for (int y = 0; y < im->h; y++)
        rows[y] = im->px + stride * y;
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    free(rows);
    int rc = pk_file_write(path, out.p, out.len, e);
    free(out.p);
    return rc;
}

int pk_png_write_palette(const char *path, const pk_image *idx, const uint8_t (*pal)[3],
                         int npal, pk_err *e)
{
    if (!pal)
        return pk_fail(e, PK_EINVAL, "%s: no palette", path);
    return write_png(path, idx, pal, npal, e);
}

int pk_png_write(const char *path, const pk_image *im, pk_err *e)
{
    return write_png(path, im, NULL, 0, e);
}
