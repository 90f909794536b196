"""What every format reader shares: the Reader interface and array views of stored bytes."""

from __future__ import annotations

from contextlib import contextmanager

from mfparse._lazy import numpy as np

from mfparse import dtypes
from mfparse.records import TensorInfo
from mfparse.errors import CorruptFileError, ResourceLimitError, UnsupportedFormatError


class Reader:
    """One open file of one format. Subclasses set `format` and fill `_tensors`."""

    format = "unknown"
    graph = None  # graph formats override it with a property (inputs, outputs, operators)
    #: sub-byte dtypes (dtypes.PACKED) this format packs low bits first, as dtypes.unpack reads
    #: them: read() returns their stored bytes (uint8) and ModelFile.read unpacks them
    unpacks: frozenset = frozenset()

    def __init__(self, source):
        self.source = source
        self._tensors: list[TensorInfo] = []

    def tensors(self) -> list[TensorInfo]:
        return self._tensors

    def metadata(self) -> dict:
        return {}

    def tree(self):
        return {t.name: t for t in self._tensors}

    def read(self, info: TensorInfo) -> np.ndarray:
        """The tensor's data as stored: packed sub-byte dtypes as their bytes (uint8)."""
        if info.offset is None:
            raise UnsupportedFormatError(f"tensor {info.name!r} has no data stored in the file")
        return source_view(self.source, info)


def c_strides(shape) -> tuple:
    """Element strides of a C-contiguous array of this shape."""
    out = [1] * len(shape)
    acc = 1
    for i in range(len(shape) - 1, -1, -1):
        out[i] = acc
        acc *= max(shape[i], 1)
    return tuple(out)


def is_contiguous(shape, stride) -> bool:
    """True when stride describes a C-contiguous layout (dims of size 1 may have any stride)."""
    if stride is None:
        return True
    expected = 1
    for d, s in zip(reversed(shape), reversed(stride)):
        if d != 1 and s != expected:
            return False
        expected *= d
    return True


def reader_of(obj) -> Reader | None:
    """The Reader behind `obj`: a Reader itself, or an open mfparse.ModelFile (its public
    `reader`); None for anything else (a path, bytes, a file object). The format helpers that
    take "a ModelFile or a path" (formats.tf.risky_ops, formats.keras.model_config, ...) use it,
    and `opened` for the path case, so no format module imports the API above it."""
    if isinstance(obj, Reader):
        return obj
    r = getattr(obj, "reader", None) if not isinstance(obj, (str, bytes, bytearray, memoryview)) else None
    return r if isinstance(r, Reader) else None


@contextmanager
def opened(obj, opener):
    """`opener(source)` (a format's own open function, returning a Reader or None) over a byte
    source for `obj` (a path, bytes, a binary file), both closed on exit."""
    from mfparse.source import Source

    src = Source(obj)
    try:
        reader = opener(src)
    except BaseException:
        src.close()
        raise
    try:
        yield reader
    finally:
        close = getattr(reader, "close", None)
        if close is not None:
            close()
        src.close()


# ---- readers on windows (docs/architecture.md, "Readers on windows") -------------------------

#: a parse over a sparse window gives up after this many rounds of fetching (a clean error)
MAX_ROUNDS = 4096
#: what a window fetch brings from each need's first missing byte, at least (rounded to 4 KiB)
WINDOW_FETCH = 16 * 1024
#: the most one need's fetch grows to while the needs of successive rounds follow each other
WINDOW_FETCH_MAX = 4 * 1024 * 1024
#: the most a reader's estimate (Window.want) makes one round fetch (a hostile count is not a
#: reason to fetch gigabytes; a real GGUF vocabulary is a few MB)
WINDOW_WANT_MAX = 64 * 1024 * 1024


def parse_windows(parse, source, first_ranges=(), *, fetch: int = WINDOW_FETCH, grow: bool = False,
                  prefix: bool = False, max_rounds: int = MAX_ROUNDS):
    """Run `parse(buf, window)` (a C parse given the whole file as buf) over the bytes of source.

    With a whole-file buffer (a local map, bytes) the parse runs once on it with window None:
    no presence checks, nothing changes. Otherwise the parse runs over the source's SparseMap
    (mfparse.io.sparse): every read of a block not fetched yet records what it needed and the
    parse fails (NeedMoreError, never seen by callers); all the needs of that pass are fetched
    in one `read_ranges` round trip and the parse runs again, until it needs nothing. A pass
    that recorded needs is retried whatever its outcome (an error after a skipped part may be
    a consequence of the bytes it lacked); a pass without needs is the answer, or its error.

    How much each need fetches: at least `fetch` bytes from its first missing byte; when a
    round's first need lies within what the previous round's would have reached (a walk over
    small records, one after the other), twice the previous amount, up to WINDOW_FETCH_MAX,
    so that a run of small records costs a few round trips and large records far apart cost
    `fetch` each. `grow`: add the reader's own estimate of what follows (Window.want: a GGUF
    vocabulary, the rest of a tensor table). `prefix`: a need at the end of the bytes held from
    the start of the file doubles that prefix (a pickle read front to back).

    Args:
        parse: callable(buf, window) -> result.
        first_ranges: (offset, n) ranges known to be needed, fetched before the first pass.
        max_rounds: more passes than this is a ResourceLimitError naming the source.
    """
    buf = source.buf
    if buf is not None:
        return parse(buf, None)
    from mfparse.io.sparse import sparse_map

    smap = sparse_map(source)
    with smap.lock:
        return _parse_rounds(parse, source, smap, first_ranges, fetch, grow, prefix, max_rounds)


def _parse_rounds(parse, source, smap, first_ranges, fetch, grow, prefix, max_rounds):
    from mfparse.errors import NeedMoreError

    if first_ranges:
        smap.fetch(first_ranges)
    win = smap.window
    step, reach = fetch, None
    for _ in range(max_rounds):
        win.clear()
        try:
            result = parse(smap.view, win)
        except NeedMoreError:
            pass
        except Exception:
            if not win.needs():
                raise
        else:
            if not win.needs():
                return result
        needs = win.needs()
        if not needs:  # a NeedMoreError without a recorded span: cannot happen; never loop on it
            raise NeedMoreError(f"{source.name}: a parse needed bytes it did not name")
        first = needs[0][0]
        step = min(step * 2, WINDOW_FETCH_MAX) if reach is not None and reach - step <= first < reach + step else fetch
        reach = first + step
        want = min(win.want, WINDOW_WANT_MAX) if grow else 0
        ranges = []
        for off, n in needs:
            k = max(n, step, want + want // 8 + fetch if want else 0)
            if prefix and smap.has(0, off):
                k = max(k, off)
            ranges.append((off, k))
        if smap.fetch(ranges) == 0 and smap.fetch(needs) == 0:
            raise NeedMoreError(f"{source.name}: a parse needs bytes {needs[0][0]}.. that are held already")
    raise ResourceLimitError(
        f"reading the file by ranges needs more than {max_rounds} rounds of requests; download it and open the "
        f"local copy", None, source.name)


#: a listing whose touched pages lie further apart than this on average pays the kernel's
#: readahead for every fault when the file is not in the page cache: it runs with MADV_RANDOM
SCATTERED = 256 * 1024
#: files smaller than this are listed with the default readahead whatever their layout
SMALL_FILE = 64 * 1024 * 1024


@contextmanager
def access(source, scattered: bool, prefetch=()):
    """The access hint of a listing over a local map (docs/architecture.md, "Readers on
    windows"): MADV_RANDOM while it runs when what it touches is scattered over a large file
    (each fault then reads one page, not a readahead window), MADV_WILLNEED on the ranges it
    will read whole (`prefetch`: a zip directory, a pickle), the default again afterwards
    (reading tensors is sequential). Measured cold (benchmarks/bench_remote.py): the 2.7 GB
    .pth lists in 0.12 s instead of 1.34 s, the .npz in 0.14 s instead of 1.21 s, the 1 GB ONNX
    in 0.11 s instead of 0.64 s; a 20,000-tensor .pth, whose local headers are dense, keeps its
    readahead."""
    if source.buf is None:
        yield
        return
    if prefetch:
        source.advise("willneed", prefetch)
    hint = scattered and source.size >= SMALL_FILE
    if hint:
        source.advise("random")
    try:
        yield
    finally:
        if hint:
            source.advise("normal")


def file_name(source) -> str:
    """The path of a source's file, or the path part of its URL ("" for bytes): what readers
    that go by file names (ONNX and TF protobufs) look at."""
    if source.path is not None:
        return source.path
    name = getattr(source, "name", "") or ""
    if "://" in name:
        from urllib.parse import unquote, urlsplit

        return unquote(urlsplit(name).path)
    return ""


def read_at(source, offset: int, n: int):
    """The bytes [offset, offset + n) of the file that exist (fewer at its end, as a slice):
    a zero-copy slice of a whole-file buffer (a local map), else fetched from the source (a
    remote file: exactly those bytes, one request unless held)."""
    buf = source.buf
    if buf is not None:
        return buf[offset:offset + n]
    offset = max(0, min(int(offset), source.size))
    n = max(0, min(int(n), source.size - offset))
    if n == 0:
        return memoryview(b"")
    return source.read_ranges([(offset, n)], 1)[0]


def read_many(source, ranges) -> list:
    """read_at for several ranges: one round trip for a remote source."""
    buf = source.buf
    if buf is not None:
        return [buf[o:o + n] for o, n in ranges]
    size = source.size
    fixed = []
    for o, n in ranges:
        o = max(0, min(int(o), size))
        fixed.append((o, max(0, min(int(n), size - o))))
    want = [r for r in fixed if r[1]]
    got = iter(source.read_ranges(want, 1)) if want else iter(())
    return [next(got) if n else memoryview(b"") for _o, n in fixed]


def stored_extent(info: TensorInfo, byteorder: str = "<") -> int:
    """Bytes of the file a tensor's view spans from its offset."""
    if info.dtype in dtypes.PACKED:
        return info.nbytes
    dt = dtypes.numpy_dtype(info.dtype, byteorder)
    if is_contiguous(info.shape, info.stride):
        return info.numel * dt.itemsize
    if info.numel == 0:
        return 0
    return (1 + sum((d - 1) * s for d, s in zip(info.shape, info.stride))) * dt.itemsize


def source_view(source, info: TensorInfo, byteorder: str = "<") -> np.ndarray:
    """A tensor of the file as numpy: a read-only zero-copy view of a whole-file buffer (a
    local map), or, for a remote file, an array over exactly the tensor's bytes, fetched."""
    buf = source.buf
    if buf is not None:
        return view(buf, info, byteorder)
    n = stored_extent(info, byteorder)
    if info.offset is None or info.offset < 0 or info.offset + n > source.size:
        raise CorruptFileError(f"tensor {info.name!r} data ({n} bytes) runs past the end of the file", info.offset)
    data = source.read_ranges([(info.offset, n)], 1)[0] if n else memoryview(b"")
    return view(data, info._replace(offset=0), byteorder)


def view(buf, info: TensorInfo, byteorder: str = "<", base=None) -> np.ndarray:
    """A read-only numpy view of a tensor's stored bytes in buf.

    Contiguous tensors become a plain frombuffer view; strided ones a strided view over the
    span they touch. Packed sub-byte dtypes come back as their raw bytes (uint8).
    """
    numel = info.numel
    if info.dtype in dtypes.PACKED:
        n = info.nbytes
        _check_range(buf, info.offset, n, info)
        return np.frombuffer(buf, dtype=np.uint8, count=n, offset=info.offset)
    dt = dtypes.numpy_dtype(info.dtype, byteorder)
    if is_contiguous(info.shape, info.stride):
        _check_range(buf, info.offset, numel * dt.itemsize, info)
        arr = np.frombuffer(buf, dtype=dt, count=numel, offset=info.offset)
        return arr.reshape(info.shape)
    if numel == 0:
        return np.empty(info.shape, dtype=dt)
    extent = 1 + sum((d - 1) * s for d, s in zip(info.shape, info.stride))
    _check_range(buf, info.offset, extent * dt.itemsize, info)
    flat = np.frombuffer(buf, dtype=dt, count=extent, offset=info.offset)
    return np.lib.stride_tricks.as_strided(
        flat, shape=info.shape, strides=tuple(s * dt.itemsize for s in info.stride), writeable=False
    )


def _check_range(buf, offset: int, n: int, info: TensorInfo) -> None:
    if offset < 0 or n < 0 or offset + n > len(buf):
        raise CorruptFileError(
            f"tensor {info.name!r} data ({n} bytes) runs past the end of the file", offset
        )
