# Included by _native.pyx: bindings over csrc/mf_npy.c.

cdef extern from "mf_npy.h" nogil:
    ctypedef struct mf_npy_header:
        uint8_t major, minor
        uint64_t header_len
        uint64_t data_offset
        int descr_is_list
        const uint8_t *descr
        uint32_t descr_len
        char byteorder
        char kind
        uint64_t itemsize
        int dtype
        int fortran_order
        uint32_t ndim
        uint64_t shape[64]
        uint64_t numel
        int is_object

    int mf_npy_parse(const uint8_t *buf, size_t len, uint64_t base, mf_npy_header *out, mf_error *err)


def npy_parse(const uint8_t[::1] buf, uint64_t base=0):
    """Parse a .npy header (buf starts at the magic; base = its file offset).

    Returns (version, descr, descr_is_list, byteorder, kind, itemsize, dtype code,
    fortran_order, shape, data_offset) with descr as raw bytes (a type string or the text of a
    structured descr list) and data_offset absolute.
    """
    cdef mf_error err
    cdef mf_npy_header h
    cdef uint32_t i
    clear_error(&err)
    mf_npy_parse(&buf[0] if buf.shape[0] else NULL, buf.shape[0], base, &h, &err)
    raise_error(&err)
    return ((h.major, h.minor), (<const char *>h.descr)[:h.descr_len], bool(h.descr_is_list),
            chr(h.byteorder) if h.byteorder else "", chr(h.kind) if h.kind else "", h.itemsize, h.dtype,
            bool(h.fortran_order), tuple([h.shape[i] for i in range(h.ndim)]), h.data_offset)
