"""The TensorRT runner against a stand-in of the TensorRT 10 Python API (tests/bench_trt_standin.py).
The tests assert outcomes, not the order of calls: the rows, the engine built for the benchmarked
shapes and precision, a device buffer of the right size per I/O tensor (freed after the row),
the copies, the engine and timing caches written and reused, and the reasons given when
TensorRT or a GPU is missing. The stand-in executes the engine with onnxruntime on host memory,
so accuracy is checked too. No GPU or TensorRT is needed.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from bench_trt_standin import HostBackend, Recording, StandIn  # noqa: E402

from mfparse.bench import Unavailable, quant, run  # noqa: E402
from mfparse.bench.trt import TensorRTRunner  # noqa: E402

QUICK = dict(iterations=3, warmup=1, threads=1)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Nothing a test runs may touch the user's cache (~/.cache/mfparse)."""
    monkeypatch.setenv("MFPARSE_CACHE", str(tmp_path / "default-cache"))


def trt_runner(st, backend=HostBackend):
    return TensorRTRunner(trt=st.module, backend_factory=backend)


def bench(st, cache, model="mfparse.bench.examples:cnn", **kw):
    args = {**QUICK, **kw}
    return run(model, cache_dir=cache, runners=[trt_runner(st, args.pop("backend", HostBackend))], **args)


def test_rows_measured_with_copies_apart(tmp_path):
    st = StandIn()
    opened = HostBackend.opened
    closed = HostBackend.closed
    report = bench(st, tmp_path, batches=[1, 3], precisions=["fp32", "fp16"])
    rows = report["runtimes"]
    assert [(r["precision"], r["batch"]) for r in rows] == [("fp32", 1), ("fp32", 3), ("fp16", 1), ("fp16", 3)]
    for r in rows:
        assert r["available"], r.get("reason")
        assert r["name"] == "tensorrt" and r["device"] == "cuda"
        assert r["timer"] == "host-standin" and r["device_backend"] == "host-standin"
        assert r["iterations"] == 3 and r["latency_ms"]["p50"] > 0 and r["throughput"] > 0
        assert r["build_ms"] > 0 and r["first_run_ms"] > 0 and r["engine_cached"] is False
        # copies are timed apart from execute_async_v3
        assert r["copy_ms"]["h2d"]["p50"] > 0 and r["copy_ms"]["d2h"]["p50"] > 0
        assert r["device_memory_mb"] > 0
        assert r["threads"] is None
    fp32 = [r for r in rows if r["precision"] == "fp32"]
    fp16 = [r for r in rows if r["precision"] == "fp16"]
    assert all(r["max_abs_diff"] <= 1e-4 and r["cosine"] == pytest.approx(1, abs=1e-6) for r in fp32)
    # the stand-in rounds fp16 engines' outputs through float16: a visible but small error
    assert all(0 < r["max_abs_diff"] < 1e-2 and r["cosine"] > 0.9999 for r in fp16)
    assert st.builds == 4
    # every backend opened (availability check included) was closed again
    assert HostBackend.opened - opened == HostBackend.closed - closed


def test_engine_and_buffers_for_the_benchmarked_shape(tmp_path):
    st = StandIn()
    backends = Recording()
    r = bench(st, tmp_path, batches=[5], precisions=["fp16"], backend=backends)["runtimes"][0]
    assert r["available"], r.get("reason")
    # one engine, fp16, its profile pinned to the benchmarked shape (min = opt = max)
    assert st.built == [{"profile": {"input": ((5, 3, 8, 8),) * 3}, "flags": ["FP16"], "network_flags": 0}]
    # one device buffer per I/O tensor, sized for that shape (CNN: 5x3x8x8 in, 5x10 out, float32)
    (row_backend,) = backends.rows()
    sizes = {name: row_backend.sizes[ptr] for name, ptr in st.bound.items()}
    assert sizes == {"input": 5 * 3 * 8 * 8 * 4, "output": 5 * 10 * 4}
    # first run + 1 warm-up + 3 timed, each with its copies, all on the backend's stream
    assert st.executions == 5 and st.streams == {0x5EED}
    assert row_backend.copies == {"h2d": 5, "d2h": 5}
    assert r["iterations"] == 3 and r["warmup_ms"]["iterations"] == 1
    # every backend opened (the availability check's too) is closed, its buffers freed
    assert backends.made and all(b.is_closed and b.live() == 0 for b in backends.made)
    assert r["device_memory_mb"] > 0 and r["engine_cached"] is False


def test_engine_and_timing_cache(tmp_path):
    st = StandIn()
    first = bench(st, tmp_path, batches=[2])
    assert st.builds == 1 and first["runtimes"][0]["engine_cached"] is False
    engine = first["runtimes"][0]["engine_path"]
    timing = list((tmp_path / "tensorrt").glob("timing-*.cache"))
    assert len(timing) == 1 and timing[0].read_bytes() == b"tactics-1;"
    # same ONNX, precision and shape: the engine is deserialized from the cache, not built
    st2 = StandIn()
    second = bench(st2, tmp_path, batches=[2])
    r = second["runtimes"][0]
    assert st2.builds == 0 and st2.built == [] and st2.executions == 5
    assert r["available"] and r["engine_cached"] is True and r["engine_path"] == engine
    # another shape is another engine; its build starts from the saved timing cache, and the
    # cache written back holds what both builds added
    st3 = StandIn()
    third = bench(st3, tmp_path, batches=[4])
    assert st3.builds == 1 and third["runtimes"][0]["engine_path"] != engine
    assert st3.built[0]["profile"] == {"input": ((4, 3, 8, 8),) * 3}
    assert st3.timing_cache_inputs == [b"tactics-1;"]
    assert timing[0].read_bytes() == b"tactics-1;tactics-1;"
    # another precision is another engine as well
    st4 = StandIn()
    bench(st4, tmp_path, batches=[2], precisions=["fp16"])
    assert st4.builds == 1
    assert len(list((tmp_path / "tensorrt").glob("*.engine"))) == 3


def test_corrupt_cached_engine_is_reported(tmp_path):
    st = StandIn()
    engine = bench(st, tmp_path)["runtimes"][0]["engine_path"]
    with open(engine, "wb") as f:
        f.write(b"not an engine")
    r = bench(StandIn(), tmp_path)["runtimes"][0]
    assert not r["available"] and "could not deserialize" in r["reason"]


def test_multi_input_and_output(tmp_path):
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
    st = StandIn()
    backends = Recording()
    report = bench(st, tmp_path / "cache", model=f"{src}:make", input_shapes=["x:1x4", "y:1x6"], batches=[3],
                   backend=backends)
    r = report["runtimes"][0]
    assert r["available"], r.get("reason")
    assert r["max_abs_diff"] <= 1e-5  # both outputs come back, in order
    assert st.built[0]["profile"] == {"x": ((3, 4),) * 3, "y": ((3, 6),) * 3}
    (row_backend,) = backends.rows()
    sizes = {name: row_backend.sizes[ptr] for name, ptr in st.bound.items()}
    assert sizes == {"x": 3 * 4 * 4, "y": 3 * 6 * 4, "output_0": 3 * 3 * 4, "output_1": 3 * 4}
    assert row_backend.is_closed and row_backend.live() == 0


def test_parse_failure_gives_parser_errors(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff\xff\xff not protobuf")
    runner = trt_runner(StandIn())
    with pytest.raises(Unavailable, match="TensorRT cannot parse the ONNX file: failed to parse the ONNX protobuf"):
        runner.build(bad, "fp32", {"input": (1, 3)}, tmp_path)


def test_old_tensorrt_is_unavailable(tmp_path):
    r = bench(StandIn(version="8.6.1"), tmp_path)["runtimes"][0]
    assert not r["available"] and "needs TensorRT 10+" in r["reason"] and "8.6.1" in r["reason"]


def test_no_gpu_is_unavailable(tmp_path):
    def no_gpu():
        raise Unavailable("torch 2.13.0+cpu sees no CUDA device; cuda-python is not installed")

    r = bench(StandIn(), tmp_path, backend=no_gpu)["runtimes"][0]
    assert not r["available"] and "sees no CUDA device" in r["reason"]


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed")
def test_real_import_reports_missing_tensorrt(tmp_path):
    r = run("mfparse.bench.examples:simplenet", runtimes=["tensorrt"], cache_dir=tmp_path, **QUICK)["runtimes"][0]
    assert not r["available"] and r["reason"].startswith("tensorrt is not installed")


def test_int8_builds_the_quantized_file_with_int8_flag(tmp_path):
    st = StandIn()
    r = bench(st, tmp_path, precisions=["int8"])["runtimes"][0]
    if importlib.util.find_spec("mfparse.quantize") is None:
        assert not r["available"] and "convert/quantize" in r["reason"]
    seen = {}

    def onnx_int8(src, dst, calibration):
        seen["src"] = src
        with open(src, "rb") as f, open(dst, "wb") as g:
            g.write(f.read())

    quant.register("onnx", onnx_int8)
    try:
        st = StandIn()
        r = bench(st, tmp_path, precisions=["int8"])["runtimes"][0]
    finally:
        quant.register("onnx", None)
    assert r["available"], r.get("reason")
    assert seen["src"].endswith(".fp32.onnx") and r["onnx"].endswith(".int8.onnx")
    assert [b["flags"] for b in st.built] == [["INT8"]]
    # a registered function that does not take reduce_range: the setting is recorded as unknown
    assert r["quantization"]["reduce_range"] is None and r["quantization"]["calibration"]["method"] is None
    assert r["quantization"]["calibration"]["feeds"] == 8


def test_host_backend_roundtrip():
    b = HostBackend()
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    buf = b.alloc(a.nbytes)
    b.h2d(buf, a)
    out = b.host((3, 4), np.float32)
    b.d2h(out, buf)
    np.testing.assert_array_equal(out, a)
    b.close()


def test_auto_takes_tensorrt_where_a_gpu_and_tensorrt_are(tmp_path):
    from mfparse.bench.core import auto_runners
    from mfparse.bench.models import load_model

    m = load_model("mfparse.bench.examples:simplenet")
    runners, skipped = auto_runners(m, trt=StandIn().module, trt_backend=HostBackend)
    labels = [r.label for r in runners]
    assert labels[0] == "torch" and "onnxruntime" in labels and labels[-1] == "tensorrt"
    assert not {s["runtime"] for s in skipped} & set(labels)
    # the same machine without TensorRT: not a row, a skipped runtime with the reason
    if importlib.util.find_spec("tensorrt") is None:
        runners, skipped = auto_runners(m, trt_backend=HostBackend)
        assert "tensorrt" not in [r.label for r in runners]
        assert {s["runtime"]: s["reason"] for s in skipped}["tensorrt"].startswith("tensorrt is not installed")
