"""ONNX files for the ONNX Runtime and TensorRT rows, exported once and cached on disk.

A torch model is exported with a dynamic batch dimension (one file serves every batch size).
The exporter is torch's torch.export-based one when onnxscript is installed, else the legacy
TorchScript exporter (always for TorchScript models, which torch.export cannot trace). The
cache key is a sha256 of the model (its weights, module sources and repr, or the TorchScript
file), the input names/dtypes/non-batch dims, the precision, the exporter, the opset and the
torch version; a cached file is reused as is. fp16 files come from the model cast to half,
int8 files from the quantization hook (mfparse.bench.quant) applied to the fp32 file.

Files are written to a temporary name and renamed, so an interrupted export never leaves a
half-written file under the cached name.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

from mfparse.bench import quant
from mfparse.bench.base import BenchError, Unavailable
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


class OnnxStore:
    """The ONNX file of each precision for one model, exported on first request.

    `get(precision)` returns (path, info) or raises Unavailable with the reason (remembered, so a
    failed export is tried once per run). info: exporter, cached, export_ms, sha256, warnings."""

    def __init__(self, model, cache_dir: Path, exporter: str = "auto", opset: int | None = None,
                 seed: int = 0):
        if exporter not in ("auto", "dynamo", "legacy"):
            raise BenchError(f"--exporter must be auto, dynamo or legacy, not {exporter!r}")
        self.model = model
        self.dir = Path(cache_dir) / "onnx"
        self.exporter = exporter
        self.opset = opset
        self.seed = seed
        self._done: dict[str, tuple] = {}
        self._failed: dict[str, str] = {}
        self._n_outputs: int | None = None

    def set_output_count(self, n: int) -> None:
        self._n_outputs = n

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
        key = hashlib.sha256(f"{info['sha256']}|int8|{self.seed}|{getattr(fn, '__qualname__', fn)}".encode())
        dst = self.dir / f"{key.hexdigest()[:32]}.int8.onnx"
        if dst.exists():
            return dst, {"exporter": "quant-hook", "cached": True, "export_ms": 0.0,
                         "path": os.fspath(dst), "sha256": sha256_file(dst)}
        calib = [dict(zip([s.name for s in self.model.inputs],
                          make_inputs(self.model.inputs, 1, self.seed + 1000 + i))) for i in range(8)]
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(dst.name + f".{os.getpid()}.tmp")
        t0 = time.perf_counter()
        try:
            fn(os.fspath(src), os.fspath(tmp), calib)
            os.replace(tmp, dst)
        except Unavailable:
            raise
        except Exception as e:
            raise Unavailable(f"int8 quantization failed: {type(e).__name__}: {e}") from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return dst, {"exporter": "quant-hook", "cached": False,
                     "export_ms": (time.perf_counter() - t0) * 1e3, "path": os.fspath(dst),
                     "sha256": sha256_file(dst), "calibration": "8 seeded random batches of 1"}

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
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(sys.stderr):
            warnings.simplefilter("always")
            try:
                try:
                    self._run_export(torch, exporter, module, dummy, tmp, in_names, out_names, opset)
                except Exception as e:
                    if exporter != "dynamo" or self.exporter == "dynamo":
                        raise
                    # the torch.export-based exporter fails on some models: fall back to legacy
                    info.update(exporter="legacy", opset=self.opset or DEFAULT_OPSET,
                                exporter_reason=f"dynamo export failed: {type(e).__name__}: {str(e)[:200]}")
                    self._run_export(torch, "legacy", module, dummy, tmp, in_names, out_names, info["opset"])
                os.replace(tmp, path)
            except Exception as e:
                raise Unavailable(f"ONNX export ({info['exporter']}) failed: {type(e).__name__}: "
                                  f"{' '.join(str(e).split())[:300]}") from None
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        info.update(cached=False, export_ms=(time.perf_counter() - t0) * 1e3, sha256=sha256_file(path))
        msgs = sorted({" ".join(str(w.message).split())[:160] for w in caught})
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
