/* Reading a data pack's metadata record without starting a loader (the
 * trainers need the class count and the record count before they build the
 * model and the loader). */
#ifndef PSPKD_PACK_META_H
#define PSPKD_PACK_META_H

#include "core/err.h"
#include "store/record.h"

/* Opens the data pack at path (pk_pack_open: the metadata is checked
 * against the records, and there is at least one), copies its metadata
 * into m and closes it. Errors as pk_pack_open's. */
int pk_pack_meta_read(const char *path, pk_meta *m, pk_err *e);

#endif
