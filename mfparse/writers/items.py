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
        try:
            dt = numpy_dtype_of(item)
        except TypeError:
            # a dtype numpy has no name for (GGUF block quantization): the stored bytes, in the
            # shape the reader gives them
            ref = item.array if isinstance(item.array, np.ndarray) else None
            shape = ref.shape if ref is not None and ref.dtype == np.uint8 and ref.nbytes == item.nbytes else -1
            return np.frombuffer(self.map, dtype=np.uint8, count=item.nbytes, offset=off).reshape(shape)
        count = item.nbytes // dt.itemsize
        a = np.frombuffer(self.map, dtype=dt, count=count, offset=off)
        return a if item.dtype in dtypes.PACKED else a.reshape(item.shape)


def load_arrays(m: ModelFile, only=None, skipped: list | None = None) -> Iterator[tuple[Item, np.ndarray, bool]]:
    """(item, array, zero_copy) for every tensor of an open ModelFile with data: a writable
    copy-on-write view of the file where the tensor's bytes map, else a copy. A model of
    several files is loaded file by file (one private map each), items named as m lists them.

    Args:
        only: a container of names (as m lists them): load only these (the others are never
            read; default: all).
        skipped: a list that receives (name, reason) for each tensor left out for having no
            data (meta tensors, data mfparse cannot give as an array).
    """
    for prefix, _rel, part in m.parts():
        if only is not None and not any((prefix + t.name if prefix else t.name) in only for t in part.tensors()):
            continue  # a file none of whose tensors is wanted is not mapped
        with SourceItems(part) as si:
            pmap = PrivateMap(si.fd) if si.fd is not None and si.size else None
            si.probe_map = pmap.map if pmap is not None else None
            for t in part.tensors():
                name = prefix + t.name if prefix else t.name
                if only is not None and name not in only:
                    continue
                it = si.item(t)
                if it is None:
                    continue
                it.name = name
                if it.file_range is not None and pmap is not None:
                    yield it, pmap.array(it), True
                else:
                    yield it, host_copy(it), False
            if skipped is not None:
                skipped.extend((prefix + n, why) for n, why in si.skipped)


def host_copy(item: Item) -> np.ndarray:
    """A little-endian, C-contiguous copy of an item's data (strided, big-endian or decoded
    tensors)."""
    a = np.asarray(item.get_array())
    bo = a.dtype.byteorder
    if a.dtype.fields is None and (bo == ">" or (bo == "=" and sys.byteorder == "big")):
        a = a.astype(a.dtype.newbyteorder("<"))
    return np.array(a, copy=True, order="C")


# ---- choosing the tensors a loader returns ----------------------------------------------------

#: the dtypes a loader's `dtype=` casts (transformers casts floating-point parameters only, and
#: leaves float8 weights of quantized checkpoints as they are); integer, bool, complex, float8,
#: sub-byte and quantized tensors keep their dtype
CASTABLE = frozenset({"float16", "bfloat16", "float32", "float64"})


class TensorNameError(KeyError):
    """Names, a prefix or a sub-tree that a model does not have. A KeyError (as a dict lookup);
    `missing` lists what was asked for and not found, and the message suggests close matches."""

    def __init__(self, message: str, missing=()):
        super().__init__(message)
        self.message = message
        self.missing = list(missing)

    def __str__(self) -> str:
        return self.message


def _close(word: str, candidates, n: int = 3) -> str:
    import difflib

    near = difflib.get_close_matches(word, list(candidates), n=n, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(x) for x in near)}?)" if near else ""


def _where(m: ModelFile) -> str:
    return m.path or "the model"


def select_names(m: ModelFile, names=None, prefix: str | None = None, strip_prefix=None,
                 select: str | None = None) -> dict[str, str]:
    """{name as m lists it: name to return} for the tensors a loader returns, in m's order.

    The steps, in this order:
      1. select: a sub-tree, by the dotted name of its root ("model_state_dict", "unet",
         "state_dict.model"): only tensors under it, named relative to it.
      2. prefix: only names that start with this string (matched after select).
      3. strip_prefix: a string removed from the start of every name that has it (others are
         kept as they are: "module." of a DataParallel checkpoint), or True to remove `prefix`.
      4. names: only these final names; a name the model does not have is an error.

    Raises:
        TensorNameError (a KeyError): a sub-tree or prefix that matches no tensor, or names
            that are not in the selection, with close matches.
        ValueError: select names a tensor, strip_prefix=True without a prefix, or stripping
            makes two names equal or one empty.
    """
    if isinstance(names, str):
        names = [names]
    if strip_prefix is True:
        if not prefix:
            raise ValueError("strip_prefix=True removes `prefix`, but no prefix was given")
        strip_prefix = prefix
    elif strip_prefix is False:
        strip_prefix = None
    elif strip_prefix is not None and not isinstance(strip_prefix, str):
        raise TypeError(f"strip_prefix must be a string or True, not {type(strip_prefix).__name__}")
    all_names = [t.name for t in m.tensors()]
    chosen = {}
    root = None
    if select is not None:
        if not isinstance(select, str):
            raise TypeError(f"select must be a string (the dotted name of a sub-tree), not {type(select).__name__}")
        root = select.strip(".")
        if root in set(all_names):
            raise ValueError(f"select={select!r} names a tensor of {_where(m)}, not a sub-tree: "
                             f"use names=[{root!r}]")
    lead = root + "." if root else ""
    for full in all_names:
        name = full
        if lead:
            if not name.startswith(lead):
                continue
            name = name[len(lead):]
        if prefix is not None and not name.startswith(prefix):
            continue
        if strip_prefix and name.startswith(strip_prefix):
            name = name[len(strip_prefix):]
            if not name:
                raise ValueError(f"strip_prefix={strip_prefix!r} leaves tensor {full!r} without a name")
        chosen[full] = name
    if not chosen and all_names:
        if root and not any(n.startswith(lead) for n in all_names):
            depth = root.count(".") + 1
            trees = sorted({".".join(n.split(".")[:depth]) for n in all_names if n.count(".") >= depth})
            shown = ", ".join(trees[:12]) + (f", ... ({len(trees) - 12} more)" if len(trees) > 12 else "")
            raise TensorNameError(f"{_where(m)} has no sub-tree {root!r}{_close(root, trees)}; "
                                  f"sub-trees: {shown or '(none)'}", [root])
        raise TensorNameError(f"no tensor of {_where(m)}" + (f" under {root!r}" if root else "") +
                              f" starts with prefix {prefix!r}", [prefix])
    if len(set(chosen.values())) != len(chosen):
        seen: dict[str, str] = {}
        for full, name in chosen.items():
            if name in seen:
                raise ValueError(f"{seen[name]!r} and {full!r} would both be returned as {name!r}")
            seen[name] = full
    if names is not None:
        wanted = list(dict.fromkeys(names))
        for n in wanted:
            if not isinstance(n, str):
                raise TypeError(f"tensor names are strings, not {type(n).__name__}")
        have = set(chosen.values())
        missing = [n for n in wanted if n not in have]
        if missing:
            what = ", ".join(f"{n!r}{_close(n, have)}" for n in missing[:10])
            more = f", ... ({len(missing) - 10} more)" if len(missing) > 10 else ""
            scope = f" under {root!r}" if root else ""
            raise TensorNameError(f"{len(missing)} name{'s' if len(missing) != 1 else ''} not in {_where(m)}"
                                  f"{scope}: {what}{more}", missing)
        keep = set(wanted)
        chosen = {full: name for full, name in chosen.items() if name in keep}
    return chosen


def check_loaded(requested, loaded, skipped, m: ModelFile) -> None:
    """Raise ValueError when a tensor named in `requested` (final names) was left out for
    having no data; `skipped` holds (model name, reason), `loaded` maps model names to final."""
    if requested is None:
        return
    why = dict(skipped)
    gone = [(loaded[full], why[full]) for full in loaded if full in why]
    if gone:
        text = "; ".join(f"{n!r}: {w}" for n, w in gone[:5])
        raise ValueError(f"{_where(m)}: {len(gone)} requested tensor(s) have no data to load: {text}")
