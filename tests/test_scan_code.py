"""`mfparse scan` on the code that loading a model runs besides pickles (issue 16, classes 2, 4, 5,
9, 10): TensorFlow ops with side effects (SavedModels written by TensorFlow, GraphDefs built as
bytes), Keras gadgets (files written by Keras 3 / tf_keras, configs built as JSON), TorchScript
code (torch.jit.script / trace / save), TorchServe archives, joblib arrays (joblib.dump).
Benign look-alikes from the same writers must stay safe."""

from __future__ import annotations

import base64
import io
import json
import os
import zipfile

import numpy as np
import pytest

from pickle_asm import call_pickle, zip_bytes
from scan_helpers import assert_unsafe, has, scan

# torch 2.13 deprecates torch.jit.script / trace, which still write the TorchScript archives people have
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*:DeprecationWarning")

FIX = os.path.join(os.path.dirname(__file__), "fixtures")
TF = os.path.join(FIX, "tf")
KERAS = os.path.join(FIX, "keras")


# ==========================================================================================
# TensorFlow
# ==========================================================================================

def test_side_effect_ops_written_by_tensorflow():
    r = scan(os.path.join(TF, "side_effects_sm", "saved_model.pb"))
    ops = {f.qualname: f for f in r.findings}
    assert set(ops) == {"PrintV2", "SqlDataset", "DecodeProtoV2", "CreateSummaryDbWriter", "DebugIdentity",
                        "DebugIdentityV2", "DebugNanCount", "MatchingFiles", "ReadFile", "SaveV2", "RestoreV2",
                        "ImmutableConst", "TensorSliceDataset", "PyFunc"}, str(r)
    assert all(f.severity == "dangerous" and f.kind == "op" for f in r.findings)
    assert "'file:///tmp/mfparse_fixture_print.txt'" in ops["PrintV2"].why
    assert "'/tmp/mfparse_fixture.db'" in ops["SqlDataset"].why
    assert "'grpc://debug.invalid:6064'" in ops["DebugIdentity"].why
    assert "'../../outside/ckpt'" in ops["RestoreV2"].why and "outside the model folder" in ops["RestoreV2"].why
    assert "'/var/log/syslog'" in ops["TensorSliceDataset"].why
    assert "__inference_files_" in ops["SaveV2"].why      # found in a library function
    with open(os.path.join(TF, "side_effects_sm", "saved_model.pb"), "rb") as fh:
        data = fh.read()
    for op, f in ops.items():
        assert op.encode() in data[f.offset:f.offset + 200]   # the NodeDef


def test_benign_io_written_by_tensorflow_is_safe():
    # tf.print to stderr, DecodeProtoV2 with local://, a lookup table from an asset file, an
    # in-memory cache, the SavedModel's own checkpoint save/restore
    for p in (os.path.join(TF, "benign_io_sm", "saved_model.pb"), os.path.join(TF, "module_sm", "saved_model.pb"),
              os.path.join(TF, "keras_sm", "saved_model.pb")):
        r = scan(p)
        assert r.verdict == "safe", str(r)


def test_graphdef_top_level_nodes():
    r = scan(os.path.join(TF, "side_effects_graph.pb"))
    assert {(f.qualname, f.why.split("'")[1]) for f in r.findings} == {("PrintV2", "leak"), ("SaveV2", "save_outside")}


def test_op_table_is_derived_from_the_registry():
    from mfparse.formats import tf, tf_ops

    assert tf_ops.TF_VERSION and len(tf_ops.OPS) > 60
    for op in ("PrintV2", "SqlDataset", "ExperimentalSqlDataset", "DecodeProtoV2", "EncodeProto",
               "CreateSummaryDbWriter", "DebugIdentity", "DebugNanCount", "DebugNumericSummary", "DebugIdentityV2",
               "DebugIdentityV3", "MatchingFiles", "MatchingFilesDataset", "Save", "SaveV2", "SaveSlices",
               "Restore", "RestoreV2", "MergeV2Checkpoints", "ReadFile", "WriteFile", "ImmutableConst", "PyFunc",
               "EagerPyFunc", "PyFuncStateless", "LoadAndRemapMatrix", "FixedLengthRecordDataset",
               "TFRecordDataset", "TextLineDataset"):
        assert op in tf_ops.OPS, op
    assert tf_ops.OPS["SaveV2"][2:] == ("outside", (("input", "prefix", 0),))
    assert tf_ops.OPS["PrintV2"][2:] == ("file_url", (("attr", "output_stream", None),))
    assert {"PyFunc", "ReadFile", "WriteFile"} <= set(tf.RISKY_OPS) and "SaveV2" not in tf.RISKY_OPS


# ---- GraphDefs built as bytes ---------------------------------------------------------------

def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _f(num: int, payload) -> bytes:
    payload = payload.encode() if isinstance(payload, str) else payload
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _v(num: int, value: int) -> bytes:
    return _varint(num << 3) + _varint(value)


def _attr(key: str, value: bytes) -> bytes:
    return _f(5, _f(1, key) + _f(2, value))


def _s(text: str) -> bytes:       # AttrValue.s
    return _f(2, text)


def _slist(*texts) -> bytes:      # AttrValue.list.s
    return _f(1, b"".join(_f(2, t) for t in texts))


def _node(name, op, inputs=(), **attrs) -> bytes:
    b = _f(1, name) + _f(2, op) + b"".join(_f(3, i) for i in inputs)
    for k, v in attrs.items():
        b += _attr(k, v)
    return b


def _const(name, *strings) -> bytes:
    tensor = _v(1, 7) + _f(2, _f(2, _v(1, len(strings))) if len(strings) != 1 else b"") + \
        b"".join(_f(8, s) for s in strings)
    return _node(name, "Const", dtype=_v(6, 7), value=_f(8, tensor))


def _graph(*nodes, functions=()) -> bytes:
    g = b"".join(_f(1, n) for n in nodes)
    if functions:
        g += _f(2, b"".join(_f(1, fn) for fn in functions))
    return g


def _function(name, args, *nodes) -> bytes:
    sig = _f(1, name) + b"".join(_f(2, _f(1, a) + _v(3, 7)) for a in args)
    return _f(1, sig) + b"".join(_f(3, n) for n in nodes)


def _scan_graph(tmp_path, data):
    p = tmp_path / "graph.pb"
    p.write_bytes(data)
    return scan(p)


def _save(prefix_input):
    return _node("save", "SaveV2", [prefix_input, "names", "slices", "t"])


@pytest.mark.parametrize("prefix,unsafe", [
    ("variables/variables", False), ("model", False), ("ckpt/model.ckpt", False),
    ("/tmp/evil/ckpt", True), ("../../etc/ckpt", True), ("gs://bucket/ckpt", True), ("file:///tmp/x", True),
    ("~/.ssh/x", True), ("C:\\Windows\\x", True), ("ok/../../x", True), ("s3://b/k", True),
])
def test_checkpoint_prefix_constants(tmp_path, prefix, unsafe):
    r = _scan_graph(tmp_path, _graph(_const("p", prefix), _node("pid", "Identity", ["p"]), _save("pid:0")))
    if unsafe:
        f = assert_unsafe(r, "dangerous", kind="op", glob="tensorflow.ops.SaveV2")
        assert repr(prefix) in f.why and "outside the model folder" in f.why
        assert f.offset == (tmp_path / "graph.pb").read_bytes().index(b"\x0a\x04save") 
    else:
        assert r.verdict == "safe", str(r)


def test_checkpoint_ops_in_functions(tmp_path):
    own = _function("__inference_save_1", ["file_prefix"], _node("restore", "RestoreV2", ["file_prefix", "n", "s"]))
    joined = _function("__inference_restore_2", ["file_prefix"], _const("dir", "/etc/"),
                       _node("join", "StringJoin", ["dir:output:0", "file_prefix"]),
                       _node("restore", "RestoreV2", ["join:output:0", "n", "s"]))
    r = _scan_graph(tmp_path, _graph(_node("x", "NoOp"), functions=[own, joined]))
    f = assert_unsafe(r, "dangerous", glob="tensorflow.ops.RestoreV2")
    assert "'__inference_restore_2/restore'" in f.why and "'/etc/'" in f.why
    assert len(r.findings) == 1


@pytest.mark.parametrize("attrs,unsafe", [
    ({"output_stream": _s("stderr")}, False), ({"output_stream": _s("log(warning)")}, False),
    ({"output_stream": _s("file:///tmp/leak.txt")}, True),
])
def test_print_v2(tmp_path, attrs, unsafe):
    r = _scan_graph(tmp_path, _graph(_node("p", "PrintV2", ["s"], **attrs)))
    assert r.verdict == ("unsafe" if unsafe else "safe"), str(r)


@pytest.mark.parametrize("op", ["DebugIdentity", "DebugIdentityV2", "DebugIdentityV3", "DebugNanCount",
                                "DebugNumericSummary"])
def test_debug_ops(tmp_path, op):
    assert _scan_graph(tmp_path, _graph(_node("d", op, ["x"], debug_urls=_slist()))).verdict == "safe"
    r = _scan_graph(tmp_path, _graph(_node("d", op, ["x"], debug_urls=_slist("file:///tmp/dump", "grpc://h:1"))))
    f = assert_unsafe(r, "dangerous", glob=f"tensorflow.ops.{op}")
    assert "'file:///tmp/dump'" in f.why and "'grpc://h:1'" in f.why


@pytest.mark.parametrize("source,severity", [("local://", None), ("bytes://\x0a\x00", None),
                                             ("descriptors.bin", "suspicious"), ("/tmp/evil.desc", "dangerous")])
def test_proto_descriptor_source(tmp_path, source, severity):
    for op in ("DecodeProtoV2", "EncodeProto"):
        r = _scan_graph(tmp_path, _graph(_node("d", op, ["x"], descriptor_source=_s(source))))
        if severity is None:
            assert r.verdict == "safe", str(r)
        else:
            assert_unsafe(r, severity, glob=f"tensorflow.ops.{op}")


def test_datasets_with_file_names_in_the_graph(tmp_path):
    # constant file names: suspicious (the graph names its own input files), dangerous outside
    r = _scan_graph(tmp_path, _graph(_const("f", "train.tfrecord"), _node("d", "TFRecordDatasetV2", ["f", "c", "b"])))
    assert_unsafe(r, "suspicious", glob="tensorflow.ops.TFRecordDatasetV2")
    r = _scan_graph(tmp_path, _graph(_const("f", "a.txt", "/etc/shadow"), _node("d", "TextLineDataset", ["f"])))
    assert_unsafe(r, "dangerous", glob="tensorflow.ops.TextLineDataset")
    # fed by a placeholder: the caller names the files
    r = _scan_graph(tmp_path, _graph(_node("f", "Placeholder"), _node("d", "FixedLengthRecordDataset", ["f"])))
    assert r.verdict == "safe", str(r)
    # CacheDataset: "" caches in memory
    assert _scan_graph(tmp_path, _graph(_const("f", ""), _node("c", "CacheDataset", ["in", "f"]))).verdict == "safe"
    r = _scan_graph(tmp_path, _graph(_const("f", "/tmp/cache"), _node("c", "CacheDatasetV2", ["in", "f", "m"])))
    assert_unsafe(r, "dangerous", glob="tensorflow.ops.CacheDatasetV2")


@pytest.mark.parametrize("op,severity", [("PyFunc", "dangerous"), ("EagerPyFunc", "dangerous"),
                                         ("WriteFile", "dangerous"), ("SqlDataset", "dangerous"),
                                         ("ExperimentalSqlDataset", "dangerous"), ("MatchingFilesDataset", "suspicious"),
                                         ("ReadFile", "suspicious"), ("WholeFileReaderV2", "suspicious"),
                                         ("RpcClient", "dangerous"), ("CreateSummaryFileWriter", "dangerous")])
def test_ops_that_are_always_findings(tmp_path, op, severity):
    r = _scan_graph(tmp_path, _graph(_node("n", op, ["a"])))
    assert_unsafe(r, severity, glob=f"tensorflow.ops.{op}")


# ==========================================================================================
# Keras
# ==========================================================================================

def _keras_zip(config: dict, metadata=True, weights=True) -> bytes:
    members = {"config.json": json.dumps(config).encode()}
    if metadata:
        members["metadata.json"] = json.dumps({"keras_version": "3.15.1"}).encode()
    if weights:
        with open(os.path.join(KERAS, "k3_model.weights.h5"), "rb") as f:
            members["model.weights.h5"] = f.read()
    return zip_bytes(members, zipfile.ZIP_DEFLATED)


def _model(*layers) -> dict:
    return {"module": "keras", "class_name": "Sequential", "config": {"name": "s", "layers": [
        {"module": "keras.layers", "class_name": "InputLayer", "config": {"batch_shape": [None, 1]}}, *layers]}}


def _layer(cls, **config) -> dict:
    return {"module": "keras.layers", "class_name": cls, "config": {"name": cls.lower(), **config},
            "registered_name": None}


def test_keras_files_written_by_keras():
    assert scan(os.path.join(KERAS, "k3_lookup_assets.keras")).verdict == "safe"
    assert scan(os.path.join(KERAS, "k3_model.keras")).verdict == "safe"
    f = assert_unsafe(scan(os.path.join(KERAS, "k3_tfsm.keras")), "dangerous", glob="keras.layers.TFSMLayer")
    assert "'/tmp/mfparse_fixture_tfsm'" in f.why and "CVE-2026-1462" in f.why and "keras.models.load_model" in f.why
    assert f.member == "config.json"


@pytest.mark.parametrize("cls,key", [("StringLookup", "vocabulary"), ("IntegerLookup", "vocabulary"),
                                     ("TextVectorization", "vocabulary"), ("BytePairTokenizer", "merges"),
                                     ("SentencePieceTokenizer", "proto"), ("WordPieceTokenizer", "vocabulary")])
def test_keras_layers_reading_files(cls, key):
    cfg = _model(_layer(cls, **{key: "/etc/passwd"}))
    f = assert_unsafe(scan(_keras_zip(cfg)), "dangerous", kind="keras", glob=f"keras.layers.{cls}.{key}")
    assert "'/etc/passwd'" in f.why and "CVE-2025-12058" in f.why
    # what Keras writes: null (the vocabulary is an asset in the archive) or the terms themselves
    assert scan(_keras_zip(_model(_layer(cls, **{key: None})))).verdict == "safe"
    assert scan(_keras_zip(_model(_layer(cls, **{key: ["a", "b"]})))).verdict == "safe"


def _torch_module_bytes() -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(torch.nn.Linear(2, 2), buf)   # what TorchModuleWrapper.get_config pickles
    return buf.getvalue()


def test_keras_torch_module_wrapper_payload_is_scanned():
    payload = _torch_module_bytes()   # base64 in the config, as Keras >= 3.9 writes it
    r = scan(_keras_zip(_model(_layer("TorchModuleWrapper", module=base64.b64encode(payload).decode()))))
    f = assert_unsafe(r, "dangerous", glob="keras.layers.TorchModuleWrapper")
    assert "CVE-2025-49655" in f.why and "the pickle was scanned" in f.why
    # the module pickle itself: torch.nn classes, judged like any torch.save'd module
    inner = has(r, glob="torch.nn.modules.linear.Linear")
    assert inner and inner[0].member.startswith("config.json!<TorchModuleWrapper module at config.layers[1]>")


def test_keras_torch_module_wrapper_with_a_payload():
    evil = call_pickle("os", "system", "id")
    r = scan(_keras_zip(_model(_layer("TorchModuleWrapper", module=base64.b64encode(evil).decode()))))
    assert_unsafe(r, "dangerous", glob="os.system")
    # older Keras: a serialized bytes object, {"class_name": "__bytes__", "config": {"value": text}}
    text = "cos\nsystem\n(S'id'\ntR."   # protocol 0: text that survives Keras' utf-8 round trip
    r = scan(_keras_zip(_model(_layer("TorchModuleWrapper", module={"class_name": "__bytes__",
                                                                     "config": {"value": text}}))))
    assert_unsafe(r, "dangerous", glob="os.system")


def test_keras_torch_module_wrapper_written_by_keras(tmp_path):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip("keras runs another backend")
    import torch

    import warnings

    p = tmp_path / "m.keras"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # keras' torch backend vs numpy 2's __array__
        model = keras.Sequential([keras.Input((3,)), keras.layers.TorchModuleWrapper(torch.nn.Linear(3, 2))])
        model.save(p)
    r = scan(p)
    assert_unsafe(r, "dangerous", glob="keras.layers.TorchModuleWrapper", why="the pickle was scanned")
    assert has(r, glob="torch.nn.modules.linear.Linear")


def test_keras_archive_without_metadata_or_weights():
    lam = {"module": "keras.layers", "class_name": "Lambda", "config": {"function": {"class_name": "__lambda__"}}}
    r = scan(_keras_zip(_model(lam), metadata=False, weights=False))
    assert_unsafe(r, "dangerous", glob="keras.layers.Lambda")
    r = scan(_keras_zip(_model(_layer("Dense", units=2)), metadata=False, weights=False))
    assert r.verdict == "safe" and any("no metadata.json" in n for n in r.notes), str(r)
    # a zip whose config.json is not a Keras config (a Hugging Face config) is left alone
    r = scan(zip_bytes({"config.json": json.dumps({"architectures": ["BertModel"], "module": "os"}).encode()}))
    assert r.verdict == "safe" and not any("Keras" in n for n in r.notes), str(r)


def test_keras_metadata_pb_written_by_tf_keras():
    r = scan(os.path.join(KERAS, "k2_sm_lambda", "keras_metadata.pb"))
    f = assert_unsafe(r, "dangerous", glob="keras.layers.Lambda")
    assert "keras_metadata.pb node" in f.why and "tf.keras.models.load_model" in f.why
    assert scan(os.path.join(KERAS, "k2_sm_dense", "keras_metadata.pb")).verdict == "safe"


def test_keras_metadata_pb_built_as_bytes(tmp_path):
    meta = json.dumps(_layer("StringLookup", vocabulary="http://evil.invalid/vocab.txt"))
    node = _v(2, 1) + _f(3, "root.layer-0") + _f(4, "_tf_keras_layer") + _f(5, meta)
    p = tmp_path / "keras_metadata.pb"
    p.write_bytes(_f(1, node))
    assert_unsafe(scan(p), "dangerous", glob="keras.layers.StringLookup.vocabulary")
    p.write_bytes(_f(1, _v(2, 1) + _f(5, "{not json")))
    assert scan(p).verdict == "error"


# ==========================================================================================
# TorchScript
# ==========================================================================================

import torch  # noqa: E402


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.l = torch.nn.Linear(3, 2)

    def forward(self, x):
        return torch.relu(self.l(x)).sum()


class _State(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.ones(2)

    @torch.jit.export
    def __getstate__(self):
        return (self.w, self.training)

    @torch.jit.export
    def __setstate__(self, st: tuple[torch.Tensor, bool]):
        self.w = st[0]
        self.training = st[1]

    def forward(self, x):
        return x + self.w


class _Reader(torch.nn.Module):
    """Reads a file and writes another while torch.jit.load restores it."""

    def __init__(self):
        super().__init__()
        self.w = torch.ones(2)

    @torch.jit.export
    def __getstate__(self):
        return (self.w, self.training)

    @torch.jit.export
    def __setstate__(self, st: tuple[torch.Tensor, bool]):
        self.w = torch.from_file("/etc/hostname", False, 2, dtype=torch.uint8).float()
        torch.save(self.w, "/tmp/mfparse_never_written.pt")
        self.training = st[1]

    def forward(self, x):
        return x + self.w


class _Saver(torch.nn.Module):
    def forward(self, x):
        torch.save(x, "/tmp/mfparse_never_written.pt")
        return x


def _jit_bytes(m) -> bytes:
    buf = io.BytesIO()
    torch.jit.save(m, buf)
    return buf.getvalue()


def test_torchscript_benign_is_safe():
    # nn.Sequential's saved code reaches its submodules with getattr(self, "0"): TorchScript's own getattr
    seq = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU())
    for m in (torch.jit.script(_Net()), torch.jit.trace(_Net(), torch.ones(1, 3)), torch.jit.script(_State()),
              torch.jit.script(seq), torch.jit.trace(seq, torch.ones(1, 3))):
        r = scan(_jit_bytes(m))
        assert r.verdict == "safe", str(r)
        assert any("every call judged" in n for n in r.notes)


def test_torchscript_file_ops_in_setstate():
    r = scan(_jit_bytes(torch.jit.script(_Reader())))
    fr = assert_unsafe(r, "dangerous", kind="code", glob="torchscript.torch.from_file")
    fs = assert_unsafe(r, "dangerous", kind="code", glob="torchscript.torch.save")
    for f in (fr, fs):
        assert "/code/__torch__/" in f.member and "__setstate__" in f.why and "torch.jit.load" in f.why


def test_torchscript_file_ops_in_forward():
    data = _jit_bytes(torch.jit.script(_Saver()))
    f = assert_unsafe(scan(data), "dangerous", kind="code", glob="torchscript.torch.save")
    assert "when forward() is called" in f.why
    # the offset is the line's, in the member (deflated by torch: an offset into the member)
    z = zipfile.ZipFile(io.BytesIO(data))
    code = z.read(f.member)
    assert code[f.offset:].lstrip().startswith(b"torch.save") or b"torch.save" in code[f.offset:].split(b"\n")[0]


def _replace_code(data: bytes, new_code: bytes) -> bytes:
    z = zipfile.ZipFile(io.BytesIO(data))
    members = []
    for info in z.infolist():
        body = z.read(info)
        if "/code/" in info.filename and info.filename.endswith(".py"):
            body = new_code
        members.append((info.filename, body))
    return zip_bytes(members)


@pytest.mark.parametrize("call,severity,glob", [
    ('ops.aten.from_file("/etc/passwd", False, 4)', "dangerous", "torchscript.ops.aten.from_file"),
    ('torch.ops.aten.save(x, "/tmp/x")', "dangerous", "torchscript.ops.aten.save"),
    ('ops.load_library("/tmp/evil.so")', "dangerous", "torchscript.ops.load_library"),
    ('torch.distributed.rpc.rpc_sync("w", f, (x,))', "dangerous", "torchscript.torch.distributed.rpc.rpc_sync"),
    ('open("/etc/passwd")', "suspicious", "torchscript.open"),
    ('__import__("os")', "suspicious", "torchscript.__import__"),
    ('getattr(self, st[0])', "suspicious", "torchscript.getattr"),      # only a literal name is TorchScript's
    ('getattr(self, "w", None)', "suspicious", "torchscript.getattr"),
])
def test_torchscript_code_written_by_hand(call, severity, glob):
    base = _jit_bytes(torch.jit.script(_State()))
    code = (b"class _State(Module):\n  __parameters__ = []\n  __buffers__ = []\n  w : Tensor\n"
            b"  def forward(self: __torch__._State, x: Tensor) -> Tensor:\n    return x\n"
            b"  def __setstate__(self: __torch__._State, st: Tuple[Tensor, bool]) -> NoneType:\n"
            b"    _0 = " + call.encode() + b"\n    return None\n")
    r = scan(_replace_code(base, code))
    f = assert_unsafe(r, severity, kind="code", glob=glob)
    assert "line 8 of __setstate__" in f.why
    data = _replace_code(base, code)
    assert data[f.offset:f.offset + 9] == b"    _0 = "   # stored: a file offset


def test_torchscript_code_that_does_not_parse_and_custom_ops():
    base = _jit_bytes(torch.jit.script(_State()))
    r = scan(_replace_code(base, b"class X(Module:\n  pass\n"))
    assert_unsafe(r, "suspicious", kind="code", why="does not parse")
    r = scan(_replace_code(base, b"def f(x: Tensor) -> Tensor:\n  return ops.torchvision.nms(x, x, 0.5)\n"))
    assert r.verdict == "safe" and any("custom ops or classes of torchvision" in n for n in r.notes), str(r)


# ==========================================================================================
# TorchServe archives
# ==========================================================================================

def _mar(extra=None, handler="handler.py", with_py=True) -> bytes:
    manifest = {"createdOn": "01/01/2025 00:00:00", "runtime": "python", "archiverVersion": "0.12.0",
                "model": {"modelName": "m", "serializedFile": "model.pt", "handler": handler, "modelVersion": "1.0"}}
    members = {"MAR-INF/MANIFEST.json": json.dumps(manifest).encode(),
               "model.pt": _jit_bytes(torch.jit.script(_Net()))}
    if with_py:
        members["handler.py"] = b"from ts.torch_handler.base_handler import BaseHandler\nclass H(BaseHandler):\n  pass\n"
    members.update(extra or {})
    return zip_bytes(members)


def test_torchserve_archive_carries_code():
    r = scan(_mar())
    f = assert_unsafe(r, "suspicious", kind="code", glob="torchserve.handler.py")
    assert "handler.py" in f.why and "torchserve imports" in f.why
    assert any("TorchServe model archive" in n and "'model.pt'" in n for n in r.notes)
    assert not has(r, member="model.pt")   # the TorchScript model inside is scanned and clean


def test_torchserve_archive_pickles_are_judged():
    r = scan(_mar({"extra/weights.pkl": call_pickle("os", "system", "id")}))
    assert_unsafe(r, "dangerous", glob="os.system", member="extra/weights.pkl")
    r = scan(_mar(handler="image_classifier", with_py=False))   # a built-in handler: no code carried
    assert r.verdict == "safe", str(r)
    r = scan(_mar({"requirements.txt": b"evil-package\n"}))
    assert has(r, "suspicious", kind="code")


# ==========================================================================================
# joblib
# ==========================================================================================

class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/mfparse_never",))


def test_joblib_numeric_arrays_are_safe(tmp_path):
    joblib = pytest.importorskip("joblib")
    p = tmp_path / "a.joblib"
    for obj in (np.arange(10), {"w": np.ones((3, 4), np.float32), "b": np.zeros(4, np.int8), "n": 3},
                [np.array(["ab", "c"]), np.array([1 + 2j]), np.empty((0, 3))]):
        joblib.dump(obj, p)
        r = scan(p)
        assert r.verdict == "safe", str(r)
    joblib.dump(np.arange(100), p, compress=3)
    assert scan(p).verdict == "safe"


def test_joblib_object_arrays_are_still_judged(tmp_path):
    joblib = pytest.importorskip("joblib")
    p = tmp_path / "a.joblib"
    joblib.dump({"x": np.arange(3), "o": np.array([1, _Evil()], dtype=object)}, p)
    assert_unsafe(scan(p), glob=lambda g: g in ("os.system", "posix.system", "nt.system"))
    joblib.dump(np.array([1, 2.5, "s", None], dtype=object), p)
    assert scan(p).verdict == "safe"


def test_joblib_wrapper_outside_joblib_is_still_a_finding():
    # a plain pickle naming the wrapper (no raw array after it: not what joblib writes)
    r = scan(call_pickle("joblib.numpy_pickle", "NumpyArrayWrapper"))
    assert_unsafe(r, "suspicious", glob="joblib.numpy_pickle.NumpyArrayWrapper")


# ==========================================================================================
# MLflow
# ==========================================================================================

_MLMODEL = """artifact_path: model
flavors:
  python_function:
    env:
      conda: conda.yaml
    loader_module: {loader}
    python_version: 3.11.7
{extra}  sklearn:
    code: null
    pickled_model: model.pkl
    serialization_format: cloudpickle
    sklearn_version: 1.5.0
mlflow_version: 2.16.0
"""


def test_mlflow_mlmodel(tmp_path):
    p = tmp_path / "MLmodel"
    p.write_text(_MLMODEL.format(loader="mlflow.sklearn", extra=""))
    r = scan(p)
    assert r.verdict == "safe" and any("MLflow MLmodel" in n for n in r.notes), str(r)
    p.write_text(_MLMODEL.format(loader="my_loader", extra="    code: code\n"))
    r = scan(p)
    f = assert_unsafe(r, "suspicious", kind="code", glob="mlflow.pyfunc.my_loader")
    assert p.read_bytes()[f.offset:f.offset + 9] == b"my_loader"
    assert has(r, "suspicious", glob="mlflow.pyfunc.code")


def test_torch_package_carries_python(tmp_path):
    import warnings

    import torch.package

    p = tmp_path / "pkg.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about TypedStorage
        with torch.package.PackageExporter(str(p)) as e:
            e.extern("torch.**")
            e.intern("mymod")
            e.save_source_string("mymod", "import os\n\ndef f():\n    return os.getcwd()\n")
            e.save_pickle("model", "model.pkl", {"w": torch.ones(2)})
    r = scan(p)
    f = assert_unsafe(r, "suspicious", kind="code", glob="torch.package.pkg/mymod.py")
    assert "PackageImporter" in f.why
