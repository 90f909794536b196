/*
 * mf_safetensors.c - safetensors header: a small strict JSON reader that emits tensor records
 * directly (no intermediate DOM), then the crate's validation (see mf_safetensors.h).
 */
#include "mf_safetensors.h"
#include "mf_text.h"

#include <stdlib.h>
#include <string.h>

static const struct {
    const char *code;
    int dtype;
} st_dtypes[] = {
    {"BOOL", MF_DT_BOOL},         {"U8", MF_DT_UINT8},          {"I8", MF_DT_INT8},
    {"U16", MF_DT_UINT16},        {"I16", MF_DT_INT16},         {"U32", MF_DT_UINT32},
    {"I32", MF_DT_INT32},         {"U64", MF_DT_UINT64},        {"I64", MF_DT_INT64},
    {"F16", MF_DT_FLOAT16},       {"BF16", MF_DT_BFLOAT16},     {"F32", MF_DT_FLOAT32},
    {"F64", MF_DT_FLOAT64},       {"C64", MF_DT_COMPLEX64},     {"F8_E4M3", MF_DT_FLOAT8_E4M3FN},
    {"F8_E5M2", MF_DT_FLOAT8_E5M2}, {"F8_E4M3FNUZ", MF_DT_FLOAT8_E4M3FNUZ},
    {"F8_E5M2FNUZ", MF_DT_FLOAT8_E5M2FNUZ}, {"F8_E8M0", MF_DT_FLOAT8_E8M0FNU},
    {"F4", MF_DT_FLOAT4_E2M1FN},  {"F6_E2M3", MF_DT_FLOAT6_E2M3FN}, {"F6_E3M2", MF_DT_FLOAT6_E3M2FN},
    {NULL, 0},
};

const char *mf_safetensors_dtype_code(int dtype) {
    for (int i = 0; st_dtypes[i].code; i++)
        if (st_dtypes[i].dtype == dtype) return st_dtypes[i].code;
    return NULL;
}

/* ========================================================================================== */
/* JSON (tokens from mf_text.h)                                                               */
/* ========================================================================================== */

typedef struct json {
    mf_text t;
    mf_arena *a;
    mf_error *err;
} json;

#define JSON_MAX_DEPTH 64

static int bad(json *j, const char *what) { return mf_text_bad(&j->t, what); }

static int string(json *j, const uint8_t **s, uint32_t *n) { return mf_text_string(&j->t, MF_TEXT_JSON, j->a, s, n); }

static int literal(json *j, const char *word) {
    int r = mf_text_word(&j->t, word, 0);
    return r > 0 ? 0 : r < 0 ? 1 : bad(j, "invalid value");
}

/* Skip any JSON value (an unknown field), depth-limited. */
static int skip_value(json *j, int depth) {
    if (depth > JSON_MAX_DEPTH)
        return mf_fail(j->err, MF_ERR_LIMIT, mf_tell(&j->t.c), "safetensors header nested too deep");
    int ch = mf_text_peek(&j->t);
    const uint8_t *s;
    uint32_t n;
    switch (ch) {
    case '"':
        return string(j, &s, &n);
    case '{':
    case '[': {
        uint8_t close = ch == '{' ? '}' : ']';
        int closed = 0;
        mf_text_accept(&j->t, (uint8_t)ch);
        if (mf_text_accept(&j->t, close)) return 0;
        while (!closed) {
            if (ch == '{' && (string(j, &s, &n) || mf_text_expect(&j->t, ':', "expected ':'"))) return 1;
            if (skip_value(j, depth + 1) || mf_text_next(&j->t, close, &closed, "expected ',' or a closing bracket"))
                return 1;
        }
        return 0;
    }
    case 't': return literal(j, "true");
    case 'f': return literal(j, "false");
    case 'n': return literal(j, "null");
    default:
        if (ch == '-' || (ch >= '0' && ch <= '9')) return mf_text_json_number(&j->t);
        return mf_text_fail(&j->t, "invalid value");
    }
}

static int str_eq(const uint8_t *s, uint32_t n, const char *lit) {
    size_t ln = strlen(lit);
    return n == ln && memcmp(s, lit, ln) == 0;
}

/* ========================================================================================== */
/* Header                                                                                     */
/* ========================================================================================== */

typedef struct parse_state {
    json j;
    mf_vec tensors;  /* mf_st_tensor */
    mf_vec meta;     /* mf_st_meta */
    int has_meta;
} parse_state;

static int uint_field(json *j, uint64_t *out) { return mf_text_uint(&j->t, UINT64_MAX, MF_TEXT_NO_FRACTION, out); }

/* the cursor before '{' of a tensor info object */
static int tensor_info(parse_state *ps, mf_st_tensor *t) {
    json *j = &ps->j;
    mf_text *x = &j->t;
    int have_dtype = 0, have_shape = 0, have_offsets = 0, closed = 0;
    if (mf_text_expect(x, '{', "tensor info must be an object")) return 1;
    if (mf_text_accept(x, '}')) return bad(j, "tensor info misses dtype, shape and data_offsets");
    while (!closed) {
        const uint8_t *k;
        uint32_t kn;
        if (string(j, &k, &kn) || mf_text_expect(x, ':', "expected ':'")) return 1;
        if (str_eq(k, kn, "dtype")) {
            const uint8_t *s;
            uint32_t n;
            if (have_dtype++) return bad(j, "duplicate field dtype");
            if (string(j, &s, &n)) return 1;
            t->dtype = 0;
            for (int i = 0; st_dtypes[i].code; i++)
                if (str_eq(s, n, st_dtypes[i].code)) t->dtype = st_dtypes[i].dtype;
            if (t->dtype == 0)
                return mf_fail(j->err, MF_ERR_UNSUPPORTED, mf_tell(&x->c), "safetensors header: unknown dtype '%.*s'",
                               (int)(n > 32 ? 32 : n), (const char *)s);
        } else if (str_eq(k, kn, "shape")) {
            if (have_shape++) return bad(j, "duplicate field shape");
            if (mf_text_expect(x, '[', "shape must be a list")) return 1;
            mf_vec dims = {0};
            int end = mf_text_accept(x, ']');
            while (!end) {
                uint64_t *d = (uint64_t *)mf_vec_push(&dims, sizeof *d, j->a, j->err, mf_tell(&x->c));
                if (d == NULL || uint_field(j, d) || mf_text_next(x, ']', &end, "expected ',' or ']' in shape"))
                    return 1;
            }
            if (dims.len > 64)
                return mf_fail(j->err, MF_ERR_LIMIT, mf_tell(&x->c), "safetensors tensor with more than 64 dimensions");
            t->ndim = (uint32_t)dims.len;
            t->shape = (uint64_t *)dims.items;
        } else if (str_eq(k, kn, "data_offsets")) {
            if (have_offsets++) return bad(j, "duplicate field data_offsets");
            if (mf_text_expect(x, '[', "data_offsets must be a list") || uint_field(j, &t->begin) ||
                mf_text_expect(x, ',', "data_offsets must hold two integers") || uint_field(j, &t->end) ||
                mf_text_expect(x, ']', "data_offsets must hold two integers"))
                return 1;
        } else if (skip_value(j, 1)) {
            return 1;
        }
        if (mf_text_next(x, '}', &closed, "expected ',' or '}' in tensor info")) return 1;
    }
    if (!have_dtype || !have_shape || !have_offsets) return bad(j, "tensor info misses dtype, shape or data_offsets");
    return 0;
}

static int metadata(parse_state *ps) {
    json *j = &ps->j;
    mf_text *x = &j->t;
    if (mf_text_peek(x) == 'n') return literal(j, "null");
    if (mf_text_expect(x, '{', "__metadata__ must be an object of strings")) return 1;
    ps->has_meta = 1;
    int closed = mf_text_accept(x, '}');
    while (!closed) {
        mf_st_meta *m = (mf_st_meta *)mf_vec_push(&ps->meta, sizeof *m, j->a, j->err, mf_tell(&x->c));
        if (m == NULL) return 1;
        if (string(j, &m->key, &m->key_len) || mf_text_expect(x, ':', "expected ':'")) return 1;
        if (mf_text_peek(x) != '"') return mf_text_fail(x, "__metadata__ values must be strings");
        if (string(j, &m->value, &m->value_len) || mf_text_next(x, '}', &closed, "expected ',' or '}' in __metadata__"))
            return 1;
    }
    return 0;
}

int mf_safetensors_header_len(const uint8_t *buf, size_t len, uint64_t file_size, uint64_t *n,
                              mf_error *err) {
    if (len < 8 || file_size < 8) return mf_fail(err, MF_ERR_TRUNCATED, 0, "safetensors file shorter than its 8-byte header length");
    *n = mf_load_u64le(buf);
    if (*n > MF_ST_MAX_HEADER)
        return mf_fail(err, MF_ERR_LIMIT, 0, "safetensors header length %llu exceeds the 100,000,000 byte limit",
                       (unsigned long long)*n);
    if (*n > file_size - 8)
        return mf_fail(err, MF_ERR_TRUNCATED, 8, "safetensors header of %llu bytes runs past the end of the file",
                       (unsigned long long)*n);
    return MF_OK;
}

static int cmp_offsets(const void *a, const void *b) {
    const mf_st_tensor *x = (const mf_st_tensor *)a, *y = (const mf_st_tensor *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int cmp_names(const void *a, const void *b) {
    const mf_st_tensor *x = *(const mf_st_tensor *const *)a, *y = *(const mf_st_tensor *const *)b;
    uint32_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp(x->name, y->name, n);
    if (c) return c;
    return x->name_len < y->name_len ? -1 : x->name_len > y->name_len;
}

int mf_safetensors_parse(const uint8_t *buf, size_t len, uint64_t file_size, mf_arena *a,
                         mf_st_result *out, mf_error *err) {
    uint64_t hn;
    memset(out, 0, sizeof *out);
    if (mf_safetensors_header_len(buf, len, file_size, &hn, err)) return err->code;
    if (hn > len - 8) return mf_fail(err, MF_ERR_TRUNCATED, 8, "safetensors header truncated");
    const uint8_t *h = buf + 8;
    int cut;
    size_t bad_at = mf_utf8_invalid_at(h, (size_t)hn, 0, &cut);
    if (bad_at != SIZE_MAX)
        return cut ? mf_fail(err, MF_ERR_TRUNCATED, 8 + hn, "safetensors header truncated inside a UTF-8 sequence")
                   : mf_fail(err, MF_ERR_CORRUPT, 8 + bad_at, "safetensors header is not valid UTF-8");
    if (hn == 0) return mf_fail(err, MF_ERR_TRUNCATED, 8, "safetensors header truncated: it is empty");
    if (h[0] != '{') return mf_fail(err, MF_ERR_CORRUPT, 8, "safetensors header does not start with '{'");

    parse_state ps;
    memset(&ps, 0, sizeof ps);
    json *j = &ps.j;
    mf_text *x = &j->t;
    mf_text_init(x, h, (size_t)hn, 8, err, "safetensors header");
    j->a = a;
    j->err = err;
    mf_text_accept(x, '{');
    int closed = mf_text_accept(x, '}');
    while (!closed) {
        const uint8_t *k;
        uint32_t kn;
        if (string(j, &k, &kn) || mf_text_expect(x, ':', "expected ':'")) return err->code;
        if (str_eq(k, kn, "__metadata__")) {
            if (ps.has_meta) return bad(j, "duplicate __metadata__");
            if (metadata(&ps)) return err->code;
        } else {
            mf_st_tensor *t = (mf_st_tensor *)mf_vec_push(&ps.tensors, sizeof *t, a, err, mf_tell(&x->c));
            if (t == NULL) return err->code;
            memset(t, 0, sizeof *t);
            t->name = k;
            t->name_len = kn;
            if (tensor_info(&ps, t)) return err->code;
        }
        if (mf_text_next(x, '}', &closed, "expected ',' or '}' after a tensor")) return err->code;
    }
    if (mf_text_peek(x) != -1) return bad(j, "trailing characters after the header object");

    mf_st_tensor *ts = (mf_st_tensor *)ps.tensors.items;
    size_t nt = ps.tensors.len;
    uint64_t data_start = 8 + hn, data_len = file_size - data_start;

    /* duplicate names: sort pointers by name */
    if (nt > 1) {
        const mf_st_tensor **byname = (const mf_st_tensor **)mf_arena_alloc(a, nt * sizeof *byname, err, 8);
        if (byname == NULL) return err->code;
        for (size_t i = 0; i < nt; i++) byname[i] = &ts[i];
        qsort(byname, nt, sizeof *byname, cmp_names);
        for (size_t i = 1; i < nt; i++)
            if (cmp_names(&byname[i - 1], &byname[i]) == 0)
                return mf_fail(err, MF_ERR_CORRUPT, 8, "safetensors header names tensor '%.*s' twice",
                               (int)(byname[i]->name_len > 200 ? 200 : byname[i]->name_len), (const char *)byname[i]->name);
    }
    if (nt > 1) qsort(ts, nt, sizeof *ts, cmp_offsets);
    uint64_t expect_begin = 0;
    for (size_t i = 0; i < nt; i++) {
        mf_st_tensor *t = &ts[i];
        int nl = (int)(t->name_len > 200 ? 200 : t->name_len);
        if (t->begin != expect_begin || t->end < t->begin)
            return mf_fail(err, MF_ERR_CORRUPT, data_start + t->begin,
                           "safetensors tensor '%.*s' has offsets [%llu, %llu] but the previous tensor ends at %llu",
                           nl, (const char *)t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
                           (unsigned long long)expect_begin);
        uint64_t numel = 1, bits;
        for (uint32_t d = 0; d < t->ndim; d++)
            if (mf_mul_u64(numel, t->shape[d], &numel))
                return mf_fail(err, MF_ERR_CORRUPT, 8, "safetensors tensor '%.*s': element count overflows", nl,
                               (const char *)t->name);
        if (mf_mul_u64(numel, mf_dtype_bits(t->dtype), &bits))
            return mf_fail(err, MF_ERR_CORRUPT, 8, "safetensors tensor '%.*s': byte size overflows", nl, (const char *)t->name);
        if (bits % 8 != 0)
            return mf_fail(err, MF_ERR_CORRUPT, 8, "safetensors tensor '%.*s': sub-byte elements do not fill whole bytes",
                           nl, (const char *)t->name);
        if (t->end - t->begin != bits / 8)
            return mf_fail(err, MF_ERR_CORRUPT, data_start + t->begin,
                           "safetensors tensor '%.*s' spans %llu bytes but its dtype and shape need %llu", nl,
                           (const char *)t->name, (unsigned long long)(t->end - t->begin), (unsigned long long)(bits / 8));
        expect_begin = t->end;
    }
    if (expect_begin > data_len) /* the file ends inside the tensors' data: cut */
        return mf_fail(err, MF_ERR_TRUNCATED, data_start + data_len,
                       "safetensors tensors cover %llu bytes but the data area holds %llu",
                       (unsigned long long)expect_begin, (unsigned long long)data_len);
    if (expect_begin < data_len) /* bytes after the last tensor that no tensor accounts for */
        return mf_fail(err, MF_ERR_CORRUPT, data_start + expect_begin,
                       "safetensors tensors cover %llu bytes but the data area holds %llu",
                       (unsigned long long)expect_begin, (unsigned long long)data_len);
    for (size_t i = 0; i < nt; i++) {
        ts[i].begin += data_start;
        ts[i].end += data_start;
    }
    out->tensors = ts;
    out->n_tensors = nt;
    out->meta = (mf_st_meta *)ps.meta.items;
    out->n_meta = ps.meta.len;
    out->has_meta = ps.has_meta;
    out->header_len = hn;
    out->data_start = data_start;
    return MF_OK;
}
