/*
 * mf_pickle.h - a symbolic pickle interpreter: protocols 0-5, every opcode, executing nothing.
 *
 * GLOBAL / STACK_GLOBAL / INST produce a *reference* node naming (module, name); REDUCE,
 * NEWOBJ, NEWOBJ_EX, INST and OBJ produce *call* nodes; BUILD records the state on its target;
 * persistent ids produce PERSID nodes. Nothing is resolved, imported or called.
 *
 * Besides the value graph, the interpreter keeps an event log (every import, call, BUILD,
 * SETITEM(S)/APPEND(S) on a non-container, extension code, frame anomaly) with byte offsets,
 * which is what `mfparse scan` judges. The log survives an error: whatever ran before the
 * bad byte is still reported.
 */
#ifndef MF_PICKLE_H
#define MF_PICKLE_H

#include "mf_core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mf_pv_kind {
    MF_PV_NONE = 0,
    MF_PV_BOOL,
    MF_PV_INT,       /* fits in int64: u.i */
    MF_PV_BIGINT,    /* s/n: little-endian two's complement bytes, or decimal text (MF_PVF_DECIMAL) */
    MF_PV_FLOAT,
    MF_PV_STR,       /* s/n: UTF-8 bytes (pointing into the pickle, or decoded into the arena) */
    MF_PV_BYTES,
    MF_PV_BYTEARRAY,
    MF_PV_TUPLE,     /* items/n */
    MF_PV_LIST,
    MF_PV_DICT,      /* items holds 2*n pointers: key0, value0, key1, value1, ... */
    MF_PV_SET,
    MF_PV_FROZENSET,
    MF_PV_GLOBAL,    /* u.g.mod / u.g.name: STR nodes, or arbitrary nodes when MF_PVF_COMPUTED */
    MF_PV_CALL,      /* u.call: fn(args, **kwargs); opcode in `op` */
    MF_PV_PERSID,    /* u.pid: the persistent id object */
    MF_PV_EXT,       /* extension registry code in u.i (EXT1/2/4) */
    MF_PV_BUFFER,    /* out-of-band buffer (NEXT_BUFFER) */
    MF_PV_KIND_COUNT
} mf_pv_kind;

enum {
    MF_PVF_DECIMAL = 1u << 0,   /* BIGINT given as decimal text */
    MF_PVF_COMPUTED = 1u << 1,  /* GLOBAL whose module or name is not a literal string */
    MF_PVF_BUILT = 1u << 2,     /* received BUILD; state in `state` */
    MF_PVF_READONLY = 1u << 3,  /* READONLY_BUFFER applied */
    MF_PVF_SHARED = 1u << 4,    /* pushed again by GET/BINGET/LONG_BINGET or DUP: several places hold it */
};

typedef struct mf_pv mf_pv;
struct mf_pv {
    uint8_t kind;
    uint8_t flags;
    uint8_t op;         /* opcode byte that created the node */
    uint8_t pad;
    uint32_t n;         /* item count (containers; pairs for DICT) or byte length (STR/BYTES/BIGINT) */
    uint32_t cap;       /* item capacity of mutable containers */
    int32_t tag;        /* free for walkers (e.g. tensor index); -1 initially */
    uint64_t offset;    /* file offset of the opcode that created the node */
    union {
        int64_t i;
        double f;
        const uint8_t *s;
        mf_pv **items;
        struct {
            mf_pv *mod;
            mf_pv *name;
        } g;
        struct {
            mf_pv *fn;
            mf_pv *args;
            mf_pv *kwargs;
        } call;
        mf_pv *pid;
    } u;
    mf_pv *state;       /* BUILD state (last one) */
    mf_pv *extra;       /* items set/appended on a non-container (a DICT or LIST node) */
};

typedef enum mf_pkl_event_kind {
    MF_EV_GLOBAL = 1,   /* a: the GLOBAL node (GLOBAL, STACK_GLOBAL, INST) */
    MF_EV_CALL,         /* a: the CALL node (REDUCE, NEWOBJ, NEWOBJ_EX, INST, OBJ) */
    MF_EV_BUILD,        /* a: target, b: state */
    MF_EV_SETITEM,      /* a: target that is not a dict (SETITEM/SETITEMS) */
    MF_EV_APPEND,       /* a: target that is not a list (APPEND/APPENDS/ADDITEMS on non-set) */
    MF_EV_EXT,          /* a: the EXT node */
    MF_EV_PERSID,       /* a: the PERSID node */
    MF_EV_FRAME,        /* FRAME whose declared length disagrees with the opcodes (anomaly) */
    MF_EV_BUFFER,       /* out-of-band buffer use */
} mf_pkl_event_kind;

typedef struct mf_pkl_event {
    uint32_t kind;
    uint32_t pickle;    /* index of the stacked pickle (0 for the first) */
    uint64_t offset;
    mf_pv *a;
    mf_pv *b;
} mf_pkl_event;

typedef struct mf_pkl_memo_slot {
    uint64_t key;       /* key + 1; 0 = empty */
    mf_pv *value;
} mf_pkl_memo_slot;

typedef struct mf_pkl {
    mf_arena *arena;
    mf_error *err;
    /* results (valid after mf_pkl_load, also after a failed one) */
    mf_vec events;      /* mf_pkl_event */
    int protocol;       /* highest PROTO seen, -1 if none */
    uint32_t pickles;   /* number of mf_pkl_load calls */
    uint64_t opcodes;   /* opcodes executed, all pickles */
    /* limits (0 = none) */
    uint64_t max_opcodes;
    /* interpreter state (per load) */
    mf_pv **stack;
    size_t sp, stack_cap;
    size_t *marks;
    size_t nmarks, marks_cap;
    mf_pv **dense;              /* memo keys below dense_cap (the usual 0, 1, 2, ...) */
    size_t dense_cap;
    mf_pkl_memo_slot *memo;     /* other keys: open addressing */
    size_t memo_len, memo_cap;  /* memo_len = number of keys in both (MEMOIZE uses it) */
    mf_pv *small_ints[256];     /* shared nodes for BININT1 values (immutable, no offset needed) */
    mf_pv *none_node, *true_node, *false_node;
    /* statistics over all loads (`mfparse scan` flags resource abuse with them) */
    uint64_t memo_key_max;  /* largest memo index written by PUT/BINPUT/LONG_BINPUT/MEMOIZE, + 1 */
    size_t stack_max;       /* deepest object stack seen */
    size_t marks_max;       /* deepest MARK nesting seen */
    uint64_t shared_refs;   /* GETs/DUPs of nodes with children, BUILDs on shared nodes: while 0,
                               the value graph is a tree (nothing expands, no cycle) */
    /* pausing: formats that put raw bytes after a BUILD (joblib's arrays) */
    int pause_on_build;     /* set by the caller: return MF_PKL_PAUSED after every BUILD */
    int paused;             /* a load is paused; mf_pkl_resume continues it */
    uint64_t paused_frame_end; /* file offset where the FRAME open at the pause ends; UINT64_MAX if none */
    size_t max_stack;       /* limit on the object stack (0 = none): MF_ERR_LIMIT beyond it */
} mf_pkl;

/* Returned (with no error recorded) by mf_pkl_load / mf_pkl_resume when pause_on_build is set
 * and a BUILD ran: *consumed is the number of bytes read through the BUILD opcode. */
#define MF_PKL_PAUSED 100

void mf_pkl_init(mf_pkl *p, mf_arena *a, mf_error *err);

/* Interpret one pickle from buf (file offset `base`). On success *root is the value STOP
 * returned and *consumed the bytes read through STOP. Stacked pickles: call again on the rest. */
int mf_pkl_load(mf_pkl *p, const uint8_t *buf, size_t len, uint64_t base, mf_pv **root,
                size_t *consumed);

/* Continue a paused load: buf[0] is the next opcode (the caller skipped whatever raw bytes
 * follow the BUILD), base its file offset. Stack, marks and memo are those of the paused load.
 * A FRAME open at the pause goes on when nothing was skipped; skipping bytes that the frame
 * still covers is a frame anomaly (bytes hidden inside a frame). Same results as mf_pkl_load. */
int mf_pkl_resume(mf_pkl *p, const uint8_t *buf, size_t len, uint64_t base, mf_pv **root,
                  size_t *consumed);

/* Pointer -> uint64 map for walkers of the value graph (open addressing, arena storage). */
typedef struct mf_pv_map {
    const mf_pv **keys;
    uint64_t *vals;
    size_t cap;             /* power of two; 0 before the first insert */
    size_t len;
} mf_pv_map;

/* The value slot of `key`; inserted with value 0 and *created = 1 when absent. NULL (error
 * recorded at `at`) when the arena refuses to grow the table. */
uint64_t *mf_pv_map_slot(mf_pv_map *m, const mf_pv *key, mf_arena *a, mf_error *err, uint64_t at, int *created);
/* The value slot of `key`, or NULL when absent. */
uint64_t *mf_pv_map_find(const mf_pv_map *m, const mf_pv *key);

/* How large the value graph under `root` is when walked as a tree, as json.dumps, repr, a
 * recursive walker or a consumer that copies it per reference would walk it: a node reached
 * through k paths counts k times; a node reached again inside itself (a cycle) counts 1 there.
 * Each memo-shared node is expanded once (its count is memoized), so this costs O(graph),
 * never O(tree). Children of a node: container items (dict keys and values), a call's callable,
 * arguments and keyword arguments, a persistent id's object, a computed global's operands, and
 * any BUILD state or items set on it. */
typedef struct mf_pkl_expansion {
    uint64_t tree;          /* nodes of the tree expansion (saturates at UINT64_MAX) */
    uint64_t refs;          /* references of the graph, the root included: each memo-shared node's
                               contents count once, every later reference to it 1 (the size of the
                               value as shown with "same as" references; ~ the pickle's opcodes) */
    uint64_t at;            /* offset of the first node (post-order) whose expansion exceeds `limit`,
                               UINT64_MAX if none */
    uint64_t at_tree;       /* that node's expansion */
    int cyclic;             /* some node is reachable from itself */
} mf_pkl_expansion;

int mf_pkl_expansion_of(const mf_pv *root, uint64_t limit, mf_arena *a, mf_error *err, mf_pkl_expansion *out);

/* Helpers for walkers. */
int mf_pv_is_str(const mf_pv *v, const char *s);
/* For a non-computed GLOBAL node: compare module and name. */
int mf_pv_global_is(const mf_pv *g, const char *mod, const char *name);
/* The GLOBAL a CALL node calls (NULL when the callable is not a literal global). */
const mf_pv *mf_pv_call_global(const mf_pv *call);

#ifdef __cplusplus
}
#endif
#endif /* MF_PICKLE_H */
