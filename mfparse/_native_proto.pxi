# Included by _native.pyx: bindings over csrc/mf_proto.c (the protobuf wire walker).

cdef extern from "mf_proto.h" nogil:
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

from mfparse._lazy import numpy as _np  # imported when typed fields are decoded, not at load

PB_VARINT = MF_PB_VARINT
PB_I64 = MF_PB_I64
PB_I32 = MF_PB_I32


cdef inline str pbstr(mf_pb_str s):
    return text(s.p, s.n)


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
        raise error_of(MF_ERR_CORRUPT, base, f"protobuf field {field} holds {n} values, expected {expect}")
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
        raise error_of(MF_ERR_CORRUPT, base, f"protobuf field {field} holds {n} values, expected {expect}")
    return offs, lens


def pb_looks_like(const uint8_t[::1] head, uint64_t total_len, uint32_t max_field, int max_records=8):
    """True when head (the first bytes of a total_len-byte message) parses as protobuf records
    with field numbers in [1, max_field] and lengths that fit."""
    return bool(mf_pb_looks_like(&head[0] if head.shape[0] else NULL, head.shape[0], total_len, max_field,
                                 max_records))
