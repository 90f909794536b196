"""HDF5 registered filters against h5py + hdf5plugin: blosc (32001), blosc2 (32026), lz4 (32004),
zstd (32015), bzip2 (307) and szip (4, libhdf5's own, libaec inside h5py's wheel). Files are
written by the filters' HDF5 plugins (hdf5plugin); every dataset must read as h5py reads it.
A filter is skipped only when its writer is absent; the packages mfparse decodes with (blosc2,
lz4, zstandard, imagecodecs, stdlib bz2) are requirements. A missing decoder package is
simulated by hiding its module: the error names the package to install. Hostile chunks
(written with H5Dwrite_chunk) are bounded and end in MFParseError."""

from __future__ import annotations

import bz2
import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

import mfparse
from helpers import ROOT, UNDER_ASAN
from mfparse.formats import hdf5 as h5fmt
from test_hdf5 import assert_same_array

hdf5plugin = pytest.importorskip("hdf5plugin")  # the writer of every filter but szip

HAVE_SZIP = h5py.h5z.filter_avail(h5py.h5z.FILTER_SZIP) and bool(
    h5py.h5z.get_filter_info(h5py.h5z.FILTER_SZIP) & h5py.h5z.FILTER_CONFIG_ENCODE_ENABLED)

RNG = np.random.default_rng(11)
#: compressible data of several dtypes, with shapes that leave partial edge chunks
DATA = {
    "f4": (np.arange(37 * 29, dtype="f4").reshape(37, 29) / 7).round(1),
    "be_f8": np.sin(np.arange(23 * 19, dtype=">f8").reshape(23, 19)),
    "i2": RNG.integers(-40, 40, (41, 17)).astype("<i2"),
    "u1": (np.arange(3 * 50 * 7) % 13).astype("u1").reshape(3, 50, 7),
    "compound": np.array([(i, i / 3, b"x%d" % i) for i in range(90)], dtype=[("a", "<i4"), ("b", "<f8"), ("c", "S3")]),
}
CHUNKS = {"f4": (16, 10), "be_f8": (10, 19), "i2": (41, 6), "u1": (2, 16, 7), "compound": (32,)}


def _writers():
    """name -> (h5py create_dataset keywords, HDF5 filter id)."""
    P = hdf5plugin
    w = {}
    for cname in ("blosclz", "lz4", "lz4hc", "zlib", "zstd"):
        for sh, shuffle in (("noshuf", P.Blosc.NOSHUFFLE), ("shuf", P.Blosc.SHUFFLE), ("bitshuf", P.Blosc.BITSHUFFLE)):
            w[f"blosc_{cname}_{sh}"] = (P.Blosc(cname=cname, clevel=5, shuffle=shuffle), 32001)
    for cname in ("blosclz", "lz4", "lz4hc", "zlib", "zstd"):
        w[f"blosc2_{cname}"] = (P.Blosc2(cname=cname, clevel=5, filters=P.Blosc2.SHUFFLE), 32026)
    w["blosc2_bitshuffle"] = (P.Blosc2(cname="zstd", clevel=3, filters=P.Blosc2.BITSHUFFLE), 32026)
    w["blosc2_nofilter"] = (P.Blosc2(cname="lz4", clevel=1, filters=P.Blosc2.NOFILTER), 32026)
    # the filter's own client data: a 256-byte block size makes b2nd blocks smaller than the chunk
    w["blosc2_blocks"] = ({"compression": 32026, "compression_opts": (0, 256, 0, 0, 5, 1, 5)}, 32026)
    w["lz4"] = (P.LZ4(), 32004)
    w["lz4_blocks"] = (P.LZ4(nbytes=100), 32004)  # several blocks per chunk, stored or compressed
    w["zstd"] = (P.Zstd(), 32015)
    w["zstd_19"] = (P.Zstd(clevel=19), 32015)
    w["bzip2"] = (P.BZip2(), 307)
    w["bzip2_1"] = (P.BZip2(blocksize=1), 307)
    if HAVE_SZIP:
        w["szip_nn"] = ({"compression": "szip", "compression_opts": ("nn", 8)}, 4)
        w["szip_ec"] = ({"compression": "szip", "compression_opts": ("ec", 16)}, 4)
    return w


WRITERS = _writers()


@pytest.fixture(scope="module")
def filtered(tmp_path_factory):
    """One group per filter setting, a dataset per dtype; plus pipelines with shuffle and
    fletcher32 around the compressor, chunks never written, all-zero and all-NaN chunks."""
    path = tmp_path_factory.mktemp("filters") / "filters.h5"
    with h5py.File(path, "w") as f:
        for wname, (kw, _fid) in WRITERS.items():
            g = f.create_group(wname)
            for dname, a in DATA.items():
                if wname.startswith("szip") and dname == "compound":
                    continue  # libhdf5's szip takes only atomic types
                if wname == "blosc2_blocks" and dname == "compound":
                    continue  # 15-byte items in 256-byte blocks: the plugin writes what it cannot read back
                g.create_dataset(dname, data=a, chunks=CHUNKS[dname], **kw)
            g.create_dataset("pipeline", data=DATA["f4"], chunks=(8, 29), shuffle=True, fletcher32=True, **kw)
            part = g.create_dataset("partly_written", shape=(20, 20), chunks=(5, 5), dtype="<i4", fillvalue=-7, **kw)
            part[3:9, 4:13] = np.arange(54).reshape(6, 9)
            g.create_dataset("zeros", data=np.zeros((30, 20), "f4"), chunks=(10, 20), **kw)
            g.create_dataset("nans", data=np.full((30, 20), np.nan, "f8"), chunks=(10, 20), **kw)
            g.create_dataset("one_big_chunk", data=np.arange(50_000, dtype="<u4") // 3, chunks=(50_000,), **kw)
    return path


def reads_like_h5py(path, names=None):
    with h5py.File(path) as f, mfparse.open(path) as m:
        ours = [t.name for t in m.tensors()]
        want = []
        f.visititems(lambda n, o: want.append(n) if isinstance(o, h5py.Dataset) else None)
        assert ours == want
        for name in names or want:
            assert_same_array(m[name], np.asarray(f[name][()]), name)


def test_filtered_datasets_read_like_h5py(filtered):
    reads_like_h5py(filtered)


@pytest.mark.parametrize("wname", sorted(WRITERS))
def test_filter_ids_and_extras(filtered, wname):
    fid = WRITERS[wname][1]
    with mfparse.open(filtered) as m:
        filters = m.info(f"{wname}/f4").extras["filters"]
        assert [x["id"] for x in filters] == [fid]
        assert filters[0]["name"] == h5fmt.FILTER_NAMES[fid]
        pipeline = [x["name"] for x in m.info(f"{wname}/pipeline").extras["filters"]]
        assert pipeline == ["shuffle", h5fmt.FILTER_NAMES[fid], "fletcher32"]


def test_blosc2_frames_are_b2nd_with_blocks(filtered):
    """The b2nd layout (blocks smaller than the chunk, padded at the edges) is what was tested."""
    with h5py.File(filtered) as f:
        ds = f["blosc2_blocks/f4"]
        _mask, chunk = ds.id.read_direct_chunk((0, 0))
        assert chunk[1:10] == b"\xa8b2frame\x00" and b"b2nd" in chunk[:200]
        c = h5fmt._Chunk(chunk, (), 16 * 10 * 4 + 64, 32026, "x", 0)
        shape, chunkshape, blocks = h5fmt._b2nd_layout(c, chunk, int.from_bytes(chunk[11:15], "big"))
        assert shape == chunkshape == (16, 10) and blocks != chunkshape


def test_pytables_blosc_and_szip_files():
    """Files PyTables ships in its wheel: not needed, but tried when tables is installed."""
    tables = pytest.importorskip("tables")
    base = os.path.join(os.path.dirname(tables.__file__), "tests")
    for name in ("blosc_bigendian.h5", "b2nd-no-chunkshape.h5", "test_szip.h5"):
        reads_like_h5py(os.path.join(base, name))


# ---- decoder packages ------------------------------------------------------------------------------

def hide(monkeypatch, *modules):
    """Make `import m` fail for each module (and its loaded submodules), as if not installed."""
    for m in modules:
        for name in [n for n in sys.modules if n == m or n.startswith(m + ".")] + [m]:
            monkeypatch.setitem(sys.modules, name, None)


#: wname -> (modules the decoder can use, text the error must name)
MISSING = {
    "blosc_lz4_shuf": (("blosc2", "blosc", "numcodecs"), "blosc2 or blosc or numcodecs"),
    "blosc2_zstd": (("blosc2",), "blosc2"),
    "lz4": (("lz4", "numcodecs"), "lz4 or numcodecs"),
    "zstd": (("zstandard", "numcodecs"), "zstandard or numcodecs"),
    "bzip2": (("bz2",), "bz2"),
    "szip_nn": (("imagecodecs",), "imagecodecs"),
}


@pytest.mark.parametrize("wname", sorted(MISSING))
def test_missing_package_is_named(filtered, monkeypatch, wname):
    if wname not in WRITERS:
        pytest.skip("libhdf5 of h5py cannot write szip")
    modules, named = MISSING[wname]
    hide(monkeypatch, *modules)
    fid = WRITERS[wname][1]
    with mfparse.open(filtered) as m:
        assert m.info(f"{wname}/u1").shape == DATA["u1"].shape  # listing needs no decoder
        with pytest.raises(mfparse.UnsupportedFormatError,
                           match=rf"HDF5 filter {fid} \({h5fmt.FILTER_NAMES[fid]}\); install the Python package {named}"):
            m[f"{wname}/u1"]


@pytest.mark.parametrize("wname,hidden,used", [
    ("blosc_zstd_bitshuf", ("blosc2",), "blosc"),
    ("blosc_zlib_shuf", ("blosc2", "blosc"), "numcodecs"),
    ("lz4_blocks", ("lz4",), "numcodecs"),
    ("zstd_19", ("zstandard",), "numcodecs"),
])
def test_alternative_packages(filtered, monkeypatch, wname, hidden, used):
    pytest.importorskip(used)
    hide(monkeypatch, *hidden)
    with h5py.File(filtered) as f, mfparse.open(filtered) as m:
        for dname in DATA:
            name = f"{wname}/{dname}"
            assert_same_array(m[name], f[name][()], name)


def test_zstd_frame_without_size_needs_zstandard(tmp_path, monkeypatch):
    zstandard = pytest.importorskip("zstandard")
    pytest.importorskip("numcodecs")
    data = np.arange(400, dtype="<i4")
    frame = zstandard.ZstdCompressor(write_content_size=False).compress(data.tobytes())
    assert h5fmt._zstd_content_size(frame) is None
    path = write_raw_chunk(tmp_path, 32015, (3,), frame, data.dtype, data.shape)
    with mfparse.open(path) as m:
        np.testing.assert_array_equal(m["x"], data)
    hide(monkeypatch, "zstandard")
    with mfparse.open(path) as m, pytest.raises(mfparse.UnsupportedFormatError, match="install the Python package zstandard"):
        m["x"]


# ---- hostile chunks ----------------------------------------------------------------------------------

def write_raw_chunk(tmp_path, fid, values, chunk, dtype=np.dtype("<i4"), shape=(400,)):
    """A one-chunk dataset whose filter pipeline is `fid` and whose chunk holds `chunk` as stored bytes."""
    path = tmp_path / f"raw_{fid}.h5"
    with h5py.File(path, "w") as f:
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk(shape)
        dcpl.set_filter(fid, h5py.h5z.FLAG_OPTIONAL, values)
        space = h5py.h5s.create_simple(shape)
        ds = h5py.h5d.create(f.id, b"x", h5py.h5t.py_create(dtype), space, dcpl=dcpl)
        ds.write_direct_chunk((0,) * len(shape), chunk, 0)
    return path


def _lz4_header(total, block):
    return total.to_bytes(8, "big") + block.to_bytes(4, "big")


def _blosc1_header(nbytes, cbytes):
    return bytes([2, 1, 1, 4]) + nbytes.to_bytes(4, "little") + nbytes.to_bytes(4, "little") + cbytes.to_bytes(4, "little")


HOSTILE = {
    # a size header far beyond the chunk: refused before anything is decoded
    "lz4 huge": (32004, (0,), _lz4_header(1 << 40, 1 << 20) + b"\x00" * 8, mfparse.ResourceLimitError, "more than"),
    "lz4 zero blocks": (32004, (0,), _lz4_header(1600, 0), mfparse.CorruptFileError, "blocks of 0 bytes"),
    "lz4 truncated": (32004, (0,), _lz4_header(1600, 1600) + (900).to_bytes(4, "big") + b"\x11" * 10,
                      mfparse.TruncatedFileError, "LZ4 block of 900 bytes"),
    "lz4 garbage": (32004, (0,), _lz4_header(1600, 1600) + (12).to_bytes(4, "big") + b"\xff" * 12,
                    mfparse.CorruptFileError, "does not decode"),
    "blosc huge": (32001, (2, 2, 4, 1600, 5, 1, 0), _blosc1_header(1 << 31, 64) + b"\x00" * 48,
                   mfparse.ResourceLimitError, "more than"),
    "blosc truncated": (32001, (2, 2, 4, 1600, 5, 1, 0), _blosc1_header(1600, 5000) + b"\x00" * 48,
                        mfparse.TruncatedFileError, "says it holds 5000 bytes"),
    "blosc2 not a frame": (32026, (1, 0, 4, 1600, 5, 1, 0), b"\x9e\xa8b2frameX" + b"\x00" * 100,
                           mfparse.CorruptFileError, "not a Blosc2 frame"),
    "bzip2 bomb": (307, (9,), bz2.compress(bytes(1 << 24)), mfparse.ResourceLimitError, "more than"),
    "bzip2 truncated": (307, (9,), bz2.compress(bytes(1600))[:30], mfparse.TruncatedFileError, "bzip2 stream"),
    "bzip2 garbage": (307, (9,), b"BZh9" + b"\x00" * 40, mfparse.CorruptFileError, "does not decode"),
    "szip huge": (4, (141, 32, 32, 400), (1 << 31).to_bytes(4, "little") + b"\x00" * 16,
                  mfparse.ResourceLimitError, "more than"),
    "szip garbage": (4, (141, 32, 32, 400), (1600).to_bytes(4, "little") + bytes(range(16)),
                     mfparse.CorruptFileError, "does not decode"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_chunks(tmp_path, case):
    fid, values, chunk, cls, match = HOSTILE[case]
    path = write_raw_chunk(tmp_path, fid, values, chunk)
    with mfparse.open(path) as m:
        with pytest.raises(cls, match=match):
            m["x"]


def test_hostile_zstd_and_blosc2(tmp_path):
    zstandard = pytest.importorskip("zstandard")
    big = zstandard.ZstdCompressor().compress(bytes(1 << 24))
    assert h5fmt._zstd_content_size(big) == 1 << 24
    with mfparse.open(write_raw_chunk(tmp_path, 32015, (3,), big)) as m:
        with pytest.raises(mfparse.ResourceLimitError, match="more than"):
            m["x"]
    # a frame that does not state its size is bounded while it is decoded
    unsized = zstandard.ZstdCompressor(write_content_size=False).compress(bytes(1 << 24))
    with mfparse.open(write_raw_chunk(tmp_path, 32015, (3,), unsized)) as m:
        with pytest.raises(mfparse.ResourceLimitError, match="more than"):
            m["x"]
    # a Blosc2 frame (written by the plugin) whose header claims more than the chunk
    src = tmp_path / "b2.h5"
    with h5py.File(src, "w") as f:
        f.create_dataset("x", data=np.arange(400, dtype="<i4"), chunks=(400,), **hdf5plugin.Blosc2())
    with h5py.File(src) as f:
        frame = bytearray(f["x"].id.read_direct_chunk((0,))[1])
    values = (1, 0, 4, 1600, 5, 1, 0, 1, 400)
    for at, value, cls, match in ((30, 1 << 40, mfparse.ResourceLimitError, "holds"),
                                  (39, 1 << 20, mfparse.TruncatedFileError, "offsets past the end")):
        bad = bytearray(frame)
        bad[at:at + 8] = value.to_bytes(8, "big")
        with mfparse.open(write_raw_chunk(tmp_path, 32026, values, bytes(bad))) as m:
            with pytest.raises(cls, match=match):
                m["x"]


_FLIPS = textwrap.dedent(r"""
    import random, resource, sys
    sys.path.insert(0, {root!r})
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    import mfparse
    data = open({path!r}, "rb").read()
    rnd = random.Random({seed})
    counts = {{"ok": 0, "error": 0}}
    for _ in range({n}):
        b = bytearray(data)
        for _ in range(rnd.randint(1, 3)):
            i = rnd.randrange({lo}, len(b))
            b[i] = rnd.randrange(256)
        try:
            with mfparse.open(bytes(b), format="hdf5") as m:
                for t in m.tensors():
                    m[t.name]
            counts["ok"] += 1
        except mfparse.MFParseError as e:
            assert str(e)
            counts["error"] += 1
    print(counts)
""")


@pytest.mark.skipif(UNDER_ASAN, reason="ASan's shadow memory does not fit under the child's memory limit")
def test_damaged_filtered_chunks_end_in_clean_errors(tmp_path, seed):
    """Random bytes flipped in filtered chunks (in a child process, memory capped): every read
    returns or raises MFParseError; the decoders' packages never crash or run away."""
    path = tmp_path / "small.h5"
    a = (np.arange(30 * 20, dtype="<i4") % 17).reshape(30, 20)
    with h5py.File(path, "w") as f:
        for wname, (kw, _fid) in WRITERS.items():
            f.create_dataset(wname, data=a, chunks=(15, 20), **kw)
    lo = 2048  # leave the superblock and root group alone, hit headers and chunks
    code = _FLIPS.format(root=ROOT, path=str(path), seed=seed, n=400, lo=lo)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "'error'" in r.stdout

