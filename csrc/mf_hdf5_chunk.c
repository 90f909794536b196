/*
 * mf_hdf5_chunk.c - chunk indexes of chunked HDF5 datasets (v1 B-tree, single chunk, implicit,
 * fixed array, extensible array, v2 B-tree) and variable-length data in the global heap.
 * Called when data is read; listing never comes here.
 */
#include "mf_hdf5_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct h5_chunks {
    mf_h5ctx h;
    const mf_h5_dataset *d;
    unsigned rank;
    uint64_t nchunks[MF_H5_MAX_RANK];   /* chunks along each dim, current extent */
    uint64_t maxchunks[MF_H5_MAX_RANK]; /* chunks along each dim, maximum extent (UINT64_MAX unlimited) */
    uint64_t down[MF_H5_MAX_RANK];      /* linear index strides (libhdf5's max_down_chunks) */
    int unlim;                          /* the unlimited dim for the extensible array, else -1 */
    unsigned size_len;                  /* width of the stored size of a filtered chunk */
    int filtered;
    mf_vec out;
} h5_chunks;

static void h5_ctx_from(mf_h5ctx *h, const mf_h5_result *r, unsigned flags, mf_arena *a, mf_error *err) {
    memset(h, 0, sizeof *h);
    h->data = r->data;
    h->len = r->len;
    h->report_base = r->report_base;
    h->base = r->base;
    h->so = r->so;
    h->sl = r->sl;
    h->flags = flags;
    h->arena = a;
    h->err = err;
    h->budget = (uint64_t)r->len * 2 + (1u << 20);
}

/* Add a chunk given its per-dim chunk indexes (scaled offsets); drops chunks outside the extent. */
static int h5_add_chunk(h5_chunks *s, const uint64_t *scaled, uint64_t addr, uint64_t size, uint32_t mask,
                        uint64_t at) {
    mf_h5ctx *h = &s->h;
    if (addr == MF_H5_UNDEF) return 0;
    for (unsigned i = 0; i < s->rank; i++) {
        if (scaled[i] >= s->nchunks[i]) return 0;
    }
    if (size == 0) return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, at), "chunk of 0 bytes");
    mf_cursor c;
    if (h5_at(h, addr, size, "dataset chunk", &c)) return 1;
    if (h5_work(h, 1, at)) return 1;
    mf_h5_chunk *ch = (mf_h5_chunk *)mf_vec_push(&s->out, sizeof(mf_h5_chunk), h->arena, h->err, h5_rep(h, at));
    if (ch == NULL) return 1;
    ch->addr = addr;
    ch->size = size;
    ch->mask = mask;
    ch->offset = (uint64_t *)mf_arena_alloc(h->arena, s->rank * sizeof(uint64_t), h->err, h5_rep(h, at));
    if (ch->offset == NULL) return 1;
    for (unsigned i = 0; i < s->rank; i++) {
        if (mf_mul_u64(scaled[i], s->d->chunk[i], &ch->offset[i])) {
            return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, at), "chunk offset overflows");
        }
    }
    return 0;
}

/* linear index -> per-dim chunk indexes (with the unlimited dim swizzled first for the EA) */
static void h5_unlinear(const h5_chunks *s, uint64_t idx, uint64_t *scaled) {
    uint64_t sw[MF_H5_MAX_RANK];
    for (unsigned i = 0; i < s->rank; i++) {
        sw[i] = s->down[i] ? idx / s->down[i] : 0;
        idx = s->down[i] ? idx % s->down[i] : idx;
    }
    if (s->unlim > 0) { /* sw = [unlim, others in order] */
        unsigned k = 1;
        for (unsigned i = 0; i < s->rank; i++) {
            if ((int)i == s->unlim) scaled[i] = sw[0];
            else scaled[i] = sw[k++];
        }
    } else {
        memcpy(scaled, sw, s->rank * sizeof(uint64_t));
    }
}

/* One element of a fixed or extensible array: address [+ size + mask when filtered]. */
static int h5_array_elem(h5_chunks *s, mf_cursor *c, uint64_t idx, unsigned esize) {
    mf_h5ctx *h = &s->h;
    uint64_t at = mf_tell(c) - h->report_base;
    uint64_t addr, size = s->d->chunk_bytes;
    uint32_t mask = 0;
    if (h5_addr(h, c, &addr, "chunk address")) return 1;
    if (s->filtered) {
        if (h5_uvar(c, s->size_len, &size, "chunk size") || mf_u32le(c, &mask, "chunk filter mask")) return 1;
    } else if (esize != h->so) {
        return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, at), "chunk index element of %u bytes", esize);
    }
    uint64_t scaled[MF_H5_MAX_RANK];
    h5_unlinear(s, idx, scaled);
    return h5_add_chunk(s, scaled, addr, size, mask, at);
}

/* ========================================================================================== */
/* v1 B-tree (layout <= 3)                                                                    */
/* ========================================================================================== */

static int h5_chunk_btree1(h5_chunks *s, uint64_t abs, int want_level) {
    mf_h5ctx *h = &s->h;
    mf_cursor c;
    const char *what = "chunk B-tree node";
    uint64_t hdr = 8 + 2 * (uint64_t)h->so;
    uint64_t key = 8 + 8 * (uint64_t)(s->rank + 1);
    uint8_t level;
    uint16_t n;
    if (h5_work(h, 1, abs)) return 1;
    if (h5_btree1_node(h, abs, 1, want_level, what, &level, &n)) return 1;
    if (h5_work(h, n, abs)) return 1;
    if (h5_at(h, abs, hdr + (uint64_t)n * (key + h->so) + key, what, &c)) return 1;
    mf_skip(&c, (size_t)hdr, what);
    for (unsigned i = 0; i < n; i++) {
        uint64_t at = mf_tell(&c) - h->report_base;
        uint32_t size = 0, mask = 0;
        uint64_t off[MF_H5_MAX_RANK + 1] = {0}, child;
        mf_u32le(&c, &size, what);
        mf_u32le(&c, &mask, what);
        for (unsigned k = 0; k <= s->rank; k++) mf_u64le(&c, &off[k], what);
        if (h5_addr(h, &c, &child, "chunk B-tree child")) return 1;
        if (level > 0) {
            if (h5_chunk_btree1(s, child, level - 1)) return 1;
            continue;
        }
        uint64_t scaled[MF_H5_MAX_RANK];
        for (unsigned k = 0; k < s->rank; k++) {
            if (off[k] % s->d->chunk[k] != 0) {
                return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, at), "chunk offset %llu is not a multiple of the chunk size",
                               (unsigned long long)off[k]);
            }
            scaled[k] = off[k] / s->d->chunk[k];
        }
        if (h5_add_chunk(s, scaled, child, size, mask, at)) return 1;
    }
    return 0;
}

/* ========================================================================================== */
/* Fixed array (index type 3)                                                                 */
/* ========================================================================================== */

static int h5_chunk_farray(h5_chunks *s, uint64_t abs) {
    mf_h5ctx *h = &s->h;
    mf_cursor c;
    const char *what = "fixed array header";
    uint64_t hdr_len = 4 + 1 + 1 + 1 + 1 + h->sl + h->so;
    if (h5_at(h, abs, hdr_len + 4, what, &c)) return 1;
    if (h5_sig(h, &c, "FAHD", what)) return 1;
    uint8_t version, client, esize, page_bits;
    uint64_t nelmts, dblk;
    if (mf_u8(&c, &version, what) || mf_u8(&c, &client, what) || mf_u8(&c, &esize, what) ||
        mf_u8(&c, &page_bits, what) || h5_length(h, &c, &nelmts, what) || h5_addr(h, &c, &dblk, "fixed array data block"))
        return 1;
    if (h5_checksum(h, abs, hdr_len, what)) return 1;
    if (version != 0 || client > 1 || (client == 1) != s->filtered || page_bits > 63) {
        return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, abs), "%s: version %u, client %u, page bits %u", what, version,
                       client, page_bits);
    }
    if (s->filtered) {
        if (esize < h->so + 4 + 1 || esize > h->so + 4 + 8) {
            return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, abs), "%s element size %u", what, esize);
        }
        s->size_len = esize - h->so - 4;
    }
    if (dblk == MF_H5_UNDEF || nelmts == 0) return 0;
    /* every element must fit the file: bounds nelmts by the file size */
    if (nelmts > h->len / esize) {
        return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, abs), "%s claims %llu elements", what, (unsigned long long)nelmts);
    }
    what = "fixed array data block";
    uint64_t page_n = (uint64_t)1 << page_bits;
    int paged = nelmts > page_n;
    uint64_t npages = paged ? (nelmts + page_n - 1) / page_n : 0;
    uint64_t bitmap = paged ? (npages + 7) / 8 : 0;
    uint64_t prefix = 4 + 1 + 1 + h->so + bitmap;
    uint64_t body = prefix + (paged ? 0 : nelmts * esize);
    if (h5_at(h, dblk, body + 4, what, &c)) return 1;
    if (h5_sig(h, &c, "FADB", what)) return 1;
    uint8_t dv, dc;
    uint64_t owner;
    if (mf_u8(&c, &dv, what) || mf_u8(&c, &dc, what) || h5_addr(h, &c, &owner, what)) return 1;
    if (dv != 0 || dc != client || owner != abs) {
        return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, dblk), "%s does not belong to its header", what);
    }
    if (h5_checksum(h, dblk, body, what)) return 1;
    const uint8_t *bits = c.pos;
    if (!paged) {
        mf_skip(&c, (size_t)bitmap, what);
        for (uint64_t i = 0; i < nelmts; i++) {
            if (h5_array_elem(s, &c, i, esize)) return 1;
        }
        return 0;
    }
    uint64_t page_start = dblk + prefix + 4;
    for (uint64_t p = 0; p < npages; p++) {
        uint64_t n = (p == npages - 1) ? nelmts - p * page_n : page_n;
        uint64_t psize = n * esize;
        uint64_t paddr = page_start + p * (page_n * esize + 4);
        if (!(bits[p / 8] & (0x80u >> (p % 8)))) continue; /* page never written */
        mf_cursor pc;
        if (h5_at(h, paddr, psize + 4, "fixed array page", &pc)) return 1;
        if (h5_checksum(h, paddr, psize, "fixed array page")) return 1;
        for (uint64_t i = 0; i < n; i++) {
            if (h5_array_elem(s, &pc, p * page_n + i, esize)) return 1;
        }
    }
    return 0;
}

/* ========================================================================================== */
/* Extensible array (index type 4)                                                            */
/* ========================================================================================== */

typedef struct h5_ea {
    uint64_t hdr;
    uint8_t client, esize, max_bits, idx_elmts, min_elmts, min_ptrs, page_bits;
    uint64_t max_idx;
    unsigned nsblks, arrayoff;
    uint64_t page_n;
} h5_ea;

/* one data block of nelmts elements holding array indexes from first */
static int h5_ea_dblock(h5_chunks *s, const h5_ea *ea, uint64_t addr, uint64_t nelmts, uint64_t first,
                        const uint8_t *page_bits, uint64_t bit0) {
    mf_h5ctx *h = &s->h;
    mf_cursor c;
    const char *what = "extensible array data block";
    int paged = nelmts > ea->page_n;
    uint64_t prefix = 4 + 1 + 1 + h->so + ea->arrayoff;
    uint64_t body = prefix + (paged ? 0 : nelmts * ea->esize);
    if (h5_work(h, 1, addr)) return 1;
    if (h5_at(h, addr, body + 4, what, &c)) return 1;
    if (h5_sig(h, &c, "EADB", what)) return 1;
    uint8_t v, cl;
    uint64_t owner, boff;
    if (mf_u8(&c, &v, what) || mf_u8(&c, &cl, what) || h5_addr(h, &c, &owner, what) ||
        h5_uvar(&c, ea->arrayoff, &boff, what))
        return 1;
    if (v != 0 || cl != ea->client || owner != ea->hdr) {
        return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, addr), "%s does not belong to its header", what);
    }
    if (h5_checksum(h, addr, body, what)) return 1;
    if (!paged) {
        for (uint64_t i = 0; i < nelmts && first + i < ea->max_idx; i++) {
            if (h5_array_elem(s, &c, first + i, ea->esize)) return 1;
        }
        return 0;
    }
    uint64_t npages = nelmts / ea->page_n;
    uint64_t psize = ea->page_n * ea->esize;
    for (uint64_t p = 0; p < npages; p++) {
        uint64_t pfirst = first + p * ea->page_n;
        if (pfirst >= ea->max_idx) break;
        if (page_bits != NULL) {
            uint64_t b = bit0 + p;
            if (!(page_bits[b / 8] & (0x80u >> (b % 8)))) continue;
        }
        uint64_t paddr = addr + prefix + 4 + p * (psize + 4);
        mf_cursor pc;
        if (h5_at(h, paddr, psize + 4, "extensible array page", &pc)) return 1;
        if (h5_checksum(h, paddr, psize, "extensible array page")) return 1;
        for (uint64_t i = 0; i < ea->page_n && pfirst + i < ea->max_idx; i++) {
            if (h5_array_elem(s, &pc, pfirst + i, ea->esize)) return 1;
        }
    }
    return 0;
}

static int h5_chunk_earray(h5_chunks *s, uint64_t abs) {
    mf_h5ctx *h = &s->h;
    mf_cursor c;
    h5_ea ea;
    const char *what = "extensible array header";
    memset(&ea, 0, sizeof ea);
    uint64_t hdr_len = 4 + 1 + 1 + 6 + 6 * (uint64_t)h->sl + h->so;
    if (h5_at(h, abs, hdr_len + 4, what, &c)) return 1;
    if (h5_sig(h, &c, "EAHD", what)) return 1;
    uint8_t version;
    uint64_t skip, iblock, nelmts;
    if (mf_u8(&c, &version, what) || mf_u8(&c, &ea.client, what) || mf_u8(&c, &ea.esize, what) ||
        mf_u8(&c, &ea.max_bits, what) || mf_u8(&c, &ea.idx_elmts, what) || mf_u8(&c, &ea.min_elmts, what) ||
        mf_u8(&c, &ea.min_ptrs, what) || mf_u8(&c, &ea.page_bits, what))
        return 1;
    for (int i = 0; i < 4; i++) {
        if (h5_length(h, &c, &skip, what)) return 1;
    }
    if (h5_length(h, &c, &ea.max_idx, what) || h5_length(h, &c, &nelmts, what) ||
        h5_addr(h, &c, &iblock, "extensible array index block"))
        return 1;
    if (h5_checksum(h, abs, hdr_len, what)) return 1;
    if (version != 0 || ea.client > 1 || (ea.client == 1) != s->filtered || ea.max_bits == 0 || ea.max_bits > 64 ||
        ea.min_elmts == 0 || (ea.min_elmts & (ea.min_elmts - 1)) || ea.min_ptrs < 2 ||
        (ea.min_ptrs & (ea.min_ptrs - 1)) || ea.page_bits > 63 || h5_log2(ea.min_elmts) > ea.max_bits) {
        return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, abs), "%s has invalid parameters", what);
    }
    if (s->filtered) {
        if (ea.esize < h->so + 4 + 1 || ea.esize > h->so + 4 + 8) {
            return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, abs), "%s element size %u", what, ea.esize);
        }
        s->size_len = ea.esize - h->so - 4;
    }
    if (iblock == MF_H5_UNDEF || ea.max_idx == 0) return 0;
    ea.hdr = abs;
    ea.nsblks = 1 + (ea.max_bits - h5_log2(ea.min_elmts));
    ea.arrayoff = (ea.max_bits + 7u) / 8u;
    ea.page_n = (uint64_t)1 << ea.page_bits;
    unsigned ib_nsblks = 2 * h5_log2(ea.min_ptrs);
    uint64_t ndblk_addrs = 2 * ((uint64_t)ea.min_ptrs - 1);
    uint64_t nsblk_addrs = ea.nsblks > ib_nsblks ? ea.nsblks - ib_nsblks : 0;
    what = "extensible array index block";
    uint64_t body = 4 + 1 + 1 + h->so + (uint64_t)ea.idx_elmts * ea.esize + (ndblk_addrs + nsblk_addrs) * h->so;
    if (h5_at(h, iblock, body + 4, what, &c)) return 1;
    if (h5_sig(h, &c, "EAIB", what)) return 1;
    uint8_t v, cl;
    uint64_t owner;
    if (mf_u8(&c, &v, what) || mf_u8(&c, &cl, what) || h5_addr(h, &c, &owner, what)) return 1;
    if (v != 0 || cl != ea.client || owner != abs) {
        return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, iblock), "%s does not belong to its header", what);
    }
    if (h5_checksum(h, iblock, body, what)) return 1;
    for (uint64_t i = 0; i < ea.idx_elmts; i++) {
        if (i < ea.max_idx) {
            if (h5_array_elem(s, &c, i, ea.esize)) return 1;
        } else if (mf_skip(&c, ea.esize, what)) {
            return 1;
        }
    }
    mf_cursor dc = c; /* data block addresses */
    mf_cursor sc = c; /* super block addresses */
    mf_skip(&sc, (size_t)(ndblk_addrs * h->so), what);
    uint64_t start_idx = 0, start_dblk = 0;
    for (unsigned u = 0; u < ea.nsblks; u++) {
        uint64_t ndblks = (uint64_t)1 << (u / 2);
        uint64_t dn = ((uint64_t)1 << ((u + 1) / 2)) * ea.min_elmts;
        uint64_t first = ea.idx_elmts + start_idx;
        if (first >= ea.max_idx) break;
        if (h5_work(h, ndblks, iblock)) return 1;
        if (u < ib_nsblks) {
            for (uint64_t j = 0; j < ndblks; j++) {
                uint64_t a;
                if (start_dblk + j >= ndblk_addrs) break;
                if (h5_addr(h, &dc, &a, "extensible array data block address")) return 1;
                if (a != MF_H5_UNDEF && h5_ea_dblock(s, &ea, a, dn, first + j * dn, NULL, 0)) return 1;
            }
        } else {
            uint64_t sa;
            if (h5_addr(h, &sc, &sa, "extensible array super block address")) return 1;
            if (sa != MF_H5_UNDEF) {
                /* super block: prefix, page bitmap, data block addresses */
                mf_cursor bc;
                const char *sw = "extensible array super block";
                int paged = dn > ea.page_n;
                uint64_t npages = paged ? dn / ea.page_n : 0;
                uint64_t bitmap = paged ? ndblks * ((npages + 7) / 8) : 0;
                uint64_t sbody = 4 + 1 + 1 + h->so + ea.arrayoff + bitmap + ndblks * h->so;
                if (h5_at(h, sa, sbody + 4, sw, &bc)) return 1;
                if (h5_sig(h, &bc, "EASB", sw)) return 1;
                uint8_t sv, scl;
                uint64_t sowner, soff;
                if (mf_u8(&bc, &sv, sw) || mf_u8(&bc, &scl, sw) || h5_addr(h, &bc, &sowner, sw) ||
                    h5_uvar(&bc, ea.arrayoff, &soff, sw))
                    return 1;
                if (sv != 0 || scl != ea.client || sowner != abs) {
                    return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, sa), "%s does not belong to its header", sw);
                }
                if (h5_checksum(h, sa, sbody, sw)) return 1;
                const uint8_t *pbits = bc.pos;
                mf_skip(&bc, (size_t)bitmap, sw);
                for (uint64_t j = 0; j < ndblks; j++) {
                    uint64_t a;
                    if (h5_addr(h, &bc, &a, "extensible array data block address")) return 1;
                    if (a != MF_H5_UNDEF &&
                        h5_ea_dblock(s, &ea, a, dn, first + j * dn, paged ? pbits : NULL, j * npages))
                        return 1;
                }
            }
        }
        start_idx += ndblks * dn;
        start_dblk += ndblks;
    }
    return 0;
}

/* ========================================================================================== */
/* v2 B-tree (index type 5)                                                                   */
/* ========================================================================================== */

static int h5_chunk_bt2_cb(mf_h5ctx *h, const uint8_t *rec, uint32_t rec_size, uint64_t rec_off, void *ud) {
    h5_chunks *s = (h5_chunks *)ud;
    mf_cursor c;
    mf_cursor_init(&c, rec, rec_size, h5_rep(h, rec_off), h->err);
    uint64_t addr, size = s->d->chunk_bytes, scaled[MF_H5_MAX_RANK];
    uint32_t mask = 0;
    if (h5_addr(h, &c, &addr, "chunk address")) return 1;
    if (s->filtered) {
        uint64_t fixed = (uint64_t)h->so + 4 + 8 * (uint64_t)s->rank;
        if (rec_size <= fixed || rec_size - fixed > 8) {
            return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, rec_off), "chunk record of %u bytes", rec_size);
        }
        if (h5_uvar(&c, (unsigned)(rec_size - fixed), &size, "chunk size") || mf_u32le(&c, &mask, "chunk filter mask"))
            return 1;
    }
    for (unsigned k = 0; k < s->rank; k++) {
        if (mf_u64le(&c, &scaled[k], "chunk offset")) return 1;
    }
    return h5_add_chunk(s, scaled, addr, size, mask, rec_off);
}

/* ========================================================================================== */
/* Entry point                                                                                */
/* ========================================================================================== */

int mf_h5_chunks(const mf_h5_result *r, const mf_h5_dataset *d, unsigned flags, mf_arena *a,
                 mf_h5_chunk **out, size_t *n_out, mf_error *err) {
    h5_chunks s;
    memset(&s, 0, sizeof s);
    h5_ctx_from(&s.h, r, flags, a, err);
    mf_h5ctx *h = &s.h;
    *out = NULL;
    *n_out = 0;
    if (d->layout != 2) return mf_fail(err, MF_ERR_CORRUPT, r->report_base, "dataset is not chunked");
    s.d = d;
    s.rank = d->space.rank;
    s.unlim = -1;
    s.filtered = d->n_filters > 0;
    int n_unlim = 0;
    for (unsigned i = 0; i < s.rank; i++) {
        uint64_t cd = d->chunk[i];
        s.nchunks[i] = d->space.dims[i] / cd + (d->space.dims[i] % cd != 0);
        if (d->space.maxdims[i] == UINT64_MAX) {
            s.maxchunks[i] = UINT64_MAX;
            n_unlim++;
            s.unlim = (int)i;
        } else {
            s.maxchunks[i] = d->space.maxdims[i] / cd + (d->space.maxdims[i] % cd != 0);
        }
    }
    if (d->index_addr == MF_H5_UNDEF) return MF_OK; /* nothing written: all fill */
    for (unsigned i = 0; i < s.rank; i++) {
        if (s.nchunks[i] == 0) return MF_OK; /* empty extent */
    }
    /* down products over the (swizzled, for the EA) maximum chunk counts */
    uint64_t mc[MF_H5_MAX_RANK];
    if (d->index_type == 4 && s.unlim > 0) {
        unsigned k = 1;
        mc[0] = s.maxchunks[s.unlim];
        for (unsigned i = 0; i < s.rank; i++) {
            if ((int)i != s.unlim) mc[k++] = s.maxchunks[i];
        }
    } else {
        memcpy(mc, s.maxchunks, sizeof mc);
        if (d->index_type != 4) s.unlim = -1;
    }
    if (d->index_type == 2 || d->index_type == 3 || d->index_type == 4) {
        uint64_t acc = 1;
        for (unsigned i = s.rank; i > 0; i--) {
            s.down[i - 1] = acc;
            if (i - 1 > 0) {
                if (mc[i - 1] == UINT64_MAX || mf_mul_u64(acc, mc[i - 1], &acc)) {
                    return mf_fail(err, MF_ERR_CORRUPT, r->report_base + d->index_addr,
                                   "chunk grid of the dataset overflows");
                }
            }
        }
    }
    int rc = 0;
    switch (d->index_type) {
    case 0:
        rc = h5_chunk_btree1(&s, d->index_addr, -1);
        break;
    case 1: {
        uint64_t zero[MF_H5_MAX_RANK] = {0};
        uint64_t size = (d->chunk_flags & 2) ? d->single_size : d->chunk_bytes;
        rc = h5_add_chunk(&s, zero, d->index_addr, size, (d->chunk_flags & 2) ? d->single_mask : 0, d->index_addr);
        break;
    }
    case 2: {
        uint64_t total = 1;
        for (unsigned i = 0; i < s.rank; i++) {
            if (s.maxchunks[i] == UINT64_MAX || mf_mul_u64(total, s.maxchunks[i], &total)) {
                return mf_fail(err, MF_ERR_CORRUPT, h5_rep(h, d->index_addr), "implicit chunk index over an unlimited extent");
            }
        }
        uint64_t bytes;
        mf_cursor c;
        if (mf_mul_u64(total, d->chunk_bytes, &bytes) ||
            h5_at(h, d->index_addr, bytes, "implicitly indexed chunks", &c))
            return err->code ? err->code : mf_fail(err, MF_ERR_CORRUPT, h5_rep(h, d->index_addr), "chunk array overflows");
        for (uint64_t i = 0; i < total && rc == 0; i++) {
            uint64_t scaled[MF_H5_MAX_RANK];
            h5_unlinear(&s, i, scaled);
            rc = h5_add_chunk(&s, scaled, d->index_addr + i * d->chunk_bytes, d->chunk_bytes, 0, d->index_addr);
        }
        break;
    }
    case 3:
        rc = h5_chunk_farray(&s, d->index_addr);
        break;
    case 4:
        if (n_unlim != 1) {
            return mf_fail(err, MF_ERR_CORRUPT, h5_rep(h, d->index_addr),
                           "extensible array chunk index needs exactly one unlimited dimension");
        }
        rc = h5_chunk_earray(&s, d->index_addr);
        break;
    case 5:
        rc = h5_bt2_iterate(h, d->index_addr, s.filtered ? 11 : 10, h5_chunk_bt2_cb, &s);
        break;
    default:
        return mf_fail(err, MF_ERR_CORRUPT, h5_rep(h, d->index_addr), "chunk index type %u", d->index_type);
    }
    if (rc) return err->code;
    *out = (mf_h5_chunk *)s.out.items;
    *n_out = s.out.len;
    return MF_OK;
}

/* ========================================================================================== */
/* Global heap (variable-length data)                                                         */
/* ========================================================================================== */

typedef struct h5_gobj {
    uint16_t index;
    uint64_t off;
    uint64_t size;
} h5_gobj;

typedef struct h5_gcol {
    uint64_t addr;
    h5_gobj *objs;   /* sorted by index */
    size_t n;
} h5_gcol;

static int h5_gobj_cmp(const void *a, const void *b) {
    const h5_gobj *x = (const h5_gobj *)a, *y = (const h5_gobj *)b;
    return (int)x->index - (int)y->index;
}

static int h5_gcol_parse(mf_h5ctx *h, uint64_t abs, h5_gcol *col) {
    mf_cursor c;
    const char *what = "global heap collection";
    if (h5_at(h, abs, 8 + h->sl, what, &c)) return 1;
    if (h5_sig(h, &c, "GCOL", what)) return 1;
    uint8_t version;
    uint64_t size;
    if (mf_u8(&c, &version, what) || mf_skip(&c, 3, what) || h5_length(h, &c, &size, what)) return 1;
    if (version != 1) return mf_fail(h->err, MF_ERR_UNSUPPORTED, h5_rep(h, abs), "global heap collection version %u", version);
    if (size < 8 + (uint64_t)h->sl) return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, abs), "%s of %llu bytes", what, (unsigned long long)size);
    if (h5_at(h, abs, size, what, &c)) return 1;
    if (mf_skip(&c, 8 + h->sl, what)) return 1;
    mf_vec v = {0};
    uint64_t ohdr = 8 + (uint64_t)h->sl;
    while (mf_remaining(&c) >= ohdr) {
        uint16_t index = 0, refs = 0;
        uint64_t osize = 0;
        if (mf_u16le(&c, &index, what) || mf_u16le(&c, &refs, what) || mf_skip(&c, 4, what) ||
            h5_length(h, &c, &osize, what))
            return 1;
        if (index == 0) break; /* free space */
        uint64_t at = mf_tell(&c) - h->report_base;
        uint64_t padded = (osize + 7) & ~(uint64_t)7;
        if (osize > mf_remaining(&c)) {
            return mf_fail(h->err, MF_ERR_CORRUPT, h5_rep(h, at), "global heap object of %llu bytes overruns its collection",
                           (unsigned long long)osize);
        }
        if (h5_work(h, 1, at)) return 1;
        h5_gobj *o = (h5_gobj *)mf_vec_push(&v, sizeof(h5_gobj), h->arena, h->err, h5_rep(h, at));
        if (o == NULL) return 1;
        o->index = index;
        o->off = at;
        o->size = osize;
        if (padded > mf_remaining(&c)) break;
        mf_skip(&c, (size_t)padded, what);
    }
    col->addr = abs;
    col->objs = (h5_gobj *)v.items;
    col->n = v.len;
    if (col->n > 1) qsort(col->objs, col->n, sizeof(h5_gobj), h5_gobj_cmp);
    return 0;
}

size_t mf_h5_vlen_elem_size(const mf_h5_result *r) { return 4 + (size_t)r->so + 4; }

int mf_h5_vlen(const mf_h5_result *r, const uint8_t *elems, size_t n, size_t stride, mf_arena *a,
               uint64_t *offsets, uint64_t *sizes, uint32_t *counts, mf_error *err) {
    mf_h5ctx hh;
    h5_ctx_from(&hh, r, 0, a, err);
    mf_h5ctx *h = &hh;
    size_t esz = mf_h5_vlen_elem_size(r);
    if (stride < esz && n > 1) return mf_fail(err, MF_ERR_CORRUPT, r->report_base, "variable-length elements overlap");
    mf_vec cols = {0};
    h5_gcol *last = NULL;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *e = elems + i * stride;
        mf_cursor c;
        mf_cursor_init(&c, e, esz, r->report_base, err);
        uint32_t count = 0, index = 0;
        uint64_t addr;
        mf_u32le(&c, &count, "variable-length element");
        if (h5_addr(h, &c, &addr, "global heap collection") || mf_u32le(&c, &index, "variable-length element")) {
            return err->code;
        }
        counts[i] = count;
        offsets[i] = MF_H5_UNDEF;
        sizes[i] = 0;
        if (addr == MF_H5_UNDEF || addr == r->base || count == 0) continue; /* NULL / empty */
        if (last == NULL || last->addr != addr) {
            last = NULL;
            h5_gcol *cs = (h5_gcol *)cols.items;
            for (size_t k = 0; k < cols.len; k++) {
                if (cs[k].addr == addr) {
                    last = &cs[k];
                    break;
                }
            }
            if (last == NULL) {
                h5_gcol col;
                if (cols.len > 4096) cols.len = 0; /* bound the cache (entries stay in the arena) */
                if (h5_gcol_parse(h, addr, &col)) return err->code;
                last = (h5_gcol *)mf_vec_push(&cols, sizeof(h5_gcol), a, err, r->report_base + addr);
                if (last == NULL) return err->code;
                *last = col;
            }
        }
        size_t lo = 0, hi = last->n;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (last->objs[mid].index < index) lo = mid + 1;
            else hi = mid;
        }
        if (lo == last->n || last->objs[lo].index != index) {
            return mf_fail(err, MF_ERR_CORRUPT, r->report_base + addr, "global heap object %u is not in its collection", index);
        }
        offsets[i] = last->objs[lo].off;
        sizes[i] = last->objs[lo].size;
    }
    return MF_OK;
}
