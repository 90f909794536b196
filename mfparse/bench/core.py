"""`run()`: load the model, make the seeded inputs and the reference outputs, then measure
every (runtime, precision, batch) row one after another in this process.

Rows run sequentially, never concurrently; each row builds its own session/engine and frees
it before the next starts, so no runtime's threads or memory overlap another's timing.

Which rows: with runtimes "auto" (the default) the runtimes available here (`auto_runners`);
those that are not, and (runtime, precision) pairs a runtime never runs, are listed in the
report's "skipped" instead of as rows. Runtimes named explicitly are always rows: one that
cannot run says why, and the verdict is an error (exit 2).

The verdict (report["verdict"], the exit status of `mfparse bench`): 1 when a row is over
--max-abs-diff or under --min-cosine, else 2 when a row did not run, else 0.
"""

from __future__ import annotations

import gc
import importlib.util
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from mfparse.bench.base import (DEFAULT_RUNTIMES, EXIT_ERROR, EXIT_FAIL, EXIT_OK, PRECISIONS, RUNTIME_TOKENS,
                                BenchError, Settings, Unavailable, empty_row, unavailable)
from mfparse.bench.env import environment, load_average, usable_cores
from mfparse.bench.export import OnnxStore
from mfparse.bench.measure import (accuracy, copy_stats, latency_stats, make_inputs, peak_rss_mb,
                                   reset_peak_rss, rss_mb, run_loop, throughput, tokens_per_s)
from mfparse.bench.models import flatten_outputs, load_model, to_numpy, token_seq_len

SCHEMA_VERSION = 2


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
        if "auto" in unknown:
            raise BenchError("--runtimes: auto stands alone (it picks the runtimes available here)")
        raise BenchError(f"--runtimes: unknown {', '.join(unknown) or '(none given)'}; "
                         f"known: {', '.join(RUNTIME_TOKENS)}, all, auto")
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


def gpu_visible() -> tuple[bool, str]:
    """(whether a CUDA GPU can be seen, why not). torch decides when it is loaded (it is for
    torch models); otherwise the NVIDIA driver's presence (nvidia-smi, /dev/nvidiactl)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        if torch.cuda.is_available():
            return True, ""
        cuda = getattr(torch.version, "cuda", None)
        return False, (f"no GPU (torch {torch.__version__} is a CPU-only build)" if not cuda
                       else f"no GPU (torch {torch.__version__} sees none)")
    if shutil.which("nvidia-smi") or os.path.exists("/dev/nvidiactl"):
        return True, ""
    return False, "no GPU (no NVIDIA driver: nvidia-smi not found)"


def auto_runners(model, trt=None, trt_backend=None) -> tuple[list, list]:
    """The runners of `--runtimes auto` for this model on this machine, and the runtimes left
    out with the reason: [{"runtime", "reason"}]. torch when MODEL is a torch model; ONNX Runtime
    (CPU) when it is installed; torch-cuda, ONNX Runtime's CUDA/TensorRT providers and TensorRT
    only where a GPU and their package are present. Nothing heavy is imported to decide (ONNX
    Runtime only when a GPU is there, to list its providers)."""
    from mfparse.bench.runners import OrtRunner, TorchCudaRunner, TorchRunner
    from mfparse.bench.trt import TensorRTRunner

    out, skipped = [], []

    def skip(token, reason):
        skipped.append({"runtime": token, "precision": None, "reason": reason})

    gpu, no_gpu = gpu_visible()
    if trt_backend is not None:
        gpu = True  # tests: a stand-in device
    onnx_model = "MODEL is an .onnx file (torch runs torch models)"
    if model.is_torch:
        out.append(TorchRunner())
    else:
        skip("torch", onnx_model)
    if not model.is_torch:
        skip("torch-cuda", onnx_model)
    elif not gpu:
        skip("torch-cuda", no_gpu)
    else:
        out.append(TorchCudaRunner())
    have_ort = importlib.util.find_spec("onnxruntime") is not None
    have_trt = trt is not None or importlib.util.find_spec("tensorrt") is not None
    if have_ort:
        out.append(OrtRunner("cpu"))
    else:
        skip("onnxruntime", "onnxruntime is not installed (pip install onnxruntime)")
    eps = _present_ort_gpu_eps() if (have_ort and gpu) else []
    for ep, prov in (("cuda", "CUDAExecutionProvider"), ("trt", "TensorrtExecutionProvider")):
        if not have_ort:
            continue
        if not gpu:
            skip(f"onnxruntime-{ep}", no_gpu)
        elif ep not in eps:
            skip(f"onnxruntime-{ep}", f"this onnxruntime has no {prov} (pip install onnxruntime-gpu)")
        elif ep == "trt" and not have_trt:
            skip("onnxruntime-trt", "TensorRT is not installed (pip install tensorrt)")
        else:
            out.append(OrtRunner(ep))
    if not have_trt:
        skip("tensorrt", "tensorrt is not installed (pip install tensorrt; it needs an NVIDIA GPU)")
    elif not gpu:
        skip("tensorrt", no_gpu)
    else:
        out.append(TensorRTRunner(trt=trt, backend_factory=trt_backend))
    return out, skipped


def parse_thresholds(spec, flag: str) -> dict:
    """Accuracy limits per precision: {"*": default, "fp16": ..., ...} from None, a number, a
    dict, or a list of "[PRECISION=]NUMBER" strings (the CLI's repeatable --max-abs-diff /
    --min-cosine)."""
    if spec is None:
        return {}
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        items = [("*", spec)]
    elif isinstance(spec, dict):
        items = list(spec.items())
    elif isinstance(spec, str):
        items = [_threshold_item(spec, flag)]
    else:
        items = [_threshold_item(str(x), flag) if not isinstance(x, (int, float)) else ("*", x) for x in spec]
    out = {}
    for prec, value in items:
        prec = "*" if prec in (None, "", "*", "all") else str(prec)
        if prec != "*" and prec not in PRECISIONS:
            raise BenchError(f"{flag} {prec}=...: unknown precision {prec!r} (one of {', '.join(PRECISIONS)})")
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise BenchError(f"{flag}: {value!r} is not a number") from None
        if not math.isfinite(v):
            raise BenchError(f"{flag}: {value!r} is not a finite number")
        if flag == "--max-abs-diff" and v < 0:
            raise BenchError(f"{flag}: {v} is negative")
        if flag == "--min-cosine" and not -1.0 <= v <= 1.0:
            raise BenchError(f"{flag}: {v} is outside [-1, 1]")
        out[prec] = v
    return out


def _threshold_item(text: str, flag: str):
    prec, sep, value = text.strip().rpartition("=")
    if not value:
        raise BenchError(f"{flag} {text!r}: expected [PRECISION=]NUMBER, e.g. 1e-4 or int8=0.05")
    return (prec if sep else "*"), value


def _limit(table: dict, precision: str):
    return table.get(precision, table.get("*"))


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
        batches: Sequence[int] | None = None, runtimes: Sequence[str] | None = None,
        precisions: Sequence[str] = ("fp32",), warmup: int = 5, iterations: int | None = None,
        duration: float | None = None, threads: int | None = None, seed: int = 0,
        cache_dir=None, exporter: str = "auto", opset: int | None = None,
        ort_spinning: bool = False, progress: Callable[[str], None] | None = None,
        runners: Sequence | None = None, seq_len: int | None = None, max_abs_diff=None,
        min_cosine=None, log: Callable[[str, str], None] | None = None) -> dict:
    """Benchmark one model on several runtimes; returns the report (see mfparse.bench.report),
    whose "verdict" holds the exit status of `mfparse bench`.

    Args:
        model: a TorchScript file, `module:callable` (or `file.py:callable`) returning an
            nn.Module, or an .onnx file.
        weights: a weights file in any format mfparse reads, loaded into a torch model (names
            matched through a wrapper's prefix, see models.match_names).
        input_shapes: `[NAME:]1x3x224x224[:DTYPE]` strings; default: the model's
            `example_input_shape` (and `example_input_dtype`) or the ONNX graph's static shape.
        batches: batch sizes (dim 0 of every input); default: the shape's own.
        runtimes: None or ["auto"]: the runtimes available here; else tokens of
            mfparse.bench.base.RUNTIME_TOKENS, or "all" (each one requested: a row even when
            it cannot run, and then the verdict is an error).
        precisions: among fp32, fp16, int8.
        warmup: warm-up iterations after the first run (neither enters the statistics).
        iterations / duration: timed iterations, or seconds of timed iterations (default 3 s).
        threads: CPU threads for every runtime (default: the usable cores).
        seq_len: the sequence dimension (dim 1) of integer (token id) inputs; rows then also
            report tokens/s.
        max_abs_diff / min_cosine: accuracy limits against the reference, as a number (every
            precision), a {precision: number} dict or "[PRECISION=]NUMBER" strings; none by default.
        log: log(title, text) receives everything torch.onnx (and the int8 quantization) printed
            while exporting; it is never printed otherwise.
        runners: Runner objects replacing `runtimes` (tests); they count as requested.

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
    limits = {"max_abs_diff": parse_thresholds(max_abs_diff, "--max-abs-diff"),
              "min_cosine": parse_thresholds(min_cosine, "--min-cosine")}
    say = progress or (lambda msg: None)
    load_before = load_average()
    tokens = [t.strip() for t in (runtimes or DEFAULT_RUNTIMES) if t.strip()]
    auto = runners is None and tokens == ["auto"]
    if runners is None and not auto:
        runners = resolve_runners(tokens)
    elif runners is not None:
        tokens = [r.label for r in runners]

    t_load = time.perf_counter()
    m = load_model(model, weights, input_shapes, seed, seq_len=seq_len)
    if auto:
        runners, skipped = auto_runners(m)
    else:
        skipped = []
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
        store = OnnxStore(m, settings.cache_dir, exporter=exporter, opset=opset, seed=seed, log=log)
        ctx = Context(m, settings, store)
        if auto:  # runtimes that cannot run at all here are skipped, not rows
            kept = []
            for r in runners:
                reason = ctx.check(r)
                if reason:
                    skipped.append({"runtime": r.label, "precision": None, "reason": reason})
                else:
                    kept.append(r)
            runners = kept
        plan = []
        for runner in runners:
            for precision in precisions:
                why = runner.unsupported(ctx, precision) if auto else None
                if why:
                    skipped.append({"runtime": runner.label, "precision": precision, "reason": why})
                else:
                    plan.append((runner, precision))
        data = {}
        for b in batches:
            inputs = make_inputs(m.inputs, b, seed)
            data[b] = (inputs, _reference(m, inputs, threads))
        ref0 = data[batches[0]][1]
        if ref0 is not None:
            store.set_output_count(len(ref0))
        seq = token_seq_len(m.inputs)
        rows = []
        total = len(plan) * len(batches)
        for runner, precision in plan:
            for b in batches:
                inputs, reference = data[b]
                row = bench_row(ctx, runner, precision, b, inputs, reference, seq)
                judge_row(row, limits, reference is not None)
                rows.append(row)
                say(f"[{len(rows)}/{total}] {_progress_line(row)}")
        _relative_to_fp32(rows)
        return {
            "schema_version": SCHEMA_VERSION,
            "model": model,
            "model_info": {**m.describe(), "load_ms": load_ms, "onnx": store.summary()},
            "inputs": [s.to_dict() for s in m.inputs],
            "batch": batches,
            "seq_len": seq,
            "precision": precisions,
            "runtimes_requested": "auto" if auto else tokens,
            "reference": ("torch fp32 (CPU)" if m.is_torch else "onnxruntime fp32 (CPU EP)")
            if ref0 is not None else None,
            "thresholds": limits,
            "settings": settings.to_dict(),
            "environment": environment(threads, load_before),
            "runtimes": rows,
            "skipped": skipped,
            "verdict": verdict(rows),
        }
    finally:
        if torch is not None and old_threads is not None:
            torch.set_num_threads(old_threads)


def judge_row(row: dict, limits: dict, have_reference: bool) -> None:
    """Set row["status"] ("ok", "fail" or "unavailable") and row["threshold_failures"] from the
    accuracy limits of the row's precision (a NaN difference fails every limit)."""
    max_d = _limit(limits.get("max_abs_diff", {}), row["precision"])
    min_c = _limit(limits.get("min_cosine", {}), row["precision"])
    row["thresholds"] = {"max_abs_diff": max_d, "min_cosine": min_c}
    row["threshold_failures"] = []
    if not row["available"]:
        row["status"] = "unavailable"
        return
    fails = row["threshold_failures"]
    if (max_d is not None or min_c is not None) and not have_reference:
        fails.append("no reference outputs to compare with (onnxruntime is not installed)")
    d, c = row.get("max_abs_diff"), row.get("cosine")
    if max_d is not None and have_reference and not (d is not None and d <= max_d):
        fails.append(f"max|diff| {_num(d)} > {max_d:g}")
    if min_c is not None and have_reference and not (c is not None and c >= min_c):
        fails.append(f"cosine {_num(c, '.6f')} < {min_c:g}")
    row["status"] = "fail" if fails else "ok"


def _num(v, fmt=".2e") -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def verdict(rows: list) -> dict:
    """The run's outcome: {"status": "pass" | "fail" | "error", "exit_code", "rows", "ok",
    "failed", "unavailable", "message"}. A threshold failure (1) wins over rows that did not run (2)."""
    failed = [r for r in rows if r.get("status") == "fail"]
    missing = [r for r in rows if not r["available"]]
    ok = len(rows) - len(failed) - len(missing)
    if failed:
        status, code = "fail", EXIT_FAIL
        msg = f"{len(failed)} of {len(rows)} rows outside the accuracy thresholds"
    elif not rows:
        status, code = "error", EXIT_ERROR
        msg = "no runtime could run this model here (see the runtimes not run)"
    elif missing:
        status, code = "error", EXIT_ERROR
        msg = f"{len(missing)} of {len(rows)} requested rows did not run"
    else:
        status, code = "pass", EXIT_OK
        msg = f"all {len(rows)} rows ran" + (" within the accuracy thresholds"
                                              if any(r.get("thresholds", {}).get("max_abs_diff") is not None
                                                     or r.get("thresholds", {}).get("min_cosine") is not None
                                                     for r in rows) else "")
    if failed and missing:
        msg += f"; {len(missing)} rows did not run"
    return {"status": status, "exit_code": code, "rows": len(rows), "ok": ok, "failed": len(failed),
            "unavailable": len(missing), "message": msg}


def _relative_to_fp32(rows: list) -> None:
    """p50_vs_fp32: a row's p50 latency over the same runtime's fp32 p50 at the same batch."""
    base = {(r["label"], r["batch"]): r["latency_ms"]["p50"] for r in rows
            if r["available"] and r["precision"] == "fp32"}
    for r in rows:
        b = base.get((r["label"], r["batch"]))
        r["p50_vs_fp32"] = (r["latency_ms"]["p50"] / b if r["available"] and r["precision"] != "fp32"
                            and b else None)


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


def bench_row(ctx: Context, runner, precision: str, batch: int, inputs, reference,
              seq_len: int | None = None) -> dict:
    """One row: prepare, first run, warm-up, timed iterations, accuracy, memory."""
    s = ctx.settings
    row = empty_row(runner.name, runner.label, runner.device, precision, batch, runner.provider)
    reason = ctx.check(runner) or runner.unsupported(ctx, precision)
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
            tokens_per_s=tokens_per_s(batch, seq_len, loop.compute_ms) if seq_len else None,
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
        emulated = runner.emulated(precision)
        row["emulated"] = bool(emulated)
        if emulated:
            row["warnings"] = [f"emulated: {emulated}"]
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
    tokens = f", {row['tokens_per_s']:.1f} tokens/s" if row.get("tokens_per_s") else ""
    line = (f"{head}: p50 {lat['p50']:.3f} ms, {row['throughput']:.1f} samples/s{tokens}, "
            f"max abs diff {'-' if diff is None else format(diff, '.2e')}")
    if row.get("emulated"):
        line += " (emulated precision)"
    if row.get("status") == "fail":
        line += " FAIL: " + "; ".join(row["threshold_failures"])
    return line
