"""The environment a benchmark ran in: library versions, CPU, threads, GPU.

Versions come from installed package metadata, so describing the environment imports
nothing heavy (tensorrt in particular is only imported by its runner).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata

PACKAGES = ("numpy", "torch", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxscript", "tensorrt",
            "tensorrt-cu12", "tensorrt-cu13", "cuda-python", "matplotlib")


def versions() -> dict:
    from mfparse import __version__

    out = {"python": platform.python_version(), "mfparse": __version__}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch"] = torch.__version__
        cuda = getattr(torch.version, "cuda", None)
        if cuda:
            out["torch_cuda"] = cuda
    trt = sys.modules.get("tensorrt")
    if trt is not None:
        out["tensorrt"] = getattr(trt, "__version__", out.get("tensorrt", "?"))
    return out


def cpu() -> str:
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name}, {usable_cores()} usable cores ({os.cpu_count()} online), {platform.system()} {platform.release()}"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def gpu() -> dict | None:
    """The first CUDA GPU: name, memory, compute capability, driver and CUDA versions; None
    when there is none (torch without CUDA, no cuda-python, no nvidia-smi)."""
    info: dict = {}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(name=p.name, memory_mb=round(p.total_memory / 2**20),
                    compute_capability=f"{p.major}.{p.minor}", count=torch.cuda.device_count(),
                    torch_cuda=torch.version.cuda)
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            r = subprocess.run([smi, "--query-gpu=name,memory.total,driver_version",
                                "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10)
            first = r.stdout.strip().splitlines()[0] if r.returncode == 0 and r.stdout.strip() else ""
            if first:
                name, mem, driver = [x.strip() for x in first.split(",")[:3]]
                info.setdefault("name", name)
                info.setdefault("memory_mb", int(float(mem)))
                info["driver"] = driver
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            pass
    return info or None


def load_average() -> list | None:
    """1, 5 and 15 minute load averages (other processes competing for the CPUs)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def environment(threads: int, load_before: list | None = None) -> dict:
    return {"versions": versions(), "cpu": cpu(), "threads": threads, "gpu": gpu(),
            "usable_cores": usable_cores(), "load_average_before": load_before,
            "load_average_after": load_average()}
