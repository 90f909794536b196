"""Scan reads metadata, not tensor data (issue 16, class 11).

A stored .npz of numbers is judged on its directory and .npy headers: its tensor bytes are
never read (their CRC-32 is not verified; members that hold a pickle or were inflated still are).
Two ways to see what a scan touches, on a sparse file whose data region is never written:
  * the CRC-32 and decompression calls the scanner makes (portable), and
  * the file's pages in the page cache after the scan (Linux mincore; the test first proves
    that the measurement sees a full read, and is skipped where it cannot, e.g. on tmpfs).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import struct
import sys
import zipfile
import zlib

import numpy as np
import pytest

import mfparse
from mfparse.scan import containers
from pickle_asm import call_pickle, zip_bytes
from scan_helpers import assert_unsafe, scan

DATA = 256 << 20  # bytes of zeros per member, never written (a hole in the file)


def _npy_header(shape, descr="<f4") -> bytes:
    d = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}"
    pad = (64 - (10 + len(d) + 1) % 64) % 64
    h = (d + " " * pad + "\n").encode()
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h


def _zeros_crc(head: bytes, n: int) -> int:
    crc = zlib.crc32(head)
    block = bytes(1 << 20)
    for _ in range(n >> 20):
        crc = zlib.crc32(block, crc)
    return crc & 0xFFFFFFFF


def sparse_npz(path, members=2, data=DATA) -> None:
    """A stored .npz (as np.savez writes it) whose float32 data regions are holes."""
    central = b""
    crc = _zeros_crc(_npy_header((data // 4,)), data)
    with open(path, "wb") as f:
        for i in range(members):
            name = f"w{i}.npy".encode()
            head = _npy_header((data // 4,))
            size = len(head) + data
            off = f.tell()
            f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0x21, crc, size, size, len(name), 0) + name)
            f.write(head)
            f.seek(data, os.SEEK_CUR)
            central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0x21, crc, size, size,
                                   len(name), 0, 0, 0, 0, 0, off) + name
        cd = f.tell()
        f.write(central)
        f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, members, members, len(central), cd, 0))


def test_the_sparse_npz_is_what_numpy_and_zipfile_read(tmp_path):
    p = tmp_path / "s.npz"
    sparse_npz(p, members=1, data=1 << 20)
    with np.load(p) as z:
        a = z["w0"]
    assert a.shape == (1 << 18,) and a.dtype == np.float32 and not a.any()
    with zipfile.ZipFile(p) as z:
        assert z.testzip() is None  # every CRC right


def test_scan_checksums_and_inflates_no_tensor_data(tmp_path, monkeypatch):
    p = tmp_path / "big.npz"
    sparse_npz(p)
    seen = {"crc": 0, "inflate": 0}
    real_crc, real_dec = zlib.crc32, containers._decompress

    def crc(data, *a):
        seen["crc"] += len(data)
        return real_crc(data, *a)

    def dec(kind, data, limit):
        seen["inflate"] += len(data)
        return real_dec(kind, data, limit)

    monkeypatch.setattr(containers.zlib, "crc32", crc)
    monkeypatch.setattr(containers, "_decompress", dec)
    r = scan(p)
    assert r.verdict == "safe", str(r)
    assert seen == {"crc": 0, "inflate": 0}


def test_members_that_hold_a_pickle_are_still_checksummed(tmp_path):
    from scan_helpers import break_crc as flip_crc

    obj = _npy_header((1,), "|O") + call_pickle("collections", "OrderedDict")
    z = flip_crc(zip_bytes({"o.npy": obj, "w.npy": _npy_header((2,)) + bytes(8)}), "o.npy")
    assert_unsafe(scan(z), "suspicious", kind="container", why="CRC-32")
    # a numeric member's CRC is not verified by scan (its data is never read)
    z = flip_crc(zip_bytes({"w.npy": _npy_header((2,)) + bytes(8)}), "w.npy")
    assert scan(z).verdict == "safe"
    # an inflated member's bytes are all in memory: its CRC is verified
    z = flip_crc(zip_bytes({"w.npy": _npy_header((2,)) + bytes(8)}, zipfile.ZIP_DEFLATED), "w.npy")
    r = scan(z)
    assert r.verdict in ("safe", "unsafe")  # a deflated numeric member is judged from its first bytes


# ---- page cache residency (Linux) --------------------------------------------------------------

def _resident(path) -> int:
    """Bytes of the file in the page cache (mincore over a fresh read-only mapping)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                          ctypes.c_long)
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p)
    size = os.path.getsize(path)
    page = mmap.PAGESIZE
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value)
        try:
            vec = ctypes.create_string_buffer((size + page - 1) // page)
            assert libc.mincore(ctypes.c_void_p(addr), size, vec) == 0, ctypes.get_errno()
            return sum(b & 1 for b in vec.raw) * page
        finally:
            libc.munmap(ctypes.c_void_p(addr), size)
    finally:
        os.close(fd)


def _drop_cache(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mincore and posix_fadvise: Linux")
def test_scan_leaves_the_tensor_data_out_of_the_page_cache(tmp_path):
    p = tmp_path / "big.npz"
    sparse_npz(p)
    size = os.path.getsize(p)
    # the measurement must see a full read where there was one
    _drop_cache(p)
    with open(p, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        zlib.crc32(mm)
    if _resident(p) < size // 2:
        pytest.skip("this file system does not keep read holes in the page cache")
    _drop_cache(p)
    if _resident(p) > size // 64:
        pytest.skip("posix_fadvise(DONTNEED) does not drop this file's pages")
    r = mfparse.scan(p)
    assert r.verdict == "safe", str(r)
    touched = _resident(p)
    assert touched < 4 << 20, f"scan brought {touched} of {size} bytes into the page cache"
