/* Divergences between two sets of logits, value and gradient with respect to the student in
 * one pass over each row: the CPU kernel behind kldiv.torch's KLDivLoss (both directions) and
 * JSDLoss between logits when the target needs no gradient.
 *
 * With a = x/tau (student) and b = t/tau (teacher), q = softmax(a), p = softmax(b), and terms
 * with a zero weight counted as 0 (0 log 0 = 0):
 *
 *     forward  KL(P||Q):  D = sum p (log p - log q),  dD/dx = (q - p) * scale / tau
 *     reverse  KL(Q||P):  D = sum q r,   r = log q - log p,   dD/dx = q (r - D) * scale / tau
 *     JSD_beta:           D = beta sum p (log p - log m) + (1 - beta) sum q r,  r = log q - log m,
 *                         dD/dx = (1 - beta) q (r - sum q r) * scale / tau
 *
 * where log m = logaddexp(log beta + log p, log(1 - beta) + log q), the log of the mixture
 * M = beta P + (1 - beta) Q, finite wherever p or q is positive.
 *
 * Each row takes three or four sweeps: the two maxima; exp(a - max a) into the gradient row and
 * exp(b - max b) into a scratch row, with their sums; then for the forward KL the normalized
 * difference and the divergence terms, and for the other two the terms q r and q into the two
 * rows, and, once their sum is known, the gradient. Only the first sweep reads memory: a row of
 * both inputs and of the gradient (128 KiB each at vocab 32000) stays in the core's L2 cache
 * for the others. Sums are kept in float per lane over short runs and then in double, so that a
 * row of 10^5 terms loses no more than torch's float32 reduction does. A row with a NaN or +inf
 * logit, or with every logit -inf, has a NaN divergence and an all-NaN gradient.
 *
 * The gradient is written here for the first time, by the thread that owns its rows, so the
 * page faults of a fresh buffer (one per 4 KiB: 128 000 for 4096 x 32000 float32) are taken by
 * all threads at once.
 *
 * Transparent huge pages are not asked for unless KLDIV_HUGE_PAGES=1. The hint
 * (madvise(MADV_HUGEPAGE) on the fresh gradient) replaces 512 faults by one, but where
 * /sys/kernel/mm/transparent_hugepage/defrag is `madvise` (the Debian/Ubuntu default),
 * `defer+madvise` or `always`, each huge-page fault in an advised range compacts memory
 * synchronously when no free 2 MiB page is at hand, and on a machine with fragmented memory
 * that stalls: on a 2-core Sapphire Rapids VM the kernel took 1259 ms against 363 ms without
 * the hint, slower than the PyTorch path it replaces. Where it did not stall (AMD EPYC 7001
 * VM, defrag `madvise`, 22 GiB free, no compaction) it did not pay either: 4096 x 32000
 * float32, one thread, median system time per call 230 ms with 4 KiB faults and 806 ms with
 * huge pages faulted in by this kernel (250 huge-page faults, no compaction stall), although
 * a plain fill of an advised buffer took 69 ms there. A hint that loses where defrag compacts,
 * and was not measured to win in this kernel where it does not, stays opt-in.
 *
 * Subnormal floats: exp flushes below e^-86, so e = exp(a - max a) is 0 or normal, but the
 * normalized q = e / sum e of a row whose logits spread over more than 86 - log(vocab)
 * (about 76 at vocab 32000) can be subnormal, and so can differences and products of such
 * q and p. An Intel core takes a microcode assist (about 100 cycles) for each subnormal
 * result; AMD cores mostly do not. The float32 sweeps therefore run with flush-to-zero set
 * (x86-64: MXCSR.FTZ, restored before the row's result is narrowed or the call returns):
 * a result below 1.2e-38 becomes 0, a change below the float32 resolution of every row
 * sum. Subnormal inputs are still read as they are (no denormals-are-zero).
 */
#include "common.h"

#include <math.h>
#include <stdlib.h>
#include <sys/mman.h>

#define LANES 16
#define RUN 512 /* elements per float partial sum before it is added in double */

/* float32 to float16 and bfloat16, rounded to nearest even, NaN kept NaN. */
KLDIV_INLINE uint16_t kl_float_to_bfloat16(float value) {
    uint32_t bits = kl_float_to_bits(value);
    uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
    uint32_t quiet = (bits >> 16) | 0x40u;
    return (uint16_t)(value != value ? quiet : rounded);
}

KLDIV_INLINE uint16_t kl_float_to_half(float value) {
#if defined(__FLT16_MAX__)
    _Float16 half = (_Float16)value;
    uint16_t bits;
    memcpy(&bits, &half, sizeof bits);
    return bits;
#else
    /* Portable fallback: round through the float32 bit pattern. */
    uint32_t bits = kl_float_to_bits(value);
    uint32_t sign = (bits >> 16) & 0x8000u;
    uint32_t magnitude = bits & 0x7fffffffu;
    if (magnitude > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
    if (magnitude >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to inf */
    if (magnitude < 0x38800000u) {                                      /* subnormal or 0 */
        float scaled = kl_bits_to_float(magnitude) * 0x1p24f;          /* units of 2^-24 */
        return (uint16_t)(sign | (uint32_t)lrintf(scaled));
    }
    uint32_t rounded = magnitude + 0xfffu + ((magnitude >> 13) & 1u);
    return (uint16_t)(sign | ((rounded - 0x38000000u) >> 13));
#endif
}

/* Which divergence a job computes, as the Python side passes it. */
enum divergence { FORWARD = 0, REVERSE = 1, JSD = 2 };

struct logits_job {
    const char *input, *target; /* (rows, vocab) logits of `dtype` */
    char *grad;                 /* (rows, vocab) of `dtype`, written */
    float *out;                 /* (rows,) divergences, written */
    const uint8_t *mask;        /* (rows,) bool, or NULL: False rows get 0 and zero gradient */
    const float *scale;         /* (rows,) gradient factors, or NULL for 1 */
    Py_ssize_t vocab;
    int dtype;
    int divergence;
    float inv_temperature;
    double beta; /* JSD: the teacher's weight in the mixture, in (0, 1); 0 otherwise */
    Py_ssize_t rows, batch;
    Py_ssize_t next; /* the first row no thread has claimed (atomic) */
};

/* Maxima of a and b over a row, ignoring NaN (a NaN reaches the sums through exp). */
KLDIV_TARGETS
static void row_maxima(const float *restrict x, const float *restrict t, Py_ssize_t n,
                       float inv_temperature, float *max_a, float *max_b) {
    /* Over order keys (see common.h), in a flat loop that vectorizes as integer maxima; NaN
     * keys are the lowest, below -inf's. */
    int32_t ka = kl_order_key(-(float)INFINITY), kb = ka;
    for (Py_ssize_t i = 0; i < n; ++i) {
        int32_t a = kl_order_key(x[i] * inv_temperature);
        int32_t b = kl_order_key(t[i] * inv_temperature);
        ka = a > ka ? a : ka;
        kb = b > kb ? b : kb;
    }
    float ra = kl_order_value(ka), rb = kl_order_value(kb);
    *max_a = ra;
    *max_b = rb;
}

/* eq = exp(a - max a), ep = exp(b - max b) over n <= RUN entries; their float sums. */
KLDIV_TARGETS
static void row_exponentials(const float *restrict x, const float *restrict t,
                             float *restrict eq, float *restrict ep, Py_ssize_t n,
                             float inv_temperature, float max_a, float max_b, float *sum_q,
                             float *sum_p) {
    float sq[LANES] = {0}, sp[LANES] = {0};
    Py_ssize_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        for (int l = 0; l < LANES; ++l) {
            float q = kl_expf(x[i + l] * inv_temperature - max_a);
            float p = kl_expf(t[i + l] * inv_temperature - max_b);
            eq[i + l] = q;
            ep[i + l] = p;
            sq[l] += q;
            sp[l] += p;
        }
    }
    for (; i < n; ++i) {
        float q = kl_expf(x[i] * inv_temperature - max_a);
        float p = kl_expf(t[i] * inv_temperature - max_b);
        eq[i] = q;
        ep[i] = p;
        sq[0] += q;
        sp[0] += p;
    }
    float rq = 0.0f, rp = 0.0f;
    for (int l = 0; l < LANES; ++l) {
        rq += sq[l];
        rp += sp[l];
    }
    *sum_q = rq;
    *sum_p = rp;
}

/* What the sweeps after the exponentials need to know about a row. */
struct row_constants {
    float inv_temperature;
    float max_a, max_b;         /* maxima of a and b */
    float inv_sum_q, inv_sum_p; /* 1 / sum exp(a - max a), 1 / sum exp(b - max b) */
    float log_sum_q, log_sum_p; /* their logs: log q = (a - max a) - log_sum_q */
    float shift;                /* lse(b) - lse(a), which every log p - log q shares */
    float log_beta, log_beta_complement; /* JSD: log beta, log(1 - beta) */
};

/* Forward KL: g = (eq/S_q - ep/S_p) * factor written over eq; returns the float sum of the
 * terms p ((b - a) - shift) over n <= RUN entries, 0 where p = 0. */
KLDIV_TARGETS
static float row_forward(const float *restrict x, const float *restrict t, float *restrict eq,
                         const float *restrict ep, Py_ssize_t n,
                         const struct row_constants *row, float factor) {
    const float tau_inv = row->inv_temperature, shift = row->shift;
    const float inv_sum_q = row->inv_sum_q, inv_sum_p = row->inv_sum_p;
    float terms[LANES] = {0};
    Py_ssize_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        for (int l = 0; l < LANES; ++l) {
            float q = eq[i + l] * inv_sum_q, p = ep[i + l] * inv_sum_p;
            float ratio = (t[i + l] - x[i + l]) * tau_inv - shift;
            eq[i + l] = (q - p) * factor;
            terms[l] += p > 0.0f ? p * ratio : 0.0f;
        }
    }
    for (; i < n; ++i) {
        float q = eq[i] * inv_sum_q, p = ep[i] * inv_sum_p;
        float ratio = (t[i] - x[i]) * tau_inv - shift;
        eq[i] = (q - p) * factor;
        terms[0] += p > 0.0f ? p * ratio : 0.0f;
    }
    float total = 0.0f;
    for (int l = 0; l < LANES; ++l) total += terms[l];
    return total;
}

/* Reverse KL over n <= RUN entries: eq becomes q r (0 where q = 0) with r = log q - log p,
 * ep becomes q; returns the float sum of q r. */
KLDIV_TARGETS
static float row_reverse(const float *restrict x, const float *restrict t, float *restrict eq,
                         float *restrict ep, Py_ssize_t n, const struct row_constants *row) {
    const float tau_inv = row->inv_temperature, shift = row->shift;
    const float inv_sum_q = row->inv_sum_q;
    float terms[LANES] = {0};
    Py_ssize_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        for (int l = 0; l < LANES; ++l) {
            float q = eq[i + l] * inv_sum_q;
            float term = q > 0.0f ? q * ((x[i + l] - t[i + l]) * tau_inv + shift) : 0.0f;
            eq[i + l] = term;
            ep[i + l] = q;
            terms[l] += term;
        }
    }
    for (; i < n; ++i) {
        float q = eq[i] * inv_sum_q;
        float term = q > 0.0f ? q * ((x[i] - t[i]) * tau_inv + shift) : 0.0f;
        eq[i] = term;
        ep[i] = q;
        terms[0] += term;
    }
    float total = 0.0f;
    for (int l = 0; l < LANES; ++l) total += terms[l];
    return total;
}

/* log(exp(u) + exp(v)) as max + log1p(exp(-|u - v|)); log1p(e) = log(1 + e) e / ((1 + e) - 1)
 * keeps a small e's digits (Goldberg's correction). NaN where both are -inf. */
KLDIV_INLINE float kl_logaddexp(float u, float v) {
    float high = u > v ? u : v, low = u > v ? v : u;
    float e = kl_expf(low - high);
    float w = 1.0f + e;
    float log1p = w == 1.0f ? e : kl_logf(w) * (e / (w - 1.0f));
    return high + log1p;
}

/* JSD over n <= RUN entries: eq becomes q r (0 where q = 0) with r = log q - log m, ep
 * becomes q; the float sums of q r and of p (log p - log m) (0 where p = 0). */
KLDIV_TARGETS
static void row_jsd(const float *restrict x, const float *restrict t, float *restrict eq,
                    float *restrict ep, Py_ssize_t n, const struct row_constants *row,
                    float *sum_q_terms, float *sum_p_terms) {
    const float tau_inv = row->inv_temperature, max_a = row->max_a, max_b = row->max_b;
    const float inv_sum_q = row->inv_sum_q, inv_sum_p = row->inv_sum_p;
    const float log_sum_q = row->log_sum_q, log_sum_p = row->log_sum_p;
    const float log_beta = row->log_beta, log_complement = row->log_beta_complement;
    float terms_q[LANES] = {0}, terms_p[LANES] = {0};
    Py_ssize_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        for (int l = 0; l < LANES; ++l) {
            float q = eq[i + l] * inv_sum_q, p = ep[i + l] * inv_sum_p;
            float log_q = (x[i + l] * tau_inv - max_a) - log_sum_q;
            float log_p = (t[i + l] * tau_inv - max_b) - log_sum_p;
            float log_m = kl_logaddexp(log_p + log_beta, log_q + log_complement);
            float term = q > 0.0f ? q * (log_q - log_m) : 0.0f;
            eq[i + l] = term;
            ep[i + l] = q;
            terms_q[l] += term;
            terms_p[l] += p > 0.0f ? p * (log_p - log_m) : 0.0f;
        }
    }
    for (; i < n; ++i) {
        float q = eq[i] * inv_sum_q, p = ep[i] * inv_sum_p;
        float log_q = (x[i] * tau_inv - max_a) - log_sum_q;
        float log_p = (t[i] * tau_inv - max_b) - log_sum_p;
        float log_m = kl_logaddexp(log_p + log_beta, log_q + log_complement);
        float term = q > 0.0f ? q * (log_q - log_m) : 0.0f;
        eq[i] = term;
        ep[i] = q;
        terms_q[0] += term;
        terms_p[0] += p > 0.0f ? p * (log_p - log_m) : 0.0f;
    }
    float total_q = 0.0f, total_p = 0.0f;
    for (int l = 0; l < LANES; ++l) {
        total_q += terms_q[l];
        total_p += terms_p[l];
    }
    *sum_q_terms = total_q;
    *sum_p_terms = total_p;
}

/* The gradient of the reverse KL and the JSD through the softmax, over eq = q r and ep = q:
 * (weight q r - q total) * factor, total = weight sum q r. */
KLDIV_TARGETS
static void row_softmax_gradient(float *restrict eq, const float *restrict ep, Py_ssize_t n,
                                 float weight, float total, float factor) {
    for (Py_ssize_t i = 0; i < n; ++i) eq[i] = (weight * eq[i] - ep[i] * total) * factor;
}

KLDIV_TARGETS
static void narrow_row(char *restrict target, const float *restrict source, Py_ssize_t n,
                       int dtype) {
    uint16_t *out = (uint16_t *)target;
    if (dtype == KL_FLOAT16) {
        for (Py_ssize_t i = 0; i < n; ++i) out[i] = kl_float_to_half(source[i]);
    } else {
        for (Py_ssize_t i = 0; i < n; ++i) out[i] = kl_float_to_bfloat16(source[i]);
    }
}

/* The length of the run of at most RUN entries that starts at `start` of a row of n. */
KLDIV_INLINE Py_ssize_t run_length(Py_ssize_t n, Py_ssize_t start) {
    return n - start < RUN ? n - start : RUN;
}

static float divergence_row(const struct logits_job *job, const float *x, const float *t,
                            float *eq, float *ep, float factor) {
    Py_ssize_t n = job->vocab;
    struct row_constants row = {.inv_temperature = job->inv_temperature};
    row_maxima(x, t, n, row.inv_temperature, &row.max_a, &row.max_b);
    double sum_q = 0.0, sum_p = 0.0;
    for (Py_ssize_t start = 0; start < n; start += RUN) {
        Py_ssize_t m = run_length(n, start);
        float run_q, run_p;
        row_exponentials(x + start, t + start, eq + start, ep + start, m, row.inv_temperature,
                         row.max_a, row.max_b, &run_q, &run_p);
        sum_q += run_q;
        sum_p += run_p;
    }
    double log_sum_q = log(sum_q), log_sum_p = log(sum_p);
    row.shift = (float)(((double)row.max_b + log_sum_p) - ((double)row.max_a + log_sum_q));
    row.inv_sum_q = (float)(1.0 / sum_q);
    row.inv_sum_p = (float)(1.0 / sum_p);
    row.log_sum_q = (float)log_sum_q;
    row.log_sum_p = (float)log_sum_p;
    /* A NaN or +inf logit, or a row of -inf, makes a sum NaN, and then every q or p: the tests
     * q > 0 and p > 0 would drop those terms, so the row is made NaN here. */
    int nan_row = sum_p != sum_p || sum_q != sum_q;
    double divergence = 0.0;
    if (job->divergence == FORWARD) {
        for (Py_ssize_t start = 0; start < n; start += RUN) {
            divergence += row_forward(x + start, t + start, eq + start, ep + start,
                                      run_length(n, start), &row, factor);
        }
        return nan_row ? (float)NAN : (float)divergence;
    }
    /* weight: 1 - beta, the student's weight in the JSD, and 1 for the reverse KL. */
    double weight = 1.0, sum_q_terms = 0.0, sum_p_terms = 0.0;
    if (job->divergence == REVERSE) {
        for (Py_ssize_t start = 0; start < n; start += RUN) {
            sum_q_terms += row_reverse(x + start, t + start, eq + start, ep + start,
                                       run_length(n, start), &row);
        }
    } else {
        weight = 1.0 - job->beta;
        row.log_beta = (float)log(job->beta);
        row.log_beta_complement = (float)log1p(-job->beta);
        for (Py_ssize_t start = 0; start < n; start += RUN) {
            float run_q, run_p;
            row_jsd(x + start, t + start, eq + start, ep + start, run_length(n, start), &row,
                    &run_q, &run_p);
            sum_q_terms += run_q;
            sum_p_terms += run_p;
        }
    }
    /* The sum of the student's terms through the softmax Jacobian, and the row's value. */
    double total = nan_row ? NAN : weight * sum_q_terms;
    divergence = total + job->beta * sum_p_terms;
    row_softmax_gradient(eq, ep, n, (float)weight, (float)total, factor);
    return (float)divergence;
}

/* Threads claim rows a batch at a time rather than one contiguous share each, so that a core
 * shared with another process does fewer rows instead of holding up the call: with two threads
 * and another process on one of the two cores, equal shares make the call wait for the thread
 * that gets half a core. */
static void logits_worker(void *context, Py_ssize_t worker_begin, Py_ssize_t worker_end) {
    (void)worker_begin;
    (void)worker_end;
    struct logits_job *job = (struct logits_job *)context;
    Py_ssize_t n = job->vocab, item = kl_dtype_size(job->dtype);
    int wide = job->dtype != KL_FLOAT32;
    /* ep, and for half-precision inputs the widened rows and the float gradient row. */
    float *scratch = (float *)malloc((size_t)n * sizeof(float) * (wide ? 4 : 1));
    if (scratch == NULL) return; /* the other threads take its rows; if none can, the caller
                                    sees rows left unclaimed */
    float *ep = scratch;
    for (;;) {
        Py_ssize_t begin = __atomic_fetch_add(&job->next, job->batch, __ATOMIC_RELAXED);
        if (begin >= job->rows) break;
        Py_ssize_t end = begin + job->batch < job->rows ? begin + job->batch : job->rows;
        for (Py_ssize_t r = begin; r < end; ++r) {
            char *grad = job->grad + r * n * item;
            if (job->mask != NULL && !job->mask[r]) {
                memset(grad, 0, (size_t)(n * item));
                job->out[r] = 0.0f;
                continue;
            }
            const char *input = job->input + r * n * item, *target = job->target + r * n * item;
            float factor = job->inv_temperature * (job->scale != NULL ? job->scale[r] : 1.0f);
            unsigned int floating_state = flush_subnormals_begin();
            if (!wide) {
                job->out[r] = divergence_row(job, (const float *)input, (const float *)target,
                                             (float *)grad, ep, factor);
                flush_subnormals_end(floating_state);
            } else {
                float *x = scratch + n, *t = scratch + 2 * n, *eq = scratch + 3 * n;
                kl_widen(x, input, n, job->dtype);
                kl_widen(t, target, n, job->dtype);
                job->out[r] = divergence_row(job, x, t, eq, ep, factor);
                /* float16 keeps gradients below 6e-5 as subnormals: narrowed without the flush. */
                flush_subnormals_end(floating_state);
                narrow_row(grad, eq, n, job->dtype);
            }
        }
    }
    free(scratch);
}

/* Ask for transparent huge pages over the 2 MiB pages inside [start, start + bytes). */
static void advise_huge_pages(char *start, Py_ssize_t bytes) {
#if defined(MADV_HUGEPAGE)
    const uintptr_t huge = (uintptr_t)1 << 21;
    if (bytes < (Py_ssize_t)(4 * huge)) return;
    uintptr_t first = ((uintptr_t)start + huge - 1) & ~(huge - 1);
    uintptr_t last = ((uintptr_t)start + (uintptr_t)bytes) & ~(huge - 1);
    if (last > first) (void)madvise((void *)first, last - first, MADV_HUGEPAGE);
#else
    (void)start;
    (void)bytes;
#endif
}

static PyObject *logits_divergence(PyObject *self, PyObject *args) {
    Py_ssize_t input, target, grad, out, mask, scale, rows, vocab;
    int divergence, dtype, threads, huge_pages;
    double beta, inv_temperature;
    if (!PyArg_ParseTuple(args, "idnnnnnnnnidip", &divergence, &beta, &input, &target, &grad,
                          &out, &mask, &scale, &rows, &vocab, &dtype, &inv_temperature,
                          &threads, &huge_pages))
        return NULL;
    if (divergence < FORWARD || divergence > JSD ||
        (divergence == JSD && !(beta > 0.0 && beta < 1.0))) {
        PyErr_Format(PyExc_ValueError,
                     "logits_divergence needs divergence 0 (forward KL), 1 (reverse KL) or "
                     "2 (JSD) with 0 < beta < 1, got divergence %d and beta %R",
                     divergence, PyTuple_GET_ITEM(args, 1));
        return NULL;
    }
    if (rows < 0 || vocab < 1 || dtype < KL_FLOAT32 || dtype > KL_BFLOAT16 || input == 0 ||
        target == 0 || grad == 0 || out == 0) {
        PyErr_SetString(PyExc_ValueError,
                        "logits_divergence needs rows >= 0, vocab >= 1, dtype 0 (float32), "
                        "1 (float16) or 2 (bfloat16) and non-null input, target, grad, out");
        return NULL;
    }
    struct logits_job job = {
        .input = (const char *)input,
        .target = (const char *)target,
        .grad = (char *)grad,
        .out = (float *)out,
        .mask = (const uint8_t *)mask,
        .scale = (const float *)scale,
        .vocab = vocab,
        .dtype = dtype,
        .divergence = divergence,
        .inv_temperature = (float)inv_temperature,
        .beta = divergence == JSD ? beta : 0.0,
        .rows = rows,
        .next = 0,
    };
    /* About eight claims per thread, at most 64 rows (a few ms at vocab 32000) each. */
    if (threads < 1) threads = 1;
    job.batch = rows / ((Py_ssize_t)threads * 8);
    job.batch = job.batch < 1 ? 1 : (job.batch > 64 ? 64 : job.batch);
    Py_ssize_t batches = (rows + job.batch - 1) / job.batch;
    int workers = threads < batches ? threads : (int)batches;
    /* The caller's flag says the buffer is fresh (the hint is void after the first touch). */
    const char *huge_pages_setting = getenv("KLDIV_HUGE_PAGES");
    huge_pages = huge_pages && huge_pages_setting != NULL && strcmp(huge_pages_setting, "1") == 0;
    Py_BEGIN_ALLOW_THREADS
    if (huge_pages) advise_huge_pages((char *)grad, rows * vocab * kl_dtype_size(dtype));
    if (workers > 0) kl_parallel_for(workers, workers, logits_worker, &job);
    Py_END_ALLOW_THREADS
    if (job.next < rows) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"logits_divergence", logits_divergence, METH_VARARGS,
     "logits_divergence(divergence, beta, input, target, grad, out, mask, scale, rows, vocab,\n"
     "                  dtype, inv_temperature, threads, huge_pages)\n\n"
     "With Q = softmax(input/tau) and P = softmax(target/tau), the divergence per row into out\n"
     "(float32): KL(P || Q) for divergence 0, KL(Q || P) for 1, and for 2 the generalized JSD\n"
     "beta KL(P || M) + (1 - beta) KL(Q || M), M = beta P + (1 - beta) Q, 0 < beta < 1 (beta\n"
     "is ignored otherwise); its gradient with respect to input, times scale[row] / tau, into\n"
     "grad. Arguments are data pointers of contiguous buffers (mask: bool, scale: float32; 0\n"
     "for none); dtype 0, 1, 2 is float32, float16, bfloat16 for input, target and grad alike.\n"
     "huge_pages: grad is a fresh buffer; it is marked for transparent huge pages only when\n"
     "the environment variable KLDIV_HUGE_PAGES is 1."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "kldiv._native.losses",
                                    "Fused per-row divergence and gradient kernels.", -1,
                                    methods};

PyMODINIT_FUNC PyInit_losses(void) { return PyModule_Create(&module); }
