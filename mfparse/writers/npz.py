""".npz writer: an uncompressed zip of `<name>.npy` members, as numpy.savez writes them.

Each member is an .npy file (format 1.0, or 2.0 when the header needs more than 64 KiB) whose
header is padded so the array data start at a multiple of 64 bytes of the member, and each
member starts 64-aligned in the archive, so the arrays of the written file can be mapped
aligned. .npz has no place for metadata: a conversion to .npz keeps the tensors only (and says
so in its notes). dtypes numpy cannot describe in an .npy header (bfloat16, float8, packed
4-bit) are refused.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from mfparse import dtypes
from mfparse.writers.base import Item, Output, WriteError, check_items
from mfparse.writers.zipwriter import ZipWriter

FORMAT = "npz"
EXTENSIONS = (".npz",)
_NUMPY_NATIVE = {
    "bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float16",
    "float32", "float64", "complex64", "complex128",
}


def unsupported(item: Item) -> str | None:
    if item.dtype not in _NUMPY_NATIVE:
        return f"dtype {item.dtype} cannot be described in an .npy header"
    return None


def npy_header(item: Item) -> bytes:
    """The .npy magic, version, header length and header dict for an item (little-endian)."""
    descr = np.lib.format.dtype_to_descr(dtypes.numpy_dtype(item.dtype, "<"))
    shape = tuple(int(d) for d in item.shape)
    text = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (descr, shape)
    raw = text.encode("latin-1")
    for version, lenfmt in (((1, 0), "<H"), ((2, 0), "<I")):
        fixed = 6 + 2 + struct.calcsize(lenfmt)
        total = fixed + len(raw) + 1
        pad = -total % 64
        hlen = len(raw) + pad + 1
        if lenfmt == "<H" and hlen > 0xFFFF:
            continue
        return b"\x93NUMPY" + bytes(version) + struct.pack(lenfmt, hlen) + raw + b" " * pad + b"\n"
    raise WriteError(f"tensor {item.name!r}: .npy header too large")


def member_name(name: str) -> str:
    return name + ".npy"


def estimate_size(items: list[Item]) -> int:
    names = [member_name(it.name) for it in items]
    return (sum(len(npy_header(it)) + it.nbytes + 30 + 64 + 20 + 64 + len(n) for it, n in zip(items, names))
            + ZipWriter.directory_size(names))


def write(out: Output, items: list[Item], force_zip64: bool = False) -> None:
    check_items(items, unsupported)
    z = ZipWriter(out, force_zip64=force_zip64)
    for it in items:
        head = npy_header(it)
        z.begin(member_name(it.name), len(head) + it.nbytes)
        out.write(head)
        z.end(out.write_item(it, crc=True, crc_init=zlib.crc32(head)))
    z.close()

