/*
 * mf_npy.c - .npy header: magic, version, length, and the dict literal (see mf_npy.h).
 */
#include "mf_npy.h"

#include <string.h>

/* ========================================================================================== */
/* Literal tokens                                                                             */
/* ========================================================================================== */

typedef struct lit {
    mf_cursor c;
    mf_error *err;
} lit;

static int bad(lit *l, const char *what) {
    return mf_fail(l->err, MF_ERR_CORRUPT, mf_tell(&l->c), "npy header: %s", what);
}

static void ws(lit *l) {
    while (l->c.pos < l->c.end && (*l->c.pos == ' ' || *l->c.pos == '\t' || *l->c.pos == '\n' || *l->c.pos == '\r'))
        l->c.pos++;
}

static int peek(lit *l) {
    ws(l);
    return l->c.pos < l->c.end ? *l->c.pos : -1;
}

static int expect(lit *l, uint8_t ch, const char *what) {
    if (peek(l) != ch) return bad(l, what);
    l->c.pos++;
    return 0;
}

/* c.pos at a quote; a plain string (no escapes) */
static int string(lit *l, const uint8_t **s, uint32_t *n) {
    int q = peek(l);
    if (q != '\'' && q != '"') return bad(l, "expected a string");
    const uint8_t *start = ++l->c.pos;
    while (l->c.pos < l->c.end && *l->c.pos != q) {
        if (*l->c.pos == '\\') return bad(l, "escape sequence in a string");
        if (*l->c.pos == '\n') return bad(l, "newline in a string");
        l->c.pos++;
    }
    if (l->c.pos == l->c.end) return bad(l, "unterminated string");
    *s = start;
    *n = (uint32_t)(l->c.pos - start);
    l->c.pos++;
    return 0;
}

/* c.pos at '[': skip a list literal of strings, numbers, tuples and lists (structured descr);
 * strings may hold escapes. */
static int list_span(lit *l, const uint8_t **s, uint32_t *n) {
    int depth = 0;
    ws(l);
    const uint8_t *start = l->c.pos;
    while (l->c.pos < l->c.end) {
        uint8_t ch = *l->c.pos;
        if (ch == '\'' || ch == '"') {
            l->c.pos++;
            while (l->c.pos < l->c.end && *l->c.pos != ch) {
                if (*l->c.pos == '\\') l->c.pos++;
                if (l->c.pos < l->c.end) l->c.pos++;
            }
            if (l->c.pos >= l->c.end) return bad(l, "unterminated string in descr");
            l->c.pos++;
            continue;
        }
        if (ch == '[' || ch == '(') {
            if (++depth > 32) return mf_fail(l->err, MF_ERR_LIMIT, mf_tell(&l->c), "npy descr nested too deep");
        } else if (ch == ']' || ch == ')') {
            if (--depth < 0) return bad(l, "unbalanced brackets in descr");
            if (depth == 0) {
                l->c.pos++;
                *s = start;
                *n = (uint32_t)(l->c.pos - start);
                return 0;
            }
        } else if (!(ch == ',' || ch == ' ' || ch == '\n' || ch == '\t' || ch == '-' || ch == '+' || ch == '.' ||
                     ch == '_' || (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))) {
            return bad(l, "unexpected character in descr");
        }
        l->c.pos++;
    }
    return bad(l, "unterminated descr list");
}

static int word(lit *l, const char *w) {
    size_t n = strlen(w);
    ws(l);
    if ((size_t)(l->c.end - l->c.pos) < n || memcmp(l->c.pos, w, n) != 0) return 1;
    const uint8_t *after = l->c.pos + n;
    if (after < l->c.end && ((*after >= 'a' && *after <= 'z') || (*after >= 'A' && *after <= 'Z') || *after == '_'))
        return 1;
    l->c.pos = after;
    return 0;
}

/* A non-negative integer as Python writes it (Python 2's 'L' suffix accepted). */
static int integer(lit *l, uint64_t *out) {
    ws(l);
    const uint8_t *p = l->c.pos;
    if (p == l->c.end || *p < '0' || *p > '9') return bad(l, "expected a non-negative integer in shape");
    if (*p == '0' && p + 1 < l->c.end && p[1] >= '0' && p[1] <= '9') return bad(l, "integer with a leading zero");
    uint64_t v = 0;
    while (p < l->c.end && *p >= '0' && *p <= '9') {
        if (mf_mul_u64(v, 10, &v) || mf_add_u64(v, (uint64_t)(*p - '0'), &v) || v > (uint64_t)INT64_MAX)
            return bad(l, "shape dimension too large");
        p++;
    }
    if (p < l->c.end && (*p == 'L' || *p == 'l')) p++;
    l->c.pos = p;
    *out = v;
    return 0;
}

/* ========================================================================================== */
/* descr type strings                                                                         */
/* ========================================================================================== */

static int map_dtype(char kind, uint64_t size) {
    switch (kind) {
    case 'b': return size == 1 ? MF_DT_BOOL : MF_DT_UNKNOWN;
    case 'i':
        return size == 1 ? MF_DT_INT8 : size == 2 ? MF_DT_INT16 : size == 4 ? MF_DT_INT32 : size == 8 ? MF_DT_INT64
                                                                                                   : MF_DT_UNKNOWN;
    case 'u':
        return size == 1 ? MF_DT_UINT8 : size == 2 ? MF_DT_UINT16 : size == 4 ? MF_DT_UINT32
             : size == 8 ? MF_DT_UINT64 : MF_DT_UNKNOWN;
    case 'f':
        return size == 2 ? MF_DT_FLOAT16 : size == 4 ? MF_DT_FLOAT32 : size == 8 ? MF_DT_FLOAT64 : MF_DT_UNKNOWN;
    case 'c': return size == 8 ? MF_DT_COMPLEX64 : size == 16 ? MF_DT_COMPLEX128 : MF_DT_UNKNOWN;
    default: return MF_DT_UNKNOWN;
    }
}

/* '[<>|=]?' kind digits? ('[' unit ']')? */
static int type_string(lit *l, mf_npy_header *h) {
    const uint8_t *s = h->descr, *e = h->descr + h->descr_len;
    if (s < e && (*s == '<' || *s == '>' || *s == '|' || *s == '=')) h->byteorder = (char)*s++;
    if (s == e || !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z'))) return bad(l, "descr is not a type string");
    h->kind = (char)*s++;
    uint64_t size = 0;
    while (s < e && *s >= '0' && *s <= '9') {
        if (mf_mul_u64(size, 10, &size) || mf_add_u64(size, (uint64_t)(*s - '0'), &size) || size > (1u << 30))
            return bad(l, "descr item size too large");
        s++;
    }
    if (s < e && *s == '[') {
        while (s < e && *s != ']') {
            if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '[' ||
                  *s == '/'))
                return bad(l, "descr unit is invalid");
            s++;
        }
        if (s == e) return bad(l, "descr unit is not closed");
        s++;
    }
    if (s != e) return bad(l, "descr is not a type string");
    h->itemsize = size;
    h->is_object = h->kind == 'O';
    h->dtype = map_dtype(h->kind, size);
    return 0;
}

/* ========================================================================================== */
/* Header                                                                                     */
/* ========================================================================================== */

int mf_npy_parse(const uint8_t *buf, size_t len, uint64_t base, mf_npy_header *h, mf_error *err) {
    mf_cursor c;
    uint16_t hl16;
    uint32_t hl32;
    const uint8_t *hdr;
    memset(h, 0, sizeof *h);
    mf_cursor_init(&c, buf, len, base, err);
    if (len < 6 || memcmp(buf, "\x93NUMPY", 6) != 0)
        return mf_fail(err, len < 6 ? MF_ERR_TRUNCATED : MF_ERR_CORRUPT, base, "not a .npy file (magic)");
    c.pos += 6;
    if (mf_u8(&c, &h->major, "npy version") || mf_u8(&c, &h->minor, "npy version")) return err->code;
    if (h->major == 1) {
        if (mf_u16le(&c, &hl16, "npy header length")) return err->code;
        h->header_len = hl16;
    } else if (h->major == 2 || h->major == 3) {
        if (mf_u32le(&c, &hl32, "npy header length")) return err->code;
        h->header_len = hl32;
    } else {
        return mf_fail(err, MF_ERR_UNSUPPORTED, base + 6, "npy format version %u.%u is not supported", h->major,
                       h->minor);
    }
    if (h->header_len > MF_NPY_MAX_HEADER)
        return mf_fail(err, MF_ERR_LIMIT, base + 8, "npy header of %llu bytes is larger than %u",
                       (unsigned long long)h->header_len, MF_NPY_MAX_HEADER);
    uint64_t hstart = mf_tell(&c);
    if (mf_take(&c, (size_t)h->header_len, &hdr, "npy header")) return err->code;
    h->data_offset = mf_tell(&c);

    lit l;
    mf_cursor_init(&l.c, hdr, (size_t)h->header_len, hstart, err);
    l.err = err;
    int have_descr = 0, have_fo = 0, have_shape = 0;
    if (expect(&l, '{', "header is not a dict")) return err->code;
    while (peek(&l) != '}') {
        const uint8_t *k;
        uint32_t kn;
        if (string(&l, &k, &kn) || expect(&l, ':', "expected ':'")) return err->code;
        if (kn == 5 && memcmp(k, "descr", 5) == 0) {
            if (have_descr++) return bad(&l, "duplicate key 'descr'");
            if (peek(&l) == '[') {
                h->descr_is_list = 1;
                if (list_span(&l, &h->descr, &h->descr_len)) return err->code;
            } else if (string(&l, &h->descr, &h->descr_len) || type_string(&l, h)) {
                return err->code;
            }
        } else if (kn == 13 && memcmp(k, "fortran_order", 13) == 0) {
            if (have_fo++) return bad(&l, "duplicate key 'fortran_order'");
            if (word(&l, "True") == 0) h->fortran_order = 1;
            else if (word(&l, "False") == 0) h->fortran_order = 0;
            else return bad(&l, "fortran_order is not True or False");
        } else if (kn == 5 && memcmp(k, "shape", 5) == 0) {
            if (have_shape++) return bad(&l, "duplicate key 'shape'");
            if (expect(&l, '(', "shape is not a tuple")) return err->code;
            int commas = 0;
            while (peek(&l) != ')') {
                uint64_t d = 0;
                if (h->ndim >= MF_NPY_MAX_DIMS)
                    return mf_fail(err, MF_ERR_LIMIT, mf_tell(&l.c), "npy shape has more than %d dimensions",
                                   MF_NPY_MAX_DIMS);
                if (integer(&l, &d)) return err->code;
                h->shape[h->ndim++] = d;
                if (peek(&l) == ',') {
                    l.c.pos++;
                    commas++;
                } else if (peek(&l) != ')') {
                    return bad(&l, "expected ',' or ')' in shape");
                }
            }
            l.c.pos++;
            if (h->ndim == 1 && commas == 0) return bad(&l, "shape is an integer, not a tuple (missing ',')");
        } else {
            return bad(&l, "unexpected key (only descr, fortran_order and shape are allowed)");
        }
        if (peek(&l) == ',') l.c.pos++;
        else if (peek(&l) != '}') return bad(&l, "expected ',' or '}'");
    }
    l.c.pos++;
    ws(&l);
    while (l.c.pos < l.c.end && *l.c.pos == 0) l.c.pos++; /* tolerate NUL padding */
    if (l.c.pos != l.c.end) return bad(&l, "bytes after the header dict");
    if (!have_descr || !have_fo || !have_shape)
        return mf_fail(err, MF_ERR_CORRUPT, hstart, "npy header misses %s",
                       !have_descr ? "'descr'" : !have_fo ? "'fortran_order'" : "'shape'");
    h->numel = 1;
    for (uint32_t i = 0; i < h->ndim; i++)
        if (mf_mul_u64(h->numel, h->shape[i], &h->numel) || h->numel > (uint64_t)INT64_MAX)
            return mf_fail(err, MF_ERR_CORRUPT, hstart, "npy element count overflows");
    return MF_OK;
}
