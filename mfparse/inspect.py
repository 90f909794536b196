"""`mfparse inspect`: what the tutorial's analyze_model_file prints, without torch and without
loading the file: size, format, every tensor's name, shape, dtype and bytes, totals by dtype,
the parameter count; optional per-tensor statistics (computed in bounded memory) and the
checkpoint's structure.
"""

from __future__ import annotations

import math
import re

from mfparse._lazy import numpy as np

from mfparse.api import ModelFile, ObjectNode, SharedRef, TensorInfo
from mfparse.records import to_jsonable as _jsonable

#: elements converted to float64 at a time by --stats (8 MiB of float64)
STATS_CHUNK = 1 << 20

# top-level checkpoint entries that are not the model's parameters
_NOT_MODEL = re.compile(r"optim|sched|scaler|lr_", re.IGNORECASE)


def human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return str(n)


def _chunks(a: np.ndarray, max_elems: int):
    """Views of a covering all its elements, each at most max_elems (or one row of 1 element)."""
    if a.ndim == 0:
        yield a.reshape(1)
        return
    if a.size <= max_elems:
        yield a
        return
    row = a[0].size if a.shape[0] else 0
    if row == 0:
        return
    if row <= max_elems:
        step = max(1, max_elems // row)
        for i in range(0, a.shape[0], step):
            yield a[i:i + step]
    else:
        for i in range(a.shape[0]):
            yield from _chunks(a[i], max_elems)


def _is_ml_float(dt: np.dtype) -> bool:
    """bfloat16, float8 and friends from ml_dtypes (numpy kind 'V')."""
    return type(dt).__module__.startswith("ml_dtypes") or "float" in dt.name or "int" in dt.name


def tensor_stats(a: np.ndarray) -> dict | None:
    """min/max/mean/std and zero fraction, converting at most STATS_CHUNK elements at a time.

    Returns None for data without a real ordering (complex, packed or structured dtypes).
    """
    if a.dtype.fields is not None or a.dtype.kind in "cOSU" or (a.dtype.kind == "V" and a.dtype.names is None
                                                               and not _is_ml_float(a.dtype)):
        return None
    n = a.size
    if n == 0:
        return {"min": None, "max": None, "mean": None, "std": None, "zeros": None}
    lo, hi = math.inf, -math.inf
    total = 0.0
    count = 0
    m2 = 0.0
    mean = 0.0
    zeros = 0
    nan = 0
    for c in _chunks(a, STATS_CHUNK):
        x = np.asarray(c, dtype=np.float64).reshape(-1)
        zeros += int(np.count_nonzero(x == 0))
        finite = np.isfinite(x)
        if not finite.all():
            nan += int(np.count_nonzero(np.isnan(x)))
            x = x[finite]
        if x.size == 0:
            continue
        lo = min(lo, float(x.min()))
        hi = max(hi, float(x.max()))
        # Chan et al. parallel update of mean and sum of squared deviations
        cm = float(x.mean())
        cm2 = float(((x - cm) ** 2).sum())
        k = x.size
        delta = cm - mean
        tot = count + k
        mean += delta * k / tot
        m2 += cm2 + delta * delta * count * k / tot
        count = tot
        total += k
    std = math.sqrt(m2 / (count - 1)) if count > 1 else 0.0
    return {
        "min": lo if count else None,
        "max": hi if count else None,
        "mean": mean if count else None,
        "std": std if count else None,
        "zeros": zeros / n,
        **({"nan": nan} if nan else {}),
    }


def is_model_tensor(name: str) -> bool:
    """True unless the tensor sits under optimizer/scheduler/scaler state."""
    return not _NOT_MODEL.search(name.split(".", 1)[0])


def summarize(m: ModelFile, stats: bool = False, tree: bool = False) -> dict:
    """Everything inspect prints, as a JSON-ready dict."""
    tensors = []
    totals: dict[str, dict] = {}
    params = 0
    elements = 0
    data = 0
    for t in m.tensors():
        d = t.to_dict()
        n = t.numel
        d["numel"] = n
        if stats:
            d["stats"] = _stats_or_none(m, t)
        tensors.append(d)
        tot = totals.setdefault(t.dtype, {"tensors": 0, "numel": 0, "nbytes": 0})
        tot["tensors"] += 1
        tot["numel"] += n
        tot["nbytes"] += t.nbytes
        elements += n
        data += t.nbytes
        if is_model_tensor(t.name):
            params += n
    out = {
        "path": m.path,
        "size": m.size,
        "format": m.format,
        "files": _files(m),
        "tensor_count": len(tensors),
        "parameters": params,
        "elements": elements,
        "data_bytes": data,
        "totals_by_dtype": totals,
        "metadata": _jsonable(m.metadata),
        "tensors": tensors,
    }
    if m.warnings:
        out["warnings"] = list(m.warnings)
    layout = getattr(m, "layout", None)
    if layout is not None:
        out["layout"] = layout.kind
        if layout.notes:
            out["notes"] = list(layout.notes)
    graph = m.graph
    if graph is not None:
        out["graph"] = _jsonable(graph.to_dict() if hasattr(graph, "to_dict") else graph)
    if tree:
        out["tree"] = _jsonable(m.tree())
    return out


def _files(m: ModelFile) -> list:
    """One entry per weight file: its path relative to the model's folder, format, size, tensors
    and data bytes (a single file: one entry)."""
    out = []
    for prefix, rel, part in m.parts():
        data = sum(t.nbytes for t in part.tensors())
        out.append({"file": rel if rel is not None else (m.files[0] if m.files else None), "format": part.format,
                    "size": part.size, "tensors": len(part), "data_bytes": data})
    return out


def _stats_or_none(m: ModelFile, t: TensorInfo):
    from mfparse.dtypes import PACKED

    if "quantization" in t.extras or t.dtype.endswith("_x2"):
        return None  # quantized values: the raw codes are not the numbers
    if t.offset is None and t.extras.get("device") == "meta":
        return None
    if t.dtype in ("object", "string") or "sparsity" in t.extras or "external_buffer" in t.extras:
        return None  # a pickle (never loaded), strings, sparse values, another file's bytes
    from mfparse.errors import UnsupportedFormatError

    try:
        a = m.read(t)
        if t.dtype in PACKED and a.dtype == np.uint8:
            return None  # sub-byte values the format's reader does not unpack: bytes, not numbers
        return tensor_stats(a)
    except (TypeError, UnsupportedFormatError):
        return None  # no numpy form, or data mfparse cannot decode (e.g. an HDF5 filter it lacks)


# ---- text rendering ----------------------------------------------------------------------------

def _fmt_num(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def render_text(s: dict, stats: bool = False, tree_obj=None) -> str:
    lines = []
    where = s["path"] or "<bytes>"
    lines.append(f"File:       {where}")
    lines.append(f"Size:       {human_bytes(s['size'])} ({s['size']:,} bytes)")
    lines.append(f"Format:     {s['format']}")
    lines.append(f"Tensors:    {s['tensor_count']:,}")
    lines.append(f"Parameters: {s['parameters']:,}" + (
        f"  (all tensors: {s['elements']:,} elements)" if s["elements"] != s["parameters"] else ""))
    lines.append(f"Data:       {human_bytes(s['data_bytes'])}")
    files = s.get("files") or []
    if len(files) > 1:
        lines.append("")
        lines.extend(render_files(files))
    for w in s.get("warnings") or []:
        lines.append(f"Warning:    {w}")
    for n in s.get("notes") or []:
        lines.append(f"Note:       {n}")
    if s["metadata"]:
        lines.append("")
        lines.append("Metadata:")
        for k, v in list(s["metadata"].items())[:50]:
            text = repr(v) if not isinstance(v, str) else v
            if len(text) > 100:
                text = text[:97] + "..."
            lines.append(f"  {k}: {text}")
        if len(s["metadata"]) > 50:
            lines.append(f"  ... {len(s['metadata']) - 50} more")
    if isinstance(s.get("graph"), dict):
        lines.append("")
        lines.extend(render_graph(s["graph"]))
    lines.append("")
    rows = []
    by_file = len(files) > 1
    for t in s["tensors"]:
        shape = "[" + ", ".join(str(d) for d in t["shape"]) + "]"
        row = [t["name"], shape, t["dtype"], human_bytes(t["nbytes"])]
        if by_file:
            row.append(t.get("file") or "-")
        if stats:
            st = t.get("stats") or {}
            zeros = st.get("zeros")
            row += [_fmt_num(st.get("min")), _fmt_num(st.get("max")), _fmt_num(st.get("mean")),
                    _fmt_num(st.get("std")), "-" if zeros is None else f"{zeros * 100:.1f}%"]
        rows.append(row)
    head = ["name", "shape", "dtype", "bytes"] + (["file"] if by_file else []) + (
        ["min", "max", "mean", "std", "zeros"] if stats else [])
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head)]
    widths[0] = min(widths[0], 60)
    right = {3} | ({5, 6, 7, 8, 9} if by_file else {4, 5, 6, 7, 8})
    fmt_row = lambda r: "  ".join(  # noqa: E731
        (c.rjust(w) if i in right else c.ljust(w)) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    lines.append(fmt_row(head))
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(fmt_row(r) for r in rows)
    lines.extend(_render_scales(s["tensors"]))
    lines.append("")
    lines.append("Totals by dtype:")
    for dt, tot in sorted(s["totals_by_dtype"].items(), key=lambda kv: -kv[1]["nbytes"]):
        lines.append(f"  {dt:<16} {tot['tensors']:>8,} tensors  {tot['numel']:>16,} elements  "
                     f"{human_bytes(tot['nbytes']):>12}")
    if tree_obj is not None:
        lines.append("")
        lines.append("Structure:")
        lines.extend(render_tree(tree_obj))
    return "\n".join(lines)


def render_files(files: list) -> list[str]:
    """The per-file table of a model of several files, with a total row."""
    head = ["file", "format", "tensors", "data", "size"]
    rows = [[f["file"] or "-", f["format"], f"{f['tensors']:,}", human_bytes(f["data_bytes"]), human_bytes(f["size"])]
            for f in files]
    rows.append([f"total ({len(files)} files)", "", f"{sum(f['tensors'] for f in files):,}",
                 human_bytes(sum(f["data_bytes"] for f in files)), human_bytes(sum(f["size"] for f in files))])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    fmt = lambda r: "  ".join(c.rjust(w) if i >= 2 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()  # noqa: E731
    return [fmt(head), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows[:-1]] + [
        "  ".join("-" * w for w in widths), fmt(rows[-1])]


def render_graph(g: dict, max_ops: int = 30) -> list[str]:
    """Lines describing m.graph: SavedModel signatures as saved_model_cli shows them, else the
    inputs, outputs and operator counts of a graph (ONNX, GraphDef, ...)."""
    if "meta_graphs" in g:
        from mfparse.formats.tf import saved_model_text

        return saved_model_text(g)
    lines = ["Graph:"]
    for title, key in (("input", "inputs"), ("output", "outputs")):
        for v in g.get(key) or []:
            shape = v.get("shape")
            dims = "?" if shape is None else "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
            lines.append(f"  {title:<6} {v['name']}: {v.get('type') or v.get('dtype') or '?'} {dims}")
    if "node_count" not in g and isinstance(g.get("operators"), list):
        lines.append(f"  operators: {len(g['operators']):,}")
    if "node_count" in g:
        lines.append(f"  nodes: {g['node_count']:,}" + (
            f" ({g['total_node_count']:,} with subgraphs and functions)"
            if g.get("total_node_count", g["node_count"]) != g["node_count"] else ""))
    ops = list((g.get("op_types") or g.get("op_histogram") or {}).items())
    if ops:
        text = ", ".join(f"{op} x{n}" for op, n in ops[:max_ops]) + (f", ... {len(ops) - max_ops} more" if len(ops) > max_ops else "")
        lines.append(f"  ops: {text}")
    for key in ("subgraphs", "functions"):
        if g.get(key):
            lines.append(f"  {key}: {len(g[key])}")
    return lines


def _render_scales(tensors: list, max_values: int = 4) -> list[str]:
    """Lines listing the scale and zero point of every tensor whose extras carry a
    quantization with a "scale" list (TFLite int8 models); nothing when there is none."""
    rows = []
    for t in tensors:
        q = (t.get("extras") or {}).get("quantization")
        if not isinstance(q, dict) or not q.get("scale"):
            continue
        scale, zp = q["scale"], q.get("zero_point") or []
        fmt = lambda v: ", ".join(f"{x:.6g}" for x in v[:max_values]) + (", ..." if len(v) > max_values else "")  # noqa: E731
        axis = f"  per-axis ({len(scale)} along dim {q.get('quantized_dimension', 0)})" if len(scale) > 1 else ""
        rows.append(f"  {t['name']}: scale [{fmt(scale)}] zero_point [{fmt(zp)}]{axis}")
    if not rows:
        return []
    return ["", "Quantization (scale, zero point):"] + rows


def render_tree(node, indent: str = "  ", max_items: int = 40) -> list[str]:
    """Indented lines describing a tree from ModelFile.tree()."""
    out: list[str] = []

    def describe(v) -> str:
        if isinstance(v, TensorInfo):
            return f"tensor {v.dtype} [{', '.join(map(str, v.shape))}]"
        if isinstance(v, SharedRef):
            return repr(v)  # <same as a.b.c>: shown once, at that path
        if isinstance(v, ObjectNode):
            return f"<{v.cls}>"
        if isinstance(v, dict):
            return f"dict ({len(v)} items)"
        if isinstance(v, (list, tuple)):
            return f"{type(v).__name__} ({len(v)} items)"
        text = repr(v)
        return text if len(text) <= 80 else text[:77] + "..."

    def walk(v, pad):
        if isinstance(v, (TensorInfo, SharedRef)):
            return
        if isinstance(v, ObjectNode):
            items = list(v.fields.items())
        elif isinstance(v, dict):
            items = list(v.items())
        elif isinstance(v, (list, tuple)):
            if all(not isinstance(x, (dict, list, tuple, TensorInfo, ObjectNode)) for x in v):
                return
            items = list(enumerate(v))
        else:
            return
        for i, (k, x) in enumerate(items):
            if i == max_items:
                out.append(f"{pad}... {len(items) - max_items} more")
                break
            out.append(f"{pad}{k}: {describe(x)}")
            walk(x, pad + indent)

    out.append(f"{indent}{describe(node)}")
    walk(node, indent * 2)
    return out
