"""PyTorch checkpoints: torch.save zip archives (also TorchScript and Lightning .ckpt) and the
legacy pre-1.6 format, read through the symbolic pickle interpreter; nothing is unpickled.

What the C walker (csrc/mf_torch.c) reports is turned into TensorInfos here: the storage key
becomes a zip member (`<archive>/data/<key>`) or, in legacy files, a raw range after the
pickles; every tensor is checked to lie inside its storage, and every storage inside the file.
"""

from __future__ import annotations

from mfparse import _native, dtypes
from mfparse.api import EMPTY, ObjectNode, TensorInfo
from mfparse.errors import CorruptFileError, UnsupportedFormatError
from mfparse.formats.base import Reader, view
from mfparse.formats.zip import ZipArchive

QSCHEMES = {1: "per_tensor_affine", 2: "per_channel_affine", 3: "per_channel_affine_float_qparams"}

# legacy files start with the magic number pickled by protocol 2 (0x80 0x02, LONG1 of 10 bytes)
LEGACY_MAGIC_P2 = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."


def is_legacy(head: bytes) -> bool:
    """True for the magic-number pickle that starts a legacy torch file (any protocol)."""
    if head.startswith(LEGACY_MAGIC_P2):
        return True
    if head[:1] == b"\x80" and head[2:4] == b"\x8a\x0a" and head[4:14] == LEGACY_MAGIC_P2[4:14]:
        return True
    return head.startswith(b"L119547037146038801333356") or head.startswith(b"I119547037146038801333356")


def find_archive_prefix(names) -> str | None:
    """The folder that holds data.pkl: the first entry's top folder, as torch's reader takes it,
    else any single folder with a data.pkl."""
    names = list(names)
    if names:
        top = names[0].split("/", 1)[0]
        if f"{top}/data.pkl" in names:
            return top
    for n in names:
        parts = n.split("/")
        if len(parts) == 2 and parts[1] == "data.pkl":
            return parts[0]
    return None


class _TorchReader(Reader):
    """Shared by the zip and legacy readers: records -> TensorInfos, structure -> tree."""

    byteorder = "<"

    def _build(self, parse, storage_bytes):
        """storage_bytes(index, key, record) -> (file offset | None, available bytes | None, id)."""
        self.parse = parse
        self._compressed: dict[str, tuple[str, int]] = {}
        storages = parse.torch_storages()
        tensors = parse.torch_tensors()
        names = dtypes.NAMES
        bits = dtypes.BITS
        resolved = []
        for i, st in enumerate(storages):
            key, _loc, sdt, numel, at = st[0], st[1], st[2], st[3], st[4]
            start, available, sid = storage_bytes(i, st)
            need = numel * bits[sdt] // 8
            if available is not None and need > available:
                raise CorruptFileError(
                    f"storage {sid!r} declares {numel} x {names[sdt]} ({need} bytes) but the file holds "
                    f"{available} bytes for it",
                    at,
                )
            resolved.append((start, need, sid))

        infos: dict[int, TensorInfo] = {}

        def info_for(ti: int, name: str) -> TensorInfo:
            (sidx, dt, shape, stride, soff, numel, extent, kind, rg, param, qs, qscale, qzp, qaxis, qsc, qzps,
             subclass, device, at) = tensors[ti]
            dname = names[dt]
            itembits = bits[dt]
            extras = {}
            if sidx >= 0:
                start, need, sid = resolved[sidx]
                extras["device"] = storages[sidx][1]
                if extent * itembits > need * 8:
                    raise CorruptFileError(
                        f"tensor {name!r} reaches element {extent} of storage {sid!r}, which holds "
                        f"{need * 8 // itembits if itembits else 0} elements of {dname}",
                        at,
                    )
                offset = None if start is None else start + soff * itembits // 8
                if start is None:
                    self._compressed[name] = (sid, soff * itembits // 8)
            else:
                sid, offset = None, None
                extras["device"] = "meta"
            if device is not None:
                extras["device"] = _device_str(device)
            if rg:
                extras["requires_grad"] = True
            if param:
                extras["parameter"] = True
            if subclass is not None:
                extras["subclass"] = subclass.qualname or "?"
            if kind == 1:
                q = {"qscheme": QSCHEMES.get(qs, "?")}
                if qs == 1:
                    q.update(scale=qscale, zero_point=qzp)
                else:
                    q.update(axis=qaxis, scales=info_for(qsc, name + ".q_scales"),
                             zero_points=info_for(qzps, name + ".q_zero_points"))
                extras["quantization"] = q
            return TensorInfo(name, dname, shape, (numel * itembits + 7) // 8, offset, sid,
                              None if _contiguous(shape, stride) else stride, extras or EMPTY)

        out = []
        for name, kind, idx in parse.torch_listing():
            if kind == "tensor":
                out.append(info_for(idx, name))
            else:  # a bare storage: a 1-D tensor of its elements
                start, need, sid = resolved[idx]
                st = storages[idx]
                out.append(TensorInfo(name, names[st[2]], (st[3],), need, start, sid, None,
                                      {"device": st[1], "storage_object": True}))
        self._tensors = _last_wins(out)

    def read(self, info: TensorInfo):
        if info.offset is None:
            raise UnsupportedFormatError(f"tensor {info.name!r} has no data in the file (meta tensor)")
        return view(self.source.buf, info, self.byteorder)

    # ---- structure -------------------------------------------------------------------------

    def tree(self):
        by_name = {t.name: t for t in self._tensors}
        return build_tree(self.parse.torch_entries(), by_name)

    def metadata(self) -> dict:
        return flatten_metadata(self.tree())


def _contiguous(shape, stride) -> bool:
    expected = 1
    for d, s in zip(reversed(shape), reversed(stride)):
        if d != 1 and s != expected:
            return False
        expected *= d
    return True


def _last_wins(infos):
    """A name seen twice (a repeated dict key) keeps its last value, at its first position,
    as a Python dict built by the unpickler would."""
    seen: dict[str, int] = {}
    out: list[TensorInfo] = []
    for t in infos:
        if t.name in seen:
            out[seen[t.name]] = t
        else:
            seen[t.name] = len(out)
            out.append(t)
    return out


class TorchZipReader(_TorchReader):
    """torch.save (>= 1.6) zip archives, TorchScript archives, Lightning checkpoints."""

    format = "torch-zip"

    def __init__(self, source):
        super().__init__(source)
        self.zip = ZipArchive(source)
        members = self.zip.members
        prefix = find_archive_prefix(members)
        if prefix is None:
            raise UnsupportedFormatError("zip archive without a data.pkl: not a torch checkpoint")
        self.prefix = prefix
        if f"{prefix}/constants.pkl" in members or any(n.startswith(f"{prefix}/code/") for n in members):
            self.format = "torchscript"
        order = members.get(f"{prefix}/byteorder")
        if order is not None and bytes(self.zip.read(order)).strip() == b"big":
            self.byteorder = ">"
        pkl_member = members[f"{prefix}/data.pkl"]
        pkl = self.zip.read(pkl_member)
        base = pkl_member.data_offset if pkl_member.method == 0 else 0
        parse = _native.PickleParse(len(pkl))
        root, _ = parse.load(pkl, base)
        parse.torch_walk(root, 0)

        def storage_bytes(i, st):
            name = f"{prefix}/data/{st[0]}"
            m = members.get(name)
            if m is None:
                raise CorruptFileError(f"storage record {name!r} is missing from the archive", st[4])
            if m.method != 0:
                return None, m.size, name
            return m.data_offset, m.size, name

        self._build(parse, storage_bytes)

    def read(self, info: TensorInfo):
        where = self._compressed.get(info.name)
        if where is not None:
            # a deflated storage record (a re-zipped checkpoint): inflate it, view the tensor in it
            data = self.zip.read(self.zip.members[where[0]])
            return view(data, info._replace(offset=where[1]), self.byteorder)
        return super().read(info)


class TorchLegacyReader(_TorchReader):
    """torch.save(..., _use_new_zipfile_serialization=False): five stacked pickles, then raw
    storages back to back, each behind an 8-byte element count."""

    format = "torch-legacy"

    def __init__(self, source):
        super().__init__(source)
        parse = _native.PickleParse(source.size)
        parse.torch_legacy(source.buf)

        def storage_bytes(i, st):
            return st[5], None, st[0]

        self._build(parse, storage_bytes)


def open_zip(source):
    return TorchZipReader(source)


def open_legacy(source):
    return TorchLegacyReader(source)


# ---- structure -----------------------------------------------------------------------------

def _device_str(pv) -> str:
    v = pv.value if pv.kind in ("str", "bytes") else None
    if isinstance(v, bytes):
        v = v.decode("latin-1")
    return v if v is not None else "?"


def _key_of(pv, path: str):
    """A dict key as Python would hold it (scalars), else the path component."""
    if pv is not None and pv.kind in ("str", "int", "bool", "none", "float", "bytes", "bigint"):
        return pv.value
    return path.rsplit(".", 1)[-1]


def leaf_value(pv):
    """A safe Python rendering of a leaf node that carries no tensor."""
    k = pv.kind
    if k in ("none", "bool", "int", "bigint", "float", "str", "bytes", "bytearray"):
        return pv.value
    if k == "global":
        return ObjectNode(pv.qualname or "<computed global>")
    if k == "call":
        fn = pv.fn
        q = fn.qualname if fn is not None and fn.kind == "global" else None
        args = pv.args
        items = args.items if args is not None and args.kind == "tuple" else []
        if q == "torch.Size" and items and items[0].kind == "tuple":
            return tuple(i.value for i in items[0].items)
        if q == "torch.device" and items:
            parts = [str(i.value) for i in items if i.kind in ("str", "int")]
            return ":".join(parts)
        if q in ("builtins.set", "__builtin__.set", "builtins.frozenset") and items and items[0].kind == "list":
            return [leaf_value(i) for i in items[0].items]
        if q in ("builtins.complex", "__builtin__.complex") and all(i.kind in ("float", "int") for i in items):
            return complex(*[i.value for i in items])
        if q in ("builtins.slice", "__builtin__.slice"):
            return ObjectNode("slice", {"args": [leaf_value(i) for i in items]})
        return ObjectNode(q or "<computed>")
    if k == "ext":
        return ObjectNode(f"<extension {pv.value}>")
    return ObjectNode(f"<{k}>")


def build_tree(entries, by_name):
    """Nested dicts/lists from the walker's pre-order entries; tensors as TensorInfo leaves."""
    root_holder: list = []
    stack: list = []  # (depth, container, kind)
    for path, depth, kind, _tensor, key, value, cls in entries:
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if kind in ("tensor", "storage"):
            node = by_name.get(path)
        elif kind == "dict":
            node = {}
        elif kind in ("list", "set"):
            node = []
        elif kind == "tuple":
            node = _Tuple()
        elif kind in ("object", "module"):
            qual = cls.qualname if cls is not None and cls.kind == "global" else None
            node = ObjectNode(qual or "<computed>", {})
        elif kind == "ref":
            node = ObjectNode("<recursive reference>")
        else:
            node = leaf_value(value)
        if stack:
            parent = stack[-1][1]
            if isinstance(parent, dict):
                parent[_key_of(key, path)] = node
            elif isinstance(parent, ObjectNode):
                parent.fields[_key_of(key, path)] = node
            else:
                parent.append(node)
        else:
            root_holder.append(node)
        if kind in ("dict", "list", "set", "tuple", "object", "module"):
            stack.append((depth, node, kind))
    root = root_holder[0] if root_holder else None
    return _finish(root)


class _Tuple(list):
    """A tuple under construction (closed into a tuple by _finish)."""


def _finish(node):
    if isinstance(node, ObjectNode):
        if not node.fields:
            return ObjectNode(node.cls)
        return ObjectNode(node.cls, {k: _finish(v) for k, v in node.fields.items()})
    if isinstance(node, dict):
        return {k: _finish(v) for k, v in node.items()}
    if isinstance(node, _Tuple):
        return tuple(_finish(v) for v in node)
    if isinstance(node, list):
        return [_finish(v) for v in node]
    return node


def flatten_metadata(tree, prefix: str = "") -> dict:
    """Scalars and strings of a tree as {dotted path: value}; lists of scalars stay lists;
    tensors and opaque objects are left out."""
    out: dict = {}
    scalar = (str, int, float, bool, bytes, type(None), complex)

    def walk(node, path):
        if isinstance(node, TensorInfo):
            return
        if isinstance(node, dict) or isinstance(node, ObjectNode):
            items = node.fields.items() if isinstance(node, ObjectNode) else node.items()
            for k, v in items:
                walk(v, f"{path}.{k}" if path else str(k))
            return
        if isinstance(node, (list, tuple)):
            if all(isinstance(v, scalar) for v in node):
                out[path] = list(node)
            else:
                for i, v in enumerate(node):
                    walk(v, f"{path}.{i}" if path else str(i))
            return
        if isinstance(node, scalar):
            out[path] = node

    walk(tree, prefix)
    return out
