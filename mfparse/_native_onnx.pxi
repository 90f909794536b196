# Included by _native.pyx: bindings over csrc/mf_onnx.c.

cdef extern from "mf_onnx.h" nogil:
    ctypedef struct mf_onnx_kv:
        mf_pb_str key
        mf_pb_str value

    ctypedef struct mf_onnx_opset:
        mf_pb_str domain
        int64_t version

    ctypedef struct mf_onnx_scope:
        int kind
        int32_t parent
        int32_t node
        mf_pb_str attr
        uint32_t index
        mf_pb_str name
        mf_pb_str domain
        uint64_t offset
        uint32_t n_nodes
        uint32_t n_initializers
        uint32_t n_sparse

    ctypedef struct mf_onnx_node:
        int32_t scope
        mf_pb_str op_type
        mf_pb_str domain
        mf_pb_str name
        mf_pb_str output0
        uint32_t n_inputs
        uint32_t n_outputs
        uint64_t offset

    ctypedef struct mf_onnx_dim:
        int kind
        int64_t value
        mf_pb_str param

    ctypedef struct mf_onnx_value:
        int32_t scope
        int role
        mf_pb_str name
        int type_kind
        int32_t elem_type
        int32_t ndim
        mf_onnx_dim *dims
        const char *type_str
        uint64_t offset

    ctypedef struct mf_onnx_tensor_more:
        int32_t node
        mf_pb_str attr
        uint32_t attr_index
        int32_t partner
        uint32_t sparse_ndim
        int64_t *sparse_dims
        uint32_t field
        uint64_t count
        uint64_t msg_off
        uint64_t msg_len
        mf_onnx_kv *ext
        uint32_t n_ext
        int has_segment
        int64_t seg_begin
        int64_t seg_end

    ctypedef struct mf_onnx_tensor:
        mf_pb_str name
        int64_t *dims
        uint64_t nbytes
        uint64_t data_off
        uint32_t ndim
        int32_t scope
        int32_t data_type
        uint8_t source
        uint8_t data
        uint8_t dtype
        uint8_t dup
        mf_onnx_tensor_more *more

    ctypedef struct mf_onnx_model:
        int has_ir_version
        int64_t ir_version
        mf_pb_str producer_name
        mf_pb_str producer_version
        mf_pb_str domain
        mf_pb_str doc_string
        int has_model_version
        int64_t model_version
        mf_vec opsets
        mf_vec props
        mf_vec scopes
        mf_vec nodes
        mf_vec values
        mf_vec tensors
        mf_pb_str graph_doc

    int mf_onnx_parse_model(const uint8_t *buf, size_t len, uint64_t base, mf_arena *a, mf_onnx_model *out,
                            mf_error *err)
    int mf_onnx_parse_tensor(const uint8_t *buf, size_t len, uint64_t base, mf_arena *a, mf_onnx_model *out,
                             mf_error *err)
    int mf_onnx_dtype(int32_t onnx_type)
    const char *mf_onnx_type_name(int32_t onnx_type)
    int MF_ONNX_SRC_INITIALIZER
    int MF_ONNX_DATA_RAW
    int MF_ONNX_SCOPE_GRAPH




def onnx_type_name(int32_t t):
    """ONNX's own name of a TensorProto.DataType ("float", "bfloat16", ...)."""
    return mf_onnx_type_name(t).decode()


cdef class OnnxParse:
    """One parse of an ONNX ModelProto (or a bare TensorProto). Records point into the input
    buffer, which this object keeps exported (so the map stays valid) until close()."""
    cdef mf_arena arena
    cdef mf_onnx_model m
    cdef const uint8_t[::1] view
    cdef bint live

    def __cinit__(self, buf, bint bare=False, window=None):
        cdef mf_error err
        self.view = buf
        self.live = True
        # records are ~100-200 bytes and the smallest message that makes one is 2 bytes
        mf_arena_init(&self.arena, mf_arena_cap_for(self.view.shape[0], 128, 16 << 20))
        clear_error(&err)
        err.win = window_of(window)
        cdef const uint8_t *p = &self.view[0] if self.view.shape[0] else NULL
        cdef size_t n = self.view.shape[0]
        with nogil:
            if bare:
                mf_onnx_parse_tensor(p, n, 0, &self.arena, &self.m, &err)
            else:
                mf_onnx_parse_model(p, n, 0, &self.arena, &self.m, &err)
        if err.code:
            self.close()
            raise_error(&err)

    def __dealloc__(self):
        mf_arena_free(&self.arena)

    def close(self):
        """Free the records and release the input buffer."""
        if self.live:
            mf_arena_free(&self.arena)
            memset(&self.m, 0, sizeof(mf_onnx_model))
            self.view = None
            self.live = False

    cdef check(self):
        if not self.live:
            raise ValueError("ONNX parse already closed")

    def meta(self):
        """Model-level fields as a dict (absent fields omitted)."""
        self.check()
        cdef size_t i
        cdef mf_onnx_opset *o = <mf_onnx_opset *>self.m.opsets.items
        cdef mf_onnx_kv *kv = <mf_onnx_kv *>self.m.props.items
        out = {}
        if self.m.has_ir_version:
            out["ir_version"] = self.m.ir_version
        if self.m.producer_name.p != NULL:
            out["producer_name"] = pbstr(self.m.producer_name)
        if self.m.producer_version.p != NULL:
            out["producer_version"] = pbstr(self.m.producer_version)
        if self.m.domain.p != NULL:
            out["domain"] = pbstr(self.m.domain)
        if self.m.has_model_version:
            out["model_version"] = self.m.model_version
        if self.m.doc_string.p != NULL:
            out["doc_string"] = pbstr(self.m.doc_string)
        if self.m.graph_doc.p != NULL:
            out["graph_doc_string"] = pbstr(self.m.graph_doc)
        out["opset_import"] = [(pbstr(o[i].domain), o[i].version) for i in range(self.m.opsets.len)]
        out["metadata_props"] = [(pbstr(kv[i].key), pbstr(kv[i].value)) for i in range(self.m.props.len)]
        return out

    def tensors(self, info_cls, empty):
        """(infos, special): infos has one entry per tensor record in file order; plain
        raw-data initializers of the main graph with a name not seen before are finished
        info_cls tuples (name, dtype, shape, nbytes, offset, None, None, empty); every other
        entry is None and described in `special` as (index, record dict) for the Python layer
        to name and finish."""
        self.check()
        cdef size_t i, k
        cdef mf_onnx_tensor *t = <mf_onnx_tensor *>self.m.tensors.items
        cdef mf_onnx_tensor_more *mo
        cdef mf_onnx_tensor_more none
        cdef mf_onnx_scope *sc = <mf_onnx_scope *>self.m.scopes.items
        cdef list infos = []
        cdef list special = []
        cdef list names = DTYPE_NAMES
        cdef ShapeCache shapes = ShapeCache()
        cdef IntCache sizes = IntCache()
        memset(&none, 0, sizeof(none))
        none.node = -1
        none.partner = -1
        for i in range(self.m.tensors.len):
          if (t[i].more == NULL and not t[i].dup and t[i].scope >= 0
                  and sc[t[i].scope].kind == MF_ONNX_SCOPE_GRAPH):
              infos.append(new_info(info_cls, pbstr(t[i].name), names[t[i].dtype],
                                    shapes.get(t[i].dims, t[i].ndim), sizes.get(t[i].nbytes), t[i].data_off,
                                    empty))
              continue
          infos.append(None)
          mo = t[i].more if t[i].more != NULL else &none
          rec = {
              "name": pbstr(t[i].name),
              "dtype": names[t[i].dtype],
              "data_type": t[i].data_type,
              "shape": i64_tuple(t[i].dims, t[i].ndim),
              "nbytes": t[i].nbytes,
              "source": t[i].source,
              "scope": t[i].scope,
              "node": mo.node,
              "attr": pbstr(mo.attr) if mo.attr.p != NULL else None,
              "attr_index": mo.attr_index,
              "partner": mo.partner,
              "data": t[i].data,
              "field": mo.field,
              "count": mo.count,
              "data_off": t[i].data_off,
              "msg_off": mo.msg_off,
              "msg_len": mo.msg_len,
              "external": [(pbstr(mo.ext[k].key), pbstr(mo.ext[k].value)) for k in range(mo.n_ext)],
              "dense_shape": i64_tuple(mo.sparse_dims, mo.sparse_ndim) if mo.sparse_dims != NULL else None,
              "segment": (mo.seg_begin, mo.seg_end) if mo.has_segment else None,
          }
          special.append((i, rec))
        return infos, special

    def scopes(self):
        """[(kind, parent, node, attr, index, name, domain, offset, n_nodes, n_initializers, n_sparse)]"""
        self.check()
        cdef size_t i
        cdef mf_onnx_scope *s = <mf_onnx_scope *>self.m.scopes.items
        return [(s[i].kind, s[i].parent, s[i].node, pbstr(s[i].attr) if s[i].attr.p != NULL else None, s[i].index,
                 pbstr(s[i].name), pbstr(s[i].domain), s[i].offset, s[i].n_nodes, s[i].n_initializers, s[i].n_sparse)
                for i in range(self.m.scopes.len)]

    def node(self, size_t i):
        """(scope, op_type, domain, name, first output, n_inputs, n_outputs, offset) of node i."""
        self.check()
        if i >= self.m.nodes.len:
            raise IndexError(i)
        cdef mf_onnx_node *n = <mf_onnx_node *>self.m.nodes.items + i
        return (n.scope, pbstr(n.op_type), pbstr(n.domain), pbstr(n.name), pbstr(n.output0), n.n_inputs,
                n.n_outputs, n.offset)

    def nodes(self):
        """[(scope, op_type, domain)] of every node, in file order."""
        self.check()
        cdef size_t i
        cdef mf_onnx_node *n = <mf_onnx_node *>self.m.nodes.items
        return [(n[i].scope, pbstr(n[i].op_type), pbstr(n[i].domain)) for i in range(self.m.nodes.len)]

    def values(self):
        """[(scope, role, name, type_kind, elem_type, shape | None, type string)] of graph inputs
        (role 0) and outputs (role 1); shape entries are int, str (symbolic) or None."""
        self.check()
        cdef size_t i
        cdef int32_t d
        cdef mf_onnx_value *v = <mf_onnx_value *>self.m.values.items
        out = []
        for i in range(self.m.values.len):
            shape = None
            if v[i].ndim >= 0:
                shape = []
                for d in range(v[i].ndim):
                    if v[i].dims[d].kind == 1:
                        shape.append(v[i].dims[d].value)
                    elif v[i].dims[d].kind == 2:
                        shape.append(pbstr(v[i].dims[d].param))
                    else:
                        shape.append(None)
            out.append((v[i].scope, v[i].role, pbstr(v[i].name), v[i].type_kind, v[i].elem_type, shape,
                        v[i].type_str.decode("utf-8", "backslashreplace")))
        return out


def onnx_dtype(int32_t t):
    """Canonical mfparse dtype name of an ONNX data type code, or None when unknown."""
    cdef int dt = mf_onnx_dtype(t)
    return DTYPE_NAMES[dt] if dt else None
