/* Teacher-logits records, cache metadata, the file hash and the cache
 * reader. Layouts in logits_cache.h and pspkd-logits(5). Integers are
 * written byte by byte (little-endian) so the format does not depend on the
 * host. */
#include "core/le_bytes.h"
#include "store/logits_cache.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/half.h"
#include "store/frame.h"
#include "store/pack.h"
#include "store/record.h"

#define LREC_FIXED 48
#define LMETA_FIXED 48
#define DTYPE_F16 1
#define PLANES 2
#define DIM_MAX 65535

/* ---- geometry ---- */

int pk_pad8(int n) { return n + (8 - (n - 1) % 8) % 8; }

void pk_logits_geom_init(pk_logits_geom *g, int img_w, int img_h)
{
    memset(g, 0, sizeof *g);
    g->img_w = img_w;
    g->img_h = img_h;
    g->pad_w = pk_pad8(img_w);
    g->pad_h = pk_pad8(img_h);
    g->grid_w = (g->pad_w - 1) / PK_LOGITS_STRIDE + 1;
    g->grid_h = (g->pad_h - 1) / PK_LOGITS_STRIDE + 1;
    g->m[0] = 1.0f / PK_LOGITS_STRIDE;
    g->m[4] = 1.0f / PK_LOGITS_STRIDE;
}

/* ---- records ---- */

static int valid_key(const char *k, size_t n)
{
    return n >= 1 && n <= PK_LOGITS_KEY_MAX && pk_printable(k, n);
}

/* The header's size for a key of klen bytes: padded to an even size. */
static size_t header_bytes(size_t klen) { return LREC_FIXED + klen + (klen & 1); }

static void put_f16(uint8_t *p, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        pk_put16(p + 2 * i, pk_f32_to_f16(x[i]));
}

/* The first NaN or infinity among n fp16 values, or -1. */
static long first_nonfinite_f16(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((pk_get16(p + 2 * i) & 0x7c00u) == 0x7c00u)
            return (long)i;
    return -1;
}

static void get_f16(float *x, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = pk_f16_to_f32((uint16_t)pk_get16(p + 2 * i));
}

int pk_logits_encode(uint8_t **out, size_t *out_len, const char *key,
                     const pk_logits_geom *g, int classes, const float *main_logits,
                     const float *aux_logits, pk_err *e)
{
    size_t klen = key ? strlen(key) : 0;
    if (!valid_key(key ? key : "", klen))
        return pk_fail(e, PK_EINVAL, "logits key must be 1..%d printable bytes",
                       PK_LOGITS_KEY_MAX);
    if (g->img_w < 1 || g->img_h < 1 || g->img_w > DIM_MAX || g->img_h > DIM_MAX)
        return pk_fail(e, PK_EINVAL, "%s: bad image size %dx%d", key, g->img_w, g->img_h);
    pk_logits_geom want;
    pk_logits_geom_init(&want, g->img_w, g->img_h);
    if (want.pad_w != g->pad_w || want.pad_h != g->pad_h || want.grid_w != g->grid_w ||
        want.grid_h != g->grid_h)
        return pk_fail(e, PK_EINVAL, "%s: geometry does not follow pk_logits_geom_init", key);
    if (classes < 1 || classes > PK_CLASSES_MAX)
        return pk_fail(e, PK_EINVAL, "%s: class count %d outside 1..%d", key, classes,
                       PK_CLASSES_MAX);
    if (!main_logits || !aux_logits)
        return pk_fail(e, PK_EINVAL, "%s: main and aux logits are both required", key);
    size_t n = (size_t)g->grid_w * g->grid_h * classes;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(main_logits[i]) || !isfinite(aux_logits[i]) ||
            fabsf(main_logits[i]) > 65504.0f || fabsf(aux_logits[i]) > 65504.0f)
            return pk_fail(e, PK_EINVAL, "%s: the teacher's logits are not finite in fp16 "
                           "(element %zu: %g, aux %g)", key, i, main_logits[i], aux_logits[i]);
    size_t hdr = header_bytes(klen);
    size_t total = hdr + PLANES * n * 2 + 4;
    if (total > UINT32_MAX)
        return pk_fail(e, PK_EINVAL, "%s: logits record too large", key);
    uint8_t *p = calloc(1, total);
    if (!p)
        return pk_fail(e, PK_ENOMEM, "%s: out of memory for a %zu-byte record", key, total);
    pk_frame_open(p, "PKDL", PK_LOGITS_VERSION);
    pk_put16(p + 6, (uint32_t)hdr);
    pk_put32(p + 8, (uint32_t)g->img_w);
    pk_put32(p + 12, (uint32_t)g->img_h);
    pk_put32(p + 16, (uint32_t)g->pad_w);
    pk_put32(p + 20, (uint32_t)g->pad_h);
    pk_put32(p + 24, (uint32_t)g->grid_w);
    pk_put32(p + 28, (uint32_t)g->grid_h);
    pk_put32(p + 32, (uint32_t)classes);
    pk_put16(p + 36, PK_LOGITS_STRIDE);
    p[38] = DTYPE_F16;
    p[39] = PLANES;
    pk_put16(p + 40, (uint32_t)klen);
    memcpy(p + LREC_FIXED, key, klen);
    put_f16(p + hdr, main_logits, n);
    put_f16(p + hdr + 2 * n, aux_logits, n);
    return pk_frame_seal(p, total, out, out_len);
}

int pk_logits_parse(pk_logits_view *v, const void *data, size_t len, pk_err *e)
{
    const uint8_t *p = data;
    if (pk_frame_check(p, len, LREC_FIXED + 2 + 4, "PKDL", PK_LOGITS_VERSION, "logits record",
                       e))
        return PK_EFORMAT;
    uint32_t hdr = pk_get16(p + 6), klen = pk_get16(p + 40);
    uint32_t iw = pk_get32(p + 8), ih = pk_get32(p + 12), pw = pk_get32(p + 16), ph = pk_get32(p + 20);
    uint32_t gw = pk_get32(p + 24), gh = pk_get32(p + 28), k = pk_get32(p + 32);
    if (klen < 1 || klen > PK_LOGITS_KEY_MAX || hdr != header_bytes(klen))
        return pk_fail(e, PK_EFORMAT, "logits record: bad key length %u / header size %u",
                       klen, hdr);
    if ((size_t)hdr + 4 > len) /* the key and its pad byte must lie inside the value */
        return pk_fail(e, PK_EFORMAT, "logits record too short (%zu bytes) for its %u-byte "
                       "header", len, hdr);
    if (pk_get16(p + 36) != PK_LOGITS_STRIDE || p[38] != DTYPE_F16 || p[39] != PLANES)
        return pk_fail(e, PK_EFORMAT,
                       "logits record: stride %u, dtype %u, %u planes (expected %d, fp16, %d)",
                       pk_get16(p + 36), p[38], p[39], PK_LOGITS_STRIDE, PLANES);
    if (pk_get16(p + 42) || pk_get32(p + 44) || ((klen & 1) && p[LREC_FIXED + klen]))
        return pk_fail(e, PK_EFORMAT, "logits record: reserved bytes are not zero");
    if (iw < 1 || ih < 1 || iw > DIM_MAX || ih > DIM_MAX)
        return pk_fail(e, PK_EFORMAT, "logits record: bad image size %ux%u", iw, ih);
    pk_logits_geom g;
    pk_logits_geom_init(&g, (int)iw, (int)ih);
    if ((int)pw != g.pad_w || (int)ph != g.pad_h || (int)gw != g.grid_w || (int)gh != g.grid_h)
        return pk_fail(e, PK_EFORMAT,
                       "logits record: padded %ux%u / grid %ux%u do not fit a %ux%u image "
                       "(expected %dx%d / %dx%d)",
                       pw, ph, gw, gh, iw, ih, g.pad_w, g.pad_h, g.grid_w, g.grid_h);
    if (k < 1 || k > PK_CLASSES_MAX)
        return pk_fail(e, PK_EFORMAT, "logits record: class count %u outside 1..%d", k,
                       PK_CLASSES_MAX);
    size_t n = (size_t)gw * gh * k;
    if (len != hdr + PLANES * n * 2 + 4)
        return pk_fail(e, PK_EFORMAT, "logits record of %zu bytes, its header says %zu", len,
                       hdr + PLANES * n * 2 + 4);
    const char *key = (const char *)p + LREC_FIXED;
    if (!valid_key(key, klen))
        return pk_fail(e, PK_EFORMAT, "logits record: key is not printable");
    long bad = first_nonfinite_f16(p + hdr, PLANES * n);
    if (bad >= 0)
        return pk_fail(e, PK_EFORMAT, "logits record: non-finite %s logit (element %ld)",
                       (size_t)bad < n ? "main" : "aux", (size_t)bad < n ? bad : bad - (long)n);
    v->version = PK_LOGITS_VERSION;
    v->geom = g;
    v->classes = (int)k;
    memcpy(v->key, key, klen);
    v->key[klen] = '\0';
    v->main_f16 = p + hdr;
    v->aux_f16 = p + hdr + 2 * n;
    v->crc = pk_get32(p + len - 4);
    return PK_OK;
}

void pk_logits_view_to_f32(const pk_logits_view *v, float *main_logits, float *aux_logits)
{
    size_t n = (size_t)v->geom.grid_w * v->geom.grid_h * v->classes;
    if (main_logits)
        get_f16(main_logits, v->main_f16, n);
    if (aux_logits)
        get_f16(aux_logits, v->aux_f16, n);
}

/* ---- metadata ---- */

static int valid_name(const char *s)
{
    size_t n = strnlen(s, PK_LOGITS_NAME_MAX + 1);
    return n <= PK_LOGITS_NAME_MAX && pk_printable(s, n);
}

int pk_logits_meta_encode(uint8_t **out, size_t *out_len, const pk_logits_meta *m,
                          pk_err *e)
{
    if (m->classes < 1 || m->classes > PK_CLASSES_MAX)
        return pk_fail(e, PK_EINVAL, "class count %d outside 1..%d", m->classes,
                       PK_CLASSES_MAX);
    if (m->count < 0 || m->teacher_step < 0)
        return pk_fail(e, PK_EINVAL, "negative record count or teacher step");
    if (!valid_name(m->arch) || !valid_name(m->stem))
        return pk_fail(e, PK_EINVAL, "teacher arch/stem names must be 0..%d printable bytes",
                       PK_LOGITS_NAME_MAX);
    size_t na = strlen(m->arch), ns = strlen(m->stem);
    size_t total = LMETA_FIXED + 1 + na + 1 + ns + 4;
    uint8_t *p = calloc(1, total);
    if (!p)
        return pk_fail(e, PK_ENOMEM, "out of memory");
    pk_frame_open(p, "PKLM", PK_LOGITS_META_VERSION);
    pk_put16(p + 6, PK_LOGITS_VERSION);
    pk_put64(p + 8, m->teacher_hash);
    pk_put64(p + 16, m->pack_id);
    pk_put32(p + 24, (uint32_t)m->count);
    pk_put32(p + 28, (uint32_t)m->classes);
    pk_put32(p + 32, PK_LOGITS_STRIDE);
    pk_put64(p + 40, (uint64_t)m->teacher_step);
    size_t off = LMETA_FIXED;
    p[off++] = (uint8_t)na;
    memcpy(p + off, m->arch, na);
    off += na;
    p[off++] = (uint8_t)ns;
    memcpy(p + off, m->stem, ns);
    return pk_frame_seal(p, total, out, out_len);
}

static int get_name(char *dst, const uint8_t *p, size_t *off, size_t end, const char *what,
                    pk_err *e)
{
    if (*off >= end)
        return pk_fail(e, PK_EFORMAT, "logits metadata: %s truncated", what);
    size_t n = p[(*off)++];
    if (n > PK_LOGITS_NAME_MAX || n > end - *off)
        return pk_fail(e, PK_EFORMAT, "logits metadata: bad %s length %zu", what, n);
    memcpy(dst, p + *off, n);
    dst[n] = '\0';
    *off += n;
    if (!valid_name(dst))
        return pk_fail(e, PK_EFORMAT, "logits metadata: %s is not printable", what);
    return PK_OK;
}

int pk_logits_meta_decode(pk_logits_meta *m, const void *data, size_t len, pk_err *e)
{
    const uint8_t *p = data;
    memset(m, 0, sizeof *m);
    int rc = pk_frame_check(p, len, LMETA_FIXED + 2 + 4, "PKLM", PK_LOGITS_META_VERSION,
                            "logits metadata", e);
    if (rc)
        return rc;
    m->version = PK_LOGITS_META_VERSION;
    m->record_version = (int)pk_get16(p + 6);
    if (m->record_version != PK_LOGITS_VERSION)
        return pk_fail(e, PK_EFORMAT, "logits metadata: record version %d, this build reads %d",
                       m->record_version, PK_LOGITS_VERSION);
    m->teacher_hash = pk_get64(p + 8);
    m->pack_id = pk_get64(p + 16);
    uint32_t count = pk_get32(p + 24), classes = pk_get32(p + 28), stride = pk_get32(p + 32);
    uint64_t step = pk_get64(p + 40);
    if (count > 99999999u)
        return pk_fail(e, PK_EFORMAT, "logits metadata: bad record count %u", count);
    if (classes < 1 || classes > PK_CLASSES_MAX)
        return pk_fail(e, PK_EFORMAT, "logits metadata: class count %u outside 1..%d",
                       classes, PK_CLASSES_MAX);
    if (stride != PK_LOGITS_STRIDE)
        return pk_fail(e, PK_EFORMAT, "logits metadata: stride %u, expected %d", stride,
                       PK_LOGITS_STRIDE);
    if (pk_get32(p + 36) || step > (uint64_t)INT64_MAX / 2)
        return pk_fail(e, PK_EFORMAT, "logits metadata: bad reserved field or step");
    m->count = (int)count;
    m->classes = (int)classes;
    m->stride = (int)stride;
    m->teacher_step = (long)step;
    size_t off = LMETA_FIXED, end = len - 4;
    if (get_name(m->arch, p, &off, end, "teacher arch", e) ||
        get_name(m->stem, p, &off, end, "teacher stem", e))
        return e ? e->code : PK_EFORMAT;
    if (off != end)
        return pk_fail(e, PK_EFORMAT, "logits metadata: %zu trailing bytes", end - off);
    return PK_OK;
}

/* ---- file hash ---- */

void pk_fnv1a64(uint64_t *h, const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t x = *h;
    for (size_t i = 0; i < len; i++) {
        x ^= p[i];
        x *= 0x100000001b3ULL;
    }
    *h = x;
}

int pk_fnv1a64_file(uint64_t *h, const char *path, pk_err *e)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return pk_fail(e, errno == ENOENT ? PK_ENOTFOUND : PK_EIO, "%s: %s", path,
                       strerror(errno));
    enum { CHUNK = 1 << 20 };
    uint8_t *buf = malloc(CHUNK);
    if (!buf) {
        fclose(f);
        return pk_fail(e, PK_ENOMEM, "out of memory");
    }
    uint64_t x = PK_FNV1A64_INIT;
    size_t n;
    while ((n = fread(buf, 1, CHUNK, f)) > 0)
        pk_fnv1a64(&x, buf, n);
    int bad = ferror(f);
    free(buf);
    fclose(f);
    if (bad)
        return pk_fail(e, PK_EIO, "%s: read error", path);
    *h = x;
    return PK_OK;
}

/* ---- reading a cache ---- */

struct pk_logits_cache {
    pk_pack *p;
    pk_logits_meta meta;
};

void pk_logits_cache_close(pk_logits_cache *c)
{
    if (!c)
        return;
    pk_pack_close(c->p);
    free(c);
}

int pk_logits_cache_open(pk_logits_cache **out, const char *path, pk_err *e)
{
    *out = NULL;
    pk_logits_cache *c = calloc(1, sizeof *c);
    if (!c)
        return pk_fail(e, PK_ENOMEM, "out of memory");
    int rc = pk_pack_open_raw(&c->p, path, e); /* the message names the file */
    if (!rc) {
        size_t len;
        const void *m = pk_pack_meta_bytes(c->p, &len);
        if ((rc = pk_logits_meta_decode(&c->meta, m, len, e)))
            pk_wrap(e, "%s", path);
    }
    if (!rc)
        rc = pk_pack_check_count(c->p, c->meta.count, e);
    if (rc) {
        pk_logits_cache_close(c);
        return rc;
    }
    *out = c;
    return PK_OK;
}

const pk_logits_meta *pk_logits_cache_meta(const pk_logits_cache *c) { return &c->meta; }
const char *pk_logits_cache_path(const pk_logits_cache *c) { return pk_pack_path(c->p); }

int pk_logits_cache_check_pack(pk_logits_cache *c, const char *pack_path, pk_err *e)
{
    pk_pack *pack;
    int rc = pk_pack_open(&pack, pack_path, e); /* the message names the file */
    if (rc)
        return rc;
    const pk_meta *pm = pk_pack_meta(pack);
    const char *path = pk_logits_cache_path(c);
    if (pm->pack_id != c->meta.pack_id)
        rc = pk_fail(e, PK_EINVAL,
                     "%s was made from another data pack (pack id %016llx, %s has %016llx)",
                     path, (unsigned long long)c->meta.pack_id, pack_path,
                     (unsigned long long)pm->pack_id);
    else if (pm->classes != c->meta.classes)
        rc = pk_fail(e, PK_EINVAL, "%s has %d classes, %s has %d", path, c->meta.classes,
                     pack_path, pm->classes);
    for (int i = 0; !rc && i < pk_pack_count(pack); i++) {
        const char *key = pk_pack_key(pack, i);
        if (pk_pack_find(c->p, key) < 0)
            rc = pk_fail(e, PK_ENOTFOUND, "%s: no logits for key %s", path, key);
    }
    pk_pack_close(pack);
    return rc;
}

int pk_logits_cache_get(pk_logits_cache *c, const char *key, int img_w, int img_h,
                        float *main_logits, float *aux_logits, pk_logits_geom *g,
                        pk_err *e)
{
    const char *path = pk_logits_cache_path(c);
    int i = pk_pack_find(c->p, key);
    if (i < 0)
        return pk_fail(e, PK_ENOTFOUND, "%s: no logits for key %s", path, key);
    pk_pack_reader *r;
    const void *v;
    size_t len;
    pk_logits_view view;
    int rc = pk_pack_reader_open(&r, c->p, e);
    if (rc)
        return rc;
    if ((rc = pk_pack_read(r, i, &v, &len, e)) || (rc = pk_logits_parse(&view, v, len, e)))
        pk_wrap(e, "%s: %s", path, key);
    if (!rc && strcmp(view.key, key))
        rc = pk_fail(e, PK_EFORMAT, "%s: the record under key %s is for %s", path, key,
                     view.key);
    if (!rc && (view.geom.img_w != img_w || view.geom.img_h != img_h))
        rc = pk_fail(e, PK_EINVAL, "%s: %s: logits for a %dx%d image, the data has %dx%d",
                     path, key, view.geom.img_w, view.geom.img_h, img_w, img_h);
    if (!rc && view.classes != c->meta.classes)
        rc = pk_fail(e, PK_EFORMAT, "%s: %s: %d classes, the metadata says %d", path, key,
                     view.classes, c->meta.classes);
    if (!rc) {
        pk_logits_view_to_f32(&view, main_logits, aux_logits);
        if (g)
            *g = view.geom;
    }
    pk_pack_reader_close(r);
    return rc;
}
