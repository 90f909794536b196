"""Polyglots and damaged wrappers (issue 16, class 8): one file that two loaders read as two
formats, and formats followed by bytes they do not account for. Benign files come from the
real writers (safetensors, gguf, numpy, onnx, zipfile) and stay safe; hostile ones are the same
files with bytes appended or prepended. Nothing is ever unpickled.
"""

from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import pytest
import torch

from pickle_asm import call_pickle, zip_bytes
from scan_helpers import assert_unsafe, scan

PAYLOAD = call_pickle("os", "system", "touch /tmp/never")
BENIGN = pickle.dumps({"w": [1.0, 2.0]}, protocol=2)


def safetensors_bytes() -> bytes:
    from safetensors.torch import save

    return save({"w": torch.arange(6, dtype=torch.float32), "b": torch.ones(2, dtype=torch.float16)})


def gguf_bytes(tmp_path) -> bytes:
    gguf = pytest.importorskip("gguf")
    w = gguf.GGUFWriter(str(tmp_path / "m.gguf"), "llama")
    w.add_tensor("a", np.ones(5, np.float32))
    w.add_tensor("b", np.arange(3, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return (tmp_path / "m.gguf").read_bytes()


def npy_bytes() -> bytes:
    b = io.BytesIO()
    np.save(b, np.arange(12, dtype="<f4").reshape(3, 4))
    return b.getvalue()


def test_benign_files_from_the_writers_are_safe(tmp_path):
    for data in (safetensors_bytes(), gguf_bytes(tmp_path), npy_bytes()):
        r = scan(data)
        assert r.verdict == "safe", str(r)
        assert not r.notes or not any("padding" in n for n in r.notes), r.notes


@pytest.mark.parametrize("fmt", ["safetensors", "gguf", "npy"])
def test_a_pickle_appended_after_the_data_is_a_finding_and_scanned(fmt, tmp_path):
    base = {"safetensors": safetensors_bytes, "gguf": lambda: gguf_bytes(tmp_path), "npy": npy_bytes}[fmt]()
    data = base + PAYLOAD
    if fmt == "safetensors":  # the safetensors loader refuses bytes it does not cover...
        from safetensors.torch import load

        with pytest.raises(Exception, match="not fully covered"):
            load(data)
    if fmt == "npy":  # ...numpy reads the array and ignores them
        assert np.load(io.BytesIO(data)).shape == (3, 4)
    r = scan(data)
    f = assert_unsafe(r, "suspicious", kind="polyglot", why=f"the {fmt} data ends at byte {len(base)}")
    assert f.offset == len(base)
    g = assert_unsafe(r, glob="os.system")
    assert g.member == f"<after the {fmt} data>" and g.offset == len(base) + 2


@pytest.mark.parametrize("fmt", ["safetensors", "npy"])
def test_formats_inside_an_archive_are_checked_for_trailing_bytes_too(fmt):
    base = safetensors_bytes() if fmt == "safetensors" else npy_bytes()
    z = zip_bytes({f"m.{fmt}": base + PAYLOAD})
    r = scan(z)
    assert_unsafe(r, "suspicious", kind="polyglot")
    assert_unsafe(r, glob="os.system", member=f"m.{fmt}!<after the {fmt} data>")


def test_zero_padding_after_the_data_is_not_a_finding():
    r = scan(npy_bytes() + bytes(8192))
    assert r.verdict == "safe", str(r)
    assert any("zero bytes of padding" in n for n in r.notes)


def test_a_pickle_with_a_zip_after_it():
    """pickle.load / torch.load (not a zip by its first bytes) run the pickle; zipfile and keras
    read the archive from its end record."""
    z = zip_bytes({"archive/data.pkl": BENIGN, "archive/version": b"3\n"})
    data = PAYLOAD + z
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.read("archive/data.pkl") == BENIGN
    r = scan(data)
    f = assert_unsafe(r, "suspicious", kind="polyglot")
    assert "a pickle (pickle.load" in f.why and "zip archive" in f.why
    assert_unsafe(r, glob="os.system")
    # a benign pickle in front of a benign zip is still two files in one: a finding
    r = scan(BENIGN + z)
    assert_unsafe(r, "suspicious", kind="polyglot")


def onnx_model_bytes(doc_first: bytes = b"", location=None) -> bytes:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    init = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
    if location is not None:
        init.ClearField("float_data")
        init.data_location = TensorProto.EXTERNAL
        for k, v in (("location", location), ("offset", "0"), ("length", "8")):
            e = init.external_data.add()
            e.key, e.value = k, v
    node = helper.make_node("Add", ["x", "w"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], [init])
    model = helper.make_model(graph)
    body = model.SerializeToString()
    if doc_first:  # field 6 (doc_string) first: tag 0x32 is pickle's DUP opcode
        body = b"\x32" + bytes([len(doc_first)]) + doc_first + body
    return body


def test_an_onnx_model_whose_first_byte_is_a_pickle_opcode_is_judged_as_onnx(tmp_path):
    from mfparse.scan.pickles import OPCODES

    onnx = pytest.importorskip("onnx")
    data = onnx_model_bytes(b"a model")
    assert data[0] in OPCODES
    assert onnx.load_from_string(data).doc_string == "a model"
    p = tmp_path / "model.onnx"
    p.write_bytes(data)
    r = scan(p)
    assert r.verdict == "safe", str(r)
    assert any("ONNX model" in n for n in r.notes), r.notes
    # ...so that what makes an ONNX model dangerous is seen behind such a first byte
    p.write_bytes(onnx_model_bytes(b"a model", location="../../etc/passwd"))
    assert_unsafe(scan(p), kind="path")
