"""Finding every pickle in a file, whatever wraps it: containers are recognised by their bytes,
opened, and their members scanned by content (a member's name never decides that it is data).

Hook registry: SNIFFERS (ordered (kind, test) pairs) name what a buffer is; CHECKERS map each
kind to the function that scans it. A format reader built elsewhere plugs in by adding a sniffer
and/or replacing a checker (`register_checker`), e.g. the HDF5 reader for .h5 model configs or
the protobuf reader for SavedModel ops. A checker is called as
``checker(ctx, buf, where, name=..., designated=..., torchscript=...)`` and returns True when it
interpreted the bytes (so the caller verifies the member's CRC), False otherwise.
"""

from __future__ import annotations

import operator
import struct
import zlib

from mfparse import _native, dtypes
from mfparse._lazy import LazyModule, LazyPattern
from mfparse.errors import MFParseError, ResourceLimitError
from mfparse.scan import keras as keras_check
from mfparse.scan import nonmodel
from mfparse.scan.pickles import OPCODES, check_tensors, scan_stream, storage_itembytes, walk_torch
from mfparse.scan.report import Context, Where

# decompressors imported when a stream needs them (most files are not bz2 or xz)
bz2 = LazyModule("bz2")
re = LazyModule("re")  # and the patterns: compiled on first use (mfparse._lazy.LazyPattern)
lzma = LazyModule("lzma")

INFLATE_FLOOR = 64 << 20   # a stream may always inflate to this much...
INFLATE_RATIO = 1024       # ...plus this many times its compressed size (more is a bomb)
INFLATE_TOTAL_FLOOR = 4 << 30
PROBE_PREFIX = 1 << 16     # bytes of a compressed non-pickle member inflated to decide what it is

PICKLE_NAMES = (".pkl", ".pickle", ".debug_pkl", ".joblib", ".pck", ".pcl")


class _Buffer:
    """What ZipArchive needs from a source: .buf and .size."""

    def __init__(self, buf):
        self.buf = buf
        self.size = len(buf)


# ==========================================================================================
# Sniffing
# ==========================================================================================

def _head(buf, n=16) -> bytes:
    return bytes(buf[:n])


def _eocd_ok(buf) -> bool:
    size = len(buf)
    try:
        _native.zip_eocd(buf[size - min(size, _native.ZIP_TAIL_MAX):], size)
        return True
    except MFParseError:
        return False


def _is_zip(head, buf, name, top) -> bool:
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return True
    if top and len(buf) >= 22:  # a zip appended to something else (a polyglot)
        return b"PK\x05\x06" in bytes(buf[max(0, len(buf) - _native.ZIP_TAIL_MAX):]) and _eocd_ok(buf)
    return False


def _is_hdf5(head, buf, name, top) -> bool:
    sig = b"\x89HDF\r\n\x1a\n"
    if head[:8] == sig:
        return True
    return top and any(bytes(buf[o:o + 8]) == sig for o in (512, 1024, 2048) if len(buf) >= o + 8)


def _is_safetensors(head, buf, name, top) -> bool:
    if len(head) < 9 or head[8] != 0x7B:  # the JSON header starts right after its 8-byte length
        return False
    from mfparse.formats import safetensors

    return safetensors.probe(head[:9], len(buf))


def _is_protobuf(head, buf, name, top) -> bool:
    lname = (name or "").lower()
    return lname.endswith((".onnx", ".pb", ".ort")) and len(head) > 0 and head[0] not in OPCODES


# (kind, test(head, buf, name, top), the first bytes it can match or None for any), in order.
# head is the buffer's first 16 bytes; top is True for the file itself.
SNIFFERS = [
    ("zip", _is_zip, None),
    ("gzip", lambda h, b, n, t: h[:3] == b"\x1f\x8b\x08", b"\x1f"),
    ("bz2", lambda h, b, n, t: h[:3] == b"BZh" and h[4:10] in (b"1AY&SY", b"\x17rE8P\x90"), b"B"),
    ("xz", lambda h, b, n, t: h[:6] == b"\xfd7zXZ\x00", b"\xfd"),
    ("lzma", lambda h, b, n, t: h[:2] == b"\x5d\x00" and len(h) >= 13, b"\x5d"),
    ("lz4", lambda h, b, n, t: h[:4] == b"\x04\x22\x4d\x18", b"\x04"),
    ("zstd", lambda h, b, n, t: h[:4] == b"\x28\xb5\x2f\xfd", b"\x28"),
    ("7z", lambda h, b, n, t: h[:6] == b"7z\xbc\xaf\x27\x1c", b"7"),
    ("rar", lambda h, b, n, t: h[:6] == b"Rar!\x1a\x07", b"R"),
    ("npy", lambda h, b, n, t: h[:6] == b"\x93NUMPY", b"\x93"),
    ("tar", lambda h, b, n, t: _is_tar(h, b, n, t), None),
    ("hdf5", _is_hdf5, None),
    ("gguf", lambda h, b, n, t: h[:4] == b"GGUF", b"G"),
    ("tflite", lambda h, b, n, t: h[4:8] == b"TFL3", None),
    ("safetensors", _is_safetensors, None),
    ("zlib", lambda h, b, n, t: len(h) >= 2 and h[0] == 0x78 and (h[0] * 256 + h[1]) % 31 == 0, b"\x78"),
    ("protobuf", _is_protobuf, None),
]
_INDEX: list = []


def _index():
    """first byte -> the sniffers that can match it (in SNIFFERS order); rebuilt by
    register_checker."""
    if not _INDEX:
        for byte in range(256):
            _INDEX.append([(k, t) for k, t, first in SNIFFERS if first is None or byte in first])
    return _INDEX


def sniff(buf, name=None, top=False) -> str | None:
    """The container or format kind of a buffer, or None (then it is scanned as a pickle)."""
    if len(buf) == 0:
        return None
    head = bytes(buf[:16])
    for kind, test in _index()[head[0]]:
        if test(head, buf, name, top):
            return kind
    return None


# first bytes of the containers a zip/tar member is opened as (the rest hold no pickle)
_MEMBER_MAGIC_FIRST = set(b"P\x1fB\xfd\x5d\x04\x28" + b"7R\x93\x78")  # + first bytes of registered formats


# ==========================================================================================
# Dispatch
# ==========================================================================================

def scan_buffer(ctx: Context, buf, where: Where, *, designated, name=None, torchscript=False, top=False) -> bool:
    """Scan one buffer: a container is opened, anything else is interpreted as pickles.

    designated: True/"auto" when some loader would unpickle these bytes (a top-level file, a
    member named like a pickle, a decompressed stream); False for an arbitrary member, which is
    judged only when its bytes hold a pickle import. Returns True when the bytes were
    interpreted (a container, a judged pickle, a checked config).
    """
    if where.depth > Context.MAX_DEPTH:
        ctx.finding("suspicious", f"containers nested more than {Context.MAX_DEPTH} deep", where, kind="resource")
        return False
    kind = sniff(buf, name, top)
    if top:
        kind = check_polyglot(ctx, buf, where, name, kind)
    if kind is None:
        return check_pickle(ctx, buf, where, name=name, designated=designated, torchscript=torchscript, top=top)
    return run_checker(kind, ctx, buf, where, name=name, designated=designated, torchscript=torchscript)


def run_checker(kind: str, ctx, buf, where, **kw) -> bool:
    """The checker of `kind`, then what the format leaves unaccounted for after its data
    (check_trailing: whatever checker is registered for the kind)."""
    ok = CHECKERS[kind](ctx, buf, where, **kw)
    if kind in _DATA_END:
        check_trailing(ctx, buf, where, kind)
    return ok


#: bumped by register_checker: the fast path (mfparse/scan/quick.py) mirrors the stock registry
#: only, and hands every file to scan_buffer once anything was plugged in
REGISTRY_VERSION = 0


def register_checker(kind: str, checker, sniffer=None, before: str | None = None, first_bytes=None) -> None:
    """Plug a checker in (replacing the one for `kind`), optionally with a sniffer
    ``sniffer(head, buf, name, top) -> bool`` placed before the sniffer of `before` (default: at
    the end, before the pickle fallback); first_bytes (bytes) narrows the bytes it can match."""
    global REGISTRY_VERSION
    REGISTRY_VERSION += 1
    CHECKERS[kind] = checker
    if sniffer is not None:
        SNIFFERS[:] = [e for e in SNIFFERS if e[0] != kind]
        idx = next((i for i, e in enumerate(SNIFFERS) if e[0] == before), len(SNIFFERS))
        SNIFFERS.insert(idx, (kind, sniffer, first_bytes))
        _INDEX.clear()
        if first_bytes:
            _MEMBER_MAGIC_FIRST.update(first_bytes)  # zip/tar members starting so are looked at


def check_pickle(ctx, buf, where, *, name=None, designated=False, torchscript=False, top=False, **_) -> bool:
    mode = designated
    res = scan_stream(ctx, buf, where, designated=("auto" if mode else False), torchscript=torchscript)
    if (name or "").lower().endswith((".onnx", ".pb", ".ort")) and len(buf) and buf[0] in OPCODES:
        # a protobuf's first tag byte can be a pickle opcode ('2' = doc_string, 'B' = opset_import)
        return _pickle_or_protobuf(ctx, buf, where, name, res, designated)
    if res.judged:
        return True
    if not mode:
        return False
    parse = res.parse
    few = parse is None or parse.opcodes <= 1
    if top and nonmodel.check(ctx, buf, where, name, few):
        # text, an image, a sentencepiece model: a note (mfparse/scan/nonmodel.py); text is also
        # judged for what a loader would run from it (chat templates, Keras configs, MLmodel)
        if nonmodel.is_text(buf):
            CHECKERS["text"](ctx, buf, where, name=name)
        return True
    if top and few:
        ctx.error(f"unrecognised format: not a pickle ({res.error}) and not a container mfparse reads "
                  f"(first bytes {_head(buf, 8).hex(' ')})", where)
        return False
    ctx.error(f"expected a pickle, but it could not be read as one: {res.error}", where)
    return False


def prefetch(ctx, where: Where, start: int, length: int) -> None:
    """Ask the kernel to read buf[start:start + length] ahead, for ranges the scan reads whole
    (members it inflates or unpickles): the file is mapped for random access (mfparse.scan), so
    without this they would be read one page per fault."""
    mm = getattr(ctx, "mapped", None)
    if mm is None or where.base is None or length < (1 << 16):
        return
    import mmap

    off = where.base + start
    lo = off - off % mmap.PAGESIZE
    try:
        mm.madvise(mmap.MADV_WILLNEED, lo, min(length + off - lo, len(mm) - lo))
    except (AttributeError, OSError, ValueError):
        pass


def _opens_as(buf, fmt: str) -> bool:
    import mfparse

    try:
        with mfparse.open(buf, format=fmt):
            return True
    except (MFParseError, ValueError, TypeError):
        return False


def _pickle_or_protobuf(ctx, buf, where, name, res, designated) -> bool:
    """A file named like a protobuf model whose first byte is a pickle opcode: judged as the
    protobuf onnx.load / TensorFlow read; if it is also a complete pickle (pickle.load and
    torch.load read it), that is a polyglot, and both readings were judged."""
    fmt = "onnx" if name.lower().endswith((".onnx", ".ort")) else "tf-graphdef"
    is_proto = _opens_as(buf, fmt)
    if res.judged and res.error is None and res.roots:
        if is_proto:
            ctx.finding("suspicious", f"polyglot: the file reads as a pickle (pickle.load, torch.load) and as "
                        f"{_READERS['protobuf']}; a loader or scanner that sees one format misses what the other holds "
                        "(each was scanned)", where, offset=where.offset(0), kind="polyglot")
            CHECKERS["protobuf"](ctx, buf, where, name=name, designated=designated)
        return True
    return CHECKERS["protobuf"](ctx, buf, where, name=name, designated=designated)


def _complete_pickle(buf) -> bool:
    """Does buf start with a pickle that reads to its STOP (what pickle.load would run)?"""
    from mfparse.scan.pickles import MAX_STACK

    if not len(buf) or buf[0] not in OPCODES:
        return False
    parse = _native.PickleParse(len(buf), MAX_STACK)
    parse.load(buf, 0, 0, raise_errors=False)
    return parse.error is None


# ==========================================================================================
# Decompression (bounded)
# ==========================================================================================

def _inflate_limit(ctx: Context, compressed: int) -> int:
    total = INFLATE_TOTAL_FLOOR + 64 * ctx.size
    return max(0, min(INFLATE_FLOOR + INFLATE_RATIO * compressed, total - ctx.inflated))


class DamagedStream(ValueError):
    """A compressed stream that fails part-way (bad data, a bad check, a truncation). partial:
    what decompressed before the failure (a loader that streams, such as pickle.load on
    gzip.open or on zipfile's member reader, has already acted on it); at: the compressed
    offset of the failing piece."""

    def __init__(self, message: str, partial: bytes, at: int):
        super().__init__(message)
        self.partial = partial
        self.at = at


def _decoder(kind: str):
    if kind == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if kind == "zlib":
        return zlib.decompressobj()
    if kind == "deflate":
        return zlib.decompressobj(-zlib.MAX_WBITS)
    if kind == "bz2":
        return bz2.BZ2Decompressor()
    if kind in ("xz", "lzma"):
        return lzma.LZMADecompressor(lzma.FORMAT_AUTO)
    raise ValueError(kind)


_STEP = 1 << 16        # compressed bytes fed at a time
_REFEED_MAX = 64 << 20  # bz2/xz/lzma: after a failure this far in at most, decoded again finely


def _decompress(kind: str, data, limit: int):
    """(bytes, exceeded) for a whole stream (concatenated members/streams included), producing
    at most limit bytes. Raises DamagedStream (with what decompressed before the damage) on bad
    or truncated data; MissingPackage when the decoder is not installed."""
    if kind == "zip-lzma":
        return _zip_lzma(data, limit)
    if kind == "zstd":
        return _zstd(data, limit)
    try:
        return _feed(kind, data, limit, _STEP)
    except DamagedStream as e:
        if kind in ("gzip", "zlib", "deflate") or e.at > _REFEED_MAX or len(e.partial) >= limit:
            raise
        try:  # no decoder copy for these: decode again, the failing piece byte by byte
            _feed(kind, data[:e.at + _STEP], limit, _STEP, fine_from=e.at)
        except DamagedStream as fine:
            if len(fine.partial) > len(e.partial):
                raise DamagedStream(str(e), fine.partial, fine.at) from None
        raise


def _feed(kind: str, data, limit: int, step: int, fine_from: int | None = None):
    out = bytearray()
    n = len(data)
    pos = 0
    d = _decoder(kind)
    copyable = kind in ("gzip", "zlib", "deflate")
    while True:
        if fine_from is not None and pos >= fine_from:
            step = 1
        elif fine_from is not None:
            step = min(step, fine_from - pos)
        chunk = bytes(data[pos:pos + step])
        if not chunk:
            if kind == "deflate":  # a zip member's deflate data may end without a final block
                return bytes(out), False
            raise DamagedStream(f"{kind} stream is truncated", bytes(out), n)
        saved = d.copy() if copyable else None
        try:
            got = d.decompress(chunk, limit - len(out) + 1)
        except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError) as e:
            if saved is not None:  # feed the failing piece byte by byte: keep what came before the damage
                for i in range(len(chunk)):
                    try:
                        out += saved.decompress(chunk[i:i + 1], limit - len(out) + 1)
                    except zlib.error:
                        pos += i
                        break
                    if len(out) > limit:
                        break
            raise DamagedStream(f"{kind} stream is damaged: {e}", bytes(out[:limit]), pos) from None
        out += got
        if len(out) > limit:
            return bytes(out[:limit]), True
        if not d.eof:
            if getattr(d, "unconsumed_tail", b"") or not getattr(d, "needs_input", True):
                return bytes(out), True  # stopped at the output limit
            pos += len(chunk)
            continue
        pos += len(chunk) - len(d.unused_data)
        rest = data[pos:]
        if kind in ("zlib", "deflate") or not rest or not bytes(rest[:1]).strip(b"\x00"):
            return bytes(out), False
        d = _decoder(kind)  # a concatenated member / stream


def _zip_lzma(data, limit: int):
    """A zip member of method 14 as zipfile reads it: a 2-byte version, a 2-byte properties
    length, the 5 LZMA1 properties (lc/lp/pb byte, dictionary size), then a raw LZMA1 stream.
    The dictionary is capped at the output allowed (no match can reach further back)."""
    head = bytes(data[:4])
    if len(head) < 4:
        raise ValueError("lzma member header truncated")
    psize = int.from_bytes(head[2:4], "little")
    props = bytes(data[4:4 + psize])
    if psize != 5 or len(props) != 5 or props[0] >= 9 * 5 * 5:
        raise ValueError(f"lzma member properties of {psize} bytes are invalid")
    lc, lp, pb = props[0] % 9, props[0] // 9 % 5, props[0] // 45
    dict_size = max(4096, min(int.from_bytes(props[1:5], "little"), limit + 1))
    dec = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA1, "lc": lc, "lp": lp, "pb": pb,
                                                           "dict_size": dict_size}])
    out = dec.decompress(bytes(data[4 + psize:]), limit + 1)
    return (out[:limit], True) if len(out) > limit else (out, False)


class MissingPackage(ValueError):
    """A decoder lives in an optional package that is not installed."""


def _zstd(data, limit: int):
    """Zstandard frames (every frame), through the zstandard package when installed."""
    try:
        import zstandard
    except ImportError:
        raise MissingPackage("zstd data needs the 'zstandard' package (pip install zstandard), which is not "
                             "installed") from None
    import io

    try:
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(bytes(data)), read_across_frames=True)
        out = reader.read(limit + 1)
    except zstandard.ZstdError as e:
        raise ValueError(f"zstd: {e}") from None
    return (out[:limit], True) if len(out) > limit else (out, False)


def _lz4_length(src, i: int, what: str) -> tuple[int, int]:
    """An LZ4 length extension at src[i]: bytes added up to and including the first one below
    255. Returns (the sum, the position after it)."""
    total = 0
    while True:
        if i >= len(src):
            raise ValueError(f"lz4 {what} length runs past the block")
        b = src[i]
        i += 1
        total += b
        if b != 255:
            return total, i


def _lz4_block(src, out: bytearray, limit: int) -> None:
    """Decode one LZ4 block (the documented block format) into out."""
    i, n = 0, len(src)
    while i < n:
        token = src[i]
        i += 1
        lit = token >> 4
        if lit == 15:
            extra, i = _lz4_length(src, i, "literal")
            lit += extra
        if i + lit > n:
            raise ValueError("lz4 literals run past the block")
        out += src[i:i + lit]
        i += lit
        if len(out) > limit:
            raise OverflowError
        if i >= n:
            break  # the last sequence has literals only
        if i + 2 > n:
            raise ValueError("lz4 match offset runs past the block")
        off = src[i] | (src[i + 1] << 8)
        i += 2
        mlen = (token & 15) + 4
        if (token & 15) == 15:
            extra, i = _lz4_length(src, i, "match")
            mlen += extra
        if off == 0 or off > len(out):
            raise ValueError("lz4 match offset points before the output")
        if len(out) + mlen > limit:
            raise OverflowError
        start = len(out) - off
        if off >= mlen:
            out += out[start:start + mlen]
        else:
            for k in range(mlen):
                out.append(out[start + k])


def _lz4_frames(data, limit: int):
    """(bytes, exceeded) of LZ4 frames (the frame format), using the lz4 package when installed."""
    try:
        import lz4.frame as lz4f  # type: ignore
    except ImportError:
        lz4f = None
    if lz4f is not None:
        d = lz4f.LZ4FrameDecompressor()
        out = d.decompress(bytes(data), max_length=limit + 1)
        return (out[:limit], True) if len(out) > limit else (out, False)
    src = bytes(data)
    out = bytearray()
    i, n = 0, len(src)
    try:
        while i < n:
            if n - i < 4:
                raise ValueError("lz4 frame truncated")
            magic = int.from_bytes(src[i:i + 4], "little")
            if 0x184D2A50 <= magic <= 0x184D2A5F:  # skippable frame
                size = int.from_bytes(src[i + 4:i + 8], "little")
                i += 8 + size
                continue
            if magic != 0x184D2204:
                if out and not src[i:].strip(b"\x00"):
                    break
                raise ValueError("lz4 frame magic missing")
            if n - i < 7:
                raise ValueError("lz4 frame header truncated")
            flg = src[i + 4]
            if flg >> 6 != 1:
                raise ValueError("lz4 frame version is not 01")
            j = i + 6 + (8 if flg & 0x08 else 0) + (4 if flg & 0x01 else 0) + 1
            while True:
                if j + 4 > n:
                    raise ValueError("lz4 block size truncated")
                bsize = int.from_bytes(src[j:j + 4], "little")
                j += 4
                if bsize == 0:
                    break
                raw = bsize & 0x80000000
                bsize &= 0x7FFFFFFF
                if j + bsize > n:
                    raise ValueError("lz4 block runs past the data")
                if raw:
                    out += src[j:j + bsize]
                    if len(out) > limit:
                        raise OverflowError
                else:
                    _lz4_block(src[j:j + bsize], out, limit)
                j += bsize + (4 if flg & 0x10 else 0)
            i = j + (4 if flg & 0x04 else 0)
    except OverflowError:
        return bytes(out[:limit]), True
    return bytes(out), False


def check_compressed(ctx, buf, where, *, name=None, designated=False, torchscript=False, kind, **_) -> bool:
    limit = _inflate_limit(ctx, len(buf))
    prefetch(ctx, where, 0, len(buf))
    try:
        if kind == "lz4":
            data, exceeded = _lz4_frames(buf, limit)
        else:
            data, exceeded = _decompress(kind, buf, limit)
    except MissingPackage as e:
        ctx.error(f"{e}, so what it holds cannot be judged", where)
        return False
    except DamagedStream as e:
        if not e.partial:
            if kind in ("zlib", "lzma"):  # weak magic: maybe it is a pickle after all
                return check_pickle(ctx, buf, where, name=name, designated=designated, torchscript=torchscript)
            if designated:
                ctx.error(f"{kind} stream does not decompress: {e}", where)
            return False
        # damage after a payload: a streaming loader (pickle.load on gzip.open, ...) has already
        # run what came before it, so that is judged, and the damage reported
        ctx.error(f"{kind} stream is damaged after {len(e.partial)} decompressed bytes ({e}); what decompressed "
                  "before the damage was scanned", where, where.offset(e.at))
        data, exceeded = e.partial, False
    except (ValueError, OSError, EOFError, zlib.error, lzma.LZMAError) as e:
        if kind in ("zlib", "lzma"):  # weak magic: maybe it is a pickle after all
            return check_pickle(ctx, buf, where, name=name, designated=designated, torchscript=torchscript)
        if designated:
            ctx.error(f"{kind} stream does not decompress: {e}", where)
        return False
    ctx.inflated += len(data)
    inner = where.wrapped(kind)
    if exceeded:
        ctx.finding("dangerous", f"{kind} stream expands beyond {limit} bytes ({len(buf)} compressed): a "
                    "decompression bomb; only the first bytes were scanned", where, kind="resource")
    scan_buffer(ctx, memoryview(data), inner, designated="auto" if designated else False, name=_strip_ext(name),
                torchscript=torchscript)
    return True


def _strip_ext(name):
    if not name:
        return name
    for ext in (".gz", ".bz2", ".xz", ".lzma", ".lz4", ".z", ".zlib"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def check_7z(ctx, buf, where, *, name=None, designated=False, torchscript=False, **_) -> bool:
    """A 7z archive through the py7zr package when installed (every member extracted into
    memory, bounded by the declared sizes and the inflation limits, and scanned by content);
    without py7zr an error naming it, never safe."""
    try:
        import py7zr
    except ImportError:
        ctx.error("a 7z archive: its members cannot be judged without the 'py7zr' package (pip install py7zr)",
                  where)
        return False
    import io

    try:
        with py7zr.SevenZipFile(io.BytesIO(bytes(buf)), "r") as z:
            infos = [i for i in z.list() if not i.is_directory]
            declared = sum(int(i.uncompressed or 0) for i in infos)
            limit = _inflate_limit(ctx, len(buf))
            if declared > limit:
                ctx.finding("dangerous", f"7z archive declares {declared} bytes from {len(buf)} compressed: a "
                            "decompression bomb; its members were not extracted", where, kind="resource")
                return True
            if z.needs_password():
                ctx.error("7z archive is encrypted: its members cannot be judged", where)
                return False
            if hasattr(z, "readall"):  # py7zr < 1.0
                products = {k: v.getvalue() for k, v in z.readall().items()}
            else:
                from py7zr.io import BytesIOFactory

                factory = BytesIOFactory(max(limit, 1))
                z.extractall(factory=factory)
                products = {}
                for k, v in factory.products.items():
                    v.seek(0)
                    products[k] = v.read()
    except Exception as e:  # py7zr raises many types on bad archives; none of them is a verdict
        ctx.error(f"7z archive could not be read by py7zr: {type(e).__name__}: {e}", where)
        return False
    ctx.inflated += sum(len(v) for v in products.values())
    ctx.note(f"7z archive: {len(products)} member(s) extracted with py7zr and scanned")
    for nm, data in products.items():
        mw = where.child(nm, None)
        desig = nm.lower().endswith(PICKLE_NAMES) or nm.rsplit("/", 1)[-1] in ("pickle", "data.pkl")
        scan_buffer(ctx, memoryview(data), mw, designated="auto" if desig else False, name=nm,
                    torchscript=torchscript)
    return True


def check_unreadable(ctx, buf, where, *, kind, **_) -> bool:
    what = {"zstd": "zstd-compressed data", "7z": "a 7z archive", "rar": "a RAR archive"}[kind]
    ctx.error(f"{what}: mfparse does not open it, so what it holds cannot be judged", where)
    return False


# ==========================================================================================
# Zip
# ==========================================================================================

_ANOMALY_FINDINGS = {
    1 << 0: "local and central file names differ: readers that trust the local header see another file",
    1 << 1: "flag 0x1 (encrypted) is set: scanners that skip encrypted members miss it; it was scanned anyway",
    1 << 2: "flag 0x20 (compressed patched data) is set: scanners that refuse it skip the member",
    1 << 3: "flag 0x40 (strong encryption) is set: scanners that refuse it skip the member",
    1 << 4: "local and central compression methods differ: readers disagree on the member's bytes",
    1 << 5: "the same name appears twice in the central directory: readers disagree on which one loads",
    1 << 6: "the end record's entry count disagrees with the central directory",
    1 << 8: "bytes before the archive: a loader that checks the first bytes unpickles the file instead",
    1 << 9: ("member data runs into another entry's local header or the central directory (overlapping "
             "entries, a zip-bomb technique): zipfile and np.load refuse the archive, torch.load reads it"),
}
_ARCHIVE_BITS = (1 << 5) | (1 << 6) | (1 << 8) | (1 << 9)


class ZipEntry:
    """One central-directory entry (the central directory is authoritative)."""

    __slots__ = ("name", "flags", "method", "crc32", "comp_size", "size", "local_offset", "data_offset", "anomalies")

    def __init__(self, row):
        (self.name, self.flags, self.method, self.crc32, self.comp_size, self.size, self.local_offset,
         self.data_offset, self.anomalies) = row


def archive_prefix(names) -> str | None:
    """The folder that holds data.pkl, as torch's reader picks it: the first entry's top folder
    when it has a data.pkl, else any folder with one."""
    if names:
        top = names[0].split("/", 1)[0]
        if f"{top}/data.pkl" in names:
            return top
    for n in names:
        parts = n.split("/")
        if len(parts) == 2 and parts[1] == "data.pkl":
            return parts[0]
    return None


def zip_directory(buf):
    """(entry rows in directory order, archive anomaly bits, eocd tuple) of a zip in buf.
    Every entry is kept, duplicates included (each is scanned: readers differ on which wins)."""
    size = len(buf)
    eocd = _native.zip_eocd(buf[size - min(size, _native.ZIP_TAIL_MAX):], size)
    if eocd[4] is not None:
        eocd = _native.zip_eocd64(buf[eocd[4]:], size, eocd)
    directory = _native.ZipDirectory(buf[eocd[1]:eocd[1] + eocd[2]], eocd, size)
    directory.resolve_all(buf)
    rows = directory.entries_list()
    anomalies = eocd[6]
    if len(rows) != eocd[3]:
        anomalies |= 1 << 6
    return rows, anomalies, eocd


# compression methods zipfile reads (8 deflate, 12 bzip2, 14 LZMA; 93 Zstandard since Python
# 3.14); torch's miniz reads 0 and 8 only
_ZIP_METHODS = {8: "deflate", 12: "bz2", 14: "zip-lzma", 93: "zstd"}


def _read_member(ctx, m: ZipEntry, buf, where, probe: bool):
    """(bytes, offset of the bytes in buf or None, complete) of a member; None when unreadable.
    The encryption flag is ignored (the bytes are read as they are, so that a member merely
    flagged as encrypted is still scanned). With probe, a compressed member is inflated only far
    enough to see what it is."""
    start = m.data_offset
    if start is None:
        ctx.error(f"zip member {m.name!r}: local header not found", where, m.local_offset)
        return None
    raw = buf[start:start + m.comp_size]
    if m.method != 0 and not probe:
        prefetch(ctx, where, start, m.comp_size)  # inflated whole
    if m.method == 0:
        if m.comp_size != m.size:
            ctx.error(f"stored zip member {m.name!r} has compressed size {m.comp_size} but size {m.size}", where,
                      m.local_offset)
        return raw, start, True
    if m.method in _ZIP_METHODS:
        kind = _ZIP_METHODS[m.method]
        want = min(m.size, PROBE_PREFIX) if probe else m.size
        limit = _inflate_limit(ctx, m.comp_size)
        if m.size > limit and not probe:
            ctx.finding("dangerous", f"zip member {m.name!r} declares {m.size} bytes from {m.comp_size} compressed: "
                        "a decompression bomb; only the first bytes were scanned", where, offset=m.local_offset,
                        kind="resource")
            want = limit
        try:
            data, exceeded = _decompress(kind, raw, want)
        except MissingPackage as e:
            ctx.error(f"zip member {m.name!r}: {e}, so it cannot be judged", where, m.local_offset)
            return None
        except DamagedStream as e:
            if m.flags & 0x1 or not e.partial:
                if m.flags & 0x1:
                    ctx.error(f"zip member {m.name!r} is encrypted: its content cannot be judged", where,
                              m.local_offset)
                else:
                    ctx.error(f"zip member {m.name!r} does not inflate: {e}", where, start)
                return None
            # zipfile's member reader streams: pickle.load / numpy.load act before it meets the damage
            ctx.error(f"zip member {m.name!r} is damaged after {len(e.partial)} decompressed bytes ({e}); what "
                      "decompressed before the damage was scanned", where, start + e.at)
            return memoryview(e.partial), None, True
        except (ValueError, OSError, EOFError, zlib.error, lzma.LZMAError) as e:
            if m.flags & 0x1:
                ctx.error(f"zip member {m.name!r} is encrypted: its content cannot be judged", where, m.local_offset)
            else:
                ctx.error(f"zip member {m.name!r} does not inflate: {e}", where, start)
            return None
        if not probe:
            ctx.inflated += len(data)
            if len(data) < m.size and not exceeded:
                ctx.error(f"zip member {m.name!r} inflates to {len(data)} bytes, the directory says {m.size}", where,
                          start)
            elif exceeded and want == m.size:
                ctx.finding("suspicious", f"zip member {m.name!r} inflates to more than the {m.size} bytes its "
                            "directory entry declares", where, offset=start, kind="container")
        return memoryview(data), None, not probe or m.size <= want
    ctx.error(f"zip member {m.name!r} uses compression method {m.method}, which mfparse does not read", where,
              m.local_offset)
    return None


#: functions called on every zip archive as inspect(ctx, buf, where, members, read): members maps
#: each name to its directory row (the last of duplicates), read(name) returns (bytes, file offset
#: of the bytes or None when they were inflated) or None when the member cannot be read (recorded).
#: Registered by mfparse.scan.keras (config.json), .torchscript (code/, MAR-INF) and .formats.
ZIP_INSPECTORS: list = []


def inspected_names() -> dict:
    """The member names that make the stock ZIP_INSPECTORS look at an archive (an archive without
    any of them is one they say nothing about; mfparse/scan/quick.py leaves the others to the full
    scan): {"exact": names, "base": base names, "base_suffix": base-name endings (any case),
    "suffix": name endings}. Keep in step with the inspectors (tests/test_scan_fastpath.py)."""
    from mfparse.scan import formats, templates

    return {
        "exact": ("config.json",),                                             # keras.inspect_zip
        "base": tuple(formats._HF_JSON),                                       # formats.inspect_zip_templates
        "base_suffix": tuple(templates._TEMPLATE_EXTS),                        # (chat templates)
        "suffix": ("constants.pkl", "MAR-INF/MANIFEST.json", ".data/extern_modules"),  # torchscript.inspect_zip
    }


def _overlapping(rows, cd_offset: int) -> bool:
    """Whether an entry's data runs past where formats.zip.member_ends says it must end."""
    from mfparse.formats.zip import member_ends

    ends = member_ends([r[6] for r in rows], cd_offset)
    return any(r[7] is not None and r[7] + r[4] > end for r, end in zip(rows, ends))


def _member_bytes(ctx, buf, where, row):
    m = ZipEntry(row)
    got = _read_member(ctx, m, buf, where, probe=False)
    if got is None:
        return None
    data, off, _complete = got
    _crc(ctx, data, m, where)
    return data, (None if off is None or where.base is None else where.base + off)


def check_zip(ctx, buf, where, *, name=None, designated=False, torchscript=False, prefix_ok=False, **_) -> bool:
    """prefix_ok: the bytes before the archive are a format that carries one (a TFLite model's
    associated files), not a finding of their own; they are still scanned as a pickle.

    The archive is read as mfparse's reader reads it, then as CPython's zipfile (numpy.load,
    keras) and torch's miniz reader (torch.load) read it (`zip_views`); a reader that sees other
    members is a finding, and the members only it sees are scanned too."""
    try:
        rows, anomalies, eocd = zip_directory(buf)
    except MFParseError as e:
        return _zip_views_only(ctx, buf, where, e, designated, torchscript)
    if prefix_ok:
        anomalies &= ~(1 << 8)
    if _overlapping(rows, eocd[1]):
        anomalies |= 1 << 9
    size = len(buf)
    # bytes in front of the archive: a loader that looks at the first bytes would unpickle them
    if _head(buf, 4) != b"PK\x03\x04":
        scan_stream(ctx, buf, where, designated=False, single=True)
    # bytes after the end record
    comment = int.from_bytes(bytes(buf[eocd[0] + 20:eocd[0] + 22]), "little") if eocd[0] + 22 <= size else 0
    end = eocd[0] + 22 + comment
    if end < size:
        ctx.note(f"{size - end} bytes follow the zip end record" + (f" in {where.member}" if where.member else ""))
        scan_stream(ctx, buf[end:], Where(where.member, (where.base or 0) + end, where.depth + 1), designated=False)
    members = {r[0]: r for r in rows}  # name -> row (the last of duplicates, as zipfile keeps)
    if len(members) != len(rows):
        anomalies |= 1 << 5
    for bit, why in _ANOMALY_FINDINGS.items():
        if anomalies & bit & _ARCHIVE_BITS:
            ctx.finding("suspicious", f"zip: {why}", where, kind="container")
    _zip_members(ctx, buf, where, rows, members, torchscript)
    own = {_row_key(r) for r in rows}
    seen = set(own)
    for reader, view in zip_views(buf).items():
        _judge_view(ctx, buf, where, reader, view, own, seen, eocd[0], torchscript)
    return True


def _zip_members(ctx, buf, where, rows, members, torchscript, skip=frozenset()) -> None:
    """Scan the members of one reading of an archive (rows in directory order; members: name ->
    row, the last of duplicates). skip: keys (_row_key) of rows already scanned."""
    size = len(buf)
    names = list(members)
    prefix = archive_prefix(names)
    ts = torchscript or any(n.endswith("constants.pkl") for n in names)
    if ts:
        code = [n for n in names if "/code/" in n and n.endswith(".py")]
        ctx.note("TorchScript archive" + (f" with {len(code)} code files" if code else " (constants.pkl present)")
                 + ": torch.load hands it to torch.jit.load, which runs its TorchScript code in the TorchScript "
                 "interpreter")
    for inspect in ZIP_INSPECTORS:  # Keras configs, TorchScript code, packages that carry code, templates
        inspect(ctx, buf, where, members, lambda nm: _member_bytes(ctx, buf, where, members[nm]))
    datapkl = f"{prefix}/data.pkl" if prefix is not None else None
    base = where.base
    first_ok = OPCODES | _MEMBER_MAGIC_FIRST
    for row in rows:  # every entry, duplicates included: readers differ on which one they load
        if skip and _row_key(row) in skip:
            continue
        nm, _flags, method, _crc32, csize, _usize, loff, doff, anom = row
        if anom:
            member_anomalies(ctx, where, nm, anom, loff)
        desig = nm == datapkl or nm.lower().endswith(PICKLE_NAMES)
        if method == 0 and not desig and doff is not None:
            # fast path for raw data records: only bytes that could start a pickle or a container
            if csize == 0 or doff >= size:
                continue
            if buf[doff] not in first_ok and not (csize >= 512 and bytes(buf[doff + 257:doff + 262]) == b"ustar") \
                    and not (csize >= 22 and bytes(buf[doff + 4:doff + 8]) == b"TFL3"):
                continue  # (a TFLite model may carry a zip of associated files after it)
        m = ZipEntry(row)
        if desig and method == 0 and doff is not None:
            prefetch(ctx, where, doff, csize)  # a pickle: read whole
        got = _read_member(ctx, m, buf, where, probe=not desig and m.method != 0)
        if got is None:
            continue
        data, off, complete = got
        if not complete:
            # the first 64 KiB of a compressed member decide whether the rest is worth inflating
            if not _worth_reading(data, nm):
                continue
            kind = sniff(data, nm)
            if kind == "npy" and _npy_object(data) is False:
                continue
            if kind is None and _native.pickle_probe(data) == 0:
                continue
            got = _read_member(ctx, m, buf, where, probe=False)
            if got is None:
                continue
            data, off, complete = got
        mw = where.child(nm, base + off if base is not None and off is not None else None)
        if not desig and not _worth_reading(data, nm):
            continue
        kind = sniff(data, nm)
        if kind is not None:
            if run_checker(kind, ctx, data, mw, name=nm, designated=desig, torchscript=ts) and \
                    _judged_whole(kind, data, m):
                _crc(ctx, data, m, where)
            continue
        torch_stream = prefix is not None and nm.startswith(f"{prefix}/")
        res = scan_stream(ctx, data, mw, designated="auto" if desig else False, torchscript=ts,
                          torch_stream=torch_stream)
        if res.judged:
            _crc(ctx, data, m, where)
            if nm == datapkl and res.roots and res.roots[0] is not None:
                _check_torch_zip(ctx, res, members, prefix, mw)
        elif desig:
            ctx.error(f"named like a pickle but not one: {res.error}", mw)


# ------------------------------------------------------------------------------------------
# The same bytes as other zip readers read them
# ------------------------------------------------------------------------------------------

_SIG_EOCD, _SIG_LOC64, _SIG_EOCD64 = b"PK\x05\x06", b"PK\x06\x07", b"PK\x06\x06"
#: the loaders behind each reading
ZIP_READERS = {
    "zipfile": "CPython's zipfile (numpy.load of .npz, keras .keras, joblib)",
    "torch": "torch.load (PyTorch's miniz reader)",
}


class ZipView:
    """One reader's reading of a zip: where it finds the end record and the central directory,
    the offset it adds to every stored offset, and the members it sees (rows as
    zip_directory's), or why it refuses the archive."""

    __slots__ = ("reader", "eocd", "cd_offset", "cd_size", "shift", "rows", "error")

    def __init__(self, reader):
        self.reader = reader
        self.eocd = self.cd_offset = self.cd_size = None
        self.shift = 0
        self.rows = None
        self.error = None


def _u(fmt: str, buf, at: int):
    n = struct.calcsize(fmt)
    if at < 0 or at + n > len(buf):
        return None
    return struct.unpack(fmt, bytes(buf[at:at + n]))


def _zipfile_end(buf, v: ZipView):
    """CPython's zipfile (_EndRecData, _EndRecData64, _RealGetContents; 3.8-3.13): a record in
    the last 22 bytes with an empty comment, else the LAST signature in the last 64 KiB + 22
    (whatever its comment length says); the zip64 record is read right before the locator (the
    locator's offset is not used), and falls back to the 32-bit record when absent there; the
    directory is read cd_size bytes before the end record (before the zip64 records), and the
    difference from the stored directory offset is added to every member's offset."""
    size = len(buf)
    if size < 22:
        v.error = "shorter than an end record"
        return
    if bytes(buf[size - 22:size - 18]) == _SIG_EOCD and bytes(buf[size - 2:]) == b"\0\0":
        at = size - 22
    else:
        lo = max(size - (1 << 16) - 22, 0)
        i = bytes(buf[lo:]).rfind(_SIG_EOCD)
        if i < 0 or size - (lo + i) < 22:
            v.error = "no end record (the last signature has no 22 bytes after it)" if i >= 0 else "no end record"
            return
        at = lo + i
    _, _disk, _disk_dir, _n_this, n_total, cd_size, cd_off, _clen = _u("<4s4H2LH", buf, at)
    zip64 = False
    loc = _u("<4sLQL", buf, at - 20)
    if loc is not None and loc[0] == _SIG_LOC64:
        if loc[1] != 0 or loc[3] > 1:
            v.error = "zip64 locator names several disks"
            return
        rec = _u("<4sQ2H2L4Q", buf, at - 76)
        if rec is not None and rec[0] == _SIG_EOCD64:
            n_total, cd_size, cd_off, zip64 = rec[7], rec[8], rec[9], True
    shift = at - cd_size - cd_off - (76 if zip64 else 0)
    if cd_off + shift < 0:
        v.error = "directory offset before the start of the file"
        return
    v.eocd, v.cd_offset, v.cd_size, v.shift = at, cd_off + shift, cd_size, shift
    return n_total


def _miniz_end(buf, v: ZipView):
    """torch's reader (miniz 3, mz_zip_reader_read_central_dir): the last signature with at
    least 22 bytes after it, searched backwards in 4 KiB blocks up to ~64 KiB from the end; the
    zip64 record at the offset the locator stores; the directory at its stored offset, member
    offsets as stored (nothing added for bytes in front); exactly the announced number of entries."""
    size = len(buf)
    if size < 22:
        v.error = "shorter than an end record"
        return
    cur, at = max(size - 4096, 0), None
    while True:
        n = min(4096, size - cur)
        i = bytes(buf[cur:cur + n]).rfind(_SIG_EOCD, 0, min(n, size - cur - 22 + 4))
        if i >= 0:
            at = cur + i
            break
        if cur == 0 or size - cur >= 0xFFFF + 22:
            v.error = "no end record"
            return
        cur = max(cur - (4096 - 3), 0)
    _, this_disk, cd_disk, n_disk, n_total, cd_size, cd_off, _clen = _u("<4s4H2LH", buf, at)
    if at >= 76:
        loc = _u("<4sLQL", buf, at - 20)
        if loc[0] == _SIG_LOC64:
            off64 = loc[2]
            if off64 > size - 56:
                v.error = "zip64 locator points past the end"
                return
            rec = _u("<4sQ2H2L4Q", buf, off64)
            if rec[0] == _SIG_EOCD64:
                if rec[1] < 44 or loc[3] != 1 or max(rec[6], rec[7], rec[8]) > 0xFFFFFFFF:
                    v.error = "zip64 record out of miniz's limits"
                    return
                this_disk, cd_disk, n_disk, n_total, cd_size, cd_off = rec[4], rec[5], rec[6], rec[7], rec[8], rec[9]
    if n_total != n_disk or ((this_disk | cd_disk) and (this_disk != 1 or cd_disk != 1)):
        v.error = "multi-disk or inconsistent entry counts"
        return
    if cd_size < n_total * 46 or cd_off + cd_size > size:
        v.error = "directory outside the file"
        return
    v.eocd, v.cd_offset, v.cd_size, v.shift = at, cd_off, cd_size, 0
    return n_total


_LOCAL_LENGTHS = struct.Struct("<HH")


def _view_rows(buf, v: ZipView, n_total, cap: bool) -> None:
    """The members of a view: its directory parsed by the C reader (offsets as stored), the
    view's shift applied, local headers read here (a member whose local header is missing is
    left out: that reader fails on it)."""
    size = len(buf)
    eocd = (v.eocd, v.cd_offset, v.cd_size, n_total, None, 0, 0)
    try:
        d = _native.ZipDirectory(buf[v.cd_offset:v.cd_offset + v.cd_size], eocd, (1 << 64) - 1)
    except ResourceLimitError:
        raise  # mfparse ran out of room, not the other reader: the file cannot be judged
    except MFParseError as e:
        v.error = f"its central directory is unreadable ({e})"
        return
    rows = d.entries_list()
    if cap:
        rows = rows[:n_total]
    out = []
    local_lengths = _LOCAL_LENGTHS.unpack_from  # file name and extra field lengths
    for nm, flags, method, crc, csize, usize, loff, _doff, _an in rows:
        loff += v.shift
        if loff < 0 or loff + 30 > size or buf[loff:loff + 4] != b"PK\x03\x04":
            continue
        n_name, n_extra = local_lengths(buf, loff + 26)
        doff = loff + 30 + n_name + n_extra
        if doff + csize > size:
            continue
        if v.reader == "zipfile":
            nm = nm.split("\0", 1)[0]  # ZipInfo cuts a name at its first NUL
        out.append((nm, flags, method, crc, csize, usize, loff, doff, 0))
    v.rows = out


def zip_views(buf) -> dict:
    """{reader: ZipView} of the archive in buf as CPython's zipfile and torch's miniz reader see
    it (directory-level work only: the tail, the directory, local headers)."""
    views = {}
    for reader, end, cap in (("zipfile", _zipfile_end, False), ("torch", _miniz_end, True)):
        v = ZipView(reader)
        n_total = end(buf, v)
        if v.error is None:
            _view_rows(buf, v, n_total, cap)
        views[reader] = v
    return views


#: a directory row's identity across readings: name, method, compressed size, data offset
_row_key = operator.itemgetter(0, 2, 4, 7)


def _judge_view(ctx, buf, where, reader, v: ZipView, own, seen, eocd_at, torchscript) -> None:
    """A reader that sees other members than mfparse's reading (own: its rows' keys; seen: the
    keys scanned so far): a finding; its own members are scanned under `<as READER reads it>`."""
    if v.rows is None:
        ctx.note(f"{ZIP_READERS[reader]} would not open this archive: {v.error}"
                 + (f" ({where.member})" if where.member else ""))
        return
    keys = [_row_key(r) for r in v.rows]
    extra = [r for r, k in zip(v.rows, keys) if k not in seen]
    if not extra:
        missing = len(own.difference(keys))
        if missing:  # it reads less (or fails on some members): nothing hidden from the scan
            ctx.note(f"{ZIP_READERS[reader]} reads {missing} member(s) of this archive differently or not at all"
                     + (f" ({where.member})" if where.member else ""))
        return
    how = []
    if v.eocd != eocd_at:
        how.append(f"it takes the end record at byte {where.offset(v.eocd)}, mfparse the one at byte "
                   f"{where.offset(eocd_at)}")
    if v.shift:
        how.append(f"it shifts every member offset by {v.shift}")
    names = sorted({r[0] for r in extra})
    what = f"members only it sees: {', '.join(repr(n) for n in names[:5])}" + (" ..." if len(names) > 5 else "")
    ctx.finding("suspicious", f"archive read differently by {ZIP_READERS[reader]}: "
                + "; ".join(how + [what]) + " (each reading was scanned)", where, offset=where.offset(v.eocd),
                kind="container")
    if extra:
        _zip_members(ctx, buf, _view_where(where, reader), v.rows, {r[0]: r for r in v.rows}, torchscript,
                     skip=seen)
        seen.update(_row_key(r) for r in extra)


def _view_where(where, reader) -> Where:
    label = f"<as {reader} reads it>"
    return Where(label if where.member is None else f"{where.member}!{label}", where.base, where.depth)


def _zip_views_only(ctx, buf, where, err, designated, torchscript) -> bool:
    """mfparse's reader refuses the archive: what the other readers see is still judged."""
    views = {r: v for r, v in zip_views(buf).items() if v.rows}
    if not views:
        if designated or where.depth == 0:
            ctx.error(f"zip archive could not be read: {err}", where)
        return False
    ctx.error(f"zip archive could not be read by mfparse's reader: {err}", where)
    seen: set = set()
    for reader, v in views.items():
        ctx.finding("suspicious", f"archive read differently by {ZIP_READERS[reader]}: it opens an archive "
                    f"mfparse's reader refuses ({err}); its members were scanned", where,
                    offset=where.offset(v.eocd), kind="container")
        _zip_members(ctx, buf, _view_where(where, reader), v.rows, {r[0]: r for r in v.rows}, torchscript,
                     skip=seen)
        seen.update(_row_key(r) for r in v.rows)
    return True


def _worth_reading(data, nm) -> bool:
    """Could these bytes start a pickle or a container? (cheap: the first bytes only; a pickle
    is then probed in C before anything else is done with it)"""
    n = len(data)
    if n == 0:
        return False
    b0 = data[0]
    if b0 in OPCODES or b0 in _MEMBER_MAGIC_FIRST:
        return True
    return (n >= 512 and bytes(data[257:262]) == b"ustar") or bytes(data[4:8]) == b"TFL3"


# compressed streams: every byte of the member was decompressed and judged
_WHOLE_KINDS = frozenset(("gzip", "bz2", "xz", "lzma", "lz4", "zlib"))


def _judged_whole(kind: str, data, m: ZipEntry) -> bool:
    """Was every byte of this member judged, so that checking its CRC-32 costs no extra read?
    True for a member that was inflated (its bytes are in memory), a compressed stream and an
    .npy object array (its data is the pickle). False for stored data formats and containers
    judged by their headers, directories or metadata (a stored .npy of numbers, safetensors,
    GGUF, HDF5, TFLite, a stored zip or tar whose own members are checked one by one): verifying
    their CRC would read every tensor byte of a multi-GB archive (issue 16 class 11), and a CRC
    mismatch there changes no byte any loader unpickles."""
    if m.method != 0 or kind in _WHOLE_KINDS:
        return True
    return kind == "npy" and _npy_object(data) is True


def _crc(ctx, data, m, where) -> None:
    if zlib.crc32(data) & 0xFFFFFFFF != m.crc32:
        crc_finding(ctx, where, m.name, m.local_offset)


def crc_finding(ctx, where, name: str, local_offset: int) -> None:
    """A member whose bytes fail their CRC-32 (also made by the fast path, mfparse/scan/quick.py)."""
    ctx.finding("suspicious", f"zip member {name!r} fails its CRC-32 check: Python's zipfile refuses it, "
                "torch's reader does not check", where.child(name, None), offset=where.offset(local_offset),
                kind="container")


def member_anomalies(ctx, where, name: str, anomalies: int, local_offset: int) -> None:
    """The findings of a member's directory anomalies: flags, or a local header that disagrees
    with the central directory (also made by the fast path, mfparse/scan/quick.py)."""
    for bit, why in _ANOMALY_FINDINGS.items():
        if anomalies & bit & ~_ARCHIVE_BITS:
            ctx.finding("suspicious", f"zip member {name!r}: {why}", where.child(name, None),
                        offset=where.offset(local_offset), kind="container")


def _check_torch_zip(ctx, res, members, prefix, where) -> None:
    """Storages must fit their records; tensors must fit their storages."""
    parse = res.parse
    if not walk_torch(ctx, parse, res.roots[0], 0, where):
        return
    bits = dtypes.BITS
    names = dtypes.NAMES
    sizes = []
    for key, dt, numel, at in parse.torch_storage_sizes():
        rec = f"{prefix}/data/{key}"
        row = members.get(rec)
        need = numel * bits[dt] // 8
        if row is None:
            ctx.error(f"storage record {rec!r} is missing from the archive: torch.load fails", where, at)
            sizes.append(None)
        elif need > row[5]:
            ctx.finding("dangerous", f"storage {key!r} declares {numel} x {names[dt]} ({need} bytes) but its "
                        f"record holds {row[5]} bytes: torch allocates the declared size and reads past the record",
                        where, offset=at, kind="loader")
            sizes.append(row[5])
        else:
            sizes.append(need)
    check_tensors(ctx, parse, sizes, where)


# ==========================================================================================
# Tar
# ==========================================================================================

_TAR_REGULAR = (b"0", b"\x00", b"7", b"S")
_TAR_SUPPORTED = _TAR_REGULAR + (b"1", b"2", b"3", b"4", b"5", b"6", b"L", b"K", b"x", b"g", b"X")
_PAX_RECORD = LazyPattern(rb"(\d+) ([^=]+)=")
_HIGH_BYTES = bytes(range(128, 256))


def _tar_number(field: bytes) -> int:
    """tarfile's nti: base-256 (0x80 / 0xff first byte) or octal text up to the first NUL."""
    if field[0] in (0x80, 0xFF):
        v = int.from_bytes(field[1:], "big")
        return v - 256 ** (len(field) - 1) if field[0] == 0xFF else v
    text = field.split(b"\x00", 1)[0].strip()
    return int(text.decode("ascii"), 8) if text else 0


def _tar_header_ok(h: bytes) -> bool:
    """tarfile's test of a header block: not all zeros, its checksum (unsigned or signed) right."""
    if len(h) < 512:
        return False
    field = h[148:156]
    if field[0] not in (0x80, 0xFF) and (field.translate(None, b"01234567 \x00") or not field.strip(b" \x00")):
        return False  # (cheap rejection: most buffers are not tar headers)
    if h.count(0) == 512:
        return False
    try:
        chk = _tar_number(field)
    except (ValueError, UnicodeDecodeError):
        return False
    rest = h[:148] + b"        " + h[156:512]
    unsigned = sum(rest)
    return chk in (unsigned, unsigned - 256 * (512 - len(rest.translate(None, _HIGH_BYTES))))


def _pax_records(data: bytes):
    """[(keyword, value)] of a PAX header as tarfile parses it (records until the first that
    does not match; a zero length is invalid)."""
    out, pos = [], 0
    while True:
        m = _PAX_RECORD.match(data, pos)
        if not m:
            return out
        length = int(m.group(1))
        if length == 0:
            raise ValueError("PAX record of length 0")
        out.append((m.group(2).decode("utf-8", "surrogateescape"),
                    data[m.end(2) + 1:m.start(1) + length - 1].decode("utf-8", "surrogateescape")))
        pos += length


class _TarEntry:
    __slots__ = ("name", "start", "size", "type", "header")

    def __init__(self, name, start, size, typ, header):
        self.name, self.start, self.size, self.type, self.header = name, start, size, typ, header


def tar_members(buf, honor_pax: bool = True):
    """(entries, problems, repeated) of a tar archive as Python's tarfile reads it (PAX size and
    path records override the header, the last of a repeated keyword wins, global headers apply
    to what follows, GNU long names, ustar prefixes, data skipped only for regular files and
    unknown types; reading stops at the first zero or invalid block), or, with honor_pax=False,
    as a reader that ignores PAX records and skips every entry's header size.

    entries: [_TarEntry] of every file-like entry; problems: [(offset, text)]; repeated:
    [(offset, keyword)] of keywords a PAX header gives more than once."""
    n = len(buf)
    pos = 0
    entries, problems, repeated = [], [], []
    glob: dict = {}
    pending: dict = {}   # PAX records for the next entry
    longname = None
    count = 0
    while n - pos >= 512:
        h = bytes(buf[pos:pos + 512])
        if h.count(0) == 512:
            break
        if not _tar_header_ok(h):
            problems.append((pos, "tar header checksum mismatch or bad number field" if count == 0 or honor_pax
                             else "invalid tar header"))
            break
        size = _tar_number(h[124:136])
        if size < 0:
            problems.append((pos, "negative tar member size"))
            break
        typ = h[156:157]
        name = h[0:100].split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")
        prefix = h[345:500].split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")
        if typ == b"\x00" and name.endswith("/"):
            typ = b"5"
        if typ == b"5":
            name = name.rstrip("/")
        if prefix and typ not in (b"L", b"K", b"S"):
            name = prefix + "/" + name
        start = pos + 512
        block = (size + 511) // 512 * 512
        if typ in (b"L", b"K", b"x", b"g", b"X"):
            if start + size > n:
                problems.append((pos, f"tar {'PAX' if typ in (b'x', b'g', b'X') else 'long-name'} header runs past "
                                 "the end of the archive"))
                break
            data = bytes(buf[start:start + size])
            if typ == b"L":
                longname = data.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")
            elif typ != b"K" and honor_pax:
                try:
                    records = _pax_records(data)
                except ValueError as e:
                    problems.append((pos, f"tar PAX header is invalid: {e}"))
                    break
                keys = [k for k, _ in records]
                repeated += [(pos, k) for k in sorted(set(keys)) if keys.count(k) > 1]
                (glob if typ == b"g" else pending).update(records)
            pos = start + block
            continue
        count += 1
        pax = {**glob, **pending} if honor_pax else {}
        offset_data = start
        nxt = start + (block if typ in _TAR_REGULAR or typ not in _TAR_SUPPORTED or not honor_pax else 0)
        if "path" in pax:
            name = pax["path"].rstrip("/")
        if "size" in pax:
            try:
                size = int(pax["size"])
            except ValueError:
                size = 0
            if "size" in pending and (typ in _TAR_REGULAR or typ not in _TAR_SUPPORTED):
                nxt = start + (size + 511) // 512 * 512
        if longname is not None:
            name = longname
        pending, longname = {}, None
        if typ in _TAR_REGULAR or typ not in _TAR_SUPPORTED:
            if offset_data + size > n:
                problems.append((pos, f"tar member {name!r} runs past the end of the archive"))
                break
            entries.append(_TarEntry(name, offset_data, size, typ, pos))
        pos = nxt
    else:
        if n - pos > 0 and bytes(buf[pos:]).strip(b"\x00"):
            problems.append((pos, "tar archive ends inside a header"))
    if count == 0 and not problems and not entries:
        problems.append((0, "tar archive without members"))
    return entries, problems, repeated


def _is_tar(head, buf, name, top) -> bool:
    """A header block tarfile accepts (ustar magic or not: tarfile, and torch.load's legacy tar
    reader, only check the checksum)."""
    return len(buf) >= 512 and (bytes(buf[257:262]) == b"ustar" or _tar_header_ok(bytes(buf[:512])))


def check_tar(ctx, buf, where, *, name=None, designated=False, torchscript=False, **_) -> bool:
    """A tar archive as tarfile (torch.load's legacy tar format, tarfile-based loaders) reads it;
    a reader that ignores PAX records sees other members or names: that difference is a
    finding, and its members are scanned as well."""
    # a header name field can itself be a pickle: pickle.load on the archive would run it
    scan_stream(ctx, buf, where, designated=False, single=True)
    entries, problems, repeated = tar_members(buf, honor_pax=True)
    for at, text in problems:
        ctx.error(text, where, where.offset(at))
    for at, key in repeated:
        ctx.finding("suspicious", f"tar PAX header repeats {key!r}: tarfile takes the last value, readers that take "
                    "the first see another " + ("name" if key == "path" else "member"), where,
                    offset=where.offset(at), kind="container")
    seen = set()
    for e in entries:
        _tar_member(ctx, buf, where, e, torchscript)
        seen.add((e.start, e.size))
    # (names differ legitimately: a PAX path is the long name a ustar header cannot hold)
    naive, _, _ = tar_members(buf, honor_pax=False)
    extra = [e for e in naive if (e.start, e.size) not in seen]
    if extra:
        names = sorted({e.name for e in extra})
        ctx.finding("suspicious", "tar archive read differently by readers that ignore PAX records (size and path "
                    "override the header for tarfile): they see " + ", ".join(repr(x) for x in names[:5])
                    + (" ..." if len(names) > 5 else "") + " (each reading was scanned)", where,
                    offset=where.offset(extra[0].header), kind="container")
        vw = Where(f"<{where.member}!without PAX>" if where.member else "<without PAX>", where.base, where.depth)
        for e in extra:
            _tar_member(ctx, buf, vw, e, torchscript)
    return True


def _tar_member(ctx, buf, where, e: _TarEntry, torchscript) -> None:
    data = buf[e.start:e.start + e.size]
    mw = where.child(e.name, where.offset(e.start) if where.base is not None else None)
    desig = e.name.lower().endswith(PICKLE_NAMES) or e.name.rsplit("/", 1)[-1] in ("pickle", "tensors", "storages")
    scan_buffer(ctx, data, mw, designated="auto" if desig else False, name=e.name, torchscript=torchscript)


# ==========================================================================================
# NPY
# ==========================================================================================

def _npy_object(buf):
    """True/False: does the .npy header in buf make numpy.load unpickle the data; None when it
    cannot tell from these bytes (then the whole member is read and judged)."""
    from mfparse.formats.npy import read_header

    try:
        return read_header(buf).is_object
    except MFParseError:
        return None


def check_npy(ctx, buf, where, *, name=None, designated=False, torchscript=False, **_) -> bool:
    """An .npy array: numpy.load(allow_pickle=True) unpickles the data of an object array.
    Object-ness is decided as numpy decides it (formats.npy.read_header: the header evaluated
    as a literal, the dtype built by numpy), so escaped or concatenated spellings of 'O',
    'object', subarrays and structured fields holding objects are all object arrays."""
    from mfparse.formats.npy import read_header

    try:
        h = read_header(buf, where.offset(0))
    except MFParseError as e:
        ctx.error(str(e), where)
        return False
    if not h.is_object:
        return True
    descr = h.descr if isinstance(h.descr, str) else repr(h.descr)
    ctx.note(f"npy array with object dtype ({descr[:60]!r}): numpy.load(allow_pickle=True) unpickles its data")
    hidden = h.hidden_object()
    if hidden:
        ctx.finding("suspicious", f"npy header spells its object dtype as numpy never writes it ({hidden}): "
                    "numpy.load(allow_pickle=True) reads an object array and unpickles the data, a scanner that "
                    "looks for 'O' in the header does not", where, offset=where.offset(0), module="numpy.load",
                    qualname="allow_pickle", kind="format")
    data_at = h.data_offset
    inner = Where(where.member, (where.base or 0) + data_at, where.depth + 1)
    res = scan_stream(ctx, buf[data_at:], inner, designated=True, torchscript=torchscript)
    if not res.judged:
        ctx.error(f"npy object array whose data is not a pickle: {res.error}", where, where.offset(data_at))
    return True


# ==========================================================================================
# Formats without a pickle (a note, or an error where they cannot be judged yet)
# ==========================================================================================

def check_safetensors(ctx, buf, where, **_) -> bool:
    try:
        n = _native.safetensors_header_len(buf[:8], len(buf))
        _native.safetensors_parse(buf[:8 + n], len(buf))
    except MFParseError as e:
        ctx.error(f"safetensors header is invalid: {e}", where)
        return False
    ctx.note("safetensors: a JSON header and raw tensor bytes; no code path on load")
    return True


def check_gguf(ctx, buf, where, **_) -> bool:
    ctx.note("GGUF: key/value metadata and raw tensors, no pickle (a tokenizer.chat_template, if present, is "
             "Jinja that some runtimes render)")
    return True


def check_tflite(ctx, buf, where, **kw) -> bool:
    ctx.note("TFLite flatbuffer: no pickle")
    if _head(buf, 4) != b"PK\x03\x04" and len(buf) >= 22 and _eocd_ok(buf):
        # TFLite Model Metadata packs the model's associated files (labels, vocabularies) as a
        # zip appended after the flatbuffer; zipfile-based tools open it, so every member counts
        ctx.note("TFLite model with associated files (a zip archive after the model, as TFLite Model "
                 "Metadata writes them): every member scanned")
        return check_zip(ctx, buf, where, prefix_ok=True, **kw)
    return True


# ==========================================================================================
# Bytes a format does not account for
# ==========================================================================================

def _safetensors_end(buf):
    # the header's data offsets (the C parser refuses a file they do not cover, as the
    # safetensors library does, so they are read from the JSON here)
    import json

    n = _native.safetensors_header_len(buf[:8], len(buf))
    header = json.loads(bytes(buf[8:8 + n]))
    ends = [e["data_offsets"][1] for k, e in header.items() if k != "__metadata__" and isinstance(e, dict)
            and isinstance(e.get("data_offsets"), list) and len(e["data_offsets"]) == 2
            and isinstance(e["data_offsets"][1], int)]
    return 8 + n + max(ends, default=0), 1


def _gguf_end(buf):
    _v, _be, alignment, data_start, _kvs, rows = _native.gguf_parse(buf)
    if not rows:
        return None
    return max([data_start] + [r[3] + r[4] for r in rows]), alignment or 32


def _npy_end(buf):
    from mfparse.formats.npy import read_header

    h = read_header(buf)
    if h.is_object:
        return None  # the pickle's end: scan_stream reports bytes after it
    from mfparse.formats.npy import descr_to_dtype

    numel = 1
    for d in h.shape:
        numel *= d
    return h.data_offset + numel * descr_to_dtype(h.descr).itemsize, 1


#: kind -> function(buf) giving (end of the data the format accounts for, alignment) or None
_DATA_END = {"safetensors": _safetensors_end, "gguf": _gguf_end, "npy": _npy_end}
_FORMAT_LOADERS = {
    "safetensors": "safetensors (safe_open, load_file)",
    "gguf": "GGUF (llama.cpp, gguf-py)",
    "npy": "numpy.load",
    "hdf5": "h5py / libhdf5 (the superblock's end-of-file address)",
}


def check_trailing(ctx, buf, where, kind, end=None, alignment=1) -> None:
    """Bytes after the end of the data a format defines (safetensors: the header's largest
    data offset; GGUF: the last tensor; .npy: shape x itemsize; HDF5: the superblock's
    end-of-file address): its loader ignores them, a loader of another format may read them
    (a pickle appended to a safetensors file). Zero padding up to the format's alignment is
    not a finding; anything else is a finding of kind "polyglot", and the bytes are scanned."""
    n = len(buf)
    if end is None:
        try:
            got = _DATA_END[kind](buf)
        except (MFParseError, ValueError, TypeError, OverflowError, KeyError, RecursionError):
            return  # the checker reports an unreadable format
        if got is None:
            return
        end, alignment = got
    aligned = -(-end // alignment) * alignment
    if aligned <= n and not bytes(buf[end:aligned]).strip(b"\x00"):
        end = aligned  # the writer's alignment padding
    if end >= n:
        return
    rest = buf[end:]
    if where.depth == 0 and _head(rest, 4) == b"PK\x03\x04" and _eocd_ok(buf):
        return  # a zip appended to the file: check_polyglot reports that reading and it is scanned
    sample = bytes(rest[:1 << 20])
    if not sample.strip(b"\x00") and (len(rest) < max(alignment, 4096) or len(rest) == len(sample)):
        ctx.note(f"{n - end} zero bytes of padding after the {kind} data" + (f" ({where.member})" if where.member
                                                                           else ""))
        return
    ctx.finding("suspicious", f"polyglot: the {kind} data ends at byte {where.offset(end)}, and {n - end} more bytes "
                f"follow that {_FORMAT_LOADERS[kind]} does not read; a loader of another format may (they were "
                "scanned)", where, offset=where.offset(end), kind="polyglot")
    tw = where.child(f"<after the {kind} data>", where.offset(end) if where.base is not None else None)
    scan_buffer(ctx, rest, tw, designated=False)


# ==========================================================================================
# HDF5: the other files a reader opens
# ==========================================================================================

_H5_LOADER = {
    "external storage": ("hdf5.external_storage", "libhdf5 reads this dataset's raw data from that file (h5py, "
                         "keras, any read of the dataset)"),
    "external link": ("hdf5.external_link", "libhdf5 opens that file when the link is followed (h5py f[path], "
                      "visititems, keras walking its groups)"),
    "virtual dataset": ("hdf5.virtual_dataset", "libhdf5 opens that file when the virtual dataset is read (h5py, "
                        "keras)"),
}


def outside_folder(name: str) -> str | None:
    """Why a file name a model refers to escapes the model's folder (an absolute path, a drive,
    a UNC share, a '..' component), or None when it stays inside."""
    if not name:
        return None
    if name.startswith(("/", "\\")):
        return "an absolute path"
    if len(name) >= 2 and name[1] == ":" and name[0].isalpha():
        return "a drive path"
    if ".." in re.split(r"[/\\]", name):
        return "a '..' component climbs out of the folder"
    return None


def check_hdf5_files(ctx, m, buf, where) -> None:
    """Called with an open HDF5 model (mfparse.scan.formats.check_hdf5): external storage files,
    external links and virtual dataset sources that point outside the model's folder are
    dangerous findings (libhdf5 opens those files on a read, as an ONNX loader reads external
    data); inside the folder they are noted; a virtual dataset whose sources cannot be read is
    a suspicious finding. Bytes after the superblock's end-of-file address are checked like
    any format's trailing bytes."""
    f = getattr(getattr(m, "reader", None), "file", None)
    if f is None or not hasattr(f, "other_files"):
        return
    try:
        files = f.other_files()
    except MFParseError as e:
        ctx.error(f"HDF5 external files could not be listed: {e}", where)
        return
    inside = []
    for kind, path, fname, target, at, status in files:
        module, loader = _H5_LOADER[kind]
        off = where.offset(at) if at is not None and where.base is not None else None
        if status:
            ctx.finding("suspicious", f"HDF5 {kind} /{path}: its source files could not be read ("
                        + ("the block is unreadable" if status < 0 else f"encoding version {status}")
                        + f"); {loader}", where, module=module, qualname=f"/{path}", kind="path")
            continue
        if kind == "virtual dataset" and fname == ".":
            continue  # a source in the same file
        why = outside_folder(fname)
        if why is None:
            inside.append(fname)
            continue
        tgt = f" (object {target})" if kind != "external storage" else ""
        ctx.finding("dangerous", f"HDF5 {kind} /{path} points at {fname!r}{tgt}, outside the model's folder ({why}): "
                    f"{loader}", where, offset=off, module=module, qualname=fname, kind="path")
    if inside:
        ctx.note(f"HDF5 file refers to other files inside its folder: {', '.join(sorted(set(inside))[:5])}")
    try:
        eof = f.h5.superblock[4]
    except (AttributeError, ValueError, IndexError):
        return
    if eof:
        check_trailing(ctx, buf, where, "hdf5", end=eof)


# ==========================================================================================
# Polyglots: one file, two formats
# ==========================================================================================

_READERS = {
    "pickle": "a pickle (pickle.load; torch.load and numpy.load(allow_pickle=True) of a file that is not a zip)",
    "zip": "a zip archive (torch.load, numpy.load, zipfile: local header at byte 0)",
    "zip-end": "a zip archive (zipfile, keras: end record at the end of the file)",
    "torch-legacy": "a legacy torch checkpoint (torch.load)",
    "tar": "a tar archive (tarfile)",
    "npy": "an .npy array (numpy.load)",
    "hdf5": "an HDF5 file (h5py, keras)",
    "gguf": "a GGUF model (llama.cpp, gguf)",
    "tflite": "a TFLite model (the TFLite interpreter)",
    "safetensors": "a safetensors file",
    "protobuf": "an ONNX / TensorFlow protobuf",
}


def check_polyglot(ctx, buf, where, name, kind):
    """A file (top level) that two loaders read as two formats is a finding: a scanner that
    looks at one of them misses what the other holds. Each reading is scanned. Returns the kind
    whose checker scans the file next.

    Readings: the format its first bytes say (what torch.load, numpy.load, safetensors, GGUF
    and TFLite readers go by), a zip end record at the end (zipfile, keras), an HDF5 superblock
    behind a user block (h5py looks at 0, 512, 1024, ...). Not polyglots: a TFLite model with
    its associated files zipped after it (TFLite Model Metadata), and an HDF5 file stored as a
    member of a zip (h5py then reads that member, which is scanned as one)."""
    n = len(buf)
    if n < 22:
        return kind
    head = _head(buf)
    start = sniff(buf, name, top=False)
    if start not in _READERS:
        start = "torch-legacy" if start is None and _is_legacy(bytes(buf[:64])) else None
    readings = [start] if start is not None else []
    if start != "zip" and kind == "zip":  # the zip sniffer goes first and, at top level, reads the end record
        readings.append("zip-end")
    sb = _native.h5_find_superblock(buf) if start != "hdf5" and n > 512 else -1
    if sb > 0 and not _is_zip_member_start(buf, sb):
        readings.append("hdf5")
    if start is None and readings and _complete_pickle(buf):
        # pickle.load (and torch.load / numpy.load(allow_pickle) of a file that is not a zip) runs
        # it; the other format's checker scans these first bytes as a pickle too
        readings.insert(0, "pickle")
    if len(readings) < 2 or readings == ["tflite", "zip-end"]:
        return "tflite" if start == "tflite" else kind
    what = " and as ".join(_READERS[r] + (f" at byte {sb}" if r == "hdf5" and r != start else "")
                           for r in readings)
    ctx.finding("suspicious", f"polyglot: the file reads as {what}; a loader or scanner that sees one format "
                "misses what the other holds (each was scanned)", where, offset=0, kind="polyglot")
    for r in readings[1:]:
        if r == "hdf5":
            CHECKERS["hdf5"](ctx, buf, where, name=name, designated=False)
    if start is not None and start != "zip" and "zip-end" in readings:
        if start == "torch-legacy":
            check_pickle(ctx, buf, where, name=name, designated=True, top=True)
        else:
            CHECKERS[start](ctx, buf, where, name=name, designated=True)
        return "zip"
    return kind


def _is_legacy(head: bytes) -> bool:
    from mfparse.formats.torch import is_legacy

    try:
        return is_legacy(head)
    except MFParseError:
        return False


def _is_zip_member_start(buf, pos: int) -> bool:
    """Does a stored member's data start at pos (an archive that holds that file)?"""
    if _head(buf, 4) != b"PK\x03\x04" and not _eocd_ok(buf):
        return False
    try:
        rows, _, _ = zip_directory(buf)
    except MFParseError:
        return False
    return any(r[2] == 0 and r[7] == pos for r in rows)


def check_text(ctx, buf, where, name=None, **_) -> bool:
    """A text file at the top level (replaced by mfparse.scan.formats.check_text: Keras JSON
    configs, chat templates)."""
    if keras_check.looks_like_json(buf):
        keras_check.check_json_file(ctx, buf, where)
    return True


def check_protobuf(ctx, buf, where, name=None, **_) -> bool:
    # replaced by mfparse.scan.formats.check_protobuf (the protobuf readers) at import
    ctx.error("protobuf model (ONNX / TensorFlow): its ops are not judged, so "
              "it cannot be called safe", where)
    return False


CHECKERS = {
    "zip": check_zip,
    "tar": check_tar,
    "npy": check_npy,
    "pickle": check_pickle,
    "hdf5": keras_check.check_hdf5_bytes,
    "safetensors": check_safetensors,
    "gguf": check_gguf,
    "tflite": check_tflite,
    "protobuf": check_protobuf,
    "text": check_text,
    "7z": check_7z,
    "rar": lambda ctx, buf, where, **kw: check_unreadable(ctx, buf, where, kind="rar"),
}
for _kind in ("gzip", "bz2", "xz", "lzma", "lz4", "zlib", "zstd"):
    CHECKERS[_kind] = (lambda k: (lambda ctx, buf, where, **kw: check_compressed(ctx, buf, where, kind=k, **kw)))(_kind)


# the reader-backed checkers (HDF5, protobuf, GGUF, text) and zip inspectors (Keras, chat
# templates, TorchScript code) plug in here, when the scanner is first used rather than when
# `import mfparse` runs
from mfparse.scan import formats as _formats  # noqa: E402

for _kind, _checker in _formats.checkers(hdf5_files=check_hdf5_files).items():
    register_checker(_kind, _checker)
ZIP_INSPECTORS.extend(i for i in _formats.zip_inspectors() if i not in ZIP_INSPECTORS)
