"""`mfparse quantize SRC -o DST --scheme int8|int4|fp8`: weight-only quantization to
safetensors, with optional L1 magnitude pruning first, and `mfparse.dequantize`.

Schemes (the hot loops are C, csrc/mf_quant.c; `reference_*` below is the same scheme in plain
numpy, bit-identical, used by the tests and the benchmark):

* int8: symmetric, one scale per output channel (first dimension):
  scale = max|w[o]| / 127, q = clamp(rint(w / scale), -127, 127); `<name>` int8 with the
  weight's shape, `<name>.scale` float32 shaped (out, 1, ..., 1) so q * scale broadcasts.
* int4: asymmetric, groups of `group_size` (default 128) consecutive elements of a row (the
  weight flattened to (out, rest)): scale = (max(0, hi) - min(0, lo)) / 15,
  zero_point = rint(-min(0, lo) / scale), q = clamp(rint(w / scale) + zero_point, 0, 15);
  `<name>` uint8 (out, ceil(rest / 2)) with two codes per byte (even element in the low
  nibble), `<name>.scale` float32 and `<name>.zero_point` uint8, both (out, groups).
* fp8: float8 e4m3fn with one scale per tensor: scale = max|w| / 448; `<name>` float8_e4m3fn,
  `<name>.scale` a float32 scalar.

Only weights with 2 or more dimensions and a float dtype (float16, bfloat16, float32,
float64) whose names pass --include/--exclude are quantized; everything else is copied
unchanged (weights holding NaN or infinity too, reported). The output's `__metadata__` keeps
the source's metadata and adds `quantization_scheme` and `mfparse.quantization` (JSON: scheme,
group size, and per tensor its original dtype and shape and its companion tensors), which is
what `dequantize()` reads.

Pruning (--prune FRACTION, --prune-mode global|layer): zero the FRACTION of the selected
weights with the smallest magnitude, over all of them at once (global) or per tensor, before
quantizing. The threshold is found exactly from two histogram passes over the float32 bit
patterns of |w| (which order like the magnitudes); ties at the threshold are all kept or all
pruned, whichever is nearer the target, so the reached sparsity is reported.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from mfparse import dtypes
from mfparse.writers import base, state
from mfparse.writers.base import Item, WriteError

SCHEMES = ("int8", "int4", "fp8", "none")
FLOAT_INPUTS = ("float16", "bfloat16", "float32", "float64")
META_KEY = "mfparse.quantization"
SCHEME_KEY = "quantization_scheme"
FP8_MAX = 448.0


def default_threads() -> int:
    return max(1, os.cpu_count() or 1)


# ---- plain numpy reference implementations ------------------------------------------------------

def _as_rows(w: np.ndarray) -> np.ndarray:
    x = np.asarray(w)
    rows = x.shape[0] if x.ndim else 1
    return x.astype(np.float32).reshape(rows, -1)


def reference_int8(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 per row in plain numpy: (q shaped like w, scale per row)."""
    x = _as_rows(w)
    amax = np.abs(x).max(axis=1) if x.size else np.zeros(x.shape[0], np.float32)
    scale = (amax / np.float32(127)).astype(np.float32)
    safe = np.where(amax > 0, amax, np.float32(1))
    inv = np.where(amax > 0, np.float32(127) / safe, np.float32(0)).astype(np.float32)
    q = np.clip(np.rint(x * inv[:, None]), -127, 127).astype(np.int8)
    return q.reshape(np.shape(w)), scale


def reference_int4(w: np.ndarray, group: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """int4 per group in plain numpy: (packed codes (rows, ceil(cols/2)), scale, zero_point)."""
    x = _as_rows(w)
    rows, cols = x.shape
    ngroups = -(-cols // group)
    pad = np.zeros((rows, ngroups * group), np.float32)
    pad[:, :cols] = x
    g = pad.reshape(rows, ngroups, group)
    lo = np.minimum(g.min(axis=2), np.float32(0))
    hi = np.maximum(g.max(axis=2), np.float32(0))
    scale = ((hi - lo) / np.float32(15)).astype(np.float32)
    inv = np.where(scale > 0, np.float32(1) / np.where(scale > 0, scale, np.float32(1)), np.float32(0))
    inv = inv.astype(np.float32)
    zp = np.clip(np.rint(-lo * inv), 0, 15).astype(np.float32)
    codes = np.clip(np.rint(g * inv[:, :, None]) + zp[:, :, None], 0, 15).astype(np.uint8)
    codes = codes.reshape(rows, -1)[:, :cols]
    if cols % 2:
        codes = np.concatenate([codes, np.zeros((rows, 1), np.uint8)], axis=1)
    packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)
    return packed, scale, zp.astype(np.uint8)


def reference_fp8(w: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """fp8 e4m3fn with one scale in plain numpy (ml_dtypes for the conversion)."""
    import ml_dtypes

    x = np.asarray(w).astype(np.float32)
    amax = np.float32(np.abs(x).max()) if x.size else np.float32(0)
    scale = np.float32(amax / np.float32(FP8_MAX))
    inv = np.float32(1) / scale if scale > 0 else np.float32(0)
    q = np.clip(x * inv, -FP8_MAX, FP8_MAX).astype(ml_dtypes.float8_e4m3fn)
    return q, scale


def reference_dequant_int4(packed: np.ndarray, scale: np.ndarray, zp: np.ndarray, cols: int,
                           group: int) -> np.ndarray:
    rows = packed.shape[0]
    codes = np.empty((rows, packed.shape[1] * 2), np.uint8)
    codes[:, 0::2] = packed & 15
    codes[:, 1::2] = packed >> 4
    codes = codes[:, :cols].astype(np.float32)
    gi = np.arange(cols) // group
    return (codes - zp[:, gi].astype(np.float32)) * scale[:, gi]


# ---- kernels ------------------------------------------------------------------------------------

def _raw(a: np.ndarray) -> tuple[np.ndarray, int]:
    """(contiguous native-order array, its C dtype code) for a float array."""
    name = base.canonical_dtype(a.dtype.newbyteorder("=") if a.dtype.byteorder == ">" else a.dtype)
    if name not in FLOAT_INPUTS:
        raise WriteError(f"cannot quantize dtype {name}")
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("="))
    a = np.ascontiguousarray(a)
    return a, dtypes.code(name)


def _bytes(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1).view(np.uint8)


@dataclass
class Quantized:
    """One quantized tensor: the arrays to store and what the pass measured."""

    q: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray | None
    stats: dict


def quantize_array(w: np.ndarray, scheme: str, group_size: int = 128, prune: tuple = (0, False),
                   threads: int | None = None) -> Quantized:
    """Quantize one weight with the C kernels.

    Args:
        w: float16/bfloat16/float32/float64 array, at least 2-D for int8/int4.
        scheme: "int8", "int4" or "fp8".
        group_size: int4 group length.
        prune: (key, inclusive) from prune_threshold(); (0, False) prunes nothing.
        threads: kernel threads (default: all cores).
    """
    from mfparse import _native

    threads = threads or default_threads()
    a, code = _raw(np.asarray(w))
    pk, le = int(prune[0]), bool(prune[1])
    shape = a.shape
    rows = shape[0] if a.ndim else 1
    cols = a.size // rows if rows else 0
    if scheme == "int8":
        q = np.empty(shape, np.int8)
        scale = np.empty(rows, np.float32)
        st = _native.quant_int8(_bytes(a), code, rows, cols, q.reshape(-1), scale, pk, le, threads)
        return Quantized(q, scale.reshape((rows,) + (1,) * (len(shape) - 1)), None, st)
    if scheme == "int4":
        if group_size < 1:
            raise WriteError("group size must be at least 1")
        ngroups = -(-cols // group_size)
        q = np.empty((rows, (cols + 1) // 2), np.uint8)
        scale = np.empty((rows, ngroups), np.float32)
        zp = np.empty((rows, ngroups), np.uint8)
        st = _native.quant_int4(_bytes(a), code, rows, cols, group_size, q.reshape(-1), scale.reshape(-1),
                                zp.reshape(-1), pk, le, threads)
        return Quantized(q, scale, zp, st)
    if scheme == "fp8":
        import ml_dtypes

        amax, nonfinite = _native.absmax(_bytes(a), code, pk, le, threads)
        scale = np.float32(np.float32(amax) / np.float32(FP8_MAX))
        q = np.empty(shape, np.uint8)
        st = _native.quant_fp8(_bytes(a), code, float(scale), q.reshape(-1), pk, le, threads)
        return Quantized(q.view(ml_dtypes.float8_e4m3fn), np.array(scale, np.float32), None, st)
    raise WriteError(f"unknown scheme {scheme!r}; known: int8, int4, fp8")


def dequantize_arrays(scheme: str, q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None,
                      shape, group_size: int = 128, threads: int | None = None) -> np.ndarray:
    """float32 values of a quantized tensor, shaped `shape`."""
    from mfparse import _native

    threads = threads or default_threads()
    shape = tuple(int(d) for d in shape)
    n = 1
    for d in shape:
        n *= d
    out = np.empty(n, np.float32)
    rows = shape[0] if shape else 1
    cols = n // rows if rows else 0
    if scheme == "int8":
        _native.dequant_int8(np.ascontiguousarray(q, np.int8).reshape(-1),
                             np.ascontiguousarray(scale, np.float32).reshape(-1), rows, cols, out, threads)
    elif scheme == "int4":
        _native.dequant_int4(np.ascontiguousarray(q, np.uint8).reshape(-1),
                             np.ascontiguousarray(scale, np.float32).reshape(-1),
                             np.ascontiguousarray(zero_point, np.uint8).reshape(-1), rows, cols, group_size, out,
                             threads)
    elif scheme == "fp8":
        _native.dequant_fp8(np.ascontiguousarray(q).reshape(-1).view(np.uint8),
                            float(np.asarray(scale, np.float32).reshape(-1)[0]), out, threads)
    else:
        raise WriteError(f"unknown scheme {scheme!r}")
    return out.reshape(shape)


# ---- pruning thresholds -------------------------------------------------------------------------

def magnitude_threshold(arrays, fraction: float, threads: int | None = None) -> tuple[int, bool, int, int]:
    """The magnitude key that prunes `fraction` of the elements of all `arrays` together.

    Returns (key, inclusive, pruned count, total count): zero |x| whose float32 bit pattern is
    below key (or equal, when inclusive).
    """
    from mfparse import _native

    threads = threads or default_threads()
    arrays = [_raw(np.asarray(a)) for a in arrays]
    total = sum(a.size for a, _ in arrays)
    k = int(round(min(max(fraction, 0.0), 1.0) * total))
    if k <= 0 or total == 0:
        return 0, False, 0, total
    hist = np.zeros(65536, np.uint64)
    for a, code in arrays:
        _native.abs_hist(_bytes(a), code, hist, 0, 0, threads)
    cum = np.cumsum(hist, dtype=np.uint64)
    hi = int(np.searchsorted(cum, k))            # bin holding the k-th smallest key
    below_bin = int(cum[hi - 1]) if hi else 0
    fine = np.zeros(65536, np.uint64)
    for a, code in arrays:
        _native.abs_hist(_bytes(a), code, fine, 1, hi, threads)
    fcum = np.cumsum(fine, dtype=np.uint64)
    lo = int(np.searchsorted(fcum, k - below_bin))
    key = (hi << 16) | lo
    n_lt = below_bin + (int(fcum[lo - 1]) if lo else 0)
    n_le = below_bin + int(fcum[lo])
    if abs(n_le - k) < abs(k - n_lt):
        return key, True, n_le, total
    return key, False, n_lt, total


def prune_array(a: np.ndarray, key: int, inclusive: bool) -> np.ndarray:
    """A copy of a with the elements below the magnitude key zeroed (numpy; scheme "none")."""
    x = np.array(a, copy=True)
    if key == 0 and not inclusive:
        return x
    mag = np.abs(x.astype(np.float32)).view(np.uint32)
    mask = mag < key
    if inclusive:
        mask |= mag == key
    x[mask] = 0
    return x


# ---- the file-level command ---------------------------------------------------------------------

@dataclass
class TensorReport:
    name: str
    shape: tuple
    dtype: str
    action: str                 # "int8", "int4", "fp8", "pruned", "copied", "skipped"
    bytes_before: int
    bytes_after: int
    sqnr_db: float | None = None
    max_abs_err: float | None = None
    zeros: float | None = None  # fraction of zero weights after pruning
    note: str | None = None

    def to_dict(self) -> dict:
        d = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "action": self.action,
             "bytes_before": self.bytes_before, "bytes_after": self.bytes_after}
        for k in ("sqnr_db", "max_abs_err", "zeros", "note"):
            v = getattr(self, k)
            if v is not None:
                d[k] = None if isinstance(v, float) and math.isinf(v) else v
        return d


@dataclass
class QuantizeReport:
    src: str
    dst: str
    scheme: str
    group_size: int | None
    tensors: list = field(default_factory=list)
    prune: dict | None = None
    bytes_before: int = 0           # source file size
    bytes_after: int = 0            # output file size
    seconds: float = 0.0
    kernel_seconds: float = 0.0

    def totals(self) -> dict:
        q = [t for t in self.tensors if t.action in ("int8", "int4", "fp8", "pruned")]
        wb = sum(t.bytes_before for t in q)
        wa = sum(t.bytes_after for t in q)
        return {"quantized_tensors": len(q), "weights_bytes_before": wb, "weights_bytes_after": wa,
                "file_ratio": (self.bytes_after / self.bytes_before) if self.bytes_before else None}

    def to_dict(self) -> dict:
        return {"src": self.src, "dst": self.dst, "scheme": self.scheme, "group_size": self.group_size,
                "bytes_before": self.bytes_before, "bytes_after": self.bytes_after,
                "seconds": round(self.seconds, 4), "kernel_seconds": round(self.kernel_seconds, 4),
                "prune": self.prune, "totals": self.totals(), "tensors": [t.to_dict() for t in self.tensors]}

    def table(self) -> str:
        """The per-tensor report as a text table."""
        from mfparse.inspect import human_bytes

        head = ["name", "shape", "dtype", "action", "SQNR dB", "max abs err", "zeros", "before", "after"]
        rows = []
        for t in self.tensors:
            sq = "-" if t.sqnr_db is None else ("inf" if math.isinf(t.sqnr_db) else f"{t.sqnr_db:.1f}")
            rows.append([t.name, "[" + ", ".join(map(str, t.shape)) + "]", t.dtype, t.action, sq,
                         "-" if t.max_abs_err is None else f"{t.max_abs_err:.3g}",
                         "-" if t.zeros is None else f"{t.zeros * 100:.1f}%",
                         human_bytes(t.bytes_before), human_bytes(t.bytes_after)])
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head)]
        widths[0] = min(widths[0], 56)
        right = {4, 5, 6, 7, 8}

        def fmt(r):
            return "  ".join((c.rjust(w) if i in right else c.ljust(w)) for i, (c, w) in enumerate(zip(r, widths)))

        lines = [fmt(head), "  ".join("-" * w for w in widths)] + [fmt(r).rstrip() for r in rows]
        tot = self.totals()
        lines.append("")
        verb = "pruned" if self.scheme == "none" else "quantized"
        lines.append(f"scheme {self.scheme}" + (f", group {self.group_size}" if self.scheme == "int4" else "")
                     + f": {tot['quantized_tensors']} tensors {verb}, weights "
                     f"{human_bytes(tot['weights_bytes_before'])} -> {human_bytes(tot['weights_bytes_after'])}; "
                     f"file {human_bytes(self.bytes_before)} -> {human_bytes(self.bytes_after)}"
                     + (f" ({tot['file_ratio']:.3f}x)" if tot["file_ratio"] else ""))
        if self.prune:
            lines.append(f"pruning ({self.prune['mode']}): target {self.prune['target'] * 100:.1f}%, reached "
                         f"{self.prune['reached'] * 100:.2f}% of the selected weights")
        return "\n".join(lines)


def _selected(info, include, exclude) -> str | None:
    """None when the tensor is quantized, else why not."""
    if info.dtype not in FLOAT_INPUTS:
        return f"dtype {info.dtype}"
    if len(info.shape) < 2:
        return f"{len(info.shape)}-D"
    if info.numel == 0:
        return "empty"
    if include and not any(fnmatch.fnmatchcase(info.name, g) for g in include):
        return "not included"
    if exclude and any(fnmatch.fnmatchcase(info.name, g) for g in exclude):
        return "excluded"
    return None


def _sqnr(st: dict) -> float:
    if st["err_sq"] <= 0:
        return math.inf
    if st["sum_sq"] <= 0:
        return -math.inf
    return 10.0 * math.log10(st["sum_sq"] / st["err_sq"])


def quantize(src, dst, scheme: str = "int8", *, group_size: int = 128, include=None, exclude=None,
             prune: float = 0.0, prune_mode: str = "global", threads: int | None = None, overwrite: bool = False,
             progress=None, check_space: bool = True, fsync: bool = False) -> QuantizeReport:
    """Quantize the weights of any model file mfparse reads into a safetensors file.

    Args:
        src: input model file.
        dst: output .safetensors path.
        scheme: "int8", "int4", "fp8", or "none" (pruning only).
        group_size: int4 group length.
        include, exclude: lists of fnmatch globs on tensor names.
        prune: fraction of the selected weights to zero first (0 = none).
        prune_mode: "global" (one threshold over all selected weights) or "layer" (per tensor).
        threads: kernel threads (default: all cores).
        overwrite, progress, check_space, fsync: as for mfparse.convert.

    Returns:
        QuantizeReport (per tensor: SQNR dB, max abs error, zeros, bytes before/after).

    Example:
        >>> from mfparse.quantize import quantize
        >>> rep = quantize("model.safetensors", "model.int8.safetensors", "int8")
        >>> print(rep.table())
    """
    import mfparse
    from mfparse.convert import _source_state, safetensors_metadata
    from mfparse.writers import safetensors as st_writer
    from mfparse.writers.items import SourceItems

    if scheme not in SCHEMES:
        raise WriteError(f"unknown scheme {scheme!r}; known: {', '.join(SCHEMES)}")
    if prune_mode not in ("global", "layer"):
        raise WriteError("prune_mode must be 'global' or 'layer'")
    if not 0.0 <= prune < 1.0 + 1e-12:
        raise WriteError("prune must be a fraction between 0 and 1")
    if scheme == "none" and not prune:
        raise WriteError("scheme 'none' only makes sense with pruning")
    threads = threads or default_threads()
    src, dst = os.fspath(src), os.fspath(dst)
    t0 = time.perf_counter()
    report = QuantizeReport(src, dst, scheme, group_size if scheme == "int4" else None)
    with mfparse.open(src) as m, SourceItems(m) as si:
        to_folder = len(m.parts()) > 1 and not dst.lower().endswith(st_writer.EXTENSIONS)
        if not to_folder:
            base.refuse_overwrite(dst, [src], overwrite)
        report.bytes_before = m.size
        infos = list(m.tensors())
        chosen = {}
        reasons = {}
        for info in infos:
            why = _selected(info, include, exclude)
            if why is None:
                chosen[info.name] = info
            else:
                reasons[info.name] = why
        # pruning thresholds
        thresholds: dict[str, tuple[int, bool]] = {}
        if prune:
            if prune_mode == "global":
                key, le, n_pruned, total = magnitude_threshold([m.read(i) for i in chosen.values()], prune, threads)
                thresholds = {n: (key, le) for n in chosen}
            else:
                for n, i in chosen.items():
                    key, le, _, _ = magnitude_threshold([m.read(i)], prune, threads)
                    thresholds[n] = (key, le)
        job = _Job(m, si, scheme, group_size, threads, chosen, reasons, thresholds, {i.name for i in infos}, report)
        if to_folder:
            _quantize_folder(job, infos, dst, overwrite, progress, check_space, fsync)
        else:
            tree, kind = _source_state(m)
            text = state.dumps(tree) if kind == "tree" else (json.dumps(tree) if kind == "encoded" else None)
            meta = safetensors_metadata(m, text)
            bar = base.make_progress(progress, sum(i.nbytes for i in infos), os.path.basename(dst))
            try:
                with base.atomic_output(dst, fsync=fsync) as af:
                    _write_quantized(job, infos, af.file, af.tmp_path, meta, dst if check_space else None, bar)
            finally:
                bar.close()
            report.bytes_after = os.path.getsize(dst)
        if prune:
            sel = [t for t in report.tensors if t.name in chosen and t.zeros is not None]
            total = sum(_numel(t.shape) for t in sel)
            zeros = sum(t.zeros * _numel(t.shape) for t in sel)
            report.prune = {"mode": prune_mode, "target": prune, "reached": zeros / total if total else 0.0}
    report.seconds = time.perf_counter() - t0
    return report


@dataclass
class _Job:
    """What every output file of one quantization shares."""

    m: object
    si: object
    scheme: str
    group_size: int
    threads: int
    chosen: dict
    reasons: dict
    thresholds: dict
    names: set
    report: QuantizeReport


def _write_quantized(job: _Job, infos: list, f, tmp_path: str, meta: dict, space_for, bar) -> list:
    """Write the safetensors file of `infos` (quantized or copied) to the open file f; returns
    (name, bytes) of the tensors written. `meta` gets the quantization keys for these tensors."""
    from mfparse.writers import safetensors as st_writer

    scheme, group_size = job.scheme, job.group_size
    out_items: list[Item] = []
    companions: dict[str, dict] = {}
    for info in infos:
        if info.name in job.chosen:
            spec = _output_spec(info, scheme, group_size)
            for sub_name, dt, shape in spec:
                if sub_name != info.name and sub_name in job.names:
                    raise WriteError(f"cannot add {sub_name!r}: the source already has a tensor of that name")
                out_items.append(Item(sub_name, dt, shape, dtypes.nbytes(dt, _numel(shape))))
            companions[info.name] = {"scheme": scheme if scheme != "none" else "pruned", "dtype": info.dtype,
                                     "shape": list(info.shape)}
            if scheme in ("int8", "int4", "fp8"):
                companions[info.name]["scale"] = info.name + ".scale"
            if scheme == "int4":
                companions[info.name].update(zero_point=info.name + ".zero_point", group_size=group_size, axis=0)
            if scheme == "int8":
                companions[info.name]["axis"] = 0
        else:
            it = job.si.item(info)
            if it is None:
                continue
            if st_writer.unsupported(it):
                raise WriteError(f"tensor {info.name!r}: {st_writer.unsupported(it)}")
            out_items.append(it)
    meta = dict(meta)
    meta[SCHEME_KEY] = scheme
    meta[META_KEY] = json.dumps({"version": 1, "scheme": scheme,
                                 "group_size": group_size if scheme == "int4" else None,
                                 "tensors": companions}, separators=(",", ":"))
    ordered = st_writer.order(out_items)
    header = st_writer.header_bytes(ordered, meta)
    offsets = {}
    pos = len(header)
    for it in ordered:
        offsets[it.name] = pos
        pos += it.nbytes
    if space_for is not None:
        base.check_free_space(space_for, pos)
    by_name = {it.name: it for it in out_items}
    out = base.Output(f, bar)
    out.write(header)
    out.preallocate(pos)
    report = job.report
    for info in infos:
        if info.name in job.chosen:
            rep = _quantize_one(job.m, info, scheme, group_size, job.thresholds.get(info.name, (0, False)),
                                job.threads, out, offsets, report)
            bar.update(info.nbytes)
        elif info.name in offsets:
            out.write_item_at(by_name[info.name], offsets[info.name])
            rep = TensorReport(info.name, tuple(info.shape), info.dtype, "copied", info.nbytes,
                               info.nbytes, note=job.reasons.get(info.name))
        else:
            rep = TensorReport(info.name, tuple(info.shape), info.dtype, "skipped", info.nbytes, 0,
                               note="no data in the file")
        report.tensors.append(rep)
    _check_written(tmp_path, ordered)
    return [(it.name, it.nbytes) for it in ordered]


def _quantize_folder(job: _Job, infos: list, dst: str, overwrite: bool, progress, check_space: bool,
                     fsync: bool) -> None:
    """A source of several files: one quantized safetensors shard per source file, named and
    indexed as transformers names shards (model-0000i-of-0000n.safetensors and
    model.safetensors.index.json), written atomically as a folder. config and tokenizer files
    are not copied: the quantized tensors are mfparse's own layout, not the model class's."""
    from mfparse.writers import folder

    parts = job.m.parts()
    names = folder.shard_names("model", ".safetensors", len(parts))
    by_file: dict = {}
    for info in infos:
        by_file.setdefault(info.file, []).append(info)
    bar = base.make_progress(progress, sum(i.nbytes for i in infos), os.path.basename(os.path.normpath(dst)))
    weight_map: dict = {}
    total = 0
    try:
        with folder.atomic_folder(dst, overwrite) as tmp:
            for name, (_prefix, rel, _pm) in zip(names, parts):
                path = os.path.join(tmp, name)
                with open(path, "xb", buffering=0) as f:
                    written = _write_quantized(job, by_file.get(rel, []), f, path, {"format": "pt"},
                                               path if check_space else None, bar)
                    if fsync:
                        os.fsync(f.fileno())
                weight_map.update((n, name) for n, _size in written)
                total += sum(size for _n, size in written)
            if len(names) > 1:
                with open(os.path.join(tmp, "model.safetensors.index.json"), "xb") as f:
                    f.write(folder.index_bytes(weight_map, total))
    finally:
        bar.close()
    job.report.bytes_after = sum(os.path.getsize(os.path.join(dst, n)) for n in os.listdir(dst))


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _output_spec(info, scheme: str, group: int) -> list[tuple[str, str, tuple]]:
    shape = tuple(info.shape)
    rows = shape[0]
    cols = _numel(shape) // rows if rows else 0
    if scheme == "int8":
        return [(info.name, "int8", shape), (info.name + ".scale", "float32", (rows,) + (1,) * (len(shape) - 1))]
    if scheme == "int4":
        ng = -(-cols // group)
        return [(info.name, "uint8", (rows, (cols + 1) // 2)), (info.name + ".scale", "float32", (rows, ng)),
                (info.name + ".zero_point", "uint8", (rows, ng))]
    if scheme == "fp8":
        return [(info.name, "float8_e4m3fn", shape), (info.name + ".scale", "float32", ())]
    return [(info.name, info.dtype, shape)]  # "none": pruned, same dtype


def _quantize_one(m, info, scheme, group, prune, threads, out, offsets, report) -> TensorReport:
    w = m.read(info)
    if scheme == "none":
        t = time.perf_counter()
        p = prune_array(w, *prune)
        x = np.asarray(w, np.float64)
        err = x - p.astype(np.float64)
        st = {"sum_sq": float((x * x).sum()), "err_sq": float((err * err).sum()),
              "max_err": float(np.abs(err).max()) if err.size else 0.0,
              "zeros": int(p.size - np.count_nonzero(p)), "nonfinite": int((~np.isfinite(x)).sum())}
        report.kernel_seconds += time.perf_counter() - t
        out.write_item_at(base.item_from_array(info.name, p, info.dtype), offsets[info.name])
        return TensorReport(info.name, tuple(info.shape), info.dtype, "pruned", info.nbytes, info.nbytes,
                            _sqnr(st), st["max_err"], st["zeros"] / max(1, p.size))
    t = time.perf_counter()
    qt = quantize_array(w, scheme, group, prune, threads)
    report.kernel_seconds += time.perf_counter() - t
    st = qt.stats
    if st["nonfinite"]:
        # keep the weight as it is: a scale computed over NaN or inf means nothing
        raise WriteError(f"tensor {info.name!r} holds {st['nonfinite']} NaN or infinite value(s); exclude it "
                         "(--exclude) to quantize the rest")
    parts = [(info.name, qt.q), (info.name + ".scale", qt.scale)]
    if qt.zero_point is not None:
        parts.append((info.name + ".zero_point", qt.zero_point))
    after = 0
    for name, arr in parts:
        out.write_item_at(base.item_from_array(name, arr), offsets[name])
        after += arr.nbytes
    return TensorReport(info.name, tuple(info.shape), info.dtype, scheme, info.nbytes, after, _sqnr(st),
                        st["max_err"], st["zeros"] / max(1, w.size))


def _check_written(path: str, items: list[Item]) -> None:
    import mfparse

    with mfparse.open(path, whole=False) as m:
        got = {t.name: (t.dtype, tuple(t.shape)) for t in m.tensors()}
    for it in items:
        if got.get(it.name) != (it.dtype, tuple(it.shape)):
            raise WriteError(f"verification failed for {it.name!r}: {got.get(it.name)}")


# ---- reading back -------------------------------------------------------------------------------

def quantization_info(m) -> dict | None:
    """The parsed `mfparse.quantization` metadata of an open ModelFile, or None. For a model of
    several files (a folder written by quantize), every file's entries, names prefixed as the
    model lists them."""
    parts = m.parts()
    if len(parts) > 1 or parts[0][2] is not m:
        merged = None
        for prefix, _rel, pm in parts:
            qi = quantization_info(pm)
            if qi is None:
                continue
            if merged is None:
                merged = {k: v for k, v in qi.items() if k != "tensors"}
                merged["tensors"] = {}
            for name, e in qi["tensors"].items():
                e = dict(e)
                for k in ("scale", "zero_point"):
                    if isinstance(e.get(k), str):
                        e[k] = prefix + e[k]
                merged["tensors"][prefix + name] = e
        return merged
    text = (m.metadata or {}).get(META_KEY)
    if not isinstance(text, str):
        return None
    try:
        info = json.loads(text)
    except ValueError:
        return None
    return info if isinstance(info, dict) and isinstance(info.get("tensors"), dict) else None


def dequantize(path, name: str, threads: int | None = None) -> np.ndarray:
    """The float32 values of tensor `name` of a file written by `mfparse quantize` (or of any
    model file: unquantized tensors are converted to float32).

    Args:
        path: the file (or an open ModelFile).
        name: the weight's name, as in the source model.

    Example:
        >>> w = mfparse.dequantize("model.int8.safetensors", "fc1.weight")
    """
    import mfparse
    from mfparse.api import ModelFile

    if isinstance(path, ModelFile):
        return _dequantize_open(path, name, threads)
    with mfparse.open(path) as m:
        return np.array(_dequantize_open(m, name, threads), copy=True)


def _dequantize_open(m, name: str, threads) -> np.ndarray:
    qi = quantization_info(m)
    entry = (qi or {}).get("tensors", {}).get(name)
    if entry is None:
        a = m[name]
        if a.dtype.kind not in "fiub" and not base.canonical_dtype(a.dtype).startswith(("bfloat", "float")):
            raise WriteError(f"tensor {name!r} of dtype {a.dtype} has no float32 value")
        return np.asarray(a, dtype=np.float32)
    scheme = entry.get("scheme")
    shape = tuple(entry["shape"])
    if scheme == "pruned":
        return np.asarray(m[name], dtype=np.float32)
    q = m[name]
    scale = m[entry["scale"]]
    zp = m[entry["zero_point"]] if entry.get("zero_point") else None
    return dequantize_arrays(scheme, q, scale, zp, shape, int(entry.get("group_size") or 128), threads)


# ---- hooks for `mfparse bench` (mfparse/bench/quant.py looks these names up) -------------------

def bench_torch_int8(model, example_inputs):
    """int8 rows of `mfparse bench` on torch: dynamic int8 quantization of a copy of the model's
    Linear and LSTM layers (the input model is not modified)."""
    import copy

    from mfparse.runtime_quant import quantize_torch_dynamic

    return quantize_torch_dynamic(copy.deepcopy(model).eval())


def bench_onnx_int8(src, dst, calibration):
    """int8 rows of `mfparse bench` on ONNX Runtime / TensorRT: static QDQ quantization with
    per-channel weights and MinMax activation ranges calibrated on `calibration` (a list of
    {input name: array} feeds, all shaped alike). Weights are 7-bit (reduce_range) on an x86 CPU
    without VNNI, where ONNX Runtime's u8s8 kernels would saturate 8-bit ones
    (runtime_quant.int8_cpu()); 8-bit elsewhere."""
    import tempfile

    from mfparse.runtime_quant import quantize_onnx

    if not calibration:
        raise ValueError("int8 calibration needs at least one input feed")
    with tempfile.TemporaryDirectory(prefix="mfparse-calib-") as tmp:
        npz = os.path.join(tmp, "calibration.npz")
        names = list(calibration[0])
        np.savez(npz, **{n: np.stack([np.asarray(feed[n]) for feed in calibration]) for n in names})
        quantize_onnx(src, dst, "static", per_channel=True, calibration=npz, method="minmax")
