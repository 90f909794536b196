"""One test per technique that published pickle scanners have missed (issue 3).

Every hostile file is built here as bytes (tests/pickle_asm.py); nothing is ever unpickled.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zipfile

import pytest

from pickle_asm import P, call_pickle, torch_zip, zip_bytes
from scan_helpers import assert_unsafe, break_crc, has, overlap, rename_local, scan, set_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYSTEM = call_pickle("os", "system", "touch /tmp/never")
LEGACY_MAGIC = P(2).raw(b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")).stop().data


def legacy_file(main: bytes | None = None, keys: bytes | None = None, magic: bytes | None = None) -> bytes:
    """A legacy torch file: magic, protocol 1001, sys_info, main pickle, storage keys (no storages)."""
    return ((magic or LEGACY_MAGIC) + P(2).int(1001).stop().data
            + P(2).empty_dict().unicode("little_endian").raw(b"\x88").setitem().stop().data
            + (main or P(2).empty_dict().stop().data) + (keys or P(2).empty_list().stop().data))


# ---- containers and names ------------------------------------------------------------------

def test_non_pickle_member_name():
    r = scan(zip_bytes({"model/data.txt": SYSTEM, "model/README": b"hello"}))
    assert_unsafe(r, glob="os.system", member="model/data.txt")


def test_local_central_filename_mismatch():
    z = torch_zip(SYSTEM, prefix="archive")
    z = rename_local(z, "archive/data.pkl", "archive/data.txt")
    r = scan(z)
    assert_unsafe(r, glob="os.system", member="archive/data.pkl")
    assert_unsafe(r, "suspicious", kind="container", why="local and central file names differ")


@pytest.mark.parametrize("bit", [0x1, 0x20, 0x40])
def test_zip_flag_bits(bit):
    z = set_flags(torch_zip(SYSTEM), "archive/data.pkl", bit)
    r = scan(z)
    assert_unsafe(r, glob="os.system", member="archive/data.pkl")
    assert_unsafe(r, "suspicious", kind="container", why=f"flag 0x{bit:x}" if bit > 1 else "flag 0x1")


def test_bad_crc():
    z = break_crc(torch_zip(SYSTEM), "archive/data.pkl")
    r = scan(z)
    assert_unsafe(r, glob="os.system")
    assert_unsafe(r, "suspicious", kind="container", why="CRC-32")


@pytest.mark.parametrize("share", [False, True], ids=["runs-into-next", "shared-header"])
def test_overlapping_entries(share):
    """A member whose data runs over the next member, or two entries on one local header: zipfile
    (and np.load) refuse the archive, torch.load reads it; the file is a finding, and the fast
    path leaves it to the full scan."""
    z = torch_zip(P(2).dict().stop().data, extra={"data/0": b"\0" * 64, "data/1": b"\1" * 64})
    bad = overlap(z, "archive/data/0", "archive/data/1", share=share)
    if sys.version_info >= (3, 12):
        # the shared header also names another member: zipfile stops at that first
        with zipfile.ZipFile(io.BytesIO(bad)) as f, pytest.raises(zipfile.BadZipFile,
                                                                 match="differ" if share else "Overlapped entries"):
            f.read("archive/data/1" if share else "archive/data/0")
    assert not has(scan(z), why="overlapping entries")
    r = scan(bad)
    assert_unsafe(r, "suspicious", kind="container", why="overlapping entries")



@pytest.mark.parametrize("name", ["model.pt", "pytorch_model.bin", "weights", "x.safetensors"])
def test_plain_pickle_with_any_name(tmp_path, name):
    p = tmp_path / name
    p.write_bytes(SYSTEM)
    assert_unsafe(scan(p), glob="os.system")


def test_legacy_magic_pickle_is_a_call():
    r = scan(legacy_file(magic=call_pickle("os", "system", "x")))
    f = assert_unsafe(r, glob="os.system")
    assert f.pickle == 0


@pytest.mark.parametrize("slot", [3, 4])
def test_legacy_payload_in_fourth_or_fifth_pickle(slot):
    if slot == 3:
        data = legacy_file(main=call_pickle("subprocess", "check_output", "id"))
    else:
        data = legacy_file(keys=call_pickle("subprocess", "check_output", "id"))
    r = scan(data)
    f = assert_unsafe(r, glob="subprocess.check_output")
    assert f.pickle == slot


def test_npy_in_directory_scan(tmp_path):
    npy = (b"\x93NUMPY\x01\x00" + struct.pack("<H", 118)
           + b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }".ljust(117) + b"\n")
    sub = tmp_path / "data" / "deep"
    sub.mkdir(parents=True)
    (sub / "arrays.npy").write_bytes(npy + call_pickle("os", "system", "x"))
    (tmp_path / "config.json").write_text('{"hidden_size": 8}')
    r = subprocess.run([sys.executable, "-m", "mfparse", "scan", "--recursive", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    assert r.returncode == 1, r.stdout + r.stderr
    assert "arrays.npy: UNSAFE" in r.stdout and "os.system" in r.stdout


# ---- the memo and STACK_GLOBAL -------------------------------------------------------------

def test_memo_put_index_ignored():
    # PUT writes explicit indices (5 and 0): a scanner that numbers memo entries by order is wrong
    p = P(2).unicode("builtins").put(5).unicode("os").put(0).pop().pop()
    p.get(0).get(5).pop().unicode("system").stack_global().args("x").reduce().stop()
    assert_unsafe(scan(p.data), glob="os.system")


def test_memo_put_and_memoize_mixed():
    # MEMOIZE uses the number of entries (1 here), not the last index + 1 (6)
    p = P(4).unicode("builtins").binput(5).unicode("os").memoize().pop().pop()
    p.binget(1).unicode("system").stack_global().args("x").reduce().stop()
    assert_unsafe(scan(p.data), glob="os.system")


def test_missing_memo_key_after_payload():
    p = P(2).call("os", "system", "x").binget(77).stop()
    r = scan(p.data)
    assert_unsafe(r, glob="os.system")
    assert any("memo value not found" in e for e in r.errors)


def test_non_string_memo_value():
    # the memo holds the callable itself; a scanner that only tracks strings loses it
    p = P(2).glob("os", "system").binput(0).pop().none().pop()
    p.binget(0).args("x").reduce().stop()
    assert_unsafe(scan(p.data), glob="os.system")


@pytest.mark.parametrize("how", ["string", "binstring", "short_binstring", "unicode0", "binunicode"])
def test_stack_global_fed_by_old_strings(how):
    p = P(4)
    getattr(p, how)("os")
    getattr(p, how)("system")
    p.stack_global().args("x").reduce().stop()
    assert_unsafe(scan(p.data), glob="os.system")


def test_stack_global_at_stream_start():
    # no PROTO, no FRAME: the operands are the first opcodes of the stream
    data = P().unicode("os").unicode("system").stack_global().args("x").reduce().stop().data
    f = assert_unsafe(scan(data), glob="os.system")
    assert f.offset == data.index(b"\x93")


def test_stack_global_operands_from_previous_stacked_pickle_do_not_leak():
    # operands left on the stack of pickle 0 are gone in pickle 1: a STACK_GLOBAL there underflows
    data = P(4).unicode("os").unicode("system").none().stop().data + P(4).stack_global().stop().data
    r = scan(data)
    assert r.verdict == "error" and not r.findings


def test_memo_value_differs_from_previous_argument():
    # the memo gets "os" (the stack top), while the last string opcode pushed "print"
    p = P(2).unicode("os").unicode("print").pop().binput(0)
    p.pop().binget(0).unicode("system").stack_global().args("x").reduce().stop()
    assert_unsafe(scan(p.data), glob="os.system")


def test_stack_global_operand_from_str_join():
    p = P(4).sglob("builtins", "str.join").unicode("").mark().unicode("o").unicode("s").list().tuple2().reduce()
    p.unicode("system").stack_global().args("x").reduce().stop()
    r = scan(p.data)
    assert_unsafe(r, kind="computed", why="computed at load time")


def test_stack_global_operand_from_itemgetter():
    p = P(4).sglob("operator", "itemgetter").int(0).tuple1().reduce()   # itemgetter(0)
    p.mark().unicode("os").tuple().tuple1().reduce()                     # (... )(("os",)) -> "os"
    p.unicode("system").stack_global().args("x").reduce().stop()
    r = scan(p.data)
    assert_unsafe(r, kind="computed")
    assert_unsafe(r, kind="call", why="computed at load time is used as a function")
    assert_unsafe(r, glob="operator.itemgetter")


def test_payload_then_garbage():
    data = P(2).call("os", "system", "x").data + os.urandom(64).replace(b".", b"x")
    r = scan(data)
    assert_unsafe(r, glob="os.system")
    assert r.errors


def test_payload_then_truncation():
    data = P(2).call("os", "system", "x").unicode("abc").data[:-1]
    r = scan(data)
    assert_unsafe(r, glob="os.system")
    assert r.errors


def test_frame_ends_inside_an_opcode():
    # the C unpickler reads on across the frame's end; Python's _Unframer would refuse
    body = P().call("os", "system", "x", stack_global=True).data
    data = P(4).frame(len(body) - 8).raw(body).stop().data
    r = scan(data)
    assert_unsafe(r, glob="os.system")
    assert_unsafe(r, "suspicious", kind="frame")


def test_frame_opened_inside_a_frame():
    inner = P().call("os", "system", "x", stack_global=True).data
    data = P(4).frame(19).unicode("pad").pop().frame(len(inner) + 1).raw(inner).stop().data
    r = scan(data)
    assert_unsafe(r, glob="os.system")
    assert_unsafe(r, "suspicious", kind="frame")


def test_frame_longer_than_the_data():
    # CPython reads the whole frame first: nothing runs, and the file is never called safe
    body = P().call("os", "system", "x", stack_global=True).data
    r = scan(P(4).frame(len(body) + 9).raw(body).stop().data)
    assert r.verdict == "error"


def test_frame_hides_nothing_when_honest():
    body = P().unicode("a").stop().data
    data = P(4).frame(len(body)).raw(body).data
    assert scan(data).verdict == "safe"


# ---- names ---------------------------------------------------------------------------------

@pytest.mark.parametrize("module,name", [
    ("pathlib", "os.system"),
    ("builtins", "eval.__call__"),
    ("numpy", "prod.os.system"),
    ("torch", "serialization.os.system"),
    ("collections", "OrderedDict.__init__.__globals__"),
])
def test_dotted_names(module, name):
    data = P(4).sglob(module, name).args("x").reduce().stop().data
    assert_unsafe(scan(data), glob=f"{module}.{name}")


@pytest.mark.parametrize("module,name", [
    ("asyncio.unix_events", "_UnixSubprocessTransport._start"),
    ("os.path", "join"),
    ("subprocess", "Popen"),
    ("xmlrpc.client", "ServerProxy"),
    ("importlib.util", "spec_from_file_location"),
])
def test_submodules_of_blocked_packages(module, name):
    assert_unsafe(scan(call_pickle(module, name, "x")), glob=f"{module}.{name}")


@pytest.mark.parametrize("module,name", [
    ("pkgutil", "resolve_name"),
    ("pydoc", "locate"),
    ("importlib", "import_module"),
    ("builtins", "__import__"),
    ("builtins", "globals"),
    ("builtins", "setattr"),
    ("builtins", "getattr"),
    ("__builtin__", "getattr"),
    ("numpy", "__builtins__"),
])
def test_universal_resolvers(module, name):
    assert_unsafe(scan(call_pickle(module, name, "os")), glob=f"{module}.{name}")


def test_pydoc_locate_with_methodcaller():
    p = P(2).call("pydoc", "locate", "os")
    p.glob("operator", "methodcaller").args("system", "id").reduce()
    r = scan(p.tuple2().stop().data)
    assert_unsafe(r, glob="pydoc.locate")
    assert_unsafe(r, glob="operator.methodcaller")


def test_numpy_builtins_and_dict_get():
    p = P(4).sglob("builtins", "dict.get").sglob("numpy", "__builtins__").unicode("eval").tuple2().reduce()
    p.args("1").reduce().stop()
    r = scan(p.data)
    assert_unsafe(r, glob="numpy.__builtins__")
    assert_unsafe(r, kind="call")


def test_build_setattr_on_allowlisted_callable():
    # BUILD with (None, {"__code__": ...}) on torch._utils._rebuild_tensor itself: setattr on the function
    p = P(2).glob("torch._utils", "_rebuild_tensor").none().empty_dict().unicode("__code__").none().setitem()
    r = scan(p.tuple2().build().stop().data)
    assert_unsafe(r, glob="torch._utils._rebuild_tensor", kind="build")


def test_build_on_a_module_object():
    p = P(2).glob("collections", "OrderedDict").empty_dict().unicode("x").int(1).setitem().build().stop()
    assert_unsafe(scan(p.data), kind="build", glob="collections.OrderedDict")


def test_code_objects():
    r = scan(call_pickle("types", "CodeType", 0, 0))
    assert_unsafe(r, glob="types.CodeType")
    p = P(2).glob("types", "FunctionType").mark()
    p.glob("marshal", "loads").args(b"\xe3\x00").reduce()
    p.empty_dict().tuple().reduce().stop()
    r = scan(p.data)
    assert_unsafe(r, glob="marshal.loads")
    assert_unsafe(r, glob="types.FunctionType")


def test_nested_loader_pickle_loads():
    inner = call_pickle("os", "system", "inner")
    r = scan(call_pickle("pickle", "loads", inner))
    assert_unsafe(r, glob="pickle.loads")
    f = assert_unsafe(r, glob="os.system")
    assert f.member.startswith("<pickle.loads argument")


def test_nested_loader_partial_torch_load():
    p = P(2).glob("functools", "partial").mark().glob("torch", "load").tuple().reduce().args("x.pt").reduce().stop()
    r = scan(p.data)
    assert_unsafe(r, glob="functools.partial")
    assert_unsafe(r, glob="torch.load")


def test_nested_loader_storage_load_from_bytes():
    inner = torch_zip(call_pickle("os", "system", "x"))
    r = scan(call_pickle("torch.storage", "_load_from_bytes", inner))
    assert_unsafe(r, glob="torch.storage._load_from_bytes")
    f = assert_unsafe(r, glob="os.system")
    assert "archive/data.pkl" in f.member


EXEC_GADGETS = [
    ("pip", "main"), ("pip._internal.cli.main", "main"), ("venv", "create"), ("pty", "spawn"), ("ctypes", "CDLL"),
    ("_posixsubprocess", "fork_exec"), ("runpy", "_run_code"), ("timeit", "timeit"), ("cProfile", "run"),
    ("code", "InteractiveInterpreter"), ("doctest", "debug_script"), ("pydoc", "pipepager"),
    ("logging", "FileHandler"), ("logging.handlers", "SocketHandler"), ("_io", "FileIO"),
    ("urllib.request", "urlopen"), ("ssl", "get_server_certificate"), ("webbrowser", "open"),
    ("socket", "create_connection"), ("shutil", "rmtree"), ("builtins", "exec"), ("builtins", "compile"),
    ("builtins", "open"), ("torch.hub", "load"), ("torch.jit", "load"), ("numpy", "load"), ("dill", "loads"),
    ("sys", "exit"), ("nt", "system"), ("posix", "system"), ("multiprocessing.util", "spawnv_passfds"),
]


@pytest.mark.parametrize("module,name", EXEC_GADGETS)
def test_exec_gadgets(module, name):
    assert_unsafe(scan(call_pickle(module, name, "x")), glob=f"{module}.{name}")


def test_smtplib_via_obj():
    # OBJ: MARK, class, args..., OBJ (protocol 1's instance creation)
    data = P().mark().glob("smtplib", "SMTP").unicode("evil.example").int(25).obj().stop().data
    assert_unsafe(scan(data), glob="smtplib.SMTP")


def test_inst_opcode():
    data = P().mark().unicode("id").inst("subprocess", "check_output").stop().data
    assert_unsafe(scan(data), glob="subprocess.check_output")


@pytest.mark.parametrize("op", ["newobj", "newobj_ex"])
def test_newobj(op):
    p = P(4).sglob("subprocess", "Popen").args("id")
    if op == "newobj_ex":
        p.empty_dict().newobj_ex()
    else:
        p.newobj()
    assert_unsafe(scan(p.stop().data), glob="subprocess.Popen")


@pytest.mark.parametrize("op", ["ext1", "ext2", "ext4"])
def test_extension_codes(op):
    p = P(2)
    getattr(p, op)(7)
    r = scan(p.args("x").reduce().stop().data)
    assert_unsafe(r, "suspicious", kind="ext")


def test_torchscript_archive_passed_off_as_weights():
    weights = P(2).empty_dict().stop().data
    z = torch_zip(weights, prefix="pytorch_model", extra={"constants.pkl": call_pickle("os", "system", "x")})
    r = scan(z)
    assert_unsafe(r, glob="os.system", member="pytorch_model/constants.pkl")
    assert any("TorchScript" in n for n in r.notes)


def test_torchscript_debug_pkl_payload():
    z = torch_zip(P(2).empty_dict().stop().data, extra={
        "constants.pkl": P(2).empty_tuple().stop().data,
        "code/__torch__.py.debug_pkl": call_pickle("builtins", "exec", "x"),
        "code/__torch__.py": b"class M(Module):\n  pass\n"})
    assert_unsafe(scan(z), glob="builtins.exec", member="archive/code/__torch__.py.debug_pkl")


def test_torchscript_names_outside_torchscript_are_findings():
    data = P(2).glob("__torch__", "M").empty_tuple().reduce().stop().data
    assert_unsafe(scan(torch_zip(data)), "suspicious", glob="__torch__.M")
    z = torch_zip(data, extra={"constants.pkl": P(2).empty_tuple().stop().data})
    assert scan(z).verdict == "safe"


def test_duplicate_member_names_both_scanned():
    with pytest.warns(UserWarning):
        z = zip_bytes([("archive/data.pkl", P(2).empty_dict().stop().data),
                       ("archive/data.pkl", call_pickle("os", "system", "x"))])
    r = scan(z)
    assert_unsafe(r, glob="os.system")
    assert_unsafe(r, "suspicious", kind="container", why="same name appears twice")


def test_pickle_before_the_zip_polyglot():
    z = zip_bytes({"archive/data.pkl": P(2).empty_dict().stop().data})
    r = scan(call_pickle("os", "system", "x") + z)
    assert_unsafe(r, glob="os.system")


def test_deflated_member_payload():
    z = zip_bytes({"weights/blob.bin": call_pickle("os", "system", "x") + bytes(5000)}, zipfile.ZIP_DEFLATED)
    assert_unsafe(scan(z), glob="os.system")
