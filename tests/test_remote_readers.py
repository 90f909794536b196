"""Readers on windows (docs/architecture.md, "Readers on windows"): every format is listed from
the ranges it needs over a RemoteSource, against the real HTTP range server of tests/servers.py
and moto's S3 server, both started as processes on 127.0.0.1.

For every format the remote listing equals the local one field for field (TensorInfo by
TensorInfo, metadata and tree too), `m[name]` equals the local bytes, and the requests, round
trips and bytes of the listing stay within the structural bounds of the issue's goals table
(docs/architecture.md): a .pth is listed in <= 4 requests and <= 2 round trips whatever its
size, and so on. The sparse maps of these tests start filled with 0xA5 instead of zeros
(`mfparse.io.sparse.POISON`), so that a C reader that read a block it had not fetched would
list wrong bytes, not plausible zeros.
"""

import io
import json
import os
import shutil
import sys

import numpy as np
import pytest

import mfparse
from mfparse.io import sparse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from servers import http_fixtures, s3_server  # noqa: E402

pytestmark = pytest.mark.skipif(__import__("importlib.util").util.find_spec("fsspec") is None,
                                reason="fsspec is not installed (pip install mfparse[remote])")

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures")
KiB = 1024
MiB = 1024 * KiB
COMMIT = "0123456789abcdef0123456789abcdef01234567"


# ---- the files (real writers) ------------------------------------------------------------------

def _rand(shape, seed, dtype="float32"):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def make_torch(d):
    import torch

    g = torch.Generator().manual_seed(0)
    big = {f"layers.{i}.w": torch.randn(128, 256, generator=g) for i in range(12)}
    big["layers.0.w_t"] = big["layers.0.w"].t()  # a strided view of a shared storage
    torch.save({"model": big, "epoch": 3, "name": "net", "lr": [0.1, 0.01]}, d / "model.pth")
    torch.save({f"p{i}": torch.full((3,), float(i)) for i in range(3000)}, d / "many.pth")
    torch.save({f"layers.{i}.w": torch.randn(64, 64, generator=g) for i in range(20)}, d / "legacy.pth",
               _use_new_zipfile_serialization=False)


def make_safetensors(d):
    from safetensors.numpy import save_file

    save_file({f"t{i}": _rand((64, 96), i) for i in range(40)} | {"h": _rand((3,), 9, "float16")},
              str(d / "model.safetensors"), {"format": "np", "note": "x" * 100})
    # a header longer than the head fetched when the file is opened
    save_file({f"blocks.{i}.attention.weight": _rand((2, 2), i) for i in range(1500)}, str(d / "long.safetensors"))


def make_gguf(d):
    from gguf import GGUFWriter, GGMLQuantizationType

    w = GGUFWriter(str(d / "model.gguf"), "llama")
    w.add_uint32("llama.block_count", 4)
    w.add_string("general.name", "tiny")
    w.add_token_list([f"tok{i:05d}".encode() for i in range(30000)])  # a vocabulary of ~400 KB
    w.add_array("tokenizer.ggml.scores", [float(i) for i in range(30000)])
    for i in range(30):
        w.add_tensor(f"blk.{i}.attn_q.weight", _rand((64, 128), i))
    q = np.random.default_rng(1).integers(0, 255, size=(32, 34), dtype=np.uint8)  # Q8_0 blocks
    w.add_tensor("blk.q8", q, raw_shape=(32, 34), raw_dtype=GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def make_hdf5(d):
    import h5py

    for libver in ("earliest", "latest"):
        with h5py.File(d / f"model_{libver}.h5", "w", libver=libver) as f:
            f.attrs["model_config"] = json.dumps({"layers": 6})
            g = f.create_group("model_weights")
            for i in range(6):
                lg = g.create_group(f"dense_{i}")
                lg.attrs["weight_names"] = np.array([b"kernel:0", b"bias:0"])
                lg.create_dataset("kernel:0", data=_rand((96, 128), i))
                lg.create_dataset("bias:0", data=_rand((128,), i + 50), chunks=(32,), compression="gzip")
            f.create_dataset("strings", data=np.array(["a", "bb", "ccc"], dtype=h5py.string_dtype()))


def make_onnx(d):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(_rand((96, 96), i), f"w{i}") for i in range(10)]
    inits += [numpy_helper.from_array(_rand((4,), 100 + i), f"b{i}") for i in range(30)]  # small ones, in a run
    inits.append(helper.make_tensor("typed", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0]))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 96])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 96])
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w0"], ["y"])], "g", [x], [y], inits)
    model = helper.make_model(g, producer_name="t")
    onnx.save(model, str(d / "model.onnx"))
    ext = d / "ext"
    ext.mkdir()
    onnx.save(model, str(ext / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=64)


def make_numpy(d):
    np.save(d / "array.npy", _rand((300, 200), 1))
    np.savez(d / "arrays.npz", **{f"a{i}": _rand((100, 64), i) for i in range(12)}, s=np.array(["x", "yz"]))
    np.savez_compressed(d / "packed.npz", a=_rand((100, 100), 3), b=np.arange(1000))


def make_copies(d):
    for name in ("float.tflite", "int8.tflite", "metadata.tflite", "control.tflite"):
        shutil.copy(os.path.join(FIX, "tflite", name), d / name)
    shutil.copytree(os.path.join(FIX, "tf", "tf1"), d / "tf1")
    shutil.copytree(os.path.join(FIX, "tf", "sharded"), d / "sharded")
    shutil.copytree(os.path.join(FIX, "tf", "keras_sm"), d / "keras_sm")


def make_hf_repo(d):
    """A Hub repository as the test server lays them out (org/model/resolve/<revision>/...)."""
    from safetensors.numpy import save_file

    for rev in ("main", COMMIT):
        repo = d / "org" / "model" / "resolve" / rev
        repo.mkdir(parents=True)
        shards = {"model-00001-of-00002.safetensors": {f"a{i}": _rand((32, 32), i) for i in range(4)},
                  "model-00002-of-00002.safetensors": {f"b{i}": _rand((32, 32), 10 + i) for i in range(3)}}
        wm = {}
        for fname, tensors in shards.items():
            save_file(tensors, str(repo / fname))
            wm.update({k: fname for k in tensors})
        total = sum(t.nbytes for ts in shards.values() for t in ts.values())
        (repo / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total},
                                                                       "weight_map": wm}))
        (repo / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["X"]}))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    pytest.importorskip("torch")
    d = tmp_path_factory.mktemp("models")
    for make in (make_torch, make_safetensors, make_gguf, make_hdf5, make_onnx, make_numpy, make_copies,
                 make_hf_repo):
        make(d)
    return d


server, http = http_fixtures("served")


@pytest.fixture(autouse=True)
def poisoned(monkeypatch):
    monkeypatch.setattr(sparse, "POISON", True)


# ---- comparing a remote listing with the local one -------------------------------------------------

def same_arrays(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind == "O":
        return list(a.ravel()) == list(b.ravel())
    return a.tobytes() == b.tobytes()


def same(a, b) -> bool:
    """Deep equality that compares numpy arrays by dtype, shape and bytes."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and same_arrays(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and not hasattr(a, "_fields"):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def compare(local_path, url, **open_kw):
    """Open both, compare everything; returns (remote ModelFile, the listing's stats)."""
    loc = mfparse.open(local_path, **open_kw)
    rem = mfparse.open(url, **open_kw)
    stats = dict(rem.reader.source.stats) if rem.reader is not None else None
    assert list(rem.tensors()) == list(loc.tensors())
    assert rem.format == loc.format and rem.size == loc.size
    assert same(rem.metadata, loc.metadata)
    assert same(rem.tree(), loc.tree())
    assert rem.path == url.split("://", 1)[0] + "://" + url.split("://", 1)[1]
    for t in loc.tensors():
        try:
            want = loc[t.name]
        except mfparse.MFParseError as e:
            with pytest.raises(type(e)):
                rem[t.name]
            continue
        assert same_arrays(rem[t.name], want), t.name
    loc.close()
    return rem, stats


def listing_stats(url):
    m = mfparse.open(url)
    st = dict(m.reader.source.stats)
    return m, st


def within(st, requests, round_trips, nbytes):
    assert st["requests"] <= requests and st["round_trips"] <= round_trips and st["bytes"] <= nbytes, st


# ---- every format over HTTP ------------------------------------------------------------------------

# name -> (requests, round trips, bytes) the listing may take at most: the goals table's
# structural bounds (docs/architecture.md, "Readers on windows") on files sized for tests
CASES = {
    "model.pth": (4, 2, 2 * MiB),              # head + tail: directory, data.pkl, records
    "many.pth": (4, 3, 4 * MiB),               # + the directory, + data.pkl and the records
    "legacy.pth": (24, 4, 2 * MiB),            # the pickles, then every storage's count at once
    "model.safetensors": (2, 2, 2 * MiB),
    "long.safetensors": (3, 2, 2 * MiB),       # 8 + N bytes: one more request for a long header
    "model.gguf": (4, 3, 1 * MiB),             # header, vocabulary and tensor table as a prefix
    "model_earliest.h5": (6 * 2 + 8, 3 + 3, 4 * MiB),   # groups + 8, depth + 3
    "model_latest.h5": (6 * 2 + 8, 3 + 3, 4 * MiB),
    "model.onnx": (10 + 4, 10 + 4, 8 * MiB),   # initializers with inline data + 4
    "array.npy": (2, 1, 1 * MiB),
    "arrays.npz": (13 + 4, 3, 4 * MiB),        # members + 4
    "packed.npz": (2 + 4, 3, 4 * MiB),
    "float.tflite": (4, 3, 1 * MiB),
    "int8.tflite": (4, 3, 1 * MiB),
    "metadata.tflite": (6, 4, 1 * MiB),
    "control.tflite": (4, 3, 1 * MiB),
    "tf1/model.ckpt.index": (6, 4, 1 * MiB),   # the .index whole; shards sized by HEAD, never fetched
    "sharded/model.index": (8, 6, 1 * MiB),
    "keras_sm/saved_model.pb": (12, 8, 2 * MiB),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_remote_listing_equals_local(http, served, name):
    url = f"{http.url}/{name}"
    rem, st = compare(served / name, url)
    within(st, *CASES[name])
    rem.close()


def test_torch_zip_offsets_are_torch_alignment_checked_on_read(http, served):
    m, st = listing_stats(f"{http.url}/model.pth")
    assert st == {"requests": 2, "round_trips": 1, "bytes": 128 * KiB}  # the discovery only
    r = m.reader
    assert r._unverified  # data offsets from torch's rule, not from local headers
    before = m.reader.source.stats["requests"]
    m["model.layers.5.w"]
    assert m.reader.source.stats["requests"] - before == 1  # the local header comes with the data
    assert "archive/data/5" not in r._unverified or len(r._unverified) < 13
    m.close()


def test_torch_zip_wrong_alignment_is_caught(http, served, tmp_path):
    """An archive whose local headers are not where torch's rule puts them: the held ones show
    it, so every local header is read instead (one round trip) and the listing is right."""
    import zipfile

    src = zipfile.ZipFile(served / "model.pth")
    out = served / "rezipped.pth"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:  # Python's zipfile: no padding
        for info in src.infolist():
            z.writestr(info.filename, src.read(info))
    try:
        rem, st = compare(out, f"{http.url}/rezipped.pth")
        assert not rem.reader._unverified
        rem.close()
    finally:
        out.unlink()


def test_tensor_read_fetches_exactly_its_bytes(http, served):
    m = mfparse.open(f"{http.url}/model.safetensors")
    src = m.reader.source
    info = m.info("t20")
    before = dict(src.stats)
    a = m["t20"]
    with mfparse.open(served / "model.safetensors") as loc:
        assert same_arrays(a, loc["t20"])
    assert src.stats["requests"] == before["requests"] + 1
    assert src.stats["bytes"] - before["bytes"] == info.nbytes
    m.close()


def test_onnx_external_data_through_the_folder(http, served):
    rem, st = compare(served / "ext" / "model.onnx", f"{http.url}/ext/model.onnx")
    log = [e for e in http.log() if e["path"] == "/ext/weights.bin"]
    # listing: the side file's size from a HEAD; reads: exactly the tensors' bytes
    assert log and log[0]["method"] == "HEAD"
    rem.close()


def test_hf_repo_is_one_model(http, served):
    opts = {"endpoint": http.url}
    m = mfparse.open("hf://org/model", storage_options=opts)
    loc = mfparse.open(served / "org" / "model" / "resolve" / "main")
    assert m.files == loc.files == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert [t._replace() for t in m.tensors()] == list(loc.tensors())
    assert m.metadata == loc.metadata and m.metadata["config.model_type"] == "llama"
    assert same_arrays(m["b1"], loc["b1"])
    assert m.path == "hf://org/model"
    m.close()
    loc.close()


def test_remote_folder_and_index(http, served):
    url = f"{http.url}/org/model/resolve/main/"
    loc = mfparse.open(served / "org" / "model" / "resolve" / "main")
    for target in (url, url + "model.safetensors.index.json", url + "model-00002-of-00002.safetensors"):
        m = mfparse.open(target)
        assert list(m.tensors()) == list(loc.tensors())
        m.close()
    loc.close()


def test_server_that_ignores_range(http, served):
    from mfparse.io import RangeNotSupportedError

    http.fault("/model.safetensors", "ignore_range", times=5)
    with pytest.raises(RangeNotSupportedError):
        mfparse.open(f"{http.url}/model.safetensors")


def test_s3(served):
    with s3_server() as (s, opts, client):
        client.create_bucket(Bucket="models")
        for name in ("model.pth", "model_latest.h5", "model.gguf", "arrays.npz"):
            client.upload_file(str(served / name), "models", f"m/{name}")
        for name in ("model.pth", "model_latest.h5", "model.gguf", "arrays.npz"):
            loc = mfparse.open(served / name)
            rem = mfparse.open(f"s3://models/m/{name}", storage_options=opts)
            within(rem.reader.source.stats, *CASES[name])
            assert list(rem.tensors()) == list(loc.tensors()) and same(rem.metadata, loc.metadata)
            t = list(loc.tensors())[-1]
            assert same_arrays(rem[t.name], loc[t.name])
            rem.close()
            loc.close()


def test_commands_take_urls(http, served, tmp_path, capsys):
    from mfparse import cli

    url = f"{http.url}/model.pth"
    assert cli.main(["inspect", url]) == 0
    assert "model.layers.11.w" in capsys.readouterr().out
    assert cli.main(["diff", url, str(served / "model.pth")]) == 0
    assert "EQUAL" in capsys.readouterr().out
    out = tmp_path / "out.safetensors"
    assert cli.main(["convert", url, str(out)]) == 0
    capsys.readouterr()
    with mfparse.open(out) as a, mfparse.open(served / "model.pth") as b:
        assert sorted(a.keys()) == sorted(b.keys())
        for k in b.keys():
            assert same_arrays(np.ascontiguousarray(a[k]), np.ascontiguousarray(b[k])), k


# ---- damaged files: a parse over a window ends as the parse over the whole file ---------------------

class Ranged(mfparse.io.ByteSource):
    """A file in memory read as a remote one (no whole-file buffer): it holds a small head and
    tail, fetches what it is asked for, and counts round trips."""

    def __init__(self, data: bytes, held: int = 512):
        super().__init__()
        self._d = bytes(data)
        self.size = len(data)
        self.name = "<ranged>"
        self._held = [(0, self._d[:held]), (max(0, self.size - held), self._d[max(0, self.size - held):])]

    def held(self):
        return list(self._held)

    def read_ranges(self, ranges, block=None):
        out = []
        for o, n in ranges:
            mfparse.io.check_range(self, o, n)
            out.append(memoryview(self._d[o:o + n]))
        self.stats["round_trips"] += 1
        self.stats["requests"] += len(out)
        return out

    def prefetch(self, ranges, block=None):
        pass


def outcome(src, fmt):
    from mfparse.model import open_source_file

    try:
        with open_source_file(src, fmt) as m:
            return "ok", list(m.tensors())
    except (mfparse.MFParseError, MemoryError) as e:
        return type(e).__name__, str(e)


WINDOWED = [("model_latest.h5", "hdf5"), ("model_earliest.h5", "hdf5"), ("model.onnx", "onnx"),
            ("float.tflite", "tflite"), ("model.gguf", "gguf"), ("legacy.pth", "torch-legacy")]


@pytest.mark.parametrize("name,fmt", WINDOWED)
def test_damaged_files_end_the_same_over_a_window(served, name, fmt):
    """Truncations and byte flips of each windowed format: the remote parse (its last pass
    needs nothing, so it read exactly what a local parse reads) ends with the same listing or
    the same error, message and byte offset, as the local one."""
    import random

    from mfparse.io import LocalSource

    data = (served / name).read_bytes()
    rng = random.Random(19)
    mutants = [data[:n] for n in sorted(rng.sample(range(16, len(data)), 12))]
    for _ in range(40):
        b = bytearray(data)
        for _k in range(rng.choice((1, 2, 4))):
            i = rng.randrange(len(b))
            b[i] = rng.randrange(256)
        mutants.append(bytes(b))
    differ = []
    for i, mut in enumerate(mutants):
        local = outcome(LocalSource(mut), fmt)
        remote = outcome(Ranged(mut), fmt)
        if local != remote:
            differ.append((i, local if local[0] != "ok" else "ok", remote if remote[0] != "ok" else "ok"))
    assert not differ, differ[:3]
