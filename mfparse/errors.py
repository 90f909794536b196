"""Exceptions raised by mfparse.

Every problem with an input file is an :class:`MFParseError`; the subclass says what kind of
problem it is and, where the C readers know it, ``offset`` holds the byte offset in the file.
The C core reports ``{code, byte offset, message}``; :func:`error_from_code` is the one place
that turns a code into a class.
"""

from __future__ import annotations

__all__ = [
    "MFParseError",
    "UnsupportedFormatError",
    "CorruptFileError",
    "TruncatedFileError",
    "ResourceLimitError",
    "UnsafeContentError",
]


class MFParseError(Exception):
    """Base class of every error about an input file.

    Attributes:
        offset: byte offset in the file where the problem was found, or None.
        path: the file, when known.
    """

    def __init__(self, message: str, offset: int | None = None, path: str | None = None):
        self.message = message
        self.offset = offset
        self.path = path
        super().__init__(message)

    def __str__(self) -> str:
        text = self.message
        if self.offset is not None:
            text = f"{text} (byte {self.offset})"
        if self.path:
            text = f"{self.path}: {text}"
        return text


class UnsupportedFormatError(MFParseError):
    """The file is not in a format mfparse reads, or uses a feature it does not read."""


class CorruptFileError(MFParseError):
    """The file is structurally invalid."""


class TruncatedFileError(CorruptFileError):
    """The file ends before its structure does."""


class ResourceLimitError(CorruptFileError):
    """The file declares sizes, counts or nesting beyond what its real size justifies."""


class UnsafeContentError(MFParseError):
    """The file asks for something mfparse refuses to do (e.g. run code)."""


# C error codes (csrc/mf_core.h) -> exception classes
_BY_CODE = {
    1: TruncatedFileError,
    2: CorruptFileError,
    3: UnsupportedFormatError,
    4: ResourceLimitError,
    6: UnsafeContentError,
}


def error_from_code(code: int, offset: int | None, message: str) -> Exception:
    """Map a C error record to an exception instance (MemoryError for code 5)."""
    if code == 5:
        return MemoryError(message)
    return _BY_CODE.get(code, CorruptFileError)(message, offset)
