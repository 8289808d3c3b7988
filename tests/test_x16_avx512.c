/* test_x16_avx512.c - the AVX-512 gemm kernels of the repacked q4_0x16 and
 * q8_0x16 weights (avx512_x16.c) against an exact double oracle on the
 * activations the table prepared, and against the scalar table's per-block
 * fallback on the same repacked matrix: tile tails (1..20 tokens, 16..64
 * rows, row ranges), block-group tails of the activation extras (cols not
 * a multiple of 256), extreme values (all weights at the ends of their
 * range, activations +-127) and batch-equals-single bits.
 * Tolerance as in test_kernels.c: integer block dots are exact, only float
 * rounding remains, |err| <= EPS_QUANT * sum |w_i xq_i| (one rounded
 * product per block and n/32 additions; for n = 6912, (216+2) 2^-24 <
 * 1.4e-5, so the bound grows with n there). Skipped (exit 77, a SKIP in
 * meson test) without an AVX-512 table (CPU or DANU_ISA below avx512). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"
#include "kernels/kernels.h"
#include "common/bytes.h"


static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint32_t rnd_u32(void) { return tu_rand_u32(&rng); }
static float rnd_unit(void) { return tu_rand_unit(&rng); }

typedef struct {
    int32_t xt, bt;       /* x16 type and its base type */
    int64_t rows, cols;
    uint8_t *wq, *wx;     /* base-layout rows, repacked groups */
    float *wd;            /* dequantized rows */
    uint64_t brb, xrb;
} mat;

/* mode 0: random; 1: every weight at its top code; 2: bottom code; 3: random ends */
static void mat_make(mat *m, int32_t xt, int64_t rows, int64_t cols, int mode)
{
    m->xt = xt; m->bt = dn_x16_base(xt); m->rows = rows; m->cols = cols;
    m->brb = dn_type_row_bytes(m->bt, (uint64_t)cols);
    m->xrb = dn_type_row_bytes(xt, (uint64_t)cols);
    ck_assert(m->brb > 0 && m->xrb == m->brb);
    m->wq = malloc(m->brb * rows);
    m->wx = malloc(m->xrb * rows);
    m->wd = malloc(sizeof(float) * rows * cols);
    float *src = malloc(sizeof(float) * cols);
    for (int64_t r = 0; r < rows; r++) {
        uint8_t *row = m->wq + r * m->brb;
        for (int64_t c = 0; c < cols; c++) src[c] = rnd_unit() * 0.05f * (1 + r % 5);
        ck_assert_int_eq(dn_quantize_row(m->bt, src, row, cols), 0);
        if (mode) {
            const int bb = m->bt == DANU_TYPE_Q4_0 ? 18 : 34;
            for (int64_t b = 0; b < cols / 32; b++) {
                uint8_t *blk = row + b * bb;
                /* large scales: the float part must not lose the int sums */
                const uint16_t d = dn_f32_to_fp16(mode == 3 ? 0.5f + (float)(rnd_u32() % 100) : 3.0f);
                memcpy(blk, &d, 2);
                for (int i = 2; i < bb; i++) {
                    const int top = mode == 1 || (mode == 3 && (rnd_u32() & 1));
                    blk[i] = m->bt == DANU_TYPE_Q4_0 ? (top ? 0xFF : 0x00) : (top ? 0x7F : 0x80);
                }
            }
        }
        ck_assert_int_eq(dn_dequantize_row(m->bt, row, m->wd + r * cols, cols), 0);
    }
    for (int64_t g = 0; g < rows / 16; g++)
        ck_assert_int_eq(dn_x16_repack(xt, m->wq + g * 16 * m->brb, m->brb,
                                       m->wx + g * 16 * m->xrb, cols), 0);
    free(src);
}

static void mat_free(mat *m) { free(m->wq); free(m->wx); free(m->wd); }

/* Y (ldy = rows + 3, padding checked untouched) of table k on the repacked
 * matrix, rows [0, split) and [split, rows). */
static float *run(const dn_kernels *k, const mat *m, const uint8_t *xq, int64_t nt, int64_t split)
{
    const int64_t ldy = m->rows + 3;
    float *Y = malloc(sizeof(float) * ldy * nt);
    for (int64_t i = 0; i < ldy * nt; i++) Y[i] = -777.0f;
    const dn_matrix W = { .data = m->wx, .type = m->xt, .rows = m->rows, .cols = m->cols, .row_bytes = m->xrb };
    if (split > 0) dn_matmul_rows(k, &W, xq, nt, Y, ldy, 0, split);
    if (split < m->rows) dn_matmul_rows(k, &W, xq, nt, Y, ldy, split, m->rows);
    for (int64_t t = 0; t < nt; t++)
        for (int64_t i = m->rows; i < ldy; i++)
            CHECK(Y[t * ldy + i] == -777.0f, "wrote outside its rows");
    return Y;
}

static double worst;

/* xmode 0: random activations; 1: +-1 exactly (every q = +-127) */
static void check(const mat *m, int64_t nt, int xmode)
{
    const dn_kernels *k = dn_kernels_for_isa(DN_ISA_AVX512), *sc = dn_kernels_for_isa(DN_ISA_SCALAR);
    const int64_t rows = m->rows, cols = m->cols, ldy = rows + 3;
    ck_assert_ptr_nonnull(k->gemm[m->xt]);
    ck_assert_int_eq(k->act_type[m->xt], DANU_TYPE_Q8_0);
    ck_assert_int_eq(sc->act_type[m->xt], DANU_TYPE_Q8_0);
    float *X = malloc(sizeof(float) * nt * cols), *xd = malloc(sizeof(float) * nt * cols);
    for (int64_t i = 0; i < nt * cols; i++)
        X[i] = xmode ? ((rnd_u32() & 1) ? 1.0f : -1.0f) : rnd_unit() * (rnd_u32() % 31 == 0 ? 8.0f : 1.0f);
    const size_t xrb = dn_act_row_bytes(k, m->xt, cols), srb = dn_act_row_bytes(sc, m->xt, cols);
    uint8_t *xq = malloc(xrb * nt), *xs = malloc(srb * nt);
    dn_prepare_acts(k, m->xt, X, nt, cols, xq);
    dn_prepare_acts(sc, m->xt, X, nt, cols, xs);
    const int64_t split = 16 * ((rows / 16) / 2);
    float *Y = run(k, m, xq, nt, split), *Ys = run(sc, m, xs, nt, split);
    for (int64_t t = 0; t < nt; t++) {
        /* the q8_0 blocks are the scalar ones (extras come after them) */
        CHECK(!memcmp(xq + t * xrb, xs + t * srb, dn_type_row_bytes(DANU_TYPE_Q8_0, cols)), "q8_0 blocks differ");
        CHECK(dn_dequantize_row(DANU_TYPE_Q8_0, xq + t * xrb, xd + t * cols, cols) == 0, "dequantize");
    }
    const double eps = 5e-6 * (cols > 2560 ? 3 : 1);
    for (int64_t t = 0; t < nt; t++)
        for (int64_t r = 0; r < rows; r++) {
            double exact = 0, mag = 0;
            for (int64_t c = 0; c < cols; c++) {
                const double p = (double)m->wd[r * cols + c] * xd[t * cols + c];
                exact += p;
                mag += fabs(p);
            }
            const double y = Y[t * ldy + r], ys = Ys[t * ldy + r];
            if (mag > 0 && fabs(y - exact) / mag > worst) worst = fabs(y - exact) / mag;
            CHECK(fabs(y - exact) <= eps * mag + 1e-30, "%s cols=%ld rows=%ld nt=%ld [%ld,%ld]: %.9g vs oracle %.9g",
                  dn_type_get(m->bt)->name, (long)cols, (long)rows, (long)nt, (long)t, (long)r, y, exact);
            CHECK(fabs(y - ys) <= 2 * eps * mag + 1e-30, "%s cols=%ld [%ld,%ld]: %.9g vs scalar fallback %.9g",
                  dn_type_get(m->bt)->name, (long)cols, (long)t, (long)r, y, ys);
        }
    /* a token alone (matvec tiles) gets the bits it gets in the batch */
    for (int64_t t = 0; t < nt; t += nt > 4 ? nt / 3 : 1) {
        float *Y1 = run(k, m, xq + t * xrb, 1, split);
        for (int64_t r = 0; r < rows; r++)
            CHECK(!memcmp(&Y1[r], &Y[t * ldy + r], 4), "token %ld row %ld: alone %.9g, in batch %.9g",
                  (long)t, (long)r, Y1[r], Y[t * ldy + r]);
        free(Y1);
    }
    free(Y); free(Ys); free(X); free(xd); free(xq); free(xs);
}

static const int32_t xtypes[] = { DN_TYPE_Q4_0_X16, DN_TYPE_Q8_0_X16 };

START_TEST(test_x16_shapes)
{
    const int32_t xt = xtypes[_i];
    static const int64_t cols_set[] = { 32, 96, 288, 2560 };
    rng = 12345 + (uint64_t)xt;
    worst = 0;
    for (int ci = 0; ci < 4; ci++)
        for (int64_t rows = 16; rows <= 64; rows += 16) {
            mat m;
            mat_make(&m, xt, rows, cols_set[ci], 0);
            for (int64_t nt = 1; nt <= 20; nt++) {
                if (cols_set[ci] == 2560 && nt % 4 != 1 && nt != 8 && nt != 16) continue;
                check(&m, nt, 0);
            }
            mat_free(&m);
        }
    mat m;
    mat_make(&m, xt, 32, 6912, 0);
    check(&m, 1, 0);
    check(&m, 9, 0);
    mat_free(&m);
    printf("  %s x16 shapes: worst |y - oracle| / sum|w x| %.1e\n", dn_type_get(dn_x16_base(xt))->name, worst);
}
END_TEST

START_TEST(test_x16_extremes)
{
    const int32_t xt = xtypes[_i];
    rng = 777 + (uint64_t)xt;
    worst = 0;
    for (int mode = 1; mode <= 3; mode++) {
        mat m;
        mat_make(&m, xt, 48, 6912, mode);
        check(&m, 1, 1);
        check(&m, 11, 1);
        check(&m, 3, 0);
        mat_free(&m);
    }
    printf("  %s x16 extremes: worst %.1e\n", dn_type_get(dn_x16_base(xt))->name, worst);
}
END_TEST

int main(void)
{
    if (!dn_kernels_for_isa(DN_ISA_AVX512)) {
        printf("no AVX-512 table (CPU without AVX-512, or DANU_ISA below avx512): skipped\n");
        return 77;
    }
    Suite *s = suite_create("x16_avx512");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, test_x16_shapes, 0, 2);
    tcase_add_loop_test(tc, test_x16_extremes, 0, 2);
    suite_add_tcase(s, tc);
    const int failed = tu_run(s);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
