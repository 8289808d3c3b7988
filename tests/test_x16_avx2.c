/* test_x16_avx2.c - the AVX2 gemm kernels of the repacked weights
 * q4_0x16, q8_0x16 (avx2_x16.c), q4_Kx16, q6_Kx16 (avx2_x16k.c) and the
 * q8_0 activation extras they read (avx2_internal.h), through the x16
 * suite (x16_suite.h):
 *  - the extras of every prepared q8_0 row hold -8 * sum(qs) and d of
 *    each block, zero past the end of the row, and the activation blocks
 *    before them are the scalar table's bytes;
 *  - dn_matmul_rows on repacked matrices against an exact double oracle
 *    on the prepared activations and against the scalar per-block
 *    fallback: 1..4 row groups, every token count 1..12 (tile tails),
 *    split row ranges, cols not a multiple of 256 (extras tails);
 *  - the gemm called directly with odd strides: w groups a few bytes
 *    apart beyond 16 rows and at an odd address, activation rows at an
 *    odd stride, odd ldy, output padding untouched;
 *  - extreme values: all nibbles 0 / 15, q8 codes -128 / 127 (stored 0 /
 *    255), q4_K scales and mins 63, q6_K codes 0 / 63 and scales -128 /
 *    127, activations all +-127, d at the fp16 ends (65504, subnormal,
 *    negative, zero);
 *  - a token alone gets the same bits as in a batch (the kernels run the
 *    same float operations per output in every tile shape).
 * Tolerance: x16_suite.h's, |err| <= 5e-6 M up to n = 2560 (three times
 * that above), M = sum_i a_i |xq_i|; 2 eps M against the scalar fallback.
 * Skipped (exit 77) without AVX2.
 * test_x16_avx2vnni.c runs this file against the avx2vnni table (X16_ISA)
 * and also checks its results are the avx2 table's bits. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"
#include "x16_suite.h"
#include "kernels/kernels.h"
#include "kernels/avx2_internal.h"
#include "common/bytes.h"

/* the level under test (test_x16_avx2vnni.c sets them) */
#ifndef X16_ISA
#define X16_ISA DN_ISA_AVX2
#define X16_NAME "avx2"
#endif

/* The extras of one prepared q8_0 row against its blocks. */
static void check_extras(int32_t at, const uint8_t *row, int64_t cols)
{
    if (at != DANU_TYPE_Q8_0) return;   /* q8_K rows (q4_K, q6_K weights) have none */
    const int64_t nb = cols / 32;
    const uint8_t *e = row + ((34 * nb + 63) & ~(int64_t)63);
    for (int64_t b = 0; b < (nb + 7) / 8 * 8; b++) {
        const uint8_t *eb = e + (b / 8) * DN_A2_XG + 4 * (b % 8);
        int32_t ns8, want = 0;
        float dx, wdx = 0.0f;
        memcpy(&ns8, eb + DN_A2_NS8, 4);
        memcpy(&dx, eb + DN_A2_DX, 4);
        if (b < nb) {
            const dn_block_q8_0 *blk = (const dn_block_q8_0 *)(const void *)(row + 34 * b);
            for (int j = 0; j < 32; j++) want -= 8 * blk->qs[j];
            wdx = dn_fp16_to_f32(blk->d);
        }
        CHECK(ns8 == want && !memcmp(&dx, &wdx, 4), "extras of block %ld: ns8 %d (want %d), dx %g (want %g)",
              (long)b, ns8, want, dx, wdx);
    }
}

static const int32_t xtypes[] = { DN_TYPE_Q4_0_X16, DN_TYPE_Q8_0_X16, DN_TYPE_Q4_K_X16, DN_TYPE_Q6_K_X16 };
#define N_XTYPES ((int)(sizeof xtypes / sizeof xtypes[0]))

/* time: 2560 columns with 1..4, 7 and 12 tokens */
static int skip(int64_t cols, int64_t rows, int64_t nt)
{
    (void)rows;
    return cols == 2560 && nt > 4 && nt != 7 && nt != 12;
}

START_TEST(test_x16_shapes)
{
    x16_shapes(xtypes[_i], 4242 + (uint64_t)xtypes[_i], 12, skip, 7);
}
END_TEST

START_TEST(test_x16_extremes)
{
    static const int modes[] = { 1, 2, 3, 4 };
    x16_extremes(xtypes[_i], 999 + (uint64_t)xtypes[_i], modes, 4, 6912, 8);
}
END_TEST

START_TEST(test_x16_odd_strides)
{
    x16_odd_strides(xtypes[_i], 31337 + (uint64_t)xtypes[_i]);
}
END_TEST

int main(void)
{
    if (!dn_kernels_for_isa(X16_ISA)) {
        printf("no %s table (CPU without it, or DANU_ISA below it): skipped\n", X16_NAME);
        return 77;
    }
    x16.name = X16_NAME;
    /* both one-token fetches (dn_kernels_with_fetch) */
    const dn_kernels *other = x16_add_level_both_fetches(dn_kernels_for_isa(X16_ISA));
    x16.act_row = check_extras;
    /* another level with the same integer sums and float steps (avx2vnni
     * against avx2), or avx2 with the other fetch: the same bits */
    x16.same_as = X16_ISA != DN_ISA_AVX2 ? dn_kernels_for_isa(DN_ISA_AVX2) : other;
    Suite *s = suite_create("x16_" X16_NAME);
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, test_x16_shapes, 0, N_XTYPES);
    tcase_add_loop_test(tc, test_x16_extremes, 0, N_XTYPES);
    tcase_add_loop_test(tc, test_x16_odd_strides, 0, N_XTYPES);
    suite_add_tcase(s, tc);
    const int failed = tu_run(s);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
