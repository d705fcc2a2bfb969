/* The forward KL divergence KL(P||Q) between two sets of logits, value and gradient in one
 * pass over each row: the CPU kernel behind kldiv.torch's KLDivLoss(input_kind="logits",
 * target_kind="logits") when the target needs no gradient.
 *
 * With a = x/tau (student) and b = t/tau (teacher), q = softmax(a), p = softmax(b):
 *
 *     D_row = sum_v p_v ((b_v - a_v) - (lse(b) - lse(a)))       (0 where p_v = 0)
 *     dD_row/dx = (q - p) * scale_row / tau
 *
 * Each row takes three sweeps: the two maxima; exp(a - max a) into the gradient row and
 * exp(b - max b) into a scratch row, with their sums; then the normalized difference and the
 * divergence terms. Only the first sweep reads memory: a row of both inputs and of the gradient
 * (128 KiB each at vocab 32000) stays in the core's L2 cache for the other two. Sums are kept
 * in float per lane over short runs and then in double, so that a row of 10^5 terms loses no
 * more than torch's float32 reduction does.
 *
 * The gradient is written here for the first time, by the thread that owns its rows, so the
 * page faults of a fresh buffer are taken by all threads at once; a large gradient is also
 * marked for transparent huge pages before that first touch (a hint the kernel may ignore),
 * which replaces 512 faults by one.
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

struct forward_job {
    const char *input, *target; /* (rows, vocab) logits of `dtype` */
    char *grad;                 /* (rows, vocab) of `dtype`, written */
    float *out;                 /* (rows,) divergences, written */
    const uint8_t *mask;        /* (rows,) bool, or NULL: False rows get 0 and zero gradient */
    const float *scale;         /* (rows,) gradient factors, or NULL for 1 */
    Py_ssize_t vocab;
    int dtype;
    float inv_temperature;
    int failed; /* set when a thread could not allocate its scratch rows */
};

/* Maxima of a and b over a row, ignoring NaN (a NaN reaches the sums through exp). */
KLDIV_TARGETS
static void row_maxima(const float *restrict x, const float *restrict t, Py_ssize_t n,
                       float inv_temperature, float *max_a, float *max_b) {
    float ma[LANES], mb[LANES];
    for (int l = 0; l < LANES; ++l) ma[l] = mb[l] = -(float)INFINITY;
    Py_ssize_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        for (int l = 0; l < LANES; ++l) {
            float a = x[i + l] * inv_temperature, b = t[i + l] * inv_temperature;
            ma[l] = a > ma[l] ? a : ma[l];
            mb[l] = b > mb[l] ? b : mb[l];
        }
    }
    for (; i < n; ++i) {
        float a = x[i] * inv_temperature, b = t[i] * inv_temperature;
        ma[0] = a > ma[0] ? a : ma[0];
        mb[0] = b > mb[0] ? b : mb[0];
    }
    float ra = ma[0], rb = mb[0];
    for (int l = 1; l < LANES; ++l) {
        ra = ma[l] > ra ? ma[l] : ra;
        rb = mb[l] > rb ? mb[l] : rb;
    }
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

/* g = (eq/S_q - ep/S_p) * factor written over eq; returns the float sum of the terms
 * p ((b - a) - shift) over n <= RUN entries, 0 where p = 0. */
KLDIV_TARGETS
static float row_gradient(const float *restrict x, const float *restrict t, float *restrict eq,
                          const float *restrict ep, Py_ssize_t n, float inv_temperature,
                          float inv_sum_q, float inv_sum_p, float shift, float factor) {
    float terms[LANES] = {0};
    Py_ssize_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        for (int l = 0; l < LANES; ++l) {
            float q = eq[i + l] * inv_sum_q, p = ep[i + l] * inv_sum_p;
            float ratio = (t[i + l] - x[i + l]) * inv_temperature - shift;
            eq[i + l] = (q - p) * factor;
            terms[l] += p > 0.0f ? p * ratio : 0.0f;
        }
    }
    for (; i < n; ++i) {
        float q = eq[i] * inv_sum_q, p = ep[i] * inv_sum_p;
        float ratio = (t[i] - x[i]) * inv_temperature - shift;
        eq[i] = (q - p) * factor;
        terms[0] += p > 0.0f ? p * ratio : 0.0f;
    }
    float total = 0.0f;
    for (int l = 0; l < LANES; ++l) total += terms[l];
    return total;
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

static float forward_row(const struct forward_job *job, const float *x, const float *t,
                         float *eq, float *ep, float factor) {
    Py_ssize_t n = job->vocab;
    float tau_inv = job->inv_temperature;
    float max_a, max_b;
    row_maxima(x, t, n, tau_inv, &max_a, &max_b);
    double sum_q = 0.0, sum_p = 0.0;
    for (Py_ssize_t start = 0; start < n; start += RUN) {
        Py_ssize_t m = n - start < RUN ? n - start : RUN;
        float run_q, run_p;
        row_exponentials(x + start, t + start, eq + start, ep + start, m, tau_inv, max_a, max_b,
                         &run_q, &run_p);
        sum_q += run_q;
        sum_p += run_p;
    }
    /* lse(b) - lse(a): the log-normalizers' difference, which every log-ratio shares. */
    double shift = ((double)max_b + log(sum_p)) - ((double)max_a + log(sum_q));
    float inv_q = (float)(1.0 / sum_q), inv_p = (float)(1.0 / sum_p);
    double divergence = 0.0;
    for (Py_ssize_t start = 0; start < n; start += RUN) {
        Py_ssize_t m = n - start < RUN ? n - start : RUN;
        divergence += row_gradient(x + start, t + start, eq + start, ep + start, m, tau_inv,
                                   inv_q, inv_p, (float)shift, factor);
    }
    /* A NaN in the target makes every p NaN, which the p > 0 test would drop. */
    return sum_p != sum_p || sum_q != sum_q ? (float)NAN : (float)divergence;
}

static void forward_range(void *context, Py_ssize_t begin, Py_ssize_t end) {
    struct forward_job *job = (struct forward_job *)context;
    Py_ssize_t n = job->vocab, item = kl_dtype_size(job->dtype);
    int wide = job->dtype != KL_FLOAT32;
    /* ep, and for half-precision inputs the widened rows and the float gradient row. */
    float *scratch = (float *)malloc((size_t)n * sizeof(float) * (wide ? 4 : 1));
    if (scratch == NULL) {
        job->failed = 1;
        return;
    }
    float *ep = scratch;
    for (Py_ssize_t r = begin; r < end; ++r) {
        char *grad = job->grad + r * n * item;
        if (job->mask != NULL && !job->mask[r]) {
            memset(grad, 0, (size_t)(n * item));
            job->out[r] = 0.0f;
            continue;
        }
        const char *input = job->input + r * n * item, *target = job->target + r * n * item;
        float factor = job->inv_temperature * (job->scale != NULL ? job->scale[r] : 1.0f);
        if (!wide) {
            job->out[r] = forward_row(job, (const float *)input, (const float *)target,
                                      (float *)grad, ep, factor);
        } else {
            float *x = scratch + n, *t = scratch + 2 * n, *eq = scratch + 3 * n;
            kl_widen(x, input, n, job->dtype);
            kl_widen(t, target, n, job->dtype);
            job->out[r] = forward_row(job, x, t, eq, ep, factor);
            narrow_row(grad, eq, n, job->dtype);
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

static PyObject *forward_kl_logits(PyObject *self, PyObject *args) {
    Py_ssize_t input, target, grad, out, mask, scale, rows, vocab;
    int dtype, threads, huge_pages;
    double inv_temperature;
    if (!PyArg_ParseTuple(args, "nnnnnnnnidip", &input, &target, &grad, &out, &mask, &scale,
                          &rows, &vocab, &dtype, &inv_temperature, &threads, &huge_pages))
        return NULL;
    if (rows < 0 || vocab < 1 || dtype < KL_FLOAT32 || dtype > KL_BFLOAT16 || input == 0 ||
        target == 0 || grad == 0 || out == 0) {
        PyErr_SetString(PyExc_ValueError,
                        "forward_kl_logits needs rows >= 0, vocab >= 1, dtype 0 (float32), "
                        "1 (float16) or 2 (bfloat16) and non-null input, target, grad, out");
        return NULL;
    }
    struct forward_job job = {
        (const char *)input, (const char *)target, (char *)grad, (float *)out,
        (const uint8_t *)mask, (const float *)scale, vocab, dtype, (float)inv_temperature, 0};
    Py_BEGIN_ALLOW_THREADS
    if (huge_pages) advise_huge_pages((char *)grad, rows * vocab * kl_dtype_size(dtype));
    kl_parallel_for(threads, rows, forward_range, &job);
    Py_END_ALLOW_THREADS
    if (job.failed) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"forward_kl_logits", forward_kl_logits, METH_VARARGS,
     "forward_kl_logits(input, target, grad, out, mask, scale, rows, vocab, dtype,\n"
     "                  inv_temperature, threads, huge_pages)\n\n"
     "KL(softmax(target/tau) || softmax(input/tau)) per row into out (float32), and its\n"
     "gradient with respect to input, times scale[row] / tau, into grad. Arguments are data\n"
     "pointers of contiguous buffers (mask: bool, scale: float32; 0 for none); dtype 0, 1, 2\n"
     "is float32, float16, bfloat16 for input, target and grad alike."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "kldiv._native.losses",
                                    "Fused per-row divergence and gradient kernels.", -1,
                                    methods};

PyMODINIT_FUNC PyInit_losses(void) { return PyModule_Create(&module); }
