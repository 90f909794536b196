"""mfparse.scan in every container a pickle hides in, and attacks on loaders (not only on imports).

Hostile files are built as bytes; benign ones come from the real writers (torch, numpy,
joblib, zipfile, tarfile, gzip/bz2/lzma/zlib). Nothing is ever loaded.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import struct
import subprocess
import sys
import tarfile
import textwrap
import zipfile
import zlib

import numpy as np
import pytest
import torch

from mfparse.scan import containers
from pickle_asm import P, call_pickle, tensor, torch_zip, zip_bytes
from scan_helpers import assert_unsafe, has, scan, set_central_size

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAYLOAD = call_pickle("os", "system", "touch /tmp/never")


def npy_header(descr="|O", shape=(1,)) -> bytes:
    d = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}"
    total = 10 + len(d) + 1
    pad = (64 - total % 64) % 64
    h = d + " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode()


def state_dict(*tensors_args, legacy=False) -> bytes:
    p = P(2).empty_dict()
    for i, args in enumerate(tensors_args):
        p.unicode(f"w{i}")
        tensor(p, *args, legacy=legacy)
        p.setitem()
    return p.stop().data


# ---- zip: nested, npz, torch archives --------------------------------------------------------

def test_nested_zip():
    inner = torch_zip(PAYLOAD)
    outer = zip_bytes({"bundle/inner.zip": inner, "bundle/readme.txt": b"hi"})
    r = scan(zip_bytes({"outer.zip": outer}))
    f = assert_unsafe(r, glob="os.system")
    assert f.member == "outer.zip!bundle/inner.zip!archive/data.pkl"


def test_npz_member_with_object_payload():
    z = zip_bytes({"a.npy": npy_header("<f8", (2,)) + bytes(16), "b.npy": npy_header() + PAYLOAD})
    assert_unsafe(scan(z), glob="os.system", member="b.npy")
    z = zip_bytes({"b.npy": npy_header() + PAYLOAD}, zipfile.ZIP_DEFLATED)
    assert_unsafe(scan(z), glob="os.system")


def test_npy_object_arrays(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([1, "x", None, (2, 3)], dtype=object), allow_pickle=True)
    r = scan(tmp_path / "obj.npy")
    assert r.verdict == "safe", str(r)
    assert any("object dtype" in n for n in r.notes)
    assert_unsafe(scan(npy_header() + PAYLOAD), glob="os.system")
    # an object .npy whose pickle is cut short is never safe
    assert scan(npy_header() + PAYLOAD[:-4]).verdict != "safe"


def test_torch_zip_with_deflated_records(tmp_path):
    torch.save({"w": torch.ones(3)}, tmp_path / "x.pt")
    with zipfile.ZipFile(tmp_path / "x.pt") as src, zipfile.ZipFile(tmp_path / "y.pt", "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    assert scan(tmp_path / "y.pt").verdict == "safe"


def test_legacy_torch_with_storages_and_trailing_pickle(tmp_path):
    torch.save({"w": torch.arange(6.0)}, tmp_path / "l.pt", _use_new_zipfile_serialization=False)
    data = (tmp_path / "l.pt").read_bytes()
    assert scan(data).verdict == "safe"
    r = scan(data + PAYLOAD)
    assert_unsafe(r, glob="os.system")
    assert r.findings[0].pickle == 5


# ---- compression wrappers, tar, 7z ----------------------------------------------------------

def _lz4_frame(blocks) -> bytes:
    """An LZ4 frame (version 01, independent blocks, 64 KiB max) of raw (bytes) or compressed
    ((bytes,) tuple) blocks; the header checksum byte is not verified by mfparse's decoder."""
    out = b"\x04\x22\x4d\x18" + bytes([0x60, 0x40, 0x82])
    for b in blocks:
        if isinstance(b, tuple):
            out += struct.pack("<I", len(b[0])) + b[0]
        else:
            out += struct.pack("<I", len(b) | 0x80000000) + b
    return out + b"\x00\x00\x00\x00"


def _lz4_sequences(payload_tail: bytes):
    """A compressed block decoding to PROTO 2, 40 x NONE, 40 x POP, then payload_tail."""
    def length_ext(n):
        out = b""
        while n >= 255:
            out += b"\xff"
            n -= 255
        return out + bytes([n])

    blk = bytes([0x3F]) + b"\x80\x02N" + b"\x01\x00" + length_ext(39 - 4 - 15)
    blk += bytes([0x1F]) + b"0" + b"\x01\x00" + length_ext(39 - 4 - 15)
    n = len(payload_tail)
    blk += bytes([0xF0]) + length_ext(n - 15) + payload_tail
    expected = b"\x80\x02" + b"N" * 40 + b"0" * 40 + payload_tail
    return blk, expected


@pytest.mark.parametrize("kind", ["gzip", "bz2", "xz", "lzma", "zlib", "lz4-raw", "lz4-compressed"])
def test_compressed_pickles(kind):
    if kind == "gzip":
        data = gzip.compress(PAYLOAD)
    elif kind == "bz2":
        data = bz2.compress(PAYLOAD)
    elif kind == "xz":
        data = lzma.compress(PAYLOAD)
    elif kind == "lzma":
        data = lzma.compress(PAYLOAD, format=lzma.FORMAT_ALONE)
    elif kind == "zlib":
        data = zlib.compress(PAYLOAD)
    elif kind == "lz4-raw":
        data = _lz4_frame([PAYLOAD[:10], PAYLOAD[10:]])
    else:
        blk, expected = _lz4_sequences(PAYLOAD[2:])
        data, out = _lz4_frame([(blk,)]), containers._lz4_frames(_lz4_frame([(blk,)]), 1 << 20)
        assert out == (expected, False)
    r = scan(data)
    f = assert_unsafe(r, glob="os.system")
    assert f.member.startswith("[")


def test_compressed_benign_pickle_is_safe():
    import pickle

    for data in (gzip.compress(pickle.dumps({"a": 1})), bz2.compress(pickle.dumps([1, 2]))):
        assert scan(data).verdict == "safe"
    assert scan(gzip.compress(b"not a pickle at all")).verdict == "error"


def test_tar_archives(tmp_path):
    def tar(members, mode="w"):
        bio = io.BytesIO()
        with tarfile.open(fileobj=bio, mode=mode) as t:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
        return bio.getvalue()

    long = "d/" + "x" * 120 + "/weights.bin"
    for mode in ("w", "w:gz", "w:bz2", "w:xz"):
        r = scan(tar({"readme.md": b"hello", long: PAYLOAD}, mode))
        f = assert_unsafe(r, glob="os.system")
        assert f.member.endswith(long), f.member
    assert scan(tar({"a.pkl": __import__("pickle").dumps([1])})).verdict == "safe"
    # a pickle in the first header's name field (pickle.load on the archive runs it)
    evil = b"cos\nsystem\n(S'id'\ntR."
    assert_unsafe(scan(tar({evil.decode(): b"x"})), glob="os.system")


@pytest.mark.parametrize("magic,what", [(b"7z\xbc\xaf\x27\x1c", "7z"), (b"Rar!\x1a\x07\x00", "RAR")])
def test_archives_that_cannot_be_opened_are_errors(magic, what):
    # (zstd is decoded when the zstandard package is installed: tests/test_scan_archives.py)
    r = scan(magic + os.urandom(100))
    assert r.verdict == "error" and what in r.errors[0]
    r = scan(zip_bytes({"model.7z": magic + b"\x00" * 50}))
    assert r.verdict == "error"


# ---- joblib ---------------------------------------------------------------------------------

@pytest.fixture
def joblib():
    return pytest.importorskip("joblib")


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/never",))


def test_joblib_raw_arrays_are_skipped(tmp_path, joblib):
    p = tmp_path / "m.joblib"
    joblib.dump({"a": np.arange(1000), "b": np.ones((20, 30), dtype=np.float32, order="F"),
                 "obj": np.array([1, "x"], dtype=object), "tail": "end"}, p)
    r = scan(p)
    assert not r.errors, str(r)
    assert r.verdict == "safe", str(r)  # plain arrays (and an object array of int/str) as joblib.load reads them
    assert "joblib.numpy_pickle.NumpyArrayWrapper" in r.globals


@pytest.mark.parametrize("compress", [0, 3, ("gzip", 3), ("bz2", 3), ("xz", 3), ("lzma", 3)])
def test_joblib_payload_after_arrays(tmp_path, compress, joblib):
    p = tmp_path / "m.joblib"
    joblib.dump([np.arange(10), np.array([[1.5] * 7] * 9), _Evil()], p, compress=compress)
    r = scan(p)
    assert_unsafe(r, glob=lambda g: g in ("os.system", "posix.system", "nt.system"))
    assert not r.errors, str(r)


def test_joblib_array_bomb():
    # a NumpyArrayWrapper claiming 8 GB with 16 bytes behind it: joblib allocates before reading
    p = P(4).sglob("joblib.numpy_pickle", "NumpyArrayWrapper").empty_tuple().newobj().empty_dict().mark()
    p.unicode("subclass").sglob("numpy", "ndarray").unicode("shape").int(1 << 30).tuple1()
    p.unicode("order").unicode("C").unicode("dtype")
    p.sglob("numpy", "dtype").unicode("f8").raw(b"\x89\x88").tuple3().reduce()
    p.mark().int(3).unicode("<").none().none().none().int(-1).int(-1).int(0).tuple().build()
    p.unicode("numpy_array_alignment_bytes").int(16).setitems().build()
    r = scan(p.data + b"\x00" + bytes(16) + b".")
    assert_unsafe(r, kind="loader", why="joblib allocates")


# ---- Keras ----------------------------------------------------------------------------------

def _weights_h5() -> bytes:
    """A real (small) Keras 3 weights file written by h5py."""
    import io

    import h5py

    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f["layers/dense/vars/0"] = [[1.0, 2.0]]
    return buf.getvalue()


def _keras(config: dict) -> bytes:
    return zip_bytes({"metadata.json": json.dumps({"keras_version": "3.6.0"}).encode(),
                      "config.json": json.dumps(config).encode(), "model.weights.h5": _weights_h5()})


def _layer(cls, config=None, module="keras.layers"):
    return {"module": module, "class_name": cls, "config": config or {}, "registered_name": None}


def test_keras_benign():
    dense = _layer("Dense", {"units": 4, "activation": {"module": "keras.src.activations.activations",
                                                        "class_name": "function", "config": "relu",
                                                        "registered_name": "relu"}})
    cfg = {"module": "keras", "class_name": "Sequential", "config": {"layers": [_layer("InputLayer"), dense]},
           "registered_name": None}
    r = scan(_keras(cfg))
    assert r.verdict == "safe", str(r)
    cfg["config"]["layers"].append({"module": "keras_hub.src.models", "class_name": "Backbone", "config": {},
                                    "registered_name": "keras_hub>Backbone"})
    assert scan(_keras(cfg)).verdict == "safe"
    cfg["config"]["layers"].append({"module": "keras.layers", "class_name": "MyDense", "config": {},
                                    "registered_name": "Custom>MyDense"})
    assert_unsafe(scan(_keras(cfg)), "suspicious", kind="keras", why="custom object")


def test_keras_lambda_at_depth():
    lam = _layer("Lambda", {"function": {"class_name": "__lambda__", "config": {"code": "4wEAAAAA"}}})
    inner = {"module": "keras", "class_name": "Functional", "config": {"layers": [
        _layer("Bidirectional", {"layer": _layer("TimeDistributed", {"layer": lam})})]}}
    cfg = {"module": "keras", "class_name": "Sequential", "config": {"layers": [_layer("InputLayer"), inner]}}
    r = scan(_keras(cfg))
    f = assert_unsafe(r, kind="keras", why="Lambda layer")
    assert "layers[1].config.layers[0]" in f.why and f.member == "config.json"


def test_keras_foreign_module():
    act = {"module": "os", "class_name": "function", "config": "system", "registered_name": "system"}
    cfg = {"module": "keras", "class_name": "Sequential",
           "config": {"layers": [_layer("Dense", {"units": 2, "activation": act})]}}
    f = assert_unsafe(scan(_keras(cfg)), kind="keras", glob="os.system")
    assert "outside Keras" in f.why
    cfg["config"]["layers"][0] = _layer("MyLayer", module="mypackage.layers")
    assert_unsafe(scan(_keras(cfg)), "suspicious", kind="keras", glob="mypackage.layers.MyLayer")


def test_keras_config_in_hdf5_bytes():
    cfg = json.dumps({"class_name": "Sequential", "config": {"layers": [{"class_name": "Lambda", "config": {
        "function": ["4wEAAAAA", None, None], "function_type": "lambda"}}]}}).encode()
    h5 = b"\x89HDF\r\n\x1a\n" + bytes(200) + cfg + b"\x00" + bytes(100)
    assert_unsafe(scan(h5), kind="keras", why="Lambda")
    # a signature and nothing an HDF5 reader can read: not judged, so never safe
    assert scan(b"\x89HDF\r\n\x1a\n" + bytes(300)).verdict == "error"
    assert scan(_weights_h5()).verdict == "safe"
    # a pickle in the user block in front of the superblock (HDF5 allows 512 bytes there)
    block = PAYLOAD.ljust(512, b"\x00")
    assert_unsafe(scan(block + b"\x89HDF\r\n\x1a\n" + bytes(300)), glob="os.system")


def test_invalid_keras_config_is_an_error():
    z = zip_bytes({"metadata.json": b"{}", "config.json": b"{not json"})
    assert scan(z).verdict == "error"


# ---- attacks on loaders ---------------------------------------------------------------------

def test_storage_larger_than_its_record():
    z = torch_zip(state_dict(("0", 1_000_000, 0, (4,), (1,))), extra={"data/0": bytes(16)})
    assert_unsafe(scan(z), kind="loader", why="declares 1000000 x float32")


def test_tensor_outside_its_storage():
    z = torch_zip(state_dict(("0", 4, 2, (10,), (1,))), extra={"data/0": bytes(16)})
    assert_unsafe(scan(z), kind="loader", why="out-of-bounds view")
    z = torch_zip(state_dict(("0", 4, 0, (2, 2), (1, 2))), extra={"data/0": bytes(16)})
    assert scan(z).verdict == "safe"
    z = torch_zip(state_dict(("0", 4, 0, (3, 3), (1, 2))), extra={"data/0": bytes(16)})
    assert_unsafe(scan(z), kind="loader")


def test_missing_storage_record_is_an_error():
    z = torch_zip(state_dict(("0", 4, 0, (4,), (1,))))
    r = scan(z)
    assert r.verdict == "error" and "missing" in r.errors[0]


def test_setitem_aimed_at_a_tensor():
    p = P(2).empty_dict().unicode("w")
    tensor(p, "0", 4, 0, (4,), (1,))
    p.int(0).int(7).setitem().setitem().stop()
    z = torch_zip(p.data, extra={"data/0": bytes(16)})
    assert_unsafe(scan(z), kind="setitem", glob="torch._utils._rebuild_tensor_v2")


def test_legacy_storage_bomb():
    magic = P(2).raw(b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")).stop().data
    head = magic + P(2).int(1001).stop().data + P(2).empty_dict().stop().data
    main = state_dict(("0", 1 << 40, 0, (4,), (1,)), legacy=True)
    keys = P(2).mark().unicode("0").list().stop().data
    data = head + main + keys + struct.pack("<Q", 4) + bytes(16)
    assert_unsafe(scan(data), kind="loader", why="allocates the declared size")


def test_memo_blow_up():
    assert_unsafe(scan(P(2).none().long_binput(0xFFFFFFF0).stop().data), kind="resource", why="memo")


def test_mark_nesting_blow_up():
    data = P(2).raw(b"(" * 6000).raw(b"1" * 6000).none().stop().data
    assert_unsafe(scan(data), "suspicious", kind="resource", why="MARKs nested")


def test_allocation_bombs():
    assert_unsafe(scan(call_pickle("builtins", "bytearray", 1 << 30)), kind="resource")
    p = P(2).glob("numpy.core.multiarray", "_reconstruct").mark().glob("numpy", "ndarray").mark().int(1 << 20)
    p.int(1 << 20).tuple().short_binstring("b").tuple().reduce().stop()
    assert_unsafe(scan(p.data), kind="resource", why="_reconstruct")


def test_decompression_bombs(monkeypatch):
    monkeypatch.setattr(containers, "INFLATE_FLOOR", 1 << 20)
    monkeypatch.setattr(containers, "INFLATE_RATIO", 16)
    bomb = gzip.compress(PAYLOAD + bytes(8 << 20))
    r = scan(bomb)
    assert_unsafe(r, kind="resource", why="decompression bomb")
    assert_unsafe(r, glob="os.system")
    z = zip_bytes({"archive/data.pkl": PAYLOAD + bytes(8 << 20)}, zipfile.ZIP_DEFLATED)
    assert_unsafe(scan(z), kind="resource", why="decompression bomb")
    z = set_central_size(zip_bytes({"blob.pkl": PAYLOAD}, zipfile.ZIP_DEFLATED), "blob.pkl", 3 << 30)
    assert_unsafe(scan(z), kind="resource")


def test_containers_nested_too_deep():
    data = PAYLOAD
    for _ in range(12):
        data = gzip.compress(data)
    r = scan(data)
    assert r.verdict == "unsafe" and has(r, kind="resource")


# ---- robustness: truncations and byte flips never crash, hang or pass as safe ----------------

_ROBUST = textwrap.dedent(
    r"""
    import os, random, resource, sys
    sys.path.insert(0, {root!r})
    os.environ["MFPARSE_SCAN_RAISE"] = "1"
    if "asan" not in os.environ.get("LD_PRELOAD", ""):  # ASan needs its shadow memory
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
    import mfparse
    data = open({path!r}, "rb").read()
    n = len(data)
    rnd = random.Random({seed})
    step = max(1, n // 400)
    for k in sorted(set(range(0, n, step)) | set(range(max(0, n - 64), n))):
        r = mfparse.scan(data[:k])
        assert r.verdict != "safe" or {prefix_ok!r}, (k, str(r))
    for _ in range({flips}):
        b = bytearray(data)
        for _ in range(rnd.randint(1, 4)):
            b[rnd.randrange(n)] = rnd.randrange(256)
        mfparse.scan(bytes(b))
    print("ok")
    """
)


@pytest.mark.parametrize("kind", ["torch-zip", "legacy", "joblib", "gzip", "npz", "keras"])
def test_robust(tmp_path, seed, kind):
    p = tmp_path / "f"
    if kind == "torch-zip":
        torch.save({"a": torch.arange(6.0), "b": [1, 2]}, p)
    elif kind == "legacy":
        torch.save({"a": torch.arange(6.0)}, p, _use_new_zipfile_serialization=False)
    elif kind == "joblib":
        pytest.importorskip("joblib").dump([np.arange(20), {"k": "v"}], p)
    elif kind == "gzip":
        p.write_bytes(gzip.compress(__import__("pickle").dumps({"a": [1, 2, (3,)]}, protocol=4)))
    elif kind == "npz":
        np.savez(p, a=np.arange(4), o=np.array([1, None], dtype=object))
    else:
        p.write_bytes(_keras({"module": "keras", "class_name": "Sequential", "config": {"layers": []}}))
    path = str(p) + (".npz" if kind == "npz" else "")
    # legacy torch files end with raw storages, joblib with raw arrays: a prefix may end at a
    # pickle boundary and honestly hold only safe pickles; others must never be safe when cut
    prefix_ok = kind in ("legacy", "joblib")
    code = _ROBUST.format(root=ROOT, path=path, seed=seed, flips=150, prefix_ok=prefix_ok)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "ok" in r.stdout, f"seed {seed}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
