/*
 * mf_sstable.h - LevelDB-format SSTable reader (TensorFlow's checkpoint .index files),
 * with the snappy block decoder and CRC32C it needs.
 *
 * File layout (LevelDB doc/table_format.md; TF core/lib/io/format.cc):
 *   data blocks, meta blocks, metaindex block, index block, footer (48 bytes at EOF):
 *   metaindex BlockHandle, index BlockHandle (varint64 offset + varint64 size each), zero
 *   padding to 40 bytes, magic 0xdb4775248b80fb57 (fixed64 LE).
 *   Every block on disk = contents + trailer: compression type (1 byte: 0 none, 1 snappy) +
 *   masked crc32c (4 bytes) of contents + type byte.
 *   Block contents = entries {shared varint32, unshared varint32, value_len varint32,
 *   key delta, value}, then restart offsets (u32 each), then their count (u32).
 * Keys are prefix-compressed against the previous key and restart at each restart point;
 * index-block keys are separators (>= the last key of their block), their values are
 * BlockHandles of data blocks. We check keys strictly increase across the whole table.
 */
#ifndef MF_SSTABLE_H
#define MF_SSTABLE_H

#include "mf_core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MF_SST_FOOTER_LEN 48
#define MF_SST_MAGIC 0xdb4775248b80fb57ull

typedef struct mf_sst_entry {
    const uint8_t *key;    /* arena copy (keys are rebuilt from shared prefixes) */
    uint32_t key_len;
    const uint8_t *value;  /* points into the file, or into a decompressed block in the arena */
    uint32_t value_len;
    uint64_t value_off;    /* file offset of the value; for a compressed block, of the block */
    int compressed;        /* the value came from a snappy block */
} mf_sst_entry;

typedef struct mf_sst_info {
    uint32_t n_blocks;     /* data blocks */
    uint32_t n_snappy;     /* of which snappy-compressed */
} mf_sst_info;

/* Is the last 8 bytes of buf the SSTable magic? (len >= 48) */
int mf_sst_has_magic(const uint8_t *buf, size_t len);

/* Read every key/value of the table in buf (the whole file). Block checksums are verified
 * when verify_blocks is set. Entries are appended to `entries` (mf_sst_entry). */
int mf_sst_read(const uint8_t *buf, size_t len, mf_arena *a, int verify_blocks, mf_vec *entries,
                mf_sst_info *info, mf_error *err);

/* Snappy raw format: decode src into an arena buffer; the declared length is bounded by
 * `max_out`. `base` is the file offset of src (for errors). */
int mf_snappy_decode(const uint8_t *src, size_t n, uint64_t base, uint64_t max_out, mf_arena *a,
                     const uint8_t **out, size_t *out_len, mf_error *err);

/* CRC32C (Castagnoli), continuing from crc (0 to start); and LevelDB's mask/unmask. */
uint32_t mf_crc32c(uint32_t crc, const uint8_t *p, size_t n);
static inline uint32_t mf_crc_mask(uint32_t c) { return ((c >> 15) | (c << 17)) + 0xa282ead8u; }
static inline uint32_t mf_crc_unmask(uint32_t m) {
    uint32_t r = m - 0xa282ead8u;
    return (r >> 17) | (r << 15);
}

#ifdef __cplusplus
}
#endif
#endif /* MF_SSTABLE_H */
