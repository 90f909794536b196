"""mfparse: read machine-learning model files without running them.

    >>> import mfparse
    >>> with mfparse.open("model.pth") as m:
    ...     print([t.name for t in m.tensors()])
"""

from mfparse.api import ModelFile, ObjectNode, TensorInfo, open
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

__all__ = [
    "open",
    "scan",
    "ScanReport",
    "Finding",
    "ModelFile",
    "TensorInfo",
    "ObjectNode",
    "MFParseError",
    "UnsupportedFormatError",
    "CorruptFileError",
    "TruncatedFileError",
    "ResourceLimitError",
    "UnsafeContentError",
    "__version__",
]
