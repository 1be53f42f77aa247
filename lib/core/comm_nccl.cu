/* The NCCL backend of pk_comm: sums over device buffers on the CUDA
 * context's stream. The ranks are those of the host (MPI) communicator it
 * is opened over; rank 0's ncclUniqueId reaches the others through it.
 * Built with CUDA=1 MPI=1 when nccl.h is found (PSPKD_NCCL); the Makefile
 * leaves this file out otherwise. */
#include "core/comm_impl.h"
#include "ops/cuda_common.cuh"

#include <cstdlib>
#include <nccl.h>

namespace {

struct nccl_state {
    ncclComm_t comm;
    pk_ctx *ctx;
};

int nccl_check(ncclResult_t r, const char *what, pk_err *e)
{
    if (r == ncclSuccess)
        return PK_OK;
    return pk_fail(e, PK_EBACKEND, "NCCL: %s: %s", what, ncclGetErrorString(r));
}

int nccl_allreduce(pk_comm *c, void *buf, size_t n, int type, int op, pk_err *e)
{
    nccl_state *s = static_cast<nccl_state *>(c->impl);
    pk_cuda_ctx *cs = pk_cuda_enter(s->ctx);
    if (!cs)
        return pk_fail(e, PK_EBACKEND, "NCCL: the CUDA context has failed");
    int rc = nccl_check(ncclAllReduce(buf, buf, n, type == PK_COMM_DOUBLE ? ncclFloat64
                                                                          : ncclFloat32,
                                      op == PK_COMM_MAX ? ncclMax : ncclSum, s->comm,
                                      cs->stream),
                        "allreduce", e);
    if (rc == PK_OK && cudaStreamSynchronize(cs->stream) != cudaSuccess)
        rc = pk_fail(e, PK_EBACKEND, "NCCL: allreduce: the stream failed");
    return rc;
}

int nccl_bcast(pk_comm *c, void *buf, size_t bytes, int root, pk_err *e)
{
    nccl_state *s = static_cast<nccl_state *>(c->impl);
    pk_cuda_ctx *cs = pk_cuda_enter(s->ctx);
    if (!cs)
        return pk_fail(e, PK_EBACKEND, "NCCL: the CUDA context has failed");
    int rc = nccl_check(ncclBroadcast(buf, buf, bytes, ncclUint8, root, s->comm, cs->stream),
                        "broadcast", e);
    if (rc == PK_OK && cudaStreamSynchronize(cs->stream) != cudaSuccess)
        rc = pk_fail(e, PK_EBACKEND, "NCCL: broadcast: the stream failed");
    return rc;
}

int nccl_barrier(pk_comm *c, pk_err *e)
{
    return c->host->ops->barrier(c->host, e);
}

void nccl_abort(pk_comm *c, int status)
{
    nccl_state *s = static_cast<nccl_state *>(c->impl);
    ncclCommAbort(s->comm);
    c->host->ops->abort(c->host, status);
    std::exit(status);
}

void nccl_close(pk_comm *c)
{
    nccl_state *s = static_cast<nccl_state *>(c->impl);
    if (s)
        ncclCommDestroy(s->comm);
    std::free(s);
    std::free(c);
}

const pk_comm_ops nccl_ops = {"nccl",       1,          nccl_allreduce, nccl_bcast,
                              nccl_barrier, nccl_abort, nccl_close};

} // namespace

extern "C" int pk_comm_nccl_open(pk_comm **out, pk_comm *host, void *cuda_ctx, pk_err *e)
{
    *out = nullptr;
    pk_ctx *ctx = static_cast<pk_ctx *>(cuda_ctx);
    if (!host || !ctx || pk_ctx_device(ctx) != PK_DEV_CUDA)
        return pk_fail(e, PK_EINVAL, "NCCL needs a host communicator and a CUDA context");
    pk_cuda_ctx *cs = pk_cuda_enter(ctx);
    if (!cs || cudaSetDevice(cs->device) != cudaSuccess)
        return pk_fail(e, PK_EBACKEND, "NCCL: cannot select the context's device");
    ncclUniqueId id;
    if (host->rank == 0) {
        int rc = nccl_check(ncclGetUniqueId(&id), "unique id", e);
        if (rc)
            return rc;
    }
    int rc = pk_comm_bcast(host, &id, sizeof id, 0, e);
    if (rc)
        return rc;
    pk_comm *c = static_cast<pk_comm *>(std::calloc(1, sizeof *c));
    nccl_state *s = static_cast<nccl_state *>(std::calloc(1, sizeof *s));
    if (!c || !s) {
        std::free(c);
        std::free(s);
        return pk_fail(e, PK_ENOMEM, "out of memory for a communicator");
    }
    if ((rc = nccl_check(ncclCommInitRank(&s->comm, host->size, id, host->rank), "init", e))) {
        std::free(c);
        std::free(s);
        return rc;
    }
    s->ctx = ctx;
    c->ops = &nccl_ops;
    c->impl = s;
    c->rank = host->rank;
    c->size = host->size;
    c->host = host;
    *out = c;
    return PK_OK;
}
