/*
 * mf_pickle.c - symbolic pickle interpreter (see mf_pickle.h).
 *
 * Semantics follow CPython's C unpickler (Modules/_pickle.c) where it matters for what a
 * real load would do: the split object/mark stacks (POP may pop a mark), MEMOIZE keys equal to
 * the number of memo entries, STACK_GLOBAL taking its operands from the stack (so from the memo
 * or from computed values), errors for underflow, missing memo keys and bad lengths.
 */
#include "mf_pickle.h"
#include "mf_text.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ========================================================================================== */
/* Nodes, stack, memo                                                                         */
/* ========================================================================================== */

static inline mf_pv *new_node(mf_pkl *p, int kind, uint8_t op, uint64_t offset) {
    mf_pv *v = (mf_pv *)mf_arena_alloc(p->arena, sizeof(mf_pv), p->err, offset);
    if (v == NULL) return NULL;
    memset(v, 0, sizeof *v);
    v->kind = (uint8_t)kind;
    v->op = op;
    v->tag = -1;
    v->offset = offset;
    return v;
}

void mf_pkl_init(mf_pkl *p, mf_arena *a, mf_error *err) {
    memset(p, 0, sizeof *p);
    p->arena = a;
    p->err = err;
    p->protocol = -1;
}

/* A node that a tree walk would descend into (items, call parts, state, set items). */
static int has_children(const mf_pv *v) {
    if (v->state != NULL || v->extra != NULL) return 1;
    switch (v->kind) {
    case MF_PV_NONE: case MF_PV_BOOL: case MF_PV_INT: case MF_PV_BIGINT: case MF_PV_FLOAT:
    case MF_PV_STR: case MF_PV_BYTES: case MF_PV_BYTEARRAY: case MF_PV_EXT: case MF_PV_BUFFER:
        return 0;
    case MF_PV_GLOBAL:
        return (v->flags & MF_PVF_COMPUTED) != 0;
    default:
        return 1;
    }
}

/* v is pushed again (GET, DUP): several places now hold it. */
static void mark_shared(mf_pkl *p, mf_pv *v) {
    v->flags |= MF_PVF_SHARED;
    if (has_children(v)) p->shared_refs++;
}

static inline int push(mf_pkl *p, mf_pv *v, uint64_t at) {
    if (v == NULL) return 1;
    if (p->max_stack && p->sp >= p->max_stack)
        return mf_fail(p->err, MF_ERR_LIMIT, at, "pickle stack deeper than %zu values", p->max_stack);
    if (p->sp == p->stack_cap) {
        size_t ncap = p->stack_cap ? p->stack_cap * 2 : 256;
        mf_pv **ns = (mf_pv **)mf_arena_alloc(p->arena, ncap * sizeof *ns, p->err, at);
        if (ns == NULL) return 1;
        if (p->sp) memcpy(ns, p->stack, p->sp * sizeof *ns);
        p->stack = ns;
        p->stack_cap = ncap;
    }
    p->stack[p->sp++] = v;
    if (p->sp > p->stack_max) p->stack_max = p->sp;
    return 0;
}

static inline size_t fence(const mf_pkl *p) { return p->nmarks ? p->marks[p->nmarks - 1] : 0; }

static inline mf_pv *pop(mf_pkl *p, uint64_t at) {
    if (p->sp <= fence(p)) {
        mf_fail(p->err, MF_ERR_CORRUPT, at, "pickle stack underflow");
        return NULL;
    }
    return p->stack[--p->sp];
}

static inline mf_pv *top(mf_pkl *p, uint64_t at) {
    if (p->sp <= fence(p)) {
        mf_fail(p->err, MF_ERR_CORRUPT, at, "pickle stack underflow");
        return NULL;
    }
    return p->stack[p->sp - 1];
}

static int push_mark(mf_pkl *p, uint64_t at) {
    if (p->nmarks == p->marks_cap) {
        size_t ncap = p->marks_cap ? p->marks_cap * 2 : 64;
        size_t *nm = (size_t *)mf_arena_alloc(p->arena, ncap * sizeof *nm, p->err, at);
        if (nm == NULL) return 1;
        if (p->nmarks) memcpy(nm, p->marks, p->nmarks * sizeof *nm);
        p->marks = nm;
        p->marks_cap = ncap;
    }
    p->marks[p->nmarks++] = p->sp;
    if (p->nmarks > p->marks_max) p->marks_max = p->nmarks;
    return 0;
}

/* Pop the topmost mark; *first = index of the first item above it. */
static int pop_mark(mf_pkl *p, size_t *first, uint64_t at) {
    if (p->nmarks == 0) return mf_fail(p->err, MF_ERR_CORRUPT, at, "pickle MARK not found");
    *first = p->marks[--p->nmarks];
    return 0;
}

/* Items stack[first:sp] into a fresh array of n pointers. */
static mf_pv **take_items(mf_pkl *p, size_t first, size_t *n, uint64_t at) {
    *n = p->sp - first;
    if (*n > UINT32_MAX) {
        mf_fail(p->err, MF_ERR_LIMIT, at, "pickle container with more than 2^32 items");
        return NULL;
    }
    mf_pv **items = (mf_pv **)mf_arena_alloc(p->arena, (*n ? *n : 1) * sizeof *items, p->err, at);
    if (items == NULL) return NULL;
    if (*n) memcpy(items, p->stack + first, *n * sizeof *items);
    p->sp = first;
    return items;
}

static int add_items(mf_pkl *p, mf_pv *c, mf_pv **src, size_t n, uint64_t at) {
    uint64_t need;
    if (mf_add_u64(c->n, n, &need) || need > UINT32_MAX)
        return mf_fail(p->err, MF_ERR_LIMIT, at, "pickle container with more than 2^32 items");
    size_t slots = c->kind == MF_PV_DICT ? 2 : 1;
    if (need > c->cap) {
        uint64_t ncap = c->cap ? (uint64_t)c->cap * 2 : 4;
        if (ncap < need) ncap = need;
        if (ncap > UINT32_MAX) ncap = UINT32_MAX;
        mf_pv **ni = (mf_pv **)mf_arena_alloc(p->arena, (size_t)ncap * slots * sizeof *ni, p->err, at);
        if (ni == NULL) return 1;
        if (c->n) memcpy(ni, c->u.items, (size_t)c->n * slots * sizeof *ni);
        c->u.items = ni;
        c->cap = (uint32_t)ncap;
    }
    if (n) memcpy(c->u.items + (size_t)c->n * slots, src, n * slots * sizeof *src);
    c->n = (uint32_t)need;
    return 0;
}

static int event(mf_pkl *p, int kind, uint64_t at, mf_pv *a, mf_pv *b) {
    mf_pkl_event *e = (mf_pkl_event *)mf_vec_push(&p->events, sizeof *e, p->arena, p->err, at);
    if (e == NULL) return 1;
    e->kind = (uint32_t)kind;
    e->pickle = p->pickles;
    e->offset = at;
    e->a = a;
    e->b = b;
    return 0;
}

static mf_pkl_memo_slot *memo_find(mf_pkl *p, uint64_t key) {
    if (p->memo_cap == 0) return NULL;
    size_t mask = p->memo_cap - 1;
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & mask;
    for (;;) {
        mf_pkl_memo_slot *s = &p->memo[i];
        if (s->key == key + 1 || s->key == 0) return s;
        i = (i + 1) & mask;
    }
}

static int memo_put(mf_pkl *p, uint64_t key, mf_pv *v, uint64_t at) {
    if (key >= p->memo_key_max) p->memo_key_max = key + 1;
    /* dense keys: grow the array while keys stay within twice the number of entries */
    if (key >= p->dense_cap && key < 2 * (uint64_t)p->memo_len + 1024) {
        size_t ncap = p->dense_cap ? p->dense_cap * 2 : 64; /* small: most pickles memoize little */
        while (ncap <= key) ncap *= 2;
        mf_pv **nd = (mf_pv **)mf_arena_calloc(p->arena, ncap, sizeof *nd, p->err, at);
        if (nd == NULL) return 1;
        if (p->dense_cap) memcpy(nd, p->dense, p->dense_cap * sizeof *nd);
        p->dense = nd;
        p->dense_cap = ncap;
    }
    if (key < p->dense_cap) {
        if (p->dense[key] == NULL) {
            /* a key may already sit in the hash table from before the array grew */
            mf_pkl_memo_slot *old = memo_find(p, key);
            if (old == NULL || old->key == 0) p->memo_len++;
            else old->value = v;
        }
        p->dense[key] = v;
        return 0;
    }
    if ((p->memo_len + 1) * 2 > p->memo_cap) {
        size_t ncap = p->memo_cap ? p->memo_cap * 2 : 256;
        while ((p->memo_len + 1) * 2 > ncap) ncap *= 2;
        mf_pkl_memo_slot *old = p->memo;
        size_t old_cap = p->memo_cap;
        p->memo = (mf_pkl_memo_slot *)mf_arena_calloc(p->arena, ncap, sizeof *p->memo, p->err, at);
        if (p->memo == NULL) return 1;
        p->memo_cap = ncap;
        for (size_t i = 0; i < old_cap; i++) {
            if (old[i].key == 0) continue;
            *memo_find(p, old[i].key - 1) = old[i];
        }
    }
    mf_pkl_memo_slot *s = memo_find(p, key);
    if (s->key == 0) {
        s->key = key + 1;
        p->memo_len++;
    }
    s->value = v;
    return 0;
}

static mf_pv *memo_get(mf_pkl *p, uint64_t key, uint64_t at) {
    if (key < p->dense_cap && p->dense[key] != NULL) return p->dense[key];
    mf_pkl_memo_slot *s = memo_find(p, key);
    if (s == NULL || s->key == 0) {
        mf_fail(p->err, MF_ERR_CORRUPT, at, "pickle memo value not found at index %llu",
                (unsigned long long)key);
        return NULL;
    }
    return s->value;
}

/* ========================================================================================== */
/* Argument decoding                                                                          */
/* ========================================================================================== */

/* A protocol-0 argument: bytes up to '\n' (excluded); the cursor moves past the newline. */
static int read_line(mf_cursor *c, const uint8_t **s, size_t *n, const char *what) {
    size_t left = mf_remaining(c), avail = c->win != NULL ? mf_win_avail(c->win, c->pos, left) : left;
    const uint8_t *nl = (const uint8_t *)memchr(c->pos, '\n', avail);
    if (nl == NULL && avail < left) return mf_need(c, avail + 1, what); /* MF_ERR_NEED: the rest of the line */
    if (nl == NULL)
        return mf_fail(c->err, MF_ERR_TRUNCATED, mf_tell(c), "pickle %s argument has no newline", what);
    *s = c->pos;
    *n = (size_t)(nl - c->pos);
    c->pos = nl + 1;
    return 0;
}

/* Decimal integer text ([+-]digits, optional trailing 'L' when allow_l). Returns 0 and sets *out
 * when it fits in int64, 2 when it is valid but too big, 1 when it is not a number. */
static int parse_decimal(const uint8_t *s, size_t n, int allow_l, int64_t *out) {
    if (allow_l && n > 0 && s[n - 1] == 'L') n--;
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\r')) n--;
    while (n > 0 && s[0] == ' ') s++, n--;
    size_t i = 0;
    int neg = 0;
    if (i < n && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';
    if (i == n) return 1;
    uint64_t acc = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    int big = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 1;
        if (!big) {
            unsigned d = (unsigned)(s[i] - '0');
            if (acc > (limit - d) / 10) big = 1;
            else acc = acc * 10 + d;
        }
    }
    if (big) return 2;
    *out = neg ? (int64_t)(0 - acc) : (int64_t)acc;
    return 0;
}

static mf_pv *int_node(mf_pkl *p, int64_t v, uint8_t op, uint64_t at) {
    mf_pv *n = new_node(p, MF_PV_INT, op, at);
    if (n) n->u.i = v;
    return n;
}

/* Little-endian two's complement of n bytes (LONG1/LONG4). */
static mf_pv *long_node(mf_pkl *p, const uint8_t *b, size_t n, uint8_t op, uint64_t at) {
    if (n <= 8) {
        uint64_t u = 0;
        for (size_t i = 0; i < n; i++) u |= (uint64_t)b[i] << (8 * i);
        if (n > 0 && n < 8 && (b[n - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * n);
        return int_node(p, (int64_t)u, op, at);
    }
    if (n > UINT32_MAX) {
        mf_fail(p->err, MF_ERR_LIMIT, at, "pickle LONG of %zu bytes", n);
        return NULL;
    }
    mf_pv *v = new_node(p, MF_PV_BIGINT, op, at);
    if (v) {
        v->u.s = b;
        v->n = (uint32_t)n;
    }
    return v;
}

static mf_pv *bytes_node(mf_pkl *p, int kind, const uint8_t *s, uint64_t n, uint8_t op, uint64_t at) {
    if (n > UINT32_MAX) {
        mf_fail(p->err, MF_ERR_LIMIT, at, "pickle string of %llu bytes", (unsigned long long)n);
        return NULL;
    }
    /* UTF-8 as CPython's unpickler decodes it ('surrogatepass': encoded surrogates are accepted) */
    if (kind == MF_PV_STR && mf_utf8_invalid_at(s, (size_t)n, MF_UTF8_SURROGATES, NULL) != SIZE_MAX) {
        mf_fail(p->err, MF_ERR_CORRUPT, at, "pickle string is not valid UTF-8");
        return NULL;
    }
    mf_pv *v = new_node(p, kind, op, at);
    if (v) {
        v->u.s = s;
        v->n = (uint32_t)n;
    }
    return v;
}

static int is_ascii(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] & 0x80) return 0;
    return 1;
}

static int hexval(uint8_t ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* codecs.escape_decode of a protocol-0 STRING body (quotes already removed). */
static mf_pv *escape_decode(mf_pkl *p, const uint8_t *s, size_t n, uint8_t op, uint64_t at) {
    uint8_t *out = (uint8_t *)mf_arena_alloc(p->arena, n ? n : 1, p->err, at);
    if (out == NULL) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = s[i];
        if (ch != '\\' || i + 1 == n) {
            if (ch == '\\') {
                mf_fail(p->err, MF_ERR_CORRUPT, at, "pickle STRING ends with a backslash");
                return NULL;
            }
            out[o++] = ch;
            continue;
        }
        ch = s[++i];
        switch (ch) {
        case '\n': break;
        case '\\': out[o++] = '\\'; break;
        case '\'': out[o++] = '\''; break;
        case '"': out[o++] = '"'; break;
        case 'a': out[o++] = 7; break;
        case 'b': out[o++] = 8; break;
        case 'f': out[o++] = 12; break;
        case 'n': out[o++] = 10; break;
        case 'r': out[o++] = 13; break;
        case 't': out[o++] = 9; break;
        case 'v': out[o++] = 11; break;
        case 'x': {
            int h1 = i + 1 < n ? hexval(s[i + 1]) : -1, h2 = i + 2 < n ? hexval(s[i + 2]) : -1;
            if (h1 < 0 || h2 < 0) {
                mf_fail(p->err, MF_ERR_CORRUPT, at, "pickle STRING has an invalid \\x escape");
                return NULL;
            }
            out[o++] = (uint8_t)(h1 * 16 + h2);
            i += 2;
            break;
        }
        default:
            if (ch >= '0' && ch <= '7') {
                unsigned v = (unsigned)(ch - '0');
                for (int k = 0; k < 2 && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '7'; k++)
                    v = v * 8 + (unsigned)(s[++i] - '0');
                out[o++] = (uint8_t)(v & 0xff);
            } else {
                out[o++] = '\\';
                out[o++] = ch; /* o <= i + 1 here, so the buffer suffices */
            }
        }
    }
    int kind = is_ascii(out, o) ? MF_PV_STR : MF_PV_BYTES;
    return bytes_node(p, kind, out, o, op, at);
}

static size_t utf8_put(uint8_t *o, uint32_t cp) {
    if (cp < 0x80) { o[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) { o[0] = (uint8_t)(0xC0 | (cp >> 6)); o[1] = (uint8_t)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | (cp >> 12));
        o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | (cp >> 18));
    o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* raw-unicode-escape decoding (protocol-0 UNICODE) into UTF-8. */
static mf_pv *raw_unicode_decode(mf_pkl *p, const uint8_t *s, size_t n, uint8_t op, uint64_t at) {
    uint64_t cap;
    if (mf_mul_u64(n, 4, &cap) || cap > SIZE_MAX - 1) {
        mf_fail(p->err, MF_ERR_LIMIT, at, "pickle UNICODE argument too long");
        return NULL;
    }
    uint8_t *out = (uint8_t *)mf_arena_alloc(p->arena, (size_t)cap + 1, p->err, at);
    if (out == NULL) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = s[i];
        if (s[i] == '\\' && i + 1 < n && (s[i + 1] == 'u' || s[i + 1] == 'U')) {
            /* an escape only counts after an even number of backslashes, as in CPython */
            size_t bs = 0;
            for (size_t j = i; j > 0 && s[j - 1] == '\\'; j--) bs++;
            if ((bs & 1) == 0) {
                size_t digits = s[i + 1] == 'u' ? 4 : 8;
                if (i + 2 + digits > n) {
                    mf_fail(p->err, MF_ERR_CORRUPT, at, "pickle UNICODE has a truncated \\%c escape", s[i + 1]);
                    return NULL;
                }
                cp = 0;
                for (size_t k = 0; k < digits; k++) {
                    int h = hexval(s[i + 2 + k]);
                    if (h < 0) {
                        mf_fail(p->err, MF_ERR_CORRUPT, at, "pickle UNICODE has an invalid escape");
                        return NULL;
                    }
                    cp = cp * 16 + (uint32_t)h;
                }
                if (cp > 0x10FFFF) {
                    mf_fail(p->err, MF_ERR_CORRUPT, at, "pickle UNICODE escape beyond U+10FFFF");
                    return NULL;
                }
                i += 1 + digits;
            }
        }
        o += utf8_put(out + o, cp);
    }
    return bytes_node(p, MF_PV_STR, out, o, op, at);
}

/* Decimal text of INT/LONG: an INT node, or a BIGINT holding the text when it exceeds int64. */
static mf_pv *decimal_node(mf_pkl *p, const uint8_t *s, size_t n, uint8_t op, uint64_t at) {
    int64_t iv;
    int r = parse_decimal(s, n, op == 'L', &iv);
    if (r == 1) {
        mf_fail(p->err, MF_ERR_CORRUPT, at, "pickle %s argument is not a number", op == 'I' ? "INT" : "LONG");
        return NULL;
    }
    if (r == 0) return int_node(p, iv, op, at);
    mf_pv *v = bytes_node(p, MF_PV_BIGINT, s, n, op, at);
    if (v) v->flags |= MF_PVF_DECIMAL;
    return v;
}

/* CPython fails when BUILD, APPEND or SETITEM target an int, str, None...: so do we. */
static int check_mutable(mf_pkl *p, const mf_pv *t, const char *what, uint64_t at) {
    switch (t->kind) {
    case MF_PV_NONE: case MF_PV_BOOL: case MF_PV_INT: case MF_PV_BIGINT: case MF_PV_FLOAT:
    case MF_PV_STR: case MF_PV_BYTES:
        return mf_fail(p->err, MF_ERR_CORRUPT, at, "pickle %s on an immutable value", what);
    default:
        return 0;
    }
}

/* Items that a non-container receives (an object's __setitem__/append) go to its `extra`
 * container and are logged: the scanner judges them. */
static mf_pv *extra_of(mf_pkl *p, mf_pv *t, int kind, uint8_t op, uint64_t at) {
    if (t->extra == NULL) {
        t->extra = new_node(p, kind, op, at);
        if (t->flags & MF_PVF_SHARED) p->shared_refs++; /* a shared leaf gains children */
    }
    if (t->extra != NULL && t->extra->kind != kind) {
        mf_fail(p->err, MF_ERR_UNSUPPORTED, at, "pickle both appends and sets items on one object");
        return NULL;
    }
    return t->extra;
}

/* APPEND(S) on a list, ADDITEMS on a set; anything else is an append/add method call. */
static int append_items(mf_pkl *p, mf_pv *t, mf_pv **items, size_t n, uint8_t op, uint64_t at) {
    if (check_mutable(p, t, op == 0x90 ? "ADDITEMS" : "APPEND", at)) return 1;
    int want = op == 0x90 ? MF_PV_SET : MF_PV_LIST;
    if (t->kind == want) return add_items(p, t, items, n, at);
    mf_pv *x = extra_of(p, t, MF_PV_LIST, op, at);
    if (x == NULL || add_items(p, x, items, n, at)) return 1;
    return event(p, MF_EV_APPEND, at, t, NULL);
}

/* SETITEM(S): kv holds npairs key/value pairs. */
static int set_items(mf_pkl *p, mf_pv *t, mf_pv **kv, size_t npairs, uint8_t op, uint64_t at) {
    if (check_mutable(p, t, "SETITEM", at)) return 1;
    if (t->kind == MF_PV_DICT) return add_items(p, t, kv, npairs, at);
    mf_pv *x = extra_of(p, t, MF_PV_DICT, op, at);
    if (x == NULL || add_items(p, x, kv, npairs, at)) return 1;
    return event(p, MF_EV_SETITEM, at, t, NULL);
}

/* ========================================================================================== */
/* The interpreter                                                                            */
/* ========================================================================================== */

#define FAIL_IF(cond) do { if (cond) goto fail; } while (0)

/* buf[0] is the next opcode; base is its file offset. A fresh load resets the stacks and the
 * memo; a resumed one (after MF_PKL_PAUSED) keeps them. */
static int interpret(mf_pkl *p, const uint8_t *buf, size_t len, uint64_t base, mf_pv **root,
                     size_t *consumed, int resume) {
    mf_error *err = p->err;
    mf_cursor c;
    mf_cursor_init(&c, buf, len, base, err);
    *consumed = 0;
    if (resume && !p->paused) return mf_fail(err, MF_ERR_CORRUPT, base, "pickle resumed without a paused load");
    if (!resume) {
        p->sp = 0;
        p->nmarks = 0;
        p->memo = NULL;
        p->memo_len = p->memo_cap = 0;
        p->dense = NULL;
        p->dense_cap = 0;
    }
    p->paused = 0;
    if (p->none_node == NULL) {
        p->none_node = new_node(p, MF_PV_NONE, 'N', base);
        p->true_node = new_node(p, MF_PV_BOOL, 0x88, base);
        p->false_node = new_node(p, MF_PV_BOOL, 0x89, base);
        if (p->true_node == NULL || p->false_node == NULL) return err->code;
        p->true_node->u.i = 1;
    }
    const uint8_t *frame_end = NULL; /* end of the current FRAME, NULL when none is open */
    int result = MF_OK;
    if (resume && p->paused_frame_end != UINT64_MAX) {
        /* the frame open at the pause: it goes on if nothing was skipped inside it */
        if (base < p->paused_frame_end && p->paused_frame_end - base <= len)
            frame_end = buf + (size_t)(p->paused_frame_end - base);
        else if (base != p->paused_frame_end && event(p, MF_EV_FRAME, base, NULL, NULL))
            return err->code;
    }

    for (;;) {
        uint64_t at = mf_tell(&c);
        if (frame_end != NULL) {
            if (c.pos == frame_end) frame_end = NULL;
            else if (c.pos > frame_end) {
                FAIL_IF(event(p, MF_EV_FRAME, at, NULL, NULL));
                frame_end = NULL;
            }
        }
        uint8_t op;
        if (c.pos == c.end) {
            mf_fail(err, MF_ERR_TRUNCATED, at, "pickle data ends before STOP");
            goto fail;
        }
        if (c.win != NULL && mf_need(&c, 1, "pickle opcode")) goto fail;
        op = *c.pos++;
        p->opcodes++;
        if (p->max_opcodes && p->opcodes > p->max_opcodes) {
            mf_fail(err, MF_ERR_LIMIT, at, "pickle has more than %llu opcodes", (unsigned long long)p->max_opcodes);
            goto fail;
        }
        const uint8_t *s;
        size_t n;
        mf_pv *v, *a, *b, *t;
        size_t first = 0;
        int64_t iv = 0;
        switch (op) {
        /* ---- structure ---------------------------------------------------------------- */
        case 0x80: /* PROTO */ {
            uint8_t proto;
            FAIL_IF(mf_u8(&c, &proto, "pickle PROTO"));
            if (proto > 5) {
                mf_fail(err, MF_ERR_UNSUPPORTED, at, "unsupported pickle protocol %u", proto);
                goto fail;
            }
            if ((int)proto > p->protocol) p->protocol = proto;
            break;
        }
        case 0x95: /* FRAME */ {
            uint64_t flen;
            FAIL_IF(mf_u64le(&c, &flen, "pickle FRAME"));
            if (flen > mf_remaining(&c)) {
                mf_fail(err, MF_ERR_TRUNCATED, at, "pickle FRAME of %llu bytes runs past the data",
                        (unsigned long long)flen);
                goto fail;
            }
            if (frame_end != NULL) FAIL_IF(event(p, MF_EV_FRAME, at, NULL, NULL));
            frame_end = c.pos + flen;
            if (flen == 0) frame_end = NULL;
            break;
        }
        case '.': /* STOP */
            v = pop(p, at);
            FAIL_IF(v == NULL);
            if (frame_end != NULL && c.pos != frame_end) FAIL_IF(event(p, MF_EV_FRAME, at, NULL, NULL));
            *root = v;
            *consumed = (size_t)(c.pos - c.start);
            p->pickles++;
            return MF_OK;
        case '(': /* MARK */
            FAIL_IF(push_mark(p, at));
            break;
        case '0': /* POP */
            if (p->sp > fence(p)) p->sp--;
            else if (p->nmarks > 0) p->nmarks--;
            else {
                mf_fail(err, MF_ERR_CORRUPT, at, "pickle stack underflow");
                goto fail;
            }
            break;
        case '1': /* POP_MARK */
            FAIL_IF(pop_mark(p, &first, at));
            p->sp = first;
            break;
        case '2': /* DUP */
            v = top(p, at);
            FAIL_IF(v == NULL || push(p, v, at));
            mark_shared(p, v);
            break;

        /* ---- scalars ------------------------------------------------------------------ */
        case 'N': FAIL_IF(push(p, p->none_node, at)); break;
        case 0x88: FAIL_IF(push(p, p->true_node, at)); break;
        case 0x89: FAIL_IF(push(p, p->false_node, at)); break;
        case 'I': /* INT */
            FAIL_IF(read_line(&c, &s, &n, "INT"));
            if (n == 2 && s[0] == '0' && (s[1] == '0' || s[1] == '1')) {
                FAIL_IF(push(p, s[1] == '1' ? p->true_node : p->false_node, at));
                break;
            }
            FAIL_IF(push(p, decimal_node(p, s, n, op, at), at));
            break;
        case 'L': /* LONG */
            FAIL_IF(read_line(&c, &s, &n, "LONG"));
            FAIL_IF(push(p, decimal_node(p, s, n, op, at), at));
            break;
        case 'J': /* BININT */ {
            uint32_t u;
            FAIL_IF(mf_u32le(&c, &u, "pickle BININT"));
            FAIL_IF(push(p, int_node(p, (int32_t)u, op, at), at));
            break;
        }
        case 'K': /* BININT1 */ {
            uint8_t u;
            FAIL_IF(mf_u8(&c, &u, "pickle BININT1"));
            if (p->small_ints[u] == NULL) p->small_ints[u] = int_node(p, u, op, at);
            FAIL_IF(push(p, p->small_ints[u], at));
            break;
        }
        case 'M': /* BININT2 */ {
            uint16_t u;
            FAIL_IF(mf_u16le(&c, &u, "pickle BININT2"));
            FAIL_IF(push(p, int_node(p, u, op, at), at));
            break;
        }
        case 0x8a: /* LONG1 */ {
            uint8_t u;
            FAIL_IF(mf_u8(&c, &u, "pickle LONG1") || mf_take(&c, u, &s, "pickle LONG1"));
            FAIL_IF(push(p, long_node(p, s, u, op, at), at));
            break;
        }
        case 0x8b: /* LONG4 */ {
            uint32_t u;
            FAIL_IF(mf_u32le(&c, &u, "pickle LONG4"));
            if ((int32_t)u < 0) {
                mf_fail(err, MF_ERR_CORRUPT, at, "pickle LONG4 has a negative byte count");
                goto fail;
            }
            FAIL_IF(mf_take(&c, u, &s, "pickle LONG4"));
            FAIL_IF(push(p, long_node(p, s, u, op, at), at));
            break;
        }
        case 'F': /* FLOAT */ {
            FAIL_IF(read_line(&c, &s, &n, "FLOAT"));
            char tmp[64];
            if (n == 0 || n >= sizeof tmp) {
                mf_fail(err, MF_ERR_CORRUPT, at, "pickle FLOAT argument is not a number");
                goto fail;
            }
            memcpy(tmp, s, n);
            tmp[n] = '\0';
            char *endp;
            double d = strtod(tmp, &endp);
            while (*endp == ' ' || *endp == '\r') endp++;
            if (*endp != '\0') {
                mf_fail(err, MF_ERR_CORRUPT, at, "pickle FLOAT argument is not a number");
                goto fail;
            }
            v = new_node(p, MF_PV_FLOAT, op, at);
            FAIL_IF(v == NULL);
            v->u.f = d;
            FAIL_IF(push(p, v, at));
            break;
        }
        case 'G': /* BINFLOAT: big-endian IEEE double */ {
            FAIL_IF(mf_take(&c, 8, &s, "pickle BINFLOAT"));
            uint64_t u = 0;
            for (int k = 0; k < 8; k++) u = (u << 8) | s[k];
            double d;
            memcpy(&d, &u, sizeof d);
            v = new_node(p, MF_PV_FLOAT, op, at);
            FAIL_IF(v == NULL);
            v->u.f = d;
            FAIL_IF(push(p, v, at));
            break;
        }

        /* ---- strings and bytes -------------------------------------------------------- */
        case 'S': /* STRING */
            FAIL_IF(read_line(&c, &s, &n, "STRING"));
            while (n > 0 && (s[n - 1] == '\r' || s[n - 1] == ' ')) n--;
            if (n < 2 || s[0] != s[n - 1] || (s[0] != '\'' && s[0] != '"')) {
                mf_fail(err, MF_ERR_CORRUPT, at, "pickle STRING argument must be quoted");
                goto fail;
            }
            FAIL_IF(push(p, escape_decode(p, s + 1, n - 2, op, at), at));
            break;
        case 'T': /* BINSTRING */ {
            uint32_t u;
            FAIL_IF(mf_u32le(&c, &u, "pickle BINSTRING"));
            if ((int32_t)u < 0) {
                mf_fail(err, MF_ERR_CORRUPT, at, "pickle BINSTRING has a negative length");
                goto fail;
            }
            FAIL_IF(mf_take(&c, u, &s, "pickle BINSTRING"));
            FAIL_IF(push(p, bytes_node(p, is_ascii(s, u) ? MF_PV_STR : MF_PV_BYTES, s, u, op, at), at));
            break;
        }
        case 'U': /* SHORT_BINSTRING */ {
            uint8_t u;
            FAIL_IF(mf_u8(&c, &u, "pickle SHORT_BINSTRING") || mf_take(&c, u, &s, "pickle SHORT_BINSTRING"));
            FAIL_IF(push(p, bytes_node(p, is_ascii(s, u) ? MF_PV_STR : MF_PV_BYTES, s, u, op, at), at));
            break;
        }
        case 'V': /* UNICODE (raw-unicode-escape) */
            FAIL_IF(read_line(&c, &s, &n, "UNICODE"));
            FAIL_IF(push(p, raw_unicode_decode(p, s, n, op, at), at));
            break;
        case 'X': /* BINUNICODE */ {
            uint32_t u;
            FAIL_IF(mf_u32le(&c, &u, "pickle BINUNICODE") || mf_take(&c, u, &s, "pickle BINUNICODE"));
            FAIL_IF(push(p, bytes_node(p, MF_PV_STR, s, u, op, at), at));
            break;
        }
        case 0x8c: /* SHORT_BINUNICODE */ {
            uint8_t u;
            FAIL_IF(mf_u8(&c, &u, "pickle SHORT_BINUNICODE") || mf_take(&c, u, &s, "pickle SHORT_BINUNICODE"));
            FAIL_IF(push(p, bytes_node(p, MF_PV_STR, s, u, op, at), at));
            break;
        }
        case 0x8d: /* BINUNICODE8 */
        case 0x8e: /* BINBYTES8 */
        case 0x96: /* BYTEARRAY8 */ {
            uint64_t u;
            FAIL_IF(mf_u64le(&c, &u, "pickle 8-byte length"));
            if (u > mf_remaining(&c)) {
                mf_fail(err, MF_ERR_TRUNCATED, at, "pickle string of %llu bytes runs past the data",
                        (unsigned long long)u);
                goto fail;
            }
            FAIL_IF(mf_take(&c, (size_t)u, &s, "pickle string"));
            int kind = op == 0x8d ? MF_PV_STR : op == 0x8e ? MF_PV_BYTES : MF_PV_BYTEARRAY;
            FAIL_IF(push(p, bytes_node(p, kind, s, u, op, at), at));
            break;
        }
        case 'B': /* BINBYTES */ {
            uint32_t u;
            FAIL_IF(mf_u32le(&c, &u, "pickle BINBYTES") || mf_take(&c, u, &s, "pickle BINBYTES"));
            FAIL_IF(push(p, bytes_node(p, MF_PV_BYTES, s, u, op, at), at));
            break;
        }
        case 'C': /* SHORT_BINBYTES */ {
            uint8_t u;
            FAIL_IF(mf_u8(&c, &u, "pickle SHORT_BINBYTES") || mf_take(&c, u, &s, "pickle SHORT_BINBYTES"));
            FAIL_IF(push(p, bytes_node(p, MF_PV_BYTES, s, u, op, at), at));
            break;
        }

        /* ---- containers --------------------------------------------------------------- */
        case ')': /* EMPTY_TUPLE */
        case ']': /* EMPTY_LIST */
        case '}': /* EMPTY_DICT */
        case 0x8f: /* EMPTY_SET */
            v = new_node(p, op == ')' ? MF_PV_TUPLE : op == ']' ? MF_PV_LIST : op == '}' ? MF_PV_DICT : MF_PV_SET,
                         op, at);
            FAIL_IF(push(p, v, at));
            break;
        case 't': /* TUPLE */
        case 'l': /* LIST */
        case 0x91: /* FROZENSET */
        case 'd': /* DICT */ {
            FAIL_IF(pop_mark(p, &first, at));
            mf_pv **items = take_items(p, first, &n, at);
            FAIL_IF(items == NULL);
            int kind = op == 't' ? MF_PV_TUPLE : op == 'l' ? MF_PV_LIST : op == 'd' ? MF_PV_DICT : MF_PV_FROZENSET;
            if (kind == MF_PV_DICT) {
                if (n & 1) {
                    mf_fail(err, MF_ERR_CORRUPT, at, "pickle DICT has an odd number of items");
                    goto fail;
                }
                n /= 2;
            }
            v = new_node(p, kind, op, at);
            FAIL_IF(v == NULL);
            v->u.items = items;
            v->n = v->cap = (uint32_t)n;
            FAIL_IF(push(p, v, at));
            break;
        }
        case 0x85: /* TUPLE1 */
        case 0x86: /* TUPLE2 */
        case 0x87: /* TUPLE3 */ {
            size_t k = (size_t)(op - 0x84);
            if (p->sp < fence(p) + k) {
                mf_fail(err, MF_ERR_CORRUPT, at, "pickle stack underflow");
                goto fail;
            }
            mf_pv **items = take_items(p, p->sp - k, &n, at);
            FAIL_IF(items == NULL);
            v = new_node(p, MF_PV_TUPLE, op, at);
            FAIL_IF(v == NULL);
            v->u.items = items;
            v->n = v->cap = (uint32_t)k;
            FAIL_IF(push(p, v, at));
            break;
        }
        case 'a': /* APPEND */
            v = pop(p, at);
            FAIL_IF(v == NULL);
            t = top(p, at);
            FAIL_IF(t == NULL || append_items(p, t, &v, 1, op, at));
            break;
        case 'e': /* APPENDS */
        case 0x90: /* ADDITEMS */
            FAIL_IF(pop_mark(p, &first, at));
            if (first <= fence(p)) {
                mf_fail(err, MF_ERR_CORRUPT, at, "pickle stack underflow");
                goto fail;
            }
            FAIL_IF(append_items(p, p->stack[first - 1], p->stack + first, p->sp - first, op, at));
            p->sp = first;
            break;
        case 's': /* SETITEM */ {
            mf_pv *kv[2];
            if (p->sp < fence(p) + 3) {
                mf_fail(err, MF_ERR_CORRUPT, at, "pickle stack underflow");
                goto fail;
            }
            kv[0] = p->stack[p->sp - 2];
            kv[1] = p->stack[p->sp - 1];
            p->sp -= 2;
            FAIL_IF(set_items(p, p->stack[p->sp - 1], kv, 1, op, at));
            break;
        }
        case 'u': /* SETITEMS */
            FAIL_IF(pop_mark(p, &first, at));
            if ((p->sp - first) & 1) {
                mf_fail(err, MF_ERR_CORRUPT, at, "pickle SETITEMS has an odd number of items");
                goto fail;
            }
            if (first <= fence(p)) {
                mf_fail(err, MF_ERR_CORRUPT, at, "pickle stack underflow");
                goto fail;
            }
            FAIL_IF(set_items(p, p->stack[first - 1], p->stack + first, (p->sp - first) / 2, op, at));
            p->sp = first;
            break;

        /* ---- memo --------------------------------------------------------------------- */
        case 'p': /* PUT */
        case 'g': /* GET */ {
            FAIL_IF(read_line(&c, &s, &n, op == 'p' ? "PUT" : "GET"));
            if (parse_decimal(s, n, 0, &iv) != 0 || iv < 0) {
                mf_fail(err, MF_ERR_CORRUPT, at, "pickle %s argument is not a valid index", op == 'p' ? "PUT" : "GET");
                goto fail;
            }
            if (op == 'p') goto do_put;
            goto do_get;
        }
        case 'q': /* BINPUT */ {
            uint8_t u;
            FAIL_IF(mf_u8(&c, &u, "pickle BINPUT"));
            iv = u;
            goto do_put;
        }
        case 'r': /* LONG_BINPUT */ {
            uint32_t u;
            FAIL_IF(mf_u32le(&c, &u, "pickle LONG_BINPUT"));
            iv = u;
            goto do_put;
        }
        case 0x94: /* MEMOIZE */
            iv = (int64_t)p->memo_len;
        do_put:
            v = top(p, at);
            FAIL_IF(v == NULL);
            FAIL_IF(memo_put(p, (uint64_t)iv, v, at));
            break;
        case 'h': /* BINGET */ {
            uint8_t u;
            FAIL_IF(mf_u8(&c, &u, "pickle BINGET"));
            iv = u;
            goto do_get;
        }
        case 'j': /* LONG_BINGET */ {
            uint32_t u;
            FAIL_IF(mf_u32le(&c, &u, "pickle LONG_BINGET"));
            iv = u;
        }
        do_get:
            v = memo_get(p, (uint64_t)iv, at);
            FAIL_IF(v == NULL || push(p, v, at));
            mark_shared(p, v);
            break;

        /* ---- imports and calls -------------------------------------------------------- */
        case 'c': /* GLOBAL */
        case 'i': /* INST */ {
            const uint8_t *ms, *ns;
            size_t mn, nn;
            FAIL_IF(read_line(&c, &ms, &mn, op == 'c' ? "GLOBAL" : "INST"));
            FAIL_IF(read_line(&c, &ns, &nn, op == 'c' ? "GLOBAL" : "INST"));
            v = new_node(p, MF_PV_GLOBAL, op, at);
            FAIL_IF(v == NULL);
            v->u.g.mod = bytes_node(p, MF_PV_STR, ms, mn, op, at);
            v->u.g.name = bytes_node(p, MF_PV_STR, ns, nn, op, at);
            FAIL_IF(v->u.g.mod == NULL || v->u.g.name == NULL);
            FAIL_IF(event(p, MF_EV_GLOBAL, at, v, NULL));
            if (op == 'c') {
                FAIL_IF(push(p, v, at));
                break;
            }
            FAIL_IF(pop_mark(p, &first, at));
            mf_pv **items = take_items(p, first, &n, at);
            FAIL_IF(items == NULL);
            a = new_node(p, MF_PV_TUPLE, op, at);
            FAIL_IF(a == NULL);
            a->u.items = items;
            a->n = a->cap = (uint32_t)n;
            t = new_node(p, MF_PV_CALL, op, at);
            FAIL_IF(t == NULL);
            t->u.call.fn = v;
            t->u.call.args = a;
            FAIL_IF(event(p, MF_EV_CALL, at, t, NULL));
            FAIL_IF(push(p, t, at));
            break;
        }
        case 0x93: /* STACK_GLOBAL */ {
            b = pop(p, at);
            FAIL_IF(b == NULL);
            a = pop(p, at);
            FAIL_IF(a == NULL);
            v = new_node(p, MF_PV_GLOBAL, op, at);
            FAIL_IF(v == NULL);
            v->u.g.mod = a;
            v->u.g.name = b;
            if (a->kind != MF_PV_STR || b->kind != MF_PV_STR) v->flags |= MF_PVF_COMPUTED;
            FAIL_IF(event(p, MF_EV_GLOBAL, at, v, NULL));
            FAIL_IF(push(p, v, at));
            break;
        }
        case 'R': /* REDUCE */
        case 0x81: /* NEWOBJ */ {
            a = pop(p, at);
            FAIL_IF(a == NULL);
            b = pop(p, at);
            FAIL_IF(b == NULL);
            v = new_node(p, MF_PV_CALL, op, at);
            FAIL_IF(v == NULL);
            v->u.call.fn = b;
            v->u.call.args = a;
            FAIL_IF(event(p, MF_EV_CALL, at, v, NULL));
            FAIL_IF(push(p, v, at));
            break;
        }
        case 0x92: /* NEWOBJ_EX */ {
            mf_pv *kw = pop(p, at);
            FAIL_IF(kw == NULL);
            a = pop(p, at);
            FAIL_IF(a == NULL);
            b = pop(p, at);
            FAIL_IF(b == NULL);
            v = new_node(p, MF_PV_CALL, op, at);
            FAIL_IF(v == NULL);
            v->u.call.fn = b;
            v->u.call.args = a;
            v->u.call.kwargs = kw;
            FAIL_IF(event(p, MF_EV_CALL, at, v, NULL));
            FAIL_IF(push(p, v, at));
            break;
        }
        case 'o': /* OBJ */ {
            FAIL_IF(pop_mark(p, &first, at));
            if (p->sp == first) {
                mf_fail(err, MF_ERR_CORRUPT, at, "pickle OBJ without a class");
                goto fail;
            }
            b = p->stack[first];
            mf_pv **items = take_items(p, first + 1, &n, at);
            FAIL_IF(items == NULL);
            p->sp = first;
            a = new_node(p, MF_PV_TUPLE, op, at);
            FAIL_IF(a == NULL);
            a->u.items = items;
            a->n = a->cap = (uint32_t)n;
            v = new_node(p, MF_PV_CALL, op, at);
            FAIL_IF(v == NULL);
            v->u.call.fn = b;
            v->u.call.args = a;
            FAIL_IF(event(p, MF_EV_CALL, at, v, NULL));
            FAIL_IF(push(p, v, at));
            break;
        }
        case 'b': /* BUILD */
            a = pop(p, at);
            FAIL_IF(a == NULL);
            t = top(p, at);
            FAIL_IF(t == NULL || check_mutable(p, t, "BUILD", at));
            t->state = a;
            t->flags |= MF_PVF_BUILT;
            if (t->flags & MF_PVF_SHARED) p->shared_refs++; /* a shared leaf may gain children */
            FAIL_IF(event(p, MF_EV_BUILD, at, t, a));
            if (p->pause_on_build) {
                p->paused_frame_end = UINT64_MAX;
                if (frame_end != NULL && c.pos != frame_end)
                    p->paused_frame_end = base + (uint64_t)(frame_end - c.start);
                p->paused = 1;
                *consumed = (size_t)(c.pos - c.start);
                return MF_PKL_PAUSED;
            }
            break;
        case 'P': /* PERSID */
            FAIL_IF(read_line(&c, &s, &n, "PERSID"));
            if (!is_ascii(s, n)) {
                mf_fail(err, MF_ERR_CORRUPT, at, "pickle persistent id in protocol 0 must be ASCII");
                goto fail;
            }
            a = bytes_node(p, MF_PV_STR, s, n, op, at);
            FAIL_IF(a == NULL);
            goto do_persid;
        case 'Q': /* BINPERSID */
            a = pop(p, at);
            FAIL_IF(a == NULL);
        do_persid:
            v = new_node(p, MF_PV_PERSID, op, at);
            FAIL_IF(v == NULL);
            v->u.pid = a;
            FAIL_IF(event(p, MF_EV_PERSID, at, v, NULL));
            FAIL_IF(push(p, v, at));
            break;
        case 0x82: /* EXT1 */
        case 0x83: /* EXT2 */
        case 0x84: /* EXT4 */ {
            size_t k = op == 0x82 ? 1 : op == 0x83 ? 2 : 4;
            FAIL_IF(mf_take(&c, k, &s, "pickle EXT"));
            int64_t code = k == 1 ? s[0] : k == 2 ? mf_load_u16le(s) : (int32_t)mf_load_u32le(s);
            if (code <= 0) {
                mf_fail(err, MF_ERR_CORRUPT, at, "pickle EXT specifies code <= 0");
                goto fail;
            }
            v = new_node(p, MF_PV_EXT, op, at);
            FAIL_IF(v == NULL);
            v->u.i = code;
            FAIL_IF(event(p, MF_EV_EXT, at, v, NULL));
            FAIL_IF(push(p, v, at));
            break;
        }
        case 0x97: /* NEXT_BUFFER */
            v = new_node(p, MF_PV_BUFFER, op, at);
            FAIL_IF(v == NULL);
            FAIL_IF(event(p, MF_EV_BUFFER, at, v, NULL));
            FAIL_IF(push(p, v, at));
            break;
        case 0x98: /* READONLY_BUFFER */
            v = top(p, at);
            FAIL_IF(v == NULL);
            v->flags |= MF_PVF_READONLY;
            break;
        default:
            if (op >= 0x20 && op < 0x7f)
                mf_fail(err, MF_ERR_CORRUPT, at, "invalid pickle opcode '%c'", op);
            else
                mf_fail(err, MF_ERR_CORRUPT, at, "invalid pickle opcode 0x%02x", op);
            goto fail;
        }
    }
fail:
    result = err->code ? err->code : mf_fail(err, MF_ERR_CORRUPT, mf_tell(&c), "pickle error");
    *consumed = (size_t)(c.pos - c.start);
    p->pickles++;
    return result;
}

int mf_pkl_load(mf_pkl *p, const uint8_t *buf, size_t len, uint64_t base, mf_pv **root,
                size_t *consumed) {
    return interpret(p, buf, len, base, root, consumed, 0);
}

int mf_pkl_resume(mf_pkl *p, const uint8_t *buf, size_t len, uint64_t base, mf_pv **root,
                  size_t *consumed) {
    return interpret(p, buf, len, base, root, consumed, 1);
}

/* ========================================================================================== */
/* Helpers for walkers                                                                        */
/* ========================================================================================== */

int mf_pv_is_str(const mf_pv *v, const char *s) {
    if (v == NULL || v->kind != MF_PV_STR) return 0;
    size_t n = strlen(s);
    return v->n == n && memcmp(v->u.s, s, n) == 0;
}

int mf_pv_global_is(const mf_pv *g, const char *mod, const char *name) {
    return g != NULL && g->kind == MF_PV_GLOBAL && !(g->flags & MF_PVF_COMPUTED) &&
           mf_pv_is_str(g->u.g.name, name) && mf_pv_is_str(g->u.g.mod, mod);
}

const mf_pv *mf_pv_call_global(const mf_pv *call) {
    if (call == NULL || call->kind != MF_PV_CALL) return NULL;
    const mf_pv *fn = call->u.call.fn;
    if (fn == NULL || fn->kind != MF_PV_GLOBAL || (fn->flags & MF_PVF_COMPUTED)) return NULL;
    return fn;
}

/* ========================================================================================== */
/* Pointer map and tree expansion                                                             */
/* ========================================================================================== */

static size_t pv_hash(const mf_pv *key, size_t mask) {
    uint64_t h = (uint64_t)(uintptr_t)key;
    h = (h >> 4) * 0x9E3779B97F4A7C15ull;
    return (size_t)(h ^ (h >> 29)) & mask;
}

uint64_t *mf_pv_map_find(const mf_pv_map *m, const mf_pv *key) {
    if (m->cap == 0) return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = pv_hash(key, mask);; i = (i + 1) & mask) {
        if (m->keys[i] == key) return &m->vals[i];
        if (m->keys[i] == NULL) return NULL;
    }
}

static int pv_map_grow(mf_pv_map *m, mf_arena *a, mf_error *err, uint64_t at) {
    size_t ncap = m->cap ? m->cap * 2 : 64;
    const mf_pv **keys = (const mf_pv **)mf_arena_calloc(a, ncap, sizeof *keys, err, at);
    uint64_t *vals = keys == NULL ? NULL : (uint64_t *)mf_arena_alloc(a, ncap * sizeof *vals, err, at);
    if (vals == NULL) return 1;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->keys[i] == NULL) continue;
        size_t j = pv_hash(m->keys[i], ncap - 1);
        while (keys[j] != NULL) j = (j + 1) & (ncap - 1);
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    m->keys = keys;
    m->vals = vals;
    m->cap = ncap;
    return 0;
}

uint64_t *mf_pv_map_slot(mf_pv_map *m, const mf_pv *key, mf_arena *a, mf_error *err, uint64_t at, int *created) {
    *created = 0;
    uint64_t *found = mf_pv_map_find(m, key);
    if (found != NULL) return found;
    if ((m->len + 1) * 2 > m->cap && pv_map_grow(m, a, err, at)) return NULL;
    size_t mask = m->cap - 1, i = pv_hash(key, mask);
    while (m->keys[i] != NULL) i = (i + 1) & mask;
    m->keys[i] = key;
    m->vals[i] = 0;
    m->len++;
    *created = 1;
    return &m->vals[i];
}

/* Children of a node, in a fixed order: kind-specific ones, then BUILD state and set items. */
static uint64_t n_children(const mf_pv *v) {
    uint64_t n = 0;
    switch (v->kind) {
    case MF_PV_TUPLE: case MF_PV_LIST: case MF_PV_SET: case MF_PV_FROZENSET: n = v->n; break;
    case MF_PV_DICT: n = 2 * (uint64_t)v->n; break;
    case MF_PV_CALL: n = 3; break;
    case MF_PV_PERSID: n = 1; break;
    case MF_PV_GLOBAL: n = (v->flags & MF_PVF_COMPUTED) ? 2 : 0; break;
    default: break;
    }
    return n + 2;
}

static const mf_pv *child_at(const mf_pv *v, uint64_t i, uint64_t n) {
    if (i + 2 >= n) return i + 2 == n ? v->state : v->extra;
    switch (v->kind) {
    case MF_PV_TUPLE: case MF_PV_LIST: case MF_PV_SET: case MF_PV_FROZENSET: case MF_PV_DICT: return v->u.items[i];
    case MF_PV_CALL: return i == 0 ? v->u.call.fn : i == 1 ? v->u.call.args : v->u.call.kwargs;
    case MF_PV_PERSID: return v->u.pid;
    case MF_PV_GLOBAL: return i == 0 ? v->u.g.mod : v->u.g.name;
    default: return NULL;
    }
}

typedef struct exp_frame {
    const mf_pv *v;
    uint64_t next, n, sum;
} exp_frame;

static uint64_t sat_add(uint64_t a, uint64_t b) { return a + b < a ? UINT64_MAX : a + b; }

/* Enter v: 0 with *val set (a leaf, or a shared node already counted), 1 when a frame was
 * pushed, -1 on an allocation failure. */
static int exp_enter(const mf_pv *v, mf_pv_map *map, mf_vec *frames, mf_arena *a, mf_error *err,
                     mf_pkl_expansion *out, uint64_t *val) {
    uint64_t *slot = NULL;
    out->refs++;
    if (v->flags & MF_PVF_SHARED) {
        int created;
        slot = mf_pv_map_slot(map, v, a, err, v->offset, &created);
        if (slot == NULL) return -1;
        if (!created) {
            if (*slot == 0) out->cyclic = 1; /* still being counted: reached again inside itself */
            *val = *slot ? *slot : 1;
            return 0;
        }
    }
    uint64_t n = n_children(v);
    if (n == 2 && v->state == NULL && v->extra == NULL) {
        if (slot != NULL) *slot = 1;
        *val = 1;
        return 0;
    }
    exp_frame *f = (exp_frame *)mf_vec_push(frames, sizeof *f, a, err, v->offset);
    if (f == NULL) return -1;
    f->v = v;
    f->next = 0;
    f->n = n;
    f->sum = 1;
    return 1;
}

int mf_pkl_expansion_of(const mf_pv *root, uint64_t limit, mf_arena *a, mf_error *err, mf_pkl_expansion *out) {
    memset(out, 0, sizeof *out);
    out->at = UINT64_MAX;
    if (root == NULL) return MF_OK;
    mf_pv_map map = {0};
    mf_vec frames = {0};
    uint64_t val;
    int r = exp_enter(root, &map, &frames, a, err, out, &val);
    if (r < 0) return err->code;
    if (r == 0) {
        out->tree = val;
        return MF_OK;
    }
    while (frames.len) {
        exp_frame *f = (exp_frame *)frames.items + frames.len - 1;
        if (f->next < f->n) {
            const mf_pv *c = child_at(f->v, f->next, f->n);
            f->next++;
            if (c == NULL) continue;
            r = exp_enter(c, &map, &frames, a, err, out, &val);
            if (r < 0) return err->code;
            if (r == 0) f->sum = sat_add(f->sum, val); /* nothing pushed: f is still the top */
            continue;
        }
        const mf_pv *v = f->v;
        val = f->sum;
        frames.len--;
        if (v->flags & MF_PVF_SHARED) *mf_pv_map_find(&map, v) = val;
        if (val > limit && out->at == UINT64_MAX) {
            out->at = v->offset;
            out->at_tree = val;
        }
        if (frames.len) {
            exp_frame *up = (exp_frame *)frames.items + frames.len - 1;
            up->sum = sat_add(up->sum, val);
        } else {
            out->tree = val;
        }
    }
    return MF_OK;
}
