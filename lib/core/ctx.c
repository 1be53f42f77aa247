/* The CPU compute context: oneDNN engine and stream, thread count, the
 * per-shape primitive cache and reusable scratch buffers. */
#include "core/ctx_impl.h"
#include "ops/ops.h"

#include <dnnl_debug.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef PSPKD_CUDA
#include "ops/ctx_cuda_impl.h"
#endif

#define PK_ALIGN 64

static int default_threads(void)
{
    /* OMP_NUM_THREADS may be a list ("4,2"): its first entry is ours. */
    const char *s = getenv("OMP_NUM_THREADS");
    if (s && *s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end != s && v > 0 && v < 4096)
            return (int)v;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n < 4096 ? (int)n : 1;
}

int pk_dnnl_check(int status, const char *what, pk_err *e)
{
    if (status == dnnl_success)
        return PK_OK;
    return pk_fail(e, PK_EBACKEND, "oneDNN: %s: %s", what,
                   dnnl_status2str((dnnl_status_t)status));
}

int pk_dnnl_attr_make(dnnl_primitive_attr_t *attr, int accumulate, pk_err *e)
{
    int rc = pk_dnnl_check(dnnl_primitive_attr_create(attr), "attr create", e);
    if (rc == PK_OK)
        rc = pk_dnnl_check(dnnl_primitive_attr_set_scratchpad_mode(*attr,
                                                                    dnnl_scratchpad_mode_user),
                           "attr scratchpad", e);
    if (rc == PK_OK && accumulate) {
        dnnl_post_ops_t po = NULL;
        rc = pk_dnnl_check(dnnl_post_ops_create(&po), "post-ops create", e);
        if (rc == PK_OK)
            rc = pk_dnnl_check(dnnl_post_ops_append_sum(po, 1.0f), "post-ops sum", e);
        if (rc == PK_OK)
            rc = pk_dnnl_check(dnnl_primitive_attr_set_post_ops(*attr, po), "attr post-ops", e);
        if (po)
            dnnl_post_ops_destroy(po);
    }
    return rc;
}

int pk_dnnl_mem_make(pk_ctx *c, dnnl_memory_t *m, const dnnl_memory_desc_t *md, pk_err *e)
{
    return pk_dnnl_check(dnnl_memory_create(m, md, c->engine, DNNL_MEMORY_NONE),
                         "memory create", e);
}

int pk_dnnl_bind(pk_ctx *c, dnnl_memory_t m, const void *ptr, pk_err *e)
{
    /* oneDNN reads but never writes inputs; its API is not const-typed. */
    return pk_dnnl_check(dnnl_memory_set_data_handle_v2(m, (void *)(uintptr_t)ptr, c->stream),
                         "set data handle", e);
}

int pk_ctx_create(pk_ctx **out, const pk_ctx_opts *opts, pk_err *e)
{
    *out = NULL;
    pk_ctx_opts o = opts ? *opts : (pk_ctx_opts){0};
#ifndef PSPKD_CUDA
    if (o.device == PK_DEV_CUDA)
        return pk_fail(e, PK_EINVAL, "context: built without CUDA (rebuild with make CUDA=1)");
#endif
    if (o.device != PK_DEV_CPU && o.device != PK_DEV_CUDA)
        return pk_fail(e, PK_EINVAL, "context: unknown device %d", (int)o.device);
    if (o.conv_algo < PK_CONV_AUTO || o.conv_algo > PK_CONV_WINOGRAD)
        return pk_fail(e, PK_EINVAL, "context: unknown convolution algorithm %d", o.conv_algo);
    if (o.precision != PK_PREC_FP32 && o.precision != PK_PREC_BF16)
        return pk_fail(e, PK_EINVAL, "context: unknown precision %d", o.precision);
    if (o.threads < 0)
        return pk_fail(e, PK_EINVAL, "context: thread count %d is negative", o.threads);
    pk_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return pk_fail(e, PK_ENOMEM, "context: out of memory");
    c->device = o.device;
    c->precision = (pk_precision)o.precision;
    c->threads = o.threads > 0 ? o.threads : default_threads();
    /* PSPKD_CONV: the tools' way to choose (e.g. direct: PyTorch's algorithm) */
    const char *conv = getenv("PSPKD_CONV");
    c->conv_algo = (pk_conv_algo)o.conv_algo;
    if (o.conv_algo == PK_CONV_AUTO && conv && *conv) {
        if (!strcmp(conv, "direct"))
            c->conv_algo = PK_CONV_DIRECT;
        else if (!strcmp(conv, "winograd"))
            c->conv_algo = PK_CONV_WINOGRAD;
        else if (strcmp(conv, "auto")) {
            free(c);
            return pk_fail(e, PK_EINVAL, "PSPKD_CONV=%s: takes auto, direct or winograd", conv);
        }
    }
    int rc = pk_dnnl_check(dnnl_engine_create(&c->engine, dnnl_cpu, 0), "engine create", e);
    if (rc == PK_OK)
        rc = pk_dnnl_check(
            dnnl_stream_create(&c->stream, c->engine, dnnl_stream_default_flags),
            "stream create", e);
#ifdef PSPKD_CUDA
    if (rc == PK_OK && c->device == PK_DEV_CUDA)
        rc = pk_cuda_ctx_init(c, &o, e);
#endif
    if (rc == PK_OK && c->device == PK_DEV_CPU && c->precision == PK_PREC_BF16)
        rc = pk_conv_bf16_supported(c, e);
    if (rc != PK_OK) {
        pk_ctx_destroy(c);
        return rc;
    }
    *out = c;
    return PK_OK;
}

void pk_ctx_destroy(pk_ctx *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->cache_cap; i++) {
        pk_cache_entry *en = &c->cache[i];
        if (!en->key)
            continue;
        if (en->drop)
            en->drop(en->value);
        free(en->key);
    }
    free(c->cache);
    for (int s = 0; s < PK_SCRATCH_SLOTS; s++)
        pk_dev_free(c, c->scratch[s].p);
#ifdef PSPKD_CUDA
    pk_cuda_ctx_fini(c);
#endif
    if (c->stream)
        dnnl_stream_destroy(c->stream);
    if (c->engine)
        dnnl_engine_destroy(c->engine);
    free(c);
}

int pk_ctx_threads(const pk_ctx *c) { return c->threads; }
pk_device pk_ctx_device(const pk_ctx *c) { return c->device; }
pk_precision pk_ctx_precision(const pk_ctx *c) { return c->precision; }

const char *pk_precision_name(int precision)
{
    return precision == PK_PREC_BF16 ? "bf16" : precision == PK_PREC_FP32 ? "fp32" : "unknown";
}

/* ---- memory ------------------------------------------------------------ */
void *pk_dev_alloc(pk_ctx *c, size_t bytes)
{
#ifdef PSPKD_CUDA
    if (c->cuda)
        return pk_cuda_dev_alloc(c, bytes);
#endif
    (void)c;
    size_t rounded = (bytes + PK_ALIGN - 1) / PK_ALIGN * PK_ALIGN;
    if (rounded < bytes)
        return NULL; /* overflow */
    return aligned_alloc(PK_ALIGN, rounded ? rounded : PK_ALIGN);
}

void pk_dev_free(pk_ctx *c, void *p)
{
#ifdef PSPKD_CUDA
    if (c->cuda) {
        pk_cuda_dev_free(c, p);
        return;
    }
#endif
    (void)c;
    free(p);
}

void pk_dev_zero(pk_ctx *c, void *p, size_t bytes)
{
#ifdef PSPKD_CUDA
    if (c->cuda) {
        pk_cuda_dev_zero(c, p, bytes);
        return;
    }
#endif
    /* large buffers (the whole gradient before each backward) over the
     * threads: one thread's memset is well below the memory's bandwidth */
    size_t chunk = (size_t)1 << 22;
    long n = (long)((bytes + chunk - 1) / chunk);
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) if (n > 1)
    for (long i = 0; i < n; i++) {
        size_t at = (size_t)i * chunk;
        memset((char *)p + at, 0, bytes - at < chunk ? bytes - at : chunk);
    }
}

/* Upload and download: on the CPU one copy (none in place). */
static void dev_copy(pk_ctx *c, void *dst, const void *src, size_t bytes, int upload)
{
#ifdef PSPKD_CUDA
    if (c->cuda) {
        (upload ? pk_cuda_dev_upload : pk_cuda_dev_download)(c, dst, src, bytes);
        return;
    }
#endif
    (void)c;
    (void)upload;
    if (bytes && dst != src)
        memcpy(dst, src, bytes);
}

void pk_dev_upload(pk_ctx *c, void *dst_dev, const void *src_host, size_t bytes)
{
    dev_copy(c, dst_dev, src_host, bytes, 1);
}

void pk_dev_download(pk_ctx *c, void *dst_host, const void *src_dev, size_t bytes)
{
    dev_copy(c, dst_host, src_dev, bytes, 0);
}

void pk_dev_sync(pk_ctx *c)
{
#ifdef PSPKD_CUDA
    if (c->cuda)
        pk_cuda_dev_sync(c);
#endif
    (void)c;
}

void *pk_ctx_scratch(pk_ctx *c, int slot, size_t bytes, pk_err *e)
{
    if (slot < 0 || slot >= PK_SCRATCH_SLOTS) {
        pk_fail(e, PK_EINVAL, "context: scratch slot %d out of range", slot);
        return NULL;
    }
    if (c->scratch[slot].p && c->scratch[slot].cap >= bytes)
        return c->scratch[slot].p;
    /* Exact size: a network reaches its largest request in its first step. */
    size_t want = bytes ? bytes : 1;
    pk_dev_free(c, c->scratch[slot].p);
    c->scratch[slot].p = pk_dev_alloc(c, want);
    c->scratch[slot].cap = c->scratch[slot].p ? want : 0;
    if (!c->scratch[slot].p)
        pk_fail(e, PK_ENOMEM, "context: cannot allocate %zu bytes of scratch", want);
    return c->scratch[slot].p;
}

/* ---- primitive cache: open addressing with linear probing ------------- */
static uint64_t hash_bytes(const void *key, size_t n)
{
    const unsigned char *p = key;
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h ? h : 1;
}

static pk_cache_entry *probe(pk_cache_entry *tab, size_t cap, uint64_t h, const void *key,
                             size_t len)
{
    for (size_t i = h & (cap - 1);; i = (i + 1) & (cap - 1)) {
        pk_cache_entry *en = &tab[i];
        if (!en->key || (en->hash == h && en->key_len == len && !memcmp(en->key, key, len)))
            return en;
    }
}

void *pk_ctx_cache_find(pk_ctx *c, const void *key, size_t key_len)
{
    if (!c->cache_cap)
        return NULL;
    pk_cache_entry *en = probe(c->cache, c->cache_cap, hash_bytes(key, key_len), key, key_len);
    return en->key ? en->value : NULL;
}

static int cache_grow(pk_ctx *c, pk_err *e)
{
    size_t cap = c->cache_cap ? c->cache_cap * 2 : 64;
    pk_cache_entry *tab = calloc(cap, sizeof *tab);
    if (!tab)
        return pk_fail(e, PK_ENOMEM, "context: out of memory growing the primitive cache");
    for (size_t i = 0; i < c->cache_cap; i++) {
        pk_cache_entry *old = &c->cache[i];
        if (old->key)
            *probe(tab, cap, old->hash, old->key, old->key_len) = *old;
    }
    free(c->cache);
    c->cache = tab;
    c->cache_cap = cap;
    return PK_OK;
}

int pk_ctx_cache_add(pk_ctx *c, const void *key, size_t key_len, void *value,
                     void (*drop)(void *value), pk_err *e)
{
    int rc = PK_OK;
    void *copy = NULL;
    if ((c->cache_len + 1) * 2 > c->cache_cap)
        rc = cache_grow(c, e);
    if (rc == PK_OK && !(copy = malloc(key_len ? key_len : 1)))
        rc = pk_fail(e, PK_ENOMEM, "context: out of memory in the primitive cache");
    if (rc != PK_OK) {
        if (drop)
            drop(value);
        return rc;
    }
    memcpy(copy, key, key_len);
    uint64_t h = hash_bytes(key, key_len);
    pk_cache_entry *en = probe(c->cache, c->cache_cap, h, key, key_len);
    if (en->key) { /* replacing: drop the old value */
        if (en->drop)
            en->drop(en->value);
        free(en->key);
    } else {
        c->cache_len++;
    }
    *en = (pk_cache_entry){h, copy, key_len, value, drop};
    return PK_OK;
}

void *pk_ctx_cache_get(pk_ctx *c, const void *key, size_t key_len, size_t size,
                       int (*build)(pk_ctx *c, void *value, const void *arg, pk_err *e),
                       const void *arg, void (*drop)(void *value), pk_err *e)
{
    void *v = pk_ctx_cache_find(c, key, key_len);
    if (v)
        return v;
    if (!(v = calloc(1, size))) {
        pk_fail(e, PK_ENOMEM, "context: out of memory in the primitive cache");
        return NULL;
    }
    if (build(c, v, arg, e) != PK_OK) {
        drop(v);
        return NULL;
    }
    return pk_ctx_cache_add(c, key, key_len, v, drop, e) == PK_OK ? v : NULL;
}

void pk_dnnl_release(dnnl_primitive_t prim, dnnl_primitive_desc_t pd, dnnl_memory_t *mems,
                     size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (mems[i])
            dnnl_memory_destroy(mems[i]);
    if (prim)
        dnnl_primitive_destroy(prim);
    if (pd)
        dnnl_primitive_desc_destroy(pd);
}

size_t pk_dnnl_scratch_bytes(const_dnnl_primitive_desc_t pd)
{
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    return md ? dnnl_memory_desc_get_size(md) : 0;
}

/* ---- threads for oneDNN ------------------------------------------------ */
int pk_ctx_omp_enter(const pk_ctx *c)
{
    int saved = omp_get_max_threads();
    if (saved != c->threads)
        omp_set_num_threads(c->threads);
    return saved;
}

void pk_ctx_omp_leave(int saved)
{
    if (omp_get_max_threads() != saved)
        omp_set_num_threads(saved);
}
