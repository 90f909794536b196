/* libFuzzer target: TensorFlow GraphDef and SavedModel walkers (nodes, function libraries,
 * Const tensors, signatures). */
#include "mf_tf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mf_arena a;
    mf_tf_graph g;
    for (int saved_model = 0; saved_model < 2; saved_model++) {
        mf_error err = {0};
        mf_arena_init(&a, mf_arena_cap_for(size, 128, 16 << 20));
        if (saved_model)
            mf_tf_parse_saved_model(data, size, 0, &a, &g, &err);
        else
            mf_tf_parse_graphdef(data, size, 0, &a, &g, &err);
        mf_arena_free(&a);
    }
    return 0;
}
