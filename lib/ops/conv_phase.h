/* Private to lib/: dilated 3x3 convolutions through their input's phases
 * (conv_phase.c), so that they can run through Winograd. */
#ifndef PSPKD_CONV_PHASE_H
#define PSPKD_CONV_PHASE_H

#include "ops/ops.h"

/* 1 when d (3x3, stride 1, dilation >= 2, padding == dilation) runs
 * through its phases: when the undilated phase convolution gets a Winograd
 * kernel (pk_conv2d_winograd: the context's algorithm, the phases' size). */
int pk_conv_phase_eligible(pk_ctx *c, const pk_conv_desc *d);
/* As pk_conv2d_forward / pk_conv2d_backward, for an eligible d. */
/* ep: NULL, or folded in as pk_conv2d_forward_fused's (b then unused; y
 * is then in ep's type). */
int pk_conv_phase_forward(pk_ctx *c, void *y, const float *x, const float *w, const float *b,
                          const pk_conv_epilogue *ep, const pk_conv_desc *d, pk_err *e);
int pk_conv_phase_backward(pk_ctx *c, float *dx, float *dw, float *db, const float *dy,
                           const float *x, const float *w, const pk_conv_desc *d, pk_err *e);

#endif
