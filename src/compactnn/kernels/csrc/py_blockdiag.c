/* BlockDiagMatrix: the blockdiag format's layout for the kernels (blockdiag.c). */
#include "pybind.h"

#include <string.h>

typedef struct {
    PyObject_HEAD
    cnn_blockdiag W;
    Py_buffer data; /* held for the object's lifetime */
    int held;
    int64_t *idx; /* rows, cols, row_ptr, col_ptr, data_ptr in one allocation */
} BlockDiagObject;

static void Bd_clear(BlockDiagObject *self) {
    if (self->held) PyBuffer_Release(&self->data);
    self->held = 0;
    cnn_free(self->idx);
    self->idx = NULL;
}

static void Bd_dealloc(BlockDiagObject *self) {
    Bd_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Copy exactly `count` int64 items of obj into out; -1 with an exception otherwise. */
static int copy_i64(PyObject *obj, int64_t *out, int64_t count, const char *name) {
    Py_buffer b;
    if (PyObject_GetBuffer(obj, &b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    int ok = (is_format(&b, 'q') || is_format(&b, 'l')) && b.itemsize == 8;
    if (ok && b.len / 8 == count) memcpy(out, b.buf, (size_t)count * 8);
    else if (ok)
        PyErr_Format(PyExc_ValueError, "%s: expected %lld items, got %lld", name,
                     (long long)count, (long long)(b.len / 8));
    else PyErr_Format(PyExc_TypeError, "%s: expected a contiguous int64 array", name);
    PyBuffer_Release(&b);
    return ok && b.len / 8 == count ? 0 : -1;
}

static int bad(const char *msg) {
    PyErr_Format(PyExc_ValueError, "BlockDiagMatrix: %s", msg);
    return -1;
}

/* A permutation of 0 .. count-1 (seen: count bytes of scratch). */
static int is_perm(const int64_t *v, int64_t count, uint8_t *seen) {
    memset(seen, 0, (size_t)count);
    for (int64_t i = 0; i < count; i++) {
        if (v[i] < 0 || v[i] >= count || seen[v[i]]) return 0;
        seen[v[i]] = 1;
    }
    return 1;
}

static int ptrs_ok(const int64_t *p, int64_t nb, int64_t end) {
    if (p[0] != 0) return 0;
    for (int64_t b = 0; b < nb; b++)
        if (p[b + 1] < p[b]) return 0;
    return p[nb] <= end;
}

static int Bd_init(BlockDiagObject *self, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"data", "rows", "cols", "row_ptr", "col_ptr", "m", "n", NULL};
    PyObject *dobj, *robj, *cobj, *rpobj, *cpobj;
    long long m, n;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOOLL", kw, &dobj, &robj, &cobj, &rpobj,
                                     &cpobj, &m, &n))
        return -1;
    Bd_clear(self);
    if (m < 0 || n < 0) return bad("negative shape");
    Py_buffer pb;
    if (PyObject_GetBuffer(rpobj, &pb, PyBUF_C_CONTIGUOUS) < 0) return -1;
    const int64_t nb = pb.len / 8 - 1;
    PyBuffer_Release(&pb);
    if (nb < 0) return bad("row_ptr needs at least one entry");
    self->idx = cnn_alloc((size_t)(m + n + 3 * (nb + 1)) * 8 + (size_t)(m > n ? m : n) + 1);
    if (!self->idx) {
        PyErr_NoMemory();
        return -1;
    }
    int64_t *rows = self->idx, *cols = rows + m, *rp = cols + n, *cp = rp + nb + 1,
            *dp = cp + nb + 1;
    uint8_t *seen = (uint8_t *)(dp + nb + 1);
    if (copy_i64(robj, rows, m, "rows") < 0 || copy_i64(cobj, cols, n, "cols") < 0 ||
        copy_i64(rpobj, rp, nb + 1, "row_ptr") < 0 || copy_i64(cpobj, cp, nb + 1, "col_ptr") < 0)
        return -1;
    if (!is_perm(rows, m, seen)) return bad("rows is not a permutation of the rows");
    if (!is_perm(cols, n, seen)) return bad("cols is not a permutation of the columns");
    if (!ptrs_ok(rp, nb, m) || !ptrs_ok(cp, nb, n)) return bad("bad block pointers");
    int64_t maxc = 0;
    dp[0] = 0;
    for (int64_t b = 0; b < nb; b++) {
        const int64_t c = cp[b + 1] - cp[b];
        dp[b + 1] = dp[b] + (rp[b + 1] - rp[b]) * c;
        maxc = c > maxc ? c : maxc;
    }
    if (get_buf(dobj, &self->data, 'f', 4, dp[nb], 0, "data") < 0) return -1;
    self->held = 1;
    self->W = (cnn_blockdiag){.m = m, .n = n, .nblocks = nb, .maxcols = maxc, .ndata = dp[nb],
                              .data = self->data.buf, .rows = rows, .cols = cols,
                              .row_ptr = rp, .col_ptr = cp, .data_ptr = dp};
    return 0;
}

static int bd_rows(const void *W, const float *X, int64_t ldx, int64_t B, float *Y, int64_t ldy,
                   const float *bias) {
    return cnn_blockdiag_rows(W, X, ldx, B, Y, ldy, bias);
}

static PyObject *Bd_rows(BlockDiagObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!self->held) return PyErr_Format(PyExc_ValueError, "BlockDiagMatrix is not initialised");
    return cnn_call_rows(&self->W, self->W.m, self->W.n, bd_rows, args, nargs);
}

static PyMethodDef Bd_methods[] = {
    {"rows", (PyCFunction)(void (*)(void))Bd_rows, METH_FASTCALL,
     "rows(X, Y, B, bias): Y (B, m) = X (B, n) @ W^T (+ bias)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject BlockDiagType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "compactnn.kernels._native.BlockDiagMatrix",
    .tp_basicsize = sizeof(BlockDiagObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "BlockDiagMatrix(data, rows, cols, row_ptr, col_ptr, m, n): a blockdiag matrix "
              "(int64 layout arrays as BlockDiag.layout() gives them) for the native kernels",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Bd_init,
    .tp_dealloc = (destructor)Bd_dealloc,
    .tp_methods = Bd_methods,
};

int cnn_add_blockdiag(PyObject *mod) { return cnn_add_type(mod, &BlockDiagType, "BlockDiagMatrix"); }
