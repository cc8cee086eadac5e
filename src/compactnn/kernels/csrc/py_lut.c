/* LutMatrix: the index_map format in the kernels' runtime layout (lut.c). */
#include "pybind.h"

#include <string.h>

/* ---- LutMatrix ------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    cnn_lut W;
    uint8_t *codes;
    float *omega;
    float lut[64];
} LutObject;

static void Lut_dealloc(LutObject *self) {
    cnn_free(self->codes);
    cnn_free(self->omega);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Lut_init(LutObject *self, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"words", "bits", "m", "n", "omega", NULL};
    PyObject *wobj, *oobj;
    int bits;
    long long m, n;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OiLLO", kw, &wobj, &bits, &m, &n, &oobj))
        return -1;
    if (m < 0 || n < 0 || bits < 0 || bits > 8) {
        PyErr_SetString(PyExc_ValueError, "LutMatrix: bad shape or code width (1-8 bits)");
        return -1;
    }
    Py_buffer ob, wb;
    if (get_buf(oobj, &ob, 'f', 4, 0, 0, "omega") < 0) return -1;
    int64_t K = ob.len / 4;
    if (K > 256 || (bits > 0 && K > (1 << bits)) || (bits == 0 && K > 1) ||
        (K == 0 && m * n > 0)) {
        PyBuffer_Release(&ob);
        PyErr_SetString(PyExc_ValueError, "LutMatrix: codebook size does not match the code width");
        return -1;
    }
    /* words: total bits plus two words of padding (the index_map layout). */
    int64_t need = (m * n * bits) / 32 + 2;
    if (get_buf(wobj, &wb, 'I', 4, need, 0, "words") < 0) {
        PyBuffer_Release(&ob);
        return -1;
    }
    int nibble = K <= 16;
    int64_t stride = nibble ? (n + 31) / 32 * 16 : (n + 15) / 16 * 16;
    cnn_free(self->codes);
    cnn_free(self->omega);
    self->codes = cnn_alloc((size_t)(m * stride));
    self->omega = cnn_alloc((size_t)(K ? K : 1) * 4);
    if (!self->codes || !self->omega) {
        PyBuffer_Release(&ob);
        PyBuffer_Release(&wb);
        PyErr_NoMemory();
        return -1;
    }
    memcpy(self->omega, ob.buf, (size_t)K * 4);
    memset(self->lut, 0, sizeof self->lut);
    memcpy(self->lut, ob.buf, (size_t)(K < 64 ? K : 64) * 4);
    Py_BEGIN_ALLOW_THREADS
    cnn_lut_repack((const uint32_t *)wb.buf, bits, m, n, nibble, stride, self->codes);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&ob);
    PyBuffer_Release(&wb);
    self->W = (cnn_lut){.m = m, .n = n, .stride = stride, .K = (int32_t)K, .nibble = nibble,
                        .codes = self->codes, .omega = self->omega,
                        .lut = K <= 64 ? self->lut : self->omega};
    return 0;
}

static int lut_rows(const void *W, const float *X, int64_t ldx, int64_t B, float *Y,
                    int64_t ldy, const float *bias) {
    return cnn_lut_rows(W, X, ldx, B, Y, ldy, bias);
}

/* rows(X, Y, B, bias): Y (B, m) = X (B, n) @ W^T (+ bias); X an array or an address. */
static PyObject *Lut_rows(LutObject *self, PyObject *const *args, Py_ssize_t nargs) {
    return cnn_call_rows(&self->W, self->W.m, self->W.n, lut_rows, args, nargs);
}

/* decode_rows(r0, out): out (nr, n) = W[r0 : r0 + nr]. */
static PyObject *Lut_decode_rows(LutObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "decode_rows(r0, nr, out) takes 3 arguments");
        return NULL;
    }
    long long r0 = PyLong_AsLongLong(args[0]), nr = PyLong_AsLongLong(args[1]);
    if (PyErr_Occurred()) return NULL;
    const cnn_lut *W = &self->W;
    if (r0 < 0 || nr < 0 || r0 + nr > W->m) {
        PyErr_SetString(PyExc_ValueError, "decode_rows: rows out of range");
        return NULL;
    }
    Py_buffer ob;
    if (get_buf(args[2], &ob, 'f', 4, nr * W->n, 1, "out") < 0) return NULL;
    if (nr > 0 && W->n > 0) {
        Py_BEGIN_ALLOW_THREADS
        cnn_lut_decode_rows(W, r0, nr, ob.buf, W->n);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&ob);
    Py_RETURN_NONE;
}

static PyObject *Lut_nbytes(LutObject *self, void *closure) {
    (void)closure;
    return PyLong_FromLongLong(self->W.m * self->W.stride);
}

static PyMethodDef Lut_methods[] = {
    {"rows", (PyCFunction)(void (*)(void))Lut_rows, METH_FASTCALL,
     "rows(X, Y, B, bias): Y (B, m) = X (B, n) @ W^T (+ bias)"},
    {"decode_rows", (PyCFunction)(void (*)(void))Lut_decode_rows, METH_FASTCALL,
     "decode_rows(r0, nr, out): out (nr, n) = W[r0 : r0 + nr]"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Lut_getset[] = {
    {"nbytes", (getter)Lut_nbytes, NULL, "bytes of the runtime code array", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject LutType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "compactnn.kernels._native.LutMatrix",
    .tp_basicsize = sizeof(LutObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "LutMatrix(words, bits, m, n, omega): an index map in the kernels' runtime layout",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Lut_init,
    .tp_dealloc = (destructor)Lut_dealloc,
    .tp_methods = Lut_methods,
    .tp_getset = Lut_getset,
};

int cnn_add_lut(PyObject *mod) { return cnn_add_type(mod, &LutType, "LutMatrix"); }
