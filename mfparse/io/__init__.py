"""Where bytes come from: local maps, bytes in memory, remote files, streams (see
mfparse/io/base.py for the contracts and docs/architecture.md, "Byte sources").

`open_source(obj)` turns what a user passed (a path, a URL, bytes, a binary file object, a
SourceSpec) into a ByteSource. Remote sources load fsspec and friends only when a URL is
opened (`import mfparse.io` stays light). "-" (standard input) is the command line's business,
not this function's.
"""

from __future__ import annotations

import io
import os

from mfparse.io.base import (
    ByteSource,
    FileSet,
    OutsideFolderError,
    RangeNotSupportedError,
    RemoteReadError,
    SourceChangedError,
    SourceError,
    SourceSpec,
    StreamLimitError,
    StreamPositionError,
    check_range,
    clean_relpath,
    is_url,
)
from mfparse.io.local import LocalFileSet, LocalSource
from mfparse.io.stream import StreamSource

__all__ = ["ByteSource", "FileSet", "SourceSpec", "LocalSource", "LocalFileSet", "StreamSource", "OutsideFolderError",
           "SourceError", "SourceChangedError", "RangeNotSupportedError", "RemoteReadError", "StreamPositionError",
           "StreamLimitError", "check_range", "clean_relpath", "open_source", "open_fileset", "is_url"]


def _file_url_path(url: str) -> str:
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"{url!r}: a file:// URL on another host")
    return unquote(parts.path)


def open_source(obj, storage_options=None, **remote_options) -> ByteSource:
    """A ByteSource for what the user passed:

    - a ByteSource: returned as is;
    - a SourceSpec: the same file opened again, refused with SourceChangedError when its size
      or version is not the one the spec saw (storage_options add credentials, which a spec
      never carries);
    - a URL (`scheme://...`): `file://` opens the local file, any other scheme a RemoteSource
      (mfparse.io.remote; `remote_options` go to it: block_size, timeout, retries, ...);
    - a non-seekable binary file object (a pipe): a forward-only StreamSource;
    - a path, bytes, or a seekable binary file object: a LocalSource.
    """
    if isinstance(obj, ByteSource):
        return obj
    if isinstance(obj, SourceSpec):
        return _reopen(obj, storage_options, remote_options)
    if is_url(obj):
        if obj[:7].lower() == "file://":
            return LocalSource(_file_url_path(obj))
        from mfparse.io.remote import RemoteSource

        return RemoteSource(obj, storage_options, **remote_options)
    if hasattr(obj, "read") and not isinstance(obj, (str, bytes, bytearray, memoryview, os.PathLike)):
        if isinstance(obj, io.TextIOBase):
            raise TypeError("file object must be opened in binary mode")
        seekable = getattr(obj, "seekable", None)
        try:
            can_seek = bool(seekable()) if seekable is not None else False
        except (OSError, ValueError):
            can_seek = False
        if not can_seek:
            return StreamSource(obj)
    return LocalSource(obj)


def _reopen(spec: SourceSpec, storage_options, remote_options) -> ByteSource:
    loc = spec.location
    if is_url(loc) and loc[:7].lower() != "file://":
        from mfparse.io.remote import RemoteSource

        opts = {k: v for k, v in (spec.options or {}).items() if v is not None}
        opts.update(storage_options or {})
        return RemoteSource(loc, opts, version=spec.version, size=spec.size, **remote_options)
    src = LocalSource(_file_url_path(loc) if is_url(loc) else loc)
    if (spec.size is not None and src.size != spec.size) or (spec.version is not None and src.version != spec.version):
        src.close()
        raise SourceChangedError(f"{src.name}: the file changed since it was first read (size {src.size}, "
                                 f"version {src.version}; {spec.size}, {spec.version} expected)", src.name)
    return src


def open_fileset(location, storage_options=None, **remote_options) -> FileSet:
    """The FileSet of a folder: a local path, or a URL prefix (RemoteFileSet)."""
    if is_url(location) and location[:7].lower() != "file://":
        from mfparse.io.remote import RemoteFileSet

        return RemoteFileSet(location, storage_options, **remote_options)
    return LocalFileSet(_file_url_path(location) if is_url(location) else location)
