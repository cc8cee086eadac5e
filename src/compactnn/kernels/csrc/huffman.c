/* Huffman-coded products for the ham and sham formats (cnn_kernels.h).
 *
 * Decoding (scalar by nature, the same code at every level; the x86 levels
 * compile it with LZCNT/BMI2 so shifts and counts are single instructions):
 * the stream is a big-endian byte copy of the stored MSB-first words, so the
 * next 57+ bits at any bit position p are one unaligned 8-byte load, a byte
 * swap and a shift. A 2^CNN_HUFF_T-entry table (8-byte entries) indexed by the
 * next T = 11 bits gives up to two symbols and the bits they take (zstd's
 * HUF_decompress4X2 idea); codes longer than T (an "escape") fall back to the
 * canonical search. Four rows (independent streams) are decoded in one loop so
 * that four dependency chains of load -> shift -> table load overlap:
 *   plain mode (sham values, ham when +0.0 is not the 1-bit code "0"): one
 *     reload gives 57 bits, enough for 5 table lookups of <= 11 bits each;
 *   zero-run mode (ham, +0.0 = "0"): a count-leading-zeros skips the run of
 *     zero entries, and the table then decodes the non-zero code after it and,
 *     when it fits, a second run and code ("gap"): records (column, symbol).
 * Multiplying (SIMD where it helps): batch 1 dots a decoded row of symbols
 * with x (AVX-512: symbols looked up in codebook registers with vpermt2ps,
 * x gathered by column; AVX2: gathers); k columns (W @ X with X n x k, the
 * batched path) add v * X[col, :] over the records, 16 (8) columns per FMA.
 */
#include "cnn_internal.h"

#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define T CNN_HUFF_T
#define INLINE static inline __attribute__((always_inline))
#define NOVEC __attribute__((optimize("no-tree-vectorize")))
#define TSHIFT (64 - T)
#define ZMAX (57 - T) /* longest zero run skipped in one step: a code of <= T bits follows */
typedef cnn_huff_entry entry;
#define ESC_FLAG 0x8000
/* bytes 0-1 (plain: both symbols) and 1-2 (zero-run: gap << 8 | s1) as uint16 */
INLINE uint16_t u16at(const uint8_t *b) {
    uint16_t v;
    memcpy(&v, b, 2);
    return v;
}
#define BLK 4 /* rows decoded together */
#define PF 8  /* records ahead whose X rows W @ X prefetches */

#if CNN_X86
#define HUFF_AVX2_FN __attribute__((target("avx2,fma,bmi,bmi2,lzcnt,movbe")))
#define HUFF_AVX512_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,bmi,bmi2,lzcnt,movbe,fma")))
#endif

/* ---- tables ------------------------------------------------------------------------ */

int cnn_huff_tables(const int64_t *length_counts, int lmax, int zrun, cnn_huff_entry *table,
                    uint64_t *limit, int64_t *base) {
    if (lmax < 0 || lmax > 32) return -1;
    static const int64_t none = 0;
    uint8_t *ssym = cnn_alloc(1 << T), *slen = cnn_alloc(1 << T);
    if (!ssym || !slen) {
        cnn_free(ssym);
        cnn_free(slen);
        return -1;
    }
    memset(slen, 0, 1 << T);
    memset(ssym, 0, 1 << T);
    for (int l = 0; l < 34; l++) limit[l] = (uint64_t)1 << 32, base[l] = 0;
    uint64_t code = 0;
    int64_t offset = 0;
    for (int l = 1; l <= lmax; l++) {
        int64_t c = length_counts[l - 1];
        limit[l] = (code + (uint64_t)c) << (32 - l);
        base[l] = (int64_t)code - offset;
        if (l <= T) /* single-symbol table: codes of <= T bits */
            for (int64_t s = 0; s < c; s++) {
                uint64_t first = (code + (uint64_t)s) << (T - l), span = (uint64_t)1 << (T - l);
                for (uint64_t i = first; i < first + span && i < (1u << T); i++) {
                    ssym[i] = (uint8_t)(offset + s);
                    slen[i] = (uint8_t)l;
                }
            }
        offset += c;
        code = (code + (uint64_t)c) << 1;
    }
    (void)none;
    const uint32_t mask = (1u << T) - 1;
    for (uint32_t i = 0; i <= mask; i++) {
        uint32_t l0 = slen[i];
        if (!l0) {
            table[i] = (entry){.advj = ESC_FLAG}; /* longer code or unused prefix: search */
            continue;
        }
        uint32_t w = T - l0, rem = (i << l0) & mask; /* the w bits after code 0, left-aligned */
        uint32_t s0 = ssym[i], s1 = 0, n = 1, bits = l0, gap = zrun, adv = 1;
        if (zrun) {
            uint32_t z = rem ? (uint32_t)__builtin_clz(rem << (32 - T)) : w;
            if (z < w) {
                uint32_t i3 = (rem << z) & mask, l1 = slen[i3];
                if (l1 && l1 <= w - z) {
                    s1 = ssym[i3], n = 2, bits = l0 + z + l1, gap = z + 1, adv = z + 2;
                }
            }
        } else {
            uint32_t l1 = slen[rem];
            if (l1 && l1 <= w) s1 = ssym[rem], n = 2, bits = l0 + l1;
        }
        table[i] = (entry){.s0 = (uint8_t)s0, .s1 = (uint8_t)s1, .gap = (uint8_t)gap,
                           .n = (uint8_t)n, .bits = (uint8_t)bits, .len0 = (uint8_t)l0,
                           .advj = (uint16_t)(adv << 8)};
    }
    cnn_free(ssym);
    cnn_free(slen);
    return 0;
}

void cnn_huff_stream(const uint32_t *words, int64_t nwords, uint8_t *out) {
    for (int64_t i = 0; i < nwords; i++) {
        uint32_t v = words[i];
        out[4 * i] = (uint8_t)(v >> 24);
        out[4 * i + 1] = (uint8_t)(v >> 16);
        out[4 * i + 2] = (uint8_t)(v >> 8);
        out[4 * i + 3] = (uint8_t)v;
    }
    memset(out + 4 * nwords, 0, CNN_HUFF_PAD);
}

/* ---- decoding (inlined into each level) -------------------------------------------- */

INLINE uint64_t peek(const uint8_t *s, int64_t p) {
    uint64_t v;
    memcpy(&v, s + (p >> 3), 8);
    return __builtin_bswap64(v) << (p & 7);
}

/* Leading zeros of the top 63 bits (bit 0 is never a bit a step uses): no zero test. */
INLINE int lz64(uint64_t v) { return __builtin_clzll(v | 1); }

/* One code at bit p by the canonical search (codes longer than T); returns the
 * symbol and adds its length to *p. */
INLINE uint32_t slow1(const cnn_huff *W, int64_t *p) {
    uint64_t pk = peek(W->bytes, *p) >> 32;
    int ln = T + 1;
    while (ln < 32 && pk >= W->limit[ln]) ln++;
    int64_t s = (int64_t)(pk >> (32 - ln)) - W->base[ln];
    *p += ln;
    return (uint32_t)(s < 0 ? 0 : s >= W->K ? W->K - 1 : s);
}

/* Plain mode, one stream: cnt symbols from bit p into sy. */
INLINE void dec_plain1(const cnn_huff *W, int64_t p, int64_t cnt, uint8_t *sy) {
    const entry *tab = W->table;
    int64_t o = 0;
    while (cnt - o >= 2) {
        const entry *e = tab + (peek(W->bytes, p) >> TSHIFT);
        if (!e->n) {
            sy[o++] = (uint8_t)slow1(W, &p);
            continue;
        }
        uint16_t two = u16at(&e->s0);
        memcpy(sy + o, &two, 2);
        o += e->n;
        p += e->bits;
    }
    if (o < cnt) {
        const entry *e = tab + (peek(W->bytes, p) >> TSHIFT);
        sy[o] = (uint8_t)(!e->n ? slow1(W, &p) : e->s0);
    }
}

/* Plain mode, BLK streams in one loop, then the tails one by one. The streams'
 * state lives in named scalars (arrays indexed in a loop were kept on the stack,
 * and every symbol store then reloaded them). */
#define PLAIN_LOOKUP(S)                                                                        \
    do {                                                                                       \
        const entry *e = tab + (w##S >> TSHIFT);                                               \
        uint16_t two = u16at(&e->s0);                                                          \
        memcpy(y##S + o##S, &two, 2);                                                          \
        o##S += e->n;                                                                          \
        w##S <<= e->bits;                                                                      \
        p##S += e->bits;                                                                       \
        esc |= e->advj;                                                                        \
    } while (0)
#define PLAIN_ESC(S)                                                                           \
    if (!tab[peek(W->bytes, p##S) >> TSHIFT].n) y##S[o##S++] = (uint8_t)slow1(W, &p##S)

INLINE void dec_plain4(const cnn_huff *W, const int64_t *p0_, const int64_t *cnt, uint8_t **sy) {
    const entry *tab = W->table;
    const uint8_t *bytes = W->bytes;
    int64_t p0 = p0_[0], p1 = p0_[1], p2 = p0_[2], p3 = p0_[3], o0 = 0, o1 = 0, o2 = 0, o3 = 0;
    uint8_t *y0 = sy[0], *y1 = sy[1], *y2 = sy[2], *y3 = sy[3];
    /* a round makes at most 10 symbols per stream */
    const int64_t c0 = cnt[0] - 10, c1 = cnt[1] - 10, c2 = cnt[2] - 10, c3 = cnt[3] - 10;
    while ((o0 <= c0) & (o1 <= c1) & (o2 <= c2) & (o3 <= c3)) {
        uint64_t w0 = peek(bytes, p0), w1 = peek(bytes, p1), w2 = peek(bytes, p2),
                 w3 = peek(bytes, p3);
        uint32_t esc = 0;
        for (int k = 0; k < 5; k++) { /* 5 * T <= 57 bits */
            PLAIN_LOOKUP(0);
            PLAIN_LOOKUP(1);
            PLAIN_LOOKUP(2);
            PLAIN_LOOKUP(3);
        }
        if (__builtin_expect((esc & ESC_FLAG) != 0, 0)) { /* a stream stalled on an escape */
            PLAIN_ESC(0);
            PLAIN_ESC(1);
            PLAIN_ESC(2);
            PLAIN_ESC(3);
        }
    }
    dec_plain1(W, p0, cnt[0] - o0, y0 + o0);
    dec_plain1(W, p1, cnt[1] - o1, y1 + o1);
    dec_plain1(W, p2, cnt[2] - o2, y2 + o2);
    dec_plain1(W, p3, cnt[3] - o3, y3 + o3);
}

/* Zero-run mode, one row from entry j, bit p: records (column << 8 | symbol) of
 * the non-zero entries from rec[o]; returns the row's record count. */
INLINE int64_t dec_zrun1(const cnn_huff *W, int64_t p, int64_t j, int64_t o, uint32_t *rec) {
    const entry *tab = W->table;
    const int64_t n = W->n;
    while (j < n) {
        uint64_t w = peek(W->bytes, p);
        int64_t z = lz64(w);
        if (z > ZMAX) {
            if (j + ZMAX >= n) break;
            p += ZMAX, j += ZMAX;
            continue;
        }
        if (j + z >= n) break; /* the row ends in zeros */
        j += z, p += z;
        const entry *e = tab + ((w << z) >> TSHIFT);
        if (!e->n) {
            uint32_t sym = slow1(W, &p);
            rec[o++] = (uint32_t)(j++ << 8) | sym;
            continue;
        }
        rec[o++] = (uint32_t)(j << 8) | e->s0;
        if (e->n == 2 && j + e->gap < n) {
            rec[o++] = (uint32_t)(j << 8) + u16at(&e->s1);
            j += e->advj >> 8, p += e->bits;
        } else {
            j += 1, p += e->len0;
        }
    }
    return o;
}

/* Zero-run mode, BLK rows: while every row has more than ZMAX + T + 2 entries
 * left, a step cannot leave its row, so it is branch-free but for long runs and
 * escapes. J = column << 8. */
#define ZRUN_STEP(S)                                                                           \
    do {                                                                                       \
        uint64_t w = peek(bytes, p##S);                                                        \
        int64_t z = lz64(w);                                                                   \
        if (__builtin_expect(z > ZMAX, 0)) {                                                   \
            p##S += ZMAX, J##S += ZMAX << 8;                                                   \
            break;                                                                             \
        }                                                                                      \
        J##S += z << 8;                                                                        \
        const entry *e = tab + ((w << z) >> TSHIFT);                                           \
        if (__builtin_expect(!e->n, 0)) {                                                      \
            p##S += z;                                                                         \
            rec##S[o##S++] = (uint32_t)J##S | slow1(W, &p##S);                                 \
            J##S += 1 << 8;                                                                    \
            break;                                                                             \
        }                                                                                      \
        rec##S[o##S] = (uint32_t)(J##S + e->s0);                                               \
        rec##S[o##S + 1] = (uint32_t)(J##S + u16at(&e->s1));                                   \
        o##S += e->n;                                                                          \
        J##S += e->advj;                                                                       \
        p##S += z + e->bits;                                                                   \
    } while (0)

INLINE void dec_zrun4(const cnn_huff *W, const int64_t *p0_, int64_t *cnt, uint32_t **rec) {
    const entry *tab = W->table;
    const uint8_t *bytes = W->bytes;
    const int64_t safe = W->n > ZMAX + T + 2 ? (W->n - (ZMAX + T + 2)) * 256 : 0;
    int64_t p0 = p0_[0], p1 = p0_[1], p2 = p0_[2], p3 = p0_[3];
    int64_t J0 = 0, J1 = 0, J2 = 0, J3 = 0, o0 = 0, o1 = 0, o2 = 0, o3 = 0;
    uint32_t *rec0 = rec[0], *rec1 = rec[1], *rec2 = rec[2], *rec3 = rec[3];
    while ((J0 < safe) & (J1 < safe) & (J2 < safe) & (J3 < safe)) {
        ZRUN_STEP(0);
        ZRUN_STEP(1);
        ZRUN_STEP(2);
        ZRUN_STEP(3);
    }
    cnt[0] = dec_zrun1(W, p0, J0 >> 8, o0, rec0);
    cnt[1] = dec_zrun1(W, p1, J1 >> 8, o1, rec1);
    cnt[2] = dec_zrun1(W, p2, J2 >> 8, o2, rec2);
    cnt[3] = dec_zrun1(W, p3, J3 >> 8, o3, rec3);
}

/* Split records into symbols and columns (in place). */
INLINE void split_records(uint32_t *rec, uint8_t *sy, int64_t cnt) {
    for (int64_t t = 0; t < cnt; t++) {
        uint32_t v = rec[t];
        sy[t] = (uint8_t)v;
        rec[t] = v >> 8;
    }
}

/* Decode rows r0 .. r0 + nr - 1 (nr <= BLK) into per-row symbols (and, in
 * zero-run mode, columns); cnt[s] = records of row s. Missing rows get 0. */
INLINE void dec_block(const cnn_huff *W, int64_t r0, int nr, int64_t *cnt, uint32_t **co,
                      uint8_t **sy) {
    int64_t p[BLK];
    for (int s = 0; s < BLK; s++) {
        int64_t r = r0 + (s < nr ? s : 0);
        p[s] = W->row_bits[r];
        cnt[s] = s >= nr ? 0 : W->row_ptr ? W->row_ptr[r + 1] - W->row_ptr[r] : W->n;
    }
    if (W->lmax == 0) { /* zero-length code: every symbol is 0 */
        for (int s = 0; s < BLK; s++) memset(sy[s], 0, (size_t)cnt[s]);
        if (W->zrun) cnt[0] = cnt[1] = cnt[2] = cnt[3] = 0;
        return;
    }
    if (W->zrun) {
        if (nr < BLK)
            for (int s = 0; s < nr; s++) cnt[s] = dec_zrun1(W, p[s], 0, 0, co[s]);
        else
            dec_zrun4(W, p, cnt, co);
        for (int s = nr; s < BLK; s++) cnt[s] = 0;
        for (int s = 0; s < nr; s++) split_records(co[s], sy[s], cnt[s]);
    } else if (nr < BLK) {
        for (int s = 0; s < nr; s++) dec_plain1(W, p[s], cnt[s], sy[s]);
    } else {
        dec_plain4(W, p, cnt, sy);
    }
}

/* Columns of row r's records: stored (sham), decoded (zero-run ham) or none. */
typedef struct {
    const uint16_t *c16;
    const uint32_t *c32;
    const uint32_t *rec; /* records column << 8 | symbol (batched products on the tiles) */
} cols_t;

INLINE cols_t row_cols(const cnn_huff *W, int64_t r, const uint32_t *decoded) {
    cols_t c = {NULL, NULL, NULL};
    if (W->row_ptr) {
        int64_t k = W->row_ptr[r];
        if (W->colw == 2) c.c16 = (const uint16_t *)W->cols + k;
        else c.c32 = (const uint32_t *)W->cols + k;
    } else if (W->zrun) {
        c.c32 = decoded;
    }
    return c;
}

INLINE int64_t colat(cols_t c, int64_t t) { return c.c16 ? c.c16[t] : c.c32 ? c.c32[t] : t; }

/* ---- per-level products --------------------------------------------------------------
 * dot(sy, c, cnt, x): sum of lut[sy[t]] * x[col t] (batch 1, and rows of B > 1 inputs
 * when no fused kernel runs); pan: below. */

/* Scalar dot with gathered x: 4 chains. Also the sparse dot of the SIMD levels, since
 * hardware gathers lost to scalar loads (Zen 4, 4096x4096 sham: 1.1 ms vs 0.8 ms); the
 * rows kernels are compiled without auto-vectorization, which would bring them back. */
INLINE float dot_c(const cnn_huff *W, const uint8_t *sy, cols_t c, int64_t cnt, const float *x) {
    float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;
    const float *lut = W->lut;
    int64_t t = 0;
    if (c.c16) {
        for (; t + 4 <= cnt; t += 4) {
            a0 += lut[sy[t]] * x[c.c16[t]];
            a1 += lut[sy[t + 1]] * x[c.c16[t + 1]];
            a2 += lut[sy[t + 2]] * x[c.c16[t + 2]];
            a3 += lut[sy[t + 3]] * x[c.c16[t + 3]];
        }
    } else if (c.c32) {
        for (; t + 4 <= cnt; t += 4) {
            a0 += lut[sy[t]] * x[c.c32[t]];
            a1 += lut[sy[t + 1]] * x[c.c32[t + 1]];
            a2 += lut[sy[t + 2]] * x[c.c32[t + 2]];
            a3 += lut[sy[t + 3]] * x[c.c32[t + 3]];
        }
    }
    for (; t < cnt; t++) a0 += lut[sy[t]] * x[colat(c, t)];
    return (a0 + a1) + (a2 + a3);
}

/* Batched products (W @ X, k columns): mmrow(lut, sy, c, e, X, ldx, y, kk) sets y[0..kk)
 * to the sum over the row's entries t < e of value t * X[col t, 0..kk). KIND says how the
 * row's entries are known (cols_t): 0 symbols sy, column = entry index (plain ham), 1
 * symbols and uint16 columns (sham), 2 symbols and uint32 columns (sham, decoded
 * zero-run ham), 3 records column << 8 | symbol (the Huffman tiles' decoding). */
#define MM_COL(KIND, c, t)                                                                    \
    ((KIND) == 1 ? (int64_t)(c).c16[t] : (KIND) == 2 ? (int64_t)(c).c32[t]                   \
     : (KIND) == 3 ? (int64_t)((c).rec[t] >> 8) : (t))
#define MM_SYM(KIND, c, sy, t) ((KIND) == 3 ? (c).rec[t] & 0xFFu : (sy)[t])
INLINE int mm_kind(cols_t c) { return c.rec ? 3 : c.c16 ? 1 : c.c32 ? 2 : 0; }

INLINE void mmrow_c(const float *lut, const uint8_t *sy, cols_t c, int64_t e, const float *X,
                    int64_t ldx, float *y, int64_t kk) {
    for (int64_t q = 0; q < kk; q++) y[q] = 0.f;
    const int kind = mm_kind(c);
    for (int64_t t = 0; t < e; t++) {
        const float v = lut[MM_SYM(kind, c, sy, t)], *xr = X + MM_COL(kind, c, t) * ldx;
        for (int64_t q = 0; q < kk; q++) y[q] += v * xr[q];
    }
}

#if CNN_X86
/* AVX2: 8 records per step, values and x gathered. */
HUFF_AVX2_FN INLINE __m256i cols8(cols_t c, int64_t t) {
    if (c.c16) return _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(c.c16 + t)));
    if (c.c32) return _mm256_loadu_si256((const __m256i *)(c.c32 + t));
    return _mm256_setzero_si256();
}

HUFF_AVX2_FN INLINE float dot_avx2(const cnn_huff *W, const uint8_t *sy, cols_t c, int64_t cnt,
                                   const float *x) {
    if (c.c16 || c.c32) return dot_c(W, sy, c, cnt, x);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    const int dense = !c.c16 && !c.c32;
    int64_t t = 0;
    for (; t + 16 <= cnt; t += 16) {
        __m256i s0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(sy + t)));
        __m256i s1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(sy + t + 8)));
        __m256 v0 = _mm256_i32gather_ps(W->lut, s0, 4), v1 = _mm256_i32gather_ps(W->lut, s1, 4);
        __m256 x0 = dense ? _mm256_loadu_ps(x + t) : _mm256_i32gather_ps(x, cols8(c, t), 4);
        __m256 x1 = dense ? _mm256_loadu_ps(x + t + 8) : _mm256_i32gather_ps(x, cols8(c, t + 8), 4);
        a0 = _mm256_fmadd_ps(v0, x0, a0);
        a1 = _mm256_fmadd_ps(v1, x1, a1);
    }
    a0 = _mm256_add_ps(a0, a1);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a0), _mm256_extractf128_ps(a0, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    float r = _mm_cvtss_f32(s);
    for (; t < cnt; t++) r += W->lut[sy[t]] * x[colat(c, t)];
    return r;
}

/* AVX2: nv <= 8 registers of 8 columns (ml masks the last); with nv <= 4 a second set of
 * accumulators takes every other entry (FMA latency). */
HUFF_AVX2_FN INLINE void mmrow_avx2_k(const float *lut, const uint8_t *sy, cols_t c, int64_t e,
                                      const float *X, int64_t ldx, float *y, const int kind,
                                      const int nv, __m256i ml) {
    __m256 a[8], b[4];
#define MM_X8(p, q) ((q) == nv - 1 ? _mm256_maskload_ps((p) + 8 * (q), ml) : _mm256_loadu_ps((p) + 8 * (q)))
    for (int q = 0; q < 8; q++) a[q] = _mm256_setzero_ps();
    for (int q = 0; q < 4; q++) b[q] = _mm256_setzero_ps();
    int64_t t = 0;
    if (nv <= 4) {
        for (; t + 2 <= e; t += 2) {
            const float *p0 = X + MM_COL(kind, c, t) * ldx, *p1 = X + MM_COL(kind, c, t + 1) * ldx;
            const __m256 v0 = _mm256_broadcast_ss(lut + MM_SYM(kind, c, sy, t)),
                         v1 = _mm256_broadcast_ss(lut + MM_SYM(kind, c, sy, t + 1));
            for (int q = 0; q < nv; q++) {
                a[q] = _mm256_fmadd_ps(v0, MM_X8(p0, q), a[q]);
                b[q] = _mm256_fmadd_ps(v1, MM_X8(p1, q), b[q]);
            }
        }
    }
    for (; t < e; t++) {
        const float *p0 = X + MM_COL(kind, c, t) * ldx;
        const __m256 v0 = _mm256_broadcast_ss(lut + MM_SYM(kind, c, sy, t));
        for (int q = 0; q < nv; q++) a[q] = _mm256_fmadd_ps(v0, MM_X8(p0, q), a[q]);
    }
    for (int q = 0; q < nv; q++) {
        const __m256 s = q < 4 ? _mm256_add_ps(a[q], b[q]) : a[q];
        if (q == nv - 1) _mm256_maskstore_ps(y + 8 * q, ml, s);
        else _mm256_storeu_ps(y + 8 * q, s);
    }
#undef MM_X8
}

HUFF_AVX2_FN INLINE void mmrow_avx2(const float *lut, const uint8_t *sy, cols_t c, int64_t e,
                                    const float *X, int64_t ldx, float *y, int64_t kk) {
    const int nv = (int)((kk + 7) / 8), kind = mm_kind(c);
    const __m256i ml = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(kk - 8 * (nv - 1))),
                                          _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
#define MM_NV(K)                                                                               \
    switch (nv) {                                                                              \
    case 8: mmrow_avx2_k(lut, sy, c, e, X, ldx, y, K, 8, ml); break;                           \
    case 7: mmrow_avx2_k(lut, sy, c, e, X, ldx, y, K, 7, ml); break;                           \
    case 6: mmrow_avx2_k(lut, sy, c, e, X, ldx, y, K, 6, ml); break;                           \
    case 5: mmrow_avx2_k(lut, sy, c, e, X, ldx, y, K, 5, ml); break;                           \
    case 4: mmrow_avx2_k(lut, sy, c, e, X, ldx, y, K, 4, ml); break;                           \
    case 3: mmrow_avx2_k(lut, sy, c, e, X, ldx, y, K, 3, ml); break;                           \
    case 2: mmrow_avx2_k(lut, sy, c, e, X, ldx, y, K, 2, ml); break;                           \
    default: mmrow_avx2_k(lut, sy, c, e, X, ldx, y, K, 1, ml); break;                          \
    }
    switch (kind) {
    case 1: MM_NV(1) break;
    case 2: MM_NV(2) break;
    case 3: MM_NV(3) break;
    default: MM_NV(0) break;
    }
#undef MM_NV
}

/* AVX-512: 16 records per step; values from codebook registers (K <= 64) or a
 * gather, x gathered by column (or loaded, dense rows). */
typedef struct {
    __m512 l0, l1, l2, l3;
} lut512;

HUFF_AVX512_FN INLINE __m512 val16(const cnn_huff *W, const lut512 *L, __m512i s) {
    if (W->K <= 32) return _mm512_permutex2var_ps(L->l0, s, L->l1);
    if (W->K <= 64)
        return _mm512_mask_blend_ps(_mm512_test_epi32_mask(s, _mm512_set1_epi32(32)),
                                    _mm512_permutex2var_ps(L->l0, s, L->l1),
                                    _mm512_permutex2var_ps(L->l2, s, L->l3));
    return _mm512_i32gather_ps(s, W->lut, 4);
}

HUFF_AVX512_FN INLINE __m512 x16(cols_t c, int64_t t, __mmask16 k, const float *x) {
    if (c.c16) {
        __m512i i = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, c.c16 + t));
        return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), k, i, x, 4);
    }
    if (c.c32) {
        __m512i i = _mm512_maskz_loadu_epi32(k, c.c32 + t);
        return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), k, i, x, 4);
    }
    return _mm512_maskz_loadu_ps(k, x + t);
}

HUFF_AVX512_FN INLINE float dot_512(const cnn_huff *W, const lut512 *L, const uint8_t *sy, cols_t c,
                                    int64_t cnt, const float *x) {
    if (c.c16 || c.c32) return dot_c(W, sy, c, cnt, x);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    int64_t t = 0;
    for (; t + 32 <= cnt; t += 32) {
        __m512i s0 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(sy + t)));
        __m512i s1 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(sy + t + 16)));
        a0 = _mm512_fmadd_ps(val16(W, L, s0), x16(c, t, 0xFFFF, x), a0);
        a1 = _mm512_fmadd_ps(val16(W, L, s1), x16(c, t + 16, 0xFFFF, x), a1);
    }
    for (; t < cnt; t += 16) {
        __mmask16 k = cnt - t >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (cnt - t)) - 1u);
        __m512i s = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(k, sy + t));
        a0 = _mm512_fmadd_ps(_mm512_maskz_mov_ps(k, val16(W, L, s)), x16(c, t, k, x), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

/* AVX-512: nv <= 4 registers of 16 columns (ml masks the last), two entries in flight on
 * two sets of accumulators, the X rows of entries PF ahead prefetched (from L2). */
HUFF_AVX512_FN INLINE void mmrow_512_k(const float *lut, const uint8_t *sy, cols_t c, int64_t e,
                                       const float *X, int64_t ldx, float *y, const int kind,
                                       const int nv, __mmask16 ml) {
    __m512 a[4], b[4];
#define MM_M(q) ((q) == nv - 1 ? ml : (__mmask16)0xFFFF)
    for (int q = 0; q < 4; q++) a[q] = b[q] = _mm512_setzero_ps();
    int64_t t = 0;
    for (; t + 2 <= e; t += 2) {
        const float *p0 = X + MM_COL(kind, c, t) * ldx, *p1 = X + MM_COL(kind, c, t + 1) * ldx;
        const __m512 v0 = _mm512_set1_ps(lut[MM_SYM(kind, c, sy, t)]),
                     v1 = _mm512_set1_ps(lut[MM_SYM(kind, c, sy, t + 1)]);
        for (int q = 0; q < nv; q++) {
            a[q] = _mm512_fmadd_ps(v0, _mm512_maskz_loadu_ps(MM_M(q), p0 + 16 * q), a[q]);
            b[q] = _mm512_fmadd_ps(v1, _mm512_maskz_loadu_ps(MM_M(q), p1 + 16 * q), b[q]);
        }
    }
    if (t < e) {
        const float *p0 = X + MM_COL(kind, c, t) * ldx;
        const __m512 v0 = _mm512_set1_ps(lut[MM_SYM(kind, c, sy, t)]);
        for (int q = 0; q < nv; q++)
            a[q] = _mm512_fmadd_ps(v0, _mm512_maskz_loadu_ps(MM_M(q), p0 + 16 * q), a[q]);
    }
    for (int q = 0; q < nv; q++) _mm512_mask_storeu_ps(y + 16 * q, MM_M(q), _mm512_add_ps(a[q], b[q]));
#undef MM_M
}

HUFF_AVX512_FN INLINE void mmrow_512(const float *lut, const uint8_t *sy, cols_t c, int64_t e,
                                     const float *X, int64_t ldx, float *y, int64_t kk) {
    const int nv = (int)((kk + 15) / 16), kind = mm_kind(c);
    const int64_t left = kk - 16 * (nv - 1);
    const __mmask16 ml = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
#define MM_NV(K)                                                                               \
    switch (nv) {                                                                              \
    case 4: mmrow_512_k(lut, sy, c, e, X, ldx, y, K, 4, ml); break;                            \
    case 3: mmrow_512_k(lut, sy, c, e, X, ldx, y, K, 3, ml); break;                            \
    case 2: mmrow_512_k(lut, sy, c, e, X, ldx, y, K, 2, ml); break;                            \
    default: mmrow_512_k(lut, sy, c, e, X, ldx, y, K, 1, ml); break;                           \
    }
    switch (kind) {
    case 1: MM_NV(1) break;
    case 2: MM_NV(2) break;
    case 3: MM_NV(3) break;
    default: MM_NV(0) break;
    }
#undef MM_NV
}
#endif /* CNN_X86 */

/* ---- fused zero-run matvec (ham, batch 1) ------------------------------------------------
 * No records: each step skips a zero run with one count of leading zeros, looks the
 * non-zero code after it up in the fused table (value, length, x-origin step) and
 * multiplies at once. The column never needs counting: a zero entry takes exactly one
 * bit and one column, so column = bit position of the code - D, where D (the row's
 * start bit plus the code lengths so far minus one each) changes only at non-zero
 * codes; the row's x origin xb = x - 4 D (bytes, as an integer) moves by adj = 4 - 4 len.
 * ZF_NS rows are decoded in one loop (independent chains); the loop runs unchecked for
 * as many rounds as the row with the fewest bits left can surely take (a step uses at
 * most ZSKIP + max(ZT + 1, lmax) bits and must start ZSKIP + ZT + 1 bits before its
 * row's end, so a pair of codes stays inside the row), then the rows' last bits are
 * walked with checks, still ZF_NS rows interleaved. The variants without the escape
 * test run only on complete codes of <= ZT + 1 bits (no lookup can fail to advance). */
#define ZT CNN_HUFF_ZT
#define ZSKIP (57 - ZT - 1) /* longest run a step skips: a code of <= ZT + 1 bits still fits */
#define ZF_NS 8
typedef cnn_huff_zent zent;

/* Length and symbol of the canonical code at the top of the 32-bit pk, decoded from
 * its first `avail` bits only; 0 when it is longer (or symbol 0, or unused). */
static int code_at(const cnn_huff *W, uint64_t pk, int avail, int64_t *sym) {
    int ln = 1;
    while (ln <= W->lmax && pk >= W->limit[ln]) ln++;
    if (ln > avail || ln > W->lmax) return 0;
    *sym = (int64_t)(pk >> (32 - ln)) - W->base[ln];
    return *sym > 0 && *sym < W->K ? ln : 0;
}

void cnn_huff_ztable(const cnn_huff *W, zent *zt) {
    memset(zt, 0, sizeof(zent) << (ZT + 1));
    for (uint32_t i = 1u << ZT; i < 2u << ZT; i++) {
        int64_t s1, s2;
        const int l1 = code_at(W, (uint64_t)i << (32 - (ZT + 1)), ZT + 1, &s1);
        if (!l1) continue; /* longer code: the search decodes it */
        zent e = {.val = W->lut[s1], .len = (uint8_t)l1, .len1 = (uint8_t)l1,
                  .adj = (int8_t)(4 - 4 * l1), .adj1 = (int8_t)(4 - 4 * l1)};
        const int r = ZT + 1 - l1;                 /* bits after code 1 */
        const uint32_t rem = i & ((1u << r) - 1u); /* a zero run, then code 2? */
        if (rem) {
            const int rb = 32 - __builtin_clz(rem), z2 = r - rb; /* rb bits from code 2's 1 */
            const int l2 = code_at(W, (uint64_t)rem << (32 - rb), rb, &s2);
            if (l2) {
                e.val2 = W->lut[s2], e.two = 1, e.off2 = (uint8_t)(4 * (1 + z2));
                e.len = (uint8_t)(l1 + z2 + l2), e.adj = (int8_t)(8 - 4 * (l1 + l2));
            }
        }
        zt[i] = e;
    }
}

INLINE float xat(uintptr_t xb, int64_t q) { return *(const float *)(xb + 4 * (uintptr_t)q); }

/* A code longer than the fused table at bit q: the canonical search. */
INLINE void zesc(const cnn_huff *W, int64_t q, int64_t *p, uintptr_t *xb, float *acc) {
    int64_t p2 = q;
    const uint32_t s = slow1(W, &p2);
    *acc += W->lut[s] * xat(*xb, q);
    *xb += (uintptr_t)(4 - 4 * (p2 - q));
    *p = p2;
}

int64_t cnn_huff_verify_zrun(const cnn_huff *W, int64_t *nnz) {
    const zent *zt = W->ztab;
    *nnz = 0;
    for (int64_t r = 0; r < W->m; r++) {
        int64_t p = W->row_bits[r], end = W->row_bits[r + 1], j = 0;
        for (;;) {
            const uint64_t w = peek(W->bytes, p);
            const int64_t z = lz64(w);
            if (z > ZSKIP && p + ZSKIP < end) {
                p += ZSKIP, j += ZSKIP;
                continue;
            }
            if (z > ZSKIP || p + z >= end) {
                j += end - p; /* trailing zeros */
                break;
            }
            const int64_t q = p + z;
            j += z;
            if (j >= W->n) return r;
            const zent *e = zt + ((w << z) >> (63 - ZT));
            int64_t p2 = q;
            if (e->len1) p2 += e->len1;
            else slow1(W, &p2);
            p = p2, j += 1, *nnz += 1;
            if (p > end) return r;
        }
        if (j != W->n) return r;
    }
    return -1;
}

#define ZF_STEP(S, LZF, ESC, PAIR)                                                               \
    do {                                                                                       \
        const uint64_t w = peek(bytes, p##S);                                                  \
        const int64_t z = LZF(w);                                                              \
        if (__builtin_expect(z > ZSKIP, 0)) {                                                  \
            p##S += ZSKIP;                                                                     \
            break;                                                                             \
        }                                                                                      \
        const int64_t q = p##S + z;                                                            \
        const zent *e = zt + ((w << z) >> (63 - ZT));                                          \
        if (ESC && __builtin_expect(!e->len1, 0)) {                                            \
            zesc(W, q, &p##S, &xb##S, &a##S);                                                  \
            break;                                                                             \
        }                                                                                      \
        const uintptr_t xa = xb##S + 4 * (uintptr_t)q;                                         \
        if (PAIR) { /* no second code: val2 = 0 times x of code 1 (off2 = 0), no branch */     \
            a##S += e->val * *(const float *)xa + e->val2 * *(const float *)(xa + e->off2);    \
            p##S = q + e->len;                                                                 \
            xb##S += (uintptr_t)(intptr_t)e->adj;                                              \
        } else {                                                                               \
            a##S += e->val * *(const float *)xa;                                               \
            p##S = q + e->len1;                                                                \
            xb##S += (uintptr_t)(intptr_t)e->adj1;                                             \
        }                                                                                      \
    } while (0)

#define ZF_MIN(a, b) ((a) < (b) ? (a) : (b))

#define ZF_REP(F) F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7)
#define ZF_DECL(S)                                                                             \
    const int64_t rr##S = r + S < r1 ? r + S : r1 - 1; /* a short last block repeats a row */   \
    int64_t p##S = rb[rr##S];                                                                 \
    const int64_t e##S = rb[rr##S + 1];                                                       \
    uintptr_t xb##S = (uintptr_t)x - 4 * (uintptr_t)p##S;                                      \
    float a##S = 0.f;
#define ZF_LEFT(S) left = ZF_MIN(left, e##S - p##S);
/* One checked step of a row's last bits (the rows' tails interleaved too). */
#define ZF_TAIL(S, LZF)                                                                        \
    if (p##S < e##S) {                                                                         \
        const uint64_t w = peek(bytes, p##S);                                                  \
        const int64_t z = LZF(w);                                                              \
        const int64_t q = p##S + z;                                                            \
        more = 1;                                                                              \
        if (z > ZSKIP) {                                                                       \
            p##S += ZSKIP;                                                                     \
        } else if (q >= e##S) {                                                                \
            p##S = e##S; /* the row ends in zeros */                                           \
        } else {                                                                               \
            const zent *e = zt + ((w << z) >> (63 - ZT));                                      \
            if (!e->len1) {                                                                    \
                zesc(W, q, &p##S, &xb##S, &a##S);                                              \
            } else {                                                                           \
                a##S += e->val * xat(xb##S, q);                                                \
                p##S = q + e->len1;                                                            \
                xb##S += (uintptr_t)(intptr_t)e->adj1;                                         \
            }                                                                                  \
        }                                                                                      \
    }
#define ZF_TAIL_C(S) ZF_TAIL(S, lz64)
#define ZF_TAIL_X(S) ZF_TAIL(S, lzx)
#define ZF_TAIL_XN(S) ZF_TAIL(S, lzx)
#define ZF_TAIL_XP(S) ZF_TAIL(S, lzx)
#define ZF_OUT(S)                                                                              \
    if (r + S < r1) y[r + S] = a##S + (bias ? bias[r + S] : 0.f);

#define ZFUSED_LEVEL(SUF, ATTR, V)                                                           \
    ATTR static void zfused_##SUF(const cnn_huff *W, const float *x, float *y,                 \
                                  const float *bias, int64_t r0, int64_t r1) {                 \
        const zent *zt = W->ztab;                                                              \
        const uint8_t *bytes = W->bytes;                                                       \
        const int64_t *rb = W->row_bits;                                                       \
        const int64_t M = ZSKIP + (W->lmax > ZT + 1 ? W->lmax : ZT + 1);                       \
        int64_t r = r0;                                                                        \
        for (; r < r1; r += ZF_NS) {                                                           \
            ZF_REP(ZF_DECL)                                                                    \
            for (;;) {                                                                         \
                int64_t left = INT64_MAX;                                                      \
                ZF_REP(ZF_LEFT)                                                                \
                left -= ZSKIP + ZT + 1; /* a pair of codes stays inside the row */            \
                if (left < 0) break;                                                           \
                for (int64_t k = left / M + 1; k > 0; k--) {                                   \
                    ZF_REP(ZF_DO_##V)                                                        \
                }                                                                              \
            }                                                                                  \
            for (int more = 1; more;) {                                                        \
                more = 0;                                                                      \
                ZF_REP(ZF_TAIL_##V)                                                            \
            }                                                                                  \
            ZF_REP(ZF_OUT)                                                                     \
        }                                                                                      \
    }

#define ZF_DO_C(S) ZF_STEP(S, lz64, 1, 0);
#define ZF_DO_X(S) ZF_STEP(S, lzx, 1, 0);
#define ZF_DO_XN(S) ZF_STEP(S, lzx, 0, 0); /* no code is longer than the fused table */
#define ZF_DO_XP(S) ZF_STEP(S, lzx, 0, 1); /* and up to two codes per lookup */
#if CNN_X86
HUFF_AVX2_FN INLINE int64_t lzx(uint64_t w) { return (int64_t)_lzcnt_u64(w); }
#endif

ZFUSED_LEVEL(c, , C)
#if CNN_X86
ZFUSED_LEVEL(x86, HUFF_AVX2_FN, X)
ZFUSED_LEVEL(x86n, HUFF_AVX2_FN, XN)
ZFUSED_LEVEL(x86p, HUFF_AVX2_FN, XP)
#endif

/* y = W @ x (+ bias), zero-run mode: rows split over the threads in ZF_NS blocks. */
static int zfused(const cnn_huff *W, const float *x, float *y, const float *bias) {
    const int level = cnn_get_level();
    (void)level;
    const int64_t blocks = (W->m + ZF_NS - 1) / ZF_NS;
    const int nt0 = cnn_threads_for(W->m * W->n / 8);
    const int nt = nt0 < blocks ? nt0 : (int)(blocks > 0 ? blocks : 1);
    CNN_PARALLEL({
        const int t = cnn_tid(), TT = cnn_nthreads();
        const int64_t a = blocks * t / TT * ZF_NS, b0 = blocks * (t + 1) / TT * ZF_NS;
        const int64_t b = b0 < W->m ? b0 : W->m;
#if CNN_X86
        const int noesc = W->lmax <= ZT + 1 && W->complete;
        if (level != CNN_PORTABLE && noesc && W->zpair) zfused_x86p(W, x, y, bias, a, b);
        else if (level != CNN_PORTABLE && noesc) zfused_x86n(W, x, y, bias, a, b);
        else if (level != CNN_PORTABLE) zfused_x86(W, x, y, bias, a, b);
        else
#endif
            zfused_c(W, x, y, bias, a, b);
    });
    return 0;
}

/* ---- fused sparse matvec (sham, batch 1) -----------------------------------------------
 * PF_NS rows in one loop, no symbol buffer: each lookup of the plain table gives up to
 * two values, multiplied at once with x at the row's next stored columns (the second
 * with v1 = 0 when the lookup gave one symbol: the column read is the next stored one,
 * inside the row while the loop runs). Unchecked rounds while every row has two codes
 * left per round; then one checked code per step. */
typedef cnn_huff_pent pent;
/* Rows in one loop: 6, not 8 (8 rows' stream positions, column pointers and sums do
 * not fit the 16 registers: each step's position was a stack load and store on its
 * row's dependency chain; 6 rows ran 4096 x 4096 at 90% 10-15% faster, measured in
 * alternating processes on a loaded machine, 4 rows no better than 8). */
#define PF_NS 6

void cnn_huff_ptable(const cnn_huff *W, pent *pt) {
    for (uint32_t i = 0; i < (1u << T); i++) {
        const entry *e = W->table + i;
        pt[i] = (pent){.v0 = e->n ? W->lut[e->s0] : 0.f, .v1 = e->n == 2 ? W->lut[e->s1] : 0.f,
                       .n = e->n, .bits = e->bits, .len0 = e->len0};
    }
}

#define PF_REP(F) F(0) F(1) F(2) F(3) F(4) F(5)
#define PF_DECL(S)                                                                             \
    const int64_t rr##S = r + S < r1 ? r + S : r1 - 1; /* a short last block repeats a row */   \
    int64_t p##S = W->row_bits[rr##S];                                                         \
    const ctype *c##S = cols + W->row_ptr[rr##S], *ce##S = cols + W->row_ptr[rr##S + 1];       \
    float a##S = 0.f;
#define PF_LEFT(S) left = ce##S - c##S < left ? ce##S - c##S : left;
#define PF_STEP(S, ESC)                                                                        \
    do {                                                                                       \
        const pent *e = pt + (peek(bytes, p##S) >> TSHIFT);                                    \
        if (ESC && __builtin_expect(!e->n, 0)) {                                               \
            const float v = W->lut[slow1(W, &p##S)];                                           \
            a##S += v * x[*c##S++];                                                            \
            break;                                                                             \
        }                                                                                      \
        a##S += e->v0 * x[c##S[0]] + e->v1 * x[c##S[1]];                                       \
        c##S += e->n;                                                                          \
        p##S += e->bits;                                                                       \
    } while (0)
#define PF_TAIL(S)                                                                             \
    if (c##S < ce##S) {                                                                        \
        const pent *e = pt + (peek(bytes, p##S) >> TSHIFT);                                    \
        float v;                                                                               \
        if (!e->n) v = W->lut[slow1(W, &p##S)];                                                \
        else v = e->v0, p##S += e->len0;                                                       \
        a##S += v * x[*c##S++];                                                                \
        more = 1;                                                                              \
    }
#define PF_OUT(S)                                                                              \
    if (r + S < r1) y[r + S] = a##S + (bias ? bias[r + S] : 0.f);
#define PF_DO_E(S) PF_STEP(S, 1);
#define PF_DO_N(S) PF_STEP(S, 0);

#define PFUSED(SUF, ATTR, CT, V)                                                               \
    ATTR static void pfused_##SUF(const cnn_huff *W, const float *x, float *y,                 \
                                  const float *bias, int64_t r0, int64_t r1) {                 \
        const pent *pt = W->ptab;                                                              \
        const uint8_t *bytes = W->bytes;                                                       \
        typedef CT ctype;                                                                      \
        const ctype *cols = (const ctype *)W->cols;                                            \
        for (int64_t r = r0; r < r1; r += PF_NS) {                                             \
            PF_REP(PF_DECL)                                                                    \
            for (;;) {                                                                         \
                int64_t left = INT64_MAX;                                                      \
                PF_REP(PF_LEFT)                                                                \
                if (left < 2) break;                                                           \
                for (int64_t k = left / 2; k > 0; k--) {                                       \
                    PF_REP(PF_DO_##V)                                                          \
                }                                                                              \
            }                                                                                  \
            for (int more = 1; more;) {                                                        \
                more = 0;                                                                      \
                PF_REP(PF_TAIL)                                                                \
            }                                                                                  \
            PF_REP(PF_OUT)                                                                     \
        }                                                                                      \
    }

PFUSED(c16, , uint16_t, E)
PFUSED(c32, , uint32_t, E)
#if CNN_X86
PFUSED(x16, HUFF_AVX2_FN, uint16_t, E)
PFUSED(x32, HUFF_AVX2_FN, uint32_t, E)
PFUSED(x16n, HUFF_AVX2_FN, uint16_t, N)
PFUSED(x32n, HUFF_AVX2_FN, uint32_t, N)
#endif

/* y = W @ x (+ bias), sham: rows split over the threads in PF_NS blocks. */
static int pfused(const cnn_huff *W, const float *x, float *y, const float *bias) {
    const int level = cnn_get_level();
    (void)level;
    const int64_t blocks = (W->m + PF_NS - 1) / PF_NS;
    const int nt0 = cnn_threads_for(W->row_ptr[W->m]);
    const int nt = nt0 < blocks ? nt0 : (int)(blocks > 0 ? blocks : 1);
    const int c16 = W->colw == 2, esc = W->lmax > T || !W->complete;
    (void)esc; /* the portable kernels handle escapes themselves */
    CNN_PARALLEL({
        const int t = cnn_tid(), TT = cnn_nthreads();
        const int64_t a = blocks * t / TT * PF_NS, b0 = blocks * (t + 1) / TT * PF_NS;
        const int64_t b = b0 < W->m ? b0 : W->m;
#if CNN_X86
        if (level != CNN_PORTABLE) {
            if (c16) esc ? pfused_x16(W, x, y, bias, a, b) : pfused_x16n(W, x, y, bias, a, b);
            else esc ? pfused_x32(W, x, y, bias, a, b) : pfused_x32n(W, x, y, bias, a, b);
        } else
#endif
        if (c16) pfused_c16(W, x, y, bias, a, b);
        else pfused_c32(W, x, y, bias, a, b);
    });
    return 0;
}

/* ---- per-thread work ------------------------------------------------------------------ */

/* W @ X with k columns: GROUP * BLK rows decoded at a time, then each row's entries
 * multiplied CK columns of X at a time (mmrow), each entry's value broadcast against its
 * row of X in up to four (AVX2: eight) registers. Measured on 4096 x 4096 at 90% pruning,
 * b = 64: 64-column chunks beat 32 (each entry decoded once and read once: sham 4.7 vs
 * 5.6 ms), and so did whole rows against column panels of X kept in L1 (panels of 128
 * rows: 6.5 ms; the accumulators' loads and stores and the loop exits per row and panel
 * cost more than X's reads from L2). */
#define GROUP 8 /* tiles: two slices */
#define RB (GROUP * BLK)
#define CK 64
#ifndef NOMUL
#define NOMUL 0
#endif

typedef struct {
    uint8_t *sy[RB];
    uint32_t *co[RB];
    float *yb; /* RB x CK accumulators, 64-byte aligned */
} scratch_t;

/* Record slots per row: at most n entries (ham) or the longest sham row, plus slack
 * for the two-symbol stores and the SIMD loads. */
static int64_t row_slots(const cnn_huff *W) { return (W->row_ptr ? W->maxrow : W->n) + 64; }

static void *scratch_new(const cnn_huff *W, scratch_t *s) {
    const int64_t slots = row_slots(W);
    const size_t syb = (size_t)(slots + 63) / 64 * 64,
                 cob = W->zrun || W->tiles ? (size_t)slots * 4 : 0;
    const int rows = RB;
    const size_t yoff = (rows * (syb + cob) + 63) / 64 * 64;
    uint8_t *mem = cnn_alloc(yoff + RB * CK * sizeof(float));
    if (!mem) return NULL;
    s->yb = (float *)(mem + yoff);
    for (int b = 0; b < rows; b++) {
        s->sy[b] = mem + b * syb;
        s->co[b] = cob ? (uint32_t *)(mem + rows * syb + b * cob) : NULL;
    }
    return mem;
}

/* The three kernels of one level, over row blocks jb0 .. jb1 (in units of BLK rows). */
#define HUFF_LEVEL(SUF, ATTR, DOT, MM, TILED, SETUP)                                                   \
    ATTR NOVEC static void rows_##SUF(const cnn_huff *W, const float *X, int64_t ldx, int64_t B,       \
                                float *Y, int64_t ldy, const float *bias, int64_t b0, int64_t b1, \
                                scratch_t *S) {                                                   \
        SETUP;                                                                                    \
        int64_t cnt[BLK];                                                                         \
        for (int64_t b = b0; b < b1; b++) {                                                       \
            const int64_t r0 = b * BLK;                                                           \
            const int nr = W->m - r0 < BLK ? (int)(W->m - r0) : BLK;                              \
            dec_block(W, r0, nr, cnt, S->co, S->sy);                                              \
            for (int s = 0; s < nr; s++) {                                                        \
                cols_t c = row_cols(W, r0 + s, S->co[s]);                                         \
                for (int64_t i = 0; i < B; i++)                                                   \
                    Y[i * ldy + r0 + s] = DOT + (bias ? bias[r0 + s] : 0.f);                      \
            }                                                                                     \
        }                                                                                         \
    }                                                                                             \
    ATTR static void cols_##SUF(const cnn_huff *W, const float *X, int64_t ldx, int64_t k,        \
                                float *Y, int64_t ldy, int yt, const float *bias, int64_t b0,     \
                                int64_t b1, scratch_t *S) {                                       \
        int64_t cnt[RB];                                                                          \
        for (int64_t g0 = b0; g0 < b1; g0 += GROUP) {                                             \
            const int64_t r0 = g0 * BLK, ng = b1 - g0 < GROUP ? b1 - g0 : GROUP;                  \
            int nr = 0;                                                                           \
            cols_t cs[RB];                                                                        \
            const float *lut = W->lut;                                                            \
            if (TILED) { /* a slice of the tiles: records, values in the tiles' lut */            \
                cnn_htile_records(W->tiles, r0 / 16, r0 + 16 < W->m ? 2 : 1, S->co, cnt);         \
                nr = W->m - r0 < RB ? (int)(W->m - r0) : RB;                                      \
                for (int s = 0; s < nr; s++) cs[s] = (cols_t){NULL, NULL, S->co[s]};              \
                lut = W->tiles->lut;                                                              \
            } else {                                                                              \
                for (int64_t g = 0; g < ng; g++) {                                                \
                    const int64_t rb = r0 + g * BLK;                                              \
                    const int nb = W->m - rb < BLK ? (int)(W->m - rb) : BLK;                      \
                    dec_block(W, rb, nb, cnt + g * BLK, S->co + g * BLK, S->sy + g * BLK);        \
                    nr += nb;                                                                     \
                }                                                                                 \
                for (int s = 0; s < nr; s++) cs[s] = row_cols(W, r0 + s, S->co[s]);               \
            }                                                                                     \
            for (int64_t q0 = 0; q0 < k; q0 += CK) {                                              \
                const int64_t kk = k - q0 < CK ? k - q0 : CK;                                     \
                for (int s = 0; s < (NOMUL ? 0 : nr); s++)                                       \
                    MM(lut, S->sy[s], cs[s], cnt[s], X + q0, ldx,                                 \
                       yt ? S->yb + s * CK : Y + (r0 + s) * ldy + q0, kk);                        \
                if (yt) /* the group's block of Y, transposed, with the bias */                   \
                    for (int64_t q = 0; q < kk; q++)                                              \
                        for (int s = 0; s < nr; s++)                                              \
                            Y[(q0 + q) * ldy + r0 + s] =                                          \
                                S->yb[s * CK + q] + (bias ? bias[r0 + s] : 0.f);                  \
            }                                                                                     \
        }                                                                                         \
    }                                                                                             \
    ATTR static void dense_##SUF(const cnn_huff *W, float *dst, int64_t ldd, int64_t r0,          \
                                 int64_t r1, scratch_t *S, uint8_t *symout) {                     \
        int64_t cnt[BLK];                                                                         \
        for (int64_t rb = r0; rb < r1; rb += BLK) {                                               \
            const int nr = r1 - rb < BLK ? (int)(r1 - rb) : BLK;                                  \
            dec_block(W, rb, nr, cnt, S->co, S->sy);                                              \
            for (int s = 0; s < nr; s++) {                                                        \
                cols_t c = row_cols(W, rb + s, S->co[s]);                                         \
                if (symout) { /* symbols of the row, zero entries included */                     \
                    int64_t k0 = W->row_ptr ? W->row_ptr[rb + s] - W->row_ptr[r0]                 \
                                            : (rb + s - r0) * W->n;                               \
                    uint8_t *o = symout + k0;                                                     \
                    if (W->zrun) {                                                                \
                        memset(o, 0, (size_t)W->n);                                               \
                        for (int64_t t = 0; t < cnt[s]; t++) o[c.c32[t]] = S->sy[s][t];           \
                    } else {                                                                      \
                        memcpy(o, S->sy[s], (size_t)cnt[s]);                                      \
                    }                                                                             \
                    continue;                                                                     \
                }                                                                                 \
                float *d = dst + (rb + s - r0) * ldd;                                             \
                if (W->row_ptr || W->zrun) {                                                      \
                    memset(d, 0, (size_t)W->n * 4);                                               \
                    for (int64_t t = 0; t < cnt[s]; t++) d[colat(c, t)] = W->lut[S->sy[s][t]];    \
                } else {                                                                          \
                    for (int64_t t = 0; t < cnt[s]; t++) d[t] = W->lut[S->sy[s][t]];              \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
    }

HUFF_LEVEL(c, , dot_c(W, S->sy[s], c, cnt[s], X + i * ldx), mmrow_c, 0, (void)0)
#if CNN_X86
HUFF_LEVEL(avx2, HUFF_AVX2_FN, dot_avx2(W, S->sy[s], c, cnt[s], X + i * ldx), mmrow_avx2, 0, (void)0)
HUFF_LEVEL(512, HUFF_AVX512_FN, dot_512(W, &L, S->sy[s], c, cnt[s], X + i * ldx), mmrow_512, W->tiles && W->zrun,
           lut512 L;
           L.l0 = _mm512_loadu_ps(W->lut); L.l1 = _mm512_loadu_ps(W->lut + 16);
           L.l2 = _mm512_loadu_ps(W->lut + 32); L.l3 = _mm512_loadu_ps(W->lut + 48))
#endif

/* ---- entry points ------------------------------------------------------------------------ */

/* Work of the rows before row r (r a multiple of BLK, or m), for splitting rows over
 * threads: the entries (sham), the tiles' steps (zero-run ham with tiles, which batched
 * products decode), the stream bits (zero-run ham: zeros cost a bit each, non-zeros their
 * code), or the rows (plain ham); plus the rows themselves. */
static int64_t work_before(const cnn_huff *W, int64_t r) {
    int64_t w;
    if (W->row_ptr) w = W->row_ptr[r];
    else if (W->zrun && W->tiles) w = W->tiles->slice_step[(r + 15) / 16] * 8;
    else if (W->zrun) w = (W->row_bits[r] - W->row_bits[0]) / 8;
    else w = r * W->n;
    return w + r;
}

/* Where thread t of nth's share of the `units` units of `unit` BLK-row blocks starts:
 * the first unit whose work reaches t / nth of the total. */
static int64_t split_units(const cnn_huff *W, int64_t units, int64_t unit, int t, int nth) {
    if (t <= 0) return 0;
    if (t >= nth) return units;
#define UROW(u) ((u) * unit * BLK < W->m ? (u) * unit * BLK : W->m)
    const int64_t total = work_before(W, W->m), want = total / nth * t + total % nth * t / nth;
    int64_t a = 0, b = units;
    while (a < b) {
        const int64_t mid = a + (b - a) / 2;
        if (work_before(W, UROW(mid)) < want) a = mid + 1;
        else b = mid;
    }
#undef UROW
    return a;
}

/* Split the row blocks over the threads in units of UNIT blocks, by work; each thread
 * gets its scratch and runs CALL on blocks b0 .. b1 - 1. */
#define HUFF_PARALLEL(WORK, UNIT, CALL)                                                         \
    const int64_t blocks = (W->m + BLK - 1) / BLK, units = (blocks + (UNIT) - 1) / (UNIT);      \
    const int nt0 = cnn_threads_for(WORK);                                                      \
    const int nt = nt0 < units ? nt0 : (int)(units > 0 ? units : 1);                            \
    int fail = 0;                                                                               \
    CNN_PARALLEL({                                                                              \
        const int t = cnn_tid(), TT = cnn_nthreads();                                           \
        int64_t b0 = split_units(W, units, UNIT, t, TT) * (UNIT),                               \
                b1 = split_units(W, units, UNIT, t + 1, TT) * (UNIT);                           \
        b1 = b1 < blocks ? b1 : blocks;                                                         \
        scratch_t S;                                                                            \
        void *mem = b0 < b1 ? scratch_new(W, &S) : NULL;                                        \
        if (b0 < b1 && !mem) {                                                                  \
            _Pragma("omp atomic write") fail = 1;                                               \
        } else if (b0 < b1) { CALL; }                                                           \
        cnn_free(mem);                                                                          \
    });                                                                                         \
    return fail ? -1 : 0;

#if CNN_X86
#define LEVEL_CALL(FN, ...)                                                                      \
    if (level == CNN_AVX512) FN##_512(__VA_ARGS__);                                              \
    else if (level == CNN_AVX2) FN##_avx2(__VA_ARGS__);                                          \
    else FN##_c(__VA_ARGS__)
#else
#define LEVEL_CALL(FN, ...) FN##_c(__VA_ARGS__)
#endif

static int64_t records(const cnn_huff *W) { return W->row_ptr ? W->row_ptr[W->m] : W->m * W->n; }

static int matmul_aligned(const cnn_huff *W, const float *X, int64_t ldx, int64_t k, float *Y,
                          int64_t ldy, int yt, const float *bias) {
    const int level = cnn_get_level();
    (void)level;
    HUFF_PARALLEL(k * records(W), GROUP, LEVEL_CALL(cols, W, X, ldx, k, Y, ldy, yt, bias, b0, b1, &S))
}

/* X rows padded to a multiple of 16 floats in a 64-byte aligned copy (transposed from
 * B x n when xt, in 64 x 64 blocks): split-line vector loads made W @ X 1.45x slower.
 * On the product's threads (a serial copy held 2 threads to 1.2x one on X @ W^T). */
static void copy_rows(const float *X, int64_t ldx, int64_t k, int xt, float *buf, int64_t ld,
                      int64_t j0, int64_t j1) {
    if (xt) /* buf[j, i] = X[i, j] for i < k inputs, j0 <= j < j1 */
        for (int64_t i0 = 0; i0 < k; i0 += 64)
            for (int64_t j = j0; j < j1; j++)
                for (int64_t i = i0; i < k && i < i0 + 64; i++) buf[j * ld + i] = X[i * ldx + j];
    else
        for (int64_t j = j0; j < j1; j++) memcpy(buf + j * ld, X + j * ldx, (size_t)k * 4);
}

#if CNN_X86
/* copy_rows(xt) at the AVX-512 level: 16 x 16 blocks transposed in registers (the scalar
 * copy took about a tenth of X @ W^T at 4096 x 4096, b = 64). buf rows are 64-byte
 * aligned (ld a multiple of 16); the padding floats past k are zeros. */
HUFF_AVX512_FN static void transpose_512(const float *X, int64_t ldx, int64_t k, float *buf,
                                         int64_t ld, int64_t j0, int64_t j1) {
    for (int64_t jb = j0; jb < j1; jb += 16) {
        const int64_t nj = j1 - jb < 16 ? j1 - jb : 16;
        const __mmask16 mj = nj == 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nj) - 1u);
        for (int64_t i0 = 0; i0 < k; i0 += 16) {
            __m512i r[16];
            for (int a = 0; a < 16; a++)
                r[a] = i0 + a < k ? _mm512_maskz_loadu_epi32(mj, X + (i0 + a) * ldx + jb)
                                  : _mm512_setzero_si512();
            cnn_transpose16(r);
            for (int64_t b = 0; b < nj; b++) _mm512_store_si512((void *)(buf + (jb + b) * ld + i0), r[b]);
        }
    }
}
#endif

static float *aligned_x(const float *X, int64_t ldx, int64_t rows, int64_t k, int xt,
                        int64_t *ld) {
    *ld = (k + 15) / 16 * 16;
    float *buf = cnn_alloc((size_t)(rows * *ld) * sizeof(float));
    if (!buf) return NULL;
    const int64_t blocks = (rows + 63) / 64, stride = *ld;
    const int nt0 = cnn_threads_for(rows * k), nt = nt0 < blocks ? nt0 : (int)(blocks ? blocks : 1);
    CNN_PARALLEL({
        const int t = cnn_tid(), nth = cnn_nthreads();
        const int64_t j0 = blocks * t / nth * 64, j1 = blocks * (t + 1) / nth * 64;
#if CNN_X86
        if (xt && cnn_get_level() == CNN_AVX512)
            transpose_512(X, ldx, k, buf, stride, j0, j1 < rows ? j1 : rows);
        else
#endif
            copy_rows(X, ldx, k, xt, buf, stride, j0, j1 < rows ? j1 : rows);
    });
    return buf;
}

int cnn_huff_matmul(const cnn_huff *W, const float *X, int64_t ldx, int64_t k, float *Y,
                    int64_t ldy) {
    if (((uintptr_t)X % 64 == 0 && ldx % 16 == 0) || k < 16)
        return matmul_aligned(W, X, ldx, k, Y, ldy, 0, NULL);
    int64_t ld;
    float *buf = aligned_x(X, ldx, W->n, k, 0, &ld);
    if (!buf) return -1;
    int rc = matmul_aligned(W, buf, ld, k, Y, ldy, 0, NULL);
    cnn_free(buf);
    return rc;
}

/* B == 1: decode and dot row by row. B > 1: the W @ X kernel on a transposed,
 * aligned copy of X (B * n floats), writing Y transposed. */
int cnn_huff_rows(const cnn_huff *W, const float *X, int64_t ldx, int64_t B, float *Y,
                  int64_t ldy, const float *bias) {
    if (B > 1) {
        int64_t ld;
        float *buf = aligned_x(X, ldx, W->n, B, 1, &ld);
        if (!buf) return -1;
        int rc = matmul_aligned(W, buf, ld, B, Y, ldy, 1, bias);
        cnn_free(buf);
        return rc;
    }
    if (W->zrun && W->ztab) return zfused(W, X, Y, bias);
    if (W->row_ptr && W->ptab && W->lmax > 0) return pfused(W, X, Y, bias);
    int level = cnn_get_level();
    /* sparse rows dot with scalar loads at every level; the AVX2 build of that loop
     * measured faster than the AVX-512 one (4096x4096 sham: 1.45 vs 1.8 ms) */
    if (level == CNN_AVX512 && (W->row_ptr || W->zrun)) level = CNN_AVX2;
    HUFF_PARALLEL(records(W), 1, LEVEL_CALL(rows, W, X, ldx, 1, Y, ldy, bias, b0, b1, &S))
}

/* decode_rows / decode_symbols: threads split the requested rows in BLK blocks. */
static int huff_dense(const cnn_huff *W, int64_t r0, int64_t nr, float *dst, int64_t ldd,
                      uint8_t *symout) {
    const int level = cnn_get_level();
    (void)level;
    const int64_t blocks = (nr + BLK - 1) / BLK;
    const int nt0 = cnn_threads_for(nr * W->n);
    const int nt = nt0 < blocks ? nt0 : (int)(blocks > 0 ? blocks : 1);
    int fail = 0;
    CNN_PARALLEL({
        const int t = cnn_tid(), TT = cnn_nthreads();
        int64_t a = r0 + blocks * t / TT * BLK, b = r0 + blocks * (t + 1) / TT * BLK;
        if (b > r0 + nr) b = r0 + nr;
        scratch_t S;
        void *mem = a < b ? scratch_new(W, &S) : NULL;
        if (a < b && !mem) {
            _Pragma("omp atomic write") fail = 1;
        } else if (a < b) {
            float *d = dst ? dst + (a - r0) * ldd : NULL;
            uint8_t *so = symout;
            if (so) so += W->row_ptr ? W->row_ptr[a] - W->row_ptr[r0] : (a - r0) * W->n;
            LEVEL_CALL(dense, W, d, ldd, a, b, &S, so);
        }
        cnn_free(mem);
    });
    return fail ? -1 : 0;
}

int cnn_huff_decode_rows(const cnn_huff *W, int64_t r0, int64_t nr, float *dst, int64_t ldd) {
    return huff_dense(W, r0, nr, dst, ldd, NULL);
}

int cnn_huff_decode_symbols(const cnn_huff *W, int64_t r0, int64_t nr, uint8_t *out) {
    return huff_dense(W, r0, nr, NULL, 0, out);
}

int cnn_huff_nonzeros(const cnn_huff *W, int64_t cap, int64_t *rowptr, uint32_t *cols,
                      uint8_t *syms) {
    if (!W->zrun) return -1;
    scratch_t S;
    void *mem = scratch_new(W, &S);
    if (!mem) return -1;
    int64_t cnt[BLK], o = 0;
    rowptr[0] = 0;
    for (int64_t r0 = 0; r0 < W->m; r0 += BLK) {
        const int nr = W->m - r0 < BLK ? (int)(W->m - r0) : BLK;
        dec_block(W, r0, nr, cnt, S.co, S.sy);
        for (int s = 0; s < nr; s++) {
            if (o + cnt[s] > cap) {
                cnn_free(mem);
                return -1;
            }
            for (int64_t t = 0; t < cnt[s]; t++)
                cols[o + t] = S.co[s][t], syms[o + t] = (uint8_t)(S.sy[s][t] - 1);
            o += cnt[s];
            rowptr[r0 + s + 1] = o;
        }
    }
    cnn_free(mem);
    return 0;
}
