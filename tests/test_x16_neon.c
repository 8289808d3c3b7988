/* test_x16_neon.c - the AArch64 gemm kernels of the repacked weights
 * q4_0x16, q8_0x16, q4_Kx16, q6_Kx16 (neon_x16.h) on every Arm level
 * this CPU runs: neon_dot (SDOT) and neon_i8mm (SMMLA for groups of 4
 * tokens, SDOT for the 1..3 left), through the x16 suite (x16_suite.h) the
 * x86 x16 suites run, stricter:
 *  - the prepared activations are the scalar table's bytes;
 *  - dn_matmul_rows on repacked matrices: the same bits as the scalar
 *    per-block fallback (matmul.c), since the integer sums are exact and
 *    the float steps per block are scalar.c's in its order; and within
 *    5e-6 M (M = sum |w_i xq_i| with q4_K's d and dmin terms apart, as in
 *    x16_suite.h) of an exact double oracle: 1..4 row groups, token
 *    counts 1..12 (SDOT tiles of 1..4 / 1..2 tokens, SMMLA groups and
 *    every remainder), split row ranges;
 *  - the gemm called directly with odd strides (groups a few bytes apart
 *    from an odd address, activation rows at an odd stride, odd ldy,
 *    padding untouched): the scalar fallback's bits;
 *  - extreme codes and scales (nibbles 0 / 15, q8 -128 / 127, q4_K
 *    scales and mins 63, q6_K codes 0 / 63 and scales -128 / 127,
 *    activations all +-127, d at the fp16 ends);
 *  - a token alone gets its bits in a batch; neon_dot and neon_i8mm agree
 *    bit for bit (both give the scalar fallback's bits);
 *  - dispatch: neon_i8mm ranks above neon_dot, both answer to the public
 *    neon level, their repack map names the four x16 types and their
 *    activation rows are the scalar table's size; baseline NEON has no x16
 *    gemm (no repack) and its per-block fallback gives the scalar bits.
 * DN_TEST_LIGHT=1 shrinks the shapes (qemu). Skipped (exit 77) without any
 * NEON table (x86, or DANU_ISA below neon). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include "testutil.h"
#include "x16_suite.h"
#include "kernels/kernels.h"

static const int32_t xtypes[] = { DN_TYPE_Q4_0_X16, DN_TYPE_Q8_0_X16, DN_TYPE_Q4_K_X16, DN_TYPE_Q6_K_X16 };
#define N_XTYPES ((int)(sizeof xtypes / sizeof xtypes[0]))

static int light(void) { return getenv("DN_TEST_LIGHT") != NULL; }

/* time: 2560 columns with 1..5, 7 and 12 tokens; light: no 48-row
 * matrices, no 10 or 11 tokens */
static int skip(int64_t cols, int64_t rows, int64_t nt)
{
    if (!nt) return light() && rows == 48;
    return (cols == 2560 && nt > 5 && nt != 7 && nt != 12) || (light() && nt > 9 && nt != 12);
}

START_TEST(test_x16_neon_shapes)
{
    x16_shapes(xtypes[_i], 4242 + (uint64_t)xtypes[_i], 12, skip, 5);
}
END_TEST

START_TEST(test_x16_neon_extremes)
{
    static const int modes[] = { 1, 2, 3, 4 };
    x16_extremes(xtypes[_i], 999 + (uint64_t)xtypes[_i], modes, 4, light() ? 2560 : 6912, 8);
}
END_TEST

START_TEST(test_x16_neon_odd_strides)
{
    x16_odd_strides(xtypes[_i], 31337 + (uint64_t)xtypes[_i]);
}
END_TEST

/* Level ranking, repack maps, and baseline NEON's per-block fallback. */
START_TEST(test_x16_neon_dispatch)
{
    const dn_kernels *neon = dn_kernels_for_isa(DN_ISA_NEON), *dot = dn_kernels_for_isa(DN_ISA_NEON_DOT);
    const dn_kernels *mm = dn_kernels_for_isa(DN_ISA_NEON_I8MM), *best = dn_kernels_get(DANU_ISA_AUTO);
    const dn_kernels *sc = dn_kernels_for_isa(DN_ISA_SCALAR);
    ck_assert_ptr_nonnull(neon);
    if (mm) {
        ck_assert_ptr_nonnull(dot);   /* i8mm needs the dot product too */
        ck_assert_int_eq(best->isa, DN_ISA_NEON_I8MM);
        ck_assert_int_eq(dn_kernels_get(DANU_ISA_NEON)->isa, DN_ISA_NEON_I8MM);
        ck_assert_int_eq(dn_kernels_public_isa(mm), DANU_ISA_NEON);
        /* everything but the x16 gemms is neon_dot's */
        ck_assert_ptr_eq(mm->vec_dot[DANU_TYPE_Q4_0], dot->vec_dot[DANU_TYPE_Q4_0]);
        ck_assert_ptr_eq(mm->att_scores, dot->att_scores);
        ck_assert_ptr_ne(mm->gemm[DN_TYPE_Q4_0_X16], dot->gemm[DN_TYPE_Q4_0_X16]);
    } else if (dot) {
        ck_assert_int_eq(best->isa, DN_ISA_NEON_DOT);
    } else {
        ck_assert_int_eq(best->isa, DN_ISA_NEON);
    }
    if (dot) ck_assert_int_eq(dn_kernels_public_isa(dot), DANU_ISA_NEON);
    ck_assert_int_eq(dn_kernels_public_isa(neon), DANU_ISA_NEON);
    for (int i = 0; i < N_XTYPES; i++) {
        const int32_t xt = xtypes[i], bt = dn_x16_base(xt);
        for (int l = 0; l < x16.n_levels; l++) {
            ck_assert_int_eq(x16.levels[l]->repack[bt], xt);
            ck_assert_ptr_nonnull(x16.levels[l]->gemm[xt]);
            /* the scalar table's activation rows (no extras), at the odd strides' cols */
            const int64_t cols = x16_is_k(bt) ? 768 : 352;
            ck_assert_uint_eq(dn_act_row_bytes(x16.levels[l], xt, cols), dn_act_row_bytes(sc, xt, cols));
        }
        ck_assert_int_eq(neon->repack[bt], 0);
        ck_assert_ptr_null(neon->gemm[xt]);
        /* baseline NEON: matmul.c's per-block fallback, the scalar bits */
        x16_rng = 77 + (uint64_t)xt;
        x16_mat m;
        x16_mat_make(&m, xt, 32, x16_is_k(bt) ? 512 : 96, 0);
        const int64_t nt = 3;
        float *X = x16_make_acts(nt, m.cols, 0);
        size_t srb, nrb;
        uint8_t *xs = x16_prepare(sc, xt, X, nt, m.cols, &srb), *xn = x16_prepare(neon, xt, X, nt, m.cols, &nrb);
        float *Ys = x16_run(sc, &m, xs, nt, 16), *Yn = x16_run(neon, &m, xn, nt, 16);
        x16_same_bits(Yn, Ys, nt, m.rows, m.rows + 3, "neon fallback", &m);
        free(Ys); free(Yn); free(X); free(xs); free(xn);
        x16_mat_free(&m);
    }
}
END_TEST

int main(void)
{
    if (!dn_kernels_for_isa(DN_ISA_NEON)) {
        printf("no NEON table (not AArch64, or DANU_ISA below neon): skipped\n");
        return 77;
    }
    x16.name = "neon";
    x16.fallback_bits = 1;
    x16.skip_nonfinite = 1;
    const int isas[] = { DN_ISA_NEON_DOT, DN_ISA_NEON_I8MM };
    for (int i = 0; i < 2; i++)
        if (dn_kernels_for_isa(isas[i])) x16.levels[x16.n_levels++] = dn_kernels_for_isa(isas[i]);
    printf("x16 levels:");
    for (int i = 0; i < x16.n_levels; i++) printf(" %s", x16.levels[i]->name);
    printf("%s\n", x16.n_levels ? "" : " none (baseline NEON: fallback only)");
    Suite *s = suite_create("x16_neon");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 1200);
    tcase_add_test(tc, test_x16_neon_dispatch);
    if (x16.n_levels) {
        tcase_add_loop_test(tc, test_x16_neon_shapes, 0, N_XTYPES);
        tcase_add_loop_test(tc, test_x16_neon_extremes, 0, N_XTYPES);
        tcase_add_loop_test(tc, test_x16_neon_odd_strides, 0, N_XTYPES);
    }
    suite_add_tcase(s, tc);
    const int failed = tu_run(s);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
