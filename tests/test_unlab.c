/* Unlabelled images (issue #15): the batch split and the pack schedule of
 * lib/train/unlab_mix.h, the pack metadata's unlabelled flag, and the loss
 * masks on a batch that mixes a labelled image with an unlabelled one (all
 * labels 255, as the trainer gives them): the KD terms count the
 * unlabelled image's kept pixels and not its padding, the cross-entropy
 * none of them. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "store/record.h"
#include "support.h"
#include "train/unlab_mix.h"

static int failures;

static void test_split(void)
{
    int nl = -1, nu = -1;
    PK_CHECK(failures, !pk_unlab_split(16, 0.5, &nl, &nu) && nl == 8 && nu == 8,
             "16 at 0.5: %d + %d", nl, nu);
    PK_CHECK(failures, !pk_unlab_split(3, 0.5, &nl, &nu) && nl == 1 && nu == 2,
             "3 at 0.5 (round half away): %d + %d", nl, nu);
    PK_CHECK(failures, !pk_unlab_split(8, 0.3, &nl, &nu) && nl == 6 && nu == 2,
             "8 at 0.3: %d + %d", nl, nu);
    PK_CHECK(failures, pk_unlab_split(2, 0.1, &nl, &nu), "2 at 0.1 has no unlabelled image");
    PK_CHECK(failures, pk_unlab_split(2, 0.9, &nl, &nu), "2 at 0.9 has no labelled image");
    PK_CHECK(failures, pk_unlab_split(4, 0.0, &nl, &nu) && pk_unlab_split(4, 1.0, &nl, &nu),
             "ratios 0 and 1 are refused");
}

static void test_schedule(void)
{
    const long count[3] = {6, 2, 4};
    pk_unlab_sched s, r;
    pk_unlab_sched_init(&s, count, 3);
    int first = pk_unlab_sched_next(&s);
    PK_CHECK(failures, first == 0, "ties go to the first pack, got %d", first);
    for (int i = 1; i < 120; i++)
        pk_unlab_sched_next(&s);
    /* 120 steps in proportion 6:2:4 */
    PK_CHECK(failures, s.pos[0] == 60 && s.pos[1] == 20 && s.pos[2] == 40,
             "after 120 steps: %ld %ld %ld", s.pos[0], s.pos[1], s.pos[2]);
    /* replaying k steps is taking them one by one, and the rest continues alike */
    pk_unlab_sched_init(&s, count, 3);
    pk_unlab_sched_init(&r, count, 3);
    for (int i = 0; i < 37; i++)
        pk_unlab_sched_next(&s);
    pk_unlab_sched_skip(&r, 37);
    int same = 1;
    for (int i = 0; i < 50; i++)
        same &= pk_unlab_sched_next(&s) == pk_unlab_sched_next(&r);
    PK_CHECK(failures, same && !memcmp(s.pos, r.pos, sizeof s.pos),
             "a replayed schedule continues as the uninterrupted one");
    /* one pack: every step */
    pk_unlab_sched_init(&s, count, 1);
    pk_unlab_sched_skip(&s, 9);
    PK_CHECK(failures, s.pos[0] == 9, "one pack serves every step: %ld", s.pos[0]);
}

static void test_meta_flag(void)
{
    pk_meta m = {0}, d;
    m.count = 3;
    m.classes = 2;
    m.image_enc = PK_IMG_RGB8;
    m.pack_id = 42;
    snprintf(m.names[0], sizeof m.names[0], "bg");
    snprintf(m.names[1], sizeof m.names[1], "fg");
    pk_err e = {0, ""};
    uint8_t *lab, *unl;
    size_t nlab, nunl;
    int rc = pk_meta_encode(&lab, &nlab, &m, &e);
    m.unlabeled = 1;
    rc |= pk_meta_encode(&unl, &nunl, &m, &e);
    PK_CHECK(failures, !rc, "encode: %s", e.msg);
    if (rc)
        return;
    PK_CHECK(failures, nunl == nlab + 4, "the flags word only in unlabelled packs: %zu %zu",
             nlab, nunl);
    PK_CHECK(failures, !pk_meta_decode(&d, lab, nlab, &e) && !d.unlabeled, "labelled: %s",
             e.msg);
    PK_CHECK(failures, !pk_meta_decode(&d, unl, nunl, &e) && d.unlabeled && d.count == 3,
             "unlabelled: %s", e.msg);
    free(lab);
    free(unl);
}

enum { W = 6, H = 5, PX = W * H, K = 4, PAD = 7 };

/* Image 0 labelled, image 1 unlabelled (labels 255), whose last PAD pixels
 * are padding (valid 0) as the augmentation leaves them. */
static void test_loss_masks(pk_ctx *c)
{
    float s[2 * PX * K], t[2 * PX * K], g[2 * PX * K], g1[PX * K];
    uint8_t label[2 * PX], valid[2 * PX];
    pk_test_fill(s, 2 * PX * K, 11, 2.0f);
    pk_test_fill(t, 2 * PX * K, 12, 2.0f);
    for (int p = 0; p < PX; p++) {
        label[p] = (uint8_t)(p % K);
        label[PX + p] = 255;
        valid[p] = 1;
        valid[PX + p] = p < PX - PAD;
    }
    float T = 2.0f;
    /* CE: the mixed batch's is the labelled image's alone, and no gradient
     * reaches the unlabelled image */
    memset(g, 0, sizeof g);
    float ce = pk_ce_loss(c, g, s, label, 2 * PX, K, 255, 1.0f);
    float ce_lab = pk_ce_loss(c, NULL, s, label, PX, K, 255, 1.0f);
    PK_CHECK(failures, fabsf(ce - ce_lab) <= 1e-6f * fabsf(ce_lab), "CE %g != labelled %g", ce,
             ce_lab);
    int ce_touch = 0;
    for (int i = PX * K; i < 2 * PX * K; i++)
        ce_touch |= g[i] != 0.0f;
    PK_CHECK(failures, !ce_touch, "CE gradient on the unlabelled image");
    /* KD: the mean over both images' kept pixels, so the unlabelled image's
     * pixels count (PX - PAD of them), its padding does not */
    memset(g, 0, sizeof g);
    float kd = pk_kd_loss(c, g, s, t, valid, 2 * PX, K, T, 1.0f);
    float kd0 = pk_kd_loss(c, NULL, s, t, valid, PX, K, T, 1.0f);
    memset(g1, 0, sizeof g1);
    float kd1 = pk_kd_loss(c, g1, s + PX * K, t + PX * K, valid + PX, PX, K, T, 1.0f);
    double want = ((double)kd0 * PX + (double)kd1 * (PX - PAD)) / (2 * PX - PAD);
    PK_CHECK(failures, fabs(kd - want) <= 1e-5 * fabs(want), "KD %g != %g over %d pixels", kd,
             want, 2 * PX - PAD);
    PK_CHECK(failures, fabsf(kd - kd0) > 1e-4f * kd0,
             "KD %g equals the labelled image's alone: the unlabelled pixels were not counted",
             kd);
    int kept = 1, pad_zero = 1;
    for (int p = 0; p < PX; p++) {
        int nz = 0;
        for (int k = 0; k < K; k++)
            nz |= g[(PX + p) * K + k] != 0.0f;
        if (p < PX - PAD)
            kept &= nz;
        else
            pad_zero &= !nz;
    }
    PK_CHECK(failures, kept, "KD gradient missing on a kept unlabelled pixel");
    PK_CHECK(failures, pad_zero, "KD gradient on the unlabelled image's padding");
    /* the same for the aux regression terms' mask */
    float sl = pk_smoothl1_loss(c, NULL, s, t, valid, 2 * PX, K, 1.0f);
    float sl0 = pk_smoothl1_loss(c, NULL, s, t, valid, PX, K, 1.0f);
    float sl1 = pk_smoothl1_loss(c, NULL, s + PX * K, t + PX * K, valid + PX, PX, K, 1.0f);
    want = ((double)sl0 * PX + (double)sl1 * (PX - PAD)) / (2 * PX - PAD);
    PK_CHECK(failures, fabs(sl - want) <= 1e-5 * fabs(want), "SmoothL1 %g != %g", sl, want);
}

int main(void)
{
    pk_ctx *c = pk_test_ctx(1);
    test_split();
    test_schedule();
    test_meta_flag();
    test_loss_masks(c);
    pk_ctx_destroy(c);
    printf("test_unlab: %s\n", failures ? "FAIL" : "ok");
    return failures != 0;
}
