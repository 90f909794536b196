/*
 * mf_hdf5.h - HDF5 reader (files written by libhdf5: h5py, Keras, MATLAB v7.3), no libhdf5.
 *
 * mf_h5_open walks the whole group hierarchy from the root and emits flat records:
 *   objects   every link reached from the root, in pre-order, each group's links in name order
 *             (the order of h5py's visit()); groups, datasets, committed datatypes, soft and
 *             external links, and aliases (a second hard link to an object already listed);
 *   datasets  dataspace, datatype, layout (compact / contiguous / chunked with its index),
 *             filter pipeline, fill value;
 *   attrs     name, datatype, dataspace and the file range of the raw value of every attribute
 *             (compact and dense storage).
 * Listing touches metadata only: chunk indexes are walked by mf_h5_chunks when data is read,
 * variable-length values are looked up in the global heap by mf_h5_vlen.
 *
 * Supported: superblock v0-v3 (also behind a user block at 512, 1024, ...), object headers v1
 * and v2 with continuations, symbol-table groups (v1 B-tree + local heap), compact and dense
 * links (fractal heap + v2 B-tree), compact and dense attributes, shared (committed) datatypes,
 * layout v1-v5, chunk indexes: v1 B-tree, single chunk, implicit, fixed array, extensible array,
 * v2 B-tree. Checksums of v2-style metadata (Jenkins lookup3) are verified.
 *
 * Every address from the file is made absolute (superblock base added) and checked against the
 * input length before use. Offsets reported in errors and records are offsets in the input plus
 * `report_base` (the offset of the input inside an outer file, e.g. a .keras zip member).
 */
#ifndef MF_HDF5_H
#define MF_HDF5_H

#include "mf_core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MF_H5_UNDEF UINT64_MAX /* undefined address ("never written") */
#define MF_H5_MAX_RANK 32

/* fill value status (libhdf5's H5D_fill_value_t) and write time */
#define MF_H5_FILL_UNDEFINED 0
#define MF_H5_FILL_DEFAULT 1
#define MF_H5_FILL_USER 2
#define MF_H5_FILL_TIME_ALLOC 0
#define MF_H5_FILL_TIME_NEVER 1
#define MF_H5_FILL_TIME_IFSET 2

/* mf_h5_open flags (tests use them to reach deeper code with damaged inputs) */
enum {
    MF_H5_NO_VERIFY = 1u << 0,    /* do not verify metadata checksums */
    MF_H5_NO_EOF_CHECK = 1u << 1, /* accept a file shorter than the superblock's EOF address */
};

/* object kinds */
enum {
    MF_H5_GROUP = 1,
    MF_H5_DATASET = 2,
    MF_H5_DATATYPE = 3, /* committed (named) datatype */
    MF_H5_SOFT = 4,     /* soft link: target = path */
    MF_H5_EXTERNAL = 5, /* external link: target = file name, NUL, object path */
    MF_H5_ALIAS = 6,    /* hard link to an object listed earlier (alias_of) */
    MF_H5_OTHER = 7,    /* an object header that is none of the above, or a user-defined link */
};

/* HDF5 datatype classes */
enum {
    MF_H5T_INTEGER = 0, MF_H5T_FLOAT = 1, MF_H5T_TIME = 2, MF_H5T_STRING = 3, MF_H5T_BITFIELD = 4,
    MF_H5T_OPAQUE = 5, MF_H5T_COMPOUND = 6, MF_H5T_REFERENCE = 7, MF_H5T_ENUM = 8, MF_H5T_VLEN = 9,
    MF_H5T_ARRAY = 10, MF_H5T_COMPLEX = 11,
};

typedef struct mf_h5_dtype mf_h5_dtype;

typedef struct mf_h5_member {
    const uint8_t *name;   /* compound member or enum name (points into the file) */
    uint32_t name_len;
    uint32_t offset;       /* compound: byte offset in the element */
    mf_h5_dtype *type;     /* compound: member type; enum: NULL */
    const uint8_t *value;  /* enum: base->size bytes of the value (points into the file) */
} mf_h5_member;

struct mf_h5_dtype {
    uint8_t cls;           /* MF_H5T_* */
    uint8_t version;
    uint8_t order;         /* 0 little-endian, 1 big-endian, 2 VAX/other */
    uint8_t is_signed;     /* integers */
    uint32_t bits;         /* the 24-bit class bit field */
    uint32_t size;         /* element size in bytes */
    uint16_t bit_offset, precision;                  /* integer, float, bitfield */
    uint8_t exp_loc, exp_size, mant_loc, mant_size;  /* float */
    uint8_t sign_loc;
    uint32_t exp_bias;
    int code;              /* mf_dtype for a plain number (int, float, h5py bool, r/i complex) */
    uint32_t n_members;    /* compound, enum */
    mf_h5_member *members;
    mf_h5_dtype *base;     /* enum, vlen, array, complex */
    uint32_t ndims;        /* array */
    uint32_t *dims;
    const uint8_t *tag;    /* opaque tag (NUL-padded in the file; tag_len excludes padding) */
    uint32_t tag_len;
};

typedef struct mf_h5_space {
    uint8_t kind;          /* 0 scalar, 1 simple, 2 null */
    uint8_t rank;
    uint64_t *dims;
    uint64_t *maxdims;     /* UINT64_MAX = unlimited; equal to dims when not stored */
} mf_h5_space;

typedef struct mf_h5_filter {
    uint16_t id;           /* 1 deflate, 2 shuffle, 3 fletcher32, 4 szip, 5 nbit, 6 scaleoffset, ... */
    uint16_t flags;        /* bit 0: optional */
    const uint8_t *name;   /* may be NULL */
    uint32_t name_len;
    uint32_t n_values;
    uint32_t *values;      /* client data */
} mf_h5_filter;

typedef struct mf_h5_dataset {
    mf_h5_dtype *dtype;
    mf_h5_space space;
    uint64_t numel;
    uint64_t nbytes;       /* numel x dtype->size */
    uint8_t layout;        /* 0 compact, 1 contiguous, 2 chunked, 3 virtual */
    uint8_t layout_version;
    uint64_t data_offset;  /* compact/contiguous: absolute offset of the data, MF_H5_UNDEF if unallocated */
    uint64_t data_size;
    /* chunked */
    uint8_t index_type;    /* 0 v1 B-tree (layout <= 3), 1 single, 2 implicit, 3 fixed array,
                              4 extensible array, 5 v2 B-tree */
    uint8_t chunk_flags;   /* layout v4+: bit0 partial edge chunks unfiltered, bit1 filtered single chunk */
    uint64_t *chunk;       /* chunk dims in elements (rank entries; NULL unless chunked) */
    uint32_t chunk_elem;   /* element size recorded with the chunk dims */
    uint64_t chunk_bytes;  /* bytes of one unfiltered chunk */
    uint64_t index_addr;   /* absolute, MF_H5_UNDEF if nothing was written */
    uint64_t single_size;  /* single chunk: stored (filtered) size */
    uint32_t single_mask;
    uint8_t farray_page_bits;
    uint8_t ea_params[5];  /* max bits, index elements, min pointers, min elements, page bits */
    uint32_t bt2_node_size;
    uint32_t n_filters;
    mf_h5_filter *filters;
    /* fill value (fill value message 0x5 of any version, else the old message 0x4, else
     * undefined and written if set, as libhdf5 reads a dataset without either) */
    uint8_t fill_status;   /* MF_H5_FILL_UNDEFINED, MF_H5_FILL_DEFAULT (zeros) or MF_H5_FILL_USER */
    uint8_t fill_time;     /* 0 on allocation, 1 never, 2 if set (libhdf5's H5D_fill_time_t) */
    uint8_t alloc_time;    /* 0 library default, 1 early, 2 late, 3 incremental */
    uint64_t fill_offset;  /* MF_H5_FILL_USER: absolute offset of the value, else MF_H5_UNDEF */
    uint32_t fill_size;    /* MF_H5_FILL_USER: its size in bytes (> 0), else 0 */
    uint8_t external;      /* external file list message present (data lives in other files) */
    /* the other files a dataset reads: external storage files (message 0x7) or the sources of a
     * virtual dataset (layout class 3, read from its global heap block) */
    uint32_t n_files;
    struct mf_h5_extfile *files;
    int32_t files_status;  /* 0 read (or none); -1 the VDS block could not be read; > 0 its encoding
                              version, which is not read */
    uint64_t vds_heap;     /* layout class 3: global heap collection (absolute), MF_H5_UNDEF if none */
    uint32_t vds_index;
} mf_h5_dataset;

typedef struct mf_h5_extfile {
    const uint8_t *name;   /* the file name, pointing into the file (not NUL-terminated) */
    uint32_t name_len;
    const uint8_t *dset;   /* virtual datasets: the source dataset's path; NULL otherwise */
    uint32_t dset_len;
    uint64_t offset;       /* external storage: where the data starts in that file (else 0) */
    uint64_t size;         /* external storage: bytes it holds there, UINT64_MAX unlimited (else 0) */
    uint64_t at;           /* file offset where the name was found */
} mf_h5_extfile;

typedef struct mf_h5_attr {
    const uint8_t *name;   /* points into the file */
    uint32_t name_len;
    uint8_t charset;       /* 0 ASCII, 1 UTF-8 */
    mf_h5_dtype *dtype;
    mf_h5_space space;
    uint64_t numel;
    uint64_t data_offset;  /* absolute offset of the raw value */
    uint64_t data_size;    /* numel x dtype->size */
    int64_t crt_order;     /* creation order, -1 when not tracked */
    uint32_t object;       /* index of the owning object */
} mf_h5_attr;

typedef struct mf_h5_object {
    const char *path;      /* "a/b/c" (no leading '/'); "" for the root */
    uint32_t path_len;
    uint32_t name_off;     /* the last component starts at path + name_off */
    int32_t parent;        /* index of the parent group, -1 for the root */
    uint8_t kind;          /* MF_H5_* */
    uint8_t charset;       /* link name charset */
    uint8_t tracks_order;  /* groups: link creation order tracked (h5py track_order) */
    uint8_t dense;         /* groups: links in a fractal heap; objects: dense attributes */
    uint64_t addr;         /* object header (absolute), MF_H5_UNDEF for links */
    int64_t crt_order;     /* link creation order, -1 when not tracked */
    int32_t dataset;       /* index into datasets, -1 */
    mf_h5_dtype *dtype;    /* committed datatypes */
    uint32_t attr_first, n_attrs;
    const uint8_t *target; /* soft / external links */
    uint32_t target_len;
    int32_t alias_of;      /* aliases: the object listed first */
    uint8_t oh_version;
} mf_h5_object;

typedef struct mf_h5_result {
    /* the file, kept for mf_h5_chunks / mf_h5_vlen */
    const uint8_t *data;
    size_t len;
    uint64_t report_base;
    uint64_t base;          /* input offset of the superblock = address 0 */
    uint8_t so, sl;         /* size of offsets / lengths */
    uint8_t sb_version;
    uint64_t eof;           /* absolute end of the HDF5 data the superblock declares */
    mf_h5_object *objects;
    size_t n_objects;
    mf_h5_dataset *datasets;
    size_t n_datasets;
    mf_h5_attr *attrs;
    size_t n_attrs;
} mf_h5_result;

/* Offset of the superblock in buf (0, 512, 1024, ...), or -1 if none. */
int64_t mf_h5_find_superblock(const uint8_t *buf, size_t len);

/* Parse the file in buf (the whole HDF5 file). */
int mf_h5_open(const uint8_t *buf, size_t len, uint64_t report_base, unsigned flags, mf_arena *a,
               mf_h5_result *out, mf_error *err);

typedef struct mf_h5_chunk {
    uint64_t addr;          /* absolute offset of the stored chunk */
    uint64_t size;          /* stored (filtered) bytes */
    uint32_t mask;          /* filters skipped (bit i = filter i) */
    uint64_t *offset;       /* element offset of the chunk, rank entries */
} mf_h5_chunk;

/* Every allocated chunk of a chunked dataset (chunks outside the current extent are dropped).
 * Walks the chunk index; reads no chunk data. */
int mf_h5_chunks(const mf_h5_result *r, const mf_h5_dataset *d, unsigned flags, mf_arena *a,
                 mf_h5_chunk **out, size_t *n_out, mf_error *err);

/* Resolve n variable-length elements (each: u32 count, global heap collection address, u32
 * index) at elems (stride bytes apart). For each: offset/size of the heap object in the input
 * (offset MF_H5_UNDEF and size 0 for an empty or NULL element) and the stored count. */
int mf_h5_vlen(const mf_h5_result *r, const uint8_t *elems, size_t n, size_t stride, mf_arena *a,
               uint64_t *offsets, uint64_t *sizes, uint32_t *counts, mf_error *err);

/* Size of one stored variable-length element (4 + size of offsets + 4). */
size_t mf_h5_vlen_elem_size(const mf_h5_result *r);

#ifdef __cplusplus
}
#endif
#endif /* MF_HDF5_H */
