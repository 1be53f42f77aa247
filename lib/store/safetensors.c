/* safetensors reader and writer. The reader takes nothing on trust: every
 * length, count, dtype, shape and offset in the header is checked against
 * the bytes actually present before any tensor pointer is handed out. */
#include "store/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/atomic_file.h"
#include "core/half.h"
#include "core/le_bytes.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this code copies it as host order"
#endif

/* A header longer than this is not a checkpoint; refuse it before parsing. */
#define ST_MAX_HEADER ((uint64_t)100 << 20)
/* JSON numbers are doubles in cJSON: integers above 2^53 are not exact. */
#define ST_MAX_INT 9007199254740992.0

struct pk_st_file {
    unsigned char *buf; /* the whole image; tensor data points into it */
    int n;
    pk_st_tensor *t;             /* header order */
    const pk_st_tensor **sorted; /* by name, for pk_st_find */
    int nmeta;
    char **meta_key, **meta_val;
};

const char *pk_dtype_name(pk_dtype d)
{
    switch (d) {
    case PK_F32: return "F32";
    case PK_F16: return "F16";
    case PK_I64: return "I64";
    }
    return "?";
}

static size_t dtype_size(pk_dtype d)
{
    switch (d) {
    case PK_F32: return 4;
    case PK_F16: return 2;
    case PK_I64: return 8;
    }
    return 0;
}

static int dtype_parse(const char *s, pk_dtype *d)
{
    static const pk_dtype all[] = {PK_F32, PK_F16, PK_I64};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(s, pk_dtype_name(all[i])) == 0) {
            *d = all[i];
            return 1;
        }
    return 0;
}

const char *pk_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t used = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%" PRId64, i ? "," : "", shape[i]);
    if (used < cap)
        snprintf(buf + used, cap - used, "]");
    return buf;
}

/* Frees n strings and the array holding them (the metadata of readers and
 * writers). */
static void free_strings(char **s, int n)
{
    for (int i = 0; s && i < n; i++)
        free(s[i]);
    free(s);
}

void pk_st_close(pk_st_file *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->n; i++)
        free((char *)f->t[i].name);
    free_strings(f->meta_key, f->nmeta);
    free_strings(f->meta_val, f->nmeta);
    free(f->t);
    free(f->sorted);
    free(f->buf);
    free(f);
}

/* A JSON number that is an exact non-negative integer (<= 2^53). */
static int json_uint(const cJSON *j, uint64_t *v)
{
    if (!cJSON_IsNumber(j))
        return 0;
    double d = j->valuedouble;
    if (!(d >= 0 && d <= ST_MAX_INT) || d != (double)(uint64_t)d)
        return 0;
    *v = (uint64_t)d;
    return 1;
}

static int parse_meta(pk_st_file *f, const cJSON *meta, pk_err *e)
{
    if (!cJSON_IsObject(meta))
        return pk_fail(e, PK_EFORMAT, "__metadata__ is not a JSON object");
    int n = cJSON_GetArraySize(meta);
    f->meta_key = calloc((size_t)n + 1, sizeof *f->meta_key);
    f->meta_val = calloc((size_t)n + 1, sizeof *f->meta_val);
    if (!f->meta_key || !f->meta_val)
        return pk_fail(e, PK_ENOMEM, "out of memory");
    const cJSON *kv;
    cJSON_ArrayForEach(kv, meta)
    {
        if (!cJSON_IsString(kv))
            return pk_fail(e, PK_EFORMAT, "__metadata__ value of '%s' is not a string",
                           kv->string);
        for (int i = 0; i < f->nmeta; i++)
            if (strcmp(f->meta_key[i], kv->string) == 0)
                return pk_fail(e, PK_EFORMAT, "duplicate __metadata__ key '%s'", kv->string);
        f->meta_key[f->nmeta] = strdup(kv->string);
        f->meta_val[f->nmeta] = strdup(kv->valuestring);
        f->nmeta++;
        if (!f->meta_key[f->nmeta - 1] || !f->meta_val[f->nmeta - 1])
            return pk_fail(e, PK_ENOMEM, "out of memory");
    }
    return PK_OK;
}

/* One "name": {"dtype", "shape", "data_offsets"} entry; data is the data
 * section (data_len bytes). */
static int parse_tensor(pk_st_tensor *t, const cJSON *j, const unsigned char *data,
                        size_t data_len, pk_err *e)
{
    const char *name = t->name;
    if (!cJSON_IsObject(j))
        return pk_fail(e, PK_EFORMAT, "tensor '%s': entry is not a JSON object", name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(j, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(j, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(j, "data_offsets");
    if (!dt || !sh || !off)
        return pk_fail(e, PK_EFORMAT, "tensor '%s': missing %s", name,
                       !dt ? "dtype" : !sh ? "shape" : "data_offsets");
    if (!cJSON_IsString(dt))
        return pk_fail(e, PK_EFORMAT, "tensor '%s': dtype is not a string", name);
    if (!dtype_parse(dt->valuestring, &t->dtype))
        return pk_fail(e, PK_EFORMAT, "tensor '%s': unsupported dtype '%s' (F32, F16, I64 are)",
                       name, dt->valuestring);
    if (!cJSON_IsArray(sh))
        return pk_fail(e, PK_EFORMAT, "tensor '%s': shape is not an array", name);
    int ndim = cJSON_GetArraySize(sh);
    if (ndim > PK_ST_MAX_DIMS)
        return pk_fail(e, PK_EFORMAT, "tensor '%s': %d dimensions (at most %d supported)", name,
                       ndim, PK_ST_MAX_DIMS);
    t->ndim = ndim;
    size_t numel = 1;
    const cJSON *d;
    int k = 0;
    cJSON_ArrayForEach(d, sh)
    {
        uint64_t v;
        if (!json_uint(d, &v))
            return pk_fail(e, PK_EFORMAT,
                           "tensor '%s': shape[%d] is not a non-negative integer", name, k);
        if (v > SIZE_MAX || __builtin_mul_overflow(numel, (size_t)v, &numel))
            return pk_fail(e, PK_EFORMAT, "tensor '%s': shape overflows", name);
        t->shape[k++] = (int64_t)v;
    }
    t->numel = numel;
    if (__builtin_mul_overflow(numel, dtype_size(t->dtype), &t->nbytes))
        return pk_fail(e, PK_EFORMAT, "tensor '%s': byte size overflows", name);
    uint64_t b, en;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 ||
        !json_uint(cJSON_GetArrayItem(off, 0), &b) || !json_uint(cJSON_GetArrayItem(off, 1), &en))
        return pk_fail(e, PK_EFORMAT,
                       "tensor '%s': data_offsets is not a pair of non-negative integers", name);
    if (b > en)
        return pk_fail(e, PK_EFORMAT, "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                       "] end before they begin", name, b, en);
    if (en > data_len)
        return pk_fail(e, PK_EFORMAT, "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                       "] beyond the %zu-byte data section (truncated file?)", name, b, en,
                       data_len);
    if (en - b != t->nbytes) {
        char s[160];
        return pk_fail(e, PK_EFORMAT, "tensor '%s': %s %s needs %zu bytes, data_offsets give %"
                       PRIu64, name, pk_dtype_name(t->dtype),
                       pk_shape_str(s, sizeof s, t->ndim, t->shape), t->nbytes, en - b);
    }
    t->data = data + b;
    return PK_OK;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp((*(const pk_st_tensor *const *)a)->name, (*(const pk_st_tensor *const *)b)->name);
}

static int cmp_data(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)(*(const pk_st_tensor *const *)a)->data;
    uintptr_t y = (uintptr_t)(*(const pk_st_tensor *const *)b)->data;
    return (x > y) - (x < y);
}

/* Duplicate names, then overlapping byte ranges (empty tensors overlap nothing). */
static int check_layout(pk_st_file *f, pk_err *e)
{
    if (f->n == 0)
        return PK_OK;
    qsort(f->sorted, (size_t)f->n, sizeof *f->sorted, cmp_name);
    for (int i = 1; i < f->n; i++)
        if (strcmp(f->sorted[i - 1]->name, f->sorted[i]->name) == 0)
            return pk_fail(e, PK_EFORMAT, "duplicate tensor name '%s'", f->sorted[i]->name);
    const pk_st_tensor **by_off = malloc((size_t)f->n * sizeof *by_off);
    if (!by_off)
        return pk_fail(e, PK_ENOMEM, "out of memory");
    for (int i = 0; i < f->n; i++)
        by_off[i] = &f->t[i];
    qsort(by_off, (size_t)f->n, sizeof *by_off, cmp_data);
    const pk_st_tensor *prev = NULL;
    int rc = PK_OK;
    for (int i = 0; i < f->n && rc == PK_OK; i++) {
        const pk_st_tensor *t = by_off[i];
        if (t->nbytes == 0)
            continue;
        if (prev && (const unsigned char *)prev->data + prev->nbytes >
                        (const unsigned char *)t->data)
            rc = pk_fail(e, PK_EFORMAT, "tensors '%s' and '%s' overlap in the data section",
                         prev->name, t->name);
        prev = t;
    }
    free(by_off);
    return rc;
}

static int parse_header(pk_st_file *f, size_t len, pk_err *e)
{
    if (len < 8)
        return pk_fail(e, PK_EFORMAT, "too short for safetensors: %zu bytes, need at least 8",
                       len);
    uint64_t hlen = pk_get64(f->buf);
    if (hlen > ST_MAX_HEADER)
        return pk_fail(e, PK_EFORMAT, "header length %" PRIu64 " is absurd (limit %" PRIu64
                       " bytes): not a safetensors file?", hlen, ST_MAX_HEADER);
    if (hlen > len - 8)
        return pk_fail(e, PK_EFORMAT, "header length %" PRIu64 " exceeds the %zu bytes after the"
                       " length field (truncated file?)", hlen, len - 8);
    const char *h = (const char *)f->buf + 8;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(h, (size_t)hlen, &end, 0);
    if (!root) {
        /* cJSON leaves end at the failure point (or NULL if it did not get going). */
        size_t at = end && end >= h && end <= h + hlen ? (size_t)(end - h) : 0;
        return pk_fail(e, PK_EFORMAT, "header is not valid JSON (near byte %zu of %" PRIu64 ")",
                       at, hlen);
    }
    int rc = PK_OK;
    /* Only padding may follow the JSON value. */
    for (const char *p = end; p < h + hlen; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            rc = pk_fail(e, PK_EFORMAT, "header has trailing bytes after the JSON object");
            goto out;
        }
    if (!cJSON_IsObject(root)) {
        rc = pk_fail(e, PK_EFORMAT, "header is not a JSON object");
        goto out;
    }
    int count = cJSON_GetArraySize(root);
    f->t = calloc((size_t)count + 1, sizeof *f->t);
    f->sorted = calloc((size_t)count + 1, sizeof *f->sorted);
    if (!f->t || !f->sorted) {
        rc = pk_fail(e, PK_ENOMEM, "out of memory");
        goto out;
    }
    const unsigned char *data = f->buf + 8 + hlen;
    size_t data_len = len - 8 - (size_t)hlen;
    int seen_meta = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, root)
    {
        if (strcmp(it->string, "__metadata__") == 0) {
            if (seen_meta++) {
                rc = pk_fail(e, PK_EFORMAT, "duplicate __metadata__");
                goto out;
            }
            if ((rc = parse_meta(f, it, e)) != PK_OK)
                goto out;
            continue;
        }
        pk_st_tensor *t = &f->t[f->n];
        if (!(t->name = strdup(it->string))) {
            rc = pk_fail(e, PK_ENOMEM, "out of memory");
            goto out;
        }
        f->sorted[f->n] = t;
        f->n++;
        if ((rc = parse_tensor(t, it, data, data_len, e)) != PK_OK)
            goto out;
    }
    rc = check_layout(f, e);
out:
    cJSON_Delete(root);
    return rc;
}

/* Takes ownership of buf (freed on failure). */
static int parse_owned(pk_st_file **out, unsigned char *buf, size_t len, pk_err *e)
{
    *out = NULL;
    pk_st_file *f = calloc(1, sizeof *f);
    if (!f) {
        free(buf);
        return pk_fail(e, PK_ENOMEM, "out of memory");
    }
    f->buf = buf;
    int rc = parse_header(f, len, e);
    if (rc != PK_OK) {
        pk_st_close(f);
        return rc;
    }
    *out = f;
    return PK_OK;
}

int pk_st_parse(pk_st_file **out, const void *buf, size_t len, pk_err *e)
{
    *out = NULL;
    if (!buf && len)
        return pk_fail(e, PK_EINVAL, "NULL buffer");
    unsigned char *copy = malloc(len ? len : 1);
    if (!copy)
        return pk_fail(e, PK_ENOMEM, "out of memory (%zu bytes)", len);
    if (len)
        memcpy(copy, buf, len);
    return parse_owned(out, copy, len, e);
}

int pk_st_open(pk_st_file **out, const char *path, pk_err *e)
{
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return pk_fail(e, errno == ENOENT ? PK_ENOTFOUND : PK_EIO, "%s: %s", path,
                       strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) != 0) {
        int err = errno;
        fclose(fp);
        return pk_fail(e, PK_EIO, "%s: %s", path, strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        fclose(fp);
        return pk_fail(e, PK_EIO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > SIZE_MAX / 2) {
        fclose(fp);
        return pk_fail(e, PK_EIO, "%s: file too large", path);
    }
    size_t len = (size_t)st.st_size;
    unsigned char *buf = malloc(len ? len : 1);
    if (!buf) {
        fclose(fp);
        return pk_fail(e, PK_ENOMEM, "%s: out of memory (%zu bytes)", path, len);
    }
    size_t got = fread(buf, 1, len, fp);
    int bad = ferror(fp);
    fclose(fp);
    if (bad || got != len) {
        free(buf);
        return pk_fail(e, PK_EIO, "%s: read %zu of %zu bytes", path, got, len);
    }
    int rc = parse_owned(out, buf, len, e);
    if (rc != PK_OK)
        pk_wrap(e, "%s", path);
    return rc;
}

int pk_st_count(const pk_st_file *f) { return f->n; }

const pk_st_tensor *pk_st_at(const pk_st_file *f, int i)
{
    return i >= 0 && i < f->n ? &f->t[i] : NULL;
}

const pk_st_tensor *pk_st_find(const pk_st_file *f, const char *name)
{
    pk_st_tensor key = {.name = name};
    const pk_st_tensor *kp = &key;
    const pk_st_tensor **hit =
        f->n ? bsearch(&kp, f->sorted, (size_t)f->n, sizeof *f->sorted, cmp_name) : NULL;
    return hit ? *hit : NULL;
}

const char *pk_st_meta(const pk_st_file *f, const char *key)
{
    for (int i = 0; i < f->nmeta; i++)
        if (strcmp(f->meta_key[i], key) == 0)
            return f->meta_val[i];
    return NULL;
}

int pk_st_read_f32(const pk_st_file *f, const char *name, float *dst, size_t n, pk_err *e)
{
    const pk_st_tensor *t = pk_st_find(f, name);
    if (!t)
        return pk_fail(e, PK_ENOTFOUND, "tensor '%s' not found", name);
    if (t->numel != n) {
        char s[160];
        return pk_fail(e, PK_EINVAL, "tensor '%s' has shape %s (%zu elements), expected %zu",
                       name, pk_shape_str(s, sizeof s, t->ndim, t->shape), t->numel, n);
    }
    pk_st_tensor_f32(t, dst);
    return PK_OK;
}

void pk_st_tensor_f32(const pk_st_tensor *t, float *dst)
{
    /* Offsets in the file need not be aligned: copy element by element. */
    const unsigned char *p = t->data;
    size_t n = t->numel;
    switch (t->dtype) {
    case PK_F32:
        if (n)
            memcpy(dst, p, n * sizeof *dst);
        break;
    case PK_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t u;
            memcpy(&u, p + 2 * i, sizeof u);
            dst[i] = pk_f16_to_f32(u);
        }
        break;
    case PK_I64:
        for (size_t i = 0; i < n; i++) {
            int64_t v;
            memcpy(&v, p + 8 * i, sizeof v);
            dst[i] = (float)v;
        }
        break;
    }
}

long pk_st_first_nonfinite(const pk_st_tensor *t)
{
    const unsigned char *p = t->data;
    for (size_t i = 0; i < t->numel; i++) {
        if (t->dtype == PK_F32) {
            uint32_t u;
            memcpy(&u, p + 4 * i, sizeof u);
            if ((u & 0x7f800000u) == 0x7f800000u)
                return (long)i;
        } else if (t->dtype == PK_F16) {
            uint16_t u;
            memcpy(&u, p + 2 * i, sizeof u);
            if ((u & 0x7c00u) == 0x7c00u)
                return (long)i;
        }
    }
    return -1;
}

/* ---- writer ---- */

typedef struct st_entry {
    char *name; /* after the data, in the same allocation */
    pk_dtype dtype;
    int ndim;
    int64_t shape[PK_ST_MAX_DIMS];
    size_t nbytes;
    void *data;
} st_entry;

struct pk_st_writer {
    st_entry *t;
    int n, cap;
    char **mk, **mv;
    int nm, mcap;
};

pk_st_writer *pk_st_writer_new(void) { return calloc(1, sizeof(pk_st_writer)); }

void pk_st_writer_free(pk_st_writer *w)
{
    if (!w)
        return;
    for (int i = 0; i < w->n; i++)
        free(w->t[i].data);
    free_strings(w->mk, w->nm);
    free_strings(w->mv, w->nm);
    free(w->t);
    free(w);
}

int pk_st_add(pk_st_writer *w, const char *name, pk_dtype dtype, int ndim,
              const int64_t *shape, const void *data, pk_err *e)
{
    if (!name)
        return pk_fail(e, PK_EINVAL, "tensor name is NULL");
    if (strcmp(name, "__metadata__") == 0)
        return pk_fail(e, PK_EINVAL, "'__metadata__' is reserved, not a tensor name");
    if (dtype_size(dtype) == 0)
        return pk_fail(e, PK_EINVAL, "tensor '%s': bad dtype %d", name, (int)dtype);
    if (ndim < 0 || ndim > PK_ST_MAX_DIMS || (ndim && !shape))
        return pk_fail(e, PK_EINVAL, "tensor '%s': bad rank %d", name, ndim);
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return pk_fail(e, PK_EINVAL, "duplicate tensor name '%s'", name);
    size_t numel = 1, nbytes;
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0 || (uint64_t)shape[i] > SIZE_MAX ||
            __builtin_mul_overflow(numel, (size_t)shape[i], &numel))
            return pk_fail(e, PK_EINVAL, "tensor '%s': bad shape", name);
    if (__builtin_mul_overflow(numel, dtype_size(dtype), &nbytes))
        return pk_fail(e, PK_EINVAL, "tensor '%s': too large", name);
    if (nbytes && !data)
        return pk_fail(e, PK_EINVAL, "tensor '%s': NULL data", name);
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 64;
        st_entry *t = realloc(w->t, (size_t)cap * sizeof *t);
        if (!t)
            return pk_fail(e, PK_ENOMEM, "out of memory");
        w->t = t;
        w->cap = cap;
    }
    st_entry *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    size_t nlen = strlen(name) + 1;
    if (!(t->data = malloc(nbytes + nlen)))
        return pk_fail(e, PK_ENOMEM, "tensor '%s': out of memory (%zu bytes)", name, nbytes);
    t->name = memcpy((char *)t->data + nbytes, name, nlen);
    if (nbytes)
        memcpy(t->data, data, nbytes);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    t->nbytes = nbytes;
    w->n++;
    return PK_OK;
}

int pk_st_set_meta(pk_st_writer *w, const char *key, const char *value, pk_err *e)
{
    if (!key || !value)
        return pk_fail(e, PK_EINVAL, "metadata key or value is NULL");
    char *v = strdup(value);
    if (!v)
        return pk_fail(e, PK_ENOMEM, "out of memory");
    for (int i = 0; i < w->nm; i++)
        if (strcmp(w->mk[i], key) == 0) { /* setting again replaces */
            free(w->mv[i]);
            w->mv[i] = v;
            return PK_OK;
        }
    if (w->nm == w->mcap) {
        int cap = w->mcap ? 2 * w->mcap : 16;
        char **mk = realloc(w->mk, (size_t)cap * sizeof *mk);
        if (mk)
            w->mk = mk;
        char **mv = mk ? realloc(w->mv, (size_t)cap * sizeof *mv) : NULL;
        if (mv)
            w->mv = mv;
        if (!mk || !mv) {
            free(v);
            return pk_fail(e, PK_ENOMEM, "out of memory");
        }
        w->mcap = cap;
    }
    if (!(w->mk[w->nm] = strdup(key))) {
        free(v);
        return pk_fail(e, PK_ENOMEM, "out of memory");
    }
    w->mv[w->nm++] = v;
    return PK_OK;
}

/* The JSON header, padded with spaces to a multiple of 8 bytes (so the data
 * section starts 8-aligned), and the data section's length. */
static int build_header(const pk_st_writer *w, char **hdr, size_t *hlen, size_t *data_len,
                        pk_err *e)
{
    *hdr = NULL;
    cJSON *root = cJSON_CreateObject();
    int ok = root != NULL;
    if (ok && w->nm) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        ok = meta != NULL;
        for (int i = 0; ok && i < w->nm; i++)
            ok = cJSON_AddStringToObject(meta, w->mk[i], w->mv[i]) != NULL;
    }
    size_t off = 0;
    for (int i = 0; ok && i < w->n; i++) {
        const st_entry *t = &w->t[i];
        /* Integers are written by hand (as raw JSON) so they stay exact. */
        char shape[PK_ST_MAX_DIMS * 22 + 3], offs[48];
        pk_shape_str(shape, sizeof shape, t->ndim, t->shape);
        snprintf(offs, sizeof offs, "[%zu,%zu]", off, off + t->nbytes);
        off += t->nbytes;
        cJSON *o = cJSON_AddObjectToObject(root, t->name);
        ok = o && cJSON_AddStringToObject(o, "dtype", pk_dtype_name(t->dtype)) &&
             cJSON_AddRawToObject(o, "shape", shape) &&
             cJSON_AddRawToObject(o, "data_offsets", offs);
    }
    char *json = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!json)
        return pk_fail(e, PK_ENOMEM, "out of memory building the safetensors header");
    size_t n = strlen(json), padded = (n + 7) & ~(size_t)7;
    *hdr = malloc(padded);
    if (*hdr) {
        memcpy(*hdr, json, n);
        memset(*hdr + n, ' ', padded - n);
    }
    cJSON_free(json);
    if (!*hdr)
        return pk_fail(e, PK_ENOMEM, "out of memory building the safetensors header");
    *hlen = padded;
    *data_len = off;
    return PK_OK;
}

int pk_st_serialize(pk_st_writer *w, void **buf, size_t *len, pk_err *e)
{
    *buf = NULL;
    *len = 0;
    char *hdr;
    size_t hlen, dlen;
    int rc = build_header(w, &hdr, &hlen, &dlen, e);
    if (rc != PK_OK)
        return rc;
    size_t total = 8 + hlen + dlen;
    unsigned char *out = malloc(total);
    if (!out) {
        free(hdr);
        return pk_fail(e, PK_ENOMEM, "out of memory (%zu bytes)", total);
    }
    pk_put64(out, hlen);
    memcpy(out + 8, hdr, hlen);
    free(hdr);
    unsigned char *p = out + 8 + hlen;
    for (int i = 0; i < w->n; i++) {
        if (w->t[i].nbytes)
            memcpy(p, w->t[i].data, w->t[i].nbytes);
        p += w->t[i].nbytes;
    }
    *buf = out;
    *len = total;
    return PK_OK;
}

int pk_st_write(pk_st_writer *w, const char *path, pk_err *e)
{
    char *hdr;
    size_t hlen, dlen;
    int rc = build_header(w, &hdr, &hlen, &dlen, e);
    if (rc != PK_OK)
        return pk_wrap(e, "%s", path);
    pk_atomic_file af;
    if ((rc = pk_atomic_open(&af, path, e)) != PK_OK) {
        free(hdr);
        return rc;
    }
    unsigned char lenbuf[8];
    pk_put64(lenbuf, hlen);
    int ok = fwrite(lenbuf, 1, 8, af.fp) == 8 && fwrite(hdr, 1, hlen, af.fp) == hlen;
    for (int i = 0; ok && i < w->n; i++)
        ok = fwrite(w->t[i].data, 1, w->t[i].nbytes, af.fp) == w->t[i].nbytes;
    free(hdr);
    if (!ok) {
        int err = errno;
        pk_atomic_abort(&af);
        return pk_fail(e, PK_EIO, "%s: write failed: %s", path, strerror(err));
    }
    return pk_atomic_commit(&af, e);
}
