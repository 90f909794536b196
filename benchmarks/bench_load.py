"""Loading benchmark (issue 7): the 2.7 GB LLaMA-shaped fp16 file into torch tensors with
mfparse.torch.load_file against safetensors.torch.load_file and torch.load(mmap=True), in one
process on the same files, medians after a warm-up; and the same loads followed by reading
every page of every tensor (what a service pays before its first request).

Usage: python benchmarks/bench_load.py [--repeat N] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from bench_convert import command_line, ensure_llama  # noqa: E402


def touch(sd) -> float:
    """Read one element per 4 KiB page of every tensor (all the data comes in from the page
    cache, no arithmetic over it)."""
    total = 0.0
    for t in sd.values():
        flat = t.reshape(-1)
        step = max(1, 4096 // t.element_size())
        total += float(flat[::step].float().sum())
    return total


def loaders(pth, st):
    import torch
    from safetensors.torch import load_file as st_load

    import mfparse.torch

    return [
        ("mfparse.torch.load_file(llama.safetensors)", lambda: mfparse.torch.load_file(st)),
        ("safetensors.torch.load_file(llama.safetensors)", lambda: st_load(st)),
        ("mfparse.torch.load_file(llama.pth)", lambda: mfparse.torch.load_file(pth)),
        ("torch.load(llama.pth, mmap=True, weights_only=True)",
         lambda: torch.load(pth, mmap=True, weights_only=True, map_location="cpu")),
    ]


RSS = """
import sys
sys.path.insert(0, {bench!r})
from bench_load import loaders, touch
name, fn = loaders({pth!r}, {st!r})[{i}]
sd = fn()
{touch}
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    pth, st = (str(p) for p in ensure_llama())
    import safetensors
    import torch

    import mfparse

    # same tensors first
    ref = torch.load(pth, mmap=True, weights_only=True, map_location="cpu")
    for name, fn in loaders(pth, st):
        sd = fn()
        assert list(sd) == list(ref) or sorted(sd) == sorted(ref), name
        for k in ("model.embed_tokens.weight", "model.layers.23.mlp.down_proj.weight", "model.norm.weight"):
            assert torch.equal(sd[k], ref[k]), (name, k)
    del ref, sd

    rows = []
    results = {}
    for name, fn in loaders(pth, st):
        lazy = common.timeit(fn, args.repeat)
        full = common.timeit(lambda: touch(fn()), max(3, args.repeat // 2))
        results[name] = (lazy, full)
    base_lazy = {"st": results["safetensors.torch.load_file(llama.safetensors)"][0],
                 "pth": results["torch.load(llama.pth, mmap=True, weights_only=True)"][0]}
    for i, (name, _) in enumerate(loaders(pth, st)):
        lazy, full = results[name]
        rss_lazy = common.peak_rss_mb(RSS.format(bench=os.path.dirname(os.path.abspath(__file__)), pth=pth, st=st, i=i,
                                          touch=""))
        rows.append((name, f"{lazy * 1e3:.1f}", f"{full:.2f}", f"{rss_lazy:.0f}"))
    ours_st, ours_pth = results["mfparse.torch.load_file(llama.safetensors)"][0], \
        results["mfparse.torch.load_file(llama.pth)"][0]
    v = common.versions("numpy")
    body = "\n\n".join([
        f"Command: `{command_line()}`. Machine: {common.machine()}. "
        f"Python {v['python']}, mfparse {mfparse.__version__}, torch {torch.__version__}, "
        f"safetensors {safetensors.__version__}. Files: llama.safetensors / llama.pth (2.73 GB, 219 fp16 "
        f"tensors), warm page cache. 'load' = the call returning name -> torch.Tensor (median of "
        f"{args.repeat} after a warm-up); 'load + read' = the call plus reading one element per 4 KiB page "
        f"of every tensor; peak RSS = VmHWM of a fresh process that only loads.",
        common.table(rows, ["loader", "load ms", "load + read s", "peak RSS MB (load)"]),
        f"mfparse vs safetensors.torch.load_file on .safetensors: {base_lazy['st'] / ours_st:.2f}x; "
        f"mfparse vs torch.load(mmap=True) on .pth: {base_lazy['pth'] / ours_pth:.2f}x (load). "
        "All four map the file: a tensor's pages are read when first touched, so 'load + read' is "
        "bounded by the page cache for every loader alike.",
    ])
    print(body)
    if not args.no_write:
        common.write_section("Load into torch (issue 7)", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
