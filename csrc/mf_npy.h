/*
 * mf_npy.h - NumPy .npy headers (v1.0, v2.0, v3.0), the members of .npz archives too.
 *
 * Layout (numpy/lib/_format_impl.py): "\x93NUMPY", major, minor, header length (u16 for v1,
 * u32 for v2/v3), then a Python dict literal {'descr': ..., 'fortran_order': ..., 'shape': ...}
 * padded with spaces and ended by '\n'; the data follow. The literal is parsed here as the small
 * subset numpy writes (strings, True/False, tuples of non-negative integers, Python 2 'L'
 * suffixes, trailing commas); anything else is refused. `descr` is either a type string
 * ('<f4', '|b1', '>i8', '<M8[ns]', '|O', ...) or a list for structured dtypes: the list's raw
 * text is returned (checked to be balanced brackets and quoted strings) for the caller to
 * interpret. Object dtypes ('O') mark the data as a pickle: never read here.
 */
#ifndef MF_NPY_H
#define MF_NPY_H

#include "mf_core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MF_NPY_MAX_DIMS 64         /* numpy's NPY_MAXDIMS */
#define MF_NPY_MAX_HEADER (1u << 20)

typedef struct mf_npy_header {
    uint8_t major, minor;
    uint64_t header_len;
    uint64_t data_offset;       /* absolute (base + 6 + 2 + 2|4 + header_len) */
    int descr_is_list;          /* 1: descr is the raw text of a list literal (structured dtype) */
    const uint8_t *descr;       /* the descr string's content, or the list's text */
    uint32_t descr_len;
    char byteorder;             /* '<', '>', '|', '=' or 0 when the string has none */
    char kind;                  /* 'f', 'i', 'u', 'b', 'c', 'O', 'S', 'U', 'V', 'M', 'm', ... */
    uint64_t itemsize;          /* from the type string's digits (0 when absent) */
    int dtype;                  /* mf_dtype when the type maps to one, else MF_DT_UNKNOWN */
    int fortran_order;
    uint32_t ndim;
    uint64_t shape[MF_NPY_MAX_DIMS];
    uint64_t numel;
    int is_object;              /* kind 'O' (also inside a structured descr) */
} mf_npy_header;

/* Parse the header of a .npy held in buf[0:len]; base = its file offset (for npz members). */
int mf_npy_parse(const uint8_t *buf, size_t len, uint64_t base, mf_npy_header *out, mf_error *err);

#ifdef __cplusplus
}
#endif
#endif /* MF_NPY_H */
