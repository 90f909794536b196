"""safetensors: u64 header length, JSON header, data. Parsed and validated in C
(csrc/mf_safetensors.c) as strictly as the Rust crate; data are zero-copy views."""

from __future__ import annotations

import struct

from mfparse import _native
from mfparse.records import EMPTY, TensorInfo
from mfparse.formats.base import Reader, read_at


def probe(head: bytes, size: int) -> bool:
    """8-byte little-endian header length that fits the file, then '{'."""
    if len(head) < 9 or size < 10:
        return False
    (n,) = struct.unpack_from("<Q", head)
    return 2 <= n <= size - 8 and head[8:9] == b"{"


class SafetensorsReader(Reader):
    format = "safetensors"

    def __init__(self, source):
        super().__init__(source)
        size = source.size
        n = _native.safetensors_header_len(read_at(source, 0, 8), size)
        # a remote file: 8 + N bytes, in the head fetched when it was opened unless N is large
        self._tensors, self._meta, self.data_start = _native.safetensors_parse(
            read_at(source, 0, 8 + n), size, TensorInfo, EMPTY)

    def metadata(self) -> dict:
        return dict(self._meta or {})

    def tree(self):
        tree: dict = {t.name: t for t in self._tensors}
        if self._meta is not None:
            tree = {"__metadata__": dict(self._meta), **tree}
        return tree


def open_reader(source):
    return SafetensorsReader(source)
