/* SGD with momentum and weight decay, torch.optim.SGD's update rule
 * (dampening 0, no nesterov), over one contiguous parameter buffer split
 * into groups with their own LR multiplier; and semseg's poly schedule. */
#include "ops/ops.h"
#include "ops/ops_cuda.h"

#include <math.h>

void pk_sgd_step(pk_ctx *c, float *param, float *momentum_buf, const float *grad,
                 const pk_param_group *groups, int ngroups, float lr, float momentum,
                 float weight_decay)
{
    PK_ON_CUDA(c, pk_cuda_sgd_step(c, param, momentum_buf, grad, groups, ngroups, lr, momentum,
                                   weight_decay));
    for (int gi = 0; gi < ngroups; gi++) {
        /* PyTorch keeps the group LR as a Python float (double) and hands it
         * to the kernel as a float32 scalar: round lr*mult the same way. */
        float glr = (float)((double)lr * (double)groups[gi].lr_mult);
        float *p = param + groups[gi].offset;
        float *buf = momentum_buf + groups[gi].offset;
        const float *g = grad + groups[gi].offset;
        long n = (long)groups[gi].count;
#pragma omp parallel for num_threads(pk_ctx_threads(c)) schedule(static) if (n > 32768)
        for (long i = 0; i < n; i++) {
            float d = g[i] + weight_decay * p[i];
            float b = momentum * buf[i] + d;
            buf[i] = b;
            p[i] -= glr * b;
        }
    }
}

float pk_poly_lr(float base, long it, long max_it, float power)
{
    if (max_it <= 0 || it >= max_it)
        return 0.0f;
    if (it < 0)
        it = 0;
    return (float)((double)base * pow(1.0 - (double)it / (double)max_it, (double)power));
}
