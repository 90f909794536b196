"""ONNX re-laid with external data: the graph runs the same in onnxruntime, initializers land
aligned in one side file, side files of the source are streamed and checked, and the
weights-only model from a checkpoint loads in onnx and onnxruntime."""

from __future__ import annotations

import os

import numpy as np
import pytest

import mfparse

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from mfparse.convert import convert  # noqa: E402
from mfparse.errors import UnsupportedFormatError  # noqa: E402
from mfparse.writers import onnx as onnx_writer  # noqa: E402
from mfparse.writers.base import WriteError  # noqa: E402


def mlp(folder, external: bool = False, typed: bool = False) -> str:
    """x[2,64] -> MatMul w1[64,128] -> Add b1 -> Relu -> MatMul w2[128,4]; saved by onnx."""
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((64, 128)).astype(np.float32)
    b1 = rng.standard_normal(128).astype(np.float32)
    w2 = rng.standard_normal((128, 4)).astype(np.float32)
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"), numpy_helper.from_array(w2, "w2")]
    if typed:
        inits[0] = helper.make_tensor("w1", TensorProto.FLOAT, w1.shape, w1.reshape(-1).tolist())
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Add", ["h", "b1"], ["a"]),
             helper.make_node("Relu", ["a"], ["r"]), helper.make_node("MatMul", ["r", "w2"], ["y"])]
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], initializer=inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    path = os.path.join(folder, "mlp.onnx")
    if external:
        onnx.save_model(model, path, save_as_external_data=True, location="mlp_weights.bin", size_threshold=0)
    else:
        onnx.save_model(model, path)
    return path


def run(path, x):
    ort = pytest.importorskip("onnxruntime")
    s = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})[0]


@pytest.mark.parametrize("external,typed", [(False, False), (True, False), (False, True)])
def test_relayout_runs_the_same(tmp_path, external, typed):
    src = mlp(tmp_path, external, typed)
    x = np.random.default_rng(1).standard_normal((2, 64)).astype(np.float32)
    r = convert(src, tmp_path / "out.onnx", progress=False)
    assert np.array_equal(run(src, x), run(tmp_path / "out.onnx", x))
    model = onnx.load(os.fspath(tmp_path / "out.onnx"), load_external_data=False)
    loc = {t.name: {e.key: e.value for e in t.external_data} for t in model.graph.initializer}
    assert loc["w1"]["location"] == "out.onnx.data" and loc["w2"]["location"] == "out.onnx.data"
    assert int(loc["w1"]["offset"]) % 64 == 0 and int(loc["w2"]["offset"]) % 64 == 0
    assert loc["b1"] == {}        # 512 bytes: below the threshold, inline
    assert r.tensors == 3
    assert os.path.getsize(tmp_path / "out.onnx.data") == int(loc["w2"]["offset"]) + 128 * 4 * 4


def test_big_initializers_are_page_aligned(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_writer, "PAGE_ALIGN_FROM", 4096)
    src = mlp(tmp_path)
    convert(src, tmp_path / "out.onnx", progress=False)
    model = onnx.load(os.fspath(tmp_path / "out.onnx"), load_external_data=False)
    offs = [int({e.key: e.value for e in t.external_data}["offset"]) for t in model.graph.initializer
            if t.external_data]
    assert offs and all(o % 4096 == 0 for o in offs)


def test_external_location_escaping_the_folder_is_refused(tmp_path):
    inner = tmp_path / "inner"
    inner.mkdir()
    (tmp_path / "secret.bin").write_bytes(b"\0" * 64)
    t = TensorProto()
    t.name, t.data_type = "w", TensorProto.FLOAT
    t.dims.extend([16])
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "../secret.bin"), ("offset", "0"), ("length", "64")):
        e = t.external_data.add()
        e.key, e.value = k, v
    g = helper.make_graph([], "g", [], [helper.make_tensor_value_info("w", TensorProto.FLOAT, [16])], initializer=[t])
    onnx.save_model(helper.make_model(g), os.fspath(inner / "m.onnx"))
    # refused by the ONNX reader (UnsafeContentError) or, reading through the onnx package,
    # by the writer's own check (WriteError)
    with pytest.raises((WriteError, mfparse.UnsafeContentError), match="escapes the model's folder|refused"):
        convert(inner / "m.onnx", inner / "out.onnx", progress=False)
    assert not (inner / "out.onnx").exists() and not (inner / "out.onnx.data").exists()


def test_refuses_to_overwrite_source_side_files(tmp_path):
    src = mlp(tmp_path, external=True)
    with pytest.raises(WriteError, match="input of this conversion"):
        convert(src, src, overwrite=True, progress=False)
    # the data file of the output would be the source's side file
    os.rename(tmp_path / "mlp_weights.bin", tmp_path / "o.onnx.data")
    model = onnx.load(src, load_external_data=False)
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "o.onnx.data"
    onnx.save_model(model, src)
    with pytest.raises(WriteError, match="input of this conversion"):
        convert(src, tmp_path / "o.onnx", overwrite=True, progress=False)


def test_weights_only_model_from_a_checkpoint(tmp_path):
    torch = pytest.importorskip("torch")
    sd = {"fc.weight": torch.randn(300, 10), "fc.bias": torch.randn(10), "steps": torch.tensor(4)}
    torch.save(sd, tmp_path / "w.pt")
    convert(tmp_path / "w.pt", tmp_path / "w.onnx", progress=False)
    onnx.checker.check_model(os.fspath(tmp_path / "w.onnx"))
    model = onnx.load(os.fspath(tmp_path / "w.onnx"))
    got = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for k, v in sd.items():
        assert np.array_equal(got[k], v.numpy()), k
    outs = run_noinput(tmp_path / "w.onnx")
    assert np.array_equal(outs["fc.weight"], sd["fc.weight"].numpy())


def run_noinput(path):
    ort = pytest.importorskip("onnxruntime")
    s = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in s.get_outputs()]
    return dict(zip(names, s.run(None, {})))


def test_not_onnx(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"\xff\xfe garbage \x00" * 10)
    # mfparse reads every source itself (its ONNX reader): garbage is refused as by `mfparse inspect`
    with pytest.raises(UnsupportedFormatError, match="unrecognised file format"):
        convert(tmp_path / "bad.onnx", tmp_path / "out.onnx", progress=False)
    assert not (tmp_path / "out.onnx").exists()
