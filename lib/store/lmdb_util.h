/* LMDB helpers for packs. A pack is ONE file opened with MDB_NOSUBDIR and
 * MDB_NOLOCK: written once by one process at a temporary path and renamed
 * into place, then only read, so no lock file is needed (readers can open a
 * pack on a read-only file system). Every LMDB status becomes PK_ELMDB (or
 * PK_EIO for a system errno such as ENOSPC/EFBIG) with mdb_strerror's text. */
#ifndef PSPKD_LMDB_UTIL_H
#define PSPKD_LMDB_UTIL_H

#include <stddef.h>
#include <lmdb.h>
#include "core/err.h"

/* Turns an LMDB return code into a pk_err: "what: mdb_strerror(rc)". */
int pk_lmdb_fail(pk_err *e, int rc, const char *what);

/* ---- writing ---- */
typedef struct pk_lmdb_writer pk_lmdb_writer;

/* Creates "<path>.tmp.<pid>" and opens it for writing. Records are put in
 * batches of `batch` per transaction (0: 64). When `force` is 0 and path
 * exists, fails with PK_EIO ("exists (use --force)"). */
int pk_lmdb_writer_open(pk_lmdb_writer **w, const char *path, int batch, int force,
                        pk_err *e);
/* Copies key/value into the current batch; commits the batch when full.
 * On MDB_MAP_FULL the map size is doubled and the batch retried. */
int pk_lmdb_writer_put(pk_lmdb_writer *w, const char *key, const void *val, size_t len,
                       pk_err *e);
/* Commits the last batch, syncs, closes and renames the file onto path.
 * Frees w whatever the outcome; on failure the temporary file is removed. */
int pk_lmdb_writer_finish(pk_lmdb_writer *w, pk_err *e);
/* Closes, removes the temporary file and frees w (NULL is fine). */
void pk_lmdb_writer_abort(pk_lmdb_writer *w);
/* The temporary path being written (for messages). */
const char *pk_lmdb_writer_tmp_path(const pk_lmdb_writer *w);

/* ---- reading ---- */
typedef struct pk_lmdb_reader {
    MDB_env *env;
    MDB_dbi dbi;
} pk_lmdb_reader;

/* Opens a pack read-only (MDB_RDONLY | MDB_NOSUBDIR | MDB_NOLOCK |
 * MDB_NOTLS): any number of threads may each hold their own read txn. */
int pk_lmdb_open_read(pk_lmdb_reader *r, const char *path, pk_err *e);
void pk_lmdb_close(pk_lmdb_reader *r);
int pk_lmdb_txn_begin(MDB_txn **txn, const pk_lmdb_reader *r, pk_err *e);
/* Looks up key; *val points into the map (valid until the txn ends).
 * PK_ENOTFOUND when absent. */
int pk_lmdb_get(MDB_txn *txn, const pk_lmdb_reader *r, const char *key, MDB_val *val,
                pk_err *e);
/* Calls fn for each entry in key order, stopping at the first non-zero
 * return (which is returned). Keys are not NUL-terminated. */
typedef int (*pk_lmdb_visit_fn)(const MDB_val *key, const MDB_val *val, void *user,
                                pk_err *e);
int pk_lmdb_foreach(MDB_txn *txn, const pk_lmdb_reader *r, pk_lmdb_visit_fn fn, void *user,
                    pk_err *e);
/* Number of entries (including the metadata record). */
int pk_lmdb_count(const pk_lmdb_reader *r, size_t *n, pk_err *e);

#endif
