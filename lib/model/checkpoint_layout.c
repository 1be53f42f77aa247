#include "model/checkpoint_layout_impl.h"

#include <string.h>
#include "core/half.h"

size_t pk_ckl_max_count(const pk_model *m)
{
    size_t mx = 1;
    for (int i = 0; i < pk_model_tensor_count(m); i++) {
        const pk_tensor_info *ti = pk_model_tensor(m, i);
        if (ti->count > mx)
            mx = ti->count;
    }
    return mx;
}

int pk_ckl_check(const pk_st_tensor *t, const pk_tensor_info *ti, const char *file, pk_err *e)
{
    int float_ok = t->dtype == PK_F32 || t->dtype == PK_F16;
    /* A state_dict converted wholesale with .float()/.half() turns the
     * counters into floats too; accept that rather than make users special-case it. */
    if (!(float_ok || (ti->kind == PK_T_NUM_BATCHES && t->dtype == PK_I64)))
        return pk_fail(e, PK_EFORMAT, "%s: tensor '%s' has dtype %s, expected %s", file,
                       t->name, pk_dtype_name(t->dtype),
                       ti->kind == PK_T_NUM_BATCHES ? "I64" : "F32 or F16");
    int same = t->ndim == ti->ndim;
    for (int d = 0; same && d < ti->ndim; d++)
        same = t->shape[d] == ti->shape[d];
    if (!same) {
        char got[96], want[96];
        return pk_fail(e, PK_EFORMAT, "%s: tensor '%s' has shape %s, the model's '%s' is %s",
                       file, t->name, pk_shape_str(got, sizeof got, t->ndim, t->shape),
                       ti->name, pk_shape_str(want, sizeof want, ti->ndim, ti->shape));
    }
    long bad = pk_st_first_nonfinite(t);
    if (bad >= 0)
        return pk_fail(e, PK_EFORMAT, "%s: tensor '%s' holds a non-finite value (element %ld)",
                       file, t->name, bad);
    return PK_OK;
}

/* conv weights: buffer [O][kh][kw][I] -> file [O][I][kh][kw] (to_file),
 * or back. */
static void reorder(float *dst, const float *src, const int64_t *s, int to_file)
{
    size_t O = (size_t)s[0], I = (size_t)s[1], H = (size_t)s[2], W = (size_t)s[3];
    for (size_t o = 0; o < O; o++)
        for (size_t y = 0; y < H; y++)
            for (size_t x = 0; x < W; x++)
                for (size_t i = 0; i < I; i++) {
                    size_t ohwi = ((o * H + y) * W + x) * I + i;
                    size_t oihw = ((o * I + i) * H + y) * W + x;
                    if (to_file)
                        dst[oihw] = src[ohwi];
                    else
                        dst[ohwi] = src[oihw];
                }
}

void pk_ckl_read_tensor(pk_model *m, const float *base, const pk_tensor_info *ti, float *out,
                        float *scratch)
{
    pk_ctx *c = pk_model_ctx(m);
    if (ti->is_conv_weight && ti->ndim == 4) {
        pk_dev_download(c, scratch, base + ti->offset, ti->count * sizeof(float));
        reorder(out, scratch, ti->shape, 1);
    } else {
        pk_dev_download(c, out, base + ti->offset, ti->count * sizeof(float));
    }
}

void pk_ckl_write_tensor(pk_model *m, float *base, const pk_tensor_info *ti,
                         const pk_st_tensor *t, float *scratch, float *scratch2)
{
    pk_ctx *c = pk_model_ctx(m);
    pk_st_tensor_f32(t, scratch);
    const float *src = scratch;
    if (ti->is_conv_weight && ti->ndim == 4) {
        reorder(scratch2, scratch, ti->shape, 0);
        src = scratch2;
    }
    pk_dev_upload(c, base + ti->offset, src, ti->count * sizeof(float));
}

int64_t pk_ckl_scalar_i64(const pk_st_tensor *t)
{
    if (t->numel < 1)
        return 0;
    if (t->dtype == PK_I64) {
        int64_t v;
        memcpy(&v, t->data, 8);
        return v;
    }
    float f;
    if (t->dtype == PK_F32) {
        memcpy(&f, t->data, 4);
    } else {
        uint16_t h;
        memcpy(&h, t->data, 2);
        f = pk_f16_to_f32(h);
    }
    return (int64_t)f;
}
