/* libFuzzer target: the symbolic pickle interpreter on stacked pickles, and the torch walker
 * (both persistent-id flavours) on every root it returns. */
#include "mf_torch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mf_error err = {0};
    mf_arena a;
    mf_arena_init(&a, mf_arena_cap_for(size, 256, 64u << 20));
    mf_pkl p;
    mf_pkl_init(&p, &a, &err);
    size_t pos = 0;
    for (int k = 0; k < 8 && pos < size; k++) {
        mf_pv *root = NULL;
        size_t used = 0;
        if (mf_pkl_load(&p, data + pos, size - pos, pos, &root, &used) != MF_OK || used == 0) break;
        pos += used;
        mf_torch_result r = {0};
        mf_error werr = {0};
        if (mf_torch_walk(root, k & 1, used, &a, &r, &werr) == MF_OK && r.storages.len) {
            uint64_t *off = mf_arena_calloc(&a, r.storages.len, sizeof *off, &werr, 0);
            uint64_t *avail = mf_arena_calloc(&a, r.storages.len, sizeof *avail, &werr, 0);
            if (off && avail) {
                for (size_t i = 0; i < r.storages.len; i++) {
                    off[i] = i * 64;
                    avail[i] = (k & 2) ? UINT64_MAX : 1024;
                }
                mf_torch_resolve(&r, off, avail, &werr);
            }
        }
    }
    mf_arena_free(&a);
    return 0;
}
