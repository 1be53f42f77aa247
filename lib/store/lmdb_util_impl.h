/* LMDB inside lib/store/ (private to the room: the rest of pspkd sees packs
 * through store/pack.h only). A pack is ONE file opened with MDB_NOSUBDIR
 * and MDB_NOLOCK (see pack.h). Every LMDB status becomes PK_ELMDB (or
 * PK_EIO / PK_ENOTFOUND for a system errno such as ENOSPC, EFBIG or ENOENT)
 * with mdb_strerror's text. */
#ifndef PSPKD_LMDB_UTIL_IMPL_H
#define PSPKD_LMDB_UTIL_IMPL_H

#include <lmdb.h>
#include "core/err.h"

/* Turns an LMDB return code into a pk_err: "what: mdb_strerror(rc)". */
int pk_lmdb_fail(pk_err *e, int rc, const char *what);

/* Checks a file's LMDB meta pages before it is mapped (lmdb_check.c): magic,
 * version, page size, root pages that are not the meta pages and lie inside
 * the file, and that the file holds every page the current meta page (the
 * valid one with the higher txnid, as LMDB picks) claims. PK_EFORMAT
 * "PATH: truncated (...)", "PATH: empty file (not a pack)" or "PATH: ...
 * damaged ... (meta page N: why)"; PK_ENOTFOUND / PK_EIO when it cannot be
 * read. */
int pk_lmdb_check_file(const char *path, pk_err *e);

#endif
