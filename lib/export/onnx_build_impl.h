/* Building an ONNX GraphProto with protobuf-c: an arena owns every message,
 * string and array, so one call frees the whole model. Private to
 * lib/export/. A failed step (out of memory) sets ob->fail and every later
 * step is a no-op returning NULL, so a caller checks once at the end. */
#ifndef PSPKD_ONNX_BUILD_IMPL_H
#define PSPKD_ONNX_BUILD_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include "core/err.h"
#include "onnx.pb-c.h"

typedef struct ob_block ob_block;

typedef struct ob {
    ob_block *blocks;
    int fail;
    Onnx__NodeProto **nodes;
    size_t nnodes, cap_nodes;
    Onnx__TensorProto **inits;
    size_t ninits, cap_inits;
    long fresh; /* counter for helper value names */
} ob;

void ob_free(ob *b);
void *ob_alloc(ob *b, size_t bytes); /* zeroed */
char *ob_strf(ob *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A fresh value name "<stem>_<n>". */
char *ob_fresh(ob *b, const char *stem);

/* Appends a node op_type(in...) -> out; returns it (attributes go on it). */
Onnx__NodeProto *ob_node(ob *b, const char *op_type, const char *name, int nin,
                         const char *const *in, const char *out);
void ob_attr_int(ob *b, Onnx__NodeProto *n, const char *name, int64_t v);
void ob_attr_ints(ob *b, Onnx__NodeProto *n, const char *name, int count, const int64_t *v);
void ob_attr_str(ob *b, Onnx__NodeProto *n, const char *name, const char *v);

/* Initializers. ob_init_f32 keeps a pointer to data (the weights are large:
 * it must outlive the write); ob_init_i64 copies. ob_i64 returns the name of a shared
 * 1-element int64 constant "i64_<v>" (made on first use). */
const char *ob_init_f32(ob *b, const char *name, int ndim, const int64_t *dims,
                        const float *data);
const char *ob_init_i64(ob *b, const char *name, int count, const int64_t *data);
const char *ob_i64(ob *b, int64_t v);

/* A float tensor value_info: dims[d] > 0 fixed, else the symbol sym[d]. */
Onnx__ValueInfoProto *ob_value_info(ob *b, const char *name, int ndim, const int64_t *dims,
                                    const char *const *sym);

/* Writes the packed message to path atomically. */
int ob_write(const ProtobufCMessage *msg, const char *path, pk_err *e);

#endif
