/*
 * mf_core.c - errors, arena, cursor and dtype table shared by all readers.
 */
#include "mf_core.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ========================================================================================== */
/* Errors                                                                                     */
/* ========================================================================================== */

int mf_fail(mf_error *err, int code, uint64_t offset, const char *fmt, ...) {
    if (err == NULL || err->code != MF_OK) return code;
    err->code = code;
    err->offset = offset;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

/* ========================================================================================== */
/* Arena                                                                                      */
/* ========================================================================================== */

struct mf_arena_chunk {
    mf_arena_chunk *next;
    size_t size; /* usable bytes after the header */
    size_t used;
    int counted; /* allocated while the test hook was set: counted in mf_arena_test.live */
    /* data follows, 16-byte aligned */
};

/* The test hook (mf_arena_test_limits): read only where a new chunk is made, never on the
 * bump-allocation path. */
static struct {
    int on;
    int code;      /* MF_ERR_LIMIT or MF_ERR_NOMEM */
    int64_t left;  /* allocations that may still succeed */
    uint64_t live; /* counted chunks not yet freed */
} mf_arena_test;

void mf_arena_test_limits(int64_t allowed, int code) {
    mf_arena_test.on = allowed >= 0;
    mf_arena_test.left = allowed;
    mf_arena_test.code = code == MF_ERR_NOMEM ? MF_ERR_NOMEM : MF_ERR_LIMIT;
}

uint64_t mf_arena_test_live_chunks(void) { return mf_arena_test.live; }

int mf_arena_test_active(void) { return mf_arena_test.on; }

#define MF_CHUNK_HDR ((sizeof(mf_arena_chunk) + 15u) & ~(size_t)15u)
#define MF_CHUNK_MIN ((size_t)64 * 1024)

void mf_arena_init(mf_arena *a, uint64_t cap) {
    a->head = NULL;
    a->used = 0;
    a->cap = cap ? cap : MF_ARENA_DEFAULT_CAP;
}

uint64_t mf_arena_cap_for(uint64_t input_len, uint64_t per_byte, uint64_t floor) {
    uint64_t cap;
    if (mf_mul_u64(input_len, per_byte, &cap) || mf_add_u64(cap, floor, &cap)) return UINT64_MAX;
    return cap;
}

void *mf_arena_alloc(mf_arena *a, size_t n, mf_error *err, uint64_t offset) {
    size_t need = (n + 15u) & ~(size_t)15u;
    if (need < n) {
        mf_fail(err, MF_ERR_LIMIT, offset, "allocation of %zu bytes overflows", n);
        return NULL;
    }
    mf_arena_chunk *h = a->head;
    if (h == NULL || h->size - h->used < need) {
        size_t size = need > MF_CHUNK_MIN ? need : MF_CHUNK_MIN;
        /* grow chunk sizes geometrically so that many small allocations cost few mallocs */
        if (h != NULL && h->size * 2 > size && h->size * 2 <= ((size_t)64 << 20)) size = h->size * 2;
        uint64_t total, cap = a->cap;
        int test_fail = 0;
        if (mf_arena_test.on) {
            /* one chunk per allocation, so that every allocation comes here; when the allowed
             * ones are used up, fail as the cap or malloc would */
            size = need;
            test_fail = mf_arena_test.left <= 0;
            if (!test_fail) mf_arena_test.left--;
            if (test_fail && mf_arena_test.code == MF_ERR_LIMIT) cap = a->used;
        }
        if (mf_add_u64(a->used, (uint64_t)size + MF_CHUNK_HDR, &total) || total > cap) {
            /* retry with exactly what is needed before giving up */
            size = need;
            if (mf_add_u64(a->used, (uint64_t)size + MF_CHUNK_HDR, &total) || total > cap) {
                mf_fail(err, MF_ERR_LIMIT, offset,
                        "parse needs more than %llu bytes of memory, more than this input justifies",
                        (unsigned long long)cap);
                return NULL;
            }
        }
        mf_arena_chunk *c = test_fail ? NULL : (mf_arena_chunk *)malloc(MF_CHUNK_HDR + size);
        if (c == NULL) {
            mf_fail(err, MF_ERR_NOMEM, offset, "out of memory allocating %zu bytes", size);
            return NULL;
        }
        c->size = size;
        c->used = 0;
        c->counted = mf_arena_test.on;
        mf_arena_test.live += (uint64_t)c->counted;
        a->used = total;
        /* a chunk made for one big request goes behind the current one, so that the
         * current chunk's free tail stays usable for small requests */
        if (h != NULL && size == need && h->size - h->used >= 256) {
            c->next = h->next;
            h->next = c;
            c->used = need;
            return (uint8_t *)c + MF_CHUNK_HDR;
        }
        c->next = h;
        a->head = c;
        h = c;
    }
    void *p = (uint8_t *)h + MF_CHUNK_HDR + h->used;
    h->used += need;
    return p;
}

void *mf_arena_calloc(mf_arena *a, size_t count, size_t size, mf_error *err, uint64_t offset) {
    uint64_t n;
    if (mf_mul_u64(count, size, &n) || n > SIZE_MAX) {
        mf_fail(err, MF_ERR_LIMIT, offset, "allocation of %zu x %zu bytes overflows", count, size);
        return NULL;
    }
    void *p = mf_arena_alloc(a, (size_t)n, err, offset);
    if (p != NULL) memset(p, 0, (size_t)n);
    return p;
}

char *mf_arena_strdup(mf_arena *a, const void *src, size_t n, mf_error *err, uint64_t offset) {
    if (n == SIZE_MAX) {
        mf_fail(err, MF_ERR_LIMIT, offset, "string too long");
        return NULL;
    }
    char *p = (char *)mf_arena_alloc(a, n + 1, err, offset);
    if (p == NULL) return NULL;
    if (n) memcpy(p, src, n);
    p[n] = '\0';
    return p;
}

void mf_arena_free(mf_arena *a) {
    mf_arena_chunk *c = a->head;
    while (c != NULL) {
        mf_arena_chunk *next = c->next;
        mf_arena_test.live -= (uint64_t)c->counted;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->used = 0;
}

void *mf_vec_push(mf_vec *v, size_t size, mf_arena *a, mf_error *err, uint64_t offset) {
    if (v->len == v->cap) {
        size_t ncap = v->cap ? v->cap * 2 : 8;
        uint64_t bytes;
        if (ncap < v->cap || mf_mul_u64(ncap, size, &bytes) || bytes > SIZE_MAX) {
            mf_fail(err, MF_ERR_LIMIT, offset, "too many items");
            return NULL;
        }
        void *n = mf_arena_alloc(a, (size_t)bytes, err, offset);
        if (n == NULL) return NULL;
        if (v->len) memcpy(n, v->items, v->len * size);
        v->items = n;
        v->cap = ncap;
    }
    return (uint8_t *)v->items + (v->len++) * size;
}

/* ========================================================================================== */
/* Cursor                                                                                     */
/* ========================================================================================== */


/* ========================================================================================== */
/* Sparse windows                                                                             */
/* ========================================================================================== */

static int mf_win_present(const mf_window *w, uint64_t block) {
    return (w->present[block >> 3] >> (block & 7)) & 1;
}

static void mf_win_add(mf_window *w, uint64_t a, uint64_t b) {
    /* merge with a span it touches (needs of one pass come mostly in file order) */
    for (size_t i = w->n_needs; i > 0 && i + 8 > w->n_needs; i--) {
        uint64_t *s = &w->needs[2 * (i - 1)];
        uint64_t e = s[0] + s[1];
        if (a <= e && b >= s[0]) {
            uint64_t na = a < s[0] ? a : s[0], nb = b > e ? b : e;
            s[0] = na;
            s[1] = nb - na;
            return;
        }
    }
    if (w->n_needs >= w->cap_needs) return; /* found again on the next pass */
    w->needs[2 * w->n_needs] = a;
    w->needs[2 * w->n_needs + 1] = b - a;
    w->n_needs++;
}

int mf_win_check_at(mf_window *w, uint64_t a, uint64_t n, mf_error *err, const char *what) {
    uint64_t size = (uint64_t)(w->end - w->start);
    if (n == 0 || a >= size) return 0;
    uint64_t b = n > size - a ? size : a + n;
    uint64_t first = a >> w->shift, last = (b - 1) >> w->shift, i = first;
    while (i <= last && mf_win_present(w, i)) i++;
    if (i > last) return 0;
    uint64_t miss = i << w->shift;
    uint64_t stop = (last + 1) << w->shift;
    if (stop > size || stop == 0) stop = size;
    mf_win_add(w, miss, stop);
    mf_fail(err, MF_ERR_NEED, miss > a ? miss : a, "%s: bytes %llu..%llu are not fetched yet", what,
            (unsigned long long)miss, (unsigned long long)stop);
    return 1;
}

size_t mf_win_avail(const mf_window *w, const uint8_t *p, size_t n) {
    if (n == 0 || p < w->start || p >= w->end) return n;
    uint64_t a = (uint64_t)(p - w->start), size = (uint64_t)(w->end - w->start);
    uint64_t b = n > size - a ? size : a + n;
    uint64_t blk = a >> w->shift;
    while ((blk << w->shift) < b && mf_win_present(w, blk)) blk++;
    uint64_t stop = blk << w->shift;
    if (stop >= b) return n;
    return stop > a ? (size_t)(stop - a) : 0;
}

int mf_win_check(mf_window *w, const uint8_t *p, size_t n, mf_error *err, const char *what) {
    if (n == 0 || p < w->start || p >= w->end) return 0;
    return mf_win_check_at(w, (uint64_t)(p - w->start), n, err, what);
}

/* c->pos is where the missing bytes would start */
int mf_cursor_fail(mf_cursor *c, size_t n, const char *what) {
    mf_fail(c->err, MF_ERR_TRUNCATED, mf_tell(c), "%s truncated: needs %zu bytes, %zu left", what, n,
            (size_t)(c->end - c->pos));
    return 1;
}

int mf_seek(mf_cursor *c, uint64_t rel, const char *what) {
    if (rel > (uint64_t)(c->end - c->start)) {
        mf_fail(c->err, MF_ERR_TRUNCATED, c->base + rel, "%s lies outside the data (%llu > %llu)", what,
                (unsigned long long)rel, (unsigned long long)(c->end - c->start));
        return 1;
    }
    c->pos = c->start + rel;
    return 0;
}

/* ========================================================================================== */
/* Dtypes                                                                                     */
/* ========================================================================================== */

static const struct {
    const char *name;
    unsigned bits;
} mf_dtypes[MF_DT_COUNT] = {
    [MF_DT_UNKNOWN] = {"unknown", 0},
    [MF_DT_BOOL] = {"bool", 8},
    [MF_DT_UINT8] = {"uint8", 8},
    [MF_DT_INT8] = {"int8", 8},
    [MF_DT_UINT16] = {"uint16", 16},
    [MF_DT_INT16] = {"int16", 16},
    [MF_DT_UINT32] = {"uint32", 32},
    [MF_DT_INT32] = {"int32", 32},
    [MF_DT_UINT64] = {"uint64", 64},
    [MF_DT_INT64] = {"int64", 64},
    [MF_DT_FLOAT16] = {"float16", 16},
    [MF_DT_BFLOAT16] = {"bfloat16", 16},
    [MF_DT_FLOAT32] = {"float32", 32},
    [MF_DT_FLOAT64] = {"float64", 64},
    [MF_DT_COMPLEX32] = {"complex32", 32},
    [MF_DT_COMPLEX64] = {"complex64", 64},
    [MF_DT_COMPLEX128] = {"complex128", 128},
    [MF_DT_FLOAT8_E4M3FN] = {"float8_e4m3fn", 8},
    [MF_DT_FLOAT8_E5M2] = {"float8_e5m2", 8},
    [MF_DT_FLOAT8_E4M3FNUZ] = {"float8_e4m3fnuz", 8},
    [MF_DT_FLOAT8_E5M2FNUZ] = {"float8_e5m2fnuz", 8},
    [MF_DT_FLOAT8_E8M0FNU] = {"float8_e8m0fnu", 8},
    [MF_DT_QINT8] = {"qint8", 8},
    [MF_DT_QUINT8] = {"quint8", 8},
    [MF_DT_QINT32] = {"qint32", 32},
    [MF_DT_QUINT4X2] = {"quint4x2", 8},
    [MF_DT_QUINT2X4] = {"quint2x4", 8},
    [MF_DT_FLOAT4_E2M1FN_X2] = {"float4_e2m1fn_x2", 8},
    [MF_DT_FLOAT4_E2M1FN] = {"float4_e2m1fn", 4},
    [MF_DT_FLOAT6_E2M3FN] = {"float6_e2m3fn", 6},
    [MF_DT_FLOAT6_E3M2FN] = {"float6_e3m2fn", 6},
    [MF_DT_INT4] = {"int4", 4},
    [MF_DT_UINT4] = {"uint4", 4},
    [MF_DT_BITS8] = {"bits8", 8},
    [MF_DT_BITS16] = {"bits16", 16},
    [MF_DT_BITS1X8] = {"bits1x8", 8},
    [MF_DT_BITS2X4] = {"bits2x4", 8},
    [MF_DT_BITS4X2] = {"bits4x2", 8},
    [MF_DT_INT2] = {"int2", 2},
    [MF_DT_UINT2] = {"uint2", 2},
    [MF_DT_FLOAT8_E4M3B11FNUZ] = {"float8_e4m3b11fnuz", 8},
    [MF_DT_QINT16] = {"qint16", 16},
    [MF_DT_QUINT16] = {"quint16", 16},
    [MF_DT_STRING] = {"string", 0},
};

const char *mf_dtype_name(int dt) {
    if (dt <= 0 || dt >= MF_DT_COUNT) return "unknown";
    return mf_dtypes[dt].name;
}

unsigned mf_dtype_bits(int dt) {
    if (dt <= 0 || dt >= MF_DT_COUNT) return 0;
    return mf_dtypes[dt].bits;
}
