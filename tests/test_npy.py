""".npy and .npz: differential tests against numpy (np.save / np.savez / np.load), hostile
headers built as bytes, and object arrays that must never be unpickled."""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

import mfparse
from helpers import Known, assert_view_of, check_robust
from mfparse.formats.npy import NPY_NAME

NUMERIC = ["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float16", "float32",
           "float64", "complex64", "complex128"]


def npy_bytes(arr, version=None) -> bytes:
    f = io.BytesIO()
    np.lib.format.write_array(f, arr, version=version, allow_pickle=True)
    return f.getvalue()


def sample(dtype, shape=(3, 4), seed=0):
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    if dtype == "bool":
        return rng.integers(0, 2, n).astype(bool).reshape(shape)
    if dtype.startswith("complex"):
        return (rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(dtype).reshape(shape)
    return (rng.standard_normal(n) * 50).astype(dtype).reshape(shape)


@pytest.mark.parametrize("dtype", NUMERIC)
@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("fortran", [False, True])
def test_numeric_dtypes(dtype, order, fortran):
    a = sample(dtype, (2, 3, 4))
    a = a.astype(np.dtype(dtype).newbyteorder(order)) if np.dtype(dtype).itemsize > 1 else a
    if fortran:
        a = np.asfortranarray(a)
    data = npy_bytes(a)
    with mfparse.open(data) as m:
        assert m.format == "npy"
        (t,) = m.tensors()
        assert t.name == NPY_NAME and t.dtype == dtype and t.shape == (2, 3, 4)
        assert t.nbytes == a.nbytes
        ref = np.load(io.BytesIO(data))
        got = m[NPY_NAME]
        np.testing.assert_array_equal(got, ref)
        assert got.dtype == ref.dtype and not got.flags.writeable
        assert_view_of(m, got, t)  # a view, not a copy
        assert data[t.offset:t.offset + t.nbytes] == (ref.tobytes(order="F") if fortran else ref.tobytes())
        assert t.extras.get("fortran_order", False) == fortran
        assert t.extras.get("byteorder", "<") == (order if np.dtype(dtype).itemsize > 1 else "<")


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_versions(version):
    a = np.arange(10, dtype=np.float32)
    data = npy_bytes(a, version=version)
    with mfparse.open(data) as m:
        np.testing.assert_array_equal(m[NPY_NAME], a)
        assert m.metadata == {"format_version": f"{version[0]}.{version[1]}"}


@pytest.mark.parametrize("arr", [
    np.float64(3.5) * np.ones(()),
    np.zeros((0, 5), np.float32),
    np.array([b"ab", b"c"]),
    np.array(["héllo", "x"]),
    np.array(["2020-01-01", "2021-06-30"], dtype="datetime64[ns]"),
    np.array([1, 2], dtype="timedelta64[s]"),
    np.array([(1, 2.5, b"x"), (3, 4.5, b"yz")], dtype=[("a", "<i4"), ("b", ">f8"), ("c", "S2")]),
    np.zeros(3, dtype=[("x", "<f4", (2,)), ("nested", [("p", "u1"), ("q", "<i2")])]),
    np.arange(6, dtype=np.longdouble),
], ids=["scalar", "empty", "bytes", "unicode", "datetime", "timedelta", "structured", "nested-structured",
        "longdouble"])
def test_other_dtypes(arr):
    data = npy_bytes(arr)
    ref = np.load(io.BytesIO(data))
    with mfparse.open(data) as m:
        (t,) = m.tensors()
        assert t.shape == ref.shape and t.nbytes == ref.nbytes
        got = m[NPY_NAME]
        assert got.dtype == ref.dtype
        np.testing.assert_array_equal(got, ref)


def test_structured_field_names_v3():
    arr = np.zeros(2, dtype=[("wärme", "<f4"), ("x", "<i2")])
    data = npy_bytes(arr, version=(3, 0))
    with mfparse.open(data) as m:
        assert m[NPY_NAME].dtype.names == ("wärme", "x")


def test_python2_header():
    """numpy on Python 2 wrote long integers with an L suffix."""
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (2L, 3L), }"
    header += b" " * (-(len(header) + 11) % 16) + b"\n"
    data = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + np.arange(6.0).tobytes()
    with mfparse.open(data) as m:
        np.testing.assert_array_equal(m[NPY_NAME], np.arange(6.0).reshape(2, 3))


class Boom:
    def __reduce__(self):
        return (os.system, ("touch /tmp/mfparse-npy-pwned",))


def test_object_arrays_are_never_loaded(tmp_path):
    if os.path.exists("/tmp/mfparse-npy-pwned"):
        os.remove("/tmp/mfparse-npy-pwned")
    a = np.empty(2, dtype=object)
    a[0] = Boom()
    a[1] = 1
    data = npy_bytes(a)
    assert b"system" in data
    with mfparse.open(data) as m:
        (t,) = m.tensors()
        assert t.dtype == "object" and t.offset is None and t.extras["pickle"]
        assert data[t.extras["pickle_offset"]] == pickle.PROTO[0]  # the pickle starts there
        with pytest.raises(mfparse.UnsafeContentError, match="pickle"):
            m[NPY_NAME]
    p = tmp_path / "o.npz"
    np.savez(p, obj=a, num=np.arange(3))
    with mfparse.open(p) as m:
        infos = {t.name: t for t in m.tensors()}
        assert infos["obj"].dtype == "object"
        np.testing.assert_array_equal(m["num"], np.arange(3))
        with pytest.raises(mfparse.UnsafeContentError):
            m["obj"]
    structured = np.zeros(2, dtype=[("a", "<f4"), ("o", "O")])
    with mfparse.open(npy_bytes(structured)) as m:
        assert next(iter(m.tensors())).dtype == "object"
        with pytest.raises(mfparse.UnsafeContentError):
            m[NPY_NAME]
    assert not os.path.exists("/tmp/mfparse-npy-pwned")


def hdr(text: bytes, version=1) -> bytes:
    text = text + b" " * (-(len(text) + 11) % 64) + b"\n"
    if version == 1:
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text
    return b"\x93NUMPY\x02\x00" + struct.pack("<I", len(text)) + text


@pytest.mark.parametrize("text,exc,msg", [
    (b"['descr', '<f4']", mfparse.CorruptFileError, "not a dict"),
    (b"{'descr': '<f4', 'fortran_order': False}", mfparse.CorruptFileError, "misses 'shape'"),
    (b"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}", mfparse.CorruptFileError,
     "unexpected key"),
    (b"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", mfparse.CorruptFileError,
     "duplicate"),
    (b"{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}", mfparse.CorruptFileError, "True or False"),
    (b"{'descr': '<f4', 'fortran_order': False, 'shape': (2)}", mfparse.CorruptFileError, "not a tuple"),
    (b"{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}", mfparse.CorruptFileError, "non-negative"),
    (b"{'descr': '<f4', 'fortran_order': False, 'shape': (3000000000, 3000000000)}", mfparse.CorruptFileError,
     "runs past the end"),
    (b"{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296)}",
     mfparse.CorruptFileError, "overflows"),
    (b"{'descr': __import__('os'), 'fortran_order': False, 'shape': (2,)}", mfparse.CorruptFileError,
     "expected a string"),
    (b"{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} junk", mfparse.CorruptFileError, "after the header"),
    (b"{'descr': 'not a dtype', 'fortran_order': False, 'shape': (2,)}", mfparse.CorruptFileError,
     "not a type string"),
    (b"{'descr': '<q9', 'fortran_order': False, 'shape': (2,)}", mfparse.UnsupportedFormatError, "not understood"),
    (b"{'descr': [('a', '<f4'), ('b', len)], 'fortran_order': False, 'shape': (2,)}", mfparse.CorruptFileError,
     "not a literal"),
])
def test_hostile_headers(text, exc, msg):
    with pytest.raises(exc, match=msg):
        mfparse.open(hdr(text) + b"\0" * 8)


def test_truncated_and_bad_versions():
    good = npy_bytes(np.arange(4, dtype=np.int32))
    with pytest.raises(mfparse.CorruptFileError, match="runs past the end"):
        mfparse.open(good[:-1])
    with pytest.raises(mfparse.TruncatedFileError, match="npy header truncated"):
        mfparse.open(good[:40])
    with pytest.raises(mfparse.UnsupportedFormatError, match="version 9.0"):
        mfparse.open(b"\x93NUMPY\x09\x00" + good[8:])
    with pytest.raises(mfparse.ResourceLimitError, match="larger than"):
        mfparse.open(b"\x93NUMPY\x02\x00" + struct.pack("<I", 1 << 30) + b"{")


# ---- npz --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def arrays():
    return {
        "w": sample("float32", (16, 8)),
        "b": sample("float16", (8,)),
        "idx": np.arange(10, dtype=np.int64),
        "f": np.asfortranarray(sample("float64", (3, 5))),
        "be": sample("int32", (4,)).astype(">i4"),
        "s": np.array(3.0),
    }


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_matches_np_load(tmp_path, arrays, compressed):
    p = tmp_path / "a.npz"
    (np.savez_compressed if compressed else np.savez)(p, **arrays)
    ref = np.load(p)
    with mfparse.open(p) as m:
        assert m.format == "npz"
        assert sorted(m.keys()) == sorted(ref.files)
        for t in m.tensors():
            want = ref[t.name]
            got = m[t.name]
            assert t.shape == want.shape and got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
            assert t.extras["zip_member"] == t.name + ".npy"
            if compressed:
                assert t.offset is None and t.extras["compression"] == "deflate"
            else:
                assert t.offset is not None and not got.flags.writeable
                with open(p, "rb") as f:
                    f.seek(t.offset)
                    raw = f.read(t.nbytes)
                assert raw == (want.tobytes(order="F") if t.name == "f" else want.tobytes())
    ref.close()


def test_npz_member_paths_and_positional(tmp_path):
    p = tmp_path / "p.npz"
    np.savez(p, np.arange(3), np.ones(2))
    with mfparse.open(p) as m:
        assert m.keys() == ["arr_0", "arr_1"]
    p2 = tmp_path / "d.npz"
    with zipfile.ZipFile(p2, "w") as z:
        z.writestr("layer/w.npy", npy_bytes(np.arange(4, dtype=np.float32)))
    with mfparse.open(p2) as m:
        np.testing.assert_array_equal(m["layer/w"], np.arange(4, dtype=np.float32))


def test_npz_bad_member(tmp_path):
    p = tmp_path / "bad.npz"
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", b"not an array at all")
    with pytest.raises(mfparse.CorruptFileError, match="x.npy"):
        mfparse.open(p)
    p = tmp_path / "short.npz"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("x.npy", npy_bytes(np.arange(100))[:-8])
    with pytest.raises(mfparse.CorruptFileError, match="runs past the end"):
        mfparse.open(p)


def _cd_entries(data: bytes) -> list:
    """Offsets of the central directory entries of a small zip (no zip64, no comment)."""
    cd = struct.unpack_from("<I", data, len(data) - 22 + 16)[0]
    out = []
    while data[cd:cd + 4] == b"PK\x01\x02":
        out.append(cd)
        n, e, c = struct.unpack_from("<HHH", data, cd + 28)
        cd += 46 + n + e + c
    return out


def test_npz_overlapping_entries_are_refused(tmp_path):
    """As zipfile (Python >= 3.12) refuses them: a member whose data runs into the next local
    header, and a second directory entry pointing at a header already used (a zip-bomb
    technique: the same bytes counted many times)."""
    p = tmp_path / "ok.npz"
    np.savez(p, a=np.arange(10), b=np.arange(20))
    data = bytearray(p.read_bytes())
    first, second = _cd_entries(bytes(data))
    grown = bytearray(data)
    struct.pack_into("<II", grown, first + 20, *(struct.unpack_from("<II", data, first + 20)[0] + 64,) * 2)
    (tmp_path / "grown.npz").write_bytes(grown)
    with pytest.raises(mfparse.CorruptFileError, match="'a.npy' runs into the next member") as e:
        mfparse.open(tmp_path / "grown.npz")
    assert e.value.offset == 0
    shared = bytearray(data)  # b's entry points at a's local header (b renamed as a's in the header check)
    struct.pack_into("<I", shared, second + 42, struct.unpack_from("<I", data, first + 42)[0])
    (tmp_path / "shared.npz").write_bytes(shared)
    with pytest.raises(mfparse.CorruptFileError, match="runs into the next member"):
        mfparse.open(tmp_path / "shared.npz")


#: where mfparse and np.load part ways on damaged .npy headers, on purpose
NPY_KNOWN = [
    Known("stricter", r"npy header: bytes after the header dict",
          "the header's padding holds a byte ast.literal_eval skips as white space (form feed, tab, ...) where "
          "np.save writes only spaces: mfparse parses the dict literal numpy writes, never literal_eval"),
    Known("laxer", r"we only support format version",
          "a minor format version other than 0 (1.x, 2.x, 3.x): mfparse reads the header by its major version, "
          "numpy refuses any minor version it does not know"),
]
#: where mfparse and np.load (zipfile) part ways on damaged .npz archives, on purpose
NPZ_KNOWN = [
    Known("stricter", r"zip member '.*' \(\d+ bytes\) runs past the end of the file",
          "directory sizes that reach past the end of the file are damage; zipfile reads a deflated member only "
          "until its stream ends"),
    Known("stricter", r"zip member '.*' inflates to \d+ bytes, the directory says",
          "a member that inflates to less than its directory size is damage; zipfile stops at the stream's end"),
    Known("stricter", r"stored zip member .* has compressed size \d+ but size",
          "a stored member whose two directory sizes differ is damage; zipfile reads the compressed size"),
    Known("stricter", r"zip central directory .*truncated|multi-disk zip archives",
          "a directory entry whose name, extra field or comment runs past the directory, or an end record naming "
          "another disk, is damage; zipfile reads what is there and ignores disk numbers"),
    Known("stricter", r"zip end-of-central-directory record not found",
          "an end record whose comment length runs past the end of the file is damage; zipfile takes the comment "
          "as cut short (mfparse scan reads the archive as zipfile does too and reports the difference)"),
    Known("laxer", r"BadZipFile: File name in directory .* and header .* differ",
          "mfparse reads a member through its central-directory entry, the authoritative one (`mfparse scan` "
          "reports the mismatch); zipfile also demands the local header's name"),
    Known("stricter", r"runs into the next member or the central directory",
          "a member whose data runs into the next local header (overlapping entries, a zip-bomb technique) is "
          "refused as zipfile of Python >= 3.12 (and 3.11.8, 3.10.14) refuses it; an older zipfile reads it"),
    Known("laxer", r"NotImplementedError: zip file version",
          "mfparse, like torch.load's miniz, ignores the 'version needed to extract' field; zipfile refuses >6.3"),
]
#: ... and on stored members
NPZ_STORED_KNOWN = [
    Known("laxer", r"BadZipFile: Bad CRC-32",
          "a stored member is handed out as a view of the map and never read whole, so its CRC-32 is not "
          "checked (torch.load does not check it either); deflated members are checked"),
]


def test_robust(tmp_path, arrays, seed):
    np.save(tmp_path / "a.npy", arrays["f"])
    np.savez(tmp_path / "s.npz", **arrays)
    np.savez_compressed(tmp_path / "c.npz", **arrays)
    r = check_robust(tmp_path / "a.npy", fmt="npy", seed=seed, flips=200, ref="npy", known=NPY_KNOWN)
    assert r.truncated["ok"] == 0 and r.flipped["ok"] > 0 and r.flipped["error"] > 0
    assert r.agree > 0 and r.both_error > 0
    for name, known in (("s.npz", NPZ_KNOWN + NPZ_STORED_KNOWN), ("c.npz", NPZ_KNOWN)):
        r = check_robust(tmp_path / name, fmt="npz", seed=seed, flips=200, sampled=1500, ref="npz", ref_max=300,
                         known=known)
        assert r.truncated["ok"] == 0 and r.flipped["ok"] > 0 and r.flipped["error"] > 0
        assert r.agree > 0 and r.both_error > 0


def test_inspect_stats_skip_object_arrays():
    from mfparse.inspect import summarize

    a = np.empty(2, dtype=object)
    with mfparse.open(npy_bytes(a)) as m:
        s = summarize(m, stats=True)
        assert s["tensors"][0]["stats"] is None and s["tensors"][0]["dtype"] == "object"


# ---- the header's text cut short -----------------------------------------------------------------

CUT_HEADERS = [
    b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
    b"{'descr': [('a', '<f4'), ('b', '|S3', (2,))], 'fortran_order': True, 'shape': (4L,)}",
    b'{"descr": "|b1", "fortran_order": False, "shape": ()}',
]


@pytest.mark.parametrize("text", CUT_HEADERS, ids=["simple", "structured", "double_quotes"])
def test_a_header_cut_at_every_byte_is_truncated_at_its_end(text):
    """A dict literal that ends early (the header length cut to k bytes) is a TruncatedFileError at
    the end of the input, where the missing text would start: never a CorruptFileError past it."""
    whole = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text
    assert mfparse._native.npy_parse(whole)[9] == len(whole)  # the whole header parses
    for k in range(len(text)):
        data = b"\x93NUMPY\x01\x00" + struct.pack("<H", k) + text[:k]
        with pytest.raises(mfparse.TruncatedFileError) as e:
            mfparse.open(data, format="npy")
        assert e.value.offset == len(data), (k, str(e.value))
    for k in range(10):  # inside the magic, the version or the header length
        with pytest.raises(mfparse.TruncatedFileError) as e:
            mfparse.open(whole[:k], format="npy")
        assert e.value.offset <= k, (k, str(e.value))


def test_a_wrong_magic_is_not_a_truncation():
    with pytest.raises(mfparse.CorruptFileError) as e:
        mfparse._native.npy_parse(b"\x93NUMPX")
    assert not isinstance(e.value, mfparse.TruncatedFileError)
    with pytest.raises(mfparse.CorruptFileError) as e:
        mfparse._native.npy_parse(b"\x93NO")
    assert not isinstance(e.value, mfparse.TruncatedFileError) and e.value.offset == 0
