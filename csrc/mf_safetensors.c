/*
 * mf_safetensors.c - safetensors header: a small strict JSON reader that emits tensor records
 * directly (no intermediate DOM), then the crate's validation (see mf_safetensors.h).
 */
#include "mf_safetensors.h"

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
/* JSON                                                                                       */
/* ========================================================================================== */

typedef struct json {
    mf_cursor c;
    mf_arena *a;
    mf_error *err;
} json;

#define JSON_MAX_DEPTH 64

static void ws(json *j) {
    while (j->c.pos < j->c.end && (*j->c.pos == ' ' || *j->c.pos == '\n' || *j->c.pos == '\r' || *j->c.pos == '\t'))
        j->c.pos++;
}

static int bad(json *j, const char *what) {
    return mf_fail(j->err, MF_ERR_CORRUPT, mf_tell(&j->c), "safetensors header: %s", what);
}

/* Expect byte ch after whitespace. */
static int expect(json *j, uint8_t ch, const char *what) {
    ws(j);
    if (j->c.pos == j->c.end || *j->c.pos != ch) return bad(j, what);
    j->c.pos++;
    return 0;
}

static int peek(json *j) {
    ws(j);
    return j->c.pos < j->c.end ? *j->c.pos : -1;
}

static int hex4(const uint8_t *p, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t ch = p[i];
        int h = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
              : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
        if (h < 0) return 1;
        v = v * 16 + (uint32_t)h;
    }
    *out = v;
    return 0;
}

/* c.pos is at the opening quote; s and n receive the decoded UTF-8 */
static int string(json *j, const uint8_t **s, uint32_t *n) {
    if (expect(j, '"', "expected a string")) return 1;
    const uint8_t *start = j->c.pos;
    int escaped = 0;
    while (j->c.pos < j->c.end && *j->c.pos != '"') {
        if (*j->c.pos < 0x20) return bad(j, "control character in a string");
        if (*j->c.pos == '\\') {
            escaped = 1;
            if (j->c.end - j->c.pos < 2) break;
            j->c.pos++;
        }
        j->c.pos++;
    }
    if (j->c.pos >= j->c.end) return bad(j, "unterminated string");
    size_t raw = (size_t)(j->c.pos - start);
    j->c.pos++;
    if (raw > UINT32_MAX) return bad(j, "string too long");
    if (!escaped) {
        *s = start;
        *n = (uint32_t)raw;
        return 0;
    }
    uint8_t *out = (uint8_t *)mf_arena_alloc(j->a, raw ? raw : 1, j->err, mf_tell(&j->c));
    if (out == NULL) return 1;
    size_t o = 0;
    for (size_t i = 0; i < raw; i++) {
        if (start[i] != '\\') {
            out[o++] = start[i];
            continue;
        }
        uint8_t e = start[++i];
        switch (e) {
        case '"': case '\\': case '/': out[o++] = e; break;
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'u': {
            uint32_t cp, lo;
            if (i + 4 >= raw || hex4(start + i + 1, &cp)) return bad(j, "invalid \\u escape");
            i += 4;
            if (cp >= 0xD800 && cp < 0xDC00) {
                if (i + 6 >= raw || start[i + 1] != '\\' || start[i + 2] != 'u' || hex4(start + i + 3, &lo) ||
                    lo < 0xDC00 || lo >= 0xE000)
                    return bad(j, "unpaired surrogate in \\u escape");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                i += 6;
            } else if (cp >= 0xDC00 && cp < 0xE000) {
                return bad(j, "unpaired surrogate in \\u escape");
            }
            /* 6 input bytes always give at most 4 output bytes, 12 give 4 */
            if (cp < 0x80) out[o++] = (uint8_t)cp;
            else if (cp < 0x800) { out[o++] = (uint8_t)(0xC0 | (cp >> 6)); out[o++] = (uint8_t)(0x80 | (cp & 0x3F)); }
            else if (cp < 0x10000) {
                out[o++] = (uint8_t)(0xE0 | (cp >> 12));
                out[o++] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
                out[o++] = (uint8_t)(0x80 | (cp & 0x3F));
            } else {
                out[o++] = (uint8_t)(0xF0 | (cp >> 18));
                out[o++] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
                out[o++] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
                out[o++] = (uint8_t)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default:
            return bad(j, "invalid escape in a string");
        }
    }
    *s = out;
    *n = (uint32_t)o;
    return 0;
}

/* A non-negative integer that fits in u64, as serde reads a usize. */
static int json_uint(json *j, uint64_t *out) {
    ws(j);
    const uint8_t *p = j->c.pos;
    if (p == j->c.end || *p < '0' || *p > '9') return bad(j, "expected a non-negative integer");
    uint64_t v = 0;
    if (*p == '0' && p + 1 < j->c.end && p[1] >= '0' && p[1] <= '9') return bad(j, "number with a leading zero");
    while (p < j->c.end && *p >= '0' && *p <= '9') {
        if (mf_mul_u64(v, 10, &v) || mf_add_u64(v, (uint64_t)(*p - '0'), &v)) return bad(j, "integer too large");
        p++;
    }
    if (p < j->c.end && (*p == '.' || *p == 'e' || *p == 'E')) return bad(j, "expected an integer, got a float");
    j->c.pos = p;
    *out = v;
    return 0;
}

static int literal(json *j, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(j->c.end - j->c.pos) < n || memcmp(j->c.pos, word, n) != 0) return bad(j, "invalid value");
    j->c.pos += n;
    return 0;
}

/* Skip any JSON value (an unknown field), depth-limited. */
static int skip_value(json *j, int depth) {
    if (depth > JSON_MAX_DEPTH) return mf_fail(j->err, MF_ERR_LIMIT, mf_tell(&j->c), "safetensors header nested too deep");
    int ch = peek(j);
    const uint8_t *s;
    uint32_t n;
    switch (ch) {
    case '"':
        return string(j, &s, &n);
    case '{':
    case '[': {
        uint8_t close = ch == '{' ? '}' : ']';
        j->c.pos++;
        if (peek(j) == close) {
            j->c.pos++;
            return 0;
        }
        for (;;) {
            if (ch == '{' && (string(j, &s, &n) || expect(j, ':', "expected ':'"))) return 1;
            if (skip_value(j, depth + 1)) return 1;
            int nx = peek(j);
            j->c.pos++;
            if (nx == close) return 0;
            if (nx != ',') return bad(j, "expected ',' or a closing bracket");
        }
    }
    case 't': return literal(j, "true");
    case 'f': return literal(j, "false");
    case 'n': return literal(j, "null");
    default:
        if (ch == '-' || (ch >= '0' && ch <= '9')) {
            if (ch == '-') j->c.pos++;
            const uint8_t *p = j->c.pos;
            while (p < j->c.end && ((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E' || *p == '+' || *p == '-'))
                p++;
            if (p == j->c.pos) return bad(j, "invalid number");
            j->c.pos = p;
            return 0;
        }
        return bad(j, "invalid value");
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

/* c.pos at '{' of a tensor info object */
static int tensor_info(parse_state *ps, mf_st_tensor *t) {
    json *j = &ps->j;
    int have_dtype = 0, have_shape = 0, have_offsets = 0;
    if (expect(j, '{', "tensor info must be an object")) return 1;
    if (peek(j) == '}') {
        j->c.pos++;
        return bad(j, "tensor info misses dtype, shape and data_offsets");
    }
    for (;;) {
        const uint8_t *k;
        uint32_t kn;
        if (string(j, &k, &kn) || expect(j, ':', "expected ':'")) return 1;
        if (str_eq(k, kn, "dtype")) {
            const uint8_t *s;
            uint32_t n;
            if (have_dtype++) return bad(j, "duplicate field dtype");
            if (string(j, &s, &n)) return 1;
            t->dtype = 0;
            for (int i = 0; st_dtypes[i].code; i++)
                if (str_eq(s, n, st_dtypes[i].code)) t->dtype = st_dtypes[i].dtype;
            if (t->dtype == 0)
                return mf_fail(j->err, MF_ERR_UNSUPPORTED, mf_tell(&j->c), "safetensors header: unknown dtype '%.*s'",
                               (int)(n > 32 ? 32 : n), (const char *)s);
        } else if (str_eq(k, kn, "shape")) {
            if (have_shape++) return bad(j, "duplicate field shape");
            if (expect(j, '[', "shape must be a list")) return 1;
            mf_vec dims = {0};
            if (peek(j) == ']') j->c.pos++;
            else for (;;) {
                uint64_t *d = (uint64_t *)mf_vec_push(&dims, sizeof *d, j->a, j->err, mf_tell(&j->c));
                if (d == NULL || json_uint(j, d)) return 1;
                int nx = peek(j);
                j->c.pos++;
                if (nx == ']') break;
                if (nx != ',') return bad(j, "expected ',' or ']' in shape");
            }
            if (dims.len > 64) return mf_fail(j->err, MF_ERR_LIMIT, mf_tell(&j->c), "safetensors tensor with more than 64 dimensions");
            t->ndim = (uint32_t)dims.len;
            t->shape = (uint64_t *)dims.items;
        } else if (str_eq(k, kn, "data_offsets")) {
            if (have_offsets++) return bad(j, "duplicate field data_offsets");
            if (expect(j, '[', "data_offsets must be a list") || json_uint(j, &t->begin) ||
                expect(j, ',', "data_offsets must hold two integers") || json_uint(j, &t->end) ||
                expect(j, ']', "data_offsets must hold two integers"))
                return 1;
        } else if (skip_value(j, 1)) {
            return 1;
        }
        int nx = peek(j);
        j->c.pos++;
        if (nx == '}') break;
        if (nx != ',') return bad(j, "expected ',' or '}' in tensor info");
    }
    if (!have_dtype || !have_shape || !have_offsets) return bad(j, "tensor info misses dtype, shape or data_offsets");
    return 0;
}

static int metadata(parse_state *ps) {
    json *j = &ps->j;
    if (peek(j) == 'n') return literal(j, "null");
    if (expect(j, '{', "__metadata__ must be an object of strings")) return 1;
    ps->has_meta = 1;
    if (peek(j) == '}') {
        j->c.pos++;
        return 0;
    }
    for (;;) {
        mf_st_meta *m = (mf_st_meta *)mf_vec_push(&ps->meta, sizeof *m, j->a, j->err, mf_tell(&j->c));
        if (m == NULL) return 1;
        if (string(j, &m->key, &m->key_len) || expect(j, ':', "expected ':'")) return 1;
        if (peek(j) != '"') return bad(j, "__metadata__ values must be strings");
        if (string(j, &m->value, &m->value_len)) return 1;
        int nx = peek(j);
        j->c.pos++;
        if (nx == '}') return 0;
        if (nx != ',') return bad(j, "expected ',' or '}' in __metadata__");
    }
}

/* Well-formed UTF-8 (no surrogates, no overlongs), as Rust's str demands. */
static size_t utf8_invalid_at(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t b = s[i];
        if (b < 0x80) { i++; continue; }
        size_t k;
        uint32_t cp, min;
        if ((b & 0xE0) == 0xC0) { k = 1; cp = b & 0x1F; min = 0x80; }
        else if ((b & 0xF0) == 0xE0) { k = 2; cp = b & 0x0F; min = 0x800; }
        else if ((b & 0xF8) == 0xF0) { k = 3; cp = b & 0x07; min = 0x10000; }
        else return i;
        if (n - i <= k) return i;
        for (size_t m = 1; m <= k; m++) {
            if ((s[i + m] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (s[i + m] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) return i;
        i += k + 1;
    }
    return SIZE_MAX;
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
    size_t bad_at = utf8_invalid_at(h, (size_t)hn);
    if (bad_at != SIZE_MAX) return mf_fail(err, MF_ERR_CORRUPT, 8 + bad_at, "safetensors header is not valid UTF-8");
    if (hn == 0 || h[0] != '{') return mf_fail(err, MF_ERR_CORRUPT, 8, "safetensors header does not start with '{'");

    parse_state ps;
    memset(&ps, 0, sizeof ps);
    mf_cursor_init(&ps.j.c, h, (size_t)hn, 8, err);
    ps.j.a = a;
    ps.j.err = err;
    json *j = &ps.j;
    j->c.pos++;
    if (peek(j) == '}') j->c.pos++;
    else for (;;) {
        const uint8_t *k;
        uint32_t kn;
        if (string(j, &k, &kn) || expect(j, ':', "expected ':'")) return err->code;
        if (str_eq(k, kn, "__metadata__")) {
            if (ps.has_meta) return bad(j, "duplicate __metadata__");
            if (metadata(&ps)) return err->code;
        } else {
            mf_st_tensor *t = (mf_st_tensor *)mf_vec_push(&ps.tensors, sizeof *t, a, err, mf_tell(&j->c));
            if (t == NULL) return err->code;
            memset(t, 0, sizeof *t);
            t->name = k;
            t->name_len = kn;
            if (tensor_info(&ps, t)) return err->code;
        }
        int nx = peek(j);
        j->c.pos++;
        if (nx == '}') break;
        if (nx != ',') return bad(j, "expected ',' or '}' after a tensor");
    }
    ws(j);
    if (j->c.pos != j->c.end) return bad(j, "trailing characters after the header object");

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
    if (expect_begin != data_len)
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
