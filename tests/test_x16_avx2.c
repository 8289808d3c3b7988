/* test_x16_avx2.c - the AVX2 gemm kernels of the repacked weights
 * q4_0x16, q8_0x16 (avx2_x16.c), q4_Kx16, q6_Kx16 (avx2_x16k.c) and the
 * q8_0 activation extras they read (avx2_internal.h):
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
 * Tolerance: the integer sums are exact, only the float steps round:
 * per block one product of scales, one or two fmas, and the running sum,
 * so |err| <= 5e-6 M up to n = 2560 (three times that above), where M =
 * sum_i a_i |xq_i| is the magnitude of the terms the kernel adds: a_i =
 * |w_i| where a block's exact integer sum is scaled once (q4_0, q8_0, and
 * q6_K, whose -32 offset is subtracted in the integer sum), |d sc q_i| +
 * |dmin m| for q4_K (d I and dmin M round separately). Skipped (exit 77)
 * without AVX2.
 * test_x16_avx2vnni.c runs this file against the avx2vnni table (X16_ISA)
 * and also checks its results are the avx2 table's bits. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"
#include "kernels/kernels.h"
#include "kernels/avx2_internal.h"
#include "common/bytes.h"

/* the level under test (test_x16_avx2vnni.c sets them) */
#ifndef X16_ISA
#define X16_ISA DN_ISA_AVX2
#define X16_NAME "avx2"
#endif

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd_u32(void) { return tu_rand_u32(&rng); }
static float rnd_unit(void) { return tu_rand_unit(&rng); }

typedef struct {
    int32_t xt, bt;       /* x16 type and its base type */
    int64_t rows, cols;
    uint8_t *wq, *wx;     /* base-layout rows, repacked groups */
    float *wd;            /* dequantized rows */
    float *wa;            /* term magnitudes a_i (see top) */
    uint64_t brb, xrb;
} mat;

static int is_k(int32_t bt) { return bt == DANU_TYPE_Q4_K || bt == DANU_TYPE_Q6_K; }

/* a_i of element c of a stored row (see top) */
static float term_mag(int32_t bt, const uint8_t *row, int64_t c, float w)
{
    if (bt != DANU_TYPE_Q4_K) return fabsf(w);
    const uint8_t *b = row + (c / 256) * 144, *q = b + 4;
    const int j = (int)(c % 256 / 32);
    uint16_t dh, mh;
    memcpy(&dh, b, 2);
    memcpy(&mh, b + 2, 2);
    /* 6-bit scale and min j of the 12 packed bytes */
    const int sc = j < 4 ? q[j] & 63 : (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    const int m = j < 4 ? q[j + 4] & 63 : (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    const uint8_t qb = b[16 + 32 * (j / 2) + c % 32];
    const int v = j % 2 ? qb >> 4 : qb & 0xF;
    return fabsf(dn_fp16_to_f32(dh) * (float)(sc * v)) + fabsf(dn_fp16_to_f32(mh) * (float)m);
}

/* Block b of a stored row set to an extreme (mode 1: every code at its top,
 * 2: at its bottom, 3: random codes with edge scales, 4: random codes with
 * large scales). */
static void extreme_block(int32_t bt, uint8_t *blk, int mode);

/* the fp16 scale of an extreme block */
static uint16_t edge_scale(int mode)
{
    static const float ends[] = { 65504.0f, -65504.0f, 5.9604645e-8f /* 2^-24 */, -3.0f, 0.0f, 1e-5f };
    if (mode == 3) return dn_f32_to_fp16(ends[rnd_u32() % 6]);
    return dn_f32_to_fp16(mode == 4 ? 0.5f + (float)(rnd_u32() % 100) : 3.0f);
}

/* mode 0: random; 1: every weight at its top code; 2: bottom code;
 * 3: random ends with edge scales; 4: random ends, large scales */
static void mat_make(mat *m, int32_t xt, int64_t rows, int64_t cols, int mode)
{
    m->xt = xt; m->bt = dn_x16_base(xt); m->rows = rows; m->cols = cols;
    m->brb = dn_type_row_bytes(m->bt, (uint64_t)cols);
    m->xrb = dn_type_row_bytes(xt, (uint64_t)cols);
    ck_assert(m->brb > 0 && m->xrb > 0);   /* q4_K x16: scales unpacked, 148 per 144 */
    m->wq = malloc(m->brb * rows);
    m->wx = malloc(m->xrb * rows);
    m->wd = malloc(sizeof(float) * rows * cols);
    float *src = malloc(sizeof(float) * cols);
    m->wa = malloc(sizeof(float) * rows * cols);
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
            /* q4_0: nibbles 15 / 0 (+7 / -8); q8_0: +127 / -128 */
            blk[i] = bt == DANU_TYPE_Q4_0 ? (t ? 0xFF : 0x00) : (t ? 0x7F : 0x80);
        }
        break;
    }
    case DANU_TYPE_Q4_K: {
        const uint16_t d = edge_scale(mode), dmin = edge_scale(mode);
        memcpy(blk, &d, 2);
        memcpy(blk + 2, &dmin, 2);
        /* scales and mins 63 (bytes 0xFF) unless random; codes 15 / 0 */
        for (int i = 4; i < 16; i++) blk[i] = mode >= 3 ? (uint8_t)rnd_u32() : 0xFF;
        for (int i = 16; i < 144; i++) blk[i] = mode >= 3 ? (uint8_t)rnd_u32() : top ? 0xFF : 0x00;
        break;
    }
    default: {   /* q6_K: codes 63 / 0 (+31 / -32), scales 127 / -128 */
        for (int i = 0; i < 192; i++) blk[i] = mode >= 3 ? (uint8_t)rnd_u32() : top ? 0xFF : 0x00;
        for (int i = 192; i < 208; i++) blk[i] = mode >= 3 ? (uint8_t)rnd_u32() : top ? 0x7F : 0x80;
        const uint16_t d = edge_scale(mode);
        memcpy(blk + 208, &d, 2);
        break;
    }
    }
}

/* Y (ldy = rows + 3, padding checked untouched) through dn_matmul_rows,
 * rows [0, split) and [split, rows). */
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

/* The extras of one prepared row against its q8_0 blocks. */
static void check_extras(const uint8_t *row, int64_t cols)
{
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

static double worst;

/* The tolerance for n columns (see the header). */
static double eps_for(int64_t cols) { return 5e-6 * (cols > 2560 ? 3 : 1); }

/* Y[t * ldy + r] against the exact double dot of dequantized weights and
 * prepared activations xd. */
static double magnitude(const mat *m, const float *xd, int64_t t, int64_t r)
{
    double mag = 0;
    for (int64_t c = 0; c < m->cols; c++) mag += (double)m->wa[r * m->cols + c] * fabs(xd[t * m->cols + c]);
    return mag;
}

static void check_oracle(const mat *m, const float *xd, int64_t nt, const float *Y, int64_t ldy, const char *what)
{
    const int64_t cols = m->cols;
    for (int64_t t = 0; t < nt; t++)
        for (int64_t r = 0; r < m->rows; r++) {
            double exact = 0;
            for (int64_t c = 0; c < cols; c++) exact += (double)m->wd[r * cols + c] * xd[t * cols + c];
            const double mag = magnitude(m, xd, t, r);
            const double y = Y[t * ldy + r];
            if (mag > 0 && fabs(y - exact) / mag > worst) worst = fabs(y - exact) / mag;
            CHECK(fabs(y - exact) <= eps_for(cols) * mag + 1e-30,
                  "%s %s cols=%ld rows=%ld nt=%ld [%ld,%ld]: %.9g vs oracle %.9g", what,
                  dn_type_get(m->bt)->name, (long)cols, (long)m->rows, (long)nt, (long)t, (long)r, y, exact);
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

static void check(const mat *m, int64_t nt, int xmode)
{
    const dn_kernels *k = dn_kernels_for_isa(X16_ISA), *sc = dn_kernels_for_isa(DN_ISA_SCALAR);
    const int64_t rows = m->rows, cols = m->cols, ldy = rows + 3;
    const int32_t at = is_k(m->bt) ? DN_TYPE_Q8_K : DANU_TYPE_Q8_0;
    ck_assert_ptr_nonnull(k->gemm[m->xt]);
    ck_assert_int_eq(k->act_type[m->xt], at);
    ck_assert_int_eq(sc->act_type[m->xt], at);
    float *X = make_acts(nt, cols, xmode), *xd = malloc(sizeof(float) * nt * cols);
    const size_t xrb = dn_act_row_bytes(k, m->xt, cols), srb = dn_act_row_bytes(sc, m->xt, cols);
    uint8_t *xq = malloc(xrb * nt), *xs = malloc(srb * nt);
    dn_prepare_acts(k, m->xt, X, nt, cols, xq);
    dn_prepare_acts(sc, m->xt, X, nt, cols, xs);
    for (int64_t t = 0; t < nt; t++) {
        CHECK(!memcmp(xq + t * xrb, xs + t * srb, dn_type_row_bytes(at, cols)), "activation blocks differ");
        if (at == DANU_TYPE_Q8_0) check_extras(xq + t * xrb, cols);
        CHECK(dn_dequantize_row(at, xq + t * xrb, xd + t * cols, cols) == 0, "dequantize");
    }
    const int64_t split = 16 * ((rows / 16) / 2);
    float *Y = run(k, m, xq, nt, split), *Ys = run(sc, m, xs, nt, split);
    check_oracle(m, xd, nt, Y, ldy, X16_NAME);
    for (int64_t t = 0; t < nt; t++)
        for (int64_t r = 0; r < rows; r++) {
            const double mag = magnitude(m, xd, t, r);
            const double y = Y[t * ldy + r], ys = Ys[t * ldy + r];
            CHECK(fabs(y - ys) <= 2 * eps_for(cols) * mag + 1e-30, "%s cols=%ld [%ld,%ld]: %.9g vs scalar fallback %.9g",
                  dn_type_get(m->bt)->name, (long)cols, (long)t, (long)r, y, ys);
        }
    /* another level with the same integer sums and float steps (avx2vnni
     * against avx2): the same bits */
    const dn_kernels *k2 = X16_ISA != DN_ISA_AVX2 ? dn_kernels_for_isa(DN_ISA_AVX2) : NULL;
    if (k2) {
        ck_assert_uint_eq(dn_act_row_bytes(k2, m->xt, cols), xrb);
        float *Y2 = run(k2, m, xq, nt, split);
        for (int64_t t = 0; t < nt; t++)
            for (int64_t r = 0; r < rows; r++)
                CHECK(!memcmp(&Y2[t * ldy + r], &Y[t * ldy + r], 4), "%s cols=%ld [%ld,%ld]: %.9g, avx2 %.9g",
                      dn_type_get(m->bt)->name, (long)cols, (long)t, (long)r, Y[t * ldy + r], Y2[t * ldy + r]);
        free(Y2);
    }
    /* a token alone gets the bits it gets in the batch */
    for (int64_t t = 0; t < nt; t += nt > 4 ? nt / 3 : 1) {
        float *Y1 = run(k, m, xq + t * xrb, 1, split);
        for (int64_t r = 0; r < rows; r++)
            CHECK(!memcmp(&Y1[r], &Y[t * ldy + r], 4), "token %ld row %ld: alone %.9g, in batch %.9g",
                  (long)t, (long)r, Y1[r], Y[t * ldy + r]);
        free(Y1);
    }
    free(Y); free(Ys); free(X); free(xd); free(xq); free(xs);
}

static const int32_t xtypes[] = { DN_TYPE_Q4_0_X16, DN_TYPE_Q8_0_X16, DN_TYPE_Q4_K_X16, DN_TYPE_Q6_K_X16 };
#define N_XTYPES ((int)(sizeof xtypes / sizeof xtypes[0]))

START_TEST(test_x16_shapes)
{
    const int32_t xt = xtypes[_i];
    static const int64_t cols_32[] = { 32, 96, 288, 2560 }, cols_k[] = { 256, 512, 768, 2560 };
    const int64_t *cols_set = is_k(dn_x16_base(xt)) ? cols_k : cols_32;
    rng = 4242 + (uint64_t)xt;
    worst = 0;
    for (int ci = 0; ci < 4; ci++)
        for (int64_t rows = 16; rows <= 64; rows += 16) {
            mat m;
            mat_make(&m, xt, rows, cols_set[ci], 0);
            for (int64_t nt = 1; nt <= 12; nt++) {
                if (cols_set[ci] == 2560 && nt > 4 && nt != 7 && nt != 12) continue;   /* time */
                check(&m, nt, 0);
            }
            mat_free(&m);
        }
    mat m;
    mat_make(&m, xt, 32, 6912, 0);
    check(&m, 1, 0);
    check(&m, 7, 0);
    mat_free(&m);
    printf("  %s x16 " X16_NAME " shapes: worst |y - oracle| / M %.1e\n", dn_type_get(dn_x16_base(xt))->name, worst);
}
END_TEST

START_TEST(test_x16_extremes)
{
    const int32_t xt = xtypes[_i];
    rng = 999 + (uint64_t)xt;
    worst = 0;
    for (int mode = 1; mode <= 4; mode++) {
        mat m;
        mat_make(&m, xt, 48, mode == 3 ? 768 : 6912, mode);
        check(&m, 1, 1);
        check(&m, 8, 1);
        check(&m, 3, 0);
        mat_free(&m);
    }
    printf("  %s x16 " X16_NAME " extremes: worst %.1e\n", dn_type_get(dn_x16_base(xt))->name, worst);
}
END_TEST

/* The gemm entry itself with strides the matmul never uses: groups
 * w_stride = 16 row bytes + 8 apart from an odd address, activation rows
 * an odd number of bytes apart, ldy = 16 * groups + 5. */
START_TEST(test_x16_odd_strides)
{
    const int32_t xt = xtypes[_i];
    const dn_kernels *k = dn_kernels_for_isa(X16_ISA);
    rng = 31337 + (uint64_t)xt;
    worst = 0;
    const int64_t cols = is_k(dn_x16_base(xt)) ? 768 : 352, groups = 3, rows = 16 * groups;
    mat m;
    mat_make(&m, xt, rows, cols, 0);
    const size_t group = 16 * m.xrb, ws = group + 8;
    uint8_t *wbuf = malloc(ws * groups + 1), *w = wbuf + 1;
    for (int64_t g = 0; g < groups; g++) memcpy(w + g * ws, m.wx + g * group, group);
    for (int64_t nt = 1; nt <= 10; nt++) {
        const size_t xrb = dn_act_row_bytes(k, xt, cols), xs = xrb + 13;
        uint8_t *xq = malloc(xrb), *xbuf = malloc(xs * nt + 3), *x = xbuf + 3;
        float *X = make_acts(nt, cols, 0), *xd = malloc(sizeof(float) * nt * cols);
        for (int64_t t = 0; t < nt; t++) {
            dn_prepare_acts(k, xt, X + t * cols, 1, cols, xq);
            memcpy(x + t * xs, xq, xrb);
            CHECK(dn_dequantize_row(k->act_type[xt], xq, xd + t * cols, cols) == 0, "dequantize");
        }
        const int64_t ldy = rows + 5;
        float *Y = malloc(sizeof(float) * ldy * nt);
        for (int64_t i = 0; i < ldy * nt; i++) Y[i] = -777.0f;
        k->gemm[xt](cols, w, ws, (int)rows, x, xs, (int)nt, Y, (size_t)ldy);
        for (int64_t t = 0; t < nt; t++)
            for (int64_t i = rows; i < ldy; i++) CHECK(Y[t * ldy + i] == -777.0f, "gemm wrote outside its rows");
        check_oracle(&m, xd, nt, Y, ldy, X16_NAME " gemm (odd strides)");
        const dn_kernels *k2 = X16_ISA != DN_ISA_AVX2 ? dn_kernels_for_isa(DN_ISA_AVX2) : NULL;
        if (k2) {   /* the avx2 table's bits (see check) */
            float *Y2 = malloc(sizeof(float) * ldy * nt);
            for (int64_t i = 0; i < ldy * nt; i++) Y2[i] = -777.0f;
            k2->gemm[xt](cols, w, ws, (int)rows, x, xs, (int)nt, Y2, (size_t)ldy);
            CHECK(!memcmp(Y, Y2, sizeof(float) * ldy * nt), "odd strides nt=%ld: not the avx2 bits", (long)nt);
            free(Y2);
        }
        free(xq); free(xbuf); free(X); free(xd); free(Y);
    }
    free(wbuf);
    mat_free(&m);
    printf("  %s x16 " X16_NAME " odd strides: worst %.1e\n", dn_type_get(dn_x16_base(xt))->name, worst);
}
END_TEST

int main(void)
{
    if (!dn_kernels_for_isa(X16_ISA)) {
        printf("no %s table (CPU without it, or DANU_ISA below it): skipped\n", X16_NAME);
        return 77;
    }
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
