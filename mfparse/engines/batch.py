"""The worker's side of a batch: `run_batch(items, config)` scans each file in a scan child
(mfparse/engines/child.py), one child per worker thread, kept between batches.

Why a child process: a scan that crashes (a segfault in a C library, os._exit), hangs, or
allocates without end must cost one file, not a worker and the batch it was running. The
worker waits for each answer at most `timeout` seconds (select on the child's pipe); past it
the child is killed (SIGKILL: a hung C loop does not answer anything gentler) and a new one
started for the next file. A child that dies or is killed is reported by exit status or signal,
and the file is tried again, `retries` times, in a fresh child; then it gets an error record
with the reason. The memory cap is the child's RLIMIT_DATA (see child._limit_memory).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time

#: seconds a new scan child may take to import mfparse and answer "ready"
STARTUP_TIMEOUT_S = 120.0
#: at most this many bytes of a dead child's standard error are read for the reason
_STDERR_TAIL = 2048

_local = threading.local()


def child_config(config: dict) -> dict:
    """What the scan child needs of an engine config."""
    return {k: config.get(k) for k in ("memory_limit", "policy", "scanner", "storage_options")}


def run_batch(items, config: dict) -> list:
    """One report dict per (location, size, name) item, in order, each scanned in this thread's
    scan child (started, or restarted when the config differs, as needed). The task a Dask
    worker runs; the child stays for the next batch (and leaves by itself when idle)."""
    key = json.dumps(child_config(config), sort_keys=True)
    child = getattr(_local, "child", None)
    if child is None or child.key != key:
        if child is not None:
            child.close()
        child = _local.child = ScanChild(config, key)
    child.set_limits(config)
    return [child.scan(loc, size, name) for loc, size, name in items]


def _child_env() -> dict:
    """The worker's environment; when this mfparse comes from a source tree rather than an
    installed package, that tree first on PYTHONPATH, so that the child imports the same
    mfparse as the worker that starts it."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # above mfparse/
    if os.path.basename(root) not in ("site-packages", "dist-packages"):
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


class ChildDied(Exception):
    """The scan child ended or was killed; args[0] says how."""


class ScanChild:
    """A `python -m mfparse.engines.child` process and the pipes to it."""

    def __init__(self, config: dict, key: str | None = None):
        self.config = config
        self.key = key
        self.set_limits(config)
        self.proc = None
        self.lines = None
        self.stderr = None
        self.stderr_mark = 0
        self.aborted = False

    def set_limits(self, config: dict) -> None:
        """The worker's side of a config (a child is kept across runs whose child configs are
        the same; the timeout and retries are those of the batch at hand)."""
        self.timeout = config.get("timeout")
        self.retries = max(0, int(config.get("retries") or 0))

    # -- the process -------------------------------------------------------------------------
    def _start(self) -> None:
        import tempfile

        if self.stderr is None:
            self.stderr = tempfile.TemporaryFile(prefix="mfparse-scan-child-", buffering=0)
        self.stderr.seek(0)
        self.stderr.truncate()
        self.stderr_mark = 0
        self.proc = subprocess.Popen([sys.executable, "-m", "mfparse.engines.child"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr, close_fds=True, env=_child_env())
        self.lines = _Lines(self.proc.stdout.fileno())
        self._send(child_config(self.config))
        line = self.lines.next(STARTUP_TIMEOUT_S)
        if line is None:
            self._kill()
            raise ChildDied(f"did not start within {STARTUP_TIMEOUT_S:g} s")
        if not line:
            raise ChildDied("could not start: " + self._how_it_ended())
        if json.loads(line) != {"ready": True}:
            self._kill()
            raise ChildDied(f"answered {line[:80]!r} instead of ready")

    def _send(self, obj) -> None:
        data = json.dumps(obj).encode() + b"\n"
        view = memoryview(data)
        fd = self.proc.stdin.fileno()
        while view:
            view = view[os.write(fd, view):]

    def _kill(self) -> None:
        if self.proc is None:
            return
        try:
            self.proc.kill()
        except OSError:
            pass
        self._reap()

    def _reap(self) -> None:
        proc, self.proc = self.proc, None
        for f in (proc.stdin, proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # stuck in the kernel (a dead network mount): leave it
            pass
        self._last = proc.returncode

    def _how_it_ended(self) -> str:
        self._reap()
        rc = self._last
        if rc is None:
            how = "did not exit"
        elif rc < 0:
            try:
                name = signal.Signals(-rc).name
            except ValueError:
                name = f"signal {-rc}"
            how = f"killed by {name}" + (" (out of memory?)" if -rc == signal.SIGKILL else "")
        else:
            how = f"exited with status {rc}"
        tail = self._stderr_tail()
        return f"{how}: {tail}" if tail else how

    def _stderr_tail(self) -> str:
        try:
            self.stderr.seek(0, os.SEEK_END)
            end = self.stderr.tell()
            start = max(self.stderr_mark, end - _STDERR_TAIL)
            self.stderr.seek(start)
            text = self.stderr.read(end - start).decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        lines = [x.strip() for x in text.splitlines() if x.strip()]
        return lines[-1][:300] if lines else ""

    def abort(self) -> None:
        """From another thread: kill the child and make every scan still asked for return at
        once (an engine that is closing must not wait for a hung file)."""
        self.aborted = True
        proc = self.proc
        if proc is not None:
            try:
                proc.kill()
            except Exception:
                pass

    def close(self) -> None:
        if self.proc is not None:
            try:
                self.proc.stdin.close()  # end of input: the child exits
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                try:
                    self.proc.kill()
                except OSError:
                    pass
            self._reap()
        if self.stderr is not None:
            self.stderr.close()
            self.stderr = None

    # -- one file ------------------------------------------------------------------------------
    def scan(self, location: str, size, name: str) -> dict:
        """The report dict of one file; an error record when every try crashed or timed out."""
        t0 = time.perf_counter()
        reasons = []
        idle_restarts = 0
        while True:
            if self.aborted:
                return _failed(name, size, reasons + ["was stopped: the run was interrupted"], time.perf_counter() - t0)
            try:
                return self._try(location, size, name)
            except _IdleExit:
                idle_restarts += 1  # the child left because it was idle: not this file's doing
                if idle_restarts <= 3:
                    continue
                reasons.append("the scan process kept exiting")
            except ChildDied as e:
                reasons.append(str(e.args[0]))
            if len(reasons) > self.retries:
                return _failed(name, size, reasons, time.perf_counter() - t0)

    def _try(self, location: str, size, name: str) -> dict:
        if self.proc is not None and self.proc.poll() is not None:
            self._reap()  # exited while idle
        if self.proc is None:
            self._start()
        try:
            self.stderr_mark = self.stderr.seek(0, os.SEEK_END)
            if self.stderr_mark > (1 << 20):  # keep what a chatty child writes bounded
                self.stderr.seek(0)
                self.stderr.truncate()
                self.stderr_mark = 0
        except (OSError, ValueError):
            pass
        try:
            self._send({"location": location, "size": size, "name": name})
        except OSError:
            line = b""  # the child is gone (broken pipe)
        else:
            line = self.lines.next(self.timeout)
        if line is None:
            self._kill()
            raise ChildDied(f"timed out after {self.timeout:g} s")
        if not line:
            how = self._how_it_ended()
            if self._last == 0:
                raise _IdleExit()
            raise ChildDied(how)
        rec = json.loads(line)
        rec["path"] = name
        return rec


class _IdleExit(Exception):
    pass


def _failed(name: str, size, reasons: list, seconds: float) -> dict:
    """The error record of a file whose every try killed or hung its scan process."""
    from mfparse.scan.report import ScanReport

    tries = len(reasons)
    last = reasons[-1]
    same = all(r == last for r in reasons)
    why = last if same else "; ".join(reasons)
    text = (f"the scan process {why} ({tries} {'try' if tries == 1 else 'tries'}): the file cannot be judged")
    if last.startswith("timed out"):
        text = f"scan {why} ({tries} {'try' if tries == 1 else 'tries'}): the file cannot be judged"
    return ScanReport(path=name, verdict="error", errors=[text], size=size or 0, seconds=seconds).to_dict()


class _Lines:
    """Lines from a pipe, waiting at most `timeout` seconds for each."""

    def __init__(self, fd: int):
        self.fd = fd
        self.buf = bytearray()

    def next(self, timeout=None):
        """The next line (without its newline), b"" at end of input, None after `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 1]
                return line
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                    return None
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return b""
            self.buf += chunk
