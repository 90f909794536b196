"""The TensorRT runner against a stand-in of the TensorRT 10 Python API (tests/bench_trt_standin.py):
its call sequence, shape handling, device buffers and copies, engine and timing caches, and the
reasons it gives when TensorRT or a GPU is missing. The stand-in executes the engine with
onnxruntime on host memory, so accuracy is checked too. No GPU or TensorRT is needed.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from bench_trt_standin import HostBackend, StandIn  # noqa: E402

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


def test_call_sequence_and_shapes(tmp_path):
    st = StandIn()
    bench(st, tmp_path, batches=[5], precisions=["fp16"])
    names = st.names()
    build = ["Builder", "builder.create_network", "OnnxParser", "parser.parse_from_file",
             "builder.create_builder_config", "config.set_flag", "config.create_timing_cache",
             "config.set_timing_cache", "builder.create_optimization_profile", "network.get_input",
             "profile.set_shape", "config.add_optimization_profile", "builder.build_serialized_network"]
    assert names[: len(build)] == build
    runtime = ["Runtime", "runtime.deserialize_cuda_engine", "engine.create_execution_context",
               "context.set_input_shape", "context.get_tensor_shape", "context.set_tensor_address",
               "context.set_tensor_address"]
    assert names[len(build): len(build) + len(runtime)] == runtime
    rest = names[len(build) + len(runtime):]
    assert rest == ["context.execute_async_v3"] * (1 + 1 + 3)  # first run, warm-up, timed
    calls = {c[0]: c[1:] for c in st.calls}
    assert calls["builder.create_network"] == (0,)
    assert calls["config.set_flag"] == ("FP16",)
    assert calls["config.set_timing_cache"] == (False,)
    # the profile pins the benchmarked shape; the context gets the same shape
    assert calls["profile.set_shape"] == ("input", (5, 3, 8, 8), (5, 3, 8, 8), (5, 3, 8, 8))
    assert calls["context.set_input_shape"] == ("input", (5, 3, 8, 8))
    assert [c[1] for c in st.calls if c[0] == "context.set_tensor_address"] == ["input", "output"]
    assert {c[1] for c in st.calls if c[0] == "context.execute_async_v3"} == {0x5EED}


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
    assert st2.builds == 0 and r["available"] and r["engine_cached"] is True and r["engine_path"] == engine
    assert "Builder" not in st2.names()
    # another shape is another engine; its build starts from the saved timing cache
    st3 = StandIn()
    third = bench(st3, tmp_path, batches=[4])
    assert st3.builds == 1 and third["runtimes"][0]["engine_path"] != engine
    assert st3.timing_cache_inputs == [b"tactics-1;"]
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
    report = bench(st, tmp_path / "cache", model=f"{src}:make", input_shapes=["x:1x4", "y:1x6"], batches=[3])
    r = report["runtimes"][0]
    assert r["available"], r.get("reason")
    assert r["max_abs_diff"] <= 1e-5
    shapes = {c[1]: c[2] for c in st.calls if c[0] == "profile.set_shape"}
    assert shapes == {"x": (3, 4), "y": (3, 6)}
    assert [c[1] for c in st.calls if c[0] == "context.set_tensor_address"] == ["x", "y", "output_0", "output_1"]


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
    assert [c[1] for c in st.calls if c[0] == "config.set_flag"] == ["INT8"]


def test_host_backend_roundtrip():
    b = HostBackend()
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    buf = b.alloc(a.nbytes)
    b.h2d(buf, a)
    out = b.host((3, 4), np.float32)
    b.d2h(out, buf)
    np.testing.assert_array_equal(out, a)
    b.close()
