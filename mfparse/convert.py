"""`mfparse convert SRC DST [--to FORMAT]`: any format mfparse reads to safetensors, a torch
checkpoint (written without torch), .npz, GGUF or ONNX with external data.

Built only on the public API: `mfparse.open`, `tensors()`, `read()`, `metadata`, `tree()`.
A conversion:

1. opens the source and lists its tensors (metadata only);
2. refuses a destination that is the source (by path or inode) or exists (unless overwrite);
3. checks the destination's file system has room for the output;
4. writes a temporary file beside the destination, streaming each tensor out of the source
   (in the kernel when its bytes lie contiguous in the file, else in bounded chunks), with a
   progress bar on a terminal when rich or tqdm is installed;
5. reopens the temporary file with mfparse (when it reads the format) and checks every name,
   dtype and shape; only then renames it over the destination. On any failure the temporary
   file is removed: the destination is complete or untouched, and the source is only read.

What each target keeps (details in each writer's docstring, mfparse/writers/):

* safetensors: every tensor (shared storages written once per tensor); `__metadata__` holds
  the source's safetensors metadata, or its scalars plus, for a torch checkpoint, the whole
  non-tensor structure as JSON (`mfparse.state`);
* torch-zip: the checkpoint's structure (from a torch source, or rebuilt from `mfparse.state`
  of a safetensors file mfparse wrote), else a flat {name: tensor} dict; tied weights share
  a storage;
* npz: tensors only; gguf: tensors of ggml's unquantized types, scalars as key-values;
* onnx: see mfparse/writers/onnx.py.

A source may be a model of several files (a folder, an index, any shard: mfparse.locate), and
a destination may be a folder: then the model is written as a Hugging Face folder of
safetensors shards plus their index, as transformers' save_pretrained writes them, with the
source folder's other files (`convert_to_folder`, rules in mfparse/writers/folder.py). The
folder is written beside its destination under a temporary name and renamed into place.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

from mfparse.writers import base, state
from mfparse.writers.base import Item, WriteError

TORCH_CHECKPOINTS = ("torch-zip", "torch-legacy")


@dataclass
class ConvertResult:
    """What a conversion did."""

    src: str
    dst: str
    format: str
    source_format: str
    tensors: int = 0
    bytes: int = 0
    seconds: float = 0.0
    skipped: list = field(default_factory=list)   # [(name, reason)]
    notes: list = field(default_factory=list)
    files: list = field(default_factory=list)     # folder outputs: the files written, relative to dst

    def to_dict(self) -> dict:
        d = {"src": self.src, "dst": self.dst, "format": self.format, "source_format": self.source_format,
             "tensors": self.tensors, "bytes": self.bytes, "seconds": round(self.seconds, 4),
             "skipped": [{"name": n, "reason": r} for n, r in self.skipped], "notes": list(self.notes)}
        if self.files:
            d["files"] = list(self.files)
        return d


def _jsonable_value(v) -> str:
    try:
        return json.dumps(v, allow_nan=True, default=repr)
    except (TypeError, ValueError):
        return json.dumps(repr(v))


def safetensors_metadata(m, state_text: str | None) -> dict[str, str]:
    """__metadata__ for a safetensors output of ModelFile m (see module docstring)."""
    meta = m.metadata or {}
    if m.format == "safetensors":
        return {str(k): str(v) for k, v in meta.items()}
    out: dict[str, str] = {}
    if m.format in TORCH_CHECKPOINTS or m.format == "torchscript":
        out["format"] = "pt"
    out["mfparse.source_format"] = m.format
    for k, v in meta.items():
        k = str(k)
        if k in out:
            continue
        out[k] = v if isinstance(v, str) else _jsonable_value(v)
    if state_text is not None:
        out[state.KEY] = state_text
    return out


def _source_state(m):
    """(state tree with TensorInfo leaves or an encoded state, kind) of a source, or (None, None)."""
    if m.format in TORCH_CHECKPOINTS:
        return m.tree(), "tree"
    text = (m.metadata or {}).get(state.KEY)
    if isinstance(text, str):
        try:
            return json.loads(text), "encoded"
        except ValueError:
            return None, None
    return None, None


def _with_items(tree, by_name: dict, missing: list):
    """The tree with TensorInfo leaves replaced by Items (None where a tensor was skipped)."""
    from mfparse.api import ObjectNode, TensorInfo

    from mfparse.writers.torchzip import MetaTensor

    def walk(v):
        if isinstance(v, TensorInfo):
            it = by_name.get(v.name)
            if it is None and v.offset is None and v.extras.get("device") == "meta":
                return MetaTensor(v.name, v.dtype, v.shape, bool(v.extras.get("requires_grad")))
            if it is None:
                missing.append(v.name)
            return it
        if isinstance(v, ObjectNode):  # a NamedTuple: before tuple
            return ObjectNode(v.cls, {k: walk(x) for k, x in v.fields.items()})
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, tuple):
            return tuple(walk(x) for x in v)
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    return walk(tree)


def _filter(items: list[Item], writer, skip_unsupported: bool, skipped: list) -> list[Item]:
    keep, bad = [], []
    for it in items:
        why = writer.unsupported(it)
        if why is None:
            keep.append(it)
        else:
            bad.append((it.name, why))
    if bad and not skip_unsupported:
        shown = "; ".join(f"{n}: {r}" for n, r in bad[:5])
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise WriteError(f"{len(bad)} tensor(s) cannot be written as {writer.FORMAT}: {shown}{more} "
                         "(skip_unsupported=True / --skip-unsupported drops them)")
    skipped.extend(bad)
    return keep


def convert(src, dst, to: str | None = None, *, overwrite: bool = False, skip_unsupported: bool = False,
            progress=None, fsync: bool = False, check_space: bool = True, verify: bool = True,
            force_zip64: bool = False, max_shard_size=None, weights_only: bool = False) -> ConvertResult:
    """Convert a model file, or a model of several files, to another format.

    Args:
        src: path of any file mfparse reads, or a model folder / index / shard (the whole
            model is converted).
        dst: output path; its extension picks the format unless `to` is given. A folder (an
            existing one, a path ending in "/", or a path without extension and no `to`)
            gets a Hugging Face model folder: safetensors shards and their index as
            transformers' save_pretrained writes them (mfparse/writers/folder.py), plus the
            source folder's other files (config, tokenizer, ...).
        to: "safetensors", "torch-zip", "npz", "gguf" or "onnx".
        max_shard_size: folder outputs: the largest shard ("5GB", "500MB", bytes); default
            transformers' "50GB".
        weights_only: folder outputs: do not copy the source folder's other files.
        overwrite: replace an existing dst (never the source itself).
        skip_unsupported: drop tensors the target cannot hold (listed in the result) instead of
            failing.
        progress: True/False, or None for a bar only on a terminal (needs rich or tqdm).
        fsync: flush the output to the disk before renaming it into place.
        check_space: refuse to start when the destination's file system lacks room.
        verify: reopen the written file with mfparse and compare names, dtypes and shapes
            before renaming it into place (when mfparse reads that format).
        force_zip64: write zip64 records in zip outputs even when not needed (tests).

    Returns:
        ConvertResult (tensors and bytes written, skipped tensors, notes on what was dropped).

    Raises:
        WriteError: a tensor the target cannot hold, or a destination that is the source.
        OSError: ENOSPC when the disk is too small or fills up (dst is then untouched).

    Example:
        >>> from mfparse.convert import convert
        >>> convert("model.pth", "model.safetensors")
    """
    import mfparse
    from mfparse import writers

    src = os.fspath(src)
    dst = os.fspath(dst)
    if folder_output(dst, to):
        return convert_to_folder(src, dst, to, overwrite=overwrite, skip_unsupported=skip_unsupported,
                                 progress=progress, fsync=fsync, check_space=check_space, verify=verify,
                                 max_shard_size=max_shard_size, weights_only=weights_only)
    fmt = writers.normalize(to) if to else writers.format_for_path(dst)
    writer = writers.module(fmt)
    t0 = time.perf_counter()
    base.refuse_overwrite(dst, [src], overwrite)
    with mfparse.open(src) as m:
        if os.path.exists(dst):
            base.refuse_overwrite(dst, [src], overwrite)
        result = ConvertResult(src, dst, fmt, m.format)
        with _SourceSession(m) as si:
            items = si.items()
            result.skipped.extend(si.skipped)
            if fmt == "onnx":
                from mfparse.writers import onnx as onnx_writer

                items = _filter(items, writer, skip_unsupported, result.skipped)
                onnx_writer.convert_model(m, items, dst, result, progress=progress, fsync=fsync,
                                          check_space=check_space, overwrite=overwrite)
                result.seconds = time.perf_counter() - t0
                return result
            items = _filter(items, writer, skip_unsupported, result.skipped)
            plan = _plan(fmt, writer, m, items, result, force_zip64)
            size = plan.size()
            if check_space:
                base.check_free_space(dst, size)
            total = sum(it.nbytes for it in items)
            bar = base.make_progress(progress, total, f"{os.path.basename(dst)}")
            try:
                with base.atomic_output(dst, fsync=fsync) as af:
                    out = base.Output(af.file, bar, af.tmp_path)
                    out.preallocate(size)
                    notes = plan.write(out)
                    out.finish()
                    result.notes.extend(notes or [])
                    if verify:
                        _verify(af.tmp_path, items, fmt, result)
            finally:
                bar.close()
            result.tensors = len(items)
            result.bytes = os.path.getsize(dst)
    result.seconds = time.perf_counter() - t0
    return result


class _SourceSession:
    def __init__(self, m):
        from mfparse.writers.items import SourceItems

        self.si = SourceItems(m)

    def __enter__(self):
        return self.si

    def __exit__(self, *exc):
        self.si.close()


class _Plan:
    def __init__(self, size, write):
        self._size = size
        self.write = write

    def size(self) -> int:
        return self._size()


def _plan(fmt: str, writer, m, items: list[Item], result: ConvertResult, force_zip64: bool) -> _Plan:
    """How to write the items in format fmt: (estimated size, write(out) -> notes)."""
    tree, kind = _source_state(m)
    has_meta = bool(m.metadata)
    if fmt == "safetensors":
        text = state.dumps(tree) if kind == "tree" else (json.dumps(tree) if kind == "encoded" else None)
        meta = safetensors_metadata(m, text)
        return _Plan(lambda: writer.estimate_size(items, meta), lambda out: writer.write(out, items, meta))
    if fmt == "torch-zip":
        by_name = {it.name: it for it in items}
        missing: list[str] = []
        if kind == "tree":
            obj = _with_items(tree, by_name, missing)
        elif kind == "encoded":
            def tensor(name):
                if name not in by_name:
                    missing.append(name)
                return by_name.get(name)

            obj = state.decode(tree, tensor)
        else:
            obj = dict(by_name)
            if has_meta:
                result.notes.append("the source's metadata has no place in a state dict and was not written")
        if missing:
            result.notes.append(f"{len(missing)} tensor(s) of the structure had no data and were written as None")
        metas = set()
        _collect_names(obj, metas, meta=True)
        if metas:
            result.skipped[:] = [(n, r) for n, r in result.skipped if n not in metas]
            result.notes.append(f"{len(metas)} meta tensor(s) (no data) written as meta tensors")
        if kind is not None:
            placed = set()
            _collect_names(obj, placed)
            extra = [it for it in items if it.name not in placed]
            if extra:
                result.notes.append(f"{len(extra)} tensor(s) outside the checkpoint structure were not written")
                result.skipped.extend((it.name, "not part of the checkpoint structure") for it in extra)
        return _Plan(lambda: writer.estimate_size(obj),
                     lambda out: writer.write(out, obj, force_zip64=force_zip64))
    if fmt == "npz":
        if has_meta:
            result.notes.append(".npz has no metadata: the source's metadata was not written")
        return _Plan(lambda: writer.estimate_size(items), lambda out: writer.write(out, items, force_zip64))
    if fmt == "gguf":
        meta = dict(m.metadata or {})
        meta.pop(state.KEY, None)
        return _Plan(lambda: writer.estimate_size(items, meta), lambda out: writer.write(out, items, meta))
    raise WriteError(f"no writer for {fmt!r}")


def _collect_names(obj, out: set, meta: bool = False) -> None:
    """Names of the Items (or, with meta, of the MetaTensors) in a structure."""
    from mfparse.writers.torchzip import MetaTensor

    if isinstance(obj, (Item, MetaTensor)):
        if isinstance(obj, MetaTensor) == meta:
            out.add(obj.name)
    elif isinstance(obj, dict):
        for v in obj.values():
            _collect_names(v, out, meta)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _collect_names(v, out, meta)
    else:
        fields = getattr(obj, "fields", None)
        if isinstance(fields, dict):
            for v in fields.values():
                _collect_names(v, out, meta)


def _verify(path: str, items: list[Item], fmt: str, result: ConvertResult) -> None:
    """Reopen the written file: every item must be listed with its dtype and shape."""
    import mfparse
    from mfparse.errors import UnsupportedFormatError

    try:
        m = mfparse.open(path)
    except UnsupportedFormatError:
        result.notes.append(f"not verified: this build of mfparse does not read {fmt}")
        return
    with m:
        got = {t.name: t for t in m.tensors()}
        for it in items:
            t = got.get(it.name)
            if t is None:
                if fmt == "torch-zip":
                    continue  # tensors outside the structure (reported as skipped)
                raise WriteError(f"verification failed: {it.name!r} missing from the written file")
            if tuple(t.shape) != tuple(it.shape) or (t.dtype != it.dtype and fmt != "torch-zip"):
                raise WriteError(f"verification failed: {it.name!r} reads back as {t.dtype}{list(t.shape)}, "
                                 f"written as {it.dtype}{list(it.shape)}")


# ---- model folders (sharded safetensors as transformers writes them) ------------------------------

def folder_output(dst: str, to: str | None) -> bool:
    """True when dst names a folder: an existing one, a path ending in a separator, or a path
    without extension when no format is given."""
    if os.path.isdir(dst) or dst.endswith(("/", os.sep)):
        return True
    return to is None and os.path.splitext(os.path.basename(dst))[1] == ""


def _other_files(m) -> tuple:
    """(FileSet, [relative paths]) of the files beside the weights that a model folder carries
    (config, tokenizer, README, ...): every file of the source folder except weight files of any
    framework, indexes and hidden paths; for one file, its folder's files when it holds a
    config.json, else none."""
    from mfparse import locate as loc

    layout = getattr(m, "layout", None)
    if layout is None:
        if not m.path or not os.path.isfile(os.path.join(os.path.dirname(os.path.abspath(m.path)), "config.json")):
            return None, []
        fs = loc._local_fileset(os.path.dirname(os.path.abspath(m.path)))
        used = {os.path.basename(m.path)}
        files = [f for f in fs.list() if "/" not in f]
    else:
        fs = layout.fileset
        used = set(layout.weight_files) | set(layout.index_files)
        files = layout.files
    out = []
    for f in files:
        low = f.lower()
        if f in used or any(p.startswith(".") for p in f.split("/")):
            continue
        if low.endswith(loc.ALL_WEIGHT_EXTS) or loc._is_index_name(os.path.basename(f)):
            continue
        if loc.SHARD_RE.match(os.path.basename(f)):
            continue
        out.append(f)
    return fs, out


def convert_to_folder(src, dst, to=None, *, overwrite: bool = False, skip_unsupported: bool = False, progress=None,
                      fsync: bool = False, check_space: bool = True, verify: bool = True, max_shard_size=None,
                      weights_only: bool = False) -> ConvertResult:
    """Write a model (one file or several) as a Hugging Face folder of safetensors shards; see
    convert() and mfparse/writers/folder.py. Nothing is unpickled: tensors are copied from the
    source files' bytes (in the kernel where they lie contiguous), one shard at a time."""
    import mfparse
    from mfparse.writers import folder
    from mfparse.writers import safetensors as st

    if to is not None and writers_normalize(to) != "safetensors":
        raise WriteError(f"a model folder is written as safetensors shards, not {to}")
    limit = folder.parse_size(max_shard_size if max_shard_size is not None else folder.DEFAULT_MAX_SHARD_SIZE)
    t0 = time.perf_counter()
    src_abs, dst_abs = os.path.realpath(src), os.path.realpath(dst)
    if src_abs == dst_abs or os.path.commonpath([src_abs, dst_abs]) == src_abs and os.path.isdir(src_abs):
        raise WriteError(f"refusing to write {dst}: it is (inside) the source {src}")
    with mfparse.open(src) as m:
        layout = getattr(m, "layout", None)
        if layout is not None and layout.kind == "diffusers":
            raise WriteError(f"{src} is a diffusers pipeline: convert each component folder (unet/, vae/, ...) "
                             "to its own folder, or the whole pipeline to one file")
        result = ConvertResult(src, dst, "safetensors", m.format)
        with _SourceSession(m) as si:
            items = si.items()
            result.skipped.extend(si.skipped)
            items = _filter(items, st, skip_unsupported, result.skipped)
            items, dropped = folder.drop_tied(items)
            if dropped:
                result.notes.append(f"{len(dropped)} tied tensor(s) not written (the same bytes as the kept one; "
                                    "transformers ties them again on load): "
                                    + ", ".join(f"{d} = {k}" for d, k in dropped[:8])
                                    + (" ..." if len(dropped) > 8 else ""))
            shards = folder.plan_shards(items, limit)
            stem = folder.weights_stem(m.files)
            names = folder.shard_names(stem, ".safetensors", len(shards))
            meta = {"format": "pt"}
            total = sum(it.nbytes for it in items)
            fs, others = (None, []) if weights_only else _other_files(m)
            sizes = [st.estimate_size(sh, meta) for sh in shards]
            if check_space:
                extra = sum(_size_of(fs, f) for f in others)
                folder.check_folder_space(dst, sum(sizes) + extra)
            bar = base.make_progress(progress, total, os.path.basename(os.path.normpath(dst)))
            try:
                with folder.atomic_folder(dst, overwrite) as tmp:
                    for name, shard, size in zip(names, shards, sizes):
                        path = os.path.join(tmp, name)
                        with open(path, "xb", buffering=0) as f:
                            out = base.Output(f, bar, path)
                            out.preallocate(size)
                            st.write(out, shard, meta)
                            out.finish()
                            if fsync:
                                os.fsync(f.fileno())
                    result.files = list(names)
                    if len(shards) > 1:
                        wm = {it.name: n for n, shard in zip(names, shards) for it in shard}
                        index_name = f"{stem}.safetensors.index.json"
                        _write_small(os.path.join(tmp, index_name),
                                     folder.index_bytes(wm, total, _index_extra(layout)), fsync)
                        result.files.append(index_name)
                    for rel in others:
                        _copy_from(fs, rel, os.path.join(tmp, *rel.split("/")), fsync)
                        result.files.append(rel)
                    if others:
                        result.notes.append(f"copied {len(others)} other file(s) of the source folder")
                        py = [f for f in others if f.endswith(".py")]
                        if py:
                            result.notes.append(f"{len(py)} Python file(s) copied ({', '.join(py[:3])}"
                                                f"{' ...' if len(py) > 3 else ''}): trust_remote_code=True runs them")
                    if verify:
                        _verify(tmp, items, "safetensors", result)
            finally:
                bar.close()
            result.tensors = len(items)
            result.bytes = sum(os.path.getsize(os.path.join(dst, *f.split("/"))) for f in result.files)
    result.seconds = time.perf_counter() - t0
    return result


def _index_extra(layout) -> dict:
    """The source index's total_parameters (the model's parameter count, which converting does
    not change), when the source had one."""
    if layout is None or len(layout.components) != 1:
        return {}
    v = layout.components[0].index_metadata.get("total_parameters")
    return {"total_parameters": v} if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else {}


def writers_normalize(fmt: str) -> str:
    from mfparse import writers

    return writers.normalize(fmt)


def _size_of(fs, rel: str) -> int:
    src = fs.open(rel)
    try:
        return src.size
    finally:
        src.close()


def _write_small(path: str, data: bytes, fsync: bool) -> None:
    with open(path, "xb") as f:
        f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())


def _copy_from(fs, rel: str, path: str, fsync: bool) -> None:
    """Copy one file of a FileSet (its containment check applies) to a local path."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    src = fs.open(rel)
    try:
        with open(path, "xb", buffering=0) as f:
            out = base.Output(f)
            if src.path is not None and src.size:
                fd = os.open(src.path, os.O_RDONLY)
                try:
                    out.write_item(Item(rel, "uint8", (src.size,), src.size, None, (fd, 0)))
                finally:
                    os.close(fd)
            else:
                for off in range(0, src.size, base.CHUNK):
                    out.write(src.read(off, min(base.CHUNK, src.size - off)))
            if fsync:
                os.fsync(f.fileno())
    finally:
        src.close()
