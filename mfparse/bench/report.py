"""The report: JSON (schema below), the terminal table, the optional PNG plot.

JSON (`--json OUT`), schema_version 2 (1 was the same without the fields marked [2]):

    {"schema_version": 2,                                                         [2]
     "model": MODEL as given,
     "inputs": [{"name", "shape", "dtype"}],
     "environment": {"versions": {...}, "cpu": str, "threads": int, "gpu": {...} | null, ...},
     "runtimes": [{                              one row per (runtime, precision, batch) run
        "name": "torch" | "onnxruntime" | "tensorrt",
        "label": "torch" | "torch-cuda" | "onnxruntime" | "onnxruntime-cuda" | ... ,
        "device", "provider", "precision": "fp32" | "fp16" | "int8", "batch": int,
        "available": bool, "reason": str (only when unavailable: one line),
        "status": "ok" | "fail" | "unavailable",                                  [2]
        "threads": int | null,
        "latency_ms": {"min","mean","p50","p90","p95","p99","max","stdev"},
        "throughput": samples/s,
        "tokens_per_s": batch x seq_len / latency, for token-id inputs, else null,  [2]
        "first_run_ms", "build_ms",
        "max_abs_diff", "mean_abs_diff", "cosine"   (against "reference"),
        "thresholds": {"max_abs_diff": limit | null, "min_cosine": limit | null},   [2]
        "threshold_failures": [str]: why the row is "fail", e.g. "max|diff| 3.1e-02 > 0.01",  [2]
        "emulated": bool: the precision is emulated on the device (torch / ONNX Runtime fp16
                    on a CPU), so its speed is not the hardware's in that precision,  [2]
        "warnings": [str] (e.g. "emulated: ..."),                                  [2]
        "p50_vs_fp32": p50 over the same runtime's fp32 p50 at the same batch | null,  [2]
        "quantization": {"reduce_range": bool | null (7-bit weights; null: the int8
                    function did not say), "calibration": {"method", "feeds", "batch",
                    "inputs", ...}, "int8_cpu": str}  (int8 rows of ONNX Runtime and TensorRT),  [2]
        "iterations", "warmup_ms", "copy_ms" {"h2d","d2h"} (GPU), "timer",
        "peak_rss_mb" (the process's peak RSS during the row: what it already held when the row
        started, "rss_before_mb", plus what the row added), "peak_rss_scope" ("row" where the peak
        mark could be reset, else "process"), "device_memory_mb", runtime-specific extras}],
     "skipped": [{"runtime", "precision" | null, "reason"}]: with runtimes "auto", what was
                not run because it is not available here (not rows),                [2]
     "runtimes_requested": "auto" | [tokens],                                       [2]
     "seq_len": int | null (dim 1 of the token-id inputs),                          [2]
     "thresholds": {"max_abs_diff": {"*" | precision: limit}, "min_cosine": {...}},  [2]
     "verdict": {"status": "pass" | "fail" | "error", "exit_code": 0 | 1 | 2, "rows", "ok",
                 "failed", "unavailable", "message"},                               [2]
     ... and: "model_info" (with "onnx": per precision the exported file or its "error"),
     "batch", "precision", "reference", "settings"}

exit_code: 0 every row ran (and passed the thresholds, if any); 1 a row is "fail" (wins over
2); 2 a row did not run (a requested runtime unavailable, a failed export, ...) or no row at
all. Fields of an unavailable row that were not measured are null. Non-finite numbers are null.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path

ROW_ORDER = ("name", "label", "device", "provider", "precision", "batch", "available", "reason", "status",
             "threads", "latency_ms", "throughput", "tokens_per_s", "first_run_ms", "build_ms", "max_abs_diff",
             "mean_abs_diff", "cosine", "thresholds", "threshold_failures", "emulated", "warnings")
TOP_ORDER = ("schema_version", "model", "verdict", "inputs", "environment", "runtimes")


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
    seq = report.get("seq_len")
    head = [f"model: {report['model']}   inputs: "
            + ", ".join(f"{i['name']} {i['dtype']}[{'x'.join(map(str, i['shape'][1:]))}]" for i in report["inputs"])
            + f"   batch: {','.join(map(str, report.get('batch', [])))}" + (f"   seq_len: {seq}" if seq else ""),
            f"cpu: {env.get('cpu', '?')}   threads: {env.get('threads')}   gpu: "
            + (f"{gpu.get('name')}" if gpu else "none"),
            "versions: " + ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items()),
            f"latency = compute only (ms, {_timing_note(report)}); accuracy vs {report.get('reference')}"]
    limits = report.get("thresholds") or {}
    lim_text = _limits_text(limits)
    if lim_text:
        head.append(f"thresholds: {lim_text}")
    load = env.get("load_average_before")
    cores = env.get("usable_cores") or 1
    if load and load[0] > 0.25 * cores:
        head.append(f"warning: load average {load[0]:.2f} on {cores} cores before the run: other processes "
                    "compete for the CPUs, so CPU numbers are noisy (multi-threaded torch suffers most)")
    rows = report["runtimes"]
    show_check = bool(lim_text) or any(r.get("status") == "fail" for r in rows)
    cols = ["runtime", "prec", "batch", "thr", "p50", "p90", "p99", "mean±sd", "samples/s"]
    if seq:
        cols.append("tokens/s")
    cols += ["first", "build", "max|diff|", "cosine"]
    if show_check:
        cols.append("check")
    cols += ["rss MB before/peak", "dev MB", "copy h2d/d2h"]
    lines = []
    notes: dict = {}
    fails: list = []
    emulated: dict = {}
    for r in rows:
        label = r.get("label") or r["name"]
        prec = r["precision"] + ("*" if r.get("emulated") else "")
        if not r["available"]:
            notes.setdefault((label, r["precision"], r.get("reason")), []).append(str(r["batch"]))
            lines.append([label, prec, str(r["batch"]), "-", "unavailable (see below)"] + [""] * (len(cols) - 5))
            continue
        lat = r["latency_ms"]
        copy = r.get("copy_ms")
        copies = "-"
        if copy:
            copies = f"{_f((copy.get('h2d') or {}).get('p50'))}/{_f((copy.get('d2h') or {}).get('p50'))}"
        line = [label, prec, str(r["batch"]), _f(r.get("threads"), "{}"),
                _f(lat["p50"]), _f(lat["p90"]), _f(lat["p99"]), f"{lat['mean']:.3f}±{lat['stdev']:.3f}",
                _f(r["throughput"], "{:.1f}")]
        if seq:
            line.append(_f(r.get("tokens_per_s"), "{:.1f}"))
        line += [_f(r["first_run_ms"], "{:.1f}"), _f(r["build_ms"], "{:.1f}"),
                 _f(r["max_abs_diff"], "{:.1e}"), _f(r["cosine"], "{:.6f}")]
        if show_check:
            line.append("FAIL" if r.get("status") == "fail" else "ok")
        line += [f"{_f(r.get('rss_before_mb'), '{:.0f}')}/{_f(r.get('peak_rss_mb'), '{:.0f}')}",
                 _f(r.get("device_memory_mb"), "{:.0f}"), copies]
        lines.append(line)
        if r.get("status") == "fail":
            fails.append(f"  {label} {r['precision']} batch {r['batch']}: "
                         + "; ".join(r.get("threshold_failures") or []))
        for w in r.get("warnings") or []:
            ratio = r.get("p50_vs_fp32")
            key = (label, r["precision"], w)
            emulated.setdefault(key, []).append(f"batch {r['batch']}" + (f": p50 {ratio:.1f}x fp32's" if ratio else ""))
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
    if emulated:
        out += ["", "* emulated precision (the number is not what the device does in that precision):"]
        out += [f"  {label} {prec}: {w.removeprefix('emulated: ')} ({'; '.join(b)})"
                for (label, prec, w), b in emulated.items()]
    quant_notes: dict = {}
    for r in rows:
        q = r.get("quantization") if r["available"] else None
        if q:
            quant_notes.setdefault(_quant_text(q), []).append(r.get("label") or r["name"])
    if quant_notes:
        out += [""] + [f"int8 ({', '.join(dict.fromkeys(labels))}): {text}" for text, labels in quant_notes.items()]
    if fails:
        out += ["", "FAIL (accuracy thresholds):"] + fails
    if notes:
        out += ["", "unavailable:"] + [f"  {label} {prec} (batch {','.join(b)}): {reason}"
                                       for (label, prec, reason), b in notes.items()]
    skipped = report.get("skipped") or []
    if skipped:
        by_reason: dict = {}
        for s in skipped:
            name = s["runtime"] + (f" {s['precision']}" if s.get("precision") else "")
            by_reason.setdefault(s["reason"], []).append(name)
        out += ["", "not run (--runtimes auto takes what is available here; name a runtime to require it):"]
        out += [f"  {', '.join(names)}: {reason}" for reason, names in by_reason.items()]
    v = report.get("verdict")
    if v:
        out += ["", f"result: {v['status'].upper()}: {v['message']} (exit {v['exit_code']})"]
    return "\n".join(out)


def _quant_text(q: dict) -> str:
    rr = q.get("reduce_range")
    weights = ("7-bit weights (reduce_range)" if rr else "8-bit weights" if rr is False
               else "weights: reduce_range not known")
    cal = q.get("calibration") or {}
    method = cal.get("method") or "the int8 function's own"
    feeds = f" on {cal['feeds']} seeded batches of {cal.get('batch', 1)}" if cal.get("feeds") else ""
    cpu = f"; {q['int8_cpu']}" if q.get("int8_cpu") else ""
    return f"{weights}, {method} calibration{feeds}{cpu}"


def _limits_text(limits: dict) -> str:
    parts = []
    for key, flag in (("max_abs_diff", "max|diff| <="), ("min_cosine", "cosine >=")):
        table = limits.get(key) or {}
        for prec, v in sorted(table.items(), key=lambda kv: (kv[0] != "*", kv[0])):
            parts.append(f"{flag} {v:g}" + ("" if prec == "*" else f" ({prec})"))
    return ", ".join(parts)


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
