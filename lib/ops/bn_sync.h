/* SyncBN: training BatchNorm whose statistics are taken over the global
 * batch of a data-parallel group (pk_comm), the same op as
 * pk_bn_forward_train / pk_bn_backward (ops.h) otherwise.
 *
 * Each rank holds P rows of its own samples (every rank the same P); the
 * mean, the (centred, two-pass) variance, the running statistics (with the
 * unbiased variance of all size*P rows) and the backward's sum(dy) and
 * sum(dy*xhat) are those of the size*P rows together: two allreduces of C
 * doubles in the forward, one of 2C in the backward. dgamma and dbeta
 * receive this rank's share only, so that the gradient allreduce that
 * follows the backward sums them to the global batch's. relu: the BN's
 * output goes through a ReLU (forward), relu_y (backward, may be NULL) is
 * that ReLU's output whose mask applies to dy first. CPU contexts only;
 * y may alias x and dx may alias dy. */
#ifndef PSPKD_BN_SYNC_H
#define PSPKD_BN_SYNC_H

#include <stdint.h>

#include "core/comm.h"
#include "core/ctx.h"

int pk_bn_sync_forward_train(pk_ctx *c, pk_comm *comm, float *y, float *save_mean,
                             float *save_rstd, const float *x, const float *gamma,
                             const float *beta, float *running_mean, float *running_var, long P,
                             int C, float momentum, float eps, int relu, pk_err *e);

/* xc: NULL, or the BN's input as the bf16 precision keeps it (bf16 of
 * x - save_mean, as pk_bn_backward_xc reads it); x is then not read. */
int pk_bn_sync_backward(pk_ctx *c, pk_comm *comm, float *dx, float *dgamma, float *dbeta,
                        const float *dy, const float *relu_y, const float *x,
                        const uint16_t *xc, const float *save_mean, const float *save_rstd,
                        const float *gamma, long P, int C, pk_err *e);

#endif
