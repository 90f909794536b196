# Included by _native.pyx: bindings over csrc/mf_gguf.c.

cdef extern from "mf_gguf.h" nogil:
    ctypedef struct mf_gguf_value:
        uint32_t type
        uint64_t offset
        uint64_t end
        uint64_t u
        int64_t i
        double f
        const uint8_t *str
        uint64_t str_len
        uint32_t arr_type
        uint64_t arr_count
        uint64_t arr_data

    ctypedef struct mf_gguf_kv:
        const uint8_t *key
        uint64_t key_len
        uint64_t key_offset
        mf_gguf_value v

    ctypedef struct mf_gguf_tensor:
        const uint8_t *name
        uint64_t name_len
        uint64_t info_offset
        uint32_t n_dims
        uint64_t dims[8]
        uint32_t type
        uint64_t rel_offset
        uint64_t offset
        uint64_t nelem
        uint64_t nbytes

    ctypedef struct mf_gguf_result:
        uint32_t version
        int big_endian
        uint64_t n_kv
        mf_gguf_kv *kvs
        uint64_t n_tensors
        mf_gguf_tensor *tensors
        uint32_t alignment
        uint64_t data_start

    int mf_gguf_parse(const uint8_t *buf, size_t len, mf_arena *a, mf_gguf_result *out, mf_error *err)
    int mf_gguf_value_at(const uint8_t *buf, size_t len, uint64_t offset, uint32_t type, int big_endian,
                         mf_gguf_value *out, mf_error *err)
    int mf_gguf_string_offsets(const uint8_t *buf, size_t len, uint64_t offset, uint64_t count, int big_endian,
                               uint64_t *out, mf_error *err)
    const char *mf_gguf_type_name(uint32_t type)
    int mf_gguf_type_size(uint32_t type, uint32_t *block, uint32_t *bytes)
    int mf_gguf_type_dtype(uint32_t type)
    int mf_gguf_can_dequantize(uint32_t type)
    int mf_gguf_dequantize(uint32_t type, const uint8_t *src, size_t nbytes, float *dst, size_t n,
                           mf_error *err) nogil


cdef object _gguf_scalar(mf_gguf_value *v):
    """A scalar or string value as Python; arrays as (elem type, count, data offset, end)."""
    cdef uint32_t t = v.type
    if t == 0 or t == 2 or t == 4 or t == 10:
        return v.u
    if t == 1 or t == 3 or t == 5 or t == 11:
        return v.i
    if t == 6 or t == 12:
        return v.f
    if t == 7:
        return v.u != 0
    if t == 8:
        return text(v.str, v.str_len)
    return (v.arr_type, v.arr_count, v.arr_data, v.end)


def gguf_types():
    """{ggml type id: (name, block elements, block bytes, mf dtype code, dequantizable)}."""
    cdef uint32_t t, block, nbytes
    out = {}
    for t in range(64):
        if mf_gguf_type_size(t, &block, &nbytes) == 0:
            out[t] = (mf_gguf_type_name(t).decode(), block, nbytes, mf_gguf_type_dtype(t),
                      bool(mf_gguf_can_dequantize(t)))
    return out


def gguf_parse(const uint8_t[::1] buf, window=None):
    """Parse a GGUF header (buf = the whole file).

    Returns (version, big_endian, alignment, data_start, kvs, tensors) with kvs as
    [(key, value type, value)] where value is a Python scalar or str, or for arrays
    (element type, count, file offset of the first element, end offset); tensors as
    [(name, shape in numpy order (dims reversed), ggml type, absolute offset, nbytes,
    info offset)].
    """
    cdef mf_arena arena
    cdef mf_error err
    cdef mf_gguf_result r
    cdef mf_gguf_tensor *t
    cdef mf_gguf_kv *kv
    cdef uint64_t i
    cdef uint32_t d
    cdef const uint8_t *p = &buf[0] if buf.shape[0] else NULL
    cdef size_t n = buf.shape[0]
    clear_error(&err)
    err.win = window_of(window)
    mf_arena_init(&arena, mf_arena_cap_for(buf.shape[0], 16, 1 << 20))
    try:
        with nogil:
            mf_gguf_parse(p, n, &arena, &r, &err)
        raise_error(&err)
        kvs = []
        for i in range(r.n_kv):
            kv = &r.kvs[i]
            kvs.append((text(kv.key, kv.key_len), kv.v.type, _gguf_scalar(&kv.v)))
        tensors = []
        for i in range(r.n_tensors):
            t = &r.tensors[i]
            shape = tuple([t.dims[t.n_dims - 1 - d] for d in range(t.n_dims)])
            tensors.append((text(t.name, t.name_len), shape, t.type, t.offset, t.nbytes, t.info_offset))
        return r.version, bool(r.big_endian), r.alignment, r.data_start, kvs, tensors
    finally:
        mf_arena_free(&arena)


def gguf_value_at(const uint8_t[::1] buf, uint64_t offset, uint32_t type, bint big_endian):
    """Decode one value at a file offset: a scalar, a str, or for arrays (elem type, count,
    data offset, end offset). Returns (value, end offset)."""
    cdef mf_error err
    cdef mf_gguf_value v
    clear_error(&err)
    mf_gguf_value_at(&buf[0] if buf.shape[0] else NULL, buf.shape[0], offset, type, big_endian, &v, &err)
    raise_error(&err)
    return _gguf_scalar(&v), v.end


def gguf_string_offsets(const uint8_t[::1] buf, uint64_t offset, uint64_t count, bint big_endian):
    """numpy uint64 array of count + 1 offsets: where each string of a string array starts
    (its u64 length field), then the array's end."""
    import numpy as np
    cdef mf_error err
    out = np.empty(count + 1, dtype=np.uint64)
    cdef uint64_t[::1] o = out
    clear_error(&err)
    mf_gguf_string_offsets(&buf[0] if buf.shape[0] else NULL, buf.shape[0], offset, count, big_endian, &o[0], &err)
    raise_error(&err)
    return out


def gguf_dequantize(uint32_t type, const uint8_t[::1] src, size_t n):
    """float32 numpy array of n elements decoded from ggml blocks of `type`."""
    import numpy as np
    cdef mf_error err
    out = np.empty(n, dtype=np.float32)
    cdef float[::1] o = out
    cdef const uint8_t *p = &src[0] if src.shape[0] else NULL
    cdef size_t nb = src.shape[0]
    cdef float *dst = &o[0] if n else NULL
    clear_error(&err)
    with nogil:
        mf_gguf_dequantize(type, p, nb, dst, n, &err)
    raise_error(&err)
    return out
