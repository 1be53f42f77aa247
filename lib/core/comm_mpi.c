/* The Open MPI backend of pk_comm (host buffers, MPI_COMM_WORLD); built
 * only with MPI=1 (the Makefile leaves this file out otherwise). */
#include "core/comm_impl.h"

#include <limits.h>
#include <mpi.h>
#include <stdlib.h>

/* MPI counts are int: larger buffers go in chunks of this many elements. */
#define CHUNK ((size_t)1 << 30)

typedef struct mpi_state {
    int finalize; /* this communicator initialised MPI */
} mpi_state;

static int mpi_check(int rc, const char *what, pk_err *e)
{
    if (rc == MPI_SUCCESS)
        return PK_OK;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS)
        len = 0;
    msg[len < MPI_MAX_ERROR_STRING ? len : MPI_MAX_ERROR_STRING - 1] = '\0';
    return pk_fail(e, PK_EBACKEND, "MPI: %s: %s", what, len ? msg : "error");
}

static int mpi_allreduce(pk_comm *c, void *buf, size_t n, int type, int op, pk_err *e)
{
    (void)c;
    MPI_Datatype t = type == PK_COMM_DOUBLE ? MPI_DOUBLE : MPI_FLOAT;
    size_t esz = type == PK_COMM_DOUBLE ? sizeof(double) : sizeof(float);
    for (size_t off = 0; off < n; off += CHUNK) {
        int cnt = (int)(n - off < CHUNK ? n - off : CHUNK);
        int rc = MPI_Allreduce(MPI_IN_PLACE, (char *)buf + off * esz, cnt, t,
                               op == PK_COMM_MAX ? MPI_MAX : MPI_SUM, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS)
            return mpi_check(rc, "allreduce", e);
    }
    return PK_OK;
}

static int mpi_bcast(pk_comm *c, void *buf, size_t bytes, int root, pk_err *e)
{
    (void)c;
    for (size_t off = 0; off < bytes; off += CHUNK) {
        int cnt = (int)(bytes - off < CHUNK ? bytes - off : CHUNK);
        int rc = MPI_Bcast((char *)buf + off, cnt, MPI_BYTE, root, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS)
            return mpi_check(rc, "broadcast", e);
    }
    return PK_OK;
}

static int mpi_barrier(pk_comm *c, pk_err *e)
{
    (void)c;
    return mpi_check(MPI_Barrier(MPI_COMM_WORLD), "barrier", e);
}

static void mpi_abort(pk_comm *c, int status)
{
    (void)c;
    MPI_Abort(MPI_COMM_WORLD, status);
    exit(status); /* not reached */
}

static void mpi_close(pk_comm *c)
{
    mpi_state *s = c->impl;
    int done = 0;
    if (s && s->finalize && MPI_Finalized(&done) == MPI_SUCCESS && !done)
        MPI_Finalize();
    free(s);
    free(c);
}

static const pk_comm_ops mpi_ops = {"mpi",       0,         mpi_allreduce, mpi_bcast,
                                    mpi_barrier, mpi_abort, mpi_close};

int pk_comm_mpi_open(pk_comm **out, pk_err *e)
{
    *out = NULL;
    pk_comm *c = calloc(1, sizeof *c);
    mpi_state *s = calloc(1, sizeof *s);
    if (!c || !s) {
        free(c);
        free(s);
        return pk_fail(e, PK_ENOMEM, "out of memory for a communicator");
    }
    c->ops = &mpi_ops;
    c->impl = s;
    int inited = 0, rc = MPI_Initialized(&inited);
    if (rc == MPI_SUCCESS && !inited) {
        int provided = 0;
        rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
        s->finalize = rc == MPI_SUCCESS;
        if (rc == MPI_SUCCESS && provided < MPI_THREAD_FUNNELED) {
            mpi_close(c);
            return pk_fail(e, PK_EBACKEND, "MPI: no MPI_THREAD_FUNNELED support (got %d)",
                           provided);
        }
    }
    /* Errors come back as codes, checked at each call (then pk_comm_abort). */
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_size(MPI_COMM_WORLD, &c->size);
    if (rc != MPI_SUCCESS) {
        int st = mpi_check(rc, "initialisation", e);
        mpi_close(c);
        return st;
    }
    *out = c;
    return PK_OK;
}
