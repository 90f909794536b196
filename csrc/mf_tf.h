/*
 * mf_tf.h - TensorFlow readers on top of the protobuf walker and the SSTable reader:
 *   GraphDef (frozen graphs: Const nodes carry the weights), SavedModel (saved_model.pb:
 *   meta graphs, tags, signatures, graphs and function libraries), and tensor bundles (the
 *   .index of checkpoints and of a SavedModel's variables/: BundleHeaderProto +
 *   BundleEntryProto records in an SSTable).
 *
 * Field numbers: shared/reference/formats.md section 3 (TensorFlow protos, proto3: absent
 * scalar fields are 0, repeated scalars are packed but parsers accept both encodings).
 */
#ifndef MF_TF_H
#define MF_TF_H

#include "mf_proto.h"
#include "mf_sstable.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MF_TF_MAX_TYPE 33

enum {
    MF_TF_DATA_EMPTY = 0,       /* no elements */
    MF_TF_DATA_CONTENT = 1,     /* tensor_content at data_off, nbytes long */
    MF_TF_DATA_TYPED = 2,       /* `count` values in field `field` (TF repeats the last to fill) */
    MF_TF_DATA_STRINGS = 3,     /* `count` string_val values */
    MF_TF_DATA_UNSUPPORTED = 4, /* resource/variant handles, string tensor_content: listed, not read */
};

typedef struct mf_tf_tensor {
    int32_t tf_dtype;
    int dtype;           /* mf_dtype */
    uint32_t ndim;
    int64_t *dims;
    uint64_t numel;
    uint64_t nbytes;     /* numel x TF item size; strings: total bytes after TF's fill rule */
    int data;            /* MF_TF_DATA_* */
    uint32_t field;      /* TYPED: field number */
    uint64_t count;      /* TYPED / STRINGS: values present (may be fewer or more than numel) */
    uint64_t data_off;   /* CONTENT: file offset of tensor_content; TYPED float8_val: of its bytes */
    uint64_t msg_off;    /* the TensorProto message */
    uint64_t msg_len;
    int32_t node;        /* owning node */
    mf_pb_str attr;      /* attribute key holding it ("value" for Const) */
} mf_tf_tensor;

typedef struct mf_tf_node {
    int32_t meta_graph;  /* -1 for a bare GraphDef */
    int32_t function;    /* index in functions, -1 for the graph itself */
    mf_pb_str name;
    mf_pb_str op;
    mf_pb_str device;
    uint32_t n_inputs;
    uint64_t offset;     /* file offset of the NodeDef */
    uint64_t op_offset;  /* file offset of its op string */
} mf_tf_node;

typedef struct mf_tf_function {
    int32_t meta_graph;
    mf_pb_str name;      /* signature.name */
    uint32_t n_nodes;
    uint64_t offset;
} mf_tf_function;

typedef struct mf_tf_meta_graph {
    uint64_t offset;
    mf_pb_str tf_version;
    mf_pb_str tf_git_version;
    uint32_t first_tag, n_tags;   /* range in tags */
    int has_graph;
    int32_t producer;             /* GraphDef.versions.producer */
} mf_tf_meta_graph;

typedef struct mf_tf_signature {
    int32_t meta_graph;
    mf_pb_str key;
    mf_pb_str method;
} mf_tf_signature;

typedef struct mf_tf_sig_tensor {
    int32_t signature;
    int role;            /* 0 input, 1 output */
    mf_pb_str key;
    mf_pb_str name;      /* TensorInfo.name; for coo_sparse the values tensor name */
    int encoding;        /* 1 name, 4 coo_sparse, 5 composite_tensor */
    int32_t tf_dtype;
    int32_t ndim;        /* -1 unknown rank */
    int64_t *dims;       /* -1 = unknown size */
} mf_tf_sig_tensor;

typedef struct mf_tf_graph {
    int is_saved_model;
    int64_t schema_version;
    int32_t producer, min_consumer;     /* bare GraphDef versions */
    mf_vec meta_graphs;  /* mf_tf_meta_graph */
    mf_vec tags;         /* mf_pb_str */
    mf_vec signatures;   /* mf_tf_signature */
    mf_vec sig_tensors;  /* mf_tf_sig_tensor */
    mf_vec functions;    /* mf_tf_function */
    mf_vec nodes;        /* mf_tf_node */
    mf_vec tensors;      /* mf_tf_tensor */
} mf_tf_graph;

/* A frozen / plain GraphDef file. */
int mf_tf_parse_graphdef(const uint8_t *buf, size_t len, uint64_t base, mf_arena *a, mf_tf_graph *out, mf_error *err);
/* A SavedModel's saved_model.pb. */
int mf_tf_parse_saved_model(const uint8_t *buf, size_t len, uint64_t base, mf_arena *a, mf_tf_graph *out,
                            mf_error *err);

/* ------------------------------------------------------------------------------------------ */
/* Tensor bundles */

typedef struct mf_tf_entry {
    const uint8_t *key;
    uint32_t key_len;
    int32_t tf_dtype;
    int dtype;
    uint32_t ndim;
    int64_t *dims;
    uint64_t numel;
    int32_t shard;
    uint64_t offset;     /* in the data file */
    uint64_t size;
    int has_crc;
    uint32_t crc32c;     /* masked, as stored */
    uint32_t n_slices;   /* partitioned variable: the data lives under slice keys */
    uint64_t entry_off;  /* file offset of the BundleEntryProto in the .index */
} mf_tf_entry;

/* One stored slice of a partitioned tensor: its key is OrderedCode(0, name, rank,
 * (start, length) per dimension), length -1 meaning the whole dimension. */
typedef struct mf_tf_slice {
    const uint8_t *name;
    uint32_t name_len;
    uint32_t ndim;
    int64_t *start;
    int64_t *length;
    int32_t tf_dtype;
    int32_t shard;
    uint64_t offset;
    uint64_t size;
    int has_crc;
    uint32_t crc32c;
    uint64_t entry_off;
} mf_tf_slice;

typedef struct mf_tf_bundle {
    int32_t num_shards;
    int big_endian;
    int32_t producer;
    mf_vec entries;      /* mf_tf_entry, in key order, header and slice keys left out */
    mf_vec slices;       /* mf_tf_slice */
    mf_sst_info sst;
} mf_tf_bundle;

/* Read a .index file (the whole file in buf). */
int mf_tf_parse_bundle(const uint8_t *buf, size_t len, mf_arena *a, int verify_blocks, mf_tf_bundle *out,
                       mf_error *err);

/* A DT_STRING tensor in a bundle data file: numel varint64 lengths, a 4-byte masked crc32c of
 * the lengths (as u32, or u64 when one does not fit, in the writer's byte order), the bytes.
 * Fills offs/lens (numel each; offsets relative to data) and checks the length checksum. */
int mf_tf_bundle_strings(const uint8_t *data, size_t len, uint64_t base, uint64_t numel, int big_endian,
                         uint64_t *offs, uint64_t *lens, mf_error *err);

/* The crc32c TF stores for a DT_STRING tensor (over the lengths as fixed-width integers, the
 * length checksum and the bytes), masked; for numeric tensors use mf_crc32c on the bytes. */
int mf_tf_bundle_strings_crc(const uint8_t *data, size_t len, uint64_t base, uint64_t numel, int big_endian,
                             uint32_t *masked, mf_error *err);

/* TF DataType -> mf_dtype (0 if unknown), and the bytes TF stores per element (0 for strings,
 * resources and variants; 1 for int4/uint4/int2/uint2/float4, which TF keeps one per byte). */
int mf_tf_dtype(int32_t tf_type);
unsigned mf_tf_itemsize(int32_t tf_type);
const char *mf_tf_type_name(int32_t tf_type);   /* "DT_FLOAT" */

#ifdef __cplusplus
}
#endif
#endif /* MF_TF_H */
