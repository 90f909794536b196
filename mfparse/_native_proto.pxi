# Included by _native.pyx: bindings over csrc/mf_proto.c (the protobuf wire walker).

cdef extern from "mf_proto.h":
    ctypedef struct mf_pb_str:
        const uint8_t *p
        uint32_t n

    int MF_PB_VARINT
    int MF_PB_I64
    int MF_PB_I32
    int mf_pb_collect(const uint8_t *buf, size_t len, uint64_t base, uint32_t num, int kind, uint64_t *out,
                      uint64_t cap, uint64_t *n_out, mf_error *err)
    int mf_pb_collect_bytes(const uint8_t *buf, size_t len, uint64_t base, uint32_t num, uint64_t *offs,
                            uint64_t *lens, uint64_t cap, uint64_t *n_out, mf_error *err)
    int mf_pb_looks_like(const uint8_t *head, size_t head_len, uint64_t total_len, uint32_t max_field,
                         int max_records)

from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_DECREF
from libc.string cimport memcpy

cdef extern from "Python.h":
    PyObject *PyType_GenericAlloc(PyTypeObject *t, Py_ssize_t nitems) except NULL
    void PyObject_GC_UnTrack(void *op)

import numpy as _np

PB_VARINT = MF_PB_VARINT
PB_I64 = MF_PB_I64
PB_I32 = MF_PB_I32


cdef inline str pbstr(mf_pb_str s):
    return text(s.p, s.n)


cdef inline void _put(object t, Py_ssize_t k, object v) noexcept:
    Py_INCREF(v)
    PyTuple_SET_ITEM(t, k, v)


cdef struct shape_cache:
    uint32_t n[32]
    int64_t dims[32][6]


cdef class ShapeCache:
    """Recently built shape tuples, reused when the next tensor has the same dims (layers of a
    model repeat a handful of shapes): fewer tuples and ints to build, free and collect."""
    cdef shape_cache c
    cdef list objs

    def __cinit__(self):
        memset(&self.c, 0, sizeof(shape_cache))
        self.objs = [None] * 32

    cdef tuple get(self, const int64_t *dims, uint32_t n):
        cdef uint64_t h = n
        cdef uint32_t i
        if n > 6:
            return i64_tuple(dims, n)
        for i in range(n):
            h = h * 1000003 + <uint64_t>dims[i]
        h = (h ^ (h >> 29)) & 31
        cdef object hit = self.objs[h]
        if hit is not None and self.c.n[h] == n and (n == 0 or memcmp(self.c.dims[h], dims, n * sizeof(int64_t)) == 0):
            return <tuple>hit
        t = i64_tuple(dims, n)
        PyObject_GC_UnTrack(<void *>t)
        self.c.n[h] = n
        if n:
            memcpy(self.c.dims[h], dims, n * sizeof(int64_t))
        self.objs[h] = t
        return t


cdef class IntCache:
    """Recently built Python ints by value: tensors of a repeated shape share their byte count,
    so one int object serves them all instead of one allocation (and one free) per tensor."""
    cdef uint64_t keys[64]
    cdef list objs

    def __cinit__(self):
        memset(self.keys, 0, sizeof(self.keys))
        self.objs = [None] * 64

    cdef object get(self, uint64_t v):
        cdef uint64_t h = v * <uint64_t>0x9e3779b97f4a7c15
        cdef Py_ssize_t k = <Py_ssize_t>(h >> 58)
        cdef object hit = self.objs[k]
        if hit is not None and self.keys[k] == v:
            return hit
        o = PyLong_FromUnsignedLongLong(v)
        self.keys[k] = v
        self.objs[k] = o
        return o


cdef object new_info(type cls, object name, object dtype, object shape, object nbytes, object offset,
                     object extras):
    """cls(name, dtype, shape, nbytes, offset, None, None, extras) for an 8-field tuple subclass
    (TensorInfo), built in place: no argument tuple, no Python-level __new__."""
    cdef PyObject *p = PyType_GenericAlloc(<PyTypeObject *>cls, 8)
    cdef object o = <object>p
    Py_DECREF(o)        # <object>p took a second reference to the new object
    _put(o, 0, name)
    _put(o, 1, dtype)
    _put(o, 2, shape)
    _put(o, 3, nbytes)
    _put(o, 4, offset)
    _put(o, 5, None)
    _put(o, 6, None)
    _put(o, 7, extras)
    # nothing it holds can lead back to it (strings, ints, a tuple of ints, the shared empty
    # extras): the cycle collector need not visit it
    PyObject_GC_UnTrack(<void *>o)
    return o


def pb_collect(const uint8_t[::1] msg, uint64_t base, uint32_t field, int kind, uint64_t expect):
    """Every value of the repeated scalar `field` of the message msg (file offset base), packed
    or not, as a uint64 numpy array (fixed32 values widened). expect = the count the caller
    computed when listing; a different count is a CorruptFileError."""
    cdef mf_error err
    cdef uint64_t n = 0
    out = _np.empty(expect, dtype=_np.uint64)
    cdef uint64_t[::1] o = out
    clear_error(&err)
    mf_pb_collect(&msg[0] if msg.shape[0] else NULL, msg.shape[0], base, field, kind,
                  &o[0] if expect else NULL, expect, &n, &err)
    raise_error(&err)
    if n != expect:
        raise error_from_code(2, base, f"protobuf field {field} holds {n} values, expected {expect}")
    return out


def pb_collect_bytes(const uint8_t[::1] msg, uint64_t base, uint32_t field, uint64_t expect):
    """(file offsets, lengths) of every value of the repeated bytes `field` of msg."""
    cdef mf_error err
    cdef uint64_t n = 0
    offs = _np.empty(expect, dtype=_np.uint64)
    lens = _np.empty(expect, dtype=_np.uint64)
    cdef uint64_t[::1] a = offs
    cdef uint64_t[::1] b = lens
    clear_error(&err)
    mf_pb_collect_bytes(&msg[0] if msg.shape[0] else NULL, msg.shape[0], base, field,
                        &a[0] if expect else NULL, &b[0] if expect else NULL, expect, &n, &err)
    raise_error(&err)
    if n != expect:
        raise error_from_code(2, base, f"protobuf field {field} holds {n} values, expected {expect}")
    return offs, lens


def pb_looks_like(const uint8_t[::1] head, uint64_t total_len, uint32_t max_field, int max_records=8):
    """True when head (the first bytes of a total_len-byte message) parses as protobuf records
    with field numbers in [1, max_field] and lengths that fit."""
    return bool(mf_pb_looks_like(&head[0] if head.shape[0] else NULL, head.shape[0], total_len, max_field,
                                 max_records))
