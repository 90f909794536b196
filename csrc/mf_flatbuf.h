/*
 * mf_flatbuf.h - bounds-checked FlatBuffers accessors (generic; TFLite sits on top).
 *
 * Binary rules (google/flatbuffers docs/source/internals.md):
 *   - offset 0: u32 uoffset to the root table; optional 4-byte file identifier at bytes 4-7;
 *   - a table starts with an i32 soffset: its vtable lies at (table - soffset);
 *   - a vtable is u16s: vtable byte size, table inline size, then one u16 per field slot
 *     giving the field's offset from the table start (0 = absent: the schema default);
 *     slots past the vtable's end are absent too (a file written with an older schema);
 *   - reference fields (table, vector, string) hold a u32 uoffset relative to the field's own
 *     address; vectors are a u32 count then the elements (vectors of tables or strings hold
 *     uoffsets relative to each element); strings are a u32 length, the bytes and a NUL.
 *
 * Every hop is checked against the buffer: a vtable must lie inside it and cover its own
 * header, a table's inline size must fit, a field must lie inside its table, a vector's
 * count x element size must fit in what follows it. uoffsets are unsigned and must be
 * non-zero, so references only point forward and cannot form cycles; shared sub-objects
 * (legal: the format is a DAG) could still make a walker visit the same bytes again and
 * again, so every table visit and every vector element a walker charges costs one unit of a
 * budget proportional to the buffer size, and an exhausted budget is a MF_ERR_LIMIT error.
 *
 * Field slots are given as vtable byte offsets (4, 6, 8, ...), as formats.md lists them.
 */
#ifndef MF_FLATBUF_H
#define MF_FLATBUF_H

#include "mf_core.h"

#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mf_fb {
    const uint8_t *buf;
    size_t len;
    uint64_t base;      /* file offset of buf[0], for error messages */
    mf_error *err;
    uint64_t budget;    /* table visits and charged vector elements left */
    mf_window *win;     /* err->win: bytes are checked for presence before they are read */
} mf_fb;

typedef struct mf_fb_table {
    size_t pos;         /* table start (its soffset) in buf */
    size_t vt;          /* vtable start in buf */
    uint16_t vt_size;   /* vtable bytes, >= 4 */
    uint16_t size;      /* table inline bytes, >= 4 */
} mf_fb_table;

typedef struct mf_fb_vec {
    size_t pos;         /* first element in buf */
    uint32_t n;         /* element count */
    uint32_t elem;      /* element size in bytes */
} mf_fb_vec;

/* budget = len + MF_FB_BUDGET_FLOOR units */
#define MF_FB_BUDGET_FLOOR 4096u

void mf_fb_init(mf_fb *fb, const void *buf, size_t len, uint64_t base, mf_error *err);

/* The root table; ident (4 bytes) is checked at bytes 4-7 unless NULL. */
int mf_fb_root(mf_fb *fb, const char *ident, mf_fb_table *root);

/* The table whose soffset lies at pos. Charges one budget unit. */
int mf_fb_table_at(mf_fb *fb, size_t pos, mf_fb_table *t, const char *what);

/* Spend n budget units (a walker about to visit n vector elements). */
int mf_fb_charge(mf_fb *fb, uint64_t n, const char *what);

/* Position in buf of field `vo` (a vtable byte offset) of `width` bytes; 0 when absent.
 * A present field that does not fit inside its table records MF_ERR_CORRUPT and returns 0
 * (check fb->err->code when it matters; the getters below do). */
size_t mf_fb_field(mf_fb *fb, const mf_fb_table *t, unsigned vo, size_t width, const char *what);

/* Scalars: *out = the field's value, or dflt when the field is absent. 0 on success. */
int mf_fb_u8(mf_fb *fb, const mf_fb_table *t, unsigned vo, uint8_t dflt, uint8_t *out, const char *what);
int mf_fb_i8(mf_fb *fb, const mf_fb_table *t, unsigned vo, int8_t dflt, int8_t *out, const char *what);
int mf_fb_i32(mf_fb *fb, const mf_fb_table *t, unsigned vo, int32_t dflt, int32_t *out, const char *what);
int mf_fb_u32(mf_fb *fb, const mf_fb_table *t, unsigned vo, uint32_t dflt, uint32_t *out, const char *what);
int mf_fb_u64(mf_fb *fb, const mf_fb_table *t, unsigned vo, uint64_t dflt, uint64_t *out, const char *what);

/* Reference fields. *present = 0 (and the outputs zeroed) when the field is absent. */
int mf_fb_subtable(mf_fb *fb, const mf_fb_table *t, unsigned vo, mf_fb_table *out, int *present, const char *what);
int mf_fb_vector(mf_fb *fb, const mf_fb_table *t, unsigned vo, uint32_t elem, mf_fb_vec *out, int *present,
                 const char *what);
int mf_fb_string(mf_fb *fb, const mf_fb_table *t, unsigned vo, const uint8_t **s, uint32_t *n, int *present,
                 const char *what);

/* A union: its type byte at slot type_vo (0 = NONE) and its table at slot value_vo.
 * *type = 0 and *present = 0 when the union is absent; a type without a table is corrupt. */
int mf_fb_union(mf_fb *fb, const mf_fb_table *t, unsigned type_vo, unsigned value_vo, uint8_t *type,
                mf_fb_table *out, int *present, const char *what);

/* Elements of vectors of tables and of strings (i < v->n). */
int mf_fb_vec_table(mf_fb *fb, const mf_fb_vec *v, uint32_t i, mf_fb_table *out, const char *what);
int mf_fb_vec_string(mf_fb *fb, const mf_fb_vec *v, uint32_t i, const uint8_t **s, uint32_t *n, const char *what);

/* Presence of [pos, pos + n) of buf in a sparse window (0 without one): the accessors above
 * check what they read (offsets, vtables, tables' inline bytes, strings); a vector's elements
 * are checked by the caller that reads them (mf_fb_vec_present), so that a buffer's data
 * vector is never asked for. */
int mf_fb_present(mf_fb *fb, size_t pos, size_t n, const char *what);
static inline int mf_fb_vec_present(mf_fb *fb, const mf_fb_vec *v, const char *what) {
    return fb->win != NULL ? mf_fb_present(fb, v->pos, (size_t)v->n * v->elem, what) : 0;
}

/* Scalar elements of a validated vector (i < v->n, v->elem the right width, mf_fb_vec_present
 * called): no checks needed. */
static inline int32_t mf_fb_vec_i32(const mf_fb *fb, const mf_fb_vec *v, uint32_t i) {
    return (int32_t)mf_load_u32le(fb->buf + v->pos + (size_t)i * 4);
}
static inline int64_t mf_fb_vec_i64(const mf_fb *fb, const mf_fb_vec *v, uint32_t i) {
    return (int64_t)mf_load_u64le(fb->buf + v->pos + (size_t)i * 8);
}
static inline float mf_fb_vec_f32(const mf_fb *fb, const mf_fb_vec *v, uint32_t i) {
    uint32_t u = mf_load_u32le(fb->buf + v->pos + (size_t)i * 4);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* File offset of a position in buf. */
static inline uint64_t mf_fb_at(const mf_fb *fb, size_t pos) { return fb->base + (uint64_t)pos; }

#ifdef __cplusplus
}
#endif
#endif /* MF_FLATBUF_H */
