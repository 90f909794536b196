# Included by _native.pyx: bindings over csrc/mf_tflite.c (on csrc/mf_flatbuf.c).

from libc.stdint cimport int8_t

cdef extern from "mf_tflite.h" nogil:
    ctypedef struct mf_tfl_str:
        const uint8_t *s
        uint32_t n

    ctypedef struct mf_tfl_i32s:
        int32_t *v
        uint32_t n
        int present

    ctypedef struct mf_tfl_quant:
        float *min
        float *max
        float *scale
        uint32_t n_min, n_max, n_scale
        int64_t *zero_point
        uint32_t n_zero_point
        int32_t quantized_dimension
        uint8_t details_type
        uint64_t custom_offset
        uint32_t custom_len
        int32_t block_scales, block_zero_points, block_size

    ctypedef struct mf_tfl_dim:
        uint8_t format
        int32_t dense_size
        uint8_t segments_type, indices_type
        uint32_t n_segments, n_indices

    ctypedef struct mf_tfl_sparsity:
        mf_tfl_i32s traversal_order, block_map
        mf_tfl_dim *dims
        uint32_t n_dims

    ctypedef struct mf_tfl_tensor:
        uint32_t subgraph, index
        mf_tfl_str name
        int8_t type
        mf_tfl_i32s shape, shape_signature
        uint32_t buffer
        uint8_t is_variable, has_rank
        mf_tfl_quant *quant
        mf_tfl_sparsity *sparsity
        uint32_t external_buffer
        uint32_t n_variant

    ctypedef struct mf_tfl_opcode:
        int32_t builtin
        int8_t deprecated
        int32_t version
        mf_tfl_str custom

    ctypedef struct mf_tfl_op:
        uint32_t subgraph
        uint32_t opcode
        mf_tfl_i32s inputs, outputs, intermediates
        uint8_t options_type, options2_type
        uint32_t custom_options_len
        uint64_t large_custom_options_size

    ctypedef struct mf_tfl_subgraph:
        mf_tfl_str name
        uint32_t first_tensor, n_tensors
        uint32_t first_op, n_ops
        mf_tfl_i32s inputs, outputs

    ctypedef struct mf_tfl_buffer:
        uint64_t offset
        uint64_t size
        uint8_t external

    ctypedef struct mf_tfl_tmap:
        mf_tfl_str name
        uint32_t tensor

    ctypedef struct mf_tfl_sig:
        mf_tfl_str key
        uint32_t subgraph
        mf_tfl_tmap *inputs
        mf_tfl_tmap *outputs
        uint32_t n_inputs, n_outputs

    ctypedef struct mf_tfl_meta:
        mf_tfl_str name
        uint32_t buffer

    ctypedef struct mf_tfl_extbuf:
        uint32_t id, group
        uint64_t offset, length
        mf_tfl_str packing

    ctypedef struct mf_tfl_model:
        uint32_t version
        mf_tfl_str description
        mf_tfl_opcode *opcodes
        uint32_t n_opcodes
        mf_tfl_subgraph *subgraphs
        uint32_t n_subgraphs
        mf_tfl_tensor *tensors
        uint32_t n_tensors
        mf_tfl_op *ops
        uint32_t n_ops
        mf_tfl_buffer *buffers
        uint32_t n_buffers
        mf_tfl_meta *metadata
        uint32_t n_metadata
        mf_tfl_i32s metadata_buffer
        mf_tfl_sig *sigs
        uint32_t n_sigs
        mf_tfl_str *ext_groups
        uint32_t n_ext_groups
        mf_tfl_extbuf *ext_buffers
        uint32_t n_ext_buffers

    ctypedef struct mf_tflm_file:
        mf_tfl_str name, description, locale, version
        int8_t type
        uint8_t where, process_unit, input_unit
        uint32_t subgraph, tensor

    ctypedef struct mf_tflm_tensor:
        mf_tfl_str name, description
        uint8_t output, content_type
        uint32_t subgraph, index
        uint8_t *process_units
        uint32_t n_process_units

    ctypedef struct mf_tflm_subgraph:
        mf_tfl_str name, description
        uint32_t n_inputs, n_outputs

    ctypedef struct mf_tflm_custom:
        mf_tfl_str name
        uint32_t subgraph
        uint64_t offset, size

    ctypedef struct mf_tfl_metadata:
        mf_tfl_str name, description, version, author, license, min_parser_version
        mf_tflm_subgraph *subgraphs
        uint32_t n_subgraphs
        mf_tflm_tensor *tensors
        uint32_t n_tensors
        mf_tflm_file *files
        uint32_t n_files
        mf_tflm_custom *custom
        uint32_t n_custom

    int mf_tflite_parse(const uint8_t *buf, size_t len, int require_ident, mf_arena *a, mf_tfl_model *out,
                        mf_error *err)
    int mf_tflite_metadata(const uint8_t *buf, size_t len, uint64_t base, mf_arena *a, mf_tfl_metadata *out,
                           mf_error *err)
    unsigned mf_tflite_type_bits(int type)
    int mf_tflite_dtype(int type)


cdef inline object _tfl_str(mf_tfl_str s):
    return None if s.s == NULL else text(s.s, s.n)


cdef inline object _tfl_i32s(mf_tfl_i32s v):
    if not v.present:
        return None
    return tuple([v.v[i] for i in range(v.n)])


cdef object _tfl_quant(mf_tfl_quant *q):
    if q.n_min == 0 and q.n_max == 0 and q.n_scale == 0 and q.n_zero_point == 0 and q.details_type == 0:
        return None  # converters write empty quantization tables for float tensors
    return ([q.min[i] for i in range(q.n_min)], [q.max[i] for i in range(q.n_max)],
            [q.scale[i] for i in range(q.n_scale)], [q.zero_point[i] for i in range(q.n_zero_point)],
            q.quantized_dimension, q.details_type, q.custom_offset, q.custom_len,
            q.block_scales, q.block_zero_points, q.block_size)


cdef tuple _tfl_sparsity(mf_tfl_sparsity *s):
    dims = [(s.dims[i].format, s.dims[i].dense_size, s.dims[i].segments_type, s.dims[i].n_segments,
             s.dims[i].indices_type, s.dims[i].n_indices) for i in range(s.n_dims)]
    return (_tfl_i32s(s.traversal_order), _tfl_i32s(s.block_map), dims)


def tflite_type_info(int type):
    """(mf dtype code, element bits) of a TFLite TensorType (bits 0: no fixed size)."""
    return mf_tflite_dtype(type), mf_tflite_type_bits(type)


def tflite_parse(const uint8_t[::1] buf, bint require_ident=True, window=None):
    """Walk a TFLite flatbuffer (buf = the whole file). Returns a dict of record lists:

    version, description, opcodes [(builtin, deprecated, version, custom)], subgraphs [(name,
    first_tensor, n_tensors, first_op, n_ops, inputs, outputs)], tensors [(subgraph, index, name,
    type, shape, shape_signature, buffer, is_variable, has_rank, quant, sparsity,
    external_buffer, n_variant)], ops [(subgraph, opcode, inputs, outputs, intermediates,
    options_type, options2_type, custom_options_len, large_custom_options_size)], buffers
    [(file offset, size, external)], metadata [(name, buffer)], metadata_buffer, signatures
    [(key, subgraph, [(name, tensor)], [(name, tensor)])], ext_groups [name], ext_buffers
    [(id, group, offset, length, packing)].
    """
    cdef mf_arena arena
    cdef mf_error err
    cdef mf_tfl_model m
    cdef mf_tfl_tensor *t
    cdef mf_tfl_op *o
    cdef mf_tfl_subgraph *s
    cdef mf_tfl_sig *g
    cdef uint32_t i, j
    cdef uint64_t fb_len = buf.shape[0]
    cdef const uint8_t *p = &buf[0] if buf.shape[0] else NULL
    cdef size_t n = buf.shape[0]
    clear_error(&err)
    err.win = window_of(window)
    # the flatbuffer part of a file is under 2 GB (u32 offsets); buffers after it cost nothing
    if fb_len > (<uint64_t>1 << 31):
        fb_len = <uint64_t>1 << 31
    mf_arena_init(&arena, mf_arena_cap_for(fb_len, 32, 16 << 20))
    try:
        with nogil:
            mf_tflite_parse(p, n, require_ident, &arena, &m, &err)
        raise_error(&err)
        tensors = []
        for i in range(m.n_tensors):
            t = &m.tensors[i]
            tensors.append((t.subgraph, t.index, _tfl_str(t.name), t.type, _tfl_i32s(t.shape),
                            _tfl_i32s(t.shape_signature), t.buffer, t.is_variable, t.has_rank,
                            None if t.quant == NULL else _tfl_quant(t.quant),
                            None if t.sparsity == NULL else _tfl_sparsity(t.sparsity),
                            t.external_buffer, t.n_variant))
        ops = []
        for i in range(m.n_ops):
            o = &m.ops[i]
            ops.append((o.subgraph, o.opcode, _tfl_i32s(o.inputs) or (), _tfl_i32s(o.outputs) or (),
                        _tfl_i32s(o.intermediates) or (), o.options_type, o.options2_type,
                        o.custom_options_len, o.large_custom_options_size))
        subgraphs = []
        for i in range(m.n_subgraphs):
            s = &m.subgraphs[i]
            subgraphs.append((_tfl_str(s.name), s.first_tensor, s.n_tensors, s.first_op, s.n_ops,
                              _tfl_i32s(s.inputs) or (), _tfl_i32s(s.outputs) or ()))
        sigs = []
        for i in range(m.n_sigs):
            g = &m.sigs[i]
            sigs.append((_tfl_str(g.key), g.subgraph,
                         [(_tfl_str(g.inputs[j].name), g.inputs[j].tensor) for j in range(g.n_inputs)],
                         [(_tfl_str(g.outputs[j].name), g.outputs[j].tensor) for j in range(g.n_outputs)]))
        return {
            "version": m.version,
            "description": _tfl_str(m.description),
            "opcodes": [(m.opcodes[i].builtin, m.opcodes[i].deprecated, m.opcodes[i].version,
                         _tfl_str(m.opcodes[i].custom)) for i in range(m.n_opcodes)],
            "subgraphs": subgraphs,
            "tensors": tensors,
            "ops": ops,
            "buffers": [(m.buffers[i].offset, m.buffers[i].size, m.buffers[i].external) for i in range(m.n_buffers)],
            "metadata": [(_tfl_str(m.metadata[i].name), m.metadata[i].buffer) for i in range(m.n_metadata)],
            "metadata_buffer": _tfl_i32s(m.metadata_buffer) or (),
            "signatures": sigs,
            "ext_groups": [_tfl_str(m.ext_groups[i]) for i in range(m.n_ext_groups)],
            "ext_buffers": [(m.ext_buffers[i].id, m.ext_buffers[i].group, m.ext_buffers[i].offset,
                             m.ext_buffers[i].length, _tfl_str(m.ext_buffers[i].packing))
                            for i in range(m.n_ext_buffers)],
        }
    finally:
        mf_arena_free(&arena)


def tflite_metadata(const uint8_t[::1] buf, uint64_t base):
    """Walk a TFLite Model Metadata flatbuffer ("M001"; buf = the bytes of the buffer that
    holds it, base = their file offset). Returns a dict:

    name, description, version, author, license, min_parser_version (str or None),
    subgraphs [(name, description, n_inputs, n_outputs)], tensors [(subgraph, output, index,
    name, description, content_type, (process unit types))], files [(where, subgraph, tensor,
    process_unit, input_unit, name, description, type, locale, version)], custom [(subgraph,
    name, file offset, size)].
    """
    cdef mf_arena arena
    cdef mf_error err
    cdef mf_tfl_metadata m
    cdef mf_tflm_tensor *t
    cdef mf_tflm_file *f
    cdef uint32_t i, j
    clear_error(&err)
    mf_arena_init(&arena, mf_arena_cap_for(buf.shape[0], 256, 16 << 20))
    try:
        mf_tflite_metadata(&buf[0] if buf.shape[0] else NULL, buf.shape[0], base, &arena, &m, &err)
        raise_error(&err)
        tensors = []
        for i in range(m.n_tensors):
            t = &m.tensors[i]
            tensors.append((t.subgraph, t.output, t.index, _tfl_str(t.name), _tfl_str(t.description),
                            t.content_type, tuple([t.process_units[j] for j in range(t.n_process_units)])))
        files = []
        for i in range(m.n_files):
            f = &m.files[i]
            files.append((f.where, f.subgraph, f.tensor, f.process_unit, f.input_unit, _tfl_str(f.name),
                          _tfl_str(f.description), f.type, _tfl_str(f.locale), _tfl_str(f.version)))
        return {
            "name": _tfl_str(m.name), "description": _tfl_str(m.description), "version": _tfl_str(m.version),
            "author": _tfl_str(m.author), "license": _tfl_str(m.license),
            "min_parser_version": _tfl_str(m.min_parser_version),
            "subgraphs": [(_tfl_str(m.subgraphs[i].name), _tfl_str(m.subgraphs[i].description),
                           m.subgraphs[i].n_inputs, m.subgraphs[i].n_outputs) for i in range(m.n_subgraphs)],
            "tensors": tensors,
            "files": files,
            "custom": [(m.custom[i].subgraph, _tfl_str(m.custom[i].name), m.custom[i].offset, m.custom[i].size)
                       for i in range(m.n_custom)],
        }
    finally:
        mf_arena_free(&arena)
