"""Scan checkers backed by the readers: Keras configs in HDF5, TensorFlow ops that run Python or
touch files, ONNX external data that escapes the model's folder."""

from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import mfparse

FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def test_savedmodel_ops_that_run_python_or_write_files():
    r = mfparse.scan(os.path.join(FIX, "tf", "unsafe_sm", "saved_model.pb"))
    assert r.verdict == "unsafe"
    sev = {f.qualname: f.severity for f in r.findings}
    assert sev["EagerPyFunc"] == "dangerous" and sev["WriteFile"] == "dangerous"
    assert sev["ReadFile"] == "suspicious"


def test_plain_savedmodel_and_frozen_graph_are_safe():
    for p in ("module_sm/saved_model.pb", "keras_sm/saved_model.pb", "frozen.pb"):
        r = mfparse.scan(os.path.join(FIX, "tf", p))
        assert r.verdict == "safe", (p, r.findings, r.errors)


def test_keras_h5_config_read_by_the_hdf5_reader():
    r = mfparse.scan(os.path.join(FIX, "keras", "k2_lambda.h5"))
    assert r.verdict == "unsafe" and any(f.qualname == "Lambda" for f in r.findings)
    assert any("was read and checked" in n for n in r.notes)
    assert mfparse.scan(os.path.join(FIX, "keras", "k3_legacy.h5")).verdict == "safe"


def test_unreadable_hdf5_is_never_safe(tmp_path):
    with open(os.path.join(FIX, "keras", "k3_legacy.h5"), "rb") as f:
        data = f.read()
    p = tmp_path / "cut.h5"
    p.write_bytes(data[: len(data) // 3])
    assert mfparse.scan(p).verdict != "safe"


def _model(tmp_path, location):
    t = numpy_helper.from_array(np.zeros(4, np.float32), "w")
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", "16")):
        e = t.external_data.add()
        e.key, e.value = k, v
    g = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "g", [],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], initializer=[t])
    d = tmp_path / "m"
    d.mkdir(exist_ok=True)
    p = d / "m.onnx"
    onnx.save_model(helper.make_model(g), os.fspath(p))
    return p


def test_onnx_external_data_escaping_the_folder(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(b"\0" * 16)
    assert mfparse.scan(_model(tmp_path, "w.bin")).verdict == "safe"
    r = mfparse.scan(_model(tmp_path, "../../etc/passwd"))
    assert r.verdict == "unsafe"
    assert r.findings[0].severity == "dangerous" and "outside the model's folder" in r.findings[0].why
