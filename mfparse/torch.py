"""PyTorch helpers: load any model file mfparse reads into torch tensors without unpickling and
without copying, and save tensors as safetensors, a torch checkpoint, .npz or GGUF (the verbs of
safetensors.torch). torch is imported when a function here runs, never by `import mfparse`.

    >>> import mfparse.torch
    >>> sd = mfparse.torch.load_file("model.pth")               # name -> torch.Tensor (CPU)
    >>> sd = mfparse.torch.load_file("model.pth", device="cuda", dtype=torch.bfloat16)
    >>> sd = mfparse.torch.load_file("checkpoint.pth", select="model_state_dict")
    >>> sd = mfparse.torch.load_file("model.pth", device="meta")   # dtypes and shapes, nothing read
    >>> mfparse.torch.save_file(sd, "model.safetensors")

On the CPU, tensors whose bytes lie contiguous in the file are views of a copy-on-write map of
it (like torch.load(mmap=True)): nothing is read until touched, the tensors are writable, and
writing to them never changes the file. Other tensors are copies. On a CUDA device, each
tensor is allocated there and filled from the map through two pinned host buffers used in
turn (`staging_bytes` each), so the copy of one chunk to the device overlaps the reading of
the next, and host memory stays bounded by the staging buffers. On the meta device, tensors
have the dtype and shape a CPU load gives and no data is read.

dtypes: every torch dtype with a canonical mfparse name loads as itself (float8 included);
torch quantized tensors load as their raw integer values (their scales are in
TensorInfo.extras); packed sub-byte dtypes (int4, float4) as raw bytes (uint8, flat); GGUF
block-quantized tensors as their stored blocks (uint8, one row of blocks per row, as the
reader gives them; mfparse.dequantize gives their values). `dtype=` casts floating-point
tensors only (float16, bfloat16, float32, float64), as transformers does.
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


def load_file(path, device="cpu", dtype=None, names=None, prefix: str | None = None, strip_prefix=None,
              select: str | None = None, staging_bytes: int = STAGING_BYTES) -> dict:
    """Tensors of a model file as torch tensors, never unpickling.

    Args:
        path: any file mfparse reads (.pth, .safetensors, .h5, .onnx, .gguf, ...), or a model
            of several files (a model folder, an index, any shard: the whole state dict).
        device: "cpu" (zero-copy views of a private map), "meta" (tensors of the right dtype
            and shape, nothing read), a CUDA device (through pinned staging buffers), or any
            other torch device (loaded on the CPU, then moved tensor by tensor).
        dtype: cast floating-point tensors (float16, bfloat16, float32, float64) to this
            floating dtype while loading (a torch.dtype or its name: "float16", "bfloat16",
            "torch.float16", "fp16", "bf16"); as transformers' `torch_dtype`, integer, bool,
            complex, float8, sub-byte and quantized tensors keep their dtype. A CPU tensor that
            is cast is a copy (tied tensors are then separate copies); one already of that
            dtype stays a view of the file.
        names: the tensors to load, by the names returned (after select / prefix /
            strip_prefix); a name that is not there raises KeyError (with close matches).
        prefix: only tensors whose name starts with this string.
        strip_prefix: a string removed from the start of the names that have it (e.g.
            "module." of DataParallel checkpoints; the others are kept), or True to remove
            `prefix`.
        select: a sub-tree of a nested checkpoint, by its dotted name ("model_state_dict",
            "state_dict", "unet"): only its tensors, named relative to it, so that
            `model.load_state_dict(load_file(ckpt, select="model_state_dict"))` works on a
            training checkpoint. Applied first, then prefix, strip_prefix, names.
        staging_bytes: size of each pinned staging buffer for CUDA loads.

    Returns:
        dict name -> torch.Tensor, in file order. Tensors without data in the file (meta
        tensors of a checkpoint, strings) are left out; asking for one by `names` is a
        ValueError.

    Raises:
        KeyError (mfparse.writers.items.TensorNameError): an unknown name, sub-tree or prefix.
        mfparse.MFParseError: the file cannot be read.

    Examples:
        >>> model.load_state_dict(mfparse.torch.load_file("model.safetensors"))
        >>> sd = mfparse.torch.load_file("checkpoint.pth", select="model_state_dict")
        >>> sd = mfparse.torch.load_file("ddp.pth", strip_prefix="module.", dtype=torch.bfloat16)

        Loading into a model built on the meta device (no memory is spent on its random
        initial weights; assign=True makes the loaded tensors the model's parameters, so on the
        CPU they stay zero-copy views of the file):

        >>> with torch.device("meta"):
        ...     model = Net()
        >>> model.load_state_dict(mfparse.torch.load_file("model.safetensors"), assign=True)

        Every parameter and persistent buffer must be in the file (strict=True, the default,
        says which are not); buffers that are not saved (persistent=False) stay on the meta
        device and must be set by the model's own code.
    """
    import torch

    import mfparse
    from mfparse.writers.items import check_loaded, load_arrays, select_names

    dev = torch.device(device)
    target = _target_dtype(dtype)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {str(dev)!r}: this torch has no usable CUDA device "
                           f"(torch.cuda.is_available() is False)")
    with mfparse.open(path) as m:
        chosen = select_names(m, names=names, prefix=prefix, strip_prefix=strip_prefix, select=select)
        if dev.type == "meta":
            return _meta_tensors(m, chosen, target, names)
        skipped: list = []
        out = {}
        pairs = []
        for it, a, _zero_copy in load_arrays(m, only=chosen, skipped=skipped):
            it.name = chosen[it.name]
            if dev.type == "cuda":
                pairs.append((it, a))
                continue
            t = _tensor_from_array(a, _held_dtype(it.dtype, a))
            if target is not None and it.dtype in _castable() and t.dtype != target:
                t = t.to(target)
            out[it.name] = t if dev.type == "cpu" else t.to(dev)
        check_loaded(names, chosen, skipped, m)
    if dev.type != "cuda":
        return out
    return _load_staged(pairs, dev, staging_bytes, _CudaTransfer(dev), dtype=target)


#: spellings of dtype= beyond torch's attribute names
_DTYPE_ALIASES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32", "fp64": "float64"}


def _target_dtype(dtype):
    """The torch dtype that dtype= asks for (None for none); ValueError unless floating."""
    if dtype is None:
        return None
    import torch

    if isinstance(dtype, torch.dtype):
        dt = dtype
    elif isinstance(dtype, str):
        name = dtype[len("torch."):] if dtype.startswith("torch.") else dtype
        dt = getattr(torch, _DTYPE_ALIASES.get(name, name), None)
        if not isinstance(dt, torch.dtype):
            raise ValueError(f"dtype={dtype!r} is not a torch dtype")
    else:
        raise TypeError(f"dtype must be a torch.dtype or its name, not {type(dtype).__name__}")
    if not dt.is_floating_point or dt.itemsize < 2:
        raise ValueError(f"dtype={dtype!r}: loading casts floating-point tensors only, to float16, bfloat16, "
                         f"float32 or float64")
    return dt


def _held_dtype(name: str, a):
    """The torch dtype of a loaded array of mfparse dtype `name`: torch_dtype(name), or uint8
    for the stored blocks of dtypes torch has no name for (GGUF block quantization)."""
    try:
        return torch_dtype(name)
    except TypeError:
        import numpy as np
        import torch

        if a.dtype == np.uint8:
            return torch.uint8
        raise


def _castable():
    from mfparse.writers.items import CASTABLE

    return CASTABLE


def _meta_tensors(m, chosen: dict, target, requested) -> dict:
    """Tensors on the meta device, of the dtype and shape a CPU load gives, nothing read."""
    import numpy as np
    import torch

    from mfparse.errors import MFParseError
    from mfparse.writers.items import check_loaded

    packed = _packed()
    castable = _castable()
    out = {}
    skipped = []
    for t in m.tensors():
        name = chosen.get(t.name)
        if name is None:
            continue
        if t.offset is None and t.extras.get("device") == "meta":
            skipped.append((t.name, "meta tensor: no data in the file"))
            continue
        shape = (t.nbytes,) if t.dtype in packed else tuple(t.shape)
        try:
            dt = torch_dtype(t.dtype)
        except TypeError as e:
            try:  # stored blocks (GGUF block quantization): the shape of the reader's view
                a = m.read(t, packed=True)
            except (TypeError, MFParseError):
                a = None
            if a is None or a.dtype != np.uint8:
                skipped.append((t.name, str(e)))
                continue
            dt, shape = torch.uint8, tuple(a.shape)
        if target is not None and t.dtype in castable:
            dt = target
        out[name] = torch.empty(shape, dtype=dt, device="meta")
    check_loaded(requested, chosen, skipped, m)
    return out


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


def _load_staged(pairs, device, staging_bytes: int, transfer, dtype=None) -> dict:
    """Fill device tensors from host arrays through two staging buffers used in turn: while
    one buffer's copy to the device runs, the other is filled from the map. With `dtype`, the
    floating tensors of CASTABLE dtypes are converted chunk by chunk into the staging buffer,
    so only the converted bytes cross to the device."""
    import numpy as np
    import torch

    castable = _castable()
    # at least one element of the widest dtype fits a buffer
    staging_bytes = max(8, int(staging_bytes))
    bufs = None
    out = {}
    slot = 0
    for item, a in pairs:
        src_dtype = _held_dtype(item.dtype, a)
        dst_dtype = dtype if dtype is not None and item.dtype in castable else src_dtype
        dst = transfer.empty(tuple(a.shape), dst_dtype)
        out[item.name] = dst
        if a.size == 0:
            continue
        raw = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
        if bufs is None:
            need = dst.numel() * dst.element_size()
            bufs = transfer.buffers(max(8, min(staging_bytes, need)) if len(pairs) == 1 else staging_bytes)
        size = bufs[0].numel()
        if dst_dtype == src_dtype:
            flat, src, unit = dst.view(-1).view(torch.uint8), raw, 1  # bytes as they are
        else:
            flat, src, unit = dst.view(-1), torch.from_numpy(raw).view(src_dtype), dst.element_size()
        step = size // unit
        for start in range(0, flat.numel(), step):
            n = min(step, flat.numel() - start)
            transfer.wait(slot)
            if unit == 1:
                host = bufs[slot][:n]
                host.numpy()[:] = src[start:start + n]
            else:
                host = bufs[slot][:n * unit].view(dst_dtype)
                host.copy_(src[start:start + n])  # converted on the host, into the pinned buffer
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
