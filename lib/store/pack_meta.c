#include "store/pack_meta.h"

#include "store/pack.h"

int pk_pack_meta_read(const char *path, pk_meta *m, pk_err *e)
{
    pk_pack *p;
    int rc = pk_pack_open(&p, path, e);
    if (rc)
        return rc; /* the message names the path */
    *m = *pk_pack_meta(p);
    pk_pack_close(p);
    return PK_OK;
}
