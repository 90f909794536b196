"""The report: JSON (schema below), the terminal table, the optional PNG plot.

JSON (`--json OUT`):

    {"model": MODEL as given,
     "inputs": [{"name", "shape", "dtype"}],
     "environment": {"versions": {...}, "cpu": str, "threads": int, "gpu": {...} | null},
     "runtimes": [{
        "name": "torch" | "onnxruntime" | "tensorrt",
        "precision": "fp32" | "fp16" | "int8", "batch": int,
        "available": bool, "reason": str (only when unavailable),
        "threads": int | null,
        "latency_ms": {"min","mean","p50","p90","p95","p99","max","stdev"},
        "throughput": samples/s, "first_run_ms", "build_ms",
        "max_abs_diff", "mean_abs_diff", "cosine",
        ... and: "label" (torch-cuda, onnxruntime-cuda, ...), "device", "provider",
        "iterations", "warmup_ms", "copy_ms" {"h2d","d2h"} (GPU), "timer",
        "peak_rss_mb" (the process's peak RSS during the row: what it already held when the row
        started, "rss_before_mb", plus what the row added), "peak_rss_scope" ("row" where the peak
        mark could be reset, else "process"), "device_memory_mb", runtime-specific extras}],
     ... and: "model_info", "batch", "precision", "reference", "settings"}

Fields of an unavailable row that were not measured are null. Non-finite numbers are null.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path

ROW_ORDER = ("name", "label", "device", "provider", "precision", "batch", "available", "reason", "threads",
             "latency_ms", "throughput", "first_run_ms", "build_ms", "max_abs_diff", "mean_abs_diff",
             "cosine")
TOP_ORDER = ("model", "inputs", "environment", "runtimes")


def _clean(v):
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items() if not str(k).startswith("_")}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, Path):
        return os.fspath(v)
    return v


def to_json_obj(report: dict) -> dict:
    """The report as a JSON-ready dict: schema keys first, internal keys (leading _) dropped."""
    rows = []
    for r in report["runtimes"]:
        ordered = {k: r[k] for k in ROW_ORDER if k in r}
        ordered.update({k: v for k, v in r.items() if k not in ordered})
        rows.append(ordered)
    out = {k: report[k] for k in TOP_ORDER if k != "runtimes"}
    out["runtimes"] = rows
    out.update({k: v for k, v in report.items() if k not in out})
    return _clean(out)


def write_json(report: dict, path) -> None:
    text = json.dumps(to_json_obj(report), indent=2, allow_nan=False) + "\n"
    _atomic_write(Path(path), text.encode())


def _atomic_write(path: Path, data: bytes) -> None:
    path = path.resolve()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# ---- terminal table ---------------------------------------------------------------------------


def _f(v, fmt="{:.3f}") -> str:
    return "-" if v is None else fmt.format(v)


def render_table(report: dict) -> str:
    env = report.get("environment", {})
    gpu = env.get("gpu")
    head = [f"model: {report['model']}   inputs: "
            + ", ".join(f"{i['name']} {i['dtype']}[{'x'.join(map(str, i['shape'][1:]))}]" for i in report["inputs"])
            + f"   batch: {','.join(map(str, report.get('batch', [])))}",
            f"cpu: {env.get('cpu', '?')}   threads: {env.get('threads')}   gpu: "
            + (f"{gpu.get('name')}" if gpu else "none"),
            "versions: " + ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items()),
            f"latency = compute only (ms, {_timing_note(report)}); accuracy vs {report.get('reference')}"]
    load = env.get("load_average_before")
    cores = env.get("usable_cores") or 1
    if load and load[0] > 0.25 * cores:
        head.append(f"warning: load average {load[0]:.2f} on {cores} cores before the run: other processes "
                    "compete for the CPUs, so CPU numbers are noisy (multi-threaded torch suffers most)")
    cols = ["runtime", "prec", "batch", "thr", "p50", "p90", "p99", "mean±sd", "samples/s",
            "first", "build", "max|diff|", "cosine", "rss MB before/peak", "dev MB", "copy h2d/d2h"]
    lines = []
    notes: dict = {}
    for r in report["runtimes"]:
        label = r.get("label") or r["name"]
        if not r["available"]:
            notes.setdefault((label, r["precision"], r.get("reason")), []).append(str(r["batch"]))
            lines.append([label, r["precision"], str(r["batch"]), "-", "unavailable (see below)"] + [""] * 11)
            continue
        lat = r["latency_ms"]
        copy = r.get("copy_ms")
        copies = "-"
        if copy:
            copies = f"{_f((copy.get('h2d') or {}).get('p50'))}/{_f((copy.get('d2h') or {}).get('p50'))}"
        lines.append([
            label, r["precision"], str(r["batch"]), _f(r.get("threads"), "{}"),
            _f(lat["p50"]), _f(lat["p90"]), _f(lat["p99"]), f"{lat['mean']:.3f}±{lat['stdev']:.3f}",
            _f(r["throughput"], "{:.1f}"), _f(r["first_run_ms"], "{:.1f}"), _f(r["build_ms"], "{:.1f}"),
            _f(r["max_abs_diff"], "{:.1e}"), _f(r["cosine"], "{:.6f}"),
            f"{_f(r.get('rss_before_mb'), '{:.0f}')}/{_f(r.get('peak_rss_mb'), '{:.0f}')}",
            _f(r.get("device_memory_mb"), "{:.0f}"), copies,
        ])
    measured = [l for l in lines if not l[4].startswith("unavailable")]
    widths = [max([len(c)] + [len(l[i]) for l in (lines if i < 4 else measured)]) for i, c in enumerate(cols)]
    out = head + [""]
    out.append("  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip())
    out.append("  ".join("-" * w for w in widths))
    for l in lines:
        if l[4].startswith("unavailable"):
            out.append("  ".join(c.ljust(w) for c, w in zip(l[:4], widths[:4])) + "  " + l[4])
        else:
            out.append("  ".join(c.ljust(w) for c, w in zip(l, widths)).rstrip())
    if notes:
        out += ["", "unavailable:"] + [f"  {label} {prec} (batch {','.join(b)}): {reason}"
                                       for (label, prec, reason), b in notes.items()]
    return "\n".join(out)


def _timing_note(report: dict) -> str:
    timers = sorted({r.get("timer") for r in report["runtimes"] if r.get("timer")})
    return "; ".join(timers) if timers else "no rows measured"


# ---- plot -------------------------------------------------------------------------------------


def plot(report: dict, path) -> None:
    """A PNG: per-iteration latency distributions (box plots) and throughput per runtime and
    batch. Needs matplotlib (pip install matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        from mfparse.bench.base import BenchError

        raise BenchError("--plot needs matplotlib (pip install matplotlib)") from None
    rows = [r for r in report["runtimes"] if r["available"] and r.get("_samples_ms")]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(10, 1.1 * len(rows) + 6), 5.5))
    if rows:
        labels = [f"{r.get('label') or r['name']}\n{r['precision']} b{r['batch']}" for r in rows]
        ax1.boxplot([r["_samples_ms"] for r in rows], showfliers=True, whis=(1, 99))
        ax1.set_xticks(range(1, len(rows) + 1), labels, rotation=45, ha="right", fontsize=8)
        ax1.set_yscale("log")
        ax1.set_ylabel("latency per iteration (ms, log)")
        ax1.set_title("latency (whiskers p1-p99)")
        batches = sorted({r["batch"] for r in rows})
        series = sorted({(r.get("label") or r["name"], r["precision"]) for r in rows})
        width = 0.8 / max(1, len(series))
        for i, (label, prec) in enumerate(series):
            xs, ys = [], []
            for j, b in enumerate(batches):
                for r in rows:
                    if (r.get("label") or r["name"]) == label and r["precision"] == prec and r["batch"] == b:
                        xs.append(j + (i - (len(series) - 1) / 2) * width)
                        ys.append(r["throughput"])
            ax2.bar(xs, ys, width=width, label=f"{label} {prec}")
        ax2.set_xticks(range(len(batches)), [f"batch {b}" for b in batches])
        ax2.set_ylabel("samples / s")
        ax2.set_title("throughput")
        ax2.legend(fontsize=8)
    else:
        ax1.text(0.5, 0.5, "no runtime was available", ha="center", va="center")
    env = report.get("environment", {})
    gpu = env.get("gpu")
    fig.suptitle(f"{report['model']} - {env.get('cpu', '')[:60]}" + (f" - {gpu.get('name')}" if gpu else ""),
                 fontsize=9)
    fig.tight_layout()
    path = Path(path).resolve()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
