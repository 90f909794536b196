"""HDF5 fill values against h5py: fill value messages of every version (0x5 v1, v2, v3 and the old
0x4 message), each fill value setting (library default, user-defined, undefined), each fill time
and allocation time, for numbers, compounds, fixed and variable-length strings, on contiguous
data never written and chunked data with chunks never written. Files come from h5py (the
undefined fill value through H5Pset_fill_value(NULL) of h5py's own libhdf5), from PyTables
(tests/fixtures/hdf5/attr-u16.h5), and from h5py files whose version-1 object headers are
edited to hold the older message forms libhdf5 still reads."""

from __future__ import annotations

import ctypes
import os
import shutil

import h5py
import numpy as np
import pytest
from h5py import h5d, h5p, h5s, h5t

import mfparse
from helpers import ROOT
from mfparse import _native
from mfparse.formats.hdf5 import HDF5File, HDF5Reader
from mfparse.source import Source
from test_hdf5 import assert_same_array

PYTABLES = os.path.join(ROOT, "tests", "fixtures", "hdf5", "attr-u16.h5")

FILL_TIMES = {"ftdefault": None, "ftalloc": h5d.FILL_TIME_ALLOC, "ftnever": h5d.FILL_TIME_NEVER,
              "ftifset": h5d.FILL_TIME_IFSET}
ALLOC_TIMES = {"atdefault": None, "atearly": h5d.ALLOC_TIME_EARLY, "atlate": h5d.ALLOC_TIME_LATE,
               "atincr": h5d.ALLOC_TIME_INCR}
COMPOUND = np.dtype([("a", "<i2"), ("b", "<f8"), ("c", "S3")])
#: name -> (dtype, user fill value, a value written to part of the dataset)
DTYPES = {
    "i4": (np.dtype("<i4"), 5, 7),
    "u8": (np.dtype("<u8"), 2**63 + 3, 1),
    "f8": (np.dtype("<f8"), np.nan, 1.5),
    "be_f4": (np.dtype(">f4"), -2.5, 4.0),
    "c16": (np.dtype("<c16"), 1 + 2j, 3j),
    "compound": (COMPOUND, (3, 1.5, b"zz"), (1, 2.0, b"q")),
    "S5": (np.dtype("S5"), b"ab", b"x"),
    "vlen_str": (h5py.string_dtype(), "abc", "x"),
}


def create(f, name, dtype, shape, chunks=None, fill=None, fill_time=None, alloc_time=None, write=None,
           undefined=False):
    """A dataset made through h5py's low-level API with the given creation properties."""
    dcpl = h5p.create(h5p.DATASET_CREATE)
    if chunks is not None:
        dcpl.set_chunk(chunks)
    if undefined:
        set_fill_undefined(dcpl)
    elif fill is not None:
        dcpl.set_fill_value(np.array(fill, dtype=dtype))
    if fill_time is not None:
        dcpl.set_fill_time(fill_time)
    if alloc_time is not None:
        dcpl.set_alloc_time(alloc_time)
    maxshape = tuple(h5s.UNLIMITED for _ in shape) if chunks is not None else None
    tid = h5t.py_create(dtype, logical=True)
    ds = h5py.Dataset(h5d.create(f.id, name.encode(), tid, h5s.create_simple(shape, maxshape), dcpl=dcpl))
    if write is not None:
        ds[write[0]] = write[1]


def set_fill_undefined(dcpl):
    """H5Pset_fill_value(dcpl, type, NULL) through the libhdf5 h5py runs on (h5py has no call for it)."""
    with open("/proc/self/maps") as maps:
        libs = sorted({line.split()[-1] for line in maps
                       if os.path.basename(line.split()[-1]).startswith("libhdf5") and "_hl" not in line})
    if not libs:
        pytest.skip("cannot find the libhdf5 h5py uses")
    lib = ctypes.CDLL(libs[0])
    lib.H5Pset_fill_value.argtypes = [ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    assert lib.H5Pset_fill_value(dcpl.id, h5t.NATIVE_INT32.id, None) >= 0
    assert dcpl.fill_value_defined() == h5d.FILL_VALUE_UNDEFINED


def h5py_read(path, tmp_path):
    """{name: value or exception} as h5py reads every dataset. A copy is opened read-write: libhdf5
    reads a variable-length fill value only with write intent."""
    rw = tmp_path / (os.path.basename(path) + ".rw")
    shutil.copy(path, rw)
    out = {}
    with h5py.File(rw, "r+") as f:
        names = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        for n in names:
            try:
                out[n] = np.asarray(f[n][()])
            except Exception as e:  # noqa: BLE001 - libhdf5 errors come as several classes
                out[n] = e
    return out


def assert_reads_like_h5py(path, tmp_path, data=None):
    """Every dataset reads as h5py reads it; where h5py cannot read one, mfparse raises a clean error."""
    ref = h5py_read(path, tmp_path)
    failed = []
    with mfparse.open(data if data is not None else str(path), format="hdf5") as m:
        assert [t.name for t in m.tensors()] == list(ref)
        for name, want in ref.items():
            if isinstance(want, Exception):
                with pytest.raises(mfparse.MFParseError):
                    m[name]
                failed.append(name)
                continue
            got = m[name]
            if want.dtype.kind == "O":  # h5py str for UTF-8 strings written from str
                want = np.array([w.encode() if isinstance(w, str) else w for w in want.ravel()],
                                dtype=object).reshape(want.shape)
            assert_same_array(got, want, name)
    return failed


# ---- h5py-written files: every setting ------------------------------------------------------------

@pytest.fixture(scope="module", params=("earliest", "latest"))
def settings_file(request, tmp_path_factory):
    """Contiguous (never written) and chunked (one chunk written) datasets for every dtype,
    fill value (default, user), fill time and allocation time."""
    path = tmp_path_factory.mktemp("fill") / f"settings_{request.param}.h5"
    with h5py.File(path, "w", libver=request.param) as f:
        contig, chunked = f.create_group("contig"), f.create_group("chunked")
        for dname, (dt, value, written) in DTYPES.items():
            for fill in ("default", "user"):
                for ftn, ft in FILL_TIMES.items():
                    for atn, at in ALLOC_TIMES.items():
                        fv = value if fill == "user" else None
                        if dt.kind == "O" and (ft == h5d.FILL_TIME_NEVER or at == h5d.ALLOC_TIME_EARLY):
                            continue  # libhdf5 refuses "never" for variable-length data
                        if at != h5d.ALLOC_TIME_INCR:
                            create(contig, f"{dname}_{fill}_{ftn}_{atn}", dt, (5,), fill=fv, fill_time=ft,
                                   alloc_time=at)
                        create(chunked, f"{dname}_{fill}_{ftn}_{atn}", dt, (3, 5), chunks=(2, 2), fill=fv,
                               fill_time=ft, alloc_time=at, write=((0, slice(0, 3)), written))
    return path


def test_every_fill_setting_reads_like_h5py(settings_file, tmp_path):
    assert assert_reads_like_h5py(settings_file, tmp_path) == []
    with mfparse.open(settings_file) as m:
        # spot checks of what the comparison covered
        np.testing.assert_array_equal(m["contig/i4_user_ftdefault_atdefault"], np.full(5, 5, "i4"))
        np.testing.assert_array_equal(m["contig/i4_user_ftnever_atdefault"], np.zeros(5, "i4"))
        np.testing.assert_array_equal(m["chunked/i4_user_ftifset_atincr"][2], np.full(5, 5, "i4"))
        np.testing.assert_array_equal(m["chunked/i4_user_ftnever_atincr"][2], np.zeros(5, "i4"))
        assert np.isnan(m["chunked/f8_user_ftalloc_atdefault"][1:]).all()
        assert m["chunked/compound_user_ftifset_atlate"][2, 4].tolist() == (3, 1.5, b"zz")
        assert m["contig/vlen_str_user_ftdefault_atdefault"].tolist() == [b"abc"] * 5
        assert m["chunked/vlen_str_default_ftdefault_atdefault"][2].tolist() == [b""] * 5


def test_fill_message_versions_written(settings_file):
    """libver earliest writes fill value message version 2 (and the old message 0x4 beside a
    user-defined value); latest writes version 3. Both are what the test above read."""
    data = settings_file.read_bytes()
    with h5py.File(settings_file) as f:
        ds = f["contig/i4_user_ftdefault_atdefault"]
        addr = h5py.h5o.get_info(ds.id).addr
        if data[addr:addr + 4] != b"OHDR":  # earliest
            msgs = {t: data[off:off + size] for t, off, size in v1_messages(data, addr)}
            assert msgs[0x5][:4] == bytes([2, 2, 2, 1]) and msgs[0x5][4:12] == bytes([4, 0, 0, 0, 5, 0, 0, 0])
            assert msgs[0x4][:8] == bytes([4, 0, 0, 0, 5, 0, 0, 0])
        else:
            head = data[addr:addr + 512]
            assert bytes([3, 0x2A, 4, 0, 0, 0, 5, 0, 0, 0]) in head  # v3, late, if set, value present


# ---- undefined fill values (H5Pset_fill_value(NULL)) -------------------------------------------------

@pytest.mark.parametrize("libver", ("earliest", "latest"))
def test_undefined_fill_value_reads_like_h5py(tmp_path, libver):
    path = tmp_path / f"undef_{libver}.h5"
    with h5py.File(path, "w", libver=libver) as f:
        for ftn in ("ftnever", "ftifset"):  # libhdf5 refuses "on allocation" without a fill value
            ft = FILL_TIMES[ftn]
            create(f, f"contig_{ftn}", np.dtype("<i4"), (6,), fill_time=ft, undefined=True)
            create(f, f"contig_early_{ftn}", np.dtype("<i4"), (6,), fill_time=ft, undefined=True,
                   alloc_time=h5d.ALLOC_TIME_EARLY, )
            create(f, f"chunked_{ftn}", np.dtype("<f4"), (6,), chunks=(4,), fill_time=ft, undefined=True,
                   write=(slice(0, 2), 7))
    failed = assert_reads_like_h5py(path, tmp_path)
    # never written, no fill value, fill time "if set": libhdf5 has nothing to return
    assert failed == ["contig_ftifset"]
    with mfparse.open(path) as m:
        with pytest.raises(mfparse.UnsupportedFormatError, match="fill value is undefined"):
            m["contig_ftifset"]
        np.testing.assert_array_equal(m["contig_ftnever"], np.zeros(6, "i4"))
        np.testing.assert_array_equal(m["chunked_ftifset"], [7, 7, 0, 0, 0, 0])


def test_pytables_fill_value_version_1_undefined(tmp_path):
    """PyTables' attr-u16.h5: fill value message v1, undefined, size field -1 (once a
    'fill value truncated: needs 4294967295 bytes' error)."""
    with open(PYTABLES, "rb") as fh:
        data = fh.read()
    assert bytes.fromhex("0103020" + "0ffffffff") in data
    assert assert_reads_like_h5py(PYTABLES, tmp_path) == []
    with h5py.File(PYTABLES) as f, mfparse.open(PYTABLES) as m:
        assert m.format == "hdf5"
        np.testing.assert_array_equal(m["wfm_group0/traces/trace0/render_info/digital/order"], np.arange(8))
        objs = [""]
        f.visit(objs.append)
        for name in objs:
            obj = f[name] if name else f
            got = m._reader.attrs(name)
            assert list(got) == list(obj.attrs), name
        assert m.metadata == m._reader.attrs("")


# ---- older message forms, from h5py files with edited version-1 object headers ---------------------

def v1_messages(data, addr):
    """(type, body offset, body size) of the messages in a version-1 object header's first block."""
    assert data[addr] == 1, "not a version-1 object header"
    size = int.from_bytes(data[addr + 8:addr + 12], "little")
    pos, end, out = addr + 16, addr + 16 + size, []
    while pos + 8 <= end:
        t = int.from_bytes(data[pos:pos + 2], "little")
        n = int.from_bytes(data[pos + 2:pos + 4], "little")
        out.append((t, pos + 8, n))
        pos += 8 + n
    return out


def _edited(path, edit):
    """The bytes of an earliest-format file with edit(data, name, messages) applied per dataset."""
    data = bytearray(path.read_bytes())
    with h5py.File(path) as f:
        for name in f:
            edit(data, name, {t: (off, n) for t, off, n in v1_messages(data, h5py.h5o.get_info(f[name].id).addr)})
    return bytes(data)


@pytest.fixture()
def earliest_file(tmp_path):
    path = tmp_path / "early.h5"
    with h5py.File(path, "w", libver="earliest") as f:
        for fill in ("default", "user"):
            for ftn in ("ftalloc", "ftnever", "ftifset"):
                fv = -3 if fill == "user" else None
                create(f, f"contig_{fill}_{ftn}", np.dtype("<i4"), (5,), fill=fv, fill_time=FILL_TIMES[ftn])
                create(f, f"chunked_{fill}_{ftn}", np.dtype("<i4"), (5,), chunks=(2,), fill=fv,
                       fill_time=FILL_TIMES[ftn], write=(slice(0, 2), 9))
        for ftn in ("ftnever", "ftifset"):
            create(f, f"contig_undef_{ftn}", np.dtype("<i4"), (5,), fill_time=FILL_TIMES[ftn], undefined=True)
            create(f, f"chunked_undef_{ftn}", np.dtype("<i4"), (5,), chunks=(2,), fill_time=FILL_TIMES[ftn],
                   undefined=True, write=(slice(0, 2), 9))
    return path


def test_fill_message_version_1(earliest_file, tmp_path):
    """Version 1 of message 0x5: the size field is always there (spec), -1 when undefined."""

    def to_v1(data, name, msgs):
        off, n = msgs[0x5]
        assert data[off] == 2 and n >= 8
        data[off] = 1
        if data[off + 3] == 0:  # undefined: v2 stops after 4 bytes, v1 carries the size (-1)
            data[off + 4:off + 8] = b"\xff\xff\xff\xff"

    edited = tmp_path / "v1.h5"
    edited.write_bytes(_edited(earliest_file, to_v1))
    failed = assert_reads_like_h5py(edited, tmp_path)
    assert failed == ["contig_undef_ftifset"]


def test_old_fill_message_alone(earliest_file, tmp_path):
    """Only the old message 0x4 (message 0x5 turned into padding): a value if its size is not 0,
    undefined if it is 0; no fill message at all gives the library default."""

    def drop_new(data, name, msgs):
        off, n = msgs[0x5]
        data[off - 8:off - 6] = b"\x00\x00"  # NIL message

    edited = tmp_path / "old.h5"
    edited.write_bytes(_edited(earliest_file, drop_new))
    # without a fill message (no old message beside a default value) libhdf5 takes the fill
    # value as undefined and written "if set": contiguous data never written cannot be read
    assert sorted(assert_reads_like_h5py(edited, tmp_path)) == [
        "contig_default_ftalloc", "contig_default_ftifset", "contig_default_ftnever", "contig_undef_ftifset",
        "contig_undef_ftnever"]
    with mfparse.open(edited) as m:
        np.testing.assert_array_equal(m["chunked_user_ftnever"], [9, 9, -3, -3, -3])  # old message: if set
        np.testing.assert_array_equal(m["contig_user_ftnever"], [-3] * 5)
        np.testing.assert_array_equal(m["chunked_default_ftalloc"], [9, 9, 0, 0, 0])

    def old_size_zero(data, name, msgs):
        drop_new(data, name, msgs)
        if 0x4 in msgs:
            off, n = msgs[0x4]
            data[off:off + 4] = b"\x00\x00\x00\x00"

    edited = tmp_path / "old0.h5"
    edited.write_bytes(_edited(earliest_file, old_size_zero))
    failed = assert_reads_like_h5py(edited, tmp_path)
    assert sorted(failed) == sorted(n for n in h5py_read(earliest_file, tmp_path) if n.startswith("contig_"))


# ---- hostile fill messages ------------------------------------------------------------------------

def _open_unverified(data):
    src = Source(data)
    return HDF5Reader(src, HDF5File(src, flags=_native.H5_NO_VERIFY))


def read_x(r):
    (info,) = r.tensors()
    return r.read(info)


def _patch_v3(tmp_path, flags=None, body=None):
    """A latest-format file whose one fill message (v3, value 5 present) is rewritten."""
    path = tmp_path / "v3.h5"
    with h5py.File(path, "w", libver="latest") as f:
        create(f, "x", np.dtype("<i4"), (4,), fill=0x5A5A1234)
    data = bytearray(path.read_bytes())
    i = data.index(bytes([3, 0x2A, 4, 0, 0, 0, 0x34, 0x12, 0x5A, 0x5A]))
    assert data.count(bytes([3, 0x2A, 4, 0, 0, 0, 0x34, 0x12, 0x5A, 0x5A])) == 1
    if flags is not None:
        data[i + 1] = flags
    if body is not None:
        data[i:i + len(body)] = body
    return bytes(data)


def test_fill_v3_flags(tmp_path):
    r = _open_unverified(_patch_v3(tmp_path))
    np.testing.assert_array_equal(read_x(r), np.full(4, 0x5A5A1234, "i4"))
    # undefined (bit 4), no value bit: zeros would be a guess, libhdf5 refuses to read
    r = _open_unverified(_patch_v3(tmp_path, flags=0x1A))
    with pytest.raises(mfparse.UnsupportedFormatError, match="undefined"):
        read_x(r)
    # no value bit: the default (zeros)
    r = _open_unverified(_patch_v3(tmp_path, flags=0x0A))
    np.testing.assert_array_equal(read_x(r), np.zeros(4, "i4"))
    with pytest.raises(mfparse.CorruptFileError, match="both undefined and present"):
        _open_unverified(_patch_v3(tmp_path, flags=0x3A))
    with pytest.raises(mfparse.CorruptFileError, match="fill value message flags 0x6a"):
        _open_unverified(_patch_v3(tmp_path, flags=0x6A))
    with pytest.raises(mfparse.UnsupportedFormatError, match="fill value message version 4"):
        _open_unverified(_patch_v3(tmp_path, body=bytes([4])))


def test_fill_sizes_are_bounded(tmp_path):
    # a value larger than its message
    with pytest.raises(mfparse.TruncatedFileError, match="fill value"):
        _open_unverified(_patch_v3(tmp_path, body=bytes([3, 0x2A, 0xF0, 0xFF, 0xFF, 0xFF])))
    # a value whose size is not the element size: refused when it is needed
    r = _open_unverified(_patch_v3(tmp_path, body=bytes([3, 0x2A, 2, 0, 0, 0])))
    with pytest.raises(mfparse.CorruptFileError, match="fill value of 2 bytes for 4-byte elements"):
        read_x(r)


def test_fill_v2_negative_size(earliest_file):
    def size(v):
        def edit(data, name, msgs):
            off, n = msgs[0x5]
            if name == "contig_user_ftifset":
                data[off + 4:off + 8] = v.to_bytes(4, "little", signed=True)
        return edit

    with pytest.raises(mfparse.CorruptFileError, match="fill value of negative size -2"):
        mfparse.open(_edited(earliest_file, size(-2)))
    # -1 with the defined flag set means undefined, as in version 1
    with mfparse.open(_edited(earliest_file, size(-1))) as m:
        with pytest.raises(mfparse.UnsupportedFormatError, match="fill value is undefined"):
            m["contig_user_ftifset"]
