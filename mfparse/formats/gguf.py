"""GGUF v2/v3 (llama.cpp, ggml): header parsed in C (csrc/mf_gguf.c); data are zero-copy views.

Shapes are given in numpy order (GGUF stores ggml order, innermost dimension first, so a
stored [4096, 32000] is the numpy shape (32000, 4096)). Plain types (F32, F16, BF16, F64,
I8..I64) read as numpy arrays. Block-quantized types (Q4_0, Q8_0, the K-quants, IQ*, ...)
are listed with their logical shape, dtype ``ggml_<type>`` (e.g. ``ggml_q4_k``) and the byte
size of their blocks; reading one gives the raw blocks as uint8 with shape
``shape[:-1] + (row bytes,)`` (as gguf-py does), and :func:`dequantize` decodes it to
float32. ``TensorInfo.extras`` carries ``ggml_type``, ``ggml_type_id``, ``block_size``
(elements per block), ``block_bytes`` and, for block types, ``quantization``.

Metadata values are decoded on demand: numeric arrays are read-only numpy views of the file,
string arrays (vocabularies of 150,000 tokens) are :class:`StringArray` sequences that decode
a string when it is asked for.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from types import MappingProxyType

from mfparse._lazy import numpy as np

from mfparse import _native, dtypes
from mfparse.records import TensorInfo
from mfparse.errors import CorruptFileError, UnsupportedFormatError
from mfparse.formats.base import Reader, opened, parse_windows, read_at, reader_of, source_view

MAGIC = b"GGUF"

#: value type codes
VALUE_TYPES = ("u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64")
_NUMPY_VALUE = {0: "u1", 1: "i1", 2: "u2", 3: "i2", 4: "u4", 5: "i4", 6: "f4", 7: "?", 10: "u8", 11: "i8",
                12: "f8"}


@functools.lru_cache(maxsize=1)
def ggml_types() -> dict:
    """{type id: (name, elements per block, bytes per block, mf dtype code, dequantizable)}."""
    return _native.gguf_types()


def type_by_name(name: str) -> int:
    """The ggml type id of a name such as "Q4_K" (KeyError if unknown)."""
    for tid, row in ggml_types().items():
        if row[0] == name.upper():
            return tid
    raise KeyError(name)


#: ggml types that :func:`dequantize` decodes (block types by the C kernels, plain ones by numpy)
DEQUANTIZE_TYPES = tuple(sorted(row[0] for row in ggml_types().values() if row[4] or row[1] == 1))


class StringArray(Sequence):
    """A GGUF array of strings, decoded lazily from the file's bytes.

    Indexing, slicing and iteration decode only the strings asked for; the offsets of all
    strings are found in one C pass on first use.
    """

    def __init__(self, buf, offset: int, count: int, big_endian: bool):
        # a numpy view keeps the file's map alive after the ModelFile closes, as arrays do
        self._buf = np.frombuffer(buf, dtype=np.uint8)
        self._offset = offset
        self._count = count
        self._be = big_endian
        self._offs = None

    def _offsets(self) -> list:
        if self._offs is None:
            self._offs = _native.gguf_string_offsets(self._buf, self._offset, self._count, self._be).tolist()
        return self._offs

    def __len__(self) -> int:
        return self._count

    def _get(self, i: int) -> str:
        o = self._offsets()
        return self._buf[o[i] + 8:o[i + 1]].tobytes().decode("utf-8", "backslashreplace")

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._get(k) for k in range(*i.indices(self._count))]
        if i < 0:
            i += self._count
        if not 0 <= i < self._count:
            raise IndexError(i)
        return self._get(i)

    def __iter__(self):
        o = self._offsets()
        buf = self._buf
        for k in range(self._count):
            yield buf[o[k] + 8:o[k + 1]].tobytes().decode("utf-8", "backslashreplace")

    def tolist(self) -> list:
        return list(self)

    def __eq__(self, other) -> bool:
        if isinstance(other, (StringArray, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def __repr__(self) -> str:
        head = ", ".join(repr(s) for s in self[:5])
        return f"StringArray([{head}{', ...' if self._count > 5 else ''}], n={self._count})"


class GGUFReader(Reader):
    format = "gguf"

    def __init__(self, source):
        super().__init__(source)
        # a remote file: the header, key/values and tensor table as a prefix that grows by what
        # the parser estimates it still needs (a vocabulary, the rest of the table)
        (self.version, self.big_endian, self.alignment, self.data_start, kvs,
         rows) = parse_windows(_native.gguf_parse, source, grow=True, prefix=True)
        self.byteorder = ">" if self.big_endian else "<"
        self._kvs = {}
        for key, vtype, value in kvs:
            if key in self._kvs:
                raise CorruptFileError(f"gguf metadata key {key!r} appears twice", None)
            self._kvs[key] = (vtype, value)
        self._meta = None
        self._tensors = self._infos(rows)

    def _infos(self, rows) -> list:
        """TensorInfos of the C records; one shared extras mapping per ggml type."""
        types = ggml_types()
        names = dtypes.NAMES
        per_type: dict[int, tuple] = {}
        new = tuple.__new__
        infos = []
        append = infos.append
        for name, shape, tid, offset, nbytes, _info_at in rows:
            entry = per_type.get(tid)
            if entry is None:
                tname, block, bbytes, dcode, _deq = types[tid]
                e = {"ggml_type": tname, "ggml_type_id": tid, "block_size": block, "block_bytes": bbytes}
                if block > 1:
                    e["quantization"] = {"scheme": "ggml", "type": tname, "bits_per_weight": bbytes * 8 / block}
                if self.big_endian:
                    e["byteorder"] = ">"
                dtype = names[dcode] if block == 1 else "ggml_" + tname.lower()
                entry = per_type[tid] = (dtype, MappingProxyType(e))
            append(new(TensorInfo, (name, entry[0], shape, nbytes, offset, None, None, entry[1], None)))
        if len({t[0] for t in infos}) != len(infos):
            seen = set()
            for (name, *_rest, info_at) in rows:
                if name in seen:
                    raise CorruptFileError(f"gguf tensor name {name!r} appears twice", info_at)
                seen.add(name)
        return infos

    # ---- data ---------------------------------------------------------------------------------

    def read(self, info: TensorInfo) -> np.ndarray:
        if info.extras.get("block_size", 1) == 1:
            return source_view(self.source, info, self.byteorder)
        if self.source.buf is None:
            if info.offset is None or info.offset + info.nbytes > self.source.size:
                raise CorruptFileError(f"tensor {info.name!r} data ({info.nbytes} bytes) runs past the end of the file",
                                       info.offset)
            data = read_at(self.source, info.offset, info.nbytes)
            return raw_blocks(data, info._replace(offset=0))
        return raw_blocks(self.source.buf, info)

    # ---- metadata -----------------------------------------------------------------------------

    def metadata(self) -> dict:
        if self._meta is None:
            buf = self.source.buf
            if buf is None:  # a remote file: the whole header (array values too), one fetch
                from mfparse.io.sparse import sparse_map

                smap = sparse_map(self.source)
                smap.fetch([(0, self.data_start)])
                buf = smap.view
            self._meta = {key: self._decode(buf, vtype, value) for key, (vtype, value) in self._kvs.items()}
        return dict(self._meta)

    def value_type(self, key: str) -> str:
        """The GGUF value type of a metadata key ("u32", "string", "array[f32]", ...)."""
        vtype, value = self._kvs[key]
        name = VALUE_TYPES[vtype]
        return f"array[{VALUE_TYPES[value[0]]}]" if vtype == 9 else name

    def _decode(self, buf, vtype: int, value):
        if vtype != 9:
            return value
        etype, count, data, _end = value
        return self._array(buf, etype, count, data)

    def _array(self, buf, etype: int, count: int, data: int):
        if etype in _NUMPY_VALUE:
            dt = np.dtype(self.byteorder + _NUMPY_VALUE[etype]) if etype not in (0, 1, 7) else np.dtype(_NUMPY_VALUE[etype])
            return np.frombuffer(buf, dtype=dt, count=count, offset=data)
        if etype == 8:
            return StringArray(buf, data, count, self.big_endian)
        # arrays of arrays: decoded element by element
        out = []
        at = data
        for _ in range(count):
            (sub_t, sub_n, sub_data, sub_end), at = _native.gguf_value_at(buf, at, 9, self.big_endian)
            out.append(self._array(buf, sub_t, sub_n, sub_data))
        return out

    def tree(self):
        return {"metadata": self.metadata(), "tensors": {t.name: t for t in self._tensors}}


def raw_blocks(buf, info: TensorInfo) -> np.ndarray:
    """A block-quantized tensor's bytes as uint8, shaped shape[:-1] + (bytes per row,)."""
    n = info.nbytes
    if info.offset is None or info.offset + n > len(buf):
        raise CorruptFileError(f"tensor {info.name!r} data ({n} bytes) runs past the end of the file", info.offset)
    arr = np.frombuffer(buf, dtype=np.uint8, count=n, offset=info.offset)
    shape = info.shape or (1,)
    row = shape[-1] // info.extras["block_size"] * info.extras["block_bytes"]
    return arr.reshape(tuple(shape[:-1]) + (row,))


def dequantize(m, name: str) -> np.ndarray:
    """A GGUF tensor decoded to float32, in its logical (numpy-order) shape.

    Args:
        m: an open ModelFile of a GGUF file (from mfparse.open), its Reader, or a path to one.
        name: the tensor's name.

    Returns:
        A new float32 array. Plain float and integer types are converted; block types
        listed in DEQUANTIZE_TYPES (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, Q8_K, TQ2_0)
        are decoded by C kernels that follow ggml's reference dequantization.

    Raises:
        UnsupportedFormatError: the tensor's type cannot be dequantized (IQ types, ...) or the
            file is big-endian and the type is block-quantized.

    Example:
        >>> with mfparse.open("model-Q4_K_M.gguf") as m:
        ...     w = mfparse.formats.gguf.dequantize(m, "blk.0.attn_q.weight")
    """
    reader = reader_of(m)
    if reader is None:
        with opened(m, GGUFReader) as reader:
            return dequantize(reader, name)
    info = {t.name: t for t in reader.tensors()}[name]
    if "ggml_type_id" not in info.extras:
        raise UnsupportedFormatError(f"tensor {name!r} is not a GGUF tensor")
    tid = info.extras["ggml_type_id"]
    tname, block, _bytes, _dcode, can = ggml_types()[tid]
    data = reader.read(info)
    if block == 1:
        return np.asarray(data, dtype=np.float32)
    if not can:
        raise UnsupportedFormatError(f"dequantizing ggml type {tname} (tensor {name!r}) is not supported; "
                                     f"supported: {', '.join(DEQUANTIZE_TYPES)}", info.offset)
    if info.extras.get("byteorder") == ">":
        raise UnsupportedFormatError(f"dequantizing {tname} blocks of a big-endian GGUF file is not supported",
                                     info.offset)
    out = _native.gguf_dequantize(tid, data.reshape(-1), info.numel)
    return out.reshape(info.shape)


def open_reader(source):
    return GGUFReader(source)
