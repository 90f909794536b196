"""Whole-process start-up (issue 14): what a user waits for when a tool runs once per file (a
pre-commit hook, a CI step per uploaded model, `find ... -exec`).

Every command runs as a fresh process on the same small `torch.save` file (2 tensors); the
commands are alternated round by round (so a slow moment of the shared machine hits all of them)
and the median wall time of each is reported. mfparse runs as `python -m mfparse` from this tree
with compiled bytecode; picklescan and modelscan run as their installed console scripts when
they are on PATH or next to this Python (install them yourself: they are not in the lock).

Usage: python benchmarks/bench_startup.py [--rounds N] [--no-write]
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402


def tool(name: str) -> str | None:
    """The console script `name` next to this Python, else on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    return here if os.access(here, os.X_OK) else shutil.which(name)


def tool_version(exe: str, module: str) -> str:
    py = os.path.join(os.path.dirname(exe), "python")
    if not os.access(py, os.X_OK):
        return "?"
    r = subprocess.run([py, "-c", f"import importlib.metadata as m; print(m.version({module!r}))"],
                       capture_output=True, text=True)
    return r.stdout.strip() or "?"


def small_file() -> str:
    path = common.cached("small.pth")
    if not path.exists():
        import torch

        torch.save({"fc.weight": torch.zeros(4, 8), "fc.bias": torch.ones(4)}, str(path))
    return str(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=31)
    ap.add_argument("--no-write", action="store_true", help="print only; do not update RESULTS.md")
    args = ap.parse_args()

    path = small_file()
    env = dict(os.environ, PYTHONPATH=str(common.ROOT))
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # installed tools run from compiled bytecode; so does this tree
    compileall.compile_dir(str(common.ROOT / "mfparse"), quiet=1)
    py = sys.executable
    commands = {
        "python -c pass": [py, "-c", "pass"],
        'python -c "import mfparse"': [py, "-c", "import mfparse"],
        "mfparse --version": [py, "-m", "mfparse", "--version"],
        "mfparse scan small.pth": [py, "-m", "mfparse", "scan", path],
        "mfparse inspect small.pth": [py, "-m", "mfparse", "inspect", path],
        "mfparse inspect --json small.pth": [py, "-m", "mfparse", "inspect", "--json", path],
    }
    competitors = {}
    for name, module, argv in (("picklescan", "picklescan", ["-p", path]), ("modelscan", "modelscan", ["-p", path])):
        exe = tool(name)
        if exe:
            commands[f"{name} -p small.pth"] = [exe, *argv]
            competitors[name] = tool_version(exe, module)
        else:
            competitors[name] = "not installed"

    times: dict[str, list[float]] = {k: [] for k in commands}
    for r in range(args.rounds + 1):  # round 0 warms the page cache and the bytecode
        for label, argv in commands.items():
            t0 = time.perf_counter()
            p = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            dt = time.perf_counter() - t0
            if label.startswith("mfparse") and p.returncode not in (0, 1):
                raise SystemExit(f"{label} failed with exit {p.returncode}")
            if r:
                times[label].append(dt)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}

    ps = med.get("picklescan -p small.pth")
    rows = []
    for label in commands:
        ratio = f"{med[label] / ps:.2f}x" if ps and label.startswith("mfparse scan") else ""
        rows.append((label, f"{med[label]:.1f}", ratio))
    goals = []
    if ps:
        r = med["mfparse scan small.pth"] / ps
        goals.append(f"`mfparse scan small.pth` <= 0.4x picklescan: {r:.2f}x ({'reached' if r <= 0.4 else 'missed'})")
    ins = med["mfparse inspect small.pth"]
    goals.append(f"`mfparse inspect small.pth` <= 80 ms: {ins:.1f} ms ({'reached' if ins <= 80 else 'missed'})")
    load = os.getloadavg()[0]
    vers = common.versions("numpy", "torch")
    body = (
        f"Command: `PYTHONPATH=. python benchmarks/bench_startup.py --rounds {args.rounds}`. "
        f"Machine: {common.machine()} (load average {load:.1f} at the end of the run). Versions: "
        + ", ".join(f"{k} {v}" for k, v in {**vers, **competitors}.items())
        + f". Each command is a fresh process on a 2-tensor `torch.save` file ({os.path.getsize(path)} bytes), "
        f"commands alternated, {args.rounds} rounds after a warm-up round, median wall time; mfparse runs "
        "as `python -m mfparse` from the tree (bytecode compiled), competitors as their console scripts.\n\n"
        + common.table(rows, ("command", "median ms", "vs picklescan"))
        + "\n\nGoals (issue 14): " + "; ".join(goals) + ".\n"
    )
    print(body)
    if not args.no_write:
        common.write_section("Start-up: one file, whole process (issue 14)", body)


if __name__ == "__main__":
    main()
