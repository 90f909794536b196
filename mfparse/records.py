"""The records every layer shares: TensorInfo, ObjectNode, SharedRef, EMPTY and `to_jsonable`.

This module sits below the public API (`mfparse.api`), the format readers, the writers and the
extension, and imports none of them: readers build records, the API hands them out, tools
consume them. It imports neither numpy nor typing, so `import mfparse` stays light.
"""

from __future__ import annotations

import sys
from collections import namedtuple
from types import MappingProxyType

#: the shared empty extras mapping (read-only)
EMPTY = MappingProxyType({})

TensorInfo = namedtuple(
    "TensorInfo",
    ("name", "dtype", "shape", "nbytes", "offset", "storage", "stride", "extras", "file"),
    defaults=(None, None, EMPTY, None),
    module="mfparse.records",
)
TensorInfo.__doc__ = """One tensor stored in a model file, described without reading its data.

    Attributes:
        name: dotted name ("fc1.weight", "optimizer_state_dict.state.0.exp_avg").
        dtype: canonical dtype name ("float32", "bfloat16", "float8_e4m3fn", ...).
        shape: tuple of ints.
        nbytes: bytes stored: numel x itemsize (sub-byte types packed, rounded up to whole bytes).
        offset: file offset of the first element, or None when the data is not stored
            uncompressed in the file (compressed members, meta tensors).
        storage: id of the storage holding the data; tensors sharing a storage share it.
        stride: element strides (None means C-contiguous).
        extras: format-specific facts (device, quantization, ...).
        file: for a model of several files (shards, a model folder), the relative path of the
            file that holds the tensor; None when the model is one file.
    """


def _numel(self) -> int:
    n = 1
    for d in self.shape:
        n *= d
    return n


def _to_dict(self) -> dict:
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
        d["extras"] = to_jsonable(dict(self.extras))
    if self.file is not None:
        d["file"] = self.file
    return d


TensorInfo.numel = property(_numel, doc="Number of elements (product of the shape).")
TensorInfo.ndim = property(lambda self: len(self.shape), doc="Number of dimensions.")
TensorInfo.to_dict = _to_dict

ObjectNode = namedtuple("ObjectNode", ("cls", "fields"), defaults=(EMPTY,), module="mfparse.records")
ObjectNode.__doc__ = """An object in a checkpoint's structure that mfparse does not build (it is never
    imported): its class's qualified name and what it holds (attributes, items)."""
ObjectNode.__repr__ = lambda self: f"<{self.cls}>" if not self.fields else f"<{self.cls} {dict(self.fields)!r}>"


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


def to_jsonable(v):
    """v with every value JSON can hold kept, records turned into dicts, NaN into None, bytes
    into latin-1 text, numpy scalars into Python ones, small numpy arrays into lists and big
    ones summarized. numpy is looked at only when something imported it already (a numpy
    value cannot exist otherwise)."""
    if isinstance(v, TensorInfo):  # before tuple: both records are tuples
        return v.to_dict()
    if isinstance(v, SharedRef):  # before ObjectNode
        return {"$ref": v.path}
    if isinstance(v, ObjectNode):
        return {"__class__": v.cls, **{str(k): to_jsonable(x) for k, x in v.fields.items()}}
    if isinstance(v, dict):
        return {str(k): to_jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [to_jsonable(x) for x in v]
    if isinstance(v, (bytes, bytearray)):
        return v.decode("latin-1")
    if isinstance(v, float) and v != v:
        return None
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, complex):
        return [v.real, v.imag]
    np = sys.modules.get("numpy")
    if np is not None:
        if isinstance(v, np.generic):
            return to_jsonable(v.item())
        if isinstance(v, np.ndarray):
            if v.size <= 1024 and v.dtype.kind in "biufcUS":
                return to_jsonable(v.tolist())
            return {"__array__": str(v.dtype), "shape": list(v.shape)}  # big arrays (vocabularies): summarized
    return repr(v)
