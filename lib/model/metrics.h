/* Dataset-level semantic segmentation metrics, as hszhao/semseg's test.py
 * computes them: intersectionAndUnion per image, summed over the dataset, then
 *   IoU_c = I_c / (U_c + 1e-10),  Acc_c = I_c / (T_c + 1e-10),
 *   mIoU = mean over ALL K classes of IoU_c, mAcc likewise,
 *   aAcc = sum I / (sum T + 1e-10),
 * where I_c = pixels labelled c and predicted c, T_c = pixels labelled c,
 * U_c = T_c + (pixels predicted c) - I_c, all over non-ignored pixels only.
 * Note the semseg convention: a class absent from both labels and
 * predictions has U_c = 0, IoU_c = 0, and still counts in the mean (it pulls
 * mIoU down). miou_present is the mean over classes with U_c > 0, reported
 * alongside for small sets that miss classes; it is not semseg's number. */
#ifndef PSPKD_METRICS_H
#define PSPKD_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include "core/err.h"

typedef struct pk_confusion {
    int k;       /* classes */
    uint64_t *m; /* k*k counts, m[label*k + pred] */
} pk_confusion;

typedef struct pk_seg_scores {
    double miou, macc, aacc;
    double miou_present; /* mean IoU over classes with union > 0 (not semseg's) */
    int present;         /* number of such classes */
    uint64_t pixels;     /* non-ignored pixels counted */
} pk_seg_scores;

/* k in 1..255 (class ids are uint8, 255 is the usual ignore label). */
int pk_confusion_init(pk_confusion *c, int k, pk_err *e);
void pk_confusion_free(pk_confusion *c);
void pk_confusion_reset(pk_confusion *c);
/* Adds n pixels. Pixels whose label == ignore (e.g. 255; -1 for none) are
 * skipped whatever the prediction. Any other label >= k, or a prediction >= k
 * on a counted pixel, is an error (class-count mismatch) and adds nothing. */
int pk_confusion_add(pk_confusion *c, const uint8_t *pred, const uint8_t *label, size_t n,
                     int ignore, pk_err *e);
/* dst += src (same k), e.g. to combine per-thread matrices. */
int pk_confusion_merge(pk_confusion *dst, const pk_confusion *src, pk_err *e);
/* Per-class counts: intersection, union and target (label) pixels. */
void pk_confusion_class(const pk_confusion *c, int cls, uint64_t *inter, uint64_t *uni,
                        uint64_t *target);
/* iou[k] and acc[k] may be NULL. */
void pk_confusion_scores(const pk_confusion *c, double *iou, double *acc, pk_seg_scores *s);

#endif
