"""Forward-only bytes: a pipe (`mfparse scan -`), a non-seekable file object, or the body of a
server that ignores Range (mfparse.io.remote.open_stream).

A StreamSource can go forward, never back: `read(offset, n)` is allowed at or after the offset
of the previous read (so a reader may look at bytes and read them again, but not what lies
before them); the bytes it skips are read and dropped, and what it holds at once is bounded
by `max_bytes`. What a caller can do with one:

- judge a pickle as its opcodes arrive (the scanner reads front to back);
- walk a zip by its local file headers in order (each header says how long its member is),
  and check the central directory against what was seen when it arrives at the end;
- or, for a stream known to be small, `read_all(cap)` it into memory and open the bytes with
  random access (`LocalSource(stream.read_all(cap))`).

`buf` and `path` are None and `size` is None until the end of the stream has been seen (or
given by the caller, e.g. an HTTP Content-Length).
"""

from __future__ import annotations

from mfparse.errors import TruncatedFileError
from mfparse.io.base import ByteSource, StreamLimitError, StreamPositionError

__all__ = ["StreamSource", "STREAM_BUFFER"]

#: the default bound on what a StreamSource holds at once (one read cannot be larger)
STREAM_BUFFER = 64 * 1024 * 1024
_CHUNK = 1 << 20


class StreamSource(ByteSource):
    """Forward-only reading of a binary file object (only its `read` is used).

    Args:
        fileobj: a binary file object; `read(k)` may return fewer than k bytes (a pipe) and
            returns b"" at the end.
        max_bytes: the most bytes held at once; a read of more is a StreamLimitError.
        name: what to call the stream in messages (default: the file object's name, or
            "<stream>").
        size: the stream's length when the caller knows it (checked at the end), else None.

    Attributes:
        position: the offset of the first byte still readable (the previous read's offset).
        stats: bytes counts what was read from the stream (requests and round_trips stay 0).
    """

    def __init__(self, fileobj, *, max_bytes: int = STREAM_BUFFER, name: str | None = None,
                 size: int | None = None):
        super().__init__()
        if not hasattr(fileobj, "read"):
            raise TypeError(f"expected a binary file object, got {type(fileobj).__name__}")
        if max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        self._f = fileobj
        self.max_bytes = int(max_bytes)
        fname = getattr(fileobj, "name", None)
        self.name = name or (fname if isinstance(fname, str) else "<stream>")
        self.size = size
        self.position = 0
        self._buf = bytearray()  # bytes [position, position + len(_buf)) of the stream
        self._eof = False

    @property
    def consumed(self) -> int:
        """How many bytes of the stream have been read from the file object so far."""
        return self.position + len(self._buf)

    def _pull(self, k: int) -> bytes:
        data = self._f.read(k)
        if data is None:  # a non-blocking file object with nothing ready
            data = b""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"{self.name}: the file object must be opened in binary mode")
        data = bytes(data)
        self.stats["bytes"] += len(data)
        if not data:
            self._eof = True
            end = self.consumed
            if self.size is not None and self.size != end:
                raise TruncatedFileError(f"{self.name}: the stream ended after {end} bytes, {self.size} announced", end)
            self.size = end
        return data

    def _skip_to(self, offset: int) -> None:
        """Drop everything before offset (reading and dropping what was not read yet)."""
        held_end = self.consumed
        if offset <= held_end:
            del self._buf[:offset - self.position]
        else:
            self._buf.clear()
            todo = offset - held_end
            while todo and not self._eof:
                todo -= len(self._pull(min(todo, _CHUNK)))
            if todo:
                raise TruncatedFileError(f"{self.name}: needs byte {offset}, the stream ends at {self.consumed}",
                                         self.consumed)
        self.position = offset

    def read(self, offset: int, n: int) -> memoryview:
        """Exactly n bytes at offset (offset >= position; position becomes offset).

        Raises:
            StreamPositionError: offset is before the current position.
            StreamLimitError: n is more than max_bytes.
            TruncatedFileError: the stream ends first.
        """
        if offset < 0 or n < 0:
            raise ValueError("offset and n must be >= 0")
        if offset < self.position:
            raise StreamPositionError(
                f"{self.name}: a stream cannot go back: bytes at {offset} asked for, the stream is at "
                f"{self.position} (read it whole with read_all, or read the file from a seekable source)", self.name)
        if n > self.max_bytes:
            raise StreamLimitError(f"{self.name}: a read of {n} bytes is more than this stream's buffer of "
                                   f"{self.max_bytes} bytes", self.name)
        self._skip_to(offset)
        while len(self._buf) < n and not self._eof:
            self._buf += self._pull(max(n - len(self._buf), min(_CHUNK, self.max_bytes - len(self._buf))))
        if len(self._buf) < n:
            raise TruncatedFileError(f"{self.name}: needs bytes {offset}..{offset + n}, the stream ends at "
                                     f"{self.consumed}", self.consumed)
        return memoryview(bytes(self._buf[:n]))

    def chunks(self, size: int = _CHUNK):
        """The rest of the stream, from the current position, as successive chunks of at most
        `size` bytes (what is held first); the stream is used up afterwards."""
        if self._buf:
            held = bytes(self._buf)
            self.position += len(held)
            self._buf = bytearray()
            yield held
        while not self._eof:
            data = self._pull(size)
            self.position += len(data)
            if data:
                yield data

    def read_ranges(self, ranges, block: int | None = None) -> list:
        """Ranges in ascending order of offset (each at or after the previous one's offset)."""
        return [self.read(o, n) for o, n in ranges]

    def read_all(self, cap: int) -> bytes:
        """The whole stream, from byte 0, in memory, if it is at most cap bytes. The stream is
        used up afterwards (its position is its end).

        Raises:
            StreamLimitError: the stream is longer than cap (reading stops at cap + 1 bytes).
            StreamPositionError: bytes before the current position were already dropped.
        """
        if self.position != 0:
            raise StreamPositionError(f"{self.name}: read_all needs the stream from byte 0; it is at "
                                      f"{self.position}", self.name)
        if self.size is not None and self.size > cap:
            raise StreamLimitError(f"{self.name}: the stream is {self.size} bytes, more than the cap of {cap} bytes",
                                   self.name)
        while not self._eof and len(self._buf) <= cap:
            self._buf += self._pull(min(_CHUNK, cap + 1 - len(self._buf)))
        if len(self._buf) > cap:
            raise StreamLimitError(f"{self.name}: the stream is more than the cap of {cap} bytes", self.name)
        data = bytes(self._buf)
        self._buf = bytearray()
        self.position = len(data)  # the stream is used up: its bytes now belong to the caller
        return data

    def close(self) -> None:
        self._buf = bytearray()
        close = getattr(self._f, "close", None)
        if close is not None:
            close()
