/* Sampling and blur kernels of the augmentation (see augment_kernels_impl.h).
 * The scalar code is the specification; with AVX2+FMA the spans run 8
 * output pixels at a time with gathers. Both paths compute the same
 * points (one rounding of the FMA apart), so a sample's result depends
 * only on its parameters, never on the thread that runs it. */
#include "data/augment_kernels_impl.h"

#include <math.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define PK_AUG_AVX2 1
#endif

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Row constants of the map: x1 = r0*x3 + bx, y1 = r3*x3 + by. */
static inline void row_consts(const pk_aug_warp *g, int y3, float *bx, float *by)
{
    *bx = g->r[1] * (float)y3 + g->r[2];
    *by = g->r[4] * (float)y3 + g->r[5];
}

/* Frame x3 on a row -> source point; 0 on the rotation border. */
static inline int map_x(const pk_aug_warp *g, float bx, float by, int x3, float *x0, float *y0)
{
    float x1 = g->r[0] * (float)x3 + bx, y1 = g->r[3] * (float)x3 + by;
    if (!(x1 >= -0.5f && x1 < (float)g->w1 - 0.5f && y1 >= -0.5f &&
          y1 < (float)g->h1 - 0.5f))
        return 0;
    *x0 = (x1 + 0.5f) * g->inv_s - 0.5f;
    *y0 = (y1 + 0.5f) * g->inv_s - 0.5f;
    return 1;
}

typedef struct tap {
    int i0, i1;
    float a; /* weight of i1 */
} tap;

static inline tap tap_at(float x, int n)
{
    float f = floorf(x);
    int i = (int)f;
    tap t = {clampi(i, 0, n - 1), clampi(i + 1, 0, n - 1), x - f};
    return t;
}

static void span_scalar(const pk_aug_warp *g, const uint8_t *rgb, int y3, int x3, int n,
                        const pk_aug_span_dst *d, int at)
{
    float bx, by;
    row_consts(g, y3, &bx, &by);
    int w = g->w, h = g->h;
    for (int i = 0; i < n; i++) {
        float x0, y0;
        int ok = map_x(g, bx, by, x3 + i, &x0, &y0);
        size_t o = (size_t)at + i;
        if (d->img) {
            float *im = d->img + o * 3;
            if (ok) {
                tap tx = tap_at(x0, w), ty = tap_at(y0, h);
                const uint8_t *r0 = rgb + (size_t)ty.i0 * w * 3, *r1 = rgb + (size_t)ty.i1 * w * 3;
                const uint8_t *p00 = r0 + tx.i0 * 3, *p01 = r0 + tx.i1 * 3;
                const uint8_t *p10 = r1 + tx.i0 * 3, *p11 = r1 + tx.i1 * 3;
                for (int k = 0; k < 3; k++) {
                    float top = (float)p00[k] + tx.a * (float)(p01[k] - p00[k]);
                    float bot = (float)p10[k] + tx.a * (float)(p11[k] - p10[k]);
                    im[k] = (top + ty.a * (bot - top)) * d->scale[k] + d->bias[k];
                }
            } else {
                im[0] = d->fill[0];
                im[1] = d->fill[1];
                im[2] = d->fill[2];
            }
        }
        if (d->label) {
            uint8_t l = d->ignore;
            if (ok) {
                int lx = clampi((int)floorf(x0 + 0.5f), 0, w - 1);
                int ly = clampi((int)floorf(y0 + 0.5f), 0, h - 1);
                l = d->src_label[(size_t)ly * w + lx];
            }
            d->label[o] = l;
        }
        if (d->valid)
            d->valid[o] = (uint8_t)ok;
    }
}

#ifdef PK_AUG_AVX2
/* 32-bit gathers at byte offsets that never read past `total` bytes: an
 * offset within the last 3 bytes is moved back and the value shifted. */
static inline __m256i gather_bytes(const uint8_t *base, __m256i off, __m256i lim)
{
    __m256i safe = _mm256_min_epi32(off, lim);
    __m256i shift = _mm256_slli_epi32(_mm256_sub_epi32(off, safe), 3);
    __m256i v = _mm256_i32gather_epi32((const int *)(const void *)base, safe, 1);
    return _mm256_srlv_epi32(v, shift);
}

static inline __m256 byte_ps(__m256i v, int k)
{
    return _mm256_cvtepi32_ps(
        _mm256_and_si256(_mm256_srli_epi32(v, 8 * k), _mm256_set1_epi32(0xff)));
}

/* r, g, b (8 pixels each) -> 24 interleaved floats. */
static inline void store_rgb(float *dst, __m256 r, __m256 g, __m256 b)
{
    const __m256i i0 = _mm256_setr_epi32(0, 0, 0, 1, 1, 1, 2, 2);
    const __m256i i1 = _mm256_setr_epi32(2, 3, 3, 3, 4, 4, 4, 5);
    const __m256i i2 = _mm256_setr_epi32(5, 5, 6, 6, 6, 7, 7, 7);
    __m256 o0 = _mm256_permutevar8x32_ps(r, i0);
    o0 = _mm256_blend_ps(o0, _mm256_permutevar8x32_ps(g, i0), 0x92);
    o0 = _mm256_blend_ps(o0, _mm256_permutevar8x32_ps(b, i0), 0x24);
    __m256 o1 = _mm256_permutevar8x32_ps(b, i1);
    o1 = _mm256_blend_ps(o1, _mm256_permutevar8x32_ps(r, i1), 0x92);
    o1 = _mm256_blend_ps(o1, _mm256_permutevar8x32_ps(g, i1), 0x24);
    __m256 o2 = _mm256_permutevar8x32_ps(g, i2);
    o2 = _mm256_blend_ps(o2, _mm256_permutevar8x32_ps(r, i2), 0x24);
    o2 = _mm256_blend_ps(o2, _mm256_permutevar8x32_ps(b, i2), 0x92);
    _mm256_storeu_ps(dst, o0);
    _mm256_storeu_ps(dst + 8, o1);
    _mm256_storeu_ps(dst + 16, o2);
}

static inline __m256i clamp_epi32(__m256i v, __m256i hi)
{
    return _mm256_min_epi32(_mm256_max_epi32(v, _mm256_setzero_si256()), hi);
}

/* Returns how many pixels it did (a multiple of 8). */
static int span_avx2(const pk_aug_warp *g, const uint8_t *rgb, int y3, int x3, int n,
                     const pk_aug_span_dst *d)
{
    int w = g->w, h = g->h;
    if ((long)w * h < 4)
        return 0;
    float bxs, bys;
    row_consts(g, y3, &bxs, &bys);
    const __m256 r0 = _mm256_set1_ps(g->r[0]), r3 = _mm256_set1_ps(g->r[3]);
    const __m256 bx = _mm256_set1_ps(bxs), by = _mm256_set1_ps(bys);
    const __m256 lo = _mm256_set1_ps(-0.5f), half = _mm256_set1_ps(0.5f);
    const __m256 hx = _mm256_set1_ps((float)g->w1 - 0.5f);
    const __m256 hy = _mm256_set1_ps((float)g->h1 - 0.5f);
    const __m256 is = _mm256_set1_ps(g->inv_s);
    const __m256 iota = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i wmax = _mm256_set1_epi32(w - 1), hmax = _mm256_set1_epi32(h - 1);
    const __m256i one = _mm256_set1_epi32(1), w3 = _mm256_set1_epi32(3 * w);
    const __m256i wl = _mm256_set1_epi32(w);
    const __m256i lim_rgb = _mm256_set1_epi32(w * h * 3 - 4), lim_lbl = _mm256_set1_epi32(w * h - 4);
    const __m128i pick = _mm_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                       -1, -1);
    __m256 sc[3], bi[3], fi[3];
    for (int k = 0; k < 3; k++) {
        sc[k] = _mm256_set1_ps(d->scale[k]);
        bi[k] = _mm256_set1_ps(d->bias[k]);
        fi[k] = _mm256_set1_ps(d->fill[k]);
    }
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 fx = _mm256_add_ps(_mm256_set1_ps((float)(x3 + i)), iota);
        __m256 x1 = _mm256_fmadd_ps(r0, fx, bx), y1 = _mm256_fmadd_ps(r3, fx, by);
        __m256 ok = _mm256_and_ps(
            _mm256_and_ps(_mm256_cmp_ps(x1, lo, _CMP_GE_OQ), _mm256_cmp_ps(x1, hx, _CMP_LT_OQ)),
            _mm256_and_ps(_mm256_cmp_ps(y1, lo, _CMP_GE_OQ), _mm256_cmp_ps(y1, hy, _CMP_LT_OQ)));
        /* outside points are clamped below, so every gather stays in bounds */
        __m256 x0 = _mm256_fmsub_ps(_mm256_add_ps(x1, half), is, half);
        __m256 y0 = _mm256_fmsub_ps(_mm256_add_ps(y1, half), is, half);
        x0 = _mm256_min_ps(_mm256_max_ps(x0, _mm256_set1_ps(-1.0f)), _mm256_set1_ps((float)w));
        y0 = _mm256_min_ps(_mm256_max_ps(y0, _mm256_set1_ps(-1.0f)), _mm256_set1_ps((float)h));
        size_t o = (size_t)i;
        if (d->img) {
            __m256 flx = _mm256_floor_ps(x0), fly = _mm256_floor_ps(y0);
            __m256 ax = _mm256_sub_ps(x0, flx), ay = _mm256_sub_ps(y0, fly);
            __m256i ix = _mm256_cvttps_epi32(flx), iy = _mm256_cvttps_epi32(fly);
            __m256i ix0 = clamp_epi32(ix, wmax), ix1 = clamp_epi32(_mm256_add_epi32(ix, one), wmax);
            __m256i iy0 = clamp_epi32(iy, hmax), iy1 = clamp_epi32(_mm256_add_epi32(iy, one), hmax);
            __m256i row0 = _mm256_mullo_epi32(iy0, w3), row1 = _mm256_mullo_epi32(iy1, w3);
            __m256i c0 = _mm256_add_epi32(ix0, _mm256_add_epi32(ix0, ix0));
            __m256i c1 = _mm256_add_epi32(ix1, _mm256_add_epi32(ix1, ix1));
            __m256i v00 = gather_bytes(rgb, _mm256_add_epi32(row0, c0), lim_rgb);
            __m256i v01 = gather_bytes(rgb, _mm256_add_epi32(row0, c1), lim_rgb);
            __m256i v10 = gather_bytes(rgb, _mm256_add_epi32(row1, c0), lim_rgb);
            __m256i v11 = gather_bytes(rgb, _mm256_add_epi32(row1, c1), lim_rgb);
            __m256 out[3];
            for (int k = 0; k < 3; k++) {
                __m256 p00 = byte_ps(v00, k), p01 = byte_ps(v01, k);
                __m256 p10 = byte_ps(v10, k), p11 = byte_ps(v11, k);
                __m256 top = _mm256_fmadd_ps(ax, _mm256_sub_ps(p01, p00), p00);
                __m256 bot = _mm256_fmadd_ps(ax, _mm256_sub_ps(p11, p10), p10);
                __m256 v = _mm256_fmadd_ps(ay, _mm256_sub_ps(bot, top), top);
                out[k] = _mm256_blendv_ps(fi[k], _mm256_fmadd_ps(v, sc[k], bi[k]), ok);
            }
            store_rgb(d->img + o * 3, out[0], out[1], out[2]);
        }
        if (d->label) {
            __m256i lx = clamp_epi32(_mm256_cvttps_epi32(_mm256_floor_ps(_mm256_add_ps(x0, half))), wmax);
            __m256i ly = clamp_epi32(_mm256_cvttps_epi32(_mm256_floor_ps(_mm256_add_ps(y0, half))), hmax);
            __m256i off = _mm256_add_epi32(_mm256_mullo_epi32(ly, wl), lx);
            __m256i v = gather_bytes(d->src_label, off, lim_lbl);
            v = _mm256_blendv_epi8(_mm256_set1_epi32(d->ignore), v, _mm256_castps_si256(ok));
            __m128i lo4 = _mm_shuffle_epi8(_mm256_castsi256_si128(v), pick);
            __m128i hi4 = _mm_shuffle_epi8(_mm256_extracti128_si256(v, 1), pick);
            uint32_t a = (uint32_t)_mm_cvtsi128_si32(lo4), b = (uint32_t)_mm_cvtsi128_si32(hi4);
            memcpy(d->label + o, &a, 4);
            memcpy(d->label + o + 4, &b, 4);
        }
        if (d->valid) {
            int m = _mm256_movemask_ps(ok);
            for (int j = 0; j < 8; j++)
                d->valid[o + j] = (uint8_t)((m >> j) & 1);
        }
    }
    return i;
}
#endif

void pk_aug_span(const pk_aug_warp *g, const uint8_t *rgb, int y3, int x3, int n,
                 const pk_aug_span_dst *d)
{
    int done = 0;
#ifdef PK_AUG_AVX2
    done = span_avx2(g, rgb, y3, x3, n, d);
#endif
    if (done < n)
        span_scalar(g, rgb, y3, x3 + done, n - done, d, done);
}

static inline void sample_plane(const pk_plane_set *ps, float x0, float y0, float *out)
{
    float px = ps->m[0] * x0 + ps->m[1] * y0 + ps->m[2];
    float py = ps->m[3] * x0 + ps->m[4] * y0 + ps->m[5];
    tap tx = tap_at(px, ps->w), ty = tap_at(py, ps->h);
    int c = ps->c, k = 0;
    const float *r0 = ps->data + (size_t)ty.i0 * ps->w * c;
    const float *r1 = ps->data + (size_t)ty.i1 * ps->w * c;
    const float *p00 = r0 + (size_t)tx.i0 * c, *p01 = r0 + (size_t)tx.i1 * c;
    const float *p10 = r1 + (size_t)tx.i0 * c, *p11 = r1 + (size_t)tx.i1 * c;
    float w11 = tx.a * ty.a, w10 = (1.0f - tx.a) * ty.a;
    float w01 = tx.a * (1.0f - ty.a), w00 = (1.0f - tx.a) * (1.0f - ty.a);
#ifdef PK_AUG_AVX2
    __m256 a00 = _mm256_set1_ps(w00), a01 = _mm256_set1_ps(w01);
    __m256 a10 = _mm256_set1_ps(w10), a11 = _mm256_set1_ps(w11);
    for (; k + 8 <= c; k += 8) {
        __m256 v = _mm256_mul_ps(a00, _mm256_loadu_ps(p00 + k));
        v = _mm256_fmadd_ps(a01, _mm256_loadu_ps(p01 + k), v);
        v = _mm256_fmadd_ps(a10, _mm256_loadu_ps(p10 + k), v);
        v = _mm256_fmadd_ps(a11, _mm256_loadu_ps(p11 + k), v);
        _mm256_storeu_ps(out + k, v);
    }
    if (k < c) { /* the last 1..7 channels with masked loads and stores */
        __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(c - k),
                                       _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        __m256 v = _mm256_mul_ps(a00, _mm256_maskload_ps(p00 + k, m));
        v = _mm256_fmadd_ps(a01, _mm256_maskload_ps(p01 + k, m), v);
        v = _mm256_fmadd_ps(a10, _mm256_maskload_ps(p10 + k, m), v);
        v = _mm256_fmadd_ps(a11, _mm256_maskload_ps(p11 + k, m), v);
        _mm256_maskstore_ps(out + k, m, v);
        k = c;
    }
#endif
    for (; k < c; k++)
        out[k] = w00 * p00[k] + w01 * p01[k] + w10 * p10[k] + w11 * p11[k];
}

void pk_aug_planes_span(const pk_aug_warp *g, int y3, int x3, int n, const uint8_t *valid,
                        const pk_plane_set *planes, int nplanes, size_t out_index)
{
    float bx, by;
    row_consts(g, y3, &bx, &by);
    for (int i = 0; i < n; i++) {
        size_t o = out_index + (size_t)i;
        float x0 = 0.0f, y0 = 0.0f;
        /* the valid mask decides (the span may have used the AVX2 map);
         * the point is recomputed here */
        if (valid[i]) {
            float x1 = g->r[0] * (float)(x3 + i) + bx, y1 = g->r[3] * (float)(x3 + i) + by;
            x0 = (x1 + 0.5f) * g->inv_s - 0.5f;
            y0 = (y1 + 0.5f) * g->inv_s - 0.5f;
        }
        for (int s = 0; s < nplanes; s++) {
            float *dst = planes[s].out + o * (size_t)planes[s].out_stride;
            if (valid[i])
                sample_plane(&planes[s], x0, y0, dst);
            else
                memset(dst, 0, (size_t)planes[s].c * sizeof(float));
        }
    }
}

/* OpenCV's GaussianBlur(ksize 5, sigma 0) kernel. */
static const float K5[5] = {0.0625f, 0.25f, 0.375f, 0.25f, 0.0625f};

void pk_aug_blur5(float *d, const float *s, int n, int step)
{
    int i = 0;
#ifdef PK_AUG_AVX2
    __m256 k0 = _mm256_set1_ps(K5[0]), k1 = _mm256_set1_ps(K5[1]), k2 = _mm256_set1_ps(K5[2]);
    for (; i + 8 <= n; i += 8) {
        const float *p = s + i;
        __m256 v = _mm256_mul_ps(k0, _mm256_add_ps(_mm256_loadu_ps(p),
                                                   _mm256_loadu_ps(p + 4 * step)));
        v = _mm256_fmadd_ps(k1, _mm256_add_ps(_mm256_loadu_ps(p + step),
                                              _mm256_loadu_ps(p + 3 * step)), v);
        v = _mm256_fmadd_ps(k2, _mm256_loadu_ps(p + 2 * step), v);
        _mm256_storeu_ps(d + i, v);
    }
#endif
    for (; i < n; i++) {
        const float *p = s + i;
        d[i] = K5[0] * (p[0] + p[4 * step]) + K5[1] * (p[step] + p[3 * step]) +
               K5[2] * p[2 * step];
    }
}

void pk_aug_blur5_norm(float *d, const float *s, int n, int step, const float mean[3],
                       const float inv_std[3])
{
    int i = 0;
#ifdef PK_AUG_AVX2
    /* 24 floats = 8 RGB pixels: the channel pattern repeats every 3 vectors */
    __m256 sc[3], bi[3];
    for (int v = 0; v < 3; v++) {
        float a[8], b[8];
        for (int j = 0; j < 8; j++) {
            int c = (v * 8 + j) % 3;
            a[j] = inv_std[c];
            b[j] = -mean[c] * inv_std[c];
        }
        sc[v] = _mm256_loadu_ps(a);
        bi[v] = _mm256_loadu_ps(b);
    }
    __m256 k0 = _mm256_set1_ps(K5[0]), k1 = _mm256_set1_ps(K5[1]), k2 = _mm256_set1_ps(K5[2]);
    for (; i + 24 <= n; i += 24)
        for (int v = 0; v < 3; v++) {
            const float *p = s + i + 8 * v;
            __m256 x = _mm256_mul_ps(k0, _mm256_add_ps(_mm256_loadu_ps(p),
                                                       _mm256_loadu_ps(p + 4 * step)));
            x = _mm256_fmadd_ps(k1, _mm256_add_ps(_mm256_loadu_ps(p + step),
                                                  _mm256_loadu_ps(p + 3 * step)), x);
            x = _mm256_fmadd_ps(k2, _mm256_loadu_ps(p + 2 * step), x);
            _mm256_storeu_ps(d + i + 8 * v, _mm256_fmadd_ps(x, sc[v], bi[v]));
        }
#endif
    for (; i < n; i++) {
        const float *p = s + i;
        float x = K5[0] * (p[0] + p[4 * step]) + K5[1] * (p[step] + p[3 * step]) +
                  K5[2] * p[2 * step];
        d[i] = (x - mean[i % 3]) * inv_std[i % 3];
    }
}
