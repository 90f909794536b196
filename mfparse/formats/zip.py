"""Zip archives (torch checkpoints, .npz, .keras) over the C reader in csrc/mf_zip.c.

The reader asks its source only for the ranges it needs: the tail (EOCD), the zip64 record,
the central directory, then local headers and member data. With a memory map those are
slices of one map and cost nothing until touched.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections import namedtuple

from mfparse import _native
from mfparse.errors import CorruptFileError, ResourceLimitError, UnsupportedFormatError

# bits of ZipMember.anomalies and ZipArchive.anomalies (csrc/mf_zip.h, exported by the extension)
ANOMALIES = {
    _native.ZIP_ANOMALY_NAME_MISMATCH: "local and central file names differ",
    _native.ZIP_ANOMALY_ENCRYPTED: "encrypted member (flag 0x1)",
    _native.ZIP_ANOMALY_FLAG_0x20: "flag 0x20 (compressed patched data)",
    _native.ZIP_ANOMALY_FLAG_0x40: "flag 0x40 (strong encryption)",
    _native.ZIP_ANOMALY_METHOD_MISMATCH: "local and central compression methods differ",
    _native.ZIP_ANOMALY_DUPLICATE_NAME: "the same name appears twice",
    _native.ZIP_ANOMALY_COUNT_MISMATCH: "entry count disagrees with the directory",
    _native.ZIP_ANOMALY_TRAILING_DATA: "bytes after the end-of-central-directory record",
    _native.ZIP_ANOMALY_PREFIX: "bytes before the archive",
    _native.ZIP_ANOMALY_OVERLAP: "member data overlaps another member",
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
            self.anomalies |= _native.ZIP_ANOMALY_COUNT_MISMATCH
        self._members: dict[str, ZipMember] | None = None

    @property
    def members(self) -> dict[str, ZipMember]:
        if self._members is None:
            members: dict[str, ZipMember] = {}
            for row in self.directory.entries_list():
                m = ZipMember(*row)
                if m.name in members:
                    m = m._replace(anomalies=m.anomalies | _native.ZIP_ANOMALY_DUPLICATE_NAME)
                    self.anomalies |= _native.ZIP_ANOMALY_DUPLICATE_NAME
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
        """A member's bytes: a zero-copy memoryview when stored, decompressed bytes when deflated
        (or bzip2 / LZMA compressed, as zipfile writes them).

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
        if m.method in (8, 12, 14):
            limit = m.size if max_size is None else min(m.size, max_size)
            d, skip = _decoder(m, raw)
            try:
                out = d.decompress(bytes(raw[skip:]) if m.method != 8 else raw, limit)
            except (zlib.error, OSError, EOFError, ValueError, lzma.LZMAError) as e:
                raise CorruptFileError(f"zip member {m.name!r} does not inflate: {e}", start) from None
            if len(out) != m.size and (max_size is None or len(out) < limit):
                raise CorruptFileError(
                    f"zip member {m.name!r} inflates to {len(out)} bytes, the directory says {m.size}", start
                )
            more = d.unconsumed_tail if m.method == 8 else not (d.eof or d.needs_input)
            if more and max_size is None:
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


def _decoder(m: ZipMember, raw):
    """(decompressor, bytes of raw to skip) for a deflate (8), bzip2 (12) or LZMA (14) member, as
    zipfile decodes them (LZMA: version, properties length, LZMA1 properties, raw stream)."""
    if m.method == 8:
        return zlib.decompressobj(-15), 0
    if m.method == 12:
        return bz2.BZ2Decompressor(), 0
    head = bytes(raw[:9])
    psize = int.from_bytes(head[2:4], "little") if len(head) >= 4 else 0
    if len(head) < 9 or psize != 5 or head[4] >= 225:
        raise CorruptFileError(f"zip member {m.name!r}: LZMA header is invalid", m.data_offset)
    props = head[4]
    # no match reaches further back than the declared output: a larger dictionary is not allocated
    dict_size = max(4096, min(int.from_bytes(head[5:9], "little"), m.size + 1))
    flt = {"id": lzma.FILTER_LZMA1, "lc": props % 9, "lp": props // 9 % 5, "pb": props // 45, "dict_size": dict_size}
    try:
        return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[flt]), 9
    except lzma.LZMAError as e:
        raise CorruptFileError(f"zip member {m.name!r}: LZMA properties are invalid ({e})", m.data_offset) from None
