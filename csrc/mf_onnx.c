/*
 * mf_onnx.c - ONNX ModelProto walker (see mf_onnx.h).
 *
 * Non-repeated sub-messages that appear twice are merged by protobuf. We follow that for
 * ModelProto.graph (both occurrences feed the same scope, so repeated fields concatenate and
 * the last name wins) and refuse it where merging would change a tensor (a sparse tensor's
 * values/indices, an attribute's t), which no writer produces.
 */
#include "mf_onnx.h"

#include <stdlib.h>
#include <string.h>

typedef struct onnx_ctx {
    mf_arena *a;
    mf_error *err;
    mf_onnx_model *m;
} onnx_ctx;

#define MAX_RANK 64

/* a hint to fetch the bytes `ahead` past p, which the walk will reach soon (records are read in
 * file order). The address is formed as an integer: it may lie past the buffer, where a prefetch
 * does nothing, but pointer arithmetic would be undefined. */
#if defined(__GNUC__) || defined(__clang__)
#define MF_PREFETCH(p, ahead) __builtin_prefetch((const void *)((uintptr_t)(p) + (ahead)))
#else
#define MF_PREFETCH(p, ahead) ((void)0)
#endif

/* ========================================================================================== */
/* Data types                                                                                 */
/* ========================================================================================== */

static const struct {
    int dtype;
    const char *name;
} onnx_types[MF_ONNX_MAX_TYPE + 1] = {
    [0] = {MF_DT_UNKNOWN, "undefined"},
    [1] = {MF_DT_FLOAT32, "float"},
    [2] = {MF_DT_UINT8, "uint8"},
    [3] = {MF_DT_INT8, "int8"},
    [4] = {MF_DT_UINT16, "uint16"},
    [5] = {MF_DT_INT16, "int16"},
    [6] = {MF_DT_INT32, "int32"},
    [7] = {MF_DT_INT64, "int64"},
    [8] = {MF_DT_STRING, "string"},
    [9] = {MF_DT_BOOL, "bool"},
    [10] = {MF_DT_FLOAT16, "float16"},
    [11] = {MF_DT_FLOAT64, "double"},
    [12] = {MF_DT_UINT32, "uint32"},
    [13] = {MF_DT_UINT64, "uint64"},
    [14] = {MF_DT_COMPLEX64, "complex64"},
    [15] = {MF_DT_COMPLEX128, "complex128"},
    [16] = {MF_DT_BFLOAT16, "bfloat16"},
    [17] = {MF_DT_FLOAT8_E4M3FN, "float8e4m3fn"},
    [18] = {MF_DT_FLOAT8_E4M3FNUZ, "float8e4m3fnuz"},
    [19] = {MF_DT_FLOAT8_E5M2, "float8e5m2"},
    [20] = {MF_DT_FLOAT8_E5M2FNUZ, "float8e5m2fnuz"},
    [21] = {MF_DT_UINT4, "uint4"},
    [22] = {MF_DT_INT4, "int4"},
    [23] = {MF_DT_FLOAT4_E2M1FN, "float4e2m1"},
    [24] = {MF_DT_FLOAT8_E8M0FNU, "float8e8m0"},
    [25] = {MF_DT_UINT2, "uint2"},
    [26] = {MF_DT_INT2, "int2"},
    [27] = {MF_DT_FLOAT6_E2M3FN, "float6e2m3"},
    [28] = {MF_DT_FLOAT6_E3M2FN, "float6e3m2"},
};

int mf_onnx_dtype(int32_t t) { return t > 0 && t <= MF_ONNX_MAX_TYPE ? onnx_types[t].dtype : MF_DT_UNKNOWN; }

const char *mf_onnx_type_name(int32_t t) { return t >= 0 && t <= MF_ONNX_MAX_TYPE ? onnx_types[t].name : "undefined"; }

/* The typed field that holds values of type t when raw_data is absent. */
static uint32_t typed_field(int32_t t) {
    switch (t) {
    case 1: case 14: return 4;   /* float_data: FLOAT, COMPLEX64 */
    case 7: return 7;            /* int64_data */
    case 11: case 15: return 10; /* double_data: DOUBLE, COMPLEX128 */
    case 12: case 13: return 11; /* uint64_data: UINT32, UINT64 */
    case 8: return 6;            /* string_data */
    default: return 5;           /* int32_data: everything narrower, bit patterns of 16/8/4/2-bit floats */
    }
}

static const char *field_name(uint32_t f) {
    switch (f) {
    case 4: return "float_data";
    case 5: return "int32_data";
    case 6: return "string_data";
    case 7: return "int64_data";
    case 10: return "double_data";
    case 11: return "uint64_data";
    default: return "?";
    }
}

/* Number of typed values numel elements of type t take (complex: 2; 4-bit: 2 per value; 2-bit: 4). */
static int typed_count(int32_t t, uint64_t numel, uint64_t *out) {
    switch (t) {
    case 14: case 15: return mf_mul_u64(numel, 2, out);
    case 21: case 22: case 23: *out = numel / 2 + numel % 2; return 0;
    case 25: case 26: *out = numel / 4 + (numel % 4 != 0); return 0;
    default: *out = numel; return 0;
    }
}

/* ========================================================================================== */
/* Helpers                                                                                    */
/* ========================================================================================== */

static int too_deep(onnx_ctx *x, int depth, uint64_t off) {
    if (depth <= MF_PB_MAX_DEPTH) return 0;
    mf_fail(x->err, MF_ERR_LIMIT, off, "ONNX messages nested deeper than %d levels", MF_PB_MAX_DEPTH);
    return 1;
}

static const char *clip(mf_pb_str s, int *n) {
    *n = (int)(s.n > 120 ? 120 : s.n);
    return (const char *)s.p;
}

/* StringStringEntryProto {key 1, value 2} */
static int parse_kv(onnx_ctx *x, mf_cursor *c, int depth, mf_onnx_kv *kv) {
    mf_pb_field f;
    int r;
    memset(kv, 0, sizeof *kv);
    while ((r = mf_pb_next(c, &f, depth)) == 1) {
        if (f.num == 1 && mf_pb_get_str(&f, &kv->key, x->err, "ONNX string entry key")) return 1;
        if (f.num == 2 && mf_pb_get_str(&f, &kv->value, x->err, "ONNX string entry value")) return 1;
    }
    return r < 0;
}

/* Append the int64 values of one occurrence of a repeated int64 field (packed or not). */
static int push_i64s(onnx_ctx *x, const mf_pb_field *f, mf_vec *v, const char *what) {
    if (f->wt == MF_PB_VARINT) {
        int64_t *d = (int64_t *)mf_vec_push(v, sizeof *d, x->a, x->err, f->off);
        if (d == NULL) return 1;
        *d = (int64_t)f->v;
        return 0;
    }
    if (f->wt != MF_PB_LEN) return mf_pb_bad_type(x->err, f, what);
    mf_cursor c;
    mf_cursor_init(&c, f->p, f->n, f->off, x->err);
    while (c.pos < c.end) {
        uint64_t u;
        if (mf_pb_varint(&c, &u, what)) return 1;
        int64_t *d = (int64_t *)mf_vec_push(v, sizeof *d, x->a, x->err, mf_tell(&c));
        if (d == NULL) return 1;
        *d = (int64_t)u;
    }
    return 0;
}

/* Append one occurrence of TensorProto.dims (packed or not) to a fixed array of MAX_RANK;
 * *n counts every value, also those beyond the array (the caller reports them). */
static int take_dims(onnx_ctx *x, const mf_pb_field *f, int64_t *dims, uint64_t *n) {
    if (f->wt == MF_PB_VARINT) {
        if (*n < MAX_RANK) dims[*n] = (int64_t)f->v;
        (*n)++;
        return 0;
    }
    if (f->wt != MF_PB_LEN) return mf_pb_bad_type(x->err, f, "ONNX tensor dims");
    mf_cursor c;
    mf_cursor_init(&c, f->p, f->n, f->off, x->err);
    while (c.pos < c.end) {
        uint64_t u;
        if (mf_pb_varint(&c, &u, "ONNX tensor dims")) return 1;
        if (*n < MAX_RANK) dims[*n] = (int64_t)u;
        (*n)++;
    }
    return 0;
}

/* ========================================================================================== */
/* TensorProto                                                                                */
/* ========================================================================================== */

/* A tensor while it is parsed: the record and everything it may need beyond it. */
typedef struct tensor_full {
    mf_onnx_tensor t;
    mf_onnx_tensor_more m;
} tensor_full;

/* c is over a TensorProto; t arrives with source/scope/node/attr set and is completed here. */
static int parse_tensor(onnx_ctx *x, mf_cursor *c, int depth, tensor_full *ft) {
    mf_onnx_tensor *t = &ft->t;
    mf_onnx_tensor_more *mo = &ft->m;
    uint64_t numel;
    if (too_deep(x, depth, mf_tell(c))) return 1;
    mf_pb_field f;
    int r;
    mf_vec ext = {0};
    int64_t dims[MAX_RANK];
    uint64_t ndims = 0;
    /* only the slots of the repeated value fields (4-7, 10, 11) are used: zeroing those alone
     * keeps a block clear out of the per-tensor path */
    uint64_t counts[12], str_bytes = 0, raw_off = 0, raw_len = 0;
    counts[4] = counts[5] = counts[6] = counts[7] = counts[10] = counts[11] = 0;
    dims[0] = dims[1] = dims[2] = dims[3] = 0; /* copied whole for rank <= 4 */
    int has_raw = 0;
    int32_t location = 0;
    uint64_t msg_off = mf_tell(c);
    mo->msg_off = msg_off;
    mo->msg_len = (uint64_t)(c->end - c->pos);
    t->data_type = 0;
    while ((r = mf_pb_next(c, &f, depth)) == 1) {
        switch (f.num) {
        case 1:
            if (take_dims(x, &f, dims, &ndims)) return 1;
            break;
        case 2:
            if (mf_pb_get_i32(&f, &t->data_type, x->err, "ONNX tensor data_type")) return 1;
            break;
        case 3: {
            mf_cursor s;
            mf_pb_field g;
            int rr;
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "ONNX tensor segment");
            mf_pb_sub(c, &f, &s);
            mo->has_segment = 1;
            while ((rr = mf_pb_next(&s, &g, depth + 1)) == 1) {
                if (g.num == 1 && mf_pb_get_i64(&g, &mo->seg_begin, x->err, "ONNX segment begin")) return 1;
                if (g.num == 2 && mf_pb_get_i64(&g, &mo->seg_end, x->err, "ONNX segment end")) return 1;
            }
            if (rr < 0) return 1;
            break;
        }
        case 4: case 5: case 7: case 10: case 11: {
            uint64_t k;
            int kind = f.num == 4 ? MF_PB_I32 : f.num == 10 ? MF_PB_I64 : MF_PB_VARINT;
            if (mf_pb_count(&f, kind, &k, x->err, field_name(f.num))) return 1;
            counts[f.num] += k; /* bounded by the message length: no overflow */
            break;
        }
        case 6:
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "ONNX tensor string_data");
            counts[6]++;
            str_bytes += f.n;
            break;
        case 8:
            if (mf_pb_get_str(&f, &t->name, x->err, "ONNX tensor name")) return 1;
            break;
        case 9:
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "ONNX tensor raw_data");
            has_raw = 1;
            raw_off = f.off;
            raw_len = f.n;
            break;
        case 13: {
            mf_cursor s;
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "ONNX tensor external_data");
            mf_onnx_kv *kv = (mf_onnx_kv *)mf_vec_push(&ext, sizeof *kv, x->a, x->err, f.off);
            if (kv == NULL) return 1;
            mf_pb_sub(c, &f, &s);
            if (parse_kv(x, &s, depth + 1, kv)) return 1;
            break;
        }
        case 14:
            if (mf_pb_get_i32(&f, &location, x->err, "ONNX tensor data_location")) return 1;
            break;
        default:
            break;
        }
    }
    if (r < 0) return 1;

    int nl;
    const char *nm = clip(t->name, &nl);
    if (ndims > MAX_RANK)
        return mf_fail(x->err, MF_ERR_LIMIT, msg_off, "ONNX tensor '%.*s' has %llu dimensions (at most %d are supported)",
                       nl, nm, (unsigned long long)ndims, MAX_RANK);
    t->ndim = (uint32_t)ndims;
    t->dims = NULL;
    if (ndims) {
        /* nearly every tensor has rank <= 4: a fixed-size copy compiles to a few moves, where a
         * variable-length memcpy of a few bytes costs more than the rest of the record */
        size_t room = ndims <= 4 ? 4 : (size_t)ndims;
        t->dims = (int64_t *)mf_arena_alloc(x->a, room * sizeof(int64_t), x->err, msg_off);
        if (t->dims == NULL) return 1;
        if (ndims <= 4)
            memcpy(t->dims, dims, 4 * sizeof(int64_t)); /* slots past ndims are never read */
        else
            memcpy(t->dims, dims, ndims * sizeof(int64_t));
    }
    mo->ext = (mf_onnx_kv *)ext.items;
    mo->n_ext = (uint32_t)ext.len;
    numel = 1;
    for (uint32_t i = 0; i < t->ndim; i++) {
        if (t->dims[i] < 0)
            return mf_fail(x->err, MF_ERR_CORRUPT, msg_off, "ONNX tensor '%.*s' has a negative dimension (%lld)", nl, nm,
                           (long long)t->dims[i]);
        if (mf_mul_u64(numel, (uint64_t)t->dims[i], &numel))
            return mf_fail(x->err, MF_ERR_CORRUPT, msg_off, "ONNX tensor '%.*s': element count overflows", nl, nm);
    }
    if (t->data_type == 0)
        return mf_fail(x->err, MF_ERR_CORRUPT, msg_off, "ONNX tensor '%.*s' has data type UNDEFINED", nl, nm);
    t->dtype = (uint8_t)mf_onnx_dtype(t->data_type);
    if (t->dtype == MF_DT_UNKNOWN)
        return mf_fail(x->err, MF_ERR_UNSUPPORTED, msg_off, "ONNX tensor '%.*s' has data type %d, which this reader does not know",
                       nl, nm, (int)t->data_type);
    if (t->dtype == MF_DT_STRING) {
        t->nbytes = str_bytes;
    } else {
        uint64_t bits;
        if (mf_mul_u64(numel, mf_dtype_bits(t->dtype), &bits))
            return mf_fail(x->err, MF_ERR_CORRUPT, msg_off, "ONNX tensor '%.*s': byte size overflows", nl, nm);
        t->nbytes = bits / 8 + (bits % 8 != 0);
    }

    if (location == 1) {
        t->data = MF_ONNX_DATA_EXTERNAL;
    } else if (t->dtype == MF_DT_STRING) {
        if (counts[6] != numel)
            return mf_fail(x->err, MF_ERR_CORRUPT, msg_off, "ONNX string tensor '%.*s' holds %llu strings but its shape needs %llu",
                           nl, nm, (unsigned long long)counts[6], (unsigned long long)numel);
        t->data = MF_ONNX_DATA_STRINGS;
        mo->count = counts[6];
    } else if (has_raw) {
        if (raw_len != t->nbytes)
            return mf_fail(x->err, MF_ERR_CORRUPT, raw_off,
                           "ONNX tensor '%.*s' has %llu bytes of raw_data but its type and shape need %llu", nl, nm,
                           (unsigned long long)raw_len, (unsigned long long)t->nbytes);
        t->data = MF_ONNX_DATA_RAW;
        t->data_off = raw_off;
    } else {
        uint32_t fld = typed_field(t->data_type);
        uint64_t want;
        if (typed_count(t->data_type, numel, &want))
            return mf_fail(x->err, MF_ERR_CORRUPT, msg_off, "ONNX tensor '%.*s': element count overflows", nl, nm);
        if (counts[fld] != want)
            return mf_fail(x->err, MF_ERR_CORRUPT, msg_off,
                           "ONNX tensor '%.*s' holds %llu values in %s but its type and shape need %llu", nl, nm,
                           (unsigned long long)counts[fld], field_name(fld), (unsigned long long)want);
        t->data = want ? MF_ONNX_DATA_TYPED : MF_ONNX_DATA_EMPTY;
        mo->field = fld;
        mo->count = want;
    }
    return 0;
}

/* Parse a TensorProto field f of the message under c and append its record. */
static int add_tensor(onnx_ctx *x, mf_cursor *c, const mf_pb_field *f, int depth, const tensor_full *proto,
                      int32_t *index_out) {
    mf_cursor s;
    tensor_full ft = *proto;
    if (f->wt != MF_PB_LEN) return mf_pb_bad_type(x->err, f, "ONNX TensorProto field");
    mf_pb_sub(c, f, &s);
    if (parse_tensor(x, &s, depth, &ft)) return 1;
    mf_onnx_tensor *slot = (mf_onnx_tensor *)mf_vec_push(&x->m->tensors, sizeof *slot, x->a, x->err, f->off);
    if (slot == NULL) return 1;
    *slot = ft.t;
    slot->more = NULL;
    if (ft.t.source != MF_ONNX_SRC_INITIALIZER || ft.t.data != MF_ONNX_DATA_RAW || ft.m.has_segment) {
        slot->more = (mf_onnx_tensor_more *)mf_arena_alloc(x->a, sizeof *slot->more, x->err, f->off);
        if (slot->more == NULL) return 1;
        *slot->more = ft.m;
    }
    if (index_out) *index_out = (int32_t)(x->m->tensors.len - 1);
    return 0;
}

/* Room for n more items in v without moving them again (a cheap count came first). */
static int reserve(onnx_ctx *x, mf_vec *v, size_t size, uint64_t n, uint64_t off) {
    uint64_t want, bytes;
    if (n == 0 || v->cap - v->len >= n) return 0;
    if (mf_add_u64(v->len, n, &want) || mf_mul_u64(want, size, &bytes) || bytes > SIZE_MAX)
        return mf_fail(x->err, MF_ERR_LIMIT, off, "too many ONNX records");
    void *items = mf_arena_alloc(x->a, (size_t)bytes, x->err, off);
    if (items == NULL) return 1;
    if (v->len) memcpy(items, v->items, v->len * size);
    v->items = items;
    v->cap = (size_t)want;
    return 0;
}

/* SparseTensorProto {values 1, indices 2, dims 3}: two tensor records that name each other. */
static int parse_sparse(onnx_ctx *x, mf_cursor *c, int depth, const tensor_full *proto, int values_src,
                        int indices_src) {
    if (too_deep(x, depth, mf_tell(c))) return 1;
    mf_pb_field f, fv, fi;
    int r, have_v = 0, have_i = 0;
    memset(&fv, 0, sizeof fv);
    memset(&fi, 0, sizeof fi);
    uint64_t at = mf_tell(c);
    mf_vec dims = {0};
    while ((r = mf_pb_next(c, &f, depth)) == 1) {
        if (f.num == 1 || f.num == 2) {
            int *have = f.num == 1 ? &have_v : &have_i;
            if ((*have)++)
                return mf_fail(x->err, MF_ERR_UNSUPPORTED, f.tag_off,
                               "ONNX sparse tensor repeats its %s (a protobuf merge this reader does not perform)",
                               f.num == 1 ? "values" : "indices");
            if (f.num == 1) fv = f;
            else fi = f;
        } else if (f.num == 3 && push_i64s(x, &f, &dims, "ONNX sparse tensor dims")) {
            return 1;
        }
    }
    if (r < 0) return 1;
    if (!have_v) return mf_fail(x->err, MF_ERR_CORRUPT, at, "ONNX sparse tensor without values");
    if (dims.len > MAX_RANK) return mf_fail(x->err, MF_ERR_LIMIT, at, "ONNX sparse tensor with more than %d dimensions", MAX_RANK);
    for (size_t i = 0; i < dims.len; i++)
        if (((int64_t *)dims.items)[i] < 0) return mf_fail(x->err, MF_ERR_CORRUPT, at, "ONNX sparse tensor with a negative dimension");
    tensor_full t = *proto;
    t.m.sparse_ndim = (uint32_t)dims.len;
    t.m.sparse_dims = (int64_t *)dims.items;
    t.m.partner = -1;
    int32_t vi = -1, ii = -1;
    t.t.source = (uint8_t)values_src;
    if (add_tensor(x, c, &fv, depth + 1, &t, &vi)) return 1;
    if (have_i) {
        t.t.source = (uint8_t)indices_src;
        t.m.partner = vi;
        if (add_tensor(x, c, &fi, depth + 1, &t, &ii)) return 1;
        ((mf_onnx_tensor *)x->m->tensors.items)[vi].more->partner = ii; /* sparse records always have more */
    }
    return 0;
}

/* ========================================================================================== */
/* Types (ValueInfoProto.type)                                                                */
/* ========================================================================================== */

typedef struct sbuf {
    char buf[256];
    size_t n;
} sbuf;

static void sb_add(sbuf *s, const char *p, size_t n) {
    size_t room = sizeof s->buf - 1 - s->n;
    if (n > room) n = room;
    if (n) memcpy(s->buf + s->n, p, n); /* p may be NULL for an absent string */
    s->n += n;
    s->buf[s->n] = '\0';
}

static void sb_str(sbuf *s, const char *p) { sb_add(s, p, strlen(p)); }

static int parse_type(onnx_ctx *x, mf_cursor *c, int depth, sbuf *sb, mf_onnx_value *v);

/* TensorShapeProto {dim 1 -> Dimension {dim_value 1 | dim_param 2}} into v->dims */
static int parse_shape(onnx_ctx *x, mf_cursor *c, int depth, mf_onnx_value *v) {
    if (too_deep(x, depth, mf_tell(c))) return 1;
    mf_pb_field f, g;
    int r, rr;
    mf_vec dims = {0};
    while ((r = mf_pb_next(c, &f, depth)) == 1) {
        if (f.num != 1) continue;
        if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "ONNX shape dim");
        mf_onnx_dim *d = (mf_onnx_dim *)mf_vec_push(&dims, sizeof *d, x->a, x->err, f.off);
        if (d == NULL) return 1;
        memset(d, 0, sizeof *d);
        mf_cursor s;
        mf_pb_sub(c, &f, &s);
        while ((rr = mf_pb_next(&s, &g, depth + 1)) == 1) {
            if (g.num == 1) {
                if (mf_pb_get_i64(&g, &d->value, x->err, "ONNX dim_value")) return 1;
                d->kind = 1;
            } else if (g.num == 2) {
                if (mf_pb_get_str(&g, &d->param, x->err, "ONNX dim_param")) return 1;
                d->kind = 2;
            }
        }
        if (rr < 0) return 1;
    }
    if (r < 0) return 1;
    if (dims.len > 0x7fffffff) return mf_fail(x->err, MF_ERR_LIMIT, mf_tell(c), "ONNX shape with too many dimensions");
    v->ndim = (int32_t)dims.len;
    v->dims = (mf_onnx_dim *)dims.items;
    return 0;
}

/* Tensor / SparseTensor {elem_type 1, shape 2} */
static int parse_tensor_type(onnx_ctx *x, mf_cursor *c, int depth, sbuf *sb, mf_onnx_value *v, const char *kind) {
    mf_pb_field f;
    int r;
    int32_t elem = 0;
    mf_onnx_value tmp;
    memset(&tmp, 0, sizeof tmp);
    tmp.ndim = -1;
    while ((r = mf_pb_next(c, &f, depth)) == 1) {
        if (f.num == 1) {
            if (mf_pb_get_i32(&f, &elem, x->err, "ONNX elem_type")) return 1;
        } else if (f.num == 2) {
            mf_cursor s;
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "ONNX tensor shape");
            mf_pb_sub(c, &f, &s);
            if (parse_shape(x, &s, depth + 1, &tmp)) return 1;
        }
    }
    if (r < 0) return 1;
    sb_str(sb, kind);
    sb_str(sb, "(");
    sb_str(sb, mf_onnx_type_name(elem));
    sb_str(sb, ")");
    if (v != NULL) {
        v->elem_type = elem;
        v->ndim = tmp.ndim;
        v->dims = tmp.dims;
    }
    return 0;
}

/* A message whose field `num` is a nested TypeProto: "<kind>(<inner>)". */
static int parse_wrapped(onnx_ctx *x, mf_cursor *c, int depth, sbuf *sb, const char *kind, uint32_t num) {
    mf_pb_field f;
    int r, found = 0;
    size_t mark = sb->n;
    while ((r = mf_pb_next(c, &f, depth)) == 1) {
        if (f.num != num) continue;
        mf_cursor s;
        if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "ONNX nested type");
        sb->n = mark;
        sb->buf[mark] = '\0';
        sb_str(sb, kind);
        sb_str(sb, "(");
        mf_pb_sub(c, &f, &s);
        if (parse_type(x, &s, depth + 1, sb, NULL)) return 1;
        sb_str(sb, ")");
        found = 1;
    }
    if (r < 0) return 1;
    if (!found) {
        sb_str(sb, kind);
        sb_str(sb, "(?)");
    }
    return 0;
}

/* Map {key_type 1, value_type 2} */
static int parse_map(onnx_ctx *x, mf_cursor *c, int depth, sbuf *sb) {
    mf_pb_field f, vf;
    int r, have_v = 0;
    memset(&vf, 0, sizeof vf);
    int32_t key = 0;
    while ((r = mf_pb_next(c, &f, depth)) == 1) {
        if (f.num == 1 && mf_pb_get_i32(&f, &key, x->err, "ONNX map key_type")) return 1;
        if (f.num == 2) {
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "ONNX map value_type");
            vf = f;
            have_v = 1;
        }
    }
    if (r < 0) return 1;
    sb_str(sb, "map(");
    sb_str(sb, mf_onnx_type_name(key));
    sb_str(sb, ",");
    if (have_v) {
        mf_cursor s;
        mf_pb_sub(c, &vf, &s);
        if (parse_type(x, &s, depth + 1, sb, NULL)) return 1;
    } else {
        sb_str(sb, "?");
    }
    sb_str(sb, ")");
    return 0;
}

/* Opaque {domain 1, name 2} */
static int parse_opaque(onnx_ctx *x, mf_cursor *c, int depth, sbuf *sb) {
    mf_pb_field f;
    int r;
    mf_pb_str dom = {0}, name = {0};
    while ((r = mf_pb_next(c, &f, depth)) == 1) {
        if (f.num == 1 && mf_pb_get_str(&f, &dom, x->err, "ONNX opaque domain")) return 1;
        if (f.num == 2 && mf_pb_get_str(&f, &name, x->err, "ONNX opaque name")) return 1;
    }
    if (r < 0) return 1;
    sb_str(sb, "opaque(");
    sb_add(sb, (const char *)dom.p, dom.n > 64 ? 64 : dom.n);
    sb_str(sb, ",");
    sb_add(sb, (const char *)name.p, name.n > 64 ? 64 : name.n);
    sb_str(sb, ")");
    return 0;
}

/* TypeProto oneof: tensor_type 1, sequence_type 4, map_type 5, opaque_type 7, sparse_tensor_type 8,
 * optional_type 9 (the last one present wins, as protobuf's oneof does). v is set at top level. */
static int parse_type(onnx_ctx *x, mf_cursor *c, int depth, sbuf *sb, mf_onnx_value *v) {
    if (too_deep(x, depth, mf_tell(c))) return 1;
    mf_pb_field f;
    int r;
    size_t mark = sb->n;
    while ((r = mf_pb_next(c, &f, depth)) == 1) {
        if (f.num != 1 && f.num != 4 && f.num != 5 && f.num != 7 && f.num != 8 && f.num != 9) continue;
        if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "ONNX TypeProto");
        mf_cursor s;
        mf_pb_sub(c, &f, &s);
        sb->n = mark;
        sb->buf[mark] = '\0';
        if (v != NULL) {
            v->type_kind = (int)f.num;
            v->elem_type = 0;
            v->ndim = -1;
            v->dims = NULL;
        }
        int bad;
        switch (f.num) {
        case 1: bad = parse_tensor_type(x, &s, depth + 1, sb, v, "tensor"); break;
        case 8: bad = parse_tensor_type(x, &s, depth + 1, sb, v, "sparse_tensor"); break;
        case 4: bad = parse_wrapped(x, &s, depth + 1, sb, "seq", 1); break;
        case 9: bad = parse_wrapped(x, &s, depth + 1, sb, "optional", 1); break;
        case 5: bad = parse_map(x, &s, depth + 1, sb); break;
        default: bad = parse_opaque(x, &s, depth + 1, sb); break;
        }
        if (bad) return 1;
    }
    return r < 0;
}

/* ValueInfoProto {name 1, type 2} */
static int parse_value(onnx_ctx *x, mf_cursor *c, int depth, int32_t scope, int role) {
    if (too_deep(x, depth, mf_tell(c))) return 1;
    mf_pb_field f;
    int r;
    mf_onnx_value v;
    sbuf sb;
    memset(&v, 0, sizeof v);
    sb.n = 0;
    sb.buf[0] = '\0';
    v.scope = scope;
    v.role = role;
    v.ndim = -1;
    v.offset = mf_tell(c);
    while ((r = mf_pb_next(c, &f, depth)) == 1) {
        if (f.num == 1) {
            if (mf_pb_get_str(&f, &v.name, x->err, "ONNX value name")) return 1;
        } else if (f.num == 2) {
            mf_cursor s;
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "ONNX value type");
            mf_pb_sub(c, &f, &s);
            /* a repeated non-repeated message merges; the last type wins for our summary */
            sb.n = 0;
            sb.buf[0] = '\0';
            if (parse_type(x, &s, depth + 1, &sb, &v)) return 1;
        }
    }
    if (r < 0) return 1;
    v.type_str = mf_arena_strdup(x->a, sb.buf, sb.n, x->err, v.offset);
    if (v.type_str == NULL) return 1;
    mf_onnx_value *slot = (mf_onnx_value *)mf_vec_push(&x->m->values, sizeof *slot, x->a, x->err, v.offset);
    if (slot == NULL) return 1;
    *slot = v;
    return 0;
}

/* A plain name as a value (FunctionProto input/output). */
static int push_name_value(onnx_ctx *x, const mf_pb_field *f, int32_t scope, int role) {
    mf_onnx_value v;
    memset(&v, 0, sizeof v);
    v.scope = scope;
    v.role = role;
    v.ndim = -1;
    v.type_str = "";
    v.offset = f->off;
    if (mf_pb_get_str(f, &v.name, x->err, "ONNX function input/output")) return 1;
    mf_onnx_value *slot = (mf_onnx_value *)mf_vec_push(&x->m->values, sizeof *slot, x->a, x->err, f->off);
    if (slot == NULL) return 1;
    *slot = v;
    return 0;
}

/* ========================================================================================== */
/* Graphs, nodes, attributes, functions                                                       */
/* ========================================================================================== */

static int parse_graph(onnx_ctx *x, mf_cursor *c, int depth, int32_t scope);

static int32_t new_scope(onnx_ctx *x, int kind, int32_t parent, int32_t node, mf_pb_str attr, uint32_t index,
                         uint64_t offset) {
    mf_onnx_scope *s = (mf_onnx_scope *)mf_vec_push(&x->m->scopes, sizeof *s, x->a, x->err, offset);
    if (s == NULL) return -1;
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->parent = parent;
    s->node = node;
    s->attr = attr;
    s->index = index;
    s->offset = offset;
    return (int32_t)(x->m->scopes.len - 1);
}

static mf_onnx_scope *scope_at(onnx_ctx *x, int32_t i) { return (mf_onnx_scope *)x->m->scopes.items + i; }

/* A GraphProto held by field f (of the message under c) becomes a new scope. */
static int sub_graph(onnx_ctx *x, mf_cursor *c, const mf_pb_field *f, int depth, int kind, int32_t parent,
                     int32_t node, mf_pb_str attr, uint32_t index) {
    mf_cursor s;
    if (f->wt != MF_PB_LEN) return mf_pb_bad_type(x->err, f, "ONNX GraphProto field");
    int32_t sc = new_scope(x, kind, parent, node, attr, index, f->off);
    if (sc < 0) return 1;
    mf_pb_sub(c, f, &s);
    return parse_graph(x, &s, depth, sc);
}

/* AttributeProto: name 1, t 5, g 6, tensors 10, graphs 11, sparse_tensor 22, sparse_tensors 23 */
static int parse_attribute(onnx_ctx *x, mf_cursor *c, int depth, int32_t scope, int32_t node) {
    if (too_deep(x, depth, mf_tell(c))) return 1;
    mf_pb_field f;
    int r;
    mf_pb_str name = {0};
    mf_cursor again = *c;
    while ((r = mf_pb_next(c, &f, depth)) == 1)
        if (f.num == 1 && mf_pb_get_str(&f, &name, x->err, "ONNX attribute name")) return 1;
    if (r < 0) return 1;
    c = &again;
    tensor_full proto;
    memset(&proto, 0, sizeof proto);
    proto.t.source = MF_ONNX_SRC_ATTRIBUTE;
    proto.t.scope = scope;
    proto.m.node = node;
    proto.m.attr = name;
    proto.m.partner = -1;
    uint32_t n_tensors = 0, n_graphs = 0, n_sparse = 0;
    int have_t = 0, have_st = 0;
    while ((r = mf_pb_next(c, &f, depth)) == 1) {
        switch (f.num) {
        case 5:
            if (have_t++)
                return mf_fail(x->err, MF_ERR_UNSUPPORTED, f.tag_off,
                               "ONNX attribute repeats its tensor (a protobuf merge this reader does not perform)");
            proto.m.attr_index = 0;
            if (add_tensor(x, c, &f, depth + 1, &proto, NULL)) return 1;
            break;
        case 10:
            proto.m.attr_index = n_tensors++;
            if (add_tensor(x, c, &f, depth + 1, &proto, NULL)) return 1;
            break;
        case 22:
        case 23: {
            mf_cursor s;
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "ONNX attribute sparse tensor");
            if (f.num == 22 && have_st++)
                return mf_fail(x->err, MF_ERR_UNSUPPORTED, f.tag_off,
                               "ONNX attribute repeats its sparse tensor (a protobuf merge this reader does not perform)");
            proto.m.attr_index = f.num == 22 ? 0 : n_sparse++;
            mf_pb_sub(c, &f, &s);
            if (parse_sparse(x, &s, depth + 1, &proto, MF_ONNX_SRC_ATTR_SPARSE_VALUES, MF_ONNX_SRC_ATTR_SPARSE_INDICES))
                return 1;
            break;
        }
        case 6:
            if (sub_graph(x, c, &f, depth + 1, MF_ONNX_SCOPE_SUBGRAPH, scope, node, name, 0)) return 1;
            break;
        case 11:
            if (sub_graph(x, c, &f, depth + 1, MF_ONNX_SCOPE_SUBGRAPH, scope, node, name, n_graphs++)) return 1;
            break;
        default:
            break;
        }
    }
    return r < 0;
}

/* NodeProto: input 1, output 2, name 3, op_type 4, attribute 5, domain 7. Attributes are read in
 * a second pass so that the node's op_type and outputs are known whatever the field order. */
static int parse_node(onnx_ctx *x, mf_cursor *c, int depth, int32_t scope) {
    if (too_deep(x, depth, mf_tell(c))) return 1;
    mf_pb_field f;
    int r;
    mf_onnx_node n;
    memset(&n, 0, sizeof n);
    n.scope = scope;
    n.offset = mf_tell(c);
    mf_cursor again = *c;
    while ((r = mf_pb_next(c, &f, depth)) == 1) {
        switch (f.num) {
        case 1:
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "ONNX node input");
            n.n_inputs++;
            break;
        case 2:
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "ONNX node output");
            if (n.n_outputs++ == 0 && mf_pb_get_str(&f, &n.output0, x->err, "ONNX node output")) return 1;
            break;
        case 3:
            if (mf_pb_get_str(&f, &n.name, x->err, "ONNX node name")) return 1;
            break;
        case 4:
            if (mf_pb_get_str(&f, &n.op_type, x->err, "ONNX node op_type")) return 1;
            break;
        case 7:
            if (mf_pb_get_str(&f, &n.domain, x->err, "ONNX node domain")) return 1;
            break;
        default:
            break;
        }
    }
    if (r < 0) return 1;
    mf_onnx_node *slot = (mf_onnx_node *)mf_vec_push(&x->m->nodes, sizeof *slot, x->a, x->err, n.offset);
    if (slot == NULL) return 1;
    *slot = n;
    int32_t idx = (int32_t)(x->m->nodes.len - 1);
    scope_at(x, scope)->n_nodes++;
    c = &again;
    while ((r = mf_pb_next(c, &f, depth)) == 1) {
        if (f.num != 5) continue;
        mf_cursor s;
        if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "ONNX node attribute");
        mf_pb_sub(c, &f, &s);
        if (parse_attribute(x, &s, depth + 1, scope, idx)) return 1;
    }
    return r < 0;
}

/* GraphProto: node 1, name 2, initializer 5, doc_string 10, input 11, output 12, sparse_initializer 15 */
static int parse_graph(onnx_ctx *x, mf_cursor *c, int depth, int32_t scope) {
    if (too_deep(x, depth, mf_tell(c))) return 1;
    mf_pb_field f;
    int r;
    tensor_full proto;
    memset(&proto, 0, sizeof proto);
    proto.t.scope = scope;
    proto.m.node = -1;
    proto.m.partner = -1;
    /* a cheap first pass counts the records, so that the arrays are sized once */
    uint64_t n_tensors = 0, n_nodes = 0;
    mf_cursor count = *c;
    while ((r = mf_pb_next(&count, &f, depth)) == 1) {
        MF_PREFETCH(count.pos, 512);
        n_tensors += f.num == 5 ? 1 : f.num == 15 ? 2 : 0;
        n_nodes += f.num == 1;
    }
    if (r < 0) return 1;
    if (reserve(x, &x->m->tensors, sizeof(mf_onnx_tensor), n_tensors, mf_tell(c)) ||
        reserve(x, &x->m->nodes, sizeof(mf_onnx_node), n_nodes, mf_tell(c)))
        return 1;
    while ((r = mf_pb_next(c, &f, depth)) == 1) {
        mf_cursor s;
        switch (f.num) {
        case 1:
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "ONNX graph node");
            mf_pb_sub(c, &f, &s);
            if (parse_node(x, &s, depth + 1, scope)) return 1;
            break;
        case 2:
            if (mf_pb_get_str(&f, &scope_at(x, scope)->name, x->err, "ONNX graph name")) return 1;
            break;
        case 5:
            proto.t.source = MF_ONNX_SRC_INITIALIZER;
            if (add_tensor(x, c, &f, depth + 1, &proto, NULL)) return 1;
            scope_at(x, scope)->n_initializers++;
            break;
        case 10:
            if (scope_at(x, scope)->kind == MF_ONNX_SCOPE_GRAPH &&
                mf_pb_get_str(&f, &x->m->graph_doc, x->err, "ONNX graph doc_string"))
                return 1;
            break;
        case 11:
        case 12:
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "ONNX graph input/output");
            mf_pb_sub(c, &f, &s);
            if (parse_value(x, &s, depth + 1, scope, f.num == 11 ? 0 : 1)) return 1;
            break;
        case 15:
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "ONNX graph sparse_initializer");
            mf_pb_sub(c, &f, &s);
            if (parse_sparse(x, &s, depth + 1, &proto, MF_ONNX_SRC_SPARSE_VALUES, MF_ONNX_SRC_SPARSE_INDICES)) return 1;
            scope_at(x, scope)->n_sparse++;
            break;
        default:
            break;
        }
    }
    return r < 0;
}

/* FunctionProto: name 1, input 4, output 5, node 7, domain 10 */
static int parse_function(onnx_ctx *x, mf_cursor *c, int depth, uint32_t index, uint64_t offset) {
    if (too_deep(x, depth, mf_tell(c))) return 1;
    mf_pb_field f;
    int r;
    int32_t sc = new_scope(x, MF_ONNX_SCOPE_FUNCTION, -1, -1, (mf_pb_str){NULL, 0}, index, offset);
    if (sc < 0) return 1;
    while ((r = mf_pb_next(c, &f, depth)) == 1) {
        mf_cursor s;
        switch (f.num) {
        case 1:
            if (mf_pb_get_str(&f, &scope_at(x, sc)->name, x->err, "ONNX function name")) return 1;
            break;
        case 10:
            if (mf_pb_get_str(&f, &scope_at(x, sc)->domain, x->err, "ONNX function domain")) return 1;
            break;
        case 4:
        case 5:
            if (push_name_value(x, &f, sc, f.num == 4 ? 0 : 1)) return 1;
            break;
        case 7:
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(x->err, &f, "ONNX function node");
            mf_pb_sub(c, &f, &s);
            if (parse_node(x, &s, depth + 1, sc)) return 1;
            break;
        default:
            break;
        }
    }
    return r < 0;
}

/* TrainingInfoProto: initialization 1, algorithm 2 (GraphProtos) */
static int parse_training(onnx_ctx *x, mf_cursor *c, int depth, uint32_t index) {
    if (too_deep(x, depth, mf_tell(c))) return 1;
    static const char init_name[] = "initialization", algo_name[] = "algorithm";
    mf_pb_field f;
    int r;
    while ((r = mf_pb_next(c, &f, depth)) == 1) {
        if (f.num != 1 && f.num != 2) continue;
        mf_pb_str attr = f.num == 1 ? (mf_pb_str){(const uint8_t *)init_name, sizeof init_name - 1}
                                    : (mf_pb_str){(const uint8_t *)algo_name, sizeof algo_name - 1};
        if (sub_graph(x, c, &f, depth + 1, MF_ONNX_SCOPE_TRAINING, -1, -1, attr, index)) return 1;
    }
    return r < 0;
}

/* ========================================================================================== */
/* Entry points                                                                               */
/* ========================================================================================== */

/* 8 bytes at a time, then the tail: any decent mix will do for a table of names */
static uint64_t name_hash(mf_pb_str s, int32_t scope) {
    uint64_t h = 0x9e3779b97f4a7c15ull ^ ((uint64_t)(uint32_t)scope << 32) ^ s.n;
    uint32_t i = 0;
    for (; i + 8 <= s.n; i += 8) h = (h ^ mf_load_u64le(s.p + i)) * 0xff51afd7ed558ccdull, h ^= h >> 32;
    for (; i < s.n; i++) h = (h ^ s.p[i]) * 0x100000001b3ull;
    h ^= h >> 29;
    return h * 0xc4ceb9fe1a85ec53ull;
}

typedef struct dupkey {
    const uint8_t *p;
    uint32_t n;
    int32_t scope;
    uint32_t idx;
} dupkey;

static int cmp_dupkey(const void *a, const void *b) {
    const dupkey *x = (const dupkey *)a, *y = (const dupkey *)b;
    if (x->scope != y->scope) return x->scope < y->scope ? -1 : 1;
    uint32_t n = x->n < y->n ? x->n : y->n;
    int c = n ? memcmp(x->p, y->p, n) : 0;
    if (c) return c;
    if (x->n != y->n) return x->n < y->n ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* The same by sorting: O(n log n) whatever the names (the fallback when hashing degrades). */
static int mark_duplicates_sorted(onnx_ctx *x) {
    mf_onnx_tensor *t = (mf_onnx_tensor *)x->m->tensors.items;
    size_t n = x->m->tensors.len;
    dupkey *k = (dupkey *)mf_arena_alloc(x->a, (n ? n : 1) * sizeof *k, x->err, 0);
    if (k == NULL) return 1;
    for (size_t i = 0; i < n; i++) {
        k[i] = (dupkey){t[i].name.p, t[i].name.n, t[i].scope, (uint32_t)i};
        t[i].dup = 0;
    }
    qsort(k, n, sizeof *k, cmp_dupkey);
    for (size_t i = 1; i < n; i++)
        if (k[i].scope == k[i - 1].scope && k[i].n == k[i - 1].n && (k[i].n == 0 || memcmp(k[i].p, k[i - 1].p, k[i].n) == 0))
            t[k[i].idx].dup = 1;
    return 0;
}

/* Flag records whose (scope, name) repeats an earlier one: the Python layer renames those,
 * and needs no set of its own for the common case of unique names. A hash table does it in
 * one pass; names crafted to collide (long probe runs) switch to sorting. */
static int mark_duplicates(onnx_ctx *x) {
    mf_onnx_tensor *t = (mf_onnx_tensor *)x->m->tensors.items;
    size_t n = x->m->tensors.len, cap = 16;
    while (cap < 2 * n) cap *= 2;
    uint32_t *slots = (uint32_t *)mf_arena_alloc(x->a, cap * sizeof *slots, x->err, 0);
    if (slots == NULL) return 1;
    memset(slots, 0xff, cap * sizeof *slots);
    for (size_t i = 0; i < n; i++) {
        size_t k = (size_t)(name_hash(t[i].name, t[i].scope) & (cap - 1));
        for (unsigned probes = 0;; probes++) {
            uint32_t j = slots[k];
            if (j == UINT32_MAX) {
                slots[k] = (uint32_t)i;
                break;
            }
            if (t[j].scope == t[i].scope && t[j].name.n == t[i].name.n &&
                (t[i].name.n == 0 || memcmp(t[j].name.p, t[i].name.p, t[i].name.n) == 0)) {
                t[i].dup = 1;
                break;
            }
            if (probes == 64) return mark_duplicates_sorted(x);
            k = (k + 1) & (cap - 1);
        }
    }
    return 0;
}

int mf_onnx_parse_model(const uint8_t *buf, size_t len, uint64_t base, mf_arena *a, mf_onnx_model *out,
                        mf_error *err) {
    onnx_ctx ctx = {a, err, out};
    onnx_ctx *x = &ctx;
    mf_cursor c;
    mf_pb_field f;
    int r;
    int32_t main_scope = -1;
    uint32_t n_functions = 0, n_training = 0;
    memset(out, 0, sizeof *out);
    mf_cursor_init(&c, buf, len, base, err);
    while ((r = mf_pb_next(&c, &f, 0)) == 1) {
        mf_cursor s;
        switch (f.num) {
        case 1:
            if (mf_pb_get_i64(&f, &out->ir_version, err, "ONNX ir_version")) return err->code;
            out->has_ir_version = 1;
            break;
        case 2:
            if (mf_pb_get_str(&f, &out->producer_name, err, "ONNX producer_name")) return err->code;
            break;
        case 3:
            if (mf_pb_get_str(&f, &out->producer_version, err, "ONNX producer_version")) return err->code;
            break;
        case 4:
            if (mf_pb_get_str(&f, &out->domain, err, "ONNX domain")) return err->code;
            break;
        case 5:
            if (mf_pb_get_i64(&f, &out->model_version, err, "ONNX model_version")) return err->code;
            out->has_model_version = 1;
            break;
        case 6:
            if (mf_pb_get_str(&f, &out->doc_string, err, "ONNX doc_string")) return err->code;
            break;
        case 7:
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(err, &f, "ONNX model graph");
            if (main_scope < 0) {
                main_scope = new_scope(x, MF_ONNX_SCOPE_GRAPH, -1, -1, (mf_pb_str){NULL, 0}, 0, f.off);
                if (main_scope < 0) return err->code;
            }
            mf_pb_sub(&c, &f, &s);
            if (parse_graph(x, &s, 1, main_scope)) return err->code;
            break;
        case 8: {
            mf_pb_field g;
            int rr;
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(err, &f, "ONNX opset_import");
            mf_onnx_opset *o = (mf_onnx_opset *)mf_vec_push(&out->opsets, sizeof *o, a, err, f.off);
            if (o == NULL) return err->code;
            memset(o, 0, sizeof *o);
            mf_pb_sub(&c, &f, &s);
            while ((rr = mf_pb_next(&s, &g, 1)) == 1) {
                if (g.num == 1 && mf_pb_get_str(&g, &o->domain, err, "ONNX opset domain")) return err->code;
                if (g.num == 2 && mf_pb_get_i64(&g, &o->version, err, "ONNX opset version")) return err->code;
            }
            if (rr < 0) return err->code;
            break;
        }
        case 14: {
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(err, &f, "ONNX metadata_props");
            mf_onnx_kv *kv = (mf_onnx_kv *)mf_vec_push(&out->props, sizeof *kv, a, err, f.off);
            if (kv == NULL) return err->code;
            mf_pb_sub(&c, &f, &s);
            if (parse_kv(x, &s, 1, kv)) return err->code;
            break;
        }
        case 20:
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(err, &f, "ONNX training_info");
            mf_pb_sub(&c, &f, &s);
            if (parse_training(x, &s, 1, n_training++)) return err->code;
            break;
        case 25:
            if (f.wt != MF_PB_LEN) return mf_pb_bad_type(err, &f, "ONNX function");
            mf_pb_sub(&c, &f, &s);
            if (parse_function(x, &s, 1, n_functions++, f.off)) return err->code;
            break;
        default:
            break;
        }
    }
    if (r < 0) return err->code;
    if (out->tensors.len > UINT32_MAX - 1) return mf_fail(err, MF_ERR_LIMIT, 0, "too many ONNX tensors");
    if (mark_duplicates(x)) return err->code;
    return MF_OK;
}

int mf_onnx_parse_tensor(const uint8_t *buf, size_t len, uint64_t base, mf_arena *a, mf_onnx_model *out,
                         mf_error *err) {
    onnx_ctx ctx = {a, err, out};
    mf_cursor c;
    tensor_full t;
    memset(out, 0, sizeof *out);
    memset(&t, 0, sizeof t);
    t.t.source = MF_ONNX_SRC_BARE;
    t.t.scope = -1;
    t.m.node = -1;
    t.m.partner = -1;
    mf_cursor_init(&c, buf, len, base, err);
    if (parse_tensor(&ctx, &c, 0, &t)) return err->code;
    mf_onnx_tensor *slot = (mf_onnx_tensor *)mf_vec_push(&out->tensors, sizeof *slot, a, err, base);
    if (slot == NULL) return err->code;
    *slot = t.t;
    slot->more = (mf_onnx_tensor_more *)mf_arena_alloc(a, sizeof *slot->more, err, base);
    if (slot->more == NULL) return err->code;
    *slot->more = t.m;
    return MF_OK;
}
