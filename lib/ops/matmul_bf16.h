/* Private to lib/: batched matrix products with bf16 operands and fp32
 * results through oneDNN's matmul primitive (matmul_bf16.c), for the bf16
 * precision's GEMM-shaped convolutions: the Winograd products (conv_wino.c)
 * and the 1x1 backward (conv.c). */
#ifndef PSPKD_MATMUL_BF16_H
#define PSPKD_MATMUL_BF16_H

#include <stdint.h>
#include "ops/ops.h"

/* C_p [m x n] = A_p [m x k] . B_p [k x n] for p < batch (C_p += ... when
 * accumulate). Each operand is given by its strides in elements: [0] from
 * one product to the next, [1] from row to row, [2] from column to column,
 * so transposed and interleaved layouts need no copy. */
typedef struct pk_bmm_desc {
    long batch, m, n, k;
    long sa[3], sb[3], sc[3];
    long accumulate;
} pk_bmm_desc;

/* Runs on the context's oneDNN team (the caller brackets it with
 * pk_ctx_omp_enter). The primitive is built once per descriptor and kept
 * in the context's cache. */
int pk_bmm_bf16(pk_ctx *c, const pk_bmm_desc *d, float *C, const uint16_t *A,
                const uint16_t *B, pk_err *e);

#endif
