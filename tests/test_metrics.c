/* Confusion-matrix metrics against a hand-computed case and against
 * semseg's own recipe (per-image intersection/union histograms, summed). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/metrics.h"
#include "support.h"

static int failures;

static void near(const char *what, double got, double want)
{
    PK_CHECK(failures, fabs(got - want) <= 1e-12, "%s: got %.15g want %.15g", what, got, want);
}

/* 8 pixels, 4 classes; class 3 appears nowhere, pixel 5 is ignored.
 *   label 0 0 1 1 2 255 2 0
 *   pred  0 1 1 1 0  2  2 0
 * conf[label][pred]: row0 = 2 1 0 0, row1 = 0 2 0 0, row2 = 1 0 1 0.
 * I = 2 2 1 0, T = 3 2 2 0, predicted = 3 3 1 0, U = 4 3 2 0. */
static void test_hand(void)
{
    const uint8_t label[8] = {0, 0, 1, 1, 2, 255, 2, 0};
    const uint8_t pred[8] = {0, 1, 1, 1, 0, 2, 2, 0};
    pk_confusion c;
    pk_err e = {0};
    if (pk_confusion_init(&c, 4, &e) != PK_OK)
        abort();
    /* In two chunks: accumulation must equal one pass. */
    PK_CHECK(failures, pk_confusion_add(&c, pred, label, 3, 255, &e) == PK_OK, "%s", e.msg);
    PK_CHECK(failures, pk_confusion_add(&c, pred + 3, label + 3, 5, 255, &e) == PK_OK, "%s",
             e.msg);
    const uint64_t want_m[16] = {2, 1, 0, 0, 0, 2, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0};
    PK_CHECK(failures, memcmp(c.m, want_m, sizeof want_m) == 0, "confusion matrix entries");
    uint64_t in, un, tg;
    pk_confusion_class(&c, 0, &in, &un, &tg);
    PK_CHECK(failures, in == 2 && un == 4 && tg == 3, "class 0: I %llu U %llu T %llu",
             (unsigned long long)in, (unsigned long long)un, (unsigned long long)tg);
    pk_confusion_class(&c, 3, &in, &un, &tg);
    PK_CHECK(failures, in == 0 && un == 0 && tg == 0, "absent class 3 has zero counts");

    double iou[4], acc[4];
    pk_seg_scores s;
    pk_confusion_scores(&c, iou, acc, &s);
    const double eps = 1e-10;
    near("IoU 0", iou[0], 2 / (4 + eps));
    near("IoU 1", iou[1], 2 / (3 + eps));
    near("IoU 2", iou[2], 1 / (2 + eps));
    near("IoU 3 (absent)", iou[3], 0);
    near("Acc 0", acc[0], 2 / (3 + eps));
    near("Acc 1", acc[1], 2 / (2 + eps));
    near("Acc 2", acc[2], 1 / (2 + eps));
    near("Acc 3 (absent)", acc[3], 0);
    /* semseg averages over all 4 classes, the absent one included. */
    const double sum_iou = 2 / (4 + eps) + 2 / (3 + eps) + 1 / (2 + eps); /* ~ 1/2 + 2/3 + 1/2 */
    near("mIoU", s.miou, sum_iou / 4);
    near("mAcc", s.macc, (2 / (3 + eps) + 2 / (2 + eps) + 1 / (2 + eps)) / 4);
    near("aAcc", s.aacc, 5 / (7 + eps));
    near("mIoU over present", s.miou_present, sum_iou / 3);
    PK_CHECK(failures, fabs(s.miou - 5.0 / 12) < 1e-9, "mIoU %.12f != 5/12", s.miou);
    PK_CHECK(failures, s.present == 3 && s.pixels == 7, "present %d pixels %llu", s.present,
             (unsigned long long)s.pixels);
    printf("  ok  hand case: mIoU %.6f mAcc %.6f aAcc %.6f\n", s.miou, s.macc, s.aacc);

    /* Bad inputs add nothing. */
    const uint8_t bad_label[2] = {1, 7}, bad_pred[2] = {1, 4}, ok2[2] = {1, 1};
    int rc = pk_confusion_add(&c, ok2, bad_label, 2, 255, &e);
    PK_CHECK(failures, rc == PK_EINVAL && strstr(e.msg, "label 7 at pixel 1"), "bad label: %s",
             e.msg);
    rc = pk_confusion_add(&c, bad_pred, ok2, 2, 255, &e);
    PK_CHECK(failures, rc == PK_EINVAL && strstr(e.msg, "prediction 4 at pixel 1"),
             "bad prediction: %s", e.msg);
    PK_CHECK(failures, memcmp(c.m, want_m, sizeof want_m) == 0, "failed adds changed counts");
    /* A prediction out of range on an ignored pixel is fine (semseg masks it). */
    const uint8_t ign[1] = {255}, p9[1] = {9};
    PK_CHECK(failures, pk_confusion_add(&c, p9, ign, 1, 255, &e) == PK_OK, "ignored pixel");

    pk_confusion d;
    if (pk_confusion_init(&d, 4, &e) != PK_OK)
        abort();
    PK_CHECK(failures, pk_confusion_merge(&d, &c, &e) == PK_OK && pk_confusion_merge(&d, &c, &e)
                           == PK_OK && d.m[0] == 4 && d.m[8] == 2,
             "merge");
    pk_confusion_reset(&d);
    pk_confusion_scores(&d, NULL, NULL, &s);
    PK_CHECK(failures, s.miou == 0 && s.aacc == 0 && s.present == 0, "empty matrix scores 0");
    pk_confusion_free(&d);
    PK_CHECK(failures, pk_confusion_init(&d, 0, &e) == PK_EINVAL, "k = 0 rejected");
    PK_CHECK(failures, pk_confusion_init(&d, 256, &e) == PK_EINVAL, "k = 256 rejected");
    pk_confusion_free(&c);
}

/* semseg's intersectionAndUnion, per image, with per-class histograms. */
static void semseg_iau(const uint8_t *pred, const uint8_t *label, size_t n, int k,
                       double *inter, double *uni, double *target)
{
    double ao[256] = {0}, at[256] = {0}, ai[256] = {0};
    for (size_t i = 0; i < n; i++) {
        int o = label[i] == 255 ? 255 : pred[i]; /* output[target == ignore] = ignore */
        if (o < k)
            ao[o]++;
        if (label[i] < k)
            at[label[i]]++;
        if (o == label[i] && o < k)
            ai[o]++;
    }
    for (int c = 0; c < k; c++) {
        inter[c] += ai[c];
        uni[c] += ao[c] + at[c] - ai[c];
        target[c] += at[c];
    }
}

static void test_random(void)
{
    enum { K = 21, IMAGES = 12, N = 3000 };
    uint8_t pred[N], label[N];
    double inter[K] = {0}, uni[K] = {0}, target[K] = {0};
    pk_confusion c;
    pk_err e = {0};
    if (pk_confusion_init(&c, K, &e) != PK_OK)
        abort();
    unsigned long long s = 99;
    for (int im = 0; im < IMAGES; im++) {
        for (int i = 0; i < N; i++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            unsigned r = (unsigned)(s >> 33);
            /* classes 17..20 never appear, 10% ignored, 60% correct */
            label[i] = r % 10 == 0 ? 255 : (uint8_t)(r / 10 % 17);
            pred[i] = r / 170 % 10 < 6 && label[i] != 255 ? label[i] : (uint8_t)(r / 1700 % 17);
        }
        if (pk_confusion_add(&c, pred, label, N, 255, &e) != PK_OK)
            abort();
        semseg_iau(pred, label, N, K, inter, uni, target);
    }
    double iou[K], acc[K], miou = 0, macc = 0, si = 0, st = 0;
    pk_seg_scores sc;
    pk_confusion_scores(&c, iou, acc, &sc);
    for (int k = 0; k < K; k++) {
        double wi = inter[k] / (uni[k] + 1e-10), wa = inter[k] / (target[k] + 1e-10);
        PK_CHECK(failures, fabs(iou[k] - wi) <= 1e-12 && fabs(acc[k] - wa) <= 1e-12,
                 "class %d: IoU %g vs %g, Acc %g vs %g", k, iou[k], wi, acc[k], wa);
        miou += wi / K;
        macc += wa / K;
        si += inter[k];
        st += target[k];
    }
    near("random mIoU", sc.miou, miou);
    near("random mAcc", sc.macc, macc);
    near("random aAcc", sc.aacc, si / (st + 1e-10));
    PK_CHECK(failures, sc.present == 17, "present classes %d", sc.present);
    printf("  ok  12 random images vs semseg's per-image sums: mIoU %.6f (present-only %.6f)\n",
           sc.miou, sc.miou_present);
    pk_confusion_free(&c);
}

int main(void)
{
    test_hand();
    test_random();
    if (failures)
        fprintf(stderr, "test_metrics: %d failure(s)\n", failures);
    return failures != 0;
}
