"""PyTorch checkpoint writer (the zip format of torch.save >= 1.6), without torch.

mfparse writes the pickle itself, with only the opcodes and globals that
`torch.load(weights_only=True)` accepts: protocol 2 opcodes (no BINBYTES, no FRAME), tensors
rebuilt by `torch._utils._rebuild_tensor_v2` over the legacy typed storages (FloatStorage,
HalfStorage, ...) or, for dtypes without one (uint16, float8, ...), `_rebuild_tensor_v3` over
`torch.storage.UntypedStorage` plus the dtype, as torch.save does; parameters through
`_rebuild_parameter`; bytes through `_codecs.encode`, complex through `builtins.complex`.

Archive layout (what torch.save writes): `<archive>/data.pkl`, `.format_version` ("1"),
`.storage_alignment` ("64"), `byteorder` ("little"), one stored member `data/<key>` per
storage, `version` ("3"), every member's data aligned to 64 bytes.

Storages: each tensor gets a storage holding exactly its elements (offset 0, contiguous), so a
view of a bigger storage costs only its own bytes; tensors that are the same bytes in the
source (tied weights: same storage, offset, dtype, shape and strides) share one storage, as
they did. The structure is the source checkpoint's (dicts, lists, tuples, scalars); objects
mfparse does not import (ObjectNode) become plain dicts with a "__class__" key naming them,
since weights_only loading would refuse them. Every tensor is written on the CPU.
"""

from __future__ import annotations

import struct

from mfparse.records import ObjectNode
from mfparse.writers.base import Item, Output, WriteError
from mfparse.writers.zipwriter import ZipWriter

FORMAT = "torch-zip"
EXTENSIONS = (".pt", ".pth", ".bin", ".ckpt")
ARCHIVE = "archive"

#: dtypes with a legacy typed storage class (rebuilt with _rebuild_tensor_v2)
LEGACY_STORAGE = {
    "float32": "FloatStorage", "float64": "DoubleStorage", "float16": "HalfStorage",
    "bfloat16": "BFloat16Storage", "int64": "LongStorage", "int32": "IntStorage",
    "int16": "ShortStorage", "int8": "CharStorage", "uint8": "ByteStorage", "bool": "BoolStorage",
    "complex64": "ComplexFloatStorage", "complex128": "ComplexDoubleStorage",
}
#: dtypes written through UntypedStorage + the torch dtype (_rebuild_tensor_v3)
V3_DTYPES = {
    "uint16", "uint32", "uint64", "complex32", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz",
    "float8_e5m2fnuz", "float8_e8m0fnu", "float4_e2m1fn_x2", "bits8", "bits16", "bits1x8", "bits2x4",
    "bits4x2",
}
#: torch quantized dtypes, written as their raw integer storage (scales live in extras only)
RAW_QUANTIZED = {"qint8": "int8", "quint8": "uint8", "qint32": "int32", "quint4x2": "uint8", "quint2x4": "uint8"}


class MetaTensor:
    """A tensor without data (device "meta"): written with _rebuild_meta_tensor_no_storage."""

    def __init__(self, name: str, dtype: str, shape: tuple, requires_grad: bool = False):
        self.name, self.dtype, self.shape, self.requires_grad = name, dtype, tuple(shape), requires_grad


def unsupported(item: Item) -> str | None:
    dt = RAW_QUANTIZED.get(item.dtype, item.dtype)
    if dt in LEGACY_STORAGE or dt in V3_DTYPES:
        return None
    return f"dtype {item.dtype} has no torch equivalent"


# ---- pickle emitter --------------------------------------------------------------------------

class _Pickler:
    """Protocol-2 opcodes for plain data and tensor rebuild calls (see module docstring)."""

    def __init__(self):
        self.parts: list[bytes] = [b"\x80\x02"]
        self.memo: dict[tuple, int] = {}
        self.storages: list[tuple[str, Item]] = []
        self._keys: dict = {}
        self.notes: list[str] = []

    def w(self, b: bytes) -> None:
        self.parts.append(b)

    def getvalue(self) -> bytes:
        return b"".join(self.parts) + b"."

    # scalars
    def int_(self, v: int) -> None:
        if 0 <= v < 256:
            self.w(b"K" + bytes([v]))
        elif 0 <= v < 65536:
            self.w(b"M" + struct.pack("<H", v))
        elif -(1 << 31) <= v < (1 << 31):
            self.w(b"J" + struct.pack("<i", v))
        else:
            raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
            if len(raw) > 255:
                raise WriteError(f"integer with {len(raw)} bytes is too large for a checkpoint")
            self.w(b"\x8a" + bytes([len(raw)]) + raw)

    def str_(self, s: str) -> None:
        raw = s.encode("utf-8", "surrogatepass")
        self.w(b"X" + struct.pack("<I", len(raw)) + raw)

    def global_(self, module: str, name: str) -> None:
        key = ("g", module, name)
        idx = self.memo.get(key)
        if idx is not None:
            self.w(b"h" + bytes([idx]) if idx < 256 else b"j" + struct.pack("<I", idx))
            return
        self.w(b"c" + module.encode() + b"\n" + name.encode() + b"\n")
        idx = len(self.memo)
        self.memo[key] = idx
        self.w(b"q" + bytes([idx]) if idx < 256 else b"r" + struct.pack("<I", idx))

    def tuple_(self, values) -> None:
        values = list(values)
        if not values:
            self.w(b")")
            return
        if len(values) > 3:
            self.w(b"(")
        for v in values:
            self.obj(v)
        self.w({1: b"\x85", 2: b"\x86", 3: b"\x87"}.get(len(values), b"t"))

    def obj(self, v) -> None:
        if isinstance(v, Item):
            self.tensor(v)
        elif isinstance(v, MetaTensor):
            self.meta_tensor(v)
        elif isinstance(v, ObjectNode):  # a NamedTuple: before tuple
            self.notes.append(f"object {v.cls} written as a dict with a '__class__' key")
            self.obj({"__class__": v.cls, **dict(v.fields)})
        elif v is None:
            self.w(b"N")
        elif v is True:
            self.w(b"\x88")
        elif v is False:
            self.w(b"\x89")
        elif isinstance(v, int):
            self.int_(int(v))
        elif isinstance(v, float):
            self.w(b"G" + struct.pack(">d", v))
        elif isinstance(v, str):
            self.str_(v)
        elif isinstance(v, (bytes, bytearray)):
            self.global_("_codecs", "encode")
            self.tuple_([bytes(v).decode("latin-1"), "latin1"])
            self.w(b"R")
        elif isinstance(v, complex):
            self.global_("builtins", "complex")
            self.tuple_([v.real, v.imag])
            self.w(b"R")
        elif isinstance(v, tuple):
            self.tuple_(v)
        elif isinstance(v, list):
            self.w(b"]")
            for i in range(0, len(v), 1000):
                self.w(b"(")
                for x in v[i:i + 1000]:
                    self.obj(x)
                self.w(b"e")
        elif isinstance(v, dict):
            self.w(b"}")
            items = list(v.items())
            for i in range(0, len(items), 1000):
                self.w(b"(")
                for k, x in items[i:i + 1000]:
                    self.obj(k)
                    self.obj(x)
                self.w(b"u")
        else:
            raise WriteError(f"cannot write a {type(v).__name__} into a torch checkpoint")

    def meta_tensor(self, v: MetaTensor) -> None:
        """torch._utils._rebuild_meta_tensor_no_storage(dtype, size, stride, requires_grad)."""
        dt = RAW_QUANTIZED.get(v.dtype, v.dtype)
        if dt not in LEGACY_STORAGE and dt not in V3_DTYPES:
            raise WriteError(f"meta tensor {v.name!r}: dtype {v.dtype} has no torch equivalent")
        self.global_("torch._utils", "_rebuild_meta_tensor_no_storage")
        self.w(b"(")
        self.global_("torch", dt)
        self.tuple_([int(d) for d in v.shape])
        self.tuple_(_contiguous_strides(v.shape))
        self.w(b"\x88" if v.requires_grad else b"\x89")
        self.w(b"tR")

    def tensor(self, item: Item) -> None:
        why = unsupported(item)
        if why:
            raise WriteError(f"tensor {item.name!r}: {why}")
        dt = RAW_QUANTIZED.get(item.dtype, item.dtype)
        if dt != item.dtype:
            self.notes.append(f"tensor {item.name!r}: quantized {item.dtype} written as its raw {dt} values")
        key = self._keys.get(item.alias) if item.alias is not None else None
        if key is None:
            key = str(len(self.storages))
            self.storages.append((key, item))
            if item.alias is not None:
                self._keys[item.alias] = key
        parameter = bool(item.extras.get("parameter"))
        requires_grad = bool(item.extras.get("requires_grad"))
        if parameter:
            self.global_("torch._utils", "_rebuild_parameter")
            self.w(b"(")
        v3 = dt not in LEGACY_STORAGE
        self.global_("torch._utils", "_rebuild_tensor_v3" if v3 else "_rebuild_tensor_v2")
        self.w(b"(")
        # persistent id: ('storage', storage type, key, location, numel)
        self.w(b"(")
        self.str_("storage")
        if v3:
            self.global_("torch.storage", "UntypedStorage")
        else:
            self.global_("torch", LEGACY_STORAGE[dt])
        self.str_(key)
        self.str_("cpu")
        self.int_(item.nbytes if v3 else item.numel)
        self.w(b"tQ")
        self.int_(0)                                  # storage offset
        self.tuple_([int(d) for d in item.shape])     # size
        self.tuple_(_contiguous_strides(item.shape))  # stride
        self.w(b"\x88" if requires_grad and not parameter else b"\x89")
        self.global_("collections", "OrderedDict")     # backward hooks
        self.w(b")R")
        if v3:
            self.global_("torch", dt)
        self.w(b"tR")
        if parameter:
            self.w(b"\x88" if requires_grad else b"\x89")
            self.global_("collections", "OrderedDict")
            self.w(b")RtR")


def _contiguous_strides(shape) -> list[int]:
    out = [1] * len(shape)
    acc = 1
    for i in range(len(shape) - 1, -1, -1):
        out[i] = acc
        acc *= max(int(shape[i]), 1)
    return out


def pickle_checkpoint(obj) -> tuple[bytes, list[tuple[str, Item]], list[str]]:
    """The data.pkl bytes for obj (Items as tensors), the storages to write, and notes."""
    p = _Pickler()
    p.obj(obj)
    return p.getvalue(), p.storages, sorted(set(p.notes))


# ---- archive -----------------------------------------------------------------------------------

def _records(pkl: bytes) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    head = [("data.pkl", pkl), (".format_version", b"1"), (".storage_alignment", b"64"), ("byteorder", b"little")]
    tail = [("version", b"3\n")]
    return head, tail


def estimate_size(obj) -> int:
    pkl, storages, _ = pickle_checkpoint(obj)
    head, tail = _records(pkl)
    names = [n for n, _ in head + tail] + [f"data/{k}" for k, _ in storages]
    n = sum(len(b) for _, b in head + tail) + sum(it.nbytes for _, it in storages)
    return n + len(names) * (30 + 64 + 20 + 64) + ZipWriter.directory_size([f"{ARCHIVE}/{x}" for x in names])


def write(out: Output, obj, archive: str = ARCHIVE, force_zip64: bool = False) -> list[str]:
    """Write obj (a structure whose tensors are Items) as a torch checkpoint; returns notes."""
    pkl, storages, notes = pickle_checkpoint(obj)
    z = ZipWriter(out, force_zip64=force_zip64)
    head, tail = _records(pkl)
    for name, data in head:
        z.add_bytes(f"{archive}/{name}", data)
    for key, item in storages:
        z.begin(f"{archive}/data/{key}", item.nbytes)
        crc = out.write_item(item, crc=True)
        z.end(crc or 0)
    for name, data in tail:
        z.add_bytes(f"{archive}/{name}", data)
    z.close()
    return notes
