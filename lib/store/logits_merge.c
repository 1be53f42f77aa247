/* See logits_merge.h. */
#include "store/logits_merge.h"

#include <stdint.h>
#include <stdlib.h>

#include "store/logits_cache.h"
#include "store/pack.h"

int pk_shard_first(int count, int i, int n) { return (int)((long)count * i / n); }

typedef struct merge {
    pk_pack *pack;
    pk_pack **raw;
    pk_logits_meta meta;
    int n;
} merge;

/* Opens slice i (its metadata checked against the first slice and the
 * pack) as a raw pack for copying. */
static int open_slice(merge *m, const char *path, int i, pk_err *e)
{
    pk_logits_cache *c;
    int rc = pk_logits_cache_open(&c, path, e);
    if (rc)
        return rc;
    const pk_logits_meta *lm = pk_logits_cache_meta(c);
    const pk_meta *pm = pk_pack_meta(m->pack);
    if (i == 0)
        m->meta = *lm;
    if (lm->pack_id != pm->pack_id || lm->classes != pm->classes)
        rc = pk_fail(e, PK_EINVAL, "%s: a slice of another data pack than %s", path,
                     pk_pack_path(m->pack));
    else if (lm->teacher_hash != m->meta.teacher_hash)
        rc = pk_fail(e, PK_EINVAL, "%s: a slice of another teacher than the first slice", path);
    pk_logits_cache_close(c);
    return rc ? rc : pk_pack_open_raw(&m->raw[i], path, e);
}

/* Writes every pack key from the one slice that holds it. */
static int copy_records(merge *m, pk_pack_writer *w, const char *const *slices, long *records,
                        pk_err *e)
{
    long held = 0;
    for (int s = 0; s < m->n; s++)
        held += pk_pack_count(m->raw[s]);
    for (int k = 0; k < pk_pack_count(m->pack); k++) {
        const char *key = pk_pack_key(m->pack, k);
        int from = -1, at = -1;
        for (int s = 0; s < m->n; s++) {
            int i = pk_pack_find(m->raw[s], key);
            if (i < 0)
                continue;
            if (from >= 0)
                return pk_fail(e, PK_EINVAL, "%s: in both %s and %s (overlapping slices)", key,
                               slices[from], slices[s]);
            from = s;
            at = i;
        }
        if (from < 0)
            return pk_fail(e, PK_ENOTFOUND, "%s: in no slice (a slice is missing or incomplete)",
                           key);
        const void *v;
        size_t len;
        int rc = pk_pack_get(m->raw[from], at, &v, &len, e);
        if (!rc)
            rc = pk_pack_writer_put(w, key, v, len, e);
        if (rc)
            return pk_wrap(e, "%s", slices[from]);
        (*records)++;
    }
    if (held != *records)
        return pk_fail(e, PK_EINVAL, "the slices hold %ld records, the pack %ld images: keys "
                       "of another pack", held, *records);
    return PK_OK;
}

int pk_logits_merge(const char *out, const char *pack, const char *const *slices, int n,
                    int force, long *records, pk_err *e)
{
    *records = 0;
    if (n < 1)
        return pk_fail(e, PK_EINVAL, "no slices to merge");
    merge m = {.n = n};
    m.raw = calloc((size_t)n, sizeof *m.raw);
    if (!m.raw)
        return pk_fail(e, PK_ENOMEM, "out of memory");
    pk_pack_writer *w = NULL;
    int rc = pk_pack_open(&m.pack, pack, e);
    for (int i = 0; i < n && !rc; i++)
        rc = open_slice(&m, slices[i], i, e);
    if (!rc)
        rc = pk_pack_writer_open(&w, out, 64, force, e);
    if (!rc)
        rc = copy_records(&m, w, slices, records, e);
    if (!rc) {
        uint8_t *buf;
        size_t len;
        m.meta.count = (int)*records;
        rc = pk_logits_meta_encode(&buf, &len, &m.meta, e);
        if (!rc) {
            rc = pk_pack_writer_put(w, PK_META_KEY, buf, len, e);
            free(buf);
        }
    }
    if (!rc)
        rc = pk_pack_writer_finish(w, e);
    else if (w)
        pk_pack_writer_abort(w);
    for (int i = 0; i < n; i++)
        pk_pack_close(m.raw[i]);
    free(m.raw);
    pk_pack_close(m.pack);
    return rc;
}
