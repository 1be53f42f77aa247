/* The pack writer: temp file, batched transactions, map growth, rename.
 * See pack.h for the one-file, no-lock layout. */
#include "store/pack.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/atomic_file.h"
#include "store/lmdb_util_impl.h"

/* The map starts small and doubles on MDB_MAP_FULL, so a pack of any size
 * gets a map that fits it without a size option. The file itself only grows
 * as pages are written (no MDB_WRITEMAP). */
#define MAP_INITIAL ((size_t)1 << 20)
#define MAP_LIMIT ((size_t)1 << 42)

struct item {
    char *key;
    void *val;
    size_t len;
};

struct pk_pack_writer {
    MDB_env *env;
    char *path, *tmp;
    size_t mapsize;
    int batch, n;
    struct item *items;
};

static void clear_batch(pk_pack_writer *w)
{
    for (int i = 0; i < w->n; i++) {
        free(w->items[i].key);
        free(w->items[i].val);
    }
    w->n = 0;
}

static void destroy(pk_pack_writer *w, int remove_tmp)
{
    if (!w)
        return;
    clear_batch(w);
    if (w->env)
        mdb_env_close(w->env);
    if (remove_tmp && w->tmp)
        unlink(w->tmp);
    free(w->items);
    free(w->path);
    free(w->tmp);
    free(w);
}

int pk_pack_writer_open(pk_pack_writer **out, const char *path, int batch, int force,
                        pk_err *e)
{
    struct stat st;
    *out = NULL;
    int rc = pk_check_output(path, NULL, 0, e); /* never replace a device or a folder */
    if (rc)
        return rc;
    if (!force && lstat(path, &st) == 0)
        return pk_fail(e, PK_EIO, "%s: exists (use --force to replace it)", path);
    if (!force && errno != ENOENT)
        return pk_fail(e, PK_EIO, "%s: %s", path, strerror(errno));
    pk_pack_writer *w = calloc(1, sizeof *w);
    if (!w)
        return pk_fail(e, PK_ENOMEM, "out of memory");
    w->batch = batch > 0 ? batch : 64;
    size_t n = strlen(path) + 32;
    w->path = strdup(path);
    w->tmp = malloc(n);
    w->items = calloc((size_t)w->batch, sizeof *w->items);
    if (!w->path || !w->tmp || !w->items) {
        destroy(w, 0);
        return pk_fail(e, PK_ENOMEM, "out of memory");
    }
    snprintf(w->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    if (unlink(w->tmp) != 0 && errno != ENOENT) { /* a stale temp of a dead run with our pid */
        pk_fail(e, PK_EIO, "%s: %s", w->tmp, strerror(errno));
        destroy(w, 0);
        return PK_EIO;
    }
    w->mapsize = MAP_INITIAL;
    rc = mdb_env_create(&w->env);
    if (rc) {
        w->env = NULL;
        int code = pk_lmdb_fail(e, rc, "mdb_env_create");
        destroy(w, 0);
        return code;
    }
    rc = mdb_env_set_mapsize(w->env, w->mapsize);
    /* NOLOCK: nobody else knows the temp path. NOSYNC: one fsync at the end
     * (pk_pack_writer_finish) instead of one per batch. */
    if (!rc)
        rc = mdb_env_open(w->env, w->tmp, MDB_NOSUBDIR | MDB_NOLOCK | MDB_NOSYNC, 0644);
    if (rc) {
        char what[512];
        snprintf(what, sizeof what, "%s: cannot create %s", w->path, w->tmp);
        int code = pk_lmdb_fail(e, rc, what);
        destroy(w, 1);
        return code;
    }
    *out = w;
    return PK_OK;
}

const char *pk_pack_writer_tmp_path(const pk_pack_writer *w) { return w->tmp; }

/* A failed write names the output, and says what a short write (LMDB's
 * EIO), ENOSPC or EFBIG most likely means. */
static int write_fail(pk_pack_writer *w, int rc, pk_err *e)
{
    char what[512];
    int full = rc == EIO || rc == ENOSPC || rc == EFBIG;
    snprintf(what, sizeof what, "%s: writing failed%s", w->path,
             full ? " (disk full or file size limit?)" : "");
    return pk_lmdb_fail(e, rc, what);
}

/* Writes the batch in one transaction; on MDB_MAP_FULL doubles the map and
 * writes it again (the failed transaction left nothing behind). */
static int flush(pk_pack_writer *w, pk_err *e)
{
    for (;;) {
        MDB_txn *txn;
        MDB_dbi dbi;
        int rc = mdb_txn_begin(w->env, NULL, 0, &txn);
        if (rc)
            return pk_lmdb_fail(e, rc, w->tmp);
        rc = mdb_dbi_open(txn, NULL, 0, &dbi);
        for (int i = 0; !rc && i < w->n; i++) {
            MDB_val k = {strlen(w->items[i].key), w->items[i].key};
            MDB_val v = {w->items[i].len, w->items[i].val};
            rc = mdb_put(txn, dbi, &k, &v, MDB_NOOVERWRITE);
            if (rc == MDB_KEYEXIST) {
                mdb_txn_abort(txn);
                return pk_fail(e, PK_EINVAL, "%s: duplicate key %s", w->tmp, w->items[i].key);
            }
        }
        if (rc)
            mdb_txn_abort(txn);
        else
            rc = mdb_txn_commit(txn); /* frees txn whatever the result */
        if (rc == MDB_MAP_FULL && w->mapsize < MAP_LIMIT) {
            w->mapsize *= 2;
            rc = mdb_env_set_mapsize(w->env, w->mapsize);
            if (rc)
                return pk_lmdb_fail(e, rc, w->tmp);
            continue;
        }
        if (rc)
            return write_fail(w, rc, e);
        clear_batch(w);
        return PK_OK;
    }
}

int pk_pack_writer_put(pk_pack_writer *w, const char *key, const void *val, size_t len,
                       pk_err *e)
{
    struct item *it = &w->items[w->n];
    it->key = strdup(key);
    it->val = malloc(len ? len : 1);
    if (!it->key || !it->val) {
        free(it->key);
        free(it->val);
        it->key = NULL;
        it->val = NULL;
        return pk_fail(e, PK_ENOMEM, "out of memory");
    }
    memcpy(it->val, val, len);
    it->len = len;
    w->n++;
    return w->n == w->batch ? flush(w, e) : PK_OK;
}

int pk_pack_writer_finish(pk_pack_writer *w, pk_err *e)
{
    int rc = w->n ? flush(w, e) : PK_OK;
    if (rc == PK_OK) {
        int lrc = mdb_env_sync(w->env, 1);
        if (lrc)
            rc = write_fail(w, lrc, e);
    }
    if (rc == PK_OK) {
        mdb_env_close(w->env);
        w->env = NULL;
        if (rename(w->tmp, w->path) != 0)
            rc = pk_fail(e, PK_EIO, "rename %s -> %s: %s", w->tmp, w->path, strerror(errno));
    }
    destroy(w, rc != PK_OK);
    return rc;
}

void pk_pack_writer_abort(pk_pack_writer *w) { destroy(w, 1); }
