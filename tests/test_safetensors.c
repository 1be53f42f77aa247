/* safetensors: round trips, every malformed header rejected with a message
 * (never a crash or out-of-bounds read: run under SANITIZE=1), atomic writes
 * that leave the old file and no temp file behind on failure. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/atomic_file.h"
#include "core/half.h"
#include "core/le_bytes.h"
#include "store/safetensors.h"
#include "support.h"

static int failures;

/* ---- helpers ---- */

/* A file image: LE header length, the JSON, then data_len bytes of 0xAB. */
static unsigned char *image(const char *json, size_t data_len, size_t *len)
{
    size_t h = strlen(json);
    *len = 8 + h + data_len;
    unsigned char *b = malloc(*len);
    if (!b)
        abort();
    pk_put64(b, h);
    memcpy(b + 8, json, h);
    memset(b + 8 + h, 0xAB, data_len);
    return b;
}

static void set_hlen(unsigned char *b, uint64_t h) { pk_put64(b, h); }

static int count_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static int file_equals(const char *path, const void *want, size_t n)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return 0;
    unsigned char *got = malloc(n + 1);
    size_t r = got ? fread(got, 1, n + 1, fp) : 0;
    fclose(fp);
    int eq = got && r == n && memcmp(got, want, n) == 0;
    free(got);
    return eq;
}

/* Expects pk_st_parse to fail with PK_EFORMAT and a message containing want. */
static void reject(const char *what, const void *buf, size_t len, const char *want)
{
    pk_st_file *f = (pk_st_file *)1;
    pk_err e = {0};
    int rc = pk_st_parse(&f, buf, len, &e);
    PK_CHECK(failures, rc == PK_EFORMAT, "%s: rc %d, want PK_EFORMAT", what, rc);
    PK_CHECK(failures, f == NULL, "%s: out not NULL on failure", what);
    PK_CHECK(failures, strstr(e.msg, want) != NULL, "%s: message '%s' lacks '%s'", what, e.msg,
             want);
    if (rc == PK_OK)
        pk_st_close(f);
}

static void reject_json(const char *what, const char *json, size_t data_len, const char *want)
{
    size_t len;
    unsigned char *b = image(json, data_len, &len);
    reject(what, b, len, want);
    free(b);
}

/* ---- round trip ---- */

static pk_st_writer *sample_writer(void)
{
    pk_err e = {0};
    pk_st_writer *w = pk_st_writer_new();
    float f32[6] = {1.5f, -2.25f, 3.0f, 0.0f, 1e-3f, -7e5f};
    uint16_t f16[4];
    const float f16v[4] = {0.5f, -2.0f, 3.140625f, 65504.0f};
    for (int i = 0; i < 4; i++)
        f16[i] = pk_f32_to_f16(f16v[i]);
    int64_t i64[3] = {-7, 123456, 0};
    float scalar = 42.0f;
    int64_t s23[2] = {2, 3}, s4[1] = {4}, s3[1] = {3}, s05[2] = {0, 5};
    int ok = w && pk_st_add(w, "layer1.0.conv1.weight", PK_F32, 2, s23, f32, &e) == PK_OK &&
             pk_st_add(w, "half", PK_F16, 1, s4, f16, &e) == PK_OK &&
             pk_st_add(w, "bn1.num_batches_tracked", PK_I64, 1, s3, i64, &e) == PK_OK &&
             pk_st_add(w, "empty", PK_F32, 2, s05, NULL, &e) == PK_OK &&
             pk_st_add(w, "scalar", PK_F32, 0, NULL, &scalar, &e) == PK_OK &&
             pk_st_set_meta(w, "arch", "resnet50", &e) == PK_OK &&
             pk_st_set_meta(w, "note", "quote \" backslash \\ unicode \xc3\xa9", &e) == PK_OK &&
             pk_st_set_meta(w, "arch", "resnet18", &e) == PK_OK; /* replaces */
    if (!ok) {
        fprintf(stderr, "  FAIL building sample: %s\n", e.msg);
        exit(1);
    }
    return w;
}

static void check_sample(const char *what, const pk_st_file *f)
{
    pk_err e = {0};
    PK_CHECK(failures, pk_st_count(f) == 5, "%s: count %d", what, pk_st_count(f));
    const char *order[] = {"layer1.0.conv1.weight", "half", "bn1.num_batches_tracked", "empty",
                           "scalar"};
    for (int i = 0; i < 5 && i < pk_st_count(f); i++)
        PK_CHECK(failures, strcmp(pk_st_at(f, i)->name, order[i]) == 0,
                 "%s: tensor %d is '%s', want insertion order '%s'", what, i,
                 pk_st_at(f, i)->name, order[i]);
    PK_CHECK(failures, pk_st_at(f, 5) == NULL && pk_st_at(f, -1) == NULL, "%s: pk_st_at range",
             what);
    const pk_st_tensor *t = pk_st_find(f, "layer1.0.conv1.weight");
    PK_CHECK(failures, t && t->dtype == PK_F32 && t->ndim == 2 && t->shape[0] == 2 &&
                           t->shape[1] == 3 && t->numel == 6 && t->nbytes == 24,
             "%s: F32 tensor descriptor", what);
    float got[6], want[6] = {1.5f, -2.25f, 3.0f, 0.0f, 1e-3f, -7e5f};
    PK_CHECK(failures, pk_st_read_f32(f, "layer1.0.conv1.weight", got, 6, &e) == PK_OK &&
                           memcmp(got, want, sizeof want) == 0,
             "%s: F32 values", what);
    float h[4], hw[4] = {0.5f, -2.0f, 3.140625f, 65504.0f};
    t = pk_st_find(f, "half");
    PK_CHECK(failures, t && t->dtype == PK_F16 && t->nbytes == 8, "%s: F16 descriptor", what);
    PK_CHECK(failures, pk_st_read_f32(f, "half", h, 4, &e) == PK_OK &&
                           memcmp(h, hw, sizeof hw) == 0,
             "%s: F16 converted values", what);
    float iv[3], iw[3] = {-7.0f, 123456.0f, 0.0f};
    t = pk_st_find(f, "bn1.num_batches_tracked");
    PK_CHECK(failures, t && t->dtype == PK_I64 && t->nbytes == 24, "%s: I64 descriptor", what);
    int64_t raw[3];
    if (t)
        memcpy(raw, t->data, sizeof raw);
    PK_CHECK(failures, t && raw[0] == -7 && raw[1] == 123456, "%s: I64 raw data", what);
    PK_CHECK(failures, pk_st_read_f32(f, "bn1.num_batches_tracked", iv, 3, &e) == PK_OK &&
                           memcmp(iv, iw, sizeof iw) == 0,
             "%s: I64 cast values", what);
    t = pk_st_find(f, "empty");
    PK_CHECK(failures, t && t->numel == 0 && t->nbytes == 0 && t->ndim == 2 && t->shape[1] == 5,
             "%s: empty tensor", what);
    PK_CHECK(failures, pk_st_read_f32(f, "empty", got, 0, &e) == PK_OK, "%s: read empty", what);
    t = pk_st_find(f, "scalar");
    float sc = 0;
    PK_CHECK(failures, t && t->ndim == 0 && t->numel == 1 &&
                           pk_st_read_f32(f, "scalar", &sc, 1, &e) == PK_OK && sc == 42.0f,
             "%s: scalar", what);
    PK_CHECK(failures, pk_st_meta(f, "arch") && strcmp(pk_st_meta(f, "arch"), "resnet18") == 0,
             "%s: meta arch (set twice, last wins)", what);
    PK_CHECK(failures, pk_st_meta(f, "note") &&
                           strcmp(pk_st_meta(f, "note"),
                                  "quote \" backslash \\ unicode \xc3\xa9") == 0,
             "%s: meta with escapes", what);
    PK_CHECK(failures, pk_st_meta(f, "missing") == NULL, "%s: missing meta", what);
    PK_CHECK(failures, pk_st_find(f, "nope") == NULL, "%s: find missing", what);

    /* read_f32 failures name the tensor. */
    int rc = pk_st_read_f32(f, "nope", got, 6, &e);
    PK_CHECK(failures, rc == PK_ENOTFOUND && strstr(e.msg, "'nope'"), "%s: missing read: %d %s",
             what, rc, e.msg);
    rc = pk_st_read_f32(f, "layer1.0.conv1.weight", got, 5, &e);
    PK_CHECK(failures, rc == PK_EINVAL && strstr(e.msg, "layer1.0.conv1.weight") &&
                           strstr(e.msg, "[2,3]"),
             "%s: numel mismatch: %d %s", what, rc, e.msg);
}

static void test_round_trip(void)
{
    pk_err e = {0};
    pk_st_writer *w = sample_writer();
    void *buf;
    size_t len;
    if (pk_st_serialize(w, &buf, &len, &e) != PK_OK) {
        fprintf(stderr, "  FAIL serialize: %s\n", e.msg);
        failures++;
        pk_st_writer_free(w);
        return;
    }
    const unsigned char *b = buf;
    uint64_t h = pk_get64(b);
    PK_CHECK(failures, h % 8 == 0 && 8 + h + 24 + 8 + 24 + 4 == len,
             "header length %llu (multiple of 8) and total %zu", (unsigned long long)h, len);
    PK_CHECK(failures, memcmp(b + 8, "{\"__metadata__\":", 16) == 0, "__metadata__ first");
    PK_CHECK(failures, b[8 + h - 1] == ' ' || b[8 + h - 1] == '}', "header padded with spaces");
    pk_st_file *f = NULL;
    int rc = pk_st_parse(&f, buf, len, &e);
    PK_CHECK(failures, rc == PK_OK, "parse own output: %s", e.msg);
    if (rc == PK_OK) {
        check_sample("parse", f);
        pk_st_close(f);
    }

    /* No metadata: no __metadata__ entry, still valid. */
    pk_st_writer *w2 = pk_st_writer_new();
    int64_t s1 = 1;
    float one = 1.0f;
    void *b2 = NULL;
    size_t l2 = 0;
    rc = pk_st_add(w2, "x", PK_F32, 1, &s1, &one, &e);
    rc = rc ? rc : pk_st_serialize(w2, &b2, &l2, &e);
    rc = rc ? rc : pk_st_parse(&f, b2, l2, &e);
    PK_CHECK(failures, rc == PK_OK && pk_st_count(f) == 1 && !memmem(b2, l2, "__metadata__", 12),
             "no-metadata file: %s", e.msg);
    if (rc == PK_OK)
        pk_st_close(f);
    free(b2);
    pk_st_writer_free(w2);

    /* Writer argument checks. */
    int64_t neg = -1;
    PK_CHECK(failures, pk_st_add(w, "half", PK_F32, 1, &s1, &one, &e) == PK_EINVAL,
             "duplicate add rejected");
    PK_CHECK(failures, pk_st_add(w, "__metadata__", PK_F32, 1, &s1, &one, &e) == PK_EINVAL,
             "__metadata__ as tensor name rejected");
    PK_CHECK(failures, pk_st_add(w, "neg", PK_F32, 1, &neg, &one, &e) == PK_EINVAL,
             "negative shape rejected");
    PK_CHECK(failures, pk_st_add(w, "deep", PK_F32, PK_ST_MAX_DIMS + 1, &s1, &one, &e) ==
                           PK_EINVAL,
             "too many dims rejected");
    PK_CHECK(failures, pk_st_add(w, "null", PK_F32, 1, &s1, NULL, &e) == PK_EINVAL,
             "NULL data rejected");

    /* Truncation at every length must fail (the last tensor is not empty). */
    int bad = 0;
    for (size_t n = 0; n < len; n++) {
        pk_st_file *g = NULL;
        if (pk_st_parse(&g, buf, n, &e) == PK_OK) {
            bad++;
            pk_st_close(g);
        }
    }
    PK_CHECK(failures, bad == 0, "%d truncated prefixes were accepted", bad);

    /* Random byte corruption of the header: any outcome but a crash, and an
     * accepted file must still have every tensor inside the data section. */
    unsigned char *m = malloc(len);
    unsigned long long s = 12345;
    int accepted = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(m, buf, len);
        for (int k = 0; k < 3; k++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            size_t pos = (size_t)(s >> 33) % (8 + h);
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            m[pos] = (unsigned char)(s >> 56);
        }
        pk_st_file *g = NULL;
        if (pk_st_parse(&g, m, len, &e) == PK_OK) {
            accepted++;
            for (int i = 0; i < pk_st_count(g); i++) {
                const pk_st_tensor *t = pk_st_at(g, i);
                float *tmp = malloc(t->numel * sizeof *tmp + 1);
                PK_CHECK(failures, pk_st_read_f32(g, t->name, tmp, t->numel, &e) == PK_OK,
                         "read of accepted mutant failed: %s", e.msg);
                free(tmp);
            }
            pk_st_close(g);
        }
    }
    printf("  ok  round trip; %zu truncations rejected; %d/3000 header mutants accepted\n", len,
           accepted);
    free(m);
    free(buf);
    pk_st_writer_free(w);
}

/* ---- malformed inputs ---- */

static void test_malformed(void)
{
    unsigned char small[7] = {0};
    reject("empty file", small, 0, "too short");
    reject("7-byte file", small, 7, "too short");

    size_t len;
    unsigned char *b = image("{}", 0, &len);
    set_hlen(b, 3);
    reject("header length past end", b, len, "exceeds");
    set_hlen(b, (uint64_t)200 << 20);
    reject("absurd header length", b, len, "absurd");
    set_hlen(b, UINT64_MAX);
    reject("2^64-1 header length", b, len, "absurd");
    set_hlen(b, 0);
    reject("zero header length", b, len, "not valid JSON");
    free(b);

    static const struct {
        const char *what, *json;
        size_t data;
        const char *msg;
    } bad_json[] = {
        {"bad JSON", "{\"a\": {\"dtype\": ", 0, "not valid JSON"},
        {"bad JSON 2", "{abc}", 0, "not valid JSON"},
        {"array header", "[1, 2]", 0, "not a JSON object"},
        {"string header", "\"x\"", 0, "not a JSON object"},
        {"trailing garbage", "{}xyz", 0, "trailing"},
        {"entry not object", "{\"a\": 5}", 0, "'a': entry is not a JSON object"},
        {"missing dtype",
         "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}",
         4, "'a': missing dtype"},
        {"missing shape",
         "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}",
         4, "'a': missing shape"},
        {"missing offsets",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}",
         4, "'a': missing data_offsets"},
        {"dtype not string",
         "{\"a\":{\"dtype\":3,\"shape\":[1],\"data_offsets\":[0,4]}}",
         4, "dtype is not a string"},
        {"unknown dtype",
         "{\"a\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[0,2]}}",
         2, "unsupported dtype 'BF16'"},
        {"shape not array",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,4]}}",
         4, "shape is not an array"},
        {"negative shape",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}",
         4, "shape[0] is not a non-negative integer"},
        {"fractional shape",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,1.5],\"data_offsets\":[0,12]}}",
         12, "shape[1] is not a non-negative integer"},
        {"string shape",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}",
         4, "shape[0]"},
        {"huge shape entry",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,4]}}",
         4, "shape[0]"},
        {"overflowing shape",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],"
         "\"data_offsets\":[0,4]}}",
         4, "overflows"},
        {"byte size overflow",
         "{\"a\":{\"dtype\":\"I64\",\"shape\":[4294967296,536870912],"
         "\"data_offsets\":[0,4]}}",
         4, "overflows"},
        {"too many dims",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}",
         4, "dimensions"},
        {"offsets not array",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":0}}",
         4, "data_offsets is not a pair"},
        {"offsets wrong length",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}",
         8, "data_offsets is not a pair"},
        {"negative offset",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}",
         4, "data_offsets is not a pair"},
        {"offsets reversed",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}",
         4, "end before they begin"},
        {"size mismatch",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}",
         8, "needs 8 bytes, data_offsets give 4"},
        {"F16 size mismatch",
         "{\"a\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,16]}}",
         16, "needs 8 bytes"},
        {"offset beyond data",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         8, "beyond the 8-byte data section"},
        {"huge offsets",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":"
         "[9007199254740000,9007199254740004]}}",
         4, "beyond"},
        {"overlap",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         12, "overlap"},
        {"out-of-order overlap",
         "{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]},"
         "\"c\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}",
         16, "overlap"},
        {"same range twice",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
         4, "overlap"},
        {"duplicate names",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         8, "duplicate tensor name 'a'"},
        {"metadata not object",
         "{\"__metadata__\": [\"x\"]}",
         0, "__metadata__ is not a JSON object"},
        {"metadata value not string",
         "{\"__metadata__\": {\"step\": 5}}",
         0, "value of 'step' is not a string"},
        {"duplicate metadata",
         "{\"__metadata__\": {}, \"__metadata__\": {}}",
         0, "duplicate __metadata__"},
        {"duplicate metadata key",
         "{\"__metadata__\": {\"k\":\"1\",\"k\":\"2\"}}",
         0, "duplicate __metadata__ key 'k'"},
    };
    for (size_t i = 0; i < sizeof bad_json / sizeof bad_json[0]; i++)
        reject_json(bad_json[i].what, bad_json[i].json, bad_json[i].data, bad_json[i].msg);

    /* Valid variants that the checks must not refuse. */
    const char *ok_json[] = {
        "{}",
        "{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}      ",
        "{\"z\":{\"dtype\":\"F16\",\"shape\":[0],\"data_offsets\":[2,2]},"
        "\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},"
        "\"__metadata__\":{}}",
    };
    for (size_t i = 0; i < sizeof ok_json / sizeof ok_json[0]; i++) {
        unsigned char *g = image(ok_json[i], 8, &len);
        pk_st_file *f = NULL;
        pk_err e = {0};
        int rc = pk_st_parse(&f, g, len, &e);
        PK_CHECK(failures, rc == PK_OK, "valid header %zu rejected: %s", i, e.msg);
        if (rc == PK_OK)
            pk_st_close(f);
        free(g);
    }
    printf("  ok  malformed headers rejected\n");
}

/* ---- files and atomicity ---- */

static void test_files(const char *dir)
{
    char path[512], tmpdir_file[600];
    pk_err e = {0};
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    pk_st_writer *w = sample_writer();
    int rc = pk_st_write(w, path, &e);
    PK_CHECK(failures, rc == PK_OK, "write: %s", e.msg);
    pk_st_file *f = NULL;
    rc = pk_st_open(&f, path, &e);
    PK_CHECK(failures, rc == PK_OK, "open: %s", e.msg);
    if (rc == PK_OK) {
        check_sample("file", f);
        pk_st_close(f);
    }
    void *buf;
    size_t len;
    if (pk_st_serialize(w, &buf, &len, &e) == PK_OK) {
        PK_CHECK(failures, file_equals(path, buf, len), "file bytes == serialize bytes");
        free(buf);
    }
    PK_CHECK(failures, count_dir(dir) == 1, "no temp file left after a write (%d entries)",
             count_dir(dir));

    /* Overwrite with a different file. */
    pk_st_writer *w2 = pk_st_writer_new();
    int64_t s1 = 1;
    float v = 9.0f;
    rc = pk_st_add(w2, "only", PK_F32, 1, &s1, &v, &e);
    rc = rc ? rc : pk_st_write(w2, path, &e);
    rc = rc ? rc : pk_st_open(&f, path, &e);
    PK_CHECK(failures, rc == PK_OK && pk_st_count(f) == 1 && pk_st_find(f, "only"),
             "overwrite: %s", e.msg);
    if (rc == PK_OK)
        pk_st_close(f);
    void *old;
    size_t oldlen;
    if (pk_st_serialize(w2, &old, &oldlen, &e) != PK_OK)
        abort();

    /* Missing directory: clean failure, nothing created. */
    snprintf(tmpdir_file, sizeof tmpdir_file, "%s/no/such/dir/x.safetensors", dir);
    rc = pk_st_write(w, tmpdir_file, &e);
    PK_CHECK(failures, rc == PK_EIO && strstr(e.msg, "No such file"),
             "write into missing dir: rc %d '%s'", rc, e.msg);
    PK_CHECK(failures, count_dir(dir) == 1, "missing-dir write left files behind");

    /* The target is a directory: refused before a temp file is made (a
     * device such as /dev/full is refused the same way). */
    snprintf(tmpdir_file, sizeof tmpdir_file, "%s/adir", dir);
    if (mkdir(tmpdir_file, 0700) != 0)
        abort();
    rc = pk_st_write(w, tmpdir_file, &e);
    PK_CHECK(failures, rc == PK_EINVAL && strstr(e.msg, "not a regular file"),
             "write over a dir: rc %d '%s'", rc, e.msg);
    PK_CHECK(failures, count_dir(dir) == 2, "refused write left a temp file (%d entries)",
             count_dir(dir));
    rmdir(tmpdir_file);

    /* Disk full, simulated by a file-size limit (write fails with EFBIG like
     * ENOSPC would): the old file stays as it was, no temp file remains. */
    struct rlimit saved, lim;
    if (getrlimit(RLIMIT_FSIZE, &saved) == 0) {
        signal(SIGXFSZ, SIG_IGN);
        lim = saved;
        lim.rlim_cur = 4096;
        if (setrlimit(RLIMIT_FSIZE, &lim) == 0) {
            pk_st_writer *big = pk_st_writer_new();
            int64_t n = 1 << 16;
            float *data = calloc((size_t)n, sizeof *data);
            rc = pk_st_add(big, "big", PK_F32, 1, &n, data, &e);
            rc = rc ? rc : pk_st_write(big, path, &e);
            setrlimit(RLIMIT_FSIZE, &saved);
            PK_CHECK(failures, rc == PK_EIO, "write past the size limit: rc %d '%s'", rc, e.msg);
            printf("  ok  simulated full disk: %s\n", e.msg);
            PK_CHECK(failures, file_equals(path, old, oldlen), "old file changed by failed write");
            PK_CHECK(failures, count_dir(dir) == 1, "failed write left a temp file");
            free(data);
            pk_st_writer_free(big);
        }
        signal(SIGXFSZ, SIG_DFL);
    }
    free(old);

    /* Opening: missing file, non-regular file, garbage file. */
    snprintf(tmpdir_file, sizeof tmpdir_file, "%s/missing.safetensors", dir);
    rc = pk_st_open(&f, tmpdir_file, &e);
    PK_CHECK(failures, rc == PK_ENOTFOUND && strstr(e.msg, "missing.safetensors"),
             "open missing: %d '%s'", rc, e.msg);
    rc = pk_st_open(&f, dir, &e);
    PK_CHECK(failures, rc != PK_OK && f == NULL, "open of a directory: %d '%s'", rc, e.msg);
    snprintf(tmpdir_file, sizeof tmpdir_file, "%s/junk", dir);
    FILE *fp = fopen(tmpdir_file, "wb");
    if (!fp || fputs("not a safetensors file at all", fp) < 0 || fclose(fp) != 0)
        abort();
    rc = pk_st_open(&f, tmpdir_file, &e);
    PK_CHECK(failures, rc == PK_EFORMAT && strstr(e.msg, "junk: header length"),
             "open junk: %d '%s'", rc, e.msg);
    unlink(tmpdir_file);

    pk_st_writer_free(w);
    pk_st_writer_free(w2);
    unlink(path);
    printf("  ok  file write/open, atomic failure paths\n");
}

static void test_atomic_file(const char *dir)
{
    char path[512];
    pk_err e = {0};
    snprintf(path, sizeof path, "%s/plain.txt", dir);
    pk_atomic_file af;
    int rc = pk_atomic_open(&af, path, &e);
    PK_CHECK(failures, rc == PK_OK && af.fp && strstr(af.tmp, ".tmp."), "atomic open: %s", e.msg);
    if (rc != PK_OK)
        return;
    fputs("draft", af.fp);
    PK_CHECK(failures, access(path, F_OK) != 0, "final name exists before commit");
    pk_atomic_abort(&af);
    PK_CHECK(failures, count_dir(dir) == 0, "abort left a file");
    pk_atomic_abort(&af); /* second abort is harmless */

    rc = pk_atomic_open(&af, path, &e);
    if (rc == PK_OK) {
        fputs("final\n", af.fp);
        rc = pk_atomic_commit(&af, &e);
    }
    PK_CHECK(failures, rc == PK_OK && file_equals(path, "final\n", 6) && count_dir(dir) == 1,
             "atomic commit: %s", e.msg);
    PK_CHECK(failures, af.fp == NULL && af.tmp == NULL, "commit releases the handle");

    /* An output that is an input (also through a hard link), or not a
     * regular file, is refused; a missing output or a NULL input is fine. */
    char link_path[600], other[600];
    snprintf(link_path, sizeof link_path, "%s/link.txt", dir);
    snprintf(other, sizeof other, "%s/other.txt", dir);
    const char *ins[] = {NULL, other, link_path};
    PK_CHECK(failures, link(path, link_path) == 0, "link");
    rc = pk_check_output(path, ins, 3, &e);
    PK_CHECK(failures, rc == PK_EINVAL && strstr(e.msg, "is the same file as") &&
                           strstr(e.msg, "link.txt"), "same file: %d %s", rc, e.msg);
    PK_CHECK(failures, pk_check_output(other, ins, 3, &e) == PK_OK, "missing output: %s", e.msg);
    rc = pk_check_output("/dev/null", NULL, 0, &e);
    PK_CHECK(failures, rc == PK_EINVAL && strstr(e.msg, "not a regular file"), "device: %s",
             e.msg);
    rc = pk_atomic_open(&af, "/dev/null", &e);
    PK_CHECK(failures, rc == PK_EINVAL && !af.fp, "atomic open of a device: %d %s", rc, e.msg);
    unlink(link_path);
    unlink(path);
    printf("  ok  atomic file open/abort/commit, output checks\n");
}

int main(void)
{
    char dir[] = "/tmp/pspkd-test-st-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_round_trip();
    test_malformed();
    test_atomic_file(dir);
    test_files(dir);
    if (rmdir(dir) != 0)
        fprintf(stderr, "  note: could not remove %s: %s\n", dir, strerror(errno));
    if (failures)
        fprintf(stderr, "test_safetensors: %d failure(s)\n", failures);
    return failures != 0;
}
