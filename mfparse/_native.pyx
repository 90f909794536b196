# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Cython bindings over csrc/: C records in, Python objects out, C errors to exceptions.

No format logic lives here; mfparse/formats/ decides what the records mean. One file per C
interface is included below (_native_<stem>.pxi next to csrc/mf_<stem>.c).
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t
from libc.string cimport memcmp, memset

from cpython.mem cimport PyMem_Free, PyMem_Malloc

from cpython.long cimport PyLong_FromLongLong, PyLong_FromUnsignedLongLong
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cpython.unicode cimport PyUnicode_DecodeUTF8

from mfparse._csrc cimport *
from mfparse.errors import C_ERRORS as _C_ERRORS, CorruptFileError as _CorruptFileError


# ---- constants of the C headers (declared in _csrc.pxd), named as there without MF_ ----------------

# error codes (csrc/mf_core.h)
ERR_TRUNCATED = MF_ERR_TRUNCATED
ERR_CORRUPT = MF_ERR_CORRUPT
ERR_UNSUPPORTED = MF_ERR_UNSUPPORTED
ERR_LIMIT = MF_ERR_LIMIT
ERR_NOMEM = MF_ERR_NOMEM
ERR_UNSAFE = MF_ERR_UNSAFE
ERR_NEED = MF_ERR_NEED

# HDF5 object kinds (csrc/mf_hdf5.h)
H5_GROUP = MF_H5_GROUP
H5_DATASET = MF_H5_DATASET
H5_DATATYPE = MF_H5_DATATYPE
H5_SOFT = MF_H5_SOFT
H5_EXTERNAL = MF_H5_EXTERNAL
H5_ALIAS = MF_H5_ALIAS
H5_OTHER = MF_H5_OTHER

# zip anomaly bits (csrc/mf_zip.h)
ZIP_ANOMALY_NAME_MISMATCH = MF_ZIP_ANOM_NAME_MISMATCH
ZIP_ANOMALY_ENCRYPTED = MF_ZIP_ANOM_ENCRYPTED
ZIP_ANOMALY_FLAG_0x20 = MF_ZIP_ANOM_FLAG_0x20
ZIP_ANOMALY_FLAG_0x40 = MF_ZIP_ANOM_FLAG_0x40
ZIP_ANOMALY_METHOD_MISMATCH = MF_ZIP_ANOM_METHOD_MISMATCH
ZIP_ANOMALY_DUPLICATE_NAME = MF_ZIP_ANOM_DUPLICATE_NAME
ZIP_ANOMALY_COUNT_MISMATCH = MF_ZIP_ANOM_COUNT_MISMATCH
ZIP_ANOMALY_TRAILING_DATA = MF_ZIP_ANOM_TRAILING_DATA
ZIP_ANOMALY_PREFIX = MF_ZIP_ANOM_PREFIX
ZIP_ANOMALY_OVERLAP = MF_ZIP_ANOM_OVERLAP

#: format -> (byte offset, magic bytes) that the C readers check (csrc/mf_magic.h); the zip
#: end-of-central-directory record sits 22 bytes from the end
MAGICS = {
    "npy": (0, MF_MAGIC_NPY[:MF_MAGIC_NPY_LEN]),
    "gguf": (0, MF_MAGIC_GGUF[:MF_MAGIC_GGUF_LEN]),
    "hdf5": (0, MF_MAGIC_HDF5[:MF_MAGIC_HDF5_LEN]),
    "tflite": (MF_MAGIC_TFLITE_AT, MF_MAGIC_TFLITE[:MF_MAGIC_TFLITE_LEN]),
    "zip": (0, MF_MAGIC_ZIP[:MF_MAGIC_ZIP_LEN]),
    "zip-eocd": (-22, MF_MAGIC_ZIP_EOCD[:MF_MAGIC_ZIP_EOCD_LEN]),
}


# ---- C errors to exceptions -----------------------------------------------------------------------

# code -> exception class, from errors.C_ERRORS (keyed on the names above)
cdef dict _ERROR_CLASS = {globals()[name]: cls for name, cls in _C_ERRORS.items()}


cdef object error_of(int code, uint64_t offset, str message):
    """The one mapping from a C error (code, file offset, message) to an exception instance."""
    cls = _ERROR_CLASS.get(code, _CorruptFileError)
    if cls is MemoryError:
        return MemoryError(message)
    return cls(message, offset)


cdef object make_error(mf_error *err):
    """The exception instance of a C error record."""
    return error_of(err.code, err.offset, err.msg.decode("utf-8", "replace"))


cdef int raise_error(mf_error *err) except -1:
    """Raise the exception of a C error record, if it holds one."""
    if err.code == MF_OK:
        return 0
    raise make_error(err)


# ---- sparse windows (csrc/mf_core.h, docs/architecture.md "Readers on windows") -----------------

cdef class Window:
    """The presence map of a sparse map of a file (mfparse.io.sparse.SparseMap) as the C
    cursor sees it: `buf` is the map (file offset 0 at its first byte), `bits` one bit per
    block of 2**shift bytes. A parse given this window records every span it needed and did
    not find (`needs()`) and fails with NeedMoreError (never shown to users)."""
    cdef mf_window w
    cdef const uint8_t[::1] buf
    cdef const uint8_t[::1] bits
    cdef uint64_t *store

    def __cinit__(self, buf, bits, unsigned shift, size_t cap=4096):
        self.store = NULL
        self.buf = buf
        self.bits = bits
        if cap < 1:
            cap = 1
        if <uint64_t>self.bits.shape[0] * 8 * (<uint64_t>1 << shift) < <uint64_t>self.buf.shape[0]:
            raise ValueError("the presence bits do not cover the map")
        self.store = <uint64_t *>PyMem_Malloc(cap * 2 * sizeof(uint64_t))
        if self.store == NULL:
            raise MemoryError()
        memset(&self.w, 0, sizeof(mf_window))
        self.w.start = &self.buf[0] if self.buf.shape[0] else NULL
        self.w.end = self.w.start + self.buf.shape[0]
        self.w.present = &self.bits[0] if self.bits.shape[0] else NULL
        self.w.shift = shift
        self.w.needs = self.store
        self.w.cap_needs = cap

    def __dealloc__(self):
        PyMem_Free(self.store)

    def needs(self):
        """[(file offset, length)] of the spans the last parse needed, in the order found."""
        cdef size_t i
        return [(self.w.needs[2 * i], self.w.needs[2 * i + 1]) for i in range(self.w.n_needs)]

    @property
    def want(self):
        """A reader's estimate of the bytes the next fetch should bring past the first
        missing one (0: none)."""
        return self.w.want

    def clear(self):
        self.w.n_needs = 0
        self.w.want = 0


cdef mf_window *window_of(object window) except? NULL:
    """The C window of a Window, or NULL for None (a whole local map: no presence checks)."""
    if window is None:
        return NULL
    return &(<Window?>window).w


cdef object make_error_at(int code, uint64_t offset, str message):
    return error_of(code, offset, message)


def exception_for(int code, offset, str message):
    """The exception instance of a C error (code, byte offset, message)."""
    return error_of(code, offset if offset is not None else 0, message)


def _test_arena_limits(int64_t allowed=-1, bint nomem=False):
    """Test hook, not API: with allowed >= 0 the arena allocations after the first `allowed`
    fail (ResourceLimitError, or MemoryError with nomem) until a call with allowed < 0."""
    mf_arena_test_limits(allowed, MF_ERR_NOMEM if nomem else MF_ERR_LIMIT)


def _test_arena_live_chunks():
    """Test hook, not API: arena chunks made while the limits were set and not yet freed."""
    return mf_arena_test_live_chunks()


def _test_arena_active():
    """Test hook, not API: are the limits of _test_arena_limits set?"""
    return bool(mf_arena_test_active())


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
include "_native_scan.pxi"
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
