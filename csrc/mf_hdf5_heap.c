/*
 * mf_hdf5_heap.c - HDF5 infrastructure shared by groups, attributes and chunk indexes:
 * checked cursors over absolute offsets, the lookup3 checksum, v2 B-tree iteration and
 * fractal heap object lookup (managed, tiny and huge objects).
 */
#include "mf_hdf5_internal.h"

#include <stdlib.h>
#include <string.h>

/* ========================================================================================== */
/* Cursors, integers, addresses                                                               */
/* ========================================================================================== */

int h5_work(mf_h5ctx *h, uint64_t units, uint64_t offset) {
    if (units > h->budget) {
        h->budget = 0;
        return mf_fail(h->err, MF_ERR_LIMIT, h5_rep(h, offset),
                       "HDF5 structures need more work than the file's size justifies (cyclic or "
                       "repeated references)");
    }
    h->budget -= units;
    return 0;
}

int h5_at(mf_h5ctx *h, uint64_t abs, uint64_t n, const char *what, mf_cursor *c) {
    if (abs == MF_H5_UNDEF || abs > h->len) {
        return mf_fail(h->err, MF_ERR_TRUNCATED, h5_rep(h, abs == MF_H5_UNDEF ? h->len : abs),
                       "%s lies outside the file (address %llu, file has %llu bytes)", what,
                       (unsigned long long)(abs == MF_H5_UNDEF ? 0 : abs), (unsigned long long)h->len);
    }
    if (n > h->len - abs) {
        return mf_fail(h->err, MF_ERR_TRUNCATED, h5_rep(h, abs),
                       "%s truncated: needs %llu bytes, %llu left", what, (unsigned long long)n,
                       (unsigned long long)(h->len - abs));
    }
    /* a sparse window: the whole structure is asked for at once (one need per object header,
     * heap or B-tree node, which a pass gathers for a whole level of the tree) */
    mf_cursor_init(c, h->data + abs, (size_t)n, h5_rep(h, abs), h->err);
    if (c->win != NULL && mf_win_check(c->win, c->start, (size_t)n, h->err, what)) return 1;
    return 0;
}

int h5_uvar(mf_cursor *c, unsigned n, uint64_t *out, const char *what) {
    const uint8_t *p;
    if (n == 0 || n > 8) {
        return mf_fail(c->err, MF_ERR_CORRUPT, mf_tell(c), "%s has an invalid width of %u bytes", what, n);
    }
    if (mf_take(c, n, &p, what)) return 1;
    switch (n) {
    case 8: *out = mf_load_u64le(p); return 0;
    case 4: *out = mf_load_u32le(p); return 0;
    case 2: *out = mf_load_u16le(p); return 0;
    case 1: *out = p[0]; return 0;
    }
    uint64_t v = 0;
    for (unsigned i = n; i > 0; i--) v = (v << 8) | p[i - 1];
    *out = v;
    return 0;
}

int h5_addr(mf_h5ctx *h, mf_cursor *c, uint64_t *out, const char *what) {
    uint64_t at = mf_tell(c);
    uint64_t v;
    if (h5_uvar(c, h->so, &v, what)) return 1;
    uint64_t undef = h->so == 8 ? UINT64_MAX : (((uint64_t)1 << (8 * h->so)) - 1);
    if (v == undef) {
        *out = MF_H5_UNDEF;
        return 0;
    }
    uint64_t abs;
    if (mf_add_u64(v, h->base, &abs) || abs == MF_H5_UNDEF) {
        return mf_fail(h->err, MF_ERR_CORRUPT, at, "%s address %llu overflows", what, (unsigned long long)v);
    }
    *out = abs;
    return 0;
}

int h5_sig(mf_h5ctx *h, mf_cursor *c, const char *sig, const char *what) {
    uint64_t at = mf_tell(c);
    const uint8_t *p;
    if (mf_take(c, 4, &p, what)) return 1;
    if (memcmp(p, sig, 4) != 0) {
        char got[5];
        for (int i = 0; i < 4; i++) got[i] = (p[i] >= 32 && p[i] < 127) ? (char)p[i] : '?';
        got[4] = '\0';
        return mf_fail(h->err, MF_ERR_CORRUPT, at, "%s: expected signature %s, found \"%s\"", what, sig, got);
    }
    return 0;
}

int h5_btree1_node(mf_h5ctx *h, uint64_t abs, uint8_t node_type, int want_level, const char *what, uint8_t *level,
                   uint16_t *n) {
    mf_cursor c;
    uint8_t type = 0;
    *level = 0;
    *n = 0;
    if (h5_at(h, abs, 8 + 2 * (uint64_t)h->so, what, &c)) return 1;
    if (h5_sig(h, &c, "TREE", what)) return 1;
    mf_u8(&c, &type, what);
    mf_u8(&c, level, what);
    mf_u16le(&c, n, what);
    if (type != node_type) return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, abs), "%s of type %u", what, type);
    if (want_level >= 0 && *level != want_level)
        return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, abs), "%s at level %u, expected %d", what, *level, want_level);
    return 0;
}

int h5_checksum(mf_h5ctx *h, uint64_t start, uint64_t n, const char *what) {
    uint64_t end;
    if (mf_add_u64(start, n, &end) || end > h->len || h->len - end < 4) {
        return mf_fail(h->err, MF_ERR_TRUNCATED, h5_rep(h, start), "%s checksum lies outside the file", what);
    }
    if (h->flags & MF_H5_NO_VERIFY) return 0;
    if (h->err->win != NULL && mf_win_check(h->err->win, h->data + start, (size_t)n + 4, h->err, what)) return 1;
    uint32_t stored = mf_load_u32le(h->data + end);
    uint32_t computed = mf_h5_lookup3(h->data + start, (size_t)n, 0);
    if (stored != computed) {
        return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, end),
                       "%s checksum mismatch (stored %08x, computed %08x)", what, stored, computed);
    }
    return 0;
}

unsigned h5_log2(uint64_t v) {
    unsigned r = 0;
    while (v >>= 1) r++;
    return r;
}

unsigned h5_bytes_for(uint64_t v) { return v == 0 ? 1 : h5_log2(v) / 8 + 1; }

/* ========================================================================================== */
/* Jenkins lookup3 (hashlittle), byte-at-a-time form                                          */
/* ========================================================================================== */

#define H5_ROT(x, k) (((x) << (k)) | ((x) >> (32 - (k))))

uint32_t mf_h5_lookup3(const uint8_t *k, size_t length, uint32_t initval) {
    uint32_t a, b, c;
    a = b = c = 0xdeadbeefu + (uint32_t)length + initval;
    while (length > 12) {
        a += mf_load_u32le(k);
        b += mf_load_u32le(k + 4);
        c += mf_load_u32le(k + 8);
        a -= c; a ^= H5_ROT(c, 4);  c += b;
        b -= a; b ^= H5_ROT(a, 6);  a += c;
        c -= b; c ^= H5_ROT(b, 8);  b += a;
        a -= c; a ^= H5_ROT(c, 16); c += b;
        b -= a; b ^= H5_ROT(a, 19); a += c;
        c -= b; c ^= H5_ROT(b, 4);  b += a;
        length -= 12;
        k += 12;
    }
    switch (length) {
    case 12: c += ((uint32_t)k[11]) << 24; /* fall through */
    case 11: c += ((uint32_t)k[10]) << 16; /* fall through */
    case 10: c += ((uint32_t)k[9]) << 8;   /* fall through */
    case 9: c += k[8];                     /* fall through */
    case 8: b += ((uint32_t)k[7]) << 24;   /* fall through */
    case 7: b += ((uint32_t)k[6]) << 16;   /* fall through */
    case 6: b += ((uint32_t)k[5]) << 8;    /* fall through */
    case 5: b += k[4];                     /* fall through */
    case 4: a += ((uint32_t)k[3]) << 24;   /* fall through */
    case 3: a += ((uint32_t)k[2]) << 16;   /* fall through */
    case 2: a += ((uint32_t)k[1]) << 8;    /* fall through */
    case 1: a += k[0]; break;
    case 0: return c;
    }
    c ^= b; c -= H5_ROT(b, 14);
    a ^= c; a -= H5_ROT(c, 11);
    b ^= a; b -= H5_ROT(a, 25);
    c ^= b; c -= H5_ROT(b, 16);
    a ^= c; a -= H5_ROT(c, 4);
    b ^= a; b -= H5_ROT(a, 14);
    c ^= b; c -= H5_ROT(b, 24);
    return c;
}

/* ========================================================================================== */
/* Version 2 B-trees                                                                          */
/* ========================================================================================== */

#define H5_BT2_MAX_DEPTH 32

typedef struct h5_bt2 {
    uint64_t addr;
    uint8_t type;
    uint32_t node_size;
    uint16_t rec_size;
    uint16_t depth;
    uint64_t max_nrec[H5_BT2_MAX_DEPTH + 1];   /* records that fit in a node at each depth */
    unsigned cum_size[H5_BT2_MAX_DEPTH + 1];   /* width of "total records below" at each depth */
    unsigned nrec_size;                        /* width of "records in child" */
    h5_bt2_cb cb;
    void *ud;
} h5_bt2;

/* node at abs holds nrec records at the given depth (0 = leaf) */
static int h5_bt2_node(mf_h5ctx *h, h5_bt2 *t, uint64_t abs, uint64_t nrec, unsigned depth) {
    mf_cursor c;
    const char *what = depth ? "v2 B-tree internal node" : "v2 B-tree leaf node";
    if (h5_work(h, 1 + nrec, abs)) return 1;
    if (nrec > t->max_nrec[depth]) {
        return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, abs), "%s claims %llu records, at most %llu fit",
                       what, (unsigned long long)nrec, (unsigned long long)t->max_nrec[depth]);
    }
    uint64_t ptr_size = depth ? (uint64_t)h->so + t->nrec_size + (depth > 1 ? t->cum_size[depth - 1] : 0) : 0;
    uint64_t body = 6 + nrec * t->rec_size + (depth ? (nrec + 1) * ptr_size : 0); /* nrec bounded above */
    if (h5_at(h, abs, body + 4, what, &c)) return 1;
    if (h5_sig(h, &c, depth ? "BTIN" : "BTLF", what)) return 1;
    uint8_t version, type;
    if (mf_u8(&c, &version, what) || mf_u8(&c, &type, what)) return 1;
    if (version != 0 || type != t->type) {
        return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, abs), "%s has version %u type %u (tree type %u)", what,
                       version, type, t->type);
    }
    if (h5_checksum(h, abs, body, what)) return 1;
    const uint8_t *recs = c.pos;
    uint64_t recs_off = mf_tell(&c);
    if (depth == 0) {
        int missing = 0;
        for (uint64_t i = 0; i < nrec; i++) {
            if (t->cb(h, recs + i * t->rec_size, t->rec_size, recs_off + i * t->rec_size, t->ud)) {
                if (h->err->code != MF_ERR_NEED) return 1;
                h->err->code = MF_OK; /* a sparse window: the other records' objects first */
                missing = 1;
            }
        }
        return missing ? mf_fail(h->err, MF_ERR_NEED, abs, "v2 B-tree records not fetched yet") : 0;
    }
    if (mf_skip(&c, (size_t)(nrec * t->rec_size), what)) return 1;
    int missing = 0;
    for (uint64_t i = 0; i <= nrec; i++) {
        uint64_t child, child_nrec, total;
        if (h5_addr(h, &c, &child, "v2 B-tree child address")) return 1;
        if (h5_uvar(&c, t->nrec_size, &child_nrec, "v2 B-tree child record count")) return 1;
        if (depth > 1 && h5_uvar(&c, t->cum_size[depth - 1], &total, "v2 B-tree child total")) return 1;
        if (child == MF_H5_UNDEF) {
            return mf_fail(h->err, MF_ERR_CORRUPT, mf_tell(&c), "v2 B-tree child address is undefined");
        }
        if (h5_bt2_node(h, t, child, child_nrec, depth - 1)) {
            if (h->err->code != MF_ERR_NEED) return 1;
            /* a sparse window: the other children first (one pass names a whole level) */
            h->err->code = MF_OK;
            missing = 1;
            continue;
        }
        if (i < nrec && t->cb(h, recs + i * t->rec_size, t->rec_size, recs_off + i * t->rec_size, t->ud)) {
            if (h->err->code != MF_ERR_NEED) return 1;
            h->err->code = MF_OK;
            missing = 1;
        }
    }
    if (missing) return mf_fail(h->err, MF_ERR_NEED, abs, "v2 B-tree nodes not fetched yet");
    return 0;
}

int h5_bt2_iterate(mf_h5ctx *h, uint64_t abs, uint8_t want_type, h5_bt2_cb cb, void *ud) {
    mf_cursor c;
    h5_bt2 t;
    const char *what = "v2 B-tree header";
    uint64_t hdr_len = 4 + 1 + 1 + 4 + 2 + 2 + 1 + 1 + h->so + 2 + h->sl;
    if (h5_work(h, 1, abs)) return 1;
    if (h5_at(h, abs, hdr_len + 4, what, &c)) return 1;
    if (h5_sig(h, &c, "BTHD", what)) return 1;
    uint8_t version, split, merge;
    uint16_t root_nrec;
    uint64_t root, total;
    memset(&t, 0, sizeof t);
    if (mf_u8(&c, &version, what) || mf_u8(&c, &t.type, what) || mf_u32le(&c, &t.node_size, what) ||
        mf_u16le(&c, &t.rec_size, what) || mf_u16le(&c, &t.depth, what) || mf_u8(&c, &split, what) ||
        mf_u8(&c, &merge, what) || h5_addr(h, &c, &root, "v2 B-tree root") || mf_u16le(&c, &root_nrec, what) ||
        h5_length(h, &c, &total, what))
        return 1;
    if (h5_checksum(h, abs, hdr_len, what)) return 1;
    if (version != 0) {
        return mf_fail(h->err, MF_ERR_UNSUPPORTED, h5_rep(h, abs), "v2 B-tree header version %u", version);
    }
    if (t.type != want_type) {
        return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, abs), "v2 B-tree has type %u, expected %u", t.type,
                       want_type);
    }
    if (t.rec_size == 0 || t.node_size < 10u + t.rec_size) {
        return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, abs), "v2 B-tree node size %u too small for records of %u",
                       t.node_size, t.rec_size);
    }
    if (t.depth > H5_BT2_MAX_DEPTH) {
        return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, abs), "v2 B-tree depth %u is implausible", t.depth);
    }
    if (root == MF_H5_UNDEF || root_nrec == 0) return 0;
    /* node geometry as libhdf5 computes it (H5B2__hdr_init) */
    t.max_nrec[0] = (t.node_size - 10u) / t.rec_size;
    t.nrec_size = h5_bytes_for(t.max_nrec[0]);
    uint64_t cum = t.max_nrec[0];
    t.cum_size[0] = 0;
    for (unsigned d = 1; d <= t.depth; d++) {
        uint64_t ptr = (uint64_t)h->so + t.nrec_size + t.cum_size[d - 1];
        if (t.node_size < 10u + ptr) {
            return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, abs), "v2 B-tree node size %u too small", t.node_size);
        }
        t.max_nrec[d] = (t.node_size - (10u + ptr)) / (t.rec_size + ptr);
        uint64_t next;
        if (mf_mul_u64(t.max_nrec[d] + 1, cum, &next) || mf_add_u64(next, t.max_nrec[d], &next)) next = UINT64_MAX;
        cum = next;
        t.cum_size[d] = h5_bytes_for(cum);
        if (t.cum_size[d] > 8) t.cum_size[d] = 8;
    }
    t.addr = abs;
    t.cb = cb;
    t.ud = ud;
    return h5_bt2_node(h, &t, root, root_nrec, t.depth);
}

/* ========================================================================================== */
/* Fractal heaps                                                                              */
/* ========================================================================================== */

#define H5_FH_MAX_ROWS 64

static int h5_fh_add_block(mf_h5ctx *h, h5_fheap *fh, mf_vec *v, uint64_t heap_off, uint64_t size, uint64_t addr) {
    h5_fh_block *b = (h5_fh_block *)mf_vec_push(v, sizeof(h5_fh_block), h->arena, h->err, h5_rep(h, addr));
    if (b == NULL) return 1;
    b->heap_off = heap_off;
    b->size = size;
    b->addr = addr;
    b->checked = 0;
    (void)fh;
    return 0;
}

/* row r of a doubling table: block size and offset of the row inside its indirect block */
static int h5_fh_row(const h5_fheap *fh, unsigned r, uint64_t *size, uint64_t *off) {
    unsigned lg = h5_log2(fh->start_block);
    if (r == 0) {
        *size = fh->start_block;
        *off = 0;
        return 0;
    }
    if (lg + (r - 1) >= 63) return 1;
    *size = fh->start_block << (r - 1);
    return mf_mul_u64(*size, fh->width, off);
}

/* indirect block at abs with nrows rows, covering heap offsets from heap_off */
static int h5_fh_indirect(mf_h5ctx *h, h5_fheap *fh, mf_vec *v, uint64_t abs, unsigned nrows, uint64_t heap_off,
                          unsigned depth) {
    mf_cursor c;
    const char *what = "fractal heap indirect block";
    if (depth > H5_FH_MAX_ROWS || nrows > H5_FH_MAX_ROWS) {
        return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, abs), "%s nesting or row count is implausible", what);
    }
    unsigned max_dblock_rows = h5_log2(fh->max_direct) - h5_log2(fh->start_block) + 2;
    unsigned drows = nrows < max_dblock_rows ? nrows : max_dblock_rows;
    unsigned irows = nrows > max_dblock_rows ? nrows - max_dblock_rows : 0;
    uint64_t k = (uint64_t)drows * fh->width, n = (uint64_t)irows * fh->width;
    unsigned off_size = fh->off_size;
    uint64_t body = 4 + 1 + h->so + off_size + (k + n) * h->so;
    if (h5_work(h, 1 + k + n, abs)) return 1;
    if (h5_at(h, abs, body + 4, what, &c)) return 1;
    if (h5_sig(h, &c, "FHIB", what)) return 1;
    uint8_t version;
    uint64_t hdr, boff;
    if (mf_u8(&c, &version, what) || h5_addr(h, &c, &hdr, what) || h5_uvar(&c, off_size, &boff, what)) return 1;
    if (version != 0 || hdr != fh->addr || boff != heap_off) {
        return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, abs),
                       "%s does not belong to its heap (version %u, heap %llu, block offset %llu)", what, version,
                       (unsigned long long)hdr, (unsigned long long)boff);
    }
    if (h5_checksum(h, abs, body, what)) return 1;
    for (uint64_t e = 0; e < k + n; e++) {
        uint64_t child;
        if (h5_addr(h, &c, &child, "fractal heap child block")) return 1;
        unsigned r = (unsigned)(e / fh->width);
        uint64_t col = e % fh->width, rsize, roff, boffset;
        if (h5_fh_row(fh, r, &rsize, &roff) || mf_mul_u64(col, rsize, &boffset) ||
            mf_add_u64(boffset, roff, &boffset) || mf_add_u64(boffset, heap_off, &boffset)) {
            return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, abs), "%s rows overflow the heap", what);
        }
        if (child == MF_H5_UNDEF) continue;
        if (r < max_dblock_rows) {
            if (h5_fh_add_block(h, fh, v, boffset, rsize, child)) return 1;
        } else {
            /* child indirect block: its rows cover rsize bytes */
            unsigned first_row_bits = h5_log2(fh->start_block) + h5_log2(fh->width);
            unsigned lg = h5_log2(rsize);
            if (lg < first_row_bits) {
                return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, abs), "%s row %u is too small", what, r);
            }
            unsigned child_rows = lg - first_row_bits + 1;
            if (child_rows >= nrows) {
                return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, abs), "%s child has as many rows as its parent",
                               what);
            }
            if (h5_fh_indirect(h, fh, v, child, child_rows, boffset, depth + 1)) return 1;
        }
    }
    return 0;
}

static int h5_fh_cmp(const void *a, const void *b) {
    const h5_fh_block *x = (const h5_fh_block *)a, *y = (const h5_fh_block *)b;
    return x->heap_off < y->heap_off ? -1 : x->heap_off > y->heap_off;
}

static int h5_pow2(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

int h5_fheap_open(mf_h5ctx *h, uint64_t abs, h5_fheap *fh) {
    mf_cursor c;
    const char *what = "fractal heap header";
    memset(fh, 0, sizeof *fh);
    uint64_t fixed = 4 + 1 + 2 + 2 + 1 + 4 + h->sl + h->so + h->sl + h->so + 8 * (uint64_t)h->sl + 2 + h->sl +
                     h->sl + 2 + 2 + h->so + 2;
    if (h5_work(h, 1, abs)) return 1;
    if (h5_at(h, abs, fixed, what, &c)) return 1;
    if (h5_sig(h, &c, "FRHP", what)) return 1;
    uint8_t version;
    uint64_t skip, fs_addr, root;
    uint16_t start_rows, cur_rows;
    if (mf_u8(&c, &version, what) || mf_u16le(&c, &fh->id_len, what) || mf_u16le(&c, &fh->filter_len, what) ||
        mf_u8(&c, &fh->flags, what) || mf_u32le(&c, &fh->max_man_size, what) || h5_length(h, &c, &skip, what) ||
        h5_addr(h, &c, &fh->huge_btree, "fractal heap huge-object B-tree") || h5_length(h, &c, &skip, what) ||
        h5_addr(h, &c, &fs_addr, what))
        return 1;
    for (int i = 0; i < 8; i++) {
        if (h5_length(h, &c, &skip, what)) return 1;
    }
    uint16_t width;
    if (mf_u16le(&c, &width, what) || h5_length(h, &c, &fh->start_block, what) ||
        h5_length(h, &c, &fh->max_direct, what) || mf_u16le(&c, &fh->max_heap_bits, what) ||
        mf_u16le(&c, &start_rows, what) || h5_addr(h, &c, &root, "fractal heap root block") ||
        mf_u16le(&c, &cur_rows, what))
        return 1;
    if (version != 0) {
        return mf_fail(h->err, MF_ERR_UNSUPPORTED, h5_rep(h, abs), "fractal heap version %u", version);
    }
    if (fh->filter_len != 0) {
        return mf_fail(h->err, MF_ERR_UNSUPPORTED, h5_rep(h, abs),
                       "fractal heap with I/O filters (compressed group or attribute storage) is not supported");
    }
    if (h5_checksum(h, abs, fixed, what)) return 1;
    if (width == 0 || !h5_pow2(width) || !h5_pow2(fh->start_block) || !h5_pow2(fh->max_direct) ||
        fh->max_direct < fh->start_block || fh->max_heap_bits == 0 || fh->max_heap_bits > 64 ||
        h5_log2(fh->max_direct) > fh->max_heap_bits || fh->id_len < 2 || cur_rows > H5_FH_MAX_ROWS) {
        return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, abs),
                       "%s has an invalid doubling table (width %u, start block %llu, max direct %llu, %u bits)",
                       what, width, (unsigned long long)fh->start_block, (unsigned long long)fh->max_direct,
                       fh->max_heap_bits);
    }
    fh->addr = abs;
    fh->width = width;
    fh->root = root;
    fh->root_rows = cur_rows;
    fh->off_size = (fh->max_heap_bits + 7u) / 8u;
    unsigned dlen = (h5_log2(fh->max_direct) + 7u) / 8u;
    unsigned mlen = h5_bytes_for(fh->max_man_size);
    fh->len_size = dlen < mlen ? dlen : mlen;
    if (fh->len_size == 0) fh->len_size = 1;
    mf_vec v = {0};
    if (root != MF_H5_UNDEF) {
        if (cur_rows == 0) {
            if (h5_fh_add_block(h, fh, &v, 0, fh->start_block, root)) return 1;
        } else if (h5_fh_indirect(h, fh, &v, root, cur_rows, 0, 0)) {
            return 1;
        }
    }
    fh->blocks = (h5_fh_block *)v.items;
    fh->n_blocks = v.len;
    if (fh->n_blocks > 1) qsort(fh->blocks, fh->n_blocks, sizeof(h5_fh_block), h5_fh_cmp);
    return 0;
}

/* A direct block's header: signature, owner, offset; and its checksum (over the whole block with
 * the checksum field zeroed) when the heap checksums its direct blocks. Once per block. */
static int h5_fh_check_block(mf_h5ctx *h, h5_fheap *fh, h5_fh_block *b) {
    mf_cursor bc;
    const char *what = "fractal heap direct block";
    if (h5_at(h, b->addr, b->size, what, &bc)) return 1;
    if (h5_sig(h, &bc, "FHDB", what)) return 1;
    uint8_t version;
    uint64_t owner, boff;
    if (mf_u8(&bc, &version, what) || h5_addr(h, &bc, &owner, what) || h5_uvar(&bc, fh->off_size, &boff, what))
        return 1;
    if (version != 0 || owner != fh->addr || boff != b->heap_off) {
        return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, b->addr), "%s does not belong to its heap", what);
    }
    if ((fh->flags & 2) && !(h->flags & MF_H5_NO_VERIFY)) {
        size_t at = (size_t)(bc.pos - bc.start);
        if (mf_need(&bc, 4, what)) return 1;
        if (h->scratch_cap < b->size) {
            uint8_t *p = (uint8_t *)mf_arena_alloc(h->arena, (size_t)b->size, h->err, h5_rep(h, b->addr));
            if (p == NULL) return 1;
            h->scratch = p;
            h->scratch_cap = (size_t)b->size;
        }
        if (h->err->win != NULL && mf_win_check(h->err->win, h->data + b->addr, (size_t)b->size, h->err, what))
            return 1;
        memcpy(h->scratch, h->data + b->addr, (size_t)b->size);
        uint32_t stored = mf_load_u32le(h->scratch + at);
        memset(h->scratch + at, 0, 4);
        uint32_t computed = mf_h5_lookup3(h->scratch, (size_t)b->size, 0);
        if (stored != computed) {
            return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, b->addr + at),
                           "%s checksum mismatch (stored %08x, computed %08x)", what, stored, computed);
        }
    }
    b->checked = 1;
    return 0;
}

typedef struct h5_huge_find {
    uint64_t id;
    uint64_t addr, len;
    int found;
} h5_huge_find;

static int h5_huge_cb(mf_h5ctx *h, const uint8_t *rec, uint32_t rec_size, uint64_t rec_off, void *ud) {
    h5_huge_find *f = (h5_huge_find *)ud;
    mf_cursor c;
    uint64_t addr, len, id;
    mf_cursor_init(&c, rec, rec_size, h5_rep(h, rec_off), h->err);
    if (h5_addr(h, &c, &addr, "huge object address") || h5_length(h, &c, &len, "huge object length") ||
        h5_length(h, &c, &id, "huge object id"))
        return 1;
    if (id == f->id && !f->found) {
        f->found = 1;
        f->addr = addr;
        f->len = len;
    }
    return 0;
}

int h5_fheap_get(mf_h5ctx *h, h5_fheap *fh, const uint8_t *id, uint64_t id_off, uint64_t *out_off,
                 uint64_t *out_len) {
    mf_cursor c;
    const char *what = "fractal heap ID";
    mf_cursor_init(&c, id, fh->id_len, h5_rep(h, id_off), h->err);
    uint8_t b0;
    if (mf_u8(&c, &b0, what)) return 1;
    if ((b0 >> 6) != 0) {
        return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, id_off), "%s has version %u", what, b0 >> 6);
    }
    unsigned type = (b0 >> 4) & 3;
    if (type == 0) { /* managed */
        uint64_t off, len;
        if (h5_uvar(&c, fh->off_size, &off, what) || h5_uvar(&c, fh->len_size, &len, what)) return 1;
        size_t lo = 0, hi = fh->n_blocks;
        while (lo < hi) { /* last block with heap_off <= off */
            size_t mid = lo + (hi - lo) / 2;
            if (fh->blocks[mid].heap_off <= off) lo = mid + 1;
            else hi = mid;
        }
        if (lo == 0) {
            return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, id_off), "%s offset %llu is in no heap block", what,
                           (unsigned long long)off);
        }
        h5_fh_block *b = &fh->blocks[lo - 1];
        uint64_t hdr = 4 + 1 + h->so + fh->off_size + ((fh->flags & 2) ? 4 : 0);
        uint64_t rel = off - b->heap_off;
        if (rel < hdr || len > b->size || rel > b->size - len) {
            return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, id_off),
                           "%s object (offset %llu, %llu bytes) does not fit its heap block", what,
                           (unsigned long long)off, (unsigned long long)len);
        }
        if (!b->checked && h5_fh_check_block(h, fh, b)) return 1;
        *out_off = b->addr + rel;
        *out_len = len;
        return 0;
    }
    if (type == 2) { /* tiny: the object is inside the ID */
        uint64_t len;
        unsigned hdr;
        if (fh->id_len <= 18) {
            len = (uint64_t)(b0 & 0x0f) + 1;
            hdr = 1;
        } else {
            uint8_t b1;
            if (mf_u8(&c, &b1, what)) return 1;
            len = ((uint64_t)(b0 & 0x0f) << 8 | b1) + 1;
            hdr = 2;
        }
        if (len > (uint64_t)fh->id_len - hdr) {
            return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, id_off), "tiny heap object of %llu bytes exceeds its ID",
                           (unsigned long long)len);
        }
        *out_off = id_off + hdr;
        *out_len = len;
        return 0;
    }
    if (type == 1) { /* huge */
        if ((unsigned)fh->id_len - 1 >= (unsigned)h->so + h->sl) {
            uint64_t addr, len;
            if (h5_addr(h, &c, &addr, "huge object address") || h5_length(h, &c, &len, "huge object length")) return 1;
            mf_cursor oc;
            if (h5_at(h, addr, len, "huge heap object", &oc)) return 1;
            *out_off = addr;
            *out_len = len;
            return 0;
        }
        unsigned n = fh->id_len - 1u < 8u ? fh->id_len - 1u : 8u;
        h5_huge_find f = {0};
        if (h5_uvar(&c, n, &f.id, what)) return 1;
        if (fh->huge_btree == MF_H5_UNDEF) {
            return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, id_off), "huge heap object but the heap has no huge-object index");
        }
        if (h5_bt2_iterate(h, fh->huge_btree, 1, h5_huge_cb, &f)) return 1;
        if (!f.found) {
            return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, id_off), "huge heap object %llu is not in its index",
                           (unsigned long long)f.id);
        }
        mf_cursor oc;
        if (h5_at(h, f.addr, f.len, "huge heap object", &oc)) return 1;
        *out_off = f.addr;
        *out_len = f.len;
        return 0;
    }
    return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, id_off), "%s has reserved type 3", what);
}
