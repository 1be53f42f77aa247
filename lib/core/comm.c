/* The communicator's dispatch and its one-process backend; see comm.h. */
#include "core/comm_impl.h"

#include <stdlib.h>
#include <stdio.h>

static int self_allreduce(pk_comm *c, void *buf, size_t n, int type, int op, pk_err *e)
{
    (void)c, (void)buf, (void)n, (void)type, (void)op, (void)e;
    return PK_OK; /* one rank: the sum is the buffer */
}

static int self_bcast(pk_comm *c, void *buf, size_t bytes, int root, pk_err *e)
{
    (void)c, (void)buf, (void)bytes;
    return root == 0 ? PK_OK : pk_fail(e, PK_EINVAL, "broadcast from rank %d of 1", root);
}

static int self_barrier(pk_comm *c, pk_err *e)
{
    (void)c, (void)e;
    return PK_OK;
}

static void self_abort(pk_comm *c, int status)
{
    (void)c;
    exit(status);
}

static void self_close(pk_comm *c) { free(c); }

static const pk_comm_ops self_ops = {"self",       0,          self_allreduce, self_bcast,
                                     self_barrier, self_abort, self_close};

int pk_comm_open_self(pk_comm **out, pk_err *e)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return pk_fail(e, PK_ENOMEM, "out of memory for a communicator");
    (*out)->ops = &self_ops;
    (*out)->size = 1;
    return PK_OK;
}

int pk_comm_have_mpi(void)
{
#ifdef PSPKD_MPI
    return 1;
#else
    return 0;
#endif
}

/* Whether an MPI launcher started this process. */
static int launched_by_mpi(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK",
                                       "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        if (getenv(vars[i]))
            return 1;
    return 0;
}

int pk_comm_open_world(pk_comm **out, pk_err *e)
{
    *out = NULL;
    if (!launched_by_mpi())
        return pk_comm_open_self(out, e);
#ifdef PSPKD_MPI
    return pk_comm_mpi_open(out, e);
#else
    /* Every rank would train alone and write the same files. */
    return pk_fail(e, PK_EINVAL,
                   "started by an MPI launcher, but this build has no MPI (rebuild with MPI=1)");
#endif
}

int pk_comm_open_nccl(pk_comm **out, pk_comm *host, void *cuda_ctx, pk_err *e)
{
    *out = NULL;
#ifdef PSPKD_NCCL
    return pk_comm_nccl_open(out, host, cuda_ctx, e);
#else
    (void)host, (void)cuda_ctx;
    return pk_fail(e, PK_EINVAL, "this build has no NCCL (CUDA=1 MPI=1 with nccl.h)");
#endif
}

void pk_comm_close(pk_comm *c)
{
    if (c)
        c->ops->close(c);
}

int pk_comm_rank(const pk_comm *c) { return c ? c->rank : 0; }
int pk_comm_size(const pk_comm *c) { return c ? c->size : 1; }
const char *pk_comm_name(const pk_comm *c) { return c ? c->ops->name : "self"; }
int pk_comm_on_device(const pk_comm *c) { return c ? c->ops->on_device : 0; }

int pk_comm_allreduce_f32(pk_comm *c, float *buf, size_t n, pk_err *e)
{
    if (!c || c->size == 1 || n == 0)
        return PK_OK;
    return c->ops->allreduce(c, buf, n, PK_COMM_FLOAT, PK_COMM_SUM, e);
}

int pk_comm_allreduce_f64(pk_comm *c, double *buf, size_t n, pk_err *e)
{
    if (!c || c->size == 1 || n == 0)
        return PK_OK;
    return c->ops->allreduce(c, buf, n, PK_COMM_DOUBLE, PK_COMM_SUM, e);
}

int pk_comm_allmax_f64(pk_comm *c, double *buf, size_t n, pk_err *e)
{
    if (!c || c->size == 1 || n == 0)
        return PK_OK;
    pk_comm *h = c->ops->on_device && c->host ? c->host : c; /* host buffers */
    return h->ops->allreduce(h, buf, n, PK_COMM_DOUBLE, PK_COMM_MAX, e);
}

int pk_comm_bcast(pk_comm *c, void *buf, size_t bytes, int root, pk_err *e)
{
    if (!c || bytes == 0)
        return PK_OK;
    if (root < 0 || root >= c->size)
        return pk_fail(e, PK_EINVAL, "broadcast from rank %d of %d", root, c->size);
    return c->size == 1 ? PK_OK : c->ops->bcast(c, buf, bytes, root, e);
}

int pk_comm_barrier(pk_comm *c, pk_err *e)
{
    return !c || c->size == 1 ? PK_OK : c->ops->barrier(c, e);
}

void pk_comm_abort(pk_comm *c, int status)
{
    if (c)
        c->ops->abort(c, status);
    exit(status);
}
