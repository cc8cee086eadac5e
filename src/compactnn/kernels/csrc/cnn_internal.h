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

extern int cnn_level_;

/* Work (multiply-adds) below which a kernel runs on the calling thread only:
 * an OpenMP fork/join costs about a microsecond. */
#define CNN_PAR_MIN_WORK (1 << 16)

static inline int cnn_threads_for(int64_t work) {
    return work < CNN_PAR_MIN_WORK ? 1 : cnn_get_num_threads();
}

/* Aligned scratch for one thread; free with cnn_free. */
void *cnn_alloc(size_t bytes);
void cnn_free(void *p);

#endif
