/* mkdir -p: see mkdir_p.h. */
#include "core/mkdir_p.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int pk_mkdir_p(const char *path, pk_err *e)
{
    char *p = strdup(path);
    if (!p)
        return pk_fail(e, PK_ENOMEM, "out of memory");
    int rc = PK_OK;
    /* Each prefix that ends before a '/' (the root excepted), then the whole
     * ("" fails as mkdir fails it). */
    for (char *q = p + (*p != '\0'); rc == PK_OK; q++) {
        char c = *q;
        if (c != '/' && c != '\0')
            continue;
        *q = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST)
            rc = pk_fail(e, PK_EIO, "%s: %s", p, strerror(errno));
        *q = c;
        if (!c)
            break;
    }
    free(p);
    return rc;
}
