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

import struct

from mfparse import _native
from mfparse.errors import CorruptFileError, MFParseError, ResourceLimitError, UnsupportedFormatError
from mfparse.formats.base import SCATTERED, access, read_at, read_many

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


def member_ends(local_offsets: list, cd_offset: int) -> list:
    """Where each entry's data must end (entries by directory index, given their local header
    offsets): at the next local header by offset, or at the central directory for the last; of
    entries sharing one local header the first in directory order ends at the next header and
    the others at once, as zipfile orders them. Data past its end overlaps another entry."""
    ends = [0] * len(local_offsets)
    end = cd_offset
    for i in sorted(range(len(local_offsets)), key=local_offsets.__getitem__, reverse=True):
        ends[i] = end  # a stable sort: equal offsets keep directory order, as zipfile's does
        end = local_offsets[i]
    return ends


class ZipArchive:
    """Members of a zip file. The central directory is authoritative.

    The archive is read from the ranges it needs: the tail (end record, zip64 record), the
    central directory, and a member's local header only when its data is asked for. With a
    local map every local header is read at once (they are pages of the map); with a remote
    file a member's header comes with its data, in one request (`read`), and `resolve` reads
    the headers of many members in one round trip.

    Attributes:
        directory: the parsed central directory (C records).
        members: name -> ZipMember in directory order, built on first use (a repeated name keeps
            its last entry, as zipfile does, and the duplicate is flagged). data_offset is None
            for a member of a remote archive whose local header has not been read.
        anomalies: archive-level anomaly bits (complete once `members` has been built).
    """

    def __init__(self, source):
        self.source = source
        size = source.size
        eocd = find_eocd(source)
        if eocd[4] is not None:
            eocd = _native.zip_eocd64(read_at(source, eocd[4], 56), size, eocd)
        _, cd_offset, cd_size = eocd[:3]
        self.cd_offset = cd_offset
        source.advise("willneed", [(cd_offset, cd_size)])  # a local map: read the directory ahead
        self.directory = _native.ZipDirectory(read_at(source, cd_offset, cd_size), eocd, size)
        self.lazy = source.buf is None
        if not self.lazy:
            # one local header per member: scattered pages of a file of large members
            with access(source, size // max(len(self.directory), 1) >= SCATTERED):
                self.directory.resolve_all(source.buf)
        self.anomalies = eocd[6]
        if len(self.directory) != eocd[3]:
            self.anomalies |= _native.ZIP_ANOMALY_COUNT_MISMATCH
        self._members: dict[str, ZipMember] | None = None
        self._index: dict[str, int] | None = None

    def index(self, name: str) -> int:
        """The directory index of the member called name (its last entry)."""
        if self._index is None:
            self._index = {ZipMember(*row).name: i for i, row in enumerate(self.directory.entries_list())}
        return self._index[name]

    def _refresh(self, m: ZipMember) -> ZipMember:
        """m as the directory holds it now (its data offset once resolved)."""
        row = ZipMember(*self.directory.entry(self.index(m.name)))
        m = m._replace(data_offset=row.data_offset, anomalies=row.anomalies | (m.anomalies & ~row.anomalies))
        if self._members is not None:
            self._members[m.name] = m
        return m

    def resolve(self, members, extra: int = 0) -> list:
        """Read the local headers of members (ZipMember) whose data offset is not known yet, in
        one round trip, and with each the first `extra` bytes of its data when those come in the
        same request. Returns the members with their data offsets."""
        members = list(members)
        todo = [m for m in members if m.data_offset is None]
        if todo:
            self._resolve([(m, LOCAL_GUESS + extra) for m in todo])
        return [self._refresh(m) if m.data_offset is None else m for m in members]

    def prefetch(self, members) -> None:
        """A remote archive: fetch these members' local headers and data in one round trip
        (neighbours in one request), so that reading them later costs nothing."""
        if self.lazy:
            self.source.prefetch([(m.local_offset, 30 + raw_name_len(m) + LOCAL_GUESS + m.comp_size)
                                  for m in members if m.local_offset < self.source.size])

    def _resolve(self, wanted) -> dict:
        """{name: bytes fetched from each member's local header on} for [(member, bytes to fetch)]."""
        ranges = [(m.local_offset, 30 + raw_name_len(m) + n) for m, n in wanted]
        got = read_many(self.source, ranges)
        out = {}
        again = []
        for (m, n), data in zip(wanted, got):
            data = bytes(data)
            if len(data) >= 30:
                name_len, extra_len = struct.unpack_from("<HH", data, 26)
                if 30 + name_len + extra_len > len(data) and m.local_offset + len(data) < self.source.size:
                    again.append((m, name_len + extra_len - raw_name_len(m) + n))
                    continue
            self.directory.resolve(self.index(m.name), data)
            out[m.name] = data
        if again:  # a local extra field longer than guessed: once more with its real length
            out.update(self._resolve(again))
        return out

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

    def member_ends(self) -> list:
        """member_ends() of this archive's entries. zipfile (Python >= 3.12, and 3.11.8, 3.10.14
        and later) refuses to read a member whose data runs past its end ("Overlapped
        entries", a zip-bomb technique), and so np.load does."""
        return member_ends([row[6] for row in self.directory.entries_list()], self.cd_offset)

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
        raw = None
        if m.data_offset is None:
            # a remote archive: the local header and the data (or, for a partial read of a
            # compressed member, its start) in one request
            want = m.comp_size if max_size is None or m.method == 0 else min(m.comp_size, _partial(m, max_size))
            if m.method == 0 and max_size is not None:
                want = min(want, max_size)
            head = self._resolve([(m, LOCAL_GUESS + want)])[m.name]
            m = self._refresh(m)
            at = m.data_offset - m.local_offset
            if len(head) >= at + want:
                raw = memoryview(head)[at:at + want]
        start = m.data_offset
        if raw is None:
            want = m.comp_size
            if m.method != 0 and max_size is not None and self.lazy:
                want = min(want, _partial(m, max_size))
            raw = read_at(self.source, start, want)
        if m.method == 0:
            if m.comp_size != m.size:
                raise CorruptFileError(
                    f"stored zip member {m.name!r} has compressed size {m.comp_size} but size {m.size}",
                    m.local_offset,
                )
            return raw
        if m.method in (8, 12, 14):
            limit = m.size if max_size is None else min(m.size, max_size)
            if len(raw) < m.comp_size and max_size is None:
                raw = read_at(self.source, start, m.comp_size)
            d, skip = _decoder(m, raw)
            try:
                out = d.decompress(bytes(raw[skip:]) if m.method != 8 else raw, limit)
                if len(out) < limit and len(raw) < m.comp_size:  # a partial fetch fell short: all of it
                    raw = read_at(self.source, start, m.comp_size)
                    d, skip = _decoder(m, raw)
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


def raw_name_len(m: ZipMember) -> int:
    """Bytes of a member's name as the directory stores it (UTF-8 with flag 0x800, else cp437)."""
    return len(m.name.encode("utf-8" if m.flags & 0x800 else "cp437", "surrogateescape"))


#: bytes fetched after a local header's fixed part and name when its extra field's length is
#: not known yet (torch pads to 64-byte alignment, a zip64 field adds 20 or 28)
LOCAL_GUESS = 160


def _partial(m: ZipMember, max_size: int) -> int:
    """Compressed bytes enough to inflate the first max_size bytes of a member, short of a
    pathological stream (bzip2 needs its first block whole: 900 kB at most)."""
    if m.method == 12:
        return max_size + 1024 * 1024
    return max_size + 64 * 1024


def _held_tail(source) -> int:
    """How many bytes at the end of a remote file its source holds already (0: none)."""
    size = source.size
    return max((len(d) for off, d in source.held() if off + len(d) == size), default=0)


def find_eocd(source):
    """The end-of-central-directory record (zip_eocd's tuple) of an archive: from the tail a
    remote source fetched when it was opened when the record lies well inside it (no trailing
    bytes, the zip64 locator and record before it inside too), else from the last
    ZIP_TAIL_MAX bytes, as a local map reads it."""
    size = source.size
    full = min(size, _native.ZIP_TAIL_MAX)
    if source.buf is None:
        held = _held_tail(source)
        if 22 <= held < full:
            start = size - held
            try:
                e = _native.zip_eocd(read_at(source, start, held), size)
            except MFParseError:
                e = None
            if e is not None and not e[6] & _native.ZIP_ANOMALY_TRAILING_DATA and e[0] - start >= 76:
                return e
    return _native.zip_eocd(read_at(source, size - full, full), size)


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
