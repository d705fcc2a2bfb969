/* Shared pieces of kldiv's compiled kernels: float32 exp and log that the compiler can
 * vectorize, widening of float16 and bfloat16, and a parallel loop over row ranges.
 *
 * exp and log are the Cephes single-precision polynomials (S. L. Moshier), written without
 * branches so that a loop calling them compiles to SIMD code; both are within 2 ulp of the
 * correctly rounded result over the whole float32 range and keep IEEE special values:
 * exp(-inf) = 0, exp(+inf) = +inf, log(0) = -inf, log(x < 0) = NaN, NaN in gives NaN out.
 * exp flushes results below e^-86 (4e-38) to 0; every caller exponentiates x - max x,
 * where such terms are below 1e-38 of the row's sum.
 *
 * Hot functions carry KLDIV_TARGETS: on x86-64 with GCC the compiler emits an AVX-512, an
 * AVX2 and a baseline copy and the loader picks the best one for the CPU at run time, so one
 * build runs everywhere at the speed of the machine it lands on. Compiling with -DKLDIV_PORTABLE
 * leaves out the copies and the run-time choices (F16C in compare.c), so that a build with
 * -march=x86-64 tests the code a baseline CPU runs.
 */
#ifndef KLDIV_NATIVE_COMMON_H
#define KLDIV_NATIVE_COMMON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__) && \
    !defined(KLDIV_PORTABLE)
#define KLDIV_TARGETS __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define KLDIV_TARGETS
#endif

#define KLDIV_INLINE static inline __attribute__((always_inline))

KLDIV_INLINE float kl_bits_to_float(uint32_t bits) {
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

KLDIV_INLINE uint32_t kl_float_to_bits(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

/* x's bits as an integer that orders as x does (-0 just below +0), and INT32_MIN for NaN.
 * A row's maximum is taken over these keys: GCC vectorizes integer maxima, but not the float
 * select `x > m ? x : m` unless it may assume away NaN and signed zeros. NaN is masked in
 * with bit operations, which stay vectorizable where a select feeding the maximum does not. */
KLDIV_INLINE int32_t kl_order_key(float x) {
    uint32_t bits = kl_float_to_bits(x);
    int32_t key = (int32_t)(bits ^ ((uint32_t)((int32_t)bits >> 31) & 0x7fffffffu));
    int32_t nan = -(int32_t)((bits & 0x7fffffffu) > 0x7f800000u); /* all ones for NaN */
    return (key & ~nan) | (INT32_MIN & nan);
}

/* The float whose kl_order_key is `key` (not INT32_MIN). */
KLDIV_INLINE float kl_order_value(int32_t key) {
    return kl_bits_to_float((uint32_t)key ^ ((uint32_t)(key >> 31) & 0x7fffffffu));
}

/* a where mask is all ones, b where it is 0, by bit operations (no branch, no float compare). */
KLDIV_INLINE float kl_select(uint32_t mask, float a, float b) {
    return kl_bits_to_float((kl_float_to_bits(a) & mask) | (kl_float_to_bits(b) & ~mask));
}

/* 1 where x is inf or NaN, else 0. */
KLDIV_INLINE uint32_t kl_not_finite(float x) {
    return (kl_float_to_bits(x) & 0x7fffffffu) >= 0x7f800000u;
}

/* e^r for x already clamped to [-86, log FLT_MAX], where x = n ln 2 + r with |r| <= ln(2)/2:
 * r and n by kl_exp_range, e^r by a degree-7 polynomial (kl_exp_poly). The polynomial is evaluated in pairs of terms (Estrin's
 * scheme) rather than by Horner's rule: a chain of 3 dependent multiply-adds instead of 6, so
 * that a core with a small reorder window keeps several entries in flight (the results agree
 * with Horner's to within 0.02 ulp over every input). */
KLDIV_INLINE float kl_exp_range(float clamped, int32_t *n_out) {
    const float round_shift = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float shifted = clamped * 1.44269504088896341f + round_shift;
    float n = shifted - round_shift;
    *n_out = (int32_t)(kl_float_to_bits(shifted) - kl_float_to_bits(round_shift));
    float r = clamped - n * 0.693359375f;
    return r + n * 2.12194440e-4f;
}

/* e^r for |r| <= ln(2)/2 (see kl_exp_reduced). */
KLDIV_INLINE float kl_exp_poly(float r) {
    float r2 = r * r;
    float p01 = 1.6666665459e-1f * r + 5.0000001201e-1f;
    float p23 = 8.3334519073e-3f * r + 4.1665795894e-2f;
    float p45 = 1.9875691500e-4f * r + 1.3981999507e-3f;
    float poly = (p45 * r2 + p23) * r2 + p01;
    return poly * r2 + r + 1.0f;
}

KLDIV_INLINE float kl_exp_reduced(float clamped, int32_t *n_out) {
    return kl_exp_poly(kl_exp_range(clamped, n_out));
}

/* e^x for x already clamped to [-86, log FLT_MAX]: e^r 2^n, with 2^n from exponent bits as
 * 2^(n-1) * 2, so that n = 128 just below the overflow threshold stays finite. */
KLDIV_INLINE float kl_exp_clamped(float clamped) {
    int32_t n;
    float e_r = kl_exp_reduced(clamped, &n);
    return e_r * kl_bits_to_float((uint32_t)(n + 126) << 23) * 2.0f;
}

#define KL_EXP_LOWEST (-86.0f)
#define KL_EXP_HIGHEST 88.7228391f /* log FLT_MAX */

/* e^x, with e^-inf = 0, e^inf = inf and NaN kept. */
KLDIV_INLINE float kl_expf(float x) {
    float clamped = x < KL_EXP_LOWEST ? KL_EXP_LOWEST : x;
    clamped = clamped > KL_EXP_HIGHEST ? KL_EXP_HIGHEST : clamped;
    float result = kl_exp_clamped(clamped);
    result = x < KL_EXP_LOWEST ? 0.0f : result;
    result = x > KL_EXP_HIGHEST ? (float)INFINITY : result;
    return x != x ? x : result;
}

/* e^x for finite x <= 0 (x - max x), without the branches for NaN, inf and overflow; the same
 * results as kl_expf there. */
/* r and 2^n of kl_expf_nonpositive (x = n ln 2 + r), with 2^n = 0 where e^x is 0: e^x is
 * kl_exp_poly(r) times that scale. For loops that take the two halves apart. */
KLDIV_INLINE float kl_exp_nonpositive_range(float x, float *scale) {
    int32_t n; /* -124 <= n <= 0: 2^n is a normal float */
    float r = kl_exp_range(x < KL_EXP_LOWEST ? KL_EXP_LOWEST : x, &n);
    *scale = x < KL_EXP_LOWEST ? 0.0f : kl_bits_to_float((uint32_t)(n + 127) << 23);
    return r;
}

KLDIV_INLINE float kl_expf_nonpositive(float x) {
    int32_t n; /* -124 <= n <= 0: 2^n is a normal float, without kl_exp_clamped's split */
    float e_r = kl_exp_reduced(x < KL_EXP_LOWEST ? KL_EXP_LOWEST : x, &n);
    float result = e_r * kl_bits_to_float((uint32_t)(n + 127) << 23);
    return x < KL_EXP_LOWEST ? 0.0f : result;
}

/* log of a positive normal float whose binary exponent is to be lowered by `shift`: x = m 2^e
 * with sqrt(1/2) <= m < sqrt(2), log m by a degree-9 polynomial in f = m - 1. m and e come from
 * integer arithmetic on the bits (offsetting them by those of sqrt(1/2) moves the boundary of
 * the exponent field there; kl_log_range), with no select for the compiler to turn into a
 * second copy of the polynomial (kl_log_poly). The polynomial goes by Estrin's scheme, as in kl_exp_clamped: 4 dependent
 * multiply-adds instead of 9 (within 0.02 ulp of Horner's rule over every normal input). */
KLDIV_INLINE float kl_log_range(float x, int32_t shift, float *exponent) {
    const uint32_t sqrt_half = 0x3f3504f3u; /* sqrt(1/2) rounded to float32 */
    uint32_t offset = kl_float_to_bits(x) - sqrt_half;
    *exponent = (float)(((int32_t)offset >> 23) - shift); /* arithmetic shift: floor */
    return kl_bits_to_float((offset & 0x007fffffu) + sqrt_half) - 1.0f;
}

/* log(1 + f) + e log 2 for f and e from kl_log_range. */
KLDIV_INLINE float kl_log_poly(float f, float fe) {
    float z = f * f, z2 = z * z;
    float p01 = -2.4999993993e-1f * f + 3.3333331174e-1f;
    float p23 = -1.6668057665e-1f * f + 2.0000714765e-1f;
    float p45 = -1.2420140846e-1f * f + 1.4249322787e-1f;
    float p67 = -1.1514610310e-1f * f + 1.1676998740e-1f;
    float low = p23 * z + p01, high = 7.0376836292e-2f * z2 + (p67 * z + p45);
    float poly = high * z2 + low;
    /* f - f^2/2 + f^3 poly(f) + e ln 2, the small terms first, ln 2 in two parts. */
    float y = poly * (f * z) + (fe * -2.12194440e-4f - 0.5f * z);
    return f + y + fe * 0.693359375f;
}

KLDIV_INLINE float kl_log_shifted(float x, int32_t shift) {
    float fe;
    float f = kl_log_range(x, shift, &fe);
    return kl_log_poly(f, fe);
}

/* log x, with log 0 = -inf, log x<0 = NaN, log inf = inf and NaN kept. */
KLDIV_INLINE float kl_logf(float x) {
    int subnormal = x < 1.17549435e-38f;
    /* 2^23 brings subnormals to the normal range. */
    float result = kl_log_shifted(x * (subnormal ? 8388608.0f : 1.0f), subnormal ? 23 : 0);
    result = x == 0.0f ? -(float)INFINITY : result;
    result = x < 0.0f ? (float)NAN : result;
    result = x == (float)INFINITY ? x : result;
    return x != x ? x : result;
}

/* log x for normal finite x > 0, without kl_logf's branches; the same results there. */
KLDIV_INLINE float kl_logf_normal(float x) { return kl_log_shifted(x, 0); }

/* IEEE binary16 to float32, exact for every value (subnormals, infinities, NaN payloads). */
KLDIV_INLINE float kl_half_to_float(uint16_t half) {
    uint32_t sign = (uint32_t)(half & 0x8000u) << 16;
    uint32_t magnitude = half & 0x7fffu;
    /* Shifted into float32's fields, the magnitude is the value times 2^-112, subnormals included. */
    uint32_t bits = kl_float_to_bits(kl_bits_to_float(magnitude << 13) * 0x1p112f);
    bits = magnitude >= 0x7c00u ? (bits | 0x7f800000u) : bits;
    return kl_bits_to_float(bits | sign);
}

KLDIV_INLINE float kl_bfloat16_to_float(uint16_t value) {
    return kl_bits_to_float((uint32_t)value << 16);
}

/* Element types of an input, as the Python side passes them. */
enum kl_dtype { KL_FLOAT32 = 0, KL_FLOAT16 = 1, KL_BFLOAT16 = 2 };

/* Widen n entries of type `dtype` at `source` to float32 at `target`. */
KLDIV_INLINE void kl_widen(float *restrict target, const void *restrict source, Py_ssize_t n,
                           int dtype) {
    if (dtype == KL_FLOAT16) {
        const uint16_t *half = (const uint16_t *)source;
        for (Py_ssize_t i = 0; i < n; ++i) target[i] = kl_half_to_float(half[i]);
    } else if (dtype == KL_BFLOAT16) {
        const uint16_t *brain = (const uint16_t *)source;
        for (Py_ssize_t i = 0; i < n; ++i) target[i] = kl_bfloat16_to_float(brain[i]);
    } else {
        memcpy(target, source, (size_t)n * sizeof(float));
    }
}

KLDIV_INLINE Py_ssize_t kl_dtype_size(int dtype) { return dtype == KL_FLOAT32 ? 4 : 2; }

/* Run task(context, begin, end) over [0, n) split into `threads` contiguous ranges, one on the
 * calling thread and the rest on new threads. Call it with the GIL released. */
typedef void (*kl_task)(void *context, Py_ssize_t begin, Py_ssize_t end);

struct kl_range_job {
    kl_task task;
    void *context;
    Py_ssize_t begin, end;
};

static void *kl_run_range(void *argument) {
    struct kl_range_job *job = (struct kl_range_job *)argument;
    job->task(job->context, job->begin, job->end);
    return NULL;
}

#define KL_MAX_THREADS 256

static void kl_parallel_for(int threads, Py_ssize_t n, kl_task task, void *context) {
    if (threads > KL_MAX_THREADS) threads = KL_MAX_THREADS;
    if (threads > n) threads = (int)n;
    if (threads <= 1) {
        if (n > 0) task(context, 0, n);
        return;
    }
    struct kl_range_job jobs[KL_MAX_THREADS];
    pthread_t handles[KL_MAX_THREADS];
    int started[KL_MAX_THREADS];
    for (int t = 0; t < threads; ++t) {
        jobs[t].task = task;
        jobs[t].context = context;
        jobs[t].begin = n * t / threads;
        jobs[t].end = n * (t + 1) / threads;
    }
    for (int t = 1; t < threads; ++t)
        started[t] = pthread_create(&handles[t], NULL, kl_run_range, &jobs[t]) == 0;
    kl_run_range(&jobs[0]);
    for (int t = 1; t < threads; ++t) {
        if (started[t])
            pthread_join(handles[t], NULL);
        else
            kl_run_range(&jobs[t]); /* no thread to be had: do its share here */
    }
}

/* Turn on flush-to-zero for subnormal results (x86-64: MXCSR.FTZ, not DAZ, so subnormal inputs
 * are still read as they are); returns the state to restore. A normalized probability of a
 * row whose logits spread over more than about 86 - log(n) is subnormal, and an Intel core
 * takes a microcode assist of about 100 cycles for each subnormal result. */
KLDIV_INLINE unsigned int flush_subnormals_begin(void) {
#if defined(__x86_64__) || defined(_M_X64)
    unsigned int state = _mm_getcsr();
    _mm_setcsr(state | _MM_FLUSH_ZERO_ON);
    return state;
#else
    return 0u;
#endif
}

KLDIV_INLINE void flush_subnormals_end(unsigned int state) {
#if defined(__x86_64__) || defined(_M_X64)
    _mm_setcsr(state);
#else
    (void)state;
#endif
}

#endif /* KLDIV_NATIVE_COMMON_H */
