"""Archives as other parsers see them (issue 16, class 6) and damaged compressed wrappers
(class 8).

Hostile archives are assembled from bytes here and checked against the real readers first:
CPython's zipfile (namelist / read), torch's reader (torch._C.PyTorchFileReader on the bytes:
its central directory and records, never torch.load) and tarfile. mfparse must scan what each
of them would load, and report where their readings differ. Benign archives come from zipfile,
tarfile, numpy and torch and stay safe. Nothing is ever unpickled.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import pickle
import struct
import tarfile
import zipfile
import zlib

import numpy as np
import pytest
import torch

from pickle_asm import call_pickle, zip_bytes
from scan_helpers import assert_unsafe, has, scan

PAYLOAD = call_pickle("os", "system", "touch /tmp/never")
BENIGN = pickle.dumps({"w": [1.0, 2.0]}, protocol=2)


# ---- a zip assembler: members at chosen places, directories and end records by hand ------------

def locals_and_cd(members, base: int):
    """(local headers + data, central directory) of stored members [(name, data)] whose local
    headers start at file offset `base`."""
    loc, cd = b"", b""
    for name, data in members:
        nm = name.encode() if isinstance(name, str) else name
        crc = zlib.crc32(data)
        off = base + len(loc)
        loc += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0x21, crc, len(data), len(data), len(nm), 0)
        loc += nm + data
        cd += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0x21, crc, len(data), len(data),
                          len(nm), 0, 0, 0, 0, 0, off) + nm
    return loc, cd


def eocd(n: int, cd_size: int, cd_off: int, comment: bytes = b"", comment_len=None) -> bytes:
    clen = len(comment) if comment_len is None else comment_len
    return struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, cd_size, cd_off, clen) + comment


def torch_members(pkl: bytes):
    return [("archive/data.pkl", pkl), ("archive/byteorder", b"little"), ("archive/version", b"3\n")]


def torch_sees(data: bytes):
    r = torch._C.PyTorchFileReader(io.BytesIO(data))
    return sorted(r.get_all_records()), r


def zipfile_sees(data: bytes):
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return sorted(z.namelist()), {n: z.read(n) for n in z.namelist()}


def hidden_end_record() -> bytes:
    """Archive A (benign) whose end record's comment holds archive B's directory and end record
    (B: a malicious data.pkl). B's end record does not end the file, A's comment does."""
    a_loc, a_cd = locals_and_cd(torch_members(BENIGN), 0)
    b_loc, b_cd = locals_and_cd(torch_members(PAYLOAD), len(a_loc))
    body = a_loc + b_loc
    a_cd_off = len(body)
    head = body + a_cd
    b_cd_off = len(head) + 22  # inside A's comment
    comment = b_cd + eocd(3, len(b_cd), b_cd_off) + b"\0" * 7
    return head + eocd(3, len(a_cd), a_cd_off, comment)


def test_an_end_record_hidden_in_the_comment():
    data = hidden_end_record()
    # the real readers: zipfile and torch both take the LAST signature, B
    names, content = zipfile_sees(data)
    assert names == ["archive/byteorder", "archive/data.pkl", "archive/version"]
    assert content["archive/data.pkl"] == PAYLOAD
    tnames, reader = torch_sees(data)
    assert tnames == ["byteorder", "data.pkl", "version"]
    assert bytes(reader.get_record("data.pkl")) == PAYLOAD
    r = scan(data)
    f = assert_unsafe(r, glob="os.system")
    assert f.member in ("<as zipfile reads it>!archive/data.pkl", "<as torch reads it>!archive/data.pkl")
    diff = assert_unsafe(r, "suspicious", kind="container", why="archive read differently by")
    assert "end record at byte" in diff.why
    assert diff.offset == len(data) - 7 - 22


def test_a_zip64_locator_pointing_at_another_record():
    """zipfile (and mfparse) read the zip64 record right before the locator (archive A, benign);
    torch's miniz follows the locator's offset to record B (malicious)."""
    a_loc, a_cd = locals_and_cd(torch_members(BENIGN), 0)
    b_loc, b_cd = locals_and_cd(torch_members(PAYLOAD), len(a_loc))
    out = a_loc + b_loc
    b_cd_off = len(out)
    out += b_cd
    rec_b = len(out)
    out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, 3, 3, len(b_cd), b_cd_off)
    a_cd_off = len(out)
    out += a_cd
    rec_a = len(out)
    out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, 3, 3, len(a_cd), a_cd_off)
    out += struct.pack("<IIQI", 0x07064B50, 0, rec_b, 1)
    out += eocd(0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    data = out
    assert zipfile_sees(data)[1]["archive/data.pkl"] == BENIGN
    _, reader = torch_sees(data)
    assert bytes(reader.get_record("data.pkl")) == PAYLOAD
    assert rec_a != rec_b
    r = scan(data)
    f = assert_unsafe(r, glob="os.system")
    assert f.member == "<as torch reads it>!archive/data.pkl"
    assert has(r, "suspicious", kind="container", why="torch.load (PyTorch's miniz reader)")


def test_a_nul_in_a_member_name_hides_a_keras_config():
    """zipfile cuts names at NUL: keras opens 'config.json' and gets this member."""
    config = {"class_name": "Sequential", "module": "keras", "config": {"layers": [
        {"class_name": "Lambda", "module": "keras.layers", "config": {"function": {"class_name": "__lambda__",
                                                                                   "config": {"code": "x"}}}}]}}
    members = [("metadata.json", b'{"keras_version": "3.5.0"}'), ("config.json\0.txt", json.dumps(config).encode()),
               ("model.weights.h5", b"\x89HDF\r\n\x1a\n" + bytes(100))]
    loc, cd = locals_and_cd(members, 0)
    data = loc + cd + eocd(3, len(cd), len(loc))
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert json.loads(z.read("config.json")) == config
    r = scan(data)
    assert has(r, kind="keras") or has(r, why="Lambda"), str(r)
    assert has(r, "suspicious", kind="container", why="CPython's zipfile")


def test_benign_archives_read_the_same_by_every_reader(tmp_path):
    torch.save({"w": torch.ones(3)}, tmp_path / "m.pt")
    np.savez(tmp_path / "a.npz", a=np.ones(3))
    np.savez_compressed(tmp_path / "c.npz", a=np.ones(3))
    (tmp_path / "z.zip").write_bytes(zip_bytes({"a/b.pkl": BENIGN, "c.txt": b"hello"}, zipfile.ZIP_DEFLATED))
    with zipfile.ZipFile(tmp_path / "comment.zip", "w") as z:
        z.writestr("x.pkl", BENIGN)
        z.comment = b"PK\x05\x06 not an end record"[:12] + b"!"
    for f in ("m.pt", "a.npz", "c.npz", "z.zip", "comment.zip"):
        r = scan(tmp_path / f)
        assert r.verdict == "safe", str(r)
        assert not any("differently" in n for n in r.notes), r.notes


def test_an_archive_only_other_readers_open_is_still_judged():
    """mfparse's reader refuses the directory it picks; zipfile's reading is scanned anyway."""
    data = bytearray(hidden_end_record())
    # break A's directory (its first signature) so that mfparse's own reading fails
    a_cd_off = struct.unpack_from("<I", data, len(data) - 7 - 22 - 22 - len(locals_and_cd(torch_members(PAYLOAD),
                                                                                             0)[1]) + 16)[0]
    data[a_cd_off:a_cd_off + 4] = b"XXXX"
    r = scan(bytes(data))
    assert_unsafe(r, glob="os.system")
    assert any("mfparse's reader" in e for e in r.errors)


# ---- compression methods zipfile reads ------------------------------------------------------------

@pytest.mark.parametrize("method", [zipfile.ZIP_LZMA, zipfile.ZIP_BZIP2])
def test_lzma_and_bzip2_members(method):
    z = zip_bytes({"archive/data.pkl": PAYLOAD, "notes.txt": b"x" * 100}, method)
    assert zipfile_sees(z)[1]["archive/data.pkl"] == PAYLOAD
    assert_unsafe(scan(z), glob="os.system", member="archive/data.pkl")
    # a member not named like a pickle is found by its content too
    assert_unsafe(scan(zip_bytes({"weights.bin": PAYLOAD}, method)), glob="os.system")
    assert scan(zip_bytes({"a.pkl": BENIGN}, method)).verdict == "safe"


def test_lzma_npz_from_numpy_and_zipfile():
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", zipfile.ZIP_LZMA) as z:
        for name, arr in (("a", np.arange(10.0)), ("b", np.zeros((3, 4), "i2"))):
            with z.open(name + ".npy", "w") as f:
                np.lib.format.write_array(f, arr)
    data = bio.getvalue()
    with np.load(io.BytesIO(data)) as npz:
        assert npz["a"][3] == 3.0
    assert scan(data).verdict == "safe"
    import mfparse

    with mfparse.open(data) as m:
        assert m.format == "npz"
        assert m["a"].tolist() == list(np.arange(10.0))
        assert m["b"].shape == (3, 4)
    obj = io.BytesIO()
    np.save(obj, np.array([None], dtype=object), allow_pickle=True)
    evil = obj.getvalue()[:128] + PAYLOAD
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", zipfile.ZIP_LZMA) as z:
        z.writestr("o.npy", evil)
    assert_unsafe(scan(bio.getvalue()), glob="os.system", member="o.npy")


def zstd_member(name: str, data: bytes) -> bytes:
    zstandard = pytest.importorskip("zstandard")
    comp = zstandard.ZstdCompressor().compress(data)
    nm = name.encode()
    crc = zlib.crc32(data)
    loc = struct.pack("<IHHHHHIIIHH", 0x04034B50, 63, 0, 93, 0, 0x21, crc, len(comp), len(data), len(nm), 0) + nm
    cd = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 63, 63, 0, 93, 0, 0x21, crc, len(comp), len(data), len(nm),
                     0, 0, 0, 0, 0, 0) + nm
    body = loc + comp
    return body + cd + eocd(1, len(cd), len(body))


def test_zstd_members_and_streams():
    zstandard = pytest.importorskip("zstandard")
    assert_unsafe(scan(zstd_member("data.pkl", PAYLOAD)), glob="os.system", member="data.pkl")
    assert scan(zstd_member("data.pkl", BENIGN)).verdict == "safe"
    assert_unsafe(scan(zstandard.ZstdCompressor().compress(PAYLOAD)), glob="os.system", member="[zstd]")


def test_zstd_without_the_package_is_an_error_naming_it(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_zstd(name, *a, **k):
        if name == "zstandard":
            raise ImportError(name)
        return real(name, *a, **k)

    data = b"\x28\xb5\x2f\xfd" + bytes(40)
    monkeypatch.setattr(builtins, "__import__", no_zstd)
    r = scan(data)
    assert r.verdict == "error" and any("zstandard" in e for e in r.errors), str(r)


# ---- damaged compressed wrappers (class 8) -----------------------------------------------------

def _damage_tail(data: bytes, n: int = 4) -> bytes:
    return data[:-n] + bytes(b ^ 0xFF for b in data[-n:])


def _noise(n: int) -> bytes:
    import random

    return random.Random(0).randbytes(n)


DAMAGED = {
    "gzip bad crc": lambda p: _damage_tail(gzip.compress(p)),
    "gzip garbage after": lambda p: gzip.compress(p) + b"\x1f\x8b\x08garbage",
    "gzip truncated trailer": lambda p: gzip.compress(p)[:-6],
    "zlib bad adler": lambda p: _damage_tail(zlib.compress(p)),
    "xz bad footer": lambda p: _damage_tail(lzma.compress(p), 12),
    "xz truncated": lambda p: lzma.compress(p)[:-30],
    "bz2 garbage after": lambda p: bz2.compress(p) + b"BZh9garbage",
    "bz2 truncated second block": lambda p: bz2.compress(p + _noise(150_000), 1)[:-10],
}


def _streaming_loader_sees(kind: str, data: bytes):
    """What an incremental decoder (gzip.open, lzma.open, bz2.open read in small pieces) hands
    to pickle.load before it meets the damage."""
    d = {"gzip": lambda: zlib.decompressobj(31), "zlib": zlib.decompressobj, "xz": lzma.LZMADecompressor,
         "bz2": bz2.BZ2Decompressor}[kind]()
    out = bytearray()
    for i in range(len(data)):
        try:
            out += d.decompress(data[i:i + 1])
        except (zlib.error, lzma.LZMAError, OSError, EOFError):
            break
        if d.eof:
            break
    return bytes(out)


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_damage_after_the_payload_is_judged_and_reported(name):
    data = DAMAGED[name](PAYLOAD)
    kind = name.split()[0]
    assert _streaming_loader_sees(kind, data).startswith(PAYLOAD[:-1]), "a streaming loader reads the payload"
    r = scan(data)
    assert_unsafe(r, glob="os.system")
    assert any("damaged" in e or "truncated" in e for e in r.errors), r.errors
    # a benign pickle behind damage is never safe: the damage is an error
    r = scan(DAMAGED[name](BENIGN))
    assert r.verdict == "error" and any("damaged" in e or "truncated" in e for e in r.errors), str(r)


def test_a_damaged_deflated_zip_member_is_judged_up_to_the_damage():
    z = bytearray(zip_bytes({"archive/data.pkl": PAYLOAD + bytes(3000)}, zipfile.ZIP_DEFLATED))
    # corrupt the deflate stream near its end: zipfile's member reader has streamed the payload by then
    name = b"archive/data.pkl"
    loc = z.find(b"PK\x03\x04")
    start = loc + 30 + len(name)
    csize = struct.unpack_from("<I", z, loc + 18)[0]
    for i in range(start + csize - 3, start + csize):
        z[i] ^= 0xFF
    r = scan(bytes(z))
    assert_unsafe(r, glob="os.system", member="archive/data.pkl")
    assert any("damaged" in e for e in r.errors), r.errors


def test_benign_compressed_files_from_the_real_writers_are_safe():
    for data in (gzip.compress(BENIGN), zlib.compress(BENIGN), lzma.compress(BENIGN), bz2.compress(BENIGN),
                 gzip.compress(BENIGN) + gzip.compress(BENIGN), gzip.compress(BENIGN) + bytes(512)):
        r = scan(data)
        assert r.verdict == "safe", str(r)


# ---- tar as tarfile reads it ---------------------------------------------------------------------

def tar_header(name: str, size: int, typ: bytes = b"0", magic: bool = True) -> bytes:
    h = bytearray(512)
    h[0:len(name)] = name.encode()
    h[100:108] = b"0000644\0"
    h[108:116] = h[116:124] = b"0000000\0"
    h[124:136] = f"{size:011o}\0".encode()
    h[136:148] = b"00000000000\0"
    h[156:157] = typ
    if magic:
        h[257:265] = b"ustar\x0000"
    h[148:156] = b"        "
    h[148:156] = f"{sum(h):06o}\0 ".encode()
    return bytes(h)


def pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % 512)


def pax(*records) -> bytes:
    body = b""
    for k, v in records:
        rec = f" {k}={v}\n".encode()
        n = len(rec) + 1
        while len(str(n)) + len(rec) != n:
            n += 1
        body += str(n).encode() + rec
    return tar_header("PaxHeader", len(body), b"x") + pad(body)


def tar_end() -> bytes:
    return bytes(1024)


def tarfile_members(data: bytes):
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as t:
        return {m.name: t.extractfile(m).read() if m.isreg() else None for m in t.getmembers()}


def test_a_pax_size_record_overrides_the_header_size():
    # tarfile: 'model.pkl' holds the payload; a reader that trusts the header sees 0 bytes
    data = pax(("size", len(PAYLOAD))) + tar_header("model.pkl", 0) + pad(PAYLOAD) + tar_end()
    assert tarfile_members(data) == {"model.pkl": PAYLOAD}
    r = scan(data)
    assert_unsafe(r, glob="os.system", member="model.pkl")


def test_a_pax_size_record_hides_members_from_readers_that_ignore_it():
    inner = tar_header("evil.pkl", len(PAYLOAD)) + pad(PAYLOAD)
    data = pax(("size", len(inner))) + tar_header("notes.txt", 0) + inner + tar_end()
    assert list(tarfile_members(data)) == ["notes.txt"]  # tarfile: one member, whose data is the rest
    r = scan(data)
    assert_unsafe(r, glob="os.system")
    assert has(r, "suspicious", kind="container", why="ignore PAX records")


def test_repeated_pax_path_records_take_the_last():
    data = pax(("path", "readme.txt"), ("path", "archive/pickle")) + tar_header("x", len(PAYLOAD)) + pad(PAYLOAD) \
        + tar_end()
    assert list(tarfile_members(data)) == ["archive/pickle"]
    r = scan(data)
    assert_unsafe(r, glob="os.system", member="archive/pickle")
    assert has(r, "suspicious", kind="container", why="repeats 'path'")


def test_a_directory_entry_with_a_size_is_not_skipped_by_tarfile():
    # tarfile skips data only after regular files: the 'size' of a directory hides nothing from it
    evil = tar_header("evil.pkl", len(PAYLOAD)) + pad(PAYLOAD)
    data = tar_header("dir/", len(evil), b"5") + evil + tar_end()
    assert tarfile_members(data) == {"dir": None, "evil.pkl": PAYLOAD}
    assert_unsafe(scan(data), glob="os.system", member="evil.pkl")


def test_a_tar_without_ustar_magic_is_still_a_tar():
    # tarfile (and torch.load's legacy tar reader) only check the header checksum
    data = tar_header("pickle", len(PAYLOAD), magic=False) + pad(PAYLOAD) + tar_end()
    assert tarfile_members(data) == {"pickle": PAYLOAD}
    assert_unsafe(scan(data), glob="os.system", member="pickle")


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_benign_tar_archives_from_tarfile_are_safe(fmt):
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=fmt) as t:
        for name in ("a/model.pkl", "b/" + "long-" * 30 + "name.pkl", "dir"):
            if name == "dir":
                ti = tarfile.TarInfo(name)
                ti.type = tarfile.DIRTYPE
                t.addfile(ti)
                continue
            if fmt == tarfile.USTAR_FORMAT and len(name) > 100:
                continue
            ti = tarfile.TarInfo(name)
            ti.size = len(BENIGN)
            if fmt == tarfile.PAX_FORMAT:
                ti.pax_headers = {"comment": "é"}
            t.addfile(ti, io.BytesIO(BENIGN))
    r = scan(bio.getvalue())
    assert r.verdict == "safe", str(r)


# ---- 7z ------------------------------------------------------------------------------------------

def test_7z_without_py7zr_is_an_error_naming_it(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_py7zr(name, *a, **k):
        if name == "py7zr" or name.startswith("py7zr."):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_py7zr)
    r = scan(b"7z\xbc\xaf\x27\x1c" + bytes(100))
    assert r.verdict == "error" and any("py7zr" in e for e in r.errors), str(r)


def test_7z_members_are_scanned_with_py7zr():
    py7zr = pytest.importorskip("py7zr")
    bio = io.BytesIO()
    with py7zr.SevenZipFile(bio, "w") as z:
        z.writestr(PAYLOAD, "archive/data.pkl")
        z.writestr(b"hello", "readme.txt")
    assert_unsafe(scan(bio.getvalue()), glob="os.system", member="archive/data.pkl")
    bio = io.BytesIO()
    with py7zr.SevenZipFile(bio, "w") as z:
        z.writestr(BENIGN, "model.pkl")
    r = scan(bio.getvalue())
    assert r.verdict == "safe", str(r)
