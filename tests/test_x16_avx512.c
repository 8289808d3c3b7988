/* test_x16_avx512.c - the AVX-512 gemm kernels of the repacked q4_0x16,
 * q8_0x16, q4_Kx16 and q6_Kx16 weights (avx512_x16.c, avx512_x16k.c), both
 * fetches' (dn_kernels_with_fetch), through the x16 suite (x16_suite.h):
 * against an exact double oracle on the activations the table prepared,
 * and against the scalar table's per-block fallback on the same repacked
 * matrix: tile tails (1..20 tokens, 16..64 rows, row ranges), block-group
 * tails of the activation extras (cols not a multiple of 256), extreme
 * values (all weights at the ends of their range, activations +-127),
 * batch-equals-single bits and the gemm at odd strides.
 * Tolerance as in test_kernels.c: integer block dots are exact, only float
 * rounding remains, |err| <= EPS_QUANT * sum |w_i xq_i| (one rounded
 * product per block and n/32 additions; for n = 6912, (216+2) 2^-24 <
 * 1.4e-5, so the bound grows with n there): x16_eps_for. Skipped (exit 77,
 * a SKIP in meson test) without an AVX-512 table (CPU or DANU_ISA below
 * avx512). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include "testutil.h"
#include "x16_suite.h"
#include "kernels/kernels.h"

/* the K-quants here too for the two fetches' gemms (test_x16k_avx512.c
 * checks the dispatched one against the fallback and the reference) */
static const int32_t xtypes[] = { DN_TYPE_Q4_0_X16, DN_TYPE_Q8_0_X16, DN_TYPE_Q4_K_X16, DN_TYPE_Q6_K_X16 };
#define N_XTYPES ((int)(sizeof xtypes / sizeof xtypes[0]))

/* time: 2560 columns with 1, 5, 9, 13, 17, 8 and 16 tokens */
static int skip(int64_t cols, int64_t rows, int64_t nt)
{
    (void)rows;
    return cols == 2560 && nt && nt % 4 != 1 && nt != 8 && nt != 16;
}

START_TEST(test_x16_shapes)
{
    x16_shapes(xtypes[_i], 12345 + (uint64_t)xtypes[_i], 20, skip, 9);
}
END_TEST

START_TEST(test_x16_extremes)
{
    /* top codes, bottom codes, random ends with large scales */
    static const int modes[] = { 1, 2, 4 };
    x16_extremes(xtypes[_i], 777 + (uint64_t)xtypes[_i], modes, 3, 6912, 11);
}
END_TEST

START_TEST(test_x16_odd_strides)
{
    x16_odd_strides(xtypes[_i], 31337 + (uint64_t)xtypes[_i]);
}
END_TEST

int main(void)
{
    if (!dn_kernels_for_isa(DN_ISA_AVX512)) {
        printf("no AVX-512 table (CPU without AVX-512, or DANU_ISA below avx512): skipped\n");
        return 77;
    }
    x16.name = "avx512";
    /* both one-token fetches, and each gives the other's bits */
    x16.same_as = x16_add_level_both_fetches(dn_kernels_for_isa(DN_ISA_AVX512));
    Suite *s = suite_create("x16_avx512");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, test_x16_shapes, 0, N_XTYPES);
    tcase_add_loop_test(tc, test_x16_extremes, 0, N_XTYPES);
    tcase_add_loop_test(tc, test_x16_odd_strides, 0, N_XTYPES);
    suite_add_tcase(s, tc);
    const int failed = tu_run(s);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
