/* libFuzzer target: a legacy (pre-1.6) torch file: five stacked pickles and raw storages. */
#include "mf_torch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mf_error err = {0};
    mf_arena a;
    mf_arena_init(&a, mf_arena_cap_for(size, 256, 64u << 20));
    mf_pkl p;
    mf_pkl_init(&p, &a, &err);
    mf_pv *root;
    mf_torch_result r = {0};
    uint64_t *where;
    if (mf_torch_legacy(&p, data, size, &root, &r, &where, &err) == MF_OK && r.storages.len) {
        uint64_t *avail = mf_arena_calloc(&a, r.storages.len, sizeof *avail, &err, 0);
        if (avail) {
            for (size_t i = 0; i < r.storages.len; i++) avail[i] = UINT64_MAX;
            mf_torch_resolve(&r, where, avail, &err);
        }
    }
    mf_arena_free(&a);
    return 0;
}
