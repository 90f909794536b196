"""`mfparse bench` results for benchmarks/RESULTS.md.

    python benchmarks/bench_runtimes.py                 # CPU: the tutorial's CNN and ResNet-50,
                                                        # torch vs ONNX Runtime, written to RESULTS.md
    python benchmarks/bench_runtimes.py --quick         # smaller sweep, nothing written
    python benchmarks/bench_runtimes.py --from-json A.json B.json --title "bench: GPU (...)"
                                                        # format existing reports (gpu_check.sh)

Every number comes from `mfparse.bench.run` (same seeded inputs for every runtime, warm-up
apart, equal threads, ORT spinning off, accuracy vs torch fp32). The CPU runs use the usable
cores of this machine as the thread count of both runtimes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common import ROOT, table, write_section  # noqa: F401  (ROOT puts the repo on sys.path)

HEAD = ["model", "runtime", "prec", "batch", "thr", "p50 ms", "p90 ms", "p99 ms", "mean±sd ms", "samples/s",
        "first run ms", "build ms", "copy h2d/d2h p50 ms", "max abs diff", "cosine", "RSS before/peak MB",
        "device MB"]


def _f(v, fmt="{:.3f}"):
    return "-" if v is None else fmt.format(v)


def rows_of(report: dict) -> list:
    """Table rows of the measured rows; unavailable ones folded into one row per runtime and reason."""
    name = report["model"].split(":")[-1]
    out, folded = [], {}
    for r in report["runtimes"]:
        label = r.get("label") or r["name"]
        if not r["available"]:
            key = (label, r.get("reason"))
            if key not in folded:
                folded[key] = ([], [])
                out.append(key)
            precs, batches = folded[key]
            precs.append(r["precision"]) if r["precision"] not in precs else None
            batches.append(str(r["batch"])) if str(r["batch"]) not in batches else None
            continue
        lat = r["latency_ms"]
        copy = r.get("copy_ms") or {}
        copies = "-" if not copy else (f"{_f((copy.get('h2d') or {}).get('p50'))}/"
                                      f"{_f((copy.get('d2h') or {}).get('p50'))}")
        out.append([name, label, r["precision"], r["batch"], _f(r.get("threads"), "{}"), _f(lat["p50"]),
                    _f(lat["p90"]), _f(lat["p99"]), f"{lat['mean']:.3f}±{lat['stdev']:.3f}",
                    _f(r["throughput"], "{:.1f}"), _f(r["first_run_ms"], "{:.1f}"), _f(r["build_ms"], "{:.1f}"),
                    copies, _f(r["max_abs_diff"], "{:.1e}"), _f(r["cosine"], "{:.6f}"),
                    f"{_f(r.get('rss_before_mb'), '{:.0f}')}/{_f(r.get('peak_rss_mb'), '{:.0f}')}",
                    _f(r.get("device_memory_mb"), "{:.0f}")])
    rows = []
    for item in out:
        if isinstance(item, tuple):
            precs, batches = folded[item]
            rows.append([name, item[0], "/".join(precs), "/".join(batches), "-",
                         f"unavailable: {item[1]}"] + [""] * (len(HEAD) - 6))
        else:
            rows.append(item)
    return rows


def ratios(report: dict) -> list:
    """p50 of every available row relative to torch on the same device, precision and batch
    (torch-cuda for GPU rows, torch for CPU rows)."""
    out = []
    base = {}
    for r in report["runtimes"]:
        label = r.get("label") or r["name"]
        if r["available"] and label in ("torch", "torch-cuda"):
            base[(r["device"], r["precision"], r["batch"])] = r
    for r in report["runtimes"]:
        label = r.get("label") or r["name"]
        b = base.get((r["device"], r["precision"], r["batch"]))
        if label not in ("torch", "torch-cuda") and r["available"] and b:
            thr = f", {r['threads']} thread{'s' if r['threads'] != 1 else ''}" if r.get("threads") else ""
            out.append(f"{report['model'].split(':')[-1]} {r['precision']} batch {r['batch']}{thr}: {label} runs at "
                       f"{b['latency_ms']['p50'] / r['latency_ms']['p50']:.2f}x the speed of {b['label']} "
                       f"(p50 {r['latency_ms']['p50']:.3f} vs {b['latency_ms']['p50']:.3f} ms)")
    return out


def body(reports: list, command: str, note: str = "") -> str:
    env = reports[0]["environment"]
    gpu = env.get("gpu")
    loads = [r["environment"].get("load_average_before") for r in reports]
    lines = [f"Command: `{command}`", ""] + ([note, ""] if note else []) + [
             f"Machine: {env['cpu']}; GPU: {gpu.get('name') + ' (driver ' + str(gpu.get('driver', '?')) + ')' if gpu else 'none'}",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()),
             f"Load average (1 min) before each model's run: {', '.join(str(l[0]) if l else '?' for l in loads)} "
             f"on {env.get('usable_cores')} usable cores (other processes competing for them).",
             f"Threads: the same for every CPU runtime of a run (column thr); ONNX Runtime spinning off; "
             f"warm-up {reports[0]['settings']['warmup_iterations']} iterations after the first run, "
             f"both outside the statistics; latency is compute only (GPU: CUDA events, copies apart).",
             ""]
    rows = [row for rep in reports for row in rows_of(rep)]
    lines.append(table(rows, HEAD))
    rat = [x for rep in reports for x in ratios(rep)]
    if rat:
        lines += ["", "Speed relative to torch on the same inputs (p50 latency):", ""] + [f"- {x}" for x in rat]
    return "\n".join(lines)


def cpu_run(quick: bool, threads: list) -> tuple[list, str]:
    from mfparse.bench import run

    cache = ROOT / "benchmarks" / ".data" / "bench-cache"
    plan = [("mfparse.bench.examples:cnn", [1, 8] if quick else [1, 8, 32]),
            ("mfparse.bench.examples:resnet50", [1] if quick else [1, 8])]
    reports = []
    for n in threads or [None]:
        for model, batches in plan:
            print(f"benchmarking {model} at batch {batches}, threads {n or 'default'} ...", file=sys.stderr,
                  flush=True)
            reports.append(run(model, batches=batches, runtimes=["torch", "onnxruntime", "tensorrt"],
                               precisions=["fp32"], warmup=3 if quick else 5, duration=1.0 if quick else 3.0,
                               cache_dir=cache, exporter="legacy", threads=n,
                               progress=lambda m: print("  " + m, file=sys.stderr, flush=True)))
    return reports, ("python benchmarks/bench_runtimes.py" + (" --quick" if quick else "")
                     + (f" --threads {','.join(map(str, threads))}" if threads else ""))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller sweep; prints, writes nothing")
    p.add_argument("--from-json", nargs="+", metavar="REPORT", help="format existing mfparse bench JSON reports")
    p.add_argument("--title", default=None, help="RESULTS.md section title")
    p.add_argument("--command", default=None, help="the command to quote in the section (with --from-json)")
    p.add_argument("--threads", default="", help="CPU threads of every runtime, a comma list runs each "
                   "(default: usable cores)")
    p.add_argument("--note", default="", help="a paragraph to put under the command")
    p.add_argument("--no-write", action="store_true", help="print the section, do not touch RESULTS.md")
    a = p.parse_args(argv)
    if a.from_json:
        reports = [json.loads(Path(f).read_text()) for f in a.from_json]
        command = a.command or "bash benchmarks/gpu_check.sh"
        title = a.title or "bench: GPU runtimes (gpu_check.sh)"
    else:
        reports, command = cpu_run(a.quick, [int(t) for t in a.threads.split(',') if t])
        title = a.title or "bench: torch vs ONNX Runtime on the CPU (mfparse bench)"
    text = body(reports, command, a.note)
    print(text)
    if not (a.quick or a.no_write):
        write_section(title, text)
        print(f"\nwrote section {title!r} of benchmarks/RESULTS.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
