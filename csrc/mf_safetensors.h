/*
 * mf_safetensors.h - safetensors header reader, validated as strictly as the Rust crate:
 *   u64 header length N (<= 100,000,000), N bytes of UTF-8 JSON starting with '{',
 *   tensors {"dtype", "shape", "data_offsets": [begin, end]} relative to byte 8 + N,
 *   sorted by offsets they must tile the data area exactly, each (end - begin) equal to
 *   numel x dtype bits / 8; optional "__metadata__" {str: str}.
 * Stricter than the crate where it silently picks one reading: duplicate names are refused.
 */
#ifndef MF_SAFETENSORS_H
#define MF_SAFETENSORS_H

#include "mf_core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MF_ST_MAX_HEADER 100000000ull

typedef struct mf_st_tensor {
    const uint8_t *name;   /* UTF-8, not NUL-terminated: points into the header or the arena */
    uint32_t name_len;
    int dtype;
    uint32_t ndim;
    uint64_t *shape;
    uint64_t begin;        /* absolute file offsets */
    uint64_t end;
} mf_st_tensor;

typedef struct mf_st_meta {
    const uint8_t *key;
    uint32_t key_len;
    const uint8_t *value;
    uint32_t value_len;
} mf_st_meta;

typedef struct mf_st_result {
    mf_st_tensor *tensors; /* in data-offset order */
    size_t n_tensors;
    mf_st_meta *meta;
    size_t n_meta;
    int has_meta;
    uint64_t header_len;   /* N */
    uint64_t data_start;   /* 8 + N */
} mf_st_result;

/* Read the 8-byte length prefix (buf holds at least 8 bytes): returns 0 and sets *n. */
int mf_safetensors_header_len(const uint8_t *buf, size_t len, uint64_t file_size, uint64_t *n,
                              mf_error *err);

/* buf holds the first 8 + N bytes of a file of file_size bytes. */
int mf_safetensors_parse(const uint8_t *buf, size_t len, uint64_t file_size, mf_arena *a,
                         mf_st_result *out, mf_error *err);

/* The safetensors dtype code ("F32") of an mf_dtype, NULL if none. */
const char *mf_safetensors_dtype_code(int dtype);

#ifdef __cplusplus
}
#endif
#endif /* MF_SAFETENSORS_H */
