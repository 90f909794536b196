"""The public API: inputs, lifetime, views, errors, and what `import mfparse` costs."""

from __future__ import annotations

import io
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch

import mfparse
from helpers import ROOT
from models import SimpleNet


@pytest.fixture
def pth(tmp_path):
    torch.manual_seed(0)
    p = tmp_path / "simple.pth"
    torch.save(SimpleNet().state_dict(), p)
    return p


def test_public_surface():
    assert set(mfparse.__all__) >= {"open", "TensorInfo", "MFParseError", "CorruptFileError",
                                    "UnsupportedFormatError", "__version__"}
    assert issubclass(mfparse.TruncatedFileError, mfparse.CorruptFileError)
    assert issubclass(mfparse.CorruptFileError, mfparse.MFParseError)


def test_import_does_not_load_heavy_frameworks():
    code = ("import sys, mfparse; heavy = [m for m in ('torch', 'onnxruntime', 'tensorrt', 'h5py', 'onnx', "
            "'tensorflow', 'safetensors') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_path_kinds(pth):
    for src in (pth, str(pth), pathlib.Path(pth)):
        with mfparse.open(src) as m:
            assert m.path == str(pth)
            assert len(m) == 4 and "fc1.weight" in m
    with mfparse.open(pth.read_bytes()) as m:
        assert m.path is None and m.size == pth.stat().st_size
    with open(pth, "rb") as f, mfparse.open(f) as m:
        assert m.path == str(pth)
    with mfparse.open(io.BytesIO(pth.read_bytes())) as m:
        assert list(m) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]


def test_views_are_read_only_and_outlive_close(pth):
    m = mfparse.open(pth)
    a = m["fc1.weight"]
    assert not a.flags.writeable
    with pytest.raises(ValueError):
        a[0, 0] = 1.0
    m.close()
    # the map stays alive while the view does
    assert a.shape == (20, 10) and np.isfinite(a).all()
    with pytest.raises(ValueError, match="closed"):
        m["fc1.bias"]


def test_tensorinfo_fields(pth):
    with mfparse.open(pth) as m:
        t = m.info("fc2.weight")
        assert (t.name, t.dtype, t.shape, t.nbytes, t.numel, t.ndim) == ("fc2.weight", "float32", (5, 20), 400, 100, 2)
        assert t.offset % 64 == 0  # torch aligns storages to 64 bytes
        d = t.to_dict()
        json.dumps(d)
        assert d["shape"] == [5, 20]
        raw = pth.read_bytes()[t.offset:t.offset + t.nbytes]
        assert raw == m["fc2.weight"].tobytes()


def test_errors_carry_path_and_offset(tmp_path, pth):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(pth.read_bytes()[:-30])
    with pytest.raises(mfparse.MFParseError) as e:
        mfparse.open(bad)
    assert e.value.path == str(bad) and e.value.offset is not None
    assert str(e.value).startswith(str(bad) + ": ")
    with pytest.raises(FileNotFoundError):
        mfparse.open(tmp_path / "missing.pth")
    with pytest.raises(IsADirectoryError):
        mfparse.open(tmp_path)
    with pytest.raises(TypeError):
        mfparse.open(12)
    with pytest.raises(mfparse.UnsupportedFormatError, match="unknown format"):
        mfparse.open(pth, format="nope")


def test_input_file_is_never_modified(pth):
    before = pth.read_bytes()
    with mfparse.open(pth) as m:
        for t in m.tensors():
            m[t.name]
    assert pth.read_bytes() == before
