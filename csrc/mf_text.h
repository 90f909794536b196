/*
 * mf_text.h - text tokens on the bounds-checked cursor, for the headers that are written as
 * text: the safetensors JSON header (mf_safetensors.c) and the .npy dict literal (mf_npy.c).
 * Also the one UTF-8 validator (mf_safetensors.c, mf_pickle.c).
 *
 * The rule every function here keeps: c.pos never passes c.end. Where the text ends before the
 * token it needs, the error is MF_ERR_TRUNCATED at the end offset (where the missing text would
 * start); a byte that is there but wrong is MF_ERR_CORRUPT at that byte. Messages read
 * "<ctx>: <what>" (corrupt) or "<ctx> truncated: <what>" (truncated), ctx naming the header.
 *
 * Only this file and mf_core.h move a cursor's pos by hand (tests/test_c_lint.py checks it);
 * the tokenizers above use these functions or mf_skip.
 */
#ifndef MF_TEXT_H
#define MF_TEXT_H

#include "mf_core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mf_text {
    mf_cursor c;
    const char *ctx; /* message prefix: "safetensors header", "npy header" */
} mf_text;

void mf_text_init(mf_text *t, const void *data, size_t len, uint64_t base, mf_error *err, const char *ctx);

/* Record MF_ERR_CORRUPT at the current position ("<ctx>: <what>"); returns 1. */
int mf_text_bad(mf_text *t, const char *what);
/* Record MF_ERR_TRUNCATED at the end ("<ctx> truncated: <what>"); returns 1. */
int mf_text_cut(mf_text *t, const char *what);
/* mf_text_cut when the text is used up, else mf_text_bad: for "the next token is not what it
 * must be" after mf_text_peek. */
int mf_text_fail(mf_text *t, const char *what);

/* JSON's and Python's insignificant whitespace. */
static inline int mf_text_is_ws(uint8_t ch) { return ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t'; }

static inline void mf_text_skip_ws(mf_text *t) {
    while (t->c.pos < t->c.end && mf_text_is_ws(*t->c.pos)) t->c.pos++;
}

/* The next byte after whitespace (the cursor stops at it), or -1 at the end. Records nothing. */
static inline int mf_text_peek(mf_text *t) {
    mf_text_skip_ws(t);
    return t->c.pos < t->c.end ? *t->c.pos : -1;
}

/* After whitespace: if the next byte is ch, consume it and return 1; else return 0. */
static inline int mf_text_accept(mf_text *t, uint8_t ch) {
    if (mf_text_peek(t) != ch) return 0;
    t->c.pos++;
    return 1;
}

/* After whitespace, byte ch must follow: consumed, returns 0; else fails (what), returns 1. */
static inline int mf_text_expect(mf_text *t, uint8_t ch, const char *what) {
    if (mf_text_accept(t, ch)) return 0;
    return mf_text_fail(t, what);
}

/* The separator after an item of a list or object: ',' gives *closed = 0, `close` gives
 * *closed = 1 (both consumed); anything else fails (what). Returns 0 or 1 on failure. */
static inline int mf_text_next(mf_text *t, uint8_t close, int *closed, const char *what) {
    int ch = mf_text_peek(t);
    if (ch == ',' || ch == close) {
        t->c.pos++;
        *closed = ch == close;
        return 0;
    }
    return mf_text_fail(t, what);
}

/* String styles for mf_text_string. */
enum {
    MF_TEXT_JSON = 0, /* "...": control characters refused, escapes decoded (needs the arena) */
    MF_TEXT_PY = 1,   /* '...' or "...": a Python literal as numpy writes it; no escapes, no newline */
};

/* A quoted string after whitespace. *s, *n receive its content: a pointer into the text when it
 * holds no escape, else decoded UTF-8 in the arena (JSON \uXXXX escapes, surrogate pairs joined,
 * lone surrogates refused). Returns 0 or 1 on failure. */
int mf_text_string(mf_text *t, int style, mf_arena *a, const uint8_t **s, uint32_t *n);

/* Flags for mf_text_uint. */
enum {
    MF_TEXT_NO_FRACTION = 1u << 0, /* '.', 'e', 'E' after the digits: "expected an integer, got a float" */
    MF_TEXT_L_SUFFIX = 1u << 1,    /* accept Python 2's 'L' / 'l' suffix */
};

/* A non-negative decimal integer after whitespace, without leading zeros, at most max.
 * Returns 0 or 1 on failure. */
int mf_text_uint(mf_text *t, uint64_t max, unsigned flags, uint64_t *out);

/* A JSON number after whitespace (RFC 8259: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?, the
 * grammar serde_json checks when it skips a value), skipped. Returns 0 or 1 on failure. */
int mf_text_json_number(mf_text *t);

/* After whitespace, the bytes of `word`, and with `ident` no identifier character after them.
 * Returns 1 (consumed) when they are there, 0 (nothing consumed, nothing recorded) when they are
 * not, -1 with MF_ERR_TRUNCATED when the text ends inside a prefix of the word. */
int mf_text_word(mf_text *t, const char *word, int ident);

/* ------------------------------------------------------------------------------------------ */
/* UTF-8 */

enum {
    MF_UTF8_SURROGATES = 1u << 0, /* accept encoded U+D800..U+DFFF (CPython's 'surrogatepass') */
};

/* Whether s[0:n] is well-formed UTF-8 (Unicode table 3-7: shortest form, <= U+10FFFF, no
 * surrogates unless MF_UTF8_SURROGATES). Returns SIZE_MAX when it is, else the index of the
 * first bad sequence; then *cut (when not NULL) is 1 if that sequence is a correct beginning
 * that the end of s cuts short, 0 if it is wrong in itself. */
size_t mf_utf8_invalid_at(const uint8_t *s, size_t n, unsigned flags, int *cut);

#ifdef __cplusplus
}
#endif
#endif /* MF_TEXT_H */
