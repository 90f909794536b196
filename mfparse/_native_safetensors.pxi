# Included by _native.pyx: bindings over csrc/mf_safetensors.c.

cdef extern from "mf_safetensors.h" nogil:
    ctypedef struct mf_st_tensor:
        const uint8_t *name
        uint32_t name_len
        int dtype
        uint32_t ndim
        uint64_t *shape
        uint64_t begin
        uint64_t end

    ctypedef struct mf_st_meta:
        const uint8_t *key
        uint32_t key_len
        const uint8_t *value
        uint32_t value_len

    ctypedef struct mf_st_result:
        mf_st_tensor *tensors
        size_t n_tensors
        mf_st_meta *meta
        size_t n_meta
        int has_meta
        uint64_t header_len
        uint64_t data_start

    int mf_safetensors_header_len(const uint8_t *buf, size_t len, uint64_t file_size, uint64_t *n,
                                  mf_error *err)
    int mf_safetensors_parse(const uint8_t *buf, size_t len, uint64_t file_size, mf_arena *a,
                             mf_st_result *out, mf_error *err)


def safetensors_header_len(const uint8_t[::1] head, uint64_t file_size):
    """Validated header length N from the first 8 bytes of a safetensors file."""
    cdef uint64_t n = 0
    cdef mf_error err
    clear_error(&err)
    mf_safetensors_header_len(&head[0] if head.shape[0] else NULL, head.shape[0], file_size, &n, &err)
    raise_error(&err)
    return n


def safetensors_parse(const uint8_t[::1] buf, uint64_t file_size, info_cls=tuple, empty=None):
    """Parse and validate a safetensors header; buf = the first 8 + N bytes of the file.

    Returns (tensors, metadata | None, data_start) with tensors as
    info_cls(name, dtype name, shape tuple, nbytes, offset, None, None, empty) in data-offset
    order (absolute offsets; info_cls is a tuple subclass such as TensorInfo, or tuple itself).
    """
    cdef mf_arena arena
    cdef mf_error err
    cdef mf_st_result r
    cdef size_t i
    cdef uint32_t d
    cdef mf_st_tensor *t
    cdef const uint8_t *p = &buf[0] if buf.shape[0] else NULL
    cdef size_t n = buf.shape[0]
    clear_error(&err)
    mf_arena_init(&arena, mf_arena_cap_for(buf.shape[0], 16, 1 << 20))
    try:
        with nogil:
            mf_safetensors_parse(p, n, file_size, &arena, &r, &err)
        raise_error(&err)
        tensors = []
        names = DTYPE_NAMES
        shapes = ShapeCache()
        sizes = IntCache()
        for i in range(r.n_tensors):
            t = &r.tensors[i]
            tensors.append(new_info(info_cls, text(t.name, t.name_len), names[t.dtype],
                                    shapes.get_u(t.shape, t.ndim), sizes.get(t.end - t.begin), t.begin, empty))
        meta = None
        if r.has_meta:
            meta = {text(r.meta[i].key, r.meta[i].key_len): text(r.meta[i].value, r.meta[i].value_len)
                    for i in range(r.n_meta)}
        return tensors, meta, r.data_start
    finally:
        mf_arena_free(&arena)
