/*
 * mf_flatbuf.c - bounds-checked FlatBuffers accessors (see mf_flatbuf.h for the rules).
 */
#include "mf_flatbuf.h"

#include <string.h>

/* ========================================================================================== */
/* Buffer, budget, root                                                                       */
/* ========================================================================================== */

void mf_fb_init(mf_fb *fb, const void *buf, size_t len, uint64_t base, mf_error *err) {
    fb->buf = (const uint8_t *)buf;
    fb->len = len;
    fb->base = base;
    fb->err = err;
    fb->budget = (uint64_t)len + MF_FB_BUDGET_FLOOR;
    fb->win = err != NULL ? err->win : NULL;
}

int mf_fb_present(mf_fb *fb, size_t pos, size_t n, const char *what) {
    if (fb->win == NULL) return MF_OK;
    return mf_win_check(fb->win, fb->buf + pos, n, fb->err, what) ? fb->err->code ? fb->err->code : MF_ERR_NEED
                                                                  : MF_OK;
}

#define FB_PRESENT(pos, n, what)                                                             \
    do {                                                                                     \
        if (fb->win != NULL && mf_fb_present(fb, (pos), (n), (what))) return fb->err->code; \
    } while (0)

int mf_fb_charge(mf_fb *fb, uint64_t n, const char *what) {
    if (n > fb->budget)
        return mf_fail(fb->err, MF_ERR_LIMIT, fb->base,
                       "flatbuffer visits more objects than its %zu bytes can hold (at %s): shared or looping references",
                       fb->len, what);
    fb->budget -= n;
    return MF_OK;
}

/* pos is in bounds and 4 bytes follow it; returns the target position of the uoffset at pos */
static int follow(mf_fb *fb, size_t pos, size_t *target, const char *what) {
    FB_PRESENT(pos, 4, what);
    uint32_t u = mf_load_u32le(fb->buf + pos);
    if (u == 0)
        return mf_fail(fb->err, MF_ERR_CORRUPT, mf_fb_at(fb, pos), "flatbuffer %s: zero offset", what);
    if ((uint64_t)u > (uint64_t)(fb->len - pos))
        return mf_fail(fb->err, MF_ERR_TRUNCATED, mf_fb_at(fb, pos),
                       "flatbuffer %s: offset %u points past the end of the buffer", what, u);
    *target = pos + u;
    return MF_OK;
}

int mf_fb_root(mf_fb *fb, const char *ident, mf_fb_table *root) {
    if (fb->len < 8)
        return mf_fail(fb->err, MF_ERR_TRUNCATED, fb->base, "flatbuffer shorter than its 8-byte header (%zu bytes)",
                       fb->len);
    FB_PRESENT(0, 8, "flatbuffer header");
    if (ident != NULL && memcmp(fb->buf + 4, ident, 4) != 0)
        return mf_fail(fb->err, MF_ERR_CORRUPT, fb->base + 4, "flatbuffer file identifier is not '%.4s'", ident);
    size_t pos;
    if (follow(fb, 0, &pos, "root offset")) return fb->err->code;
    return mf_fb_table_at(fb, pos, root, "root table");
}

/* ========================================================================================== */
/* Tables and fields                                                                          */
/* ========================================================================================== */

int mf_fb_table_at(mf_fb *fb, size_t pos, mf_fb_table *t, const char *what) {
    if (mf_fb_charge(fb, 1, what)) return fb->err->code;
    if (fb->len < 4 || pos > fb->len - 4)
        return mf_fail(fb->err, MF_ERR_TRUNCATED, mf_fb_at(fb, pos), "flatbuffer %s lies past the end of the buffer",
                       what);
    FB_PRESENT(pos, 4, what);
    int64_t soff = (int32_t)mf_load_u32le(fb->buf + pos);
    int64_t vt = (int64_t)pos - soff;
    if (vt < 0 || (uint64_t)vt > (uint64_t)fb->len - 4)
        return mf_fail(fb->err, MF_ERR_CORRUPT, mf_fb_at(fb, pos), "flatbuffer %s: vtable offset %lld leaves the buffer",
                       what, (long long)soff);
    FB_PRESENT((size_t)vt, 4, what);
    uint16_t vt_size = mf_load_u16le(fb->buf + vt);
    uint16_t size = mf_load_u16le(fb->buf + vt + 2);
    if (vt_size < 4 || (vt_size & 1))
        return mf_fail(fb->err, MF_ERR_CORRUPT, mf_fb_at(fb, (size_t)vt), "flatbuffer %s: vtable size %u is invalid",
                       what, vt_size);
    if ((uint64_t)vt_size > (uint64_t)fb->len - (uint64_t)vt)
        return mf_fail(fb->err, MF_ERR_TRUNCATED, mf_fb_at(fb, (size_t)vt),
                       "flatbuffer %s: vtable of %u bytes runs past the end of the buffer", what, vt_size);
    if (size < 4)
        return mf_fail(fb->err, MF_ERR_CORRUPT, mf_fb_at(fb, (size_t)vt), "flatbuffer %s: table size %u is invalid",
                       what, size);
    if ((uint64_t)size > (uint64_t)fb->len - (uint64_t)pos)
        return mf_fail(fb->err, MF_ERR_TRUNCATED, mf_fb_at(fb, pos),
                       "flatbuffer %s: table of %u bytes runs past the end of the buffer", what, size);
    /* the vtable and the table's inline bytes: every field read later lies in them */
    FB_PRESENT((size_t)vt, vt_size, what);
    FB_PRESENT(pos, size, what);
    t->pos = pos;
    t->vt = (size_t)vt;
    t->vt_size = vt_size;
    t->size = size;
    return MF_OK;
}

size_t mf_fb_field(mf_fb *fb, const mf_fb_table *t, unsigned vo, size_t width, const char *what) {
    if (vo + 2u > t->vt_size) return 0; /* slot past this vtable: absent */
    uint16_t off = mf_load_u16le(fb->buf + t->vt + vo);
    if (off == 0) return 0;
    if (off < 4 || (size_t)off + width > t->size) {
        mf_fail(fb->err, MF_ERR_CORRUPT, mf_fb_at(fb, t->vt + vo),
                "flatbuffer field %s (slot %u) at offset %u does not fit its %u-byte table", what, vo, off, t->size);
        return 0;
    }
    return t->pos + off;
}

#define FB_SCALAR(fname, type, width, load)                                                            \
    int fname(mf_fb *fb, const mf_fb_table *t, unsigned vo, type dflt, type *out, const char *what) { \
        size_t p = mf_fb_field(fb, t, vo, width, what);                                                \
        if (p == 0) {                                                                                  \
            *out = dflt;                                                                               \
            return fb->err->code;                                                                      \
        }                                                                                              \
        *out = (type)load(fb->buf + p);                                                                \
        return MF_OK;                                                                                  \
    }

static inline uint8_t load_u8(const uint8_t *p) { return *p; }

FB_SCALAR(mf_fb_u8, uint8_t, 1, load_u8)
FB_SCALAR(mf_fb_i8, int8_t, 1, load_u8)
FB_SCALAR(mf_fb_i32, int32_t, 4, mf_load_u32le)
FB_SCALAR(mf_fb_u32, uint32_t, 4, mf_load_u32le)
FB_SCALAR(mf_fb_u64, uint64_t, 8, mf_load_u64le)

/* Follow the reference field vo; *present = 0 when absent. */
static int ref(mf_fb *fb, const mf_fb_table *t, unsigned vo, size_t *target, int *present, const char *what) {
    *present = 0;
    size_t p = mf_fb_field(fb, t, vo, 4, what);
    if (p == 0) return fb->err->code;
    if (follow(fb, p, target, what)) return fb->err->code;
    *present = 1;
    return MF_OK;
}

int mf_fb_subtable(mf_fb *fb, const mf_fb_table *t, unsigned vo, mf_fb_table *out, int *present, const char *what) {
    size_t target;
    memset(out, 0, sizeof *out);
    if (ref(fb, t, vo, &target, present, what) || !*present) return fb->err->code;
    return mf_fb_table_at(fb, target, out, what);
}

int mf_fb_union(mf_fb *fb, const mf_fb_table *t, unsigned type_vo, unsigned value_vo, uint8_t *type,
                mf_fb_table *out, int *present, const char *what) {
    memset(out, 0, sizeof *out);
    *present = 0;
    if (mf_fb_u8(fb, t, type_vo, 0, type, what)) return fb->err->code;
    if (*type == 0) return MF_OK;
    if (mf_fb_subtable(fb, t, value_vo, out, present, what)) return fb->err->code;
    if (!*present)
        return mf_fail(fb->err, MF_ERR_CORRUPT, mf_fb_at(fb, t->pos), "flatbuffer union %s has type %u but no value",
                       what, *type);
    return MF_OK;
}

/* ========================================================================================== */
/* Vectors and strings                                                                        */
/* ========================================================================================== */

/* pos is where a vector's u32 count should be */
static int vector_at(mf_fb *fb, size_t pos, uint32_t elem, mf_fb_vec *out, const char *what) {
    if (fb->len < 4 || pos > fb->len - 4)
        return mf_fail(fb->err, MF_ERR_TRUNCATED, mf_fb_at(fb, pos), "flatbuffer vector %s lies past the end of the buffer",
                       what);
    FB_PRESENT(pos, 4, what);
    uint32_t n = mf_load_u32le(fb->buf + pos);
    uint64_t bytes;
    if (mf_mul_u64(n, elem, &bytes) || bytes > (uint64_t)(fb->len - pos - 4))
        return mf_fail(fb->err, MF_ERR_TRUNCATED, mf_fb_at(fb, pos),
                       "flatbuffer vector %s: %u elements of %u bytes run past the end of the buffer", what, n, elem);
    out->pos = pos + 4;
    out->n = n;
    out->elem = elem;
    return MF_OK;
}

int mf_fb_vector(mf_fb *fb, const mf_fb_table *t, unsigned vo, uint32_t elem, mf_fb_vec *out, int *present,
                 const char *what) {
    size_t target;
    memset(out, 0, sizeof *out);
    out->elem = elem;
    if (ref(fb, t, vo, &target, present, what) || !*present) return fb->err->code;
    return vector_at(fb, target, elem, out, what);
}

/* pos is where a string's u32 length should be */
static int string_at(mf_fb *fb, size_t pos, const uint8_t **s, uint32_t *n, const char *what) {
    mf_fb_vec v;
    if (vector_at(fb, pos, 1, &v, what)) return fb->err->code;
    /* the terminating NUL is part of the format but not needed to read the string: a writer
     * that omits it at the very end of the buffer still yields the right bytes */
    FB_PRESENT(v.pos, v.n, what);
    *s = fb->buf + v.pos;
    *n = v.n;
    return MF_OK;
}

int mf_fb_string(mf_fb *fb, const mf_fb_table *t, unsigned vo, const uint8_t **s, uint32_t *n, int *present,
                 const char *what) {
    size_t target;
    *s = NULL;
    *n = 0;
    if (ref(fb, t, vo, &target, present, what) || !*present) return fb->err->code;
    return string_at(fb, target, s, n, what);
}

int mf_fb_vec_table(mf_fb *fb, const mf_fb_vec *v, uint32_t i, mf_fb_table *out, const char *what) {
    size_t p = v->pos + (size_t)i * 4, target;
    if (i >= v->n || v->elem != 4)
        return mf_fail(fb->err, MF_ERR_CORRUPT, mf_fb_at(fb, v->pos), "flatbuffer vector %s: bad element %u", what, i);
    if (follow(fb, p, &target, what)) return fb->err->code;
    return mf_fb_table_at(fb, target, out, what);
}

int mf_fb_vec_string(mf_fb *fb, const mf_fb_vec *v, uint32_t i, const uint8_t **s, uint32_t *n, const char *what) {
    size_t p = v->pos + (size_t)i * 4, target;
    if (i >= v->n || v->elem != 4)
        return mf_fail(fb->err, MF_ERR_CORRUPT, mf_fb_at(fb, v->pos), "flatbuffer vector %s: bad element %u", what, i);
    if (mf_fb_charge(fb, 1, what) || follow(fb, p, &target, what)) return fb->err->code;
    return string_at(fb, target, s, n, what);
}
