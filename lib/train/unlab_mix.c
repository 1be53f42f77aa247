/* The unlabelled share of a batch and the pack schedule: see unlab_mix.h. */
#include "train/unlab_mix.h"

#include <math.h>
#include <string.h>

int pk_unlab_split(int batch, double ratio, int *labelled, int *unlabelled)
{
    if (!(ratio > 0.0 && ratio < 1.0) || batch < 2)
        return -1;
    int u = (int)lround(batch * ratio);
    if (u < 1 || u > batch - 1)
        return -1;
    *unlabelled = u;
    *labelled = batch - u;
    return 0;
}

void pk_unlab_sched_init(pk_unlab_sched *s, const long *count, int n)
{
    memset(s, 0, sizeof *s);
    s->n = n < 0 ? 0 : n > PK_UNLAB_MAX ? PK_UNLAB_MAX : n;
    for (int p = 0; p < s->n; p++)
        s->count[p] = count[p] > 0 ? count[p] : 1;
}

int pk_unlab_sched_next(pk_unlab_sched *s)
{
    int best = 0;
    /* (pos[p]+1)/count[p] < (pos[b]+1)/count[b], without division */
    for (int p = 1; p < s->n; p++)
        if ((s->pos[p] + 1) * s->count[best] < (s->pos[best] + 1) * s->count[p])
            best = p;
    s->pos[best]++;
    return best;
}

void pk_unlab_sched_skip(pk_unlab_sched *s, long steps)
{
    for (long i = 0; i < steps; i++)
        pk_unlab_sched_next(s);
}
