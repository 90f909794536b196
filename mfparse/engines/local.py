"""The local engines: processes on this machine.

- `ordered_map(fn, items, jobs)`: what `mfparse scan --jobs N` uses (mfparse.scan.scan_paths):
  `fn` over the items in `jobs` spawned processes, answers in INPUT ORDER (a file that takes
  long holds back the output of those after it, never their scanning). A crash of a process
  breaks the pool (BrokenProcessPool): the command reports it and stops, as before.
- `LocalEngine`: what `scan_many(engine="local")` uses: `jobs` threads, each driving its own
  scan child process (mfparse/engines/batch.py), batches answered AS THEY FINISH; a file that
  crashes or hangs costs its own child only (timeouts, memory limit and retries as on Dask).

This module imports nothing of mfparse at module level (mfparse.scan imports it).
"""

from __future__ import annotations

import os


def ordered_map(fn, items, jobs: int):
    """fn(item) for each item, in input order, computed in `jobs` spawned worker processes
    (`fn` must be a module-level function: it is sent by name)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    items = list(items)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as ex:
        yield from ex.map(fn, items, chunksize=max(1, len(items) // (jobs * 8)))


class LocalEngine:
    """Batches on `jobs` threads of this process, each with its own scan child."""

    name = "local"

    def __init__(self, jobs: int | None = None):
        self.jobs = max(1, int(jobs or os.cpu_count() or 1))
        self.slots = self.jobs
        self.pool = None
        self._children: dict = {}

    def start(self) -> None:
        import threading
        from concurrent.futures import ThreadPoolExecutor

        self._lock = threading.Lock()
        self.pool = ThreadPoolExecutor(self.jobs, thread_name_prefix="mfparse-scan")

    def _run(self, items, config):
        import json
        import threading

        from mfparse.engines.batch import ScanChild, child_config

        key = json.dumps(child_config(config), sort_keys=True)
        me = threading.get_ident()
        with self._lock:
            child = self._children.get(me)
        if child is None or child.key != key:
            if child is not None:
                child.close()
            child = ScanChild(config, key)
            with self._lock:
                self._children[me] = child
        child.set_limits(config)
        return [child.scan(loc, size, name) for loc, size, name in items]

    def submit(self, items, config):
        return self.pool.submit(self._run, items, config)

    def wait(self, handles, timeout=None) -> set:
        from concurrent.futures import FIRST_COMPLETED, wait

        return wait(handles, timeout=timeout, return_when=FIRST_COMPLETED)[0]

    def outcome(self, handle):
        """("ok", [report dicts]) or ("failed", why)."""
        exc = handle.exception()
        if exc is None:
            return "ok", handle.result()
        return "failed", f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        if self.pool is not None:
            for child in list(self._children.values()):
                child.abort()  # a batch still running (a consumer that stopped early, ^C) ends now
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        for child in list(self._children.values()):
            child.close()
        self._children.clear()
