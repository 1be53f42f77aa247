/* CUDA twins of lib/ops/elementwise.c: ReLU, add, accumulate, channel concat
 * and Dropout2d. Flat ops use 16-byte accesses when every pointer is
 * 16-byte aligned; the dropout mask comes from the same pk_hash64 draw as
 * the CPU's, so both backends drop the same channels. */
#include "ops/cuda_common.cuh"

#define EW_THREADS 256

static bool aligned16(const void *a, const void *b, const void *c)
{
    return (((uintptr_t)a | (uintptr_t)b | (uintptr_t)c) & 15u) == 0;
}

/* ---- flat ops ------------------------------------------------------------ */
enum ew_op { EW_RELU, EW_RELU_BWD, EW_ADD, EW_ACC };

template <int OP> __device__ inline float ew_apply(float a, float b)
{
    if (OP == EW_RELU)
        return a > 0.0f ? a : 0.0f;
    if (OP == EW_RELU_BWD) /* a = dy, b = y */
        return b > 0.0f ? a : 0.0f;
    return a + b; /* EW_ADD, EW_ACC (y += x: a = y, b = x) */
}

template <int OP>
__global__ void ew_kernel(float *__restrict__ y, const float *a, const float *b, size_t n)
{
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        y[i] = ew_apply<OP>(a[i], b ? b[i] : 0.0f);
}

template <int OP>
__global__ void ew_kernel4(float4 *y, const float4 *a, const float4 *b, size_t n4)
{
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += stride) {
        float4 u = a[i], v = b ? b[i] : make_float4(0.f, 0.f, 0.f, 0.f), r;
        r.x = ew_apply<OP>(u.x, v.x);
        r.y = ew_apply<OP>(u.y, v.y);
        r.z = ew_apply<OP>(u.z, v.z);
        r.w = ew_apply<OP>(u.w, v.w);
        y[i] = r;
    }
}

template <int OP>
static void ew_run(pk_ctx *c, float *y, const float *a, const float *b, size_t n)
{
    pk_cuda_ctx *cs = pk_cuda_enter(c);
    if (!cs || n == 0)
        return;
    size_t done = 0;
    if (aligned16(y, a, b) && n >= 4) {
        size_t n4 = n / 4;
        ew_kernel4<OP><<<pk_grid(n4, EW_THREADS), EW_THREADS, 0, cs->stream>>>(
            (float4 *)y, (const float4 *)a, (const float4 *)b, n4);
        if (!PK_CU_LAUNCH(cs))
            return;
        done = n4 * 4;
    }
    if (done < n) {
        ew_kernel<OP><<<pk_grid(n - done, EW_THREADS), EW_THREADS, 0, cs->stream>>>(
            y + done, a + done, b ? b + done : NULL, n - done);
        PK_CU_LAUNCH(cs);
    }
}

extern "C" void pk_cuda_relu_forward(pk_ctx *c, float *y, const float *x, size_t n)
{
    ew_run<EW_RELU>(c, y, x, NULL, n);
}

extern "C" void pk_cuda_relu_backward(pk_ctx *c, float *dx, const float *dy, const float *y,
                                      size_t n)
{
    ew_run<EW_RELU_BWD>(c, dx, dy, y, n);
}

extern "C" void pk_cuda_add_forward(pk_ctx *c, float *y, const float *a, const float *b,
                                    size_t n)
{
    ew_run<EW_ADD>(c, y, a, b, n);
}

extern "C" void pk_cuda_accumulate(pk_ctx *c, float *y, const float *x, size_t n)
{
    ew_run<EW_ACC>(c, y, y, x, n);
}

/* ---- concat -------------------------------------------------------------- */
/* Up to CAT_MAX inputs per launch; more are done in several launches, each
 * over its own column range of the output rows. */
#define CAT_MAX 8
struct cat_args {
    float *part[CAT_MAX];  /* forward: inputs; backward: gradients (NULL: skip) */
    int col0[CAT_MAX + 1]; /* column range of part j: [col0[j], col0[j+1]) */
    int k;
    long ct; /* output row width */
};

/* 2-D grid: x over the columns of this launch, y over rows (no index
 * division). Forward (BWD = 0): y[p, col] = part_j[p, col - col0[j]];
 * backward (BWD = 1): part_j[p, col - col0[j]] = dy[p, col]. */
template <int BWD> __global__ void cat_kernel(float *full, cat_args a, long P)
{
    int col = a.col0[0] + (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (col >= a.col0[a.k])
        return;
    int j = 0;
    while (col >= a.col0[j + 1])
        j++;
    float *part = a.part[j];
    if (BWD && !part)
        return;
    int cj = a.col0[j + 1] - a.col0[j], cc = col - a.col0[j];
    for (long p = (long)blockIdx.y * blockDim.y + threadIdx.y; p < P;
         p += (long)gridDim.y * blockDim.y) {
        size_t pi = (size_t)p * cj + cc, fi = (size_t)p * a.ct + col;
        if (BWD)
            part[pi] = full[fi];
        else
            full[fi] = part[pi];
    }
}

/* Block and grid for a [rows, width] pass: x over columns, y over rows. */
static void grid_2d(long rows, long width, dim3 *grid, dim3 *block)
{
    int bx = width >= 256 ? 256 : (int)((width + 31) / 32 * 32), by = 256 / bx;
    long gy = (rows + by - 1) / by;
    *block = dim3(bx, by);
    *grid = dim3((unsigned)((width + bx - 1) / bx), (unsigned)(gy < 8192 ? gy : 8192));
}

template <int BWD>
static void cat_run(pk_ctx *c, float *full, float *const *parts, const int *cs_, int k, long P)
{
    pk_cuda_ctx *cs = pk_cuda_enter(c);
    if (!cs || P <= 0 || k <= 0)
        return;
    long ct = 0;
    for (int j = 0; j < k; j++)
        ct += cs_[j];
    int col = 0;
    for (int j0 = 0; j0 < k; j0 += CAT_MAX) {
        cat_args a;
        a.k = k - j0 < CAT_MAX ? k - j0 : CAT_MAX;
        a.ct = ct;
        a.col0[0] = col;
        for (int j = 0; j < a.k; j++) {
            a.part[j] = parts[j0 + j];
            col += cs_[j0 + j];
            a.col0[j + 1] = col;
        }
        long width = a.col0[a.k] - a.col0[0];
        if (width == 0)
            continue;
        dim3 grid, block;
        grid_2d(P, width, &grid, &block);
        cat_kernel<BWD><<<grid, block, 0, cs->stream>>>(full, a, P);
        if (!PK_CU_LAUNCH(cs))
            return;
    }
}

extern "C" void pk_cuda_concat_forward(pk_ctx *c, float *y, const float *const *xs,
                                       const int *cs, int k, long P)
{
    /* The kernel only reads the inputs; one pointer type serves both ways. */
    cat_run<0>(c, y, (float *const *)xs, cs, k, P);
}

extern "C" void pk_cuda_concat_backward(pk_ctx *c, float *const *dxs, const float *dy,
                                        const int *cs, int k, long P)
{
    cat_run<1>(c, (float *)dy, dxs, cs, k, P);
}

/* ---- Dropout2d ----------------------------------------------------------- */
/* rng.h's pk_hash64 and pk_bits_to_u01, for the device (same constants). */
__device__ inline uint64_t dev_hash64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

__global__ void dropout_mask_kernel(uint8_t *keep, long nc, float p, uint64_t seed,
                                    uint64_t i0)
{
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= nc)
        return;
    float u = (float)(dev_hash64(seed ^ (i0 + (uint64_t)i)) >> 40) * (1.0f / 16777216.0f);
    keep[i] = p < 1.0f && u >= p;
}

/* Grid: x over channels, y over the pixels of one sample, z over samples. */
__global__ void dropout_apply_kernel(float *y, const uint8_t *keep, const float *x, long hw,
                                     int ch, float scale)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= ch)
        return;
    int b = blockIdx.z;
    bool k = keep[(size_t)b * ch + j];
    for (long r = (long)blockIdx.y * blockDim.y + threadIdx.y; r < hw;
         r += (long)gridDim.y * blockDim.y) {
        size_t i = ((size_t)b * hw + r) * ch + j;
        y[i] = k ? __fmul_rn(x[i], scale) : 0.0f;
    }
}

static void dropout_apply(pk_cuda_ctx *cs, float *y, const uint8_t *keep, const float *x, int n,
                          long hw, int ch, float scale)
{
    dim3 grid, block;
    grid_2d(hw, ch, &grid, &block);
    for (int b0 = 0; b0 < n; b0 += 65535) { /* gridDim.z's limit */
        grid.z = n - b0 < 65535 ? n - b0 : 65535;
        size_t off = (size_t)b0 * hw * ch;
        dropout_apply_kernel<<<grid, block, 0, cs->stream>>>(y + off, keep + (size_t)b0 * ch,
                                                             x + off, hw, ch, scale);
        if (!PK_CU_LAUNCH(cs))
            return;
    }
}

static float dropout_scale(float p) { return p >= 1.0f ? 0.0f : 1.0f / (1.0f - p); }

extern "C" void pk_cuda_dropout2d_forward(pk_ctx *c, float *y, uint8_t *keep, const float *x,
                                          int n, long hw, int ch, float p, uint64_t seed,
                                          long first)
{
    pk_cuda_ctx *cs = pk_cuda_enter(c);
    long nc = (long)n * ch;
    if (!cs || nc <= 0)
        return;
    dropout_mask_kernel<<<(unsigned)((nc + EW_THREADS - 1) / EW_THREADS), EW_THREADS, 0,
                          cs->stream>>>(keep, nc, p, seed,
                                        (uint64_t)first * (uint64_t)ch);
    if (!PK_CU_LAUNCH(cs) || hw <= 0)
        return;
    dropout_apply(cs, y, keep, x, n, hw, ch, dropout_scale(p));
}

extern "C" void pk_cuda_dropout2d_backward(pk_ctx *c, float *dx, const float *dy,
                                           const uint8_t *keep, int n, long hw, int ch, float p)
{
    pk_cuda_ctx *cs = pk_cuda_enter(c);
    if (!cs || n <= 0 || hw <= 0 || ch <= 0)
        return;
    dropout_apply(cs, dx, keep, dy, n, hw, ch, dropout_scale(p));
}
