/* Private to lib/: what a pk_ctx holds and the helpers ops use to reach it
 * (oneDNN engine and stream, the per-shape primitive cache, scratch buffers,
 * the thread count oneDNN runs with). Tools and tests only see ctx.h. */
#ifndef PSPKD_CTX_IMPL_H
#define PSPKD_CTX_IMPL_H

#include <dnnl.h>
#include <stddef.h>
#include <stdint.h>
#include "core/ctx.h"

/* Scratch slots: each op uses distinct slots for buffers that are alive at
 * the same time; a slot's contents do not survive the next op. */
enum pk_scratch_slot {
    PK_SCRATCH_DNNL = 0, /* oneDNN scratchpad (user-managed mode) */
    PK_SCRATCH_WEIGHTS,  /* weights reordered into the primitive's layout; Winograd U/dU */
    PK_SCRATCH_DWEIGHTS, /* weight gradient in the primitive's layout */
    PK_SCRATCH_DBIAS,    /* bias gradient before it is accumulated */
    PK_SCRATCH_ACT,      /* Winograd: the input's transform V, or dV (conv_wino.c) */
    PK_SCRATCH_OUT,      /* Winograd: the output's transform M, or dM */
    PK_SCRATCH_PHASE_X,  /* dilated conv: x or dx split into its phases (conv_phase.c) */
    PK_SCRATCH_PHASE_Y,  /* dilated conv: y or dy split into its phases */
    PK_SCRATCH_BF16_A,   /* bf16 precision: x in bf16 (conv.c) */
    PK_SCRATCH_BF16_B,   /* bf16 precision: dy in bf16 (conv.c) */
    PK_SCRATCH_OP0,      /* free for any op */
    PK_SCRATCH_OP1,
    PK_SCRATCH_SLOTS
};

typedef struct pk_cache_entry {
    uint64_t hash;
    void *key; /* NULL: empty slot */
    size_t key_len;
    void *value;
    void (*drop)(void *value);
} pk_cache_entry;

struct pk_ctx {
    pk_device device;
    int threads;
    pk_conv_algo conv_algo; /* never PK_CONV_AUTO's environment lookup: resolved */
    pk_precision precision;
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    pk_cache_entry *cache; /* open addressing, power-of-two capacity */
    size_t cache_cap, cache_len;
    struct {
        void *p;
        size_t cap;
    } scratch[PK_SCRATCH_SLOTS];
    struct pk_cuda_ctx *cuda; /* CUDA contexts of PSPKD_CUDA builds (lib/ops/ctx_cuda.cu) */
    /* Winograd's kept weight transforms (conv_wino.c): the open session
     * (0: none), the last one given out, the bytes held. */
    uint64_t keep_session, keep_last;
    size_t kept_bytes;
};

/* The cached value stored under key (bytes compared exactly), or NULL. */
void *pk_ctx_cache_find(pk_ctx *c, const void *key, size_t key_len);
/* Stores value under key; the cache owns it from now on and calls
 * drop(value) when the context is destroyed (also when adding fails). */
int pk_ctx_cache_add(pk_ctx *c, const void *key, size_t key_len, void *value,
                     void (*drop)(void *value), pk_err *e);

/* The value cached under key, or a new one: `size` zeroed bytes that
 * build(c, value, arg, e) fills, then added to the cache. NULL with e set
 * when building or adding fails (the value is dropped). */
void *pk_ctx_cache_get(pk_ctx *c, const void *key, size_t key_len, size_t size,
                       int (*build)(pk_ctx *c, void *value, const void *arg, pk_err *e),
                       const void *arg, void (*drop)(void *value), pk_err *e);

/* A 64-byte aligned buffer of at least `bytes` in `slot`, grown (contents
 * lost) when too small; NULL with PK_ENOMEM in e when growing fails. */
void *pk_ctx_scratch(pk_ctx *c, int slot, size_t bytes, pk_err *e);

/* oneDNN's OpenMP runtime sizes its teams from omp_get_max_threads(); these
 * bracket every oneDNN call with the context's thread count and restore the
 * caller's setting afterwards. */
int pk_ctx_omp_enter(const pk_ctx *c);
void pk_ctx_omp_leave(int saved);

/* PK_OK for dnnl_success, else PK_EBACKEND with "oneDNN: what: status". */
int pk_dnnl_check(int status, const char *what, pk_err *e);
/* A primitive attribute with a user-managed scratchpad, plus, when
 * `accumulate`, a sum post-op (dst += result); the caller destroys it. */
int pk_dnnl_attr_make(dnnl_primitive_attr_t *attr, int accumulate, pk_err *e);
/* A memory object of md on c's engine with no buffer yet (bound per call). */
int pk_dnnl_mem_make(pk_ctx *c, dnnl_memory_t *m, const dnnl_memory_desc_t *md, pk_err *e);
/* Destroys a primitive, its descriptor and its n memory objects (any of
 * them may be NULL). */
void pk_dnnl_release(dnnl_primitive_t prim, dnnl_primitive_desc_t pd, dnnl_memory_t *mems,
                     size_t n);
/* The bytes of pd's scratchpad (user-managed mode), 0 for none. */
size_t pk_dnnl_scratch_bytes(const_dnnl_primitive_desc_t pd);
/* Points m at ptr for the next execution on c's stream. */
int pk_dnnl_bind(pk_ctx *c, dnnl_memory_t m, const void *ptr, pk_err *e);

#endif
