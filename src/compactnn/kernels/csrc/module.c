/* compactnn.kernels._native: the CPython binding of the kernel library.
 *
 * Each kernel object (LutMatrix, ...) owns its runtime arrays, built from the
 * stored arrays of a format that already passed check(). Product methods take
 * numpy arrays (buffer protocol, C-contiguous float32) and check their lengths
 * before any kernel reads them; the GIL is released while a kernel runs. One
 * py_<format>.c per kernel type registers it here (cnn_add_<format>).
 */
#include "pybind.h"

/* ---- module ------------------------------------------------------------------------ */

static PyObject *m_cpu_level(PyObject *mod, PyObject *unused) {
    (void)mod, (void)unused;
    return PyLong_FromLong(cnn_cpu_level());
}

static PyObject *m_get_level(PyObject *mod, PyObject *unused) {
    (void)mod, (void)unused;
    return PyLong_FromLong(cnn_get_level());
}

static PyObject *m_set_level(PyObject *mod, PyObject *arg) {
    (void)mod;
    long level = PyLong_AsLong(arg);
    if (level == -1 && PyErr_Occurred()) return NULL;
    if (cnn_set_level((int)level) < 0) {
        PyErr_Format(PyExc_ValueError, "kernel level %ld is not supported by this CPU", level);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *m_set_num_threads(PyObject *mod, PyObject *arg) {
    (void)mod;
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    cnn_set_num_threads((int)n);
    Py_RETURN_NONE;
}

static PyObject *m_get_num_threads(PyObject *mod, PyObject *unused) {
    (void)mod, (void)unused;
    return PyLong_FromLong(cnn_get_num_threads());
}

static PyObject *m_htile_cpu(PyObject *mod, PyObject *unused) {
    (void)mod, (void)unused;
    return PyBool_FromLong(cnn_htile_cpu());
}

static PyMethodDef module_methods[] = {
    {"cpu_level", m_cpu_level, METH_NOARGS, "best kernel level of this CPU (0 portable, 1 avx2, 2 avx512)"},
    {"get_level", m_get_level, METH_NOARGS, "kernel level in use"},
    {"htile_cpu", m_htile_cpu, METH_NOARGS,
     "whether this CPU runs the Huffman tile kernel (AVX-512 with VBMI and CD)"},
    {"set_level", m_set_level, METH_O, "select a kernel level"},
    {"set_num_threads", m_set_num_threads, METH_O, "threads for kernels (<= 0: OpenMP's default)"},
    {"get_num_threads", m_get_num_threads, METH_NOARGS, "threads kernels use"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_native", "compactnn's native SIMD kernels", -1, module_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void) {
    static int (*const add[])(PyObject *) = {cnn_add_lut, cnn_add_huffman, cnn_add_sparse,
                                                      cnn_add_blockdiag, cnn_add_chain,
                                                      cnn_add_lfloat};
    PyObject *mod = PyModule_Create(&moduledef);
    if (!mod) return NULL;
    for (size_t i = 0; i < sizeof add / sizeof add[0]; i++) {
        if (add[i](mod) < 0) {
            Py_DECREF(mod);
            return NULL;
        }
    }
    return mod;
}
