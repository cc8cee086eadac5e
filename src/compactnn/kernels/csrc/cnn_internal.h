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
