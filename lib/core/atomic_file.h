/* Atomic file replacement: write everything to "<path>.tmp.<pid>", then
 * fflush + fsync, rename over <path>, and fsync the directory, so a reader
 * sees either the old file or the complete new one, never a partial write.
 * On any failure the temp file is removed and <path> is left untouched. */
#ifndef PSPKD_ATOMIC_FILE_H
#define PSPKD_ATOMIC_FILE_H

#include <stdio.h>
#include "core/err.h"

typedef struct pk_atomic_file {
    FILE *fp;   /* write here between open and commit/abort */
    char *path; /* final name */
    char *tmp;  /* temp name, "<path>.tmp.<pid>" */
} pk_atomic_file;

/* Creates the temp file (mode 0666 & ~umask; a stale temp of the same name is
 * replaced). An existing path that is not a regular file (a directory, a
 * device such as /dev/full, a FIFO) is refused: PK_EINVAL "PATH: not a
 * regular file (refusing to replace it)". On failure af->fp is NULL and
 * nothing is left on disk. */
int pk_atomic_open(pk_atomic_file *af, const char *path, pk_err *e);
/* Flushes, fsyncs, closes and renames the temp file over the final path, then
 * fsyncs the directory. Always releases af; on failure the temp file is
 * removed (or, if only the directory fsync failed, the new file is in place
 * and the error says so). */
int pk_atomic_commit(pk_atomic_file *af, pk_err *e);
/* Closes and removes the temp file and releases af; safe on a zeroed or
 * already released af. */
void pk_atomic_abort(pk_atomic_file *af);

/* Checks an output path before anything is computed: PK_EINVAL when it
 * exists and is not a regular file (as pk_atomic_open), or when it is the
 * same file (st_dev and st_ino) as one of the n inputs (NULL entries and
 * inputs that do not exist are skipped): "OUT is the same file as IN
 * (refusing to overwrite an input)". */
int pk_check_output(const char *out, const char *const *inputs, int n, pk_err *e);

#endif
