/* Image ids shared by two packs: see pack_overlap.h. */
#include "store/pack_overlap.h"

#include <stdlib.h>
#include <string.h>

const char *pk_key_id(const char *key)
{
    for (int i = 0; i < 8; i++)
        if (key[i] < '0' || key[i] > '9')
            return key;
    return key[8] == '_' && key[9] ? key + 9 : key;
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

int pk_pack_overlap(const pk_pack *a, const pk_pack *b, pk_overlap_fn fn, void *user,
                    long *shared, pk_err *e)
{
    int na = pk_pack_count(a), nb = pk_pack_count(b);
    *shared = 0;
    const char **ids = malloc(((size_t)na + 1) * sizeof *ids);
    if (!ids)
        return pk_fail(e, PK_ENOMEM, "out of memory for %d ids", na);
    for (int i = 0; i < na; i++)
        ids[i] = pk_key_id(pk_pack_key(a, i));
    qsort(ids, (size_t)na, sizeof *ids, cmp_str);
    int rc = PK_OK;
    for (int i = 0; i < nb && !rc; i++) {
        const char *id = pk_key_id(pk_pack_key(b, i));
        if (!bsearch(&id, ids, (size_t)na, sizeof *ids, cmp_str))
            continue;
        ++*shared;
        if (fn)
            rc = fn(id, user);
    }
    free(ids);
    return rc;
}
