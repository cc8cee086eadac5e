/* The sliced codebook layout (cnn_kernels.h, "sliced"): batch-1 products of csr,
 * cer and cser matrices whose entries take at most 32 values, on AVX-512.
 *
 * Built at load from the stored arrays (never stored): rows in slices of 16, columns
 * in blocks of 32. A step holds one entry (or none) of each row of its slice, all in
 * one column block: 16 uint16 slots, slot = valid << 15 | code << 8 | column % 32,
 * and the block's first column. Lane i of a step's product is x[block + slot & 31]
 * times lut[code], both picked from registers by a two-source permute
 * (vpermt2ps): x's 32 floats of the block and the 32 values; one masked FMA adds
 * the 16 products into the slice's 16 row sums. A slice runs its steps block by
 * block, so the number of steps of a block is the most entries any of its rows has
 * in that block (the padding: 2.0x the entries for 4096 x 4096 at 90% pruning,
 * benchmarks/kernels.py records it). No gather, no scalar index
 * extraction, no branch per group: about 8 instructions per 16 slots. */
#include "cnn_internal.h"

#include <string.h>

#define SL_ROWS 16
#define SL_COLS 32

int64_t cnn_sliced_layout(int64_t m, int64_t n, const int64_t *rowptr, const void *cols,
                          int col_bytes, const uint8_t *codes, int64_t *slice_ptr,
                          uint32_t *xoff, uint16_t *slots) {
    const int64_t nb = (n + SL_COLS - 1) / SL_COLS, ns = (m + SL_ROWS - 1) / SL_ROWS;
    int32_t *cnt = cnn_alloc((size_t)(SL_ROWS + 1) * (size_t)(nb ? nb : 1) * sizeof(int32_t));
    if (!cnt) return -1;
    int32_t *steps = cnt + SL_ROWS * nb; /* steps of each block; then its first step */
    int64_t total = 0;
#define COL(j) (col_bytes == 1 ? (int64_t)((const uint8_t *)cols)[j]   \
                : col_bytes == 2 ? (int64_t)((const uint16_t *)cols)[j] \
                                 : (int64_t)((const uint32_t *)cols)[j])
    for (int64_t s = 0; s < ns; s++) {
        const int64_t r0 = s * SL_ROWS, r1 = r0 + SL_ROWS < m ? r0 + SL_ROWS : m;
        memset(cnt, 0, (size_t)(SL_ROWS + 1) * (size_t)nb * sizeof(int32_t));
        for (int64_t r = r0; r < r1; r++)
            for (int64_t j = rowptr[r]; j < rowptr[r + 1]; j++) {
                const int64_t b = COL(j) / SL_COLS;
                int32_t *c = cnt + (r - r0) * nb + b;
                if (++*c > steps[b]) steps[b] = *c;
            }
        if (slice_ptr) slice_ptr[s] = total;
        for (int64_t b = 0; b < nb; b++) {
            const int32_t k = steps[b];
            if (xoff)
                for (int32_t t = 0; t < k; t++) {
                    xoff[total + t] = (uint32_t)(b * SL_COLS);
                    memset(slots + (total + t) * SL_ROWS, 0, SL_ROWS * sizeof(uint16_t));
                }
            steps[b] = (int32_t)total; /* first step of block b */
            total += k;
        }
        if (!xoff) continue;
        memset(cnt, 0, (size_t)SL_ROWS * (size_t)nb * sizeof(int32_t));
        for (int64_t r = r0; r < r1; r++)
            for (int64_t j = rowptr[r]; j < rowptr[r + 1]; j++) {
                const int64_t c = COL(j), b = c / SL_COLS;
                const int64_t t = steps[b] + cnt[(r - r0) * nb + b]++;
                slots[t * SL_ROWS + (r - r0)] =
                    (uint16_t)(0x8000u | (uint32_t)codes[j] << 8 | (uint32_t)(c % SL_COLS));
            }
    }
#undef COL
    if (slice_ptr) slice_ptr[ns] = total;
    cnn_free(cnt);
    return total;
}

#if CNN_X86
/* One step into accumulator a: x of the block and the values by permutes, the
 * products of the valid lanes added. */
#define SL_STEP(a, t)                                                                      \
    do {                                                                                   \
        const float *xb_ = xp + S->xoff[t];                                                \
        const __m256i w_ = _mm256_loadu_si256((const __m256i *)(S->slots + (t) * SL_ROWS)); \
        const __mmask16 k_ = _mm256_movepi16_mask(w_);                                     \
        const __m512i i_ = _mm512_cvtepu16_epi32(w_);                                      \
        const __m512 x_ = _mm512_permutex2var_ps(_mm512_loadu_ps(xb_), i_,                 \
                                                 _mm512_loadu_ps(xb_ + 16));               \
        const __m512 v_ = _mm512_permutex2var_ps(c0, _mm512_srli_epi32(i_, 8), c1);       \
        a = _mm512_mask3_fmadd_ps(x_, v_, a, k_);                                          \
    } while (0)

/* Slices s0 .. s1 - 1 of y = W x (+ base + bias); xp holds x padded to whole blocks. */
CNN_AVX512_FN static void sliced_mv_512(const cnn_sliced *S, const float *xp, float *y,
                                        const float *bias, float base, int64_t s0,
                                        int64_t s1) {
    const __m512 c0 = _mm512_loadu_ps(S->lut), c1 = _mm512_loadu_ps(S->lut + 16);
    for (int64_t s = s0; s < s1; s++) {
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        int64_t t = S->slice_ptr[s];
        const int64_t e = S->slice_ptr[s + 1];
        for (; t + 4 <= e; t += 4) {
            SL_STEP(a0, t);
            SL_STEP(a1, t + 1);
            SL_STEP(a2, t + 2);
            SL_STEP(a3, t + 3);
        }
        for (; t < e; t++) SL_STEP(a0, t);
        const int64_t r0 = s * SL_ROWS, nr = S->m - r0 < SL_ROWS ? S->m - r0 : SL_ROWS;
        const __mmask16 km = (__mmask16)(nr >= 16 ? 0xFFFFu : (1u << nr) - 1u);
        __m512 acc = _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));
        acc = _mm512_add_ps(acc, _mm512_set1_ps(base));
        if (bias) acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(km, bias + r0));
        _mm512_mask_storeu_ps(y + r0, km, acc);
    }
}
#undef SL_STEP
#endif

/* First slice of thread t of T: slices cut so each thread gets about the same number
 * of steps plus slices. */
static int64_t slice_cut(const cnn_sliced *S, int t, int T) {
    const int64_t want = (S->slice_ptr[S->nslices] + S->nslices) * t / T;
    int64_t a = 0, b = S->nslices;
    while (a < b) {
        const int64_t mid = a + (b - a) / 2;
        if (S->slice_ptr[mid] + mid < want) a = mid + 1;
        else b = mid;
    }
    return a;
}

int cnn_sliced_matvec(const cnn_sliced *S, const float *x, float *y, const float *bias,
                      float base) {
#if CNN_X86
    const int64_t xlen = (S->n + SL_COLS - 1) / SL_COLS * SL_COLS;
    float stack[4096], *xp = (float *)x, *heap = NULL;
    if (xlen != S->n) { /* the last block reads past x: a zero-padded copy */
        xp = xlen <= 4096 ? stack : (heap = cnn_alloc((size_t)xlen * sizeof(float)));
        if (!xp) return -1;
        memcpy(xp, x, (size_t)S->n * sizeof(float));
        memset(xp + S->n, 0, (size_t)(xlen - S->n) * sizeof(float));
    }
    const int nt = cnn_threads_for(S->slice_ptr[S->nslices] * SL_ROWS);
    CNN_PARALLEL({
        const int T = cnn_nthreads(), t = cnn_tid();
        const int64_t s0 = slice_cut(S, t, T), s1 = t == T - 1 ? S->nslices : slice_cut(S, t + 1, T);
        if (s0 < s1) sliced_mv_512(S, xp, y, bias, base, s0, s1);
    });
    cnn_free(heap);
    return 0;
#else
    return -1;
#endif
}
