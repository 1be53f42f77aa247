/* How student-distill mixes unlabelled images into its batches (issue #15,
 * student-distill(1)):
 *  - the batch: of -b B images, U = round(B x R) come from the unlabelled
 *    packs (R = --unlabeled-ratio) and B - U from the labelled pack, the
 *    labelled ones first; both parts must be non-empty;
 *  - the packs: all U unlabelled images of a step come from one unlabelled
 *    pack, the one furthest behind its share: pack p is next when
 *    (pos[p] + 1) / count[p] is the smallest (the lowest p on ties), pos[p]
 *    being the steps it served so far. So the packs are used in proportion
 *    to their image counts and their epochs advance together; pos[] is the
 *    whole state, and each pack's own loader is at its iteration pos[p]
 *    (its shuffle and augmentation seeded apart from the labelled pack's).
 * The state after step s is a function of s, the counts and U alone; it is
 * also written into every checkpoint (train_loop.c) and read back on
 * resume. */
#ifndef PSPKD_UNLAB_MIX_H
#define PSPKD_UNLAB_MIX_H

#define PK_UNLAB_MAX 8 /* unlabelled packs per run */

/* The split of a batch of `batch` images at ratio R in (0, 1): 0, or -1
 * when either part would be empty. */
int pk_unlab_split(int batch, double ratio, int *labelled, int *unlabelled);

typedef struct pk_unlab_sched {
    int n;                    /* packs */
    long count[PK_UNLAB_MAX]; /* images of each (>= 1) */
    long pos[PK_UNLAB_MAX];   /* steps each has served */
} pk_unlab_sched;

/* n packs (1..PK_UNLAB_MAX) with these image counts, no step served. */
void pk_unlab_sched_init(pk_unlab_sched *s, const long *count, int n);
/* The pack of the next step, which is then counted as served. */
int pk_unlab_sched_next(pk_unlab_sched *s);
/* Replays `steps` steps (the state after them, from init). */
void pk_unlab_sched_skip(pk_unlab_sched *s, long steps);

#endif
