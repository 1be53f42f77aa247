/* Logits cache: geometry, record and metadata round trips, rejection of
 * every corrupted byte and truncation, FNV-1a vectors, and the reader's
 * pack check and per-key get on small LMDB files. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/half.h"
#include "core/le_bytes.h"
#include "store/pack.h"
#include "store/logits_cache.h"
#include "data/logits_extra.h"
#include "store/record.h"
#include "support.h"

static int failures;

static void test_geometry(void)
{
    for (int w = 1; w <= 70; w++) {
        pk_logits_geom g;
        pk_logits_geom_init(&g, w, 2 * w + 3);
        PK_CHECK(failures, g.pad_w >= w && g.pad_w - w < 8 && (g.pad_w - 1) % 8 == 0,
                 "w %d -> padded %d", w, g.pad_w);
        PK_CHECK(failures, g.pad_h >= 2 * w + 3 && g.pad_h - (2 * w + 3) < 8 &&
                               (g.pad_h - 1) % 8 == 0,
                 "h %d -> padded %d", 2 * w + 3, g.pad_h);
        PK_CHECK(failures, g.grid_w == (g.pad_w - 1) / 8 + 1 && g.grid_h == (g.pad_h - 1) / 8 + 1,
                 "grid for %dx%d", g.pad_w, g.pad_h);
        /* The last image pixel maps inside the grid. */
        PK_CHECK(failures, (w - 1) * g.m[0] <= g.grid_w - 1, "pixel %d outside grid %d", w - 1,
                 g.grid_w);
    }
    pk_logits_geom g;
    pk_logits_geom_init(&g, 33, 34);
    PK_CHECK(failures, g.pad_w == 33 && g.grid_w == 5 && g.pad_h == 41 && g.grid_h == 6,
             "33x34: padded %dx%d grid %dx%d", g.pad_w, g.pad_h, g.grid_w, g.grid_h);
    PK_CHECK(failures, g.m[0] == 0.125f && g.m[4] == 0.125f && !g.m[1] && !g.m[2] && !g.m[3] &&
                           !g.m[5],
             "mapping matrix");
    pk_logits_geom_init(&g, 1, 500);
    PK_CHECK(failures, g.pad_w == 1 && g.grid_w == 1 && g.pad_h == 505 && g.grid_h == 64,
             "1x500: padded %dx%d grid %dx%d", g.pad_w, g.pad_h, g.grid_w, g.grid_h);
}

static void fill(float *x, size_t n, unsigned seed)
{
    pk_test_fill(x, n, seed, 20.0f);
}

static void test_record(void)
{
    pk_err e = {0};
    const int k = 3;
    pk_logits_geom g;
    pk_logits_geom_init(&g, 17, 10); /* padded 17x17, grid 3x3 */
    size_t n = (size_t)g.grid_w * g.grid_h * k;
    float *m = malloc(n * sizeof *m), *a = malloc(n * sizeof *a);
    float *m2 = malloc(n * sizeof *m), *a2 = malloc(n * sizeof *a);
    if (!m || !a || !m2 || !a2)
        abort();
    fill(m, n, 1);
    fill(a, n, 2);
    for (const char *key = "00000007_odd"; key; key = key[9] == 'o' ? "00000008_even" : NULL) {
        uint8_t *buf = NULL;
        size_t len = 0;
        int rc = pk_logits_encode(&buf, &len, key, &g, k, m, a, &e);
        PK_CHECK(failures, rc == PK_OK, "encode: %s", e.msg);
        if (rc)
            continue;
        PK_CHECK(failures, len == 48 + strlen(key) + (strlen(key) & 1) + 4 * n + 4,
                 "record size %zu", len);
        pk_logits_view v;
        rc = pk_logits_parse(&v, buf, len, &e);
        PK_CHECK(failures, rc == PK_OK, "parse: %s", e.msg);
        PK_CHECK(failures, !strcmp(v.key, key) && v.classes == k && v.geom.img_w == 17 &&
                               v.geom.img_h == 10 && v.geom.grid_w == 3 && v.geom.grid_h == 3,
                 "parsed header");
        pk_logits_view_to_f32(&v, m2, a2);
        double worst = 0;
        for (size_t i = 0; i < n; i++) {
            /* fp16 round to nearest: relative error <= 2^-11. */
            double em = fabs(m2[i] - m[i]) / fabs(m[i]), ea = fabs(a2[i] - a[i]) / fabs(a[i]);
            worst = fmax(worst, fmax(em, ea));
        }
        PK_CHECK(failures, worst <= 1.0 / 2048, "fp16 round trip relative error %g", worst);
        PK_CHECK(failures, m2[0] == pk_f16_to_f32(pk_f32_to_f16(m[0])), "main plane first");

        /* Every single flipped byte and every truncation is rejected. */
        int accepted = 0;
        for (size_t i = 0; i < len; i++) {
            buf[i] ^= 0x5a;
            accepted += pk_logits_parse(&v, buf, len, &e) == PK_OK;
            buf[i] ^= 0x5a;
        }
        for (size_t l = 0; l < len; l++)
            accepted += pk_logits_parse(&v, buf, l, &e) == PK_OK;
        PK_CHECK(failures, accepted == 0, "%d corrupted/truncated records accepted", accepted);

        /* Header defects behind a valid CRC: a grid that does not fit. */
        buf[24] = 4;
        pk_put32(buf + len - 4, pk_crc32(buf, len - 4));
        rc = pk_logits_parse(&v, buf, len, &e);
        PK_CHECK(failures, rc == PK_EFORMAT && strstr(e.msg, "grid"), "bad grid: %s", e.msg);
        buf[24] = (uint8_t)g.grid_w;
        /* A NaN and an infinity behind a valid CRC (the last aux logit). */
        const uint16_t nonfinite[] = {0x7e00, 0xfc00};
        for (int j = 0; j < 2; j++) {
            pk_put16(buf + len - 6, nonfinite[j]);
            pk_put32(buf + len - 4, pk_crc32(buf, len - 4));
            rc = pk_logits_parse(&v, buf, len, &e);
            PK_CHECK(failures, rc == PK_EFORMAT && strstr(e.msg, "non-finite aux logit"),
                     "non-finite logit %04x: %d %s", nonfinite[j], rc, e.msg);
        }
        free(buf);
    }
    /* Encoder argument checks. */
    uint8_t *buf = NULL;
    size_t len;
    PK_CHECK(failures, pk_logits_encode(&buf, &len, "", &g, k, m, a, &e) == PK_EINVAL,
             "empty key accepted");
    PK_CHECK(failures, pk_logits_encode(&buf, &len, "x", &g, 0, m, a, &e) == PK_EINVAL,
             "0 classes accepted");
    /* Non-finite or beyond fp16 logits are refused, naming the key. */
    const float bad_values[] = {NAN, INFINITY, 1e6f};
    for (int j = 0; j < 3; j++) {
        float keep = m[3];
        m[3] = bad_values[j];
        int rc = pk_logits_encode(&buf, &len, "img7", &g, k, m, a, &e);
        PK_CHECK(failures, rc == PK_EINVAL && strstr(e.msg, "img7") && strstr(e.msg, "not finite"),
                 "logit %g encoded: %d %s", bad_values[j], rc, e.msg);
        m[3] = keep;
    }
    pk_logits_geom bad = g;
    bad.grid_w++;
    PK_CHECK(failures, pk_logits_encode(&buf, &len, "x", &bad, k, m, a, &e) == PK_EINVAL,
             "inconsistent geometry accepted");
    free(m);
    free(a);
    free(m2);
    free(a2);
}

static pk_logits_meta sample_meta(void)
{
    pk_logits_meta m = {0};
    m.teacher_hash = 0x0123456789abcdefULL;
    m.pack_id = 0xfedcba9876543210ULL;
    m.count = 3;
    m.classes = 4;
    m.teacher_step = 1234;
    strcpy(m.arch, "resnet50");
    strcpy(m.stem, "deep");
    return m;
}

static void test_meta(void)
{
    pk_err e = {0};
    pk_logits_meta m = sample_meta(), d;
    uint8_t *buf = NULL;
    size_t len = 0;
    PK_CHECK(failures, pk_logits_meta_encode(&buf, &len, &m, &e) == PK_OK, "%s", e.msg);
    if (!buf)
        return;
    PK_CHECK(failures, pk_logits_meta_decode(&d, buf, len, &e) == PK_OK, "%s", e.msg);
    PK_CHECK(failures, d.teacher_hash == m.teacher_hash && d.pack_id == m.pack_id &&
                           d.count == 3 && d.classes == 4 && d.stride == 8 &&
                           d.teacher_step == 1234 && !strcmp(d.arch, "resnet50") &&
                           !strcmp(d.stem, "deep") && d.version == PK_LOGITS_META_VERSION,
             "metadata round trip");
    int accepted = 0;
    for (size_t i = 0; i < len; i++) {
        buf[i] ^= 0x21;
        accepted += pk_logits_meta_decode(&d, buf, len, &e) == PK_OK;
        buf[i] ^= 0x21;
    }
    for (size_t l = 0; l < len; l++)
        accepted += pk_logits_meta_decode(&d, buf, l, &e) == PK_OK;
    PK_CHECK(failures, accepted == 0, "%d corrupted/truncated metadata accepted", accepted);
    free(buf);
}

static void test_fnv(void)
{
    /* Published FNV-1a 64 test vectors. */
    struct { const char *s; uint64_t h; } v[] = {
        {"", 0xcbf29ce484222325ULL},
        {"a", 0xaf63dc4c8601ec8cULL},
        {"foobar", 0x85944171f73967e8ULL},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint64_t h = PK_FNV1A64_INIT;
        pk_fnv1a64(&h, v[i].s, strlen(v[i].s));
        PK_CHECK(failures, h == v[i].h, "fnv1a64(\"%s\") = %016llx", v[i].s,
                 (unsigned long long)h);
    }
    /* Split updates equal one pass. */
    uint64_t h1 = PK_FNV1A64_INIT, h2 = PK_FNV1A64_INIT;
    pk_fnv1a64(&h1, "foobar", 6);
    pk_fnv1a64(&h2, "foo", 3);
    pk_fnv1a64(&h2, "bar", 3);
    PK_CHECK(failures, h1 == h2, "split hash");
}

/* ---- cache files ---- */

static char dir[64];

static void put_or_die(pk_pack_writer *w, const char *key, const void *val, size_t len)
{
    pk_err e = {0};
    if (pk_pack_writer_put(w, key, val, len, &e)) {
        fprintf(stderr, "put %s: %s\n", key, e.msg);
        abort();
    }
}

static const char *keys[3] = {"00000000_a", "00000001_b", "00000002_c"};
static const int mixed_sizes[3][2] = {{9, 9}, {20, 13}, {33, 40}};
static const int (*sizes)[2] = mixed_sizes;

/* A pack with 3 small records (of `sizes`), classes 4; returns its pack id. */
static uint64_t write_pack(const char *path)
{
    uint64_t pack_id = PK_PACK_ID_INIT;
    pk_err e = {0};
    pk_pack_writer *w;
    if (pk_pack_writer_open(&w, path, 0, 1, &e))
        abort();
    for (int i = 0; i < 3; i++) {
        int wd = sizes[i][0], ht = sizes[i][1];
        uint8_t *rgb = calloc((size_t)wd * ht, 3), *lbl = calloc((size_t)wd * ht, 1), *rec;
        size_t len;
        if (!rgb || !lbl ||
            pk_record_encode(&rec, &len, keys[i] + 9, wd, ht, PK_IMG_RGB8, rgb,
                             (size_t)wd * ht * 3, lbl, &e))
            abort();
        put_or_die(w, keys[i], rec, len);
        pk_pack_id_add(&pack_id, keys[i], pk_get32(rec + len - 4));
        free(rec);
        free(rgb);
        free(lbl);
    }
    pk_meta m;
    memset(&m, 0, sizeof m);
    m.version = PK_META_VERSION;
    m.record_version = PK_RECORD_VERSION;
    m.count = 3;
    m.classes = 4;
    m.image_enc = PK_IMG_RGB8;
    m.pack_id = pack_id;
    uint8_t *buf;
    size_t len;
    if (pk_meta_encode(&buf, &len, &m, &e))
        abort();
    put_or_die(w, PK_META_KEY, buf, len);
    free(buf);
    if (pk_pack_writer_finish(w, &e))
        abort();
    return pack_id;
}

/* A cache for the pack above holding the first `nkeys` keys. */
static void write_cache(const char *path, int nkeys, uint64_t pack_id)
{
    pk_err e = {0};
    pk_pack_writer *w;
    if (pk_pack_writer_open(&w, path, 0, 1, &e))
        abort();
    for (int i = 0; i < nkeys; i++) {
        pk_logits_geom g;
        pk_logits_geom_init(&g, sizes[i][0], sizes[i][1]);
        size_t n = (size_t)g.grid_w * g.grid_h * 4;
        float *m = malloc(n * sizeof *m), *a = malloc(n * sizeof *a);
        if (!m || !a)
            abort();
        for (size_t j = 0; j < n; j++) {
            m[j] = (float)(i * 1000 + (int)j);           /* exact in fp16 below 2048 */
            a[j] = -(float)(i * 1000 + (int)j) * 0.5f;
        }
        uint8_t *rec;
        size_t len;
        if (pk_logits_encode(&rec, &len, keys[i], &g, 4, m, a, &e))
            abort();
        put_or_die(w, keys[i], rec, len);
        free(rec);
        free(m);
        free(a);
    }
    pk_logits_meta lm = sample_meta();
    lm.count = nkeys;
    lm.pack_id = pack_id;
    uint8_t *buf;
    size_t len;
    if (pk_logits_meta_encode(&buf, &len, &lm, &e))
        abort();
    put_or_die(w, PK_META_KEY, buf, len);
    free(buf);
    if (pk_pack_writer_finish(w, &e))
        abort();
}

static void test_cache(void)
{
    pk_err e = {0};
    char pack[128], full[128], part[128], other[128];
    snprintf(pack, sizeof pack, "%s/pack.lmdb", dir);
    snprintf(full, sizeof full, "%s/full.lmdb", dir);
    snprintf(part, sizeof part, "%s/part.lmdb", dir);
    snprintf(other, sizeof other, "%s/other.lmdb", dir);
    uint64_t id = write_pack(pack);
    write_cache(full, 3, id);
    write_cache(part, 2, id);
    write_cache(other, 3, id + 1);

    pk_logits_cache *c = NULL;
    int rc = pk_logits_cache_open(&c, full, &e);
    PK_CHECK(failures, rc == PK_OK, "open: %s", e.msg);
    if (rc)
        return;
    PK_CHECK(failures, pk_logits_cache_meta(c)->count == 3 &&
                           pk_logits_cache_meta(c)->classes == 4,
             "cache metadata");
    rc = pk_logits_cache_check_pack(c, pack, &e);
    PK_CHECK(failures, rc == PK_OK, "check_pack on the matching cache: %s", e.msg);
    pk_logits_geom g;
    pk_logits_geom_init(&g, 20, 13);
    size_t n = (size_t)g.grid_w * g.grid_h * 4;
    float *m = calloc(n, sizeof *m), *a = calloc(n, sizeof *a);
    if (!m || !a)
        abort();
    pk_logits_geom got;
    rc = pk_logits_cache_get(c, keys[1], 20, 13, m, a, &got, &e);
    PK_CHECK(failures, rc == PK_OK, "get: %s", e.msg);
    int bad = 0;
    for (size_t j = 0; j < n; j++)
        bad += m[j] != (float)(1000 + (int)j) || a[j] != -(float)(1000 + (int)j) * 0.5f;
    PK_CHECK(failures, bad == 0, "%d wrong logits from get", bad);
    PK_CHECK(failures, got.grid_w == 4 && got.grid_h == 3 && got.img_w == 20,
             "get geometry %dx%d", got.grid_w, got.grid_h);
    rc = pk_logits_cache_get(c, keys[1], 21, 13, m, a, NULL, &e);
    PK_CHECK(failures, rc == PK_EINVAL && strstr(e.msg, "20x13"), "size mismatch: %s", e.msg);
    rc = pk_logits_cache_get(c, "00000009_zz", 20, 13, m, NULL, NULL, &e);
    PK_CHECK(failures, rc == PK_ENOTFOUND && strstr(e.msg, "00000009_zz"), "missing key: %s",
             e.msg);
    pk_logits_cache_close(c);

    rc = pk_logits_cache_open(&c, part, &e);
    PK_CHECK(failures, rc == PK_OK, "open part: %s", e.msg);
    if (!rc) {
        rc = pk_logits_cache_check_pack(c, pack, &e);
        PK_CHECK(failures, rc == PK_ENOTFOUND && strstr(e.msg, "00000002_c"),
                 "partial cache: %s", e.msg);
        pk_logits_cache_close(c);
    }
    rc = pk_logits_cache_open(&c, other, &e);
    PK_CHECK(failures, rc == PK_OK, "open other: %s", e.msg);
    if (!rc) {
        rc = pk_logits_cache_check_pack(c, pack, &e);
        PK_CHECK(failures, rc == PK_EINVAL && strstr(e.msg, "another data pack"),
                 "other pack: %s", e.msg);
        pk_logits_cache_close(c);
    }
    /* A data pack is not a logits cache. */
    rc = pk_logits_cache_open(&c, pack, &e);
    PK_CHECK(failures, rc == PK_EFORMAT, "a data pack opened as a cache: %d %s", rc, e.msg);
    rc = pk_logits_cache_open(&c, "/nonexistent/x.lmdb", &e);
    PK_CHECK(failures, rc != PK_OK, "missing file opened");
    free(m);
    free(a);
    unlink(pack);
    unlink(full);
    unlink(part);
    unlink(other);
}

/* The loader adaptor: with augmentation off and the crop equal to a 17x17
 * image, output pixel (x, y) samples the grid at (x/8, y/8). */
static void test_loader_planes(void)
{
    static const int same[3][2] = {{17, 17}, {17, 17}, {17, 17}};
    pk_err e = {0, ""};
    char pack[128], cache[128];
    snprintf(pack, sizeof pack, "%s/lpack.lmdb", dir);
    snprintf(cache, sizeof cache, "%s/lcache.lmdb", dir);
    sizes = same;
    uint64_t id = write_pack(pack);
    write_cache(cache, 3, id);
    sizes = mixed_sizes;
    pk_logits_cache *c = NULL;
    if (pk_logits_cache_open(&c, cache, &e)) {
        PK_CHECK(failures, 0, "open: %s", e.msg);
        return;
    }
    pk_loader_opts lo;
    memset(&lo, 0, sizeof lo);
    lo.pack = pack;
    lo.batch = 3;
    lo.threads = 2;
    lo.seed = 1;
    lo.end_iter = 1;
    pk_aug_opts_default(&lo.aug, 17, 17);
    lo.aug.none = 1;
    lo.extra_fn = pk_logits_extra_fn;
    lo.extra_user = c;
    lo.extra_channels = 8;
    pk_loader *ld = NULL;
    const pk_loader_batch *b = NULL;
    int rc = pk_loader_open(&ld, &lo, &e);
    if (!rc)
        rc = pk_loader_next(ld, &b, &e);
    PK_CHECK(failures, rc == PK_OK && b && b->n == 3 && b->c_extra == 8, "loader: %s", e.msg);
    if (!rc && b && b->n == 3 && b->c_extra == 8) {
        int bad = 0;
        for (int s = 0; s < 3; s++) {
            int i = b->record[s]; /* the cache's values for record i: i*1000 + j */
            for (int y = 0; y < 17; y++)
                for (int x = 0; x < 17; x++) {
                    const float *v = b->extra + (((size_t)s * 17 + y) * 17 + x) * 8;
                    float gx = x / 8.0f, gy = y / 8.0f;
                    int x0 = (int)gx, y0 = (int)gy;
                    int x1 = x0 < 2 ? x0 + 1 : x0, y1 = y0 < 2 ? y0 + 1 : y0;
                    float fx = gx - x0, fy = gy - y0;
                    for (int ch = 0; ch < 4; ch++) {
                        float g00 = (float)(i * 1000 + (y0 * 3 + x0) * 4 + ch);
                        float g01 = (float)(i * 1000 + (y0 * 3 + x1) * 4 + ch);
                        float g10 = (float)(i * 1000 + (y1 * 3 + x0) * 4 + ch);
                        float g11 = (float)(i * 1000 + (y1 * 3 + x1) * 4 + ch);
                        float want = (1 - fy) * ((1 - fx) * g00 + fx * g01) +
                                     fy * ((1 - fx) * g10 + fx * g11);
                        bad += fabsf(v[ch] - want) > 1e-3f * (1 + fabsf(want));
                        bad += fabsf(v[4 + ch] + 0.5f * want) > 1e-3f * (1 + fabsf(want));
                    }
                }
        }
        PK_CHECK(failures, bad == 0, "loader planes: %d values off the (x/8, y/8) grid sample",
                 bad);
    }
    pk_loader_close(ld);
    pk_logits_cache_close(c);
    unlink(pack);
    unlink(cache);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/pk_logits_XXXXXX");
    if (!mkdtemp(dir))
        abort();
    test_geometry();
    test_record();
    test_meta();
    test_fnv();
    test_cache();
    test_loader_planes();
    rmdir(dir);
    if (failures) {
        fprintf(stderr, "test_logits_cache: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_logits_cache: ok\n");
    return 0;
}
