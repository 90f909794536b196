"""Listing benchmark (issue 2): names, dtypes and shapes of every tensor, mfparse against
torch.load(mmap=True, weights_only=True) and safetensors safe_open + get_slice, in one
process on the same files; plus peak RSS of listing the 2.7 GB file in a fresh process.

Files (generated once, cached in benchmarks/.data/):
  llama.pth / llama.safetensors   ~2.7 GB fp16, LLaMA-shaped (24 layers, hidden 2048)
  many.pth  / many.safetensors    20,000 small float32 tensors

Usage: python benchmarks/bench_listing.py [--repeat N] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402


def _state_dict(specs, dtype):
    import numpy as np
    import torch

    sd = {}
    for i, (name, shape) in enumerate(specs):
        sd[name] = torch.from_numpy(common.fill(shape, np.float32, i)).to(dtype)
    return sd


def ensure_files():
    import torch
    from safetensors.torch import save_file

    made = {}
    for tag, specs, dtype in (("llama", common.llama_specs(), torch.float16),
                              ("many", common.many_specs(), torch.float32)):
        pth, st = common.cached(f"{tag}.pth"), common.cached(f"{tag}.safetensors")
        if pth.exists() and st.exists():
            made[tag] = (pth, st)
            continue
        print(f"generating {tag} ...", flush=True)
        sd = _state_dict(specs, dtype)
        for path, writer in ((pth, lambda p: torch.save(sd, p)), (st, lambda p: save_file(sd, p))):
            tmp = str(path) + ".tmp"
            writer(tmp)
            os.replace(tmp, path)
        del sd
        made[tag] = (pth, st)
    return made


def list_mfparse(path):
    import mfparse

    with mfparse.open(path) as m:
        return [(t.name, t.dtype, t.shape) for t in m.tensors()]


def list_torch(path):
    import torch

    sd = torch.load(path, mmap=True, weights_only=True, map_location="cpu")
    return [(k, str(v.dtype), tuple(v.shape)) for k, v in sd.items()]


def list_safetensors(path):
    from safetensors import safe_open

    out = []
    with safe_open(path, framework="numpy") as f:
        for k in f.keys():
            s = f.get_slice(k)
            out.append((k, s.get_dtype(), tuple(s.get_shape())))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--no-write", action="store_true", help="print, do not update RESULTS.md")
    args = ap.parse_args(argv)
    files = ensure_files()
    import safetensors
    import torch

    import mfparse

    rows = []
    for tag, (pth, st) in files.items():
        # same answer first: names, dtypes, shapes agree
        ours = list_mfparse(pth)
        ref = list_torch(pth)
        assert [r[0] for r in ours] == [r[0] for r in ref], "names differ"
        assert [r[2] for r in ours] == [r[2] for r in ref], "shapes differ"
        t_ours = common.timeit(lambda: list_mfparse(pth), args.repeat)
        t_ref = common.timeit(lambda: list_torch(pth), max(3, args.repeat // 2))
        rows.append((f"{tag}.pth ({len(ours):,} tensors)", "torch.load(mmap=True, weights_only=True)",
                     f"{t_ours * 1e3:.2f}", f"{t_ref * 1e3:.1f}", f"{t_ref / t_ours:.1f}x"))
        ours = list_mfparse(st)
        ref = list_safetensors(st)
        assert sorted(r[0] for r in ours) == sorted(r[0] for r in ref), "names differ"
        t_ours = common.timeit(lambda: list_mfparse(st), args.repeat)
        t_ref = common.timeit(lambda: list_safetensors(st), args.repeat)
        rows.append((f"{tag}.safetensors ({len(ours):,} tensors)", "safe_open + get_slice",
                     f"{t_ours * 1e3:.2f}", f"{t_ref * 1e3:.2f}", f"{t_ref / t_ours:.1f}x"))

    rss = []
    for path in files["llama"]:
        size = os.path.getsize(path)
        mb = common.list_rss_mb(path)
        base = common.peak_rss_mb("import mfparse")
        rss.append((path.name, f"{size / 1e9:.2f} GB", f"{mb:.1f}", f"{base:.1f}"))

    v = common.versions("torch", "safetensors", "numpy")
    body = "\n\n".join([
        f"Command: `python benchmarks/bench_listing.py` (make bench). Machine: {common.machine()}. "
        f"Python {v['python']}, mfparse {mfparse.__version__}, torch {torch.__version__}, "
        f"safetensors {safetensors.__version__}, numpy {v['numpy']}. Medians of {args.repeat} runs after a warm-up; "
        f"each run opens the file and lists (name, dtype, shape) of every tensor.",
        common.table(rows, ["file", "competitor", "mfparse ms", "competitor ms", "speed-up"]),
        "Peak RSS (VmHWM) of a fresh process that imports mfparse and lists the file, next to the "
        "same process that only imports mfparse:",
        common.table(rss, ["file", "size", "peak RSS MB (list)", "peak RSS MB (import only)"]),
        "Goals (issue 2): >= 20x torch.load on many.pth; >= 1x safe_open on .safetensors; "
        "< 100 MB peak RSS listing the 2.7 GB file.",
    ])
    print(body)
    if not args.no_write:
        common.write_section("Listing tensors: torch zip and safetensors (issue 2)", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
