/* Packs (store/pack.h): the writer (batches, map growth, temp file,
 * refusal to overwrite, abort) and the reader: open, count, keys, find,
 * zero-copy get, per-thread readers, iteration that skips the metadata
 * record wherever it sorts, and each error with its one wording. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/le_bytes.h"
#include "data/image.h"
#include "store/pack.h"
#include "store/pack_meta.h"
#include "store/record.h"
#include "support.h"

static char g_dir[] = "/tmp/pk_test_pack_XXXXXX"; /* test-local scratch dir name */

static char *path_in(const char *name)
{
    static char buf[4][256];
    static int next;
    char *b = buf[next++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s", g_dir, name);
    return b;
}

/* Writes keys[i] -> vals[i] (lens[i] bytes; NULL lens: NUL-terminated
 * strings) in batches of 2; 0 on success. */
static int write_pack(const char *path, const char *const *keys, const void *const *vals,
                      const size_t *lens, int n)
{
    pk_err e = {0, ""};
    pk_pack_writer *w;
    int rc = pk_pack_writer_open(&w, path, 2, 1, &e);
    for (int i = 0; !rc && i < n; i++)
        rc = pk_pack_writer_put(w, keys[i], vals[i], lens ? lens[i] : strlen(vals[i]), &e);
    if (!rc)
        rc = pk_pack_writer_finish(w, &e);
    else
        pk_pack_writer_abort(w);
    if (rc)
        fprintf(stderr, "  write %s: %s\n", path, e.msg);
    return rc;
}

/* A data pack of n (< 8) 4x3 records, its metadata claiming `claim`. */
static int write_data_pack(const char *path, int n, int claim)
{
    pk_err e = {0, ""};
    pk_meta *m = calloc(1, sizeof *m);
    *m = (pk_meta){.version = PK_META_VERSION, .record_version = PK_RECORD_VERSION,
                   .count = claim, .classes = 2, .image_enc = PK_IMG_RGB8,
                   .pack_id = PK_PACK_ID_INIT};
    snprintf(m->names[0], sizeof m->names[0], "bg");
    snprintf(m->names[1], sizeof m->names[1], "fg");
    char keys[8][32], id[16];
    const char *kp[9];
    const void *vp[9];
    uint8_t *bufs[9] = {0};
    size_t lens[9];
    uint8_t rgb[4 * 3 * 3] = {0}, lab[4 * 3] = {0, 1, 1, 0};
    int rc = PK_OK;
    for (int i = 0; !rc && i < n; i++) {
        snprintf(id, sizeof id, "im%d", i);
        rgb[0] = (uint8_t)i;
        kp[i] = keys[i];
        rc = pk_record_key(keys[i], sizeof keys[i], i, id, &e);
        if (!rc)
            rc = pk_record_encode(&bufs[i], &lens[i], id, 4, 3, PK_IMG_RGB8, rgb, sizeof rgb,
                                  lab, &e);
        if (!rc)
            pk_pack_id_add(&m->pack_id, keys[i], pk_get32(bufs[i] + lens[i] - 4));
        vp[i] = bufs[i];
    }
    kp[n] = PK_META_KEY;
    if (!rc)
        rc = pk_meta_encode(&bufs[n], &lens[n], m, &e);
    vp[n] = bufs[n];
    if (!rc)
        rc = write_pack(path, kp, vp, lens, n + 1);
    else
        fprintf(stderr, "  encode: %s\n", e.msg);
    for (int i = 0; i <= n; i++)
        free(bufs[i]);
    free(m);
    return rc;
}

struct walk {
    int n, order_ok, stop_at;
    size_t bytes;
};

static int visit(const pk_pack_rec *r, void *user, pk_err *e)
{
    (void)e;
    struct walk *c = user;
    char want[32];
    snprintf(want, sizeof want, "%08d_id%d", c->n, c->n);
    if (r->index != c->n || strcmp(r->key, want))
        c->order_ok = 0;
    if (r->len != 20000 || ((const uint8_t *)r->data)[7] != (uint8_t)c->n)
        c->order_ok = 0;
    c->bytes += r->len;
    c->n++;
    return c->n == c->stop_at ? 7 : 0;
}

/* 300 x 20 KB = 6 MB, past the writer's 1 MiB initial map: MDB_MAP_FULL
 * and batch retries on the way. Then every reading call on the result. */
static int test_write_read(void)
{
    int f = 0;
    pk_err e = {0, ""};
    const char *out = path_in("p.lmdb");
    pk_pack_writer *w;
    PK_CHECK(f, pk_pack_writer_open(&w, out, 16, 0, &e) == PK_OK, "%s", e.msg);
    uint8_t *val = calloc(20000, 1);
    int rc = PK_OK;
    for (int i = 0; i < 300 && rc == PK_OK; i++) {
        char key[32];
        snprintf(key, sizeof key, "%08d_id%d", i, i);
        val[7] = (uint8_t)i;
        rc = pk_pack_writer_put(w, key, val, 20000, &e);
    }
    if (!rc)
        rc = pk_pack_writer_put(w, PK_META_KEY, "META", 4, &e);
    PK_CHECK(f, rc == PK_OK, "put: %s", e.msg);
    PK_CHECK(f, access(out, F_OK) != 0, "output visible before finish");
    PK_CHECK(f, pk_pack_writer_finish(w, &e) == PK_OK, "finish: %s", e.msg);

    pk_pack *p = NULL;
    rc = pk_pack_open_raw(&p, out, &e);
    PK_CHECK(f, rc == PK_OK, "open_raw: %s", e.msg);
    if (rc) {
        free(val);
        return f;
    }
    PK_CHECK(f, !strcmp(pk_pack_path(p), out), "path %s", pk_pack_path(p));
    PK_CHECK(f, pk_pack_meta(p) == NULL, "a raw pack has no decoded metadata");
    size_t mlen = 0;
    const void *mb = pk_pack_meta_bytes(p, &mlen);
    PK_CHECK(f, mlen == 4 && !memcmp(mb, "META", 4), "metadata bytes");
    PK_CHECK(f, pk_pack_count(p) == 300, "count %d (the metadata is not a record)",
             pk_pack_count(p));
    PK_CHECK(f, !strcmp(pk_pack_key(p, 0), "00000000_id0") &&
                    !strcmp(pk_pack_key(p, 299), "00000299_id299"), "first/last key");
    PK_CHECK(f, !pk_pack_key(p, -1) && !pk_pack_key(p, 300), "keys out of range");
    PK_CHECK(f, pk_pack_find(p, "00000123_id123") == 123, "find");
    PK_CHECK(f, pk_pack_find(p, "nope") == -1 && pk_pack_find(p, PK_META_KEY) == -1 &&
                    pk_pack_find(p, "00000123_id12") == -1, "find absent keys");
    const void *v = NULL;
    size_t len = 0;
    rc = pk_pack_get(p, 123, &v, &len, &e);
    PK_CHECK(f, rc == PK_OK && len == 20000 && ((const uint8_t *)v)[7] == 123, "get: %s",
             e.msg);
    PK_CHECK(f, pk_pack_get(p, 300, &v, &len, &e) == PK_EINVAL, "get out of range");
    PK_CHECK(f, pk_pack_check_count(p, 300, &e) == PK_OK, "count check");
    rc = pk_pack_check_count(p, 301, &e);
    PK_CHECK(f, rc == PK_EFORMAT && strstr(e.msg, out) &&
                    strstr(e.msg, "metadata says 301 records, the pack holds 300"),
             "count mismatch: %s", e.msg);

    struct walk c = {0, 1, -1, 0};
    PK_CHECK(f, pk_pack_foreach(p, visit, &c, &e) == PK_OK, "%s", e.msg);
    PK_CHECK(f, c.n == 300 && c.order_ok && c.bytes == 300 * 20000,
             "iteration: %d records, order %d", c.n, c.order_ok);
    struct walk s = {0, 1, 5, 0};
    PK_CHECK(f, pk_pack_foreach(p, visit, &s, &e) == 7 && s.n == 5, "a visit ends the walk");

    /* Two readers at once, each with its own snapshot of the same bytes. */
    pk_pack_reader *r1 = NULL, *r2 = NULL;
    const void *v1 = NULL, *v2 = NULL;
    size_t l1 = 0, l2 = 0;
    rc = pk_pack_reader_open(&r1, p, &e);
    if (!rc)
        rc = pk_pack_reader_open(&r2, p, &e);
    if (!rc)
        rc = pk_pack_read(r1, 42, &v1, &l1, &e);
    if (!rc)
        rc = pk_pack_read(r2, 42, &v2, &l2, &e);
    PK_CHECK(f, rc == PK_OK && l1 == 20000 && l2 == 20000 && ((const uint8_t *)v1)[7] == 42 &&
                    !memcmp(v1, v2, l1), "readers: %s", e.msg);
    PK_CHECK(f, pk_pack_read(r1, -1, &v1, &l1, &e) == PK_EINVAL, "reader out of range");
    pk_pack_reader_close(r1);
    pk_pack_reader_close(r2);
    pk_pack_reader_close(NULL);

    /* Not a data pack: the metadata does not decode. */
    pk_pack *d = NULL;
    rc = pk_pack_open(&d, out, &e);
    PK_CHECK(f, rc == PK_EFORMAT && !d && strstr(e.msg, out) && strstr(e.msg, "metadata"),
             "raw pack opened as a data pack: %d %s", rc, e.msg);
    pk_pack_close(p);
    pk_pack_close(NULL);

    /* No --force: refuse; abort leaves nothing. */
    PK_CHECK(f, pk_pack_writer_open(&w, out, 16, 0, &e) == PK_EIO && strstr(e.msg, "exists"),
             "existing output: %s", e.msg);
    const char *out2 = path_in("q.lmdb");
    PK_CHECK(f, pk_pack_writer_open(&w, out2, 4, 0, &e) == PK_OK, "%s", e.msg);
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s", pk_pack_writer_tmp_path(w));
    pk_pack_writer_put(w, "k", val, 10, &e);
    PK_CHECK(f, access(tmp, F_OK) == 0, "temp file exists while writing");
    pk_pack_writer_abort(w);
    PK_CHECK(f, access(tmp, F_OK) != 0 && access(out2, F_OK) != 0, "abort left files");
    unlink(out);
    free(val);
    return f;
}

/* Opens path (raw: with pk_pack_open_raw); NULL after counting a failure. */
static pk_pack *open_ok(const char *path, int raw, int *f)
{
    pk_err e = {0, ""};
    pk_pack *p = NULL;
    int rc = raw ? pk_pack_open_raw(&p, path, &e) : pk_pack_open(&p, path, &e);
    PK_CHECK(*f, rc == PK_OK, "open %s: %s", path, e.msg);
    return p;
}

/* The metadata record is skipped wherever it sorts: '_' comes after the
 * digits of data pack keys but before lower-case letters. */
static int test_meta_in_the_middle(void)
{
    int f = 0;
    pk_err e = {0, ""};
    const char *path = path_in("mid.lmdb");
    const char *keys[] = {"0001", PK_META_KEY, "a1", "b2"};
    const void *vals[] = {"x", "meta", "y", "zz"};
    pk_pack *p = write_pack(path, keys, vals, NULL, 4) ? NULL : open_ok(path, 1, &f);
    if (!p)
        return f + 1;
    PK_CHECK(f, pk_pack_count(p) == 3 && !strcmp(pk_pack_key(p, 0), "0001") &&
                    !strcmp(pk_pack_key(p, 1), "a1") && !strcmp(pk_pack_key(p, 2), "b2"),
             "keys around the metadata");
    const void *v;
    size_t len;
    PK_CHECK(f, pk_pack_get(p, 2, &v, &len, &e) == PK_OK && len == 2 && !memcmp(v, "zz", 2),
             "get after the metadata");
    pk_pack_close(p);
    unlink(path);
    return f;
}

static int test_data_pack(void)
{
    int f = 0;
    pk_err e = {0, ""};
    const char *path = path_in("data.lmdb");
    pk_pack *p = write_data_pack(path, 3, 3) ? NULL : open_ok(path, 0, &f);
    if (!p)
        return f + 1;
    const pk_meta *m = pk_pack_meta(p);
    PK_CHECK(f, m && m->count == 3 && m->classes == 2 && !strcmp(m->names[1], "fg"),
             "decoded metadata");
    PK_CHECK(f, pk_pack_count(p) == 3 && !strcmp(pk_pack_key(p, 2), "00000002_im2"), "keys");
    const void *v;
    size_t len;
    pk_record_view rv;
    int rc = pk_pack_get(p, 1, &v, &len, &e);
    if (!rc)
        rc = pk_record_parse(&rv, v, len, &e);
    PK_CHECK(f, rc == PK_OK && !strcmp(rv.hdr.id, "im1") && rv.image[0] == 1 &&
                    rv.label[1] == 1, "record 1: %s", e.msg);
    pk_pack_close(p);
    pk_meta mr;
    PK_CHECK(f, pk_pack_meta_read(path, &mr, &e) == PK_OK && mr.count == 3, "meta_read: %s",
             e.msg);
    unlink(path);
    return f;
}

/* Opens path as a data pack and as a raw pack; both must fail with code
 * and a message holding the path and `msg` (raw_too: the raw open as well). */
static int expect_fail(const char *what, const char *path, int code, const char *msg,
                       int raw_too)
{
    int f = 0;
    pk_err e = {0, ""};
    pk_pack *p = NULL;
    int rc = pk_pack_open(&p, path, &e);
    PK_CHECK(f, rc == code && !p && strstr(e.msg, path) && strstr(e.msg, msg),
             "%s: %d %s", what, rc, e.msg);
    if (!raw_too)
        return f;
    rc = pk_pack_open_raw(&p, path, &e);
    PK_CHECK(f, rc == code && !p && strstr(e.msg, path) && strstr(e.msg, msg),
             "%s (raw): %d %s", what, rc, e.msg);
    return f;
}

static int test_errors(void)
{
    int f = 0;
    pk_err e = {0, ""};
    f += expect_fail("missing file", path_in("none.lmdb"), PK_ENOTFOUND,
                     "No such file or directory", 1);
    f += expect_fail("a directory", g_dir, PK_EFORMAT,
                     "not a pack file (packs are single files)", 1);

    const char *text = path_in("text");
    pk_file_write(text, "not lmdb at all, just some text", 31, &e);
    pk_pack *p = NULL;
    int rc = pk_pack_open(&p, text, &e);
    PK_CHECK(f, rc != PK_OK && !p && strstr(e.msg, text), "not LMDB: %d %s", rc, e.msg);
    unlink(text);

    const char *nometa = path_in("nometa.lmdb");
    const char *keys[] = {"00000000_a", "00000001_b"};
    const void *vals[] = {"x", "y"};
    if (write_pack(nometa, keys, vals, NULL, 2) == 0)
        f += expect_fail("no metadata", nometa, PK_EFORMAT,
                         "no metadata record (not a pack, or an empty one)", 1);
    unlink(nometa);

    const char *empty = path_in("empty.lmdb");
    if (write_pack(empty, keys, vals, NULL, 0) == 0)
        f += expect_fail("empty LMDB", empty, PK_EFORMAT,
                         "no metadata record (not a pack, or an empty one)", 1);
    unlink(empty);

    /* Checked before the file is mapped: no SIGBUS past the end, no LMDB
     * assertion on a root page that is a meta page. */
    const char *zero = path_in("zero.lmdb");
    if (pk_file_write(zero, "", 0, &e) == PK_OK)
        f += expect_fail("empty file", zero, PK_EFORMAT, "empty file (not a pack)", 1);
    unlink(zero);
    const char *cut = path_in("cut.lmdb");
    static char big[3][9000];
    const void *bigv[] = {big[0], big[1], big[2]};
    const size_t bigl[] = {sizeof big[0], sizeof big[1], sizeof big[2]};
    if (write_pack(cut, keys, bigv, bigl, 2) == 0) { /* overflow pages: > 3 pages */
        PK_CHECK(f, truncate(cut, 3 * 4096) == 0, "truncate");
        f += expect_fail("truncated", cut, PK_EFORMAT, "truncated (12288 bytes, its meta page", 1);
        PK_CHECK(f, truncate(cut, 100) == 0, "truncate");
        f += expect_fail("shorter than a meta page", cut, PK_EFORMAT, "truncated (100 bytes", 1);
    }
    unlink(cut);

    const char *lie = path_in("lie.lmdb");
    if (write_data_pack(lie, 2, 5) == 0)
        f += expect_fail("count mismatch", lie, PK_EFORMAT,
                         "metadata says 5 records, the pack holds 2", 0);
    unlink(lie);

    const char *none = path_in("noimages.lmdb");
    if (write_data_pack(none, 0, 0) == 0) {
        f += expect_fail("no images", none, PK_EFORMAT, "the pack holds no images", 0);
        rc = pk_pack_open_raw(&p, none, &e);
        PK_CHECK(f, rc == PK_OK && pk_pack_count(p) == 0, "raw open of a pack without images");
        pk_pack_close(p);
        pk_meta m;
        rc = pk_pack_meta_read(none, &m, &e);
        PK_CHECK(f, rc == PK_EFORMAT && strstr(e.msg, "the pack holds no images"),
                 "meta_read: %s", e.msg);
    }
    unlink(none);
    return f;
}

int main(void)
{
    int (*const tests[])(void) = {test_write_read, test_meta_in_the_middle, test_data_pack,
                                  test_errors};
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    int f = 0;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
        f += tests[i]();
    rmdir(g_dir);
    printf("test_pack: %s (%d failures)\n", f ? "FAILED" : "ok", f);
    return f != 0;
}
