/* Dilated 3x3 convolutions as undilated ones on the input's phases, so that
 * they can run through Winograd F(4x4, 3x3) (conv_wino.c), which works on
 * undilated ones.
 *
 * With dilation d and padding d (PSPNet's layer3/layer4 "same" convolutions)
 * output pixel (i*d+a, j*d+b) only reads input pixels of the same phase
 * (a, b): an undilated 3x3 convolution, padding 1, of the phase image
 * x[i*d+a, j*d+b]. So the input is split into its d*d phases, stacked as
 * batch (n*d*d, ceil(h/d), ceil(w/d)) with zeros past the edge (they stand
 * for the zero padding), convolved undilated, and the phases of the output
 * are put back; the transposed products (backward data and weights) split
 * the same way, the weight gradient summing over the stacked batch. Nothing
 * is approximated: the result differs from the dilated direct convolution
 * only by Winograd's float rounding. The split and merge are one copy of
 * each tensor (a few ms at 60x60x512) against 1.6-2x less convolution time
 * at these shapes (make bench-ops: layer4 of R50 at 29x29 and 60x60, layer3
 * at 60x60, forward and backward). */
#include "ops/conv_phase.h"
#include "ops/conv_epilogue.h"
#include "core/ctx_impl.h"

#include <string.h>

/* Phase geometry of a dilated convolution's input (== output) plane. */
typedef struct phase_geo {
    int n, h, w, c, d, hp, wp; /* hp, wp: a phase's height and width */
} phase_geo;

static phase_geo geo_of(const pk_conv_desc *d, int c)
{
    int s = d->dil;
    return (phase_geo){d->n, d->h, d->w, c, s, (d->h + s - 1) / s, (d->w + s - 1) / s};
}

/* Split (src: full [n, h, w, c] -> ph: phases [n*d*d, hp, wp, c], zero past
 * the edge) when dst is NULL; else merge (ph -> dst, dropping what lies past
 * the edge), with ep applied on the way when it is not NULL. */
static void shuffle_ep(pk_ctx *c, const float *src, void *dst, float *ph, const phase_geo *g,
                       const pk_conv_epilogue *ep)
{
    long rows = (long)g->n * g->d * g->d * g->hp; /* phase rows */
    size_t vec = (size_t)g->c * sizeof(float);
    int team = rows * g->wp * g->c > 65536 ? pk_ctx_threads(c) : 1;
#pragma omp parallel for num_threads(team) schedule(static)
    for (long r = 0; r < rows; r++) {
        long i = r % g->hp, q = r / g->hp; /* q = (n*d + a)*d + b */
        int b = (int)(q % g->d), a = (int)(q / g->d % g->d);
        long n = q / ((long)g->d * g->d), y = i * g->d + a;
        float *prow = ph + (size_t)r * g->wp * g->c;
        for (int j = 0; j < g->wp; j++) {
            long x = (long)j * g->d + b;
            float *pv = prow + (size_t)j * g->c;
            size_t at = (((size_t)n * g->h + y) * g->w + x) * g->c;
            if (y >= g->h || x >= g->w) {
                if (!dst)
                    memset(pv, 0, vec);
            } else if (dst && ep) {
                pk_epilogue_row(dst, at, pv, ep, 0, g->c);
            } else if (dst) {
                memcpy((float *)dst + at, pv, vec);
            } else {
                memcpy(pv, src + at, vec);
            }
        }
    }
}

static void shuffle(pk_ctx *c, const float *src, float *dst, float *ph, const phase_geo *g)
{
    shuffle_ep(c, src, dst, ph, g, NULL);
}

/* The undilated convolution over the phases. */
static pk_conv_desc phase_desc(const pk_conv_desc *d)
{
    phase_geo g = geo_of(d, d->ci);
    return pk_conv_desc_make(d->n * d->dil * d->dil, g.hp, g.wp, d->ci, d->co, 3, 1, 1, 1,
                             d->bias);
}

int pk_conv_phase_eligible(pk_ctx *c, const pk_conv_desc *d)
{
    if (d->k != 3 || d->stride != 1 || d->dil < 2 || d->pad != d->dil)
        return 0;
    pk_conv_desc pd = phase_desc(d);
    pk_err e = {0};
    return pk_conv2d_winograd(c, &pd, &e) == 1; /* only worth it through Winograd */
}

static float *phase_buf(pk_ctx *c, int slot, const phase_geo *g, pk_err *e)
{
    size_t floats = (size_t)g->n * g->d * g->d * g->hp * g->wp * g->c;
    return pk_ctx_scratch(c, slot, floats * sizeof(float), e);
}

int pk_conv_phase_forward(pk_ctx *c, void *y, const float *x, const float *w, const float *b,
                          const pk_conv_epilogue *ep, const pk_conv_desc *d, pk_err *e)
{
    phase_geo gx = geo_of(d, d->ci), gy = geo_of(d, d->co);
    float *xs = phase_buf(c, PK_SCRATCH_PHASE_X, &gx, e);
    float *ys = xs ? phase_buf(c, PK_SCRATCH_PHASE_Y, &gy, e) : NULL;
    if (!ys)
        return PK_ENOMEM;
    shuffle(c, x, NULL, xs, &gx);
    pk_conv_desc pd = phase_desc(d);
    int rc = pk_conv2d_forward(c, ys, xs, w, b, &pd, e);
    if (rc == PK_OK) /* the epilogue in the merge: one pass over y */
        shuffle_ep(c, NULL, y, ys, &gy, ep);
    return rc;
}

int pk_conv_phase_backward(pk_ctx *c, float *dx, float *dw, float *db, const float *dy,
                           const float *x, const float *w, const pk_conv_desc *d, pk_err *e)
{
    phase_geo gx = geo_of(d, d->ci), gy = geo_of(d, d->co);
    float *xs = phase_buf(c, PK_SCRATCH_PHASE_X, &gx, e);
    float *dys = xs ? phase_buf(c, PK_SCRATCH_PHASE_Y, &gy, e) : NULL;
    if (!dys)
        return PK_ENOMEM;
    pk_conv_desc pd = phase_desc(d);
    shuffle(c, dy, NULL, dys, &gy);
    int rc = PK_OK;
    if (dw) { /* before dx: the weight gradient needs x's phases in xs */
        shuffle(c, x, NULL, xs, &gx);
        rc = pk_conv2d_backward(c, NULL, dw, db, dys, xs, w, &pd, e);
    }
    if (rc == PK_OK && dx) {
        rc = pk_conv2d_backward(c, xs, NULL, NULL, dys, NULL, w, &pd, e);
        if (rc == PK_OK)
            shuffle(c, NULL, dx, xs, &gx);
    }
    return rc;
}
