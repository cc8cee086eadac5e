/* Chain: a stack of fused products (the rows() kernels of any kernel types) with
 * optional ReLUs in between, run in one call with the GIL released
 * (compactnn.nn.chain runs an nn.Sequential of compact Linear layers with it).
 *
 * Chain(kernels, biases, relu, guards, sizes, ptrs)
 *   kernels: tuple of kernel objects (each answers rows(query), pybind.h), layer i's
 *            input width equal to layer i-1's output width;
 *   biases:  tuple of None or float32 arrays of m_i items (kept alive by the chain);
 *   relu:    tuple of bools: ReLU after layer i (NaN and -0.0 pass, as torch.relu);
 *   guards:  tuple of (container, key, expected): dict[key] / list[key] must be
 *            `expected` (identity);
 *   sizes:   tuple of (container, length): dicts or lists that must have that length;
 *   ptrs:    tuple of (object, address): object.data_ptr() must equal address.
 * run(X, B, Y) -> bool: False without computing anything when a guard fails (the
 * caller falls back to its module-by-module path); else Y (B, m_last) =
 * the chain applied to X (B, n_0). X and Y are addresses of contiguous float32
 * memory the caller vouches for (compactnn.nn.chain checks the tensors).
 * set_call(tensor_type, dtype, tracing, max_rows), then call(x) -> tensor or None: the
 * chain on a tensor x, every check of x (exact type, dtype, CPU, contiguous, shape
 * (..., n) with 1 to max_rows rows) and the guards done here, into x.new_empty(..., m); None
 * without computing when one fails or tracing() is not None (compactnn.nn.layers:
 * a lone CompactLinear call). */
#include "pybind.h"

#include <string.h>

typedef struct {
    cnn_rows_iface k;
    const float *bias;
    int relu;
} chain_step;

typedef struct {
    PyObject_HEAD
    Py_ssize_t nsteps;
    chain_step *steps;
    Py_buffer *bias_bufs; /* one per step; .obj NULL where the step has no bias */
    PyObject *kernels, *guards, *sizes, *ptrs;
    int64_t mid; /* largest intermediate width */
    /* call(x) (set_call): the tensor type and dtype x must have, torch's tracing-state
     * function, and the most rows the kernels were chosen for (0: call is not set up) */
    PyObject *tensor_type, *dtype, *tracing, *m_obj;
    int64_t max_rows;
} ChainObject;

static void Chain_release(ChainObject *self) {
    if (self->bias_bufs) {
        for (Py_ssize_t i = 0; i < self->nsteps; i++)
            if (self->bias_bufs[i].obj) PyBuffer_Release(&self->bias_bufs[i]);
    }
    PyMem_Free(self->bias_bufs);
    PyMem_Free(self->steps);
    self->bias_bufs = NULL;
    self->steps = NULL;
    self->nsteps = 0;
    Py_CLEAR(self->kernels);
    Py_CLEAR(self->guards);
    Py_CLEAR(self->sizes);
    Py_CLEAR(self->ptrs);
    Py_CLEAR(self->tensor_type);
    Py_CLEAR(self->dtype);
    Py_CLEAR(self->tracing);
    Py_CLEAR(self->m_obj);
    self->max_rows = 0;
}

static void Chain_dealloc(ChainObject *self) {
    PyObject_GC_UnTrack(self);
    Chain_release(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The guards reference the modules that own the chain: garbage-collected cycles. */
static int Chain_traverse(ChainObject *self, visitproc visit, void *arg) {
    Py_VISIT(self->kernels);
    Py_VISIT(self->guards);
    Py_VISIT(self->sizes);
    Py_VISIT(self->ptrs);
    Py_VISIT(self->tensor_type);
    Py_VISIT(self->dtype);
    Py_VISIT(self->tracing);
    for (Py_ssize_t i = 0; self->bias_bufs && i < self->nsteps; i++)
        Py_VISIT(self->bias_bufs[i].obj);
    return 0;
}

static int Chain_clear(ChainObject *self) {
    Chain_release(self);
    return 0;
}

static int tuple_of(PyObject *obj, const char *name, Py_ssize_t items) {
    if (!PyTuple_CheckExact(obj)) {
        PyErr_Format(PyExc_TypeError, "Chain: %s must be a tuple", name);
        return -1;
    }
    for (Py_ssize_t i = 0; items && i < PyTuple_GET_SIZE(obj); i++) {
        PyObject *t = PyTuple_GET_ITEM(obj, i);
        if (!PyTuple_CheckExact(t) || PyTuple_GET_SIZE(t) != items) {
            PyErr_Format(PyExc_TypeError, "Chain: %s must hold %zd-tuples", name, items);
            return -1;
        }
    }
    return 0;
}

static int Chain_init(ChainObject *self, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"kernels", "biases", "relu", "guards", "sizes", "ptrs", NULL};
    PyObject *kernels, *biases, *relu, *guards, *sizes, *ptrs;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOOO", kw, &kernels, &biases, &relu,
                                     &guards, &sizes, &ptrs))
        return -1;
    if (tuple_of(kernels, "kernels", 0) || tuple_of(biases, "biases", 0) ||
        tuple_of(relu, "relu", 0) || tuple_of(guards, "guards", 3) ||
        tuple_of(sizes, "sizes", 2) || tuple_of(ptrs, "ptrs", 2))
        return -1;
    Py_ssize_t ns = PyTuple_GET_SIZE(kernels);
    if (ns < 1 || PyTuple_GET_SIZE(biases) != ns || PyTuple_GET_SIZE(relu) != ns) {
        PyErr_SetString(PyExc_ValueError, "Chain: kernels, biases and relu need one entry per layer");
        return -1;
    }
    Chain_release(self);
    self->steps = PyMem_Calloc((size_t)ns, sizeof(chain_step));
    self->bias_bufs = PyMem_Calloc((size_t)ns, sizeof(Py_buffer));
    if (!self->steps || !self->bias_bufs) {
        PyErr_NoMemory();
        return -1;
    }
    self->nsteps = ns;
    cnn_rows_iface q;
    PyObject *cap = PyCapsule_New(&q, CNN_ROWS_QUERY, NULL);
    if (!cap) return -1;
    self->mid = 0;
    for (Py_ssize_t i = 0; i < ns; i++) {
        chain_step *s = &self->steps[i];
        PyObject *r = PyObject_CallMethod(PyTuple_GET_ITEM(kernels, i), "rows", "O", cap);
        if (!r) {
            Py_DECREF(cap);
            return -1;
        }
        Py_DECREF(r);
        s->k = q;
        if (!s->k.f || s->k.m < 1 || s->k.n < 1 || (i > 0 && s->k.n != self->steps[i - 1].k.m)) {
            Py_DECREF(cap);
            PyErr_Format(PyExc_ValueError, "Chain: layer %zd does not fit the previous one", i);
            return -1;
        }
        if (i + 1 < ns && s->k.m > self->mid) self->mid = s->k.m;
        PyObject *b = PyTuple_GET_ITEM(biases, i);
        if (b != Py_None) {
            if (get_buf(b, &self->bias_bufs[i], 'f', 4, s->k.m, 0, "bias") < 0) {
                Py_DECREF(cap);
                return -1;
            }
            s->bias = self->bias_bufs[i].buf;
        }
        int rl = PyObject_IsTrue(PyTuple_GET_ITEM(relu, i));
        if (rl < 0) {
            Py_DECREF(cap);
            return -1;
        }
        s->relu = rl;
    }
    Py_DECREF(cap);
    Py_INCREF(kernels);
    Py_INCREF(guards);
    Py_INCREF(sizes);
    Py_INCREF(ptrs);
    self->kernels = kernels;
    self->guards = guards;
    self->sizes = sizes;
    self->ptrs = ptrs;
    return 0;
}

/* 1 when every guard holds, 0 when one fails, -1 with an exception. */
static int chain_guards_hold(ChainObject *self) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(self->sizes); i++) {
        PyObject *t = PyTuple_GET_ITEM(self->sizes, i), *c = PyTuple_GET_ITEM(t, 0);
        Py_ssize_t want = PyLong_AsSsize_t(PyTuple_GET_ITEM(t, 1));
        if (want == -1 && PyErr_Occurred()) return -1;
        Py_ssize_t have = PyDict_Check(c) ? PyDict_GET_SIZE(c)
                          : PyList_Check(c) ? PyList_GET_SIZE(c) : PyObject_Length(c);
        if (have < 0) return -1;
        if (have != want) return 0;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(self->guards); i++) {
        PyObject *t = PyTuple_GET_ITEM(self->guards, i), *c = PyTuple_GET_ITEM(t, 0),
                 *key = PyTuple_GET_ITEM(t, 1), *v;
        if (PyDict_Check(c)) {
            v = PyDict_GetItemWithError(c, key);
            if (!v && PyErr_Occurred()) return -1;
        } else if (PyList_Check(c)) {
            Py_ssize_t j = PyLong_AsSsize_t(key);
            if (j == -1 && PyErr_Occurred()) return -1;
            v = j >= 0 && j < PyList_GET_SIZE(c) ? PyList_GET_ITEM(c, j) : NULL;
        } else {
            PyErr_SetString(PyExc_TypeError, "Chain: a guard's container is not a dict or list");
            return -1;
        }
        if (v != PyTuple_GET_ITEM(t, 2)) return 0;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(self->ptrs); i++) {
        PyObject *t = PyTuple_GET_ITEM(self->ptrs, i);
        PyObject *p = PyObject_CallMethod(PyTuple_GET_ITEM(t, 0), "data_ptr", NULL);
        if (!p) return -1;
        int same = PyObject_RichCompareBool(p, PyTuple_GET_ITEM(t, 1), Py_EQ);
        Py_DECREF(p);
        if (same <= 0) return same;
    }
    return 1;
}

static int chain_run(const ChainObject *self, const float *X, int64_t B, float *Y) {
    float *scratch = NULL;
    if (self->nsteps > 1) {
        scratch = cnn_alloc((size_t)(2 * B * self->mid) * sizeof(float));
        if (!scratch) return -1;
    }
    const float *in = X;
    for (Py_ssize_t i = 0; i < self->nsteps; i++) {
        const chain_step *s = &self->steps[i];
        float *out = i + 1 == self->nsteps ? Y : scratch + (i & 1) * B * self->mid;
        if (s->k.f(s->k.W, in, s->k.n, B, out, s->k.m, s->bias)) {
            cnn_free(scratch);
            return -1;
        }
        if (s->relu) {
            const int64_t count = B * s->k.m;
            for (int64_t j = 0; j < count; j++) out[j] = out[j] < 0.f ? 0.f : out[j];
        }
        in = out;
    }
    cnn_free(scratch);
    return 0;
}

static PyObject *Chain_run(ChainObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "run(X, B, Y) takes 3 arguments");
        return NULL;
    }
    if (!self->steps) {
        PyErr_SetString(PyExc_ValueError, "Chain: not initialised");
        return NULL;
    }
    if (!PyLong_Check(args[0]) || !PyLong_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "run: X and Y must be addresses (ints)");
        return NULL;
    }
    const float *X = PyLong_AsVoidPtr(args[0]);
    float *Y = PyLong_AsVoidPtr(args[2]);
    long long B = PyLong_AsLongLong(args[1]);
    if (PyErr_Occurred()) return NULL;
    if (B < 1) {
        PyErr_SetString(PyExc_ValueError, "run: B must be >= 1");
        return NULL;
    }
    int ok = chain_guards_hold(self);
    if (ok < 0) return NULL;
    if (!ok) Py_RETURN_FALSE;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = chain_run(self, X, B, Y);
    Py_END_ALLOW_THREADS
    if (rc) return PyErr_NoMemory();
    Py_RETURN_TRUE;
}

/* set_call(tensor_type, dtype, tracing, max_rows): what call(x) checks. */
static PyObject *Chain_set_call(ChainObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyType_Check(args[0]) || !PyCallable_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "set_call(tensor_type, dtype, tracing, max_rows)");
        return NULL;
    }
    if (!self->steps) {
        PyErr_SetString(PyExc_ValueError, "Chain: not initialised");
        return NULL;
    }
    long long b = PyLong_AsLongLong(args[3]);
    if (b == -1 && PyErr_Occurred()) return NULL;
    if (b < 1) {
        PyErr_SetString(PyExc_ValueError, "set_call: max_rows must be >= 1");
        return NULL;
    }
    PyObject *mo = PyLong_FromLongLong(self->steps[self->nsteps - 1].k.m);
    if (!mo) return NULL;
    Py_INCREF(args[0]);
    Py_INCREF(args[1]);
    Py_INCREF(args[2]);
    Py_XSETREF(self->tensor_type, args[0]);
    Py_XSETREF(self->dtype, args[1]);
    Py_XSETREF(self->tracing, args[2]);
    Py_XSETREF(self->m_obj, mo);
    self->max_rows = b;
    Py_RETURN_NONE;
}

static PyObject *s_dtype, *s_is_cpu, *s_shape, *s_is_contiguous, *s_new_empty, *s_data_ptr;

/* x.data_ptr() as an address, or NULL with an exception. */
static void *address_of(PyObject *x) {
    PyObject *p = PyObject_VectorcallMethod(s_data_ptr, &x, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (!p) return NULL;
    void *a = PyLong_AsVoidPtr(p);
    Py_DECREF(p);
    return a;
}

/* 1 when attribute `name` of x is `want` (identity), 0 when not, -1 with an exception. */
static int attr_is(PyObject *x, PyObject *name, PyObject *want) {
    PyObject *v = PyObject_GetAttr(x, name);
    if (!v) return -1;
    int same = v == want;
    Py_DECREF(v);
    return same;
}

/* call(x) -> tensor or None: the chain on x, a tensor of exactly set_call's type and
 * dtype, on the CPU, contiguous, of shape (..., n) with 1 to max_rows rows (the
 * product of the leading sizes), into x.new_empty(..., m); None (nothing computed)
 * when any of that, a guard or torch's tracing state says otherwise. */
static PyObject *Chain_call(ChainObject *self, PyObject *x) {
    if (!self->max_rows || Py_TYPE(x) != (PyTypeObject *)self->tensor_type) Py_RETURN_NONE;
    PyObject *tr = PyObject_CallNoArgs(self->tracing);
    if (!tr) return NULL;
    int tracing = tr != Py_None;
    Py_DECREF(tr);
    if (tracing) Py_RETURN_NONE;
    int ok = attr_is(x, s_dtype, self->dtype);
    if (ok > 0) ok = attr_is(x, s_is_cpu, Py_True);
    if (ok <= 0) return ok < 0 ? NULL : Py_NewRef(Py_None);
    PyObject *shape = PyObject_GetAttr(x, s_shape);
    if (!shape) return NULL;
    Py_ssize_t nd = PyTuple_Check(shape) ? PyTuple_GET_SIZE(shape) : 0;
    int64_t rows = 1, last = -1;
    for (Py_ssize_t i = 0; i < nd; i++) {
        long long d = PyLong_AsLongLong(PyTuple_GET_ITEM(shape, i));
        if (d == -1 && PyErr_Occurred()) {
            Py_DECREF(shape);
            return NULL;
        }
        if (i + 1 < nd) rows *= d; else last = d;
    }
    if (nd < 2 || nd > 8 || last != self->steps[0].k.n || rows < 1 || rows > self->max_rows) {
        Py_DECREF(shape);
        Py_RETURN_NONE;
    }
    PyObject *c = PyObject_VectorcallMethod(s_is_contiguous, &x, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                            NULL);
    if (!c) {
        Py_DECREF(shape);
        return NULL;
    }
    ok = c == Py_True;
    Py_DECREF(c);
    if (ok) ok = chain_guards_hold(self);
    if (ok <= 0) {
        Py_DECREF(shape);
        return ok < 0 ? NULL : Py_NewRef(Py_None);
    }
    PyObject *a[9] = {x}; /* x.new_empty(*shape[:-1], m): varargs, the fastest form */
    for (Py_ssize_t i = 0; i + 1 < nd; i++) a[i + 1] = PyTuple_GET_ITEM(shape, i);
    a[nd] = self->m_obj;
    PyObject *y = PyObject_VectorcallMethod(s_new_empty, a, (size_t)(nd + 1) |
                                            PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(shape);
    if (!y) return NULL;
    const float *X = address_of(x);
    float *Y = X ? address_of(y) : NULL;
    if (!X || !Y) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "call: a tensor without memory");
        Py_DECREF(y);
        return NULL;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = chain_run(self, X, rows, Y);
    Py_END_ALLOW_THREADS
    if (rc) {
        Py_DECREF(y);
        return PyErr_NoMemory();
    }
    return y;
}

static PyObject *Chain_widths(ChainObject *self, void *closure) {
    (void)closure;
    PyObject *t = PyTuple_New(self->nsteps + 1);
    if (!t || !self->nsteps) return t;
    PyTuple_SET_ITEM(t, 0, PyLong_FromLongLong(self->steps[0].k.n));
    for (Py_ssize_t i = 0; i < self->nsteps; i++)
        PyTuple_SET_ITEM(t, i + 1, PyLong_FromLongLong(self->steps[i].k.m));
    return t;
}

static PyMethodDef Chain_methods[] = {
    {"run", (PyCFunction)(void (*)(void))Chain_run, METH_FASTCALL,
     "run(X, B, Y) -> bool: Y = the chain applied to X (addresses), False if a guard fails"},
    {"set_call", (PyCFunction)(void (*)(void))Chain_set_call, METH_FASTCALL,
     "set_call(tensor_type, dtype, tracing, max_rows): what call(x) accepts"},
    {"call", (PyCFunction)Chain_call, METH_O,
     "call(x) -> tensor or None: the chain on the tensor x into a new tensor (None: not run)"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Chain_getset[] = {
    {"widths", (getter)Chain_widths, NULL, "input width, then each layer's output width", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ChainType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "compactnn.kernels._native.Chain",
    .tp_basicsize = sizeof(ChainObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)Chain_traverse,
    .tp_clear = (inquiry)Chain_clear,
    .tp_doc = "Chain(kernels, biases, relu, guards, sizes, ptrs): fused products run in one call",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Chain_init,
    .tp_dealloc = (destructor)Chain_dealloc,
    .tp_methods = Chain_methods,
    .tp_getset = Chain_getset,
};

int cnn_add_chain(PyObject *mod) {
    if (!(s_dtype = PyUnicode_InternFromString("dtype")) ||
        !(s_is_cpu = PyUnicode_InternFromString("is_cpu")) ||
        !(s_shape = PyUnicode_InternFromString("shape")) ||
        !(s_is_contiguous = PyUnicode_InternFromString("is_contiguous")) ||
        !(s_new_empty = PyUnicode_InternFromString("new_empty")) ||
        !(s_data_ptr = PyUnicode_InternFromString("data_ptr")))
        return -1;
    return cnn_add_type(mod, &ChainType, "Chain");
}
