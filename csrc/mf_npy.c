/*
 * mf_npy.c - .npy header: magic, version, length, and the dict literal (see mf_npy.h).
 */
#include "mf_npy.h"
#include "mf_magic.h"
#include "mf_text.h"

#include <string.h>

/* ========================================================================================== */
/* Literal tokens (mf_text.h)                                                                 */
/* ========================================================================================== */

typedef mf_text lit;

static int bad(lit *l, const char *what) { return mf_text_bad(l, what); }

static int string(lit *l, const uint8_t **s, uint32_t *n) { return mf_text_string(l, MF_TEXT_PY, NULL, s, n); }

/* After whitespace, a list literal of strings, numbers, tuples and lists (a structured descr):
 * checked to be balanced brackets and quoted strings (which may hold escapes); *s, *n receive
 * its text. */
static int list_span(lit *l, const uint8_t **s, uint32_t *n) {
    int depth = 0;
    mf_text_skip_ws(l);
    const uint8_t *start = l->c.pos, *p = start, *end = l->c.end;
    while (p < end) {
        uint8_t ch = *p;
        if (ch == '\'' || ch == '"') {
            p++;
            while (p < end && *p != ch) {
                if (*p == '\\') p++;
                if (p < end) p++;
            }
            if (p >= end) {
                mf_skip(&l->c, (size_t)(end - l->c.pos), "npy descr");
                return mf_text_cut(l, "unterminated string in descr");
            }
            p++;
            continue;
        }
        if (ch == '[' || ch == '(') {
            if (++depth > 32) {
                mf_skip(&l->c, (size_t)(p - l->c.pos), "npy descr");
                return mf_fail(l->c.err, MF_ERR_LIMIT, mf_tell(&l->c), "npy descr nested too deep");
            }
        } else if (ch == ']' || ch == ')') {
            if (--depth < 0) {
                mf_skip(&l->c, (size_t)(p - l->c.pos), "npy descr");
                return bad(l, "unbalanced brackets in descr");
            }
            if (depth == 0) {
                mf_skip(&l->c, (size_t)(p + 1 - l->c.pos), "npy descr");
                *s = start;
                *n = (uint32_t)(l->c.pos - start);
                return 0;
            }
        } else if (!(ch == ',' || ch == ' ' || ch == '\n' || ch == '\t' || ch == '-' || ch == '+' || ch == '.' ||
                     ch == '_' || (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))) {
            mf_skip(&l->c, (size_t)(p - l->c.pos), "npy descr");
            return bad(l, "unexpected character in descr");
        }
        p++;
    }
    mf_skip(&l->c, (size_t)(end - l->c.pos), "npy descr");
    return mf_text_cut(l, "unterminated descr list");
}

/* A non-negative integer as Python writes it (Python 2's 'L' suffix accepted). */
static int integer(lit *l, uint64_t *out) { return mf_text_uint(l, (uint64_t)INT64_MAX, MF_TEXT_L_SUFFIX, out); }

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
    if (len < MF_MAGIC_NPY_LEN || memcmp(buf, MF_MAGIC_NPY, MF_MAGIC_NPY_LEN) != 0) {
        /* a correct beginning cut short is a truncated file, anything else is not a .npy */
        int cut = len < MF_MAGIC_NPY_LEN && (len == 0 || memcmp(buf, MF_MAGIC_NPY, len) == 0);
        return mf_fail(err, cut ? MF_ERR_TRUNCATED : MF_ERR_CORRUPT, cut ? base + len : base,
                       "not a .npy file (magic)");
    }
    mf_skip(&c, MF_MAGIC_NPY_LEN, "npy magic");
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
    mf_text_init(&l, hdr, (size_t)h->header_len, hstart, err, "npy header");
    int have_descr = 0, have_fo = 0, have_shape = 0, closed = 0, r;
    if (mf_text_expect(&l, '{', "header is not a dict")) return err->code;
    closed = mf_text_accept(&l, '}');
    while (!closed) {
        const uint8_t *k;
        uint32_t kn;
        if (string(&l, &k, &kn) || mf_text_expect(&l, ':', "expected ':'")) return err->code;
        if (kn == 5 && memcmp(k, "descr", 5) == 0) {
            if (have_descr++) return bad(&l, "duplicate key 'descr'");
            if (mf_text_peek(&l) == '[') {
                h->descr_is_list = 1;
                if (list_span(&l, &h->descr, &h->descr_len)) return err->code;
            } else if (string(&l, &h->descr, &h->descr_len) || type_string(&l, h)) {
                return err->code;
            }
        } else if (kn == 13 && memcmp(k, "fortran_order", 13) == 0) {
            if (have_fo++) return bad(&l, "duplicate key 'fortran_order'");
            if ((r = mf_text_word(&l, "True", 1)) == 0) r = mf_text_word(&l, "False", 1) * 2;
            if (r < 0) return err->code;
            if (r == 0) return mf_text_fail(&l, "fortran_order is not True or False");
            h->fortran_order = r == 1;
        } else if (kn == 5 && memcmp(k, "shape", 5) == 0) {
            int commas = 0, end;
            if (have_shape++) return bad(&l, "duplicate key 'shape'");
            if (mf_text_expect(&l, '(', "shape is not a tuple")) return err->code;
            end = mf_text_accept(&l, ')');
            while (!end) {
                uint64_t d = 0;
                if (h->ndim >= MF_NPY_MAX_DIMS)
                    return mf_fail(err, MF_ERR_LIMIT, mf_tell(&l.c), "npy shape has more than %d dimensions",
                                   MF_NPY_MAX_DIMS);
                if (integer(&l, &d) || mf_text_next(&l, ')', &end, "expected ',' or ')' in shape")) return err->code;
                h->shape[h->ndim++] = d;
                if (!end) {
                    commas++;
                    end = mf_text_accept(&l, ')'); /* a trailing comma: (2,) */
                }
            }
            if (h->ndim == 1 && commas == 0) return bad(&l, "shape is an integer, not a tuple (missing ',')");
        } else {
            return bad(&l, "unexpected key (only descr, fortran_order and shape are allowed)");
        }
        if (mf_text_next(&l, '}', &closed, "expected ',' or '}'")) return err->code;
        if (!closed) closed = mf_text_accept(&l, '}'); /* a trailing comma */
    }
    mf_text_skip_ws(&l);
    while (l.c.pos < l.c.end && *l.c.pos == 0) mf_skip(&l.c, 1, "npy header"); /* tolerate NUL padding */
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
