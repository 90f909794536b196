"""Two threads listing two files (issue 18): the C parsers release the GIL while they run, so a
threaded host (a web service, a threaded Dask worker) lists files in parallel.

For each format, two copies of a 20,000-tensor file are listed (mfparse.open + every tensor's
name, dtype and shape) one after the other in one thread, then by two threads at once; the ratio
is what the second core buys. Building the Python TensorInfos holds the GIL, so the ratio stays
below 2 by the share of that work. Medians of the rounds, alternated.

Usage: python benchmarks/bench_threads.py [--rounds N] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402


def ensure_files() -> dict:
    """{format: [path, path]}: two copies of each 20,000-tensor file (generated once)."""
    import numpy as np

    specs = common.many_specs()
    arrays = {n: common.fill(s, np.float32, i) for i, (n, s) in enumerate(specs)}
    makers = {}

    def safetensors(p):
        from safetensors.numpy import save_file

        save_file(arrays, p)

    def torch_zip(p):
        import torch

        torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, p)

    def onnx(p):
        import onnx as ox
        from onnx import helper, numpy_helper

        g = helper.make_graph([], "g", [], [], [numpy_helper.from_array(v, k) for k, v in arrays.items()])
        ox.save(helper.make_model(g), p)

    makers = {"safetensors": ("many.safetensors", safetensors), "torch-zip": ("many.pth", torch_zip),
              "onnx": ("many.onnx", onnx)}
    out = {}
    for fmt, (name, make) in makers.items():
        first = common.cached(name)
        if not first.exists():
            make(str(first))
        second = common.cached("copy-" + name)
        if not second.exists():
            shutil.copyfile(first, second)
        out[fmt] = [str(first), str(second)]
    return out


def listing(path):
    import mfparse

    with mfparse.open(path) as m:
        return [(t.name, t.dtype, t.shape) for t in m.tensors()]


def one_thread(paths) -> float:
    t0 = time.perf_counter()
    for p in paths:
        listing(p)
    return time.perf_counter() - t0


def two_threads(paths) -> float:
    threads = [threading.Thread(target=listing, args=(p,)) for p in paths]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    files = ensure_files()
    rows = []
    for fmt, paths in files.items():
        for p in paths:
            listing(p)  # warm the page cache and the code
        seq, par = [], []
        for _ in range(args.rounds):
            seq.append(one_thread(paths))
            par.append(two_threads(paths))
        s, p = statistics.median(seq) * 1000, statistics.median(par) * 1000
        rows.append((fmt, f"{s:.1f}", f"{p:.1f}", f"{s / p:.2f}x"))
    load = os.getloadavg()[0]
    body = (f"Command: `PYTHONPATH=. python benchmarks/bench_threads.py --rounds {args.rounds}`. Machine: "
            f"{common.machine()} (load average {load:.1f} at the end). Versions: "
            + ", ".join(f"{k} {v}" for k, v in common.versions("numpy").items())
            + ". Two copies of a 20,000-tensor file listed one after the other in one thread, then by two "
            "threads at once; medians of the rounds.\n\n"
            + common.table(rows, ("format", "one thread, 2 files ms", "two threads ms", "speed-up"))
            + "\n\nThe parse runs without the GIL (C); building the 20,000 TensorInfos holds it, which bounds the "
            "speed-up below 2x.\n")
    print(body)
    if not args.no_write:
        common.write_section("Two threads listing two files (issue 18)", body)


if __name__ == "__main__":
    main()
