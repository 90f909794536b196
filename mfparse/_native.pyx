# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Cython bindings over csrc/: C records in, Python objects out, C errors to exceptions.

No format logic lives here; mfparse/formats/ decides what the records mean. One file per C
interface is included below (_native_<stem>.pxi next to csrc/mf_<stem>.c).
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t
from libc.string cimport memcmp, memset

from cpython.long cimport PyLong_FromLongLong, PyLong_FromUnsignedLongLong
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cpython.unicode cimport PyUnicode_DecodeUTF8

from mfparse.errors import error_from_code


cdef extern from "mf_core.h":
    ctypedef struct mf_error:
        int code
        uint64_t offset
        char msg[240]

    ctypedef struct mf_arena:
        uint64_t used
        uint64_t cap

    ctypedef struct mf_vec:
        void *items
        size_t len
        size_t cap

    void mf_arena_init(mf_arena *a, uint64_t cap)
    void *mf_arena_calloc(mf_arena *a, size_t count, size_t size, mf_error *err, uint64_t offset)
    void mf_arena_free(mf_arena *a)
    uint64_t mf_arena_cap_for(uint64_t input_len, uint64_t per_byte, uint64_t floor)
    const char *mf_dtype_name(int dt)
    unsigned mf_dtype_bits(int dt)
    int MF_DT_COUNT


cdef int raise_error(mf_error *err) except -1:
    """The one binding function that maps a C error record to an exception."""
    if err.code == 0:
        return 0
    message = err.msg.decode("utf-8", "replace")
    raise error_from_code(err.code, err.offset, message)


cdef inline void clear_error(mf_error *err) noexcept:
    memset(err, 0, sizeof(mf_error))


cdef str text(const uint8_t *s, size_t n):
    """UTF-8 bytes from a file as str; undecodable bytes are kept as backslash escapes."""
    return PyUnicode_DecodeUTF8(<const char *>s, n, "backslashreplace")


cdef tuple i64_tuple(const int64_t *a, size_t n):
    """A tuple of Python ints from a C array (shapes, strides)."""
    cdef tuple t = PyTuple_New(n)
    cdef size_t i
    for i in range(n):
        v = PyLong_FromLongLong(a[i])
        Py_INCREF(v)
        PyTuple_SET_ITEM(t, i, v)
    return t


cdef tuple u64_tuple(const uint64_t *a, size_t n):
    cdef tuple t = PyTuple_New(n)
    cdef size_t i
    for i in range(n):
        v = PyLong_FromUnsignedLongLong(a[i])
        Py_INCREF(v)
        PyTuple_SET_ITEM(t, i, v)
    return t


def dtype_names():
    """Canonical dtype name of every C dtype code (index = code)."""
    return [mf_dtype_name(i).decode() for i in range(MF_DT_COUNT)]


def dtype_bits():
    """Bits per element of every C dtype code (index = code)."""
    return [mf_dtype_bits(i) for i in range(MF_DT_COUNT)]


DTYPE_NAMES = dtype_names()
DTYPE_BITS = dtype_bits()


include "_native_infos.pxi"
include "_native_zip.pxi"
include "_native_pickle.pxi"
include "_native_safetensors.pxi"
include "_native_tflite.pxi"
include "_native_gguf.pxi"
include "_native_npy.pxi"
include "_native_hdf5.pxi"

include "_native_proto.pxi"
include "_native_onnx.pxi"
include "_native_sstable.pxi"
include "_native_tf.pxi"

include "_native_quant.pxi"
