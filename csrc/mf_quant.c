/*
 * mf_quant.c - weight-only quantization kernels; see mf_quant.h for the schemes.
 *
 * Shape of every kernel: a driver checks sizes (checked arithmetic), takes per-thread scratch
 * from one arena, splits the rows (or elements) over threads and merges per-thread results.
 * A worker widens one row to float32 in its scratch buffer, then runs small fixed-width loops
 * over it (LANES accumulators, so the compiler can vectorise reductions without reordering
 * float additions across the row in a way that depends on the thread count).
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif

#include "mf_quant.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

#define LANES 8
/* below this many elements a kernel runs on the calling thread only */
#define MF_QUANT_MIN_PER_THREAD ((uint64_t)1 << 18)


/* ========================================================================================== */
/* Scalar conversions                                                                         */
/* ========================================================================================== */

static inline uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* round half to even for |v| < 2^22 in the default rounding mode (numpy's rint) */
static inline float rne(float v) { return (v + 12582912.0f) - 12582912.0f; }

float mf_f16_to_f32(uint16_t h) {
    uint32_t em = ((uint32_t)h & 0x7fffu) << 13;
    uint32_t b = f2u(u2f(em) * 0x1p112f); /* exact: rebias by a power of two, subnormals too */
    if ((h & 0x7c00u) == 0x7c00u) b = em | 0x7f800000u; /* inf, nan */
    return u2f(b | (((uint32_t)h & 0x8000u) << 16));
}

uint8_t mf_f32_to_e4m3(float x) {
    uint32_t b = f2u(x);
    uint8_t sign = (uint8_t)((b >> 24) & 0x80u);
    uint32_t a = b & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7f;        /* NaN */
    if (a >= 0x43e00000u) return sign | 0x7e;       /* >= 448: saturate */
    if (a < 0x3c800000u) {                          /* below 2^-6: subnormal steps of 2^-9 */
        float m = rne(u2f(a) * 512.0f);             /* 0..8; 8 is the smallest normal, 0x08 */
        return sign | (uint8_t)m;
    }
    uint32_t r = a + 0x7ffffu + ((a >> 20) & 1u); /* round the mantissa to 3 bits, to even */
    uint32_t e = (r >> 20) - ((127u - 7u) << 3);
    if (e > 0x7eu) e = 0x7eu;
    return sign | (uint8_t)e;
}

float mf_e4m3_to_f32(uint8_t b) {
    unsigned e = (b >> 3) & 15u, m = b & 7u;
    float v;
    if (e == 15 && m == 7) return NAN;
    if (e == 0)
        v = (float)m * (1.0f / 512.0f);
    else
        v = ldexpf(1.0f + (float)m / 8.0f, (int)e - 7);
    return (b & 0x80) ? -v : v;
}

/* ========================================================================================== */
/* Row kernels, portable C                                                                    */
/* ========================================================================================== */

/* Per-row measurements, kept in LANES float lanes and flushed to double stats per row. */
typedef struct {
    float sum_sq[LANES];
    float err_sq[LANES];
    float max_err[LANES];
    uint32_t zeros[LANES];
} row_acc;

#define FLT_BIG 3.402823466e38f

/* x with pruning applied: zero when its magnitude key is below pk (or equal, with le) */
static inline float pruned(float x, uint32_t pk, uint32_t le) {
    uint32_t k = f2u(x) & 0x7fffffffu;
    uint32_t kill = (k < pk) | (le & (k == pk));
    return kill ? 0.0f : x;
}

static inline void measure(row_acc *acc, int l, float v, float p, float dq) {
    float e = v - dq;
    float ae = fabsf(e);
    acc->sum_sq[l] += v * v;
    acc->err_sq[l] += e * e;
    acc->max_err[l] = ae > acc->max_err[l] ? ae : acc->max_err[l];
    acc->zeros[l] += (p == 0.0f);
}

static void widen_f16_c(const uint16_t *s, float *d, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) d[i] = mf_f16_to_f32(s[i]);
}

static void widen_bf16_c(const uint16_t *s, float *d, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) d[i] = u2f((uint32_t)s[i] << 16);
}

/* max |x| of the pruned row; NaN and infinities count as 0 and are counted apart */
static float absmax_c(const float *x, uint64_t n, uint32_t pk, uint32_t le, uint32_t *nonfinite) {
    float m = 0.0f;
    uint32_t nf = 0;
    for (uint64_t j = 0; j < n; j++) {
        float a = fabsf(pruned(x[j], pk, le));
        int fin = a <= FLT_BIG;
        nf += !fin;
        a = fin ? a : 0.0f;
        m = a > m ? a : m;
    }
    *nonfinite += nf;
    return m;
}

static void minmax_c(const float *x, uint64_t n, uint32_t pk, uint32_t le, float *lo, float *hi, uint32_t *nonfinite) {
    float a = 0.0f, b = 0.0f;
    uint32_t nf = 0;
    for (uint64_t j = 0; j < n; j++) {
        float v = pruned(x[j], pk, le);
        int fin = fabsf(v) <= FLT_BIG;
        nf += !fin;
        v = fin ? v : 0.0f;
        a = v < a ? v : a;
        b = v > b ? v : b;
    }
    *lo = a;
    *hi = b;
    *nonfinite += nf;
}

/* clamp(rint(v), lo, hi), NaN taken as 0 (its tensor is refused anyway; no UB in the cast) */
static inline float round_clamp(float v, float lo, float hi) {
    float r = rne(v);
    r = (r == r) ? r : 0.0f;
    r = r > hi ? hi : r;
    return r < lo ? lo : r;
}

static void quant_int8_c(const float *x, uint64_t n, uint32_t pk, uint32_t le, float inv, float scale, int8_t *q,
                         row_acc *acc) {
    for (uint64_t j = 0; j < n; j++) {
        float v = x[j];
        float p = pruned(v, pk, le);
        float r = round_clamp(p * inv, -127.0f, 127.0f);
        q[j] = (int8_t)(int)r;
        measure(acc, (int)(j % LANES), v, p, r * scale);
    }
}

static void quant_int4_c(const float *x, uint64_t n, uint32_t pk, uint32_t le, float inv, float scale, float zpf,
                         uint8_t *codes, row_acc *acc) {
    for (uint64_t j = 0; j < n; j++) {
        float v = x[j];
        float p = pruned(v, pk, le);
        float r = rne(p * inv) + zpf;
        r = (r == r) ? r : 0.0f;
        r = r > 15.0f ? 15.0f : r;
        r = r < 0.0f ? 0.0f : r;
        codes[j] = (uint8_t)(int)r;
        measure(acc, (int)(j % LANES), v, p, (r - zpf) * scale);
    }
}

/* one row of int4 groups: scale and zero point per group, codes per element */
static void int4_row_c(const float *x, uint64_t cols, uint64_t group, uint32_t pk, uint32_t le, float *scale_out,
                       uint8_t *zp_out, uint8_t *codes, row_acc *acc, uint32_t *nonfinite) {
    uint64_t ngroups = cols / group + (cols % group != 0);
    for (uint64_t g = 0; g < ngroups; g++) {
        uint64_t b = g * group;
        uint64_t len = cols - b < group ? cols - b : group;
        float lo, hi;
        minmax_c(x + b, len, pk, le, &lo, &hi, nonfinite);
        float scale = (hi - lo) / 15.0f;
        float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
        float zpf = scale > 0.0f ? rne(-lo * inv) : 0.0f;
        zpf = zpf > 15.0f ? 15.0f : (zpf < 0.0f ? 0.0f : zpf);
        scale_out[g] = scale;
        zp_out[g] = (uint8_t)(int)zpf;
        quant_int4_c(x + b, len, pk, le, inv, scale, zpf, codes + b, acc);
    }
}

static float e4m3_table[256];
static pthread_once_t e4m3_once = PTHREAD_ONCE_INIT;

static void e4m3_init(void) {
    for (int b = 0; b < 256; b++) e4m3_table[b] = mf_e4m3_to_f32((uint8_t)b);
}

static void quant_fp8_c(const float *x, uint64_t n, uint32_t pk, uint32_t le, float inv, float scale, uint8_t *q,
                        row_acc *acc, uint32_t *nonfinite) {
    pthread_once(&e4m3_once, e4m3_init);
    for (uint64_t j = 0; j < n; j++) {
        float v = x[j];
        *nonfinite += !(fabsf(v) <= FLT_BIG);
        float p = pruned(v, pk, le);
        uint8_t b = mf_f32_to_e4m3(p * inv);
        q[j] = b;
        measure(acc, (int)(j % LANES), v, p, e4m3_table[b] * scale);
    }
}

typedef struct {
    void (*widen_f16)(const uint16_t *s, float *d, uint64_t n);
    void (*widen_bf16)(const uint16_t *s, float *d, uint64_t n);
    float (*absmax)(const float *x, uint64_t n, uint32_t pk, uint32_t le, uint32_t *nonfinite);
    void (*minmax)(const float *x, uint64_t n, uint32_t pk, uint32_t le, float *lo, float *hi, uint32_t *nonfinite);
    void (*quant_int8)(const float *x, uint64_t n, uint32_t pk, uint32_t le, float inv, float scale, int8_t *q,
                       row_acc *acc);
    void (*int4_row)(const float *x, uint64_t cols, uint64_t group, uint32_t pk, uint32_t le, float *scale_out,
                     uint8_t *zp_out, uint8_t *codes, row_acc *acc, uint32_t *nonfinite);
    void (*quant_fp8)(const float *x, uint64_t n, uint32_t pk, uint32_t le, float inv, float scale, uint8_t *q,
                      row_acc *acc, uint32_t *nonfinite);
    const char *name;
} row_kernels;

static const row_kernels kernels_c = {widen_f16_c, widen_bf16_c, absmax_c, minmax_c,
                                      quant_int8_c, int4_row_c, quant_fp8_c, "c"};

/* ========================================================================================== */
/* Row kernels, AVX2 + F16C (x86-64, chosen at run time)                                      */
/* ========================================================================================== */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MF_QUANT_AVX2 1
#include <immintrin.h>
#define AVX2_FN __attribute__((target("avx2,f16c")))

AVX2_FN static void widen_f16_avx2(const uint16_t *s, float *d, uint64_t n) {
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
    if (i < n) widen_f16_c(s + i, d + i, n - i);
}

AVX2_FN static void widen_bf16_avx2(const uint16_t *s, float *d, uint64_t n) {
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(s + i)));
        _mm256_storeu_si256((__m256i *)(d + i), _mm256_slli_epi32(v, 16));
    }
    if (i < n) widen_bf16_c(s + i, d + i, n - i);
}

AVX2_FN static inline __m256 prune8(__m256 x, __m256i pk, __m256i le) {
    __m256i key = _mm256_and_si256(_mm256_castps_si256(x), _mm256_set1_epi32(0x7fffffff));
    __m256i kill = _mm256_or_si256(_mm256_cmpgt_epi32(pk, key), _mm256_and_si256(le, _mm256_cmpeq_epi32(key, pk)));
    return _mm256_andnot_ps(_mm256_castsi256_ps(kill), x);
}

/* horizontal max / min of 8 lanes (inputs are never NaN here) */
AVX2_FN static inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

AVX2_FN static inline float hmin8(__m256 v) {
    __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_min_ps(m, _mm_movehl_ps(m, m));
    m = _mm_min_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

/* adds the vector accumulators into the row's lanes */
AVX2_FN static inline void acc_add8(row_acc *acc, __m256 s2, __m256 e2, __m256 me, __m256i zc) {
    float a[8], b[8], c[8];
    uint32_t z[8];
    _mm256_storeu_ps(a, s2);
    _mm256_storeu_ps(b, e2);
    _mm256_storeu_ps(c, me);
    _mm256_storeu_si256((__m256i *)z, zc);
    for (int l = 0; l < 8; l++) {
        acc->sum_sq[l] += a[l];
        acc->err_sq[l] += b[l];
        acc->max_err[l] = c[l] > acc->max_err[l] ? c[l] : acc->max_err[l];
        acc->zeros[l] += z[l];
    }
}

#define PRUNE_VECS                                                                                     \
    const __m256i pkv = _mm256_set1_epi32((int)pk);                                                    \
    const __m256i lev = _mm256_set1_epi32(le ? -1 : 0);                                                \
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff))

AVX2_FN static float absmax_avx2(const float *x, uint64_t n, uint32_t pk, uint32_t le, uint32_t *nonfinite) {
    PRUNE_VECS;
    const __m256 big = _mm256_set1_ps(FLT_BIG);
    __m256 m = _mm256_setzero_ps();
    uint32_t nf = 0;
    uint64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 a = _mm256_and_ps(prune8(_mm256_loadu_ps(x + j), pkv, lev), absmask);
        __m256 bad = _mm256_cmp_ps(a, big, _CMP_NLE_UQ);
        nf += (uint32_t)__builtin_popcount((unsigned)_mm256_movemask_ps(bad));
        m = _mm256_max_ps(m, _mm256_andnot_ps(bad, a));
    }
    float r = hmax8(m);
    float t = j < n ? absmax_c(x + j, n - j, pk, le, &nf) : 0.0f; /* no SSE call on an empty tail */
    *nonfinite += nf;
    return t > r ? t : r;
}

AVX2_FN static void minmax_avx2(const float *x, uint64_t n, uint32_t pk, uint32_t le, float *lo, float *hi,
                                uint32_t *nonfinite) {
    PRUNE_VECS;
    const __m256 big = _mm256_set1_ps(FLT_BIG);
    __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
    uint32_t nf = 0;
    uint64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 v = prune8(_mm256_loadu_ps(x + j), pkv, lev);
        __m256 bad = _mm256_cmp_ps(_mm256_and_ps(v, absmask), big, _CMP_NLE_UQ);
        nf += (uint32_t)__builtin_popcount((unsigned)_mm256_movemask_ps(bad));
        v = _mm256_andnot_ps(bad, v);
        a = _mm256_min_ps(a, v);
        b = _mm256_max_ps(b, v);
    }
    float tl = 0.0f, th = 0.0f;
    if (j < n) minmax_c(x + j, n - j, pk, le, &tl, &th, &nf);
    float vl = hmin8(a), vh = hmax8(b);
    *lo = tl < vl ? tl : vl;
    *hi = th > vh ? th : vh;
    *nonfinite += nf;
}

#define ROUND_NE (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

AVX2_FN static void quant_int8_avx2(const float *x, uint64_t n, uint32_t pk, uint32_t le, float inv, float scale,
                                    int8_t *q, row_acc *acc) {
    PRUNE_VECS;
    const __m256 vinv = _mm256_set1_ps(inv), vs = _mm256_set1_ps(scale);
    const __m256 top = _mm256_set1_ps(127.0f), bottom = _mm256_set1_ps(-127.0f), zero = _mm256_setzero_ps();
    __m256 s2 = zero, e2 = zero, me = zero;
    __m256i zc = _mm256_setzero_si256();
    uint64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 v = _mm256_loadu_ps(x + j);
        __m256 p = prune8(v, pkv, lev);
        __m256 r = _mm256_round_ps(_mm256_mul_ps(p, vinv), ROUND_NE);
        r = _mm256_max_ps(_mm256_min_ps(r, top), bottom); /* NaN -> 127: its tensor is refused */
        __m256i ri = _mm256_cvtps_epi32(r);
        __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(ri), _mm256_extracti128_si256(ri, 1));
        _mm_storel_epi64((__m128i *)(q + j), _mm_packs_epi16(w, w));
        __m256 e = _mm256_sub_ps(v, _mm256_mul_ps(r, vs));
        s2 = _mm256_add_ps(s2, _mm256_mul_ps(v, v));
        e2 = _mm256_add_ps(e2, _mm256_mul_ps(e, e));
        me = _mm256_max_ps(me, _mm256_and_ps(e, absmask));
        zc = _mm256_sub_epi32(zc, _mm256_castps_si256(_mm256_cmp_ps(p, zero, _CMP_EQ_OQ)));
    }
    acc_add8(acc, s2, e2, me, zc);
    if (j < n) quant_int8_c(x + j, n - j, pk, le, inv, scale, q + j, acc);
}

/* one row of int4 groups; vector accumulators live across the row's groups */
AVX2_FN static void int4_row_avx2(const float *x, uint64_t cols, uint64_t group, uint32_t pk, uint32_t le,
                                  float *scale_out, uint8_t *zp_out, uint8_t *codes, row_acc *acc,
                                  uint32_t *nonfinite) {
    PRUNE_VECS;
    const __m256 big = _mm256_set1_ps(FLT_BIG), top = _mm256_set1_ps(15.0f), zero = _mm256_setzero_ps();
    __m256 s2 = zero, e2 = zero, me = zero;
    __m256i zc = _mm256_setzero_si256();
    uint32_t nf = 0;
    uint64_t ngroups = cols / group + (cols % group != 0);
    for (uint64_t g = 0; g < ngroups; g++) {
        const float *xg = x + g * group;
        uint64_t len = cols - g * group < group ? cols - g * group : group;
        uint64_t vec = len & ~(uint64_t)7;
        /* min and max of the pruned group (non-finite values as 0, counted) */
        __m256 vlo = zero, vhi = zero;
        for (uint64_t j = 0; j < vec; j += 8) {
            __m256 v = prune8(_mm256_loadu_ps(xg + j), pkv, lev);
            __m256 bad = _mm256_cmp_ps(_mm256_and_ps(v, absmask), big, _CMP_NLE_UQ);
            nf += (uint32_t)__builtin_popcount((unsigned)_mm256_movemask_ps(bad));
            v = _mm256_andnot_ps(bad, v);
            vlo = _mm256_min_ps(vlo, v);
            vhi = _mm256_max_ps(vhi, v);
        }
        float tl = 0.0f, th = 0.0f;
        if (vec < len) minmax_c(xg + vec, len - vec, pk, le, &tl, &th, &nf);
        float lo = hmin8(vlo), hi = hmax8(vhi);
        lo = tl < lo ? tl : lo;
        hi = th > hi ? th : hi;
        float scale = (hi - lo) / 15.0f;
        float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
        float zpf = scale > 0.0f ? rne(-lo * inv) : 0.0f;
        zpf = zpf > 15.0f ? 15.0f : (zpf < 0.0f ? 0.0f : zpf);
        scale_out[g] = scale;
        zp_out[g] = (uint8_t)(int)zpf;
        const __m256 vinv = _mm256_set1_ps(inv), vs = _mm256_set1_ps(scale), vz = _mm256_set1_ps(zpf);
        uint8_t *cg = codes + g * group;
        for (uint64_t j = 0; j < vec; j += 8) {
            __m256 v = _mm256_loadu_ps(xg + j);
            __m256 p = prune8(v, pkv, lev);
            __m256 r = _mm256_add_ps(_mm256_round_ps(_mm256_mul_ps(p, vinv), ROUND_NE), vz);
            r = _mm256_max_ps(_mm256_min_ps(r, top), zero);
            __m256i ri = _mm256_cvtps_epi32(r);
            __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(ri), _mm256_extracti128_si256(ri, 1));
            _mm_storel_epi64((__m128i *)(cg + j), _mm_packus_epi16(w, w));
            __m256 e = _mm256_sub_ps(v, _mm256_mul_ps(_mm256_sub_ps(r, vz), vs));
            s2 = _mm256_add_ps(s2, _mm256_mul_ps(v, v));
            e2 = _mm256_add_ps(e2, _mm256_mul_ps(e, e));
            me = _mm256_max_ps(me, _mm256_and_ps(e, absmask));
            zc = _mm256_sub_epi32(zc, _mm256_castps_si256(_mm256_cmp_ps(p, zero, _CMP_EQ_OQ)));
        }
        if (vec < len) quant_int4_c(xg + vec, len - vec, pk, le, inv, scale, zpf, cg + vec, acc);
    }
    acc_add8(acc, s2, e2, me, zc);
    *nonfinite += nf;
}

/* e4m3fn codes of 8 floats, as mf_f32_to_e4m3 computes them, in the low byte of each lane */
AVX2_FN static inline __m256i e4m3_8(__m256 y) {
    __m256i bits = _mm256_castps_si256(y);
    __m256i sign = _mm256_and_si256(_mm256_srli_epi32(bits, 24), _mm256_set1_epi32(0x80));
    __m256i a = _mm256_and_si256(bits, _mm256_set1_epi32(0x7fffffff));
    __m256i isnan = _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x7f800000));
    __m256i issat = _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x43dfffff));
    __m256i issub = _mm256_cmpgt_epi32(_mm256_set1_epi32(0x3c800000), a);
    __m256i r = _mm256_add_epi32(a, _mm256_add_epi32(_mm256_set1_epi32(0x7ffff),
                                                     _mm256_and_si256(_mm256_srli_epi32(a, 20), _mm256_set1_epi32(1))));
    __m256i nrm = _mm256_min_epi32(_mm256_sub_epi32(_mm256_srli_epi32(r, 20), _mm256_set1_epi32(960)),
                                   _mm256_set1_epi32(0x7e));
    __m256i sub = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_castsi256_ps(a), _mm256_set1_ps(512.0f)),
                                                     ROUND_NE));
    __m256i code = _mm256_blendv_epi8(nrm, sub, issub);
    code = _mm256_blendv_epi8(code, _mm256_set1_epi32(0x7e), issat);
    code = _mm256_blendv_epi8(code, _mm256_set1_epi32(0x7f), isnan);
    return _mm256_or_si256(code, sign);
}

/* the float value of 8 e4m3fn codes (finite codes; 0x7f/0xff are never produced from finite input) */
AVX2_FN static inline __m256 e4m3_value8(__m256i code) {
    __m256i c7 = _mm256_and_si256(code, _mm256_set1_epi32(0x7f));
    __m256 nrm = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_slli_epi32(c7, 20), _mm256_set1_epi32(0x3c000000)));
    __m256 sub = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_and_si256(c7, _mm256_set1_epi32(7))),
                               _mm256_set1_ps(1.0f / 512.0f));
    __m256i issub = _mm256_cmpeq_epi32(_mm256_and_si256(c7, _mm256_set1_epi32(0x78)), _mm256_setzero_si256());
    __m256 v = _mm256_blendv_ps(nrm, sub, _mm256_castsi256_ps(issub));
    return _mm256_or_ps(v, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(code, _mm256_set1_epi32(0x80)), 24)));
}

AVX2_FN static void quant_fp8_avx2(const float *x, uint64_t n, uint32_t pk, uint32_t le, float inv, float scale,
                                   uint8_t *q, row_acc *acc, uint32_t *nonfinite) {
    PRUNE_VECS;
    const __m256 vinv = _mm256_set1_ps(inv), vs = _mm256_set1_ps(scale), zero = _mm256_setzero_ps();
    const __m256 big = _mm256_set1_ps(FLT_BIG);
    __m256 s2 = zero, e2 = zero, me = zero;
    __m256i zc = _mm256_setzero_si256();
    uint32_t nf = 0;
    uint64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 v = _mm256_loadu_ps(x + j);
        nf += (uint32_t)__builtin_popcount(
            (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_and_ps(v, absmask), big, _CMP_NLE_UQ)));
        __m256 p = prune8(v, pkv, lev);
        __m256i code = e4m3_8(_mm256_mul_ps(p, vinv));
        __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(code), _mm256_extracti128_si256(code, 1));
        _mm_storel_epi64((__m128i *)(q + j), _mm_packus_epi16(w, w));
        __m256 e = _mm256_sub_ps(v, _mm256_mul_ps(e4m3_value8(code), vs));
        s2 = _mm256_add_ps(s2, _mm256_mul_ps(v, v));
        e2 = _mm256_add_ps(e2, _mm256_mul_ps(e, e));
        me = _mm256_max_ps(me, _mm256_and_ps(e, absmask));
        zc = _mm256_sub_epi32(zc, _mm256_castps_si256(_mm256_cmp_ps(p, zero, _CMP_EQ_OQ)));
    }
    acc_add8(acc, s2, e2, me, zc);
    *nonfinite += nf;
    if (j < n) quant_fp8_c(x + j, n - j, pk, le, inv, scale, q + j, acc, nonfinite);
}

static const row_kernels kernels_avx2 = {widen_f16_avx2, widen_bf16_avx2, absmax_avx2, minmax_avx2,
                                         quant_int8_avx2, int4_row_avx2, quant_fp8_avx2, "avx2"};
#endif

/* 0 = pick by CPU, 1 = portable C only (tests compare the two) */
static int isa_choice = 0;

void mf_quant_set_isa(int choice) { isa_choice = choice; }

#ifdef MF_QUANT_AVX2
#include <cpuid.h>
/* AVX2 and F16C (CPUID.1:ECX bit 29); clang's __builtin_cpu_supports does not know "f16c" */
static int have_avx2_f16c(void) {
    unsigned a, b, c, d;
    if (!__builtin_cpu_supports("avx2") || !__get_cpuid(1, &a, &b, &c, &d)) return 0;
    return (c >> 29) & 1u;
}
#endif

const char *mf_quant_isa(void) {
#ifdef MF_QUANT_AVX2
    if (isa_choice == 0 && have_avx2_f16c()) return "avx2";
#endif
    return "c";
}

static const row_kernels *kernels(void) {
#ifdef MF_QUANT_AVX2
    if (isa_choice == 0 && have_avx2_f16c()) return &kernels_avx2;
#endif
    return &kernels_c;
}

static void widen_f64(const double *s, float *d, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) d[i] = (float)s[i];
}

static int itemsize_of(int dtype) {
    switch (dtype) {
    case MF_DT_FLOAT16:
    case MF_DT_BFLOAT16: return 2;
    case MF_DT_FLOAT32: return 4;
    case MF_DT_FLOAT64: return 8;
    default: return 0;
    }
}

/* A pointer to elements [i, i+n) of src as float32: src itself for float32, else scratch. */
static const float *widen(const row_kernels *k, const void *src, int dtype, uint64_t i, uint64_t n, float *scratch) {
    switch (dtype) {
    case MF_DT_FLOAT16: k->widen_f16((const uint16_t *)src + i, scratch, n); return scratch;
    case MF_DT_BFLOAT16: k->widen_bf16((const uint16_t *)src + i, scratch, n); return scratch;
    case MF_DT_FLOAT64: widen_f64((const double *)src + i, scratch, n); return scratch;
    default: return (const float *)src + i;
    }
}

/* ========================================================================================== */
/* Threads                                                                                    */
/* ========================================================================================== */

typedef void (*mf_range_fn)(void *ctx, uint64_t begin, uint64_t end, int tid);

typedef struct {
    mf_range_fn fn;
    void *ctx;
    uint64_t begin, end;
    int tid;
} mf_job;

static void *run_job(void *p) {
    mf_job *j = (mf_job *)p;
    j->fn(j->ctx, j->begin, j->end, j->tid);
    return NULL;
}

/* How many threads to use for n units of `per_unit` elements each. */
static int plan_threads(uint64_t n, uint64_t per_unit, int threads) {
    if (threads < 1) threads = 1;
    if (threads > MF_QUANT_MAX_THREADS) threads = MF_QUANT_MAX_THREADS;
    uint64_t total;
    if (mf_mul_u64(n, per_unit ? per_unit : 1, &total)) total = UINT64_MAX;
    uint64_t by_size = total / MF_QUANT_MIN_PER_THREAD;
    if (by_size < (uint64_t)threads) threads = by_size < 1 ? 1 : (int)by_size;
    if ((uint64_t)threads > n) threads = n < 1 ? 1 : (int)n;
    return threads;
}

/* Run fn over [0, n) in `threads` contiguous ranges; the caller runs the first. A thread that
 * cannot be started runs on the calling thread instead. */
static void parallel(uint64_t n, int threads, mf_range_fn fn, void *ctx) {
    mf_job jobs[MF_QUANT_MAX_THREADS];
    pthread_t tids[MF_QUANT_MAX_THREADS];
    int started[MF_QUANT_MAX_THREADS];
    for (int t = 0; t < threads; t++) {
        jobs[t].fn = fn;
        jobs[t].ctx = ctx;
        jobs[t].begin = n * (uint64_t)t / (uint64_t)threads;
        jobs[t].end = n * (uint64_t)(t + 1) / (uint64_t)threads;
        jobs[t].tid = t;
        started[t] = 0;
    }
    for (int t = 1; t < threads; t++) started[t] = pthread_create(&tids[t], NULL, run_job, &jobs[t]) == 0;
    run_job(&jobs[0]);
    for (int t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(tids[t], NULL);
        else
            run_job(&jobs[t]);
    }
}

static void merge_stats(mf_qstats *dst, const mf_qstats *parts, int n) {
    memset(dst, 0, sizeof *dst);
    for (int t = 0; t < n; t++) {
        dst->sum_sq += parts[t].sum_sq;
        dst->err_sq += parts[t].err_sq;
        if (parts[t].max_err > dst->max_err) dst->max_err = parts[t].max_err;
        dst->zeros += parts[t].zeros;
        dst->nonfinite += parts[t].nonfinite;
    }
}

static void acc_flush(const row_acc *a, mf_qstats *st) {
    for (int l = 0; l < LANES; l++) {
        st->sum_sq += a->sum_sq[l];
        st->err_sq += a->err_sq[l];
        if (a->max_err[l] > st->max_err) st->max_err = a->max_err[l];
        st->zeros += a->zeros[l];
    }
}

/* ========================================================================================== */
/* int8, symmetric, one scale per row                                                         */
/* ========================================================================================== */

typedef struct {
    const void *src;
    int dtype;
    uint64_t cols;
    uint32_t pk, le;
    int8_t *q;
    float *scale;
    float *scratch; /* threads x cols */
    mf_qstats st[MF_QUANT_MAX_THREADS];
} int8_ctx;

static void int8_worker(void *p, uint64_t r0, uint64_t r1, int tid) {
    int8_ctx *c = (int8_ctx *)p;
    const row_kernels *k = kernels();
    float *scratch = c->scratch + (uint64_t)tid * c->cols;
    mf_qstats *st = &c->st[tid];
    row_acc acc;
    for (uint64_t r = r0; r < r1; r++) {
        const float *x = widen(k, c->src, c->dtype, r * c->cols, c->cols, scratch);
        uint32_t nf = 0;
        float amax = k->absmax(x, c->cols, c->pk, c->le, &nf);
        float scale = amax / 127.0f;
        float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        c->scale[r] = scale;
        memset(&acc, 0, sizeof acc);
        k->quant_int8(x, c->cols, c->pk, c->le, inv, scale, c->q + r * c->cols, &acc);
        acc_flush(&acc, st);
        st->nonfinite += nf;
    }
}

/* Common checks: a known dtype, rows x cols that does not overflow. */
static int check_shape(int dtype, uint64_t rows, uint64_t cols, uint64_t *n, mf_error *err) {
    if (itemsize_of(dtype) == 0)
        return mf_fail(err, MF_ERR_UNSUPPORTED, 0, "quantization input must be float16, bfloat16, float32 or "
                                                   "float64, not %s", mf_dtype_name(dtype));
    if (mf_mul_u64(rows, cols, n) || *n > ((uint64_t)1 << 62))
        return mf_fail(err, MF_ERR_LIMIT, 0, "tensor of %llu x %llu elements is too large",
                       (unsigned long long)rows, (unsigned long long)cols);
    return MF_OK;
}

static float *scratch_for(mf_arena *a, int threads, uint64_t cols, mf_error *err) {
    uint64_t bytes;
    if (mf_mul_u64((uint64_t)threads, cols, &bytes) || mf_mul_u64(bytes, 4, &bytes) || bytes > SIZE_MAX) {
        mf_fail(err, MF_ERR_LIMIT, 0, "row of %llu elements is too long", (unsigned long long)cols);
        return NULL;
    }
    return (float *)mf_arena_alloc(a, (size_t)(bytes ? bytes : 16), err, 0);
}

int mf_quant_int8(const void *src, int dtype, uint64_t rows, uint64_t cols, uint32_t prune_key, int prune_le,
                  int8_t *q, float *scale, mf_qstats *st, int threads, mf_error *err) {
    uint64_t n = 0;
    memset(st, 0, sizeof *st);
    if (check_shape(dtype, rows, cols, &n, err)) return err->code;
    if (n == 0) return MF_OK;
    int8_ctx c;
    memset(&c, 0, sizeof c);
    c.src = src;
    c.dtype = dtype;
    c.cols = cols;
    c.pk = prune_key;
    c.le = prune_le ? 1u : 0u;
    c.q = q;
    c.scale = scale;
    int t = plan_threads(rows, cols, threads);
    mf_arena arena;
    mf_arena_init(&arena, 0);
    c.scratch = scratch_for(&arena, t, cols, err);
    if (c.scratch != NULL) {
        parallel(rows, t, int8_worker, &c);
        merge_stats(st, c.st, t);
    }
    mf_arena_free(&arena);
    return err->code;
}

/* ========================================================================================== */
/* int4, asymmetric, one scale and zero point per group, two values per byte                  */
/* ========================================================================================== */

typedef struct {
    const void *src;
    int dtype;
    uint64_t cols, group, ngroups, packed;
    uint32_t pk, le;
    uint8_t *q;
    float *scale;
    uint8_t *zp;
    float *scratch;    /* threads x cols floats for the widened row */
    uint8_t *codes;    /* threads x cols bytes: the row's 4-bit codes before packing */
    mf_qstats st[MF_QUANT_MAX_THREADS];
} int4_ctx;

static void pack_nibbles(const uint8_t *codes, uint64_t n, uint8_t *out) {
    uint64_t k = 0;
    for (; k + 1 < n; k += 2) out[k / 2] = (uint8_t)(codes[k] | (codes[k + 1] << 4));
    if (k < n) out[k / 2] = codes[k];
}

static void int4_worker(void *p, uint64_t r0, uint64_t r1, int tid) {
    int4_ctx *c = (int4_ctx *)p;
    const row_kernels *k = kernels();
    float *scratch = c->scratch + (uint64_t)tid * c->cols;
    uint8_t *codes = c->codes + (uint64_t)tid * c->cols;
    mf_qstats *st = &c->st[tid];
    row_acc acc;
    for (uint64_t r = r0; r < r1; r++) {
        const float *x = widen(k, c->src, c->dtype, r * c->cols, c->cols, scratch);
        uint32_t nf = 0;
        memset(&acc, 0, sizeof acc);
        k->int4_row(x, c->cols, c->group, c->pk, c->le, c->scale + r * c->ngroups, c->zp + r * c->ngroups, codes,
                    &acc, &nf);
        acc_flush(&acc, st);
        st->nonfinite += nf;
        pack_nibbles(codes, c->cols, c->q + r * c->packed);
    }
}

int mf_quant_int4(const void *src, int dtype, uint64_t rows, uint64_t cols, uint64_t group, uint32_t prune_key,
                  int prune_le, uint8_t *q, float *scale, uint8_t *zp, mf_qstats *st, int threads, mf_error *err) {
    uint64_t n = 0;
    memset(st, 0, sizeof *st);
    if (check_shape(dtype, rows, cols, &n, err)) return err->code;
    if (group == 0) return mf_fail(err, MF_ERR_CORRUPT, 0, "group size must be at least 1");
    if (n == 0) return MF_OK;
    int4_ctx c;
    memset(&c, 0, sizeof c);
    c.src = src;
    c.dtype = dtype;
    c.cols = cols;
    c.group = group;
    c.ngroups = cols / group + (cols % group != 0);
    c.packed = cols / 2 + (cols & 1);
    c.pk = prune_key;
    c.le = prune_le ? 1u : 0u;
    c.q = q;
    c.scale = scale;
    c.zp = zp;
    int t = plan_threads(rows, cols, threads);
    mf_arena arena;
    mf_arena_init(&arena, 0);
    c.scratch = scratch_for(&arena, t, cols, err);
    if (c.scratch != NULL) c.codes = (uint8_t *)mf_arena_alloc(&arena, (size_t)((uint64_t)t * cols), err, 0);
    if (c.scratch != NULL && c.codes != NULL) {
        parallel(rows, t, int4_worker, &c);
        merge_stats(st, c.st, t);
    }
    mf_arena_free(&arena);
    return err->code;
}

/* ========================================================================================== */
/* float8 e4m3fn, one scale for the tensor                                                    */
/* ========================================================================================== */

#define FLAT_BLOCK ((uint64_t)4096)

typedef struct {
    const void *src;
    int dtype;
    uint64_t n;
    uint32_t pk, le;
    float scale, inv;
    uint8_t *q;
    float *scratch; /* threads x FLAT_BLOCK */
    float amax[MF_QUANT_MAX_THREADS];
    mf_qstats st[MF_QUANT_MAX_THREADS];
} flat_ctx;

static void absmax_worker(void *p, uint64_t b0, uint64_t b1, int tid) {
    flat_ctx *c = (flat_ctx *)p;
    const row_kernels *k = kernels();
    float *scratch = c->scratch + (uint64_t)tid * FLAT_BLOCK;
    float m = 0.0f;
    uint32_t nf = 0;
    for (uint64_t b = b0; b < b1; b++) {
        uint64_t i = b * FLAT_BLOCK, len = c->n - i < FLAT_BLOCK ? c->n - i : FLAT_BLOCK;
        const float *x = widen(k, c->src, c->dtype, i, len, scratch);
        float a = k->absmax(x, len, c->pk, c->le, &nf);
        m = a > m ? a : m;
    }
    c->amax[tid] = m;
    c->st[tid].nonfinite = nf;
}

static int flat_setup(flat_ctx *c, mf_arena *arena, const void *src, int dtype, uint64_t n, uint32_t pk, int le,
                      int threads, int *t, uint64_t *blocks, mf_error *err) {
    uint64_t dummy = 0;
    if (check_shape(dtype, n, 1, &dummy, err)) return err->code;
    memset(c, 0, sizeof *c);
    c->src = src;
    c->dtype = dtype;
    c->n = n;
    c->pk = pk;
    c->le = le ? 1u : 0u;
    *blocks = n / FLAT_BLOCK + (n % FLAT_BLOCK != 0);
    *t = plan_threads(*blocks, FLAT_BLOCK, threads);
    c->scratch = scratch_for(arena, *t, FLAT_BLOCK, err);
    return err->code;
}

int mf_absmax(const void *src, int dtype, uint64_t n, uint32_t prune_key, int prune_le, float *amax,
              uint64_t *nonfinite, int threads, mf_error *err) {
    flat_ctx c;
    mf_arena arena;
    int t = 1;
    uint64_t blocks = 0;
    *amax = 0.0f;
    *nonfinite = 0;
    mf_arena_init(&arena, 0);
    if (flat_setup(&c, &arena, src, dtype, n, prune_key, prune_le, threads, &t, &blocks, err) == MF_OK && n) {
        parallel(blocks, t, absmax_worker, &c);
        for (int i = 0; i < t; i++) {
            if (c.amax[i] > *amax) *amax = c.amax[i];
            *nonfinite += c.st[i].nonfinite;
        }
    }
    mf_arena_free(&arena);
    return err->code;
}

static void fp8_worker(void *p, uint64_t b0, uint64_t b1, int tid) {
    flat_ctx *c = (flat_ctx *)p;
    const row_kernels *k = kernels();
    float *scratch = c->scratch + (uint64_t)tid * FLAT_BLOCK;
    row_acc acc;
    for (uint64_t b = b0; b < b1; b++) {
        uint64_t i = b * FLAT_BLOCK, len = c->n - i < FLAT_BLOCK ? c->n - i : FLAT_BLOCK;
        const float *x = widen(k, c->src, c->dtype, i, len, scratch);
        uint32_t nf = 0;
        memset(&acc, 0, sizeof acc);
        k->quant_fp8(x, len, c->pk, c->le, c->inv, c->scale, c->q + i, &acc, &nf);
        acc_flush(&acc, &c->st[tid]);
        c->st[tid].nonfinite += nf;
    }
}

int mf_quant_fp8(const void *src, int dtype, uint64_t n, float scale, uint32_t prune_key, int prune_le,
                 uint8_t *q, mf_qstats *st, int threads, mf_error *err) {
    flat_ctx c;
    mf_arena arena;
    int t = 1;
    uint64_t blocks = 0;
    memset(st, 0, sizeof *st);
    mf_arena_init(&arena, 0);
    if (flat_setup(&c, &arena, src, dtype, n, prune_key, prune_le, threads, &t, &blocks, err) == MF_OK && n) {
        c.q = q;
        c.scale = scale;
        c.inv = scale > 0.0f ? 1.0f / scale : 0.0f;
        parallel(blocks, t, fp8_worker, &c);
        merge_stats(st, c.st, t);
    }
    mf_arena_free(&arena);
    return err->code;
}

/* ========================================================================================== */
/* Magnitude histograms (pruning thresholds)                                                  */
/* ========================================================================================== */

typedef struct {
    const void *src;
    int dtype;
    uint64_t n;
    int level;
    uint32_t hi;
    float *scratch;
    uint64_t *hist; /* threads x 65536 */
} hist_ctx;

static void hist_worker(void *p, uint64_t b0, uint64_t b1, int tid) {
    hist_ctx *c = (hist_ctx *)p;
    float *scratch = c->scratch + (uint64_t)tid * FLAT_BLOCK;
    uint64_t *h = c->hist + (uint64_t)tid * 65536u;
    for (uint64_t b = b0; b < b1; b++) {
        uint64_t i = b * FLAT_BLOCK, len = c->n - i < FLAT_BLOCK ? c->n - i : FLAT_BLOCK;
        const float *x = widen(kernels(), c->src, c->dtype, i, len, scratch);
        if (c->level == 0) {
            for (uint64_t j = 0; j < len; j++) h[(f2u(x[j]) & 0x7fffffffu) >> 16]++;
        } else {
            for (uint64_t j = 0; j < len; j++) {
                uint32_t k = f2u(x[j]) & 0x7fffffffu;
                if ((k >> 16) == c->hi) h[k & 0xffffu]++;
            }
        }
    }
}

int mf_abs_hist(const void *src, int dtype, uint64_t n, int level, uint32_t hi, uint64_t *hist, int threads,
                mf_error *err) {
    uint64_t dummy = 0;
    if (check_shape(dtype, n, 1, &dummy, err)) return err->code;
    if (n == 0) return MF_OK;
    hist_ctx c;
    memset(&c, 0, sizeof c);
    c.src = src;
    c.dtype = dtype;
    c.n = n;
    c.level = level;
    c.hi = hi;
    uint64_t blocks = n / FLAT_BLOCK + (n % FLAT_BLOCK != 0);
    int t = plan_threads(blocks, FLAT_BLOCK, threads);
    mf_arena arena;
    mf_arena_init(&arena, 0);
    c.scratch = scratch_for(&arena, t, FLAT_BLOCK, err);
    if (c.scratch != NULL) c.hist = (uint64_t *)mf_arena_calloc(&arena, (size_t)t * 65536u, 8, err, 0);
    if (c.hist != NULL) {
        parallel(blocks, t, hist_worker, &c);
        for (int i = 0; i < t; i++)
            for (uint32_t k = 0; k < 65536u; k++) hist[k] += c.hist[(uint64_t)i * 65536u + k];
    }
    mf_arena_free(&arena);
    return err->code;
}

/* ========================================================================================== */
/* Dequantization                                                                             */
/* ========================================================================================== */

typedef struct {
    const uint8_t *q;
    const float *scale;
    const uint8_t *zp;
    uint64_t cols, group, ngroups, packed;
    float fscale;
    float *out;
} deq_ctx;

static void deq_int8_worker(void *p, uint64_t r0, uint64_t r1, int tid) {
    deq_ctx *c = (deq_ctx *)p;
    (void)tid;
    for (uint64_t r = r0; r < r1; r++) {
        const int8_t *q = (const int8_t *)c->q + r * c->cols;
        float *o = c->out + r * c->cols;
        float s = c->scale[r];
        for (uint64_t j = 0; j < c->cols; j++) o[j] = (float)q[j] * s;
    }
}

static void deq_int4_worker(void *p, uint64_t r0, uint64_t r1, int tid) {
    deq_ctx *c = (deq_ctx *)p;
    (void)tid;
    for (uint64_t r = r0; r < r1; r++) {
        const uint8_t *q = c->q + r * c->packed;
        float *o = c->out + r * c->cols;
        for (uint64_t j = 0; j < c->cols; j++) {
            uint64_t g = r * c->ngroups + j / c->group;
            float code = (float)((q[j / 2] >> ((j & 1) * 4)) & 15u);
            o[j] = (code - (float)c->zp[g]) * c->scale[g];
        }
    }
}

static void deq_fp8_worker(void *p, uint64_t i0, uint64_t i1, int tid) {
    deq_ctx *c = (deq_ctx *)p;
    float table[256];
    (void)tid;
    for (int b = 0; b < 256; b++) table[b] = mf_e4m3_to_f32((uint8_t)b);
    for (uint64_t i = i0; i < i1; i++) c->out[i] = table[c->q[i]] * c->fscale;
}

int mf_dequant_int8(const int8_t *q, const float *scale, uint64_t rows, uint64_t cols, float *out, int threads,
                    mf_error *err) {
    uint64_t n = 0;
    if (check_shape(MF_DT_FLOAT32, rows, cols, &n, err) || n == 0) return err->code;
    deq_ctx c = {(const uint8_t *)q, scale, NULL, cols, 0, 0, 0, 0.0f, out};
    parallel(rows, plan_threads(rows, cols, threads), deq_int8_worker, &c);
    return MF_OK;
}

int mf_dequant_int4(const uint8_t *q, const float *scale, const uint8_t *zp, uint64_t rows, uint64_t cols,
                    uint64_t group, float *out, int threads, mf_error *err) {
    uint64_t n = 0;
    if (check_shape(MF_DT_FLOAT32, rows, cols, &n, err) || n == 0) return err->code;
    if (group == 0) return mf_fail(err, MF_ERR_CORRUPT, 0, "group size must be at least 1");
    deq_ctx c = {q, scale, zp, cols, group, cols / group + (cols % group != 0), cols / 2 + (cols & 1), 0.0f, out};
    parallel(rows, plan_threads(rows, cols, threads), deq_int4_worker, &c);
    return MF_OK;
}

int mf_dequant_fp8(const uint8_t *q, float scale, uint64_t n, float *out, int threads, mf_error *err) {
    uint64_t dummy = 0;
    if (check_shape(MF_DT_FLOAT32, n, 1, &dummy, err) || n == 0) return err->code;
    deq_ctx c = {q, NULL, NULL, 0, 0, 0, 0, scale, out};
    parallel(n, plan_threads(n, 1, threads), deq_fp8_worker, &c);
    return MF_OK;
}
