#include "store/pack_meta.h"

#include "store/lmdb_util.h"

int pk_pack_meta_read(const char *path, pk_meta *m, pk_err *e)
{
    pk_lmdb_reader r;
    int rc = pk_lmdb_open_read(&r, path, e);
    if (rc)
        return rc; /* the message names the path */
    MDB_txn *txn = NULL;
    rc = pk_lmdb_txn_begin(&txn, &r, e);
    if (!rc) {
        MDB_val v;
        rc = pk_lmdb_get(txn, &r, PK_META_KEY, &v, e);
        if (rc == PK_ENOTFOUND)
            pk_fail(e, rc, "no metadata record (not a pack, or an empty one)");
        else if (!rc)
            rc = pk_meta_decode(m, v.mv_data, v.mv_size, e);
        mdb_txn_abort(txn);
    }
    pk_lmdb_close(&r);
    if (rc)
        pk_wrap(e, "%s", path);
    return rc;
}
