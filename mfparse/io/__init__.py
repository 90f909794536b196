"""Where bytes come from: local maps, bytes in memory, remote files, streams (see
mfparse/io/base.py for the contracts and docs/architecture.md, "Byte sources").

`open_source(obj)` turns what a user passed (a path, bytes, a binary file object) into a
ByteSource; `mfparse.open` and `mfparse.scan` go through it.
"""

from __future__ import annotations

from mfparse.io.base import ByteSource, FileSet, OutsideFolderError, SourceSpec, check_range, clean_relpath
from mfparse.io.local import LocalFileSet, LocalSource

__all__ = ["ByteSource", "FileSet", "SourceSpec", "LocalSource", "LocalFileSet", "OutsideFolderError",
           "check_range", "clean_relpath", "open_source"]


def open_source(obj) -> ByteSource:
    """A ByteSource for a path, bytes, a binary file object, or a ByteSource (returned as is)."""
    if isinstance(obj, ByteSource):
        return obj
    return LocalSource(obj)
