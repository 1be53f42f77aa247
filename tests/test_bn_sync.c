/* SyncBN (ops/bn_sync.h) on the one-process communicator against the plain
 * training BatchNorm (ops.h): outputs, saved statistics, running statistics
 * and gradients, with and without the fused ReLU, whole and channel-blocked
 * shapes. The multi-rank sums are tested end to end by tests/mpi.bats. */
#include <stdlib.h>
#include <string.h>

#include "core/comm.h"
#include "ops/bn_sync.h"
#include "ops/ops.h"
#include "support.h"

enum { X, Y, DY, DX, G, B, RM, RV, SM, SR, DG, DB, NBUF };

static int one_case(pk_ctx *c, pk_comm *comm, long P, int C, int relu)
{
    size_t n = (size_t)P * C, sz[NBUF] = {n, n, n, n, C, C, C, C, C, C, C, C};
    float *a[NBUF], *w[NBUF];
    for (int i = 0; i < NBUF; i++) {
        a[i] = calloc(sz[i], sizeof(float));
        w[i] = calloc(sz[i], sizeof(float));
    }
    pk_test_fill(a[X], n, 11, 2.0f);
    for (size_t i = 0; i < n; i++)
        a[X][i] += (float)(i % C) * 0.3f;
    pk_test_fill(a[DY], n, 12, 1.0f);
    pk_test_fill(a[G], (size_t)C, 13, 1.0f);
    pk_test_fill(a[B], (size_t)C, 14, 1.0f);
    for (int i = 0; i < C; i++)
        a[RV][i] = 1.0f;
    for (int i = 0; i < NBUF; i++)
        memcpy(w[i], a[i], sz[i] * sizeof(float));
    pk_err e = {0};
    int fails = 0;
    int rc = pk_bn_sync_forward_train(c, comm, a[Y], a[SM], a[SR], a[X], a[G], a[B], a[RM],
                                      a[RV], P, C, 0.1f, 1e-5f, relu, &e);
    PK_CHECK(fails, rc == PK_OK, "forward: %s", e.msg);
    (relu ? pk_bn_relu_forward_train : pk_bn_forward_train)(c, w[Y], w[SM], w[SR], w[X], w[G],
                                                            w[B], w[RM], w[RV], P, C, 0.1f,
                                                            1e-5f);
    rc = pk_bn_sync_backward(c, comm, a[DX], a[DG], a[DB], a[DY], relu ? a[Y] : NULL, a[X],
                             NULL, a[SM], a[SR], a[G], P, C, &e);
    PK_CHECK(fails, rc == PK_OK, "backward: %s", e.msg);
    if (relu)
        pk_bn_relu_backward(c, w[DX], w[DG], w[DB], w[DY], w[Y], w[X], w[SM], w[SR], w[G], P, C);
    else
        pk_bn_backward(c, w[DX], w[DG], w[DB], w[DY], w[X], w[SM], w[SR], w[G], P, C);
    static const char *const names[NBUF] = {"x",    "y",   "dy",  "dx",  "gamma", "beta",
                                            "rmean", "rvar", "smean", "srstd", "dgamma", "dbeta"};
    for (int i = 0; i < NBUF; i++) {
        char what[96];
        snprintf(what, sizeof what, "P=%ld C=%d relu=%d %s", P, C, relu, names[i]);
        fails += pk_check_close(what, a[i], w[i], sz[i], 2e-5);
    }
    for (int i = 0; i < NBUF; i++) {
        free(a[i]);
        free(w[i]);
    }
    return fails;
}

int main(void)
{
    int fails = 0;
    pk_err e = {0};
    pk_comm *comm = NULL;
    if (pk_comm_open_self(&comm, &e)) {
        printf("test_bn_sync: %s\n", e.msg);
        return 1;
    }
    pk_ctx *c = pk_test_ctx(2);
    for (int relu = 0; relu < 2; relu++) {
        fails += one_case(c, comm, 37, 7, relu);
        fails += one_case(c, comm, 3000, 70, relu); /* threaded */
        fails += one_case(c, comm, 300, 600, relu); /* two channel blocks */
    }
    pk_ctx_destroy(c);
    pk_comm_close(comm);
    printf("test_bn_sync: %s\n", fails ? "FAILED" : "passed");
    return fails ? 1 : 0;
}
