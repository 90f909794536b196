"""TFLite models (FlatBuffers, file identifier "TFL3"), walked in C (csrc/mf_tflite.c over the
bounds-checked accessors of csrc/mf_flatbuf.c); tensor data are zero-copy views.

`tensors()` lists the tensors that carry data (constant buffers: weights, biases, quantized
weights, lookup tables), named by the tensor's name; tensors of subgraphs other than the first
are prefixed `subgraph<i>/`, and a repeated name gets `#<tensor index>`. Buffers stored after
the flatbuffer (`Buffer.offset/size`, written for models over 2 GB) map like inline ones.
INT4, UINT4 and INT2 buffers are packed (two or four values to a byte, element 0 in the low
bits): `m[name]` gives ml_dtypes values of the tensor's shape, `m.read(info, packed=True)` the
stored bytes. Quantization parameters go into `extras["quantization"]` ({scale, zero_point,
quantized_dimension, min, max}); sparse tensors are listed with `extras["sparsity"]` and
refuse to read (their buffer holds only the non-zero values). `m.graph` is a TFLiteGraph:
inputs, outputs, operators, op histogram, every tensor (activations too) and signature defs.

TFLite Model Metadata (MediaPipe, Model Maker, tflite-support writers): the buffer named by the
"TFLITE_METADATA" entry of Model.metadata holds a second flatbuffer (metadata_schema.fbs,
identifier "M001"), parsed in C into `metadata["TFLITE_METADATA"]` (name, description,
version, author, license, per-subgraph input/output tensor metadata, associated files the
metadata records). The associated files themselves (label maps, vocabularies) are packed as a
zip archive appended after the model; the file is still a TFLite model (detected by its
identifier, whatever follows it) and `metadata["associated_files"]` lists the archive's
members ({name, size, offset}); `TFLiteReader.associated_file(name)` reads one.
"""

from __future__ import annotations

import struct
from collections import Counter

from mfparse._lazy import numpy as np

from mfparse import _native, dtypes
from mfparse.errors import CorruptFileError, MFParseError, UnsupportedFormatError
from mfparse.formats.base import Reader, parse_windows, read_at, read_many, source_view
from mfparse.formats.zip import ZipArchive, ZipMember, _held_tail
from mfparse.records import TensorInfo, to_jsonable

MAGIC = b"TFL3"

#: TensorType codes (schema.fbs)
TENSOR_TYPES = (
    "FLOAT32", "FLOAT16", "INT32", "UINT8", "INT64", "STRING", "BOOL", "INT16", "COMPLEX64", "INT8",
    "FLOAT64", "COMPLEX128", "UINT64", "RESOURCE", "VARIANT", "UINT32", "UINT16", "INT4", "BFLOAT16",
    "INT2", "UINT4",
)

#: BuiltinOperator codes (schema.fbs); index = code
BUILTIN_OPS = (
    'ADD', 'AVERAGE_POOL_2D', 'CONCATENATION', 'CONV_2D', 'DEPTHWISE_CONV_2D', 'DEPTH_TO_SPACE',
    'DEQUANTIZE', 'EMBEDDING_LOOKUP', 'FLOOR', 'FULLY_CONNECTED', 'HASHTABLE_LOOKUP', 'L2_NORMALIZATION',
    'L2_POOL_2D', 'LOCAL_RESPONSE_NORMALIZATION', 'LOGISTIC', 'LSH_PROJECTION', 'LSTM', 'MAX_POOL_2D', 'MUL',
    'RELU', 'RELU_N1_TO_1', 'RELU6', 'RESHAPE', 'RESIZE_BILINEAR', 'RNN', 'SOFTMAX', 'SPACE_TO_DEPTH',
    'SVDF', 'TANH', 'CONCAT_EMBEDDINGS', 'SKIP_GRAM', 'CALL', 'CUSTOM', 'EMBEDDING_LOOKUP_SPARSE', 'PAD',
    'UNIDIRECTIONAL_SEQUENCE_RNN', 'GATHER', 'BATCH_TO_SPACE_ND', 'SPACE_TO_BATCH_ND', 'TRANSPOSE', 'MEAN',
    'SUB', 'DIV', 'SQUEEZE', 'UNIDIRECTIONAL_SEQUENCE_LSTM', 'STRIDED_SLICE', 'BIDIRECTIONAL_SEQUENCE_RNN',
    'EXP', 'TOPK_V2', 'SPLIT', 'LOG_SOFTMAX', 'DELEGATE', 'BIDIRECTIONAL_SEQUENCE_LSTM', 'CAST', 'PRELU',
    'MAXIMUM', 'ARG_MAX', 'MINIMUM', 'LESS', 'NEG', 'PADV2', 'GREATER', 'GREATER_EQUAL', 'LESS_EQUAL',
    'SELECT', 'SLICE', 'SIN', 'TRANSPOSE_CONV', 'SPARSE_TO_DENSE', 'TILE', 'EXPAND_DIMS', 'EQUAL',
    'NOT_EQUAL', 'LOG', 'SUM', 'SQRT', 'RSQRT', 'SHAPE', 'POW', 'ARG_MIN', 'FAKE_QUANT', 'REDUCE_PROD',
    'REDUCE_MAX', 'PACK', 'LOGICAL_OR', 'ONE_HOT', 'LOGICAL_AND', 'LOGICAL_NOT', 'UNPACK', 'REDUCE_MIN',
    'FLOOR_DIV', 'REDUCE_ANY', 'SQUARE', 'ZEROS_LIKE', 'FILL', 'FLOOR_MOD', 'RANGE',
    'RESIZE_NEAREST_NEIGHBOR', 'LEAKY_RELU', 'SQUARED_DIFFERENCE', 'MIRROR_PAD', 'ABS', 'SPLIT_V', 'UNIQUE',
    'CEIL', 'REVERSE_V2', 'ADD_N', 'GATHER_ND', 'COS', 'WHERE', 'RANK', 'ELU', 'REVERSE_SEQUENCE',
    'MATRIX_DIAG', 'QUANTIZE', 'MATRIX_SET_DIAG', 'ROUND', 'HARD_SWISH', 'IF', 'WHILE',
    'NON_MAX_SUPPRESSION_V4', 'NON_MAX_SUPPRESSION_V5', 'SCATTER_ND', 'SELECT_V2', 'DENSIFY', 'SEGMENT_SUM',
    'BATCH_MATMUL', 'PLACEHOLDER_FOR_GREATER_OP_CODES', 'CUMSUM', 'CALL_ONCE', 'BROADCAST_TO', 'RFFT2D',
    'CONV_3D', 'IMAG', 'REAL', 'COMPLEX_ABS', 'HASHTABLE', 'HASHTABLE_FIND', 'HASHTABLE_IMPORT',
    'HASHTABLE_SIZE', 'REDUCE_ALL', 'CONV_3D_TRANSPOSE', 'VAR_HANDLE', 'READ_VARIABLE', 'ASSIGN_VARIABLE',
    'BROADCAST_ARGS', 'RANDOM_STANDARD_NORMAL', 'BUCKETIZE', 'RANDOM_UNIFORM', 'MULTINOMIAL', 'GELU',
    'DYNAMIC_UPDATE_SLICE', 'RELU_0_TO_1', 'UNSORTED_SEGMENT_PROD', 'UNSORTED_SEGMENT_MAX',
    'UNSORTED_SEGMENT_SUM', 'ATAN2', 'UNSORTED_SEGMENT_MIN', 'SIGN', 'BITCAST', 'BITWISE_XOR', 'RIGHT_SHIFT',
    'STABLEHLO_LOGISTIC', 'STABLEHLO_ADD', 'STABLEHLO_DIVIDE', 'STABLEHLO_MULTIPLY', 'STABLEHLO_MAXIMUM',
    'STABLEHLO_RESHAPE', 'STABLEHLO_CLAMP', 'STABLEHLO_CONCATENATE', 'STABLEHLO_BROADCAST_IN_DIM',
    'STABLEHLO_CONVOLUTION', 'STABLEHLO_SLICE', 'STABLEHLO_CUSTOM_CALL', 'STABLEHLO_REDUCE', 'STABLEHLO_ABS',
    'STABLEHLO_AND', 'STABLEHLO_COSINE', 'STABLEHLO_EXPONENTIAL', 'STABLEHLO_FLOOR', 'STABLEHLO_LOG',
    'STABLEHLO_MINIMUM', 'STABLEHLO_NEGATE', 'STABLEHLO_OR', 'STABLEHLO_POWER', 'STABLEHLO_REMAINDER',
    'STABLEHLO_RSQRT', 'STABLEHLO_SELECT', 'STABLEHLO_SUBTRACT', 'STABLEHLO_TANH', 'STABLEHLO_SCATTER',
    'STABLEHLO_COMPARE', 'STABLEHLO_CONVERT', 'STABLEHLO_DYNAMIC_SLICE', 'STABLEHLO_DYNAMIC_UPDATE_SLICE',
    'STABLEHLO_PAD', 'STABLEHLO_IOTA', 'STABLEHLO_DOT_GENERAL', 'STABLEHLO_REDUCE_WINDOW', 'STABLEHLO_SORT',
    'STABLEHLO_WHILE', 'STABLEHLO_GATHER', 'STABLEHLO_TRANSPOSE', 'DILATE', 'STABLEHLO_RNG_BIT_GENERATOR',
    'REDUCE_WINDOW', 'STABLEHLO_COMPOSITE', 'STABLEHLO_SHIFT_LEFT', 'STABLEHLO_CBRT', 'STABLEHLO_CASE',
)

CUSTOM = 32
#: the Model.metadata entry that holds the TFLite Model Metadata flatbuffer ("M001")
METADATA_NAME = "TFLITE_METADATA"
#: metadata_schema.fbs enums (index = code)
ASSOCIATED_FILE_TYPES = ("UNKNOWN", "DESCRIPTIONS", "TENSOR_AXIS_LABELS", "TENSOR_VALUE_LABELS",
                         "TENSOR_AXIS_SCORE_CALIBRATION", "VOCABULARY", "SCANN_INDEX_FILE")
CONTENT_PROPERTIES = (None, "FeatureProperties", "ImageProperties", "BoundingBoxProperties", "AudioProperties")
PROCESS_UNITS = (None, "NormalizationOptions", "ScoreCalibrationOptions", "ScoreThresholdingOptions",
                 "BertTokenizerOptions", "SentencePieceTokenizerOptions", "RegexTokenizerOptions")
QUANT_DETAILS = {1: "custom", 2: "blockwise"}
DIM_FORMATS = {0: "DENSE", 1: "SPARSE_CSR"}
INDEX_TYPES = {0: None, 1: "int32", 2: "uint16", 3: "uint8"}


def probe(head: bytes) -> bool:
    """The "TFL3" identifier at bytes 4-7 after a root offset inside the file."""
    return len(head) >= 8 and head[4:8] == MAGIC


def op_name(builtin: int, custom: str | None) -> str:
    """The name of an operator code: the custom code for CUSTOM ops, else the builtin's name."""
    if builtin == CUSTOM and custom is not None:
        return custom
    if 0 <= builtin < len(BUILTIN_OPS):
        return BUILTIN_OPS[builtin]
    return f"BUILTIN_{builtin}"


def _dtype_name(ttype: int) -> str:
    if ttype == 5:
        return "string"
    if ttype == 13:
        return "resource"
    if ttype == 14:
        return "variant"
    code, _bits = _native.tflite_type_info(ttype)
    return dtypes.NAMES[code] if code else "unknown"


def _quant_dict(q) -> dict | None:
    """The quantization record as a dict, or None when it says nothing (TF writes empty tables)."""
    if q is None:
        return None
    qmin, qmax, scale, zp, qdim, details, c_off, c_len, b_scales, b_zps, b_size = q
    if not (scale or zp or qmin or qmax or details):
        return None
    out: dict = {}
    if scale:
        out["scale"] = scale
    if zp:
        out["zero_point"] = zp
    if scale or zp:
        out["quantized_dimension"] = qdim
    if qmin:
        out["min"] = qmin
    if qmax:
        out["max"] = qmax
    if details == 1:
        out["details"] = {"type": "custom", "offset": c_off, "bytes": c_len}
    elif details == 2:
        out["details"] = {"type": "blockwise", "scales_tensor": b_scales, "zero_points_tensor": b_zps,
                          "block_size": b_size}
    elif details:
        out["details"] = {"type": f"unknown ({details})"}
    return out


def _sparsity_dict(s) -> dict | None:
    if s is None:
        return None
    order, block_map, dims = s
    return {
        "traversal_order": list(order or ()),
        "block_map": list(block_map or ()),
        "dim_metadata": [
            {"format": DIM_FORMATS.get(f, str(f)), "dense_size": ds, "segments_type": INDEX_TYPES.get(st, str(st)),
             "segments": ns, "indices_type": INDEX_TYPES.get(it, str(it)), "indices": ni}
            for f, ds, st, ns, it, ni in dims
        ],
    }


class TFLiteGraph:
    """The model's computation graph (the first subgraph is the main one).

    Attributes:
        inputs, outputs: the main subgraph's inputs and outputs, as tensor dicts
            {index, name, dtype, shape, shape_signature, quantization}.
        operators: every operator of every subgraph: {subgraph, index, op, version, inputs,
            outputs} with tensor indices (-1 = optional input left out).
        op_histogram: op name -> count over all subgraphs, most frequent first.
        tensors: every tensor of every subgraph (activations too), as tensor dicts plus
            subgraph and buffer.
        subgraphs: [{name, inputs, outputs, tensors, operators}] (counts).
        signatures: [{key, subgraph, inputs: {name: tensor index}, outputs: {...}}].
    """

    def __init__(self, inputs, outputs, operators, tensors, subgraphs, signatures):
        self.inputs = inputs
        self.outputs = outputs
        self.operators = operators
        self.op_histogram = dict(Counter(o["op"] for o in operators).most_common())
        self.tensors = tensors
        self.subgraphs = subgraphs
        self.signatures = signatures

    def to_dict(self) -> dict:
        return to_jsonable({
            "inputs": self.inputs, "outputs": self.outputs, "operators": self.operators,
            "op_histogram": self.op_histogram, "subgraphs": self.subgraphs, "signatures": self.signatures,
        })

    def __repr__(self) -> str:
        return (f"<TFLiteGraph inputs={[t['name'] for t in self.inputs]} outputs={[t['name'] for t in self.outputs]} "
                f"operators={len(self.operators)}>")


class TFLiteReader(Reader):
    format = "tflite"
    unpacks = frozenset({"int4", "uint4", "int2"})  # packed low bits first (PackInt4ValuesDensely)

    def __init__(self, source, require_ident: bool = True):
        super().__init__(source)
        # a remote file: the flatbuffer's tables, vectors and strings through a sparse window
        # (buffers' data are never asked for)
        rec = parse_windows(lambda buf, w: _native.tflite_parse(buf, require_ident, w), source)
        self._rec = rec
        buffers = rec["buffers"]
        n_buffers = len(buffers)
        ext_by_id = {e[0]: e for e in rec["ext_buffers"]}
        types: dict[int, str] = {}
        new = tuple.__new__
        infos = []
        # shapes, buffer indices and data sizes were checked in C (csrc/mf_tflite.c)
        for t in rec["tensors"] if n_buffers else ():
            sg, idx, name, ttype, shape, shape_sig, buf_i, is_var, _has_rank, q, sp, ext_id, _nv = t
            off, size, external = buffers[buf_i]
            if size == 0 and ext_id == 0:
                continue  # no data: an activation, a graph input, a variable
            dname = types.get(ttype)
            if dname is None:
                dname = types[ttype] = _dtype_name(ttype)
            if shape is None:
                shape = ()
            tname = name or f"tensor_{idx}"
            if sg:
                tname = f"subgraph{sg}/{tname}"
            extras: dict = {"subgraph": sg, "tensor_index": idx, "buffer": buf_i}
            if q is not None:
                quant = _quant_dict(q)
                if quant:
                    extras["quantization"] = quant
            if shape_sig is not None and shape_sig != shape:
                extras["shape_signature"] = shape_sig
            if external or is_var or ext_id or sp is not None or dname in ("unknown", "resource", "variant"):
                info = self._unusual(t, tname, dname, shape, off, size, external, extras, ext_by_id)
                if info is not None:
                    infos.append(info)
                    continue
            infos.append(new(TensorInfo, (tname, dname, shape, size, off, f"buffer{buf_i}", None, extras, None)))
        if len({t[0] for t in infos}) != len(infos):
            infos = _dedupe(infos)
        self._tensors = infos
        self._graph = None
        self._zip = None  # the appended zip archive (ZipArchive), False when there is none

    def _unusual(self, t, tname, dname, shape_t, off, size, external, extras, ext_by_id):
        """The rarer cases: data after the flatbuffer, variables, unknown types (extras only),
        external weight files and sparse tensors (their own TensorInfo, returned)."""
        sg, idx, name, ttype, shape, shape_sig, buf_i, is_var, _has_rank, q, sp, ext_id, _nv = t
        if external:
            extras["stored_after_flatbuffer"] = True
        if is_var:
            extras["is_variable"] = True
        if dname in ("unknown", "resource", "variant"):
            extras["tflite_type"] = ttype
        if ext_id:
            e = ext_by_id.get(ext_id)
            if e is None:
                raise CorruptFileError(f"tflite tensor {tname!r} names external buffer {ext_id}, which is not in "
                                       "the model's external_buffers", 0)
            extras["external_buffer"] = {"group": self._rec["ext_groups"][e[1]], "offset": e[2], "length": e[3],
                                         "packing": e[4]}
            return TensorInfo(tname, dname, shape_t, e[3], None, f"external{ext_id}", None, extras)
        if sp is not None:
            extras["sparsity"] = _sparsity_dict(sp)
            extras["buffer_offset"] = off
            return TensorInfo(tname, dname, shape_t, size, None, f"buffer{buf_i}", None, extras)
        return None

    # ---- data ---------------------------------------------------------------------------------

    def read(self, info: TensorInfo) -> np.ndarray:
        if "sparsity" in info.extras:
            raise UnsupportedFormatError(
                f"tflite tensor {info.name!r} is stored sparse (its buffer holds only the non-zero values); "
                "densifying is not supported", info.extras.get("buffer_offset"))
        if "external_buffer" in info.extras:
            e = info.extras["external_buffer"]
            raise UnsupportedFormatError(
                f"tflite tensor {info.name!r} lives in the external weights file {e['group']!r}")
        if info.dtype == "string":
            return _read_strings(read_at(self.source, info.offset, info.nbytes), info._replace(offset=0))
        try:
            return source_view(self.source, info)
        except TypeError:
            raise UnsupportedFormatError(f"tflite tensor {info.name!r} has type {info.dtype}, which has no numpy "
                                         "equivalent", info.offset) from None

    # ---- structure ----------------------------------------------------------------------------

    def metadata(self) -> dict:
        rec = self._rec
        out: dict = {"version": rec["version"]}
        if rec["description"] is not None:
            out["description"] = rec["description"]
        wanted = [rec["buffers"][b] for name, b in rec["metadata"]]
        blobs = read_many(self.source, [(off, size if (name == METADATA_NAME or size <= 256) else 0)
                                        for (name, _b), (off, size, _e) in zip(rec["metadata"], wanted)])
        for (name, b), (off, size, _ext), blob in zip(rec["metadata"], wanted, blobs):
            value: object = {"buffer": b, "bytes": size}
            if name == METADATA_NAME and size:
                value = _model_metadata(blob, b, off, size)
            elif 0 < size <= 256:
                raw = bytes(blob).rstrip(b"\0")
                if raw and all(32 <= c < 127 for c in raw):
                    value = raw.decode("ascii")
            out[name if name is not None else f"metadata{b}"] = value
        if rec["signatures"]:
            out["signature_defs"] = [s["key"] for s in self.graph.signatures]
        try:
            files = self.associated_files()
        except MFParseError as e:  # the model itself opens: say what is wrong with the archive
            out["associated_files_error"] = str(e)
        else:
            if files is not None:
                out["associated_files"] = files
        return out

    def associated_files(self) -> list[dict] | None:
        """The files packed in the zip archive appended after the model (TFLite Model Metadata
        "associated files": label maps, vocabularies), as [{name, size, offset}] in archive
        order (offset: the file offset of a stored member's bytes, None when compressed);
        None when no archive follows the model. An archive that cannot be read raises."""
        if self._zip is None:
            self._zip = _appended_zip(self.source) or False
        if self._zip is False:
            return None
        members = [ZipMember(*row) for row in self._zip.directory.entries_list()]
        if self._zip.lazy:  # a remote file: every local header, one round trip
            members = self._zip.resolve(members)
        return [{"name": m.name, "size": m.size, "offset": m.data_offset if m.method == 0 else None}
                for m in members]

    def associated_file(self, name: str) -> bytes:
        """The bytes of one associated file (a member of the appended zip archive)."""
        if self.associated_files() is None:
            raise KeyError(name)
        return bytes(self._zip.read(name))

    def tree(self):
        tree: dict = {}
        for t in self._tensors:
            sg = t.extras.get("subgraph", 0)
            if sg == 0:
                tree[t.name] = t
            else:
                sname = self._rec["subgraphs"][sg][0] or f"subgraph{sg}"
                tree.setdefault(f"subgraph{sg}:{sname}", {})[t.name.split("/", 1)[1]] = t
        return tree

    @property
    def graph(self) -> TFLiteGraph:
        if self._graph is None:
            self._graph = self._build_graph()
        return self._graph

    def _build_graph(self) -> TFLiteGraph:
        rec = self._rec
        subgraphs = rec["subgraphs"]
        allt = [_tensor_dict(t) for t in rec["tensors"]]
        opcodes = rec["opcodes"]
        operators = []
        for i, (sg, opc, ins, outs, inter, opt, opt2, clen, lclen) in enumerate(rec["ops"]):
            builtin, _dep, version, custom = opcodes[opc]
            first_op = subgraphs[sg][3]
            op = {"subgraph": sg, "index": i - first_op, "op": op_name(builtin, custom), "version": version,
                  "inputs": list(ins), "outputs": list(outs)}
            if inter:
                op["intermediates"] = list(inter)
            operators.append(op)

        def tdict(sg, ti):
            t = allt[subgraphs[sg][1] + ti]
            return {k: v for k, v in t.items() if k not in ("subgraph",)}

        main_in = [tdict(0, i) for i in subgraphs[0][5]] if subgraphs else []
        main_out = [tdict(0, i) for i in subgraphs[0][6]] if subgraphs else []
        sgs = [{"name": name, "inputs": list(ins), "outputs": list(outs), "tensors": nt, "operators": no}
               for name, _ft, nt, _fo, no, ins, outs in subgraphs]
        sigs = [{"key": key, "subgraph": sg, "inputs": dict(ins), "outputs": dict(outs)}
                for key, sg, ins, outs in rec["signatures"]]
        return TFLiteGraph(main_in, main_out, operators, allt, sgs, sigs)


def _enum(names: tuple, code: int):
    return names[code] if 0 <= code < len(names) else f"unknown ({code})"


def _file_dict(f) -> dict:
    _where, _sg, _tensor, unit, input_unit, name, desc, ftype, locale, version = f
    d: dict = {"name": name, "description": desc, "type": _enum(ASSOCIATED_FILE_TYPES, ftype), "locale": locale,
               "version": version}
    if unit:
        d["process_unit"] = _enum(PROCESS_UNITS, unit)
    d = {k: v for k, v in d.items() if v is not None}
    if unit and _where == 1:
        d["role"] = "input" if input_unit else "output"
    return d


def _model_metadata(blob, b: int, off: int, size: int) -> dict:
    """The TFLite Model Metadata flatbuffer (metadata_schema.fbs) in buffer b, parsed in C:
    name, description, version, author, license, min_parser_version, per subgraph its input and
    output tensor metadata (name, description, content, process units, associated files) and
    custom metadata, and the associated files the model records. A buffer that does not parse
    gives {buffer, bytes, error}: the model itself still opens."""
    out: dict = {"buffer": b, "bytes": size}
    try:
        rec = _native.tflite_metadata(blob, off)
    except MFParseError as e:
        out["error"] = str(e)
        return out
    for key in ("name", "description", "version", "author", "license", "min_parser_version"):
        if rec[key] is not None:
            out[key] = rec[key]
    subgraphs = [{"name": name, "description": desc, "inputs": [None] * n_in, "outputs": [None] * n_out,
                  "associated_files": [], "custom_metadata": []}
                 for name, desc, n_in, n_out in rec["subgraphs"]]
    for sg, output, idx, name, desc, content, units in rec["tensors"]:
        t = {"name": name, "description": desc, "content": CONTENT_PROPERTIES[content] if content < 5 else
             f"unknown ({content})", "process_units": [_enum(PROCESS_UNITS, u) for u in units],
             "associated_files": []}
        subgraphs[sg]["outputs" if output else "inputs"][idx] = {k: v for k, v in t.items() if v is not None}
    model_files = []
    for f in rec["files"]:
        where, sg, idx = f[0], f[1], f[2]
        if where == 0:
            model_files.append(_file_dict(f))
        elif where == 1:
            subgraphs[sg]["associated_files"].append(_file_dict(f))
        else:
            subgraphs[sg]["outputs" if where == 3 else "inputs"][idx]["associated_files"].append(_file_dict(f))
    for sg, name, coff, csize in rec["custom"]:
        subgraphs[sg]["custom_metadata"].append({"name": name, "offset": coff, "bytes": csize})
    for s in subgraphs:
        for key in ("name", "description"):
            if s[key] is None:
                del s[key]
    out["subgraphs"] = subgraphs
    out["associated_files"] = model_files
    return out


def _appended_zip(source) -> ZipArchive | None:
    """The zip archive appended after a TFLite model (associated files), or None when the file
    does not end with a zip end record (its comment reaching the last byte). An end record
    whose archive cannot be read raises."""
    size = source.size
    full = min(size, 22 + 0xFFFF)
    # a remote file: the tail fetched when it was opened first (a record found there is the
    # one the whole tail would show: the scan goes from the end)
    held = _held_tail(source) if source.buf is None else 0
    for n in ((held, full) if 22 <= held < full else (full,)):
        tail = bytes(read_at(source, size - n, n))
        i = tail.rfind(b"PK\x05\x06")
        while i >= 0 and not (i + 22 <= len(tail) and i + 22 + int.from_bytes(tail[i + 20:i + 22], "little") == len(tail)):
            i = tail.rfind(b"PK\x05\x06", 0, i)
        if i >= 0:
            return ZipArchive(source)
    return None


def _dedupe(infos: list) -> list:
    """TFLite does not require unique tensor names: a repeated one gets "#<tensor index>"."""
    seen: set[str] = set()
    out = []
    for t in infos:
        if t.name in seen:
            t = t._replace(name=f"{t.name}#{t.extras['tensor_index']}")
        seen.add(t.name)
        out.append(t)
    return out


def _tensor_dict(t) -> dict:
    sg, idx, name, ttype, shape, shape_sig, buf_i, is_var, has_rank, q, sp, ext_id, n_variant = t
    d = {"subgraph": sg, "index": idx, "name": name or "", "dtype": _dtype_name(ttype), "shape": list(shape or ()),
         "shape_signature": None if shape_sig is None else list(shape_sig), "buffer": buf_i}
    quant = _quant_dict(q)
    if quant:
        d["quantization"] = quant
    if is_var:
        d["is_variable"] = True
    if sp is not None:
        d["sparsity"] = _sparsity_dict(sp)
    return d


def _read_strings(buf, info: TensorInfo) -> np.ndarray:
    """TFLite's string buffer: i32 count N, N + 1 i32 offsets from the buffer start, the bytes."""
    start, size = info.offset, info.nbytes
    data = bytes(buf[start:start + size])
    if len(data) < 4:
        raise CorruptFileError(f"tflite string tensor {info.name!r}: buffer of {size} bytes", start)
    (n,) = struct.unpack_from("<i", data)
    if n < 0 or 4 * (n + 2) > len(data) or n != info.numel:
        raise CorruptFileError(f"tflite string tensor {info.name!r} declares {n} strings for {info.numel} elements "
                               f"in {size} bytes", start)
    offs = struct.unpack_from(f"<{n + 1}i", data, 4)
    out = np.empty(n, dtype=object)
    lo = 4 * (n + 2)
    for i in range(n):
        a, b = offs[i], offs[i + 1]
        if not lo <= a <= b <= len(data):
            raise CorruptFileError(f"tflite string tensor {info.name!r}: string {i} spans [{a}, {b}) outside its "
                                   "buffer", start)
        out[i] = data[a:b]
    return out.reshape(info.shape)


def open_reader(source):
    return TFLiteReader(source)


def open_unchecked(source):
    """Open a TFLite flatbuffer that lacks the "TFL3" identifier (very old converters)."""
    return TFLiteReader(source, require_ident=False)
