/* libFuzzer target: the SSTable reader (blocks, restart points, snappy) and the tensor bundle
 * entries of a checkpoint .index; block checksums are skipped on every other input so that
 * mutations reach the entries. The input's first byte also feeds the snappy decoder and the
 * string-tensor reader directly. */
#include "mf_tf.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mf_error err = {0};
    mf_arena a;
    mf_tf_bundle b;
    int verify = size > 0 && (data[0] & 1);
    mf_arena_init(&a, mf_arena_cap_for(size, 96, 16 << 20));
    mf_tf_parse_bundle(data, size, &a, verify, &b, &err);
    mf_arena_free(&a);

    mf_error e2 = {0};
    const uint8_t *out;
    size_t out_len;
    mf_arena_init(&a, 64u << 20);
    mf_snappy_decode(data, size, 0, (uint64_t)size * 32 + 64, &a, &out, &out_len, &e2);
    mf_arena_free(&a);

    if (size > 1) {
        uint64_t numel = data[0] % 16;
        uint64_t offs[16], lens[16];
        uint32_t crc;
        mf_error e3 = {0}, e4 = {0};
        mf_tf_bundle_strings(data + 1, size - 1, 1, numel, data[0] >> 7, offs, lens, &e3);
        mf_tf_bundle_strings_crc(data + 1, size - 1, 1, numel, data[0] >> 7, &crc, &e4);
    }
    return 0;
}
