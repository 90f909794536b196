"""ONNX writer: a model re-laid with its initializers in one external data file.

    mfparse convert model.onnx relaid.onnx     ->  relaid.onnx + relaid.onnx.data

What it writes: the model protobuf (graph, nodes, attributes, metadata unchanged) with every
initializer of at least SIZE_THRESHOLD bytes moved to `<dst name>.data` beside it
(data_location EXTERNAL, keys location/offset/length); tensors of at least 1 MiB start at a
multiple of 4096 bytes (the spec's advice, so they can be mapped page-aligned), smaller ones at
a multiple of 64. Both files are written atomically together.

From a non-ONNX source (a checkpoint, safetensors, ...) the output is a weights-only ONNX model:
a graph named "weights" with no nodes whose initializers are the source's tensors (each a
graph output, so runtimes and onnx.checker accept the model), external as above.

From an ONNX source, mfparse's own reader lists the tensors and every one is streamed from
its map (inline raw_data from the model's map, external data from its file); the graph itself
(nodes, attributes, metadata) is taken from `onnx.load(load_external_data=False)`, which holds
inline initializers in memory once while the model is rewritten. The `onnx` package is needed
for this writer only (an optional dependency).
"""

from __future__ import annotations

import os

import numpy as np

from mfparse import dtypes
from mfparse.writers import base
from mfparse.writers.base import Item, WriteError

FORMAT = "onnx"
EXTENSIONS = (".onnx",)
SIZE_THRESHOLD = 1024
PAGE_ALIGN_FROM = 1 << 20

#: canonical dtype -> ONNX TensorProto.DataType
ONNX_TYPES = {
    "float32": 1, "uint8": 2, "int8": 3, "uint16": 4, "int16": 5, "int32": 6, "int64": 7, "bool": 9,
    "float16": 10, "float64": 11, "uint32": 12, "uint64": 13, "complex64": 14, "complex128": 15,
    "bfloat16": 16, "float8_e4m3fn": 17, "float8_e4m3fnuz": 18, "float8_e5m2": 19, "float8_e5m2fnuz": 20,
    "uint4": 21, "int4": 22, "float4_e2m1fn": 23, "float8_e8m0fnu": 24,
}


def unsupported(item: Item) -> str | None:
    if item.dtype not in ONNX_TYPES:
        return f"dtype {item.dtype} has no ONNX tensor type"
    return None


def _onnx():
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise WriteError("writing ONNX needs the onnx package (pip install onnx)") from e
    return onnx


def data_name(dst: str) -> str:
    return os.path.basename(dst) + ".data"


def _align(size: int) -> int:
    return 4096 if size >= PAGE_ALIGN_FROM else 64


def _graphs(graph):
    """The graph and every subgraph of its nodes' attributes."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _graphs(attr.g)
            for g in attr.graphs:
                yield from _graphs(g)


class _SourceData:
    """Where each initializer's bytes come from, for an ONNX source parsed by onnx."""

    def __init__(self, src: str, by_name: dict[str, Item] | None):
        self.folder = os.path.dirname(os.path.abspath(src))
        self.by_name = by_name or {}
        self.fds: dict[str, int] = {}

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()

    def _external_fd(self, location: str) -> int:
        path = os.path.realpath(os.path.join(self.folder, location))
        if os.path.commonpath([path, os.path.realpath(self.folder)]) != os.path.realpath(self.folder):
            raise WriteError(f"external data location {location!r} escapes the model's folder")
        fd = self.fds.get(path)
        if fd is None:
            fd = self.fds[path] = os.open(path, os.O_RDONLY)
        return fd

    def item(self, tensor) -> Item | None:
        """An Item streaming the initializer's bytes, or None to leave it inline."""
        from onnx import external_data_helper, numpy_helper

        name = tensor.name
        ours = self.by_name.get(name)
        dt = next((k for k, v in ONNX_TYPES.items() if v == tensor.data_type), None)
        if dt is None:
            return None  # strings, undefined: stay inline
        shape = tuple(int(d) for d in tensor.dims)
        numel = int(np.prod(shape, dtype=np.int64)) if shape else 1
        nbytes = dtypes.nbytes(dt, numel)
        if ours is not None and ours.nbytes == nbytes:
            return ours
        if external_data_helper.uses_external_data(tensor):
            info = {e.key: e.value for e in tensor.external_data}
            off = int(info.get("offset", 0) or 0)
            fd = self._external_fd(info["location"])
            length = int(info["length"]) if info.get("length") else os.fstat(fd).st_size - off
            if length != nbytes or off + length > os.fstat(fd).st_size:
                raise WriteError(f"initializer {name!r}: external data holds {length} bytes at {off}, "
                                 f"expected {nbytes}")
            return Item(name, dt, shape, nbytes, None, (fd, off))
        if tensor.HasField("raw_data"):
            raw = np.frombuffer(tensor.raw_data, np.uint8)
            if raw.size != nbytes:
                raise WriteError(f"initializer {name!r}: raw_data holds {raw.size} bytes, expected {nbytes}")
            return Item(name, dt, shape, nbytes, raw)
        if dt in dtypes.PACKED:
            return None  # 4-bit values in typed fields: left as they are
        a = numpy_helper.to_array(tensor)
        return Item(name, dt, shape, nbytes, np.ascontiguousarray(a).reshape(-1).view(np.uint8))


def _clear(tensor) -> None:
    for f in ("float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data"):
        tensor.ClearField(f)
    tensor.ClearField("raw_data")
    del tensor.external_data[:]


def _weights_model(items: list[Item], source_format: str):
    """A weights-only model: initializers, each also a graph output, no nodes."""
    onnx = _onnx()
    from onnx import helper

    inits, outputs = [], []
    for it in items:
        t = onnx.TensorProto()
        t.name = it.name
        t.data_type = ONNX_TYPES[it.dtype]
        t.dims.extend(int(d) for d in it.shape)
        inits.append(t)
        outputs.append(helper.make_tensor_value_info(it.name, t.data_type, list(it.shape)))
    graph = helper.make_graph([], "weights", [], outputs, initializer=inits)
    model = helper.make_model(graph, producer_name="mfparse", opset_imports=[helper.make_opsetid("", 21)])
    model.doc_string = f"weights converted by mfparse from a {source_format} file"
    return model


def convert_model(m, items: list[Item], dst: str, result, *, progress=None, fsync=False, check_space=True,
                  overwrite=False) -> None:
    """convert() to ONNX from a source mfparse opened (any format); see the module docstring."""
    if m.format == "onnx" and m.path:
        relayout(m.path, dst, result, items=items, progress=progress, fsync=fsync, check_space=check_space,
                 overwrite=overwrite)
        return
    model = _weights_model(items, m.format)
    by_name = {it.name: it for it in items}
    _write(model, lambda t: by_name.get(t.name), dst, result, [m.path], progress, fsync, check_space, overwrite)


def relayout(src: str, dst: str, result, *, items: list[Item] | None = None, progress=None, fsync=False,
             check_space=True, overwrite=False) -> None:
    """Rewrite an ONNX model with its initializers in one aligned external data file."""
    onnx = _onnx()
    try:
        model = onnx.load(src, load_external_data=False)
    except Exception as e:  # onnx raises DecodeError and friends
        raise WriteError(f"{src}: not an ONNX model the onnx package can parse ({e})") from e
    data = _SourceData(src, {it.name: it for it in items} if items else None)
    try:
        inputs = [src] + [os.path.join(data.folder, loc) for loc in _locations(model)]
        _write(model, data.item, dst, result, inputs, progress, fsync, check_space, overwrite)
    finally:
        data.close()


def _locations(model) -> list[str]:
    from onnx import external_data_helper

    out = []
    for g in _graphs(model.graph):
        for t in g.initializer:
            if external_data_helper.uses_external_data(t):
                out += [e.value for e in t.external_data if e.key == "location"]
    return sorted(set(out))


def _write(model, item_for, dst: str, result, inputs, progress, fsync, check_space, overwrite) -> None:
    onnx = _onnx()
    from onnx import external_data_helper

    dst = os.fspath(dst)
    data_path = os.path.join(os.path.dirname(os.path.abspath(dst)), data_name(dst))
    base.refuse_overwrite(dst, inputs, overwrite)
    base.refuse_overwrite(data_path, inputs, overwrite)
    plan: list[tuple[object, Item, int]] = []
    inline = 0
    pos = 0
    for g in _graphs(model.graph):
        for t in g.initializer:
            it = item_for(t)
            if it is None:
                continue
            if it.nbytes < SIZE_THRESHOLD:
                inline += 1
                # small: inline (also when the source kept it in a side file we do not copy)
                if external_data_helper.uses_external_data(t) or not (t.HasField("raw_data") or _has_typed(t)):
                    raw = _item_bytes(it)
                    _clear(t)
                    t.data_location = onnx.TensorProto.DEFAULT
                    t.raw_data = raw
                continue
            pos += -pos % _align(it.nbytes)
            plan.append((t, it, pos))
            pos += it.nbytes
    for t, it, off in plan:
        _clear(t)
        for key, value in (("location", data_name(dst)), ("offset", str(off)), ("length", str(it.nbytes))):
            entry = t.external_data.add()
            entry.key, entry.value = key, value
        t.data_location = onnx.TensorProto.EXTERNAL
    proto = model.SerializeToString()
    if check_space:
        base.check_free_space(dst, len(proto) + pos)
    bar = base.make_progress(progress, pos, os.path.basename(dst))
    try:
        with base.atomic_outputs([data_path, dst], fsync=fsync) as (daf, maf):
            out = base.Output(daf.file, bar, daf.tmp_path)
            out.preallocate(pos)
            for _, it, off in plan:
                if out.pos < off:
                    out.write(b"\0" * (off - out.pos))
                out.write_item(it)
            out.finish()
            base.Output(maf.file).write(proto)
    finally:
        bar.close()
    result.tensors = len(plan) + inline
    result.bytes = os.path.getsize(dst) + os.path.getsize(data_path)
    result.notes.append(f"{len(plan)} initializer(s) in {data_name(dst)}; smaller ones stay inline")
    onnx.checker.check_model(dst)


def _item_bytes(it: Item) -> bytes:
    if it.file_range is not None:
        fd, off = it.file_range
        return os.pread(fd, it.nbytes, off)
    return b"".join(bytes(c) for c in base.iter_le_chunks(it.get_array()))


def _has_typed(t) -> bool:
    return any(len(getattr(t, f)) for f in ("float_data", "int32_data", "string_data", "int64_data", "double_data",
                                            "uint64_data"))
