/* test_x16_neon.c - the AArch64 gemm kernels of the repacked weights
 * q4_0x16, q8_0x16, q4_Kx16, q6_Kx16 (neon_x16.h) on every Arm level
 * this CPU runs: neon_dot (SDOT) and neon_i8mm (SMMLA for groups of 4
 * tokens, SDOT for the 1..3 left). The checks of the x86 x16 suites, stricter:
 *  - the prepared activations are the scalar table's bytes;
 *  - dn_matmul_rows on repacked matrices: the same bits as the scalar
 *    per-block fallback (matmul.c), since the integer sums are exact and
 *    the float steps per block are scalar.c's in its order; and within
 *    5e-6 M (M = sum |w_i xq_i| with q4_K's d and dmin terms apart, as in
 *    test_x16_avx2.c) of an exact double oracle: 1..4 row groups, token
 *    counts 1..12 (SDOT tiles of 1..4 / 1..2 tokens, SMMLA groups and
 *    every remainder), split row ranges;
 *  - the gemm called directly with odd strides (groups a few bytes apart
 *    from an odd address, activation rows at an odd stride, odd ldy,
 *    padding untouched);
 *  - extreme codes and scales (nibbles 0 / 15, q8 -128 / 127, q4_K
 *    scales and mins 63, q6_K codes 0 / 63 and scales -128 / 127,
 *    activations all +-127, d at the fp16 ends);
 *  - a token alone gets its bits in a batch; neon_dot and neon_i8mm agree
 *    bit for bit;
 *  - dispatch: neon_i8mm ranks above neon_dot, both answer to the public
 *    neon level, their repack map names the four x16 types; baseline NEON
 *    has no x16 gemm (no repack) and its per-block fallback gives the
 *    scalar bits.
 * Skipped (exit 77) without any NEON table (x86, or DANU_ISA below neon). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"
#include "kernels/kernels.h"
#include "common/bytes.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd_u32(void) { return tu_rand_u32(&rng); }
static float rnd_unit(void) { return tu_rand_unit(&rng); }

static const int32_t xtypes[] = { DN_TYPE_Q4_0_X16, DN_TYPE_Q8_0_X16, DN_TYPE_Q4_K_X16, DN_TYPE_Q6_K_X16 };
#define N_XTYPES ((int)(sizeof xtypes / sizeof xtypes[0]))

/* the x16 levels under test (NULL-free), and how many */
static const dn_kernels *levels[4];
static int n_levels;

static int light(void) { return getenv("DN_TEST_LIGHT") != NULL; }

typedef struct {
    int32_t xt, bt;
    int64_t rows, cols;
    uint8_t *wq, *wx;    /* stored rows, repacked groups */
    float *wd, *wa;      /* dequantized rows, term magnitudes */
    uint64_t brb, xrb;
} mat;

static int is_k(int32_t bt) { return bt == DANU_TYPE_Q4_K || bt == DANU_TYPE_Q6_K; }

/* |w_i|, or for q4_K |d sc q| + |dmin m| (the two products round apart) */
static float term_mag(int32_t bt, const uint8_t *row, int64_t c, float w)
{
    if (bt != DANU_TYPE_Q4_K) return fabsf(w);
    const uint8_t *b = row + (c / 256) * 144, *q = b + 4;
    const int j = (int)(c % 256 / 32);
    uint16_t dh, mh;
    memcpy(&dh, b, 2);
    memcpy(&mh, b + 2, 2);
    const int sc = j < 4 ? q[j] & 63 : (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    const int m = j < 4 ? q[j + 4] & 63 : (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    const uint8_t qb = b[16 + 32 * (j / 2) + c % 32];
    const int v = j % 2 ? qb >> 4 : qb & 0xF;
    return fabsf(dn_fp16_to_f32(dh) * (float)(sc * v)) + fabsf(dn_fp16_to_f32(mh) * (float)m);
}

static uint16_t edge_scale(int mode)
{
    static const float ends[] = { 65504.0f, -65504.0f, 5.9604645e-8f, -3.0f, 0.0f, 1e-5f };
    if (mode == 3) return dn_f32_to_fp16(ends[rnd_u32() % 6]);
    return dn_f32_to_fp16(mode == 4 ? 0.5f + (float)(rnd_u32() % 100) : 3.0f);
}

/* mode 1: every code at its top, 2: bottom, 3: random codes, edge scales,
 * 4: random codes, large scales */
static void extreme_block(int32_t bt, uint8_t *blk, int mode)
{
    const int top = mode == 1;
    switch (bt) {
    case DANU_TYPE_Q4_0:
    case DANU_TYPE_Q8_0: {
        const int bb = bt == DANU_TYPE_Q4_0 ? 18 : 34;
        const uint16_t d = edge_scale(mode);
        memcpy(blk, &d, 2);
        for (int i = 2; i < bb; i++) {
            const int t = top || (mode >= 3 && (rnd_u32() & 1));
            blk[i] = bt == DANU_TYPE_Q4_0 ? (t ? 0xFF : 0x00) : (t ? 0x7F : 0x80);
        }
        break;
    }
    case DANU_TYPE_Q4_K: {
        const uint16_t d = edge_scale(mode), dmin = edge_scale(mode);
        memcpy(blk, &d, 2);
        memcpy(blk + 2, &dmin, 2);
        for (int i = 4; i < 16; i++) blk[i] = mode >= 3 ? (uint8_t)rnd_u32() : 0xFF;
        for (int i = 16; i < 144; i++) blk[i] = mode >= 3 ? (uint8_t)rnd_u32() : top ? 0xFF : 0x00;
        break;
    }
    default: {
        for (int i = 0; i < 192; i++) blk[i] = mode >= 3 ? (uint8_t)rnd_u32() : top ? 0xFF : 0x00;
        for (int i = 192; i < 208; i++) blk[i] = mode >= 3 ? (uint8_t)rnd_u32() : top ? 0x7F : 0x80;
        const uint16_t d = edge_scale(mode);
        memcpy(blk + 208, &d, 2);
        break;
    }
    }
}

static void mat_make(mat *m, int32_t xt, int64_t rows, int64_t cols, int mode)
{
    m->xt = xt; m->bt = dn_x16_base(xt); m->rows = rows; m->cols = cols;
    m->brb = dn_type_row_bytes(m->bt, (uint64_t)cols);
    m->xrb = dn_type_row_bytes(xt, (uint64_t)cols);
    ck_assert(m->brb > 0 && m->xrb > 0);
    m->wq = malloc(m->brb * rows);
    m->wx = malloc(m->xrb * rows);
    m->wd = malloc(sizeof(float) * rows * cols);
    m->wa = malloc(sizeof(float) * rows * cols);
    float *src = malloc(sizeof(float) * cols);
    const int64_t bs = dn_type_block_size(m->bt), bb = (int64_t)dn_type_get(m->bt)->type_size;
    for (int64_t r = 0; r < rows; r++) {
        uint8_t *row = m->wq + r * m->brb;
        for (int64_t c = 0; c < cols; c++) src[c] = rnd_unit() * 0.05f * (1 + r % 5);
        ck_assert_int_eq(dn_quantize_row(m->bt, src, row, cols), 0);
        for (int64_t b = 0; mode && b < cols / bs; b++) extreme_block(m->bt, row + b * bb, mode);
        ck_assert_int_eq(dn_dequantize_row(m->bt, row, m->wd + r * cols, cols), 0);
        for (int64_t c = 0; c < cols; c++) m->wa[r * cols + c] = term_mag(m->bt, row, c, m->wd[r * cols + c]);
    }
    for (int64_t g = 0; g < rows / 16; g++)
        ck_assert_int_eq(dn_x16_repack(xt, m->wq + g * 16 * m->brb, m->brb, m->wx + g * 16 * m->xrb, cols), 0);
    free(src);
}

static void mat_free(mat *m) { free(m->wq); free(m->wx); free(m->wd); free(m->wa); }

/* Y (ldy = rows + 3, padding checked) through dn_matmul_rows on [0, split), [split, rows) */
static float *run(const dn_kernels *k, const mat *m, const uint8_t *xq, int64_t nt, int64_t split)
{
    const int64_t ldy = m->rows + 3;
    float *Y = malloc(sizeof(float) * ldy * nt);
    for (int64_t i = 0; i < ldy * nt; i++) Y[i] = -777.0f;
    const dn_matrix W = { .data = m->wx, .type = m->xt, .rows = m->rows, .cols = m->cols, .row_bytes = m->xrb };
    if (split > 0) CHECK_OK(dn_matmul_rows(k, &W, xq, nt, Y, ldy, 0, split));
    if (split < m->rows) CHECK_OK(dn_matmul_rows(k, &W, xq, nt, Y, ldy, split, m->rows));
    for (int64_t t = 0; t < nt; t++)
        for (int64_t i = m->rows; i < ldy; i++) CHECK(Y[t * ldy + i] == -777.0f, "%s wrote outside its rows", k->name);
    return Y;
}

static double worst;
static double eps_for(int64_t cols) { return 5e-6 * (cols > 2560 ? 3 : 1); }

static void check_oracle(const mat *m, const float *xd, int64_t nt, const float *Y, int64_t ldy, const char *what)
{
    const int64_t cols = m->cols;
    for (int64_t t = 0; t < nt; t++)
        for (int64_t r = 0; r < m->rows; r++) {
            double exact = 0, mag = 0;
            for (int64_t c = 0; c < cols; c++) {
                exact += (double)m->wd[r * cols + c] * xd[t * cols + c];
                mag += (double)m->wa[r * cols + c] * fabs(xd[t * cols + c]);
            }
            const double y = Y[t * ldy + r];
            if (!isfinite(y) && !isfinite(exact)) continue;
            if (mag > 0 && fabs(y - exact) / mag > worst) worst = fabs(y - exact) / mag;
            CHECK(fabs(y - exact) <= eps_for(cols) * mag + 1e-30, "%s %s cols=%ld rows=%ld nt=%ld [%ld,%ld]: %.9g vs oracle %.9g",
                  what, dn_type_get(m->bt)->name, (long)cols, (long)m->rows, (long)nt, (long)t, (long)r, y, exact);
        }
}

/* xmode 0: random activations; 1: +-1 exactly (every q = +-127) */
static float *make_acts(int64_t nt, int64_t cols, int xmode)
{
    float *X = malloc(sizeof(float) * nt * cols);
    for (int64_t i = 0; i < nt * cols; i++)
        X[i] = xmode ? ((rnd_u32() & 1) ? 1.0f : -1.0f) : rnd_unit() * (rnd_u32() % 31 == 0 ? 8.0f : 1.0f);
    return X;
}

static void same_bits(const float *a, const float *b, int64_t nt, int64_t rows, int64_t ldy, const char *what,
                      const mat *m)
{
    for (int64_t t = 0; t < nt; t++)
        for (int64_t r = 0; r < rows; r++)
            CHECK(!memcmp(&a[t * ldy + r], &b[t * ldy + r], 4), "%s %s cols=%ld nt=%ld [%ld,%ld]: %.9g vs %.9g", what,
                  dn_type_get(m->bt)->name, (long)m->cols, (long)nt, (long)t, (long)r, a[t * ldy + r], b[t * ldy + r]);
}

static void check(const mat *m, int64_t nt, int xmode)
{
    const dn_kernels *sc = dn_kernels_for_isa(DN_ISA_SCALAR);
    const int64_t rows = m->rows, cols = m->cols, ldy = rows + 3;
    const int32_t at = is_k(m->bt) ? DN_TYPE_Q8_K : DANU_TYPE_Q8_0;
    float *X = make_acts(nt, cols, xmode), *xd = malloc(sizeof(float) * nt * cols);
    const size_t srb = dn_act_row_bytes(sc, m->xt, cols);
    uint8_t *xs = malloc(srb * nt);
    CHECK_OK(dn_prepare_acts(sc, m->xt, X, nt, cols, xs));
    for (int64_t t = 0; t < nt; t++) CHECK(dn_dequantize_row(at, xs + t * srb, xd + t * cols, cols) == 0, "dequantize");
    const int64_t split = 16 * ((rows / 16) / 2);
    float *Ys = run(sc, m, xs, nt, split);
    for (int l = 0; l < n_levels; l++) {
        const dn_kernels *k = levels[l];
        ck_assert_ptr_nonnull(k->gemm[m->xt]);
        ck_assert_int_eq(k->act_type[m->xt], at);
        const size_t xrb = dn_act_row_bytes(k, m->xt, cols);
        uint8_t *xq = malloc(xrb * nt);
        CHECK_OK(dn_prepare_acts(k, m->xt, X, nt, cols, xq));
        for (int64_t t = 0; t < nt; t++)
            CHECK(!memcmp(xq + t * xrb, xs + t * srb, dn_type_row_bytes(at, cols)), "%s: activation blocks differ",
                  k->name);
        float *Y = run(k, m, xq, nt, split);
        check_oracle(m, xd, nt, Y, ldy, k->name);
        same_bits(Y, Ys, nt, rows, ldy, k->name, m);
        /* a token alone gets the bits it gets in the batch */
        for (int64_t t = 0; t < nt; t += nt > 4 ? nt / 3 : 1) {
            float *Y1 = run(k, m, xq + t * xrb, 1, split);
            for (int64_t r = 0; r < rows; r++)
                CHECK(!memcmp(&Y1[r], &Y[t * ldy + r], 4), "%s token %ld row %ld: alone %.9g, in batch %.9g", k->name,
                      (long)t, (long)r, Y1[r], Y[t * ldy + r]);
            free(Y1);
        }
        free(Y);
        free(xq);
    }
    free(Ys); free(X); free(xd); free(xs);
}

START_TEST(test_x16_neon_shapes)
{
    const int32_t xt = xtypes[_i];
    static const int64_t cols_32[] = { 32, 96, 288, 2560 }, cols_k[] = { 256, 512, 768, 2560 };
    const int64_t *cols_set = is_k(dn_x16_base(xt)) ? cols_k : cols_32;
    rng = 4242 + (uint64_t)xt;
    worst = 0;
    for (int ci = 0; ci < 4; ci++)
        for (int64_t rows = 16; rows <= 64; rows += 16) {
            if (light() && rows == 48) continue;
            mat m;
            mat_make(&m, xt, rows, cols_set[ci], 0);
            for (int64_t nt = 1; nt <= 12; nt++) {
                if (cols_set[ci] == 2560 && nt > 5 && nt != 7 && nt != 12) continue;   /* time */
                if (light() && nt > 9 && nt != 12) continue;
                check(&m, nt, 0);
            }
            mat_free(&m);
        }
    mat m;
    mat_make(&m, xt, 32, 6912, 0);
    check(&m, 1, 0);
    check(&m, 5, 0);
    mat_free(&m);
    printf("  %s x16 neon shapes: worst |y - oracle| / M %.1e\n", dn_type_get(dn_x16_base(xt))->name, worst);
}
END_TEST

START_TEST(test_x16_neon_extremes)
{
    const int32_t xt = xtypes[_i];
    rng = 999 + (uint64_t)xt;
    worst = 0;
    for (int mode = 1; mode <= 4; mode++) {
        mat m;
        mat_make(&m, xt, 48, mode == 3 ? 768 : (light() ? 2560 : 6912), mode);
        check(&m, 1, 1);
        check(&m, 8, 1);
        check(&m, 3, 0);
        mat_free(&m);
    }
    printf("  %s x16 neon extremes: worst %.1e\n", dn_type_get(dn_x16_base(xt))->name, worst);
}
END_TEST

/* The gemm entry itself with strides the matmul never uses. */
START_TEST(test_x16_neon_odd_strides)
{
    const int32_t xt = xtypes[_i];
    const dn_kernels *sc = dn_kernels_for_isa(DN_ISA_SCALAR);
    rng = 31337 + (uint64_t)xt;
    const int64_t cols = is_k(dn_x16_base(xt)) ? 768 : 352, groups = 3, rows = 16 * groups;
    mat m;
    mat_make(&m, xt, rows, cols, 0);
    const size_t group = 16 * m.xrb, ws = group + 8;
    uint8_t *wbuf = malloc(ws * groups + 1), *w = wbuf + 1;
    for (int64_t g = 0; g < groups; g++) memcpy(w + g * ws, m.wx + g * group, group);
    for (int64_t nt = 1; nt <= 10; nt++) {
        const size_t srb = dn_act_row_bytes(sc, xt, cols), xs = srb + 13;
        uint8_t *xq = malloc(srb * nt), *xbuf = malloc(xs * nt + 3), *x = xbuf + 3;
        float *X = make_acts(nt, cols, 0);
        CHECK_OK(dn_prepare_acts(sc, xt, X, nt, cols, xq));
        for (int64_t t = 0; t < nt; t++) memcpy(x + t * xs, xq + t * srb, srb);
        const int64_t ldy = rows + 5;
        /* the scalar fallback on the plain copies */
        const dn_matrix W = { .data = m.wx, .type = xt, .rows = rows, .cols = cols, .row_bytes = m.xrb };
        float *Ys = malloc(sizeof(float) * ldy * nt), *Y = malloc(sizeof(float) * ldy * nt);
        CHECK_OK(dn_matmul_rows(sc, &W, xq, nt, Ys, ldy, 0, rows));
        for (int l = 0; l < n_levels; l++) {
            const dn_kernels *k = levels[l];
            ck_assert_uint_eq(dn_act_row_bytes(k, xt, cols), srb);
            for (int64_t i = 0; i < ldy * nt; i++) Y[i] = -777.0f;
            k->gemm[xt](cols, w, ws, (int)rows, x, xs, (int)nt, Y, (size_t)ldy);
            for (int64_t t = 0; t < nt; t++)
                for (int64_t i = rows; i < ldy; i++) CHECK(Y[t * ldy + i] == -777.0f, "gemm wrote outside its rows");
            same_bits(Y, Ys, nt, rows, ldy, "odd strides", &m);
        }
        free(xq); free(xbuf); free(X); free(Y); free(Ys);
    }
    free(wbuf);
    mat_free(&m);
}
END_TEST

/* Level ranking, repack maps, and baseline NEON's per-block fallback. */
START_TEST(test_x16_neon_dispatch)
{
    const dn_kernels *neon = dn_kernels_for_isa(DN_ISA_NEON), *dot = dn_kernels_for_isa(DN_ISA_NEON_DOT);
    const dn_kernels *mm = dn_kernels_for_isa(DN_ISA_NEON_I8MM), *best = dn_kernels_get(DANU_ISA_AUTO);
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
        for (int l = 0; l < n_levels; l++) {
            ck_assert_int_eq(levels[l]->repack[bt], xt);
            ck_assert_ptr_nonnull(levels[l]->gemm[xt]);
        }
        ck_assert_int_eq(neon->repack[bt], 0);
        ck_assert_ptr_null(neon->gemm[xt]);
        /* baseline NEON: matmul.c's per-block fallback, the scalar bits */
        rng = 77 + (uint64_t)xt;
        mat m;
        mat_make(&m, xt, 32, is_k(bt) ? 512 : 96, 0);
        const dn_kernels *sc = dn_kernels_for_isa(DN_ISA_SCALAR);
        const int64_t nt = 3;
        float *X = make_acts(nt, m.cols, 0);
        const size_t srb = dn_act_row_bytes(sc, xt, m.cols), nrb = dn_act_row_bytes(neon, xt, m.cols);
        uint8_t *xs = malloc(srb * nt), *xn = malloc(nrb * nt);
        CHECK_OK(dn_prepare_acts(sc, xt, X, nt, m.cols, xs));
        CHECK_OK(dn_prepare_acts(neon, xt, X, nt, m.cols, xn));
        float *Ys = run(sc, &m, xs, nt, 16), *Yn = run(neon, &m, xn, nt, 16);
        same_bits(Yn, Ys, nt, m.rows, m.rows + 3, "neon fallback", &m);
        free(Ys); free(Yn); free(X); free(xs); free(xn);
        mat_free(&m);
    }
}
END_TEST

int main(void)
{
    if (!dn_kernels_for_isa(DN_ISA_NEON)) {
        printf("no NEON table (not AArch64, or DANU_ISA below neon): skipped\n");
        return 77;
    }
    const int isas[] = { DN_ISA_NEON_DOT, DN_ISA_NEON_I8MM };
    for (int i = 0; i < 2; i++)
        if (dn_kernels_for_isa(isas[i])) levels[n_levels++] = dn_kernels_for_isa(isas[i]);
    printf("x16 levels:");
    for (int i = 0; i < n_levels; i++) printf(" %s", levels[i]->name);
    printf("%s\n", n_levels ? "" : " none (baseline NEON: fallback only)");
    Suite *s = suite_create("x16_neon");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 1200);
    tcase_add_test(tc, test_x16_neon_dispatch);
    if (n_levels) {
        tcase_add_loop_test(tc, test_x16_neon_shapes, 0, N_XTYPES);
        tcase_add_loop_test(tc, test_x16_neon_extremes, 0, N_XTYPES);
        tcase_add_loop_test(tc, test_x16_neon_odd_strides, 0, N_XTYPES);
    }
    suite_add_tcase(s, tc);
    const int failed = tu_run(s);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
