/*
 * mf_torch.c - torch pickle walker (see mf_torch.h).
 *
 * Facts from torch/serialization.py and torch/_utils.py (torch 2.13):
 *   zip persistent id:    ('storage', storage_type, key, location, numel)
 *   legacy persistent id: ('storage', storage_type, root_key, location, numel, view_metadata)
 *                         ('module', cls, source_file, source)
 *   _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks[, metadata])
 *   _rebuild_tensor_v3(untyped_storage, storage_offset, size, stride, requires_grad, hooks,
 *                      dtype[, metadata])
 *   _rebuild_qtensor(storage, storage_offset, size, stride, quantizer_params, requires_grad, hooks)
 *   _rebuild_parameter(data, requires_grad, hooks), _rebuild_parameter_with_state(..., state)
 * When two persistent ids name one key, torch keeps the first one's type and size.
 */
#include "mf_torch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ========================================================================================== */
/* Name tables                                                                                */
/* ========================================================================================== */

typedef struct name_dtype {
    const char *name;
    int dtype;
} name_dtype;

static const name_dtype storage_names[] = {
    {"FloatStorage", MF_DT_FLOAT32},        {"DoubleStorage", MF_DT_FLOAT64},
    {"HalfStorage", MF_DT_FLOAT16},         {"BFloat16Storage", MF_DT_BFLOAT16},
    {"LongStorage", MF_DT_INT64},           {"IntStorage", MF_DT_INT32},
    {"ShortStorage", MF_DT_INT16},          {"CharStorage", MF_DT_INT8},
    {"ByteStorage", MF_DT_UINT8},           {"BoolStorage", MF_DT_BOOL},
    {"ComplexFloatStorage", MF_DT_COMPLEX64}, {"ComplexDoubleStorage", MF_DT_COMPLEX128},
    {"QInt8Storage", MF_DT_QINT8},          {"QUInt8Storage", MF_DT_QUINT8},
    {"QInt32Storage", MF_DT_QINT32},        {"QUInt4x2Storage", MF_DT_QUINT4X2},
    {"QUInt2x4Storage", MF_DT_QUINT2X4},    {"UntypedStorage", MF_DT_UINT8},
    {"_UntypedStorage", MF_DT_UINT8},       {NULL, 0},
};

static const name_dtype dtype_names[] = {
    {"float32", MF_DT_FLOAT32}, {"float", MF_DT_FLOAT32}, {"float64", MF_DT_FLOAT64},
    {"double", MF_DT_FLOAT64}, {"float16", MF_DT_FLOAT16}, {"half", MF_DT_FLOAT16},
    {"bfloat16", MF_DT_BFLOAT16}, {"int64", MF_DT_INT64}, {"long", MF_DT_INT64},
    {"int32", MF_DT_INT32}, {"int", MF_DT_INT32}, {"int16", MF_DT_INT16}, {"short", MF_DT_INT16},
    {"int8", MF_DT_INT8}, {"uint8", MF_DT_UINT8}, {"uint16", MF_DT_UINT16},
    {"uint32", MF_DT_UINT32}, {"uint64", MF_DT_UINT64}, {"bool", MF_DT_BOOL},
    {"complex32", MF_DT_COMPLEX32}, {"chalf", MF_DT_COMPLEX32}, {"complex64", MF_DT_COMPLEX64},
    {"cfloat", MF_DT_COMPLEX64}, {"complex128", MF_DT_COMPLEX128}, {"cdouble", MF_DT_COMPLEX128},
    {"float8_e4m3fn", MF_DT_FLOAT8_E4M3FN}, {"float8_e5m2", MF_DT_FLOAT8_E5M2},
    {"float8_e4m3fnuz", MF_DT_FLOAT8_E4M3FNUZ}, {"float8_e5m2fnuz", MF_DT_FLOAT8_E5M2FNUZ},
    {"float8_e8m0fnu", MF_DT_FLOAT8_E8M0FNU}, {"float4_e2m1fn_x2", MF_DT_FLOAT4_E2M1FN_X2},
    {"qint8", MF_DT_QINT8}, {"quint8", MF_DT_QUINT8}, {"qint32", MF_DT_QINT32},
    {"quint4x2", MF_DT_QUINT4X2}, {"quint2x4", MF_DT_QUINT2X4},
    {"bits8", MF_DT_BITS8}, {"bits16", MF_DT_BITS16}, {"bits1x8", MF_DT_BITS1X8},
    {"bits2x4", MF_DT_BITS2X4}, {"bits4x2", MF_DT_BITS4X2}, {NULL, 0},
};

static int lookup(const name_dtype *t, const uint8_t *name, size_t n) {
    for (; t->name != NULL; t++)
        if (strlen(t->name) == n && memcmp(t->name, name, n) == 0) return t->dtype;
    return 0;
}

int mf_torch_storage_dtype(const uint8_t *name, size_t n) { return lookup(storage_names, name, n); }
int mf_torch_dtype_by_name(const uint8_t *name, size_t n) { return lookup(dtype_names, name, n); }

static int is_torch_module(const mf_pv *mod) {
    return mf_pv_is_str(mod, "torch") || mf_pv_is_str(mod, "torch.storage") || mf_pv_is_str(mod, "torch.cuda");
}

/* The callable of a call node, seen through legacy ('module', cls, ...) persistent ids. */
static const mf_pv *callee(const mf_pv *call) {
    const mf_pv *fn = call->u.call.fn;
    if (fn != NULL && fn->kind == MF_PV_PERSID) {
        const mf_pv *pid = fn->u.pid;
        if (pid != NULL && pid->kind == MF_PV_TUPLE && pid->n >= 2 && mf_pv_is_str(pid->u.items[0], "module"))
            fn = pid->u.items[1];
    }
    return fn;
}

static int fn_is(const mf_pv *fn, const char *mod, const char *name) { return mf_pv_global_is(fn, mod, name); }

/* What a global is, decided once per GLOBAL node (memoized globals are shared nodes) and
 * cached in its `tag`. */
enum {
    FN_OTHER = 0,
    FN_TENSOR_V2, FN_TENSOR_V3, FN_TENSOR, FN_QTENSOR, FN_PARAMETER, FN_PARAMETER_STATE,
    FN_META, FN_DEVICE_FROM_CPU, FN_FROM_TYPE_V2,
    FN_ORDERED_DICT, FN_SIZE,
    FN_REBUILD_FIRST = FN_TENSOR_V2, FN_REBUILD_LAST = FN_FROM_TYPE_V2,
};

static const struct {
    const char *mod, *name;
    int code;
} known_fns[] = {
    {"torch._utils", "_rebuild_tensor_v2", FN_TENSOR_V2},
    {"torch._utils", "_rebuild_tensor_v3", FN_TENSOR_V3},
    {"torch._utils", "_rebuild_tensor", FN_TENSOR},
    {"torch._utils", "_rebuild_qtensor", FN_QTENSOR},
    {"torch._utils", "_rebuild_parameter", FN_PARAMETER},
    {"torch._utils", "_rebuild_parameter_with_state", FN_PARAMETER_STATE},
    {"torch._utils", "_rebuild_meta_tensor_no_storage", FN_META},
    {"torch._utils", "_rebuild_device_tensor_from_cpu_tensor", FN_DEVICE_FROM_CPU},
    {"torch._tensor", "_rebuild_from_type_v2", FN_FROM_TYPE_V2},
    {"collections", "OrderedDict", FN_ORDERED_DICT},
    {"torch", "Size", FN_SIZE},
    {NULL, NULL, 0},
};

static int fn_code(const mf_pv *fn) {
    if (fn == NULL || fn->kind != MF_PV_GLOBAL || (fn->flags & MF_PVF_COMPUTED)) return FN_OTHER;
    if (fn->tag >= 0) return fn->tag;
    int code = FN_OTHER;
    for (int i = 0; known_fns[i].mod != NULL; i++)
        if (mf_pv_is_str(fn->u.g.name, known_fns[i].name) && mf_pv_is_str(fn->u.g.mod, known_fns[i].mod)) {
            code = known_fns[i].code;
            break;
        }
    ((mf_pv *)fn)->tag = code;
    return code;
}

static int is_rebuild(const mf_pv *fn) {
    int c = fn_code(fn);
    return c >= FN_REBUILD_FIRST && c <= FN_REBUILD_LAST;
}

/* ========================================================================================== */
/* Walker state                                                                               */
/* ========================================================================================== */

typedef struct walker {
    mf_arena *a;
    mf_error *err;
    mf_torch_result *out;
    int flavor;
    uint64_t max_entries;
    const mf_pv *anc[MF_TORCH_MAX_DEPTH + 2];
    int32_t anc_entry[MF_TORCH_MAX_DEPTH + 2]; /* entry index of each ancestor */
    /* shared-once mode (the tree expansion exceeds max_entries, or the graph has a cycle):
     * a memo-shared node is walked once, later occurrences are REF entries */
    int shared_once;
    mf_pv_map seen;     /* shared node -> index of its first entry */
    mf_arena *tmp;      /* the map's storage, freed after the walk */
    char *path;
    size_t path_len, path_cap;
} walker;

static int fail_args(walker *w, const mf_pv *call, const char *what) {
    const mf_pv *fn = callee(call);
    if (fn != NULL && fn->kind == MF_PV_GLOBAL && !(fn->flags & MF_PVF_COMPUTED))
        return mf_fail(w->err, MF_ERR_CORRUPT, call->offset, "%.*s.%.*s call has %s", (int)fn->u.g.mod->n,
                       (const char *)fn->u.g.mod->u.s, (int)fn->u.g.name->n, (const char *)fn->u.g.name->u.s, what);
    return mf_fail(w->err, MF_ERR_CORRUPT, call->offset, "torch rebuild call has %s", what);
}

static const mf_pv *arg(const mf_pv *call, uint32_t i) {
    const mf_pv *args = call->u.call.args;
    if (args == NULL || args->kind != MF_PV_TUPLE || i >= args->n) return NULL;
    return args->u.items[i];
}

static int as_int(const mf_pv *v, int64_t *out) {
    if (v == NULL) return 0;
    if (v->kind == MF_PV_INT || v->kind == MF_PV_BOOL) {
        *out = v->u.i;
        return 1;
    }
    return 0;
}

/* A tuple of ints, or torch.Size((ints...)) as old files have it. */
static int as_int_tuple(const mf_pv *v, const mf_pv ***items, uint32_t *n) {
    if (v != NULL && v->kind == MF_PV_CALL && fn_code(callee(v)) == FN_SIZE) v = arg(v, 0);
    if (v == NULL || (v->kind != MF_PV_TUPLE && v->kind != MF_PV_LIST)) return 0;
    for (uint32_t i = 0; i < v->n; i++)
        if (v->u.items[i]->kind != MF_PV_INT) return 0;
    *items = (const mf_pv **)v->u.items;
    *n = v->n;
    return 1;
}

/* ========================================================================================== */
/* Storages                                                                                   */
/* ========================================================================================== */

static uint64_t hash_bytes(const uint8_t *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    return h;
}

static int32_t *storage_slot(mf_torch_result *r, const uint8_t *key, size_t n) {
    size_t mask = r->slots_cap - 1, i = (size_t)hash_bytes(key, n) & mask;
    for (;;) {
        int32_t *s = &r->slots[i];
        if (*s < 0) return s;
        const mf_torch_storage *st = (const mf_torch_storage *)r->storages.items + *s;
        if (st->key_len == n && memcmp(st->key, key, n) == 0) return s;
        i = (i + 1) & mask;
    }
}

static int grow_slots(walker *w, uint64_t at) {
    mf_torch_result *r = w->out;
    size_t ncap = r->slots_cap ? r->slots_cap * 2 : 64;
    int32_t *ns = (int32_t *)mf_arena_alloc(w->a, ncap * sizeof *ns, w->err, at);
    if (ns == NULL) return 1;
    for (size_t i = 0; i < ncap; i++) ns[i] = -1;
    r->slots = ns;
    r->slots_cap = ncap;
    const mf_torch_storage *st = (const mf_torch_storage *)r->storages.items;
    for (size_t i = 0; i < r->storages.len; i++) *storage_slot(r, st[i].key, st[i].key_len) = (int32_t)i;
    return 0;
}

static const uint8_t *str_or_bytes(const mf_pv *v, uint32_t *n) {
    if (v == NULL || (v->kind != MF_PV_STR && v->kind != MF_PV_BYTES)) return NULL;
    *n = v->n;
    return v->u.s;
}

/* pid = the PERSID node; sets *index and, for legacy views, *view_offset (elements). */
static int decode_storage(walker *w, const mf_pv *pidnode, int32_t *index, int64_t *view_offset,
                          int64_t *view_numel) {
    const mf_pv *pid = pidnode->u.pid;
    uint64_t at = pidnode->offset;
    *view_offset = 0;
    *view_numel = -1;
    uint32_t want = w->flavor == MF_TORCH_LEGACY ? 6 : 5;
    uint32_t tn;
    const uint8_t *typ = pid != NULL && pid->kind == MF_PV_TUPLE && pid->n >= 1 ? str_or_bytes(pid->u.items[0], &tn) : NULL;
    if (typ == NULL || tn != 7 || memcmp(typ, "storage", 7) != 0 || pid->n != want)
        return mf_fail(w->err, MF_ERR_CORRUPT, at, "persistent id is not a %u-item ('storage', ...) tuple", want);
    const mf_pv *stype = pid->u.items[1];
    uint32_t kn = 0, ln = 0;
    const uint8_t *key = str_or_bytes(pid->u.items[2], &kn);
    const uint8_t *loc = str_or_bytes(pid->u.items[3], &ln);
    int64_t numel;
    if (stype == NULL || stype->kind != MF_PV_GLOBAL || (stype->flags & MF_PVF_COMPUTED) ||
        !is_torch_module(stype->u.g.mod))
        return mf_fail(w->err, MF_ERR_CORRUPT, at, "persistent id names no torch storage class");
    int dtype = mf_torch_storage_dtype(stype->u.g.name->u.s, stype->u.g.name->n);
    if (dtype == 0)
        return mf_fail(w->err, MF_ERR_UNSUPPORTED, at, "unknown storage class torch.%.*s", (int)stype->u.g.name->n,
                       (const char *)stype->u.g.name->u.s);
    if (key == NULL || loc == NULL || !as_int(pid->u.items[4], &numel) || numel < 0)
        return mf_fail(w->err, MF_ERR_CORRUPT, at, "persistent id has a malformed key, location or size");
    if (w->flavor == MF_TORCH_LEGACY) {
        const mf_pv *view = pid->u.items[5];
        if (view != NULL && view->kind != MF_PV_NONE) {
            int64_t off, size;
            if (view->kind != MF_PV_TUPLE || view->n != 3 || !as_int(view->u.items[1], &off) ||
                !as_int(view->u.items[2], &size) || off < 0 || size < 0)
                return mf_fail(w->err, MF_ERR_CORRUPT, at, "persistent id has a malformed storage view");
            *view_offset = off;
            *view_numel = size;
        }
    }
    mf_torch_result *r = w->out;
    if ((r->storages.len + 1) * 2 > r->slots_cap && grow_slots(w, at)) return w->err->code;
    int32_t *slot = storage_slot(r, key, kn);
    if (*slot >= 0) {
        *index = *slot; /* torch keeps the first type and size seen for a key */
        return 0;
    }
    mf_torch_storage *st = (mf_torch_storage *)mf_vec_push(&r->storages, sizeof *st, w->a, w->err, at);
    if (st == NULL) return w->err->code;
    st->key = key;
    st->key_len = kn;
    st->location = loc;
    st->location_len = ln;
    st->dtype = dtype;
    st->numel = (uint64_t)numel;
    st->offset = at;
    *slot = (int32_t)(r->storages.len - 1);
    *index = *slot;
    if (*view_numel >= 0) {
        uint64_t end;
        if (mf_add_u64((uint64_t)*view_offset, (uint64_t)*view_numel, &end) || end > (uint64_t)numel)
            return mf_fail(w->err, MF_ERR_CORRUPT, at, "storage view lies outside its storage");
    }
    return 0;
}

/* ========================================================================================== */
/* Tensors                                                                                    */
/* ========================================================================================== */

static int decode_tensor(walker *w, mf_pv *call, int32_t *index);

static int tensor_geometry(walker *w, const mf_pv *call, mf_torch_tensor *t, const mf_pv *size,
                           const mf_pv *stride) {
    const mf_pv **sz, **st;
    uint32_t nsz, nst;
    if (!as_int_tuple(size, &sz, &nsz)) return fail_args(w, call, "a size that is not a tuple of ints");
    if (!as_int_tuple(stride, &st, &nst)) return fail_args(w, call, "a stride that is not a tuple of ints");
    if (nsz != nst) return fail_args(w, call, "size and stride of different lengths");
    t->ndim = nsz;
    t->shape = (int64_t *)mf_arena_alloc(w->a, (nsz ? nsz : 1) * 2 * sizeof(int64_t), w->err, call->offset);
    if (t->shape == NULL) return w->err->code;
    t->stride = t->shape + (nsz ? nsz : 1);
    uint64_t numel = 1, last = 0;
    for (uint32_t i = 0; i < nsz; i++) {
        int64_t d = sz[i]->u.i, s = st[i]->u.i;
        if (d < 0) return fail_args(w, call, "a negative dimension");
        if (s < 0) return fail_args(w, call, "a negative stride");
        t->shape[i] = d;
        t->stride[i] = s;
        uint64_t span;
        if (mf_mul_u64(numel, (uint64_t)d, &numel)) return fail_args(w, call, "a shape whose element count overflows");
        if (d > 0 && (mf_mul_u64((uint64_t)(d - 1), (uint64_t)s, &span) || mf_add_u64(last, span, &last)))
            return fail_args(w, call, "a stride whose extent overflows");
    }
    t->numel = numel;
    t->contiguous = 1;
    uint64_t expect = 1;
    for (uint32_t i = nsz; i-- > 0;) {
        if (t->shape[i] != 1 && (uint64_t)t->stride[i] != expect) t->contiguous = 0;
        expect *= (uint64_t)t->shape[i]; /* <= numel, no overflow */
    }
    if (numel == 0) t->extent = 0;
    else if (mf_add_u64(last, 1, &t->extent) || mf_add_u64(t->extent, (uint64_t)t->storage_offset, &t->extent))
        return fail_args(w, call, "an extent that overflows");
    return 0;
}

/* _rebuild_tensor(_v2/_v3) and _rebuild_qtensor: storage first, then offset, size, stride. */
static int decode_dense(walker *w, mf_pv *call, int code, mf_torch_tensor *t) {
    const mf_pv *storage = arg(call, 0);
    int64_t off = 0;
    if (storage == NULL || storage->kind != MF_PV_PERSID) return fail_args(w, call, "a storage that is not a persistent id");
    if (!as_int(arg(call, 1), &off) || off < 0) return fail_args(w, call, "a malformed storage offset");
    int64_t view_off, view_numel;
    if (decode_storage(w, storage, &t->storage, &view_off, &view_numel)) return w->err->code;
    const mf_torch_storage *st = (const mf_torch_storage *)w->out->storages.items + t->storage;
    t->dtype = st->dtype;
    if (mf_add_i64(off, view_off, &t->storage_offset)) return fail_args(w, call, "a storage offset that overflows");
    if (tensor_geometry(w, call, t, arg(call, 2), arg(call, 3))) return w->err->code;
    if (view_numel >= 0 && t->extent > (uint64_t)view_off + (uint64_t)view_numel)
        return fail_args(w, call, "a tensor that reaches outside its storage view");
    if (code == FN_TENSOR_V3) {
        const mf_pv *dt = arg(call, 6);
        if (dt == NULL || dt->kind != MF_PV_GLOBAL || (dt->flags & MF_PVF_COMPUTED) || !mf_pv_is_str(dt->u.g.mod, "torch"))
            return fail_args(w, call, "a dtype argument that is not a torch dtype");
        t->dtype = mf_torch_dtype_by_name(dt->u.g.name->u.s, dt->u.g.name->n);
        if (t->dtype == 0)
            return mf_fail(w->err, MF_ERR_UNSUPPORTED, call->offset, "unknown torch dtype torch.%.*s",
                           (int)dt->u.g.name->n, (const char *)dt->u.g.name->u.s);
    }
    if (code != FN_TENSOR) {
        int64_t rg = 0;
        as_int(arg(call, code == FN_QTENSOR ? 5 : 4), &rg);
        t->requires_grad = rg != 0;
    }
    if (code == FN_QTENSOR) {
        const mf_pv *qp = arg(call, 4);
        t->kind = MF_TT_QUANTIZED;
        if (qp == NULL || qp->kind != MF_PV_TUPLE || qp->n < 1 || qp->u.items[0]->kind != MF_PV_GLOBAL)
            return fail_args(w, call, "malformed quantizer parameters");
        const mf_pv *scheme = qp->u.items[0];
        if (fn_is(scheme, "torch", "per_tensor_affine")) {
            t->qscheme = MF_QS_PER_TENSOR_AFFINE;
            const mf_pv *sc = qp->n == 3 ? qp->u.items[1] : NULL;
            if (sc == NULL || (sc->kind != MF_PV_FLOAT && sc->kind != MF_PV_INT) || !as_int(qp->u.items[2], &t->q_zero_point))
                return fail_args(w, call, "malformed per-tensor quantizer parameters");
            t->q_scale = sc->kind == MF_PV_FLOAT ? sc->u.f : (double)sc->u.i;
        } else if (fn_is(scheme, "torch", "per_channel_affine") ||
                   fn_is(scheme, "torch", "per_channel_affine_float_qparams")) {
            t->qscheme = fn_is(scheme, "torch", "per_channel_affine") ? MF_QS_PER_CHANNEL_AFFINE
                                                                      : MF_QS_PER_CHANNEL_AFFINE_FLOAT_QPARAMS;
            if (qp->n != 4 || qp->u.items[1]->kind != MF_PV_CALL || qp->u.items[2]->kind != MF_PV_CALL ||
                !as_int(qp->u.items[3], &t->q_axis))
                return fail_args(w, call, "malformed per-channel quantizer parameters");
            if (t->q_axis < 0 || (uint64_t)t->q_axis >= t->ndim)
                return fail_args(w, call, "a per-channel axis outside the tensor's dimensions");
            /* t may move when the nested tensors are appended: decode into locals first */
            int32_t sidx, zidx;
            if (decode_tensor(w, qp->u.items[1], &sidx) || decode_tensor(w, qp->u.items[2], &zidx))
                return w->err->code;
            t->q_scales = sidx;
            t->q_zero_points = zidx;
        } else {
            return fail_args(w, call, "an unknown quantization scheme");
        }
    }
    return 0;
}

/* call is a torch rebuild call (is_rebuild(callee(call))); *index = tensor index. */
static int decode_tensor(walker *w, mf_pv *call, int32_t *index) {
    if (call->tag >= 0) {
        *index = call->tag;
        return 0;
    }
    const mf_pv *fn = callee(call);
    int code = fn_code(fn);
    if (call->kind != MF_PV_CALL || !is_rebuild(fn)) return fail_args(w, call, "a tensor argument that is not a tensor");
    if (code == FN_PARAMETER || code == FN_PARAMETER_STATE || code == FN_DEVICE_FROM_CPU) {
        mf_pv *data = (mf_pv *)arg(call, 0);
        if (data == NULL || data->kind != MF_PV_CALL) return fail_args(w, call, "data that is not a tensor");
        int32_t inner;
        if (decode_tensor(w, data, &inner)) return w->err->code;
        /* a parameter is its own record: the same data may also appear as a plain tensor */
        mf_torch_tensor *t = (mf_torch_tensor *)mf_vec_push(&w->out->tensors, sizeof *t, w->a, w->err, call->offset);
        if (t == NULL) return w->err->code;
        *t = ((mf_torch_tensor *)w->out->tensors.items)[inner];
        t->offset = call->offset;
        if (code == FN_DEVICE_FROM_CPU) {
            t->device = arg(call, 2);
            int64_t rg = 0;
            as_int(arg(call, 3), &rg);
            t->requires_grad = rg != 0;
        } else {
            int64_t rg = 0;
            as_int(arg(call, 1), &rg);
            t->requires_grad = rg != 0;
            t->is_parameter = 1;
        }
        *index = call->tag = (int32_t)(w->out->tensors.len - 1);
        return 0;
    }
    if (code == FN_FROM_TYPE_V2) {
        /* (func, type, args, state): a tensor subclass around a plain rebuild */
        const mf_pv *inner_fn = arg(call, 0), *inner_args = arg(call, 2);
        if (!is_rebuild(inner_fn) || inner_args == NULL || inner_args->kind != MF_PV_TUPLE)
            return fail_args(w, call, "a subclass rebuild that is not a tensor rebuild");
        mf_pv *shim = (mf_pv *)mf_arena_calloc(w->a, 1, sizeof *shim, w->err, call->offset);
        if (shim == NULL) return w->err->code;
        shim->kind = MF_PV_CALL;
        shim->op = call->op;
        shim->offset = call->offset;
        shim->tag = -1;
        shim->u.call.fn = (mf_pv *)inner_fn;
        shim->u.call.args = (mf_pv *)inner_args;
        int32_t inner;
        if (decode_tensor(w, shim, &inner)) return w->err->code;
        ((mf_torch_tensor *)w->out->tensors.items)[inner].subclass = arg(call, 1);
        *index = call->tag = inner;
        return 0;
    }
    mf_torch_tensor tmp;
    memset(&tmp, 0, sizeof tmp);
    tmp.storage = -1;
    tmp.q_scales = tmp.q_zero_points = -1;
    tmp.file_offset = UINT64_MAX;
    tmp.offset = call->offset;
    if (code == FN_META) {
        const mf_pv *dt = arg(call, 0);
        tmp.kind = MF_TT_META;
        if (dt == NULL || dt->kind != MF_PV_GLOBAL || (dt->flags & MF_PVF_COMPUTED) ||
            (tmp.dtype = mf_torch_dtype_by_name(dt->u.g.name->u.s, dt->u.g.name->n)) == 0)
            return fail_args(w, call, "an unknown dtype");
        if (tensor_geometry(w, call, &tmp, arg(call, 1), arg(call, 2))) return w->err->code;
        int64_t rg = 0;
        as_int(arg(call, 3), &rg);
        tmp.requires_grad = rg != 0;
    } else if (decode_dense(w, call, code, &tmp)) {
        return w->err->code;
    }
    mf_torch_tensor *t = (mf_torch_tensor *)mf_vec_push(&w->out->tensors, sizeof *t, w->a, w->err, call->offset);
    if (t == NULL) return w->err->code;
    *t = tmp;
    *index = call->tag = (int32_t)(w->out->tensors.len - 1);
    return 0;
}

/* ========================================================================================== */
/* Structure                                                                                  */
/* ========================================================================================== */

static int path_reserve(walker *w, size_t extra, uint64_t at) {
    if (w->path_len + extra + 1 <= w->path_cap) return 0;
    size_t ncap = w->path_cap ? w->path_cap : 256;
    while (ncap < w->path_len + extra + 1) ncap *= 2;
    char *np = (char *)mf_arena_alloc(w->a, ncap, w->err, at);
    if (np == NULL) return 1;
    if (w->path_len) memcpy(np, w->path, w->path_len);
    w->path = np;
    w->path_cap = ncap;
    return 0;
}

/* Append ".component" (no dot at the root). Returns the previous length to restore. */
static int path_push(walker *w, const char *s, size_t n, int depth, uint64_t at) {
    if (path_reserve(w, n + 1, at)) return 1;
    if (depth > 1) w->path[w->path_len++] = '.';
    memcpy(w->path + w->path_len, s, n);
    w->path_len += n;
    return 0;
}

static int path_push_key(walker *w, const mf_pv *key, int depth) {
    char buf[64];
    const char *s = buf;
    size_t n;
    switch (key->kind) {
    case MF_PV_STR:
    case MF_PV_BYTES:
        s = (const char *)key->u.s;
        n = key->n;
        break;
    case MF_PV_INT:
        n = (size_t)snprintf(buf, sizeof buf, "%lld", (long long)key->u.i);
        break;
    case MF_PV_BOOL:
        n = (size_t)snprintf(buf, sizeof buf, "%s", key->u.i ? "True" : "False");
        break;
    case MF_PV_NONE:
        n = (size_t)snprintf(buf, sizeof buf, "None");
        break;
    case MF_PV_FLOAT: {
        int prec = 15;
        do n = (size_t)snprintf(buf, sizeof buf, "%.*g", prec, key->u.f);
        while (prec++ < 17 && strtod(buf, NULL) != key->u.f);
        break;
    }
    case MF_PV_BIGINT:
        if (key->flags & MF_PVF_DECIMAL) {
            s = (const char *)key->u.s;
            n = key->n;
            break;
        }
        /* fall through */
    default:
        n = (size_t)snprintf(buf, sizeof buf, "<key@%llu>", (unsigned long long)key->offset);
    }
    return path_push(w, s, n, depth, key->offset);
}

static int path_push_index(walker *w, uint64_t i, int depth, uint64_t at) {
    char buf[24];
    size_t n = (size_t)snprintf(buf, sizeof buf, "%llu", (unsigned long long)i);
    return path_push(w, buf, n, depth, at);
}

static int emit(walker *w, int kind, int depth, const mf_pv *key, const mf_pv *value, const mf_pv *cls,
                int32_t tensor) {
    mf_torch_result *r = w->out;
    uint64_t at = value ? value->offset : 0;
    if (r->entries.len >= w->max_entries)
        return mf_fail(w->err, MF_ERR_LIMIT, at,
                       "checkpoint structure expands to more than %llu entries (shared references)",
                       (unsigned long long)w->max_entries);
    mf_torch_entry *e = (mf_torch_entry *)mf_vec_push(&r->entries, sizeof *e, w->a, w->err, at);
    if (e == NULL) return 1;
    e->path = mf_arena_strdup(w->a, w->path, w->path_len, w->err, at);
    if (e->path == NULL) return 1;
    e->path_len = (uint32_t)w->path_len;
    e->depth = (uint32_t)depth;
    e->kind = (uint32_t)kind;
    e->tensor = tensor;
    e->key = key;
    e->value = value;
    e->cls = cls;
    return 0;
}

static int walk(walker *w, mf_pv *v, int depth, const mf_pv *key);

/* Shared-once mode: when a node whose items are about to be walked (the value itself, or the
 * state, set items or arguments of an object) is memo-shared and was walked before, sets
 * *first to the entry that walked it and returns 1; otherwise records `entry` for each shared
 * one and returns 0. -1 on allocation failure. */
static int seen_before(walker *w, const mf_pv *const *nodes, int n, int32_t entry, int32_t *first) {
    if (!w->shared_once) return 0;
    for (int i = 0; i < n; i++) {
        if (nodes[i] == NULL || !(nodes[i]->flags & MF_PVF_SHARED)) continue;
        uint64_t *slot = mf_pv_map_find(&w->seen, nodes[i]);
        if (slot != NULL) {
            *first = (int32_t)*slot;
            return 1;
        }
    }
    for (int i = 0; i < n; i++) {
        int created;
        if (nodes[i] == NULL || !(nodes[i]->flags & MF_PVF_SHARED)) continue;
        uint64_t *slot = mf_pv_map_slot(&w->seen, nodes[i], w->tmp, w->err, nodes[i]->offset, &created);
        if (slot == NULL) return -1;
        *slot = (uint64_t)entry;
    }
    return 0;
}

static int walk_child(walker *w, mf_pv *child, int depth, const mf_pv *key, uint64_t index) {
    size_t saved = w->path_len;
    if (key != NULL ? path_push_key(w, key, depth) : path_push_index(w, index, depth, child->offset)) return 1;
    int rc = walk(w, child, depth, key);
    w->path_len = saved;
    return rc;
}

static int walk_dict_items(walker *w, const mf_pv *d, int depth) {
    for (uint32_t i = 0; i < d->n; i++)
        if (walk_child(w, d->u.items[2 * i + 1], depth, d->u.items[2 * i], 0)) return 1;
    return 0;
}

static int walk_seq_items(walker *w, const mf_pv *s, int depth) {
    for (uint32_t i = 0; i < s->n; i++)
        if (walk_child(w, s->u.items[i], depth, NULL, i)) return 1;
    return 0;
}

/* A state dict of a pickled nn.Module: {'_parameters': {...}, '_buffers': {...}, '_modules': {...}} */
static const mf_pv *dict_get(const mf_pv *d, const char *key) {
    if (d == NULL || d->kind != MF_PV_DICT) return NULL;
    for (uint32_t i = d->n; i-- > 0;)
        if (mf_pv_is_str(d->u.items[2 * i], key)) return d->u.items[2 * i + 1];
    return NULL;
}

static const mf_pv *as_dict(const mf_pv *v) {
    /* OrderedDict() is a call whose items arrive through SETITEMS */
    if (v != NULL && v->kind == MF_PV_CALL && fn_code(callee(v)) == FN_ORDERED_DICT) return v->extra;
    return v != NULL && v->kind == MF_PV_DICT ? v : NULL;
}

static int walk_module(walker *w, const mf_pv *state, int depth) {
    static const char *const groups[] = {"_parameters", "_buffers", "_modules"};
    for (int g = 0; g < 3; g++) {
        const mf_pv *d = as_dict(dict_get(state, groups[g]));
        if (d == NULL) continue;
        for (uint32_t i = 0; i < d->n; i++) {
            mf_pv *child = d->u.items[2 * i + 1];
            if (child->kind == MF_PV_NONE) continue; /* unset parameter or buffer */
            if (walk_child(w, child, depth, d->u.items[2 * i], 0)) return 1;
        }
    }
    return 0;
}

/* v: any node; emits its entry and its children's */
static int walk(walker *w, mf_pv *v, int depth, const mf_pv *key) {
    if (depth > MF_TORCH_MAX_DEPTH)
        return mf_fail(w->err, MF_ERR_LIMIT, v->offset, "checkpoint nested deeper than %d levels", MF_TORCH_MAX_DEPTH);
    switch (v->kind) {
    case MF_PV_NONE: case MF_PV_BOOL: case MF_PV_INT: case MF_PV_BIGINT: case MF_PV_FLOAT:
    case MF_PV_STR: case MF_PV_BYTES: case MF_PV_BYTEARRAY:
        return emit(w, MF_TE_SCALAR, depth, key, v, NULL, -1);
    case MF_PV_GLOBAL:
    case MF_PV_EXT:
    case MF_PV_BUFFER:
        return emit(w, MF_TE_GLOBAL, depth, key, v, NULL, -1);
    case MF_PV_PERSID: {
        int32_t idx;
        int64_t vo, vn;
        if (decode_storage(w, v, &idx, &vo, &vn)) return 1;
        return emit(w, MF_TE_STORAGE, depth, key, v, NULL, idx);
    }
    default:
        break;
    }
    for (int i = 0; i < depth; i++)
        if (w->anc[i] == v) return emit(w, MF_TE_REF, depth, key, v, NULL, w->anc_entry[i]);
    if (w->out->entries.len >= (size_t)INT32_MAX)
        return mf_fail(w->err, MF_ERR_LIMIT, v->offset, "checkpoint structure has too many entries");
    int32_t here = (int32_t)w->out->entries.len, first;
    w->anc[depth] = v;
    w->anc_entry[depth] = here;
    int depth1 = depth + 1;
    const mf_pv *fn = v->kind == MF_PV_CALL ? callee(v) : NULL;
    if (v->kind != MF_PV_CALL || !is_rebuild(fn)) {
        /* what this entry's children come from: the node, and an object's state, set items, arguments */
        const mf_pv *body[4] = {v, NULL, NULL, NULL};
        if (v->kind == MF_PV_CALL) {
            body[1] = v->state;
            body[2] = v->extra;
            if ((v->state == NULL && v->extra == NULL) || fn_code(fn) == FN_ORDERED_DICT)
                body[3] = v->u.call.args; /* walked only then */
        }
        int seen = seen_before(w, body, 4, here, &first);
        if (seen < 0) return 1;
        if (seen) return emit(w, MF_TE_REF, depth, key, v, NULL, first);
    }
    switch (v->kind) {
    case MF_PV_DICT:
        return emit(w, MF_TE_DICT, depth, key, v, NULL, -1) || walk_dict_items(w, v, depth1);
    case MF_PV_LIST:
        return emit(w, MF_TE_LIST, depth, key, v, NULL, -1) || walk_seq_items(w, v, depth1);
    case MF_PV_TUPLE:
        return emit(w, MF_TE_TUPLE, depth, key, v, NULL, -1) || walk_seq_items(w, v, depth1);
    case MF_PV_SET:
    case MF_PV_FROZENSET:
        return emit(w, MF_TE_SET, depth, key, v, NULL, -1) || walk_seq_items(w, v, depth1);
    case MF_PV_CALL:
        break;
    default:
        return emit(w, MF_TE_GLOBAL, depth, key, v, NULL, -1);
    }
    if (is_rebuild(fn)) {
        int32_t idx;
        if (decode_tensor(w, v, &idx)) return 1;
        return emit(w, MF_TE_TENSOR, depth, key, v, NULL, idx);
    }
    if (fn_code(fn) == FN_ORDERED_DICT) {
        if (emit(w, MF_TE_DICT, depth, key, v, NULL, -1)) return 1;
        /* OrderedDict([(k, v), ...]) as protocols 0/1 write it, then SETITEMS */
        const mf_pv *init = arg(v, 0);
        if (init != NULL && (init->kind == MF_PV_LIST || init->kind == MF_PV_TUPLE)) {
            for (uint32_t i = 0; i < init->n; i++) {
                const mf_pv *pair = init->u.items[i];
                if ((pair->kind == MF_PV_TUPLE || pair->kind == MF_PV_LIST) && pair->n == 2 &&
                    walk_child(w, pair->u.items[1], depth1, pair->u.items[0], 0))
                    return 1;
            }
        }
        return v->extra != NULL && v->extra->kind == MF_PV_DICT ? walk_dict_items(w, v->extra, depth1) : 0;
    }
    /* an opaque object: a pickled nn.Module is named like its state_dict */
    const mf_pv *state = v->state;
    if (state != NULL && state->kind == MF_PV_TUPLE && state->n == 2) state = state->u.items[0]; /* (dict, slots) */
    if (state != NULL && state->kind == MF_PV_DICT && dict_get(state, "_parameters") != NULL &&
        dict_get(state, "_modules") != NULL)
        return emit(w, MF_TE_MODULE, depth, key, v, fn, -1) || walk_module(w, state, depth1);
    if (emit(w, MF_TE_OBJECT, depth, key, v, fn, -1)) return 1;
    if (state != NULL && state->kind == MF_PV_DICT && walk_dict_items(w, state, depth1)) return 1;
    if (v->extra != NULL) {
        if (v->extra->kind == MF_PV_DICT ? walk_dict_items(w, v->extra, depth1) : walk_seq_items(w, v->extra, depth1))
            return 1;
    }
    if (state == NULL && v->extra == NULL && v->u.call.args != NULL && v->u.call.args->kind == MF_PV_TUPLE)
        return walk_seq_items(w, v->u.call.args, depth1);
    return 0;
}

int mf_torch_walk(const mf_pv *root, int flavor, uint64_t input_len, mf_arena *a, mf_torch_result *out,
                  mf_error *err) {
    return mf_torch_walk_ex(root, flavor, input_len, 0, a, out, err);
}

int mf_torch_walk_ex(const mf_pv *root, int flavor, uint64_t input_len, int is_tree, mf_arena *a,
                     mf_torch_result *out, mf_error *err) {
    walker w;
    memset(&w, 0, sizeof w);
    w.a = a;
    w.err = err;
    w.out = out;
    w.flavor = flavor;
    w.max_entries = MF_TORCH_MAX_ENTRIES(input_len);
    if (path_reserve(&w, 0, root->offset)) return err->code;
    /* the expansion count and the map of shared nodes live in their own arena: O(graph) */
    mf_arena tmp;
    mf_arena_init(&tmp, mf_arena_cap_for(input_len, 128, (uint64_t)16 << 20));
    w.tmp = &tmp;
    mf_pkl_expansion ex;
    memset(&ex, 0, sizeof ex);
    int rc = is_tree ? MF_OK : mf_pkl_expansion_of(root, w.max_entries, &tmp, err, &ex);
    if (rc == MF_OK) {
        w.shared_once = ex.tree > w.max_entries || ex.cyclic;
        rc = walk(&w, (mf_pv *)root, 0, NULL) ? err->code : MF_OK;
    }
    mf_arena_free(&tmp);
    return rc;
}

/* ========================================================================================== */
/* Legacy (pre-1.6) files                                                                     */
/* ========================================================================================== */

/* 0x1950A86A20F9469CFC6C, little-endian */
static const uint8_t legacy_magic[10] = {0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19};

static int is_legacy_magic(const mf_pv *v) {
    if (v->kind == MF_PV_BIGINT && !(v->flags & MF_PVF_DECIMAL))
        return v->n == 10 && memcmp(v->u.s, legacy_magic, 10) == 0;
    if (v->kind == MF_PV_BIGINT) {
        const char *dec = "119547037146038801333356";
        size_t n = v->n;
        const uint8_t *s = v->u.s;
        if (n > 0 && s[n - 1] == 'L') n--;
        return n == strlen(dec) && memcmp(s, dec, n) == 0;
    }
    return 0;
}

int mf_torch_legacy(mf_pkl *p, const uint8_t *buf, size_t len, mf_pv **main, mf_torch_result *out,
                    uint64_t **storage_data, mf_error *err) {
    size_t pos = 0, used;
    mf_pv *v;
    if (mf_pkl_load(p, buf, len, 0, &v, &used)) return err->code;
    if (!is_legacy_magic(v)) return mf_fail(err, MF_ERR_UNSUPPORTED, 0, "not a legacy torch file: bad magic number");
    pos += used;
    if (mf_pkl_load(p, buf + pos, len - pos, pos, &v, &used)) return err->code;
    if (v->kind != MF_PV_INT || v->u.i != 1001)
        return mf_fail(err, MF_ERR_UNSUPPORTED, pos, "legacy torch file with protocol version other than 1001");
    pos += used;
    if (mf_pkl_load(p, buf + pos, len - pos, pos, &v, &used)) return err->code; /* sys_info */
    pos += used;
    if (mf_pkl_load(p, buf + pos, len - pos, pos, main, &used)) return err->code;
    pos += used;
    if (mf_torch_walk_ex(*main, MF_TORCH_LEGACY, used, p->shared_refs == 0, p->arena, out, err)) return err->code;
    uint64_t keys_at = pos;
    if (mf_pkl_load(p, buf + pos, len - pos, pos, &v, &used)) return err->code;
    pos += used;
    if (v->kind != MF_PV_LIST) return mf_fail(err, MF_ERR_CORRUPT, keys_at, "legacy torch storage key list is not a list");

    size_t ns = out->storages.len;
    uint64_t *data = (uint64_t *)mf_arena_alloc(p->arena, (ns ? ns : 1) * sizeof *data, err, keys_at);
    if (data == NULL) return err->code;
    for (size_t i = 0; i < ns; i++) data[i] = UINT64_MAX;
    mf_cursor c;
    mf_cursor_init(&c, buf, len, 0, err);
    c.pos = buf + pos;
    for (uint32_t i = 0; i < v->n; i++) {
        const mf_pv *k = v->u.items[i];
        uint32_t kn;
        const uint8_t *ks = str_or_bytes(k, &kn);
        if (ks == NULL) return mf_fail(err, MF_ERR_CORRUPT, k->offset, "legacy torch storage key is not a string");
        int32_t idx = out->slots_cap ? *storage_slot(out, ks, kn) : -1;
        if (idx < 0)
            return mf_fail(err, MF_ERR_CORRUPT, k->offset, "legacy torch storage key '%.*s' is not used by any tensor",
                           (int)kn, (const char *)ks);
        mf_torch_storage *st = (mf_torch_storage *)out->storages.items + idx;
        uint64_t at = mf_tell(&c), numel, nbytes;
        if (mf_u64le(&c, &numel, "legacy torch storage size")) {
            if (err->code != MF_ERR_NEED) return err->code;
            /* a sparse window: go on with the pickle's count, so that one pass names every
             * storage's count (they are checked on the next pass) */
            numel = st->numel;
            if (mf_skip(&c, 8, "legacy torch storage size")) return err->code;
        }
        if (numel != st->numel)
            return mf_fail(err, MF_ERR_CORRUPT, at, "legacy torch storage '%.*s' holds %llu elements, the pickle says %llu",
                           (int)kn, (const char *)ks, (unsigned long long)numel, (unsigned long long)st->numel);
        if (mf_mul_u64(numel, mf_dtype_bits(st->dtype) / 8, &nbytes) || nbytes > mf_remaining(&c))
            return mf_fail(err, MF_ERR_TRUNCATED, at, "legacy torch storage '%.*s' runs past the end of the file",
                           (int)kn, (const char *)ks);
        if (data[idx] != UINT64_MAX)
            return mf_fail(err, MF_ERR_CORRUPT, at, "legacy torch storage '%.*s' stored twice", (int)kn, (const char *)ks);
        data[idx] = mf_tell(&c);
        c.pos += nbytes;
    }
    if (err->code != MF_OK) return err->code; /* MF_ERR_NEED: counts not fetched yet */
    *storage_data = data;
    return MF_OK;
}

/* ========================================================================================== */
/* Storages -> file bytes                                                                     */
/* ========================================================================================== */

int mf_torch_resolve(mf_torch_result *r, const uint64_t *data_offset, const uint64_t *avail, mf_error *err) {
    const mf_torch_storage *st = (const mf_torch_storage *)r->storages.items;
    mf_torch_tensor *ts = (mf_torch_tensor *)r->tensors.items;
    for (size_t i = 0; i < r->storages.len; i++) {
        uint64_t need;
        if (mf_mul_u64(st[i].numel, mf_dtype_bits(st[i].dtype) / 8, &need))
            return mf_fail(err, MF_ERR_CORRUPT, st[i].offset, "storage '%.*s' size overflows", (int)st[i].key_len,
                           (const char *)st[i].key);
        if (avail[i] != UINT64_MAX && need > avail[i])
            return mf_fail(err, MF_ERR_CORRUPT, st[i].offset,
                           "storage '%.*s' declares %llu elements of %s (%llu bytes) but the file holds %llu bytes for it",
                           (int)st[i].key_len, (const char *)st[i].key, (unsigned long long)st[i].numel,
                           mf_dtype_name(st[i].dtype), (unsigned long long)need, (unsigned long long)avail[i]);
    }
    for (size_t i = 0; i < r->tensors.len; i++) {
        mf_torch_tensor *t = &ts[i];
        t->file_offset = UINT64_MAX;
        if (t->storage < 0) continue;
        const mf_torch_storage *s = &st[t->storage];
        uint64_t bits = mf_dtype_bits(t->dtype), have, reach, off;
        if (mf_mul_u64(s->numel, mf_dtype_bits(s->dtype), &have) ||
            mf_mul_u64(t->extent, bits, &reach) || reach > have)
            return mf_fail(err, MF_ERR_CORRUPT, t->offset,
                           "tensor reaches element %llu of storage '%.*s', which holds %llu elements of %s",
                           (unsigned long long)t->extent, (int)s->key_len, (const char *)s->key,
                           (unsigned long long)(bits ? have / bits : 0), mf_dtype_name(t->dtype));
        if (data_offset[t->storage] == UINT64_MAX) continue;
        if (mf_mul_u64((uint64_t)t->storage_offset, bits / 8, &off) ||
            mf_add_u64(off, data_offset[t->storage], &t->file_offset))
            return mf_fail(err, MF_ERR_CORRUPT, t->offset, "tensor offset overflows");
    }
    return MF_OK;
}

typedef struct name_slot {
    const uint8_t *name;
    uint32_t len;
    int32_t index;
} name_slot;

int mf_torch_zip_storages(const mf_torch_result *r, const mf_zip_entry *entries, size_t n_entries,
                          const uint8_t *prefix, size_t prefix_len, mf_arena *a, uint64_t *data_offset,
                          uint64_t *avail, int32_t *member, mf_error *err) {
    /* index the members under the record folder by the rest of their name (the storage key) */
    size_t cap = 16;
    while (cap < n_entries * 2 + 2) cap *= 2;
    name_slot *slots = (name_slot *)mf_arena_calloc(a, cap, sizeof *slots, err, 0);
    if (slots == NULL) return err->code;
    size_t head = prefix_len;
    for (size_t i = 0; i < n_entries; i++) {
        const mf_zip_entry *e = &entries[i];
        if (e->name_len <= head || memcmp(e->name, prefix, prefix_len) != 0) continue;
        const uint8_t *k = e->name + head;
        uint32_t kn = e->name_len - (uint32_t)head;
        size_t j = (size_t)hash_bytes(k, kn) & (cap - 1);
        while (slots[j].name != NULL && !(slots[j].len == kn && memcmp(slots[j].name, k, kn) == 0))
            j = (j + 1) & (cap - 1);
        slots[j].name = k; /* a repeated name keeps its last entry, as zipfile does */
        slots[j].len = kn;
        slots[j].index = (int32_t)i;
    }
    const mf_torch_storage *st = (const mf_torch_storage *)r->storages.items;
    for (size_t i = 0; i < r->storages.len; i++) {
        size_t j = (size_t)hash_bytes(st[i].key, st[i].key_len) & (cap - 1);
        while (slots[j].name != NULL &&
               !(slots[j].len == st[i].key_len && memcmp(slots[j].name, st[i].key, st[i].key_len) == 0))
            j = (j + 1) & (cap - 1);
        if (slots[j].name == NULL)
            return mf_fail(err, MF_ERR_CORRUPT, st[i].offset, "storage record '%.*s%.*s' is missing from the archive",
                           (int)prefix_len, (const char *)prefix, (int)st[i].key_len, (const char *)st[i].key);
        const mf_zip_entry *e = &entries[slots[j].index];
        if (e->flags & 0x41) /* bit 0 encrypted, bit 6 strong encryption: torch.load refuses both */
            return mf_fail(err, MF_ERR_UNSUPPORTED, e->local_offset, "storage record '%.*s' is an encrypted zip member",
                           (int)e->name_len, (const char *)e->name);
        member[i] = slots[j].index;
        avail[i] = e->uncomp_size;
        data_offset[i] = e->method == 0 && e->data_offset != UINT64_MAX ? e->data_offset : UINT64_MAX;
        if (e->method == 0 && e->comp_size != e->uncomp_size)
            return mf_fail(err, MF_ERR_CORRUPT, e->local_offset, "stored zip member '%.*s' has two different sizes",
                           (int)e->name_len, (const char *)e->name);
    }
    return MF_OK;
}
