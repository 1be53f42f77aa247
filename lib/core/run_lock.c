#include "core/run_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* Whether fd is still the file at path (not unlinked by a releasing run
 * between our open and our flock). */
static int still_there(int fd, const char *path)
{
    struct stat a, b;
    return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

int pk_run_lock_take(pk_run_lock *l, const char *lock_path, const char *what, int remove,
                     pk_err *e)
{
    l->fd = -1;
    l->path = NULL;
    for (int tries = 0; tries < 100; tries++) {
        int fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
        if (fd < 0)
            return pk_fail(e, PK_EIO, "%s: %s", lock_path, strerror(errno));
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int err = errno;
            close(fd);
            if (err == EWOULDBLOCK)
                return pk_fail(e, PK_EIO, "%s is in use by another run (%s is locked)", what,
                               lock_path);
            return pk_fail(e, PK_EIO, "%s: lock: %s", lock_path, strerror(err));
        }
        if (!still_there(fd, lock_path)) {
            close(fd); /* a releasing run removed it: lock the new one */
            continue;
        }
        if (remove && !(l->path = strdup(lock_path))) {
            close(fd);
            return pk_fail(e, PK_ENOMEM, "out of memory");
        }
        l->fd = fd;
        return PK_OK;
    }
    return pk_fail(e, PK_EIO, "%s: the lock file keeps changing", lock_path);
}

void pk_run_lock_release(pk_run_lock *l)
{
    if (!l || l->fd < 0)
        return;
    if (l->path)
        unlink(l->path); /* while still held: the next run makes a new one */
    close(l->fd);
    free(l->path);
    l->fd = -1;
    l->path = NULL;
}
