""".npy files and .npz archives: headers parsed in C (csrc/mf_npy.c), data are zero-copy views.

A .npy holds one array, listed under the name "array"; an .npz is a zip of `<name>.npy` members, listed under `<name>` as np.load names them. Members
stored uncompressed (np.savez) are views into the archive's bytes; deflated members
(np.savez_compressed) are listed from their first inflated bytes and decoded when read.
Every numeric dtype, Fortran order and big-endian data are handled; structured, string and
datetime dtypes read through numpy's own dtype. Object arrays are pickles: they are listed
with dtype "object" and never loaded (`mfparse scan` judges their pickles).
"""

from __future__ import annotations

import ast
import struct

from mfparse._lazy import numpy as np

from mfparse import _native, dtypes
from mfparse.records import TensorInfo
from mfparse.errors import CorruptFileError, UnsafeContentError, UnsupportedFormatError
from mfparse.formats.base import SCATTERED, Reader, access, read_at, source_view
from mfparse.formats.zip import LOCAL_GUESS

MAGIC = b"\x93NUMPY"
#: the name of the single array of a .npy file
NPY_NAME = "array"


def is_npz(names) -> bool:
    """True for zip member names that are all `*.npy` (folders aside)."""
    files = [n for n in names if not n.endswith("/")]
    return bool(files) and all(n.endswith(".npy") for n in files)


class _Array:
    """What a header says, turned into numpy terms."""

    __slots__ = ("dtype_name", "_np_dtype", "_spec", "itemsize", "byteorder", "fortran", "shape", "numel",
                 "data_offset", "descr", "is_object", "version")

    def __init__(self, row, where: str, at: int):
        version, descr, is_list, bo, kind, itemsize, dcode, fortran, shape, data_offset = row
        self.version = version
        self.fortran = fortran
        self.shape = shape
        self.data_offset = data_offset
        numel = 1
        for d in shape:
            numel *= d
        self.numel = numel
        text = descr.decode("utf-8" if version[0] >= 3 else "latin-1", "replace")
        self.descr = text
        self.byteorder = ">" if bo == ">" else "<"
        self._np_dtype = None
        self._spec = text
        if dcode and not is_list:
            # a plain numeric type string the C parser read whole ('<f4'): no numpy needed to list it
            self.dtype_name = dtypes.NAMES[dcode]
            self.itemsize = itemsize
            self.is_object = False
            return
        if is_list:
            try:
                spec = ast.literal_eval(text)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                raise CorruptFileError(f"{where}: descr list is not a literal", at) from None
            self._spec = _fields_to_str(spec)
        try:
            dt = np.dtype(self._spec)
        except (TypeError, ValueError, SyntaxError, RecursionError) as e:
            raise UnsupportedFormatError(f"{where}: dtype {text[:80]!r} is not understood ({e})", at) from None
        self._np_dtype = dt
        self.itemsize = dt.itemsize
        self.is_object = dt.hasobject
        if self.is_object:
            self.dtype_name = "object"
        elif dcode:
            self.dtype_name = dtypes.NAMES[dcode]
        else:
            self.dtype_name = dt.name if dt.names is None else "structured"

    @property
    def np_dtype(self):
        """The numpy dtype of the stored elements (built on first use)."""
        if self._np_dtype is None:
            self._np_dtype = np.dtype(self._spec)
        return self._np_dtype

    def info(self, name: str, offset, extras: dict) -> TensorInfo:
        stride = None
        if self.fortran and len(self.shape) > 1:
            acc, st = 1, []
            for d in self.shape:
                st.append(acc)
                acc *= max(d, 1)
            stride = tuple(st)
            extras["fortran_order"] = True
        if self.byteorder == ">" and self.itemsize > 1:
            extras["byteorder"] = ">"
        if self.dtype_name not in dtypes.NAMES:
            extras["descr"] = self.descr
        nbytes = 0 if self.is_object else self.numel * self.itemsize
        if self.is_object:
            extras["pickle"] = True
            offset = None
        return TensorInfo(name, self.dtype_name, self.shape, nbytes, offset, None, stride, extras)


def _fields_to_str(spec):
    """numpy writes field names as str; Python 2 files may have bytes: normalise for np.dtype."""
    if isinstance(spec, list):
        return [tuple(_fields_to_str(x) for x in f) if isinstance(f, tuple) else f for f in spec]
    if isinstance(spec, bytes):
        return spec.decode("latin-1")
    return spec


#: bytes of a member's .npy header fetched with its local header (numpy pads v1 headers to 64
#: bytes; a longer one is read again)
NPY_GUESS = 512


def _header_prefix_len(head: bytes) -> int:
    """Bytes up to the data of a .npy whose first 12 bytes are head (0 if unknown)."""
    if len(head) < 10 or head[:6] != MAGIC:
        return 0
    if head[6] == 1:
        return 10 + struct.unpack_from("<H", head, 8)[0]
    if len(head) >= 12:
        return 12 + struct.unpack_from("<I", head, 8)[0]
    return 0


class NpyReader(Reader):
    """A .npy file (one array, named "array") or an .npz archive (one array per member)."""

    def __init__(self, source, archive=None):
        super().__init__(source)
        self._arrays: dict[str, _Array] = {}
        self._members: dict[str, object] = {}
        self.archive = archive
        if archive is None:
            self.format = "npy"
            if source.buf is not None:
                a = _Array(_native.npy_parse(source.buf), "npy", 0)
            else:  # a remote file: the header only (in the head fetched when it was opened)
                n = _header_prefix_len(bytes(read_at(source, 0, 12)))
                a = _Array(_native.npy_parse(read_at(source, 0, n or source.size)), "npy", 0)
            self._add(NPY_NAME, a, source.size, a.data_offset, {})
        else:
            self.format = "npz"
            # a local map: each member's .npy header is a page of its own when members are large
            with access(source, source.size // max(len(archive.members), 1) >= SCATTERED):
                self._npz_members(source, archive)

    def _npz_members(self, source, archive) -> None:
        heads = self._remote_heads(archive) if archive.lazy else {}
        ends = archive.member_ends()
        for mname, m in archive.members.items():
            if mname.endswith("/"):
                continue
            end = ends[archive.index(mname)]
            name = mname[:-4] if mname.endswith(".npy") else mname
            if m.method == 0 and archive.lazy:
                m = archive._refresh(m)
                data = heads.get(mname)
                if data is None:
                    data = archive.read(m, max_size=12)
                    data = read_at(source, m.data_offset, _header_prefix_len(bytes(data)) or m.size)
                if m.data_offset + m.comp_size > end:
                    _overlap(mname, m)
                a = _Array(_native.npy_parse(data, m.data_offset), f"npz member {mname!r}", m.data_offset)
                self._add(name, a, m.data_offset + m.size, a.data_offset, {"zip_member": mname})
            elif m.method == 0:
                if m.data_offset + m.comp_size > end:
                    _overlap(mname, m)
                data = archive.read(m)
                a = _Array(_native.npy_parse(data, m.data_offset), f"npz member {mname!r}", m.data_offset)
                self._add(name, a, m.data_offset + m.size, a.data_offset, {"zip_member": mname})
            else:
                head = bytes(archive.read(m, max_size=12))
                n = _header_prefix_len(head)
                if n == 0 or n > m.size:
                    raise CorruptFileError(f"npz member {mname!r} is not a .npy array", m.local_offset)
                data = archive.read(m, max_size=n)
                if archive.lazy:
                    m = archive._refresh(m)
                if m.data_offset + m.comp_size > end:
                    _overlap(mname, m)
                a = _Array(_native.npy_parse(data, 0), f"npz member {mname!r}", m.data_offset)
                method = {8: "deflate", 12: "bzip2", 14: "lzma"}.get(m.method, m.method)
                extras = {"zip_member": mname, "compression": method}
                self._members[name] = m
                self._add(name, a, m.size, None, extras)

    @staticmethod
    def _remote_heads(archive) -> dict:
        """For a remote .npz: every stored member's local header and .npy header, in one round
        trip ({member: the .npy header's bytes}; a header longer than guessed is read again)."""
        stored = [m for name, m in archive.members.items() if m.method == 0 and not name.endswith("/")]
        got = archive._resolve([(m, LOCAL_GUESS + NPY_GUESS) for m in stored])
        out = {}
        for m in stored:
            m = archive._refresh(m)
            raw = got.get(m.name, b"")
            at = m.data_offset - m.local_offset
            head = raw[at:at + min(m.size, NPY_GUESS)]
            n = _header_prefix_len(bytes(head[:12]))
            if n and n <= len(head):
                out[m.name] = head[:n]
        return out

    def _add(self, name: str, a: _Array, end: int, offset, extras: dict) -> None:
        info = a.info(name, offset, extras)
        # the data must fit in the file (stored) or in the member (compressed; offsets in it)
        if not a.is_object and a.data_offset + info.nbytes > end:
            raise CorruptFileError(
                f"{self.format} array {name!r} ({a.dtype_name} {list(a.shape)}, {info.nbytes} bytes) runs past the "
                f"end of its data ({max(0, end - a.data_offset)} bytes)", offset)
        if a.is_object and offset is not None:
            info.extras["pickle_offset"] = a.data_offset
        self._arrays[name] = a
        self._tensors.append(info)

    def read(self, info: TensorInfo) -> np.ndarray:
        a = self._arrays[info.name]
        if a.is_object:
            raise UnsafeContentError(
                f"array {info.name!r} has dtype object: its data is a pickle, which mfparse never loads "
                "(run `mfparse scan` to judge it)", a.data_offset if info.name not in self._members else None)
        if info.name in self._members:
            m = self._members[info.name]
            data = bytes(self.archive.read(m))
            return _from_bytes(data, a, a.data_offset)
        if info.dtype in dtypes.NAMES and info.dtype != "unknown":
            return source_view(self.source, info, a.byteorder)
        if self.source.buf is None:
            n = a.numel * a.np_dtype.itemsize
            return _from_bytes(read_at(self.source, a.data_offset, n), a, 0)
        return _from_bytes(self.source.buf, a, a.data_offset)

    def metadata(self) -> dict:
        if self.format == "npy":
            a = self._arrays[NPY_NAME]
            return {"format_version": f"{a.version[0]}.{a.version[1]}"}
        return {}


def _from_bytes(buf, a: _Array, offset: int) -> np.ndarray:
    dt = a.np_dtype
    if len(buf) < offset + a.numel * dt.itemsize:
        raise CorruptFileError("array data runs past the end of its bytes", offset)
    arr = np.frombuffer(buf, dtype=dt, count=a.numel, offset=offset)
    if a.fortran and len(a.shape) > 1:
        return arr.reshape(a.shape[::-1]).transpose()
    return arr.reshape(a.shape)


def open_npy(source):
    return NpyReader(source)


def _overlap(mname: str, m) -> None:
    raise CorruptFileError(f"npz member {mname!r} runs into the next member or the central directory (overlapping "
                           "entries, a zip-bomb technique: zipfile, and so np.load, refuses it)", m.local_offset)


def open_npz(source, archive=None):
    if archive is None:
        from mfparse.formats.zip import ZipArchive

        archive = ZipArchive(source)
    return NpyReader(source, archive)


# ==========================================================================================
# The header as numpy.load reads it (mfparse scan): is the array an object array?
# ==========================================================================================

#: the largest header judged (numpy.load(allow_pickle=True) reads headers of any size; a larger
#: one is an error, never safe)
MAX_JUDGED_HEADER = 1 << 20
_NPY_VERSIONS = {(1, 0): (2, "latin1"), (2, 0): (4, "latin1"), (3, 0): (4, "utf8")}
# a header exactly as numpy writes one for a plain (non-object) type: judged without parsing
_PLAIN_HEADER = None
# tokens of a dtype string that make an object dtype in some numpy version: 'O', 'O8' (and
# 'O4'), 'object', 'object_', 'object0'/'Object0' (numpy 1.x), 'T' (numpy 2 StringDType, whose
# data np.load also unpickles)
_OBJECT_TOKEN = None


class NpyHeader:
    """A .npy header as numpy.load reads it.

    Attributes:
        version: (major, minor).
        descr: the descr literal; shape, fortran_order: as numpy reads them.
        is_object: numpy.load would unpickle the data (numpy.dtype(descr).hasobject in this
            numpy, or an object type in the descr that another numpy version reads as one).
        data_offset: where the data (the pickle of an object array) starts.
        how: "plain" (numpy's own layout, judged by pattern) or "literal" (parsed as numpy does).
    """

    __slots__ = ("version", "descr", "shape", "fortran_order", "is_object", "data_offset", "how", "text")

    def hidden_object(self) -> str | None:
        """For an object array: how its header hides the object type from a reader of the raw
        text (escapes, string prefixes, concatenated literals, no plain 'O' / '|O' / 'O8'),
        or None when numpy could have written it so."""
        import io
        import re
        import tokenize

        if not self.is_object or self.how != "literal":
            return None
        strings, adjacent = [], False
        prev = None
        try:
            for tok in tokenize.generate_tokens(io.StringIO(self.text).readline):
                if tok.type == tokenize.STRING:
                    strings.append(tok.string)
                    adjacent = adjacent or prev == tokenize.STRING
                if tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT,
                                    tokenize.DEDENT):
                    prev = tok.type
        except (tokenize.TokenError, SyntaxError):
            return "a header the tokenizer rejects"
        if any("\\" in t for t in strings):
            return "escape sequences in a string"
        if any(t[0] not in "'\"" for t in strings):
            return "string prefixes"
        if adjacent:
            return "concatenated string literals"
        if not any(re.fullmatch(r"([\'\"])[<>|=]?O[48]?\1", t) for t in strings):
            return "no plain 'O' type string"
        return None


def _plain_header():
    global _PLAIN_HEADER, _OBJECT_TOKEN
    if _PLAIN_HEADER is None:
        import re

        # the type strings numpy writes for non-object dtypes: '<f4', '|b1', '<U10', '|V8',
        # '<M8[ns]'; no quotes, escapes or other keys can hide in this pattern
        typestr = r"[<>|=]?(?:[biufcSUVa]\d+|[?bBhHiIlLqQpPefdgFDG]|[Mm]8(?:\[\d*[A-Za-z]+\])?)"
        dim = r"(?:0|[1-9][0-9]*)"
        _PLAIN_HEADER = re.compile(
            r"\{'descr': '(?P<descr>" + typestr + r")', 'fortran_order': (?P<fortran>True|False), "
            r"'shape': \((?P<shape>(?:" + dim + r",(?: " + dim + r",)*(?: " + dim + r")?)?)\), \} *\n?\Z")
        _OBJECT_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
    return _PLAIN_HEADER


def _refused(why: str, at: int):
    return CorruptFileError(f"npy header: numpy.load refuses it ({why})", at)


def _typestr_object(s: str) -> bool:
    """Could numpy read this dtype string (comma-separated fields and subarray prefixes
    included) as one holding objects?"""
    for tok in _OBJECT_TOKEN.findall(s):
        low = tok.lower()
        if low.startswith("object") or (tok[0] in "OT" and tok[1:].isdigit()) or tok in ("O", "T"):
            return True
    return False


def _maybe_dtype_object(x, depth: int) -> bool:
    """A literal numpy.dtype() may read as a dtype ((base, new) forms, dict specs): any object
    type string in it counts (conservative; numpy refuses object unions anyway)."""
    if depth > 64:
        raise RecursionError
    if isinstance(x, str):
        return _typestr_object(x)
    if isinstance(x, dict):
        return any(_maybe_dtype_object(k, depth + 1) or _maybe_dtype_object(v, depth + 1) for k, v in x.items())
    if isinstance(x, (list, tuple, set, frozenset)):
        return any(_maybe_dtype_object(v, depth + 1) for v in x)
    return False


def _descr_object(d, depth: int) -> bool:
    """Walk a descr as numpy.lib.format.descr_to_dtype does (a str is numpy.dtype(str); a
    tuple is (descr, shape); anything else is iterated as fields (name, descr[, shape]), which
    for a dict means its keys and for a 2-character string its characters)."""
    if depth > 64:
        raise RecursionError
    if isinstance(d, str):
        return _typestr_object(d)
    if isinstance(d, tuple):
        if not d:
            raise IndexError("empty tuple")
        return _descr_object(d[0], depth + 1) or (len(d) > 1 and _maybe_dtype_object(d[1], depth + 1))
    obj = False
    for field in d:  # TypeError for numbers, None, ... (numpy refuses those too)
        n = len(field)
        parts = list(field)
        if n == 2:
            obj = _descr_object(parts[1], depth + 1) or obj
        elif n == 3:
            obj = _descr_object(parts[1], depth + 1) or _maybe_dtype_object(parts[2], depth + 1) or obj
        else:
            raise ValueError(f"a field of {n} items")
    return obj


def descr_to_dtype(descr):
    """numpy's own descr_to_dtype (numpy.lib.format): the dtype numpy.load builds."""
    from numpy.lib.format import descr_to_dtype as d2d

    return d2d(descr)


def _filter_python2(text: str) -> str:
    """Python 2 long literals ('3L'): numpy drops an 'L' name token that follows a number
    (numpy.lib.format._filter_header) before parsing a version 1.0/2.0 header again."""
    import io
    import tokenize

    out = []
    last_number = False
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if last_number and tok[0] == tokenize.NAME and tok[1] == "L":
            continue
        out.append(tok)
        last_number = tok[0] == tokenize.NUMBER
    return tokenize.untokenize(out)


def read_header(buf, base: int = 0) -> NpyHeader:
    """Read a .npy header the way numpy.load does and decide whether the data is a pickle.

    numpy evaluates the header with ast.literal_eval (literals only: strings with any escapes,
    concatenated string literals, tuples, lists, dicts, sets, numbers) and builds the dtype with
    numpy.lib.format.descr_to_dtype. This does the same (literal_eval, never eval), bounded to
    MAX_JUDGED_HEADER bytes, then decides object-ness twice: with this numpy's descr_to_dtype
    (exact for this version) and by walking the literal for any type string that some numpy
    version reads as an object (so 'O', '|O', 'O8', 'object', 'object_', 'object0', 'T',
    'i4,O', '(2,)O', subarray tuples, structured fields at any depth, dict descrs).

    Raises CorruptFileError when numpy would refuse the header (np.load fails before the
    data, so nothing is unpickled, but the file cannot be called safe either) and
    ResourceLimitError when it is too large to judge.
    """
    n = len(buf)
    if n < 10 or bytes(buf[:6]) != MAGIC:
        raise CorruptFileError("not a .npy file (magic or length)", base)
    version = (buf[6], buf[7])
    if version not in _NPY_VERSIONS:
        raise _refused(f"format version {version[0]}.{version[1]}", base + 6)
    width, encoding = _NPY_VERSIONS[version]
    if n < 8 + width:
        raise CorruptFileError("npy header length truncated", base + 8)
    hlen = int.from_bytes(bytes(buf[8:8 + width]), "little")
    start = 8 + width
    if hlen > MAX_JUDGED_HEADER:
        from mfparse.errors import ResourceLimitError

        raise ResourceLimitError(f"npy header of {hlen} bytes is larger than the {MAX_JUDGED_HEADER} judged", base + 8)
    if start + hlen > n:
        raise CorruptFileError(f"npy header of {hlen} bytes runs past the end of the data", base + 8)
    raw = bytes(buf[start:start + hlen])
    h = NpyHeader()
    h.version = version
    h.data_offset = start + hlen
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        raise _refused(f"not {encoding}: {e.reason}", base + start + e.start) from None
    m = _plain_header().match(text)
    if m is not None:
        h.descr = m.group("descr")
        h.is_object = False
        h.shape = tuple(int(x) for x in m.group("shape").replace(",", " ").split())
        h.fortran_order = m.group("fortran") == "True"
        h.how = "plain"
        h.text = text
        return h
    h.how = "literal"
    h.text = text
    at = base + start
    try:
        try:
            d = ast.literal_eval(text)
        except SyntaxError:
            if version > (2, 0):
                raise
            d = ast.literal_eval(_filter_python2(text))
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError, UnicodeError) as e:
        raise _refused(f"not a Python literal: {type(e).__name__}", at) from None
    except Exception as e:  # tokenize.TokenError and the like: numpy.load fails the same way
        raise _refused(f"not a Python literal: {type(e).__name__}", at) from None
    if not isinstance(d, dict):
        raise _refused(f"the header is a {type(d).__name__}, not a dict", at)
    if set(d) != {"descr", "fortran_order", "shape"} or len(d) != 3:
        raise _refused(f"keys {sorted(map(repr, d))} are not descr, fortran_order and shape", at)
    shape = d["shape"]
    if not isinstance(shape, tuple) or not all(isinstance(x, int) for x in shape):
        raise _refused("shape is not a tuple of integers", at)
    if not isinstance(d["fortran_order"], bool):
        raise _refused("fortran_order is not a bool", at)
    h.descr, h.shape, h.fortran_order = d["descr"], shape, d["fortran_order"]
    try:
        walked = _descr_object(h.descr, 0)
    except (TypeError, ValueError, IndexError, RecursionError):
        walked = False  # a shape numpy's walk refuses too (decided below)
    from numpy.lib.format import descr_to_dtype

    try:
        exact = bool(descr_to_dtype(h.descr).hasobject)
    except Exception as e:  # numpy.dtype of a literal runs no code; every failure means np.load fails
        if walked:  # ...in this numpy; another version may read it, and then it holds objects
            h.is_object = True
            return h
        raise _refused(f"descr {str(h.descr)[:80]!r} is not a dtype: {type(e).__name__}: {e}", at) from None
    h.is_object = exact or walked
    return h
