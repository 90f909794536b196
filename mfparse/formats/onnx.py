"""ONNX: ModelProto files (.onnx), with external data, and bare TensorProto files (.pb).

The C walker (csrc/mf_onnx.c) reads the protobuf wire format once and skips raw_data, so
listing a 1 GB model reads only its metadata. This module names the tensors, resolves
external data against the model's folder, and decodes typed fields when a tensor is read.

Which tensors are listed (``m.tensors()``), and how they are named:
  * graph initializers: their own name;
  * sparse initializers: the values tensor under the sparse tensor's name, the indices
    tensor under its own name (``<name>.indices`` when it has none);
  * tensors held by node attributes: a Constant node's tensor under the node's output name
    (what Netron and onnxruntime call it), any other attribute tensor as
    ``<node name>/<attribute>`` (``[i]`` appended for lists);
  * the same, recursively, in subgraphs (If/Loop/Scan bodies), functions and training graphs.
    A name that is already taken is qualified with the graph path
    (``<node>/<attribute>/<name>``), so every listed name is unique and main-graph
    initializers always keep theirs.

Data: raw_data is a zero-copy view of the file; typed fields (float_data, int32_data, ...)
are decoded on read. Sub-byte types (int4, uint4, float4e2m1, int2, uint2, float6e2m3,
float6e3m2) are stored packed low bits first, in raw_data and in int32_data alike (one byte of
the stream per int32 value; float6: one element per value); the reader hands out the packed
bytes and ModelFile.read unpacks them into ml_dtypes values of the tensor's shape, as
onnx.numpy_helper.to_array does (read(info, packed=True): the packed bytes);
strings come back as an object array of bytes; external data is a view of a read-only map of
the external file. A location that is absolute, contains ``..``, or resolves (through
symlinks) outside the model's folder is never opened: reading such a tensor raises
UnsafeContentError, and its TensorInfo says why in ``extras["external"]["refused"]``.
"""

from __future__ import annotations

import os
import re
from collections import Counter

from mfparse._lazy import numpy as np

from mfparse import _native, dtypes
from mfparse.records import EMPTY, TensorInfo
from mfparse.errors import CorruptFileError, UnsafeContentError, UnsupportedFormatError
from mfparse.formats.base import Reader, access, file_name, parse_windows, read_at, source_view

# ModelProto field numbers a file may start with (onnx writes ir_version first)
_MODEL_FIELDS = {1, 2, 3, 4, 5, 6, 7, 8, 14, 20, 25, 26}

# C record constants (csrc/mf_onnx.h)
SRC_INITIALIZER, SRC_SPARSE_VALUES, SRC_SPARSE_INDICES, SRC_ATTRIBUTE = 1, 2, 3, 4
SRC_ATTR_SPARSE_VALUES, SRC_ATTR_SPARSE_INDICES, SRC_BARE = 5, 6, 7
DATA_EMPTY, DATA_RAW, DATA_TYPED, DATA_EXTERNAL, DATA_STRINGS = 0, 1, 2, 3, 4
SCOPE_GRAPH, SCOPE_SUBGRAPH, SCOPE_FUNCTION, SCOPE_TRAINING = 0, 1, 2, 3

_FIELD_NAMES = {4: "float_data", 5: "int32_data", 6: "string_data", 7: "int64_data", 10: "double_data",
                11: "uint64_data"}
_FIELD_KIND = {4: _native.PB_I32, 5: _native.PB_VARINT, 7: _native.PB_VARINT, 10: _native.PB_I64,
               11: _native.PB_VARINT}
_SOURCE_NAMES = {SRC_INITIALIZER: "initializer", SRC_SPARSE_VALUES: "sparse_initializer",
                 SRC_SPARSE_INDICES: "sparse_initializer", SRC_ATTRIBUTE: "attribute",
                 SRC_ATTR_SPARSE_VALUES: "attribute", SRC_ATTR_SPARSE_INDICES: "attribute", SRC_BARE: "tensor"}
_DIGITS = re.compile(r"[0-9]+\Z")


class Unique:
    """Hands out names not taken yet: the name itself, else name#1, name#2, ... (a counter
    per name keeps a file that repeats one name many times linear)."""

    def __init__(self, taken: set):
        self.taken = taken
        self._next: dict[str, int] = {}

    def __call__(self, name: str) -> str:
        if name in self.taken:
            k = self._next.get(name, 1)
            while f"{name}#{k}" in self.taken:
                k += 1
            self._next[name] = k + 1
            name = f"{name}#{k}"
        self.taken.add(name)
        return name


def probe(source, head: bytes) -> str | None:
    """'onnx' for a .onnx file whose first bytes parse as ModelProto records, else None.

    ONNX has no magic number: the extension says what the file claims to be, and a cheap
    look at the first records (field numbers, wire types, lengths that fit) confirms it. A
    .pb file counts only when it starts the way onnx writes a model (ir_version >= 3 first);
    a SavedModel starts with schema version 1, a GraphDef with a node.
    """
    path = file_name(source).lower()
    if not head or not (path.endswith(".onnx") or path.endswith(".pb")):
        return None
    if (head[0] >> 3) not in _MODEL_FIELDS or not _native.pb_looks_like(head, source.size, 26):
        return None
    if path.endswith(".pb"):
        # a .pb may be TensorFlow's too: accept only what onnx writes, ir_version (3..) first
        # and then one of the ModelProto fields that follow it
        if not (len(head) > 2 and head[0] == 0x08 and 3 <= head[1] < 0x80 and
                (head[2] >> 3) in _MODEL_FIELDS - {1} and head[2] & 7 in (0, 2)):
            return None
    return "onnx"


def _uint(text: str, what: str, tensor: str) -> int:
    if not _DIGITS.match(text):
        raise CorruptFileError(f"ONNX tensor {tensor!r}: external data {what} {text!r} is not a decimal integer")
    return int(text)


def location_problem(location: str) -> str | None:
    """Why an external-data location may not be opened, judged on the string alone."""
    if not location:
        return "empty location"
    if "\0" in location:
        return "location contains a NUL byte"
    if os.path.isabs(location) or location.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", location):
        return "absolute location"
    parts = re.split(r"[/\\]", location)
    if ".." in parts:
        return "location contains '..'"
    return None


class OnnxReader(Reader):
    """An ONNX ModelProto (format "onnx") or a bare TensorProto (format "onnx-tensor")."""

    format = "onnx"
    unpacks = dtypes.PACKED  # ONNX packs every sub-byte type low bits first (onnx.proto)

    def __init__(self, source, bare: bool = False):
        super().__init__(source)
        if bare:
            self.format = "onnx-tensor"
        # a remote file: the protobuf walk over a sparse window, raw_data skipped by its length;
        # each pass stops at the first record not fetched yet (a record's place depends on the
        # lengths before it), and a fetch brings 64 KiB, so small tensors come in batches
        with access(source, scattered=True):  # a local map: one record head per initializer
            self._parse = parse_windows(lambda buf, w: _native.OnnxParse(buf, bare, w), source)
        self._graph = None
        self._scopes = self._parse.scopes()
        self._paths: dict[int, str] = {}
        self._records: dict[str, dict] = {}   # name -> C record, for tensors not read as plain views
        self._ext_sources: dict[str, object] = {}
        self._ext_status: dict[str, tuple] = {}
        self._meta = self._parse.meta() if not bare else {}
        infos, special = self._parse.tensors(TensorInfo, EMPTY)
        self._build(infos, special)

    # ---- naming ---------------------------------------------------------------------------

    def _node_label(self, idx: int) -> str:
        _, op, _, name, out0, _, _, _ = self._parse.node(idx)
        return name or out0 or f"{op or 'node'}#{idx}"

    def _scope_path(self, i: int) -> str:
        """'' for the main graph, 'If_0/then_branch' for a subgraph, 'function:dom.F', ..."""
        if i < 0:
            return ""
        if i in self._paths:
            return self._paths[i]
        kind, parent, node, attr, index, name, domain = self._scopes[i][:7]
        if kind == SCOPE_GRAPH:
            path = ""
        elif kind == SCOPE_SUBGRAPH:
            here = f"{self._node_label(node)}/{attr}" + (f"[{index}]" if index else "")
            up = self._scope_path(parent)
            path = f"{up}/{here}" if up else here
        elif kind == SCOPE_FUNCTION:
            path = f"function:{domain}.{name}" if domain else f"function:{name}"
        else:
            path = f"training_info[{index}]/{attr}"
        self._paths[i] = path
        return path

    def _base_name(self, rec: dict, partner_name: str | None) -> str:
        src = rec["source"]
        if src in (SRC_INITIALIZER, SRC_SPARSE_VALUES, SRC_BARE):
            return rec["name"] or ("tensor" if src == SRC_BARE else f"initializer#{rec['index']}")
        if src in (SRC_SPARSE_INDICES, SRC_ATTR_SPARSE_INDICES):
            if rec["name"] and rec["name"] != partner_name:
                return rec["name"]
            return f"{partner_name}.indices"
        # attribute tensors
        _, op, domain, _, out0, _, _, _ = self._parse.node(rec["node"])
        if op == "Constant" and domain in ("", "ai.onnx") and out0:
            return out0
        label = self._node_label(rec["node"])
        return f"{label}/{rec['attr']}" + (f"[{rec['attr_index']}]" if rec["attr_index"] else "")

    def _build(self, infos: list, special: list) -> None:
        if not special:
            self._tensors = infos
            return
        # plain initializers of the main graph came back finished (C flagged repeated names)
        # and keep their names; then everything else, main graph before nested scopes, in
        # file order, named so that no name repeats
        unique = Unique({t.name for t in infos if t is not None})
        order = sorted(special, key=lambda ir: (self._scope_kind(ir[1]["scope"]) != SCOPE_GRAPH, ir[0]))
        names: dict[int, str] = {}
        recs = dict(special)
        for i, rec in order:
            rec["index"] = i
            partner = rec["partner"]
            partner_name = None
            if rec["source"] in (SRC_SPARSE_INDICES, SRC_ATTR_SPARSE_INDICES) and partner >= 0:
                partner_name = names.get(partner) or self._base_name(recs[partner], None)
            name = self._base_name(rec, partner_name)
            if name in unique.taken:
                path = self._scope_path(rec["scope"])
                name = f"{path}/{name}" if path else name
            name = unique(name)
            names[i] = name
            infos[i] = self._finish(name, rec)
        for i, rec in special:  # sparse values and indices name each other
            if rec["dense_shape"] is not None and rec["partner"] >= 0:
                sp = infos[i].extras["sparse"]
                sp["indices" if sp["role"] == "values" else "values"] = names[rec["partner"]]
        self._tensors = infos

    def _scope_kind(self, scope: int) -> int:
        return self._scopes[scope][0] if scope >= 0 else SCOPE_GRAPH


    def _finish(self, name: str, rec: dict) -> TensorInfo:
        extras: dict = {"source": _SOURCE_NAMES[rec["source"]]}
        if rec["source"] in (SRC_ATTRIBUTE, SRC_ATTR_SPARSE_VALUES, SRC_ATTR_SPARSE_INDICES):
            _, op, _, _, _, _, _, _ = self._parse.node(rec["node"])
            extras["source"] = "constant" if op == "Constant" else "attribute"
            extras["node"] = self._node_label(rec["node"])
            extras["op_type"] = op
            extras["attribute"] = rec["attr"]
        path = self._scope_path(rec["scope"])
        if path:
            extras["graph"] = path
        if rec["dense_shape"] is not None:
            role = "indices" if rec["source"] in (SRC_SPARSE_INDICES, SRC_ATTR_SPARSE_INDICES) else "values"
            extras["sparse"] = {"role": role, "dense_shape": rec["dense_shape"]}
        if rec["segment"] is not None:
            extras["segment"] = rec["segment"]
        offset = None
        storage = None
        data = rec["data"]
        if data == DATA_RAW:
            offset = rec["data_off"]
        elif data == DATA_TYPED:
            extras["stored_as"] = _FIELD_NAMES[rec["field"]]
        elif data == DATA_STRINGS:
            extras["stored_as"] = "string_data"
        elif data == DATA_EXTERNAL:
            ext, offset = self._external(name, rec)
            extras["external"] = ext
            storage = ext["location"]
        self._records[name] = rec
        return TensorInfo(name, rec["dtype"], rec["shape"], rec["nbytes"], offset, storage, None, extras)

    # ---- external data ----------------------------------------------------------------------

    def _external(self, name: str, rec: dict):
        """(extras dict, offset or None) for a tensor stored in an external file."""
        kv = dict(rec["external"])  # a repeated key: the last one wins, as onnx's helper reads them
        location = kv.get("location")
        if location is None:
            raise CorruptFileError(f"ONNX tensor {name!r} is stored externally but names no location",
                                   rec["msg_off"])
        if rec["dtype"] == "string":
            raise CorruptFileError(f"ONNX string tensor {name!r} is stored as external data", rec["msg_off"])
        offset = _uint(kv.get("offset", "0"), "offset", name)
        length = _uint(kv["length"], "length", name) if "length" in kv else None
        ext = {"location": location, "offset": offset}
        if length is not None:
            ext["length"] = length
        if "checksum" in kv:
            ext["checksum"] = kv["checksum"]
        status = self._resolve(location)
        if status[0] != "ok":
            ext[status[0]] = status[1]
            return ext, None
        size = status[2]
        if length is None:
            if offset > size:
                raise CorruptFileError(f"ONNX tensor {name!r}: external data offset {offset} lies past the end "
                                       f"of {location!r} ({size} bytes)", rec["msg_off"])
            length = size - offset
        if offset + length > size:
            raise CorruptFileError(f"ONNX tensor {name!r}: external data [{offset}, {offset + length}) runs past "
                                   f"the end of {location!r} ({size} bytes)", rec["msg_off"])
        if length != rec["nbytes"]:
            raise CorruptFileError(f"ONNX tensor {name!r}: external data holds {length} bytes but its type and "
                                   f"shape need {rec['nbytes']}", rec["msg_off"])
        return ext, offset

    def _resolve(self, location: str) -> tuple:
        """('ok', real path, size) | ('refused', reason) | ('missing', reason), cached per location."""
        st = self._ext_status.get(location)
        if st is not None:
            return st
        problem = location_problem(location)
        folder = self.source.path and os.path.dirname(os.path.realpath(self.source.path))
        siblings = self.source.siblings() if self.source.path is None else None
        if problem is not None:
            st = ("refused", problem)
        elif siblings is not None:  # a remote model: the file beside it, through its FileSet
            st = _side_file(siblings, location)
        elif not folder:
            st = ("missing", "the model was not opened from a path, so external data cannot be located")
        else:
            real = os.path.realpath(os.path.join(folder, location))
            if os.path.commonpath([real, folder]) != folder or real == folder:
                st = ("refused", "location resolves outside the model's folder")
            elif not os.path.isfile(real):
                st = ("missing", f"external data file {location!r} not found")
            else:
                st = ("ok", real, os.path.getsize(real))
        self._ext_status[location] = st
        return st

    def _ext_buffer(self, location: str):
        """The whole-file buffer of a local external data file (None for a remote one)."""
        return self._ext_source(location).buf

    def _ext_source(self, location: str):
        src = self._ext_sources.get(location)
        if src is None:
            status = self._ext_status[location]
            if len(status) > 3:  # (ok, location, size, FileSet)
                src = status[3].open(location)
            else:
                from mfparse.source import Source

                src = Source(status[1])
            self._ext_sources[location] = src
        return src

    # ---- data -------------------------------------------------------------------------------

    def read(self, info: TensorInfo) -> np.ndarray:
        rec = self._records.get(info.name)
        if rec is None:
            return source_view(self.source, info)
        if rec["segment"] is not None:
            raise UnsupportedFormatError(f"ONNX tensor {info.name!r} is a segment of a larger tensor "
                                         "(TensorProto.segment), which this reader does not assemble")
        data = rec["data"]
        if data == DATA_RAW:
            return source_view(self.source, info)
        if data == DATA_EXTERNAL:
            ext = info.extras["external"]
            if "refused" in ext:
                raise UnsafeContentError(f"ONNX tensor {info.name!r}: external data location "
                                         f"{ext['location']!r} refused ({ext['refused']})")
            if "missing" in ext:
                raise CorruptFileError(f"ONNX tensor {info.name!r}: {ext['missing']}")
            return source_view(self._ext_source(ext["location"]), info)
        if data == DATA_EMPTY:
            if info.dtype in dtypes.PACKED:
                return np.zeros(0, dtype=np.uint8)
            return np.zeros(info.shape, dtype=dtypes.numpy_dtype(info.dtype))
        start, n = rec["msg_off"], rec["msg_len"]
        msg = read_at(self.source, start, n)
        if data == DATA_STRINGS:
            offs, lens = _native.pb_collect_bytes(msg, start, 6, rec["count"])
            items = [bytes(msg[o - start:o - start + k]) for o, k in zip(offs.tolist(), lens.tolist())]
            out = np.empty(len(items), dtype=object)
            out[:] = items
            return out.reshape(info.shape)
        vals = _native.pb_collect(msg, start, rec["field"], _FIELD_KIND[rec["field"]], rec["count"])
        return decode_typed(vals, rec["data_type"], info.dtype, info.shape)

    def close(self) -> None:
        for src in self._ext_sources.values():
            src.close()
        self._ext_sources.clear()
        self._parse.close()

    # ---- structure --------------------------------------------------------------------------

    def metadata(self) -> dict:
        m = dict(self._meta)
        if "opset_import" in m:
            m["opset_import"] = {d or "ai.onnx": v for d, v in m["opset_import"]}
        if "metadata_props" in m:
            m["metadata_props"] = dict(m["metadata_props"])
        return m

    @property
    def graph(self) -> dict | None:
        """Inputs, outputs, op-type histogram, subgraphs and functions (see docs/onnx)."""
        if self.format != "onnx":
            return None
        if self._graph is None:
            self._graph = self._build_graph()
        return self._graph

    def _build_graph(self) -> dict:
        scopes = self._scopes
        ops: dict[int, Counter] = {}
        for scope, op, domain in self._parse.nodes():
            key = op if domain in ("", "ai.onnx") else f"{domain}:{op}"
            ops.setdefault(scope, Counter())[key] += 1
        ios: dict[int, tuple[list, list]] = {}
        for scope, role, name, _kind, elem, shape, type_str in self._parse.values():
            entry = {"name": name}
            if type_str:
                entry["type"] = type_str
                dt = _native.onnx_dtype(elem) if elem else None
                if dt:
                    entry["dtype"] = dt
                if shape is not None:
                    entry["shape"] = shape
            ios.setdefault(scope, ([], []))[role].append(entry)
        init_names = {t.name for t in self._tensors if t.extras.get("graph") is None
                      and t.extras.get("source", "initializer") in ("initializer", "sparse_initializer")}

        def summary(i):
            kind, parent, node, attr, index, name, domain, offset, n_nodes, n_init, n_sparse = scopes[i]
            ins, outs = ios.get(i, ([], []))
            hist = ops.get(i, Counter())
            d = {"name": name, "inputs": ins, "outputs": outs, "node_count": n_nodes,
                 "op_types": dict(hist.most_common()), "initializer_count": n_init + n_sparse}
            return d

        graph: dict = {"ir_version": self._meta.get("ir_version"),
                       "opset_import": {d or "ai.onnx": v for d, v in self._meta.get("opset_import", [])}}
        main = next((i for i, s in enumerate(scopes) if s[0] == SCOPE_GRAPH), None)
        if main is not None:
            g = summary(main)
            # like onnxruntime's get_inputs(): inputs that are initializers (IR < 4 style) are weights
            g["inputs"] = [v for v in g["inputs"] if v["name"] not in init_names]
            graph.update(g)
        else:
            graph.update({"name": "", "inputs": [], "outputs": [], "node_count": 0, "op_types": {},
                          "initializer_count": 0})
        subs, funcs, training = [], [], []
        for i, s in enumerate(scopes):
            if s[0] == SCOPE_SUBGRAPH:
                _, op, _, _, _, _, _, _ = self._parse.node(s[2])
                d = summary(i)
                subs.append({"path": self._scope_path(i), "node": self._node_label(s[2]), "op_type": op,
                             "attribute": s[3], **d})
            elif s[0] == SCOPE_FUNCTION:
                d = summary(i)
                funcs.append({"domain": s[6], "name": s[5], "inputs": [v["name"] for v in d["inputs"]],
                              "outputs": [v["name"] for v in d["outputs"]], "node_count": d["node_count"],
                              "op_types": d["op_types"]})
            elif s[0] == SCOPE_TRAINING:
                training.append({"path": self._scope_path(i), **summary(i)})
        graph["subgraphs"] = subs
        graph["functions"] = funcs
        if training:
            graph["training"] = training
        graph["total_node_count"] = sum(s[8] for s in scopes)
        return graph


def decode_typed(vals: np.ndarray, data_type: int, dtype: str, shape: tuple) -> np.ndarray:
    """Values of a typed TensorProto field (as uint64) -> the array onnx.numpy_helper gives,
    except that packed sub-byte types stay packed (as raw_data stores them)."""
    if data_type in (1, 14):            # float_data: FLOAT, COMPLEX64
        a = vals.astype(np.uint32).view(np.float32)
        return (a.view(np.complex64) if data_type == 14 else a).reshape(shape)
    if data_type in (11, 15):           # double_data: DOUBLE, COMPLEX128
        a = vals.view(np.float64)
        return (a.view(np.complex128) if data_type == 15 else a).reshape(shape)
    if data_type == 7:                  # int64_data
        return vals.view(np.int64).reshape(shape)
    if data_type == 13:                 # uint64_data
        return vals.reshape(shape)
    if data_type == 12:                 # uint64_data holding UINT32
        return vals.astype(np.uint32).reshape(shape)
    # int32_data: everything narrower; the low bits of each value are the element's bit pattern
    low = vals.astype(np.uint32)
    if dtype in dtypes.PACKED:
        if dtype.startswith("float6"):
            return _pack6(low.astype(np.uint8) & 0x3F)
        return low.astype(np.uint8)     # 4-bit: 2 per value, 2-bit: 4 per value, already packed
    np_dt = dtypes.numpy_dtype(dtype)
    width = {1: np.uint8, 2: np.uint16, 4: np.uint32}[np_dt.itemsize]
    return low.astype(width).view(np_dt).reshape(shape)


def _pack6(v: np.ndarray) -> np.ndarray:
    """6-bit values -> ONNX's packed stream (4 values in 3 bytes, LSB first, zero-padded)."""
    n = v.size
    pad = (-n) % 4
    w = np.concatenate([v, np.zeros(pad, dtype=np.uint8)]).astype(np.uint32).reshape(-1, 4)
    bits = w[:, 0] | (w[:, 1] << 6) | (w[:, 2] << 12) | (w[:, 3] << 18)
    out = np.stack([bits & 0xFF, (bits >> 8) & 0xFF, (bits >> 16) & 0xFF], axis=1).astype(np.uint8).reshape(-1)
    return out[: (n * 6 + 7) // 8]


def _side_file(fs, location: str) -> tuple:
    """_resolve's answer for an external data file of a remote model, through the FileSet of
    the model's folder (its containment check; the size from the server, nothing fetched)."""
    from mfparse.io.base import OutsideFolderError

    try:
        size = fs.size(location)
    except OutsideFolderError:
        return ("refused", "location resolves outside the model's folder")
    if size is None:
        return ("missing", f"external data file {location!r} not found")
    return ("ok", fs.location(location), size, fs)


def open_reader(source):
    return OnnxReader(source)


def open_tensor(source):
    return OnnxReader(source, bare=True)
