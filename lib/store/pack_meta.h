/* Reading a data pack's metadata record without starting a loader (the
 * trainers need the class count and the record count before they build the
 * model and the loader). */
#ifndef PSPKD_PACK_META_H
#define PSPKD_PACK_META_H

#include "core/err.h"
#include "store/record.h"

/* Opens the pack at path read-only, decodes its PK_META_KEY record into m
 * and closes it. PK_ENOTFOUND (with "no metadata record: not a pack, or
 * empty") when the record is absent; LMDB and format errors as usual. */
int pk_pack_meta_read(const char *path, pk_meta *m, pk_err *e);

#endif
