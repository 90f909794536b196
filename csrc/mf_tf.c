/*
 * mf_tf.c - TensorFlow GraphDef / SavedModel / tensor bundle readers (see mf_tf.h).
 */
#include "mf_tf.h"

#include <string.h>

#define MAX_RANK 64

/* ========================================================================================== */
/* Data types                                                                                 */
/* ========================================================================================== */

static const struct {
    int dtype;
    unsigned size;
    const char *name;
} tf_types[MF_TF_MAX_TYPE + 1] = {
    [0] = {MF_DT_UNKNOWN, 0, "DT_INVALID"},
    [1] = {MF_DT_FLOAT32, 4, "DT_FLOAT"},
    [2] = {MF_DT_FLOAT64, 8, "DT_DOUBLE"},
    [3] = {MF_DT_INT32, 4, "DT_INT32"},
    [4] = {MF_DT_UINT8, 1, "DT_UINT8"},
    [5] = {MF_DT_INT16, 2, "DT_INT16"},
    [6] = {MF_DT_INT8, 1, "DT_INT8"},
    [7] = {MF_DT_STRING, 0, "DT_STRING"},
    [8] = {MF_DT_COMPLEX64, 8, "DT_COMPLEX64"},
    [9] = {MF_DT_INT64, 8, "DT_INT64"},
    [10] = {MF_DT_BOOL, 1, "DT_BOOL"},
    [11] = {MF_DT_QINT8, 1, "DT_QINT8"},
    [12] = {MF_DT_QUINT8, 1, "DT_QUINT8"},
    [13] = {MF_DT_QINT32, 4, "DT_QINT32"},
    [14] = {MF_DT_BFLOAT16, 2, "DT_BFLOAT16"},
    [15] = {MF_DT_QINT16, 2, "DT_QINT16"},
    [16] = {MF_DT_QUINT16, 2, "DT_QUINT16"},
    [17] = {MF_DT_UINT16, 2, "DT_UINT16"},
    [18] = {MF_DT_COMPLEX128, 16, "DT_COMPLEX128"},
    [19] = {MF_DT_FLOAT16, 2, "DT_HALF"},
    [20] = {MF_DT_UNKNOWN, 0, "DT_RESOURCE"},
    [21] = {MF_DT_UNKNOWN, 0, "DT_VARIANT"},
    [22] = {MF_DT_UINT32, 4, "DT_UINT32"},
    [23] = {MF_DT_UINT64, 8, "DT_UINT64"},
    [24] = {MF_DT_FLOAT8_E5M2, 1, "DT_FLOAT8_E5M2"},
    [25] = {MF_DT_FLOAT8_E4M3FN, 1, "DT_FLOAT8_E4M3FN"},
    [26] = {MF_DT_FLOAT8_E4M3FNUZ, 1, "DT_FLOAT8_E4M3FNUZ"},
    [27] = {MF_DT_FLOAT8_E4M3B11FNUZ, 1, "DT_FLOAT8_E4M3B11FNUZ"},
    [28] = {MF_DT_FLOAT8_E5M2FNUZ, 1, "DT_FLOAT8_E5M2FNUZ"},
    [29] = {MF_DT_INT4, 1, "DT_INT4"},
    [30] = {MF_DT_UINT4, 1, "DT_UINT4"},
    [31] = {MF_DT_INT2, 1, "DT_INT2"},
    [32] = {MF_DT_UINT2, 1, "DT_UINT2"},
    [33] = {MF_DT_FLOAT4_E2M1FN, 1, "DT_FLOAT4_E2M1FN"},
};

int mf_tf_dtype(int32_t t) { return t > 0 && t <= MF_TF_MAX_TYPE ? tf_types[t].dtype : MF_DT_UNKNOWN; }
unsigned mf_tf_itemsize(int32_t t) { return t > 0 && t <= MF_TF_MAX_TYPE ? tf_types[t].size : 0; }
const char *mf_tf_type_name(int32_t t) {
    if (t > 100 && t - 100 <= MF_TF_MAX_TYPE) return tf_types[t - 100].name; /* _REF types print as their base */
    return t >= 0 && t <= MF_TF_MAX_TYPE ? tf_types[t].name : "DT_UNKNOWN";
}

/* The typed field holding values of type t, and its element encoding. */
static uint32_t typed_field(int32_t t, int *kind) {
    *kind = MF_PB_VARINT;
    switch (t) {
    case 1: *kind = MF_PB_I32; return 5;          /* float_val */
    case 8: *kind = MF_PB_I32; return 9;          /* scomplex_val (pairs) */
    case 2: *kind = MF_PB_I64; return 6;          /* double_val */
    case 18: *kind = MF_PB_I64; return 12;        /* dcomplex_val (pairs) */
    case 9: return 10;                            /* int64_val */
    case 10: return 11;                           /* bool_val */
    case 14: case 19: return 13;                  /* half_val: HALF and BFLOAT16 bit patterns */
    case 22: return 16;                           /* uint32_val */
    case 23: return 17;                           /* uint64_val */
    case 7: *kind = MF_PB_LEN; return 8;          /* string_val */
    case 24: case 25: case 26: case 27: case 28: *kind = -1; return 18; /* float8_val: one byte each */
    default: return 7;                            /* int_val: INT32/16/8, UINT16/8, quantized, 4/2-bit */
    }
}

/* ========================================================================================== */
/* Shapes and tensors                                                                         */
/* ========================================================================================== */

typedef struct tf_ctx {
    mf_arena *a;
    mf_error *err;
    mf_tf_graph *g;
    int32_t meta_graph;
    int32_t function;
} tf_ctx;

static int too_deep(tf_ctx *x, int depth, uint64_t off) {
    if (depth <= MF_PB_MAX_DEPTH) return 0;
    mf_fail(x->err, MF_ERR_LIMIT, off, "TensorFlow messages nested deeper than %d levels", MF_PB_MAX_DEPTH);
    return 1;
}

/* TensorShapeProto {dim 2 -> Dim {size 1, name 2}, unknown_rank 3}; ndim = -1 if unknown rank */
static int parse_shape(mf_arena *a, mf_error *err, mf_cursor *c, int depth, int32_t *ndim, int64_t **dims) {
    mf_pb_field f, g;
    int r, rr, unknown = 0;
    mf_vec v = {0};
    while ((r = mf_pb_next(c, &f, depth)) == 1) {
        if (f.num == 2) {
            mf_cursor s;
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(err, &f, "TensorShapeProto dim");
            int64_t *d = (int64_t *)mf_vec_push(&v, sizeof *d, a, err, f.off);
            if (d == NULL) return 1;
            *d = 0;
            mf_cursor_init(&s, f.p, f.n, f.off, err);
            while ((rr = mf_pb_next(&s, &g, depth + 1)) == 1)
                if (g.num == 1 && mf_pb_get_i64(&g, d, err, "TensorShapeProto dim size")) return 1;
            if (rr < 0) return 1;
        } else if (f.num == 3) {
            uint64_t u;
            if (mf_pb_get_u64(&f, &u, err, "TensorShapeProto unknown_rank")) return 1;
            unknown = u != 0;
        }
    }
    if (r < 0) return 1;
    if (v.len > MAX_RANK)
        return mf_fail(err, MF_ERR_LIMIT, mf_tell(c), "TensorFlow shape with %zu dimensions (at most %d are supported)",
                       v.len, MAX_RANK);
    *ndim = unknown ? -1 : (int32_t)v.len;
    *dims = (int64_t *)v.items;
    return 0;
}

/* A shape that must be fully known: element count with overflow checks. */
static int known_numel(mf_error *err, uint64_t off, int32_t ndim, const int64_t *dims, const char *what, uint64_t *out) {
    if (ndim < 0) return mf_fail(err, MF_ERR_CORRUPT, off, "%s has an unknown rank", what);
    uint64_t n = 1;
    for (int32_t i = 0; i < ndim; i++) {
        if (dims[i] < 0)
            return mf_fail(err, MF_ERR_CORRUPT, off, "%s has a negative dimension (%lld)", what, (long long)dims[i]);
        if (mf_mul_u64(n, (uint64_t)dims[i], &n)) return mf_fail(err, MF_ERR_CORRUPT, off, "%s: element count overflows", what);
    }
    *out = n;
    return 0;
}

/* TensorProto: dtype 1, tensor_shape 2, tensor_content 4, typed fields 5-13, 16-18. */
static int parse_tensor(tf_ctx *x, mf_cursor *c, int depth, mf_tf_tensor *t) {
    if (too_deep(x, depth, mf_tell(c))) return 1;
    mf_pb_field f;
    int r;
    int32_t ndim = 0;
    int64_t *dims = NULL;
    uint64_t counts[19] = {0}, content_off = 0, content_len = 0, str_bytes = 0, last_str = 0, f8_len = 0, f8_off = 0;
    t->msg_off = mf_tell(c);
    t->msg_len = (uint64_t)(c->end - c->pos);
    while ((r = mf_pb_next(c, &f, depth)) == 1) {
        switch (f.num) {
        case 1:
            if (mf_pb_get_i32(&f, &t->tf_dtype, x->err, "TensorProto dtype")) return 1;
            break;
        case 2: {
            mf_cursor s;
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "TensorProto tensor_shape");
            mf_cursor_init(&s, f.p, f.n, f.off, x->err);
            if (parse_shape(x->a, x->err, &s, depth + 1, &ndim, &dims)) return 1;
            break;
        }
        case 4:
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "TensorProto tensor_content");
            content_off = f.off;
            content_len = f.n;
            break;
        case 8:
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "TensorProto string_val");
            counts[8]++;
            str_bytes += f.n;
            last_str = f.n;
            break;
        case 18:
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "TensorProto float8_val");
            f8_len = f.n; /* a bytes field: the last one wins */
            f8_off = f.off;
            break;
        case 5: case 6: case 7: case 9: case 10: case 11: case 12: case 13: case 16: case 17: {
            uint64_t k;
            int kind = (f.num == 5 || f.num == 9) ? MF_PB_I32 : (f.num == 6 || f.num == 12) ? MF_PB_I64 : MF_PB_VARINT;
            if (mf_pb_count(&f, kind, &k, x->err, "TensorProto typed field")) return 1;
            counts[f.num] += k;
            break;
        }
        default:
            break;
        }
    }
    if (r < 0) return 1;
    counts[18] = f8_len;
    uint64_t numel;
    if (known_numel(x->err, t->msg_off, ndim, dims, "TensorFlow constant", &numel)) return 1;
    t->ndim = (uint32_t)ndim;
    t->dims = dims;
    t->numel = numel;
    t->dtype = mf_tf_dtype(t->tf_dtype);
    unsigned size = mf_tf_itemsize(t->tf_dtype);
    if (t->tf_dtype == 20 || t->tf_dtype == 21) {
        t->data = MF_TF_DATA_UNSUPPORTED;
        return 0;
    }
    if (t->dtype == MF_DT_UNKNOWN)
        return mf_fail(x->err, MF_ERR_UNSUPPORTED, t->msg_off, "TensorFlow tensor of data type %d, which this reader does not know",
                       (int)t->tf_dtype);
    if (t->dtype == MF_DT_STRING) {
        if (content_len) {
            t->data = MF_TF_DATA_UNSUPPORTED; /* strings encoded in tensor_content: not written by TF's Python */
            return 0;
        }
        t->data = numel ? MF_TF_DATA_STRINGS : MF_TF_DATA_EMPTY;
        t->field = 8;
        t->count = counts[8];
        /* TF fills missing values with the last one (empty strings if there is none) */
        if (counts[8] >= numel) {
            t->nbytes = str_bytes; /* an over-long list: only the first numel count, recomputed on read */
        } else {
            uint64_t extra;
            if (mf_mul_u64(numel - counts[8], last_str, &extra) || mf_add_u64(str_bytes, extra, &t->nbytes))
                return mf_fail(x->err, MF_ERR_CORRUPT, t->msg_off, "TensorFlow string constant too large");
        }
        return 0;
    }
    if (mf_mul_u64(numel, size, &t->nbytes))
        return mf_fail(x->err, MF_ERR_CORRUPT, t->msg_off, "TensorFlow constant: byte size overflows");
    if (content_len) {
        if (content_len != t->nbytes)
            return mf_fail(x->err, MF_ERR_CORRUPT, content_off,
                           "TensorFlow constant has %llu bytes of tensor_content but its dtype and shape need %llu",
                           (unsigned long long)content_len, (unsigned long long)t->nbytes);
        t->data = MF_TF_DATA_CONTENT;
        t->data_off = content_off;
        return 0;
    }
    int kind;
    t->field = typed_field(t->tf_dtype, &kind);
    t->count = counts[t->field];
    if (t->field == 18) t->data_off = f8_off; /* float8_val: count bytes at data_off */
    t->data = numel ? MF_TF_DATA_TYPED : MF_TF_DATA_EMPTY;
    return 0;
}

/* ========================================================================================== */
/* GraphDef                                                                                   */
/* ========================================================================================== */

/* NodeDef.attr entry {key 1, value 2 -> AttrValue {tensor 8}} */
static int parse_attr(tf_ctx *x, mf_cursor *c, int depth, int32_t node) {
    if (too_deep(x, depth, mf_tell(c))) return 1;
    mf_pb_field f, g, tf;
    int r, rr, have = 0;
    mf_pb_str key = {0};
    memset(&tf, 0, sizeof tf);
    while ((r = mf_pb_next(c, &f, depth)) == 1) {
        if (f.num == 1 && mf_pb_get_str(&f, &key, x->err, "NodeDef attr key")) return 1;
        if (f.num == 2) {
            mf_cursor s;
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "NodeDef attr value");
            mf_cursor_init(&s, f.p, f.n, f.off, x->err);
            have = 0;
            while ((rr = mf_pb_next(&s, &g, depth + 1)) == 1) {
                if (g.num == 8) {
                    if (g.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &g, "AttrValue tensor");
                    if (have++)
                        return mf_fail(x->err, MF_ERR_UNSUPPORTED, g.tag_off,
                                       "AttrValue repeats its tensor (a protobuf merge this reader does not perform)");
                    tf = g;
                } else if (g.num >= 1 && g.num <= 10) {
                    have = 0; /* another member of the oneof replaces the tensor */
                }
            }
            if (rr < 0) return 1;
        }
    }
    if (r < 0) return 1;
    if (!have) return 0;
    mf_tf_tensor t;
    mf_cursor s;
    memset(&t, 0, sizeof t);
    t.node = node;
    t.attr = key;
    mf_cursor_init(&s, tf.p, tf.n, tf.off, x->err);
    if (parse_tensor(x, &s, depth + 2, &t)) return 1;
    mf_tf_tensor *slot = (mf_tf_tensor *)mf_vec_push(&x->g->tensors, sizeof *slot, x->a, x->err, tf.off);
    if (slot == NULL) return 1;
    *slot = t;
    return 0;
}

/* NodeDef: name 1, op 2, input 3, device 4, attr 5 */
static int parse_node(tf_ctx *x, mf_cursor *c, int depth) {
    if (too_deep(x, depth, mf_tell(c))) return 1;
    mf_pb_field f;
    int r;
    mf_tf_node n;
    memset(&n, 0, sizeof n);
    n.meta_graph = x->meta_graph;
    n.function = x->function;
    n.offset = mf_tell(c);
    n.op_offset = n.offset;
    mf_cursor again = *c;
    while ((r = mf_pb_next(c, &f, depth)) == 1) {
        switch (f.num) {
        case 1:
            if (mf_pb_get_str(&f, &n.name, x->err, "NodeDef name")) return 1;
            break;
        case 2:
            if (mf_pb_get_str(&f, &n.op, x->err, "NodeDef op")) return 1;
            n.op_offset = f.off;
            break;
        case 3:
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "NodeDef input");
            n.n_inputs++;
            break;
        case 4:
            if (mf_pb_get_str(&f, &n.device, x->err, "NodeDef device")) return 1;
            break;
        default:
            break;
        }
    }
    if (r < 0) return 1;
    mf_tf_node *slot = (mf_tf_node *)mf_vec_push(&x->g->nodes, sizeof *slot, x->a, x->err, n.offset);
    if (slot == NULL) return 1;
    *slot = n;
    int32_t idx = (int32_t)(x->g->nodes.len - 1);
    c = &again;
    while ((r = mf_pb_next(c, &f, depth)) == 1) {
        if (f.num != 5) continue;
        mf_cursor s;
        if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "NodeDef attr");
        mf_cursor_init(&s, f.p, f.n, f.off, x->err);
        if (parse_attr(x, &s, depth + 1, idx)) return 1;
    }
    return r < 0;
}

/* FunctionDef: signature 1 (OpDef {name 1}), node_def 3 */
static int parse_function(tf_ctx *x, mf_cursor *c, int depth, uint64_t offset) {
    if (too_deep(x, depth, mf_tell(c))) return 1;
    mf_pb_field f, g;
    int r, rr;
    mf_tf_function *fn = (mf_tf_function *)mf_vec_push(&x->g->functions, sizeof *fn, x->a, x->err, offset);
    if (fn == NULL) return 1;
    memset(fn, 0, sizeof *fn);
    fn->meta_graph = x->meta_graph;
    fn->offset = offset;
    int32_t idx = (int32_t)(x->g->functions.len - 1);
    int32_t saved = x->function;
    x->function = idx;
    while ((r = mf_pb_next(c, &f, depth)) == 1) {
        mf_cursor s;
        if (f.num == 1) {
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "FunctionDef signature");
            mf_cursor_init(&s, f.p, f.n, f.off, x->err);
            while ((rr = mf_pb_next(&s, &g, depth + 1)) == 1)
                if (g.num == 1 &&
                    mf_pb_get_str(&g, &((mf_tf_function *)x->g->functions.items)[idx].name, x->err, "OpDef name"))
                    return 1;
            if (rr < 0) return 1;
        } else if (f.num == 3) {
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "FunctionDef node_def");
            mf_cursor_init(&s, f.p, f.n, f.off, x->err);
            if (parse_node(x, &s, depth + 1)) return 1;
            ((mf_tf_function *)x->g->functions.items)[idx].n_nodes++;
        }
    }
    x->function = saved;
    return r < 0;
}

/* GraphDef: node 1, library 2 (FunctionDefLibrary {function 1}), versions 4 {producer 1, min_consumer 2} */
static int parse_graph(tf_ctx *x, mf_cursor *c, int depth, int32_t *producer, int32_t *min_consumer) {
    if (too_deep(x, depth, mf_tell(c))) return 1;
    mf_pb_field f, g;
    int r, rr;
    while ((r = mf_pb_next(c, &f, depth)) == 1) {
        mf_cursor s;
        switch (f.num) {
        case 1:
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "GraphDef node");
            mf_cursor_init(&s, f.p, f.n, f.off, x->err);
            if (parse_node(x, &s, depth + 1)) return 1;
            break;
        case 2:
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "GraphDef library");
            mf_cursor_init(&s, f.p, f.n, f.off, x->err);
            while ((rr = mf_pb_next(&s, &g, depth + 1)) == 1) {
                if (g.num != 1) continue;
                mf_cursor t;
                if (g.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &g, "FunctionDefLibrary function");
                mf_cursor_init(&t, g.p, g.n, g.off, x->err);
                if (parse_function(x, &t, depth + 2, g.off)) return 1;
            }
            if (rr < 0) return 1;
            break;
        case 4:
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "GraphDef versions");
            mf_cursor_init(&s, f.p, f.n, f.off, x->err);
            while ((rr = mf_pb_next(&s, &g, depth + 1)) == 1) {
                if (g.num == 1 && mf_pb_get_i32(&g, producer, x->err, "VersionDef producer")) return 1;
                if (g.num == 2 && mf_pb_get_i32(&g, min_consumer, x->err, "VersionDef min_consumer")) return 1;
            }
            if (rr < 0) return 1;
            break;
        default:
            break;
        }
    }
    return r < 0;
}

int mf_tf_parse_graphdef(const uint8_t *buf, size_t len, uint64_t base, mf_arena *a, mf_tf_graph *out, mf_error *err) {
    tf_ctx x = {a, err, out, -1, -1};
    mf_cursor c;
    memset(out, 0, sizeof *out);
    mf_cursor_init(&c, buf, len, base, err);
    if (parse_graph(&x, &c, 0, &out->producer, &out->min_consumer)) return err->code;
    return MF_OK;
}

/* ========================================================================================== */
/* SavedModel                                                                                 */
/* ========================================================================================== */

/* TensorInfo: name 1, dtype 2, tensor_shape 3, coo_sparse 4 {values_tensor_name 1}, composite_tensor 5 */
static int parse_sig_tensor(tf_ctx *x, mf_cursor *c, int depth, mf_tf_sig_tensor *t) {
    mf_pb_field f, g;
    int r, rr;
    t->ndim = -1;
    while ((r = mf_pb_next(c, &f, depth)) == 1) {
        mf_cursor s;
        switch (f.num) {
        case 1:
            if (mf_pb_get_str(&f, &t->name, x->err, "TensorInfo name")) return 1;
            t->encoding = 1;
            break;
        case 2:
            if (mf_pb_get_i32(&f, &t->tf_dtype, x->err, "TensorInfo dtype")) return 1;
            break;
        case 3:
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "TensorInfo tensor_shape");
            mf_cursor_init(&s, f.p, f.n, f.off, x->err);
            if (parse_shape(x->a, x->err, &s, depth + 1, &t->ndim, &t->dims)) return 1;
            break;
        case 4:
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "TensorInfo coo_sparse");
            t->encoding = 4;
            mf_cursor_init(&s, f.p, f.n, f.off, x->err);
            while ((rr = mf_pb_next(&s, &g, depth + 1)) == 1)
                if (g.num == 1 && mf_pb_get_str(&g, &t->name, x->err, "CooSparse values_tensor_name")) return 1;
            if (rr < 0) return 1;
            break;
        case 5:
            t->encoding = 5;
            break;
        default:
            break;
        }
    }
    return r < 0;
}

/* map<string, TensorInfo> entry {key 1, value 2} */
static int parse_sig_map_entry(tf_ctx *x, mf_cursor *c, int depth, int32_t sig, int role) {
    if (too_deep(x, depth, mf_tell(c))) return 1;
    mf_pb_field f;
    int r;
    mf_tf_sig_tensor t;
    memset(&t, 0, sizeof t);
    t.signature = sig;
    t.role = role;
    t.ndim = -1;
    uint64_t off = mf_tell(c);
    while ((r = mf_pb_next(c, &f, depth)) == 1) {
        if (f.num == 1 && mf_pb_get_str(&f, &t.key, x->err, "signature map key")) return 1;
        if (f.num == 2) {
            mf_cursor s;
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "signature map value");
            mf_cursor_init(&s, f.p, f.n, f.off, x->err);
            if (parse_sig_tensor(x, &s, depth + 1, &t)) return 1;
        }
    }
    if (r < 0) return 1;
    mf_tf_sig_tensor *slot = (mf_tf_sig_tensor *)mf_vec_push(&x->g->sig_tensors, sizeof *slot, x->a, x->err, off);
    if (slot == NULL) return 1;
    *slot = t;
    return 0;
}

/* signature_def entry {key 1, value 2 -> SignatureDef {inputs 1, outputs 2, method_name 3}} */
static int parse_signature(tf_ctx *x, mf_cursor *c, int depth) {
    if (too_deep(x, depth, mf_tell(c))) return 1;
    mf_pb_field f, g;
    int r, rr;
    uint64_t off = mf_tell(c);
    mf_tf_signature *sg = (mf_tf_signature *)mf_vec_push(&x->g->signatures, sizeof *sg, x->a, x->err, off);
    if (sg == NULL) return 1;
    memset(sg, 0, sizeof *sg);
    sg->meta_graph = x->meta_graph;
    int32_t idx = (int32_t)(x->g->signatures.len - 1);
    while ((r = mf_pb_next(c, &f, depth)) == 1) {
        mf_tf_signature *cur = (mf_tf_signature *)x->g->signatures.items + idx;
        if (f.num == 1 && mf_pb_get_str(&f, &cur->key, x->err, "signature_def key")) return 1;
        if (f.num != 2) continue;
        mf_cursor s;
        if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "signature_def value");
        mf_cursor_init(&s, f.p, f.n, f.off, x->err);
        while ((rr = mf_pb_next(&s, &g, depth + 1)) == 1) {
            if (g.num == 1 || g.num == 2) {
                mf_cursor t;
                if (g.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &g, "SignatureDef inputs/outputs");
                mf_cursor_init(&t, g.p, g.n, g.off, x->err);
                if (parse_sig_map_entry(x, &t, depth + 2, idx, g.num == 1 ? 0 : 1)) return 1;
            } else if (g.num == 3) {
                cur = (mf_tf_signature *)x->g->signatures.items + idx;
                if (mf_pb_get_str(&g, &cur->method, x->err, "SignatureDef method_name")) return 1;
            }
        }
        if (rr < 0) return 1;
    }
    return r < 0;
}

/* MetaGraphDef: meta_info_def 1 {tags 4, tensorflow_version 5, tensorflow_git_version 6},
 * graph_def 2, signature_def 5 */
static int parse_meta_graph(tf_ctx *x, mf_cursor *c, int depth, uint64_t offset) {
    if (too_deep(x, depth, mf_tell(c))) return 1;
    mf_pb_field f, g;
    int r, rr;
    mf_tf_meta_graph *mg = (mf_tf_meta_graph *)mf_vec_push(&x->g->meta_graphs, sizeof *mg, x->a, x->err, offset);
    if (mg == NULL) return 1;
    memset(mg, 0, sizeof *mg);
    mg->offset = offset;
    mg->first_tag = (uint32_t)x->g->tags.len;
    int32_t idx = (int32_t)(x->g->meta_graphs.len - 1);
    x->meta_graph = idx;
#define MG ((mf_tf_meta_graph *)x->g->meta_graphs.items + idx)
    while ((r = mf_pb_next(c, &f, depth)) == 1) {
        mf_cursor s;
        switch (f.num) {
        case 1:
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "MetaGraphDef meta_info_def");
            mf_cursor_init(&s, f.p, f.n, f.off, x->err);
            while ((rr = mf_pb_next(&s, &g, depth + 1)) == 1) {
                if (g.num == 4) {
                    mf_pb_str *tag = (mf_pb_str *)mf_vec_push(&x->g->tags, sizeof *tag, x->a, x->err, g.off);
                    if (tag == NULL || mf_pb_get_str(&g, tag, x->err, "MetaInfoDef tags")) return 1;
                    if (x->g->tags.len - 1 != MG->first_tag + MG->n_tags)
                        return mf_fail(x->err, MF_ERR_CORRUPT, g.off, "MetaGraphDef tags interleaved with another meta graph");
                    MG->n_tags++;
                } else if (g.num == 5) {
                    if (mf_pb_get_str(&g, &MG->tf_version, x->err, "MetaInfoDef tensorflow_version")) return 1;
                } else if (g.num == 6) {
                    if (mf_pb_get_str(&g, &MG->tf_git_version, x->err, "MetaInfoDef tensorflow_git_version")) return 1;
                }
            }
            if (rr < 0) return 1;
            break;
        case 2: {
            int32_t producer = 0, min_consumer = 0;
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "MetaGraphDef graph_def");
            mf_cursor_init(&s, f.p, f.n, f.off, x->err);
            if (parse_graph(x, &s, depth + 1, &producer, &min_consumer)) return 1;
            MG->has_graph = 1;
            MG->producer = producer;
            break;
        }
        case 5:
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "MetaGraphDef signature_def");
            mf_cursor_init(&s, f.p, f.n, f.off, x->err);
            if (parse_signature(x, &s, depth + 1)) return 1;
            break;
        default:
            break;
        }
    }
#undef MG
    return r < 0;
}

int mf_tf_parse_saved_model(const uint8_t *buf, size_t len, uint64_t base, mf_arena *a, mf_tf_graph *out,
                            mf_error *err) {
    tf_ctx x = {a, err, out, -1, -1};
    mf_cursor c, s;
    mf_pb_field f;
    int r;
    memset(out, 0, sizeof *out);
    out->is_saved_model = 1;
    mf_cursor_init(&c, buf, len, base, err);
    while ((r = mf_pb_next(&c, &f, 0)) == 1) {
        if (f.num == 1) {
            if (mf_pb_get_i64(&f, &out->schema_version, err, "SavedModel saved_model_schema_version")) return err->code;
        } else if (f.num == 2) {
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(err, &f, "SavedModel meta_graphs");
            mf_cursor_init(&s, f.p, f.n, f.off, err);
            if (parse_meta_graph(&x, &s, 1, f.off)) return err->code;
        }
    }
    if (r < 0) return err->code;
    return MF_OK;
}

/* ========================================================================================== */
/* Tensor bundles                                                                             */
/* ========================================================================================== */

/* BundleHeaderProto: num_shards 1, endianness 2, version 3 {producer 1} */
static int parse_header(const uint8_t *p, size_t n, uint64_t off, mf_tf_bundle *b, mf_error *err) {
    mf_cursor c, s;
    mf_pb_field f, g;
    int r, rr;
    int32_t endian = 0;
    mf_cursor_init(&c, p, n, off, err);
    while ((r = mf_pb_next(&c, &f, 0)) == 1) {
        if (f.num == 1 && mf_pb_get_i32(&f, &b->num_shards, err, "BundleHeaderProto num_shards")) return 1;
        if (f.num == 2 && mf_pb_get_i32(&f, &endian, err, "BundleHeaderProto endianness")) return 1;
        if (f.num == 3) {
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(err, &f, "BundleHeaderProto version");
            mf_cursor_init(&s, f.p, f.n, f.off, err);
            while ((rr = mf_pb_next(&s, &g, 1)) == 1)
                if (g.num == 1 && mf_pb_get_i32(&g, &b->producer, err, "VersionDef producer")) return 1;
            if (rr < 0) return 1;
        }
    }
    if (r < 0) return 1;
    if (endian != 0 && endian != 1)
        return mf_fail(err, MF_ERR_CORRUPT, off, "tensor bundle header has endianness %d (0 little, 1 big)", (int)endian);
    if (b->num_shards < 0)
        return mf_fail(err, MF_ERR_CORRUPT, off, "tensor bundle header has %d shards", (int)b->num_shards);
    b->big_endian = endian;
    return 0;
}

/* BundleEntryProto: dtype 1, shape 2, shard_id 3, offset 4, size 5, crc32c 6 (fixed32), slices 7 */
static int parse_entry(const uint8_t *p, size_t n, uint64_t off, mf_arena *a, mf_tf_entry *e, mf_error *err) {
    mf_cursor c, s;
    mf_pb_field f;
    int r;
    int32_t ndim = 0;
    int64_t offset = 0, size = 0;
    mf_cursor_init(&c, p, n, off, err);
    while ((r = mf_pb_next(&c, &f, 0)) == 1) {
        switch (f.num) {
        case 1:
            if (mf_pb_get_i32(&f, &e->tf_dtype, err, "BundleEntryProto dtype")) return 1;
            break;
        case 2:
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(err, &f, "BundleEntryProto shape");
            mf_cursor_init(&s, f.p, f.n, f.off, err);
            if (parse_shape(a, err, &s, 1, &ndim, &e->dims)) return 1;
            break;
        case 3:
            if (mf_pb_get_i32(&f, &e->shard, err, "BundleEntryProto shard_id")) return 1;
            break;
        case 4:
            if (mf_pb_get_i64(&f, &offset, err, "BundleEntryProto offset")) return 1;
            break;
        case 5:
            if (mf_pb_get_i64(&f, &size, err, "BundleEntryProto size")) return 1;
            break;
        case 6:
            if (f.wt != MF_PB_I32) return mf_pb_bad_type(err, &f, "BundleEntryProto crc32c");
            e->crc32c = (uint32_t)f.v;
            e->has_crc = 1;
            break;
        case 7:
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(err, &f, "BundleEntryProto slices");
            e->n_slices++;
            break;
        default:
            break;
        }
    }
    if (r < 0) return 1;
    if (offset < 0 || size < 0)
        return mf_fail(err, MF_ERR_CORRUPT, off, "tensor bundle entry has a negative offset or size");
    e->offset = (uint64_t)offset;
    e->size = (uint64_t)size;
    if (known_numel(err, off, ndim, e->dims, "tensor bundle entry", &e->numel)) return 1;
    e->ndim = (uint32_t)ndim;
    e->dtype = mf_tf_dtype(e->tf_dtype);
    return 0;
}

/* ---- OrderedCode (TF core/lib/strings/ordered_code.cc), as used in slice keys ---------------- */

/* WriteNumIncreasing: a length byte (0-8) then that many big-endian bytes. */
static int oc_num(mf_cursor *c, uint64_t *out) {
    uint8_t n;
    const uint8_t *p;
    if (mf_u8(c, &n, "slice key number")) return 1;
    if (n > 8) return mf_fail(c->err, MF_ERR_CORRUPT, mf_tell(c) - 1, "slice key number of %u bytes", (unsigned)n);
    if (mf_take(c, n, &p, "slice key number")) return 1;
    uint64_t v = 0;
    for (uint8_t i = 0; i < n; i++) v = (v << 8) | p[i];
    *out = v;
    return 0;
}

/* WriteString: 0x00 -> 00 ff, 0xff -> ff 00, terminated by 00 01. */
static int oc_string(mf_cursor *c, mf_arena *a, const uint8_t **out, uint32_t *out_len) {
    const uint8_t *start = c->pos;
    size_t n = 0;
    uint8_t *dst = (uint8_t *)mf_arena_alloc(a, mf_remaining(c) + 1, c->err, mf_tell(c));
    if (dst == NULL) return 1;
    for (;;) {
        if (c->end - c->pos < 2)
            return mf_fail(c->err, MF_ERR_TRUNCATED, mf_tell(c), "slice key name not terminated");
        uint8_t b = c->pos[0];
        if (b == 0x00 || b == 0xff) {
            uint8_t e = c->pos[1];
            c->pos += 2;
            if (b == 0x00 && e == 0x01) break;
            if ((b == 0x00 && e != 0xff) || (b == 0xff && e != 0x00))
                return mf_fail(c->err, MF_ERR_CORRUPT, mf_tell(c) - 2, "slice key name has an invalid escape");
            dst[n++] = b;
        } else {
            dst[n++] = b;
            c->pos++;
        }
    }
    (void)start;
    if (n > 0xffffffffu) return mf_fail(c->err, MF_ERR_LIMIT, mf_tell(c), "slice key name too long");
    *out = dst;
    *out_len = (uint32_t)n;
    return 0;
}

/* WriteSignedNumIncreasing: L leading header bits (ones for >= 0, zeros for < 0) give the
 * length; the rest is the two's complement value, sign-extended. */
static int oc_signed(mf_cursor *c, int64_t *out) {
    static const uint8_t hdr[11][2] = {{0, 0}, {0x80, 0}, {0xc0, 0}, {0xe0, 0}, {0xf0, 0}, {0xf8, 0},
                                       {0xfc, 0}, {0xfe, 0}, {0xff, 0}, {0xff, 0x80}, {0xff, 0xc0}};
    uint64_t at = mf_tell(c);
    if (mf_need(c, 1, "slice key extent")) return 1;
    uint8_t b0 = c->pos[0];
    uint8_t x = b0 & 0x80 ? b0 : (uint8_t)~b0;
    unsigned len = 0;
    while (len < 8 && (x & (0x80 >> len))) len++;
    if (len == 8) {
        if (mf_need(c, 2, "slice key extent")) return 1;
        uint8_t b1 = c->pos[1];
        uint8_t y = b0 & 0x80 ? b1 : (uint8_t)~b1;
        unsigned more = 0;
        while (more < 2 && (y & (0x80 >> more))) more++;
        len += more;
    }
    if (len == 0 || len > 10) return mf_fail(c->err, MF_ERR_CORRUPT, at, "slice key extent has an invalid length");
    const uint8_t *p;
    if (mf_take(c, len, &p, "slice key extent")) return 1;
    uint8_t buf[10];
    memcpy(buf, p, len);
    buf[0] ^= hdr[len][0];
    if (len > 1) buf[1] ^= hdr[len][1];
    int neg = (buf[0] & 0x80) != 0;
    uint64_t v = neg ? UINT64_MAX : 0;
    for (unsigned i = 0; i < len; i++) {
        if (len - i > 8 && buf[i] != (neg ? 0xff : 0x00))
            return mf_fail(c->err, MF_ERR_CORRUPT, at, "slice key extent does not fit 64 bits");
        v = (v << 8) | buf[i];
    }
    *out = (int64_t)v;
    return 0;
}

/* A slice key (first byte 0) and its BundleEntryProto value. */
static int parse_slice(const mf_sst_entry *kv, mf_arena *a, mf_tf_slice *s, mf_error *err) {
    mf_cursor c;
    uint64_t zero, rank;
    mf_cursor_init(&c, kv->key, kv->key_len, kv->value_off, err);
    if (oc_num(&c, &zero) || oc_string(&c, a, &s->name, &s->name_len) || oc_num(&c, &rank)) return 1;
    if (zero != 0 || rank > MAX_RANK)
        return mf_fail(err, MF_ERR_CORRUPT, kv->value_off, "slice key with an invalid prefix or rank");
    s->ndim = (uint32_t)rank;
    s->start = (int64_t *)mf_arena_calloc(a, rank ? rank : 1, sizeof(int64_t), err, kv->value_off);
    s->length = (int64_t *)mf_arena_calloc(a, rank ? rank : 1, sizeof(int64_t), err, kv->value_off);
    if (s->start == NULL || s->length == NULL) return 1;
    for (uint64_t d = 0; d < rank; d++)
        if (oc_signed(&c, &s->start[d]) || oc_signed(&c, &s->length[d])) return 1;
    if (c.pos != c.end) return mf_fail(err, MF_ERR_CORRUPT, kv->value_off, "slice key has trailing bytes");
    mf_tf_entry e;
    memset(&e, 0, sizeof e);
    if (parse_entry(kv->value, kv->value_len, kv->value_off, a, &e, err)) return 1;
    s->tf_dtype = e.tf_dtype;
    s->shard = e.shard;
    s->offset = e.offset;
    s->size = e.size;
    s->has_crc = e.has_crc;
    s->crc32c = e.crc32c;
    s->entry_off = kv->value_off;
    return 0;
}

int mf_tf_parse_bundle(const uint8_t *buf, size_t len, mf_arena *a, int verify_blocks, mf_tf_bundle *out,
                       mf_error *err) {
    mf_vec kv = {0};
    memset(out, 0, sizeof *out);
    if (mf_sst_read(buf, len, a, verify_blocks, &kv, &out->sst, err)) return err->code;
    mf_sst_entry *e = (mf_sst_entry *)kv.items;
    if (kv.len == 0 || e[0].key_len != 0)
        return mf_fail(err, MF_ERR_CORRUPT, kv.len ? e[0].value_off : 0,
                       "SSTable without a tensor bundle header (the empty key): not a TensorFlow checkpoint index");
    if (parse_header(e[0].value, e[0].value_len, e[0].value_off, out, err)) return err->code;
    for (size_t i = 1; i < kv.len; i++) {
        if (e[i].key[0] == '\0') { /* slice keys of partitioned variables (OrderedCode) */
            mf_tf_slice *sl = (mf_tf_slice *)mf_vec_push(&out->slices, sizeof *sl, a, err, e[i].value_off);
            if (sl == NULL) return err->code;
            memset(sl, 0, sizeof *sl);
            if (parse_slice(&e[i], a, sl, err)) return err->code;
            if (sl->shard < 0 || sl->shard >= out->num_shards)
                return mf_fail(err, MF_ERR_CORRUPT, sl->entry_off, "tensor slice is in shard %d of a bundle with %d shards",
                               (int)sl->shard, (int)out->num_shards);
            continue;
        }
        mf_tf_entry *t = (mf_tf_entry *)mf_vec_push(&out->entries, sizeof *t, a, err, e[i].value_off);
        if (t == NULL) return err->code;
        memset(t, 0, sizeof *t);
        t->key = e[i].key;
        t->key_len = e[i].key_len;
        t->entry_off = e[i].value_off;
        if (parse_entry(e[i].value, e[i].value_len, e[i].value_off, a, t, err)) return err->code;
        int kl = (int)(t->key_len > 120 ? 120 : t->key_len);
        if (t->shard >= out->num_shards || t->shard < 0)
            return mf_fail(err, MF_ERR_CORRUPT, t->entry_off, "tensor '%.*s' is in shard %d of a bundle with %d shards", kl,
                           (const char *)t->key, (int)t->shard, (int)out->num_shards);
        if (t->n_slices) continue; /* the full tensor has no bytes of its own */
        unsigned size = mf_tf_itemsize(t->tf_dtype);
        if (t->dtype == MF_DT_UNKNOWN && t->tf_dtype != 21)
            return mf_fail(err, MF_ERR_UNSUPPORTED, t->entry_off, "tensor '%.*s' has data type %d, which this reader does not know",
                           kl, (const char *)t->key, (int)t->tf_dtype);
        if (size) {
            uint64_t want;
            if (mf_mul_u64(t->numel, size, &want) || want != t->size)
                return mf_fail(err, MF_ERR_CORRUPT, t->entry_off, "tensor '%.*s' stores %llu bytes but its dtype and shape need %llu",
                               kl, (const char *)t->key, (unsigned long long)t->size,
                               (unsigned long long)(t->numel * (uint64_t)size));
        } else if (t->dtype == MF_DT_STRING && t->numel > 0 && t->size < t->numel + 4) {
            return mf_fail(err, MF_ERR_CORRUPT, t->entry_off, "string tensor '%.*s' of %llu elements stores only %llu bytes",
                           kl, (const char *)t->key, (unsigned long long)t->numel, (unsigned long long)t->size);
        }
    }
    return MF_OK;
}

/* c is over the tensor's bytes; reads the lengths and the length checksum. */
static int string_lengths(mf_cursor *c, uint64_t numel, int big_endian, uint64_t *lens, uint32_t *crc_out) {
    uint32_t crc = 0;
    for (uint64_t i = 0; i < numel; i++) {
        uint64_t n;
        uint8_t fixed[8];
        if (mf_pb_varint(c, &n, "bundle string length")) return 1;
        lens[i] = n;
        size_t w = n > 0xffffffffu ? 8 : 4;
        for (size_t k = 0; k < w; k++) fixed[big_endian ? w - 1 - k : k] = (uint8_t)(n >> (8 * k));
        crc = mf_crc32c(crc, fixed, w);
    }
    uint32_t stored;
    if (mf_u32le(c, &stored, "bundle string length checksum")) return 1;
    if (big_endian) stored = (stored >> 24) | ((stored >> 8) & 0xff00) | ((stored << 8) & 0xff0000) | (stored << 24);
    if (mf_crc_mask(crc) != stored)
        return mf_fail(c->err, MF_ERR_CORRUPT, mf_tell(c) - 4, "bundle string lengths checksum mismatch");
    *crc_out = crc;
    return 0;
}

int mf_tf_bundle_strings(const uint8_t *data, size_t len, uint64_t base, uint64_t numel, int big_endian,
                         uint64_t *offs, uint64_t *lens, mf_error *err) {
    mf_cursor c;
    uint32_t crc;
    mf_cursor_init(&c, data, len, base, err);
    if (numel > len) return mf_fail(err, MF_ERR_CORRUPT, base, "bundle string tensor: %llu strings in %zu bytes",
                                    (unsigned long long)numel, len);
    if (string_lengths(&c, numel, big_endian, lens, &crc)) return err->code;
    uint64_t pos = (uint64_t)(c.pos - c.start);
    for (uint64_t i = 0; i < numel; i++) {
        if (lens[i] > len - pos)
            return mf_fail(err, MF_ERR_TRUNCATED, base + pos, "bundle string %llu of %llu bytes runs past the tensor's data",
                           (unsigned long long)i, (unsigned long long)lens[i]);
        offs[i] = pos;
        pos += lens[i];
    }
    if (pos != len)
        return mf_fail(err, MF_ERR_CORRUPT, base + pos, "bundle string tensor leaves %llu bytes unused",
                       (unsigned long long)(len - pos));
    return MF_OK;
}

int mf_tf_bundle_strings_crc(const uint8_t *data, size_t len, uint64_t base, uint64_t numel, int big_endian,
                             uint32_t *masked, mf_error *err) {
    mf_cursor c;
    uint32_t crc = 0;
    mf_cursor_init(&c, data, len, base, err);
    if (numel > len) return mf_fail(err, MF_ERR_CORRUPT, base, "bundle string tensor: %llu strings in %zu bytes",
                                    (unsigned long long)numel, len);
    /* the writer checksums each length as a fixed-width integer in its byte order ... */
    for (uint64_t i = 0; i < numel; i++) {
        uint64_t n;
        uint8_t fixed[8];
        if (mf_pb_varint(&c, &n, "bundle string length")) return err->code;
        size_t w = n > 0xffffffffu ? 8 : 4;
        for (size_t k = 0; k < w; k++) fixed[big_endian ? w - 1 - k : k] = (uint8_t)(n >> (8 * k));
        crc = mf_crc32c(crc, fixed, w);
    }
    /* ... then the stored length checksum and the string bytes as they lie in the file */
    *masked = mf_crc_mask(mf_crc32c(crc, c.pos, mf_remaining(&c)));
    return MF_OK;
}
