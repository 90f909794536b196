"""Judging pickle streams from the symbolic interpreter's event log.

A stream is interpreted pickle after pickle (stacked pickles: legacy torch files hold five),
every import, call, BUILD and item-set the C interpreter logged is judged against the policy,
and a stream that fails part-way is judged on what ran before the failure and reported as
not read to its end. Nothing is executed and nothing named is imported.

Formats that put raw bytes between pickles are followed: the storages after a legacy torch
file's fifth pickle, and joblib's array buffers after each NumpyArrayWrapper BUILD (the
interpreter pauses after BUILD, the bytes are skipped, the same pickle resumes).
"""

from __future__ import annotations

from mfparse import _native, dtypes
from mfparse.errors import MFParseError, ResourceLimitError, UnsupportedFormatError
from mfparse.scan import policy
from mfparse.scan.report import Context, Where

# every byte that is a pickle opcode: a stream whose first byte is not one is not a pickle
OPCODES = frozenset(
    b"().012BCFGIJKLMNPQRSTUVX]abcdeghijlopqrstu}\x80\x81\x82\x83\x84\x85\x86\x87\x88\x89\x8a\x8b\x8c"
    b"\x8d\x8e\x8f\x90\x91\x92\x93\x94\x95\x96\x97\x98"
)

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
JOBLIB_WRAPPERS = ("numpy_pickle.NumpyArrayWrapper", "numpy_pickle_compat.NDArrayWrapper",
                   "numpy_pickle_compat.ZNDArrayWrapper")
JOBLIB_ARRAY = ("joblib.numpy_pickle", "NumpyArrayWrapper")
# callables whose first argument is itself a serialized payload worth scanning
NESTED_LOADERS = frozenset(
    [
        "pickle.loads", "_pickle.loads", "cPickle.loads", "dill.loads", "cloudpickle.loads", "numpy.loads",
        "torch.storage._load_from_bytes", "joblib.numpy_pickle.loads",
    ]
)
# constructors of the allowlist whose instances may receive BUILD (what weights_only permits)
_BUILD_OK = frozenset(["collections.OrderedDict", "collections.Counter"]) | policy.NUMPY_ALLOWED
# ... and SETITEM (their __setitem__ stores an item)
_SETITEM_OK = frozenset(["collections.OrderedDict", "collections.Counter"])
_TENSORISH = policy.TENSOR_REBUILD | {"torch.Tensor", "torch.nn.parameter.Parameter"}
# calls whose arguments are looked at (allocation bombs, codecs, nested payloads)
_BYTEARRAY = frozenset(["builtins.bytearray"])
_CODECS = frozenset(["_codecs.encode"])
_RECONSTRUCT = frozenset(["numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct"])
_ARG_CHECKED = _BYTEARRAY | _CODECS | _RECONSTRUCT | NESTED_LOADERS
# the event kinds judged one by one (calls are judged per callee)
JUDGED = frozenset(["global", "build", "setitem", "append", "ext", "frame", "buffer"])

RESOURCE_MEMO_INDEX = 1 << 24   # CPython's C unpickler sizes its memo array by the largest index
RESOURCE_MARKS = 5000           # pickle.dumps cannot nest containers this deep (recursion limit)
MAX_STACK = 1 << 26             # values on the pickle stack at once: more is a stack blow-up
ALLOC_BOMB = 1 << 24            # a constructor asked for more than this many bytes
# expansion bombs: shared references (memo GETs) that make a value of a few objects a tree of
# billions. A finding when the tree expansion exceeds both EXPANSION_NODES (json.dumps or a
# recursive walk takes seconds and gigabytes beyond it) and EXPANSION_RATIO x the graph's own
# references (each shared object's contents once, each further reference 1, about the pickle's
# opcode count): a reference to a shared object of k nodes costs the file a 2-5 byte GET and
# expands to k, so benign sharing (a record, a config, a tensor repeated) grows the tree by the
# size of the shared object; only sharing of sharing (a node holding shared nodes that hold
# shared nodes) multiplies, and a bomb's ratio grows exponentially with its depth.
EXPANSION_NODES = 1 << 24
EXPANSION_RATIO = 1000


class StreamResult:
    """What scan_stream saw: whether the bytes were judged as a pickle stream, the roots of the
    pickles that reached STOP, the parse (for walkers) and how far the stream was read."""

    __slots__ = ("judged", "roots", "parse", "end", "error", "evidence", "events")

    def __init__(self):
        self.judged = False
        self.roots = []
        self.parse = None
        self.end = 0
        self.error = None
        self.evidence = False
        self.events = None


def _text(pv):
    """(text, valid) of a str node: UTF-8 decoded as CPython decodes it; invalid UTF-8 (which
    makes CPython's unpickler fail) comes back backslash-escaped with valid False."""
    raw = pv.raw
    try:
        return raw.decode("utf-8", "surrogatepass"), True
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace"), False


def describe(pv) -> str:
    """A short description of a value node for messages."""
    if pv is None:
        return "nothing"
    k = pv.kind
    if k == "global":
        parts = _global_parts(pv)
        return f"{parts[0]}.{parts[1]}" if parts is not None else "a computed global"
    if k == "call":
        fn = pv.fn
        return f"the result of calling {describe(fn)}"
    if k in ("str", "bytes", "int", "bool", "none", "float", "bigint"):
        v = _text(pv)[0] if k == "str" else pv.value
        r = repr(v)
        return r if len(r) <= 60 else r[:57] + "..."
    return f"a {k}"


def _literal_str(pv):
    """The text of a str node, or of a bytes node decoded as UTF-8 (how torch.load decodes
    protocol-0/1 strings); None for anything else."""
    if pv is None:
        return None
    if pv.kind == "str":
        return _text(pv)[0]
    if pv.kind == "bytes":
        return pv.raw.decode("utf-8", "backslashreplace")
    return None


def _global_parts(g, with_validity=False):
    """(module, name) of a literal global (None when computed); with_validity adds whether both
    were valid UTF-8."""
    if g is None or g.kind != "global" or g.computed:
        return None
    try:
        parts = g.global_parts  # the interpreter checks UTF-8 of str nodes: this rarely fails
        return (parts[0], parts[1], True) if with_validity else parts
    except UnicodeDecodeError:
        pass
    m, mok = _text(g.module)
    n, nok = _text(g.name)
    return (m, n, mok and nok) if with_validity else (m, n)


def _identifier_import(pv) -> bool:
    if pv.kind != "global":
        return False
    parts = _global_parts(pv)
    if parts is None:
        return False
    return policy.is_dotted_identifier(parts[0]) and policy.is_dotted_identifier(parts[1])


def _int_value(pv):
    if pv is not None and pv.kind in ("int", "bigint", "bool"):
        return int(pv.value)
    return None


def _int_tuple(pv):
    if pv is None or pv.kind not in ("tuple", "list"):
        return None
    out = []
    for it in pv.items:
        v = _int_value(it)
        if v is None:
            return None
        out.append(v)
    return tuple(out)


def _callee_qualname(call) -> str | None:
    parts = _global_parts(call.fn)
    return None if parts is None else f"{parts[0]}.{parts[1]}"


def _callee_py3(call) -> tuple[str, str] | None:
    """(module, name) of the global a call calls, as Python 3 names; None when computed."""
    parts = _global_parts(call.fn)
    return None if parts is None else policy.py3_name(*parts)


def _args(call) -> list:
    a = call.args
    if a is None or a.kind != "tuple":
        return []
    return a.items


class Judge:
    """Judges the event log of one parse into findings on a Context."""

    def __init__(self, ctx: Context, where: Where, torchscript: bool = False, torch_stream: bool = False):
        self.ctx = ctx
        self.where = where
        self.ts = torchscript
        self.torch_stream = torch_stream
        self.cache: dict = {}
        # a joblib file read as joblib.load reads it: its array wrappers were followed (raw
        # bytes skipped, object arrays scanned as the pickles they are), so the wrapper class
        # itself (a plain attribute holder) is not a finding
        self.joblib = False

    def finding(self, severity, why, *, pickle=None, offset=None, module=None, qualname=None, kind="import",
                count=1):
        self.ctx.finding(severity, why, self.where, pickle=pickle, offset=offset, module=module,
                         qualname=qualname, kind=kind, count=count)

    def events(self, parse, events, nested_scan=None) -> None:
        """Judge a parse: `events` are its events of the kinds in JUDGED (calls are judged per
        callee through parse.call_groups(), so a million tensor rebuilds cost one look-up)."""
        for kind, pk, off, a, b in events:
            if kind == "global":
                self.import_(a, pk, off)
            elif kind == "build":
                self.build(a, b, pk, off)
            elif kind == "setitem":
                self.setitem(a, pk, off)
            elif kind == "append":
                self.append(a, pk, off)
            elif kind == "ext":
                self.finding("suspicious", f"extension code {a.value} (EXT opcode): CPython imports whatever "
                             "copyreg's extension registry maps it to", pickle=pk, offset=off, kind="ext")
            elif kind == "frame":
                self.finding("suspicious", "FRAME whose declared length disagrees with the opcodes it holds: "
                             "bytes a frame-based reader would skip are executed", pickle=pk, offset=off,
                             kind="frame")
            elif kind == "buffer":
                self.ctx.note("pickle uses out-of-band buffers (NEXT_BUFFER): the loader supplies them")
        for fn, count, pk, off in parse.call_groups():
            self.callee(parse, fn, count, pk, off, nested_scan)
        if not self.torch_stream and parse.event_counts().get("persid"):
            self.ctx.note("pickle uses persistent ids: only the loader's persistent_load gives them meaning")

    # ---- imports ----------------------------------------------------------------------------

    def import_(self, g, pk, off) -> None:
        parts = _global_parts(g, with_validity=True)
        if parts is not None and not parts[2]:
            self.finding("suspicious", "GLOBAL whose module or name is not valid UTF-8 (CPython fails to decode "
                         "it)", pickle=pk, offset=off, module=parts[0], qualname=parts[1], kind="import")
        if parts is None:
            mod, name = g.module, g.name
            ms, ns = _literal_str(mod), _literal_str(name)
            if ms is not None and ns is not None:
                parts = (ms, ns)
            else:
                computed = [x for x in (mod, name) if x is not None and x.kind in ("call", "global", "persid", "ext")]
                if computed:
                    self.finding("dangerous", "STACK_GLOBAL operand computed at load time ("
                                 + " and ".join(describe(x) for x in computed)
                                 + "): the unpickler imports whatever that evaluates to",
                                 pickle=pk, offset=off, kind="computed")
                else:
                    self.finding("suspicious", f"STACK_GLOBAL with non-string operands ({describe(mod)}, "
                                 f"{describe(name)}): CPython refuses it", pickle=pk, offset=off, kind="computed")
                return
        module, name = parts[0], parts[1]
        self.ctx.saw_global(f"{module}.{name}")
        if self.joblib and (module, name) == JOBLIB_ARRAY:
            return
        key = (module, name)
        verdict = self.cache.get(key)
        if verdict is None:
            verdict = self.cache[key] = policy.judge_global(module, name, self.ts)
        sev, why = verdict
        if sev is not None:
            self.finding(sev, why, pickle=pk, offset=off, module=module, qualname=name, kind="import")

    # ---- calls ------------------------------------------------------------------------------

    def callee(self, parse, fn, count, pk, off, nested_scan) -> None:
        """Judge every call of one callee node."""
        k = fn.kind
        if k == "call":
            self.finding("dangerous", f"calls {describe(fn)}: a value computed at load time is used as a function",
                         pickle=pk, offset=off, kind="call", count=count)
            return
        if k == "ext":
            self.finding("suspicious", "calls an object named by an extension code", pickle=pk, offset=off,
                         kind="call", count=count)
            return
        if k != "global":
            return
        parts = _global_parts(fn)
        if parts is None:
            return  # computed: reported at the import
        m3, n3 = policy.py3_name(*parts)
        q3 = f"{m3}.{n3}"
        if q3 not in _ARG_CHECKED:
            return
        for cpk, coff, c in parse.calls_of(fn):
            self.call_args(q3, c, cpk, coff, nested_scan)

    def call_args(self, q, c, pk, off, nested_scan) -> None:
        args = _args(c)
        if not args:
            return
        if q in _BYTEARRAY:
            n = _int_value(args[0])
            if n is not None and n >= ALLOC_BOMB:
                self.finding("dangerous", f"bytearray({n}) allocates {n} bytes at load time (a memory bomb)",
                             pickle=pk, offset=off, module="builtins", qualname="bytearray", kind="resource")
        elif q in _CODECS:
            if len(args) < 2:
                return
            enc = _literal_str(args[1])
            if enc is None or enc.lower() not in policy.SAFE_CODECS:
                self.finding("suspicious", f"_codecs.encode with codec {describe(args[1])}: torch and numpy only "
                             "use latin1", pickle=pk, offset=off, module="_codecs", qualname="encode", kind="call")
        elif q in _RECONSTRUCT:
            if len(args) < 2:
                return
            shape = _int_tuple(args[1])
            total = 1
            for d in shape or ():
                total *= max(d, 0)
            if shape is None or total >= ALLOC_BOMB:
                self.finding("dangerous", f"numpy _reconstruct with shape {describe(args[1])}: allocates the array "
                             "before its state arrives (a memory bomb)", pickle=pk, offset=off,
                             module=q.rsplit(".", 1)[0], qualname="_reconstruct", kind="resource")
        elif q in NESTED_LOADERS and nested_scan is not None and args[0].kind in ("bytes", "bytearray"):
            nested_scan(args[0], q, pk, off)

    # ---- BUILD / SETITEM / APPEND -----------------------------------------------------------

    def build(self, target, state, pk, off) -> None:
        k = target.kind
        if k == "global":
            name = describe(target)
            parts = _global_parts(target)
            self.finding("dangerous", f"BUILD sets attributes on {name} itself (a class, function or module): "
                         "the state can replace its __code__, __globals__ or module attributes", pickle=pk,
                         offset=off, module=parts[0] if parts else None, qualname=parts[1] if parts else None,
                         kind="build")
        elif k == "call":
            py3 = _callee_py3(target)
            if py3 is None:
                fn = target.fn
                if fn is not None and fn.kind == "call":
                    self.finding("dangerous", f"BUILD on {describe(target)}", pickle=pk, offset=off, kind="build")
                return
            m3, n3 = py3
            q3 = f"{m3}.{n3}"
            if q3 in _BUILD_OK:
                return
            if self.ts and (q3 in policy.TORCHSCRIPT_ALLOWED or m3 == "__torch__" or m3.startswith("__torch__.")):
                return
            if q3 in _TENSORISH:
                self.finding("suspicious", f"BUILD on a tensor made by {q3}: torch calls Tensor.set_(...) or "
                             "__setstate__ with the state, which can point the tensor anywhere in its storage",
                             pickle=pk, offset=off, module=m3, qualname=n3, kind="build")
            elif q3 in policy.ALLOWED:
                self.finding("suspicious", f"BUILD on the result of {q3}: torch and numpy never write this",
                             pickle=pk, offset=off, module=m3, qualname=n3, kind="build")
        elif k == "persid" and not self.torch_stream:
            self.finding("suspicious", "BUILD on a persistent object", pickle=pk, offset=off, kind="build")
        elif k == "persid":
            self.finding("dangerous", "BUILD on a storage: sets attributes of a torch storage object",
                         pickle=pk, offset=off, kind="build")

    def setitem(self, target, pk, off) -> None:
        k = target.kind
        if k == "call":
            py3 = _callee_py3(target)
            if py3 is None:
                return
            m3, n3 = py3
            q3 = f"{m3}.{n3}"
            if q3 in _SETITEM_OK:
                return
            if q3 in _TENSORISH:
                self.finding("dangerous", f"SETITEM aimed at a tensor made by {q3}: tensor.__setitem__ writes into "
                             "its storage (out of bounds with a crafted view)", pickle=pk, offset=off, module=m3,
                             qualname=n3, kind="setitem")
            elif q3 in policy.ALLOWED:
                self.finding("suspicious", f"SETITEM on the result of {q3}", pickle=pk, offset=off, module=m3,
                             qualname=n3, kind="setitem")
        elif k == "persid":
            self.finding("dangerous", "SETITEM aimed at a storage: writes into its memory", pickle=pk, offset=off,
                         kind="setitem")
        elif k == "global":
            self.finding("suspicious", f"SETITEM on {describe(target)} itself", pickle=pk, offset=off,
                         kind="setitem")
        elif k == "list":
            self.finding("suspicious", "SETITEM on a list: CPython's pickler never writes this", pickle=pk,
                         offset=off, kind="setitem")

    def append(self, target, pk, off) -> None:
        k = target.kind
        if k == "call":
            py3 = _callee_py3(target)
            if py3 is None:
                return
            m3, n3 = py3
            if f"{m3}.{n3}" in policy.ALLOWED:
                sev = "dangerous" if f"{m3}.{n3}" in _TENSORISH else "suspicious"
                self.finding(sev, f"APPEND on the result of {m3}.{n3}: calls its append/extend method", pickle=pk,
                             offset=off, module=m3, qualname=n3, kind="append")
        elif k in ("persid", "global"):
            self.finding("suspicious", f"APPEND on {describe(target)}: calls its append/extend method", pickle=pk,
                         offset=off, kind="append")

    def stats(self, parse, length: int) -> None:
        s = parse.stats
        if s["memo_key_max"] > RESOURCE_MEMO_INDEX and s["memo_key_max"] > 2 * length:
            self.finding("dangerous", f"memo index {s['memo_key_max'] - 1}: CPython's unpickler allocates "
                         f"{s['memo_key_max'] * 16} bytes for its memo (a memory bomb)", kind="resource")
        elif s["memo_key_max"] > 2 * length + 1024:
            self.finding("suspicious", f"memo index {s['memo_key_max'] - 1} far beyond the number of objects: no "
                         "pickler writes this", kind="resource")
        if s["marks_max"] > RESOURCE_MARKS:
            self.finding("suspicious", f"MARKs nested {s['marks_max']} deep: deeper than pickle.dumps can write "
                         "(stack exhaustion in loaders that recurse)", kind="resource")

    def expansion(self, parse, roots) -> None:
        """An expansion bomb: a root whose value graph, walked as a tree, exceeds EXPANSION_NODES
        and EXPANSION_RATIO x its own size. Counted in C in O(graph) (shared nodes once)."""
        if not parse.stats["shared_refs"]:
            return  # nothing was fetched twice: the graph is a tree of the file's own objects
        for i, root in enumerate(roots):
            if root is None:
                continue
            ex = parse.expansion(root, EXPANSION_NODES)
            tree, refs = ex["tree"], ex["refs"]
            if tree > EXPANSION_NODES and tree > EXPANSION_RATIO * refs:
                size = f"more than {tree - 1:,}" if tree == (1 << 64) - 1 else f"{tree:,}"
                self.finding("suspicious", f"shared references expand a value of {refs:,} references to {size} "
                             "nodes when it is walked as a tree (an expansion bomb: json.dumps, repr, printing "
                             "or a recursive walk of what torch.load or pickle.load returns never ends; bound: "
                             f"{EXPANSION_NODES:,} nodes and {EXPANSION_RATIO}x the references)", pickle=i,
                             offset=ex["at"], kind="resource")


# ==========================================================================================
# Streams
# ==========================================================================================

def _evidence(events) -> bool:
    for kind, _pk, _off, a, _b in events:
        if kind == "global" and _identifier_import(a):
            return True
    return False


def _has_joblib(events) -> bool:
    for kind, _pk, _off, a, _b in events:
        if kind == "global":
            q = a.qualname
            if q is not None and q.endswith(JOBLIB_WRAPPERS):
                return True
    return False


def _error_text(exc) -> str:
    return str(exc)


def scan_stream(ctx: Context, buf, where: Where, *, designated: bool, torchscript: bool = False,
                torch_stream: bool = False, single: bool = False) -> StreamResult:
    """Interpret buf as a stream of stacked pickles and judge what it would do.

    designated: the bytes are a pickle for some loader (a top-level file, data.pkl, an .npy
        object payload): failures are errors. Otherwise (an arbitrary zip member) the bytes
        are judged only when they hold a pickle import, and data that merely starts with an
        opcode byte is left alone.
    single: read exactly one pickle (joblib's nested object arrays); StreamResult.end says where
        it ended.
    """
    res = StreamResult()
    n = len(buf)
    if n == 0 or buf[0] not in OPCODES:
        res.error = "empty" if n == 0 else f"first byte 0x{buf[0]:02x} is not a pickle opcode"
        return res
    if designated is False and _native.pickle_probe(buf, max_stack=MAX_STACK) != 1:
        res.error = "no pickle import in it"
        return res  # arbitrary bytes that import nothing: not a pickle anyone would load
    base = where.base or 0
    parse, roots, end, err, err_start = _run(ctx, buf, base, where, joblib=False, single=single)
    events = parse.events(JUDGED)
    res.parse, res.roots, res.end = parse, roots, end
    if err is not None:
        res.error = _error_text(err)
    if designated is True:
        judged = True
    elif designated == "auto":
        judged = bool(roots) or (n >= 2 and buf[0] == 0x80 and buf[1] <= 5) or _evidence(events)
    else:
        judged = _evidence(events)
    res.evidence = judged
    if not judged:
        return res
    joblib = err is not None and _has_joblib(events)
    if joblib:
        parse, roots, end, err, err_start = _run(ctx, buf, base, where, joblib=True, single=single)
        events = parse.events(JUDGED)
    res.judged = True
    res.parse, res.roots, res.end = parse, roots, end
    torch_stream = torch_stream or (len(roots) >= 5 and _is_legacy_torch(roots))
    ctx.pickles += len(roots) + (1 if err is not None else 0)
    judge = Judge(ctx, where, torchscript, torch_stream)
    judge.joblib = joblib

    def nested_scan(payload, loader, pk, off):
        if where.depth >= Context.MAX_DEPTH:
            return
        data = payload.value
        inner = where.child(f"<{loader} argument at byte {off}>", None)
        ctx.rescan(memoryview(bytes(data)), inner, designated=True)

    judge.events(parse, events, nested_scan)
    judge.stats(parse, n)
    judge.expansion(parse, roots)
    if err is not None:
        res.error = _error_text(err)
        if isinstance(err, _Stop):
            pass  # the structure around the pickles stopped the reading; already recorded
        elif isinstance(err, ResourceLimitError):
            judge.finding("dangerous", f"the pickle exhausts the scanner's bounded stack or memory (a stack or "
                          f"memory blow-up): {err}", kind="resource")
        elif roots and err_start is not None and err.offset == base + err_start and not single:
            ctx.error(f"bytes after pickle {len(roots) - 1} are not a pickle: {err}", where)
        else:
            ctx.error(f"pickle {len(roots)} could not be read to its end: {err}", where)
    return res


def _run(ctx, buf, base, where, joblib: bool, single: bool):
    """Interpret stacked pickles. Returns (parse, roots, end position, error, start of the
    pickle that failed)."""
    n = len(buf)
    parse = _native.PickleParse(n, MAX_STACK)
    roots = []
    pos = 0
    err = None
    err_start = None
    while pos < n:
        start = pos
        root, used = parse.load(buf, base, pos, raise_errors=False, pause_on_build=joblib)
        while joblib and parse.paused:
            pos += used
            skip = _joblib_skip(ctx, parse.top(), buf, pos, base, where)
            if skip is None:
                return parse, roots, pos, _Stop(parse.top()), None
            pos += skip
            root, used = parse.resume(buf, base, pos, raise_errors=False)
        if parse.error is not None:
            err, err_start = parse.error, start
            pos += used
            break
        roots.append(root)
        pos += used
        if single:
            break
        if len(roots) == 5 and _is_legacy_torch(roots):
            new = _legacy_storages(ctx, parse, roots, buf, pos, base, where)
            if new is None:
                return parse, roots, pos, _Stop(None), None
            pos = new
            if pos < n:
                ctx.note(f"{n - pos} bytes follow the last storage of the legacy torch file")
        if pos < n and _padding(buf[pos:]):
            ctx.note(f"{n - pos} bytes of padding after pickle {len(roots) - 1}")
            pos = n
    return parse, roots, pos, err, err_start


class _Stop(MFParseError):
    """A structure around the pickles (joblib arrays, legacy storages) stopped the reading;
    the reason is already recorded on the context."""

    def __init__(self, at):
        super().__init__("reading stopped", None)


def _padding(rest) -> bool:
    if len(rest) > 4096:
        return False
    b = bytes(rest)
    return b.strip(b"\x00 \t\r\n") == b""


# ---- legacy torch --------------------------------------------------------------------------

def _is_legacy_torch(roots) -> bool:
    r0, r1, r4 = roots[0], roots[1], roots[4]
    return (r0 is not None and r0.kind in ("int", "bigint") and r0.value == LEGACY_MAGIC
            and r1 is not None and r1.kind == "int" and r1.value == 1001 and r4 is not None and r4.kind == "list")


def storage_itembytes(dtype_code: int) -> int:
    return max(dtypes.BITS[dtype_code] // 8, 1)


def check_tensors(ctx, parse, storage_bytes: list, where: Where) -> None:
    """Every tensor of a walked torch pickle must lie inside its storage (storage_bytes[i] is
    the number of bytes storage i really has, or None when unknown)."""
    bits = dtypes.BITS
    for sidx, dt, extent, at in parse.torch_extents():
        if sidx < 0:
            continue
        have = storage_bytes[sidx]
        if have is not None and extent * bits[dt] > have * 8:
            ctx.finding("dangerous", f"tensor reaches element {extent} of a storage holding "
                        f"{have * 8 // max(bits[dt], 1)} {dtypes.NAMES[dt]} elements: an out-of-bounds view", where,
                        offset=at, kind="loader")


def walk_torch(ctx, parse, root, flavor: int, where: Where) -> bool:
    """Run the torch walker on a root; a walker failure is reported (never fatal)."""
    try:
        parse.torch_walk(root, flavor)
        return True
    except UnsupportedFormatError as e:
        ctx.error(f"torch structure not understood: {e}", where)
    except MFParseError as e:
        ctx.finding("suspicious", f"torch tensor records that torch.load would mis-read or reject: {e}", where,
                    offset=e.offset, kind="loader")
    return False


def _legacy_storages(ctx, parse, roots, buf, pos, base, where):
    """Skip the raw storages after a legacy torch file's five pickles; None when they cannot be
    located (the reason is recorded)."""
    n = len(buf)
    if not walk_torch(ctx, parse, roots[3], 1, where):
        return None
    by_key = {}
    storages = parse.torch_storage_sizes()
    for i, st in enumerate(storages):
        by_key.setdefault(st[0], (i, st))
    sizes = [None] * len(storages)
    for k in roots[4].items:
        key = _literal_str(k)
        if key is None or key not in by_key:
            ctx.error(f"legacy torch storage key {describe(k)} is not used by the pickle", where, where.offset(pos))
            return None
        i, st = by_key[key]
        item = storage_itembytes(st[1])
        numel = st[2]
        declared = numel * item
        if n - pos < 8:
            ctx.error("legacy torch storage size runs past the end of the file", where, where.offset(pos))
            return None
        count = int.from_bytes(bytes(buf[pos:pos + 8]), "little")
        left = n - pos - 8
        if declared > left:
            ctx.finding("dangerous", f"legacy storage {key!r} declares {numel} elements ({declared} bytes) but only "
                        f"{left} bytes follow: torch allocates the declared size before reading", where,
                        offset=where.offset(pos), kind="loader")
            return None
        if count != numel:
            ctx.error(f"legacy torch storage {key!r} holds {count} elements, the pickle says {numel}", where,
                      where.offset(pos))
            return None
        sizes[i] = declared
        pos += 8 + declared
    check_tensors(ctx, parse, sizes, where)
    return pos


# ---- joblib --------------------------------------------------------------------------------

def _wrapper_class(target):
    """The class a BUILD target was made from (through copyreg helpers), as a qualname."""
    if target is None or target.kind != "call":
        return None
    q = _callee_qualname(target)
    if q in ("copyreg._reconstructor", "copy_reg._reconstructor", "copyreg.__newobj__", "copyreg.__newobj_ex__"):
        args = _args(target)
        if args and args[0].kind == "global":
            return args[0].qualname
        return None
    return q


def _dict_items(pv) -> dict:
    out = {}
    if pv is None or pv.kind != "dict":
        return out
    for k, v in pv.items:
        ks = _literal_str(k)
        if ks is not None:
            out[ks] = v
    return out


def _dtype_info(pv):
    """(itemsize, hasobject) of a pickled numpy.dtype call node, or None."""
    if pv is None or pv.kind != "call":
        return None
    q = _callee_qualname(pv)
    if q != "numpy.dtype":
        return None
    args = _args(pv)
    typestr = _literal_str(args[0]) if args else None
    if typestr is None:
        return None
    state = pv.state
    st = state.items if state is not None and state.kind == "tuple" else []
    elsize = _int_value(st[5]) if len(st) > 5 else None
    flags = _int_value(st[7]) if len(st) > 7 else None
    hasobject = typestr.startswith("O") or (flags is not None and flags & 1 == 1)
    if elsize is not None and elsize > 0:
        return elsize, hasobject
    digits = "".join(ch for ch in typestr[1:].split("[")[0] if ch.isdigit())
    if not digits:
        return (8, True) if hasobject else None
    size = int(digits) * (4 if typestr[0] == "U" else 1)
    return size, hasobject


def _joblib_skip(ctx, target, buf, pos, base, where):
    """Bytes to skip after a paused BUILD (0 for anything but a joblib array wrapper), or None
    when the array data cannot be located (recorded on ctx)."""
    cls = _wrapper_class(target)
    if cls is None or not cls.endswith(JOBLIB_WRAPPERS):
        return 0
    at = base + pos
    if not cls.endswith("NumpyArrayWrapper"):
        ctx.note("joblib <= 0.9 array wrappers: the arrays live in companion files next to this one")
        return 0
    st = _dict_items(target.state)
    shape = _int_tuple(st.get("shape"))
    info = _dtype_info(st.get("dtype"))
    if shape is None or info is None:
        ctx.error("joblib array wrapper whose shape or dtype cannot be read: cannot locate its data", where, at)
        return None
    itemsize, hasobject = info
    n = len(buf)
    if hasobject:
        inner = Where(where.member, (where.base or 0) + pos, where.depth + 1)
        res = scan_stream(ctx, buf[pos:], inner, designated=True, single=True)
        if not res.judged or not res.roots:
            return None
        return res.end
    count = 1
    for d in shape:
        if d < 0:
            ctx.error(f"joblib array with negative dimension {d}", where, at)
            return None
        count *= d
    nbytes = count * itemsize
    skip = 0
    align = st.get("numpy_array_alignment_bytes")
    if align is not None and align.kind != "none":
        if pos >= n:
            ctx.error("joblib array padding runs past the end of the data", where, at)
            return None
        skip = 1 + buf[pos]
    if nbytes > n - pos - skip:
        ctx.finding("dangerous", f"joblib array of shape {shape} x {itemsize} bytes ({nbytes} bytes) but only "
                    f"{max(n - pos - skip, 0)} bytes remain: joblib allocates the array before reading", where,
                    offset=at, module="joblib.numpy_pickle", qualname="NumpyArrayWrapper", kind="loader")
        return None
    return skip + nbytes
