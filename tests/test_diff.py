"""mfparse diff: names only in one file, dtype/shape changes, byte identity, max abs / rel
differences in bounded memory, quantized copies compared through their dequantized values,
and the command's exit codes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from mfparse import diff as D
from mfparse.cli import main
from mfparse.convert import convert

from convert_ref import checkpoint


def test_a_checkpoint_and_its_conversion_are_equal(tmp_path):
    torch.save(checkpoint(), tmp_path / "a.pt")
    convert(tmp_path / "a.pt", tmp_path / "b.safetensors", progress=False)
    rep = D.diff(tmp_path / "a.pt", tmp_path / "b.safetensors")
    assert rep.equal, rep.text()
    assert all(t.identical_bytes for t in rep.tensors)
    assert not rep.metadata_changes or set(rep.metadata_changes) == {"format"}
    # strict: the safetensors file added format=pt
    assert not D.diff(tmp_path / "a.pt", tmp_path / "b.safetensors", strict=True).equal


def test_two_epochs(tmp_path):
    g = torch.Generator().manual_seed(0)
    a = {"w": torch.randn(100, 100, generator=g), "b": torch.zeros(100), "gone": torch.ones(2), "ep": 1}
    b = {"w": a["w"].clone(), "b": torch.zeros(100), "new": torch.ones(3), "ep": 2}
    b["w"][3, 4] += 0.5
    b["w"][7, 7] = float("nan")
    torch.save(a, tmp_path / "a.pt")
    torch.save(b, tmp_path / "b.pt")
    rep = D.diff(tmp_path / "a.pt", tmp_path / "b.pt")
    assert not rep.equal
    assert rep.only_a == ["gone"] and rep.only_b == ["new"]
    by = {t.name: t for t in rep.tensors}
    assert by["b"].identical_bytes and by["b"].max_abs == 0
    assert by["w"].identical_bytes is False and by["w"].max_abs == np.inf and by["w"].mismatched == 2
    assert rep.metadata_changes == {"ep": (1, 2)}
    d = rep.to_dict()
    assert d["value_changes"] == ["w"] and d["tensors"][0]["max_abs"] == "inf"
    json.dumps(d)


def test_tolerances_dtypes_and_shapes(tmp_path):
    x = torch.linspace(-1, 1, 1000)
    torch.save({"x": x, "s": torch.ones(2, 3)}, tmp_path / "a.pt")
    torch.save({"x": x.half(), "s": torch.ones(3, 2)}, tmp_path / "b.pt")
    rep = D.diff(tmp_path / "a.pt", tmp_path / "b.pt")
    assert [t.name for t in rep.dtype_changes] == ["x"] and [t.name for t in rep.shape_changes] == ["s"]
    assert not rep.equal                                   # a shape change
    torch.save({"x": x.half().float() + 1e-4}, tmp_path / "c.pt")
    torch.save({"x": x}, tmp_path / "d.pt")
    tight = D.diff(tmp_path / "d.pt", tmp_path / "c.pt", atol=1e-5)
    loose = D.diff(tmp_path / "d.pt", tmp_path / "c.pt", atol=1e-3)
    assert not tight.equal and loose.equal
    assert 1e-4 < loose.tensors[0].max_abs < 1e-3
    assert D.diff(tmp_path / "d.pt", tmp_path / "c.pt", rtol=0.01, atol=2e-4).equal


def test_nan_equals_nan_and_bounded_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "CHUNK", 7)               # many tiny chunks: same answer
    a = torch.randn(50, 30)
    a[4, 4] = float("nan")
    a[5, 5] = float("inf")
    torch.save({"a": a, "t": a.t()}, tmp_path / "a.pt")   # t is strided in the file
    b = a.clone()
    b[9, 9] += 1
    torch.save({"a": b, "t": b.t().contiguous()}, tmp_path / "b.pt")
    rep = D.diff(tmp_path / "a.pt", tmp_path / "b.pt")
    by = {t.name: t for t in rep.tensors}
    for name in ("a", "t"):
        assert by[name].mismatched == 1 and abs(by[name].max_abs - 1.0) < 1e-6, name


def test_chunks_cover_every_element(seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((6, 5, 4))
    for view in (a, a.transpose(2, 0, 1), a[:, ::2], a[0]):
        seen = sum(ca.size for ca, _ in D._chunks(view, view.copy(), limit=7))
        assert seen == view.size
        got = np.concatenate([np.asarray(ca, np.float64).reshape(-1) for ca, _ in D._chunks(view, view, limit=7)])
        assert np.array_equal(np.sort(got), np.sort(view.reshape(-1)))


def test_quantized_copy_diffs_by_its_error(tmp_path):
    from mfparse.quantize import quantize

    g = torch.Generator().manual_seed(1)
    torch.save({"w": torch.randn(64, 256, generator=g), "b": torch.randn(64, generator=g)}, tmp_path / "m.pt")
    rep_q = quantize(tmp_path / "m.pt", tmp_path / "q.safetensors", "int8", progress=False)
    rep = D.diff(tmp_path / "m.pt", tmp_path / "q.safetensors")
    assert rep.only_b == []                                # w.scale is part of w, not a new tensor
    by = {t.name: t for t in rep.tensors}
    assert by["b"].identical_bytes
    assert abs(by["w"].max_abs - rep_q.tensors[0].max_abs_err) < 1e-6
    assert D.diff(tmp_path / "m.pt", tmp_path / "q.safetensors", atol=by["w"].max_abs * 1.0001).equal
    assert not D.diff(tmp_path / "m.pt", tmp_path / "q.safetensors", atol=by["w"].max_abs / 2).equal


def test_cli_diff_exit_codes(tmp_path, capsys):
    torch.save({"w": torch.ones(3)}, tmp_path / "a.pt")
    torch.save({"w": torch.ones(3) * 1.001}, tmp_path / "b.pt")
    assert main(["diff", os.fspath(tmp_path / "a.pt"), os.fspath(tmp_path / "a.pt")]) == 0
    assert "EQUAL" in capsys.readouterr().out
    assert main(["diff", os.fspath(tmp_path / "a.pt"), os.fspath(tmp_path / "b.pt")]) == 1
    assert "DIFFERENT" in capsys.readouterr().out
    assert main(["diff", "--atol", "0.01", "--json", os.fspath(tmp_path / "a.pt"), os.fspath(tmp_path / "b.pt")]) == 0
    assert json.loads(capsys.readouterr().out)["equal"] is True
    assert main(["diff", os.fspath(tmp_path / "a.pt"), os.fspath(tmp_path / "nope.pt")]) == 2
    (tmp_path / "junk.bin").write_bytes(b"not a model")
    assert main(["diff", os.fspath(tmp_path / "a.pt"), os.fspath(tmp_path / "junk.bin")]) == 2
    assert "mfparse:" in capsys.readouterr().err


def test_diff_across_formats(tmp_path):
    """Any pair of formats: a checkpoint against its npz / gguf / torch re-writes."""
    torch.save({"w": torch.randn(4, 4), "i": torch.arange(3)}, tmp_path / "a.pt")
    for ext in (".pt", ".safetensors"):
        convert(tmp_path / "a.pt", tmp_path / f"b{ext}", progress=False)
        assert D.diff(tmp_path / "a.pt", tmp_path / f"b{ext}").equal, ext
    pytest.importorskip("onnx")
    convert(tmp_path / "a.pt", tmp_path / "c.onnx", progress=False)
