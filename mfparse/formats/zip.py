"""Zip archives (torch checkpoints, .npz, .keras) over the C reader in csrc/mf_zip.c.

The reader asks its source only for the ranges it needs: the tail (EOCD), the zip64 record,
the central directory, then local headers and member data. With a memory map those are
slices of one map and cost nothing until touched.
"""

from __future__ import annotations

import zlib
from collections import namedtuple

from mfparse import _native
from mfparse.errors import CorruptFileError, ResourceLimitError, UnsupportedFormatError

# bits of ZipMember.anomalies (csrc/mf_zip.h)
ANOMALIES = {
    1 << 0: "local and central file names differ",
    1 << 1: "encrypted member (flag 0x1)",
    1 << 2: "flag 0x20 (compressed patched data)",
    1 << 3: "flag 0x40 (strong encryption)",
    1 << 4: "local and central compression methods differ",
    1 << 5: "the same name appears twice",
    1 << 6: "entry count disagrees with the directory",
    1 << 7: "bytes after the end-of-central-directory record",
    1 << 8: "bytes before the archive",
}


#: one member of the central directory: method 0 stored, 8 deflated; size is the uncompressed
#: size from the central directory; data_offset None until the local header is resolved
ZipMember = namedtuple("ZipMember", ("name", "flags", "method", "crc32", "comp_size", "size", "local_offset",
                                     "data_offset", "anomalies"))


class ZipArchive:
    """Members of a zip file. The central directory is authoritative.

    Attributes:
        directory: the parsed central directory (C records).
        members: name -> ZipMember in directory order, built on first use (a repeated name keeps
            its last entry, as zipfile does, and the duplicate is flagged).
        anomalies: archive-level anomaly bits (complete once `members` has been built).
    """

    def __init__(self, source):
        self.source = source
        buf, size = source.buf, source.size
        tail_len = min(size, _native.ZIP_TAIL_MAX)
        eocd = _native.zip_eocd(buf[size - tail_len:], size)
        if eocd[4] is not None:
            eocd = _native.zip_eocd64(buf[eocd[4]:], size, eocd)
        _, cd_offset, cd_size = eocd[:3]
        self.directory = _native.ZipDirectory(buf[cd_offset:cd_offset + cd_size], eocd, size)
        self.directory.resolve_all(buf)
        self.anomalies = eocd[6]
        if len(self.directory) != eocd[3]:
            self.anomalies |= 1 << 6
        self._members: dict[str, ZipMember] | None = None

    @property
    def members(self) -> dict[str, ZipMember]:
        if self._members is None:
            members: dict[str, ZipMember] = {}
            for row in self.directory.entries_list():
                m = ZipMember(*row)
                if m.name in members:
                    m = m._replace(anomalies=m.anomalies | (1 << 5))
                    self.anomalies |= 1 << 5
                members[m.name] = m
            self._members = members
        return self._members

    def names(self) -> list[str]:
        return list(self.members)

    def first_name(self) -> str | None:
        return self.directory.entry(0)[0] if len(self.directory) else None

    def find(self, name: str) -> ZipMember | None:
        """The member called `name` (its last entry), without building `members`."""
        if self._members is not None:
            return self._members.get(name)
        i = self.directory.find(name.encode("utf-8"))
        if i < 0:
            return None if name.isascii() else self.members.get(name)
        return ZipMember(*self.directory.entry(i))

    def read(self, name_or_member, max_size: int | None = None):
        """A member's bytes: a zero-copy memoryview when stored, decompressed bytes when deflated.

        Decompression never produces more than the central directory's size (or max_size); a
        member inflated whole must match its CRC-32 (stored members are not checked: they are
        handed out as views, their bytes unread).
        """
        m = self.members[name_or_member] if isinstance(name_or_member, str) else name_or_member
        if m.flags & 0x1:
            raise UnsupportedFormatError(f"zip member {m.name!r} is encrypted", m.local_offset)
        if m.flags & 0x60:  # as zipfile: these bytes are not the member's data as stored or deflated
            what = "compressed patched data (flag 0x20)" if m.flags & 0x20 else "strongly encrypted (flag 0x40)"
            raise UnsupportedFormatError(f"zip member {m.name!r} is {what}", m.local_offset)
        start = m.data_offset
        raw = self.source.buf[start:start + m.comp_size]
        if m.method == 0:
            if m.comp_size != m.size:
                raise CorruptFileError(
                    f"stored zip member {m.name!r} has compressed size {m.comp_size} but size {m.size}",
                    m.local_offset,
                )
            return raw
        if m.method == 8:
            limit = m.size if max_size is None else min(m.size, max_size)
            d = zlib.decompressobj(-15)
            try:
                out = d.decompress(raw, limit)
            except zlib.error as e:
                raise CorruptFileError(f"zip member {m.name!r} does not inflate: {e}", start) from None
            if len(out) != m.size and (max_size is None or len(out) < limit):
                raise CorruptFileError(
                    f"zip member {m.name!r} inflates to {len(out)} bytes, the directory says {m.size}", start
                )
            if d.unconsumed_tail and max_size is None:
                raise ResourceLimitError(
                    f"zip member {m.name!r} inflates to more than the {m.size} bytes the directory declares",
                    start,
                )
            if len(out) == m.size and zlib.crc32(out) != m.crc32:
                # inflating read every byte anyway: a damaged stream that still inflates is caught
                # here, as zipfile catches it (stored members are mapped, never read whole)
                raise CorruptFileError(f"zip member {m.name!r} fails its CRC-32 check", start)
            return out
        raise UnsupportedFormatError(f"zip member {m.name!r} uses compression method {m.method}", m.local_offset)
