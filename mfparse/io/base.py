"""The byte-source layer's contracts: ByteSource (one file's bytes), FileSet (the files next to
it) and SourceSpec (how to open a source again, in another process).

Readers never open files themselves: they get a ByteSource and, for formats with side files
(ONNX external data, TF checkpoint shards, sharded checkpoints), a FileSet. Where the bytes come
from (a local map, bytes in memory, a ranged remote file, a forward-only stream) is the
source's business; what they mean is the reader's.
"""

from __future__ import annotations

import os
import posixpath
from collections import namedtuple

from mfparse.errors import TruncatedFileError

#: how to open a source again, possibly in another process (picklable): `location` is a path
#: or URL, `options` the fsspec storage options' *names* that matter (never secrets), `size`
#: and `version` pin the content that was seen (a changed file is refused, not mixed)
SourceSpec = namedtuple("SourceSpec", ("location", "size", "version", "options"), defaults=(None, None, None))


class ByteSource:
    """The bytes of one file.

    Attributes:
        name: what to show the user: a path or a URL without credentials.
        path: the local filesystem path, or None (bytes, remote, stream).
        size: the file's length in bytes.
        buf: a read-only memoryview of the whole file when it is at hand without copying (a
            local map, bytes in memory), else None. Readers use it for zero-copy views.
        version: a token that changes when the content changes (local: mtime and size; HTTP:
            ETag or Last-Modified; S3: version id or ETag), or None when unknown.
        stats: counters of the I/O done so far: requests, round_trips, bytes (remote sources;
            zeros for local ones).
    """

    name: str = "<bytes>"
    path: str | None = None
    size: int = 0
    buf = None
    version: str | None = None

    def __init__(self):
        self.stats = {"requests": 0, "round_trips": 0, "bytes": 0}

    def read(self, offset: int, n: int) -> memoryview:
        """Exactly n bytes at offset (a view when the source has them mapped).

        Raises:
            TruncatedFileError: the range runs past the end of the file.
        """
        return self.read_ranges([(offset, n)])[0]

    def read_ranges(self, ranges, block: int | None = None) -> list:
        """Several ranges at once, in one round trip for remote sources (fetched concurrently,
        neighbours coalesced). Each range is (offset, n); the answer is a list of buffers.
        `block`: remote sources round what they fetch out to multiples of this (default their
        block_size); a small one fetches scattered metadata without its neighbourhood."""
        buf = self.buf
        out = []
        for offset, n in ranges:
            check_range(self, offset, n)
            out.append(buf[offset:offset + n])
        return out

    def prefetch(self, ranges, block: int | None = None) -> None:
        """Hint: these ranges will be read soon (remote sources fetch them in one round trip)."""

    def held(self) -> list:
        """[(offset, buffer)] of the bytes a remote source holds already (its block cache: the
        head and tail fetched when it was opened, and what was read since); [] for sources
        that hold the whole file (`buf`) or nothing."""
        return []

    def advise(self, pattern: str, ranges=None) -> None:
        """An access hint for a local map (madvise): "random" (no readahead: a listing that
        touches scattered pages of a large file), "normal", "willneed" (read these ranges
        ahead, in the background); `ranges` (offset, n) limit it. No-op for other sources."""

    def siblings(self):
        """The FileSet of the folder this file is in, for the side files a format names (ONNX
        external data): a remote file's prefix; None where there is no folder (bytes, streams).
        Local readers keep to their paths."""
        return None

    def spec(self) -> SourceSpec:
        """How to open this source again (in another process)."""
        raise TypeError(f"{self.name}: this source cannot be reopened elsewhere")

    def close(self) -> None:
        """Release what the source holds (a map, connections). Views handed out stay valid."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def is_url(obj) -> bool:
    """True for a string that starts with `scheme://` (file:// included)."""
    if not isinstance(obj, str):
        return False
    scheme, sep, _ = obj.partition("://")
    return bool(sep) and scheme[:1].isalpha() and all(c.isalnum() or c in "+.-" for c in scheme)


#: characters that make a local source a glob pattern
GLOB_CHARS = frozenset("*?[")


def is_glob(s: str) -> bool:
    """A local source that is a pattern: `*`, `?` or `[` in it, and no file of that name."""
    return bool(GLOB_CHARS.intersection(s)) and not os.path.lexists(s)


def check_range(source: ByteSource, offset: int, n: int) -> None:
    """Raise TruncatedFileError unless 0 <= offset and offset + n <= source.size."""
    if offset < 0 or n < 0 or offset + n > source.size:
        raise TruncatedFileError(
            f"needs bytes {offset}..{offset + n} of a {source.size}-byte file", min(max(offset, 0), source.size))


class SourceError(OSError):
    """The bytes of a source could not be had as asked (an I/O condition, not a defect of the
    file: `mfparse.scan` reports it as "cannot read", never as a verdict on the content).

    Attributes:
        location: the path or URL (credentials stripped).
    """

    def __init__(self, message: str, location: str | None = None):
        super().__init__(message)
        self.location = location

    def __str__(self) -> str:
        return self.args[0] if self.args else ""


class SourceChangedError(SourceError):
    """The file changed between two requests (ETag, version id, Last-Modified or size differ,
    or the server refused a request pinned to the version seen first). Nothing read from the
    two versions is mixed: the read that saw the change fails."""


class RangeNotSupportedError(SourceError):
    """The server answered a ranged request with the whole body (200 instead of 206). The
    body was not read; a forward-only `StreamSource` (mfparse.io.remote.open_stream) reads
    such a server front to back."""


class RemoteReadError(SourceError):
    """A remote answer that cannot be used: a 416, a body shorter than its range after every
    retry, a Content-Range that is not the one asked for, a server error after every retry.

    Attributes:
        status: the HTTP status when there was one, else None.
    """

    def __init__(self, message: str, location: str | None = None, status: int | None = None):
        super().__init__(message, location)
        self.status = status


class StreamPositionError(SourceError):
    """A forward-only stream was asked for bytes before its current position."""


class StreamLimitError(SourceError):
    """A stream needs more memory than the cap it was given (read_all's cap, or one read
    bigger than max_bytes)."""


class OutsideFolderError(ValueError):
    """A relative path that leaves its FileSet's folder (`..`, absolute, or a link pointing out)."""


class FileSet:
    """The files next to a model file: a local folder, a remote prefix, or nothing.

    Every side file a reader or the model layer opens goes through `open(relpath)`, which is
    the one containment check: a relative path that leaves the folder is refused.

    Attributes:
        root: the folder's path or URL.
    """

    root: str = ""

    def open(self, relpath: str) -> ByteSource:
        raise FileNotFoundError(relpath)

    def exists(self, relpath: str) -> bool:
        return False

    def size(self, relpath: str) -> int | None:
        """The size of a file of the set without reading it, or None when it is not there.
        Raises OutsideFolderError for a path that leaves the folder."""
        return None

    def list(self) -> list:
        """Every file under the root, as sorted relative paths with "/" separators."""
        return []

    def location(self, relpath: str) -> str:
        """The path or URL of a file of the set (for messages and reports)."""
        return posixpath.join(self.root, clean_relpath(relpath))


def clean_relpath(relpath: str) -> str:
    """A normalised relative path with "/" separators, or OutsideFolderError when it is absolute
    or climbs out of the folder."""
    p = relpath.replace("\\", "/")
    if p.startswith("/") or (len(p) > 1 and p[1] == ":"):
        raise OutsideFolderError(f"{relpath!r} is an absolute path")
    norm = posixpath.normpath(p)
    if norm == ".." or norm.startswith("../"):
        raise OutsideFolderError(f"{relpath!r} leaves the folder")
    return norm
