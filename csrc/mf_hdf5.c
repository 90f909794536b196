/*
 * mf_hdf5.c - HDF5 superblock, object headers, messages and the walk over the group hierarchy.
 * Infrastructure (cursors, lookup3, v2 B-trees, fractal heaps) is in mf_hdf5_heap.c, chunk
 * indexes and the global heap in mf_hdf5_chunk.c. Layouts follow the HDF5 File Format
 * Specification (3.0/4.0) and what libhdf5 writes; see ../shared/reference/formats.md section 1.
 */
#include "mf_hdf5_internal.h"

#include <stdlib.h>
#include <string.h>

static const uint8_t H5_SIGNATURE[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};

#define H5_MAX_DTYPE_DEPTH 16
#define H5_MAX_PATH_DEPTH 1024
#define H5_MAX_FILTERS 32
#define H5_MAX_CHUNKS_PER_HEADER 65536

/* message types */
enum {
    H5M_NIL = 0x0, H5M_DATASPACE = 0x1, H5M_LINK_INFO = 0x2, H5M_DATATYPE = 0x3, H5M_FILL_OLD = 0x4,
    H5M_FILL = 0x5, H5M_LINK = 0x6, H5M_EXTERNAL = 0x7, H5M_LAYOUT = 0x8, H5M_BOGUS = 0x9,
    H5M_GROUP_INFO = 0xA, H5M_FILTERS = 0xB, H5M_ATTRIBUTE = 0xC, H5M_COMMENT = 0xD, H5M_MTIME_OLD = 0xE,
    H5M_SOHM_TABLE = 0xF, H5M_CONTINUATION = 0x10, H5M_SYMBOL_TABLE = 0x11, H5M_MTIME = 0x12,
    H5M_BTREE_K = 0x13, H5M_DRIVER_INFO = 0x14, H5M_ATTR_INFO = 0x15, H5M_REFCOUNT = 0x16, H5M_FSINFO = 0x17,
    H5M_MAX_KNOWN = 0x18,
};

typedef struct h5_msg {
    uint16_t type;
    uint8_t flags;
    uint32_t size;
    uint64_t off;      /* absolute offset of the message data */
    int64_t crt;       /* creation order (v2 headers tracking it), else -1 */
} h5_msg;

typedef struct h5_link {
    const uint8_t *name;
    uint32_t name_len;
    uint8_t type;      /* 0 hard, 1 soft, 64 external, other user-defined */
    uint8_t charset;
    int64_t crt;
    uint64_t addr;     /* hard */
    const uint8_t *target;
    uint32_t target_len;
    uint64_t off;      /* where the link was found (errors) */
} h5_link;

typedef struct h5_pending {
    int32_t parent;
    h5_link link;
} h5_pending;

typedef struct h5_dt_cache {
    uint64_t addr;
    mf_h5_dtype *dt;
} h5_dt_cache;

#define H5_DT_RECENT 8

typedef struct h5_dt_recent {
    const uint8_t *bytes;  /* the message in the file */
    uint64_t size;
    mf_h5_dtype *dt;
} h5_dt_recent;

typedef struct h5_walk {
    mf_h5ctx h;
    h5_dt_recent recent[H5_DT_RECENT];
    unsigned recent_next;
    mf_vec objects, datasets, attrs, pending, msgs, dt_cache;
    /* visited object headers: open addressing, key = address, value = object index */
    uint64_t *seen_key;
    int32_t *seen_val;
    size_t seen_cap, seen_len;
} h5_walk;

/* ========================================================================================== */
/* Superblock                                                                                 */
/* ========================================================================================== */

int64_t mf_h5_find_superblock(const uint8_t *buf, size_t len) {
    uint64_t off = 0;
    while (off <= len && len - off >= 8) {
        if (memcmp(buf + off, H5_SIGNATURE, 8) == 0) return (int64_t)off;
        off = off == 0 ? 512 : off * 2;
    }
    return -1;
}

/* c is at the symbol table entry; only the object header address is needed */
static int h5_read_superblock(h5_walk *w, uint64_t sb, mf_h5_result *out, uint64_t *root) {
    mf_h5ctx *h = &w->h;
    mf_cursor c;
    const char *what = "HDF5 superblock";
    if (h5_at(h, sb, 12, what, &c)) return 1;
    mf_skip(&c, 8, what);
    uint8_t version = 0;
    mf_u8(&c, &version, what);
    uint8_t so = 0, sl = 0;
    uint64_t stored_base, eof;
    if (version <= 1) {
        uint8_t fs_v, root_v, res, sh_v;
        uint16_t leaf_k, int_k;
        uint32_t cflags;
        if (h5_at(h, sb, 24 + (version == 1 ? 4 : 0), what, &c)) return 1;
        mf_skip(&c, 9, what);
        if (mf_u8(&c, &fs_v, what) || mf_u8(&c, &root_v, what) || mf_u8(&c, &res, what) || mf_u8(&c, &sh_v, what) ||
            mf_u8(&c, &so, what) || mf_u8(&c, &sl, what) || mf_u8(&c, &res, what) || mf_u16le(&c, &leaf_k, what) ||
            mf_u16le(&c, &int_k, what) || mf_u32le(&c, &cflags, what))
            return 1;
        if (so != 2 && so != 4 && so != 8) goto bad_sizes;
        if (sl != 2 && sl != 4 && sl != 8) goto bad_sizes;
        h->so = so;
        h->sl = sl;
        uint64_t need = 24 + (version == 1 ? 4 : 0) + 4 * (uint64_t)so + 2 * (uint64_t)so + 24;
        if (h5_at(h, sb, need, what, &c)) return 1;
        mf_skip(&c, 24 + (version == 1 ? 4 : 0), what);
        uint64_t fs, drv, name_off;
        if (h5_uvar(&c, so, &stored_base, what) || h5_uvar(&c, so, &fs, what) || h5_uvar(&c, so, &eof, what) ||
            h5_uvar(&c, so, &drv, what) || h5_uvar(&c, so, &name_off, what))
            return 1;
        h->base = sb;
        if (h5_addr(h, &c, root, "root group object header")) return 1;
    } else if (version == 2 || version == 3) {
        uint8_t cflags;
        if (h5_at(h, sb, 12, what, &c)) return 1;
        mf_skip(&c, 9, what);
        if (mf_u8(&c, &so, what) || mf_u8(&c, &sl, what) || mf_u8(&c, &cflags, what)) return 1;
        if (so != 2 && so != 4 && so != 8) goto bad_sizes;
        if (sl != 2 && sl != 4 && sl != 8) goto bad_sizes;
        h->so = so;
        h->sl = sl;
        uint64_t body = 12 + 4 * (uint64_t)so;
        if (h5_at(h, sb, body + 4, what, &c)) return 1;
        mf_skip(&c, 12, what);
        uint64_t ext;
        if (h5_uvar(&c, so, &stored_base, what) || h5_uvar(&c, so, &ext, what) || h5_uvar(&c, so, &eof, what))
            return 1;
        h->base = sb;
        if (h5_addr(h, &c, root, "root group object header")) return 1;
        if (h5_checksum(h, sb, body, what)) return 1;
    } else {
        return mf_fail(h->err, MF_ERR_UNSUPPORTED, h5_rep(h, sb + 8), "HDF5 superblock version %u", version);
    }
    /* libhdf5: a superblock found elsewhere than its stored base moves the base and the EOF */
    if (stored_base != sb) eof -= stored_base - sb;
    out->sb_version = version;
    out->eof = eof;
    if (*root == MF_H5_UNDEF) {
        return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, sb), "HDF5 superblock has no root group");
    }
    if (!(h->flags & MF_H5_NO_EOF_CHECK) && eof > h->len) {
        return mf_fail(h->err, MF_ERR_TRUNCATED, h5_rep(h, h->len),
                       "HDF5 file is truncated: the superblock says the data ends at byte %llu, the file has %llu "
                       "bytes",
                       (unsigned long long)h5_rep(h, eof), (unsigned long long)h->len);
    }
    return 0;
bad_sizes:
    return mf_fail(h->err, MF_ERR_UNSUPPORTED, h5_rep(h, sb + 13),
                   "HDF5 superblock with %u-byte offsets and %u-byte lengths", so, sl);
}

/* ========================================================================================== */
/* Object headers                                                                             */
/* ========================================================================================== */

static int h5_push_msg(h5_walk *w, uint16_t type, uint8_t flags, uint32_t size, uint64_t off, int64_t crt) {
    h5_msg *m = (h5_msg *)mf_vec_push(&w->msgs, sizeof(h5_msg), w->h.arena, w->h.err, h5_rep(&w->h, off));
    if (m == NULL) return 1;
    m->type = type;
    m->flags = flags;
    m->size = size;
    m->off = off;
    m->crt = crt;
    return 0;
}

/* Read the continuation message at m into (*addr, *len). */
static int h5_continuation(mf_h5ctx *h, const h5_msg *m, uint64_t *addr, uint64_t *len) {
    mf_cursor c;
    if (h5_at(h, m->off, m->size, "continuation message", &c)) return 1;
    if (h5_addr(h, &c, addr, "continuation block") || h5_length(h, &c, len, "continuation length")) return 1;
    if (*addr == MF_H5_UNDEF) {
        return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, m->off), "continuation block address is undefined");
    }
    return 0;
}

/* One message of an object header (its body at off): recorded in w->msgs; a continuation
 * message also queues its block in chunk_addr/chunk_len (64 slots, reused as they drain). */
static int h5_header_msg(h5_walk *w, uint16_t type, uint8_t mflags, uint32_t size, uint64_t off, int64_t crt,
                         uint64_t *chunk_addr, uint64_t *chunk_len, size_t *n_chunks, size_t *total_chunks) {
    mf_h5ctx *h = &w->h;
    if (h5_work(h, 1, off)) return 1;
    if (h5_push_msg(w, type, mflags, size, off, crt)) return 1;
    if (type != H5M_CONTINUATION) return 0;
    if (*n_chunks == 64 || *total_chunks >= H5_MAX_CHUNKS_PER_HEADER)
        return mf_fail(h->err, MF_ERR_LIMIT, h5_rep(h, off), "object header has too many continuation blocks");
    if (h5_continuation(h, &((h5_msg *)w->msgs.items)[w->msgs.len - 1], &chunk_addr[*n_chunks], &chunk_len[*n_chunks]))
        return 1;
    (*n_chunks)++;
    (*total_chunks)++;
    return 0;
}

/* Collect the messages of the object header at abs into w->msgs (cleared first). */
static int h5_read_header(h5_walk *w, uint64_t abs, uint8_t *version_out, uint8_t *flags_out) {
    mf_h5ctx *h = &w->h;
    mf_cursor c;
    const char *what = "object header";
    uint64_t chunk_addr[64];
    uint64_t chunk_len[64];
    size_t n_chunks = 0, next = 0, total_chunks = 0;
    w->msgs.len = 0;
    if (h5_work(h, 1, abs)) return 1;
    if (h5_at(h, abs, 4, what, &c)) return 1;
    if (memcmp(c.pos, "OHDR", 4) == 0) {
        /* ---- version 2 ---- */
        uint8_t version = 0, flags = 0;
        mf_skip(&c, 4, what);
        if (h5_at(h, abs, 6, what, &c)) return 1;
        mf_skip(&c, 4, what);
        mf_u8(&c, &version, what);
        mf_u8(&c, &flags, what);
        if (version != 2) {
            return mf_fail(h->err, MF_ERR_UNSUPPORTED, h5_rep(h, abs + 4), "object header version %u", version);
        }
        uint64_t prefix = 6 + ((flags & 0x20) ? 16 : 0) + ((flags & 0x10) ? 4 : 0);
        unsigned size_len = 1u << (flags & 3);
        if (h5_at(h, abs, prefix + size_len, what, &c)) return 1;
        mf_skip(&c, (size_t)prefix, what);
        uint64_t chunk0;
        if (h5_uvar(&c, size_len, &chunk0, what)) return 1;
        uint64_t start = abs + prefix + size_len;
        if (h5_at(h, start, chunk0, what, &c)) return 1;
        if (h5_checksum(h, abs, prefix + size_len + chunk0, what)) return 1;
        *version_out = 2;
        *flags_out = flags;
        unsigned mhdr = (flags & 0x04) ? 6 : 4;
        uint64_t cur = start, cur_len = chunk0;
        for (;;) {
            mf_cursor mc;
            h5_at(h, cur, cur_len, what, &mc);
            while (mf_remaining(&mc) >= mhdr) {
                uint8_t type = 0, mflags = 0;
                uint16_t size = 0, crt = 0;
                mf_u8(&mc, &type, what);
                mf_u16le(&mc, &size, what);
                mf_u8(&mc, &mflags, what);
                if (flags & 0x04) mf_u16le(&mc, &crt, what);
                uint64_t off = (uint64_t)(mc.pos - h->data);
                if (mf_skip(&mc, size, "object header message")) return 1;
                if (h5_header_msg(w, type, mflags, size, off, (flags & 0x04) ? (int64_t)crt : -1, chunk_addr, chunk_len,
                                  &n_chunks, &total_chunks))
                    return 1;
            }
            if (next == n_chunks) break;
            /* next continuation block: OCHK + messages + checksum */
            uint64_t ca = chunk_addr[next], cl = chunk_len[next];
            next++;
            if (next == n_chunks) next = n_chunks = 0; /* reuse the small queue */
            if (cl < 8) {
                return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, ca), "object header continuation block of %llu bytes",
                               (unsigned long long)cl);
            }
            mf_cursor cc;
            if (h5_at(h, ca, cl, "object header continuation block", &cc)) return 1;
            if (h5_sig(h, &cc, "OCHK", "object header continuation block")) return 1;
            if (h5_checksum(h, ca, cl - 4, "object header continuation block")) return 1;
            cur = ca + 4;
            cur_len = cl - 8;
        }
        return 0;
    }
    /* ---- version 1 ---- */
    if (h5_at(h, abs, 16, what, &c)) return 1;
    uint8_t version = 0, reserved = 0;
    uint16_t nmsgs = 0;
    uint32_t refcount = 0, size0 = 0;
    mf_u8(&c, &version, what);
    mf_u8(&c, &reserved, what);
    mf_u16le(&c, &nmsgs, what);
    mf_u32le(&c, &refcount, what);
    mf_u32le(&c, &size0, what);
    if (version != 1) {
        return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, abs), "no object header here (version byte %u)", version);
    }
    *version_out = 1;
    *flags_out = 0;
    uint64_t cur = abs + 16, cur_len = size0;
    size_t seen = 0;
    for (;;) {
        mf_cursor mc;
        if (h5_at(h, cur, cur_len, what, &mc)) return 1;
        while (mf_remaining(&mc) >= 8 && seen < nmsgs) {
            uint16_t type = 0, size = 0;
            uint8_t mflags = 0;
            mf_u16le(&mc, &type, what);
            mf_u16le(&mc, &size, what);
            mf_u8(&mc, &mflags, what);
            mf_skip(&mc, 3, what);
            uint64_t off = (uint64_t)(mc.pos - h->data);
            if (mf_skip(&mc, size, "object header message")) return 1;
            seen++;
            if (h5_header_msg(w, type, mflags, size, off, -1, chunk_addr, chunk_len, &n_chunks, &total_chunks)) return 1;
        }
        if (next == n_chunks || seen >= nmsgs) break;
        cur = chunk_addr[next];
        cur_len = chunk_len[next];
        next++;
        if (next == n_chunks) next = n_chunks = 0;
    }
    return 0;
}

/* ========================================================================================== */
/* Datatypes                                                                                  */
/* ========================================================================================== */

static int h5_name_z(mf_cursor *c, size_t pad_to, const uint8_t **name, uint32_t *len, const char *what) {
    /* NUL-terminated name; with pad_to > 1 the name plus NUL is padded to a multiple of pad_to */
    size_t avail = mf_remaining(c);
    const uint8_t *p = c->pos;
    const uint8_t *z = (const uint8_t *)memchr(p, 0, avail);
    if (z == NULL) {
        return mf_fail(c->err, MF_ERR_CORRUPT, mf_tell(c), "%s is not NUL-terminated", what);
    }
    size_t n = (size_t)(z - p);
    size_t used = n + 1;
    if (pad_to > 1) used = (used + pad_to - 1) / pad_to * pad_to;
    if (mf_skip(c, used, what)) return 1;
    *name = p;
    *len = (uint32_t)n;
    return 0;
}

static int h5_float_code(const mf_h5_dtype *t) {
    if (t->bit_offset != 0 || t->precision != t->size * 8 || t->order > 1) return MF_DT_UNKNOWN;
    if (((t->bits >> 4) & 3) != 2) return MF_DT_UNKNOWN; /* implied leading mantissa bit */
    if (t->size == 2 && t->sign_loc == 15 && t->exp_loc == 10 && t->exp_size == 5 && t->mant_loc == 0 &&
        t->mant_size == 10 && t->exp_bias == 15)
        return MF_DT_FLOAT16;
    if (t->size == 2 && t->sign_loc == 15 && t->exp_loc == 7 && t->exp_size == 8 && t->mant_loc == 0 &&
        t->mant_size == 7 && t->exp_bias == 127)
        return MF_DT_BFLOAT16;
    if (t->size == 4 && t->sign_loc == 31 && t->exp_loc == 23 && t->exp_size == 8 && t->mant_loc == 0 &&
        t->mant_size == 23 && t->exp_bias == 127)
        return MF_DT_FLOAT32;
    if (t->size == 8 && t->sign_loc == 63 && t->exp_loc == 52 && t->exp_size == 11 && t->mant_loc == 0 &&
        t->mant_size == 52 && t->exp_bias == 1023)
        return MF_DT_FLOAT64;
    return MF_DT_UNKNOWN;
}

static int h5_int_code(const mf_h5_dtype *t) {
    if (t->bit_offset != 0 || t->precision != t->size * 8 || t->order > 1) return MF_DT_UNKNOWN;
    switch (t->size) {
    case 1: return t->is_signed ? MF_DT_INT8 : MF_DT_UINT8;
    case 2: return t->is_signed ? MF_DT_INT16 : MF_DT_UINT16;
    case 4: return t->is_signed ? MF_DT_INT32 : MF_DT_UINT32;
    case 8: return t->is_signed ? MF_DT_INT64 : MF_DT_UINT64;
    }
    return MF_DT_UNKNOWN;
}

static int h5_is_name(const mf_h5_member *m, const char *s) {
    size_t n = strlen(s);
    return m->name_len == n && memcmp(m->name, s, n) == 0;
}

static int h5_parse_dtype(h5_walk *w, mf_cursor *c, unsigned depth, mf_h5_dtype **out);

static int h5_parse_dtype(h5_walk *w, mf_cursor *c, unsigned depth, mf_h5_dtype **out) {
    mf_h5ctx *h = &w->h;
    const char *what = "datatype message";
    uint64_t at = mf_tell(c);
    if (depth > H5_MAX_DTYPE_DEPTH) {
        return mf_fail(h->err, MF_ERR_LIMIT, at, "datatype nested more than %d levels", H5_MAX_DTYPE_DEPTH);
    }
    if (h5_work(h, 1, at - h->report_base)) return 1;
    mf_h5_dtype *t = (mf_h5_dtype *)mf_arena_calloc(h->arena, 1, sizeof(mf_h5_dtype), h->err, at);
    if (t == NULL) return 1;
    uint8_t cv;
    const uint8_t *bf;
    if (mf_u8(c, &cv, what) || mf_take(c, 3, &bf, what) || mf_u32le(c, &t->size, what)) return 1;
    t->cls = cv & 0x0f;
    t->version = cv >> 4;
    t->bits = (uint32_t)bf[0] | ((uint32_t)bf[1] << 8) | ((uint32_t)bf[2] << 16);
    t->code = MF_DT_UNKNOWN;
    if (t->version < 1 || t->version > 5) {
        return mf_fail(h->err, MF_ERR_UNSUPPORTED, at, "datatype message version %u", t->version);
    }
    switch (t->cls) {
    case MF_H5T_INTEGER:
    case MF_H5T_BITFIELD:
        t->order = t->bits & 1;
        t->is_signed = t->cls == MF_H5T_INTEGER ? (t->bits >> 3) & 1 : 0;
        if (mf_u16le(c, &t->bit_offset, what) || mf_u16le(c, &t->precision, what)) return 1;
        if (t->cls == MF_H5T_INTEGER) t->code = h5_int_code(t);
        break;
    case MF_H5T_FLOAT: {
        unsigned o = (t->bits & 1) | (((t->bits >> 6) & 1) << 1);
        t->order = o == 0 ? 0 : (o == 1 ? 1 : 2);
        t->sign_loc = (uint8_t)((t->bits >> 8) & 0xff);
        if (mf_u16le(c, &t->bit_offset, what) || mf_u16le(c, &t->precision, what) || mf_u8(c, &t->exp_loc, what) ||
            mf_u8(c, &t->exp_size, what) || mf_u8(c, &t->mant_loc, what) || mf_u8(c, &t->mant_size, what) ||
            mf_u32le(c, &t->exp_bias, what))
            return 1;
        t->code = h5_float_code(t);
        break;
    }
    case MF_H5T_TIME:
        t->order = t->bits & 1;
        if (mf_u16le(c, &t->precision, what)) return 1;
        break;
    case MF_H5T_STRING:
        break;
    case MF_H5T_OPAQUE: {
        unsigned n = t->bits & 0xff;
        const uint8_t *tag;
        if (mf_take(c, n, &tag, "opaque tag")) return 1;
        const uint8_t *z = n ? (const uint8_t *)memchr(tag, 0, n) : NULL;
        t->tag = tag;
        t->tag_len = z ? (uint32_t)(z - tag) : n;
        break;
    }
    case MF_H5T_COMPOUND: {
        uint32_t n = t->bits & 0xffff;
        if (n == 0) return mf_fail(h->err, MF_ERR_CORRUPT, at, "compound datatype without members");
        if (n > mf_remaining(c)) return mf_fail(h->err, MF_ERR_TRUNCATED, at, "compound datatype members truncated");
        t->members = (mf_h5_member *)mf_arena_calloc(h->arena, n, sizeof(mf_h5_member), h->err, at);
        if (t->members == NULL) return 1;
        t->n_members = n;
        unsigned off_len = t->size ? h5_log2(t->size) / 8 + 1 : 1;
        for (uint32_t i = 0; i < n; i++) {
            mf_h5_member *m = &t->members[i];
            uint64_t moff = 0;
            if (h5_name_z(c, t->version < 3 ? 8 : 1, &m->name, &m->name_len, "compound member name")) return 1;
            if (t->version < 3) {
                uint32_t o32;
                if (mf_u32le(c, &o32, what)) return 1;
                moff = o32;
            } else if (h5_uvar(c, off_len, &moff, "compound member offset")) {
                return 1;
            }
            uint8_t ndims = 0;
            uint32_t dims[4] = {0};
            if (t->version == 1) {
                if (mf_u8(c, &ndims, what) || mf_skip(c, 3 + 4 + 4, what)) return 1;
                for (int k = 0; k < 4; k++) {
                    if (mf_u32le(c, &dims[k], what)) return 1;
                }
                if (ndims > 4) return mf_fail(h->err, MF_ERR_CORRUPT, mf_tell(c), "compound member with %u dims", ndims);
            }
            if (h5_parse_dtype(w, c, depth + 1, &m->type)) return 1;
            if (ndims > 0) { /* version-1 array member: wrap the base type */
                mf_h5_dtype *a = (mf_h5_dtype *)mf_arena_calloc(h->arena, 1, sizeof(mf_h5_dtype), h->err, at);
                if (a == NULL) return 1;
                a->cls = MF_H5T_ARRAY;
                a->version = 1;
                a->code = MF_DT_UNKNOWN;
                a->base = m->type;
                a->ndims = ndims;
                a->dims = (uint32_t *)mf_arena_calloc(h->arena, ndims, sizeof(uint32_t), h->err, at);
                if (a->dims == NULL) return 1;
                uint64_t sz = m->type->size;
                for (unsigned k = 0; k < ndims; k++) {
                    a->dims[k] = dims[k];
                    if (mf_mul_u64(sz, dims[k], &sz) || sz > UINT32_MAX) {
                        return mf_fail(h->err, MF_ERR_CORRUPT, at, "compound array member too large");
                    }
                }
                a->size = (uint32_t)sz;
                m->type = a;
            }
            if (moff > t->size || m->type->size > t->size - moff) {
                return mf_fail(h->err, MF_ERR_CORRUPT, at,
                               "compound member at offset %llu (%u bytes) exceeds the %u-byte element",
                               (unsigned long long)moff, m->type->size, t->size);
            }
            m->offset = (uint32_t)moff;
        }
        /* h5py's complex numbers: {r, i} of one float type */
        if (n == 2 && h5_is_name(&t->members[0], "r") && h5_is_name(&t->members[1], "i")) {
            mf_h5_dtype *r = t->members[0].type, *im = t->members[1].type;
            if (r->cls == MF_H5T_FLOAT && im->cls == MF_H5T_FLOAT && r->code == im->code && r->order == im->order &&
                t->members[0].offset == 0 && t->members[1].offset == r->size && t->size == 2 * r->size) {
                if (r->code == MF_DT_FLOAT32) t->code = MF_DT_COMPLEX64;
                else if (r->code == MF_DT_FLOAT64) t->code = MF_DT_COMPLEX128;
                t->order = r->order;
            }
        }
        break;
    }
    case MF_H5T_REFERENCE:
        break;
    case MF_H5T_ENUM: {
        uint32_t n = t->bits & 0xffff;
        if (h5_parse_dtype(w, c, depth + 1, &t->base)) return 1;
        if (n > mf_remaining(c)) return mf_fail(h->err, MF_ERR_TRUNCATED, at, "enum datatype members truncated");
        t->members = (mf_h5_member *)mf_arena_calloc(h->arena, n ? n : 1, sizeof(mf_h5_member), h->err, at);
        if (t->members == NULL) return 1;
        t->n_members = n;
        for (uint32_t i = 0; i < n; i++) {
            if (h5_name_z(c, t->version < 3 ? 8 : 1, &t->members[i].name, &t->members[i].name_len, "enum name"))
                return 1;
        }
        for (uint32_t i = 0; i < n; i++) {
            if (mf_take(c, t->base->size, &t->members[i].value, "enum value")) return 1;
        }
        if (t->base->size != t->size) {
            return mf_fail(h->err, MF_ERR_CORRUPT, at, "enum of size %u over a base type of size %u", t->size,
                           t->base->size);
        }
        t->order = t->base->order;
        /* h5py's bool: int8 enum {FALSE: 0, TRUE: 1} */
        if (n == 2 && t->base->cls == MF_H5T_INTEGER && t->size == 1 && h5_is_name(&t->members[0], "FALSE") &&
            h5_is_name(&t->members[1], "TRUE") && t->members[0].value[0] == 0 && t->members[1].value[0] == 1)
            t->code = MF_DT_BOOL;
        break;
    }
    case MF_H5T_VLEN:
        if (h5_parse_dtype(w, c, depth + 1, &t->base)) return 1;
        break;
    case MF_H5T_ARRAY: {
        uint8_t nd;
        if (mf_u8(c, &nd, what)) return 1;
        if (nd == 0 || nd > MF_H5_MAX_RANK) return mf_fail(h->err, MF_ERR_CORRUPT, at, "array datatype with %u dims", nd);
        if (t->version < 3 && mf_skip(c, 3, what)) return 1;
        t->ndims = nd;
        t->dims = (uint32_t *)mf_arena_calloc(h->arena, nd, sizeof(uint32_t), h->err, at);
        if (t->dims == NULL) return 1;
        for (unsigned k = 0; k < nd; k++) {
            if (mf_u32le(c, &t->dims[k], what)) return 1;
        }
        if (t->version < 3 && mf_skip(c, 4 * (size_t)nd, what)) return 1;
        if (h5_parse_dtype(w, c, depth + 1, &t->base)) return 1;
        uint64_t sz = t->base->size;
        for (unsigned k = 0; k < nd; k++) {
            if (mf_mul_u64(sz, t->dims[k], &sz)) sz = UINT64_MAX;
        }
        if (sz != t->size) {
            return mf_fail(h->err, MF_ERR_CORRUPT, at, "array datatype of size %u holds %llu bytes", t->size,
                           (unsigned long long)sz);
        }
        break;
    }
    case MF_H5T_COMPLEX:
        if (h5_parse_dtype(w, c, depth + 1, &t->base)) return 1;
        if (t->base->cls == MF_H5T_FLOAT && t->size == 2 * t->base->size && (t->bits & 7) == 1) {
            if (t->base->code == MF_DT_FLOAT32) t->code = MF_DT_COMPLEX64;
            else if (t->base->code == MF_DT_FLOAT64) t->code = MF_DT_COMPLEX128;
            t->order = t->base->order;
        }
        break;
    default:
        return mf_fail(h->err, MF_ERR_UNSUPPORTED, at, "datatype class %u", t->cls);
    }
    if (t->size == 0) {
        return mf_fail(h->err, MF_ERR_CORRUPT, at, "datatype of size 0");
    }
    *out = t;
    return 0;
}

static int h5_object_dtype(h5_walk *w, uint64_t addr, uint64_t at, mf_h5_dtype **out, unsigned depth);

/* A datatype message body (possibly shared: then it names a committed datatype). Identical
 * message bytes share one parsed datatype (a file of 20,000 float32 datasets parses one). */
static int h5_dtype_msg(h5_walk *w, uint64_t off, uint64_t size, int shared, mf_h5_dtype **out, unsigned depth) {
    mf_h5ctx *h = &w->h;
    mf_cursor c;
    if (h5_at(h, off, size, "datatype message", &c)) return 1;
    if (!shared) {
        const uint8_t *p = h->data + off;
        for (unsigned i = 0; i < H5_DT_RECENT; i++) {
            h5_dt_recent *r = &w->recent[i];
            if (r->dt != NULL && r->size == size && memcmp(r->bytes, p, (size_t)size) == 0) {
                *out = r->dt;
                return 0;
            }
        }
        if (h5_parse_dtype(w, &c, 0, out)) return 1;
        if (size <= 256) {
            h5_dt_recent *r = &w->recent[w->recent_next++ % H5_DT_RECENT];
            r->bytes = p;
            r->size = size;
            r->dt = *out;
        }
        return 0;
    }
    uint8_t version, type;
    uint64_t addr;
    if (mf_u8(&c, &version, "shared message") || mf_u8(&c, &type, "shared message")) return 1;
    if (version == 1) {
        if (mf_skip(&c, 6, "shared message")) return 1;
    } else if (version == 3 && type == 1) {
        return mf_fail(h->err, MF_ERR_UNSUPPORTED, h5_rep(h, off),
                       "datatype stored in the shared object header message heap is not supported");
    } else if (version != 2 && version != 3) {
        return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, off), "shared message version %u", version);
    }
    if (h5_addr(h, &c, &addr, "shared message address")) return 1;
    return h5_object_dtype(w, addr, off, out, depth + 1);
}

/* The datatype of the committed datatype whose object header is at addr (cached). */
static int h5_object_dtype(h5_walk *w, uint64_t addr, uint64_t at, mf_h5_dtype **out, unsigned depth) {
    mf_h5ctx *h = &w->h;
    h5_dt_cache *cache = (h5_dt_cache *)w->dt_cache.items;
    for (size_t i = 0; i < w->dt_cache.len; i++) {
        if (cache[i].addr == addr) {
            *out = cache[i].dt;
            return 0;
        }
    }
    if (depth > 4) return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, at), "shared datatypes refer to each other");
    /* the header walk reuses w->msgs: keep the caller's messages */
    mf_vec saved = w->msgs;
    w->msgs.items = NULL;
    w->msgs.len = w->msgs.cap = 0;
    uint8_t v, f;
    int rc = h5_read_header(w, addr, &v, &f);
    mf_h5_dtype *dt = NULL;
    if (rc == 0) {
        h5_msg *m = (h5_msg *)w->msgs.items;
        size_t n = w->msgs.len;
        for (size_t i = 0; i < n && dt == NULL && rc == 0; i++) {
            if (m[i].type == H5M_DATATYPE) rc = h5_dtype_msg(w, m[i].off, m[i].size, (m[i].flags & 2) != 0, &dt, depth);
        }
        if (rc == 0 && dt == NULL) {
            rc = mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, addr), "shared datatype object has no datatype message");
        }
    }
    w->msgs = saved;
    if (rc) return rc;
    h5_dt_cache *e = (h5_dt_cache *)mf_vec_push(&w->dt_cache, sizeof(h5_dt_cache), h->arena, h->err, h5_rep(h, at));
    if (e == NULL) return 1;
    e->addr = addr;
    e->dt = dt;
    *out = dt;
    return 0;
}

/* ========================================================================================== */
/* Dataspace, fill value, layout, filters                                                     */
/* ========================================================================================== */

static int h5_parse_space(mf_h5ctx *h, mf_cursor *c, mf_h5_space *s) {
    const char *what = "dataspace message";
    uint64_t at = mf_tell(c);
    uint8_t version, rank, flags, type = 1;
    if (mf_u8(c, &version, what) || mf_u8(c, &rank, what) || mf_u8(c, &flags, what)) return 1;
    if (version == 1) {
        if (mf_skip(c, 5, what)) return 1;
        type = rank ? 1 : 0;
    } else if (version == 2) {
        if (mf_u8(c, &type, what)) return 1;
        if (type > 2) return mf_fail(h->err, MF_ERR_CORRUPT, at, "dataspace type %u", type);
        if (type != 1 && rank != 0) return mf_fail(h->err, MF_ERR_CORRUPT, at, "scalar or null dataspace with rank %u", rank);
    } else {
        return mf_fail(h->err, MF_ERR_UNSUPPORTED, at, "dataspace message version %u", version);
    }
    if (rank > MF_H5_MAX_RANK) return mf_fail(h->err, MF_ERR_CORRUPT, at, "dataspace of rank %u", rank);
    s->kind = type;
    s->rank = rank;
    s->dims = (uint64_t *)mf_arena_calloc(h->arena, rank ? 2 * (size_t)rank : 2, sizeof(uint64_t), h->err, at);
    if (s->dims == NULL) return 1;
    s->maxdims = s->dims + (rank ? rank : 1);
    for (unsigned i = 0; i < rank; i++) {
        if (h5_length(h, c, &s->dims[i], what)) return 1;
    }
    for (unsigned i = 0; i < rank; i++) {
        if (flags & 1) {
            if (h5_length(h, c, &s->maxdims[i], what)) return 1;
            if (h->sl < 8 && s->maxdims[i] == (((uint64_t)1 << (8 * h->sl)) - 1)) s->maxdims[i] = UINT64_MAX;
        } else {
            s->maxdims[i] = s->dims[i];
        }
    }
    return 0;
}

/* numel of a dataspace (0 for null), checked */
static int h5_numel(mf_h5ctx *h, const mf_h5_space *s, uint64_t at, uint64_t *out) {
    uint64_t n = s->kind == 2 ? 0 : 1;
    for (unsigned i = 0; i < s->rank; i++) {
        if (mf_mul_u64(n, s->dims[i], &n)) {
            return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, at), "dataspace element count overflows");
        }
    }
    *out = n;
    return 0;
}

/* Fill value message 0x5 (versions 1-3) or the old fill value message 0x4, read as libhdf5 reads
 * them (H5Ofill.c, H5Dint.c):
 *   0x4: size(4) + value; size 0 means undefined.
 *   0x5 v1/v2: version, alloc time(1), fill time(1), defined(1), then only if defined a signed
 *     size(4) + value: > 0 a value of that size, 0 the default (zeros), -1 undefined. The spec
 *     lists the size in v1 even when undefined; libhdf5 ignores it then (PyTables files carry
 *     01 03 02 00 ffffffff: version 1, undefined, size -1).
 *   0x5 v3: version, flags (bits 0-1 alloc time, 2-3 fill time, bit 4 undefined, bit 5 value
 *     present), then size(4) + value if bit 5; no value bit means the default. Other flag bits,
 *     or bits 4 and 5 together, are refused (libhdf5 refuses them too). */
static int h5_parse_fill(mf_h5ctx *h, const h5_msg *m, mf_h5_dataset *d) {
    mf_cursor c;
    const char *what = "fill value message";
    uint64_t at = h5_rep(h, m->off);
    if (h5_at(h, m->off, m->size, what, &c)) return 1;
    uint32_t size = 0;
    int has_value = 0;
    d->fill_status = MF_H5_FILL_DEFAULT;
    if (m->type == H5M_FILL_OLD) {
        if (mf_u32le(&c, &size, what)) return 1;
        d->fill_time = MF_H5_FILL_TIME_IFSET;
        if (size == 0) d->fill_status = MF_H5_FILL_UNDEFINED;
        has_value = size != 0;
    } else {
        uint8_t version;
        if (mf_u8(&c, &version, what)) return 1;
        if (version == 1 || version == 2) {
            uint8_t alloc, wtime, defined;
            if (mf_u8(&c, &alloc, what) || mf_u8(&c, &wtime, what) || mf_u8(&c, &defined, what)) return 1;
            d->alloc_time = alloc;
            d->fill_time = wtime;
            if (!defined) {
                d->fill_status = MF_H5_FILL_UNDEFINED;
            } else {
                if (mf_u32le(&c, &size, what)) return 1;
                if (size == UINT32_MAX) { /* -1 */
                    d->fill_status = MF_H5_FILL_UNDEFINED;
                } else if (size & 0x80000000u) {
                    return mf_fail(h->err, MF_ERR_CORRUPT, at, "fill value of negative size %ld", (long)(int32_t)size);
                }
                has_value = d->fill_status != MF_H5_FILL_UNDEFINED && size != 0;
            }
        } else if (version == 3) {
            uint8_t flags;
            if (mf_u8(&c, &flags, what)) return 1;
            if (flags & 0xC0) return mf_fail(h->err, MF_ERR_CORRUPT, at, "fill value message flags 0x%02x", flags);
            if ((flags & 0x30) == 0x30) {
                return mf_fail(h->err, MF_ERR_CORRUPT, at, "fill value both undefined and present");
            }
            d->alloc_time = flags & 3;
            d->fill_time = (flags >> 2) & 3;
            if (flags & 0x10) {
                d->fill_status = MF_H5_FILL_UNDEFINED;
            } else if (flags & 0x20) {
                if (mf_u32le(&c, &size, what)) return 1;
                has_value = size != 0;
            }
        } else {
            return mf_fail(h->err, MF_ERR_UNSUPPORTED, at, "fill value message version %u", version);
        }
    }
    if (has_value) {
        uint64_t off = mf_tell(&c) - h->report_base;
        if (mf_skip(&c, size, "fill value")) return 1;
        d->fill_status = MF_H5_FILL_USER;
        d->fill_offset = off;
        d->fill_size = size;
    } else {
        d->fill_offset = MF_H5_UNDEF;
        d->fill_size = 0;
    }
    return 0;
}

static int h5_parse_filters(mf_h5ctx *h, const h5_msg *m, mf_h5_dataset *d) {
    mf_cursor c;
    const char *what = "filter pipeline message";
    if (h5_at(h, m->off, m->size, what, &c)) return 1;
    uint8_t version, n;
    if (mf_u8(&c, &version, what) || mf_u8(&c, &n, what)) return 1;
    if (version == 1) {
        if (mf_skip(&c, 6, what)) return 1;
    } else if (version != 2) {
        return mf_fail(h->err, MF_ERR_UNSUPPORTED, h5_rep(h, m->off), "filter pipeline message version %u", version);
    }
    if (n > H5_MAX_FILTERS) return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, m->off), "%u filters in a pipeline", n);
    d->filters = (mf_h5_filter *)mf_arena_calloc(h->arena, n ? n : 1, sizeof(mf_h5_filter), h->err, h5_rep(h, m->off));
    if (d->filters == NULL) return 1;
    d->n_filters = n;
    for (unsigned i = 0; i < n; i++) {
        mf_h5_filter *f = &d->filters[i];
        uint16_t name_len = 0, nv;
        if (mf_u16le(&c, &f->id, what)) return 1;
        if (version == 1 || f->id >= 256) {
            if (mf_u16le(&c, &name_len, what)) return 1;
        }
        if (mf_u16le(&c, &f->flags, what) || mf_u16le(&c, &nv, what)) return 1;
        if (name_len) {
            const uint8_t *p;
            if (mf_take(&c, name_len, &p, "filter name")) return 1;
            const uint8_t *z = (const uint8_t *)memchr(p, 0, name_len);
            f->name = p;
            f->name_len = z ? (uint32_t)(z - p) : name_len;
        }
        f->n_values = nv;
        f->values = (uint32_t *)mf_arena_calloc(h->arena, nv ? nv : 1, sizeof(uint32_t), h->err, mf_tell(&c));
        if (f->values == NULL) return 1;
        for (unsigned k = 0; k < nv; k++) {
            if (mf_u32le(&c, &f->values[k], what)) return 1;
        }
        if (version == 1 && (nv & 1) && mf_skip(&c, 4, what)) return 1;
    }
    return 0;
}

static int h5_parse_layout(mf_h5ctx *h, const h5_msg *m, mf_h5_dataset *d) {
    mf_cursor c;
    const char *what = "data layout message";
    uint64_t at = h5_rep(h, m->off);
    if (h5_at(h, m->off, m->size, what, &c)) return 1;
    uint8_t version, cls;
    if (mf_u8(&c, &version, what)) return 1;
    d->layout_version = version;
    d->data_offset = MF_H5_UNDEF;
    d->index_addr = MF_H5_UNDEF;
    uint64_t cdims[MF_H5_MAX_RANK + 1];
    unsigned cndims = 0;
    if (version == 1 || version == 2) {
        uint8_t nd;
        if (mf_u8(&c, &nd, what) || mf_u8(&c, &cls, what) || mf_skip(&c, 5, what)) return 1;
        if (nd == 0 || nd > MF_H5_MAX_RANK + 1) return mf_fail(h->err, MF_ERR_CORRUPT, at, "layout with %u dims", nd);
        uint64_t addr = MF_H5_UNDEF;
        if (cls != 0 && h5_addr(h, &c, &addr, "layout data address")) return 1;
        for (unsigned i = 0; i < nd; i++) {
            uint32_t v;
            if (mf_u32le(&c, &v, what)) return 1;
            cdims[i] = v;
        }
        if (cls == 0) {
            uint32_t sz;
            if (mf_u32le(&c, &sz, what)) return 1;
            d->data_offset = (uint64_t)(c.pos - h->data);
            d->data_size = sz;
            if (mf_skip(&c, sz, "compact data")) return 1;
        } else if (cls == 1) {
            d->data_offset = addr;
            d->data_size = d->nbytes; /* not stored in these versions */
        } else if (cls == 2) {
            d->index_addr = addr;
            d->index_type = 0;
            cndims = nd;
        } else {
            return mf_fail(h->err, MF_ERR_CORRUPT, at, "layout class %u", cls);
        }
    } else if (version >= 3 && version <= 5) {
        if (mf_u8(&c, &cls, what)) return 1;
        if (cls == 0) {
            uint16_t sz;
            if (mf_u16le(&c, &sz, what)) return 1;
            d->data_offset = (uint64_t)(c.pos - h->data);
            d->data_size = sz;
            if (mf_skip(&c, sz, "compact data")) return 1;
        } else if (cls == 1) {
            if (h5_addr(h, &c, &d->data_offset, "contiguous data address") ||
                h5_length(h, &c, &d->data_size, "contiguous data size"))
                return 1;
        } else if (cls == 2 && version == 3) {
            uint8_t nd;
            if (mf_u8(&c, &nd, what)) return 1;
            if (nd < 2 || nd > MF_H5_MAX_RANK + 1) return mf_fail(h->err, MF_ERR_CORRUPT, at, "chunked layout with %u dims", nd);
            if (h5_addr(h, &c, &d->index_addr, "chunk index address")) return 1;
            for (unsigned i = 0; i < nd; i++) {
                uint32_t v;
                if (mf_u32le(&c, &v, what)) return 1;
                cdims[i] = v;
            }
            cndims = nd;
            d->index_type = 0;
        } else if (cls == 2) {
            uint8_t flags, nd, enc;
            if (mf_u8(&c, &flags, what) || mf_u8(&c, &nd, what) || mf_u8(&c, &enc, what)) return 1;
            if (nd < 2 || nd > MF_H5_MAX_RANK + 1) return mf_fail(h->err, MF_ERR_CORRUPT, at, "chunked layout with %u dims", nd);
            if (enc < 1 || enc > 8) return mf_fail(h->err, MF_ERR_CORRUPT, at, "chunk dimension width %u", enc);
            d->chunk_flags = flags;
            for (unsigned i = 0; i < nd; i++) {
                if (h5_uvar(&c, enc, &cdims[i], what)) return 1;
            }
            cndims = nd;
            uint8_t it;
            if (mf_u8(&c, &it, what)) return 1;
            d->index_type = it;
            switch (it) {
            case 1:
                if (flags & 2) {
                    if (h5_length(h, &c, &d->single_size, what) || mf_u32le(&c, &d->single_mask, what)) return 1;
                }
                break;
            case 2:
                break;
            case 3:
                if (mf_u8(&c, &d->farray_page_bits, what)) return 1;
                break;
            case 4:
                for (int k = 0; k < 5; k++) {
                    if (mf_u8(&c, &d->ea_params[k], what)) return 1;
                }
                break;
            case 5: {
                uint8_t sp, mp;
                if (mf_u32le(&c, &d->bt2_node_size, what) || mf_u8(&c, &sp, what) || mf_u8(&c, &mp, what)) return 1;
                break;
            }
            default:
                return mf_fail(h->err, MF_ERR_CORRUPT, at, "chunk index type %u", it);
            }
            if (h5_addr(h, &c, &d->index_addr, "chunk index address")) return 1;
        } else if (cls == 3) {
            d->layout = 3;
            /* virtual: listed, not readable; its source files are read by h5_parse_vds */
            if (h5_addr(h, &c, &d->vds_heap, "virtual dataset heap address") ||
                mf_u32le(&c, &d->vds_index, "virtual dataset heap index"))
                return 1;
            return 0;
        } else {
            return mf_fail(h->err, MF_ERR_CORRUPT, at, "layout class %u", cls);
        }
    } else {
        return mf_fail(h->err, MF_ERR_UNSUPPORTED, at, "data layout message version %u", version);
    }
    d->layout = cls;
    if (cls == 2) {
        unsigned rank = d->space.rank;
        if (cndims != rank + 1u) {
            return mf_fail(h->err, MF_ERR_CORRUPT, at, "chunk has %u dimensions for a dataspace of rank %u",
                           cndims - 1, rank);
        }
        uint64_t bytes = cdims[rank];
        d->chunk_elem = (uint32_t)(cdims[rank] > UINT32_MAX ? UINT32_MAX : cdims[rank]);
        if (cdims[rank] != d->dtype->size) {
            return mf_fail(h->err, MF_ERR_CORRUPT, at, "chunk element size %llu differs from the datatype size %u",
                           (unsigned long long)cdims[rank], d->dtype->size);
        }
        d->chunk = (uint64_t *)mf_arena_calloc(h->arena, rank ? rank : 1, sizeof(uint64_t), h->err, at);
        if (d->chunk == NULL) return 1;
        for (unsigned i = 0; i < rank; i++) {
            if (cdims[i] == 0) return mf_fail(h->err, MF_ERR_CORRUPT, at, "chunk dimension %u is 0", i);
            d->chunk[i] = cdims[i];
            if (mf_mul_u64(bytes, cdims[i], &bytes)) {
                return mf_fail(h->err, MF_ERR_CORRUPT, at, "chunk size overflows");
            }
        }
        d->chunk_bytes = bytes;
    }
    return 0;
}

/* Check a dataset's storage against its size and the file. */
static int h5_check_storage(mf_h5ctx *h, mf_h5_dataset *d, uint64_t at) {
    if (d->layout == 0) {
        if (d->data_size != d->nbytes) {
            return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, at),
                           "compact dataset holds %llu bytes, its dataspace and datatype need %llu",
                           (unsigned long long)d->data_size, (unsigned long long)d->nbytes);
        }
    } else if (d->layout == 1 && d->data_offset != MF_H5_UNDEF && !d->external) {
        if (d->data_size < d->nbytes) {
            return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, at),
                           "contiguous storage of %llu bytes is smaller than the dataset's %llu bytes",
                           (unsigned long long)d->data_size, (unsigned long long)d->nbytes);
        }
        if (d->data_offset > h->len || d->nbytes > h->len - d->data_offset) {
            return mf_fail(h->err, MF_ERR_TRUNCATED, h5_rep(h, d->data_offset),
                           "dataset data (%llu bytes) runs past the end of the file",
                           (unsigned long long)d->nbytes);
        }
    } else if (d->layout == 2 && d->space.kind != 1) {
        return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, at), "chunked dataset without a simple dataspace");
    }
    return 0;
}

/* ========================================================================================== */
/* Attributes                                                                                 */
/* ========================================================================================== */

/* An attribute message body at [off, off + size). */
static int h5_parse_attr(h5_walk *w, uint64_t off, uint64_t size, int64_t crt, uint32_t object) {
    mf_h5ctx *h = &w->h;
    mf_cursor c;
    const char *what = "attribute message";
    uint64_t at = h5_rep(h, off);
    if (h5_at(h, off, size, what, &c)) return 1;
    uint8_t version, flags, charset = 0;
    uint16_t name_size, dt_size, ds_size;
    if (mf_u8(&c, &version, what) || mf_u8(&c, &flags, what) || mf_u16le(&c, &name_size, what) ||
        mf_u16le(&c, &dt_size, what) || mf_u16le(&c, &ds_size, what))
        return 1;
    if (version < 1 || version > 3) return mf_fail(h->err, MF_ERR_UNSUPPORTED, at, "attribute message version %u", version);
    if (version == 3 && mf_u8(&c, &charset, what)) return 1;
    size_t pad = version == 1 ? 8 : 1;
#define H5_PAD(n) ((pad == 8) ? (((size_t)(n) + 7) & ~(size_t)7) : (size_t)(n))
    mf_h5_attr a;
    memset(&a, 0, sizeof a);
    const uint8_t *name;
    if (name_size == 0) return mf_fail(h->err, MF_ERR_CORRUPT, at, "attribute without a name");
    if (mf_take(&c, H5_PAD(name_size), &name, "attribute name")) return 1;
    const uint8_t *z = (const uint8_t *)memchr(name, 0, name_size);
    a.name = name;
    a.name_len = z ? (uint32_t)(z - name) : name_size;
    a.charset = charset;
    uint64_t dt_off = (uint64_t)(c.pos - h->data);
    if (mf_skip(&c, H5_PAD(dt_size), "attribute datatype")) return 1;
    uint64_t ds_off = (uint64_t)(c.pos - h->data);
    if (mf_skip(&c, H5_PAD(ds_size), "attribute dataspace")) return 1;
#undef H5_PAD
    if (h5_dtype_msg(w, dt_off, dt_size, (flags & 1) != 0, &a.dtype, 0)) return 1;
    if (flags & 2) return mf_fail(h->err, MF_ERR_UNSUPPORTED, at, "attribute with a shared dataspace");
    mf_cursor sc;
    if (h5_at(h, ds_off, ds_size, "attribute dataspace", &sc)) return 1;
    if (h5_parse_space(h, &sc, &a.space)) return 1;
    if (h5_numel(h, &a.space, off, &a.numel)) return 1;
    if (mf_mul_u64(a.numel, a.dtype->size, &a.data_size)) {
        return mf_fail(h->err, MF_ERR_CORRUPT, at, "attribute size overflows");
    }
    a.data_offset = (uint64_t)(c.pos - h->data);
    if (a.data_size > mf_remaining(&c)) {
        return mf_fail(h->err, MF_ERR_TRUNCATED, mf_tell(&c), "attribute value truncated: needs %llu bytes, %zu left",
                       (unsigned long long)a.data_size, mf_remaining(&c));
    }
    a.crt_order = crt;
    a.object = object;
    mf_h5_attr *slot = (mf_h5_attr *)mf_vec_push(&w->attrs, sizeof(mf_h5_attr), h->arena, h->err, at);
    if (slot == NULL) return 1;
    *slot = a;
    return 0;
}

typedef struct h5_dense_ctx {
    h5_walk *w;
    h5_fheap *fh;
    uint32_t object;
    int links;          /* 1: collecting links, 0: attributes */
    int tracked;        /* attributes: creation order tracked (object header flag bit 2) */
} h5_dense_ctx;

static int h5_parse_link(mf_h5ctx *h, uint64_t off, uint64_t size, h5_link *l);
static int h5_push_link(h5_walk *w, const h5_link *l);

static int h5_dense_cb(mf_h5ctx *h, const uint8_t *rec, uint32_t rec_size, uint64_t rec_off, void *ud) {
    h5_dense_ctx *d = (h5_dense_ctx *)ud;
    uint64_t obj_off, obj_len;
    if (d->links) { /* type 5: hash(4) + heap ID(7) */
        if (rec_size < 4 + 7 || d->fh->id_len > rec_size - 4) {
            return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, rec_off), "link name record of %u bytes", rec_size);
        }
        if (h5_fheap_get(h, d->fh, rec + 4, rec_off + 4, &obj_off, &obj_len)) return 1;
        h5_link l;
        if (h5_parse_link(h, obj_off, obj_len, &l)) return 1;
        return h5_push_link(d->w, &l);
    }
    /* type 8: heap ID(8), flags(1), creation order(4), hash(4) */
    if (rec_size < 17 || d->fh->id_len > 8) {
        return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, rec_off), "attribute name record of %u bytes", rec_size);
    }
    uint8_t mflags = rec[8];
    uint32_t crt = mf_load_u32le(rec + 9);
    if (mflags & 2) {
        return mf_fail(h->err, MF_ERR_UNSUPPORTED, h5_rep(h, rec_off),
                       "attribute stored in the shared object header message heap is not supported");
    }
    if (h5_fheap_get(h, d->fh, rec, rec_off, &obj_off, &obj_len)) return 1;
    return h5_parse_attr(d->w, obj_off, obj_len, d->tracked ? (int64_t)crt : -1, d->object);
}

/* ========================================================================================== */
/* Links and groups                                                                           */
/* ========================================================================================== */

static int h5_parse_link(mf_h5ctx *h, uint64_t off, uint64_t size, h5_link *l) {
    mf_cursor c;
    const char *what = "link message";
    if (h5_at(h, off, size, what, &c)) return 1;
    memset(l, 0, sizeof *l);
    l->off = off;
    l->crt = -1;
    uint8_t version, flags;
    if (mf_u8(&c, &version, what) || mf_u8(&c, &flags, what)) return 1;
    if (version != 1) return mf_fail(h->err, MF_ERR_UNSUPPORTED, h5_rep(h, off), "link message version %u", version);
    if (flags & 0x08) {
        if (mf_u8(&c, &l->type, what)) return 1;
    }
    if (flags & 0x04) {
        uint64_t crt;
        if (mf_u64le(&c, &crt, what)) return 1;
        l->crt = (int64_t)(crt & 0x7fffffffffffffffull);
    }
    if (flags & 0x10) {
        if (mf_u8(&c, &l->charset, what)) return 1;
    }
    uint64_t nlen;
    if (h5_uvar(&c, 1u << (flags & 3), &nlen, what)) return 1;
    if (nlen == 0) return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, off), "link with an empty name");
    if (nlen > mf_remaining(&c)) return mf_fail(h->err, MF_ERR_TRUNCATED, mf_tell(&c), "link name truncated");
    mf_take(&c, (size_t)nlen, &l->name, what);
    l->name_len = (uint32_t)nlen;
    if (l->type == 0) {
        if (h5_addr(h, &c, &l->addr, "hard link address")) return 1;
        if (l->addr == MF_H5_UNDEF) return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, off), "hard link to an undefined address");
    } else {
        uint16_t vlen;
        if (mf_u16le(&c, &vlen, what) || mf_take(&c, vlen, &l->target, "link value")) return 1;
        l->target_len = vlen;
    }
    return 0;
}

/* Links of the group being visited go straight onto the pending stack (its parent is set later). */
static int h5_push_link(h5_walk *w, const h5_link *l) {
    h5_pending *slot = (h5_pending *)mf_vec_push(&w->pending, sizeof(h5_pending), w->h.arena, w->h.err,
                                                 h5_rep(&w->h, l->off));
    if (slot == NULL) return 1;
    slot->parent = -1;
    slot->link = *l;
    return 0;
}

/* descending by name: the stack pops the first name first */
static int h5_pending_cmp(const void *a, const void *b) {
    const h5_link *x = &((const h5_pending *)a)->link, *y = &((const h5_pending *)b)->link;
    uint32_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int r = memcmp(y->name, x->name, n);
    if (r) return r;
    return x->name_len < y->name_len ? 1 : -(x->name_len > y->name_len);
}

/* Room for `extra` more items in one step (a group announces its size: no repeated doubling). */
static int h5_vec_reserve(mf_vec *v, size_t size, size_t extra, mf_arena *a, mf_error *err, uint64_t at) {
    if (v->cap - v->len >= extra) return 0;
    size_t ncap = v->cap * 2 > v->len + extra ? v->cap * 2 : v->len + extra;
    uint64_t bytes;
    if (ncap < v->len || mf_mul_u64(ncap, size, &bytes) || bytes > SIZE_MAX) {
        return mf_fail(err, MF_ERR_LIMIT, at, "too many items");
    }
    void *n = mf_arena_alloc(a, (size_t)bytes, err, at);
    if (n == NULL) return 1;
    if (v->len) memcpy(n, v->items, v->len * size);
    v->items = n;
    v->cap = ncap;
    return 0;
}

/* the local heap's data segment */
typedef struct h5_lheap {
    uint64_t data;
    uint64_t size;
} h5_lheap;

static int h5_local_heap(mf_h5ctx *h, uint64_t abs, h5_lheap *lh) {
    mf_cursor c;
    const char *what = "local heap";
    if (h5_at(h, abs, 8 + 2 * (uint64_t)h->sl + h->so, what, &c)) return 1;
    if (h5_sig(h, &c, "HEAP", what)) return 1;
    uint8_t version;
    uint64_t free_off;
    if (mf_u8(&c, &version, what) || mf_skip(&c, 3, what) || h5_length(h, &c, &lh->size, what) ||
        h5_length(h, &c, &free_off, what) || h5_addr(h, &c, &lh->data, "local heap data"))
        return 1;
    if (version != 0) return mf_fail(h->err, MF_ERR_UNSUPPORTED, h5_rep(h, abs), "local heap version %u", version);
    mf_cursor dc;
    return h5_at(h, lh->data, lh->size, "local heap data segment", &dc);
}

/* NUL-terminated string at offset `at` of the local heap */
static int h5_heap_str(mf_h5ctx *h, const h5_lheap *lh, uint64_t at, uint64_t from, const uint8_t **s, uint32_t *n) {
    if (at >= lh->size) {
        return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, from), "name offset %llu outside the local heap (%llu bytes)",
                       (unsigned long long)at, (unsigned long long)lh->size);
    }
    const uint8_t *p = h->data + lh->data + at;
    const uint8_t *z = (const uint8_t *)memchr(p, 0, (size_t)(lh->size - at));
    if (z == NULL) return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, from), "local heap name is not NUL-terminated");
    *s = p;
    *n = (uint32_t)(z - p);
    return 0;
}

static int h5_snod(h5_walk *w, uint64_t abs, const h5_lheap *lh) {
    mf_h5ctx *h = &w->h;
    mf_cursor c;
    const char *what = "symbol table node";
    if (h5_at(h, abs, 8, what, &c)) return 1;
    if (h5_sig(h, &c, "SNOD", what)) return 1;
    uint8_t version = 0, res = 0;
    uint16_t n = 0;
    mf_u8(&c, &version, what);
    mf_u8(&c, &res, what);
    mf_u16le(&c, &n, what);
    if (version != 1) return mf_fail(h->err, MF_ERR_UNSUPPORTED, h5_rep(h, abs), "symbol table node version %u", version);
    uint64_t esize = 2 * (uint64_t)h->so + 24;
    if (h5_work(h, n, abs)) return 1;
    if (h5_at(h, abs + 8, n * esize, what, &c)) return 1;
    for (unsigned i = 0; i < n; i++) {
        uint64_t eoff = mf_tell(&c) - h->report_base;
        uint64_t name_off, addr;
        uint32_t cache;
        const uint8_t *scratch;
        if (h5_uvar(&c, h->so, &name_off, what) || h5_addr(h, &c, &addr, "symbol table entry") ||
            mf_u32le(&c, &cache, what) || mf_skip(&c, 4, what) || mf_take(&c, 16, &scratch, what))
            return 1;
        h5_link l;
        memset(&l, 0, sizeof l);
        l.off = eoff;
        l.crt = -1;
        if (h5_heap_str(h, lh, name_off, eoff, &l.name, &l.name_len)) return 1;
        if (l.name_len == 0) return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, eoff), "symbol table entry without a name");
        if (cache == 2) {
            l.type = 1;
            uint32_t voff = mf_load_u32le(scratch);
            const uint8_t *t;
            uint32_t tn;
            if (h5_heap_str(h, lh, voff, eoff, &t, &tn)) return 1;
            l.target = t;
            l.target_len = tn;
        } else {
            if (addr == MF_H5_UNDEF) return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, eoff), "symbol table entry without an object");
            l.addr = addr;
        }
        if (h5_push_link(w, &l)) return 1;
    }
    return 0;
}

/* v1 B-tree of a group (node type 0): visit its symbol table nodes */
static int h5_group_btree(h5_walk *w, uint64_t abs, const h5_lheap *lh, int want_level) {
    mf_h5ctx *h = &w->h;
    mf_cursor c;
    const char *what = "group B-tree node";
    uint64_t hdr = 8 + 2 * (uint64_t)h->so;
    uint8_t level;
    uint16_t n;
    if (h5_work(h, 1, abs)) return 1;
    if (h5_btree1_node(h, abs, 0, want_level, what, &level, &n)) return 1;
    uint64_t body = hdr + (uint64_t)n * (h->sl + h->so) + h->sl;
    if (h5_at(h, abs, body, what, &c)) return 1;
    mf_skip(&c, (size_t)hdr, what);
    int missing = 0;
    for (unsigned i = 0; i < n; i++) {
        uint64_t key, child;
        if (h5_length(h, &c, &key, what) || h5_addr(h, &c, &child, "group B-tree child")) return 1;
        if (level == 0 ? h5_snod(w, child, lh) : h5_group_btree(w, child, lh, level - 1)) {
            if (h->err->code != MF_ERR_NEED) return 1;
            /* a sparse window: the other children first, so that one pass names a whole level */
            h->err->code = MF_OK;
            missing = 1;
        }
    }
    if (missing) return mf_fail(h->err, MF_ERR_NEED, h5_rep(h, abs), "group B-tree nodes not fetched yet");
    return 0;
}

/* ========================================================================================== */
/* The walk                                                                                   */
/* ========================================================================================== */

static int h5_seen_find(h5_walk *w, uint64_t addr) {
    if (w->seen_cap == 0) return -1;
    size_t mask = w->seen_cap - 1;
    size_t i = (size_t)((addr * 0x9E3779B97F4A7C15ull) >> 17) & mask;
    while (w->seen_key[i] != MF_H5_UNDEF) {
        if (w->seen_key[i] == addr) return w->seen_val[i];
        i = (i + 1) & mask;
    }
    return -1;
}

static int h5_seen_add(h5_walk *w, uint64_t addr, int32_t idx) {
    mf_h5ctx *h = &w->h;
    if ((w->seen_len + 1) * 2 > w->seen_cap) {
        size_t ncap = w->seen_cap ? w->seen_cap * 2 : 1024;
        uint64_t *k = (uint64_t *)mf_arena_alloc(h->arena, ncap * sizeof(uint64_t), h->err, h5_rep(h, addr));
        int32_t *v = (int32_t *)mf_arena_alloc(h->arena, ncap * sizeof(int32_t), h->err, h5_rep(h, addr));
        if (k == NULL || v == NULL) return 1;
        memset(k, 0xff, ncap * sizeof(uint64_t));
        uint64_t *ok = w->seen_key;
        int32_t *ov = w->seen_val;
        size_t ocap = w->seen_cap;
        w->seen_key = k;
        w->seen_val = v;
        w->seen_cap = ncap;
        w->seen_len = 0;
        for (size_t i = 0; i < ocap; i++) {
            if (ok[i] != MF_H5_UNDEF && h5_seen_add(w, ok[i], ov[i])) return 1;
        }
    }
    size_t mask = w->seen_cap - 1;
    size_t i = (size_t)((addr * 0x9E3779B97F4A7C15ull) >> 17) & mask;
    while (w->seen_key[i] != MF_H5_UNDEF) i = (i + 1) & mask;
    w->seen_key[i] = addr;
    w->seen_val[i] = idx;
    w->seen_len++;
    return 0;
}

static mf_h5_object *h5_obj(h5_walk *w, int32_t i) { return &((mf_h5_object *)w->objects.items)[i]; }

/* ========================================================================================== */
/* The other files a dataset reads                                                             */
/* ========================================================================================== */

/* External Data Files message (0x0007): version 1, 3 reserved bytes, allocated and used slot
 * counts, the local heap that holds the names, then per used slot the name's heap offset, the
 * offset in that file and the size there. */
static int h5_parse_external(mf_h5ctx *h, const h5_msg *m, mf_h5_dataset *d) {
    mf_cursor c;
    const char *what = "external data files message";
    if (h5_at(h, m->off, m->size, what, &c)) return 1;
    uint8_t version;
    uint16_t alloc, used;
    uint64_t heap;
    if (mf_u8(&c, &version, what) || mf_skip(&c, 3, what) || mf_u16le(&c, &alloc, what) ||
        mf_u16le(&c, &used, what) || h5_addr(h, &c, &heap, "external data files heap"))
        return 1;
    if (version != 1)
        return mf_fail(h->err, MF_ERR_UNSUPPORTED, h5_rep(h, m->off), "%s version %u", what, version);
    if (used > alloc || (uint64_t)used * 3 * h->sl > mf_remaining(&c))
        return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, m->off), "%s lists %u of %u slots in %u bytes", what, used,
                       alloc, m->size);
    if (used == 0) return 0;
    h5_lheap lh;
    if (heap == MF_H5_UNDEF) return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, m->off), "%s without a name heap", what);
    if (h5_local_heap(h, heap, &lh)) return 1;
    mf_h5_extfile *f = (mf_h5_extfile *)mf_arena_calloc(h->arena, used, sizeof *f, h->err, h5_rep(h, m->off));
    if (f == NULL) return 1;
    for (uint16_t i = 0; i < used; i++) {
        uint64_t name_off, at = mf_tell(&c);
        if (h5_length(h, &c, &name_off, what) || h5_length(h, &c, &f[i].offset, what) ||
            h5_length(h, &c, &f[i].size, what) || h5_work(h, 1, at))
            return 1;
        if (h->sl < 8 && f[i].size == (((uint64_t)1 << (8 * h->sl)) - 1)) f[i].size = UINT64_MAX;
        if (h5_heap_str(h, &lh, name_off, m->off, &f[i].name, &f[i].name_len)) return 1;
        f[i].at = h5_rep(h, (uint64_t)(f[i].name - h->data));
    }
    d->files = f;
    d->n_files = used;
    return 0;
}

/* a NUL-terminated string at the cursor (bounded by the object that holds it) */
static int h5_cstr(mf_h5ctx *h, mf_cursor *c, const uint8_t **s, uint32_t *n, const char *what) {
    const uint8_t *z = (const uint8_t *)memchr(c->pos, 0, mf_remaining(c));
    if (z == NULL) return mf_fail(h->err, MF_ERR_CORRUPT, mf_tell(c), "%s is not NUL-terminated", what);
    *s = c->pos;
    *n = (uint32_t)(z - c->pos);
    return mf_skip(c, (size_t)(z - c->pos) + 1, what);
}

/* a serialized dataspace selection (H5S_SELECT_SERIALIZE: none / points / hyperslabs / all,
 * versions 1-3): stepped over, every count checked against the bytes left */
static int h5_skip_selection(mf_h5ctx *h, mf_cursor *c) {
    const char *what = "virtual dataset selection";
    uint32_t type, version, rank;
    uint64_t at = mf_tell(c), n = 0, bytes;
    if (mf_u32le(c, &type, what) || mf_u32le(c, &version, what)) return 1;
    if (type == 0 || type == 3) return mf_skip(c, 8, what); /* none / all: reserved, length */
    unsigned enc = 4;
    if (type == 1) { /* points */
        if (version == 1) {
            uint32_t np;
            if (mf_skip(c, 8, what) || mf_u32le(c, &rank, what) || mf_u32le(c, &np, what)) return 1;
            n = np;
        } else if (version == 2) {
            uint8_t e;
            if (mf_u8(c, &e, what) || mf_u32le(c, &rank, what)) return 1;
            if (e != 2 && e != 4 && e != 8) return mf_fail(h->err, MF_ERR_CORRUPT, at, "%s encoding size %u", what, e);
            enc = e;
            if (h5_uvar(c, enc, &n, what)) return 1;
        } else {
            return mf_fail(h->err, MF_ERR_UNSUPPORTED, at, "%s: point selection version %u", what, version);
        }
        if (mf_mul_u64(n, rank, &bytes) || mf_mul_u64(bytes, enc, &bytes) || bytes > mf_remaining(c))
            return mf_fail(h->err, MF_ERR_CORRUPT, at, "%s: %llu points overrun the block", what, (unsigned long long)n);
        return mf_skip(c, (size_t)bytes, what);
    }
    if (type != 2) return mf_fail(h->err, MF_ERR_CORRUPT, at, "%s type %u", what, type);
    uint8_t flags = 0;
    if (version == 1) {
        uint32_t nb;
        if (mf_skip(c, 8, what) || mf_u32le(c, &rank, what) || mf_u32le(c, &nb, what)) return 1;
        n = (uint64_t)nb * 2;
    } else if (version == 2) {
        if (mf_u8(c, &flags, what) || mf_skip(c, 4, what) || mf_u32le(c, &rank, what)) return 1;
        if (!(flags & 1)) return mf_fail(h->err, MF_ERR_CORRUPT, at, "%s: version 2 hyperslab not regular", what);
        enc = 8;
        n = 4;
    } else if (version == 3) {
        uint8_t e;
        if (mf_u8(c, &flags, what) || mf_u8(c, &e, what) || mf_u32le(c, &rank, what)) return 1;
        if (e != 2 && e != 4 && e != 8) return mf_fail(h->err, MF_ERR_CORRUPT, at, "%s encoding size %u", what, e);
        enc = e;
        if (flags & 1) {
            n = 4;
        } else {
            if (h5_uvar(c, enc, &n, what) || mf_mul_u64(n, 2, &n)) return 1;
        }
    } else {
        return mf_fail(h->err, MF_ERR_UNSUPPORTED, at, "%s: hyperslab selection version %u", what, version);
    }
    if (mf_mul_u64(n, rank, &bytes) || mf_mul_u64(bytes, enc, &bytes) || bytes > mf_remaining(c))
        return mf_fail(h->err, MF_ERR_CORRUPT, at, "%s overruns the block", what);
    return mf_skip(c, (size_t)bytes, what);
}

/* The sources of a virtual dataset: the global heap object its layout names holds (encoding
 * version 0) the entry count, then per entry the source file name, the source dataset name and
 * two selections. Another encoding version is recorded, not read; a block that cannot be read
 * leaves files_status -1 (the dataset is listed; libhdf5 fails on it when it is opened). */
static int h5_parse_vds(mf_h5ctx *h, mf_h5_dataset *d) {
    mf_error saved = *h->err;
    const char *what = "virtual dataset block";
    mf_cursor c;
    if (d->vds_heap == MF_H5_UNDEF) return 0;
    /* the collection's header, then its objects until the one with our index */
    uint8_t version;
    uint64_t size, osize = 0, obj = MF_H5_UNDEF;
    if (h5_at(h, d->vds_heap, 8 + (uint64_t)h->sl, what, &c) || h5_sig(h, &c, "GCOL", what) ||
        mf_u8(&c, &version, what) || mf_skip(&c, 3, what) || h5_length(h, &c, &size, what) ||
        size < 8 + (uint64_t)h->sl || h5_at(h, d->vds_heap, size, what, &c) || mf_skip(&c, 8 + h->sl, what))
        goto soft;
    while (mf_remaining(&c) >= 8 + (uint64_t)h->sl) {
        uint16_t index;
        uint64_t len;
        if (mf_u16le(&c, &index, what) || mf_skip(&c, 6, what) || h5_length(h, &c, &len, what)) goto soft;
        if (index == 0 || len > mf_remaining(&c)) break;
        if (h5_work(h, 1, mf_tell(&c))) return 1;
        if (index == d->vds_index) {
            obj = (uint64_t)(c.pos - h->data);
            osize = len;
            break;
        }
        uint64_t padded = (len + 7) & ~(uint64_t)7;
        if (padded > mf_remaining(&c)) break;
        mf_skip(&c, (size_t)padded, what);
    }
    if (obj == MF_H5_UNDEF) goto soft;
    uint8_t enc;
    uint64_t count;
    if (h5_at(h, obj, osize, what, &c) || mf_u8(&c, &enc, what)) goto soft;
    if (enc != 0) {
        d->files_status = enc;
        return 0;
    }
    if (h5_length(h, &c, &count, what) || count > mf_remaining(&c) / 2) goto soft;
    if (count == 0) return 0;
    mf_h5_extfile *f = (mf_h5_extfile *)mf_arena_calloc(h->arena, (size_t)count, sizeof *f, h->err,
                                                        h5_rep(h, obj));
    if (f == NULL) return 1;
    for (uint64_t i = 0; i < count; i++) {
        if (h5_work(h, 1, mf_tell(&c))) return 1;
        f[i].at = mf_tell(&c);
        if (h5_cstr(h, &c, &f[i].name, &f[i].name_len, "virtual dataset source file name") ||
            h5_cstr(h, &c, &f[i].dset, &f[i].dset_len, "virtual dataset source dataset name") ||
            h5_skip_selection(h, &c) || h5_skip_selection(h, &c))
            goto soft;
    }
    d->files = f;
    d->n_files = (uint32_t)count;
    return 0;
soft:
    if (h->err->code == MF_ERR_LIMIT) return 1; /* the work budget: never swallowed */
    *h->err = saved;
    d->files_status = -1;
    d->files = NULL;
    d->n_files = 0;
    return 0;
}

/* Parse the object header of objects[idx]: dataset, group (its links pushed), datatype. */
static int h5_visit(h5_walk *w, int32_t idx, unsigned depth) {
    mf_h5ctx *h = &w->h;
    uint64_t addr = h5_obj(w, idx)->addr;
    uint8_t version, flags;
    if (h5_read_header(w, addr, &version, &flags)) return 1;
    h5_obj(w, idx)->oh_version = version;
    /* (resolving a shared datatype reads another header: h5_object_dtype swaps w->msgs out and
     * back, so this array stays valid during the visit) */
    size_t n = w->msgs.len;
    const h5_msg *msgs = (const h5_msg *)w->msgs.items;
    const h5_msg *space = NULL, *dtype = NULL, *layout = NULL, *fill = NULL, *fill_old = NULL, *filters = NULL;
    const h5_msg *stab = NULL, *linfo = NULL, *ainfo = NULL;
    int has_links = 0, has_ginfo = 0, external = 0;
    const h5_msg *ext = NULL;
    for (size_t i = 0; i < n; i++) {
        const h5_msg *m = &msgs[i];
        switch (m->type) {
        case H5M_DATASPACE: space = m; break;
        case H5M_DATATYPE: dtype = m; break;
        case H5M_LAYOUT: layout = m; break;
        case H5M_FILL: fill = m; break;
        case H5M_FILL_OLD: fill_old = m; break;
        case H5M_FILTERS: filters = m; break;
        case H5M_SYMBOL_TABLE: stab = m; break;
        case H5M_LINK_INFO: linfo = m; break;
        case H5M_ATTR_INFO: ainfo = m; break;
        case H5M_LINK: has_links = 1; break;
        case H5M_GROUP_INFO: has_ginfo = 1; break;
        case H5M_EXTERNAL: external = 1; ext = m; break;
        default:
            if (m->type >= H5M_MAX_KNOWN && (m->flags & 0x80)) {
                return mf_fail(h->err, MF_ERR_UNSUPPORTED, h5_rep(h, m->off),
                               "object header message of unknown type %u marked must-understand", m->type);
            }
        }
    }
    /* ---- attributes ---- */
    uint32_t first_attr = (uint32_t)w->attrs.len;
    for (size_t i = 0; i < n; i++) {
        if (msgs[i].type != H5M_ATTRIBUTE) continue;
        if (msgs[i].flags & 2) {
            return mf_fail(h->err, MF_ERR_UNSUPPORTED, h5_rep(h, msgs[i].off), "shared attribute messages are not supported");
        }
        if (h5_parse_attr(w, msgs[i].off, msgs[i].size, msgs[i].crt, (uint32_t)idx)) return 1;
    }
    if (ainfo) {
        mf_cursor c;
        const char *what = "attribute info message";
        if (h5_at(h, ainfo->off, ainfo->size, what, &c)) return 1;
        uint8_t v, f;
        uint16_t maxc;
        uint64_t heap, name_bt, crt_bt = MF_H5_UNDEF;
        if (mf_u8(&c, &v, what) || mf_u8(&c, &f, what)) return 1;
        if (v != 0) return mf_fail(h->err, MF_ERR_UNSUPPORTED, h5_rep(h, ainfo->off), "attribute info version %u", v);
        if ((f & 1) && mf_u16le(&c, &maxc, what)) return 1;
        if (h5_addr(h, &c, &heap, "attribute heap") || h5_addr(h, &c, &name_bt, "attribute name index")) return 1;
        if ((f & 2) && h5_addr(h, &c, &crt_bt, "attribute order index")) return 1;
        if (heap != MF_H5_UNDEF && name_bt != MF_H5_UNDEF) {
            h5_fheap fh;
            if (h5_fheap_open(h, heap, &fh)) return 1;
            h5_dense_ctx dc = {w, &fh, (uint32_t)idx, 0, (flags & 0x04) != 0};
            if (h5_bt2_iterate(h, name_bt, 8, h5_dense_cb, &dc)) return 1;
            h5_obj(w, idx)->dense = 1;
        }
    }
    h5_obj(w, idx)->attr_first = first_attr;
    h5_obj(w, idx)->n_attrs = (uint32_t)(w->attrs.len - first_attr);

    /* ---- dataset ---- */
    if (space && dtype && layout) {
        mf_h5_dataset d;
        memset(&d, 0, sizeof d);
        d.fill_offset = MF_H5_UNDEF;
        /* no fill message: libhdf5 (H5D__open_oid) takes its default, whose size 0 it maps to
         * -1, undefined; written "if set" */
        d.fill_status = MF_H5_FILL_UNDEFINED;
        d.fill_time = MF_H5_FILL_TIME_IFSET;
        d.external = (uint8_t)external;
        mf_cursor c;
        if (h5_at(h, space->off, space->size, "dataspace message", &c)) return 1;
        if (h5_parse_space(h, &c, &d.space)) return 1;
        if (h5_dtype_msg(w, dtype->off, dtype->size, (dtype->flags & 2) != 0, &d.dtype, 0)) return 1;
        if (h5_numel(h, &d.space, space->off, &d.numel)) return 1;
        if (mf_mul_u64(d.numel, d.dtype->size, &d.nbytes)) {
            return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, space->off), "dataset size overflows");
        }
        if (fill) {
            if (h5_parse_fill(h, fill, &d)) return 1;
        } else if (fill_old) {
            if (h5_parse_fill(h, fill_old, &d)) return 1;
        }
        if (filters && h5_parse_filters(h, filters, &d)) return 1;
        d.vds_heap = MF_H5_UNDEF;
        if (h5_parse_layout(h, layout, &d)) return 1;
        if (h5_check_storage(h, &d, layout->off)) return 1;
        if (ext && h5_parse_external(h, ext, &d)) return 1;
        if (d.layout == 3 && h5_parse_vds(h, &d)) return 1;
        mf_h5_dataset *slot = (mf_h5_dataset *)mf_vec_push(&w->datasets, sizeof d, h->arena, h->err, h5_rep(h, addr));
        if (slot == NULL) return 1;
        *slot = d;
        h5_obj(w, idx)->kind = MF_H5_DATASET;
        h5_obj(w, idx)->dataset = (int32_t)(w->datasets.len - 1);
        return 0;
    }
    /* ---- group ---- */
    if (stab || linfo || has_links || has_ginfo || idx == 0) {
        h5_obj(w, idx)->kind = MF_H5_GROUP;
        if (depth >= H5_MAX_PATH_DEPTH) {
            return mf_fail(h->err, MF_ERR_LIMIT, h5_rep(h, addr), "groups nested deeper than %d levels", H5_MAX_PATH_DEPTH);
        }
        size_t first = w->pending.len;
        if (stab) {
            mf_cursor c;
            uint64_t bt, heap;
            if (h5_at(h, stab->off, stab->size, "symbol table message", &c)) return 1;
            if (h5_addr(h, &c, &bt, "group B-tree") || h5_addr(h, &c, &heap, "group local heap")) return 1;
            h5_lheap lh;
            if (h5_local_heap(h, heap, &lh)) return 1;
            if (bt != MF_H5_UNDEF && h5_group_btree(w, bt, &lh, -1)) return 1;
        }
        if (linfo) {
            mf_cursor c;
            const char *what = "link info message";
            if (h5_at(h, linfo->off, linfo->size, what, &c)) return 1;
            uint8_t v, f;
            uint64_t maxc, heap, name_bt, crt_bt = MF_H5_UNDEF;
            if (mf_u8(&c, &v, what) || mf_u8(&c, &f, what)) return 1;
            if (v != 0) return mf_fail(h->err, MF_ERR_UNSUPPORTED, h5_rep(h, linfo->off), "link info version %u", v);
            if ((f & 1) && mf_u64le(&c, &maxc, what)) return 1;
            if (h5_addr(h, &c, &heap, "link heap") || h5_addr(h, &c, &name_bt, "link name index")) return 1;
            if ((f & 2) && h5_addr(h, &c, &crt_bt, "link order index")) return 1;
            h5_obj(w, idx)->tracks_order = f & 1;
            if (heap != MF_H5_UNDEF && name_bt != MF_H5_UNDEF) {
                h5_fheap fh;
                if (h5_fheap_open(h, heap, &fh)) return 1;
                h5_dense_ctx dc = {w, &fh, (uint32_t)idx, 1, 0};
                if (h5_bt2_iterate(h, name_bt, 5, h5_dense_cb, &dc)) return 1;
                h5_obj(w, idx)->dense = 1;
            }
        }
        for (size_t i = 0; i < n; i++) {
            if (msgs[i].type != H5M_LINK) continue;
            h5_link l;
            if (h5_parse_link(h, msgs[i].off, msgs[i].size, &l) || h5_push_link(w, &l)) return 1;
        }
        size_t nl = w->pending.len - first;
        if (nl == 0) return 0; /* an empty group (the stack may not exist yet) */
        h5_pending *links = (h5_pending *)w->pending.items + first;
        for (size_t i = 0; i < nl; i++) links[i].parent = idx;
        if (nl > 1) qsort(links, nl, sizeof(h5_pending), h5_pending_cmp);
        /* every link becomes an object, most of them datasets: reserve once */
        if (h5_vec_reserve(&w->objects, sizeof(mf_h5_object), nl, h->arena, h->err, h5_rep(h, addr)) ||
            h5_vec_reserve(&w->datasets, sizeof(mf_h5_dataset), nl, h->arena, h->err, h5_rep(h, addr)))
            return 1;
        return 0;
    }
    /* ---- committed datatype ---- */
    if (dtype) {
        h5_obj(w, idx)->kind = MF_H5_DATATYPE;
        return h5_dtype_msg(w, dtype->off, dtype->size, (dtype->flags & 2) != 0, &h5_obj(w, idx)->dtype, 0);
    }
    h5_obj(w, idx)->kind = MF_H5_OTHER;
    return 0;
}

static int32_t h5_new_object(h5_walk *w, int32_t parent, const h5_link *l) {
    mf_h5ctx *h = &w->h;
    mf_h5_object *o = (mf_h5_object *)mf_vec_push(&w->objects, sizeof(mf_h5_object), h->arena, h->err,
                                                  h5_rep(h, l ? l->off : 0));
    if (o == NULL) return -1;
    memset(o, 0, sizeof *o);
    o->parent = parent;
    o->dataset = -1;
    o->alias_of = -1;
    o->crt_order = -1;
    o->addr = MF_H5_UNDEF;
    int32_t idx = (int32_t)(w->objects.len - 1);
    if (l == NULL) {
        o->path = "";
        return idx;
    }
    const mf_h5_object *p = h5_obj(w, parent);
    size_t plen = p->path_len;
    size_t total = plen + (plen ? 1 : 0) + l->name_len;
    char *s = (char *)mf_arena_alloc(h->arena, total + 1, h->err, h5_rep(h, l->off));
    if (s == NULL) return -1;
    o = h5_obj(w, idx); /* (the vector does not move here, but keep it obviously right) */
    if (plen) {
        memcpy(s, p->path, plen);
        s[plen] = '/';
    }
    memcpy(s + plen + (plen ? 1 : 0), l->name, l->name_len);
    s[total] = '\0';
    o->path = s;
    o->path_len = (uint32_t)total;
    o->name_off = (uint32_t)(total - l->name_len);
    o->charset = l->charset;
    o->crt_order = l->crt;
    return idx;
}

/* The links a visit pushed before it stopped for bytes not fetched yet get their parent (a
 * sparse window's pass goes on with them, to name what they need too). */
static void h5_adopt(h5_walk *w, size_t from, int32_t parent) {
    h5_pending *p = (h5_pending *)w->pending.items;
    for (size_t i = from; i < w->pending.len; i++)
        if (p[i].parent < 0) p[i].parent = parent;
}

static unsigned h5_depth(h5_walk *w, int32_t idx) {
    unsigned d = 0;
    while (idx > 0 && d <= H5_MAX_PATH_DEPTH) {
        idx = h5_obj(w, idx)->parent;
        d++;
    }
    return d;
}

int mf_h5_open(const uint8_t *buf, size_t len, uint64_t report_base, unsigned flags, mf_arena *a,
               mf_h5_result *out, mf_error *err) {
    h5_walk w;
    memset(&w, 0, sizeof w);
    memset(out, 0, sizeof *out);
    w.h.data = buf;
    w.h.len = len;
    w.h.report_base = report_base;
    w.h.flags = flags;
    w.h.arena = a;
    w.h.err = err;
    w.h.budget = (uint64_t)len * 2 + (1u << 20);
    int64_t sb = mf_h5_find_superblock(buf, len);
    if (err->win != NULL) {
        /* a sparse window: the signature is looked for only in fetched bytes; every candidate
         * place up to the first signature found must be there */
        int absent = 0;
        for (uint64_t off = 0; off + 8 <= len && (sb < 0 || off < (uint64_t)sb); off = off ? off * 2 : 512)
            absent |= mf_win_check(err->win, buf + off, 8, err, "HDF5 superblock signature");
        if (absent) return err->code;
    }
    if (sb < 0) return mf_fail(err, MF_ERR_CORRUPT, report_base, "no HDF5 signature at byte 0, 512, 1024, ...");
    uint64_t root;
    if (h5_read_superblock(&w, (uint64_t)sb, out, &root)) return err->code;
    int32_t r = h5_new_object(&w, -1, NULL);
    if (r < 0) return err->code;
    h5_obj(&w, r)->addr = root;
    if (h5_seen_add(&w, root, r)) return err->code;
    int needs = 0;
    if (h5_visit(&w, r, 0)) {
        if (err->code != MF_ERR_NEED) return err->code;
        h5_adopt(&w, 0, r);
        err->code = MF_OK;
        needs = 1;
    }
    while (w.pending.len) {
        h5_pending p = ((h5_pending *)w.pending.items)[--w.pending.len];
        if (h5_work(&w.h, 1, p.link.off)) return err->code;
        int32_t idx = h5_new_object(&w, p.parent, &p.link);
        if (idx < 0) return err->code;
        mf_h5_object *o = h5_obj(&w, idx);
        if (p.link.type == 0) {
            o->addr = p.link.addr;
            int seen = h5_seen_find(&w, p.link.addr);
            if (seen >= 0) {
                o->kind = MF_H5_ALIAS;
                o->alias_of = seen;
                continue;
            }
            if (h5_seen_add(&w, p.link.addr, idx)) return err->code;
            size_t before = w.pending.len;
            if (h5_visit(&w, idx, h5_depth(&w, idx))) {
                if (err->code != MF_ERR_NEED) return err->code;
                /* a sparse window: this object is not fetched yet; visit the others, so that one
                 * pass names what a whole level of the tree needs (its needs are recorded) */
                h5_adopt(&w, before, idx);
                err->code = MF_OK;
                needs = 1;
            }
        } else {
            o->kind = p.link.type == 1 ? MF_H5_SOFT : (p.link.type == 64 ? MF_H5_EXTERNAL : MF_H5_OTHER);
            o->target = p.link.target;
            o->target_len = p.link.target_len;
        }
    }
    if (needs) return mf_fail(err, MF_ERR_NEED, report_base, "HDF5 objects not fetched yet");
    out->data = buf;
    out->len = len;
    out->report_base = report_base;
    out->base = w.h.base;
    out->so = w.h.so;
    out->sl = w.h.sl;
    out->objects = (mf_h5_object *)w.objects.items;
    out->n_objects = w.objects.len;
    out->datasets = (mf_h5_dataset *)w.datasets.items;
    out->n_datasets = w.datasets.len;
    out->attrs = (mf_h5_attr *)w.attrs.items;
    out->n_attrs = w.attrs.len;
    return MF_OK;
}
