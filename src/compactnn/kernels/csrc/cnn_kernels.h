/* compactnn native kernels: the C ABI.
 *
 * Plain functions on raw arrays that the Python layer has already validated
 * (every array passed CompactMatrix.check()). Each kernel has a portable C
 * version and, on x86-64, AVX2+FMA and AVX-512 versions compiled with
 * function-level target attributes (on aarch64, NEON versions of the index-map
 * kernels); cnn_set_level() picks one at run time
 * (the best the CPU supports by default). Multi-threaded kernels run on the
 * OpenMP runtime (libgomp), the same pool torch and MKL use, with
 * cnn_get_num_threads() threads.
 *
 * Shapes: W is m x n (rows x columns). "rows" layout products compute
 * Y[i, j] = sum_k X[i, k] * W[j, k] (+ bias[j]) for B input rows X (B x n,
 * row stride ldx floats) into Y (B x m, row stride ldy floats): what
 * nn.Linear computes, X @ W^T. matvec is B == 1.
 */
#ifndef COMPACTNN_KERNELS_H
#define COMPACTNN_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { CNN_PORTABLE = 0, CNN_AVX2 = 1, CNN_AVX512 = 2, CNN_NEON = 3 };

/* Best level this CPU supports: CNN_AVX512, CNN_AVX2 or CNN_PORTABLE on x86-64,
 * CNN_NEON on aarch64 (which runs CNN_PORTABLE and CNN_NEON), else CNN_PORTABLE. */
int cnn_cpu_level(void);
/* Select a level; returns 0, or -1 when the CPU does not support it. */
int cnn_set_level(int level);
int cnn_get_level(void);
/* Threads for multi-threaded kernels; n <= 0 follows omp_get_max_threads()
 * (what torch.set_num_threads sets). */
void cnn_set_num_threads(int n);
int cnn_get_num_threads(void);

/* ---- index map with a codebook lookup (LUT) ----------------------------------
 * Runtime layout (built at load by cnn_lut_repack, never stored):
 *   nibble = 1 (K <= 16): each row is ceil(n / 32) blocks of 16 bytes; byte t of
 *     block q holds the code of column 32q + t in its low nibble and of column
 *     32q + 16 + t in its high nibble. stride = 16 * ceil(n / 32) bytes.
 *   nibble = 0 (K <= 256): one byte per code, stride = 16 * ceil(n / 16) bytes.
 * Padding codes are 0. omega holds K floats; lut is omega padded with zeros to
 * 64 entries (K <= 64) so SIMD lookups may read 64 floats. */
typedef struct {
    int64_t m, n, stride;
    int32_t K, nibble;
    const uint8_t *codes;
    const float *omega;
    const float *lut; /* 64 floats when K <= 64, else == omega */
} cnn_lut;

/* Repack an MSB-first stream of b-bit codes (entry (r, j) at bit (r*n+j)*b of
 * the uint32 words, the index_map format) into the runtime layout. */
void cnn_lut_repack(const uint32_t *words, int bits, int64_t m, int64_t n,
                    int nibble, int64_t stride, uint8_t *out);
/* dst[r * ldd + j] = W[r0 + r, j] for r < nr, j < n. */
void cnn_lut_decode_rows(const cnn_lut *W, int64_t r0, int64_t nr, float *dst, int64_t ldd);
/* Y = X @ W^T (+ bias); bias may be NULL. Returns 0, or -1 when scratch
 * memory could not be allocated. */
int cnn_lut_rows(const cnn_lut *W, const float *X, int64_t ldx, int64_t B,
                 float *Y, int64_t ldy, const float *bias);

/* ---- Huffman-coded entries (ham, sham): huffman.c ----------------------------
 * Runtime layout (built at load, never stored): `bytes` is the stored MSB-first
 * uint32 stream as big-endian bytes plus CNN_HUFF_PAD zero bytes (one unaligned
 * 8-byte load gives the next 57+ bits anywhere); `table` has 2^CNN_HUFF_T
 * entries (up to two symbols per lookup), limit/base (34 entries) drive the
 * canonical search of longer codes; lut holds K <= 256 floats, padded with
 * zeros to at least 64. Rows: ham row r holds n codes from bit row_bits[r]
 * (zrun: +0.0 is symbol 0 with the code "0", so zero runs are skipped with a
 * count of leading zeros); sham row r holds row_ptr[r+1] - row_ptr[r] codes for
 * columns cols[row_ptr[r] ..] (uint16 when colw == 2, else uint32). */
#define CNN_HUFF_T 11
#define CNN_HUFF_PAD 16
/* A table entry: up to two symbols, the bits they take and, in zero-run mode,
 * the column gap from symbol 0 to symbol 1 (so bytes 1-2 read as a uint16 are
 * gap << 8 | s1) and the columns advanced (adv << 8). n == 0: an escape (a code
 * longer than CNN_HUFF_T bits; advj == 0x8000 flags it). */
typedef struct {
    uint8_t s0, s1, gap, n, bits, len0;
    uint16_t advj;
} cnn_huff_entry;
/* Fused zero-run table (ham batch 1): indexed by the CNN_HUFF_ZT + 1 bits from a
 * non-zero code's leading 1 (so only the upper half is used). An entry holds that
 * code (value val, length len1, adj1 = 4 - 4 * len1: the step of the row's x origin
 * in bytes) and, when the zero run and the code after it also fit in the window, a
 * second code (two = 1, val2, its x at off2 = 4 * (1 + run) bytes past the first
 * one's); len and adj are the totals. len1 == 0: code 1 is longer than the window
 * (the canonical search decodes it). */
#define CNN_HUFF_ZT 11
typedef struct {
    float val, val2;
    uint8_t len, len1, off2, two;
    int8_t adj, adj1, pad[2];
} cnn_huff_zent;
/* Fused plain table (sham batch 1): the CNN_HUFF_T-bit entry of `table` with the
 * values of its symbols (v1 = 0 when it decodes one symbol), n symbols, bits taken,
 * len0 the first code's length; n == 0: an escape. */
typedef struct {
    float v0, v1;
    uint8_t n, bits, len0, pad;
} cnn_huff_pent;
typedef struct cnn_htile cnn_htile; /* below */
typedef struct {
    int64_t m, n, maxrow; /* maxrow: longest sham row (codes) */
    int32_t K, lmax, zrun, colw;
    int32_t zpair;    /* zrun: the fused matvec decodes up to two codes per lookup */
    int32_t complete; /* the code's Kraft sum is 1 (every table index decodes) */
    const uint8_t *bytes;
    const int64_t *row_bits; /* m + 1 */
    const int64_t *row_ptr;  /* m + 1 (sham) or NULL (ham) */
    const void *cols;        /* sham column indices */
    const cnn_huff_entry *table;
    const cnn_huff_zent *ztab; /* 2^(CNN_HUFF_ZT + 1) entries (zrun) or NULL */
    const cnn_huff_pent *ptab; /* 2^CNN_HUFF_T entries (sham) or NULL */
    const uint64_t *limit;
    const int64_t *base;
    const float *lut;
    /* NULL, or the matrix's Huffman tiles (built at load): batched products at the
     * AVX-512 level decode them (cnn_htile_records) instead of the stream */
    const cnn_htile *tiles;
} cnn_huff;

/* Decoding tables of the canonical code with length_counts[0 .. lmax); zrun
 * selects the zero-run table. Returns 0, or -1 (bad lmax, no memory). */
int cnn_huff_tables(const int64_t *length_counts, int lmax, int zrun, cnn_huff_entry *table,
                    uint64_t *limit, int64_t *base);
/* The fused plain table (from table and lut; sham). */
void cnn_huff_ptable(const cnn_huff *W, cnn_huff_pent *ptab);
/* The fused zero-run table of that code for the values lut (zrun only). */
void cnn_huff_ztable(const cnn_huff *W, cnn_huff_zent *ztab);
/* Zero-run mode: walk every row as the fused kernel does and check each row holds
 * exactly n entries whose codes end inside the row; returns -1, or the first bad row,
 * and the number of non-zero entries in *nnz. */
int64_t cnn_huff_verify_zrun(const cnn_huff *W, int64_t *nnz);
/* out (4 * nwords + CNN_HUFF_PAD bytes) = the words as big-endian bytes + zeros. */
void cnn_huff_stream(const uint32_t *words, int64_t nwords, uint8_t *out);
/* Y = X @ W^T (+ bias; may be NULL), B inputs of n floats. */
int cnn_huff_rows(const cnn_huff *W, const float *X, int64_t ldx, int64_t B, float *Y,
                  int64_t ldy, const float *bias);
/* Y (m x k, row stride ldy) = W @ X (n x k, row stride ldx). */
int cnn_huff_matmul(const cnn_huff *W, const float *X, int64_t ldx, int64_t k, float *Y,
                    int64_t ldy);
/* dst[r * ldd + j] = W[r0 + r, j]. */
int cnn_huff_decode_rows(const cnn_huff *W, int64_t r0, int64_t nr, float *dst, int64_t ldd);
/* The symbols of rows r0 .. r0 + nr - 1 in stream order (ham: n per row, zeros
 * included; sham: the row's codes), concatenated. All return 0 or -1 (no memory). */
int cnn_huff_decode_symbols(const cnn_huff *W, int64_t r0, int64_t nr, uint8_t *out);
/* Zero-run mode: the non-zero entries row by row (symbols 1.. as 0..): rowptr (m + 1),
 * their columns and symbols - 1 (at most cap of them). 0, or -1 (not zero-run mode,
 * more than cap entries, or no memory). */
int cnn_huff_nonzeros(const cnn_huff *W, int64_t cap, int64_t *rowptr, uint32_t *cols,
                      uint8_t *syms);

/* ---- sparse rows: csr, and cer/cser (columns grouped by value) ---------------
 * Column indices are used in place, 1, 2 or 4 bytes each (col_bytes); the group
 * pointers of cer/cser in place, 4 or 8 bytes (ptr_bytes); row pointers are
 * int64 (m + 1 entries, converted when the binding builds the struct). The
 * binding checks every column < n and every pointer array non-decreasing and
 * in range before a kernel runs. */
typedef struct {
    int64_t m, n;
    int32_t col_bytes;
    const void *cols;      /* nnz columns, row by row */
    const float *data;     /* nnz values, or (dataoff) the shared rows */
    const int64_t *rowptr; /* m + 1: start of each row in cols (and data) */
    /* NULL, or m offsets: row r's values are data[dataoff[r] ...] (rows that share
     * values, as permseq's rows share base sequences). */
    const int64_t *dataoff;
    /* NULL, or (batched products only; dataoff NULL) the entries' codes: entry j is
     * lut[codes[j]] and data is unused (cer/cser rows as csr). */
    const uint8_t *codes;
    const float *lut;
} cnn_csr;

/* Y = X @ W^T (+ bias); bias may be NULL. 0, or -1 when scratch memory could not
 * be allocated. */
int cnn_csr_rows(const cnn_csr *W, const float *X, int64_t ldx, int64_t B,
                 float *Y, int64_t ldy, const float *bias);
/* Y (m x b, row stride ldy) = W @ X (n x b, row stride ldx). */
int cnn_csr_matmul(const cnn_csr *W, const float *X, int64_t ldx, int64_t b,
                   float *Y, int64_t ldy);

/* cer / cser: row r owns groups rowptr[r] .. rowptr[r+1]-1; group g holds the
 * columns cols[gptr[g] .. gptr[g+1]-1] and the value shifted[code], code =
 * gidx[g] (cser, idx_bytes 1, 2 or 4) or g - rowptr[r] + 1 (cer, idx_bytes 0).
 * W[r, j] = shifted[code] + omega0 for a column in a group, omega0 elsewhere
 * (omega0 is used only when shift != 0). width >= the most entries in a row. */
typedef struct {
    int64_t m, n, width;
    int32_t col_bytes, ptr_bytes, idx_bytes, shift;
    float omega0;
    const void *cols, *gptr, *gidx;
    const int64_t *rowptr;
    const float *shifted;
} cnn_grouped;

/* Sum-then-multiply products: per group, add its inputs, multiply once. */
int cnn_grouped_rows(const cnn_grouped *W, const float *X, int64_t ldx, int64_t B,
                     float *Y, int64_t ldy, const float *bias);
int cnn_grouped_matmul(const cnn_grouped *W, const float *X, int64_t ldx, int64_t b,
                       float *Y, int64_t ldy);

/* ---- sliced codebook layout (csr, cer, cser batch 1 on AVX-512): sliced.c -------
 * Rows in slices of 16, columns in blocks of 32. Slice s owns steps slice_ptr[s] ..
 * slice_ptr[s+1]-1; step t covers columns xoff[t] .. xoff[t]+31 with 16 slots
 * slots[16t ..], slot i (row 16s + i) = 0 (no entry) or 0x8000 | code << 8 |
 * (column - xoff[t]); the entry is lut[code] (code < 32). Built at load, never
 * stored. */
typedef struct {
    int64_t m, n, nslices;
    const int64_t *slice_ptr; /* nslices + 1 */
    const uint32_t *xoff;     /* steps */
    const uint16_t *slots;    /* 16 * steps */
    float lut[32];
} cnn_sliced;

/* The layout of the entries rowptr[r] .. rowptr[r+1]-1 of each row r (columns cols,
 * col_bytes 1, 2 or 4 wide, all < n; codes < 32): with xoff == NULL only slice_ptr
 * (ceil(m / 16) + 1 entries; may be NULL too); returns the number of steps, or -1
 * (no memory). */
int64_t cnn_sliced_layout(int64_t m, int64_t n, const int64_t *rowptr, const void *cols,
                          int col_bytes, const uint8_t *codes, int64_t *slice_ptr,
                          uint32_t *xoff, uint16_t *slots);
/* y = W x + base (+ bias; may be NULL). 0, or -1 (no memory, or not an x86 build). */
int cnn_sliced_matvec(const cnn_sliced *S, const float *x, float *y, const float *bias,
                      float base);

/* ---- Huffman tiles (ham zero-run mode and sham batch 1 on AVX-512 with VBMI and CD):
 * htiles.c. Rows in slices of 16, columns in tiles of 32: masks[(s * nblocks + b) * 16 + i]
 * has bit 31 - c set when row 16s + i has an entry in column 32b + c; the entries'
 * symbols (< 32, values lut) are coded with a canonical code of <= 7 bits (table: the
 * byte symbol | length << 5 of each 7-bit prefix) in one stream of 16-bit words a
 * slice, words[slice_word[s] ..], in the order the kernel's lanes take them (htiles.c);
 * slice s runs slice_step[s + 1] - slice_step[s] steps, adv[t] = 1 at the first step of
 * each tile. Built at load, never stored. */
struct cnn_htile {
    int64_t m, n, nslices, nblocks;
    const uint32_t *masks;
    const uint16_t *words;
    const int64_t *slice_word, *slice_step; /* nslices + 1 each */
    const uint8_t *adv; /* a step's flag: 1 at a tile's first step */
    float lut[32];
    uint8_t table[128];
};

/* Whether the CPU runs the tile kernel (AVX-512 with VBMI and CD). */
int cnn_htile_cpu(void);
/* The tiles of the entries rowptr[r] .. rowptr[r+1]-1 of each row r (columns cols, all
 * < n, ascending in a row; symbols syms < K <= 32, values vals). Returns 0 (H empty
 * when K > 32 or the shape is empty), or -1 (no memory). */
int cnn_htile_build(cnn_htile *H, int64_t m, int64_t n, const int64_t *rowptr,
                    const uint32_t *cols, const uint8_t *syms, int K, const float *vals);
void cnn_htile_free(cnn_htile *H);
/* Bytes of the tile arrays (0 when not built). */
int64_t cnn_htile_nbytes(const cnn_htile *H);
/* y = W x (+ bias; may be NULL). 0, or -1 (no memory, or not an x86 build). */
int cnn_htile_matvec(const cnn_htile *H, const float *x, float *y, const float *bias);
/* The entries of slices s .. s + ns - 1 (ns = 1 or 2; rows 16 s ..), decoded for batched
 * products: rec[i][0 .. cnt[i]) = column << 8 | symbol (values lut) of row 16 s + i in
 * column order; rec[i] needs room for the row's entries + 16. Only where cnn_htile_cpu()
 * (a no-op elsewhere). */
void cnn_htile_records(const cnn_htile *H, int64_t s, int ns, uint32_t *const *rec,
                       int64_t *cnt);

#ifdef __cplusplus
}
#endif
/* ---- block-diagonal (blockdiag): blockdiag.c -------------------------------------
 * Block b: rows rows[row_ptr[b] .. row_ptr[b+1]) x columns cols[col_ptr[b] ..
 * col_ptr[b+1]), dense row-major at data + data_ptr[b]; rows[row_ptr[nblocks] .. m)
 * are the rows of no block (all zero). rows is a permutation of 0..m-1, cols of
 * 0..n-1, the pointers non-decreasing (the binding checks all of it); maxcols is the
 * widest block, ndata the stored entries. */
typedef struct {
    int64_t m, n, nblocks, maxcols, ndata;
    const float *data;
    const int64_t *rows, *cols, *row_ptr, *col_ptr, *data_ptr;
} cnn_blockdiag;

/* Y = X @ W^T (+ bias; may be NULL), B inputs of n floats. 0, or -1 (no memory). */
int cnn_blockdiag_rows(const cnn_blockdiag *W, const float *X, int64_t ldx, int64_t B, float *Y,
                       int64_t ldy, const float *bias);

/* ---- unquantized floats (lossless_float): lfloat.c -------------------------------
 * The stored arrays in place: `words` (head codes, one MSB-first stream per block of 8
 * rows from block_bits[b], padded with stream_words), `tails` (w bits per entry, entry
 * e at bit e * w); an entry is head | sign << 31 | mantissa << z (mmask: the mantissa
 * bits z .. 22 - h). `table` has 2^t entries (t = CNN_LFLOAT_T) lo | hi << 32 for the t bits at the
 * stream position: lo = head | bits taken (1..t; 0: a code longer than t, found by the
 * canonical search on limit/base, 34 entries each), hi = the second code's head | 2 when
 * two codes fit in t bits, else 1 (one code); `heads` the K
 * heads in symbol order; lmax == 0: every head is heads[0]. perm (32 x 64 bytes) and
 * shift (32 x 16), 64-byte aligned, are the AVX-512 VBMI tail patterns per bit offset
 * (cnn_lfloat_patterns), or NULL. */
#define CNN_LFLOAT_T 12 /* table index bits */
typedef struct {
    int64_t m, n, tail_words;
    int32_t w, z, h, lmax, K;
    uint32_t mmask;
    const uint32_t *words, *tails;
    const int64_t *block_bits; /* ceil(m / 8) + 1 */
    const uint64_t *table;
    const uint32_t *heads;
    const uint64_t *limit;
    const int64_t *base;
    const uint8_t *perm;
    const uint32_t *shift;
    const uint8_t *perm4; /* AVX2 (x86 CPUs with AVX2): 32 x 16 bytes, or NULL */
    const uint32_t *shift4; /* 32 x 4 */
} cnn_lfloat;

/* The decoding table (2^t entries, one or two codes each) and canonical limit/base of the code with
 * length_counts[0 .. lmax) over the K heads. 0, or -1 (not a valid code). */
int cnn_lfloat_tables(const int64_t *length_counts, int lmax, int t, const uint32_t *heads,
                      int64_t K, uint64_t *table, uint64_t *limit, int64_t *base);
/* Whether this CPU runs the VBMI tail unpacking (AVX-512 level with VBMI). */
int cnn_lfloat_vbmi(void);
/* The tail patterns for w-bit tails per bit offset r < 32, `lanes` tails a register lane
 * group: 16 for VBMI (perm 32 x 64 bytes, shift 32 x 16), 4 for AVX2 (4 tails a 128-bit
 * lane: 32 x 16 bytes, 32 x 4). Tail i at offset r: byte permutation perm[(r * lanes + i)
 * * 4 + k], bit shift shift[r * lanes + i]. */
void cnn_lfloat_patterns(int w, int lanes, uint8_t *perm, uint32_t *shift);
/* What decoding does, as the kernels step through each block's stream: counts[0] table
 * lookups (steps of one or two codes), counts[1] codes longer than the table, counts[2]
 * their limit comparisons. */
void cnn_lfloat_counts(const cnn_lfloat *W, int64_t *counts);
/* dst[r * ldd + j] (as uint32 bit patterns) = W[r0 + r, j]. 0, or -1 (no memory). */
int cnn_lfloat_decode_rows(const cnn_lfloat *W, int64_t r0, int64_t nr, float *dst,
                           int64_t ldd);
/* Y = X @ W^T (+ bias; may be NULL), B inputs of n floats. 0, or -1 (no memory). */
int cnn_lfloat_rows(const cnn_lfloat *W, const float *X, int64_t ldx, int64_t B, float *Y,
                    int64_t ldy, const float *bias);

#endif
