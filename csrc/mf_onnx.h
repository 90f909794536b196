/*
 * mf_onnx.h - ONNX ModelProto / TensorProto reader on top of the protobuf walker.
 *
 * One pass over the wire format emits flat records: scopes (the main graph, subgraphs held
 * by node attributes such as If/Loop/Scan bodies, functions, training graphs), nodes, graph
 * inputs/outputs with their types and shapes, and every TensorProto that carries data
 * (initializers, sparse initializers, tensors in node attributes such as Constant's value).
 * raw_data is never read or copied: a tensor record holds its file offset. Typed fields
 * (float_data, int32_data, ...) are counted, not decoded; mf_pb_collect decodes them when a
 * tensor is read. External data is reported as the key/value pairs of the file; resolving
 * a location against the model's folder is the Python layer's job.
 *
 * Field numbers: onnx/onnx.proto (see shared/reference/formats.md section 2).
 */
#ifndef MF_ONNX_H
#define MF_ONNX_H

#include "mf_proto.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ONNX TensorProto.DataType codes 1..28 (0 = UNDEFINED) */
#define MF_ONNX_MAX_TYPE 28

enum {
    MF_ONNX_SCOPE_GRAPH = 0,    /* ModelProto.graph */
    MF_ONNX_SCOPE_SUBGRAPH = 1, /* a GraphProto in a node attribute (g / graphs) */
    MF_ONNX_SCOPE_FUNCTION = 2, /* ModelProto.functions[i] */
    MF_ONNX_SCOPE_TRAINING = 3, /* ModelProto.training_info[i].initialization / .algorithm */
};

enum {
    MF_ONNX_SRC_INITIALIZER = 1,    /* GraphProto.initializer */
    MF_ONNX_SRC_SPARSE_VALUES = 2,  /* GraphProto.sparse_initializer[i].values */
    MF_ONNX_SRC_SPARSE_INDICES = 3, /* GraphProto.sparse_initializer[i].indices */
    MF_ONNX_SRC_ATTRIBUTE = 4,      /* a node attribute's t / tensors[i] */
    MF_ONNX_SRC_ATTR_SPARSE_VALUES = 5,  /* a node attribute's sparse_tensor(s) values */
    MF_ONNX_SRC_ATTR_SPARSE_INDICES = 6, /* ... and indices */
    MF_ONNX_SRC_BARE = 7,           /* a bare TensorProto file */
};

enum {
    MF_ONNX_DATA_EMPTY = 0,    /* no elements and no data */
    MF_ONNX_DATA_RAW = 1,      /* raw_data at data_off, nbytes long */
    MF_ONNX_DATA_TYPED = 2,    /* `count` values in field `field` of the message */
    MF_ONNX_DATA_EXTERNAL = 3, /* data_location EXTERNAL: see ext */
    MF_ONNX_DATA_STRINGS = 4,  /* `count` string_data values (nbytes = their total length) */
};

typedef struct mf_onnx_kv {
    mf_pb_str key;
    mf_pb_str value;
} mf_onnx_kv;

typedef struct mf_onnx_opset {
    mf_pb_str domain;
    int64_t version;
} mf_onnx_opset;

typedef struct mf_onnx_scope {
    int kind;           /* MF_ONNX_SCOPE_* */
    int32_t parent;     /* enclosing scope, -1 for top-level scopes */
    int32_t node;       /* node holding this graph in an attribute, -1 otherwise */
    mf_pb_str attr;     /* that attribute's name; "initialization"/"algorithm" for training graphs */
    uint32_t index;     /* position in a GRAPHS attribute, in functions, or in training_info */
    mf_pb_str name;     /* GraphProto.name or FunctionProto.name */
    mf_pb_str domain;   /* FunctionProto.domain */
    uint64_t offset;    /* file offset of the message */
    uint32_t n_nodes;
    uint32_t n_initializers;
    uint32_t n_sparse;
} mf_onnx_scope;

typedef struct mf_onnx_node {
    int32_t scope;
    mf_pb_str op_type;
    mf_pb_str domain;
    mf_pb_str name;
    mf_pb_str output0;  /* first output name (names a Constant's tensor) */
    uint32_t n_inputs;
    uint32_t n_outputs;
    uint64_t offset;
} mf_onnx_node;

typedef struct mf_onnx_dim {
    int kind;           /* 0 unknown, 1 dim_value, 2 dim_param */
    int64_t value;
    mf_pb_str param;
} mf_onnx_dim;

typedef struct mf_onnx_value {
    int32_t scope;
    int role;           /* 0 input, 1 output */
    mf_pb_str name;
    int type_kind;      /* TypeProto case: 1 tensor, 4 sequence, 5 map, 7 opaque, 8 sparse, 9 optional; 0 none */
    int32_t elem_type;  /* ONNX data type of a tensor / sparse tensor type, 0 otherwise */
    int32_t ndim;       /* -1 when the type has no shape (unknown rank) */
    mf_onnx_dim *dims;
    const char *type_str; /* "tensor(float)", "seq(tensor(int64))", ...; "" when untyped */
    uint64_t offset;
} mf_onnx_value;

/* What a tensor record needs beyond a plain raw-data initializer (NULL for those, which keeps
 * the records of a 20,000-initializer model small). */
typedef struct mf_onnx_tensor_more {
    int32_t node;       /* for attribute tensors, else -1 */
    mf_pb_str attr;     /* attribute name */
    uint32_t attr_index;/* position in a TENSORS / SPARSE_TENSORS list (0 for t / sparse_tensor) */
    int32_t partner;    /* sparse: index of the indices (for values) or values (for indices) record */
    uint32_t sparse_ndim;   /* sparse tensors: the dense shape */
    int64_t *sparse_dims;
    uint32_t field;     /* TYPED: the field number (4 float, 5 int32, 7 int64, 10 double, 11 uint64) */
    uint64_t count;     /* TYPED / STRINGS: number of values */
    uint64_t msg_off;   /* the TensorProto message (for decoding typed values on read) */
    uint64_t msg_len;
    mf_onnx_kv *ext;    /* external_data entries */
    uint32_t n_ext;
    int has_segment;
    int64_t seg_begin, seg_end;
} mf_onnx_tensor_more;

typedef struct mf_onnx_tensor {
    mf_pb_str name;
    int64_t *dims;
    uint64_t nbytes;    /* raw bytes of the elements (sub-byte types rounded up); strings: total length */
    uint64_t data_off;  /* RAW: file offset of raw_data */
    uint32_t ndim;
    int32_t scope;
    int32_t data_type;  /* ONNX */
    uint8_t source;     /* MF_ONNX_SRC_* */
    uint8_t data;       /* MF_ONNX_DATA_* */
    uint8_t dtype;      /* mf_dtype */
    uint8_t dup;        /* a record of the same scope with the same name came earlier */
    mf_onnx_tensor_more *more; /* NULL for a main-graph-style raw-data initializer without segment */
} mf_onnx_tensor;

typedef struct mf_onnx_model {
    int has_ir_version;
    int64_t ir_version;
    mf_pb_str producer_name, producer_version, domain, doc_string;
    int has_model_version;
    int64_t model_version;
    mf_vec opsets;      /* mf_onnx_opset */
    mf_vec props;       /* mf_onnx_kv (metadata_props) */
    mf_vec scopes;      /* mf_onnx_scope */
    mf_vec nodes;       /* mf_onnx_node */
    mf_vec values;      /* mf_onnx_value */
    mf_vec tensors;     /* mf_onnx_tensor */
    mf_pb_str graph_doc;
} mf_onnx_model;

/* Parse a ModelProto (buf = the whole file, base its file offset, normally 0). */
int mf_onnx_parse_model(const uint8_t *buf, size_t len, uint64_t base, mf_arena *a, mf_onnx_model *out,
                        mf_error *err);

/* Parse a bare TensorProto file (ONNX test data .pb): one tensor record in out->tensors. */
int mf_onnx_parse_tensor(const uint8_t *buf, size_t len, uint64_t base, mf_arena *a, mf_onnx_model *out,
                         mf_error *err);

/* ONNX data type -> mf_dtype (MF_DT_UNKNOWN for 0 and codes this reader does not know). */
int mf_onnx_dtype(int32_t onnx_type);
/* The ONNX name of a data type ("float", "bfloat16", "float8e4m3fn"), "undefined" if unknown. */
const char *mf_onnx_type_name(int32_t onnx_type);

#ifdef __cplusplus
}
#endif
#endif /* MF_ONNX_H */
