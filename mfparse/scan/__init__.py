"""`mfparse scan`: judge every pickle in a file without running it.

    >>> import mfparse
    >>> report = mfparse.scan("model.pth")
    >>> report.verdict            # "safe" | "unsafe" | "error"
    >>> for f in report.findings: # severity, module, qualname, member, pickle, offset, why
    ...     print(f.severity, f.global_name, f.location(), f.why)
    >>> from mfparse.scan import Policy   # what `mfparse scan --allow/--fail-on/--policy` builds
    >>> mfparse.scan("training_args.bin", policy=Policy(allow=["mylab.Config"])).verdict

Severities: "dangerous" and "suspicious" make a file unsafe; "info" (an import of a known-benign
class such as transformers' TrainingArguments, or a name the policy allows) never does.

The file is recognised by its bytes, never by its name: zip archives (torch checkpoints,
TorchScript, .npz, .keras, nested zips), tar, gzip/bz2/xz/lzma/zlib/lz4 streams, .npy files with
object dtype, legacy torch files with their stacked pickles, joblib files with raw arrays
between opcodes, and plain pickles with any extension or none. Every pickle found is run by the
symbolic interpreter (csrc/mf_pickle.c), which executes nothing, and every import, call, BUILD
and item-set it logs is judged against an allowlist (mfparse/scan/policy.py). See
docs/architecture.md, "Safety model".
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import time

from mfparse.scan.report import Context, Finding, ScanReport, Where, display_path, render_text

SMALL_FILE = 1 << 20
#: the most bytes read from standard input or a pipe (`mfparse scan -`)
MAX_STREAM_BYTES = 4 << 30
#: the path that names standard input in scan_paths (a file named "-" is "./-")
STDIN = "-"

__all__ = ["scan", "scan_paths", "scan_stdin", "ScanReport", "Finding", "Policy", "register_checker",
           "render_text"]


def __getattr__(name):
    if name == "Policy":  # mfparse.scan.Policy: the user's allowlist, severities and fail-on level
        from mfparse.scan.policy import Policy

        return Policy
    raise AttributeError(f"module 'mfparse.scan' has no attribute {name!r}")


def scan(path, policy=None, storage_options=None) -> ScanReport:
    """Scan one file (a path, pathlib.Path, bytes, or a binary file object).

    Args:
        path: what to scan.
        policy: a mfparse.scan.Policy (names to allow, severity overrides); None for mfparse's
            own judgement.
        storage_options: for a URL (http(s)://, s3://, gs://, hf://, any fsspec URL): the
            filesystem's options (credentials, endpoint). A remote file is read whole, front to
            back, and judged like a local one (see _scan_url).

    Returns:
        ScanReport with verdict "safe", "unsafe" or "error". Never raises for bad content
        (that is an error or a finding in the report); raises OSError when the file cannot be
        opened and IsADirectoryError for a directory. A pipe or character device is read to
        its end (at most MAX_STREAM_BYTES; more is an error in the report).

    Example:
        >>> mfparse.scan("pytorch_model.bin").verdict
        'safe'
    """
    t0 = time.perf_counter()
    if path.__class__ is str and "://" in path:
        from mfparse.io.base import is_url

        if is_url(path):
            report = _scan_url(path, storage_options, t0)
            return report if policy is None else policy.apply(report)
    quick = _quick or _load_quick()
    got = None
    if quick.ENABLED:  # small plain pickles and torch zips in one C call (mfparse/scan/quick.py)
        try:
            got = quick.scan(path, t0)
        except Exception:  # never an answer of its own: the full scan decides
            if os.environ.get("MFPARSE_SCAN_RAISE"):
                raise
    if got.__class__ is ScanReport:
        if quick.CHECK:  # MFPARSE_SCAN_FASTPATH=check: the full scan must say the same
            quick.compare(got, _scan(path, None, time.perf_counter()))
        return got if policy is None else policy.apply(got)
    report = _scan(path, got, t0)
    return report if policy is None else policy.apply(report)


def _scan(path, got, t0: float, name: str | None = None) -> ScanReport:
    """The full scan (got: the bytes the fast path read from the path, or None; name: what to
    call bytes passed as `path`, a remote file's URL)."""
    from mfparse.scan.containers import scan_buffer
    from mfparse.source import Source

    src = None
    if isinstance(path, (str, os.PathLike)):
        data = got if got is not None else _read_small(path)  # the fast path hands over what it read
        if isinstance(data, _TooBig):
            return _too_big(os.fspath(path), data.limit, time.perf_counter() - t0)
        if data is not None:
            src = Source(data)  # small files, pipes: no memory map
            src.path = os.fspath(path)
    if src is None:
        src = Source(path)
        if name is not None:
            src.path = name
    ctx = Context(name or display_path(path), src.size, scan_buffer)
    ctx.mapped = _random_access(src)
    name = os.path.basename(src.path) if src.path else None
    if name is not None and "://" in src.path:  # a URL: the last part of its path
        name = src.path.split("?", 1)[0].split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1] or None
    try:
        if src.size == 0:
            from mfparse.scan.nonmodel import empty_ok

            if name is not None and empty_ok(name):
                ctx.note("empty file: nothing in it would be unpickled")
            else:
                ctx.error("empty file: nothing to judge")
        else:
            scan_buffer(ctx, src.buf, Where(None, 0, 0), designated=True, name=name, top=True)
    except MemoryError:
        ctx.error("ran out of memory while scanning: the file cannot be judged")
    except RecursionError:
        ctx.error("structure nested too deeply to scan: the file cannot be judged")
    except Exception as e:  # a bug in the scanner must never turn into a verdict of "safe"
        if os.environ.get("MFPARSE_SCAN_RAISE"):
            raise
        ctx.error(f"internal error while scanning ({type(e).__name__}: {e}): the file cannot be judged")
    finally:
        src.close()
    return ctx.report(time.perf_counter() - t0)


#: a remote file is fetched by ranges of this size, REMOTE_WAVE of them at a time
REMOTE_CHUNK = 8 << 20
REMOTE_WAVE = 4
#: the largest remote file scanned (it is spooled to a temporary file while it is judged)
MAX_REMOTE_BYTES = 64 << 30


def _scan_url(url: str, storage_options, t0: float) -> ScanReport:
    """A remote file, read front to back: the scanner judges every byte a loader could reach
    (pickles, every zip member's header and CRC, what lies between members), so unlike a
    listing it needs the whole file. Read by ranges of REMOTE_CHUNK, REMOTE_WAVE requests at a
    time, each answer checked against the version the first one saw (a file replaced meanwhile
    is SourceChangedError, never a mix); from a server that ignores Range, its one 200 body as
    a stream. The bytes are spooled (mfparse.io.local.spool: in memory up to 64 MiB, then in an
    unlinked temporary file that is mapped), so memory stays bounded; the report names the URL
    without credentials. Raises OSError (mfparse.io.SourceError) when the file cannot be read."""
    from mfparse.io import open_source
    from mfparse.io.base import RangeNotSupportedError
    from mfparse.io.local import spool

    if url[:7].lower() == "file://":
        src = open_source(url)
        try:
            local = src.path
        finally:
            src.close()
        return scan(local)
    from mfparse.io.remote import redact_url

    name = redact_url(url)
    try:
        src = open_source(url, storage_options)
    except RangeNotSupportedError:
        src = None
    try:
        if src is not None:
            data = spool(_ranged_chunks(src), MAX_REMOTE_BYTES, name)
        else:
            data = _spooled_stream(url, storage_options, name)
    except RangeNotSupportedError:  # a server that answered ranges at first, then the whole file
        data = None
    except Exception as e:
        from mfparse.errors import TruncatedFileError

        if not isinstance(e, TruncatedFileError):
            raise
        return ScanReport(path=name, verdict="error", seconds=time.perf_counter() - t0,
                          errors=[f"the file ended early while it was read: {e}"])
    finally:
        if src is not None:
            src.close()
    if data is None:
        data = _spooled_stream(url, storage_options, name)
    return _scan(data, None, t0, name)


def _spooled_stream(url: str, storage_options, name: str):
    """A remote file read as one stream (its 200 body), spooled."""
    from mfparse.io.local import spool
    from mfparse.io.remote import open_stream

    stream = open_stream(url, storage_options)
    try:
        return spool(stream.chunks(), MAX_REMOTE_BYTES, name)
    finally:
        stream.close()


def _ranged_chunks(src):
    """The bytes of a ranged remote source in order, REMOTE_WAVE ranges a request wave."""
    size = src.size
    at = 0
    while at < size:
        ranges = []
        while at < size and len(ranges) < REMOTE_WAVE:
            n = min(REMOTE_CHUNK, size - at)
            ranges.append((at, n))
            at += n
        yield from src.read_ranges(ranges)


_quick = None


def _load_quick():
    """mfparse.scan.quick, imported on the first scan (it builds the C tables from the lists)."""
    global _quick
    from mfparse.scan import quick

    _quick = quick
    return quick


def _random_access(src):
    """The file's memory map (None for bytes), set to random access: scan reads headers,
    directories and pickles scattered over the file, and the kernel's read-around (up to
    megabytes per page touched) would read tensor data nobody judges (issue 16 class 11). Ranges
    read whole are prefetched (containers.prefetch)."""
    mm = getattr(src, "_mmap", None)
    if mm is not None and hasattr(mm, "madvise"):
        import mmap

        try:
            mm.madvise(mmap.MADV_RANDOM)
        except (AttributeError, OSError, ValueError):
            pass
    return mm


class _TooBig:
    """A stream longer than the bytes mfparse reads from one."""

    def __init__(self, limit: int):
        self.limit = limit


def _too_big(name, limit: int, seconds: float = 0.0) -> ScanReport:
    return ScanReport(path=name, verdict="error", seconds=seconds,
                      errors=[f"more than {limit:,} bytes from a pipe: more than mfparse reads from one "
                              "(write it to a file, or raise --max-stdin-bytes)"])


def _read_stream(fd: int, limit: int):
    """Everything a pipe or device gives, as a read-only buffer (mfparse.io.local.spool: in
    memory up to 64 MiB, then in a temporary file), or _TooBig past `limit` bytes."""
    from mfparse.io.local import spool

    def chunks():
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return
            yield chunk

    try:
        return spool(chunks(), limit)
    except OSError as e:
        if e.errno == errno.EFBIG:
            return _TooBig(limit)
        raise


def _read_small(path) -> bytes | memoryview | _TooBig | None:
    """The bytes of a regular file of at most SMALL_FILE bytes, everything a pipe or character
    device gives (at most MAX_STREAM_BYTES), or None (larger files and directories are opened as
    a Source). os-level calls: for the many tiny files of a directory scan, building a buffered
    file object costs more than the scan of a pickle."""
    if os.path.isdir(path):
        return None  # Source raises IsADirectoryError
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
    try:
        st = os.fstat(fd)
        if stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode) or stat.S_ISSOCK(st.st_mode):
            return _read_stream(fd, MAX_STREAM_BYTES)  # a memory map would see nothing
        if not stat.S_ISREG(st.st_mode) or st.st_size > SMALL_FILE:
            return None
        chunks = []
        total = 0
        while True:  # to the end, whatever the size said (the file may change under us)
            chunk = os.read(fd, max(st.st_size - total, 0) + 1)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > SMALL_FILE:
                return None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)  # b"" for an empty file
    finally:
        os.close(fd)


def os_error_text(e: OSError) -> str:
    """What an OSError says is wrong, without the errno and path decoration: "no such file or
    directory", "permission denied", "is a directory"."""
    what = e.strerror or (e.args[0] if e.args and isinstance(e.args[0], str) else "") or type(e).__name__
    return what[:1].lower() + what[1:]


class _Unlisted:
    """A directory that os.walk could not list (reported as an error, never skipped silently)."""

    def __init__(self, path: str, error: OSError):
        self.path = path
        self.error = error


def iter_files(paths, recursive: bool = True):
    """Expand paths: files as they are; directories walked in sorted order, every file whatever
    its extension (hidden files and .npy included), symbolic links to files followed (Hugging
    Face snapshot folders are links into a blob store), links to folders, pipes and devices
    inside them left alone. A folder that cannot be listed yields an _Unlisted. recursive=False
    refuses directories (IsADirectoryError); STDIN ("-") is passed through."""
    for p in paths:
        p = os.fspath(p)
        if p != STDIN and os.path.isdir(p):
            if not recursive:
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), p)
            unlisted: list = []
            for root, dirs, files in os.walk(p, onerror=unlisted.append):
                while unlisted:
                    e = unlisted.pop(0)
                    yield _Unlisted(e.filename or root, e)
                dirs.sort()
                for f in sorted(files):
                    full = os.path.join(root, f)
                    if os.path.isfile(full) or (os.path.islink(full) and not os.path.exists(full)):
                        yield full  # a broken link is reported as a file that cannot be read
            for e in unlisted:
                yield _Unlisted(e.filename or p, e)
        else:
            yield p


def _scan_to_dict(path: str) -> dict:
    try:
        return scan(path).to_dict()
    except OSError as e:
        return ScanReport(path=path, verdict="error", errors=[f"cannot read: {os_error_text(e)}"]).to_dict()


def scan_stdin(max_bytes: int = MAX_STREAM_BYTES, stream=None) -> ScanReport:
    """Scan what standard input (or `stream`, a binary file object) holds: a pickle, an archive,
    any file mfparse scans. A redirected regular file is memory-mapped; a pipe is read to its
    end (in memory up to 64 MiB, then in a temporary file: mfparse.io.local.spool), at most
    max_bytes (more is an error in the report, not a verdict on part of it)."""
    if stream is None:
        stream = sys.stdin.buffer
    name = "<stdin>"
    t0 = time.perf_counter()
    try:
        fd = stream.fileno()
        st = os.fstat(fd)
    except (AttributeError, OSError, ValueError):
        fd, st = None, None
    if fd is not None and os.isatty(fd):
        return ScanReport(path=name, verdict="error", errors=["standard input is a terminal: pipe or redirect a "
                                                              "file into it (mfparse scan - < model.pt)"])
    if st is not None and stat.S_ISREG(st.st_mode) and os.lseek(fd, 0, os.SEEK_CUR) == 0:
        r = scan(stream)  # a file redirected into stdin: mapped, no size limit
    else:
        data = _read_stream(fd, max_bytes) if fd is not None else stream.read(max_bytes + 1)
        if isinstance(data, _TooBig) or len(data) > max_bytes:
            return _too_big(name, max_bytes, time.perf_counter() - t0)
        r = scan(data)
    r.path = name
    return r


def _report(item, max_stdin_bytes: int) -> ScanReport:
    if isinstance(item, _Unlisted):
        return ScanReport(path=item.path, verdict="error",
                          errors=[f"cannot list this folder: {os_error_text(item.error)}"])
    if item == STDIN:
        return scan_stdin(max_stdin_bytes)
    return ScanReport.from_dict(_scan_to_dict(item))


def scan_paths(paths, recursive: bool = True, jobs: int = 1, max_stdin_bytes: int = MAX_STREAM_BYTES,
               policy=None):
    """Scan files, folders (recursively) and "-" (standard input); yields ScanReports in input
    order. jobs > 1 scans files in worker processes (mfparse.engines.local.ordered_map;
    standard input in this one). policy: a mfparse.scan.Policy applied to every report. For
    many files, URLs, timeouts and Dask: mfparse.scan_many."""
    if policy is not None:
        for r in scan_paths(paths, recursive, jobs, max_stdin_bytes):
            yield policy.apply(r)
        return
    items = list(iter_files(paths, recursive))
    files = [f for f in items if isinstance(f, str) and f != STDIN]
    if jobs <= 1 or len(files) <= 1:
        for item in items:
            yield _report(item, max_stdin_bytes)
        return
    from mfparse.engines.local import ordered_map  # the process pool (in input order)

    done = ordered_map(_scan_to_dict, files, jobs)
    try:
        for item in items:
            if isinstance(item, str) and item != STDIN:
                yield ScanReport.from_dict(next(done))
            else:
                yield _report(item, max_stdin_bytes)
    finally:
        done.close()


def register_checker(kind: str, checker, sniffer=None, before: str | None = None, first_bytes=None) -> None:
    """Plug in a checker for a container or format kind (see mfparse/scan/containers.py):
    ``checker(ctx, buf, where, **kw) -> bool``, optionally with a sniffer
    ``sniffer(head, buf, name, top) -> bool`` placed before the sniffer named `before`, and the
    first bytes (a bytes object) the format can start with."""
    from mfparse.scan import containers

    containers.register_checker(kind, checker, sniffer, before, first_bytes)

