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


def load_file(path, names=None) -> dict[str, np.ndarray]:
    """Every tensor of a model file as numpy arrays, zero-copy where the layout allows.

    Args:
        path: any file mfparse reads, or a model of several files (a model folder, an index,
            any shard): the whole state dict, each file mapped once.
        names: optional iterable of tensor names to load (default: all).

    Returns:
        dict name -> np.ndarray, in file order (tensors without data, e.g. meta tensors, are
        left out).

    Example:
        >>> w = mfparse.numpy.load_file("model.safetensors")["fc1.weight"]
    """
    import mfparse
    from mfparse.writers.items import load_arrays

    wanted = set(names) if names is not None else None
    out: dict[str, np.ndarray] = {}
    with mfparse.open(path) as m:
        for item, a, _ in load_arrays(m):
            if wanted is None or item.name in wanted:
                out[item.name] = a
    return out


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
