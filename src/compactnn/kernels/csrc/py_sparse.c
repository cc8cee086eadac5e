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

/* ---- the sliced layout (sliced.c), built when the CPU runs AVX-512 ---------------- */

typedef struct {
    cnn_sliced S;
    int64_t *slice_ptr;
    uint32_t *xoff;
    uint16_t *slots;
} Sliced;

static void sliced_free(Sliced *L) {
    cnn_free(L->slice_ptr);
    cnn_free(L->xoff);
    cnn_free(L->slots);
    memset(L, 0, sizeof *L);
}

/* Padded slots per entry above which the sliced kernel is not used: it then runs
 * slower than the row kernels. Measured at 4096 x 4096 with 32 values, 1 thread
 * (sliced vs row kernel): csr 1.8x at 90% pruning (2.0 slots an entry), 1.0x at 98%
 * (3.6); cer 3.1x at 90%, 2.9x at 98% (its row kernel costs about 3x csr's). */
#define SLICED_MAX_PAD_CSR 3.5
#define SLICED_MAX_PAD_GROUPED 8.0

/* Build the layout of entries rowptr (int64, m + 1) with codes (< 32) into the values
 * lut[0 .. K); leaves L empty (not an error) on a CPU without AVX-512 or when the
 * padding is too large; -1 only when memory runs out. */
static int sliced_build(Sliced *L, int64_t m, int64_t n, const int64_t *rowptr,
                        const void *cols, int col_bytes, const uint8_t *codes, const float *lut,
                        int64_t K, double max_pad) {
    memset(L, 0, sizeof *L);
    if (cnn_cpu_level() < CNN_AVX512 || K > 32 || m == 0) return 0;
    const int64_t ns = (m + 15) / 16, nnz = rowptr[m];
    int64_t steps = cnn_sliced_layout(m, n, rowptr, cols, col_bytes, codes, NULL, NULL, NULL);
    if (steps < 0) goto nomem;
    if (16.0 * (double)steps > max_pad * (double)nnz) return 0;
    L->slice_ptr = cnn_alloc((size_t)(ns + 1) * sizeof(int64_t));
    L->xoff = cnn_alloc((size_t)(steps ? steps : 1) * sizeof(uint32_t));
    L->slots = cnn_alloc((size_t)(steps ? steps : 1) * 16 * sizeof(uint16_t));
    if (!L->slice_ptr || !L->xoff || !L->slots ||
        cnn_sliced_layout(m, n, rowptr, cols, col_bytes, codes, L->slice_ptr, L->xoff, L->slots) < 0)
        goto nomem;
    L->S = (cnn_sliced){.m = m, .n = n, .nslices = ns, .slice_ptr = L->slice_ptr,
                        .xoff = L->xoff, .slots = L->slots};
    for (int64_t c = 0; c < 32; c++) L->S.lut[c] = c < K ? lut[c] : 0.f;
    return 0;
nomem:
    sliced_free(L);
    PyErr_NoMemory();
    return -1;
}

/* The sliced kernel runs batch 1 at the AVX-512 level when the layout was built. */
static inline int sliced_use(const Sliced *L, int64_t B) {
    return B == 1 && L->slots && cnn_get_level() == CNN_AVX512;
}

/* ---- CsrMatrix ------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    cnn_csr W;
    Py_buffer data, cols;
    int held;
    int64_t *rowptr, *dataoff;
    uint32_t *cols32;
    Sliced sl;
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
    sliced_free(&self->sl);
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

static int csr_sliced(CsrObject *self);

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
    return self->dataoff ? 0 : csr_sliced(self);
}

/* The sliced layout when the values take at most 32 bit patterns (a codebook). */
static int csr_sliced(CsrObject *self) {
    const cnn_csr *W = &self->W;
    const int64_t nnz = W->rowptr[W->m];
    if (cnn_cpu_level() < CNN_AVX512 || nnz == 0) return 0;
    uint32_t keys[64];
    int8_t slot[64];
    float lut[32];
    int K = 0;
    memset(slot, -1, sizeof slot);
    uint8_t *codes = cnn_alloc((size_t)nnz);
    if (!codes) {
        PyErr_NoMemory();
        return -1;
    }
    const uint32_t *bits = (const uint32_t *)W->data;
    int64_t j = 0;
    for (; j < nnz; j++) { /* open addressing over 64 slots, keyed by bit pattern */
        uint32_t h = (bits[j] * 2654435761u) >> 26;
        while (slot[h] >= 0 && keys[h] != bits[j]) h = (h + 1) & 63;
        if (slot[h] < 0) {
            if (K == 32) break; /* a 33rd value: no codebook */
            keys[h] = bits[j], slot[h] = (int8_t)K, lut[K++] = W->data[j];
        }
        codes[j] = (uint8_t)slot[h];
    }
    int rc = 0;
    if (j == nnz)
        rc = sliced_build(&self->sl, W->m, W->n, W->rowptr, W->cols, W->col_bytes, codes, lut, K,
                          SLICED_MAX_PAD_CSR);
    cnn_free(codes);
    return rc;
}

static int csr_rows(const void *W, const float *X, int64_t ldx, int64_t B, float *Y, int64_t ldy,
                    const float *bias) {
    const CsrObject *self = W;
    if (sliced_use(&self->sl, B)) return cnn_sliced_matvec(&self->sl.S, X, Y, bias, 0.f);
    return cnn_csr_rows(&self->W, X, ldx, B, Y, ldy, bias);
}

static int csr_mm(const void *W, const float *X, int64_t ldx, int64_t b, float *Y, int64_t ldy) {
    return cnn_csr_matmul(W, X, ldx, b, Y, ldy);
}

static PyObject *Csr_rows(CsrObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!self->rowptr) return PyErr_Format(PyExc_ValueError, "CsrMatrix is not initialised");
    return cnn_call_rows(self, self->W.m, self->W.n, csr_rows, args, nargs);
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

static PyObject *sliced_steps(const Sliced *L) {
    return PyLong_FromLongLong(L->slots ? (long long)L->slice_ptr[L->S.nslices] : 0);
}

static PyObject *Csr_sliced_steps(CsrObject *self, void *closure) {
    return sliced_steps(&self->sl);
}

static PyGetSetDef Csr_getset[] = {
    {"sliced_steps", (getter)Csr_sliced_steps, NULL,
     "steps of the sliced codebook layout (batch 1 on AVX-512), 0 when not built", NULL},
    {NULL, NULL, NULL, NULL, NULL},
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
    .tp_getset = Csr_getset,
};

/* ---- GroupedMatrix (cer / cser) ----------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    cnn_grouped W;
    Py_buffer cols, gptr, gidx, shifted;
    int held, has_idx;
    int64_t *rowptr;
    uint32_t *cols32, *gptr32, *gidx32;
    Sliced sl;
    /* at most 32 values: the entries as csr rows with codes (batched, AVX-512) */
    cnn_csr coded;
    int64_t *erow;
    uint8_t *codes;
    float lut[32];
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
    sliced_free(&self->sl);
    cnn_free(self->erow);
    cnn_free(self->codes);
    self->erow = NULL;
    self->codes = NULL;
    memset(&self->coded, 0, sizeof self->coded);
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

static int grouped_sliced(GroupedObject *self);

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
    return grouped_sliced(self);
}

/* The entries (row by row, in group order) with their codes as csr rows (batched
 * products) and their sliced layout (batch 1), when the groups use at most 32 of the
 * values (cer's code 0, omega0, is never a group's: the used codes are numbered
 * afresh). */
static int grouped_sliced(GroupedObject *self) {
    const cnn_grouped *W = &self->W;
    const int64_t m = W->m, nnz = ulen(&self->cols), K = self->shifted.len / 4;
    if (cnn_cpu_level() < CNN_AVX512 || nnz == 0) return 0;
    int64_t *erow = cnn_alloc((size_t)(m + 1) * sizeof(int64_t));
    uint8_t *codes = cnn_alloc((size_t)nnz);
    int16_t *remap = cnn_alloc((size_t)K * sizeof(int16_t));
    int rc = -1, used = 0;
    float *lut = self->lut;
    if (!erow || !codes || !remap) {
        PyErr_NoMemory();
        goto done;
    }
    for (int64_t c = 0; c < K; c++) remap[c] = -1;
    const Py_buffer *gp = &self->gptr;
    for (int64_t r = 0; r < m; r++) {
        const int64_t g0 = W->rowptr[r], g1 = W->rowptr[r + 1];
        erow[r] = (int64_t)uget(gp, g0);
        for (int64_t g = g0; g < g1; g++) {
            const int64_t c = self->has_idx ? (int64_t)uget(&self->gidx, g) : g - g0 + 1;
            if (uget(gp, g) == uget(gp, g + 1)) continue;
            if (remap[c] < 0) {
                if (used == 32) { /* a 33rd value: no codebook */
                    rc = 0;
                    goto done;
                }
                lut[used] = W->shifted[c], remap[c] = (int16_t)used++;
            }
            for (uint64_t j = uget(gp, g); j < uget(gp, g + 1); j++) codes[j] = (uint8_t)remap[c];
        }
    }
    erow[m] = nnz;
    rc = sliced_build(&self->sl, m, W->n, erow, W->cols, W->col_bytes, codes, lut, used,
                      SLICED_MAX_PAD_GROUPED);
    if (rc == 0) {
        self->coded = (cnn_csr){.m = m, .n = W->n, .col_bytes = W->col_bytes, .cols = W->cols,
                                .rowptr = erow, .codes = codes, .lut = lut};
        self->erow = erow, self->codes = codes;
        erow = NULL, codes = NULL;
    }
done:
    cnn_free(erow);
    cnn_free(codes);
    cnn_free(remap);
    return rc;
}

/* Batched cer/cser products at the AVX-512 level run as csr rows with codes: one
 * broadcast and FMA per entry and block of inputs, no loop per group (its exits
 * mispredict: 4096 x 4096, 90%, b = 64 ran 5.1 ms grouped, 4.3 ms as csr). */
static inline int coded_use(const GroupedObject *self) {
    return self->codes && cnn_get_level() == CNN_AVX512;
}

/* x[0] + ... + x[n-1] in eight chains (one chain of n dependent adds costs
 * microseconds at n = 4096). */
static float sum8(const float *x, int64_t n) {
    float a[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    int64_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (int u = 0; u < 8; u++) a[u] += x[k + u];
    for (; k < n; k++) a[0] += x[k];
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

static int grp_rows(const void *W, const float *X, int64_t ldx, int64_t B, float *Y, int64_t ldy,
                    const float *bias) {
    const GroupedObject *self = W;
    if (sliced_use(&self->sl, B)) /* + omega0 * sum(x): every entry not stored is omega0 */
        return cnn_sliced_matvec(&self->sl.S, X, Y, bias,
                                 self->W.shift ? self->W.omega0 * sum8(X, self->W.n) : 0.f);
    if (B > 1 && coded_use(self)) {
        if (cnn_csr_rows(&self->coded, X, ldx, B, Y, ldy, bias)) return -1;
        if (self->W.shift) /* + omega0 * sum(x) for each input */
            for (int64_t i = 0; i < B; i++) {
                const float base = self->W.omega0 * sum8(X + i * ldx, self->W.n);
                for (int64_t r = 0; r < self->W.m; r++) Y[i * ldy + r] += base;
            }
        return 0;
    }
    return cnn_grouped_rows(&self->W, X, ldx, B, Y, ldy, bias);
}

static int grp_mm(const void *W, const float *X, int64_t ldx, int64_t b, float *Y, int64_t ldy) {
    const GroupedObject *self = W;
    if (!coded_use(self)) return cnn_grouped_matmul(&self->W, X, ldx, b, Y, ldy);
    if (cnn_csr_matmul(&self->coded, X, ldx, b, Y, ldy)) return -1;
    if (self->W.shift) { /* + omega0 * (column sums of X) in every row */
        float *base = cnn_alloc((size_t)b * sizeof(float));
        if (!base) return -1;
        for (int64_t c = 0; c < b; c++) base[c] = 0.f;
        for (int64_t k = 0; k < self->W.n; k++)
            for (int64_t c = 0; c < b; c++) base[c] += X[k * ldx + c];
        for (int64_t r = 0; r < self->W.m; r++)
            for (int64_t c = 0; c < b; c++) Y[r * ldy + c] += self->W.omega0 * base[c];
        cnn_free(base);
    }
    return 0;
}

static PyObject *Grouped_rows(GroupedObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!self->rowptr) return PyErr_Format(PyExc_ValueError, "GroupedMatrix is not initialised");
    return cnn_call_rows(self, self->W.m, self->W.n, grp_rows, args, nargs);
}

static PyObject *Grouped_matmul(GroupedObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!self->rowptr) return PyErr_Format(PyExc_ValueError, "GroupedMatrix is not initialised");
    return cnn_call_matmul(self, self->W.m, self->W.n, grp_mm, args, nargs);
}

static PyMethodDef Grouped_methods[] = {
    {"rows", (PyCFunction)(void (*)(void))Grouped_rows, METH_FASTCALL,
     "rows(X, Y, B, bias): Y (B, m) = X (B, n) @ W^T (+ bias)"},
    {"matmul", (PyCFunction)(void (*)(void))Grouped_matmul, METH_FASTCALL,
     "matmul(X, Y, b): Y (m, b) = W @ X (n, b)"},
    {NULL, NULL, 0, NULL},
};

static PyObject *Grouped_sliced_steps(GroupedObject *self, void *closure) {
    return sliced_steps(&self->sl);
}

static PyGetSetDef Grouped_getset[] = {
    {"sliced_steps", (getter)Grouped_sliced_steps, NULL,
     "steps of the sliced codebook layout (batch 1 on AVX-512), 0 when not built", NULL},
    {NULL, NULL, NULL, NULL, NULL},
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
    .tp_getset = Grouped_getset,
};

int cnn_add_sparse(PyObject *mod) {
    if (cnn_add_type(mod, &CsrType, "CsrMatrix") < 0) return -1;
    return cnn_add_type(mod, &GroupedType, "GroupedMatrix");
}
