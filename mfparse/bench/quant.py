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
          given feeds) to dst. TensorRT and ONNX Runtime run that file. A function that also
          takes the keyword arguments `reduce_range` (bool: 7-bit weights) and `method` (the
          calibration method) is given the settings the bench chose (`onnx_settings`).

Every int8 ONNX file is recorded (row field "quantization", and in its cache key) with
`reduce_range` and the calibration: mfparse's own hook quantizes with reduce_range exactly where
ONNX Runtime's u8s8 kernels saturate 8-bit weights (mfparse.runtime_quant.int8_cpu(): x86-64
without VNNI) and calibrates with MinMax; for a registered function that does not take
`reduce_range`, the setting is unknown (null).
"""

from __future__ import annotations

import inspect
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


BUILTIN_ONNX = ("mfparse.quantize", "bench_onnx_int8")
CALIBRATION_METHOD = "minmax"


def _accepts(fn, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def onnx_settings(fn: Callable, calibration: dict | None = None) -> dict:
    """The settings the ONNX int8 function `fn` quantizes with: {"reduce_range": bool or None
    (unknown), "calibration": {"method", ...the feeds}, "int8_cpu": what chose reduce_range}."""
    builtin = (getattr(fn, "__module__", None), getattr(fn, "__name__", None)) == BUILTIN_ONNX
    takes_rr = _accepts(fn, "reduce_range")
    takes_method = _accepts(fn, "method")
    out: dict = {"reduce_range": None, "calibration": dict(calibration or {}), "int8_cpu": None,
                 "pass": {}}
    if builtin or takes_rr:
        from mfparse.runtime_quant import int8_cpu

        cpu = int8_cpu()
        out["reduce_range"] = bool(cpu["reduce_range"])
        out["int8_cpu"] = cpu["kernel"]
        if takes_rr:
            out["pass"]["reduce_range"] = out["reduce_range"]
    if builtin or takes_method:
        from mfparse.runtime_quant import calibration_settings

        out["calibration"] = {**calibration_settings(CALIBRATION_METHOD), **out["calibration"]}
        if takes_method:
            out["pass"]["method"] = CALIBRATION_METHOD
    else:
        out["calibration"] = {"method": None, **out["calibration"]}  # the function's own choice
    return out


def call_onnx(fn: Callable, src: str, dst: str, calibration: list, settings: dict) -> None:
    """Run the ONNX int8 function with the settings it accepts (see onnx_settings)."""
    fn(src, dst, calibration, **settings.get("pass", {}))
