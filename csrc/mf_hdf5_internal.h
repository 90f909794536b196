/*
 * mf_hdf5_internal.h - what the HDF5 reader's C files share (not part of the binding).
 *
 *   mf_h5ctx   one parse: the input, the superblock's sizes, arena, error, work budget.
 *   h5_at      a cursor over a structure at an absolute offset (checked against the input).
 *   h5_addr    read an address (size of offsets), make it absolute, keep MF_H5_UNDEF.
 *   mf_h5_lookup3  Jenkins lookup3 (hashlittle), the checksum of all v2-style metadata.
 */
#ifndef MF_HDF5_INTERNAL_H
#define MF_HDF5_INTERNAL_H

#include "mf_hdf5.h"

/* The helpers shared by the mf_hdf5*.c files keep their short h5_ names in the source but are
 * linked as mf_h5_*, so that every C symbol of the extension carries the mf_ prefix. */
#define h5_work mf_h5_work
#define h5_at mf_h5_at
#define h5_uvar mf_h5_uvar
#define h5_addr mf_h5_addr
#define h5_sig mf_h5_sig
#define h5_btree1_node mf_h5_btree1_node
#define h5_checksum mf_h5_checksum
#define h5_bytes_for mf_h5_bytes_for
#define h5_log2 mf_h5_log2
#define h5_bt2_iterate mf_h5_bt2_iterate
#define h5_fheap_open mf_h5_fheap_open
#define h5_fheap_get mf_h5_fheap_get

typedef struct mf_h5ctx {
    const uint8_t *data;
    size_t len;
    uint64_t report_base;
    uint64_t base;
    uint8_t so, sl;
    unsigned flags;
    mf_arena *arena;
    mf_error *err;
    uint64_t budget;        /* units of work left; a hostile structure cannot loop or explode */
    uint8_t *scratch;       /* checksumming a fractal heap direct block needs a copy of it */
    size_t scratch_cap;
} mf_h5ctx;

/* Report offsets: input offset -> file offset */
static inline uint64_t h5_rep(const mf_h5ctx *h, uint64_t abs) { return h->report_base + abs; }

/* One unit of work; fails with MF_ERR_LIMIT when the budget is spent. */
int h5_work(mf_h5ctx *h, uint64_t units, uint64_t offset);

/* A cursor over [abs, abs + n) of the input; truncation error naming `what` if it does not fit. */
int h5_at(mf_h5ctx *h, uint64_t abs, uint64_t n, const char *what, mf_cursor *c);

/* Little-endian unsigned integer of n bytes (1..8). */
int h5_uvar(mf_cursor *c, unsigned n, uint64_t *out, const char *what);

/* Address (h->so bytes): all ones -> MF_H5_UNDEF, else made absolute (base added, checked). */
int h5_addr(mf_h5ctx *h, mf_cursor *c, uint64_t *out, const char *what);

/* Length (h->sl bytes). */
static inline int h5_length(mf_h5ctx *h, mf_cursor *c, uint64_t *out, const char *what) {
    return h5_uvar(c, h->sl, out, what);
}

/* Check a 4-byte signature at the cursor and step over it. */
int h5_sig(mf_h5ctx *h, mf_cursor *c, const char *sig, const char *what);

/* The header of a version 1 B-tree node at abs ("TREE", node type, level, entries used):
 * checks the signature, that the node has node_type and, when want_level >= 0, that it sits at
 * that level. what names the tree in errors ("group B-tree node"). */
int h5_btree1_node(mf_h5ctx *h, uint64_t abs, uint8_t node_type, int want_level, const char *what, uint8_t *level,
                   uint16_t *n);

/* Verify the lookup3 checksum stored right after [start, start + n) (absolute offsets). */
int h5_checksum(mf_h5ctx *h, uint64_t start, uint64_t n, const char *what);

uint32_t mf_h5_lookup3(const uint8_t *key, size_t length, uint32_t initval);

/* Bytes needed to store v (at least 1). */
unsigned h5_bytes_for(uint64_t v);
/* floor(log2(v)) for v > 0 */
unsigned h5_log2(uint64_t v);

/* ---- v2 B-trees ----------------------------------------------------------------------------- */

/* Called for each record (rec points at record_size bytes inside the input). Return nonzero to stop
 * with an error already recorded. */
typedef int (*h5_bt2_cb)(mf_h5ctx *h, const uint8_t *rec, uint32_t rec_size, uint64_t rec_off, void *ud);

/* Visit every record of the v2 B-tree whose header is at abs (records in key order). */
int h5_bt2_iterate(mf_h5ctx *h, uint64_t abs, uint8_t want_type, h5_bt2_cb cb, void *ud);

/* ---- fractal heaps -------------------------------------------------------------------------- */

typedef struct h5_fh_block {
    uint64_t heap_off;      /* offset of the block in the heap's address space */
    uint64_t size;          /* block size (header included) */
    uint64_t addr;          /* absolute */
    int checked;            /* header (and checksum) verified */
} h5_fh_block;

typedef struct h5_fheap {
    uint64_t addr;
    uint16_t id_len;
    uint16_t filter_len;
    uint8_t flags;
    uint32_t max_man_size;
    uint64_t huge_btree;    /* absolute or MF_H5_UNDEF */
    uint16_t width;
    uint64_t start_block;
    uint64_t max_direct;
    uint16_t max_heap_bits;
    uint64_t root;
    uint16_t root_rows;
    unsigned off_size, len_size;   /* managed object ID field widths */
    h5_fh_block *blocks;    /* direct blocks sorted by heap_off */
    size_t n_blocks;
} h5_fheap;

int h5_fheap_open(mf_h5ctx *h, uint64_t abs, h5_fheap *fh);

/* The bytes of the object whose heap ID is id[0..id_len) : *out_off absolute, *out_len. */
int h5_fheap_get(mf_h5ctx *h, h5_fheap *fh, const uint8_t *id, uint64_t id_off, uint64_t *out_off,
                 uint64_t *out_len);

#endif /* MF_HDF5_INTERNAL_H */
