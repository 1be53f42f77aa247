/* Joining the slices of a logits cache that teacher-dump --shard I/N
 * computed on several machines into the one cache student-distill reads. */
#ifndef PSPKD_LOGITS_MERGE_H
#define PSPKD_LOGITS_MERGE_H

#include "core/err.h"

/* Shard i of n (0 <= i < n) holds the pack's records [i*count/n,
 * (i+1)*count/n) in pack order: contiguous, disjoint, covering. */
int pk_shard_first(int count, int i, int n);

/* Writes `out` (atomically; replaced when force) from the slice caches:
 * every slice must come from the same teacher and from `pack` (teacher
 * hash, pack id, classes), every image key of the pack must be in exactly
 * one slice (PK_ENOTFOUND naming a missing key, PK_EINVAL naming a key two
 * slices hold), and no slice may hold a key the pack does not. The
 * records are copied as they are. *records receives the count written. */
int pk_logits_merge(const char *out, const char *pack, const char *const *slices, int n,
                    int force, long *records, pk_err *e);

#endif
