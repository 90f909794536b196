"""Detection is not fooled by an archive appended to or prepended to a format (both directions),
and `mfparse scan` reports a polyglot: one file that two loaders read as two formats.

Every file is written by the real writers (numpy, h5py, gguf, torch.save, safetensors, TFLite
fixtures, zipfile appending as tflite-support's MetadataPopulator does) and the loaders' own
verdicts (numpy.load, h5py, torch.load, safetensors, zipfile) are asserted next to mfparse's.
"""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np
import pytest

import mfparse
from pickle_asm import call_pickle, zip_bytes
from scan_helpers import assert_unsafe, has, scan

HERE = os.path.dirname(os.path.abspath(__file__))
TFLITE = os.path.join(HERE, "fixtures", "tflite", "float.tflite")


def append_zip(data: bytes, members: dict) -> bytes:
    """zipfile in mode "a" on a file that is not a zip appends an archive after its bytes."""
    bio = io.BytesIO(data)
    bio.seek(0, 2)
    with zipfile.ZipFile(bio, "a") as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    return bio.getvalue()


def npy_bytes() -> bytes:
    bio = io.BytesIO()
    np.save(bio, np.arange(6, dtype=np.int32))
    return bio.getvalue()


def h5_bytes() -> bytes:
    h5py = pytest.importorskip("h5py")
    bio = io.BytesIO()
    with h5py.File(bio, "w") as f:
        f["x"] = np.arange(3, dtype=np.float32)
    return bio.getvalue()


def gguf_bytes(tmp_path) -> bytes:
    gguf = pytest.importorskip("gguf")
    p = tmp_path / "m.gguf"
    w = gguf.GGUFWriter(str(p), "llama")
    w.add_tensor("t", np.arange(4, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return p.read_bytes()


def legacy_torch_bytes() -> bytes:
    torch = pytest.importorskip("torch")
    bio = io.BytesIO()
    torch.save({"w": torch.arange(4.0)}, bio, _use_new_zipfile_serialization=False)
    return bio.getvalue()


def safetensors_bytes() -> bytes:
    from safetensors.numpy import save

    return save({"a": np.arange(6, dtype=np.float32)})


def tflite_bytes() -> bytes:
    with open(TFLITE, "rb") as f:
        return f.read()


FORMATS = {"npy": npy_bytes, "hdf5": h5_bytes, "torch-legacy": legacy_torch_bytes,
           "safetensors": safetensors_bytes, "tflite": tflite_bytes, "gguf": gguf_bytes}


def build(fmt, tmp_path):
    f = FORMATS[fmt]
    return f(tmp_path) if fmt == "gguf" else f()


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_an_appended_zip_does_not_change_the_format(fmt, tmp_path):
    """What the file's own loader reads wins over zipfile's end-record reading, as torch.load
    and numpy.load decide (a zip only when it starts with a local header)."""
    data = append_zip(build(fmt, tmp_path), {"labels.txt": b"a\nb\n"})
    p = tmp_path / "f.bin"
    p.write_bytes(data)
    assert zipfile.is_zipfile(p)
    if fmt == "safetensors":
        # the safetensors loader refuses bytes after the tensors, and so does mfparse
        from safetensors import SafetensorError
        from safetensors.numpy import load

        with pytest.raises(SafetensorError):
            load(data)
        with pytest.raises(mfparse.CorruptFileError, match="data area"):
            mfparse.open(data)
        return
    with mfparse.open(data) as m:
        assert m.format == fmt
        names = m.keys()
    with mfparse.open(build(fmt, tmp_path)) as clean:
        assert names == clean.keys()
    if fmt == "npy":
        assert np.load(p).tolist() == list(range(6))
    elif fmt == "hdf5":
        import h5py

        with h5py.File(p, "r") as f:
            assert list(f) == ["x"]
    elif fmt == "gguf":
        from gguf import GGUFReader

        assert [t.name for t in GGUFReader(p).tensors] == ["t"]
    elif fmt == "torch-legacy":
        import torch

        assert torch.load(p, weights_only=True)["w"].tolist() == [0.0, 1.0, 2.0, 3.0]


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_scan_reports_polyglots_and_scans_both(fmt, tmp_path):
    data = append_zip(build(fmt, tmp_path), {"evil.pkl": call_pickle("os", "system", "x")})
    r = scan(data)
    assert_unsafe(r, glob="os.system", member="evil.pkl")
    poly = has(r, kind="polyglot")
    if fmt == "tflite":
        # TFLite Model Metadata appends the associated files so: not a polyglot, every member scanned
        assert not poly
        assert any("associated files" in n for n in r.notes)
    else:
        (f,) = poly
        assert f.severity == "suspicious" and "zip archive" in f.why
    clean = scan(append_zip(build(fmt, tmp_path), {"labels.txt": b"a\nb\n"}))
    assert bool(has(clean, kind="polyglot")) == (fmt != "tflite")
    if fmt == "tflite":
        assert clean.verdict == "safe"


def test_a_zip_with_bytes_in_front_is_a_zip():
    """Bytes that are no format in front of an archive (a self-extracting archive): zipfile
    reads the archive, and so does mfparse."""
    pytest.importorskip("torch")
    import torch

    bio = io.BytesIO()
    torch.save({"w": torch.arange(3.0)}, bio)
    data = b"#!/bin/sh\nexit 0\n" + bytes(100) + bio.getvalue()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert any(n.endswith("data.pkl") for n in zf.namelist())
    with mfparse.open(data) as m:
        assert m.format == "torch-zip" and m["w"].tolist() == [0.0, 1.0, 2.0]


def test_a_format_after_a_zip_is_not_read():
    """A zip first, then an .npy: numpy.load and torch.load see the zip (its first bytes); the
    .npy behind it is read by no loader, so it is no polyglot."""
    z = zip_bytes({"archive/data.pkl": b"\x80\x02}q\x00.", "archive/version": b"3\n"})
    data = z + npy_bytes()
    with mfparse.open(data) as m:
        assert m.format == "torch-zip"
    r = scan(data)
    assert not has(r, kind="polyglot")


def test_hdf5_inside_a_zip(tmp_path):
    """h5py finds a superblock at 512, 1024, 2048, ... (a user block in front): a zip whose
    member bytes put an HDF5 file there is read by h5py too. An HDF5 file stored as a member
    that happens to start there is that member (scanned as one), not a polyglot."""
    h5py = pytest.importorskip("h5py")
    h5 = h5_bytes()
    inside = zip_bytes({"b" * 10: bytes(2048 - 40) + h5})
    assert inside[2048:2056] == b"\x89HDF\r\n\x1a\n"
    p = tmp_path / "x.zip"
    p.write_bytes(inside)
    with h5py.File(p, "r") as f:
        assert list(f) == ["x"]
    with pytest.raises(mfparse.UnsupportedFormatError, match="zip archive"):
        mfparse.open(inside)  # the zip wins: torch.load / numpy.load look at byte 0
    f = assert_unsafe(scan(inside), "suspicious", kind="polyglot")
    assert "HDF5" in f.why and "byte 2048" in f.why
    member = zip_bytes({"a" * (2048 - 30): h5})
    assert member[2048:2056] == b"\x89HDF\r\n\x1a\n"
    assert not has(scan(member), kind="polyglot")


def test_two_formats_in_front_of_nothing_are_not_polyglots():
    for data in (npy_bytes(), tflite_bytes(), safetensors_bytes()):
        assert not has(scan(data), kind="polyglot")
