/* Winograd F(4x4, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional
 * Neural Networks", with other points) for 3x3 stride-1 padding-1
 * convolutions, on NHWC activations and OHWI weights as they are.
 *
 * Each 4x4 block of output pixels is computed from the 6x6 input patch
 * around it: V = Bt d B (per channel), U = G g Gt (per kernel),
 * M = sum over input channels of V . U at each of the 36 points, and
 * y = At M A. The sum over channels is, per point, one matrix product
 * [tiles x ci] . [ci x co]: 36 sgemm calls (oneDNN's), spread over the
 * threads, carry 4x fewer multiplications than the direct convolution.
 * The backward passes are the exact adjoints of those steps: dM = A dy At,
 * dV = dM . U and dx += B dV Bt (patches overlap), dU = dM^T . V and
 * dw += Gt dU G. So the gradients are those of the computed forward, and
 * all of them differ from the direct convolution's only by float rounding
 * (a few 1e-6 of the largest value; test_conv checks against a naive loop).
 *
 * Why not oneDNN's own Winograd kernel: in the R50 train step (batch 2 at
 * 225) its training kernels took 514, 208, 109 and 67 ms per step at the
 * cls head, layer4, layer3 and the aux head, against 378, 166, 86 and 53
 * here; and they want blocked activations, two more copies of x and y.
 *
 * The input channels go in slices of CI_SLICE: per slice, U or dU
 * [co][36][slice] (scratch slot WEIGHTS) and V or dV [tiles][36][slice]
 * (ACT); M or dM [tiles][36][co] (OUT) for the whole convolution, the
 * forward products adding each slice's share into it. Point-inner, so
 * that each transform writes or reads one contiguous run per tile or
 * kernel, and the products take the points' matrices with a leading
 * dimension of 36 rows. Channels go 16 at a time (one AVX-512 register),
 * zero-padded past the end.
 *
 * In the bf16 precision the products take bf16 operands (fp32 accumulation
 * and results, oneDNN's matmul): the transforms round V, U and dM to bf16
 * as they store them; the transforms themselves, M and the gradients' own
 * transforms stay fp32.
 *
 * A train step transforms each layer's weights twice, for the forward and
 * for the backward-data, and at the student's small maps (128 tiles at
 * 2x225) that is memory-bound work next to products of only 128 rows. So
 * in the bf16 precision, inside a keep session (pk_conv_keep_begin), the
 * forward writes U for all its slices into a buffer kept in the context,
 * and the backward-data reads it from there: the R18 train step (2x225,
 * 2 threads, bf16) ran 4.6 % faster, interleaved against the code before.
 * The cost is the buffer, 8 bytes per weight for as long as the context
 * lives or pk_conv_keep_release frees it. */
#include "ops/conv_wino.h"
#include "ops/conv_epilogue.h"
#include "core/ctx_impl.h"
#include "core/half.h"
#include "ops/matmul_bf16.h"

#include <stdlib.h>
#include <string.h>

#define TI 6  /* input patch side */
#define TO 4  /* output block side */
#define NP 36 /* transform points */
#define CB 16 /* channels per block */

/* F(4x4, 3x3) by Toom-Cook at the points 0, +-3/2, +-2/3 and infinity, and
 * the transposes the adjoints need; scripts/winograd-matrices derives them
 * (and says why these points: 5x less float error than Lavin's 0, +-1, +-2). */
/* clang-format off */
static const float BT[6 * 6] = {
    1, 0, -97.0f / 36, 0, 1, 0,
    0, -16.0f / 195, -32.0f / 585, 12.0f / 65, 8.0f / 65, 0,
    0, 16.0f / 195, -32.0f / 585, -12.0f / 65, 8.0f / 65, 0,
    0, 243.0f / 260, 729.0f / 520, -27.0f / 65, -81.0f / 130, 0,
    0, -243.0f / 260, 729.0f / 520, 27.0f / 65, -81.0f / 130, 0,
    0, 1, 0, -97.0f / 36, 0, 1};
static const float B[6 * 6] = {
    1, 0, 0, 0, 0, 0,
    0, -16.0f / 195, 16.0f / 195, 243.0f / 260, -243.0f / 260, 1,
    -97.0f / 36, -32.0f / 585, -32.0f / 585, 729.0f / 520, 729.0f / 520, 0,
    0, 12.0f / 65, -12.0f / 65, -27.0f / 65, 27.0f / 65, -97.0f / 36,
    1, 8.0f / 65, 8.0f / 65, -81.0f / 130, -81.0f / 130, 0,
    0, 0, 0, 0, 0, 1};
static const float G[6 * 3] = {
    1, 0, 0,
    1, 3.0f / 2, 9.0f / 4,
    1, -3.0f / 2, 9.0f / 4,
    1, 2.0f / 3, 4.0f / 9,
    1, -2.0f / 3, 4.0f / 9,
    0, 0, 1};
static const float GT[3 * 6] = {
    1, 1, 1, 1, 1, 0,
    0, 3.0f / 2, -3.0f / 2, 2.0f / 3, -2.0f / 3, 0,
    0, 9.0f / 4, 9.0f / 4, 4.0f / 9, 4.0f / 9, 1};
static const float AT[4 * 6] = {
    1, 1, 1, 1, 1, 0,
    0, 3.0f / 2, -3.0f / 2, 2.0f / 3, -2.0f / 3, 0,
    0, 9.0f / 4, 9.0f / 4, 4.0f / 9, 4.0f / 9, 0,
    0, 27.0f / 8, -27.0f / 8, 8.0f / 27, -8.0f / 27, 1};
static const float A[6 * 4] = {
    1, 0, 0, 0,
    1, 3.0f / 2, 9.0f / 4, 27.0f / 8,
    1, -3.0f / 2, 9.0f / 4, -27.0f / 8,
    1, 2.0f / 3, 4.0f / 9, 8.0f / 27,
    1, -2.0f / 3, 4.0f / 9, -8.0f / 27,
    0, 0, 0, 1};
/* clang-format on */

/* out[r*ors + s*oss][:] = sum over k of L[r][k] in[k*iks + s*iss][:], for
 * r < P, s < S, k < K (L is P x K, row-major), on blocks of CB channels. */
static inline __attribute__((always_inline)) void left_mul(float *restrict out, int ors, int oss,
                                                           const float *restrict in, int iks,
                                                           int iss, const float *L, int P,
                                                           int K, int S)
{
#pragma GCC unroll 6
    for (int r = 0; r < P; r++)
#pragma GCC unroll 6
        for (int s = 0; s < S; s++) {
            float *ov = out + (r * ors + s * oss) * CB;
#pragma omp simd
            for (int c = 0; c < CB; c++)
                ov[c] = 0.0f;
#pragma GCC unroll 6
            for (int k = 0; k < K; k++) {
                float l = L[r * K + k];
                if (l == 0.0f)
                    continue;
                const float *iv = in + (k * iks + s * iss) * CB;
#pragma omp simd
                for (int c = 0; c < CB; c++)
                    ov[c] += l * iv[c];
            }
        }
}

/* out[p][q][:] = sum over i, j of L[p][i] R[q][j] in[i][j][:]: in is I x J
 * blocks of CB channels, out P x Q; L is P x I and R is Q x J, row-major.
 * Always inlined with constant matrices and unrolled, so that each call
 * becomes straight-line vector code with the zero terms gone. */
static inline __attribute__((always_inline)) void sandwich(float *restrict out,
                                                           const float *restrict in,
                                                           const float *L, int P, int I,
                                                           const float *R, int Q, int J)
{
    float t[TI * TI * CB];                    /* t[p][j] = sum_i L[p][i] in[i][j] */
    left_mul(t, J, 1, in, J, 1, L, P, I, J);  /* rows: L . in */
    left_mul(out, 1, Q, t, 1, J, R, Q, J, P); /* columns: out[p][q] = sum_j R[q][j] t[p][j] */
}

/* Tiling of a convolution: th x tw output blocks per image. */
typedef struct tiling {
    int n, h, w, th, tw;
    long tiles;
} tiling;

static tiling tiling_of(const pk_conv_desc *d)
{
    tiling t = {d->n, d->h, d->w, (d->h + TO - 1) / TO, (d->w + TO - 1) / TO, 0};
    t.tiles = (long)t.n * t.th * t.tw;
    return t;
}

static int team(const pk_ctx *c, double work)
{
    return work < 65536.0 ? 1 : pk_ctx_threads(c);
}

static int blocks(int ch) { return (ch + CB - 1) / CB; }

/* dst[0..nc) = src[0..nc): one vector move for a whole block. */
static inline void store_block(float *restrict dst, const float *restrict src, int nc)
{
    if (nc == CB) {
#pragma omp simd
        for (int k = 0; k < CB; k++)
            dst[k] = src[k];
        return;
    }
    for (int k = 0; k < nc; k++)
        dst[k] = src[k];
}

/* The same, then zeros up to CB. */
static inline void load_block(float *restrict dst, const float *restrict src, int nc)
{
    store_block(dst, src, nc);
    for (int k = nc; k < CB; k++)
        dst[k] = 0.0f;
}

static inline void zero_block(float *dst)
{
#pragma omp simd
    for (int k = 0; k < CB; k++)
        dst[k] = 0.0f;
}

/* v[i][j][:] = the nc channels from c0 of pixel (y0 + i, x0 + j) of image
 * n of the NHWC tensor src (ch channels), zero outside the image and past
 * nc; side x side pixels. */
static void load_patch(float *v, const float *src, const tiling *t, int ch, int n, int y0,
                       int x0, int side, int c0, int nc)
{
    for (int i = 0; i < side; i++)
        for (int j = 0; j < side; j++) {
            float *pv = v + (i * side + j) * CB;
            int y = y0 + i, x = x0 + j;
            if (y >= 0 && y < t->h && x >= 0 && x < t->w)
                load_block(pv, src + (((size_t)n * t->h + y) * t->w + x) * ch + c0, nc);
            else
                zero_block(pv);
        }
}

/* Tile index tile -> image n and the top-left output pixel (y0, x0). */
static void tile_pos(const tiling *t, long tile, int *n, int *y0, int *x0)
{
    *x0 = (int)(tile % t->tw) * TO;
    *y0 = (int)(tile / t->tw % t->th) * TO;
    *n = (int)(tile / ((long)t->tw * t->th));
}

/* dst[0..nc) = src[0..nc) rounded to bf16; a whole block at once. */
static inline void store_block_bf16(uint16_t *restrict dst, const float *restrict src, int nc)
{
    if (nc == CB) {
#pragma omp simd
        for (int k = 0; k < CB; k++)
            dst[k] = pk_f32_to_bf16_one(src[k]);
        return;
    }
    for (int k = 0; k < nc; k++)
        dst[k] = pk_f32_to_bf16_one(src[k]);
}

/* dst[tile][p][c0..] for the 36 points p from v[p][:]: fp32, or rounded
 * to bf16 when bf (a product's operand in the bf16 precision). */
static void store_points(void *dst, int bf, const float *v, long tile, int ch, int c0, int nc)
{
    size_t at = (size_t)tile * NP * ch + c0;
    if (bf)
        for (int p = 0; p < NP; p++)
            store_block_bf16((uint16_t *)dst + at + (size_t)p * ch, v + p * CB, nc);
    else
        for (int p = 0; p < NP; p++)
            store_block((float *)dst + at + (size_t)p * ch, v + p * CB, nc);
}

static void load_points(float *v, const float *src, long tile, int ch, int c0, int nc)
{
    for (int p = 0; p < NP; p++)
        load_block(v + p * CB, src + ((size_t)tile * NP + p) * ch + c0, nc);
}

/* The input channels [from, from + n) of a tensor with ch of them: the
 * slice one pass over the products handles. */
typedef struct slice {
    int ch, from, n;
} slice;

/* V[tiles][36][s.n] = Bt d B of every input patch of x's slice s (bf16
 * when bf). */
static void input_transform(const pk_ctx *c, void *V, int bf, const float *x, const tiling *t,
                            slice s)
{
    long nb = blocks(s.n), jobs = t->tiles * nb;
#pragma omp parallel for num_threads(team(c, (double)jobs * NP * CB)) schedule(static)
    for (long j = 0; j < jobs; j++) {
        long tile = j / nb;
        int c0 = (int)(j % nb) * CB, nc = s.n - c0 < CB ? s.n - c0 : CB, n, y0, x0;
        float d[NP * CB], v[NP * CB];
        tile_pos(t, tile, &n, &y0, &x0);
        load_patch(d, x, t, s.ch, n, y0 - 1, x0 - 1, TI, s.from + c0, nc);
        sandwich(v, d, BT, 6, 6, BT, 6, 6);
        store_points(V, bf, v, tile, s.n, c0, nc);
    }
}

/* dM[tiles][36][ch] = A dy At of every output block of dy (the adjoint of
 * the output transform; bf16 when bf). */
static void output_grad_transform(const pk_ctx *c, void *dM, int bf, const float *dy,
                                  const tiling *t, int ch)
{
    long nb = blocks(ch), jobs = t->tiles * nb;
#pragma omp parallel for num_threads(team(c, (double)jobs * NP * CB)) schedule(static)
    for (long j = 0; j < jobs; j++) {
        long tile = j / nb;
        int c0 = (int)(j % nb) * CB, nc = ch - c0 < CB ? ch - c0 : CB, n, y0, x0;
        float g[TO * TO * CB], m[NP * CB];
        tile_pos(t, tile, &n, &y0, &x0);
        load_patch(g, dy, t, ch, n, y0, x0, TO, c0, nc);
        sandwich(m, g, A, 6, 4, A, 6, 4);
        store_points(dM, bf, m, tile, ch, c0, nc);
    }
}

/* y = At M A (+ b), or with ep folded in, for every output block. */
static void output_transform(const pk_ctx *c, void *y, const float *M, const float *b,
                             const pk_conv_epilogue *ep, const tiling *t, int ch)
{
    long nb = blocks(ch), jobs = t->tiles * nb;
#pragma omp parallel for num_threads(team(c, (double)jobs * NP * CB)) schedule(static)
    for (long j = 0; j < jobs; j++) {
        long tile = j / nb;
        int c0 = (int)(j % nb) * CB, nc = ch - c0 < CB ? ch - c0 : CB, n, y0, x0;
        float m[NP * CB], o[TO * TO * CB];
        tile_pos(t, tile, &n, &y0, &x0);
        load_points(m, M, tile, ch, c0, nc);
        sandwich(o, m, AT, 4, 6, AT, 4, 6);
        for (int i = 0; i < TO && y0 + i < t->h; i++)
            for (int k = 0; k < TO && x0 + k < t->w; k++) {
                const float *ov = o + (i * TO + k) * CB;
                size_t at = (((size_t)n * t->h + y0 + i) * t->w + x0 + k) * ch;
                if (ep) {
                    pk_epilogue_row(y, at, ov, ep, c0, nc);
                    continue;
                }
                float *dst = (float *)y + at + c0;
#pragma omp simd
                for (int q = 0; q < nc; q++)
                    dst[q] = ov[q] + (b ? b[c0 + q] : 0.0f);
            }
    }
}

/* dx's slice s += the sum over patches of B dV Bt (the adjoint of the
 * input transform). Patches overlap their neighbours by two pixels: a
 * thread takes whole rows of tiles, first the even ones and then the odd
 * ones, so no two threads add into the same pixel. */
static void input_grad_transform(const pk_ctx *c, float *dx, const float *dV, const tiling *t,
                                 slice s)
{
    long rows = (long)t->n * t->th, nb = blocks(s.n);
    for (int parity = 0; parity < 2; parity++) {
#pragma omp parallel for num_threads(team(c, (double)t->tiles * nb * NP * CB)) schedule(static)
        for (long r = 0; r < rows; r++) {
            if ((int)(r % t->th) % 2 != parity)
                continue;
            for (long tile = r * t->tw; tile < (r + 1) * t->tw; tile++) {
                int n, y0, x0;
                tile_pos(t, tile, &n, &y0, &x0);
                for (int c0 = 0; c0 < s.n; c0 += CB) {
                    int nc = s.n - c0 < CB ? s.n - c0 : CB;
                    float v[NP * CB], dd[NP * CB];
                    load_points(v, dV, tile, s.n, c0, nc);
                    sandwich(dd, v, B, 6, 6, B, 6, 6);
                    for (int i = 0; i < TI; i++) {
                        int yy = y0 - 1 + i;
                        if (yy < 0 || yy >= t->h)
                            continue;
                        for (int k = 0; k < TI; k++) {
                            int xx = x0 - 1 + k;
                            if (xx < 0 || xx >= t->w)
                                continue;
                            float *dst = dx + (((size_t)n * t->h + yy) * t->w + xx) * s.ch +
                                         s.from + c0;
                            const float *sv = dd + (i * TI + k) * CB;
#pragma omp simd
                            for (int q = 0; q < nc; q++)
                                dst[q] += sv[q];
                        }
                    }
                }
            }
        }
    }
}

/* U[co][36][s.n] = G g Gt of every OHWI kernel's input channels s (bf16
 * when bf). */
static void weight_transform(const pk_ctx *c, void *U, int bf, const float *w, int co, slice s)
{
    long nb = blocks(s.n), jobs = (long)co * nb;
#pragma omp parallel for num_threads(team(c, (double)jobs * NP * CB)) schedule(static)
    for (long j = 0; j < jobs; j++) {
        int o = (int)(j / nb), c0 = (int)(j % nb) * CB, nc = s.n - c0 < CB ? s.n - c0 : CB;
        float g[9 * CB], u[NP * CB];
        for (int k = 0; k < 9; k++)
            load_block(g + k * CB, w + ((size_t)o * 9 + k) * s.ch + s.from + c0, nc);
        sandwich(u, g, G, 6, 3, G, 6, 3);
        store_points(U, bf, u, o, s.n, c0, nc);
    }
}

/* dw's input channels s += Gt dU G (the adjoint of the weight transform). */
static void weight_grad_transform(const pk_ctx *c, float *dw, const float *dU, int co, slice s)
{
    long nb = blocks(s.n), jobs = (long)co * nb;
#pragma omp parallel for num_threads(team(c, (double)jobs * NP * CB)) schedule(static)
    for (long j = 0; j < jobs; j++) {
        int o = (int)(j / nb), c0 = (int)(j % nb) * CB, nc = s.n - c0 < CB ? s.n - c0 : CB;
        float u[NP * CB], g[9 * CB];
        load_points(u, dU, o, s.n, c0, nc);
        sandwich(g, u, GT, 3, 6, GT, 3, 6);
        for (int k = 0; k < 9; k++) {
            float *dst = dw + ((size_t)o * 9 + k) * s.ch + s.from + c0;
#pragma omp simd
            for (int q = 0; q < nc; q++)
                dst[q] += g[k * CB + q];
        }
    }
}

/* The 36 per-point products C_p = op(A_p) op(B_p) (row-major, like
 * dnnl_sgemm). fp32: one sgemm per point, the points shared out over the
 * threads (each sgemm runs on its caller's thread). bf16 (a and b bf16,
 * c fp32): one batched matmul over the points (matmul_bf16.c). */
typedef struct point_gemm {
    char ta, tb;
    long m, n, k;
    const void *a, *b;
    float *c;
    long lda, ldb, ldc;
    size_t sa, sb, sc; /* per-point offsets, in elements */
    float beta;        /* 1: C_p += the product */
} point_gemm;

static int run_point_gemms(pk_ctx *c, int bf, const point_gemm *g, pk_err *e)
{
    if (bf) {
        pk_bmm_desc d = {NP,
                         g->m,
                         g->n,
                         g->k,
                         {(long)g->sa, g->ta == 'N' ? g->lda : 1, g->ta == 'N' ? 1 : g->lda},
                         {(long)g->sb, g->tb == 'N' ? g->ldb : 1, g->tb == 'N' ? 1 : g->ldb},
                         {(long)g->sc, g->ldc, 1},
                         g->beta != 0.0f};
        return pk_bmm_bf16(c, &d, g->c, g->a, g->b, e);
    }
    const float *a = g->a, *b = g->b;
    int bad = 0;
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(dynamic) reduction(| : bad)
    for (int p = 0; p < NP; p++)
        bad |= dnnl_sgemm(g->ta, g->tb, g->m, g->n, g->k, 1.0f, a + p * g->sa, g->lda,
                          b + p * g->sb, g->ldb, g->beta, g->c + p * g->sc, g->ldc) !=
               dnnl_success;
    return bad ? pk_fail(e, PK_EBACKEND, "oneDNN: sgemm failed (Winograd convolution)") : PK_OK;
}

/* Input channels per pass: the products go over the input channels in
 * slices of this many, so that U and V only ever hold one slice: at the
 * R50 cls head (4096 -> 512) 19 + 5 MB instead of 302 + 75 MB (U is 4x
 * the weights). Measured at 128 to 4096, the speed is the same within the
 * noise; peak memory of the R50 train step went from 1.5 to 1.16 GB. */
#define CI_SLICE 256

static slice slice_at(int ci, int from)
{
    return (slice){ci, from, ci - from < CI_SLICE ? ci - from : CI_SLICE};
}

/* The bf16 precision runs the products in bf16 (fp32 accumulation): the
 * transforms round their outputs to bf16 as they store them. */
static int products_bf16(const pk_ctx *c) { return c->precision == PK_PREC_BF16; }

/* The product buffers, for slices of at most CI_SLICE input channels:
 * U [co][36][slice] and V [tiles][36][slice], fp32 in slots WEIGHTS and
 * ACT, or bf16 in BF16_B and BF16_A; M [tiles][36][co] in OUT (fp32, or
 * bf16 when it is the backward's operand dM). */
typedef struct wino_bufs {
    void *U, *V, *M;
} wino_bufs;

static int buffers(pk_ctx *c, const pk_conv_desc *d, const tiling *t, int bf, wino_bufs *b,
                   pk_err *e)
{
    size_t sn = (size_t)(d->ci < CI_SLICE ? d->ci : CI_SLICE), es = bf ? 2 : sizeof(float);
    b->U = pk_ctx_scratch(c, bf ? PK_SCRATCH_BF16_B : PK_SCRATCH_WEIGHTS,
                          NP * (size_t)d->co * sn * es, e);
    b->V = b->U ? pk_ctx_scratch(c, bf ? PK_SCRATCH_BF16_A : PK_SCRATCH_ACT,
                                 NP * t->tiles * sn * es, e)
                : NULL;
    b->M = b->V ? pk_ctx_scratch(c, PK_SCRATCH_OUT, NP * t->tiles * (size_t)d->co * sizeof(float),
                                 e)
                : NULL;
    return b->M ? PK_OK : PK_ENOMEM;
}

/* Where the backward's fp32 products dU and dV go. In fp32, into U's and
 * V's own buffers: the product into U reads M and V, the one into V reads
 * M and U, and each transform after it reads its result first. In bf16 the
 * operands are bf16, so the products get fp32 buffers of their own. */
static int grad_buffers(pk_ctx *c, const pk_conv_desc *d, const tiling *t, int bf,
                        const wino_bufs *b, float **dU, float **dV, pk_err *e)
{
    if (!bf) {
        *dU = b->U;
        *dV = b->V;
        return PK_OK;
    }
    size_t sn = (size_t)(d->ci < CI_SLICE ? d->ci : CI_SLICE);
    *dU = pk_ctx_scratch(c, PK_SCRATCH_WEIGHTS, NP * (size_t)d->co * sn * sizeof(float), e);
    *dV = *dU ? pk_ctx_scratch(c, PK_SCRATCH_ACT, NP * t->tiles * sn * sizeof(float), e) : NULL;
    return *dV ? PK_OK : PK_ENOMEM;
}

/* ---- the weights' transform kept from the forward for the backward ---- */
typedef struct kept_u {
    uint16_t *U;      /* [slices][co][36][slice]: 36 * co * ci bf16 values */
    size_t bytes;
    uint64_t session; /* the keep session whose forward wrote U (0: none) */
} kept_u;

typedef struct kept_key { /* all 64-bit: no padding bytes in the comparison */
    uint64_t tag, w, ci, co;
} kept_key;
/* "kept_wno": no other cache key of the context starts with these 8 bytes
 * (pk_conv_keep_release tells its entries from the others by them) */
#define KEPT_KEY_TAG 0x6f6e775f7470656bull

/* Gives k its buffer (again, after pk_conv_keep_release). */
static int kept_alloc(pk_ctx *c, kept_u *k, size_t bytes)
{
    k->U = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!k->U)
        return PK_ENOMEM;
    k->bytes = bytes;
    k->session = 0;
    c->kept_bytes += bytes;
    return PK_OK;
}

static int kept_build(pk_ctx *c, void *value, const void *arg, pk_err *e)
{
    if (kept_alloc(c, value, *(const size_t *)arg) != PK_OK)
        return pk_fail(e, PK_ENOMEM, "conv: out of memory for a kept weight transform");
    return PK_OK;
}

static void kept_drop(void *value)
{
    kept_u *k = value;
    if (k)
        free(k->U);
    free(k);
}

/* w's kept transform where a keep session is open in the bf16 precision
 * (made on first use when `make`), else NULL; NULL too when it cannot be
 * allocated: the convolution then transforms into scratch as outside a
 * session. */
static kept_u *kept_of(pk_ctx *c, const float *w, const pk_conv_desc *d, int make)
{
    if (!c->keep_session || !products_bf16(c))
        return NULL;
    kept_key key = {KEPT_KEY_TAG, (uint64_t)(uintptr_t)w, (uint64_t)d->ci, (uint64_t)d->co};
    if (!make)
        return pk_ctx_cache_find(c, &key, sizeof key);
    size_t bytes = (size_t)NP * d->co * d->ci * sizeof(uint16_t);
    pk_err e = {0};
    kept_u *k = pk_ctx_cache_get(c, &key, sizeof key, sizeof(kept_u), kept_build, &bytes,
                                 kept_drop, &e);
    return k && (k->U || kept_alloc(c, k, bytes) == PK_OK) ? k : NULL;
}

/* Slice s's U inside a kept transform. */
static uint16_t *kept_slice(const kept_u *k, const pk_conv_desc *d, slice s)
{
    return k->U + (size_t)NP * d->co * s.from;
}

void pk_conv_keep_begin(pk_ctx *c)
{
    if (pk_ctx_device(c) == PK_DEV_CPU && c->precision == PK_PREC_BF16)
        c->keep_session = ++c->keep_last;
}

void pk_conv_keep_end(pk_ctx *c) { c->keep_session = 0; }

size_t pk_conv_kept_bytes(pk_ctx *c) { return c->kept_bytes; }

void pk_conv_keep_release(pk_ctx *c)
{
    for (size_t i = 0; i < c->cache_cap && c->kept_bytes; i++) {
        const pk_cache_entry *ce = &c->cache[i];
        if (!ce->key || ce->key_len != sizeof(kept_key) ||
            ((const kept_key *)ce->key)->tag != KEPT_KEY_TAG)
            continue;
        kept_u *k = ce->value;
        if (k->U) {
            free(k->U);
            c->kept_bytes -= k->bytes;
        }
        k->U = NULL;
        k->bytes = 0;
        k->session = 0;
    }
}

int pk_wino_forward(pk_ctx *c, void *y, const float *x, const float *w, const float *b,
                    const pk_conv_epilogue *ep, const pk_conv_desc *d, pk_err *e)
{
    tiling t = tiling_of(d);
    int bf = products_bf16(c);
    wino_bufs bu;
    int rc = buffers(c, d, &t, bf, &bu, e);
    kept_u *k = rc == PK_OK && !ep ? kept_of(c, w, d, 1) : NULL;
    if (k)
        k->session = 0; /* valid again once every slice is written */
    for (int from = 0; rc == PK_OK && from < d->ci; from += CI_SLICE) {
        slice s = slice_at(d->ci, from);
        void *U = k ? kept_slice(k, d, s) : bu.U;
        weight_transform(c, U, bf, w, d->co, s);
        input_transform(c, bu.V, bf, x, &t, s);
        /* M_p [tiles x co] (+)= V_p [tiles x s.n] . U_p^T */
        size_t co = (size_t)d->co, sn = (size_t)s.n;
        point_gemm g = {'N', 'T', t.tiles, d->co, s.n, bu.V, U, bu.M, NP * s.n, NP * s.n,
                        NP * d->co, sn, sn, co, from ? 1.0f : 0.0f};
        rc = run_point_gemms(c, bf, &g, e);
    }
    if (rc == PK_OK && k)
        k->session = c->keep_session;
    if (rc == PK_OK)
        output_transform(c, y, bu.M, d->bias ? b : NULL, ep, &t, d->co);
    return rc;
}

/* db += the sum of dy over every pixel. */
static void bias_grad(float *db, const float *dy, long P, int co)
{
    for (int o = 0; o < co; o++) {
        double s = 0;
        for (long p = 0; p < P; p++)
            s += dy[p * co + o];
        db[o] += (float)s;
    }
}

int pk_wino_backward(pk_ctx *c, float *dx, float *dw, float *db, const float *dy,
                     const float *x, const float *w, const pk_conv_desc *d, pk_err *e)
{
    tiling t = tiling_of(d);
    int bf = products_bf16(c);
    wino_bufs bu;
    float *dU, *dV;
    int rc = buffers(c, d, &t, bf, &bu, e);
    if (rc == PK_OK)
        rc = grad_buffers(c, d, &t, bf, &bu, &dU, &dV, e);
    if (rc != PK_OK)
        return rc;
    output_grad_transform(c, bu.M, bf, dy, &t, d->co);
    if (dx) /* the slices add their patches into it */
        memset(dx, 0, (size_t)d->n * d->h * d->w * d->ci * sizeof *dx);
    kept_u *k = dx ? kept_of(c, w, d, 0) : NULL;
    if (k && (!k->U || k->session != c->keep_session))
        k = NULL; /* no forward of these weights in this session */
    size_t co = (size_t)d->co;
    for (int from = 0; rc == PK_OK && from < d->ci; from += CI_SLICE) {
        slice s = slice_at(d->ci, from);
        size_t sn = (size_t)s.n;
        if (dw) { /* dU_p [co x s.n] = dM_p^T . V_p */
            input_transform(c, bu.V, bf, x, &t, s);
            point_gemm g = {'T', 'N', d->co, s.n, t.tiles, bu.M, bu.V, dU, NP * d->co, NP * s.n,
                            NP * s.n, co, sn, sn, 0.0f};
            rc = run_point_gemms(c, bf, &g, e);
            if (rc == PK_OK)
                weight_grad_transform(c, dw, dU, d->co, s);
        }
        if (rc == PK_OK && dx) { /* dV_p [tiles x s.n] = dM_p . U_p */
            void *U = k ? kept_slice(k, d, s) : bu.U;
            if (!k)
                weight_transform(c, U, bf, w, d->co, s);
            point_gemm g = {'N', 'N', t.tiles, s.n, d->co, bu.M, U, dV, NP * d->co, NP * s.n,
                            NP * s.n, co, sn, sn, 0.0f};
            rc = run_point_gemms(c, bf, &g, e);
            if (rc == PK_OK)
                input_grad_transform(c, dx, dV, &t, s);
        }
    }
    if (rc == PK_OK && dw && d->bias && db)
        bias_grad(db, dy, (long)d->n * d->h * d->w, d->co);
    return rc;
}
