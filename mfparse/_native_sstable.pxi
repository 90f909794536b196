# Included by _native.pyx: bindings over csrc/mf_sstable.c (SSTable, snappy, CRC32C).

cdef extern from "mf_sstable.h" nogil:
    ctypedef struct mf_sst_entry:
        const uint8_t *key
        uint32_t key_len
        const uint8_t *value
        uint32_t value_len
        uint64_t value_off
        int compressed

    ctypedef struct mf_sst_info:
        uint32_t n_blocks
        uint32_t n_snappy

    int mf_sst_has_magic(const uint8_t *buf, size_t len)
    int mf_sst_read(const uint8_t *buf, size_t len, mf_arena *a, int verify_blocks, mf_vec *entries,
                    mf_sst_info *info, mf_error *err)
    int mf_snappy_decode(const uint8_t *src, size_t n, uint64_t base, uint64_t max_out, mf_arena *a,
                         const uint8_t **out, size_t *out_len, mf_error *err)
    uint32_t mf_crc32c(uint32_t crc, const uint8_t *p, size_t n)
    uint32_t mf_crc_mask(uint32_t c)


def crc32c(const uint8_t[::1] data, uint32_t crc=0):
    """CRC32C (Castagnoli) of data, continuing from crc."""
    return mf_crc32c(crc, &data[0] if data.shape[0] else NULL, data.shape[0])


def crc_mask(uint32_t c):
    """LevelDB's masked form of a CRC (what SSTables and tensor bundles store)."""
    return mf_crc_mask(c)


def sst_has_magic(const uint8_t[::1] buf):
    return bool(mf_sst_has_magic(&buf[0] if buf.shape[0] else NULL, buf.shape[0]))


def sst_entries(const uint8_t[::1] buf, bint verify_blocks=True):
    """Every (key bytes, value bytes, value file offset) of an SSTable, in key order."""
    cdef mf_arena arena
    cdef mf_error err
    cdef mf_vec v
    cdef mf_sst_info info
    cdef size_t i
    cdef mf_sst_entry *e
    cdef const uint8_t *p = &buf[0] if buf.shape[0] else NULL
    cdef size_t n = buf.shape[0]
    memset(&v, 0, sizeof(mf_vec))
    clear_error(&err)
    mf_arena_init(&arena, mf_arena_cap_for(buf.shape[0], 64, 16 << 20))
    try:
        with nogil:
            mf_sst_read(p, n, &arena, verify_blocks, &v, &info, &err)
        raise_error(&err)
        e = <mf_sst_entry *>v.items
        return [((<const char *>e[i].key)[:e[i].key_len], (<const char *>e[i].value)[:e[i].value_len],
                 e[i].value_off) for i in range(v.len)]
    finally:
        mf_arena_free(&arena)


def snappy_decode(const uint8_t[::1] src, uint64_t max_out):
    """Decode a raw snappy buffer (at most max_out bytes of output)."""
    cdef mf_arena arena
    cdef mf_error err
    cdef const uint8_t *out = NULL
    cdef size_t n = 0
    clear_error(&err)
    mf_arena_init(&arena, max_out + (1 << 20))
    try:
        mf_snappy_decode(&src[0] if src.shape[0] else NULL, src.shape[0], 0, max_out, &arena, &out, &n, &err)
        raise_error(&err)
        return (<const char *>out)[:n]
    finally:
        mf_arena_free(&arena)
