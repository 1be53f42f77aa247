/* LMDB status codes as pk_err (see lmdb_util_impl.h). */
#include "store/lmdb_util_impl.h"

#include <errno.h>

int pk_lmdb_fail(pk_err *e, int rc, const char *what)
{
    /* Positive codes are errno values (ENOSPC, EFBIG, EACCES...). */
    int code = rc == ENOENT ? PK_ENOTFOUND : rc > 0 ? PK_EIO : PK_ELMDB;
    return pk_fail(e, code, "%s: %s", what, mdb_strerror(rc));
}
