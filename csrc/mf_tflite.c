/*
 * mf_tflite.c - TFLite model walker over mf_flatbuf: Model -> buffers, operator codes,
 * subgraphs (tensors, operators), metadata, signature defs, external buffers.
 * Slot numbers and records: mf_tflite.h.
 */
#include "mf_tflite.h"

#include "mf_flatbuf.h"

#include <string.h>

/* ========================================================================================== */
/* Types                                                                                      */
/* ========================================================================================== */

static const int tfl_dtypes[] = {
    MF_DT_FLOAT32,   /* 0 FLOAT32 */
    MF_DT_FLOAT16,   /* 1 FLOAT16 */
    MF_DT_INT32,     /* 2 INT32 */
    MF_DT_UINT8,     /* 3 UINT8 */
    MF_DT_INT64,     /* 4 INT64 */
    MF_DT_STRING,    /* 5 STRING */
    MF_DT_BOOL,      /* 6 BOOL */
    MF_DT_INT16,     /* 7 INT16 */
    MF_DT_COMPLEX64, /* 8 COMPLEX64 */
    MF_DT_INT8,      /* 9 INT8 */
    MF_DT_FLOAT64,   /* 10 FLOAT64 */
    MF_DT_COMPLEX128,/* 11 COMPLEX128 */
    MF_DT_UINT64,    /* 12 UINT64 */
    MF_DT_UNKNOWN,   /* 13 RESOURCE */
    MF_DT_UNKNOWN,   /* 14 VARIANT */
    MF_DT_UINT32,    /* 15 UINT32 */
    MF_DT_UINT16,    /* 16 UINT16 */
    MF_DT_INT4,      /* 17 INT4 (packed two per byte) */
    MF_DT_BFLOAT16,  /* 18 BFLOAT16 */
    MF_DT_INT2,      /* 19 INT2 (packed four per byte) */
    MF_DT_UINT4,     /* 20 UINT4 (packed two per byte) */
};

int mf_tflite_dtype(int type) {
    if (type < 0 || (size_t)type >= sizeof tfl_dtypes / sizeof tfl_dtypes[0]) return MF_DT_UNKNOWN;
    return tfl_dtypes[type];
}

unsigned mf_tflite_type_bits(int type) {
    int dt = mf_tflite_dtype(type);
    return dt == MF_DT_STRING ? 0 : mf_dtype_bits(dt);
}

/* ========================================================================================== */
/* Field helpers: copy vectors into the arena                                                 */
/* ========================================================================================== */

typedef struct walk {
    mf_fb fb;
    mf_arena *a;
    mf_error *err;
} walk;

static int str_field(walk *w, const mf_fb_table *t, unsigned vo, mf_tfl_str *out, const char *what) {
    int present;
    return mf_fb_string(&w->fb, t, vo, &out->s, &out->n, &present, what);
}

static int i32s_field(walk *w, const mf_fb_table *t, unsigned vo, mf_tfl_i32s *out, const char *what) {
    mf_fb_vec v;
    memset(out, 0, sizeof *out);
    if (mf_fb_vector(&w->fb, t, vo, 4, &v, &out->present, what)) return w->err->code;
    if (!out->present || v.n == 0) return MF_OK;
    if (mf_fb_charge(&w->fb, v.n, what) || mf_fb_vec_present(&w->fb, &v, what)) return w->err->code;
    out->v = (int32_t *)mf_arena_alloc(w->a, (size_t)v.n * 4, w->err, mf_fb_at(&w->fb, v.pos));
    if (out->v == NULL) return w->err->code;
    for (uint32_t i = 0; i < v.n; i++) out->v[i] = mf_fb_vec_i32(&w->fb, &v, i);
    out->n = v.n;
    return MF_OK;
}

static int f32s_field(walk *w, const mf_fb_table *t, unsigned vo, float **out, uint32_t *n, const char *what) {
    mf_fb_vec v;
    int present;
    *out = NULL;
    *n = 0;
    if (mf_fb_vector(&w->fb, t, vo, 4, &v, &present, what)) return w->err->code;
    if (!present || v.n == 0) return MF_OK;
    if (mf_fb_charge(&w->fb, v.n, what) || mf_fb_vec_present(&w->fb, &v, what)) return w->err->code;
    *out = (float *)mf_arena_alloc(w->a, (size_t)v.n * 4, w->err, mf_fb_at(&w->fb, v.pos));
    if (*out == NULL) return w->err->code;
    for (uint32_t i = 0; i < v.n; i++) (*out)[i] = mf_fb_vec_f32(&w->fb, &v, i);
    *n = v.n;
    return MF_OK;
}

static int i64s_field(walk *w, const mf_fb_table *t, unsigned vo, int64_t **out, uint32_t *n, const char *what) {
    mf_fb_vec v;
    int present;
    *out = NULL;
    *n = 0;
    if (mf_fb_vector(&w->fb, t, vo, 8, &v, &present, what)) return w->err->code;
    if (!present || v.n == 0) return MF_OK;
    if (mf_fb_charge(&w->fb, v.n, what) || mf_fb_vec_present(&w->fb, &v, what)) return w->err->code;
    *out = (int64_t *)mf_arena_alloc(w->a, (size_t)v.n * 8, w->err, mf_fb_at(&w->fb, v.pos));
    if (*out == NULL) return w->err->code;
    for (uint32_t i = 0; i < v.n; i++) (*out)[i] = mf_fb_vec_i64(&w->fb, &v, i);
    *n = v.n;
    return MF_OK;
}

/* A vector of tables; *n = 0 when absent. */
static int tables_field(walk *w, const mf_fb_table *t, unsigned vo, mf_fb_vec *v, const char *what) {
    int present;
    if (mf_fb_vector(&w->fb, t, vo, 4, v, &present, what)) return w->err->code;
    return MF_OK;
}

static void *alloc_n(walk *w, uint32_t n, size_t size, uint64_t at) {
    if (n == 0) return NULL;
    return mf_arena_calloc(w->a, n, size, w->err, at);
}

/* Every index in v must be in [lo, n). */
static int check_indices(walk *w, const mf_tfl_i32s *v, int32_t lo, uint32_t n, uint64_t at, const char *what) {
    for (uint32_t i = 0; i < v->n; i++)
        if (v->v[i] < lo || (int64_t)v->v[i] >= (int64_t)n)
            return mf_fail(w->err, MF_ERR_CORRUPT, at, "tflite %s names tensor %d but the subgraph has %u tensors",
                           what, v->v[i], n);
    return MF_OK;
}

/* ========================================================================================== */
/* Tensors                                                                                    */
/* ========================================================================================== */

static int quantization(walk *w, const mf_fb_table *qt, mf_tfl_quant **out) {
    mf_tfl_quant *q = (mf_tfl_quant *)mf_arena_calloc(w->a, 1, sizeof *q, w->err, mf_fb_at(&w->fb, qt->pos));
    if (q == NULL) return w->err->code;
    if (f32s_field(w, qt, 4, &q->min, &q->n_min, "quantization min") ||
        f32s_field(w, qt, 6, &q->max, &q->n_max, "quantization max") ||
        f32s_field(w, qt, 8, &q->scale, &q->n_scale, "quantization scale") ||
        i64s_field(w, qt, 10, &q->zero_point, &q->n_zero_point, "quantization zero_point") ||
        mf_fb_i32(&w->fb, qt, 16, 0, &q->quantized_dimension, "quantization quantized_dimension"))
        return w->err->code;
    mf_fb_table d;
    int present;
    if (mf_fb_union(&w->fb, qt, 12, 14, &q->details_type, &d, &present, "quantization details")) return w->err->code;
    if (present && q->details_type == 1) {
        mf_fb_vec v;
        if (mf_fb_vector(&w->fb, &d, 4, 1, &v, &present, "custom quantization")) return w->err->code;
        q->custom_offset = mf_fb_at(&w->fb, v.pos);
        q->custom_len = v.n;
    } else if (present && q->details_type == 2) {
        if (mf_fb_i32(&w->fb, &d, 4, 0, &q->block_scales, "blockwise scales") ||
            mf_fb_i32(&w->fb, &d, 6, 0, &q->block_zero_points, "blockwise zero_points") ||
            mf_fb_i32(&w->fb, &d, 8, 0, &q->block_size, "blockwise block_size"))
            return w->err->code;
    }
    *out = q;
    return MF_OK;
}

/* Count of the Int32Vector / Uint16Vector / Uint8Vector in the union at type_vo / value_vo. */
static int index_vector(walk *w, const mf_fb_table *dm, unsigned type_vo, unsigned value_vo, uint8_t *type,
                        uint32_t *n) {
    mf_fb_table t;
    mf_fb_vec v;
    int present;
    static const uint32_t widths[4] = {0, 4, 2, 1};
    *n = 0;
    if (mf_fb_union(&w->fb, dm, type_vo, value_vo, type, &t, &present, "sparse index vector") || !present)
        return w->err->code;
    if (*type > 3)
        return mf_fail(w->err, MF_ERR_UNSUPPORTED, mf_fb_at(&w->fb, dm->pos), "tflite sparse index vector type %u", *type);
    if (mf_fb_vector(&w->fb, &t, 4, widths[*type], &v, &present, "sparse index values")) return w->err->code;
    *n = v.n;
    return MF_OK;
}

static int sparsity(walk *w, const mf_fb_table *st, mf_tfl_sparsity **out) {
    mf_tfl_sparsity *s = (mf_tfl_sparsity *)mf_arena_calloc(w->a, 1, sizeof *s, w->err, mf_fb_at(&w->fb, st->pos));
    mf_fb_vec dims;
    if (s == NULL) return w->err->code;
    if (i32s_field(w, st, 4, &s->traversal_order, "sparsity traversal_order") ||
        i32s_field(w, st, 6, &s->block_map, "sparsity block_map") ||
        tables_field(w, st, 8, &dims, "sparsity dim_metadata"))
        return w->err->code;
    s->dims = (mf_tfl_dim *)alloc_n(w, dims.n, sizeof *s->dims, mf_fb_at(&w->fb, dims.pos));
    if (dims.n && s->dims == NULL) return w->err->code;
    s->n_dims = dims.n;
    for (uint32_t i = 0; i < dims.n; i++) {
        mf_fb_table dm;
        mf_tfl_dim *d = &s->dims[i];
        if (mf_fb_vec_table(&w->fb, &dims, i, &dm, "dimension metadata") ||
            mf_fb_u8(&w->fb, &dm, 4, 0, &d->format, "dimension format") ||
            mf_fb_i32(&w->fb, &dm, 6, 0, &d->dense_size, "dimension dense_size") ||
            index_vector(w, &dm, 8, 10, &d->segments_type, &d->n_segments) ||
            index_vector(w, &dm, 12, 14, &d->indices_type, &d->n_indices))
            return w->err->code;
    }
    *out = s;
    return MF_OK;
}

/* A tensor whose buffer holds data must have a non-negative shape whose elements fill the
 * buffer exactly (sparse tensors hold fewer values; strings have their own layout). */
static int check_data_size(walk *w, const mf_fb_table *tt, const mf_tfl_model *m, const mf_tfl_tensor *t) {
    uint64_t numel = 1, bits = mf_tflite_type_bits(t->type), need;
    int nl = (int)(t->name.n > 200 ? 200 : t->name.n);
    const char *name = t->name.s ? (const char *)t->name.s : "";
    if (t->buffer == 0 || m->buffers[t->buffer].size == 0) return MF_OK;
    for (uint32_t d = 0; d < t->shape.n; d++) {
        if (t->shape.v[d] < 0)
            return mf_fail(w->err, MF_ERR_CORRUPT, mf_fb_at(&w->fb, tt->pos),
                           "tflite tensor '%.*s' carries data but has a negative dimension %d", nl, name, t->shape.v[d]);
        if (mf_mul_u64(numel, (uint64_t)t->shape.v[d], &numel))
            return mf_fail(w->err, MF_ERR_CORRUPT, mf_fb_at(&w->fb, tt->pos), "tflite tensor '%.*s': element count overflows",
                           nl, name);
    }
    if (t->sparsity != NULL || bits == 0) return MF_OK;
    if (mf_mul_u64(numel, bits, &need) || mf_add_u64(need, 7, &need))
        return mf_fail(w->err, MF_ERR_CORRUPT, mf_fb_at(&w->fb, tt->pos), "tflite tensor '%.*s': byte size overflows", nl,
                       name);
    if (need / 8 != m->buffers[t->buffer].size)
        return mf_fail(w->err, MF_ERR_CORRUPT, mf_fb_at(&w->fb, tt->pos),
                       "tflite tensor '%.*s' needs %llu bytes for its shape and type but its buffer %u holds %llu", nl,
                       name, (unsigned long long)(need / 8), t->buffer,
                       (unsigned long long)m->buffers[t->buffer].size);
    return MF_OK;
}

static int tensor(walk *w, const mf_fb_table *tt, const mf_tfl_model *m, mf_tfl_tensor *t) {
    uint32_t n_buffers = m->n_buffers;
    mf_fb_table sub;
    mf_fb_vec variants;
    int present;
    uint8_t type;
    if (i32s_field(w, tt, 4, &t->shape, "tensor shape") ||
        mf_fb_u8(&w->fb, tt, 6, 0, &type, "tensor type") ||
        mf_fb_u32(&w->fb, tt, 8, 0, &t->buffer, "tensor buffer") ||
        str_field(w, tt, 10, &t->name, "tensor name") ||
        mf_fb_u8(&w->fb, tt, 14, 0, &t->is_variable, "tensor is_variable") ||
        i32s_field(w, tt, 18, &t->shape_signature, "tensor shape_signature") ||
        mf_fb_u8(&w->fb, tt, 20, 0, &t->has_rank, "tensor has_rank") ||
        tables_field(w, tt, 22, &variants, "tensor variant_tensors") ||
        mf_fb_u32(&w->fb, tt, 24, 0, &t->external_buffer, "tensor external_buffer"))
        return w->err->code;
    t->type = (int8_t)type;
    t->n_variant = variants.n;
    if (t->buffer != 0 && t->buffer >= n_buffers)
        return mf_fail(w->err, MF_ERR_CORRUPT, mf_fb_at(&w->fb, tt->pos),
                       "tflite tensor '%.*s' names buffer %u but the model has %u buffers",
                       (int)(t->name.n > 200 ? 200 : t->name.n), t->name.s ? (const char *)t->name.s : "", t->buffer,
                       n_buffers);
    if (mf_fb_subtable(&w->fb, tt, 12, &sub, &present, "tensor quantization")) return w->err->code;
    if (present && quantization(w, &sub, &t->quant)) return w->err->code;
    if (mf_fb_subtable(&w->fb, tt, 16, &sub, &present, "tensor sparsity")) return w->err->code;
    if (present && sparsity(w, &sub, &t->sparsity)) return w->err->code;
    return check_data_size(w, tt, m, t);
}

/* ========================================================================================== */
/* Model                                                                                      */
/* ========================================================================================== */

static int buffers(walk *w, const mf_fb_table *model, mf_tfl_model *m) {
    mf_fb_vec v;
    if (tables_field(w, model, 12, &v, "model buffers")) return w->err->code;
    m->buffers = (mf_tfl_buffer *)alloc_n(w, v.n, sizeof *m->buffers, mf_fb_at(&w->fb, v.pos));
    if (v.n && m->buffers == NULL) return w->err->code;
    m->n_buffers = v.n;
    for (uint32_t i = 0; i < v.n; i++) {
        mf_fb_table bt;
        mf_fb_vec data;
        int present;
        uint64_t off, size;
        mf_tfl_buffer *b = &m->buffers[i];
        if (mf_fb_vec_table(&w->fb, &v, i, &bt, "buffer") ||
            mf_fb_vector(&w->fb, &bt, 4, 1, &data, &present, "buffer data") ||
            mf_fb_u64(&w->fb, &bt, 6, 0, &off, "buffer offset") ||
            mf_fb_u64(&w->fb, &bt, 8, 0, &size, "buffer size"))
            return w->err->code;
        if (off > 1) {
            uint64_t end;
            if (data.n != 0)
                return mf_fail(w->err, MF_ERR_CORRUPT, mf_fb_at(&w->fb, bt.pos),
                               "tflite buffer %u has both inline data and an external offset", i);
            if (mf_add_u64(off, size, &end) || end > w->fb.len)
                return mf_fail(w->err, MF_ERR_TRUNCATED, off,
                               "tflite buffer %u (%llu bytes at offset %llu) runs past the end of the %zu-byte file", i,
                               (unsigned long long)size, (unsigned long long)off, w->fb.len);
            b->offset = off;
            b->size = size;
            b->external = 1;
        } else {
            b->offset = present ? mf_fb_at(&w->fb, data.pos) : 0;
            b->size = data.n;
        }
    }
    return MF_OK;
}

static int opcodes(walk *w, const mf_fb_table *model, mf_tfl_model *m) {
    mf_fb_vec v;
    if (tables_field(w, model, 6, &v, "model operator_codes")) return w->err->code;
    m->opcodes = (mf_tfl_opcode *)alloc_n(w, v.n, sizeof *m->opcodes, mf_fb_at(&w->fb, v.pos));
    if (v.n && m->opcodes == NULL) return w->err->code;
    m->n_opcodes = v.n;
    for (uint32_t i = 0; i < v.n; i++) {
        mf_fb_table ot;
        mf_tfl_opcode *c = &m->opcodes[i];
        if (mf_fb_vec_table(&w->fb, &v, i, &ot, "operator code") ||
            mf_fb_i8(&w->fb, &ot, 4, 0, &c->deprecated, "deprecated_builtin_code") ||
            str_field(w, &ot, 6, &c->custom, "custom_code") ||
            mf_fb_i32(&w->fb, &ot, 8, 1, &c->version, "operator version") ||
            mf_fb_i32(&w->fb, &ot, 10, 0, &c->builtin, "builtin_code"))
            return w->err->code;
        /* schema_utils.cc GetBuiltinCode: the larger of the two fields */
        if (c->deprecated > c->builtin) c->builtin = c->deprecated;
    }
    return MF_OK;
}

static int op(walk *w, const mf_fb_table *ot, uint32_t si, uint32_t n_tensors, const mf_tfl_model *m, mf_tfl_op *o) {
    mf_fb_vec custom;
    int present;
    uint64_t at = mf_fb_at(&w->fb, ot->pos);
    o->subgraph = si;
    if (mf_fb_u32(&w->fb, ot, 4, 0, &o->opcode, "opcode_index") ||
        i32s_field(w, ot, 6, &o->inputs, "operator inputs") ||
        i32s_field(w, ot, 8, &o->outputs, "operator outputs") ||
        mf_fb_u8(&w->fb, ot, 10, 0, &o->options_type, "builtin_options_type") ||
        mf_fb_vector(&w->fb, ot, 14, 1, &custom, &present, "custom_options") ||
        i32s_field(w, ot, 20, &o->intermediates, "operator intermediates") ||
        mf_fb_u64(&w->fb, ot, 24, 0, &o->large_custom_options_size, "large_custom_options_size") ||
        mf_fb_u8(&w->fb, ot, 26, 0, &o->options2_type, "builtin_options_2_type"))
        return w->err->code;
    o->custom_options_len = custom.n;
    if (o->opcode >= m->n_opcodes)
        return mf_fail(w->err, MF_ERR_CORRUPT, at, "tflite operator uses opcode %u but the model has %u operator codes",
                       o->opcode, m->n_opcodes);
    if (check_indices(w, &o->inputs, -1, n_tensors, at, "operator input") ||
        check_indices(w, &o->outputs, -1, n_tensors, at, "operator output") ||
        check_indices(w, &o->intermediates, -1, n_tensors, at, "operator intermediate"))
        return w->err->code;
    return MF_OK;
}

static int subgraphs(walk *w, const mf_fb_table *model, mf_tfl_model *m) {
    mf_fb_vec v;
    mf_vec tensors = {0}, ops = {0};
    if (tables_field(w, model, 8, &v, "model subgraphs")) return w->err->code;
    m->subgraphs = (mf_tfl_subgraph *)alloc_n(w, v.n, sizeof *m->subgraphs, mf_fb_at(&w->fb, v.pos));
    if (v.n && m->subgraphs == NULL) return w->err->code;
    m->n_subgraphs = v.n;
    for (uint32_t si = 0; si < v.n; si++) {
        mf_fb_table st;
        mf_fb_vec tv, ov;
        mf_tfl_subgraph *s = &m->subgraphs[si];
        if (mf_fb_vec_table(&w->fb, &v, si, &st, "subgraph") ||
            tables_field(w, &st, 4, &tv, "subgraph tensors") ||
            i32s_field(w, &st, 6, &s->inputs, "subgraph inputs") ||
            i32s_field(w, &st, 8, &s->outputs, "subgraph outputs") ||
            tables_field(w, &st, 10, &ov, "subgraph operators") ||
            str_field(w, &st, 12, &s->name, "subgraph name"))
            return w->err->code;
        uint64_t at = mf_fb_at(&w->fb, st.pos);
        if (check_indices(w, &s->inputs, 0, tv.n, at, "subgraph input") ||
            check_indices(w, &s->outputs, 0, tv.n, at, "subgraph output"))
            return w->err->code;
        s->first_tensor = (uint32_t)tensors.len;
        s->n_tensors = tv.n;
        for (uint32_t i = 0; i < tv.n; i++) {
            mf_fb_table tt;
            if (mf_fb_vec_table(&w->fb, &tv, i, &tt, "tensor")) return w->err->code;
            if (tensors.len >= UINT32_MAX)
                return mf_fail(w->err, MF_ERR_LIMIT, mf_fb_at(&w->fb, tt.pos), "tflite model with too many tensors");
            mf_tfl_tensor *t = (mf_tfl_tensor *)mf_vec_push(&tensors, sizeof *t, w->a, w->err, mf_fb_at(&w->fb, tt.pos));
            if (t == NULL) return w->err->code;
            memset(t, 0, sizeof *t);
            t->subgraph = si;
            t->index = i;
            if (tensor(w, &tt, m, t)) return w->err->code;
        }
        s->first_op = (uint32_t)ops.len;
        s->n_ops = ov.n;
        for (uint32_t i = 0; i < ov.n; i++) {
            mf_fb_table ot;
            if (mf_fb_vec_table(&w->fb, &ov, i, &ot, "operator")) return w->err->code;
            if (ops.len >= UINT32_MAX)
                return mf_fail(w->err, MF_ERR_LIMIT, mf_fb_at(&w->fb, ot.pos), "tflite model with too many operators");
            mf_tfl_op *o = (mf_tfl_op *)mf_vec_push(&ops, sizeof *o, w->a, w->err, mf_fb_at(&w->fb, ot.pos));
            if (o == NULL) return w->err->code;
            memset(o, 0, sizeof *o);
            if (op(w, &ot, si, tv.n, m, o)) return w->err->code;
        }
    }
    m->tensors = (mf_tfl_tensor *)tensors.items;
    m->n_tensors = (uint32_t)tensors.len;
    m->ops = (mf_tfl_op *)ops.items;
    m->n_ops = (uint32_t)ops.len;
    return MF_OK;
}

static int tensor_maps(walk *w, const mf_fb_table *sig, unsigned vo, uint32_t n_tensors, mf_tfl_tmap **out,
                       uint32_t *n, const char *what) {
    mf_fb_vec v;
    if (tables_field(w, sig, vo, &v, what)) return w->err->code;
    *out = (mf_tfl_tmap *)alloc_n(w, v.n, sizeof **out, mf_fb_at(&w->fb, v.pos));
    if (v.n && *out == NULL) return w->err->code;
    *n = v.n;
    for (uint32_t i = 0; i < v.n; i++) {
        mf_fb_table mt;
        mf_tfl_tmap *tm = &(*out)[i];
        if (mf_fb_vec_table(&w->fb, &v, i, &mt, what) || str_field(w, &mt, 4, &tm->name, "tensor map name") ||
            mf_fb_u32(&w->fb, &mt, 6, 0, &tm->tensor, "tensor map index"))
            return w->err->code;
        if (tm->tensor >= n_tensors)
            return mf_fail(w->err, MF_ERR_CORRUPT, mf_fb_at(&w->fb, mt.pos),
                           "tflite signature %s names tensor %u but its subgraph has %u tensors", what, tm->tensor,
                           n_tensors);
    }
    return MF_OK;
}

static int signatures(walk *w, const mf_fb_table *model, mf_tfl_model *m) {
    mf_fb_vec v;
    if (tables_field(w, model, 18, &v, "model signature_defs")) return w->err->code;
    m->sigs = (mf_tfl_sig *)alloc_n(w, v.n, sizeof *m->sigs, mf_fb_at(&w->fb, v.pos));
    if (v.n && m->sigs == NULL) return w->err->code;
    m->n_sigs = v.n;
    for (uint32_t i = 0; i < v.n; i++) {
        mf_fb_table st;
        mf_tfl_sig *s = &m->sigs[i];
        if (mf_fb_vec_table(&w->fb, &v, i, &st, "signature def") ||
            str_field(w, &st, 8, &s->key, "signature_key") ||
            mf_fb_u32(&w->fb, &st, 12, 0, &s->subgraph, "signature subgraph_index"))
            return w->err->code;
        if (s->subgraph >= m->n_subgraphs)
            return mf_fail(w->err, MF_ERR_CORRUPT, mf_fb_at(&w->fb, st.pos),
                           "tflite signature names subgraph %u but the model has %u", s->subgraph, m->n_subgraphs);
        uint32_t nt = m->subgraphs[s->subgraph].n_tensors;
        if (tensor_maps(w, &st, 4, nt, &s->inputs, &s->n_inputs, "inputs") ||
            tensor_maps(w, &st, 6, nt, &s->outputs, &s->n_outputs, "outputs"))
            return w->err->code;
    }
    return MF_OK;
}

static int metadata(walk *w, const mf_fb_table *model, mf_tfl_model *m) {
    mf_fb_vec v;
    if (i32s_field(w, model, 14, &m->metadata_buffer, "model metadata_buffer") ||
        tables_field(w, model, 16, &v, "model metadata"))
        return w->err->code;
    for (uint32_t i = 0; i < m->metadata_buffer.n; i++)
        if (m->metadata_buffer.v[i] < 0 || (uint32_t)m->metadata_buffer.v[i] >= m->n_buffers)
            return mf_fail(w->err, MF_ERR_CORRUPT, w->fb.base, "tflite metadata_buffer names buffer %d of %u",
                           m->metadata_buffer.v[i], m->n_buffers);
    m->metadata = (mf_tfl_meta *)alloc_n(w, v.n, sizeof *m->metadata, mf_fb_at(&w->fb, v.pos));
    if (v.n && m->metadata == NULL) return w->err->code;
    m->n_metadata = v.n;
    for (uint32_t i = 0; i < v.n; i++) {
        mf_fb_table mt;
        mf_tfl_meta *md = &m->metadata[i];
        if (mf_fb_vec_table(&w->fb, &v, i, &mt, "metadata") || str_field(w, &mt, 4, &md->name, "metadata name") ||
            mf_fb_u32(&w->fb, &mt, 6, 0, &md->buffer, "metadata buffer"))
            return w->err->code;
        if (md->buffer >= m->n_buffers)
            return mf_fail(w->err, MF_ERR_CORRUPT, mf_fb_at(&w->fb, mt.pos),
                           "tflite metadata '%.*s' names buffer %u but the model has %u", (int)(md->name.n > 100 ? 100 : md->name.n),
                           md->name.s ? (const char *)md->name.s : "", md->buffer, m->n_buffers);
    }
    return MF_OK;
}

static int external_buffers(walk *w, const mf_fb_table *model, mf_tfl_model *m) {
    mf_fb_vec gv, bv;
    if (tables_field(w, model, 20, &gv, "model external_buffer_groups") ||
        tables_field(w, model, 22, &bv, "model external_buffers"))
        return w->err->code;
    m->ext_groups = (mf_tfl_str *)alloc_n(w, gv.n, sizeof *m->ext_groups, mf_fb_at(&w->fb, gv.pos));
    if (gv.n && m->ext_groups == NULL) return w->err->code;
    m->n_ext_groups = gv.n;
    for (uint32_t i = 0; i < gv.n; i++) {
        mf_fb_table gt;
        if (mf_fb_vec_table(&w->fb, &gv, i, &gt, "external buffer group") ||
            str_field(w, &gt, 4, &m->ext_groups[i], "external buffer group name"))
            return w->err->code;
    }
    m->ext_buffers = (mf_tfl_extbuf *)alloc_n(w, bv.n, sizeof *m->ext_buffers, mf_fb_at(&w->fb, bv.pos));
    if (bv.n && m->ext_buffers == NULL) return w->err->code;
    m->n_ext_buffers = bv.n;
    for (uint32_t i = 0; i < bv.n; i++) {
        mf_fb_table bt;
        mf_tfl_extbuf *e = &m->ext_buffers[i];
        if (mf_fb_vec_table(&w->fb, &bv, i, &bt, "external buffer") ||
            mf_fb_u32(&w->fb, &bt, 4, 0, &e->id, "external buffer id") ||
            mf_fb_u32(&w->fb, &bt, 6, 0, &e->group, "external buffer group") ||
            mf_fb_u64(&w->fb, &bt, 8, 0, &e->offset, "external buffer offset") ||
            mf_fb_u64(&w->fb, &bt, 10, 0, &e->length, "external buffer length") ||
            str_field(w, &bt, 12, &e->packing, "external buffer packing"))
            return w->err->code;
        if (e->group >= gv.n)
            return mf_fail(w->err, MF_ERR_CORRUPT, mf_fb_at(&w->fb, bt.pos),
                           "tflite external buffer %u names group %u but the model has %u", e->id, e->group, gv.n);
    }
    return MF_OK;
}

int mf_tflite_parse(const uint8_t *buf, size_t len, int require_ident, mf_arena *a, mf_tfl_model *out,
                    mf_error *err) {
    walk w;
    mf_fb_table model;
    memset(out, 0, sizeof *out);
    mf_fb_init(&w.fb, buf, len, 0, err);
    w.a = a;
    w.err = err;
    if (mf_fb_root(&w.fb, require_ident ? "TFL3" : NULL, &model) ||
        mf_fb_u32(&w.fb, &model, 4, 0, &out->version, "model version") ||
        str_field(&w, &model, 10, &out->description, "model description"))
        return err->code;
    if (buffers(&w, &model, out) || opcodes(&w, &model, out) || subgraphs(&w, &model, out) ||
        metadata(&w, &model, out) || signatures(&w, &model, out) || external_buffers(&w, &model, out))
        return err->code;
    return MF_OK;
}

/* ========================================================================================== */
/* Model Metadata (metadata_schema.fbs, identifier "M001"); slots in mf_tflite.h              */
/* ========================================================================================== */

typedef struct mwalk {
    walk w;
    mf_vec files, tensors, custom;
} mwalk;

/* Who records the associated files being collected. */
typedef struct fowner {
    uint8_t where, unit, input_unit;
    uint32_t subgraph, tensor;
} fowner;

static int assoc_files(mwalk *m, const mf_fb_table *t, unsigned vo, const fowner *o, const char *what) {
    walk *w = &m->w;
    mf_fb_vec v;
    if (tables_field(w, t, vo, &v, what)) return w->err->code;
    for (uint32_t i = 0; i < v.n; i++) {
        mf_fb_table ft;
        if (mf_fb_vec_table(&w->fb, &v, i, &ft, "associated file")) return w->err->code;
        mf_tflm_file *f = (mf_tflm_file *)mf_vec_push(&m->files, sizeof *f, w->a, w->err, mf_fb_at(&w->fb, ft.pos));
        if (f == NULL) return w->err->code;
        memset(f, 0, sizeof *f);
        f->where = o->where;
        f->process_unit = o->unit;
        f->input_unit = o->input_unit;
        f->subgraph = o->subgraph;
        f->tensor = o->tensor;
        if (str_field(w, &ft, 4, &f->name, "associated file name") ||
            str_field(w, &ft, 6, &f->description, "associated file description") ||
            mf_fb_i8(&w->fb, &ft, 8, 0, &f->type, "associated file type") ||
            str_field(w, &ft, 10, &f->locale, "associated file locale") ||
            str_field(w, &ft, 12, &f->version, "associated file version"))
            return w->err->code;
    }
    return MF_OK;
}

/* A [ProcessUnit] vector: the option types (into *types when not NULL) and the files that
 * tokenizer options name. */
static int process_units(mwalk *m, const mf_fb_table *t, unsigned vo, const fowner *o, uint8_t **types,
                         uint32_t *n, const char *what) {
    walk *w = &m->w;
    mf_fb_vec v;
    if (tables_field(w, t, vo, &v, what)) return w->err->code;
    if (types != NULL) {
        *types = NULL;
        *n = v.n;
        if (v.n) {
            if (mf_fb_charge(&w->fb, v.n, what)) return w->err->code;
            *types = (uint8_t *)alloc_n(w, v.n, 1, mf_fb_at(&w->fb, v.pos));
            if (*types == NULL) return w->err->code;
        }
    }
    for (uint32_t i = 0; i < v.n; i++) {
        mf_fb_table pt, opt;
        uint8_t type;
        int present;
        fowner po = *o;
        if (mf_fb_vec_table(&w->fb, &v, i, &pt, "process unit") ||
            mf_fb_union(&w->fb, &pt, 4, 6, &type, &opt, &present, "process unit options"))
            return w->err->code;
        if (types != NULL) (*types)[i] = type;
        if (!present) continue;
        po.unit = type;
        if ((type == 4 && assoc_files(m, &opt, 4, &po, "BertTokenizerOptions vocab_file")) ||
            (type == 5 && (assoc_files(m, &opt, 4, &po, "SentencePieceTokenizerOptions sentencePiece_model") ||
                           assoc_files(m, &opt, 6, &po, "SentencePieceTokenizerOptions vocab_file"))) ||
            (type == 6 && assoc_files(m, &opt, 6, &po, "RegexTokenizerOptions vocab_file")))
            return w->err->code;
    }
    return MF_OK;
}

static int tensor_metadata(mwalk *m, const mf_fb_vec *v, uint32_t si, uint8_t output) {
    walk *w = &m->w;
    for (uint32_t i = 0; i < v->n; i++) {
        mf_fb_table tt, content;
        int present;
        fowner o = {output ? MF_TFLM_OUTPUT : MF_TFLM_INPUT, 0, 0, si, i};
        if (mf_fb_vec_table(&w->fb, v, i, &tt, "tensor metadata")) return w->err->code;
        mf_tflm_tensor *t = (mf_tflm_tensor *)mf_vec_push(&m->tensors, sizeof *t, w->a, w->err,
                                                          mf_fb_at(&w->fb, tt.pos));
        if (t == NULL) return w->err->code;
        memset(t, 0, sizeof *t);
        t->output = output;
        t->subgraph = si;
        t->index = i;
        if (str_field(w, &tt, 4, &t->name, "tensor metadata name") ||
            str_field(w, &tt, 6, &t->description, "tensor metadata description") ||
            mf_fb_subtable(&w->fb, &tt, 10, &content, &present, "tensor metadata content"))
            return w->err->code;
        if (present && mf_fb_u8(&w->fb, &content, 4, 0, &t->content_type, "content properties type"))
            return w->err->code;
        /* t stays valid: process_units and assoc_files push onto other vectors */
        if (process_units(m, &tt, 12, &o, &t->process_units, &t->n_process_units, "tensor process_units") ||
            assoc_files(m, &tt, 16, &o, "tensor associated_files"))
            return w->err->code;
    }
    return MF_OK;
}

int mf_tflite_metadata(const uint8_t *buf, size_t len, uint64_t base, mf_arena *a, mf_tfl_metadata *out,
                       mf_error *err) {
    mwalk m;
    mf_fb_table root;
    mf_fb_vec sv;
    walk *w = &m.w;
    fowner model_owner = {MF_TFLM_MODEL, 0, 0, 0, 0};
    memset(out, 0, sizeof *out);
    memset(&m, 0, sizeof m);
    mf_fb_init(&w->fb, buf, len, base, err);
    w->a = a;
    w->err = err;
    if (mf_fb_root(&w->fb, "M001", &root) ||
        str_field(w, &root, 4, &out->name, "metadata name") ||
        str_field(w, &root, 6, &out->description, "metadata description") ||
        str_field(w, &root, 8, &out->version, "metadata version") ||
        tables_field(w, &root, 10, &sv, "metadata subgraph_metadata") ||
        str_field(w, &root, 12, &out->author, "metadata author") ||
        str_field(w, &root, 14, &out->license, "metadata license") ||
        assoc_files(&m, &root, 16, &model_owner, "metadata associated_files") ||
        str_field(w, &root, 18, &out->min_parser_version, "metadata min_parser_version"))
        return err->code;
    out->subgraphs = (mf_tflm_subgraph *)alloc_n(w, sv.n, sizeof *out->subgraphs, mf_fb_at(&w->fb, sv.pos));
    if (sv.n && out->subgraphs == NULL) return err->code;
    out->n_subgraphs = sv.n;
    for (uint32_t si = 0; si < sv.n; si++) {
        mf_fb_table st;
        mf_fb_vec in, outs, cv;
        mf_tflm_subgraph *s = &out->subgraphs[si];
        fowner in_units = {MF_TFLM_SUBGRAPH, 0, 1, si, 0}, sg = {MF_TFLM_SUBGRAPH, 0, 0, si, 0};
        if (mf_fb_vec_table(&w->fb, &sv, si, &st, "subgraph metadata") ||
            str_field(w, &st, 4, &s->name, "subgraph metadata name") ||
            str_field(w, &st, 6, &s->description, "subgraph metadata description") ||
            tables_field(w, &st, 8, &in, "input_tensor_metadata") ||
            tables_field(w, &st, 10, &outs, "output_tensor_metadata") ||
            tensor_metadata(&m, &in, si, 0) || tensor_metadata(&m, &outs, si, 1) ||
            assoc_files(&m, &st, 12, &sg, "subgraph associated_files") ||
            process_units(&m, &st, 14, &in_units, NULL, NULL, "input_process_units") ||
            process_units(&m, &st, 16, &sg, NULL, NULL, "output_process_units") ||
            tables_field(w, &st, 22, &cv, "custom_metadata"))
            return err->code;
        s->n_inputs = in.n;
        s->n_outputs = outs.n;
        for (uint32_t i = 0; i < cv.n; i++) {
            mf_fb_table ct;
            mf_fb_vec data;
            int present;
            if (mf_fb_vec_table(&w->fb, &cv, i, &ct, "custom metadata")) return err->code;
            mf_tflm_custom *c = (mf_tflm_custom *)mf_vec_push(&m.custom, sizeof *c, a, err, mf_fb_at(&w->fb, ct.pos));
            if (c == NULL) return err->code;
            memset(c, 0, sizeof *c);
            c->subgraph = si;
            if (str_field(w, &ct, 4, &c->name, "custom metadata name") ||
                mf_fb_vector(&w->fb, &ct, 6, 1, &data, &present, "custom metadata data"))
                return err->code;
            c->offset = present ? mf_fb_at(&w->fb, data.pos) : 0;
            c->size = data.n;
        }
    }
    if (m.files.len > UINT32_MAX || m.tensors.len > UINT32_MAX || m.custom.len > UINT32_MAX)
        return mf_fail(err, MF_ERR_LIMIT, base, "tflite metadata with too many records");
    out->files = (mf_tflm_file *)m.files.items;
    out->n_files = (uint32_t)m.files.len;
    out->tensors = (mf_tflm_tensor *)m.tensors.items;
    out->n_tensors = (uint32_t)m.tensors.len;
    out->custom = (mf_tflm_custom *)m.custom.items;
    out->n_custom = (uint32_t)m.custom.len;
    return MF_OK;
}
