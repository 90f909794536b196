"""`mfparse bench` as a CI step, through the real command (`python -m mfparse bench ...` in a
subprocess) on the tutorial's small models (mfparse.bench.examples): exit statuses, runtimes
available by default, accuracy thresholds, one-line export failures (the full log behind
--verbose), the emulated-fp16 warning, tokens/s for token-id inputs, --weights through wrapper
prefixes, and the int8 quantization settings. A few in-process tests cover what a subprocess
cannot show (captured file descriptors, the int8 cache key).

Iteration counts are tiny and no test looks at a timing value or depends on the CPU.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from mfparse.bench import quant, run  # noqa: E402
from mfparse.bench.base import EXIT_STATUS_HELP, BenchError  # noqa: E402
from mfparse.bench.core import judge_row, parse_thresholds, verdict  # noqa: E402
from mfparse.bench.export import captured  # noqa: E402
from mfparse.bench.models import load_model, match_names  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAVE_TRT = importlib.util.find_spec("tensorrt") is not None
HAVE_ONNXSCRIPT = importlib.util.find_spec("onnxscript") is not None
GPU = torch.cuda.is_available()
QUICK = ["--iterations", "3", "--warmup", "1", "--threads", "1"]

# a model torch runs and neither ONNX exporter can export (no ONNX symbolic for eigh)
UNEXPORTABLE = """\
import torch

class Eig(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 8)

    def forward(self, x):
        y = self.fc(x)
        return torch.linalg.eigh(y @ y.transpose(-1, -2))[0]

def make():
    m = Eig()
    m.example_input_shape = (1, 8)
    return m
"""

WRAPPED = """\
import torch
from mfparse.bench.examples import cnn

class LitModule(torch.nn.Module):  # how Lightning modules hold the network: self.model
    def __init__(self):
        super().__init__()
        self.model = cnn()
        self.example_input_shape = (1, 3, 8, 8)

    def forward(self, x):
        return self.model(x)

def make():
    return LitModule().eval()
"""


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Nothing a test runs may touch the user's cache (~/.cache/mfparse)."""
    monkeypatch.setenv("MFPARSE_CACHE", str(tmp_path / "default-cache"))


def bench(tmp_path, *args, quick=True):
    """`python -m mfparse bench ARGS` in a subprocess: (exit status, stdout, stderr, JSON report or None)."""
    out = tmp_path / f"report-{len(list(tmp_path.glob('report-*.json')))}.json"
    cmd = [sys.executable, "-m", "mfparse", "bench", *args, "--cache-dir", str(tmp_path / "cache"),
           "--json", str(out), *(QUICK if quick else [])]
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "MFPARSE_CACHE": str(tmp_path / "default-cache")}
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp_path), env=env, timeout=300)
    doc = json.loads(out.read_text()) if out.exists() else None
    return r.returncode, r.stdout, r.stderr, doc


def rows(doc, label=None, precision=None):
    return [r for r in doc["runtimes"] if (label is None or r["label"] == label)
            and (precision is None or r["precision"] == precision)]


# ---- default runtimes and exit statuses -------------------------------------------------------


def test_default_runs_what_is_available(tmp_path):
    rc, out, err, doc = bench(tmp_path, "mfparse.bench.examples:simplenet", "-q")
    assert rc == 0, err
    assert doc["runtimes_requested"] == "auto" and doc["schema_version"] == 2
    n = len(doc["runtimes"])
    assert doc["verdict"] == {"status": "pass", "exit_code": 0, "rows": n, "ok": n, "failed": 0, "unavailable": 0,
                              "message": f"all {n} rows ran"}
    labels = [r["label"] for r in doc["runtimes"]]
    assert labels[:1] == ["torch"] and "onnxruntime" in labels
    assert all(r["available"] and r["status"] == "ok" for r in doc["runtimes"])
    assert "unavailable" not in out and "result: PASS" in out
    skipped = {s["runtime"]: s["reason"] for s in doc["skipped"]}
    assert not set(skipped) & set(labels)
    if not GPU:  # a CPU machine: exactly the CPU runtimes, the GPU ones listed as not run
        assert labels == ["torch", "onnxruntime"]
        assert {"torch-cuda", "onnxruntime-cuda", "onnxruntime-trt", "tensorrt"} <= set(skipped)
        assert "no GPU" in skipped["torch-cuda"]
        assert "not run (--runtimes auto" in out
    if not HAVE_TRT:
        assert "tensorrt is not installed" in skipped["tensorrt"]


@pytest.mark.skipif(HAVE_TRT and GPU, reason="TensorRT can run here")
def test_requested_runtime_unavailable_exits_2(tmp_path):
    rc, out, err, doc = bench(tmp_path, "mfparse.bench.examples:simplenet", "--runtimes", "torch,tensorrt", "-q")
    assert rc == 2
    (t,) = rows(doc, "torch")
    (trt,) = rows(doc, "tensorrt")
    assert t["status"] == "ok" and trt["status"] == "unavailable" and trt["available"] is False
    assert trt["reason"]  # says why: not installed, or no GPU
    assert "tensorrt  fp32  1" in out and "unavailable (see below)" in out and "result: ERROR" in out
    assert doc["verdict"]["exit_code"] == 2 and doc["verdict"]["unavailable"] == 1
    assert doc["skipped"] == []  # nothing is skipped silently when runtimes are named


def test_errors_exit_2_with_one_line(tmp_path):
    for args, needle in ((["mfparse.bench.examples:cnn", "--max-abs-diff", "fp8=1"], "unknown precision 'fp8'"),
                         (["mfparse.bench.examples:cnn", "--min-cosine", "abc"], "'abc' is not a number"),
                         (["mfparse.bench.examples:cnn", "--seq-len", "8"], "this model has none"),
                         (["mfparse.bench.examples:cnn", "--runtimes", "auto,torch"], "auto stands alone")):
        rc, out, err, doc = bench(tmp_path, *args, "-q")
        assert rc == 2 and needle in err and doc is None, (args, err)
        assert out == "" and len(err.strip().splitlines()) == 1


def test_help_gives_exit_statuses():
    r = subprocess.run([sys.executable, "-m", "mfparse", "bench", "--help"], capture_output=True, text=True,
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, timeout=60)
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    assert " ".join(EXIT_STATUS_HELP.split()) in text
    for opt in ("--seq-len", "--max-abs-diff", "--min-cosine", "--verbose", "or auto: those available here"):
        assert opt in text
    from mfparse.cli import EXIT_CODES

    assert EXIT_CODES["bench"] == EXIT_STATUS_HELP


# ---- accuracy thresholds ----------------------------------------------------------------------


def test_thresholds_pass(tmp_path):
    rc, out, err, doc = bench(tmp_path, "mfparse.bench.examples:simplenet", "--runtimes", "torch,onnxruntime",
                              "--max-abs-diff", "1e-3", "--min-cosine", "0.999", "-q")
    assert rc == 0, err
    assert doc["thresholds"] == {"max_abs_diff": {"*": 1e-3}, "min_cosine": {"*": 0.999}}
    for r in doc["runtimes"]:
        assert r["status"] == "ok" and r["thresholds"] == {"max_abs_diff": 1e-3, "min_cosine": 0.999}
        assert r["threshold_failures"] == []
    assert "thresholds: max|diff| <= 0.001, cosine >= 0.999" in out
    assert "check" in out and "FAIL" not in out and "result: PASS" in out
    assert doc["verdict"]["message"] == "all 2 rows ran within the accuracy thresholds"


def test_threshold_failure_exits_1_and_wins_over_unavailable(tmp_path):
    # fp16 outputs differ from fp32 ones (rounding), so a limit of 1e-9 on fp16 rows fails them;
    # fp32 torch rows are the reference computation itself: no limit fails them
    runtimes = "torch" if (HAVE_TRT and GPU) else "torch,tensorrt"
    rc, out, err, doc = bench(tmp_path, "mfparse.bench.examples:simplenet", "--runtimes", runtimes,
                              "--precision", "fp32,fp16", "--max-abs-diff", "fp16=1e-9", "-q")
    assert rc == 1, err
    (f32,) = rows(doc, "torch", "fp32")
    (f16,) = rows(doc, "torch", "fp16")
    assert f32["status"] == "ok" and f32["thresholds"]["max_abs_diff"] is None
    assert f16["status"] == "fail" and f16["thresholds"]["max_abs_diff"] == 1e-9
    assert len(f16["threshold_failures"]) == 1 and f16["threshold_failures"][0].startswith("max|diff| ")
    assert f16["threshold_failures"][0].endswith(" > 1e-09")
    assert doc["verdict"]["status"] == "fail" and doc["verdict"]["exit_code"] == 1
    assert "FAIL (accuracy thresholds):" in out and "torch fp16 batch 1: max|diff|" in out
    assert "result: FAIL" in out and "(exit 1)" in out
    table_rows = [l for l in out.splitlines() if l.startswith("torch ") and "fp16" in l]
    assert len(table_rows) == 1 and " FAIL " in table_rows[0]


def test_judging_rows():
    limits = {"max_abs_diff": parse_thresholds(["1e-3", "int8=0.05"], "--max-abs-diff"),
              "min_cosine": parse_thresholds(0.99, "--min-cosine")}
    assert limits == {"max_abs_diff": {"*": 1e-3, "int8": 0.05}, "min_cosine": {"*": 0.99}}

    def row(precision, diff, cos, available=True):
        return {"precision": precision, "available": available, "max_abs_diff": diff, "cosine": cos}

    r = row("int8", 0.04, 0.995)
    judge_row(r, limits, True)
    assert r["status"] == "ok" and r["thresholds"] == {"max_abs_diff": 0.05, "min_cosine": 0.99}
    r = row("fp32", 0.04, 0.995)
    judge_row(r, limits, True)
    assert r["status"] == "fail" and r["threshold_failures"] == ["max|diff| 4.00e-02 > 0.001"]
    r = row("fp16", float("nan"), float("nan"))  # NaN outputs fail every limit
    judge_row(r, limits, True)
    assert r["threshold_failures"] == ["max|diff| nan > 0.001", "cosine nan < 0.99"]
    r = row("fp32", None, None)  # no reference to compare with: not a pass
    judge_row(r, limits, False)
    assert r["status"] == "fail" and "no reference outputs" in r["threshold_failures"][0]
    r = row("fp32", None, None, available=False)
    judge_row(r, limits, True)
    assert r["status"] == "unavailable"
    assert verdict([])["exit_code"] == 2
    assert parse_thresholds(None, "--min-cosine") == {}
    for bad in (["fp8=1"], ["x"], [float("inf")], ["-1"]):
        with pytest.raises(BenchError):
            parse_thresholds(bad, "--max-abs-diff")
    with pytest.raises(BenchError, match="outside"):
        parse_thresholds(1.5, "--min-cosine")


# ---- export failures --------------------------------------------------------------------------


def test_export_failure_is_one_line(tmp_path):
    src = tmp_path / "eig.py"
    src.write_text(UNEXPORTABLE)
    rc, out, err, doc = bench(tmp_path, f"{src}:make")
    assert rc == 2  # the onnxruntime row (available here) did not run
    (t,) = rows(doc, "torch")
    (o,) = rows(doc, "onnxruntime")
    assert t["status"] == "ok" and o["status"] == "unavailable"
    reason = o["reason"]
    assert reason.startswith("ONNX export failed (torch.onnx.export, ") and "\n" not in reason
    assert reason.endswith("; --verbose shows the full export log")
    if not HAVE_ONNXSCRIPT:
        assert "legacy exporter: " in reason and "install onnxscript (pip install onnxscript)" in reason
    assert doc["model_info"]["onnx"]["fp32"] == {"error": reason}
    # nothing of torch.onnx's output reaches the terminal: no TorchScript graph dump, no warnings
    both = out + err
    for noise in ("graph(", "%fc.weight", "Torch IR", "TorchScript-based ONNX export", "Traceback"):
        assert noise not in both, noise
    assert both.count(reason) == 2  # the progress line on stderr, the note under the table
    assert len(out.splitlines()) < 30

    # --verbose: the full log on stderr, framed; stdout unchanged in shape
    rc, out_v, err_v, _ = bench(tmp_path, f"{src}:make", "--verbose", "-q")
    assert rc == 2
    assert "---- ONNX export, fp32 (" in err_v and "captured output ----" in err_v
    assert "---- end of ONNX export, fp32" in err_v
    assert "linalg_eigh" in err_v and "exporter error: " in err_v
    assert "graph(" not in out_v and "captured output" not in out_v


def test_export_failure_with_exporter_flag(tmp_path):
    src = tmp_path / "eig.py"
    src.write_text(UNEXPORTABLE)
    rc, out, err, doc = bench(tmp_path, f"{src}:make", "--runtimes", "onnxruntime", "--exporter", "legacy", "-q")
    assert rc == 2
    (o,) = doc["runtimes"]
    assert "legacy exporter: " in o["reason"]
    if HAVE_ONNXSCRIPT:
        assert "pass --exporter dynamo" in o["reason"]
    else:
        assert "install onnxscript" in o["reason"] and "or pass --exporter dynamo" in o["reason"]


def test_captured_takes_every_stream():
    with captured() as cap:
        print("python stdout")
        print("python stderr", file=sys.stderr)
        os.write(1, b"native fd 1\n")
        os.write(2, b"native fd 2\n")
        warnings.warn("a warning from the exporter", UserWarning)
    assert "python stdout" in cap.text and "python stderr" in cap.text
    assert "native fd 1" in cap.text and "native fd 2" in cap.text
    assert cap.warnings == ["a warning from the exporter"]
    assert cap.log().endswith("warning: a warning from the exporter")
    with pytest.raises(ValueError):  # filled when the block raises too
        with captured() as cap2:
            os.write(1, b"before the error\n")
            raise ValueError("x")
    assert "before the error" in cap2.text


# ---- emulated precision, tokens/s -------------------------------------------------------------


def test_emulated_fp16_warning(tmp_path):
    rc, out, err, doc = bench(tmp_path, "mfparse.bench.examples:simplenet", "--runtimes", "torch",
                              "--precision", "fp32,fp16", "-q")
    assert rc == 0, err
    (f32,) = rows(doc, "torch", "fp32")
    (f16,) = rows(doc, "torch", "fp16")
    assert f32["emulated"] is False and f32["warnings"] == [] and f32["p50_vs_fp32"] is None
    assert f16["emulated"] is True and f16["status"] == "ok"
    assert len(f16["warnings"]) == 1 and f16["warnings"][0].startswith("emulated: torch has no fp16 arithmetic")
    assert f16["p50_vs_fp32"] > 0
    assert "fp16*" in out and "* emulated precision" in out and "torch fp16: torch has no fp16 arithmetic" in out
    assert "fp32's" in out  # the slowdown against fp32 is shown (its value is not tested)


def test_tokens_per_second_with_seq_len(tmp_path):
    rc, out, err, doc = bench(tmp_path, "mfparse.bench.examples:tiny_lm", "--seq-len", "8", "--batch", "1,2",
                              "--runtimes", "torch,onnxruntime", "-q")
    assert rc == 0, err
    assert doc["seq_len"] == 8
    assert doc["inputs"] == [{"name": "input", "shape": [1, 8], "dtype": "int64"}]
    assert len(doc["runtimes"]) == 4
    for r in doc["runtimes"]:
        assert r["status"] == "ok"
        assert r["tokens_per_s"] == pytest.approx(r["throughput"] * 8, rel=1e-9)
        assert r["tokens_per_s"] == pytest.approx(r["batch"] * 8 * 1000.0 / r["latency_ms"]["mean"], rel=1e-6)
        assert r["max_abs_diff"] <= 1e-4
    assert "seq_len: 8" in out and "tokens/s" in out


def test_tokens_per_second_defaults(tmp_path):
    from mfparse.bench import render_table

    kw = dict(runtimes=["torch"], threads=1, iterations=2, warmup=0, cache_dir=tmp_path)
    # without --seq-len the model's own sequence length (16) is used, still with tokens/s
    doc = run("mfparse.bench.examples:tiny_lm", **kw)
    assert doc["seq_len"] == 16 and doc["inputs"][0]["shape"] == [1, 16]
    assert doc["runtimes"][0]["tokens_per_s"] == pytest.approx(doc["runtimes"][0]["throughput"] * 16)
    # --seq-len with --input-shape: the sequence dimension of the token-id input is replaced
    doc = run("mfparse.bench.examples:tiny_lm", input_shapes=["ids:1x4:int64"], seq_len=6, **kw)
    assert doc["inputs"] == [{"name": "ids", "shape": [1, 6], "dtype": "int64"}]
    # a model without token-id inputs has no tokens/s
    doc = run("mfparse.bench.examples:simplenet", **kw)
    assert doc["seq_len"] is None and doc["runtimes"][0]["tokens_per_s"] is None
    assert "tokens/s" not in render_table(doc)


def test_seq_len_fills_a_dynamic_onnx_sequence(tmp_path):
    from mfparse.bench.examples import tiny_lm

    path = tmp_path / "lm.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(tiny_lm(), (torch.zeros(2, 5, dtype=torch.int64),), str(path), dynamo=False,
                          input_names=["ids"], output_names=["logits"],
                          dynamic_axes={"ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}})
    with pytest.raises(BenchError, match="or --seq-len N for token ids"):
        load_model(str(path))
    m = load_model(str(path), seq_len=12)
    assert [(s.name, s.shape, s.dtype) for s in m.inputs] == [("ids", (1, 12), "int64")]


# ---- --weights through wrappers ---------------------------------------------------------------


def _cnn_state(seed=5):
    from mfparse.bench.examples import cnn

    torch.manual_seed(seed)
    return cnn()


def test_wrapped_weights_through_the_cli(tmp_path):
    net = _cnn_state()
    dp = tmp_path / "dp.pth"
    torch.save(torch.nn.DataParallel(net).state_dict(), str(dp))  # names: module.conv1.weight, ...
    rc, out, err, doc = bench(tmp_path, "mfparse.bench.examples:cnn", "--weights", str(dp), "--runtimes", "torch", "-q")
    assert rc == 0, err
    w = doc["model_info"]["weights"]
    assert w["prefix"] == "module." and w["model_prefix"] == "" and w["tensors"] == len(net.state_dict())
    # no mapping: exit 2 naming the unmatched names on both sides
    from mfparse.bench.examples import SimpleNet

    other = tmp_path / "simplenet.pth"
    torch.save(torch.nn.DataParallel(SimpleNet()).state_dict(), str(other))
    rc, out, err, doc = bench(tmp_path, "mfparse.bench.examples:cnn", "--weights", str(other), "-q")
    assert rc == 2 and doc is None
    assert "16 of the model's 16 tensors are not in the file (first: conv1.weight, " in err
    assert "4 of the file's 4 tensors are not the model's (first: module.fc1.bias, module.fc1.weight" in err
    assert "the file's names all start with 'module.'" in err and "_orig_mod." in err


@pytest.mark.parametrize("wrap", ["dataparallel", "lightning", "compile", "checkpoint", "nested"])
def test_wrapped_weights_load_exactly(tmp_path, wrap):
    net = _cnn_state(seed=11)
    if wrap == "dataparallel":
        sd, prefix = torch.nn.DataParallel(net).state_dict(), "module."
    elif wrap == "lightning":
        holder = torch.nn.Module()
        holder.model = net
        sd, prefix = holder.state_dict(), "model."
    elif wrap == "compile":  # torch.compile's OptimizedModule holds the module as _orig_mod
        compiled = torch.nn.Module()
        compiled._orig_mod = net
        sd, prefix = compiled.state_dict(), "_orig_mod."
    elif wrap == "checkpoint":
        sd, prefix = {"model_state_dict": net.state_dict(), "epoch": 2}, "model_state_dict."
    else:  # DataParallel/DDP around a compiled module
        compiled = torch.nn.Module()
        compiled._orig_mod = net
        sd, prefix = torch.nn.DataParallel(compiled).state_dict(), "module._orig_mod."
    path = tmp_path / "w.pth"
    torch.save(sd, str(path))
    m = load_model("mfparse.bench.examples:cnn", str(path))  # another seed: other initial weights
    assert m.weights["prefix"] == prefix and m.weights["model_prefix"] == ""
    got = m.module.state_dict()
    for k, v in net.state_dict().items():
        assert torch.equal(got[k], v), k


def test_weights_into_a_wrapper_model(tmp_path):
    net = _cnn_state(seed=7)
    src = tmp_path / "lit.py"
    src.write_text(WRAPPED)
    bare, dp = tmp_path / "bare.pth", tmp_path / "dp.pth"
    torch.save(net.state_dict(), str(bare))
    torch.save(torch.nn.DataParallel(net).state_dict(), str(dp))
    # the model is the wrapper (Lightning-style self.model), the file the bare network; then both wrapped
    for path, prefixes in ((bare, ("", "model.")), (dp, ("module.", "model."))):
        m = load_model(f"{src}:make", str(path))
        assert (m.weights["prefix"], m.weights["model_prefix"]) == prefixes
        got = m.module.model.state_dict()
        for k, v in net.state_dict().items():
            assert torch.equal(got[k], v), k


def test_partial_match_names_what_is_missing(tmp_path):
    net = _cnn_state()
    path = tmp_path / "partial.pth"
    torch.save({"module." + k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}, str(path))
    with pytest.raises(BenchError) as e:
        load_model("mfparse.bench.examples:cnn", str(path))
    msg = str(e.value)
    assert "2 of the model's 16 tensors are not in the file (under the best mapping: model 'NAME' = " \
           "file 'module.NAME') (first: fc.weight, fc.bias); each of the file's 14 tensors is the model's" in msg


def test_match_names():
    keys = ["conv.weight", "conv.bias", "fc.weight"]
    assert match_names(keys, set(keys)) == ("", "")
    assert match_names(keys, {"module." + k for k in keys}) == ("", "module.")
    assert match_names(["model." + k for k in keys], set(keys)) == ("model.", "")
    assert match_names(["model." + k for k in keys], {"_orig_mod." + k for k in keys}) == ("model.", "_orig_mod.")
    # a file holding two copies (e.g. EMA): the shortest prefix, then alphabetical
    assert match_names(keys, {p + k for k in keys for p in ("model_ema.", "model.")}) == ("", "model.")
    # a prefix must end at a dot: "xconv.weight" is not conv.weight
    assert match_names(keys, {"x" + k for k in keys}) is None
    assert match_names(keys, {"module.conv.weight", "module.conv.bias"}) is None


# ---- int8 settings ----------------------------------------------------------------------------


def test_int8_rows_record_reduce_range_and_calibration(tmp_path, monkeypatch):
    import mfparse.runtime_quant as rq

    kw = dict(runtimes=["onnxruntime"], precisions=["int8"], threads=1, iterations=2, warmup=0,
              cache_dir=tmp_path / "cache")
    first = run("mfparse.bench.examples:simplenet", **kw)
    (r,) = first["runtimes"]
    assert r["available"], r.get("reason")
    cpu = rq.int8_cpu()
    assert r["quantization"]["reduce_range"] is cpu["reduce_range"]
    assert r["quantization"]["int8_cpu"] == cpu["kernel"]
    assert r["quantization"]["calibration"]["method"] == "minmax"
    assert r["quantization"]["calibration"]["feeds"] == 8 and r["quantization"]["calibration"]["batch"] == 1
    assert first["model_info"]["onnx"]["int8"]["quantization"] == r["quantization"]
    from mfparse.bench import render_table

    weights = "7-bit weights (reduce_range)" if cpu["reduce_range"] else "8-bit weights"
    assert f"int8 (onnxruntime): {weights}, minmax calibration on 8 seeded batches of 1; " in render_table(first)
    # the other reduce_range (a CPU of the other kind): another file, not the cached one
    flipped = {**cpu, "reduce_range": not cpu["reduce_range"], "kernel": "test: flipped"}
    monkeypatch.setattr(rq, "int8_cpu", lambda *a, **k: dict(flipped))
    second = run("mfparse.bench.examples:simplenet", **kw)
    (r2,) = second["runtimes"]
    assert r2["available"] and r2["quantization"]["reduce_range"] is (not cpu["reduce_range"])
    i1, i2 = first["model_info"]["onnx"]["int8"], second["model_info"]["onnx"]["int8"]
    assert i2["cached"] is False and i1["path"] != i2["path"]
    # same settings again: the cached file
    third = run("mfparse.bench.examples:simplenet", **kw)
    assert third["model_info"]["onnx"]["int8"]["cached"] is True
    assert third["model_info"]["onnx"]["int8"]["path"] == i2["path"]


def test_int8_hook_given_the_settings_it_takes(tmp_path):
    seen = {}

    def onnx_int8(src, dst, calibration, reduce_range=None, method=None):
        seen.update(reduce_range=reduce_range, method=method)
        with open(src, "rb") as f, open(dst, "wb") as g:
            g.write(f.read())

    quant.register("onnx", onnx_int8)
    try:
        report = run("mfparse.bench.examples:simplenet", runtimes=["onnxruntime"], precisions=["int8"], threads=1,
                     iterations=2, warmup=0, cache_dir=tmp_path)
    finally:
        quant.register("onnx", None)
    from mfparse.runtime_quant import int8_cpu

    assert seen == {"reduce_range": int8_cpu()["reduce_range"], "method": "minmax"}
    q = report["runtimes"][0]["quantization"]
    assert q["reduce_range"] is seen["reduce_range"] and q["calibration"]["method"] == "minmax"


# ---- auto mode skips what cannot run ----------------------------------------------------------


def test_auto_with_nothing_to_run_is_an_error(tmp_path):
    first = run("mfparse.bench.examples:cnn", runtimes=["onnxruntime"], threads=1, iterations=2, warmup=0,
                cache_dir=tmp_path)
    path = first["model_info"]["onnx"]["fp32"]["path"]
    # an .onnx MODEL in fp16: torch cannot run it, ONNX Runtime's fp16 file comes from a torch model
    report = run(path, precisions=["fp16"], threads=1, iterations=2, warmup=0, cache_dir=tmp_path)
    assert report["runtimes"] == [] and report["verdict"]["exit_code"] == 2
    skipped = {(s["runtime"], s["precision"]): s["reason"] for s in report["skipped"]}
    assert "MODEL is an .onnx file" in skipped[("torch", None)]
    assert "exported from the torch model" in skipped[("onnxruntime", "fp16")]
    # the same in fp32: ONNX Runtime runs it, torch is skipped, not a row
    report = run(path, threads=1, iterations=2, warmup=0, cache_dir=tmp_path)
    assert [r["label"] for r in report["runtimes"]][:1] == ["onnxruntime"]
    assert report["verdict"]["exit_code"] == 0
    np.testing.assert_allclose(report["runtimes"][0]["cosine"], 1.0, atol=1e-6)
