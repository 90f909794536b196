"""External data in HDF5 (issue 16, class 7): external storage files, external links and
virtual dataset sources are files libhdf5 opens when the model is read. Files written by h5py;
mfparse must list them as h5py does and flag those outside the model's folder (as ONNX external
data is). Nothing outside the test's folder is ever opened: h5py writes these references
without following them.
"""

from __future__ import annotations


import numpy as np
import pytest

import mfparse
from pickle_asm import call_pickle
from scan_helpers import assert_unsafe, scan

h5py = pytest.importorskip("h5py")
PAYLOAD = call_pickle("os", "system", "touch /tmp/never")


def other_files(path):
    with mfparse.open(path, format="hdf5") as m:
        return m._reader.file.other_files()


def write(path, external=None, link=None, vds=None):
    with h5py.File(path, "w") as f:
        f["plain"] = np.arange(4.0)
        if external is not None:
            f.create_dataset("ext", shape=(4,), dtype="f4", external=external)
        if link is not None:
            f["ln"] = h5py.ExternalLink(*link)
        if vds is not None:
            lay = h5py.VirtualLayout(shape=(4,), dtype="f8")
            lay[:] = h5py.VirtualSource(vds, "plain", shape=(4,))
            f.create_virtual_dataset("v", lay, fillvalue=0)


@pytest.mark.parametrize("name,outside", [("/etc/hosts", True), ("../weights.bin", True), ("a/../../x", True),
                                          ("C:\\\\data\\\\x.bin", True), ("weights.bin", False),
                                          ("sub/weights.bin", False)])
def test_external_storage(tmp_path, name, outside):
    p = tmp_path / "m.h5"
    write(p, external=[(name, 0, 16)])
    with h5py.File(p, "r") as f:
        assert [(n.decode() if isinstance(n, bytes) else n) for n, *_ in f["ext"].external] == [name]
    got = other_files(p)
    assert [(k, pth, fn, tgt) for k, pth, fn, tgt, _at, _st in got] == [("external storage", "ext", name, (0, 16))]
    assert (p.read_bytes()[got[0][4]:got[0][4] + len(name)]) == name.encode()  # the offset points at the name
    r = scan(p)
    if outside:
        f = assert_unsafe(r, kind="path", glob=f"hdf5.external_storage.{name}")
        assert f.offset == got[0][4]
    else:
        assert r.verdict == "safe", str(r)
        assert any(name in n for n in r.notes)


def test_unlimited_external_storage_and_several_files(tmp_path):
    p = tmp_path / "m.h5"
    write(p, external=[("a.bin", 0, 8), ("/abs/b.bin", 4, h5py.h5f.UNLIMITED)])
    got = [(fn, tgt) for _k, _p, fn, tgt, _a, _s in other_files(p)]
    assert got == [("a.bin", (0, 8)), ("/abs/b.bin", (4, None))]
    assert_unsafe(scan(p), kind="path", glob="hdf5.external_storage./abs/b.bin")


@pytest.mark.parametrize("target,outside", [("../other.h5", True), ("/srv/other.h5", True), ("other.h5", False)])
def test_external_links(tmp_path, target, outside):
    p = tmp_path / "m.h5"
    write(p, link=(target, "/group/w"))
    with h5py.File(p, "r") as f:
        link = f.get("ln", getlink=True)
        assert (link.filename, link.path) == (target, "/group/w")
    assert [(k, fn, tgt) for k, _p, fn, tgt, _a, _s in other_files(p)] == [("external link", target, "/group/w")]
    r = scan(p)
    if outside:
        assert_unsafe(r, kind="path", glob=f"hdf5.external_link.{target}")
    else:
        assert r.verdict == "safe", str(r)


@pytest.mark.parametrize("source,outside", [("/data/src.h5", True), ("../src.h5", True), ("src.h5", False),
                                            (".", False)])
def test_virtual_dataset_sources(tmp_path, source, outside):
    p = tmp_path / "m.h5"
    write(p, vds=source)
    with h5py.File(p, "r") as f:
        assert [s.file_name for s in f["v"].virtual_sources()] == [source]
    got = other_files(p)
    assert [(k, pth, fn, tgt) for k, pth, fn, tgt, _a, _s in got] == [("virtual dataset", "v", source, "plain")]
    r = scan(p)
    if outside:
        f = assert_unsafe(r, kind="path", glob=f"hdf5.virtual_dataset.{source}")
        assert f.offset == got[0][4]
    else:
        assert r.verdict == "safe", str(r)


def test_many_virtual_sources_with_hyperslab_and_point_selections(tmp_path):
    p = tmp_path / "m.h5"
    with h5py.File(p, "w") as f:
        lay = h5py.VirtualLayout(shape=(6, 8), dtype="f4")
        for i in range(6):
            lay[i, ::2] = h5py.VirtualSource(f"part{i}.h5", "x", shape=(4,))
        lay[0, 1] = h5py.VirtualSource("/elsewhere.h5", "y", shape=(10,))[3]
        f.create_virtual_dataset("v", lay)
    with h5py.File(p, "r") as f:
        want = [s.file_name for s in f["v"].virtual_sources()]
    got = [fn for _k, _p, fn, _t, _a, _s in other_files(p)]
    assert got == want and "/elsewhere.h5" in got
    assert_unsafe(scan(p), kind="path", glob="hdf5.virtual_dataset./elsewhere.h5")


def test_an_unreadable_virtual_block_is_suspicious_and_the_file_still_opens(tmp_path):
    p = tmp_path / "m.h5"
    write(p, vds="src.h5")
    data = bytearray(p.read_bytes())
    at = other_files(p)[0][4]
    data[at - 10] = 0x63  # the block's entry count: now larger than the block
    p.write_bytes(bytes(data))
    with mfparse.open(p, format="hdf5") as m:
        assert "plain" in [t.name for t in m.tensors()]
    r = scan(p)
    assert_unsafe(r, "suspicious", kind="path", glob="hdf5.virtual_dataset./v")


def test_bytes_after_the_hdf5_end_of_file_address(tmp_path):
    p = tmp_path / "m.h5"
    write(p)
    base = p.read_bytes()
    r = scan(base + PAYLOAD)
    f = assert_unsafe(r, "suspicious", kind="polyglot", why="hdf5 data ends at byte")
    assert f.offset == len(base)
    assert_unsafe(r, glob="os.system", member="<after the hdf5 data>")
    assert scan(base).verdict == "safe"
