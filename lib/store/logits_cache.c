/* Teacher-logits records, cache metadata, the file hash and the cache
 * reader. Layouts in logits_cache.h and pspkd-logits(5). Integers are
 * written byte by byte (little-endian) so the format does not depend on the
 * host. */
#include "core/le_bytes.h"
#include "store/logits_cache.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/half.h"
#include "store/lmdb_util.h"
#include "store/record.h"

#define LREC_FIXED 48
#define LMETA_FIXED 48
#define DTYPE_F16 1
#define PLANES 2
#define DIM_MAX 65535

/* ---- geometry ---- */

static int padded(int n) { return n + (8 - (n - 1) % 8) % 8; }

void pk_logits_geom_init(pk_logits_geom *g, int img_w, int img_h)
{
    memset(g, 0, sizeof *g);
    g->img_w = img_w;
    g->img_h = img_h;
    g->pad_w = padded(img_w);
    g->pad_h = padded(img_h);
    g->grid_w = (g->pad_w - 1) / PK_LOGITS_STRIDE + 1;
    g->grid_h = (g->pad_h - 1) / PK_LOGITS_STRIDE + 1;
    g->m[0] = 1.0f / PK_LOGITS_STRIDE;
    g->m[4] = 1.0f / PK_LOGITS_STRIDE;
}

/* ---- records ---- */

static int valid_key(const char *k, size_t n)
{
    if (n == 0 || n > PK_LOGITS_KEY_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)k[i] < 0x20 || k[i] == 0x7f)
            return 0;
    return 1;
}

static void put_f16(uint8_t *p, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint16_t u = pk_f32_to_f16(x[i]);
        p[2 * i] = (uint8_t)u;
        p[2 * i + 1] = (uint8_t)(u >> 8);
    }
}

static void get_f16(float *x, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = pk_f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
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
    size_t hdr = LREC_FIXED + klen + (klen & 1);
    size_t total = hdr + PLANES * n * 2 + 4;
    if (total > UINT32_MAX)
        return pk_fail(e, PK_EINVAL, "%s: logits record too large", key);
    uint8_t *p = calloc(1, total);
    if (!p)
        return pk_fail(e, PK_ENOMEM, "%s: out of memory for a %zu-byte record", key, total);
    memcpy(p, "PKDL", 4);
    pk_put16(p + 4, PK_LOGITS_VERSION);
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
    pk_put32(p + total - 4, pk_crc32(p, total - 4));
    *out = p;
    *out_len = total;
    return PK_OK;
}

int pk_logits_parse(pk_logits_view *v, const void *data, size_t len, pk_err *e)
{
    const uint8_t *p = data;
    memset(v, 0, sizeof *v);
    if (len < LREC_FIXED + 2 + 4)
        return pk_fail(e, PK_EFORMAT, "logits record too short (%zu bytes)", len);
    if (memcmp(p, "PKDL", 4))
        return pk_fail(e, PK_EFORMAT, "not a pspkd logits record (bad magic)");
    uint32_t ver = pk_get16(p + 4);
    if (ver != PK_LOGITS_VERSION)
        return pk_fail(e, PK_EFORMAT, "logits record version %u, this build reads %d", ver,
                       PK_LOGITS_VERSION);
    uint32_t crc = pk_crc32(p, len - 4), stored = pk_get32(p + len - 4);
    if (crc != stored)
        return pk_fail(e, PK_EFORMAT, "logits record CRC mismatch (stored %08x, computed %08x)",
                       stored, crc);
    uint32_t hdr = pk_get16(p + 6), klen = pk_get16(p + 40);
    uint32_t iw = pk_get32(p + 8), ih = pk_get32(p + 12), pw = pk_get32(p + 16), ph = pk_get32(p + 20);
    uint32_t gw = pk_get32(p + 24), gh = pk_get32(p + 28), k = pk_get32(p + 32);
    if (klen < 1 || klen > PK_LOGITS_KEY_MAX || hdr != LREC_FIXED + klen + (klen & 1))
        return pk_fail(e, PK_EFORMAT, "logits record: bad key length %u / header size %u",
                       klen, hdr);
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
    v->version = (int)ver;
    v->geom = g;
    v->classes = (int)k;
    memcpy(v->key, key, klen);
    v->key[klen] = '\0';
    v->main_f16 = p + hdr;
    v->aux_f16 = p + hdr + 2 * n;
    v->crc = stored;
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
    if (n > PK_LOGITS_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
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
    memcpy(p, "PKLM", 4);
    pk_put16(p + 4, PK_LOGITS_META_VERSION);
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
    off += ns;
    pk_put32(p + off, pk_crc32(p, off));
    *out = p;
    *out_len = total;
    return PK_OK;
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
    if (len < LMETA_FIXED + 2 + 4)
        return pk_fail(e, PK_EFORMAT, "logits metadata too short (%zu bytes)", len);
    if (memcmp(p, "PKLM", 4))
        return pk_fail(e, PK_EFORMAT, "not pspkd logits metadata (bad magic)");
    m->version = (int)pk_get16(p + 4);
    if (m->version != PK_LOGITS_META_VERSION)
        return pk_fail(e, PK_EFORMAT, "logits metadata version %d, this build reads %d",
                       m->version, PK_LOGITS_META_VERSION);
    uint32_t crc = pk_crc32(p, len - 4), stored = pk_get32(p + len - 4);
    if (crc != stored)
        return pk_fail(e, PK_EFORMAT,
                       "logits metadata CRC mismatch (stored %08x, computed %08x)", stored,
                       crc);
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
    pk_lmdb_reader r;
    pk_logits_meta meta;
    char *path;
};

int pk_logits_cache_open(pk_logits_cache **out, const char *path, pk_err *e)
{
    *out = NULL;
    pk_logits_cache *c = calloc(1, sizeof *c);
    if (!c || !(c->path = strdup(path))) {
        free(c);
        return pk_fail(e, PK_ENOMEM, "out of memory");
    }
    int rc = pk_lmdb_open_read(&c->r, path, e);
    if (rc) {
        free(c->path);
        free(c);
        return rc; /* the message names the file */
    }
    MDB_txn *txn = NULL;
    MDB_val v;
    size_t entries = 0;
    rc = pk_lmdb_txn_begin(&txn, &c->r, e);
    if (!rc) {
        rc = pk_lmdb_get(txn, &c->r, PK_META_KEY, &v, e);
        if (rc == PK_ENOTFOUND)
            rc = pk_fail(e, PK_EFORMAT, "no logits metadata record (not a logits cache?)");
        else if (!rc)
            rc = pk_logits_meta_decode(&c->meta, v.mv_data, v.mv_size, e);
        mdb_txn_abort(txn);
    }
    if (!rc)
        rc = pk_lmdb_count(&c->r, &entries, e);
    if (!rc && entries != (size_t)c->meta.count + 1)
        rc = pk_fail(e, PK_EFORMAT, "metadata says %d records, the file holds %zu",
                     c->meta.count, entries - 1);
    if (rc) {
        pk_logits_cache_close(c);
        pk_wrap(e, "%s", path);
        return rc;
    }
    *out = c;
    return PK_OK;
}

void pk_logits_cache_close(pk_logits_cache *c)
{
    if (!c)
        return;
    pk_lmdb_close(&c->r);
    free(c->path);
    free(c);
}

const pk_logits_meta *pk_logits_cache_meta(const pk_logits_cache *c) { return &c->meta; }
const char *pk_logits_cache_path(const pk_logits_cache *c) { return c->path; }

struct key_check {
    pk_logits_cache *c;
    MDB_txn *txn;
    char missing[PK_LOGITS_KEY_MAX + 1];
    long checked;
};

static int is_meta_key(const MDB_val *k)
{
    return k->mv_size == strlen(PK_META_KEY) && !memcmp(k->mv_data, PK_META_KEY, k->mv_size);
}

static int check_key(const MDB_val *k, const MDB_val *v, void *user, pk_err *e)
{
    (void)v;
    struct key_check *kc = user;
    if (is_meta_key(k))
        return 0;
    MDB_val key = *k, val;
    int rc = mdb_get(kc->txn, kc->c->r.dbi, &key, &val);
    if (rc == MDB_NOTFOUND) {
        size_t n = k->mv_size < PK_LOGITS_KEY_MAX ? k->mv_size : PK_LOGITS_KEY_MAX;
        memcpy(kc->missing, k->mv_data, n);
        kc->missing[n] = '\0';
        return pk_fail(e, PK_ENOTFOUND, "no logits for key %s", kc->missing);
    }
    if (rc)
        return pk_lmdb_fail(e, rc, "logits lookup");
    kc->checked++;
    return 0;
}

int pk_logits_cache_check_pack(pk_logits_cache *c, const char *pack_path, pk_err *e)
{
    pk_lmdb_reader pr;
    int rc = pk_lmdb_open_read(&pr, pack_path, e);
    if (rc)
        return rc;
    MDB_txn *ptxn = NULL, *ctxn = NULL;
    MDB_val v;
    pk_meta pm;
    rc = pk_lmdb_txn_begin(&ptxn, &pr, e);
    if (!rc) {
        rc = pk_lmdb_get(ptxn, &pr, PK_META_KEY, &v, e);
        if (rc == PK_ENOTFOUND)
            rc = pk_fail(e, PK_EFORMAT, "%s: no pack metadata record", pack_path);
        else if (!rc && (rc = pk_meta_decode(&pm, v.mv_data, v.mv_size, e)))
            pk_wrap(e, "%s", pack_path);
    }
    if (!rc && pm.pack_id != c->meta.pack_id)
        rc = pk_fail(e, PK_EINVAL,
                     "%s was made from another data pack (pack id %016llx, %s has %016llx)",
                     c->path, (unsigned long long)c->meta.pack_id, pack_path,
                     (unsigned long long)pm.pack_id);
    if (!rc && pm.classes != c->meta.classes)
        rc = pk_fail(e, PK_EINVAL, "%s has %d classes, %s has %d", c->path, c->meta.classes,
                     pack_path, pm.classes);
    if (!rc)
        rc = pk_lmdb_txn_begin(&ctxn, &c->r, e);
    if (!rc) {
        struct key_check kc = {.c = c, .txn = ctxn};
        rc = pk_lmdb_foreach(ptxn, &pr, check_key, &kc, e);
        if (rc)
            pk_wrap(e, "%s", c->path);
        else if (kc.checked != pm.count)
            rc = pk_fail(e, PK_EFORMAT, "%s: metadata says %d records, found %ld", pack_path,
                         pm.count, kc.checked);
    }
    if (ctxn)
        mdb_txn_abort(ctxn);
    if (ptxn)
        mdb_txn_abort(ptxn);
    pk_lmdb_close(&pr);
    return rc;
}

int pk_logits_cache_get(pk_logits_cache *c, const char *key, int img_w, int img_h,
                        float *main_logits, float *aux_logits, pk_logits_geom *g,
                        pk_err *e)
{
    MDB_txn *txn = NULL;
    MDB_val v;
    pk_logits_view view;
    int rc = pk_lmdb_txn_begin(&txn, &c->r, e);
    if (rc)
        return rc;
    rc = pk_lmdb_get(txn, &c->r, key, &v, e);
    if (rc == PK_ENOTFOUND)
        rc = pk_fail(e, PK_ENOTFOUND, "%s: no logits for key %s", c->path, key);
    else if (!rc && (rc = pk_logits_parse(&view, v.mv_data, v.mv_size, e)))
        pk_wrap(e, "%s: %s", c->path, key);
    if (!rc && strcmp(view.key, key))
        rc = pk_fail(e, PK_EFORMAT, "%s: the record under key %s is for %s", c->path, key,
                     view.key);
    if (!rc && (view.geom.img_w != img_w || view.geom.img_h != img_h))
        rc = pk_fail(e, PK_EINVAL, "%s: %s: logits for a %dx%d image, the data has %dx%d",
                     c->path, key, view.geom.img_w, view.geom.img_h, img_w, img_h);
    if (!rc && view.classes != c->meta.classes)
        rc = pk_fail(e, PK_EFORMAT, "%s: %s: %d classes, the metadata says %d", c->path, key,
                     view.classes, c->meta.classes);
    if (!rc) {
        pk_logits_view_to_f32(&view, main_logits, aux_logits);
        if (g)
            *g = view.geom;
    }
    mdb_txn_abort(txn);
    return rc;
}
