"""mfparse: read machine-learning model files without running them.

    >>> import mfparse
    >>> with mfparse.open("model.pth") as m:
    ...     print([t.name for t in m.tensors()])
"""

from mfparse.api import ModelFile, ObjectNode, SharedRef, TensorInfo, open
from mfparse.errors import (
    CorruptFileError,
    MFParseError,
    ResourceLimitError,
    TruncatedFileError,
    UnsafeContentError,
    UnsupportedFormatError,
)
from mfparse.scan import Finding, ScanReport, scan

__version__ = "0.1.0"


def dequantize(path, name: str, threads: int | None = None):
    """The float32 values (numpy) of tensor `name` of a file written by `mfparse quantize`
    (unquantized tensors of any model file are converted to float32). See mfparse.quantize."""
    from mfparse.quantize import dequantize as _dequantize

    return _dequantize(path, name, threads)


def __getattr__(name):
    if name == "scan_many":  # mfparse.engines: imported on first use (dask only by the dask engine)
        from mfparse.engines import scan_many

        return scan_many
    raise AttributeError(f"module 'mfparse' has no attribute {name!r}")


__all__ = [
    "open",
    "scan",
    "scan_many",
    "ScanReport",
    "Finding",
    "ModelFile",
    "TensorInfo",
    "ObjectNode",
    "SharedRef",
    "MFParseError",
    "UnsupportedFormatError",
    "CorruptFileError",
    "TruncatedFileError",
    "ResourceLimitError",
    "UnsafeContentError",
    "dequantize",
    "__version__",
]
