/* Pack records: encode, validate-and-parse, image decode, metadata. The
 * layouts are in record.h and pspkd-data(5). Integers are written byte by
 * byte (little-endian) so the format does not depend on the host. */
#include "store/record.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/le_bytes.h"
#include "core/rng.h"
#include "store/frame.h"

#define REC_FIXED 36 /* header bytes before the id */
#define STR_(x) #x
#define STR(x) STR_(x)
#define ID_MAX_STR STR(PK_RECORD_ID_MAX)


const char *pk_record_id_problem(const char *id)
{
    size_t n = strlen(id);
    if (n < 1 || n > PK_RECORD_ID_MAX)
        return "must be 1.." ID_MAX_STR " bytes";
    if (!pk_printable(id, n))
        return "holds a control character";
    if (strchr(id, '/'))
        return "holds a '/'";
    if (!strcmp(id, ".") || !strcmp(id, "..") || strstr(id, ".."))
        return "holds '..'";
    return NULL;
}

static int valid_id(const char *id, size_t n)
{
    return n == strlen(id) && !pk_record_id_problem(id);
}

int pk_record_encode(uint8_t **out, size_t *out_len, const char *id, int w, int h,
                     int image_enc, const uint8_t *image, size_t image_bytes,
                     const uint8_t *label, pk_err *e)
{
    size_t idlen = id ? strlen(id) : 0;
    if (!valid_id(id ? id : "", idlen))
        return pk_fail(e, PK_EINVAL, "record id %s", pk_record_id_problem(id ? id : ""));
    if (w <= 0 || h <= 0 || w > 65535 || h > 65535)
        return pk_fail(e, PK_EINVAL, "%s: bad size %dx%d", id, w, h);
    size_t npix = (size_t)w * h;
    if (image_enc == PK_IMG_RGB8) {
        if (image_bytes != npix * 3)
            return pk_fail(e, PK_EINVAL, "%s: RGB8 image of %zu bytes, expected %zu", id,
                           image_bytes, npix * 3);
    } else if (image_enc == PK_IMG_JPEG) {
        if (image_bytes == 0 || image_bytes > UINT32_MAX)
            return pk_fail(e, PK_EINVAL, "%s: bad JPEG length %zu", id, image_bytes);
    } else {
        return pk_fail(e, PK_EINVAL, "%s: unknown image encoding %d", id, image_enc);
    }
    if (npix > UINT32_MAX / 3)
        return pk_fail(e, PK_EINVAL, "%s: image too large", id);
    size_t hdr = REC_FIXED + idlen;
    size_t total = hdr + image_bytes + npix + 4;
    uint8_t *p = malloc(total);
    if (!p)
        return pk_fail(e, PK_ENOMEM, "%s: out of memory for a %zu-byte record", id, total);
    pk_frame_open(p, "PKDR", PK_RECORD_VERSION);
    pk_put16(p + 6, (uint32_t)hdr);
    pk_put32(p + 8, (uint32_t)w);
    pk_put32(p + 12, (uint32_t)h);
    p[16] = (uint8_t)image_enc;
    p[17] = PK_LBL_U8;
    pk_put16(p + 18, (uint32_t)idlen);
    pk_put32(p + 20, (uint32_t)image_bytes);
    pk_put32(p + 24, (uint32_t)npix);
    pk_put32(p + 28, 0);
    pk_put32(p + 32, 0);
    memcpy(p + REC_FIXED, id, idlen);
    memcpy(p + hdr, image, image_bytes);
    memcpy(p + hdr + image_bytes, label, npix);
    return pk_frame_seal(p, total, out, out_len);
}

int pk_record_parse(pk_record_view *v, const void *data, size_t len, pk_err *e)
{
    const uint8_t *p = data;
    if (len < REC_FIXED + 1 + 4)
        return pk_fail(e, PK_EFORMAT, "record too short (%zu bytes)", len);
    if (memcmp(p, "PKDR", 4))
        return pk_fail(e, PK_EFORMAT, "not a pspkd record (bad magic)");
    uint32_t ver = pk_get16(p + 4), hdr = pk_get16(p + 6), idlen = pk_get16(p + 18);
    if (ver != PK_RECORD_VERSION)
        return pk_fail(e, PK_EFORMAT, "record version %u, this build reads %d", ver,
                       PK_RECORD_VERSION);
    if (idlen == 0 || idlen > PK_RECORD_ID_MAX || hdr != REC_FIXED + idlen)
        return pk_fail(e, PK_EFORMAT, "bad record header (header %u bytes, id %u bytes)",
                       hdr, idlen);
    if ((size_t)hdr + 4 > len) /* the id must lie inside the value */
        return pk_fail(e, PK_EFORMAT, "record too short (%zu bytes) for its %u-byte header",
                       len, hdr);
    pk_record_header *h = &v->hdr;
    memset(h, 0, sizeof *h);
    memcpy(h->id, p + REC_FIXED, idlen);
    h->id[idlen] = '\0';
    if (!valid_id(h->id, idlen))
        return pk_fail(e, PK_EFORMAT, "bad record id (%s)",
                       strlen(h->id) != idlen ? "holds a NUL" : pk_record_id_problem(h->id));
    uint32_t w = pk_get32(p + 8), ht = pk_get32(p + 12);
    h->version = (int)ver;
    h->image_enc = p[16];
    h->label_enc = p[17];
    h->image_bytes = pk_get32(p + 20);
    h->label_bytes = pk_get32(p + 24);
    if (w == 0 || ht == 0 || w > 65535 || ht > 65535)
        return pk_fail(e, PK_EFORMAT, "%s: bad size %ux%u", h->id, w, ht);
    h->width = (int)w;
    h->height = (int)ht;
    uint64_t npix = (uint64_t)w * ht;
    if (h->label_enc != PK_LBL_U8)
        return pk_fail(e, PK_EFORMAT, "%s: unknown label encoding %d", h->id, h->label_enc);
    if (h->label_bytes != npix)
        return pk_fail(e, PK_EFORMAT, "%s: label of %u bytes for %ux%u", h->id,
                       h->label_bytes, w, ht);
    if (h->image_enc == PK_IMG_RGB8) {
        if (h->image_bytes != npix * 3)
            return pk_fail(e, PK_EFORMAT, "%s: RGB8 image of %u bytes for %ux%u", h->id,
                           h->image_bytes, w, ht);
    } else if (h->image_enc == PK_IMG_JPEG) {
        if (h->image_bytes == 0)
            return pk_fail(e, PK_EFORMAT, "%s: empty JPEG", h->id);
    } else {
        return pk_fail(e, PK_EFORMAT, "%s: unknown image encoding %d", h->id, h->image_enc);
    }
    uint64_t want = (uint64_t)hdr + h->image_bytes + h->label_bytes + 4;
    if (want != len)
        return pk_fail(e, PK_EFORMAT, "%s: record is %zu bytes, header says %llu", h->id, len,
                       (unsigned long long)want);
    h->crc = pk_get32(p + len - 4);
    uint32_t crc = pk_crc32(p, len - 4);
    if (crc != h->crc)
        return pk_fail(e, PK_EFORMAT, "%s: CRC mismatch (stored %08x, computed %08x)", h->id,
                       h->crc, crc);
    v->image = p + hdr;
    v->label = p + hdr + h->image_bytes;
    return PK_OK;
}

int pk_record_image_into(uint8_t *rgb, const pk_record_view *v, pk_err *e)
{
    const pk_record_header *h = &v->hdr;
    if (h->image_enc == PK_IMG_RGB8) {
        memcpy(rgb, v->image, (size_t)h->width * h->height * 3);
        return PK_OK;
    }
    int rc = pk_jpeg_decode_into(rgb, h->width, h->height, v->image, h->image_bytes, e);
    if (rc != PK_OK)
        pk_wrap(e, "%s", h->id);
    return rc;
}

int pk_record_image(pk_image *im, const pk_record_view *v, pk_err *e)
{
    int rc = pk_image_alloc(im, v->hdr.width, v->hdr.height, 3, e);
    if (rc != PK_OK)
        return rc;
    rc = pk_record_image_into(im->px, v, e);
    if (rc != PK_OK)
        pk_image_free(im);
    return rc;
}

int pk_record_key(char *key, size_t cap, int index, const char *id, pk_err *e)
{
    if (index < 0 || index > 99999999)
        return pk_fail(e, PK_EINVAL, "record index %d outside 0..99999999", index);
    int n = snprintf(key, cap, "%08d_%s", index, id);
    if (n < 0 || (size_t)n >= cap)
        return pk_fail(e, PK_EINVAL, "%s: key too long", id);
    return PK_OK;
}

/* ---- metadata ---- */

#define META_FIXED (4 + 2 + 2 + 4 + 4 + 4 + 8 + 768)

int pk_meta_encode(uint8_t **out, size_t *out_len, const pk_meta *m, pk_err *e)
{
    if (m->classes < 1 || m->classes > PK_CLASSES_MAX)
        return pk_fail(e, PK_EINVAL, "class count %d outside 1..%d", m->classes,
                       PK_CLASSES_MAX);
    if (m->count < 0)
        return pk_fail(e, PK_EINVAL, "negative record count");
    uint32_t flags = m->unlabeled ? PK_META_UNLABELED : 0;
    size_t total = META_FIXED + 4 + (flags ? 4 : 0);
    for (int i = 0; i < m->classes; i++)
        total += 1 + strnlen(m->names[i], PK_CLASS_NAME_MAX);
    uint8_t *p = malloc(total);
    if (!p)
        return pk_fail(e, PK_ENOMEM, "out of memory");
    pk_frame_open(p, "PKDM", PK_META_VERSION);
    pk_put16(p + 6, PK_RECORD_VERSION);
    pk_put32(p + 8, (uint32_t)m->count);
    pk_put32(p + 12, (uint32_t)m->classes);
    pk_put32(p + 16, (uint32_t)m->image_enc);
    pk_put64(p + 20, m->pack_id);
    memcpy(p + 28, m->palette, 768);
    size_t off = META_FIXED;
    for (int i = 0; i < m->classes; i++) {
        size_t n = strnlen(m->names[i], PK_CLASS_NAME_MAX);
        p[off++] = (uint8_t)n;
        memcpy(p + off, m->names[i], n);
        off += n;
    }
    if (flags)
        pk_put32(p + off, flags);
    return pk_frame_seal(p, total, out, out_len);
}

/* The optional flags word after the class names (rest: the bytes left). */
static int meta_flags(pk_meta *m, const uint8_t *rest, size_t n, pk_err *e)
{
    if (n == 0)
        return PK_OK;
    if (n != 4)
        return pk_fail(e, PK_EFORMAT, "metadata: %zu trailing bytes", n);
    uint32_t flags = pk_get32(rest);
    if (flags & ~PK_META_UNLABELED)
        return pk_fail(e, PK_EFORMAT, "metadata: unknown flags %08x", flags);
    if (!flags)
        return pk_fail(e, PK_EFORMAT, "metadata: a flags word with no flag");
    m->unlabeled = (flags & PK_META_UNLABELED) != 0;
    return PK_OK;
}

int pk_meta_decode(pk_meta *m, const void *data, size_t len, pk_err *e)
{
    const uint8_t *p = data;
    memset(m, 0, sizeof *m);
    int rc = pk_frame_check(p, len, META_FIXED + 4, "PKDM", PK_META_VERSION, "metadata", e);
    if (rc)
        return rc;
    m->version = PK_META_VERSION;
    m->record_version = (int)pk_get16(p + 6);
    uint32_t count = pk_get32(p + 8), classes = pk_get32(p + 12), enc = pk_get32(p + 16);
    if (count > 99999999u)
        return pk_fail(e, PK_EFORMAT, "metadata: bad record count %u", count);
    if (classes < 1 || classes > PK_CLASSES_MAX)
        return pk_fail(e, PK_EFORMAT, "metadata: class count %u outside 1..%d", classes,
                       PK_CLASSES_MAX);
    if (enc != PK_IMG_RGB8 && enc != PK_IMG_JPEG)
        return pk_fail(e, PK_EFORMAT, "metadata: unknown image encoding %u", enc);
    m->count = (int)count;
    m->classes = (int)classes;
    m->image_enc = (int)enc;
    m->pack_id = pk_get64(p + 20);
    memcpy(m->palette, p + 28, 768);
    size_t off = META_FIXED, end = len - 4;
    for (uint32_t i = 0; i < classes; i++) {
        if (off >= end)
            return pk_fail(e, PK_EFORMAT, "metadata: class names truncated");
        size_t n = p[off++];
        if (n > PK_CLASS_NAME_MAX || n > end - off)
            return pk_fail(e, PK_EFORMAT, "metadata: bad class name %u", i);
        memcpy(m->names[i], p + off, n);
        m->names[i][n] = '\0';
        off += n;
    }
    return meta_flags(m, p + off, end - off, e);
}

int pk_record_check_labels(const pk_record_view *v, int classes, pk_err *e)
{
    size_t n = (size_t)v->hdr.width * v->hdr.height;
    for (size_t i = 0; i < n; i++)
        if (v->label[i] >= classes && v->label[i] != PK_IGNORE_LABEL)
            return pk_fail(e, PK_EFORMAT, "label value %u at (%zu, %zu) with %d classes",
                           v->label[i], i % (size_t)v->hdr.width, i / (size_t)v->hdr.width,
                           classes);
    return PK_OK;
}

void pk_pack_id_add(uint64_t *id, const char *key, uint32_t record_crc)
{
    uint32_t kc = pk_crc32((const uint8_t *)key, strlen(key));
    *id = pk_hash64(*id ^ ((uint64_t)kc << 32 | record_crc));
}
