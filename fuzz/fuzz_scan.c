/* libFuzzer target: the scanner's fast path (csrc/mf_scan.c) on a whole file, with a small name
 * table (the real one is built from mfparse/scan/policy.py): plain pickles, zips of stored members
 * (torch.save), legacy torch files, .npy. Every answer must come back, bail or not. */
#include <string.h>

#include "mf_scan.h"

static const char *const ALLOWED[] = {
    "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
    "torch.FloatStorage", "torch.LongStorage", "torch.HalfStorage", "builtins.set", "builtins.bytearray",
    "_codecs.encode", "numpy.core.multiarray._reconstruct", "numpy.ndarray", "numpy.dtype", "torch.Size",
};

static int table(mf_scan_tables *t, mf_arena *a, mf_error *err) {
    memset(t, 0, sizeof *t);
    if (mf_scan_map_init(&t->names, 32, a, err) || mf_scan_map_init(&t->pairs, 4, a, err) ||
        mf_scan_map_init(&t->modules, 4, a, err))
        return 1;
    for (size_t i = 0; i < sizeof ALLOWED / sizeof *ALLOWED; i++) {
        uint32_t bits = MF_SCAN_ALLOWED;
        if (i == 0) bits |= MF_SCAN_BUILD_OK | MF_SCAN_SETITEM_OK;
        if (i == 7) bits |= MF_SCAN_ARG_BYTEARRAY;
        if (i == 8) bits |= MF_SCAN_ARG_CODEC;
        if (i == 9) bits |= MF_SCAN_ARG_RECONSTRUCT | MF_SCAN_BUILD_OK;
        if (mf_scan_map_add(&t->names, (const uint8_t *)ALLOWED[i], strlen(ALLOWED[i]), NULL, 0, bits, a, err))
            return 1;
    }
    if (mf_scan_map_add(&t->names, (const uint8_t *)"pickle.loads", 12, NULL, 0, MF_SCAN_ARG_NESTED, a, err) ||
        mf_scan_map_add(&t->pairs, (const uint8_t *)"copy_reg\0_reconstructor", 23,
                        (const uint8_t *)"copyreg\0_reconstructor", 22, 0, a, err) ||
        mf_scan_map_add(&t->modules, (const uint8_t *)"__builtin__", 11, (const uint8_t *)"builtins", 8, 0, a, err))
        return 1;
    const char *ops = "().012BCFGIJKLMNPQRSTUVX]abcdeghijlopqrstu}";
    for (const char *c = ops; *c; c++) t->opcode[(uint8_t)*c] = t->member_first[(uint8_t)*c] = 1;
    for (int b = 0x80; b <= 0x98; b++) t->opcode[b] = t->member_first[b] = 1;
    t->member_first['P'] = t->member_first[0x1f] = t->member_first[0x93] = 1;
    t->codecs[0] = (const uint8_t *)"latin1";
    t->codec_lens[0] = 6;
    t->n_codecs = 1;
    t->trigger_exact[0] = (const uint8_t *)"config.json";
    t->trigger_exact_len[0] = 11;
    t->n_trigger_exact = 1;
    t->trigger_suffix[0] = (const uint8_t *)"constants.pkl";
    t->trigger_suffix_len[0] = 13;
    t->n_trigger_suffix = 1;
    t->pickle_names[0] = (const uint8_t *)".pkl";
    t->pickle_name_lens[0] = 4;
    t->n_pickle_names = 1;
    t->alloc_bomb = 1u << 24;
    t->memo_index = 1u << 24;
    t->marks = 5000;
    t->expansion_nodes = 1u << 24;
    t->expansion_ratio = 1000;
    t->max_stack = 1u << 26;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static mf_arena ta;
    static mf_scan_tables t;
    static int ready;
    mf_error err = {0};
    if (!ready) {
        mf_arena_init(&ta, 0);
        if (table(&t, &ta, &err)) {
            mf_arena_free(&ta);
            return 0;
        }
        ready = 1;
    }
    mf_arena a;
    mf_arena_init(&a, 0);
    mf_scan_result res;
    mf_scan_quick(data, size, size & 1 ? MF_SCAN_NAME_PROTOBUF : 0, &t, &a, &res, &err);
    mf_arena_free(&a);
    return 0;
}
