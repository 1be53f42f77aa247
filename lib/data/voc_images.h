/* Image lists without labels, for unlabelled packs (voc-pack --unlabeled):
 * the entries of a pk_voc_list with label == NULL. */
#ifndef PSPKD_VOC_IMAGES_H
#define PSPKD_VOC_IMAGES_H

#include "core/err.h"
#include "data/voc_list.h"

/* Reads `list`: per line an id (image root/JPEGImages/<id>.jpg), an image
 * path (a field with a '/' or ending in .jpg / .jpeg; relative paths are
 * taken under root), or semseg's 'image label' pair, whose label is not
 * read. The id of a path is its basename without the extension. Blank
 * lines are skipped; more than two fields, a bad id or an empty list is
 * PK_EFORMAT ("list:LINE: ..."). */
int pk_voc_images_read(pk_voc_list *l, const char *root, const char *list, pk_err *e);

/* Every *.jpg / *.jpeg (any case) directly in dir, in byte order of the
 * names; PK_EFORMAT when there is none. */
int pk_voc_images_dir(pk_voc_list *l, const char *dir, pk_err *e);

#endif
