/* Model test helpers (linked into every test): the deterministic "formula"
 * weights and inputs shared with tests/fixtures/pspnet_ref.py, so model
 * fixtures need not store weights.
 *
 * u(stream, i) = top 24 bits of pk_hash64(stream << 32 | i) / 2^24, and a
 * uniform draw is (float)(lo + (hi - lo) * u) computed in double. State-dict
 * entry number t (0-based, state_dict() order = the model's tensor table)
 * uses stream t + 1 over its PyTorch-layout (OIHW) flat index:
 *   conv weight  U(+-sqrt(3 / fan_in))     BN weight     U(0.75, 1.25)
 *   any bias     U(-0.1, 0.1)              running_mean  U(-0.1, 0.1)
 *   running_var  U(0.5, 1.5)               num_batches_tracked 0
 * The "kink-free" variant (gradient fixtures) changes BatchNorm only:
 *   weight U(0.5, 0.6); bias +-(2.5 + 0.25|v|), v = U(-1, 1), sign of v, but
 *   always + for a block's last BN (bn3 / R18 bn2) and downsample.1;
 * so every ReLU input sits well away from 0 and float32 rounding cannot
 * flip a ReLU mask (a conv bias is one that follows a conv weight). */
#ifndef PSPKD_TEST_SUPPORT_MODEL_H
#define PSPKD_TEST_SUPPORT_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include "model/pspnet.h"

double pk_test_formula_u(uint64_t stream, uint64_t i);
void pk_test_formula_fill(float *x, size_t n, uint64_t stream, double lo, double hi);
/* Labels: 255 where u % 100 < 10 (10%), else (hash >> 8) % K. */
void pk_test_formula_labels(uint8_t *lab, size_t n, uint64_t stream, int K);
/* Offset inside the buffer tensor of PyTorch flat index i (OIHW -> OHWI). */
size_t pk_test_buffer_index(const pk_tensor_info *t, size_t i);
/* Formula parameters and running stats (momentum and num_batches_tracked
 * zeroed), plain or kink-free. Returns 0, or 1 when out of memory. */
int pk_test_model_fill(pk_model *m, int kinkfree);
/* Tensor t of the params (which 0), grads (1), momentum (2) or state
 * (RUNNING tensors) in PyTorch layout into host dst[t->count]. */
int pk_test_model_read(pk_model *m, const pk_tensor_info *t, int which, float *dst);

/* malloc that exits the test with a message when out of memory. */
void *pk_test_xmalloc(size_t n);

/* A formula training batch in host memory, as gen_model.py draws it: image
 * U(-2, 2) from image_stream (100001 for the standard batch), labels from
 * stream 100002, teacher main / aux logits U(-4, 4) from 100003 / 100004;
 * valid all 1 (callers set their masks). Exits when out of memory. */
typedef struct pk_test_batch {
    int n, h, w;
    float *image, *tmain, *taux;
    uint8_t *label, *valid;
} pk_test_batch;
#define PK_TEST_STREAM_IMAGE 100001
pk_test_batch pk_test_batch_make(int n, int h, int w, int K, uint64_t image_stream);
void pk_test_batch_free(pk_test_batch *b);
/* The model's view of it (all of its planes). */
pk_batch pk_test_batch_view(const pk_test_batch *b);

/* pk_train_cfg_defaults with both distillation terms on: the KD at weight
 * kd_weight and T = 2, the aux term `auxkd` at weight 0.5. */
pk_train_cfg pk_test_kd_cfg(float kd_weight, pk_auxkd auxkd);

#endif
