/* mkdir -p: a directory and the parents it lacks. */
#ifndef PSPKD_MKDIR_P_H
#define PSPKD_MKDIR_P_H

#include "core/err.h"

/* Creates path and every missing parent (mode 0777 & ~umask); an existing
 * directory is fine. PK_EIO naming the part that failed (e.g. a parent that
 * is a file), PK_ENOMEM. */
int pk_mkdir_p(const char *path, pk_err *e);

#endif
