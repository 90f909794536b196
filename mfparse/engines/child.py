"""The scanning side of the engines: `scan_item` (one file to one report dict), `scan_inline`
(a batch in this process) and the scan child (`python -m mfparse.engines.child`), the process
that an engine's worker keeps beside it so that a scan that crashes, hangs or eats memory takes
down only the child (mfparse/engines/batch.py is the worker's side of the pipe).

The child's protocol, one JSON document a line on its standard input and output: first the
child config ({"memory_limit", "policy", "scanner", "storage_options"}), answered by
{"ready": true}; then one request {"location", "size", "name"} at a time, answered by the
report dict. The child exits on end of input, or with status 0 after IDLE_EXIT_S seconds
without a request (so that a worker left idle does not keep it forever).
"""

from __future__ import annotations

import os
import sys
import time

#: seconds without a request after which a scan child exits (status 0)
IDLE_EXIT_S = 120.0


def scan_item(location: str, size, name: str, policy=None, storage_options=None) -> dict:
    """The report dict (ScanReport.to_dict) of one file: a local path, or a URL. Never raises
    for the file's content or for an unreadable file (an error record)."""
    from mfparse.scan import scan as scan_file
    from mfparse.io.base import is_url

    t0 = time.perf_counter()
    try:
        if is_url(location) and location[:7].lower() != "file://":
            # read whole, front to back, spooled to a temporary file past 64 MiB (mfparse.scan)
            report = scan_file(location, policy=policy, storage_options=storage_options)
        else:
            if location[:7].lower() == "file://":
                from mfparse.io import open_fileset

                location = open_fileset(location).root
            report = scan_file(location, policy=policy)
    except OSError as e:
        return _error(name, size, f"cannot read: {_os_error_text(e)}", time.perf_counter() - t0)
    except Exception as e:  # never a verdict from a failed scan
        return _error(name, size, f"internal error while scanning ({type(e).__name__}: {e}): the file cannot be "
                                  "judged", time.perf_counter() - t0)
    report.path = name
    return report.to_dict()


def _os_error_text(e: OSError) -> str:
    from mfparse.scan import os_error_text

    return os_error_text(e)


def _error(name: str, size, message: str, seconds: float = 0.0) -> dict:
    from mfparse.scan.report import ScanReport

    return ScanReport(path=name, verdict="error", errors=[message], size=size or 0, seconds=seconds).to_dict()


def resolve_scanner(spec):
    """The function that scans one file: mfparse's scan_item, or a "module:function" given by
    the caller (tests use it to make a file crash, hang or go slowly; pipelines to add their
    own checks). Called as fn(location, size, name, policy=..., storage_options=...)."""
    if not spec:
        return scan_item
    import importlib

    module, _, attr = spec.partition(":")
    fn = importlib.import_module(module)
    for part in attr.split("."):
        fn = getattr(fn, part)
    return fn


def make_policy(d):
    """The mfparse.scan.Policy of a policy dict (Policy.to_dict()), or None."""
    if not d:
        return None
    from mfparse.scan.policy import Policy

    return Policy(**d, source="--policy")


def scan_inline(items, config) -> list:
    """Scan a batch in this process (a Dask task with isolate=False): one report dict per
    (location, size, name) item, in order. A crash here takes the process with it; the
    engine's client splits the batch to find the file."""
    scanner = resolve_scanner(config.get("scanner"))
    policy = make_policy(config.get("policy"))
    opts = config.get("storage_options")
    return [scanner(loc, size, name, policy=policy, storage_options=opts) for loc, size, name in items]


# ---- the child process ---------------------------------------------------------------------

def _limit_memory(limit) -> None:
    """Cap the child's data segment (heap, anonymous private mappings): RLIMIT_DATA, not
    RLIMIT_AS, because the scanner memory-maps the files it judges and a read-only file map
    counts toward the address space (a 20 GB checkpoint would fail under any useful
    RLIMIT_AS) but not toward the data segment (Linux >= 4.7). Allocation past the cap fails
    cleanly (MemoryError, an arena error): the file's report says it ran out of memory."""
    if not limit:
        return
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    cap = int(limit) if hard == resource.RLIM_INFINITY else min(int(limit), hard)
    resource.setrlimit(resource.RLIMIT_DATA, (cap, hard))


def _die_with_parent() -> None:
    """Ask Linux to kill this child when the worker that started it dies (a hung scan must not
    outlive its worker); elsewhere end of input does it once the scan returns."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class _Lines:
    """Lines from a file descriptor, waiting at most `timeout` seconds for each (select on the
    descriptor itself: a buffered reader would hide what it has already read)."""

    def __init__(self, fd: int):
        self.fd = fd
        self.buf = b""

    def next(self, timeout=None):
        """The next line (without its newline), b"" at end of input, None after `timeout`."""
        import select

        while b"\n" not in self.buf:
            if timeout is not None and not select.select([self.fd], [], [], timeout)[0]:
                return None
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return b""
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line


def _write_all(out, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[out.write(view):]


def main() -> int:
    import json

    _die_with_parent()
    # the protocol keeps file descriptors 0 and 1; anything else printed goes to standard error
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    lines = _Lines(0)
    first = lines.next()
    if not first:
        return 0
    config = json.loads(first)
    scanner = resolve_scanner(config.get("scanner"))
    policy = make_policy(config.get("policy"))
    opts = config.get("storage_options")
    import mfparse.scan  # noqa: F401  (imported before the memory cap and before "ready")

    _limit_memory(config.get("memory_limit"))
    _write_all(out, b'{"ready": true}\n')
    while True:
        line = lines.next(IDLE_EXIT_S)
        if not line:  # idle, or the worker closed the pipe
            return 0
        req = json.loads(line)
        try:
            rec = scanner(req["location"], req.get("size"), req["name"], policy=policy, storage_options=opts)
        except MemoryError:
            rec = _error(req["name"], req.get("size"), "ran out of memory while scanning (memory limit "
                                                       f"{config.get('memory_limit')} bytes): the file cannot be judged")
        except Exception as e:
            rec = _error(req["name"], req.get("size"), f"internal error while scanning ({type(e).__name__}: {e}): "
                                                       "the file cannot be judged")
        _write_all(out, json.dumps(rec).encode() + b"\n")


if __name__ == "__main__":
    sys.exit(main())
