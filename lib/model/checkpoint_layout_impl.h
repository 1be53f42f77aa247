/* Internal helpers shared by the checkpoint reader/writer and the ImageNet
 * loader: moving one named model tensor between the device buffers (OHWI
 * conv weights) and the file's PyTorch layout (OIHW), and validating a file
 * tensor against the model's table entry. Not part of the public API. */
#ifndef PSPKD_CHECKPOINT_LAYOUT_H
#define PSPKD_CHECKPOINT_LAYOUT_H

#include <stddef.h>
#include "model/pspnet.h"
#include "store/safetensors.h"

/* Largest element count of any tensor in the model (scratch sizing). */
size_t pk_ckl_max_count(const pk_model *m);

/* Checks that file tensor t can fill model tensor ti: F32 or F16 (for
 * num_batches_tracked also I64) and exactly ti's PyTorch shape. The message
 * names `file`, the tensor and both shapes. Every element must be finite
 * (the message names the tensor and the element). Returns PK_OK or
 * PK_EFORMAT. */
int pk_ckl_check(const pk_st_tensor *t, const pk_tensor_info *ti, const char *file,
                 pk_err *e);

/* Copies one PARAM/RUNNING tensor from a device buffer (base = params,
 * momentum or state) into out[ti->count] in PyTorch layout; scratch holds
 * ti->count floats. */
void pk_ckl_read_tensor(pk_model *m, const float *base, const pk_tensor_info *ti, float *out,
                        float *scratch);
/* The reverse: a file tensor (already checked) converted to float32 and,
 * for conv weights, to OHWI, uploaded at base + ti->offset. */
void pk_ckl_write_tensor(pk_model *m, float *base, const pk_tensor_info *ti,
                         const pk_st_tensor *t, float *scratch, float *scratch2);

/* A num_batches_tracked value from an I64, F32 or F16 scalar tensor. */
int64_t pk_ckl_scalar_i64(const pk_st_tensor *t);

#endif
