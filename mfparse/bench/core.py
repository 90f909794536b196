"""`run()`: load the model, make the seeded inputs and the reference outputs, then measure
every (runtime, precision, batch) row one after another in this process.

Rows run sequentially, never concurrently; each row builds its own session/engine and frees
it before the next starts, so no runtime's threads or memory overlap another's timing.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from mfparse.bench.base import (DEFAULT_RUNTIMES, PRECISIONS, RUNTIME_TOKENS, BenchError, Settings,
                                Unavailable, empty_row, unavailable)
from mfparse.bench.env import environment, load_average, usable_cores
from mfparse.bench.export import OnnxStore
from mfparse.bench.measure import (accuracy, copy_stats, latency_stats, make_inputs, peak_rss_mb,
                                   reset_peak_rss, rss_mb, run_loop, throughput)
from mfparse.bench.models import flatten_outputs, load_model, to_numpy


def default_cache_dir() -> Path:
    env = os.environ.get("MFPARSE_CACHE")
    if env:
        return Path(env) / "bench"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mfparse" / "bench"


# ---- runtimes ---------------------------------------------------------------------------------


def resolve_runners(tokens: Sequence[str], trt=None, trt_backend=None) -> list:
    """Runner objects for --runtimes tokens ("all" = every token). `trt` / `trt_backend` replace
    the tensorrt module and the device backend factory (tests use a stand-in)."""
    from mfparse.bench.runners import OrtRunner, TorchCudaRunner, TorchRunner
    from mfparse.bench.trt import TensorRTRunner

    tokens = [t.strip() for t in tokens if t.strip()]
    if "all" in tokens:
        tokens = list(RUNTIME_TOKENS)
    unknown = [t for t in tokens if t not in RUNTIME_TOKENS]
    if unknown or not tokens:
        raise BenchError(f"--runtimes: unknown {', '.join(unknown) or '(none given)'}; "
                         f"known: {', '.join(RUNTIME_TOKENS)}, all")
    out, seen = [], set()

    def add(key, make):
        if key not in seen:
            seen.add(key)
            out.append(make())

    for t in tokens:
        if t == "torch":
            add(t, TorchRunner)
        elif t == "torch-cuda":
            add(t, TorchCudaRunner)
        elif t == "onnxruntime":
            add("onnxruntime-cpu", lambda: OrtRunner("cpu"))
            for ep in _present_ort_gpu_eps():
                add(f"onnxruntime-{ep}", lambda ep=ep: OrtRunner(ep))
        elif t.startswith("onnxruntime-"):
            ep = t.split("-", 1)[1]
            add(t, lambda ep=ep: OrtRunner(ep))
        elif t == "tensorrt":
            add(t, lambda: TensorRTRunner(trt=trt, backend_factory=trt_backend))
    return out


def _present_ort_gpu_eps() -> list:
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    have = set(ort.get_available_providers())
    return [ep for ep, prov in (("cuda", "CUDAExecutionProvider"), ("trt", "TensorrtExecutionProvider"))
            if prov in have]


# ---- the run ----------------------------------------------------------------------------------


class Context:
    """What runners see: the model, the settings, the ONNX files."""

    def __init__(self, model, settings: Settings, onnx: OnnxStore):
        self.model = model
        self.settings = settings
        self.onnx = onnx
        self._checked: dict = {}

    def check(self, runner) -> str | None:
        key = runner.label
        if key not in self._checked:
            try:
                runner.check(self)
                self._checked[key] = None
            except Unavailable as e:
                self._checked[key] = str(e)
        return self._checked[key]

    @staticmethod
    def device_mem_used_mb() -> float | None:
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            free, total = torch.cuda.mem_get_info()
            return (total - free) / 2**20
        return None


def run(model: str, *, weights: str | None = None, input_shapes: Sequence = (),
        batches: Sequence[int] | None = None, runtimes: Sequence[str] = DEFAULT_RUNTIMES,
        precisions: Sequence[str] = ("fp32",), warmup: int = 5, iterations: int | None = None,
        duration: float | None = None, threads: int | None = None, seed: int = 0,
        cache_dir=None, exporter: str = "auto", opset: int | None = None,
        ort_spinning: bool = False, progress: Callable[[str], None] | None = None,
        runners: Sequence | None = None) -> dict:
    """Benchmark one model on several runtimes; returns the report (see mfparse.bench.report).

    Args:
        model: a TorchScript file, `module:callable` (or `file.py:callable`) returning an
            nn.Module, or an .onnx file.
        weights: a weights file in any format mfparse reads, loaded into a torch model.
        input_shapes: `[NAME:]1x3x224x224[:DTYPE]` strings; default: the model's
            `example_input_shape` or the ONNX graph's static shape.
        batches: batch sizes (dim 0 of every input); default: the shape's own.
        runtimes: tokens of mfparse.bench.base.RUNTIME_TOKENS, or "all".
        precisions: among fp32, fp16, int8.
        warmup: warm-up iterations after the first run (neither enters the statistics).
        iterations / duration: timed iterations, or seconds of timed iterations (default 3 s).
        threads: CPU threads for every runtime (default: the usable cores).
        runners: Runner objects replacing `runtimes` (tests).

    Raises:
        BenchError: bad arguments, or a model that cannot be loaded or run under torch fp32.
    """
    precisions = [p.strip() for p in precisions if p.strip()]
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad or not precisions:
        raise BenchError(f"--precision: unknown {', '.join(bad) or '(none given)'}; known: {', '.join(PRECISIONS)}")
    precisions = list(dict.fromkeys(precisions))
    if iterations is not None and duration is not None:
        raise BenchError("give --iterations or --duration, not both")
    if iterations is not None and iterations < 1:
        raise BenchError("--iterations must be at least 1")
    if duration is not None and duration <= 0:
        raise BenchError("--duration must be positive")
    if warmup < 0:
        raise BenchError("--warmup must be 0 or more")
    if iterations is None and duration is None:
        duration = 3.0
    threads = int(threads) if threads else usable_cores()
    if threads < 1:
        raise BenchError("--threads must be at least 1")
    settings = Settings(threads=threads, warmup=warmup, iterations=iterations, duration=duration,
                        seed=seed, cache_dir=Path(cache_dir) if cache_dir else default_cache_dir(),
                        ort_spinning=ort_spinning)
    say = progress or (lambda msg: None)
    load_before = load_average()
    if runners is None:
        runners = resolve_runners(runtimes)

    t_load = time.perf_counter()
    m = load_model(model, weights, input_shapes, seed)
    load_ms = (time.perf_counter() - t_load) * 1e3
    if batches:
        batches = list(dict.fromkeys(int(b) for b in batches))
        if any(b < 1 for b in batches):
            raise BenchError("--batch sizes must be positive")
    else:
        first = m.inputs[0].shape if m.inputs else ()
        batches = [int(first[0])] if first else [1]
    m.check_batches(batches)

    torch = None
    old_threads = None
    if m.is_torch:
        import torch

        old_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
    try:
        store = OnnxStore(m, settings.cache_dir, exporter=exporter, opset=opset, seed=seed)
        ctx = Context(m, settings, store)
        data = {}
        for b in batches:
            inputs = make_inputs(m.inputs, b, seed)
            data[b] = (inputs, _reference(m, inputs, threads))
        ref0 = data[batches[0]][1]
        if ref0 is not None:
            store.set_output_count(len(ref0))
        rows = []
        total = len(runners) * len(precisions) * len(batches)
        for runner in runners:
            for precision in precisions:
                for b in batches:
                    inputs, reference = data[b]
                    row = bench_row(ctx, runner, precision, b, inputs, reference)
                    rows.append(row)
                    say(f"[{len(rows)}/{total}] {_progress_line(row)}")
        return {
            "model": model,
            "model_info": {**m.describe(), "load_ms": load_ms, "onnx": store.summary()},
            "inputs": [s.to_dict() for s in m.inputs],
            "batch": batches,
            "precision": precisions,
            "reference": ("torch fp32 (CPU)" if m.is_torch else "onnxruntime fp32 (CPU EP)")
            if ref0 is not None else None,
            "settings": settings.to_dict(),
            "environment": environment(threads, load_before),
            "runtimes": rows,
        }
    finally:
        if torch is not None and old_threads is not None:
            torch.set_num_threads(old_threads)


def _reference(m, inputs, threads):
    """Outputs of the reference run: torch fp32 on the CPU (ONNX Runtime's CPU EP for .onnx
    models). A model that fails here is broken for this input: BenchError."""
    shapes = ", ".join(f"{s.name}: {s.dtype}{list(a.shape)}" for s, a in zip(m.inputs, inputs))
    if m.is_torch:
        import torch

        tensors = [torch.from_numpy(a) for a in inputs]
        try:
            with torch.inference_mode():
                out = m.module(*tensors)
            return [to_numpy(t) for t in flatten_outputs(out)]
        except BenchError:
            raise
        except Exception as e:
            raise BenchError(f"the model fails under torch fp32 on inputs {shapes}: {type(e).__name__}: "
                             f"{' '.join(str(e).split())[:400]}") from None
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(m.onnx_path), so, providers=["CPUExecutionProvider"])
        feeds = {s.name: a for s, a in zip(m.inputs, inputs)}
        return [to_float(o) for o in sess.run(None, feeds)]
    except Exception as e:
        raise BenchError(f"the ONNX model fails under onnxruntime (CPU) on inputs {shapes}: "
                         f"{type(e).__name__}: {' '.join(str(e).split())[:400]}") from None


def to_float(a):
    import numpy as np

    a = np.asarray(a)
    return a.astype(np.float32) if a.dtype.kind == "f" else a


def bench_row(ctx: Context, runner, precision: str, batch: int, inputs, reference) -> dict:
    """One row: prepare, first run, warm-up, timed iterations, accuracy, memory."""
    s = ctx.settings
    row = empty_row(runner.name, runner.label, runner.device, precision, batch, runner.provider)
    reason = ctx.check(runner)
    if reason:
        return unavailable(row, reason)
    prepared = None
    scoped = reset_peak_rss()
    rss_before = rss_mb()
    try:
        prepared = runner.prepare(ctx, precision, batch, inputs)
        loop = run_loop(prepared.session, s.warmup, s.iterations, s.duration, s.min_iterations)
        outs = prepared.session.outputs()
        acc = accuracy(outs, reference) if reference is not None else {}
        row.update(
            available=True,
            threads=prepared.threads,
            latency_ms=latency_stats(loop.compute_ms),
            throughput=throughput(batch, loop.compute_ms),
            first_run_ms=loop.first_run_ms,
            build_ms=prepared.build_ms,
            iterations=len(loop.compute_ms),
            warmup_ms={"iterations": len(loop.warmup_ms), "total": float(sum(loop.warmup_ms)),
                       "mean": float(sum(loop.warmup_ms) / len(loop.warmup_ms)) if loop.warmup_ms else None},
            copy_ms=({"h2d": copy_stats(loop.h2d_ms), "d2h": copy_stats(loop.d2h_ms)}
                     if loop.h2d_ms or loop.d2h_ms else None),
            timer=prepared.timer,
            # the kernel's RSS counters are approximate per-CPU sums: keep peak >= before/now
            peak_rss_mb=max(peak_rss_mb(), rss_before or 0.0, rss_mb() or 0.0),
            peak_rss_scope="row" if scoped else "process",
            rss_before_mb=rss_before,
            device_memory_mb=prepared.device_memory_mb() if prepared.device_memory_mb else None,
        )
        row.update(acc)
        row.update(prepared.extra)
        row["_samples_ms"] = loop.compute_ms
    except (Unavailable, BenchError) as e:
        unavailable(row, str(e))
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:
        unavailable(row, f"{runner.label} {precision} failed: {type(e).__name__}: {e}")
    finally:
        if prepared is not None and prepared.close is not None:
            try:
                prepared.close()
            except Exception:
                pass
        prepared = None
        gc.collect()
    return row


def _progress_line(row: dict) -> str:
    head = f"{row['label']} {row['precision']} batch {row['batch']}"
    if not row["available"]:
        return f"{head}: unavailable ({row.get('reason')})"
    lat = row["latency_ms"]
    diff = row["max_abs_diff"]
    return (f"{head}: p50 {lat['p50']:.3f} ms, {row['throughput']:.1f} samples/s, "
            f"max abs diff {'-' if diff is None else format(diff, '.2e')}")
