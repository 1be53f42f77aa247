/* safetensors read/write: 8-byte little-endian header length, JSON header
 * {"name": {"dtype", "shape", "data_offsets"}, "__metadata__": {str: str}},
 * then the raw little-endian data. Every length, dtype size and offset is
 * validated; writes are atomic (temp file, fsync, rename). */
#ifndef PSPKD_SAFETENSORS_H
#define PSPKD_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include "core/err.h"

typedef enum { PK_F32 = 0, PK_F16, PK_I64 } pk_dtype;
#define PK_ST_MAX_DIMS 8

/* "F32", "F16", "I64": the header's spelling, also used in messages. */
const char *pk_dtype_name(pk_dtype d);
/* "[64,3,7,7]" ("[]" for a scalar) into buf (truncated to cap): the
 * header's spelling, also used in messages. */
const char *pk_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape);

typedef struct pk_st_tensor {
    const char *name;
    pk_dtype dtype;
    int ndim;
    int64_t shape[PK_ST_MAX_DIMS];
    size_t numel;
    const void *data; /* points into the file's buffer */
    size_t nbytes;
} pk_st_tensor;

typedef struct pk_st_file pk_st_file;

int pk_st_open(pk_st_file **out, const char *path, pk_err *e);
/* Parses a copy of an in-memory image (tests, LMDB values). */
int pk_st_parse(pk_st_file **out, const void *buf, size_t len, pk_err *e);
void pk_st_close(pk_st_file *f);
int pk_st_count(const pk_st_file *f);
const pk_st_tensor *pk_st_at(const pk_st_file *f, int i);
const pk_st_tensor *pk_st_find(const pk_st_file *f, const char *name);
/* A __metadata__ string value, or NULL. */
const char *pk_st_meta(const pk_st_file *f, const char *key);
/* Copies tensor `name` as float32 (F16 converted) into dst[n]; fails with a
 * message naming the tensor when it is missing or has numel != n. */
int pk_st_read_f32(const pk_st_file *f, const char *name, float *dst, size_t n, pk_err *e);
/* Copies t's numel elements into dst as float32 (F16 and I64 converted). */
void pk_st_tensor_f32(const pk_st_tensor *t, float *dst);
/* The index of t's first NaN or infinity (F32, F16), or -1 when every
 * element is finite (always for I64). */
long pk_st_first_nonfinite(const pk_st_tensor *t);

typedef struct pk_st_writer pk_st_writer;
pk_st_writer *pk_st_writer_new(void);
void pk_st_writer_free(pk_st_writer *w);
/* data is copied; names must be unique. */
int pk_st_add(pk_st_writer *w, const char *name, pk_dtype dtype, int ndim,
              const int64_t *shape, const void *data, pk_err *e);
int pk_st_set_meta(pk_st_writer *w, const char *key, const char *value, pk_err *e);
/* Atomic write: path.tmp.<pid>, fsync, rename, fsync of the directory. */
int pk_st_write(pk_st_writer *w, const char *path, pk_err *e);
/* Serialises to a malloc'ed buffer (caller frees). */
int pk_st_serialize(pk_st_writer *w, void **buf, size_t *len, pk_err *e);

#endif
