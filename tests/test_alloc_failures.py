"""Allocation failures in the C core, as libexpat's alloc tests drive them: for one file of each
reader, let the first n arena allocations succeed and fail the rest, for n = 0, 1, 2, ... until
the parse goes through. Before that, every attempt must raise ResourceLimitError (the arena cap's
error) or MemoryError (malloc's, with nomem) and free every chunk it made; after it, the listing
and the bytes must be the ones an unlimited parse gives. The hook lives in csrc/mf_core.c
(mf_arena_test_limits) and is reached through mfparse._native._test_arena_limits, not the API."""

from __future__ import annotations

import gc
import os
import pickle
import zipfile

import numpy as np
import pytest

import mfparse
from mfparse import _native

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
MAX_STEPS = 20000  # allocations of the largest file below, with room to spare


def _torch_zip(tmp):
    import torch

    p = tmp / "m.pt"
    torch.save({"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(3, dtype=torch.int64), "epoch": 3,
                "nested": {"x": [torch.zeros(2), torch.tensor(1.5)]}}, p)
    return p


def _torch_legacy(tmp):
    import torch

    p = tmp / "legacy.pt"
    torch.save({"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(3, dtype=torch.int64)}, p,
               _use_new_zipfile_serialization=False)
    return p


def _safetensors(tmp):
    from safetensors.numpy import save_file

    p = tmp / "m.safetensors"
    save_file({f"layer.{i}.weight": np.full((2, 3), i, dtype=np.float32) for i in range(12)}, str(p),
              metadata={"format": "pt", "note": "caf\u00e9 \"q\""})
    return p


def _gguf(tmp):
    gguf = pytest.importorskip("gguf")
    p = tmp / "m.gguf"
    w = gguf.GGUFWriter(str(p), "llama")
    w.add_key_value("t.str", "h\u00e9llo", gguf.GGUFValueType.STRING)
    w.add_array("t.arr", ["a", "bc", ""])
    w.add_tensor("w", np.arange(32, dtype=np.float32).reshape(4, 8))
    w.add_tensor("b", np.ones(8, dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return p


def _npy(tmp):
    p = tmp / "a.npy"
    np.save(p, np.arange(12, dtype=np.int32).reshape(3, 4))
    return p


def _npz(tmp):
    p = tmp / "a.npz"
    np.savez(p, w=np.arange(12, dtype=np.int32).reshape(3, 4), b=np.ones(3))
    return p


def _hdf5(tmp):
    h5py = pytest.importorskip("h5py")
    p = tmp / "m.h5"
    with h5py.File(p, "w") as f:
        f["a"] = np.arange(10, dtype=np.float32)
        g = f.create_group("g")
        g.create_dataset("chunked", data=np.arange(64, dtype=np.int16).reshape(8, 8), chunks=(4, 4),
                         compression="gzip")
        g["c"] = np.ones((2, 3), dtype=np.float64)
        g.attrs["note"] = "x"
    return p


def _onnx(tmp):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "w")
    b = numpy_helper.from_array(np.ones(3, dtype=np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Add", ["y", "b"], ["z"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 3])], [w, b])
    p = tmp / "m.onnx"
    onnx.save(helper.make_model(graph), p)
    return p


def _fixture(*parts):
    return lambda tmp: os.path.join(FIXTURES, *parts)


FILES = {
    "torch-zip": _torch_zip,
    "torch-legacy": _torch_legacy,
    "safetensors": _safetensors,
    "gguf": _gguf,
    "npy": _npy,
    "npz": _npz,
    "hdf5": _hdf5,
    "onnx": _onnx,
    "tflite": _fixture("tflite", "float.tflite"),
    "tf-graphdef": _fixture("tf", "consts.pb"),
    "tf-checkpoint": _fixture("tf", "ckpt"),
    "tf-savedmodel": _fixture("tf", "module_sm"),
}


def listing(path):
    """Everything a caller sees: format, each tensor's record, its bytes, and the metadata."""
    with mfparse.open(path) as m:
        infos = list(m.tensors())
        arrays = [m[t.name] for t in infos]
        arrays = [a.tolist() if a.dtype == object else np.ascontiguousarray(a).tobytes() for a in arrays]
        return m.format, [tuple(t)[:6] for t in infos], arrays, repr(m.metadata)


def with_limit(allowed, nomem, fn, *args):
    _native._test_arena_limits(allowed, nomem)
    try:
        return fn(*args)
    finally:
        _native._test_arena_limits(-1)


def no_leak():
    """Every chunk made under the limits has been freed once the garbage is collected (a failed
    parse's exception holds its traceback, whose frames hold the parse objects: a cycle)."""
    gc.collect()
    assert _native._test_arena_live_chunks() == 0, "arena chunks leaked"


def drive(fn, *args, nomem=False):
    """Fail every allocation after the first n, n = 0, 1, ...; returns (failures, the result)."""
    want = MemoryError if nomem else mfparse.ResourceLimitError
    for n in range(MAX_STEPS):
        try:
            got = with_limit(n, nomem, fn, *args)
        except want:
            continue
        no_leak()
        return n, got
    raise AssertionError(f"still failing after {MAX_STEPS} allocations")


@pytest.mark.parametrize("name", sorted(FILES))
def test_every_allocation_failing_in_turn(tmp_path, name):
    path = FILES[name](tmp_path)
    ref = listing(path)
    assert ref[1], "the fixture lists tensors"
    failures, got = drive(listing, path)
    assert got == ref
    if name != "npy":  # the .npy header is parsed into a fixed struct: no arena
        assert failures > 0


@pytest.mark.parametrize("name", ["torch-zip", "safetensors", "hdf5"])
def test_malloc_failing_is_a_memory_error(tmp_path, name):
    path = FILES[name](tmp_path)
    ref = listing(path)
    failures, got = drive(listing, path, nomem=True)
    assert got == ref and failures > 0


@pytest.mark.parametrize("nomem", [False, True], ids=["cap", "malloc"])
def test_scan_never_says_safe_when_memory_fails(tmp_path, nomem):
    """mfparse.scan reports a pickle that exhausts the arena's cap as a memory blow-up (unsafe)
    and a failed malloc as "cannot be judged" (error), never "safe"; once the allocations
    suffice, it agrees with the unlimited scan."""
    p = tmp_path / "m.pt"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("m/data.pkl", pickle.dumps({"a": [1, 2.5, "x"], "b": {"c": (None, True)}}, protocol=2))
        z.writestr("m/version", b"3\n")
    plain = pickle.dumps({"k": list(range(20)), "s": "t" * 50}, protocol=4)
    for data in (p, plain):
        ref = mfparse.scan(data).to_dict()
        assert ref["verdict"] == "safe"
        failures = 0
        for n in range(MAX_STEPS):
            r = with_limit(n, nomem, mfparse.scan, data).to_dict()
            if r["verdict"] != "safe":
                assert r["verdict"] in (("error",) if nomem else ("error", "unsafe")), r
                failures += 1
                continue
            assert {k: v for k, v in r.items() if k != "seconds"} == {k: v for k, v in ref.items() if k != "seconds"}
            break
        assert failures > 0
        no_leak()


def test_the_hook_turns_off(tmp_path):
    path = _safetensors(tmp_path)
    with pytest.raises(mfparse.ResourceLimitError, match="parse needs more than"):
        with_limit(0, False, listing, path)
    assert listing(path)[1]  # no limit left behind
