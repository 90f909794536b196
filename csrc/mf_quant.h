/*
 * mf_quant.h - weight-only quantization kernels (int8 per row, int4 per group, fp8 e4m3 per
 * tensor), their inverses, and the magnitude histograms behind L1 pruning.
 *
 * Inputs are float16, bfloat16, float32 or float64 arrays (mf_dtype codes), C-contiguous,
 * seen as `rows x cols` (the first dimension is the output channel, the rest flattened).
 * Each kernel makes one pass over its input: a row is widened to float32 into a per-thread
 * scratch buffer (it stays in cache), then scaled, rounded, packed and measured. Rows are
 * split across `threads` POSIX threads (small tensors run on the calling thread).
 *
 * Rounding is round-half-to-even in float32, as numpy's rint: the numpy implementation in
 * mfparse/quantize.py (reference_*) computes bit-identical outputs, which the tests check.
 *
 * Pruning: an element whose magnitude key (the float32 bits of |x|, which order like the
 * magnitudes) is below `prune_key` (or equal to it, with prune_le) is taken as zero before
 * quantizing. prune_key = 0, prune_le = 0 prunes nothing.
 *
 * Errors (sizes that overflow, a bad dtype, a group of 0) are recorded in `err`; no kernel
 * prints, aborts or allocates outside its arena.
 */
#ifndef MF_QUANT_H
#define MF_QUANT_H

#include <stdint.h>

#include "mf_core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What a quantization pass measured, against the original (unpruned) values. */
typedef struct mf_qstats {
    double sum_sq;       /* sum of x^2 (finite x) */
    double err_sq;       /* sum of (x - dequantized)^2 */
    double max_err;      /* max |x - dequantized| */
    uint64_t zeros;      /* elements that are zero after pruning */
    uint64_t nonfinite;  /* NaN or infinite inputs (the result is then meaningless) */
} mf_qstats;

#define MF_QUANT_MAX_THREADS 64

/* int8 symmetric per row: scale[r] = max|x[r,:]| / 127, q = clamp(rint(x * 127/max), -127, 127).
 * q: rows*cols bytes; scale: rows floats. */
int mf_quant_int8(const void *src, int dtype, uint64_t rows, uint64_t cols, uint32_t prune_key, int prune_le,
                  int8_t *q, float *scale, mf_qstats *st, int threads, mf_error *err);

/* int4 asymmetric per group of `group` elements of a row (the last group of a row may be
 * shorter): lo = min(0, min x), hi = max(0, max x), scale = (hi - lo) / 15,
 * zp = clamp(rint(-lo / scale), 0, 15), q = clamp(rint(x / scale) + zp, 0, 15).
 * q: rows * ceil(cols/2) bytes, element 2k in the low nibble of byte k of its row;
 * scale, zp: rows * ceil(cols/group) entries. */
int mf_quant_int4(const void *src, int dtype, uint64_t rows, uint64_t cols, uint64_t group, uint32_t prune_key,
                  int prune_le, uint8_t *q, float *scale, uint8_t *zp, mf_qstats *st, int threads, mf_error *err);

/* max |x| over n elements (pruned ones count as zero), NaN and infinities counted apart. */
int mf_absmax(const void *src, int dtype, uint64_t n, uint32_t prune_key, int prune_le, float *amax,
              uint64_t *nonfinite, int threads, mf_error *err);

/* float8 e4m3fn with one scale: q = e4m3(x / scale), saturating at +-448. */
int mf_quant_fp8(const void *src, int dtype, uint64_t n, float scale, uint32_t prune_key, int prune_le,
                 uint8_t *q, mf_qstats *st, int threads, mf_error *err);

/* Histogram of magnitude keys. level 0: hist[key >> 16] over all elements (65536 bins);
 * level 1: hist[key & 0xffff] over the elements with key >> 16 == hi. hist is added to. */
int mf_abs_hist(const void *src, int dtype, uint64_t n, int level, uint32_t hi, uint64_t *hist, int threads,
                mf_error *err);

/* Inverses, to float32. */
int mf_dequant_int8(const int8_t *q, const float *scale, uint64_t rows, uint64_t cols, float *out, int threads,
                    mf_error *err);
int mf_dequant_int4(const uint8_t *q, const float *scale, const uint8_t *zp, uint64_t rows, uint64_t cols,
                    uint64_t group, float *out, int threads, mf_error *err);
int mf_dequant_fp8(const uint8_t *q, float scale, uint64_t n, float *out, int threads, mf_error *err);

/* Which row kernels run: "avx2" (x86-64 with AVX2 and F16C, picked at run time) or "c".
 * mf_quant_set_isa(1) forces the portable C kernels (tests compare both); 0 picks by CPU. */
const char *mf_quant_isa(void);
void mf_quant_set_isa(int choice);

/* Scalar conversions (exposed for tests). */
uint8_t mf_f32_to_e4m3(float x);
float mf_e4m3_to_f32(uint8_t b);
float mf_f16_to_f32(uint16_t h);

#ifdef __cplusplus
}
#endif
#endif /* MF_QUANT_H */
