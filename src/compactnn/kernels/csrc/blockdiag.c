/* Block-diagonal products for the blockdiag format (cnn_kernels.h).
 *
 * W = P blockdiag(D_1 .. D_N) Q: block b multiplies the inputs at its columns
 * cols[col_ptr[b] ..] and writes the outputs at its rows rows[row_ptr[b] ..].
 * X @ W^T (B inputs): per block, the B inputs' entries at the block's columns are
 * gathered once into a B x c scratch, then every block row is dotted with each of
 * them (the block row stays in L1 across the B dots). Rows of no block get 0 (+ bias).
 * W @ X runs it on the transposed operands (formats/blockdiag.py); large batches use
 * numpy's batched products (no register-blocked micro-kernel here). The loops are plain C with `omp simd`
 * reductions, compiled once per level (portable, AVX2+FMA, AVX-512). Threads split
 * the block rows (not the blocks: a single dense block still splits).
 */
#include "cnn_internal.h"

#include <string.h>

#if CNN_X86
#define BD_AVX2_FN __attribute__((target("avx2,fma")))
#define BD_AVX512_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#endif

/* Block of block-row position k (row_ptr[b] <= k < row_ptr[b + 1]): a binary search. */
static int64_t block_of(const cnn_blockdiag *W, int64_t k) {
    int64_t lo = 0, hi = W->nblocks - 1;
    while (lo < hi) {
        const int64_t mid = (lo + hi + 1) / 2;
        if (W->row_ptr[mid] <= k) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

#define BD_LEVEL(SUF, ATTR)                                                                    \
    ATTR static void rows_##SUF(const cnn_blockdiag *W, const float *X, int64_t ldx, int64_t B, \
                                float *Y, int64_t ldy, const float *bias, int64_t k0,          \
                                int64_t k1, float *xg) {                                       \
        for (int64_t k = k0; k < k1;) {                                                        \
            const int64_t b = block_of(W, k);                                                  \
            const int64_t c0 = W->col_ptr[b], c = W->col_ptr[b + 1] - c0;                      \
            const int64_t r0 = W->row_ptr[b], kend = W->row_ptr[b + 1] < k1 ? W->row_ptr[b + 1] : k1; \
            for (int64_t t = 0; t < B; t++)                                                    \
                for (int64_t j = 0; j < c; j++) xg[t * c + j] = X[t * ldx + W->cols[c0 + j]];  \
            for (; k < kend; k++) {                                                            \
                const float *d = W->data + W->data_ptr[b] + (k - r0) * c;                      \
                const int64_t row = W->rows[k];                                                \
                const float bv = bias ? bias[row] : 0.f;                                       \
                for (int64_t t = 0; t < B; t++) {                                              \
                    const float *xv = xg + t * c;                                              \
                    float acc = 0.f;                                                           \
                    _Pragma("omp simd reduction(+ : acc)") for (int64_t j = 0; j < c; j++)     \
                        acc += d[j] * xv[j];                                                   \
                    Y[t * ldy + row] = acc + bv;                                               \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    }

BD_LEVEL(c, )
#if CNN_X86
BD_LEVEL(avx2, BD_AVX2_FN)
BD_LEVEL(512, BD_AVX512_FN)
#define BD_CALL(FN, ...)                                                                       \
    if (level == CNN_AVX512) FN##_512(__VA_ARGS__);                                            \
    else if (level == CNN_AVX2) FN##_avx2(__VA_ARGS__);                                        \
    else FN##_c(__VA_ARGS__)
#else
#define BD_CALL(FN, ...) FN##_c(__VA_ARGS__)
#endif

/* Rows of no block: 0 (+ bias). */
static void zero_rows(const cnn_blockdiag *W, float *Y, int64_t ldy, int64_t B,
                      const float *bias) {
    for (int64_t k = W->nblocks ? W->row_ptr[W->nblocks] : 0; k < W->m; k++)
        for (int64_t t = 0; t < B; t++) Y[t * ldy + W->rows[k]] = bias ? bias[W->rows[k]] : 0.f;
}

int cnn_blockdiag_rows(const cnn_blockdiag *W, const float *X, int64_t ldx, int64_t B, float *Y,
                       int64_t ldy, const float *bias) {
    const int level = cnn_get_level();
    (void)level;
    const int64_t R = W->nblocks ? W->row_ptr[W->nblocks] : 0;
    const int nt0 = cnn_threads_for(B * W->ndata);
    const int nt = R < nt0 ? (int)(R > 0 ? R : 1) : nt0;
    int fail = 0;
    CNN_PARALLEL({
        const int t = cnn_tid(), TT = cnn_nthreads();
        const int64_t k0 = R * t / TT, k1 = R * (t + 1) / TT;
        float *xg = k0 < k1 ? cnn_alloc((size_t)(B * W->maxcols + 1) * sizeof(float)) : NULL;
        if (k0 < k1 && !xg) {
            _Pragma("omp atomic write") fail = 1;
        } else if (k0 < k1) {
            BD_CALL(rows, W, X, ldx, B, Y, ldy, bias, k0, k1, xg);
        }
        cnn_free(xg);
    });
    zero_rows(W, Y, ldy, B, bias);
    return fail ? -1 : 0;
}
