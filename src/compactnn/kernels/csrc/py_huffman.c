/* HuffMatrix: the ham and sham formats in the kernels' runtime layout (huffman.c). */
#include "pybind.h"

#include <string.h>

typedef struct {
    PyObject_HEAD
    cnn_huff W;
    uint8_t *bytes;
    int64_t *row_bits, *row_ptr;
    cnn_huff_entry *table;
    cnn_huff_zent *ztab;
    cnn_huff_pent *ptab;
    uint64_t limit[34];
    int64_t base[34];
    float *lut;
    Py_buffer cols; /* held for the object's lifetime (sham) */
    int has_cols;
    cnn_htile tiles; /* batch 1 at the AVX-512 level (htiles.c), or empty */
} HuffObject;

/* Density of non-zeros from which the fused matvec decodes two codes per lookup. */
#define ZPAIR_DENSITY 0.2

static void Huff_free(HuffObject *self) {
    cnn_free(self->bytes);
    cnn_free(self->row_bits);
    cnn_free(self->row_ptr);
    cnn_free(self->table);
    cnn_free(self->ztab);
    cnn_free(self->ptab);
    self->ztab = NULL, self->ptab = NULL;
    cnn_free(self->lut);
    cnn_htile_free(&self->tiles);
    self->bytes = NULL, self->row_bits = self->row_ptr = NULL, self->table = NULL, self->lut = NULL;
    if (self->has_cols) PyBuffer_Release(&self->cols);
    self->has_cols = 0;
}

static void Huff_dealloc(HuffObject *self) {
    Huff_free(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int fail(const char *msg) {
    PyErr_Format(PyExc_ValueError, "HuffMatrix: %s", msg);
    return -1;
}

/* Copy an int64 array of exactly `count` items that starts at 0 (when `zero`) and
 * never decreases; returns NULL with an exception otherwise. */
static int64_t *pointers(PyObject *obj, int64_t count, const char *name) {
    Py_buffer b;
    if (get_i64(obj, &b, count, name) < 0) return NULL;
    const int64_t *v = b.buf;
    int ok = b.len / 8 == count && v[0] >= 0;
    for (int64_t i = 1; ok && i < count; i++) ok = v[i] >= v[i - 1];
    int64_t *out = ok ? cnn_alloc((size_t)count * 8) : NULL;
    if (out) memcpy(out, v, (size_t)count * 8);
    PyBuffer_Release(&b);
    if (!ok) PyErr_Format(PyExc_ValueError, "HuffMatrix: %s must hold %lld non-decreasing offsets",
                          name, (long long)count);
    else if (!out) PyErr_NoMemory();
    return out;
}

/* Stored entries per entry below which sham builds no tiles: their masks (one bit an
 * entry) would outweigh twice the stored 16-bit column indices. Measured at 4096 x 4096
 * with 32 values, 1 thread (tiles vs the fused row kernel): 2.2x at 90% pruning, 1.8x
 * at 95%, 1.4x at 98%, 1.1x at 99% (the last two timed through ham's tiles). */
#define TILE_MIN_DENSITY (1.0 / 32)

/* The tiles of a sham matrix (nnz stored entries), or of a zero-run ham matrix's nnz
 * non-zero entries, from the decoded symbols; left empty on CPUs without the tile
 * kernel, for codebooks of more than 32 (non-zero) values and when memory runs out
 * (they only speed batch 1 up: the fused kernels run instead). */
static void huff_tiles(HuffObject *self, int64_t nnz) {
    const cnn_huff *W = &self->W;
    const int K = W->zrun ? W->K - 1 : W->K;
    if (!cnn_htile_cpu() || W->m == 0 || W->n == 0 || !(W->row_ptr || W->zrun) || K > 32 || K < 1)
        return;
    const int64_t m = W->m, n = W->n;
    if (W->row_ptr && (double)nnz < TILE_MIN_DENSITY * (double)m * (double)n) return;
    uint8_t *sy = cnn_alloc((size_t)(nnz ? nnz : 1));
    int64_t *rp = W->row_ptr ? NULL : cnn_alloc((size_t)(m + 1) * sizeof(int64_t));
    uint32_t *cols = cnn_alloc((size_t)(nnz ? nnz : 1) * sizeof(uint32_t));
    int rc = -1;
    if (sy && cols && W->row_ptr) { /* sham: every stored entry */
        for (int64_t j = 0; j < nnz; j++)
            cols[j] = W->colw == 2 ? ((const uint16_t *)W->cols)[j] : ((const uint32_t *)W->cols)[j];
        rc = cnn_huff_decode_symbols(W, 0, m, sy);
    } else if (sy && cols && rp) { /* zero-run ham: the entries of symbols 1.. (0 is +0.0) */
        rc = cnn_huff_nonzeros(W, nnz, rp, cols, sy);
    }
    if (rc == 0) /* on failure it frees what it built */
        cnn_htile_build(&self->tiles, m, n, W->row_ptr ? W->row_ptr : rp, cols, sy, K,
                        W->zrun ? W->lut + 1 : W->lut);
    cnn_free(sy);
    cnn_free(rp);
    cnn_free(cols);
}

static int Huff_init(HuffObject *self, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"words", "row_bits", "length_counts", "omega", "m", "n", "zrun",
                         "col_idx", "row_ptr", NULL};
    PyObject *wobj, *rbobj, *lcobj, *oobj, *cobj = Py_None, *rpobj = Py_None;
    long long m, n;
    int zrun;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOLLp|OO", kw, &wobj, &rbobj, &lcobj, &oobj,
                                     &m, &n, &zrun, &cobj, &rpobj))
        return -1;
    Huff_free(self);
    if (m < 0 || n < 0 || n > UINT32_MAX) return fail("bad shape");
    int sparse = cobj != Py_None;
    if (sparse != (rpobj != Py_None)) return fail("col_idx and row_ptr go together");
    if (sparse && zrun) return fail("zero-run mode is for ham only");
    if (zrun && n >= (1 << 24)) return fail("zero-run records hold columns below 2**24");
    Py_buffer ob, lb, wb;
    if (get_buf(oobj, &ob, 'f', 4, 0, 0, "omega") < 0) return -1;
    const int64_t K = ob.len / 4;
    if (get_i64(lcobj, &lb, 0, "length_counts") < 0) {
        PyBuffer_Release(&ob);
        return -1;
    }
    const int64_t lmax = lb.len / 8, *lc = lb.buf;
    int64_t total = 0;
    for (int64_t l = 0; l < lmax; l++) total += lc[l] < 0 ? K + 1 : lc[l];
    uint64_t kraft = 0; /* sum of 2^(lmax - length): the code is complete at 2^lmax */
    for (int64_t l = 0; l < lmax && lmax <= 32; l++)
        kraft += lc[l] >= 0 && lc[l] <= 256 ? (uint64_t)lc[l] << (lmax - 1 - l) : 0;
    const int complete = lmax > 0 && lmax <= 32 && kraft == (uint64_t)1 << lmax;
    const char *bad = K > 256 ? "more than 256 symbols"
                      : lmax > 32 ? "codes longer than 32 bits"
                      : (lmax ? total != K : K > 1) ? "length_counts do not match omega"
                      : zrun && !(lmax && lc[0]) ? "zero-run mode needs a 1-bit code"
                      : NULL;
    if (bad) {
        PyBuffer_Release(&ob);
        PyBuffer_Release(&lb);
        return fail(bad);
    }
    self->row_bits = pointers(rbobj, m + 1, "row_bits");
    if (!self->row_bits) {
        PyBuffer_Release(&ob);
        PyBuffer_Release(&lb);
        return -1;
    }
    /* words: the bits up to row_bits[m] and one padding word (stream_words). */
    const int64_t need = self->row_bits[m] / 32 + 2;
    if (get_buf(wobj, &wb, 'I', 4, need, 0, "words") < 0) {
        PyBuffer_Release(&ob);
        PyBuffer_Release(&lb);
        return -1;
    }
    const int64_t nwords = wb.len / 4;
    self->bytes = cnn_alloc((size_t)(4 * nwords + CNN_HUFF_PAD));
    self->table = cnn_alloc(sizeof(cnn_huff_entry) << CNN_HUFF_T);
    const int64_t nlut = K > 64 ? K : 64;
    self->lut = cnn_alloc((size_t)nlut * 4);
    int rc = -1;
    if (self->bytes && self->table && self->lut) {
        memset(self->lut, 0, (size_t)nlut * 4);
        memcpy(self->lut, ob.buf, (size_t)K * 4);
        cnn_huff_stream(wb.buf, nwords, self->bytes);
        rc = cnn_huff_tables(lc, (int)lmax, zrun, self->table, self->limit, self->base);
    }
    PyBuffer_Release(&ob);
    PyBuffer_Release(&lb);
    PyBuffer_Release(&wb);
    if (rc < 0) {
        PyErr_NoMemory();
        return -1;
    }
    int64_t maxrow = 0, colw = 0;
    if (sparse) {
        self->row_ptr = pointers(rpobj, m + 1, "row_ptr");
        if (!self->row_ptr) return -1;
        if (self->row_ptr[0] != 0) return fail("row_ptr must start at 0");
        for (int64_t r = 0; r < m; r++) {
            int64_t len = self->row_ptr[r + 1] - self->row_ptr[r];
            maxrow = len > maxrow ? len : maxrow;
        }
        const int64_t nnz = self->row_ptr[m];
        if (PyObject_GetBuffer(cobj, &self->cols, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
        self->has_cols = 1;
        colw = self->cols.itemsize;
        if ((colw != 2 && colw != 4) || !(is_format(&self->cols, 'H') || is_format(&self->cols, 'I')))
            return fail("col_idx must be uint16 or uint32");
        if (self->cols.len / colw < nnz) return fail("col_idx is shorter than row_ptr[-1]");
        for (int64_t k = 0; k < nnz; k++) {
            int64_t c = colw == 2 ? ((const uint16_t *)self->cols.buf)[k]
                                  : ((const uint32_t *)self->cols.buf)[k];
            if (c >= n) return fail("col_idx holds a column out of range");
        }
        if (nnz && !K) return fail("codes without symbols");
    } else if (m > 0 && n > 0 && !K) {
        return fail("codes without symbols");
    }
    self->W = (cnn_huff){.m = m, .n = n, .maxrow = maxrow, .K = (int32_t)K, .lmax = (int32_t)lmax,
                         .zrun = zrun, .colw = (int32_t)colw, .bytes = self->bytes,
                         .row_bits = self->row_bits, .row_ptr = self->row_ptr,
                         .cols = sparse ? self->cols.buf : NULL, .table = self->table,
                         .limit = self->limit, .base = self->base, .lut = self->lut,
                         .complete = complete};
    if (sparse) {
        self->ptab = cnn_alloc(sizeof(cnn_huff_pent) << CNN_HUFF_T);
        if (!self->ptab) {
            PyErr_NoMemory();
            return -1;
        }
        cnn_huff_ptable(&self->W, self->ptab);
        self->W.ptab = self->ptab;
    }
    int64_t coded = sparse ? self->row_ptr[m] : 0; /* stored (sham) or non-zero (zero-run) entries */
    if (zrun) { /* the fused matvec trusts the stream: walk it once here */
        self->ztab = cnn_alloc(sizeof(cnn_huff_zent) << (CNN_HUFF_ZT + 1));
        if (!self->ztab) {
            PyErr_NoMemory();
            return -1;
        }
        cnn_huff_ztable(&self->W, self->ztab);
        self->W.ztab = self->ztab;
        int64_t bad, nnz;
        Py_BEGIN_ALLOW_THREADS
        bad = cnn_huff_verify_zrun(&self->W, &nnz);
        Py_END_ALLOW_THREADS
        /* pairs pay when a zero run and a code often fit after a code */
        self->W.zpair = m * n > 0 && (double)nnz >= ZPAIR_DENSITY * (double)m * (double)n;
        if (bad >= 0) {
            PyErr_Format(PyExc_ValueError, "HuffMatrix: row %lld does not decode to %lld entries",
                         (long long)bad, (long long)n);
            return -1;
        }
        coded = nnz;
    }
    Py_BEGIN_ALLOW_THREADS
    huff_tiles(self, coded);
    Py_END_ALLOW_THREADS
    self->W.tiles = self->tiles.masks ? &self->tiles : NULL;
    return 0;
}

static int ready(HuffObject *self) {
    if (self->table) return 0;
    PyErr_SetString(PyExc_RuntimeError, "HuffMatrix is not initialised");
    return -1;
}

static int get_count(PyObject *obj, long long *v, const char *name) {
    *v = PyLong_AsLongLong(obj);
    if (*v == -1 && PyErr_Occurred()) return -1;
    if (*v < 0) {
        PyErr_Format(PyExc_ValueError, "%s must be >= 0", name);
        return -1;
    }
    return 0;
}

/* Batches up to this size run the tile matvec once per input where the tiles were built
 * (the batched kernel's decoding, about 1.8 ms at 4096 x 4096, is most of its time at
 * small b). 4096 x 4096, 90%, 32 values, 1 thread, thread CPU time, X @ W^T: ham b = 2
 * 1.90 -> 0.80 ms, b = 4 1.95 -> 1.62 ms (sham 1.78 -> 0.82, 1.82 -> 1.62); at b = 5 the
 * batched kernel (2.02 ms) and the matvecs are even. */
#define TILE_MV_MAX_BATCH 4

static int tile_path(const HuffObject *self, int64_t B) {
    return self->tiles.masks && cnn_get_level() == CNN_AVX512 && B <= TILE_MV_MAX_BATCH;
}

/* Batch 1 (and up to TILE_MV_MAX_BATCH inputs) runs on the tiles at the AVX-512 level
 * when they were built. */
static int huff_rows(const void *obj, const float *X, int64_t ldx, int64_t B, float *Y,
                     int64_t ldy, const float *bias) {
    const HuffObject *self = obj;
    if (tile_path(self, B)) {
        for (int64_t i = 0; i < B; i++)
            if (cnn_htile_matvec(&self->tiles, X + i * ldx, Y + i * ldy, bias)) return -1;
        return 0;
    }
    return cnn_huff_rows(&self->W, X, ldx, B, Y, ldy, bias);
}

/* W @ X: columns of X gathered into a vector for the tile matvec at small k. */
static int huff_mm(const void *obj, const float *X, int64_t ldx, int64_t k, float *Y,
                   int64_t ldy) {
    const HuffObject *self = obj;
    const int64_t m = self->W.m, n = self->W.n;
    if (tile_path(self, k)) {
        float *x = cnn_alloc((size_t)(n + m) * sizeof(float)), *y = x + n;
        if (!x) return -1;
        int rc = 0;
        for (int64_t j = 0; j < k && !rc; j++) {
            for (int64_t c = 0; c < n; c++) x[c] = X[c * ldx + j];
            rc = cnn_htile_matvec(&self->tiles, x, y, NULL);
            for (int64_t r = 0; r < m && !rc; r++) Y[r * ldy + j] = y[r];
        }
        cnn_free(x);
        return rc;
    }
    return cnn_huff_matmul(&self->W, X, ldx, k, Y, ldy);
}

/* rows(X, Y, B, bias): Y (B, m) = X (B, n) @ W^T (+ bias); X an array or an address. */
static PyObject *Huff_rows(HuffObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (ready(self) < 0) return NULL;
    return cnn_call_rows(self, self->W.m, self->W.n, huff_rows, args, nargs);
}

/* matmul(X, Y, k): Y (m, k) = W @ X (n, k). */
static PyObject *Huff_matmul(HuffObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (ready(self) < 0) return NULL;
    return cnn_call_matmul(self, self->W.m, self->W.n, huff_mm, args, nargs);
}

static int row_range(HuffObject *self, PyObject *const *args, Py_ssize_t nargs, const char *name,
                     long long *r0, long long *nr) {
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "%s(r0, nr, out) takes 3 arguments", name);
        return -1;
    }
    if (ready(self) < 0 || get_count(args[0], r0, "r0") < 0 || get_count(args[1], nr, "nr") < 0)
        return -1;
    if (*r0 + *nr > self->W.m) {
        PyErr_Format(PyExc_ValueError, "%s: rows out of range", name);
        return -1;
    }
    return 0;
}

/* decode_rows(r0, nr, out): out (nr, n) = W[r0 : r0 + nr]. */
static PyObject *Huff_decode_rows(HuffObject *self, PyObject *const *args, Py_ssize_t nargs) {
    long long r0, nr;
    if (row_range(self, args, nargs, "decode_rows", &r0, &nr) < 0) return NULL;
    const cnn_huff *W = &self->W;
    Py_buffer ob;
    if (get_buf(args[2], &ob, 'f', 4, nr * W->n, 1, "out") < 0) return NULL;
    int rc = 0;
    if (nr > 0 && W->n > 0) {
        Py_BEGIN_ALLOW_THREADS
        rc = cnn_huff_decode_rows(W, r0, nr, ob.buf, W->n);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&ob);
    if (rc) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* decode_symbols(r0, nr, out): out (uint8) = the symbols of rows r0 .. r0 + nr - 1. */
static PyObject *Huff_decode_symbols(HuffObject *self, PyObject *const *args, Py_ssize_t nargs) {
    long long r0, nr;
    if (row_range(self, args, nargs, "decode_symbols", &r0, &nr) < 0) return NULL;
    const cnn_huff *W = &self->W;
    int64_t count = W->row_ptr ? W->row_ptr[r0 + nr] - W->row_ptr[r0] : nr * W->n;
    Py_buffer ob;
    if (get_buf(args[2], &ob, 'B', 1, count, 1, "out") < 0) return NULL;
    int rc = 0;
    if (count > 0) {
        Py_BEGIN_ALLOW_THREADS
        rc = cnn_huff_decode_symbols(W, r0, nr, ob.buf);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&ob);
    if (rc) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *Huff_nbytes(HuffObject *self, void *closure) {
    (void)closure;
    if (!self->table) return PyLong_FromLong(0);
    int64_t words = (self->W.row_bits[self->W.m] / 32 + 2) * 4;
    return PyLong_FromLongLong(words + CNN_HUFF_PAD + ((int64_t)sizeof(cnn_huff_entry) << CNN_HUFF_T) +
                              (self->ztab ? (int64_t)sizeof(cnn_huff_zent) << CNN_HUFF_ZT : 0) +
                              (self->ptab ? (int64_t)sizeof(cnn_huff_pent) << CNN_HUFF_T : 0) + 16 * (self->W.m + 1) +
                              cnn_htile_nbytes(&self->tiles));
}

static PyMethodDef Huff_methods[] = {
    {"rows", (PyCFunction)(void (*)(void))Huff_rows, METH_FASTCALL,
     "rows(X, Y, B, bias): Y (B, m) = X (B, n) @ W^T (+ bias)"},
    {"matmul", (PyCFunction)(void (*)(void))Huff_matmul, METH_FASTCALL,
     "matmul(X, Y, k): Y (m, k) = W @ X (n, k)"},
    {"decode_rows", (PyCFunction)(void (*)(void))Huff_decode_rows, METH_FASTCALL,
     "decode_rows(r0, nr, out): out (nr, n) = W[r0 : r0 + nr]"},
    {"decode_symbols", (PyCFunction)(void (*)(void))Huff_decode_symbols, METH_FASTCALL,
     "decode_symbols(r0, nr, out): the uint8 symbols of rows r0 .. r0 + nr - 1"},
    {NULL, NULL, 0, NULL},
};

static PyObject *Huff_tile_steps(HuffObject *self, void *closure) {
    (void)closure;
    const cnn_htile *H = &self->tiles;
    return PyLong_FromLongLong(H->masks ? (long long)H->slice_step[H->nslices] : 0);
}

static PyObject *Huff_tile_words(HuffObject *self, void *closure) {
    (void)closure;
    const cnn_htile *H = &self->tiles;
    return PyLong_FromLongLong(H->masks ? (long long)H->slice_word[H->nslices] : 0);
}

/* 16-step blocks of the slices (batched products gather records 16 steps at a time). */
static PyObject *Huff_tile_flushes(HuffObject *self, void *closure) {
    (void)closure;
    const cnn_htile *H = &self->tiles;
    long long f = 0;
    for (int64_t s = 0; H->masks && s < H->nslices; s++)
        f += (H->slice_step[s + 1] - H->slice_step[s] + 15) / 16;
    return PyLong_FromLongLong(f);
}

static PyGetSetDef Huff_getset[] = {
    {"tile_flushes", (getter)Huff_tile_flushes, NULL,
     "16-step blocks of the tiles' slices (batched products on the tiles), 0 when not built",
     NULL},
    {"tile_words", (getter)Huff_tile_words, NULL,
     "16-bit words of the tile kernel's stream, 0 when not built", NULL},
    {"tile_steps", (getter)Huff_tile_steps, NULL,
     "steps of the batch-1 tile kernel (AVX-512 with VBMI and CD), 0 when not built", NULL},
    {"nbytes", (getter)Huff_nbytes, NULL, "bytes of the runtime arrays (stream, table, offsets)",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject HuffType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "compactnn.kernels._native.HuffMatrix",
    .tp_basicsize = sizeof(HuffObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "HuffMatrix(words, row_bits, length_counts, omega, m, n, zrun, col_idx=None, "
              "row_ptr=None): a ham (or, with col_idx and row_ptr, sham) matrix in the "
              "kernels' runtime layout",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Huff_init,
    .tp_dealloc = (destructor)Huff_dealloc,
    .tp_methods = Huff_methods,
    .tp_getset = Huff_getset,
};

int cnn_add_huffman(PyObject *mod) { return cnn_add_type(mod, &HuffType, "HuffMatrix"); }
