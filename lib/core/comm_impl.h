/* Private to lib/core (and comm_nccl.cu): a communicator is a table of
 * backend functions and its state; comm.c dispatches. */
#ifndef PSPKD_COMM_IMPL_H
#define PSPKD_COMM_IMPL_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "core/comm.h"

enum pk_comm_type { PK_COMM_FLOAT = 0, PK_COMM_DOUBLE = 1 };
enum pk_comm_op { PK_COMM_SUM = 0, PK_COMM_MAX = 1 };

typedef struct pk_comm_ops {
    const char *name;
    int on_device;
    int (*allreduce)(pk_comm *c, void *buf, size_t n, int type, int op, pk_err *e);
    int (*bcast)(pk_comm *c, void *buf, size_t bytes, int root, pk_err *e);
    int (*barrier)(pk_comm *c, pk_err *e);
    void (*abort)(pk_comm *c, int status);
    void (*close)(pk_comm *c); /* frees c too */
} pk_comm_ops;

struct pk_comm {
    const pk_comm_ops *ops;
    int rank, size;
    void *impl;      /* the backend's state */
    pk_comm *host;   /* NCCL: the MPI communicator it was opened over */
};

/* comm_mpi.c (PSPKD_MPI builds): MPI_COMM_WORLD, initialising MPI. */
int pk_comm_mpi_open(pk_comm **out, pk_err *e);
/* comm_nccl.cu (PSPKD_NCCL builds). */
int pk_comm_nccl_open(pk_comm **out, pk_comm *host, void *cuda_ctx, pk_err *e);

#ifdef __cplusplus
}
#endif

#endif
