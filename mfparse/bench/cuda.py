"""Device memory, streams, copies and CUDA-event timing for the TensorRT runner, from torch's
CUDA tensors or from cuda-python (pycuda is not needed).

A backend offers:
    alloc(nbytes) -> DeviceBuffer(ptr, nbytes)      device memory (kept alive by the backend)
    host(shape, dtype) -> numpy array                page-locked when the backend can
    stream -> int                                    the CUDA stream handle TensorRT runs on
    h2d(buf, array) / d2h(array, buf)                async copies on that stream
    clock                                            CUDA-event clock (mark/elapsed_ms/synchronize)
    mem_used_mb() -> float | None                    device memory in use (whole device)
    close()

`select_backend()` picks torch when it sees a GPU, else cuda-python, else raises Unavailable.
Tests hand the TensorRT runner a host-memory backend instead (tests/bench_trt_standin.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mfparse.bench.base import Unavailable


@dataclass
class DeviceBuffer:
    ptr: int
    nbytes: int
    owner: object = None


# ---- torch ------------------------------------------------------------------------------------


class TorchEventClock:
    name = "cuda-event"

    def __init__(self, torch, stream):
        self._torch = torch
        self._stream = stream

    def mark(self):
        e = self._torch.cuda.Event(enable_timing=True)
        e.record(self._stream)
        return e

    def elapsed_ms(self, a, b) -> float:
        return float(a.elapsed_time(b))

    def synchronize(self) -> None:
        self._stream.synchronize()


class TorchCudaBackend:
    name = "torch"

    def __init__(self, device: int = 0):
        import torch

        if not torch.cuda.is_available():
            raise Unavailable(f"torch {torch.__version__} sees no CUDA device")
        self.torch = torch
        self.device = torch.device("cuda", device)
        torch.cuda.set_device(self.device)
        self._stream = torch.cuda.Stream(device=self.device)
        self.stream = int(self._stream.cuda_stream)
        self.clock = TorchEventClock(torch, self._stream)
        p = torch.cuda.get_device_properties(self.device)
        self.device_tag = f"{p.name}-sm{p.major}{p.minor}".replace(" ", "_")
        self._keep: list = []
        self._pinned: dict = {}

    def alloc(self, nbytes: int) -> DeviceBuffer:
        t = self.torch.empty(max(1, nbytes), dtype=self.torch.uint8, device=self.device)
        self._keep.append(t)
        return DeviceBuffer(t.data_ptr(), nbytes, t)

    def host(self, shape, dtype) -> np.ndarray:
        n = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        t = self.torch.empty(max(1, n), dtype=self.torch.uint8, pin_memory=True)
        self._keep.append(t)
        self._pinned[t.data_ptr()] = t
        return t.numpy()[:n].view(dtype).reshape(shape)

    def _as_host_tensor(self, array: np.ndarray):
        """The page-locked torch tensor behind an array from host(), else a view of the array."""
        t = self._pinned.get(array.ctypes.data)
        if t is not None and array.flags.c_contiguous:
            return t[: array.nbytes]
        return self.torch.from_numpy(np.ascontiguousarray(array).reshape(-1).view(np.uint8))

    def h2d(self, buf: DeviceBuffer, array: np.ndarray) -> None:
        src = self._as_host_tensor(array)
        with self.torch.cuda.stream(self._stream):
            buf.owner[: src.numel()].copy_(src, non_blocking=True)

    def d2h(self, array: np.ndarray, buf: DeviceBuffer) -> None:
        if not array.flags.c_contiguous:
            raise ValueError("d2h needs a C-contiguous host array")
        dst = self._as_host_tensor(array)
        with self.torch.cuda.stream(self._stream):
            dst.copy_(buf.owner[: dst.numel()], non_blocking=True)

    def mem_used_mb(self) -> float | None:
        free, total = self.torch.cuda.mem_get_info(self.device)
        return (total - free) / 2**20

    def close(self) -> None:
        self._stream.synchronize()
        self._keep.clear()
        self._pinned.clear()


# ---- cuda-python ------------------------------------------------------------------------------


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            raise Unavailable("cuda-python is not installed") from None
    return cudart


def _check(result):
    err, *rest = result
    if int(err) != 0:
        raise RuntimeError(f"CUDA runtime error {int(err)} ({err})")
    return rest[0] if len(rest) == 1 else (tuple(rest) if rest else None)


class CudartEventClock:
    name = "cuda-event"

    def __init__(self, rt, stream):
        self._rt = rt
        self._stream = stream
        self._events: list = []

    def mark(self):
        e = _check(self._rt.cudaEventCreate())
        self._events.append(e)
        _check(self._rt.cudaEventRecord(e, self._stream))
        return e

    def elapsed_ms(self, a, b) -> float:
        return float(_check(self._rt.cudaEventElapsedTime(a, b)))

    def synchronize(self) -> None:
        _check(self._rt.cudaStreamSynchronize(self._stream))
        for e in self._events[:-8]:  # events of finished iterations
            self._rt.cudaEventDestroy(e)
        del self._events[:-8]


class CudaPythonBackend:
    name = "cuda-python"

    def __init__(self, device: int = 0):
        rt = _cudart()
        self.rt = rt
        try:
            count = _check(rt.cudaGetDeviceCount())
        except RuntimeError as e:
            raise Unavailable(f"no CUDA device ({e})") from None
        if not count:
            raise Unavailable("no CUDA device")
        _check(rt.cudaSetDevice(device))
        props = _check(rt.cudaGetDeviceProperties(device))
        name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
        self.device_tag = f"{name.strip(chr(0))}-sm{props.major}{props.minor}".replace(" ", "_")
        self._stream = _check(rt.cudaStreamCreate())
        self.stream = int(self._stream)
        self.clock = CudartEventClock(rt, self._stream)
        self._dev: list = []
        self._pinned: list = []

    def alloc(self, nbytes: int) -> DeviceBuffer:
        ptr = _check(self.rt.cudaMalloc(max(1, nbytes)))
        self._dev.append(ptr)
        return DeviceBuffer(int(ptr), nbytes, ptr)

    def host(self, shape, dtype) -> np.ndarray:
        import ctypes

        n = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        ptr = int(_check(self.rt.cudaMallocHost(max(1, n))))
        self._pinned.append(ptr)
        raw = (ctypes.c_uint8 * max(1, n)).from_address(ptr)
        return np.frombuffer(raw, dtype=np.uint8, count=n).view(dtype).reshape(shape)

    def h2d(self, buf: DeviceBuffer, array: np.ndarray) -> None:
        a = np.ascontiguousarray(array)
        _check(self.rt.cudaMemcpyAsync(buf.ptr, a.ctypes.data, a.nbytes,
                                       self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream))

    def d2h(self, array: np.ndarray, buf: DeviceBuffer) -> None:
        _check(self.rt.cudaMemcpyAsync(array.ctypes.data, buf.ptr, array.nbytes,
                                       self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self._stream))

    def mem_used_mb(self) -> float | None:
        free, total = _check(self.rt.cudaMemGetInfo())
        return (total - free) / 2**20

    def close(self) -> None:
        rt = self.rt
        rt.cudaStreamSynchronize(self._stream)
        for p in self._dev:
            rt.cudaFree(p)
        for p in self._pinned:
            rt.cudaFreeHost(p)
        self._dev.clear()
        self._pinned.clear()
        rt.cudaStreamDestroy(self._stream)


def select_backend():
    """A device backend for the TensorRT runner: torch's CUDA when torch sees a GPU, else
    cuda-python; Unavailable (with the reasons) when neither can reach a GPU."""
    reasons = []
    try:
        import torch

        if torch.cuda.is_available():
            return TorchCudaBackend()
        reasons.append(f"torch {torch.__version__} sees no CUDA device")
    except ImportError:
        reasons.append("torch is not installed")
    try:
        return CudaPythonBackend()
    except Unavailable as e:
        reasons.append(str(e))
    raise Unavailable("; ".join(reasons))
