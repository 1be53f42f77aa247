/* One VOC sample (JPEG image + label PNG) read, validated and encoded as a
 * pack record: what voc-pack does per list entry. */
#ifndef PSPKD_VOC_SAMPLE_H
#define PSPKD_VOC_SAMPLE_H

#include <stddef.h>
#include <stdint.h>
#include "core/err.h"
#include "data/image.h"
#include "data/voc_list.h"

/* RGB colour -> class index lookup for RGB-coloured label PNGs: the first
 * `classes` palette entries plus 255 (VOC's border colour). */
typedef struct pk_colour_map {
    int n;
    uint32_t rgb[256]; /* 0xRRGGBB, sorted */
    uint8_t index[256];
} pk_colour_map;

/* Fails (PK_EINVAL) when two of those palette colours are equal. */
int pk_colour_map_init(pk_colour_map *m, const uint8_t (*palette)[3], int classes, pk_err *e);

/* Converts a label as read by pk_png_read_label into indices in place
 * (c becomes 1): RGB through the colour map (an unknown colour is
 * PK_EFORMAT), palette and grey kept as they are. Then checks every value
 * is < classes or 255. */
int pk_label_to_indices(pk_image *label, int kind, const pk_colour_map *m, int classes,
                        pk_err *e);

/* Reads entry's JPEG and label, checks them (decodable, same size, values
 * in range) and encodes a record storing the image as RGB8 or as the
 * original JPEG bytes (image_enc). Messages are "<what>" without the id;
 * the caller prefixes it. *out is malloc'd. */
int pk_voc_sample_encode(uint8_t **out, size_t *out_len, const pk_voc_entry *entry,
                         int image_enc, const pk_colour_map *m, int classes, pk_err *e);

/* The same for an image without a label (entry->label is not read): the
 * record's label plane is all PK_IGNORE_LABEL (255), so every reader of
 * packs works unchanged and no pixel of it enters a cross-entropy
 * (voc_image_sample.c). */
int pk_voc_image_encode(uint8_t **out, size_t *out_len, const pk_voc_entry *entry,
                        int image_enc, pk_err *e);

#endif
