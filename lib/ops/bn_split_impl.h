/* Private to lib/ops (bn.c, bn_sync.c): how the BatchNorm ops split their
 * channels over threads. Each thread owns a contiguous channel range, cut
 * at multiples of BN_ALIGN floats (one 64-byte line) so threads share no
 * cache line, and reduces it over all rows: every per-channel sum is taken
 * in the same order whatever the thread count. */
#ifndef PSPKD_BN_SPLIT_IMPL_H
#define PSPKD_BN_SPLIT_IMPL_H

#include "core/ctx.h"

#define BN_BLOCK 256 /* channels reduced together (accumulators on the stack) */
#define BN_ALIGN 16  /* channel split granularity */

/* Channels [*c0, *c1) of thread t out of nt. */
static inline void pk_bn_channel_range(int C, int t, int nt, int *c0, int *c1)
{
    int units = (C + BN_ALIGN - 1) / BN_ALIGN;
    int u0 = (int)((long)units * t / nt), u1 = (int)((long)units * (t + 1) / nt);
    *c0 = u0 * BN_ALIGN < C ? u0 * BN_ALIGN : C;
    *c1 = u1 * BN_ALIGN < C ? u1 * BN_ALIGN : C;
}

/* The threads for P rows of C channels: one when too small to pay for a
 * team, never more than the channel units. */
static inline int pk_bn_team_size(const pk_ctx *c, long P, int C)
{
    int units = (C + BN_ALIGN - 1) / BN_ALIGN, nt = pk_ctx_threads(c);
    if ((double)P * C < 32768)
        return 1;
    return nt < units ? nt : units;
}

#endif
