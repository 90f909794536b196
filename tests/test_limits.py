"""Resource bounds: every size, count and depth a file declares is checked against the file's
real size and a fixed cap before anything is allocated or walked (one test per bound)."""

from __future__ import annotations

import io
import struct
import zipfile

import pytest
import torch

import mfparse
from mfparse import _native
from mfparse.formats.zip import ZipArchive
from mfparse.source import Source


def test_pickle_nesting_depth():
    data = b"]" * 500 + b"a" * 499 + b"."
    p = _native.PickleParse(len(data))
    root, _ = p.load(data)
    with pytest.raises(mfparse.ResourceLimitError, match="nested deeper than 200 levels"):
        p.torch_walk(root)


def test_pickle_shared_reference_bomb():
    # each tuple holds the previous one twice: 2^41 - 1 nodes as a tree, from 83 bytes
    data = b"K\x00" + b"2\x86" * 40 + b"."
    p = _native.PickleParse(len(data))
    root, _ = p.load(data)
    assert p.expansion(root)["tree"] == (1 << 41) - 1
    # the walker shows each shared tuple once and refers to it afterwards: 40 tuples, the two
    # ints of the innermost one, 39 references
    p.torch_walk(root)
    kinds = [e[2] for e in p.torch_entries()]
    assert (kinds.count("tuple"), kinds.count("scalar"), kinds.count("ref"), len(kinds)) == (40, 2, 39, 81)


def test_pickle_memo_key_far_beyond_the_input():
    data = b"K\x01r\xff\xff\xff\x7fj\xff\xff\xff\x7f."
    p = _native.PickleParse(len(data))
    root, _ = p.load(data)
    assert root.value == 1


def test_pickle_string_length_beyond_the_input():
    data = b"\x8d" + struct.pack("<Q", 1 << 62) + b"abc."
    with pytest.raises(mfparse.TruncatedFileError, match="runs past the data"):
        _native.PickleParse(len(data)).load(data)


def test_pickle_arena_cap_follows_the_input_size():
    # a pickle that builds 10 MB of nodes from a few bytes per node hits its arena cap when the
    # cap is derived from a tiny size hint
    data = b"(" + b"]" * 400000 + b"l."
    p = _native.PickleParse(1)  # caller claims a 1-byte input: cap 64 MiB + 256 B
    p.load(data)  # 400k nodes * 64 B = 25 MB: within the floor
    data = b"(" + b"]" * 1200000 + b"l."
    with pytest.raises(mfparse.ResourceLimitError, match="more than this input justifies"):
        _native.PickleParse(1).load(data)


def test_torch_shape_product_overflow(tmp_path):
    buf = io.BytesIO()
    torch.save({"w": torch.ones(2, 3)}, buf)
    data = bytearray(buf.getvalue())
    i = data.index(b"K\x02K\x03\x86")  # size (2, 3) -> (2**31-1, 2**31-1) via BININT
    data[i:i + 5] = b"J\xff\xff\xff\x7fJ\xff\xff\xff\x7f\x86"[:5]
    with pytest.raises(mfparse.MFParseError):
        mfparse.open(bytes(data))


def test_zip_decompressed_size_is_the_declared_size():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("bomb", b"\0" * 1_000_000)
    data = bytearray(buf.getvalue())
    cd = data.rindex(b"PK\x01\x02")
    data[cd + 24:cd + 28] = (100).to_bytes(4, "little")
    with pytest.raises(mfparse.ResourceLimitError):
        ZipArchive(Source(bytes(data))).read("bomb")


def test_zip_entry_count_is_bounded_by_the_directory_size():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a", b"1")
    data = bytearray(buf.getvalue())
    e = data.rindex(b"PK\x05\x06")
    data[e + 8:e + 12] = b"\xff\xff\xff\xff"  # claims 65535 entries
    arch = ZipArchive(Source(bytes(data)))
    assert len(arch.directory) == 1 and arch.anomalies & (1 << 6)


def test_safetensors_header_cap_and_dimensions():
    with pytest.raises(mfparse.ResourceLimitError, match="100,000,000"):
        mfparse.open(struct.pack("<Q", 100_000_001) + b"{}", format="safetensors")
    shape = ",".join(["1"] * 65)
    hdr = ('{"w": {"dtype": "U8", "shape": [%s], "data_offsets": [0, 1]}}' % shape).encode()
    with pytest.raises(mfparse.ResourceLimitError, match="more than 64 dimensions"):
        mfparse.open(struct.pack("<Q", len(hdr)) + hdr + b"\0", format="safetensors")
