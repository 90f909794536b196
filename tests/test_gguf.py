"""GGUF: differential tests against gguf-py (its writer makes the files, its reader and
gguf.quants are the reference), plus hand-made hostile headers."""

from __future__ import annotations

import struct

import numpy as np
import pytest

import mfparse
from helpers import Known, assert_view_of, check_robust
from mfparse.formats import gguf as mg

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as T  # noqa: E402
from gguf import GGUFReader, GGUFValueType as V, GGUFWriter  # noqa: E402
import gguf.quants as gq  # noqa: E402
from gguf.constants import GGML_QUANT_SIZES  # noqa: E402

# where each block type keeps its f16 scale(s): random bytes there could be inf/nan
SCALE_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0], T.Q2_K: [80, 82], T.Q3_K: [108],
    T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208], T.TQ2_0: [64],
}
LISTED_ONLY = [T.IQ2_XXS, T.IQ4_NL, T.IQ4_XS, T.MXFP4, T.TQ1_0]


def random_blocks(rng, qtype, rows, cols):
    """Valid random blocks: random quants, finite random f16 scales."""
    block, nbytes = GGML_QUANT_SIZES[qtype]
    nb = rows * cols // block
    raw = rng.integers(0, 256, size=(nb, nbytes), dtype=np.uint8)
    for off in SCALE_FIELDS.get(qtype, []):
        raw[:, off:off + 2] = rng.uniform(-1, 1, size=nb).astype("<f2").view(np.uint8).reshape(nb, 2)
    return raw.reshape(rows, cols // block * nbytes)


def write(path, kvs=(), tensors=(), alignment=None, endian=None):
    kw = {} if endian is None else {"endianess": endian}
    w = GGUFWriter(str(path), "llama", **kw)
    if alignment:
        w.add_custom_alignment(alignment)
    for key, val, vtype in kvs:
        if vtype is None:
            w.add_array(key, val)
        else:
            w.add_key_value(key, val, vtype)
    for name, arr, qtype in tensors:
        if qtype is None:
            w.add_tensor(name, arr)
        else:
            w.add_tensor(name, arr, raw_shape=arr.shape, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


KVS = [
    ("t.u8", 200, V.UINT8), ("t.i8", -100, V.INT8), ("t.u16", 60000, V.UINT16), ("t.i16", -30000, V.INT16),
    ("t.u32", 4000000000, V.UINT32), ("t.i32", -2000000000, V.INT32), ("t.f32", 1.25, V.FLOAT32),
    ("t.bool", True, V.BOOL), ("t.str", "héllo wörld", V.STRING), ("t.u64", 2**63 + 5, V.UINT64),
    ("t.i64", -(2**62), V.INT64), ("t.f64", 3.141592653589793, V.FLOAT64),
    ("t.arr_i32", [1, -2, 3], None), ("t.arr_f32", [0.5, 1.5], None), ("t.arr_str", ["a", "", "ü"], None),
    ("t.arr_bool", [True, False], None), ("t.nested", [[1, 2], [3]], None), ("t.empty", [], None),
]


@pytest.fixture(scope="module")
def plain_file(tmp_path_factory):
    rng = np.random.default_rng(1)
    tensors = [
        ("f32", rng.standard_normal((3, 5)).astype(np.float32), None),
        ("f16", rng.standard_normal((2, 3, 4)).astype(np.float16), None),
        ("f64", rng.standard_normal(7), None),
        ("i8", rng.integers(-128, 127, (4, 4), dtype=np.int8), None),
        ("i16", rng.integers(-1000, 1000, (6,), dtype=np.int16), None),
        ("i32", rng.integers(-10**6, 10**6, (2, 2), dtype=np.int32), None),
        ("i64", rng.integers(-10**12, 10**12, (3,), dtype=np.int64), None),
        ("bf16", rng.standard_normal((4, 8)).astype(np.float32).view(np.uint32).__rshift__(16)
         .astype(np.uint16).view(np.uint8).reshape(4, 16), T.BF16),
        ("scalar1", np.array([42.0], dtype=np.float32), None),
    ]
    return write(tmp_path_factory.mktemp("gguf") / "plain.gguf", KVS, tensors)


@pytest.fixture(scope="module")
def quant_file(tmp_path_factory):
    rng = np.random.default_rng(2)
    tensors = []
    for qtype in list(SCALE_FIELDS) + LISTED_ONLY:
        block = GGML_QUANT_SIZES[qtype][0]
        tensors.append((f"q.{qtype.name}", random_blocks(rng, qtype, 3, 2 * max(block, 256)), qtype))
    x = rng.standard_normal((8, 64)).astype(np.float32)
    for qtype in (T.Q8_0, T.Q4_0, T.Q5_0):
        q = gq.quantize(x, qtype)
        tensors.append((f"real.{qtype.name}", q, qtype))
    return write(tmp_path_factory.mktemp("gguf") / "quant.gguf", tensors=tensors, alignment=64)


def compare_with_gguf_py(path):
    ref = GGUFReader(str(path))
    with mfparse.open(path) as m:
        assert m.format == "gguf"
        infos = list(m.tensors())
        assert [t.name for t in infos] == [t.name for t in ref.tensors]
        for info, rt in zip(infos, ref.tensors):
            assert info.shape == tuple(int(d) for d in reversed(rt.shape.tolist()))
            assert info.nbytes == rt.n_bytes
            assert info.offset == rt.data_offset
            assert info.extras["ggml_type"] == rt.tensor_type.name
            arr = m[info.name]
            if rt.tensor_type == T.BF16:  # gguf-py hands bfloat16 out as raw bytes
                assert arr.dtype.name == "bfloat16" and arr.shape == info.shape
            else:
                assert arr.shape == rt.data.shape
            assert arr.tobytes() == rt.data.tobytes()
            assert not arr.flags.writeable
            assert_view_of(m, arr, info)
        return m.metadata, ref


def test_plain_types_and_metadata(plain_file):
    md, ref = compare_with_gguf_py(plain_file)
    for key, field in ref.fields.items():
        if key.startswith("GGUF."):
            continue
        want = field.contents()
        got = md[key]
        if isinstance(got, np.ndarray):
            got = got.tolist()
        elif isinstance(got, mg.StringArray):
            got = got.tolist()
        elif isinstance(got, list):
            got = [g.tolist() if isinstance(g, np.ndarray) else g for g in got]
            assert got == [[1, 2], [3]]
            got = [x for g in got for x in g]  # gguf-py's contents() flattens nested arrays
        if isinstance(want, float):
            assert got == pytest.approx(want)
        else:
            assert got == want, key
    with mfparse.open(plain_file) as m:
        infos = {t.name: t for t in m.tensors()}
        assert infos["f32"].dtype == "float32" and infos["f16"].dtype == "float16"
        assert infos["bf16"].dtype == "bfloat16" and infos["i64"].dtype == "int64"
        assert infos["f16"].shape == (2, 3, 4)
        assert m._reader.value_type("t.arr_str") == "array[string]"
        assert m.metadata["t.u64"] == 2**63 + 5 and m.metadata["t.i8"] == -100


def test_quantized_listing_and_raw_blocks(quant_file):
    compare_with_gguf_py(quant_file)
    with mfparse.open(quant_file) as m:
        t = m.info("q.Q4_K")
        assert t.dtype == "ggml_q4_k"
        assert t.shape == (3, 512)
        assert t.nbytes == 3 * 2 * 144
        assert t.extras["block_size"] == 256 and t.extras["block_bytes"] == 144
        assert t.extras["quantization"]["bits_per_weight"] == 4.5
        assert m[t.name].dtype == np.uint8 and m[t.name].shape == (3, 288)
        assert all(i.offset % 64 == 0 for i in m.tensors())
        assert m.metadata["general.alignment"] == 64


@pytest.mark.parametrize("qtype", list(SCALE_FIELDS), ids=lambda q: q.name)
def test_dequantize_matches_gguf_py(quant_file, qtype):
    ref = {t.name: t for t in GGUFReader(str(quant_file)).tensors}
    with mfparse.open(quant_file) as m:
        for name in (f"q.{qtype.name}", f"real.{qtype.name}"):
            if name not in m:
                continue
            got = mg.dequantize(m, name)
            want = gq.dequantize(ref[name].data, qtype)
            assert got.dtype == np.float32 and got.shape == want.shape == m.info(name).shape
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * float(np.abs(want).max()))
    assert qtype.name in mg.DEQUANTIZE_TYPES


def test_dequantize_q8_k_and_plain(tmp_path):
    rng = np.random.default_rng(3)
    d = np.float32(0.125)
    qs = rng.integers(-128, 127, (2, 256), dtype=np.int8)
    blocks = np.concatenate([np.full((2, 1), d).view(np.uint8), qs.view(np.uint8),
                             np.zeros((2, 32), np.uint8)], axis=1)
    p = write(tmp_path / "k.gguf", tensors=[("k8", blocks, T.Q8_K),
                                            ("f16", np.arange(8, dtype=np.float16), None)])
    with mfparse.open(p) as m:
        np.testing.assert_array_equal(mg.dequantize(m, "k8"), qs.astype(np.float32) * d)
        np.testing.assert_array_equal(mg.dequantize(m, "f16"), np.arange(8, dtype=np.float32))
        with pytest.raises(KeyError):
            mg.dequantize(m, "nope")
    np.testing.assert_array_equal(mg.dequantize(p, "f16"), np.arange(8, dtype=np.float32))


def test_unsupported_dequantize(quant_file):
    with mfparse.open(quant_file) as m:
        with pytest.raises(mfparse.UnsupportedFormatError, match="IQ2_XXS"):
            mg.dequantize(m, "q.IQ2_XXS")


def test_big_vocab_is_lazy_and_right(tmp_path):
    vocab = [f"tok{i}\u2581" * (i % 3) for i in range(50000)]
    scores = np.linspace(-1, 1, 50000, dtype=np.float32)
    p = write(tmp_path / "v.gguf", [("tokenizer.ggml.tokens", vocab, None),
                                    ("tokenizer.ggml.scores", scores.tolist(), None)],
              tensors=[("w", np.zeros(4, np.float32), None)])
    with mfparse.open(p) as m:
        toks = m.metadata["tokenizer.ggml.tokens"]
        assert isinstance(toks, mg.StringArray) and len(toks) == 50000
        assert toks[12345] == vocab[12345] and toks[-1] == vocab[-1]
        assert toks[10:13] == vocab[10:13]
        assert toks == vocab
        sc = m.metadata["tokenizer.ggml.scores"]
        assert isinstance(sc, np.ndarray) and not sc.flags.writeable
        np.testing.assert_array_equal(sc, scores)
        assert "n=50000" in repr(toks)


def test_big_endian(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    q = gq.quantize(np.ones((2, 32), np.float32), T.Q8_0)
    p = write(tmp_path / "be.gguf", [("t.u32", 7, V.UINT32), ("t.arr", [1, 2, 3], None), ("t.s", "x", V.STRING)],
              tensors=[("x", x, None), ("q", q, T.Q8_0)], endian=gguf.GGUFEndian.BIG)
    with mfparse.open(p) as m:
        assert m._reader.big_endian
        assert m.metadata["t.u32"] == 7 and m.metadata["t.arr"].tolist() == [1, 2, 3]
        np.testing.assert_array_equal(m["x"], x)
        assert m.info("q").extras["byteorder"] == ">"
        with pytest.raises(mfparse.UnsupportedFormatError, match="big-endian"):
            mg.dequantize(m, "q")


# ---- hostile headers --------------------------------------------------------------------------

def gstr(s: bytes) -> bytes:
    return struct.pack("<Q", len(s)) + s


def header(n_tensors, n_kv, version=3):
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv)


def tinfo(name, dims, qtype, offset):
    return gstr(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims) + struct.pack("<IQ", qtype,
                                                                                                        offset)


def pad(b, align=32):
    return b + b"\0" * (-len(b) % align)


def test_hostile_headers():
    ok = pad(header(1, 0) + tinfo(b"w", [4], 0, 0)) + b"\0" * 16
    with mfparse.open(ok) as m:
        assert m.info("w").shape == (4,)
    cases = [
        (b"GGUF" + struct.pack("<I", 1) + b"\0" * 16, mfparse.UnsupportedFormatError, "version 1"),
        (b"GGUF" + struct.pack("<I", 7) + b"\0" * 16, mfparse.UnsupportedFormatError, "version 7"),
        (header(2**60, 0), mfparse.TruncatedFileError, "tensors, more than the file can hold"),
        (header(0, 2**62), mfparse.TruncatedFileError, "metadata entries"),
        (header(0, 1) + gstr(b"k") + struct.pack("<I", 99), mfparse.CorruptFileError, "unknown type 99"),
        (header(0, 1) + gstr(b"k") + struct.pack("<IIQ", 9, 4, 2**61), mfparse.TruncatedFileError, "array of"),
        (header(0, 1) + gstr(b"k") + struct.pack("<IQ", 8, 2**40), mfparse.TruncatedFileError, "string value"),
        (header(0, 1) + gstr(b"general.alignment") + struct.pack("<II", 4, 48), mfparse.CorruptFileError,
         "power of two"),
        (header(0, 1) + gstr(b"general.alignment") + struct.pack("<IQ", 10, 64), mfparse.CorruptFileError,
         "must be a u32"),
        (pad(header(1, 0) + tinfo(b"w", [4], 0, 8)) + b"\0" * 64, mfparse.CorruptFileError, "not a multiple"),
        (pad(header(1, 0) + tinfo(b"w", [4], 0, 0)) + b"\0" * 8, mfparse.TruncatedFileError, "runs past the end"),
        (pad(header(1, 0) + tinfo(b"w", [16], 8, 0)) + b"\0" * 64, mfparse.CorruptFileError, "whole Q8_0 blocks"),
        (pad(header(1, 0) + tinfo(b"w", [4], 33, 0)) + b"\0" * 64, mfparse.UnsupportedFormatError, "type 33"),
        (pad(header(1, 0) + tinfo(b"w", [2**40, 2**40], 0, 0)) + b"\0" * 64, mfparse.CorruptFileError,
         "overflows"),
        (pad(header(1, 0) + tinfo(b"w", [1] * 9, 0, 0)) + b"\0" * 64, mfparse.CorruptFileError, "9 dimensions"),
        (pad(header(2, 0) + tinfo(b"w", [4], 0, 0) + tinfo(b"w", [4], 0, 32)) + b"\0" * 64,
         mfparse.CorruptFileError, "appears twice"),
        (header(0, 2) + gstr(b"k") + struct.pack("<IB", 0, 1) + gstr(b"k") + struct.pack("<IB", 0, 1),
         mfparse.CorruptFileError, "appears twice"),
    ]
    nested = header(0, 1) + gstr(b"deep") + struct.pack("<I", 9)
    for _ in range(10):
        nested += struct.pack("<IQ", 9, 1)
    cases.append((nested + struct.pack("<IQ", 0, 0), mfparse.ResourceLimitError, "nested more than 8"))
    for data, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            mfparse.open(data)


def test_no_tensors_and_no_padding():
    """A vocabulary-only file ends right after its metadata (no data section)."""
    data = header(0, 1) + gstr(b"k") + struct.pack("<I", 8) + gstr(b"v")
    with mfparse.open(data) as m:
        assert list(m.tensors()) == [] and m.metadata == {"k": "v"}


#: where mfparse and gguf-py part ways on damaged files, on purpose
GGUF_KNOWN = [
    Known("laxer", r"UnicodeDecodeError",
          "a GGUF string that is not UTF-8: mfparse decodes it with backslashreplace (llama.cpp keeps strings as "
          "bytes), gguf-py raises"),
    Known("stricter", r"is not a multiple of the alignment",
          "a tensor offset off the file's alignment: llama.cpp's gguf loader refuses it, gguf-py does not check"),
]


def test_robust(quant_file, plain_file, seed):
    for p in (plain_file, quant_file):
        r = check_robust(p, fmt="gguf", seed=seed, flips=150, sampled=1500, ref="gguf", ref_max=250,
                         ref_timeout=0.5, known=GGUF_KNOWN)
        assert r.flipped["ok"] > 0 and r.flipped["error"] > 0 and r.truncated["error"] > 0
        assert r.agree > 0 and r.both_error > 0  # cuts in the final padding still agree: both read them


def test_version_2_and_file_objects(tmp_path):
    data = pad(header(1, 1, version=2) + gstr(b"general.name") + struct.pack("<I", 8) + gstr(b"v2")
               + tinfo(b"w", [2, 3], 0, 0)) + np.arange(6, dtype=np.float32).tobytes()
    p = tmp_path / "v2.gguf"
    p.write_bytes(data)
    with open(p, "rb") as f, mfparse.open(f) as m:
        assert m._reader.version == 2 and m.metadata == {"general.name": "v2"}
        np.testing.assert_array_equal(m["w"], np.arange(6, dtype=np.float32).reshape(3, 2))
    ref = GGUFReader(str(p))
    assert ref.tensors[0].data.shape == (3, 2)
