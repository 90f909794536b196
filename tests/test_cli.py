"""`mfparse inspect`: text and JSON output, --stats against torch, --tree, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from helpers import ROOT
from models import CNN, training_checkpoint


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "mfparse", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    sd = CNN().state_dict()
    torch.save(sd, d / "cnn.pth")
    torch.save(training_checkpoint(), d / "checkpoint.pth")
    return d, sd


def test_inspect_text(files):
    d, _ = files
    r = run_cli("inspect", d / "cnn.pth")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "Format:     torch-zip" in out
    assert "conv1.weight" in out and "[64, 3, 3, 3]" in out
    n = sum(t.numel() for t in CNN().state_dict().values())
    assert f"Parameters: {n:,}" in out
    assert "Totals by dtype:" in out and "int64" in out


def test_inspect_json_and_stats_match_torch(files):
    d, sd = files
    r = run_cli("inspect", d / "cnn.pth", "--json", "--stats")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["format"] == "torch-zip" and s["tensor_count"] == len(sd)
    assert s["totals_by_dtype"]["float32"]["tensors"] == 14
    for t in s["tensors"]:
        ref = sd[t["name"]].double()
        st = t["stats"]
        assert st["min"] == pytest.approx(ref.min().item())
        assert st["max"] == pytest.approx(ref.max().item())
        assert st["mean"] == pytest.approx(ref.mean().item(), abs=1e-12)
        if ref.numel() > 1:
            assert st["std"] == pytest.approx(ref.std().item(), rel=1e-9, abs=1e-12)
        assert st["zeros"] == pytest.approx((ref == 0).double().mean().item())


def test_stats_chunking_is_exact(monkeypatch):
    import numpy as np

    from mfparse import inspect as ins

    monkeypatch.setattr(ins, "STATS_CHUNK", 7)
    a = np.linspace(-3, 5, 1000, dtype=np.float32).reshape(10, 100)
    st = ins.tensor_stats(a)
    x = a.astype(np.float64)
    assert st["mean"] == pytest.approx(x.mean())
    assert st["std"] == pytest.approx(x.std(ddof=1))
    assert (st["min"], st["max"]) == (x.min(), x.max())


def test_inspect_tree_shows_checkpoint_structure(files):
    d, _ = files
    r = run_cli("inspect", d / "checkpoint.pth", "--tree")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for key in ("model_state_dict:", "optimizer_state_dict:", "scheduler_state_dict:", "epoch: 50", "best_acc: 95.67"):
        assert key in out
    assert "epoch: 50" in out.split("Metadata:")[1]
    r = run_cli("inspect", d / "checkpoint.pth", "--tree", "--json")
    tree = json.loads(r.stdout)["tree"]
    assert tree["epoch"] == 50 and tree["model_state_dict"]["fc.weight"]["shape"] == [10, 8192]


def test_errors_exit_2(tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"not a model")
    r = run_cli("inspect", bad)
    assert r.returncode == 2 and "unrecognised file format" in r.stderr
    r = run_cli("inspect", bad, "--json")
    assert r.returncode == 2 and json.loads(r.stdout)["error_type"] == "UnsupportedFormatError"
