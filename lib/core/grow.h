/* Arrays that grow one element at a time (tables, plans). */
#ifndef PSPKD_GROW_H
#define PSPKD_GROW_H

#include <stdlib.h>

/* arr, holding n of its *cap elements of `size` bytes, with room for one
 * more: arr itself while n < *cap, else arr reallocated to twice *cap
 * (`first` when *cap is 0) and *cap updated, or NULL with arr and *cap
 * unchanged when memory runs out. */
static inline void *pk_grow(void *arr, int *cap, int n, int first, size_t size)
{
    if (n < *cap)
        return arr;
    int nc = *cap ? 2 * *cap : first;
    void *q = realloc(arr, (size_t)nc * size);
    if (q)
        *cap = nc;
    return q;
}

#endif
