/*
 * mf_gguf.c - GGUF header reader (see mf_gguf.h) and ggml block dequantization kernels.
 */
#include "mf_gguf.h"
#include "mf_magic.h"

#include <string.h>

/* ========================================================================================== */
/* ggml types                                                                                 */
/* ========================================================================================== */

typedef struct ggml_type_info {
    const char *name;
    uint32_t block;  /* elements per block */
    uint32_t bytes;  /* bytes per block */
    int dtype;       /* plain types: the mf_dtype; block types: MF_DT_UNKNOWN */
} ggml_type_info;

/* ids 4, 5, 31-33 and 36-38 were removed from ggml and stay unknown */
static const ggml_type_info ggml_types[] = {
    [0] = {"F32", 1, 4, MF_DT_FLOAT32},
    [1] = {"F16", 1, 2, MF_DT_FLOAT16},
    [2] = {"Q4_0", 32, 18, 0},
    [3] = {"Q4_1", 32, 20, 0},
    [6] = {"Q5_0", 32, 22, 0},
    [7] = {"Q5_1", 32, 24, 0},
    [8] = {"Q8_0", 32, 34, 0},
    [9] = {"Q8_1", 32, 40, 0},
    [10] = {"Q2_K", 256, 84, 0},
    [11] = {"Q3_K", 256, 110, 0},
    [12] = {"Q4_K", 256, 144, 0},
    [13] = {"Q5_K", 256, 176, 0},
    [14] = {"Q6_K", 256, 210, 0},
    [15] = {"Q8_K", 256, 292, 0},
    [16] = {"IQ2_XXS", 256, 66, 0},
    [17] = {"IQ2_XS", 256, 74, 0},
    [18] = {"IQ3_XXS", 256, 98, 0},
    [19] = {"IQ1_S", 256, 50, 0},
    [20] = {"IQ4_NL", 32, 18, 0},
    [21] = {"IQ3_S", 256, 110, 0},
    [22] = {"IQ2_S", 256, 82, 0},
    [23] = {"IQ4_XS", 256, 136, 0},
    [24] = {"I8", 1, 1, MF_DT_INT8},
    [25] = {"I16", 1, 2, MF_DT_INT16},
    [26] = {"I32", 1, 4, MF_DT_INT32},
    [27] = {"I64", 1, 8, MF_DT_INT64},
    [28] = {"F64", 1, 8, MF_DT_FLOAT64},
    [29] = {"IQ1_M", 256, 56, 0},
    [30] = {"BF16", 1, 2, MF_DT_BFLOAT16},
    [34] = {"TQ1_0", 256, 54, 0},
    [35] = {"TQ2_0", 256, 66, 0},
    [39] = {"MXFP4", 32, 17, 0},
    [40] = {"NVFP4", 64, 36, 0},
    [41] = {"Q1_0", 128, 18, 0},
};

#define N_GGML_TYPES (sizeof ggml_types / sizeof ggml_types[0])

const char *mf_gguf_type_name(uint32_t type) {
    return type < N_GGML_TYPES ? ggml_types[type].name : NULL;
}

int mf_gguf_type_size(uint32_t type, uint32_t *block, uint32_t *bytes) {
    if (type >= N_GGML_TYPES || ggml_types[type].name == NULL) return 1;
    *block = ggml_types[type].block;
    *bytes = ggml_types[type].bytes;
    return 0;
}

int mf_gguf_type_dtype(uint32_t type) {
    return type < N_GGML_TYPES && ggml_types[type].name ? ggml_types[type].dtype : MF_DT_UNKNOWN;
}

/* ========================================================================================== */
/* Endian-aware reads                                                                         */
/* ========================================================================================== */

typedef struct gg {
    mf_cursor c;
    int be;
    mf_error *err;
} gg;

static void gg_init(gg *g, const uint8_t *buf, size_t len, int big_endian, mf_error *err) {
    mf_cursor_init(&g->c, buf, len, 0, err);
    g->be = big_endian;
    g->err = err;
}

static inline uint16_t bswap16(uint16_t v) { return (uint16_t)((v >> 8) | (v << 8)); }
static inline uint32_t bswap32(uint32_t v) {
    return (v >> 24) | ((v >> 8) & 0xFF00u) | ((v << 8) & 0xFF0000u) | (v << 24);
}
static inline uint64_t bswap64(uint64_t v) { return ((uint64_t)bswap32((uint32_t)v) << 32) | bswap32((uint32_t)(v >> 32)); }

static int g_u16(gg *g, uint16_t *out, const char *what) {
    if (mf_u16le(&g->c, out, what)) return 1;
    if (g->be) *out = bswap16(*out);
    return 0;
}

static int g_u32(gg *g, uint32_t *out, const char *what) {
    if (mf_u32le(&g->c, out, what)) return 1;
    if (g->be) *out = bswap32(*out);
    return 0;
}

static int g_u64(gg *g, uint64_t *out, const char *what) {
    if (mf_u64le(&g->c, out, what)) return 1;
    if (g->be) *out = bswap64(*out);
    return 0;
}

/* c.pos at a string's u64 length */
static int g_string(gg *g, const uint8_t **s, uint64_t *n, const char *what) {
    uint64_t at = mf_tell(&g->c);
    if (g_u64(g, n, what)) return 1;
    if (*n > (uint64_t)mf_remaining(&g->c))
        return mf_fail(g->err, MF_ERR_TRUNCATED, at, "gguf %s of %llu bytes runs past the end of the file", what,
                       (unsigned long long)*n);
    return mf_take(&g->c, (size_t)*n, s, what);
}

static const uint8_t value_width[MF_GGUF_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
static const char *const value_names[MF_GGUF_NTYPES] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                                        "bool", "string", "array", "u64", "i64", "f64"};

/* c.pos at the value's first byte */
static int g_value(gg *g, uint32_t type, mf_gguf_value *v, int depth) {
    memset(v, 0, sizeof *v);
    v->type = type;
    v->offset = mf_tell(&g->c);
    switch (type) {
    case MF_GGUF_U8: case MF_GGUF_BOOL: {
        uint8_t b;
        if (mf_u8(&g->c, &b, "gguf value")) return 1;
        v->u = b;
        v->i = b;
        break;
    }
    case MF_GGUF_I8: {
        uint8_t b;
        if (mf_u8(&g->c, &b, "gguf value")) return 1;
        v->i = (int8_t)b;
        break;
    }
    case MF_GGUF_U16: case MF_GGUF_I16: {
        uint16_t x;
        if (g_u16(g, &x, "gguf value")) return 1;
        v->u = x;
        v->i = type == MF_GGUF_I16 ? (int16_t)x : (int64_t)x;
        break;
    }
    case MF_GGUF_U32: case MF_GGUF_I32: case MF_GGUF_F32: {
        uint32_t x;
        if (g_u32(g, &x, "gguf value")) return 1;
        v->u = x;
        v->i = type == MF_GGUF_I32 ? (int32_t)x : (int64_t)x;
        if (type == MF_GGUF_F32) {
            float f;
            memcpy(&f, &x, 4);
            v->f = f;
        }
        break;
    }
    case MF_GGUF_U64: case MF_GGUF_I64: case MF_GGUF_F64: {
        uint64_t x;
        if (g_u64(g, &x, "gguf value")) return 1;
        v->u = x;
        v->i = (int64_t)x;
        if (type == MF_GGUF_F64) memcpy(&v->f, &x, 8);
        break;
    }
    case MF_GGUF_STRING:
        if (g_string(g, &v->str, &v->str_len, "string value")) return 1;
        break;
    case MF_GGUF_ARRAY: {
        uint64_t at = v->offset, need;
        if (depth >= MF_GGUF_MAX_NESTING)
            return mf_fail(g->err, MF_ERR_LIMIT, at, "gguf arrays nested more than %d deep", MF_GGUF_MAX_NESTING);
        if (g_u32(g, &v->arr_type, "array element type") || g_u64(g, &v->arr_count, "array length")) return 1;
        v->arr_data = mf_tell(&g->c);
        if (v->arr_type >= MF_GGUF_NTYPES)
            return mf_fail(g->err, MF_ERR_CORRUPT, at, "gguf array of unknown value type %u", v->arr_type);
        /* the smallest element of each type: refuse counts the rest of the file cannot hold */
        uint64_t min = v->arr_type == MF_GGUF_STRING ? 8 : v->arr_type == MF_GGUF_ARRAY ? 12 : value_width[v->arr_type];
        if (mf_mul_u64(v->arr_count, min, &need) || need > (uint64_t)mf_remaining(&g->c))
            return mf_fail(g->err, MF_ERR_TRUNCATED, at,
                           "gguf array of %llu %s values runs past the end of the file",
                           (unsigned long long)v->arr_count, value_names[v->arr_type]);
        if (v->arr_type == MF_GGUF_STRING) {
            for (uint64_t k = 0; k < v->arr_count; k++) {
                const uint8_t *s;
                uint64_t n;
                if (g_string(g, &s, &n, "string in an array")) {
                    /* a sparse window: the rest of a vocabulary, at the mean size seen so far */
                    uint64_t mean = k ? (mf_tell(&g->c) - v->arr_data) / k + 1 : 16;
                    mf_win_want(g->err, (v->arr_count - k) * (mean > 8 ? mean : 16));
                    return 1;
                }
            }
        } else if (v->arr_type == MF_GGUF_ARRAY) {
            for (uint64_t k = 0; k < v->arr_count; k++) {
                mf_gguf_value sub;
                if (g_value(g, MF_GGUF_ARRAY, &sub, depth + 1)) return 1;
            }
        } else if (mf_skip(&g->c, (size_t)need, "array")) {
            return 1;
        }
        break;
    }
    default:
        return mf_fail(g->err, MF_ERR_CORRUPT, v->offset, "gguf value of unknown type %u", type);
    }
    v->end = mf_tell(&g->c);
    return 0;
}

/* ========================================================================================== */
/* Header                                                                                     */
/* ========================================================================================== */

static int key_is(const mf_gguf_kv *kv, const char *lit) {
    size_t n = strlen(lit);
    return kv->key_len == n && memcmp(kv->key, lit, n) == 0;
}

int mf_gguf_parse(const uint8_t *buf, size_t len, mf_arena *a, mf_gguf_result *out, mf_error *err) {
    gg g;
    uint32_t raw;
    memset(out, 0, sizeof *out);
    gg_init(&g, buf, len, 0, err);
    if (len >= MF_MAGIC_GGUF_LEN && err->win != NULL && mf_win_check(err->win, buf, MF_MAGIC_GGUF_LEN, err, "gguf magic"))
        return err->code;
    if (len < MF_MAGIC_GGUF_LEN || memcmp(buf, MF_MAGIC_GGUF, MF_MAGIC_GGUF_LEN) != 0)
        return mf_fail(err, len < MF_MAGIC_GGUF_LEN ? MF_ERR_TRUNCATED : MF_ERR_CORRUPT, 0, "not a GGUF file (magic)");
    mf_skip(&g.c, MF_MAGIC_GGUF_LEN, "gguf magic");
    if (mf_u32le(&g.c, &raw, "gguf version")) return err->code;
    if ((raw & 0xFFFFu) == 0 && raw != 0) {
        g.be = 1;
        raw = bswap32(raw);
    }
    out->version = raw;
    out->big_endian = g.be;
    if (raw == 1)
        return mf_fail(err, MF_ERR_UNSUPPORTED, 4, "GGUF version 1 (32-bit counts) is not supported; convert it to v3");
    if (raw != 2 && raw != 3) return mf_fail(err, MF_ERR_UNSUPPORTED, 4, "GGUF version %u is not supported", raw);
    if (g_u64(&g, &out->n_tensors, "tensor count") || g_u64(&g, &out->n_kv, "metadata count")) return err->code;

    /* a key/value pair takes at least 13 bytes and a tensor info 24: refuse counts the file
     * cannot hold before allocating records for them */
    uint64_t need_kv, need_t;
    if (mf_mul_u64(out->n_kv, 13, &need_kv) || need_kv > mf_remaining(&g.c))
        return mf_fail(err, MF_ERR_TRUNCATED, 16, "gguf declares %llu metadata entries, more than the file can hold",
                       (unsigned long long)out->n_kv);
    if (mf_mul_u64(out->n_tensors, 24, &need_t) || need_t > mf_remaining(&g.c) - need_kv)
        return mf_fail(err, MF_ERR_TRUNCATED, 8, "gguf declares %llu tensors, more than the file can hold",
                       (unsigned long long)out->n_tensors);
    if (out->n_kv) {
        out->kvs = (mf_gguf_kv *)mf_arena_alloc(a, (size_t)out->n_kv * sizeof *out->kvs, err, 16);
        if (out->kvs == NULL) return err->code;
    }
    if (out->n_tensors) {
        out->tensors = (mf_gguf_tensor *)mf_arena_alloc(a, (size_t)out->n_tensors * sizeof *out->tensors, err, 8);
        if (out->tensors == NULL) return err->code;
    }

    uint64_t alignment = MF_GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < out->n_kv; i++) {
        mf_gguf_kv *kv = &out->kvs[i];
        uint32_t type;
        kv->key_offset = mf_tell(&g.c);
        if (g_string(&g, &kv->key, &kv->key_len, "metadata key") || g_u32(&g, &type, "metadata value type") ||
            g_value(&g, type, &kv->v, 0)) {
            /* a sparse window: what is left of the header, roughly (more keys, the tensor table) */
            mf_win_want(err, err->win != NULL ? err->win->want + (out->n_kv - i) * 64 + out->n_tensors * 96 : 0);
            return err->code;
        }
        if (key_is(kv, "general.alignment")) {
            if (type != MF_GGUF_U32)
                return mf_fail(err, MF_ERR_CORRUPT, kv->key_offset, "gguf general.alignment must be a u32, not a %s",
                               type < MF_GGUF_NTYPES ? value_names[type] : "?");
            if (kv->v.u == 0 || (kv->v.u & (kv->v.u - 1)) != 0)
                return mf_fail(err, MF_ERR_CORRUPT, kv->v.offset, "gguf general.alignment %llu is not a power of two",
                               (unsigned long long)kv->v.u);
            alignment = kv->v.u;
        }
    }
    out->alignment = (uint32_t)alignment;

    for (uint64_t i = 0; i < out->n_tensors; i++) {
        mf_gguf_tensor *t = &out->tensors[i];
        uint32_t block, bytes;
        memset(t, 0, sizeof *t);
        t->info_offset = mf_tell(&g.c);
        if (g_string(&g, &t->name, &t->name_len, "tensor name") || g_u32(&g, &t->n_dims, "tensor dimension count")) {
            /* a sparse window: the rest of the tensor table, at the mean record size so far */
            uint64_t mean = i ? (t->info_offset - out->tensors[0].info_offset) / i + 1 : 96;
            mf_win_want(err, (out->n_tensors - i) * mean);
            return err->code;
        }
        int nl = (int)(t->name_len > 200 ? 200 : t->name_len);
        if (t->n_dims > MF_GGUF_MAX_DIMS)
            return mf_fail(err, MF_ERR_CORRUPT, t->info_offset, "gguf tensor '%.*s' has %u dimensions (at most %d)", nl,
                           (const char *)t->name, t->n_dims, MF_GGUF_MAX_DIMS);
        t->nelem = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            if (g_u64(&g, &t->dims[d], "tensor dimension")) return err->code;
            if (t->dims[d] > (uint64_t)INT64_MAX || mf_mul_u64(t->nelem, t->dims[d], &t->nelem) ||
                t->nelem > (uint64_t)INT64_MAX)
                return mf_fail(err, MF_ERR_CORRUPT, t->info_offset, "gguf tensor '%.*s': element count overflows", nl,
                               (const char *)t->name);
        }
        if (g_u32(&g, &t->type, "tensor type") || g_u64(&g, &t->rel_offset, "tensor offset")) return err->code;
        if (mf_gguf_type_size(t->type, &block, &bytes))
            return mf_fail(err, MF_ERR_UNSUPPORTED, t->info_offset, "gguf tensor '%.*s' has unknown ggml type %u", nl,
                           (const char *)t->name, t->type);
        uint64_t ne0 = t->n_dims ? t->dims[0] : 1;
        if (ne0 % block != 0)
            return mf_fail(err, MF_ERR_CORRUPT, t->info_offset,
                           "gguf tensor '%.*s': rows of %llu elements are not whole %s blocks of %u", nl,
                           (const char *)t->name, (unsigned long long)ne0, mf_gguf_type_name(t->type), block);
        if (mf_mul_u64(t->nelem / block, bytes, &t->nbytes))
            return mf_fail(err, MF_ERR_CORRUPT, t->info_offset, "gguf tensor '%.*s': byte size overflows", nl,
                           (const char *)t->name);
        if (t->rel_offset % alignment != 0)
            return mf_fail(err, MF_ERR_CORRUPT, t->info_offset,
                           "gguf tensor '%.*s': offset %llu is not a multiple of the alignment %llu", nl,
                           (const char *)t->name, (unsigned long long)t->rel_offset, (unsigned long long)alignment);
    }

    uint64_t end = mf_tell(&g.c), data_start;
    if (mf_add_u64(end, alignment - 1, &data_start))
        return mf_fail(err, MF_ERR_CORRUPT, end, "gguf data offset overflows");
    data_start -= data_start % alignment;
    out->data_start = data_start;
    for (uint64_t i = 0; i < out->n_tensors; i++) {
        mf_gguf_tensor *t = &out->tensors[i];
        uint64_t stop;
        if (mf_add_u64(data_start, t->rel_offset, &t->offset) || mf_add_u64(t->offset, t->nbytes, &stop) || stop > len)
            return mf_fail(err, MF_ERR_TRUNCATED, t->info_offset,
                           "gguf tensor '%.*s' (%llu bytes at data offset %llu) runs past the end of the %zu-byte file",
                           (int)(t->name_len > 200 ? 200 : t->name_len), (const char *)t->name,
                           (unsigned long long)t->nbytes, (unsigned long long)t->rel_offset, len);
    }
    return MF_OK;
}

int mf_gguf_value_at(const uint8_t *buf, size_t len, uint64_t offset, uint32_t type, int big_endian,
                     mf_gguf_value *out, mf_error *err) {
    gg g;
    gg_init(&g, buf, len, big_endian, err);
    if (mf_seek(&g.c, offset, "gguf value")) return err->code;
    if (g_value(&g, type, out, 1)) return err->code;
    return MF_OK;
}

int mf_gguf_string_offsets(const uint8_t *buf, size_t len, uint64_t offset, uint64_t count, int big_endian,
                           uint64_t *out, mf_error *err) {
    gg g;
    gg_init(&g, buf, len, big_endian, err);
    if (mf_seek(&g.c, offset, "gguf string array")) return err->code;
    for (uint64_t k = 0; k < count; k++) {
        const uint8_t *s;
        uint64_t n;
        out[k] = mf_tell(&g.c);
        if (g_string(&g, &s, &n, "string in an array")) return err->code;
    }
    out[count] = mf_tell(&g.c);
    return MF_OK;
}

/* ========================================================================================== */
/* Dequantization (block layouts of ggml-common.h; x = scale x quant (- min))                 */
/* ========================================================================================== */

static float f16(const uint8_t *p) {
    uint16_t h = mf_load_u16le(p);
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FFu, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while ((man & 0x400u) == 0);
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3FFu) << 13);
        }
    } else if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static float f32le(const uint8_t *p) {
    uint32_t u = mf_load_u32le(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Q4_0: f16 d, 16 bytes of nibbles; x[j] = (lo - 8) d, x[j + 16] = (hi - 8) d */
static void dq_q4_0(const uint8_t *b, float *y) {
    float d = f16(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = (float)((qs[j] & 0x0F) - 8) * d;
        y[j + 16] = (float)((qs[j] >> 4) - 8) * d;
    }
}

/* Q4_1: f16 d, f16 m, 16 bytes of nibbles; x = q d + m */
static void dq_q4_1(const uint8_t *b, float *y) {
    float d = f16(b), m = f16(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 16; j++) {
        y[j] = (float)(qs[j] & 0x0F) * d + m;
        y[j + 16] = (float)(qs[j] >> 4) * d + m;
    }
}

/* Q5_0: f16 d, u32 qh (the fifth bits), 16 bytes of nibbles; x = (q - 16) d */
static void dq_q5_0(const uint8_t *b, float *y) {
    float d = f16(b);
    uint32_t qh = mf_load_u32le(b + 2);
    const uint8_t *qs = b + 6;
    for (int j = 0; j < 16; j++) {
        int x0 = (qs[j] & 0x0F) | (int)(((qh >> j) << 4) & 0x10);
        int x1 = (qs[j] >> 4) | (int)((qh >> (j + 12)) & 0x10);
        y[j] = (float)(x0 - 16) * d;
        y[j + 16] = (float)(x1 - 16) * d;
    }
}

/* Q5_1: f16 d, f16 m, u32 qh, 16 bytes of nibbles; x = q d + m */
static void dq_q5_1(const uint8_t *b, float *y) {
    float d = f16(b), m = f16(b + 2);
    uint32_t qh = mf_load_u32le(b + 4);
    const uint8_t *qs = b + 8;
    for (int j = 0; j < 16; j++) {
        int x0 = (qs[j] & 0x0F) | (int)(((qh >> j) << 4) & 0x10);
        int x1 = (qs[j] >> 4) | (int)((qh >> (j + 12)) & 0x10);
        y[j] = (float)x0 * d + m;
        y[j + 16] = (float)x1 * d + m;
    }
}

/* Q8_0: f16 d, 32 x i8; x = q d */
static void dq_q8_0(const uint8_t *b, float *y) {
    float d = f16(b);
    for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)b[2 + j] * d;
}

/* Q2_K: 16 bytes of 4-bit scale/min pairs, 64 bytes of 2-bit quants, f16 d, f16 dmin */
static void dq_q2_k(const uint8_t *b, float *y) {
    const uint8_t *scales = b, *q = b + 16;
    float d = f16(b + 80), dmin = f16(b + 82);
    int is = 0;
    for (int n = 0; n < 256; n += 128) {
        int shift = 0;
        for (int j = 0; j < 4; j++) {
            uint8_t sc = scales[is++];
            float dl = d * (float)(sc & 0x0F), ml = dmin * (float)(sc >> 4);
            for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[l] >> shift) & 3) - ml;
            sc = scales[is++];
            dl = d * (float)(sc & 0x0F);
            ml = dmin * (float)(sc >> 4);
            for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[l + 16] >> shift) & 3) - ml;
            shift += 2;
        }
        q += 32;
    }
}

/* Q3_K: 32 bytes hmask (third bit), 64 bytes of 2-bit quants, 12 bytes of 6-bit scales, f16 d */
static void dq_q3_k(const uint8_t *b, float *y) {
    const uint8_t *hm = b, *q = b + 32, *sc12 = b + 96;
    float d_all = f16(b + 108);
    int8_t scales[16];
    /* 16 six-bit scales: low 4 bits in bytes 0-7 (two per byte), high 2 bits in bytes 8-11 */
    for (int i = 0; i < 16; i++) {
        int lo = i < 8 ? (sc12[i] & 0x0F) : (sc12[i - 8] >> 4);
        int hi = (sc12[8 + (i % 4)] >> (2 * (i / 4))) & 3;
        scales[i] = (int8_t)((lo | (hi << 4)) - 32);
    }
    int is = 0;
    uint8_t m = 1;
    for (int n = 0; n < 256; n += 128) {
        int shift = 0;
        for (int j = 0; j < 4; j++) {
            float dl = d_all * (float)scales[is++];
            for (int l = 0; l < 16; l++)
                *y++ = dl * (float)((int)((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
            dl = d_all * (float)scales[is++];
            for (int l = 0; l < 16; l++)
                *y++ = dl * (float)((int)((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));
            shift += 2;
            m <<= 1;
        }
        q += 32;
    }
}

/* 6-bit scale and min j of the 12-byte K-quant scale block */
static void scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4));
        *mn = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Q4_K: f16 d, f16 dmin, 12 bytes of scales/mins, 128 bytes of nibbles (per 64 elements:
 * 32 low nibbles then 32 high); x = d sc q - dmin m */
static void dq_q4_k(const uint8_t *b, float *y) {
    float d = f16(b), dmin = f16(b + 2);
    const uint8_t *scales = b + 4, *q = b + 16;
    int is = 0;
    for (int j = 0; j < 256; j += 64) {
        uint8_t sc, mn;
        scale_min_k4(is, scales, &sc, &mn);
        float d1 = d * (float)sc, m1 = dmin * (float)mn;
        scale_min_k4(is + 1, scales, &sc, &mn);
        float d2 = d * (float)sc, m2 = dmin * (float)mn;
        for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0x0F) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
        q += 32;
        is += 2;
    }
}

/* Q5_K: as Q4_K plus 32 bytes qh with the fifth bits */
static void dq_q5_k(const uint8_t *b, float *y) {
    float d = f16(b), dmin = f16(b + 2);
    const uint8_t *scales = b + 4, *qh = b + 16, *ql = b + 48;
    int is = 0;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0; j < 256; j += 64) {
        uint8_t sc, mn;
        scale_min_k4(is, scales, &sc, &mn);
        float d1 = d * (float)sc, m1 = dmin * (float)mn;
        scale_min_k4(is + 1, scales, &sc, &mn);
        float d2 = d * (float)sc, m2 = dmin * (float)mn;
        for (int l = 0; l < 32; l++) *y++ = d1 * (float)((ql[l] & 0x0F) + ((qh[l] & u1) ? 16 : 0)) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (float)((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
        ql += 32;
        is += 2;
        u1 = (uint8_t)(u1 << 2);
        u2 = (uint8_t)(u2 << 2);
    }
}

/* Q6_K: 128 bytes low nibbles, 64 bytes high 2-bit pairs, 16 x i8 scales, f16 d; x = d sc (q - 32) */
static void dq_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = f16(b + 208);
    for (int n = 0; n < 256; n += 128) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = (int)((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = (int)((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = (int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * (float)sc[is + 0] * (float)q1;
            y[l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

/* Q8_K: f32 d, 256 x i8, 16 x i16 block sums (unused); x = q d */
static void dq_q8_k(const uint8_t *b, float *y) {
    float d = f32le(b);
    for (int j = 0; j < 256; j++) y[j] = (float)(int8_t)b[4 + j] * d;
}

/* TQ2_0: 64 bytes of 2-bit ternary digits (q - 1 in {-1, 0, 1}), f16 d */
static void dq_tq2_0(const uint8_t *b, float *y) {
    float d = f16(b + 64);
    for (int j = 0; j < 64; j += 32)
        for (int l = 0; l < 4; l++)
            for (int m = 0; m < 32; m++) *y++ = (float)((int)((b[j + m] >> (2 * l)) & 3) - 1) * d;
}

typedef void (*dq_fn)(const uint8_t *, float *);

static dq_fn dq_kernel(uint32_t type) {
    switch (type) {
    case 2: return dq_q4_0;
    case 3: return dq_q4_1;
    case 6: return dq_q5_0;
    case 7: return dq_q5_1;
    case 8: return dq_q8_0;
    case 10: return dq_q2_k;
    case 11: return dq_q3_k;
    case 12: return dq_q4_k;
    case 13: return dq_q5_k;
    case 14: return dq_q6_k;
    case 15: return dq_q8_k;
    case 35: return dq_tq2_0;
    default: return NULL;
    }
}

int mf_gguf_can_dequantize(uint32_t type) { return dq_kernel(type) != NULL; }

int mf_gguf_dequantize(uint32_t type, const uint8_t *src, size_t nbytes, float *dst, size_t n, mf_error *err) {
    uint32_t block, bytes;
    dq_fn fn = dq_kernel(type);
    if (fn == NULL || mf_gguf_type_size(type, &block, &bytes))
        return mf_fail(err, MF_ERR_UNSUPPORTED, 0, "dequantizing ggml type %s is not supported",
                       mf_gguf_type_name(type) ? mf_gguf_type_name(type) : "?");
    if (nbytes % bytes != 0 || (uint64_t)(nbytes / bytes) * block != (uint64_t)n)
        return mf_fail(err, MF_ERR_CORRUPT, 0, "%zu bytes of %s blocks do not hold %zu elements", nbytes,
                       mf_gguf_type_name(type), n);
    size_t nb = nbytes / bytes;
    for (size_t i = 0; i < nb; i++) fn(src + i * bytes, dst + i * block);
    return MF_OK;
}
