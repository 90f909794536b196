"""Shared benchmark plumbing: the model shapes every format is benchmarked on, the cache of
generated files, timing with medians, peak RSS of a listing in a fresh process, environment
description, and writing a section of benchmarks/RESULTS.md.

The same two models are written in every format so that numbers compare across readers:
  * llama: a ~2.7 GB fp16 LLaMA-shaped checkpoint (24 layers, hidden 2048, intermediate 5632,
    vocab 32000): 219 tensors;
  * many: 20,000 small float32 tensors (a "many tensors" stress test for metadata parsing).
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = Path(os.environ.get("MFPARSE_BENCH_DATA", HERE / ".data"))
RESULTS = HERE / "RESULTS.md"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def llama_specs(layers: int = 24, hidden: int = 2048, inter: int = 5632, vocab: int = 32000):
    """[(name, shape)] of a LLaMA-shaped model, in the order a state_dict lists them."""
    out = [("model.embed_tokens.weight", (vocab, hidden))]
    for i in range(layers):
        p = f"model.layers.{i}"
        out += [
            (f"{p}.self_attn.q_proj.weight", (hidden, hidden)),
            (f"{p}.self_attn.k_proj.weight", (hidden, hidden)),
            (f"{p}.self_attn.v_proj.weight", (hidden, hidden)),
            (f"{p}.self_attn.o_proj.weight", (hidden, hidden)),
            (f"{p}.mlp.gate_proj.weight", (inter, hidden)),
            (f"{p}.mlp.up_proj.weight", (inter, hidden)),
            (f"{p}.mlp.down_proj.weight", (hidden, inter)),
            (f"{p}.input_layernorm.weight", (hidden,)),
            (f"{p}.post_attention_layernorm.weight", (hidden,)),
        ]
    out += [("model.norm.weight", (hidden,)), ("lm_head.weight", (vocab, hidden))]
    return out


def many_specs(n: int = 20000):
    """[(name, shape)] of n small tensors with varied shapes (float32)."""
    shapes = [(16,), (4, 8), (2, 3, 5), (32,), (8, 8)]
    return [(f"blocks.{i // 10}.layer{i % 10}.weight", shapes[i % len(shapes)]) for i in range(n)]


def fill(shape, dtype, seed: int):
    """Deterministic cheap data (no RNG over gigabytes): a ramp, reshaped."""
    import numpy as np

    n = 1
    for d in shape:
        n *= d
    base = (np.arange(n, dtype=np.float32) % 251 - 125) * (0.001 * (1 + seed % 7))
    return base.astype(dtype).reshape(shape)


def cached(name: str) -> Path:
    """Path of a generated file in the benchmark cache (created by the caller if missing)."""
    DATA.mkdir(parents=True, exist_ok=True)
    return DATA / name


def drop_cache(path) -> None:
    """Drop the file from the page cache (written pages flushed first): the next read is cold."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def timeit(fn, repeat: int = 7, warmup: int = 1) -> float:
    """Median wall time of fn() in seconds, after warm-up calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_rss_mb(code: str) -> float:
    """Peak resident memory (MB) of a fresh Python process running `code`."""
    # VmHWM belongs to this process image (ru_maxrss would carry the forking parent's peak)
    probe = code + "\nprint('RSS', [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])\n"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    kb = int(re.search(r"RSS (\d+)", r.stdout).group(1))
    return kb / 1024


def list_rss_mb(path) -> float:
    """Peak RSS (MB) of a fresh process that imports mfparse and lists every tensor of path."""
    return peak_rss_mb(f"import mfparse\nwith mfparse.open({str(path)!r}) as m:\n"
                       "    rows = [(t.name, t.dtype, t.shape) for t in m.tensors()]\nassert rows\n")


def versions(*modules: str) -> dict:
    out = {"python": platform.python_version()}
    for m in modules:
        try:
            mod = __import__(m)
            out[m] = getattr(mod, "__version__", "?")
        except Exception:
            out[m] = "not installed"
    return out


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def write_section(title: str, body: str) -> None:
    """Replace (or append) the section `## title` of benchmarks/RESULTS.md."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    section = f"## {title}\n\n{body.rstrip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text)
    else:
        text = text.rstrip() + "\n\n" + section
    RESULTS.write_text(text)


def table(rows, head) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def dump_json(obj) -> str:
    return json.dumps(obj, indent=1, sort_keys=True)
