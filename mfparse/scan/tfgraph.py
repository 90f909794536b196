"""TensorFlow graphs (SavedModel, GraphDef): the ops that reach outside the graph, with what
they are given.

The table is mfparse/formats/tf_ops.py, derived from TensorFlow's op registry by
tests/fixtures/tf/make_risky_ops.py: op -> (what it does, severity, rule, carriers). Every node
of the graph and of every function of every library is looked at (the C reader lists them all:
``<function>/<node>``). For the ops of the table, the NodeDef is decoded here (inputs and
attributes; a few hundred bytes each) and the values reaching a carrier are followed back
through the node's scope (the graph, or its function): constants (Const / HostConst string
values), through Identity, PlaceholderWithDefault, StringJoin, string Add and the like, at most
MAX_WALK nodes. A function argument or a placeholder is a value the caller gives (a SavedModel's
own checkpoint prefix, its assets): not a constant.

A path constant is *outside the model folder* when it is absolute (``/``, ``\\``, ``C:``),
starts with ``~``, has a ``..`` component, or has a URL scheme (``file://``, ``gs://``,
``s3://``, ``http://``, ``hdfs://``, ``grpc://``, ...). Rules: see the generator.
"""

from __future__ import annotations

import re

from mfparse.formats import tf_ops

MAX_WALK = 64
_PASS = frozenset(["Identity", "IdentityN", "PlaceholderWithDefault", "StringJoin", "Add", "AddV2", "StringFormat",
                   "Snapshot", "StopGradient", "Reshape", "ExpandDims", "Squeeze", "Pack", "ConcatV2", "Concat",
                   "ShardedFilename", "ShardedFilespec", "Enter", "Switch", "Merge", "RefIdentity", "EnsureShape",
                   "StringStrip", "RegexReplace", "StaticRegexReplace", "StringLower", "StringUpper", "Substr"])
_CONST = frozenset(["Const", "HostConst"])
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
WHEN = ("tf.saved_model.load runs the restore and initializer functions while loading, the others when the "
        "model is called")


def outside(path: str) -> bool:
    p = path.strip()
    if not p:
        return False
    if _URL.match(p) or p.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", p):
        return True
    return ".." in re.split(r"[/\\]", p)


# ---- protobuf, read in place ---------------------------------------------------------------------

def _varint(buf, i: int, end: int) -> tuple[int, int]:
    v = shift = 0
    while True:
        if i >= end or shift > 63:
            raise ValueError("varint runs past the message")
        c = buf[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return v, i


def fields(buf, start: int, end: int):
    """(field number, wire type, value) of the message buf[start:end]; a length-delimited
    value is its (start, end) in buf."""
    i = start
    while i < end:
        key, i = _varint(buf, i, end)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i, end)
            yield num, wt, v
        elif wt == 2:
            ln, i = _varint(buf, i, end)
            if ln > end - i:
                raise ValueError("field runs past the message")
            yield num, wt, (i, i + ln)
            i += ln
        elif wt in (1, 5):
            i += 8 if wt == 1 else 4
            if i > end:
                raise ValueError("field runs past the message")
        else:
            raise ValueError(f"wire type {wt}")


def message_end(buf, offset: int) -> int:
    """The end of the length-delimited message whose content starts at offset: its length is
    the varint just before it (each byte of which but the last has the high bit set)."""
    p = offset - 1
    if p < 1 or buf[p] & 0x80:
        raise ValueError("no length before the message")
    while p > 0 and buf[p - 1] & 0x80:
        p -= 1
    ln, q = _varint(buf, p, offset)
    if q != offset or offset + ln > len(buf):
        raise ValueError("message length does not fit")
    return offset + ln


class Node:
    """A decoded NodeDef: inputs (data inputs, control inputs dropped) and attributes."""

    __slots__ = ("inputs", "attrs")

    def __init__(self, buf, start: int, end: int):
        self.inputs = []
        self.attrs = {}
        for num, wt, v in fields(buf, start, end):
            if wt != 2:
                continue
            if num == 3:
                s = bytes(buf[v[0]:v[1]]).decode("utf-8", "replace")
                if not s.startswith("^"):
                    self.inputs.append(s)
            elif num == 5:
                key, val = None, None
                for n2, w2, v2 in fields(buf, v[0], v[1]):
                    if w2 == 2 and n2 == 1:
                        key = bytes(buf[v2[0]:v2[1]]).decode("utf-8", "replace")
                    elif w2 == 2 and n2 == 2:
                        val = v2
                if key is not None and val is not None:
                    self.attrs[key] = val

    def attr_strings(self, buf, name: str) -> list[str] | None:
        """An attribute's string value (AttrValue.s) or list of strings (AttrValue.list.s)."""
        v = self.attrs.get(name)
        if v is None:
            return None
        out = []
        for num, wt, val in fields(buf, v[0], v[1]):
            if num == 2 and wt == 2:
                out.append(bytes(buf[val[0]:val[1]]).decode("utf-8", "replace"))
            elif num == 1 and wt == 2:  # ListValue
                for n2, w2, v2 in fields(buf, val[0], val[1]):
                    if n2 == 2 and w2 == 2:
                        out.append(bytes(buf[v2[0]:v2[1]]).decode("utf-8", "replace"))
        return out

    def const_strings(self, buf) -> list[str]:
        """The string_val of a Const's value (TensorProto field 8), at most 1000 of them."""
        v = self.attrs.get("value")
        if v is None:
            return []
        out = []
        for num, wt, val in fields(buf, v[0], v[1]):
            if num != 8 or wt != 2:  # AttrValue.tensor
                continue
            for n2, w2, v2 in fields(buf, val[0], val[1]):
                if n2 == 8 and w2 == 2 and len(out) < 1000:
                    out.append(bytes(buf[v2[0]:v2[1]]).decode("utf-8", "replace"))
        return out


# ---- judging -------------------------------------------------------------------------------------

class GraphJudge:
    def __init__(self, buf, nodes, functions):
        self.buf = buf
        self.nodes = nodes            # (meta graph, function, name, op, device, n_inputs, offset, op_offset)
        self.functions = functions
        self.scopes: dict = {}

    def node(self, i: int) -> Node:
        off = self.nodes[i][6]
        return Node(self.buf, off, message_end(self.buf, off))

    def scope(self, mg: int, fn: int) -> dict:
        """{node name: index} of the graph or function (all scopes are indexed in one pass)."""
        if not self.scopes:
            for i, n in enumerate(self.nodes):
                self.scopes.setdefault((n[0], n[1]), {})[n[2]] = i
        return self.scopes.get((mg, fn), {})

    def values(self, i: int, input_name: str):
        """(constant strings reaching this input, True when only constants reach it)."""
        mg, fn = self.nodes[i][0], self.nodes[i][1]
        sc = self.scope(mg, fn)
        consts: list[str] = []
        only = True
        todo = [input_name]
        seen = 0
        while todo:
            name = todo.pop()
            seen += 1
            if seen > MAX_WALK:
                return consts, False
            j = sc.get(name.split(":", 1)[0])
            if j is None:
                only = False  # a function argument: the caller gives it
                continue
            op = self.nodes[j][3]
            try:
                nd = self.node(j)
            except ValueError:
                only = False
                continue
            if op in _CONST:
                consts.extend(nd.const_strings(self.buf))
            elif op in _PASS:
                todo.extend(nd.inputs)
            else:
                only = False  # computed (or a Placeholder fed by the caller)
        return consts, only


def judge(ctx, where, reader, tf_module) -> int:
    """Judge every node of a TFGraphReader whose op is in the table; returns the number of findings."""
    buf = reader.source.buf
    nodes = reader._nodes
    gj = GraphJudge(buf, nodes, reader._functions)
    n_found = 0
    for i, (mg, fn, name, op, _dev, _n, offset, _op_off) in enumerate(nodes):
        entry = tf_ops.OPS.get(op)
        if entry is None:
            continue
        what, severity, rule, carriers = entry
        full = f"{reader._functions[fn][1]}/{name}" if fn >= 0 else name
        try:
            nd = gj.node(i)
        except ValueError as e:
            ctx.error(f"TensorFlow node {full!r} ({op}) could not be decoded ({e}): its arguments cannot be judged",
                      where, where.offset(offset))
            if rule == "always":
                _report(ctx, where, op, full, what, severity, offset, "")
                n_found += 1
            continue
        verdict = _judge_node(gj, i, nd, rule, severity, carriers)
        if verdict is not None:
            sev, detail = verdict
            _report(ctx, where, op, full, what, sev, offset, detail)
            n_found += 1
    return n_found


def _judge_node(gj, i, nd, rule, severity, carriers):
    """(severity, detail) of a finding for this node, or None."""
    buf = gj.buf
    consts: list[str] = []
    only = bool(carriers)
    attr_vals: list[str] = []
    for kind, cname, index in carriers:
        if kind == "attr":
            vals = nd.attr_strings(buf, cname)
            attr_vals.extend(vals or [])
            continue
        ins = nd.inputs if index is None else nd.inputs[index:index + 1]
        if not ins:
            only = False
        for inp in ins:
            c, o = gj.values(i, inp)
            consts.extend(c)
            only = only and o
    texts = consts + attr_vals
    out = sorted({t for t in texts if outside(t)})
    shown = ", ".join(repr(t[:120]) for t in (out or texts)[:3])
    where_txt = f": {shown}" if texts else ""
    if rule == "always":
        if out:
            return "dangerous", f" with a path outside the model folder{where_txt}"
        return severity, (f" (given {shown})" if texts else "")
    if rule == "outside":
        return ("dangerous", f" with a path outside the model folder{where_txt}") if out else None
    if rule == "files_flag":
        v = nd.attrs.get("is_files")
        flag = v is not None and any(num == 5 and wt == 0 and val for num, wt, val in fields(buf, v[0], v[1]))
        if not flag:
            return None
        rule = "constant"
    if rule in ("constant", "nonempty"):
        if not (only and consts) or (rule == "nonempty" and not any(t.strip() for t in consts)):
            return None
        if out:
            return "dangerous", f" with a path outside the model folder{where_txt}"
        return severity, f" with file names fixed in the graph{where_txt}"
    if rule == "file_url":
        files = [t for t in attr_vals if t.startswith("file://")]
        return ("dangerous", f": {files[0][:120]!r}") if files else None
    if rule == "urls":
        urls = [t for t in attr_vals if t.strip()]
        return (severity, f": {', '.join(repr(u[:120]) for u in urls[:3])}") if urls else None
    if rule == "descriptor":
        srcs = [t for t in attr_vals if t and t != "local://" and not t.startswith("bytes://")]
        if not srcs:
            return None
        return ("dangerous" if any(outside(t) for t in srcs) else severity), f": {srcs[0][:120]!r}"
    return severity, ""


def _report(ctx, where, op, node, what, severity, offset, detail) -> None:
    ctx.finding(severity, f"TensorFlow op {op} in node {node!r} {what}{detail} ({WHEN})", where,
                offset=where.offset(offset) if offset is not None else None, module="tensorflow.ops", qualname=op,
                kind="op")
