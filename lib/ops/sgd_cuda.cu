/* CUDA twin of pk_sgd_step (lib/ops/sgd.c): one fused kernel over the whole
 * parameter buffer, each element finding its LR group among up to
 * SGD_MAX_GROUPS (more groups take more launches). Elements outside every
 * group are left alone, as on the CPU. The float arithmetic is spelled
 * with round-to-nearest intrinsics (no FMA contraction), so the update is
 * bit-for-bit the CPU's. */
#include "ops/cuda_common.cuh"

#define SGD_MAX_GROUPS 8
#define SGD_THREADS 256

struct sgd_groups {
    size_t begin[SGD_MAX_GROUPS], end[SGD_MAX_GROUPS];
    float lr[SGD_MAX_GROUPS];
    int n;
    size_t lo, hi; /* the union's span */
};

__global__ void sgd_kernel(float *param, float *buf, const float *grad, sgd_groups g,
                           float momentum, float wd)
{
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = g.lo + (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < g.hi;
         i += stride) {
        int k = 0;
        while (k < g.n && !(i >= g.begin[k] && i < g.end[k]))
            k++;
        if (k == g.n)
            continue;
        float p = param[i];
        float d = __fadd_rn(grad[i], __fmul_rn(wd, p));
        float b = __fadd_rn(__fmul_rn(momentum, buf[i]), d);
        buf[i] = b;
        param[i] = __fsub_rn(p, __fmul_rn(g.lr[k], b));
    }
}

extern "C" void pk_cuda_sgd_step(pk_ctx *c, float *param, float *momentum_buf,
                                 const float *grad, const pk_param_group *groups, int ngroups,
                                 float lr, float momentum, float weight_decay)
{
    pk_cuda_ctx *cs = pk_cuda_enter(c);
    if (!cs)
        return;
    for (int g0 = 0; g0 < ngroups; g0 += SGD_MAX_GROUPS) {
        sgd_groups g;
        g.n = 0;
        g.lo = (size_t)-1;
        g.hi = 0;
        for (int j = g0; j < ngroups && j < g0 + SGD_MAX_GROUPS; j++) {
            if (groups[j].count == 0)
                continue;
            g.begin[g.n] = groups[j].offset;
            g.end[g.n] = groups[j].offset + groups[j].count;
            /* as the CPU: the group LR is lr*mult in double, rounded to float */
            g.lr[g.n] = (float)((double)lr * (double)groups[j].lr_mult);
            g.lo = g.begin[g.n] < g.lo ? g.begin[g.n] : g.lo;
            g.hi = g.end[g.n] > g.hi ? g.end[g.n] : g.hi;
            g.n++;
        }
        if (g.n == 0)
            continue;
        sgd_kernel<<<pk_grid(g.hi - g.lo, SGD_THREADS), SGD_THREADS, 0, cs->stream>>>(
            param, momentum_buf, grad, g, momentum, weight_decay);
        if (!PK_CU_LAUNCH(cs))
            return;
    }
}
