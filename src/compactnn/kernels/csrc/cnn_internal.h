/* Shared helpers of the kernel sources (not part of the ABI). */
#ifndef COMPACTNN_INTERNAL_H
#define COMPACTNN_INTERNAL_H

#include "cnn_kernels.h"
#include <stddef.h>

#if defined(__x86_64__) || defined(_M_X64)
#define CNN_X86 1
#include <immintrin.h>
#define CNN_AVX2_FN __attribute__((target("avx2,fma,bmi2")))
#define CNN_AVX512_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,bmi2,fma")))

/* 16 x 16 dwords transposed in registers: lane i of r[j] <- lane j of r[i] (unpacks within
 * 128-bit lanes, then a 4 x 4 transpose of the 128-bit lanes; 64 shuffles). AVX-512F
 * only, so every AVX-512 function can inline it. */
__attribute__((target("avx512f"))) static inline void cnn_transpose16(__m512i r[16]) {
    __m512i t[16];
    for (int j = 0; j < 16; j += 2) {
        t[j] = _mm512_unpacklo_epi32(r[j], r[j + 1]);
        t[j + 1] = _mm512_unpackhi_epi32(r[j], r[j + 1]);
    }
    for (int j = 0; j < 16; j += 4) { /* r[j + b]: lane 4L + b of rows j .. j + 3 in 128-bit lane L */
        r[j] = _mm512_unpacklo_epi64(t[j], t[j + 2]);
        r[j + 1] = _mm512_unpackhi_epi64(t[j], t[j + 2]);
        r[j + 2] = _mm512_unpacklo_epi64(t[j + 1], t[j + 3]);
        r[j + 3] = _mm512_unpackhi_epi64(t[j + 1], t[j + 3]);
    }
    for (int b = 0; b < 4; b++) {
        const __m512i v0 = _mm512_shuffle_i32x4(r[b], r[4 + b], 0x88),
                      v1 = _mm512_shuffle_i32x4(r[b], r[4 + b], 0xDD),
                      v2 = _mm512_shuffle_i32x4(r[8 + b], r[12 + b], 0x88),
                      v3 = _mm512_shuffle_i32x4(r[8 + b], r[12 + b], 0xDD);
        t[b] = _mm512_shuffle_i32x4(v0, v2, 0x88);      /* lane b */
        t[4 + b] = _mm512_shuffle_i32x4(v1, v3, 0x88);  /* lane 4 + b */
        t[8 + b] = _mm512_shuffle_i32x4(v0, v2, 0xDD);  /* lane 8 + b */
        t[12 + b] = _mm512_shuffle_i32x4(v1, v3, 0xDD); /* lane 12 + b */
    }
    for (int j = 0; j < 16; j++) r[j] = t[j];
}
#else
#define CNN_X86 0
#endif

#if defined(__aarch64__) && defined(__ARM_NEON)
#define CNN_ARM64 1 /* NEON is part of the base ISA: no target attributes needed */
#include <arm_neon.h>
#else
#define CNN_ARM64 0
#endif

extern int cnn_level_;

/* Work (multiply-adds) below which a kernel runs on the calling thread only:
 * an OpenMP fork/join costs about a microsecond. */
#define CNN_PAR_MIN_WORK (1 << 16)

static inline int cnn_threads_for(int64_t work) {
    return work < CNN_PAR_MIN_WORK ? 1 : cnn_get_num_threads();
}

/* Run the statements on `nt` threads (the int variable named nt in scope) as an
 * OpenMP region, or directly on the calling thread when nt == 1: a region costs
 * about a microsecond even when its if() clause is false. Inside, cnn_tid() and
 * cnn_nthreads() are the thread's index and the team size (0 and 1 outside). */
#define CNN_PARALLEL(...)                                    \
    do {                                                     \
        if (nt > 1) {                                        \
            _Pragma("omp parallel num_threads(nt)") { __VA_ARGS__ } \
        } else {                                             \
            __VA_ARGS__                                      \
        }                                                    \
    } while (0)

#ifdef _OPENMP
#include <omp.h>
static inline int cnn_tid(void) { return omp_get_thread_num(); }
static inline int cnn_nthreads(void) { return omp_get_num_threads(); }
#else
static inline int cnn_tid(void) { return 0; }
static inline int cnn_nthreads(void) { return 1; }
#endif

/* Aligned scratch for one thread; free with cnn_free. */
void *cnn_alloc(size_t bytes);
void cnn_free(void *p);

#endif
