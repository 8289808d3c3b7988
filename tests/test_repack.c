/* test_repack.c - the x16 (16-row interleaved) weight layouts:
 *  - dn_x16_repack then dn_x16_extract_block gives back every block of
 *    every row byte for byte, for quantized rows and for arbitrary bytes
 *    (every scale/min bit pattern of q4_K/q6_K; fp16 d fields finite);
 *  - dn_matmul_rows on a repacked matrix, on every kernel table (fast x16
 *    gemm or the per-block fallback), against the reference table on the
 *    stored layout and against a double oracle on the activations the
 *    table prepared, over whole and partial row ranges.
 * Tolerances as in test_kernels.c: with M = sum (|w_i| + 2 max|w| of the
 * 32-group) |xq_i|, the integer block dots are exact and only float
 * rounding remains, |y - oracle(xq)| <= 5e-6 M (float weights: 2e-5 M,
 * M = sum |w_i xq_i|); against the reference
 * (f32 activations) the activation rounding E = sum |w_i| |x_i - xq_i| is
 * added, plus eps on both magnitudes. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"
#include "kernels/kernels.h"
#include "quant/quant.h"

#define EPS_QUANT 5e-6

/* every stored type with an x16 form (q4_0, q8_0, q4_K, q6_K, and any
 * added later), found through dn_x16_base */
static int32_t bases[DN_TYPE_COUNT];
static int n_bases;
#define EPS_DOT 2e-5

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static uint32_t rnd_u32(void) { return tu_rand_u32(&rng_state); }
static float rnd_val(void) { return tu_rand_act(&rng_state); }

/* a random finite fp16 (exponent field below 31) */
static uint16_t rnd_half(void)
{
    uint16_t h = (uint16_t)rnd_u32();
    if (((h >> 10) & 31) == 31) h &= (uint16_t)~0x4000;
    return h;
}

/* offsets of the fp16 d (and dmin) fields in a base block */
static int half_fields(int32_t bt, int *off)
{
    if (!dn_type_get(bt)->is_quantized) return 0;
    switch (bt) {
    case DANU_TYPE_Q4_K: off[0] = 0; off[1] = 2; return 2;
    case DANU_TYPE_Q6_K: off[0] = 208; return 1;
    default: off[0] = 0; return 1;
    }
}


/* rows x cols stored rows -> the x16 copy (rows % 16 == 0) */
static uint8_t *repack(int32_t bt, const uint8_t *src, int64_t rows, int64_t cols)
{
    const int32_t xt = dn_x16_of(bt);
    const uint64_t srb = dn_type_row_bytes(bt, (uint64_t)cols), drb = dn_type_row_bytes(xt, (uint64_t)cols);
    ck_assert(xt >= 0 && dn_x16_base(xt) == bt && srb && drb);
    uint8_t *dst = malloc(drb * rows);
    for (int64_t g = 0; g < rows / 16; g++)
        ck_assert_int_eq(dn_x16_repack(xt, src + g * 16 * srb, srb, dst + g * 16 * drb, cols), 0);
    return dst;
}

/* every block of every row extracted equals the stored block */
static void check_round_trip(int32_t bt, const uint8_t *src, int64_t rows, int64_t cols, const char *what)
{
    const int32_t xt = dn_x16_of(bt);
    const uint64_t srb = dn_type_row_bytes(bt, (uint64_t)cols), drb = dn_type_row_bytes(xt, (uint64_t)cols);
    /* one block column: x16 block size elements, in base-type bytes */
    const uint32_t bs = dn_type_block_size(xt);
    const uint64_t bb = dn_type_row_bytes(bt, bs);
    ck_assert(bb > 0 && bb < 256);
    uint8_t *x = repack(bt, src, rows, cols);
    uint8_t blk[256];
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols / bs; c++) {
            memset(blk, 0xa5, sizeof blk);
            CHECK(dn_x16_extract_block(xt, x + (r / 16) * 16 * drb, cols, (int)(r % 16), c, blk) == 0, "extract");
            CHECK(!memcmp(blk, src + r * srb + c * bb, bb), "%s %s cols=%ld: row %ld block %ld differs",
                  dn_type_get(bt)->name, what, (long)cols, (long)r, (long)c);
            CHECK(blk[bb] == 0xa5, "extract wrote past the block");
        }
    free(x);
}

START_TEST(test_repack_round_trip)
{
    static const int64_t cols_small[] = { 32, 96, 2560 }, cols_k[] = { 256, 768, 2560 };
    rng_state = 77;
    for (int ti = 0; ti < n_bases; ti++) {
        const int32_t bt = bases[ti];
        const int32_t xt = dn_x16_of(bt);
        const int64_t *cs = dn_type_block_size(xt) == 256 ? cols_k : cols_small;
        for (int ci = 0; ci < 3; ci++) {
            const int64_t rows = 32, cols = cs[ci];
            const uint64_t srb = dn_type_row_bytes(bt, (uint64_t)cols);
            uint8_t *q = malloc(srb * rows);
            float *w = malloc(sizeof(float) * cols);
            /* rows quantized from random floats */
            for (int64_t r = 0; r < rows; r++) {
                for (int64_t i = 0; i < cols; i++) w[i] = rnd_val() * 0.05f * (float)(1 + r % 5);
                ck_assert_int_eq(dn_quantize_row(bt, w, q + r * srb, cols), 0);
            }
            check_round_trip(bt, q, rows, cols, "quantized");
            /* arbitrary bytes: every scale/min/quant bit pattern */
            const uint64_t bb = dn_type_get(bt)->type_size;
            int off[2];
            const int nh = half_fields(bt, off);
            for (uint64_t i = 0; i < srb * rows; i++) q[i] = (uint8_t)rnd_u32();
            for (int64_t r = 0; r < rows; r++)
                for (uint64_t b = 0; b < srb / bb; b++)
                    for (int h = 0; h < nh; h++) {
                        const uint16_t v = rnd_half();
                        memcpy(q + r * srb + b * bb + off[h], &v, 2);
                    }
            check_round_trip(bt, q, rows, cols, "random bytes");
            free(q);
            free(w);
        }
        /* bad arguments are refused */
        uint8_t buf[4096] = { 0 }, blk[256];
        ck_assert_int_eq(dn_x16_repack(bt, buf, 18, buf, 256), -1);   /* not an x16 type */
        ck_assert_int_eq(dn_x16_repack(xt, buf, 18, buf, 1), -1);     /* not whole blocks */
        ck_assert_int_eq(dn_x16_extract_block(xt, buf, 256, 16, 0, blk), -1);
        ck_assert_int_eq(dn_x16_extract_block(xt, buf, 256, 0, 256 / dn_type_block_size(xt), blk), -1);
    }
    ck_assert_int_ge(n_bases, 4);
    ck_assert_int_eq(dn_x16_of(DANU_TYPE_Q5_0), -1);
    ck_assert_int_eq(dn_x16_base(DANU_TYPE_Q4_0), -1);
}
END_TEST

/* Stored weights, their dequantized values and 32-group maxima. */
typedef struct wset {
    int32_t bt;
    int64_t rows, cols;
    uint64_t srb;
    uint8_t *q, *x16;
    float *wd, *gmax;
} wset;

static void wset_make(wset *s, int32_t bt, int64_t rows, int64_t cols)
{
    s->bt = bt; s->rows = rows; s->cols = cols;
    s->srb = dn_type_row_bytes(bt, (uint64_t)cols);
    s->q = malloc(s->srb * rows);
    s->wd = malloc(sizeof(float) * rows * cols);
    s->gmax = malloc(sizeof(float) * rows * cols);
    float *w = malloc(sizeof(float) * cols);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < cols; i++) w[i] = rnd_val() * 0.05f * (float)(1 + r % 5);
        ck_assert_int_eq(dn_quantize_row(bt, w, s->q + r * s->srb, cols), 0);
        ck_assert_int_eq(dn_dequantize_row(bt, s->q + r * s->srb, s->wd + r * cols, cols), 0);
    }
    memset(s->gmax, 0, sizeof(float) * rows * cols);   /* float types: no block terms */
    for (int64_t i = 0; dn_type_get(bt)->is_quantized && i < rows * cols; i += 32) {
        float m = 0;
        for (int j = 0; j < 32; j++) m = fmaxf(m, fabsf(s->wd[i + j]));
        for (int j = 0; j < 32; j++) s->gmax[i + j] = m;
    }
    s->x16 = repack(bt, s->q, rows, cols);
    free(w);
}

static void wset_free(wset *s)
{
    free(s->q); free(s->x16); free(s->wd); free(s->gmax);
}

/* Row ranges to compute, as [r0, r1) pairs covering 0..rows: the whole
 * matrix, group-aligned pieces, and (kind 2) pieces off the boundaries. */
static int ranges(int kind, int64_t rows, int64_t *r)
{
    switch (kind) {
    case 0: r[0] = 0; r[1] = rows; return 1;
    case 1: /* 16-row aligned split, middle range alone */
        if (rows < 48) { r[0] = 0; r[1] = 16; r[2] = 16; r[3] = rows; return 2; }
        r[0] = 16; r[1] = rows - 16; r[2] = 0; r[3] = 16; r[4] = rows - 16; r[5] = rows; return 3;
    default: /* off the group boundaries (callers avoid it, but it must be right) */
        r[0] = 0; r[1] = 5; r[2] = 5; r[3] = rows - 3; r[4] = rows - 3; r[5] = rows; return 3;
    }
}

static void check_x16_matmul(const wset *s, int64_t n_tok, const dn_kernels *const *ks, int nk)
{
    const dn_kernels *ref = dn_kernels_for_isa(DN_ISA_REFERENCE);
    const int64_t rows = s->rows, cols = s->cols, ldy = rows + 2;
    const int32_t xt = dn_x16_of(s->bt);
    const char *tn = dn_type_get(s->bt)->name;
    const double eps = dn_type_get(s->bt)->is_quantized ? EPS_QUANT : EPS_DOT;
    float *X = malloc(sizeof(float) * n_tok * cols), *xd = malloc(sizeof(float) * n_tok * cols);
    for (int64_t i = 0; i < n_tok * cols; i++) X[i] = rnd_val();
    /* the reference table on the stored layout */
    const size_t rrb = dn_act_row_bytes(ref, s->bt, cols);
    uint8_t *xr = malloc(rrb * n_tok);
    dn_prepare_acts(ref, s->bt, X, n_tok, cols, xr);
    float *Yref = malloc(sizeof(float) * ldy * n_tok);
    const dn_matrix Ws = { .data = s->q, .type = s->bt, .rows = rows, .cols = cols, .row_bytes = s->srb };
    dn_matmul_rows(ref, &Ws, xr, n_tok, Yref, ldy, 0, rows);
    const dn_matrix Wx = { .data = s->x16, .type = xt, .rows = rows, .cols = cols,
                           .row_bytes = dn_type_row_bytes(xt, (uint64_t)cols) };
    float *Y = malloc(sizeof(float) * ldy * n_tok);
    for (int i = 0; i < nk; i++) {
        const dn_kernels *k = ks[i];
        const int32_t at = k->act_type[xt];
        const size_t xrb = dn_act_row_bytes(k, xt, cols);
        ck_assert_msg(xrb > 0 && k->act_prepare[at], "%s: no activations for %s x16", k->name, tn);
        uint8_t *xq = malloc(xrb * n_tok);
        dn_prepare_acts(k, xt, X, n_tok, cols, xq);
        for (int64_t t = 0; t < n_tok; t++) {
            CHECK(dn_dequantize_row(at, xq + t * xrb, xd + t * cols, cols) == 0, "dequantize activations");
            /* bf16 activations with extras carry x - hi as a second bf16 row */
            if (at == DANU_TYPE_BF16 && k->act_extra[at]) {
                const uint16_t *lo = (const uint16_t *)(const void *)(xq + t * xrb + ((2 * cols + 63) & ~63));
                for (int64_t c = 0; c < cols; c++) {
                    const uint32_t b = (uint32_t)lo[c] << 16;
                    float f;
                    memcpy(&f, &b, 4);
                    xd[t * cols + c] += f;
                }
            }
        }
        for (int kind = 0; kind < 3; kind++) {
            int64_t r[6];
            const int nr = ranges(kind, rows, r);
            for (int64_t j = 0; j < ldy * n_tok; j++) Y[j] = 1234.5f;
            for (int p = 0; p < nr; p++) dn_matmul_rows(k, &Wx, xq, n_tok, Y, ldy, r[2 * p], r[2 * p + 1]);
            for (int64_t t = 0; t < n_tok; t++) {
                CHECK(Y[t * ldy + rows] == 1234.5f && Y[t * ldy + rows + 1] == 1234.5f, "%s wrote outside its rows",
                      k->name);
                for (int64_t rr = 0; rr < rows; rr++) {
                    const float *wd = s->wd + rr * cols, *gm = s->gmax + rr * cols;
                    const float *xt_ = xd + t * cols, *x0 = X + t * cols;
                    double exact = 0, mag = 0, mag0 = 0, eact = 0;
                    for (int64_t c = 0; c < cols; c++) {
                        exact += (double)wd[c] * xt_[c];
                        mag += (fabs(wd[c]) + 2.0 * gm[c]) * fabs(xt_[c]);
                        mag0 += (fabs(wd[c]) + 2.0 * gm[c]) * fabs(x0[c]);
                        eact += fabs(wd[c]) * fabs((double)xt_[c] - x0[c]);
                    }
                    const double y = Y[t * ldy + rr];
                    CHECK(fabs(y - exact) <= eps * mag + 1e-30,
                          "%s %s x16 cols=%ld rows=%ld tok=%ld ranges %d [%ld,%ld]: %.9g vs oracle %.9g (tol %.3g)",
                          k->name, tn, (long)cols, (long)rows, (long)n_tok, kind, (long)t, (long)rr, y, exact,
                          eps * mag);
                    const double tol = eact + eps * (mag + mag0) + 1e-30;
                    CHECK(fabs(y - Yref[t * ldy + rr]) <= tol,
                          "%s %s x16 cols=%ld rows=%ld tok=%ld ranges %d [%ld,%ld]: %.9g vs reference %.9g (tol %.3g)",
                          k->name, tn, (long)cols, (long)rows, (long)n_tok, kind, (long)t, (long)rr, y,
                          Yref[t * ldy + rr], tol);
                }
            }
        }
        free(xq);
    }
    free(Y); free(Yref); free(xr); free(X); free(xd);
}

START_TEST(test_repack_matmul)
{
    const int32_t bt = bases[_i];
    static const int64_t cols_small[] = { 32, 96, 2560 }, cols_k[] = { 256, 768, 2560 };
    static const int64_t rows_set[] = { 16, 48, 64 }, tok_set[] = { 1, 3, 17 };
    const int64_t *cs = dn_type_block_size(dn_x16_of(bt)) == 256 ? cols_k : cols_small;
    const dn_kernels *ks[8];
    const int nk = dn_kernels_all(ks, 1);
    rng_state = 0x51ed27ull + (uint64_t)bt * 131;
    for (int ci = 0; ci < 3; ci++)
        for (int ri = 0; ri < 3; ri++) {
            wset s;
            wset_make(&s, bt, rows_set[ri], cs[ci]);
            for (int ti = 0; ti < 3; ti++) {
                if (cs[ci] == 2560 && rows_set[ri] == 64 && tok_set[ti] == 3) continue;   /* time */
                check_x16_matmul(&s, tok_set[ti], ks, nk);
            }
            wset_free(&s);
        }
    printf("  %-5s x16 matmul checked on:", dn_type_get(bt)->name);
    for (int i = 0; i < nk; i++)
        printf(" %s(%s)", ks[i]->name, ks[i]->gemm[dn_x16_of(bt)] ? "gemm" : "fallback");
    printf("\n");
}
END_TEST

/* Zero weights give exactly zero through every path. */
START_TEST(test_repack_matmul_zero)
{
    const dn_kernels *ks[8];
    const int nk = dn_kernels_all(ks, 1);
    for (int ti = 0; ti < n_bases; ti++) {
        const int32_t bt = bases[ti], xt = dn_x16_of(bt);
        const int64_t cols = 256, rows = 32, n_tok = 3;
        float *w = calloc((size_t)(rows * cols), sizeof(float)), *x = malloc(sizeof(float) * n_tok * cols);
        for (int64_t i = 0; i < n_tok * cols; i++) x[i] = rnd_val();
        const uint64_t srb = dn_type_row_bytes(bt, cols);
        uint8_t *q = malloc(srb * rows);
        for (int64_t r = 0; r < rows; r++) dn_quantize_row(bt, w + r * cols, q + r * srb, cols);
        uint8_t *x16 = repack(bt, q, rows, cols);
        dn_matrix W = { .data = x16, .type = xt, .rows = rows, .cols = cols, .row_bytes = dn_type_row_bytes(xt, cols) };
        for (int i = 0; i < nk; i++) {
            uint8_t *xq = malloc(dn_act_row_bytes(ks[i], xt, cols) * n_tok);
            dn_prepare_acts(ks[i], xt, x, n_tok, cols, xq);
            float y[32 * 3];
            dn_matmul_rows(ks[i], &W, xq, n_tok, y, rows, 0, rows);
            for (int j = 0; j < rows * n_tok; j++)
                ck_assert_msg(y[j] == 0.0f, "%s %s x16: %g", ks[i]->name, dn_type_get(bt)->name, y[j]);
            free(xq);
        }
        free(w); free(x); free(q); free(x16);
    }
}
END_TEST

int main(void)
{
    for (int32_t t = 0; t < DN_TYPE_COUNT; t++)   /* once per base (bf16 has two x16 types) */
        if (dn_x16_base(t) >= 0 && dn_x16_of(dn_x16_base(t)) == t) bases[n_bases++] = dn_x16_base(t);
    Suite *s = suite_create("repack");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_repack_round_trip);
    tcase_add_loop_test(tc, test_repack_matmul, 0, n_bases);
    tcase_add_test(tc, test_repack_matmul_zero);
    suite_add_tcase(s, tc);
    const int failed = tu_run(s);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
