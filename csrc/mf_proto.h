/*
 * mf_proto.h - a generic protobuf wire-format walker (used by the ONNX and TensorFlow readers).
 *
 * A message is a sequence of records `tag value` with tag = varint (field << 3 | wire type):
 *   0 VARINT  up to 10 bytes (negative int32/int64 are 10-byte sign-extended varints)
 *   1 I64     8 bytes little-endian
 *   2 LEN     varint length + bytes (strings, bytes, sub-messages, packed repeated scalars)
 *   3/4       start/end group (deprecated): skipped, nesting checked
 *   5 I32     4 bytes little-endian
 * Fields come in any order, repeat, and interleave; unknown fields are skipped by wire type.
 * Every length is checked against the enclosing message (`n <= end - pos`), every nesting
 * level against MF_PB_MAX_DEPTH (protobuf's own default recursion limit).
 *
 * Nothing here allocates: a field is a view into the caller's buffer, and a sub-message is
 * read through a cursor over that view that keeps file offsets (errors name file bytes).
 */
#ifndef MF_PROTO_H
#define MF_PROTO_H

#include "mf_core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MF_PB_MAX_DEPTH 100

enum { MF_PB_VARINT = 0, MF_PB_I64 = 1, MF_PB_LEN = 2, MF_PB_SGROUP = 3, MF_PB_EGROUP = 4, MF_PB_I32 = 5 };

/* A string or bytes value inside the input buffer (not NUL-terminated). */
typedef struct mf_pb_str {
    const uint8_t *p;
    uint32_t n;
} mf_pb_str;

typedef struct mf_pb_field {
    uint32_t num;      /* field number (>= 1) */
    uint32_t wt;       /* wire type: MF_PB_VARINT, MF_PB_I64, MF_PB_LEN or MF_PB_I32 */
    uint64_t v;        /* value of VARINT / I64 / I32 fields */
    const uint8_t *p;  /* LEN: the payload */
    size_t n;          /* LEN: payload length */
    uint64_t tag_off;  /* file offset of the tag */
    uint64_t off;      /* file offset of the value (LEN: of the payload, after the length) */
} mf_pb_field;

/* Read a varint (at most 10 bytes; the 10th may only hold the top bit). 0 on success. */
int mf_pb_varint_slow(mf_cursor *c, uint64_t *out, const char *what);
static inline int mf_pb_varint(mf_cursor *c, uint64_t *out, const char *what) {
    /* fast paths: one or two bytes, which is nearly every tag and length (a sparse window
     * takes the slow path, which checks each byte's presence) */
    const uint8_t *p = c->pos;
    size_t left = (size_t)(c->end - p);
    if (c->win != NULL) return mf_pb_varint_slow(c, out, what);
    if (left >= 1 && p[0] < 0x80) {
        *out = p[0];
        c->pos = p + 1;
        return 0;
    }
    if (left >= 2 && p[1] < 0x80) {
        *out = (uint64_t)(p[0] & 0x7f) | ((uint64_t)p[1] << 7);
        c->pos = p + 2;
        return 0;
    }
    return mf_pb_varint_slow(c, out, what);
}

/* The next field of the message under c; groups are skipped (depth = nesting of the message,
 * bounded with the groups inside it). Returns 1 with *f filled, 0 at the end of the message,
 * -1 on error (recorded in c->err). */
int mf_pb_next_slow(mf_cursor *c, mf_pb_field *f, int depth);
static inline int mf_pb_next(mf_cursor *c, mf_pb_field *f, int depth) {
    /* fast path: a one-byte tag of a varint or length-delimited field whose value is one or two
     * bytes and fits; anything else (and every error) goes through the slow path */
    const uint8_t *p = c->pos;
    size_t left = (size_t)(c->end - p);
    if (left < 2 || c->win != NULL) return left ? mf_pb_next_slow(c, f, depth) : 0;
    uint8_t tag = p[0], wt = tag & 7;
    if (tag >= 0x80 || tag < 8 || (wt != MF_PB_VARINT && wt != MF_PB_LEN)) return mf_pb_next_slow(c, f, depth);
    uint64_t v;
    size_t used;
    if (p[1] < 0x80) {
        v = p[1];
        used = 2;
    } else if (left >= 3 && p[2] < 0x80) {
        v = (uint64_t)(p[1] & 0x7f) | ((uint64_t)p[2] << 7);
        used = 3;
    } else {
        return mf_pb_next_slow(c, f, depth);
    }
    if (wt == MF_PB_LEN && v > left - used) return mf_pb_next_slow(c, f, depth);
    f->num = tag >> 3;
    f->wt = wt;
    f->tag_off = c->base + (uint64_t)(p - c->start);
    f->v = v;
    if (wt == MF_PB_LEN) {
        f->p = p + used;
        f->n = (size_t)v;
        f->off = f->tag_off + used;
        c->pos = p + used + v;
    } else {
        f->p = NULL;
        f->n = 0;
        f->off = f->tag_off + 1;
        c->pos = p + used;
    }
    return 1;
}

/* A cursor over a LEN field's payload (file offsets preserved; nothing is read, so nothing is
 * checked for presence: the sub-cursor's own reads are). */
void mf_pb_sub(const mf_cursor *parent, const mf_pb_field *f, mf_cursor *sub);

/* Record "<what>: field N has wire type W" (a known field with an unexpected encoding). */
int mf_pb_bad_type(mf_error *err, const mf_pb_field *f, const char *what);

/* Field value helpers: check the wire type, return 0 on success, record an error otherwise. */
int mf_pb_get_u64(const mf_pb_field *f, uint64_t *out, mf_error *err, const char *what);  /* varint */
int mf_pb_get_i64(const mf_pb_field *f, int64_t *out, mf_error *err, const char *what);   /* int64 varint */
int mf_pb_get_i32(const mf_pb_field *f, int32_t *out, mf_error *err, const char *what);   /* int32/enum varint */
/* bytes / strings that will be read (checked for presence in a sparse window) */
int mf_pb_get_bytes(const mf_pb_field *f, const uint8_t **p, uint32_t *n, mf_error *err, const char *what);
int mf_pb_get_str(const mf_pb_field *f, mf_pb_str *out, mf_error *err, const char *what);
/* Presence of a LEN field's payload before its bytes are read in place (0 without a window). */
static inline int mf_pb_present(const mf_pb_field *f, mf_error *err, const char *what) {
    return err->win != NULL ? mf_win_check(err->win, f->p, f->n, err, what) : 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Repeated scalars: a field may be sent packed (one or more LEN records) or unpacked (one
 * record per value), and parsers must accept both. `kind` is the element encoding:
 * MF_PB_VARINT, MF_PB_I32 or MF_PB_I64. */

/* Number of values one occurrence of a repeated scalar field carries. */
int mf_pb_count(const mf_pb_field *f, int kind, uint64_t *count, mf_error *err, const char *what);

/* Decode every value of field `num` in the message buf[0:len) (file offset `base`), in order,
 * into out (u64 for VARINT/I64 values, the u32 bit pattern widened to u64 for I32).
 * At most `cap` values are written; *n_out receives the total count (which may exceed cap:
 * the caller compares). */
int mf_pb_collect(const uint8_t *buf, size_t len, uint64_t base, uint32_t num, int kind, uint64_t *out,
                  uint64_t cap, uint64_t *n_out, mf_error *err);

/* Same for a repeated bytes/string field: file offsets and lengths of each value. */
int mf_pb_collect_bytes(const uint8_t *buf, size_t len, uint64_t base, uint32_t num, uint64_t *offs,
                        uint64_t *lens, uint64_t cap, uint64_t *n_out, mf_error *err);

/* Is head[0:head_len) a plausible start of a protobuf message of total_len bytes: do the
 * records in it parse, with field numbers in [1, max_field], wire types 0/1/2/5 and lengths
 * that fit in total_len? Looks at most `max_records` records; needs at least one. Records
 * nothing in any error. */
int mf_pb_looks_like(const uint8_t *head, size_t head_len, uint64_t total_len, uint32_t max_field,
                     int max_records);

#ifdef __cplusplus
}
#endif
#endif /* MF_PROTO_H */
