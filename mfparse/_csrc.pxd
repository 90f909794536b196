# Constants of the C headers (csrc/*.h) for mfparse/_native.pyx, declared once: _native.pyx
# cimports them and re-exports the ones Python needs (ERR_TRUNCATED = MF_ERR_TRUNCATED, ...), as
# h5py's h5o.pyx exports TYPE_GROUP = H5O_TYPE_GROUP. Python code reads those names; nothing
# retypes the numbers. The values live in the headers only: here they are names without values.

from libc.stdint cimport int64_t, uint64_t


cdef extern from "mf_core.h" nogil:
    # error codes (mf_error.code); mfparse/errors.py says which exception each one raises
    enum:
        MF_OK
        MF_ERR_TRUNCATED
        MF_ERR_CORRUPT
        MF_ERR_UNSUPPORTED
        MF_ERR_LIMIT
        MF_ERR_NOMEM
        MF_ERR_UNSAFE
        MF_ERR_NEED

    enum:
        MF_MSG_LEN

    ctypedef struct mf_window:
        const unsigned char *start
        const unsigned char *end
        const unsigned char *present
        unsigned shift
        uint64_t *needs
        size_t n_needs
        size_t cap_needs
        uint64_t want

    ctypedef struct mf_error:
        int code
        uint64_t offset
        char msg[MF_MSG_LEN]
        mf_window *win

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

    # test hook (tests/test_alloc_failures.py): not part of the public API
    void mf_arena_test_limits(int64_t allowed, int code)
    uint64_t mf_arena_test_live_chunks()
    int mf_arena_test_active()


cdef extern from "mf_hdf5.h" nogil:
    # object kinds (mf_h5_object.kind)
    enum:
        MF_H5_GROUP
        MF_H5_DATASET
        MF_H5_DATATYPE
        MF_H5_SOFT
        MF_H5_EXTERNAL
        MF_H5_ALIAS
        MF_H5_OTHER


cdef extern from "mf_zip.h" nogil:
    # anomaly bits (mf_zip_entry.anomalies, mf_zip_eocd.anomalies)
    enum:
        MF_ZIP_ANOM_NAME_MISMATCH
        MF_ZIP_ANOM_ENCRYPTED
        MF_ZIP_ANOM_FLAG_0x20
        MF_ZIP_ANOM_FLAG_0x40
        MF_ZIP_ANOM_METHOD_MISMATCH
        MF_ZIP_ANOM_DUPLICATE_NAME
        MF_ZIP_ANOM_COUNT_MISMATCH
        MF_ZIP_ANOM_TRAILING_DATA
        MF_ZIP_ANOM_PREFIX
        MF_ZIP_ANOM_OVERLAP


cdef extern from "mf_magic.h" nogil:
    # the bytes by which a format is known (MF_MAGIC_<F> holds MF_MAGIC_<F>_LEN bytes)
    const char *MF_MAGIC_NPY
    const char *MF_MAGIC_GGUF
    const char *MF_MAGIC_HDF5
    const char *MF_MAGIC_TFLITE
    const char *MF_MAGIC_ZIP
    const char *MF_MAGIC_ZIP_EOCD
    enum:
        MF_MAGIC_NPY_LEN
        MF_MAGIC_GGUF_LEN
        MF_MAGIC_HDF5_LEN
        MF_MAGIC_TFLITE_AT
        MF_MAGIC_TFLITE_LEN
        MF_MAGIC_ZIP_LEN
        MF_MAGIC_ZIP_EOCD_LEN
