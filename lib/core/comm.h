/* The communicator of data-parallel training: rank, size, in-place sums
 * over every rank, broadcast, barrier, and an abort that ends all ranks.
 *
 * Backends: "self" (one process, no library: every call is a no-op), Open
 * MPI on host buffers (lib/core/comm_mpi.c, built with MPI=1), and NCCL on
 * device buffers of a CUDA context (lib/core/comm_nccl.cu, built with
 * CUDA=1 MPI=1 when nccl.h is found; its unique id is broadcast over the
 * MPI communicator it is opened from). The communicator is passed
 * explicitly (the model carries one, pspnet.h): there is no global state
 * beyond what MPI itself keeps.
 *
 * Every rank must make the same calls in the same order (collectives).
 * A call that fails leaves the group in an unknown state: the caller
 * reports and then calls pk_comm_abort, which ends every rank (mpirun
 * exits non-zero) instead of leaving the others blocked. */
#ifndef PSPKD_COMM_H
#define PSPKD_COMM_H

#include <stddef.h>
#include "core/err.h"

typedef struct pk_comm pk_comm;

/* The process's communicator: MPI's world when this build has MPI and the
 * process was started by an MPI launcher (mpirun sets OMPI_COMM_WORLD_SIZE,
 * PMIX_RANK or PMI_RANK); otherwise the one-process communicator, which
 * touches no MPI at all. Initialises MPI (funneled threads: only the
 * calling thread communicates) in the first case; pk_comm_close finalises. */
int pk_comm_open_world(pk_comm **out, pk_err *e);
/* The one-process communicator (rank 0 of 1). */
int pk_comm_open_self(pk_comm **out, pk_err *e);
/* Whether this build can run under MPI (1) or only as one process (0). */
int pk_comm_have_mpi(void);
/* NCCL over the same ranks as host (an MPI or self communicator), on the
 * CUDA device and stream of the context `cuda_ctx` (a pk_ctx *): buffers
 * of its allreduces are device memory. PK_EINVAL in builds without NCCL. */
int pk_comm_open_nccl(pk_comm **out, pk_comm *host, void *cuda_ctx, pk_err *e);
void pk_comm_close(pk_comm *c); /* NULL is fine */

int pk_comm_rank(const pk_comm *c); /* 0 for NULL */
int pk_comm_size(const pk_comm *c); /* 1 for NULL */
const char *pk_comm_name(const pk_comm *c); /* "self", "mpi", "nccl" */
/* 1 when the buffers of the sums are device memory (NCCL). */
int pk_comm_on_device(const pk_comm *c);

/* buf[i] = sum over ranks of buf[i], the same bits on every rank. */
int pk_comm_allreduce_f32(pk_comm *c, float *buf, size_t n, pk_err *e);
int pk_comm_allreduce_f64(pk_comm *c, double *buf, size_t n, pk_err *e);
/* buf[i] = max over ranks of buf[i] (host buffers on every backend). */
int pk_comm_allmax_f64(pk_comm *c, double *buf, size_t n, pk_err *e);
/* root's bytes into every rank's buf (host memory on the MPI backend). */
int pk_comm_bcast(pk_comm *c, void *buf, size_t bytes, int root, pk_err *e);
int pk_comm_barrier(pk_comm *c, pk_err *e);
/* Ends every rank with this exit status (MPI_Abort); one process: exit. */
void pk_comm_abort(pk_comm *c, int status) __attribute__((noreturn));

#endif
