"""What every format reader shares: the Reader interface and array views of stored bytes."""

from __future__ import annotations

from contextlib import contextmanager

from mfparse._lazy import numpy as np

from mfparse import dtypes
from mfparse.records import TensorInfo
from mfparse.errors import CorruptFileError, UnsupportedFormatError


class Reader:
    """One open file of one format. Subclasses set `format` and fill `_tensors`."""

    format = "unknown"
    graph = None  # graph formats override it with a property (inputs, outputs, operators)
    #: sub-byte dtypes (dtypes.PACKED) this format packs low bits first, as dtypes.unpack reads
    #: them: read() returns their stored bytes (uint8) and ModelFile.read unpacks them
    unpacks: frozenset = frozenset()

    def __init__(self, source):
        self.source = source
        self._tensors: list[TensorInfo] = []

    def tensors(self) -> list[TensorInfo]:
        return self._tensors

    def metadata(self) -> dict:
        return {}

    def tree(self):
        return {t.name: t for t in self._tensors}

    def read(self, info: TensorInfo) -> np.ndarray:
        """The tensor's data as stored: packed sub-byte dtypes as their bytes (uint8)."""
        if info.offset is None:
            raise UnsupportedFormatError(f"tensor {info.name!r} has no data stored in the file")
        return view(self.source.buf, info)


def c_strides(shape) -> tuple:
    """Element strides of a C-contiguous array of this shape."""
    out = [1] * len(shape)
    acc = 1
    for i in range(len(shape) - 1, -1, -1):
        out[i] = acc
        acc *= max(shape[i], 1)
    return tuple(out)


def is_contiguous(shape, stride) -> bool:
    """True when stride describes a C-contiguous layout (dims of size 1 may have any stride)."""
    if stride is None:
        return True
    expected = 1
    for d, s in zip(reversed(shape), reversed(stride)):
        if d != 1 and s != expected:
            return False
        expected *= d
    return True


def reader_of(obj) -> Reader | None:
    """The Reader behind `obj`: a Reader itself, or an open mfparse.ModelFile (its public
    `reader`); None for anything else (a path, bytes, a file object). The format helpers that
    take "a ModelFile or a path" (formats.tf.risky_ops, formats.keras.model_config, ...) use it,
    and `opened` for the path case, so no format module imports the API above it."""
    if isinstance(obj, Reader):
        return obj
    r = getattr(obj, "reader", None) if not isinstance(obj, (str, bytes, bytearray, memoryview)) else None
    return r if isinstance(r, Reader) else None


@contextmanager
def opened(obj, opener):
    """`opener(source)` (a format's own open function, returning a Reader or None) over a byte
    source for `obj` (a path, bytes, a binary file), both closed on exit."""
    from mfparse.source import Source

    src = Source(obj)
    try:
        reader = opener(src)
    except BaseException:
        src.close()
        raise
    try:
        yield reader
    finally:
        close = getattr(reader, "close", None)
        if close is not None:
            close()
        src.close()


def view(buf, info: TensorInfo, byteorder: str = "<", base=None) -> np.ndarray:
    """A read-only numpy view of a tensor's stored bytes in buf.

    Contiguous tensors become a plain frombuffer view; strided ones a strided view over the
    span they touch. Packed sub-byte dtypes come back as their raw bytes (uint8).
    """
    numel = info.numel
    if info.dtype in dtypes.PACKED:
        n = info.nbytes
        _check_range(buf, info.offset, n, info)
        return np.frombuffer(buf, dtype=np.uint8, count=n, offset=info.offset)
    dt = dtypes.numpy_dtype(info.dtype, byteorder)
    if is_contiguous(info.shape, info.stride):
        _check_range(buf, info.offset, numel * dt.itemsize, info)
        arr = np.frombuffer(buf, dtype=dt, count=numel, offset=info.offset)
        return arr.reshape(info.shape)
    if numel == 0:
        return np.empty(info.shape, dtype=dt)
    extent = 1 + sum((d - 1) * s for d, s in zip(info.shape, info.stride))
    _check_range(buf, info.offset, extent * dt.itemsize, info)
    flat = np.frombuffer(buf, dtype=dt, count=extent, offset=info.offset)
    return np.lib.stride_tricks.as_strided(
        flat, shape=info.shape, strides=tuple(s * dt.itemsize for s in info.stride), writeable=False
    )


def _check_range(buf, offset: int, n: int, info: TensorInfo) -> None:
    if offset < 0 or n < 0 or offset + n > len(buf):
        raise CorruptFileError(
            f"tensor {info.name!r} data ({n} bytes) runs past the end of the file", offset
        )
