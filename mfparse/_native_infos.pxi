# Included by _native.pyx: building TensorInfo tuples by the ten thousand.
#
# Listing a 20,000-tensor file is dominated by CPython objects, not by parsing: a TensorInfo, a
# name, a shape tuple and two ints per tensor, each allocated, later freed, and visited by the
# cycle collector in between. The readers' fast paths therefore build TensorInfos through
# tuple's own constructor (no Python-level __new__, no keyword handling; the constructor is what
# keeps a tuple valid on every Python, e.g. the hash cache of 3.14), share shape tuples and byte
# counts between tensors that repeat them (layers repeat a handful of shapes), and take the
# records off the collector's lists: nothing a record holds can lead back to it.

from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_DECREF
from libc.string cimport memcpy

cdef extern from "Python.h":
    void PyObject_GC_UnTrack(void *op)

cdef extern from *:
    """
    /* A tuple subclass instance of n slots, NULL-filled, as tuple's own constructor leaves it
       before filling: PyType_GenericAlloc zero-fills, and since CPython 3.14 a tuple caches its
       hash in ob_hash, which tuple's constructors set to -1 ("not computed"); a zero there would
       be taken for a cached hash of 0. */
    static PyObject *mf_tuple_alloc(PyTypeObject *cls, Py_ssize_t n) {
        PyObject *o = PyType_GenericAlloc(cls, n);
    #if PY_VERSION_HEX >= 0x030E0000
        if (o != NULL) ((PyTupleObject *)o)->ob_hash = -1;
    #endif
        return o;
    }
    """
    object mf_tuple_alloc(PyTypeObject *cls, Py_ssize_t n)


cdef inline void _put(object t, Py_ssize_t k, object v) noexcept:
    Py_INCREF(v)
    PyTuple_SET_ITEM(t, k, v)

from mfparse.records import TensorInfo as _TensorInfo

#: the fields every record builder below fills, in order; checked against the Python type at import
INFO_FIELDS = ("name", "dtype", "shape", "nbytes", "offset", "storage", "stride", "extras", "file")
if _TensorInfo._fields != INFO_FIELDS:
    raise ImportError(f"mfparse.records.TensorInfo has fields {_TensorInfo._fields}, the extension builds "
                      f"{INFO_FIELDS}: rebuild the extension")


cdef struct shape_cache:
    uint32_t n[32]
    uint64_t dims[32][6]


cdef class ShapeCache:
    """Recently built shape tuples, reused when the next tensor has the same dims: fewer tuples
    and ints to build, free and collect. One instance reads either signed dims (get) or unsigned
    ones (get_u), never both."""
    cdef shape_cache c
    cdef list objs

    def __cinit__(self):
        memset(&self.c, 0, sizeof(shape_cache))
        self.objs = [None] * 32

    cdef inline Py_ssize_t _slot(self, const uint64_t *dims, uint32_t n) noexcept:
        cdef uint64_t h = n
        cdef uint32_t i
        for i in range(n):
            h = h * 1000003 + dims[i]
        return <Py_ssize_t>((h ^ (h >> 29)) & 31)

    cdef tuple _lookup(self, const uint64_t *dims, uint32_t n, bint signed):
        if n > 6:
            return i64_tuple(<const int64_t *>dims, n) if signed else u64_tuple(dims, n)
        cdef Py_ssize_t h = self._slot(dims, n)
        cdef object hit = self.objs[h]
        if hit is not None and self.c.n[h] == n and (n == 0 or memcmp(self.c.dims[h], dims, n * sizeof(uint64_t)) == 0):
            return <tuple>hit
        t = i64_tuple(<const int64_t *>dims, n) if signed else u64_tuple(dims, n)
        PyObject_GC_UnTrack(<void *>t)   # ints only
        self.c.n[h] = n
        if n:
            memcpy(self.c.dims[h], dims, n * sizeof(uint64_t))
        self.objs[h] = t
        return t

    cdef tuple get(self, const int64_t *dims, uint32_t n):
        return self._lookup(<const uint64_t *>dims, n, True)

    cdef tuple get_u(self, const uint64_t *dims, uint32_t n):
        return self._lookup(dims, n, False)


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


cdef object new_info8(type cls, object name, object dtype, object shape, object nbytes, object offset,
                      object storage, object stride, object extras):
    """cls(name, dtype, shape, nbytes, offset, storage, stride, extras, None) for TensorInfo (or a
    plain tuple when cls is tuple), filled in place (no argument tuple, no Python-level __new__)
    and not tracked by the cycle collector. Only for fields that cannot refer back to the record:
    strings, ints, tuples of ints, None and read-only extras (a MappingProxyType the caller
    made). tests/test_records.py checks that such records equal and hash like ones built by
    TensorInfo(...)."""
    if cls is tuple:
        return (name, dtype, shape, nbytes, offset, storage, stride, extras, None)
    cdef object o = mf_tuple_alloc(<PyTypeObject *>cls, 9)
    _put(o, 0, name)
    _put(o, 1, dtype)
    _put(o, 2, shape)
    _put(o, 3, nbytes)
    _put(o, 4, offset)
    _put(o, 5, storage)
    _put(o, 6, stride)
    _put(o, 7, extras)
    _put(o, 8, None)
    PyObject_GC_UnTrack(<void *>o)
    return o


cdef inline object new_info(type cls, object name, object dtype, object shape, object nbytes, object offset,
                            object extras):
    """new_info8 with no storage and no stride."""
    return new_info8(cls, name, dtype, shape, nbytes, offset, None, None, extras)
