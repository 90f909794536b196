"""TFLite: differential tests against TensorFlow (expected.json, written by the committed
generator tests/fixtures/tflite/make_fixtures.py) and the `tflite` package on the same bytes,
plus hand-built flatbuffers for the layouts TF only writes for huge models and hostile files."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest

import mfparse
from helpers import check_robust
from mfparse.formats import tflite as tfl

tflite = pytest.importorskip("tflite")
flatbuffers = pytest.importorskip("flatbuffers")

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures", "tflite")
with open(os.path.join(FIX, "expected.json")) as _f:
    EXPECTED = json.load(_f)
MODELS = sorted(EXPECTED)

TF_DTYPES = {"float32": "float32", "int8": "int8", "int32": "int32", "float16": "float16", "bool": "bool",
             "int64": "int64", "uint8": "uint8"}


def path(name):
    return os.path.join(FIX, f"{name}.tflite")


# ---- differential: TensorFlow's interpreter ---------------------------------------------------

@pytest.mark.parametrize("name", MODELS)
def test_tensors_match_tensorflow(name):
    exp = EXPECTED[name]
    with mfparse.open(path(name)) as m:
        assert m.format == "tflite"
        main = [t for t in m.graph.tensors if t["subgraph"] == 0]
        assert len(main) == len(exp["tensors"])
        for got, want in zip(main, exp["tensors"]):
            assert got["index"] == want["index"]
            assert got["name"] == want["name"]
            assert got["shape"] == want["shape"]
            sig = got["shape_signature"] if got["shape_signature"] is not None else got["shape"]
            assert sig == want["shape_signature"], got["name"]
            assert got["dtype"] == want["dtype"], got["name"]
            q = got.get("quantization", {})
            assert q.get("scale", []) == pytest.approx(want["scales"], rel=0, abs=0), got["name"]
            assert q.get("zero_point", []) == want["zero_points"]
            if want["scales"]:
                assert q["quantized_dimension"] == want["quantized_dimension"]


@pytest.mark.parametrize("name", MODELS)
def test_graph_matches_tensorflow(name):
    exp = EXPECTED[name]
    with mfparse.open(path(name)) as m:
        g = m.graph
        assert [t["index"] for t in g.inputs] == exp["inputs"]
        assert [t["index"] for t in g.outputs] == exp["outputs"]
        main_ops = [o for o in g.operators if o["subgraph"] == 0]
        assert [o["op"] for o in main_ops] == [o["op_name"] for o in exp["operators"]]
        assert [o["inputs"] for o in main_ops] == [o["inputs"] for o in exp["operators"]]
        assert [o["outputs"] for o in main_ops] == [o["outputs"] for o in exp["operators"]]
        assert sum(g.op_histogram.values()) == len(g.operators)
        sigs = {s["key"]: s for s in g.signatures}
        assert set(sigs) == set(exp["signatures"])
        for key, s in exp["signatures"].items():
            assert sorted(sigs[key]["inputs"]) == sorted(s["inputs"])
            assert sorted(sigs[key]["outputs"]) == sorted(s["outputs"])
        assert g.to_dict()["op_histogram"] == g.op_histogram


# ---- differential: the tflite package on the same bytes --------------------------------------

def _tflite_model(name):
    with open(path(name), "rb") as f:
        data = f.read()
    return data, tflite.Model.GetRootAsModel(data, 0)


@pytest.mark.parametrize("name", MODELS)
def test_data_matches_tflite_package(name):
    data, model = _tflite_model(name)
    with mfparse.open(path(name)) as m:
        listed = {(t.extras["subgraph"], t.extras["tensor_index"]): t for t in m.tensors()}
        expect_listed = set()
        for si in range(model.SubgraphsLength()):
            sg = model.Subgraphs(si)
            for ti in range(sg.TensorsLength()):
                t = sg.Tensors(ti)
                buf = model.Buffers(t.Buffer())
                if buf.DataLength() == 0:
                    continue
                expect_listed.add((si, ti))
                info = listed[(si, ti)]
                assert info.name.split("/", 1)[-1].split("#")[0] in (t.Name().decode(), f"tensor_{ti}") or si == 0
                assert info.shape == tuple(t.ShapeAsNumpy().tolist()) if t.ShapeLength() else info.shape == ()
                assert info.storage == f"buffer{t.Buffer()}"
                raw = buf.DataAsNumpy().tobytes()
                assert info.nbytes == len(raw)
                if t.Sparsity() is not None:
                    assert "sparsity" in info.extras and info.offset is None
                    with pytest.raises(mfparse.UnsupportedFormatError, match="sparse"):
                        m[info.name]
                    continue
                assert data[info.offset:info.offset + info.nbytes] == raw
                arr = m[info.name]
                assert arr.tobytes() == raw
                assert not arr.flags.writeable
        assert set(listed) == expect_listed
        # operator codes: the real code is the larger of the two fields
        codes = [max(model.OperatorCodes(i).BuiltinCode(), model.OperatorCodes(i).DeprecatedBuiltinCode())
                 for i in range(model.OperatorCodesLength())]
        used = {tfl.BUILTIN_OPS[c] for c in codes}
        assert set(m.graph.op_histogram) <= used


def test_int8_model_quantization():
    with mfparse.open(path("int8")) as m:
        weights = [t for t in m.tensors() if t.dtype == "int8"]
        assert weights and all("quantization" in t.extras for t in weights)
        for t in weights:
            q = t.extras["quantization"]
            assert len(q["scale"]) == len(q["zero_point"]) >= 1
            if len(q["scale"]) > 1:  # per-axis
                assert len(q["scale"]) == t.shape[q["quantized_dimension"]]
        assert m.graph.inputs[0]["dtype"] == "int8" and "quantization" in m.graph.inputs[0]


def test_float16_and_dynamic_models():
    with mfparse.open(path("float16")) as m:
        assert {t.dtype for t in m.tensors()} >= {"float16"}
        assert "DEQUANTIZE" in m.graph.op_histogram
        assert m.metadata["reduced_precision_support"] == "fp16accfp32"
    with mfparse.open(path("dynamic")) as m:
        w = [t for t in m.tensors() if t.dtype == "int8"]
        assert w and all(len(t.extras["quantization"]["scale"]) >= 1 for t in w)


def test_control_flow_subgraphs_and_shared_buffers():
    with mfparse.open(path("control")) as m:
        g = m.graph
        assert len(g.subgraphs) == 5
        assert {"WHILE", "IF"} <= set(g.op_histogram)
        names = m.keys()
        assert len(set(names)) == len(names)
        assert any(n.startswith("subgraph4/") for n in names)
        by_storage = {}
        for t in m.tensors():
            by_storage.setdefault(t.storage, []).append(t)
        shared = [ts for ts in by_storage.values() if len(ts) > 1]
        assert shared and all(len({t.offset for t in ts}) == 1 for ts in shared)
        assert "subgraph4:while_body" in m.tree()


def test_metadata():
    with mfparse.open(path("float")) as m:
        md = m.metadata
        assert md["version"] == 3
        assert md["description"] == "MLIR Converted."
        assert md["min_runtime_version"].count(".") == 2
        assert md["signature_defs"] == ["serving_default"]


def test_inspect_shows_int8_scales():
    from mfparse.inspect import render_text, summarize

    with mfparse.open(path("int8")) as m:
        s = summarize(m)
        text = render_text(s)
        t = next(t for t in m.tensors() if t.name == "functional_1/fc1_1/MatMul")
        assert "Quantization" in text
        assert f"{t.extras['quantization']['scale'][0]:.6g}" in text
        assert any("quantization" in d.get("extras", {}) for d in s["tensors"])


@pytest.mark.parametrize("name", MODELS)
def test_robust(name, seed):
    out = check_robust(path(name), fmt="tflite", seed=seed, flips=200)
    assert "ok" in out


# ---- hand-built flatbuffers -------------------------------------------------------------------

class FB:
    """A tiny FlatBuffers writer over flatbuffers.Builder, slots given as vtable offsets."""

    def __init__(self):
        self.b = flatbuffers.Builder(0)

    def table(self, fields: dict, nslots: int | None = None) -> int:
        b = self.b
        n = nslots if nslots is not None else max([(vo - 4) // 2 + 1 for vo in fields] or [0])
        b.StartObject(n)
        for vo, (kind, v) in sorted(fields.items()):
            s = (vo - 4) // 2
            if kind == "off":
                b.PrependUOffsetTRelativeSlot(s, v, 0)
            elif kind == "u8":
                b.PrependUint8Slot(s, v, 1 if v == 0 else 0)
            elif kind == "i8":
                b.PrependInt8Slot(s, v, 1 if v == 0 else 0)
            elif kind == "i32":
                b.PrependInt32Slot(s, v, 1 if v == 0 else 0)
            elif kind == "u32":
                b.PrependUint32Slot(s, v, 1 if v == 0 else 0)
            elif kind == "u64":
                b.PrependUint64Slot(s, v, 1 if v == 0 else 0)
        return b.EndObject()

    def offsets(self, offs) -> int:
        b = self.b
        b.StartVector(4, len(offs), 4)
        for o in reversed(offs):
            b.PrependUOffsetTRelative(o)
        return b.EndVector()

    def i32s(self, vals) -> int:
        b = self.b
        b.StartVector(4, len(vals), 4)
        for v in reversed(vals):
            b.PrependInt32(v)
        return b.EndVector()

    def f32s(self, vals) -> int:
        b = self.b
        b.StartVector(4, len(vals), 4)
        for v in reversed(vals):
            b.PrependFloat32(v)
        return b.EndVector()

    def i64s(self, vals) -> int:
        b = self.b
        b.StartVector(8, len(vals), 8)
        for v in reversed(vals):
            b.PrependInt64(v)
        return b.EndVector()

    def data(self, raw: bytes) -> int:
        b = self.b
        b.StartVector(1, len(raw), 16)
        for c in reversed(raw):
            b.PrependUint8(c)
        return b.EndVector()

    def string(self, s: str) -> int:
        return self.b.CreateString(s)

    def finish(self, root, ident=b"TFL3") -> bytes:
        self.b.Finish(root, file_identifier=ident)
        return bytes(self.b.Output())


def build_model(tensors, buffers, opcodes=(), ops=(), ident=b"TFL3", external=None):
    """tensors: [(name, type, shape, buffer, quant dict | None)]; buffers: [bytes | None];
    opcodes: [fields dict]; ops: [(opcode_index, inputs, outputs)];
    external: {buffer index: (offset, size)} written as Buffer.offset/size."""
    fb = FB()
    ext = external or {}
    buf_offs = []
    for i, raw in enumerate(buffers):
        fields = {}
        if raw is not None and i not in ext:
            fields[4] = ("off", fb.data(raw))
        if i in ext:
            fields[6] = ("u64", ext[i][0])
            fields[8] = ("u64", ext[i][1])
        buf_offs.append(fb.table(fields, 3))
    t_offs = []
    for name, ttype, shape, buf, quant in tensors:
        fields = {4: ("off", fb.i32s(shape)), 6: ("u8", ttype), 8: ("u32", buf), 10: ("off", fb.string(name))}
        if quant:
            q = {8: ("off", fb.f32s(quant["scale"])), 10: ("off", fb.i64s(quant["zero_point"]))}
            if quant.get("dim"):
                q[16] = ("i32", quant["dim"])
            fields[12] = ("off", fb.table(q))
        t_offs.append(fb.table(fields))
    o_offs = [fb.table({4: ("u32", oc), 6: ("off", fb.i32s(list(i))), 8: ("off", fb.i32s(list(o)))})
              for oc, i, o in ops]
    sg = fb.table({4: ("off", fb.offsets(t_offs)), 6: ("off", fb.i32s([0] if tensors else [])),
                   8: ("off", fb.i32s([len(tensors) - 1] if tensors else [])), 10: ("off", fb.offsets(o_offs)),
                   12: ("off", fb.string("main"))})
    oc_offs = [fb.table(f) for f in opcodes]
    model = fb.table({4: ("u32", 3), 6: ("off", fb.offsets(oc_offs)), 8: ("off", fb.offsets([sg])),
                      10: ("off", fb.string("hand built")), 12: ("off", fb.offsets(buf_offs))})
    return fb.finish(model, ident)


def test_buffers_stored_after_the_flatbuffer():
    """Models over 2 GB keep tensor data after the flatbuffer (Buffer.offset/size, relative to
    the start of the file); the same layout, small."""
    w = np.arange(24, dtype=np.float32).reshape(4, 6)
    b = np.arange(4, dtype=np.int32)
    tensors = [("in", 0, [1, 6], 0, None), ("w", 0, [4, 6], 1, None), ("b", 2, [4], 2, None),
               ("out", 0, [1, 4], 0, None)]
    probe = build_model(tensors, [None, None, None], external={1: (1 << 40, w.nbytes), 2: (1 << 40, b.nbytes)})
    start = (len(probe) + 15) // 16 * 16
    ext = {1: (start, w.nbytes), 2: (start + w.nbytes, b.nbytes)}
    fbuf = build_model(tensors, [None, None, None], external=ext)
    assert len(fbuf) == len(probe)
    data = fbuf + b"\0" * (start - len(fbuf)) + w.tobytes() + b.tobytes()
    with mfparse.open(data) as m:
        infos = {t.name: t for t in m.tensors()}
        assert set(infos) == {"w", "b"}
        assert infos["w"].offset == start and infos["w"].extras["stored_after_flatbuffer"]
        np.testing.assert_array_equal(m["w"], w)
        np.testing.assert_array_equal(m["b"], b)
    # the tflite package agrees on where the bytes are
    model = tflite.Model.GetRootAsModel(data, 0)
    assert model.Buffers(1).Offset() == start and model.Buffers(1).Size() == w.nbytes
    # pointing past the end of the file is refused
    bad = build_model(tensors, [None, None, None], external={1: (start, w.nbytes), 2: (start + w.nbytes, 10**6)})
    with pytest.raises(mfparse.TruncatedFileError, match="buffer 2"):
        mfparse.open(bad + b"\0" * (start - len(bad)) + w.tobytes() + b.tobytes())


def test_trimmed_vtables_give_schema_defaults():
    """An old writer's OperatorCode has only deprecated_builtin_code: version defaults to 1 and
    the real code is max(builtin_code = 0, deprecated)."""
    opcodes = [{4: ("i8", 9)}, {4: ("i8", 127), 10: ("i32", 150)}]
    ops = [(0, [0], [1]), (1, [0, -1], [1])]
    tensors = [("x", 0, [2], 0, None), ("y", 0, [2], 0, None)]
    data = build_model(tensors, [None], opcodes=opcodes, ops=ops)
    with mfparse.open(data) as m:
        ops = m.graph.operators
        assert [o["op"] for o in ops] == ["FULLY_CONNECTED", tfl.BUILTIN_OPS[150]]
        assert [o["version"] for o in ops] == [1, 1]
        assert ops[1]["inputs"] == [0, -1]
        assert list(m.tensors()) == []  # activations only: nothing carries data
        assert m.graph.subgraphs[0]["name"] == "main"
        assert m.metadata["description"] == "hand built"


def test_string_int4_and_quantized_tensors():
    strings = [b"hello", b"", b"w\xc3\xb6rld"]
    n = len(strings)
    offs, pos = [], 4 * (n + 2)
    for s in strings:
        offs.append(pos)
        pos += len(s)
    offs.append(pos)
    sbuf = struct.pack(f"<i{n + 1}i", n, *offs) + b"".join(strings)
    int4 = bytes([0x21, 0x43, 0x05])  # 5 int4 values, packed two per byte
    q = {"scale": [0.5, 0.25], "zero_point": [0, 1], "dim": 1}
    tensors = [("s", 5, [3], 1, None), ("n4", 17, [5], 2, None), ("q", 9, [3, 2], 3, q), ("bf", 18, [2], 4, None)]
    bf = np.array([1.5, -2.0], dtype=np.float32).view(np.uint32) >> 16
    data = build_model(tensors, [None, sbuf, int4, bytes(range(6)), bf.astype("<u2").tobytes()])
    with mfparse.open(data) as m:
        infos = {t.name: t for t in m.tensors()}
        assert infos["s"].dtype == "string"
        assert m["s"].tolist() == strings
        assert infos["n4"].dtype == "int4" and infos["n4"].nbytes == 3
        assert m["n4"].tobytes() == int4
        assert infos["q"].extras["quantization"] == {"scale": [0.5, 0.25], "zero_point": [0, 1],
                                                     "quantized_dimension": 1}
        assert infos["bf"].dtype == "bfloat16"
        np.testing.assert_array_equal(m["bf"].astype(np.float32), [1.5, -2.0])


def test_missing_identifier():
    data = build_model([("w", 0, [1], 1, None)], [None, b"\0\0\x80\x3f"], ident=None)
    with pytest.raises(mfparse.UnsupportedFormatError):
        mfparse.open(data)
    with pytest.raises(mfparse.CorruptFileError, match="identifier"):
        mfparse.open(data, format="tflite")
    from mfparse.formats.tflite import open_unchecked
    from mfparse.source import Source

    r = open_unchecked(Source(data))
    assert [t.name for t in r.tensors()] == ["w"]
    assert r.read(r.tensors()[0]).tolist() == [1.0]


def test_buffer_size_must_match_shape():
    data = build_model([("w", 0, [2, 2], 1, None)], [None, b"\0" * 12])
    with pytest.raises(mfparse.CorruptFileError, match="needs 16 bytes for its shape and type but its buffer 1 holds 12"):
        mfparse.open(data)


def test_bad_indices_are_refused():
    data = build_model([("w", 0, [1], 7, None)], [None])
    with pytest.raises(mfparse.CorruptFileError, match="names buffer 7"):
        mfparse.open(data)
    data = build_model([("x", 0, [1], 0, None)], [None], opcodes=[{4: ("i8", 0)}], ops=[(0, [5], [0])])
    with pytest.raises(mfparse.CorruptFileError, match="names tensor 5"):
        mfparse.open(data)
    data = build_model([("x", 0, [1], 0, None)], [None], opcodes=[{4: ("i8", 0)}], ops=[(3, [0], [0])])
    with pytest.raises(mfparse.CorruptFileError, match="opcode 3"):
        mfparse.open(data)


def test_shared_subtables_cannot_multiply_work():
    """A DAG: 2,000 subgraph entries pointing at one subgraph whose 2,000 tensor entries point
    at one tensor: four million tensors from a few kilobytes. Refused by the visit budget."""
    fb = FB()
    t = fb.table({4: ("off", fb.i32s([1])), 10: ("off", fb.string("t"))})
    sg = fb.table({4: ("off", fb.offsets([t] * 2000))})
    buf = fb.table({}, 3)
    model = fb.table({4: ("u32", 3), 8: ("off", fb.offsets([sg] * 2000)), 12: ("off", fb.offsets([buf]))})
    data = fb.finish(model)
    assert len(data) < 40000
    with pytest.raises(mfparse.ResourceLimitError, match="flatbuffer visits more objects"):
        mfparse.open(data)


def test_hostile_offsets():
    good = build_model([("w", 0, [1], 1, None)], [None, b"\0\0\x80\x3f"])
    root = struct.unpack_from("<I", good)[0]
    # root offset past the end
    with pytest.raises(mfparse.TruncatedFileError, match="root offset"):
        mfparse.open(struct.pack("<I", len(good) + 4) + good[4:])
    # zero root offset
    with pytest.raises(mfparse.CorruptFileError, match="zero offset"):
        mfparse.open(struct.pack("<I", 0) + good[4:])
    # vtable pointing outside the buffer
    bad = bytearray(good)
    struct.pack_into("<i", bad, root, -(1 << 30))
    with pytest.raises(mfparse.CorruptFileError, match="vtable"):
        mfparse.open(bytes(bad))
    # a vector whose count runs past the end
    with pytest.raises(mfparse.MFParseError):
        mfparse.open(good[:-8])


def _quant_model(details_type, details_fields):
    fb = FB()
    details = fb.table(details_fields) if details_fields is not None else None
    q = {8: ("off", fb.f32s([0.1])), 10: ("off", fb.i64s([0])), 12: ("u8", details_type)}
    if details is not None:
        q[14] = ("off", details)
    qt = fb.table(q)
    t = fb.table({4: ("off", fb.i32s([4])), 6: ("u8", 9), 8: ("u32", 1), 10: ("off", fb.string("w")),
                  12: ("off", qt)})
    sg = fb.table({4: ("off", fb.offsets([t]))})
    bufs = [fb.table({}, 3), fb.table({4: ("off", fb.data(b"\x01\x02\x03\x04"))})]
    model = fb.table({4: ("u32", 3), 8: ("off", fb.offsets([sg])), 12: ("off", fb.offsets(bufs))})
    return fb.finish(model)


def test_quantization_details_union():
    with mfparse.open(_quant_model(2, {4: ("i32", 5), 6: ("i32", 6), 8: ("i32", 32)})) as m:
        q = m.info("w").extras["quantization"]
        assert q["details"] == {"type": "blockwise", "scales_tensor": 5, "zero_points_tensor": 6, "block_size": 32}
        assert q["scale"] == [pytest.approx(0.1)]
    with pytest.raises(mfparse.CorruptFileError, match="union quantization details has type 1 but no value"):
        mfparse.open(_quant_model(1, None))


def test_inspect_stats_skip_sparse():
    from mfparse.inspect import summarize

    with mfparse.open(path("sparse")) as m:
        s = summarize(m, stats=True)
        assert all(t["stats"] is None for t in s["tensors"] if "sparsity" in t.get("extras", {}))


def test_repeated_names_and_negative_shapes():
    data = build_model([("w", 0, [1], 1, None), ("w", 0, [1], 2, None), ("", 0, [1], 1, None)],
                       [None, b"\0\0\x80\x3f", b"\0\0\0\x40"])
    with mfparse.open(data) as m:
        assert m.keys() == ["w", "w#1", "tensor_2"]
        assert m["w#1"].tolist() == [2.0] and m["tensor_2"].tolist() == [1.0]
    with pytest.raises(mfparse.CorruptFileError, match="negative dimension -1"):
        mfparse.open(build_model([("w", 0, [-1], 1, None)], [None, b"\0\0\x80\x3f"]))
