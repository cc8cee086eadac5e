/* lossless_float kernels: Huffman-coded exponent heads + fixed-width sign/mantissa tails.
 *
 * The stored layout is used in place (formats/lossless_float.py): `words` holds the head
 * codes MSB-first in uint32 words, one stream per block of 8 rows starting at
 * block_bits[b]; `tails` holds w bits per entry, entry e at bit e * w. An entry is
 * head | sign << 31 | mantissa << z.
 *
 * Decoding runs up to LF_S = 8 block streams in one loop (HUF_decompress4X style: the
 * table lookups of independent streams overlap). A stream's state is one register: its
 * bit position p and the heads it has written to its chunk (LF_KSHIFT). A step loads the
 * 64-bit big-endian window at word p / 32 (one unaligned load and a rotate), shifts it by
 * p % 32 (33 valid bits remain: any code fits) and looks its top CNN_LFLOAT_T bits up in
 * a table of one or two codes (two where both fit in those bits; none: a longer code,
 * found by the canonical search); both head records are stored at once and one `and` of
 * the entry advances position and count. The streams decode LF_C entries each into a
 * heads chunk that stays in L1 (a head decoded past the chunk is carried into the next
 * one); then each stream's chunk (part of one row) is completed with its tails (AVX-512
 * VBMI: 16 tails per vpermb from one 64-byte load; AVX2: 8 per vpshufb from two 16-byte
 * loads; the patterns precomputed per bit offset; portable: scalar) and consumed: stored
 * (decode_rows), or dotted with up to LF_MAXB inputs (rows). Threads split the blocks in
 * groups of 8.
 */
#include "cnn_internal.h"

#include <stdlib.h>
#include <string.h>

#define LF_S 8   /* streams decoded together */
#define LF_C 256 /* entries per stream per chunk */
#define LF_CS (LF_C + 16) /* stride of the streams' head chunks (room for a carried head) */
#define LF_MAXB 8

/* A stream's state in one register: its bit position p (< 2^40) | k << 40, k the heads
 * it has written to its chunk. */
#define LF_KSHIFT 40
#define LF_PMASK (((uint64_t)1 << LF_KSHIFT) - 1)
/* Table entries: lo = head1 | bits taken (bits 0-5), hi = head2 | codes << 8 (1 or 2);
 * the heads' low 20 bits are otherwise zero (h <= 3), so e & LF_ADV advances P. */
#define LF_ADV ((uint64_t)3 << LF_KSHIFT | 63)
#define LF_ONE ((uint64_t)1 << LF_KSHIFT) /* hi of an entry with one code */
#define LF_REC 0x3FFu                     /* the low bits of a record that are not head */

/* ---- tables --------------------------------------------------------------------- */

int cnn_lfloat_tables(const int64_t *length_counts, int lmax, int t, const uint32_t *heads,
                      int64_t K, uint64_t *table, uint64_t *limit, int64_t *base) {
    if (lmax < 0 || lmax > 32 || t < 1 || t > 16) return -1;
    for (int l = 0; l < 34; l++) {
        limit[l] = (uint64_t)1 << 32;
        base[l] = 0;
    }
    const uint64_t size = (uint64_t)1 << t;
    uint32_t *one = calloc(size, sizeof(uint32_t)); /* one code: head | length, 0 = longer */
    if (!one) return -1;
    uint64_t code = 0;
    int64_t offset = 0;
    int rc = 0;
    for (int l = 1; l <= lmax && !rc; l++) {
        const int64_t c = length_counts[l - 1];
        if (c < 0 || offset + c > K) {
            rc = -1;
            break;
        }
        limit[l] = (code + (uint64_t)c) << (32 - l);
        base[l] = (int64_t)code - offset;
        if (l <= t) { /* every table index starting with one of these codes */
            const uint64_t span = (uint64_t)1 << (t - l);
            for (int64_t i = 0; i < c && !rc; i++) {
                const uint64_t first = (code + (uint64_t)i) << (t - l);
                if (first + span > size) rc = -1; /* over-full */
                else
                    for (uint64_t j = 0; j < span; j++)
                        one[first + j] = heads[offset + i] | (uint32_t)l;
            }
        }
        offset += c;
        code = (code + (uint64_t)c) << 1;
    }
    /* two codes where both fit in the t bits: lo = head1 | both lengths, hi = head2 */
    for (uint64_t i = 0; i < size && !rc; i++) {
        const uint32_t e1 = one[i], l1 = e1 & 63;
        uint64_t e = e1 | LF_ONE;
        if (l1 && (int)l1 < t) {
            const uint32_t e2 = one[(i << l1) & (size - 1)], l2 = e2 & 63;
            if (l2 && (int)(l1 + l2) <= t)
                e = ((e1 & ~63u) | (l1 + l2)) | (uint64_t)(e2 & ~63u) << 32 | 2 * LF_ONE;
        }
        table[i] = e;
    }
    free(one);
    return rc;
}

/* 64-bit window at bit p of an MSB-first uint32 stream, shifted so bit p is the top bit
 * (at least 33 bits valid). */
static inline uint64_t lf_window(const uint32_t *wd, uint64_t p) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t q;
    memcpy(&q, wd + (p >> 5), 8);
    q = (q << 32) | (q >> 32);
#else
    const uint64_t q = (uint64_t)wd[p >> 5] << 32 | wd[(p >> 5) + 1];
#endif
    return q << (p & 31);
}

/* A code longer than the table (or an unused prefix, on streams check() would refuse):
 * canonical search on the 32-bit peek; returns head | length. */
__attribute__((noinline)) static uint32_t lf_slow(const cnn_lfloat *W, uint64_t q) {
    const uint64_t peek = q >> 32;
    int l = CNN_LFLOAT_T + 1;
    while (l < W->lmax && peek >= W->limit[l]) l++;
    int64_t sym = (int64_t)(peek >> (32 - l)) - W->base[l];
    if (sym < 0) sym = 0;
    if (sym >= W->K) sym = W->K - 1;
    return W->heads[sym] | (uint32_t)l;
}

/* One step of the stream P: the table gives one or two codes; both records are stored
 * at once (the second is overwritten when only one code was decoded). */
#define LF_STEP(P)                                                                   \
    do {                                                                             \
        const uint64_t q_ = lf_window(wd, (P) & LF_PMASK);                           \
        uint64_t e_ = tab[q_ >> sh];                                                 \
        if (__builtin_expect(!(e_ & 63), 0)) e_ = lf_slow(W, q_) | LF_ONE;           \
        memcpy(hb + (P >> LF_KSHIFT), &e_, 8);                                       \
        P += e_ & LF_ADV;                                                            \
    } while (0)

/* Heads of the next cnt (<= LF_C) entries of S (8, 4 or 1) streams into their chunks
 * (stream s at hb + s * LF_CS). P[s]: position and the heads already there (0 or 1,
 * carried); on return k - cnt (0 or 1) heads past cnt were decoded (at index cnt). The
 * streams run in lockstep for as many steps as keep every one within cnt + 1 heads,
 * then finish one by one. */
static inline __attribute__((always_inline)) void lf_heads(const cnn_lfloat *W, uint64_t *P,
                                                           int S, int64_t cnt, uint32_t *hb) {
    const uint32_t *wd = W->words;
    const uint64_t *tab = W->table;
    if (W->lmax == 0) { /* one head, the zero-length code */
        for (int s = 0; s < S; s++) {
            for (int64_t j = 0; j < cnt; j++) hb[s * LF_CS + j] = W->heads[0];
            P[s] = (P[s] & LF_PMASK) | (uint64_t)cnt << LF_KSHIFT;
        }
        return;
    }
    const int sh = 64 - CNN_LFLOAT_T;
    /* stream s writes at hb + s * LF_CS: its k is offset by s * LF_CS */
    if (S == 8 || S == 4) {
        uint64_t Q[8];
        for (int s = 0; s < S; s++) Q[s] = P[s] + ((uint64_t)(s * LF_CS) << LF_KSHIFT);
        for (;;) {
            int64_t kmax = 0;
            for (int s = 0; s < S; s++) {
                const int64_t ks = (int64_t)(Q[s] >> LF_KSHIFT) - s * LF_CS;
                kmax = ks > kmax ? ks : kmax;
            }
            const int64_t steps = (cnt + 1 - kmax) / 2;
            if (steps < 4) break;
            if (S == 8) {
                uint64_t q0 = Q[0], q1 = Q[1], q2 = Q[2], q3 = Q[3], q4 = Q[4], q5 = Q[5],
                         q6 = Q[6], q7 = Q[7];
                for (int64_t i = 0; i < steps; i++) {
                    LF_STEP(q0); LF_STEP(q1); LF_STEP(q2); LF_STEP(q3);
                    LF_STEP(q4); LF_STEP(q5); LF_STEP(q6); LF_STEP(q7);
                }
                Q[0] = q0, Q[1] = q1, Q[2] = q2, Q[3] = q3, Q[4] = q4, Q[5] = q5, Q[6] = q6,
                Q[7] = q7;
            } else {
                uint64_t q0 = Q[0], q1 = Q[1], q2 = Q[2], q3 = Q[3];
                for (int64_t i = 0; i < steps; i++) {
                    LF_STEP(q0); LF_STEP(q1); LF_STEP(q2); LF_STEP(q3);
                }
                Q[0] = q0, Q[1] = q1, Q[2] = q2, Q[3] = q3;
            }
        }
        for (int s = 0; s < S; s++) P[s] = Q[s] - ((uint64_t)(s * LF_CS) << LF_KSHIFT);
    }
    for (int s = 0; s < S; s++) { /* the rest one stream at a time */
        uint64_t q0 = P[s] + ((uint64_t)(s * LF_CS) << LF_KSHIFT);
        const uint64_t end = (uint64_t)(s * LF_CS + cnt) << LF_KSHIFT;
        while (q0 < end) LF_STEP(q0);
        P[s] = q0 - ((uint64_t)(s * LF_CS) << LF_KSHIFT);
    }
}

/* ---- tails ----------------------------------------------------------------------- */

/* out[j] = entry e0 + j from its head record hb[j] (head | length) and its tail. */
static void lf_combine_scalar(const cnn_lfloat *W, const uint32_t *hb, int64_t e0, int64_t cnt,
                              uint32_t *out) {
    const uint32_t *tw = W->tails;
    const int w = W->w, sh = 8 + W->h;
    const uint32_t mmask = W->mmask;
    uint64_t bit = (uint64_t)e0 * (uint64_t)w;
    for (int64_t j = 0; j < cnt; j++, bit += (uint64_t)w) {
        const uint32_t u = (uint32_t)(lf_window(tw, bit) >> 32);
        out[j] = (hb[j] & ~LF_REC) | (u & 0x80000000u) | ((u >> sh) & mmask);
    }
}

#if CNN_X86
#define CNN_VBMI_FN \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi,bmi2,fma")))

int cnn_lfloat_vbmi(void) {
    __builtin_cpu_init();
    return cnn_cpu_level() == CNN_AVX512 && __builtin_cpu_supports("avx512vbmi");
}

/* 16 entries from e (bit e * w of the tails), as lf_combine_scalar; the 64 bytes at word
 * (e * w) / 32 must lie inside the tails. */
CNN_VBMI_FN static inline __m512i lf_tails16(const cnn_lfloat *W, __m512i hd, uint64_t bit,
                                             __m512i mm, __m512i sgn, __m512i hm) {
    const int r = (int)(bit & 31);
    const __m512i data = _mm512_loadu_si512((const void *)(W->tails + (bit >> 5)));
    const __m512i idx = _mm512_load_si512((const void *)(W->perm + 64 * r));
    const __m512i sv = _mm512_load_si512((const void *)(W->shift + 16 * r));
    const __m512i u = _mm512_sllv_epi32(_mm512_permutexvar_epi8(idx, data), sv);
    const __m512i mant = _mm512_and_si512(_mm512_srli_epi32(u, 8 + W->h), mm);
    /* (hd & ~LF_REC) | (u & sgn) | mant */
    const __m512i hs = _mm512_ternarylogic_epi32(_mm512_and_si512(hd, hm), u, sgn, 0xF8);
    return _mm512_or_si512(hs, mant);
}

CNN_VBMI_FN static void lf_combine_vbmi(const cnn_lfloat *W, const uint32_t *hb, int64_t e0,
                                        int64_t cnt, uint32_t *out) {
    const __m512i mm = _mm512_set1_epi32((int)W->mmask), sgn = _mm512_set1_epi32(INT32_MIN);
    const __m512i hm = _mm512_set1_epi32((int)~LF_REC);
    const int w = W->w;
    int64_t j = 0;
    uint64_t bit = (uint64_t)e0 * (uint64_t)w;
    for (; j + 16 <= cnt; j += 16, bit += 16 * (uint64_t)w) {
        if ((bit >> 5) + 16 > (uint64_t)W->tail_words) break;
        const __m512i hd = _mm512_loadu_si512((const void *)(hb + j));
        _mm512_storeu_si512((void *)(out + j), lf_tails16(W, hd, bit, mm, sgn, hm));
    }
    if (j < cnt) lf_combine_scalar(W, hb + j, e0 + j, cnt - j, out + j);
}

/* As lf_combine_vbmi, 8 entries a step: entries 0-3 and 4-7 each from 16 bytes at their
 * own word (vpshufb works within 128-bit lanes), patterns per bit offset. */
CNN_AVX2_FN static void lf_combine_avx2(const cnn_lfloat *W, const uint32_t *hb, int64_t e0,
                                        int64_t cnt, uint32_t *out) {
    const __m256i mm = _mm256_set1_epi32((int)W->mmask), sgn = _mm256_set1_epi32(INT32_MIN);
    const __m256i hm = _mm256_set1_epi32((int)~LF_REC);
    const uint64_t w = (uint64_t)W->w;
    const uint8_t *tb = (const uint8_t *)W->tails;
    int64_t j = 0;
    uint64_t bit = (uint64_t)e0 * w;
    for (; j + 8 <= cnt; j += 8, bit += 8 * w) {
        const uint64_t b1 = bit + 4 * w;
        if ((b1 >> 5) + 4 > (uint64_t)W->tail_words) break;
        const int r0 = (int)(bit & 31), r1 = (int)(b1 & 31);
        const __m256i data = _mm256_loadu2_m128i((const __m128i *)(tb + 4 * (b1 >> 5)),
                                                 (const __m128i *)(tb + 4 * (bit >> 5)));
        const __m256i idx = _mm256_loadu2_m128i((const __m128i *)(W->perm4 + 16 * r1),
                                                (const __m128i *)(W->perm4 + 16 * r0));
        const __m256i sv = _mm256_loadu2_m128i((const __m128i *)(W->shift4 + 4 * r1),
                                               (const __m128i *)(W->shift4 + 4 * r0));
        const __m256i u = _mm256_sllv_epi32(_mm256_shuffle_epi8(data, idx), sv);
        const __m256i hd = _mm256_loadu_si256((const __m256i *)(hb + j));
        const __m256i v = _mm256_or_si256(
            _mm256_or_si256(_mm256_and_si256(hd, hm), _mm256_and_si256(u, sgn)),
            _mm256_and_si256(_mm256_srli_epi32(u, 8 + W->h), mm));
        _mm256_storeu_si256((__m256i *)(out + j), v);
    }
    if (j < cnt) lf_combine_scalar(W, hb + j, e0 + j, cnt - j, out + j);
}
#else
int cnn_lfloat_vbmi(void) { return 0; }
#endif

void cnn_lfloat_patterns(int w, int lanes, uint8_t *perm, uint32_t *shift) {
    for (int r = 0; r < 32; r++)
        for (int i = 0; i < lanes; i++) {
            const int off = r + i * w, b = off >> 3;
            for (int k = 0; k < 4; k++)
                perm[(r * lanes + i) * 4 + k] = (uint8_t)((b + 3 - k) ^ 3);
            shift[r * lanes + i] = (uint32_t)(off & 7);
        }
}

/* ---- dots -------------------------------------------------------------------------- */

static float lf_dot_portable(const float *a, const float *x, int64_t n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        s0 += a[j] * x[j];
        s1 += a[j + 1] * x[j + 1];
        s2 += a[j + 2] * x[j + 2];
        s3 += a[j + 3] * x[j + 3];
        s4 += a[j + 4] * x[j + 4];
        s5 += a[j + 5] * x[j + 5];
        s6 += a[j + 6] * x[j + 6];
        s7 += a[j + 7] * x[j + 7];
    }
    for (; j < n; j++) s0 += a[j] * x[j];
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));
}

#if CNN_X86
CNN_AVX2_FN static float lf_dot_avx2(const float *a, const float *x, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(x + j), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j + 8), _mm256_loadu_ps(x + j + 8), s1);
    }
    for (; j + 8 <= n; j += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(x + j), s0);
    s0 = _mm256_add_ps(s0, s1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    float s = _mm_cvtss_f32(h);
    for (; j < n; j++) s += a[j] * x[j];
    return s;
}

CNN_AVX512_FN static float lf_dot_512(const float *a, const float *x, int64_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 32 <= n; j += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + j), _mm512_loadu_ps(x + j), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + j + 16), _mm512_loadu_ps(x + j + 16), s1);
    }
    if (j + 16 <= n) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + j), _mm512_loadu_ps(x + j), s0);
        j += 16;
    }
    if (j < n) {
        const __mmask16 k = (__mmask16)((1u << (n - j)) - 1);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, a + j), _mm512_maskz_loadu_ps(k, x + j),
                             s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}
#endif

typedef float (*lf_dot_fn)(const float *, const float *, int64_t);
typedef void (*lf_combine_fn)(const cnn_lfloat *, const uint32_t *, int64_t, int64_t,
                              uint32_t *);

/* ---- driver ------------------------------------------------------------------------- */

/* What the chunks feed: rows r0 .. r1 - 1 stored to out (row stride ldo), or the B
 * inputs X dotted into Y (+ bias). */
typedef struct {
    int64_t r0, r1, ldo;
    uint32_t *out;
    const float *X, *bias;
    float *Y;
    int64_t ldx, B, ldy;
    lf_combine_fn combine;
    lf_dot_fn dot;
} lf_job;

/* Chunk (row r, columns c0 .. c0 + cnt - 1) of one stream: heads hb, partial sums acc[B]. */
static inline void lf_consume(const cnn_lfloat *W, const lf_job *J, const uint32_t *hb,
                              int64_t r, int64_t c0, int64_t cnt, uint32_t *vals, float *acc) {
    const int64_t n = W->n, e0 = r * n + c0;
    if (J->out) {
        if (r >= J->r0 && r < J->r1) J->combine(W, hb, e0, cnt, J->out + (r - J->r0) * J->ldo + c0);
        return;
    }
    J->combine(W, hb, e0, cnt, vals);
    for (int64_t b = 0; b < J->B; b++)
        acc[b] += J->dot((const float *)vals, J->X + b * J->ldx + c0, cnt);
    if (c0 + cnt == n)
        for (int64_t b = 0; b < J->B; b++) {
            J->Y[b * J->ldy + r] = acc[b] + (J->bias ? J->bias[r] : 0.0f);
            acc[b] = 0.0f;
        }
}

/* Blocks b0 .. b1 - 1 (a thread's share), S streams at a time. */
static inline __attribute__((always_inline)) void lf_blocks(const cnn_lfloat *W, const lf_job *J, int64_t b0, int64_t b1,
                      uint32_t *hb, uint32_t *vals) {
    const int64_t n = W->n, full = W->m / 8;
    float acc[LF_S * LF_MAXB];
    for (int64_t b = b0; b < b1;) {
        const int S = b + 8 <= b1 && b + 8 <= full ? 8 : b + 4 <= b1 && b + 4 <= full ? 4 : 1;
        const int64_t rows = S > 1 ? 8 : (8 * b + 8 <= W->m ? 8 : W->m - 8 * b);
        uint64_t P[LF_S]; /* position | heads in the chunk << LF_KSHIFT */
        for (int s = 0; s < S; s++) P[s] = (uint64_t)W->block_bits[b + s];
        memset(acc, 0, sizeof acc);
        for (int64_t i = 0; i < rows; i++)
            for (int64_t c0 = 0; c0 < n; c0 += LF_C) {
                const int64_t cnt = n - c0 < LF_C ? n - c0 : LF_C;
                if (S == 8) lf_heads(W, P, 8, cnt, hb);
                else if (S == 4) lf_heads(W, P, 4, cnt, hb);
                else lf_heads(W, P, 1, cnt, hb);
                for (int s = 0; s < S; s++) {
                    uint32_t *h = hb + s * LF_CS;
                    lf_consume(W, J, h, 8 * (b + s) + i, c0, cnt, vals, acc + s * LF_MAXB);
                    P[s] -= (uint64_t)cnt << LF_KSHIFT; /* a head decoded past the chunk */
                    if (P[s] >> LF_KSHIFT) h[0] = h[cnt]; /* starts the next one */
                }
            }
        b += S;
    }
}

typedef void (*lf_blocks_fn)(const cnn_lfloat *, const lf_job *, int64_t, int64_t, uint32_t *,
                             uint32_t *);

static void lf_blocks_portable(const cnn_lfloat *W, const lf_job *J, int64_t b0, int64_t b1,
                               uint32_t *hb, uint32_t *vals) {
    lf_blocks(W, J, b0, b1, hb, vals);
}

#if CNN_X86
/* The same compiled with BMI2 (shlx, shrx, rorx: no shift count in cl). */
CNN_AVX2_FN static void lf_blocks_bmi2(const cnn_lfloat *W, const lf_job *J, int64_t b0,
                                       int64_t b1, uint32_t *hb, uint32_t *vals) {
    lf_blocks(W, J, b0, b1, hb, vals);
}
#endif

static int lf_run(const cnn_lfloat *W, lf_job *J, int64_t b0, int64_t b1, int64_t work) {
    const int lvl = cnn_get_level();
    J->combine = lf_combine_scalar;
    J->dot = lf_dot_portable;
    lf_blocks_fn blocks = lf_blocks_portable;
#if CNN_X86
    if (lvl >= CNN_AVX2) blocks = lf_blocks_bmi2;
    if (lvl >= CNN_AVX2 && W->perm4) J->combine = lf_combine_avx2;
    if (lvl >= CNN_AVX512 && W->perm) J->combine = lf_combine_vbmi;
    if (lvl >= CNN_AVX512) J->dot = lf_dot_512;
    else if (lvl == CNN_AVX2) J->dot = lf_dot_avx2;
#endif
    const int64_t groups = (b1 - b0 + 7) / 8;
    if (groups <= 0) return 0;
    int nt = cnn_threads_for(work);
    if (nt > groups) nt = (int)groups;
    const size_t per = LF_S * LF_CS + LF_C; /* heads chunk + one stream's values */
    uint32_t *scratch = cnn_alloc(sizeof(uint32_t) * per * (size_t)nt);
    if (!scratch) return -1;
    CNN_PARALLEL(
        const int tid = cnn_tid(), nth = cnn_nthreads();
        const int64_t g0 = groups * tid / nth, g1 = groups * (tid + 1) / nth;
        const int64_t e1 = b0 + 8 * g1 < b1 ? b0 + 8 * g1 : b1;
        uint32_t *hb = scratch + per * (size_t)tid;
        blocks(W, J, b0 + 8 * g0, e1, hb, hb + LF_S * LF_CS););
    cnn_free(scratch);
    return 0;
}

void cnn_lfloat_counts(const cnn_lfloat *W, int64_t *counts) {
    counts[0] = counts[1] = counts[2] = 0;
    if (W->lmax == 0 || W->n == 0) return;
    const uint32_t *wd = W->words;
    for (int64_t b = 0; 8 * b < W->m; b++) {
        const int64_t rows = W->m - 8 * b < 8 ? W->m - 8 * b : 8, need = rows * W->n;
        uint64_t p = (uint64_t)W->block_bits[b];
        for (int64_t k = 0; k < need; counts[0]++) {
            const uint64_t q = lf_window(wd, p);
            uint64_t e = W->table[q >> (64 - CNN_LFLOAT_T)];
            if (!(e & 63)) {
                const uint64_t peek = q >> 32;
                int l = CNN_LFLOAT_T + 1;
                while (l < W->lmax && peek >= W->limit[l]) l++, counts[2]++;
                counts[1]++, counts[2]++;
                e = lf_slow(W, q) | LF_ONE;
            }
            p += e & 63;
            k += (int64_t)(e >> LF_KSHIFT) & 3;
        }
    }
}

int cnn_lfloat_decode_rows(const cnn_lfloat *W, int64_t r0, int64_t nr, float *dst,
                           int64_t ldd) {
    if (nr <= 0 || W->n == 0) return 0;
    lf_job J = {.r0 = r0, .r1 = r0 + nr, .ldo = ldd, .out = (uint32_t *)dst};
    return lf_run(W, &J, r0 / 8, (r0 + nr + 7) / 8, 16 * nr * W->n);
}

int cnn_lfloat_rows(const cnn_lfloat *W, const float *X, int64_t ldx, int64_t B, float *Y,
                    int64_t ldy, const float *bias) {
    const int64_t m = W->m, n = W->n;
    if (B <= 0 || m == 0) return 0;
    if (n == 0) {
        for (int64_t b = 0; b < B; b++)
            for (int64_t r = 0; r < m; r++) Y[b * ldy + r] = bias ? bias[r] : 0.0f;
        return 0;
    }
    for (int64_t b0 = 0; b0 < B; b0 += LF_MAXB) { /* LF_MAXB inputs per pass */
        const int64_t nb = B - b0 < LF_MAXB ? B - b0 : LF_MAXB;
        lf_job J = {.X = X + b0 * ldx, .ldx = ldx, .B = nb, .Y = Y + b0 * ldy, .ldy = ldy,
                    .bias = bias};
        if (lf_run(W, &J, 0, (m + 7) / 8, (16 + nb) * m * n)) return -1;
    }
    return 0;
}
