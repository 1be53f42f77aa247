#include "model/metrics.h"

#include <stdlib.h>
#include <string.h>

/* semseg's guard against 0/0 (classes absent from labels and predictions). */
#define SEMSEG_EPS 1e-10

int pk_confusion_init(pk_confusion *c, int k, pk_err *e)
{
    c->k = 0;
    c->m = NULL;
    if (k < 1 || k > 255)
        return pk_fail(e, PK_EINVAL, "class count %d out of range 1..255", k);
    c->m = calloc((size_t)k * (size_t)k, sizeof *c->m);
    if (!c->m)
        return pk_fail(e, PK_ENOMEM, "out of memory");
    c->k = k;
    return PK_OK;
}

void pk_confusion_free(pk_confusion *c)
{
    if (!c)
        return;
    free(c->m);
    c->m = NULL;
    c->k = 0;
}

void pk_confusion_reset(pk_confusion *c)
{
    memset(c->m, 0, (size_t)c->k * (size_t)c->k * sizeof *c->m);
}

int pk_confusion_add(pk_confusion *c, const uint8_t *pred, const uint8_t *label, size_t n,
                     int ignore, pk_err *e)
{
    const int k = c->k;
    /* Validate first so a bad image leaves the matrix unchanged. */
    for (size_t i = 0; i < n; i++) {
        if (label[i] == ignore)
            continue;
        if (label[i] >= k)
            return pk_fail(e, PK_EINVAL, "label %d at pixel %zu is neither a class (0..%d) nor"
                           " the ignore label", label[i], i, k - 1);
        if (pred[i] >= k)
            return pk_fail(e, PK_EINVAL, "prediction %d at pixel %zu is not a class (0..%d)",
                           pred[i], i, k - 1);
    }
    for (size_t i = 0; i < n; i++)
        if (label[i] != ignore)
            c->m[(size_t)label[i] * (size_t)k + pred[i]]++;
    return PK_OK;
}

int pk_confusion_merge(pk_confusion *dst, const pk_confusion *src, pk_err *e)
{
    if (dst->k != src->k)
        return pk_fail(e, PK_EINVAL, "cannot merge confusion matrices of %d and %d classes",
                       dst->k, src->k);
    for (size_t i = 0; i < (size_t)dst->k * (size_t)dst->k; i++)
        dst->m[i] += src->m[i];
    return PK_OK;
}

void pk_confusion_class(const pk_confusion *c, int cls, uint64_t *inter, uint64_t *uni,
                        uint64_t *target)
{
    const int k = c->k;
    uint64_t row = 0, col = 0;
    for (int j = 0; j < k; j++) {
        row += c->m[(size_t)cls * k + j];
        col += c->m[(size_t)j * k + cls];
    }
    uint64_t in = c->m[(size_t)cls * k + cls];
    if (inter)
        *inter = in;
    if (uni)
        *uni = row + col - in;
    if (target)
        *target = row;
}

void pk_confusion_scores(const pk_confusion *c, double *iou, double *acc, pk_seg_scores *s)
{
    double sum_iou = 0, sum_acc = 0, sum_present = 0;
    uint64_t all_inter = 0, all_target = 0;
    int present = 0;
    for (int cls = 0; cls < c->k; cls++) {
        uint64_t in, un, tg;
        pk_confusion_class(c, cls, &in, &un, &tg);
        double ci = (double)in / ((double)un + SEMSEG_EPS);
        double ca = (double)in / ((double)tg + SEMSEG_EPS);
        if (iou)
            iou[cls] = ci;
        if (acc)
            acc[cls] = ca;
        sum_iou += ci;
        sum_acc += ca;
        if (un > 0) {
            sum_present += ci;
            present++;
        }
        all_inter += in;
        all_target += tg;
    }
    s->miou = sum_iou / c->k;
    s->macc = sum_acc / c->k;
    s->aacc = (double)all_inter / ((double)all_target + SEMSEG_EPS);
    s->miou_present = present ? sum_present / present : 0.0;
    s->present = present;
    s->pixels = all_target;
}
