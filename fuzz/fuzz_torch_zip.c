/* libFuzzer target: a torch.save zip end to end: zip directory, data.pkl, walker, storages. */
#include <string.h>

#include "mf_torch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mf_error err = {0};
    mf_zip_eocd eocd;
    size_t tail = size < MF_ZIP_TAIL_MAX ? size : MF_ZIP_TAIL_MAX;
    if (mf_zip_find_eocd(data + size - tail, tail, size, &eocd, &err)) return 0;
    if (eocd.zip64_eocd_offset != UINT64_MAX &&
        mf_zip_read_eocd64(data + eocd.zip64_eocd_offset, size - (size_t)eocd.zip64_eocd_offset, size, &eocd, &err))
        return 0;
    if (eocd.cd_offset > size || eocd.cd_size > size - eocd.cd_offset) return 0;
    mf_arena a;
    mf_arena_init(&a, mf_arena_cap_for(size, 256, 64u << 20));
    mf_zip_entry *e;
    size_t n;
    if (mf_zip_read_cd(data + eocd.cd_offset, (size_t)eocd.cd_size, &eocd, size, &a, &e, &n, &err) ||
        mf_zip_local_all(data, size, e, n, &err) || n == 0)
        goto done;
    /* the archive folder is the first entry's top folder */
    size_t plen = 0;
    while (plen < e[0].name_len && e[0].name[plen] != '/') plen++;
    for (size_t i = 0; i < n; i++) {
        if (e[i].method != 0 || e[i].name_len != plen + 9 || memcmp(e[i].name, e[0].name, plen) != 0 ||
            memcmp(e[i].name + plen, "/data.pkl", 9) != 0)
            continue;
        mf_pkl p;
        mf_pkl_init(&p, &a, &err);
        mf_pv *root;
        size_t used;
        if (mf_pkl_load(&p, data + e[i].data_offset, (size_t)e[i].comp_size, e[i].data_offset, &root, &used)) break;
        mf_torch_result r = {0};
        if (mf_torch_walk(root, MF_TORCH_ZIP, used, &a, &r, &err)) break;
        uint8_t prefix[300];
        if (plen > 250) break;
        memcpy(prefix, e[0].name, plen);
        memcpy(prefix + plen, "/data/", 6);
        size_t ns = r.storages.len ? r.storages.len : 1;
        uint64_t *off = mf_arena_calloc(&a, ns, sizeof *off, &err, 0);
        uint64_t *avail = mf_arena_calloc(&a, ns, sizeof *avail, &err, 0);
        int32_t *member = mf_arena_calloc(&a, ns, sizeof *member, &err, 0);
        if (off && avail && member &&
            mf_torch_zip_storages(&r, e, n, prefix, plen + 6, &a, off, avail, member, &err) == MF_OK)
            mf_torch_resolve(&r, off, avail, &err);
        break;
    }
done:
    mf_arena_free(&a);
    return 0;
}
