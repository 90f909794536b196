# Included by _native.pyx: bindings over csrc/mf_quant.c (weight-only quantization kernels).
# Arrays cross as raw bytes (uint8 memoryviews) plus a dtype code; every length is checked
# against rows x cols before C sees a pointer. The GIL is released while a kernel runs.

from libc.stdint cimport int8_t

cdef extern from "mf_quant.h" nogil:
    ctypedef struct mf_qstats:
        double sum_sq
        double err_sq
        double max_err
        uint64_t zeros
        uint64_t nonfinite

    int mf_quant_int8(const void *src, int dtype, uint64_t rows, uint64_t cols, uint32_t prune_key,
                      int prune_le, int8_t *q, float *scale, mf_qstats *st, int threads, mf_error *err) nogil
    int mf_quant_int4(const void *src, int dtype, uint64_t rows, uint64_t cols, uint64_t group,
                      uint32_t prune_key, int prune_le, uint8_t *q, float *scale, uint8_t *zp, mf_qstats *st,
                      int threads, mf_error *err) nogil
    int mf_absmax(const void *src, int dtype, uint64_t n, uint32_t prune_key, int prune_le, float *amax,
                  uint64_t *nonfinite, int threads, mf_error *err) nogil
    int mf_quant_fp8(const void *src, int dtype, uint64_t n, float scale, uint32_t prune_key, int prune_le,
                     uint8_t *q, mf_qstats *st, int threads, mf_error *err) nogil
    int mf_abs_hist(const void *src, int dtype, uint64_t n, int level, uint32_t hi, uint64_t *hist,
                    int threads, mf_error *err) nogil
    int mf_dequant_int8(const int8_t *q, const float *scale, uint64_t rows, uint64_t cols, float *out,
                        int threads, mf_error *err) nogil
    int mf_dequant_int4(const uint8_t *q, const float *scale, const uint8_t *zp, uint64_t rows, uint64_t cols,
                        uint64_t group, float *out, int threads, mf_error *err) nogil
    int mf_dequant_fp8(const uint8_t *q, float scale, uint64_t n, float *out, int threads, mf_error *err) nogil
    const char *mf_quant_isa()
    void mf_quant_set_isa(int choice)
    uint8_t mf_f32_to_e4m3(float x)
    float mf_e4m3_to_f32(uint8_t b)
    float mf_f16_to_f32(uint16_t h)


cdef int _quant_itemsize(int dtype):
    name = mf_dtype_name(dtype)
    if name == b"float16" or name == b"bfloat16":
        return 2
    if name == b"float32":
        return 4
    if name == b"float64":
        return 8
    return 0


cdef _check_len(str what, Py_ssize_t got, object want):
    if got != want:
        raise ValueError(f"{what}: {got} bytes/elements given, {want} expected")


cdef dict _stats(mf_qstats *st):
    return {"sum_sq": st.sum_sq, "err_sq": st.err_sq, "max_err": st.max_err, "zeros": st.zeros,
            "nonfinite": st.nonfinite}


cdef const uint8_t *_ptr(const uint8_t[::1] a):
    return &a[0] if a.shape[0] else NULL


def quant_int8(const uint8_t[::1] src, int dtype, uint64_t rows, uint64_t cols, int8_t[::1] q,
               float[::1] scale, uint32_t prune_key=0, bint prune_le=False, int threads=1):
    """int8 per row (csrc/mf_quant.h); fills q and scale, returns the pass's stats dict."""
    cdef int isz = _quant_itemsize(dtype)
    cdef mf_error err
    cdef mf_qstats st
    cdef const void *s = _ptr(src)
    cdef int8_t *qp = &q[0] if q.shape[0] else NULL
    cdef float *sp = &scale[0] if scale.shape[0] else NULL
    if isz == 0:
        raise ValueError("quant_int8 needs a float16, bfloat16, float32 or float64 array")
    _check_len("source", src.shape[0], <object>rows * <object>cols * isz)
    _check_len("q", q.shape[0], <object>rows * <object>cols)
    _check_len("scale", scale.shape[0], rows)
    clear_error(&err)
    with nogil:
        mf_quant_int8(s, dtype, rows, cols, prune_key, prune_le, qp, sp, &st, threads, &err)
    raise_error(&err)
    return _stats(&st)


def quant_int4(const uint8_t[::1] src, int dtype, uint64_t rows, uint64_t cols, uint64_t group,
               uint8_t[::1] q, float[::1] scale, uint8_t[::1] zp, uint32_t prune_key=0, bint prune_le=False,
               int threads=1):
    """int4 per group (csrc/mf_quant.h); fills q (packed), scale and zp, returns stats."""
    cdef int isz = _quant_itemsize(dtype)
    cdef mf_error err
    cdef mf_qstats st
    cdef const void *s = _ptr(src)
    cdef uint8_t *qp = &q[0] if q.shape[0] else NULL
    cdef float *sp = &scale[0] if scale.shape[0] else NULL
    cdef uint8_t *zpp = &zp[0] if zp.shape[0] else NULL
    if group == 0:
        raise ValueError("group size must be at least 1")
    ngroups = (<object>cols + <object>group - 1) // <object>group
    if isz == 0:
        raise ValueError("quant_int4 needs a float16, bfloat16, float32 or float64 array")
    _check_len("source", src.shape[0], <object>rows * <object>cols * isz)
    _check_len("q", q.shape[0], <object>rows * ((<object>cols + 1) // 2))
    _check_len("scale", scale.shape[0], <object>rows * ngroups)
    _check_len("zero points", zp.shape[0], <object>rows * ngroups)
    clear_error(&err)
    with nogil:
        mf_quant_int4(s, dtype, rows, cols, group, prune_key, prune_le, qp, sp, zpp, &st, threads, &err)
    raise_error(&err)
    return _stats(&st)


def absmax(const uint8_t[::1] src, int dtype, uint32_t prune_key=0, bint prune_le=False, int threads=1):
    """(max |x|, count of NaN/inf) of a float array given as raw bytes."""
    cdef int isz = _quant_itemsize(dtype)
    cdef mf_error err
    cdef float m = 0
    cdef uint64_t nf = 0
    cdef const void *s = _ptr(src)
    if isz == 0:
        raise ValueError("absmax needs a float16, bfloat16, float32 or float64 array")
    cdef uint64_t n = src.shape[0] // isz
    _check_len("source", src.shape[0], n * isz)
    clear_error(&err)
    with nogil:
        mf_absmax(s, dtype, n, prune_key, prune_le, &m, &nf, threads, &err)
    raise_error(&err)
    return m, nf


def quant_fp8(const uint8_t[::1] src, int dtype, float scale, uint8_t[::1] q, uint32_t prune_key=0,
              bint prune_le=False, int threads=1):
    """float8 e4m3fn codes of x / scale; returns stats."""
    cdef int isz = _quant_itemsize(dtype)
    cdef mf_error err
    cdef mf_qstats st
    cdef const void *s = _ptr(src)
    cdef uint8_t *qp = &q[0] if q.shape[0] else NULL
    if isz == 0:
        raise ValueError("quant_fp8 needs a float16, bfloat16, float32 or float64 array")
    cdef uint64_t n = src.shape[0] // isz
    _check_len("source", src.shape[0], n * isz)
    _check_len("q", q.shape[0], n)
    clear_error(&err)
    with nogil:
        mf_quant_fp8(s, dtype, n, scale, prune_key, prune_le, qp, &st, threads, &err)
    raise_error(&err)
    return _stats(&st)


def abs_hist(const uint8_t[::1] src, int dtype, uint64_t[::1] hist, int level=0, uint32_t hi=0, int threads=1):
    """Add the magnitude-key histogram of a float array to hist (65536 bins)."""
    cdef int isz = _quant_itemsize(dtype)
    cdef mf_error err
    cdef const void *s = _ptr(src)
    if isz == 0:
        raise ValueError("abs_hist needs a float16, bfloat16, float32 or float64 array")
    cdef uint64_t n = src.shape[0] // isz
    _check_len("source", src.shape[0], n * isz)
    _check_len("hist", hist.shape[0], 65536)
    clear_error(&err)
    with nogil:
        mf_abs_hist(s, dtype, n, level, hi, &hist[0], threads, &err)
    raise_error(&err)


def dequant_int8(const int8_t[::1] q, const float[::1] scale, uint64_t rows, uint64_t cols, float[::1] out,
                 int threads=1):
    cdef mf_error err
    _check_len("q", q.shape[0], <object>rows * <object>cols)
    _check_len("scale", scale.shape[0], rows)
    _check_len("out", out.shape[0], <object>rows * <object>cols)
    if <object>rows * <object>cols == 0:
        return
    clear_error(&err)
    with nogil:
        mf_dequant_int8(&q[0], &scale[0], rows, cols, &out[0], threads, &err)
    raise_error(&err)


def dequant_int4(const uint8_t[::1] q, const float[::1] scale, const uint8_t[::1] zp, uint64_t rows,
                 uint64_t cols, uint64_t group, float[::1] out, int threads=1):
    cdef mf_error err
    if group == 0:
        raise ValueError("group size must be at least 1")
    ngroups = (<object>cols + <object>group - 1) // <object>group
    _check_len("q", q.shape[0], <object>rows * ((<object>cols + 1) // 2))
    _check_len("scale", scale.shape[0], <object>rows * ngroups)
    _check_len("zero points", zp.shape[0], <object>rows * ngroups)
    _check_len("out", out.shape[0], <object>rows * <object>cols)
    if <object>rows * <object>cols == 0:
        return
    clear_error(&err)
    with nogil:
        mf_dequant_int4(&q[0], &scale[0], &zp[0], rows, cols, group, &out[0], threads, &err)
    raise_error(&err)


def dequant_fp8(const uint8_t[::1] q, float scale, float[::1] out, int threads=1):
    cdef mf_error err
    _check_len("out", out.shape[0], q.shape[0])
    if q.shape[0] == 0:
        return
    clear_error(&err)
    with nogil:
        mf_dequant_fp8(&q[0], scale, q.shape[0], &out[0], threads, &err)
    raise_error(&err)


def f32_to_e4m3(float x):
    return mf_f32_to_e4m3(x)


def e4m3_to_f32(uint8_t b):
    return mf_e4m3_to_f32(b)


def f16_to_f32(uint16_t h):
    return mf_f16_to_f32(h)


def quant_isa(str force=None):
    """The row kernels in use ("avx2" or "c"); force="c" selects the portable C kernels,
    force="auto" picks by CPU again (tests run both)."""
    if force == "c":
        mf_quant_set_isa(1)
    elif force == "auto":
        mf_quant_set_isa(0)
    elif force is not None:
        raise ValueError("force must be 'c' or 'auto'")
    return mf_quant_isa().decode()
