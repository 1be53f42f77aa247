/* Batched bf16 matrix products (matmul_bf16.h). oneDNN's matmul takes
 * bf16 sources with fp32 accumulation and an fp32 destination, and any
 * strides. On this Zen 5 (avx512_bf16, 1 thread) its bf16 kernels ran the
 * Winograd and 1x1 shapes of the R50 step at 2x225 1.6-2.1x faster than
 * dnnl_sgemm on the same data in fp32. With them (and the activations
 * kept in bf16) the bf16 R18 and R50 train steps went from 1.0-1.1x to
 * 1.36x and 1.28x the fp32 step (make bench, README). */
#include "ops/matmul_bf16.h"
#include "core/ctx_impl.h"

#include <stdlib.h>

typedef struct bmm_key {
    long tag;
    pk_bmm_desc d;
} bmm_key;
#define BMM_KEY_TAG 0x626d6d31L /* "bmm1" */

typedef struct bmm_prim {
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim;
    dnnl_memory_t a, b, c, scratch;
    size_t scratch_bytes;
} bmm_prim;

static void bmm_prim_drop(void *v)
{
    bmm_prim *p = v;
    if (!p)
        return;
    dnnl_memory_t mems[] = {p->a, p->b, p->c, p->scratch};
    pk_dnnl_release(p->prim, p->pd, mems, sizeof mems / sizeof *mems);
    free(p);
}

static int operand_md(dnnl_memory_desc_t *md, long b, long rows, long cols, const long *s,
                      dnnl_data_type_t dt, pk_err *e)
{
    dnnl_dims_t dims = {b, rows, cols}, strides = {s[0], s[1], s[2]};
    return pk_dnnl_check(dnnl_memory_desc_init_by_strides(md, 3, dims, dt, strides),
                         "matmul operand descriptor", e);
}

static int build(pk_ctx *c, void *value, const void *arg, pk_err *e)
{
    bmm_prim *p = value;
    const pk_bmm_desc *d = arg;
    dnnl_memory_desc_t a, b, cm;
    int rc = operand_md(&a, d->batch, d->m, d->k, d->sa, dnnl_bf16, e);
    if (rc == PK_OK)
        rc = operand_md(&b, d->batch, d->k, d->n, d->sb, dnnl_bf16, e);
    if (rc == PK_OK)
        rc = operand_md(&cm, d->batch, d->m, d->n, d->sc, dnnl_f32, e);
    dnnl_primitive_attr_t attr = NULL;
    if (rc == PK_OK)
        rc = pk_dnnl_attr_make(&attr, d->accumulate != 0, e);
    if (rc == PK_OK) {
        dnnl_matmul_desc_t md;
        rc = pk_dnnl_check(dnnl_matmul_desc_init(&md, &a, &b, NULL, &cm), "matmul descriptor",
                           e);
        if (rc == PK_OK)
            rc = pk_dnnl_check(dnnl_primitive_desc_create(&p->pd, &md, attr, c->engine, NULL),
                               "matmul primitive descriptor", e);
    }
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    if (rc == PK_OK)
        rc = pk_dnnl_check(dnnl_primitive_create(&p->prim, p->pd), "matmul create", e);
    if (rc == PK_OK)
        rc = pk_dnnl_mem_make(c, &p->a, &a, e);
    if (rc == PK_OK)
        rc = pk_dnnl_mem_make(c, &p->b, &b, e);
    if (rc == PK_OK)
        rc = pk_dnnl_mem_make(c, &p->c, &cm, e);
    p->scratch_bytes = rc == PK_OK ? pk_dnnl_scratch_bytes(p->pd) : 0;
    if (p->scratch_bytes)
        rc = pk_dnnl_mem_make(c, &p->scratch,
                              dnnl_primitive_desc_query_md(p->pd, dnnl_query_scratchpad_md, 0), e);
    return rc;
}

int pk_bmm_bf16(pk_ctx *c, const pk_bmm_desc *d, float *C, const uint16_t *A,
                const uint16_t *B, pk_err *e)
{
    if (d->batch <= 0 || d->m <= 0 || d->n <= 0 || d->k <= 0)
        return pk_fail(e, PK_EINVAL, "matmul: bad shape %ld x [%ld x %ld] . [%ld x %ld]",
                       d->batch, d->m, d->k, d->k, d->n);
    bmm_key key = {BMM_KEY_TAG, *d};
    bmm_prim *p = pk_ctx_cache_get(c, &key, sizeof key, sizeof *p, build, d, bmm_prim_drop, e);
    int rc = p ? pk_dnnl_bind(c, p->a, A, e) : e->code;
    if (rc == PK_OK)
        rc = pk_dnnl_bind(c, p->b, B, e);
    if (rc == PK_OK)
        rc = pk_dnnl_bind(c, p->c, C, e);
    if (rc != PK_OK)
        return rc;
    dnnl_exec_arg_t args[4] = {
        {DNNL_ARG_SRC, p->a}, {DNNL_ARG_WEIGHTS, p->b}, {DNNL_ARG_DST, p->c}};
    int nargs = 3;
    if (p->scratch) {
        void *s = pk_ctx_scratch(c, PK_SCRATCH_DNNL, p->scratch_bytes, e);
        rc = s ? pk_dnnl_bind(c, p->scratch, s, e) : PK_ENOMEM;
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, p->scratch};
    }
    if (rc == PK_OK)
        rc = pk_dnnl_check(dnnl_primitive_execute(p->prim, c->stream, nargs, args),
                           "matmul execute", e);
    if (rc == PK_OK)
        rc = pk_dnnl_check(dnnl_stream_wait(c->stream), "stream wait", e);
    return rc;
}
