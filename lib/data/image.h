/* Image I/O: JPEG through libjpeg-turbo (libjpeg62 API) and PNG through
 * libpng. Both libraries report errors by longjmp; every entry point here
 * catches them and returns PK_EFORMAT (corrupt or truncated data) or PK_EIO
 * (file system) with a one-line message, never exits.
 *
 * Images are 8-bit, interleaved HWC: c == 3 for RGB, c == 1 for label
 * indices or grey. */
#ifndef PSPKD_IMAGE_H
#define PSPKD_IMAGE_H

#include <stddef.h>
#include <stdint.h>
#include "core/err.h"

typedef struct pk_image {
    int w, h, c;
    uint8_t *px; /* w*h*c bytes, row-major, channels interleaved */
} pk_image;

/* The largest image any decoder here accepts: at most PK_IMAGE_MAX_PIXELS
 * pixels (8192 x 8192) and PK_IMAGE_MAX_SIDE per side. The size is checked
 * from the file's header before anything is allocated or decoded, so a
 * small file that claims a huge image costs nothing (PK_EFORMAT "image of
 * WxH exceeds the limit ..."). */
#define PK_IMAGE_MAX_PIXELS (8192L * 8192L)
#define PK_IMAGE_MAX_SIDE 65535
/* PK_EFORMAT unless 1 <= w, h <= PK_IMAGE_MAX_SIDE and w*h <= PK_IMAGE_MAX_PIXELS. */
int pk_image_check_size(unsigned long w, unsigned long h, pk_err *e);

/* Allocates im->px (w*h*c bytes, uninitialised). */
int pk_image_alloc(pk_image *im, int w, int h, int c, pk_err *e);
/* Frees px and zeroes the struct; safe on a zeroed struct. */
void pk_image_free(pk_image *im);

/* Whole file into a malloc'd buffer (*buf owned by the caller). */
int pk_file_read(uint8_t **buf, size_t *len, const char *path, pk_err *e);
/* Writes buf to path atomically (temp file + rename, lib/core/atomic_file.h). */
int pk_file_write(const char *path, const void *buf, size_t len, pk_err *e);

/* JPEG -> RGB8 (grey JPEGs are expanded to RGB). Allocates im->px. */
int pk_jpeg_decode(pk_image *im, const uint8_t *buf, size_t len, pk_err *e);
int pk_jpeg_read(pk_image *im, const char *path, pk_err *e);
/* Reads only the header: the size a decode would produce; PK_EFORMAT, as
 * the decode, for a size outside pk_image_check_size's limits. */
int pk_jpeg_size(int *w, int *h, const uint8_t *buf, size_t len, pk_err *e);
/* Decodes into a caller buffer of exactly w*h*3 bytes; PK_EFORMAT when the
 * JPEG is not w x h. */
int pk_jpeg_decode_into(uint8_t *rgb, int w, int h, const uint8_t *buf, size_t len,
                        pk_err *e);
/* RGB8 (c == 3) or grey (c == 1) -> JPEG; *out is malloc'd. quality 1..100. */
int pk_jpeg_encode(uint8_t **out, size_t *len, const pk_image *im, int quality, pk_err *e);
int pk_jpeg_write(const char *path, const pk_image *im, int quality, pk_err *e);

/* What a PNG held, as pk_png_read_label returns it. */
enum pk_png_kind {
    PK_PNG_PALETTE = 1, /* palette PNG: c == 1, raw palette indices */
    PK_PNG_GREY = 2,    /* 8-bit grey: c == 1, the grey values as indices */
    PK_PNG_RGB = 3      /* RGB or RGBA: c == 3 RGB (alpha dropped) */
};

/* Reads a label PNG without ever converting palette indices to colours or
 * grey: palette PNGs come back as their indices (bit depths 1..8 unpacked to
 * one byte per pixel), 8-bit grey as values, RGB/RGBA as RGB for the caller
 * to map through the VOC palette. 16-bit and grey+alpha PNGs are
 * PK_EFORMAT. *kind may be NULL. Allocates im->px. */
int pk_png_read_label(pk_image *im, int *kind, const char *path, pk_err *e);
/* The same for a label that must be w x h (an image's): a PNG of another
 * size is PK_EFORMAT "label WxH but image WxH", checked from its header
 * before decoding. */
int pk_png_read_label_sized(pk_image *im, int *kind, const char *path, int w, int h,
                            pk_err *e);
int pk_png_decode_label(pk_image *im, int *kind, const uint8_t *buf, size_t len, pk_err *e);

/* Writes indices (c == 1) as an 8-bit palette PNG with npal (1..256)
 * entries of pal. The output is byte-for-byte deterministic. */
int pk_png_write_palette(const char *path, const pk_image *idx, const uint8_t (*pal)[3],
                         int npal, pk_err *e);
/* Writes an RGB8 (c == 3) or grey (c == 1) PNG. */
int pk_png_write(const char *path, const pk_image *im, pk_err *e);

#endif
