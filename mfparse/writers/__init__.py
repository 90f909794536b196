"""Writers: safetensors, torch zip, npz, GGUF and ONNX (external data), written by mfparse.

Each writer module has FORMAT, EXTENSIONS, `unsupported(item) -> reason | None`,
`estimate_size(...)` and `write(out, ...)`; `mfparse.convert` chooses one, and
`mfparse.torch.save_file` / `mfparse.numpy.save_file` use them directly. Everything a writer
needs from a source comes through the public API (mfparse/writers/items.py).
"""

from __future__ import annotations

import os

from mfparse.writers.base import WriteError, atomic_output

#: output format names, in the order `mfparse convert --help` lists them
FORMATS = ("safetensors", "torch-zip", "npz", "gguf", "onnx")

_ALIASES = {"pt": "torch-zip", "pth": "torch-zip", "torch": "torch-zip", "st": "safetensors"}


def module(fmt: str):
    """The writer module of an output format name."""
    fmt = _ALIASES.get(fmt, fmt)
    if fmt == "safetensors":
        from mfparse.writers import safetensors as m
    elif fmt == "torch-zip":
        from mfparse.writers import torchzip as m
    elif fmt == "npz":
        from mfparse.writers import npz as m
    elif fmt == "gguf":
        from mfparse.writers import gguf as m
    elif fmt == "onnx":
        from mfparse.writers import onnx as m
    else:
        raise WriteError(f"unknown output format {fmt!r}; known: {', '.join(FORMATS)}")
    return m


def format_for_path(path) -> str:
    """The output format a file name asks for, from its extension."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    for fmt in FORMATS:
        if ext in module(fmt).EXTENSIONS:
            return fmt
    raise WriteError(f"cannot tell the output format from {os.fspath(path)!r}; pass --to "
                     f"({', '.join(FORMATS)})")


def normalize(fmt: str) -> str:
    return module(fmt).FORMAT


__all__ = ["FORMATS", "WriteError", "atomic_output", "format_for_path", "module", "normalize"]
