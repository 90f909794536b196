"""The scanner's fast path (mfparse/scan/quick.py over csrc/mf_scan.c) against the full scan.

The fast path may answer only with the full scan's report (every field but the time); for
anything it does not know it must hand the file over (a bail). Here: real writers' files take it;
every kind of event, container, polyglot and archive anomaly the full scan reports makes it bail
or answer identically; the benchmark corpora and mutants of real files give the same report both
ways. (The rest of the test suite runs with MFPARSE_SCAN_FASTPATH=check, tests/conftest.py: every
report the fast path gives anywhere in the tests is compared with the full scan's.)
"""

from __future__ import annotations

import collections
import importlib.util
import io
import os
import pickle
import random
import time
import warnings
import zipfile
import zlib

import pytest

import mfparse
from mfparse import _native
from mfparse.scan import containers, pickles, policy, quick
from mfparse.scan.report import ScanReport
from pickle_asm import P, call_pickle, shared_bomb, storage_pid, tensor, torch_zip, zip_bytes
from scan_helpers import break_crc, rename_local, set_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _fast_on(monkeypatch):
    monkeypatch.setattr(quick, "ENABLED", True)
    monkeypatch.setattr(quick, "CHECK", False)


def fast(x):
    """The fast path's answer: a ScanReport, or what it hands to the full scan."""
    return quick.scan(x, time.perf_counter())


def full(x):
    """The full scan's report (the fast path off)."""
    old = quick.ENABLED
    quick.ENABLED = False
    try:
        return mfparse.scan(x)
    finally:
        quick.ENABLED = old


def record(r: ScanReport) -> dict:
    d = r.to_dict()
    d.pop("seconds")
    return d


def same(x, answered: bool | None = None) -> ScanReport:
    """The full scan's report of x; the fast path's, when it answers, is the same. answered:
    whether the fast path must answer (True) or hand over (False)."""
    f = fast(x)
    r = full(x)
    if isinstance(f, ScanReport):
        assert record(f) == record(r)
    if answered is not None:
        assert isinstance(f, ScanReport) == answered, (f, str(r))
    return r


def wrap(data: bytes) -> bytes:
    """A pickle of protocol 2 around the given opcodes (then STOP)."""
    return P(2).raw(data).stop().data


# ---- what the fast path answers -----------------------------------------------------------------

def test_real_writers(tmp_path):
    torch = pytest.importorskip("torch")
    np = pytest.importorskip("numpy")
    m = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    opt = torch.optim.Adam(m.parameters())
    m(torch.ones(1, 8)).sum().backward()
    opt.step()
    files = {
        "state_dict.pt": lambda p: torch.save(m.state_dict(), p),
        "checkpoint.pt": lambda p: torch.save({"model": m.state_dict(), "optim": opt.state_dict(), "epoch": 3}, p),
        "dtypes.pt": lambda p: torch.save({str(t): torch.ones(3, dtype=t) for t in (torch.float16, torch.bfloat16,
                                                                                   torch.int8, torch.bool)}, p),
        "views.pt": lambda p: torch.save({"a": torch.arange(10.0)[2:5], "t": torch.ones(3, 4).t()}, p),
        "numpy.pkl": lambda p: p.write_bytes(pickle.dumps({"a": np.arange(10), "s": np.float32(2)}, protocol=2)),
        "numpy5.pkl": lambda p: p.write_bytes(pickle.dumps(np.ones((2, 3)), protocol=5)),
    }
    for proto in range(6):
        files[f"builtins{proto}.pkl"] = (lambda pr: lambda p: p.write_bytes(pickle.dumps(
            {"a": [1, 2.5, "s", None, True], "b": b"x", "t": (1, 2), "s": {1}, "f": frozenset([2]),
             "od": collections.OrderedDict(x=1), "c": complex(1, 2)}, protocol=pr)))(proto)
    for name, write in files.items():
        path = tmp_path / name
        write(path)
        r = same(path, answered=True)
        assert r.verdict == "safe", str(r)
        same(str(path), answered=True)
        same(path.read_bytes(), answered=True)


def test_imports_off_the_allowlist():
    payloads = [
        call_pickle("os", "system", "echo"),
        call_pickle("posix", "system", "x", proto=0),
        P(4).call("subprocess", "Popen", "x", stack_global=True).stop().data,
        P().mark().unicode("id").inst("subprocess", "check_output").stop().data,
        P().mark().glob("smtplib", "SMTP").unicode("h").obj().stop().data,
        call_pickle("argparse", "Namespace"),                  # known-benign: info
        call_pickle("mylab.config", "Settings", 1),            # suspicious
        call_pickle("__builtin__", "eval", "1", proto=0),     # Python 2 names, mapped
        call_pickle("copy_reg", "_reconstructor"),
        call_pickle("os system", "x y"),                       # not a dotted name
        call_pickle("torch", "_utils._rebuild_tensor_v2"),     # split elsewhere: still allowed
        P(2).call("os", "system", "a").pop().call("os", "system", "b").pop().call("nt", "system", "c").stop().data,
        call_pickle("os", "system", "a") + call_pickle("os", "system", "b") + call_pickle("sys", "exit"),
    ]
    for data in payloads:
        same(data, answered=True)
    r = same(payloads[-2], answered=True)
    assert [(f.global_name, f.count) for f in r.findings] == [("os.system", 2), ("nt.system", 1)]
    r = same(payloads[-1], answered=True)
    assert [(f.global_name, f.pickle) for f in r.findings] == [("os.system", 0), ("os.system", 1), ("sys.exit", 2)]


def test_arguments_judged_in_c():
    for data, answered in [
        (call_pickle("builtins", "bytearray", 16), True),
        (call_pickle("builtins", "bytearray", pickles.ALLOC_BOMB), False),
        (call_pickle("builtins", "bytearray", 1 << 70), False),
        (call_pickle("__builtin__", "bytearray", pickles.ALLOC_BOMB), False),
        (call_pickle("_codecs", "encode", "x", "latin1"), True),
        (call_pickle("_codecs", "encode", "x", "LATIN-1"), True),
        (call_pickle("_codecs", "encode", "x", b"utf8"), True),
        (call_pickle("_codecs", "encode", "x", "rot13"), False),
        (call_pickle("_codecs", "encode", "x", 1), False),
        (call_pickle("_codecs", "encode", "x"), True),
        (P(2).glob("numpy.core.multiarray", "_reconstruct").mark().none().args(2, 3).unicode("b").tuple()
         .reduce().stop().data, True),
        (P(2).glob("numpy.core.multiarray", "_reconstruct").mark().none().args(1 << 12, 1 << 12).unicode("b")
         .tuple().reduce().stop().data, False),
        (P(2).glob("numpy._core.multiarray", "_reconstruct").mark().none().args(-5, 1 << 30).unicode("b")
         .tuple().reduce().stop().data, True),
        (P(2).glob("numpy.core.multiarray", "_reconstruct").mark().none().unicode("x").tuple().reduce().stop().data,
         False),
        (call_pickle("pickle", "loads", call_pickle("os", "system", "x")), False),  # a nested payload
        (call_pickle("pickle", "loads", 3), True),
    ]:
        same(data, answered=answered)


@pytest.mark.parametrize("label,data,answered", [
    ("BUILD on OrderedDict", P(2).glob("collections", "OrderedDict").empty_tuple().reduce().empty_dict().build()
     .stop().data, True),
    ("BUILD on a tensor", P(2).glob("torch._utils", "_rebuild_tensor_v2").empty_tuple().reduce().empty_dict().build()
     .stop().data, False),
    ("BUILD on a tensor, split name", P(2).glob("torch", "_utils._rebuild_tensor_v2").empty_tuple().reduce()
     .empty_dict().build().stop().data, False),
    ("BUILD on a class", P(2).glob("mylib", "C").empty_dict().build().stop().data, False),
    ("BUILD on a user object", P(2).glob("mylib", "C").empty_tuple().reduce().empty_dict().build().stop().data, True),
    ("BUILD on a call of a call", P(2).glob("mylib", "f").empty_tuple().reduce().empty_tuple().reduce().empty_dict()
     .build().stop().data, False),
    ("SETITEM on OrderedDict", P(2).glob("collections", "OrderedDict").empty_tuple().reduce().unicode("k").int(1)
     .setitem().stop().data, True),
    ("SETITEM on a tensor", P(2).glob("torch", "Tensor").empty_tuple().reduce().unicode("k").int(1).setitem()
     .stop().data, False),
    ("SETITEM on a list", P(2).empty_list().unicode("k").int(1).setitem().stop().data, False),
    ("SETITEM on a user object", P(2).glob("mylib", "C").empty_tuple().reduce().unicode("k").int(1).setitem()
     .stop().data, True),
    ("APPEND on an allowed call", P(2).glob("builtins", "set").empty_tuple().reduce().int(1).append().stop().data,
     False),
    ("APPEND on a user object", P(2).glob("mylib", "C").empty_tuple().reduce().int(1).append().stop().data, True),
    ("APPEND on a global", P(2).glob("mylib", "C").int(1).append().stop().data, False),
    ("EXT", P(2).ext1(7).args("x").reduce().stop().data, False),
    ("persistent id", P(2).mark().unicode("storage").tuple().binpersid().stop().data, False),
    ("computed STACK_GLOBAL", P(4).sglob("builtins", "str.join").unicode("").mark().unicode("o").unicode("s").list()
     .tuple2().reduce().unicode("system").stack_global().stop().data, False),
    ("bytes operands", P(4).binstring("os").binstring("system").stack_global().args("x").reduce().stop().data, None),
    ("non-ASCII name", call_pickle("modulé", "x"), False),
    ("control byte in a name", call_pickle("os\x01", "x"), False),
    ("memo index far away", P(2).none().long_binput(0xFFFFFFF0).stop().data, False),
    ("MARKs deep", P(2).raw(b"(" * 6000).raw(b"0" * 6000).none().stop().data, False),
    ("expansion bomb", shared_bomb(30).stop().data, False),
    ("shared, no bomb", shared_bomb(3).stop().data, True),
    ("FRAME lie", P(4).frame(3).raw(P().call("os", "system", "x", stack_global=True).data).stop().data, False),
    ("truncated", call_pickle("os", "system", "x")[:-1], False),
    ("garbage after", call_pickle("os", "system", "x") + b"\xff\xfe", False),
    ("padding after", pickle.dumps([1, 2]) + b"\n\n  ", False),
    ("five stacked pickles", pickle.dumps(1) * 5, False),
    ("four stacked pickles", pickle.dumps(1) * 4, True),
    ("text", b"hello world, this is text\n", False),
    ("empty", b"", False),
    ("zip end record in a pickle", pickle.dumps(b"PK\x05\x06" + bytes(40)), False),
    ("lzma-looking pickle", b"]\x00" + pickle.dumps(1)[2:], False),
    ("tflite tag at 4", pickle.dumps(b"TFL3"), None),
    ("HDF5 superblock at 512", (lambda d: d[:512] + b"\x89HDF\r\n\x1a\n" + d[520:])(
        P(2).bytes_(bytes(600)).stop().data), False),
    ("JSON brace at 8", P(2).unicode("{abcdef").stop().data, None),
])
def test_events_and_formats(label, data, answered):
    same(data, answered=answered)


def test_names_decided_by_name(tmp_path):
    data = call_pickle("os", "system", "x")
    for name, answered in (("model.onnx", False), ("MODEL.PB", False), ("x.ort", False), ("model.bin", True)):
        p = tmp_path / name
        p.write_bytes(data)
        same(p, answered=answered)
        assert isinstance(_native.scan_quick(data, quick.tables(), name), tuple) == answered


def test_npy(tmp_path):
    np = pytest.importorskip("numpy")
    arrays = {"f8": np.arange(10.0), "f4_2d": np.ones((3, 4), np.float32), "i1": np.arange(5, dtype=np.int8),
              "u8": np.arange(3, dtype=np.uint64), "bool": np.array([True, False]), "c16": np.ones(2, complex),
              "f2": np.ones(4, np.float16), "scalar": np.array(3.5), "empty": np.zeros((0, 5)),
              "fortran": np.asfortranarray(np.ones((2, 3))), "bytes": np.array([b"ab", b"c"]),
              "unicode": np.array(["x", "yz"]), "big_endian": np.arange(4, dtype=">i4"),
              "void": np.zeros(2, "V3")}
    for name, a in arrays.items():
        p = tmp_path / f"{name}.npy"
        np.save(p, a)
        same(p, answered=True)
    for name, a, answered in (("dt", np.array(["2020-01-01"], "datetime64[D]"), False),
                              ("struct", np.zeros(2, [("a", "<i4"), ("b", "<f8")]), False),
                              ("object", np.array([1, "x"], dtype=object), False),
                              ("longdouble", np.ones(2, np.longdouble), False)):
        p = tmp_path / f"{name}.npy"
        np.save(p, a, allow_pickle=True)
        same(p, answered=answered)
    data = (tmp_path / "f8.npy").read_bytes()
    for variant, answered in ((data[:-8], True),                    # data cut short: nothing after it
                              (data + bytes(16), False),            # zero padding: a note
                              (data + b"junk", False),              # bytes numpy does not read
                              (data + pickle.dumps(1), False),
                              (data.replace(b"'fortran_order': False", b"'fortran_order':  False"), False),
                              (data[:6] + b"\x04\x00" + data[8:], False)):
        same(variant, answered=answered)
    z = tmp_path / "a.npz"
    np.savez(z, a=np.arange(10), b=np.ones((3, 3)))
    same(z, answered=True)
    np.savez_compressed(z, a=np.arange(10))
    same(z, answered=False)
    np.savez(z, a=np.array([1, None], dtype=object))
    same(z, answered=False)


def test_legacy_torch_files(tmp_path):
    torch = pytest.importorskip("torch")
    p = tmp_path / "legacy.pt"
    m = torch.nn.Linear(4, 3)
    for obj in (m.state_dict(), {"a": torch.arange(6).view(2, 3)[:, 1], "b": torch.ones(2, dtype=torch.float16),
                                 "c": torch.zeros(3, dtype=torch.bool), "epoch": 1}, {}):
        torch.save(obj, p, _use_new_zipfile_serialization=False)
        same(p, answered=True)
    torch.save({"w": torch.ones(4), "v": torch.arange(3)}, p, _use_new_zipfile_serialization=False)
    data = p.read_bytes()
    for variant, answered in ((data, True),
                              (data[:-4], False),                   # the last storage cut short: a finding
                              (data + b"\x00" * 8, False),          # bytes after the storages: a note
                              (data + pickle.dumps(1), False)):
        same(variant, answered=answered)
    magic = P(2).raw(b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")).stop().data
    head = magic + P(2).int(1001).stop().data + P(2).empty_dict().stop().data
    main = P(2).mark().unicode("w")
    tensor(main, "0", 4, 0, (4,), (1,), legacy=True)
    main = main.dict().stop().data
    keys = P(2).mark().unicode("0").list().stop().data
    ok = head + main + keys + (4).to_bytes(8, "little") + bytes(16)
    for data, answered in ((ok, True),
                           (head + main + keys + (5).to_bytes(8, "little") + bytes(16), False),  # count differs
                           (head + main + P(2).mark().unicode("9").list().stop().data + (4).to_bytes(8, "little")
                            + bytes(16), False),                                                 # unknown key
                           (head + main + P(2).empty_list().stop().data, True),                  # no storages
                           (head + call_pickle("os", "system", "x") + keys + (4).to_bytes(8, "little") + bytes(16),
                            False),                                                              # no torch records
                           (head + P(2).mark().unicode("w").raw(P(2).data[2:]).dict().stop().data, False)):
        same(data, answered=answered)


# ---- archives ------------------------------------------------------------------------------------

def _torch_pickle(keys=("0",), numel=4):
    p = P(2).empty_dict()
    for i, k in enumerate(keys):
        p.unicode(f"w{i}")
        tensor(p, k, numel, 0, (numel,), (1,))
        p.setitem()
    return p.stop().data


def _duplicate():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate
        return zip_bytes([("a.pkl", pickle.dumps(1)), ("a.pkl", pickle.dumps(2))])


def test_archives():
    sys_ = call_pickle("os", "system", "x")
    good = torch_zip(_torch_pickle(), extra={"data/0": bytes(16)})
    for data, answered in [
        (good, True),
        (torch_zip(sys_), True),
        (torch_zip(_torch_pickle(numel=8), extra={"data/0": bytes(16)}), False),   # storage past its record
        (torch_zip(_torch_pickle(keys=("1",)), extra={"data/0": bytes(16)}), False),  # record missing
        (zip_bytes({"model/data.txt": sys_}), True),                 # a member that imports: judged
        (zip_bytes({"model/blob": b"(" + bytes(40)}), True),         # opcode first, no import: data
        (zip_bytes({"weights.pkl": pickle.dumps([1, 2])}), True),
        (zip_bytes({"a.pkl": b""}), False),                          # named like a pickle, empty
        (zip_bytes({"a.pkl": b"\x00\x01"}), False),                  # named like a pickle, not one
        (rename_local(torch_zip(sys_), "archive/data.pkl", "archive/data.txt"), True),   # member findings
        (set_flags(torch_zip(sys_), "archive/data.pkl", 0x1), True),
        (set_flags(torch_zip(sys_), "archive/data.pkl", 0x20), True),
        (set_flags(set_flags(good, "archive/byteorder", 0x40), "archive/version", 0x1), True),
        (break_crc(good, "archive/data.pkl"), True),
        (break_crc(torch_zip(sys_, extra={"x.pkl": sys_}), "archive/data.pkl"), True),
        (break_crc(break_crc(torch_zip(sys_, extra={"x.pkl": sys_}), "archive/x.pkl"), "archive/data.pkl"), True),
        (set_flags(break_crc(torch_zip(sys_, extra={"x.pkl": sys_}), "archive/x.pkl"), "archive/x.pkl", 0x1), True),
        (break_crc(zip_bytes({"model/data.txt": sys_}), "model/data.txt"), True),
        (break_crc(zip_bytes({"blob": b"(" + bytes(40)}), "blob"), True),   # not judged: no CRC check
        (torch_zip(sys_, compress=8), False),                        # deflated members
        (_duplicate(), False),                                       # the same name twice
        (zip_bytes({"x.onnx": b"(" + bytes(40)}), False),
        (zip_bytes({"modèle.pkl": pickle.dumps(1)}), False),
        (zip_bytes({"inner.zip": torch_zip(sys_)}), False),
        (zip_bytes({"a.npy": b"\x93NUMPY" + bytes(40)}), False),
        (good + b"trailing", False),
        (b"prefix" + good, False),
        (sys_ + good, False),                                        # a polyglot
        (good[:-2] + b"\x05\x00" + b"abcde", False),                 # a comment
    ]:
        same(data, answered=answered)


def test_members_the_inspectors_read():
    names = containers.inspected_names()
    members = list(names["exact"]) + [f"sub/{n}" for n in names["base"]] + \
        [f"t/chat{e.upper()}" for e in names["base_suffix"]] + [f"archive/x{s}" for s in names["suffix"]]
    for nm in members:
        same(zip_bytes({nm: b"{}", "archive/data.pkl": pickle.dumps(1)}), answered=False)
    # the stock inspectors are the ones inspected_names describes
    assert [f.__module__ + "." + f.__name__ for f in containers.ZIP_INSPECTORS] == [
        "mfparse.scan.keras.inspect_zip", "mfparse.scan.formats.inspect_zip_templates",
        "mfparse.scan.torchscript.inspect_zip"]


def test_zip64_torch_archives(tmp_path):
    torch = pytest.importorskip("torch")
    p = tmp_path / "m.pt"
    torch.save({"w": torch.ones(3), "b": torch.zeros(2, dtype=torch.int64)}, p)
    data = p.read_bytes()
    assert data[-42:-38] == b"PK\x06\x07"  # torch writes zip64 end records
    same(data, answered=True)
    tail = data[-98:]
    # the locator pointing elsewhere, a record of another size, a second disk: bail
    for at, patch in ((-42 + 8, (len(data) - 99).to_bytes(8, "little")), (-98 + 4, (45).to_bytes(8, "little")),
                      (-42 + 16, (2).to_bytes(4, "little")), (-98 + 16, (1).to_bytes(4, "little"))):
        bad = bytearray(data)
        bad[len(data) + at:len(data) + at + len(patch)] = patch
        same(bytes(bad), answered=False)
    assert tail == data[-98:]


# ---- files ---------------------------------------------------------------------------------------

def test_paths(tmp_path):
    data = call_pickle("os", "system", "x")
    p = tmp_path / "a.pkl"
    p.write_bytes(data)
    same(p, answered=True)
    big = tmp_path / "big.pkl"
    big.write_bytes(P(2).bytes_(bytes(quick.SMALL_FILE)).stop().data)
    assert fast(big) is None  # mapped by the full scan
    same(big)
    assert fast(tmp_path) is None
    with pytest.raises(IsADirectoryError):
        mfparse.scan(tmp_path)
    assert fast(tmp_path / "missing") is None
    with pytest.raises(FileNotFoundError):
        mfparse.scan(tmp_path / "missing")
    # a bail hands the bytes it read to the full scan
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(data + b"\xff")
    assert fast(bad) == data + b"\xff"
    same(bad, answered=False)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_named_pipe_is_not_opened(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    t0 = time.perf_counter()
    assert fast(fifo) is None  # opening it would block until a writer comes
    assert time.perf_counter() - t0 < 60


def test_plugins_turn_it_off(monkeypatch):
    data = call_pickle("os", "system", "x")
    assert isinstance(fast(data), ScanReport)
    monkeypatch.setattr(containers, "SNIFFERS", list(containers.SNIFFERS))
    monkeypatch.setattr(containers, "CHECKERS", dict(containers.CHECKERS))
    monkeypatch.setattr(containers, "_INDEX", [])
    monkeypatch.setattr(containers, "_MEMBER_MAGIC_FIRST", set(containers._MEMBER_MAGIC_FIRST))
    assert isinstance(fast(data), ScanReport)  # copies of the stock registry are the stock registry
    monkeypatch.undo()
    monkeypatch.setattr(containers, "REGISTRY_VERSION", containers.REGISTRY_VERSION + 1)
    assert isinstance(fast(data), ScanReport)  # the same registry again

    def sniffer(h, b, n, t):
        return h[:4] == b"FAKE"

    monkeypatch.setattr(containers, "SNIFFERS", list(containers.SNIFFERS))
    monkeypatch.setattr(containers, "CHECKERS", dict(containers.CHECKERS))
    monkeypatch.setattr(containers, "_INDEX", [])
    monkeypatch.setattr(containers, "_MEMBER_MAGIC_FIRST", set(containers._MEMBER_MAGIC_FIRST))
    containers.register_checker("fakefmt", lambda ctx, buf, where, **kw: True, sniffer=sniffer, before="zip")
    assert fast(data) is None
    monkeypatch.undo()
    assert isinstance(fast(data), ScanReport)
    monkeypatch.setattr(containers, "ZIP_INSPECTORS", containers.ZIP_INSPECTORS + [lambda *a: None])
    assert fast(data) is None
    monkeypatch.undo()
    monkeypatch.setitem(containers.CHECKERS, "zip", lambda ctx, buf, where, **kw: True)
    assert fast(data) is None
    monkeypatch.undo()
    assert isinstance(fast(data), ScanReport)


def test_switch(monkeypatch, tmp_path):
    p = tmp_path / "a.pkl"
    p.write_bytes(pickle.dumps([1]))
    seen = []
    monkeypatch.setattr(quick, "scan", lambda x, t0: seen.append(x))
    monkeypatch.setattr(quick, "ENABLED", False)
    assert mfparse.scan(p).verdict == "safe" and not seen
    monkeypatch.setattr(quick, "ENABLED", True)
    assert mfparse.scan(p).verdict == "safe" and seen == [p]


def test_check_mode_catches_a_difference(monkeypatch):
    monkeypatch.setattr(quick, "CHECK", True)
    real = quick.report

    def wrong(path, got, t0):
        r = real(path, got, t0)
        r.verdict = "safe"
        return r

    monkeypatch.setattr(quick, "report", wrong)
    with pytest.raises(AssertionError, match="disagree"):
        mfparse.scan(call_pickle("os", "system", "x"))


def test_policy_applies_after_the_fast_path():
    data = call_pickle("mylab.config", "Settings")
    r = mfparse.scan(data, policy=policy.Policy(allow=["mylab.config.Settings"]))
    assert r.verdict == "safe" and r.findings[0].severity == "info"


# ---- the tables ----------------------------------------------------------------------------------

def test_tables_follow_the_lists():
    t = quick.tables()
    for name in policy.ALLOWED:
        assert t.classify(*name.rsplit(".", 1)) & quick.ALLOWED, name
    for module, name, bits in [("collections", "OrderedDict", quick.ALLOWED | quick.BUILD_OK | quick.SETITEM_OK),
                               ("__builtin__", "set", quick.ALLOWED), ("copy_reg", "_reconstructor", 0),
                               ("torch", "_utils._rebuild_tensor_v2", quick.ALLOWED),
                               ("__builtin__", "bytearray", quick.ALLOWED | quick.ARG_BYTEARRAY),
                               ("cPickle", "loads", quick.ARG_NESTED), ("os", "system", 0),
                               ("argparse", "Namespace", 0)]:
        assert t.classify(module, name) == bits, (module, name)
    assert pickles._ARG_CHECKED == pickles._BYTEARRAY | pickles._CODECS | pickles._RECONSTRUCT | pickles.NESTED_LOADERS


def test_crc32():
    rng = random.Random(3)
    for n in (0, 1, 7, 100, 5000):
        b = bytes(rng.randrange(256) for _ in range(n))
        assert _native.crc32(b) == zlib.crc32(b)


# ---- corpora and mutants -------------------------------------------------------------------------

def _bench_scan():
    spec = importlib.util.spec_from_file_location("bench_scan", os.path.join(ROOT, "benchmarks", "bench_scan.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.filterwarnings("ignore")  # the writers' deprecation notices (torch.jit.script)
def test_benchmark_corpora(tmp_path):
    pytest.importorskip("torch")
    bench = _bench_scan()
    bench._benign(tmp_path / "benign")
    bench._malicious(tmp_path / "malicious")
    answered = 0
    for f in sorted((tmp_path / "benign").iterdir()) + sorted((tmp_path / "malicious").iterdir()):
        answered += isinstance(fast(f), ScanReport)
        same(f)
    assert answered >= 30


def test_mutants(tmp_path):
    torch = pytest.importorskip("torch")
    buf = io.BytesIO()
    torch.save({"w": torch.ones(4), "n": torch.arange(3)}, buf)
    seeds = [buf.getvalue(), pickle.dumps({"a": [1, 2, "x"], "b": (None, 2.5)}, protocol=4),
             call_pickle("os", "system", "x"), torch_zip(_torch_pickle(), extra={"data/0": bytes(16)})]
    rng = random.Random(14)
    answered = 0
    for seed in seeds:
        for _ in range(150):
            b = bytearray(seed)
            for _ in range(rng.choice((1, 1, 2, 4))):
                at = rng.randrange(len(b))
                how = rng.randrange(4)
                if how == 0:
                    b[at] = rng.randrange(256)
                elif how == 1:
                    b[at] ^= 1 << rng.randrange(8)
                elif how == 2:
                    del b[at]
                else:
                    b.insert(at, rng.choice(b"().0123456789abcdefghijklmnopqrstuvwxyzPK\x80\x93\x94\x95"))
            f = fast(bytes(b))
            answered += isinstance(f, ScanReport)
            r = full(bytes(b))
            if isinstance(f, ScanReport):
                assert record(f) == record(r), bytes(b)
    assert answered > 50  # some mutants stay in the common case


# ---- TorchScript code: one walk, the same answer as walking the tree twice --------------------------

def _judge_code_reference(text: str):
    """judge_code as it was first written (ast.walk for the functions, again for the calls)."""
    import ast

    from mfparse.scan import torchscript as ts

    tree = ast.parse(text)
    out, custom, funcs = [], set(), {}
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(fn):
                funcs.setdefault(id(sub), fn.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            name = ts._dotted(node)
            if name and name.startswith("__torch__.torch.classes."):
                custom.add(name.split(".")[4] if name.count(".") >= 4 else name)
            continue
        if not isinstance(node, ast.Call):
            continue
        name = ts._dotted(node.func)
        if name is None:
            continue
        name = ts._normal(name)
        fn = funcs.get(id(node))
        why = ts.DANGEROUS_CALLS.get(name)
        if why is None:
            why = next((w for p, w in ts._DANGEROUS_PREFIXES.items() if name.startswith(p)), None)
        if why is None and name.startswith("ops.") and name.count(".") >= 2:
            ns = name.split(".")[1]
            if ns not in ts._TORCH_NAMESPACES:
                custom.add(ns)
            if name.endswith(("from_file", "load_library")) or ".save" in name:
                why = "reads or writes files, or loads a library"
        if why is not None:
            out.append(("dangerous", f"calls {name} ({why})", node.lineno, fn))
        elif name in ts._PYTHON_BUILTINS and not ts._torchscript_getattr(name, node):
            out.append(("suspicious", f"calls {name} (a Python builtin TorchScript does not have: code written by "
                        "hand, not by torch.jit.save)", node.lineno, fn))
    return out, custom


@pytest.mark.filterwarnings("ignore")  # torch.jit.script is deprecated
def test_torchscript_judge_matches_the_two_walks():
    torch = pytest.importorskip("torch")
    from mfparse.scan import torchscript as ts

    sources = [
        "def f(x):\n    return open(x)\n\nclass C:\n    def g(self):\n        def h():\n            return eval('1')\n"
        "        return torch.save(h, ops.aten.from_file('x'))\n",
        "@torch.load\nasync def a(x=open('d')):\n    return [getattr(y, 'z') for y in ops.mylib.op(x)]\n"
        "lambda: exec('1')\nx = __torch__.torch.classes.mylib.Thing(1)\n",
        "class M(Module):\n  def forward(self, x: Tensor) -> Tensor:\n    _0 = getattr(self, '0')\n"
        "    return ops.prim.rpc_async(torch.distributed.rpc.x(), ops.aten._save_z())\n"
        "  def __setstate__(self, s):\n    def inner():\n      return vars()\n    return torch.jit.load(inner)\n",
    ]
    buf = io.BytesIO()
    seq = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU())
    torch.jit.save(torch.jit.script(seq), buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
        sources += [z.read(n).decode() for n in z.namelist() if n.endswith(".py")]
    for text in sources:
        assert ts.judge_code(text) == _judge_code_reference(text)
    assert ts.judge_code(sources[0])[0]  # the samples do find things
