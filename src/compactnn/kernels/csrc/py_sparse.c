/* CsrMatrix and GroupedMatrix: the csr and cer/cser formats for the kernels of
 * sparse.c. Column indices (uint8/16/32), values and cer/cser group pointers
 * (uint32/64) are used in place: the object holds buffer views of the format's
 * arrays. Row pointers are copied to int64 (m + 1 entries); narrower group
 * pointers (uint8/16, small matrices) to uint32, uint64 columns to uint32. The
 * constructors check every length, pointer and index the kernels rely on. */
#include "pybind.h"

#include <string.h>

/* ---- unsigned index buffers ------------------------------------------------------- */

/* A C-contiguous buffer of unsigned integers (1, 2, 4 or 8 bytes, native order). */
static int get_ubuf(PyObject *obj, Py_buffer *b, const char *name) {
    if (PyObject_GetBuffer(obj, b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    const char *f = b->format ? b->format : "B";
    if (*f == '<' || *f == '=' || *f == '@') f++;
    int ok = f[0] && strchr("BHILQ", f[0]) && f[1] == 0 &&
             (b->itemsize == 1 || b->itemsize == 2 || b->itemsize == 4 || b->itemsize == 8);
    if (!ok) {
        PyErr_Format(PyExc_TypeError, "%s: expected a contiguous array of unsigned integers", name);
        PyBuffer_Release(b);
        return -1;
    }
    return 0;
}

static inline int64_t ulen(const Py_buffer *b) { return b->len / b->itemsize; }

static inline uint64_t uget(const Py_buffer *b, int64_t i) {
    switch (b->itemsize) {
    case 1: return ((const uint8_t *)b->buf)[i];
    case 2: return ((const uint16_t *)b->buf)[i];
    case 4: return ((const uint32_t *)b->buf)[i];
    default: return ((const uint64_t *)b->buf)[i];
    }
}

/* Pointer array check: count entries, starts at 0, non-decreasing, ends at end. */
static int check_ptr(const Py_buffer *b, int64_t count, int64_t end, const char *name) {
    if (ulen(b) != count) {
        PyErr_Format(PyExc_ValueError, "%s: expected %lld entries, got %lld", name,
                     (long long)count, (long long)ulen(b));
        return -1;
    }
    uint64_t prev = 0;
    for (int64_t i = 0; i < count; i++) {
        uint64_t v = uget(b, i);
        if (v < prev || (i == 0 && v != 0)) {
            PyErr_Format(PyExc_ValueError, "%s: not a pointer array (entry %lld)", name, (long long)i);
            return -1;
        }
        prev = v;
    }
    if (prev != (uint64_t)end) {
        PyErr_Format(PyExc_ValueError, "%s: ends at %llu, expected %lld", name,
                     (unsigned long long)prev, (long long)end);
        return -1;
    }
    return 0;
}

static int64_t *int64_copy(const Py_buffer *b) {
    int64_t n = ulen(b), *out = cnn_alloc((size_t)(n ? n : 1) * sizeof(int64_t));
    if (!out) return (int64_t *)PyErr_NoMemory();
    for (int64_t i = 0; i < n; i++) out[i] = (int64_t)uget(b, i);
    return out;
}

static uint32_t *uint32_copy(const Py_buffer *b) {
    int64_t n = ulen(b);
    uint32_t *out = cnn_alloc((size_t)(n ? n : 1) * sizeof(uint32_t));
    if (!out) return (uint32_t *)PyErr_NoMemory();
    for (int64_t i = 0; i < n; i++) out[i] = (uint32_t)uget(b, i);
    return out;
}

/* Columns: every one < n; returns the width the kernels read them at (the stored
 * one, or 4 for a uint32 copy of uint64 columns in *copy). */
static int prepare_cols(const Py_buffer *b, int64_t n, uint32_t **copy, const char *name) {
    for (int64_t i = 0; i < ulen(b); i++)
        if (uget(b, i) >= (uint64_t)n) {
            PyErr_Format(PyExc_ValueError, "%s: column %llu out of range [0, %lld)", name,
                         (unsigned long long)uget(b, i), (long long)n);
            return -1;
        }
    if (b->itemsize < 8) return (int)b->itemsize;
    *copy = uint32_copy(b);
    return *copy ? 4 : -1;
}

/* ---- CsrMatrix ------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    cnn_csr W;
    Py_buffer data, cols;
    int held;
    int64_t *rowptr, *dataoff;
    uint32_t *cols32;
} CsrObject;

static void Csr_clear(CsrObject *self) {
    if (self->held) {
        PyBuffer_Release(&self->data);
        PyBuffer_Release(&self->cols);
        self->held = 0;
    }
    cnn_free(self->rowptr);
    cnn_free(self->dataoff);
    cnn_free(self->cols32);
    self->rowptr = self->dataoff = NULL;
    self->cols32 = NULL;
}

static void Csr_dealloc(CsrObject *self) {
    Csr_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* dataoff (m entries): every row's values data[dataoff[r] .. + row length] in range. */
static int64_t *prepare_dataoff(PyObject *obj, const int64_t *rowptr, int64_t m, int64_t ndata) {
    Py_buffer b;
    if (get_ubuf(obj, &b, "dataoff") < 0) return NULL;
    int64_t *out = NULL;
    if (ulen(&b) != m) {
        PyErr_Format(PyExc_ValueError, "dataoff: expected %lld entries, got %lld", (long long)m,
                     (long long)ulen(&b));
    } else if ((out = int64_copy(&b))) {
        for (int64_t r = 0; r < m; r++)
            if (uget(&b, r) > (uint64_t)ndata || rowptr[r + 1] - rowptr[r] > ndata - out[r]) {
                PyErr_Format(PyExc_ValueError, "dataoff: row %lld reads past the %lld values",
                             (long long)r, (long long)ndata);
                cnn_free(out);
                out = NULL;
                break;
            }
    }
    PyBuffer_Release(&b);
    return out;
}

static int Csr_init(CsrObject *self, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"data", "indices", "indptr", "m", "n", "dataoff", NULL};
    PyObject *dobj, *iobj, *pobj, *oobj = Py_None;
    long long m, n;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOLL|O", kw, &dobj, &iobj, &pobj, &m, &n,
                                     &oobj))
        return -1;
    Csr_clear(self);
    if (m < 0 || n < 0) {
        PyErr_SetString(PyExc_ValueError, "CsrMatrix: negative shape");
        return -1;
    }
    Py_buffer pb;
    if (get_buf(dobj, &self->data, 'f', 4, 0, 0, "data") < 0) return -1;
    if (get_ubuf(iobj, &self->cols, "indices") < 0) {
        PyBuffer_Release(&self->data);
        return -1;
    }
    self->held = 1;
    if (get_ubuf(pobj, &pb, "indptr") < 0) return -1;
    const int64_t ndata = self->data.len / 4, nnz = oobj == Py_None ? ndata : ulen(&self->cols);
    int bytes = -1;
    if (ulen(&self->cols) != nnz)
        PyErr_Format(PyExc_ValueError, "indices: expected %lld entries, got %lld",
                     (long long)nnz, (long long)ulen(&self->cols));
    else if (check_ptr(&pb, m + 1, nnz, "indptr") == 0 && (self->rowptr = int64_copy(&pb)) &&
             (oobj == Py_None || (self->dataoff = prepare_dataoff(oobj, self->rowptr, m, ndata))))
        bytes = prepare_cols(&self->cols, n, &self->cols32, "indices");
    PyBuffer_Release(&pb);
    if (bytes < 0) return -1;
    self->W = (cnn_csr){.m = m, .n = n, .col_bytes = bytes, .data = self->data.buf,
                        .cols = self->cols32 ? (const void *)self->cols32 : self->cols.buf,
                        .rowptr = self->rowptr, .dataoff = self->dataoff};
    return 0;
}

static int csr_rows(const void *W, const float *X, int64_t ldx, int64_t B, float *Y, int64_t ldy,
                    const float *bias) {
    return cnn_csr_rows(W, X, ldx, B, Y, ldy, bias);
}

static int csr_mm(const void *W, const float *X, int64_t ldx, int64_t b, float *Y, int64_t ldy) {
    return cnn_csr_matmul(W, X, ldx, b, Y, ldy);
}

static PyObject *Csr_rows(CsrObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!self->rowptr) return PyErr_Format(PyExc_ValueError, "CsrMatrix is not initialised");
    return cnn_call_rows(&self->W, self->W.m, self->W.n, csr_rows, args, nargs);
}

static PyObject *Csr_matmul(CsrObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!self->rowptr) return PyErr_Format(PyExc_ValueError, "CsrMatrix is not initialised");
    return cnn_call_matmul(&self->W, self->W.m, self->W.n, csr_mm, args, nargs);
}

static PyMethodDef Csr_methods[] = {
    {"rows", (PyCFunction)(void (*)(void))Csr_rows, METH_FASTCALL,
     "rows(X, Y, B, bias): Y (B, m) = X (B, n) @ W^T (+ bias)"},
    {"matmul", (PyCFunction)(void (*)(void))Csr_matmul, METH_FASTCALL,
     "matmul(X, Y, b): Y (m, b) = W @ X (n, b)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CsrType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "compactnn.kernels._native.CsrMatrix",
    .tp_basicsize = sizeof(CsrObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "CsrMatrix(data, indices, indptr, m, n, dataoff=None): csr arrays for the sparse "
              "kernels; with dataoff (m offsets), row r's values are data[dataoff[r]:] "
              "(rows sharing values, as in permseq)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Csr_init,
    .tp_dealloc = (destructor)Csr_dealloc,
    .tp_methods = Csr_methods,
};

/* ---- GroupedMatrix (cer / cser) ----------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    cnn_grouped W;
    Py_buffer cols, gptr, gidx, shifted;
    int held, has_idx;
    int64_t *rowptr;
    uint32_t *cols32, *gptr32, *gidx32;
} GroupedObject;

static void Grouped_clear(GroupedObject *self) {
    if (self->held) {
        PyBuffer_Release(&self->cols);
        PyBuffer_Release(&self->gptr);
        PyBuffer_Release(&self->shifted);
        if (self->has_idx) PyBuffer_Release(&self->gidx);
        self->held = self->has_idx = 0;
    }
    cnn_free(self->rowptr);
    cnn_free(self->cols32);
    cnn_free(self->gptr32);
    cnn_free(self->gidx32);
    self->rowptr = NULL;
    self->cols32 = self->gptr32 = self->gidx32 = NULL;
}

static void Grouped_dealloc(GroupedObject *self) {
    Grouped_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Checks of the group structure; fills width (most entries in a row). */
static int check_groups(GroupedObject *self, const Py_buffer *rp, int64_t m, int64_t K,
                        int64_t *width) {
    const Py_buffer *gp = &self->gptr;
    *width = 0;
    for (int64_t r = 0; r < m; r++) {
        const int64_t g0 = (int64_t)uget(rp, r), g1 = (int64_t)uget(rp, r + 1);
        const int64_t e = (int64_t)(uget(gp, g1) - uget(gp, g0));
        if (e > *width) *width = e;
        if (!self->has_idx && g1 - g0 > (K > 0 ? K - 1 : 0)) {
            PyErr_Format(PyExc_ValueError, "row_ptr: row %lld has %lld groups for %lld values",
                         (long long)r, (long long)(g1 - g0), (long long)K);
            return -1;
        }
    }
    if (self->has_idx)
        for (int64_t g = 0; g < ulen(&self->gidx); g++)
            if (uget(&self->gidx, g) >= (uint64_t)K) {
                PyErr_Format(PyExc_ValueError, "omega_idx: code %llu out of range [0, %lld)",
                             (unsigned long long)uget(&self->gidx, g), (long long)K);
                return -1;
            }
    return 0;
}

static int Grouped_init(GroupedObject *self, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"col_idx", "omega_ptr", "row_ptr", "omega_idx", "shifted", "omega0",
                         "m", "n", NULL};
    PyObject *cobj, *gobj, *robj, *iobj, *sobj;
    float omega0;
    long long m, n;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOOfLL", kw, &cobj, &gobj, &robj, &iobj,
                                     &sobj, &omega0, &m, &n))
        return -1;
    Grouped_clear(self);
    if (m < 0 || n < 0) {
        PyErr_SetString(PyExc_ValueError, "GroupedMatrix: negative shape");
        return -1;
    }
    if (get_buf(sobj, &self->shifted, 'f', 4, 0, 0, "shifted") < 0) return -1;
    if (get_ubuf(cobj, &self->cols, "col_idx") < 0) {
        PyBuffer_Release(&self->shifted);
        return -1;
    }
    if (get_ubuf(gobj, &self->gptr, "omega_ptr") < 0) {
        PyBuffer_Release(&self->shifted);
        PyBuffer_Release(&self->cols);
        return -1;
    }
    self->held = 1;
    if (iobj != Py_None) {
        if (get_ubuf(iobj, &self->gidx, "omega_idx") < 0) return -1;
        self->has_idx = 1;
    }
    Py_buffer rb;
    if (get_ubuf(robj, &rb, "row_ptr") < 0) return -1;
    const int64_t nnz = ulen(&self->cols), G = ulen(&self->gptr) - 1, K = self->shifted.len / 4;
    int64_t width = 0;
    int cbytes = -1;
    if (G < 0) PyErr_SetString(PyExc_ValueError, "omega_ptr: empty");
    else if (self->has_idx && ulen(&self->gidx) != G)
        PyErr_Format(PyExc_ValueError, "omega_idx: expected %lld entries, got %lld",
                     (long long)G, (long long)ulen(&self->gidx));
    else if (check_ptr(&rb, m + 1, G, "row_ptr") == 0 &&
             check_ptr(&self->gptr, G + 1, nnz, "omega_ptr") == 0 &&
             check_groups(self, &rb, m, K, &width) == 0 && (self->rowptr = int64_copy(&rb)))
        cbytes = prepare_cols(&self->cols, n, &self->cols32, "col_idx");
    PyBuffer_Release(&rb);
    if (cbytes < 0) return -1;
    int pbytes = (int)self->gptr.itemsize, ibytes = self->has_idx ? (int)self->gidx.itemsize : 0;
    if (pbytes < 4) {
        if (!(self->gptr32 = uint32_copy(&self->gptr))) return -1;
        pbytes = 4;
    }
    if (ibytes == 8) {
        if (!(self->gidx32 = uint32_copy(&self->gidx))) return -1;
        ibytes = 4;
    }
    self->W = (cnn_grouped){
        .m = m, .n = n, .width = width, .col_bytes = cbytes, .ptr_bytes = pbytes,
        .idx_bytes = ibytes, .shift = omega0 != 0.f, .omega0 = omega0,
        .cols = self->cols32 ? (const void *)self->cols32 : self->cols.buf,
        .gptr = self->gptr32 ? (const void *)self->gptr32 : self->gptr.buf,
        .gidx = self->gidx32 ? (const void *)self->gidx32 : (ibytes ? self->gidx.buf : NULL),
        .rowptr = self->rowptr, .shifted = self->shifted.buf};
    return 0;
}

static int grp_rows(const void *W, const float *X, int64_t ldx, int64_t B, float *Y, int64_t ldy,
                    const float *bias) {
    return cnn_grouped_rows(W, X, ldx, B, Y, ldy, bias);
}

static int grp_mm(const void *W, const float *X, int64_t ldx, int64_t b, float *Y, int64_t ldy) {
    return cnn_grouped_matmul(W, X, ldx, b, Y, ldy);
}

static PyObject *Grouped_rows(GroupedObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!self->rowptr) return PyErr_Format(PyExc_ValueError, "GroupedMatrix is not initialised");
    return cnn_call_rows(&self->W, self->W.m, self->W.n, grp_rows, args, nargs);
}

static PyObject *Grouped_matmul(GroupedObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!self->rowptr) return PyErr_Format(PyExc_ValueError, "GroupedMatrix is not initialised");
    return cnn_call_matmul(&self->W, self->W.m, self->W.n, grp_mm, args, nargs);
}

static PyMethodDef Grouped_methods[] = {
    {"rows", (PyCFunction)(void (*)(void))Grouped_rows, METH_FASTCALL,
     "rows(X, Y, B, bias): Y (B, m) = X (B, n) @ W^T (+ bias)"},
    {"matmul", (PyCFunction)(void (*)(void))Grouped_matmul, METH_FASTCALL,
     "matmul(X, Y, b): Y (m, b) = W @ X (n, b)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject GroupedType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "compactnn.kernels._native.GroupedMatrix",
    .tp_basicsize = sizeof(GroupedObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "GroupedMatrix(col_idx, omega_ptr, row_ptr, omega_idx, shifted, omega0, m, n): "
              "cer (omega_idx None) or cser arrays for the sum-then-multiply kernels",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Grouped_init,
    .tp_dealloc = (destructor)Grouped_dealloc,
    .tp_methods = Grouped_methods,
};

int cnn_add_sparse(PyObject *mod) {
    if (cnn_add_type(mod, &CsrType, "CsrMatrix") < 0) return -1;
    return cnn_add_type(mod, &GroupedType, "GroupedMatrix");
}
