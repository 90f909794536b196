"""The public API: open(), ModelFile, TensorInfo.

Example:
    >>> import mfparse
    >>> with mfparse.open("model.pth") as m:
    ...     for t in m.tensors():
    ...         print(t.name, t.dtype, t.shape)
    ...     w = m["fc1.weight"]          # numpy view of the file's bytes
"""

from __future__ import annotations

import os

from mfparse.model import ModelFile, MultiFileModel, open_layout, open_source_file
from mfparse.records import EMPTY, ObjectNode, SharedRef, TensorInfo, to_jsonable

__all__ = ["open", "ModelFile", "MultiFileModel", "TensorInfo", "ObjectNode", "SharedRef", "EMPTY", "to_jsonable"]


def open(source, format: str | None = None, *, whole: bool = True, strict: bool = False,
         variant: str | None = None, storage_options: dict | None = None) -> ModelFile:
    """Open a model file, or a model of several files, without running or importing anything
    it names.

    Args:
        source: a path (str or pathlib.Path), a URL, bytes, or a binary file object. A path
            may also name a model folder (Hugging Face, diffusers), an `*.index.json`, any
            shard of a split set (`model-00001-of-00004.safetensors`, llama.cpp GGUF splits),
            a SavedModel or checkpoint folder, or a checkpoint prefix (see mfparse.locate).
            A URL (http(s)://, s3://, gs://, hf://, any fsspec URL; `pip install
            mfparse[remote]`) is read by ranges, never downloaded to list it: a file, or a
            folder / prefix / `hf://org/model` repository (a URL ending in "/"), an index or a
            shard, as for paths. `m[name]` then fetches that tensor's bytes.
        format: force a format ("torch-zip", "safetensors", ...) instead of detecting it.
        whole: with False, a shard path opens that one file only.
        strict: for models of several files, make the findings of `m.warnings` (tensors
            missing from the index, a total_size that does not add up) errors.
        variant: in model folders, the weights variant to open ("fp16": model.fp16.safetensors).
        storage_options: for URLs, fsspec's options of the filesystem (credentials, endpoint_url,
            ...); credentials otherwise come from the usual fsspec / boto / huggingface places.

    Returns:
        A ModelFile (a mfparse.model.MultiFileModel over several files); use it as a
        context manager.

    Raises:
        UnsupportedFormatError: the bytes are not a format mfparse reads.
        CorruptFileError: the file is damaged (the message names the byte offset), or the
            files of a model disagree (the message names the file).

    Example:
        >>> with mfparse.open("model.safetensors") as m:
        ...     print(m.format, len(m))
        >>> with mfparse.open("llama-folder/") as m:     # every shard, one state dict
        ...     print(m.files, m.metadata.get("config.model_type"))
    """
    from mfparse.formats import resolve_path
    from mfparse.io.base import is_url

    if is_url(source) and source[:7].lower() != "file://":
        from mfparse.io import open_source

        src = None
        if whole:
            from mfparse.locate import locate_url

            layout, src = locate_url(source, format, variant, storage_options)
            if layout.kind != "file":
                return open_layout(layout, format, strict)
        return open_source_file(src if src is not None else open_source(source, storage_options), format)
    if whole and isinstance(source, (str, os.PathLike)):
        from mfparse.locate import locate

        layout = locate(source, format, variant)
        if layout.kind != "file":
            return open_layout(layout, format, strict)
        source = layout.path
    from mfparse.source import Source

    return open_source_file(Source(resolve_path(source, format)), format)
