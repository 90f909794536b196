/*
 * mf_torch.h - turns the value graph of a torch pickle (data.pkl, or the main pickle of a
 * legacy file) into flat records: storages, tensors, and a pre-order list of entries that
 * names every tensor and describes the checkpoint's structure.
 *
 * Recognised by name, never imported: torch._utils._rebuild_tensor{,_v2,_v3}, _rebuild_qtensor,
 * _rebuild_parameter{,_with_state}, _rebuild_meta_tensor_no_storage,
 * _rebuild_device_tensor_from_cpu_tensor, torch._tensor._rebuild_from_type_v2, storage classes,
 * torch dtypes and qschemes, collections.OrderedDict. Everything else is an opaque OBJECT entry
 * that carries its callable; tensors inside it are still found and named.
 */
#ifndef MF_TORCH_H
#define MF_TORCH_H

#include "mf_pickle.h"
#include "mf_zip.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mf_torch_storage {
    const uint8_t *key;       /* storage key ("0", "1", ... in zip files) */
    uint32_t key_len;
    const uint8_t *location;  /* "cpu", "cuda:0", ... */
    uint32_t location_len;
    int dtype;                /* element type of the storage (uint8 for UntypedStorage) */
    uint64_t numel;           /* declared size in storage elements */
    uint64_t offset;          /* pickle offset of the first persistent id naming it */
} mf_torch_storage;

enum {
    MF_TT_DENSE = 0,
    MF_TT_QUANTIZED = 1,
    MF_TT_META = 2,           /* no storage (meta device) */
};

enum {
    MF_QS_NONE = 0,
    MF_QS_PER_TENSOR_AFFINE = 1,
    MF_QS_PER_CHANNEL_AFFINE = 2,
    MF_QS_PER_CHANNEL_AFFINE_FLOAT_QPARAMS = 3,
};

typedef struct mf_torch_tensor {
    int32_t storage;          /* index into storages, -1 for meta tensors */
    int dtype;
    uint32_t ndim;
    int64_t *shape;
    int64_t *stride;
    int64_t storage_offset;   /* in elements of dtype */
    uint64_t numel;
    uint64_t extent;          /* elements of the storage the tensor touches: max index + 1 (0 if empty) */
    uint8_t kind;             /* MF_TT_* */
    uint8_t requires_grad;
    uint8_t is_parameter;
    uint8_t qscheme;          /* MF_QS_* */
    uint8_t contiguous;       /* stride is C-contiguous for shape */
    uint64_t file_offset;     /* set by mf_torch_resolve: file offset of element 0; UINT64_MAX if none */
    double q_scale;
    int64_t q_zero_point;
    int64_t q_axis;
    int32_t q_scales;         /* tensor index of per-channel scales, -1 */
    int32_t q_zero_points;    /* tensor index of per-channel zero points, -1 */
    const mf_pv *subclass;    /* GLOBAL of a tensor subclass (_rebuild_from_type_v2), or NULL */
    const mf_pv *device;      /* device argument of _rebuild_device_tensor_from_cpu_tensor, or NULL */
    uint64_t offset;          /* pickle offset of the rebuild call */
} mf_torch_tensor;

typedef enum mf_torch_entry_kind {
    MF_TE_DICT = 1,           /* dict or OrderedDict */
    MF_TE_LIST,
    MF_TE_TUPLE,
    MF_TE_SET,
    MF_TE_TENSOR,             /* tensor: index in `tensor` */
    MF_TE_STORAGE,            /* a bare storage object: index in `tensor` is the storage index */
    MF_TE_SCALAR,             /* None, bool, int, float, str, bytes */
    MF_TE_OBJECT,             /* opaque call result; `cls` is what it calls */
    MF_TE_MODULE,             /* pickled nn.Module: children are its parameters, buffers, submodules */
    MF_TE_GLOBAL,             /* a bare reference to module.name (e.g. a dtype) */
    MF_TE_REF,                /* a node walked before: an ancestor (a cycle), or in shared-once mode any
                                 memo-shared node already walked; `tensor` is the index of its entry */
} mf_torch_entry_kind;

typedef struct mf_torch_entry {
    const char *path;         /* dotted name, NUL-terminated, in the arena */
    uint32_t path_len;
    uint32_t depth;           /* root = 0 */
    uint32_t kind;            /* MF_TE_* */
    int32_t tensor;           /* MF_TE_TENSOR / MF_TE_STORAGE index */
    const mf_pv *key;         /* the dict key node for dict children, NULL otherwise */
    const mf_pv *value;       /* the node itself */
    const mf_pv *cls;         /* MF_TE_OBJECT / MF_TE_MODULE: the callable (GLOBAL when literal) */
} mf_torch_entry;

typedef struct mf_torch_result {
    mf_vec storages;          /* mf_torch_storage */
    mf_vec tensors;           /* mf_torch_tensor */
    mf_vec entries;           /* mf_torch_entry */
    /* storage key -> index */
    int32_t *slots;
    size_t slots_cap;
} mf_torch_result;

enum {
    MF_TORCH_ZIP = 0,         /* persistent ids ('storage', type, key, location, numel) */
    MF_TORCH_LEGACY = 1,      /* ('storage', type, key, location, numel, view) and ('module', ...) */
};

#define MF_TORCH_MAX_DEPTH 200

/* Walk `root` and fill `out` (zero it first). input_len (the pickle's size) bounds the number
 * of entries: shared references can make a small pickle describe an exponentially large tree.
 * The tree expansion of the value graph is counted first (mf_pkl_expansion_of): when it fits
 * in MF_TORCH_MAX_ENTRIES(input_len) and the graph has no cycle, every path is walked (a shared
 * sub-structure gets a name under each path, as torch's state_dict names tied weights); else
 * each memo-shared container is walked once and later occurrences are REF entries, so the
 * entries stay below the number of item slots of the pickle. Tensors are leaves: a tensor is
 * named at every slot that holds it. */
int mf_torch_walk(const mf_pv *root, int flavor, uint64_t input_len, mf_arena *a, mf_torch_result *out,
                  mf_error *err);
/* Same; is_tree: the caller knows the graph is a tree (its parse has shared_refs == 0), so the
 * expansion is not counted (it equals the node count). */
int mf_torch_walk_ex(const mf_pv *root, int flavor, uint64_t input_len, int is_tree, mf_arena *a,
                     mf_torch_result *out, mf_error *err);

/* entries allowed for a pickle of n bytes */
#define MF_TORCH_MAX_ENTRIES(n) ((uint64_t)262144 + 4 * (uint64_t)(n))

/* Legacy (pre-1.6) files: run the five stacked pickles at the start of buf (the whole file)
 * and locate each storage's raw bytes. On success *main is the main pickle's root,
 * storage_data[i] the file offset of storage i's bytes (after its 8-byte element count),
 * in the index order of out->storages. */
int mf_torch_legacy(mf_pkl *p, const uint8_t *buf, size_t len, mf_pv **main, mf_torch_result *out,
                    uint64_t **storage_data, mf_error *err);

/* Check every storage against the bytes the file holds for it and every tensor against its
 * storage, and set each tensor's file_offset. Per storage i: data_offset[i] is the file offset
 * of its bytes (UINT64_MAX: not mapped, e.g. a compressed member), avail[i] how many bytes the
 * file holds for it (UINT64_MAX: already checked). */
int mf_torch_resolve(mf_torch_result *r, const uint64_t *data_offset, const uint64_t *avail, mf_error *err);

/* Zip files: storage i lives in member "<prefix><key>", prefix being the record folder with its
 * trailing slash ("archive/data/"; TorchScript constants: "archive/constants/"). Fills data_offset (UINT64_MAX for a
 * compressed member), avail (the member's uncompressed size) and member (entry index). */
int mf_torch_zip_storages(const mf_torch_result *r, const mf_zip_entry *entries, size_t n_entries,
                          const uint8_t *prefix, size_t prefix_len, mf_arena *a, uint64_t *data_offset,
                          uint64_t *avail, int32_t *member, mf_error *err);

/* dtype of a torch storage class name ("FloatStorage") or dtype name ("float32"); 0 if unknown */
int mf_torch_storage_dtype(const uint8_t *name, size_t n);
int mf_torch_dtype_by_name(const uint8_t *name, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* MF_TORCH_H */
