/*
 * mf_core.h - the pieces every mfparse reader shares.
 *
 *   mf_error   {code, byte offset, message}: C never prints or raises, it records and returns.
 *   mf_cursor  {start, pos, end, base}: the only way a reader touches file bytes. Every read
 *              checks `n <= end - pos` and records MF_ERR_TRUNCATED with the file offset.
 *   mf_arena   one allocator per parse: a single mf_arena_free releases everything, and a cap
 *              derived from the input size bounds what a hostile file can make us allocate.
 *   mf_add_u64 / mf_mul_u64: checked arithmetic for every size that comes from a file.
 *
 * C99, no Python.h: the Cython layer (mfparse/_native.pyx) turns these into Python objects.
 */
#ifndef MF_CORE_H
#define MF_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Error codes. mfparse/errors.py maps each code to an exception class (one table, one place). */

enum {
    MF_OK = 0,
    MF_ERR_TRUNCATED = 1,   /* a read ran past the end of the data: CorruptFileError */
    MF_ERR_CORRUPT = 2,     /* structurally invalid: CorruptFileError */
    MF_ERR_UNSUPPORTED = 3, /* valid but a feature we do not read: UnsupportedFormatError */
    MF_ERR_LIMIT = 4,       /* a resource bound was hit (size, depth, count): ResourceLimitError */
    MF_ERR_NOMEM = 5,       /* malloc failed: MemoryError */
    MF_ERR_UNSAFE = 6,      /* content refused for safety reasons: UnsafeContentError */
    MF_ERR_NEED = 7,        /* bytes not fetched yet (a sparse window, below): never seen by users */
};

#define MF_MSG_LEN 240

/* A sparse window (docs/architecture.md, "Readers on windows"): the reader's buffer is a map of
 * the whole file of which only some blocks hold the file's bytes (the ranges fetched so far
 * from a remote source; the other pages are zeros that must never be read). A read through the
 * cursor (mf_need, mf_take and the mf_u* loads) of bytes inside [start, end) checks the
 * presence bit of every block it touches; an absent block records MF_ERR_NEED, appends the
 * missing span (file offset, length: block-aligned) to `needs`, and fails the read as a
 * truncation would. Moving past bytes without reading them (mf_skip, mf_take_span, mf_seek)
 * checks nothing, so a length-delimited field that spans the file costs nothing. The caller
 * (formats/base.parse_windows) fetches every span a pass named, in one round trip, and runs
 * the parse again. Bytes outside [start, end) (decompressed copies, the arena) are not
 * checked. With no window (err->win == NULL: a local map) nothing changes but one branch. */
typedef struct mf_window {
    const uint8_t *start;       /* the map's first byte: file offset 0 */
    const uint8_t *end;         /* start + file size */
    const uint8_t *present;     /* one bit per block (bit i % 8 of byte i / 8) */
    unsigned shift;             /* log2 of the block size */
    uint64_t *needs;            /* pairs (file offset, length) of missing spans, merged when touching */
    size_t n_needs;
    size_t cap_needs;           /* pairs; spans past the cap are dropped (found again next pass) */
    uint64_t want;              /* a reader's estimate of what the next fetch should cover after
                                   the first missing byte (mf_win_want); 0 = no estimate */
} mf_window;

typedef struct mf_error {
    int code;
    uint64_t offset;        /* byte offset in the file (not in a sub-buffer) */
    char msg[MF_MSG_LEN];   /* without the offset; the binding appends " (byte N)" */
    mf_window *win;         /* the sparse window of this parse, or NULL (a whole local map) */
} mf_error;

/* Record an error unless one is already recorded (the first error is the root cause).
 * Returns the code so that `return mf_fail(...)` reads naturally. */
int mf_fail(mf_error *err, int code, uint64_t offset, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* ------------------------------------------------------------------------------------------ */
/* Checked arithmetic. Return 0 on success, 1 on overflow (out is then unspecified). */

static inline int mf_add_u64(uint64_t a, uint64_t b, uint64_t *out) {
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_add_overflow(a, b, out);
#else
    *out = a + b;
    return *out < a;
#endif
}

static inline int mf_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_mul_overflow(a, b, out);
#else
    if (a != 0 && b > UINT64_MAX / a) return 1;
    *out = a * b;
    return 0;
#endif
}

static inline int mf_mul_i64(int64_t a, int64_t b, int64_t *out) {
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_mul_overflow(a, b, out);
#else
    if (a > 0 ? (b > INT64_MAX / a || b < INT64_MIN / a)
              : (a < -1 ? (b < INT64_MAX / a || b > INT64_MIN / a) : (a == -1 && b == INT64_MIN)))
        return 1;
    *out = a * b;
    return 0;
#endif
}

static inline int mf_add_i64(int64_t a, int64_t b, int64_t *out) {
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_add_overflow(a, b, out);
#else
    if ((b > 0 && a > INT64_MAX - b) || (b < 0 && a < INT64_MIN - b)) return 1;
    *out = a + b;
    return 0;
#endif
}

/* ------------------------------------------------------------------------------------------ */
/* Arena: bump allocation from chunks; one free for the whole parse. */

typedef struct mf_arena_chunk mf_arena_chunk;

typedef struct mf_arena {
    mf_arena_chunk *head;
    uint64_t used;   /* bytes handed out so far (including chunk overhead) */
    uint64_t cap;    /* never hand out more than this; 0 = MF_ARENA_DEFAULT_CAP */
} mf_arena;

#define MF_ARENA_DEFAULT_CAP ((uint64_t)1 << 30)

void mf_arena_init(mf_arena *a, uint64_t cap);
/* Aligned to 16 bytes. On failure records MF_ERR_LIMIT or MF_ERR_NOMEM at `offset`, returns NULL. */
void *mf_arena_alloc(mf_arena *a, size_t n, mf_error *err, uint64_t offset);
/* Same, zero-filled. */
void *mf_arena_calloc(mf_arena *a, size_t count, size_t size, mf_error *err, uint64_t offset);
/* Copy n bytes and append a NUL. */
char *mf_arena_strdup(mf_arena *a, const void *src, size_t n, mf_error *err, uint64_t offset);
void mf_arena_free(mf_arena *a);

/* Test hook, not API (mfparse._native._arena_test_limits, tests/test_alloc_failures.py): with
 * allowed >= 0, every arena allocation gets a chunk of its own and the ones after the first
 * `allowed` fail as the cap does (code MF_ERR_LIMIT) or as malloc does (MF_ERR_NOMEM), until
 * allowed < 0 turns the hook off. Chunks made meanwhile are counted until freed
 * (mf_arena_test_live_chunks), a leak check. Process-wide, not thread-safe: tests only. */
void mf_arena_test_limits(int64_t allowed, int code);
uint64_t mf_arena_test_live_chunks(void);
int mf_arena_test_active(void); /* the hook is set */

/* A cap proportional to the input: `per_byte` bytes of bookkeeping per input byte plus a floor. */
uint64_t mf_arena_cap_for(uint64_t input_len, uint64_t per_byte, uint64_t floor);

/* Growable array of fixed-size items living in an arena (old storage is left to the arena). */
typedef struct mf_vec {
    void *items;
    size_t len;
    size_t cap;
} mf_vec;

/* Make room for one more item of `size` bytes; returns a pointer to the new (uninitialised) slot. */
void *mf_vec_push(mf_vec *v, size_t size, mf_arena *a, mf_error *err, uint64_t offset);

/* ------------------------------------------------------------------------------------------ */
/* Cursor over a byte range. `base` is the file offset of `start`, so errors name file offsets
 * even when a reader works on a separate buffer holding only part of the file. */

typedef struct mf_cursor {
    const uint8_t *start;
    const uint8_t *pos;
    const uint8_t *end;
    uint64_t base;
    mf_error *err;
    mf_window *win;         /* err->win when the cursor was made (NULL: no presence checks) */
} mf_cursor;

static inline void mf_cursor_init(mf_cursor *c, const void *data, size_t len, uint64_t base, mf_error *err) {
    c->start = (const uint8_t *)data;
    c->pos = c->start;
    c->end = c->start + len;
    c->base = base;
    c->err = err;
    c->win = err != NULL ? err->win : NULL;
}

static inline size_t mf_remaining(const mf_cursor *c) { return (size_t)(c->end - c->pos); }
static inline uint64_t mf_tell(const mf_cursor *c) { return c->base + (uint64_t)(c->pos - c->start); }

/* All of these return 0 on success; on failure they record MF_ERR_TRUNCATED and return 1.
 * `what` names the field for the message ("zip central directory entry"). The checks are
 * inline (they run for every field of every record); the failure path is not. */
int mf_cursor_fail(mf_cursor *c, size_t n, const char *what);
int mf_seek(mf_cursor *c, uint64_t rel, const char *what); /* rel = offset from start */

/* Presence of [p, p + n) in a sparse window: 0 when every block is there or p lies outside
 * the map; else records MF_ERR_NEED (naming `what`) and the missing span, returns 1. */
int mf_win_check(mf_window *w, const uint8_t *p, size_t n, mf_error *err, const char *what);
/* The same for a span given by file offsets (HDF5 addresses, flatbuffer offsets). */
int mf_win_check_at(mf_window *w, uint64_t off, uint64_t n, mf_error *err, const char *what);
/* How many of the n bytes from p are present without a gap (n outside the map or with all there). */
size_t mf_win_avail(const mf_window *w, const uint8_t *p, size_t n);
/* A reader's estimate, after a failed read, of how many bytes past the first missing one the
 * next fetch should bring (a GGUF vocabulary, the rest of a tensor table); no-op without window. */
static inline void mf_win_want(mf_error *err, uint64_t n) {
    if (err != NULL && err->win != NULL && n > err->win->want) err->win->want = n;
}

/* Bounds only: n bytes left? (no presence check: for moving past bytes, not reading them) */
static inline int mf_has(mf_cursor *c, size_t n, const char *what) {
    return n <= (size_t)(c->end - c->pos) ? 0 : mf_cursor_fail(c, n, what);
}
/* n bytes left, and present when the cursor lies in a sparse window: before reading them. */
static inline int mf_need(mf_cursor *c, size_t n, const char *what) {
    if (n > (size_t)(c->end - c->pos)) return mf_cursor_fail(c, n, what);
    if (c->win != NULL) return mf_win_check(c->win, c->pos, n, c->err, what);
    return 0;
}
/* Move past n bytes without reading them. */
static inline int mf_skip(mf_cursor *c, size_t n, const char *what) {
    if (mf_has(c, n, what)) return 1;
    c->pos += n;
    return 0;
}
/* n bytes to read: *out points at them. */
static inline int mf_take(mf_cursor *c, size_t n, const uint8_t **out, const char *what) {
    if (mf_need(c, n, what)) return 1;
    *out = c->pos;
    c->pos += n;
    return 0;
}
/* n bytes that bound something read later through its own cursor (a sub-message, a table):
 * checked against the end, not for presence. */
static inline int mf_take_span(mf_cursor *c, size_t n, const uint8_t **out, const char *what) {
    if (mf_has(c, n, what)) return 1;
    *out = c->pos;
    c->pos += n;
    return 0;
}

/* Unchecked little-endian loads for callers that already proved the bytes exist. */
static inline uint16_t mf_load_u16le(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t mf_load_u32le(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t mf_load_u64le(const uint8_t *p) {
    return (uint64_t)mf_load_u32le(p) | ((uint64_t)mf_load_u32le(p + 4) << 32);
}

static inline int mf_u8(mf_cursor *c, uint8_t *out, const char *what) {
    if (mf_need(c, 1, what)) return 1;
    *out = *c->pos++;
    return 0;
}
static inline int mf_u16le(mf_cursor *c, uint16_t *out, const char *what) {
    if (mf_need(c, 2, what)) return 1;
    *out = mf_load_u16le(c->pos);
    c->pos += 2;
    return 0;
}
static inline int mf_u32le(mf_cursor *c, uint32_t *out, const char *what) {
    if (mf_need(c, 4, what)) return 1;
    *out = mf_load_u32le(c->pos);
    c->pos += 4;
    return 0;
}
static inline int mf_u64le(mf_cursor *c, uint64_t *out, const char *what) {
    if (mf_need(c, 8, what)) return 1;
    *out = mf_load_u64le(c->pos);
    c->pos += 8;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Canonical dtypes shared by every reader (names in mf_dtype_name, numpy side in mfparse/dtypes.py). */

typedef enum mf_dtype {
    MF_DT_UNKNOWN = 0,
    MF_DT_BOOL, MF_DT_UINT8, MF_DT_INT8, MF_DT_UINT16, MF_DT_INT16, MF_DT_UINT32, MF_DT_INT32,
    MF_DT_UINT64, MF_DT_INT64, MF_DT_FLOAT16, MF_DT_BFLOAT16, MF_DT_FLOAT32, MF_DT_FLOAT64,
    MF_DT_COMPLEX32, MF_DT_COMPLEX64, MF_DT_COMPLEX128,
    MF_DT_FLOAT8_E4M3FN, MF_DT_FLOAT8_E5M2, MF_DT_FLOAT8_E4M3FNUZ, MF_DT_FLOAT8_E5M2FNUZ,
    MF_DT_FLOAT8_E8M0FNU,
    MF_DT_QINT8, MF_DT_QUINT8, MF_DT_QINT32, MF_DT_QUINT4X2, MF_DT_QUINT2X4,
    MF_DT_FLOAT4_E2M1FN_X2, /* torch: two fp4 values per byte, itemsize 1 */
    MF_DT_FLOAT4_E2M1FN,    /* one fp4 value, packed two per byte (safetensors F4, ONNX) */
    MF_DT_FLOAT6_E2M3FN, MF_DT_FLOAT6_E3M2FN,
    MF_DT_INT4, MF_DT_UINT4,
    MF_DT_BITS8, MF_DT_BITS16, MF_DT_BITS1X8, MF_DT_BITS2X4, MF_DT_BITS4X2,
    MF_DT_INT2, MF_DT_UINT2,           /* ONNX / TF 2-bit, packed four per byte */
    MF_DT_FLOAT8_E4M3B11FNUZ,          /* TF */
    MF_DT_QINT16, MF_DT_QUINT16,       /* TF quantized */
    MF_DT_STRING,                      /* variable-length strings (ONNX string_data, TF DT_STRING) */
    /* new codes go here, before MF_DT_COUNT; add the name in mf_core.c */
    MF_DT_COUNT
} mf_dtype;

const char *mf_dtype_name(int dt);
/* Size in bits of one element (4 for int4/fp4, 6 for fp6); 0 for unknown. */
unsigned mf_dtype_bits(int dt);

#ifdef __cplusplus
}
#endif
#endif /* MF_CORE_H */
