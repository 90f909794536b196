"""Exceptions raised by mfparse.

Every problem with an input file is an :class:`MFParseError`; the subclass says what kind of
problem it is and, where the C readers know it, ``offset`` holds the byte offset in the file.
The C core reports ``{code, byte offset, message}``; :data:`C_ERRORS` is the one table that
says which class each code raises (mfparse._native applies it).
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


class NeedMoreError(Exception):
    """Internal, never seen by users: a parse over a sparse window (a remote file fetched by
    ranges) reached bytes not fetched yet. `mfparse.formats.base.parse_windows` catches it,
    fetches what the window recorded and parses again. Not an MFParseError, so that no
    handler of bad input swallows it."""

    def __init__(self, message: str = "", offset: int | None = None, path: str | None = None):
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.path = path

    __str__ = MFParseError.__str__


#: The exception each C error raises, keyed on the error code's name: csrc/mf_core.h defines
#: MF_ERR_<NAME>, mfparse._native exports its value as ERR_<NAME> and maps every C error record
#: through this table (MemoryError takes no offset; an unknown code is a CorruptFileError).
C_ERRORS = {
    "ERR_TRUNCATED": TruncatedFileError,
    "ERR_CORRUPT": CorruptFileError,
    "ERR_UNSUPPORTED": UnsupportedFormatError,
    "ERR_LIMIT": ResourceLimitError,
    "ERR_NOMEM": MemoryError,
    "ERR_UNSAFE": UnsafeContentError,
    "ERR_NEED": NeedMoreError,
}

