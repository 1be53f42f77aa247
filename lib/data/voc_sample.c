#include "data/voc_sample.h"

#include <stdlib.h>
#include <string.h>
#include "store/record.h"

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int pk_colour_map_init(pk_colour_map *m, const uint8_t (*palette)[3], int classes, pk_err *e)
{
    if (classes < 1 || classes > PK_CLASSES_MAX)
        return pk_fail(e, PK_EINVAL, "class count %d outside 1..%d", classes, PK_CLASSES_MAX);
    /* pack colour and index in one word so one sort orders both */
    uint32_t both[256];
    int n = 0;
    for (int i = 0; i < 256; i++)
        if (i < classes || i == PK_IGNORE_LABEL)
            both[n++] = (uint32_t)palette[i][0] << 24 | (uint32_t)palette[i][1] << 16 |
                        (uint32_t)palette[i][2] << 8 | (uint32_t)i;
    qsort(both, (size_t)n, sizeof both[0], cmp_u32);
    for (int i = 0; i < n; i++) {
        m->rgb[i] = both[i] >> 8;
        m->index[i] = (uint8_t)both[i];
        if (i && m->rgb[i] == m->rgb[i - 1])
            return pk_fail(e, PK_EINVAL, "palette colours of classes %d and %d are equal",
                           m->index[i - 1], m->index[i]);
    }
    m->n = n;
    return PK_OK;
}

static int lookup(const pk_colour_map *m, uint32_t rgb)
{
    int lo = 0, hi = m->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (m->rgb[mid] == rgb)
            return m->index[mid];
        if (m->rgb[mid] < rgb)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

int pk_label_to_indices(pk_image *label, int kind, const pk_colour_map *m, int classes,
                        pk_err *e)
{
    size_t n = (size_t)label->w * label->h;
    if (kind == PK_PNG_RGB) {
        if (!m)
            return pk_fail(e, PK_EINVAL, "RGB label but no colour map");
        uint32_t last = 0xffffffffu;
        int last_idx = -1;
        for (size_t i = 0; i < n; i++) {
            const uint8_t *p = label->px + 3 * i;
            uint32_t rgb = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
            if (rgb != last) { /* labels are runs of one colour: cache the last hit */
                last = rgb;
                last_idx = lookup(m, rgb);
            }
            if (last_idx < 0)
                return pk_fail(e, PK_EFORMAT,
                               "label colour (%u,%u,%u) at (%zu,%zu) is not a class colour",
                               p[0], p[1], p[2], i % (size_t)label->w, i / (size_t)label->w);
            label->px[i] = (uint8_t)last_idx; /* in place: i < 3*i */
        }
        label->c = 1;
        uint8_t *shrunk = realloc(label->px, n);
        if (shrunk)
            label->px = shrunk;
    } else if (label->c != 1) {
        return pk_fail(e, PK_EINVAL, "label with %d channels", label->c);
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t v = label->px[i];
        if (v >= classes && v != PK_IGNORE_LABEL)
            return pk_fail(e, PK_EFORMAT,
                           "label value %u at (%zu,%zu) out of range (classes %d, ignore 255)", v,
                           i % (size_t)label->w, i / (size_t)label->w, classes);
    }
    return PK_OK;
}

int pk_voc_sample_encode(uint8_t **out, size_t *out_len, const pk_voc_entry *entry,
                         int image_enc, const pk_colour_map *m, int classes, pk_err *e)
{
    uint8_t *jpeg = NULL;
    size_t jpeg_len = 0;
    pk_image img = {0}, lab = {0};
    int kind = 0;
    int rc = pk_file_read(&jpeg, &jpeg_len, entry->image, e);
    if (rc == PK_OK) {
        rc = pk_jpeg_decode(&img, jpeg, jpeg_len, e);
        if (rc != PK_OK)
            pk_wrap(e, "%s", entry->image);
    }
    if (rc == PK_OK) /* the label's size is checked before it is decoded */
        rc = pk_png_read_label_sized(&lab, &kind, entry->label, img.w, img.h, e);
    if (rc == PK_OK) {
        rc = pk_label_to_indices(&lab, kind, m, classes, e);
        if (rc != PK_OK)
            pk_wrap(e, "%s", entry->label);
    }
    if (rc == PK_OK) {
        if (image_enc == PK_IMG_JPEG)
            rc = pk_record_encode(out, out_len, entry->id, img.w, img.h, PK_IMG_JPEG, jpeg,
                                  jpeg_len, lab.px, e);
        else
            rc = pk_record_encode(out, out_len, entry->id, img.w, img.h, PK_IMG_RGB8, img.px,
                                  (size_t)img.w * img.h * 3, lab.px, e);
    }
    free(jpeg);
    pk_image_free(&img);
    pk_image_free(&lab);
    return rc;
}
