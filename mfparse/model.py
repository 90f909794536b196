"""The model objects `mfparse.open` returns: ModelFile (one file) and MultiFileModel, a model
of several files (shards, a model folder, a diffusers pipeline, llama.cpp GGUF splits) as one
ModelFile (docs/architecture.md, "Models of several files").

`mfparse.open(FOLDER | INDEX | SHARD)` asks `mfparse.locate` what the location means and, for
anything but one file, returns a `MultiFileModel`:

* `tensors()` lists every tensor once: components in the layout's order (diffusers:
  model_index.json's order), within a component the shards in the order transformers opens
  them (the index's file names sorted; a split set by its numbers), within a shard in file
  order. `TensorInfo.file` is the shard's path relative to the folder, names get the
  component prefix (`unet.`), and `storage` ids are prefixed with the file (`<file>:<id>`) so
  that ids stay unique across files;
* `m[name]` / `m.read(info)` read from the file that holds the tensor (zero-copy views of its
  map as for one file);
* `m.files` lists the weight files; `m.layout` is the `mfparse.locate.Layout`; `m.parts()`
  gives each part as (prefix, relative path, single-file ModelFile);
* `metadata`: the first file's own metadata (for GGUF splits: split 0 holds the key-values),
  `config.<key>` for the folder's config.json essentials (model_type, architectures,
  torch_dtype / dtype, transformers_version, auto_map), `index.<key>` for the index's
  metadata (total_size, total_parameters); diffusers: `model_index.<key>` and
  `<component>.config.<key>`;
* `tree()`: the parts' trees merged (a state dict split in shards is one dict again);
  diffusers: one entry per component.

Validation (as a careful loader; each failure is a CorruptFileError naming the file):
a shard the index names that is missing or outside the folder; a weight_map entry whose shard
does not hold that tensor; a tensor held by two files; a split set with a missing member;
GGUF splits whose `split.no` / `split.count` / `split.tensors.count` disagree with their names
and contents. Two findings do not stop a loader and are reported in `m.warnings` instead
(CorruptFileError with `strict=True`): tensors present in a shard but missing from the index
(they are listed, with their file: transformers loads every tensor of every shard), and an
index `total_size` that matches neither way transformers computes it (the sum of the listed
tensors' bytes with storages shared inside a shard counted once, as huggingface_hub's
`split_torch_state_dict_into_shards` counts, or the plain sum, as transformers < 4.38's
`shard_checkpoint` did for safetensors). transformers itself never reads total_size.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from mfparse._lazy import numpy as np
from mfparse.errors import CorruptFileError, MFParseError
from mfparse.io.base import OutsideFolderError
from mfparse.records import ObjectNode, TensorInfo

__all__ = ["ModelFile", "MultiFileModel", "open_source_file", "open_layout", "is_multi"]


class ModelFile:
    """An open model file. Use as a context manager, or call close().

    Attributes:
        format: "torch-zip", "torch-legacy", "torchscript", "safetensors", ...
        path: the file's path, or None for bytes and anonymous streams.
        size: file size in bytes.
    """

    #: findings that do not stop a loader (models of several files: mfparse.model); none for one file
    warnings: tuple = ()

    def __init__(self, reader, source):
        self._reader = reader
        self._source = source
        self.format: str = reader.format
        self.path: str | None = source.path
        if self.path is None and "://" in (getattr(source, "name", "") or ""):
            self.path = source.name  # a remote file: its URL, credentials stripped
        self.size: int = source.size
        self._infos = reader.tensors()
        self._by_name: dict[str, TensorInfo] | None = None

    # ---- files --------------------------------------------------------------------------------

    @property
    def files(self) -> list[str]:
        """The weight files of the model, relative to its folder: [the file's name] for one
        file ([] for bytes and anonymous streams)."""
        if self.path and "://" in self.path:
            from urllib.parse import unquote, urlsplit

            return [unquote(urlsplit(self.path).path.rpartition("/")[2])]
        return [os.path.basename(self.path)] if self.path else []

    def parts(self) -> list:
        """[(name prefix, relative path, ModelFile)] for every file of the model: one entry,
        ("", None, self), for one file."""
        return [("", None, self)]

    # ---- listing ------------------------------------------------------------------------------

    def tensors(self) -> Iterator[TensorInfo]:
        """Every tensor stored in the file, in file order (no data is read)."""
        return iter(self._infos)

    def _index(self) -> dict[str, TensorInfo]:
        if self._by_name is None:
            self._by_name = {t.name: t for t in self._infos}
        return self._by_name

    def info(self, name: str) -> TensorInfo:
        """The TensorInfo of one tensor (KeyError if absent)."""
        return self._index()[name]

    def keys(self) -> list[str]:
        return [t.name for t in self._infos]

    def __contains__(self, name) -> bool:
        return name in self._index()

    def __len__(self) -> int:
        return len(self._infos)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    # ---- data ---------------------------------------------------------------------------------

    def __getitem__(self, name: str) -> np.ndarray:
        """The tensor's data as numpy: a read-only view of the file when the layout allows."""
        return self.read(self._index()[name])

    def read(self, info: TensorInfo, *, packed: bool = False) -> np.ndarray:
        """The data of a TensorInfo from this file.

        Sub-byte dtypes that the format packs several to a byte (ONNX int4/uint4/float4e2m1/
        int2/uint2/float6, TFLite INT4/UINT4/INT2) come back as their logical values: an
        ml_dtypes array of the tensor's shape, as onnx.numpy_helper.to_array gives. With
        packed=True they come back as the stored bytes instead (uint8, TensorInfo.nbytes of
        them, a view of the file when the layout allows); other tensors are the same either way.
        """
        self._check_open()
        reader = self._reader
        a = reader.read(info)
        if not packed and info.dtype in reader.unpacks and a.dtype == np.uint8:
            from mfparse.dtypes import unpack

            a = unpack(a, info.dtype, tuple(info.shape), info.offset)
        return a

    def _buffer_address(self) -> int | None:
        """Address of the first byte of the file's map (internal: lets writers tell, without
        touching a page, whether an array read from this file is a view of it, and where)."""
        self._check_open()
        buf = self._source.buf
        if buf is None or len(buf) == 0:
            return None
        return np.frombuffer(buf, dtype=np.uint8, count=1).__array_interface__["data"][0]

    @property
    def reader(self):
        """The format's Reader (mfparse.formats.base.Reader): where format-specific operations
        live, as h5py's high-level objects hand out their low-level `id`. Examples: a TF
        SavedModel/GraphDef reader's `risky_ops()`, a TF checkpoint's `verify(names)`, a Keras
        reader's `keras_config()`, a GGUF reader's `value_type(key)`; the module helpers
        `formats.tf.risky_ops(m)`, `formats.keras.model_config(m)`, ... take a ModelFile and
        call these."""
        self._check_open()
        return self._reader

    # ---- structure ----------------------------------------------------------------------------

    @property
    def metadata(self) -> dict:
        """Safe scalars and strings: epoch, best_acc, __metadata__, model config, ..."""
        return self._reader.metadata()

    def tree(self):
        """The file's nested structure with TensorInfo leaves (e.g. model_state_dict /
        optimizer_state_dict / epoch for a training checkpoint)."""
        return self._reader.tree()

    @property
    def graph(self):
        """Inputs, outputs and operators for graph formats (ONNX, TFLite, SavedModel); else None."""
        return self._reader.graph

    # ---- lifetime -----------------------------------------------------------------------------

    def _check_open(self):
        if self._source is None:
            raise ValueError("I/O operation on a closed model file")

    def close(self) -> None:
        if self._source is not None:
            close = getattr(self._reader, "close", None)
            if close is not None:
                close()
            self._source.close()
            self._source = None

    def __enter__(self) -> "ModelFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.path or f"<{self.size} bytes>"
        return f"<mfparse.ModelFile {self.format} {where!r} tensors={len(self._infos)}>"


def open_source_file(src, format: str | None = None) -> ModelFile:
    """A ModelFile over an opened ByteSource (closed again on failure)."""
    from mfparse.formats import open_reader

    try:
        reader = open_reader(src, format)
        return ModelFile(reader, src)
    except MFParseError as e:
        if e.path is None and src.path is not None:
            e.path = os.fspath(src.path)
        elif e.path is None and "://" in (getattr(src, "name", "") or ""):
            e.path = src.name  # a remote file: the URL without credentials
        src.close()
        raise
    except BaseException:
        src.close()
        raise

_new = tuple.__new__


class MultiFileModel(ModelFile):
    """One model over several files (see the module docstring).

    Attributes:
        format: the parts' format, or the sorted formats joined by "+" when they differ.
        path: the location that was opened (folder, index or shard).
        size: total bytes of the weight files.
        files: the weight files, relative to the folder.
        layout: what mfparse.locate found.
        warnings: findings that do not stop a loader (tensors missing from the index, a
            total_size that does not add up).
    """

    def __init__(self, layout, parts, infos, owner, warnings):
        self._reader = None
        self._source = None
        self.layout = layout
        self._parts = parts            # [(Part, ModelFile)]
        self._infos = infos
        self._owner = owner            # name -> part index
        self._by_name = None
        self._file_index = {p.relpath: i for i, (p, _m) in enumerate(parts)}
        self.warnings = warnings
        self._closed = False
        formats = sorted({m.format for _p, m in parts})
        self.format = formats[0] if len(formats) == 1 else "+".join(formats)
        self.path = layout.location
        self.size = sum(m.size for _p, m in parts)
        self._meta = None

    # ---- parts --------------------------------------------------------------------------------

    @property
    def files(self) -> list:
        return [p.relpath for p, _m in self._parts]

    def parts(self) -> list:
        """[(prefix, relative path, ModelFile)] for every file, in listing order."""
        return [(p.prefix, p.relpath, m) for p, m in self._parts]

    _split = parts

    def _part_of(self, info: TensorInfo) -> int:
        i = self._file_index.get(info.file) if info.file is not None else None
        if i is None:
            i = self._owner.get(info.name)
            if i is None:
                raise KeyError(f"{info.name!r} is not a tensor of {self.path}")
        return i

    def _inner(self, info: TensorInfo) -> tuple:
        """(part index, the TensorInfo as the part's own reader lists it)."""
        i = self._part_of(info)
        part = self._parts[i][0]
        name = info.name
        if part.prefix and name.startswith(part.prefix):
            name = name[len(part.prefix):]
        storage = info.storage
        if isinstance(storage, str) and storage.startswith(part.relpath + ":"):
            storage = storage[len(part.relpath) + 1:]
        return i, info._replace(name=name, file=None, storage=storage)

    # ---- data ---------------------------------------------------------------------------------

    def read(self, info: TensorInfo, *, packed: bool = False):
        self._check_open()
        i, inner = self._inner(info)
        return self._parts[i][1].read(inner, packed=packed)

    def _buffer_address(self):
        return None  # several maps: writers go through each part (mfparse.writers.items)

    # ---- structure ----------------------------------------------------------------------------

    @property
    def metadata(self) -> dict:
        if self._meta is None:
            lay = self.layout
            meta: dict = {}
            if lay.kind == "diffusers":
                for k, v in lay.model_index.items():
                    meta[f"model_index.{k}"] = v
                for c in lay.components:
                    for k, v in c.config.items():
                        meta[f"{c.name}.config.{k}"] = v
            else:
                meta.update(self._parts[0][1].metadata or {})
                for k, v in lay.config.items():
                    meta[f"config.{k}"] = v
                for c in lay.components:
                    for k, v in c.index_metadata.items():
                        if isinstance(v, (str, int, float, bool)) or v is None:
                            meta[f"index.{k}"] = v
            self._meta = meta
        return dict(self._meta)

    def tree(self):
        """The parts' trees merged, TensorInfo leaves as tensors() lists them; diffusers:
        {component: tree}."""
        out: dict = {}
        for i, (part, m) in enumerate(self._parts):
            t = self._outer_tree(m.tree(), part.prefix)
            if part.component:
                t = {part.component: t}
            _merge(out, t if isinstance(t, dict) else {part.relpath: t})
        return out

    def _outer_tree(self, node, prefix: str):
        by_name = self._index()

        def walk(v):
            if isinstance(v, TensorInfo):
                return by_name.get(prefix + v.name, v)
            if isinstance(v, ObjectNode):
                return ObjectNode(v.cls, {k: walk(x) for k, x in v.fields.items()})
            if isinstance(v, dict):
                return {k: walk(x) for k, x in v.items()}
            if isinstance(v, list):
                return [walk(x) for x in v]
            if isinstance(v, tuple) and not hasattr(v, "_fields"):
                return tuple(walk(x) for x in v)
            return v

        return walk(node)

    @property
    def graph(self):
        return None

    # ---- lifetime -----------------------------------------------------------------------------

    def _check_open(self):
        if self._closed:
            raise ValueError("I/O operation on a closed model file")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            for _p, m in self._parts:
                m.close()

    def __repr__(self) -> str:
        return (f"<mfparse.ModelFile {self.format} {self.path!r} files={len(self._parts)} "
                f"tensors={len(self._infos)}>")


def _merge(into: dict, other: dict) -> None:
    for k, v in other.items():
        if k in into and isinstance(into[k], dict) and isinstance(v, dict):
            _merge(into[k], v)
        elif k not in into:
            into[k] = v


# ---- opening --------------------------------------------------------------------------------------

def open_layout(layout, format: str | None = None, strict: bool = False) -> MultiFileModel:
    """Open every part of a layout from mfparse.locate and check them against each other."""
    fs = layout.fileset
    parts = []
    infos: list = []
    owner: dict = {}
    warnings: list = []
    try:
        for comp in layout.components:
            first, first_info = len(parts), len(infos)
            where = fs.location(comp.index) if comp.index else None
            for part in comp.parts:
                m = _open_part(fs, part, format, where)
                idx = len(parts)
                parts.append((part, m))
                _add_infos(m, part, idx, infos, owner, parts, fs)
            if comp.weight_map is not None:
                _check_index(comp, parts, first, owner, infos[first_info:], warnings, fs)
            elif comp.kind == "gguf-split":
                _check_gguf_split(comp, parts[first:], fs)
        if strict and warnings:
            raise CorruptFileError(warnings[0], path=layout.location)
        return MultiFileModel(layout, parts, infos, owner, warnings)
    except BaseException:
        for _p, m in parts:
            m.close()
        raise


def _open_part(fs, part, format, where):
    try:
        src = fs.open(part.relpath)
    except OutsideFolderError as e:
        raise CorruptFileError(f"{part.relpath} is outside the folder ({e})", path=where or fs.location(part.relpath)) \
            from None
    except FileNotFoundError:
        raise CorruptFileError(f"shard {part.relpath} is missing" + (" (named by the index)" if where else ""),
                               path=where or fs.location(part.relpath)) from None
    except IsADirectoryError:
        raise CorruptFileError(f"{part.relpath} is a folder, not a weights file", path=where) from None
    return open_source_file(src, format)


def _add_infos(m, part, idx: int, infos: list, owner: dict, parts: list, fs) -> None:
    """Append part idx's tensors as the model lists them; a name held by two files is an error."""
    rel = part.relpath
    prefix = part.prefix
    append = infos.append
    for t in m._infos:
        name, dtype, shape, nbytes, offset, storage, stride, extras, _file = t
        if prefix:
            name = prefix + name
        if storage is not None:
            storage = f"{rel}:{storage}"
        if name in owner:
            other = parts[owner[name]][0].relpath
            raise CorruptFileError(f"tensor {name!r} is in two files: {other} and {rel}", path=fs.location(rel))
        owner[name] = idx
        append(_new(TensorInfo, (name, dtype, shape, nbytes, offset, storage, stride, extras, rel)))


def _check_index(comp, parts, first: int, owner: dict, infos: list, warnings: list, fs) -> None:
    where = fs.location(comp.index)
    prefix = comp.prefix
    file_of = {i: parts[i][0].relpath for i in range(first, len(parts))}
    wm = comp.weight_map
    for tname, shard in wm.items():
        i = owner.get(prefix + tname)
        if i is None or file_of.get(i) != shard:
            held = f" (it is in {file_of[i]})" if i is not None and i in file_of else ""
            raise CorruptFileError(f"the index maps {tname!r} to {shard}, which does not hold it{held}", path=where)
    n = len(prefix)
    extra = [t for t in infos if t.name[n:] not in wm] if len(infos) != len(wm) else []
    if extra:
        names = ", ".join(f"{t.name} ({t.file})" for t in extra[:5]) + (", ..." if len(extra) > 5 else "")
        warnings.append(f"{where}: {len(extra)} tensor(s) in the shards are missing from the index: {names}")
    declared = comp.index_metadata.get("total_size")
    if declared is None:
        return
    if not isinstance(declared, (int, float)) or isinstance(declared, bool):  # JSON gives int or float
        warnings.append(f"{where}: total_size {declared!r} is not a number")
        return
    listed = [t for t in infos if t.name[n:] in wm] if extra else infos
    if declared != sum(t.nbytes for t in listed) and declared not in _total_sizes(listed):
        plain = sum(t.nbytes for t in listed)
        warnings.append(f"{where}: total_size {declared:,} does not match the {plain:,} bytes of the "
                        f"{len(listed)} tensors the index lists")


def _total_sizes(infos) -> set:
    """total_size as transformers / huggingface_hub compute it: once per storage shared in a
    file (the first tensor's bytes, or the storage's extent), or once per tensor."""
    plain = sum(t.nbytes for t in infos)
    first: dict = {}
    extent: dict = {}
    for t in infos:
        if t.storage is None or t.offset is None:
            key = ("t", t.name)
            first[key] = t.nbytes
            extent[key] = (0, t.nbytes)
            continue
        key = (t.file, t.storage)
        first.setdefault(key, t.nbytes)
        lo, hi = extent.get(key, (t.offset, t.offset))
        extent[key] = (min(lo, t.offset), max(hi, t.offset + t.nbytes))
    return {plain, sum(first.values()), sum(hi - lo for lo, hi in extent.values())}


def _check_gguf_split(comp, parts, fs) -> None:
    """llama.cpp's loader: split i (0-based) of n carries split.no = i, split.count = n, and
    split.tensors.count = the tensors of all splits."""
    n = len(parts)
    total = sum(len(m) for _p, m in parts)
    for i, (part, m) in enumerate(parts):
        if m.format != "gguf":
            raise CorruptFileError(f"{part.relpath} is {m.format}, not a GGUF split", path=fs.location(part.relpath))
        meta = m.metadata
        where = fs.location(part.relpath)
        no, count, tensors = meta.get("split.no"), meta.get("split.count"), meta.get("split.tensors.count")
        if count is None or no is None:
            raise CorruptFileError("named as a GGUF split but has no split.no / split.count keys", path=where)
        if _int(count) != n:
            raise CorruptFileError(f"split.count is {count}, but the set has {n} files", path=where)
        if _int(no) != i:
            raise CorruptFileError(f"split.no is {no}, but the file is split {i} (0-based) by its name", path=where)
        if tensors is not None and _int(tensors) != total:
            raise CorruptFileError(f"split.tensors.count is {tensors}, but the {n} splits hold {total} tensors",
                                   path=where)
        if i == 0 and tensors is None:
            raise CorruptFileError("the first GGUF split has no split.tensors.count", path=where)


def _int(v):
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def is_multi(m) -> bool:
    """True for a ModelFile over several files."""
    return isinstance(m, MultiFileModel)


