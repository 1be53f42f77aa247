/* Private to lib/: 3x3 stride-1 padding-1 convolutions by Winograd's
 * F(4x4, 3x3) on NHWC activations and OHWI weights (conv_wino.c). conv.c
 * decides when; the dilated ones come here through their phases
 * (conv_phase.c). */
#ifndef PSPKD_CONV_WINO_H
#define PSPKD_CONV_WINO_H

#include "ops/ops.h"

/* When conv.c takes this path: wide 3x3 convolutions (ci*co at least
 * this), on n maps of h x w with enough 4x4 output tiles (pk_wino_gains). */
#define PK_WINO_MIN_CICO (256L * 256L)
int pk_wino_gains(int n, int h, int w);

/* d must be 3x3, stride 1, padding 1, dilation 1. The same contracts as
 * pk_conv2d_forward / pk_conv2d_backward: y and dx are overwritten, dw and
 * db accumulated; dx == NULL or dw == NULL skips that gradient. */
/* ep: NULL, or folded in as pk_conv2d_forward_fused's (b then unused; y
 * is then in ep's type). */
int pk_wino_forward(pk_ctx *c, void *y, const float *x, const float *w, const float *b,
                    const pk_conv_epilogue *ep, const pk_conv_desc *d, pk_err *e);
int pk_wino_backward(pk_ctx *c, float *dx, float *dw, float *db, const float *dy,
                     const float *x, const float *w, const pk_conv_desc *d, pk_err *e);

#endif
