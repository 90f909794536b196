"""A zip writer for uncompressed archives whose members start at aligned offsets (torch
checkpoints, .npz), streaming each member's data once.

Each member is written as: local header (sizes known up front, CRC patched in after the data,
so no data descriptor), an extra field that pads the data to ALIGN bytes (id 0x4246 "FB", as
PyTorch's writer pads), the data. Zip64 records are written where a size or an offset needs
them (or always, with force_zip64). The central directory and end records follow the last
member.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mfparse.writers.base import Output, WriteError

ALIGN = 64
_LOCAL = struct.Struct("<IHHHHHIIIHH")     # 30 bytes
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")  # 46 bytes
_EOCD = struct.Struct("<IHHHHIIH")          # 22 bytes
_EOCD64 = struct.Struct("<IQHHIIQQQQ")      # 56 bytes
_LOCATOR64 = struct.Struct("<IIQI")         # 20 bytes
_DOS_DATE = 0x21  # 1980-01-01, what torch and numpy's writers produce without a timestamp
_FB = 0x4246
_U32 = 0xFFFFFFFF


@dataclass
class _Entry:
    name: bytes
    flags: int
    local_offset: int
    size: int
    crc: int
    zip64: bool


class ZipWriter:
    """Write stored members one after another: begin(name, size) -> data -> end(crc)."""

    def __init__(self, out: Output, align: int = ALIGN, force_zip64: bool = False):
        self.out = out
        self.align = align
        self.force_zip64 = force_zip64
        self.entries: list[_Entry] = []
        self._open: tuple | None = None

    @staticmethod
    def local_size(name: str, size: int, offset: int, align: int = ALIGN, force_zip64: bool = False) -> int:
        """Bytes of a member's local header and padding when written at offset."""
        raw = name.encode("utf-8")
        z64 = force_zip64 or size >= _U32 or offset >= _U32
        fixed = 30 + len(raw) + (20 if z64 else 0) + 4
        return fixed + (-(offset + fixed) % align)

    def begin(self, name: str, size: int) -> int:
        """Write a member's local header; returns the file offset where its data start."""
        if self._open is not None:
            raise RuntimeError("previous zip member not finished")
        raw = name.encode("utf-8")
        if len(raw) > 0xFFFF:
            raise WriteError(f"zip member name too long ({len(raw)} bytes)")
        off = self.out.pos
        z64 = self.force_zip64 or size >= _U32 or off >= _U32
        flags = 0x800 if not raw.isascii() else 0
        extra = b""
        if z64:
            extra += struct.pack("<HHQQ", 0x0001, 16, size, size)
        fixed = 30 + len(raw) + len(extra) + 4
        pad = -(off + fixed) % self.align
        extra += struct.pack("<HH", _FB, pad) + b"Z" * pad
        csize = _U32 if z64 else size
        header = _LOCAL.pack(0x04034B50, 45 if z64 else 20, flags, 0, 0, _DOS_DATE, 0, csize, csize,
                             len(raw), len(extra))
        self.out.write(header + raw + extra)
        self._open = (raw, flags, off, size, z64, self.out.pos)
        return self.out.pos

    def end(self, crc: int) -> None:
        """Finish the open member: check its length, patch its CRC into the local header."""
        raw, flags, off, size, z64, start = self._open
        written = self.out.pos - start
        if written != size:
            raise WriteError(f"zip member {raw.decode('utf-8', 'replace')!r}: wrote {written} bytes, declared {size}")
        self.out.patch(off + 14, struct.pack("<I", crc & _U32))
        self.entries.append(_Entry(raw, flags, off, size, crc & _U32, z64 or off >= _U32))
        self._open = None

    def add_bytes(self, name: str, data: bytes) -> None:
        import zlib

        self.begin(name, len(data))
        self.out.write(data)
        self.end(zlib.crc32(data))

    def close(self) -> None:
        """Write the central directory and the end records."""
        if self._open is not None:
            raise RuntimeError("zip member not finished")
        out = self.out
        cd_start = out.pos
        parts = []
        for e in self.entries:
            need64 = self.force_zip64 or e.size >= _U32 or e.local_offset >= _U32
            extra = b""
            if need64:
                extra = struct.pack("<HHQQQ", 0x0001, 24, e.size, e.size, e.local_offset)
            size32 = _U32 if need64 else e.size
            off32 = _U32 if need64 else e.local_offset
            parts.append(_CENTRAL.pack(0x02014B50, (3 << 8) | (45 if need64 else 20), 45 if need64 else 20,
                                       e.flags, 0, 0, _DOS_DATE, e.crc, size32, size32, len(e.name), len(extra),
                                       0, 0, 0, 0o100644 << 16, off32) + e.name + extra)
        cd = b"".join(parts)
        out.write(cd)
        cd_size = len(cd)
        n = len(self.entries)
        if self.force_zip64 or n >= 0xFFFF or cd_start >= _U32 or cd_size >= _U32:
            eocd64_at = out.pos
            out.write(_EOCD64.pack(0x06064B50, 44, 45, 45, 0, 0, n, n, cd_size, cd_start))
            out.write(_LOCATOR64.pack(0x07064B50, 0, eocd64_at, 1))
            out.write(_EOCD.pack(0x06054B50, 0, 0, min(n, 0xFFFF), min(n, 0xFFFF), min(cd_size, _U32),
                                 min(cd_start, _U32), 0))
        else:
            out.write(_EOCD.pack(0x06054B50, 0, 0, n, n, cd_size, cd_start, 0))

    @staticmethod
    def directory_size(names: list[str], zip64: bool = True) -> int:
        """Upper bound of the central directory plus end records."""
        return sum(46 + len(n.encode("utf-8")) + (28 if zip64 else 0) for n in names) + 56 + 20 + 22
