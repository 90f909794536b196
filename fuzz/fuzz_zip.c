/* libFuzzer target: the zip reader on a whole file (EOCD, zip64, central directory, local headers). */
#include "mf_zip.h"

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
    mf_arena_init(&a, mf_arena_cap_for(eocd.cd_size, 4, 1 << 20));
    mf_zip_entry *entries;
    size_t n;
    if (mf_zip_read_cd(data + eocd.cd_offset, (size_t)eocd.cd_size, &eocd, size, &a, &entries, &n, &err) == MF_OK)
        mf_zip_local_all(data, size, entries, n, &err);
    mf_arena_free(&a);
    return 0;
}
