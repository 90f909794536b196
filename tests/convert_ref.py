"""Reference readers and source fixtures for the convert / quantize / diff tests.

Every written file is read back with the library that defines its format (safetensors,
torch.load(weights_only=True), numpy.load, gguf-py's GGUFReader), never only with mfparse.
Sources come from the real writers (torch.save zip and legacy, torch.jit.save,
safetensors.torch.save_file) and, for every other format mfparse both writes and reads,
from mfparse's own writer: a source whose reader has not landed yet is skipped, so the matrix
grows by itself as readers are merged.
"""

from __future__ import annotations

import os

import numpy as np
import torch

import mfparse
from mfparse.errors import UnsupportedFormatError


def state_dict():
    """A small state dict covering the dtypes and layouts conversions must carry."""
    g = torch.Generator().manual_seed(0)
    sd = {
        "fc1.weight": torch.randn(8, 16, generator=g),
        "fc1.bias": torch.randn(8, generator=g),
        "half.weight": torch.randn(4, 6, generator=g).half(),
        "bf16.weight": torch.randn(3, 5, generator=g).to(torch.bfloat16),
        "f64": torch.randn(3, generator=g).double(),
        "i8": torch.randint(-100, 100, (7,), generator=g, dtype=torch.int8),
        "i32": torch.arange(5, dtype=torch.int32),
        "i64": torch.arange(4, dtype=torch.int64) * 1000,
        "u8": torch.arange(9, dtype=torch.uint8),
        "flag": torch.tensor([True, False, True]),
        "fp8": torch.randn(6, generator=g).to(torch.float8_e4m3fn),
        "cplx": torch.randn(2, dtype=torch.complex64, generator=g),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
        "conv.weight": torch.randn(4, 2, 3, 3, generator=g),
    }
    sd["transposed"] = torch.randn(5, 3, generator=g).t()   # strided in the checkpoint
    sd["tied"] = sd["fc1.weight"]                            # same storage, same layout
    sd["row"] = sd["conv.weight"][1]                         # a view into another storage
    return sd


def checkpoint():
    """A training checkpoint: model, optimizer state keyed by ints, scalars, a tuple."""
    sd = state_dict()
    return {
        "model": sd,
        "optimizer": {"state": {0: {"step": torch.tensor(2.0), "exp_avg": torch.ones(8, 16)}},
                      "param_groups": [{"lr": 0.001, "betas": (0.9, 0.999), "params": [0]}]},
        "epoch": 7,
        "best_acc": 0.875,
        "name": "run-1",
    }


def torch_dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).rsplit(".", 1)[-1]


def tensor_record(t: torch.Tensor):
    t = t.detach().contiguous()
    return torch_dtype_name(t), tuple(t.shape), t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def flatten(obj, prefix=""):
    """{dotted name: tensor} of a nested checkpoint, named as mfparse names them."""
    out = {}
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}.{i}" if prefix else str(i)))
    return out


# ---- reference readers: {name: (dtype, shape, bytes)} --------------------------------------------

_GGML = {0: "float32", 1: "float16", 24: "int8", 25: "int16", 26: "int32", 27: "int64", 28: "float64", 30: "bfloat16"}


def read_reference(path, fmt: str) -> dict:
    if fmt == "safetensors":
        from safetensors import safe_open

        with safe_open(os.fspath(path), "pt") as f:
            return {k: tensor_record(f.get_tensor(k)) for k in f.keys()}
    if fmt == "torch-zip":
        obj = torch.load(os.fspath(path), weights_only=True, map_location="cpu")
        return {k: tensor_record(v) for k, v in flatten(obj).items()}
    if fmt == "npz":
        with np.load(os.fspath(path), allow_pickle=False) as z:
            return {k: (z[k].dtype.name, tuple(z[k].shape), np.ascontiguousarray(z[k]).tobytes()) for k in z.files}
    if fmt == "gguf":
        import gguf

        r = gguf.GGUFReader(os.fspath(path))
        out = {}
        for t in r.tensors:
            shape = tuple(int(d) for d in reversed(t.shape.tolist()))
            out[t.name] = (_GGML[int(t.tensor_type)], shape, np.asarray(t.data).tobytes())
        return out
    if fmt == "onnx":
        import onnx
        from onnx import numpy_helper

        model = onnx.load(os.fspath(path), load_external_data=True)
        out = {}
        for init in model.graph.initializer:
            a = numpy_helper.to_array(init)
            out[init.name] = (a.dtype.name, tuple(a.shape), np.ascontiguousarray(a).tobytes())
        return out
    raise ValueError(fmt)


def read_mfparse(path) -> dict:
    with mfparse.open(path) as m:
        return {t.name: (t.dtype, tuple(t.shape), np.ascontiguousarray(m.read(t)).tobytes()) for t in m.tensors()
                if not (t.offset is None and t.extras.get("device") == "meta")}


# ---- source fixtures -----------------------------------------------------------------------------

#: sources written by the real writers
REAL_SOURCES = ("torch-zip", "torch-legacy", "torchscript", "safetensors")
#: sources written by mfparse's own writers (used when mfparse reads them)
OWN_SOURCES = ("npz", "gguf")


class _Scripted(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)
        self.layers = torch.nn.ModuleList([torch.nn.Linear(3, 3)])
        self.register_buffer("steps", torch.tensor(2))

    def forward(self, x):
        return self.layers[0](self.fc(x))


def make_source(kind: str, folder) -> str:
    """Write a source fixture of one kind into folder; returns its path (fails the calling test
    when mfparse cannot read that kind: a reader that disappears must not become a skip)."""
    import pytest

    folder = os.fspath(folder)
    if kind == "torch-zip":
        p = os.path.join(folder, "src.pt")
        torch.save(checkpoint(), p)
    elif kind == "torch-legacy":
        p = os.path.join(folder, "src_legacy.pt")
        ck = checkpoint()
        del ck["model"]["fp8"]  # torch 2.13 writes float8 in the legacy format but cannot load it back
        torch.save(ck, p, _use_new_zipfile_serialization=False)
    elif kind == "torchscript":
        import warnings

        torch.manual_seed(0)
        p = os.path.join(folder, "src_script.pt")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated, files are not
            torch.jit.save(torch.jit.script(_Scripted()), p)
    elif kind == "safetensors":
        from safetensors.torch import save_file

        p = os.path.join(folder, "src.safetensors")
        sd = {k: v.contiguous() for k, v in state_dict().items() if k not in ("tied", "row")}
        save_file(sd, p, metadata={"format": "pt", "note": "from safetensors"})
    elif kind in OWN_SOURCES:
        from mfparse.writers import module, write_file
        from mfparse.writers.base import item_from_array

        w = module(kind)
        items = []
        for k, v in state_dict().items():
            if k in ("tied", "row"):
                continue
            a = v.contiguous()
            raw = a.reshape(-1).view(torch.uint8).numpy() if a.numel() else np.zeros(0, np.uint8)
            it = item_from_array(k, raw)
            it.dtype, it.shape = torch_dtype_name(a), tuple(a.shape)
            if w.unsupported(it) is None:
                items.append(it)
        p = os.path.join(folder, f"src.{kind}")
        write_file(p, items, format=kind, metadata={"general.name": "fixture"} if kind == "gguf" else None)
    else:
        raise ValueError(kind)
    try:
        mfparse.open(p).close()
    except UnsupportedFormatError as e:  # every writer's format has a reader: losing one is a failure
        pytest.fail(f"mfparse cannot read the {kind} file its own writer made: {e}")
    return p
