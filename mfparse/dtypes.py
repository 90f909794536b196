"""Canonical dtype names and their numpy dtypes.

Names are numpy's where numpy has one (``float32``, ``int8``, ``bool``, ``complex64``...), plus
``bfloat16``, the float8 family, ``int4``/``uint4`` and friends, whose numpy dtypes come from
ml_dtypes (imported only when such a tensor is read). Quantized torch types (``qint8``...) read
as their raw integer storage; torch's packed types (``float4_e2m1fn_x2``, ``quint4x2``) as raw
bytes. Sub-byte types (PACKED: ``int4``, ``uint4``, ``float4_e2m1fn``, ``int2``, ``uint2``, the
float6 pair) are stored several to a byte; `unpack` turns such bytes into one ml_dtypes element
each, as onnx.numpy_helper does.
"""

from __future__ import annotations

import functools

from mfparse._lazy import numpy as np

from mfparse import _native
from mfparse.errors import CorruptFileError

#: canonical name of each C dtype code (index = code), e.g. NAMES[12] == "float32"
NAMES: tuple[str, ...] = tuple(_native.dtype_names())
#: bits per element of each C dtype code
BITS: tuple[int, ...] = tuple(_native.dtype_bits())
_CODE = {name: code for code, name in enumerate(NAMES)}

_NUMPY = {
    "bool": "bool",
    "uint8": "uint8",
    "int8": "int8",
    "uint16": "uint16",
    "int16": "int16",
    "uint32": "uint32",
    "int32": "int32",
    "uint64": "uint64",
    "int64": "int64",
    "float16": "float16",
    "float32": "float32",
    "float64": "float64",
    "complex64": "complex64",
    "complex128": "complex128",
    # quantized and bit types read as their raw storage
    "qint8": "int8",
    "quint8": "uint8",
    "qint32": "int32",
    "quint4x2": "uint8",
    "quint2x4": "uint8",
    "float4_e2m1fn_x2": "uint8",
    "bits8": "uint8",
    "bits16": "uint16",
    "bits1x8": "uint8",
    "bits2x4": "uint8",
    "bits4x2": "uint8",
    "qint16": "int16",
    "quint16": "uint16",
}

_ML_DTYPES = {
    "bfloat16": "bfloat16",
    "float8_e4m3fn": "float8_e4m3fn",
    "float8_e5m2": "float8_e5m2",
    "float8_e4m3fnuz": "float8_e4m3fnuz",
    "float8_e5m2fnuz": "float8_e5m2fnuz",
    "float8_e8m0fnu": "float8_e8m0fnu",
    "float4_e2m1fn": "float4_e2m1fn",
    "float6_e2m3fn": "float6_e2m3fn",
    "float6_e3m2fn": "float6_e3m2fn",
    "int4": "int4",
    "uint4": "uint4",
    "int2": "int2",
    "uint2": "uint2",
    "float8_e4m3b11fnuz": "float8_e4m3b11fnuz",
}

#: dtypes stored with several elements per byte. ModelFile.read unpacks them for the formats
#: whose packing is known (ONNX, TFLite: see unpack); read(info, packed=True) returns the bytes
PACKED = frozenset({"float4_e2m1fn", "float6_e2m3fn", "float6_e3m2fn", "int4", "uint4", "int2", "uint2"})


def code(name: str) -> int:
    """C dtype code of a canonical name (0 if unknown)."""
    return _CODE.get(name, 0)


def bits(name: str) -> int:
    """Bits per element of a canonical dtype name."""
    return BITS[_CODE.get(name, 0)]


def nbytes(name: str, numel: int) -> int:
    """Bytes that numel elements of this dtype occupy (sub-byte types rounded up)."""
    return (numel * bits(name) + 7) // 8


@functools.lru_cache(maxsize=None)
def numpy_dtype(name: str, byteorder: str = "<") -> np.dtype:
    """The numpy dtype that views stored elements of `name` (byteorder '<' or '>').

    Raises:
        TypeError: when the dtype has no numpy representation.
    """
    if name in _NUMPY:
        dt = np.dtype(_NUMPY[name])
    elif name == "complex32":
        dt = np.dtype([("real", "<f2"), ("imag", "<f2")])
    elif name in _ML_DTYPES:
        import ml_dtypes

        dt = np.dtype(getattr(ml_dtypes, _ML_DTYPES[name]))
    else:
        raise TypeError(f"dtype {name!r} has no numpy equivalent")
    if byteorder == ">" and dt.itemsize > 1 and dt.fields is None:
        dt = dt.newbyteorder(">")
    return dt


def unpack(raw: np.ndarray, name: str, shape: tuple, offset: int | None = None) -> np.ndarray:
    """Sub-byte elements packed low bits first -> an array of `name`'s ml_dtypes type with
    `shape` (one element per byte, its code in the low bits: what onnx.numpy_helper.to_array
    returns). The order is ONNX's and TFLite's: element 0 in the lowest bits of byte 0; 4-bit
    types two to a byte, 2-bit types four, 6-bit types a little-endian bit stream (4 values in 3
    bytes). Bytes beyond ceil(numel x bits / 8) are not read.

    Raises:
        CorruptFileError: raw holds fewer bytes than the elements need (offset names where).
    """
    width = bits(name)
    numel = 1
    for d in shape:
        numel *= d
    need = (numel * width + 7) // 8
    raw = np.asarray(raw).reshape(-1).view(np.uint8)
    if raw.size < need:
        raise CorruptFileError(f"{name} data of {raw.size} bytes is too short for {numel} elements "
                               f"({need} bytes)", offset)
    raw = raw[:need]
    if width == 4:
        codes = np.empty(need * 2, np.uint8)
        np.bitwise_and(raw, 0x0F, out=codes[0::2])
        np.right_shift(raw, 4, out=codes[1::2])
    elif width == 2:
        codes = np.empty(need * 4, np.uint8)
        for k in range(4):
            np.bitwise_and(np.right_shift(raw, 2 * k), 0x03, out=codes[k::4])
    elif width == 6:
        groups = -(-need // 3)
        g = np.zeros(groups * 3, np.uint8)
        g[:need] = raw
        g = g.reshape(-1, 3)
        codes = np.empty((groups, 4), np.uint8)
        codes[:, 0] = g[:, 0] & 0x3F
        codes[:, 1] = (g[:, 0] >> 6) | ((g[:, 1] & 0x0F) << 2)
        codes[:, 2] = (g[:, 1] >> 4) | ((g[:, 2] & 0x03) << 4)
        codes[:, 3] = g[:, 2] >> 2
        codes = codes.reshape(-1)
    else:
        raise TypeError(f"dtype {name!r} is not a packed sub-byte type")
    return codes[:numel].view(numpy_dtype(name)).reshape(shape)
