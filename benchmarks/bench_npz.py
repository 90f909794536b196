""".npz listing: mfparse vs np.load + touching each member, on the 2.7 GB LLaMA-shaped archive.

    PYTHONPATH=. python benchmarks/bench_npz.py

benchmarks/.data/llama.npz holds the fp16 tensors of common.llama_specs(), written the way
np.savez writes (ZIP_STORED members `<name>.npy`, zip64), one member at a time so that the
writer never holds the whole model in memory. np.load opens the archive lazily, so "listing"
with numpy means reading each member (`z[name]`), which copies it; mfparse lists names,
dtypes, shapes and offsets from the zip directory and the .npy headers, and hands out
zero-copy views when asked. Page cache warm for both (the file fits in RAM here).
"""

from __future__ import annotations

import os
import sys
import zipfile

import numpy as np

from common import cached, fill, llama_specs, machine, peak_rss_mb, table, timeit, versions, write_section

import mfparse


def make(path):
    tmp = str(path) + ".tmp"
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
        for i, (name, shape) in enumerate(llama_specs()):
            arr = fill(shape, np.float16, i)
            with z.open(name + ".npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, arr, allow_pickle=False)
    os.replace(tmp, path)


def numpy_list(path):
    out = []
    with np.load(path) as z:
        for name in z.files:
            a = z[name]
            out.append((name, a.dtype.name, a.shape))
    return out


def mfparse_list(path):
    with mfparse.open(path) as m:
        return [(t.name, t.dtype, t.shape) for t in m.tensors()]


def mfparse_views(path):
    with mfparse.open(path) as m:
        return sum(m[t.name].shape[0] for t in m.tensors())


def main():
    path = cached("llama.npz")
    if not path.exists():
        make(path)
    # first, while this process is small: Linux keeps ru_maxrss across fork + exec, so a child
    # started later would report this process's peak instead of its own
    rss_np = peak_rss_mb(f"import numpy as np\nz = np.load({str(path)!r})\nfor k in z.files: z[k]")
    rss_mf = peak_rss_mb(f"import mfparse\nm = mfparse.open({str(path)!r})\nlist(m.tensors())")
    a, b = numpy_list(path), mfparse_list(path)
    assert [(n, d, tuple(s)) for n, d, s in a] == b, "readers disagree"
    t_np = timeit(lambda: numpy_list(path), repeat=3)
    t_mf = timeit(lambda: mfparse_list(path), repeat=21)
    t_views = timeit(lambda: mfparse_views(path), repeat=21)
    ratio = t_np / t_mf
    rows = [
        ["np.load + z[name] for every member", f"{t_np * 1000:.0f}", "1x", f"{rss_np:.0f}"],
        ["mfparse.open + tensors()", f"{t_mf * 1000:.2f}", f"{ratio:.0f}x", f"{rss_mf:.0f}"],
        ["mfparse.open + a zero-copy view of every member", f"{t_views * 1000:.2f}", f"{t_np / t_views:.0f}x", "-"],
    ]
    body = (
        "Command: `PYTHONPATH=. python benchmarks/bench_npz.py`\n\n"
        f"File: benchmarks/.data/llama.npz, {len(b)} fp16 members (np.savez layout, stored, zip64), "
        f"{path.stat().st_size / 1e9:.2f} GB. Median wall time, warm page cache, one process; peak RSS of a "
        "fresh process doing the same listing.\n\n"
        + table(rows, ["reader", "ms", "speed-up", "peak RSS MB"])
        + f"\n\nGoal: listing at least 100x faster than np.load + touching each member: "
        f"{'reached' if ratio >= 100 else 'MISSED'} ({ratio:.0f}x). numpy has no lazy listing of an .npz "
        "(NpzFile.files gives names only; dtypes and shapes need the member read).\n\n"
        f"Machine: {machine()} (load average {os.getloadavg()[0]:.1f} at the end: the machine is shared);"
        f" versions: {versions('numpy')}\n"
    )
    print(body)
    write_section("NPZ listing (2.7 GB LLaMA-shaped) vs np.load", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
