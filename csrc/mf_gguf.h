/*
 * mf_gguf.h - GGUF v2/v3 (llama.cpp / ggml) header reader and ggml block dequantization.
 *
 * Layout (ggml docs/gguf.md; formats.md section 5): magic "GGUF", u32 version, u64 tensor
 * count, u64 metadata count; key/value pairs (key = u64 length + bytes, u32 value type,
 * value); tensor infos (name, u32 n_dims, u64 dims in ggml order: dims[0] varies fastest,
 * u32 ggml type, u64 offset relative to the data section, a multiple of the alignment); zero
 * padding to `general.alignment` (u32, a power of two; 32 when absent); tensor data.
 * Value types: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool, 8 string, 9 array
 * (u32 element type, u64 count, elements; arrays nest), 10 u64, 11 i64, 12 f64.
 * Big-endian files (written for big-endian hosts) are recognised by a version whose low 16 bits
 * are zero; their header is read byte-swapped and `big_endian` is set.
 *
 * Values are not copied: each record keeps the value's file offset, and scalars are decoded
 * into the record. Arrays keep their element type, count and the offset of the first element,
 * so a 150,000-string vocabulary costs one pass to find its end and nothing else.
 */
#ifndef MF_GGUF_H
#define MF_GGUF_H

#include "mf_core.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
    MF_GGUF_U8 = 0, MF_GGUF_I8, MF_GGUF_U16, MF_GGUF_I16, MF_GGUF_U32, MF_GGUF_I32, MF_GGUF_F32,
    MF_GGUF_BOOL, MF_GGUF_STRING, MF_GGUF_ARRAY, MF_GGUF_U64, MF_GGUF_I64, MF_GGUF_F64,
    MF_GGUF_NTYPES
};

#define MF_GGUF_MAX_DIMS 8         /* ggml uses 4; a few more are listed rather than refused */
#define MF_GGUF_MAX_NESTING 8      /* arrays of arrays of ... */
#define MF_GGUF_DEFAULT_ALIGNMENT 32

/* One decoded value: a scalar, a string, or an array's description. */
typedef struct mf_gguf_value {
    uint32_t type;
    uint64_t offset;           /* file offset of the value's first byte */
    uint64_t end;              /* file offset just past it */
    uint64_t u;                /* unsigned and bool values */
    int64_t i;                 /* signed values */
    double f;                  /* f32 / f64 values */
    const uint8_t *str;        /* string bytes (not NUL-terminated) */
    uint64_t str_len;
    uint32_t arr_type;         /* arrays: element type, count, file offset of the first element */
    uint64_t arr_count;
    uint64_t arr_data;
} mf_gguf_value;

typedef struct mf_gguf_kv {
    const uint8_t *key;
    uint64_t key_len;
    uint64_t key_offset;
    mf_gguf_value v;
} mf_gguf_kv;

typedef struct mf_gguf_tensor {
    const uint8_t *name;
    uint64_t name_len;
    uint64_t info_offset;      /* file offset of the tensor info */
    uint32_t n_dims;
    uint64_t dims[MF_GGUF_MAX_DIMS];   /* ggml order: dims[0] is the innermost */
    uint32_t type;             /* ggml_type */
    uint64_t rel_offset;       /* as stored: relative to the data section */
    uint64_t offset;           /* absolute file offset */
    uint64_t nelem;
    uint64_t nbytes;
} mf_gguf_tensor;

typedef struct mf_gguf_result {
    uint32_t version;
    int big_endian;
    uint64_t n_kv;
    mf_gguf_kv *kvs;
    uint64_t n_tensors;
    mf_gguf_tensor *tensors;
    uint32_t alignment;
    uint64_t data_start;       /* absolute offset of the data section (may equal the file size) */
} mf_gguf_result;

/* buf holds the whole file. */
int mf_gguf_parse(const uint8_t *buf, size_t len, mf_arena *a, mf_gguf_result *out, mf_error *err);

/* Decode the value of `type` at file offset `offset` (elements of arrays, on demand). */
int mf_gguf_value_at(const uint8_t *buf, size_t len, uint64_t offset, uint32_t type, int big_endian,
                     mf_gguf_value *out, mf_error *err);

/* File offsets of the count strings of a string array whose first element is at `offset`:
 * out[i] = offset of string i's length field; out[count] = the end. (out has count + 1 slots.) */
int mf_gguf_string_offsets(const uint8_t *buf, size_t len, uint64_t offset, uint64_t count, int big_endian,
                           uint64_t *out, mf_error *err);

/* ggml type table: name (NULL if unknown), elements per block, bytes per block. */
const char *mf_gguf_type_name(uint32_t type);
int mf_gguf_type_size(uint32_t type, uint32_t *block, uint32_t *bytes);
/* Canonical mf_dtype of a plain (non-block) ggml type; MF_DT_UNKNOWN for block types. */
int mf_gguf_type_dtype(uint32_t type);
/* 1 when mf_gguf_dequantize handles this type. */
int mf_gguf_can_dequantize(uint32_t type);

/* Decode nbytes of ggml blocks of `type` at src into n = nbytes / block bytes x block floats.
 * Returns MF_OK, or records an error (unsupported type, sizes that do not match). */
int mf_gguf_dequantize(uint32_t type, const uint8_t *src, size_t nbytes, float *dst, size_t n, mf_error *err);

#ifdef __cplusplus
}
#endif
#endif /* MF_GGUF_H */
