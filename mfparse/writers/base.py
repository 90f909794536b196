"""What every writer shares: the tensors to write (`Item`), the output stream (`Output`) with
its streaming copies, atomic files (`atomic_output`), the free-space check and progress bars.

A writer never holds a whole tensor in memory when it can avoid it:

* a tensor whose bytes lie contiguous and little-endian in a file (`Item.file_range`) is copied
  by the kernel (`os.copy_file_range`, else `os.sendfile`), never entering this process; when
  the writer needs a checksum of the bytes (zip members) they pass once through one reused
  buffer (pread, crc32, write);
* any other tensor (strided, big-endian, decoded from a compressed member, built in memory) is
  written from its numpy array in chunks of at most CHUNK bytes, each made contiguous and
  little-endian on its own.

So a conversion's peak memory is a few buffers, not the file size.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
import tempfile
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from mfparse import dtypes

#: bytes handled per chunk by array and buffered copies
CHUNK = 16 << 20
#: bytes the kernel copies per copy_file_range / sendfile call
KERNEL_CHUNK = 1 << 30
#: worker threads for kernel copies into one output. 1 by default: buffered writes to one file
#: serialise on its inode lock (ext4, tmpfs), so more threads only added overhead when measured
#: (benchmarks/bench_convert.py); file systems that write ranges in parallel may set more.
COPY_THREADS = 1
#: free space the output may not eat into, besides its own size (file system slack, metadata)
FREE_MARGIN = 16 << 20


class WriteError(ValueError):
    """The source cannot be written in the requested format (a dtype, name or shape the
    target does not represent, a destination that would overwrite the input, ...)."""


@dataclass
class Item:
    """One tensor to write.

    Attributes:
        name: the tensor's name in the output.
        dtype: canonical dtype name (mfparse.dtypes).
        shape: tuple of ints.
        nbytes: bytes of its data (sub-byte dtypes packed, rounded up).
        array: the data as numpy (any strides and byte order; raw uint8 bytes for packed
            dtypes), or a callable returning it (called once, when the data is written).
        file_range: (fd, offset) when the data are exactly `nbytes` contiguous little-endian
            bytes at `offset` of an open file: the fast path, copied without entering Python.
        alias: items with the same alias (not None) hold the same bytes (tied weights); a
            writer that can share data (torch zip) writes them once.
        extras: what a writer may use beyond the common fields (requires_grad, parameter).
    """

    name: str
    dtype: str
    shape: tuple
    nbytes: int
    array: Any = None
    file_range: tuple | None = None
    alias: Any = None
    extras: dict = field(default_factory=dict)

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= int(d)
        return n

    def get_array(self) -> np.ndarray:
        a = self.array
        if callable(a):
            a = a()
        if a is None:
            raise WriteError(f"tensor {self.name!r} has no data to write")
        return a


def check_items(items, unsupported) -> None:
    """Refuse, before anything is written, a tensor the format cannot hold (`unsupported(item)`
    gives the reason or None) and a name that repeats."""
    seen = set()
    for it in items:
        why = unsupported(it)
        if why:
            raise WriteError(f"tensor {it.name!r}: {why}")
        if it.name in seen:
            raise WriteError(f"tensor name {it.name!r} appears twice")
        seen.add(it.name)


def item_from_array(name: str, a: np.ndarray, dtype: str | None = None, **kw) -> Item:
    """An Item for a numpy array (its canonical dtype guessed from the numpy dtype)."""
    a = np.asarray(a)
    dt = dtype or canonical_dtype(a.dtype)
    nbytes = dtypes.nbytes(dt, a.size) if dt in dtypes.PACKED else a.nbytes
    return Item(name, dt, tuple(int(d) for d in a.shape), nbytes, a, **kw)


def canonical_dtype(dt: np.dtype) -> str:
    """The canonical mfparse name of a numpy dtype (bfloat16 and float8 from ml_dtypes too)."""
    dt = np.dtype(dt)
    name = dt.name
    if dt.kind == "b":
        return "bool"
    if dt.fields is not None and len(dt.fields) == 2 and dt.itemsize == 4:
        return "complex32"
    if dtypes.code(name) and name not in dtypes.PACKED:
        return name
    raise WriteError(f"numpy dtype {dt} has no mfparse dtype (sub-byte types must be packed first)")


# ---- output stream ------------------------------------------------------------------------------

class Output:
    """A binary output with a position, streaming copies and optional checksums.

    Wraps a real file (fast paths through its descriptor) or any object with `write`
    (and `seek`/`tell` when a writer patches a header after the data).
    """

    def __init__(self, f, progress=None, path: str | None = None):
        self.f = f
        self.progress = progress
        self.path = path  # the file's path, when workers may open it again
        self.fd = None
        if isinstance(f, int):
            self.fd = f
        else:
            try:
                fd = f.fileno()
                if hasattr(f, "flush"):
                    f.flush()
                self.fd = fd
            except (AttributeError, OSError, ValueError):
                self.fd = None
        if self.fd is not None:
            self.pos = os.lseek(self.fd, 0, os.SEEK_CUR)
        else:
            try:
                self.pos = f.tell()
            except (AttributeError, OSError, ValueError):
                self.pos = 0
        self._buf: bytearray | None = None

    # ---- raw writes: every byte goes through _raw_write or _raw_copy ----

    def _raw_write(self, data) -> None:
        mv = memoryview(data).cast("B")
        if self.fd is None:
            n = self.f.write(mv)
            if n is not None and n != len(mv):
                raise OSError(errno.EIO, f"short write ({n} of {len(mv)} bytes)")
            return
        while len(mv):
            n = os.write(self.fd, mv)
            if n <= 0:
                raise OSError(errno.EIO, "write returned 0")
            mv = mv[n:]

    def _raw_copy(self, src_fd: int, offset: int, n: int) -> None:
        """Copy n bytes at offset of src_fd to the output's position, in the kernel."""
        done = 0
        use_cfr = hasattr(os, "copy_file_range")
        while done < n:
            k = min(KERNEL_CHUNK, n - done)
            try:
                if use_cfr:
                    got = os.copy_file_range(src_fd, self.fd, k, offset + done)
                else:
                    got = os.sendfile(self.fd, src_fd, offset + done, k)
            except OSError as e:
                if use_cfr and e.errno in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP,
                                           errno.EBADF, errno.ETXTBSY, errno.EPERM):
                    use_cfr = False
                    continue
                if not use_cfr and e.errno in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    self._buffered_copy(src_fd, offset + done, n - done, crc=None)
                    return
                raise
            if got == 0:
                raise OSError(errno.EIO, f"source file ended {n - done} bytes early (byte {offset + done})")
            done += got
            self._advance(got)

    # ---- public --------------------------------------------------------------------------

    def _advance(self, n: int) -> None:
        self.pos += n
        if self.progress is not None:
            self.progress.update(n)

    def write(self, data, count: bool = False) -> None:
        """Write bytes (headers and small things; `count` adds them to the progress bar)."""
        n = len(memoryview(data).cast("B"))
        self._raw_write(data)
        self.pos += n
        if count and self.progress is not None:
            self.progress.update(n)

    def preallocate(self, size: int) -> None:
        """Reserve `size` bytes for the file up front (posix_fallocate): on ext4 the copies
        that follow then skip block allocation (about a third faster here), and a full disk
        shows up before any data is written. A no-op where the file system cannot."""
        if self.fd is None or size <= 0 or not hasattr(os, "posix_fallocate"):
            return
        try:
            os.posix_fallocate(self.fd, 0, size)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise OSError(errno.ENOSPC, f"no space left for the {size:,}-byte output") from e
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS, errno.ENODEV):
                raise

    def finish(self) -> None:
        """Cut the file at the current position (drops what preallocate reserved beyond it)."""
        if self.fd is not None:
            os.ftruncate(self.fd, self.pos)

    def pad_to(self, align: int, fill: bytes = b"\0") -> int:
        """Pad with `fill` to a multiple of align; returns the padding written."""
        pad = (-self.pos) % align
        if pad:
            self.write(fill * pad)
        return pad

    def patch(self, offset: int, data: bytes) -> None:
        """Overwrite bytes already written (a header field), keeping the position."""
        if self.fd is not None:
            mv = memoryview(data)
            while len(mv):
                n = os.pwrite(self.fd, mv, offset)
                mv, offset = mv[n:], offset + n
            return
        here = self.f.tell()
        self.f.seek(offset)
        self.f.write(data)
        self.f.seek(here)

    def write_item(self, item: Item, crc: bool = False, crc_init: int = 0) -> int | None:
        """Stream an item's data to the output; returns the crc32 of crc_init's bytes
        followed by the data when asked."""
        if item.nbytes == 0:
            return crc_init if crc else None
        if item.file_range is not None:
            fd, off = item.file_range
            if not crc and self.fd is not None:
                self._raw_copy(fd, off, item.nbytes)
                return None
            return self._buffered_copy(fd, off, item.nbytes, crc=crc_init if crc else None)
        return self.write_array(item.get_array(), item.nbytes, crc=crc_init if crc else None, name=item.name)

    # ---- positioned writes (a layout computed up front, data produced in any order) --------

    def write_at(self, offset: int, data) -> None:
        """Write bytes at an absolute offset without moving the position."""
        mv = memoryview(data).cast("B")
        if self.fd is None:
            here = self.f.tell()
            self.f.seek(offset)
            self.f.write(mv)
            self.f.seek(here)
            return
        while len(mv):
            n = os.pwrite(self.fd, mv, offset)
            if n <= 0:
                raise OSError(errno.EIO, "pwrite returned 0")
            mv, offset = mv[n:], offset + n

    def write_item_at(self, item: Item, offset: int) -> None:
        """Stream an item's data to an absolute offset (kernel copy when it has a file range)."""
        if item.nbytes == 0:
            return
        if item.file_range is not None and self.fd is not None and hasattr(os, "copy_file_range"):
            fd, off = item.file_range
            done = 0
            try:
                while done < item.nbytes:
                    got = os.copy_file_range(fd, self.fd, min(KERNEL_CHUNK, item.nbytes - done), off + done,
                                             offset + done)
                    if got == 0:
                        raise OSError(errno.EIO, f"source file ended early (byte {off + done})")
                    done += got
                    if self.progress is not None:
                        self.progress.update(got)
                return
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                offset, item = offset + done, _tail(item, done)
        if item.file_range is not None:
            fd, off = item.file_range
            buf = self._buffer()
            done = 0
            while done < item.nbytes:
                got = os.preadv(fd, [buf[:min(len(buf), item.nbytes - done)]], off + done)
                if got <= 0:
                    raise OSError(errno.EIO, f"source file ended early (byte {off + done})")
                self.write_at(offset + done, buf[:got])
                done += got
                if self.progress is not None:
                    self.progress.update(got)
            return
        for chunk in iter_le_chunks(item.get_array()):
            self.write_at(offset, chunk)
            offset += len(chunk)
            if self.progress is not None:
                self.progress.update(len(chunk))

    # ---- parallel kernel copies -------------------------------------------------------------

    def copy_ranges(self, jobs, threads: int = 1) -> None:
        """Copy file-range items to absolute offsets: [(item, offset)], split by bytes into
        contiguous groups, one worker thread per group (the copies run in the kernel, outside
        the GIL). Items without a file range are written by the calling thread."""
        jobs = [(it, off) for it, off in jobs if it.nbytes]
        ranged = [(it, off) for it, off in jobs if it.file_range is not None]
        rest = [(it, off) for it, off in jobs if it.file_range is None]
        threads = max(1, min(int(threads), len(ranged)))
        if self.fd is None:
            for it, off in ranged + rest:
                self.write_item_at(it, off)
            return
        if threads == 1:
            for it, off in ranged:
                self._copy_to(self.fd, it, off, None, own=True)
            for it, off in rest:
                self.write_item_at(it, off)
            return
        total = sum(it.nbytes for it, _ in ranged)
        groups: list[list] = [[] for _ in range(threads)]
        acc = 0
        for it, off in ranged:
            groups[min(threads - 1, acc * threads // total)].append((it, off))
            acc += it.nbytes
        lock = threading.Lock()
        errors: list[BaseException] = []

        def work(group):
            try:
                fd = os.open(self.path, os.O_WRONLY) if self.path else os.dup(self.fd)
                try:
                    for it, off in group:
                        self._copy_to(fd, it, off, lock, own=self.path is not None)
                finally:
                    os.close(fd)
            except BaseException as e:  # re-raised in the calling thread
                errors.append(e)

        workers = [threading.Thread(target=work, args=(g,), daemon=True) for g in groups if g]
        for w in workers:
            w.start()
        try:
            for it, off in rest:
                self.write_item_at(it, off)
        finally:
            for w in workers:
                w.join()
        if errors:
            raise errors[0]

    def _copy_to(self, fd: int, item: Item, offset: int, lock, own: bool) -> None:
        """Copy one file-range item to `offset` of fd (own: fd's file position is ours to move)."""
        src, off = item.file_range
        done = 0
        while done < item.nbytes:
            k = min(KERNEL_CHUNK, item.nbytes - done)
            got = self._raw_copy_at(src, off + done, k, fd, offset + done, own=own)
            if got <= 0:
                raise OSError(errno.EIO, f"source file ended early (byte {off + done})")
            done += got
            if self.progress is not None:
                if lock is None:
                    self.progress.update(got)
                else:
                    with lock:
                        self.progress.update(got)

    def _raw_copy_at(self, src: int, src_off: int, n: int, dst: int, dst_off: int, own: bool) -> int:
        """Copy up to n bytes in the kernel (copy_file_range; across file systems sendfile on
        a descriptor of our own, else pread/pwrite); returns the bytes copied."""
        if hasattr(os, "copy_file_range"):
            try:
                return os.copy_file_range(src, dst, n, src_off, dst_off)
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
        if own:
            os.lseek(dst, dst_off, os.SEEK_SET)
            try:
                return os.sendfile(dst, src, src_off, n)
            except OSError as e:
                if e.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    raise
        data = os.pread(src, min(n, CHUNK), src_off)
        return os.pwrite(dst, data, dst_off) if data else 0

    def _buffer(self) -> memoryview:
        if self._buf is None:
            self._buf = bytearray(CHUNK)
        return memoryview(self._buf)

    def _buffered_copy(self, src_fd: int, offset: int, n: int, crc: int | None) -> int | None:
        buf = self._buffer()
        done = 0
        while done < n:
            k = min(len(buf), n - done)
            got = os.preadv(src_fd, [buf[:k]], offset + done)
            if got <= 0:
                raise OSError(errno.EIO, f"source file ended {n - done} bytes early (byte {offset + done})")
            chunk = buf[:got]
            if crc is not None:
                crc = zlib.crc32(chunk, crc)
            self._raw_write(chunk)
            done += got
            self._advance(got)
        return crc

    def write_array(self, a: np.ndarray, nbytes: int | None = None, crc: int | None = None,
                    name: str = "?") -> int | None:
        """Write an array's elements in C order, little-endian, CHUNK bytes at a time; returns
        the running crc32 (started at `crc`) when crc is not None."""
        c = crc
        total = 0
        for chunk in iter_le_chunks(a):
            if c is not None:
                c = zlib.crc32(chunk, c)
            self._raw_write(chunk)
            total += len(chunk)
            self._advance(len(chunk))
        if nbytes is not None and total != nbytes:
            raise WriteError(f"tensor {name!r}: {total} bytes of data where {nbytes} were expected")
        return c


def _tail(item: Item, skip: int) -> Item:
    """The item without its first `skip` bytes (file-range items only)."""
    fd, off = item.file_range
    return Item(item.name, item.dtype, item.shape, item.nbytes - skip, None, (fd, off + skip))


def iter_le_chunks(a: np.ndarray, chunk: int = CHUNK) -> Iterable[memoryview]:
    """The bytes of `a` in C order and little-endian byte order, as memoryviews of at most
    about `chunk` bytes (one row of a wide array may exceed it)."""
    a = np.asarray(a)
    if a.ndim == 0:
        a = a.reshape(1)
    swap = a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and sys.byteorder == "big")
    if a.dtype.fields is not None:
        swap = False  # structured (complex32): per-field order; our readers hand out little-endian
    if a.flags.c_contiguous and not swap:
        flat = a.reshape(-1).view(np.uint8)
        for i in range(0, flat.size, chunk):
            yield memoryview(flat[i:i + chunk])
        return
    rows = a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(-1, 1)
    per_row = max(1, rows.shape[1] * a.dtype.itemsize)
    step = max(1, chunk // per_row)
    for i in range(0, rows.shape[0], step):
        part = np.ascontiguousarray(rows[i:i + step])
        if swap:
            part = part.byteswap().view(part.dtype.newbyteorder("<"))
        yield memoryview(part.reshape(-1).view(np.uint8))


# ---- atomic files, free space, the input guard -------------------------------------------------

def check_free_space(path, need: int) -> None:
    """Raise OSError(ENOSPC) when the file system holding `path` has less than need bytes free."""
    folder = os.path.dirname(os.path.abspath(os.fspath(path))) or "."
    free = shutil.disk_usage(folder).free
    if need + FREE_MARGIN > free:
        raise OSError(errno.ENOSPC, f"not enough free space in {folder}: the output needs about "
                                    f"{need:,} bytes and {free:,} bytes are free")


def refuse_overwrite(dst, sources: Iterable, overwrite: bool) -> None:
    """The destination must not be an input (by path or by inode) and, unless overwrite,
    must not exist."""
    dst = os.fspath(dst)
    for s in sources:
        if s is None:
            continue
        s = os.fspath(s)
        same = os.path.realpath(s) == os.path.realpath(dst)
        if not same and os.path.exists(dst) and os.path.exists(s):
            with contextlib.suppress(OSError):
                same = os.path.samefile(s, dst)
        if same:
            raise WriteError(f"refusing to write {dst}: it is an input of this conversion")
    if os.path.exists(dst) and not overwrite:
        raise WriteError(f"{dst} exists (pass overwrite=True / --force to replace it)")
    if os.path.isdir(dst):
        raise WriteError(f"{dst} is a folder")


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


class AtomicFile:
    """What atomic_output yields: the open temporary file and its path."""

    def __init__(self, file, tmp_path: str, dst: str):
        self.file = file
        self.tmp_path = tmp_path
        self.dst = dst


# errors that only writing can cause: an OSError of these without a file name is the destination's
_WRITE_ERRNOS = frozenset(getattr(errno, n) for n in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS") if hasattr(errno, n))


def _named_for(e: OSError, dst: str) -> OSError:
    """The error as it concerns `dst`: the user's destination named, never the temporary file
    written beside it ("out.npz: permission denied", not ".out.npz.x1y2.partial")."""
    if e.errno is None:
        return type(e)(f"{dst}: {e}")
    return type(e)(e.errno, e.strerror or os.strerror(e.errno), dst)


@contextlib.contextmanager
def atomic_outputs(dsts, fsync: bool = False):
    """Yield one AtomicFile per destination, each a temporary file beside it; when the block
    succeeds rename them all into place (in the given order), on any failure (an exception,
    a full disk) remove them all: every destination is either its complete new file or
    untouched. An OSError about a temporary file (creating, writing, flushing, renaming it)
    names its destination, never the temporary file."""
    dsts = [os.fspath(d) for d in dsts]
    opened: list[AtomicFile] = []
    renamed = 0
    temps: dict[str, str] = {}  # absolute temporary path -> destination

    def destination_of(e: OSError) -> str | None:
        """The destination an OSError raised in the block is about, or None (e.g. the source's)."""
        if isinstance(e.filename, str):
            return temps.get(os.path.abspath(e.filename))
        if e.errno in _WRITE_ERRNOS and len(dsts) == 1:
            return dsts[0]
        return None

    try:
        for dst in dsts:
            folder = os.path.dirname(os.path.abspath(dst))
            try:
                fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(dst) + ".", suffix=".partial", dir=folder)
            except OSError as e:
                raise _named_for(e, dst) from e
            temps[os.path.abspath(tmp)] = dst
            opened.append(AtomicFile(os.fdopen(fd, "wb", buffering=0), tmp, dst))
            os.fchmod(fd, 0o666 & ~_umask())
        try:
            yield opened
        except OSError as e:
            dst = destination_of(e)
            if dst is None:
                raise
            raise _named_for(e, dst) from e
        except Exception as e:  # an MFParseError reading the written file back names the destination
            path = getattr(e, "path", None)
            if isinstance(path, str) and os.path.abspath(path) in temps:
                e.path = temps[os.path.abspath(path)]
            raise
        for af in opened:
            try:
                if fsync:
                    os.fsync(af.file.fileno())
                af.file.close()
            except OSError as e:
                raise _named_for(e, af.dst) from e
        for af in opened:
            try:
                os.replace(af.tmp_path, af.dst)
            except OSError as e:
                raise _named_for(e, af.dst) from e
            renamed += 1
        if fsync:
            for folder in sorted({os.path.dirname(os.path.abspath(d)) for d in dsts}):
                dfd = os.open(folder, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
    finally:
        for af in opened[renamed:]:
            with contextlib.suppress(OSError):
                af.file.close()
            with contextlib.suppress(OSError):
                os.unlink(af.tmp_path)


@contextlib.contextmanager
def atomic_output(dst, fsync: bool = False):
    """Yield an AtomicFile on a temporary file beside dst; on success rename it over dst, on
    any failure (an exception, a full disk) remove it, so dst is either the complete new file
    or untouched."""
    with atomic_outputs([dst], fsync=fsync) as (af,):
        yield af


# ---- progress ----------------------------------------------------------------------------------

class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


class _TqdmProgress:
    def __init__(self, total: int, desc: str):
        import tqdm

        self.bar = tqdm.tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                             leave=False, file=sys.stderr)

    def update(self, n: int) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


class _RichProgress:
    def __init__(self, total: int, desc: str):
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        self.p = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                          TimeRemainingColumn(), transient=True)
        self.p.start()
        self.task = self.p.add_task(desc, total=total)

    def update(self, n: int) -> None:
        self.p.update(self.task, advance=n)

    def close(self) -> None:
        self.p.stop()


def make_progress(progress, total: int, desc: str):
    """A progress sink: `progress` is True/False/None (None = a bar only on a terminal, when
    rich or tqdm is installed) or an object with update(n) and close()."""
    if progress is not None and not isinstance(progress, bool):
        return progress
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return _NoProgress()
    for cls in (_RichProgress, _TqdmProgress):
        try:
            return cls(total, desc)
        except ImportError:
            continue
    return _NoProgress()

