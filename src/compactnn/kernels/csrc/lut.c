/* Index-map products with the codebook in SIMD registers (cnn_kernels.h).
 *
 * AVX-512: 16 codes become 16 int32 lanes (vpmovzxbd) and one vpermps looks
 * all of them up in a 16-entry codebook register (K <= 16, nibble layout), a
 * vpermt2ps in two registers (K <= 32), two and a blend (K <= 64) or a gather.
 * AVX2: two vpermps on 8-entry halves and a blend on bit 3 (K <= 16), else a
 * gather. NEON (aarch64): byte-plane table lookups (vqtbl, see below). Portable:
 * scalar lookups.
 *
 * Products: B <= LUT_MATVEC_MAX with nibble codes decodes and multiplies in
 * registers, row by row (x86: each block of codes decoded once for up to 4 inputs;
 * NEON: once per input), cheaper than decoding to memory at these batches. Byte codes decode R = 4 rows at a time into a per-thread buffer
 * (L1/L2), then every input row is multiplied with them (8 accumulator chains).
 * Larger batches use token tiles (below), decoding the codes once per product
 * whatever B is. Rows are split across threads.
 */
#include "cnn_internal.h"

#include <string.h>

#define R 4
/* Batches up to this size use the dot-product kernels (rows in registers), larger
 * ones the token-tile kernels; with nibble codes up to LUT_MATVEC_MAX inputs run one
 * register matvec each (x86: up to 4 inputs per decoded block; cheaper than a
 * 16-token tile up to about 12 inputs on MiniLM's shapes). */
#define LUT_DOT_MAX 4
#define LUT_MATVEC_MAX 12

static inline int64_t padded_cols(const cnn_lut *W) {
    return W->nibble ? (W->n + 31) / 32 * 32 : (W->n + 15) / 16 * 16;
}

/* ---- repack ---------------------------------------------------------------- */

void cnn_lut_repack(const uint32_t *words, int bits, int64_t m, int64_t n, int nibble,
                    int64_t stride, uint8_t *out) {
    memset(out, 0, (size_t)(m * stride));
    if (bits == 0) return;
    for (int64_t r = 0; r < m; r++) {
        uint8_t *row = out + r * stride;
        uint64_t p = (uint64_t)r * (uint64_t)n * (uint64_t)bits;
        for (int64_t j = 0; j < n; j++, p += (uint64_t)bits) {
            uint64_t w = p >> 5;
            uint64_t win = ((uint64_t)words[w] << 32) | (uint64_t)words[w + 1];
            uint8_t c = (uint8_t)((win << (p & 31)) >> (64 - bits));
            if (nibble) {
                int64_t q = j >> 5, t = j & 31;
                row[q * 16 + (t & 15)] |= (uint8_t)(t < 16 ? c : c << 4);
            } else {
                row[j] = c;
            }
        }
    }
}

/* ---- portable -------------------------------------------------------------- */

static inline int lut_code(const cnn_lut *W, const uint8_t *row, int64_t j) {
    if (!W->nibble) return row[j];
    uint8_t v = row[(j >> 5) * 16 + (j & 15)];
    return (j & 16) ? v >> 4 : v & 15;
}

static void decode_row_c(const cnn_lut *W, int64_t r, float *dst, int64_t ncols) {
    const uint8_t *row = W->codes + r * W->stride;
    for (int64_t j = 0; j < ncols; j++) dst[j] = W->omega[lut_code(W, row, j)];
}

static void rows_c(const cnn_lut *W, const float *X, int64_t ldx, int64_t B, float *Y,
                   int64_t ldy, const float *bias, int64_t j0, int64_t j1, float *buf) {
    const int64_t n = W->n;
    for (int64_t j = j0; j < j1; j++) {
        decode_row_c(W, j, buf, n);
        for (int64_t i = 0; i < B; i++) {
            const float *x = X + i * ldx;
            float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;
            int64_t k = 0;
            for (; k + 4 <= n; k += 4) {
                a0 += x[k] * buf[k];
                a1 += x[k + 1] * buf[k + 1];
                a2 += x[k + 2] * buf[k + 2];
                a3 += x[k + 3] * buf[k + 3];
            }
            for (; k < n; k++) a0 += x[k] * buf[k];
            Y[i * ldy + j] = (a0 + a1) + (a2 + a3) + (bias ? bias[j] : 0.f);
        }
    }
}

#if CNN_X86
/* ---- AVX2 ------------------------------------------------------------------ */

CNN_AVX2_FN static inline __m256 lut16_avx2(__m256 l0, __m256 l1, __m256i c) {
    __m256 sel = _mm256_castsi256_ps(_mm256_slli_epi32(c, 28));
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(l0, c), _mm256_permutevar8x32_ps(l1, c), sel);
}

CNN_AVX2_FN static inline __m256i tail_mask_avx2(int64_t valid) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(valid < 8 ? valid : 8)), lane);
}

/* Decode columns [0, ncols) of row r (ncols <= padded_cols). */
CNN_AVX2_FN static void decode_row_avx2(const cnn_lut *W, int64_t r, float *dst, int64_t ncols) {
    const uint8_t *row = W->codes + r * W->stride;
    if (W->nibble) {
        const __m256 l0 = _mm256_loadu_ps(W->lut), l1 = _mm256_loadu_ps(W->lut + 8);
        for (int64_t q = 0; q * 32 < ncols; q++) {
            const uint8_t *p = row + q * 16;
            __m256i ca = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
            __m256i cb = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + 8)));
            __m256 v[4] = {lut16_avx2(l0, l1, ca), lut16_avx2(l0, l1, cb),
                           lut16_avx2(l0, l1, _mm256_srli_epi32(ca, 4)),
                           lut16_avx2(l0, l1, _mm256_srli_epi32(cb, 4))};
            for (int s = 0; s < 4; s++) {
                int64_t c0 = q * 32 + s * 8;
                if (c0 + 8 <= ncols) _mm256_storeu_ps(dst + c0, v[s]);
                else if (c0 < ncols) _mm256_maskstore_ps(dst + c0, tail_mask_avx2(ncols - c0), v[s]);
            }
        }
    } else {
        for (int64_t c0 = 0; c0 < ncols; c0 += 8) {
            __m256i c = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(row + c0)));
            __m256 v = _mm256_i32gather_ps(W->omega, c, 4);
            if (c0 + 8 <= ncols) _mm256_storeu_ps(dst + c0, v);
            else _mm256_maskstore_ps(dst + c0, tail_mask_avx2(ncols - c0), v);
        }
    }
}

CNN_AVX2_FN static inline float hsum_avx2(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* B == 1, nibble codes: decode and multiply in registers (4 chains). */
CNN_AVX2_FN static void matvec_nibble_avx2(const cnn_lut *W, const float *x, float *y,
                                           const float *bias, int64_t j0, int64_t j1) {
    const int64_t n = W->n, full = n / 32;
    const __m256 l0 = _mm256_loadu_ps(W->lut), l1 = _mm256_loadu_ps(W->lut + 8);
    for (int64_t j = j0; j < j1; j++) {
        const uint8_t *row = W->codes + j * W->stride;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t q = 0; q < full; q++) {
            const uint8_t *p = row + q * 16;
            const float *xq = x + q * 32;
            __m256i ca = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
            __m256i cb = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + 8)));
            a0 = _mm256_fmadd_ps(lut16_avx2(l0, l1, ca), _mm256_loadu_ps(xq), a0);
            a1 = _mm256_fmadd_ps(lut16_avx2(l0, l1, cb), _mm256_loadu_ps(xq + 8), a1);
            a2 = _mm256_fmadd_ps(lut16_avx2(l0, l1, _mm256_srli_epi32(ca, 4)), _mm256_loadu_ps(xq + 16), a2);
            a3 = _mm256_fmadd_ps(lut16_avx2(l0, l1, _mm256_srli_epi32(cb, 4)), _mm256_loadu_ps(xq + 24), a3);
        }
        float acc = 0.f;
        for (int64_t k = full * 32; k < n; k++) acc += x[k] * W->omega[lut_code(W, row, k)];
        __m256 s = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
        y[j] = hsum_avx2(s) + acc + (bias ? bias[j] : 0.f);
    }
}

/* 2 to 4 inputs, nibble codes: each block of 32 codes decoded once into four
 * registers and multiplied with every input. */
CNN_AVX2_FN static void matvec_multi_avx2(const cnn_lut *W, const float *X, int64_t ldx, int nb,
                                          float *Y, int64_t ldy, const float *bias, int64_t j0,
                                          int64_t j1) {
    const int64_t n = W->n, full = n / 32;
    const __m256 l0 = _mm256_loadu_ps(W->lut), l1 = _mm256_loadu_ps(W->lut + 8);
    for (int64_t j = j0; j < j1; j++) {
        const uint8_t *row = W->codes + j * W->stride;
        __m256 a[4][2];
        for (int i = 0; i < 4; i++) a[i][0] = a[i][1] = _mm256_setzero_ps();
        for (int64_t q = 0; q < full; q++) {
            const uint8_t *p = row + q * 16;
            __m256i ca = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
            __m256i cb = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + 8)));
            __m256 w0 = lut16_avx2(l0, l1, ca), w1 = lut16_avx2(l0, l1, cb);
            __m256 w2 = lut16_avx2(l0, l1, _mm256_srli_epi32(ca, 4));
            __m256 w3 = lut16_avx2(l0, l1, _mm256_srli_epi32(cb, 4));
            for (int i = 0; i < 4; i++) {
                if (i >= nb) break;
                const float *xq = X + i * ldx + q * 32;
                a[i][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xq), a[i][0]);
                a[i][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xq + 8), a[i][1]);
                a[i][0] = _mm256_fmadd_ps(w2, _mm256_loadu_ps(xq + 16), a[i][0]);
                a[i][1] = _mm256_fmadd_ps(w3, _mm256_loadu_ps(xq + 24), a[i][1]);
            }
        }
        const float b = bias ? bias[j] : 0.f;
        for (int i = 0; i < nb; i++) {
            const float *x = X + i * ldx;
            float acc = 0.f;
            for (int64_t k = full * 32; k < n; k++) acc += x[k] * W->omega[lut_code(W, row, k)];
            Y[i * ldy + j] = hsum_avx2(_mm256_add_ps(a[i][0], a[i][1])) + acc + b;
        }
    }
}

CNN_AVX2_FN static void rows_avx2(const cnn_lut *W, const float *X, int64_t ldx, int64_t B,
                                  float *Y, int64_t ldy, const float *bias, int64_t j0,
                                  int64_t j1, float *buf) {
    if (W->nibble && B <= LUT_MATVEC_MAX) { /* a register matvec per input beats decoded dots */
        if (B == 1) {
            matvec_nibble_avx2(W, X, Y, bias, j0, j1);
            return;
        }
        for (int64_t i = 0; i < B; i += 4)
            matvec_multi_avx2(W, X + i * ldx, ldx, (int)(B - i < 4 ? B - i : 4), Y + i * ldy, ldy,
                              bias, j0, j1);
        return;
    }
    const int64_t n = W->n, np = padded_cols(W), nv = (n + 7) / 8, full = n / 8;
    const __m256i tail = tail_mask_avx2(n - full * 8);
    for (int64_t jb = j0; jb < j1; jb += R) {
        int64_t nr = j1 - jb < R ? j1 - jb : R;
        for (int64_t r = 0; r < nr; r++) decode_row_avx2(W, jb + r, buf + r * np, np);
        for (int64_t r = nr; r < R; r++) memset(buf + r * np, 0, (size_t)np * 4);
        for (int64_t i = 0; i < B; i++) {
            const float *x = X + i * ldx;
            __m256 a[R][2];
            for (int r = 0; r < R; r++) a[r][0] = a[r][1] = _mm256_setzero_ps();
            for (int64_t v = 0; v < nv; v++) {
                __m256 xv = v < full ? _mm256_loadu_ps(x + v * 8) : _mm256_maskload_ps(x + v * 8, tail);
                for (int r = 0; r < R; r++)
                    a[r][v & 1] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(buf + r * np + v * 8), a[r][v & 1]);
            }
            for (int64_t r = 0; r < nr; r++)
                Y[i * ldy + jb + r] = hsum_avx2(_mm256_add_ps(a[r][0], a[r][1])) + (bias ? bias[jb + r] : 0.f);
        }
    }
}

/* ---- AVX-512 --------------------------------------------------------------- */

CNN_AVX512_FN static inline __m512 lookup_bytes_512(const cnn_lut *W, __m512i c, __m512 l0,
                                                    __m512 l1, __m512 l2, __m512 l3) {
    if (W->K <= 32) return _mm512_permutex2var_ps(l0, c, l1);
    if (W->K <= 64) {
        __mmask16 hi = _mm512_test_epi32_mask(c, _mm512_set1_epi32(32));
        return _mm512_mask_blend_ps(hi, _mm512_permutex2var_ps(l0, c, l1),
                                    _mm512_permutex2var_ps(l2, c, l3));
    }
    return _mm512_i32gather_ps(c, W->omega, 4);
}

static inline __mmask16 tail_mask_512(int64_t valid) {
    return valid >= 16 ? (__mmask16)0xFFFF : valid <= 0 ? (__mmask16)0 : (__mmask16)((1u << valid) - 1u);
}

CNN_AVX512_FN static void decode_row_512(const cnn_lut *W, int64_t r, float *dst, int64_t ncols) {
    const uint8_t *row = W->codes + r * W->stride;
    const __m512 l0 = _mm512_loadu_ps(W->lut);
    if (W->nibble) {
        for (int64_t q = 0; q * 32 < ncols; q++) {
            __m512i c = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row + q * 16)));
            __m512 v0 = _mm512_permutexvar_ps(c, l0);
            __m512 v1 = _mm512_permutexvar_ps(_mm512_srli_epi32(c, 4), l0);
            int64_t c0 = q * 32;
            _mm512_mask_storeu_ps(dst + c0, tail_mask_512(ncols - c0), v0);
            if (c0 + 16 < ncols) _mm512_mask_storeu_ps(dst + c0 + 16, tail_mask_512(ncols - c0 - 16), v1);
        }
    } else {
        const int big = W->K > 64;
        const __m512 l1 = big ? l0 : _mm512_loadu_ps(W->lut + 16);
        const __m512 l2 = big ? l0 : _mm512_loadu_ps(W->lut + 32);
        const __m512 l3 = big ? l0 : _mm512_loadu_ps(W->lut + 48);
        for (int64_t c0 = 0; c0 < ncols; c0 += 16) {
            __m512i c = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row + c0)));
            _mm512_mask_storeu_ps(dst + c0, tail_mask_512(ncols - c0), lookup_bytes_512(W, c, l0, l1, l2, l3));
        }
    }
}

/* B == 1, nibble codes: decode and multiply in registers (4 chains). */
CNN_AVX512_FN static void matvec_nibble_512(const cnn_lut *W, const float *x, float *y,
                                            const float *bias, int64_t j0, int64_t j1) {
    const int64_t n = W->n, nq = (n + 31) / 32;
    const __m512 l0 = _mm512_loadu_ps(W->lut);
    const int64_t last = nq - 1;
    const __mmask16 m0 = tail_mask_512(n - last * 32), m1 = tail_mask_512(n - last * 32 - 16);
    for (int64_t j = j0; j < j1; j++) {
        const uint8_t *row = W->codes + j * W->stride;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        int64_t q = 0;
        for (; q + 2 <= last; q += 2) {
            __m512i c = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row + q * 16)));
            __m512i d = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row + q * 16 + 16)));
            const float *xq = x + q * 32;
            a0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(c, l0), _mm512_loadu_ps(xq), a0);
            a1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(c, 4), l0), _mm512_loadu_ps(xq + 16), a1);
            a2 = _mm512_fmadd_ps(_mm512_permutexvar_ps(d, l0), _mm512_loadu_ps(xq + 32), a2);
            a3 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(d, 4), l0), _mm512_loadu_ps(xq + 48), a3);
        }
        for (; q <= last; q++) {
            __m512i c = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row + q * 16)));
            const float *xq = x + q * 32;
            __mmask16 k0 = q == last ? m0 : 0xFFFF, k1 = q == last ? m1 : 0xFFFF;
            a0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(c, l0), _mm512_maskz_loadu_ps(k0, xq), a0);
            if (k1) a1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(c, 4), l0),
                                         _mm512_maskz_loadu_ps(k1, xq + 16), a1);
        }
        y[j] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3))) +
               (bias ? bias[j] : 0.f);
    }
}

/* 2 to 4 inputs, nibble codes: each block of 32 codes decoded once into two
 * registers and multiplied with every input (2 chains per input). */
CNN_AVX512_FN static void matvec_multi_512(const cnn_lut *W, const float *X, int64_t ldx, int nb,
                                           float *Y, int64_t ldy, const float *bias, int64_t j0,
                                           int64_t j1) {
    const int64_t n = W->n, nq = (n + 31) / 32, last = nq - 1;
    const __m512 l0 = _mm512_loadu_ps(W->lut);
    const __mmask16 m0 = tail_mask_512(n - last * 32), m1 = tail_mask_512(n - last * 32 - 16);
    for (int64_t j = j0; j < j1; j++) {
        const uint8_t *row = W->codes + j * W->stride;
        __m512 a[4][2];
        for (int i = 0; i < 4; i++) a[i][0] = a[i][1] = _mm512_setzero_ps();
        for (int64_t q = 0; q < last; q++) {
            __m512i c = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row + q * 16)));
            __m512 w0 = _mm512_permutexvar_ps(c, l0);
            __m512 w1 = _mm512_permutexvar_ps(_mm512_srli_epi32(c, 4), l0);
            for (int i = 0; i < 4; i++) {
                if (i >= nb) break;
                const float *xq = X + i * ldx + q * 32;
                a[i][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xq), a[i][0]);
                a[i][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xq + 16), a[i][1]);
            }
        }
        if (nq > 0) { /* the last block, masked (n == 0: no block at all) */
            __m512i c = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row + last * 16)));
            __m512 w0 = _mm512_permutexvar_ps(c, l0);
            __m512 w1 = _mm512_permutexvar_ps(_mm512_srli_epi32(c, 4), l0);
            for (int i = 0; i < 4; i++) {
                if (i >= nb) break;
                const float *xq = X + i * ldx + last * 32;
                a[i][0] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(m0, xq), a[i][0]);
                if (m1) a[i][1] = _mm512_fmadd_ps(w1, _mm512_maskz_loadu_ps(m1, xq + 16), a[i][1]);
            }
        }
        const float b = bias ? bias[j] : 0.f;
        for (int i = 0; i < nb; i++)
            Y[i * ldy + j] = _mm512_reduce_add_ps(_mm512_add_ps(a[i][0], a[i][1])) + b;
    }
}

CNN_AVX512_FN static void rows_512(const cnn_lut *W, const float *X, int64_t ldx, int64_t B,
                                   float *Y, int64_t ldy, const float *bias, int64_t j0,
                                   int64_t j1, float *buf) {
    if (W->nibble && B <= LUT_MATVEC_MAX) { /* a register matvec per input beats decoded dots */
        if (B == 1) {
            matvec_nibble_512(W, X, Y, bias, j0, j1);
            return;
        }
        for (int64_t i = 0; i < B; i += 4)
            matvec_multi_512(W, X + i * ldx, ldx, (int)(B - i < 4 ? B - i : 4), Y + i * ldy, ldy,
                             bias, j0, j1);
        return;
    }
    const int64_t n = W->n, np = padded_cols(W), nv = (n + 15) / 16, full = n / 16;
    const __mmask16 tail = tail_mask_512(n - full * 16);
    for (int64_t jb = j0; jb < j1; jb += R) {
        int64_t nr = j1 - jb < R ? j1 - jb : R;
        for (int64_t r = 0; r < nr; r++) decode_row_512(W, jb + r, buf + r * np, np);
        for (int64_t r = nr; r < R; r++) memset(buf + r * np, 0, (size_t)np * 4);
        for (int64_t i = 0; i < B; i++) {
            const float *x = X + i * ldx;
            __m512 a[R][2];
            for (int r = 0; r < R; r++) a[r][0] = a[r][1] = _mm512_setzero_ps();
            for (int64_t v = 0; v < nv; v++) {
                __m512 xv = v < full ? _mm512_loadu_ps(x + v * 16) : _mm512_maskz_loadu_ps(tail, x + v * 16);
                for (int r = 0; r < R; r++)
                    a[r][v & 1] = _mm512_fmadd_ps(xv, _mm512_load_ps(buf + r * np + v * 16), a[r][v & 1]);
            }
            for (int64_t r = 0; r < nr; r++)
                Y[i * ldy + jb + r] = _mm512_reduce_add_ps(_mm512_add_ps(a[r][0], a[r][1])) +
                                      (bias ? bias[jb + r] : 0.f);
        }
    }
}

/* ---- batches: token tiles ---------------------------------------------------
 * Y^T = W X^T with the inputs transposed once into tiles of T tokens (Xt[k][t]),
 * W decoded MR rows at a time into a per-thread buffer (rows stay row-major: no
 * transpose of W), and an MR x T register block per tile: for every k one (or
 * two) loads of Xt, MR broadcasts of W[j, k] and MR (2 MR) FMAs. The codes are
 * decoded once per product whatever B is. */

CNN_AVX512_FN static void block_t16_512(const float *rb, int64_t np, const float *xt, int64_t n,
                                        float *acc) {
    __m512 c[12];
    for (int r = 0; r < 12; r++) c[r] = _mm512_setzero_ps();
    for (int64_t k = 0; k < n; k++) {
        __m512 xv = _mm512_load_ps(xt + k * 16);
        for (int r = 0; r < 12; r++) c[r] = _mm512_fmadd_ps(_mm512_set1_ps(rb[r * np + k]), xv, c[r]);
    }
    for (int r = 0; r < 12; r++) _mm512_store_ps(acc + r * 16, c[r]);
}

CNN_AVX512_FN static void block_t32_512(const float *rb, int64_t np, const float *xt, int64_t n,
                                        float *acc) {
    __m512 c[6][2];
    for (int r = 0; r < 6; r++) c[r][0] = c[r][1] = _mm512_setzero_ps();
    for (int64_t k = 0; k < n; k++) {
        __m512 x0 = _mm512_load_ps(xt + k * 32), x1 = _mm512_load_ps(xt + k * 32 + 16);
        for (int r = 0; r < 6; r++) {
            __m512 w = _mm512_set1_ps(rb[r * np + k]);
            c[r][0] = _mm512_fmadd_ps(w, x0, c[r][0]);
            c[r][1] = _mm512_fmadd_ps(w, x1, c[r][1]);
        }
    }
    for (int r = 0; r < 6; r++) {
        _mm512_store_ps(acc + r * 32, c[r][0]);
        _mm512_store_ps(acc + r * 32 + 16, c[r][1]);
    }
}

CNN_AVX2_FN static void block_t8_avx2(const float *rb, int64_t np, const float *xt, int64_t n,
                                      float *acc) {
    __m256 c[12];
    for (int r = 0; r < 12; r++) c[r] = _mm256_setzero_ps();
    for (int64_t k = 0; k < n; k++) {
        __m256 xv = _mm256_load_ps(xt + k * 8);
        for (int r = 0; r < 12; r++) c[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(rb + r * np + k), xv, c[r]);
    }
    for (int r = 0; r < 12; r++) _mm256_store_ps(acc + r * 8, c[r]);
}

CNN_AVX2_FN static void block_t16_avx2(const float *rb, int64_t np, const float *xt, int64_t n,
                                       float *acc) {
    __m256 c[6][2];
    for (int r = 0; r < 6; r++) c[r][0] = c[r][1] = _mm256_setzero_ps();
    for (int64_t k = 0; k < n; k++) {
        __m256 x0 = _mm256_load_ps(xt + k * 16), x1 = _mm256_load_ps(xt + k * 16 + 8);
        for (int r = 0; r < 6; r++) {
            __m256 w = _mm256_broadcast_ss(rb + r * np + k);
            c[r][0] = _mm256_fmadd_ps(w, x0, c[r][0]);
            c[r][1] = _mm256_fmadd_ps(w, x1, c[r][1]);
        }
    }
    for (int r = 0; r < 6; r++) {
        _mm256_store_ps(acc + r * 16, c[r][0]);
        _mm256_store_ps(acc + r * 16 + 8, c[r][1]);
    }
}

typedef void (*block_fn)(const float *, int64_t, const float *, int64_t, float *);

/* Rows j0 .. j1 of Y for all B inputs; xt holds ceil(B / T) tiles of n x T. */
static void rows_tiles(const cnn_lut *W, int level, const float *xt, int64_t B, int T, int MR,
                       block_fn block, float *Y, int64_t ldy, const float *bias, int64_t j0,
                       int64_t j1, float *rb, float *acc) {
    const int64_t n = W->n, np = padded_cols(W), tiles = (B + T - 1) / T;
    for (int64_t jb = j0; jb < j1; jb += MR) {
        int64_t nr = j1 - jb < MR ? j1 - jb : MR;
        for (int64_t r = 0; r < nr; r++) {
            if (level == CNN_AVX512) decode_row_512(W, jb + r, rb + r * np, np);
            else decode_row_avx2(W, jb + r, rb + r * np, np);
        }
        if (nr < MR) memset(rb + nr * np, 0, (size_t)((MR - nr) * np) * sizeof(float));
        for (int64_t t = 0; t < tiles; t++) {
            block(rb, np, xt + t * n * T, n, acc);
            int64_t i0 = t * T, ni = B - i0 < T ? B - i0 : T;
            for (int64_t r = 0; r < nr; r++) {
                float b = bias ? bias[jb + r] : 0.f;
                for (int64_t i = 0; i < ni; i++) Y[(i0 + i) * ldy + jb + r] = acc[r * T + i] + b;
            }
        }
    }
}
#endif /* CNN_X86 */

#if CNN_ARM64
/* ---- NEON ------------------------------------------------------------------
 * The codebook split into bytes: plane b holds byte b of every codebook value
 * (K <= 256 entries each, zero padded). One tbl per plane looks up byte b of 16
 * codes at once (vqtbl1q: 16 entries, nibble codes; vqtbl4q + vqtbx4q: 64 per
 * step, byte codes) and two zip levels (or one vst4q) put the four bytes of each
 * value back together: 16 floats per four lookups. Planes are built per call on
 * the caller's stack (1 KiB), not stored. */

typedef struct {
    uint8_t b[4][256];
} lut_planes;

static void planes_neon(const cnn_lut *W, lut_planes *P) {
    memset(P, 0, sizeof *P);
    for (int32_t c = 0; c < W->K; c++) {
        uint8_t v[4];
        memcpy(v, &W->omega[c], 4);
        for (int b = 0; b < 4; b++) P->b[b][c] = v[b];
    }
}

/* Byte b of the codebook values of 16 codes. */
static inline uint8x16_t plane_lookup(const cnn_lut *W, const lut_planes *P, int b, uint8x16_t idx) {
    if (W->nibble) return vqtbl1q_u8(vld1q_u8(P->b[b]), idx);
    uint8x16x4_t t = vld1q_u8_x4(P->b[b]);
    uint8x16_t r = vqtbl4q_u8(t, idx);
    for (int s = 1; s * 64 < W->K; s++) {
        t = vld1q_u8_x4(P->b[b] + 64 * s);
        r = vqtbx4q_u8(r, t, vsubq_u8(idx, vdupq_n_u8((uint8_t)(64 * s))));
    }
    return r;
}

/* The values of 16 codes as four float vectors (codes 0-3, 4-7, 8-11, 12-15). */
static inline void lookup16_neon(const cnn_lut *W, const lut_planes *P, uint8x16_t idx,
                                 float32x4_t v[4]) {
    uint8x16_t b0 = plane_lookup(W, P, 0, idx), b1 = plane_lookup(W, P, 1, idx);
    uint8x16_t b2 = plane_lookup(W, P, 2, idx), b3 = plane_lookup(W, P, 3, idx);
    uint16x8_t l01 = vreinterpretq_u16_u8(vzip1q_u8(b0, b1)), h01 = vreinterpretq_u16_u8(vzip2q_u8(b0, b1));
    uint16x8_t l23 = vreinterpretq_u16_u8(vzip1q_u8(b2, b3)), h23 = vreinterpretq_u16_u8(vzip2q_u8(b2, b3));
    v[0] = vreinterpretq_f32_u16(vzip1q_u16(l01, l23));
    v[1] = vreinterpretq_f32_u16(vzip2q_u16(l01, l23));
    v[2] = vreinterpretq_f32_u16(vzip1q_u16(h01, h23));
    v[3] = vreinterpretq_f32_u16(vzip2q_u16(h01, h23));
}

/* Store the values of 16 codes to dst[0 .. count) (count <= 16). */
static inline void store16_neon(const cnn_lut *W, const lut_planes *P, uint8x16_t idx, float *dst,
                                int64_t count) {
    uint8x16x4_t b = {{plane_lookup(W, P, 0, idx), plane_lookup(W, P, 1, idx),
                       plane_lookup(W, P, 2, idx), plane_lookup(W, P, 3, idx)}};
    if (count >= 16) {
        vst4q_u8((uint8_t *)dst, b); /* byte-interleaved: 16 little-endian floats */
        return;
    }
    float tmp[16];
    vst4q_u8((uint8_t *)tmp, b);
    memcpy(dst, tmp, (size_t)count * sizeof(float));
}

static void decode_row_neon(const cnn_lut *W, const lut_planes *P, int64_t r, float *dst,
                            int64_t ncols) {
    const uint8_t *row = W->codes + r * W->stride;
    if (W->nibble) {
        const uint8x16_t low = vdupq_n_u8(15);
        for (int64_t q = 0; q * 32 < ncols; q++) {
            uint8x16_t v = vld1q_u8(row + q * 16);
            int64_t c0 = q * 32;
            store16_neon(W, P, vandq_u8(v, low), dst + c0, ncols - c0);
            if (c0 + 16 < ncols) store16_neon(W, P, vshrq_n_u8(v, 4), dst + c0 + 16, ncols - c0 - 16);
        }
    } else {
        for (int64_t c0 = 0; c0 < ncols; c0 += 16)
            store16_neon(W, P, vld1q_u8(row + c0), dst + c0, ncols - c0);
    }
}

/* B == 1, nibble codes: decode and multiply in registers (4 chains). */
static void matvec_nibble_neon(const cnn_lut *W, const lut_planes *P, const float *x, float *y,
                               const float *bias, int64_t j0, int64_t j1) {
    const int64_t n = W->n, full = n / 32;
    const uint8x16_t low = vdupq_n_u8(15);
    for (int64_t j = j0; j < j1; j++) {
        const uint8_t *row = W->codes + j * W->stride;
        float32x4_t a0 = vdupq_n_f32(0.f), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t q = 0; q < full; q++) {
            uint8x16_t v = vld1q_u8(row + q * 16);
            const float *xq = x + q * 32;
            float32x4_t w[4];
            lookup16_neon(W, P, vandq_u8(v, low), w);
            a0 = vfmaq_f32(a0, w[0], vld1q_f32(xq));
            a1 = vfmaq_f32(a1, w[1], vld1q_f32(xq + 4));
            a2 = vfmaq_f32(a2, w[2], vld1q_f32(xq + 8));
            a3 = vfmaq_f32(a3, w[3], vld1q_f32(xq + 12));
            lookup16_neon(W, P, vshrq_n_u8(v, 4), w);
            a0 = vfmaq_f32(a0, w[0], vld1q_f32(xq + 16));
            a1 = vfmaq_f32(a1, w[1], vld1q_f32(xq + 20));
            a2 = vfmaq_f32(a2, w[2], vld1q_f32(xq + 24));
            a3 = vfmaq_f32(a3, w[3], vld1q_f32(xq + 28));
        }
        float acc = 0.f;
        for (int64_t k = full * 32; k < n; k++) acc += x[k] * W->omega[lut_code(W, row, k)];
        y[j] = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3))) + acc +
               (bias ? bias[j] : 0.f);
    }
}

/* Other products: R rows decoded into buf (L1), then a 4-lane dot product per input. */
static void rows_neon(const cnn_lut *W, const lut_planes *P, const float *X, int64_t ldx,
                      int64_t B, float *Y, int64_t ldy, const float *bias, int64_t j0,
                      int64_t j1, float *buf) {
    if (W->nibble && B <= LUT_MATVEC_MAX) { /* a register matvec per input beats decoded dots */
        for (int64_t i = 0; i < B; i++) matvec_nibble_neon(W, P, X + i * ldx, Y + i * ldy, bias, j0, j1);
        return;
    }
    const int64_t n = W->n, np = padded_cols(W), full = n / 8 * 8;
    for (int64_t jb = j0; jb < j1; jb += R) {
        int64_t nr = j1 - jb < R ? j1 - jb : R;
        for (int64_t r = 0; r < nr; r++) decode_row_neon(W, P, jb + r, buf + r * np, np);
        for (int64_t i = 0; i < B; i++) {
            const float *x = X + i * ldx;
            for (int64_t r = 0; r < nr; r++) {
                const float *w = buf + r * np;
                float32x4_t a0 = vdupq_n_f32(0.f), a1 = a0;
                int64_t k = 0;
                for (; k < full; k += 8) {
                    a0 = vfmaq_f32(a0, vld1q_f32(w + k), vld1q_f32(x + k));
                    a1 = vfmaq_f32(a1, vld1q_f32(w + k + 4), vld1q_f32(x + k + 4));
                }
                float acc = 0.f;
                for (; k < n; k++) acc += x[k] * w[k];
                Y[i * ldy + jb + r] = vaddvq_f32(vaddq_f32(a0, a1)) + acc + (bias ? bias[jb + r] : 0.f);
            }
        }
    }
}
#endif /* CNN_ARM64 */

/* ---- entry points ------------------------------------------------------------ */

#if CNN_ARM64
typedef lut_planes lut_aux;
static void aux_init(const cnn_lut *W, int level, lut_aux *P) {
    if (level == CNN_NEON) planes_neon(W, P);
}
#else
typedef char lut_aux; /* nothing per call on x86 */
static void aux_init(const cnn_lut *W, int level, lut_aux *P) { (void)W, (void)level, (void)P; }
#endif

static void decode_row(const cnn_lut *W, int level, const lut_aux *P, int64_t r, float *dst) {
#if CNN_X86
    if (level == CNN_AVX512) decode_row_512(W, r, dst, W->n);
    else if (level == CNN_AVX2) decode_row_avx2(W, r, dst, W->n);
    else
#elif CNN_ARM64
    if (level == CNN_NEON) decode_row_neon(W, P, r, dst, W->n);
    else
#endif
        decode_row_c(W, r, dst, W->n);
    (void)level, (void)P;
}

static void rows_dot(const cnn_lut *W, int level, const lut_aux *P, const float *X, int64_t ldx,
                     int64_t B, float *Y, int64_t ldy, const float *bias, int64_t j0, int64_t j1,
                     float *buf) {
#if CNN_X86
    if (level == CNN_AVX512) rows_512(W, X, ldx, B, Y, ldy, bias, j0, j1, buf);
    else if (level == CNN_AVX2) rows_avx2(W, X, ldx, B, Y, ldy, bias, j0, j1, buf);
    else
#elif CNN_ARM64
    if (level == CNN_NEON) rows_neon(W, P, X, ldx, B, Y, ldy, bias, j0, j1, buf);
    else
#endif
        rows_c(W, X, ldx, B, Y, ldy, bias, j0, j1, buf);
    (void)level, (void)P;
}

void cnn_lut_decode_rows(const cnn_lut *W, int64_t r0, int64_t nr, float *dst, int64_t ldd) {
    const int level = cnn_get_level();
    const int nt = cnn_threads_for(nr * W->n);
    lut_aux P;
    aux_init(W, level, &P);
    CNN_PARALLEL(
        int64_t a = nr * cnn_tid() / cnn_nthreads(), b = nr * (cnn_tid() + 1) / cnn_nthreads();
        for (int64_t r = a; r < b; r++) decode_row(W, level, &P, r0 + r, dst + r * ldd););
}

#if CNN_X86
/* Y = X W^T by token tiles (B > LUT_DOT_MAX, SIMD levels). */
static int rows_by_tiles(const cnn_lut *W, int level, const float *X, int64_t ldx, int64_t B,
                         float *Y, int64_t ldy, const float *bias) {
    const int wide = level == CNN_AVX512 ? 16 : 8;
    const int T = B <= wide ? wide : 2 * wide, MR = B <= wide ? 12 : 6;
    block_fn block = level == CNN_AVX512 ? (T == 16 ? block_t16_512 : block_t32_512)
                                         : (T == 8 ? block_t8_avx2 : block_t16_avx2);
    const int64_t n = W->n, m = W->m, np = padded_cols(W), tiles = (B + T - 1) / T;
    float *xt = cnn_alloc((size_t)(tiles * T * n) * sizeof(float));
    if (!xt) return -1;
    for (int64_t t = 0; t < tiles; t++) { /* Xt[t][k][i] = X[t * T + i][k], zero padded */
        float *dst = xt + t * n * T;
        int64_t ni = B - t * T < T ? B - t * T : T;
        for (int64_t k = 0; k < n; k++) {
            for (int64_t i = 0; i < ni; i++) dst[k * T + i] = X[(t * T + i) * ldx + k];
            for (int64_t i = ni; i < T; i++) dst[k * T + i] = 0.f;
        }
    }
    const int64_t blocks = (m + MR - 1) / MR;
    const int nt0 = cnn_threads_for(B * m * n);
    const int nt = nt0 < blocks ? nt0 : (int)blocks;
    const size_t rbf = (size_t)(MR * np), accf = (size_t)(MR * T);
    float *scratch = cnn_alloc((rbf + accf) * sizeof(float) * (size_t)nt);
    if (!scratch) {
        cnn_free(xt);
        return -1;
    }
    CNN_PARALLEL(
        int t = cnn_tid(), TT = cnn_nthreads();
        int64_t b0 = blocks * t / TT, b1 = blocks * (t + 1) / TT;
        int64_t j0 = b0 * MR, j1 = b1 * MR < m ? b1 * MR : m;
        float *rb = scratch + (size_t)t * (rbf + accf);
        if (j0 < j1) rows_tiles(W, level, xt, B, T, MR, block, Y, ldy, bias, j0, j1, rb, rb + rbf););
    cnn_free(scratch);
    cnn_free(xt);
    return 0;
}
#endif

int cnn_lut_rows(const cnn_lut *W, const float *X, int64_t ldx, int64_t B, float *Y,
                 int64_t ldy, const float *bias) {
    const int level = cnn_get_level();
#if CNN_X86
    if (B > (W->nibble ? LUT_MATVEC_MAX : LUT_DOT_MAX) && level != CNN_PORTABLE)
        return rows_by_tiles(W, level, X, ldx, B, Y, ldy, bias);
#endif
    const int64_t m = W->m, blocks = (m + R - 1) / R;
    const int nt0 = cnn_threads_for(B * m * W->n);
    const int nt = nt0 < blocks ? nt0 : (int)blocks;
    const size_t bufbytes = (size_t)(R * padded_cols(W)) * sizeof(float);
    float *bufs = cnn_alloc(bufbytes * (size_t)nt);
    if (!bufs) return -1;
    lut_aux P;
    aux_init(W, level, &P);
    CNN_PARALLEL(
        int t = cnn_tid(), T = cnn_nthreads();
        int64_t b0 = blocks * t / T, b1 = blocks * (t + 1) / T;
        int64_t j0 = b0 * R, j1 = b1 * R < m ? b1 * R : m;
        float *buf = bufs + (size_t)t * (bufbytes / sizeof(float));
        if (j0 < j1) rows_dot(W, level, &P, X, ldx, B, Y, ldy, bias, j0, j1, buf););
    cnn_free(bufs);
    (void)level;
    return 0;
}
