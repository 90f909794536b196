"""ONNX: agreement with the onnx package (numpy_helper.to_array) on models written by
onnx.helper and torch.onnx.export, external data (with a >4 GB sparse layout), subgraphs,
functions, sparse and Constant tensors; hostile files built as bytes."""

from __future__ import annotations

import os
import struct
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

import mfparse
from helpers import Known, assert_view_of, check_robust, field, varint, vfield
from mfparse.errors import CorruptFileError, ResourceLimitError, UnsafeContentError, UnsupportedFormatError

# ONNX data type -> mfparse dtype
ONNX_DTYPES = {
    TP.FLOAT: "float32", TP.UINT8: "uint8", TP.INT8: "int8", TP.UINT16: "uint16", TP.INT16: "int16",
    TP.INT32: "int32", TP.INT64: "int64", TP.STRING: "string", TP.BOOL: "bool", TP.FLOAT16: "float16",
    TP.DOUBLE: "float64", TP.UINT32: "uint32", TP.UINT64: "uint64", TP.COMPLEX64: "complex64",
    TP.COMPLEX128: "complex128", TP.BFLOAT16: "bfloat16", TP.FLOAT8E4M3FN: "float8_e4m3fn",
    TP.FLOAT8E4M3FNUZ: "float8_e4m3fnuz", TP.FLOAT8E5M2: "float8_e5m2", TP.FLOAT8E5M2FNUZ: "float8_e5m2fnuz",
    TP.UINT4: "uint4", TP.INT4: "int4", TP.FLOAT4E2M1: "float4_e2m1fn", TP.FLOAT8E8M0: "float8_e8m0fnu",
    TP.UINT2: "uint2", TP.INT2: "int2", TP.FLOAT6E2M3: "float6_e2m3fn", TP.FLOAT6E3M2: "float6_e3m2fn",
}
PACKED = {TP.UINT4: 4, TP.INT4: 4, TP.FLOAT4E2M1: 4, TP.UINT2: 2, TP.INT2: 2, TP.FLOAT6E2M3: 6, TP.FLOAT6E3M2: 6}


def pack_bits(codes: np.ndarray, bits: int) -> bytes:
    """ONNX's packing of sub-byte codes: LSB first, zero-padded."""
    acc, nbits, out = 0, 0, bytearray()
    for c in codes.reshape(-1).tolist():
        acc |= (int(c) & ((1 << bits) - 1)) << nbits
        nbits += bits
        while nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8
    if nbits:
        out.append(acc & 0xFF)
    return bytes(out)


def expected_bytes(tensor: TP, base_dir: str = "") -> bytes:
    """The stored bytes of a tensor (read(info, packed=True)): to_array's values, packed like
    raw_data for the sub-byte types."""
    ref = numpy_helper.to_array(tensor, base_dir)
    if tensor.data_type in PACKED:
        return pack_bits(ref.view(np.uint8), PACKED[tensor.data_type])
    return np.ascontiguousarray(ref).tobytes()


def assert_same(m, info, tensor, base_dir=""):
    assert info.dtype == ONNX_DTYPES[tensor.data_type], info.name
    assert info.shape == tuple(tensor.dims), info.name
    got = m[info.name]
    ref = numpy_helper.to_array(tensor, base_dir)
    if tensor.data_type == TP.STRING:
        assert got.shape == ref.shape and [x.decode() for x in got.reshape(-1)] == list(ref.reshape(-1))
        return
    # the logical values, as onnx gives them: dtype (ml_dtypes for the sub-byte types), shape, bytes
    assert got.dtype == ref.dtype and got.shape == ref.shape, info.name
    assert got.tobytes() == np.ascontiguousarray(ref).tobytes(), info.name
    stored = m.read(info, packed=True)
    assert stored.tobytes() == expected_bytes(tensor, base_dir), info.name
    if tensor.data_type in PACKED:
        assert stored.dtype == np.uint8 and stored.size == info.nbytes, info.name


def sample(dt: int, shape) -> np.ndarray:
    n = int(np.prod(shape))
    flat = np.linspace(-3, 3, n)
    x = flat.reshape(shape)
    if dt == TP.STRING:
        return np.array([f"s{i}\u00e9" for i in range(n)], dtype=object).reshape(shape)
    if dt == TP.BOOL:
        return x > 0
    npdt = helper.tensor_dtype_to_np_dtype(dt)
    if dt in (TP.COMPLEX64, TP.COMPLEX128):
        return (flat + 1j * flat[::-1]).astype(npdt).reshape(shape)
    if np.issubdtype(npdt, np.integer) or "int" in str(npdt):
        lo, hi = (0, 3) if "uint" in str(npdt) else (-2, 1)
        return np.clip(np.round(x), lo, hi).astype(npdt)
    return x.astype(npdt)


ALL_TYPES = [t for t in ONNX_DTYPES]


def model_with(tensors, nodes=(), inputs=(), outputs=(), **kw) -> onnx.ModelProto:
    g = helper.make_graph(list(nodes), "g", list(inputs), list(outputs), list(tensors))
    return helper.make_model(g, **kw)


@pytest.mark.parametrize("raw", [True, False], ids=["raw_data", "typed"])
def test_every_dtype_against_numpy_helper(tmp_path, raw):
    tensors = []
    for dt in ALL_TYPES:
        if raw and dt == TP.STRING:
            continue
        for shape in ((2, 3), (5,), ()):
            a = sample(dt, shape)
            name = f"{helper.tensor_dtype_to_string(dt)}_{len(shape)}"
            if dt == TP.STRING:
                tensors.append(helper.make_tensor(name, dt, shape, a.reshape(-1).tolist()))
            else:
                tensors.append(numpy_helper.from_array(a, name) if raw else
                               helper.make_tensor(name, dt, shape, a.reshape(-1), raw=False))
    p = tmp_path / "all.onnx"
    onnx.save(model_with(tensors), str(p))
    ref = {t.name: t for t in onnx.load(str(p)).graph.initializer}
    assert {t.name: (t.HasField("raw_data")) for t in ref.values()} == {n: raw for n in ref}
    with mfparse.open(p) as m:
        assert m.format == "onnx"
        assert sorted(m.keys()) == sorted(ref)
        for info in m.tensors():
            assert_same(m, info, ref[info.name])
            if raw and info.nbytes:
                assert_view_of(m, m.read(info, packed=True), info)  # a view of the map
                assert m.info(info.name).extras == {}


def test_typed_fields_unpacked_and_split(tmp_path):
    """Parsers must accept unpacked repeated scalars and packed runs split over several records."""
    t = helper.make_tensor("f", TP.FLOAT, [4], [1.0, -2.0, 3.5, 0.25])
    # rebuild float_data as four unpacked fixed32 records, dims as one packed record
    unpacked = b"".join(b"\x25" + struct.pack("<f", v) for v in (1.0, -2.0))
    split = b"\x22\x08" + struct.pack("<2f", 3.5, 0.25)
    tensor = b"\x0a\x01\x04" + b"\x10\x01" + unpacked + b"\x42\x01f" + split
    graph = b"\x2a" + bytes([len(tensor)]) + tensor + b"\x12\x01g"
    model = b"\x08\x08" + b"\x3a" + bytes([len(graph)]) + graph
    with mfparse.open(model, format="onnx") as m:
        np.testing.assert_array_equal(m["f"], numpy_helper.to_array(t))
        assert m.info("f").extras["stored_as"] == "float_data"
    assert onnx.load_from_string(model).graph.initializer[0].float_data == [1.0, -2.0, 3.5, 0.25]


def test_torch_export_against_onnx(tmp_path):
    import importlib.util

    torch = pytest.importorskip("torch")

    dynamo = importlib.util.find_spec("onnxscript") is not None   # the legacy exporter otherwise

    from models import CNN, SimpleNet

    for cls, shape in ((SimpleNet, (2, 10)), (CNN, (1, 3, 8, 8))):
        p = tmp_path / f"{cls.__name__}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(cls().eval(), (torch.randn(*shape),), str(p), dynamo=dynamo, input_names=["x"],
                              output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
        ref = onnx.load(str(p))
        inits = {t.name: t for t in ref.graph.initializer}
        consts = {n.output[0]: n.attribute[0].t for n in ref.graph.node if n.op_type == "Constant"}
        with mfparse.open(p) as m:
            names = set(m.keys())
            assert names == set(inits) | set(consts)
            for info in m.tensors():
                assert_same(m, info, inits.get(info.name) or consts[info.name])
            g = m.graph
            assert g["inputs"] == [{"name": "x", "type": "tensor(float)", "dtype": "float32",
                                    "shape": ["batch", *shape[1:]]}]
            assert [o["name"] for o in g["outputs"]] == ["y"] and g["outputs"][0]["shape"][0] == "batch"
            assert g["node_count"] == len(ref.graph.node)
            hist = {}
            for n in ref.graph.node:
                hist[n.op_type] = hist.get(n.op_type, 0) + 1
            assert g["op_types"] == hist
            assert m.metadata["producer_name"] == "pytorch"
            assert m.metadata["opset_import"] == {"ai.onnx": ref.opset_import[0].version}


def test_metadata_and_graph_types(tmp_path):
    x = helper.make_tensor_value_info("x", TP.BFLOAT16, ["N", None, 3])
    seq = helper.make_tensor_sequence_value_info("s", TP.INT64, [2])
    opt = helper.make_value_info("o", helper.make_optional_type_proto(helper.make_tensor_type_proto(TP.FLOAT, [])))
    mp = helper.make_value_info("mp", helper.make_map_type_proto(TP.STRING, helper.make_tensor_type_proto(TP.FLOAT, [1])))
    unk = helper.make_tensor_value_info("u", TP.FLOAT, None)
    model = model_with([], inputs=[x, seq, opt, mp], outputs=[unk], producer_name="me", producer_version="1.2",
                       doc_string="docs", model_version=7, domain="org.test",
                       opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.x", 2)])
    helper.set_model_props(model, {"author": "a", "license": "MIT"})
    p = tmp_path / "meta.onnx"
    onnx.save(model, str(p))
    with mfparse.open(p) as m:
        md = m.metadata
        assert md["ir_version"] == model.ir_version and md["producer_name"] == "me"
        assert md["producer_version"] == "1.2" and md["doc_string"] == "docs" and md["model_version"] == 7
        assert md["domain"] == "org.test"
        assert md["opset_import"] == {"ai.onnx": 17, "com.x": 2}
        assert md["metadata_props"] == {"author": "a", "license": "MIT"}
        ins = {v["name"]: v for v in m.graph["inputs"]}
        assert ins["x"] == {"name": "x", "type": "tensor(bfloat16)", "dtype": "bfloat16", "shape": ["N", None, 3]}
        assert ins["s"]["type"] == "seq(tensor(int64))"
        assert ins["o"]["type"] == "optional(tensor(float))"
        assert ins["mp"]["type"] == "map(string,tensor(float))"
        assert m.graph["outputs"] == [{"name": "u", "type": "tensor(float)", "dtype": "float32"}]
        assert len(m) == 0


def test_subgraphs_functions_sparse_and_constants(tmp_path):
    w = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "W")
    then_w = numpy_helper.from_array(np.ones(3, np.float32), "W")    # same name as the outer W
    then_g = helper.make_graph([helper.make_node("Add", ["x", "W"], ["t"])], "then", [],
                               [helper.make_tensor_value_info("t", TP.FLOAT, [3])], [then_w])
    else_c = helper.make_node("Constant", [], ["e"], value=numpy_helper.from_array(np.full(3, 9, np.float32), "k"))
    else_g = helper.make_graph([else_c], "else", [], [helper.make_tensor_value_info("e", TP.FLOAT, [3])])
    if_node = helper.make_node("If", ["cond"], ["out"], name="branch", then_branch=then_g, else_branch=else_g)
    cos = helper.make_node("ConstantOfShape", ["shape"], ["z"], name="fill",
                           value=numpy_helper.from_array(np.array([2.5], np.float32), "v"))
    sparse = helper.make_sparse_tensor(numpy_helper.from_array(np.array([1.5, -2], np.float32), "sp"),
                                       numpy_helper.from_array(np.array([1, 4], np.int64), "sp_idx"), [2, 3])
    fconst = helper.make_node("Constant", [], ["two"], value_float=2.0)
    fconst_t = helper.make_node("Constant", [], ["vec"], value=numpy_helper.from_array(np.arange(2, dtype=np.int64)))
    fmul = helper.make_node("Mul", ["a", "two"], ["b"])
    func = helper.make_function("custom", "Double", ["a"], ["b"], [fconst, fconst_t, fmul],
                                [helper.make_opsetid("", 17)])
    g = helper.make_graph([if_node, cos, helper.make_node("Double", ["x"], ["y"], domain="custom")], "main",
                          [helper.make_tensor_value_info("cond", TP.BOOL, []),
                           helper.make_tensor_value_info("x", TP.FLOAT, [3]),
                           helper.make_tensor_value_info("shape", TP.INT64, [1])],
                          [helper.make_tensor_value_info("out", TP.FLOAT, [3])], [w], sparse_initializer=[sparse])
    model = helper.make_model(g, functions=[func], opset_imports=[helper.make_opsetid("", 17),
                                                                  helper.make_opsetid("custom", 1)])
    p = tmp_path / "nested.onnx"
    onnx.save(model, str(p))
    with mfparse.open(p) as m:
        infos = {t.name: t for t in m.tensors()}
        assert set(infos) == {"W", "branch/then_branch/W", "e", "fill/value", "sp", "sp_idx", "vec"}
        assert infos["W"].extras == {}
        assert infos["branch/then_branch/W"].extras["graph"] == "branch/then_branch"
        assert infos["e"].extras == {"source": "constant", "node": "e", "op_type": "Constant",
                                     "attribute": "value", "graph": "branch/else_branch"}
        assert infos["fill/value"].extras["source"] == "attribute"
        assert infos["sp"].extras["sparse"] == {"role": "values", "dense_shape": (2, 3), "indices": "sp_idx"}
        assert infos["sp_idx"].extras["sparse"]["values"] == "sp"
        assert infos["vec"].extras["graph"] == "function:custom.Double"
        assert_same(m, infos["W"], w)
        assert_same(m, infos["branch/then_branch/W"], then_w)
        assert_same(m, infos["e"], else_c.attribute[0].t)
        assert_same(m, infos["fill/value"], cos.attribute[0].t)
        assert_same(m, infos["sp"], sparse.values)
        assert_same(m, infos["sp_idx"], sparse.indices)
        assert_same(m, infos["vec"], fconst_t.attribute[0].t)
        gr = m.graph
        assert gr["node_count"] == 3 and gr["total_node_count"] == 3 + 1 + 1 + 3
        assert gr["op_types"] == {"If": 1, "ConstantOfShape": 1, "custom:Double": 1}
        assert gr["initializer_count"] == 2
        subs = {s["path"]: s for s in gr["subgraphs"]}
        assert set(subs) == {"branch/then_branch", "branch/else_branch"}
        assert subs["branch/then_branch"]["op_type"] == "If" and subs["branch/then_branch"]["op_types"] == {"Add": 1}
        assert subs["branch/else_branch"]["outputs"][0]["name"] == "e"
        assert gr["functions"] == [{"domain": "custom", "name": "Double", "inputs": ["a"], "outputs": ["b"],
                                    "node_count": 3, "op_types": {"Constant": 2, "Mul": 1}}]


def test_loop_and_scan_bodies(tmp_path):
    body = helper.make_graph(
        [helper.make_node("Constant", [], ["one"], value=numpy_helper.from_array(np.array(1, np.int64))),
         helper.make_node("Add", ["v", "one"], ["v2"]), helper.make_node("Identity", ["c"], ["c2"])],
        "body", [helper.make_tensor_value_info("i", TP.INT64, []), helper.make_tensor_value_info("c", TP.BOOL, []),
                 helper.make_tensor_value_info("v", TP.INT64, [])],
        [helper.make_tensor_value_info("c2", TP.BOOL, []), helper.make_tensor_value_info("v2", TP.INT64, [])])
    loop = helper.make_node("Loop", ["n", "c0", "v0"], ["vf"], name="loop", body=body)
    g = helper.make_graph([loop], "g", [helper.make_tensor_value_info(n, t, []) for n, t in
                                        (("n", TP.INT64), ("c0", TP.BOOL), ("v0", TP.INT64))],
                          [helper.make_tensor_value_info("vf", TP.INT64, [])])
    p = tmp_path / "loop.onnx"
    onnx.save(helper.make_model(g), str(p))
    with mfparse.open(p) as m:
        assert m.keys() == ["one"] and int(m["one"]) == 1
        assert m.info("one").extras["graph"] == "loop/body"
        assert m.graph["subgraphs"][0]["op_types"] == {"Constant": 1, "Add": 1, "Identity": 1}


# ---- external data --------------------------------------------------------------------------------

def test_external_data_against_onnx(tmp_path):
    tensors = [numpy_helper.from_array(sample(dt, (4, 5)), f"t{dt}") for dt in
               (TP.FLOAT, TP.FLOAT16, TP.BFLOAT16, TP.INT8, TP.INT4, TP.FLOAT8E4M3FN, TP.DOUBLE, TP.BOOL)]
    model = model_with(tensors)
    p = tmp_path / "ext.onnx"
    onnx.save_model(model, str(p), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    ref = onnx.load(str(p), load_external_data=False)
    with mfparse.open(p) as m:
        for info, t in zip(m.tensors(), ref.graph.initializer):
            ext = info.extras["external"]
            assert ext["location"] == "weights.bin" and info.storage == "weights.bin"
            assert info.offset == ext["offset"]
            assert_same(m, info, t, str(tmp_path))
            a = m.read(info, packed=True)  # int4: the stored bytes (m[name] unpacks them into a copy)
            assert not a.flags.writeable
            assert_view_of(m, a, info, buffer=m.reader._ext_buffer("weights.bin"))  # mapped, not copied
        assert m.metadata["ir_version"] == ref.ir_version


def make_external(t: TP, location: str, offset: int, length: int) -> TP:
    t.ClearField("raw_data")
    for k, v in (("location", location), ("offset", str(offset)), ("length", str(length))):
        e = t.external_data.add()
        e.key, e.value = k, v
    t.data_location = TP.EXTERNAL
    return t


def test_external_data_beyond_4gb_sparse(tmp_path):
    """Offsets past 2 GB and 4 GB, and a 2.5 GB tensor, in a sparse external file (no disk use)."""
    big_at = [(2**31 + 4096, np.arange(7, dtype=np.float32)), (2**32 + 8192, np.arange(5, dtype=np.int64) - 2)]
    data = tmp_path / "big.bin"
    with open(data, "wb") as f:
        for off, a in big_at:
            f.seek(off)
            f.write(a.tobytes())
        f.truncate(5 * 2**30)
    tensors = []
    for i, (off, a) in enumerate(big_at):
        tensors.append(make_external(numpy_helper.from_array(a, f"far{i}"), "big.bin", off, a.nbytes))
    huge = TP(name="huge", data_type=TP.UINT8, dims=[5 * 2**29])
    tensors.append(make_external(huge, "big.bin", 0, 5 * 2**29))
    p = tmp_path / "far.onnx"
    onnx.save(model_with(tensors), str(p))
    with mfparse.open(p) as m:
        for i, (off, a) in enumerate(big_at):
            info = m.info(f"far{i}")
            assert info.offset == off
            assert_same(m, info, tensors[i], str(tmp_path))
        h = m.info("huge")
        assert h.nbytes == 5 * 2**29 and h.shape == (5 * 2**29,)
        v = m["huge"]
        assert v.nbytes == 5 * 2**29 and int(v[-1]) == 0
        assert_view_of(m, v, h, buffer=m.reader._ext_buffer(h.extras["external"]["location"]))


def _ext_model(tmp_path, location, name="w", write=True, length=None, offset=0):
    a = np.arange(4, dtype=np.float32)
    t = make_external(numpy_helper.from_array(a, name), location, offset, a.nbytes if length is None else length)
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    if write and location and not os.path.isabs(location) and ".." not in location:
        (folder / location).write_bytes(b"\0" * offset + a.tobytes())
    p = folder / f"{name}.onnx"
    onnx.save(model_with([t]), str(p))
    return p


@pytest.mark.parametrize("location,why", [
    ("../secret.bin", "'..'"), ("/etc/passwd", "absolute"), ("sub/../../secret.bin", "'..'"),
    ("C:\\x.bin", "absolute"), ("", "empty")])
def test_external_location_escaping_is_refused(tmp_path, location, why):
    (tmp_path / "secret.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    p = _ext_model(tmp_path, location)
    with mfparse.open(p) as m:
        info = m.info("w")
        assert info.offset is None and why in info.extras["external"]["refused"]
        with pytest.raises(UnsafeContentError, match="refused"):
            m["w"]


def test_external_symlink_out_is_refused(tmp_path):
    (tmp_path / "secret.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    p = _ext_model(tmp_path, "link.bin", write=False)
    os.symlink(tmp_path / "secret.bin", tmp_path / "model" / "link.bin")
    with mfparse.open(p) as m:
        assert "outside" in m.info("w").extras["external"]["refused"]
        with pytest.raises(UnsafeContentError):
            m["w"]
    # a symlink that stays inside the folder is fine
    (tmp_path / "model" / "real.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    p2 = _ext_model(tmp_path, "inner.bin", name="v", write=False)
    os.symlink(tmp_path / "model" / "real.bin", tmp_path / "model" / "inner.bin")
    with mfparse.open(p2) as m:
        np.testing.assert_array_equal(m["v"], np.arange(4, dtype=np.float32))


def test_external_missing_short_and_bytes_input(tmp_path):
    p = _ext_model(tmp_path, "absent.bin", write=False)
    with mfparse.open(p) as m:
        assert "not found" in m.info("w").extras["external"]["missing"]
        with pytest.raises(CorruptFileError, match="not found"):
            m["w"]
    with mfparse.open(p.read_bytes(), format="onnx") as m:   # no folder to look in
        assert "not opened from a path" in m.info("w").extras["external"]["missing"]
    p = _ext_model(tmp_path, "short.bin", name="s", length=12)
    with pytest.raises(CorruptFileError, match="holds 12 bytes but its type and shape need 16"):
        mfparse.open(p)
    p = _ext_model(tmp_path, "off.bin", name="o", offset=100)
    (tmp_path / "model" / "off.bin").write_bytes(b"\0" * 104)
    with pytest.raises(CorruptFileError, match="runs past the end"):
        mfparse.open(p)


# ---- bare TensorProto, detection -----------------------------------------------------------------

def test_bare_tensor_proto(tmp_path):
    t = numpy_helper.from_array(np.arange(12, dtype=np.int16).reshape(3, 4), "input_0")
    p = tmp_path / "input_0.pb"
    onnx.save_tensor(t, str(p))
    with mfparse.open(p, format="onnx-tensor") as m:
        assert m.format == "onnx-tensor" and m.keys() == ["input_0"]
        assert_same(m, m.info("input_0"), t)
        assert m.graph is None
    s = helper.make_tensor("", TP.STRING, [2], [b"a", b"bc"])
    with mfparse.open(s.SerializeToString(), format="onnx-tensor") as m:
        assert m.keys() == ["tensor"] and list(m["tensor"]) == [b"a", b"bc"]


def test_detection(tmp_path):
    model = model_with([numpy_helper.from_array(np.zeros(2, np.float32), "z")])
    p = tmp_path / "m.onnx"
    onnx.save(model, str(p))
    with mfparse.open(p) as m:
        assert m.format == "onnx"
    q = tmp_path / "m.bin"
    q.write_bytes(p.read_bytes())
    with pytest.raises(UnsupportedFormatError):
        mfparse.open(q)                               # no magic: the extension is the claim
    with mfparse.open(q, format="onnx") as m:
        assert m.keys() == ["z"]
    pb = tmp_path / "model.pb"                        # onnx's own header order identifies a .pb
    pb.write_bytes(p.read_bytes())
    with mfparse.open(pb) as m:
        assert m.format == "onnx"
    r = tmp_path / "junk.onnx"
    r.write_bytes(b"\xff\xff\xff\xff" + b"\0" * 60)
    with pytest.raises(UnsupportedFormatError):
        mfparse.open(r)


# ---- hostile wire format ---------------------------------------------------------------------------

def model_bytes(*graph_fields: bytes, head: bytes = b"\x08\x09") -> bytes:
    return head + field(7, b"".join(graph_fields))


def raw_tensor(name: bytes, dims, dt: int, raw: bytes) -> bytes:
    return b"".join(vfield(1, d) for d in dims) + vfield(2, dt) + field(8, name) + field(9, raw)


@pytest.mark.parametrize("data,exc,msg", [
    (model_bytes(field(5, raw_tensor(b"a", [2], 1, b"\0" * 7))), CorruptFileError, "7 bytes of raw_data but"),
    (model_bytes(field(5, raw_tensor(b"a", [-1], 1, b""))), CorruptFileError, "negative dimension"),
    (model_bytes(field(5, raw_tensor(b"a", [1 << 40, 1 << 40], 1, b""))), CorruptFileError, "overflows"),
    (model_bytes(field(5, raw_tensor(b"a", [1], 0, b"\0")) ), CorruptFileError, "UNDEFINED"),
    (model_bytes(field(5, raw_tensor(b"a", [1], 99, b"\0"))), UnsupportedFormatError, "data type 99"),
    (model_bytes(field(5, vfield(1, 3) + vfield(2, 1) + field(4, b"\0" * 8))), CorruptFileError,
     "holds 2 values in float_data"),
    (model_bytes(field(5, vfield(1, 2) + vfield(2, 8) + field(6, b"x"))), CorruptFileError, "1 strings"),
    (b"\x08\x09\x3a\x80\x80\x04", CorruptFileError, "runs past the end of its message"),
    (b"\x08" + b"\xff" * 10 + b"\x01", CorruptFileError, "varint longer"),
    (b"\x08\x09\x0f", CorruptFileError, "wire type 7"),
    (b"\x08\x09\x0c", CorruptFileError, "end-group"),
    (b"\x00\x01", CorruptFileError, "field number 0"),
    (model_bytes(field(5, raw_tensor(b"a", [1] * 65, 1, b"\0" * 4))), ResourceLimitError, "65 dimensions"),
    (model_bytes(field(5, field(2, b"\x01"))), CorruptFileError, "data_type: field 2 is length-delimited"),
])
def test_hostile_models(data, exc, msg):
    with pytest.raises(exc, match=msg) as e:
        mfparse.open(data, format="onnx")
    assert e.value.offset is not None


def test_groups_unknown_fields_and_repeated_graph():
    t1 = raw_tensor(b"a", [1], 1, struct.pack("<f", 1.5))
    t2 = raw_tensor(b"b", [1], 7, struct.pack("<q", -3))
    group = varint(99 << 3 | 3) + vfield(1, 5) + varint(99 << 3 | 4)     # a group, skipped
    unknown = vfield(1000, 7) + varint(1001 << 3 | 5) + b"abcd" + varint(1002 << 3 | 1) + b"12345678"
    data = b"\x08\x09" + group + unknown + field(7, field(5, t1) + field(2, b"first")) + field(7, field(5, t2))
    ref = onnx.load_from_string(data)
    with mfparse.open(data, format="onnx") as m:
        assert m.keys() == [t.name for t in ref.graph.initializer] == ["a", "b"]
        assert float(m["a"][0]) == 1.5 and int(m["b"][0]) == -3


def test_many_repeated_names(seed):
    import random

    rnd = random.Random(seed)
    names = [f"n{rnd.randrange(300)}" for _ in range(3000)]
    data = model_bytes(*[field(5, raw_tensor(n.encode(), [1], 1, b"\0\0\0\0")) for n in names])
    with mfparse.open(data, format="onnx") as m:
        keys = m.keys()
    assert len(set(keys)) == 3000
    first = {}
    for i, n in enumerate(names):
        first.setdefault(n, i)
    assert all(keys[i] == n for n, i in first.items())                 # the first keeps its name
    assert all(keys[i].startswith(n + "#") for i, n in enumerate(names) if first[n] != i)
    # one name 20,000 times: w, w#1, ... w#19999 (renaming stays linear)
    t = field(5, raw_tensor(b"w", [1], 1, b"\0\0\0\0"))
    with mfparse.open(model_bytes(t * 20000), format="onnx") as m:
        assert m.keys()[-1] == "w#19999" and len(set(m.keys())) == 20000


def test_nesting_bomb_is_a_clean_error():
    g = field(1, field(4, b"Identity"))
    for _ in range(120):   # graphs inside node attributes inside graphs ...
        g = field(1, field(4, b"If") + field(5, field(1, b"then_branch") + field(6, g)))
    with pytest.raises(ResourceLimitError, match="nested deeper"):
        mfparse.open(model_bytes(g), format="onnx")


def test_duplicate_names_are_made_unique():
    t = raw_tensor(b"w", [1], 1, b"\0\0\x80\x3f")
    with mfparse.open(model_bytes(field(5, t), field(5, t)), format="onnx") as m:
        assert m.keys() == ["w", "w#1"]


def test_robustness(tmp_path, seed):
    w = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "W")
    h = helper.make_tensor("h", TP.FLOAT16, [3], [1, 2, 3])
    s = helper.make_tensor("s", TP.STRING, [2], [b"x", b"yz"])
    then_g = helper.make_graph([helper.make_node("Constant", [], ["c"], value_ints=[1, 2])], "t", [],
                               [helper.make_tensor_value_info("c", TP.INT64, [2])])
    sparse = helper.make_sparse_tensor(numpy_helper.from_array(np.array([1.5], np.float32), "sp"),
                                       numpy_helper.from_array(np.array([1], np.int64), "spi"), [4])
    g = helper.make_graph([helper.make_node("If", ["b"], ["c"], then_branch=then_g, else_branch=then_g),
                           helper.make_node("Constant", [], ["k"], value=helper.make_tensor("k", TP.INT8, [2], [1, -1]))],
                          "g", [helper.make_tensor_value_info("b", TP.BOOL, ["N"])],
                          [helper.make_tensor_value_info("c", TP.INT64, [2])], [w, h, s], sparse_initializer=[sparse])
    p = tmp_path / "r.onnx"
    onnx.save(helper.make_model(g, producer_name="robust"), str(p))
    r = check_robust(p, fmt="onnx", seed=seed, flips=400)
    assert r.flipped["ok"] > 0 and r.flipped["error"] > 0 and r.truncated["error"] > 0
    q = tmp_path / "t.pb"
    onnx.save_tensor(helper.make_tensor("t", TP.BFLOAT16, [4], [1, 2, 3, 4]), str(q))
    r = check_robust(q, fmt="onnx-tensor", seed=seed, flips=200)
    assert r.flipped["ok"] > 0 and r.truncated["error"] > 0


#: where mfparse and onnx.load + numpy_helper part ways on damaged models, on purpose
ONNX_KNOWN = [
    Known("stricter", r"not the type the schema declares",
          "a known field with another wire type: protobuf's parser keeps it as an unknown field; mfparse refuses "
          "it (no writer produces it, and skipping it would hide the damage)"),
    Known("stricter", r"varint longer than 64 bits",
          "a varint of more than ten bytes: protobuf's Python parser accepts it, mfparse refuses it"),
    Known("stricter", r"holds \d+ values in \w+_data but its type and shape need",
          "a typed field with more values than the shape holds: numpy_helper reads what it needs, mfparse refuses "
          "the tensor (the count and the shape disagree: damage)"),
    Known("laxer", r"DecodeError: Error parsing message",
          "damage inside a field mfparse skips without decoding it (say, a packed float list whose length is not "
          "a multiple of 4 in an attribute mfparse does not list): protobuf decodes every field and refuses the "
          "model"),
    Known("laxer", r"UnicodeDecodeError",
          "a STRING tensor element that is not UTF-8: numpy_helper.to_array decodes it and raises, mfparse hands "
          "out the stored bytes"),
]


def test_mutants_agree_with_onnx(tmp_path, seed):
    """Truncations and byte flips of a small model: onnx.load + numpy_helper and mfparse both
    fail, or list the same tensors (names, dtypes, shapes, values)."""
    tensors = [numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "W"),
               helper.make_tensor("h", TP.FLOAT16, [3], [1, 2, 3]),
               numpy_helper.from_array(np.array([1, -2, 3], np.int8), "i8"),
               helper.make_tensor("s", TP.STRING, [2], [b"x", b"yz"])]
    k = helper.make_node("Constant", [], ["k"], value=helper.make_tensor("kv", TP.INT64, [2], [1, -1]))
    g = helper.make_graph([k], "g", [helper.make_tensor_value_info("b", TP.BOOL, ["N"])],
                          [helper.make_tensor_value_info("k", TP.INT64, [2])], tensors)
    p = tmp_path / "d.onnx"
    onnx.save(helper.make_model(g, producer_name="diff"), str(p))
    r = check_robust(p, fmt="onnx", seed=seed, flips=300, ref="onnx", known=ONNX_KNOWN)
    assert r.agree > 0 and r.both_error > 0 and r.flipped["ok"] > 0


def test_reading_needs_neither_onnx_nor_tensorflow(tmp_path):
    import subprocess
    import sys

    from helpers import ROOT

    p = tmp_path / "m.onnx"
    onnx.save(model_with([helper.make_tensor("h", TP.FLOAT16, [2], [1, 2])]), str(p))
    code = (f"import sys, mfparse\nwith mfparse.open({str(p)!r}) as m: m['h']; m.graph\n"
            f"with mfparse.open({os.path.join(ROOT, 'tests', 'fixtures', 'tf', 'module_sm')!r}) as m: m.graph\n"
            "print([k for k in ('onnx', 'tensorflow', 'google.protobuf', 'torch') if k in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": ROOT})
    assert out.stdout.strip() == "[]"


# ---- sub-byte types: logical values like numpy_helper, packed bytes on request ------------------

@pytest.mark.parametrize("dt", [TP.INT4, TP.UINT4, TP.FLOAT4E2M1, TP.INT2, TP.UINT2, TP.FLOAT6E2M3])
@pytest.mark.parametrize("raw", [True, False], ids=["raw_data", "int32_data"])
def test_sub_byte_initializers_read_as_values(tmp_path, dt, raw):
    import ml_dtypes

    shapes = {"odd": (7,), "matrix": (3, 3), "six": (6,), "one": (1,), "empty": (0, 4)}
    tensors = [helper.make_tensor(name, dt, shape, sample(dt, shape).reshape(-1), raw=False) if not raw
               else numpy_helper.from_array(sample(dt, shape), name) for name, shape in shapes.items()]
    p = tmp_path / "sub.onnx"
    onnx.save(model_with(tensors), str(p))
    ref = {t.name: t for t in onnx.load(str(p)).graph.initializer}
    assert all(t.HasField("raw_data") == raw for t in ref.values())
    want_dtype = {TP.INT4: ml_dtypes.int4, TP.UINT4: ml_dtypes.uint4, TP.FLOAT4E2M1: ml_dtypes.float4_e2m1fn,
                  TP.INT2: ml_dtypes.int2, TP.UINT2: ml_dtypes.uint2, TP.FLOAT6E2M3: ml_dtypes.float6_e2m3fn}[dt]
    with mfparse.open(p) as m:
        for name, shape in shapes.items():
            info = m.info(name)
            want = numpy_helper.to_array(ref[name])
            got = m[name]
            assert got.dtype == np.dtype(want_dtype) == want.dtype and got.shape == shape == want.shape
            np.testing.assert_array_equal(got.astype(np.float32), want.astype(np.float32))
            bits = PACKED[dt]
            assert info.nbytes == (int(np.prod(shape)) * bits + 7) // 8
            stored = m.read(info, packed=True)
            assert stored.dtype == np.uint8 and stored.tobytes() == pack_bits(want.view(np.uint8), bits)


def test_int4_in_int32_data_issue_example(tmp_path):
    """The reported file: an int4 (6,) initializer in int32_data read as 3 packed bytes."""
    vals = np.array([-8, -3, 0, 1, 5, 7], dtype=np.int8)
    t = helper.make_tensor("w", TP.INT4, (6,), vals, raw=False)
    assert len(t.int32_data) == 3 and not t.HasField("raw_data")
    p = tmp_path / "i4.onnx"
    onnx.save(model_with([t]), str(p))
    with mfparse.open(p) as m:
        a = m["w"]
        assert str(a.dtype) == "int4" and a.shape == (6,) and a.astype(np.int8).tolist() == vals.tolist()
        assert m.read(m.info("w"), packed=True).tolist() == [0xD8, 0x10, 0x75]


def test_sub_byte_data_shorter_than_its_shape(tmp_path):
    t = helper.make_tensor("w", TP.INT4, (6,), np.zeros(6, np.int8), raw=False)
    del t.int32_data[2:]
    p = tmp_path / "short.onnx"
    onnx.save(model_with([t]), str(p))
    with pytest.raises(ValueError):
        numpy_helper.to_array(onnx.load(str(p)).graph.initializer[0])
    with pytest.raises(CorruptFileError, match="holds 2 values in int32_data but its type and shape need 3"):
        mfparse.open(p)
    # the unpacking itself refuses too few bytes (a reader that did not check)
    from mfparse.dtypes import unpack

    with pytest.raises(CorruptFileError, match="int4 data of 2 bytes is too short for 6 elements"):
        unpack(np.zeros(2, np.uint8), "int4", (6,), 100)


def test_sub_byte_tensors_convert_and_diff(tmp_path):
    """Writers take the packed bytes (read(packed=True)), diff compares the values: an ONNX file
    with int4 / float4e2m1 initializers converts to ONNX unchanged, and a changed int4 value is
    reported by its size."""
    import ml_dtypes

    from mfparse.convert import convert
    from mfparse.diff import diff

    def write(p, w):
        f4 = numpy_helper.from_array(np.array([[1.5, -6, 0.5], [2, 3, -1]], ml_dtypes.float4_e2m1fn), "f4")
        onnx.save(model_with([helper.make_tensor("w", TP.INT4, (7,), w, raw=False), f4]), str(p))

    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    write(a, np.array([-8, -3, 0, 1, 5, 7, 2], np.int8))
    write(b, np.array([-8, -3, 0, 1, 5, 4, 2], np.int8))
    c = tmp_path / "c.onnx"
    convert(str(a), str(c))
    with mfparse.open(a) as ma, mfparse.open(c) as mc:
        for name in ("w", "f4"):
            assert mc[name].dtype == ma[name].dtype and mc[name].tobytes() == ma[name].tobytes()
    same = {t.name: t for t in diff(str(a), str(c)).tensors}
    assert same["w"].identical_bytes and same["f4"].identical_bytes
    changed = {t.name: t for t in diff(str(a), str(b)).tensors}
    assert not changed["w"].identical_bytes and changed["w"].max_abs == 3.0 and changed["w"].mismatched == 1
    assert changed["w"].note is None and changed["f4"].identical_bytes
