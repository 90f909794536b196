"""mfparse.scan: the report, the CLI, the allowlist, the benign set and the canary.

Benign files come from the real writers (torch.save, torch.jit.save, numpy, pickle.dump of
builtin values); they must all scan safe. Nothing is ever loaded with pickle, torch, numpy or
joblib: the scanner reads bytes only.
"""

from __future__ import annotations

import collections
import json
import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import mfparse
from mfparse.scan import policy
from pickle_asm import P, call_pickle, torch_zip, zip_bytes
from scan_helpers import assert_unsafe, scan

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args, cwd=None, input=None):
    return subprocess.run([sys.executable, "-m", "mfparse", "scan", *map(str, args)], capture_output=True,
                          text=input is None, input=input, cwd=cwd or ROOT, env={**os.environ, "PYTHONPATH": ROOT},
                          timeout=300)


# ---- the benign set ------------------------------------------------------------------------

class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.l = torch.nn.Linear(3, 2)
        self.register_buffer("c", torch.arange(4))

    def forward(self, x):
        return self.l(x) + self.c.sum()


@pytest.fixture(scope="module")
def benign(tmp_path_factory):
    """{name: path} of real writer outputs that torch.load(weights_only=True) / numpy accept."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates quantized and sparse constructors
        return _write_benign(tmp_path_factory.mktemp("benign"))


def _write_benign(d):
    out = {}

    def save(name, obj, **kw):
        torch.save(obj, d / name, **kw)
        out[name] = d / name

    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    sd = m.state_dict()
    save("state_dict.pt", sd)
    save("state_dict_legacy.pt", sd, _use_new_zipfile_serialization=False)
    dts = [torch.float32, torch.float16, torch.bfloat16, torch.int8, torch.uint8, torch.bool, torch.complex64,
           torch.float64, torch.int64, torch.int32, torch.int16, torch.float8_e4m3fn, torch.float8_e5m2,
           torch.uint16, torch.uint32, torch.complex128]
    save("dtypes.pt", {str(t): torch.ones(3, dtype=t) for t in dts})
    save("dtypes_legacy.pt", {str(t): torch.ones(3, dtype=t) for t in dts[:11]}, _use_new_zipfile_serialization=False)
    base = torch.arange(24.0).reshape(4, 6)
    save("views.pt", {"base": base, "t": base.t(), "slice": base[1:, 2:], "scalar": torch.tensor(3.0),
                      "empty": torch.zeros(0, 5), "expand": torch.ones(1, 3).expand(4, 3)})
    save("parameters.pt", {"p": torch.nn.Parameter(torch.ones(2, 2)),
                           "frozen": torch.nn.Parameter(torch.ones(2), requires_grad=False)})
    q = torch.quantize_per_tensor(torch.rand(4, 4), 0.1, 10, torch.quint8)
    qc = torch.quantize_per_channel(torch.rand(3, 4), torch.tensor([0.1, 0.2, 0.3]), torch.tensor([1, 2, 3]), 0,
                                    torch.qint8)
    save("quantized.pt", {"q": q, "qc": qc})
    save("sparse.pt", {"coo": torch.eye(3).to_sparse()})
    save("meta.pt", {"m": torch.empty(3, 4, device="meta")})
    opt = torch.optim.Adam(m.parameters())
    m(torch.ones(1, 4)).sum().backward()
    opt.step()
    save("checkpoint.pt", {"model_state_dict": sd, "optimizer_state_dict": opt.state_dict(), "epoch": 3,
                           "loss": 0.5})
    sched = torch.optim.lr_scheduler.StepLR(opt, 10)
    save("lightning.ckpt", {
        "epoch": 2, "global_step": 100, "pytorch-lightning_version": "2.4.0",
        "state_dict": collections.OrderedDict(("model." + k, v) for k, v in sd.items()),
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 2, "completed": 2}}}},
        "callbacks": {"ModelCheckpoint{'monitor': 'val_loss', 'mode': 'min'}": {
            "best_model_score": torch.tensor(0.25), "best_model_path": "/x.ckpt", "dirpath": "/ckpt"}},
        "optimizer_states": [opt.state_dict()], "lr_schedulers": [sched.state_dict()],
        "hparams_name": "kwargs", "hyper_parameters": {"lr": 1e-3, "layers": [4, 3, 2], "name": "net"}})
    save("misc.pt", {"size": torch.Size([2, 3]), "device": torch.device("cpu"), "dtype": torch.float16,
                     "set": {1, 2}, "frozenset": frozenset([3]), "complex": complex(1, 2), "bytearray": bytearray(b"xy"),
                     "bytes": b"raw", "slice": slice(1, 5, 2), "none": None, "od": collections.OrderedDict(a=1),
                     "counter": collections.Counter("aab"), "big": 10 ** 30})
    save("storage.pt", torch.arange(5.0).untyped_storage())
    torch.jit.save(torch.jit.script(_Net()), d / "scripted.pt")
    torch.jit.save(torch.jit.trace(_Net(), torch.ones(1, 3)), d / "traced.pt")
    out["scripted.pt"] = d / "scripted.pt"
    out["traced.pt"] = d / "traced.pt"
    np.save(d / "array.npy", np.arange(10.0))
    np.savez(d / "arrays.npz", a=np.arange(3), b=np.ones((2, 2)))
    np.savez_compressed(d / "arrays_compressed.npz", a=np.arange(3), b=np.ones((2, 2)))
    for n in ("array.npy", "arrays.npz", "arrays_compressed.npz"):
        out[n] = d / n
    values = {"a": [1, 2.5, "s", None, True, 10 ** 30], "t": (1, (2,)), "s": {1, 2}, "fs": frozenset([1]),
              "b": b"\x00\xff", "ba": bytearray(b"q"), "c": 1j, "sl": slice(1, 2), "u": "\u00e9", "od": {}}
    arrays = {"a": np.arange(4, dtype=np.float32), "s": np.float64(1.5), "i": np.int64(3), "d": np.dtype("<U5"),
              "rec": np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8")]), "f": np.ones((2, 3), order="F")}
    for proto in range(6):
        (d / f"builtins_p{proto}.pkl").write_bytes(pickle.dumps(values, protocol=proto))
        out[f"builtins_p{proto}.pkl"] = d / f"builtins_p{proto}.pkl"
        if proto >= 2:
            (d / f"numpy_p{proto}.pkl").write_bytes(pickle.dumps(arrays, protocol=proto))
            out[f"numpy_p{proto}.pkl"] = d / f"numpy_p{proto}.pkl"
    (d / "stacked.pkl").write_bytes(pickle.dumps([1, 2]) + pickle.dumps({"x": b"y"}) + pickle.dumps(None))
    out["stacked.pkl"] = d / "stacked.pkl"
    from safetensors.torch import save_file

    save_file({"w": torch.ones(2, 3), "b": torch.zeros(3, dtype=torch.float16)}, str(d / "model.safetensors"))
    out["model.safetensors"] = d / "model.safetensors"
    return out


def test_benign_set_scans_safe(benign):
    bad = []
    for name, path in benign.items():
        r = scan(path)
        if r.verdict != "safe":
            bad.append(str(r))
    assert not bad, "\n".join(bad)


def test_torchscript_is_safe_with_a_note(benign):
    for n in ("scripted.pt", "traced.pt"):
        r = scan(benign[n])
        assert r.verdict == "safe"
        assert any("TorchScript" in x for x in r.notes)
        assert any(g.startswith("__torch__") for g in r.globals)


def test_report_lists_every_global(benign):
    r = scan(benign["state_dict.pt"])
    assert {"collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch.FloatStorage"} <= set(r.globals)
    assert r.pickles == 1


def test_full_model_pickle_is_suspicious(tmp_path):
    torch.save(_Net(), tmp_path / "model.pt")
    r = scan(tmp_path / "model.pt")
    assert r.verdict == "unsafe"
    assert all(f.severity == "suspicious" for f in r.findings)
    assert any(f.global_name and "_Net" in f.global_name for f in r.findings)


# ---- the report and the API ----------------------------------------------------------------

def test_report_fields_and_json():
    r = mfparse.scan(call_pickle("os", "system", "x"))
    assert r.verdict == "unsafe" and r.size > 0 and r.pickles == 1
    f = r.findings[0]
    assert (f.severity, f.module, f.qualname, f.global_name, f.pickle, f.offset) == (
        "dangerous", "os", "system", "os.system", 0, 2)
    assert f.member is None and f.why
    d = json.loads(json.dumps(r.to_dict()))
    assert d["verdict"] == "unsafe"
    assert d["findings"][0]["global"] == "os.system"
    assert set(d["findings"][0]) >= {"severity", "global", "module", "qualname", "member", "pickle", "offset", "why"}
    assert mfparse.ScanReport.from_dict(d).findings == r.findings


def test_scan_accepts_paths_bytes_and_files(tmp_path):
    data = call_pickle("os", "system", "x")
    p = tmp_path / "x.pkl"
    p.write_bytes(data)
    with open(p, "rb") as fh:
        verdicts = {mfparse.scan(p).verdict, mfparse.scan(str(p)).verdict, mfparse.scan(data).verdict,
                    mfparse.scan(fh).verdict}
    assert verdicts == {"unsafe"}
    assert mfparse.scan(p).path == str(p)


def test_empty_and_truncated_files_are_never_safe():
    assert scan(b"").verdict == "error"
    data = pickle.dumps({"a": [1, 2, 3], "b": "text"}, protocol=2)
    for k in range(1, len(data)):
        assert scan(data[:k]).verdict != "safe", k
    assert scan(data).verdict == "safe"


def test_files_small_large_empty_and_folders(tmp_path, monkeypatch):
    scan_mod = sys.modules["mfparse.scan"]

    data = call_pickle("os", "system", "x")
    (tmp_path / "empty.pkl").write_bytes(b"")
    assert mfparse.scan(tmp_path / "empty.pkl").verdict == "error"
    (tmp_path / "x.pkl").write_bytes(data)
    assert mfparse.scan(tmp_path / "x.pkl").verdict == "unsafe"
    monkeypatch.setattr(scan_mod, "SMALL_FILE", 8)  # the memory-mapped path for larger files
    assert mfparse.scan(tmp_path / "x.pkl").verdict == "unsafe"
    with pytest.raises(IsADirectoryError):
        mfparse.scan(tmp_path)
    with pytest.raises(FileNotFoundError):
        mfparse.scan(tmp_path / "missing.pkl")


def test_unsafe_wins_over_errors():
    r = scan(P(2).call("os", "system", "x").data + b"\xff")
    assert r.verdict == "unsafe" and r.errors


def test_unknown_binary_is_an_error_and_text_is_safe(tmp_path):
    assert scan(b"\x00\x01\x02\x03" * 10).verdict == "error"
    assert scan(b"# README\nhello, this is a model card\n").verdict == "safe"
    assert scan(b'{"hidden_size": 8}').verdict == "safe"


def test_import_stays_light():
    code = "import sys, mfparse; print(sorted(m for m in ('torch', 'numpy', 'zipfile') if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": ROOT})
    assert "torch" not in r.stdout


# ---- the CLI -------------------------------------------------------------------------------

def test_cli_exit_codes(tmp_path, benign):
    good, bad, broken = benign["state_dict.pt"], tmp_path / "bad.pt", tmp_path / "broken.pkl"
    bad.write_bytes(call_pickle("os", "system", "x"))
    broken.write_bytes(pickle.dumps([1, 2, 3])[:-3])
    assert cli(good).returncode == 0
    r = cli(bad)
    assert r.returncode == 1 and "UNSAFE" in r.stdout and "os.system" in r.stdout
    assert cli(broken).returncode == 2
    assert cli(good, broken).returncode == 2
    assert cli(good, broken, bad).returncode == 1


def test_cli_json_recursive_and_jobs(tmp_path, benign):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "bad").write_bytes(call_pickle("subprocess", "Popen", "x"))
    (tmp_path / "good.pt").write_bytes(benign["state_dict.pt"].read_bytes())
    r = cli(tmp_path, "--recursive", "--json", "--jobs", "2")
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)["files"]
    by = {os.path.basename(x["path"]): x for x in out}
    assert by["bad"]["verdict"] == "unsafe" and by["good.pt"]["verdict"] == "safe"
    assert by["bad"]["findings"][0]["global"] == "subprocess.Popen"
    r = cli(tmp_path, "--json", "--jobs", "2")  # folders are walked without --recursive too
    assert r.returncode == 1
    assert [(x["path"], x["verdict"]) for x in json.loads(r.stdout)["files"]] == [(x["path"], x["verdict"])
                                                                                  for x in out]
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x").write_bytes(pickle.dumps(1))
    r = cli("-", tmp_path / "c", "--json", "--jobs", "2", input=call_pickle("os", "system", "x"))
    assert [(x["path"], x["verdict"]) for x in json.loads(r.stdout)["files"]] == [
        ("<stdin>", "unsafe"), (str(tmp_path / "c" / "x"), "safe")]
    with pytest.raises(IsADirectoryError):  # the library refuses folders when asked to
        list(sys.modules["mfparse.scan"].scan_paths([tmp_path], recursive=False))


# ---- the allowlist -------------------------------------------------------------------------

def test_allowlist_covers_torch_weights_only_defaults():
    from torch._weights_only_unpickler import _get_allowed_globals

    theirs = set(_get_allowed_globals())
    assert theirs <= policy.ALLOWED, sorted(theirs - policy.ALLOWED)
    extras = policy.ALLOWED - theirs
    assert extras == policy.NUMPY_ALLOWED | policy.BUILTINS_ALLOWED


def test_allowlist_is_exact():
    for name in ("torch._utils._rebuild_tensor_v2.__globals__", "collections.OrderedDict.fromkeys",
                 "numpy.dtype.__reduce__", "torch.Size.__new__", "builtins.set.__init__"):
        mod, _, qual = name.partition(".")
        sev, _ = policy.judge_global(mod, qual)
        assert sev is not None, name


@pytest.mark.parametrize("module,name,expected", [
    ("__builtin__", "set", None),
    ("__builtin__", "frozenset", None),
    ("copy_reg", "_reconstructor", "suspicious"),
    ("__builtin__", "eval", "dangerous"),
    ("__builtin__", "apply", "dangerous"),
    ("__builtin__", "reduce", "dangerous"),       # -> functools.reduce
    ("cPickle", "loads", "dangerous"),           # -> pickle.loads
    ("commands", "getoutput", "dangerous"),      # -> subprocess.getoutput
    ("UserDict", "UserDict", "suspicious"),      # -> collections.UserDict
    ("collections", "defaultdict", "info"),     # known-benign (its factory global is judged itself)
    ("torch", "FloatStorage", None),
    ("torch.jit._pickle", "build_intlist", "suspicious"),
    ("mypackage.models", "Net", "suspicious"),
    ("os ", "sep", "suspicious"),        # not a valid name: the import fails
])
def test_python2_names_and_severities(module, name, expected):
    assert policy.judge_global(module, name)[0] == expected


def test_python2_pickles_are_mapped():
    data = P().glob("__builtin__", "set").mark().mark().int0(1).list().tuple().reduce().stop().data
    assert scan(data).verdict == "safe"


# ---- the canary ----------------------------------------------------------------------------

def _canary_payloads(canary: str):
    sh = f"touch {canary}"
    py = f"open({canary!r}, 'w').close()"
    plain = [
        call_pickle("os", "system", sh),
        call_pickle("posix", "system", sh),
        call_pickle("builtins", "exec", py),
        call_pickle("builtins", "eval", py),
        P(4).call("subprocess", "call", sh, stack_global=True).stop().data,
        P().mark().unicode(sh).inst("os", "system").stop().data,
        P().glob("__builtin__", "exec").mark().string(py).tuple().reduce().stop().data,
        call_pickle("pickle", "loads", call_pickle("os", "system", sh)),
        P(4).sglob("builtins", "getattr").sglob("builtins", "__import__").args("os").reduce().unicode("system")
            .tuple2().reduce().args(sh).reduce().stop().data,
    ]
    wrapped = [torch_zip(plain[0]), zip_bytes({"model/data.txt": plain[2]}),
               torch_zip(P(2).empty_dict().stop().data, extra={"constants.pkl": plain[1]})]
    import gzip

    wrapped.append(gzip.compress(plain[4]))
    return plain + wrapped


def test_canary_never_appears(tmp_path):
    canary = tmp_path / "CANARY"
    files = []
    for i, data in enumerate(_canary_payloads(str(canary))):
        p = tmp_path / f"payload{i}.pt"
        p.write_bytes(data)
        files.append(p)
        r = mfparse.scan(p)
        assert r.verdict == "unsafe", str(r)
        assert r.dangerous, str(r)
        assert not canary.exists()
    r = cli(*files, "--jobs", "2")
    assert r.returncode == 1
    r = cli(tmp_path, "--recursive", "--json")
    assert r.returncode == 1
    assert not canary.exists()


def test_lists_are_documented():
    with open(os.path.join(ROOT, "docs", "architecture.md"), encoding="utf-8") as f:
        text = f.read()
    names = list(policy.DANGEROUS) + sorted(policy.DANGEROUS_ATTRS)
    missing = [n for n in names if f"`{n}`" not in text]
    assert not missing, missing
    for n in sorted(policy.BUILTINS_ALLOWED):
        assert f"`{n}`" in text


def test_hook_registry(monkeypatch):
    from mfparse.scan import containers

    monkeypatch.setattr(containers, "SNIFFERS", list(containers.SNIFFERS))
    monkeypatch.setattr(containers, "CHECKERS", dict(containers.CHECKERS))
    monkeypatch.setattr(containers, "_INDEX", [])
    monkeypatch.setattr(containers, "_MEMBER_MAGIC_FIRST", set(containers._MEMBER_MAGIC_FIRST))

    def checker(ctx, buf, where, **kw):
        ctx.finding("dangerous", "a test format with an exec op", where, kind="format")
        return True

    from mfparse.scan import register_checker

    assert scan(zip_bytes({"inner.bin": b"FAKE" + bytes(20)})).verdict == "safe"
    register_checker("fakefmt", checker, sniffer=lambda h, b, n, t: h[:4] == b"FAKE", before="zip",
                     first_bytes=b"F")
    assert_unsafe(scan(b"FAKE" + bytes(20)), kind="format")
    assert_unsafe(scan(zip_bytes({"inner.bin": b"FAKE" + bytes(20)})), kind="format", member="inner.bin")
