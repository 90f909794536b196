"""The Dask engine: batches are tasks on a Dask cluster (`pip install mfparse[dask]`).

A cluster is whatever `distributed.Client` reaches: an address (`tcp://host:8786`), a Client the
caller made (dask-kubernetes, Coiled, SLURM, YARN, ...), or, given neither, a LocalCluster of
`workers` processes with one thread each, started here and closed at the end.

What a task does is `mfparse.engines.batch.run_batch` (the worker's thread drives a scan child:
timeouts, memory cap, crash retries) or, with isolate=False, `mfparse.engines.child.scan_inline`
(scans in the worker process itself). Dask's scheduler re-runs the tasks of a worker that is
lost; a task whose workers die `distributed.scheduler.allowed-failures` + 1 times (default 3 + 1)
fails with KilledWorker, and the client (mfparse/engines/__init__.py) splits that batch.

dask and distributed are imported here only, when the engine starts.
"""

from __future__ import annotations

import os
import time

#: seconds the client waits with tasks in flight and no worker before it gives up
NO_WORKERS_TIMEOUT_S = 300.0


class DaskEngine:
    name = "dask"

    def __init__(self, address=None, client=None, workers: int | None = None, isolate: bool = True):
        if client is not None and address is not None:
            raise ValueError("give a Dask client or an address, not both")
        if workers is not None and (client is not None or address is not None):
            raise ValueError("workers= starts a LocalCluster: it cannot be combined with an address or a client")
        self.address = address
        self.client = client
        self.workers = workers
        self.isolate = isolate
        self._own_client = client is None
        self.cluster = None
        self.slots = 1
        self._no_workers_since = None

    def start(self) -> None:
        try:
            import distributed
        except ImportError:
            raise ImportError("the dask engine needs dask and distributed: pip install 'mfparse[dask]'") from None
        self._distributed = distributed
        if self.client is None:
            if self.address is not None:
                self.client = distributed.Client(self.address)
            else:
                import logging

                n = max(1, int(self.workers or os.cpu_count() or 1))
                self.cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                                        dashboard_address=None, silence_logs=logging.ERROR)
                self.client = distributed.Client(self.cluster)
        self.slots = max(1, sum(self.client.nthreads().values()))

    def submit(self, items, config):
        if self.isolate:
            from mfparse.engines.batch import run_batch as task
        else:
            from mfparse.engines.child import scan_inline as task
        return self.client.submit(task, items, config, pure=False)

    def wait(self, handles, timeout=10.0) -> set:
        try:
            done = self._distributed.wait(handles, timeout=timeout, return_when="FIRST_COMPLETED").done
        except self._distributed.TimeoutError:
            done = set()
        except TimeoutError:
            done = set()
        if done:
            self._no_workers_since = None
            return done
        if not self.client.nthreads():  # every worker gone, none coming back
            now = time.monotonic()
            if self._no_workers_since is None:
                self._no_workers_since = now
            elif now - self._no_workers_since > NO_WORKERS_TIMEOUT_S:
                raise RuntimeError(f"the Dask cluster has had no worker for {NO_WORKERS_TIMEOUT_S:g} s")
        else:
            self._no_workers_since = None
        return done

    def outcome(self, handle):
        """("ok", [report dicts]), ("lost", why): the batch killed its workers (KilledWorker) or
        was cancelled, or ("failed", why): the task raised (not a file's doing: mfparse missing
        on a worker, a bug), or ("wait", None): the result was lost with its worker after the
        task finished and Dask is computing it again."""
        d = self._distributed
        try:
            return "ok", handle.result(timeout=10)
        except d.TimeoutError:
            return "wait", None  # being computed again: back in flight
        except d.KilledWorker as e:
            return "lost", f"killed its Dask worker each time it ran ({e})"
        except (d.client.FutureCancelledError, d.client.CancelledError) as e:
            return "lost", f"was cancelled by the Dask scheduler ({type(e).__name__}: {e})"
        except Exception as e:
            return "failed", f"{type(e).__name__}: {e}"

    def release(self, handle) -> None:
        handle.release()

    def close(self) -> None:
        if self._own_client and self.client is not None:
            try:
                self.client.close()
            finally:
                self.client = None
                if self.cluster is not None:
                    self.cluster.close()
                    self.cluster = None
