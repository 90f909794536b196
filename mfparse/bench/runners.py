"""The runtimes: torch (CPU), torch-cuda, ONNX Runtime (CPU, CUDA and TensorRT execution
providers). TensorRT itself lives in mfparse/bench/trt.py.

A runner's `prepare(ctx, precision, batch, inputs)` builds what it runs (a model copy, a
session, an engine) and returns a `Prepared`: the `Session` the timing loop drives, the build
time, the thread count actually in force (read back from the runtime, not the one asked for),
and the device memory. Anything that cannot run here raises Unavailable with the reason.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from mfparse.bench import quant
from mfparse.bench.base import Unavailable
from mfparse.bench.measure import HostClock, Session
from mfparse.bench.models import flatten_outputs, to_numpy


@dataclass
class Prepared:
    session: Session
    build_ms: float
    threads: int | None
    timer: str = "perf_counter"
    extra: dict = field(default_factory=dict)
    device_memory_mb: Callable[[], float | None] | None = None
    close: Callable[[], None] | None = None


class Runner:
    name = "?"
    label = "?"
    device = "cpu"
    provider: str | None = None

    def check(self, ctx) -> None:
        """Raise Unavailable when this runtime cannot run at all here."""

    def unsupported(self, ctx, precision: str) -> str | None:
        """Why this runtime never runs `precision` for this model (None: it may)."""
        return None

    def emulated(self, precision: str) -> str | None:
        """Why `precision` is emulated on this runtime's device (None: it runs natively), so a
        row can warn that its number is not what the hardware does in that precision."""
        return None

    def prepare(self, ctx, precision: str, batch: int, inputs: list) -> Prepared:
        raise NotImplementedError


# ---- torch ------------------------------------------------------------------------------------


def _torch_inputs(torch, inputs, half: bool):
    out = []
    for a in inputs:
        t = torch.from_numpy(a)
        if half and t.is_floating_point():
            t = t.half()
        out.append(t)
    return out


TORCH_CPU_FP16 = ("torch has no fp16 arithmetic for most operators on the CPU: it converts to fp32 and "
                  "back around them, so fp16 is emulated here and usually much slower than fp32")
ORT_CPU_FP16 = ("ONNX Runtime's CPU provider has fp16 kernels for few operators and runs the others in "
                "fp32 between casts it inserts, so fp16 is emulated here: its speed is not the CPU's fp16 speed")


class TorchRunner(Runner):
    name = "torch"
    label = "torch"
    device = "cpu"

    def check(self, ctx) -> None:
        if not ctx.model.is_torch:
            raise Unavailable("MODEL is an .onnx file; torch runs torch models (TorchScript or module:callable)")

    def emulated(self, precision: str) -> str | None:
        return TORCH_CPU_FP16 if precision == "fp16" else None

    def prepare(self, ctx, precision, batch, inputs) -> Prepared:
        import torch

        t0 = time.perf_counter()
        module = ctx.model.module
        if precision == "fp16":
            try:
                module = copy.deepcopy(module).half()
            except Exception as e:
                raise Unavailable(f"cannot make an fp16 copy of the model: {type(e).__name__}: {e}") from None
        elif precision == "int8":
            fn = quant.hook("torch")
            module = fn(module, _torch_inputs(torch, inputs, False))
        tensors = _torch_inputs(torch, inputs, precision == "fp16")
        build_ms = (time.perf_counter() - t0) * 1e3
        state = {}

        def compute():
            with torch.inference_mode():
                state["out"] = module(*tensors)

        def outputs():
            return [to_numpy(t) for t in flatten_outputs(state["out"])]

        return Prepared(Session(compute, outputs), build_ms, torch.get_num_threads())


class TorchCudaRunner(Runner):
    name = "torch"
    label = "torch-cuda"
    device = "cuda"

    def check(self, ctx) -> None:
        if not ctx.model.is_torch:
            raise Unavailable("MODEL is an .onnx file; torch runs torch models (TorchScript or module:callable)")
        import torch

        if not torch.cuda.is_available():
            cuda = getattr(torch.version, "cuda", None)
            raise Unavailable(f"torch {torch.__version__} is a CPU-only build" if not cuda
                              else f"torch {torch.__version__} (CUDA {cuda}) sees no GPU")

    def unsupported(self, ctx, precision: str) -> str | None:
        return "torch int8 (dynamic quantization) runs on the CPU only" if precision == "int8" else None

    def prepare(self, ctx, precision, batch, inputs) -> Prepared:
        import torch

        from mfparse.bench.cuda import TorchEventClock

        if precision == "int8":
            raise Unavailable("torch int8 (dynamic quantization) runs on the CPU only")
        torch.backends.cudnn.benchmark = bool(ctx.settings.cudnn_benchmark)
        dev = torch.device("cuda", 0)
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
        t0 = time.perf_counter()
        module = copy.deepcopy(ctx.model.module).to(dev)
        if precision == "fp16":
            module = module.half()
        torch.cuda.synchronize()
        build_ms = (time.perf_counter() - t0) * 1e3
        host = [t.pin_memory() for t in _torch_inputs(torch, inputs, precision == "fp16")]
        dev_in = [torch.empty_like(t, device=dev) for t in host]
        stream = torch.cuda.Stream(device=dev)
        clock = TorchEventClock(torch, stream)
        state: dict = {"host_out": None}

        def h2d():
            with torch.cuda.stream(stream):
                for d, h in zip(dev_in, host):
                    d.copy_(h, non_blocking=True)

        def compute():
            with torch.cuda.stream(stream), torch.inference_mode():
                state["out"] = flatten_outputs(module(*dev_in))

        def d2h():
            outs = state["out"]
            if state["host_out"] is None:
                state["host_out"] = [torch.empty(o.shape, dtype=o.dtype, pin_memory=True) for o in outs]
            with torch.cuda.stream(stream):
                for h, o in zip(state["host_out"], outs):
                    h.copy_(o, non_blocking=True)

        def outputs():
            stream.synchronize()
            return [to_numpy(t) for t in state["host_out"]]

        def close():
            stream.synchronize()
            state.clear()
            dev_in.clear()
            torch.cuda.empty_cache()

        return Prepared(Session(compute, outputs, clock, h2d, d2h), build_ms, torch.get_num_threads(),
                        timer="cuda-event",
                        extra={"cudnn_benchmark": bool(ctx.settings.cudnn_benchmark)},
                        device_memory_mb=lambda: torch.cuda.max_memory_allocated(dev) / 2**20,
                        close=close)


# ---- ONNX Runtime -----------------------------------------------------------------------------

ORT_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                 "trt": "TensorrtExecutionProvider"}
_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
              "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
              "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}


def _ort():
    try:
        import onnxruntime as ort
    except ImportError:
        raise Unavailable("onnxruntime is not installed (pip install onnxruntime)") from None
    return ort


class OrtRunner(Runner):
    name = "onnxruntime"

    def __init__(self, ep: str = "cpu"):
        self.ep = ep
        self.provider = ORT_PROVIDERS[ep]
        self.device = "cpu" if ep == "cpu" else "cuda"
        self.label = "onnxruntime" if ep == "cpu" else f"onnxruntime-{ep}"

    def check(self, ctx) -> None:
        ort = _ort()
        have = ort.get_available_providers()
        if self.provider not in have:
            raise Unavailable(f"onnxruntime {ort.__version__} has no {self.provider} "
                              f"(available: {', '.join(have)})")

    def unsupported(self, ctx, precision: str) -> str | None:
        if precision == "fp16" and self.ep != "trt" and ctx.model.kind == "onnx":
            return ("fp16 ONNX is exported from the torch model; MODEL is an .onnx file "
                    "(give an fp16 .onnx as MODEL instead)")
        return None

    def emulated(self, precision: str) -> str | None:
        return ORT_CPU_FP16 if precision == "fp16" and self.ep == "cpu" else None

    def _options(self, ort, ctx):
        so = ort.SessionOptions()
        so.intra_op_num_threads = ctx.settings.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        spin = "1" if ctx.settings.ort_spinning else "0"
        so.add_session_config_entry("session.intra_op.allow_spinning", spin)
        so.add_session_config_entry("session.inter_op.allow_spinning", spin)
        so.log_severity_level = 3
        return so

    def _provider_entry(self, ctx, precision, inputs):
        if self.ep != "trt":
            return self.provider
        shapes = ",".join(f"{s.name}:{'x'.join(str(d) for d in a.shape)}"
                          for s, a in zip(ctx.model.inputs, inputs))
        cache = ctx.settings.cache_dir / "ort-trt"
        cache.mkdir(parents=True, exist_ok=True)
        return (self.provider, {
            "trt_fp16_enable": precision == "fp16",
            "trt_int8_enable": precision == "int8",
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(cache),
            "trt_profile_min_shapes": shapes,
            "trt_profile_opt_shapes": shapes,
            "trt_profile_max_shapes": shapes,
        })

    def prepare(self, ctx, precision, batch, inputs) -> Prepared:
        ort = _ort()
        # fp16 on the TensorRT EP: the fp32 file with TensorRT's fp16 mode; elsewhere an fp16 file
        onnx_precision = "fp32" if (self.ep == "trt" and precision == "fp16") else precision
        path, _info = ctx.onnx.get(onnx_precision)
        so = self._options(ort, ctx)
        providers = [self._provider_entry(ctx, precision, inputs)]
        if self.ep != "cpu":
            providers.append("CPUExecutionProvider")
        mem0 = ctx.device_mem_used_mb() if self.ep != "cpu" else None
        t0 = time.perf_counter()
        try:
            sess = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as e:
            raise Unavailable(f"onnxruntime cannot create a session: {type(e).__name__}: "
                              f"{' '.join(str(e).split())[:300]}") from None
        build_ms = (time.perf_counter() - t0) * 1e3
        used = sess.get_providers()
        if not used or used[0] != self.provider:
            raise Unavailable(f"onnxruntime did not use {self.provider} (it chose {', '.join(used)})")
        feeds = {}
        by_name = {s.name: a for s, a in zip(ctx.model.inputs, inputs)}
        for i in sess.get_inputs():
            if i.name not in by_name:
                raise Unavailable(f"the ONNX input {i.name!r} is not among the model inputs "
                                  f"{', '.join(by_name)}")
            want = _ORT_TYPES.get(i.type)
            a = by_name[i.name]
            feeds[i.name] = np.ascontiguousarray(a.astype(want, copy=False) if want is not None else a)
        threads = sess.get_session_options().intra_op_num_threads
        extra = {"onnx": _info.get("path")}
        if precision == "int8" and _info.get("quantization"):
            extra["quantization"] = _info["quantization"]
        state: dict = {}
        if self.ep == "cpu":
            def compute():
                state["out"] = sess.run(None, feeds)

            def outputs():
                return [np.asarray(o, dtype=np.float32) if np.asarray(o).dtype.kind == "f" else np.asarray(o)
                        for o in state["out"]]

            return Prepared(Session(compute, outputs), build_ms, threads, extra=extra)

        # GPU providers: inputs live on the device (OrtValues), outputs stay there until d2h
        binding = sess.io_binding()
        dev_vals = {n: ort.OrtValue.ortvalue_from_numpy(a, "cuda", 0) for n, a in feeds.items()}
        for n, v in dev_vals.items():
            binding.bind_ortvalue_input(n, v)
        for o in sess.get_outputs():
            binding.bind_output(o.name, "cuda", 0)

        def h2d():
            for n, v in dev_vals.items():
                v.update_inplace(feeds[n])

        def compute():
            sess.run_with_iobinding(binding)  # returns once the device work is done

        def d2h():
            state["out"] = binding.copy_outputs_to_cpu()

        def outputs():
            return [np.asarray(o, dtype=np.float32) if np.asarray(o).dtype.kind == "f" else np.asarray(o)
                    for o in state["out"]]

        def device_memory():
            now = ctx.device_mem_used_mb()
            return None if now is None or mem0 is None else max(0.0, now - mem0)

        def close():
            binding.clear_binding_inputs()
            binding.clear_binding_outputs()
            dev_vals.clear()

        extra["device_memory_method"] = "device-wide used memory, after minus before the session"
        return Prepared(Session(compute, outputs, HostClock(), h2d, d2h), build_ms, threads,
                        timer="perf_counter (ORT synchronizes the device at the end of a run)",
                        extra=extra, device_memory_mb=device_memory, close=close)
