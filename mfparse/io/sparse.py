"""A sparse map of a file read by ranges: what the C readers parse when the bytes are remote
(docs/architecture.md, "Readers on windows").

A SparseMap is a private anonymous memory map as large as the file (virtual: only the pages
written are backed, and MAP_NORESERVE keeps the kernel from reserving the rest) into which the
ranges fetched so far are copied at their file offsets, and a presence bitmap with one bit per
block of 4 KiB. The C cursor, given the map's window (`_native.Window`), refuses to read a block
whose bit is clear: it records MF_ERR_NEED and the span it needed. A parse over the map thus
sees exactly the file's bytes or stops, never zeros in place of bytes it did not have.

`mfparse.formats.base.parse_windows` runs a parse over the map, fetches every span the parse
named in one round trip (`fetch`), and runs it again.
"""

from __future__ import annotations

import mmap
import sys
import threading

from mfparse import _native

__all__ = ["SparseMap", "BLOCK_SHIFT", "sparse_map"]

#: tests only: fill a new map with 0xA5 instead of zeros, so that a read of a block that was
#: never fetched shows up as wrong bytes rather than as plausible zeros
POISON = False
#: presence is kept per block of 2**BLOCK_SHIFT bytes (a page: what a fetch is rounded out to)
BLOCK_SHIFT = 12
# Python < 3.13 does not name it; Linux's value
_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000 if sys.platform.startswith("linux") else 0)


class SparseMap:
    """The bytes of `source` fetched so far, at their file offsets, in a map of the file's size.

    Attributes:
        view: a memoryview of the map (len == source.size): what a C parse is given.
        window: the `_native.Window` over it (presence bits, the needs of the last parse).
        block: the presence block size in bytes.
        fetched: bytes copied into the map so far.
    """

    def __init__(self, source, shift: int = BLOCK_SHIFT):
        size = int(source.size)
        self.source = source
        self.size = size
        self.shift = shift
        self.block = 1 << shift
        self._nblocks = (size + self.block - 1) >> shift
        flags = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0) | _MAP_NORESERVE
        try:
            self._map = mmap.mmap(-1, max(size, 1), flags=flags) if flags else mmap.mmap(-1, max(size, 1))
        except (OSError, ValueError, OverflowError):
            self._map = mmap.mmap(-1, max(size, 1))  # no MAP_NORESERVE on this system
        if POISON:
            self._map[:] = b"\xa5" * len(self._map)
        self.view = memoryview(self._map)[:size]
        self.bits = bytearray((self._nblocks + 7) // 8 or 1)
        self.window = _native.Window(self.view, self.bits, shift)
        self.lock = threading.RLock()  # one parse at a time uses the window's need list
        self.fetched = 0
        for off, data in source.held():
            self.fill(off, data)

    # -- presence -------------------------------------------------------------------------
    def _has_block(self, i: int) -> bool:
        return (self.bits[i >> 3] >> (i & 7)) & 1

    def missing(self, ranges) -> list:
        """The block-aligned spans of `ranges` ((offset, n) pairs) not held yet, merged."""
        shift, size = self.shift, self.size
        out = []
        for off, n in ranges:
            off, n = int(off), int(n)
            if n <= 0 or off >= size:
                continue
            end = min(off + n, size)
            b = off >> shift
            last = (end - 1) >> shift
            while b <= last:
                if self._has_block(b):
                    b += 1
                    continue
                s = b
                while b <= last and not self._has_block(b):
                    b += 1
                out.append((s << shift, min(b << shift, size)))
        out.sort()
        merged = []
        for s, e in out:
            if merged and s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        return [(s, e - s) for s, e in merged]

    def has(self, off: int, n: int) -> bool:
        return not self.missing([(off, n)])

    # -- filling --------------------------------------------------------------------------
    def fill(self, off: int, data) -> None:
        """Copy bytes that start at file offset `off` into the map; blocks they cover whole
        (or up to the end of the file) become present."""
        n = len(data)
        if n == 0 or off >= self.size:
            return
        n = min(n, self.size - off)
        shift, block = self.shift, self.block
        first = (off + block - 1) >> shift          # the first block that starts inside the data
        end = off + n
        last = (end >> shift) if end < self.size else self._nblocks  # blocks [first, last) are whole
        if last <= first:
            return
        a, b = first << shift, min(last << shift, self.size)
        src = memoryview(data)[a - off:b - off]
        self._map[a:b] = src
        self.fetched += b - a
        bits = self.bits
        for i in range(first, last):
            if not (bits[i >> 3] >> (i & 7)) & 1:
                bits[i >> 3] |= 1 << (i & 7)

    def fetch(self, ranges, block: int | None = None) -> int:
        """Fetch what `ranges` need that the map lacks, in one `read_ranges` call (one round trip
        for a remote source), rounded out to `block` bytes (default: the map's block), and
        copy it in. Returns the bytes fetched."""
        todo = self.missing(ranges)
        if not todo:
            return 0
        unit = max(self.block, int(block or self.block))
        if unit != self.block:  # round out further, then drop what is held again
            todo = self.missing([((o // unit) * unit, -(-(o + n) // unit) * unit - (o // unit) * unit)
                                 for o, n in todo])
        datas = self.source.read_ranges(todo, self.block)
        for (o, _n), d in zip(todo, datas):
            self.fill(o, d)
        return sum(n for _o, n in todo)

    def read(self, off: int, n: int) -> memoryview:
        """Bytes of the file, fetched first if the map lacks them (a view of the map)."""
        self.fetch([(off, n)])
        return self.view[off:off + n]

    def close(self) -> None:
        view, self.view = self.view, memoryview(b"")
        try:
            view.release()
            self._map.close()
        except BufferError:
            pass  # a parse still holds the map: it goes with the last of them


def sparse_map(source) -> SparseMap:
    """The SparseMap of a source without a whole-file buffer (one per source, kept on it)."""
    smap = getattr(source, "_sparse_map", None)
    if smap is None:
        smap = SparseMap(source)
        source._sparse_map = smap
    return smap
