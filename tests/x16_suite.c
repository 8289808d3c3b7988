/* x16_suite.c - the scaffolding of the x16 gemm suites (x16_suite.h). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"
#include "x16_suite.h"
#include "common/bytes.h"

uint64_t x16_rng = 0x9E3779B97F4A7C15ull;
x16_suite x16;
double x16_worst;

uint32_t x16_rand_u32(void) { return tu_rand_u32(&x16_rng); }
float x16_rand_unit(void) { return tu_rand_unit(&x16_rng); }
float x16_rand_act(void) { return tu_rand_act(&x16_rng); }

int x16_is_k(int32_t bt) { return bt == DANU_TYPE_Q4_K || bt == DANU_TYPE_Q6_K; }

/* ---------------- matrices ---------------- */

/* the fp16 scale of an extreme block */
static uint16_t edge_scale(int mode)
{
    static const float ends[] = { 65504.0f, -65504.0f, 5.9604645e-8f /* 2^-24 */, -3.0f, 0.0f, 1e-5f };
    if (mode == 3) return dn_f32_to_fp16(ends[x16_rand_u32() % 6]);
    return dn_f32_to_fp16(mode == 4 ? 0.5f + (float)(x16_rand_u32() % 100) : 3.0f);
}

void x16_extreme_block(int32_t bt, uint8_t *blk, int mode)
{
    const int top = mode == 1;
    switch (bt) {
    case DANU_TYPE_Q4_0:
    case DANU_TYPE_Q8_0: {
        const int bb = bt == DANU_TYPE_Q4_0 ? 18 : 34;
        const uint16_t d = edge_scale(mode);
        memcpy(blk, &d, 2);
        for (int i = 2; i < bb; i++) {
            const int t = top || (mode >= 3 && (x16_rand_u32() & 1));
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
        for (int i = 4; i < 16; i++) blk[i] = mode >= 3 ? (uint8_t)x16_rand_u32() : 0xFF;
        for (int i = 16; i < 144; i++) blk[i] = mode >= 3 ? (uint8_t)x16_rand_u32() : top ? 0xFF : 0x00;
        break;
    }
    default: {   /* q6_K: codes 63 / 0 (+31 / -32), scales 127 / -128 */
        for (int i = 0; i < 192; i++) blk[i] = mode >= 3 ? (uint8_t)x16_rand_u32() : top ? 0xFF : 0x00;
        for (int i = 192; i < 208; i++) blk[i] = mode >= 3 ? (uint8_t)x16_rand_u32() : top ? 0x7F : 0x80;
        const uint16_t d = edge_scale(mode);
        memcpy(blk + 208, &d, 2);
        break;
    }
    }
}

void x16_block_mags(int32_t bt, const uint8_t *blk, const float *w, float *a)
{
    if (bt != DANU_TYPE_Q4_K) {
        for (int64_t i = 0; i < dn_type_block_size(bt); i++) a[i] = fabsf(w[i]);
        return;
    }
    const uint8_t *q = blk + 4;
    uint16_t dh, mh;
    memcpy(&dh, blk, 2);
    memcpy(&mh, blk + 2, 2);
    for (int c = 0; c < 256; c++) {
        const int j = c / 32;
        /* 6-bit scale and min j of the 12 packed bytes */
        const int sc = j < 4 ? q[j] & 63 : (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        const int m = j < 4 ? q[j + 4] & 63 : (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
        const uint8_t qb = blk[16 + 32 * (j / 2) + c % 32];
        const int v = j % 2 ? qb >> 4 : qb & 0xF;
        a[c] = fabsf(dn_fp16_to_f32(dh) * (float)(sc * v)) + fabsf(dn_fp16_to_f32(mh) * (float)m);
    }
}

void x16_mat_make_with(x16_mat *m, int32_t xt, int64_t rows, int64_t cols, int mode, const x16_fill *fill)
{
    float (*value)(void) = fill && fill->value ? fill->value : x16_rand_unit;
    void (*block)(int32_t, uint8_t *, int) = fill && fill->block ? fill->block : x16_extreme_block;
    void (*mags)(int32_t, const uint8_t *, const float *, float *) = fill && fill->mags ? fill->mags : x16_block_mags;
    m->xt = xt; m->bt = dn_x16_base(xt); m->rows = rows; m->cols = cols;
    m->brb = dn_type_row_bytes(m->bt, (uint64_t)cols);
    m->xrb = dn_type_row_bytes(xt, (uint64_t)cols);
    ck_assert(m->brb > 0 && m->xrb > 0);   /* q4_K x16: scales unpacked, 148 per 144 */
    ck_assert(x16_is_k(m->bt) || m->xrb == m->brb);   /* q4_0, q8_0 x16: the same bytes regrouped */
    m->wq = malloc(m->brb * rows);
    m->wx = malloc(m->xrb * rows);
    m->wd = malloc(sizeof(float) * rows * cols);
    m->wa = malloc(sizeof(float) * rows * cols);
    float *src = malloc(sizeof(float) * cols);
    const int64_t bs = dn_type_block_size(m->bt), bb = (int64_t)dn_type_get(m->bt)->type_size;
    for (int64_t r = 0; r < rows; r++) {
        uint8_t *row = m->wq + r * m->brb;
        float *wd = m->wd + r * cols;
        for (int64_t c = 0; c < cols; c++) src[c] = value() * 0.05f * (float)(1 + r % 5);
        ck_assert_int_eq(dn_quantize_row(m->bt, src, row, cols), 0);
        for (int64_t b = 0; mode && b < cols / bs; b++) block(m->bt, row + b * bb, mode);
        ck_assert_int_eq(dn_dequantize_row(m->bt, row, wd, cols), 0);
        for (int64_t b = 0; b < cols / bs; b++) mags(m->bt, row + b * bb, wd + b * bs, m->wa + r * cols + b * bs);
    }
    for (int64_t g = 0; g < rows / 16; g++)
        ck_assert_int_eq(dn_x16_repack(xt, m->wq + g * 16 * m->brb, m->brb, m->wx + g * 16 * m->xrb, cols), 0);
    free(src);
}

void x16_mat_make(x16_mat *m, int32_t xt, int64_t rows, int64_t cols, int mode)
{
    x16_mat_make_with(m, xt, rows, cols, mode, NULL);
}

void x16_mat_free(x16_mat *m) { free(m->wq); free(m->wx); free(m->wd); free(m->wa); }

/* ---------------- activations and products ---------------- */

float *x16_make_acts(int64_t nt, int64_t cols, int xmode)
{
    float *X = malloc(sizeof(float) * nt * cols);
    for (int64_t i = 0; i < nt * cols; i++)
        X[i] = xmode ? ((x16_rand_u32() & 1) ? 1.0f : -1.0f)
                     : x16_rand_unit() * (x16_rand_u32() % 31 == 0 ? 8.0f : 1.0f);
    return X;
}

uint8_t *x16_prepare(const dn_kernels *k, int32_t wt, const float *X, int64_t nt, int64_t cols, size_t *rb)
{
    *rb = dn_act_row_bytes(k, wt, cols);
    ck_assert(*rb > 0);
    uint8_t *xq = malloc(*rb * nt);
    CHECK_OK(dn_prepare_acts(k, wt, X, nt, cols, xq));
    return xq;
}

float *x16_matmul(const dn_kernels *k, const dn_matrix *W, const void *xq, int64_t nt, int64_t split, int64_t ldy)
{
    float *Y = malloc(sizeof(float) * ldy * nt);
    for (int64_t i = 0; i < ldy * nt; i++) Y[i] = -777.0f;
    if (split > 0) CHECK_OK(dn_matmul_rows(k, W, xq, nt, Y, ldy, 0, split));
    if (split < W->rows) CHECK_OK(dn_matmul_rows(k, W, xq, nt, Y, ldy, split, W->rows));
    for (int64_t t = 0; t < nt; t++)
        for (int64_t i = W->rows; i < ldy; i++) CHECK(Y[t * ldy + i] == -777.0f, "%s wrote outside its rows", k->name);
    return Y;
}

float *x16_run(const dn_kernels *k, const x16_mat *m, const void *xq, int64_t nt, int64_t split)
{
    const dn_matrix W = { .data = m->wx, .type = m->xt, .rows = m->rows, .cols = m->cols, .row_bytes = m->xrb };
    return x16_matmul(k, &W, xq, nt, split, m->rows + 3);
}

/* ---------------- comparisons ---------------- */

double x16_eps_for(int64_t cols) { return 5e-6 * (cols > 2560 ? 3 : 1); }

/* M of output [t, r] (see top of x16_suite.h) */
static double magnitude(const x16_mat *m, const float *xd, int64_t t, int64_t r)
{
    double mag = 0;
    for (int64_t c = 0; c < m->cols; c++) mag += (double)m->wa[r * m->cols + c] * fabs(xd[t * m->cols + c]);
    return mag;
}

void x16_check_oracle(const x16_mat *m, const float *xd, int64_t nt, const float *Y, int64_t ldy, const char *what)
{
    const int64_t cols = m->cols;
    for (int64_t t = 0; t < nt; t++)
        for (int64_t r = 0; r < m->rows; r++) {
            double exact = 0;
            for (int64_t c = 0; c < cols; c++) exact += (double)m->wd[r * cols + c] * xd[t * cols + c];
            const double mag = magnitude(m, xd, t, r);
            const double y = Y[t * ldy + r];
            if (x16.skip_nonfinite && !isfinite(y) && !isfinite(exact)) continue;
            if (mag > 0 && fabs(y - exact) / mag > x16_worst) x16_worst = fabs(y - exact) / mag;
            CHECK(fabs(y - exact) <= x16_eps_for(cols) * mag + 1e-30,
                  "%s %s cols=%ld rows=%ld nt=%ld [%ld,%ld]: %.9g vs oracle %.9g", what,
                  dn_type_get(m->bt)->name, (long)cols, (long)m->rows, (long)nt, (long)t, (long)r, y, exact);
        }
}

void x16_same_bits(const float *a, const float *b, int64_t nt, int64_t rows, int64_t ldy, const char *what,
                   const x16_mat *m)
{
    for (int64_t t = 0; t < nt; t++)
        for (int64_t r = 0; r < rows; r++)
            CHECK(!memcmp(&a[t * ldy + r], &b[t * ldy + r], 4), "%s %s cols=%ld nt=%ld [%ld,%ld]: %.9g vs %.9g", what,
                  dn_type_get(m->bt)->name, (long)m->cols, (long)nt, (long)t, (long)r, a[t * ldy + r], b[t * ldy + r]);
}

/* Y against the scalar per-block fallback's Ys: the same bits or within 2 eps M */
static void check_fallback(const x16_mat *m, const float *xd, int64_t nt, const float *Y, const float *Ys,
                           int64_t ldy, const char *what)
{
    char msg[96];
    snprintf(msg, sizeof msg, "%s vs scalar fallback", what);
    if (x16.fallback_bits) {
        x16_same_bits(Y, Ys, nt, m->rows, ldy, msg, m);
        return;
    }
    for (int64_t t = 0; t < nt; t++)
        for (int64_t r = 0; r < m->rows; r++) {
            const double mag = magnitude(m, xd, t, r);
            const double y = Y[t * ldy + r], ys = Ys[t * ldy + r];
            CHECK(fabs(y - ys) <= 2 * x16_eps_for(m->cols) * mag + 1e-30, "%s %s cols=%ld [%ld,%ld]: %.9g vs %.9g", msg,
                  dn_type_get(m->bt)->name, (long)m->cols, (long)t, (long)r, y, ys);
        }
}

void x16_check(const x16_mat *m, int64_t nt, int xmode)
{
    const dn_kernels *sc = dn_kernels_for_isa(DN_ISA_SCALAR);
    const int64_t rows = m->rows, cols = m->cols, ldy = rows + 3, split = 16 * ((rows / 16) / 2);
    const int32_t at = x16_is_k(m->bt) ? DN_TYPE_Q8_K : DANU_TYPE_Q8_0;
    const size_t blocks = dn_type_row_bytes(at, (uint64_t)cols);   /* before any extras */
    ck_assert_int_eq(sc->act_type[m->xt], at);
    float *X = x16_make_acts(nt, cols, xmode), *xd = malloc(sizeof(float) * nt * cols);
    size_t srb;
    uint8_t *xs = x16_prepare(sc, m->xt, X, nt, cols, &srb);
    for (int64_t t = 0; t < nt; t++) CHECK(dn_dequantize_row(at, xs + t * srb, xd + t * cols, cols) == 0, "dequantize");
    float *Ys = x16_run(sc, m, xs, nt, split);
    for (int l = 0; l < x16.n_levels; l++) {
        const dn_kernels *k = x16.levels[l];
        ck_assert_ptr_nonnull(k->gemm[m->xt]);
        ck_assert_int_eq(k->act_type[m->xt], at);
        size_t xrb;
        uint8_t *xq = x16_prepare(k, m->xt, X, nt, cols, &xrb);
        for (int64_t t = 0; t < nt; t++) {
            CHECK(!memcmp(xq + t * xrb, xs + t * srb, blocks), "%s: activation blocks differ", k->name);
            if (x16.act_row) x16.act_row(at, xq + t * xrb, cols);
        }
        float *Y = x16_run(k, m, xq, nt, split);
        x16_check_oracle(m, xd, nt, Y, ldy, k->name);
        check_fallback(m, xd, nt, Y, Ys, ldy, k->name);
        if (x16.same_as) {   /* another level with the same integer sums and float steps */
            ck_assert_uint_eq(dn_act_row_bytes(x16.same_as, m->xt, cols), xrb);
            float *Y2 = x16_run(x16.same_as, m, xq, nt, split);
            char what[64];
            snprintf(what, sizeof what, "%s vs %s", k->name, x16.same_as->name);
            x16_same_bits(Y, Y2, nt, rows, ldy, what, m);
            free(Y2);
        }
        /* a token alone gets the bits it gets in the batch */
        for (int64_t t = 0; t < nt; t += nt > 4 ? nt / 3 : 1) {
            float *Y1 = x16_run(k, m, xq + t * xrb, 1, split);
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

/* ---------------- the loops ---------------- */

void x16_shapes(int32_t xt, uint64_t seed, int64_t max_nt, x16_skip_fn skip, int64_t big_nt)
{
    static const int64_t cols_32[] = { 32, 96, 288, 2560 }, cols_k[] = { 256, 512, 768, 2560 };
    const int64_t *cols_set = x16_is_k(dn_x16_base(xt)) ? cols_k : cols_32;
    x16_rng = seed;
    x16_worst = 0;
    for (int ci = 0; ci < 4; ci++)
        for (int64_t rows = 16; rows <= 64; rows += 16) {
            if (skip && skip(cols_set[ci], rows, 0)) continue;
            x16_mat m;
            x16_mat_make(&m, xt, rows, cols_set[ci], 0);
            for (int64_t nt = 1; nt <= max_nt; nt++)
                if (!skip || !skip(cols_set[ci], rows, nt)) x16_check(&m, nt, 0);
            x16_mat_free(&m);
        }
    x16_mat m;
    x16_mat_make(&m, xt, 32, 6912, 0);
    x16_check(&m, 1, 0);
    x16_check(&m, big_nt, 0);
    x16_mat_free(&m);
    printf("  %s x16 %s shapes: worst |y - oracle| / M %.1e\n", dn_type_get(dn_x16_base(xt))->name, x16.name,
           x16_worst);
}

void x16_extremes(int32_t xt, uint64_t seed, const int *modes, int n_modes, int64_t big_cols, int64_t many_nt)
{
    x16_rng = seed;
    x16_worst = 0;
    for (int i = 0; i < n_modes; i++) {
        x16_mat m;
        x16_mat_make(&m, xt, 48, modes[i] == 3 ? 768 : big_cols, modes[i]);
        x16_check(&m, 1, 1);
        x16_check(&m, many_nt, 1);
        x16_check(&m, 3, 0);
        x16_mat_free(&m);
    }
    printf("  %s x16 %s extremes: worst %.1e\n", dn_type_get(dn_x16_base(xt))->name, x16.name, x16_worst);
}

void x16_odd_strides(int32_t xt, uint64_t seed)
{
    const dn_kernels *sc = dn_kernels_for_isa(DN_ISA_SCALAR);
    x16_rng = seed;
    x16_worst = 0;
    const int32_t bt = dn_x16_base(xt), at = x16_is_k(bt) ? DN_TYPE_Q8_K : DANU_TYPE_Q8_0;
    const int64_t cols = x16_is_k(bt) ? 768 : 352, groups = 3, rows = 16 * groups, ldy = rows + 5;
    x16_mat m;
    x16_mat_make(&m, xt, rows, cols, 0);
    const dn_matrix W = { .data = m.wx, .type = xt, .rows = rows, .cols = cols, .row_bytes = m.xrb };
    const size_t group = 16 * m.xrb, ws = group + 8;
    uint8_t *wbuf = malloc(ws * groups + 1), *w = wbuf + 1;
    for (int64_t g = 0; g < groups; g++) memcpy(w + g * ws, m.wx + g * group, group);
    for (int64_t nt = 1; nt <= 10; nt++) {
        float *X = x16_make_acts(nt, cols, 0), *xd = malloc(sizeof(float) * nt * cols);
        size_t srb;
        uint8_t *xs = x16_prepare(sc, xt, X, nt, cols, &srb);
        for (int64_t t = 0; t < nt; t++)
            CHECK(dn_dequantize_row(at, xs + t * srb, xd + t * cols, cols) == 0, "dequantize");
        /* the scalar fallback on the plain copies */
        float *Ys = x16_matmul(sc, &W, xs, nt, rows, ldy), *Y = malloc(sizeof(float) * ldy * nt);
        for (int l = 0; l < x16.n_levels; l++) {
            const dn_kernels *k = x16.levels[l];
            size_t xrb;
            uint8_t *xq = x16_prepare(k, xt, X, nt, cols, &xrb);
            const size_t xstr = xrb + 13;
            uint8_t *xbuf = malloc(xstr * nt + 3), *x = xbuf + 3;
            for (int64_t t = 0; t < nt; t++) {
                CHECK(!memcmp(xq + t * xrb, xs + t * srb, dn_type_row_bytes(at, (uint64_t)cols)),
                      "%s: activation blocks differ", k->name);
                if (x16.act_row) x16.act_row(at, xq + t * xrb, cols);
                memcpy(x + t * xstr, xq + t * xrb, xrb);
            }
            for (int64_t i = 0; i < ldy * nt; i++) Y[i] = -777.0f;
            k->gemm[xt](cols, w, ws, (int)rows, x, xstr, (int)nt, Y, (size_t)ldy);
            for (int64_t t = 0; t < nt; t++)
                for (int64_t i = rows; i < ldy; i++) CHECK(Y[t * ldy + i] == -777.0f, "gemm wrote outside its rows");
            char what[64];
            snprintf(what, sizeof what, "%s gemm (odd strides)", k->name);
            x16_check_oracle(&m, xd, nt, Y, ldy, what);
            check_fallback(&m, xd, nt, Y, Ys, ldy, what);
            if (x16.same_as) {   /* its bits, the padding too */
                float *Y2 = malloc(sizeof(float) * ldy * nt);
                for (int64_t i = 0; i < ldy * nt; i++) Y2[i] = -777.0f;
                x16.same_as->gemm[xt](cols, w, ws, (int)rows, x, xstr, (int)nt, Y2, (size_t)ldy);
                CHECK(!memcmp(Y, Y2, sizeof(float) * ldy * nt), "odd strides nt=%ld: not the %s bits", (long)nt,
                      x16.same_as->name);
                free(Y2);
            }
            free(xq); free(xbuf);
        }
        free(X); free(xd); free(xs); free(Ys); free(Y);
    }
    free(wbuf);
    x16_mat_free(&m);
    printf("  %s x16 %s odd strides: worst %.1e\n", dn_type_get(bt)->name, x16.name, x16_worst);
}

const dn_kernels *x16_add_level_both_fetches(const dn_kernels *k)
{
    static dn_kernels o;   /* a suite's main calls this once */
    static char name[48];
    x16.levels[x16.n_levels++] = k;
    if (!dn_kernels_with_fetch(k, k->fetch == DN_FETCH_LINES ? DN_FETCH_PAGE : DN_FETCH_LINES, &o)) return NULL;
    snprintf(name, sizeof name, "%s (fetch %s)", k->name, o.fetch == DN_FETCH_LINES ? "lines" : "page");
    o.name = name;
    x16.levels[x16.n_levels++] = &o;
    return &o;
}
