"""Sharded checkpoints benchmark (issue 15).

1. Listing a 10-shard folder (the 2.7 GB LLaMA-shaped fp16 model of common.llama_specs(), as
   safetensors shards and as .bin shards, each with its index and a config.json) with
   `mfparse.open(FOLDER)` against the sum of listing its files one by one
   (`mfparse.open(shard, whole=False)`), medians, in one process. Goal: overhead < 10%.
2. Converting the .bin shards to safetensors shards (`mfparse.convert(FOLDER, OUT)`, the
   folder written as transformers' save_pretrained writes it) against `torch.load(shard,
   weights_only=True)` + `safetensors.torch.save_file` shard by shard, each in a fresh process
   (wall time and peak RSS = VmHWM), alternating, medians. Goals: >= 2x faster, peak RSS <=
   1/10 of the reference's.

Files (generated once, cached in benchmarks/.data/shards/, about 5.5 GB; the outputs are
written to a temporary folder beside them and removed): the .bin shards are written like
transformers 4.x (huggingface_hub's greedy split at max_shard_size, torch.save per shard,
pytorch_model.bin.index.json), the safetensors shards with safetensors.torch.save_file.

Usage: python benchmarks/bench_shards.py [--repeat N] [--no-write] [--clean]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

SHARDS = 10


def _split(specs, n):
    """Greedy split of (name, shape) in order into about n shards of similar bytes (the rule of
    huggingface_hub's split_torch_state_dict_into_shards with max_shard_size = total / n)."""
    sizes = [2 * _numel(s) for _, s in specs]
    limit = -(-sum(sizes) // n)
    while True:
        shards, cur, cur_size = [], [], 0
        for (name, shape), size in zip(specs, sizes):
            if cur and cur_size + size > limit:
                shards.append(cur)
                cur, cur_size = [], 0
            cur.append((name, shape))
            cur_size += size
        if cur:
            shards.append(cur)
        if len(shards) <= n:
            return shards
        limit = limit * 101 // 100


def _numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def ensure_folders():
    """The .bin and safetensors shard folders (written once)."""
    import torch
    from safetensors.torch import save_file

    root = common.cached("shards")
    root.mkdir(exist_ok=True)
    specs = common.llama_specs()
    shards = _split(specs, SHARDS)
    n = len(shards)
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "torch_dtype": "float16"}
    out = {}
    for kind, ext, stem in (("bin", ".bin", "pytorch_model"), ("st", ".safetensors", "model")):
        d = root / kind
        out[kind] = d
        index = d / f"{stem}{ext}.index.json"
        if index.exists():
            continue
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
        wm, total, seed = {}, 0, 0
        for i, shard in enumerate(shards, 1):
            fname = f"{stem}-{i:05d}-of-{n:05d}{ext}"
            sd = {}
            for name, shape in shard:
                sd[name] = torch.from_numpy(common.fill(shape, "float32", seed)).to(torch.float16)
                seed += 1
                wm[name] = fname
                total += sd[name].nbytes
            if kind == "bin":
                torch.save(sd, d / fname)
            else:
                save_file(sd, str(d / fname), metadata={"format": "pt"})
            del sd
        (d / "config.json").write_text(json.dumps(config))
        index.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": wm}, indent=2,
                                    sort_keys=True) + "\n")
    return out


def bench_listing(folder, repeat):
    import mfparse

    files = sorted(p for p in os.listdir(folder) if "-of-" in p)

    def whole():
        with mfparse.open(folder) as m:
            rows = [(t.name, t.dtype, t.shape, t.file) for t in m.tensors()]
        assert len(rows) == 219

    def one_by_one():
        n = 0
        for f in files:
            with mfparse.open(os.path.join(folder, f), whole=False) as m:
                rows = [(t.name, t.dtype, t.shape) for t in m.tensors()]
                n += len(rows)
        assert n == 219

    a, b = [], []
    for _ in range(repeat):  # alternating, so that both see the same machine
        a.append(common.timeit(whole, repeat=5))
        b.append(common.timeit(one_by_one, repeat=5))
    return statistics.median(a), statistics.median(b), len(files)


_MFPARSE = """
import time, sys
t0 = time.perf_counter()
from mfparse.convert import convert
r = convert({src!r}, {dst!r}, max_shard_size={size!r}, progress=False)
print("WALL", time.perf_counter() - t0, len(r.files))
"""

_REFERENCE = """
import time, os, torch
from safetensors.torch import save_file
t0 = time.perf_counter()
src, dst = {src!r}, {dst!r}
os.makedirs(dst)
for f in sorted(os.listdir(src)):
    if f.endswith(".bin"):
        sd = torch.load(os.path.join(src, f), weights_only=True)
        save_file(sd, os.path.join(dst, f[:-4].replace("pytorch_model", "model") + ".safetensors"),
                  metadata={{"format": "pt"}})
        del sd
print("WALL", time.perf_counter() - t0, 0)
"""


def _run(code):
    probe = code + "\nprint('RSS', [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])\n"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(common.ROOT)}, check=True)
    wall = float(r.stdout.split("WALL ")[1].split()[0])
    rss = int(r.stdout.split("RSS ")[1].split()[0]) / 1024
    return wall, rss


def bench_convert(src, repeat, shard_size, out_dir=None):
    out_root = tempfile.mkdtemp(prefix="bench-shards-", dir=out_dir or common.cached("shards"))
    ours, ref = [], []
    try:
        for i in range(repeat):
            for label, code, acc in (("mfparse", _MFPARSE, ours), ("reference", _REFERENCE, ref)):
                dst = os.path.join(out_root, f"{label}-{i}")
                acc.append(_run(code.format(src=str(src), dst=dst, size=shard_size)))
                if label == "mfparse" and i == 0:
                    _check_output(src, dst)
                shutil.rmtree(dst)
    finally:
        shutil.rmtree(out_root, ignore_errors=True)
    med = lambda xs, k: statistics.median(x[k] for x in xs)  # noqa: E731
    return med(ours, 0), max(x[1] for x in ours), med(ref, 0), max(x[1] for x in ref)


def _check_output(src, dst):
    """The converted folder holds every tensor with the source's bytes (a sample per tensor)."""
    import numpy as np

    import mfparse

    with mfparse.open(src) as a, mfparse.open(dst) as b:
        assert a.keys() == b.keys() or set(a.keys()) == set(b.keys())
        for t in a.tensors():
            x, y = a[t.name].reshape(-1), b[t.name].reshape(-1)
            assert x.dtype == y.dtype and x.shape == y.shape
            step = max(1, x.size // 1000)
            assert np.array_equal(x[::step], y[::step])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-write", action="store_true", help="print, do not update RESULTS.md")
    ap.add_argument("--clean", action="store_true", help="remove benchmarks/.data/shards afterwards")
    ap.add_argument("--no-tmpfs", action="store_true", help="skip the /dev/shm convert row")
    args = ap.parse_args(argv)
    import safetensors
    import torch

    import mfparse

    folders = ensure_folders()
    size_gb = sum(os.path.getsize(folders["st"] / f) for f in os.listdir(folders["st"])) / 1e9
    rows = []
    for kind in ("st", "bin"):
        whole, parts, n = bench_listing(folders[kind], args.repeat)
        rows.append([f"{n} {'safetensors' if kind == 'st' else '.bin'} shards + index", f"{whole * 1000:.2f}",
                     f"{parts * 1000:.2f}", f"{(whole - parts) * 1000:.2f}", f"{(whole / parts - 1) * 100:+.1f}%"])
        print(rows[-1], flush=True)
    shard_size = f"{int(size_gb * 1e9 / SHARDS / 1e6) + 1}MB"
    conv = []
    targets = [("disk (same as the source)", None)]
    if not args.no_tmpfs and os.path.isdir("/dev/shm"):
        targets.append(("tmpfs (/dev/shm)", "/dev/shm"))
    for label, out_dir in targets:
        m_wall, m_rss, r_wall, r_rss = bench_convert(folders["bin"], args.repeat, shard_size, out_dir)
        print("convert", label, m_wall, m_rss, r_wall, r_rss, flush=True)
        conv.append([label, f"{m_wall:.2f}", f"{r_wall:.2f}", f"{r_wall / m_wall:.2f}x", f"{m_rss:.0f}",
                     f"{r_rss:.0f}", f"{m_rss / r_rss:.3f}"])
    v = common.versions("torch", "safetensors", "numpy")
    body = (f"Command: `python benchmarks/bench_shards.py --repeat {args.repeat}`. Machine: {common.machine()}. "
            f"Python {v['python']}, mfparse {mfparse.__version__}, torch {torch.__version__}, safetensors "
            f"{safetensors.__version__}, numpy {v['numpy']}. Files: common.llama_specs() in fp16 ({size_gb:.2f} GB, "
            f"219 tensors) split greedily into {SHARDS} shards with their index and a config.json, warm page cache.\n\n"
            "Listing: `mfparse.open(FOLDER)` + every tensor's name, dtype, shape, file, against the sum of the same "
            "for each shard opened alone (`whole=False`); medians of 5 calls, alternating, median of "
            f"{args.repeat} rounds.\n\n"
            + common.table(rows, ["folder", "open(FOLDER) ms", "sum of open(shard) ms", "overhead ms", "overhead"])
            + "\n\nThe overhead is a constant of the folder, not of its size: locating the weights (a dozen stats), "
              "reading config.json and the index as JSON, and the cross-checks (every weight_map entry in its "
              "shard, no name in two files, total_size). Each of these shards lists in 0.07-0.2 ms, so that "
              "constant is far above 10% of the sum here: the goal is not met on this model."
            + "\n\nConvert the .bin shards to safetensors shards (a model folder as transformers writes it, "
              f"max_shard_size {shard_size}): `mfparse.convert.convert(BIN_FOLDER, OUT)` against torch.load(shard, "
              "weights_only=True) + safetensors.torch.save_file per shard, each in a fresh process (imports "
              f"included), alternating, median wall of {args.repeat}, max VmHWM; the output goes to the source's "
              "disk, then to tmpfs where the disk's writeback does not dominate; mfparse's output was checked "
              "against the source.\n\n"
            + common.table(conv, ["output on", "mfparse s", "reference s", "speed-up", "mfparse RSS MB",
                                  "reference RSS MB", "RSS ratio"])
            + "\n\nGoals (issue 15): listing overhead < 10% over the sum of the files; convert >= 2x "
              "faster with peak RSS <= 1/10. mfparse copies each tensor's bytes from the .bin (zip, stored) into the "
              "new shard in the kernel (copy_file_range), never unpickling and never holding a shard in memory; the "
              "reference unpickles each shard into memory and writes it from there.\n")
    if not args.no_write:
        common.write_section("Sharded checkpoints: listing a folder, converting .bin shards (issue 15)", body)
    print(body)
    if args.clean:
        shutil.rmtree(common.cached("shards"), ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
