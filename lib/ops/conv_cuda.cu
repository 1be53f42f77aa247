/* CUDA twin of lib/ops/conv.c: 2-D convolution on NHWC activations and OHWI
 * weights, which is cuDNN's NHWC filter layout (KRSC), so nothing is
 * reordered.
 *
 * Per shape, on first use of each direction (forward, backward-data,
 * backward-filter), cuDNN's algorithms are timed on the call's own buffers
 * (cudnnFind*Ex; the heuristic cudnnGet*_v7 if timing fails) and the
 * fastest is kept in the context's cache, preferring the smallest workspace
 * among those within 5% of the fastest. A 1x1 stride-1 convolution is a
 * plain GEMM over [P, C] rows; cuBLAS is timed for it too and kept when it
 * beats cuDNN. The workspace is the context's (grown to the largest choice).
 * Math: TF32 allowed (cuDNN's default math, cuBLAS's TF32 mode) or strict
 * FP32 (CUDNN_FMA_MATH, cuBLAS's default math), per pk_ctx_opts.tf32.
 * Parameter gradients accumulate: cuDNN's beta = 1, cuBLAS's beta = 1, and
 * an own deterministic kernel for the bias.
 *
 * The bf16 precision (PyTorch autocast's split on a GPU): each direction
 * runs on bf16 copies of its two operands (x, w, dy rounded in the
 * context's half scratch) with fp32 accumulation. cuBLAS writes the fp32
 * result itself (cublasGemmEx, bf16 in, fp32 out, beta 1 for the weight
 * gradient); cuDNN's legacy API wants the result in bf16 too, so it is
 * widened into the fp32 tensor (added, for the weight gradient). The bias
 * and everything outside the convolutions stay fp32, and so do the
 * convolutions whose channel counts are not multiples of 8 (the stem's 3
 * inputs, the classifiers' 21 outputs): cuDNN's bf16 tensor-core kernels
 * want multiples of 8, and fp32 is sure to have an algorithm. */
#include "ops/cuda_common.cuh"

#include <stdlib.h>
#include <string.h>

#define FIND_WS_MAX ((size_t)1 << 30) /* workspace offered while timing */

/* Cache key: all ints, so no padding bytes take part in the comparison. */
struct conv_key {
    int tag, force, bf16;
    int n, h, w, ci, co, k, stride, pad, dil, ho, wo;
};
#define CONV_CUDA_KEY_TAG 0x63756463 /* "cudc": distinct from the CPU's keys */

enum conv_engine { ENG_NONE = 0, ENG_CUDNN, ENG_CUBLAS };

struct conv_plan {
    cudnnTensorDescriptor_t xd, yd;
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cd[3]; /* per direction: each has its math type */
    int engine[3];                      /* conv_engine per direction */
    int algo[3];                        /* cuDNN algorithm (ENG_CUDNN) */
    size_t ws[3];                       /* workspace bytes of the choice */
    int gemm;                           /* 1x1, stride 1, no padding */
    int bf16;                           /* operands in bf16 (the bf16 precision) */
};
enum { DIR_FWD = 0, DIR_DATA = 1, DIR_FILTER = 2 };

static void plan_drop(void *v)
{
    conv_plan *p = (conv_plan *)v;
    if (!p)
        return;
    if (p->xd)
        cudnnDestroyTensorDescriptor(p->xd);
    if (p->yd)
        cudnnDestroyTensorDescriptor(p->yd);
    if (p->wd)
        cudnnDestroyFilterDescriptor(p->wd);
    for (int i = 0; i < 3; i++)
        if (p->cd[i])
            cudnnDestroyConvolutionDescriptor(p->cd[i]);
    free(p);
}

static int fail_from(pk_cuda_ctx *cs, pk_err *e)
{
    int rc = pk_cuda_take_error(cs, e);
    return rc != PK_OK ? rc : pk_fail(e, PK_EBACKEND, "conv: CUDA failure");
}

/* c's CUDA state (*csp) and the plan of d's shape, made on first use. */
static int get_plan(pk_ctx *c, const pk_conv_desc *d, pk_cuda_ctx **csp, conv_plan **out,
                    pk_err *e)
{
    pk_cuda_ctx *cs = *csp = pk_cuda_enter(c);
    if (!cs)
        return pk_fail(e, PK_EINVAL, "conv: not a CUDA context");
    conv_key key = {CONV_CUDA_KEY_TAG, cs->conv_engine, cs->bf16, d->n,  d->h,
                    d->w,              d->ci,           d->co,    d->k,  d->stride,
                    d->pad,            d->dil,          d->ho,    d->wo};
    conv_plan *p = (conv_plan *)pk_ctx_cache_find(c, &key, sizeof key);
    if (p) {
        *out = p;
        return PK_OK;
    }
    p = (conv_plan *)calloc(1, sizeof *p);
    if (!p)
        return pk_fail(e, PK_ENOMEM, "conv: out of memory");
    p->bf16 = cs->bf16 && d->ci % 8 == 0 && d->co % 8 == 0;
    /* bf16 tensors always may use tensor cores (fp32 accumulation all the same) */
    cudnnMathType_t math = cs->tf32 || p->bf16 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
    cudnnDataType_t dt = p->bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
    bool ok = PK_CU(cs, cudnnCreateTensorDescriptor(&p->xd)) &&
              PK_CU(cs, cudnnCreateTensorDescriptor(&p->yd)) &&
              PK_CU(cs, cudnnCreateFilterDescriptor(&p->wd)) &&
              PK_CU(cs, cudnnSetTensor4dDescriptor(p->xd, CUDNN_TENSOR_NHWC, dt, d->n, d->ci,
                                                   d->h, d->w)) &&
              PK_CU(cs, cudnnSetTensor4dDescriptor(p->yd, CUDNN_TENSOR_NHWC, dt, d->n, d->co,
                                                   d->ho, d->wo)) &&
              PK_CU(cs, cudnnSetFilter4dDescriptor(p->wd, dt, CUDNN_TENSOR_NHWC, d->co, d->ci,
                                                   d->k, d->k));
    for (int i = 0; ok && i < 3; i++)
        ok = PK_CU(cs, cudnnCreateConvolutionDescriptor(&p->cd[i])) &&
             PK_CU(cs, cudnnSetConvolution2dDescriptor(
                           p->cd[i], d->pad, d->pad, d->stride, d->stride, d->dil, d->dil,
                           CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT)) &&
             PK_CU(cs, cudnnSetConvolutionMathType(p->cd[i], math));
    if (ok) { /* cuDNN must agree with our output size */
        int n, co, ho, wo;
        ok = PK_CU(cs, cudnnGetConvolution2dForwardOutputDim(p->cd[0], p->xd, p->wd, &n, &co,
                                                             &ho, &wo));
        if (ok && (n != d->n || co != d->co || ho != d->ho || wo != d->wo)) {
            plan_drop(p);
            return pk_fail(e, PK_EINVAL,
                           "conv: cuDNN's output %dx%dx%dx%d differs from %dx%dx%dx%d", n, ho,
                           wo, co, d->n, d->ho, d->wo, d->co);
        }
    }
    if (!ok) {
        plan_drop(p);
        return fail_from(cs, e);
    }
    p->gemm = d->k == 1 && d->stride == 1 && d->pad == 0 && cs->cublas;
    int rc = pk_ctx_cache_add(c, &key, sizeof key, p, plan_drop, e);
    if (rc != PK_OK)
        return rc; /* the cache dropped p */
    *out = p;
    return PK_OK;
}

/* ---- the 1x1 GEMM path (cuBLAS, column-major views of row-major data) ---- */
/* One column-major product out[m,n] = op(A)[m,k] op(B)[k,n] + beta out:
 * sgemm, or with bf16 GemmEx on bf16 A and B with an fp32 out and fp32
 * accumulation. */
static bool gemm_call(pk_cuda_ctx *cs, int bf16, cublasOperation_t ta, cublasOperation_t tb,
                      int m, int n, int k, const void *A, int lda, const void *B, int ldb,
                      float beta, float *out, int ldo)
{
    const float one = 1.0f;
    if (!bf16)
        return PK_CU(cs, cs->blas.sgemm(cs->cublas, ta, tb, m, n, k, &one, (const float *)A,
                                        lda, (const float *)B, ldb, &beta, out, ldo));
    return PK_CU(cs, cs->blas.gemm_ex(cs->cublas, ta, tb, m, n, k, &one, A, CUDA_R_16BF, lda, B,
                                      CUDA_R_16BF, ldb, &beta, out, CUDA_R_32F, ldo,
                                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

/* y[P,co] = x[P,ci] W[co,ci]^T; dx[P,ci] = dy[P,co] W; dw[co,ci] += dy^T x.
 * a and b are float, or bf16 where p->bf16; out is float. */
static bool gemm_run(pk_cuda_ctx *cs, const conv_plan *p, int dir, const pk_conv_desc *d,
                     float *out, const void *a, const void *b, float beta)
{
    int P = d->n * d->h * d->w;
    switch (dir) {
    case DIR_FWD: /* out = y, a = x, b = w */
        return gemm_call(cs, p->bf16, CUBLAS_OP_T, CUBLAS_OP_N, d->co, P, d->ci, b, d->ci, a,
                         d->ci, beta, out, d->co);
    case DIR_DATA: /* out = dx, a = dy, b = w */
        return gemm_call(cs, p->bf16, CUBLAS_OP_N, CUBLAS_OP_N, d->ci, P, d->co, b, d->ci, a,
                         d->co, beta, out, d->ci);
    default: /* DIR_FILTER: out = dw, a = dy, b = x */
        return gemm_call(cs, p->bf16, CUBLAS_OP_N, CUBLAS_OP_T, d->ci, d->co, P, b, d->ci, a,
                         d->co, beta, out, d->ci);
    }
}

/* Milliseconds per call of the GEMM path (median of 3 after a warm-up),
 * or a negative value when it fails. */
static float gemm_time(pk_cuda_ctx *cs, const conv_plan *p, int dir, const pk_conv_desc *d,
                       float *out, const void *a, const void *b)
{
    cudaEvent_t t0 = NULL, t1 = NULL;
    float ms[3] = {-1.0f, -1.0f, -1.0f};
    pk_err pending = cs->err; /* a failing candidate is not an error */
    bool ok = PK_CU(cs, cudaEventCreate(&t0)) && PK_CU(cs, cudaEventCreate(&t1)) &&
              gemm_run(cs, p, dir, d, out, a, b, 0.0f);
    for (int i = 0; ok && i < 3; i++)
        ok = PK_CU(cs, cudaEventRecord(t0, cs->stream)) &&
             gemm_run(cs, p, dir, d, out, a, b, 0.0f) &&
             PK_CU(cs, cudaEventRecord(t1, cs->stream)) &&
             PK_CU(cs, cudaEventSynchronize(t1)) &&
             PK_CU(cs, cudaEventElapsedTime(&ms[i], t0, t1));
    if (t0)
        cudaEventDestroy(t0);
    if (t1)
        cudaEventDestroy(t1);
    if (!ok) {
        cs->err = pending;
        return -1.0f;
    }
    float lo = ms[0] < ms[1] ? ms[0] : ms[1], hi = ms[0] < ms[1] ? ms[1] : ms[0];
    return ms[2] < lo ? lo : ms[2] > hi ? hi : ms[2];
}

/* ---- choosing an algorithm ------------------------------------------------ */
/* The fastest successful result, or the smallest workspace among those
 * within 5% of it; -1 when none succeeded. `timed`: results carry times. */
template <typename Perf> static int pick(const Perf *r, int n, bool timed, size_t ws_max)
{
    int best = -1;
    for (int i = 0; i < n; i++)
        if (r[i].status == CUDNN_STATUS_SUCCESS && r[i].memory <= ws_max) {
            best = i;
            break;
        }
    if (best < 0 || !timed)
        return best;
    for (int i = 0; i < n; i++)
        if (r[i].status == CUDNN_STATUS_SUCCESS && r[i].time <= r[best].time * 1.05f &&
            r[i].memory < r[best].memory)
            best = i;
    return best;
}

/* One direction's cuDNN choice: the algorithm, its workspace and math type
 * (best < 0: none), and its time in ms (< 0: not timed). */
struct dnn_choice {
    int best, algo;
    size_t need;
    cudnnMathType_t math;
    float time;
};

/* Times the N algorithms with find (cudnnFind*Ex) and picks one; when that
 * fails, asks get (the heuristic cudnnGet*_v7, named `what`) instead. */
template <typename Perf, int N, typename Find, typename Get>
static dnn_choice find_algo(pk_cuda_ctx *cs, size_t ws_size, Find find, Get get,
                            const char *what)
{
    Perf r[N];
    int n = 0;
    dnn_choice c = {-1, 0, 0, CUDNN_DEFAULT_MATH, -1.0f};
    if (find(r, N, &n) == CUDNN_STATUS_SUCCESS)
        c.best = pick(r, n, true, ws_size);
    if (c.best >= 0)
        c.time = r[c.best].time;
    else if (pk_cuda_ok(cs, get(r, N, &n), __FILE__, __LINE__, what))
        c.best = pick(r, n, false, (size_t)-1);
    if (c.best >= 0) {
        c.algo = r[c.best].algo;
        c.need = r[c.best].memory;
        c.math = r[c.best].mathType;
    }
    return c;
}

/* Times cuDNN (and cuBLAS for a GEMM shape) for `dir` on the call's own
 * buffers and records the choice; out, a and b as gemm_run's (out is
 * written), cuDNN's result going to outq instead where it is not NULL
 * (the bf16 precision). */
static bool choose(pk_cuda_ctx *cs, conv_plan *p, int dir, const pk_conv_desc *d, float *out,
                   void *outq, const void *a, const void *b)
{
    void *dnn_out = outq ? outq : (void *)out;
    size_t free_b = 0, total_b = 0;
    if (!PK_CU(cs, cudaMemGetInfo(&free_b, &total_b)))
        return false;
    size_t ws_size = free_b / 4 < FIND_WS_MAX ? free_b / 4 : FIND_WS_MAX;
    void *ws = NULL;
    if (ws_size && cudaMalloc(&ws, ws_size) != cudaSuccess) {
        (void)cudaGetLastError(); /* not sticky: time with no workspace */
        ws = NULL;
        ws_size = 0;
    }
    cudnnConvolutionDescriptor_t cd = p->cd[dir];
    cudnnHandle_t h = cs->cudnn;
    dnn_choice dc;
    if (dir == DIR_FWD) /* a = x, b = w */
        dc = find_algo<cudnnConvolutionFwdAlgoPerf_t, CUDNN_CONVOLUTION_FWD_ALGO_COUNT>(
            cs, ws_size,
            [&](cudnnConvolutionFwdAlgoPerf_t *r, int m, int *n) {
                return cudnnFindConvolutionForwardAlgorithmEx(h, p->xd, a, p->wd, b, cd, p->yd,
                                                              dnn_out, m, n, r, ws, ws_size);
            },
            [&](cudnnConvolutionFwdAlgoPerf_t *r, int m, int *n) {
                return cudnnGetConvolutionForwardAlgorithm_v7(h, p->xd, p->wd, cd, p->yd, m, n,
                                                              r);
            },
            "cudnnGetConvolutionForwardAlgorithm_v7");
    else if (dir == DIR_DATA) /* a = dy, b = w */
        dc = find_algo<cudnnConvolutionBwdDataAlgoPerf_t, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT>(
            cs, ws_size,
            [&](cudnnConvolutionBwdDataAlgoPerf_t *r, int m, int *n) {
                return cudnnFindConvolutionBackwardDataAlgorithmEx(
                    h, p->wd, b, p->yd, a, cd, p->xd, dnn_out, m, n, r, ws, ws_size);
            },
            [&](cudnnConvolutionBwdDataAlgoPerf_t *r, int m, int *n) {
                return cudnnGetConvolutionBackwardDataAlgorithm_v7(h, p->wd, p->yd, cd, p->xd, m,
                                                                   n, r);
            },
            "cudnnGetConvolutionBackwardDataAlgorithm_v7");
    else /* DIR_FILTER: a = dy, b = x */
        dc = find_algo<cudnnConvolutionBwdFilterAlgoPerf_t,
                       CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT>(
            cs, ws_size,
            [&](cudnnConvolutionBwdFilterAlgoPerf_t *r, int m, int *n) {
                return cudnnFindConvolutionBackwardFilterAlgorithmEx(
                    h, p->xd, b, p->yd, a, cd, p->wd, dnn_out, m, n, r, ws, ws_size);
            },
            [&](cudnnConvolutionBwdFilterAlgoPerf_t *r, int m, int *n) {
                return cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, p->xd, p->yd, cd, p->wd,
                                                                     m, n, r);
            },
            "cudnnGetConvolutionBackwardFilterAlgorithm_v7");
    if (ws)
        cudaFree(ws);
    (void)cudaGetLastError(); /* a failed Find left nothing sticky behind */
    float t_blas = -1.0f;
    if (p->gemm && cs->conv_engine != PK_CUDA_CONV_CUDNN)
        t_blas = gemm_time(cs, p, dir, d, out, a, b);
    if (t_blas >= 0.0f && (cs->conv_engine == PK_CUDA_CONV_CUBLAS || dc.best < 0 ||
                           dc.time < 0.0f || t_blas < dc.time)) {
        p->engine[dir] = ENG_CUBLAS;
        p->ws[dir] = 0;
        return true;
    }
    if (dc.best < 0)
        return pk_cuda_note(cs, PK_EBACKEND, __FILE__, __LINE__, "conv",
                            "no cuDNN algorithm supports this shape");
    /* Without TF32 the descriptor stays strict FP32 whatever cuDNN reports
     * (it labels TF32 kernels with the default math type). */
    bool ok = true;
    if (cs->tf32 || p->bf16)
        ok = PK_CU(cs, cudnnSetConvolutionMathType(cd, dc.math));
    p->engine[dir] = ENG_CUDNN;
    p->algo[dir] = dc.algo;
    p->ws[dir] = dc.need;
    return ok;
}

/* ---- bias: y[p, co] += b[co]; db[co] += sum_p dy[p, co] ------------------- */
__global__ void bias_add_kernel(float *y, const float *b, long P, int co)
{
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= co)
        return;
    float v = b[ch];
    for (long r = (long)blockIdx.y * blockDim.y + threadIdx.y; r < P;
         r += (long)gridDim.y * blockDim.y)
        y[(size_t)r * co + ch] += v;
}

/* Block (tile, chunk) sums 32 channels over one chunk of rows (8 lanes,
 * added in lane order) into partial[chunk][co]; then one thread per channel
 * adds the chunks in order: the same result on every run. */
#define BIAS_ROWS 256 /* rows per chunk */
__global__ void bias_partial_kernel(double *partial, const float *dy, long P, int co)
{
    __shared__ double part[8][32];
    int ch = blockIdx.x * 32 + threadIdx.x;
    long r0 = (long)blockIdx.y * BIAS_ROWS, r1 = r0 + BIAS_ROWS < P ? r0 + BIAS_ROWS : P;
    double s = 0.0;
    if (ch < co)
        for (long r = r0 + threadIdx.y; r < r1; r += 8)
            s += dy[(size_t)r * co + ch];
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && ch < co) {
        for (int t = 1; t < 8; t++)
            s += part[t][threadIdx.x];
        partial[(size_t)blockIdx.y * co + ch] = s;
    }
}

__global__ void bias_sum_kernel(float *db, const double *partial, int chunks, int co)
{
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= co)
        return;
    double s = 0.0;
    for (int k = 0; k < chunks; k++)
        s += partial[(size_t)k * co + ch];
    db[ch] = __fadd_rn(db[ch], (float)s);
}

static bool bias_grad(pk_cuda_ctx *cs, float *db, const float *dy, long P, int co)
{
    long chunks = (P + BIAS_ROWS - 1) / BIAS_ROWS;
    if (chunks > 65535) /* gridDim.y; P beyond 16M rows is not a PSPNet head */
        return pk_cuda_note(cs, PK_EINVAL, __FILE__, __LINE__, "conv bias gradient",
                            "too many rows");
    double *partial = (double *)pk_cuda_workspace(cs, (size_t)chunks * co * sizeof(double));
    if (!partial)
        return false;
    bias_partial_kernel<<<dim3((co + 31) / 32, (unsigned)chunks), dim3(32, 8), 0, cs->stream>>>(
        partial, dy, P, co);
    if (!PK_CU_LAUNCH(cs))
        return false;
    bias_sum_kernel<<<(co + 127) / 128, 128, 0, cs->stream>>>(db, partial, (int)chunks, co);
    return PK_CU_LAUNCH(cs);
}

/* ---- public ------------------------------------------------------------- */
static const float kOne = 1.0f, kZero = 0.0f;

/* The element count of dir's result. */
static size_t out_count(int dir, const pk_conv_desc *d)
{
    return dir == DIR_FWD    ? (size_t)d->n * d->ho * d->wo * d->co
           : dir == DIR_DATA ? (size_t)d->n * d->h * d->w * d->ci
                             : (size_t)d->co * d->k * d->k * d->ci;
}

/* Direction dir on the shape's engine, chosen on its first call (timing
 * writes the output, so the accumulating filter gradient is timed on a
 * scratch buffer); out, a and b as gemm_run's, beta 1 accumulates. In the
 * bf16 precision a and b are bf16 and cuDNN writes outq (bf16 scratch of
 * out's size), widened into out afterwards. */
static bool conv_dir(pk_cuda_ctx *cs, conv_plan *p, int dir, const pk_conv_desc *d, float *out,
                     uint16_t *outq, const void *a, const void *b, float beta)
{
    if (!p->engine[dir]) {
        float *scratch = NULL;
        if (dir == DIR_FILTER &&
            !PK_CU(cs, cudaMalloc(&scratch, (size_t)d->co * d->k * d->k * d->ci * sizeof(float))))
            return false;
        bool ok = choose(cs, p, dir, d, scratch ? scratch : out, outq, a, b);
        if (scratch)
            PK_CU(cs, cudaFree(scratch));
        if (!ok)
            return false;
    }
    if (p->engine[dir] == ENG_CUBLAS)
        return gemm_run(cs, p, dir, d, out, a, b, beta);
    size_t wsb = p->ws[dir];
    void *ws = wsb ? pk_cuda_workspace(cs, wsb) : NULL;
    if (wsb && !ws)
        return false;
    /* cuDNN into the bf16 scratch starts from zero; the widening adds */
    const float *bp = beta != 0.0f && !outq ? &kOne : &kZero;
    void *dst = outq ? (void *)outq : (void *)out;
    cudnnConvolutionDescriptor_t cd = p->cd[dir];
    bool ok;
    switch (dir) {
    case DIR_FWD: /* a = x, b = w */
        ok = PK_CU(cs, cudnnConvolutionForward(cs->cudnn, &kOne, p->xd, a, p->wd, b, cd,
                                               (cudnnConvolutionFwdAlgo_t)p->algo[dir], ws, wsb,
                                               bp, p->yd, dst));
        break;
    case DIR_DATA: /* a = dy, b = w */
        ok = PK_CU(cs, cudnnConvolutionBackwardData(
                           cs->cudnn, &kOne, p->wd, b, p->yd, a, cd,
                           (cudnnConvolutionBwdDataAlgo_t)p->algo[dir], ws, wsb, bp, p->xd,
                           dst));
        break;
    default: /* DIR_FILTER: a = dy, b = x */
        ok = PK_CU(cs, cudnnConvolutionBackwardFilter(
                           cs->cudnn, &kOne, p->xd, b, p->yd, a, cd,
                           (cudnnConvolutionBwdFilterAlgo_t)p->algo[dir], ws, wsb, bp, p->wd,
                           dst));
        break;
    }
    return ok && (!outq || pk_cuda_widen_bf16(cs, out, outq, out_count(dir, d), beta != 0.0f));
}

/* The bf16 precision's operand copies: k slots of count[i] bf16 values
 * each (NULL where the count is 0) carved from the half scratch. */
static bool half_slots(pk_cuda_ctx *cs, uint16_t **slot, const size_t *count, int k)
{
    size_t off[4], total = 0;
    for (int i = 0; i < k; i++) {
        off[i] = total;
        total += (count[i] * sizeof(uint16_t) + 255) / 256 * 256;
    }
    char *base = (char *)pk_cuda_half_scratch(cs, total);
    if (!base)
        return false;
    for (int i = 0; i < k; i++)
        slot[i] = count[i] ? (uint16_t *)(base + off[i]) : NULL;
    return true;
}

/* The status of an op that ended with ok: the failure kept in the context
 * or, when ok is false and none was, a generic one. */
static int finish(pk_cuda_ctx *cs, bool ok, pk_err *e)
{
    int rc = pk_cuda_take_error(cs, e);
    return ok ? rc : (rc != PK_OK ? rc : fail_from(cs, e));
}

extern "C" int pk_cuda_conv2d_forward(pk_ctx *c, float *y, const float *x, const float *w,
                                      const float *b, const pk_conv_desc *d, pk_err *e)
{
    pk_cuda_ctx *cs;
    conv_plan *p;
    int rc = get_plan(c, d, &cs, &p, e);
    if (rc != PK_OK)
        return rc;
    bool ok;
    if (p->bf16) { /* slots: x, w and cuDNN's result, in bf16 */
        size_t count[3] = {out_count(DIR_DATA, d), out_count(DIR_FILTER, d),
                           out_count(DIR_FWD, d)};
        uint16_t *q[3];
        ok = half_slots(cs, q, count, 3) && pk_cuda_round_bf16(cs, q[0], x, count[0]) &&
             pk_cuda_round_bf16(cs, q[1], w, count[1]) &&
             conv_dir(cs, p, DIR_FWD, d, y, q[2], q[0], q[1], 0.0f);
    } else {
        ok = conv_dir(cs, p, DIR_FWD, d, y, NULL, x, w, 0.0f);
    }
    if (ok && d->bias) {
        long P = (long)d->n * d->ho * d->wo;
        int bx = d->co >= 128 ? 128 : (d->co + 31) / 32 * 32, by = 256 / bx;
        long gy = (P + by - 1) / by;
        bias_add_kernel<<<dim3((d->co + bx - 1) / bx, (unsigned)(gy < 4096 ? gy : 4096)),
                          dim3(bx, by), 0, cs->stream>>>(y, b, P, d->co);
        ok = PK_CU_LAUNCH(cs);
    }
    return finish(cs, ok, e);
}

extern "C" int pk_cuda_conv2d_backward(pk_ctx *c, float *dx, float *dw, float *db,
                                       const float *dy, const float *x, const float *w,
                                       const pk_conv_desc *d, pk_err *e)
{
    pk_cuda_ctx *cs;
    conv_plan *p;
    int rc = get_plan(c, d, &cs, &p, e);
    if (rc != PK_OK)
        return rc;
    const void *dyo = dy, *wo = w, *xo = x;
    uint16_t *q[4] = {NULL, NULL, NULL, NULL};
    bool ok = true;
    if (p->bf16) { /* slots: dy, w, x and cuDNN's result (dx, then dw), in bf16 */
        size_t nx = out_count(DIR_DATA, d), nw = out_count(DIR_FILTER, d);
        size_t nout = dx && dw ? (nx > nw ? nx : nw) : dx ? nx : nw;
        size_t count[4] = {out_count(DIR_FWD, d), dx ? nw : 0, dw ? nx : 0, nout};
        ok = half_slots(cs, q, count, 4) && pk_cuda_round_bf16(cs, q[0], dy, count[0]) &&
             pk_cuda_round_bf16(cs, q[1], w, count[1]) &&
             pk_cuda_round_bf16(cs, q[2], x, count[2]);
        dyo = q[0];
        wo = q[1];
        xo = q[2];
    }
    ok = ok && (!dx || conv_dir(cs, p, DIR_DATA, d, dx, q[3], dyo, wo, 0.0f));
    if (ok && dw) {
        ok = conv_dir(cs, p, DIR_FILTER, d, dw, q[3], dyo, xo, 1.0f);
        if (ok && d->bias && db)
            ok = bias_grad(cs, db, dy, (long)d->n * d->ho * d->wo, d->co);
    }
    return finish(cs, ok, e);
}
