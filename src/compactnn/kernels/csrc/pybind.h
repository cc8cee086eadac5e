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

#endif
