"""The command line as users call it: `mfparse inspect` (text and JSON output, --stats against torch,
--tree, exit codes) and `mfparse scan` on folders, standard input and pipes; messages and newlines."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers import ROOT, run_cli
from models import CNN, training_checkpoint
from pickle_asm import P, call_pickle, shared_bomb, tensor, torch_zip


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
    s = json.loads(r.stdout)["files"][0]
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
    tree = json.loads(r.stdout)["files"][0]["tree"]
    assert tree["epoch"] == 50 and tree["model_state_dict"]["fc.weight"]["shape"] == [10, 8192]


def test_errors_exit_2(tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"not a model")
    r = run_cli("inspect", bad)
    assert r.returncode == 2 and "unrecognised file format" in r.stderr
    r = run_cli("inspect", bad, "--json")
    assert r.returncode == 2 and json.loads(r.stdout)["files"][0]["error_type"] == "UnsupportedFormatError"


# ---- as people call it (issue 13): folders, standard input, messages, newlines ---------------

MALICIOUS = call_pickle("os", "system", "touch /tmp/never")


def mfparse_cli(*args, stdin=None, input=None):
    """`python -m mfparse ARGS` as a user runs it: PYTHONPATH naming this checkout, from another
    folder, standard input from a file object (stdin) or a pipe (input bytes)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "mfparse", *map(str, args)], stdin=stdin, input=input,
                       capture_output=True, env=env, cwd="/", timeout=300)
    return subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(), r.stderr.decode())


@pytest.fixture()
def tree_dir(tmp_path):
    d = tmp_path / "models"
    (d / "a" / "b").mkdir(parents=True)
    (d / "a" / "b" / "weights.bin").write_bytes(MALICIOUS)
    (d / "ok.pkl").write_bytes(pickle.dumps({"lr": 0.1}))
    return d


def test_scan_walks_a_folder_by_default(tree_dir):
    r = mfparse_cli("scan", tree_dir)
    assert r.returncode == 1, r.stderr
    lines = r.stdout.splitlines()  # a folder's files, then its sub-folders', in sorted order
    assert lines[:2] == [f"{tree_dir}/ok.pkl: SAFE", f"{tree_dir}/a/b/weights.bin: UNSAFE (1 finding)"]
    assert r.stdout.endswith("2 files: 1 safe, 1 unsafe, 0 error\n") and r.stderr == ""
    for flag in ("-r", "--recursive"):  # accepted for compatibility, same output
        assert mfparse_cli("scan", flag, tree_dir).stdout == r.stdout
    out = json.loads(mfparse_cli("scan", "--json", tree_dir / "a").stdout)
    assert [x["verdict"] for x in out["files"]] == ["unsafe"]  # one shape for a folder and for a file
    out = json.loads(mfparse_cli("scan", "--json", tree_dir / "ok.pkl").stdout)
    assert [x["verdict"] for x in out["files"]] == ["safe"]
    (tree_dir / "empty").mkdir()
    r = mfparse_cli("scan", tree_dir / "empty")
    assert (r.returncode, r.stdout) == (0, "0 files: 0 safe, 0 unsafe, 0 error\n")


def test_scan_follows_links_to_files(tree_dir):
    os.symlink(tree_dir / "a" / "b" / "weights.bin", tree_dir / "blob_link")
    os.symlink(tree_dir / "nowhere", tree_dir / "dangling")
    r = mfparse_cli("scan", tree_dir)
    assert f"{tree_dir}/blob_link: UNSAFE (1 finding)" in r.stdout
    assert f"{tree_dir}/dangling: ERROR (1 error)\n  error      cannot read: no such file or directory\n" in r.stdout
    assert r.stdout.endswith("4 files: 1 safe, 2 unsafe, 1 error\n")


def test_scan_reads_standard_input(tmp_path):
    r = mfparse_cli("scan", "-", input=MALICIOUS)  # a pipe
    assert r.returncode == 1 and r.stdout.startswith("<stdin>: UNSAFE (1 finding)\n  dangerous  os.system")
    data = np.arange(4, dtype=np.float32).tobytes()
    pt = torch_zip(_state_dict_pickle(), extra={"data/0": data})
    r = mfparse_cli("scan", "-", input=pt)  # an archive through a pipe
    assert (r.returncode, r.stdout) == (0, "<stdin>: SAFE\n"), r.stdout + r.stderr
    f = tmp_path / "x.pt"
    f.write_bytes(pt)
    with open(f, "rb") as fh:  # a redirected file
        r = mfparse_cli("scan", "-", stdin=fh)
    assert (r.returncode, r.stdout) == (0, "<stdin>: SAFE\n")
    r = mfparse_cli("scan", "--json", "-", input=MALICIOUS)
    assert json.loads(r.stdout)["files"][0]["path"] == "<stdin>" and r.stdout.endswith("}\n")
    r = mfparse_cli("scan", "-", "--max-stdin-bytes", "100", input=pt)
    assert r.returncode == 2
    assert "more than 100 bytes from a pipe: more than mfparse reads from one" in r.stdout
    r = mfparse_cli("scan", "-", input=b"")
    assert r.returncode == 2 and "empty file" in r.stdout
    r = mfparse_cli("scan", "-", f, input=MALICIOUS)  # stdin among files
    assert r.returncode == 1 and r.stdout.endswith("2 files: 1 safe, 1 unsafe, 0 error\n")


def _state_dict_pickle() -> bytes:
    p = P(2).empty_dict().unicode("w")
    tensor(p, "0", 4, 0, (4,), (1,))
    return p.setitem().stop().data


def test_scan_reads_a_named_pipe(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "mfparse", "scan", str(fifo)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, text=True)
    with open(fifo, "wb") as w:  # blocks until the scanner opens the pipe
        w.write(MALICIOUS)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1 and out.startswith(f"{fifo}: UNSAFE (1 finding)\n"), out + err


def test_messages_say_what_is_wrong(tmp_path):
    r = mfparse_cli("inspect", tmp_path)
    assert r.returncode == 2 and r.stderr.startswith(f"mfparse: {tmp_path}: is a directory")
    r = mfparse_cli("inspect", tmp_path / "missing.pt")
    assert r.stderr == f"mfparse: {tmp_path}/missing.pt: no such file or directory\n"
    r = mfparse_cli("inspect", "--json", tmp_path / "missing.pt")
    assert json.loads(r.stdout)["files"][0]["error"] == f"{tmp_path}/missing.pt: no such file or directory"
    r = mfparse_cli("scan", tmp_path / "missing.pt")
    assert r.stdout == f"{tmp_path}/missing.pt: ERROR (1 error)\n  error      cannot read: no such file or directory\n"
    r = mfparse_cli("diff", tmp_path / "missing.pt", tmp_path / "missing2.pt")
    assert r.returncode == 2 and "no such file or directory" in r.stderr and "[Errno" not in r.stderr


def test_permission_denied_is_named(tmp_path, monkeypatch, capsys):
    # as root nothing is denied: make the open fail the way it fails for a user
    from mfparse import cli

    scan_mod = sys.modules["mfparse.scan"]

    def denied(path, *a, **k):
        raise PermissionError(13, "Permission denied", os.fspath(path))

    (tmp_path / "secret.pt").write_bytes(b"x")
    monkeypatch.setattr(scan_mod, "_read_small", denied)
    # the scan's fast path (mfparse/scan/quick.py) hands a file it cannot open to _read_small
    monkeypatch.setattr("mfparse._native.scan_quick_path", lambda path, tables, limit: None)
    assert cli.main(["scan", str(tmp_path / "secret.pt")]) == 2
    assert capsys.readouterr().out.endswith("error      cannot read: permission denied\n")
    monkeypatch.setattr("mfparse.source.Source.__init__", lambda self, path: denied(path))
    assert cli.main(["inspect", str(tmp_path / "secret.pt")]) == 2
    assert capsys.readouterr().err == f"mfparse: {tmp_path}/secret.pt: permission denied\n"


def test_unlistable_folder_is_an_error_not_skipped(tmp_path, monkeypatch):
    scan_mod = sys.modules["mfparse.scan"]
    (tmp_path / "sub").mkdir()
    real_walk = os.walk

    def walk(top, onerror=None, **kw):
        onerror(PermissionError(13, "Permission denied", os.path.join(top, "sub")))
        yield from real_walk(top, **kw)

    monkeypatch.setattr(scan_mod.os, "walk", walk)
    reports = list(scan_mod.scan_paths([tmp_path]))
    assert [(r.path, r.verdict, r.errors) for r in reports] == [
        (os.path.join(tmp_path, "sub"), "error", ["cannot list this folder: permission denied"])]


def test_every_output_line_ends_with_a_newline(tree_dir, files):
    d, _ = files
    runs = [("scan", tree_dir / "ok.pkl"), ("scan", tree_dir), ("scan", "--json", tree_dir),
            ("scan", "--json", tree_dir / "ok.pkl"), ("scan", tree_dir / "missing"), ("inspect", d / "cnn.pth"),
            ("inspect", "--json", d / "cnn.pth"), ("inspect", "--tree", d / "checkpoint.pth"),
            ("inspect", d / "cnn.pth", tree_dir), ("inspect", "--json", tree_dir)]
    for args in runs:
        r = mfparse_cli(*args)
        assert r.stdout.endswith("\n") and (r.stderr == "" or r.stderr.endswith("\n")), (args, r.stdout[-80:])
    r = mfparse_cli("scan", "-", input=MALICIOUS)
    assert r.stdout.endswith("\n")


def test_closed_pipe_is_quiet(tmp_path):
    torch.save({f"w{i}": torch.zeros(1) for i in range(3000)}, tmp_path / "many.pt")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "mfparse", "inspect", "--json", str(tmp_path / "many.pt")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout.read(10) == b'{\n  "schem'
    proc.stdout.close()  # like `| head -c 10`
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=300) == 0 and err == b""


def test_inspect_stays_bounded_on_an_expansion_bomb(tmp_path):
    data = np.arange(4, dtype=np.float32).tobytes()
    bomb = shared_bomb(40, leaf=lambda p: tensor(p, "0", 4, 0, (2,), (1,))).stop().data
    path = tmp_path / "bomb.pt"
    path.write_bytes(torch_zip(bomb, extra={"data/0": data}))
    r = mfparse_cli("inspect", "--tree", path)
    assert r.returncode == 0, r.stderr
    assert "Tensors:    2\n" in r.stdout and "1: <same as 0.0.0>\n" in r.stdout and len(r.stdout) < 20000
    r = mfparse_cli("inspect", "--tree", "--json", path)
    s = json.loads(r.stdout)["files"][0]
    assert s["tensor_count"] == 2 and s["tree"][1] == {"$ref": "0"} and len(r.stdout) < 40000
    r = mfparse_cli("scan", path)
    assert r.returncode == 1 and "expansion bomb" in r.stdout
