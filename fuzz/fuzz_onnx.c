/* libFuzzer target: the ONNX ModelProto walker, the bare TensorProto reader, and the typed-field
 * decoder on every tensor whose values live in a typed field. */
#include "mf_onnx.h"

#include <stdlib.h>

static void decode_typed(const uint8_t *data, size_t size, const mf_onnx_model *m) {
    const mf_onnx_tensor *t = (const mf_onnx_tensor *)m->tensors.items;
    for (size_t i = 0; i < m->tensors.len; i++) {
        const mf_onnx_tensor_more *mo = t[i].more;
        if (mo == NULL || mo->msg_off > size || mo->msg_len > size - mo->msg_off) continue;
        if (t[i].data != MF_ONNX_DATA_TYPED && t[i].data != MF_ONNX_DATA_STRINGS) continue;
        uint64_t cap = mo->count < (1u << 16) ? mo->count : (1u << 16), n = 0;
        uint64_t *a = malloc((cap + 1) * sizeof *a), *b = malloc((cap + 1) * sizeof *b);
        mf_error e = {0};
        if (a && b) {
            if (t[i].data == MF_ONNX_DATA_STRINGS)
                mf_pb_collect_bytes(data + mo->msg_off, mo->msg_len, mo->msg_off, 6, a, b, cap, &n, &e);
            else
                mf_pb_collect(data + mo->msg_off, mo->msg_len, mo->msg_off, mo->field,
                              mo->field == 4 ? MF_PB_I32 : mo->field == 10 ? MF_PB_I64 : MF_PB_VARINT, a, cap, &n, &e);
        }
        free(a);
        free(b);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mf_error err = {0};
    mf_arena a;
    mf_onnx_model m;
    mf_arena_init(&a, mf_arena_cap_for(size, 128, 16 << 20));
    if (mf_onnx_parse_model(data, size, 0, &a, &m, &err) == MF_OK) decode_typed(data, size, &m);
    mf_arena_free(&a);
    mf_error err2 = {0};
    mf_arena_init(&a, mf_arena_cap_for(size, 128, 16 << 20));
    if (mf_onnx_parse_tensor(data, size, 0, &a, &m, &err2) == MF_OK) decode_typed(data, size, &m);
    mf_arena_free(&a);
    (void)mf_pb_looks_like(data, size < 64 ? size : 64, size, 26, 8);
    return 0;
}
