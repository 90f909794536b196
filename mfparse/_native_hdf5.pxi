# Included by _native.pyx: bindings over csrc/mf_hdf5.c (HDF5 files).

cdef extern from "mf_hdf5.h" nogil:
    uint64_t MF_H5_UNDEF
    unsigned MF_H5_NO_VERIFY
    unsigned MF_H5_NO_EOF_CHECK

    ctypedef struct mf_h5_dtype

    ctypedef struct mf_h5_member:
        const uint8_t *name
        uint32_t name_len
        uint32_t offset
        mf_h5_dtype *type
        const uint8_t *value

    ctypedef struct mf_h5_dtype:
        uint8_t cls
        uint8_t version
        uint8_t order
        uint8_t is_signed
        uint32_t bits
        uint32_t size
        uint16_t bit_offset
        uint16_t precision
        int code
        uint32_t n_members
        mf_h5_member *members
        mf_h5_dtype *base
        uint32_t ndims
        uint32_t *dims
        const uint8_t *tag
        uint32_t tag_len

    ctypedef struct mf_h5_space:
        uint8_t kind
        uint8_t rank
        uint64_t *dims
        uint64_t *maxdims

    ctypedef struct mf_h5_filter:
        uint16_t id
        uint16_t flags
        const uint8_t *name
        uint32_t name_len
        uint32_t n_values
        uint32_t *values

    ctypedef struct mf_h5_dataset:
        mf_h5_dtype *dtype
        mf_h5_space space
        uint64_t numel
        uint64_t nbytes
        uint8_t layout
        uint8_t layout_version
        uint64_t data_offset
        uint64_t data_size
        uint8_t index_type
        uint8_t chunk_flags
        uint64_t *chunk
        uint32_t chunk_elem
        uint64_t chunk_bytes
        uint64_t index_addr
        uint32_t n_filters
        mf_h5_filter *filters
        uint8_t fill_status
        uint8_t fill_time
        uint8_t alloc_time
        uint64_t fill_offset
        uint32_t fill_size
        uint8_t external
        uint32_t n_files
        mf_h5_extfile *files
        int32_t files_status

    ctypedef struct mf_h5_extfile:
        const uint8_t *name
        uint32_t name_len
        const uint8_t *dset
        uint32_t dset_len
        uint64_t offset
        uint64_t size
        uint64_t at

    ctypedef struct mf_h5_attr:
        const uint8_t *name
        uint32_t name_len
        uint8_t charset
        mf_h5_dtype *dtype
        mf_h5_space space
        uint64_t numel
        uint64_t data_offset
        uint64_t data_size
        int64_t crt_order
        uint32_t object

    ctypedef struct mf_h5_object:
        const char *path
        uint32_t path_len
        uint32_t name_off
        int32_t parent
        uint8_t kind
        uint8_t charset
        uint8_t tracks_order
        uint8_t dense
        uint64_t addr
        int64_t crt_order
        int32_t dataset
        mf_h5_dtype *dtype
        uint32_t attr_first
        uint32_t n_attrs
        const uint8_t *target
        uint32_t target_len
        int32_t alias_of
        uint8_t oh_version

    ctypedef struct mf_h5_result:
        const uint8_t *data
        size_t len
        uint64_t report_base
        uint64_t base
        uint8_t so
        uint8_t sl
        uint8_t sb_version
        uint64_t eof
        mf_h5_object *objects
        size_t n_objects
        mf_h5_dataset *datasets
        size_t n_datasets
        mf_h5_attr *attrs
        size_t n_attrs

    ctypedef struct mf_h5_chunk:
        uint64_t addr
        uint64_t size
        uint32_t mask
        uint64_t *offset

    int64_t mf_h5_find_superblock(const uint8_t *buf, size_t len)
    int mf_h5_open(const uint8_t *buf, size_t len, uint64_t report_base, unsigned flags, mf_arena *a,
                   mf_h5_result *out, mf_error *err)
    int mf_h5_chunks(const mf_h5_result *r, const mf_h5_dataset *d, unsigned flags, mf_arena *a,
                     mf_h5_chunk **out, size_t *n_out, mf_error *err)
    int mf_h5_vlen(const mf_h5_result *r, const uint8_t *elems, size_t n, size_t stride, mf_arena *a,
                   uint64_t *offsets, uint64_t *sizes, uint32_t *counts, mf_error *err)
    size_t mf_h5_vlen_elem_size(const mf_h5_result *r)



H5_NO_VERIFY = MF_H5_NO_VERIFY
H5_NO_EOF_CHECK = MF_H5_NO_EOF_CHECK


def h5_find_superblock(const uint8_t[::1] buf):
    """Offset of the HDF5 signature (0, 512, 1024, ...) in buf, or -1."""
    return mf_h5_find_superblock(&buf[0] if buf.shape[0] else NULL, buf.shape[0])


cdef inline object _opt(uint64_t v):
    return None if v == MF_H5_UNDEF else v


cdef bytes _raw(const uint8_t *p, size_t n):
    if p == NULL:
        return None
    return (<const char *>p)[:n]


cdef tuple _dtype_tuple(mf_h5_dtype *t):
    """(cls, size, code, order, signed, bits, precision, bit_offset, members, base, dims, tag)
    members: ((name, offset, member dtype | None, enum value bytes | None), ...)"""
    cdef uint32_t i
    members = None
    if t.n_members:
        members = tuple(
            (_raw(t.members[i].name, t.members[i].name_len), t.members[i].offset,
             _dtype_tuple(t.members[i].type) if t.members[i].type != NULL else None,
             _raw(t.members[i].value, t.base.size) if t.members[i].value != NULL and t.base != NULL else None)
            for i in range(t.n_members))
    dims = tuple(t.dims[i] for i in range(t.ndims)) if t.ndims else None
    return (t.cls, t.size, t.code, t.order, t.is_signed, t.bits, t.precision, t.bit_offset, members,
            _dtype_tuple(t.base) if t.base != NULL else None, dims,
            _raw(t.tag, t.tag_len) if t.tag != NULL else None)


cdef tuple _space_tuple(mf_h5_space *s):
    return (s.kind, u64_tuple(s.dims, s.rank), u64_tuple(s.maxdims, s.rank))


cdef class H5File:
    """A parsed HDF5 file: objects, datasets and attributes as C records, converted on demand.

    The buffer (a memoryview of the whole HDF5 file) stays referenced while this object lives;
    every offset handed out is an offset in that buffer.
    """
    cdef mf_arena arena
    cdef mf_h5_result r
    cdef const uint8_t[::1] view
    cdef readonly unsigned flags
    cdef readonly uint64_t report_base

    def __cinit__(self):
        mf_arena_init(&self.arena, 0)
        memset(&self.r, 0, sizeof(mf_h5_result))

    def __init__(self, buf, uint64_t report_base=0, unsigned flags=0, window=None):
        cdef mf_error err
        self.view = buf
        self.flags = flags
        self.report_base = report_base
        clear_error(&err)
        err.win = window_of(window)
        # records, names and dtype trees are bounded by the file's size
        self.arena.cap = mf_arena_cap_for(self.view.shape[0], 16, 64 << 20)
        cdef const uint8_t *p = &self.view[0] if self.view.shape[0] else NULL
        cdef size_t n = self.view.shape[0]
        with nogil:
            mf_h5_open(p, n, report_base, flags, &self.arena, &self.r, &err)
        raise_error(&err)

    def __dealloc__(self):
        mf_arena_free(&self.arena)

    def close(self):
        """Free the records and drop the buffer."""
        mf_arena_free(&self.arena)
        memset(&self.r, 0, sizeof(mf_h5_result))
        self.view = None

    @property
    def n_objects(self):
        return self.r.n_objects

    @property
    def n_datasets(self):
        return self.r.n_datasets

    @property
    def superblock(self):
        """(superblock offset = user block size, version, size of offsets, size of lengths, eof)"""
        return (self.r.base, self.r.sb_version, self.r.so, self.r.sl, self.r.eof)

    cdef void _check(self) except *:
        if self.r.objects == NULL:
            raise ValueError("HDF5 file is closed")

    def objects(self):
        """[(path, kind, parent, dataset, addr|None, alias_of, target|None, crt_order, tracks_order,
        attr_first, n_attrs, name_off, charset, dense)] in walk order (pre-order, names sorted)."""
        cdef size_t i
        cdef mf_h5_object *o
        self._check()
        out = []
        for i in range(self.r.n_objects):
            o = &self.r.objects[i]
            out.append((text(<const uint8_t *>o.path, o.path_len), o.kind, o.parent, o.dataset, _opt(o.addr),
                        o.alias_of, _raw(o.target, o.target_len), o.crt_order, o.tracks_order, o.attr_first,
                        o.n_attrs, o.name_off, o.charset, o.dense))
        return out

    def find(self, str path):
        """Index of the object at an HDF5 path ("a/b"; leading and trailing "/" ignored), or -1."""
        cdef bytes p = path.strip("/").encode("utf-8", "surrogateescape")
        cdef const char *s = p
        cdef size_t n = len(p), i
        self._check()
        for i in range(self.r.n_objects):
            if self.r.objects[i].path_len == n and memcmp(self.r.objects[i].path, s, n) == 0:
                return i
        return -1

    def dataset_paths(self):
        """[(path, object index)] of every dataset."""
        cdef size_t i
        self._check()
        return [(text(<const uint8_t *>self.r.objects[i].path, self.r.objects[i].path_len), i)
                for i in range(self.r.n_objects) if self.r.objects[i].kind == MF_H5_DATASET]

    def object_dtype(self, size_t i):
        """Datatype tuple of a committed datatype object (None for other objects)."""
        self._check()
        if i >= self.r.n_objects:
            raise IndexError(i)
        if self.r.objects[i].dtype == NULL:
            return None
        return _dtype_tuple(self.r.objects[i].dtype)

    def dataset(self, size_t i):
        """(dtype, space, numel, nbytes, layout, layout_version, data_offset|None, data_size,
        index_type, chunk_flags, chunk, chunk_bytes, index_addr|None, filters, fill, external) where
        filters = ((id, flags, name|None, values), ...) and
        fill = (status, fill_time, offset|None, size, alloc_time): status 0 undefined, 1 default
        (zeros), 2 user-defined (the value's offset and size); fill_time 0 on allocation, 1 never, 2 if set."""
        cdef mf_h5_dataset *d
        cdef uint32_t k
        self._check()
        if i >= self.r.n_datasets:
            raise IndexError(i)
        d = &self.r.datasets[i]
        filters = tuple((d.filters[k].id, d.filters[k].flags, _raw(d.filters[k].name, d.filters[k].name_len),
                         tuple(d.filters[k].values[j] for j in range(d.filters[k].n_values)))
                        for k in range(d.n_filters))
        return (_dtype_tuple(d.dtype), _space_tuple(&d.space), d.numel, d.nbytes, d.layout, d.layout_version,
                _opt(d.data_offset), d.data_size, d.index_type, d.chunk_flags,
                u64_tuple(d.chunk, d.space.rank) if d.layout == 2 else None, d.chunk_bytes, _opt(d.index_addr),
                filters, (d.fill_status, d.fill_time, _opt(d.fill_offset), d.fill_size, d.alloc_time),
                d.external)

    def files(self, size_t i):
        """(status, [(file name, source dataset | None, offset, size | None, name offset)]): the other
        files dataset i reads: its external storage files (offset and size in that file; size None
        when unlimited) or the sources of a virtual dataset (names as bytes). status 0 when they were
        read, -1 when a virtual dataset's block could not be read, > 0 its unread encoding version."""
        cdef mf_h5_dataset *d
        cdef uint32_t k
        self._check()
        if i >= self.r.n_datasets:
            raise IndexError(i)
        d = &self.r.datasets[i]
        return (d.files_status, [(_raw(d.files[k].name, d.files[k].name_len),
                                  _raw(d.files[k].dset, d.files[k].dset_len) if d.files[k].dset != NULL else None,
                                  d.files[k].offset, None if d.files[k].size == <uint64_t>-1 else d.files[k].size,
                                  d.files[k].at) for k in range(d.n_files)])

    def attrs(self, size_t obj):
        """[(name, charset, dtype, space, numel, data_offset, data_size, crt_order)] of an object."""
        cdef mf_h5_object *o
        cdef mf_h5_attr *a
        cdef uint32_t k
        self._check()
        if obj >= self.r.n_objects:
            raise IndexError(obj)
        o = &self.r.objects[obj]
        out = []
        for k in range(o.n_attrs):
            a = &self.r.attrs[o.attr_first + k]
            out.append((text(a.name, a.name_len), a.charset, _dtype_tuple(a.dtype), _space_tuple(&a.space),
                        a.numel, a.data_offset, a.data_size, a.crt_order))
        return out

    def fast_infos(self, info_cls, uint64_t shift, simple_extras, compact_extras):
        """(infos, slow): one entry per dataset object in walk order: a ready info_cls(name, dtype,
        shape, nbytes, offset + shift, None, None, extras) for plain little-endian numbers stored
        contiguously or compactly; for the others the entry is the object's index and its position
        is listed in `slow` (the caller builds those)."""
        cdef size_t i
        cdef mf_h5_object *o
        cdef mf_h5_dataset *d
        cdef mf_h5_dtype *t
        self._check()
        names = DTYPE_NAMES
        out = []
        slow = []
        cdef ShapeCache shapes = ShapeCache()
        cdef IntCache sizes = IntCache()
        for i in range(self.r.n_objects):
            o = &self.r.objects[i]
            if o.kind != MF_H5_DATASET:
                continue
            d = &self.r.datasets[o.dataset]
            t = d.dtype
            if (t.code != 0 and t.order == 0 and d.layout <= 1 and d.data_offset != MF_H5_UNDEF
                    and not d.external and d.space.kind <= 1):
                out.append(new_info(info_cls, text(<const uint8_t *>o.path, o.path_len), names[t.code],
                                    shapes.get_u(d.space.dims, d.space.rank), sizes.get(d.nbytes),
                                    d.data_offset + shift, compact_extras if d.layout == 0 else simple_extras))
            else:
                slow.append(len(out))
                out.append(i)
        return out, slow

    def chunks(self, size_t i, window=None):
        """[(offset tuple, addr, size, filter mask)] of every allocated chunk of dataset i."""
        cdef mf_arena arena
        cdef mf_error err
        cdef mf_h5_chunk *ch
        cdef size_t n, k
        cdef mf_h5_dataset *d
        self._check()
        if i >= self.r.n_datasets:
            raise IndexError(i)
        d = &self.r.datasets[i]
        clear_error(&err)
        err.win = window_of(window)
        mf_arena_init(&arena, mf_arena_cap_for(self.view.shape[0], 8, 16 << 20))
        try:
            mf_h5_chunks(&self.r, d, self.flags, &arena, &ch, &n, &err)
            raise_error(&err)
            return [(u64_tuple(ch[k].offset, d.space.rank), ch[k].addr, ch[k].size, ch[k].mask) for k in range(n)]
        finally:
            mf_arena_free(&arena)

    def vlen(self, const uint8_t[::1] elems, size_t n, size_t stride, window=None):
        """Resolve n variable-length elements: [(offset | None, size, count)]."""
        cdef mf_arena arena
        cdef mf_error err
        cdef size_t k
        cdef uint64_t *offs
        cdef uint64_t *sizes
        cdef uint32_t *counts
        self._check()
        if n == 0:
            return []
        if stride < mf_h5_vlen_elem_size(&self.r) or (n - 1) * stride + mf_h5_vlen_elem_size(&self.r) > <size_t>elems.shape[0]:
            raise ValueError("variable-length elements do not fit the buffer")
        clear_error(&err)
        err.win = window_of(window)
        mf_arena_init(&arena, mf_arena_cap_for(self.view.shape[0] + 32 * n, 8, 16 << 20))
        try:
            offs = <uint64_t *>mf_arena_calloc(&arena, n, sizeof(uint64_t), &err, 0)
            sizes = <uint64_t *>mf_arena_calloc(&arena, n, sizeof(uint64_t), &err, 0)
            counts = <uint32_t *>mf_arena_calloc(&arena, n, sizeof(uint32_t), &err, 0)
            raise_error(&err)
            mf_h5_vlen(&self.r, &elems[0], n, stride, &arena, offs, sizes, counts, &err)
            raise_error(&err)
            return [(_opt(offs[k]), sizes[k], counts[k]) for k in range(n)]
        finally:
            mf_arena_free(&arena)

    @property
    def vlen_elem_size(self):
        return mf_h5_vlen_elem_size(&self.r)
