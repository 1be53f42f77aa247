/* Image ids shared by two packs (voc-show overlap): a record's id is its
 * key without the "%08d_" list position (lib/store/record.h), so the same
 * image packed into two packs has the same id in both. */
#ifndef PSPKD_PACK_OVERLAP_H
#define PSPKD_PACK_OVERLAP_H

#include "core/err.h"
#include "store/pack.h"

/* The id part of a record key ("00000012_2007_000032" -> "2007_000032");
 * the key itself when it has no such prefix. */
const char *pk_key_id(const char *key);

/* Calls fn (when not NULL) for every record of b whose id is also an id of
 * a, in b's record order, and sets *shared to their number. fn's non-zero
 * return stops the walk and is returned. */
typedef int (*pk_overlap_fn)(const char *id, void *user);
int pk_pack_overlap(const pk_pack *a, const pk_pack *b, pk_overlap_fn fn, void *user,
                    long *shared, pk_err *e);

#endif
