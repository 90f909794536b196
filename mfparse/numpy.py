"""numpy helpers: load any model file mfparse reads into numpy arrays without copying, and save
arrays as safetensors, a torch checkpoint, .npz or GGUF (the verbs of safetensors.numpy).

    >>> import mfparse.numpy
    >>> tensors = mfparse.numpy.load_file("model.pth")          # name -> np.ndarray
    >>> mfparse.numpy.save_file(tensors, "model.safetensors")

Arrays whose bytes lie contiguous in the file are views of a copy-on-write map of it: nothing is
read until touched, they are writable, and writing to them never changes the file. Other
tensors (strided, big-endian, compressed, decoded) are copies. Packed sub-byte dtypes (int4,
float4) come back as their packed bytes (uint8), as ModelFile.read(info, packed=True) gives them.
"""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np

__all__ = ["load_file", "load", "save_file", "save"]


def load_file(path, names=None, dtype=None, prefix: str | None = None, strip_prefix=None,
              select: str | None = None) -> dict[str, np.ndarray]:
    """Tensors of a model file as numpy arrays, zero-copy where the layout allows.

    Args:
        path: any file mfparse reads, or a model of several files (a model folder, an index,
            any shard): the whole state dict, each file mapped once.
        names: the tensors to load, by the names returned (after select / prefix /
            strip_prefix); a name that is not there raises KeyError (with close matches).
        dtype: cast floating-point arrays (float16, bfloat16, float32, float64) to this
            floating dtype (a numpy or torch dtype, or a name: "bfloat16", "fp16"); integer, bool,
            complex, float8, sub-byte and quantized tensors keep their dtype (as
            mfparse.torch.load_file). A cast array is a copy.
        prefix, strip_prefix, select: as mfparse.torch.load_file (a sub-tree such as
            "model_state_dict", a name prefix, a prefix removed from the names).

    Returns:
        dict name -> np.ndarray, in file order (tensors without data, e.g. meta tensors, are
        left out; asking for one by `names` is a ValueError).

    Example:
        >>> w = mfparse.numpy.load_file("model.safetensors")["fc1.weight"]
        >>> sd = mfparse.numpy.load_file("checkpoint.pth", select="model_state_dict")
    """
    import mfparse
    from mfparse.writers.items import CASTABLE, check_loaded, load_arrays, select_names

    target = _target_dtype(dtype)
    out: dict[str, np.ndarray] = {}
    skipped: list = []
    with mfparse.open(path) as m:
        chosen = select_names(m, names=names, prefix=prefix, strip_prefix=strip_prefix, select=select)
        for item, a, _ in load_arrays(m, only=chosen, skipped=skipped):
            if target is not None and item.dtype in CASTABLE and a.dtype != target:
                a = a.astype(target)
            out[chosen[item.name]] = a
        check_loaded(names, chosen, skipped, m)
    return out


def _target_dtype(dtype):
    """The numpy dtype dtype= asks for (None for none); ValueError unless a float of 2+ bytes."""
    if dtype is None:
        return None
    from mfparse import dtypes

    if isinstance(dtype, str):
        name = dtype
    elif type(dtype).__module__ == "torch":
        name = str(dtype)  # torch.float16 & co, by name (torch is not imported here)
    else:
        name = np.dtype(dtype).name
    name = name[len("torch."):] if name.startswith("torch.") else name
    name = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32", "fp64": "float64", "half": "float16",
            "single": "float32", "double": "float64"}.get(name, name)
    from mfparse.writers.items import CASTABLE

    if name not in CASTABLE:
        raise ValueError(f"dtype={dtype!r}: loading casts floating-point arrays only, to float16, bfloat16, "
                         f"float32 or float64")
    return dtypes.numpy_dtype(name)


def load(data: bytes) -> dict[str, np.ndarray]:
    """Tensors of a model file held in memory (copies)."""
    import mfparse

    with mfparse.open(bytes(data)) as m:
        return {t.name: np.array(m.read(t, packed=True), copy=True) for t in m.tensors() if t.offset is not None
                or t.extras.get("device") != "meta"}


def _items(tensors: Mapping[str, np.ndarray]):
    from mfparse.writers.base import WriteError, item_from_array

    items = []
    for name, a in tensors.items():
        if not isinstance(name, str):
            raise WriteError(f"tensor names must be strings, not {type(name).__name__}")
        items.append(item_from_array(name, np.asarray(a)))
    return items


def save_file(tensors: Mapping[str, np.ndarray], path, metadata: dict | None = None, format: str | None = None,
              overwrite: bool = True) -> None:
    """Write arrays to a file, atomically (a temporary file renamed into place).

    Args:
        tensors: dict name -> array.
        path: output path; the extension picks the format (.safetensors, .pt/.pth, .npz, .gguf)
            unless `format` is given.
        metadata: safetensors __metadata__ (str -> str) or GGUF key-values.
        overwrite: replace an existing file (default True, as numpy and safetensors do).
    """
    from mfparse.writers import write_file

    write_file(os.fspath(path), _items(tensors), format=format, metadata=metadata, overwrite=overwrite)


def save(tensors: Mapping[str, np.ndarray], metadata: dict | None = None) -> bytes:
    """The bytes of a safetensors file holding the arrays."""
    import io

    from mfparse.writers import safetensors as st
    from mfparse.writers.base import Output

    buf = io.BytesIO()
    st.write(Output(buf), _items(tensors), metadata)
    return buf.getvalue()
