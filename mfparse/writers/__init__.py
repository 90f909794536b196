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


__all__ = ["FORMATS", "WriteError", "atomic_output", "format_for_path", "module", "normalize", "write_file"]


def write_file(path, items, format: str | None = None, metadata: dict | None = None, obj=None,
               overwrite: bool = True, progress=False, fsync: bool = False, check_space: bool = True) -> None:
    """Write Items to `path` atomically in `format` (default: from the extension).

    Args:
        items: list of mfparse.writers.base.Item.
        metadata: safetensors __metadata__ (str -> str) or GGUF key-values; other formats
            have no place for it (a WriteError says so when it is given).
        obj: for torch-zip, the structure to pickle (Items as tensors); default {name: item}.
    """
    from mfparse.writers import base

    fmt = normalize(format) if format else format_for_path(path)
    w = module(fmt)
    for it in items:
        why = w.unsupported(it)
        if why:
            raise WriteError(f"tensor {it.name!r}: {why}")
    if fmt == "safetensors":
        size, run = w.estimate_size(items, metadata), lambda out: w.write(out, items, metadata)
    elif fmt == "torch-zip":
        obj = {it.name: it for it in items} if obj is None else obj
        if metadata:
            raise WriteError("a torch checkpoint written from tensors has no place for metadata")
        size, run = w.estimate_size(obj), lambda out: w.write(out, obj)
    elif fmt == "npz":
        if metadata:
            raise WriteError(".npz has no place for metadata")
        size, run = w.estimate_size(items), lambda out: w.write(out, items)
    elif fmt == "gguf":
        size, run = w.estimate_size(items, metadata or {}), lambda out: w.write(out, items, metadata or {})
    else:
        raise WriteError(f"{fmt} files are written by mfparse.convert from a model file")
    if os.path.exists(path) and not overwrite:
        raise WriteError(f"{path} exists (pass overwrite=True to replace it)")
    if check_space:
        base.check_free_space(path, size)
    bar = base.make_progress(progress, sum(it.nbytes for it in items), os.path.basename(os.fspath(path)))
    try:
        with base.atomic_output(path, fsync=fsync) as af:
            out = base.Output(af.file, bar, af.tmp_path)
            out.preallocate(size)
            run(out)
            out.finish()
    finally:
        bar.close()
