"""Scanning many files: `scan_many(sources, engine="local"|"dask", ...)` yields one report dict
per file (the ScanReport.to_dict() record of `mfparse scan --jsonl`) as each finishes.

    >>> import mfparse
    >>> for rec in mfparse.scan_many(["s3://bucket/models/", "@more.txt"], engine="dask",
    ...                              address="tcp://scheduler:8786", timeout=600):
    ...     print(rec["path"], rec["verdict"])

How it keeps the client's memory bounded and every file reported exactly once
(docs/architecture.md, "Engines"):

- sources are listed lazily (mfparse/engines/sources.py) and cut into batches of at most
  `batch_size` files or `batch_bytes` bytes (64 files, 16 MiB: big files travel in small
  batches so that the workers share them evenly);
- at most `window` batches are in flight (default: twice the workers' threads, at least 4);
  the client waits for the first to finish, hands its records out, and sends the next; no
  list of all files or futures is ever built;
- each file gets a key (journal.key_of) when it is put in a batch; a file listed twice (two
  sources naming it, `./a` and `a`) or already in the `resume` report is skipped, and each
  batch answers one record per file it holds, so each file is reported exactly once;
- a batch whose task is lost (Dask's KilledWorker: its workers died each time it ran) is split
  in halves and both sent again, down to the one file that kills workers, which is run once
  more alone (nothing else in flight: Dask charges every task a dying worker was given, so a
  file that only shared the worker is cleared there) and then reported as an error; a task that fails for another reason (mfparse missing on a worker) gives an
  error record to each of its files.

Only plain data crosses process boundaries: (location, size, name) items, a config dict
(policy as a dict, timeout, memory limit, retries, scanner, storage options) and report dicts.
"""

from __future__ import annotations

import os
from collections import deque

from mfparse.units import parse_size

#: files per batch (one task): one file per task costs ~200 files/s on Dask, 64 ~4,600 files/s
DEFAULT_BATCH_SIZE = 64
#: a batch is closed when its files add up to this many bytes (big files: smaller batches)
DEFAULT_BATCH_BYTES = 16 << 20
#: tries after the first for a file whose scan process crashed or timed out
DEFAULT_RETRIES = 1
ENGINES = ("local", "dask")

__all__ = ["scan_many", "ENGINES", "parse_bytes"]


def scan_many(sources, engine: str = "local", *, address=None, client=None, workers: int | None = None,
              jobs: int | None = None, policy=None, timeout: float | None = None, memory_limit=None,
              retries: int = DEFAULT_RETRIES, resume=None, batch_size: int | None = None, batch_bytes=None,
              window: int | None = None, isolate: bool = True, storage_options: dict | None = None,
              scanner: str | None = None):
    """Scan files, folders, globs, @lists and URLs on a local pool or a Dask cluster; yield
    each file's report dict (ScanReport.to_dict(); ScanReport.from_dict reads it back) as it
    finishes, in no particular order.

    Args:
        sources: paths, folders (walked as `mfparse scan` walks them), glob patterns,
            "@list.txt" (one source a line), fsspec URLs or prefixes (s3://bucket/models/,
            https://host/model.bin, hf://org/model). A single string is one source.
        engine: "local" (`jobs` threads on this machine, each with a scan child process) or
            "dask".
        address: the Dask scheduler (tcp://host:8786). client: a distributed.Client made by the
            caller (dask-kubernetes, Coiled, ...; left open). workers: with neither, the size
            of the LocalCluster started and closed here (default: the CPU count).
        jobs: local engine: files scanned at once (default: the CPU count).
        policy: a mfparse.scan.Policy applied to every report (on the workers).
        timeout: seconds one file's scan may take; past it the scan process is killed and the
            file tried again (`retries`), then reported as an error.
        memory_limit: bytes (or "4GB", "512MiB") of heap a scan process may use (RLIMIT_DATA:
            memory maps of the scanned file do not count); past it the file's report says it
            ran out of memory.
        retries: tries after the first for a file whose scan process crashed or timed out.
        resume: a report (JSONL, as `mfparse scan --report` writes it: its .partial is read
            when there is one), a journal.DoneSet, or paths: files already reported, skipped.
        batch_size, batch_bytes: files per task, and the bytes at which a batch is closed.
        window: batches in flight at most (default: twice the workers' threads, at least 4).
        isolate: Dask only: False scans in the worker process itself (no child; faster for
            many tiny files; a crash then kills the worker and the batch is split to find the
            file; no timeout or memory limit).
        storage_options: fsspec options for URLs (sent to the workers with each task: prefer
            credentials the workers find in their own environment).
        scanner: "module:function" called instead of mfparse's scan for each file, as
            fn(location, size, name, policy=..., storage_options=...) -> report dict (tests
            use it to make files crash or hang; pipelines to add checks).

    Raises:
        ValueError: a bad argument (at the call, before anything starts).
        ImportError: engine="dask" without dask and distributed (`pip install mfparse[dask]`).
    """
    if isinstance(sources, (str, bytes, os.PathLike)):
        sources = [sources]
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    if memory_limit is not None:
        memory_limit = parse_bytes(memory_limit)
    if int(retries) < 0:
        raise ValueError(f"retries must be >= 0, not {retries!r}")
    batch_size = int(batch_size or DEFAULT_BATCH_SIZE)
    batch_bytes = parse_bytes(batch_bytes) if batch_bytes is not None else DEFAULT_BATCH_BYTES
    if batch_size < 1 or (window is not None and int(window) < 1):
        raise ValueError("batch_size and window must be >= 1")
    if not isolate and (timeout is not None or memory_limit is not None):
        raise ValueError("timeout and memory_limit need isolate=True (a scan child to stop)")
    config = {"policy": policy.to_dict() if policy is not None else None, "timeout": timeout,
              "memory_limit": memory_limit, "retries": int(retries), "scanner": scanner,
              "storage_options": dict(storage_options) if storage_options else None}
    if engine == "local":
        if address is not None or client is not None or workers is not None:
            raise ValueError("address, client and workers are for engine='dask' (the local engine takes jobs)")
        if not isolate:
            raise ValueError("isolate=False is for engine='dask' (`mfparse scan --jobs N` scans in processes "
                             "without a child)")
        from mfparse.engines.local import LocalEngine

        eng = LocalEngine(jobs)
    else:
        if jobs is not None:
            raise ValueError("jobs is for engine='local' (a Dask cluster's size is its workers)")
        from mfparse.engines.dask import DaskEngine

        eng = DaskEngine(address=address, client=client, workers=workers, isolate=isolate)
    from mfparse.engines.journal import done_set

    done = done_set(resume)
    return _run(sources, eng, config, done, batch_size, batch_bytes, window, storage_options)


def parse_bytes(value) -> int:
    """Bytes of a size: an int, or a number and a unit ("4GB", "512MiB", "1.5GiB"; KB/MB/GB/TB
    powers of 10, KiB/MiB/GiB/TiB powers of 2): mfparse.units.parse_size."""
    return parse_size(value)


def _error_record(name: str, size, message: str) -> dict:
    from mfparse.scan.report import ScanReport

    return ScanReport(path=name, verdict="error", errors=[message], size=size or 0).to_dict()


def _take(listing, done, ready: deque, batch_size: int, batch_bytes: int):
    """The next batch of files not yet seen ([] when the listing is over or `ready` is full),
    and whether the listing is over. Sources that could not be listed become error records
    in `ready`."""
    from mfparse.engines.sources import Unlisted

    batch: list = []
    total = 0
    for entry in listing:
        if isinstance(entry, Unlisted):
            if done.add(entry.name):
                ready.append(_error_record(entry.name, 0, entry.message))
            if len(ready) >= batch_size:
                return batch, False
            continue
        if not done.add(entry.name):
            continue  # listed twice, or already in the report resumed
        batch.append(entry)
        total += entry.size or 0
        if len(batch) >= batch_size or total >= batch_bytes:
            return batch, False
    return batch, True


def _answers(batch: list, recs) -> list:
    """One record per file of the batch, named as the batch names it (exactly once)."""
    recs = list(recs) if isinstance(recs, (list, tuple)) else []
    out = []
    for i, item in enumerate(batch):
        if i < len(recs) and isinstance(recs[i], dict):
            rec = recs[i]
            rec["path"] = item.name
        else:
            rec = _error_record(item.name, item.size, "no report came back from the engine for this file")
        out.append(rec)
    return out


def _run(sources, eng, config: dict, done, batch_size: int, batch_bytes: int, window, storage_options):
    from mfparse.engines.sources import iter_sources

    listing = iter_sources(sources, storage_options)
    pending: deque = deque()  # halves of split batches: sent before new ones
    # single files lost alongside other tasks: Dask charges every task a dying worker was given
    # (up to ~1.1 x its threads), so a file that shared a worker with the killer is run again
    # alone, with nothing else in flight, before it is reported as the one that kills workers
    suspects: deque = deque()
    solo = None  # the task of a suspect running alone
    ready: deque = deque()  # records to hand out
    inflight: dict = {}  # task -> its batch (list of Items)
    exhausted = False
    eng.start()
    try:
        win = int(window) if window else max(4, 2 * eng.slots)
        while True:
            while solo is None and len(inflight) < win and len(ready) < batch_size:
                if pending:
                    batch = pending.popleft()
                elif not exhausted:
                    batch, exhausted = _take(listing, done, ready, batch_size, batch_bytes)
                    if not batch:
                        continue
                elif suspects and not inflight:
                    batch = suspects.popleft()
                    solo = eng.submit([tuple(i) for i in batch], config)
                    inflight[solo] = batch
                    break
                else:
                    break
                inflight[eng.submit([tuple(i) for i in batch], config)] = batch
            while ready:
                yield ready.popleft()
            if not inflight:
                if exhausted and not pending and not suspects:
                    return
                continue
            for task in eng.wait(list(inflight)):
                batch = inflight.pop(task)
                kind, value = eng.outcome(task)
                if kind == "wait":
                    inflight[task] = batch
                    continue
                release = getattr(eng, "release", None)
                if release is not None:
                    release(task)
                alone = task is solo
                if alone:
                    solo = None
                if kind == "ok":
                    ready.extend(_answers(batch, value))
                elif kind == "lost" and len(batch) > 1:
                    mid = len(batch) // 2  # find the file that kills workers: halves, sent first
                    pending.appendleft(batch[mid:])
                    pending.appendleft(batch[:mid])
                elif kind == "lost" and not alone:
                    suspects.append(batch)
                elif kind == "lost":
                    ready.append(_error_record(batch[0].name, batch[0].size,
                                               f"the scan {value}: the file cannot be judged"))
                else:
                    ready.extend(_error_record(i.name, i.size, f"the {eng.name} engine could not scan this file: "
                                                              f"{value}") for i in batch)
    finally:
        eng.close()
