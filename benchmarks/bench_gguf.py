"""GGUF listing: mfparse vs gguf-py's GGUFReader on a 20,000-tensor file (same process, medians).

    PYTHONPATH=. python benchmarks/bench_gguf.py

Files, written once by gguf-py's writer: benchmarks/.data/many.gguf (the 20,000 float32
tensors of common.many_specs()) and many_vocab.gguf (the same plus a 32,000-token vocabulary
and its scores, as llama.cpp files carry).
Both readers list every tensor's name, numpy-order shape, type, byte size and offset;
gguf-py's reader also decodes every metadata field while opening, which is part of what a
user of it pays to list a file.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from common import cached, machine, many_specs, table, timeit, versions, write_section

import mfparse


def make(path, vocab: bool):
    import gguf

    w = gguf.GGUFWriter(str(path) + ".tmp", "llama")
    if vocab:
        w.add_array("tokenizer.ggml.tokens", [f"tok{i}" for i in range(32000)])
        w.add_array("tokenizer.ggml.scores", [float(i) for i in range(32000)])
    for name, shape in many_specs():
        w.add_tensor(name, np.zeros(shape, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    (path.parent / (path.name + ".tmp")).rename(path)


def list_gguf_py(path):
    import gguf

    r = gguf.GGUFReader(str(path))
    return [(t.name, tuple(int(d) for d in reversed(t.shape.tolist())), t.tensor_type, t.n_bytes, t.data_offset)
            for t in r.tensors]


def list_mfparse(path):
    with mfparse.open(path) as m:
        return [(t.name, t.shape, t.dtype, t.nbytes, t.offset) for t in m.tensors()]


def main():
    rows = []
    ratios = {}
    for name, vocab in (("many.gguf", False), ("many_vocab.gguf", True)):
        path = cached(name)
        if not path.exists():
            make(path, vocab)
        a, b = list_gguf_py(path), list_mfparse(path)
        assert [(x[0], x[1], x[3], x[4]) for x in a] == [(x[0], x[1], x[3], x[4]) for x in b], "readers disagree"
        t_ref = timeit(lambda: list_gguf_py(path), repeat=5)
        t_mf = timeit(lambda: list_mfparse(path), repeat=21)
        ratios[name] = t_ref / t_mf
        what = f"{len(b):,} tensors" + (" + 32,000-token vocabulary" if vocab else "")
        rows.append([f"{name} ({what}, {path.stat().st_size / 1e6:.1f} MB)", f"{t_ref * 1000:.0f}",
                     f"{t_mf * 1000:.1f}", f"{t_ref / t_mf:.0f}x"])
    r = ratios["many.gguf"]
    body = (
        "Command: `PYTHONPATH=. python benchmarks/bench_gguf.py`\n\n"
        "Median wall time of opening the file and listing every tensor (name, numpy-order shape, type, bytes, "
        "offset), warm page cache, one process. gguf-py's GGUFReader decodes every metadata field while "
        "opening; mfparse decodes metadata on demand.\n\n"
        + table(rows, ["file", "gguf-py GGUFReader ms", "mfparse ms", "speed-up"])
        + f"\n\nGoal: listing the 20,000-tensor file at least 20x faster than GGUFReader: "
        f"{'reached' if r >= 20 else 'MISSED'} ({r:.0f}x).\n\n"
        f"Machine: {machine()} (load average {os.getloadavg()[0]:.1f} at the end: the machine is shared);"
        f" versions: {versions('numpy', 'gguf')} (gguf-py 0.19.0 reports no __version__)\n"
    )
    print(body)
    write_section("GGUF listing (20,000 tensors) vs gguf-py", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
