/* The CUDA half of the compute context: device, stream, cuDNN and cuBLAS
 * handles (math mode from pk_ctx_opts.tf32), the shared workspace, device
 * memory with allocation counters, and the deferred-error slot. */
#include "ops/cuda_common.cuh"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <new>
#include <unordered_map>

struct pk_cuda_alloc_table {
    std::unordered_map<void *, size_t> sizes;
};

bool pk_cuda_note(pk_cuda_ctx *cs, int code, const char *file, int line, const char *what,
                  const char *reason)
{
    if (cs && cs->err.code == PK_OK) {
        const char *base = strrchr(file, '/');
        pk_fail(&cs->err, code, "CUDA: %s:%d: %s: %s", base ? base + 1 : file, line, what,
                reason ? reason : "?");
    }
    return false;
}

int pk_cuda_take_error(pk_cuda_ctx *cs, pk_err *e)
{
    int code = cs->err.code;
    if (code == PK_OK)
        return PK_OK;
    if (e)
        *e = cs->err;
    cs->err.code = PK_OK;
    cs->err.msg[0] = '\0';
    return code;
}

pk_cuda_ctx *pk_cuda_enter(pk_ctx *c)
{
    pk_cuda_ctx *cs = c->cuda;
    if (!cs)
        return NULL;
    int cur = -1;
    if (cudaGetDevice(&cur) != cudaSuccess || cur != cs->device)
        PK_CU(cs, cudaSetDevice(cs->device));
    return cs;
}

extern "C" int pk_cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError(); /* no driver / no device: not sticky, clear it */
        return 0;
    }
    return n;
}

static void count_alloc(pk_cuda_ctx *cs, long long delta)
{
    cs->mem_now = (size_t)((long long)cs->mem_now + delta);
    if (cs->mem_now > cs->mem_peak)
        cs->mem_peak = cs->mem_now;
}

/* *buf with at least `bytes` (contents lost when it grows), or NULL. */
static void *grow(pk_cuda_ctx *cs, void **buf, size_t *cap, size_t bytes)
{
    if (bytes <= *cap && *buf)
        return *buf;
    /* The queued kernels may still use the old buffer. */
    if (*buf) {
        if (!PK_CU(cs, cudaStreamSynchronize(cs->stream)) || !PK_CU(cs, cudaFree(*buf)))
            return NULL;
        count_alloc(cs, -(long long)*cap);
    }
    *buf = NULL;
    *cap = 0;
    size_t want = (bytes + 255) / 256 * 256;
    if (!PK_CU(cs, cudaMalloc(buf, want ? want : 256))) {
        *buf = NULL;
        return NULL;
    }
    *cap = want ? want : 256;
    count_alloc(cs, (long long)*cap);
    return *buf;
}

void *pk_cuda_workspace(pk_cuda_ctx *cs, size_t bytes)
{
    return grow(cs, &cs->ws, &cs->ws_cap, bytes);
}

void *pk_cuda_half_scratch(pk_cuda_ctx *cs, size_t bytes)
{
    return grow(cs, &cs->half, &cs->half_cap, bytes);
}

#define PK_STR2(x) #x
#define PK_STR(x) PK_STR2(x)

/* Opens libcublas.so.<major of the headers> and resolves what we call;
 * false (and nothing loaded) when any of it is missing. */
static bool load_cublas(pk_cublas_api *b)
{
    memset(b, 0, sizeof *b);
    void *lib = dlopen("libcublas.so." PK_STR(CUBLAS_VER_MAJOR), RTLD_NOW | RTLD_LOCAL);
    if (!lib)
        return false;
    b->create = (decltype(b->create))dlsym(lib, "cublasCreate_v2");
    b->destroy = (decltype(b->destroy))dlsym(lib, "cublasDestroy_v2");
    b->set_stream = (decltype(b->set_stream))dlsym(lib, "cublasSetStream_v2");
    b->set_math_mode = (decltype(b->set_math_mode))dlsym(lib, "cublasSetMathMode");
    b->sgemm = (decltype(b->sgemm))dlsym(lib, "cublasSgemm_v2");
    b->status_string = (decltype(b->status_string))dlsym(lib, "cublasGetStatusString");
    b->gemm_ex = (decltype(b->gemm_ex))dlsym(lib, "cublasGemmEx");
    if (!b->create || !b->destroy || !b->set_stream || !b->set_math_mode || !b->sgemm ||
        !b->status_string || !b->gemm_ex) {
        dlclose(lib);
        memset(b, 0, sizeof *b);
        return false;
    }
    b->lib = lib;
    return true;
}

extern "C" int pk_cuda_ctx_init(pk_ctx *c, const pk_ctx_opts *o, pk_err *e)
{
    int n = pk_cuda_device_count();
    if (n <= 0)
        return pk_fail(e, PK_EINVAL, "context: no CUDA device found");
    if (o->device_index < 0 || o->device_index >= n)
        return pk_fail(e, PK_EINVAL, "context: CUDA device %d does not exist (%d found)",
                       o->device_index, n);
    pk_cuda_ctx *cs = new (std::nothrow) pk_cuda_ctx();
    pk_cuda_alloc_table *t = new (std::nothrow) pk_cuda_alloc_table();
    if (!cs || !t) {
        delete cs;
        delete t;
        return pk_fail(e, PK_ENOMEM, "context: out of memory");
    }
    cs->device = o->device_index;
    cs->tf32 = o->tf32 != 0;
    cs->bf16 = o->precision == PK_PREC_BF16;
    cs->allocs = t;
    c->cuda = cs;
    cudaDeviceProp prop;
    bool ok = PK_CU(cs, cudaSetDevice(cs->device)) &&
              PK_CU(cs, cudaGetDeviceProperties(&prop, cs->device)) &&
              PK_CU(cs, cudaStreamCreateWithFlags(&cs->stream, cudaStreamNonBlocking)) &&
              PK_CU(cs, cudnnCreate(&cs->cudnn)) &&
              PK_CU(cs, cudnnSetStream(cs->cudnn, cs->stream)) &&
              PK_CU(cs, cudaMallocHost(&cs->host_scalar, 16 * sizeof(double)));
    if (ok && load_cublas(&cs->blas)) {
        const pk_cublas_api &b = cs->blas;
        ok = PK_CU(cs, b.create(&cs->cublas)) &&
             PK_CU(cs, b.set_stream(cs->cublas, cs->stream)) &&
             /* cuBLAS's default math is strict FP32; TF32 only when allowed */
             PK_CU(cs, b.set_math_mode(cs->cublas, cs->tf32 ? CUBLAS_TF32_TENSOR_OP_MATH
                                                            : CUBLAS_DEFAULT_MATH));
    }
    if (!ok) {
        int rc = pk_cuda_take_error(cs, e);
        pk_cuda_ctx_fini(c);
        return rc;
    }
    cs->sm_count = prop.multiProcessorCount;
    /* cuDNN's and cuBLAS's bf16 kernels start with Ampere */
    if (cs->bf16 && prop.major < 8) {
        int rc = pk_fail(e, PK_EBACKEND,
                         "context: bf16 precision needs a GPU of compute capability 8.0 or "
                         "newer (%s is %d.%d)",
                         prop.name, prop.major, prop.minor);
        pk_cuda_ctx_fini(c);
        return rc;
    }
    return PK_OK;
}

extern "C" void pk_cuda_ctx_fini(pk_ctx *c)
{
    pk_cuda_ctx *cs = c->cuda;
    if (!cs)
        return;
    cudaSetDevice(cs->device);
    if (cs->stream)
        cudaStreamSynchronize(cs->stream);
    /* Whatever the caller did not free (the model frees its own buffers). */
    for (auto &kv : cs->allocs->sizes)
        cudaFree(kv.first);
    if (cs->ws)
        cudaFree(cs->ws);
    if (cs->half)
        cudaFree(cs->half);
    if (cs->host_scalar)
        cudaFreeHost(cs->host_scalar);
    if (cs->cublas)
        cs->blas.destroy(cs->cublas);
    if (cs->blas.lib)
        dlclose(cs->blas.lib);
    if (cs->cudnn)
        cudnnDestroy(cs->cudnn);
    if (cs->stream)
        cudaStreamDestroy(cs->stream);
    delete cs->allocs;
    delete cs;
    c->cuda = NULL;
}

extern "C" void *pk_cuda_dev_alloc(pk_ctx *c, size_t bytes)
{
    pk_cuda_ctx *cs = pk_cuda_enter(c);
    void *p = NULL;
    if (!cs || !PK_CU(cs, cudaMalloc(&p, bytes ? bytes : 256)))
        return NULL;
    try {
        cs->allocs->sizes[p] = bytes;
    } catch (...) {
        cudaFree(p);
        pk_cuda_note(cs, PK_ENOMEM, __FILE__, __LINE__, "allocation table", "out of memory");
        return NULL;
    }
    count_alloc(cs, (long long)bytes);
    return p;
}

extern "C" void pk_cuda_dev_free(pk_ctx *c, void *p)
{
    pk_cuda_ctx *cs = pk_cuda_enter(c);
    if (!cs || !p)
        return;
    auto it = cs->allocs->sizes.find(p);
    if (it == cs->allocs->sizes.end()) {
        pk_cuda_note(cs, PK_EINVAL, __FILE__, __LINE__, "pk_dev_free",
                     "pointer not from pk_dev_alloc on this context");
        return;
    }
    count_alloc(cs, -(long long)it->second);
    cs->allocs->sizes.erase(it);
    PK_CU(cs, cudaFree(p));
}

extern "C" void pk_cuda_dev_zero(pk_ctx *c, void *p, size_t bytes)
{
    pk_cuda_ctx *cs = pk_cuda_enter(c);
    if (cs && bytes)
        PK_CU(cs, cudaMemsetAsync(p, 0, bytes, cs->stream));
}

/* Both copies wait for completion: the host buffer may be reused (or read)
 * as soon as the call returns, as on the CPU. */
extern "C" void pk_cuda_dev_upload(pk_ctx *c, void *dst_dev, const void *src_host, size_t bytes)
{
    pk_cuda_ctx *cs = pk_cuda_enter(c);
    if (cs && bytes &&
        PK_CU(cs,
              cudaMemcpyAsync(dst_dev, src_host, bytes, cudaMemcpyHostToDevice, cs->stream)))
        PK_CU(cs, cudaStreamSynchronize(cs->stream));
}

extern "C" void pk_cuda_dev_download(pk_ctx *c, void *dst_host, const void *src_dev,
                                     size_t bytes)
{
    pk_cuda_ctx *cs = pk_cuda_enter(c);
    if (cs && bytes &&
        PK_CU(cs,
              cudaMemcpyAsync(dst_host, src_dev, bytes, cudaMemcpyDeviceToHost, cs->stream)))
        PK_CU(cs, cudaStreamSynchronize(cs->stream));
}

extern "C" void pk_cuda_dev_sync(pk_ctx *c)
{
    pk_cuda_ctx *cs = pk_cuda_enter(c);
    if (cs)
        PK_CU(cs, cudaStreamSynchronize(cs->stream));
}

extern "C" int pk_cuda_status(pk_ctx *c, pk_err *e)
{
    pk_cuda_ctx *cs = pk_cuda_enter(c);
    if (!cs)
        return PK_OK;
    PK_CU(cs, cudaStreamSynchronize(cs->stream));
    return pk_cuda_take_error(cs, e);
}

extern "C" void pk_cuda_mem_stats(pk_ctx *c, size_t *current, size_t *peak)
{
    pk_cuda_ctx *cs = c->cuda;
    if (current)
        *current = cs ? cs->mem_now : 0;
    if (peak)
        *peak = cs ? cs->mem_peak : 0;
}

extern "C" int pk_cuda_set_conv_engine(pk_ctx *c, int engine)
{
    if (!c->cuda || engine < PK_CUDA_CONV_AUTO || engine > PK_CUDA_CONV_CUBLAS)
        return PK_EINVAL;
    if (engine == PK_CUDA_CONV_CUBLAS && !c->cuda->cublas)
        return PK_ENOTFOUND;
    c->cuda->conv_engine = engine;
    return PK_OK;
}

extern "C" void pk_cuda_mem_reset_peak(pk_ctx *c)
{
    if (c->cuda)
        c->cuda->mem_peak = c->cuda->mem_now;
}
