"""Shared pieces of the bench package: its two exceptions, the settings of one run, and the
shape of a report row."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mfparse.bench.measure import LATENCY_KEYS


class BenchError(Exception):
    """A problem that stops the whole benchmark (bad arguments, a model that cannot be loaded
    or does not run under torch fp32). The CLI prints it and exits with status 2 (EXIT_ERROR)."""


class Unavailable(Exception):
    """A runtime, device or precision that cannot run here; the row is reported with
    available=false and this exception's message as its reason."""


PRECISIONS = ("fp32", "fp16", "int8")

# runtime tokens accepted by --runtimes, and what they stand for
RUNTIME_TOKENS = {
    "torch": "torch on the CPU",
    "torch-cuda": "torch on the GPU (CUDA)",
    "onnxruntime": "ONNX Runtime: CPU EP, plus the CUDA and TensorRT EPs when present",
    "onnxruntime-cpu": "ONNX Runtime, CPU execution provider",
    "onnxruntime-cuda": "ONNX Runtime, CUDA execution provider",
    "onnxruntime-trt": "ONNX Runtime, TensorRT execution provider",
    "tensorrt": "TensorRT 10+ (engine built from the ONNX)",
}
#: "auto": the runtimes available on this machine (mfparse.bench.core.auto_runners): torch when
#: MODEL is a torch model, ONNX Runtime when it is installed, and the GPU runtimes only where a GPU
#: and their package are present. Runtimes left out are listed in the report's "skipped".
DEFAULT_RUNTIMES = ("auto",)

# exit statuses of `mfparse bench` (report["verdict"]["exit_code"])
EXIT_OK = 0      # every row ran and passed the accuracy thresholds (if any were given)
EXIT_FAIL = 1    # a row ran but is over --max-abs-diff or under --min-cosine
EXIT_ERROR = 2   # an error, or a requested row did not run (runtime unavailable, export failed, ...)
EXIT_STATUS_HELP = (
    "exit status: 0 every row ran and passed the accuracy thresholds (if any); 1 a row is over "
    "--max-abs-diff or under --min-cosine (this wins over 2); 2 an error (bad arguments, a model "
    "that does not load or run under torch fp32), or a requested runtime/precision that did not "
    "run (not installed, no GPU, export failed, ...)")


@dataclass
class Settings:
    """How every runtime is measured in one bench run (the same for all of them)."""

    threads: int
    warmup: int = 5
    iterations: int | None = None
    duration: float | None = 3.0
    min_iterations: int = 3
    seed: int = 0
    cache_dir: Path = field(default_factory=lambda: Path("."))
    ort_spinning: bool = False
    cudnn_benchmark: bool = True

    def to_dict(self) -> dict:
        return {
            "threads": self.threads,
            "warmup_iterations": self.warmup,
            "iterations": self.iterations,
            "duration_s": self.duration if self.iterations is None else None,
            "min_iterations": self.min_iterations if self.iterations is None else None,
            "seed": self.seed,
            "ort_allow_spinning": self.ort_spinning,
            "cudnn_benchmark": self.cudnn_benchmark,
        }


def empty_row(name: str, label: str, device: str, precision: str, batch: int,
              provider: str | None = None) -> dict:
    """A report row with every field the JSON schema names, unmeasured (None)."""
    return {
        "name": name,
        "label": label,
        "device": device,
        "provider": provider,
        "precision": precision,
        "batch": batch,
        "available": False,
        "status": "unavailable",
        "threads": None,
        "latency_ms": None,
        "throughput": None,
        "tokens_per_s": None,
        "first_run_ms": None,
        "build_ms": None,
        "max_abs_diff": None,
        "mean_abs_diff": None,
        "cosine": None,
        "emulated": None,
        "warnings": [],
        "iterations": None,
        "warmup_ms": None,
        "copy_ms": None,
        "timer": None,
        "peak_rss_mb": None,
        "peak_rss_scope": None,
        "rss_before_mb": None,
        "device_memory_mb": None,
    }


def unavailable(row: dict, reason: str) -> dict:
    row["available"] = False
    row["status"] = "unavailable"
    row["reason"] = " ".join(str(reason).split())[:500] or "unavailable"
    return row


def one_line(text, limit: int = 200) -> str:
    """The first non-empty line of `text`, whitespace squeezed, cut at `limit` characters."""
    for line in str(text).splitlines():
        line = " ".join(line.split())
        if line:
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return ""


__all__ = ["BenchError", "Unavailable", "Settings", "PRECISIONS", "RUNTIME_TOKENS",
           "DEFAULT_RUNTIMES", "EXIT_OK", "EXIT_FAIL", "EXIT_ERROR", "EXIT_STATUS_HELP",
           "empty_row", "unavailable", "one_line", "LATENCY_KEYS"]
