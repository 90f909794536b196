"""`mfparse inspect`: what the tutorial's analyze_model_file prints, without torch and without
loading the file: size, format, every tensor's name, shape, dtype and bytes, totals by dtype,
the parameter count; optional per-tensor statistics (computed in bounded memory) and the
checkpoint's structure.

For big models: `filters` (--filter: globs on the whole name, or `re:` regular expressions
searched in it) keep the matching tensors, and every count, total and statistic then covers
them only; `collapse` (--collapse) shows tensors whose names differ only in one numbered
component (`model.layers.{0..31}.self_attn.q_proj.weight`) and that have the same dtype and
shape as one row, repeatedly, so experts of every layer become one row too; `sort`
(--sort name|size|shape|dtype|offset) orders the rows (default: file order).
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
    return _tensor_stats(a)[0]


def _tensor_stats(a: np.ndarray) -> tuple[dict | None, int]:
    """(tensor_stats(a), the number of finite values they were computed over)."""
    if a.dtype.fields is not None or a.dtype.kind in "cOSU" or (a.dtype.kind == "V" and a.dtype.names is None
                                                               and not _is_ml_float(a.dtype)):
        return None, 0
    n = a.size
    if n == 0:
        return {"min": None, "max": None, "mean": None, "std": None, "zeros": None}, 0
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
    }, count


def is_model_tensor(name: str) -> bool:
    """True unless the tensor sits under optimizer/scheduler/scaler state."""
    return not _NOT_MODEL.search(name.split(".", 1)[0])


def summarize(m: ModelFile, stats: bool = False, tree: bool = False, filters=None, sort: str | None = None,
              collapse: bool = False) -> dict:
    """Everything inspect prints, as a JSON-ready dict.

    Args:
        filters: patterns (name_matcher): only the matching tensors are listed, counted and
            totalled; the record says how many matched ("filter").
        sort: a key of SORT_KEYS for "tensors" (and "groups"); default: file order.
        collapse: also give "groups" (collapse_rows): one row per set of numbered tensors.
    """
    match = name_matcher(filters) if filters else None
    tensors = []
    finite = []
    totals: dict[str, dict] = {}
    params = 0
    elements = 0
    data = 0
    seen = 0
    for t in m.tensors():
        seen += 1
        if match is not None and not match(t.name):
            continue
        d = t.to_dict()
        n = t.numel
        d["numel"] = n
        if stats:
            d["stats"], k = _stats_or_none(m, t)
            finite.append(k)
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
        "files": _files(m, tensors if match is not None else None),
        "tensor_count": len(tensors),
        "parameters": params,
        "elements": elements,
        "data_bytes": data,
        "totals_by_dtype": totals,
        "metadata": _jsonable(m.metadata),
        "tensors": tensors,
    }
    if match is not None:
        out["filter"] = {"patterns": list(filters), "matched": len(tensors), "tensors": seen}
    if collapse:
        out["groups"] = collapse_rows(tensors, finite if stats else None)
    if sort:
        key = sort_key(sort, out["files"])
        out["tensors"] = sorted(tensors, key=key)
        if collapse:
            out["groups"] = sorted(out["groups"], key=key)
        out["sort"] = sort
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


def _files(m: ModelFile, tensors: list | None = None) -> list:
    """One entry per weight file: its path relative to the model's folder, format, size, tensors
    and data bytes (a single file: one entry); with `tensors` (a filtered listing), the
    tensors and bytes of those only."""
    out = []
    single = len(m.parts()) == 1
    for prefix, rel, part in m.parts():
        if tensors is None:
            count, data = len(part), sum(t.nbytes for t in part.tensors())
        else:
            mine = tensors if single else [t for t in tensors if t.get("file") == rel]
            count, data = len(mine), sum(t["nbytes"] for t in mine)
        out.append({"file": rel if rel is not None else (m.files[0] if m.files else None), "format": part.format,
                    "size": part.size, "tensors": count, "data_bytes": data})
    return out


# ---- --filter, --sort, --collapse ------------------------------------------------------------------

#: what --sort orders by
SORT_KEYS = ("name", "size", "shape", "dtype", "offset")
#: the prefix that makes a --filter pattern a regular expression
REGEX_PREFIX = "re:"


def name_matcher(patterns):
    """A function name -> bool, true when the name matches any of the patterns: a glob
    (fnmatch, case-sensitive, on the whole name: `*q_proj*`, `model.layers.?.mlp.*`) or, after
    "re:", a Python regular expression searched anywhere in the name (`re:layers\\.(0|31)\\.`).

    Raises:
        ValueError: a regular expression that does not compile (naming the pattern).
    """
    import fnmatch

    if isinstance(patterns, str):
        patterns = [patterns]
    tests = []
    for p in patterns:
        if p.startswith(REGEX_PREFIX):
            try:
                tests.append(re.compile(p[len(REGEX_PREFIX):]).search)
            except re.error as e:
                raise ValueError(f"--filter {p!r}: not a regular expression ({e})") from None
        else:
            tests.append(re.compile(fnmatch.translate(p)).match)
    return lambda name: any(t(name) for t in tests)


_DIGITS = re.compile(r"([0-9]+)")


def natural_key(name: str) -> tuple:
    """Sorts layers.2 before layers.10."""
    return tuple((0, int(x), "") if i % 2 else (1, 0, x) for i, x in enumerate(_DIGITS.split(name)) if x)


def sort_key(key: str, files: list | None = None):
    """The sort key of a tensor or group row for --sort `key`: name (natural order: layers.2
    before layers.10), size (largest first), shape (by rank, then dimensions: equal shapes
    together), dtype (by name), offset (by file, then byte offset; none last). Sorts are
    stable: ties keep file order."""
    if key == "name":
        return lambda r: natural_key(r["name"])
    if key == "size":
        return lambda r: -r["nbytes"]
    if key == "shape":
        return lambda r: (len(r["shape"]), tuple(r["shape"]))
    if key == "dtype":
        return lambda r: r["dtype"]
    if key == "offset":
        order = {f["file"]: i for i, f in enumerate(files or [])}

        def by_offset(r):
            off = r.get("offset")
            return (order.get(r.get("file"), 0), off is None, off or 0)

        return by_offset
    raise ValueError(f"unknown sort key {key!r} (one of {', '.join(SORT_KEYS)})")


#: name components: runs of characters between "." and "/" (the separators are kept)
_SEP = re.compile(r"([./])")
_NUMBER = re.compile(r"0|[1-9][0-9]*")


def collapse_rows(tensors: list, finite: list | None = None) -> list:
    """Rows for --collapse: tensors whose names differ only in one numbered component (a
    component of ASCII digits, no leading zero; components are split at "." and "/") and that
    have the same dtype and shape become one row, named with the numbers in braces
    (`model.layers.{0..31}.mlp.up_proj.weight`). This repeats, innermost component first,
    so `layers.{0..31}.experts.{0..7}.w1` is one row too. A row sits where its first tensor
    is listed.

    Each row: name, count (tensors), dtype, shape (of each), nbytes and numel (all of them),
    offset (of the first), file (when they share one), index_sets (the numbers in each
    brace, in name order), and stats (combined) when the tensors have stats.
    """
    # a row: [tokens (str, or a tuple of ints for a collapsed component), dtype, shape, members]
    rows = [[tuple(_SEP.split(t["name"])), t["dtype"], tuple(t["shape"]), [i]] for i, t in enumerate(tensors)]
    changed = True
    while changed:
        changed = False
        width = max((len(r[0]) for r in rows), default=0)
        for pos in range(width - 1, -1, -1):
            buckets: dict = {}
            for r in rows:
                tok = r[0]
                if pos < len(tok) and isinstance(tok[pos], str) and _NUMBER.fullmatch(tok[pos]):
                    buckets.setdefault((tok[:pos], tok[pos + 1:], r[1], r[2]), []).append(r)
            merged = {id(r): b for b in buckets.values() if len(b) > 1 for r in b}
            if not merged:
                continue
            changed = True
            out = []
            done = set()
            for r in rows:
                b = merged.get(id(r))
                if b is None:
                    out.append(r)
                elif id(b) not in done:
                    done.add(id(b))
                    tok = list(b[0][0])
                    tok[pos] = tuple(sorted(int(x[0][pos]) for x in b))
                    out.append([tuple(tok), r[1], r[2], sorted(i for x in b for i in x[3])])
            rows = out
    result = []
    for tok, dtype, shape, members in rows:
        ts = [tensors[i] for i in members]
        first = ts[0]
        files = {t.get("file") for t in ts}
        row = {"name": "".join(_braces(x) if isinstance(x, tuple) else x for x in tok), "count": len(ts),
               "dtype": dtype, "shape": list(shape), "nbytes": sum(t["nbytes"] for t in ts),
               "numel": sum(t["numel"] for t in ts), "offset": first.get("offset"),
               "index_sets": [list(x) for x in tok if isinstance(x, tuple)]}
        if len(files) == 1 and first.get("file") is not None:
            row["file"] = first["file"]
        elif len(files) > 1:
            row["files"] = len(files)
        if finite is not None:
            row["stats"] = ts[0].get("stats") if len(ts) == 1 else _combine_stats(ts, [finite[i] for i in members])
        row["_first"] = members[0]
        result.append(row)
    result.sort(key=lambda r: r.pop("_first"))
    return result


def _braces(numbers: tuple) -> str:
    """{0..31}, {0,2,4}, {0..3,8..11}: runs of three or more as a..b, the rest listed."""
    parts = []
    i = 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{numbers[i]}..{numbers[j]}")
        else:
            parts.extend(str(x) for x in numbers[i:j + 1])
        i = j + 1
    return "{" + ",".join(parts) + "}"


def _combine_stats(ts: list, counts: list) -> dict | None:
    """The stats of several tensors' values taken together, from each one's stats and count of
    finite values (Chan et al.'s combination of means and squared deviations)."""
    stats = [t.get("stats") for t in ts]
    if any(s is None for s in stats):
        return None
    numel = sum(t["numel"] for t in ts)
    have = [(s, k) for s, k in zip(stats, counts) if k and s.get("mean") is not None]
    zeros = [(s["zeros"], t["numel"]) for s, t in zip(stats, ts) if s.get("zeros") is not None]
    out = {"min": None, "max": None, "mean": None, "std": None,
           "zeros": sum(z * n for z, n in zeros) / numel if zeros and numel else None}
    if have:
        total = sum(k for _s, k in have)
        mean = sum(s["mean"] * k for s, k in have) / total
        m2 = sum(s["std"] ** 2 * (k - 1) + k * (s["mean"] - mean) ** 2 for s, k in have)
        out.update(min=min(s["min"] for s, _k in have), max=max(s["max"] for s, _k in have), mean=mean,
                   std=math.sqrt(m2 / (total - 1)) if total > 1 else 0.0)
    nan = sum(s.get("nan", 0) for s in stats)
    if nan:
        out["nan"] = nan
    return out


def _stats_or_none(m: ModelFile, t: TensorInfo) -> tuple[dict | None, int]:
    """(tensor_stats of t's data or None, the count of finite values)."""
    from mfparse.dtypes import PACKED

    if "quantization" in t.extras or t.dtype.endswith("_x2"):
        return None, 0  # quantized values: the raw codes are not the numbers
    if t.offset is None and t.extras.get("device") == "meta":
        return None, 0
    if t.dtype in ("object", "string") or "sparsity" in t.extras or "external_buffer" in t.extras:
        return None, 0  # a pickle (never loaded), strings, sparse values, another file's bytes
    from mfparse.errors import UnsupportedFormatError

    try:
        a = m.read(t)
        if t.dtype in PACKED and a.dtype == np.uint8:
            return None, 0  # sub-byte values the format's reader does not unpack: bytes, not numbers
        return _tensor_stats(a)
    except (TypeError, UnsupportedFormatError):
        return None, 0  # no numpy form, or data mfparse cannot decode (e.g. an HDF5 filter it lacks)


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
    filt = s.get("filter")
    if filt:
        pats = " ".join(_shell_word(p) for p in filt["patterns"])
        lines.append(f"Tensors:    {s['tensor_count']:,} of {filt['tensors']:,} (--filter {pats})")
    else:
        lines.append(f"Tensors:    {s['tensor_count']:,}")
    lines.append(f"Parameters: {s['parameters']:,}" + (
        f"  (all tensors: {s['elements']:,} elements)" if s["elements"] != s["parameters"] else ""))
    lines.append(f"Data:       {human_bytes(s['data_bytes'])}")
    groups = s.get("groups")
    if groups is not None:
        lines.append(f"Rows:       {len(groups):,} (--collapse: tensors that differ only in one number, "
                     "with equal dtype and shape, are one row)")
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
    lines.extend(render_table(groups if groups is not None else s["tensors"], stats=stats,
                              by_file=len(files) > 1, counts=groups is not None))
    lines.extend(_render_scales(s["tensors"]))
    lines.append("")
    lines.extend(render_dtype_totals(s["totals_by_dtype"]))
    if tree_obj is not None:
        lines.append("")
        lines.append("Structure:")
        lines.extend(render_tree(tree_obj))
    return "\n".join(lines)


def _shell_word(text: str) -> str:
    import shlex

    return shlex.quote(text)


def render_table(rows: list, stats: bool = False, by_file: bool = False, counts: bool = False) -> list[str]:
    """The tensor table: name, (count,) shape, dtype, bytes, (file,) (stats). Rows are tensor
    records or --collapse groups (count "32 x", bytes of all of them, file "N files" when they
    span several)."""
    out = []
    for t in rows:
        shape = "[" + ", ".join(str(d) for d in t["shape"]) + "]"
        row = [t["name"]]
        if counts:
            row.append(f"{t['count']} x" if t.get("count", 1) > 1 else "")
        row += [shape, t["dtype"], human_bytes(t["nbytes"])]
        if by_file:
            row.append(t.get("file") or (f"{t['files']} files" if t.get("files") else "-"))
        if stats:
            st = t.get("stats") or {}
            zeros = st.get("zeros")
            row += [_fmt_num(st.get("min")), _fmt_num(st.get("max")), _fmt_num(st.get("mean")),
                    _fmt_num(st.get("std")), "-" if zeros is None else f"{zeros * 100:.1f}%"]
        out.append(row)
    head = ["name"] + (["count"] if counts else []) + ["shape", "dtype", "bytes"] + (["file"] if by_file else []) + (
        ["min", "max", "mean", "std", "zeros"] if stats else [])
    widths = [max([len(h)] + [len(r[i]) for r in out]) for i, h in enumerate(head)]
    widths[0] = min(widths[0], 60 if not counts else 80)
    right = {i for i, h in enumerate(head) if h in ("count", "bytes", "min", "max", "mean", "std", "zeros")}
    fmt_row = lambda r: "  ".join(  # noqa: E731
        (c.rjust(w) if i in right else c.ljust(w)) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    return [fmt_row(head), "  ".join("-" * w for w in widths)] + [fmt_row(r) for r in out]


def render_dtype_totals(totals: dict) -> list[str]:
    lines = ["Totals by dtype:"]
    for dt, tot in sorted(totals.items(), key=lambda kv: -kv[1]["nbytes"]):
        lines.append(f"  {dt:<16} {tot['tensors']:>8,} tensors  {tot['numel']:>16,} elements  "
                     f"{human_bytes(tot['nbytes']):>12}")
    return lines


def add_totals(into: dict, s: dict) -> None:
    """Add one listed input's summary `s` to the running totals of several inputs."""
    for k in ("tensor_count", "parameters", "elements", "data_bytes", "size"):
        into[k] = into.get(k, 0) + s[k]
    by = into.setdefault("totals_by_dtype", {})
    for dt, tot in s["totals_by_dtype"].items():
        acc = by.setdefault(dt, {"tensors": 0, "numel": 0, "nbytes": 0})
        for k in acc:
            acc[k] += tot[k]


def render_grand_total(t: dict) -> str:
    """The total over several inputs (the summary of `mfparse inspect A B ...`)."""
    err = t.get("errors", 0)
    lines = [f"Total:      {t['files']:,} inputs" + (f", {t['listed']:,} listed, {err:,} not readable" if err else ""),
             f"Size:       {human_bytes(t.get('size', 0))} ({t.get('size', 0):,} bytes)",
             f"Tensors:    {t['tensor_count']:,}",
             f"Parameters: {t['parameters']:,}" + (
                 f"  (all tensors: {t['elements']:,} elements)" if t.get("elements", t["parameters"]) != t["parameters"]
                 else ""),
             f"Data:       {human_bytes(t['data_bytes'])}"]
    if t.get("totals_by_dtype"):
        lines.append("")
        lines.extend(render_dtype_totals(t["totals_by_dtype"]))
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
