"""The TensorRT runtime (TensorRT 10+ Python API, no pycuda).

Build: the ONNX file is parsed with OnnxParser.parse_from_file into a network created with
no flags (explicit batch is the only mode in TensorRT 10); one optimization profile pins every
input to the benchmarked shape (min = opt = max); fp16 sets BuilderFlag.FP16, int8 builds the
QDQ file from the quantization hook with BuilderFlag.INT8; the builder config carries a timing
cache read from and written back to the cache directory; build_serialized_network makes the
engine. Engines are cached under a key of the ONNX sha256, precision, input shapes and the
TensorRT version, so a second run deserializes instead of building.

Run: deserialize_cuda_engine, create_execution_context, set_input_shape per input,
get_tensor_shape per output, one device buffer per I/O tensor bound with set_tensor_address,
execute_async_v3 on the backend's stream. Copies (h2d/d2h, page-locked host arrays) are
timed apart from execute_async_v3 with CUDA events.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

import numpy as np

from mfparse.bench.base import Unavailable
from mfparse.bench.export import atomic_write_bytes
from mfparse.bench.measure import Session
from mfparse.bench.runners import Prepared, Runner

MIN_MAJOR = 10


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise Unavailable("tensorrt is not installed (pip install tensorrt; it needs an NVIDIA GPU)") from None
    except Exception as e:  # a broken install (missing libnvinfer) raises other errors
        raise Unavailable(f"tensorrt cannot be imported: {type(e).__name__}: {e}") from None
    return check_version(trt)


def check_version(trt):
    """The module itself when it is TensorRT 10 or newer, else Unavailable."""
    version = getattr(trt, "__version__", "0")
    try:
        major = int(version.split(".")[0])
    except ValueError:
        major = 0
    if major < MIN_MAJOR:
        raise Unavailable(f"TensorRT {version} is installed; this runner needs TensorRT {MIN_MAJOR}+")
    return trt


def _parser_error(err) -> str:
    """Text of an IParserError: its description, with the node when TensorRT names one."""
    desc = err.desc() if hasattr(err, "desc") else str(err)
    node = err.node() if hasattr(err, "node") else -1
    return f"node {node}: {desc}" if isinstance(node, int) and node >= 0 else str(desc)


class TensorRTRunner(Runner):
    name = "tensorrt"
    label = "tensorrt"
    device = "cuda"

    def __init__(self, trt=None, backend_factory=None, workspace_mb: int | None = None):
        self._trt = trt
        self._backend_factory = backend_factory
        self._workspace_mb = workspace_mb
        self._logger = None

    # ---- availability -------------------------------------------------------------------------

    def trt(self):
        if self._trt is None:
            self._trt = import_tensorrt()
        return check_version(self._trt)

    def logger(self):
        if self._logger is None:
            trt = self.trt()
            self._logger = trt.Logger(trt.Logger.WARNING)
        return self._logger

    def backend(self):
        if self._backend_factory is not None:
            return self._backend_factory()
        from mfparse.bench.cuda import select_backend

        return select_backend()

    def check(self, ctx) -> None:
        self.trt()
        self.backend().close()  # Unavailable when no GPU can be reached

    # ---- engine -------------------------------------------------------------------------------

    def engine_key(self, onnx_sha: str, precision: str, shapes: dict) -> str:
        trt = self.trt()
        doc = {"onnx": onnx_sha, "precision": precision, "trt": getattr(trt, "__version__", "?"),
               "shapes": {k: list(v) for k, v in sorted(shapes.items())}}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    def build(self, onnx_path, precision: str, shapes: dict, cache_dir, onnx_sha: str | None = None,
              device_tag: str = "") -> tuple[bytes, dict]:
        """Serialized engine bytes and {build_ms, engine_cached, engine_path}."""
        trt = self.trt()
        from mfparse.bench.export import sha256_file

        onnx_sha = onnx_sha or sha256_file(onnx_path)
        key = self.engine_key(onnx_sha + device_tag, precision, shapes)
        engine_dir = cache_dir / "tensorrt"
        engine_path = engine_dir / f"{key[:32]}.{precision}.engine"
        tag = hashlib.sha256(device_tag.encode()).hexdigest()[:12]
        timing_path = engine_dir / f"timing-{tag}.cache"  # timing caches are per GPU
        if engine_path.exists():
            t0 = time.perf_counter()
            blob = engine_path.read_bytes()
            return blob, {"build_ms": (time.perf_counter() - t0) * 1e3, "engine_cached": True,
                          "engine_path": os.fspath(engine_path)}

        logger = self.logger()
        t0 = time.perf_counter()
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(os.fspath(onnx_path)):
            errors = [_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
            raise Unavailable("TensorRT cannot parse the ONNX file: " + ("; ".join(errors) or "no error given"))
        config = builder.create_builder_config()
        if self._workspace_mb:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(self._workspace_mb) << 20)
        if precision in ("fp16", "int8"):
            flag = getattr(trt.BuilderFlag, precision.upper(), None)
            if flag is None:
                raise Unavailable(f"this TensorRT ({trt.__version__}) has no BuilderFlag.{precision.upper()}")
            config.set_flag(flag)
        old = timing_path.read_bytes() if timing_path.exists() else b""
        cache = config.create_timing_cache(old)
        config.set_timing_cache(cache, False)
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            if tensor.name not in shapes:
                raise Unavailable(f"the ONNX input {tensor.name!r} is not among the model inputs "
                                  f"{', '.join(shapes)}")
            shape = tuple(shapes[tensor.name])
            declared = tuple(tensor.shape)
            if len(declared) != len(shape) or any(d not in (-1, s) for d, s in zip(declared, shape)):
                raise Unavailable(f"input {tensor.name!r}: shape {list(shape)} does not fit the network's "
                                  f"{list(declared)}")
            profile.set_shape(tensor.name, shape, shape, shape)
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise Unavailable("TensorRT could not build an engine (see the TensorRT log above)")
        blob = bytes(serialized)
        build_ms = (time.perf_counter() - t0) * 1e3
        atomic_write_bytes(timing_path, bytes(config.get_timing_cache().serialize()))
        atomic_write_bytes(engine_path, blob)
        return blob, {"build_ms": build_ms, "engine_cached": False, "engine_path": os.fspath(engine_path)}

    # ---- run ----------------------------------------------------------------------------------

    def prepare(self, ctx, precision, batch, inputs) -> Prepared:
        trt = self.trt()
        path, info = ctx.onnx.get("int8" if precision == "int8" else "fp32")
        shapes = {s.name: tuple(a.shape) for s, a in zip(ctx.model.inputs, inputs)}
        backend = self.backend()
        try:
            return self._prepare(trt, backend, ctx, precision, inputs, path, info, shapes)
        except BaseException:
            backend.close()
            raise

    def _prepare(self, trt, backend, ctx, precision, inputs, path, info, shapes) -> Prepared:
        mem0 = backend.mem_used_mb()
        blob, build = self.build(path, precision, shapes, ctx.settings.cache_dir, info.get("sha256"),
                                 getattr(backend, "device_tag", ""))
        t0 = time.perf_counter()
        runtime = trt.Runtime(self.logger())
        engine = runtime.deserialize_cuda_engine(blob)
        if engine is None:
            raise Unavailable("TensorRT could not deserialize the engine (a cache from another "
                              "TensorRT or GPU? delete it and rerun)")
        context = engine.create_execution_context()
        by_name = {s.name: a for s, a in zip(ctx.model.inputs, inputs)}
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        in_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        out_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        host_in, host_out, bufs = {}, {}, {}
        for n in in_names:
            if n not in by_name:
                raise Unavailable(f"engine input {n!r} is not among the model inputs {', '.join(by_name)}")
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(n)))
            a = by_name[n]
            if not context.set_input_shape(n, tuple(a.shape)):
                raise Unavailable(f"TensorRT rejected input shape {list(a.shape)} for {n!r}")
            h = backend.host(a.shape, dtype)
            h[...] = a.astype(dtype, copy=False)
            host_in[n] = h
        for n in out_names:
            shape = tuple(context.get_tensor_shape(n))
            if any(d < 0 for d in shape):
                raise Unavailable(f"output {n!r} has an unresolved shape {list(shape)}")
            host_out[n] = backend.host(shape, np.dtype(trt.nptype(engine.get_tensor_dtype(n))))
        for n in in_names:
            bufs[n] = backend.alloc(host_in[n].nbytes)
        for n in out_names:
            bufs[n] = backend.alloc(host_out[n].nbytes)
        for n in names:
            if not context.set_tensor_address(n, bufs[n].ptr):
                raise Unavailable(f"TensorRT rejected the device address of {n!r}")
        setup_ms = (time.perf_counter() - t0) * 1e3
        stream = backend.stream

        def h2d():
            for n in in_names:
                backend.h2d(bufs[n], host_in[n])

        def compute():
            if not context.execute_async_v3(stream):
                raise RuntimeError("execute_async_v3 failed (see the TensorRT log)")

        def d2h():
            for n in out_names:
                backend.d2h(host_out[n], bufs[n])

        def outputs():
            backend.clock.synchronize()
            return [np.array(host_out[n], dtype=np.float32) if host_out[n].dtype.kind == "f"
                    else np.array(host_out[n]) for n in out_names]

        state = {"engine": engine, "context": context, "runtime": runtime}

        def device_memory():
            used = backend.mem_used_mb()
            if used is not None and mem0 is not None:
                return max(0.0, used - mem0)
            act = getattr(engine, "device_memory_size_v2", None)
            if act is None:
                act = getattr(engine, "device_memory_size", 0)
            return (len(blob) + int(act) + sum(b.nbytes for b in bufs.values())) / 2**20

        def close():
            backend.close()
            state.clear()
            bufs.clear()

        extra = {"engine_cached": build["engine_cached"], "engine_path": build["engine_path"],
                 "engine_setup_ms": setup_ms, "onnx": info.get("path"),
                 "device_backend": getattr(backend, "name", "?")}
        if precision == "int8" and info.get("quantization"):
            extra["quantization"] = info["quantization"]
        return Prepared(Session(compute, outputs, backend.clock, h2d, d2h), build["build_ms"],
                        None, timer=getattr(backend.clock, "name", "cuda-event"),
                        extra=extra, device_memory_mb=device_memory, close=close)
