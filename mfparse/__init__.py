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


__all__ = [
    "open",
    "scan",
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
