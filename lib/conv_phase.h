/* Private to lib/: dilated 3x3 convolutions through their input's phases
 * (conv_phase.c), so that they can run through Winograd. */
#ifndef PSPKD_CONV_PHASE_H
#define PSPKD_CONV_PHASE_H

#include "ops.h"

/* Wide 3x3 convolutions (ci*co at least this) take Winograd (conv.c). */
#define PK_WINO_MIN_CICO (256L * 256L)

/* Whether Winograd beats direct on n maps of h x w (conv.c): enough 4x4
 * output tiles. */
int pk_wino_gains(int n, int h, int w);

/* 1 when d (3x3, stride 1, dilation >= 2, padding == dilation, wide) runs
 * through its phases: when the undilated phase convolution gets a Winograd
 * kernel (pk_conv2d_winograd: the context's algorithm, the phases' size). */
int pk_conv_phase_eligible(pk_ctx *c, const pk_conv_desc *d);
/* As pk_conv2d_forward / pk_conv2d_backward, for an eligible d. */
int pk_conv_phase_forward(pk_ctx *c, float *y, const float *x, const float *w, const float *b,
                          const pk_conv_desc *d, pk_err *e);
int pk_conv_phase_backward(pk_ctx *c, float *dx, float *dw, float *db, const float *dy,
                           const float *x, const float *w, const pk_conv_desc *d, pk_err *e);

#endif
