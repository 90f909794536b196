/*
 * mf_proto.c - protobuf wire-format walker (see mf_proto.h).
 */
#include "mf_proto.h"

#include <string.h>

/* ========================================================================================== */
/* Varints and records                                                                        */
/* ========================================================================================== */

int mf_pb_varint_slow(mf_cursor *c, uint64_t *out, const char *what) {
    const uint8_t *p = c->pos;
    size_t left = (size_t)(c->end - p);
    if (c->win != NULL) {
        /* a sparse window: each byte is checked before it is read */
        for (size_t i = 0; i < 10 && i < left; i++) {
            if (mf_win_check(c->win, p + i, 1, c->err, what)) return 1;
            if (p[i] < 0x80) break;
        }
    }
    /* fast path: one byte */
    if (left > 0 && p[0] < 0x80) {
        *out = p[0];
        c->pos = p + 1;
        return 0;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < 10; i++) {
        if (i == left) {
            mf_fail(c->err, MF_ERR_TRUNCATED, mf_tell(c), "%s: varint truncated", what);
            return 1;
        }
        uint8_t b = p[i];
        if (i == 9 && b > 1) {
            mf_fail(c->err, MF_ERR_CORRUPT, mf_tell(c), "%s: varint longer than 64 bits", what);
            return 1;
        }
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (b < 0x80) {
            *out = v;
            c->pos = p + i + 1;
            return 0;
        }
    }
    mf_fail(c->err, MF_ERR_CORRUPT, mf_tell(c), "%s: varint longer than 10 bytes", what);
    return 1;
}

/* c->pos is just after a START_GROUP tag for field `num`: skip to the matching END_GROUP. */
static int skip_group(mf_cursor *c, uint32_t num, int depth) {
    for (;;) {
        if (depth > MF_PB_MAX_DEPTH)
            return mf_fail(c->err, MF_ERR_LIMIT, mf_tell(c), "protobuf groups nested deeper than %d levels",
                           MF_PB_MAX_DEPTH);
        uint64_t at = mf_tell(c);
        if (c->pos == c->end)
            return mf_fail(c->err, MF_ERR_TRUNCATED, at, "protobuf group for field %u not closed", num);
        uint64_t tag;
        if (mf_pb_varint(c, &tag, "protobuf tag")) return 1;
        uint32_t wt = (uint32_t)(tag & 7);
        uint64_t fn = tag >> 3;
        if (fn == 0 || fn > 0x1fffffff)
            return mf_fail(c->err, MF_ERR_CORRUPT, at, "protobuf field number %llu out of range", (unsigned long long)fn);
        uint64_t v;
        switch (wt) {
        case MF_PB_VARINT:
            if (mf_pb_varint(c, &v, "protobuf varint field")) return 1;
            break;
        case MF_PB_I64:
            if (mf_skip(c, 8, "protobuf fixed64 field")) return 1;
            break;
        case MF_PB_I32:
            if (mf_skip(c, 4, "protobuf fixed32 field")) return 1;
            break;
        case MF_PB_LEN:
            if (mf_pb_varint(c, &v, "protobuf length")) return 1;
            if (v > mf_remaining(c))
                return mf_fail(c->err, MF_ERR_TRUNCATED, mf_tell(c),
                               "protobuf field %llu: length %llu runs past the end of its message (%zu bytes left)",
                               (unsigned long long)fn, (unsigned long long)v, mf_remaining(c));
            c->pos += v;
            break;
        case MF_PB_SGROUP:
            if (skip_group(c, (uint32_t)fn, depth + 1)) return 1;
            break;
        case MF_PB_EGROUP:
            if (fn != num)
                return mf_fail(c->err, MF_ERR_CORRUPT, at, "protobuf group for field %u closed as field %llu", num,
                               (unsigned long long)fn);
            return 0;
        default:
            return mf_fail(c->err, MF_ERR_CORRUPT, at, "protobuf wire type %u is invalid", wt);
        }
    }
}

int mf_pb_next_slow(mf_cursor *c, mf_pb_field *f, int depth) {
    for (;;) {
        if (c->pos == c->end) return 0;
        uint64_t at = mf_tell(c);
        uint64_t tag;
        if (mf_pb_varint(c, &tag, "protobuf tag")) return -1;
        uint32_t wt = (uint32_t)(tag & 7);
        uint64_t fn = tag >> 3;
        if (fn == 0 || fn > 0x1fffffff) {
            mf_fail(c->err, MF_ERR_CORRUPT, at, "protobuf field number %llu out of range", (unsigned long long)fn);
            return -1;
        }
        f->num = (uint32_t)fn;
        f->wt = wt;
        f->tag_off = at;
        f->p = NULL;
        f->n = 0;
        f->off = mf_tell(c);
        switch (wt) {
        case MF_PB_VARINT:
            if (mf_pb_varint(c, &f->v, "protobuf varint field")) return -1;
            return 1;
        case MF_PB_I64:
            if (mf_need(c, 8, "protobuf fixed64 field")) return -1;
            f->v = mf_load_u64le(c->pos);
            c->pos += 8;
            return 1;
        case MF_PB_I32:
            if (mf_need(c, 4, "protobuf fixed32 field")) return -1;
            f->v = mf_load_u32le(c->pos);
            c->pos += 4;
            return 1;
        case MF_PB_LEN: {
            uint64_t n;
            if (mf_pb_varint(c, &n, "protobuf length")) return -1;
            if (n > mf_remaining(c)) {
                mf_fail(c->err, MF_ERR_TRUNCATED, mf_tell(c),
                        "protobuf field %u: length %llu runs past the end of its message (%zu bytes left)", f->num,
                        (unsigned long long)n, mf_remaining(c));
                return -1;
            }
            f->off = mf_tell(c);
            f->p = c->pos;
            f->n = (size_t)n;
            f->v = n;
            c->pos += n;
            return 1;
        }
        case MF_PB_SGROUP:
            if (skip_group(c, f->num, depth + 1)) return -1;
            continue; /* groups are never fields we read */
        case MF_PB_EGROUP:
            mf_fail(c->err, MF_ERR_CORRUPT, at, "protobuf end-group for field %u without a start", f->num);
            return -1;
        default:
            mf_fail(c->err, MF_ERR_CORRUPT, at, "protobuf wire type %u is invalid", wt);
            return -1;
        }
    }
}

void mf_pb_sub(const mf_cursor *parent, const mf_pb_field *f, mf_cursor *sub) {
    mf_cursor_init(sub, f->p, f->n, f->off, parent->err);
}

static const char *wt_name(uint32_t wt) {
    switch (wt) {
    case MF_PB_VARINT: return "varint";
    case MF_PB_I64: return "fixed64";
    case MF_PB_LEN: return "length-delimited";
    case MF_PB_I32: return "fixed32";
    default: return "group";
    }
}

int mf_pb_bad_type(mf_error *err, const mf_pb_field *f, const char *what) {
    return mf_fail(err, MF_ERR_CORRUPT, f->tag_off, "%s: field %u is %s, not the type the schema declares", what,
                   f->num, wt_name(f->wt));
}

int mf_pb_get_u64(const mf_pb_field *f, uint64_t *out, mf_error *err, const char *what) {
    if (f->wt != MF_PB_VARINT) return mf_pb_bad_type(err, f, what);
    *out = f->v;
    return 0;
}

int mf_pb_get_i64(const mf_pb_field *f, int64_t *out, mf_error *err, const char *what) {
    if (f->wt != MF_PB_VARINT) return mf_pb_bad_type(err, f, what);
    *out = (int64_t)f->v;
    return 0;
}

int mf_pb_get_i32(const mf_pb_field *f, int32_t *out, mf_error *err, const char *what) {
    if (f->wt != MF_PB_VARINT) return mf_pb_bad_type(err, f, what);
    *out = (int32_t)(uint32_t)f->v; /* protobuf truncates int32 varints to the low 32 bits */
    return 0;
}

int mf_pb_get_bytes(const mf_pb_field *f, const uint8_t **p, uint32_t *n, mf_error *err, const char *what) {
    if (f->wt != MF_PB_LEN) return mf_pb_bad_type(err, f, what);
    if (f->n > 0x7fffffff)
        return mf_fail(err, MF_ERR_LIMIT, f->off, "%s: field %u holds %zu bytes, more than protobuf's 2 GB limit", what,
                       f->num, f->n);
    if (mf_pb_present(f, err, what)) return 1;
    *p = f->p;
    *n = (uint32_t)f->n;
    return 0;
}

int mf_pb_get_str(const mf_pb_field *f, mf_pb_str *out, mf_error *err, const char *what) {
    return mf_pb_get_bytes(f, &out->p, &out->n, err, what);
}

/* ========================================================================================== */
/* Repeated scalars                                                                           */
/* ========================================================================================== */

static uint32_t kind_wt(int kind) { return (uint32_t)kind; }

int mf_pb_count(const mf_pb_field *f, int kind, uint64_t *count, mf_error *err, const char *what) {
    if (f->wt == kind_wt(kind)) {
        *count = 1;
        return 0;
    }
    if (f->wt != MF_PB_LEN) return mf_pb_bad_type(err, f, what);
    switch (kind) {
    case MF_PB_I32:
    case MF_PB_I64: {
        size_t w = kind == MF_PB_I32 ? 4 : 8;
        if (f->n % w != 0)
            return mf_fail(err, MF_ERR_CORRUPT, f->off, "%s: packed field %u of %zu bytes is not a whole number of %zu-byte values",
                           what, f->num, f->n, w);
        *count = f->n / w;
        return 0;
    }
    case MF_PB_VARINT: {
        /* each varint ends with a byte below 0x80 */
        uint64_t k = 0;
        if (mf_pb_present(f, err, what)) return 1;
        for (size_t i = 0; i < f->n; i++) k += f->p[i] < 0x80;
        if (f->n > 0 && f->p[f->n - 1] >= 0x80)
            return mf_fail(err, MF_ERR_TRUNCATED, f->off + f->n, "%s: packed field %u ends inside a varint", what, f->num);
        *count = k;
        return 0;
    }
    default:
        return mf_pb_bad_type(err, f, what);
    }
}

/* Decode one occurrence of a repeated scalar field; appends at out[*n] while *n < cap. */
static int decode_values(const mf_pb_field *f, int kind, uint64_t *out, uint64_t cap, uint64_t *n, mf_error *err) {
    if (f->wt == kind_wt(kind)) {
        if (*n < cap) out[*n] = f->v;
        (*n)++;
        return 0;
    }
    if (f->wt != MF_PB_LEN) return mf_pb_bad_type(err, f, "repeated field");
    mf_cursor c;
    mf_cursor_init(&c, f->p, f->n, f->off, err);
    if (kind == MF_PB_I32 || kind == MF_PB_I64) {
        size_t w = kind == MF_PB_I32 ? 4 : 8;
        if (f->n % w != 0)
            return mf_fail(err, MF_ERR_CORRUPT, f->off, "packed field %u of %zu bytes is not a whole number of %zu-byte values",
                           f->num, f->n, w);
        if (mf_pb_present(f, err, "packed repeated field")) return 1;
        uint64_t k = f->n / w, room = *n < cap ? cap - *n : 0, take = k < room ? k : room;
        for (uint64_t i = 0; i < take; i++)
            out[*n + i] = w == 4 ? mf_load_u32le(f->p + 4 * i) : mf_load_u64le(f->p + 8 * i);
        *n += k;
        return 0;
    }
    while (c.pos < c.end) {
        uint64_t v;
        if (mf_pb_varint(&c, &v, "packed varint")) return 1;
        if (*n < cap) out[*n] = v;
        (*n)++;
    }
    return 0;
}

int mf_pb_collect(const uint8_t *buf, size_t len, uint64_t base, uint32_t num, int kind, uint64_t *out,
                  uint64_t cap, uint64_t *n_out, mf_error *err) {
    mf_cursor c;
    mf_pb_field f;
    int r;
    uint64_t n = 0;
    mf_cursor_init(&c, buf, len, base, err);
    while ((r = mf_pb_next(&c, &f, 0)) == 1)
        if (f.num == num && decode_values(&f, kind, out, cap, &n, err)) return err->code;
    if (r < 0) return err->code;
    *n_out = n;
    return MF_OK;
}

int mf_pb_collect_bytes(const uint8_t *buf, size_t len, uint64_t base, uint32_t num, uint64_t *offs,
                        uint64_t *lens, uint64_t cap, uint64_t *n_out, mf_error *err) {
    mf_cursor c;
    mf_pb_field f;
    int r;
    uint64_t n = 0;
    mf_cursor_init(&c, buf, len, base, err);
    while ((r = mf_pb_next(&c, &f, 0)) == 1) {
        if (f.num != num) continue;
        if (f.wt != MF_PB_LEN) return mf_pb_bad_type(err, &f, "repeated bytes field");
        if (n < cap) {
            offs[n] = f.off;
            lens[n] = f.n;
        }
        n++;
    }
    if (r < 0) return err->code;
    *n_out = n;
    return MF_OK;
}

/* ========================================================================================== */
/* Sniffing                                                                                   */
/* ========================================================================================== */

int mf_pb_looks_like(const uint8_t *head, size_t head_len, uint64_t total_len, uint32_t max_field,
                     int max_records) {
    mf_error err;
    mf_cursor c;
    memset(&err, 0, sizeof err);
    if (total_len < head_len) head_len = (size_t)total_len;
    mf_cursor_init(&c, head, head_len, 0, &err);
    int seen = 0;
    while (seen < max_records && c.pos < c.end) {
        uint64_t tag, v;
        if (mf_pb_varint(&c, &tag, "tag")) return seen > 0 && err.code == MF_ERR_TRUNCATED && head_len < total_len;
        uint64_t fn = tag >> 3;
        uint32_t wt = (uint32_t)(tag & 7);
        if (fn == 0 || fn > max_field) return 0;
        uint64_t at = mf_tell(&c);
        switch (wt) {
        case MF_PB_VARINT:
            if (mf_pb_varint(&c, &v, "varint")) return seen > 0 && err.code == MF_ERR_TRUNCATED && head_len < total_len;
            break;
        case MF_PB_I64:
        case MF_PB_I32: {
            size_t w = wt == MF_PB_I64 ? 8 : 4;
            if (total_len - at < w) return 0;
            if (mf_remaining(&c) < w) return 1; /* the head ends inside a valid record */
            c.pos += w;
            break;
        }
        case MF_PB_LEN:
            if (mf_pb_varint(&c, &v, "length")) return seen > 0 && err.code == MF_ERR_TRUNCATED && head_len < total_len;
            at = mf_tell(&c);
            if (v > total_len - at) return 0;
            if (v > mf_remaining(&c)) return 1; /* fits in the message; its bytes lie beyond the head */
            c.pos += v;
            break;
        default:
            return 0;
        }
        seen++;
    }
    return seen > 0;
}
