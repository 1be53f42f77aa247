/* Timing helpers the benchmarks share; a header, as every bench/NAME.c is
 * a program of its own. */
#ifndef PSPKD_BENCH_UTIL_H
#define PSPKD_BENCH_UTIL_H

#include <stdlib.h>
#include <time.h>

static inline double bench_clock(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Wall-clock seconds. */
static inline double now(void) { return bench_clock(CLOCK_MONOTONIC); }

/* CPU seconds of the whole process (every thread): work per CPU second is
 * the per-core throughput, which other users of a shared machine disturb
 * far less than wall-clock figures. */
static inline double cpu_now(void) { return bench_clock(CLOCK_PROCESS_CPUTIME_ID); }

static inline int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts v[0..n) ascending (v[0] is the minimum, v[n-1] the maximum) and
 * returns the median. */
static inline double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#endif
