/* Sparse-row kernels for one index type combination: sparse.c includes this once
 * per column type CT (CB bytes) and group pointer type PT, with SFX(name) naming
 * the instances; WITH_CSR is defined for one PT per CT (CSR has no group
 * pointers). Not a header of its own: no include guard on purpose.
 *
 * Shared by the layouts: the *_mm functions compute Y (rows r0..r1-1, columns
 * 0..b-1) = W @ X for X (n x b) row-major, the layout of W @ X; the rows layout
 * (X @ W^T) transposes X and Y around them (sparse.c). */

/* End of the chunk of rows from r (at most r1) whose entries the batched kernels
 * run through once per column block: about CHUNK_ENTRIES entries, so their
 * indices stay in L2 meanwhile. */
#ifdef WITH_CSR
static inline int64_t SFX(csr_chunk)(const cnn_csr *W, int64_t r, int64_t r1) {
    int64_t e = r + 1;
    while (e < r1 && W->rowptr[e] - W->rowptr[r] < CHUNK_ENTRIES) e++;
    return e;
}
#endif

static inline int64_t SFX(grp_chunk)(const cnn_grouped *W, int64_t r, int64_t r1) {
    const PT *gp = W->gptr;
    const int64_t start = (int64_t)gp[W->rowptr[r]];
    int64_t e = r + 1;
    while (e < r1 && (int64_t)gp[W->rowptr[e]] - start < CHUNK_ENTRIES) e++;
    return e;
}

/* ---- portable ---------------------------------------------------------------- */

#ifdef WITH_CSR
static void SFX(csr_mv_c)(const cnn_csr *W, const float *x, float *y, const float *bias,
                          int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
        float a[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
        const CT *col = (const CT *)W->cols + W->rowptr[r];
        const float *d = csr_row_data(W, r);
        int64_t j = 0, e = W->rowptr[r + 1] - W->rowptr[r];
        for (; j + 8 <= e; j += 8)
            for (int u = 0; u < 8; u++) a[u] += d[j + u] * x[col[j + u]];
        for (; j < e; j++) a[0] += d[j] * x[col[j]];
        y[r] = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])) +
               (bias ? bias[r] : 0.f);
    }
}

static void SFX(csr_mm_c)(const cnn_csr *W, const float *X, int64_t ldx, int64_t b, float *Y,
                          int64_t ldy, int64_t r0, int64_t r1) {
    float acc[BLK];
    for (int64_t r = r0; r < r1; r++) {
        const CT *col = (const CT *)W->cols + W->rowptr[r];
        const float *d = csr_row_data(W, r);
        const uint8_t *cd = W->codes ? W->codes + W->rowptr[r] : NULL;
        const int64_t e = W->rowptr[r + 1] - W->rowptr[r];
        for (int64_t c0 = 0; c0 < b; c0 += BLK) {
            const int64_t w = b - c0 < BLK ? b - c0 : BLK;
            for (int64_t c = 0; c < w; c++) acc[c] = 0.f;
            for (int64_t j = 0; j < e; j++) {
                const float v = cd ? W->lut[cd[j]] : d[j], *xr = X + (int64_t)col[j] * ldx + c0;
                for (int64_t c = 0; c < w; c++) acc[c] += v * xr[c];
            }
            memcpy(Y + r * ldy + c0, acc, (size_t)w * sizeof(float));
        }
    }
}
#endif

/* The groups of one row from its running sums T (the layout of grp_mv_c): each
 * group's input sum P(e) - P(s), times its value; two chains, the code lookup chosen
 * once per row. */
#define GRP_PREFIX(e) ((T[(e) + 3] + T[(e) + 2]) + (T[(e) + 1] + T[(e)]))
#define GRP_GROUPS(CODE)                                                           \
    for (; g + 2 <= g1; g += 2) {                                                  \
        const float P1 = GRP_PREFIX((int64_t)gp[g + 1] - j0);                      \
        const float P2 = GRP_PREFIX((int64_t)gp[g + 2] - j0);                      \
        a0 += W->shifted[CODE(g)] * (P1 - prev);                                   \
        a1 += W->shifted[CODE(g + 1)] * (P2 - P1);                                 \
        prev = P2;                                                                 \
    }                                                                              \
    if (g < g1) a0 += W->shifted[CODE(g)] * (GRP_PREFIX((int64_t)gp[g + 1] - j0) - prev);
static inline float SFX(grp_groups)(const cnn_grouped *W, const float *T, int64_t j0,
                                    int64_t g0, int64_t g1) {
    const PT *gp = W->gptr;
    float a0 = 0.f, a1 = 0.f, prev = 0.f;
    int64_t g = g0;
#define CODE_CER(g) ((g) - g0 + 1)
#define CODE_U8(g) (((const uint8_t *)W->gidx)[g])
#define CODE_U16(g) (((const uint16_t *)W->gidx)[g])
#define CODE_U32(g) (((const uint32_t *)W->gidx)[g])
    switch (W->idx_bytes) {
    case 0: GRP_GROUPS(CODE_CER) break;
    case 1: GRP_GROUPS(CODE_U8) break;
    case 2: GRP_GROUPS(CODE_U16) break;
    default: GRP_GROUPS(CODE_U32) break;
    }
#undef CODE_CER
#undef CODE_U8
#undef CODE_U16
#undef CODE_U32
    return a0 + a1;
}
#undef GRP_GROUPS
#undef GRP_PREFIX

/* Branch-free over group boundaries (kernels/cer.py's cer_matvec): four running
 * sums, entry p of the row going to sum p % 4, stored after each update in T
 * (T[p + 4]; T[0..3] = 0), so the inputs before row position e add up to
 * T[e] + T[e+1] + T[e+2] + T[e+3] and a group spanning s..e-1 to P(e) - P(s). */
static void SFX(grp_mv_c)(const cnn_grouped *W, const float *x, float *y, const float *bias,
                          float base, int64_t r0, int64_t r1, float *T) {
    const CT *col = W->cols;
    const PT *gp = W->gptr;
    T[0] = T[1] = T[2] = T[3] = 0.f;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t g0 = W->rowptr[r], g1 = W->rowptr[r + 1];
        const int64_t j0 = (int64_t)gp[g0], L = (int64_t)gp[g1] - j0;
        const CT *c = col + j0;
        float t0 = 0.f, t1 = 0.f, t2 = 0.f, t3 = 0.f;
        int64_t p = 0;
        for (; p + 4 <= L; p += 4) {
            T[p + 4] = t0 += x[c[p]];
            T[p + 5] = t1 += x[c[p + 1]];
            T[p + 6] = t2 += x[c[p + 2]];
            T[p + 7] = t3 += x[c[p + 3]];
        }
        for (; p < L; p++) T[p + 4] = T[p] + x[c[p]];
        y[r] = SFX(grp_groups)(W, T, j0, g0, g1) + base + (bias ? bias[r] : 0.f);
    }
}

static void SFX(grp_mm_c)(const cnn_grouped *W, const float *X, int64_t ldx, int64_t b,
                          const float *base, float *Y, int64_t ldy, int64_t r0, int64_t r1) {
    const CT *col = W->cols;
    const PT *gp = W->gptr;
    float acc[BLK], s[BLK];
    for (int64_t r = r0; r < r1; r++) {
        const int64_t g0 = W->rowptr[r], g1 = W->rowptr[r + 1];
        for (int64_t c0 = 0; c0 < b; c0 += BLK) {
            const int64_t w = b - c0 < BLK ? b - c0 : BLK;
            for (int64_t c = 0; c < w; c++) acc[c] = base[c0 + c];
            for (int64_t g = g0; g < g1; g++) {
                int64_t j = (int64_t)gp[g];
                const int64_t e = (int64_t)gp[g + 1];
                if (j == e) continue;
                for (int64_t c = 0; c < w; c++) s[c] = 0.f;
                for (; j < e; j++) {
                    const float *xr = X + (int64_t)col[j] * ldx + c0;
                    for (int64_t c = 0; c < w; c++) s[c] += xr[c];
                }
                const float v = group_value(W, g, g0);
                for (int64_t c = 0; c < w; c++) acc[c] += v * s[c];
            }
            memcpy(Y + r * ldy + c0, acc, (size_t)w * sizeof(float));
        }
    }
}

#if CNN_X86
/* ---- AVX2 -------------------------------------------------------------------- */

/* 8 columns from p into c[0..7], read as 64-bit words (one load per 8 / CB columns:
 * load ports, not arithmetic, bound these loops). */
static inline void SFX(cols8_scalar)(const CT *p, int64_t c[8]) {
    uint64_t w[CB];
    memcpy(w, p, 8 * CB);
    for (int i = 0; i < 8; i++)
        c[i] = (int64_t)((w[i * CB / 8] >> (i * CB % 8 * 8)) & (uint64_t)(CT)~(CT)0);
}

#ifdef WITH_CSR
/* Batch-1: 8 entries per FMA, two chains; the tail is scalar. */
CNN_AVX2_FN static void SFX(csr_mv_avx2)(const cnn_csr *W, const float *x, float *y,
                                         const float *bias, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
        const CT *col = (const CT *)W->cols + W->rowptr[r];
        const float *d = csr_row_data(W, r);
        int64_t j = 0, e = W->rowptr[r + 1] - W->rowptr[r], c[8], c2[8];
        __m256 a0 = _mm256_setzero_ps(), a1 = a0;
        for (; j + 16 <= e; j += 16) {
            SFX(cols8_scalar)(col + j, c);
            SFX(cols8_scalar)(col + j + 8, c2);
            a0 = _mm256_fmadd_ps(x8_avx2(x, c), _mm256_loadu_ps(d + j), a0);
            a1 = _mm256_fmadd_ps(x8_avx2(x, c2), _mm256_loadu_ps(d + j + 8), a1);
        }
        float t = 0.f;
        for (; j < e; j++) t += d[j] * x[col[j]];
        y[r] = hsum256(_mm256_add_ps(a0, a1)) + t + (bias ? bias[r] : 0.f);
    }
}

/* Batch b: per entry, broadcast the value and FMA its row of X, 8 columns per
 * register, nv registers (a block of 8 * nv columns), two entries in flight. */
CNN_AVX2_FN static inline __attribute__((always_inline)) void SFX(csr_blk_avx2)(
    const CT *col, const float *d, int64_t j, int64_t e, const float *X, int64_t ldx, float *y,
    const int nv, __m256i ml, const uint8_t *cd, const float *lut) {
    __m256 a[2][4];
    for (int q = 0; q < 4; q++) a[0][q] = a[1][q] = _mm256_setzero_ps();
    for (; j + 2 <= e; j += 2) {
        const float *p0 = X + (int64_t)col[j] * ldx, *p1 = X + (int64_t)col[j + 1] * ldx;
        const __m256 v0 = _mm256_broadcast_ss(cd ? lut + cd[j] : d + j),
                     v1 = _mm256_broadcast_ss(cd ? lut + cd[j + 1] : d + j + 1);
        for (int q = 0; q < nv; q++) {
            __m256 x0 = q == nv - 1 ? _mm256_maskload_ps(p0 + 8 * q, ml) : _mm256_loadu_ps(p0 + 8 * q);
            __m256 x1 = q == nv - 1 ? _mm256_maskload_ps(p1 + 8 * q, ml) : _mm256_loadu_ps(p1 + 8 * q);
            a[0][q] = _mm256_fmadd_ps(v0, x0, a[0][q]);
            a[1][q] = _mm256_fmadd_ps(v1, x1, a[1][q]);
        }
    }
    if (j < e) {
        const float *p0 = X + (int64_t)col[j] * ldx;
        const __m256 v0 = _mm256_broadcast_ss(cd ? lut + cd[j] : d + j);
        for (int q = 0; q < nv; q++) {
            __m256 x0 = q == nv - 1 ? _mm256_maskload_ps(p0 + 8 * q, ml) : _mm256_loadu_ps(p0 + 8 * q);
            a[0][q] = _mm256_fmadd_ps(v0, x0, a[0][q]);
        }
    }
    for (int q = 0; q < nv; q++) {
        __m256 s = _mm256_add_ps(a[0][q], a[1][q]);
        if (q == nv - 1) _mm256_maskstore_ps(y + 8 * q, ml, s);
        else _mm256_storeu_ps(y + 8 * q, s);
    }
}

CNN_AVX2_FN static void SFX(csr_mm_avx2)(const cnn_csr *W, const float *X, int64_t ldx,
                                         int64_t b, float *Y, int64_t ldy, int64_t r0,
                                         int64_t r1) {
    const int64_t cb = col_block(W->n, 8, 32);
    for (int64_t rc = r0; rc < r1;) {
        const int64_t re = SFX(csr_chunk)(W, rc, r1);
        for (int64_t c0 = 0; c0 < b; c0 += cb) {
            const int64_t w = b - c0 < cb ? b - c0 : cb;
            const int nv = (int)((w + 7) / 8);
            const __m256i ml = tail_mask256(w - 8 * (nv - 1));
            const float *x = X + c0;
            for (int64_t r = rc; r < re; r++) {
                float *y = Y + r * ldy + c0;
                const CT *col = (const CT *)W->cols + W->rowptr[r];
                const float *d = csr_row_data(W, r), *lut = W->lut;
                const uint8_t *cd = W->codes ? W->codes + W->rowptr[r] : NULL;
                const int64_t j = 0, e = W->rowptr[r + 1] - W->rowptr[r];
                switch (nv) {
                case 4: SFX(csr_blk_avx2)(col, d, j, e, x, ldx, y, 4, ml, cd, lut); break;
                case 3: SFX(csr_blk_avx2)(col, d, j, e, x, ldx, y, 3, ml, cd, lut); break;
                case 2: SFX(csr_blk_avx2)(col, d, j, e, x, ldx, y, 2, ml, cd, lut); break;
                default: SFX(csr_blk_avx2)(col, d, j, e, x, ldx, y, 1, ml, cd, lut); break;
                }
            }
        }
        rc = re;
    }
}
#endif /* WITH_CSR */

/* grp_mv_c with the columns read as 64-bit words (cols8_scalar): the loop is bound
 * by loads (a column, an input and a running-sum store per entry); SIMD gathers
 * and in-register scans measured 1.5-10x slower on AMD Zen 4. */
CNN_AVX2_FN static void SFX(grp_mv_avx2)(const cnn_grouped *W, const float *x, float *y,
                                         const float *bias, float base, int64_t r0,
                                         int64_t r1, float *T) {
    const CT *col = W->cols;
    const PT *gp = W->gptr;
    T[0] = T[1] = T[2] = T[3] = 0.f;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t g0 = W->rowptr[r], g1 = W->rowptr[r + 1];
        const int64_t j0 = (int64_t)gp[g0], L = (int64_t)gp[g1] - j0;
        const CT *c = col + j0;
        float t0 = 0.f, t1 = 0.f, t2 = 0.f, t3 = 0.f;
        int64_t p = 0, k[8];
        for (; p + 8 <= L; p += 8) {
            SFX(cols8_scalar)(c + p, k);
            T[p + 4] = t0 += x[k[0]];
            T[p + 5] = t1 += x[k[1]];
            T[p + 6] = t2 += x[k[2]];
            T[p + 7] = t3 += x[k[3]];
            T[p + 8] = t0 += x[k[4]];
            T[p + 9] = t1 += x[k[5]];
            T[p + 10] = t2 += x[k[6]];
            T[p + 11] = t3 += x[k[7]];
        }
        for (; p < L; p++) T[p + 4] = T[p] + x[c[p]];
        y[r] = SFX(grp_groups)(W, T, j0, g0, g1) + base + (bias ? bias[r] : 0.f);
    }
}

/* Batch b: per group, sum its rows of X (two chains) in nv registers, then one FMA
 * per register with the group's value. */
CNN_AVX2_FN static inline __attribute__((always_inline)) void SFX(grp_blk_avx2)(
    const cnn_grouped *W, int64_t g0, int64_t g1, const float *X, int64_t ldx,
    const float *base, float *y, const int nv, __m256i ml) {
    const CT *col = W->cols;
    const PT *gp = W->gptr;
    __m256 acc[4];
    for (int q = 0; q < nv; q++)
        acc[q] = q == nv - 1 ? _mm256_maskload_ps(base + 8 * q, ml) : _mm256_loadu_ps(base + 8 * q);
    for (int64_t g = g0; g < g1; g++) {
        int64_t j = (int64_t)gp[g];
        const int64_t e = (int64_t)gp[g + 1];
        if (j == e) continue;
        __m256 s[2][4];
        for (int q = 0; q < 4; q++) s[0][q] = s[1][q] = _mm256_setzero_ps();
        for (; j + 2 <= e; j += 2) {
            const float *p0 = X + (int64_t)col[j] * ldx, *p1 = X + (int64_t)col[j + 1] * ldx;
            for (int q = 0; q < nv; q++) {
                s[0][q] = _mm256_add_ps(s[0][q], q == nv - 1 ? _mm256_maskload_ps(p0 + 8 * q, ml)
                                                              : _mm256_loadu_ps(p0 + 8 * q));
                s[1][q] = _mm256_add_ps(s[1][q], q == nv - 1 ? _mm256_maskload_ps(p1 + 8 * q, ml)
                                                              : _mm256_loadu_ps(p1 + 8 * q));
            }
        }
        if (j < e) {
            const float *p0 = X + (int64_t)col[j] * ldx;
            for (int q = 0; q < nv; q++)
                s[0][q] = _mm256_add_ps(s[0][q], q == nv - 1 ? _mm256_maskload_ps(p0 + 8 * q, ml)
                                                              : _mm256_loadu_ps(p0 + 8 * q));
        }
        const __m256 v = _mm256_set1_ps(group_value(W, g, g0));
        for (int q = 0; q < nv; q++) acc[q] = _mm256_fmadd_ps(v, _mm256_add_ps(s[0][q], s[1][q]), acc[q]);
    }
    for (int q = 0; q < nv; q++) {
        if (q == nv - 1) _mm256_maskstore_ps(y + 8 * q, ml, acc[q]);
        else _mm256_storeu_ps(y + 8 * q, acc[q]);
    }
}

CNN_AVX2_FN static void SFX(grp_mm_avx2)(const cnn_grouped *W, const float *X, int64_t ldx,
                                         int64_t b, const float *base, float *Y, int64_t ldy,
                                         int64_t r0, int64_t r1) {
    const int64_t cb = col_block(W->n, 8, 32);
    for (int64_t rc = r0; rc < r1;) {
        const int64_t re = SFX(grp_chunk)(W, rc, r1);
        for (int64_t c0 = 0; c0 < b; c0 += cb) {
            const int64_t w = b - c0 < cb ? b - c0 : cb;
            const int nv = (int)((w + 7) / 8);
            const __m256i ml = tail_mask256(w - 8 * (nv - 1));
            const float *x = X + c0;
            for (int64_t r = rc; r < re; r++) {
                float *y = Y + r * ldy + c0;
                const int64_t g0 = W->rowptr[r], g1 = W->rowptr[r + 1];
                switch (nv) {
                case 4: SFX(grp_blk_avx2)(W, g0, g1, x, ldx, base + c0, y, 4, ml); break;
                case 3: SFX(grp_blk_avx2)(W, g0, g1, x, ldx, base + c0, y, 3, ml); break;
                case 2: SFX(grp_blk_avx2)(W, g0, g1, x, ldx, base + c0, y, 2, ml); break;
                default: SFX(grp_blk_avx2)(W, g0, g1, x, ldx, base + c0, y, 1, ml); break;
                }
            }
        }
        rc = re;
    }
}

/* ---- AVX-512 ----------------------------------------------------------------- */

#ifdef WITH_CSR
/* Batched: csr_blk_avx2 with 16 columns per register and four entries in flight. */
CNN_AVX512_FN static inline __attribute__((always_inline)) void SFX(csr_blk_512)(
    const CT *col, const float *d, int64_t j, int64_t e, const float *X, int64_t ldx, float *y,
    const int nv, __mmask16 ml, const uint8_t *cd, const float *lut) {
    __m512 a[4][4];
    for (int q = 0; q < 4; q++) a[0][q] = a[1][q] = a[2][q] = a[3][q] = _mm512_setzero_ps();
    for (; j + 4 <= e; j += 4)
        for (int u = 0; u < 4; u++) {
            const float *p = X + (int64_t)col[j + u] * ldx;
            const __m512 v = _mm512_set1_ps(cd ? lut[cd[j + u]] : d[j + u]);
            for (int q = 0; q < nv; q++)
                a[u][q] = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(q == nv - 1 ? ml : (__mmask16)0xFFFF,
                                                                   p + 16 * q), a[u][q]);
        }
    for (; j < e; j++) {
        const float *p = X + (int64_t)col[j] * ldx;
        const __m512 v = _mm512_set1_ps(cd ? lut[cd[j]] : d[j]);
        for (int q = 0; q < nv; q++)
            a[0][q] = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(q == nv - 1 ? ml : (__mmask16)0xFFFF,
                                                               p + 16 * q), a[0][q]);
    }
    for (int q = 0; q < nv; q++)
        _mm512_mask_storeu_ps(y + 16 * q, q == nv - 1 ? ml : (__mmask16)0xFFFF,
                              _mm512_add_ps(_mm512_add_ps(a[0][q], a[1][q]),
                                            _mm512_add_ps(a[2][q], a[3][q])));
}

CNN_AVX512_FN static void SFX(csr_mm_512)(const cnn_csr *W, const float *X, int64_t ldx,
                                          int64_t b, float *Y, int64_t ldy, int64_t r0,
                                          int64_t r1) {
    const int64_t cb = col_block(W->n, 16, 64);
    for (int64_t rc = r0; rc < r1;) {
        const int64_t re = SFX(csr_chunk)(W, rc, r1);
        for (int64_t c0 = 0; c0 < b; c0 += cb) {
            const int64_t w = b - c0 < cb ? b - c0 : cb;
            const int nv = (int)((w + 15) / 16);
            const __mmask16 ml = tail_mask16(w - 16 * (nv - 1));
            const float *x = X + c0;
            for (int64_t r = rc; r < re; r++) {
                float *y = Y + r * ldy + c0;
                const CT *col = (const CT *)W->cols + W->rowptr[r];
                const float *d = csr_row_data(W, r), *lut = W->lut;
                const int64_t j = 0, e = W->rowptr[r + 1] - W->rowptr[r];
                if (W->codes) { /* the values through the codes (cer/cser rows) */
                    const uint8_t *cd = W->codes + W->rowptr[r];
                    switch (nv) {
                    case 4: SFX(csr_blk_512)(col, d, j, e, x, ldx, y, 4, ml, cd, lut); break;
                    case 3: SFX(csr_blk_512)(col, d, j, e, x, ldx, y, 3, ml, cd, lut); break;
                    case 2: SFX(csr_blk_512)(col, d, j, e, x, ldx, y, 2, ml, cd, lut); break;
                    default: SFX(csr_blk_512)(col, d, j, e, x, ldx, y, 1, ml, cd, lut); break;
                    }
                    continue;
                }
                switch (nv) {
                case 4: SFX(csr_blk_512)(col, d, j, e, x, ldx, y, 4, ml, NULL, NULL); break;
                case 3: SFX(csr_blk_512)(col, d, j, e, x, ldx, y, 3, ml, NULL, NULL); break;
                case 2: SFX(csr_blk_512)(col, d, j, e, x, ldx, y, 2, ml, NULL, NULL); break;
                default: SFX(csr_blk_512)(col, d, j, e, x, ldx, y, 1, ml, NULL, NULL); break;
                }
            }
        }
        rc = re;
    }
}
#endif /* WITH_CSR */

/* Batched: grp_blk_avx2 with 16 columns per register. */
CNN_AVX512_FN static inline __attribute__((always_inline)) void SFX(grp_blk_512)(
    const cnn_grouped *W, int64_t g0, int64_t g1, const float *X, int64_t ldx,
    const float *base, float *y, const int nv, __mmask16 ml) {
    const CT *col = W->cols;
    const PT *gp = W->gptr;
    __m512 acc[4];
    for (int q = 0; q < nv; q++)
        acc[q] = _mm512_maskz_loadu_ps(q == nv - 1 ? ml : (__mmask16)0xFFFF, base + 16 * q);
    for (int64_t g = g0; g < g1; g++) {
        int64_t j = (int64_t)gp[g];
        const int64_t e = (int64_t)gp[g + 1];
        if (j == e) continue;
        __m512 s[4][4];
        for (int q = 0; q < 4; q++) s[0][q] = s[1][q] = s[2][q] = s[3][q] = _mm512_setzero_ps();
        for (; j + 4 <= e; j += 4)
            for (int u = 0; u < 4; u++) {
                const float *p = X + (int64_t)col[j + u] * ldx;
                for (int q = 0; q < nv; q++)
                    s[u][q] = _mm512_add_ps(s[u][q], _mm512_maskz_loadu_ps(
                        q == nv - 1 ? ml : (__mmask16)0xFFFF, p + 16 * q));
            }
        for (; j < e; j++) {
            const float *p = X + (int64_t)col[j] * ldx;
            for (int q = 0; q < nv; q++)
                s[0][q] = _mm512_add_ps(s[0][q], _mm512_maskz_loadu_ps(
                    q == nv - 1 ? ml : (__mmask16)0xFFFF, p + 16 * q));
        }
        const __m512 v = _mm512_set1_ps(group_value(W, g, g0));
        for (int q = 0; q < nv; q++)
            acc[q] = _mm512_fmadd_ps(v, _mm512_add_ps(_mm512_add_ps(s[0][q], s[1][q]),
                                                      _mm512_add_ps(s[2][q], s[3][q])), acc[q]);
    }
    for (int q = 0; q < nv; q++)
        _mm512_mask_storeu_ps(y + 16 * q, q == nv - 1 ? ml : (__mmask16)0xFFFF, acc[q]);
}

CNN_AVX512_FN static void SFX(grp_mm_512)(const cnn_grouped *W, const float *X, int64_t ldx,
                                          int64_t b, const float *base, float *Y, int64_t ldy,
                                          int64_t r0, int64_t r1) {
    const int64_t cb = col_block(W->n, 16, 64);
    for (int64_t rc = r0; rc < r1;) {
        const int64_t re = SFX(grp_chunk)(W, rc, r1);
        for (int64_t c0 = 0; c0 < b; c0 += cb) {
            const int64_t w = b - c0 < cb ? b - c0 : cb;
            const int nv = (int)((w + 15) / 16);
            const __mmask16 ml = tail_mask16(w - 16 * (nv - 1));
            const float *x = X + c0;
            for (int64_t r = rc; r < re; r++) {
                float *y = Y + r * ldy + c0;
                const int64_t g0 = W->rowptr[r], g1 = W->rowptr[r + 1];
                switch (nv) {
                case 4: SFX(grp_blk_512)(W, g0, g1, x, ldx, base + c0, y, 4, ml); break;
                case 3: SFX(grp_blk_512)(W, g0, g1, x, ldx, base + c0, y, 3, ml); break;
                case 2: SFX(grp_blk_512)(W, g0, g1, x, ldx, base + c0, y, 2, ml); break;
                default: SFX(grp_blk_512)(W, g0, g1, x, ldx, base + c0, y, 1, ml); break;
                }
            }
        }
        rc = re;
    }
}
#endif /* CNN_X86 */
