"""The int8 hook: model-level quantization for the int8 rows, supplied by another module.

`mfparse bench` does not quantize models itself: mfparse.quantize provides the two functions
(bench_torch_int8, bench_onnx_int8). When they cannot be imported every int8 row is reported
with available=false and the reason below. Two ways to plug them in:

  * `mfparse.quantize` defines them under the names below (found on first use), or
  * any code calls `register("torch", fn)` / `register("onnx", fn)` before the benchmark.

Contract:
  torch:  fn(model: torch.nn.Module, example_inputs: list[torch.Tensor]) -> torch.nn.Module
          a CPU model in int8 (e.g. torch dynamic quantization of Linear/LSTM); the input
          model must not be modified.
  onnx:   fn(src: str, dst: str, calibration: list[dict[str, numpy.ndarray]]) -> None
          writes a QDQ int8 ONNX model (per-channel weights, activations calibrated on the
          given feeds) to dst. TensorRT and ONNX Runtime run that file.
"""

from __future__ import annotations

from typing import Callable

from mfparse.bench.base import Unavailable

# names looked up in mfparse.quantize
HOOK_NAMES = {"torch": "bench_torch_int8", "onnx": "bench_onnx_int8"}

_registered: dict[str, Callable] = {}

REASON = ("int8 needs the model-level quantization of the convert/quantize work "
          "(mfparse.quantize.{name}), which this build does not have")


def register(kind: str, fn: Callable | None) -> None:
    """Install (or with None remove) the int8 function for "torch" or "onnx" models."""
    if kind not in HOOK_NAMES:
        raise ValueError(f"kind must be one of {', '.join(HOOK_NAMES)}, not {kind!r}")
    if fn is None:
        _registered.pop(kind, None)
    else:
        _registered[kind] = fn


def hook(kind: str) -> Callable:
    """The int8 function for "torch" or "onnx", or Unavailable with the reason."""
    if kind in _registered:
        return _registered[kind]
    name = HOOK_NAMES[kind]
    try:
        import mfparse.quantize as q  # provided by the convert/quantize work
    except ModuleNotFoundError as e:
        if e.name in ("mfparse.quantize", "mfparse"):
            raise Unavailable(REASON.format(name=name)) from None
        raise Unavailable(f"mfparse.quantize cannot be imported: {e}") from None
    except ImportError as e:
        raise Unavailable(f"mfparse.quantize cannot be imported: {e}") from None
    fn = getattr(q, name, None)
    if fn is None:
        raise Unavailable(REASON.format(name=name))
    return fn
