"""GGUF listing: mfparse vs gguf-py's GGUFReader on a 20,000-tensor file (same process, medians).

    PYTHONPATH=. python benchmarks/bench_gguf.py

The file (benchmarks/.data/many.gguf, float32 tensors of common.many_specs() plus a
32,000-token vocabulary as real llama.cpp files carry) is written once by gguf-py's writer.
Both readers list every tensor's name, numpy-order shape, type, byte size and offset;
gguf-py's reader also decodes every metadata field while opening, which is part of what a
user of it pays to list a file.
"""

from __future__ import annotations

import sys

import numpy as np

from common import cached, machine, many_specs, table, timeit, versions, write_section

import mfparse


def make(path):
    import gguf

    w = gguf.GGUFWriter(str(path) + ".tmp", "llama")
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
    path = cached("many.gguf")
    if not path.exists():
        make(path)
    a, b = list_gguf_py(path), list_mfparse(path)
    assert [(x[0], x[1], x[3], x[4]) for x in a] == [(x[0], x[1], x[3], x[4]) for x in b], "readers disagree"
    n = len(b)
    t_ref = timeit(lambda: list_gguf_py(path), repeat=5)
    t_mf = timeit(lambda: list_mfparse(path), repeat=21)
    v = versions("numpy", "gguf")
    rows = [
        ["gguf-py GGUFReader + tensor list", f"{t_ref * 1000:.1f}", "1.0x"],
        ["mfparse.open + tensors()", f"{t_mf * 1000:.2f}", f"{t_ref / t_mf:.0f}x"],
    ]
    body = (
        f"Command: `PYTHONPATH=. python benchmarks/bench_gguf.py`\n\n"
        f"File: benchmarks/.data/many.gguf, {n:,} float32 tensors + a 32,000-token vocabulary, "
        f"{path.stat().st_size / 1e6:.1f} MB, written by gguf-py. Median wall time of listing every tensor "
        f"(name, shape, type, bytes, offset), warm page cache, one process.\n\n"
        + table(rows, ["reader", "ms", "speed-up"])
        + f"\n\nGoal: at least 20x faster than GGUFReader: {'reached' if t_ref / t_mf >= 20 else 'MISSED'} "
        f"({t_ref / t_mf:.0f}x).\n\nMachine: {machine()}; versions: {v}\n"
    )
    print(body)
    write_section("GGUF listing (20,000 tensors) vs gguf-py", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
