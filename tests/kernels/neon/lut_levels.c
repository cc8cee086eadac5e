/* Test driver for the index-map kernels (csrc/lut.c, csrc/dispatch.c), built without
 * Python: every level this CPU runs (on aarch64: portable and NEON, e.g. under
 * qemu-aarch64) against the codes themselves and a double-precision reference.
 * Decoding must be bit-identical to omega[code]; products within a tolerance.
 * Prints one line and exits 0 when every case passes, else names the first
 * failure and exits 1. tests/kernels/test_neon_qemu.py cross-compiles and runs it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnn_kernels.h"
#include "cnn_internal.h"

static uint64_t state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) { /* xorshift64* */
    state ^= state >> 12, state ^= state << 25, state ^= state >> 27;
    return (uint32_t)((state * 2685821657736338717ull) >> 32);
}
static float frand(void) { return (float)rnd() / 4294967296.0f * 2.f - 1.f; }

static int bits_for(int K) {
    int b = 0;
    while ((1 << b) < K) b++;
    return b;
}

/* One matrix: codes (m x n, values < K), checked at `level`; returns failures. */
static int check(int level, int64_t m, int64_t n, int K, int64_t B) {
    const int bits = bits_for(K), nibble = K <= 16;
    const int64_t stride = nibble ? (n + 31) / 32 * 16 : (n + 15) / 16 * 16;
    uint8_t *code = malloc((size_t)(m * n) + 1);
    uint32_t *words = calloc((size_t)((m * n * bits) / 32 + 2), 4);
    uint8_t *packed = cnn_alloc((size_t)(m * stride));
    float omega[256], lut[64] = {0};
    float *X = malloc(sizeof(float) * (size_t)(B * n + 1));
    float *Y = malloc(sizeof(float) * (size_t)(B * m + 1));
    float *D = malloc(sizeof(float) * (size_t)(m * n + 1));
    float bias[512];
    for (int c = 0; c < K; c++) omega[c] = c == 1 ? -0.0f : frand() * (c % 3 ? 1.f : 1e3f);
    memcpy(lut, omega, sizeof(float) * (size_t)(K < 64 ? K : 64));
    for (int64_t e = 0; e < m * n; e++) {
        code[e] = (uint8_t)(rnd() % (uint32_t)K);
        uint64_t p = (uint64_t)e * (uint64_t)bits; /* MSB first, as format index_map */
        for (int t = 0; t < bits; t++, p++)
            if ((code[e] >> (bits - 1 - t)) & 1) words[p >> 5] |= 1u << (31 - (p & 31));
    }
    for (int64_t i = 0; i < B * n; i++) X[i] = frand();
    for (int64_t j = 0; j < m; j++) bias[j] = frand();
    cnn_lut_repack(words, bits, m, n, nibble, stride, packed);
    cnn_lut W = {.m = m, .n = n, .stride = stride, .K = K, .nibble = nibble, .codes = packed,
                 .omega = omega, .lut = K <= 64 ? lut : omega};
    int bad = 0;
    if (cnn_set_level(level)) {
        printf("FAIL: level %d refused\n", level);
        bad = 1;
        goto done;
    }
    cnn_lut_decode_rows(&W, 0, m, D, n);
    for (int64_t e = 0; e < m * n && !bad; e++) {
        if (memcmp(&D[e], &omega[code[e]], 4)) {
            printf("FAIL: level %d decode m=%lld n=%lld K=%d entry %lld\n", level, (long long)m,
                   (long long)n, K, (long long)e);
            bad = 1;
        }
    }
    if (!bad && m > 1) { /* a row range: rows 1 .. m-1 */
        cnn_lut_decode_rows(&W, 1, m - 1, D, n);
        for (int64_t e = 0; e < (m - 1) * n && !bad; e++)
            if (memcmp(&D[e], &omega[code[e + n]], 4)) {
                printf("FAIL: level %d decode_rows(1, ..) K=%d\n", level, K);
                bad = 1;
            }
    }
    for (int with_bias = 0; with_bias < 2 && !bad; with_bias++) {
        if (cnn_lut_rows(&W, X, n, B, Y, m, with_bias ? bias : NULL)) {
            printf("FAIL: out of memory\n");
            bad = 1;
            break;
        }
        for (int64_t i = 0; i < B && !bad; i++)
            for (int64_t j = 0; j < m && !bad; j++) {
                double ref = with_bias ? bias[j] : 0.0, mag = 1.0;
                for (int64_t k = 0; k < n; k++) {
                    double t = (double)X[i * n + k] * omega[code[j * n + k]];
                    ref += t;
                    mag += fabs(t);
                }
                if (fabs(Y[i * m + j] - ref) > 1e-5 * mag) {
                    printf("FAIL: level %d rows m=%lld n=%lld K=%d B=%lld [%lld,%lld]: %g vs %g\n",
                           level, (long long)m, (long long)n, K, (long long)B, (long long)i,
                           (long long)j, Y[i * m + j], ref);
                    bad = 1;
                }
            }
    }
done:
    free(code), free(words), cnn_free(packed), free(X), free(Y), free(D);
    return bad;
}

int main(void) {
    const int best = cnn_cpu_level();
    int levels[3], nl = 0;
    levels[nl++] = CNN_PORTABLE;
    if (best == CNN_NEON) {
        levels[nl++] = CNN_NEON;
        if (cnn_set_level(CNN_AVX2) == 0 || cnn_set_level(CNN_AVX512) == 0) {
            printf("FAIL: an x86 level was accepted on a NEON CPU\n");
            return 1;
        }
    } else {
        for (int l = CNN_AVX2; l <= best; l++) levels[nl++] = l;
        if (cnn_set_level(CNN_NEON) == 0) {
            printf("FAIL: the NEON level was accepted on an x86 CPU\n");
            return 1;
        }
    }
    static const int64_t ms[] = {1, 3, 4, 5, 9, 40}, ns[] = {0, 1, 15, 16, 17, 31, 32, 33, 64, 100, 257};
    static const int Ks[] = {1, 2, 15, 16, 17, 64, 65, 129, 200, 256};
    static const int64_t Bs[] = {1, 2, 5, 9, 13};
    int cases = 0;
    for (int li = 0; li < nl; li++)
        for (size_t a = 0; a < sizeof ms / sizeof *ms; a++)
            for (size_t b = 0; b < sizeof ns / sizeof *ns; b++)
                for (size_t c = 0; c < sizeof Ks / sizeof *Ks; c++)
                    for (size_t d = 0; d < sizeof Bs / sizeof *Bs; d++, cases++)
                        if (check(levels[li], ms[a], ns[b], Ks[c], Bs[d])) return 1;
    printf("ok: %d cases, levels", cases);
    for (int li = 0; li < nl; li++) printf(" %s", levels[li] == CNN_NEON ? "neon" : levels[li] == CNN_PORTABLE ? "portable" : levels[li] == CNN_AVX2 ? "avx2" : "avx512");
    printf("\n");
    return 0;
}
