"""Local bytes: a memory-mapped file, bytes in memory, or a binary file object; local folders.

A LocalSource holds one read-only buffer of the whole input (`buf`): with a path or a real file
object it is a memory map, so only the pages a reader touches are ever read, and tensor data
handed out as numpy arrays are views of the map. What cannot be mapped (a pipe, a FIFO, a
character device, a socket, a file object without a file descriptor) is read to its end (`spool`:
in memory up to SPOOL_MEMORY, then in an unlinked temporary file that is mapped), at most
MAX_STREAM_BYTES (more is an OSError EFBIG naming the input).
"""

from __future__ import annotations

import errno
import io
import mmap
import os
import stat

#: madvise hints on local maps (LocalSource.advise); benchmarks turn them off to compare
ACCESS_HINTS = True
_PAGE = mmap.PAGESIZE

#: the most bytes read from an input that cannot be memory-mapped (a pipe, standard
#: input, a FIFO, a file object without a descriptor); change it here, or read the stream
#: yourself and pass bytes
MAX_STREAM_BYTES = 4 << 30


#: what a stream read to its end keeps in memory; past it the bytes go on in an unlinked
#: temporary file (TMPDIR) that is then memory-mapped, so memory stays bounded whatever the size
SPOOL_MEMORY = 64 << 20


def read_all(f, limit: int | None = None, name=None) -> memoryview:
    """Everything a binary file object gives until its end, as a read-only buffer (see spool).

    Raises:
        OSError(EFBIG): more than `limit` bytes (default MAX_STREAM_BYTES); nothing is kept.
        TypeError: a text-mode file object.
    """
    def chunks():
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                return
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise TypeError("file object must be opened in binary mode")
            yield chunk

    return spool(chunks(), limit, name)


def spool(chunks, limit: int | None = None, name=None, memory: int | None = None) -> memoryview:
    """The concatenation of `chunks` (bytes-like, in order) as one read-only buffer: a view of
    memory while it is at most `memory` bytes (default SPOOL_MEMORY), else a read-only memory
    map of an unlinked temporary file the bytes were written to as they came (memory bounded
    by the chunk size and the page cache; the disk holds the stream; the file goes away with
    the last view).

    Raises:
        OSError(EFBIG): more than `limit` bytes (default MAX_STREAM_BYTES); nothing is kept.
        OSError: the temporary file cannot be written (ENOSPC).
    """
    limit = MAX_STREAM_BYTES if limit is None else limit
    memory = SPOOL_MEMORY if memory is None else memory
    buf = bytearray()
    tmp = None
    total = 0
    try:
        for chunk in chunks:
            total += len(chunk)
            if total > limit:
                raise OSError(errno.EFBIG, f"more than {limit:,} bytes from a pipe or stream: too large to read "
                                           "(write it to a file first, or raise the limit)", name)
            if tmp is not None:
                tmp.write(chunk)
                continue
            buf += chunk
            if len(buf) > memory:
                import tempfile

                tmp = tempfile.TemporaryFile(prefix="mfparse-stream-")
                tmp.write(buf)
                buf = bytearray()
        if tmp is None:
            return memoryview(buf).toreadonly()  # Source keeps read-only views without a copy
        tmp.flush()
        return memoryview(mmap.mmap(tmp.fileno(), 0, access=mmap.ACCESS_READ))  # the map outlives the fd
    finally:
        if tmp is not None:
            tmp.close()


from mfparse.io.base import ByteSource, FileSet, OutsideFolderError, SourceSpec, clean_relpath


class LocalSource(ByteSource):
    """A read-only view of a local input: a path, bytes, or a binary file object.

    Attributes:
        buf: memoryview of the whole input (read-only).
        size: its length in bytes.
        path: the file's path when the input was a path or a named file, else None.
    """

    def __init__(self, obj):
        super().__init__()
        self._mmap = None
        self._file = None
        self.path = None
        if isinstance(obj, (str, os.PathLike)):
            self.path = os.fspath(obj)
            if os.path.isdir(self.path):
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), self.path)
            self._file = open(self.path, "rb")
            self._map_file(self._file)
        elif isinstance(obj, (bytes, bytearray, memoryview)):
            self.buf = memoryview(obj).cast("B") if isinstance(obj, memoryview) else memoryview(obj)
            if not self.buf.readonly:
                self.buf = memoryview(bytes(self.buf))  # never alias a buffer the caller may change
        elif hasattr(obj, "read"):
            name = getattr(obj, "name", None)
            if isinstance(name, str) and os.path.isfile(name):
                self.path = name
            if not self._try_map_fileobj(obj):
                self.buf = read_all(obj, name=self.path)
        else:
            raise TypeError(f"cannot open {type(obj).__name__}: expected a path, bytes or a binary file object")
        self.size = len(self.buf)
        self.name = self.path if self.path is not None else "<bytes>"

    def _map_file(self, f) -> None:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            self.buf = read_all(f, name=self.path)  # a pipe, FIFO, device or socket: a map sees nothing
            return
        self.version = f"{st.st_mtime_ns}:{st.st_size}"
        if st.st_size == 0:
            self.buf = memoryview(b"")
            return
        self._mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self.buf = memoryview(self._mmap)

    def _try_map_fileobj(self, f) -> bool:
        try:
            fd = f.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):
            return False
        if isinstance(f, io.TextIOBase):
            raise TypeError("file object must be opened in binary mode")
        try:
            regular = stat.S_ISREG(os.fstat(fd).st_mode)
        except (OSError, ValueError):
            return False
        if not regular:
            self.buf = read_all(f, name=self.path)  # once: a stream cannot be read again
            return True
        try:
            self._map_file(f)
        except (OSError, ValueError):
            return False
        return fd >= 0

    def advise(self, pattern: str, ranges=None) -> None:
        m = self._mmap
        flag = getattr(mmap, "MADV_" + pattern.upper(), None)
        if m is None or flag is None or not ACCESS_HINTS or not hasattr(m, "madvise"):
            return
        try:
            if ranges is None:
                m.madvise(flag)
                return
            for off, n in ranges:
                start = max(0, off - off % _PAGE)
                end = min(len(m), off + n)
                if end > start:
                    m.madvise(flag, start, end - start)
        except (OSError, ValueError):
            pass  # a hint: never an error

    def siblings(self):
        return LocalFileSet(os.path.dirname(os.path.abspath(self.path))) if self.path is not None else None

    def spec(self) -> SourceSpec:
        if self.path is None:
            return super().spec()
        return SourceSpec(os.path.abspath(self.path), self.size, self.version)

    def close(self) -> None:
        """Release the map. Arrays still viewing it keep it alive until they are gone."""
        buf, self.buf = self.buf, memoryview(b"")
        try:
            buf.release()
            if self._mmap is not None:
                self._mmap.close()
        except BufferError:
            pass  # numpy views exist: the map is freed with the last of them
        self._mmap = None
        if self._file is not None:
            self._file.close()
            self._file = None


class LocalFileSet(FileSet):
    """The files of a local folder. A relative path is opened only when it stays inside the
    folder after symbolic links are resolved.

    Args:
        root: the folder.
        also: further folders that links in the folder may point into (a Hugging Face cache
            snapshot's files are links into the repository's blobs/ folder); nothing else
            outside the root is admitted.
    """

    def __init__(self, root, also=()):
        self.root = os.path.abspath(os.fspath(root))
        self._real = os.path.realpath(self.root)
        self._allowed = (self._real,) + tuple(os.path.realpath(os.fspath(a)) for a in also)

    def _resolve(self, relpath: str) -> str:
        rel = clean_relpath(relpath)
        path = os.path.join(self.root, rel)
        # the common case at the cost of one lstat per component: no link under the real root
        cur = self._real
        for part in rel.split("/"):
            cur = os.path.join(cur, part)
            try:
                if stat.S_ISLNK(os.lstat(cur).st_mode):
                    break
            except FileNotFoundError:
                return path  # nothing below a missing component: it cannot lead out
            except OSError:
                break
        else:
            return path
        real = os.path.realpath(path)
        for allowed in self._allowed:
            if real == allowed or os.path.commonpath([real, allowed]) == allowed:
                return path
        raise OutsideFolderError(f"{relpath!r} resolves to {real}, outside {self.root}")

    def open(self, relpath: str) -> LocalSource:
        return LocalSource(self._resolve(relpath))

    def exists(self, relpath: str) -> bool:
        try:
            return os.path.isfile(self._resolve(relpath))
        except OutsideFolderError:
            return False

    def size(self, relpath: str) -> int | None:
        path = self._resolve(relpath)
        return os.path.getsize(path) if os.path.isfile(path) else None

    def list(self) -> list:
        out = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            rel = os.path.relpath(dirpath, self.root)
            for f in filenames:
                out.append(f if rel == "." else f"{rel}/{f}".replace(os.sep, "/"))
        return sorted(out)

    def location(self, relpath: str) -> str:
        return os.path.join(self.root, clean_relpath(relpath))
