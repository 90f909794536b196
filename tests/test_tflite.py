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
from helpers import Known, assert_view_of, check_robust
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
                arr = m.read(info, packed=True)
                assert arr.tobytes() == raw
                assert not arr.flags.writeable
                assert_view_of(m, arr, info)
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


#: the tflite package's generated accessors do not verify the flatbuffer: whatever mfparse refuses
#: (the checks of flatbuffers' Verifier and of the interpreter's index checks), they may read
TFLITE_KNOWN = [
    Known("stricter", r".",
          "mfparse verifies the flatbuffer (offsets, vtables, vector lengths, indexes) as TFLite's interpreter "
          "does before it runs a model; the tflite package reads whatever the offsets point at"),
]


@pytest.mark.parametrize("name", MODELS)
def test_robust(name, seed):
    """Every mutant mfparse lists, the tflite package lists the same way (tensor keys, names,
    dtypes, shapes, bytes); mfparse refuses more (see TFLITE_KNOWN)."""
    r = check_robust(path(name), fmt="tflite", seed=seed, flips=200, ref="tflite", ref_max=250, known=TFLITE_KNOWN)
    assert r.flipped["ok"] > 0 and r.flipped["error"] > 0 and r.truncated["error"] > 0
    assert r.agree > 0


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


def build_model(tensors, buffers, opcodes=(), ops=(), ident=b"TFL3", external=None, metadata=()):
    """tensors: [(name, type, shape, buffer, quant dict | None)]; buffers: [bytes | None];
    opcodes: [fields dict]; ops: [(opcode_index, inputs, outputs)];
    external: {buffer index: (offset, size)} written as Buffer.offset/size;
    metadata: [(name, buffer index)] as Model.metadata."""
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
    fields = {4: ("u32", 3), 6: ("off", fb.offsets(oc_offs)), 8: ("off", fb.offsets([sg])),
              10: ("off", fb.string("hand built")), 12: ("off", fb.offsets(buf_offs))}
    if metadata:
        fields[16] = ("off", fb.offsets([fb.table({4: ("off", fb.string(n)), 6: ("u32", b)}) for n, b in metadata]))
    return fb.finish(fb.table(fields), ident)


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
        assert m.read(infos["n4"], packed=True).tobytes() == int4
        assert m["n4"].tolist() == [1, 2, 3, 4, 5]
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


# ---- TFLite Model Metadata and associated files ---------------------------------------------------
# metadata.tflite is float.tflite as the MetadataPopulator of tflite-support / MediaPipe writes it
# (tests/fixtures/tflite/make_metadata_fixture.py, with MediaPipe's generated object API): a
# "TFLITE_METADATA" buffer holding the M001 flatbuffer, and a zip of associated files appended.

FIXTURE_FILES = {"labels.txt": b"airplane\ncar\nbird\ncat\ndeer\n", "labels_fr.txt": b"avion\nvoiture\noiseau\nchat\ncerf\n",
                 "vocab.txt": b"[PAD]\n[UNK]\nhello\nworld\n",
                 "README.txt": b"A fixture for mfparse: float.tflite with TFLite Model Metadata.\n"}


def test_model_with_associated_files_opens_as_tflite():
    import zipfile

    with open(path("metadata"), "rb") as f:
        data = f.read()
    assert data[4:8] == b"TFL3" and zipfile.is_zipfile(path("metadata"))
    with mfparse.open(path("metadata")) as m, mfparse.open(path("float")) as ref:
        assert m.format == "tflite"
        assert [(t.name, t.dtype, t.shape, t.nbytes) for t in m.tensors()] == \
            [(t.name, t.dtype, t.shape, t.nbytes) for t in ref.tensors()]
        for t in ref.tensors():
            np.testing.assert_array_equal(m[t.name], ref[t.name])
        files = m.metadata["associated_files"]
        with zipfile.ZipFile(path("metadata")) as zf:  # the reference reader of the archive
            assert [(f["name"], f["size"]) for f in files] == [(i.filename, i.file_size) for i in zf.infolist()]
            for f in files:
                assert data[f["offset"]:f["offset"] + f["size"]] == zf.read(f["name"]) == FIXTURE_FILES[f["name"]]
        assert m._reader.associated_file("vocab.txt") == FIXTURE_FILES["vocab.txt"]
        # the metadata buffer is where the tflite package finds it
        model = tflite.Model.GetRootAsModel(data, 0)
        md = [model.Metadata(i) for i in range(model.MetadataLength())]
        entry = next(e for e in md if e.Name() == b"TFLITE_METADATA")
        meta = m.metadata["TFLITE_METADATA"]
        assert meta["buffer"] == entry.Buffer()
        assert meta["bytes"] == model.Buffers(entry.Buffer()).DataLength()


def test_model_metadata_flatbuffer():
    with mfparse.open(path("metadata")) as m:
        meta = m.metadata["TFLITE_METADATA"]
    assert {k: meta[k] for k in ("name", "description", "version", "author", "license", "min_parser_version")} == {
        "name": "FixtureClassifier", "description": "A conv + dense classifier of 8x8 images.", "version": "v1",
        "author": "mfparse tests", "license": "Apache-2.0", "min_parser_version": "1.2.1"}
    assert meta["associated_files"] == [{"name": "README.txt", "description": "What this model is.",
                                         "type": "DESCRIPTIONS"}]
    (sg,) = meta["subgraphs"]
    assert sg["name"] == "main" and sg["description"] == "The only subgraph."
    assert sg["inputs"] == [{"name": "image", "description": "Input image, 8x8 RGB.", "content": "ImageProperties",
                             "process_units": ["NormalizationOptions"], "associated_files": []}]
    assert sg["outputs"] == [{
        "name": "probability", "description": "Scores of the five classes.", "content": "FeatureProperties",
        "process_units": [], "associated_files": [
            {"name": "labels.txt", "description": "Labels of the five classes.", "type": "TENSOR_AXIS_LABELS"},
            {"name": "labels_fr.txt", "description": "Labels in French.", "type": "TENSOR_AXIS_LABELS",
             "locale": "fr"}]}]
    assert sg["associated_files"] == [{"name": "vocab.txt", "description": "Tokenizer vocabulary.",
                                       "type": "VOCABULARY", "process_unit": "BertTokenizerOptions",
                                       "role": "input"}]
    (custom,) = sg["custom_metadata"]
    with open(path("metadata"), "rb") as f:
        data = f.read()
    assert custom["name"] == "FIXTURE_BYTES" and data[custom["offset"]:custom["offset"] + custom["bytes"]] == bytes(range(16))
    # every file the metadata records is in the archive
    with mfparse.open(path("metadata")) as m:
        packed = {f["name"] for f in m.metadata["associated_files"]}
    recorded = {f["name"] for f in meta["associated_files"] + sg["associated_files"]
                for f in [f]} | {f["name"] for t in sg["outputs"] for f in t["associated_files"]}
    assert recorded == packed


def test_model_metadata_json_and_inspect():
    from mfparse.inspect import render_text, summarize

    with mfparse.open(path("metadata")) as m:
        s = summarize(m)
        json.dumps(s)
        assert "associated_files" in s["metadata"]
        render_text(s)


def _metadata_fb(fb: "FB", *, files_per_tensor=(), shared=None, ident=b"M001", units=()):
    """A ModelMetadata flatbuffer built by hand from metadata_schema.fbs (slots in
    csrc/mf_tflite.h): one subgraph with one output tensor."""
    def afile(name, ftype=2):
        return fb.table({4: ("off", fb.string(name)), 8: ("i8", ftype)})
    files = [afile(n) for n in files_per_tensor]
    unit_offs = []
    for utype, vocab in units:
        slot = 6 if utype == 6 else 4  # RegexTokenizerOptions: delim_regex_pattern 4, vocab_file 6
        opts = fb.table({slot: ("off", fb.offsets([afile(v, 5) for v in vocab]))}) if vocab else fb.table({})
        unit_offs.append(fb.table({4: ("u8", utype), 6: ("off", opts)}))
    tfields = {4: ("off", fb.string("out")), 16: ("off", fb.offsets(files))}
    if unit_offs:
        tfields[12] = ("off", fb.offsets(unit_offs))
    tensors = [fb.table(tfields)] if shared is None else [shared] * 3000
    sg = fb.table({10: ("off", fb.offsets(tensors))})
    root = fb.table({4: ("off", fb.string("hand built")), 10: ("off", fb.offsets([sg] if shared is None else [sg] * 3000))})
    return fb.finish(root, ident)


def _with_metadata(meta: bytes, files=None) -> bytes:
    import io
    import zipfile

    data = build_model([("w", 0, [2], 1, None)], [None, np.array([1, 2], np.float32).tobytes(), meta],
                       metadata=[("min_runtime_version", 0), ("TFLITE_METADATA", 2)])
    if files is None:
        return data
    bio = io.BytesIO(data)
    bio.seek(0, 2)
    with zipfile.ZipFile(bio, "a") as zf:
        for name, payload in files.items():
            zf.writestr(name, payload)
    return bio.getvalue()


def test_hand_built_metadata_and_tokenizer_files():
    meta = _metadata_fb(FB(), files_per_tensor=["labels.txt"], units=[(4, ["vocab.txt"]), (6, ["regex_vocab.txt"]),
                                                                       (1, None)])
    data = _with_metadata(meta, {"labels.txt": b"a\nb\n", "vocab.txt": b"x", "regex_vocab.txt": b"y"})
    with mfparse.open(data) as m:
        md = m.metadata
        assert m.format == "tflite" and m.keys() == ["w"] and m["w"].tolist() == [1.0, 2.0]
        t = md["TFLITE_METADATA"]["subgraphs"][0]["outputs"][0]
        assert t["name"] == "out" and t["process_units"] == ["BertTokenizerOptions", "RegexTokenizerOptions",
                                                              "NormalizationOptions"]
        assert [(f["name"], f["type"], f.get("process_unit")) for f in t["associated_files"]] == [
            ("vocab.txt", "VOCABULARY", "BertTokenizerOptions"), ("regex_vocab.txt", "VOCABULARY", "RegexTokenizerOptions"),
            ("labels.txt", "TENSOR_AXIS_LABELS", None)]
        assert [(f["name"], f["size"]) for f in md["associated_files"]] == [("labels.txt", 4), ("vocab.txt", 1),
                                                                           ("regex_vocab.txt", 1)]
    # no archive after the model: no associated_files key
    with mfparse.open(_with_metadata(meta)) as m:
        assert "associated_files" not in m.metadata and m.metadata["TFLITE_METADATA"]["name"] == "hand built"


def test_bad_metadata_buffers_do_not_stop_the_model():
    """The interpreter never reads the metadata: a model whose metadata buffer is broken opens,
    and the metadata entry says what is wrong (with the byte offset)."""
    cases = {
        "identifier": (_metadata_fb(FB(), ident=b"XXXX"), "identifier is not 'M001'"),
        "truncated": (_metadata_fb(FB(), files_per_tensor=["a.txt"])[:-12], "past the end"),
        "root": (struct.pack("<I", 4096) + b"M001" + bytes(56), "root offset: offset 4096 points past the end"),
    }
    fb = FB()
    shared = fb.table({4: ("off", fb.string("t")), 16: ("off", fb.offsets([fb.table({4: ("off", fb.string("f"))})]))})
    cases["shared"] = (_metadata_fb(fb, shared=shared), "visits more objects")
    for what, (meta, why) in cases.items():
        with mfparse.open(_with_metadata(meta)) as m:
            md = m.metadata["TFLITE_METADATA"]
            assert set(md) == {"buffer", "bytes", "error"}, what
            assert why in md["error"] and "(byte " in md["error"], (what, md["error"])
            assert m["w"].tolist() == [1.0, 2.0]


def test_corrupt_appended_archive_is_reported_in_metadata():
    data = _with_metadata(_metadata_fb(FB()), {"labels.txt": b"abc"})
    eocd = data.rindex(b"PK\x05\x06")
    bad = bytearray(data)
    struct.pack_into("<I", bad, eocd + 16, len(data) - 30)  # central directory offset: past the directory
    with mfparse.open(bytes(bad)) as m:
        assert m.format == "tflite"
        assert "associated_files" not in m.metadata and "zip" in m.metadata["associated_files_error"]


def test_robust_with_associated_files(seed):
    r = check_robust(path("metadata"), fmt="tflite", seed=seed, flips=200)
    assert r.flipped["ok"] > 0 and r.flipped["error"] > 0 and r.truncated["error"] > 0


def test_scan_judges_every_associated_file():
    from pickle_asm import call_pickle

    r = mfparse.scan(path("metadata"))
    assert r.verdict == "safe" and not r.findings
    assert any("associated files" in n for n in r.notes)
    data = _with_metadata(_metadata_fb(FB()), {"labels.txt": b"a\n", "extra.pkl": call_pickle("os", "system", "x")})
    r = mfparse.scan(data)
    assert r.verdict == "unsafe"
    (f,) = r.findings
    assert f.module == "os" and f.member == "extra.pkl"
    # the same model as a member of an archive (a MediaPipe .task bundle is a zip of .tflite files)
    import io
    import zipfile

    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w") as zf:
        zf.writestr("hand_landmarks_detector.tflite", data)
    r = mfparse.scan(bio.getvalue())
    assert [(f.module, f.member) for f in r.findings] == [("os", "hand_landmarks_detector.tflite!extra.pkl")]


def test_sub_byte_tensors_unpack_low_nibble_first():
    """TFLite packs INT4 / UINT4 two to a byte and INT2 four to a byte, element 0 in the low bits
    (the converter's PackInt4ValuesDensely; the kernels' UnpackDenseInt4IntoInt8): m[name] gives
    the values as ml_dtypes arrays of the tensor's shape, read(packed=True) the stored bytes."""
    import ml_dtypes

    i4 = np.array([[-8, -1, 0], [7, 3, -4]], dtype=ml_dtypes.int4)  # 6 values: 3 bytes
    u4 = np.array([15, 0, 9, 1, 14], dtype=ml_dtypes.uint4)          # odd count: 3 bytes, last half empty
    i2 = np.array([-2, -1, 0, 1, 1, -2, 0], dtype=ml_dtypes.int2)    # 7 values: 2 bytes

    def pack(a, bits):
        codes = a.reshape(-1).view(np.uint8).astype(np.uint32) & ((1 << bits) - 1)
        per = 8 // bits
        codes = np.concatenate([codes, np.zeros(-len(codes) % per, np.uint32)]).reshape(-1, per)
        return bytes((codes << (bits * np.arange(per, dtype=np.uint32))).sum(axis=1).astype(np.uint8))

    raw = {"i4": pack(i4, 4), "u4": pack(u4, 4), "i2": pack(i2, 2)}
    assert raw["i4"] == bytes([0xF8, 0x70, 0xC3]) and raw["u4"] == bytes([0x0F, 0x19, 0x0E])
    tensors = [("i4", tflite.TensorType.INT4, [2, 3], 1, None), ("u4", 20, [5], 2, None), ("i2", 19, [7], 3, None)]
    data = build_model(tensors, [None, raw["i4"], raw["u4"], raw["i2"]])
    with mfparse.open(data) as m:
        for name, want in (("i4", i4), ("u4", u4), ("i2", i2)):
            info = m.info(name)
            assert info.nbytes == len(raw[name])
            got = m[name]
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got.astype(np.int8), want.astype(np.int8))
            stored = m.read(info, packed=True)
            assert stored.dtype == np.uint8 and stored.tobytes() == raw[name] and not stored.flags.writeable
        # the tflite package sees the same bytes in the buffer
        model = tflite.Model.GetRootAsModel(data, 0)
        assert model.Buffers(1).DataAsNumpy().tobytes() == raw["i4"]
