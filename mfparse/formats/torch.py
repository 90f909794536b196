"""PyTorch checkpoints: torch.save zip archives (also TorchScript and Lightning .ckpt) and the
legacy pre-1.6 format, read through the symbolic pickle interpreter; nothing is unpickled.

What the C walker (csrc/mf_torch.c) reports is turned into TensorInfos here: the storage key
becomes a zip member (`<archive>/data/<key>`) or, in legacy files, a raw range after the
pickles; every tensor is checked to lie inside its storage, and every storage inside the file.
"""

from __future__ import annotations

import re

from mfparse import _native, dtypes
from mfparse.errors import CorruptFileError, ResourceLimitError, UnsupportedFormatError
from mfparse.formats.base import Reader, parse_windows, read_many, source_view, stored_extent, view
from mfparse.formats.zip import ZipArchive, ZipMember, raw_name_len
from mfparse.records import EMPTY, ObjectNode, SharedRef, TensorInfo

#: torch.serialization.MAGIC_NUMBER, pickled first in every legacy file
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def is_legacy(head: bytes) -> bool:
    """True when the file starts with a pickle of the legacy magic number (any protocol).
    The first pickle is interpreted symbolically, as everything else."""
    parse = _native.PickleParse(len(head))
    root, _ = parse.load(head, 0, 0, False)
    if isinstance(parse.error, (MemoryError, ResourceLimitError)):
        raise parse.error  # not knowing for lack of memory is not "another format"
    return root is not None and root.kind in ("int", "bigint") and root.value == LEGACY_MAGIC


def find_archive_prefix(archive: ZipArchive) -> str | None:
    """The folder that holds data.pkl: the first entry's top folder, as torch's reader takes it,
    else any single folder with a data.pkl."""
    first = archive.first_name()
    if first is not None:
        top = first.split("/", 1)[0]
        if archive.find(f"{top}/data.pkl") is not None:
            return top
    for n in archive.members:
        parts = n.split("/")
        if len(parts) == 2 and parts[1] == "data.pkl":
            return parts[0]
    return None


class _TorchReader(Reader):
    """Shared by the zip and legacy readers: structure -> tree and metadata, data -> views."""

    byteorder = "<"

    def read(self, info: TensorInfo):
        if info.offset is None:
            raise UnsupportedFormatError(f"tensor {info.name!r} has no data in the file (meta tensor)")
        return source_view(self.source, info, self.byteorder)

    def tree(self):
        by_name = {t.name: t for t in self._tensors}
        return build_tree(self.parse.torch_entries(), by_name)

    def metadata(self) -> dict:
        return flatten_metadata(self.tree())


def last_wins(infos):
    """A name seen twice (a repeated dict key) keeps its last value at its first position, as the
    dict an unpickler builds would."""
    by_name = {t.name: t for t in infos}
    if len(by_name) == len(infos):
        return infos
    seen: set[str] = set()
    out = []
    for t in infos:
        if t.name not in seen:
            seen.add(t.name)
            out.append(by_name[t.name])
    return out


class TorchZipReader(_TorchReader):
    """torch.save (>= 1.6) zip archives, TorchScript archives, Lightning checkpoints."""

    format = "torch-zip"

    def __init__(self, source, archive: ZipArchive | None = None):
        super().__init__(source)
        self.zip = archive if archive is not None else ZipArchive(source)
        prefix = find_archive_prefix(self.zip)
        if prefix is None:
            raise UnsupportedFormatError("zip archive without a data.pkl: not a torch checkpoint")
        self.prefix = prefix
        self._unverified: dict[str, int] = {}  # member -> predicted data offset (remote archives)
        if self.zip.lazy:
            # a remote archive: the records read to list it (the pickle, byte order, alignment),
            # local headers included, in one round trip (torch writes them next to each other)
            self.zip.prefetch([m for m in (self.zip.find(f"{prefix}/{r}") for r in _RECORDS) if m is not None])
            self._predict_offsets()
        if self.zip.find(f"{prefix}/constants.pkl") is not None:
            self.format = "torchscript"
        order = self.zip.find(f"{prefix}/byteorder")
        if order is not None:
            text = bytes(self.zip.read(order))
            if text not in (b"little", b"big"):  # as torch.load: anything else is damage, not a guess
                raise CorruptFileError(f"torch byteorder record says {text[:16]!r}, not 'little' or 'big'",
                                       self.zip.find(f"{prefix}/byteorder").data_offset)
            if text == b"big":
                self.byteorder = ">"
        pkl_member = self.zip.find(f"{prefix}/data.pkl")
        if pkl_member is not None and pkl_member.data_offset is not None:
            source.advise("willneed", [(pkl_member.data_offset, pkl_member.comp_size)])
        pkl = self.zip.read(pkl_member)
        pkl_member = self.zip.find(f"{prefix}/data.pkl")  # (a remote archive's: now resolved)
        base = pkl_member.data_offset if pkl_member.method == 0 else 0
        self.parse = _native.PickleParse(len(pkl))
        root, _ = self.parse.load(pkl, base)
        self.parse.torch_walk(root, 0)
        infos = self.parse.torch_infos(self.zip.directory, f"{prefix}/data/".encode("utf-8"), TensorInfo, EMPTY)
        if self.format == "torchscript":
            infos += self._torchscript_constants()
        self._tensors = last_wins(infos)

    # ---- remote archives: data offsets from torch's own layout rule ---------------------------

    def _predict_offsets(self) -> None:
        """Data offsets of the members of a remote archive without reading their local headers.

        torch's writer (caffe2/serialize/inline_container.cc, PyTorchStreamWriter) pads every
        local header's extra field (an "FB" record, after a zip64 record when the member or its
        offset passes 4 GiB) so that the data starts at a multiple of the storage alignment (64,
        or what `.storage_alignment` says). The rule is checked against every local header the
        source already holds (the head and tail fetched when it was opened: data.pkl and the
        small records); if one disagrees, or none is held, every local header is read instead (one
        round trip). A predicted offset is checked against its local header when the member's
        data is read (`read`): a mismatch is a CorruptFileError, never a wrong tensor.
        """
        z = self.zip
        align = 64
        rec = z.find(f"{self.prefix}/.storage_alignment")
        if rec is not None and rec.method == 0 and 0 < rec.size <= 16:
            text = bytes(z.read(rec)).strip()
            if text.isdigit() and 0 < int(text) <= 1 << 30 and int(text) & (int(text) - 1) == 0:
                align = int(text)
        rows = [ZipMember(*r) for r in z.directory.entries_list()]
        predicted = {i: torch_data_offset(m, align) for i, m in enumerate(rows) if m.data_offset is None}
        held = [(off, off + len(d)) for off, d in self.source.held()]
        check = [i for i, off in predicted.items() if any(a <= rows[i].local_offset and off <= b for a, b in held)]
        ok = bool(check)
        # the local headers held: exactly the bytes up to the predicted data (no request)
        for i, head in zip(check, read_many(self.source, [(rows[i].local_offset, predicted[i] - rows[i].local_offset)
                                                          for i in check])):
            head = bytes(head)
            if len(head) < 30 or 30 + int.from_bytes(head[26:28], "little") + int.from_bytes(head[28:30], "little") \
                    != len(head) or z.directory.resolve(i, head) != predicted[i]:
                ok = False
                break
        if not ok:  # not torch's layout: every local header, one round trip
            z.resolve([m for m in rows if m.data_offset is None])
            return
        resolved = {rows[i].name for i in check}
        for i, off in predicted.items():
            m = rows[i]
            if m.name in resolved or z.index(m.name) != i:
                continue
            z.directory.predict(i, off)
            self._unverified[m.name] = off
        z._members = None

    def _verify(self, name: str, then=None):
        """Check a predicted data offset against the member's local header (read with the
        `then` range of its data in one round trip); returns the data of `then`."""
        z = self.zip
        i = z.index(name)
        m = ZipMember(*z.directory.entry(i))
        want = self._unverified[name]
        ranges = [(m.local_offset, want - m.local_offset)] + ([then] if then is not None else [])
        got = self.source.read_ranges(ranges, 1)
        real = z.directory.resolve(i, bytes(got[0]))
        if real != want:
            raise CorruptFileError(
                f"zip member {name!r}: its local header puts the data at byte {real}, not at {want} where torch's "
                f"writer would (the listing's offsets for this member are wrong)", m.local_offset)
        del self._unverified[name]
        z._members = None
        return got[1] if then is not None else None

    def _torchscript_constants(self) -> list[TensorInfo]:
        """Tensors of constants.pkl (storages under constants/), named as TorchScript code names
        them: CONSTANTS.c0, CONSTANTS.c1, ..."""
        data = self.zip.read(self.zip.find(f"{self.prefix}/constants.pkl"))
        member = self.zip.find(f"{self.prefix}/constants.pkl")
        parse = _native.PickleParse(len(data))
        root, _ = parse.load(data, member.data_offset if member.method == 0 else 0)
        parse.torch_walk(root, 0)
        self._constants_parse = parse  # the TensorInfos' storages live as long as the reader
        infos = parse.torch_infos(self.zip.directory, f"{self.prefix}/constants/".encode("utf-8"), TensorInfo, EMPTY)
        return [t._replace(name=f"CONSTANTS.c{t.name}") for t in infos]

    def read(self, info: TensorInfo):
        if self._unverified and info.storage in self._unverified and info.offset is not None:
            n = stored_extent(info, self.byteorder)
            data = self._verify(info.storage, (info.offset, n) if n else None)
            if n:
                return view(data, info._replace(offset=0), self.byteorder)
        if info.offset is None and "storage_offset" in info.extras:
            # a deflated storage record (a re-zipped checkpoint): inflate it, view the tensor in it
            data = self.zip.read(self.zip.find(info.storage))
            start = info.extras["storage_offset"] * dtypes.bits(info.dtype) // 8
            return view(data, info._replace(offset=start), self.byteorder)
        return super().read(info)


class TorchLegacyReader(_TorchReader):
    """torch.save(..., _use_new_zipfile_serialization=False): five stacked pickles, then raw
    storages back to back, each behind an 8-byte element count."""

    format = "torch-legacy"

    def __init__(self, source):
        super().__init__(source)
        size = source.size

        def run(buf, window):
            self.parse = _native.PickleParse(size)
            self.parse.torch_legacy(buf, window)

        # a remote file: the stacked pickles as a growing prefix, then every storage's count
        parse_windows(run, source, fetch=4096, prefix=True)
        self._tensors = last_wins(self.parse.torch_infos(None, b"", TensorInfo, EMPTY))


#: the records of a torch archive read to list it
_RECORDS = ("data.pkl", "byteorder", ".storage_alignment", "constants.pkl")


def torch_data_offset(m, align: int = 64) -> int:
    """Where torch's writer puts a member's data: after the 30-byte local header, the name, a
    zip64 extra record when the member or its header offset reaches 4 GiB (4 bytes + 16 for
    the sizes + 8 for the offset), and an "FB" padding record (4 bytes + padding) that ends
    at the next multiple of `align`."""
    start = m.local_offset + 30 + raw_name_len(m) + 4
    big_size, big_off = m.size >= 0xFFFFFFFF or m.comp_size >= 0xFFFFFFFF, m.local_offset >= 0xFFFFFFFF
    if big_size or big_off:
        start += 4 + (16 if big_size else 0) + (8 if big_off else 0)
    return -(-start // align) * align


def open_zip(source, archive: ZipArchive | None = None):
    return TorchZipReader(source, archive)


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
        if q == "_codecs.encode" and len(items) == 2 and items[0].kind == "str" and items[1].kind == "str" \
                and items[1].value.replace("-", "") == "latin1":
            return items[0].value.encode("latin-1")  # how protocols < 3 write bytes
        if q in ("numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar") and len(items) == 2:
            value = _numpy_scalar(items[0], items[1])
            if value is not None:
                return value
        if q in ("builtins.slice", "__builtin__.slice"):
            return ObjectNode("slice", {"args": [leaf_value(i) for i in items]})
        return ObjectNode(q or "<computed>")
    if k == "ext":
        return ObjectNode(f"<extension {pv.value}>")
    return ObjectNode(f"<{k}>")


_NUMERIC_DTYPE = re.compile(r"^[<>|=]?[biufc][1-9][0-9]?$")


def _numpy_scalar(dtype_pv, data_pv):
    """A numpy scalar pickled as scalar(dtype('f8'), b'...'): decoded from its bytes when the
    dtype is a plain numeric one (nothing is imported or called), else None."""
    import numpy as np

    if dtype_pv.kind != "call" or dtype_pv.fn is None or dtype_pv.fn.qualname not in (
            "numpy.dtype", "numpy.core.multiarray.dtype", "numpy._core.multiarray.dtype"):
        return None
    args = dtype_pv.args.items if dtype_pv.args is not None and dtype_pv.args.kind == "tuple" else []
    if not args or args[0].kind != "str" or not _NUMERIC_DTYPE.match(args[0].value):
        return None
    order = "<"
    state = dtype_pv.state
    if state is not None and state.kind == "tuple" and len(state.items) > 1 and state.items[1].kind == "str":
        order = state.items[1].value if state.items[1].value in "<>|=" else "<"
    raw = leaf_value(data_pv)
    if isinstance(raw, str):
        raw = raw.encode("latin-1")
    if not isinstance(raw, bytes):
        return None
    dt = np.dtype(args[0].value.lstrip("<>|=")).newbyteorder(order if order != "|" else "=")
    if len(raw) != dt.itemsize:
        return None
    return np.frombuffer(raw, dtype=dt)[0].item()


def _ref_path(entries, i: int) -> str:
    """The path where the node of a REF entry is shown (following a REF to a REF)."""
    for _ in range(len(entries)):
        if i < 0 or i >= len(entries):
            return "?"
        e = entries[i]
        if e[2] != "ref":
            return e[0]
        i = e[3]
    return "?"


def build_tree(entries, by_name):
    """Nested dicts/lists from the walker's pre-order entries; tensors as TensorInfo leaves;
    a REF entry (a cycle, or a shared node already shown in an expansion bomb) as a SharedRef."""
    root_holder: list = []
    stack: list = []  # (depth, container, kind)
    objects: dict[int, object] = {}  # id(ObjectNode) -> its PV, to render tensor-free objects as leaves
    for path, depth, kind, target, key, value, cls in entries:
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
            objects[id(node)] = value
        elif kind == "ref":
            node = SharedRef(_ref_path(entries, target))
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
    return _finish(root, objects)


class _Tuple(list):
    """A tuple under construction (closed into a tuple by _finish)."""


def _has_tensor(node) -> bool:
    if isinstance(node, TensorInfo):
        return True
    if isinstance(node, ObjectNode):
        return any(_has_tensor(v) for v in node.fields.values())
    if isinstance(node, dict):
        return any(_has_tensor(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_tensor(v) for v in node)
    return False


def _finish(node, objects):
    if isinstance(node, SharedRef):
        return node
    if isinstance(node, ObjectNode):
        pv = objects.get(id(node))
        if pv is not None and not _has_tensor(node):
            value = leaf_value(pv)  # e.g. a numpy scalar, torch.Size, a device: rendered whole
            if not isinstance(value, ObjectNode) or not node.fields:
                return value
        return ObjectNode(node.cls, {k: _finish(v, objects) for k, v in node.fields.items()})
    if isinstance(node, dict):
        return {k: _finish(v, objects) for k, v in node.items()}
    if isinstance(node, _Tuple):
        return tuple(_finish(v, objects) for v in node)
    if isinstance(node, list):
        return [_finish(v, objects) for v in node]
    return node


def flatten_metadata(tree, prefix: str = "") -> dict:
    """Scalars and strings of a tree as {dotted path: value}; lists of scalars stay lists;
    tensors, opaque objects and shared references (SharedRef) are left out."""
    out: dict = {}
    scalar = (str, int, float, bool, bytes, type(None), complex)

    def walk(node, path):
        if isinstance(node, (TensorInfo, SharedRef)):
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
