/*
 * mf_tflite.h - TFLite models (FlatBuffers, file identifier "TFL3") read through mf_flatbuf.
 *
 * Schema slots (tensorflow/lite/schema/schema.fbs; see formats.md section 4):
 *   Model: version 4, operator_codes 6, subgraphs 8, description 10, buffers 12,
 *          metadata_buffer 14, metadata 16, signature_defs 18, external_buffer_groups 20,
 *          external_buffers 22.
 *   SubGraph: tensors 4, inputs 6, outputs 8, operators 10, name 12.
 *   Tensor: shape 4, type 6, buffer 8, name 10, quantization 12, is_variable 14, sparsity 16,
 *           shape_signature 18, has_rank 20, variant_tensors 22, external_buffer 24.
 *   Buffer: data 4, offset 6, size 8 (offset > 1: the bytes live at that file offset, after
 *           the flatbuffer, as written for models over 2 GB).
 *   QuantizationParameters: min 4, max 6, scale 8, zero_point 10, details_type 12, details 14,
 *           quantized_dimension 16. Details: 1 CustomQuantization {custom 4},
 *           2 BlockwiseQuantization {scales 4, zero_points 6, block_size 8} (tensor indices).
 *   OperatorCode: deprecated_builtin_code 4 (i8), custom_code 6, version 8 (default 1),
 *           builtin_code 10; the real code is the larger of the two codes.
 *   Operator: opcode_index 4, inputs 6, outputs 8, builtin_options_type 10,
 *           custom_options 14, intermediates 20, large_custom_options_size 24,
 *           builtin_options_2_type 26.
 *   SignatureDef: inputs 4, outputs 6 ([TensorMap {name 4, tensor_index 6}]),
 *           signature_key 8, subgraph_index 12.
 *   Metadata: name 4, buffer 6. SparsityParameters: traversal_order 4, block_map 6,
 *           dim_metadata 8 ([DimensionMetadata {format 4, dense_size 6, array_segments_type 8,
 *           array_segments 10, array_indices_type 12, array_indices 14}]).
 *   ExternalBufferGroup: name 4. ExternalBuffer: id 4, group 6, offset 8, length 10, packing 12.
 *
 * Strings point into the input buffer (not NUL-terminated); everything else is copied into the
 * arena. Indices (tensor -> buffer, operator -> opcode, inputs/outputs -> tensors) are checked
 * here, so the Python side never indexes out of range.
 */
#ifndef MF_TFLITE_H
#define MF_TFLITE_H

#include "mf_core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mf_tfl_str {
    const uint8_t *s; /* NULL when absent */
    uint32_t n;
} mf_tfl_str;

typedef struct mf_tfl_i32s {
    int32_t *v;
    uint32_t n;
    int present;
} mf_tfl_i32s;

typedef struct mf_tfl_quant {
    float *min, *max, *scale;
    uint32_t n_min, n_max, n_scale;
    int64_t *zero_point;
    uint32_t n_zero_point;
    int32_t quantized_dimension;
    uint8_t details_type;           /* 0 none, 1 custom, 2 blockwise, other: unknown */
    uint64_t custom_offset;         /* custom: file offset and length of the custom bytes */
    uint32_t custom_len;
    int32_t block_scales, block_zero_points, block_size; /* blockwise */
} mf_tfl_quant;

typedef struct mf_tfl_dim {
    uint8_t format;                 /* 0 DENSE, 1 SPARSE_CSR */
    int32_t dense_size;
    uint8_t segments_type, indices_type;  /* 1 int32, 2 uint16, 3 uint8 vectors */
    uint32_t n_segments, n_indices;
} mf_tfl_dim;

typedef struct mf_tfl_sparsity {
    mf_tfl_i32s traversal_order, block_map;
    mf_tfl_dim *dims;
    uint32_t n_dims;
} mf_tfl_sparsity;

typedef struct mf_tfl_tensor {
    uint32_t subgraph, index;       /* index within its subgraph */
    mf_tfl_str name;
    int8_t type;                    /* TensorType */
    mf_tfl_i32s shape, shape_signature;
    uint32_t buffer;                /* index into buffers; 0 = none */
    uint8_t is_variable, has_rank;
    mf_tfl_quant *quant;            /* NULL when absent */
    mf_tfl_sparsity *sparsity;      /* NULL when absent */
    uint32_t external_buffer;       /* id in external_buffers; 0 = none */
    uint32_t n_variant;             /* variant_tensors count */
} mf_tfl_tensor;

typedef struct mf_tfl_opcode {
    int32_t builtin;                /* max(builtin_code, deprecated_builtin_code) */
    int8_t deprecated;
    int32_t version;
    mf_tfl_str custom;
} mf_tfl_opcode;

typedef struct mf_tfl_op {
    uint32_t subgraph;
    uint32_t opcode;                /* index into opcodes (checked) */
    mf_tfl_i32s inputs, outputs, intermediates;   /* -1 = optional input absent */
    uint8_t options_type, options2_type;
    uint32_t custom_options_len;
    uint64_t large_custom_options_size;
} mf_tfl_op;

typedef struct mf_tfl_subgraph {
    mf_tfl_str name;
    uint32_t first_tensor, n_tensors;   /* into the flat tensor array */
    uint32_t first_op, n_ops;           /* into the flat operator array */
    mf_tfl_i32s inputs, outputs;
} mf_tfl_subgraph;

typedef struct mf_tfl_buffer {
    uint64_t offset;                /* file offset of the bytes */
    uint64_t size;                  /* 0 = empty */
    uint8_t external;               /* 1 when stored after the flatbuffer (Buffer.offset/size) */
} mf_tfl_buffer;

typedef struct mf_tfl_tmap {
    mf_tfl_str name;
    uint32_t tensor;
} mf_tfl_tmap;

typedef struct mf_tfl_sig {
    mf_tfl_str key;
    uint32_t subgraph;
    mf_tfl_tmap *inputs, *outputs;
    uint32_t n_inputs, n_outputs;
} mf_tfl_sig;

typedef struct mf_tfl_meta {
    mf_tfl_str name;
    uint32_t buffer;
} mf_tfl_meta;

typedef struct mf_tfl_extbuf {
    uint32_t id, group;
    uint64_t offset, length;
    mf_tfl_str packing;
} mf_tfl_extbuf;

typedef struct mf_tfl_model {
    uint32_t version;
    mf_tfl_str description;
    mf_tfl_opcode *opcodes;     uint32_t n_opcodes;
    mf_tfl_subgraph *subgraphs; uint32_t n_subgraphs;
    mf_tfl_tensor *tensors;     uint32_t n_tensors;
    mf_tfl_op *ops;             uint32_t n_ops;
    mf_tfl_buffer *buffers;     uint32_t n_buffers;
    mf_tfl_meta *metadata;      uint32_t n_metadata;
    mf_tfl_i32s metadata_buffer;
    mf_tfl_sig *sigs;           uint32_t n_sigs;
    mf_tfl_str *ext_groups;     uint32_t n_ext_groups;
    mf_tfl_extbuf *ext_buffers; uint32_t n_ext_buffers;
} mf_tfl_model;

/*
 * TFLite Model Metadata (tensorflow/tflite-support metadata_schema.fbs, file identifier "M001"):
 * the flatbuffer held by the buffer that the Model.metadata entry "TFLITE_METADATA" names.
 * Writers (the tflite-support / MediaPipe MetadataPopulator) pack the associated files it
 * names as a zip archive appended after the model; that zip is read by formats/tflite.py.
 *
 *   ModelMetadata: name 4, description 6, version 8, subgraph_metadata 10, author 12,
 *          license 14, associated_files 16, min_parser_version 18.
 *   SubGraphMetadata: name 4, description 6, input_tensor_metadata 8, output_tensor_metadata 10,
 *          associated_files 12, input_process_units 14, output_process_units 16,
 *          input_tensor_groups 18, output_tensor_groups 20, custom_metadata 22.
 *   TensorMetadata: name 4, description 6, dimension_names 8, content 10, process_units 12,
 *          stats 14, associated_files 16.  Content: content_properties_type 4 (1 Feature,
 *          2 Image, 3 BoundingBox, 4 Audio), content_properties 6, range 8.
 *   AssociatedFile: name 4, description 6, type 8 (i8 AssociatedFileType), locale 10, version 12.
 *   ProcessUnit: options_type 4, options 6 (1 Normalization, 2 ScoreCalibration,
 *          3 ScoreThresholding, 4 BertTokenizer {vocab_file 4}, 5 SentencePieceTokenizer
 *          {sentencePiece_model 4, vocab_file 6}, 6 RegexTokenizer {delim_regex_pattern 4,
 *          vocab_file 6}).
 *   CustomMetadata: name 4, data 6.
 *
 * Every associated file the metadata records (model, subgraph, tensor and tokenizer options)
 * becomes one flat record that says where it was found.
 */
enum { MF_TFLM_MODEL = 0, MF_TFLM_SUBGRAPH = 1, MF_TFLM_INPUT = 2, MF_TFLM_OUTPUT = 3 };

typedef struct mf_tflm_file {
    mf_tfl_str name, description, locale, version;
    int8_t type;                    /* AssociatedFileType */
    uint8_t where;                  /* MF_TFLM_*: what records it */
    uint8_t process_unit;           /* 0, or the ProcessUnitOptions type that names it (4, 5, 6) */
    uint8_t input_unit;             /* subgraph process units: 1 input, 0 output */
    uint32_t subgraph, tensor;      /* subgraph index; tensor index for MF_TFLM_INPUT/OUTPUT */
} mf_tflm_file;

typedef struct mf_tflm_tensor {
    mf_tfl_str name, description;
    uint8_t output;                 /* 0 input, 1 output */
    uint8_t content_type;           /* ContentProperties type (0 none) */
    uint32_t subgraph, index;
    uint8_t *process_units;         /* ProcessUnitOptions types */
    uint32_t n_process_units;
} mf_tflm_tensor;

typedef struct mf_tflm_subgraph {
    mf_tfl_str name, description;
    uint32_t n_inputs, n_outputs;
} mf_tflm_subgraph;

typedef struct mf_tflm_custom {
    mf_tfl_str name;
    uint32_t subgraph;
    uint64_t offset, size;          /* file offset and length of its data */
} mf_tflm_custom;

typedef struct mf_tfl_metadata {
    mf_tfl_str name, description, version, author, license, min_parser_version;
    mf_tflm_subgraph *subgraphs;    uint32_t n_subgraphs;
    mf_tflm_tensor *tensors;        uint32_t n_tensors;
    mf_tflm_file *files;            uint32_t n_files;
    mf_tflm_custom *custom;         uint32_t n_custom;
} mf_tfl_metadata;

/* buf holds the whole file (file_size bytes). require_ident: refuse a missing "TFL3". */
int mf_tflite_parse(const uint8_t *buf, size_t len, int require_ident, mf_arena *a, mf_tfl_model *out,
                    mf_error *err);

/* The ModelMetadata flatbuffer in buf (len bytes at file offset base), identifier "M001". */
int mf_tflite_metadata(const uint8_t *buf, size_t len, uint64_t base, mf_arena *a, mf_tfl_metadata *out,
                       mf_error *err);

/* Element bits of a TensorType (0: no fixed size: string, resource, variant, unknown). */
unsigned mf_tflite_type_bits(int type);
/* The mf_dtype of a TensorType (MF_DT_UNKNOWN for resource, variant and unknown codes). */
int mf_tflite_dtype(int type);

#ifdef __cplusplus
}
#endif
#endif /* MF_TFLITE_H */
