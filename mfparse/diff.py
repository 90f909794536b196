"""`mfparse diff A B [--json] [--atol X] [--rtol Y]`: compare two model files of any formats.

Reports tensors only in A or only in B, dtype and shape changes, and for each tensor in both
with the same number of elements: whether the bytes are identical, the max absolute and max
relative difference of the values (|a - b| / max(|a|, |b|): a value that became 0, as int4 and
pruning make many, counts 1, not infinity; inf only where a value is infinite or NaN on one
side), and the count of elements beyond the tolerance. Values are
compared chunk by chunk (at most CHUNK elements converted to float64 at a time), so memory
stays bounded whatever the tensor size. NaN equals NaN at the same position.

A file written by `mfparse quantize` is compared through its dequantized values (its
`<name>.scale` / `<name>.zero_point` companions are not listed as extra tensors), so a model
and its quantized copy diff by their quantization error.

The files are equal when both hold the same names with the same shapes and every value is
within `atol + rtol * |b|` (defaults 0: exactly equal values); a dtype change alone does not
make files unequal unless `strict` (then dtypes and metadata must match too). Exit codes of
the command: 0 equal, 1 different, 2 error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from mfparse._lazy import numpy as np

#: elements compared (converted to float64) at a time
CHUNK = 1 << 20


@dataclass
class TensorDiff:
    name: str
    dtype_a: str
    dtype_b: str
    shape_a: tuple
    shape_b: tuple
    identical_bytes: bool | None = None
    max_abs: float | None = None
    max_rel: float | None = None
    mismatched: int | None = None  # elements beyond the tolerance
    numel: int = 0
    note: str | None = None

    @property
    def comparable(self) -> bool:
        return self.max_abs is not None

    def to_dict(self) -> dict:
        d = {"name": self.name, "dtype": [self.dtype_a, self.dtype_b],
             "shape": [list(self.shape_a), list(self.shape_b)],
             "numel": self.numel, "identical_bytes": self.identical_bytes, "max_abs": _json_float(self.max_abs),
             "max_rel": _json_float(self.max_rel), "mismatched": self.mismatched}
        if self.note:
            d["note"] = self.note
        return d


def _json_float(v):
    if v is None:
        return None
    if math.isinf(v) or math.isnan(v):
        return str(v)
    return v


@dataclass
class DiffReport:
    a: str
    b: str
    format_a: str
    format_b: str
    atol: float
    rtol: float
    strict: bool
    only_a: list = field(default_factory=list)
    only_b: list = field(default_factory=list)
    tensors: list = field(default_factory=list)   # TensorDiff for names in both
    metadata_changes: dict = field(default_factory=dict)

    @property
    def shape_changes(self) -> list:
        return [t for t in self.tensors if tuple(t.shape_a) != tuple(t.shape_b)]

    @property
    def dtype_changes(self) -> list:
        return [t for t in self.tensors if t.dtype_a != t.dtype_b]

    @property
    def value_changes(self) -> list:
        return [t for t in self.tensors if t.mismatched]

    @property
    def equal(self) -> bool:
        if self.only_a or self.only_b or self.shape_changes or self.value_changes:
            return False
        if any(not t.comparable for t in self.tensors):
            return False
        if self.strict and (self.dtype_changes or self.metadata_changes):
            return False
        return True

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "format": [self.format_a, self.format_b], "atol": self.atol,
                "rtol": self.rtol, "strict": self.strict, "equal": self.equal, "only_in_a": self.only_a,
                "only_in_b": self.only_b, "dtype_changes": [t.name for t in self.dtype_changes],
                "shape_changes": [t.name for t in self.shape_changes],
                "value_changes": [t.name for t in self.value_changes],
                "metadata_changes": self.metadata_changes, "tensors": [t.to_dict() for t in self.tensors]}

    def text(self, limit: int = 50) -> str:
        lines = [f"A: {self.a} ({self.format_a})", f"B: {self.b} ({self.format_b})"]
        same = sum(1 for t in self.tensors if t.identical_bytes)
        lines.append(f"{len(self.tensors)} tensors in both ({same} byte-identical), {len(self.only_a)} only in A, "
                     f"{len(self.only_b)} only in B")
        for title, names in (("only in A", self.only_a), ("only in B", self.only_b)):
            if names:
                lines.append(f"{title}:")
                lines += [f"  {n}" for n in names[:limit]]
                if len(names) > limit:
                    lines.append(f"  ... {len(names) - limit} more")
        changed = [t for t in self.tensors if not t.identical_bytes]
        if changed:
            lines.append("changed:")
            for t in changed[:limit]:
                parts = []
                if t.dtype_a != t.dtype_b:
                    parts.append(f"dtype {t.dtype_a} -> {t.dtype_b}")
                if tuple(t.shape_a) != tuple(t.shape_b):
                    parts.append(f"shape {list(t.shape_a)} -> {list(t.shape_b)}")
                if t.comparable:
                    parts.append(f"max abs {t.max_abs:.6g}, max rel {t.max_rel:.6g}")
                    if t.mismatched:
                        parts.append(f"{t.mismatched:,} of {t.numel:,} beyond tolerance")
                if t.note:
                    parts.append(t.note)
                lines.append(f"  {t.name}: " + "; ".join(parts))
            if len(changed) > limit:
                lines.append(f"  ... {len(changed) - limit} more")
        if self.metadata_changes:
            lines.append(f"metadata: {len(self.metadata_changes)} key(s) differ")
            for k, (va, vb) in list(self.metadata_changes.items())[:limit]:
                lines.append(f"  {k}: {_short(va)} -> {_short(vb)}")
        tol = f"atol {self.atol:g}, rtol {self.rtol:g}"
        lines.append(("EQUAL" if self.equal else "DIFFERENT") + f" ({tol}{', strict' if self.strict else ''})")
        return "\n".join(lines)


def _same_value(a, b) -> bool:
    """Equal, or equal once a string holding JSON is decoded (safetensors keeps metadata as
    strings, so a checkpoint's epoch 5 is "5" there)."""
    if a == b:
        return True
    import json

    for x, y in ((a, b), (b, a)):
        if isinstance(y, str) and not isinstance(x, str) and x is not None:
            try:
                if json.loads(y) == x:
                    return True
            except ValueError:
                pass
    return False


def _short(v) -> str:
    t = repr(v)
    return t if len(t) <= 60 else t[:57] + "..."


class _Side:
    """One file: its tensors by name, read as stored or dequantized."""

    def __init__(self, m):
        from mfparse.quantize import quantization_info

        self.m = m
        self.infos = {t.name: t for t in m.tensors()}
        self.q = (quantization_info(m) or {}).get("tensors", {})
        hidden = set()
        for e in self.q.values():
            for k in ("scale", "zero_point"):
                if e.get(k):
                    hidden.add(e[k])
        self.names = [n for n in self.infos if n not in hidden]

    def logical(self, name: str) -> tuple[str, tuple]:
        e = self.q.get(name)
        if e is not None:
            return e.get("dtype", "?"), tuple(e["shape"])
        t = self.infos[name]
        return t.dtype, tuple(t.shape)

    def raw(self, name: str) -> np.ndarray:
        """The stored data (sub-byte types packed): compared byte for byte."""
        return self.m.read(self.infos[name], packed=True)

    def values(self, name: str) -> np.ndarray:
        """The values as an array of numbers (dequantized for quantized tensors)."""
        if name in self.q and self.q[name].get("scheme") != "pruned":
            from mfparse.quantize import dequantize

            return dequantize(self.m, name)
        return self.m.read(self.infos[name])  # sub-byte types unpacked where the format says how


def _chunks(a: np.ndarray, b: np.ndarray, limit: int = CHUNK):
    """Pairs of matching pieces of a and b of at most `limit` elements each (any layout: a
    strided tensor is cut along its leading axes, never copied whole)."""
    if a.shape != b.shape:
        a, b = a.reshape(-1), b.reshape(-1)  # same element count, different shapes
    if a.ndim == 0:
        yield a.reshape(1), b.reshape(1)
        return
    if a.size <= limit or (a.flags.c_contiguous and b.flags.c_contiguous and a.ndim == 1):
        if a.ndim == 1:
            for i in range(0, a.shape[0], limit):
                yield a[i:i + limit], b[i:i + limit]
        else:
            yield a, b
        return
    row = a[0].size if a.shape[0] else 0
    if row == 0:
        return
    if a.flags.c_contiguous and b.flags.c_contiguous:
        yield from _chunks(a.reshape(-1), b.reshape(-1), limit)
        return
    if row <= limit:
        step = max(1, limit // row)
        for i in range(0, a.shape[0], step):
            yield a[i:i + step], b[i:i + step]
    else:
        for i in range(a.shape[0]):
            yield from _chunks(a[i], b[i], limit)


def _numeric(x: np.ndarray) -> np.ndarray:
    return x.astype(np.complex128 if x.dtype.kind == "c" else np.float64)


def _compare(a: np.ndarray, b: np.ndarray, atol: float, rtol: float) -> tuple[float, float, int]:
    max_abs = 0.0
    max_rel = 0.0
    bad = 0
    for ca, cb in _chunks(a, b):
        xa, xb = _numeric(ca).reshape(-1), _numeric(cb).reshape(-1)
        with np.errstate(invalid="ignore", over="ignore"):
            d = np.abs(xa - xb)
        same = (np.isnan(xa) & np.isnan(xb)) | (xa == xb)  # NaN = NaN, inf = inf
        d = np.where(same, 0.0, d)
        d = np.where(np.isnan(d), np.inf, d)
        mag = np.abs(xb)
        mag = np.where(np.isnan(mag), 0.0, mag)
        # relative difference against the larger magnitude of the two, so a value that became 0
        # (quantized to zero, pruned) counts as 1, not inf; at most 2 (opposite signs)
        big = np.maximum(mag, np.where(np.isnan(xa), 0.0, np.abs(xa)))
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(d == 0, 0.0, np.where(np.isfinite(d) & (big > 0) & np.isfinite(big),
                                                 d / np.where(big > 0, big, 1.0), np.inf))
        if d.size:
            max_abs = max(max_abs, float(d.max()))
            max_rel = max(max_rel, float(rel.max()))
        tol = atol + rtol * np.where(np.isinf(mag), 0.0, mag) if rtol else atol
        bad += int(np.count_nonzero(d > tol))
    return max_abs, max_rel, bad


def _bytes_equal(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    for ca, cb in _chunks(a, b):
        ca, cb = np.ascontiguousarray(ca).reshape(-1), np.ascontiguousarray(cb).reshape(-1)
        if not np.array_equal(ca.view(np.uint8), cb.view(np.uint8)):
            return False
    return True


def diff(a, b, atol: float = 0.0, rtol: float = 0.0, strict: bool = False) -> DiffReport:
    """Compare two model files (any formats mfparse reads).

    Args:
        a, b: paths (or bytes / file objects, as mfparse.open takes them).
        atol, rtol: values are equal when |a - b| <= atol + rtol * |b|.
        strict: dtype and metadata differences also make the files different.

    Returns:
        DiffReport; `.equal` is the verdict, `.text()` and `.to_dict()` render it.

    Example:
        >>> from mfparse.diff import diff
        >>> diff("model.pth", "model.safetensors").equal
        True
    """
    import mfparse
    from mfparse.records import to_jsonable as _jsonable

    with mfparse.open(a) as ma, mfparse.open(b) as mb:
        sa, sb = _Side(ma), _Side(mb)
        rep = DiffReport(str(ma.path or "<bytes>"), str(mb.path or "<bytes>"), ma.format, mb.format, atol, rtol, strict)
        in_b = set(sb.names)
        in_a = set(sa.names)
        rep.only_a = [n for n in sa.names if n not in in_b]
        rep.only_b = [n for n in sb.names if n not in in_a]
        for name in sa.names:
            if name not in in_b:
                continue
            dta, sha = sa.logical(name)
            dtb, shb = sb.logical(name)
            td = TensorDiff(name, dta, dtb, sha, shb)
            rep.tensors.append(td)
            na = int(np.prod(sha, dtype=np.int64)) if sha else 1
            nb = int(np.prod(shb, dtype=np.int64)) if shb else 1
            td.numel = na
            if na != nb:
                td.note = "different number of elements"
                continue
            try:
                if name not in sa.q and name not in sb.q and dta == dtb:
                    ra, rb = sa.raw(name), sb.raw(name)
                    td.identical_bytes = _bytes_equal(ra, rb)
                    if td.identical_bytes:
                        td.max_abs, td.max_rel, td.mismatched = 0.0, 0.0, 0
                        continue
                else:
                    td.identical_bytes = False
                va, vb = sa.values(name), sb.values(name)
                if va.size != na or vb.size != nb or va.dtype.fields is not None or vb.dtype.fields is not None:
                    td.note = "values are packed or structured: compared by bytes only"
                    continue
                td.max_abs, td.max_rel, td.mismatched = _compare(va, vb, atol, rtol)
            except (TypeError, ValueError, mfparse.MFParseError) as e:
                td.note = f"not comparable: {e}"
        ma_meta, mb_meta = _jsonable(ma.metadata or {}), _jsonable(mb.metadata or {})
        for k in sorted(set(ma_meta) | set(mb_meta), key=str):
            if str(k).startswith("mfparse."):
                continue  # mfparse's own bookkeeping (source format, structure, quantization)
            if not _same_value(ma_meta.get(k), mb_meta.get(k)):
                rep.metadata_changes[k] = (ma_meta.get(k), mb_meta.get(k))
    return rep
