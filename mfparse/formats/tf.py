"""TensorFlow: frozen GraphDefs (.pb), SavedModels, and checkpoints (tensor bundles).

Formats:
  * ``tf-graphdef``   a GraphDef .pb; its Const nodes hold the weights of a frozen graph.
  * ``tf-savedmodel`` a SavedModel folder or its saved_model.pb: meta graphs, tags,
    signatures, graphs and function libraries; the variables are the tensor bundle
    ``variables/variables.index`` + ``variables.data-NNNNN-of-MMMMM`` next to it.
  * ``tf-checkpoint`` a checkpoint: ``<prefix>.index`` (an SSTable of BundleEntryProto
    records) + ``<prefix>.data-NNNNN-of-MMMMM``. Open the .index, the prefix, or a
    checkpoint folder (the latest checkpoint named by its ``checkpoint`` state file, as
    tf.train.latest_checkpoint picks it).

Tensor names: checkpoint keys as TensorFlow writes them
(``layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE``, ``dense/kernel`` for TF1), and
for Const nodes the node name (``<function>/<node>`` inside a function of a library).
Numeric tensors are zero-copy views of the data file or of tensor_content; typed fields
(float_val, half_val, ...) are decoded on read with TensorFlow's fill rule (fewer values
than elements: the last one repeats; none: zeros); strings come back as object arrays of
bytes; tensors of big-endian bundles are byte-swapped on read (a copy). Partitioned
tensors (stored as slices) are assembled on read (a copy).

Checksums: every SSTable block is verified on open; the crc32c of each tensor's bytes is
verified on request, by :func:`verify`.

Safety: :func:`risky_ops` lists the ops of a SavedModel or GraphDef that read or write
files or run Python (see RISKY_OPS).
"""

from __future__ import annotations

import os
import posixpath
import re
from collections import Counter

from mfparse._lazy import numpy as np

from mfparse import _native, dtypes
from mfparse.records import TensorInfo
from mfparse.errors import CorruptFileError, UnsupportedFormatError
from mfparse.formats import tf_ops as _tf_ops
from mfparse.formats.base import Reader, file_name, opened, parse_windows, read_at, reader_of, source_view, view
from mfparse.formats.onnx import Unique

#: Ops that reach outside the graph when the model runs: they read or write files, run Python,
#: reach the network. Derived from TensorFlow's op registry (mfparse/formats/tf_ops.py, written
#: by tests/fixtures/tf/make_risky_ops.py): op -> what it does, for the ops that are a finding
#: wherever they are (rule "always"). The others count only with what they are given (a path
#: outside the model, a file:// output stream, debug URLs): mfparse/scan/tfgraph.py judges them.
RISKY_OPS = {op: what for op, (what, _sev, rule, _carriers) in _tf_ops.OPS.items() if rule == "always"}

#: Checkpoint I/O ops: every SavedModel carries them in its saver functions (they save and
#: restore the model's own variables), so they are findings only with a path outside the model.
CHECKPOINT_IO_OPS = frozenset(op for op, entry in _tf_ops.OPS.items() if entry[2] == "outside")

DATA_EMPTY, DATA_CONTENT, DATA_TYPED, DATA_STRINGS, DATA_UNSUPPORTED = 0, 1, 2, 3, 4

# TF dtypes TensorFlow stores one element per byte although mfparse's dtype packs them
_ONE_PER_BYTE = frozenset({"int4", "uint4", "int2", "uint2", "float4_e2m1fn"})
_FIELD_KIND = {5: _native.PB_I32, 9: _native.PB_I32, 6: _native.PB_I64, 12: _native.PB_I64}
_SSTABLE_MAGIC = bytes.fromhex("57fb808b247547db")
_STATE_LINE = re.compile(r'^\s*model_checkpoint_path:\s*"((?:[^"\\]|\\.)*)"\s*$', re.M)


# ---- detection and paths ----------------------------------------------------------------------

def probe(source, head: bytes) -> str | None:
    """tf-savedmodel / tf-checkpoint / tf-graphdef, or None."""
    base = os.path.basename(file_name(source)).lower()
    size = source.size
    if size >= 48 and bytes(read_at(source, size - 8, 8)) == _SSTABLE_MAGIC:
        return "tf-checkpoint"
    if not head:
        return None
    if base == "saved_model.pb":
        return "tf-savedmodel"
    if base.endswith(".pb"):
        if head[:3] == b"\x08\x01\x12" and _native.pb_looks_like(head, size, 2):
            return "tf-savedmodel"
        if head[0] in (0x0A, 0x12, 0x22) and _native.pb_looks_like(head, size, 5):
            return "tf-graphdef"
    return None


_ESCAPES = {"n": 10, "t": 9, "r": 13, "a": 7, "b": 8, "f": 12, "v": 11, "\\": 92, "'": 39, '"': 34, "?": 63}


def _text_proto_unescape(s: str) -> str:
    """A protobuf text-format string body (C escapes; octal/hex escapes are UTF-8 bytes)."""
    out = bytearray()
    i = 0
    raw = s.encode("utf-8")
    while i < len(raw):
        c = raw[i]
        if c != 0x5C or i + 1 == len(raw):
            out.append(c)
            i += 1
            continue
        e = chr(raw[i + 1])
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 2
        elif e in "01234567":
            j = i + 1
            while j < len(raw) and j < i + 4 and chr(raw[j]) in "01234567":
                j += 1
            out.append(int(raw[i + 1:j], 8) & 0xFF)
            i = j
        elif e == "x":
            j = i + 2
            while j < len(raw) and j < i + 4 and chr(raw[j]) in "0123456789abcdefABCDEF":
                j += 1
            out.append(int(raw[i + 2:j] or b"0", 16) & 0xFF)
            i = j
        else:
            out.append(c)
            i += 1
    return out.decode("utf-8", "replace")


def _latest_checkpoint(folder: str) -> str | None:
    """The .index path of the checkpoint a `checkpoint` state file names (relative paths are
    relative to the folder; an absolute path outside it falls back to its basename inside)."""
    state = os.path.join(folder, "checkpoint")
    if os.path.isfile(state):
        with open(state, "rb") as f:
            text = f.read(1 << 20).decode("utf-8", "replace")
        m = _STATE_LINE.search(text)
        if m:
            name = _text_proto_unescape(m.group(1))
            cand = name if os.path.isabs(name) else os.path.join(folder, name)
            real_folder = os.path.realpath(folder)
            if os.path.commonpath([os.path.realpath(cand), real_folder]) != real_folder:
                cand = os.path.join(folder, os.path.basename(name))
            if os.path.isfile(cand + ".index"):
                return cand + ".index"
    indexes = [f for f in os.listdir(folder) if f.endswith(".index")]
    if len(indexes) == 1:
        return os.path.join(folder, indexes[0])
    return None


def resolve_path(obj, format: str | None = None):
    """What mfparse.open should open for a path: a SavedModel folder -> its saved_model.pb,
    a checkpoint folder -> the latest checkpoint's .index, a checkpoint prefix -> prefix.index.
    Anything else (other folders included) is returned unchanged."""
    if not isinstance(obj, (str, os.PathLike)):
        return obj
    path = os.fspath(obj)
    if os.path.isdir(path):
        for name in ("saved_model.pb", "saved_model.pbtxt"):
            cand = os.path.join(path, name)
            if os.path.isfile(cand):
                if name.endswith(".pbtxt"):
                    raise UnsupportedFormatError(f"{cand}: text-format SavedModels are not read (only saved_model.pb)")
                return cand
        if format in (None, "tf-checkpoint"):
            latest = _latest_checkpoint(path)
            if latest is not None:
                return latest
        return obj  # not a folder format: Source refuses directories (IsADirectoryError)
    if not os.path.exists(path) and os.path.isfile(path + ".index"):
        return path + ".index"
    return obj


# ---- tensor bundles ---------------------------------------------------------------------------

def data_filename(prefix: str, shard: int, num_shards: int) -> str:
    return f"{prefix}.data-{shard:05d}-of-{num_shards:05d}"


class Bundle:
    """A tensor bundle: the parsed .index and the (lazily mapped) data shards."""

    def __init__(self, index_buf, prefix: str | None, fileset=None):
        """prefix: the checkpoint's path prefix; with `fileset` (a remote folder), its name
        relative to that FileSet, through which the data shards are sized and read."""
        self.prefix = prefix
        self.fileset = fileset
        self.header, entries, slices = _native.tf_bundle(index_buf)
        self.big_endian = self.header["big_endian"]
        self.num_shards = self.header["num_shards"]
        self._sizes: dict[int, int | None] = {}
        self._sources: dict[int, object] = {}
        self.records: dict[str, tuple] = {}
        self.slices: dict[str, list] = {}
        for s in slices:
            self.slices.setdefault(s[0], []).append(s)
        # shards actually used (a header may claim any number of them)
        self.shards = sorted({e[4] for e in entries if not e[8]} | {s[4] for s in slices})
        self.files = {i: data_filename(prefix, i, self.num_shards) for i in self.shards} if prefix else {}
        # the common case (a numeric tensor in a present shard) is built inline; the rest by _info
        sizes = {i: self.shard_size(i) for i in self.shards}
        storages = {i: posixpath.basename(f) if fileset is not None else os.path.basename(f)
                    for i, f in self.files.items()}
        records = self.records
        infos = []
        big = self.big_endian
        for e in entries:
            key, tf_dtype, dtype, shape, shard, offset, size, crc, n_slices, entry_off = e
            total = sizes.get(shard)
            if (total is not None and dtype is not None and dtype != "string" and not n_slices
                    and dtype not in _ONE_PER_BYTE and not big):
                if offset + size > total:
                    self._check_range(key, shard, offset, size, entry_off)
                records[key] = e
                infos.append(TensorInfo(key, dtype, shape, size, offset, storages[shard], None,
                                        {"shard": shard, "crc32c": crc} if crc is not None else {"shard": shard}))
            else:
                infos.append(self._info(e))
        self.infos = infos

    def shard_size(self, shard: int) -> int | None:
        if shard not in self._sizes:
            path = self.files.get(shard)
            if self.fileset is not None:  # a remote shard: its size from the server, nothing fetched
                self._sizes[shard] = self.fileset.size(path) if path else None
            else:
                self._sizes[shard] = os.path.getsize(path) if path and os.path.isfile(path) else None
        return self._sizes[shard]

    def _check_range(self, name: str, shard: int, offset: int, size: int, entry_off: int) -> None:
        total = self.shard_size(shard)
        if total is not None and offset + size > total:
            raise CorruptFileError(f"tensor {name!r}: bytes [{offset}, {offset + size}) lie past the end of "
                                   f"{os.path.basename(self.files[shard])} ({total} bytes)", entry_off)

    def _info(self, e) -> TensorInfo:
        key, tf_dtype, dtype, shape, shard, offset, size, crc, n_slices, entry_off = e
        extras = {"shard": shard}
        if crc is not None:
            extras["crc32c"] = crc
        name_dt = dtype or _native.tf_type_name(tf_dtype).lower()[3:]
        numel = 1
        for d in shape:
            numel *= d
        offset_out = offset
        if n_slices:
            extras["slices"] = len(self.slices.get(key, ()))
            if extras["slices"] != n_slices:
                raise CorruptFileError(f"partitioned tensor {key!r} lists {n_slices} slices but the index "
                                       f"stores {extras['slices']}", entry_off)
            for s in self.slices.get(key, ()):
                _, starts, lengths, s_dtype, s_shard, s_off, s_size, _, s_entry = s
                self._check_slice(key, shape, tf_dtype, starts, lengths, s_dtype, s_size, s_entry)
                self._check_range(key, s_shard, s_off, s_size, s_entry)
            offset_out = None
            size = dtypes.nbytes(name_dt, numel) if dtype and dtype != "string" else size
        else:
            self._check_range(key, shard, offset, size, entry_off)
            if dtype is None or dtype == "string":
                offset_out = None   # variants and strings are not raw arrays
        if self.prefix and not n_slices and self.shard_size(shard) is None:
            extras["missing"] = f"data file {os.path.basename(self.files[shard])} not found"
        if dtype in _ONE_PER_BYTE:
            extras["one_per_byte"] = True
        if self.big_endian:
            extras["byteorder"] = "big"
        if dtype is None:
            extras["tf_dtype"] = _native.tf_type_name(tf_dtype)
        self.records[key] = e
        storage = os.path.basename(self.files[shard]) if shard in self.files and not n_slices else None
        return TensorInfo(key, name_dt if dtype else "unknown", shape, size, offset_out, storage, None, extras)

    @staticmethod
    def _check_slice(key, shape, tf_dtype, starts, lengths, s_dtype, s_size, entry_off) -> None:
        if s_dtype != tf_dtype or len(starts) != len(shape):
            raise CorruptFileError(f"slice of {key!r} has another dtype or rank than the tensor", entry_off)
        numel = 1
        for st, ln, dim in zip(starts, lengths, shape):
            ln = dim if ln == -1 else ln
            if st < 0 or ln < 0 or st + ln > dim:
                raise CorruptFileError(f"slice of {key!r} reaches outside the tensor's shape {shape}", entry_off)
            numel *= ln
        item = _native.tf_itemsize(tf_dtype)
        if item and numel * item != s_size:
            raise CorruptFileError(f"slice of {key!r} stores {s_size} bytes, its extent needs {numel * item}",
                                   entry_off)

    def _source(self, shard: int):
        src = self._sources.get(shard)
        if src is None:
            if not self.prefix:
                raise UnsupportedFormatError("the checkpoint index was not opened from a path, so its data files "
                                             "cannot be located")
            path = self.files.get(shard) or data_filename(self.prefix, shard, self.num_shards)
            if self.fileset is not None:
                if self.shard_size(shard) is None:
                    raise CorruptFileError(f"checkpoint data file {posixpath.basename(path)} not found")
                src = self.fileset.open(path)
            else:
                if not os.path.isfile(path):
                    raise CorruptFileError(f"checkpoint data file {os.path.basename(path)} not found")
                from mfparse.source import Source

                src = Source(path)
            self._sources[shard] = src
        return src

    def _bytes(self, shard: int, offset: int, size: int):
        """Bytes of a data shard: a view of its map, or exactly those bytes of a remote one."""
        return read_at(self._source(shard), offset, size)

    def _numeric_at(self, shard: int, offset: int, dtype: str, shape: tuple, tf_dtype: int) -> np.ndarray:
        src = self._source(shard)
        if src.buf is not None:
            return self._numeric(src.buf, offset, dtype, shape, tf_dtype)
        numel = 1
        for d in shape:
            numel *= d
        n = numel if dtype in _ONE_PER_BYTE else dtypes.nbytes(dtype, numel)
        return self._numeric(read_at(src, offset, n), 0, dtype, shape, tf_dtype)

    def _numeric(self, buf, offset: int, dtype: str, shape: tuple, tf_dtype: int) -> np.ndarray:
        numel = 1
        for d in shape:
            numel *= d
        if dtype in _ONE_PER_BYTE:
            dt = dtypes.numpy_dtype(dtype)
            return np.frombuffer(buf, dtype=dt, count=numel, offset=offset).reshape(shape)
        info = TensorInfo("", dtype, shape, dtypes.nbytes(dtype, numel), offset)
        a = view(buf, info)
        return a.byteswap() if self.big_endian and a.dtype.itemsize > 1 else a

    def read(self, info: TensorInfo) -> np.ndarray:
        e = self.records[info.name]
        key, tf_dtype, dtype, shape, shard, offset, size, crc, n_slices, entry_off = e
        if dtype is None:
            raise UnsupportedFormatError(f"tensor {key!r} is a {_native.tf_type_name(tf_dtype)}, which has no "
                                         "array representation")
        if n_slices:
            return self._assemble(key, dtype, shape, tf_dtype)
        if dtype == "string":
            numel = int(np.prod(shape, dtype=np.int64)) if shape else 1
            data = self._bytes(shard, offset, size)
            offs, lens = _native.tf_bundle_strings(data, offset, numel, self.big_endian)
            out = np.empty(numel, dtype=object)
            out[:] = [bytes(data[o:o + n]) for o, n in zip(offs.tolist(), lens.tolist())]
            return out.reshape(shape)
        return self._numeric_at(shard, offset, dtype, shape, tf_dtype)

    def _assemble(self, key, dtype, shape, tf_dtype) -> np.ndarray:
        if dtype == "string":
            raise UnsupportedFormatError(f"partitioned string tensor {key!r} is not assembled")
        np_dt = dtypes.numpy_dtype(dtype)
        out = np.zeros(shape, dtype=np_dt)
        hits = np.zeros(shape, dtype=np.uint8)  # how often each element is written: exactly once
        for _, starts, lengths, _, s_shard, s_off, s_size, _, s_entry in self.slices.get(key, ()):
            ext = tuple(d if ln == -1 else ln for ln, d in zip(lengths, shape))
            box = tuple(slice(st, st + ln) for st, ln in zip(starts, ext))
            if hits[box].any():
                raise CorruptFileError(f"slices of {key!r} overlap", s_entry)
            hits[box] = 1
            out[box] = self._numeric_at(s_shard, s_off, dtype, ext, tf_dtype)
        if not hits.all():
            raise CorruptFileError(f"slices of {key!r} cover {int(hits.sum())} of its {out.size} elements")
        return out

    def verify(self, names=None) -> list:
        """[(name, problem)] for every tensor whose stored crc32c does not match its bytes."""
        bad = []
        for key, e in self.records.items():
            if names is not None and key not in names:
                continue
            _, tf_dtype, dtype, shape, shard, offset, size, crc, n_slices, entry_off = e
            pieces = [(shard, offset, size, crc, shape)] if not n_slices else [
                (s[4], s[5], s[6], s[7], s[2]) for s in self.slices.get(key, ())]
            for p_shard, p_off, p_size, p_crc, p_shape in pieces:
                if p_crc is None:
                    continue
                try:
                    data = self._bytes(p_shard, p_off, p_size)
                    if dtype == "string":
                        numel = 1
                        for d in p_shape:
                            numel *= d
                        got = _native.tf_bundle_strings_crc(data, p_off, numel, self.big_endian)
                    else:
                        got = _native.crc_mask(_native.crc32c(data))
                except (CorruptFileError, UnsupportedFormatError) as exc:
                    bad.append((key, str(exc)))
                    continue
                if got != p_crc:
                    bad.append((key, f"crc32c mismatch: stored {p_crc:08x}, computed {got:08x}"))
        return bad

    def close(self) -> None:
        for src in self._sources.values():
            src.close()
        self._sources.clear()


class TFCheckpointReader(Reader):
    """A checkpoint's .index (+ its data shards)."""

    format = "tf-checkpoint"

    def __init__(self, source):
        super().__init__(source)
        prefix = None
        fileset = None
        if source.path and source.path.endswith(".index"):
            prefix = source.path[: -len(".index")]
        elif source.buf is None and file_name(source).endswith(".index"):
            # a remote checkpoint: the data shards beside the .index, through its folder's FileSet
            fileset = source.siblings()
            prefix = posixpath.basename(file_name(source))[: -len(".index")] if fileset is not None else None
        # the .index is small: read whole (a remote one's data shards are never fetched to list it)
        self.bundle = Bundle(read_at(source, 0, source.size), prefix, fileset)
        self._tensors = self.bundle.infos

    def read(self, info: TensorInfo) -> np.ndarray:
        return self.bundle.read(info)

    def metadata(self) -> dict:
        h = self.bundle.header
        return {"num_shards": h["num_shards"], "endianness": "big" if h["big_endian"] else "little",
                "producer": h["producer"], "data_files": [os.path.basename(f) for f in self.bundle.files.values()]}

    def verify(self, names=None) -> list:
        return self.bundle.verify(names)

    def close(self) -> None:
        self.bundle.close()


# ---- GraphDef and SavedModel --------------------------------------------------------------------

class TFGraphReader(Reader):
    """A GraphDef (format tf-graphdef) or a SavedModel's saved_model.pb (tf-savedmodel)."""

    def __init__(self, source, saved_model: bool):
        super().__init__(source)
        self.format = "tf-savedmodel" if saved_model else "tf-graphdef"
        self._parse = parse_windows(lambda buf, w: _native.TfGraphParse(buf, saved_model, w), source)
        self._nodes = self._parse.nodes()
        self._functions = self._parse.functions()
        self._graph = None
        self.bundle = None
        infos = []
        siblings = source.siblings() if saved_model and source.path is None else None
        if siblings is not None and siblings.size("variables/variables.index") is not None:
            # a remote SavedModel: its variables' index through the folder's FileSet, read whole
            self._index_source = siblings.open("variables/variables.index")
            try:
                self.bundle = Bundle(read_at(self._index_source, 0, self._index_source.size), "variables/variables",
                                     siblings)
            except BaseException:
                self._index_source.close()
                raise
            infos.extend(self.bundle.infos)
        elif saved_model and source.path:
            prefix = os.path.join(os.path.dirname(source.path), "variables", "variables")
            if os.path.isfile(prefix + ".index"):
                from mfparse.source import Source

                self._index_source = Source(prefix + ".index")
                try:
                    self.bundle = Bundle(self._index_source.buf, prefix)
                except BaseException:
                    self._index_source.close()
                    raise
                infos.extend(self.bundle.infos)
        self._consts: dict[str, tuple] = {}
        unique = Unique({t.name for t in infos})
        for t in self._parse.tensors():
            infos.append(self._const_info(t, unique))
        self._tensors = infos

    def _node_name(self, i: int) -> str:
        mg, fn, name = self._nodes[i][:3]
        if fn >= 0:
            return f"{self._functions[fn][1]}/{name}"
        return name

    def _const_info(self, t, unique) -> TensorInfo:
        node, attr, tf_dtype, dtype, shape, numel, nbytes, data, field, count, data_off, msg_off, msg_len = t
        name = self._node_name(node)
        op = self._nodes[node][3]
        if not (attr == "value" and op in ("Const", "HostConst")):
            name = f"{name}/{attr}"
        name = unique(name)
        extras = {"source": "constant", "node": self._node_name(node), "op_type": op}
        fn = self._nodes[node][1]
        if fn >= 0:
            extras["function"] = self._functions[fn][1]
        offset = data_off if data == DATA_CONTENT else None
        if data == DATA_TYPED:
            extras["stored_as"] = {5: "float_val", 6: "double_val", 7: "int_val", 9: "scomplex_val",
                                   10: "int64_val", 11: "bool_val", 12: "dcomplex_val", 13: "half_val",
                                   16: "uint32_val", 17: "uint64_val", 18: "float8_val"}.get(field, str(field))
            extras["values_stored"] = count
        elif data == DATA_STRINGS:
            extras["stored_as"] = "string_val"
        if dtype in _ONE_PER_BYTE:
            extras["one_per_byte"] = True
        if dtype == "unknown":
            extras["tf_dtype"] = _native.tf_type_name(tf_dtype)
        self._consts[name] = t
        return TensorInfo(name, dtype, shape, nbytes, offset, None, None, extras)

    def read(self, info: TensorInfo) -> np.ndarray:
        t = self._consts.get(info.name)
        if t is None:
            if self.bundle is not None and info.name in self.bundle.records:
                return self.bundle.read(info)
            raise KeyError(info.name)
        node, attr, tf_dtype, dtype, shape, numel, nbytes, data, field, count, data_off, msg_off, msg_len = t
        if data == DATA_UNSUPPORTED:
            raise UnsupportedFormatError(f"constant {info.name!r} ({_native.tf_type_name(tf_dtype)}) has no "
                                         "array representation this reader builds")
        if data == DATA_EMPTY:
            if dtype == "string":
                return np.empty(shape, dtype=object)
            return np.zeros(shape, dtype=dtypes.numpy_dtype(dtype))
        if dtype in _ONE_PER_BYTE and data == DATA_CONTENT:
            return np.frombuffer(read_at(self.source, data_off, numel), dtype=dtypes.numpy_dtype(dtype),
                                 count=numel).reshape(shape)
        if data == DATA_CONTENT:
            return source_view(self.source, info)
        msg = read_at(self.source, msg_off, msg_len)
        if data == DATA_STRINGS:
            offs, lens = _native.pb_collect_bytes(msg, msg_off, 8, count)
            vals = [bytes(msg[o - msg_off:o - msg_off + n]) for o, n in zip(offs.tolist(), lens.tolist())]
            vals = _fill(vals, numel, b"")
            out = np.empty(numel, dtype=object)
            out[:] = vals
            return out.reshape(shape)
        if field == 18:   # float8_val: a bytes field, one byte per element
            raw = np.frombuffer(read_at(self.source, data_off, count), dtype=np.uint8, count=count)
            return _fill_array(raw, numel).view(dtypes.numpy_dtype(dtype)).reshape(shape)
        kind = _FIELD_KIND.get(field, _native.PB_VARINT)
        raw = _native.pb_collect(msg, msg_off, field, kind, count)
        return decode_typed(raw, tf_dtype, dtype, shape, numel)

    def close(self) -> None:
        if self.bundle is not None:
            self.bundle.close()
            self._index_source.close()
        self._parse.close()

    def verify(self, names=None) -> list:
        return self.bundle.verify(names) if self.bundle is not None else []

    # ---- structure ------------------------------------------------------------------------

    def metadata(self) -> dict:
        schema, producer, min_consumer = self._parse.info()
        if self.format == "tf-graphdef":
            return {"producer": producer, "min_consumer": min_consumer}
        out = {"saved_model_schema_version": schema,
               "meta_graphs": [{"tags": tags, "tensorflow_version": v, "tensorflow_git_version": g}
                               for tags, v, g, *_ in self._parse.meta_graphs()]}
        if self.bundle is not None:
            out["variables"] = {"num_shards": self.bundle.header["num_shards"],
                                "data_files": [os.path.basename(f) for f in self.bundle.files.values()]}
        return out

    @property
    def graph(self) -> dict:
        if self._graph is None:
            self._graph = self._build_graph()
        return self._graph

    def _counts(self):
        """Per meta graph (-1 for a bare GraphDef): op histogram over graph and functions, nodes
        of the graph itself, functions; in one pass."""
        hist: dict[int, Counter] = {}
        top: Counter = Counter()
        for mg, fn, name, op, *_ in self._nodes:
            hist.setdefault(mg, Counter())[op] += 1
            if fn < 0:
                top[mg] += 1
        funcs = Counter(f[0] for f in self._functions)
        return hist, top, funcs

    def _build_graph(self) -> dict:
        hist, top, funcs = self._counts()
        if self.format == "tf-graphdef":
            h = hist.get(-1, Counter())
            return {"node_count": top[-1], "total_node_count": sum(h.values()),
                    "op_types": dict(h.most_common()),
                    "placeholders": [x[2] for x in self._nodes if x[3] == "Placeholder" and x[1] < 0],
                    "functions": [{"name": f[1], "node_count": f[2]} for f in self._functions]}
        sigs_by_mg: dict[int, dict] = {}
        for mg, key, method, tensors in self._parse.signatures():
            d = {"method_name": method, "inputs": {}, "outputs": {}}
            for role, k, name, encoding, tf_dtype, shape in tensors:
                d["inputs" if role == 0 else "outputs"][k] = {
                    "name": name, "dtype": _native.tf_type_name(tf_dtype),
                    "shape": None if shape is None else list(shape),
                    **({"encoding": {4: "coo_sparse", 5: "composite_tensor"}[encoding]}
                       if encoding in (4, 5) else {})}
            sigs_by_mg.setdefault(mg, {})[key] = d
        mgs = []
        for i, (tags, version, git, has_graph, producer, offset) in enumerate(self._parse.meta_graphs()):
            h = hist.get(i, Counter())
            mgs.append({"tags": tags, "tensorflow_version": version, "tensorflow_git_version": git,
                        "signatures": dict(sorted(sigs_by_mg.get(i, {}).items())),
                        "node_count": top[i], "function_count": funcs[i],
                        "total_node_count": sum(h.values()), "op_types": dict(h.most_common())})
        graph: dict = {"meta_graphs": mgs}
        serving = next((m["signatures"]["serving_default"] for m in mgs if "serving_default" in m["signatures"]),
                       None)
        if serving is not None:
            def io(d):
                return [{"name": k, "tensor": v["name"], "dtype": _tf_dtype_canonical(v["dtype"]),
                         "shape": v["shape"]} for k, v in d.items()]
            graph["inputs"] = io(serving["inputs"])
            graph["outputs"] = io(serving["outputs"])
        return graph

    def risky_ops(self) -> list:
        out = []
        for mg, fn, name, op, device, n_inputs, offset, op_offset in self._nodes:
            if op in RISKY_OPS:
                full = f"{self._functions[fn][1]}/{name}" if fn >= 0 else name
                out.append((op, full, offset))
        return out


def _tf_dtype_canonical(tf_name: str):
    for code in range(1, 34):
        if _native.tf_type_name(code) == tf_name:
            return _native.tf_dtype(code)
    return None


def _fill(vals: list, numel: int, zero):
    """TensorFlow's rule for typed fields: extra values are ignored, missing ones repeat the
    last value (or are zero when there is none)."""
    if len(vals) >= numel:
        return vals[:numel]
    return vals + [vals[-1] if vals else zero] * (numel - len(vals))


def _fill_array(a: np.ndarray, numel: int) -> np.ndarray:
    if a.size >= numel:
        return a[:numel].copy()
    out = np.empty(numel, dtype=a.dtype)
    out[:a.size] = a
    out[a.size:] = a[-1] if a.size else 0
    return out


def decode_typed(raw: np.ndarray, tf_dtype: int, dtype: str, shape: tuple, numel: int) -> np.ndarray:
    """Values of a typed TensorProto field (uint64) -> the array tf.make_ndarray builds."""
    if tf_dtype in (8, 18):                       # complex: (re, im) pairs, filled pairwise
        part = np.float32 if tf_dtype == 8 else np.float64
        vals = (raw.astype(np.uint32).view(np.float32) if tf_dtype == 8 else raw.view(np.float64)).astype(part)
        if vals.size % 2:
            raise CorruptFileError("complex constant with an odd number of values")
        pairs = vals.reshape(-1, 2)
        n = pairs.shape[0]
        out = np.zeros((numel, 2), dtype=part)
        out[:min(n, numel)] = pairs[:numel]
        if 0 < n < numel:
            out[n:] = pairs[-1]
        return out.view(np.complex64 if tf_dtype == 8 else np.complex128).reshape(shape)
    if tf_dtype == 1:
        vals = raw.astype(np.uint32).view(np.float32)
    elif tf_dtype == 2:
        vals = raw.view(np.float64)
    elif tf_dtype == 9:
        vals = raw.view(np.int64)
    elif tf_dtype == 23:
        vals = raw
    elif tf_dtype == 10:
        vals = raw != 0
    else:
        np_dt = dtypes.numpy_dtype(dtype) if dtype not in _ONE_PER_BYTE else dtypes.numpy_dtype(dtype)
        width = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[np_dt.itemsize]
        vals = raw.astype(width).view(np_dt)
    return _fill_array(vals, numel).reshape(shape)


# ---- module functions -------------------------------------------------------------------------

def risky_ops(target) -> list:
    """[(op, node name, byte offset of the NodeDef)] for every op of a SavedModel or GraphDef
    listed in RISKY_OPS (functions' nodes are named ``<function>/<node>``).

    target: a ModelFile (or Reader) opened on a SavedModel / GraphDef, or anything mfparse.open
    accepts.
    """
    reader = reader_of(target)
    if reader is None:
        with opened(resolve_path(target), _open_tf) as reader:
            return risky_ops(reader)
    return reader.risky_ops() if isinstance(reader, TFGraphReader) else []


def verify(target, names=None) -> list:
    """Verify the crc32c TensorFlow stored for each tensor of a checkpoint or SavedModel
    (reading the data files): [(name, problem)], empty when all match.

    target: a ModelFile or Reader, or anything mfparse.open accepts."""
    reader = reader_of(target)
    if reader is None:
        with opened(resolve_path(target), _open_tf) as reader:
            return verify(reader, names)
    return reader.verify(names) if hasattr(reader, "verify") else []


def _open_tf(source):
    """A SavedModel, GraphDef or checkpoint reader for a source, by what its bytes are."""
    found = probe(source, bytes(read_at(source, 0, 64)))
    if found is None:
        raise UnsupportedFormatError("not a TensorFlow SavedModel, GraphDef or checkpoint", 0)
    return {"tf-savedmodel": open_saved_model, "tf-graphdef": open_graphdef, "tf-checkpoint": open_checkpoint}[found](source)


def open_graphdef(source):
    return TFGraphReader(source, saved_model=False)


def open_saved_model(source):
    return TFGraphReader(source, saved_model=True)


def open_checkpoint(source):
    return TFCheckpointReader(source)


# ---- text ---------------------------------------------------------------------------------------

def _shape_text(shape) -> str:
    if shape is None:
        return "unknown_rank"
    if len(shape) == 1:
        return f"({shape[0]})"
    return "(" + ", ".join(str(d) for d in shape) + ")"


def saved_model_text(graph: dict) -> list[str]:
    """What `saved_model_cli show --all` prints for a SavedModel's tag sets and signatures
    (and its op list, sorted); the concrete functions, which need the Python objects TF
    would load, are not shown."""
    lines: list[str] = []
    for mg in graph.get("meta_graphs", []):
        tags = ", ".join(mg["tags"])
        lines.append(f"MetaGraphDef with tag-set: '{tags}' contains the following SignatureDefs:")
        lines.append("")
        for key, sig in mg["signatures"].items():
            lines.append(f"signature_def['{key}']:")
            for role, title in (("inputs", "input(s)"), ("outputs", "output(s)")):
                lines.append(f"  The given SavedModel SignatureDef contains the following {title}:")
                for k, t in sorted(sig[role].items()):
                    lines.append(f"    {role}['{k}'] tensor_info:")
                    lines.append(f"        dtype: {t['dtype']}")
                    lines.append(f"        shape: {_shape_text(t['shape'])}")
                    lines.append(f"        name: {t['name']}")
            lines.append(f"  Method name is: {sig['method_name']}")
            lines.append("")
        ops = ", ".join(repr(op) for op in sorted(mg["op_types"]))
        lines.append(f"The MetaGraph with tag set {mg['tags']!r} contains the following ops: {{{ops}}}")
        lines.append("")
    return lines
