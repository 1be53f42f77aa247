/* Packs: the one-file LMDB layout shared by data packs (pspkd-data(5)) and
 * the teacher-logits cache (pspkd-logits(5)). A pack holds record values
 * under keys that sort in record order, plus one metadata record under
 * PK_META_KEY. It is written once by one process at a temporary path and
 * renamed into place, then only read, so readers need no lock file (they
 * can open a pack on a read-only file system).
 *
 * This header is all the rest of pspkd sees of packs: LMDB itself stays
 * inside lib/store/.
 *
 * Errors, each with one wording, prefixed by the pack's path:
 *   missing file        PK_ENOTFOUND  "PATH: No such file or directory"
 *   not a regular file  PK_EFORMAT    "PATH: not a pack file (packs are single files)"
 *   empty file          PK_EFORMAT    "PATH: empty file (not a pack)"
 *   short file          PK_EFORMAT    "PATH: truncated (N bytes, its meta page says ...)"
 *   bad meta page       PK_EFORMAT    "PATH: not an LMDB file or a damaged one (meta page
 *                                     0: why)" / "PATH: damaged LMDB file (meta page 1: why)"
 *   not LMDB            PK_ELMDB      "PATH: MDB_INVALID: ..."
 *   no metadata record  PK_EFORMAT    "PATH: no metadata record (not a pack, or an empty one)"
 *   count mismatch      PK_EFORMAT    "PATH: metadata says N records, the pack holds M"
 *   no images           PK_EFORMAT    "PATH: the pack holds no images" (data packs)
 *   pack id mismatch    PK_EFORMAT    "PATH: the records give pack id X, the metadata
 *                                     says Y (records changed after packing)" (data packs) */
#ifndef PSPKD_PACK_H
#define PSPKD_PACK_H

#include <stddef.h>
#include "core/err.h"
#include "store/record.h"

/* ---- reading ---- */
typedef struct pk_pack pk_pack;

/* Opens a data pack read-only: its record keys (every key but
 * PK_META_KEY, in key order), its metadata decoded with pk_meta_decode,
 * the metadata's count checked against the records, at least one record,
 * and the pack id recomputed from the keys and the records' stored CRCs. */
int pk_pack_open(pk_pack **out, const char *path, pk_err *e);
/* The same for any pack-shaped file (the logits cache): the metadata
 * record must be present, but is left to the caller to decode
 * (pk_pack_meta_bytes) and to check (pk_pack_check_count). */
int pk_pack_open_raw(pk_pack **out, const char *path, pk_err *e);
void pk_pack_close(pk_pack *p); /* NULL is fine */

const char *pk_pack_path(const pk_pack *p);
/* The decoded metadata of a data pack; NULL after pk_pack_open_raw. */
const pk_meta *pk_pack_meta(const pk_pack *p);
/* The metadata record's bytes (valid until pk_pack_close). */
const void *pk_pack_meta_bytes(const pk_pack *p, size_t *len);
/* PK_EFORMAT "PATH: metadata says N records, the pack holds M" unless
 * the pack holds exactly `want` records. */
int pk_pack_check_count(const pk_pack *p, long want, pk_err *e);

/* Records, numbered 0..count-1 in key order; the metadata record is not
 * one of them. */
int pk_pack_count(const pk_pack *p);
/* Record i's key, NUL-terminated; NULL when i is out of range. */
const char *pk_pack_key(const pk_pack *p, int i);
/* The record number of key, or -1 when the pack has no such record. */
int pk_pack_find(const pk_pack *p, const char *key);
/* Record i's value, without a copy: *data points into the file's map and
 * stays valid until pk_pack_close. Not for concurrent use: give each thread
 * its own pk_pack_reader. */
int pk_pack_get(const pk_pack *p, int i, const void **data, size_t *len, pk_err *e);

/* Calls fn for each record in order, stopping at the first non-zero return
 * (which is returned). A cursor walk: cheaper than pk_pack_get per record.
 * The value is valid until pk_pack_close. */
typedef struct pk_pack_rec {
    int index;
    const char *key;
    const void *data;
    size_t len;
} pk_pack_rec;
typedef int (*pk_pack_visit_fn)(const pk_pack_rec *r, void *user, pk_err *e);
int pk_pack_foreach(const pk_pack *p, pk_pack_visit_fn fn, void *user, pk_err *e);

/* A read view of a pack for one thread (any number of threads may each
 * hold one). Values read through it are valid until it is closed. */
typedef struct pk_pack_reader pk_pack_reader;
int pk_pack_reader_open(pk_pack_reader **out, const pk_pack *p, pk_err *e);
int pk_pack_read(pk_pack_reader *r, int i, const void **data, size_t *len, pk_err *e);
void pk_pack_reader_close(pk_pack_reader *r); /* NULL is fine */

/* ---- writing ---- */
typedef struct pk_pack_writer pk_pack_writer;

/* Creates "<path>.tmp.<pid>" and opens it for writing. Records are put in
 * batches of `batch` per transaction (0: 64). When `force` is 0 and path
 * exists, fails with PK_EIO ("exists (use --force)"). A path that exists
 * and is not a regular file is never replaced (PK_EINVAL, as
 * pk_check_output). */
int pk_pack_writer_open(pk_pack_writer **w, const char *path, int batch, int force,
                        pk_err *e);
/* Copies key/value into the current batch; commits the batch when full
 * (growing the map as needed). */
int pk_pack_writer_put(pk_pack_writer *w, const char *key, const void *val, size_t len,
                       pk_err *e);
/* Commits the last batch, syncs, closes and renames the file onto path.
 * Frees w whatever the outcome; on failure the temporary file is removed. */
int pk_pack_writer_finish(pk_pack_writer *w, pk_err *e);
/* Closes, removes the temporary file and frees w (NULL is fine). */
void pk_pack_writer_abort(pk_pack_writer *w);
/* The temporary path being written (for messages). */
const char *pk_pack_writer_tmp_path(const pk_pack_writer *w);

#endif
