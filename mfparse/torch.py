"""PyTorch helpers: load any model file mfparse reads into torch tensors without unpickling and
without copying, and save tensors as safetensors, a torch checkpoint, .npz or GGUF (the verbs of
safetensors.torch). torch is imported when a function here runs, never by `import mfparse`.

    >>> import mfparse.torch
    >>> sd = mfparse.torch.load_file("model.pth")               # name -> torch.Tensor (CPU)
    >>> sd = mfparse.torch.load_file("model.pth", device="cuda")
    >>> mfparse.torch.save_file(sd, "model.safetensors")

On the CPU, tensors whose bytes lie contiguous in the file are views of a copy-on-write map of
it (like torch.load(mmap=True)): nothing is read until touched, the tensors are writable, and
writing to them never changes the file. Other tensors are copies. On a CUDA device, each
tensor is allocated there and filled from the map through two pinned host buffers used in
turn (`staging_bytes` each), so the copy of one chunk to the device overlaps the reading of
the next, and host memory stays bounded by the staging buffers.

dtypes: every torch dtype with a canonical mfparse name loads as itself (float8 included);
torch quantized tensors load as their raw integer values (their scales are in
TensorInfo.extras); packed sub-byte dtypes (int4, float4) as raw bytes (uint8).
"""

from __future__ import annotations

import functools
import os
from typing import Mapping

__all__ = ["load_file", "load", "save_file", "save", "torch_dtype"]

#: bytes of each of the two pinned staging buffers of a CUDA load
STAGING_BYTES = 64 << 20

_RAW = {"qint8": "int8", "quint8": "uint8", "qint32": "int32", "quint4x2": "uint8", "quint2x4": "uint8"}


@functools.lru_cache(maxsize=None)
def torch_dtype(name: str):
    """The torch dtype that holds elements of a canonical mfparse dtype as loaded here."""
    import torch

    from mfparse import dtypes

    if name in dtypes.PACKED or name.startswith("bits") or name == "float4_e2m1fn_x2":
        return torch.uint8
    dt = getattr(torch, _RAW.get(name, name), None)
    if not isinstance(dt, torch.dtype):
        raise TypeError(f"dtype {name!r} has no torch equivalent")
    return dt


def _tensor_from_array(a, dtype):
    """A torch tensor sharing the memory of numpy array a (reinterpreted as dtype)."""
    import numpy as np
    import torch

    if a.size == 0:
        return torch.empty(a.shape, dtype=dtype)
    raw = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    t = torch.frombuffer(raw, dtype=torch.uint8)
    return t.view(dtype).reshape(a.shape)


def load_file(path, device="cpu", names=None, staging_bytes: int = STAGING_BYTES) -> dict:
    """Every tensor of a model file as torch tensors.

    Args:
        path: any file mfparse reads (.pth, .safetensors, .h5, .onnx, .gguf, ...), or a model
            of several files (a model folder, an index, any shard: the whole state dict).
        device: "cpu" (zero-copy views of a private map) or a CUDA device.
        names: optional iterable of tensor names to load (default: all).
        staging_bytes: size of each pinned staging buffer for device loads.

    Returns:
        dict name -> torch.Tensor, in file order.

    Example:
        >>> sd = mfparse.torch.load_file("model.safetensors")
        >>> model.load_state_dict(sd)
    """
    import torch

    import mfparse
    from mfparse.writers.items import PrivateMap, SourceItems, host_copy

    dev = torch.device(device)
    wanted = set(names) if names is not None else None
    out = {}
    pairs = []
    with mfparse.open(path) as m:
        for prefix, _rel, part in m.parts():  # a model of several files: file by file, one map each
            with SourceItems(part) as si:
                pmap = PrivateMap(si.fd) if si.fd is not None and si.size else None
                si.probe_map = pmap.map if pmap is not None else None
                for it in si:
                    if prefix:
                        it.name = prefix + it.name
                    if wanted is not None and it.name not in wanted:
                        continue
                    if dev.type != "cpu":
                        pairs.append((it, pmap.array(it) if it.file_range is not None and pmap is not None
                                      else host_copy(it)))
                        continue
                    dt = torch_dtype(it.dtype)
                    if it.file_range is not None and pmap is not None and it.nbytes:
                        # a writable view of the private map (count in elements of dt)
                        t = torch.frombuffer(pmap.map, dtype=dt, count=it.nbytes // dt.itemsize,
                                             offset=it.file_range[1])
                        out[it.name] = t if it.dtype in _packed() else t.view(it.shape)
                    else:
                        out[it.name] = _tensor_from_array(host_copy(it), dt)
    if dev.type == "cpu":
        return out
    return _load_staged(pairs, dev, staging_bytes, _CudaTransfer(dev))


def _packed():
    from mfparse import dtypes

    return dtypes.PACKED


def load(data: bytes, device="cpu") -> dict:
    """Tensors of a model file held in memory (copies)."""
    import torch

    import mfparse
    from mfparse.writers.items import load_arrays

    with mfparse.open(bytes(data)) as m:
        out = {item.name: _tensor_from_array(a, torch_dtype(item.dtype)) for item, a, _ in load_arrays(m)}
    return out if torch.device(device).type == "cpu" else {k: v.to(device) for k, v in out.items()}


# ---- device loads through pinned staging buffers ------------------------------------------------

class _CudaTransfer:
    """Two pinned buffers, a copy stream, and an event per buffer."""

    def __init__(self, device):
        import torch

        self.torch = torch
        self.device = device
        self.stream = torch.cuda.Stream(device)
        self.events = [None, None]

    def buffers(self, nbytes: int):
        t = self.torch
        return [t.empty(nbytes, dtype=t.uint8, pin_memory=True) for _ in range(2)]

    def empty(self, shape, dtype):
        return self.torch.empty(shape, dtype=dtype, device=self.device)

    def wait(self, slot: int) -> None:
        ev = self.events[slot]
        if ev is not None:
            ev.synchronize()

    def copy(self, slot: int, dst, src) -> None:
        t = self.torch
        with t.cuda.stream(self.stream):
            dst.copy_(src, non_blocking=True)
            ev = t.cuda.Event()
            ev.record(self.stream)
        self.events[slot] = ev

    def finish(self) -> None:
        self.stream.synchronize()


def _load_staged(pairs, device, staging_bytes: int, transfer) -> dict:
    """Fill device tensors from host arrays through two staging buffers used in turn: while
    one buffer's copy to the device runs, the other is filled from the map."""
    import numpy as np
    import torch

    staging_bytes = max(1, int(staging_bytes))
    bufs = None
    out = {}
    slot = 0
    for item, a in pairs:
        dtype = torch_dtype(item.dtype)
        dst = transfer.empty(tuple(a.shape), dtype)
        out[item.name] = dst
        if a.size == 0:
            continue
        src = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
        flat = dst.view(-1).view(torch.uint8)
        if bufs is None:
            bufs = transfer.buffers(min(staging_bytes, max(src.size, 1)) if len(pairs) == 1 else staging_bytes)
        size = bufs[0].numel()
        for start in range(0, src.size, size):
            n = min(size, src.size - start)
            transfer.wait(slot)
            host = bufs[slot][:n]
            host.numpy()[:] = src[start:start + n]
            transfer.copy(slot, flat[start:start + n], host)
            slot ^= 1
    transfer.finish()
    return out


# ---- saving -------------------------------------------------------------------------------------

def _item(name: str, t):
    """An Item over a tensor's bytes (a contiguous CPU copy when needed)."""
    import torch

    from mfparse.writers.base import Item, WriteError

    if not isinstance(t, torch.Tensor):
        raise WriteError(f"{name!r} is a {type(t).__name__}, not a torch.Tensor")
    t = t.detach()
    if t.is_quantized:
        t = t.int_repr()
    if t.layout != torch.strided:
        raise WriteError(f"tensor {name!r} has layout {t.layout}; only dense tensors can be written")
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.contiguous()
    dtype = str(t.dtype).rsplit(".", 1)[-1]
    nbytes = t.numel() * t.element_size()
    raw = t.reshape(-1).view(torch.uint8).numpy() if nbytes else None
    alias = (t.untyped_storage().data_ptr(), t.storage_offset(), dtype, tuple(t.shape)) if nbytes else None
    return Item(name, dtype, tuple(int(d) for d in t.shape), nbytes, raw, None, alias, {})


def save_file(tensors: Mapping[str, object], path, metadata: dict | None = None, format: str | None = None,
              overwrite: bool = True) -> None:
    """Write tensors to a file, atomically (a temporary file renamed into place).

    Args:
        tensors: dict name -> torch.Tensor (any device; tensors that share memory are each
            written in safetensors, once in a torch checkpoint).
        path: output path; the extension picks the format (.safetensors, .pt/.pth, .npz, .gguf)
            unless `format` is given.
        metadata: safetensors __metadata__ (str -> str) or GGUF key-values.
        overwrite: replace an existing file (default True, as safetensors does).

    Example:
        >>> mfparse.torch.save_file(model.state_dict(), "model.safetensors")
    """
    from mfparse.writers import write_file

    items = [_item(k, v) for k, v in tensors.items()]
    write_file(os.fspath(path), items, format=format, metadata=metadata, overwrite=overwrite)


def save(tensors: Mapping[str, object], metadata: dict | None = None) -> bytes:
    """The bytes of a safetensors file holding the tensors."""
    import io

    from mfparse.writers import safetensors as st
    from mfparse.writers.base import Output

    buf = io.BytesIO()
    st.write(Output(buf), [_item(k, v) for k, v in tensors.items()], metadata)
    return buf.getvalue()
