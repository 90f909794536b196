"""Model-level quantization through the runtimes, and an honest comparison of the results.

Weight-only quantization (mfparse.quantize) shrinks files; running a model in int8 is the
runtimes' job. This module drives their own tools and measures what they give:

* ONNX Runtime: `quantize_dynamic` (int8 weights, activations quantized on the fly) and
  `quantize_static` in QDQ format (int8 weights and activations, calibrated on random inputs or
  on a given .npz, with MinMax, Entropy or Percentile calibration), per channel by default;
  Entropy calibration runs ONNX Runtime's own entropy calibrator with 2048 histogram bins (its
  default of 128 bins for 128 quantized bins leaves one candidate threshold, the whole range, so
  "entropy" would silently be MinMax) and hands the ranges it finds to quantize_static;
* PyTorch: dynamic quantization of Linear and LSTM layers (`torch.ao.quantization.
  quantize_dynamic`, int8 weights; deprecated in recent torch in favour of torchao but still the
  API torch ships).

int8 is exact on some CPUs and not on others: ONNX Runtime's u8s8 kernels (uint8 activations
times int8 weights) on x86-64 CPUs without VNNI (AVX2-only, or AVX-512 without VNNI) use
vpmaddubsw, which adds two u8*s8 products into an int16 with saturation: 2 * 255 * 127 = 64770
does not fit in 32767, so outputs go wrong (cosine 0.989 instead of 0.99996 on the test MLP).
VNNI (vpdpbusd), AMX and ARM64's NEON kernels sum in int32 and are exact. `int8_cpu()` reads
the CPU; on one whose kernel saturates, weights are quantized with reduce_range (7-bit,
|q| <= 64, so 2 * 255 * 64 = 32640 fits), as ONNX Runtime recommends there. Every int8 row
says which was used (`reduce_range`, `int8_cpu`).

`compare_quantization()` runs the original and each quantized variant on the same seeded
inputs, with the same fixed thread count, warm-up runs excluded, and reports per variant: file
size, output error against the same runtime's float model (max abs, mean abs, cosine) and
latency statistics (ms) with the speed-up. It is the function `mfparse bench` calls for its
int8 rows:

    compare_quantization(model, inputs, *, workdir, runtimes=("onnxruntime", "torch"),
                         onnx_modes=("dynamic", "static"), calibration=None,
                         methods=("minmax",), per_channel=True, reduce_range=None, threads=1,
                         warmup=10, iterations=100, seed=0) -> list[dict]

    model:   a torch.nn.Module (exported to ONNX for the ONNX Runtime rows) or an .onnx path
    inputs:  {input name: np.ndarray} or one np.ndarray (a batch), the measured inputs
    returns: one dict per variant, keys:
        runtime ("onnxruntime" | "torch"), precision ("fp32" | "int8"),
        method ("fp32" | "dynamic" | "static-qdq-minmax" | ...), available (bool),
        reason (when unavailable), path (ONNX file, when there is one), size_bytes,
        max_abs_diff, mean_abs_diff, cosine (against the runtime's fp32 output),
        latency_ms {min, mean, p50, p90, p95, p99, max, stdev}, speedup (fp32 p50 / p50),
        threads, warmup, iterations; ONNX Runtime int8 rows also reduce_range (bool: 7-bit
        weights), int8_cpu (the kernel facts that chose it) and, for static rows, calibration
        (method and histogram settings)
    reduce_range: None chooses by the CPU (int8_cpu()), True/False forces it

Everything heavy (torch, onnx, onnxruntime) is imported inside the functions.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
import warnings

import numpy as np

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


# ---- measuring ----------------------------------------------------------------------------------

def latency_stats(times_s: list[float]) -> dict:
    """min/mean/p50/p90/p95/p99/max/stdev in milliseconds."""
    ms = np.asarray(times_s, np.float64) * 1000.0
    if ms.size == 0:
        return {}
    return {"min": float(ms.min()), "mean": float(ms.mean()), "p50": float(np.percentile(ms, 50)),
            "p90": float(np.percentile(ms, 90)), "p95": float(np.percentile(ms, 95)),
            "p99": float(np.percentile(ms, 99)), "max": float(ms.max()),
            "stdev": float(statistics.stdev(ms)) if ms.size > 1 else 0.0}


def output_error(ref: np.ndarray, got: np.ndarray) -> dict:
    """max abs, mean abs difference and cosine similarity of two outputs."""
    a = np.asarray(ref, np.float64).reshape(-1)
    b = np.asarray(got, np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"outputs differ in size: {a.size} vs {b.size}")
    d = np.abs(a - b)
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    cos = float(a @ b / (na * nb)) if na > 0 and nb > 0 else (1.0 if na == nb else 0.0)
    return {"max_abs_diff": float(d.max()) if d.size else 0.0, "mean_abs_diff": float(d.mean()) if d.size else 0.0,
            "cosine": cos}


def _time(run, warmup: int, iterations: int) -> tuple[list[float], object]:
    out = None
    for _ in range(warmup):
        out = run()
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t0)
    return times, out


@contextlib.contextmanager
def torch_threads(n: int):
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# ---- the CPU's int8 kernels ---------------------------------------------------------------------

_X86 = ("x86_64", "amd64", "x86", "i386", "i686")
_ARM64 = ("aarch64", "arm64", "armv8l")


def cpu_flags() -> set[str] | None:
    """This CPU's feature flags as Linux names them (avx2, avx512bw, avx512_vnni, avx_vnni,
    amx_int8, ...): /proc/cpuinfo's "flags" line, else what numpy's CPU dispatcher detected
    (cpuid on any OS), else None."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return set(value.split())
    except OSError:
        pass
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as feats
    except ImportError:
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as feats
        except ImportError:
            return None
    names = {"AVX2": "avx2", "AVX512BW": "avx512bw", "AVX512VNNI": "avx512_vnni", "AVXVNNI": "avx_vnni",
             "AVX_VNNI": "avx_vnni"}
    return {names[k] for k, v in feats.items() if v and k in names}


def int8_cpu(machine: str | None = None, flags=None) -> dict:
    """What ONNX Runtime's int8 matrix kernels do on this CPU, or on the one described by
    `machine` (platform.machine()) and `flags` (cpu_flags()).

    Returns {"arch", "vnni", "u8s8_saturates", "reduce_range", "kernel"}: reduce_range is the
    setting mfparse quantizes with there (True exactly where the u8s8 kernel saturates).

    x86-64: MLAS picks its u8s8 GEMM kernel by cpuid. With AVX-VNNI, AVX512-VNNI or AMX the
    products are summed in int32 (vpdpbusd, tdpbusd): exact. Otherwise (AVX2, AVX-512 without
    VNNI, and the SSE4.1 kernel) vpmaddubsw/pmaddubsw adds each pair of u8*s8 products into an
    int16 with saturation, which 8-bit weights overflow (2*255*127 > 32767) and 7-bit weights
    (reduce_range: |q| <= 64, 2*255*64 = 32640) cannot. Unknown x86 flags count as no VNNI.
    ARM64: NEON kernels widen before they add (smull/sadalp, sdot/udot, i8mm): exact.
    """
    import platform

    m = (machine if machine is not None else platform.machine()).lower()
    if machine is None and flags is None:
        flags = cpu_flags()
    if m in _ARM64:
        return {"arch": "arm64", "vnni": None, "u8s8_saturates": False, "reduce_range": False,
                "kernel": "ARM64 NEON int8 kernels sum in int32: exact"}
    if m not in _X86:
        return {"arch": m, "vnni": None, "u8s8_saturates": False, "reduce_range": False,
                "kernel": f"{m}: no saturating int8 kernel known"}
    if flags is None:
        return {"arch": "x86_64", "vnni": None, "u8s8_saturates": True, "reduce_range": True,
                "kernel": "x86-64 with unknown features, taken as without VNNI: u8s8 pairs may saturate at int16"}
    flags = set(flags)
    vnni = [f for f in ("amx_int8", "avx512_vnni", "avx_vnni") if f in flags]
    if vnni:
        return {"arch": "x86_64", "vnni": True, "u8s8_saturates": False, "reduce_range": False,
                "kernel": f"x86-64 with {vnni[0]}: u8s8 products summed in int32, exact"}
    simd = "AVX-512" if "avx512bw" in flags else "AVX2" if "avx2" in flags else "SSE"
    return {"arch": "x86_64", "vnni": False, "u8s8_saturates": True, "reduce_range": True,
            "kernel": f"x86-64 {simd} without VNNI: u8s8 pairs summed into int16 with saturation"}


# ---- ONNX Runtime ---------------------------------------------------------------------------------

def ort_session(path, threads: int = 1):
    """A CPU session with a fixed thread count and no spinning (so it does not steal cores
    from whatever is measured next)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3
    return ort.InferenceSession(os.fspath(path), so, providers=["CPUExecutionProvider"])


def _input_feed(session, inputs) -> dict:
    names = [i.name for i in session.get_inputs()]
    if isinstance(inputs, dict):
        return {k: np.asarray(v) for k, v in inputs.items()}
    if len(names) != 1:
        raise ValueError(f"the model has {len(names)} inputs ({', '.join(names)}): pass a dict")
    return {names[0]: np.asarray(inputs)}


class _Calibration:
    """onnxruntime CalibrationDataReader over random inputs or a .npz of samples."""

    def __init__(self, model_path, calibration, num_samples: int, seed: int, like: dict):
        import onnxruntime as ort

        sess = ort.InferenceSession(os.fspath(model_path), providers=["CPUExecutionProvider"])
        self.samples = []
        if calibration is not None:
            with np.load(os.fspath(calibration), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            names = [i.name for i in sess.get_inputs()]
            missing = [n for n in names if n not in arrays]
            if missing:
                raise ValueError(f"calibration file lacks input(s) {', '.join(missing)}")
            count = min(len(arrays[n]) for n in names)
            for i in range(count):  # first dimension = samples, each sample one model input
                self.samples.append({n: np.ascontiguousarray(arrays[n][i]) for n in names})
        else:
            rng = np.random.default_rng(seed)
            for _ in range(num_samples):
                self.samples.append({k: _random_like(v, rng) for k, v in like.items()})
        self._it = iter(self.samples)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        self._it = iter(self.samples)


def _random_like(v: np.ndarray, rng) -> np.ndarray:
    if v.dtype.kind == "f":
        return rng.standard_normal(v.shape).astype(v.dtype)
    if v.dtype.kind in "iu":
        hi = int(max(1, v.max() + 1)) if v.size else 2
        return rng.integers(0, hi, v.shape).astype(v.dtype)
    return v.copy()


def _preprocess(src: str, dst: str) -> str:
    """onnxruntime's recommended pre-processing (shape inference, graph optimisation), when it
    works for the model; else the model as it is."""
    try:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        quant_pre_process(src, dst, skip_symbolic_shape=True)
        return dst
    except Exception:
        return src


# ONNX Runtime's entropy calibrator defaults to 128 histogram bins and 128 quantized bins: its search
# over thresholds then has a single candidate, the whole histogram, i.e. the MinMax range. These are
# the settings that make it search (2048 bins as its percentile calibrator and torch's histogram
# observer use; 256 quantized bins, one per int8 level, since its histogram spans both signs).
ENTROPY_BINS = {"num_bins": 2048, "num_quantized_bins": 256}


def calibration_settings(method: str) -> dict:
    """The calibration as mfparse runs it: {"method", and the calibrator's settings}."""
    if method == "entropy":
        return {"method": "entropy", **ENTROPY_BINS}
    if method == "percentile":
        return {"method": "percentile", "num_bins": 2048, "percentile": 99.999}  # onnxruntime's defaults
    return {"method": method}


def _entropy_overrides(model_path: str, reader) -> dict:
    """Activation ranges from onnxruntime's entropy calibrator run with ENTROPY_BINS, as
    TensorQuantOverrides (rmin/rmax) for quantize_static, which cannot pass these settings on."""
    import tempfile

    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    with tempfile.TemporaryDirectory(prefix="mfparse-entropy-") as tmp:
        cal = create_calibrator(model_path, None, augmented_model_path=os.path.join(tmp, "augmented.onnx"),
                                calibrate_method=CalibrationMethod.Entropy, extra_options=dict(ENTROPY_BINS))
        cal.collect_data(reader)
        ranges = cal.compute_data()
        del cal
    reader.rewind()
    overrides = {}
    for name, td in ranges.data.items():
        lo, hi = (np.asarray(v, np.float32) for v in td.range_value)
        overrides[name] = [{"rmin": lo, "rmax": hi}]
    return overrides


def quantize_onnx(model_path, out_path, mode: str = "dynamic", *, per_channel: bool = True, calibration=None,
                  method: str = "minmax", num_samples: int = 16, example_inputs=None, seed: int = 0,
                  reduce_range: bool | None = None) -> str:
    """Quantize an ONNX model with onnxruntime.quantization.

    Args:
        model_path: the float model.
        out_path: where the quantized model goes.
        mode: "dynamic" (int8 weights) or "static" (QDQ int8 weights and activations).
        per_channel: per-channel weight scales.
        calibration: a .npz of calibration samples (arrays named like the inputs, first
            dimension = samples) for static mode; default random inputs shaped like example_inputs.
        method: "minmax", "entropy" or "percentile" (static mode).
        num_samples: random calibration samples.
        example_inputs: {name: array} giving shapes and dtypes for random calibration.
        reduce_range: 7-bit weights; None chooses by this CPU (int8_cpu()["reduce_range"]: True
            on x86-64 without VNNI, where 8-bit weights saturate ONNX Runtime's u8s8 kernels).

    Returns:
        out_path.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, \
        quantize_static

    model_path, out_path = os.fspath(model_path), os.fspath(out_path)
    if reduce_range is None:
        reduce_range = int8_cpu()["reduce_range"]
    pre = _preprocess(model_path, out_path + ".pre.onnx")
    try:
        if mode == "dynamic":
            quantize_dynamic(pre, out_path, per_channel=per_channel, reduce_range=bool(reduce_range),
                             weight_type=QuantType.QInt8)
        elif mode == "static":
            methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                       "percentile": CalibrationMethod.Percentile}
            if method not in methods:
                raise ValueError(f"calibration method must be one of {', '.join(methods)}")
            if example_inputs is None and calibration is None:
                raise ValueError("static quantization needs example_inputs or a calibration .npz")
            like = {}
            if example_inputs is not None:
                sess = ort_session(model_path)
                like = _input_feed(sess, example_inputs)
            reader = _Calibration(model_path, calibration, num_samples, seed, like)
            import io

            with contextlib.redirect_stdout(io.StringIO()):  # the calibrators print their progress
                extra = {}
                calibrate = methods[method]
                if method == "entropy":
                    # ranges from the entropy calibrator with bins that let it search; quantize_static's
                    # own pass (MinMax, cheap) only lists the tensors, the overrides set their ranges
                    extra["TensorQuantOverrides"] = _entropy_overrides(pre, reader)
                    calibrate = CalibrationMethod.MinMax
                quantize_static(pre, out_path, reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
                                reduce_range=bool(reduce_range), activation_type=QuantType.QInt8,
                                weight_type=QuantType.QInt8, calibrate_method=calibrate, extra_options=extra)
        else:
            raise ValueError("mode must be 'dynamic' or 'static'")
    finally:
        if pre != model_path:
            with contextlib.suppress(OSError):
                os.unlink(pre)
    return out_path


# ---- PyTorch ----------------------------------------------------------------------------------------

def quantize_torch_dynamic(model, modules=None):
    """Dynamic int8 quantization of a module's Linear and LSTM layers (a new module)."""
    import torch

    modules = modules or {torch.nn.Linear, torch.nn.LSTM}
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, which is not a dependency
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return torch.ao.quantization.quantize_dynamic(model, set(modules), dtype=torch.qint8)


def torch_size_bytes(model) -> int:
    """Bytes of the module's state dict as torch.save writes it."""
    import io

    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        torch.save(model.state_dict(), buf)
    return buf.tell()


def export_onnx(model, inputs: dict, path) -> str:
    """Export a module to ONNX with the TorchScript-based exporter (no onnxscript needed)."""
    import torch

    names = list(inputs)
    args = tuple(torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in names)
    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated and chatty (tracer warnings); its output is checked
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, os.fspath(path), input_names=names, output_names=["output"],
                          dynamo=False, opset_version=17)
    return os.fspath(path)


def _file_size(path) -> int:
    """An ONNX model's size, its external data files included."""
    total = os.path.getsize(path)
    try:
        import onnx
        from onnx import external_data_helper

        m = onnx.load(os.fspath(path), load_external_data=False)
        locs = set()
        for t in m.graph.initializer:
            if external_data_helper.uses_external_data(t):
                locs |= {e.value for e in t.external_data if e.key == "location"}
        total += sum(os.path.getsize(os.path.join(os.path.dirname(os.fspath(path)), loc)) for loc in locs)
    except Exception:
        pass
    return total


# ---- the comparison ---------------------------------------------------------------------------------

def _row(runtime, precision, method, **kw) -> dict:
    row = {"runtime": runtime, "precision": precision, "method": method, "available": True}
    row.update(kw)
    return row


def _unavailable(runtime, precision, method, reason) -> dict:
    return {"runtime": runtime, "precision": precision, "method": method, "available": False, "reason": reason}


def compare_quantization(model, inputs, *, workdir, runtimes=("onnxruntime", "torch"),
                         onnx_modes=("dynamic", "static"), calibration=None, methods=("minmax",),
                         per_channel: bool = True, reduce_range: bool | None = None, threads: int = 1,
                         warmup: int = 10, iterations: int = 100, seed: int = 0) -> list[dict]:
    """Original vs runtime-quantized model: size, output error and latency (module docstring)."""
    os.makedirs(os.fspath(workdir), exist_ok=True)
    is_torch = not isinstance(model, (str, os.PathLike))
    if isinstance(inputs, np.ndarray):
        inputs = {"input": inputs}
    rows: list[dict] = []
    common = {"threads": threads, "warmup": warmup, "iterations": iterations}

    if "onnxruntime" in runtimes:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            rows.append(_unavailable("onnxruntime", "int8", "*", "onnxruntime is not installed"))
        else:
            if is_torch:
                onnx_path = export_onnx(model, inputs, os.path.join(os.fspath(workdir), "model.fp32.onnx"))
            else:
                onnx_path = os.fspath(model)
            base = ort_session(onnx_path, threads)
            feed = _input_feed(base, inputs) if not is_torch else inputs
            feed = {k: np.asarray(v) for k, v in feed.items()}
            times, ref = _time(lambda: base.run(None, feed)[0], warmup, iterations)
            fp32 = latency_stats(times)
            rows.append(_row("onnxruntime", "fp32", "fp32", path=onnx_path, size_bytes=_file_size(onnx_path),
                             **output_error(ref, ref), latency_ms=fp32, speedup=1.0, **common))
            variants = []
            if "dynamic" in onnx_modes:
                variants.append(("dynamic", None))
            if "static" in onnx_modes:
                variants += [(f"static-qdq-{m}", m) for m in methods]
            cpu = int8_cpu()
            rr = cpu["reduce_range"] if reduce_range is None else bool(reduce_range)
            int8_keys = {"reduce_range": rr, "int8_cpu": cpu["kernel"]}
            for name, method in variants:
                out = os.path.join(os.fspath(workdir), f"model.{name}.onnx")
                keys = dict(int8_keys)
                if method is not None:
                    keys["calibration"] = calibration_settings(method)
                try:
                    quantize_onnx(onnx_path, out, "dynamic" if method is None else "static",
                                  per_channel=per_channel, calibration=calibration, method=method or "minmax",
                                  example_inputs=feed, seed=seed, reduce_range=rr)
                    sess = ort_session(out, threads)
                    times, got = _time(lambda: sess.run(None, feed)[0], warmup, iterations)
                except Exception as e:  # a model the quantizer or runtime cannot handle
                    rows.append(_unavailable("onnxruntime", "int8", name, f"{type(e).__name__}: {e}"))
                    continue
                lat = latency_stats(times)
                rows.append(_row("onnxruntime", "int8", name, path=out, size_bytes=_file_size(out),
                                 **output_error(ref, got), latency_ms=lat, speedup=fp32["p50"] / lat["p50"],
                                 **keys, **common))

    if "torch" in runtimes:
        if not is_torch:
            rows.append(_unavailable("torch", "int8", "dynamic", "the model is an ONNX file, not a torch module"))
        else:
            import torch

            args = tuple(torch.from_numpy(np.ascontiguousarray(v)) for v in inputs.values())
            model.eval()
            with torch_threads(threads), torch.inference_mode():
                times, ref = _time(lambda: model(*args), warmup, iterations)
                fp32 = latency_stats(times)
                ref = ref.numpy()
                rows.append(_row("torch", "fp32", "fp32", size_bytes=torch_size_bytes(model), **output_error(ref, ref),
                                 latency_ms=fp32, speedup=1.0, **common))
                engines = torch.backends.quantized.supported_engines
                if not any(e in engines for e in ("fbgemm", "x86", "qnnpack")):
                    rows.append(_unavailable("torch", "int8", "dynamic", f"no quantized engine ({engines})"))
                else:
                    qmodel = quantize_torch_dynamic(model)
                    times, got = _time(lambda: qmodel(*args), warmup, iterations)
                    lat = latency_stats(times)
                    rows.append(_row("torch", "int8", "dynamic", size_bytes=torch_size_bytes(qmodel),
                                     **output_error(ref, got.numpy()), latency_ms=lat,
                                     speedup=fp32["p50"] / lat["p50"], **common))
    return rows


def table(rows: list[dict]) -> str:
    """The comparison as a text table."""
    from mfparse.inspect import human_bytes

    head = ["runtime", "method", "size", "max abs", "cosine", "p50 ms", "speed-up"]
    lines = []
    for r in rows:
        if not r.get("available"):
            lines.append([r["runtime"], r["method"], "-", "-", "-", "-", f"unavailable: {r.get('reason', '')}"])
            continue
        method = r["method"] + (" (7-bit weights)" if r.get("reduce_range") else "")
        lines.append([r["runtime"], method, human_bytes(r["size_bytes"]), f"{r['max_abs_diff']:.3g}",
                      f"{r['cosine']:.6f}", f"{r['latency_ms']['p50']:.3f}", f"{r['speedup']:.2f}x"])
    widths = [max(len(h), *(len(x[i]) for x in lines)) if lines else len(h) for i, h in enumerate(head)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(head), fmt(["-" * w for w in widths])] + [fmt(x) for x in lines])
