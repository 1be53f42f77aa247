/* VOC-style list files: one id per line (ImageSets/Segmentation/NAME.txt), or
 * semseg's "image_path label_path" pairs (train_aug.txt). */
#ifndef PSPKD_VOC_LIST_H
#define PSPKD_VOC_LIST_H

#include "core/err.h"

typedef struct pk_voc_entry {
    char *id;    /* image basename without extension */
    char *image; /* full path */
    char *label; /* full path */
} pk_voc_entry;

typedef struct pk_voc_list {
    pk_voc_entry *v;
    int n;
} pk_voc_list;

/* Reads `list` (a path). Relative paths in pair lines are taken under
 * root; absolute ones are kept. For id lines the image is
 * root/JPEGImages/<id>.jpg and the label root/<label_dir>/<id>.png; when
 * label_dir is NULL it is SegmentationClass, or SegmentationClassAug for an
 * id whose SegmentationClass file does not exist but whose Aug one does.
 * Blank lines are skipped. A line with more than two fields, an id longer
 * than the record format allows, or an empty list is PK_EFORMAT
 * ("list:LINE: ..."). */
int pk_voc_list_read(pk_voc_list *l, const char *root, const char *list,
                     const char *label_dir, pk_err *e);
void pk_voc_list_free(pk_voc_list *l);

#endif
