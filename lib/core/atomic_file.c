#include "core/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void release(pk_atomic_file *af)
{
    free(af->path);
    free(af->tmp);
    af->path = af->tmp = NULL;
    af->fp = NULL;
}

/* PK_EINVAL when path exists and is not a regular file. */
static int check_regular(const char *path, pk_err *e)
{
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return pk_fail(e, PK_EINVAL, "%s: not a regular file (refusing to replace it)", path);
    return PK_OK;
}

int pk_check_output(const char *out, const char *const *inputs, int n, pk_err *e)
{
    int rc = check_regular(out, e);
    struct stat so, si;
    if (rc || stat(out, &so) != 0)
        return rc;
    for (int i = 0; i < n; i++)
        if (inputs[i] && stat(inputs[i], &si) == 0 && si.st_dev == so.st_dev &&
            si.st_ino == so.st_ino)
            return pk_fail(e, PK_EINVAL, "%s is the same file as %s (refusing to overwrite an "
                           "input)", out, inputs[i]);
    return PK_OK;
}

int pk_atomic_open(pk_atomic_file *af, const char *path, pk_err *e)
{
    af->fp = NULL;
    af->path = af->tmp = NULL;
    if (!path || !*path)
        return pk_fail(e, PK_EINVAL, "atomic write: empty path");
    if (check_regular(path, e))
        return PK_EINVAL;
    size_t n = strlen(path) + 32;
    af->path = strdup(path);
    af->tmp = malloc(n);
    if (!af->path || !af->tmp) {
        release(af);
        return pk_fail(e, PK_ENOMEM, "%s: out of memory", path);
    }
    snprintf(af->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    int flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC;
    int fd = open(af->tmp, flags, 0666);
    if (fd < 0 && errno == EEXIST) {
        /* Left by a crashed process that had our pid: it is ours to replace. */
        if (unlink(af->tmp) == 0)
            fd = open(af->tmp, flags, 0666);
    }
    if (fd < 0) {
        int err = errno;
        pk_fail(e, PK_EIO, "%s: cannot create: %s", af->tmp, strerror(err));
        release(af);
        return PK_EIO;
    }
    af->fp = fdopen(fd, "wb");
    if (!af->fp) {
        int err = errno;
        close(fd);
        unlink(af->tmp);
        pk_fail(e, PK_EIO, "%s: %s", af->tmp, strerror(err));
        release(af);
        return PK_EIO;
    }
    return PK_OK;
}

void pk_atomic_abort(pk_atomic_file *af)
{
    if (!af)
        return;
    if (af->fp)
        fclose(af->fp); /* result irrelevant: the file is being discarded */
    if (af->tmp)
        unlink(af->tmp);
    release(af);
}

/* fsync of the directory holding path, so the rename itself is durable. */
static int sync_dir(const char *path, pk_err *e)
{
    char *copy = strdup(path);
    if (!copy)
        return pk_fail(e, PK_ENOMEM, "%s: out of memory", path);
    char *slash = strrchr(copy, '/');
    const char *dir = ".";
    if (slash == copy)
        dir = "/";
    else if (slash) {
        *slash = '\0';
        dir = copy;
    }
    int rc = PK_OK;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        rc = pk_fail(e, PK_EIO, "%s: written, but cannot open its directory to sync: %s",
                     path, strerror(errno));
    } else {
        /* Some file systems cannot fsync a directory (EINVAL): nothing to do there. */
        if (fsync(fd) != 0 && errno != EINVAL)
            rc = pk_fail(e, PK_EIO, "%s: written, but directory sync failed: %s", path,
                         strerror(errno));
        close(fd);
    }
    free(copy);
    return rc;
}

int pk_atomic_commit(pk_atomic_file *af, pk_err *e)
{
    if (!af || !af->fp)
        return pk_fail(e, PK_EINVAL, "atomic write: file not open");
    int err = 0;
    const char *step = NULL;
    errno = 0; /* an earlier failed fwrite only leaves ferror set */
    if (fflush(af->fp) != 0 || ferror(af->fp)) {
        err = errno ? errno : EIO;
        step = "write";
    } else if (fsync(fileno(af->fp)) != 0) {
        err = errno;
        step = "fsync";
    }
    /* fclose can report a deferred write error too, so check it even after one. */
    if (fclose(af->fp) != 0 && !step) {
        err = errno;
        step = "close";
    }
    af->fp = NULL;
    if (!step && rename(af->tmp, af->path) != 0) {
        err = errno;
        step = "rename";
    }
    if (step) {
        pk_fail(e, PK_EIO, "%s: %s failed: %s", af->path, step, strerror(err));
        unlink(af->tmp);
        release(af);
        return PK_EIO;
    }
    int rc = sync_dir(af->path, e);
    release(af);
    return rc;
}
