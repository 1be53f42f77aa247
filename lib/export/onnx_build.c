/* The protobuf-c side of the ONNX writer: an arena for the messages, node,
 * attribute and initializer constructors, and the atomic file write. */
#include "export/onnx_build_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/atomic_file.h"

struct ob_block {
    ob_block *next;
    max_align_t data[];
};

void ob_free(ob *b)
{
    while (b->blocks) {
        ob_block *n = b->blocks->next;
        free(b->blocks);
        b->blocks = n;
    }
    free(b->nodes);
    free(b->inits);
    memset(b, 0, sizeof *b);
}

/* One block per allocation: the model holds a few thousand, the weights
 * dominate, and freeing stays one walk. */
void *ob_alloc(ob *b, size_t bytes)
{
    if (b->fail)
        return NULL;
    ob_block *k = calloc(1, sizeof *k + (bytes ? bytes : 1));
    if (!k) {
        b->fail = 1;
        return NULL;
    }
    k->next = b->blocks;
    b->blocks = k;
    return k->data;
}

char *ob_strf(ob *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n < 0 ? NULL : ob_alloc(b, (size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

char *ob_fresh(ob *b, const char *stem) { return ob_strf(b, "%s_%ld", stem, b->fresh++); }

static int push(ob *b, void ***arr, size_t *n, size_t *cap, void *item)
{
    if (b->fail || !item)
        return b->fail = 1, -1;
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 256;
        void **a = realloc(*arr, c * sizeof *a);
        if (!a)
            return b->fail = 1, -1;
        *arr = a;
        *cap = c;
    }
    (*arr)[(*n)++] = item;
    return 0;
}

Onnx__NodeProto *ob_node(ob *b, const char *op_type, const char *name, int nin,
                         const char *const *in, const char *out)
{
    Onnx__NodeProto *n = ob_alloc(b, sizeof *n);
    char **ins = ob_alloc(b, (size_t)nin * sizeof *ins);
    char **outs = ob_alloc(b, sizeof *outs);
    if (!n || !ins || !outs)
        return NULL;
    onnx__node_proto__init(n);
    for (int i = 0; i < nin; i++)
        ins[i] = ob_strf(b, "%s", in[i]);
    outs[0] = ob_strf(b, "%s", out);
    n->n_input = (size_t)nin;
    n->input = ins;
    n->n_output = 1;
    n->output = outs;
    n->op_type = ob_strf(b, "%s", op_type);
    n->name = ob_strf(b, "%s", name ? name : out);
    if (push(b, (void ***)&b->nodes, &b->nnodes, &b->cap_nodes, n))
        return NULL;
    return b->fail ? NULL : n;
}

static Onnx__AttributeProto *new_attr(ob *b, Onnx__NodeProto *n, const char *name,
                                      Onnx__AttributeProto__AttributeType type)
{
    if (!n || b->fail)
        return NULL;
    Onnx__AttributeProto *a = ob_alloc(b, sizeof *a);
    Onnx__AttributeProto **list =
        ob_alloc(b, (n->n_attribute + 1) * sizeof *list);
    if (!a || !list)
        return NULL;
    onnx__attribute_proto__init(a);
    a->name = ob_strf(b, "%s", name);
    a->has_type = 1;
    a->type = type;
    if (n->n_attribute)
        memcpy(list, n->attribute, n->n_attribute * sizeof *list);
    list[n->n_attribute++] = a;
    n->attribute = list;
    return a;
}

void ob_attr_int(ob *b, Onnx__NodeProto *n, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = new_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    if (a) {
        a->has_i = 1;
        a->i = v;
    }
}

void ob_attr_ints(ob *b, Onnx__NodeProto *n, const char *name, int count, const int64_t *v)
{
    Onnx__AttributeProto *a = new_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    int64_t *ints = ob_alloc(b, (size_t)count * sizeof *ints);
    if (a && ints) {
        memcpy(ints, v, (size_t)count * sizeof *ints);
        a->n_ints = (size_t)count;
        a->ints = ints;
    }
}

void ob_attr_str(ob *b, Onnx__NodeProto *n, const char *name, const char *v)
{
    Onnx__AttributeProto *a =
        new_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
    char *s = ob_strf(b, "%s", v);
    if (a && s) {
        a->has_s = 1;
        a->s.len = strlen(s);
        a->s.data = (uint8_t *)s;
    }
}

static Onnx__TensorProto *new_init(ob *b, const char *name, int ndim, const int64_t *dims,
                                   int32_t type)
{
    Onnx__TensorProto *t = ob_alloc(b, sizeof *t);
    int64_t *d = ob_alloc(b, (size_t)ndim * sizeof *d);
    if (!t || !d)
        return NULL;
    onnx__tensor_proto__init(t);
    memcpy(d, dims, (size_t)ndim * sizeof *d);
    t->n_dims = (size_t)ndim;
    t->dims = d;
    t->has_data_type = 1;
    t->data_type = type;
    t->name = ob_strf(b, "%s", name);
    if (push(b, (void ***)&b->inits, &b->ninits, &b->cap_inits, t))
        return NULL;
    return b->fail ? NULL : t;
}

static size_t numel(int ndim, const int64_t *dims)
{
    size_t n = 1;
    for (int d = 0; d < ndim; d++)
        n *= (size_t)dims[d];
    return n;
}

const char *ob_init_f32(ob *b, const char *name, int ndim, const int64_t *dims,
                        const float *data)
{
    Onnx__TensorProto *t = new_init(b, name, ndim, dims, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
    if (!t)
        return NULL;
    t->n_float_data = numel(ndim, dims);
    t->float_data = (float *)data; /* not copied: the weights are large */
    return t->name;
}

const char *ob_init_i64(ob *b, const char *name, int count, const int64_t *data)
{
    int64_t dims[1] = {count};
    Onnx__TensorProto *t = new_init(b, name, 1, dims, ONNX__TENSOR_PROTO__DATA_TYPE__INT64);
    int64_t *v = ob_alloc(b, (size_t)count * sizeof *v);
    if (!t || !v)
        return NULL;
    memcpy(v, data, (size_t)count * sizeof *v);
    t->n_int64_data = (size_t)count;
    t->int64_data = v;
    return t->name;
}

const char *ob_i64(ob *b, int64_t v)
{
    char name[32];
    snprintf(name, sizeof name, "i64_%lld", (long long)v);
    for (size_t i = 0; i < b->ninits; i++)
        if (!strcmp(b->inits[i]->name, name))
            return b->inits[i]->name;
    return ob_init_i64(b, name, 1, &v);
}

Onnx__ValueInfoProto *ob_value_info(ob *b, const char *name, int ndim, const int64_t *dims,
                                    const char *const *sym)
{
    Onnx__ValueInfoProto *vi = ob_alloc(b, sizeof *vi);
    Onnx__TypeProto *tp = ob_alloc(b, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = ob_alloc(b, sizeof *tt);
    Onnx__TensorShapeProto *sh = ob_alloc(b, sizeof *sh);
    Onnx__TensorShapeProto__Dimension **dl = ob_alloc(b, (size_t)ndim * sizeof *dl);
    if (!vi || !tp || !tt || !sh || !dl)
        return NULL;
    onnx__value_info_proto__init(vi);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sh);
    for (int d = 0; d < ndim; d++) {
        Onnx__TensorShapeProto__Dimension *dim = ob_alloc(b, sizeof *dim);
        if (!dim)
            return NULL;
        onnx__tensor_shape_proto__dimension__init(dim);
        if (dims[d] > 0) {
            dim->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dim->dim_value = dims[d];
        } else {
            dim->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dim->dim_param = ob_strf(b, "%s", sym[d]);
        }
        dl[d] = dim;
    }
    sh->n_dim = (size_t)ndim;
    sh->dim = dl;
    tt->has_elem_type = 1;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tt->shape = sh;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    vi->name = ob_strf(b, "%s", name);
    vi->type = tp;
    return b->fail ? NULL : vi;
}

/* A ProtobufCBuffer that appends to a FILE. */
typedef struct file_buffer {
    ProtobufCBuffer base;
    FILE *fp;
    int failed;
} file_buffer;

static void file_append(ProtobufCBuffer *buf, size_t len, const uint8_t *data)
{
    file_buffer *f = (file_buffer *)buf;
    if (!f->failed && fwrite(data, 1, len, f->fp) != len)
        f->failed = 1;
}

int ob_write(const ProtobufCMessage *msg, const char *path, pk_err *e)
{
    pk_atomic_file af;
    int rc = pk_atomic_open(&af, path, e);
    if (rc)
        return rc;
    file_buffer fb = {{file_append}, af.fp, 0};
    protobuf_c_message_pack_to_buffer(msg, &fb.base);
    if (fb.failed) {
        pk_atomic_abort(&af);
        return pk_fail(e, PK_EIO, "cannot write %s", path);
    }
    return pk_atomic_commit(&af, e);
}
