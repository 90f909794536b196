"""`mfparse scan`: judge every pickle in a file without running it.

    >>> import mfparse
    >>> report = mfparse.scan("model.pth")
    >>> report.verdict            # "safe" | "unsafe" | "error"
    >>> for f in report.findings: # severity, module, qualname, member, pickle, offset, why
    ...     print(f.severity, f.global_name, f.location(), f.why)

The file is recognised by its bytes, never by its name: zip archives (torch checkpoints,
TorchScript, .npz, .keras, nested zips), tar, gzip/bz2/xz/lzma/zlib/lz4 streams, .npy files with
object dtype, legacy torch files with their stacked pickles, joblib files with raw arrays
between opcodes, and plain pickles with any extension or none. Every pickle found is run by the
symbolic interpreter (csrc/mf_pickle.c), which executes nothing, and every import, call, BUILD
and item-set it logs is judged against an allowlist (mfparse/scan/policy.py). See
docs/architecture.md, "Safety model".
"""

from __future__ import annotations

import os
import stat
import time

from mfparse.scan.report import Context, Finding, ScanReport, Where, display_path, render_text

SMALL_FILE = 1 << 20

__all__ = ["scan", "scan_paths", "ScanReport", "Finding", "register_checker", "render_text"]


def scan(path) -> ScanReport:
    """Scan one file (a path, pathlib.Path, bytes, or a binary file object).

    Returns:
        ScanReport with verdict "safe", "unsafe" or "error". Never raises for bad content
        (that is an error or a finding in the report); raises OSError when the file cannot be
        opened and IsADirectoryError for a directory.

    Example:
        >>> mfparse.scan("pytorch_model.bin").verdict
        'safe'
    """
    from mfparse.scan.containers import scan_buffer
    from mfparse.source import Source

    t0 = time.perf_counter()
    src = None
    if isinstance(path, (str, os.PathLike)):
        data = _read_small(path)
        if data is not None:
            src = Source(data)  # small files: one read beats setting up a memory map
            src.path = os.fspath(path)
    if src is None:
        src = Source(path)
    ctx = Context(display_path(path), src.size)
    name = os.path.basename(src.path) if src.path else None
    try:
        if src.size == 0:
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


def _read_small(path) -> bytes | None:
    """The bytes of a regular file of at most SMALL_FILE bytes, or None (larger files, pipes,
    devices and directories are opened as a Source). os-level calls: for the many tiny files
    of a directory scan, building a buffered file object costs more than the scan of a pickle."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
    try:
        st = os.fstat(fd)
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


def iter_files(paths, recursive: bool = False):
    """Expand paths: files as they are; directories (with recursive) walked in sorted order,
    every file whatever its extension (hidden files and .npy included)."""
    for p in paths:
        p = os.fspath(p)
        if os.path.isdir(p):
            if not recursive:
                raise IsADirectoryError(f"{p} is a directory (use --recursive)")
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for f in sorted(files):
                    full = os.path.join(root, f)
                    if os.path.isfile(full) and not os.path.islink(full):
                        yield full
        else:
            yield p


def _scan_to_dict(path: str) -> dict:
    try:
        return scan(path).to_dict()
    except OSError as e:
        return ScanReport(path=path, verdict="error", errors=[f"cannot read: {e}"]).to_dict()


def scan_paths(paths, recursive: bool = False, jobs: int = 1):
    """Scan many files; yields ScanReports in input order. jobs > 1 uses worker processes."""
    files = list(iter_files(paths, recursive))
    if jobs <= 1 or len(files) <= 1:
        for f in files:
            yield ScanReport.from_dict(_scan_to_dict(f))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as ex:
        for d in ex.map(_scan_to_dict, files, chunksize=max(1, len(files) // (jobs * 8))):
            yield ScanReport.from_dict(d)


def register_checker(kind: str, checker, sniffer=None, before: str | None = None, first_bytes=None) -> None:
    """Plug in a checker for a container or format kind (see mfparse/scan/containers.py):
    ``checker(ctx, buf, where, **kw) -> bool``, optionally with a sniffer
    ``sniffer(head, buf, name, top) -> bool`` placed before the sniffer named `before`, and the
    first bytes (a bytes object) the format can start with."""
    from mfparse.scan import containers

    containers.register_checker(kind, checker, sniffer, before, first_bytes)


from mfparse.scan import formats as _formats  # noqa: E402  (the reader-backed checkers)

_formats.register()
