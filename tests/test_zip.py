"""The zip reader (csrc/mf_zip.c) agrees with Python's zipfile on member names, sizes and bytes,
for stored, deflated, zip64, prefixed, commented and streamed archives, and reads each piece
from separate buffers as a remote source would supply them."""

from __future__ import annotations

import io
import zipfile

import pytest

from mfparse import _native
from mfparse.errors import CorruptFileError, MFParseError, ResourceLimitError
from mfparse.formats.zip import ZipArchive
from mfparse.source import Source


def make_zip(members, compression=zipfile.ZIP_STORED, force_zip64=False, comment=b"", stream=False):
    buf = io.BytesIO()
    target = buf
    if stream:
        class Unseekable(io.RawIOBase):
            def writable(self):
                return True

            def write(self, b):
                return buf.write(b)

        target = Unseekable()
    with zipfile.ZipFile(target, "w", compression=compression) as z:
        for name, data in members.items():
            with z.open(zipfile.ZipInfo(name) if compression == zipfile.ZIP_STORED else name, "w",
                        force_zip64=force_zip64) as f:
                f.write(data)
        z.comment = comment
    return buf.getvalue()


MEMBERS = {"a.txt": b"hello", "dir/b.bin": bytes(range(256)) * 40, "empty": b"", "ünï.txt": b"x" * 3}


def check_against_zipfile(data: bytes):
    arch = ZipArchive(Source(data))
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        infos = z.infolist()
        assert arch.names() == [i.filename for i in infos]
        for i in infos:
            m = arch.members[i.filename]
            assert (m.size, m.comp_size, m.crc32) == (i.file_size, i.compress_size, i.CRC)
            assert bytes(arch.read(i.filename)) == z.read(i.filename)
    return arch


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
@pytest.mark.parametrize("force_zip64", [False, True])
def test_matches_zipfile(compression, force_zip64):
    check_against_zipfile(make_zip(MEMBERS, compression, force_zip64))


def test_comment_prefix_and_stream_written_archives():
    data = make_zip(MEMBERS, comment=b"a comment")
    arch = check_against_zipfile(data)
    assert arch.anomalies == 0
    prefixed = b"#!/bin/sh\nexit 0\n" + data  # a self-extracting style prefix
    arch = check_against_zipfile(prefixed)
    assert arch.anomalies & (1 << 8)
    streamed = make_zip(MEMBERS, zipfile.ZIP_DEFLATED, stream=True)  # data descriptors, flag 0x8
    check_against_zipfile(streamed)


def with_zip64_end_records(data: bytes) -> bytes:
    """The same archive with a zip64 EOCD record + locator and a saturated classic EOCD, as
    writers produce for archives past 4 GiB or 65,535 members (zipfile would need that size)."""
    import struct

    e = data.rindex(b"PK\x05\x06")
    n, cd_size, cd_off = struct.unpack_from("<HII", data, e + 10)
    rec = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, cd_size, cd_off)
    loc = struct.pack("<IIQI", 0x07064B50, 0, e, 1)
    eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return data[:e] + rec + loc + eocd


def test_zip64_end_records():
    data = with_zip64_end_records(make_zip(MEMBERS, force_zip64=True))
    eocd = _native.zip_eocd(data[-100:], len(data))
    assert eocd[4] is not None  # the locator was found
    arch = check_against_zipfile(data)
    assert len(arch.directory) == len(MEMBERS)
    prefixed = b"\0" * 100 + data  # zip64 offsets are relative to the archive, not the file
    arch = check_against_zipfile(prefixed)
    assert arch.anomalies & (1 << 8)


def test_separate_buffers_like_a_remote_source():
    data = make_zip(MEMBERS, zipfile.ZIP_DEFLATED)
    size = len(data)
    tail = data[-min(size, _native.ZIP_TAIL_MAX):]
    eocd = _native.zip_eocd(tail, size)
    cd = data[eocd[1]:eocd[1] + eocd[2]]
    d = _native.ZipDirectory(cd, eocd, size)
    rows = d.entries_list()
    assert [r[0] for r in rows] == list(MEMBERS)
    for i, r in enumerate(rows):
        local = data[r[6]:r[6] + 30 + 1024]  # just the local header's bytes
        off = d.resolve(i, local)
        member = data[off:off + r[4]]
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            import zlib
            got = member if r[2] == 0 else zlib.decompress(member, -15)
            assert got == z.read(r[0])


def test_anomalies_local_name_mismatch_and_duplicates():
    data = bytearray(make_zip({"data.pkl": b"abc", "other": b"d"}))
    i = data.index(b"data.pkl")  # the local header's copy comes first
    data[i:i + 8] = b"evil.pkl"
    arch = ZipArchive(Source(bytes(data)))
    assert arch.members["data.pkl"].anomalies & 1  # central name wins, mismatch flagged
    dup = make_zip({"x": b"1"}) [:0]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("x", b"first")
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            z.writestr("x", b"second")
    arch = ZipArchive(Source(buf.getvalue()))
    assert bytes(arch.read("x")) == b"second"  # the last entry wins, as in zipfile
    assert arch.anomalies & (1 << 5)
    assert dup == b""


def test_deflate_bomb_is_bounded():
    data = bytearray(make_zip({"big": b"\0" * 100000}, zipfile.ZIP_DEFLATED))
    # the directory claims 10 bytes: inflating must stop there
    cd = data.rindex(b"PK\x01\x02")
    data[cd + 24:cd + 28] = (10).to_bytes(4, "little")
    arch = ZipArchive(Source(bytes(data)))
    with pytest.raises(ResourceLimitError, match="more than the 10 bytes"):
        arch.read("big")


@pytest.mark.parametrize("cut", [0, 10, 21, 40])
def test_truncated_archives(cut):
    data = make_zip(MEMBERS)
    with pytest.raises(MFParseError):
        ZipArchive(Source(data[:cut] if cut < 22 else data[:-cut]))


def test_missing_eocd():
    with pytest.raises(CorruptFileError, match="end-of-central-directory record not found"):
        ZipArchive(Source(b"PK\x03\x04" + b"\0" * 100))
