"""HDF5 listing benchmark (issue 4): names, dtypes and shapes of every dataset, mfparse against
h5py's visititems, in one process on the same files; plus reading every tensor, and the peak
RSS of listing the 2.7 GB file in a fresh process.

Files (written once by h5py with its default settings, cached in benchmarks/.data/):
  many.h5    20,000 small float32 datasets (common.many_specs)
  llama.h5   ~2.7 GB fp16, LLaMA-shaped (common.llama_specs)

Usage: python benchmarks/bench_hdf5.py [--repeat N] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402


def ensure_files():
    import h5py
    import numpy as np

    made = {}
    for tag, specs, dtype in (("many", common.many_specs(), np.float32), ("llama", common.llama_specs(), np.float16)):
        path = common.cached(f"{tag}.h5")
        if not path.exists():
            print(f"generating {path} ...", flush=True)
            tmp = str(path) + ".tmp"
            with h5py.File(tmp, "w") as f:  # h5py defaults (libver earliest), as Keras writes
                for i, (name, shape) in enumerate(specs):
                    f.create_dataset(name, data=common.fill(shape, dtype, i))
            os.replace(tmp, path)
        made[tag] = path
    return made


def list_mfparse(path):
    import mfparse

    with mfparse.open(path) as m:
        return [(t.name, t.dtype, t.shape) for t in m.tensors()]


def list_h5py(path):
    import h5py

    out = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            out.append((name, obj.dtype.name, obj.shape))

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return out


def read_mfparse(path):
    import mfparse

    total = 0
    with mfparse.open(path) as m:
        for t in m.tensors():
            total += int(m[t.name].reshape(-1).view("u1")[-1])  # touch the last byte of each tensor
    return total


def read_h5py(path):
    import h5py

    total = 0
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            nonlocal total
            if isinstance(obj, h5py.Dataset):
                total += int(obj[()].reshape(-1).view("u1")[-1])
        f.visititems(visit)
    return total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--no-write", action="store_true", help="print, do not update RESULTS.md")
    args = ap.parse_args(argv)
    files = ensure_files()
    import h5py

    import mfparse

    rows = []
    for tag, path in files.items():
        ours, ref = list_mfparse(path), list_h5py(path)
        assert ours == ref, "mfparse and h5py disagree"
        t_ours = common.timeit(lambda: list_mfparse(path), args.repeat)
        t_ref = common.timeit(lambda: list_h5py(path), max(3, args.repeat // 2))
        rows.append((f"{tag}.h5 ({len(ours):,} datasets)", "list: h5py visititems", f"{t_ours * 1e3:.2f}",
                     f"{t_ref * 1e3:.1f}", f"{t_ref / t_ours:.1f}x"))
    for tag, path in files.items():
        assert read_mfparse(path) == read_h5py(path)
        rep = 3 if tag == "llama" else args.repeat
        t_ours = common.timeit(lambda: read_mfparse(path), rep)
        t_ref = common.timeit(lambda: read_h5py(path), 3)
        rows.append((f"{tag}.h5", "read every tensor: h5py ds[()]", f"{t_ours * 1e3:.2f}", f"{t_ref * 1e3:.1f}",
                     f"{t_ref / t_ours:.1f}x"))

    path = files["llama"]
    size = os.path.getsize(path)
    mb = common.list_rss_mb(path)
    base = common.peak_rss_mb("import mfparse")
    rss = [(path.name, f"{size / 1e9:.2f} GB", f"{mb:.1f}", f"{base:.1f}")]

    v = common.versions("h5py", "numpy")
    body = "\n\n".join([
        f"Command: `python benchmarks/bench_hdf5.py`. Machine: {common.machine()}. Python {v['python']}, "
        f"mfparse {mfparse.__version__}, h5py {h5py.__version__} (HDF5 {h5py.version.hdf5_version}), "
        f"numpy {v['numpy']}. Files written by h5py with its defaults (superblock v0, symbol-table groups, "
        f"contiguous datasets). Medians of {args.repeat} runs after a warm-up (h5py: at least 3). Listing = open "
        "the file and collect (name, dtype, shape) of every dataset; reading = numpy array of every dataset "
        "(mfparse: zero-copy views of the memory map, touching one byte each; h5py: ds[()] copies). "
        "Both read the same files in one process, so the page cache is warm for both.",
        common.table(rows, ["file", "what / competitor", "mfparse ms", "h5py ms", "speed-up"]),
        "Peak RSS (VmHWM) of a fresh process that imports mfparse and lists the file, next to the same "
        "process that only imports mfparse:",
        common.table(rss, ["file", "size", "peak RSS MB (list)", "peak RSS MB (import only)"]),
        "Goal (issue 4): listing many.h5 at least 30x faster than h5py visititems.",
    ])
    print(body)
    if not args.no_write:
        common.write_section("Listing HDF5: h5py files and Keras .h5 (issue 4)", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
