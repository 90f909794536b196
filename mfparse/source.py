"""Where the bytes come from: a memory-mapped file, a bytes object, or a file object.

Readers see one read-only buffer of the whole input (``Source.buf``); with a path or a real
file object it is a memory map, so only the pages a reader touches are ever read, and tensor
data handed out as numpy arrays are views of the map.
"""

from __future__ import annotations

import errno
import io
import mmap
import os
from pathlib import Path


class Source:
    """A read-only view of an input file.

    Attributes:
        buf: memoryview of the whole input (read-only).
        size: its length in bytes.
        path: the file's path when the input was a path or a named file, else None.
    """

    def __init__(self, obj):
        self._mmap = None
        self._file = None
        self.path: str | None = None
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
                data = obj.read()
                if not isinstance(data, (bytes, bytearray)):
                    raise TypeError("file object must be opened in binary mode")
                self.buf = memoryview(bytes(data))
        else:
            raise TypeError(f"cannot open {type(obj).__name__}: expected a path, bytes or a binary file object")
        self.size = len(self.buf)

    def _map_file(self, f) -> None:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
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
            self._map_file(f)
        except (OSError, ValueError):
            return False
        return fd >= 0

    @property
    def folder(self) -> Path | None:
        """The folder holding the file (for formats with side files), or None."""
        return Path(self.path).resolve().parent if self.path else None

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
