/*
 * mf_scan.h - the scanner's fast path for small files: one call judges a plain pickle, or a zip
 * archive of stored members (a torch.save checkpoint), when nothing in it is unusual.
 *
 * `mfparse scan` (mfparse/scan/) judges a file in Python: containers are sniffed and opened, every
 * pickle is interpreted by csrc/mf_pickle.c and its event log is judged against the allowlist.
 * For the many tiny files of a folder that Python costs far more than the interpretation, so
 * mf_scan_quick does the same work in one C call and answers either
 *   - MF_SCAN_DONE: every stream was read to its end and nothing happened but imports, calls
 *     the judge leaves alone and BUILD/SETITEM on what the judge accepts; the result lists the
 *     distinct imports (with counts and first offsets) and whether each is on the allowlist, and
 *     the zip members whose flags, local header or CRC-32 are findings (marks); the caller
 *     (mfparse/scan/quick.py) makes the findings with the Python judge and the container code's
 *     own messages, so that verdicts, findings, offsets and messages are those of the full scan; or
 *   - MF_SCAN_BAIL_*: something the full scan would report, or could see differently (a
 *     container, a polyglot, a parse error, an event the judge reports, a name that is not
 *     ASCII, an archive that is not in canonical form): the caller runs the full scan.
 * A bail is never an answer: the fast path only ever shortens the way to the verdict the full
 * scan gives (tests/test_scan_fastpath.py compares both on every hostile pickle of the tests).
 *
 * The name classes (allowlist, the constructors BUILD may target, the calls whose arguments
 * are judged) come from mfparse/scan/policy.py and pickles.py, handed over once per process
 * (mf_scan_map_add), keyed by the full dotted Python 3 name, as policy.judge_global looks
 * names up; the Python 2 mappings of _compat_pickle come along.
 */
#ifndef MF_SCAN_H
#define MF_SCAN_H

#include "mf_core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* classes of a global, by its Python 3 name (bits of mf_scan_tables' values) */
enum {
    MF_SCAN_ALLOWED = 1u << 0,         /* on the allowlist: importing it is no finding */
    MF_SCAN_BUILD_OK = 1u << 1,        /* BUILD on its result is accepted (OrderedDict, numpy) */
    MF_SCAN_SETITEM_OK = 1u << 2,      /* SETITEM on its result is accepted (OrderedDict, Counter) */
    MF_SCAN_ARG_BYTEARRAY = 1u << 3,   /* builtins.bytearray(n): an allocation bomb above a bound */
    MF_SCAN_ARG_CODEC = 1u << 4,       /* _codecs.encode(s, codec): codec judged */
    MF_SCAN_ARG_RECONSTRUCT = 1u << 5, /* numpy _reconstruct(cls, shape, ...): shape judged */
    MF_SCAN_ARG_NESTED = 1u << 6,      /* a loader of a nested payload (pickle.loads, ...) */
};

/* answers of mf_scan_quick */
enum {
    MF_SCAN_DONE = 0,
    MF_SCAN_BAIL_FORMAT = 1,    /* another format, a polyglot, or a name a format is known by */
    MF_SCAN_BAIL_PARSE = 2,     /* a pickle stops early, or stacked pickles need a closer look */
    MF_SCAN_BAIL_EVENT = 3,     /* an event the judge reports (or needs Python for) */
    MF_SCAN_BAIL_NAME = 4,      /* a computed or non-ASCII global */
    MF_SCAN_BAIL_ZIP = 5,       /* an archive not in the form every zip reader reads alike */
    MF_SCAN_BAIL_TORCH = 6,     /* torch records the loader would mis-read */
    MF_SCAN_BAIL_LIMIT = 7,     /* the scanner's own memory bounds */
};

/* A string -> (string, bits) hash table (open addressing, arena storage). */
typedef struct mf_scan_map {
    const uint8_t **keys;       /* NULL = empty slot */
    uint32_t *key_lens;
    const uint8_t **vals;       /* the mapped string (NULL when none) */
    uint32_t *val_lens;
    uint32_t *bits;
    size_t cap;                 /* power of two */
    size_t len;
} mf_scan_map;

typedef struct mf_scan_tables {
    mf_scan_map names;          /* Python 3 dotted name "module.qualname" -> class bits */
    mf_scan_map pairs;          /* "module\0name" -> "module\0name": _compat_pickle.NAME_MAPPING */
    mf_scan_map modules;        /* "module" -> "module": _compat_pickle.IMPORT_MAPPING */
    uint8_t opcode[256];        /* bytes that are pickle opcodes (pickles.OPCODES) */
    uint8_t member_first[256];  /* first bytes a zip member is looked at for (containers) */
    const uint8_t *codecs[32];  /* policy.SAFE_CODECS, lower case */
    uint32_t codec_lens[32];
    size_t n_codecs;
    const uint8_t *trigger_exact[16];      /* member names a zip inspector reads (containers) */
    uint32_t trigger_exact_len[16];
    size_t n_trigger_exact;
    const uint8_t *trigger_base[16];       /* member base names a zip inspector reads */
    uint32_t trigger_base_len[16];
    size_t n_trigger_base;
    const uint8_t *trigger_base_ci[16];    /* base-name endings, case-insensitive (.jinja) */
    uint32_t trigger_base_ci_len[16];
    size_t n_trigger_base_ci;
    const uint8_t *trigger_suffix[16];     /* member name endings (constants.pkl, ...) */
    uint32_t trigger_suffix_len[16];
    size_t n_trigger_suffix;
    const uint8_t *pickle_names[16];       /* containers.PICKLE_NAMES, lower case */
    uint32_t pickle_name_lens[16];
    size_t n_pickle_names;
    /* bounds of mfparse/scan/pickles.py */
    uint64_t alloc_bomb, memo_index, marks, expansion_nodes, expansion_ratio, max_stack;
} mf_scan_tables;

/* An empty map with room for `n` keys (arena storage). */
int mf_scan_map_init(mf_scan_map *m, size_t n, mf_arena *a, mf_error *err);
/* Add key (copied) -> val (copied; may be NULL) with bits (or-ed into an existing key's). */
int mf_scan_map_add(mf_scan_map *m, const uint8_t *key, size_t len, const uint8_t *val, size_t val_len,
                    uint32_t bits, mf_arena *a, mf_error *err);
/* Class bits of the global module.name as the unpickler resolves it (Python 2 names mapped as
 * policy.py3_name maps them), 0 when none. */
uint32_t mf_scan_class(const mf_scan_tables *t, const uint8_t *mod, size_t mod_len, const uint8_t *name,
                       size_t name_len);

/* One distinct import of one pickle of one stream, in order of first occurrence. */
typedef struct mf_scan_import {
    const uint8_t *mod;     /* "module.name" in the result's arena (mod_len + 1 + name_len bytes) */
    const uint8_t *name;    /* mod + mod_len + 1 */
    uint32_t mod_len, name_len;
    uint32_t stream;        /* index into the result's streams */
    uint32_t pickle;        /* index of the stacked pickle in that stream */
    uint64_t count;         /* imports of this name in that pickle */
    uint64_t offset;        /* file offset of the first one */
    uint32_t allowed;       /* on the allowlist (no finding) */
} mf_scan_import;

/* A judged pickle stream: the file itself, or a zip member. */
typedef struct mf_scan_stream {
    const uint8_t *member;  /* member name (points into the input), NULL for the file */
    uint32_t member_len;
    uint32_t pickles;       /* pickles read to their STOP */
} mf_scan_stream;

/* A finding about a zip member that is not an import (containers.member_anomalies,
 * containers.crc_finding), placed among the imports in the order the full scan finds it. */
typedef struct mf_scan_mark {
    uint32_t before;        /* the number of imports found before it */
    uint32_t kind;          /* MF_SCAN_MARK_* */
    uint32_t anomalies;     /* MF_ZIP_ANOM_* of the member (MF_SCAN_MARK_ANOMALIES) */
    uint32_t member_len;
    const uint8_t *member;  /* points into the input */
    uint64_t offset;        /* file offset of the member's local header */
} mf_scan_mark;

enum {
    MF_SCAN_MARK_ANOMALIES = 1,  /* the member's local header or flags disagree with the directory */
    MF_SCAN_MARK_CRC = 2,        /* the member fails its CRC-32 */
};

typedef struct mf_scan_result {
    int answer;             /* MF_SCAN_DONE or MF_SCAN_BAIL_* */
    uint64_t at;            /* where the bail was decided (diagnostics) */
    uint32_t pickles;       /* over all streams */
    mf_vec streams;         /* mf_scan_stream */
    mf_vec imports;         /* mf_scan_import */
    mf_vec marks;           /* mf_scan_mark */
} mf_scan_result;

enum {
    MF_SCAN_NAME_PROTOBUF = 1u << 0,   /* the file is named like an ONNX / TF protobuf */
};

/* MF_SCAN_NAME_* of a file name (or path): what the full scan decides by name. */
unsigned mf_scan_name_flags(const uint8_t *name, size_t n);

/* Judge buf, a whole file (or the bytes handed to mfparse.scan), as the full scan would at the
 * top level. `name_flags`: MF_SCAN_NAME_*. The result (streams, imports) lives in `a`, and
 * member names point into buf. Returns out->answer. What the file holds is never an error of
 * the call (it is a bail); `err` is set only when `a` cannot hold the result, and the answer is
 * then a bail too. */
int mf_scan_quick(const uint8_t *buf, size_t len, unsigned name_flags, const mf_scan_tables *t, mf_arena *a,
                  mf_scan_result *out, mf_error *err);

/* CRC-32 (ISO-HDLC, as zip stores it) of n bytes, continuing crc. */
uint32_t mf_crc32(uint32_t crc, const uint8_t *p, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* MF_SCAN_H */
