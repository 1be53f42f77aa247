/* Exclusive run locks: flock(LOCK_EX | LOCK_NB) on a lock file, so that a
 * second run writing the same output, log or checkpoint directory fails at
 * once instead of interleaving with the first. The lock goes with the
 * process (also on a crash); a lock file may be left in place (a
 * checkpoint directory's "lock") or removed on release (OUTPUT.lock). */
#ifndef PSPKD_RUN_LOCK_H
#define PSPKD_RUN_LOCK_H

#include "core/err.h"

typedef struct pk_run_lock {
    int fd;     /* -1: not held */
    char *path; /* the lock file, when it is removed on release */
} pk_run_lock;

#define PK_RUN_LOCK_NONE {-1, NULL}

/* Creates (if needed) and locks lock_path. PK_EIO "WHAT is in use by
 * another run (LOCK_PATH is locked)" when another process holds it, or
 * "LOCK_PATH: <errno text>". remove: unlink lock_path on release. */
int pk_run_lock_take(pk_run_lock *l, const char *lock_path, const char *what, int remove,
                     pk_err *e);
/* Releases l (safe on PK_RUN_LOCK_NONE or a released lock). */
void pk_run_lock_release(pk_run_lock *l);

#endif
