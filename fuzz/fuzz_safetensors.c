/* libFuzzer target: the safetensors header reader and its validation. */
#include "mf_safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mf_error err = {0};
    uint64_t n;
    if (mf_safetensors_header_len(data, size, size, &n, &err)) return 0;
    mf_arena a;
    mf_arena_init(&a, mf_arena_cap_for(n, 16, 1 << 20));
    mf_st_result r;
    mf_safetensors_parse(data, size, size, &a, &r, &err);
    mf_arena_free(&a);
    return 0;
}
