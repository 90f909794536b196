"""ONNX files for the ONNX Runtime and TensorRT rows, exported once and cached on disk.

A torch model is exported with a dynamic batch dimension (one file serves every batch size).
The exporter is torch's torch.export-based one when onnxscript is installed, else the legacy
TorchScript exporter (always for TorchScript models, which torch.export cannot trace). The
cache key is a sha256 of the model (its weights, module sources and repr, or the TorchScript
file), the input names/dtypes/non-batch dims, the precision, the exporter, the opset and the
torch version; a cached file is reused as is. fp16 files come from the model cast to half,
int8 files from the quantization hook (mfparse.bench.quant) applied to the fp32 file; their key
adds the quantization settings (reduce_range, the calibration method and feeds), so files
quantized with other settings are never taken for one another.

Everything torch.onnx writes while exporting (Python's stdout/stderr, file descriptors 1 and 2,
where TorchScript's graph printer writes from C++, and warnings) is captured, never printed:
a failed export is one line (`ONNX export failed (...): <first line of the error>; <the fix>`)
and the full log goes to the `log` callback (`mfparse bench --verbose`).

Files are written to a temporary name and renamed, so an interrupted export never leaves a
half-written file under the cached name.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

from mfparse.bench import quant
from mfparse.bench.base import BenchError, Unavailable, one_line
from mfparse.bench.measure import make_inputs

DEFAULT_OPSET = 17
DYNAMO_MIN_OPSET = 18


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def have_onnxscript() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxscript") is not None


class Captured:
    """What a `captured()` block wrote: `text` (stdout and stderr, Python's and the process's
    file descriptors 1 and 2, in the order each stream was written) and `warnings` (messages)."""

    def __init__(self):
        self.text = ""
        self.warnings: list[str] = []

    def log(self) -> str:
        parts = [self.text.rstrip("\n")] if self.text.strip() else []
        parts += [f"warning: {w}" for w in self.warnings]
        return "\n".join(parts)


def _flush_c_stdio() -> None:
    """Flush C's stdio buffers (C++ code writing to std::cout goes through them)."""
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):
        pass


@contextlib.contextmanager
def captured():
    """Run a block with everything it prints captured instead of shown: sys.stdout/sys.stderr,
    file descriptors 1 and 2 (when they can be redirected) and warnings. Yields a `Captured`,
    filled when the block ends (also when it raises)."""
    out = Captured()
    buf = io.StringIO()
    saved: list = []
    sink = tempfile.TemporaryFile(mode="w+b")
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    _flush_c_stdio()
    try:
        for fd in (1, 2):
            saved.append((fd, os.dup(fd)))
            os.dup2(sink.fileno(), fd)
    except OSError:  # no such descriptor (an embedding process): Python-level capture only
        for fd, dup in saved:
            os.dup2(dup, fd)
            os.close(dup)
        saved = []
    try:
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(buf), \
                contextlib.redirect_stderr(buf):
            warnings.simplefilter("always")
            try:
                yield out
            finally:
                out.warnings = list(dict.fromkeys(" ".join(str(w.message).split()) for w in caught))
    finally:
        _flush_c_stdio()
        for fd, dup in saved:
            os.dup2(dup, fd)
            os.close(dup)
        sink.seek(0)
        native = sink.read().decode("utf-8", "replace")
        sink.close()
        out.text = buf.getvalue() + native


def export_failure(tried: list, model_kind: str, requested: str, onnxscript: bool) -> str:
    """One line for a failed export: what failed (each exporter tried, with the first line of its
    error) and what to do about it. `tried`: [(exporter, exception)] in the order tried."""
    what = "; ".join(f"{name} exporter: {type(e).__name__}: {one_line(e) or type(e).__name__}"
                     for name, e in tried)
    names = [name for name, _ in tried]
    if model_kind == "torchscript":
        fix = ("only the legacy exporter takes a TorchScript model: give the Python module "
               "(module:callable) to use the dynamo exporter")
        if not onnxscript:
            fix += " (pip install onnxscript)"
    elif names == ["dynamo"]:
        fix = "pass --exporter legacy to try the TorchScript-based exporter"
    elif names == ["legacy"] and not onnxscript:
        fix = ("install onnxscript (pip install onnxscript) for the dynamo exporter, which exports "
               "more models" + (", or pass --exporter dynamo" if requested == "legacy" else ""))
    elif names == ["legacy"]:
        fix = "pass --exporter dynamo (or auto) to try the torch.export-based exporter"
    else:
        fix = "neither exporter handles this model"
    return f"ONNX export failed (torch.onnx.export, {what}); {fix}; --verbose shows the full export log"


class OnnxStore:
    """The ONNX file of each precision for one model, exported on first request.

    `get(precision)` returns (path, info) or raises Unavailable with the reason (remembered, so a
    failed export is tried once per run). info: exporter, cached, export_ms, sha256, warnings."""

    def __init__(self, model, cache_dir: Path, exporter: str = "auto", opset: int | None = None,
                 seed: int = 0, log: Callable[[str, str], None] | None = None):
        if exporter not in ("auto", "dynamo", "legacy"):
            raise BenchError(f"--exporter must be auto, dynamo or legacy, not {exporter!r}")
        self.model = model
        self.dir = Path(cache_dir) / "onnx"
        self.exporter = exporter
        self.opset = opset
        self.seed = seed
        self.log = log  # log(title, text): the captured output of each export (--verbose)
        self._done: dict[str, tuple] = {}
        self._failed: dict[str, str] = {}
        self._n_outputs: int | None = None

    def set_output_count(self, n: int) -> None:
        self._n_outputs = n

    def _emit(self, title: str, cap: Captured, errors=()) -> None:
        """Hand the captured output (and the full text of each error) to the log callback."""
        text = "\n".join([cap.log()] + [f"{what}: {type(e).__name__}: {e}" for what, e in errors]).strip()
        if self.log is not None and text:
            self.log(title, text)

    def summary(self) -> dict:
        return {p: info for p, (_, info) in self._done.items()} | {
            p: {"error": reason} for p, reason in self._failed.items()}

    def get(self, precision: str):
        if precision in self._done:
            return self._done[precision]
        if precision in self._failed:
            raise Unavailable(self._failed[precision])
        try:
            if precision == "fp32":
                result = self._fp32()
            elif precision == "fp16":
                result = self._fp16()
            elif precision == "int8":
                result = self._int8()
            else:
                raise Unavailable(f"unknown precision {precision}")
        except Unavailable as e:
            self._failed[precision] = str(e)
            raise
        self._done[precision] = result
        return result

    # ---- per precision -------------------------------------------------------------------------

    def _fp32(self):
        m = self.model
        if m.kind == "onnx":
            return m.onnx_path, {"exporter": None, "cached": None, "export_ms": 0.0,
                                 "path": os.fspath(m.onnx_path), "sha256": sha256_file(m.onnx_path)}
        return self._export(m.module, "fp32")

    def _fp16(self):
        m = self.model
        if m.kind == "onnx":
            raise Unavailable("fp16 ONNX is exported from the torch model; MODEL is an .onnx file "
                              "(give an fp16 .onnx as MODEL instead)")
        try:
            half = copy.deepcopy(m.module).half()
        except Exception as e:
            raise Unavailable(f"cannot make an fp16 copy of the model: {type(e).__name__}: {e}") from None
        return self._export(half, "fp16")

    def _int8(self):
        fn = quant.hook("onnx")
        src, info = self.get("fp32")
        n_calib = 8
        settings = quant.onnx_settings(fn, calibration={
            "feeds": n_calib, "batch": 1,
            "inputs": f"seeded random like the benchmark's (seeds {self.seed + 1000}..{self.seed + 999 + n_calib})"})
        key_doc = {"fp32": info["sha256"], "precision": "int8", "seed": self.seed,
                   "hook": f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)}",
                   "reduce_range": settings["reduce_range"], "calibration": settings["calibration"]}
        key = hashlib.sha256(json.dumps(key_doc, sort_keys=True, default=str).encode())
        dst = self.dir / f"{key.hexdigest()[:32]}.int8.onnx"
        quant_info = {"reduce_range": settings["reduce_range"], "calibration": settings["calibration"]}
        if settings.get("int8_cpu"):
            quant_info["int8_cpu"] = settings["int8_cpu"]
        if dst.exists():
            return dst, {"exporter": "quant-hook", "cached": True, "export_ms": 0.0,
                         "path": os.fspath(dst), "sha256": sha256_file(dst), "quantization": quant_info}
        calib = [dict(zip([s.name for s in self.model.inputs],
                          make_inputs(self.model.inputs, 1, self.seed + 1000 + i))) for i in range(n_calib)]
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(dst.name + f".{os.getpid()}.tmp")
        t0 = time.perf_counter()
        cap = None
        errors = []
        try:
            with captured() as cap:
                quant.call_onnx(fn, os.fspath(src), os.fspath(tmp), calib, settings)
            os.replace(tmp, dst)
        except Unavailable:
            raise
        except Exception as e:
            errors.append(("int8 quantization error", e))
            raise Unavailable(f"int8 quantization failed: {type(e).__name__}: {one_line(e, 300)}; "
                              "--verbose shows the full log") from None
        finally:
            if cap is not None:
                self._emit("int8 quantization", cap, errors)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return dst, {"exporter": "quant-hook", "cached": False,
                     "export_ms": (time.perf_counter() - t0) * 1e3, "path": os.fspath(dst),
                     "sha256": sha256_file(dst), "quantization": quant_info}

    # ---- torch.onnx.export ---------------------------------------------------------------------

    def _choose(self, module) -> tuple[str, str | None]:
        import torch

        scripted = isinstance(module, torch.jit.ScriptModule)
        if self.exporter == "legacy":
            return "legacy", None
        if scripted:
            if self.exporter == "dynamo":
                raise Unavailable("the dynamo exporter cannot export a TorchScript model (use --exporter legacy)")
            return "legacy", "TorchScript model"
        if not have_onnxscript():
            if self.exporter == "dynamo":
                raise Unavailable("--exporter dynamo needs onnxscript (pip install onnxscript)")
            return "legacy", "onnxscript is not installed"
        return "dynamo", None

    def _export(self, module, precision: str):
        import torch

        exporter, why = self._choose(module)
        opset = self.opset or (DYNAMO_MIN_OPSET if exporter == "dynamo" else DEFAULT_OPSET)
        specs = self.model.inputs
        key_doc = {
            "model": self.model.digest(), "precision": precision, "exporter": exporter, "opset": opset,
            "torch": torch.__version__,
            "inputs": [[s.name, s.dtype, list(s.shape[1:])] for s in specs],
        }
        key = hashlib.sha256(json.dumps(key_doc, sort_keys=True).encode()).hexdigest()
        path = self.dir / f"{key[:32]}.{precision}.onnx"
        info = {"exporter": exporter, "opset": opset, "path": os.fspath(path)}
        if why:
            info["exporter_reason"] = why
        if path.exists():
            info.update(cached=True, export_ms=0.0, sha256=sha256_file(path))
            return path, info

        # batch 2: torch.export specialises dimensions of size 0 and 1
        arrays = make_inputs(specs, 2, self.seed)
        dummy = []
        for a in arrays:
            t = torch.from_numpy(a)
            if precision == "fp16" and t.is_floating_point():
                t = t.half()
            dummy.append(t)
        n_out = self._n_outputs or 1
        in_names = [s.name for s in specs]
        out_names = ["output"] if n_out == 1 else [f"output_{i}" for i in range(n_out)]
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        t0 = time.perf_counter()
        tried: list = []
        cap = None
        try:
            with captured() as cap:
                try:
                    tried.append([exporter, None])
                    self._run_export(torch, exporter, module, dummy, tmp, in_names, out_names, opset)
                except Exception as e:
                    tried[-1][1] = e
                    if exporter != "dynamo" or self.exporter == "dynamo":
                        raise
                    # the torch.export-based exporter fails on some models: fall back to legacy
                    info.update(exporter="legacy", opset=self.opset or DEFAULT_OPSET,
                                exporter_reason=f"dynamo export failed: {type(e).__name__}: {one_line(e)}")
                    tried.append(["legacy", None])
                    self._run_export(torch, "legacy", module, dummy, tmp, in_names, out_names, info["opset"])
            os.replace(tmp, path)
        except Exception as e:
            tried[-1][1] = e
            raise Unavailable(export_failure([(n, x) for n, x in tried if x is not None], self.model.kind,
                                             self.exporter, have_onnxscript())) from None
        finally:
            if cap is not None:
                self._emit(f"ONNX export, {precision} ({' then '.join(n for n, _ in tried)} exporter)", cap,
                           [(f"{n} exporter error", x) for n, x in tried if x is not None])
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        info.update(cached=False, export_ms=(time.perf_counter() - t0) * 1e3, sha256=sha256_file(path))
        msgs = sorted({w[:160] for w in cap.warnings})
        if msgs:
            info["warnings"] = msgs[:5]
        return path, info

    @staticmethod
    def _run_export(torch, exporter, module, dummy, dst, in_names, out_names, opset):
        if exporter == "dynamo":
            batch = torch.export.Dim("batch")
            torch.onnx.export(module, tuple(dummy), os.fspath(dst), dynamo=True, input_names=in_names,
                              output_names=out_names, opset_version=opset, external_data=False,
                              dynamic_shapes=tuple({0: batch} if t.dim() else {} for t in dummy),
                              verbose=False)
        else:
            axes = {n: {0: "batch"} for n in in_names + out_names}
            torch.onnx.export(module, tuple(dummy), os.fspath(dst), dynamo=False, input_names=in_names,
                              output_names=out_names, opset_version=opset, do_constant_folding=True,
                              dynamic_axes=axes)
