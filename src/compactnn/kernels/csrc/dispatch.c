/* CPU level detection, level selection and the thread count. */
#define _POSIX_C_SOURCE 200112L /* posix_memalign under -std=c11 */
#include "cnn_internal.h"

#include <stdlib.h>
#include <omp.h>

int cnn_level_ = -1;
static int threads_ = 0;

int cnn_cpu_level(void) {
#if CNN_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("bmi2"))
        return CNN_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("bmi2"))
        return CNN_AVX2;
#elif CNN_ARM64
    return CNN_NEON;
#endif
    return CNN_PORTABLE;
}

int cnn_set_level(int level) {
    const int best = cnn_cpu_level();
    /* x86 levels nest (portable < avx2 < avx512); NEON stands beside portable */
    int ok = level == CNN_PORTABLE || level == best ||
             (best != CNN_NEON && level > CNN_PORTABLE && level < best);
    if (!ok) return -1;
    cnn_level_ = level;
    return 0;
}

int cnn_get_level(void) {
    if (cnn_level_ < 0) cnn_level_ = cnn_cpu_level();
    return cnn_level_;
}

void cnn_set_num_threads(int n) { threads_ = n > 0 ? n : 0; }

int cnn_get_num_threads(void) {
    int n = threads_ > 0 ? threads_ : omp_get_max_threads();
    return n > 0 ? n : 1;
}

void *cnn_alloc(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? (bytes + 63) / 64 * 64 : 64)) return NULL;
    return p;
}

void cnn_free(void *p) { free(p); }
