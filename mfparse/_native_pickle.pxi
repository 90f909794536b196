# Included by _native.pyx: bindings over csrc/mf_pickle.c and csrc/mf_torch.c.

cdef extern from "mf_pickle.h" nogil:
    ctypedef struct mf_pv:
        uint8_t kind
        uint8_t flags
        uint8_t op
        uint32_t n
        int32_t tag
        uint64_t offset
        mf_pv *state
        mf_pv *extra
        # union members, as Cython sees them
        int64_t u_i "u.i"
        double u_f "u.f"
        const uint8_t *u_s "u.s"
        mf_pv **u_items "u.items"
        mf_pv *g_mod "u.g.mod"
        mf_pv *g_name "u.g.name"
        mf_pv *c_fn "u.call.fn"
        mf_pv *c_args "u.call.args"
        mf_pv *c_kwargs "u.call.kwargs"
        mf_pv *u_pid "u.pid"

    ctypedef struct mf_pkl_event:
        uint32_t kind
        uint32_t pickle
        uint64_t offset
        mf_pv *a
        mf_pv *b

    ctypedef struct mf_pkl:
        mf_vec events
        int protocol
        uint32_t pickles
        uint64_t opcodes
        uint64_t max_opcodes
        mf_pv **stack
        size_t sp
        uint64_t memo_key_max
        size_t stack_max
        size_t marks_max
        uint64_t shared_refs
        int pause_on_build
        int paused
        size_t max_stack

    ctypedef struct mf_pkl_expansion:
        uint64_t tree
        uint64_t refs
        uint64_t at
        uint64_t at_tree
        int cyclic

    int mf_pkl_expansion_of(const mf_pv *root, uint64_t limit, mf_arena *a, mf_error *err, mf_pkl_expansion *out)

    int MF_PKL_PAUSED
    void mf_pkl_init(mf_pkl *p, mf_arena *a, mf_error *err)
    int mf_pkl_load(mf_pkl *p, const uint8_t *buf, size_t len, uint64_t base, mf_pv **root,
                    size_t *consumed)
    int mf_pkl_resume(mf_pkl *p, const uint8_t *buf, size_t len, uint64_t base, mf_pv **root,
                      size_t *consumed)

cdef extern from "mf_torch.h" nogil:
    ctypedef struct mf_torch_storage:
        const uint8_t *key
        uint32_t key_len
        const uint8_t *location
        uint32_t location_len
        int dtype
        uint64_t numel
        uint64_t offset

    ctypedef struct mf_torch_tensor:
        int32_t storage
        int dtype
        uint32_t ndim
        int64_t *shape
        int64_t *stride
        int64_t storage_offset
        uint64_t numel
        uint64_t extent
        uint8_t kind
        uint8_t requires_grad
        uint8_t is_parameter
        uint8_t qscheme
        uint8_t contiguous
        uint64_t file_offset
        double q_scale
        int64_t q_zero_point
        int64_t q_axis
        int32_t q_scales
        int32_t q_zero_points
        const mf_pv *subclass
        const mf_pv *device
        uint64_t offset

    ctypedef struct mf_torch_entry:
        const char *path
        uint32_t path_len
        uint32_t depth
        uint32_t kind
        int32_t tensor
        const mf_pv *key
        const mf_pv *value
        const mf_pv *cls

    ctypedef struct mf_torch_result:
        mf_vec storages
        mf_vec tensors
        mf_vec entries

    int MF_TE_TENSOR
    int MF_TE_STORAGE
    int mf_torch_walk_ex(const mf_pv *root, int flavor, uint64_t input_len, int is_tree, mf_arena *a,
                         mf_torch_result *out, mf_error *err)
    int mf_torch_walk(const mf_pv *root, int flavor, uint64_t input_len, mf_arena *a, mf_torch_result *out,
                      mf_error *err)
    int mf_torch_legacy(mf_pkl *p, const uint8_t *buf, size_t len, mf_pv **main, mf_torch_result *out,
                        uint64_t **storage_data, mf_error *err)
    int mf_torch_resolve(mf_torch_result *r, const uint64_t *data_offset, const uint64_t *avail, mf_error *err)
    int mf_torch_zip_storages(const mf_torch_result *r, const mf_zip_entry *entries, size_t n_entries,
                              const uint8_t *prefix, size_t prefix_len, mf_arena *a, uint64_t *data_offset,
                              uint64_t *avail, int32_t *member, mf_error *err)


cdef bint _dotted_name(const mf_pv *v) noexcept:
    """A STR node spelling a dotted Python name: identifier characters (ASCII letters, digits,
    '_', or any non-ASCII byte) in non-empty parts that do not start with a digit."""
    cdef uint32_t i
    cdef uint8_t ch
    cdef bint start = True
    if v == NULL or v.kind != 5 or v.n == 0:
        return False
    for i in range(v.n):
        ch = v.u_s[i]
        if ch == 46:  # '.'
            if start:
                return False
            start = True
            continue
        if ch >= 128 or ch == 95 or (65 <= ch <= 90) or (97 <= ch <= 122):
            start = False
        elif 48 <= ch <= 57:
            if start:
                return False
        else:
            return False
    return not start


def pickle_probe(buf, size_t max_pickles=64, size_t max_stack=0):
    """Does interpreting buf (stacked pickles, up to the first error) import a dotted name?

    Returns 1 when it does, or when a limit (max_stack, the arena) was hit (the bytes need a
    closer look); 2 when it does not but the data ran out (more bytes could still import
    something: buf may be a prefix); 0 when it does not and the interpretation failed before
    the end. A cheap answer for bytes that may or may not be a pickle: no Python objects are
    made for the value graph or the events."""
    cdef const uint8_t[::1] view = buf
    cdef mf_arena arena
    cdef mf_pkl pkl
    cdef mf_error err
    cdef mf_pv *root = NULL
    cdef size_t pos = 0, used = 0, n = view.shape[0], k, i
    cdef mf_pkl_event *e
    cdef int found = 0
    if n == 0:
        return 2
    mf_arena_init(&arena, mf_arena_cap_for(n, 256, 64 << 20))
    clear_error(&err)
    mf_pkl_init(&pkl, &arena, &err)
    pkl.max_stack = max_stack
    try:
        for k in range(max_pickles):
            if pos >= n:
                break
            used = 0
            mf_pkl_load(&pkl, &view[0] + pos, n - pos, pos, &root, &used)
            e = <mf_pkl_event *>pkl.events.items
            for i in range(pkl.events.len):
                if e[i].kind == 1 and e[i].a != NULL and not (e[i].a.flags & 2) \
                        and _dotted_name(e[i].a.g_mod) and _dotted_name(e[i].a.g_name):
                    found = 1
                    break
            if err.code == MF_ERR_LIMIT or err.code == MF_ERR_NOMEM:  # a limit: worth a closer look
                found = 1
            if found or err.code:
                break
            pos += used
        if not found and (err.code == MF_ERR_TRUNCATED or (err.code == MF_OK and pos >= n)):
            found = 2  # ran out of data
    finally:
        mf_arena_free(&arena)
    return found


PV_KINDS = ("none", "bool", "int", "bigint", "float", "str", "bytes", "bytearray", "tuple", "list",
            "dict", "set", "frozenset", "global", "call", "persid", "ext", "buffer")
EVENT_KINDS = (None, "global", "call", "build", "setitem", "append", "ext", "persid", "frame", "buffer")
ENTRY_KINDS = (None, "dict", "list", "tuple", "set", "tensor", "storage", "scalar", "object", "module",
               "global", "ref")


cdef class PV:
    """A read-only view of one node of the symbolic value graph (kept alive by its parse)."""
    cdef mf_pv *p
    cdef readonly PickleParse owner

    @staticmethod
    cdef PV wrap(PickleParse owner, const mf_pv *p):
        if p == NULL:
            return None
        cdef PV v = PV.__new__(PV)
        v.p = <mf_pv *>p
        v.owner = owner
        return v

    @property
    def kind(self):
        return PV_KINDS[self.p.kind]

    @property
    def offset(self):
        return self.p.offset

    @property
    def op(self):
        """The opcode byte that made the node."""
        return self.p.op

    @property
    def flags(self):
        return self.p.flags

    @property
    def computed(self):
        """True for a global whose module or name was not a literal string."""
        return bool(self.p.flags & 2)

    @property
    def ident(self):
        """A stable identity for the node (same object reached twice -> same ident)."""
        return <size_t>self.p

    @property
    def n(self):
        return self.p.n

    @property
    def value(self):
        """Python value of a scalar (None/bool/int/float/str/bytes); for other kinds None."""
        cdef uint8_t k = self.p.kind
        if k == 0:
            return None
        if k == 1:
            return bool(self.p.u_i)
        if k == 2:
            return self.p.u_i
        if k == 3:
            raw = (<const char *>self.p.u_s)[:self.p.n]
            if self.p.flags & 1:
                return int(raw.rstrip(b"L").decode("ascii"))
            return int.from_bytes(raw, "little", signed=True)
        if k == 4:
            return self.p.u_f
        if k == 5:
            return (<const char *>self.p.u_s)[:self.p.n].decode("utf-8", "surrogatepass")
        if k == 6:
            return (<const char *>self.p.u_s)[:self.p.n]
        if k == 7:
            return bytearray((<const char *>self.p.u_s)[:self.p.n])
        if k == 16:
            return self.p.u_i
        return None

    @property
    def raw(self):
        """The bytes of a str, bytes, bytearray or bigint node as they are in the file (str:
        UTF-8 that may be invalid); None for other kinds."""
        if 5 <= self.p.kind <= 7 or self.p.kind == 3:
            return (<const char *>self.p.u_s)[:self.p.n]
        return None

    @property
    def items(self):
        """Tuple/list/set items as PVs; for a dict, (key, value) pairs."""
        cdef uint32_t i
        cdef uint8_t k = self.p.kind
        if k == 10:
            return [(PV.wrap(self.owner, self.p.u_items[2 * i]), PV.wrap(self.owner, self.p.u_items[2 * i + 1]))
                    for i in range(self.p.n)]
        if 8 <= k <= 12:
            return [PV.wrap(self.owner, self.p.u_items[i]) for i in range(self.p.n)]
        return []

    @property
    def module(self):
        """For a global: the module node (a str node unless computed)."""
        return PV.wrap(self.owner, self.p.g_mod) if self.p.kind == 13 else None

    @property
    def name(self):
        return PV.wrap(self.owner, self.p.g_name) if self.p.kind == 13 else None

    @property
    def qualname(self):
        """'module.name' for a literal global, else None."""
        if self.p.kind != 13 or (self.p.flags & 2):
            return None
        return text(self.p.g_mod.u_s, self.p.g_mod.n) + "." + text(self.p.g_name.u_s, self.p.g_name.n)

    @property
    def global_parts(self):
        """(module, name) for a literal global, else None."""
        if self.p.kind != 13 or (self.p.flags & 2):
            return None
        return ((<const char *>self.p.g_mod.u_s)[:self.p.g_mod.n].decode("utf-8", "surrogatepass"),
                (<const char *>self.p.g_name.u_s)[:self.p.g_name.n].decode("utf-8", "surrogatepass"))

    @property
    def fn(self):
        return PV.wrap(self.owner, self.p.c_fn) if self.p.kind == 14 else None

    @property
    def args(self):
        return PV.wrap(self.owner, self.p.c_args) if self.p.kind == 14 else None

    @property
    def kwargs(self):
        return PV.wrap(self.owner, self.p.c_kwargs) if self.p.kind == 14 else None

    @property
    def pid(self):
        return PV.wrap(self.owner, self.p.u_pid) if self.p.kind == 15 else None

    @property
    def state(self):
        return PV.wrap(self.owner, self.p.state)

    @property
    def extra(self):
        """Items set or appended on a non-container (a dict or list PV), or None."""
        return PV.wrap(self.owner, self.p.extra)

    def __repr__(self):
        return f"<PV {self.kind} @{self.p.offset}>"


cdef class PickleParse:
    """One symbolic interpretation session: an arena, the interpreter, and (for torch files)
    the walker's records. Buffers passed in are kept alive: nodes point into them."""
    cdef mf_arena arena
    cdef mf_pkl pkl
    cdef mf_error err
    cdef mf_torch_result torch
    cdef uint64_t *legacy_data
    cdef list buffers
    cdef readonly object error  # the exception of a failed load, for callers that go on
    cdef readonly uint64_t size_hint

    def __cinit__(self, uint64_t size_hint=0, size_t max_stack=0):
        self.size_hint = size_hint
        # bookkeeping may reach ~200 bytes per input byte for hostile inputs; real pickles use far less
        mf_arena_init(&self.arena, mf_arena_cap_for(size_hint, 256, 64 << 20))
        clear_error(&self.err)
        mf_pkl_init(&self.pkl, &self.arena, &self.err)
        self.pkl.max_stack = max_stack
        memset(&self.torch, 0, sizeof(mf_torch_result))
        self.legacy_data = NULL
        self.buffers = []
        self.error = None

    def __dealloc__(self):
        mf_arena_free(&self.arena)

    def load(self, buf, uint64_t base=0, size_t start=0, bint raise_errors=True, bint pause_on_build=False):
        """Interpret the pickle at buf[start:]; base is the file offset of buf[0].

        Returns (root PV, bytes consumed). With raise_errors=False a failure returns
        (None, consumed) and leaves the exception in .error (events stay readable).
        With pause_on_build, the load stops after every BUILD: it returns (None, consumed
        through the BUILD) with .paused set; resume() continues it.
        """
        self.pkl.pause_on_build = pause_on_build
        return self._run(buf, base, start, raise_errors, False)

    def resume(self, buf, uint64_t base=0, size_t start=0, bint raise_errors=True):
        """Continue a paused load at buf[start:] (the caller skipped the bytes it consumed)."""
        return self._run(buf, base, start, raise_errors, True)

    cdef _run(self, buf, uint64_t base, size_t start, bint raise_errors, bint resume):
        cdef const uint8_t[::1] view = buf
        cdef mf_pv *root = NULL
        cdef size_t consumed = 0
        cdef int rc
        if start > <size_t>view.shape[0]:
            raise ValueError("start past the end of the buffer")
        self.buffers.append(buf)
        clear_error(&self.err)
        self.error = None
        cdef const uint8_t *p = &view[0] + start if view.shape[0] else NULL
        cdef size_t n = view.shape[0] - start
        cdef uint64_t at = base + start
        with nogil:
            if resume:
                rc = mf_pkl_resume(&self.pkl, p, n, at, &root, &consumed)
            else:
                rc = mf_pkl_load(&self.pkl, p, n, at, &root, &consumed)
        if rc == MF_PKL_PAUSED and not self.err.code:
            return None, consumed
        if self.err.code:
            exc = make_error(&self.err)
            self.error = exc
            if raise_errors:
                raise exc
            return None, consumed
        return PV.wrap(self, root), consumed

    @property
    def protocol(self):
        return self.pkl.protocol

    @property
    def opcodes(self):
        return self.pkl.opcodes

    @property
    def pickles(self):
        return self.pkl.pickles

    @property
    def paused(self):
        """True while a load stopped by pause_on_build waits for resume()."""
        return bool(self.pkl.paused)

    def top(self):
        """The PV on top of the object stack (the BUILD target of a paused load), or None."""
        if self.pkl.sp == 0:
            return None
        return PV.wrap(self, self.pkl.stack[self.pkl.sp - 1])

    @property
    def stats(self):
        """{'memo_key_max', 'stack_max', 'marks_max', 'shared_refs'} over every load of this
        session (shared_refs 0: every value graph is a tree, see expansion())."""
        return {"memo_key_max": self.pkl.memo_key_max, "stack_max": self.pkl.stack_max,
                "marks_max": self.pkl.marks_max, "shared_refs": self.pkl.shared_refs}

    def expansion(self, PV root, uint64_t limit=<uint64_t>-1):
        """How large root's value graph is when walked as a tree (json.dumps, repr, a recursive
        walker): {'tree': nodes of the expansion (saturating at 2**64 - 1), 'refs': references
        of the graph (a memo-shared node's contents once, each later reference 1: about the
        pickle's opcode count), 'cyclic': a node reaches itself, 'at': offset of the first node
        (post-order) whose expansion exceeds limit or None, 'at_tree': its expansion}.
        Costs O(refs): each memo-shared node is expanded once."""
        cdef mf_arena tmp
        cdef mf_pkl_expansion ex
        cdef mf_error err
        clear_error(&err)
        mf_arena_init(&tmp, mf_arena_cap_for(self.size_hint, 128, 16 << 20))
        try:
            mf_pkl_expansion_of(root.p, limit, &tmp, &err, &ex)
        finally:
            mf_arena_free(&tmp)
        raise_error(&err)
        return {"tree": ex.tree, "refs": ex.refs, "cyclic": bool(ex.cyclic),
                "at": None if ex.at == <uint64_t>-1 else ex.at, "at_tree": ex.at_tree}

    def events(self, kinds=None):
        """[(kind, pickle index, offset, PV a, PV b)] in execution order; with kinds (a set of
        kind names), only the events of those kinds."""
        cdef size_t i
        cdef mf_pkl_event *e = <mf_pkl_event *>self.pkl.events.items
        if kinds is None:
            return [(EVENT_KINDS[e[i].kind], e[i].pickle, e[i].offset, PV.wrap(self, e[i].a),
                     PV.wrap(self, e[i].b)) for i in range(self.pkl.events.len)]
        cdef bint want[16]
        cdef int k
        for k in range(16):
            want[k] = k < len(EVENT_KINDS) and EVENT_KINDS[k] in kinds
        return [(EVENT_KINDS[e[i].kind], e[i].pickle, e[i].offset, PV.wrap(self, e[i].a), PV.wrap(self, e[i].b))
                for i in range(self.pkl.events.len) if e[i].kind < 16 and want[e[i].kind]]

    def event_counts(self):
        """{kind: number of events}."""
        cdef size_t i
        cdef mf_pkl_event *e = <mf_pkl_event *>self.pkl.events.items
        counts = [0] * len(EVENT_KINDS)
        for i in range(self.pkl.events.len):
            counts[e[i].kind] += 1
        return {EVENT_KINDS[k]: counts[k] for k in range(1, len(EVENT_KINDS)) if counts[k]}

    def call_groups(self):
        """Call events grouped by the node they call: [(callee PV, number of calls, pickle index
        and offset of the first call)] in order of first call."""
        cdef size_t i
        cdef mf_pkl_event *e = <mf_pkl_event *>self.pkl.events.items
        cdef dict groups = {}
        cdef size_t key
        for i in range(self.pkl.events.len):
            if e[i].kind != 2 or e[i].a == NULL:
                continue
            key = <size_t>e[i].a.c_fn
            g = groups.get(key)
            if g is None:
                groups[key] = [i, 1]
            else:
                g[1] += 1
        out = []
        for key, g in groups.items():
            i = g[0]
            out.append((PV.wrap(self, e[i].a.c_fn), g[1], e[i].pickle, e[i].offset))
        return out

    def calls_of(self, PV fn):
        """[(pickle index, offset, call PV)] of the calls whose callee is the node fn."""
        cdef size_t i
        cdef mf_pkl_event *e = <mf_pkl_event *>self.pkl.events.items
        return [(e[i].pickle, e[i].offset, PV.wrap(self, e[i].a)) for i in range(self.pkl.events.len)
                if e[i].kind == 2 and e[i].a != NULL and e[i].a.c_fn == fn.p]

    # ---- torch -----------------------------------------------------------------------------

    def torch_walk(self, PV root, int flavor=0):
        """Walk a torch pickle's root (flavor 0: zip file, 1: legacy)."""
        clear_error(&self.err)
        cdef mf_pv *r = root.p
        cdef uint64_t hint = self.size_hint
        cdef bint tree = self.pkl.shared_refs == 0
        with nogil:
            mf_torch_walk_ex(r, flavor, hint, tree, &self.arena, &self.torch, &self.err)
        raise_error(&self.err)

    def torch_legacy(self, file_buf, window=None):
        """Run the stacked pickles of a legacy torch file; returns the main pickle's root.
        window: a sparse window over file_buf (mfparse.formats.base.parse_windows)."""
        cdef const uint8_t[::1] view = file_buf
        cdef mf_pv *root = NULL
        self.buffers.append(file_buf)
        clear_error(&self.err)
        self.err.win = window_of(window)
        mf_torch_legacy(&self.pkl, &view[0] if view.shape[0] else NULL, view.shape[0], &root, &self.torch,
                        &self.legacy_data, &self.err)
        raise_error(&self.err)
        return PV.wrap(self, root)

    def torch_storages(self):
        """[(key, location, dtype code, numel, pickle offset, legacy data offset | None)]"""
        cdef size_t i
        cdef mf_torch_storage *s = <mf_torch_storage *>self.torch.storages.items
        out = []
        for i in range(self.torch.storages.len):
            data = None
            if self.legacy_data != NULL and self.legacy_data[i] != <uint64_t>-1:
                data = self.legacy_data[i]
            out.append((text(s[i].key, s[i].key_len), text(s[i].location, s[i].location_len), s[i].dtype,
                        s[i].numel, s[i].offset, data))
        return out

    def torch_infos(self, ZipDirectory zipdir, bytes prefix, info_cls, empty):
        """TensorInfos (info_cls) for every tensor and bare storage, in walk order.

        zipdir/prefix: the archive whose "<prefix><key>" members hold the storages (prefix is the
        record folder, e.g. b"archive/data/");
        zipdir None: a legacy file (storage bytes located by torch_legacy). Storage and tensor
        bounds are checked in C (mf_torch_resolve) before anything is built.
        """
        cdef size_t ns = self.torch.storages.len, i
        cdef mf_torch_storage *st = <mf_torch_storage *>self.torch.storages.items
        cdef mf_torch_entry *e = <mf_torch_entry *>self.torch.entries.items
        cdef mf_torch_tensor *t
        cdef uint64_t *data_offset
        cdef uint64_t *avail
        cdef int32_t *member
        cdef mf_zip_entry *ze
        clear_error(&self.err)
        data_offset = <uint64_t *>mf_arena_calloc(&self.arena, ns + 1, sizeof(uint64_t), &self.err, 0)
        avail = <uint64_t *>mf_arena_calloc(&self.arena, ns + 1, sizeof(uint64_t), &self.err, 0)
        member = <int32_t *>mf_arena_calloc(&self.arena, ns + 1, sizeof(int32_t), &self.err, 0)
        raise_error(&self.err)
        ids = []
        if zipdir is not None:
            mf_torch_zip_storages(&self.torch, zipdir.entries, zipdir.n, prefix, len(prefix), &self.arena,
                                  data_offset, avail, member, &self.err)
            raise_error(&self.err)
            for i in range(ns):
                ze = &zipdir.entries[member[i]]
                ids.append((<const char *>ze.name)[:ze.name_len].decode("utf-8", "replace"))
        else:
            if self.legacy_data == NULL and ns:
                raise ValueError("torch_legacy() has not run")
            for i in range(ns):
                data_offset[i] = self.legacy_data[i]
                avail[i] = <uint64_t>-1
                ids.append(text(st[i].key, st[i].key_len))
        mf_torch_resolve(&self.torch, data_offset, avail, &self.err)
        raise_error(&self.err)
        from types import MappingProxyType
        proxies = {}
        for i in range(ns):
            loc = text(st[i].location, st[i].location_len)
            if loc not in proxies:
                proxies[loc] = MappingProxyType({"device": loc})
        locations = [proxies[text(st[i].location, st[i].location_len)] for i in range(ns)]
        names = DTYPE_NAMES
        bits = DTYPE_BITS
        out = []
        new = tuple.__new__
        cdef ShapeCache shapes = ShapeCache()
        cdef IntCache sizes = IntCache()
        for i in range(self.torch.entries.len):
            if e[i].kind == MF_TE_TENSOR:
                out.append(self._tensor_info(e[i].tensor, text(<const uint8_t *>e[i].path, e[i].path_len),
                                             ids, locations, names, bits, info_cls, empty, data_offset,
                                             shapes, sizes))
            elif e[i].kind == MF_TE_STORAGE:
                j = e[i].tensor
                nbytes = st[j].numel * bits[st[j].dtype] // 8
                out.append(new(info_cls, (text(<const uint8_t *>e[i].path, e[i].path_len),
                                          names[st[j].dtype], (st[j].numel,), nbytes,
                                          None if data_offset[j] == <uint64_t>-1 else data_offset[j], ids[j],
                                          None, {"device": locations[j]["device"], "storage_object": True},
                                          None)))
        return out

    cdef _tensor_info(self, int32_t ti, str name, list ids, list locations, list names, list bits, info_cls, empty,
                      uint64_t *data_offset, ShapeCache shapes, IntCache sizes):
        cdef mf_torch_tensor *t = &(<mf_torch_tensor *>self.torch.tensors.items)[ti]
        cdef uint32_t d
        shape = shapes.get(t.shape, t.ndim)
        stride = None if t.contiguous else i64_tuple(t.stride, t.ndim)
        if t.storage >= 0:
            sid = ids[t.storage]
            if (t.kind == 0 and t.device == NULL and not t.requires_grad and not t.is_parameter
                    and t.subclass == NULL and data_offset[t.storage] != <uint64_t>-1):
                # the common case: only the device; one shared read-only mapping per storage
                # location; nothing in the record can refer back to it
                # (views with zero strides can declare more elements than 64-bit byte counts hold)
                nbytes = (sizes.get((t.numel * mf_dtype_bits(t.dtype) + 7) // 8) if t.numel < (<uint64_t>1 << 56)
                          else (t.numel * bits[t.dtype] + 7) // 8)
                return new_info8(info_cls, name, names[t.dtype], shape, nbytes, t.file_offset, sid, stride,
                                 locations[t.storage])
            extras = {"device": locations[t.storage]["device"]}
            if data_offset[t.storage] == <uint64_t>-1:
                extras["storage_offset"] = t.storage_offset
        else:
            sid = None
            extras = {"device": "meta"}
        if t.device != NULL:
            dev = PV.wrap(self, t.device).value
            extras["device"] = dev.decode("latin-1") if isinstance(dev, bytes) else str(dev)
        if t.requires_grad:
            extras["requires_grad"] = True
        if t.is_parameter:
            extras["parameter"] = True
        if t.subclass != NULL:
            extras["subclass"] = PV.wrap(self, t.subclass).qualname or "?"
        if t.kind == 1:
            q = {"qscheme": ("?", "per_tensor_affine", "per_channel_affine", "per_channel_affine_float_qparams")[t.qscheme]}
            if t.qscheme == 1:
                q["scale"] = t.q_scale
                q["zero_point"] = t.q_zero_point
            else:
                q["axis"] = t.q_axis
                q["scales"] = self._tensor_info(t.q_scales, name + ".q_scales", ids, locations, names, bits,
                                                info_cls, empty, data_offset, shapes, sizes)
                q["zero_points"] = self._tensor_info(t.q_zero_points, name + ".q_zero_points", ids, locations,
                                                     names, bits, info_cls, empty, data_offset, shapes, sizes)
            extras["quantization"] = q
        return tuple.__new__(info_cls, (name, names[t.dtype], shape, (t.numel * bits[t.dtype] + 7) // 8,
                                        None if t.file_offset == <uint64_t>-1 else t.file_offset, sid, stride,
                                        extras or empty, None))

    def torch_storage_sizes(self):
        """[(key, dtype code, numel, pickle offset)] of the walked storages."""
        cdef size_t i
        cdef mf_torch_storage *s = <mf_torch_storage *>self.torch.storages.items
        return [(text(s[i].key, s[i].key_len), s[i].dtype, s[i].numel, s[i].offset)
                for i in range(self.torch.storages.len)]

    def torch_extents(self):
        """[(storage index, dtype code, extent in elements, pickle offset)] of the walked tensors."""
        cdef size_t i
        cdef mf_torch_tensor *t = <mf_torch_tensor *>self.torch.tensors.items
        return [(t[i].storage, t[i].dtype, t[i].extent, t[i].offset) for i in range(self.torch.tensors.len)]

    def torch_listing(self):
        """[(name, kind, index)] for every tensor or bare storage entry, in walk order."""
        cdef size_t i
        cdef mf_torch_entry *e = <mf_torch_entry *>self.torch.entries.items
        out = []
        for i in range(self.torch.entries.len):
            if e[i].kind == MF_TE_TENSOR or e[i].kind == MF_TE_STORAGE:
                out.append((e[i].path[:e[i].path_len].decode("utf-8", "backslashreplace"),
                            ENTRY_KINDS[e[i].kind], e[i].tensor))
        return out

    def torch_entries(self):
        """[(path, depth, kind, tensor index, key PV|None, value PV, cls PV|None)] in pre-order."""
        cdef size_t i
        cdef mf_torch_entry *e = <mf_torch_entry *>self.torch.entries.items
        return [(e[i].path[:e[i].path_len].decode("utf-8", "backslashreplace"), e[i].depth, ENTRY_KINDS[e[i].kind],
                 e[i].tensor, PV.wrap(self, e[i].key), PV.wrap(self, e[i].value), PV.wrap(self, e[i].cls))
                for i in range(self.torch.entries.len)]
