/* Huffman tiles (cnn_kernels.h, "htile"): batch-1 products of ham (zero-run mode) and
 * sham matrices on AVX-512 CPUs with VBMI and CD, Huffman decoding in the product.
 *
 * Built at load from the decoded symbols of the stored stream (never stored): rows in
 * slices of 16 (one SIMD lane a row), columns in tiles of 32. A tile's 16 masks (one
 * uint32 a row, bit 31 - c for an entry in column c) say where its entries are; the
 * entries' values are coded again with a canonical code of at most 7 bits over the
 * (at most 32) non-zero values, so one byte permute (vpermt2b) over a 128-entry table
 * in two registers decodes 16 codes at once: symbol | length << 5.
 *
 * A step takes one entry from every row of its tile that still has one: the column is
 * the count of leading zeros of the row's mask (vplzcntd), x comes from the tile's 32
 * floats in two registers and the value from the 32 values in two more (vpermt2ps),
 * one masked FMA adds the 16 products. A slice runs its tiles in column order, as many
 * steps as the most entries a row has in a tile (an empty tile: one step); a step flag
 * (adv, a byte) loads the next tile with masked loads, so neither a branch nor the
 * masks decide when (a test of the masks put the load on their dependency chain: 12
 * against 6.5 ns a step). Three slices run in one loop (independent chains; four
 * spilled registers).
 *
 * The codes of a slice are one stream of 16-bit words shared by its 16 lanes, in the
 * order the lanes take them: a lane keeps up to 32 bits in its register, the next bit
 * lowest (LSB-first: the table index is the buffer's low byte), cnt of them valid; at
 * each step every lane with cnt < 14 takes the next word (vpexpandd: the lanes that
 * need one take consecutive words in lane order) above its valid bits, then the
 * step's codes (<= 7 bits) are shifted out. So a lane always has >= 7 bits for its
 * code, and the refill of a step does not wait for its lookup. A slice starts with two
 * words a lane (32 bits). */
#include "cnn_internal.h"

#include <string.h>

#define HT_ROWS 16
#define HT_COLS 32
#define HT_BITS 7   /* longest code: the table index */
#define HT_LOW 14   /* a lane with fewer valid bits takes a word */
#define HT_PADW 32  /* zero words after the stream: a step's 32-byte load stays inside */

/* ---- the code ---------------------------------------------------------------------- */

/* Lengths (<= HT_BITS; 0 for unused symbols and for a single used one) of a Huffman
 * code for counts cnt[0 .. K), K <= 32, limited by lengthening the rarest codes
 * shorter than the limit while the Kraft sum exceeds 1, then shortening the most
 * frequent codes while it stays <= 1. */
static void code_lengths(const int64_t *cnt, int K, uint8_t *len) {
    int leaf[32], nu = 0;
    memset(len, 0, (size_t)K);
    for (int s = 0; s < K; s++)
        if (cnt[s] > 0) leaf[nu++] = s;
    if (nu < 2) return;
    for (int a = 1; a < nu; a++) /* by decreasing count, then symbol (insertion sort) */
        for (int b = a; b > 0 && cnt[leaf[b]] > cnt[leaf[b - 1]]; b--) {
            int t = leaf[b];
            leaf[b] = leaf[b - 1], leaf[b - 1] = t;
        }
    int64_t w[64];
    int parent[64], alive[64], nodes = nu;
    for (int i = 0; i < nu; i++) w[i] = cnt[leaf[i]], alive[i] = 1;
    for (int it = 0; it < nu - 1; it++) { /* merge the two lightest nodes */
        int a = -1, b = -1;
        for (int i = 0; i < nodes; i++) {
            if (!alive[i]) continue;
            if (a < 0 || w[i] < w[a]) b = a, a = i;
            else if (b < 0 || w[i] < w[b]) b = i;
        }
        w[nodes] = w[a] + w[b], alive[nodes] = 1, alive[a] = alive[b] = 0;
        parent[a] = parent[b] = nodes++;
    }
    parent[nodes - 1] = -1;
    int l[32], kraft = 0;
    for (int i = 0; i < nu; i++) {
        int d = 0;
        for (int p = parent[i]; p >= 0; p = parent[p]) d++;
        l[i] = d < HT_BITS ? d : HT_BITS;
        kraft += (1 << HT_BITS) >> l[i];
    }
    while (kraft > 1 << HT_BITS) { /* K <= 32 < 2^7: ends */
        int j = nu - 1;
        while (l[j] >= HT_BITS) j--;
        l[j]++;
        kraft -= (1 << HT_BITS) >> l[j];
    }
    for (int j = 0; j < nu; j++)
        while (l[j] > 1 && kraft + ((1 << HT_BITS) >> l[j]) <= 1 << HT_BITS)
            kraft += (1 << HT_BITS) >> l[j], l[j]--;
    for (int i = 0; i < nu; i++) len[leaf[i]] = (uint8_t)l[i];
}

/* Canonical codes of the lengths (by length, then symbol), bit-reversed, and the
 * decoding table indexed by the next 7 bits, first bit lowest. */
static void code_table(const uint8_t *len, int K, int only, uint32_t *code, uint8_t *table) {
    int used = 0;
    for (int s = 0; s < K; s++) used += len[s] != 0;
    memset(table, 0, 1 << HT_BITS);
    memset(code, 0, (size_t)K * sizeof *code);
    if (!used) { /* one symbol `only` (or none): the zero-length code */
        memset(table, only, 1 << HT_BITS);
        return;
    }
    uint32_t c = 0;
    for (int l = 1; l <= HT_BITS; l++, c <<= 1)
        for (int s = 0; s < K; s++) {
            if (len[s] != l) continue;
            uint32_t r = 0; /* the code bit-reversed: streams are LSB-first */
            for (int b = 0; b < l; b++) r |= (c >> b & 1u) << (l - 1 - b);
            code[s] = r, c++;
            for (uint32_t hi = 0; hi < 1u << (HT_BITS - l); hi++) table[r | hi << l] = (uint8_t)(s | l << 5);
        }
}

/* ---- the layout -------------------------------------------------------------------- */

void cnn_htile_free(cnn_htile *H) {
    cnn_free((void *)H->masks);
    cnn_free((void *)H->words);
    cnn_free((void *)H->slice_word);
    cnn_free((void *)H->slice_step);
    cnn_free((void *)H->adv);
    memset(H, 0, sizeof *H);
}

/* Steps of the tile at masks tm: the most entries a row has in it, at least 1. */
static int tile_steps(const uint32_t *tm) {
    int most = 1;
    for (int i = 0; i < HT_ROWS; i++) {
        const int p = __builtin_popcount(tm[i]);
        most = p > most ? p : most;
    }
    return most;
}

/* Each row's codes as 16-bit words, first bit lowest (a lane takes its row's words in
 * order, whenever the schedule says): row r's at rw[rwp[r] .. rwp[r + 1]). */
static void row_words(int64_t m, const int64_t *rowptr, const uint8_t *syms, const uint8_t *len,
                      const uint32_t *code, const int64_t *rwp, uint16_t *rw) {
    for (int64_t r = 0; r < m; r++) {
        uint64_t q = 0;
        int qn = 0;
        uint16_t *o = rw + rwp[r];
        for (int64_t j = rowptr[r]; j < rowptr[r + 1]; j++) {
            q |= (uint64_t)code[syms[j]] << qn;
            qn += len[syms[j]];
            if (qn >= 16) *o++ = (uint16_t)q, q >>= 16, qn -= 16;
        }
        if (qn) *o = (uint16_t)q;
    }
}

/* Slice s's stream and its steps' flags: the kernel's walk with only the bit counts
 * (branch-free over the lanes). A lane's words past its row's are zero. Returns the
 * slice's words. */
static int64_t slice_stream(const cnn_htile *H, int64_t s, const int64_t *rowptr,
                            const uint8_t *syms, const uint8_t *len, const int64_t *rwp,
                            const uint16_t *rw, uint16_t *words, uint8_t *adv) {
    int64_t o = 0, t = 0, d[HT_ROWS], k[HT_ROWS], kend[HT_ROWS];
    int cnt[HT_ROWS];
    for (int i = 0; i < HT_ROWS; i++) {
        const int64_t r = s * HT_ROWS + i < H->m ? s * HT_ROWS + i : -1;
        d[i] = r >= 0 ? rowptr[r] : 0;
        k[i] = r >= 0 ? rwp[r] : 0, kend[i] = r >= 0 ? rwp[r + 1] : 0;
        cnt[i] = 32;
    }
#define TAKE(i) (words[o++] = k[i] < kend[i] ? rw[k[i]] : 0, k[i]++)
    for (int i = 0; i < HT_ROWS; i++) TAKE(i);
    for (int i = 0; i < HT_ROWS; i++) TAKE(i);
    const uint32_t *tm = H->masks + s * H->nblocks * HT_ROWS;
    for (int64_t b = 0; b < H->nblocks; b++, tm += HT_ROWS) {
        int pop[HT_ROWS];
        for (int i = 0; i < HT_ROWS; i++) pop[i] = __builtin_popcount(tm[i]);
        const int steps = tile_steps(tm);
        for (int j = 0; j < steps; j++, t++) {
            for (int i = 0; i < HT_ROWS; i++) { /* lanes low on bits take a word */
                const int need = cnt[i] < HT_LOW;
                words[o] = k[i] < kend[i] ? rw[k[i]] : 0;
                o += need, k[i] += need, cnt[i] += 16 * need;
            }
            for (int i = 0; i < HT_ROWS; i++) { /* then the step's codes */
                const int take = pop[i] > j;
                cnt[i] -= take ? len[syms[d[i]]] : 0;
                d[i] += take;
            }
            adv[t] = j == 0;
        }
    }
#undef TAKE
    return o;
}

int cnn_htile_build(cnn_htile *H, int64_t m, int64_t n, const int64_t *rowptr,
                    const uint32_t *cols, const uint8_t *syms, int K, const float *vals) {
    memset(H, 0, sizeof *H);
    if (K < 1 || K > 32 || m <= 0 || n <= 0) return 0;
    const int64_t ns = (m + HT_ROWS - 1) / HT_ROWS, nb = (n + HT_COLS - 1) / HT_COLS;
    const int64_t nnz = rowptr[m];
    int64_t cnt[32] = {0};
    uint8_t len[32];
    uint32_t code[32];
    int only = 0;
    for (int64_t j = 0; j < nnz; j++) cnt[syms[j]]++;
    for (int s = 0; s < K; s++) only = cnt[s] ? s : only;
    code_lengths(cnt, K, len);
    code_table(len, K, only, code, H->table);
    for (int s = 0; s < 32; s++) H->lut[s] = s < K ? vals[s] : 0.f;
    H->m = m, H->n = n, H->nslices = ns, H->nblocks = nb;
    uint32_t *masks = cnn_alloc((size_t)(ns * nb * HT_ROWS) * sizeof(uint32_t));
    int64_t *sw = cnn_alloc((size_t)(ns + 1) * sizeof(int64_t));
    int64_t *st = cnn_alloc((size_t)(ns + 1) * sizeof(int64_t));
    int64_t *rwp = cnn_alloc((size_t)(m + 1) * sizeof(int64_t));
    uint16_t *rw = NULL, *words = NULL;
    uint8_t *adv = NULL;
    H->masks = masks, H->slice_word = sw, H->slice_step = st;
    if (!masks || !sw || !st || !rwp) goto nomem;
    memset(masks, 0, (size_t)(ns * nb * HT_ROWS) * sizeof(uint32_t));
    rwp[0] = 0;
    for (int64_t r = 0; r < m; r++) {
        uint32_t *mr = masks + (r / HT_ROWS) * nb * HT_ROWS + r % HT_ROWS;
        int64_t bits = 0;
        for (int64_t j = rowptr[r]; j < rowptr[r + 1]; j++) {
            mr[(cols[j] / HT_COLS) * HT_ROWS] |= 0x80000000u >> (cols[j] % HT_COLS);
            bits += len[syms[j]];
        }
        rwp[r + 1] = rwp[r] + (bits + 15) / 16;
    }
    st[0] = 0;
    for (int64_t s = 0; s < ns; s++) {
        int64_t steps = 0;
        for (int64_t b = 0; b < nb; b++) steps += tile_steps(masks + (s * nb + b) * HT_ROWS);
        st[s + 1] = st[s] + steps;
    }
    /* a lane takes 2 words, then at most one per 16 bits of its codes, plus one */
    const int64_t bound = 3 * HT_ROWS * ns + rwp[m] + HT_PADW;
    rw = cnn_alloc((size_t)(rwp[m] ? rwp[m] : 1) * sizeof(uint16_t));
    words = cnn_alloc((size_t)bound * sizeof(uint16_t));
    adv = cnn_alloc((size_t)(st[ns] ? st[ns] : 1));
    H->words = words, H->adv = adv;
    if (!rw || !words || !adv) goto nomem;
    row_words(m, rowptr, syms, len, code, rwp, rw);
    sw[0] = 0;
    for (int64_t s = 0; s < ns; s++)
        sw[s + 1] = sw[s] + slice_stream(H, s, rowptr, syms, len, rwp, rw, words + sw[s], adv + st[s]);
    memset(words + sw[ns], 0, HT_PADW * sizeof(uint16_t));
    cnn_free(rwp);
    cnn_free(rw);
    return 0;
nomem:
    cnn_free(rwp);
    cnn_free(rw);
    cnn_htile_free(H);
    return -1;
}

int64_t cnn_htile_nbytes(const cnn_htile *H) {
    if (!H->masks) return 0;
    return (H->nslices * H->nblocks * HT_ROWS) * 4 + (H->slice_word[H->nslices] + HT_PADW) * 2 +
           (H->nslices + 1) * 16 + H->slice_step[H->nslices];
}

/* ---- the product ------------------------------------------------------------------- */

#if CNN_X86
#define HT_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512cd,avx512vbmi,bmi2,fma,popcnt")))

int cnn_htile_cpu(void) {
    __builtin_cpu_init();
    return cnn_cpu_level() == CNN_AVX512 && __builtin_cpu_supports("avx512vbmi") &&
           __builtin_cpu_supports("avx512cd");
}

/* One slice's stream (suffix S): its words, tile masks and step flags, and the 16
 * lanes' first bit buffers (what HT_INIT and HR_INIT share). */
#define HT_SLICE(S, SL)                                                                     \
    const uint16_t *wp##S = H->words + H->slice_word[SL];                                    \
    const uint32_t *tm##S = H->masks + (SL) * H->nblocks * HT_ROWS;                          \
    const uint8_t *adv##S = H->adv + H->slice_step[SL];                                      \
    const int64_t te##S = H->slice_step[(SL) + 1] - H->slice_step[SL];                       \
    __m512i buf##S = _mm512_or_si512(                                                        \
        _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)wp##S)),                    \
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(wp##S + 16))), 16)); \
    wp##S += 32;

/* One slice's lane state (suffix S): its stream (HT_SLICE), the 16 lanes' bit counts,
 * the tile's remaining masks and x, the row sums. */
#define HT_INIT(S, SL)                                                                      \
    HT_SLICE(S, SL)                                                                          \
    __m512i cnt##S = _mm512_set1_epi32(32), m##S = _mm512_setzero_si512();                   \
    __m512 acc##S = _mm512_setzero_ps(), xlo##S = acc##S, xhi##S = acc##S;                   \
    int64_t ti##S = -1;

/* Step t of a slice: a tile's first step loads it (no dependence on the masks), every
 * row with an entry left takes its first one (column: leading zeros of its mask), the
 * codes are decoded from the top 7 bits, and the lanes low on bits take a word. */
#define HT_STEP(S, t)                                                                       \
    do {                                                                                     \
        ti##S += adv##S[t];                                                                  \
        const __mmask16 ka = (__mmask16)-(int)adv##S[t];                                     \
        m##S = _mm512_mask_loadu_epi32(m##S, ka, tm##S + ti##S * HT_ROWS);                   \
        xlo##S = _mm512_mask_loadu_ps(xlo##S, ka, xp + ti##S * HT_COLS);                     \
        xhi##S = _mm512_mask_loadu_ps(xhi##S, ka, xp + ti##S * HT_COLS + 16);                \
        const __mmask16 kv = _mm512_test_epi32_mask(m##S, m##S);                             \
        const __m512i col = _mm512_lzcnt_epi32(m##S);                                        \
        m##S = _mm512_andnot_si512(_mm512_srlv_epi32(top, col), m##S);                       \
        const __m512 xv = _mm512_permutex2var_ps(xlo##S, col, xhi##S);                       \
        const __m512i e = _mm512_maskz_permutex2var_epi8(bytes0, tab0, buf##S, tab1);         \
        const __m512 v = _mm512_permutex2var_ps(lut0, e, lut1);                              \
        const __m512i ln = _mm512_maskz_srli_epi32(kv, e, 5);                                \
        acc##S = _mm512_mask3_fmadd_ps(xv, v, acc##S, kv);                                   \
        const __mmask16 need = _mm512_cmplt_epu32_mask(cnt##S, low);                                  \
        const __m512i w = _mm512_maskz_expand_epi32(                                               \
            need, _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)wp##S)));        \
        buf##S = _mm512_srlv_epi32(_mm512_or_si512(buf##S, _mm512_sllv_epi32(w, cnt##S)), ln); \
        cnt##S = _mm512_sub_epi32(_mm512_mask_add_epi32(cnt##S, need, cnt##S, sixteen), ln); \
        wp##S += __builtin_popcount(need);                                             \
    } while (0)

#define HT_OUT(S, SL)                                                                       \
    do {                                                                                     \
        const int64_t r0 = (SL) * HT_ROWS, nr = H->m - r0 < HT_ROWS ? H->m - r0 : HT_ROWS;   \
        const __mmask16 km = (__mmask16)(nr >= 16 ? 0xFFFFu : (1u << nr) - 1u);              \
        if (bias) acc##S = _mm512_add_ps(acc##S, _mm512_maskz_loadu_ps(km, bias + r0));      \
        _mm512_mask_storeu_ps(y + r0, km, acc##S);                                           \
    } while (0)

/* Slices s0 .. s1 - 1 of y = W x (+ bias); xp holds x padded to whole tiles. Two slices
 * run in one loop (independent chains) for the steps both have, then the longer one
 * alone. */
HT_FN static void htile_mv(const cnn_htile *H, const float *xp, float *y, const float *bias,
                           int64_t s0, int64_t s1) {
    const __m512i tab0 = _mm512_loadu_si512(H->table), tab1 = _mm512_loadu_si512(H->table + 64);
    const __m512 lut0 = _mm512_loadu_ps(H->lut), lut1 = _mm512_loadu_ps(H->lut + 16);
    const __m512i top = _mm512_set1_epi32((int)0x80000000u), sixteen = _mm512_set1_epi32(16);
    const __m512i low = _mm512_set1_epi32(HT_LOW);
    const __mmask64 bytes0 = 0x1111111111111111ull; /* byte 0 of each dword */
    int64_t s = s0;
    for (; s + 2 < s1; s += 3) {
        HT_INIT(0, s)
        HT_INIT(1, s + 1)
        HT_INIT(2, s + 2)
        int64_t all = te0 < te1 ? te0 : te1, t = 0;
        all = all < te2 ? all : te2;
        for (; t < all; t++) {
            HT_STEP(0, t);
            HT_STEP(1, t);
            HT_STEP(2, t);
        }
        for (int64_t u = t; u < te0; u++) HT_STEP(0, u);
        for (int64_t u = t; u < te1; u++) HT_STEP(1, u);
        for (int64_t u = t; u < te2; u++) HT_STEP(2, u);
        HT_OUT(0, s);
        HT_OUT(1, s + 1);
        HT_OUT(2, s + 2);
    }
    for (; s < s1; s++) {
        HT_INIT(0, s)
        for (int64_t t = 0; t < te0; t++) HT_STEP(0, t);
        HT_OUT(0, s);
    }
}

/* The steps held in ring (k <= 16 of them; the rest must be all ones) to the rows: lane
 * i's valid records appended at rec[i] + cnt[i] (a whole vector stored: 16 slots past
 * the row's entries). */
HT_FN static inline void ht_flush(const uint32_t *ring, uint32_t *const *rec, int64_t *cnt) {
    __m512i r[16];
    for (int j = 0; j < 16; j++) r[j] = _mm512_load_si512((const void *)(ring + 16 * j));
    cnn_transpose16(r);
    const __m512i none = _mm512_set1_epi32(-1);
    for (int i = 0; i < 16; i++) {
        const __mmask16 k = _mm512_cmpneq_epi32_mask(r[i], none);
        _mm512_storeu_si512((void *)(rec[i] + cnt[i]), _mm512_maskz_compress_epi32(k, r[i]));
        cnt[i] += __builtin_popcount(k);
    }
}

/* One slice's decoding state for cnn_htile_records (suffix S). */
#define HR_INIT(S, SL)                                                                      \
    uint32_t ring##S[16 * 16] __attribute__((aligned(64)));                                  \
    HT_SLICE(S, SL)                                                                          \
    __m512i bits##S = _mm512_set1_epi32(32), m##S = _mm512_setzero_si512();                  \
    int64_t ti##S = -1;                                                                      \
    for (int i = 0; i < 16; i++) cnt[16 * (S) + i] = 0;

/* Step t of a slice (HT_STEP without x): the step's records, all ones in lanes without
 * an entry, go to the ring; every 16 steps the ring goes to the rows. */
#define HR_STEP(S, t)                                                                       \
    do {                                                                                     \
        ti##S += adv##S[t];                                                                  \
        m##S = _mm512_mask_loadu_epi32(m##S, (__mmask16)-(int)adv##S[t], tm##S + ti##S * HT_ROWS); \
        const __mmask16 kv = _mm512_test_epi32_mask(m##S, m##S);                             \
        const __m512i col = _mm512_lzcnt_epi32(m##S);                                        \
        m##S = _mm512_andnot_si512(_mm512_srlv_epi32(top, col), m##S);                       \
        const __m512i e = _mm512_maskz_permutex2var_epi8(bytes0, tab0, buf##S, tab1);         \
        const __m512i ln = _mm512_maskz_srli_epi32(kv, e, 5);                                \
        const __m512i r = _mm512_or_si512(                                                   \
            _mm512_slli_epi32(_mm512_add_epi32(col, _mm512_set1_epi32((int)(ti##S * HT_COLS))), 8), \
            _mm512_and_si512(e, symmask));                                                   \
        _mm512_store_si512((void *)(ring##S + 16 * ((t) & 15)), _mm512_mask_mov_epi32(none, kv, r)); \
        const __mmask16 need = _mm512_cmplt_epu32_mask(bits##S, low);                        \
        const __m512i w = _mm512_maskz_expand_epi32(                                         \
            need, _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)wp##S)));        \
        buf##S = _mm512_srlv_epi32(_mm512_or_si512(buf##S, _mm512_sllv_epi32(w, bits##S)), ln); \
        bits##S = _mm512_sub_epi32(_mm512_mask_add_epi32(bits##S, need, bits##S, sixteen), ln); \
        wp##S += __builtin_popcount(need);                                                   \
        if (((t) & 15) == 15) ht_flush(ring##S, rec + 16 * (S), cnt + 16 * (S));             \
    } while (0)

#define HR_END(S)                                                                           \
    if (te##S & 15) {                                                                        \
        for (int64_t j = te##S & 15; j < 16; j++) _mm512_store_si512((void *)(ring##S + 16 * j), none); \
        ht_flush(ring##S, rec + 16 * (S), cnt + 16 * (S));                                   \
    }

/* Slices s .. s + ns - 1 (ns = 1 or 2) decoded row by row (batched products): rec[i][0 ..
 * cnt[i]) = column << 8 | symbol of row 16 s + i's entries in column order. The slices'
 * steps as in htile_mv without x, two slices in one loop (independent chains), their
 * records gathered 16 steps at a time and transposed to rows. */
HT_FN void cnn_htile_records(const cnn_htile *H, int64_t s, int ns, uint32_t *const *rec,
                             int64_t *cnt) {
    const __m512i tab0 = _mm512_loadu_si512(H->table), tab1 = _mm512_loadu_si512(H->table + 64);
    const __m512i top = _mm512_set1_epi32((int)0x80000000u), sixteen = _mm512_set1_epi32(16);
    const __m512i low = _mm512_set1_epi32(HT_LOW), none = _mm512_set1_epi32(-1);
    const __m512i symmask = _mm512_set1_epi32(31);
    const __mmask64 bytes0 = 0x1111111111111111ull;
    if (ns < 2) {
        HR_INIT(0, s)
        for (int64_t t = 0; t < te0; t++) HR_STEP(0, t);
        HR_END(0)
        return;
    }
    HR_INIT(0, s)
    HR_INIT(1, s + 1)
    const int64_t both = te0 < te1 ? te0 : te1;
    int64_t t = 0;
    for (; t < both; t++) {
        HR_STEP(0, t);
        HR_STEP(1, t);
    }
    for (int64_t u = t; u < te0; u++) HR_STEP(0, u);
    for (int64_t u = t; u < te1; u++) HR_STEP(1, u);
    HR_END(0)
    HR_END(1)
}

/* First slice of thread t of T: slices cut so each thread gets about the same steps. */
static int64_t htile_cut(const cnn_htile *H, int t, int T) {
    const int64_t want = H->slice_step[H->nslices] * t / T;
    int64_t a = 0, b = H->nslices;
    while (a < b) {
        const int64_t mid = a + (b - a) / 2;
        if (H->slice_step[mid] < want) a = mid + 1;
        else b = mid;
    }
    return a;
}

int cnn_htile_matvec(const cnn_htile *H, const float *x, float *y, const float *bias) {
    const int64_t xlen = H->nblocks * HT_COLS;
    float stack[4096], *xp = (float *)x, *heap = NULL;
    if (xlen != H->n) { /* the last tile reads past x: a zero-padded copy */
        xp = xlen <= 4096 ? stack : (heap = cnn_alloc((size_t)xlen * sizeof(float)));
        if (!xp) return -1;
        memcpy(xp, x, (size_t)H->n * sizeof(float));
        memset(xp + H->n, 0, (size_t)(xlen - H->n) * sizeof(float));
    }
    const int nt = cnn_threads_for(H->slice_step[H->nslices] * HT_ROWS);
    CNN_PARALLEL({
        const int T = cnn_nthreads(), t = cnn_tid();
        const int64_t s0 = htile_cut(H, t, T), s1 = t == T - 1 ? H->nslices : htile_cut(H, t + 1, T);
        if (s0 < s1) htile_mv(H, xp, y, bias, s0, s1);
    });
    cnn_free(heap);
    return 0;
}
#else
int cnn_htile_cpu(void) { return 0; }
void cnn_htile_records(const cnn_htile *H, int64_t s, int ns, uint32_t *const *rec,
                       int64_t *cnt) {}
int cnn_htile_matvec(const cnn_htile *H, const float *x, float *y, const float *bias) {
    return -1;
}
#endif
