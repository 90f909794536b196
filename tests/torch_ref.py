"""Differential checks against torch.load(weights_only=True): names, dtypes, shapes, bytes."""

from __future__ import annotations

import warnings

import numpy as np
import torch

import mfparse


def flatten(obj, prefix: str = "", out=None):
    """{dotted name: tensor} in the order torch.load's result holds them (mfparse's naming)."""
    if out is None:
        out = {}
    join = (lambda k: f"{prefix}.{k}") if prefix else str
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            flatten(v, join(k), out)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            flatten(v, join(i), out)
    elif isinstance(obj, torch.nn.Module):
        for k, v in obj.state_dict(keep_vars=True).items():
            out[join(k)] = v
    return out


def dtype_name(dt: torch.dtype) -> str:
    return str(dt).replace("torch.", "")


def raw_bytes(t: torch.Tensor) -> bytes:
    if t.is_quantized:
        t = t.int_repr()
    t = t.detach().contiguous()
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()


def compare(source, ref=None, **load_kw):
    """Open source with mfparse and check every tensor against torch.load's result.

    Returns the list of TensorInfos.
    """
    if ref is None:
        with warnings.catch_warnings():  # torch warns about protocols 4/5 and experimental dtypes
            warnings.simplefilter("ignore")
            ref = torch.load(source, weights_only=True, map_location="cpu", **load_kw)
    expected = flatten(ref)
    with mfparse.open(source) as m:
        infos = list(m.tensors())
        assert [t.name for t in infos] == list(expected), "names or order differ"
        for info in infos:
            r = expected[info.name]
            assert info.dtype == dtype_name(r.dtype), info.name
            assert info.shape == tuple(r.shape), info.name
            assert info.nbytes == r.numel() * r.element_size(), info.name
            a = m[info.name]
            assert a.shape == tuple(r.shape), info.name
            assert not a.flags.writeable, info.name
            assert np.ascontiguousarray(a).tobytes() == raw_bytes(r), f"bytes differ for {info.name}"
        return infos
