"""GGUF v3 writer for unquantized tensors (F32, F16, BF16, F64 and the integer types ggml has).

Layout (ggml docs/gguf.md): magic "GGUF", version 3, tensor count (u64), key-value count (u64),
the key-values, the tensor infos (name, n_dims, dims in ggml order = numpy's reversed, ggml
type, offset from the start of the data section), zero padding to the alignment (32, the
default, so `general.alignment` is not written), then each tensor's data at an offset that is
a multiple of the alignment.

Names longer than 63 bytes (llama.cpp's GGML_MAX_NAME counts the NUL) and tensors of more
than 4 dimensions are refused, as are dtypes ggml has no type for (bool, unsigned, float8).
Metadata: every safe scalar of the source becomes a key-value (strings, bools, int64,
float64, arrays of one scalar kind); other values are written as JSON strings.
"""

from __future__ import annotations

import json
import struct

from mfparse.writers.base import Item, Output, check_items

FORMAT = "gguf"
EXTENSIONS = (".gguf",)
ALIGNMENT = 32
MAX_NAME = 63
MAX_DIMS = 4

#: canonical dtype -> ggml type id
GGML_TYPES = {"float32": 0, "float16": 1, "int8": 24, "int16": 25, "int32": 26, "int64": 27,
              "float64": 28, "bfloat16": 30}

# GGUF value types
_U8, _I8, _U16, _I16, _U32, _I32, _F32, _BOOL, _STRING, _ARRAY, _U64, _I64, _F64 = range(13)


def unsupported(item: Item) -> str | None:
    if item.dtype not in GGML_TYPES:
        return f"dtype {item.dtype} has no unquantized ggml type"
    if len(item.name.encode("utf-8")) > MAX_NAME:
        return f"name longer than {MAX_NAME} bytes"
    if len(item.shape) > MAX_DIMS:
        return f"{len(item.shape)} dimensions (ggml has at most {MAX_DIMS})"
    return None


def _string(s: str) -> bytes:
    raw = s.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _scalar(v) -> tuple[int, bytes] | None:
    if isinstance(v, bool):
        return _BOOL, bytes([v])
    if isinstance(v, int):
        if -(1 << 63) <= v < (1 << 63):
            return _I64, struct.pack("<q", v)
        return None
    if isinstance(v, float):
        return _F64, struct.pack("<d", v)
    if isinstance(v, str):
        return _STRING, _string(v)
    return None


def _value(v) -> tuple[int, bytes]:
    """The GGUF type and encoded bytes of a metadata value."""
    s = _scalar(v)
    if s is not None:
        return s
    if isinstance(v, (list, tuple)) and v:
        enc = [_scalar(x) for x in v]
        kinds = {e[0] for e in enc if e is not None}
        if None not in enc and len(kinds) == 1:
            (kind,) = kinds
            return _ARRAY, struct.pack("<IQ", kind, len(enc)) + b"".join(e[1] for e in enc)
    return _STRING, _string(json.dumps(v, default=repr))


def kv_bytes(metadata: dict) -> tuple[int, bytes]:
    parts = []
    for k, v in metadata.items():
        key = str(k)
        if not key.isascii():
            key = key.encode("ascii", "backslashreplace").decode("ascii")
        t, raw = _value(v)
        parts.append(_string(key) + struct.pack("<I", t) + raw)
    return len(parts), b"".join(parts)


def layout(items: list[Item]) -> list[int]:
    """Data-section offsets of the items (each aligned)."""
    offs = []
    pos = 0
    for it in items:
        pos += -pos % ALIGNMENT
        offs.append(pos)
        pos += it.nbytes
    return offs


def header_bytes(items: list[Item], metadata: dict) -> bytes:
    nkv, kvs = kv_bytes(metadata)
    parts = [b"GGUF", struct.pack("<IQQ", 3, len(items), nkv), kvs]
    for it, off in zip(items, layout(items)):
        dims = [int(d) for d in reversed(it.shape)]
        parts.append(_string(it.name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
                     + struct.pack("<IQ", GGML_TYPES[it.dtype], off))
    head = b"".join(parts)
    return head + b"\0" * (-len(head) % ALIGNMENT)


def estimate_size(items: list[Item], metadata: dict) -> int:
    offs = layout(items)
    end = offs[-1] + items[-1].nbytes if items else 0
    return len(header_bytes(items, metadata)) + end


def write(out: Output, items: list[Item], metadata: dict | None = None) -> None:
    check_items(items, unsupported)
    head = header_bytes(items, metadata or {})
    out.write(head)
    start = out.pos
    for it, off in zip(items, layout(items)):
        pad = start + off - out.pos
        if pad:
            out.write(b"\0" * pad)
        out.write_item(it)
