"""safetensors writer: u64 header length, JSON header, the tensors' bytes back to back.

Layout choices (all within the format as the Rust crate validates it):
* tensors are ordered by element size, largest first (so every tensor starts at a multiple of
  its element size, as the crate's own writer arranges), keeping the source order otherwise;
  the buffer has no holes, as the format requires;
* the header is padded with spaces so the data start at a multiple of 64 bytes;
* `__metadata__` (string -> string) carries the source's metadata: a safetensors source's own
  `__metadata__` unchanged; for other sources `format: pt` (what transformers expects of torch
  weights), each safe scalar of the checkpoint (strings as they are, other values as JSON) and,
  for a torch checkpoint, its whole non-tensor structure as JSON under `mfparse.state`
  (see mfparse/writers/state.py), from which the torch writer can rebuild the checkpoint;
* safetensors has no shared storage: tensors that share one in the source (tied weights,
  views) are each written with their own bytes, once per tensor.
"""

from __future__ import annotations

import json
import os
import struct

from mfparse import dtypes
from mfparse.writers import base
from mfparse.writers.base import Item, Output, WriteError

FORMAT = "safetensors"
EXTENSIONS = (".safetensors",)

#: canonical dtype -> safetensors dtype string
DTYPES = {
    "bool": "BOOL", "uint8": "U8", "int8": "I8", "uint16": "U16", "int16": "I16", "uint32": "U32",
    "int32": "I32", "uint64": "U64", "int64": "I64", "float16": "F16", "bfloat16": "BF16",
    "float32": "F32", "float64": "F64", "complex64": "C64", "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2", "float8_e4m3fnuz": "F8_E4M3FNUZ", "float8_e5m2fnuz": "F8_E5M2FNUZ",
    "float8_e8m0fnu": "F8_E8M0", "float4_e2m1fn": "F4", "float6_e2m3fn": "F6_E2M3",
    "float6_e3m2fn": "F6_E3M2",
}
#: the Rust crate refuses headers larger than this
MAX_HEADER = 100_000_000
DATA_ALIGN = 64


def unsupported(item: Item) -> str | None:
    """Why an item cannot be written as safetensors, or None."""
    if item.dtype not in DTYPES:
        return f"dtype {item.dtype} has no safetensors equivalent"
    bits = dtypes.bits(item.dtype)
    if (item.numel * bits) % 8:
        return f"{item.numel} elements of {item.dtype} do not fill whole bytes"
    return None


def order(items: list[Item]) -> list[Item]:
    """Largest element size first, source order within a size."""
    return sorted(items, key=lambda it: -dtypes.bits(it.dtype))


def header_bytes(items: list[Item], metadata: dict[str, str] | None) -> bytes:
    """The 8-byte length plus the JSON header (space-padded so the data start 64-aligned)."""
    head: dict = {}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise WriteError(f"safetensors metadata must map str to str (key {k!r})")
        head["__metadata__"] = dict(metadata)
    pos = 0
    for it in items:
        if it.name in head or it.name == "__metadata__":
            raise WriteError(f"tensor name {it.name!r} appears twice or is reserved")
        head[it.name] = {"dtype": DTYPES[it.dtype], "shape": [int(d) for d in it.shape],
                         "data_offsets": [pos, pos + it.nbytes]}
        pos += it.nbytes
    text = json.dumps(head, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    n = len(text) + (-(8 + len(text)) % DATA_ALIGN)
    if n > MAX_HEADER:
        raise WriteError(f"safetensors header of {n:,} bytes exceeds the {MAX_HEADER:,}-byte limit readers enforce")
    return struct.pack("<Q", n) + text + b" " * (n - len(text))


def estimate_size(items: list[Item], metadata: dict[str, str] | None = None) -> int:
    return len(header_bytes(order(items), metadata)) + sum(it.nbytes for it in items)


def write(out: Output, items: list[Item], metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file of `items` with `metadata` as __metadata__."""
    for it in items:
        why = unsupported(it)
        if why:
            raise WriteError(f"tensor {it.name!r}: {why}")
    items = order(items)
    head = header_bytes(items, metadata)
    out.write(head)
    start = out.pos
    jobs, pos = [], start
    for it in items:
        jobs.append((it, pos))
        pos += it.nbytes
    if pos > start:
        out.copy_ranges(jobs, base.COPY_THREADS)
    out.pos = pos
    if out.fd is not None:
        os.lseek(out.fd, pos, os.SEEK_SET)
    elif hasattr(out.f, "seek"):
        out.f.seek(pos)
