"""TensorFlow: SavedModels, checkpoints and GraphDefs written by TensorFlow itself
(tests/fixtures/tf/make_fixtures.py), compared with what TensorFlow read back from them
(expected.json, saved_model_cli.txt); hostile SSTables and bundles built as bytes."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import mfparse
from helpers import ROOT, assert_view_of, check_robust
from helpers import field as _field
from helpers import varint as _varint
from helpers import vfield as _vfield
from mfparse import _native
from mfparse.errors import CorruptFileError, ResourceLimitError, UnsupportedFormatError
from mfparse.formats import tf as tfmod

FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "tf")
with open(os.path.join(FIX, "expected.json")) as _f:
    EXPECTED = json.load(_f)


def _read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def digest(a) -> dict:
    a = np.asarray(a)
    if a.dtype == object:
        return {"dtype": "string", "shape": list(a.shape), "strings": [x.hex() for x in a.reshape(-1)]}
    return {"dtype": a.dtype.name, "shape": list(a.shape),
            "sha256": hashlib.sha256(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()).hexdigest()}


def check_tensors(m, ref: dict, names=None):
    """Every reference tensor is listed with TF's dtype and shape and reads back TF's bytes."""
    infos = {t.name: t for t in m.tensors()}
    for name, want in ref.items():
        info = infos[name]
        assert list(info.shape) == want["shape"], name
        assert info.dtype == want["dtype"], name
        got = digest(m[name])
        if want["dtype"].startswith("q"):         # TF's quantized types read as their integer storage
            got["dtype"] = want["dtype"]
        assert got == want, name
    return infos


CHECKPOINTS = [("ckpt", "ckpt"), ("sharded", "sharded/model"), ("tf1", "tf1"), ("snappy", "snappy/ckpt-2.index"),
               ("bigendian", "bigendian/be")]


@pytest.mark.parametrize("key,path", CHECKPOINTS, ids=[c[0] for c in CHECKPOINTS])
def test_checkpoints_against_tensorflow(key, path):
    with mfparse.open(os.path.join(FIX, path)) as m:
        assert m.format == "tf-checkpoint"
        assert sorted(m.keys()) == sorted(EXPECTED[key]["tensors"])
        check_tensors(m, EXPECTED[key]["tensors"])
        assert tfmod.verify(m) == []


def test_checkpoint_layouts():
    with mfparse.open(os.path.join(FIX, "ckpt")) as m:      # the folder: latest = ckpt-2
        assert m.path.endswith("ckpt-2.index")
        v = m["v/.ATTRIBUTES/VARIABLE_VALUE"]
        assert v.base is not None and not v.flags.writeable   # zero-copy view of the data file
        assert m.info("v/.ATTRIBUTES/VARIABLE_VALUE").storage == "ckpt-2.data-00000-of-00001"
        assert m.metadata == {"num_shards": 1, "endianness": "little", "producer": 1,
                              "data_files": ["ckpt-2.data-00000-of-00001"]}
    with mfparse.open(os.path.join(FIX, "ckpt", "ckpt-1")) as m:   # a prefix
        check_tensors(m, EXPECTED["ckpt"]["ckpt-1"])
    with mfparse.open(os.path.join(FIX, "tf1")) as m:   # state file names an absolute path elsewhere
        assert m.path == os.path.join(FIX, "tf1", "model.ckpt.index")
    with mfparse.open(os.path.join(FIX, "sharded", "model.index")) as m:
        info = m.info("layer2/.ATTRIBUTES/VARIABLE_VALUE")
        assert info.offset is None and info.extras["slices"] == 3 and info.nbytes == 64 * 16 * 4
        assert m.metadata["num_shards"] == 4
    with mfparse.open(os.path.join(FIX, "bigendian", "be.index")) as m:
        assert m.metadata["endianness"] == "big"
        assert m.info("step/.ATTRIBUTES/VARIABLE_VALUE").extras["byteorder"] == "big"


def test_checkpoint_state_file_escapes(tmp_path):
    for f in ("ckpt-2.index", "ckpt-2.data-00000-of-00001"):
        shutil.copy(os.path.join(FIX, "ckpt", f), tmp_path / f.replace("ckpt-2", "caf\u00e9 \"2\""))
    (tmp_path / "other.index").write_bytes(b"")          # two indexes: the state file decides
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "caf\\303\\251 \\"2\\""\n')
    with mfparse.open(tmp_path) as m:
        assert os.path.basename(m.path) == "caf\u00e9 \"2\".index"
        assert len(m) == len(EXPECTED["ckpt"]["tensors"])


def test_checkpoint_without_data_files():
    data = _read(os.path.join(FIX, "ckpt", "ckpt-2.index"))
    with mfparse.open(data) as m:                          # bytes: detected by the footer magic
        assert m.format == "tf-checkpoint" and len(m) == len(EXPECTED["ckpt"]["tensors"])
        with pytest.raises(UnsupportedFormatError, match="not opened from a path"):
            m["v/.ATTRIBUTES/VARIABLE_VALUE"]


def test_verify_finds_flipped_bytes(tmp_path):
    shutil.copytree(os.path.join(FIX, "ckpt"), tmp_path / "ck")
    data = tmp_path / "ck" / "ckpt-2.data-00000-of-00001"
    with mfparse.open(tmp_path / "ck") as m:
        entries = {t.name: t for t in m.tensors()}
        v = entries["v/.ATTRIBUTES/VARIABLE_VALUE"].offset
        s_name = "nested/names/.ATTRIBUTES/VARIABLE_VALUE"
        s_off = _native.tf_bundle(_read(tmp_path / "ck" / "ckpt-2.index"))[1]
        s_off = next(e[5] for e in s_off if e[0] == s_name)
    b = bytearray(data.read_bytes())
    b[v] ^= 1
    b[s_off + 2 + 4] ^= 1      # past two one-byte lengths and the length checksum: a string byte
    data.write_bytes(bytes(b))
    with mfparse.open(tmp_path / "ck") as m:
        bad = dict(tfmod.verify(m))
        assert set(bad) == {"v/.ATTRIBUTES/VARIABLE_VALUE", s_name}
        assert "crc32c mismatch" in bad["v/.ATTRIBUTES/VARIABLE_VALUE"]
    assert tfmod.verify(tmp_path / "ck", names=["step/.ATTRIBUTES/VARIABLE_VALUE"]) == []


SAVED_MODELS = ["module_sm", "keras_sm", "unsafe_sm"]


@pytest.mark.parametrize("key", SAVED_MODELS)
def test_saved_models_against_tensorflow(key):
    for path in (os.path.join(FIX, key), os.path.join(FIX, key, "saved_model.pb")):
        with mfparse.open(path) as m:
            assert m.format == "tf-savedmodel"
            ref = EXPECTED[key]
            mg_ref = ref["meta_graphs"][0]
            infos = check_tensors(m, ref["tensors"])
            consts = check_tensors(m, mg_ref["consts"])
            assert set(infos) == set(ref["tensors"]) | set(consts)
            g = m.graph
            assert len(g["meta_graphs"]) == 1
            mg = g["meta_graphs"][0]
            assert mg["tags"] == mg_ref["tags"] and mg["tensorflow_version"] == mg_ref["tensorflow_version"]
            assert mg["signatures"] == mg_ref["signatures"]
            assert sorted(mg["op_types"]) == mg_ref["ops"]
            assert mg["node_count"] == mg_ref["node_count"] and mg["function_count"] == mg_ref["function_count"]
            assert tfmod.verify(m) == []
            assert m.metadata["saved_model_schema_version"] == 1


def _cli_sections():
    text = _read(os.path.join(FIX, "saved_model_cli.txt")).decode()
    return {k: body for k, body in re.findall(r"### (\w+)\n(.*?)(?=\n### |\Z)", text, re.S)}


@pytest.mark.parametrize("key", ["module_sm", "keras_sm"])
def test_inspect_shows_what_saved_model_cli_shows(key):
    from mfparse.inspect import render_graph

    ref = _cli_sections()[key]
    with mfparse.open(os.path.join(FIX, key)) as m:
        ours = "\n".join(render_graph(m.graph))
    head = ref.split("The MetaGraph with tag set")[0].lstrip("\n")
    assert ours.startswith(head)
    ref_ops = set(re.findall(r"'(\w+)'", ref.split("contains the following ops:")[1].split("\n")[0]))
    our_ops = set(re.findall(r"'(\w+)'", ours.split("contains the following ops:")[1].split("\n")[0]))
    assert ref_ops == our_ops
    r = subprocess.run([sys.executable, "-m", "mfparse", "inspect", os.path.join(FIX, key)], capture_output=True,
                       text=True, env={**os.environ, "PYTHONPATH": ROOT})
    assert r.returncode == 0 and head in r.stdout


def test_inspect_json_carries_the_graph():
    r = subprocess.run([sys.executable, "-m", "mfparse", "inspect", "--json", os.path.join(FIX, "module_sm")],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT})
    s = json.loads(r.stdout)["files"][0]
    assert s["format"] == "tf-savedmodel"
    assert s["graph"]["inputs"] == [{"name": "x", "tensor": "serving_default_x:0", "dtype": "float32",
                                     "shape": [-1, 3]}]


@pytest.mark.parametrize("key", ["frozen.pb", "consts.pb"])
def test_graphdefs_against_tensorflow(key):
    with mfparse.open(os.path.join(FIX, key)) as m:
        assert m.format == "tf-graphdef"
        ref = EXPECTED[key]
        infos = check_tensors(m, ref["tensors"])
        assert set(infos) == set(ref["tensors"])
        assert sorted(m.graph["op_types"]) == ref["ops"] and m.graph["node_count"] == ref["nodes"]


def test_graphdef_fill_rule_and_zero_copy():
    with mfparse.open(os.path.join(FIX, "consts.pb")) as m:
        np.testing.assert_array_equal(m["float_fill"], [[1.5, -2, -2], [-2, -2, -2]])
        np.testing.assert_array_equal(m["float_zeros"], [0, 0, 0, 0])
        np.testing.assert_array_equal(m["uint8"], [255, 1, 1, 1, 1])
        assert list(m["string"]) == [b"x", b"\xff\x00y", b"\xff\x00y"]
        assert m.info("float_fill").extras["stored_as"] == "float_val"
        c = m.info("content")
        assert_view_of(m, m["content"], c)
    with mfparse.open(os.path.join(FIX, "frozen.pb")) as m:
        assert all(t.offset is not None for t in m.tensors())


def test_risky_ops():
    found = tfmod.risky_ops(os.path.join(FIX, "unsafe_sm"))
    ops = {op for op, _, _ in found}
    assert ops == {"EagerPyFunc", "ReadFile", "WriteFile"}
    data = _read(os.path.join(FIX, "unsafe_sm", "saved_model.pb"))
    for op, node, offset in found:
        assert "/" in node                                # inside a function: <function>/<node>
        assert op.encode() in data[offset:offset + 200]   # the offset is the NodeDef's
    assert tfmod.risky_ops(os.path.join(FIX, "module_sm")) == []      # SaveV2/RestoreV2 are no finding
    assert tfmod.risky_ops(os.path.join(FIX, "consts.pb")) == []
    with mfparse.open(os.path.join(FIX, "ckpt")) as m:
        assert tfmod.risky_ops(m) == []
    # a GraphDef with a PyFunc node at the top level
    node = _field(1, b"evil") + _field(2, b"PyFunc")
    with mfparse.open(_field(1, node), format="tf-graphdef") as m:
        assert tfmod.risky_ops(m) == [("PyFunc", "evil", 2)]


# ---- SSTables and bundles built as bytes ---------------------------------------------------------

def _block(entries, restart=16, restarts=None) -> bytes:
    body, rs, prev = bytearray(), [], b""
    for i, (k, v) in enumerate(entries):
        shared = 0
        if i % restart == 0:
            rs.append(len(body))
        else:
            while shared < min(len(k), len(prev)) and k[shared] == prev[shared]:
                shared += 1
        body += _varint(shared) + _varint(len(k) - shared) + _varint(len(v)) + k[shared:] + v
        prev = k
    rs = restarts if restarts is not None else (rs or [0])
    return bytes(body) + b"".join(struct.pack("<I", r) for r in rs) + struct.pack("<I", len(rs))


def _table(entries, compress=0, corrupt_crc=False, index_restarts=None, snappy=None) -> bytes:
    out = bytearray()

    def emit(contents, typ=0):
        if typ == 1:
            contents = snappy(contents)
        off = len(out)
        out.extend(contents)
        out.append(typ)
        crc = _native.crc_mask(_native.crc32c(bytes(contents) + bytes([typ])))
        out.extend(struct.pack("<I", crc ^ (1 if corrupt_crc else 0)))
        return _varint(off) + _varint(len(contents))

    h = emit(_block(entries), compress)
    meta = emit(_block([]))
    idx = emit(_block([(entries[-1][0] if entries else b"", h)], restart=1, restarts=index_restarts))
    footer = meta + idx
    return bytes(out) + footer + b"\0" * (40 - len(footer)) + struct.pack("<Q", 0xDB4775248B80FB57)


def _header(num_shards=1, endian=0):
    return _vfield(1, num_shards) + (_vfield(2, endian) if endian else b"") + _field(3, _vfield(1, 1))


def _entry(dtype=1, dims=(2,), shard=0, offset=0, size=8, crc=None):
    shape = b"".join(_field(2, _vfield(1, d)) for d in dims)
    out = _vfield(1, dtype) + _field(2, shape) + (_vfield(3, shard) if shard else b"") + _vfield(4, offset) + \
        _vfield(5, size)
    if crc is not None:
        out += _varint(6 << 3 | 5) + struct.pack("<I", crc)
    return out


def test_crafted_bundle_reads(tmp_path):
    data = np.array([1.5, -2.0], np.float32).tobytes()
    crc = _native.crc_mask(_native.crc32c(data))
    idx = _table([(b"", _header()), (b"a/b", _entry(crc=crc)), (b"a/c", _entry(offset=0, size=8))])
    (tmp_path / "m.index").write_bytes(idx)
    (tmp_path / "m.data-00000-of-00001").write_bytes(data)
    with mfparse.open(tmp_path / "m") as m:
        assert m.keys() == ["a/b", "a/c"]
        np.testing.assert_array_equal(m["a/b"], [1.5, -2.0])
        assert m.info("a/b").extras["crc32c"] == crc and tfmod.verify(m) == []


@pytest.mark.parametrize("make,exc,msg", [
    (lambda: b"\0" * 47, CorruptFileError, "shorter than its 48-byte footer"),
    (lambda: _table([(b"", _header())])[:-1] + b"\0", CorruptFileError, "footer magic"),
    (lambda: _table([(b"", _header()), (b"x", _entry())], corrupt_crc=True), CorruptFileError, "checksum mismatch"),
    (lambda: _table([(b"", _header()), (b"x", _entry())], compress=2, snappy=lambda c: c), UnsupportedFormatError,
     "compression type 2"),
    (lambda: _table([(b"", _header()), (b"b", _entry()), (b"a", _entry())]), CorruptFileError, "strictly increasing"),
    (lambda: _table([(b"", _header()), (b"b", _entry()), (b"b", _entry())]), CorruptFileError, "strictly increasing"),
    (lambda: _table([(b"x", _entry())]), CorruptFileError, "without a tensor bundle header"),
    (lambda: _table([(b"", _header()), (b"x", _entry(shard=1))]), CorruptFileError, "shard 1 of a bundle with 1"),
    (lambda: _table([(b"", _header()), (b"x", _entry(size=7))]), CorruptFileError, "stores 7 bytes"),
    (lambda: _table([(b"", _header()), (b"x", _entry(dtype=99))]), UnsupportedFormatError, "data type 99"),
    (lambda: _table([(b"", _header(endian=3))]), CorruptFileError, "endianness 3"),
    (lambda: _table([(b"", _header()), (b"x", _entry())], index_restarts=[1]), CorruptFileError, "restart"),
    (lambda: _table([(b"", _header()), (b"x", _entry(dims=(1 << 40, 1 << 40)))]), CorruptFileError, "overflows"),
])
def test_hostile_bundles(make, exc, msg):
    with pytest.raises(exc, match=msg) as e:
        mfparse.open(make(), format="tf-checkpoint")
    assert e.value.offset is not None


def test_huge_shard_count_costs_nothing(tmp_path):
    data = np.array([1.5, -2.0], np.float32).tobytes()
    (tmp_path / "m.index").write_bytes(_table([(b"", _header(num_shards=2**31 - 1)), (b"x", _entry())]))
    (tmp_path / "m.data-00000-of-2147483647").write_bytes(data)
    with mfparse.open(tmp_path / "m") as m:
        assert m.metadata["data_files"] == ["m.data-00000-of-2147483647"]
        np.testing.assert_array_equal(m["x"], [1.5, -2.0])


def test_data_past_the_end_of_a_shard(tmp_path):
    (tmp_path / "m.index").write_bytes(_table([(b"", _header()), (b"x", _entry(offset=4))]))
    (tmp_path / "m.data-00000-of-00001").write_bytes(b"\0" * 8)
    with pytest.raises(CorruptFileError, match="past the end of m.data-00000-of-00001"):
        mfparse.open(tmp_path / "m.index")


def _snappy_literal(data: bytes) -> bytes:
    out = bytearray(_varint(len(data)))
    for i in range(0, len(data), 60):
        chunk = data[i:i + 60]
        out.append((len(chunk) - 1) << 2)
        out += chunk
    return bytes(out)


def test_snappy_decoder():
    assert _native.snappy_decode(_snappy_literal(b"hello world" * 10), 1000) == b"hello world" * 10
    # literal "ab", then a 1-byte-offset copy of 6 bytes from 2 back (overlapping): "abababab"
    assert _native.snappy_decode(b"\x08\x04ab" + bytes([((6 - 4) << 2) | 1, 2]), 100) == b"abababab"
    # 2-byte-offset copy of 4 from 3 back; a long literal with a 1-byte length
    assert _native.snappy_decode(b"\x07\x08abc" + bytes([(4 - 1) << 2 | 2]) + b"\x03\x00", 100) == b"abcabca"
    lit = bytes(range(70))
    assert _native.snappy_decode(_varint(70) + bytes([60 << 2, 69]) + lit, 100) == lit
    with pytest.raises(CorruptFileError, match="reaches 5 bytes back"):
        _native.snappy_decode(b"\x08\x04ab" + bytes([((6 - 4) << 2) | 1, 5]), 100)
    with pytest.raises(CorruptFileError, match="decodes to 2 bytes, declared 3"):
        _native.snappy_decode(b"\x03\x04ab", 100)
    with pytest.raises(ResourceLimitError, match="claims 4294967295"):
        _native.snappy_decode(b"\xff\xff\xff\xff\x0f", 1000)
    # a snappy-compressed table reads like the plain one
    t = _table([(b"", _header()), (b"x", _entry())], compress=1, snappy=_snappy_literal)
    assert [k for k, _, _ in _native.sst_entries(t)] == [b"", b"x"]


def test_crc32c_known_values():
    assert _native.crc32c(b"123456789") == 0xE3069283
    assert _native.crc32c(b"") == 0
    assert _native.crc32c(b"6789", _native.crc32c(b"12345")) == 0xE3069283
    assert _native.crc32c(bytes(32)) == 0x8A9136AA   # RFC 3720 test vector


def test_slice_keys_decode():
    _, entries, slices = _native.tf_bundle(_read(os.path.join(FIX, "sharded", "model.index")))
    pieces = {(s[0], s[1], s[2]) for s in slices}
    assert ("layer1/.ATTRIBUTES/VARIABLE_VALUE", (13, 0), (1, 16)) in pieces
    assert sum(1 for s in slices if s[0].startswith("layer3")) == 4


def test_detection_and_prefixes(tmp_path):
    with mfparse.open(_read(os.path.join(FIX, "frozen.pb")), format="tf-graphdef") as m:
        assert len(m) == 2
    q = tmp_path / "graph.pb"
    shutil.copy(os.path.join(FIX, "consts.pb"), q)
    with mfparse.open(q) as m:
        assert m.format == "tf-graphdef"
    sm = tmp_path / "renamed.pb"
    shutil.copy(os.path.join(FIX, "module_sm", "saved_model.pb"), sm)
    with mfparse.open(sm) as m:                      # a SavedModel proto under another name
        assert m.format == "tf-savedmodel" and "variables" not in m.metadata
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "saved_model.pbtxt").write_text("meta_graphs {}")
    with pytest.raises(UnsupportedFormatError, match="text-format"):
        mfparse.open(tmp_path / "dir")
    with pytest.raises(IsADirectoryError):
        mfparse.open(tmp_path)


def test_robustness(seed, tmp_path):
    check_robust(os.path.join(FIX, "ckpt", "ckpt-2.index"), fmt="tf-checkpoint", seed=seed, flips=300)
    check_robust(os.path.join(FIX, "consts.pb"), fmt="tf-graphdef", seed=seed, flips=300)
    check_robust(os.path.join(FIX, "unsafe_sm", "saved_model.pb"), fmt="tf-savedmodel", seed=seed, flips=300,
                 sampled=1500)


def test_bundle_parser_fuzz_without_block_checksums(seed):
    """Byte flips mostly hit the block checksums; parse with them off to reach the entries."""
    code = textwrap.dedent(f"""
        import os, random, resource, sys
        sys.path.insert(0, {ROOT!r})
        if "asan" not in os.environ.get("LD_PRELOAD", ""):   # ASan reserves terabytes of shadow memory
            resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
        from mfparse import _native
        from mfparse.errors import MFParseError
        rnd = random.Random({seed})
        counts = [0, 0]
        for name in ("ckpt/ckpt-2.index", "sharded/model.index", "snappy/ckpt-2.index", "bigendian/be.index"):
            with open({FIX!r} + "/" + name, "rb") as f:
                data = f.read()
            for _ in range(400):
                b = bytearray(data)
                for _ in range(rnd.randint(1, 3)):
                    b[rnd.randrange(len(b))] = rnd.randrange(256)
                try:
                    _native.tf_bundle(bytes(b), False)
                    counts[0] += 1
                except MFParseError:
                    counts[1] += 1
        print(counts)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"seed {seed}: {r.stderr[-2000:]}"
