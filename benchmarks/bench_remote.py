"""Listing the big benchmark files over HTTP by ranges (issue 19), and cold local listings.

1. Remote: every big benchmark file (the 2.7 GB LLaMA-shaped checkpoint as .pth, .safetensors,
   .gguf, .h5 and .npz, the 1.1 GB ONNX with inline raw_data, the 20,000-tensor .pth) is served
   by the test suite's range server (tests/servers.py) with 30 ms added to every request, and
   listed with `mfparse.open(url)`: requests, round trips, bytes and wall time, next to what
   huggingface_hub's `get_safetensors_metadata`-style header reads need (two dependent ranged
   GETs: the 8-byte length, then the header) and what a full download needs.
2. Local: cold listings (the file dropped from the page cache with posix_fadvise DONTNEED, then
   a fresh process opens and lists it) and warm ones, with the access hints of
   docs/architecture.md ("Readers on windows") and without them
   (`mfparse.io.local.ACCESS_HINTS = False`).
3. The local path's cost of the windows (optional, `--callgrind`): instructions of listing the
   20,000-tensor files under callgrind, 1 and 3 listings in one process (the difference is two
   listings without start-up), for this tree and for another checkout (`--baseline DIR`).

Usage: python benchmarks/bench_remote.py [--latency 0.03] [--only NAME ...] [--no-download]
       [--no-cold] [--callgrind --baseline /path/to/other/checkout] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

TESTS = common.ROOT / "tests"
MiB = 1024 * 1024

FILES = ["llama.pth", "many.pth", "llama.safetensors", "llama.gguf", "llama.h5", "llama.npz", "llama_1g.onnx"]


# ---- the files: the benchmarks' own generators ------------------------------------------------------

def make_gguf(path):
    """llama.gguf: the LLaMA-shaped fp16 tensors of common.llama_specs with a 32,000-token
    vocabulary (tokens and scores), as llama.cpp's converter writes them (gguf-py)."""
    import gguf
    import numpy as np

    tmp = str(path) + ".tmp"
    w = gguf.GGUFWriter(tmp, "llama")
    w.add_uint32("llama.block_count", 24)
    w.add_array("tokenizer.ggml.tokens", [f"tok{i}" for i in range(32000)])
    w.add_array("tokenizer.ggml.scores", [float(i) for i in range(32000)])
    for i, (name, shape) in enumerate(common.llama_specs()):
        w.add_tensor(name, common.fill(shape, np.float16, i))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, path)


def ensure(names):
    import bench_hdf5
    import bench_listing
    import bench_npz
    import bench_onnx

    want = set(names)
    if want & {"llama.pth", "many.pth", "llama.safetensors"}:
        bench_listing.ensure_files()
    if "llama.h5" in want:
        bench_hdf5.ensure_files()
    if "llama_1g.onnx" in want:
        bench_onnx.ensure_files()
    if "llama.npz" in want and not common.cached("llama.npz").exists():
        print("generating llama.npz ...", flush=True)
        bench_npz.make(common.cached("llama.npz"))
    if "llama.gguf" in want and not common.cached("llama.gguf").exists():
        print("generating llama.gguf ...", flush=True)
        make_gguf(common.cached("llama.gguf"))
    return [common.cached(n) for n in names]


# ---- remote listings ----------------------------------------------------------------------------

def list_remote(url):
    import mfparse

    t0 = time.perf_counter()
    with mfparse.open(url) as m:
        n = len(list(m.tensors()))
        stats = dict(m.reader.source.stats)
    return n, stats, time.perf_counter() - t0


def hf_style_header(url):
    """What huggingface_hub.get_safetensors_metadata does for one file: the 8-byte length, then
    the header (one more GET when it is longer than the first read): dependent requests."""
    import json
    import struct

    t0 = time.perf_counter()
    req = urllib.request.Request(url, headers={"Range": "bytes=0-7"})
    with urllib.request.urlopen(req) as r:
        n = struct.unpack("<Q", r.read())[0]
    req = urllib.request.Request(url, headers={"Range": f"bytes=8-{7 + n}"})
    with urllib.request.urlopen(req) as r:
        header = json.loads(r.read())
    return len(header) - ("__metadata__" in header), {"requests": 2, "round_trips": 2, "bytes": 8 + n}, \
        time.perf_counter() - t0


def download(url):
    t0 = time.perf_counter()
    got = 0
    with urllib.request.urlopen(url) as r:
        while True:
            b = r.read(8 * MiB)
            if not b:
                break
            got += len(b)
    return got, time.perf_counter() - t0


def remote_rows(paths, latency, with_download):
    sys.path.insert(0, str(TESTS))
    from servers import Server

    s = Server("http", str(common.DATA))
    rows = []
    try:
        s.options(latency=latency)
        list_remote(f"{s.url}/{paths[0].name}")  # warm-up: fsspec and aiohttp imported, a session made
        for p in paths:
            url = f"{s.url}/{p.name}"
            n, st, t = list_remote(url)
            rows.append((p.name, f"{p.stat().st_size / 2**30:.2f} GB", n, "mfparse.open(url)", st["requests"],
                         st["round_trips"], f"{st['bytes'] / MiB:.2f} MB", f"{t * 1e3:.0f}"))
            if p.suffix == ".safetensors":
                n2, st2, t2 = hf_style_header(url)
                rows.append((p.name, "", n2, "hf get_safetensors_metadata-style", st2["requests"], st2["round_trips"],
                             f"{st2['bytes'] / MiB:.2f} MB", f"{t2 * 1e3:.0f}"))
            if with_download:
                got, t3 = download(url)
                rows.append((p.name, "", "", "full download", 1, 1, f"{got / MiB:.0f} MB", f"{t3 * 1e3:.0f}"))
            print(rows[-1], flush=True)
    finally:
        s.stop()
    return rows


# ---- cold and warm local listings ---------------------------------------------------------------

CHILD = """
import sys, time
import mfparse, mfparse.io.local as L
L.ACCESS_HINTS = {hints}
t = time.perf_counter()
with mfparse.open({path!r}) as m:
    n = len(list(m.tensors()))
print(time.perf_counter() - t)
"""


def child_listing(path, hints: bool, cold: bool) -> float:
    if cold:
        common.drop_cache(path)
    code = CHILD.format(path=str(path), hints=hints)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(common.ROOT)})
    return float(out.stdout.strip().splitlines()[-1])


def cold_rows(paths, repeat=3):
    import statistics

    rows = []
    for p in paths:
        res = {}
        for hints in (False, True):
            cold = [child_listing(p, hints, True) for _ in range(repeat)]
            child_listing(p, hints, False)
            warm = [child_listing(p, hints, False) for _ in range(repeat)]
            res[hints] = (statistics.median(cold), statistics.median(warm))
        rows.append((p.name, f"{res[False][0] * 1e3:.0f}", f"{res[True][0] * 1e3:.0f}", f"{res[False][1] * 1e3:.1f}",
                     f"{res[True][1] * 1e3:.1f}"))
        print(rows[-1], flush=True)
    return rows


# ---- callgrind: the local path's instructions ------------------------------------------------------

CG = """
import sys
sys.path.insert(0, {root!r})
import mfparse
for _ in range({n}):
    with mfparse.open({path!r}) as m:
        list(m.tensors())
"""


def instructions(root, path, n) -> int:
    import re
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "cg.out")
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-c",
                        CG.format(root=str(root), n=n, path=str(path))], capture_output=True, check=True,
                       env={**os.environ, "PYTHONPATH": str(root)})
        with open(out) as f:
            text = f.read()
    return int(re.search(r"^summary:\s+(\d+)", text, re.M).group(1))


def callgrind_rows(paths, baseline):
    rows = []
    for p in paths:
        per = {}
        for label, root in (("baseline", baseline), ("this tree", common.ROOT)):
            one, three = instructions(root, p, 1), instructions(root, p, 3)
            per[label] = (three - one) / 2
        b, t = per["baseline"], per["this tree"]
        rows.append((p.name, f"{b / 1e6:.2f}", f"{t / 1e6:.2f}", f"{(t - b) / b * 100:+.2f}%"))
        print(rows[-1], flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--latency", type=float, default=0.03, help="seconds added to every request (default 0.03)")
    ap.add_argument("--only", nargs="*", default=None, help=f"files among {', '.join(FILES)}")
    ap.add_argument("--no-download", action="store_true", help="skip the full downloads")
    ap.add_argument("--no-remote", action="store_true")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold/warm local listings")
    ap.add_argument("--callgrind", action="store_true", help="instructions of local listings (valgrind)")
    ap.add_argument("--baseline", default=None, help="another checkout to compare instructions with")
    ap.add_argument("--no-write", action="store_true", help="print, do not append to RESULTS.md")
    args = ap.parse_args(argv)
    names = args.only or FILES
    paths = ensure(names)
    import mfparse

    parts = []
    v = common.versions("fsspec", "aiohttp")
    head = (f"Command: `python benchmarks/bench_remote.py {' '.join(argv or sys.argv[1:])}`. Machine: {common.machine()}. "
            f"Python {v['python']}, mfparse {mfparse.__version__}, fsspec {v.get('fsspec')}, aiohttp {v.get('aiohttp')}.")
    parts.append(head)
    if not args.no_remote:
        rows = remote_rows(paths, args.latency, not args.no_download)
        parts.append(
            f"Listing over HTTP: tests/servers.py serving benchmarks/.data on 127.0.0.1 with {args.latency * 1e3:.0f} ms "
            "added to every request (`latency` option); one listing per file in one process after a warm-up; "
            "requests, round trips and bytes as RemoteSource counts them (the discovery's head and tail "
            "included). The safetensors row below it: two dependent ranged GETs (8 bytes, then the header), as "
            "huggingface_hub's `get_safetensors_metadata` reads a file; `full download`: one GET of the whole "
            "file over the loopback.\n\n"
            + common.table(rows, ["file", "size", "tensors", "how", "requests", "round trips", "bytes", "ms"]))
    if not args.no_cold:
        local = [p for p in paths if p.suffix in (".pth", ".onnx", ".h5", ".npz", ".safetensors", ".gguf")]
        rows = cold_rows(local)
        parts.append(
            "Local listings, cold and warm: each run a fresh process (`mfparse.open` + list, start-up excluded); "
            "cold = the file dropped from the page cache first (posix_fadvise DONTNEED); medians of 3; "
            "`hints off`: `mfparse.io.local.ACCESS_HINTS = False` (no madvise).\n\n"
            + common.table(rows, ["file", "cold ms, hints off", "cold ms, hints on", "warm ms, hints off",
                                  "warm ms, hints on"]))
    if args.callgrind:
        if not args.baseline:
            ap.error("--callgrind needs --baseline (another checkout, built)")
        many = [common.cached(n) for n in ("many.pth", "many.safetensors", "many.onnx", "many.h5")]
        rows = callgrind_rows([p for p in many if p.exists()], args.baseline)
        parts.append(
            f"The local path's instructions (valgrind --tool=callgrind): (3 listings - 1 listing) / 2 in one "
            f"process, millions of instructions, {args.baseline} (baseline) against this tree.\n\n"
            + common.table(rows, ["file", "baseline Minstr", "this tree Minstr", "change"]))
    body = "\n\n".join(parts)
    print(body)
    if not args.no_write:
        common.write_section("Remote listings by ranges, cold local listings (bench_remote.py)", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
