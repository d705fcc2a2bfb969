/* Elementwise float32 exp and log and the widening of half-precision floats: the shared
 * arithmetic of common.h over whole buffers, so that its accuracy is tested on its own and
 * callers can widen float16 and bfloat16 data without PyTorch. */
#include "common.h"

struct elementwise_job {
    float *target;
    const char *source;
    int operation; /* 0 exp, 1 log, 2 widen float16, 3 widen bfloat16 */
};

KLDIV_TARGETS
static void elementwise_range(void *context, Py_ssize_t begin, Py_ssize_t end) {
    struct elementwise_job *job = (struct elementwise_job *)context;
    float *restrict target = job->target + begin;
    Py_ssize_t n = end - begin;
    if (job->operation == 0) {
        const float *restrict source = (const float *)job->source + begin;
        for (Py_ssize_t i = 0; i < n; ++i) target[i] = kl_expf(source[i]);
    } else if (job->operation == 1) {
        const float *restrict source = (const float *)job->source + begin;
        for (Py_ssize_t i = 0; i < n; ++i) target[i] = kl_logf(source[i]);
    } else {
        const uint16_t *source = (const uint16_t *)job->source + begin;
        kl_widen(target, source, n, job->operation == 2 ? KL_FLOAT16 : KL_BFLOAT16);
    }
}

static PyObject *run(PyObject *args, int operation) {
    Py_buffer source, target;
    int threads = 1;
    if (!PyArg_ParseTuple(args, "y*w*|i", &source, &target, &threads)) return NULL;
    Py_ssize_t source_item = operation >= 2 ? 2 : 4;
    PyObject *result = NULL;
    if (source.len % source_item != 0 || target.len % 4 != 0 ||
        source.len / source_item != target.len / 4) {
        PyErr_SetString(PyExc_ValueError,
                        "source and target must hold the same number of entries "
                        "(source 2 or 4 bytes each, target float32)");
    } else {
        struct elementwise_job job = {(float *)target.buf, (const char *)source.buf, operation};
        Py_BEGIN_ALLOW_THREADS
        kl_parallel_for(threads, target.len / 4, elementwise_range, &job);
        Py_END_ALLOW_THREADS
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&source);
    PyBuffer_Release(&target);
    return result;
}

static PyObject *exp_f32(PyObject *self, PyObject *args) { return run(args, 0); }
static PyObject *log_f32(PyObject *self, PyObject *args) { return run(args, 1); }
static PyObject *widen_f16(PyObject *self, PyObject *args) { return run(args, 2); }
static PyObject *widen_bf16(PyObject *self, PyObject *args) { return run(args, 3); }

static PyMethodDef methods[] = {
    {"exp_f32", exp_f32, METH_VARARGS,
     "exp_f32(source, target, threads=1): target[i] = exp(source[i]), float32 buffers."},
    {"log_f32", log_f32, METH_VARARGS,
     "log_f32(source, target, threads=1): target[i] = log(source[i]), float32 buffers."},
    {"widen_f16", widen_f16, METH_VARARGS,
     "widen_f16(source, target, threads=1): float16 buffer to float32 buffer."},
    {"widen_bf16", widen_bf16, METH_VARARGS,
     "widen_bf16(source, target, threads=1): bfloat16 buffer to float32 buffer."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "kldiv._native.elementwise",
                                    "Elementwise float32 exp, log and half-precision widening.",
                                    -1, methods};

PyMODINIT_FUNC PyInit_elementwise(void) { return PyModule_Create(&module); }
