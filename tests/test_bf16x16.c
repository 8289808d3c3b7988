/* test_bf16x16.c - the bf16x16 repacked layout (DN_TYPE_BF16_X16, and
 * DN_TYPE_BF16_X16F: the same bytes for DANU_OPT_FAST_BF16) and its
 * kernels:
 *  - dn_x16_repack / dn_x16_extract_block round trip every block exactly;
 *  - dn_matmul_rows on the repacked matrix, for every table this CPU has
 *    (avx512: its gemm; scalar and reference: matmul.c's per-block
 *    fallback), vs the REFERENCE table on the original bf16 rows, vs an
 *    exact double oracle on the activations the table prepared, and vs
 *    the same table on the original layout. Row ranges are split at
 *    multiples of 16 and padding around them must stay untouched.
 *  - a token alone gets the same bits as in a batch; zeros give zeros.
 *  - the fast gemm (bf16x16f: activations' hi row only) is exactly the exact
 *    gemm with the lo row zeroed, and within EPS_FAST of the reference
 *    (AVX-512 only: `test_bf16x16 fast`, the meson test bf16x16_fast, which
 *    exits 77, a SKIP, without that table).
 * Tolerances as test_kernels.c's float types: EPS_DOT relative to
 * M = sum |w x| (f32 sums in lanes), plus the activation rounding
 * E = sum |w| |x - xq| against f32 activations. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"
#include "kernels/kernels.h"
#include "common/bytes.h"

#define EPS_DOT 2e-5
/* fast bf16 vs f32 activations, relative to sum |w x|: an activation
 * rounded to bf16 (8 significant bits) errs by at most 2^-8 of itself, so
 * 2^-8 (+ the sums' EPS_DOT) bounds any row; random rows measure up to
 * ~2e-3 with 2 columns, 4e-4 with 2560, 2e-4 with 6912 */
#define EPS_FAST (1.0 / 256 + 2 * EPS_DOT)
#define XT DN_TYPE_BF16_X16
#define XF DN_TYPE_BF16_X16F

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float rnd_val(void) { return tu_rand_act(&rng); }

static const int64_t cols_set[] = { 2, 30, 256, 2560, 6912 };
static const int64_t rows_set[] = { 16, 48, 64 };
static const int64_t tok_set[] = { 1, 2, 5, 7, 12, 13, 20 };
#define N_COLS ((int)(sizeof cols_set / sizeof cols_set[0]))
#define N_ROWS ((int)(sizeof rows_set / sizeof rows_set[0]))
#define N_TOK ((int)(sizeof tok_set / sizeof tok_set[0]))

typedef struct {
    int64_t rows, cols;
    uint16_t *w;     /* original bf16 rows */
    float *wd;       /* the same as f32 */
    uint8_t *wx;     /* repacked */
    uint64_t rb, xrb;   /* bf16 row bytes, x16 per-row bytes */
} mat;

static void mat_make(mat *m, int64_t rows, int64_t cols)
{
    m->rows = rows; m->cols = cols;
    m->rb = dn_type_row_bytes(DANU_TYPE_BF16, (uint64_t)cols);
    m->xrb = dn_type_row_bytes(XT, (uint64_t)cols);
    ck_assert_uint_eq(m->xrb, m->rb);
    m->w = malloc(m->rb * rows);
    m->wd = malloc(sizeof(float) * rows * cols);
    m->wx = malloc(m->xrb * rows);
    for (int64_t i = 0; i < rows * cols; i++) {
        m->w[i] = dn_f32_to_bf16(rnd_val() * 0.05f * (float)(1 + (i / cols) % 5));
        m->wd[i] = dn_bf16_to_f32(m->w[i]);
    }
    for (int64_t g = 0; g < rows / 16; g++)
        ck_assert_int_eq(dn_x16_repack(XT, (const uint8_t *)m->w + g * 16 * m->rb, m->rb,
                                       m->wx + g * 16 * m->xrb, cols), 0);
}

static void mat_free(mat *m) { free(m->w); free(m->wd); free(m->wx); }

START_TEST(test_bf16x16_type)
{
    ck_assert_int_eq(dn_x16_base(XT), DANU_TYPE_BF16);
    ck_assert_int_eq(dn_x16_of(DANU_TYPE_BF16), XT);
    ck_assert(!dn_type_is_weight(XT));
    ck_assert_ptr_nonnull(dn_type_get(XT));
    ck_assert_str_eq(dn_type_get(XT)->name, "bf16x16");
    ck_assert_uint_eq(dn_type_block_size(XT), 2);
    ck_assert_uint_eq(dn_type_row_bytes(XT, 2560), 5120);
    ck_assert_uint_eq(dn_type_row_bytes(XT, 31), 0);      /* odd columns: no layout */
    uint16_t src[16 * 4] = { 0 }, dst[16 * 4], out[2];
    ck_assert_int_eq(dn_x16_repack(XT, src, 8, dst, 3), -1);
    ck_assert_int_eq(dn_x16_repack(XT, src, 8, dst, 4), 0);
    ck_assert_int_eq(dn_x16_extract_block(XT, dst, 4, 0, 2, out), -1);
    ck_assert_int_eq(dn_x16_extract_block(XT, dst, 4, 16, 0, out), -1);
    /* the fast twin: the same layout, bf16 its base, never what bf16 maps to */
    ck_assert_int_eq(dn_x16_base(XF), DANU_TYPE_BF16);
    ck_assert(!dn_type_is_weight(XF));
    ck_assert_str_eq(dn_type_get(XF)->name, "bf16x16f");
    ck_assert_uint_eq(dn_type_row_bytes(XF, 2560), 5120);
    uint16_t dst2[16 * 4];
    for (int i = 0; i < 16 * 4; i++) src[i] = (uint16_t)(i * 37 + 1);
    ck_assert_int_eq(dn_x16_repack(XT, src, 8, dst, 4), 0);
    ck_assert_int_eq(dn_x16_repack(XF, src, 8, dst2, 4), 0);
    ck_assert_mem_eq(dst, dst2, sizeof dst);
    ck_assert_int_eq(dn_x16_extract_block(XF, dst2, 4, 3, 1, out), 0);
    ck_assert(out[0] == src[3 * 4 + 2] && out[1] == src[3 * 4 + 3]);
    /* the table knows how it wants bf16 stored (the fast gemm only on request) */
    const dn_kernels *k = dn_kernels_for_isa(DN_ISA_AVX512);
    if (k) {
        ck_assert_int_eq(k->repack[DANU_TYPE_BF16], XT);
        ck_assert_ptr_nonnull(k->gemm[XT]);
        ck_assert_ptr_nonnull(k->gemm[XF]);
        ck_assert_ptr_ne(k->gemm[XF], k->gemm[XT]);
        ck_assert_int_eq(k->act_type[XT], DANU_TYPE_BF16);
        ck_assert_int_eq(k->act_type[XF], DANU_TYPE_BF16);
    }
    const dn_kernels *s = dn_kernels_for_isa(DN_ISA_SCALAR);
    ck_assert_int_eq(s->repack[DANU_TYPE_BF16], 0);
    ck_assert_ptr_null(s->gemm[XT]);
    ck_assert_ptr_nonnull(s->vec_dot[XT]);
    /* without a fast gemm: the per-block fallback, the plain (exact) dot */
    ck_assert_ptr_null(s->gemm[XF]);
    ck_assert_ptr_eq(s->vec_dot[XF], s->vec_dot[XT]);
}
END_TEST

START_TEST(test_bf16x16_roundtrip)
{
    rng = 42;
    for (int ci = 0; ci < N_COLS; ci++)
        for (int ri = 0; ri < N_ROWS; ri++) {
            mat m;
            mat_make(&m, rows_set[ri], cols_set[ci]);
            const int64_t n = m.cols;
            /* layout: chunk c of group g holds elements 2c, 2c+1 of its 16 rows */
            for (int64_t g = 0; g < m.rows / 16; g++)
                for (int64_t c = 0; c < n / 2; c++)
                    for (int r = 0; r < 16; r++) {
                        const uint16_t *chunk = (const uint16_t *)(m.wx + g * 16 * m.xrb + 64 * c);
                        const uint16_t *orig = m.w + (16 * g + r) * n + 2 * c;
                        CHECK(chunk[2 * r] == orig[0] && chunk[2 * r + 1] == orig[1],
                              "layout cols=%ld g=%ld c=%ld r=%d", (long)n, (long)g, (long)c, r);
                        uint16_t blk[2];
                        CHECK(dn_x16_extract_block(XT, m.wx + g * 16 * m.xrb, n, r, c, blk) == 0, "extract");
                        CHECK(!memcmp(blk, orig, 4), "extract cols=%ld g=%ld c=%ld r=%d",
                              (long)n, (long)g, (long)c, r);
                    }
            mat_free(&m);
        }
}
END_TEST


/* Y (n_tok rows of ldy = rows + 32, 16 padding columns either side) of
 * W in type wt by table k, computed over row ranges split at `split`. */
static float *run(const dn_kernels *k, const mat *m, int32_t wt, const float *X, int64_t n_tok,
                  int64_t split, uint8_t **xq_out)
{
    const int64_t ldy = m->rows + 32;
    const size_t xrb = dn_act_row_bytes(k, wt, m->cols);
    ck_assert(xrb > 0);
    uint8_t *xq = malloc(xrb * n_tok);
    dn_prepare_acts(k, wt, X, n_tok, m->cols, xq);
    float *Y = malloc(sizeof(float) * ldy * n_tok);
    for (int64_t i = 0; i < ldy * n_tok; i++) Y[i] = 1234.5f;
    dn_matrix W = { .data = dn_x16_base(wt) >= 0 ? (const void *)m->wx : (const void *)m->w, .type = wt,
                    .rows = m->rows, .cols = m->cols, .row_bytes = m->rb };
    dn_matmul_rows(k, &W, xq, n_tok, Y + 16, ldy, 0, split);
    dn_matmul_rows(k, &W, xq, n_tok, Y + 16, ldy, split, m->rows);
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t i = 0; i < 16; i++)
            CHECK(Y[t * ldy + i] == 1234.5f && Y[t * ldy + 16 + m->rows + i] == 1234.5f,
                  "%s wrote outside its rows", k->name);
    if (xq_out) *xq_out = xq;
    else free(xq);
    return Y;
}

/* 1 if k's kernels for wt multiply by the hi row alone (the fast gemm) */
static int hi_only(const dn_kernels *k, int32_t wt)
{
    return wt == XF && k->gemm[XF];
}

/* the activations a table's kernels multiply by (hi + lo for split bf16,
 * hi alone for the fast gemm) */
static void act_values(const dn_kernels *k, int32_t wt, const uint8_t *xq, int64_t cols, float *xd)
{
    const int32_t at = k->act_type[wt];
    ck_assert_int_eq(dn_dequantize_row(at, xq, xd, cols), 0);
    if (at == DANU_TYPE_BF16 && k->act_extra[at] && !hi_only(k, wt)) {
        const uint16_t *lo = (const uint16_t *)(xq + ((2 * cols + 63) & ~63));
        for (int64_t c = 0; c < cols; c++) xd[c] += dn_bf16_to_f32(lo[c]);
    }
}

static double worst[8][2], worst_fast_ref;

START_TEST(test_bf16x16_matmul)
{
    const int64_t cols = cols_set[_i];
    const dn_kernels *ks[8];
    const int nk = dn_kernels_all(ks, 1);
    const dn_kernels *ref = dn_kernels_for_isa(DN_ISA_REFERENCE);
    rng = 1000 + (uint64_t)_i;
    for (int ri = 0; ri < N_ROWS; ri++) {
        mat m;
        mat_make(&m, rows_set[ri], cols);
        const int64_t rows = m.rows, ldy = rows + 32;
        for (int ti = 0; ti < N_TOK; ti++) {
            const int64_t n_tok = tok_set[ti];
            /* row splits: all rows at once, and at a multiple of 16 inside */
            const int64_t split = (ti & 1) && rows > 16 ? 16 * (1 + ti % (rows / 16 - 1)) : rows;
            float *X = malloc(sizeof(float) * n_tok * cols), *xd = malloc(sizeof(float) * cols);
            for (int64_t i = 0; i < n_tok * cols; i++) X[i] = rnd_val();
            float *Yref = run(ref, &m, DANU_TYPE_BF16, X, n_tok, rows, NULL);
            for (int i = 0; i < nk; i++) for (int f = 0; f < 2; f++) {
                const dn_kernels *k = ks[i];
                const int32_t xt = f ? XF : XT;
                uint8_t *xq;
                float *Y = run(k, &m, xt, X, n_tok, split, &xq);
                float *Yp = run(k, &m, DANU_TYPE_BF16, X, n_tok, rows, NULL);   /* plain layout */
                /* the plain layout multiplies by hi + lo where the fast gemm has hi only */
                const int same_act = k->act_type[xt] == k->act_type[DANU_TYPE_BF16] && !hi_only(k, xt);
                const size_t xrb = dn_act_row_bytes(k, xt, cols);
                for (int64_t t = 0; t < n_tok; t++) {
                    act_values(k, xt, xq + t * xrb, cols, xd);
                    const float *x0 = X + t * cols;
                    for (int64_t r = 0; r < rows; r++) {
                        const float *wd = m.wd + r * cols;
                        double exact = 0, ref0 = 0, mag = 0, mag0 = 0, eact = 0;
                        for (int64_t c = 0; c < cols; c++) {
                            exact += (double)wd[c] * xd[c];
                            ref0 += (double)wd[c] * x0[c];
                            mag += fabs(wd[c]) * fabs(xd[c]);
                            mag0 += fabs(wd[c]) * fabs(x0[c]);
                            eact += fabs(wd[c]) * fabs((double)xd[c] - x0[c]);
                        }
                        const double y = Y[t * ldy + 16 + r], yr = Yref[t * ldy + 16 + r];
                        if (mag > 0 && fabs(y - exact) / mag > worst[i][f]) worst[i][f] = fabs(y - exact) / mag;
                        if (hi_only(k, xt) && mag0 > 0 && fabs(y - yr) / mag0 > worst_fast_ref)
                            worst_fast_ref = fabs(y - yr) / mag0;
                        CHECK(fabs(y - exact) <= EPS_DOT * mag + 1e-30,
                              "%s %s cols=%ld rows=%ld tok=%ld [%ld,%ld]: %.9g vs oracle %.9g (tol %.3g)",
                              k->name, dn_type_get(xt)->name, (long)cols, (long)rows, (long)n_tok, (long)t, (long)r,
                              y, exact, EPS_DOT * mag);
                        CHECK(fabs(yr - ref0) <= 1e-6 * mag0 + 1e-30, "reference %.9g vs %.9g", yr, ref0);
                        CHECK(fabs(y - yr) <= eact + EPS_DOT * (mag + mag0) + 1e-30,
                              "%s %s cols=%ld rows=%ld tok=%ld [%ld,%ld]: %.9g vs reference %.9g",
                              k->name, dn_type_get(xt)->name, (long)cols, (long)rows, (long)n_tok, (long)t, (long)r,
                              y, yr);
                        /* the fast gemm's whole error against f32 activations */
                        CHECK(fabs(y - yr) <= EPS_FAST * mag0 + 1e-30,
                              "%s %s cols=%ld [%ld,%ld]: %.9g vs reference %.9g", k->name, dn_type_get(xt)->name, (long)cols, (long)t, (long)r, y, yr);
                        /* same activations: both layouts within eps of one oracle */
                        if (same_act)
                            CHECK(fabs(y - Yp[t * ldy + 16 + r]) <= 2 * EPS_DOT * mag + 1e-30,
                                  "%s cols=%ld [%ld,%ld]: x16 %.9g vs plain %.9g", k->name, (long)cols,
                                  (long)t, (long)r, y, Yp[t * ldy + 16 + r]);
                    }
                }
                free(Y); free(Yp); free(xq);
            }
            free(Yref); free(X); free(xd);
        }
        mat_free(&m);
    }
    printf("  bf16x16 cols=%-5ld worst |y - oracle| / sum|w x| (x16, x16f):", (long)cols);
    for (int i = 0; i < nk; i++) printf(" %s %.1e %.1e", ks[i]->name, worst[i][0], worst[i][1]);
    printf("  (tolerance %.0e); fast vs f32 reference %.1e (tolerance %.1e)\n", EPS_DOT, worst_fast_ref, EPS_FAST);
}
END_TEST

/* A token alone (matvec) gets the same bits as in a batch (gemm tiles),
 * including token counts that leave ragged tiles; zeros give zeros. */
START_TEST(test_bf16x16_batch_equals_single)
{
    const dn_kernels *ks[8];
    const int nk = dn_kernels_all(ks, 1);
    rng = 7;
    static const int64_t cs[] = { 30, 2560 }, rs[] = { 16, 80, 112 };
    for (int ci = 0; ci < 2; ci++)
        for (int ri = 0; ri < 3; ri++) {
            mat m;
            mat_make(&m, rs[ri], cs[ci]);
            const int64_t rows = m.rows, cols = m.cols, n_tok = 17;
            float *X = malloc(sizeof(float) * n_tok * cols);
            for (int64_t i = 0; i < n_tok * cols; i++) X[i] = rnd_val();
            for (int i = 0; i < nk; i++) for (int f = 0; f < 2; f++) {
                const int32_t xt = f ? XF : XT;
                dn_matrix W = { .data = m.wx, .type = xt, .rows = rows, .cols = cols, .row_bytes = m.rb };
                const size_t xrb = dn_act_row_bytes(ks[i], xt, cols);
                uint8_t *xq = malloc(xrb * n_tok);
                dn_prepare_acts(ks[i], xt, X, n_tok, cols, xq);
                float *Y = malloc(sizeof(float) * rows * n_tok), *y1 = malloc(sizeof(float) * rows);
                dn_matmul_rows(ks[i], &W, xq, n_tok, Y, rows, 0, rows);
                for (int64_t t = 0; t < n_tok; t++) {
                    dn_matmul_rows(ks[i], &W, xq + t * xrb, 1, y1, rows, 0, rows);
                    ck_assert_msg(!memcmp(y1, Y + t * rows, sizeof(float) * rows),
                                  "%s %s cols=%ld rows=%ld token %ld", ks[i]->name, dn_type_get(xt)->name, (long)cols,
                                  (long)rows, (long)t);
                }
                /* and any sub-batch at any offset */
                for (int64_t t0 = 0; t0 < n_tok; t0 += 5) {
                    const int64_t nb = n_tok - t0 < 9 ? n_tok - t0 : 9;
                    float *Yb = malloc(sizeof(float) * rows * nb);
                    dn_matmul_rows(ks[i], &W, xq + t0 * xrb, nb, Yb, rows, 0, rows);
                    ck_assert_msg(!memcmp(Yb, Y + t0 * rows, sizeof(float) * rows * nb), "%s %s sub-batch %ld",
                                  ks[i]->name, dn_type_get(xt)->name, (long)t0);
                    free(Yb);
                }
                free(Y); free(y1); free(xq);
            }
            free(X);
            mat_free(&m);
        }
    /* zeros */
    const int64_t rows = 32, cols = 256, n_tok = 3;
    uint16_t *w = calloc(rows * cols, 2);
    uint8_t *wx = malloc(rows * cols * 2);
    for (int g = 0; g < 2; g++) dn_x16_repack(XT, w + g * 16 * cols, 2 * cols, wx + g * 32 * cols, cols);
    float *x = malloc(sizeof(float) * n_tok * cols), y[32 * 3];
    for (int64_t i = 0; i < n_tok * cols; i++) x[i] = rnd_val();
    for (int i = 0; i < nk; i++) for (int f = 0; f < 2; f++) {
        const int32_t xt = f ? XF : XT;
        dn_matrix W = { .data = wx, .type = xt, .rows = rows, .cols = cols, .row_bytes = 2 * cols };
        uint8_t *xq = malloc(dn_act_row_bytes(ks[i], xt, cols) * n_tok);
        dn_prepare_acts(ks[i], xt, x, n_tok, cols, xq);
        dn_matmul_rows(ks[i], &W, xq, n_tok, y, rows, 0, rows);
        for (int j = 0; j < rows * n_tok; j++)
            ck_assert_msg(y[j] == 0.0f, "%s %s: %g", ks[i]->name, dn_type_get(xt)->name, y[j]);
        free(xq);
    }
    free(w); free(wx); free(x);
}
END_TEST

/* The fast gemm is the exact one without the lo products: the exact gemm
 * on the same activations with their lo rows zeroed gives the same values
 * (every lane sums the hi products over k in the same order, whatever the
 * tile shapes), and with the lo rows it differs (so the option matters). */
/* The AVX-512 table when it has the fast gemm, else NULL. */
static const dn_kernels *fast_table(void)
{
    const dn_kernels *k = dn_kernels_for_isa(DN_ISA_AVX512);
    return k && k->gemm[XF] ? k : NULL;
}

START_TEST(test_bf16x16_fast_is_hi_only)
{
    const dn_kernels *k = fast_table();
    ck_assert_ptr_nonnull(k);
    rng = 99;
    static const int64_t cs[] = { 2, 30, 2560 }, rs[] = { 16, 48, 112 }, ts[] = { 1, 5, 8, 9, 17, 24 };
    int differ = 0;
    for (int ci = 0; ci < 3; ci++)
        for (int ri = 0; ri < 3; ri++) {
            mat m;
            mat_make(&m, rs[ri], cs[ci]);
            const int64_t rows = m.rows, cols = m.cols;
            for (int ti = 0; ti < 6; ti++) {
                const int64_t n_tok = ts[ti];
                const size_t xrb = dn_act_row_bytes(k, XT, cols), lo = (2 * (size_t)cols + 63) & ~(size_t)63;
                ck_assert_uint_eq(dn_act_row_bytes(k, XF, cols), xrb);
                float *X = malloc(sizeof(float) * n_tok * cols);
                for (int64_t i = 0; i < n_tok * cols; i++) X[i] = rnd_val();
                uint8_t *xq = malloc(xrb * n_tok), *xz = malloc(xrb * n_tok);
                dn_prepare_acts(k, XF, X, n_tok, cols, xq);
                memcpy(xz, xq, xrb * n_tok);
                for (int64_t t = 0; t < n_tok; t++) memset(xz + t * xrb + lo, 0, 2 * (size_t)cols);
                float *yf = malloc(sizeof(float) * rows * n_tok), *yz = malloc(sizeof(float) * rows * n_tok),
                      *ye = malloc(sizeof(float) * rows * n_tok);
                dn_matrix Wf = { .data = m.wx, .type = XF, .rows = rows, .cols = cols, .row_bytes = m.rb };
                dn_matrix We = Wf;
                We.type = XT;
                dn_matmul_rows(k, &Wf, xq, n_tok, yf, rows, 0, rows);
                dn_matmul_rows(k, &We, xz, n_tok, yz, rows, 0, rows);
                dn_matmul_rows(k, &We, xq, n_tok, ye, rows, 0, rows);
                for (int64_t i = 0; i < rows * n_tok; i++) {
                    CHECK(yf[i] == yz[i], "cols=%ld rows=%ld tok=%ld [%ld]: fast %.9g vs exact without lo %.9g",
                          (long)cols, (long)rows, (long)n_tok, (long)i, yf[i], yz[i]);
                    differ += yf[i] != ye[i];
                }
                free(X); free(xq); free(xz); free(yf); free(yz); free(ye);
            }
            mat_free(&m);
        }
    ck_assert_int_gt(differ, 0);
}
END_TEST

/* No argument: the tests every CPU runs (each table this CPU has).
 * "fast": the AVX-512 fast gemm only (its own meson test, bf16x16_fast),
 * exit 77 (SKIP) without it. */
int main(int argc, char **argv)
{
    const int fast = argc > 1 && !strcmp(argv[1], "fast");
    if (fast && !fast_table()) {
        printf("no AVX-512 fast bf16 gemm (CPU without AVX-512, or DANU_ISA below avx512): skipped\n");
        return 77;
    }
    Suite *s = suite_create(fast ? "bf16x16_fast" : "bf16x16");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    if (fast) {
        tcase_add_test(tc, test_bf16x16_fast_is_hi_only);
    } else {
        tcase_add_test(tc, test_bf16x16_type);
        tcase_add_test(tc, test_bf16x16_roundtrip);
        tcase_add_loop_test(tc, test_bf16x16_matmul, 0, N_COLS);
        tcase_add_test(tc, test_bf16x16_batch_equals_single);
    }
    suite_add_tcase(s, tc);
    const int failed = tu_run(s);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
