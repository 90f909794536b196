# Included by _native.pyx: bindings over csrc/mf_tf.c (GraphDef, SavedModel, tensor bundles).

cdef extern from "mf_tf.h" nogil:
    ctypedef struct mf_tf_tensor:
        int32_t tf_dtype
        int dtype
        uint32_t ndim
        int64_t *dims
        uint64_t numel
        uint64_t nbytes
        int data
        uint32_t field
        uint64_t count
        uint64_t data_off
        uint64_t msg_off
        uint64_t msg_len
        int32_t node
        mf_pb_str attr

    ctypedef struct mf_tf_node:
        int32_t meta_graph
        int32_t function
        mf_pb_str name
        mf_pb_str op
        mf_pb_str device
        uint32_t n_inputs
        uint64_t offset
        uint64_t op_offset

    ctypedef struct mf_tf_function:
        int32_t meta_graph
        mf_pb_str name
        uint32_t n_nodes
        uint64_t offset

    ctypedef struct mf_tf_meta_graph:
        uint64_t offset
        mf_pb_str tf_version
        mf_pb_str tf_git_version
        uint32_t first_tag
        uint32_t n_tags
        int has_graph
        int32_t producer

    ctypedef struct mf_tf_signature:
        int32_t meta_graph
        mf_pb_str key
        mf_pb_str method

    ctypedef struct mf_tf_sig_tensor:
        int32_t signature
        int role
        mf_pb_str key
        mf_pb_str name
        int encoding
        int32_t tf_dtype
        int32_t ndim
        int64_t *dims

    ctypedef struct mf_tf_graph:
        int is_saved_model
        int64_t schema_version
        int32_t producer
        int32_t min_consumer
        mf_vec meta_graphs
        mf_vec tags
        mf_vec signatures
        mf_vec sig_tensors
        mf_vec functions
        mf_vec nodes
        mf_vec tensors

    ctypedef struct mf_tf_entry:
        const uint8_t *key
        uint32_t key_len
        int32_t tf_dtype
        int dtype
        uint32_t ndim
        int64_t *dims
        uint64_t numel
        int32_t shard
        uint64_t offset
        uint64_t size
        int has_crc
        uint32_t crc32c
        uint32_t n_slices
        uint64_t entry_off

    ctypedef struct mf_tf_slice:
        const uint8_t *name
        uint32_t name_len
        uint32_t ndim
        int64_t *start
        int64_t *length
        int32_t tf_dtype
        int32_t shard
        uint64_t offset
        uint64_t size
        int has_crc
        uint32_t crc32c
        uint64_t entry_off

    ctypedef struct mf_tf_bundle:
        int32_t num_shards
        int big_endian
        int32_t producer
        mf_vec entries
        mf_vec slices
        mf_sst_info sst

    int mf_tf_parse_graphdef(const uint8_t *buf, size_t len, uint64_t base, mf_arena *a, mf_tf_graph *out,
                             mf_error *err)
    int mf_tf_parse_saved_model(const uint8_t *buf, size_t len, uint64_t base, mf_arena *a, mf_tf_graph *out,
                                mf_error *err)
    int mf_tf_parse_bundle(const uint8_t *buf, size_t len, mf_arena *a, int verify_blocks, mf_tf_bundle *out,
                           mf_error *err)
    int mf_tf_bundle_strings(const uint8_t *data, size_t len, uint64_t base, uint64_t numel, int big_endian,
                             uint64_t *offs, uint64_t *lens, mf_error *err)
    int mf_tf_bundle_strings_crc(const uint8_t *data, size_t len, uint64_t base, uint64_t numel, int big_endian,
                                 uint32_t *masked, mf_error *err)
    int mf_tf_dtype(int32_t tf_type)
    unsigned mf_tf_itemsize(int32_t tf_type)
    const char *mf_tf_type_name(int32_t tf_type)


def tf_type_name(int32_t t):
    """TensorFlow's name of a DataType code ("DT_FLOAT")."""
    return mf_tf_type_name(t).decode()


def tf_dtype(int32_t t):
    """Canonical mfparse dtype name of a TF DataType code, or None when it has none."""
    cdef int dt = mf_tf_dtype(t)
    return DTYPE_NAMES[dt] if dt else None


def tf_itemsize(int32_t t):
    """Bytes TF stores per element (0 for strings, resources, variants)."""
    return mf_tf_itemsize(t)


cdef tuple _i64s(const int64_t *a, int32_t n):
    return None if n < 0 else i64_tuple(a, <size_t>n)


cdef class TfGraphParse:
    """One parse of a GraphDef or a saved_model.pb. Records point into the input buffer,
    which this object keeps exported until close()."""
    cdef mf_arena arena
    cdef mf_tf_graph g
    cdef const uint8_t[::1] view
    cdef bint live

    def __cinit__(self, buf, bint saved_model, window=None):
        cdef mf_error err
        self.view = buf
        self.live = True
        mf_arena_init(&self.arena, mf_arena_cap_for(self.view.shape[0], 128, 16 << 20))
        clear_error(&err)
        err.win = window_of(window)
        cdef const uint8_t *p = &self.view[0] if self.view.shape[0] else NULL
        cdef size_t n = self.view.shape[0]
        with nogil:
            if saved_model:
                mf_tf_parse_saved_model(p, n, 0, &self.arena, &self.g, &err)
            else:
                mf_tf_parse_graphdef(p, n, 0, &self.arena, &self.g, &err)
        if err.code:
            self.close()
            raise_error(&err)

    def __dealloc__(self):
        mf_arena_free(&self.arena)

    def close(self):
        if self.live:
            mf_arena_free(&self.arena)
            memset(&self.g, 0, sizeof(mf_tf_graph))
            self.view = None
            self.live = False

    cdef check(self):
        if not self.live:
            raise ValueError("TensorFlow graph parse already closed")

    def info(self):
        """(schema_version, producer, min_consumer) of the file."""
        self.check()
        return self.g.schema_version, self.g.producer, self.g.min_consumer

    def meta_graphs(self):
        """[(tags, tensorflow_version, tensorflow_git_version, has_graph, producer, offset)]"""
        self.check()
        cdef size_t i, k
        cdef mf_tf_meta_graph *m = <mf_tf_meta_graph *>self.g.meta_graphs.items
        cdef mf_pb_str *tags = <mf_pb_str *>self.g.tags.items
        return [([pbstr(tags[m[i].first_tag + k]) for k in range(m[i].n_tags)], pbstr(m[i].tf_version),
                 pbstr(m[i].tf_git_version), bool(m[i].has_graph), m[i].producer, m[i].offset)
                for i in range(self.g.meta_graphs.len)]

    def signatures(self):
        """[(meta_graph, key, method_name, [(role, key, name, encoding, tf dtype, shape | None)])];
        shape entries are -1 where unknown."""
        self.check()
        cdef size_t i
        cdef mf_tf_signature *s = <mf_tf_signature *>self.g.signatures.items
        cdef mf_tf_sig_tensor *t = <mf_tf_sig_tensor *>self.g.sig_tensors.items
        out = [(s[i].meta_graph, pbstr(s[i].key), pbstr(s[i].method), []) for i in range(self.g.signatures.len)]
        for i in range(self.g.sig_tensors.len):
            out[t[i].signature][3].append((t[i].role, pbstr(t[i].key), pbstr(t[i].name), t[i].encoding,
                                           t[i].tf_dtype, _i64s(t[i].dims, t[i].ndim)))
        return out

    def functions(self):
        """[(meta_graph, name, n_nodes, offset)]"""
        self.check()
        cdef size_t i
        cdef mf_tf_function *f = <mf_tf_function *>self.g.functions.items
        return [(f[i].meta_graph, pbstr(f[i].name), f[i].n_nodes, f[i].offset) for i in range(self.g.functions.len)]

    def nodes(self):
        """[(meta_graph, function, name, op, device, n_inputs, offset, op_offset)]"""
        self.check()
        cdef size_t i
        cdef mf_tf_node *n = <mf_tf_node *>self.g.nodes.items
        return [(n[i].meta_graph, n[i].function, pbstr(n[i].name), pbstr(n[i].op), pbstr(n[i].device),
                 n[i].n_inputs, n[i].offset, n[i].op_offset) for i in range(self.g.nodes.len)]

    def tensors(self):
        """[(node, attr, tf dtype, dtype name, shape, numel, nbytes, data kind, field, count,
        data_off, msg_off, msg_len)] of every tensor held by a node attribute."""
        self.check()
        cdef size_t i
        cdef mf_tf_tensor *t = <mf_tf_tensor *>self.g.tensors.items
        names = DTYPE_NAMES
        return [(t[i].node, pbstr(t[i].attr), t[i].tf_dtype, names[t[i].dtype], i64_tuple(t[i].dims, t[i].ndim),
                 t[i].numel, t[i].nbytes, t[i].data, t[i].field, t[i].count, t[i].data_off, t[i].msg_off,
                 t[i].msg_len) for i in range(self.g.tensors.len)]


def tf_bundle(buf, bint verify_blocks=True):
    """Parse a tensor bundle .index file.

    Returns (header, entries, slices) with header = {num_shards, big_endian, producer, blocks,
    snappy_blocks}, entries = [(key, tf dtype, dtype name | None, shape, shard, offset, size,
    masked crc32c | None, n_slices, entry offset)] in key order, and slices (the stored pieces
    of partitioned tensors) = [(tensor name, starts, lengths (-1 = whole dimension), tf dtype,
    shard, offset, size, masked crc32c | None, entry offset)].
    """
    cdef const uint8_t[::1] view = buf
    cdef mf_arena arena
    cdef mf_error err
    cdef mf_tf_bundle b
    cdef size_t i
    cdef mf_tf_entry *e
    cdef mf_tf_slice *sl
    cdef const uint8_t *p = &view[0] if view.shape[0] else NULL
    cdef size_t n = view.shape[0]
    clear_error(&err)
    mf_arena_init(&arena, mf_arena_cap_for(view.shape[0], 96, 16 << 20))
    try:
        with nogil:
            mf_tf_parse_bundle(p, n, &arena, verify_blocks, &b, &err)
        raise_error(&err)
        names = DTYPE_NAMES
        header = {"num_shards": b.num_shards, "big_endian": bool(b.big_endian), "producer": b.producer,
                  "blocks": b.sst.n_blocks, "snappy_blocks": b.sst.n_snappy}
        e = <mf_tf_entry *>b.entries.items
        entries = [(text(e[i].key, e[i].key_len), e[i].tf_dtype, names[e[i].dtype] if e[i].dtype else None,
                    i64_tuple(e[i].dims, e[i].ndim), e[i].shard, e[i].offset, e[i].size,
                    e[i].crc32c if e[i].has_crc else None, e[i].n_slices, e[i].entry_off)
                   for i in range(b.entries.len)]
        sl = <mf_tf_slice *>b.slices.items
        slices = [(text(sl[i].name, sl[i].name_len), i64_tuple(sl[i].start, sl[i].ndim),
                   i64_tuple(sl[i].length, sl[i].ndim), sl[i].tf_dtype, sl[i].shard, sl[i].offset, sl[i].size,
                   sl[i].crc32c if sl[i].has_crc else None, sl[i].entry_off) for i in range(b.slices.len)]
        return header, entries, slices
    finally:
        mf_arena_free(&arena)


def tf_bundle_strings(const uint8_t[::1] data, uint64_t base, uint64_t numel, bint big_endian):
    """(offsets relative to data, lengths) of the strings of a DT_STRING bundle tensor."""
    cdef mf_error err
    offs = _np.empty(numel, dtype=_np.uint64)
    lens = _np.empty(numel, dtype=_np.uint64)
    cdef uint64_t[::1] a = offs
    cdef uint64_t[::1] b = lens
    clear_error(&err)
    if numel > <uint64_t>data.shape[0]:
        raise error_of(MF_ERR_CORRUPT, base, f"bundle string tensor: {numel} strings in {data.shape[0]} bytes")
    mf_tf_bundle_strings(&data[0] if data.shape[0] else NULL, data.shape[0], base, numel, big_endian,
                         &a[0] if numel else NULL, &b[0] if numel else NULL, &err)
    raise_error(&err)
    return offs, lens


def tf_bundle_strings_crc(const uint8_t[::1] data, uint64_t base, uint64_t numel, bint big_endian):
    """The masked crc32c TF records for a DT_STRING bundle tensor with these bytes."""
    cdef mf_error err
    cdef uint32_t crc = 0
    clear_error(&err)
    mf_tf_bundle_strings_crc(&data[0] if data.shape[0] else NULL, data.shape[0], base, numel, big_endian, &crc,
                             &err)
    raise_error(&err)
    return crc
