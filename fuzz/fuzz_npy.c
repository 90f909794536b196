/* libFuzzer target: the .npy header reader (magic, version, dict literal). */
#include "mf_npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mf_error err = {0};
    mf_npy_header h;
    mf_npy_parse(data, size, 0, &h, &err);
    return 0;
}
