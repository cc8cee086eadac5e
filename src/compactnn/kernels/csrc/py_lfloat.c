/* LFloatMatrix: the lossless_float format's kernels (lfloat.c) on its stored arrays. */
#include "pybind.h"

#include <string.h>

typedef struct {
    PyObject_HEAD
    cnn_lfloat W;
    Py_buffer words, tails, block_bits; /* held: the kernels read them in place */
    int held;                           /* how many of the three are held */
    uint64_t *table;
    uint32_t *heads;
    uint64_t limit[34];
    int64_t base[34];
    uint8_t *perm, *perm4;
    uint32_t *shift, *shift4;
} LFloatObject;

static void LFloat_release(LFloatObject *self) {
    Py_buffer *bufs[3] = {&self->words, &self->tails, &self->block_bits};
    for (int i = 0; i < self->held; i++) PyBuffer_Release(bufs[i]);
    self->held = 0;
    cnn_free(self->table);
    cnn_free(self->heads);
    cnn_free(self->perm);
    cnn_free(self->shift);
    cnn_free(self->perm4);
    cnn_free(self->shift4);
    self->table = NULL;
    self->heads = self->shift = self->shift4 = NULL;
    self->perm = self->perm4 = NULL;
}

static void LFloat_dealloc(LFloatObject *self) {
    LFloat_release(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The SIMD tail-unpacking patterns for ``lanes`` 4-byte lanes (16: VBMI, 4: AVX2): 32
 * phases of ``lanes * 4`` byte indices and ``lanes`` shifts; -1 with MemoryError. */
static int patterns(int w, int lanes, uint8_t **perm, uint32_t **shift) {
    *perm = cnn_alloc(32 * lanes * 4);
    *shift = cnn_alloc(32 * lanes * 4);
    if (!*perm || !*shift) {
        PyErr_NoMemory();
        return -1;
    }
    cnn_lfloat_patterns(w, lanes, *perm, *shift);
    return 0;
}

static int LFloat_init(LFloatObject *self, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"words", "block_bits", "tails", "length_counts", "omega", "m", "n",
                         "head_bits", "zero_bits", NULL};
    PyObject *wobj, *bobj, *tobj, *lobj, *oobj;
    long long m, n;
    int h, z;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOOLLii", kw, &wobj, &bobj, &tobj, &lobj,
                                     &oobj, &m, &n, &h, &z))
        return -1;
    LFloat_release(self);
    if (m < 0 || n < 0 || h < 0 || z < 0 || h + z > 23 || (n > 0 && m > INT64_MAX / 32 / n)) {
        PyErr_SetString(PyExc_ValueError, "LFloatMatrix: bad shape or head_bits/zero_bits");
        return -1;
    }
    const int w = 24 - h - z;
    const int64_t nblocks = (m + 7) / 8, entries = m * n;
    Py_buffer lb, ob;
    if (get_i64(lobj, &lb, 0, "length_counts") < 0) return -1;
    if (get_buf(oobj, &ob, 'f', 4, entries > 0, 0, "omega") < 0) {
        PyBuffer_Release(&lb);
        return -1;
    }
    const int lmax = (int)(lb.len / 8);
    const int64_t K = ob.len / 4;
    int rc = -1;
    const char *err = NULL;
    if (get_i64(bobj, &self->block_bits, nblocks + 1, "block_bits") < 0) goto done;
    self->held = 1;
    const int64_t *bb = self->block_bits.buf;
    for (int64_t b = 0; b < nblocks; b++)
        if (bb[b] < 0 || bb[b + 1] < bb[b]) {
            err = "LFloatMatrix: block_bits must start >= 0 and not decrease";
            goto done;
        }
    if (bb[nblocks] < 0 || bb[nblocks] >= ((int64_t)1 << 40) - 64) { /* LF_KSHIFT */
        err = "LFloatMatrix: the head stream must be shorter than 2^40 bits";
        goto done;
    }
    if (get_buf(wobj, &self->words, 'I', 4, bb[nblocks] / 32 + 2, 0, "words") < 0) goto done;
    self->held = 2;
    const int64_t tbits = entries * w;
    if (get_buf(tobj, &self->tails, 'I', 4, tbits / 32 + 2, 0, "tails") < 0) goto done;
    self->held = 3;
    if (lmax > 32 || (lmax == 0 && K > 1) || (entries > 0 && K == 0)) {
        err = "LFloatMatrix: length_counts does not match omega";
        goto done;
    }
    const int t = CNN_LFLOAT_T;
    self->table = cnn_alloc(sizeof(uint64_t) << t);
    self->heads = cnn_alloc(sizeof(uint32_t) * (size_t)(K ? K : 1));
    if (!self->table || !self->heads) {
        PyErr_NoMemory();
        goto done;
    }
    memcpy(self->heads, ob.buf, (size_t)K * 4);
    const uint32_t keep = 0x7F800000u | (((1u << h) - 1) << (23 - h));
    for (int64_t i = 0; i < K; i++)
        if (self->heads[i] & ~keep) {
            err = "LFloatMatrix: omega holds a head with sign or tail bits set";
            goto done;
        }
    if (K == 0) self->heads[0] = 0;
    if (cnn_lfloat_tables(lb.buf, lmax, t, self->heads, K, self->table, self->limit,
                          self->base) < 0) {
        err = "LFloatMatrix: length_counts is not a valid code for omega";
        goto done;
    }
    if (cnn_lfloat_vbmi() && patterns(w, 16, &self->perm, &self->shift) < 0) goto done;
    if (cnn_cpu_level() >= CNN_AVX2 && cnn_cpu_level() != CNN_NEON &&
        patterns(w, 4, &self->perm4, &self->shift4) < 0)
        goto done;
    self->W = (cnn_lfloat){
        .m = m, .n = n, .tail_words = self->tails.len / 4, .w = w, .z = z, .h = h,
        .lmax = lmax, .K = (int32_t)K, .mmask = ((1u << (w - 1)) - 1) << z,
        .words = self->words.buf, .tails = self->tails.buf, .block_bits = bb,
        .table = self->table, .heads = self->heads, .limit = self->limit, .base = self->base,
        .perm = self->perm, .shift = self->shift, .perm4 = self->perm4,
        .shift4 = self->shift4};
    rc = 0;
done:
    if (err) PyErr_SetString(PyExc_ValueError, err);
    if (rc) LFloat_release(self);
    PyBuffer_Release(&lb);
    PyBuffer_Release(&ob);
    return rc;
}

static int lfloat_rows(const void *W, const float *X, int64_t ldx, int64_t B, float *Y,
                       int64_t ldy, const float *bias) {
    return cnn_lfloat_rows(W, X, ldx, B, Y, ldy, bias);
}

static int ready(LFloatObject *self) {
    if (self->held == 3) return 1;
    PyErr_SetString(PyExc_RuntimeError, "LFloatMatrix is not initialised");
    return 0;
}

/* rows(X, Y, B, bias): Y (B, m) = X (B, n) @ W^T (+ bias). */
static PyObject *LFloat_rows(LFloatObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!ready(self)) return NULL;
    return cnn_call_rows(&self->W, self->W.m, self->W.n, lfloat_rows, args, nargs);
}

/* decode_rows(r0, nr, out): out (nr, n) = W[r0 : r0 + nr]. */
static PyObject *LFloat_decode_rows(LFloatObject *self, PyObject *const *args,
                                    Py_ssize_t nargs) {
    if (!ready(self)) return NULL;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "decode_rows(r0, nr, out) takes 3 arguments");
        return NULL;
    }
    long long r0 = PyLong_AsLongLong(args[0]), nr = PyLong_AsLongLong(args[1]);
    if (PyErr_Occurred()) return NULL;
    const cnn_lfloat *W = &self->W;
    if (r0 < 0 || nr < 0 || r0 > W->m || nr > W->m - r0) {
        PyErr_SetString(PyExc_ValueError, "decode_rows: rows out of range");
        return NULL;
    }
    Py_buffer ob;
    if (get_buf(args[2], &ob, 'f', 4, nr * W->n, 1, "out") < 0) return NULL;
    int rc = 0;
    Py_BEGIN_ALLOW_THREADS
    rc = cnn_lfloat_decode_rows(W, r0, nr, ob.buf, W->n);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&ob);
    if (rc) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *LFloat_counts(LFloatObject *self, PyObject *unused) {
    (void)unused;
    if (!ready(self)) return NULL;
    int64_t c[3];
    Py_BEGIN_ALLOW_THREADS
    cnn_lfloat_counts(&self->W, c);
    Py_END_ALLOW_THREADS
    return Py_BuildValue("(LLL)", (long long)c[0], (long long)c[1], (long long)c[2]);
}

static PyObject *LFloat_vbmi(LFloatObject *self, void *closure) {
    (void)closure;
    return PyBool_FromLong(self->perm != NULL);
}

static PyMethodDef LFloat_methods[] = {
    {"rows", (PyCFunction)(void (*)(void))LFloat_rows, METH_FASTCALL,
     "rows(X, Y, B, bias): Y (B, m) = X (B, n) @ W^T (+ bias)"},
    {"decode_rows", (PyCFunction)(void (*)(void))LFloat_decode_rows, METH_FASTCALL,
     "decode_rows(r0, nr, out): out (nr, n) = W[r0 : r0 + nr]"},
    {"counts", (PyCFunction)LFloat_counts, METH_NOARGS,
     "counts(): (table lookups, codes longer than the table, their limit comparisons) of a "
     "decoding pass"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef LFloat_getset[] = {
    {"vbmi", (getter)LFloat_vbmi, NULL,
     "whether the AVX-512 level unpacks tails with VBMI on this CPU", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject LFloatType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "compactnn.kernels._native.LFloatMatrix",
    .tp_basicsize = sizeof(LFloatObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "LFloatMatrix(words, block_bits, tails, length_counts, omega, m, n, head_bits, "
              "zero_bits): a lossless_float matrix's kernels on its stored arrays",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)LFloat_init,
    .tp_dealloc = (destructor)LFloat_dealloc,
    .tp_methods = LFloat_methods,
    .tp_getset = LFloat_getset,
};

int cnn_add_lfloat(PyObject *mod) { return cnn_add_type(mod, &LFloatType, "LFloatMatrix"); }
