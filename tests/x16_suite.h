/* x16_suite.h - the scaffolding the x16 gemm suites share
 * (test_x16_avx2.c with test_x16_avx2vnni.c, test_x16_avx512.c,
 * test_x16k_avx512.c, test_x16_neon.c): repacked test matrices with
 * extreme blocks and term magnitudes, activations, dn_matmul_rows with its
 * padding checked, the exact double oracle, the scalar per-block fallback
 * comparison, a token alone against its bits in a batch, and the loops over
 * shapes, extreme codes and odd gemm strides. A suite keeps what is its
 * own: which tables (x16 below), which CPU check, which tolerance choices
 * and token counts.
 *
 * Tolerance of the oracle (x16_eps_for): the integer sums are exact, only
 * the float steps round: per block one product of scales, one or two fmas
 * and the running sum, so |err| <= 5e-6 M up to n = 2560 (three times that
 * above), where M = sum_i a_i |xq_i| is the magnitude of the terms the
 * kernel adds: a_i = |w_i| where a block's exact integer sum is scaled once
 * (q4_0, q8_0, and q6_K, whose -32 offset is subtracted in the integer
 * sum), |d sc q_i| + |dmin m| for q4_K (d I and dmin M round separately).
 * Against the scalar fallback (another summation order) 2 eps M, or the
 * same bits where the suite asks for them. */
#ifndef DN_X16_SUITE_H
#define DN_X16_SUITE_H
#include <stddef.h>
#include <stdint.h>
#include "kernels/kernels.h"

/* xorshift state of the suite's random data (seed it per test) and draws
 * from it: 32 bits, uniform in [-1, 1), activation-like (tu_rand_act). */
extern uint64_t x16_rng;
uint32_t x16_rand_u32(void);
float x16_rand_unit(void);
float x16_rand_act(void);

int x16_is_k(int32_t bt);   /* q4_K or q6_K: q8_K activations, 256-element blocks */

typedef struct x16_mat {
    int32_t xt, bt;       /* x16 type and its base type */
    int64_t rows, cols;
    uint8_t *wq, *wx;     /* base-layout rows, repacked groups */
    float *wd;            /* dequantized rows */
    float *wa;            /* term magnitudes a_i (see top, or the suite's fill) */
    uint64_t brb, xrb;    /* row bytes: base, x16 */
} x16_mat;

/* Block blk of base type bt set to an extreme: mode 1 every code at its
 * top, 2 at its bottom (scales 3), 3 random ends with edge scales (65504,
 * -65504, 2^-24, -3, 0, 1e-5), 4 random ends with large scales (0.5 ..
 * 99.5). q4_0: nibbles 15 / 0; q8_0: +127 / -128; q4_K: scales and mins 63
 * (random bytes in modes 3, 4), codes 15 / 0; q6_K: codes 63 / 0 and
 * scales 127 / -128. */
void x16_extreme_block(int32_t bt, uint8_t *blk, int mode);
/* a_i of one block's elements (see top) from its bytes and dequantized w. */
void x16_block_mags(int32_t bt, const uint8_t *blk, const float *w, float *a);

/* How x16_mat_make_with fills a matrix (NULL members: the defaults). */
typedef struct x16_fill {
    float (*value)(void);                                   /* x16_rand_unit */
    void (*block)(int32_t bt, uint8_t *blk, int mode);      /* x16_extreme_block */
    void (*mags)(int32_t bt, const uint8_t *blk, const float *w, float *a);   /* x16_block_mags */
} x16_fill;
/* rows x cols of x16 type xt: values * 0.05 (1 + r % 5) quantized, every
 * block overwritten by fill->block when mode != 0, dequantized, a_i, and
 * the groups of 16 rows repacked. */
void x16_mat_make_with(x16_mat *m, int32_t xt, int64_t rows, int64_t cols, int mode, const x16_fill *fill);
void x16_mat_make(x16_mat *m, int32_t xt, int64_t rows, int64_t cols, int mode);
void x16_mat_free(x16_mat *m);

/* nt x cols activations; xmode 0: random (one in 31 times 8), 1: +-1
 * exactly (every q = +-127). malloc'd. */
float *x16_make_acts(int64_t nt, int64_t cols, int xmode);
/* X prepared by table k for weights of type wt; *rb the row bytes. malloc'd. */
uint8_t *x16_prepare(const dn_kernels *k, int32_t wt, const float *X, int64_t nt, int64_t cols, size_t *rb);
/* Y = W X through dn_matmul_rows of table k on rows [0, split) and
 * [split, rows), ldy apart, the padding checked untouched. malloc'd. */
float *x16_matmul(const dn_kernels *k, const dn_matrix *W, const void *xq, int64_t nt, int64_t split, int64_t ldy);
/* x16_matmul on m's repacked groups, ldy = rows + 3. */
float *x16_run(const dn_kernels *k, const x16_mat *m, const void *xq, int64_t nt, int64_t split);

/* What a suite tests: set by its main before the tests run. */
typedef struct x16_suite {
    const char *name;                 /* in messages: "avx2", "neon" */
    const dn_kernels *levels[4];      /* the tables under test */
    int n_levels;
    int fallback_bits;                /* 1: the scalar fallback's bits exactly; 0: within 2 eps M */
    int skip_nonfinite;               /* the oracle passes where y and it are both not finite */
    void (*act_row)(int32_t at, const uint8_t *row, int64_t cols);   /* more checks of a prepared row of
                                                                     * activation type at (or NULL) */
    const dn_kernels *same_as;        /* NULL, or a table whose bits every level gives */
} x16_suite;
extern x16_suite x16;
/* Adds table k to the levels, and k's level with the other one-token
 * fetch (dn_kernels_with_fetch: page <-> lines) when it has one, so both
 * run on any CPU; returns that copy or NULL. The fetches change no bits. */
const dn_kernels *x16_add_level_both_fetches(const dn_kernels *k);
/* The largest |y - oracle| / M since the last reset (tests print it). */
extern double x16_worst;

double x16_eps_for(int64_t cols);
/* Y (nt x rows, ldy apart) against the exact double dot of m's dequantized
 * weights and xd (the prepared activations dequantized): x16_eps_for M. */
void x16_check_oracle(const x16_mat *m, const float *xd, int64_t nt, const float *Y, int64_t ldy, const char *what);
/* a and b (nt x rows, ldy apart) the same bits. */
void x16_same_bits(const float *a, const float *b, int64_t nt, int64_t rows, int64_t ldy, const char *what,
                   const x16_mat *m);

/* One batch of nt tokens on every level: the prepared activations are the
 * scalar table's blocks (and pass x16.act_row), dn_matmul_rows in two row
 * ranges against the oracle, the scalar fallback and x16.same_as, and a
 * token alone gets its bits in the batch. */
void x16_check(const x16_mat *m, int64_t nt, int xmode);

/* skip(cols, rows, nt): leave this case out (time); nt 0 asks for the
 * whole matrix. NULL: none. */
typedef int (*x16_skip_fn)(int64_t cols, int64_t rows, int64_t nt);
/* Random matrices of 1..4 row groups, cols {32, 96, 288, 2560} (q4_K,
 * q6_K: {256, 512, 768, 2560}), tokens 1..max_nt; then 32 x 6912 with 1
 * and big_nt tokens. Prints the worst. */
void x16_shapes(int32_t xt, uint64_t seed, int64_t max_nt, x16_skip_fn skip, int64_t big_nt);
/* 48 rows of each extreme mode (cols 768 for mode 3, else big_cols), with
 * 1 and many_nt tokens of +-1 and 3 random ones. Prints the worst. */
void x16_extremes(int32_t xt, uint64_t seed, const int *modes, int n_modes, int64_t big_cols, int64_t many_nt);
/* The gemm entry itself with strides the matmul never uses: groups 16 row
 * bytes + 8 apart from an odd address, activation rows an odd number of
 * bytes apart, ldy = 16 * groups + 5 with the padding untouched; 1..10
 * tokens against the oracle, the scalar fallback and x16.same_as. */
void x16_odd_strides(int32_t xt, uint64_t seed);
#endif
