/* libFuzzer target: the TFLite flatbuffer walker (and the generic accessors under it). */
#include "mf_tflite.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mf_error err = {0};
    mf_arena a;
    mf_tfl_model m;
    mf_arena_init(&a, mf_arena_cap_for(size, 32, 16 << 20));
    mf_tflite_parse(data, size, 0, &a, &m, &err);
    mf_arena_free(&a);
    return 0;
}
