/* libFuzzer: a safetensors image (header JSON + tensor table + data), as
 * pk_st_parse reads checkpoints, then every tensor as the loaders use it. */
#include <stdlib.h>

#include "store/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pk_st_file *f = NULL;
    pk_err e;
    if (pk_st_parse(&f, data, size, &e))
        return 0;
    (void)pk_st_meta(f, "arch");
    (void)pk_st_meta(f, "step");
    for (int i = 0; i < pk_st_count(f); i++) {
        const pk_st_tensor *t = pk_st_at(f, i);
        if (pk_st_find(f, t->name) == NULL)
            abort();
        (void)pk_st_first_nonfinite(t);
        float *dst = malloc(t->numel ? t->numel * sizeof *dst : 1);
        if (!dst)
            continue;
        pk_st_tensor_f32(t, dst);
        (void)pk_st_read_f32(f, t->name, dst, t->numel, &e);
        free(dst);
    }
    pk_st_close(f);
    return 0;
}
