/* libFuzzer target: the GGUF header reader, value decoding, string offsets and the
 * dequantization kernels on every tensor the header accepts. */
#include "mf_gguf.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mf_error err = {0};
    mf_arena a;
    mf_gguf_result r;
    mf_arena_init(&a, mf_arena_cap_for(size, 16, 1 << 20));
    if (mf_gguf_parse(data, size, &a, &r, &err) == MF_OK) {
        for (uint64_t i = 0; i < r.n_kv; i++) {
            mf_gguf_value v;
            mf_error e2 = {0};
            mf_gguf_value_at(data, size, r.kvs[i].v.offset, r.kvs[i].v.type, r.big_endian, &v, &e2);
            if (r.kvs[i].v.type == 9 && r.kvs[i].v.arr_type == 8 && r.kvs[i].v.arr_count < (1u << 16)) {
                uint64_t *offs = malloc((r.kvs[i].v.arr_count + 1) * sizeof *offs);
                if (offs) mf_gguf_string_offsets(data, size, r.kvs[i].v.arr_data, r.kvs[i].v.arr_count, r.big_endian,
                                                 offs, &e2);
                free(offs);
            }
        }
        for (uint64_t i = 0; i < r.n_tensors; i++) {
            mf_gguf_tensor *t = &r.tensors[i];
            if (!mf_gguf_can_dequantize(t->type) || t->nelem > (1u << 20)) continue;
            float *out = malloc((size_t)t->nelem * sizeof *out + 1);
            mf_error e3 = {0};
            if (out) mf_gguf_dequantize(t->type, data + t->offset, (size_t)t->nbytes, out, (size_t)t->nelem, &e3);
            free(out);
        }
    }
    mf_arena_free(&a);
    return 0;
}
