/* Shared pieces of the CPython binding: buffer checks and type registration.
 * Each kernel type lives in its own py_<format>.c with one cnn_add_<format>()
 * that module.c calls. */
#ifndef COMPACTNN_PYBIND_H
#define COMPACTNN_PYBIND_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "cnn_kernels.h"
#include "cnn_internal.h"

/* ---- buffers ----------------------------------------------------------------- */

static inline int is_format(const Py_buffer *b, char code) {
    const char *f = b->format ? b->format : "B";
    if (*f == '<' || *f == '=' || *f == '@') f++;
    return f[0] == code && f[1] == 0;
}

/* Get a C-contiguous buffer of at least `count` items with format `code`
 * (itemsize 4 for 'f'/'I'). Sets a Python error and returns -1 otherwise. */
static inline int get_buf(PyObject *obj, Py_buffer *b, char code, Py_ssize_t itemsize, int64_t count,
                   int writable, const char *name) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, b, flags) < 0) return -1;
    if (!is_format(b, code) || b->itemsize != itemsize) {
        PyErr_Format(PyExc_TypeError, "%s: expected a contiguous array of '%c' items", name, code);
        PyBuffer_Release(b);
        return -1;
    }
    if (b->len / itemsize < count) {
        PyErr_Format(PyExc_ValueError, "%s: expected at least %lld items, got %lld", name,
                     (long long)count, (long long)(b->len / itemsize));
        PyBuffer_Release(b);
        return -1;
    }
    return 0;
}

/* get_buf for int64 items (numpy exports them as 'l' or 'q'). */
static inline int get_i64(PyObject *obj, Py_buffer *b, int64_t count, const char *name) {
    if (PyObject_GetBuffer(obj, b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    if (!(is_format(b, 'q') || is_format(b, 'l')) || b->itemsize != 8) {
        PyErr_Format(PyExc_TypeError, "%s: expected a contiguous int64 array", name);
        PyBuffer_Release(b);
        return -1;
    }
    if (b->len / 8 < count) {
        PyErr_Format(PyExc_ValueError, "%s: expected at least %lld items, got %lld", name,
                     (long long)count, (long long)(b->len / 8));
        PyBuffer_Release(b);
        return -1;
    }
    return 0;
}

/* An input operand: a float32 array (checked like get_buf), or an int, the
 * address of `count` floats that the caller (compactnn.nn's layers, on a torch
 * tensor it checked: float32, CPU, contiguous, of that size) vouches for. */
static inline int cnn_input(PyObject *obj, Py_buffer *b, int64_t count, const float **ptr) {
    if (PyLong_Check(obj)) {
        *ptr = (const float *)PyLong_AsVoidPtr(obj);
        return PyErr_Occurred() ? -1 : 0;
    }
    if (get_buf(obj, b, 'f', 4, count, 0, "X") < 0) return -1;
    *ptr = (const float *)b->buf;
    return 0;
}

static inline void cnn_input_release(PyObject *obj, Py_buffer *b) {
    if (!PyLong_Check(obj)) PyBuffer_Release(b);
}

/* An output operand: a writable float32 array (checked like get_buf), or an int, the
 * address of `count` writable floats the caller vouches for (a torch tensor it
 * allocated: float32, CPU, contiguous, of that size). */
static inline int cnn_output(PyObject *obj, Py_buffer *b, int64_t count, float **ptr) {
    if (PyLong_Check(obj)) {
        *ptr = (float *)PyLong_AsVoidPtr(obj);
        return PyErr_Occurred() ? -1 : 0;
    }
    if (get_buf(obj, b, 'f', 4, count, 1, "Y") < 0) return -1;
    *ptr = (float *)b->buf;
    return 0;
}

/* ---- the product methods every kernel type shares ------------------------------- */

typedef int (*cnn_rows_fn)(const void *, const float *, int64_t, int64_t, float *, int64_t,
                       const float *);
typedef int (*cnn_mm_fn)(const void *, const float *, int64_t, int64_t, float *, int64_t);

/* The C-level product behind a kernel object's rows(), for callers that run several
 * products in one call (py_chain.c): rows(capsule) with one PyCapsule named
 * CNN_ROWS_QUERY fills the cnn_rows_iface it points to. W lives in the kernel object:
 * hold a reference to it while using W. */
typedef struct {
    const void *W;
    int64_t m, n;
    cnn_rows_fn f;
} cnn_rows_iface;
#define CNN_ROWS_QUERY "compactnn.rows_iface"

/* rows(X, Y, B, bias): Y (B, m) = X (B, n) @ W^T (+ bias); X and Y arrays or addresses.
 * rows(query): see cnn_rows_iface. */
static inline PyObject *cnn_call_rows(const void *W, int64_t m, int64_t n, cnn_rows_fn f,
                                      PyObject *const *args, Py_ssize_t nargs) {
    if (nargs == 1 && PyCapsule_CheckExact(args[0])) {
        cnn_rows_iface *q = PyCapsule_GetPointer(args[0], CNN_ROWS_QUERY);
        if (!q) return NULL;
        *q = (cnn_rows_iface){.W = W, .m = m, .n = n, .f = f};
        Py_RETURN_NONE;
    }
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "rows(X, Y, B, bias) takes 4 arguments");
        return NULL;
    }
    long long B = PyLong_AsLongLong(args[2]);
    if (B < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "rows: B must be >= 0");
        return NULL;
    }
    Py_buffer xb, yb, bb;
    int has_bias = args[3] != Py_None;
    const float *X;
    float *Y;
    if (cnn_input(args[0], &xb, B * n, &X) < 0) return NULL;
    if (cnn_output(args[1], &yb, B * m, &Y) < 0) {
        cnn_input_release(args[0], &xb);
        return NULL;
    }
    if (has_bias && get_buf(args[3], &bb, 'f', 4, m, 0, "bias") < 0) {
        cnn_input_release(args[0], &xb);
        cnn_input_release(args[1], &yb);
        return NULL;
    }
    int rc = 0;
    if (B > 0 && m > 0) {
        Py_BEGIN_ALLOW_THREADS
        rc = f(W, X, n, B, Y, m, has_bias ? bb.buf : NULL);
        Py_END_ALLOW_THREADS
    }
    cnn_input_release(args[0], &xb);
    cnn_input_release(args[1], &yb);
    if (has_bias) PyBuffer_Release(&bb);
    if (rc) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* matmul(X, Y, b): Y (m, b) = W @ X (n, b). */
static inline PyObject *cnn_call_matmul(const void *W, int64_t m, int64_t n, cnn_mm_fn f,
                                        PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "matmul(X, Y, b) takes 3 arguments");
        return NULL;
    }
    long long b = PyLong_AsLongLong(args[2]);
    if (b < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "matmul: b must be >= 0");
        return NULL;
    }
    Py_buffer xb, yb;
    if (get_buf(args[0], &xb, 'f', 4, n * b, 0, "X") < 0) return NULL;
    if (get_buf(args[1], &yb, 'f', 4, m * b, 1, "Y") < 0) {
        PyBuffer_Release(&xb);
        return NULL;
    }
    int rc = 0;
    if (b > 0 && m > 0) {
        Py_BEGIN_ALLOW_THREADS
        rc = f(W, xb.buf, b, b, yb.buf, b);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&xb);
    PyBuffer_Release(&yb);
    if (rc) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* Ready `type` and add it to `mod` under `name`; 0 or -1 with an exception. */
static inline int cnn_add_type(PyObject *mod, PyTypeObject *type, const char *name) {
    if (PyType_Ready(type) < 0) return -1;
    Py_INCREF(type);
    if (PyModule_AddObject(mod, name, (PyObject *)type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    return 0;
}

int cnn_add_lut(PyObject *mod);
int cnn_add_huffman(PyObject *mod);
int cnn_add_sparse(PyObject *mod);
int cnn_add_blockdiag(PyObject *mod);
int cnn_add_chain(PyObject *mod);
int cnn_add_lfloat(PyObject *mod);

#endif
