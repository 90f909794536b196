"""What a location means: one file, or a model of several files (docs/architecture.md, "Models
of several files").

`locate(path)` answers with a `Layout`: the files to open as one model (`parts`, each a path
relative to a FileSet root, with the prefix its tensors get), the index each group of shards came
from, the folder's `config.json` essentials and what else the folder holds. Every file is
reached through the FileSet (`exists`, `list`, `open`, `location`), so the same rules will apply
to remote folders; nothing here opens a weight file, and JSON files are read as JSON only, with
a size bound.

What is recognised, in this order:

* a path that is not a folder and not named like a shard or an index: one file (TF checkpoint
  prefixes and SavedModel folders resolve as `formats.resolve_path` has them: one file);
* an index file (`*.index.json`, variants `*.index.<variant>.json`): the shards its
  `weight_map` names;
* a shard named `<stem>-0000i-of-0000n.<ext>` (i >= 1): the index beside it that names it
  (`<stem>.<ext>.index.json` and the variant spellings, else any `*.index.json` beside it
  whose weight_map names the shard), else the whole split set `<stem>-00001..n-of-n.<ext>`
  (llama.cpp GGUF splits are such a set; their `split.*` keys are checked when opened);
* a folder, as the loaders read it (`variant` picks `model.<variant>.safetensors` & co.):
  - `model_index.json`: a diffusers pipeline, one component per entry of model_index.json
    that names a library and has a folder with weights, in model_index.json's order; each
    component's tensors are named `<component>.<name>`. A component's weights are chosen as
    diffusers' loader chooses them: the safetensors index, else the single safetensors file,
    else the single `.bin` (components of `transformers` classes: transformers' order below);
    a `.bin` index is used as a last resort (diffusers itself ignores it unless told not to
    use safetensors). Non-variant files unless `variant` is given;
  - transformers' order (`PreTrainedModel.from_pretrained`): `config.json`'s
    `transformers_weights` when present (must stay in the folder), `model.safetensors`,
    `model.safetensors.index.json`, `pytorch_model.bin`, `pytorch_model.bin.index.json`;
    then a diffusers component folder (`diffusion_pytorch_model.*`), a PEFT adapter
    (`adapter_model.safetensors` / `.bin`), `tf_model.h5` (read as HDF5); `flax_model.msgpack`
    alone is refused (UnsupportedFormatError: msgpack is not read);
  - a TF SavedModel folder or checkpoint folder (as `formats.resolve_path`);
  - else exactly one weight file at the top (`.safetensors .bin .pt .pth .ckpt .gguf`) or one
    split set of them: that model; anything else: IsADirectoryError (naming what was found).

A Hugging Face cache snapshot (`.../models--org--name/snapshots/<rev>/`, whose files are links
into `../../blobs/`) is a folder like any other: its FileSet also admits links into that
repository's `blobs` folder, and no other link out of the folder.
"""

from __future__ import annotations

import errno
import os
import posixpath
import re

from mfparse.errors import CorruptFileError, MFParseError, UnsupportedFormatError
from mfparse.io.base import OutsideFolderError, clean_relpath

__all__ = ["Part", "Component", "Layout", "locate", "locate_url", "SHARD_RE", "read_json"]

#: `<stem>-<i>-of-<n><ext>`: transformers/diffusers shards and llama.cpp GGUF splits
SHARD_RE = re.compile(r"^(?P<stem>.+)-(?P<i>\d{5})-of-(?P<n>\d{5})(?P<ext>\.[A-Za-z0-9_]+)$")
#: index files: `model.safetensors.index.json`, `model.safetensors.index.fp16.json`, legacy
#: `x.safetensors.fp16.index.json`, and any other `*.index.json`
INDEX_RE = re.compile(r"^(?P<base>.+?)\.index(?:\.(?P<variant>[^./]+))?\.json$")
#: extensions of files that hold weights (a folder with exactly one of these is that model)
WEIGHT_EXTS = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf")
#: files that are model weights of some framework (convert does not copy them as "other files")
ALL_WEIGHT_EXTS = WEIGHT_EXTS + (".h5", ".hdf5", ".keras", ".msgpack", ".onnx", ".pb", ".tflite", ".npz",
                                 ".npy", ".pkl", ".pickle", ".joblib", ".ot", ".mlmodel", ".model.pt")
#: bounds on the JSON files read here (an index of 100,000 tensors is about 10 MB)
MAX_INDEX_BYTES = 64 << 20
MAX_CONFIG_BYTES = 16 << 20
#: config.json keys copied into ModelFile.metadata (as `config.<key>`)
CONFIG_KEYS = ("model_type", "architectures", "torch_dtype", "dtype", "transformers_version", "_class_name",
               "_diffusers_version", "auto_map")

#: names that make a folder a Hugging Face model or pipeline (checked before TF's folder formats)
_MARKERS = ("model_index.json", "config.json", "model.safetensors.index.json", "model.safetensors")

# weight file families, in the order each loader tries them: (single file, index file)
_TRANSFORMERS = (("model.safetensors", "model.safetensors.index.json"),
                 ("pytorch_model.bin", "pytorch_model.bin.index.json"))
_DIFFUSERS = (("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json"),
              ("diffusion_pytorch_model.bin", "diffusion_pytorch_model.bin.index.json"))
_ADAPTERS = (("adapter_model.safetensors", None), ("adapter_model.bin", None))


class Part:
    """One weight file of a model.

    Attributes:
        relpath: its path relative to the layout's FileSet root ("/" separators).
        prefix: prepended to its tensors' names ("unet." for a diffusers component, else "").
        component: the diffusers component it belongs to, or None.
    """

    def __init__(self, relpath: str, prefix: str = "", component: str | None = None):
        self.relpath = relpath
        self.prefix = prefix
        self.component = component

    def __repr__(self) -> str:
        return f"Part({self.relpath!r}, prefix={self.prefix!r}, component={self.component!r})"


class Component:
    """A group of parts that form one state dict: one model, or one diffusers component.

    Attributes:
        name: the diffusers component ("unet"), or "" for a plain model.
        folder: its folder relative to the root ("" or "unet").
        kind: "single" (one file), "index" (shards listed by an index file), "split" (a
            `-0000i-of-0000n` set without index), "gguf-split" (llama.cpp splits).
        parts: its weight files, in the order their tensors are listed.
        index: relative path of the index file, or None.
        weight_map: the index's tensor name -> shard relpath (root-relative), or None.
        index_metadata: the index's "metadata" object (total_size, ...), or {}.
        config: config.json essentials of the component's folder (CONFIG_KEYS), or {}.
    """

    def __init__(self, name: str, folder: str, kind: str, parts: list, index: str | None = None,
                 weight_map: dict | None = None, index_metadata: dict | None = None, config: dict | None = None):
        self.name = name
        self.folder = folder
        self.kind = kind
        self.parts = parts
        self.index = index
        self.weight_map = weight_map
        self.index_metadata = {} if index_metadata is None else index_metadata
        self.config = {} if config is None else config

    def __repr__(self) -> str:
        return f"Component({self.name!r}, {self.folder!r}, {self.kind!r}, {len(self.parts)} parts)"

    @property
    def prefix(self) -> str:
        return self.name + "." if self.name else ""


class Layout:
    """What a location means.

    Attributes:
        kind: "file" (one file: `path`), "model" (a model folder), "index" (an index file),
            "shards" (a shard of a split set), "diffusers" (a pipeline folder).
        fileset: the FileSet every part is opened through (None for kind "file").
        location: what was asked for (path or URL).
        path: for kind "file", what mfparse.open opens (TF prefixes and folders resolved).
        components: the parts grouped by state dict (one component unless diffusers).
        config: the root folder's config.json essentials (model_type, architectures, dtype,
            auto_map, ...), or {}.
        auto_map: config.json's `auto_map` (classes loaded from .py files of the folder with
            trust_remote_code=True), or None.
        notes: what was seen but not used (other weight formats, variants, ignored files).
        model_index: for diffusers, model_index.json essentials ({"_class_name", ...}).
    """

    def __init__(self, kind: str, location: str, fileset=None, path=None, components: list | None = None):
        self.kind = kind
        self.location = location
        self.fileset = fileset
        self.path = path
        self.components = [] if components is None else components
        self.config: dict = {}
        self.auto_map: dict | None = None
        self.notes: list = []
        self.model_index: dict = {}
        self._files: list | None = None
        self._raw_config: dict = {}

    def __repr__(self) -> str:
        return f"Layout({self.kind!r}, {self.location!r}, {len(self.components)} components)"

    @property
    def parts(self) -> list:
        """Every weight file, components in order."""
        return [p for c in self.components for p in c.parts]

    @property
    def weight_files(self) -> list:
        """Relative paths of the weight files, in listing order."""
        return [p.relpath for p in self.parts]

    @property
    def index_files(self) -> list:
        return [c.index for c in self.components if c.index]

    @property
    def files(self) -> list:
        """Every file under the layout's folder (relative paths, sorted): what `mfparse scan`
        judges (weights, `.py` files named by `auto_map`, tokenizer files ...)."""
        if self._files is None:
            self._files = self.fileset.list() if self.fileset is not None else []
        return list(self._files)

    @property
    def python_files(self) -> list:
        """The `.py` files of the folder (run by transformers' trust_remote_code=True)."""
        return [f for f in self.files if f.endswith(".py")]


# ---- entry point --------------------------------------------------------------------------------

def locate(location, format: str | None = None, variant: str | None = None, fileset=None) -> Layout:
    """Resolve what a location means (see the module docstring).

    Args:
        location: a local path (str or os.PathLike); with `fileset`, a path relative to its
            root ("" for the root folder itself).
        format: the format the caller forces (only passed through: a forced format turns the
            TF folder resolution on or off as `formats.resolve_path` does).
        variant: the weights variant to pick in model folders ("fp16" -> model.fp16.safetensors).
        fileset: a FileSet to resolve `location` in (remote folders); default: the local
            folder of `location`.

    Returns:
        Layout.

    Raises:
        CorruptFileError: an index that is not valid JSON or not an index, or names a file
            outside the folder; a split set with a missing member.
        UnsupportedFormatError: a folder whose only weights mfparse does not read.
        IsADirectoryError: a folder with no model in it (or several).
        FileNotFoundError: nothing at `location`.
    """
    if fileset is not None:
        return _locate_in(fileset, _norm(str(location)), str(location), variant)
    path = os.fspath(location)
    if os.path.isdir(path):
        fs = _local_fileset(path)
        if not any(fs.exists(n) for n in _MARKERS):
            from mfparse.formats import resolve_path

            resolved = resolve_path(path, format)
            if resolved is not path and resolved != path:  # a SavedModel or a TF checkpoint folder
                return Layout("file", path, path=resolved)
        return _locate_in(fs, "", path, variant)
    name = os.path.basename(path)
    if SHARD_RE.match(name) is None and not _is_index_name(name):
        return Layout("file", path, path=location)
    if not os.path.isfile(path):
        return Layout("file", path, path=location)  # a TF prefix, or missing: as before
    folder = os.path.dirname(os.path.abspath(path))
    return _locate_in(_local_fileset(folder), name, path, variant)


def locate_url(url: str, format: str | None = None, variant: str | None = None, storage_options=None,
               **source_options):
    """What a URL means (http(s)://, s3://, gs://, hf://, any fsspec URL): (Layout, the opened
    RemoteSource for one file, else None).

    A URL whose path ends in "/" or an hf:// repository without a file (`hf://org/model`) is a
    folder; a name like a shard or an index is resolved in its folder (the index beside a
    shard, the shards of an index); any other URL is one file, unless it turns out not to be
    one (an S3 prefix, an HTTP folder's index page), then it is tried as a folder. Folders are
    read through a RemoteFileSet, with the rules of local folders.
    """
    from urllib.parse import urlsplit, urlunsplit

    from mfparse.io.base import RangeNotSupportedError
    from mfparse.io.remote import RemoteFileSet, RemoteSource, is_remote_folder, redact_url

    shown = redact_url(url)
    if not is_remote_folder(url):
        parts = urlsplit(url)
        folder, _, name = parts.path.rpartition("/")
        if SHARD_RE.match(name) is not None or _is_index_name(name):
            fs = RemoteFileSet(urlunsplit((parts.scheme, parts.netloc, folder, "", "")), storage_options,
                               **source_options)
            lay = _locate_in(fs, name, shown, variant)
            return lay, (RemoteSource(url, storage_options, **source_options) if lay.kind == "file" else None)
        try:
            return Layout("file", shown, path=url), RemoteSource(url, storage_options, **source_options)
        except (FileNotFoundError, IsADirectoryError, RangeNotSupportedError) as e:
            first = e
        fs = RemoteFileSet(url, storage_options, **source_options)
        try:
            if not fs.list():
                raise first
        except (OSError, ValueError):
            raise first from None
    else:
        fs = RemoteFileSet(url, storage_options, **source_options)
    if not any(fs.exists(n) for n in _MARKERS):
        for name in ("saved_model.pb",):  # a TF SavedModel folder: its graph (variables beside it)
            if fs.exists(name):
                return Layout("file", fs.location(name), path=fs.location(name)), fs.open(name)
    return _locate_in(fs, "", shown, variant), None


def _local_fileset(folder: str):
    """A LocalFileSet of the folder; inside a Hugging Face cache snapshot, links into the
    repository's blobs/ folder are admitted too."""
    from mfparse.io.local import LocalFileSet

    fs = LocalFileSet(folder)
    parent = os.path.dirname(fs._real)
    if os.path.basename(parent) == "snapshots":
        blobs = os.path.join(os.path.dirname(parent), "blobs")
        if os.path.isdir(blobs):
            fs = LocalFileSet(folder, also=(blobs,))
    return fs


def _norm(rel: str) -> str:
    rel = rel.replace("\\", "/").strip("/")
    return "" if rel in ("", ".") else clean_relpath(rel)


def _is_index_name(name: str) -> bool:
    return INDEX_RE.match(name) is not None


def _locate_in(fs, rel: str, location: str, variant: str | None) -> Layout:
    """Resolve `rel` inside FileSet fs: "" is the root folder, else a file of the set."""
    if rel and fs.exists(rel):
        name = posixpath.basename(rel)
        folder = posixpath.dirname(rel)
        if _is_index_name(name):
            comp = _index_component(fs, rel, "", folder)
            lay = Layout("index", location, fs, components=[comp])
            _add_config(fs, lay, folder)
            return lay
        m = SHARD_RE.match(name)
        if m is not None and int(m["n"]) > 1 and 1 <= int(m["i"]) <= int(m["n"]):
            comp = _component_of_shard(fs, folder, name, m)
            lay = Layout("shards", location, fs, components=[comp])
            _add_config(fs, lay, folder)
            return lay
        return Layout("file", location, path=fs.location(rel))
    if rel:
        raise FileNotFoundError(errno.ENOENT, "no such file or directory", location)
    return _locate_folder(fs, location, variant)


# ---- folders ------------------------------------------------------------------------------------

def _top_files(fs, folder: str = "") -> list:
    """Names of the files directly in `folder` of the set."""
    pre = folder + "/" if folder else ""
    out = []
    for f in fs.list():
        if f.startswith(pre) and "/" not in f[len(pre):]:
            out.append(f[len(pre):])
    return out


def _locate_folder(fs, location: str, variant: str | None) -> Layout:
    if fs.exists("model_index.json"):
        return _diffusers(fs, location, variant)
    lay = Layout("model", location, fs)
    _add_config(fs, lay, "")
    comp = _component_in(fs, "", "", variant, lay, library=None, explicit=_explicit_weights(fs, lay))
    if comp is None:
        comp = _single_weights(fs, lay)
    comp.config = lay.config
    lay.components = [comp]
    return lay


def _explicit_weights(fs, lay: Layout) -> str | None:
    """config.json's `transformers_weights` (an explicit weights file name), checked to stay in
    the folder as transformers checks it."""
    cfg = lay._raw_config
    name = cfg.get("transformers_weights") if isinstance(cfg, dict) else None
    if not isinstance(name, str) or not name:
        return None
    try:
        return clean_relpath(name)
    except OutsideFolderError as e:
        raise CorruptFileError(f"config.json: transformers_weights {name!r} is outside the folder ({e})",
                               path=fs.location("config.json")) from None


def _names_for(single: str, index: str | None, variant: str | None) -> tuple:
    """(single file name, [index file names]) for a weights family and variant."""
    if variant is None:
        return single, ([index] if index else [])
    stem, ext = single.rsplit(".", 1)
    v_single = f"{stem}.{variant}.{ext}"
    if not index:
        return v_single, []
    base = index[: -len(".index.json")]
    return v_single, [f"{base}.index.{variant}.json", f"{base}.{variant}.index.json"]


def _component_in(fs, folder: str, name: str, variant: str | None, lay: Layout, library: str | None,
                  explicit: str | None = None) -> Component | None:
    """The weights of one model folder chosen as its loader chooses them, or None."""
    pre = folder + "/" if folder else ""
    if explicit is not None:
        rel = pre + explicit
        if not fs.exists(rel):
            raise CorruptFileError(f"config.json names weights {explicit!r}, which are not in the folder",
                                   path=fs.location(pre + "config.json"))
        if _is_index_name(explicit):
            return _index_component(fs, rel, name, folder)
        return Component(name, folder, "single", [Part(rel, _prefix(name), name or None)])
    if library == "diffusers":
        families = _DIFFUSERS + _TRANSFORMERS
        order = "index-first"  # diffusers: the safetensors index, then the single file
    else:
        families = _TRANSFORMERS + _DIFFUSERS + _ADAPTERS
        order = "single-first"  # transformers: model.safetensors, then its index
    for single, index in families:
        s_name, i_names = _names_for(single, index, variant)
        candidates = []
        if order == "index-first" and single.endswith(".safetensors"):
            candidates += [("index", n) for n in i_names]
            candidates.append(("single", s_name))
        elif order == "index-first":
            candidates.append(("single", s_name))
            candidates += [("index", n) for n in i_names]  # a .bin index: the last resort
        else:
            candidates.append(("single", s_name))
            candidates += [("index", n) for n in i_names]
        for kind, fname in candidates:
            if fs.exists(pre + fname):
                _note_others(fs, folder, pre + fname, lay)
                if kind == "index":
                    return _index_component(fs, pre + fname, name, folder)
                return Component(name, folder, "single", [Part(pre + fname, _prefix(name), name or None)])
    if fs.exists(pre + "tf_model.h5"):
        _note_others(fs, folder, pre + "tf_model.h5", lay)
        return Component(name, folder, "single", [Part(pre + "tf_model.h5", _prefix(name), name or None)])
    return None


def _prefix(name: str) -> str:
    return name + "." if name else ""


def _note_others(fs, folder: str, chosen: str, lay: Layout) -> None:
    """Notes about the other frameworks' weights beside the chosen ones (not used)."""
    pre = folder + "/" if folder else ""
    if fs.exists(pre + "flax_model.msgpack"):
        lay.notes.append(f"{pre}flax_model.msgpack: Flax msgpack weights (not read)")
    if pre + "tf_model.h5" != chosen and fs.exists(pre + "tf_model.h5"):
        lay.notes.append(f"{pre}tf_model.h5: TensorFlow weights beside {posixpath.basename(chosen)} (not used)")


def _single_weights(fs, lay: Layout) -> Component:
    """A folder without the loaders' names: one weight file or one split set at its top."""
    top = _top_files(fs, "")
    weights = sorted(f for f in top if f.lower().endswith(WEIGHT_EXTS))
    sets: dict = {}
    singles = []
    for f in weights:
        m = SHARD_RE.match(f)
        if m is not None and int(m["n"]) > 1:
            sets.setdefault((m["stem"], m["n"], m["ext"]), []).append(f)
        else:
            singles.append(f)
    models = [("single", f) for f in singles] + [("split", k) for k in sets]
    if len(models) == 1:
        kind, what = models[0]
        if kind == "single":
            return Component("", "", "single", [Part(what)])
        stem, n, ext = what
        first = f"{stem}-00001-of-{n}{ext}"
        return _component_of_shard(fs, "", first, SHARD_RE.match(first))
    if any(f.endswith(".msgpack") for f in top) and not models:
        raise UnsupportedFormatError(f"{lay.location}: the folder holds only Flax msgpack weights, which mfparse "
                                     "does not read")
    if models:
        names = [w if k == "single" else f"{w[0]}-*-of-{w[1]}{w[2]}" for k, w in models]
        raise IsADirectoryError(errno.EISDIR, f"is a directory holding {len(models)} models ("
                                + ", ".join(names[:6]) + (", ..." if len(names) > 6 else "") + "); open one of them",
                                lay.location)
    raise IsADirectoryError(errno.EISDIR, "is a directory without model weights mfparse recognises (no "
                            "model.safetensors, pytorch_model.bin, index, model_index.json or SavedModel)",
                            lay.location)


def _diffusers(fs, location: str, variant: str | None) -> Layout:
    lay = Layout("diffusers", location, fs)
    index = read_json(fs, "model_index.json", MAX_CONFIG_BYTES)
    if not isinstance(index, dict):
        raise CorruptFileError("model_index.json is not a JSON object", path=fs.location("model_index.json"))
    for k in ("_class_name", "_diffusers_version"):
        if isinstance(index.get(k), str):
            lay.model_index[k] = index[k]
    for comp, spec in index.items():
        if comp.startswith("_") or not isinstance(spec, list) or len(spec) != 2:
            continue
        library = spec[0] if isinstance(spec[0], str) else None
        try:
            folder = clean_relpath(comp)
        except OutsideFolderError:
            raise CorruptFileError(f"model_index.json: component {comp!r} is outside the folder",
                                   path=fs.location("model_index.json")) from None
        if "/" in folder or folder in ("", "."):
            continue
        c = _component_in(fs, folder, comp, variant, lay, library)
        if c is None:
            continue  # schedulers, tokenizers, feature extractors: no weights
        c.config = _config_essentials(fs, folder + "/config.json", lay)[0]
        lay.components.append(c)
    if not lay.components:
        raise IsADirectoryError(errno.EISDIR, "is a diffusers pipeline folder without component weights"
                                + (f" for variant {variant!r}" if variant else ""), location)
    return lay


# ---- indexes and split sets ---------------------------------------------------------------------

def read_json(fs, rel: str, limit: int, object_pairs_hook=None):
    """A JSON file of the set, refused above `limit` bytes; CorruptFileError naming it when it
    is not JSON."""
    src = fs.open(rel)
    try:
        if src.size > limit:
            raise CorruptFileError(f"{rel} is {src.size:,} bytes, more than the {limit:,} read for it",
                                   path=fs.location(rel))
        data = bytes(src.read(0, src.size))
    finally:
        src.close()
    try:
        import json

        return json.loads(data.decode("utf-8"), object_pairs_hook=object_pairs_hook)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CorruptFileError(f"{rel} is not valid JSON: {e}", path=fs.location(rel)) from None


def _no_duplicates(pairs):
    d = dict(pairs)
    if len(d) != len(pairs):
        seen = set()
        for k, _v in pairs:
            if k in seen:
                raise _Duplicate(k)
            seen.add(k)
    return d


class _Duplicate(Exception):
    pass


def _index_component(fs, rel: str, name: str, folder: str) -> Component:
    """The shards an index file names, checked: a JSON object with a weight_map of str -> str,
    no name twice, every shard inside the index's folder."""
    where = fs.location(rel)
    try:
        index = read_json(fs, rel, MAX_INDEX_BYTES, _no_duplicates)
    except _Duplicate as e:
        raise CorruptFileError(f"the index names {e.args[0]!r} twice", path=where) from None
    wm = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(wm, dict):
        raise CorruptFileError("not a weights index (no weight_map object)", path=where)
    meta = index.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    base = posixpath.dirname(rel)
    pre = base + "/" if base else ""
    if not wm:
        raise CorruptFileError("the index's weight_map is empty", path=where)
    try:
        names = set(wm.values())
    except TypeError:  # an unhashable value: a list or an object
        names = {None}
    shards = {}
    for shard in names:
        if not isinstance(shard, str) or not shard:
            tname = next(k for k, v in wm.items() if not isinstance(v, str) or not v)
            raise CorruptFileError(f"weight_map entry {tname!r} is not a file name", path=where)
        try:
            target = pre + clean_relpath(shard)
        except OutsideFolderError:
            tname = next(k for k, v in wm.items() if v == shard)
            raise CorruptFileError(f"weight_map entry {tname!r} names {shard!r}, outside the folder",
                                   path=where) from None
        if target == rel:
            raise CorruptFileError(f"the weight_map names the index itself ({shard!r})", path=where)
        shards[shard] = target
    if all(k == v for k, v in shards.items()):
        weight_map = wm  # the common case: plain file names beside the index
    else:
        weight_map = {k: shards[v] for k, v in wm.items()}
    # transformers opens the shards in sorted order of their names (get_checkpoint_shard_files)
    parts = [Part(t, _prefix(name), name or None) for t in sorted(set(weight_map.values()))]
    return Component(name, folder, "index", parts, rel, weight_map, meta)


def _component_of_shard(fs, folder: str, name: str, m) -> Component:
    """A shard: the index beside it that names it, else its whole split set."""
    pre = folder + "/" if folder else ""
    stem, ext = m["stem"], m["ext"]
    candidates = [f"{stem}{ext}.index.json"]
    if "." in stem:  # a variant: model.fp16-00001-of-00002.safetensors
        b, v = stem.rsplit(".", 1)
        candidates += [f"{b}{ext}.index.{v}.json", f"{b}{ext}.{v}.index.json"]
    for c in candidates:
        if fs.exists(pre + c):
            comp = _index_component(fs, pre + c, "", folder)
            if pre + name in comp.weight_map.values():
                return comp
    for f in _top_files(fs, folder):
        if _is_index_name(f) and f not in candidates:
            try:
                comp = _index_component(fs, pre + f, "", folder)
            except MFParseError:
                continue  # some other JSON file
            if pre + name in comp.weight_map.values():
                return comp
    n = int(m["n"])
    parts = []
    for i in range(1, n + 1):
        rel = f"{pre}{stem}-{i:05d}-of-{m['n']}{ext}"
        if not fs.exists(rel):
            raise CorruptFileError(f"shard {posixpath.basename(rel)} of the {n}-file set is missing",
                                   path=fs.location(rel))
        parts.append(Part(rel))
    kind = "gguf-split" if ext.lower() == ".gguf" else "split"
    return Component("", folder, kind, parts)


# ---- config.json --------------------------------------------------------------------------------

def _config_essentials(fs, rel: str, lay: Layout) -> tuple:
    """(essentials, raw config or None) of a config.json; a file too large or not JSON is a
    note, not an error (the weights are still the model)."""
    if not fs.exists(rel):
        return {}, None
    try:
        cfg = read_json(fs, rel, MAX_CONFIG_BYTES)
    except CorruptFileError as e:
        lay.notes.append(str(e))
        return {}, None
    if not isinstance(cfg, dict):
        lay.notes.append(f"{rel}: not a JSON object")
        return {}, None
    out = {}
    for k in CONFIG_KEYS:
        v = cfg.get(k)
        if isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            out[k] = v
        elif k == "auto_map" and isinstance(v, dict):
            out[k] = {str(a): b for a, b in v.items() if isinstance(b, (str, list))}
    return out, cfg


def _add_config(fs, lay: Layout, folder: str) -> None:
    rel = (folder + "/" if folder else "") + "config.json"
    lay.config, raw = _config_essentials(fs, rel, lay)
    lay._raw_config = raw or {}
    if isinstance(lay.config.get("auto_map"), dict):
        lay.auto_map = lay.config["auto_map"]
    for c in lay.components:
        if not c.config:
            c.config = lay.config

