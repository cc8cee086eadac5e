/* Sparse-row products: csr (and permseq through it), and cer/cser
 * sum-then-multiply (cnn_kernels.h).
 *
 * Column indices stay in their stored width (uint8/16/32): sparse_tmpl.h is
 * instantiated once per column type and cer/cser group pointer type (uint32/64).
 *
 * Batch 1 (y = W x), AVX2 and AVX-512 levels alike: column indices are read eight
 * per 64-bit load; CSR loads the eight inputs into one register (scalar loads and
 * inserts) for one FMA with eight stored values; CER/CSER add the inputs into four
 * running sums stored per entry, take each group's sum as the difference of two
 * prefixes and multiply it once by the group's value, without a branch per group.
 * AVX-512 and AVX2 gathers, and in-register prefix scans, measured slower on AMD
 * Zen 4 (about one gathered element per cycle; docs/architecture/cer.md).
 * Batched (W @ X, X n x b row-major): per chunk of rows (~CHUNK_ENTRIES entries)
 * and block of up to 64 columns (AVX2: 32), CSR broadcasts each value and FMAs the
 * matching row of X into register accumulators; CER/CSER add the rows of X of a
 * group in registers and multiply once per group. Each entry is decoded once per
 * block of columns, on X's rows where they start on 64-byte boundaries, else on an
 * aligned copy (b >= 16). The rows layout (X @ W^T) transposes up to 256 inputs at a
 * time into aligned scratch, runs the same kernel and transposes the result back
 * (O((n + m) b), small against O(nnz b)). Rows are split across threads by entries.
 */
#include "cnn_internal.h"

#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define BLK 64 /* columns of the portable batched block */
#define CHUNK_ENTRIES 16384
#define SLICE_FLOATS (1 << 18)

/* Columns per block of the SIMD batched kernels: a multiple of the register width
 * v, at most hi, with the slice of X a block reads (n rows of it) at most
 * SLICE_FLOATS (1 MB, one L2 of AMD Zen 4) where it can be. Measured on 4096 x 4096
 * at b = 64 with other jobs on the machine: 64 columns (a 1 MB slice) 9-10 ms,
 * 16 columns (256 kB, the index chunk read four times) 14-16 ms. */
static inline int64_t col_block(int64_t n, int64_t v, int64_t hi) {
    int64_t c = (SLICE_FLOATS / (n > 0 ? n : 1)) / v * v;
    if (c > hi) c = hi;
    if (c < v) c = v;
    return c;
}

/* The values of row r: its own entries, or (permseq) the shared row at dataoff[r]. */
static inline const float *csr_row_data(const cnn_csr *W, int64_t r) {
    if (!W->data) return NULL; /* coded rows: the values are lut[codes[j]] */
    return W->data + (W->dataoff ? W->dataoff[r] : W->rowptr[r]);
}

static inline float group_value(const cnn_grouped *W, int64_t g, int64_t g0) {
    switch (W->idx_bytes) {
    case 0: return W->shifted[g - g0 + 1];
    case 1: return W->shifted[((const uint8_t *)W->gidx)[g]];
    case 2: return W->shifted[((const uint16_t *)W->gidx)[g]];
    default: return W->shifted[((const uint32_t *)W->gidx)[g]];
    }
}

#if CNN_X86
CNN_AVX2_FN static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

CNN_AVX2_FN static inline __m256i tail_mask256(int64_t valid) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(valid < 8 ? valid : 8)), lane);
}

/* x[c[0..7]] in one register: scalar loads and inserts (an AVX2 or AVX-512 gather
 * of 8 or 16 floats measured slower on AMD Zen 4: about one element per cycle). */
CNN_AVX2_FN static inline __m256 x8_avx2(const float *x, const int64_t c[8]) {
    __m128 lo = _mm_insert_ps(_mm_load_ss(x + c[0]), _mm_load_ss(x + c[1]), 0x10);
    __m128 hi = _mm_insert_ps(_mm_load_ss(x + c[4]), _mm_load_ss(x + c[5]), 0x10);
    lo = _mm_insert_ps(lo, _mm_load_ss(x + c[2]), 0x20);
    hi = _mm_insert_ps(hi, _mm_load_ss(x + c[6]), 0x20);
    lo = _mm_insert_ps(lo, _mm_load_ss(x + c[3]), 0x30);
    hi = _mm_insert_ps(hi, _mm_load_ss(x + c[7]), 0x30);
    return _mm256_set_m128(hi, lo);
}

static inline __mmask16 tail_mask16(int64_t valid) {
    return valid >= 16 ? (__mmask16)0xFFFF : valid <= 0 ? (__mmask16)0 : (__mmask16)((1u << valid) - 1u);
}

#endif

/* ---- instances ------------------------------------------------------------------ */

#define WITH_CSR
#define PT uint32_t
#define CT uint8_t
#define CB 1
#define SFX(f) f##_c8p32
#include "sparse_tmpl.h"
#undef CT
#undef CB
#undef SFX
#define CT uint16_t
#define CB 2
#define SFX(f) f##_c16p32
#include "sparse_tmpl.h"
#undef CT
#undef CB
#undef SFX
#define CT uint32_t
#define CB 4
#define SFX(f) f##_c32p32
#include "sparse_tmpl.h"
#undef CT
#undef CB
#undef SFX
#undef PT
#undef WITH_CSR
#define PT uint64_t
#define CT uint8_t
#define CB 1
#define SFX(f) f##_c8p64
#include "sparse_tmpl.h"
#undef CT
#undef CB
#undef SFX
#define CT uint16_t
#define CB 2
#define SFX(f) f##_c16p64
#include "sparse_tmpl.h"
#undef CT
#undef CB
#undef SFX
#define CT uint32_t
#define CB 4
#define SFX(f) f##_c32p64
#include "sparse_tmpl.h"
#undef CT
#undef CB
#undef SFX
#undef PT

/* ---- dispatch tables [level][column type (1, 2, 4 bytes -> 0, 1, 2)] ------------- */

typedef void (*csr_mv_fn)(const cnn_csr *, const float *, float *, const float *, int64_t, int64_t);
typedef void (*csr_mm_fn)(const cnn_csr *, const float *, int64_t, int64_t, float *, int64_t,
                          int64_t, int64_t);
typedef void (*grp_mv_fn)(const cnn_grouped *, const float *, float *, const float *, float,
                          int64_t, int64_t, float *);
typedef void (*grp_mm_fn)(const cnn_grouped *, const float *, int64_t, int64_t, const float *,
                          float *, int64_t, int64_t, int64_t);

#if CNN_X86
#define CSR_TAB(f, l2) {{f##_c_c8p32, f##_c_c16p32, f##_c_c32p32}, \
                        {f##_avx2_c8p32, f##_avx2_c16p32, f##_avx2_c32p32}, \
                        {f##_##l2##_c8p32, f##_##l2##_c16p32, f##_##l2##_c32p32}}
#define GRP_TAB(f, l2, p) {{f##_c_c8##p, f##_c_c16##p, f##_c_c32##p}, \
                           {f##_avx2_c8##p, f##_avx2_c16##p, f##_avx2_c32##p}, \
                           {f##_##l2##_c8##p, f##_##l2##_c16##p, f##_##l2##_c32##p}}
#else
#define CSR_TAB(f, l2) {{f##_c_c8p32, f##_c_c16p32, f##_c_c32p32}, \
                        {f##_c_c8p32, f##_c_c16p32, f##_c_c32p32}, \
                        {f##_c_c8p32, f##_c_c16p32, f##_c_c32p32}}
#define GRP_TAB(f, l2, p) {{f##_c_c8##p, f##_c_c16##p, f##_c_c32##p}, \
                           {f##_c_c8##p, f##_c_c16##p, f##_c_c32##p}, \
                           {f##_c_c8##p, f##_c_c16##p, f##_c_c32##p}}
#endif

/* Batch 1 runs the AVX2 kernels at the AVX-512 level too: AVX-512 gathers measured
 * slower than scalar loads on AMD Zen 4 (sparse_tmpl.h). */
static const csr_mv_fn csr_mv_tab[3][3] = CSR_TAB(csr_mv, avx2);
static const csr_mm_fn csr_mm_tab[3][3] = CSR_TAB(csr_mm, 512);
static const grp_mv_fn grp_mv_tab[2][3][3] = {GRP_TAB(grp_mv, avx2, p32), GRP_TAB(grp_mv, avx2, p64)};
static const grp_mm_fn grp_mm_tab[2][3][3] = {GRP_TAB(grp_mm, 512, p32), GRP_TAB(grp_mm, 512, p64)};

static inline int col_slot(int32_t bytes) { return bytes == 1 ? 0 : bytes == 2 ? 1 : 2; }

/* Row range [r0, r1) of thread t of T, rows cut so each thread gets about the same
 * number of entries (rowptr is non-decreasing). */
static void row_range(const int64_t *rowptr, const void *gptr, int ptr_bytes, int64_t m,
                      int t, int T, int64_t *r0, int64_t *r1) {
    if (T == 1) {
        *r0 = 0, *r1 = m;
        return;
    }
    /* entries before row r, plus r (a row costs something even when empty) */
#define COST(r) ((gptr ? (ptr_bytes == 8 ? (int64_t)((const uint64_t *)gptr)[rowptr[r]] \
                                          : (int64_t)((const uint32_t *)gptr)[rowptr[r]]) \
                       : rowptr[r]) + (r))
    const int64_t total = COST(m);
    int64_t lo[2];
    for (int s = 0; s < 2; s++) {
        const int64_t want = total * (t + s) / T;
        int64_t a = 0, b = m; /* first r with COST(r) >= want */
        while (a < b) {
            int64_t mid = a + (b - a) / 2;
            if (COST(mid) < want) a = mid + 1;
            else b = mid;
        }
        lo[s] = a;
    }
#undef COST
    *r0 = lo[0], *r1 = t == T - 1 ? m : lo[1];
}

static int thread_id(int *T) {
#ifdef _OPENMP
    *T = omp_get_num_threads();
    return omp_get_thread_num();
#else
    *T = 1;
    return 0;
#endif
}

/* dst (cols x rows, row stride ldd) = src^T (src rows x cols, row stride lds), in
 * 16 x 16 tiles; bias (rows entries, may be NULL) is added to column i of dst. */
static void transpose_block(const float *src, int64_t lds, int64_t rows, int64_t cols,
                            float *dst, int64_t ldd, const float *bias, int64_t j0) {
    const int64_t j1 = j0 + 16 < cols ? j0 + 16 : cols;
    for (int64_t i0 = 0; i0 < rows; i0 += 16) {
        const int64_t i1 = i0 + 16 < rows ? i0 + 16 : rows;
        for (int64_t j = j0; j < j1; j++)
            for (int64_t i = i0; i < i1; i++)
                dst[j * ldd + i] = src[i * lds + j] + (bias ? bias[i] : 0.f);
    }
}

static void transpose(const float *src, int64_t lds, int64_t rows, int64_t cols, float *dst,
                      int64_t ldd, const float *bias) {
    const int nt = cnn_threads_for(rows * cols);
    if (nt == 1) {
        for (int64_t j0 = 0; j0 < cols; j0 += 16)
            transpose_block(src, lds, rows, cols, dst, ldd, bias, j0);
        return;
    }
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t j0 = 0; j0 < cols; j0 += 16) transpose_block(src, lds, rows, cols, dst, ldd, bias, j0);
}

/* The rows layout for B > 1: chunks of at most ROWS_CHUNK inputs transposed into
 * scratch (n x bc), multiplied by the W @ X kernel (grouped: cnn_grouped_matmul,
 * else cnn_csr_matmul) and the result transposed back with the bias, so the scratch
 * stays (n + m) * ROWS_CHUNK floats whatever B is (im2col batches are large). */
#define ROWS_CHUNK 256

static int rows_by_chunks(const void *W, int grouped, const float *X, int64_t ldx, int64_t B,
                          float *Y, int64_t ldy, const float *bias) {
    const int64_t m = grouped ? ((const cnn_grouped *)W)->m : ((const cnn_csr *)W)->m;
    const int64_t n = grouped ? ((const cnn_grouped *)W)->n : ((const cnn_csr *)W)->n;
    const int64_t bmax = B < ROWS_CHUNK ? B : ROWS_CHUNK, ldt = (bmax + 15) / 16 * 16;
    float *Xt = cnn_alloc((size_t)(n * ldt) * sizeof(float)); /* rows 64-byte aligned */
    float *Yt = cnn_alloc((size_t)(m * bmax) * sizeof(float));
    int rc = Xt && Yt ? 0 : -1;
    for (int64_t i0 = 0; rc == 0 && i0 < B; i0 += bmax) {
        const int64_t bc = B - i0 < bmax ? B - i0 : bmax;
        transpose(X + i0 * ldx, ldx, bc, n, Xt, ldt, NULL);
        rc = grouped ? cnn_grouped_matmul(W, Xt, ldt, bc, Yt, bc)
                     : cnn_csr_matmul(W, Xt, ldt, bc, Yt, bc);
        if (rc == 0) transpose(Yt, bc, m, bc, Y + i0 * ldy, ldy, bias);
    }
    cnn_free(Xt);
    cnn_free(Yt);
    return rc;
}

/* ---- csr -------------------------------------------------------------------------- */

/* X (n rows of b floats, stride ldx) as the batched kernels read it: itself when its rows
 * start on 64-byte boundaries, else (b >= 16) a copy with rows padded to 16 floats in an
 * aligned buffer (*buf, freed by the caller; NULL: no copy, or out of memory when b >= 16
 * and the function returned NULL). Split-line vector loads: 4096 x 4096 csr at 90%, b =
 * 64, 1 thread, W @ X on numpy's (16-byte aligned) X 4.46 ms, X @ W^T (which multiplies
 * an aligned transposed copy) 3.14 ms. The copy runs on the product's threads. */
static const float *aligned_rows(const float *X, int64_t ldx, int64_t n, int64_t b, int64_t *ld,
                                 float **buf) {
    *buf = NULL, *ld = ldx;
    if (b < 16 || ((uintptr_t)X % 64 == 0 && ldx % 16 == 0)) return X;
    *ld = (b + 15) / 16 * 16;
    *buf = cnn_alloc((size_t)(n * *ld) * sizeof(float));
    if (!*buf) return NULL;
    float *dst = *buf;
    const int64_t ldd = *ld;
    const int nt = cnn_threads_for(n * b);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t k = 0; k < n; k++) memcpy(dst + k * ldd, X + k * ldx, (size_t)b * sizeof(float));
    return dst;
}

int cnn_csr_matmul(const cnn_csr *W, const float *X0, int64_t ldx0, int64_t b, float *Y,
                   int64_t ldy) {
    int64_t ldx;
    float *buf;
    const float *X = aligned_rows(X0, ldx0, W->n, b, &ldx, &buf);
    if (!X) return -1;
    const int level = cnn_get_level();
    const csr_mm_fn f = csr_mm_tab[level][col_slot(W->col_bytes)];
    const int nt = cnn_threads_for(W->rowptr[W->m] * b + W->m);
    if (nt == 1) { /* no OpenMP region: small products cost under a microsecond less */
        f(W, X, ldx, b, Y, ldy, 0, W->m);
    } else {
#pragma omp parallel num_threads(nt)
        {
            int T, t = thread_id(&T);
            int64_t r0, r1;
            row_range(W->rowptr, NULL, 0, W->m, t, T, &r0, &r1);
            if (r0 < r1) f(W, X, ldx, b, Y, ldy, r0, r1);
        }
    }
    cnn_free(buf);
    return 0;
}

int cnn_csr_rows(const cnn_csr *W, const float *X, int64_t ldx, int64_t B, float *Y,
                 int64_t ldy, const float *bias) {
    const int level = cnn_get_level();
    const int64_t m = W->m;
    if (B == 1 && !W->codes) {
        const csr_mv_fn f = csr_mv_tab[level][col_slot(W->col_bytes)];
        const int nt = cnn_threads_for(W->rowptr[m] + m);
        if (nt == 1) {
            f(W, X, Y, bias, 0, m);
            return 0;
        }
#pragma omp parallel num_threads(nt)
        {
            int T, t = thread_id(&T);
            int64_t r0, r1;
            row_range(W->rowptr, NULL, 0, m, t, T, &r0, &r1);
            if (r0 < r1) f(W, X, Y, bias, r0, r1);
        }
        return 0;
    }
    return rows_by_chunks(W, 0, X, ldx, B, Y, ldy, bias);
}

/* ---- cer / cser ---------------------------------------------------------------- */

static inline int ptr_slot(const cnn_grouped *W) { return W->ptr_bytes == 8; }

static inline int64_t grp_entries(const cnn_grouped *W) {
    const int64_t g = W->rowptr[W->m];
    return W->ptr_bytes == 8 ? (int64_t)((const uint64_t *)W->gptr)[g]
                             : (int64_t)((const uint32_t *)W->gptr)[g];
}

int cnn_grouped_matmul(const cnn_grouped *W, const float *X0, int64_t ldx0, int64_t b, float *Y,
                       int64_t ldy) {
    int64_t ldx;
    float *buf;
    const float *X = aligned_rows(X0, ldx0, W->n, b, &ldx, &buf);
    if (!X) return -1;
    const int level = cnn_get_level();
    const grp_mm_fn f = grp_mm_tab[ptr_slot(W)][level][col_slot(W->col_bytes)];
    float *base = cnn_alloc((size_t)b * sizeof(float));
    if (!base) {
        cnn_free(buf);
        return -1;
    }
    /* omega0 * (column sums of X), added to every row */
    for (int64_t c = 0; c < b; c++) base[c] = 0.f;
    if (W->shift) {
        for (int64_t k = 0; k < W->n; k++)
            for (int64_t c = 0; c < b; c++) base[c] += X[k * ldx + c];
        for (int64_t c = 0; c < b; c++) base[c] *= W->omega0;
    }
    const int nt = cnn_threads_for((grp_entries(W) + W->m) * b);
    if (nt == 1) {
        f(W, X, ldx, b, base, Y, ldy, 0, W->m);
    } else {
#pragma omp parallel num_threads(nt)
        {
            int T, t = thread_id(&T);
            int64_t r0, r1;
            row_range(W->rowptr, W->gptr, W->ptr_bytes, W->m, t, T, &r0, &r1);
            if (r0 < r1) f(W, X, ldx, b, base, Y, ldy, r0, r1);
        }
    }
    cnn_free(base);
    cnn_free(buf);
    return 0;
}

int cnn_grouped_rows(const cnn_grouped *W, const float *X, int64_t ldx, int64_t B, float *Y,
                     int64_t ldy, const float *bias) {
    const int level = cnn_get_level();
    const int64_t m = W->m, n = W->n;
    if (B == 1) {
        const grp_mv_fn f = grp_mv_tab[ptr_slot(W)][level][col_slot(W->col_bytes)];
        float base = 0.f;
        if (W->shift) {
            for (int64_t k = 0; k < n; k++) base += X[k];
            base *= W->omega0;
        }
        const int nt = cnn_threads_for(grp_entries(W) + m);
        const size_t tfloats = (size_t)W->width + 32;
        float *Ts = cnn_alloc(tfloats * sizeof(float) * (size_t)nt);
        if (!Ts) return -1;
        if (nt == 1) {
            f(W, X, Y, bias, base, 0, m, Ts);
        } else {
#pragma omp parallel num_threads(nt)
            {
                int T, t = thread_id(&T);
                int64_t r0, r1;
                row_range(W->rowptr, W->gptr, W->ptr_bytes, m, t, T, &r0, &r1);
                if (r0 < r1) f(W, X, Y, bias, base, r0, r1, Ts + (size_t)t * tfloats);
            }
        }
        cnn_free(Ts);
        return 0;
    }
    return rows_by_chunks(W, 1, X, ldx, B, Y, ldy, bias);
}
