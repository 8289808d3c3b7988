/* test_kernels.c - every kernel table this CPU offers (capped by DANU_ISA,
 * which dn_kernels_for_isa honours) against independent references:
 *  - matmul of every weight type vs the REFERENCE table (weights
 *    dequantized, f32 activations, double sums) and vs an exact double
 *    oracle on the activations the table actually prepared;
 *  - each SIMD table vs SCALAR on the same activation type;
 *  - activation quantizers byte-identical to scalar and to dn_quantize_row;
 *  - elementwise ops vs scalar and scalar vs double-precision formulas.
 *
 * Tolerances (per output y = sum_i w_i x_i, weights w as dequantized):
 *  - vs oracle (same prepared activations xq): the integer block dots are
 *    exact, so only float rounding remains, relative to the magnitude
 *    M = sum |w_i xq_i| (for asymmetric types the block terms d*sc*q and
 *    dmin*m may cancel: M adds 2*max|w| of the block per element).
 *    Quantized: one rounded product per block and at most n/32 rounded
 *    additions after it, so |err| <= (n/32 + 2) 2^-24 M < 5e-6 M for
 *    n <= 2560 (EPS_QUANT). Float weights: n products summed in f32 in
 *    lanes; the worst case n/4 * 2^-24 = 4e-5 never approaches for random
 *    signs (errors grow like sqrt(n)), we allow EPS_DOT = 2e-5 M. The test
 *    prints the worst ratio seen (~1e-8 quantized, ~2e-7 float).
 *  - vs reference (f32 activations): additionally the activation rounding,
 *    bounded exactly by E = sum |w_i| |x_i - xq_i| (xq dequantized from
 *    what the kernel used), plus eps on both magnitudes.
 *  - ISA vs scalar on the same activation type: both within eps of the same
 *    oracle, so |y_isa - y_scalar| <= 2 eps M.
 *  - q4_1/q5_1 use the stored s = fp16(d*sum q) of q8_1: the oracle adds
 *    the exact effect m*(s - d*sum q) of that rounding.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"
#include "kernels/kernels.h"
#include "common/bytes.h"

#define EPS_DOT 2e-5
#define EPS_QUANT 5e-6

/* ck_assert_msg records every passing check through a write to the
 * runner; inner loops check with a plain `if` and report only failures. */

static const int32_t wtypes[] = {
    DANU_TYPE_F32, DANU_TYPE_F16, DANU_TYPE_BF16, DANU_TYPE_Q8_0, DANU_TYPE_Q4_0,
    DANU_TYPE_Q4_1, DANU_TYPE_Q5_0, DANU_TYPE_Q5_1, DANU_TYPE_Q4_K, DANU_TYPE_Q5_K,
    DANU_TYPE_Q6_K,
};
#define N_WTYPES ((int)(sizeof wtypes / sizeof wtypes[0]))

/* ---------------- random data ---------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd_u32(void) { return tu_rand_u32(&rng_state); }
static float rnd_val(void) { return tu_rand_act(&rng_state); }
static void fill(float *x, int64_t n, float scale)
{
    for (int64_t i = 0; i < n; i++) x[i] = rnd_val() * scale;
}


/* ---------------- dispatch ---------------- */

START_TEST(test_kernels_dispatch)
{
    const dn_kernels *best = dn_kernels_get(DANU_ISA_AUTO);
    ck_assert_ptr_nonnull(best);
    ck_assert_int_eq(dn_kernels_get(DANU_ISA_SCALAR)->isa, getenv("DANU_ISA") &&
                     !strcmp(getenv("DANU_ISA"), "reference") ? DN_ISA_REFERENCE : DN_ISA_SCALAR);
    ck_assert_ptr_eq(dn_kernels_get(DANU_ISA_AUTO), best);   /* detection runs once */
    const dn_kernels *ref = dn_kernels_for_isa(DN_ISA_REFERENCE);
    ck_assert_ptr_nonnull(ref);
    ck_assert_int_eq(ref->isa, DN_ISA_REFERENCE);
    ck_assert_ptr_null(dn_kernels_for_isa(99));
    ck_assert_ptr_nonnull(dn_kernels_for_isa(DN_ISA_SCALAR));
    const dn_kernels *ks[8];
    int nk = dn_kernels_all(ks, 0);
    ks[nk++] = ref;
    for (int i = 0; i < nk; i++) {
        const dn_kernels *k = ks[i];
        ck_assert_ptr_nonnull(k->name);
        for (int t = 0; t < N_WTYPES; t++) {
            int32_t wt = wtypes[t], at = k->act_type[wt];
            ck_assert_msg(k->vec_dot[wt] != NULL, "%s: no vec_dot for %d", k->name, wt);
            ck_assert_msg(k->act_prepare[at] != NULL, "%s: no act for %d", k->name, at);
            ck_assert(dn_act_row_bytes(k, wt, 256) >= dn_type_row_bytes(at, 256));
            ck_assert(dn_act_row_bytes(k, wt, 256) % 64 == 0);
        }
        ck_assert(k->rmsnorm && k->silu_mul && k->add && k->softmax && k->max && k->att_scores && k->att_values);
        ck_assert(k->gemm_nr >= 1 && k->gemm_nt >= 1);
    }
    /* an explicit cap is obeyed and the answer is one of the levels below it */
    const int capped = dn_kernels_get(DANU_ISA_AVX2)->isa;
    ck_assert(capped == DN_ISA_SCALAR || capped == DN_ISA_AVX2 || capped == DN_ISA_REFERENCE);
    const char *env = getenv("DANU_ISA");
    if (env && !strcmp(env, "scalar")) ck_assert_int_eq(best->isa, DN_ISA_SCALAR);
    if (env && !strcmp(env, "avx2")) ck_assert_int_le(best->isa, DN_ISA_AVX2);
    /* avx2vnni ranks between avx2 and avx512 though its value is 5 */
    const int vnni = dn_kernels_get(DANU_ISA_AVX2VNNI)->isa;
    ck_assert(vnni == DN_ISA_SCALAR || vnni == DN_ISA_AVX2 || vnni == DN_ISA_AVX2VNNI || vnni == DN_ISA_REFERENCE);
    if (dn_kernels_for_isa(DN_ISA_AVX2VNNI)) {
        ck_assert_int_eq(vnni, DN_ISA_AVX2VNNI);
        ck_assert_int_ne(dn_kernels_get(DANU_ISA_AVX2)->isa, DN_ISA_AVX2VNNI);
        ck_assert_ptr_nonnull(dn_kernels_for_isa(DN_ISA_AVX2));
        if (!dn_kernels_for_isa(DN_ISA_AVX512)) ck_assert_int_eq(best->isa, DN_ISA_AVX2VNNI);
    }
    if (dn_kernels_for_isa(DN_ISA_AVX512)) {
        ck_assert_int_eq(dn_kernels_get(DANU_ISA_AVX512)->isa, DN_ISA_AVX512);
        ck_assert_int_eq(best->isa, DN_ISA_AVX512);
    }
    if (env && !strcmp(env, "avx2vnni"))
        ck_assert(best->isa == DN_ISA_AVX2VNNI || best->isa == DN_ISA_AVX2 || best->isa == DN_ISA_SCALAR);
    /* the one-token fetch: DANU_FETCH obeyed on every x86 SIMD level, each
     * of which has both variants; scalar and NEON have none */
    const char *fetch = getenv("DANU_FETCH");
    for (int i = 0; i < nk; i++) {
        dn_kernels o;
        const int simd_x86 = ks[i]->isa == DN_ISA_AVX2 || ks[i]->isa == DN_ISA_AVX2VNNI || ks[i]->isa == DN_ISA_AVX512;
        ck_assert_int_eq(dn_kernels_with_fetch(ks[i], DN_FETCH_LINES, &o), simd_x86);
        if (!simd_x86) { ck_assert_int_eq(ks[i]->fetch, DN_FETCH_PAGE); continue; }
        ck_assert_int_eq(o.fetch, DN_FETCH_LINES);
        ck_assert(o.gemm[DN_TYPE_Q4_0_X16] && o.gemm[DN_TYPE_Q4_0_X16] != dn_kernels_for_isa(DN_ISA_SCALAR)->gemm[DN_TYPE_Q4_0_X16]);
        if (fetch && !strcmp(fetch, "page")) ck_assert_int_eq(ks[i]->fetch, DN_FETCH_PAGE);
        if (fetch && !strcmp(fetch, "lines")) ck_assert_int_eq(ks[i]->fetch, DN_FETCH_LINES);
        /* the table is its own fetch's: laying that fetch again changes nothing */
        ck_assert(dn_kernels_with_fetch(ks[i], ks[i]->fetch, &o) && o.fetch == ks[i]->fetch &&
                  !memcmp(o.gemm, ks[i]->gemm, sizeof o.gemm));
    }
    /* Arm: neon < neon_dot < neon_i8mm, all answering to the public neon */
    const dn_kernels *neon = dn_kernels_for_isa(DN_ISA_NEON), *dot = dn_kernels_for_isa(DN_ISA_NEON_DOT);
    const dn_kernels *mm = dn_kernels_for_isa(DN_ISA_NEON_I8MM);
    if (mm) ck_assert_ptr_nonnull(dot);
    if (dot) ck_assert_ptr_nonnull(neon);
    if (neon) {
        const dn_kernels *top = mm ? mm : dot ? dot : neon;
        ck_assert_ptr_eq(best, top);
        ck_assert_ptr_eq(dn_kernels_get(DANU_ISA_NEON), top);
        ck_assert_int_eq(dn_kernels_public_isa(top), DANU_ISA_NEON);
    } else {
        ck_assert(best->isa != DN_ISA_NEON && best->isa != DN_ISA_NEON_DOT && best->isa != DN_ISA_NEON_I8MM);
    }
}
END_TEST

/* ---------------- matmul ---------------- */

typedef struct {
    int32_t wt;
    int64_t rows, cols;
    float *w;        /* rows x cols f32 source */
    uint8_t *wq;     /* quantized rows */
    float *wd;       /* dequantized rows */
    float *gmax;     /* rows x cols: max |wd| of the 32-group, 0 for float types */
    uint64_t wrb;
} wset;

static void wset_make(wset *s, int32_t wt, int64_t rows, int64_t cols)
{
    s->wt = wt; s->rows = rows; s->cols = cols;
    s->wrb = dn_type_row_bytes(wt, (uint64_t)cols);
    ck_assert(s->wrb > 0);
    s->w = malloc(sizeof(float) * rows * cols);
    s->wd = malloc(sizeof(float) * rows * cols);
    s->gmax = calloc((size_t)(rows * cols), sizeof(float));
    s->wq = malloc(s->wrb * rows);
    for (int64_t r = 0; r < rows; r++) {
        fill(s->w + r * cols, cols, 0.05f * (1 + (r % 5)));
        ck_assert_int_eq(dn_quantize_row(wt, s->w + r * cols, s->wq + r * s->wrb, cols), 0);
        ck_assert_int_eq(dn_dequantize_row(wt, s->wq + r * s->wrb, s->wd + r * cols, cols), 0);
    }
    if (dn_type_get(wt)->is_quantized)
        for (int64_t i = 0; i < rows * cols; i += 32) {
            float m = 0;
            for (int j = 0; j < 32; j++) m = fmaxf(m, fabsf(s->wd[i + j]));
            for (int j = 0; j < 32; j++) s->gmax[i + j] = m;
        }
}

static void wset_free(wset *s)
{
    free(s->w); free(s->wq); free(s->wd); free(s->gmax);
}

/* Y (n_tok x rows, ldy = rows + 2, two padding columns checked untouched)
 * from table k, computed as two row ranges. */
static float *run_matmul(const dn_kernels *k, const wset *s, const float *X, int64_t n_tok,
                         uint8_t **xq_out)
{
    const int64_t ldy = s->rows + 2;
    const size_t xrb = dn_act_row_bytes(k, s->wt, s->cols);
    uint8_t *xq = malloc(xrb * n_tok);
    dn_prepare_acts(k, s->wt, X, n_tok, s->cols, xq);
    float *Y = malloc(sizeof(float) * ldy * n_tok);
    for (int64_t i = 0; i < ldy * n_tok; i++) Y[i] = 1234.5f;
    dn_matrix W = { .data = s->wq, .type = s->wt, .rows = s->rows, .cols = s->cols, .row_bytes = s->wrb };
    const int64_t split = s->rows / 3;
    dn_matmul_rows(k, &W, xq, n_tok, Y, ldy, 0, split);
    dn_matmul_rows(k, &W, xq, n_tok, Y, ldy, split, s->rows);
    for (int64_t t = 0; t < n_tok; t++)
        CHECK(Y[t * ldy + s->rows] == 1234.5f && Y[t * ldy + s->rows + 1] == 1234.5f,
                      "%s wrote outside its rows", k->name);
    *xq_out = xq;
    return Y;
}

/* q8_1's stored s differs from d*sum(q) by fp16 rounding; the kernel uses s. */
static double q8_1_s_effect(const wset *s, int64_t r, const uint8_t *xq)
{
    if (s->wt != DANU_TYPE_Q4_1 && s->wt != DANU_TYPE_Q5_1) return 0.0;
    double e = 0.0;
    const dn_block_q8_1 *xb = (const dn_block_q8_1 *)xq;
    for (int64_t b = 0; b < s->cols / 32; b++) {
        uint16_t mh;
        if (s->wt == DANU_TYPE_Q4_1) mh = ((const dn_block_q4_1 *)(s->wq + r * s->wrb))[b].m;
        else mh = ((const dn_block_q5_1 *)(s->wq + r * s->wrb))[b].m;
        int sum = 0;
        for (int j = 0; j < 32; j++) sum += xb[b].qs[j];
        double exact_s = (double)dn_fp16_to_f32(xb[b].d) * sum;
        e += (double)dn_fp16_to_f32(mh) * ((double)dn_fp16_to_f32(xb[b].s) - exact_s);
    }
    return e;
}

/* largest |y - oracle| / magnitude seen per table (reported, for the tolerance) */
static double worst[8];

static void check_matmul(const wset *s, int64_t n_tok, const dn_kernels *const *ks, int nk)
{
    const dn_kernels *ref = dn_kernels_for_isa(DN_ISA_REFERENCE);
    const int64_t rows = s->rows, cols = s->cols, ldy = rows + 2;
    const double eps = dn_type_get(s->wt)->is_quantized ? EPS_QUANT : EPS_DOT;
    float *X = malloc(sizeof(float) * n_tok * cols);
    fill(X, n_tok * cols, 1.0f);
    uint8_t *xr;
    float *Yref = run_matmul(ref, s, X, n_tok, &xr);
    float *xd = malloc(sizeof(float) * n_tok * cols);
    float *Ysc = NULL;
    int32_t sc_at = -1;
    for (int i = 0; i < nk; i++) {
        const dn_kernels *k = ks[i];
        const int32_t at = k->act_type[s->wt];
        const size_t xrb = dn_act_row_bytes(k, s->wt, cols);
        uint8_t *xq;
        float *Y = run_matmul(k, s, X, n_tok, &xq);
        for (int64_t t = 0; t < n_tok; t++) {
            CHECK(dn_dequantize_row(at, xq + t * xrb, xd + t * cols, cols) == 0, "dequantize");
            /* bf16 activations with extras carry x - hi as a second bf16 row */
            if (at == DANU_TYPE_BF16 && k->act_extra[at]) {
                const uint16_t *lo = (const uint16_t *)(xq + t * xrb + ((2 * cols + 63) & ~63));
                for (int64_t c = 0; c < cols; c++) xd[t * cols + c] += dn_bf16_to_f32(lo[c]);
            }
        }
        for (int64_t t = 0; t < n_tok; t++)
            for (int64_t r = 0; r < rows; r++) {
                const float *wd = s->wd + r * cols, *gm = s->gmax + r * cols;
                const float *xt = xd + t * cols, *x0 = X + t * cols;
                double exact = 0, mag = 0, mag0 = 0, eact = 0, ref = 0;
                for (int64_t c = 0; c < cols; c++) {
                    exact += (double)wd[c] * xt[c];
                    ref += (double)wd[c] * x0[c];
                    mag += (fabs(wd[c]) + 2.0 * gm[c]) * fabs(xt[c]);
                    mag0 += (fabs(wd[c]) + 2.0 * gm[c]) * fabs(x0[c]);
                    eact += fabs(wd[c]) * fabs((double)xt[c] - x0[c]);
                }
                const double adj = q8_1_s_effect(s, r, xq + t * xrb);
                exact += adj;
                const double y = Y[t * ldy + r];
                if (mag > 0 && fabs(y - exact) / mag > worst[i]) worst[i] = fabs(y - exact) / mag;
                CHECK(fabs(y - exact) <= eps * mag + 1e-30,
                    "%s %s cols=%ld rows=%ld tok=%ld [%ld,%ld]: %.9g vs oracle %.9g (tol %.3g)",
                    k->name, dn_type_get(s->wt)->name, (long)cols, (long)rows, (long)n_tok,
                    (long)t, (long)r, y, exact, eps * mag);
                /* the reference table itself must match the double oracle */
                CHECK(fabs(Yref[t * ldy + r] - ref) <= 1e-6 * mag0 + 1e-30,
                    "reference %.9g vs %.9g", Yref[t * ldy + r], ref);
                const double tol = eact + fabs(adj) + eps * (mag + mag0) + 1e-30;
                CHECK(fabs(y - Yref[t * ldy + r]) <= tol,
                    "%s %s cols=%ld rows=%ld tok=%ld [%ld,%ld]: %.9g vs reference %.9g (tol %.3g)",
                    k->name, dn_type_get(s->wt)->name, (long)cols, (long)rows, (long)n_tok,
                    (long)t, (long)r, y, Yref[t * ldy + r], tol);
                if (Ysc && at == sc_at)
                    CHECK(fabs(y - Ysc[t * ldy + r]) <= 2 * eps * mag + 1e-30,
                        "%s %s vs scalar: %.9g vs %.9g", k->name, dn_type_get(s->wt)->name,
                        y, Ysc[t * ldy + r]);
            }
        free(xq);
        if (k->isa == DN_ISA_SCALAR) { Ysc = Y; sc_at = at; }
        else free(Y);
    }
    free(Ysc); free(Yref); free(xr); free(xd); free(X);
}

static const int64_t cols_q[] = { 32, 256, 768, 2560 };
static const int64_t cols_f[] = { 7, 32, 80, 81, 256, 768, 2560 };
static const int64_t rows_set[] = { 1, 3, 17, 67 };
static const int64_t tok_set[] = { 1, 2, 5, 16, 33 };
/* DN_TEST_LIGHT=1 (emulators: qemu runs the double-precision oracle some
 * hundred times slower) keeps every code path but smaller shapes. */
static const int64_t cols_q_light[] = { 32, 256, 512 };
static const int64_t cols_f_light[] = { 7, 80, 81, 256 };
static const int64_t rows_light[] = { 1, 3, 9 };
static const int64_t tok_light[] = { 1, 2, 5, 9 };

START_TEST(test_kernels_matmul)
{
    const int32_t wt = wtypes[_i];
    const dn_kernels *ks[8];
    const int nk = dn_kernels_all(ks, 0);   /* scalar first */
    const int bs = (int)dn_type_block_size(wt);
    const int is_float = !dn_type_get(wt)->is_quantized;
    memset(worst, 0, sizeof worst);   /* per type, also without fork */
    const int light = getenv("DN_TEST_LIGHT") && atoi(getenv("DN_TEST_LIGHT"));
    const int64_t *cs = light ? (is_float ? cols_f_light : cols_q_light) : (is_float ? cols_f : cols_q);
    const int ncs = light ? (is_float ? 4 : 3) : (is_float ? 7 : 4);
    const int64_t *rs = light ? rows_light : rows_set, *ts = light ? tok_light : tok_set;
    const int nrs = light ? 3 : 4, nts = light ? 4 : 5;
    rng_state = 0x1234567ull + (uint64_t)wt * 7919;
    for (int ci = 0; ci < ncs; ci++) {
        if (cs[ci] % bs) continue;
        for (int ri = 0; ri < nrs; ri++) {
            wset s;
            wset_make(&s, wt, rs[ri], cs[ci]);
            for (int ti = 0; ti < nts; ti++) {
                /* keep the largest shapes to a few token counts (time) */
                if (cs[ci] == 2560 && rs[ri] == 67 && ts[ti] == 16) continue;
                check_matmul(&s, ts[ti], ks, nk);
            }
            wset_free(&s);
        }
    }
    printf("  %-5s worst |y - oracle| / sum|w x|:", dn_type_get(wt)->name);
    for (int i = 0; i < nk; i++) printf(" %s %.1e", ks[i]->name, worst[i]);
    printf("  (tolerance %.0e)\n", dn_type_get(wt)->is_quantized ? EPS_QUANT : EPS_DOT);
}
END_TEST

/* A token evaluated alone (matvec tiles) gets the same bits as in a batch
 * (gemm tiles): KV-cache shifts and prompt/decode splits rely on it. */
START_TEST(test_kernels_batch_equals_single)
{
    const dn_kernels *ks[8];
    const int nk = dn_kernels_all(ks, 0);
    rng_state = 99;
    for (int ti = 0; ti < N_WTYPES; ti++) {
        const int32_t wt = wtypes[ti];
        static const int64_t cols_set[] = { 81, 256, 2560 };
        for (int ci = 0; ci < 3; ci++) {
            const int64_t cols = cols_set[ci], rows = 19, n_tok = 11;
            if (cols % dn_type_block_size(wt)) continue;
            wset s;
            wset_make(&s, wt, rows, cols);
            float *X = malloc(sizeof(float) * n_tok * cols);
            fill(X, n_tok * cols, 1.0f);
            for (int i = 0; i < nk; i++) {
                const size_t xrb = dn_act_row_bytes(ks[i], wt, cols);
                uint8_t *xq = malloc(xrb * n_tok);
                dn_prepare_acts(ks[i], wt, X, n_tok, cols, xq);
                float Y[19 * 11], y1[19];
                dn_matrix W = { .data = s.wq, .type = wt, .rows = rows, .cols = cols, .row_bytes = s.wrb };
                dn_matmul_rows(ks[i], &W, xq, n_tok, Y, rows, 0, rows);
                for (int64_t t = 0; t < n_tok; t++) {
                    dn_matmul_rows(ks[i], &W, xq + t * xrb, 1, y1, rows, 0, rows);
                    ck_assert_msg(!memcmp(y1, Y + t * rows, sizeof y1), "%s %s cols=%ld token %ld",
                                  ks[i]->name, dn_type_get(wt)->name, (long)cols, (long)t);
                    for (int64_t r = 0; r < rows; r++)
                        CHECK(ks[i]->vec_dot[wt](cols, s.wq + r * s.wrb, xq + t * xrb) == y1[r],
                              "%s %s vec_dot != matvec", ks[i]->name, dn_type_get(wt)->name);
                }
                free(xq);
            }
            free(X);
            wset_free(&s);
        }
    }
}
END_TEST

/* Degenerate data: zero rows and activations give exactly zero. */
START_TEST(test_kernels_matmul_zero)
{
    const dn_kernels *ks[8];
    const int nk = dn_kernels_all(ks, 0);
    for (int t = 0; t < N_WTYPES; t++) {
        const int32_t wt = wtypes[t];
        const int64_t cols = 256, rows = 5, n_tok = 4;
        float *w = calloc(rows * cols, sizeof(float)), *x = calloc(n_tok * cols, sizeof(float));
        for (int64_t i = 0; i < cols; i++) x[cols + i] = rnd_val();   /* token 1 nonzero */
        const uint64_t wrb = dn_type_row_bytes(wt, cols);
        uint8_t *wq = malloc(wrb * rows);
        for (int64_t r = 0; r < rows; r++) dn_quantize_row(wt, w + r * cols, wq + r * wrb, cols);
        dn_matrix W = { .data = wq, .type = wt, .rows = rows, .cols = cols, .row_bytes = wrb };
        for (int i = 0; i < nk; i++) {
            uint8_t *xq = malloc(dn_act_row_bytes(ks[i], wt, cols) * n_tok);
            dn_prepare_acts(ks[i], wt, x, n_tok, cols, xq);
            float y[5 * 4];
            dn_matmul_rows(ks[i], &W, xq, n_tok, y, rows, 0, rows);
            for (int j = 0; j < rows * n_tok; j++)
                ck_assert_msg(y[j] == 0.0f, "%s %s: %g", ks[i]->name, dn_type_get(wt)->name, y[j]);
            free(xq);
        }
        free(w); free(x); free(wq);
    }
}
END_TEST

/* ---------------- activation quantizers ---------------- */

START_TEST(test_kernels_act_quantizers)
{
    static const int32_t ats[] = { DANU_TYPE_F32, DANU_TYPE_BF16, DANU_TYPE_Q8_0, DN_TYPE_Q8_1, DN_TYPE_Q8_K };
    const dn_kernels *ks[8];
    const int nk = dn_kernels_all(ks, 0);
    const int64_t n = 2560;
    float *x = malloc(sizeof(float) * n);
    /* room for the largest prepared row of any table (ISA extras included) */
    size_t room = (size_t)n * 4;
    for (int i = 0; i < nk; i++)
        for (int ai = 0; ai < 5; ai++)
            if (dn_act_bytes(ks[i], ats[ai], n) > room) room = dn_act_bytes(ks[i], ats[ai], n);
    uint8_t *a = malloc(room), *b = malloc(room), *c = malloc(room);
    rng_state = 42;
    for (int round = 0; round < 6; round++) {
        fill(x, n, round == 0 ? 1e-3f : 3.0f);
        if (round >= 2) {
            /* half-integers on a grid where d = 1 exactly: rounding ties */
            for (int64_t i = 0; i < n; i++) x[i] = (float)((int)(rnd_u32() % 253) - 126) + 0.5f;
            for (int64_t i = 0; i < n; i += 32) x[i] = round == 3 ? -127.0f : 127.0f;
        }
        if (round == 4) for (int64_t i = 0; i < 64; i++) x[i] = 0.0f;          /* zero blocks */
        if (round == 5) for (int64_t i = 0; i < 256; i++) x[i] = -0.0f;
        for (int ai = 0; ai < 5; ai++) {
            const int32_t at = ats[ai];
            const size_t bytes = dn_type_row_bytes(at, n);
            /* scalar = quant.c's reference quantizer, byte for byte */
            ks[0]->act_prepare[at](x, a, n);
            ck_assert_int_eq(dn_quantize_row(at, x, c, n), 0);
            ck_assert_msg(!memcmp(a, c, bytes), "scalar %s != dn_quantize_row (round %d)",
                          dn_type_get(at)->name, round);
            for (int i = 1; i < nk; i++) {
                memset(b, 0xa5, room);
                ks[i]->act_prepare[at](x, b, n);
                ck_assert_msg(!memcmp(a, b, bytes), "%s %s != scalar (round %d)",
                              ks[i]->name, dn_type_get(at)->name, round);
                /* odd lengths of whole blocks too */
                const int64_t m = at == DN_TYPE_Q8_K ? 256 : (at == DANU_TYPE_F32 || at == DANU_TYPE_BF16 ? 37 : 96);
                ks[i]->act_prepare[at](x, b, m);
                ks[0]->act_prepare[at](x, a, m);
                ck_assert(!memcmp(a, b, dn_type_row_bytes(at, m)));
                ks[0]->act_prepare[at](x, a, n);
            }
        }
    }
    free(x); free(a); free(b); free(c);
}
END_TEST

/* ---------------- elementwise ---------------- */

static void rel_check(const char *what, const char *isa, int64_t n, const float *got,
                      const float *want, const double *scale, double rel)
{
    for (int64_t i = 0; i < n; i++)
        CHECK(fabs((double)got[i] - want[i]) <= rel * scale[i] + 1e-37,
                      "%s %s n=%ld [%ld]: %.9g vs %.9g", isa, what, (long)n, (long)i,
                      got[i], want[i]);
}

START_TEST(test_kernels_elementwise)
{
    const dn_kernels *ks[8];
    const int nk = dn_kernels_all(ks, 0);
    const dn_kernels *sc = ks[0];
    enum { MAXN = 300 };
    float x[MAXN], w[MAXN], u[MAXN], o1[MAXN], o2[MAXN], y1[MAXN], y2[MAXN];
    double scale[MAXN];
    rng_state = 777;
    const int light = getenv("DN_TEST_LIGHT") && atoi(getenv("DN_TEST_LIGHT"));
    for (int64_t n = 1; n <= MAXN + 1; n += light && n > 40 ? 37 : 1) {
        const int64_t len = n == MAXN + 1 ? 80 : n;
        for (int64_t i = 0; i < len; i++) {
            x[i] = rnd_val() * 4; w[i] = rnd_val(); u[i] = rnd_val() * 30;
        }
        /* scalar vs double-precision formulas */
        double ss = 0;
        for (int64_t i = 0; i < len; i++) ss += (double)x[i] * x[i];
        const double inv = 1.0 / sqrt(ss / len + 1e-5);
        sc->rmsnorm(o1, x, w, len, 1e-5f);
        for (int64_t i = 0; i < len; i++) {
            double want = x[i] * inv * w[i];
            CHECK(fabs(o1[i] - want) <= 4e-7 * fabs(want) + 1e-37, "rmsnorm %ld", (long)i);
        }
        memcpy(o1, u, sizeof(float) * len);
        sc->silu_mul(o1, x, len);
        for (int64_t i = 0; i < len; i++) {
            double g = u[i], want = g / (1.0 + exp(-g)) * x[i];
            /* absolute 1e-30: below g ~ -88, expf(-g) overflows and the float result is 0 */
            CHECK(fabs(o1[i] - want) <= 1e-6 * fabs(want) + 1e-30,
                  "silu %g: %.9g vs %.9g", g, o1[i], want);
        }
        memcpy(o1, u, sizeof(float) * len);
        sc->softmax(o1, len);
        {
            double m = u[0], s = 0;
            for (int64_t i = 1; i < len; i++) if (u[i] > m) m = u[i];   /* (fmax here trips a GCC 12 aarch64 vectorizer ICE) */
            for (int64_t i = 0; i < len; i++) s += exp(u[i] - m);
            for (int64_t i = 0; i < len; i++) {
                /* the f32 subtraction u - max alone is off by up to
                 * |u - max| * 2^-24, which exp turns into a relative error */
                double want = exp(u[i] - m) / s;
                CHECK(fabs(o1[i] - want) <= (1e-6 + fabs(u[i] - m) * 6e-8) * want + 1e-37, "softmax %ld", (long)i);
            }
        }

        for (int i = 1; i < nk; i++) {
            const dn_kernels *k = ks[i];
            /* rmsnorm: sum of squares in another order: a few ulp */
            sc->rmsnorm(o1, x, w, len, 1e-5f);
            k->rmsnorm(o2, x, w, len, 1e-5f);
            /* sum of squares in another order (n ulp), then 1/sqrt */
            for (int64_t j = 0; j < len; j++) scale[j] = fabs(o1[j]);
            rel_check("rmsnorm", k->name, len, o2, o1, scale, 1e-6 + len * 6e-8);
            /* in place too (out == x) */
            memcpy(y1, x, sizeof(float) * len);
            k->rmsnorm(y1, y1, w, len, 1e-5f);
            rel_check("rmsnorm in place", k->name, len, y1, o2, scale, 0);
            /* silu_mul: vector exp within a few ulp of expf */
            memcpy(o1, u, sizeof(float) * len); memcpy(o2, u, sizeof(float) * len);
            sc->silu_mul(o1, x, len); k->silu_mul(o2, x, len);
            for (int64_t j = 0; j < len; j++) scale[j] = fabs(o1[j]);
            rel_check("silu_mul", k->name, len, o2, o1, scale, 1e-6);
            /* softmax */
            memcpy(o1, u, sizeof(float) * len); memcpy(o2, u, sizeof(float) * len);
            sc->softmax(o1, len); k->softmax(o2, len);
            /* both sum len positive terms in f32/f64 in different orders */
            for (int64_t j = 0; j < len; j++) scale[j] = fabs(o1[j]);
            rel_check("softmax", k->name, len, o2, o1, scale, 1e-6 + len * 1.2e-8);
            /* add: exact */
            memcpy(y1, u, sizeof(float) * len); memcpy(y2, u, sizeof(float) * len);
            sc->add(y1, x, len); k->add(y2, x, len);
            CHECK(!memcmp(y1, y2, sizeof(float) * len), "%s add", k->name);
        }
    }
}
END_TEST

/* Extreme inputs for the vector exp: large |x| must saturate like expf. */
START_TEST(test_kernels_exp_range)
{
    const dn_kernels *ks[8];
    const int nk = dn_kernels_all(ks, 0);
    enum { N = 64 };
    float u[N], one[N], a[N], b[N];
    for (int i = 0; i < N; i++) { u[i] = -120.0f + 240.0f * i / (N - 1); one[i] = 1.0f; }
    u[0] = -1e30f; u[1] = 1e30f; u[2] = -88.7f; u[3] = 88.7f; u[4] = 0.0f; u[5] = -103.9f;
    for (int i = 1; i < nk; i++) {
        memcpy(a, u, sizeof a); memcpy(b, u, sizeof b);
        ks[0]->silu_mul(a, one, N); ks[i]->silu_mul(b, one, N);
        for (int j = 0; j < N; j++)
            ck_assert_msg(fabs(a[j] - b[j]) <= 1e-6 * fabs(a[j]) + 1e-37,
                          "%s silu(%g) %.9g vs %.9g", ks[i]->name, u[j], b[j], a[j]);
        memcpy(a, u, sizeof a); memcpy(b, u, sizeof b);
        ks[0]->softmax(a, N); ks[i]->softmax(b, N);
        for (int j = 0; j < N; j++)
            ck_assert_msg(fabs(a[j] - b[j]) <= 1e-6 * fabs(a[j]) + 1e-37,
                          "%s softmax [%d] %.9g vs %.9g", ks[i]->name, j, b[j], a[j]);
    }
}
END_TEST

/* ---------------- attention slots ---------------- */

/* att_scores / att_values of every table vs double oracles, over the
 * cache layout (K in tiles of 16 keys, the run starting at any lane; V
 * rows) for f16, f32 and (scores) q8 (int8 with a scale per row; Q8
 * values: test_kernels_attention_q8), head sizes off
 * the vector width: |err| <= 1e-5 of sum |terms| (a sequential f32 fma
 * chain of <= 200 terms errs < 200 * 2^-24 ~ 1.2e-5 in the worst case,
 * ~1e-7 typically). Q8 scores (kernels.h): the query quantized to int8
 * codes with one scale per row, written out here from the definition; the
 * integer dot product is exact, so the score must equal (I * ksc) * qsc
 * to the last bit, and be within the quantization bound (half a query
 * step times sum |k|) of the float query's product. Padding around the
 * outputs untouched; a row computed alone or with others, and keys split
 * over two calls, give identical bits (the slots' contract). */
START_TEST(test_kernels_attention)
{
    const dn_kernels *ks[8];
    const int nk_tab = dn_kernels_all(ks, 0);
    static const int hds[] = { 80, 64, 48, 128, 16, 2, 200, 96 };
    static const int nqs[] = { 1, 3, 4, 5, 7, 16 };
    static const int nks[] = { 1, 15, 16, 17, 40 };
    static const int lanes[] = { 0, 1, 7, 15 };
    enum { MAXHD = 200, MAXQ = 16, MAXK = 40, TILES = (15 + MAXK + 15) / 16, PADQ = 5, PADS = 7, PADO = 3 };
    static float q[MAXQ * (MAXHD + PADQ)], s1[MAXQ * (MAXK + PADS)], s2[MAXQ * (MAXK + PADS)];
    static float p[MAXQ * (MAXK + PADS)], o0[MAXQ * (MAXHD + PADO)], o1[MAXQ * (MAXHD + PADO)], o2[MAXQ * (MAXHD + PADO)];
    static float kf[MAXK * MAXHD], vf[MAXK * MAXHD];            /* the values as floats, key-major */
    static float ksc[TILES * 16];
    static _Alignas(64) uint8_t K[TILES * 16 * MAXHD * 4], V[MAXK * MAXHD * 4];
    const float SENT = -12345.0f;
    int tested = 0;
    rng_state = 4242;
    for (int ti = 0; ti < nk_tab; ti++) {
        const dn_kernels *k = ks[ti];
        ck_assert_msg(k->att_scores && k->att_values, "%s has no attention slots", k->name);
        tested++;
        for (size_t hi = 0; hi < sizeof hds / sizeof hds[0]; hi++)
        for (int type = 0; type < 3; type++)
        for (size_t qi = 0; qi < sizeof nqs / sizeof nqs[0]; qi++)
        for (size_t ki = 0; ki < sizeof nks / sizeof nks[0]; ki++)
        for (size_t li = 0; li < sizeof lanes / sizeof lanes[0]; li++) {
            const int hd = hds[hi], nq = nqs[qi], nk = nks[ki], lane = lanes[li];
            const size_t qs = hd + PADQ, ss = nk + PADS, os = hd + PADO, eb = type == DN_KV_F32 ? 4 : type == DN_KV_F16 ? 2 : 1;
            const int hd4 = (hd + 3) / 4 * 4;
            const size_t tb = type == DN_KV_Q8 ? (size_t)hd4 * 16 : (size_t)hd * 16 * eb;
            for (size_t i = 0; i < (size_t)nq * qs; i++) q[i] = rnd_val();
            memset(K, 0xA5, sizeof K);   /* lanes outside the run hold junk */
            for (int j = 0; j < nk; j++) {
                const int l = lane + j;
                ksc[l] = type == DN_KV_Q8 ? 0.01f + fabsf(rnd_val()) / 64 : 0.0f;
                for (int d = 0; d < hd; d++) {
                    /* f16/f32: dimension-major; q8: [d / 4][16 lanes][d % 4], code + 128 */
                    uint8_t *kx = K + (size_t)(l / 16) * tb +
                                  (type == DN_KV_Q8 ? (size_t)(d / 4) * 64 + (size_t)(l % 16) * 4 + (size_t)(d % 4)
                                                    : ((size_t)d * 16 + (size_t)(l % 16)) * eb);
                    uint8_t *vx = V + ((size_t)j * hd + d) * eb;
                    for (int w = 0; w < 2; w++) {
                        uint8_t *x = w ? vx : kx;
                        float *f = w ? &vf[j * hd + d] : &kf[j * hd + d];
                        if (type == DN_KV_F32) { *f = rnd_val(); memcpy(x, f, 4); }
                        else if (type == DN_KV_F16) { uint16_t h = dn_f32_to_fp16(rnd_val()); memcpy(x, &h, 2); *f = dn_fp16_to_f32(h); }
                        else { int8_t c = (int8_t)((int)(rnd_u32() % 255) - 127); *x = (uint8_t)(w ? c : c + 128); *f = c; }
                    }
                }
            }
            for (size_t i = 0; i < sizeof s1 / sizeof s1[0]; i++) s1[i] = s2[i] = SENT;
            k->att_scores(hd, nq, q, qs, K, lane, nk, type, ksc, s1, ss);
            for (int i = 0; i < nq; i++) {
                /* the query row's codes, by the definition: scale max|q| / 127, code round(q * 127 / max|q|) */
                float amax = 0;
                for (int d = 0; d < hd; d++) if (fabsf(q[i * qs + d]) > amax) amax = fabsf(q[i * qs + d]);
                const float qscale = amax / 127.0f;
                int qc[MAXHD];
                for (int d = 0; d < hd; d++) qc[d] = (int)lround(q[i * qs + d] * (127.0f / amax));
                for (int j = 0; j < nk; j++) {
                    double e = 0, m = 0;
                    for (int d = 0; d < hd; d++) { double t = (double)q[i * qs + d] * kf[j * hd + d]; e += t; m += fabs(t); }
                    if (type == DN_KV_Q8) {
                        int dot = 0, ksum = 0;   /* |dot| <= 127 * 127 * 200 */
                        for (int d = 0; d < hd; d++) {
                            const int c = (int)kf[j * hd + d];
                            dot += qc[d] * c;
                            ksum += c < 0 ? -c : c;
                        }
                        const float exact = ((float)dot * ksc[lane + j]) * qscale;
                        CHECK(s1[i * ss + j] == exact, "%s att_scores q8 hd %d nq %d nk %d lane %d [%d][%d]: %.9g vs %.9g",
                              k->name, hd, nq, nk, lane, i, j, s1[i * ss + j], exact);
                        e *= ksc[lane + j];
                        m = 0.5 * qscale * ksum * ksc[lane + j] * (1 + 1e-5) + 1e-6 * fabs(e);   /* half a step per code */
                        CHECK(fabs(s1[i * ss + j] - e) <= m, "%s att_scores q8 hd %d: %.9g vs float query %.9g (bound %.3g)",
                              k->name, hd, s1[i * ss + j], e, m);
                        continue;
                    }
                    CHECK(fabs(s1[i * ss + j] - e) <= 1e-5 * m + 1e-30, "%s att_scores hd %d type %d nq %d nk %d lane %d [%d][%d]: %.9g vs %.9g",
                          k->name, hd, type, nq, nk, lane, i, j, s1[i * ss + j], e);
                }
                for (size_t j = nk; j < ss; j++) CHECK(s1[i * ss + j] == SENT, "%s att_scores wrote past nk", k->name);
            }
            for (size_t i = (size_t)nq * ss; i < sizeof s1 / sizeof s1[0]; i++) CHECK(s1[i] == SENT, "%s att_scores wrote past nq", k->name);
            /* each row alone; keys split at a in two calls (the second run starts mid-tile) */
            const int a = nk / 3, la = lane + a;
            for (int i = 0; i < nq; i++) {
                k->att_scores(hd, 1, q + i * qs, qs, K, lane, a, type, ksc, s2 + i * ss, ss);
                k->att_scores(hd, 1, q + i * qs, qs, K + (size_t)(la / 16) * tb, la % 16, nk - a, type, ksc + la / 16 * 16,
                              s2 + i * ss + a, ss);
            }
            CHECK(!memcmp(s1, s2, sizeof(float) * nq * ss), "%s att_scores: alone/split bits differ (hd %d type %d nq %d nk %d lane %d)",
                  k->name, hd, type, nq, nk, lane);
            if (type == DN_KV_Q8) continue;   /* Q8 values: test_kernels_attention_q8 */

            for (int i = 0; i < nq; i++) for (size_t j = 0; j < ss; j++) p[i * ss + j] = j % 5 == 3 ? 0.0f : fabsf(rnd_val());
            for (size_t i = 0; i < (size_t)nq * os; i++) o0[i] = i % os >= (size_t)hd ? SENT : rnd_val();
            memcpy(o1, o0, sizeof(float) * nq * os);
            memcpy(o2, o0, sizeof(float) * nq * os);
            k->att_values(hd, nq, p, ss, V, nk, type, o1, os);
            for (int i = 0; i < nq; i++) {
                for (int d = 0; d < hd; d++) {
                    double e = o0[i * os + d], m = fabs(e);
                    for (int j = 0; j < nk; j++) {
                        double t = (double)p[i * ss + j] * vf[j * hd + d];
                        e += t; m += fabs(t);
                    }
                    CHECK(fabs(o1[i * os + d] - e) <= 1e-5 * m + 1e-30, "%s att_values hd %d type %d nq %d nk %d [%d][%d]: %.9g vs %.9g",
                          k->name, hd, type, nq, nk, i, d, o1[i * os + d], e);
                }
                for (size_t d = hd; d < os; d++) CHECK(o1[i * os + d] == SENT, "%s att_values wrote past hd", k->name);
                k->att_values(hd, 1, p + i * ss, ss, V, a, type, o2 + i * os, os);
                k->att_values(hd, 1, p + i * ss + a, ss, V + (size_t)a * hd * eb, nk - a, type, o2 + i * os, os);
            }
            CHECK(!memcmp(o1, o2, sizeof(float) * nq * os), "%s att_values: alone/split bits differ (hd %d type %d nq %d nk %d)",
                  k->name, hd, type, nq, nk);
        }
    }
    printf("attention slots tested on %d table(s)\n", tested);
}
END_TEST

/* f16/f32 att_values over runs longer than the kernels' key chunks (avx2: 128
 * keys, with the next chunk fetched ahead): every table against the double
 * oracle (a sequential f32 fma chain of nk terms errs < nk * 2^-24 of the
 * sum of |terms| in the worst case: 531 terms, bound 3.2e-5), and a row
 * alone with the keys split in two calls at a point off the chunks gives
 * the same bits as the rows together. */
START_TEST(test_kernels_attention_values_long)
{
    const dn_kernels *ks[8];
    const int nk_tab = dn_kernels_all(ks, 0);
    enum { NK = 531, MAXHD = 80, NQ = 5, PS = NK + 3, OS = MAXHD + 2 };
    static const int hds[] = { 80, 18 };
    static float p[NQ * PS], vf[NK * MAXHD], o0[NQ * OS], o1[NQ * OS], o2[NQ * OS];
    static _Alignas(64) uint8_t V[NK * MAXHD * 4];
    rng_state = 977;
    for (int ti = 0; ti < nk_tab; ti++) {
        const dn_kernels *k = ks[ti];
        for (size_t hi = 0; hi < sizeof hds / sizeof hds[0]; hi++)
        for (int type = 0; type < 2; type++) {   /* f16, f32 (Q8: test_kernels_attention_q8) */
            const int hd = hds[hi];
            const size_t eb = type == DN_KV_F32 ? 4 : type == DN_KV_F16 ? 2 : 1;
            for (int j = 0; j < NK; j++) {
                for (int d = 0; d < hd; d++) {
                    uint8_t *x = V + ((size_t)j * hd + d) * eb;
                    float *f = &vf[j * hd + d];
                    if (type == DN_KV_F32) { *f = rnd_val(); memcpy(x, f, 4); }
                    else { uint16_t h = dn_f32_to_fp16(rnd_val()); memcpy(x, &h, 2); *f = dn_fp16_to_f32(h); }
                }
            }
            for (int i = 0; i < NQ * PS; i++) p[i] = fabsf(rnd_val()) / NK;
            for (int i = 0; i < NQ * OS; i++) o0[i] = i % OS >= hd ? -7.0f : rnd_val();
            memcpy(o1, o0, sizeof o1);
            memcpy(o2, o0, sizeof o2);
            k->att_values(hd, NQ, p, PS, V, NK, type, o1, OS);
            const int a = 133;   /* the second call starts 5 keys past a chunk */
            for (int i = 0; i < NQ; i++) {
                for (int d = 0; d < hd; d++) {
                    double e = o0[i * OS + d], m = fabs(e);
                    for (int j = 0; j < NK; j++) {
                        const double t = (double)p[i * PS + j] * vf[j * hd + d];
                        e += t; m += fabs(t);
                    }
                    CHECK(fabs(o1[i * OS + d] - e) <= 3.2e-5 * m, "%s att_values nk %d hd %d type %d [%d][%d]: %.9g vs %.9g",
                          k->name, NK, hd, type, i, d, o1[i * OS + d], e);
                }
                for (int d = hd; d < OS; d++) CHECK(o1[i * OS + d] == -7.0f, "%s att_values wrote past hd", k->name);
                k->att_values(hd, 1, p + i * PS, PS, V, a, type, o2 + i * OS, OS);
                k->att_values(hd, 1, p + i * PS + a, PS, V + (size_t)a * hd * eb, NK - a, type, o2 + i * OS, OS);
            }
            CHECK(!memcmp(o1, o2, sizeof o1), "%s att_values nk %d: alone/split bits differ (hd %d type %d)", k->name,
                  NK, hd, type);
        }
    }
}
END_TEST

/* The Q8 values slots of every table (kernels.h att_q8_*) and `max`
 * against their definitions written out here. max: the largest element
 * (NaN when one is), exactly. att_q8_weights: e_j = exp(s_j - m), the
 * weight min(round-even((e_j * vsc_j) * c), 16383) as 7-bit planes and the
 * denominator sum_j round-even(e_j * 2^29); the scalar table's exp is
 * libm's expf, so it must give exactly the oracle's bytes and sum, the
 * SIMD tables' exp is their own (~1 ulp): each weight within 0.5 + 6e-7 of
 * the double-precision product, the sum within 0.5 + 6e-7 of each count;
 * for every table a split of the keys gives the same bytes and the same
 * total, and nothing is written outside [0, n). att_q8_values: the exact
 * integer sums over a V tile laid out from its definition (groups of 4
 * lanes, byte ((l % 16) / 4 * hd + d) * 4 + l % 4 of tile l / 16, junk in
 * the lanes outside the run), added to what acc held, with planes full of
 * junk past their padded end (a kernel reading them gets other sums). */
START_TEST(test_kernels_attention_q8)
{
    const dn_kernels *ks[8];
    const int nk_tab = dn_kernels_all(ks, 0);
    static const int hds[] = { 80, 64, 48, 128, 16, 2, 200, 96, 18, 20, 22, 26, 94 };   /* every even tail of 8 and 16 */
    static const int nqs[] = { 1, 3, 4, 5, 7, 16 };
    static const int nks[] = { 1, 3, 15, 16, 17, 40, 531 };
    static const int lanes[] = { 0, 1, 2, 3, 7, 15 };
    enum { MAXHD = 200, MAXQ = 16, MAXK = 531, TILES = (15 + MAXK + 15) / 16, WS = MAXK + 3 + 3 + 13 };
    static int8_t code[MAXK * MAXHD];
    static _Alignas(64) uint8_t V[TILES * 16 * MAXHD], W[MAXQ * 2 * WS];
    static int64_t acc[MAXQ * 2 * MAXHD + 7], want[MAXQ * 2 * MAXHD + 7];
    static float sc[MAXK], vsc[MAXK];
    static uint8_t hi[MAXK + 16], lo[MAXK + 16], hi2[MAXK + 16], lo2[MAXK + 16];
    rng_state = 8086;
    for (int ti = 0; ti < nk_tab; ti++) {
        const dn_kernels *k = ks[ti];
        const int exact = k->isa == DN_ISA_SCALAR;
        ck_assert_msg(k->max && k->att_q8_weights && k->att_q8_values, "%s lacks Q8 values slots", k->name);
        /* max, every length to 40 and a few longer; NaN anywhere */
        for (int n = 1; n <= 531; n += (n < 40 ? 1 : 29)) {
            float m = -INFINITY;
            for (int j = 0; j < n; j++) {
                sc[j] = j % 11 == 5 ? -INFINITY : rnd_val() * 8 - 30;
                if (sc[j] > m) m = sc[j];
            }
            CHECK(k->max(sc, n) == m, "%s max n %d: %a, want %a", k->name, n, (double)k->max(sc, n), (double)m);
            const int at = (int)(rnd_u32() % (uint32_t)n);
            const float keep = sc[at];
            sc[at] = NAN;
            CHECK(isnan(k->max(sc, n)), "%s max n %d: NaN at %d not returned", k->name, n, at);
            sc[at] = keep;
        }
        /* weights: every length to 40, a few longer, scores spread over
         * 30 below the maximum, some -inf (e = 0), some clamped */
        for (int n = 1; n <= 531; n += (n < 40 ? 1 : 49)) {
            for (int rep = 0; rep < 2; rep++) {
                float m = -INFINITY, vmax = 0.0f;
                for (int j = 0; j < n; j++) {
                    sc[j] = j % 13 == 7 ? -INFINITY : -fabsf(rnd_val()) * (j % 3 ? 4.0f : 0.3f) + 2.0f;
                    vsc[j] = j % 17 == 3 ? 0.0f : 0.001f + fabsf(rnd_val()) / 50;
                    if (sc[j] > m) m = sc[j];
                    if (vsc[j] > vmax) vmax = vsc[j];
                }
                if (m == -INFINITY) { sc[0] = m = 1.0f; }
                const float c = rep ? 16383.0f / vmax * 1.5f : 16383.0f / vmax;   /* rep 1: some clamp at 16383 */
                memset(hi, 0x55, sizeof hi);
                memset(lo, 0x55, sizeof lo);
                const int64_t got = k->att_q8_weights(sc, m, vsc, n, c, hi + 8, lo + 8);
                double want_sum = 0.0, slack = 0.0;
                int64_t exact_sum = 0;
                for (int j = 0; j < n; j++) {
                    const float d = sc[j] - m, ef = expf(d);
                    const double e = exp((double)d), t = e * vsc[j] * c;
                    int w = hi[8 + j] * 128 + lo[8 + j];
                    CHECK(hi[8 + j] < 128 && lo[8 + j] < 128, "%s att_q8_weights n %d key %d: bytes %d %d", k->name, n, j,
                          hi[8 + j], lo[8 + j]);
                    if (exact) {
                        const float tf = ef * vsc[j] * c;
                        const int wf = tf < 16383.0f ? (int)nearbyintf(tf) : 16383;
                        CHECK(w == wf, "%s att_q8_weights n %d key %d: %d, want %d", k->name, n, j, w, wf);
                        exact_sum += (int64_t)nearbyintf(ef * 536870912.0f);
                    } else {
                        const double tc = t < 16383.0 ? t : 16383.0;
                        CHECK(fabs(w - tc) <= 0.5 + t * 6e-7, "%s att_q8_weights n %d key %d: %d, want %.4f", k->name, n,
                              j, w, tc);
                    }
                    want_sum += e * 536870912.0;
                    slack += 0.5 + e * 536870912.0 * 6e-7;
                }
                if (exact) CHECK(got == exact_sum, "%s att_q8_weights n %d: sum %lld, want %lld", k->name, n, (long long)got,
                                 (long long)exact_sum);
                CHECK(fabs((double)got - want_sum) <= slack, "%s att_q8_weights n %d: sum %lld, want %.1f", k->name, n,
                      (long long)got, want_sum);
                for (int j = 0; j < 8; j++)
                    CHECK(hi[j] == 0x55 && lo[j] == 0x55 && hi[8 + n + j] == 0x55 && lo[8 + n + j] == 0x55,
                          "%s att_q8_weights n %d wrote outside its keys", k->name, n);
                /* any split: the same bytes, the same total */
                const int cut = (int)(rnd_u32() % (uint32_t)(n + 1));
                memset(hi2, 0x55, sizeof hi2);
                memset(lo2, 0x55, sizeof lo2);
                const int64_t s1 = k->att_q8_weights(sc, m, vsc, cut, c, hi2 + 8, lo2 + 8);
                const int64_t s2 = k->att_q8_weights(sc + cut, m, vsc + cut, n - cut, c, hi2 + 8 + cut, lo2 + 8 + cut);
                CHECK(s1 + s2 == got && !memcmp(hi, hi2, sizeof hi) && !memcmp(lo, lo2, sizeof lo),
                      "%s att_q8_weights n %d split at %d: another result", k->name, n, cut);
            }
        }
        /* values: exact sums */
        for (size_t hi_ = 0; hi_ < sizeof hds / sizeof hds[0]; hi_++)
        for (size_t qi = 0; qi < sizeof nqs / sizeof nqs[0]; qi++)
        for (size_t ki = 0; ki < sizeof nks / sizeof nks[0]; ki++)
        for (size_t li = 0; li < sizeof lanes / sizeof lanes[0]; li++) {
            const int hd = hds[hi_], nq = nqs[qi], nk = nks[ki], lane = lanes[li], pad = lane % 4;
            if (nk == MAXK && (hd != 80 || lane > 3) && !(hd == 18 && nq == 5)) continue;   /* long runs: a few shapes */
            memset(V, 0xA5, sizeof V);
            for (int j = 0; j < nk; j++) {
                const int l = lane + j;
                for (int d = 0; d < hd; d++) {
                    const int8_t c = (int8_t)((int)(rnd_u32() % 255) - 127);
                    code[j * hd + d] = c;
                    V[(size_t)(l / 16) * 16 * hd + ((size_t)((l % 16) / 4) * hd + d) * 4 + l % 4] = (uint8_t)c;
                }
            }
            memset(W, 0x55, sizeof W);
            const int end = (pad + nk + 3) / 4 * 4;
            for (int i = 0; i < 2 * nq; i++)
                for (int j = 0; j < end; j++) W[(size_t)i * WS + j] = j < pad || j >= pad + nk ? 0 : (uint8_t)(rnd_u32() % 128);
            for (int i = 0; i < 2 * nq * hd + 7; i++) acc[i] = want[i] = (int64_t)(rnd_u32() % 2000001) - 1000000;
            for (int i = 0; i < 2 * nq; i++)
                for (int d = 0; d < hd; d++)
                    for (int j = 0; j < nk; j++) want[(size_t)i * hd + d] += (int64_t)W[(size_t)i * WS + pad + j] * code[j * hd + d];
            k->att_q8_values(hd, nq, W, WS, V, lane, nk, acc);
            CHECK(!memcmp(acc, want, sizeof(int64_t) * (size_t)(2 * nq * hd + 7)),
                  "%s att_q8_values hd %d nq %d nk %d lane %d: sums differ", k->name, hd, nq, nk, lane);
        }
    }
}
END_TEST

/* dn_kv_quantize (the Q8 cache rows and queries) against its documented
 * formula written with libm: amax by fmaxf (NaN skipped, quiet or
 * signaling: random bits make both), codes roundf (half away from zero)
 * clamped to +-127, NaN 0. Rows holding 127 quantize with
 * scale 1 exactly, so their elements test the rounding itself: ties k +
 * 0.5, one ulp either side, negatives, -0, NaN, infinities, and random bit
 * patterns; other rows random magnitudes. */
static void kvq_reference(const float *x, int n, int8_t *q, float *scale)
{
    float amax = 0.0f;
    for (int i = 0; i < n; i++)   /* glibc's fmaxf returns NaN for a signaling NaN: skip NaNs first */
        if (!isnan(x[i])) amax = fmaxf(amax, fabsf(x[i]));
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    for (int i = 0; i < n; i++) {
        const float r = roundf(x[i] * inv);
        q[i] = (int8_t)(r != r ? 0 : r > 127.0f ? 127 : r < -127.0f ? -127 : (int)r);
    }
    *scale = amax / 127.0f;
}

/* One row through every table's kv_quantize, for each length n <= N
 * (SIMD bodies and tails), against the reference. */
static void kvq_check(const dn_kernels *const *tabs, int nt, const float *x, int n, const char *what, long r)
{
    int8_t q[128], want[128];
    float want_sc;
    kvq_reference(x, n, want, &want_sc);
    for (int t = 0; t < nt; t++) {
        memset(q, 0x55, sizeof q);
        const float sc = tabs[t]->kv_quantize(x, n, q);
        for (int i = 0; i < n; i++)
            ck_assert_msg(q[i] == want[i], "%s kv_quantize: %s row %ld (n %d) element %d (%a) code %d, want %d", tabs[t]->name,
                          what, r, n, i, (double)x[i], q[i], want[i]);
        ck_assert_msg(q[n] == 0x55, "%s kv_quantize wrote past n %d", tabs[t]->name, n);
        ck_assert_msg(sc == want_sc || (sc != sc && want_sc != want_sc), "%s kv_quantize: %s row %ld (n %d) scale %a, want %a",
                      tabs[t]->name, what, r, n, (double)sc, (double)want_sc);
    }
}

START_TEST(test_kernels_kv_quantize)
{
    enum { N = 83 };
    static const int lens[] = { 1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 64, 80, N };
    const dn_kernels *tabs[9];
    int nt = dn_kernels_all(tabs, 0);
    tabs[nt++] = NULL;   /* slot for the inline function itself */
    dn_kernels inl = *tabs[0];
    inl.kv_quantize = dn_kv_quantize;
    inl.name = "dn_kv_quantize";
    tabs[nt - 1] = &inl;
    float x[N];
    long rows = 0;
    for (int k = -128; k <= 128; k++)   /* ties and their neighbours, scale 1 */
        for (int sgn = -1; sgn <= 1; sgn += 2) {
            const float t = (float)k + 0.5f * (float)sgn;
            for (int i = 0; i < N; i++) x[i] = i == 0 ? 127.0f : i % 3 == 1 ? nextafterf(t, 1e9f) : i % 3 == 2 ? nextafterf(t, -1e9f) : t;
            x[N - 1] = k == 0 ? -0.0f : k == 1 ? NAN : k == 2 ? -NAN : x[N - 1];
            x[N / 2] = k == 3 ? INFINITY : k == 4 ? -INFINITY : x[N / 2];
            for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) kvq_check(tabs, nt, x, lens[l], "ties", k);
            rows++;
        }
    for (int r = 0; r < 20000; r++) {   /* random bits (NaN, inf included), then random magnitudes */
        for (int i = 0; i < N; i++) {
            uint32_t b = rnd_u32();
            if (r % 2) x[i] = rnd_val() * (float)(1 + r % 97);
            else memcpy(&x[i], &b, 4);
        }
        if (r % 4 == 0) x[r % N] = 127.0f;
        kvq_check(tabs, nt, x, lens[r % (sizeof lens / sizeof lens[0])], "random", r);
        kvq_check(tabs, nt, x, N, "random", r);
        rows++;
    }
    printf("  kv_quantize of %d tables and dn_kv_quantize: %ld rows equal the libm formula\n", nt - 1, rows);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("kernels");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_kernels_dispatch);
    tcase_add_loop_test(tc, test_kernels_matmul, 0, N_WTYPES);
    tcase_add_test(tc, test_kernels_matmul_zero);
    tcase_add_test(tc, test_kernels_batch_equals_single);
    tcase_add_test(tc, test_kernels_act_quantizers);
    tcase_add_test(tc, test_kernels_elementwise);
    tcase_add_test(tc, test_kernels_exp_range);
    tcase_add_test(tc, test_kernels_attention);
    tcase_add_test(tc, test_kernels_attention_values_long);
    tcase_add_test(tc, test_kernels_attention_q8);
    tcase_add_test(tc, test_kernels_kv_quantize);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    const dn_kernels *ks[8];
    const int nk = dn_kernels_all(ks, 0);
    printf("kernel tables:");
    for (int i = 0; i < nk; i++) printf(" %s", ks[i]->name);
    printf(" (best: %s)\n", dn_kernels_get(DANU_ISA_AUTO)->name);
    srunner_run_all(sr, CK_NORMAL);
    const int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
