/* libFuzzer target: the HDF5 reader (superblock, object headers, groups, attributes, fractal
 * heaps, v2 B-trees) with checksums and the EOF check off so that mutations reach every parser,
 * then every chunk index and the global heap lookups of variable-length attributes. */
#include "mf_hdf5.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mf_error err = {0};
    mf_arena a;
    mf_h5_result r;
    unsigned flags = MF_H5_NO_VERIFY | MF_H5_NO_EOF_CHECK;
    mf_arena_init(&a, mf_arena_cap_for(size, 16, 64 << 20));
    if (mf_h5_open(data, size, 0, flags, &a, &r, &err) == MF_OK) {
        for (size_t i = 0; i < r.n_datasets; i++) {
            if (r.datasets[i].layout != 2) continue;
            mf_arena ca;
            mf_error e2 = {0};
            mf_h5_chunk *ch;
            size_t n;
            mf_arena_init(&ca, mf_arena_cap_for(size, 8, 16 << 20));
            mf_h5_chunks(&r, &r.datasets[i], flags, &ca, &ch, &n, &e2);
            mf_arena_free(&ca);
        }
        size_t esz = mf_h5_vlen_elem_size(&r);
        for (size_t i = 0; i < r.n_attrs; i++) {
            mf_h5_attr *at = &r.attrs[i];
            if (at->dtype->cls != MF_H5T_VLEN || at->dtype->size != esz || at->numel > 4096) continue;
            if (at->data_offset > size || at->numel * esz > size - at->data_offset) continue;
            mf_arena va;
            mf_error e3 = {0};
            uint64_t offs[4096], sizes[4096];
            uint32_t counts[4096];
            mf_arena_init(&va, mf_arena_cap_for(size, 8, 16 << 20));
            mf_h5_vlen(&r, data + at->data_offset, (size_t)at->numel, esz, &va, offs, sizes, counts, &e3);
            mf_arena_free(&va);
        }
    }
    mf_arena_free(&a);
    return 0;
}
