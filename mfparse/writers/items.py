"""The tensors of an open ModelFile as writer Items, through the public API only.

For each TensorInfo the reader's `read()` gives the layout (a view costs nothing); when the
data are contiguous little-endian bytes at `info.offset` of the model file itself, the item
gets a `file_range` so writers can copy it in the kernel, and the zero-copy loaders can map
it. That rests on the TensorInfo contract ("offset: file offset of the first element"), so
it is checked cheaply: the first and last bytes seen through the reader must equal the bytes
at that offset of the file. A tensor whose bytes live elsewhere (a side file: ONNX external
data) fails the check and is read through the reader instead.
"""

from __future__ import annotations

import os
import sys
from typing import Iterator

import numpy as np

from mfparse import dtypes
from mfparse.api import ModelFile, TensorInfo
from mfparse.errors import MFParseError
from mfparse.writers.base import Item

#: extras keys that say a tensor's bytes are in another file
_ELSEWHERE = ("location", "external", "external_data", "data_file", "file", "path", "shard")
#: bytes compared at each end of a tensor to confirm its file range
_PROBE = 64


class SourceItems:
    """Items for the tensors of an open ModelFile (which must stay open while they are used).

    Attributes:
        skipped: [(name, reason)] for tensors that have no data to write (meta tensors).
    """

    def __init__(self, m: ModelFile):
        self.m = m
        self.fd: int | None = None
        self.size = 0
        self.skipped: list[tuple[str, str]] = []
        #: a map of the same file to probe from memory instead of with pread (set by loaders)
        self.probe_map = None
        self.base = None
        #: a model of several files: one SourceItems per part, opened when first needed
        self._subs: dict | None = None
        if len(m.parts()) > 1 or m.parts()[0][2] is not m:
            self._subs = {}
            return
        if m.path is not None and os.path.isfile(m.path):
            self.fd = os.open(m.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            self.size = os.fstat(self.fd).st_size
        #: address of m's own map of the file: an array that starts at base + offset is a view of
        #: exactly those bytes, no probe needed
        self.base = m._buffer_address() if self.fd is not None else None

    def close(self) -> None:
        if self._subs:
            for sub in self._subs.values():
                sub.close()
            self._subs.clear()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- layout -------------------------------------------------------------------------------

    def file_offset(self, info: TensorInfo, a: np.ndarray) -> int | None:
        """info.offset when the array `a` read for it is exactly the file's bytes there."""
        if self.fd is None or info.offset is None or info.nbytes == 0:
            return None
        if any(k in info.extras for k in _ELSEWHERE):
            return None
        if not a.flags.c_contiguous or a.nbytes != info.nbytes:
            return None
        bo = a.dtype.byteorder
        if a.dtype.itemsize > 1 and a.dtype.fields is None and (bo == ">" or (bo == "=" and sys.byteorder == "big")):
            return None
        off = info.offset
        if off < 0 or off + info.nbytes > self.size:
            return None
        if self.base is not None and a.__array_interface__["data"][0] == self.base + off:
            return off  # a view of the file's own map at that offset: the bytes are the file's
        flat = a.reshape(-1).view(np.uint8)
        k = min(_PROBE, info.nbytes)
        end = off + info.nbytes
        if self.probe_map is not None:
            head, tail = self.probe_map[off:off + k], self.probe_map[end - k:end]
        else:
            head, tail = os.pread(self.fd, k, off), os.pread(self.fd, k, end - k)
        if head != flat[:k].tobytes() or tail != flat[info.nbytes - k:].tobytes():
            return None
        return off

    def item(self, info: TensorInfo) -> Item | None:
        """The Item for one TensorInfo, or None (recorded in `skipped`) when it has no data."""
        if self._subs is not None:
            return self._part_item(info)
        extras = dict(info.extras)
        if info.offset is None and extras.get("device") == "meta":
            self.skipped.append((info.name, "meta tensor: no data in the file"))
            return None
        alias = None
        if info.storage is not None and info.offset is not None:
            alias = (info.storage, info.offset, info.dtype, tuple(info.shape), info.stride)
        if info.offset is None:
            m = self.m
            return Item(info.name, info.dtype, tuple(info.shape), info.nbytes, lambda: m.read(info, packed=True),
                        None, alias, extras)
        try:
            a = self.m.read(info, packed=True)  # an Item holds sub-byte types packed
        except (MFParseError, TypeError) as e:
            self.skipped.append((info.name, str(e)))
            return None
        off = self.file_offset(info, a)
        if off is not None:
            return Item(info.name, info.dtype, tuple(info.shape), info.nbytes, a, (self.fd, off), alias, extras)
        return Item(info.name, info.dtype, tuple(info.shape), info.nbytes, a, None, alias, extras)

    def _part_item(self, info: TensorInfo) -> Item | None:
        """The Item of a tensor of a model of several files, from the SourceItems of its file
        (its file range points into that file; aliases only match within one file)."""
        i, inner = self.m._inner(info)
        sub = self._subs.get(i)
        if sub is None:
            sub = self._subs[i] = SourceItems(self.m.parts()[i][2])
        n = len(sub.skipped)
        it = sub.item(inner)
        if it is None:
            self.skipped.extend((info.name, why) for _name, why in sub.skipped[n:])
            return None
        it.name = info.name
        if it.alias is not None:
            it.alias = (i, it.alias)
        return it

    def items(self) -> list[Item]:
        return [it for it in (self.item(t) for t in self.m.tensors()) if it is not None]

    def __iter__(self) -> Iterator[Item]:
        for t in self.m.tensors():
            it = self.item(t)
            if it is not None:
                yield it


def numpy_dtype_of(item: Item) -> np.dtype:
    """The little-endian numpy dtype of an item's stored elements (uint8 for packed types)."""
    if item.dtype in dtypes.PACKED:
        return np.dtype(np.uint8)
    return dtypes.numpy_dtype(item.dtype)


class PrivateMap:
    """A copy-on-write map of a model file: arrays over it are writable, and writing to them
    never reaches the file (MAP_PRIVATE). Pages are read only when touched."""

    def __init__(self, fd: int):
        import mmap

        self.size = os.fstat(fd).st_size
        self.map = mmap.mmap(fd, 0, access=mmap.ACCESS_COPY) if self.size else None

    def array(self, item: Item) -> np.ndarray:
        """A writable zero-copy array of a file-range item (uint8 bytes for packed dtypes)."""
        _, off = item.file_range
        dt = numpy_dtype_of(item)
        count = item.nbytes // dt.itemsize
        a = np.frombuffer(self.map, dtype=dt, count=count, offset=off)
        return a if item.dtype in dtypes.PACKED else a.reshape(item.shape)


def load_arrays(m: ModelFile) -> Iterator[tuple[Item, np.ndarray, bool]]:
    """(item, array, zero_copy) for every tensor of an open ModelFile with data: a writable
    copy-on-write view of the file where the tensor's bytes map, else a copy. A model of
    several files is loaded file by file (one private map each), items named as m lists them."""
    for prefix, _rel, part in m.parts():
        with SourceItems(part) as si:
            pmap = PrivateMap(si.fd) if si.fd is not None and si.size else None
            si.probe_map = pmap.map if pmap is not None else None
            for it in si:
                if prefix:
                    it.name = prefix + it.name
                if it.file_range is not None and pmap is not None:
                    yield it, pmap.array(it), True
                else:
                    yield it, host_copy(it), False


def host_copy(item: Item) -> np.ndarray:
    """A little-endian, C-contiguous copy of an item's data (strided, big-endian or decoded
    tensors)."""
    a = np.asarray(item.get_array())
    bo = a.dtype.byteorder
    if a.dtype.fields is None and (bo == ">" or (bo == "=" and sys.byteorder == "big")):
        a = a.astype(a.dtype.newbyteorder("<"))
    return np.array(a, copy=True, order="C")
