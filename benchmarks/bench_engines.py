"""Engines benchmark (issue 20): files/s of mfparse.scan_many on Dask with 1 and 2 workers against
the local engines on the same files, and the client's peak memory and time as the number of
files grows (1,000 / 10,000 / 100,000 distinct small files).

Throughput files (generated once into the cache, benchmarks/.data/engines/):
  heavy/  200 files of 0.9-2 MB whose scan has work to do: torch.save checkpoints of 3,000
          small tensors (a 3,000-member zip and its data.pkl) and 1.9 MB pickles of 40,000
          small dicts, half each
  light/  400 torch.save checkpoints of one 1 MB tensor: the scan reads the zip directory and a
          tiny data.pkl, never the tensor (per-file overhead dominates)
Runs, each timed around the iteration of every report (median of --repeat runs):
  scan_paths jobs=1         `mfparse scan DIR` (in this process)
  scan_paths jobs=2         `mfparse scan DIR --jobs 2` (spawned pool, in input order; pool
                            start-up included, as the command pays it)
  scan_many local jobs=N    `mfparse scan DIR --report OUT.jsonl --jobs N` (threads + scan children)
  scan_many dask N workers  LocalCluster(N workers, 1 thread each) started before the clock
                            (start-up reported apart); warm (children started by a first run)

Client memory: a fresh process runs `mfparse scan FOLDERS... --engine dask --workers 2 --report
OUT.jsonl --format jsonl` (standard output to /dev/null) over 1 / 10 / 100 folders of 1,000
distinct files of a few bytes each (benchmarks/.data/engines/small/); its VmHWM (peak RSS; the
LocalCluster's scheduler runs in it, the workers do not) and wall time. The same with
`--engine local --jobs 2`.

Usage: python benchmarks/bench_engines.py [--repeat 3] [--counts 1000,10000,100000] [--no-write]
       [--only throughput|memory]
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import common  # noqa: E402

DATA = common.DATA / "engines"


# ---- files -----------------------------------------------------------------------------------

def ensure_heavy(n: int = 200) -> str:
    import torch

    d = DATA / "heavy"
    if d.exists() and len(os.listdir(d)) == n:
        return str(d)
    d.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(n):
            if i % 2 == 0:
                sd = {f"model.layers.{j}.w{i % 7}": torch.full((16,), float(j % 5)) for j in range(3000)}
                torch.save(sd, d / f"ckpt_{i:04d}.pt")
            else:
                obj = [{"id": j, "name": f"item{j}-{i}", "vals": [j, j + 1.5, str(j)]} for j in range(40000)]
                (d / f"records_{i:04d}.pkl").write_bytes(pickle.dumps(obj, protocol=4))
    return str(d)


def ensure_light(n: int = 400) -> str:
    import torch

    d = DATA / "light"
    if d.exists() and len(os.listdir(d)) == n:
        return str(d)
    d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        torch.save({"w": torch.full((512, 512), float(i))}, d / f"one_{i:04d}.pt")
    return str(d)


def ensure_small(folders: int = 100, per: int = 1000) -> list:
    """`folders` folders of `per` distinct tiny pickles (a few bytes each)."""
    root = DATA / "small"
    out = []
    for k in range(folders):
        d = root / f"f{k:03d}"
        out.append(str(d))
        if d.exists() and len(os.listdir(d)) == per:
            continue
        d.mkdir(parents=True, exist_ok=True)
        for j in range(per):
            with open(d / f"x{j:04d}.pkl", "wb") as f:
                f.write(pickle.dumps(k * per + j, protocol=2))
    return out


def size_mb(folder: str) -> float:
    return sum(e.stat().st_size for e in os.scandir(folder)) / 1e6


# ---- throughput -------------------------------------------------------------------------------

def run_scan_paths(folder: str, jobs: int) -> int:
    from mfparse.scan import scan_paths

    return sum(1 for _ in scan_paths([folder], jobs=jobs))


def run_scan_many(folder: str, **kw) -> int:
    import mfparse

    n = 0
    for rec in mfparse.scan_many([folder], **kw):
        assert rec["verdict"] == "safe", rec
        n += 1
    return n


def _cpu_idle(seconds: float = 1.0) -> float:
    """The fraction of the machine's CPU time idle over the next `seconds` (/proc/stat)."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[3] + v[4], sum(v)  # idle + iowait, total

    i0, t0 = snap()
    time.sleep(seconds)
    i1, t1 = snap()
    return (i1 - i0) / max(1, t1 - t0)


QUIET = {"wait": 0.0, "quiet": 0, "runs": 0}


def wait_quiet(max_wait: float) -> None:
    """Wait (at most max_wait s) for a second in which >= 90% of the CPUs were idle: the machine
    is shared, and a scaling figure taken while another job holds a core says nothing."""
    QUIET["runs"] += 1
    t0 = time.monotonic()
    while time.monotonic() - t0 < max_wait:
        if _cpu_idle() >= 0.9:
            QUIET["quiet"] += 1
            break
    QUIET["wait"] += time.monotonic() - t0


def throughput(folder: str, repeat: int, max_wait: float = 0.0) -> tuple[list, dict]:
    """Every configuration once per round, `repeat` rounds (interleaved, so that a burst of load
    from elsewhere hits all alike); best and median wall time of each."""
    import distributed

    count = len(os.listdir(folder))
    extra = {}
    clusters = {}
    for workers in (1, 2):
        t0 = time.perf_counter()
        cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=40)
        clusters[workers] = (cluster, distributed.Client(cluster))
        extra[f"start{workers}"] = time.perf_counter() - t0
    runs = [
        ("paths1", "`mfparse scan DIR` (scan_paths, in process)", lambda: run_scan_paths(folder, 1)),
        ("paths2", "`mfparse scan DIR --jobs 2` (scan_paths, spawned pool)", lambda: run_scan_paths(folder, 2)),
        ("local1", "scan_many local, jobs=1", lambda: run_scan_many(folder, jobs=1)),
        ("local2", "scan_many local, jobs=2", lambda: run_scan_many(folder, jobs=2)),
        ("dask1", "scan_many dask, 1 worker", lambda: run_scan_many(folder, engine="dask", client=clusters[1][1])),
        ("dask2", "scan_many dask, 2 workers", lambda: run_scan_many(folder, engine="dask", client=clusters[2][1])),
        ("dask2inline", "scan_many dask, 2 workers, isolate=False",
         lambda: run_scan_many(folder, engine="dask", client=clusters[2][1], isolate=False)),
    ]
    times: dict = {k: [] for k, _, _ in runs}
    loads = []
    try:
        for k, _, fn in runs:  # warm-up: workers import mfparse, scan children start
            assert fn() == count, k
        for _ in range(repeat):
            loads.append(os.getloadavg()[0])
            for k, _, fn in runs:
                if max_wait:
                    wait_quiet(max_wait)
                t0 = time.perf_counter()
                assert fn() == count, k
                times[k].append(time.perf_counter() - t0)
    finally:
        for cluster, client in clusters.values():
            client.close()
            cluster.close()
    rows = []
    rate = {}
    for k, label, _ in runs:
        best, med = min(times[k]), statistics.median(times[k])
        rate[k] = count / best
        rows.append((label, f"{best:.2f}", f"{med:.2f}", f"{count / best:,.0f}", f"{count / med:,.0f}"))
    extra["rate"] = rate
    extra["med"] = {k: count / statistics.median(v) for k, v in times.items()}
    extra["load"] = (min(loads), max(loads))
    return rows, extra


# ---- client memory ---------------------------------------------------------------------------

PROBE = """
import sys
from mfparse.cli import main
rc = main(sys.argv[1:])
hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]
print('RSS', hwm, 'RC', rc, file=sys.stderr)
"""


def client_run(argv: list) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of `mfparse` argv in a fresh process."""
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", PROBE, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True, env={**os.environ, "PYTHONPATH": str(common.ROOT)}, timeout=3600)
    wall = time.perf_counter() - t0
    m = re.search(r"RSS (\d+) RC (\d+)", r.stderr)
    assert m and m.group(2) == "0", r.stderr[-2000:]
    return wall, int(m.group(1)) / 1024


def external_cluster(folder: str, workers: int = 2):
    """`dask scheduler` and `dask worker` processes on 127.0.0.1 (tests/servers.py's DaskCluster:
    the client then holds no scheduler, its memory is mfparse's and distributed's Client's alone)."""
    sys.path.insert(0, str(common.ROOT / "tests"))
    from servers import DaskCluster

    c = DaskCluster(folder, {**os.environ, "PYTHONPATH": str(common.ROOT)})
    try:
        for _ in range(workers):
            c.add_worker()
        c.wait_for_workers(workers)
    except BaseException:
        c.close()
        raise
    return c


def memory(counts: list) -> list:
    folders = ensure_small(max(counts) // 1000)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mfparse-bench-engines-") as tmp:
        ext = external_cluster(tmp)
        try:
            configs = (("dask, 2 workers (LocalCluster in the client)", ["--engine", "dask", "--workers", "2"]),
                       ("dask, 2 workers (--address: scheduler apart)", ["--engine", "dask", "--address", ext.address]),
                       ("local, --jobs 2", ["--jobs", "2"]))
            _memory_rows(counts, folders, configs, tmp, rows)
        finally:
            ext.close()
    return rows


def _memory_rows(counts, folders, configs, tmp, rows) -> None:
    for n in counts:
        srcs = folders[:n // 1000]
        for label, opts in configs:
            out = os.path.join(tmp, "out.jsonl")
            wall, rss = client_run(["scan", *srcs, *opts, "--report", out, "--format", "jsonl"])
            with open(out, "rb") as f:
                lines = sum(1 for _ in f)
            assert lines == n + 1, (lines, n)
            rows.append((f"{n:,}", label, f"{wall:.1f}", f"{n / wall:,.0f}", f"{rss:.0f}"))
            print(rows[-1], flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--counts", default="1000,10000,100000")
    ap.add_argument("--only", choices=("throughput", "memory"))
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--quiet-wait", type=float, default=0.0, metavar="S",
                    help="before each timed run, wait up to S seconds for a second with >= 90%% of the CPUs idle")
    args = ap.parse_args()
    import mfparse

    v = common.versions("dask", "distributed", "torch")
    cmd = " ".join(["python benchmarks/bench_engines.py"] + sys.argv[1:])
    head = (f"Command: `{cmd}`. Machine: {common.machine()}, "
            "shared with other work (loads vary). "
            f"Python {v['python']}, mfparse {mfparse.__version__}, dask {v['dask']}, distributed {v['distributed']}, "
            f"torch {v['torch']}. Warm page cache.\n\n")
    body = head
    if args.only in (None, "throughput"):
        for kind, folder in (("heavy", ensure_heavy()), ("light", ensure_light())):
            QUIET.update(wait=0.0, quiet=0, runs=0)
            rows, extra = throughput(folder, args.repeat, args.quiet_wait)
            r = extra["rate"]
            n = len(os.listdir(folder))
            body += (f"**{kind}**: {n} files, {size_mb(folder):.0f} MB ({kind} files: see the script's docstring); "
                     f"LocalCluster start-up {extra['start1']:.1f} s (1 worker), {extra['start2']:.1f} s (2 workers), "
                     "not in the times below.\n\n")
            m = extra["med"]
            body += common.table(rows, ("engine", "best s", "median s", "files/s (best)", "files/s (median)")) + "\n\n"
            body += (f"2 workers / 1 worker on Dask: {r['dask2'] / r['dask1']:.2f}x best, "
                     f"{m['dask2'] / m['dask1']:.2f}x median; local engine jobs 2 / 1: {r['local2'] / r['local1']:.2f}x "
                     f"best; `--jobs 2` / `--jobs 1`: {r['paths2'] / r['paths1']:.2f}x best. Load average (1 min) "
                     f"at the rounds' starts: {extra['load'][0]:.1f}-{extra['load'][1]:.1f}"
                     + (f"; {QUIET['quiet']} of {QUIET['runs']} timed runs started after a quiet second "
                        f"(--quiet-wait {args.quiet_wait:g})" if args.quiet_wait else "") + ".\n\n")
            print(body, flush=True)
    if args.only in (None, "memory"):
        counts = [int(c) for c in args.counts.split(",")]
        rows = memory(counts)
        body += ("**Client memory and time by number of files** (tiny distinct pickles, 1,000 per folder; "
                 "`mfparse scan FOLDERS... --report OUT.jsonl --format jsonl > /dev/null` in a fresh process; "
                 "wall time includes the LocalCluster's start-up where there is one; peak RSS = the client's "
                 "VmHWM, a LocalCluster's scheduler included, workers never):\n\n")
        body += common.table(rows, ("files", "engine", "wall s", "files/s", "client peak RSS MB")) + "\n"
    print(body)
    if not args.no_write:
        common.write_section("Scanning many files: engines (issue 20)", body)


if __name__ == "__main__":
    main()
