/* test_x16k_avx512.c - the AVX-512 gemm kernels for the repacked K-quant
 * types q4_Kx16 and q6_Kx16 (lib/kernels/avx512_x16k.c), focused:
 *  - against the per-block fallback (the scalar table's dn_matmul_rows on
 *    the same repacked matrix and byte-identical q8_K activations) and
 *    against the reference table on the original GGUF layout;
 *  - cols 256, 768, 2560, 6912; row groups 1..4; tokens 1..20 through the
 *    gemm directly, every (nr, nt) giving the same bits as the full batch;
 *  - extreme blocks: largest scales and mins, weights all 0 / all max,
 *    signed q6_K scales at -128 and 127, activations at +-127 and zero.
 * Matrices, activations and the padding-checked products come from the
 * x16 suite (x16_suite.h), the comparisons and modes are this file's.
 * Skipped (exit 77, a SKIP in meson test) where there is no AVX-512 table
 * with these gemms (CPU without AVX-512, or DANU_ISA below avx512).
 *
 * Tolerances, per output y = sum_i w_i x_i: the kernel's integer sums are
 * exact, so only the float steps per 256 elements round. Relative to the
 * magnitude of the terms it adds, M = sum_i a_i |xq_i| with a_i =
 * |d sc q_i| + |dmin m| (q4_K) or |d sc| (q_i + 32) (q6_K), the error is at
 * most (n/256 + 4) 2^-24 M < EPS M for n <= 6912; vs the fallback (another
 * summation order) 2 EPS M; vs the reference (f32 activations) also the
 * activation rounding sum_i |w_i| |x_i - xq_i|. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"
#include "x16_suite.h"
#include "kernels/kernels.h"
#include "common/bytes.h"

#define EPS 5e-6
enum { ROWS = 64, NTOK = 20 };

/* ---------------- weights ---------------- */

enum { W_RANDOM, W_MAX, W_ZERO, W_MAXSC_RANDQ, W_MIXED };
static const char *const wmode_name[] = { "random", "max", "zero", "max-scales", "mixed" };

/* 8 six-bit scales and mins into q4_K's 12 bytes (as ggml packs them) */
static void pack_scales(const uint8_t *sc, const uint8_t *m, uint8_t *q)
{
    for (int j = 0; j < 4; j++) {
        q[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        q[j + 4] = (uint8_t)((m[j] & 63) | ((m[j + 4] >> 4) << 6));
        q[j + 8] = (uint8_t)((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
    }
}

static void unpack_scales(const uint8_t *q, uint8_t *sc, uint8_t *m)
{
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            sc[j] = q[j] & 63;
            m[j] = q[j + 4] & 63;
        } else {
            sc[j] = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
            m[j] = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
        }
    }
}

/* extreme blocks written over quantized ones (x16_mat_make_with's block) */
static void override_block(int32_t bt, uint8_t *b, int mode)
{
    if (mode == W_RANDOM) return;
    if (bt == DANU_TYPE_Q4_K) {
        dn_block_q4_K *k = (dn_block_q4_K *)b;
        uint8_t sc[8], m[8];
        for (int j = 0; j < 8; j++) {
            sc[j] = mode == W_MIXED ? (uint8_t)(x16_rand_u32() & 1 ? 63 : 0) : 63;
            m[j] = mode == W_MIXED ? (uint8_t)(x16_rand_u32() & 1 ? 63 : 0) : 63;
        }
        pack_scales(sc, m, k->scales);
        k->d = dn_f32_to_fp16(0.5f);
        k->dmin = dn_f32_to_fp16(mode == W_MIXED ? 0.75f : 0.25f);
        for (int i = 0; i < 128; i++)
            k->qs[i] = mode == W_MAX ? 0xFF : mode == W_ZERO ? 0x00
                     : mode == W_MIXED ? (x16_rand_u32() & 1 ? 0xFF : 0x00) : (uint8_t)x16_rand_u32();
    } else {
        dn_block_q6_K *k = (dn_block_q6_K *)b;
        for (int j = 0; j < 16; j++)
            k->scales[j] = (int8_t)(mode == W_MAX ? 127 : mode == W_ZERO ? -128
                                  : mode == W_MIXED ? (j & 1 ? 127 : -128) : (x16_rand_u32() & 1 ? 127 : -128));
        k->d = dn_f32_to_fp16(0.5f);
        for (int i = 0; i < 128; i++)
            k->ql[i] = mode == W_MAX ? 0xFF : mode == W_ZERO ? 0x00
                     : mode == W_MIXED ? (x16_rand_u32() & 1 ? 0xFF : 0x00) : (uint8_t)x16_rand_u32();
        for (int i = 0; i < 64; i++)
            k->qh[i] = mode == W_MAX ? 0xFF : mode == W_ZERO ? 0x00
                     : mode == W_MIXED ? (x16_rand_u32() & 1 ? 0xFF : 0x00) : (uint8_t)x16_rand_u32();
    }
}

/* a_i of one base block (256 elements; x16_mat_make_with's mags) */
static void term_magnitudes(int32_t bt, const uint8_t *b, const float *w, float *a)
{
    (void)w;
    if (bt == DANU_TYPE_Q4_K) {
        const dn_block_q4_K *k = (const dn_block_q4_K *)b;
        uint8_t sc[8], m[8];
        unpack_scales(k->scales, sc, m);
        const double d = dn_fp16_to_f32(k->d), dmin = dn_fp16_to_f32(k->dmin);
        for (int jj = 0; jj < 4; jj++)
            for (int l = 0; l < 32; l++) {
                const int e0 = 64 * jj + l, e1 = e0 + 32;
                a[e0] = (float)(fabs(d * sc[2 * jj] * (k->qs[32 * jj + l] & 0xF)) + fabs(dmin * m[2 * jj]));
                a[e1] = (float)(fabs(d * sc[2 * jj + 1] * (k->qs[32 * jj + l] >> 4)) + fabs(dmin * m[2 * jj + 1]));
            }
    } else {
        const dn_block_q6_K *k = (const dn_block_q6_K *)b;
        const double d = dn_fp16_to_f32(k->d);
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++) {
                const uint8_t ql0 = k->ql[64 * h + l], ql1 = k->ql[64 * h + 32 + l], qh = k->qh[32 * h + l];
                const int q[4] = { (ql0 & 0xF) | ((qh & 3) << 4), (ql1 & 0xF) | (((qh >> 2) & 3) << 4),
                                   (ql0 >> 4) | (((qh >> 4) & 3) << 4), (ql1 >> 4) | (((qh >> 6) & 3) << 4) };
                for (int s = 0; s < 4; s++) {
                    const int e = 128 * h + 32 * s + l;
                    a[e] = (float)(fabs(d * k->scales[e / 16]) * (q[s] + 32));
                }
            }
    }
}

static void mat_make(x16_mat *w, int32_t bt, int64_t rows, int64_t cols, int mode)
{
    static const x16_fill fill = { x16_rand_act, override_block, term_magnitudes };
    x16_mat_make_with(w, dn_x16_of(bt), rows, cols, mode, &fill);
}

/* ---------------- activations ---------------- */

enum { A_RANDOM, A_PLUS, A_ALTERNATE, A_ZERO };
static const char *const amode_name[] = { "random", "+1", "-1/+1", "zero" };

static float *acts_make(int64_t n_tok, int64_t cols, int mode)
{
    float *X = malloc(sizeof(float) * n_tok * cols);
    for (int64_t i = 0; i < n_tok * cols; i++)
        X[i] = mode == A_RANDOM ? x16_rand_act() : mode == A_PLUS ? 1.0f : mode == A_ALTERNATE ? (i & 1 ? 1.0f : -1.0f) : 0.0f;
    return X;
}

/* ---------------- one comparison ---------------- */

static const dn_kernels *avx512(void)
{
    const dn_kernels *k = dn_kernels_for_isa(DN_ISA_AVX512);
    if (!k || !k->gemm[DN_TYPE_Q4_K_X16] || !k->gemm[DN_TYPE_Q6_K_X16]) return NULL;
    return k;
}

static double worst_fb, worst_ref;

/* Y = W X on table k, the repacked or the base layout (rows in two ranges
 * when there are 2+ groups), ldy = rows + 3 with the padding checked
 * untouched. */
static float *matmul(const dn_kernels *k, const x16_mat *w, int repacked, const uint8_t *xq, int64_t n_tok)
{
    if (repacked) return x16_run(k, w, xq, n_tok, w->rows > 16 ? 16 : w->rows);
    const dn_matrix W = { .data = w->wq, .type = w->bt, .rows = w->rows, .cols = w->cols, .row_bytes = w->brb };
    return x16_matmul(k, &W, xq, n_tok, w->rows > 16 ? 16 : w->rows, w->rows + 3);
}

static void check_case(const dn_kernels *ka, const x16_mat *w, const float *X, int64_t n_tok, const char *what)
{
    const dn_kernels *ks = dn_kernels_for_isa(DN_ISA_SCALAR), *kr = dn_kernels_for_isa(DN_ISA_REFERENCE);
    const int64_t rows = w->rows, cols = w->cols, ldy = rows + 3;
    const char *tn = dn_type_get(w->bt)->name;
    CHECK(ka->act_type[w->xt] == DN_TYPE_Q8_K && ks->act_type[w->xt] == DN_TYPE_Q8_K, "q8_K activations");
    size_t ra, rs, rr;
    uint8_t *xa = x16_prepare(ka, w->xt, X, n_tok, cols, &ra);
    uint8_t *xs = x16_prepare(ks, w->xt, X, n_tok, cols, &rs);
    uint8_t *xr = x16_prepare(kr, w->bt, X, n_tok, cols, &rr);
    const size_t qb = dn_type_row_bytes(DN_TYPE_Q8_K, (uint64_t)cols);
    for (int64_t t = 0; t < n_tok; t++)
        CHECK(!memcmp(xa + t * ra, xs + t * rs, qb), "%s: q8_K activations differ from scalar", what);

    float *Ya = matmul(ka, w, 1, xa, n_tok);
    float *Yf = matmul(ks, w, 1, xs, n_tok);
    float *Yr = matmul(kr, w, 0, xr, n_tok);
    float *xd = malloc(sizeof(float) * cols);
    for (int64_t t = 0; t < n_tok; t++) {
        CHECK(dn_dequantize_row(DN_TYPE_Q8_K, xa + t * ra, xd, cols) == 0, "dequantize q8_K");
        const float *x0 = X + t * cols;
        for (int64_t r = 0; r < rows; r++) {
            const float *wd = w->wd + r * cols, *wa = w->wa + r * cols;
            double mag = 0, mag0 = 0, eact = 0;
            for (int64_t c = 0; c < cols; c++) {
                mag += (double)wa[c] * fabs(xd[c]);
                mag0 += (double)wa[c] * fabs(x0[c]);
                eact += fabs(wd[c]) * fabs((double)xd[c] - x0[c]);
            }
            const double y = Ya[t * ldy + r], yf = Yf[t * ldy + r], yr = Yr[t * ldy + r];
            CHECK(isfinite(y), "%s %s: not finite at [%ld,%ld]", tn, what, (long)t, (long)r);
            if (mag > 0) {
                if (fabs(y - yf) / mag > worst_fb) worst_fb = fabs(y - yf) / mag;
                if ((fabs(y - yr) - eact) / (mag + mag0) > worst_ref) worst_ref = (fabs(y - yr) - eact) / (mag + mag0);
            }
            CHECK(fabs(y - yf) <= 2 * EPS * mag + 1e-30,
                  "%s %s cols=%ld [tok %ld, row %ld]: %.9g vs fallback %.9g (tol %.3g)",
                  tn, what, (long)cols, (long)t, (long)r, y, yf, 2 * EPS * mag);
            CHECK(fabs(y - yr) <= eact + EPS * (mag + mag0) + 1e-30,
                  "%s %s cols=%ld [tok %ld, row %ld]: %.9g vs reference %.9g (tol %.3g)",
                  tn, what, (long)cols, (long)t, (long)r, y, yr, eact + EPS * (mag + mag0));
        }
    }

    /* the gemm itself, every row-group count and token count: the same bits
     * as the batch (tiles never change an output's float operations) */
    dn_gemm_fn g = ka->gemm[w->xt];
    const size_t gs = 16 * w->xrb;
    float *y = malloc(sizeof(float) * ldy * n_tok);
    for (int64_t nr = 16; nr <= rows; nr += 16)
        for (int64_t nt = 1; nt <= n_tok; nt++) {
            /* start at the last group / token that still fits: offsets too */
            const int64_t g0 = (rows - nr) / 16, t0 = n_tok - nt;
            for (int64_t i = 0; i < ldy * n_tok; i++) y[i] = -777.0f;
            g(cols, w->wx + (size_t)g0 * gs, gs, (int)nr, xa + (size_t)t0 * ra, ra, (int)nt, y, (size_t)ldy);
            for (int64_t t = 0; t < n_tok; t++)
                for (int64_t r = 0; r < ldy; r++) {
                    const float v = y[t * ldy + r];
                    if (t < nt && r < nr) {
                        const float want = Ya[(t0 + t) * ldy + 16 * g0 + r];
                        CHECK(!memcmp(&v, &want, sizeof v),
                              "%s %s cols=%ld nr=%ld nt=%ld [tok %ld, row %ld]: %.9g vs batch %.9g",
                              tn, what, (long)cols, (long)nr, (long)nt, (long)t, (long)r, v, want);
                    } else {
                        CHECK(v == -777.0f, "%s gemm nr=%ld nt=%ld wrote outside [tok %ld, row %ld]",
                              tn, (long)nr, (long)nt, (long)t, (long)r);
                    }
                }
        }
    free(y); free(xd); free(Ya); free(Yf); free(Yr); free(xa); free(xs); free(xr);
}

/* ---------------- tests ---------------- */

static const int32_t btypes[] = { DANU_TYPE_Q4_K, DANU_TYPE_Q6_K };
static const int64_t cols_set[] = { 256, 768, 2560, 6912 };

/* random weights and activations: every shape, tokens 1..20 */
START_TEST(test_x16k_random)
{
    const dn_kernels *ka = avx512();
    ck_assert_ptr_nonnull(ka);
    const int32_t bt = btypes[_i];
    x16_rng = 0x5eed0000ull + (uint64_t)bt;
    worst_fb = worst_ref = 0;
    for (int ci = 0; ci < 4; ci++) {
        x16_mat w;
        mat_make(&w, bt, ROWS, cols_set[ci], W_RANDOM);
        float *X = acts_make(NTOK, w.cols, A_RANDOM);
        char what[64];
        snprintf(what, sizeof what, "random cols %ld", (long)w.cols);
        check_case(ka, &w, X, NTOK, what);
        free(X);
        x16_mat_free(&w);
    }
    printf("  %s x16 random: worst |y - fallback| / M %.1e, (|y - reference| - E) / M %.1e (tolerance %.0e)\n",
           dn_type_get(bt)->name, worst_fb, worst_ref, EPS);
}
END_TEST

/* extreme blocks x extreme activations */
START_TEST(test_x16k_extremes)
{
    const dn_kernels *ka = avx512();
    ck_assert_ptr_nonnull(ka);
    const int32_t bt = btypes[_i];
    x16_rng = 0xe7e7e7ull + (uint64_t)bt;
    static const int64_t ecols[] = { 256, 6912 };
    for (int ci = 0; ci < 2; ci++)
        for (int wm = W_MAX; wm <= W_MIXED; wm++) {
            x16_mat w;
            mat_make(&w, bt, 32, ecols[ci], wm);
            for (int am = A_RANDOM; am <= A_ZERO; am++) {
                float *X = acts_make(5, w.cols, am);
                char what[96];
                snprintf(what, sizeof what, "weights %s, acts %s", wmode_name[wm], amode_name[am]);
                check_case(ka, &w, X, 5, what);
                free(X);
            }
            x16_mat_free(&w);
        }
}
END_TEST

/* the table routes both types to these kernels and repacks by default */
START_TEST(test_x16k_table)
{
    const dn_kernels *ka = avx512();
    ck_assert_ptr_nonnull(ka);
    ck_assert_int_eq(ka->repack[DANU_TYPE_Q4_K], DN_TYPE_Q4_K_X16);
    ck_assert_int_eq(ka->repack[DANU_TYPE_Q6_K], DN_TYPE_Q6_K_X16);
    ck_assert_int_eq(ka->act_type[DN_TYPE_Q4_K_X16], DN_TYPE_Q8_K);
    ck_assert_int_eq(ka->act_type[DN_TYPE_Q6_K_X16], DN_TYPE_Q8_K);
}
END_TEST

int main(void)
{
    if (!avx512()) {
        printf("no AVX-512 table with the q4_Kx16/q6_Kx16 gemms (CPU, or DANU_ISA below avx512): skipped\n");
        return 77;
    }
    Suite *s = suite_create("x16k_avx512");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_x16k_table);
    tcase_add_loop_test(tc, test_x16k_random, 0, 2);
    tcase_add_loop_test(tc, test_x16k_extremes, 0, 2);
    suite_add_tcase(s, tc);
    const int failed = tu_run(s);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
