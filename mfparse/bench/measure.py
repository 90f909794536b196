"""Measurement: seeded inputs, the timing loop, statistics, accuracy and peak memory.

Rules every runtime is held to (the reasons published comparisons go wrong):
  * every runtime gets the same seeded inputs (`make_inputs`);
  * the first run and the warm-up iterations are timed on their own and never enter the
    statistics;
  * compute is timed apart from host<->device copies: on a GPU with CUDA events recorded on
    the stream around each phase and read after synchronising, on the CPU with perf_counter;
  * accuracy is taken from the outputs of the last timed iteration, so the timed path is the
    one that is checked.

A runtime hands `run_loop` a `Session`: `compute()` runs the model once; `h2d()` / `d2h()`
(None on the CPU) copy inputs to and outputs from the device; `clock` is a `HostClock` or a
device event clock; `outputs()` returns the last outputs as numpy arrays.
"""

from __future__ import annotations

import math
import resource
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

# ---- inputs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputSpec:
    """One model input: name, shape (dim 0 is the batch) and numpy dtype name."""

    name: str
    shape: tuple
    dtype: str = "float32"

    def with_batch(self, batch: int) -> "InputSpec":
        if not self.shape:
            return self
        return InputSpec(self.name, (int(batch),) + tuple(self.shape[1:]), self.dtype)

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


def make_inputs(specs: Sequence[InputSpec], batch: int, seed: int) -> list[np.ndarray]:
    """The inputs every runtime gets for one batch size: standard normal float32 (or small
    non-negative integers for integer inputs), from one seeded generator, C-contiguous."""
    rng = np.random.default_rng([int(seed), int(batch)])
    out = []
    for spec in specs:
        shape = spec.with_batch(batch).shape
        dt = np.dtype(spec.dtype)
        if dt.kind == "f":
            a = rng.standard_normal(shape, dtype=np.float32).astype(dt)
        elif dt.kind == "b":
            a = rng.integers(0, 2, size=shape).astype(dt)
        elif dt.kind in "iu":
            a = rng.integers(0, 10, size=shape).astype(dt)
        else:
            raise ValueError(f"input {spec.name!r}: unsupported dtype {spec.dtype}")
        out.append(np.ascontiguousarray(a))
    return out


# ---- clocks ------------------------------------------------------------------------------------


class HostClock:
    """perf_counter marks for CPU runtimes."""

    name = "perf_counter"

    def mark(self):
        return time.perf_counter_ns()

    def elapsed_ms(self, a, b) -> float:
        return (b - a) / 1e6

    def synchronize(self) -> None:
        pass


@dataclass
class Session:
    """What a runtime gives the timing loop for one (precision, batch)."""

    compute: Callable[[], object]
    outputs: Callable[[], list]
    clock: object = field(default_factory=HostClock)
    h2d: Callable[[], object] | None = None
    d2h: Callable[[], object] | None = None


@dataclass
class LoopResult:
    first_run_ms: float
    warmup_ms: list
    compute_ms: list
    h2d_ms: list
    d2h_ms: list


def _one(session: Session):
    clock = session.clock
    clock.synchronize()
    m0 = clock.mark()
    m1 = m0
    if session.h2d is not None:
        session.h2d()
        m1 = clock.mark()
    session.compute()
    m2 = clock.mark()
    m3 = m2
    if session.d2h is not None:
        session.d2h()
        m3 = clock.mark()
    clock.synchronize()
    return (clock.elapsed_ms(m0, m1) if session.h2d is not None else None,
            clock.elapsed_ms(m1, m2),
            clock.elapsed_ms(m2, m3) if session.d2h is not None else None)


def run_loop(session: Session, warmup: int, iterations: int | None, duration: float | None,
             min_iterations: int = 3, max_iterations: int = 1_000_000) -> LoopResult:
    """First run (wall clock, copies included), `warmup` more untimed-for-statistics runs,
    then `iterations` timed runs, or as many as fit in `duration` seconds (at least
    `min_iterations`)."""
    session.clock.synchronize()
    t0 = time.perf_counter_ns()
    _one(session)
    first = (time.perf_counter_ns() - t0) / 1e6
    warm = []
    for _ in range(max(0, warmup)):
        t0 = time.perf_counter_ns()
        _one(session)
        warm.append((time.perf_counter_ns() - t0) / 1e6)
    compute, h2d, d2h = [], [], []
    start = time.perf_counter()
    while True:
        n = len(compute)
        if iterations is not None:
            if n >= iterations:
                break
        elif n >= min_iterations and time.perf_counter() - start >= duration:
            break
        if n >= max_iterations:
            break
        a, c, b = _one(session)
        compute.append(c)
        if a is not None:
            h2d.append(a)
        if b is not None:
            d2h.append(b)
    return LoopResult(first, warm, compute, h2d, d2h)


# ---- statistics --------------------------------------------------------------------------------

LATENCY_KEYS = ("min", "mean", "p50", "p90", "p95", "p99", "max", "stdev")


def latency_stats(samples_ms: Sequence[float]) -> dict:
    """min/mean/p50/p90/p95/p99/max and sample stdev (ms); percentiles interpolate linearly."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no samples")
    p50, p90, p95, p99 = np.percentile(a, [50, 90, 95, 99])
    return {
        "min": float(a.min()),
        "mean": float(a.mean()),
        "p50": float(p50),
        "p90": float(p90),
        "p95": float(p95),
        "p99": float(p99),
        "max": float(a.max()),
        "stdev": float(a.std(ddof=1)) if a.size > 1 else 0.0,
    }


def copy_stats(samples_ms: Sequence[float]) -> dict | None:
    if not samples_ms:
        return None
    a = np.asarray(samples_ms, dtype=np.float64)
    return {"mean": float(a.mean()), "p50": float(np.percentile(a, 50)), "max": float(a.max())}


def throughput(batch: int, samples_ms: Sequence[float]) -> float:
    """Samples per second over the timed iterations: batch x iterations / total compute time."""
    total = float(np.sum(samples_ms))
    return batch * len(samples_ms) * 1000.0 / total if total > 0 else math.inf


def tokens_per_s(batch: int, seq_len: int, samples_ms: Sequence[float]) -> float:
    """Tokens per second for token-id inputs: batch x seq_len x iterations / total compute time."""
    return throughput(batch, samples_ms) * seq_len


# ---- accuracy ----------------------------------------------------------------------------------


def accuracy(outputs: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> dict:
    """max abs diff, mean abs diff and cosine similarity of all outputs (flattened and
    concatenated, in float64) against the reference outputs."""
    if len(outputs) != len(reference):
        raise ValueError(f"{len(outputs)} outputs, the reference has {len(reference)}")
    got, ref = [], []
    for i, (o, r) in enumerate(zip(outputs, reference)):
        o = np.asarray(o)
        r = np.asarray(r)
        if o.shape != r.shape:
            raise ValueError(f"output {i} has shape {tuple(o.shape)}, the reference {tuple(r.shape)}")
        got.append(o.astype(np.float64, copy=False).ravel())
        ref.append(r.astype(np.float64, copy=False).ravel())
    g = np.concatenate(got) if got else np.zeros(0)
    r = np.concatenate(ref) if ref else np.zeros(0)
    if g.size == 0:
        return {"max_abs_diff": 0.0, "mean_abs_diff": 0.0, "cosine": 1.0}
    d = np.abs(g - r)
    ng, nr = np.linalg.norm(g), np.linalg.norm(r)
    if ng == 0 and nr == 0:
        cos = 1.0
    elif ng == 0 or nr == 0:
        cos = 0.0
    else:
        cos = float(np.dot(g, r) / (ng * nr))
    return {"max_abs_diff": float(d.max()), "mean_abs_diff": float(d.mean()), "cosine": cos}


# ---- host memory -------------------------------------------------------------------------------


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux: write 5 to
    /proc/self/clear_refs). Returns False where that is not possible; the peak then covers the
    whole process so far."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_mb() -> float | None:
    """Current resident set size of this process in MiB (None where /proc is missing)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (since the last reset_peak_rss)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
