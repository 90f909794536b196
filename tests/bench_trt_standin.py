"""A small stand-in of the TensorRT 10 Python API: only the calls mfparse/bench/trt.py makes,
each checking its arguments the way TensorRT does (a wrong call fails an assertion or returns
what TensorRT returns: False, None).

It "builds" an engine by packing the ONNX bytes, the optimization profile and the builder flags
into a blob (a real engine is opaque bytes too), and "executes" it with onnxruntime on memory
addressed by raw pointers (set_tensor_address), reading inputs from and writing outputs to those
addresses. With BuilderFlag.FP16 the outputs are rounded through float16, so fp16 rows show a
(small) error like real fp16 engines.

Tests assert outcomes, never the order of calls: what was built (`built`: each engine's
profile and flags), how often an engine ran and on which stream (`executions`, `streams`), which
device address each I/O tensor was bound to (`bound`), and through `HostBackend` the buffers
allocated (`sizes`), copied and freed. `calls` keeps a log for debugging only.

`HostBackend` replaces the CUDA device backend (mfparse/bench/cuda.py) with host memory.
"""

from __future__ import annotations

import ctypes
import enum
import json
import time
import types

import numpy as np

MAGIC = b"STANDIN-TRT10-ENGINE\0"


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    INT64 = 9


_NP = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8,
       DataType.INT32: np.int32, DataType.BOOL: np.bool_, DataType.INT64: np.int64}
_FROM_ONNX = {1: DataType.FLOAT, 10: DataType.HALF, 3: DataType.INT8, 6: DataType.INT32,
              9: DataType.BOOL, 7: DataType.INT64}


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class BuilderFlag(enum.IntEnum):
    FP16 = 0
    INT8 = 1


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0


class Logger:
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

    def __init__(self, severity=WARNING):
        self.severity = severity


class ParserError:
    def __init__(self, msg):
        self._msg = msg

    def desc(self):
        return self._msg

    def node(self):
        return -1

    def __str__(self):
        return f"In node -1 (parse): {self._msg}"


class ITensor:
    def __init__(self, name, shape, dtype):
        self.name = name
        self.shape = tuple(shape)
        self.dtype = dtype


class StandIn:
    """One stand-in `tensorrt` module with its own call log and counters."""

    def __init__(self, version: str = "10.8.0.43"):
        self.__version__ = version
        self.calls: list = []
        self.builds = 0
        self.built: list = []          # per build: {"profile": {name: (min, opt, max)}, "flags": [...]}
        self.executions = 0
        self.streams: set = set()
        self.bound: dict = {}          # I/O tensor name -> device address, of the last context that ran
        self.timing_cache_inputs: list = []
        st = self

        def log(name, *args):
            st.calls.append((name,) + args)

        class NetworkDefinition:
            def __init__(self, flags):
                self.flags = flags
                self.inputs: list = []
                self.outputs: list = []
                self.onnx = None

            @property
            def num_inputs(self):
                return len(self.inputs)

            def get_input(self, i):
                log("network.get_input", i)
                return self.inputs[i]

        class OnnxParser:
            def __init__(self, network, logger):
                log("OnnxParser")
                assert isinstance(logger, Logger)
                self.network = network
                self.errors: list = []

            @property
            def num_errors(self):
                return len(self.errors)

            def get_error(self, i):
                return self.errors[i]

            def parse_from_file(self, path):
                log("parser.parse_from_file", path)
                import onnx

                try:
                    with open(path, "rb") as f:
                        data = f.read()
                    model = onnx.load_from_string(data)
                except Exception as e:
                    self.errors.append(ParserError(f"failed to parse the ONNX protobuf: {e}"))
                    return False
                inits = {i.name for i in model.graph.initializer}
                for vi in model.graph.input:
                    if vi.name in inits:
                        continue
                    tt = vi.type.tensor_type
                    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
                    self.network.inputs.append(ITensor(vi.name, dims, _FROM_ONNX[tt.elem_type]))
                for vi in model.graph.output:
                    tt = vi.type.tensor_type
                    self.network.outputs.append(ITensor(vi.name, [], _FROM_ONNX[tt.elem_type]))
                self.network.onnx = data
                return True

        class OptimizationProfile:
            def __init__(self):
                self.shapes: dict = {}

            def set_shape(self, name, min, opt, max):
                log("profile.set_shape", name, tuple(min), tuple(opt), tuple(max))
                for s in (min, opt, max):
                    assert all(isinstance(d, int) and d > 0 for d in s), f"bad profile shape {s}"
                assert tuple(min) <= tuple(opt) <= tuple(max)
                self.shapes[name] = (tuple(min), tuple(opt), tuple(max))

        class TimingCache:
            def __init__(self, data):
                self.data = bytes(data)

            def serialize(self):
                return memoryview(self.data)

        class BuilderConfig:
            def __init__(self):
                self.flags: set = set()
                self.profiles: list = []
                self.timing_cache = None
                self.pools: dict = {}

            def set_memory_pool_limit(self, pool, size):
                log("config.set_memory_pool_limit", pool, size)
                self.pools[pool] = size

            def set_flag(self, flag):
                log("config.set_flag", BuilderFlag(flag).name)
                self.flags.add(BuilderFlag(flag))

            def create_timing_cache(self, data):
                log("config.create_timing_cache", len(data))
                st.timing_cache_inputs.append(bytes(data))
                return TimingCache(data)

            def set_timing_cache(self, cache, ignore_mismatch):
                log("config.set_timing_cache", bool(ignore_mismatch))
                assert isinstance(cache, TimingCache)
                self.timing_cache = cache
                return True

            def get_timing_cache(self):
                return self.timing_cache

            def add_optimization_profile(self, profile):
                log("config.add_optimization_profile")
                self.profiles.append(profile)
                return len(self.profiles) - 1

        class Builder:
            def __init__(self, logger):
                log("Builder")
                assert isinstance(logger, Logger)

            def create_network(self, flags=0):
                log("builder.create_network", flags)
                assert flags == 0, "TensorRT 10: explicit batch is implicit, pass no flags"
                return NetworkDefinition(flags)

            def create_builder_config(self):
                log("builder.create_builder_config")
                return BuilderConfig()

            def create_optimization_profile(self):
                log("builder.create_optimization_profile")
                return OptimizationProfile()

            def build_serialized_network(self, network, config):
                log("builder.build_serialized_network")
                if network.onnx is None:
                    return None
                if len(config.profiles) != 1:
                    return None  # dynamic inputs need a profile
                prof = config.profiles[0].shapes
                for t in network.inputs:
                    if t.name not in prof:
                        return None
                st.builds += 1
                st.built.append({"profile": {n: v for n, v in prof.items()},
                                 "flags": sorted(f.name for f in config.flags),
                                 "network_flags": network.flags})
                if config.timing_cache is not None:  # a real build adds tactics to the cache
                    config.timing_cache.data += f"tactics-{st.builds};".encode()
                head = {"inputs": [[t.name, list(prof[t.name][1]), int(t.dtype)] for t in network.inputs],
                        "outputs": [[t.name, int(t.dtype)] for t in network.outputs],
                        "flags": sorted(f.name for f in config.flags)}
                hb = json.dumps(head).encode()
                return memoryview(MAGIC + len(hb).to_bytes(4, "little") + hb + network.onnx)

        class ExecutionContext:
            def __init__(self, engine):
                self.engine = engine
                self.shapes: dict = {}
                self.addresses: dict = {}
                self._out_shapes = None

            def set_input_shape(self, name, shape):
                log("context.set_input_shape", name, tuple(shape))
                assert self.engine.get_tensor_mode(name) == TensorIOMode.INPUT
                if tuple(shape) != tuple(self.engine.profile[name]):
                    return False  # outside the optimization profile
                self.shapes[name] = tuple(shape)
                self._out_shapes = None
                return True

            def _outputs_for_shapes(self):
                if self._out_shapes is None:
                    feeds = {n: np.zeros(self.shapes[n], _NP[self.engine.dtypes[n]]) for n in self.engine.in_names}
                    outs = self.engine.session.run(None, feeds)
                    self._out_shapes = {n: o.shape for n, o in zip(self.engine.out_names, outs)}
                return self._out_shapes

            def get_tensor_shape(self, name):
                log("context.get_tensor_shape", name)
                if self.engine.get_tensor_mode(name) == TensorIOMode.INPUT:
                    return self.shapes.get(name, tuple(self.engine.profile[name]))
                if any(n not in self.shapes for n in self.engine.in_names):
                    return (-1,)  # output shapes are unknown until every input shape is set
                return tuple(self._outputs_for_shapes()[name])

            def set_tensor_address(self, name, ptr):
                log("context.set_tensor_address", name)
                assert isinstance(ptr, int) and ptr != 0
                self.addresses[name] = ptr
                return True

            def execute_async_v3(self, stream_handle):
                log("context.execute_async_v3", stream_handle)
                assert isinstance(stream_handle, int)
                for n in self.engine.in_names + self.engine.out_names:
                    if n not in self.addresses:
                        return False
                for n in self.engine.in_names:
                    if n not in self.shapes:
                        return False
                st.executions += 1
                st.streams.add(stream_handle)
                st.bound = dict(self.addresses)
                feeds = {}
                for n in self.engine.in_names:
                    dt = np.dtype(_NP[self.engine.dtypes[n]])
                    count = int(np.prod(self.shapes[n]))
                    raw = (ctypes.c_char * (count * dt.itemsize)).from_address(self.addresses[n])
                    feeds[n] = np.frombuffer(raw, dtype=dt, count=count).reshape(self.shapes[n]).copy()
                outs = self.engine.session.run(None, feeds)
                for n, o in zip(self.engine.out_names, outs):
                    dt = np.dtype(_NP[self.engine.dtypes[n]])
                    if "FP16" in self.engine.flags and dt.kind == "f":
                        o = o.astype(np.float16).astype(dt)
                    o = np.ascontiguousarray(o, dtype=dt)
                    ctypes.memmove(self.addresses[n], o.ctypes.data, o.nbytes)
                return True

        class Engine:
            def __init__(self, head, onnx_bytes):
                import onnxruntime as ort

                so = ort.SessionOptions()
                so.intra_op_num_threads = 1
                self.session = ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"])
                self.in_names = [n for n, _, _ in head["inputs"]]
                self.out_names = [n for n, _ in head["outputs"]]
                self.profile = {n: tuple(s) for n, s, _ in head["inputs"]}
                self.dtypes = {n: DataType(d) for n, _, d in head["inputs"]}
                self.dtypes.update({n: DataType(d) for n, d in head["outputs"]})
                self.flags = set(head["flags"])
                self.device_memory_size_v2 = 1 << 20

            @property
            def num_io_tensors(self):
                return len(self.in_names) + len(self.out_names)

            def get_tensor_name(self, i):
                return (self.in_names + self.out_names)[i]

            def get_tensor_mode(self, name):
                if name in self.in_names:
                    return TensorIOMode.INPUT
                if name in self.out_names:
                    return TensorIOMode.OUTPUT
                return TensorIOMode.NONE

            def get_tensor_dtype(self, name):
                return self.dtypes[name]

            def create_execution_context(self):
                log("engine.create_execution_context")
                return ExecutionContext(self)

        class Runtime:
            def __init__(self, logger):
                log("Runtime")
                assert isinstance(logger, Logger)

            def deserialize_cuda_engine(self, blob):
                log("runtime.deserialize_cuda_engine")
                blob = bytes(blob)
                if not blob.startswith(MAGIC):
                    return None
                n = int.from_bytes(blob[len(MAGIC):len(MAGIC) + 4], "little")
                head = json.loads(blob[len(MAGIC) + 4:len(MAGIC) + 4 + n])
                return Engine(head, blob[len(MAGIC) + 4 + n:])

        self.module = types.SimpleNamespace(
            __version__=version, Logger=Logger, Builder=Builder, OnnxParser=OnnxParser, Runtime=Runtime,
            BuilderFlag=BuilderFlag, MemoryPoolType=MemoryPoolType, TensorIOMode=TensorIOMode,
            DataType=DataType, nptype=lambda dt: _NP[DataType(dt)],
        )



# ---- device backend on host memory --------------------------------------------------------------


class HostClock:
    name = "host-standin"

    def mark(self):
        return time.perf_counter_ns()

    def elapsed_ms(self, a, b):
        return (b - a) / 1e6

    def synchronize(self):
        pass


class HostBackend:
    """The device backend interface of mfparse/bench/cuda.py, on host memory."""

    name = "host-standin"
    device_tag = "standin-gpu"
    opened = 0
    closed = 0

    def __init__(self):
        from mfparse.bench.cuda import DeviceBuffer

        self._DeviceBuffer = DeviceBuffer
        self._keep: list = []
        self.stream = 0x5EED
        self.clock = HostClock()
        self.copies = {"h2d": 0, "d2h": 0}
        self.sizes: dict = {}      # device address -> bytes, of every buffer allocated
        self.is_closed = False
        HostBackend.opened += 1

    def alloc(self, nbytes):
        a = np.zeros(max(1, nbytes), dtype=np.uint8)
        self._keep.append(a)
        self.sizes[a.ctypes.data] = nbytes
        return self._DeviceBuffer(a.ctypes.data, nbytes, a)

    def live(self) -> int:
        """Buffers still held (0 once closed)."""
        return len(self._keep)

    def host(self, shape, dtype):
        return np.empty(shape, dtype=dtype)

    def h2d(self, buf, array):
        a = np.ascontiguousarray(array)
        assert a.nbytes <= buf.nbytes
        ctypes.memmove(buf.ptr, a.ctypes.data, a.nbytes)
        self.copies["h2d"] += 1

    def d2h(self, array, buf):
        assert array.flags.c_contiguous and array.nbytes <= buf.nbytes
        ctypes.memmove(array.ctypes.data, buf.ptr, array.nbytes)
        self.copies["d2h"] += 1

    def mem_used_mb(self):
        return None

    def close(self):
        HostBackend.closed += 1
        self.is_closed = True
        self._keep.clear()


class Recording:
    """A backend factory that keeps every HostBackend it makes (the runner opens one to check
    that a device is there and one per row)."""

    def __init__(self):
        self.made: list = []

    def __call__(self):
        b = HostBackend()
        self.made.append(b)
        return b

    def rows(self) -> list:
        """The backends that ran an engine (allocated buffers)."""
        return [b for b in self.made if b.sizes]
