/* libFuzzer target: the TFLite flatbuffer walker (and the generic accessors under it), and the
 * TFLite Model Metadata walker: on the buffers the model's metadata entries name, and on the
 * input itself when it carries the "M001" identifier. */
#include "mf_tflite.h"

static void metadata(const uint8_t *data, size_t size, uint64_t base) {
    mf_error err = {0};
    mf_arena a;
    mf_tfl_metadata md;
    mf_arena_init(&a, mf_arena_cap_for(size, 256, 16 << 20));
    mf_tflite_metadata(data, size, base, &a, &md, &err);
    mf_arena_free(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mf_error err = {0};
    mf_arena a;
    mf_tfl_model m;
    if (size >= 8 && data[4] == 'M' && data[5] == '0' && data[6] == '0' && data[7] == '1') metadata(data, size, 0);
    mf_arena_init(&a, mf_arena_cap_for(size, 32, 16 << 20));
    if (mf_tflite_parse(data, size, 0, &a, &m, &err) == MF_OK)
        for (uint32_t i = 0; i < m.n_metadata; i++) {
            const mf_tfl_buffer *b = &m.buffers[m.metadata[i].buffer];
            if (b->size && b->offset + b->size <= size) metadata(data + b->offset, (size_t)b->size, b->offset);
        }
    mf_arena_free(&a);
    return 0;
}
