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
from collections.abc import Iterator

from mfparse._lazy import numpy as np
from mfparse.errors import MFParseError
from mfparse.records import EMPTY, ObjectNode, TensorInfo, to_jsonable

_jsonable = to_jsonable  # the name the tools used before the records moved to mfparse.records
__all__ = ["open", "ModelFile", "TensorInfo", "ObjectNode", "EMPTY", "to_jsonable"]


class ModelFile:
    """An open model file. Use as a context manager, or call close().

    Attributes:
        format: "torch-zip", "torch-legacy", "torchscript", "safetensors", ...
        path: the file's path, or None for bytes and anonymous streams.
        size: file size in bytes.
    """

    def __init__(self, reader, source):
        self._reader = reader
        self._source = source
        self.format: str = reader.format
        self.path: str | None = source.path
        self.size: int = source.size
        self._infos = reader.tensors()
        self._by_name: dict[str, TensorInfo] | None = None

    # ---- listing ------------------------------------------------------------------------------

    def tensors(self) -> Iterator[TensorInfo]:
        """Every tensor stored in the file, in file order (no data is read)."""
        return iter(self._infos)

    def _index(self) -> dict[str, TensorInfo]:
        if self._by_name is None:
            self._by_name = {t.name: t for t in self._infos}
        return self._by_name

    def info(self, name: str) -> TensorInfo:
        """The TensorInfo of one tensor (KeyError if absent)."""
        return self._index()[name]

    def keys(self) -> list[str]:
        return [t.name for t in self._infos]

    def __contains__(self, name) -> bool:
        return name in self._index()

    def __len__(self) -> int:
        return len(self._infos)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    # ---- data ---------------------------------------------------------------------------------

    def __getitem__(self, name: str) -> np.ndarray:
        """The tensor's data as numpy: a read-only view of the file when the layout allows."""
        return self.read(self._index()[name])

    def read(self, info: TensorInfo, *, packed: bool = False) -> np.ndarray:
        """The data of a TensorInfo from this file.

        Sub-byte dtypes that the format packs several to a byte (ONNX int4/uint4/float4e2m1/
        int2/uint2/float6, TFLite INT4/UINT4/INT2) come back as their logical values: an
        ml_dtypes array of the tensor's shape, as onnx.numpy_helper.to_array gives. With
        packed=True they come back as the stored bytes instead (uint8, TensorInfo.nbytes of
        them, a view of the file when the layout allows); other tensors are the same either way.
        """
        self._check_open()
        reader = self._reader
        a = reader.read(info)
        if not packed and info.dtype in reader.unpacks and a.dtype == np.uint8:
            from mfparse.dtypes import unpack

            a = unpack(a, info.dtype, tuple(info.shape), info.offset)
        return a

    def _buffer_address(self) -> int | None:
        """Address of the first byte of the file's map (internal: lets writers tell, without
        touching a page, whether an array read from this file is a view of it, and where)."""
        self._check_open()
        buf = self._source.buf
        if len(buf) == 0:
            return None
        return np.frombuffer(buf, dtype=np.uint8, count=1).__array_interface__["data"][0]

    @property
    def reader(self):
        """The format's Reader (mfparse.formats.base.Reader): where format-specific operations
        live, as h5py's high-level objects hand out their low-level `id`. Examples: a TF
        SavedModel/GraphDef reader's `risky_ops()`, a TF checkpoint's `verify(names)`, a Keras
        reader's `keras_config()`, a GGUF reader's `value_type(key)`; the module helpers
        `formats.tf.risky_ops(m)`, `formats.keras.model_config(m)`, ... take a ModelFile and
        call these."""
        self._check_open()
        return self._reader

    # ---- structure ----------------------------------------------------------------------------

    @property
    def metadata(self) -> dict:
        """Safe scalars and strings: epoch, best_acc, __metadata__, model config, ..."""
        return self._reader.metadata()

    def tree(self):
        """The file's nested structure with TensorInfo leaves (e.g. model_state_dict /
        optimizer_state_dict / epoch for a training checkpoint)."""
        return self._reader.tree()

    @property
    def graph(self):
        """Inputs, outputs and operators for graph formats (ONNX, TFLite, SavedModel); else None."""
        return self._reader.graph

    # ---- lifetime -----------------------------------------------------------------------------

    def _check_open(self):
        if self._source is None:
            raise ValueError("I/O operation on a closed model file")

    def close(self) -> None:
        if self._source is not None:
            close = getattr(self._reader, "close", None)
            if close is not None:
                close()
            self._source.close()
            self._source = None

    def __enter__(self) -> "ModelFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.path or f"<{self.size} bytes>"
        return f"<mfparse.ModelFile {self.format} {where!r} tensors={len(self._infos)}>"


def open(source, format: str | None = None) -> ModelFile:
    """Open a model file without running or importing anything it names.

    Args:
        source: a path (str or pathlib.Path), bytes, or a binary file object. A path may
            also name a SavedModel or checkpoint folder, or a checkpoint prefix.
        format: force a format ("torch-zip", "safetensors", ...) instead of detecting it.

    Returns:
        A ModelFile; use it as a context manager.

    Raises:
        UnsupportedFormatError: the bytes are not a format mfparse reads.
        CorruptFileError: the file is damaged (the message names the byte offset).

    Example:
        >>> with mfparse.open("model.safetensors") as m:
        ...     print(m.format, len(m))
    """
    from mfparse.formats import open_reader, resolve_path
    from mfparse.source import Source

    src = Source(resolve_path(source, format))
    try:
        reader = open_reader(src, format)
        return ModelFile(reader, src)
    except MFParseError as e:
        if e.path is None and src.path is not None:
            e.path = os.fspath(src.path)
        src.close()
        raise
    except BaseException:
        src.close()
        raise
