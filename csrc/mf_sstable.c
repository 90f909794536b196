/*
 * mf_sstable.c - SSTable (LevelDB table format) reader, snappy decoder, CRC32C.
 */
#include "mf_sstable.h"
#include "mf_proto.h"

#include <string.h>

/* ========================================================================================== */
/* CRC32C                                                                                     */
/* ========================================================================================== */

static uint32_t crc_tab[8][256];
static int crc_ready;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        crc_tab[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++) crc_tab[t][i] = (crc_tab[t - 1][i] >> 8) ^ crc_tab[0][crc_tab[t - 1][i] & 0xff];
    crc_ready = 1;
}

static uint32_t crc_soft(uint32_t c, const uint8_t *p, size_t n) {
    if (!crc_ready) crc_init();
    while (n >= 8) {
        uint32_t lo = c ^ mf_load_u32le(p), hi = mf_load_u32le(p + 4);
        c = crc_tab[7][lo & 0xff] ^ crc_tab[6][(lo >> 8) & 0xff] ^ crc_tab[5][(lo >> 16) & 0xff] ^ crc_tab[4][lo >> 24] ^
            crc_tab[3][hi & 0xff] ^ crc_tab[2][(hi >> 8) & 0xff] ^ crc_tab[1][(hi >> 16) & 0xff] ^ crc_tab[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) c = crc_tab[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return c;
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t c, const uint8_t *p, size_t n) {
    uint64_t c64 = c;
    while (n >= 8) {
        c64 = __builtin_ia32_crc32di(c64, mf_load_u64le(p));
        p += 8;
        n -= 8;
    }
    c = (uint32_t)c64;
    while (n--) c = __builtin_ia32_crc32qi(c, *p++);
    return c;
}
#endif

uint32_t mf_crc32c(uint32_t crc, const uint8_t *p, size_t n) {
    uint32_t c = ~crc;
#if defined(__x86_64__) && defined(__GNUC__)
    static int hw = -1;
    if (hw < 0) {
        __builtin_cpu_init();
        hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
    }
    if (hw) return ~crc_hw(c, p, n);
#endif
    return ~crc_soft(c, p, n);
}

/* ========================================================================================== */
/* Snappy (raw format)                                                                        */
/* ========================================================================================== */

/* src = varint32 uncompressed length, then elements: literals and back-references. */
int mf_snappy_decode(const uint8_t *src, size_t n, uint64_t base, uint64_t max_out, mf_arena *a,
                     const uint8_t **out, size_t *out_len, mf_error *err) {
    mf_cursor c;
    uint64_t ulen;
    mf_cursor_init(&c, src, n, base, err);
    if (mf_pb_varint(&c, &ulen, "snappy block length")) return err->code;
    if (ulen > 0xffffffffu || ulen > max_out)
        return mf_fail(err, MF_ERR_LIMIT, base, "snappy block claims %llu uncompressed bytes from %zu (at most %llu accepted)",
                       (unsigned long long)ulen, n, (unsigned long long)max_out);
    uint8_t *dst = (uint8_t *)mf_arena_alloc(a, ulen ? (size_t)ulen : 1, err, base);
    if (dst == NULL) return err->code;
    size_t o = 0;
    while (c.pos < c.end) {
        uint64_t at = mf_tell(&c);
        uint8_t tag = *c.pos++;
        size_t len, off = 0;
        switch (tag & 3) {
        case 0: { /* literal */
            len = (size_t)(tag >> 2) + 1;
            if (len > 60) {
                size_t k = len - 60; /* 1..4 length bytes */
                const uint8_t *p;
                if (mf_take(&c, k, &p, "snappy literal length")) return err->code;
                len = 0;
                for (size_t i = 0; i < k; i++) len |= (size_t)p[i] << (8 * i);
                len += 1;
            }
            const uint8_t *p;
            if (len > ulen - o)
                return mf_fail(err, MF_ERR_CORRUPT, at, "snappy literal of %zu bytes overflows the declared length", len);
            if (mf_take(&c, len, &p, "snappy literal")) return err->code;
            memcpy(dst + o, p, len);
            o += len;
            continue;
        }
        case 1: {
            uint8_t b;
            if (mf_u8(&c, &b, "snappy copy")) return err->code;
            len = (size_t)((tag >> 2) & 7) + 4;
            off = ((size_t)(tag >> 5) << 8) | b;
            break;
        }
        case 2: {
            uint16_t v;
            if (mf_u16le(&c, &v, "snappy copy")) return err->code;
            len = (size_t)(tag >> 2) + 1;
            off = v;
            break;
        }
        default: {
            uint32_t v;
            if (mf_u32le(&c, &v, "snappy copy")) return err->code;
            len = (size_t)(tag >> 2) + 1;
            off = v;
            break;
        }
        }
        if (off == 0 || off > o)
            return mf_fail(err, MF_ERR_CORRUPT, at, "snappy copy reaches %zu bytes back with %zu written", off, o);
        if (len > ulen - o)
            return mf_fail(err, MF_ERR_CORRUPT, at, "snappy copy of %zu bytes overflows the declared length", len);
        for (size_t i = 0; i < len; i++) dst[o + i] = dst[o + i - off]; /* may overlap */
        o += len;
    }
    if (o != ulen)
        return mf_fail(err, MF_ERR_CORRUPT, base, "snappy block decodes to %zu bytes, declared %llu", o,
                       (unsigned long long)ulen);
    *out = dst;
    *out_len = (size_t)ulen;
    return MF_OK;
}

/* ========================================================================================== */
/* Blocks                                                                                     */
/* ========================================================================================== */

typedef struct sst {
    const uint8_t *buf;
    size_t len;
    mf_arena *a;
    mf_error *err;
    int verify;
    mf_sst_info *info;
    const uint8_t *last_key; /* for the ordering check */
    uint32_t last_len;
    int have_last;
} sst;

typedef struct handle {
    uint64_t off, size;
} handle;

static int read_handle(mf_cursor *c, handle *h, const char *what) {
    return mf_pb_varint(c, &h->off, what) || mf_pb_varint(c, &h->size, what);
}

static int varint32(mf_cursor *c, uint32_t *out, const char *what) {
    uint64_t v;
    if (mf_pb_varint(c, &v, what)) return 1;
    if (v > 0xffffffffu) {
        mf_fail(c->err, MF_ERR_CORRUPT, mf_tell(c), "%s: value %llu does not fit 32 bits", what, (unsigned long long)v);
        return 1;
    }
    *out = (uint32_t)v;
    return 0;
}

/* The contents of the block at h (decompressed if needed); *base = file offset of the block. */
static int load_block(sst *s, handle h, const char *what, const uint8_t **out, size_t *out_len, int *compressed) {
    uint64_t end;
    if (mf_add_u64(h.off, h.size, &end) || mf_add_u64(end, 5, &end) || end > s->len)
        return mf_fail(s->err, MF_ERR_TRUNCATED, h.off, "SSTable %s [%llu, +%llu) runs past the end of the file (%zu bytes)",
                       what, (unsigned long long)h.off, (unsigned long long)h.size, s->len);
    const uint8_t *p = s->buf + h.off;
    uint8_t type = p[h.size];
    if (s->verify) {
        uint32_t stored = mf_load_u32le(p + h.size + 1);
        uint32_t crc = mf_crc32c(0, p, (size_t)h.size + 1);
        if (mf_crc_mask(crc) != stored)
            return mf_fail(s->err, MF_ERR_CORRUPT, h.off + h.size + 1, "SSTable %s checksum mismatch (stored %08x, computed %08x)",
                           what, (unsigned)stored, (unsigned)mf_crc_mask(crc));
    }
    *compressed = 0;
    if (type == 0) {
        *out = p;
        *out_len = (size_t)h.size;
        return MF_OK;
    }
    if (type == 1) {
        *compressed = 1;
        if (s->info) s->info->n_snappy++;
        /* snappy expands at most ~21x (a 3-byte copy of 64 bytes); allow 32x */
        uint64_t max_out;
        if (mf_mul_u64(h.size, 32, &max_out)) max_out = UINT64_MAX;
        return mf_snappy_decode(p, (size_t)h.size, h.off, max_out + 64, s->a, out, out_len, s->err);
    }
    return mf_fail(s->err, MF_ERR_UNSUPPORTED, h.off + h.size,
                   "SSTable %s uses compression type %u (only none and snappy are read)", what, (unsigned)type);
}

typedef int (*entry_fn)(sst *s, const uint8_t *key, uint32_t key_len, const uint8_t *val, uint32_t val_len,
                        uint64_t val_off, void *ctx);

/* Walk a block's entries, rebuilding prefix-compressed keys and checking restart points.
 * base = file offset of `b` (for a decompressed block, of the block on disk: offsets inside
 * it are then approximate, and reported as the block's). */
static int walk_block(sst *s, const uint8_t *b, size_t n, uint64_t base, int compressed, const char *what, entry_fn fn,
                      void *ctx) {
    if (n < 4) return mf_fail(s->err, MF_ERR_CORRUPT, base, "SSTable %s of %zu bytes is too short", what, n);
    uint32_t nr = mf_load_u32le(b + n - 4);
    if (nr == 0 || (uint64_t)nr > (n - 4) / 4)
        return mf_fail(s->err, MF_ERR_CORRUPT, base + n - 4, "SSTable %s declares %u restart points in %zu bytes", what,
                       (unsigned)nr, n);
    size_t data_end = n - 4 - (size_t)nr * 4;
    const uint8_t *restarts = b + data_end;
    mf_cursor c;
    mf_cursor_init(&c, b, data_end, compressed ? 0 : base, s->err);
    uint32_t ri = 0;
    uint8_t *prev = NULL;
    uint32_t prev_len = 0;
    while (c.pos < c.end) {
        uint64_t rel = (uint64_t)(c.pos - c.start);
        uint64_t at = compressed ? base : base + rel;
        uint32_t shared, unshared, vlen;
        if (varint32(&c, &shared, "SSTable entry") || varint32(&c, &unshared, "SSTable entry") ||
            varint32(&c, &vlen, "SSTable entry"))
            return s->err->code;
        int is_restart = ri < nr && mf_load_u32le(restarts + 4 * ri) == rel;
        if (ri < nr && mf_load_u32le(restarts + 4 * ri) < rel)
            return mf_fail(s->err, MF_ERR_CORRUPT, at, "SSTable %s restart point %u (%u) is not an entry boundary", what,
                           (unsigned)ri, (unsigned)mf_load_u32le(restarts + 4 * ri));
        if (is_restart) ri++;
        if (shared > prev_len || (is_restart && shared != 0) || (prev == NULL && shared != 0))
            return mf_fail(s->err, MF_ERR_CORRUPT, at, "SSTable %s entry shares %u key bytes with a %u-byte previous key%s",
                           what, (unsigned)shared, (unsigned)prev_len, is_restart ? " at a restart point" : "");
        const uint8_t *delta, *val;
        if (mf_take(&c, unshared, &delta, "SSTable key") || mf_take(&c, vlen, &val, "SSTable value")) return s->err->code;
        uint64_t klen = (uint64_t)shared + unshared;
        uint8_t *key = (uint8_t *)mf_arena_alloc(s->a, klen ? (size_t)klen : 1, s->err, at);
        if (key == NULL) return s->err->code;
        if (shared) memcpy(key, prev, shared);
        if (unshared) memcpy(key + shared, delta, unshared);
        uint64_t voff = compressed ? base : base + (uint64_t)(val - b);
        if (fn(s, key, (uint32_t)klen, val, vlen, voff, ctx)) return s->err->code;
        prev = key;
        prev_len = (uint32_t)klen;
    }
    if (ri != nr && !(ri == 0 && nr == 1 && data_end == 0 && mf_load_u32le(restarts) == 0))
        return mf_fail(s->err, MF_ERR_CORRUPT, base + data_end, "SSTable %s restart points do not match its entries", what);
    return MF_OK;
}

static int cmp_keys(const uint8_t *a, uint32_t an, const uint8_t *b, uint32_t bn) {
    uint32_t n = an < bn ? an : bn;
    int c = n ? memcmp(a, b, n) : 0;
    if (c) return c;
    return an < bn ? -1 : an > bn;
}

typedef struct data_ctx {
    mf_vec *entries;
    int compressed;
} data_ctx;

static int on_data(sst *s, const uint8_t *key, uint32_t key_len, const uint8_t *val, uint32_t val_len, uint64_t val_off,
                   void *vctx) {
    data_ctx *d = (data_ctx *)vctx;
    if (s->have_last && cmp_keys(s->last_key, s->last_len, key, key_len) >= 0)
        return mf_fail(s->err, MF_ERR_CORRUPT, val_off, "SSTable keys are not in strictly increasing order");
    s->last_key = key;
    s->last_len = key_len;
    s->have_last = 1;
    mf_sst_entry *e = (mf_sst_entry *)mf_vec_push(d->entries, sizeof *e, s->a, s->err, val_off);
    if (e == NULL) return 1;
    e->key = key;
    e->key_len = key_len;
    e->value = val;
    e->value_len = val_len;
    e->value_off = val_off;
    e->compressed = d->compressed;
    return 0;
}

typedef struct index_ctx {
    mf_vec *entries;
    uint64_t prev_end;   /* data blocks must not overlap and lie before the index */
    uint64_t index_off;
} index_ctx;

static int on_index(sst *s, const uint8_t *key, uint32_t key_len, const uint8_t *val, uint32_t val_len, uint64_t val_off,
                    void *vctx) {
    (void)key;
    (void)key_len;
    index_ctx *ix = (index_ctx *)vctx;
    mf_cursor c;
    handle h;
    mf_cursor_init(&c, val, val_len, val_off, s->err);
    if (read_handle(&c, &h, "SSTable index entry")) return 1;
    uint64_t end;
    if (h.off < ix->prev_end || mf_add_u64(h.off, h.size, &end) || mf_add_u64(end, 5, &end) || end > ix->index_off)
        return mf_fail(s->err, MF_ERR_CORRUPT, val_off, "SSTable data block [%llu, +%llu) overlaps another block",
                       (unsigned long long)h.off, (unsigned long long)h.size);
    ix->prev_end = end;
    const uint8_t *b;
    size_t n;
    int compressed;
    if (load_block(s, h, "data block", &b, &n, &compressed)) return 1;
    if (s->info) s->info->n_blocks++;
    data_ctx d = {ix->entries, compressed};
    return walk_block(s, b, n, h.off, compressed, "data block", on_data, &d) != MF_OK;
}

int mf_sst_has_magic(const uint8_t *buf, size_t len) {
    return len >= MF_SST_FOOTER_LEN && mf_load_u64le(buf + len - 8) == MF_SST_MAGIC;
}

int mf_sst_read(const uint8_t *buf, size_t len, mf_arena *a, int verify_blocks, mf_vec *entries, mf_sst_info *info,
                mf_error *err) {
    sst s;
    memset(&s, 0, sizeof s);
    s.buf = buf;
    s.len = len;
    s.a = a;
    s.err = err;
    s.verify = verify_blocks;
    s.info = info;
    if (info) memset(info, 0, sizeof *info);
    if (len < MF_SST_FOOTER_LEN)
        return mf_fail(err, MF_ERR_TRUNCATED, 0, "SSTable of %zu bytes is shorter than its 48-byte footer", len);
    if (!mf_sst_has_magic(buf, len))
        return mf_fail(err, MF_ERR_CORRUPT, len - 8, "SSTable footer magic missing (not a TensorFlow checkpoint index)");
    uint64_t foot = len - MF_SST_FOOTER_LEN;
    mf_cursor c;
    handle meta, index;
    mf_cursor_init(&c, buf + foot, 40, foot, err);
    if (read_handle(&c, &meta, "SSTable footer") || read_handle(&c, &index, "SSTable footer")) return err->code;
    uint64_t end;
    if (mf_add_u64(index.off, index.size, &end) || mf_add_u64(end, 5, &end) || end > foot)
        return mf_fail(err, MF_ERR_CORRUPT, foot, "SSTable index block [%llu, +%llu) does not lie before the footer",
                       (unsigned long long)index.off, (unsigned long long)index.size);
    const uint8_t *b;
    size_t n;
    int compressed;
    if (load_block(&s, index, "index block", &b, &n, &compressed)) return err->code;
    index_ctx ix = {entries, 0, index.off};
    return walk_block(&s, b, n, index.off, compressed, "index block", on_index, &ix);
}
