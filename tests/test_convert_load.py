"""mfparse.torch / mfparse.numpy: load_file gives the reference library's values, zero-copy
and writable without touching the file; save_file round-trips through every writer; the
device path's staging-buffer logic on the CPU (the CUDA calls themselves need a GPU)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import mfparse
import mfparse.numpy
import mfparse.torch
from mfparse.writers.base import WriteError

from convert_ref import REAL_SOURCES, flatten, make_source, read_mfparse, read_reference, state_dict, tensor_record
from helpers import HostTransfer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sha(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.mark.parametrize("source", REAL_SOURCES)
def test_torch_load_file_matches_the_reference(tmp_path, source):
    src = make_source(source, tmp_path)
    expected = read_mfparse(src)
    got = mfparse.torch.load_file(src)
    assert list(got) == list(expected)
    for name, t in got.items():
        assert isinstance(t, torch.Tensor) and t.device.type == "cpu"
        assert tensor_record(t) == expected[name], name
    if source in ("torch-zip", "torch-legacy"):
        ref = flatten(torch.load(src, weights_only=True))
        for name, t in ref.items():
            assert tensor_record(got[name]) == tensor_record(t), name
    if source == "safetensors":
        from safetensors.torch import load_file

        for name, t in load_file(src).items():
            assert tensor_record(got[name]) == tensor_record(t), name


def test_tensors_are_writable_private_views(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.arange(1000, dtype=torch.float32), "b": torch.ones(3, dtype=torch.bfloat16)},
              tmp_path / "m.safetensors")
    before = sha(tmp_path / "m.safetensors")
    sd = mfparse.torch.load_file(tmp_path / "m.safetensors")
    sd["w"].add_(1)             # no warning (filterwarnings=error), no crash, no write-through
    sd["b"].mul_(2)
    assert sd["w"][0].item() == 1.0
    assert sha(tmp_path / "m.safetensors") == before
    arrays = mfparse.numpy.load_file(tmp_path / "m.safetensors")
    arrays["w"][:] = -1
    assert arrays["w"].flags.writeable
    assert sha(tmp_path / "m.safetensors") == before


def test_load_maps_instead_of_reading(tmp_path):
    """64 MiB of tensors load with (almost) no resident memory until touched."""
    from safetensors.torch import save_file

    save_file({f"w{i}": torch.zeros(1 << 20, dtype=torch.float32) for i in range(16)}, tmp_path / "big.safetensors")
    save_file({"w": torch.zeros(4)}, tmp_path / "small.safetensors")
    # a first load of a small file imports what loading needs (numpy, the readers): the growth
    # measured is then the big file's alone, also under ASan, where imports cost far more memory
    code = f"""
import mfparse.torch, os
def rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
import torch
mfparse.torch.load_file({os.fspath(tmp_path / 'small.safetensors')!r})
base = rss()
sd = mfparse.torch.load_file({os.fspath(tmp_path / 'big.safetensors')!r})
grown = rss() - base
total = sum(float(t.sum()) for t in sd.values())
touched = rss() - base
print(grown, touched)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": ROOT})
    assert r.returncode == 0, r.stderr
    grown, touched = map(int, r.stdout.split())
    assert grown < 16 << 20, grown          # not copied on load
    assert touched > 48 << 20, touched      # the pages come in when read


def test_names_filter(tmp_path):
    torch.save(state_dict(), tmp_path / "s.pt")
    got = mfparse.torch.load_file(tmp_path / "s.pt", names=["fc1.bias", "i8"])
    assert set(got) == {"fc1.bias", "i8"}
    assert set(mfparse.numpy.load_file(tmp_path / "s.pt", names=["u8"])) == {"u8"}


@pytest.mark.parametrize("staging", [1, 7, 64, 1 << 20])
def test_staged_device_path_logic(tmp_path, staging):
    from mfparse.torch import _load_staged
    from mfparse.writers.items import load_arrays

    torch.save(state_dict(), tmp_path / "s.pt")
    with mfparse.open(tmp_path / "s.pt") as m:
        pairs = [(it, a) for it, a, _ in load_arrays(m)]
    t = HostTransfer()
    got = _load_staged(pairs, torch.device("cpu"), staging, t)
    expected = read_mfparse(tmp_path / "s.pt")
    for name, rec in expected.items():
        assert tensor_record(got[name]) == rec, name
    assert t.copies >= len([p for p in pairs if p[1].size])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_load(tmp_path):  # pragma: no cover - runs on GPU machines only
    torch.save(state_dict(), tmp_path / "s.pt")
    got = mfparse.torch.load_file(tmp_path / "s.pt", device="cuda", staging_bytes=4096)
    for name, rec in read_mfparse(tmp_path / "s.pt").items():
        assert got[name].device.type == "cuda"
        assert tensor_record(got[name].cpu()) == rec, name


@pytest.mark.parametrize("ext,fmt", [(".safetensors", "safetensors"), (".pt", "torch-zip"), (".npz", "npz"),
                                     (".gguf", "gguf")])
def test_numpy_save_file_round_trip(tmp_path, ext, fmt):
    arrays = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.arange(5, dtype=np.int64),
              "c": np.ones((2, 2), np.float16), "t": np.arange(6, dtype=np.float64).reshape(2, 3).T}
    path = tmp_path / f"o{ext}"
    mfparse.numpy.save_file(arrays, path)
    got = read_reference(path, fmt)
    for k, v in arrays.items():
        assert got[k] == (v.dtype.name, v.shape, np.ascontiguousarray(v).tobytes()), k


def test_torch_save_file_round_trip_and_shared_memory(tmp_path):
    w = torch.randn(4, 4)
    sd = {"w": w, "tied": w, "half": torch.randn(3).half(), "b": torch.ones(2, dtype=torch.bfloat16),
          "view": w[1], "fp8": torch.randn(4).to(torch.float8_e5m2)}
    mfparse.torch.save_file(sd, tmp_path / "o.safetensors", metadata={"k": "v"})
    from safetensors import safe_open
    from safetensors.torch import load_file

    got = load_file(tmp_path / "o.safetensors")
    for k, v in sd.items():
        assert tensor_record(got[k]) == tensor_record(v), k
    with safe_open(os.fspath(tmp_path / "o.safetensors"), "pt") as f:
        assert f.metadata() == {"k": "v"}
    mfparse.torch.save_file(sd, tmp_path / "o.pt")
    back = torch.load(tmp_path / "o.pt", weights_only=True)
    assert back["tied"].untyped_storage().data_ptr() == back["w"].untyped_storage().data_ptr()
    for k, v in sd.items():
        assert tensor_record(back[k]) == tensor_record(v), k


def test_save_file_refusals(tmp_path):
    with pytest.raises(WriteError, match="has no place for metadata"):
        mfparse.numpy.save_file({"a": np.ones(2)}, tmp_path / "o.npz", metadata={"x": "y"})
    with pytest.raises(WriteError, match="not a torch.Tensor"):
        mfparse.torch.save_file({"a": np.ones(2)}, tmp_path / "o.safetensors")
    with pytest.raises(WriteError, match="cannot be described in an .npy header"):
        mfparse.torch.save_file({"a": torch.ones(2, dtype=torch.bfloat16)}, tmp_path / "o.npz")
    (tmp_path / "keep.safetensors").write_bytes(b"x")
    with pytest.raises(WriteError, match="exists"):
        mfparse.numpy.save_file({"a": np.ones(2)}, tmp_path / "keep.safetensors", overwrite=False)
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".partial")]


def test_bytes_verbs():
    sd = {"a": torch.arange(4, dtype=torch.int32), "b": torch.randn(2, 3)}
    blob = mfparse.torch.save(sd)
    from safetensors.torch import load

    for k, v in load(blob).items():
        assert torch.equal(v, sd[k])
    back = mfparse.torch.load(blob)
    assert all(torch.equal(back[k], sd[k]) for k in sd)
    arrays = mfparse.numpy.load(mfparse.numpy.save({"x": np.arange(3.0)}))
    assert np.array_equal(arrays["x"], np.arange(3.0))


def test_torch_dtype_names():
    assert mfparse.torch.torch_dtype("bfloat16") is torch.bfloat16
    assert mfparse.torch.torch_dtype("qint8") is torch.int8
    assert mfparse.torch.torch_dtype("int4") is torch.uint8
    with pytest.raises(TypeError):
        mfparse.torch.torch_dtype("string")
