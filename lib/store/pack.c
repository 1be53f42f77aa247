/* Reading packs (see pack.h): the LMDB environment, one read transaction
 * for the pack's own reads, the record keys and the metadata record. */
#include "store/pack.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/le_bytes.h"
#include "store/lmdb_util_impl.h"

struct pk_pack {
    MDB_env *env;
    MDB_dbi dbi;
    MDB_txn *txn; /* the pack's own reads: metadata, pk_pack_get, foreach */
    int count;
    char **keys;  /* count pointers into keybuf, in key order */
    char *keybuf;
    MDB_val meta_val;
    int has_meta, data;
    pk_meta meta; /* decoded when data */
    char path[];
};

struct pk_pack_reader {
    const pk_pack *p;
    MDB_txn *txn;
};

static int is_meta_key(const MDB_val *k)
{
    return k->mv_size == sizeof PK_META_KEY - 1 &&
           !memcmp(k->mv_data, PK_META_KEY, sizeof PK_META_KEY - 1);
}

/* The environment, read-only (MDB_NOTLS: any number of threads may each
 * hold their own read transaction), and the pack's own transaction. */
static int open_env(pk_pack *p, pk_err *e)
{
    struct stat st;
    if (stat(p->path, &st) != 0)
        return pk_fail(e, errno == ENOENT ? PK_ENOTFOUND : PK_EIO, "%s: %s", p->path,
                       strerror(errno));
    if (!S_ISREG(st.st_mode))
        return pk_fail(e, PK_EFORMAT, "%s: not a pack file (packs are single files)", p->path);
    int rc = pk_lmdb_check_file(p->path, e); /* before mapping: no SIGBUS, no assertion */
    if (rc)
        return rc;
    rc = mdb_env_create(&p->env);
    if (rc) {
        p->env = NULL;
        return pk_lmdb_fail(e, rc, "mdb_env_create");
    }
    rc = mdb_env_open(p->env, p->path, MDB_RDONLY | MDB_NOSUBDIR | MDB_NOLOCK | MDB_NOTLS, 0);
    MDB_txn *txn = NULL;
    if (!rc)
        rc = mdb_txn_begin(p->env, NULL, MDB_RDONLY, &txn);
    if (!rc) {
        rc = mdb_dbi_open(txn, NULL, 0, &p->dbi);
        if (rc)
            mdb_txn_abort(txn);
        else
            rc = mdb_txn_commit(txn); /* makes the handle every transaction's */
    }
    if (!rc)
        rc = mdb_txn_begin(p->env, NULL, MDB_RDONLY, &p->txn);
    if (rc) {
        p->txn = NULL;
        return pk_lmdb_fail(e, rc, p->path);
    }
    return PK_OK;
}

/* Every key but the metadata record's, copied into one buffer. */
static int read_keys(pk_pack *p, pk_err *e)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(p->txn, p->dbi, &cur);
    if (rc)
        return pk_lmdb_fail(e, rc, "mdb_cursor_open");
    size_t used = 0, cap = 0;
    MDB_val k, v;
    int ret = PK_OK;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); !rc && !ret;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (is_meta_key(&k)) {
            p->meta_val = v;
            p->has_meta = 1;
            continue;
        }
        if (p->count == INT_MAX - 1) {
            ret = pk_fail(e, PK_EFORMAT, "too many records");
            break;
        }
        if (used + k.mv_size + 1 > cap) {
            size_t ncap = cap ? 2 * cap : 4096;
            while (ncap < used + k.mv_size + 1)
                ncap *= 2;
            char *nb = realloc(p->keybuf, ncap);
            if (!nb) {
                ret = pk_fail(e, PK_ENOMEM, "no memory for the key list");
                break;
            }
            p->keybuf = nb;
            cap = ncap;
        }
        memcpy(p->keybuf + used, k.mv_data, k.mv_size);
        p->keybuf[used + k.mv_size] = '\0';
        used += k.mv_size + 1;
        p->count++;
    }
    if (!ret && rc != MDB_NOTFOUND)
        ret = pk_lmdb_fail(e, rc, "mdb_cursor_get");
    mdb_cursor_close(cur);
    if (ret)
        return ret;
    if (!p->has_meta)
        return pk_fail(e, PK_EFORMAT, "no metadata record (not a pack, or an empty one)");
    p->keys = malloc(((size_t)p->count + 1) * sizeof *p->keys);
    if (!p->keys)
        return pk_fail(e, PK_ENOMEM, "no memory for the key list");
    char *at = p->keybuf;
    for (int i = 0; i < p->count; i++) {
        p->keys[i] = at;
        at += strlen(at) + 1;
    }
    return PK_OK;
}

static int add_record_id(const pk_pack_rec *r, void *user, pk_err *e)
{
    if (r->len < 4)
        return pk_fail(e, PK_EFORMAT, "record %s: %zu bytes", r->key, r->len);
    pk_pack_id_add(user, r->key, pk_get32((const uint8_t *)r->data + r->len - 4));
    return PK_OK;
}

/* The pack id from the records' keys and stored CRCs (one page per record,
 * no decoding) against the metadata's: a pack whose records were changed,
 * added or mixed in is refused. */
static int check_pack_id(const pk_pack *p, pk_err *e)
{
    uint64_t id = PK_PACK_ID_INIT;
    int rc = pk_pack_foreach(p, add_record_id, &id, e);
    if (rc)
        return pk_wrap(e, "%s", p->path);
    if (id != p->meta.pack_id)
        return pk_fail(e, PK_EFORMAT, "%s: the records give pack id %016llx, the metadata "
                       "says %016llx (records changed after packing)", p->path,
                       (unsigned long long)id, (unsigned long long)p->meta.pack_id);
    return PK_OK;
}

static int open_pack(pk_pack **out, const char *path, int data, pk_err *e)
{
    *out = NULL;
    size_t n = strlen(path) + 1;
    pk_pack *p = calloc(1, sizeof *p + n);
    if (!p)
        return pk_fail(e, PK_ENOMEM, "out of memory");
    memcpy(p->path, path, n);
    p->data = data;
    int rc = open_env(p, e); /* the messages name the file */
    if (!rc && (rc = read_keys(p, e)))
        pk_wrap(e, "%s", path);
    if (!rc && data &&
        (rc = pk_meta_decode(&p->meta, p->meta_val.mv_data, p->meta_val.mv_size, e)))
        pk_wrap(e, "%s", path);
    if (!rc && data)
        rc = pk_pack_check_count(p, p->meta.count, e);
    if (!rc && data && p->count == 0)
        rc = pk_fail(e, PK_EFORMAT, "%s: the pack holds no images", path);
    if (!rc && data)
        rc = check_pack_id(p, e);
    if (rc)
        pk_pack_close(p);
    else
        *out = p;
    return rc;
}

int pk_pack_open(pk_pack **out, const char *path, pk_err *e)
{
    return open_pack(out, path, 1, e);
}

int pk_pack_open_raw(pk_pack **out, const char *path, pk_err *e)
{
    return open_pack(out, path, 0, e);
}

void pk_pack_close(pk_pack *p)
{
    if (!p)
        return;
    mdb_txn_abort(p->txn); /* both take NULL */
    mdb_env_close(p->env);
    free(p->keys);
    free(p->keybuf);
    free(p);
}

const char *pk_pack_path(const pk_pack *p) { return p->path; }
const pk_meta *pk_pack_meta(const pk_pack *p) { return p->data ? &p->meta : NULL; }

const void *pk_pack_meta_bytes(const pk_pack *p, size_t *len)
{
    *len = p->meta_val.mv_size;
    return p->meta_val.mv_data;
}

int pk_pack_check_count(const pk_pack *p, long want, pk_err *e)
{
    if (want != p->count)
        return pk_fail(e, PK_EFORMAT, "%s: metadata says %ld records, the pack holds %d",
                       p->path, want, p->count);
    return PK_OK;
}

int pk_pack_count(const pk_pack *p) { return p->count; }

const char *pk_pack_key(const pk_pack *p, int i)
{
    return i >= 0 && i < p->count ? p->keys[i] : NULL;
}

/* LMDB's default order: bytes compared as unsigned, a prefix first, which
 * for NUL-free keys is strcmp's. */
int pk_pack_find(const pk_pack *p, const char *key)
{
    int lo = 0, hi = p->count - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(p->keys[mid], key);
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

static int get_in(MDB_txn *txn, const pk_pack *p, int i, const void **data, size_t *len,
                  pk_err *e)
{
    if (i < 0 || i >= p->count)
        return pk_fail(e, PK_EINVAL, "record %d outside 0..%d", i, p->count - 1);
    MDB_val k = {strlen(p->keys[i]), p->keys[i]}, v;
    int rc = mdb_get(txn, p->dbi, &k, &v);
    if (rc == MDB_NOTFOUND)
        return pk_fail(e, PK_ENOTFOUND, "%s: no such key", p->keys[i]);
    if (rc)
        return pk_lmdb_fail(e, rc, p->keys[i]);
    *data = v.mv_data;
    *len = v.mv_size;
    return PK_OK;
}

int pk_pack_get(const pk_pack *p, int i, const void **data, size_t *len, pk_err *e)
{
    return get_in(p->txn, p, i, data, len, e);
}

int pk_pack_foreach(const pk_pack *p, pk_pack_visit_fn fn, void *user, pk_err *e)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(p->txn, p->dbi, &cur);
    if (rc)
        return pk_lmdb_fail(e, rc, "mdb_cursor_open");
    MDB_val k, v;
    pk_pack_rec r = {0, NULL, NULL, 0};
    int ret = PK_OK;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); !rc && r.index < p->count;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (is_meta_key(&k))
            continue;
        r.key = p->keys[r.index];
        r.data = v.mv_data;
        r.len = v.mv_size;
        if ((ret = fn(&r, user, e)))
            break;
        r.index++;
    }
    if (!ret && rc && rc != MDB_NOTFOUND)
        ret = pk_lmdb_fail(e, rc, "mdb_cursor_get");
    mdb_cursor_close(cur);
    return ret;
}

int pk_pack_reader_open(pk_pack_reader **out, const pk_pack *p, pk_err *e)
{
    *out = NULL;
    pk_pack_reader *r = calloc(1, sizeof *r);
    if (!r)
        return pk_fail(e, PK_ENOMEM, "out of memory");
    int rc = mdb_txn_begin(p->env, NULL, MDB_RDONLY, &r->txn);
    if (rc) {
        free(r);
        return pk_lmdb_fail(e, rc, p->path);
    }
    r->p = p;
    *out = r;
    return PK_OK;
}

int pk_pack_read(pk_pack_reader *r, int i, const void **data, size_t *len, pk_err *e)
{
    return get_in(r->txn, r->p, i, data, len, e);
}

void pk_pack_reader_close(pk_pack_reader *r)
{
    if (!r)
        return;
    mdb_txn_abort(r->txn);
    free(r);
}
