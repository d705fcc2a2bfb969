/* Every per-position statistic of `kldiv compare` for rows of logits, in three passes per row
 * over the row's own data (which stays in the core's L2 cache):
 *
 *   1. widen both rows, find each maximum and its first index, and note any inf or NaN;
 *   2. e = exp(x - max x) for both sides, kept in float32 scratch, with their sums S;
 *   3. with log p = x - max x - log S (and the same for q), d = log p - log q:
 *        KL(p||q) = sum p d,  KL(q||p) = -sum q d,
 *        JSD = 1/2 sum (p log(2p / (p + q)) + q log(2q / (p + q))),
 *      each JSD term by a series in d where |d| < 1/2 (see pass3_entry).
 *
 * d is formed from the two rows' entries relative to their maxima, so the entries that carry
 * the mass (near the maximum) give d without cancellation against large log-probabilities.
 * Sums run in float32 lanes over blocks of KL_BLOCK entries and are added to float64 after each
 * block, so that the results match float64 references to float32's resolution of the terms.
 *
 * Where p + q underflows to 0 both terms are 0, and are taken as 0 (their float64 value is
 * below 1e-38). A row with an inf or NaN entry, or with a result that is not finite, is flagged
 * for the caller to recompute exactly (-inf logits mean zero probability and need masks) or to
 * report (NaN, +inf).
 */
/* Multiply-adds fused into FMA instructions (ISO C mode turns contraction off): about a sixth
 * fewer instructions in exp and log, and each fused step rounds once instead of twice. */
#pragma GCC optimize("fp-contract=fast")

#include "common.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

#define KL_LANES 16
#define KL_LN2 0.693147180559945309417232121458176568
#define KL_BLOCK 256 /* entries summed in float32 before the lanes go into float64 */

struct row_result {
    double kld, reverse, jsd, label_base, label_test, log_total_a, log_total_b;
    int agree, exact;
};

/* Entry i of a row stored as `dtype`, widened to float32. */
KLDIV_INLINE float load_entry(const void *row, Py_ssize_t i, int dtype) {
    if (dtype == KL_FLOAT16) return kl_half_to_float(((const uint16_t *)row)[i]);
    if (dtype == KL_BFLOAT16) return kl_bfloat16_to_float(((const uint16_t *)row)[i]);
    return ((const float *)row)[i];
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(KLDIV_PORTABLE)
#include <immintrin.h>
#define KL_HAVE_F16C 1
/* Set at import where the CPU has AVX2 and F16C. */
static int kl_use_f16c = 0;

/* float16 widening by the F16C instruction (8 entries per instruction, against a few integer
 * and float operations per vector for kl_half_to_float), with the row's maximum and a NaN sum
 * that is NaN where an entry is inf or NaN. */
__attribute__((target("avx2,f16c"))) static float widen_half_f16c(const uint16_t *row,
                                                                  Py_ssize_t n, float *out,
                                                                  int *non_finite) {
    __m256 top = _mm256_set1_ps(-(float)INFINITY), poison = _mm256_setzero_ps();
    const __m256 zero = _mm256_setzero_ps();
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + i)));
        _mm256_storeu_ps(out + i, x);
        top = _mm256_max_ps(x, top); /* a NaN x keeps top: the row is flagged anyway */
        poison = _mm256_add_ps(poison, _mm256_mul_ps(x, zero));
    }
    float tops[8], bads[8];
    _mm256_storeu_ps(tops, top);
    _mm256_storeu_ps(bads, poison);
    float best = -(float)INFINITY, bad = 0.0f;
    for (int j = 0; j < 8; ++j) {
        best = tops[j] > best ? tops[j] : best;
        bad += bads[j];
    }
    for (; i < n; ++i) {
        float x = kl_half_to_float(row[i]);
        out[i] = x;
        best = x > best ? x : best;
        bad += x * 0.0f;
    }
    *non_finite = bad != 0.0f;
    return best;
}
#endif

/* Widen a row into `out` (float32 rows are read in place: `out` may be NULL for them); return
 * the float32 row, its maximum and whether any entry is inf or NaN. */
KLDIV_INLINE const float *row_widen(const void *row, Py_ssize_t n, int dtype,
                                    float *restrict out, float *maximum, int *non_finite) {
    const float *x = dtype == KL_FLOAT32 ? (const float *)row : out;
#ifdef KL_HAVE_F16C
    if (dtype == KL_FLOAT16 && kl_use_f16c) {
        *maximum = widen_half_f16c((const uint16_t *)row, n, out, non_finite);
        return x;
    }
#endif
    /* The maximum over order keys (see common.h), in one flat loop that vectorizes as
     * integer reductions; NaN entries are left out of it (the row is flagged anyway), and a
     * row of NaN has maximum -inf. */
    int32_t best = kl_order_key(-(float)INFINITY);
    uint32_t bad = 0;
    for (Py_ssize_t i = 0; i < n; ++i) {
        float value = load_entry(row, i, dtype);
        if (dtype != KL_FLOAT32) out[i] = value;
        int32_t key = kl_order_key(value);
        best = key > best ? key : best;
        bad |= kl_not_finite(value);
    }
    *non_finite = bad != 0;
    *maximum = kl_order_value(best);
    return x;
}

/* The index of the first entry equal to `value` (0 if none: a row of NaN, flagged anyway),
 * found a block at a time with vectorized comparisons. */
KLDIV_INLINE Py_ssize_t first_index(const float *x, Py_ssize_t n, float value) {
    Py_ssize_t i = 0;
    for (; i + KL_BLOCK <= n; i += KL_BLOCK) {
        int32_t hit[KL_LANES] = {0};
        for (Py_ssize_t k = i; k < i + KL_BLOCK; k += KL_LANES)
            for (int j = 0; j < KL_LANES; ++j) hit[j] |= x[k + j] == value;
        int32_t any = 0;
        for (int j = 0; j < KL_LANES; ++j) any |= hit[j];
        if (any) break;
    }
    for (; i < n; ++i)
        if (x[i] == value) return i;
    return 0;
}

/* e = exp(x - top) into `out` for both rows, with the sums of e. The two rows go through one
 * loop: their exponentials are independent chains of dependent multiply-adds, and a core
 * whose reorder window holds few vector instructions (AMD Zen 1 and 2 split each 256-bit one
 * in two) overlaps them instead of waiting on one. */
KLDIV_INLINE void rows_exp(const float *restrict a, const float *restrict b, Py_ssize_t n,
                           float top_a, float top_b, float *restrict out_a,
                           float *restrict out_b, double sums[2]) {
    double total_a[KL_LANES] = {0}, total_b[KL_LANES] = {0};
    Py_ssize_t i = 0;
    while (i + KL_LANES <= n) {
        float block_a[KL_LANES] = {0}, block_b[KL_LANES] = {0};
        Py_ssize_t start = i, stop = i + KL_BLOCK <= n ? i + KL_BLOCK : n - (n - i) % KL_LANES;
        /* The range reduction and the polynomial in two loops over the block, r kept in
         * `out` and the scales 2^n on the stack: two short chains of dependent operations
         * instead of one long one (see row_sums). */
        float scale_a[KL_BLOCK], scale_b[KL_BLOCK];
        for (Py_ssize_t k = start; k < stop; ++k) {
            out_a[k] = kl_exp_nonpositive_range(a[k] - top_a, &scale_a[k - start]);
            out_b[k] = kl_exp_nonpositive_range(b[k] - top_b, &scale_b[k - start]);
        }
        for (; i < stop; i += KL_LANES) {
            for (int j = 0; j < KL_LANES; ++j) {
                float ea = kl_exp_poly(out_a[i + j]) * scale_a[i + j - start];
                float eb = kl_exp_poly(out_b[i + j]) * scale_b[i + j - start];
                out_a[i + j] = ea;
                out_b[i + j] = eb;
                block_a[j] += ea;
                block_b[j] += eb;
            }
        }
        for (int j = 0; j < KL_LANES; ++j) {
            total_a[j] += block_a[j];
            total_b[j] += block_b[j];
        }
    }
    double sum_a = 0.0, sum_b = 0.0;
    for (; i < n; ++i) {
        float ea = kl_expf_nonpositive(a[i] - top_a);
        float eb = kl_expf_nonpositive(b[i] - top_b);
        out_a[i] = ea;
        out_b[i] = eb;
        sum_a += ea;
        sum_b += eb;
    }
    for (int j = 0; j < KL_LANES; ++j) {
        sum_a += total_a[j];
        sum_b += total_b[j];
    }
    sums[0] = sum_a;
    sums[1] = sum_b;
}

/* The constants of pass 3: log p = (x_a - top_a) - log_a, log q = (x_b - top_b) - log_b,
 * d = (x_a - top_a) - (x_b - top_b) - gap with gap = log_a - log_b, p = e_a inverse_a, and
 * shift_a = log_a - log 2 (so that log 2p = (x_a - top_a) - shift_a), the same for b. */
struct pass3 {
    float top_a, top_b, gap, shift_a, shift_b, inverse_a, inverse_b;
};

/* log(p + q) of an entry. Where p + q is 0 or subnormal, both JSD terms are below 1e-38:
 * FLT_MIN keeps them finite. */
KLDIV_INLINE float mixture_log_range(float ea, float eb, const struct pass3 *c,
                                     float *exponent) {
    float m = ea * c->inverse_a + eb * c->inverse_b;
    return kl_log_range(m > FLT_MIN ? m : FLT_MIN, 0, exponent);
}

KLDIV_INLINE float mixture_log(float ea, float eb, const struct pass3 *c) {
    float exponent;
    float f = mixture_log_range(ea, eb, c, &exponent);
    return kl_log_poly(f, exponent);
}

/* One entry's terms, each weighted by e_a or e_b rather than by p or q: the caller scales the
 * sums by 1/S_a and 1/S_b once per row, which leaves half the multiplications. */
KLDIV_INLINE void pass3_entry(float xa, float xb, float ea, float eb, float log_m,
                              const struct pass3 *c, float *kl, float *reverse, float *js_a,
                              float *js_b) {
    float la = xa - c->top_a, lb = xb - c->top_b;
    float d = (la - lb) - c->gap;
    *kl += ea * d;      /* KL(p||q) = sum p d */
    *reverse += eb * d; /* KL(q||p) = -sum q d */
    /* The entry's share of the JSD is (p + q) h(d) / 4, with h(d) = g(tanh(d / 2)) and
     * g(u) = (1 + u) log(1 + u) + (1 - u) log(1 - u). Where |d| >= 1/2 it comes directly
     * from the logarithms, as (p log(2p / m) + q log(2q / m)) / 2 with m = p + q; where |d|
     * is smaller, by h's series, since there the direct form loses the small result against
     * terms of size log 2 (near-identical distributions): (p + q) h(d) / 4 is p w / 2 + q w / 2
     * with w = h(d) / 2. */
    float s = d * d;
    /* All ones where the series applies; a select by bits, which vectorizes as a blend. */
    uint32_t near = (uint32_t)0 - (uint32_t)(s < 0.25f);
    s = s < 0.25f ? s : 0.25f; /* keeps the unused series finite */
    float s2 = s * s;          /* w's polynomial in s by Estrin's scheme, as in common.h */
    float w = (((-17.0f / 92160.0f * s + 1.0f / 576.0f) + 31.0f / 1612800.0f * s2) * s2 +
               (-1.0f / 64.0f * s + 1.0f / 8.0f)) *
              s;
    float wa = kl_select(near, w, (la - c->shift_a) - log_m);
    float wb = kl_select(near, w, (lb - c->shift_b) - log_m);
    *js_a += ea * wa;
    *js_b += eb * wb;
}

/* The sums of pass 3 over a row, with the weights e of pass 2: sum e_a d, sum e_b d, and the
 * JSD's two weighted sums (see pass3_entry). */
KLDIV_INLINE void row_sums(const float *restrict a, const float *restrict b, Py_ssize_t n,
                           const float *restrict ea, const float *restrict eb,
                           const struct pass3 *c, double sums[4]) {
    double kl_total[KL_LANES] = {0}, reverse_total[KL_LANES] = {0};
    double js_a_total[KL_LANES] = {0}, js_b_total[KL_LANES] = {0};
    Py_ssize_t i = 0;
    while (i + KL_LANES <= n) {
        float kl[KL_LANES] = {0}, reverse[KL_LANES] = {0}, js_a[KL_LANES] = {0},
              js_b[KL_LANES] = {0};
        Py_ssize_t start = i, stop = i + KL_BLOCK <= n ? i + KL_BLOCK : n - (n - i) % KL_LANES;
        /* The block's logarithms first, in a loop of their own: each is a long chain of
         * dependent operations, and a loop that holds only them keeps several entries' chains
         * in a small reorder window, where the full entry would hold one at a time. */
        float logs[KL_BLOCK], exponents[KL_BLOCK];
        for (Py_ssize_t k = start; k < stop; ++k)
            logs[k - start] = mixture_log_range(ea[k], eb[k], c, &exponents[k - start]);
        for (Py_ssize_t k = 0; k < stop - start; ++k) logs[k] = kl_log_poly(logs[k], exponents[k]);
        for (; i < stop; i += KL_LANES) {
            for (int j = 0; j < KL_LANES; ++j)
                pass3_entry(a[i + j], b[i + j], ea[i + j], eb[i + j], logs[i + j - start], c,
                            &kl[j], &reverse[j], &js_a[j], &js_b[j]);
        }
        for (int j = 0; j < KL_LANES; ++j) {
            kl_total[j] += kl[j];
            reverse_total[j] += reverse[j];
            js_a_total[j] += js_a[j];
            js_b_total[j] += js_b[j];
        }
    }
    double kl_sum = 0.0, reverse_sum = 0.0, js_a_sum = 0.0, js_b_sum = 0.0;
    for (; i < n; ++i) {
        float kl = 0.0f, reverse = 0.0f, js_a = 0.0f, js_b = 0.0f;
        pass3_entry(a[i], b[i], ea[i], eb[i], mixture_log(ea[i], eb[i], c), c, &kl, &reverse,
                    &js_a, &js_b);
        kl_sum += kl;
        reverse_sum += reverse;
        js_a_sum += js_a;
        js_b_sum += js_b;
    }
    for (int j = 0; j < KL_LANES; ++j) {
        kl_sum += kl_total[j];
        reverse_sum += reverse_total[j];
        js_a_sum += js_a_total[j];
        js_b_sum += js_b_total[j];
    }
    sums[0] = kl_sum;
    sums[1] = reverse_sum;
    sums[2] = js_a_sum;
    sums[3] = js_b_sum;
}

/* Scratch of one thread: the widened rows (float16 and bfloat16 only) and e for both sides. */
struct scratch {
    float *wide_a, *wide_b, *ea, *eb;
};

KLDIV_INLINE void compare_row(const void *a_row, const void *b_row, Py_ssize_t n, int dtype,
                              int64_t label, const struct scratch *work,
                              struct row_result *out) {
    float top_a, top_b;
    int bad_a, bad_b;
    const float *a = row_widen(a_row, n, dtype, work->wide_a, &top_a, &bad_a);
    const float *b = row_widen(b_row, n, dtype, work->wide_b, &top_b, &bad_b);
    out->agree = first_index(a, n, top_a) == first_index(b, n, top_b);
    if (bad_a || bad_b) {
        out->exact = 1;
        out->kld = out->reverse = out->jsd = NAN;
        out->label_base = out->label_test = NAN;
        out->log_total_a = out->log_total_b = NAN;
        return;
    }
    double totals[2];
    rows_exp(a, b, n, top_a, top_b, work->ea, work->eb, totals);
    double total_a = totals[0], total_b = totals[1];
    double log_a = log(total_a), log_b = log(total_b);
    /* The rows' log-sum-exp, which tells the caller whether log-probabilities normalize. */
    out->log_total_a = (double)top_a + log_a;
    out->log_total_b = (double)top_b + log_b;
    struct pass3 c = {top_a,
                      top_b,
                      (float)(log_a - log_b),
                      (float)(log_a - KL_LN2),
                      (float)(log_b - KL_LN2),
                      (float)(1.0 / total_a),
                      (float)(1.0 / total_b)};
    double sums[4];
    row_sums(a, b, n, work->ea, work->eb, &c, sums);
    out->kld = sums[0] / total_a;
    out->reverse = -sums[1] / total_b;
    out->jsd = 0.5 * (sums[2] / total_a + sums[3] / total_b);
    if (label >= 0 && label < n) {
        out->label_base = (double)a[label] - top_a - log_a;
        out->label_test = (double)b[label] - top_b - log_b;
    } else {
        out->label_base = out->label_test = NAN;
    }
    out->exact = !(isfinite(out->kld) && isfinite(out->reverse) && isfinite(out->jsd));
}

/* One copy of the row loop per element type, so that the widening is resolved at compile time
 * and every pass vectorizes. */
#define DEFINE_ROWS(NAME, DTYPE)                                                              \
    KLDIV_TARGETS                                                                             \
    static void NAME(const char *a, const char *b, Py_ssize_t n, const int64_t *labels,       \
                     Py_ssize_t begin, Py_ssize_t end, const struct scratch *work,            \
                     struct row_result *out) {                                                \
        Py_ssize_t stride = n * kl_dtype_size(DTYPE);                                         \
        for (Py_ssize_t r = begin; r < end; ++r)                                              \
            compare_row(a + r * stride, b + r * stride, n, DTYPE, labels ? labels[r] : -1,    \
                        work, &out[r]);                                                       \
    }
DEFINE_ROWS(rows_float32, KL_FLOAT32)
DEFINE_ROWS(rows_float16, KL_FLOAT16)
DEFINE_ROWS(rows_bfloat16, KL_BFLOAT16)

/* Threads claim rows a batch at a time, so that a core shared with another process does
 * fewer rows instead of holding up the chunk. */
struct compare_job {
    const char *a, *b;
    Py_ssize_t vocab, rows, batch;
    Py_ssize_t next; /* the first row no thread has claimed (atomic) */
    int dtype;
    const int64_t *labels;
    struct row_result *results;
};

static void compare_worker(void *context, Py_ssize_t worker_begin, Py_ssize_t worker_end) {
    (void)worker_begin;
    (void)worker_end;
    struct compare_job *job = (struct compare_job *)context;
    size_t bytes = ((size_t)job->vocab * sizeof(float) + 63) / 64 * 64;
    char *memory = (char *)aligned_alloc(64, 4 * bytes);
    if (memory == NULL) return; /* the other threads take its rows; if none can, the caller
                                   sees rows left unclaimed */
    struct scratch work = {(float *)memory, (float *)(memory + bytes),
                           (float *)(memory + 2 * bytes), (float *)(memory + 3 * bytes)};
    /* Subnormal terms (probabilities below 1.2e-38) are flushed to 0; see common.h. */
    unsigned int floating_state = flush_subnormals_begin();
    for (;;) {
        Py_ssize_t begin = __atomic_fetch_add(&job->next, job->batch, __ATOMIC_RELAXED);
        if (begin >= job->rows) break;
        Py_ssize_t end = begin + job->batch < job->rows ? begin + job->batch : job->rows;
        if (job->dtype == KL_FLOAT16)
            rows_float16(job->a, job->b, job->vocab, job->labels, begin, end, &work,
                         job->results);
        else if (job->dtype == KL_BFLOAT16)
            rows_bfloat16(job->a, job->b, job->vocab, job->labels, begin, end, &work,
                          job->results);
        else
            rows_float32(job->a, job->b, job->vocab, job->labels, begin, end, &work,
                         job->results);
    }
    flush_subnormals_end(floating_state);
    free(memory);
}

static int check_output(Py_buffer *buffer, Py_ssize_t rows, Py_ssize_t item, const char *name) {
    if (buffer->len != rows * item) {
        PyErr_Format(PyExc_ValueError, "%s must hold %zd entries of %zd bytes, not %zd bytes",
                     name, rows, item, buffer->len);
        return 0;
    }
    return 1;
}

static PyObject *logits(PyObject *self, PyObject *args) {
    Py_buffer a, b, labels = {0}, kld, reverse, jsd, agree, label_base, label_test, exact,
        log_totals;
    Py_ssize_t vocab;
    int dtype, threads;
    PyObject *labels_object;
    if (!PyArg_ParseTuple(args, "y*y*niOiw*w*w*w*w*w*w*w*", &a, &b, &vocab, &dtype,
                          &labels_object, &threads, &kld, &reverse, &jsd, &agree, &label_base,
                          &label_test, &exact, &log_totals))
        return NULL;
    Py_buffer *buffers[] = {&a,          &b,          &kld,   &reverse,   &jsd,
                            &agree,      &label_base, &label_test, &exact, &log_totals};
    PyObject *result = NULL;
    int have_labels = labels_object != Py_None;
    if (have_labels && PyObject_GetBuffer(labels_object, &labels, PyBUF_SIMPLE) < 0) goto done;
    if (dtype < KL_FLOAT32 || dtype > KL_BFLOAT16 || vocab < 1) {
        PyErr_SetString(PyExc_ValueError, "dtype must be 0, 1 or 2 and vocab positive");
        goto done;
    }
    Py_ssize_t row_bytes = vocab * kl_dtype_size(dtype);
    Py_ssize_t rows = a.len / row_bytes;
    if (a.len != b.len || a.len % row_bytes != 0) {
        PyErr_Format(PyExc_ValueError,
                     "base and test must hold the same whole number of rows of %zd entries",
                     vocab);
        goto done;
    }
    if (!check_output(&kld, rows, 8, "kld") || !check_output(&reverse, rows, 8, "reverse") ||
        !check_output(&jsd, rows, 8, "jsd") || !check_output(&agree, rows, 1, "agree") ||
        !check_output(&label_base, rows, 8, "label_base") ||
        !check_output(&label_test, rows, 8, "label_test") ||
        !check_output(&exact, rows, 1, "exact") ||
        !check_output(&log_totals, rows, 16, "log_totals") ||
        (have_labels && !check_output(&labels, rows, 8, "labels")))
        goto done;
    struct row_result *results = (struct row_result *)malloc((size_t)(rows ? rows : 1) *
                                                             sizeof(struct row_result));
    if (results == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    /* About 64K entries per claim: a few rows of a real vocabulary, many of a small one. */
    Py_ssize_t batch = vocab >= 65536 ? 1 : 65536 / vocab;
    struct compare_job job = {(const char *)a.buf,
                              (const char *)b.buf,
                              vocab,
                              rows,
                              batch,
                              0,
                              dtype,
                              have_labels ? (const int64_t *)labels.buf : NULL,
                              results};
    Py_ssize_t batches = (rows + batch - 1) / batch;
    int workers = threads < batches ? threads : (int)batches;
    workers = workers < 1 ? 1 : workers;
    Py_BEGIN_ALLOW_THREADS
    kl_parallel_for(workers, workers, compare_worker, &job);
    Py_END_ALLOW_THREADS
    if (job.next < rows) {
        free(results);
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t r = 0; r < rows; ++r) {
        ((double *)kld.buf)[r] = results[r].kld;
        ((double *)reverse.buf)[r] = results[r].reverse;
        ((double *)jsd.buf)[r] = results[r].jsd;
        ((uint8_t *)agree.buf)[r] = (uint8_t)results[r].agree;
        ((double *)label_base.buf)[r] = results[r].label_base;
        ((double *)label_test.buf)[r] = results[r].label_test;
        ((uint8_t *)exact.buf)[r] = (uint8_t)results[r].exact;
        ((double *)log_totals.buf)[2 * r] = results[r].log_total_a;
        ((double *)log_totals.buf)[2 * r + 1] = results[r].log_total_b;
    }
    free(results);
    result = Py_NewRef(Py_None);
done:
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; ++i) PyBuffer_Release(buffers[i]);
    if (have_labels && labels.obj != NULL) PyBuffer_Release(&labels);
    return result;
}

static PyMethodDef methods[] = {
    {"logits", logits, METH_VARARGS,
     "logits(base, test, vocab, dtype, labels, threads, kld, reverse, jsd, agree, label_base,\n"
     "label_test, exact, log_totals): per-row statistics of two C-contiguous buffers of logits.\n\n"
     "dtype: 0 float32, 1 float16, 2 bfloat16 (raw 16-bit patterns). labels: int64 per row\n"
     "(a negative label gives NaN) or None. Outputs: float64 per row, except agree and exact\n"
     "(one byte per row), and log_totals (two float64 per row: the log-sum-exp of base's and\n"
     "test's row); exact marks rows to recompute (inf or NaN entries, results not finite),\n"
     "whose other outputs are meaningless."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "kldiv._native.compare",
                                    "Fused per-row statistics of `kldiv compare` for logits.", -1,
                                    methods};

PyMODINIT_FUNC PyInit_compare(void) {
#ifdef KL_HAVE_F16C
    __builtin_cpu_init();
    kl_use_f16c = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
#endif
    return PyModule_Create(&module);
}
