"""mfparse.convert and the writers: every reader x writer pair read back by the reference
library, the torch checkpoint writer under torch.load(weights_only=True), layouts (alignment,
zip64, CRCs, header padding), what each target keeps, and failures that must leave nothing
behind (an input as output, a failing writer, a full disk)."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import zipfile

import numpy as np
import pytest
import torch

import mfparse
from mfparse import writers
from mfparse.convert import convert
from mfparse.writers import base
from mfparse.writers.base import WriteError

from convert_ref import OWN_SOURCES, REAL_SOURCES, checkpoint, flatten, make_source, read_mfparse, read_reference, \
    state_dict, tensor_record

try:
    import onnx  # noqa: F401  (the ONNX writer's optional dependency)

    TARGETS = ("safetensors", "torch-zip", "npz", "gguf", "onnx")
except ImportError:  # pragma: no cover
    TARGETS = ("safetensors", "torch-zip", "npz", "gguf")
EXT = {"safetensors": ".safetensors", "torch-zip": ".pt", "npz": ".npz", "gguf": ".gguf", "onnx": ".onnx"}


def sha(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def leftovers(folder) -> list[str]:
    return [n for n in os.listdir(folder) if n.endswith(".partial")]


# ---- the matrix ---------------------------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("source", REAL_SOURCES + OWN_SOURCES)
def test_reader_writer_matrix(tmp_path, source, target):
    """Convert each source to each target; the target's own library must read back every
    written tensor with the source's name, dtype, shape and bytes."""
    src = make_source(source, tmp_path)
    before = sha(src)
    expected = read_mfparse(src)
    dst = tmp_path / f"out{EXT[target]}"
    r = convert(src, dst, skip_unsupported=True, progress=False)
    assert sha(src) == before
    assert not leftovers(tmp_path)
    got = read_reference(dst, target)
    skipped = {n for n, _ in r.skipped}
    if target == "torch-zip" and source == "torchscript":
        # a TorchScript module's tensors are written as a flat state dict
        assert set(got) == set(expected)
    for name, rec in expected.items():
        if name in skipped:
            continue
        assert name in got, f"{name} missing from the {target} output"
        assert got[name][1] == rec[1], name
        assert got[name][2] == rec[2], name
        assert got[name][0] == rec[0], name
    assert r.tensors == len(expected) - len(skipped & set(expected))
    # what was dropped, was dropped for a reason the target states
    for _, why in r.skipped:
        assert why
    # and mfparse reads the result the same way, when it reads that format
    try:
        back = read_mfparse(dst)
    except mfparse.UnsupportedFormatError:
        return
    for name, rec in got.items():
        assert back[name][1:] == rec[1:], name


def test_matrix_covers_every_writer():
    assert set(TARGETS) | {"onnx"} == set(writers.FORMATS)
    for fmt in writers.FORMATS:
        assert writers.module(fmt).FORMAT == fmt


# ---- torch checkpoints written without torch ----------------------------------------------------

def test_torch_zip_loads_with_weights_only_and_keeps_structure(tmp_path):
    ck = checkpoint()
    torch.save(ck, tmp_path / "src.pt")
    convert(tmp_path / "src.pt", tmp_path / "out.pt", progress=False)
    back = torch.load(tmp_path / "out.pt", weights_only=True)
    assert back["epoch"] == 7 and back["best_acc"] == 0.875 and back["name"] == "run-1"
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert list(back["optimizer"]["state"]) == [0]          # int keys stay ints
    for name, t in flatten(ck).items():
        got = flatten(back)[name]
        assert tensor_record(got) == tensor_record(t), name
    # tied weights still share one storage; a view was written compactly, on its own
    m = back["model"]
    assert m["tied"].untyped_storage().data_ptr() == m["fc1.weight"].untyped_storage().data_ptr()
    assert m["row"].untyped_storage().nbytes() == m["row"].numel() * 4


def test_torch_zip_layout(tmp_path):
    torch.save(checkpoint(), tmp_path / "src.pt")
    convert(tmp_path / "src.pt", tmp_path / "out.pt", progress=False)
    raw = (tmp_path / "out.pt").read_bytes()
    with zipfile.ZipFile(tmp_path / "out.pt") as z:
        assert z.testzip() is None                                # every CRC is right
        names = z.namelist()
        assert names[0] == "archive/data.pkl"
        assert {"archive/version", "archive/byteorder", "archive/.format_version"} <= set(names)
        for info in z.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
            n, e = struct.unpack_from("<HH", raw, info.header_offset + 26)
            assert (info.header_offset + 30 + n + e) % 64 == 0, info.filename
        assert z.read("archive/byteorder") == b"little"


def test_torch_zip_pickle_uses_only_allowed_opcodes(tmp_path):
    import pickletools

    torch.save(checkpoint(), tmp_path / "src.pt")
    convert(tmp_path / "src.pt", tmp_path / "out.pt", progress=False)
    with zipfile.ZipFile(tmp_path / "out.pt") as z:
        pkl = z.read("archive/data.pkl")
    ops = {op.name for op, _, _ in pickletools.genops(pkl)}
    assert ops <= {"PROTO", "GLOBAL", "BINPUT", "LONG_BINPUT", "BINGET", "LONG_BINGET", "MARK", "EMPTY_DICT",
                   "EMPTY_LIST", "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "SETITEMS", "APPENDS",
                   "BINUNICODE", "BININT1", "BININT2", "BININT", "LONG1", "BINFLOAT", "NONE", "NEWTRUE",
                   "NEWFALSE", "BINPERSID", "REDUCE", "STOP"}
    with mfparse.open(tmp_path / "out.pt") as m:
        assert m.format == "torch-zip"


def test_torch_zip_forced_zip64(tmp_path):
    from mfparse.writers import torchzip
    from mfparse.writers.base import Output, item_from_array

    a = np.arange(1000, dtype=np.float32)
    with open(tmp_path / "z.pt", "wb") as f:
        torchzip.write(Output(f), {"w": item_from_array("w", a), "n": 3}, force_zip64=True)
    back = torch.load(tmp_path / "z.pt", weights_only=True)
    assert back["n"] == 3 and torch.equal(back["w"], torch.from_numpy(a))
    with zipfile.ZipFile(tmp_path / "z.pt") as z:
        assert z.testzip() is None
    with mfparse.open(tmp_path / "z.pt") as m:
        assert np.array_equal(m["w"], a)


def test_torch_zip_values_of_every_kind(tmp_path):
    from mfparse.writers import torchzip
    from mfparse.writers.base import Output, item_from_array

    obj = {"none": None, "t": True, "f": False, "small": 7, "mid": 70000, "neg": -5, "big": 1 << 70,
           "negbig": -(1 << 40), "float": -2.5, "nan": float("nan"), "str": "héllo", "bytes": b"\x00\xff",
           "cplx": complex(1, -2), "tuple": (1, (2, 3), ()), "list": list(range(2500)), 3: "int key",
           "nested": {"deep": [{"x": item_from_array("x", np.ones((2, 2), np.float16))}]},
           "param": item_from_array("p", np.zeros(3, np.float32))}
    obj["param"].extras = {"parameter": True, "requires_grad": True}
    with open(tmp_path / "v.pt", "wb") as f:
        torchzip.write(Output(f), obj)
    back = torch.load(tmp_path / "v.pt", weights_only=True)
    for k in ("none", "t", "f", "small", "mid", "neg", "big", "negbig", "float", "str", "bytes", "cplx", "tuple",
              "list", 3):
        assert back[k] == obj[k], k
    assert back["nan"] != back["nan"]
    assert back["nested"]["deep"][0]["x"].dtype == torch.float16
    assert isinstance(back["param"], torch.nn.Parameter) and back["param"].requires_grad


# ---- safetensors specifics ----------------------------------------------------------------------

def test_safetensors_header_metadata_and_state_round_trip(tmp_path):
    ck = checkpoint()
    torch.save(ck, tmp_path / "src.pt")
    convert(tmp_path / "src.pt", tmp_path / "out.safetensors", progress=False)
    raw = (tmp_path / "out.safetensors").read_bytes()
    (n,) = struct.unpack_from("<Q", raw)
    assert (8 + n) % 64 == 0
    head = json.loads(raw[8:8 + n])
    meta = head.pop("__metadata__")
    assert meta["format"] == "pt" and meta["epoch"] == "7" and meta["name"] == "run-1"
    state = json.loads(meta["mfparse.state"])
    assert state["optimizer"]["state"] == {"__dict__": [[0, {"step": {"__tensor__": "optimizer.state.0.step"},
                                                            "exp_avg": {"__tensor__": "optimizer.state.0.exp_avg"}}]]}
    # no holes, element-size order, every tensor once (tied weights too)
    spans = sorted(tuple(v["data_offsets"]) for v in head.values())
    assert spans[0][0] == 0 and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert len(raw) == 8 + n + spans[-1][1]
    assert "model.tied" in head and "model.fc1.weight" in head
    # back to a checkpoint: the structure comes back from mfparse.state
    convert(tmp_path / "out.safetensors", tmp_path / "again.pt", progress=False)
    back = torch.load(tmp_path / "again.pt", weights_only=True)
    assert back["epoch"] == 7 and back["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert list(back["optimizer"]["state"]) == [0]
    for name, t in flatten(ck).items():
        assert tensor_record(flatten(back)[name]) == tensor_record(t), name


def test_safetensors_source_metadata_kept_verbatim(tmp_path):
    src = make_source("safetensors", tmp_path)
    convert(src, tmp_path / "out.safetensors", progress=False)
    from safetensors import safe_open

    with safe_open(os.fspath(tmp_path / "out.safetensors"), "np") as f:
        assert f.metadata() == {"format": "pt", "note": "from safetensors"}


def test_gguf_metadata_and_layout(tmp_path):
    import gguf

    torch.save(checkpoint(), tmp_path / "src.pt")
    r = convert(tmp_path / "src.pt", tmp_path / "out.gguf", skip_unsupported=True, progress=False)
    reader = gguf.GGUFReader(tmp_path / "out.gguf")
    fields = {f.name: f for f in reader.fields.values()}
    assert fields["epoch"].contents() == 7
    assert fields["name"].contents() == "run-1"
    assert abs(fields["best_acc"].contents() - 0.875) < 1e-12
    for t in reader.tensors:
        assert t.data_offset % 32 == 0
    assert {n for n, _ in r.skipped} >= {"model.flag", "model.fp8", "model.cplx", "model.u8"}


def test_unsupported_tensors_fail_unless_skipped(tmp_path):
    torch.save({"b": torch.ones(2, dtype=torch.bfloat16), "f": torch.ones(2)}, tmp_path / "s.pt")
    with pytest.raises(WriteError, match=r"1 tensor\(s\) cannot be written as npz: b: dtype bfloat16"):
        convert(tmp_path / "s.pt", tmp_path / "o.npz", progress=False)
    assert not (tmp_path / "o.npz").exists() and not leftovers(tmp_path)
    r = convert(tmp_path / "s.pt", tmp_path / "o.npz", skip_unsupported=True, progress=False)
    assert r.skipped == [("b", "dtype bfloat16 cannot be described in an .npy header")]


def test_gguf_refuses_long_names_and_five_dims(tmp_path):
    torch.save({"x" * 64: torch.ones(1), "five": torch.ones(1, 1, 1, 1, 2)}, tmp_path / "s.pt")
    with pytest.raises(WriteError, match="name longer than 63 bytes"):
        convert(tmp_path / "s.pt", tmp_path / "o.gguf", progress=False)
    r = convert(tmp_path / "s.pt", tmp_path / "o.gguf", skip_unsupported=True, progress=False)
    assert {n for n, _ in r.skipped} == {"x" * 64, "five"}


def test_npz_forced_zip64_and_alignment(tmp_path):
    from mfparse.writers import npz
    from mfparse.writers.base import Output, item_from_array

    arrays = {"a": np.arange(10, dtype=np.int16), "b/c": np.ones((3, 3)), "e": np.zeros((0,), np.float32)}
    with open(tmp_path / "z.npz", "wb") as f:
        npz.write(Output(f), [item_from_array(k, v) for k, v in arrays.items()], force_zip64=True)
    with np.load(tmp_path / "z.npz") as z:
        for k, v in arrays.items():
            assert np.array_equal(z[k], v) and z[k].dtype == v.dtype
    raw = (tmp_path / "z.npz").read_bytes()
    with zipfile.ZipFile(tmp_path / "z.npz") as z:
        assert z.testzip() is None
        for info in z.infolist():
            n, e = struct.unpack_from("<HH", raw, info.header_offset + 26)
            start = info.header_offset + 30 + n + e
            (hlen,) = struct.unpack_from("<H", raw, start + 8)
            assert start % 64 == 0 and (start + 10 + hlen) % 64 == 0


# ---- the fast path ------------------------------------------------------------------------------

def test_contiguous_tensors_take_the_kernel_copy_path(tmp_path):
    from mfparse.writers.items import SourceItems

    torch.save(state_dict(), tmp_path / "s.pt")
    with mfparse.open(tmp_path / "s.pt") as m, SourceItems(m) as si:
        items = {it.name: it for it in si}
    assert items["fc1.weight"].file_range is not None
    assert items["transposed"].file_range is None      # strided: written through chunks
    assert items["empty"].file_range is None


@pytest.mark.parametrize("threads", [1, 3])
def test_streaming_copy_in_small_chunks(tmp_path, monkeypatch, threads):
    """Tiny chunks: every buffered, array and kernel path must cut and join correctly, with
    one copy thread or several."""
    monkeypatch.setattr(base, "CHUNK", 7)
    monkeypatch.setattr(base, "KERNEL_CHUNK", 5)
    monkeypatch.setattr(base, "COPY_THREADS", threads)
    torch.save(checkpoint(), tmp_path / "src.pt")
    expected = read_mfparse(tmp_path / "src.pt")
    for target in ("safetensors", "torch-zip"):
        dst = tmp_path / f"o{EXT[target]}"
        convert(tmp_path / "src.pt", dst, skip_unsupported=True, progress=False, overwrite=True)
        got = read_reference(dst, target)
        for name, rec in expected.items():
            assert got[name] == rec, (target, name)


def test_parallel_copy_across_file_systems(tmp_path, monkeypatch):
    """copy_file_range refused (another file system): workers fall back to sendfile on their
    own descriptors, or to pread/pwrite without a path."""
    def no_cfr(*a, **k):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", no_cfr)
    monkeypatch.setattr(base, "COPY_THREADS", 2)
    torch.save(state_dict(), tmp_path / "src.pt")
    convert(tmp_path / "src.pt", tmp_path / "o.safetensors", progress=False)
    expected = read_mfparse(tmp_path / "src.pt")
    got = read_reference(tmp_path / "o.safetensors", "safetensors")
    assert all(got[n] == r for n, r in expected.items())
    monkeypatch.setattr(os, "sendfile", no_cfr)
    from mfparse.writers import safetensors as st
    from mfparse.writers.items import SourceItems

    with mfparse.open(tmp_path / "src.pt") as m, SourceItems(m) as si, open(tmp_path / "p.safetensors", "wb") as f:
        st.write(base.Output(f), list(si))
    got = read_reference(tmp_path / "p.safetensors", "safetensors")
    assert all(got[n] == r for n, r in expected.items())


def test_progress_counts_every_byte(tmp_path):
    class Count:
        n = 0
        closed = False

        def update(self, k):
            self.n += k

        def close(self):
            self.closed = True

    torch.save(state_dict(), tmp_path / "s.pt")
    c = Count()
    convert(tmp_path / "s.pt", tmp_path / "o.safetensors", progress=c)
    with mfparse.open(tmp_path / "s.pt") as m:
        assert c.n == sum(t.nbytes for t in m.tensors())
    assert c.closed


def test_progress_bar_on_request(tmp_path, capsys):
    pytest.importorskip("tqdm")
    torch.save(state_dict(), tmp_path / "s.pt")
    convert(tmp_path / "s.pt", tmp_path / "o.safetensors", progress=True)
    assert (tmp_path / "o.safetensors").exists()


# ---- refusing, failing, leaving nothing behind --------------------------------------------------

def test_refuses_to_overwrite_the_input(tmp_path):
    torch.save(state_dict(), tmp_path / "s.pt")
    before = sha(tmp_path / "s.pt")
    with pytest.raises(WriteError, match="it is an input of this conversion"):
        convert(tmp_path / "s.pt", tmp_path / "s.pt", to="torch-zip", overwrite=True)
    os.link(tmp_path / "s.pt", tmp_path / "hard.pt")
    with pytest.raises(WriteError, match="it is an input of this conversion"):
        convert(tmp_path / "s.pt", tmp_path / "hard.pt", overwrite=True)
    os.symlink(tmp_path / "s.pt", tmp_path / "link.safetensors")
    with pytest.raises(WriteError, match="it is an input of this conversion"):
        convert(tmp_path / "s.pt", tmp_path / "link.safetensors", overwrite=True)
    assert sha(tmp_path / "s.pt") == before


def test_refuses_existing_destination_unless_overwrite(tmp_path):
    torch.save(state_dict(), tmp_path / "s.pt")
    (tmp_path / "o.safetensors").write_bytes(b"keep me")
    with pytest.raises(WriteError, match="exists"):
        convert(tmp_path / "s.pt", tmp_path / "o.safetensors")
    assert (tmp_path / "o.safetensors").read_bytes() == b"keep me"
    convert(tmp_path / "s.pt", tmp_path / "o.safetensors", overwrite=True, progress=False)
    assert read_reference(tmp_path / "o.safetensors", "safetensors")


def test_unknown_extension_needs_to(tmp_path):
    torch.save(state_dict(), tmp_path / "s.pt")
    with pytest.raises(WriteError, match="cannot tell the output format"):
        convert(tmp_path / "s.pt", tmp_path / "o.weights")
    convert(tmp_path / "s.pt", tmp_path / "o.weights", to="safetensors", progress=False)


@pytest.mark.parametrize("target", TARGETS)
def test_failing_writer_leaves_no_partial_output(tmp_path, monkeypatch, target):
    """The disk fills up half way (a writer object whose writes fail): the destination must
    not exist, no temporary file may remain, the input must be untouched."""
    torch.save(checkpoint(), tmp_path / "src.pt")
    before = sha(tmp_path / "src.pt")
    written = {"n": 0}
    real_write, real_copy, real_copy_at = base.Output._raw_write, base.Output._raw_copy, base.Output._raw_copy_at

    def full_disk(n):
        written["n"] += n
        if written["n"] > 3000:
            raise OSError(errno.ENOSPC, "No space left on device")

    def write(self, data):
        full_disk(len(memoryview(data).cast("B")))
        real_write(self, data)

    def copy(self, fd, off, n):
        full_disk(n)
        real_copy(self, fd, off, n)

    def copy_at(self, src, src_off, n, dst, dst_off, own):
        full_disk(n)
        return real_copy_at(self, src, src_off, n, dst, dst_off, own)

    monkeypatch.setattr(base.Output, "_raw_write", write)
    monkeypatch.setattr(base.Output, "_raw_copy", copy)
    monkeypatch.setattr(base.Output, "_raw_copy_at", copy_at)
    dst = tmp_path / f"out{EXT[target]}"
    with pytest.raises(OSError) as e:
        convert(tmp_path / "src.pt", dst, skip_unsupported=True, progress=False)
    assert e.value.errno == errno.ENOSPC
    assert not dst.exists() and not (tmp_path / f"out{EXT[target]}.data").exists()
    assert not leftovers(tmp_path)
    assert sha(tmp_path / "src.pt") == before


def test_failing_file_object_is_reported(tmp_path):
    """A writer handed a file object that fails: the error surfaces, nothing is swallowed."""
    from mfparse.writers import safetensors as st
    from mfparse.writers.base import Output, item_from_array

    class Broken(io.RawIOBase):
        def writable(self):
            return True

        def write(self, b):
            raise OSError(errno.EIO, "device error")

    with pytest.raises(OSError, match="device error"):
        st.write(Output(Broken()), [item_from_array("a", np.ones(4))])


def test_atomic_output_keeps_the_old_file_on_failure(tmp_path):
    (tmp_path / "o.bin").write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with base.atomic_output(tmp_path / "o.bin") as af:
            af.file.write(b"half")
            raise RuntimeError("boom")
    assert (tmp_path / "o.bin").read_bytes() == b"old"
    assert not leftovers(tmp_path)


def test_free_space_is_checked_first(tmp_path, monkeypatch):
    torch.save(state_dict(), tmp_path / "s.pt")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10 << 20, 10 << 20, 1000))
    with pytest.raises(OSError, match="not enough free space") as e:
        convert(tmp_path / "s.pt", tmp_path / "o.safetensors")
    assert e.value.errno == errno.ENOSPC
    assert not (tmp_path / "o.safetensors").exists() and not leftovers(tmp_path)


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 1 MiB tmpfs (needs root and mount permission; skipped where mounting is impossible)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", os.fspath(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode(errors='replace').strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", os.fspath(mnt)], capture_output=True)


def test_full_tmpfs(tmp_path, tiny_tmpfs):
    """A real full disk: the free-space check refuses first; forced past it, the write hits
    ENOSPC and still leaves nothing behind."""
    big = {"w": torch.randn(512, 1024)}  # 2 MiB > the 1 MiB tmpfs
    torch.save(big, tmp_path / "big.pt")
    before = sha(tmp_path / "big.pt")
    with pytest.raises(OSError, match="not enough free space"):
        convert(tmp_path / "big.pt", tiny_tmpfs / "o.safetensors")
    for target in ("safetensors", "torch-zip"):
        with pytest.raises(OSError) as e:
            convert(tmp_path / "big.pt", tiny_tmpfs / f"o{EXT[target]}", check_space=False, progress=False)
        assert e.value.errno == errno.ENOSPC
        assert os.listdir(tiny_tmpfs) == []
    assert sha(tmp_path / "big.pt") == before


# ---- the command --------------------------------------------------------------------------------

def test_cli_convert(tmp_path, capsys):
    from mfparse.cli import main

    torch.save(checkpoint(), tmp_path / "s.pt")
    assert main(["convert", os.fspath(tmp_path / "s.pt"), os.fspath(tmp_path / "o.npz"), "--skip-unsupported",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["format"] == "npz" and out["tensors"] > 10 and out["skipped"]
    assert main(["convert", os.fspath(tmp_path / "s.pt"), os.fspath(tmp_path / "o.npz")]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["convert", os.fspath(tmp_path / "s.pt"), os.fspath(tmp_path / "x.safetensors")]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["convert", os.fspath(tmp_path / "missing.pt"), os.fspath(tmp_path / "y.safetensors")]) == 2


def test_import_mfparse_does_not_import_torch():
    code = "import sys, mfparse, mfparse.convert, mfparse.quantize, mfparse.diff; print('torch' in sys.modules)"
    r = subprocess.run([os.sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))})
    assert r.stdout.strip() == "False", r.stderr


def test_torch_checkpoint_written_without_torch(tmp_path):
    """The torch writer needs no torch: convert with `import torch` made impossible."""
    from safetensors.numpy import save_file

    save_file({"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, tmp_path / "s.safetensors")
    code = (f"import sys; sys.modules['torch'] = None\n"
            f"from mfparse.convert import convert\n"
            f"convert({os.fspath(tmp_path / 's.safetensors')!r}, {os.fspath(tmp_path / 'o.pt')!r}, progress=False)\n")
    r = subprocess.run([os.sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))})
    assert r.returncode == 0, r.stderr
    assert torch.equal(torch.load(tmp_path / "o.pt", weights_only=True)["w"], torch.arange(6.0).reshape(2, 3))


def test_meta_tensors(tmp_path):
    """Meta tensors have no data: safetensors skips them (saying so), a torch checkpoint keeps
    them as meta tensors."""
    torch.save({"m": torch.empty(3, 2, device="meta", dtype=torch.float16), "x": torch.ones(2)}, tmp_path / "s.pt")
    r = convert(tmp_path / "s.pt", tmp_path / "o.safetensors", progress=False)
    assert r.skipped == [("m", "meta tensor: no data in the file")]
    r = convert(tmp_path / "s.pt", tmp_path / "o.pt", progress=False)
    assert r.skipped == [] and "1 meta tensor(s)" in r.notes[0]
    back = torch.load(tmp_path / "o.pt", weights_only=True)
    assert back["m"].is_meta and back["m"].shape == (3, 2) and back["m"].dtype == torch.float16


def test_bare_tensor_and_list_checkpoints(tmp_path):
    torch.save(torch.arange(4.0), tmp_path / "bare.pt")
    torch.save([torch.ones(2), {"a": torch.zeros(1)}], tmp_path / "lst.pt")
    convert(tmp_path / "bare.pt", tmp_path / "b.pt", progress=False)
    assert torch.equal(torch.load(tmp_path / "b.pt", weights_only=True), torch.arange(4.0))
    convert(tmp_path / "lst.pt", tmp_path / "l.pt", progress=False)
    back = torch.load(tmp_path / "l.pt", weights_only=True)
    assert torch.equal(back[0], torch.ones(2)) and torch.equal(back[1]["a"], torch.zeros(1))


def big_endian_checkpoint(path, arrays: dict) -> None:
    """A torch zip archive whose storages are big-endian (byteorder member "big"), as torch
    writes on big-endian machines: built with mfparse's own pickle and zip writers."""
    from mfparse.writers import torchzip
    from mfparse.writers.base import Output, item_from_array
    from mfparse.writers.zipwriter import ZipWriter

    obj = {k: item_from_array(k, v) for k, v in arrays.items()}
    pkl, storages, _ = torchzip.pickle_checkpoint(obj)
    with open(path, "wb") as f:
        out = Output(f)
        z = ZipWriter(out)
        for name, data in (("data.pkl", pkl), (".format_version", b"1"), ("byteorder", b"big")):
            z.add_bytes(f"archive/{name}", data)
        for key, item in storages:
            z.add_bytes(f"archive/data/{key}", np.ascontiguousarray(item.array).byteswap().tobytes())
        z.add_bytes("archive/version", b"3\n")
        z.close()


def test_big_endian_source(tmp_path):
    arrays = {"f": np.arange(12, dtype=np.float32).reshape(3, 4) / 3, "i": np.arange(5, dtype=np.int64) - 2,
              "h": np.linspace(-2, 2, 6).astype(np.float16)}
    big_endian_checkpoint(tmp_path / "be.pt", arrays)
    with mfparse.open(tmp_path / "be.pt") as m:
        assert all(np.array_equal(m[k], v) for k, v in arrays.items())
    for target in ("safetensors", "torch-zip", "npz"):
        dst = tmp_path / f"o{EXT[target]}"
        convert(tmp_path / "be.pt", dst, progress=False)
        got = read_reference(dst, target)
        for k, v in arrays.items():
            assert got[k] == (v.dtype.name, v.shape, v.astype(v.dtype.newbyteorder("<")).tobytes()), (target, k)
    from mfparse.torch import load_file

    loaded = load_file(tmp_path / "be.pt")
    assert all(np.array_equal(loaded[k].numpy(), v) for k, v in arrays.items())
