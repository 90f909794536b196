"""npy/npz headers as numpy.load reads them (issue 16, class 3).

numpy evaluates the header with ast.literal_eval and builds the dtype with descr_to_dtype, so
every spelling numpy reads as an object dtype makes np.load(allow_pickle=True) unpickle the data
after the header. Each hostile header here is checked against numpy's own header reader
(read_array_header_*: it reads the header only, never the pickle) before mfparse judges it.
Benign files come from np.save / np.savez / np.savez_compressed. Nothing is ever unpickled.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile

import numpy as np
import pytest

from mfparse.formats import npy
from pickle_asm import call_pickle, zip_bytes
from scan_helpers import assert_unsafe, has, scan

PAYLOAD = call_pickle("os", "system", "touch /tmp/never")


def npy_raw(header: str, version=(1, 0), encoding="latin1") -> bytes:
    """A .npy header from its literal text, padded as numpy pads it."""
    width = 2 if version == (1, 0) else 4
    body = header.encode(encoding)
    total = 8 + width + len(body) + 1
    body += b" " * ((64 - total % 64) % 64) + b"\n"
    return b"\x93NUMPY" + bytes(version) + len(body).to_bytes(width, "little") + body


def _fmt():
    try:
        from numpy.lib import _format_impl as fmt  # numpy 2: where _read_array_header lives
    except ImportError:
        from numpy.lib import format as fmt
    return fmt


def numpy_reads(data: bytes):
    """The dtype numpy.load's header reader builds from these bytes (header only)."""
    fmt = _fmt()

    import warnings

    f = io.BytesIO(data)
    version = fmt.read_magic(f)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "created on Python 2"
        _shape, _fortran, dtype = fmt._read_array_header(f, version, max_header_size=1 << 30)
    return dtype


def hdr(descr: str, shape="(1,)", order="False") -> str:
    return "{'descr': " + descr + ", 'fortran_order': " + order + ", 'shape': " + shape + ", }"


OBJECT_HEADERS = {
    "plain": hdr("'|O'"),
    "O": hdr("'O'"),
    "O8": hdr("'O8'"),
    "O4": hdr("'<O4'"),
    "object": hdr("'object'"),
    "object_": hdr("'object_'"),
    "hex escape": hdr(r"'\x4f'"),
    "octal escape": hdr(r"'\117'"),
    "unicode escape": hdr(r"'\u004f'"),
    "named escape": hdr(r"'\N{LATIN CAPITAL LETTER O}'"),
    "concatenated": hdr("'O' ''"),
    "concatenated 2": hdr("'|' \"O\""),
    "parenthesised": hdr("('|' 'O')"),
    "prefix u": hdr("u'O'"),
    "prefix r": hdr("r'O'"),
    "triple quoted": hdr("'''O'''"),
    "comma string": hdr("'i4,O'"),
    "comma string object": hdr("'<f4, object'"),
    "subarray prefix": hdr("'(2,)O'"),
    "repeat prefix": hdr("'2O'"),
    "subarray tuple": hdr("('O', (2,))"),
    "empty subarray": hdr("('O', 0)"),
    "field": hdr("[('a', '<f4'), ('b', 'O')]"),
    "field with shape": hdr("[('a', 'O', (2,))]"),
    "nested field": hdr("[('a', [('b', '<i4'), ('c', [('d', '|O')])])]"),
    "titled field": hdr("[(('title', 'a'), 'O')]"),
    "field in a subarray": hdr("([('a', 'O')], (3,))"),
    "dict descr": hdr("{('a', 'O'): None}"),
    "string field": hdr("['aO']"),
    "stringdtype": hdr("'T'"),
    "keys reordered": "{'shape': (1,), 'descr': '|O', 'fortran_order': False}",
    "duplicate descr": "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'descr': '|O'}",
    "concatenated key": "{'de' 'scr': '<f4' if False else '|O', 'fortran_order': False, 'shape': (1,)}",
    "double quoted key": '{"descr": "|O", "fortran_order": False, "shape": (1,)}',
    "python 2 long": hdr("'|O'", shape="(1L,)"),
    "multi-line": "{\n'descr':\n  '|O',\n'fortran_order': False,\n'shape': (1,)\n}",
    "bool shape": hdr("'|O'", shape="(True,)"),
}
# a conditional expression is not a literal: numpy refuses that one (checked below)
OBJECT_HEADERS["concatenated key"] = "{'de' 'scr': '|O', 'fortran_order': False, 'shape': (1,)}"


@pytest.mark.parametrize("name", sorted(OBJECT_HEADERS))
def test_every_object_spelling_numpy_reads_is_judged(name):
    data = npy_raw(OBJECT_HEADERS[name])
    assert numpy_reads(data).hasobject, "numpy must read this header as an object dtype"
    h = npy.read_header(data)
    assert h.is_object and h.data_offset == len(data)
    r = scan(data + PAYLOAD)
    f = assert_unsafe(r, glob="os.system")
    assert f.offset == len(data) + 2  # the GLOBAL after PROTO, counted from the start of the file
    assert any("object dtype" in n for n in r.notes)


@pytest.mark.parametrize("name", ["hex escape", "octal escape", "unicode escape", "concatenated", "prefix u",
                                  "object", "comma string", "stringdtype", "concatenated key"])
def test_hidden_object_spellings_are_a_finding_even_with_a_benign_payload(name):
    import pickle

    data = npy_raw(OBJECT_HEADERS[name]) + pickle.dumps(np.array([1, 2], dtype=object), protocol=2)
    r = scan(data)
    f = assert_unsafe(r, severity="suspicious", kind="format")
    assert f.global_name == "numpy.load.allow_pickle" and f.offset == 0


@pytest.mark.parametrize("version", [(2, 0), (3, 0)])
def test_later_versions(version):
    data = npy_raw(hdr(r"'\x4f'"), version, "utf8")
    assert numpy_reads(data).hasobject
    assert_unsafe(scan(data + PAYLOAD), glob="os.system")


def test_version_3_utf8_field_names():
    data = npy_raw(hdr("[('é', 'O')]"), (3, 0), "utf8")
    assert numpy_reads(data).hasobject
    assert_unsafe(scan(data + PAYLOAD), glob="os.system")


REFUSED = {
    "version 1.1": (npy_raw(hdr("'|O'"))[:7] + b"\x01" + npy_raw(hdr("'|O'"))[8:]),
    "not a literal": npy_raw(hdr("O")),
    "a call": npy_raw(hdr("str('O')")),
    "a list": npy_raw("['|O', False, (1,)]"),
    "missing key": npy_raw("{'descr': '|O', 'shape': (1,)}"),
    "extra key": npy_raw("{'descr': '|O', 'fortran_order': False, 'shape': (1,), 'x': 1}"),
    "shape not a tuple": npy_raw(hdr("'|O'", shape="[1]")),
    "fortran_order not a bool": npy_raw(hdr("'|O'", order="0")),
    "unknown dtype": npy_raw(hdr("'xyz'")),
    "bad field": npy_raw(hdr("[('a',)]")),
    "empty tuple": npy_raw(hdr("()")),
    "too deep": npy_raw(hdr("[" * 300 + "]" * 300)),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_headers_numpy_refuses_are_errors_never_safe(name):
    data = REFUSED[name]
    with pytest.raises(Exception):
        numpy_reads(data)
    r = scan(data + PAYLOAD)
    assert r.verdict != "safe", str(r)
    if r.verdict == "error":
        assert any("npy header" in e for e in r.errors), r.errors


def test_a_huge_header_is_an_error():
    body = hdr("'|O'").encode() + b" " * (2 << 20) + b"\n"
    data = b"\x93NUMPY\x02\x00" + struct.pack("<I", len(body)) + body
    r = scan(data + PAYLOAD)
    assert r.verdict == "error" and any("larger than" in e for e in r.errors), str(r)


def test_object_with_names_that_look_like_types_is_not_object():
    # field names are not type strings: a float field called 'O' or 'object' holds no objects
    dt = np.dtype([("O", "<f4"), ("object", "<i2"), ("T", "u1")])
    buf = io.BytesIO()
    np.save(buf, np.zeros(3, dt))
    h = npy.read_header(buf.getvalue())
    assert not h.is_object
    assert scan(buf.getvalue()).verdict == "safe"


BENIGN = [
    np.zeros((2, 3), "f4"), np.arange(5, dtype=">i8"), np.zeros((), "u1"), np.array(["ab", "c"]),
    np.array([b"x"]), np.zeros(2, "M8[ns]"), np.zeros(2, "m8[s]"), np.zeros((3, 4), "c16", order="F"),
    np.zeros(4, [("a", "<f4"), ("b", "i2", (2,)), ("c", [("d", "u1")])]), np.zeros(2, ("f8", (2, 2))),
    np.zeros(3, np.dtype({"names": ["a"], "formats": ["<i4"], "offsets": [4], "itemsize": 12})),
    np.zeros(1, "V8"), np.zeros((0, 5), "?"), np.zeros(2, "f2"),
]


@pytest.mark.parametrize("i", range(len(BENIGN)))
def test_benign_npy_from_numpy_is_safe_and_not_object(i, tmp_path):
    p = tmp_path / "a.npy"
    np.save(p, BENIGN[i])
    data = p.read_bytes()
    h = npy.read_header(data)
    assert h.is_object is False and h.data_offset == numpy_header_end(data)
    r = scan(p)
    assert r.verdict == "safe", str(r)


def numpy_header_end(data):
    fmt = _fmt()

    f = io.BytesIO(data)
    version = fmt.read_magic(f)
    fmt._read_array_header(f, version)
    return f.tell()


def test_benign_object_array_from_numpy_is_safe(tmp_path):
    np.save(tmp_path / "o.npy", np.array([1, "x", None], dtype=object), allow_pickle=True)
    np.save(tmp_path / "s.npy", np.zeros(2, [("a", "O"), ("b", "<f4")]), allow_pickle=True)
    for f in ("o.npy", "s.npy"):
        r = scan(tmp_path / f)
        assert r.verdict == "safe", str(r)
        assert any("object dtype" in n for n in r.notes)


def test_benign_npz_from_numpy_is_safe(tmp_path):
    arrays = {f"a{i}": a for i, a in enumerate(BENIGN)}
    np.savez(tmp_path / "s.npz", **arrays)
    np.savez_compressed(tmp_path / "c.npz", **arrays)
    for f in ("s.npz", "c.npz"):
        r = scan(tmp_path / f)
        assert r.verdict == "safe", str(r)


@pytest.mark.parametrize("compress", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
@pytest.mark.parametrize("name", ["hex escape", "object", "field in a subarray", "dict descr"])
def test_hidden_object_arrays_inside_npz(compress, name):
    good = io.BytesIO()
    np.save(good, np.ones(3, "f4"))
    member = npy_raw(OBJECT_HEADERS[name]) + PAYLOAD
    z = zip_bytes({"w.npy": good.getvalue(), "x.npy": member}, compress)
    with np.load(io.BytesIO(z), allow_pickle=False) as npz:  # the member numpy sees (header only)
        assert "x" in npz.files
    assert_unsafe(scan(z), glob="os.system", member="x.npy")


def test_a_member_not_named_npy_is_still_an_array_to_numpy():
    # NpzFile reads any member that starts with the magic as an array, whatever its name
    z = zip_bytes({"weights.bin": npy_raw(hdr("'object'")) + PAYLOAD})
    assert_unsafe(scan(z), glob="os.system", member="weights.bin")


def test_keras_weights_npz_inside_a_keras_archive():
    # Keras 3 can store weights as model.weights.npz inside the .keras zip
    weights = zip_bytes({"layers/dense/vars/0.npy": npy_raw(hdr(r"'\117'")) + PAYLOAD})
    config = json.dumps({"class_name": "Sequential", "config": {"layers": []}, "module": "keras"}).encode()
    k = zip_bytes({"metadata.json": b'{"keras_version": "3.5.0"}', "config.json": config,
                   "model.weights.npz": weights})
    f = assert_unsafe(scan(k), glob="os.system")
    assert f.member == "model.weights.npz!layers/dense/vars/0.npy"


def test_the_reader_lists_hidden_object_arrays_as_objects_or_refuses_them():
    import mfparse
    from mfparse.errors import MFParseError

    for name in ("plain", "comma string", "subarray tuple", "field"):
        data = npy_raw(OBJECT_HEADERS[name]) + PAYLOAD
        try:
            with mfparse.open(data, format="npy") as m:
                assert list(m.tensors())[0].dtype == "object"
        except MFParseError:
            pass  # headers outside the subset the reader parses are refused, never listed as numbers


def test_judged_plainly_or_as_a_literal():
    buf = io.BytesIO()
    np.save(buf, np.zeros((2, 3), "<f4"))
    assert npy.read_header(buf.getvalue()).how == "plain"
    assert npy.read_header(npy_raw(hdr("'<f4'", shape="(02,)")[:0] + hdr("'<f4'"))).how == "plain"
    # a leading zero is not a Python 3 literal: numpy refuses it, and so does the reader
    with pytest.raises(Exception):
        numpy_reads(npy_raw(hdr("'<f4'", shape="(02,)")))
    with pytest.raises(Exception):
        npy.read_header(npy_raw(hdr("'<f4'", shape="(02,)")))
    assert has(scan(npy_raw(hdr("'|O'")) + PAYLOAD), glob="os.system")
