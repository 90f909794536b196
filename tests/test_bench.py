"""`mfparse bench` on the CPU: the tutorial's SimpleNet and CNN through torch and ONNX Runtime.

Iteration counts are tiny (the numbers are not the point here; their shape, the accuracy and
the rules of measurement are). Speed is never asserted.
"""

from __future__ import annotations

import copy
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

from mfparse.bench import BenchError, quant, render_table, run, to_json_obj, write_json  # noqa: E402
from mfparse.bench.measure import (HostClock, InputSpec, Session, accuracy, latency_stats,  # noqa: E402
                                   make_inputs, run_loop)
from mfparse.bench.models import load_model, parse_input_shape  # noqa: E402
from mfparse.cli import main  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAT_KEYS = {"min", "mean", "p50", "p90", "p95", "p99", "max", "stdev"}
ROW_KEYS = {"name", "precision", "batch", "available", "threads", "latency_ms", "throughput",
            "first_run_ms", "build_ms", "max_abs_diff", "mean_abs_diff", "cosine"}
QUICK = dict(iterations=4, warmup=1)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Nothing a test runs may touch the user's cache (~/.cache/mfparse)."""
    monkeypatch.setenv("MFPARSE_CACHE", str(tmp_path / "default-cache"))
HAVE_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def rows_of(report, name=None, **kw):
    out = [r for r in report["runtimes"] if name is None or (r.get("label") or r["name"]) == name]
    for k, v in kw.items():
        out = [r for r in out if r[k] == v]
    return out


def check_measured(row, batch, exact=True):
    assert row["available"] is True, row.get("reason")
    assert "reason" not in row
    lat = row["latency_ms"]
    assert set(lat) == LAT_KEYS
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert lat["min"] <= lat["mean"] <= lat["max"] and lat["stdev"] >= 0
    assert row["throughput"] > 0
    # throughput is batch x iterations over the summed compute time
    assert row["throughput"] == pytest.approx(batch * 1000.0 / lat["mean"], rel=1e-6)
    assert row["first_run_ms"] > 0 and row["build_ms"] >= 0
    assert 0 <= row["mean_abs_diff"] <= row["max_abs_diff"]
    if exact:  # fp32 rows agree with torch fp32; quantized rows only come close
        assert row["max_abs_diff"] <= 1e-4
        assert row["cosine"] == pytest.approx(1.0, abs=1e-6)
    assert row["peak_rss_mb"] > 0
    if row["peak_rss_scope"] == "row":
        assert 0 < row["rss_before_mb"] <= row["peak_rss_mb"]
    assert row["batch"] == batch


# ---- end to end -------------------------------------------------------------------------------


def test_simplenet_cli_json(tmp_path, cache, capsys):
    out = tmp_path / "report.json"
    rc = main(["bench", "mfparse.bench.examples:simplenet", "--runtimes", "torch,onnxruntime,tensorrt",
               "--iterations", "5", "--warmup", "2", "--threads", "1", "--json", str(out),
               "--cache-dir", str(cache), "--quiet"])
    captured = capsys.readouterr()
    # tensorrt is requested by name: where it cannot run, its row says why and the exit status is 2
    assert rc == (0 if HAVE_TRT and torch.cuda.is_available() else 2), captured.err
    assert "torch" in captured.out and "onnxruntime" in captured.out
    doc = json.loads(out.read_text())  # written whatever the verdict
    assert list(doc)[:6] == ["schema_version", "model", "verdict", "inputs", "environment", "runtimes"]
    assert doc["schema_version"] == 2 and doc["verdict"]["exit_code"] == rc
    assert doc["runtimes_requested"] == ["torch", "onnxruntime", "tensorrt"] and doc["skipped"] == []
    assert doc["model"] == "mfparse.bench.examples:simplenet"
    assert doc["inputs"] == [{"name": "input", "shape": [1, 10], "dtype": "float32"}]
    env = doc["environment"]
    assert {"versions", "cpu", "threads", "gpu"} <= set(env)
    assert env["threads"] == 1 and env["versions"]["torch"] == torch.__version__
    assert "onnxruntime" in env["versions"] and env["cpu"]
    assert doc["reference"] == "torch fp32 (CPU)"
    for row in doc["runtimes"]:
        assert ROW_KEYS <= set(row), set(row) ^ ROW_KEYS
        assert row["name"] in ("torch", "onnxruntime", "tensorrt")
    (t,) = rows_of(doc, "torch")
    (o,) = rows_of(doc, "onnxruntime")
    for row in (t, o):
        check_measured(row, 1)
        assert row["iterations"] == 5 and row["warmup_ms"]["iterations"] == 2
        assert row["timer"] == "perf_counter" and row["copy_ms"] is None
        assert row["threads"] == 1
        assert row["status"] == "ok" and row["threshold_failures"] == [] and row["emulated"] is False
    assert o["provider"] == "CPUExecutionProvider"
    (trt,) = rows_of(doc, "tensorrt")
    if not HAVE_TRT:
        assert trt["available"] is False and trt["status"] == "unavailable"
        assert "tensorrt is not installed" in trt["reason"]
        assert trt["latency_ms"] is None and trt["throughput"] is None
        assert "unavailable" in captured.out and "result: ERROR" in captured.out
        assert doc["verdict"] == {"status": "error", "exit_code": 2, "rows": 3, "ok": 2, "failed": 0,
                                  "unavailable": 1, "message": "1 of 3 requested rows did not run"}


def test_cnn_batch_sweep(cache):
    report = run("mfparse.bench.examples:cnn", batches=[1, 2, 5], runtimes=["torch", "onnxruntime"],
                 threads=1, cache_dir=cache, **QUICK)
    assert report["batch"] == [1, 2, 5]
    assert [(r["name"], r["batch"]) for r in report["runtimes"]] == [
        ("torch", 1), ("torch", 2), ("torch", 5), ("onnxruntime", 1), ("onnxruntime", 2), ("onnxruntime", 5)]
    for r in report["runtimes"]:
        check_measured(r, r["batch"])
    # one ONNX file (dynamic batch) serves every batch size
    assert len({r["onnx"] for r in rows_of(report, "onnxruntime")}) == 1
    assert report["model_info"]["onnx"]["fp32"]["cached"] is False
    json.dumps(to_json_obj(report), allow_nan=False)
    assert "_samples_ms" not in json.dumps(to_json_obj(report))
    table = render_table(report)
    assert "batch: 1,2,5" in table and table.count("onnxruntime") >= 3


def test_same_inputs_for_every_runtime(cache, monkeypatch):
    """Every runtime sees the same seeded arrays: record what torch and ORT are fed."""
    import onnxruntime as ort

    seen = {"torch": [], "ort": []}
    real_run = ort.InferenceSession.run

    def spy_run(self, names, feeds, *a, **k):
        seen["ort"].append({n: np.array(v) for n, v in feeds.items()})
        return real_run(self, names, feeds, *a, **k)

    monkeypatch.setattr(ort.InferenceSession, "run", spy_run)
    from mfparse.bench import examples

    real_forward = examples.CNN.forward

    def spy_forward(self, x):
        seen["torch"].append(x.detach().clone().numpy())
        return real_forward(self, x)

    monkeypatch.setattr(examples.CNN, "forward", spy_forward)
    run("mfparse.bench.examples:cnn", batches=[2], runtimes=["torch", "onnxruntime"], threads=1,
        cache_dir=cache, seed=7, iterations=2, warmup=0)
    expected = make_inputs([InputSpec("input", (1, 3, 8, 8))], 2, 7)[0]
    assert seen["torch"] and seen["ort"]
    for x in seen["torch"]:
        np.testing.assert_array_equal(x, expected)
    for feeds in seen["ort"]:
        np.testing.assert_array_equal(feeds["input"], expected)


def test_threads_applied(cache):
    before = torch.get_num_threads()
    for n in (1, 2):
        report = run("mfparse.bench.examples:simplenet", runtimes=["torch", "onnxruntime"], threads=n,
                     cache_dir=cache, **QUICK)
        assert report["environment"]["threads"] == n and report["settings"]["threads"] == n
        for r in report["runtimes"]:
            assert r["available"] and r["threads"] == n, r
        assert report["settings"]["ort_allow_spinning"] is False
    assert torch.get_num_threads() == before  # restored afterwards


def test_ort_session_options(cache, monkeypatch):
    """ORT runs with intra-op threads = --threads, one inter-op thread, spinning off."""
    import onnxruntime as ort

    captured = []
    real = ort.InferenceSession.__init__

    def spy(self, path, sess_options=None, *a, **k):
        captured.append(sess_options)
        real(self, path, sess_options, *a, **k)

    monkeypatch.setattr(ort.InferenceSession, "__init__", spy)
    run("mfparse.bench.examples:simplenet", runtimes=["onnxruntime"], threads=1, cache_dir=cache, **QUICK)
    so = captured[-1]
    assert so.intra_op_num_threads == 1 and so.inter_op_num_threads == 1
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert so.get_session_config_entry("session.inter_op.allow_spinning") == "0"


def test_duration_mode(cache):
    report = run("mfparse.bench.examples:simplenet", runtimes=["torch"], threads=1, cache_dir=cache,
                 duration=0.05, warmup=0)
    (r,) = report["runtimes"]
    assert r["available"] and r["iterations"] >= 3
    assert report["settings"]["duration_s"] == 0.05 and report["settings"]["iterations"] is None


def test_fp16_rows_on_cpu(cache):
    report = run("mfparse.bench.examples:cnn", runtimes=["torch", "onnxruntime"], precisions=["fp32", "fp16"],
                 threads=1, cache_dir=cache, **QUICK)
    for r in rows_of(report, precision="fp16"):
        if r["available"]:
            assert 0 < r["max_abs_diff"] < 5e-2 and r["cosine"] > 0.999
        else:  # a runtime without fp16 kernels for an op says so
            assert r["reason"]
    assert report["model_info"]["onnx"]["fp16"]["path"].endswith(".fp16.onnx")


def test_torch_cuda_and_missing_eps_reported(cache):
    report = run("mfparse.bench.examples:simplenet",
                 runtimes=["torch-cuda", "onnxruntime-cuda", "onnxruntime-trt", "tensorrt"],
                 threads=1, cache_dir=cache, **QUICK)
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    for r in report["runtimes"]:
        assert r["available"] is False and r["reason"], r
    (tc,) = rows_of(report, "torch-cuda")
    assert tc["name"] == "torch" and tc["device"] == "cuda"
    assert "CPU-only" in tc["reason"] or "sees no GPU" in tc["reason"]
    (oc,) = rows_of(report, "onnxruntime-cuda")
    assert "CUDAExecutionProvider" in oc["reason"]


# ---- export cache -----------------------------------------------------------------------------


def test_export_cached_by_hash(cache):
    kw = dict(runtimes=["onnxruntime"], threads=1, cache_dir=cache, **QUICK)
    a = run("mfparse.bench.examples:cnn", **kw)
    b = run("mfparse.bench.examples:cnn", **kw)
    ia, ib = a["model_info"]["onnx"]["fp32"], b["model_info"]["onnx"]["fp32"]
    assert ia["cached"] is False and ib["cached"] is True
    assert ia["path"] == ib["path"] and ia["sha256"] == ib["sha256"]
    # other weights (another seed initialises the model differently): another file
    c = run("mfparse.bench.examples:cnn", seed=1, **kw)
    assert c["model_info"]["onnx"]["fp32"]["path"] != ia["path"]
    assert not list((cache / "onnx").glob("*.tmp"))


def test_exporter_choice(cache):
    have = importlib.util.find_spec("onnxscript") is not None
    report = run("mfparse.bench.examples:simplenet", runtimes=["onnxruntime"], threads=1, cache_dir=cache,
                 **QUICK)
    info = report["model_info"]["onnx"]["fp32"]
    if have:
        assert info["exporter"] in ("dynamo", "legacy")
    else:
        assert info["exporter"] == "legacy" and info["exporter_reason"] == "onnxscript is not installed"
    if not have:
        r = run("mfparse.bench.examples:simplenet", runtimes=["onnxruntime"], threads=1, cache_dir=cache,
                exporter="dynamo", **QUICK)
        assert "onnxscript" in r["runtimes"][0]["reason"]


# ---- models: TorchScript, .onnx, module:callable, weights -------------------------------------


def test_torchscript_model(tmp_path, cache):
    from mfparse.bench.examples import cnn

    torch.manual_seed(0)
    m = cnn()
    ts = tmp_path / "cnn_traced.pt"
    with warnings.catch_warnings():  # torch.jit.trace is deprecated in torch 2.10+
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.trace(m, torch.randn(1, 3, 8, 8)).save(str(ts))
    with pytest.raises(BenchError, match="give the input shape"):
        run(str(ts), runtimes=["torch"], cache_dir=cache, **QUICK)
    report = run(str(ts), input_shapes=["1x3x8x8"], batches=[1, 3], runtimes=["torch", "onnxruntime"],
                 threads=1, cache_dir=cache, **QUICK)
    assert report["model_info"]["kind"] == "torchscript"
    assert report["model_info"]["onnx"]["fp32"]["exporter"] == "legacy"
    for r in report["runtimes"]:
        check_measured(r, r["batch"])


def test_onnx_model(tmp_path, cache):
    first = run("mfparse.bench.examples:cnn", runtimes=["onnxruntime"], threads=1, cache_dir=cache, **QUICK)
    path = first["model_info"]["onnx"]["fp32"]["path"]
    report = run(path, batches=[1, 4], runtimes=["torch", "onnxruntime"], threads=1, cache_dir=cache, **QUICK)
    assert report["model_info"]["kind"] == "onnx"
    assert report["inputs"][0]["shape"] == [1, 3, 8, 8]  # the dynamic batch dim taken as 1
    assert report["reference"] == "onnxruntime fp32 (CPU EP)"
    for r in rows_of(report, "torch"):
        assert not r["available"] and ".onnx" in r["reason"]
    for r in rows_of(report, "onnxruntime"):
        check_measured(r, r["batch"])
    # an fp16 row needs the torch model
    r16 = run(path, runtimes=["onnxruntime"], precisions=["fp16"], threads=1, cache_dir=cache, **QUICK)
    assert "exported from the torch model" in r16["runtimes"][0]["reason"]


def test_onnx_model_with_static_batch(tmp_path, cache):
    from mfparse.bench.examples import simplenet

    static = tmp_path / "static.onnx"
    with warnings.catch_warnings():  # the legacy exporter warns that it is deprecated
        warnings.simplefilter("ignore")
        torch.onnx.export(simplenet(), (torch.randn(2, 10),), str(static), dynamo=False,
                          input_names=["x"], output_names=["y"])
    report = run(str(static), runtimes=["onnxruntime"], threads=1, cache_dir=cache, **QUICK)
    assert report["batch"] == [2] and report["inputs"] == [{"name": "x", "shape": [2, 10], "dtype": "float32"}]
    check_measured(report["runtimes"][0], 2)
    with pytest.raises(BenchError, match="fixed batch dimension of 2; --batch 1,8 needs"):
        run(str(static), batches=[1, 2, 8], runtimes=["onnxruntime"], cache_dir=cache, **QUICK)
    with pytest.raises(BenchError, match="does not fit ONNX input 'x'"):
        run(str(static), input_shapes=["x:2x11"], runtimes=["onnxruntime"], cache_dir=cache, **QUICK)


def test_file_callable_multi_input(tmp_path, cache):
    src = tmp_path / "twoin.py"
    src.write_text(
        "import torch\n"
        "class Two(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.a = torch.nn.Linear(4, 3)\n"
        "        self.b = torch.nn.Linear(6, 3)\n"
        "    def forward(self, x, y):\n"
        "        return self.a(x) * self.b(y), self.a(x).sum(1)\n"
        "def make():\n"
        "    return Two()\n")
    report = run(f"{src}:make", input_shapes=["x:1x4", "y:1x6"], batches=[1, 3],
                 runtimes=["torch", "onnxruntime"], threads=1, cache_dir=cache, **QUICK)
    assert [i["name"] for i in report["inputs"]] == ["x", "y"]
    for r in report["runtimes"]:
        check_measured(r, r["batch"])


def _save_cnn(path, seed=3, wrap=None, fmt="torch"):
    from mfparse.bench.examples import CNN

    torch.manual_seed(seed)
    sd = CNN().state_dict()
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in sd.items()}, str(path))
    else:
        torch.save({wrap: sd, "epoch": 3} if wrap else sd, str(path))
    return sd


def test_weights_through_mfparse(tmp_path, cache):
    for name, kw in (("sd.pth", {}), ("ckpt.pth", {"wrap": "model_state_dict"}),
                     ("w.safetensors", {"fmt": "safetensors"})):
        path = tmp_path / name
        sd = _save_cnn(path, **kw)
        m = load_model("mfparse.bench.examples:cnn", str(path))
        got = m.module.state_dict()
        for k, v in sd.items():
            want = v.to(torch.bfloat16).to(v.dtype) if kw.get("fmt") == "safetensors" and v.is_floating_point() else v
            assert torch.equal(got[k], want), (name, k)
        assert m.weights["tensors"] == len(sd)
        assert m.weights["prefix"] == ("model_state_dict." if kw.get("wrap") else "")
    # through the command: the bench runs the loaded weights
    report = run("mfparse.bench.examples:cnn", weights=str(tmp_path / "sd.pth"), runtimes=["onnxruntime"],
                 threads=1, cache_dir=cache, **QUICK)
    assert report["model_info"]["weights"]["format"] == "torch-zip"
    check_measured(report["runtimes"][0], 1)


def test_weights_mismatch_is_clear(tmp_path, cache, capsys):
    from mfparse.bench.examples import SimpleNet

    path = tmp_path / "simplenet.pth"
    torch.save(SimpleNet().state_dict(), str(path))
    rc = main(["bench", "mfparse.bench.examples:cnn", "--weights", str(path), "--cache-dir", str(cache), "-q"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "are not in the file" in err and "conv1.weight" in err and "fc1.weight" in err
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    rc = main(["bench", "mfparse.bench.examples:cnn", "--weights", str(bad), "--cache-dir", str(cache), "-q"])
    assert rc == 2 and "--weights" in capsys.readouterr().err


def test_broken_model_clear_error(tmp_path, cache, capsys):
    args = ["--cache-dir", str(cache), "-q", "--iterations", "2"]
    # the CNN's Linear wants 128x8x8 features: a 32x32 input cannot run
    rc = main(["bench", "mfparse.bench.examples:cnn", "--input-shape", "1x3x32x32", *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert "the model fails under torch fp32 on inputs input: float32[1, 3, 32, 32]" in err
    assert "mat1 and mat2" in err
    rc = main(["bench", "no_such_module_xyz:make", *args])
    assert rc == 2 and "cannot import no_such_module_xyz" in capsys.readouterr().err
    rc = main(["bench", "mfparse.bench.examples:nothing_here", *args])
    assert rc == 2 and "has no attribute 'nothing_here'" in capsys.readouterr().err
    sd = tmp_path / "weights.pth"
    torch.save({"w": torch.zeros(2)}, str(sd))
    rc = main(["bench", str(sd), *args])
    err = capsys.readouterr().err
    assert rc == 2 and "is a torch-zip file of weights" in err and f"--weights {sd}" in err
    junk = tmp_path / "model.onnx"
    junk.write_bytes(b"\x08\x07 this is not protobuf \xff\xff\xff")
    rc = main(["bench", str(junk), *args])
    assert rc == 2 and "model.onnx" in capsys.readouterr().err
    rc = main(["bench", "mfparse.bench.examples:cnn", "--runtimes", "torch,jax", *args])
    assert rc == 2 and "unknown jax" in capsys.readouterr().err
    rc = main(["bench", "mfparse.bench.examples:cnn", "--precision", "fp8", *args])
    assert rc == 2 and "unknown fp8" in capsys.readouterr().err


def test_runtime_failure_is_a_row_not_a_crash(cache, monkeypatch):
    import onnxruntime as ort

    def boom(self, *a, **k):
        raise RuntimeError("simulated kernel failure")

    monkeypatch.setattr(ort.InferenceSession, "run", boom)
    report = run("mfparse.bench.examples:simplenet", runtimes=["torch", "onnxruntime"], threads=1,
                 cache_dir=cache, **QUICK)
    t, o = report["runtimes"]
    assert t["available"]
    assert not o["available"] and "simulated kernel failure" in o["reason"]


# ---- int8 hook --------------------------------------------------------------------------------


def test_int8_rows_use_model_level_quantization(cache):
    # mfparse.quantize supplies the hooks: torch dynamic int8, ONNX static QDQ calibrated on the feeds
    report = run("mfparse.bench.examples:simplenet", runtimes=["torch", "onnxruntime"], precisions=["fp32", "int8"],
                 threads=1, cache_dir=cache, **QUICK)
    rows = {(r["name"], r["precision"]): r for r in report["runtimes"]}
    for name in ("torch", "onnxruntime"):
        r = rows[(name, "int8")]
        assert r["available"], r.get("reason")
        check_measured(r, 1, exact=False)
        assert r["cosine"] > 0.99 and r["max_abs_diff"] > 0  # quantized: close, not identical


def test_int8_hook_is_called(cache):
    calls = {}

    def torch_int8(model, example_inputs):
        calls["torch"] = [tuple(t.shape) for t in example_inputs]
        return copy.deepcopy(model)

    def onnx_int8(src, dst, calibration):
        calls["onnx"] = [{k: v.shape for k, v in feeds.items()} for feeds in calibration]
        with open(src, "rb") as f, open(dst, "wb") as g:
            g.write(f.read())

    quant.register("torch", torch_int8)
    quant.register("onnx", onnx_int8)
    try:
        report = run("mfparse.bench.examples:cnn", runtimes=["torch", "onnxruntime"], precisions=["int8"],
                     batches=[2], threads=1, cache_dir=cache, **QUICK)
    finally:
        quant.register("torch", None)
        quant.register("onnx", None)
    assert calls["torch"] == [(2, 3, 8, 8)]
    assert calls["onnx"] and all(c == {"input": (1, 3, 8, 8)} for c in calls["onnx"])
    for r in report["runtimes"]:
        check_measured(r, 2)
    assert report["model_info"]["onnx"]["int8"]["path"].endswith(".int8.onnx")


# ---- report -----------------------------------------------------------------------------------


def test_plot_png(tmp_path, cache):
    pytest.importorskip("matplotlib")
    report = run("mfparse.bench.examples:simplenet", batches=[1, 2], runtimes=["torch", "onnxruntime", "tensorrt"],
                 threads=1, cache_dir=cache, **QUICK)
    from mfparse.bench import plot

    out = tmp_path / "bench.png"
    plot(report, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    write_json(report, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["runtimes"]


def test_table_lists_reasons():
    report = {"model": "m", "inputs": [{"name": "x", "shape": [1, 4], "dtype": "float32"}], "batch": [1, 2],
              "environment": {"cpu": "c", "threads": 1, "gpu": None, "versions": {}}, "reference": "r",
              "runtimes": [
                  {"name": "tensorrt", "label": "tensorrt", "precision": "fp32", "batch": b, "available": False,
                   "reason": "tensorrt is not installed"} for b in (1, 2)]}
    text = render_table(report)
    assert "tensorrt fp32 (batch 1,2): tensorrt is not installed" in text


# ---- measurement units ------------------------------------------------------------------------


def test_latency_stats():
    s = latency_stats([float(i) for i in range(1, 101)])
    assert s["min"] == 1 and s["max"] == 100 and s["mean"] == 50.5
    assert s["p50"] == pytest.approx(50.5) and s["p90"] == pytest.approx(90.1)
    assert s["p99"] == pytest.approx(99.01)
    assert s["stdev"] == pytest.approx(np.std(np.arange(1, 101), ddof=1))
    assert latency_stats([2.0])["stdev"] == 0.0


def test_accuracy_metrics():
    a = [np.array([1.0, 2.0, 3.0], np.float32), np.array([[0.5]], np.float32)]
    assert accuracy(a, a) == {"max_abs_diff": 0.0, "mean_abs_diff": 0.0, "cosine": pytest.approx(1.0)}
    b = [np.array([1.0, 2.0, 3.5], np.float32), np.array([[0.5]], np.float32)]
    r = accuracy(b, a)
    assert r["max_abs_diff"] == pytest.approx(0.5) and r["mean_abs_diff"] == pytest.approx(0.125)
    assert 0.99 < r["cosine"] < 1
    assert accuracy([-a[0]], [a[0]])["cosine"] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="shape"):
        accuracy([np.zeros(3)], [np.zeros(4)])


def test_inputs_seeded(seed):
    specs = [InputSpec("x", (1, 3, 4)), InputSpec("ids", (1, 5), "int64")]
    a = make_inputs(specs, 2, seed)
    b = make_inputs(specs, 2, seed)
    c = make_inputs(specs, 2, seed + 1)
    assert a[0].shape == (2, 3, 4) and a[0].dtype == np.float32 and a[1].dtype == np.int64
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_run_loop_excludes_first_run_and_warmup():
    log = []
    t = {"now": 0}

    class Clock(HostClock):
        def mark(self):
            t["now"] += 1_000_000  # 1 ms between marks
            return t["now"]

    sess = Session(compute=lambda: log.append("c"), outputs=lambda: [], clock=Clock(),
                   h2d=lambda: log.append("h"), d2h=lambda: log.append("d"))
    res = run_loop(sess, warmup=3, iterations=7, duration=None)
    assert log == ["h", "c", "d"] * 11  # first run + 3 warm-up + 7 timed
    assert len(res.compute_ms) == 7 and len(res.warmup_ms) == 3
    assert len(res.h2d_ms) == 7 and len(res.d2h_ms) == 7
    assert res.compute_ms == [1.0] * 7 and res.h2d_ms == [1.0] * 7
    res = run_loop(Session(compute=lambda: None, outputs=lambda: []), warmup=0, iterations=None,
                   duration=1e-9, min_iterations=3)
    assert len(res.compute_ms) == 3 and res.h2d_ms == [] and res.warmup_ms == []


def test_parse_input_shape():
    assert parse_input_shape("1x3x224x224") == (None, (1, 3, 224, 224), None)
    assert parse_input_shape("input:8x10") == ("input", (8, 10), None)
    assert parse_input_shape("ids:1x128:int64") == ("ids", (1, 128), "int64")
    assert parse_input_shape("4x4:float16") == (None, (4, 4), "float16")
    for bad in ("", "x", "1x0", "a:b:1x2", "1x2:float99", ":1x2", "1x2x"):
        with pytest.raises(BenchError):
            parse_input_shape(bad)


def test_import_is_light():
    code = ("import sys, mfparse, mfparse.cli, mfparse.bench\n"
            "mfparse.cli.build_parser()\n"
            "heavy = [m for m in ('torch', 'onnxruntime', 'tensorrt', 'onnx', 'matplotlib') if m in sys.modules]\n"
            "print(heavy)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": ROOT})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_help_mentions_bench(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    out = capsys.readouterr().out
    assert "--input-shape" in out and "--runtimes" in out and "module:callable" in out


# ---- the example models -----------------------------------------------------------------------


@pytest.mark.parametrize("spec,shape", [("mfparse.bench.examples:simple_conv", "1x3x32x32"),
                                        ("mfparse.bench.examples:complexnet", None)])
def test_tutorial_conv_models(spec, shape, cache):
    report = run(spec, input_shapes=[shape] if shape else (), runtimes=["torch", "onnxruntime"], threads=1,
                 cache_dir=cache, iterations=2, warmup=0)
    for r in report["runtimes"]:
        check_measured(r, 1)


def test_resnet50_is_resnet50_sized():
    from mfparse.bench.examples import resnet50

    m = resnet50()
    n = sum(p.numel() for p in m.parameters())
    assert n == 25_557_032  # torchvision's resnet50 has the same count
    assert m.example_input_shape == (1, 3, 224, 224)
    assert {"layer4.2.conv3.weight", "layer1.0.downsample.1.running_var", "fc.bias"} <= set(m.state_dict())
    with torch.inference_mode():
        assert m(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)


def test_runtime_tokens(tmp_path):
    from mfparse.bench.base import Settings
    from mfparse.bench.core import resolve_runners
    from mfparse.bench.measure import InputSpec as Spec
    from mfparse.bench.runners import OrtRunner

    labels = [r.label for r in resolve_runners(["torch", "onnxruntime", "tensorrt"])]
    assert labels[0] == "torch" and labels[1] == "onnxruntime" and labels[-1] == "tensorrt"
    assert [r.label for r in resolve_runners(["all"])] == [
        "torch", "torch-cuda", "onnxruntime", "onnxruntime-cuda", "onnxruntime-trt", "tensorrt"]
    assert [r.name for r in resolve_runners(["all"])] == [
        "torch", "torch", "onnxruntime", "onnxruntime", "onnxruntime", "tensorrt"]
    with pytest.raises(BenchError, match="known: torch"):
        resolve_runners(["tvm"])
    # ORT's TensorRT EP: fp16 through its own flag, the profile pinned to the benchmarked shapes
    ctx = type("Ctx", (), {})()
    ctx.model = type("M", (), {"inputs": [Spec("x", (1, 4)), Spec("y", (1, 6))]})()
    ctx.settings = Settings(threads=1, cache_dir=tmp_path)
    name, opts = OrtRunner("trt")._provider_entry(ctx, "fp16", [np.zeros((8, 4)), np.zeros((8, 6))])
    assert name == "TensorrtExecutionProvider"
    assert opts["trt_fp16_enable"] is True and opts["trt_int8_enable"] is False
    assert opts["trt_profile_min_shapes"] == opts["trt_profile_max_shapes"] == "x:8x4,y:8x6"
    assert opts["trt_engine_cache_enable"] and opts["trt_engine_cache_path"] == str(tmp_path / "ort-trt")
