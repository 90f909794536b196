"""Keras files, read without TensorFlow or Keras: what the HDF5 layout means.

Layouts (see ../shared/reference/formats.md section 1.11):
  * legacy .h5 full model (Keras 2 ``model.save("x.h5")``, Keras 3 legacy): root attributes
    ``model_config`` / ``training_config`` (JSON), ``keras_version``, ``backend``; group
    ``model_weights`` with ``layer_names`` and per layer ``weight_names``; optional
    ``optimizer_weights``;
  * legacy weights-only .h5 (``save_weights``): ``layer_names`` at the root;
  * Keras 3 ``.weights.h5``: groups mirror the object tree, each variable container is a ``vars``
    group holding datasets ``0``, ``1``, ... (attribute ``name`` = the layer's name);
  * Keras 3 ``.keras``: a zip with ``config.json``, ``metadata.json`` and ``model.weights.h5``.
Attribute lists too large for one HDF5 attribute are split by Keras into ``layer_names0``,
``layer_names1``, ...; they are joined here. TensorInfo names stay HDF5 paths
(``model_weights/dense/dense/kernel:0``); ``tree()`` groups them by layer.

``model_config(x)`` returns the parsed model config of any of these (for ``mfparse scan``,
which looks for Lambda layers and modules outside Keras). JSON is parsed, never evaluated.
"""

from __future__ import annotations

import json
import re
from types import MappingProxyType

from mfparse.records import TensorInfo
from mfparse.errors import UnsupportedFormatError
from mfparse.formats.base import opened, reader_of
from mfparse.formats.hdf5 import GROUP, HDF5File, HDF5Reader

#: dtype names Keras 3 writes in a dataset's "dtype" attribute for types HDF5 lacks
_OPAQUE_DTYPES = {"bfloat16": 2, "float8_e4m3fn": 1, "float8_e5m2": 1, "int4": 1, "uint4": 1}

_VARS = re.compile(r"(?:^|/)vars/(\d+)$")


def classify(f: HDF5File) -> str | None:
    """Which Keras layout an HDF5 file has: "model", "weights", "keras3-weights", or None."""
    names = {a[0] for a in f.h5.attrs(0)}
    if "model_config" in names or ("keras_version" in names and f.h5.find("model_weights") >= 0):
        return "model"
    if "layer_names" in names or "layer_names0" in names:
        return "weights"
    if f.h5.find("vars") >= 0 or f.h5.find("layers") >= 0:
        for path, kind in f.h5.dataset_paths():
            if not _VARS.search(path):
                return None
        return "keras3-weights"
    return None


def joined_attr(attrs: dict, key: str):
    """An attribute Keras may have split into key0, key1, ... (HDF5 header size limit)."""
    if key in attrs:
        return attrs[key]
    parts = []
    i = 0
    while f"{key}{i}" in attrs:
        v = attrs[f"{key}{i}"]
        parts.extend(v if isinstance(v, list) else [v])  # (any value: _strs makes strings)
        i += 1
    return parts if i else None


def parse_json(text, what: str):
    """A JSON document from the file (str or bytes), or an error marker; never evaluated."""
    if text is None:
        return None
    if isinstance(text, (bytes, bytearray, memoryview)):
        text = bytes(text).decode("utf-8", "replace")
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        return {"__error__": f"{what} is not valid JSON: {str(e)[:200]}"}


def _strs(v) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        return [v]
    if not isinstance(v, (list, tuple)):
        return [str(v)]
    return [x if isinstance(x, str) else str(x) for x in v]


class KerasH5Reader(HDF5Reader):
    """A Keras .h5 / .weights.h5 file: HDF5 tensors, Keras metadata and a per-layer tree."""

    format = "hdf5"

    def __init__(self, source, file: HDF5File, kind: str):
        super().__init__(source, file)
        self.kind = kind
        if kind == "keras3-weights":
            self._tensors = apply_opaque_dtypes(file, self._tensors)

    def keras_config(self):
        """The parsed model_config (None for weights-only files)."""
        return parse_json(self.file.attrs(0).get("model_config"), "model_config")

    def metadata(self) -> dict:
        attrs = self.file.attrs(0)
        meta = {"keras_format": {"model": "legacy-h5-model", "weights": "legacy-h5-weights",
                                 "keras3-weights": "weights.h5"}[self.kind]}
        for k in ("keras_version", "backend"):
            if k in attrs:
                meta[k] = attrs[k]
        if self.kind == "model":
            mw = self.file.index("model_weights") if self.file.h5.find("model_weights") >= 0 else None
            wattrs = self.file.attrs(mw) if mw is not None else {}
            for k in ("keras_version", "backend"):
                if k not in meta and k in wattrs:
                    meta[k] = wattrs[k]
            meta["model_config"] = parse_json(attrs.get("model_config"), "model_config")
            if "training_config" in attrs:
                meta["training_config"] = parse_json(attrs.get("training_config"), "training_config")
            meta["layer_names"] = _strs(joined_attr(wattrs, "layer_names"))
        elif self.kind == "weights":
            meta["layer_names"] = _strs(joined_attr(attrs, "layer_names"))
        for k, v in attrs.items():
            if k not in ("model_config", "training_config") and not re.fullmatch(r"layer_names\d*", k):
                meta.setdefault(k, v)
        return meta

    def tree(self):
        by_name = {t.name: t for t in self._tensors}
        if self.kind == "keras3-weights":
            return vars_tree(self.file, by_name, "")
        f = self.file
        base = "model_weights" if self.kind == "model" else ""
        out: dict = {"keras_format": self.metadata()["keras_format"]}
        out["layers"] = legacy_layers(f, by_name, base)
        if self.kind == "model" and f.h5.find("optimizer_weights") >= 0:
            oi = f.index("optimizer_weights")
            names = _strs(joined_attr(f.attrs(oi), "weight_names"))
            out["optimizer"] = {n: by_name.get(f"optimizer_weights/{n}") for n in names}
        return out


def legacy_layers(f: HDF5File, by_name: dict, base: str) -> dict:
    """{layer: {weight name: TensorInfo}} from layer_names / weight_names (Keras's own order)."""
    gi = f.h5.find(base) if base else 0
    if gi < 0:  # a model file whose weights group is missing (damaged): no layers
        return {}
    layer_names = _strs(joined_attr(f.attrs(gi), "layer_names"))
    layers = {}
    prefix = f"{base}/" if base else ""
    for layer in layer_names:
        try:
            li = f.index(prefix + layer)
        except KeyError:
            layers[layer] = {}
            continue
        wn = _strs(joined_attr(f.attrs(li), "weight_names"))
        layers[layer] = {w: by_name.get(f"{prefix}{layer}/{w}") for w in wn}
    return layers


def vars_tree(f: HDF5File, by_name: dict, prefix: str) -> dict:
    """Keras 3 object tree: {"layers/dense": {"name": "dense", "vars": {"0": TensorInfo, ...}}, ...}."""
    out: dict = {}
    objs = f.objects
    for i, o in enumerate(objs):
        path = o[0]
        if o[1] != GROUP or not (path == "vars" or path.endswith("/vars")):
            continue
        owner = path[:-5] if path.endswith("/vars") else ""
        attrs = f.attrs(i)
        entry = {"name": attrs.get("name", owner.rsplit("/", 1)[-1])}
        vs = {}
        for j, p in enumerate(objs):
            if p[2] == i:
                vs[p[0][p[11]:]] = by_name.get(p[0])
        entry["vars"] = dict(sorted(vs.items(), key=lambda kv: (len(kv[0]), kv[0])))
        out[owner or "(model)"] = entry
    return out


def apply_opaque_dtypes(f: HDF5File, infos: list) -> list:
    """Keras 3 stores bfloat16 and friends as HDF5 opaque data with a "dtype" attribute."""
    out = []
    for t in infos:
        if t.dtype == "opaque":
            try:
                want = f.attrs(f.index(t.name)).get("dtype")
            except KeyError:
                want = None
            size = _OPAQUE_DTYPES.get(want) if isinstance(want, str) else None
            if size is not None and t.numel * size == t.nbytes:
                extras = dict(t.extras)
                extras["stored_as"] = "opaque"
                t = t._replace(dtype=want, extras=MappingProxyType(extras))
        out.append(t)
    return out


# ---- .keras archives -----------------------------------------------------------------------------

def is_keras_zip(archive) -> bool:
    return archive.find("config.json") is not None and (
        archive.find("model.weights.h5") is not None or archive.find("model.weights.npz") is not None)


class KerasZipReader(HDF5Reader):
    """Keras 3 ``.keras``: tensors of model.weights.h5 (paths inside it), config and metadata."""

    format = "keras"

    def __init__(self, source, archive, file: HDF5File | None):
        self.archive = archive
        if file is None:
            super(HDF5Reader, self).__init__(source)
            self.file = None
        else:
            super().__init__(source, file)
            self._tensors = apply_opaque_dtypes(file, self._tensors)

    def close(self):
        if self.file is not None:
            self.file.close()

    def _json(self, name: str):
        m = self.archive.find(name)
        if m is None:
            return None
        return parse_json(bytes(self.archive.read(m)), name)

    def keras_config(self):
        return self._json("config.json")

    def metadata(self) -> dict:
        meta = {"keras_format": "keras"}
        info = self._json("metadata.json")
        if isinstance(info, dict):
            meta.update(info)
        meta["model_config"] = self.keras_config()
        if self.archive.find("model.weights.npz") is not None and self.file is None:
            meta["weights_member"] = "model.weights.npz"
        assets = [n for n in self.archive.names() if n.startswith("assets/")]
        if assets:
            meta["assets"] = assets
        return meta

    def tree(self):
        if self.file is None:
            return {"keras_format": "keras"}
        return vars_tree(self.file, {t.name: t for t in self._tensors}, "")

    def attrs(self, path: str = "") -> dict:
        if self.file is None:
            raise KeyError(path)
        return super().attrs(path)


def open_hdf5(source, flags: int = 0):
    """An HDF5 file (format="hdf5"): Keras files get the Keras reader, everything else the
    generic one."""
    f = HDF5File(source, flags=flags)
    try:
        kind = classify(f)
        if kind is not None:
            return KerasH5Reader(source, f, kind)
        return HDF5Reader(source, f)
    except BaseException:
        f.close()
        raise


def open_reader(source):
    """A .keras archive (format="keras")."""
    from mfparse.formats.zip import ZipArchive

    archive = ZipArchive(source)
    if not is_keras_zip(archive):
        raise UnsupportedFormatError("zip archive without config.json and model.weights.h5: not a .keras file")
    return open_zip(source, archive)


def open_zip(source, archive):
    """A .keras archive: its model.weights.h5 is read in place when stored, else inflated."""
    m = archive.find("model.weights.h5")
    if m is None:
        return KerasZipReader(source, archive, None)
    if m.method == 0:
        start = m.data_offset
        if source.buf is not None:
            buf = source.buf[start:start + m.size]
        else:  # a remote archive: the member's part of the file's sparse map
            from mfparse.io.sparse import sparse_map

            buf = sparse_map(source).view[start:start + m.size]
        f = HDF5File(source, buf, shift=start, report_base=start)
    else:
        data = archive.read(m)
        f = HDF5File(source, memoryview(bytes(data)), shift=None, report_base=0)
    try:
        return KerasZipReader(source, archive, f)
    except BaseException:
        f.close()
        raise


# ---- for `mfparse scan` --------------------------------------------------------------------------

def model_config(obj) -> dict | None:
    """The parsed model config of a Keras file, or None when it has none (weights-only files,
    non-Keras HDF5).

    Args:
        obj: a path, bytes or binary file (.h5 / .keras: any other file has no Keras config),
            an open mfparse.ModelFile, or a Reader.

    Returns:
        The JSON of the ``model_config`` root attribute (.h5) or of ``config.json`` (.keras),
        parsed with json.loads (never evaluated). A malformed document gives
        ``{"__error__": "..."}``.
    """
    reader = reader_of(obj)
    if reader is None:
        with opened(obj, _open_keras) as reader:
            return None if reader is None else model_config(reader)
    get = getattr(reader, "keras_config", None)
    return get() if get is not None else None


def _open_keras(source):
    """The Keras (or plain HDF5) reader of an .h5 file or a .keras archive; None for other files."""
    from mfparse.formats.hdf5 import probe
    from mfparse.formats.zip import ZipArchive

    from mfparse.formats.base import read_at
    from mfparse.formats.hdf5 import find_superblock_in

    head = bytes(read_at(source, 0, 8))
    if probe(head) or (source.size > 512 and find_superblock_in(source) is not None):
        return open_hdf5(source)
    if head[:4] == b"PK\x03\x04":
        archive = ZipArchive(source)
        return open_zip(source, archive) if is_keras_zip(archive) else None
    return None


__all__ = ["model_config", "classify", "KerasH5Reader", "KerasZipReader", "open_zip", "is_keras_zip", "TensorInfo"]
