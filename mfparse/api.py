"""The public API: open(), ModelFile, TensorInfo.

Example:
    >>> import mfparse
    >>> with mfparse.open("model.pth") as m:
    ...     for t in m.tensors():
    ...         print(t.name, t.dtype, t.shape)
    ...     w = m["fc1.weight"]          # numpy view of the file's bytes
"""

from __future__ import annotations

import os
from types import MappingProxyType
from typing import Any, Iterator, Mapping, NamedTuple

import numpy as np

from mfparse.errors import MFParseError

EMPTY: Mapping[str, Any] = MappingProxyType({})


class TensorInfo(NamedTuple):
    """One tensor stored in a model file, described without reading its data.

    Attributes:
        name: dotted name ("fc1.weight", "optimizer_state_dict.state.0.exp_avg").
        dtype: canonical dtype name ("float32", "bfloat16", "float8_e4m3fn", ...).
        shape: tuple of ints.
        nbytes: numel x itemsize (sub-byte types rounded up to whole bytes).
        offset: file offset of the first element, or None when the data is not stored
            uncompressed in the file (compressed members, meta tensors).
        storage: id of the storage holding the data; tensors sharing a storage share it.
        stride: element strides (None means C-contiguous).
        extras: format-specific facts (device, quantization, ...).
    """

    name: str
    dtype: str
    shape: tuple
    nbytes: int
    offset: int | None
    storage: str | None = None
    stride: tuple | None = None
    extras: Mapping[str, Any] = EMPTY

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        d = {
            "name": self.name,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "nbytes": self.nbytes,
            "offset": self.offset,
            "storage": self.storage,
        }
        if self.stride is not None:
            d["stride"] = list(self.stride)
        if self.extras:
            d["extras"] = _jsonable(dict(self.extras))
        return d


class ObjectNode(NamedTuple):
    """An object in a checkpoint's structure that mfparse does not build (it is never
    imported): its class's qualified name and what it holds (attributes, items)."""

    cls: str
    fields: Mapping[str, Any] = EMPTY

    def __repr__(self) -> str:
        return f"<{self.cls}>" if not self.fields else f"<{self.cls} {dict(self.fields)!r}>"


class SharedRef(ObjectNode):
    """A place in a checkpoint's structure that holds a node already shown elsewhere in the
    tree: the same object reached again inside itself (a cycle), or, in a file whose shared
    references would expand past mfparse's bound (an expansion bomb), a memo-shared node reached
    again. `path` is the dotted path where the node is shown ("" for the root). It is an
    ObjectNode (cls "<shared>", fields {"$ref": path}) so that code handling ObjectNodes keeps
    working; JSON output renders it as {"$ref": path}."""

    __slots__ = ()

    def __new__(cls, path: str):
        return tuple.__new__(cls, ("<shared>", MappingProxyType({"$ref": path})))

    def __getnewargs__(self):
        return (self.path,)

    @property
    def path(self) -> str:
        return self.fields["$ref"]

    def __repr__(self) -> str:
        return f"<same as {self.path or 'the root'}>"


def _jsonable(v):
    if isinstance(v, TensorInfo):  # before tuple: both named tuples are tuples
        return v.to_dict()
    if isinstance(v, SharedRef):  # before ObjectNode
        return {"$ref": v.path}
    if isinstance(v, ObjectNode):
        return {"__class__": v.cls, **{str(k): _jsonable(x) for k, x in v.fields.items()}}
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (bytes, bytearray)):
        return v.decode("latin-1")
    if isinstance(v, float) and v != v:
        return None
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, complex):
        return [v.real, v.imag]
    if isinstance(v, np.generic):
        return _jsonable(v.item())
    if isinstance(v, np.ndarray):
        if v.size <= 1024 and v.dtype.kind in "biufcUS":
            return _jsonable(v.tolist())
        return {"__array__": str(v.dtype), "shape": list(v.shape)}  # big arrays (vocabularies): summarized
    return repr(v)


class ModelFile:
    """An open model file. Use as a context manager, or call close().

    Attributes:
        format: "torch-zip", "torch-legacy", "torchscript", "safetensors", ...
        path: the file's path, or None for bytes and anonymous streams.
        size: file size in bytes.
    """

    def __init__(self, reader, source):
        self._reader = reader
        self._source = source
        self.format: str = reader.format
        self.path: str | None = source.path
        self.size: int = source.size
        self._infos = reader.tensors()
        self._by_name: dict[str, TensorInfo] | None = None

    # ---- listing ------------------------------------------------------------------------------

    def tensors(self) -> Iterator[TensorInfo]:
        """Every tensor stored in the file, in file order (no data is read)."""
        return iter(self._infos)

    def _index(self) -> dict[str, TensorInfo]:
        if self._by_name is None:
            self._by_name = {t.name: t for t in self._infos}
        return self._by_name

    def info(self, name: str) -> TensorInfo:
        """The TensorInfo of one tensor (KeyError if absent)."""
        return self._index()[name]

    def keys(self) -> list[str]:
        return [t.name for t in self._infos]

    def __contains__(self, name) -> bool:
        return name in self._index()

    def __len__(self) -> int:
        return len(self._infos)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    # ---- data ---------------------------------------------------------------------------------

    def __getitem__(self, name: str) -> np.ndarray:
        """The tensor's data as numpy: a read-only view of the file when the layout allows."""
        return self.read(self._index()[name])

    def read(self, info: TensorInfo) -> np.ndarray:
        """The data of a TensorInfo from this file."""
        self._check_open()
        return self._reader.read(info)

    def _buffer_address(self) -> int | None:
        """Address of the first byte of the file's map (internal: lets writers tell, without
        touching a page, whether an array read from this file is a view of it, and where)."""
        self._check_open()
        buf = self._source.buf
        if len(buf) == 0:
            return None
        return np.frombuffer(buf, dtype=np.uint8, count=1).__array_interface__["data"][0]

    # ---- structure ----------------------------------------------------------------------------

    @property
    def metadata(self) -> dict:
        """Safe scalars and strings: epoch, best_acc, __metadata__, model config, ..."""
        return self._reader.metadata()

    def tree(self):
        """The file's nested structure with TensorInfo leaves (e.g. model_state_dict /
        optimizer_state_dict / epoch for a training checkpoint). A node reached again inside
        itself, or a shared node of a file whose shared references would expand past mfparse's
        bound, appears once and is then a SharedRef naming the path where it is shown."""
        return self._reader.tree()

    @property
    def graph(self):
        """Inputs, outputs and operators for graph formats (ONNX, TFLite, SavedModel); else None."""
        return self._reader.graph

    # ---- lifetime -----------------------------------------------------------------------------

    def _check_open(self):
        if self._source is None:
            raise ValueError("I/O operation on a closed model file")

    def close(self) -> None:
        if self._source is not None:
            close = getattr(self._reader, "close", None)
            if close is not None:
                close()
            self._source.close()
            self._source = None

    def __enter__(self) -> "ModelFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.path or f"<{self.size} bytes>"
        return f"<mfparse.ModelFile {self.format} {where!r} tensors={len(self._infos)}>"


def open(source, format: str | None = None) -> ModelFile:
    """Open a model file without running or importing anything it names.

    Args:
        source: a path (str or pathlib.Path), bytes, or a binary file object. A path may
            also name a SavedModel or checkpoint folder, or a checkpoint prefix.
        format: force a format ("torch-zip", "safetensors", ...) instead of detecting it.

    Returns:
        A ModelFile; use it as a context manager.

    Raises:
        UnsupportedFormatError: the bytes are not a format mfparse reads.
        CorruptFileError: the file is damaged (the message names the byte offset).

    Example:
        >>> with mfparse.open("model.safetensors") as m:
        ...     print(m.format, len(m))
    """
    from mfparse.formats import open_reader, resolve_path
    from mfparse.source import Source

    src = Source(resolve_path(source, format))
    try:
        reader = open_reader(src, format)
        return ModelFile(reader, src)
    except MFParseError as e:
        if e.path is None and src.path is not None:
            e.path = os.fspath(src.path)
        src.close()
        raise
    except BaseException:
        src.close()
        raise
