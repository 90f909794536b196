/*
 * mf_text.c - text tokens on the cursor and the UTF-8 validator (see mf_text.h).
 */
#include "mf_text.h"

#include <string.h>

void mf_text_init(mf_text *t, const void *data, size_t len, uint64_t base, mf_error *err, const char *ctx) {
    mf_cursor_init(&t->c, data, len, base, err);
    t->ctx = ctx;
}

int mf_text_bad(mf_text *t, const char *what) {
    mf_fail(t->c.err, MF_ERR_CORRUPT, mf_tell(&t->c), "%s: %s", t->ctx, what);
    return 1;
}

/* corrupt at p (a byte of the text that the cursor has already passed or not yet reached) */
static int bad_at(mf_text *t, const uint8_t *p, const char *what) {
    mf_fail(t->c.err, MF_ERR_CORRUPT, t->c.base + (uint64_t)(p - t->c.start), "%s: %s", t->ctx, what);
    return 1;
}

int mf_text_cut(mf_text *t, const char *what) {
    mf_fail(t->c.err, MF_ERR_TRUNCATED, t->c.base + (uint64_t)(t->c.end - t->c.start), "%s truncated: %s", t->ctx,
            what);
    return 1;
}

int mf_text_fail(mf_text *t, const char *what) {
    return t->c.pos == t->c.end ? mf_text_cut(t, what) : mf_text_bad(t, what);
}

/* ========================================================================================== */
/* Strings                                                                                    */
/* ========================================================================================== */

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

/* Decode the JSON escapes of raw[0:n] (a string's content, already scanned: every '\\' has a
 * byte after it) into the arena. The output is never longer than the input: an escape of 2 bytes
 * gives 1, \uXXXX (6) gives at most 3, a surrogate pair (12) gives 4. */
static int json_unescape(mf_text *t, const uint8_t *raw, size_t n, mf_arena *a, const uint8_t **s, uint32_t *on) {
    uint8_t *out = (uint8_t *)mf_arena_alloc(a, n ? n : 1, t->c.err, t->c.base + (uint64_t)(raw - t->c.start));
    if (out == NULL) return 1;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (raw[i] != '\\') {
            out[o++] = raw[i];
            continue;
        }
        const uint8_t *esc = raw + i;
        uint8_t e = raw[++i];
        switch (e) {
        case '"': case '\\': case '/': out[o++] = e; break;
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'u': {
            uint32_t cp, lo;
            if (i + 4 >= n || hex4(raw + i + 1, &cp)) return bad_at(t, esc, "invalid \\u escape");
            i += 4;
            if (cp >= 0xD800 && cp < 0xDC00) {
                if (i + 6 >= n || raw[i + 1] != '\\' || raw[i + 2] != 'u' || hex4(raw + i + 3, &lo) || lo < 0xDC00 ||
                    lo >= 0xE000)
                    return bad_at(t, esc, "unpaired surrogate in \\u escape");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                i += 6;
            } else if (cp >= 0xDC00 && cp < 0xE000) {
                return bad_at(t, esc, "unpaired surrogate in \\u escape");
            }
            if (cp < 0x80) {
                out[o++] = (uint8_t)cp;
            } else if (cp < 0x800) {
                out[o++] = (uint8_t)(0xC0 | (cp >> 6));
                out[o++] = (uint8_t)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
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
            return bad_at(t, esc, "invalid escape in a string");
        }
    }
    *s = out;
    *on = (uint32_t)o;
    return 0;
}

int mf_text_string(mf_text *t, int style, mf_arena *a, const uint8_t **s, uint32_t *n) {
    int q = mf_text_peek(t);
    if (!(q == '"' || (style == MF_TEXT_PY && q == '\''))) return mf_text_fail(t, "expected a string");
    const uint8_t *start = t->c.pos + 1, *p = start, *end = t->c.end;
    int escaped = 0;
    if (style == MF_TEXT_JSON) {
        while (p < end && *p != '"') {
            if (*p < 0x20) return bad_at(t, p, "control character in a string");
            if (*p == '\\') {
                escaped = 1;
                if (end - p < 2) break; /* the escaped byte is missing */
                p++;
            }
            p++;
        }
    } else {
        while (p < end && *p != q) {
            if (*p == '\\') return bad_at(t, p, "escape sequence in a string");
            if (*p == '\n') return bad_at(t, p, "newline in a string");
            p++;
        }
    }
    if (p >= end || *p != q) {
        t->c.pos = end;
        return mf_text_cut(t, "unterminated string");
    }
    size_t raw = (size_t)(p - start);
    t->c.pos = p + 1;
    if (raw > UINT32_MAX) return bad_at(t, start, "string too long");
    if (escaped) return json_unescape(t, start, raw, a, s, n);
    *s = start;
    *n = (uint32_t)raw;
    return 0;
}

/* ========================================================================================== */
/* Numbers and words                                                                          */
/* ========================================================================================== */

static inline int is_digit(uint8_t ch) { return ch >= '0' && ch <= '9'; }

int mf_text_uint(mf_text *t, uint64_t max, unsigned flags, uint64_t *out) {
    int ch = mf_text_peek(t);
    if (ch < '0' || ch > '9') return mf_text_fail(t, "expected a non-negative integer");
    const uint8_t *p = t->c.pos, *end = t->c.end;
    if (*p == '0' && p + 1 < end && is_digit(p[1])) return mf_text_bad(t, "integer with a leading zero");
    uint64_t v = 0;
    while (p < end && is_digit(*p)) {
        if (mf_mul_u64(v, 10, &v) || mf_add_u64(v, (uint64_t)(*p - '0'), &v) || v > max)
            return mf_text_bad(t, "integer too large");
        p++;
    }
    if (p < end) {
        if ((flags & MF_TEXT_NO_FRACTION) && (*p == '.' || *p == 'e' || *p == 'E'))
            return mf_text_bad(t, "expected an integer, got a float");
        if ((flags & MF_TEXT_L_SUFFIX) && (*p == 'L' || *p == 'l')) p++;
    }
    t->c.pos = p;
    *out = v;
    return 0;
}

/* digits at p: at least one (else corrupt, or truncated at the end); returns the end of the run */
static const uint8_t *digits(mf_text *t, const uint8_t *p) {
    if (p == t->c.end) {
        mf_text_cut(t, "the text ends inside a number");
        return NULL;
    }
    if (!is_digit(*p)) {
        bad_at(t, p, "invalid number");
        return NULL;
    }
    while (p < t->c.end && is_digit(*p)) p++;
    return p;
}

int mf_text_json_number(mf_text *t) {
    mf_text_skip_ws(t);
    const uint8_t *p = t->c.pos, *end = t->c.end;
    if (p < end && *p == '-') p++;
    if (p < end && *p == '0') p++;
    else if ((p = digits(t, p)) == NULL) return 1;
    if (p < end && *p == '.' && (p = digits(t, p + 1)) == NULL) return 1;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if ((p = digits(t, p)) == NULL) return 1;
    }
    t->c.pos = p;
    return 0;
}

int mf_text_word(mf_text *t, const char *word, int ident) {
    size_t n = strlen(word);
    mf_text_skip_ws(t);
    size_t left = (size_t)(t->c.end - t->c.pos);
    if (left < n) {
        if (memcmp(t->c.pos, word, left) != 0) return 0;
        mf_text_cut(t, "the text ends inside a word");
        return -1;
    }
    if (memcmp(t->c.pos, word, n) != 0) return 0;
    if (ident && left > n) {
        uint8_t ch = t->c.pos[n];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' || is_digit(ch)) return 0;
    }
    t->c.pos += n;
    return 1;
}

/* ========================================================================================== */
/* UTF-8                                                                                      */
/* ========================================================================================== */

size_t mf_utf8_invalid_at(const uint8_t *s, size_t n, unsigned flags, int *cut) {
    size_t i = 0;
    if (cut) *cut = 0;
    while (i < n) {
        /* ASCII eight bytes at a time: headers and names are mostly ASCII */
        while (n - i >= 8) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i == n) break;
        uint8_t b = s[i];
        if (b < 0x80) {
            i++;
            continue;
        }
        size_t k;
        uint8_t lo = 0x80, hi = 0xBF; /* the range of the second byte (Unicode table 3-7) */
        if (b >= 0xC2 && b <= 0xDF) {
            k = 1;
        } else if (b >= 0xE0 && b <= 0xEF) {
            k = 2;
            if (b == 0xE0) lo = 0xA0;                                        /* overlong */
            else if (b == 0xED && !(flags & MF_UTF8_SURROGATES)) hi = 0x9F;  /* surrogates */
        } else if (b >= 0xF0 && b <= 0xF4) {
            k = 3;
            if (b == 0xF0) lo = 0x90;      /* overlong */
            else if (b == 0xF4) hi = 0x8F; /* above U+10FFFF */
        } else {
            return i; /* a continuation byte, C0/C1 (overlong) or F5..FF */
        }
        for (size_t m = 1; m <= k; m++) {
            if (i + m == n) {
                if (cut) *cut = 1;
                return i;
            }
            uint8_t x = s[i + m];
            if (x < lo || x > hi) return i;
            lo = 0x80;
            hi = 0xBF;
        }
        i += k + 1;
    }
    return SIZE_MAX;
}
