"""safetensors: agreement with the safetensors package on real files, and on hostile headers
the same verdicts as the Rust implementation (mfparse refuses duplicate names, the crate keeps
one of them silently)."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import save_file as np_save_file
from safetensors.torch import save_file

import mfparse
from helpers import assert_view_of, check_robust


def _torch_bytes(t: torch.Tensor) -> bytes:
    t = t.contiguous()
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()


TORCH_DTYPES = {
    torch.float64: "float64", torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16",
    torch.float8_e4m3fn: "float8_e4m3fn", torch.float8_e5m2: "float8_e5m2", torch.int8: "int8",
    torch.int16: "int16", torch.int32: "int32", torch.int64: "int64", torch.uint8: "uint8",
    torch.uint16: "uint16", torch.uint32: "uint32", torch.uint64: "uint64", torch.bool: "bool",
}


def test_every_dtype_against_safe_open(tmp_path):
    x = torch.linspace(-4, 4, 24).reshape(2, 3, 4)
    tensors = {}
    for dt in TORCH_DTYPES:
        if dt == torch.bool:
            tensors["bool"] = x > 0
        elif dt.is_floating_point:
            tensors[TORCH_DTYPES[dt]] = x.to(dt)
        else:
            tensors[TORCH_DTYPES[dt]] = (x.abs() * 3).to(dt)
    tensors["scalar"] = torch.tensor(3.5)
    tensors["empty"] = torch.zeros(0, 5)
    p = tmp_path / "all.safetensors"
    save_file(tensors, str(p), metadata={"format": "pt", "note": "ünïcode"})
    with safe_open(str(p), framework="pt") as ref, mfparse.open(p) as m:
        assert m.format == "safetensors"
        assert sorted(m.keys()) == sorted(ref.keys())
        assert m.metadata == ref.metadata() == {"format": "pt", "note": "ünïcode"}
        for info in m.tensors():
            r = ref.get_tensor(info.name)
            assert info.shape == tuple(r.shape)
            assert info.dtype == TORCH_DTYPES[r.dtype]
            a = m[info.name]
            assert not a.flags.writeable
            assert a.tobytes() == _torch_bytes(r), info.name
        offsets = [t.offset for t in m.tensors()]
        assert offsets == sorted(offsets)


def test_numpy_writer_and_zero_copy(tmp_path):
    arrs = {"a": np.arange(10, dtype=np.float32), "b": np.ones((3, 3), dtype=np.int64)}
    p = tmp_path / "np.safetensors"
    np_save_file(arrs, str(p))
    with mfparse.open(p) as m:
        a = m["a"]
        np.testing.assert_array_equal(a, arrs["a"])
        assert_view_of(m, a, m.info("a"))  # a view of the map, not a copy
        assert m.info("b").nbytes == 72
        assert m.tree()["a"] == m.info("a")


def header_file(header: dict | str | bytes, data: bytes = b"", n: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else (
        header.encode() if isinstance(header, str) else json.dumps(header).encode())
    return struct.pack("<Q", len(raw) if n is None else n) + raw + data


GOOD = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}

HOSTILE = {
    "ok": header_file(GOOD, b"\0" * 8),
    "ok_padded": header_file(json.dumps(GOOD) + "   ", b"\0" * 8),
    "ok_unknown_field": header_file({"w": {**GOOD["w"], "extra": [1, {"x": None}]}}, b"\0" * 8),
    "ok_empty": header_file({}, b""),
    "ok_meta_null": header_file({"__metadata__": None, **GOOD}, b"\0" * 8),
    "ok_escapes": header_file('{"w\\u00e9\\n": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}', b"\0" * 8),
    "gap": header_file({"w": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12),
    "short_data": header_file(GOOD, b"\0" * 4),
    "trailing_data": header_file(GOOD, b"\0" * 12),
    "wrong_size": header_file({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8),
    "overlap": header_file({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
                            "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}, b"\0" * 6),
    "reversed": header_file({"w": {"dtype": "U8", "shape": [0], "data_offsets": [4, 0]}}, b"\0" * 4),
    "too_large": header_file(GOOD, b"\0" * 8, n=100_000_001),
    "len_past_end": header_file(GOOD, b"\0" * 8, n=10_000),
    "not_object": header_file("[1, 2]"),
    "bad_utf8": header_file(b'{"w\xff": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}', b"\0" * 8),
    "unknown_dtype": header_file({"w": {"dtype": "F31", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8),
    "float_dim": header_file('{"w": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}}', b"\0" * 8),
    "negative": header_file('{"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}', b"\0" * 8),
    "missing_field": header_file({"w": {"dtype": "F32", "shape": [2]}}, b"\0" * 8),
    "meta_not_str": header_file({"__metadata__": {"a": 1}, **GOOD}, b"\0" * 8),
    "overflow": header_file({"w": {"dtype": "F64", "shape": [2**62, 8], "data_offsets": [0, 8]}}, b"\0" * 8),
    "trailing_garbage": header_file(json.dumps(GOOD) + "x", b"\0" * 8),
    "truncated_json": header_file('{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]', b"\0" * 8),
    "lone_surrogate": header_file('{"w\\ud800": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}', b"\0" * 8),
    "tiny": b"\x01\x00",
    # numbers in an unknown field: the crate (serde_json) checks their grammar when it skips them
    "ok_number_forms": header_file('{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], '
                                   '"x": [0, -0, 1.5, -2.25e+3, 1E-7, 10]}}', b"\0" * 8),
    "number_two_points": header_file('{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "x": 1.2.3}}',
                                     b"\0" * 8),
    "number_leading_zero": header_file('{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "x": 01}}',
                                       b"\0" * 8),
    "number_bare_point": header_file('{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "x": 1.}}',
                                     b"\0" * 8),
    "number_bare_exponent": header_file('{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "x": 2e}}',
                                        b"\0" * 8),
    "number_plus": header_file('{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "x": +1}}', b"\0" * 8),
    "ends_in_backslash": header_file(b'{"w\\', b""),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_same_verdict_as_the_rust_crate(tmp_path, case):
    p = tmp_path / f"{case}.safetensors"
    p.write_bytes(HOSTILE[case])
    try:
        with safe_open(str(p), framework="numpy") as f:
            ref_names = sorted(f.keys())
        ref_ok = True
    except Exception:
        ref_ok = False
    try:
        with mfparse.open(p, format="safetensors") as m:
            ours = sorted(m.keys())
        ok = True
    except mfparse.MFParseError as e:
        ok = False
        assert "(byte " in str(e)
    assert ok == ref_ok == case.startswith("ok")
    if ok:
        assert ours == ref_names


def test_duplicate_names_are_refused(tmp_path):
    raw = ('{"w": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},'
           ' "w": {"dtype": "U8", "shape": [2], "data_offsets": [2, 4]}}')
    with pytest.raises(mfparse.CorruptFileError, match="names tensor 'w' twice"):
        mfparse.open(header_file(raw, b"\0" * 4))


def test_error_messages_name_the_problem():
    with pytest.raises(mfparse.CorruptFileError) as e:
        mfparse.open(HOSTILE["wrong_size"], format="safetensors")
    assert str(e.value) == "safetensors tensor 'w' spans 8 bytes but its dtype and shape need 12 (byte 69)"
    with pytest.raises(mfparse.ResourceLimitError, match="exceeds the 100,000,000 byte limit"):
        mfparse.open(HOSTILE["too_large"], format="safetensors")


def test_robust(tmp_path, seed):
    p = tmp_path / "r.safetensors"
    save_file({"a": torch.ones(3, 2), "b": torch.arange(4), "c": torch.zeros(2, dtype=torch.bfloat16)}, str(p),
              metadata={"k": "v"})
    r = check_robust(p, seed=seed, ref="safetensors")
    assert r.truncated["ok"] == 0  # every cut loses header or data
    assert r.flipped["ok"] > 0 and r.flipped["error"] > 0
    assert r.agree > 0 and r.both_error > 0 and not r.known  # mfparse and the crate agree on every mutant


# A header with every kind of token: escapes, non-ASCII names, metadata, an unknown field holding
# nested lists, objects, literals and numbers.
TOKENS = ('{"__metadata__": {"format": "pt", "n\\u00f6te": "caf\u00e9 \\"q\\""}, '
          '"w\u00e9\\n": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], '
          '"extra": [true, false, null, {"k": -1.5e+3}, [], {}, "\\ud83d\\ude00"]}, '
          '"\u6f22": {"dtype": "U8", "shape": [], "data_offsets": [8, 9]}}').encode()


def test_token_header_parses():
    with mfparse.open(header_file(TOKENS, b"\0" * 9), format="safetensors") as m:
        assert m.keys() == ["w\u00e9\n", "\u6f22"]
        assert m.metadata == {"format": "pt", "n\u00f6te": 'caf\u00e9 "q"'}


@pytest.mark.parametrize("header", [TOKENS, json.dumps(GOOD).encode()], ids=["tokens", "good"])
def test_a_header_cut_at_every_byte_is_truncated_at_its_end(header):
    """A JSON header that ends early (its declared length N cut to k bytes) is a TruncatedFileError
    at byte 8 + k, where the missing text would start: never a CorruptFileError past the end."""
    for k in range(len(header)):
        data = header_file(header[:k])
        with pytest.raises(mfparse.TruncatedFileError) as e:
            mfparse.open(data, format="safetensors")
        assert e.value.offset == 8 + k == len(data), (k, str(e.value))
    for k in range(8):  # inside the length prefix
        with pytest.raises(mfparse.TruncatedFileError) as e:
            mfparse.open(header_file(header)[:k], format="safetensors")
        assert e.value.offset <= k


def test_corrupt_bytes_are_named_where_they_are():
    cases = [  # (header, the bad byte's first occurrence, message)
        (b'{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}x', b"x", "expected ',' or '}' after a tensor"),
        (b'{"w": {"dtype": "F32", "shape": [2 ; ', b";", "expected ',' or ']' in shape"),
        (b'{"w\x01": {}}', b"\x01", "control character in a string"),
        (b'{"w\\q": {}}', b"\\", "invalid escape in a string"),
        (b'{"w": {"x": 1.x}}', b"x}", "invalid number"),
        (b'{"w": {"dtype": "F32", "shape": [01]}}', b"01", "integer with a leading zero"),
    ]
    for header, bad, what in cases:
        with pytest.raises(mfparse.CorruptFileError) as e:
            mfparse.open(header_file(header), format="safetensors")
        assert not isinstance(e.value, mfparse.TruncatedFileError)
        assert (e.value.offset, e.value.message) == (8 + header.index(bad), f"safetensors header: {what}"), header
