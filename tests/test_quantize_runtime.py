"""Model-level quantization through onnxruntime and torch: the comparison rows that
`mfparse bench` shows are present, sane and honest (same inputs, fixed threads)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from mfparse import runtime_quant as RQ  # noqa: E402


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(128, 256)
        self.fc2 = torch.nn.Linear(256, 10)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class Recurrent(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(16, 32, batch_first=True)
        self.head = torch.nn.Linear(32, 4)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


@pytest.fixture(scope="module")
def mlp_rows(tmp_path_factory):
    torch.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((4, 128)).astype(np.float32)
    rows = RQ.compare_quantization(MLP().eval(), {"x": x}, workdir=tmp_path_factory.mktemp("rq"),
                                   methods=("minmax", "entropy", "percentile"), warmup=2, iterations=5, threads=1)
    return rows


def test_rows_for_every_variant(mlp_rows):
    got = [(r["runtime"], r["method"]) for r in mlp_rows]
    assert got == [("onnxruntime", "fp32"), ("onnxruntime", "dynamic"), ("onnxruntime", "static-qdq-minmax"),
                   ("onnxruntime", "static-qdq-entropy"), ("onnxruntime", "static-qdq-percentile"),
                   ("torch", "fp32"), ("torch", "dynamic")]
    json.dumps(mlp_rows)


def test_rows_are_sane(mlp_rows):
    for r in mlp_rows:
        assert r["available"], r
        assert r["threads"] == 1 and r["iterations"] == 5
        lat = r["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["max"] and lat["p50"] <= lat["p99"]
        assert r["size_bytes"] > 0
        if r["precision"] == "fp32":
            assert r["max_abs_diff"] == 0 and r["speedup"] == 1.0
        else:
            assert r["cosine"] > 0.99 and 0 < r["max_abs_diff"] < 0.1
    fp32 = {r["runtime"]: r["size_bytes"] for r in mlp_rows if r["precision"] == "fp32"}
    for r in mlp_rows:
        if r["precision"] == "int8":
            assert r["size_bytes"] < 0.5 * fp32[r["runtime"]], r["method"]
    assert "speed-up" in RQ.table(mlp_rows)


def test_static_calibration_from_npz(tmp_path):
    torch.manual_seed(0)
    x = np.random.default_rng(1).standard_normal((2, 128)).astype(np.float32)
    onnx_path = RQ.export_onnx(MLP().eval(), {"x": x}, tmp_path / "m.onnx")
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(2).standard_normal((8, 2, 128)).astype(np.float32))
    out = RQ.quantize_onnx(onnx_path, tmp_path / "q.onnx", "static", calibration=tmp_path / "calib.npz",
                           method="percentile")
    sess = RQ.ort_session(out)
    y = sess.run(None, {"x": x})[0]
    ref = RQ.ort_session(onnx_path).run(None, {"x": x})[0]
    assert RQ.output_error(ref, y)["cosine"] > 0.99
    np.savez(tmp_path / "bad.npz", y=np.zeros((2, 2, 128), np.float32))
    with pytest.raises(ValueError, match="lacks input"):
        RQ.quantize_onnx(onnx_path, tmp_path / "q2.onnx", "static", calibration=tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="calibration method"):
        RQ.quantize_onnx(onnx_path, tmp_path / "q3.onnx", "static", example_inputs={"x": x}, method="median")


def test_onnx_model_path_and_lstm(tmp_path):
    torch.manual_seed(0)
    x = np.random.default_rng(3).standard_normal((2, 5, 16)).astype(np.float32)
    onnx_path = RQ.export_onnx(Recurrent().eval(), {"x": x}, tmp_path / "r.onnx")
    rows = RQ.compare_quantization(onnx_path, {"x": x}, workdir=tmp_path / "w", onnx_modes=("dynamic",),
                                   warmup=1, iterations=3)
    by = {(r["runtime"], r["method"]): r for r in rows}
    assert by[("onnxruntime", "dynamic")]["available"]
    assert by[("torch", "dynamic")] == {"runtime": "torch", "precision": "int8", "method": "dynamic",
                                        "available": False,
                                        "reason": "the model is an ONNX file, not a torch module"}
    rows = RQ.compare_quantization(Recurrent().eval(), x, workdir=tmp_path / "t", runtimes=("torch",),
                                   warmup=1, iterations=3)
    assert [r["method"] for r in rows] == ["fp32", "dynamic"] and rows[1]["cosine"] > 0.99
    assert rows[1]["size_bytes"] < rows[0]["size_bytes"]


def test_threads_are_restored():
    before = torch.get_num_threads()
    with RQ.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_helpers():
    assert RQ.output_error(np.ones(4), np.ones(4)) == {"max_abs_diff": 0.0, "mean_abs_diff": 0.0, "cosine": 1.0}
    s = RQ.latency_stats([0.001, 0.002, 0.003])
    assert s["p50"] == pytest.approx(2.0) and s["min"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="differ in size"):
        RQ.output_error(np.ones(3), np.ones(4))
