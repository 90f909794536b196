""".npy files and .npz archives: headers parsed in C (csrc/mf_npy.c), data are zero-copy views.

A .npy holds one array, listed under the name "array"; an .npz is a zip of `<name>.npy` members, listed under `<name>` as np.load names them. Members
stored uncompressed (np.savez) are views into the archive's bytes; deflated members
(np.savez_compressed) are listed from their first inflated bytes and decoded when read.
Every numeric dtype, Fortran order and big-endian data are handled; structured, string and
datetime dtypes read through numpy's own dtype. Object arrays are pickles: they are listed
with dtype "object" and never loaded (`mfparse scan` judges their pickles).
"""

from __future__ import annotations

import ast
import struct

from mfparse._lazy import numpy as np

from mfparse import _native, dtypes
from mfparse.records import TensorInfo
from mfparse.errors import CorruptFileError, UnsafeContentError, UnsupportedFormatError
from mfparse.formats.base import Reader, view

MAGIC = b"\x93NUMPY"
#: the name of the single array of a .npy file
NPY_NAME = "array"


def is_npz(names) -> bool:
    """True for zip member names that are all `*.npy` (folders aside)."""
    files = [n for n in names if not n.endswith("/")]
    return bool(files) and all(n.endswith(".npy") for n in files)


class _Array:
    """What a header says, turned into numpy terms."""

    __slots__ = ("dtype_name", "_np_dtype", "_spec", "itemsize", "byteorder", "fortran", "shape", "numel",
                 "data_offset", "descr", "is_object", "version")

    def __init__(self, row, where: str, at: int):
        version, descr, is_list, bo, kind, itemsize, dcode, fortran, shape, data_offset = row
        self.version = version
        self.fortran = fortran
        self.shape = shape
        self.data_offset = data_offset
        numel = 1
        for d in shape:
            numel *= d
        self.numel = numel
        text = descr.decode("utf-8" if version[0] >= 3 else "latin-1", "replace")
        self.descr = text
        self.byteorder = ">" if bo == ">" else "<"
        self._np_dtype = None
        self._spec = text
        if dcode and not is_list:
            # a plain numeric type string the C parser read whole ('<f4'): no numpy needed to list it
            self.dtype_name = dtypes.NAMES[dcode]
            self.itemsize = itemsize
            self.is_object = False
            return
        if is_list:
            try:
                spec = ast.literal_eval(text)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                raise CorruptFileError(f"{where}: descr list is not a literal", at) from None
            self._spec = _fields_to_str(spec)
        try:
            dt = np.dtype(self._spec)
        except (TypeError, ValueError, SyntaxError, RecursionError) as e:
            raise UnsupportedFormatError(f"{where}: dtype {text[:80]!r} is not understood ({e})", at) from None
        self._np_dtype = dt
        self.itemsize = dt.itemsize
        self.is_object = dt.hasobject
        if self.is_object:
            self.dtype_name = "object"
        elif dcode:
            self.dtype_name = dtypes.NAMES[dcode]
        else:
            self.dtype_name = dt.name if dt.names is None else "structured"

    @property
    def np_dtype(self):
        """The numpy dtype of the stored elements (built on first use)."""
        if self._np_dtype is None:
            self._np_dtype = np.dtype(self._spec)
        return self._np_dtype

    def info(self, name: str, offset, extras: dict) -> TensorInfo:
        stride = None
        if self.fortran and len(self.shape) > 1:
            acc, st = 1, []
            for d in self.shape:
                st.append(acc)
                acc *= max(d, 1)
            stride = tuple(st)
            extras["fortran_order"] = True
        if self.byteorder == ">" and self.itemsize > 1:
            extras["byteorder"] = ">"
        if self.dtype_name not in dtypes.NAMES:
            extras["descr"] = self.descr
        nbytes = 0 if self.is_object else self.numel * self.itemsize
        if self.is_object:
            extras["pickle"] = True
            offset = None
        return TensorInfo(name, self.dtype_name, self.shape, nbytes, offset, None, stride, extras)


def _fields_to_str(spec):
    """numpy writes field names as str; Python 2 files may have bytes: normalise for np.dtype."""
    if isinstance(spec, list):
        return [tuple(_fields_to_str(x) for x in f) if isinstance(f, tuple) else f for f in spec]
    if isinstance(spec, bytes):
        return spec.decode("latin-1")
    return spec


def _header_prefix_len(head: bytes) -> int:
    """Bytes up to the data of a .npy whose first 12 bytes are head (0 if unknown)."""
    if len(head) < 10 or head[:6] != MAGIC:
        return 0
    if head[6] == 1:
        return 10 + struct.unpack_from("<H", head, 8)[0]
    if len(head) >= 12:
        return 12 + struct.unpack_from("<I", head, 8)[0]
    return 0


class NpyReader(Reader):
    """A .npy file (one array, named "array") or an .npz archive (one array per member)."""

    def __init__(self, source, archive=None):
        super().__init__(source)
        self._arrays: dict[str, _Array] = {}
        self._members: dict[str, object] = {}
        self.archive = archive
        if archive is None:
            self.format = "npy"
            a = _Array(_native.npy_parse(source.buf), "npy", 0)
            self._add(NPY_NAME, a, source.size, a.data_offset, {})
        else:
            self.format = "npz"
            for mname, m in archive.members.items():
                if mname.endswith("/"):
                    continue
                name = mname[:-4] if mname.endswith(".npy") else mname
                if m.method == 0:
                    data = archive.read(m)
                    a = _Array(_native.npy_parse(data, m.data_offset), f"npz member {mname!r}", m.data_offset)
                    self._add(name, a, m.data_offset + m.size, a.data_offset, {"zip_member": mname})
                else:
                    head = bytes(archive.read(m, max_size=12))
                    n = _header_prefix_len(head)
                    if n == 0 or n > m.size:
                        raise CorruptFileError(f"npz member {mname!r} is not a .npy array", m.local_offset)
                    data = archive.read(m, max_size=n)
                    a = _Array(_native.npy_parse(data, 0), f"npz member {mname!r}", m.data_offset)
                    extras = {"zip_member": mname, "compression": "deflate" if m.method == 8 else m.method}
                    self._members[name] = m
                    self._add(name, a, m.size, None, extras)

    def _add(self, name: str, a: _Array, end: int, offset, extras: dict) -> None:
        info = a.info(name, offset, extras)
        # the data must fit in the file (stored) or in the member (compressed; offsets in it)
        if not a.is_object and a.data_offset + info.nbytes > end:
            raise CorruptFileError(
                f"{self.format} array {name!r} ({a.dtype_name} {list(a.shape)}, {info.nbytes} bytes) runs past the "
                f"end of its data ({max(0, end - a.data_offset)} bytes)", offset)
        if a.is_object and offset is not None:
            info.extras["pickle_offset"] = a.data_offset
        self._arrays[name] = a
        self._tensors.append(info)

    def read(self, info: TensorInfo) -> np.ndarray:
        a = self._arrays[info.name]
        if a.is_object:
            raise UnsafeContentError(
                f"array {info.name!r} has dtype object: its data is a pickle, which mfparse never loads "
                "(run `mfparse scan` to judge it)", a.data_offset if info.name not in self._members else None)
        if info.name in self._members:
            m = self._members[info.name]
            data = bytes(self.archive.read(m))
            return _from_bytes(data, a, a.data_offset)
        if info.dtype in dtypes.NAMES and info.dtype != "unknown":
            return view(self.source.buf, info, a.byteorder)
        return _from_bytes(self.source.buf, a, a.data_offset)

    def metadata(self) -> dict:
        if self.format == "npy":
            a = self._arrays[NPY_NAME]
            return {"format_version": f"{a.version[0]}.{a.version[1]}"}
        return {}


def _from_bytes(buf, a: _Array, offset: int) -> np.ndarray:
    dt = a.np_dtype
    if len(buf) < offset + a.numel * dt.itemsize:
        raise CorruptFileError("array data runs past the end of its bytes", offset)
    arr = np.frombuffer(buf, dtype=dt, count=a.numel, offset=offset)
    if a.fortran and len(a.shape) > 1:
        return arr.reshape(a.shape[::-1]).transpose()
    return arr.reshape(a.shape)


def open_npy(source):
    return NpyReader(source)


def open_npz(source, archive=None):
    if archive is None:
        from mfparse.formats.zip import ZipArchive

        archive = ZipArchive(source)
    return NpyReader(source, archive)
