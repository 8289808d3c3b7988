/* test_quant.c - block formats and reference quantizers.
 *
 * 1. dn_dequantize_row against dequantizers written here per element from
 *    the GGUF block definitions (raw byte offsets, own fp16 decoding).
 * 2. Quantize -> dequantize round trips: relative RMSE bounds per type.
 * 3. Bit-exactness against llama.cpp's llama-quantize: the tiny-q GGUF files
 *    in tests/data/gguf-llamacpp are regenerated from the synthetic-model
 *    formula and requantized here, block by block.
 * 4. F16/BF16 rounding, Q8 activation formats, edge cases, bad arguments. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"
#include "quant/quant.h"
#include "format/gguf.h"
#include "common/alloc.h"

/* ------------------------------------------------------------------ */
/* Helpers independent of the library                                  */
/* ------------------------------------------------------------------ */

static uint64_t rng_state = 0x243F6A8885A308D3ull;
static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double rng_unit(void) { return (double)(rng_next() >> 11) * 0x1p-53; }
static float rng_gauss(void)
{
    double u1 = rng_unit() + 1e-300, u2 = rng_unit();
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* IEEE half -> value, computed with ldexp (no bit tricks shared with lib). */
static double half_value(uint16_t h)
{
    int sign = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 0) v = ldexp(m, -24);
    else if (e == 31) v = m ? NAN : INFINITY;
    else v = ldexp(1024 + m, e - 25);
    return sign ? -v : v;
}
static float half_f(uint16_t h) { return (float)half_value(h); }
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint16_t random_finite_half(void)
{
    for (;;) {
        uint16_t h = (uint16_t)rng_next();
        if (((h >> 10) & 31) != 31) return h;
    }
}
static float bf16_value(uint16_t b) { uint32_t u = (uint32_t)b << 16; float f; memcpy(&f, &u, 4); return f; }

static const int32_t all_types[] = {
    DANU_TYPE_F32, DANU_TYPE_F16, DANU_TYPE_BF16, DANU_TYPE_Q4_0, DANU_TYPE_Q4_1,
    DANU_TYPE_Q5_0, DANU_TYPE_Q5_1, DANU_TYPE_Q8_0, DN_TYPE_Q8_1, DANU_TYPE_Q4_K,
    DANU_TYPE_Q5_K, DANU_TYPE_Q6_K, DN_TYPE_Q8_K };
#define N_TYPES ((int)(sizeof all_types / sizeof all_types[0]))

/* ------------------------------------------------------------------ */
/* Reference dequantizers: element e of one block, from raw bytes        */
/* ------------------------------------------------------------------ */

/* 6-bit scale/min of sub-block j of a Q4_K/Q5_K block's 12 scale bytes. */
static void ref_k_scale(const uint8_t *s, int j, int *sc, int *mn)
{
    if (j < 4) { *sc = s[j] & 0x3f; *mn = s[j + 4] & 0x3f; }
    else {
        *sc = (s[j + 4] & 0x0f) + 16 * (s[j - 4] >> 6);
        *mn = (s[j + 4] >> 4) + 16 * (s[j] >> 6);
    }
}

static float ref_elem(int32_t type, const uint8_t *b, int e)
{
    switch (type) {
    case DANU_TYPE_Q4_0: {          /* d | qs[16] */
        int q = e < 16 ? (b[2 + e] & 15) : (b[2 + e - 16] >> 4);
        return (float)(q - 8) * half_f(rd16(b));
    }
    case DANU_TYPE_Q4_1: {          /* d | m | qs[16] */
        int q = e < 16 ? (b[4 + e] & 15) : (b[4 + e - 16] >> 4);
        return (float)q * half_f(rd16(b)) + half_f(rd16(b + 2));
    }
    case DANU_TYPE_Q5_0: {          /* d | qh[4] | qs[16] */
        int q = e < 16 ? (b[6 + e] & 15) : (b[6 + e - 16] >> 4);
        q += ((b[2 + e / 8] >> (e % 8)) & 1) * 16;
        return (float)(q - 16) * half_f(rd16(b));
    }
    case DANU_TYPE_Q5_1: {          /* d | m | qh[4] | qs[16] */
        int q = e < 16 ? (b[8 + e] & 15) : (b[8 + e - 16] >> 4);
        q += ((b[4 + e / 8] >> (e % 8)) & 1) * 16;
        return (float)q * half_f(rd16(b)) + half_f(rd16(b + 2));
    }
    case DANU_TYPE_Q8_0: return (float)(int8_t)b[2 + e] * half_f(rd16(b));
    case DN_TYPE_Q8_1:   return (float)(int8_t)b[4 + e] * half_f(rd16(b));
    case DANU_TYPE_Q4_K:            /* d | dmin | scales[12] | qs[128] */
    case DANU_TYPE_Q5_K: {          /* d | dmin | scales[12] | qh[32] | qs[128] */
        int c = e / 64, hi = (e % 64) >= 32, l = e % 32, sc, mn;
        const uint8_t *qs = b + (type == DANU_TYPE_Q4_K ? 16 : 48);
        int q = hi ? (qs[32 * c + l] >> 4) : (qs[32 * c + l] & 15);
        if (type == DANU_TYPE_Q5_K) q += ((b[16 + l] >> (2 * c + hi)) & 1) * 16;
        ref_k_scale(b + 4, e / 32, &sc, &mn);
        float d = half_f(rd16(b)) * (float)sc, m = half_f(rd16(b + 2)) * (float)mn;
        return d * (float)q - m;
    }
    case DANU_TYPE_Q6_K: {          /* ql[128] | qh[64] | scales[16] | d */
        int h = e / 128, k = (e % 128) / 32, l = e % 32;
        uint8_t lb = b[64 * h + l + 32 * (k & 1)];
        int lo = k >= 2 ? lb >> 4 : lb & 15;
        int q = lo + 16 * ((b[128 + 32 * h + l] >> (2 * k)) & 3);
        return half_f(rd16(b + 208)) * (float)(int8_t)b[192 + e / 16] * (float)(q - 32);
    }
    case DN_TYPE_Q8_K: {            /* float d | qs[256] | bsums[16] */
        float d; memcpy(&d, b, 4);
        return d * (float)(int8_t)b[4 + e];
    }
    }
    return NAN;
}

/* Random block: random bytes, fp16 scale fields replaced by finite halves. */
static void random_block(int32_t type, uint8_t *b, int size)
{
    for (int i = 0; i < size; i++) b[i] = (uint8_t)rng_next();
    int half_at[2] = { -1, -1 };
    switch (type) {
    case DANU_TYPE_Q4_0: case DANU_TYPE_Q5_0: case DANU_TYPE_Q8_0: half_at[0] = 0; break;
    case DANU_TYPE_Q4_1: case DANU_TYPE_Q5_1: case DN_TYPE_Q8_1:
    case DANU_TYPE_Q4_K: case DANU_TYPE_Q5_K: half_at[0] = 0; half_at[1] = 2; break;
    case DANU_TYPE_Q6_K: half_at[0] = 208; break;
    case DN_TYPE_Q8_K: { float d = (float)((rng_unit() - 0.5) * 1e-2); memcpy(b, &d, 4); break; }
    }
    for (int k = 0; k < 2; k++) {
        if (half_at[k] < 0) continue;
        uint16_t h = random_finite_half();
        b[half_at[k]] = (uint8_t)h; b[half_at[k] + 1] = (uint8_t)(h >> 8);
    }
}

static int same_float(float a, float b) { return memcmp(&a, &b, 4) == 0; }

START_TEST(test_dequant_matches_definition)
{
    uint8_t buf[16 * 292 + 1];
    float out[16 * 256], ref;
    for (int ti = 0; ti < N_TYPES; ti++) {
        const int32_t type = all_types[ti];
        const dn_type_info *info = dn_type_get(type);
        ck_assert_ptr_nonnull(info);
        const int bs = (int)info->block_size, ts = (int)info->type_size;
        const int nblk = info->is_quantized ? 16 : 256, n = nblk * bs;
        for (int rep = 0; rep < 40; rep++) {
            if (info->is_quantized) {
                for (int k = 0; k < nblk; k++) random_block(type, buf + 1 + k * ts, ts);
            } else {
                for (int k = 0; k < n * ts; k++) buf[1 + k] = (uint8_t)rng_next();
                if (type == DANU_TYPE_F16)   /* keep halves finite (NaN payloads aside) */
                    for (int k = 0; k < n; k++) if ((buf[2 + 2 * k] & 0x7c) == 0x7c) buf[2 + 2 * k] &= 0xbb;
            }
            /* src at an odd address: the reader must not assume alignment */
            ck_assert_int_eq(dn_dequantize_row(type, buf + 1, out, n), 0);
            for (int i = 0; i < n; i++) {
                const uint8_t *p = buf + 1;
                if (type == DANU_TYPE_F32) memcpy(&ref, p + 4 * i, 4);
                else if (type == DANU_TYPE_F16) ref = half_f(rd16(p + 2 * i));
                else if (type == DANU_TYPE_BF16) ref = bf16_value(rd16(p + 2 * i));
                else ref = ref_elem(type, p + (i / bs) * ts, i % bs);
                if (isnan(ref) && isnan(out[i])) continue;
                ck_assert_msg(same_float(ref, out[i]), "%s elem %d: got %.9g want %.9g",
                              info->name, i, out[i], ref);
            }
        }
    }
}
END_TEST

/* The structs in quant.h must sit where the byte-level reference reads. */
START_TEST(test_block_layout)
{
    ck_assert_int_eq(offsetof(dn_block_q5_0, qs), 6);
    ck_assert_int_eq(offsetof(dn_block_q5_1, qs), 8);
    ck_assert_int_eq(offsetof(dn_block_q8_1, qs), 4);
    ck_assert_int_eq(offsetof(dn_block_q4_K, qs), 16);
    ck_assert_int_eq(offsetof(dn_block_q5_K, qh), 16);
    ck_assert_int_eq(offsetof(dn_block_q5_K, qs), 48);
    ck_assert_int_eq(offsetof(dn_block_q6_K, qh), 128);
    ck_assert_int_eq(offsetof(dn_block_q6_K, scales), 192);
    ck_assert_int_eq(offsetof(dn_block_q6_K, d), 208);
    ck_assert_int_eq(offsetof(dn_block_q8_K, bsums), 260);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Synthetic-model weights (synthetic-model.md)                        */
/* ------------------------------------------------------------------ */

enum { W_EMBED, W_NORM, W_LINEAR };

static float synth_weight(uint64_t seed, uint64_t t, uint64_t i, int kind, int fan_in)
{
    uint64_t z = ((seed << 48) | (t << 32) | i) + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z = z ^ (z >> 31);
    float u = (float)(z >> 40) * 0x1p-24f;
    float r = u * 2.0f - 1.0f, w;
    if (kind == W_EMBED) w = r;
    else if (kind == W_NORM) w = r * 0.0625f + 1.0f;
    else w = r * (float)sqrt(3.0 / fan_in);
    uint32_t bits;
    memcpy(&bits, &w, 4);
    bits = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
    return bf16_value((uint16_t)bits);
}

START_TEST(test_synth_generator_checksums)
{
    /* tiny-b (seed 11): embed [1024,256] t=0, layer-0 q_proj [256,256] t=2 */
    double s1000 = 0, sall = 0;
    for (uint64_t i = 0; i < 1024 * 256; i++) {
        double v = synth_weight(11, 0, i, W_EMBED, 0);
        if (i < 1000) s1000 += v;
        sall += v;
    }
    ck_assert_double_eq_tol(s1000, -12.88318920135498, 1e-9);
    ck_assert_double_eq_tol(sall, -120.12346565723419, 1e-7);
    s1000 = sall = 0;
    for (uint64_t i = 0; i < 256 * 256; i++) {
        double v = synth_weight(11, 2, i, W_LINEAR, 256);
        if (i < 1000) s1000 += v;
        sall += v;
    }
    ck_assert_double_eq_tol(s1000, 3.538412094116211, 1e-9);
    ck_assert_double_eq_tol(sall, 24.920381411910057, 1e-7);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Round trips                                                         */
/* ------------------------------------------------------------------ */

static double rel_rmse(const float *x, const float *y, int n)
{
    double e = 0, s = 0;
    for (int i = 0; i < n; i++) { e += ((double)y[i] - x[i]) * ((double)y[i] - x[i]); s += (double)x[i] * x[i]; }
    return sqrt(e / s);
}

static double round_trip(int32_t type, const float *x, int n)
{
    uint8_t *q = malloc((size_t)dn_type_row_bytes(type, (uint64_t)n));
    float *y = malloc((size_t)n * sizeof *y);
    ck_assert_int_eq(dn_quantize_row(type, x, q, n), 0);
    ck_assert_int_eq(dn_dequantize_row(type, q, y, n), 0);
    double r = rel_rmse(x, y, n);
    free(q); free(y);
    return r;
}

START_TEST(test_round_trip_rmse)
{
    /* measured rel RMSE (gaussian / synthetic tiny-q rows, which are bf16
     * values and so fit f16 and bf16 exactly): f16 2.1e-4/0, bf16 1.7e-3/0,
     * q8_0 = q8_1 5.4e-3/3.8e-3, q8_K 7.2e-3/3.9e-3, q6_K 1.8e-2/1.3e-2,
     * q5_1 3.8e-2/2.9e-2, q5_0 4.3e-2/3.1e-2, q5_K 3.6e-2/2.8e-2,
     * q4_1 7.9e-2/6.1e-2, q4_0 8.8e-2/6.5e-2, q4_K 7.2e-2/5.4e-2.
     * Bounds: those plus ~20%. */
    static const struct { int32_t type; double gauss, synth; } bound[] = {
        { DANU_TYPE_F32, 0, 0 }, { DANU_TYPE_F16, 2.5e-4, 1e-6 }, { DANU_TYPE_BF16, 2e-3, 0 },
        { DANU_TYPE_Q8_0, 6.5e-3, 4.5e-3 }, { DN_TYPE_Q8_1, 6.5e-3, 4.5e-3 },
        { DN_TYPE_Q8_K, 8.6e-3, 4.7e-3 }, { DANU_TYPE_Q6_K, 2.1e-2, 1.6e-2 },
        { DANU_TYPE_Q5_1, 4.6e-2, 3.5e-2 }, { DANU_TYPE_Q5_0, 5.2e-2, 3.8e-2 },
        { DANU_TYPE_Q5_K, 4.4e-2, 3.3e-2 }, { DANU_TYPE_Q4_1, 9.5e-2, 7.3e-2 },
        { DANU_TYPE_Q4_0, 0.105, 7.8e-2 }, { DANU_TYPE_Q4_K, 8.6e-2, 6.5e-2 },
    };
    enum { N = 256 * 64 };
    float *g = malloc(N * sizeof *g), *s = malloc(N * sizeof *s);
    for (int i = 0; i < N; i++) g[i] = rng_gauss() * 0.02f;
    for (int i = 0; i < N; i++) s[i] = synth_weight(17, i < N / 2 ? 2 : 9, (uint64_t)i, W_LINEAR, 256);
    const int nbound = (int)(sizeof bound / sizeof bound[0]);
    double rg[16], rs[16];
    for (int k = 0; k < nbound; k++) {
        rg[k] = round_trip(bound[k].type, g, N);
        rs[k] = round_trip(bound[k].type, s, N);
        printf("round trip %-5s rel RMSE gaussian %.3e synthetic %.3e\n",
               dn_type_get(bound[k].type)->name, rg[k], rs[k]);
    }
    fflush(stdout);
    for (int k = 0; k < nbound; k++) {
        ck_assert_msg(rg[k] <= bound[k].gauss, "%s gaussian %g", dn_type_get(bound[k].type)->name, rg[k]);
        ck_assert_msg(rs[k] <= bound[k].synth, "%s synth %g", dn_type_get(bound[k].type)->name, rs[k]);
    }
    free(g); free(s);
}
END_TEST

/* ------------------------------------------------------------------ */
/* F16 / BF16 rounding: nearest representable value, ties to even      */
/* ------------------------------------------------------------------ */

static double code_value(uint16_t c, int is_bf16) { return is_bf16 ? bf16_value(c) : half_value(c); }

/* `got` must be the code nearest to x (ties to an even code), same sign. */
static void check_nearest_even(float x, uint16_t got, int is_bf16)
{
    const char *what = is_bf16 ? "bf16" : "f16";
    const double xd = x, vb = code_value(got, is_bf16);
    const uint16_t mag = got & 0x7fff, sgn = got & 0x8000;
    ck_assert_msg(xd == 0 || (sgn != 0) == (xd < 0), "%s(%a) = 0x%04x: sign", what, x, got);
    if (!is_bf16 && fabs(xd) >= 65520.0) {   /* past max + half an ulp: infinity */
        ck_assert_msg(mag == 0x7c00, "f16(%a) = 0x%04x, want inf", x, got);
        return;
    }
    ck_assert_msg(!isinf(vb), "%s(%a) = 0x%04x overflowed", what, x, got);
    const double err = fabs(vb - xd);
    for (int step = -1; step <= 1; step += 2) {   /* neighbours one code away */
        int m = mag + step;
        if (m < 0 || m > (is_bf16 ? 0x7f80 : 0x7c00)) continue;
        double en = fabs(code_value((uint16_t)(sgn | m), is_bf16) - xd);
        ck_assert_msg(err <= en, "%s(%a) = 0x%04x not nearest", what, x, got);
        if (err == en) ck_assert_msg((got & 1) == 0, "%s(%a) = 0x%04x: tie not even", what, x, got);
    }
}

START_TEST(test_f16_bf16_rounding)
{
    enum { N = 4096 };
    float x[N];
    uint16_t h[N];
    float y[N];
    for (int i = 0; i < N; i++) {
        switch (i % 4) {
        case 0: x[i] = rng_gauss() * 10.0f; break;
        case 1: x[i] = (float)ldexp(rng_unit() * 2 - 1, (int)(rng_next() % 40) - 26); break; /* incl. subnormal halves */
        case 2: { /* exact midpoint of two adjacent halves: a tie */
            uint16_t a = (uint16_t)(rng_next() % 0x7bff);
            x[i] = (float)((half_value(a) + half_value((uint16_t)(a + 1))) / 2);
            if (rng_next() & 1) x[i] = -x[i];
            break; }
        default: { /* exact midpoint of two adjacent bf16 values */
            uint16_t a = (uint16_t)(rng_next() % 0x7f7f);
            uint32_t u = ((uint32_t)a << 16) | 0x8000u;
            memcpy(&x[i], &u, 4);
            break; }
        }
    }
    ck_assert_int_eq(dn_quantize_row(DANU_TYPE_F16, x, h, N), 0);
    for (int i = 0; i < N; i++) check_nearest_even(x[i], h[i], 0);
    ck_assert_int_eq(dn_dequantize_row(DANU_TYPE_F16, h, y, N), 0);
    for (int i = 0; i < N; i++) ck_assert(same_float(y[i], half_f(h[i])));
    ck_assert_int_eq(dn_quantize_row(DANU_TYPE_BF16, x, h, N), 0);
    for (int i = 0; i < N; i++) check_nearest_even(x[i], h[i], 1);
    /* overflow to infinity exactly past 65504 + half an ulp */
    float big[4] = { 65504.0f, 65519.996f, 65520.0f, -1e30f };
    ck_assert_int_eq(dn_quantize_row(DANU_TYPE_F16, big, h, 4), 0);
    ck_assert_uint_eq(h[0], 0x7bff);
    ck_assert_uint_eq(h[1], 0x7bff);
    ck_assert_uint_eq(h[2], 0x7c00);
    ck_assert_uint_eq(h[3], 0xfc00);
    /* f32 "quantize" is a copy */
    float c[8];
    ck_assert_int_eq(dn_quantize_row(DANU_TYPE_F32, x, c, 8), 0);
    ck_assert_mem_eq(c, x, sizeof c);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Q8 activation formats: properties checked with libm rounding         */
/* ------------------------------------------------------------------ */

START_TEST(test_q8_activation_formats)
{
    enum { N = 256 * 8 };
    float x[N];
    for (int i = 0; i < N; i++) x[i] = rng_gauss() * (i < N / 2 ? 1.0f : 1e-3f);
    /* Q8_0 / Q8_1: d = fp16(amax/127), q = roundf(x / d_exact) (half away) */
    dn_block_q8_0 a[N / 32];
    dn_block_q8_1 b[N / 32];
    ck_assert_int_eq(dn_quantize_row(DANU_TYPE_Q8_0, x, a, N), 0);
    ck_assert_int_eq(dn_quantize_row(DN_TYPE_Q8_1, x, b, N), 0);
    for (int k = 0; k < N / 32; k++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[32 * k + j]));
        const float d = amax / 127.0f, id = 1.0f / d;
        check_nearest_even(d, a[k].d, 0);
        ck_assert_uint_eq(a[k].d, b[k].d);
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            float v = x[32 * k + j] * id;
            ck_assert_int_eq(a[k].qs[j], (int)lroundf(v));
            ck_assert_int_eq(b[k].qs[j], a[k].qs[j]);
            sum += b[k].qs[j];
        }
        check_nearest_even((float)sum * d, b[k].s, 0);   /* s = fp16(sum * d) */
    }
    /* Q8_K: iscale = -127/max (max = signed largest), q = rint(iscale*x)
     * capped at 127, d = 1/iscale, bsums = sums of 16 */
    dn_block_q8_K c[N / 256];
    ck_assert_int_eq(dn_quantize_row(DN_TYPE_Q8_K, x, c, N), 0);
    for (int k = 0; k < N / 256; k++) {
        const float *xs = x + 256 * k;
        float amax = 0, max = 0;
        for (int j = 0; j < 256; j++) if (fabsf(xs[j]) > amax) { amax = fabsf(xs[j]); max = xs[j]; }
        const float iscale = -127.0f / max;
        ck_assert(same_float(c[k].d, 1.0f / iscale));
        for (int j = 0; j < 256; j++) {
            long q = lrintf(iscale * xs[j]);
            ck_assert_int_eq(c[k].qs[j], q > 127 ? 127 : q);
        }
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += c[k].qs[16 * g + j];
            ck_assert_int_eq(c[k].bsums[g], s);
        }
    }
}
END_TEST

/* ------------------------------------------------------------------ */
/* Edge cases                                                          */
/* ------------------------------------------------------------------ */

START_TEST(test_edge_cases)
{
    enum { N = 512 };
    float x[N], y[N];
    uint8_t q[N * 4 + 64];
    for (int ti = 0; ti < N_TYPES; ti++) {
        const int32_t type = all_types[ti];
        const char *name = dn_type_get(type)->name;
        const int bs = (int)dn_type_block_size(type);
        /* all zeros come back as exact zeros */
        memset(x, 0, sizeof x);
        ck_assert_int_eq(dn_quantize_row(type, x, q, N), 0);
        ck_assert_int_eq(dn_dequantize_row(type, q, y, N), 0);
        for (int i = 0; i < N; i++) ck_assert_msg(y[i] == 0.0f, "%s zero block elem %d = %g", name, i, y[i]);
        /* one huge value among small ones, positive then negative: the
         * huge one survives to fp16-scale precision, the rest stay small */
        for (int sign = -1; sign <= 1; sign += 2) {
            for (int i = 0; i < N; i++) x[i] = (rng_gauss()) * 1e-3f;
            const int at = 37 % bs + (bs > 1 ? bs : 37);
            x[at] = 3000.0f * (float)sign;
            ck_assert_int_eq(dn_quantize_row(type, x, q, N), 0);
            ck_assert_int_eq(dn_dequantize_row(type, q, y, N), 0);
            ck_assert_msg(fabsf(y[at] - x[at]) <= 3000.0f * 4e-3f, "%s huge %g -> %g", name, x[at], y[at]);
            int blk0 = at / (bs > 1 ? bs : 1) * (bs > 1 ? bs : 1), blk1 = blk0 + (bs > 1 ? bs : 1);
            for (int i = 0; i < N; i++) {
                if (i == at) continue;
                /* elements sharing the block may collapse to 0 or a step of
                 * the coarse grid; elsewhere the usual precision holds */
                float tol = (i >= blk0 && i < blk1) ? 3000.0f / 1024.0f : 5e-4f;
                ck_assert_msg(fabsf(y[i] - x[i]) <= tol, "%s elem %d %g -> %g", name, i, x[i], y[i]);
            }
        }
        /* bad n, bad type, NULL */
        if (bs > 1) {
            ck_assert_int_eq(dn_quantize_row(type, x, q, bs + 1), -1);
            ck_assert_int_eq(dn_dequantize_row(type, q, y, bs - 1), -1);
            ck_assert_int_eq(dn_quantize_row(type, x, q, bs / 2), -1);
        }
        ck_assert_int_eq(dn_quantize_row(type, x, q, -bs), -1);
        ck_assert_int_eq(dn_dequantize_row(type, q, y, -bs), -1);
        ck_assert_int_eq(dn_quantize_row(type, NULL, q, bs), -1);
        ck_assert_int_eq(dn_dequantize_row(type, q, NULL, bs), -1);
    }
    ck_assert_int_eq(dn_quantize_row(4, x, q, 32), -1);   /* removed Q4_2 */
    ck_assert_int_eq(dn_dequantize_row(10, q, y, 256), -1); /* Q2_K: not supported */
    ck_assert_int_eq(dn_dequantize_row(-1, q, y, 32), -1);
    ck_assert_int_eq(dn_quantize_row(1000, x, q, 32), -1);

    /* negative max: Q4_0 gives the -1.5 element code 0 (-8 d) with d > 0 */
    float v[32];
    for (int i = 0; i < 32; i++) v[i] = (float)(i % 5) * 0.1f;
    v[9] = -1.5f;
    dn_block_q4_0 b4;
    ck_assert_int_eq(dn_quantize_row(DANU_TYPE_Q4_0, v, &b4, 32), 0);
    ck_assert(half_value(b4.d) == 0.1875);
    ck_assert_int_eq(b4.qs[9] & 15, 0);
    /* positive max: d < 0 and the max again gets code 0 */
    v[9] = 1.5f;
    ck_assert_int_eq(dn_quantize_row(DANU_TYPE_Q4_0, v, &b4, 32), 0);
    ck_assert(half_value(b4.d) == -0.1875);
    ck_assert_int_eq(b4.qs[9] & 15, 0);
    /* Q6_K: a super-block with one sub-block non-zero keeps that sub-block
     * accurate and the zero ones exactly zero */
    float w[256] = { 0 };
    for (int i = 32; i < 48; i++) w[i] = (float)(i - 40) * 0.01f;
    dn_block_q6_K b6;
    ck_assert_int_eq(dn_quantize_row(DANU_TYPE_Q6_K, w, &b6, 256), 0);
    ck_assert_int_eq(dn_dequantize_row(DANU_TYPE_Q6_K, &b6, y, 256), 0);
    for (int i = 0; i < 256; i++) ck_assert(fabsf(y[i] - w[i]) <= (i >= 32 && i < 48 ? 1.5e-3f : 0.0f));
}
END_TEST

/* ------------------------------------------------------------------ */
/* Against llama.cpp's llama-quantize                                  */
/* ------------------------------------------------------------------ */

/* tiny-q: seed 17, vocab 1024, hidden 256, heads 4, kv 2, head_dim 64, ffn 768, 2 layers */
enum { TQ_SEED = 17, TQ_VOCAB = 1024, TQ_HIDDEN = 256, TQ_HEADS = 4, TQ_KV = 2, TQ_HD = 64,
       TQ_FFN = 768, TQ_LAYERS = 2 };

typedef struct {
    int t, kind, fan_in;
    int permute_heads;    /* >0: rows permuted llama.cpp style (q/k) */
} tq_source;

/* Map a GGUF tensor name of tiny-q to its synthetic source; 0 if unknown. */
static int tq_lookup(const char *name, tq_source *s)
{
    memset(s, 0, sizeof *s);
    if (!strcmp(name, "token_embd.weight")) { s->t = 0; s->kind = W_EMBED; return 1; }
    if (!strcmp(name, "output_norm.weight")) { s->t = 1 + 9 * TQ_LAYERS; s->kind = W_NORM; return 1; }
    if (!strcmp(name, "output.weight")) {
        s->t = 2 + 9 * TQ_LAYERS; s->kind = W_LINEAR; s->fan_in = TQ_HIDDEN; return 1;
    }
    static const struct { const char *suffix; int off, kind, fan_in, perm; } parts[] = {
        { "attn_norm", 0, W_NORM, 0, 0 }, { "attn_q", 1, W_LINEAR, TQ_HIDDEN, TQ_HEADS },
        { "attn_k", 2, W_LINEAR, TQ_HIDDEN, TQ_KV }, { "attn_v", 3, W_LINEAR, TQ_HIDDEN, 0 },
        { "attn_output", 4, W_LINEAR, TQ_HEADS * TQ_HD, 0 }, { "ffn_norm", 5, W_NORM, 0, 0 },
        { "ffn_gate", 6, W_LINEAR, TQ_HIDDEN, 0 }, { "ffn_up", 7, W_LINEAR, TQ_HIDDEN, 0 },
        { "ffn_down", 8, W_LINEAR, TQ_FFN, 0 },
    };
    int layer, len = 0;
    char rest[64];
    if (sscanf(name, "blk.%d.%63[a-z_].weight%n", &layer, rest, &len) != 2 || name[len] || layer >= TQ_LAYERS)
        return 0;
    for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++) {
        if (strcmp(rest, parts[k].suffix)) continue;
        s->t = 1 + 9 * layer + parts[k].off;
        s->kind = parts[k].kind; s->fan_in = parts[k].fan_in; s->permute_heads = parts[k].perm;
        return 1;
    }
    return 0;
}

static void tq_source_row(const tq_source *s, int64_t row, int64_t cols, float *out)
{
    int64_t hf_row = row;
    if (s->permute_heads) {   /* GGUF row h*D + 2j + p holds HF row h*D + p*D/2 + j */
        int64_t h = row / TQ_HD, r = row % TQ_HD, j = r / 2, p = r % 2;
        hf_row = h * TQ_HD + p * (TQ_HD / 2) + j;
    }
    for (int64_t c = 0; c < cols; c++)
        out[c] = synth_weight(TQ_SEED, (uint64_t)s->t, (uint64_t)(hf_row * cols + c), s->kind, s->fan_in);
}

static int is_legacy(int32_t type)
{
    return type == DANU_TYPE_Q4_0 || type == DANU_TYPE_Q4_1 || type == DANU_TYPE_Q5_0 ||
           type == DANU_TYPE_Q5_1 || type == DANU_TYPE_Q8_0;
}

/* 1 if v lies within a few float ulps of the boundary b. */
static int near(double v, double b) { return fabs(v - b) <= 4 * ldexp(1.0, -23) * fmax(1.0, fabs(b)); }

/* 1 if a float lies within an ulp of an fp16 rounding midpoint. */
static int at_half_tie(float v)
{
    double a = fabs((double)v), s;
    if (a < ldexp(1.0, -14)) s = a * ldexp(1.0, 24);   /* subnormal half: units of 2^-24 */
    else {
        int e;
        frexp(a, &e);                 /* a in [2^(e-1), 2^e) */
        s = ldexp(a, 11 - e);         /* the 10 fraction bits become the integer part */
    }
    return fabs(s - floor(s) - 0.5) <= ldexp(1.0, -12);
}

/* Does a mismatch between our and llama.cpp's legacy block come from a value
 * sitting exactly at a rounding boundary (where FMA contraction or another
 * evaluation order may legitimately tip it)? */
static int legacy_tie_explained(int32_t type, const float *x, const uint8_t *ours, const uint8_t *theirs)
{
    int has_min = type == DANU_TYPE_Q4_1 || type == DANU_TYPE_Q5_1;
    if (memcmp(ours, theirs, has_min ? 4 : 2)) {
        /* scale (or min) differs: explained only if that fp16 rounding is a tie */
        float amax = 0, max = 0, mn = INFINITY, mx = -INFINITY;
        for (int j = 0; j < 32; j++) {
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
            mn = fminf(mn, x[j]); mx = fmaxf(mx, x[j]);
        }
        float d = type == DANU_TYPE_Q4_0 ? max / -8 : type == DANU_TYPE_Q5_0 ? max / -16 :
                  type == DANU_TYPE_Q8_0 ? amax / 127 : type == DANU_TYPE_Q4_1 ? (mx - mn) / 15 : (mx - mn) / 31;
        return at_half_tie(d) || (has_min && at_half_tie(mn));
    }
    float mn = INFINITY;
    for (int j = 0; j < 32; j++) mn = fminf(mn, x[j]);
    for (int e = 0; e < 32; e++) {
        if (ref_elem(type, ours, e) == ref_elem(type, theirs, e)) continue;
        /* recompute the pre-rounding value exactly and test the boundary */
        double v;
        switch (type) {
        case DANU_TYPE_Q8_0: {
            float amax = 0; for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
            float id = 1.0f / (amax / 127);
            v = (double)x[e] * id;
            if (!near(v - floor(v), 0.5)) return 0;
            continue; }
        case DANU_TYPE_Q4_0: case DANU_TYPE_Q5_0: {
            float amax = 0, max = 0;
            for (int j = 0; j < 32; j++) if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
            float id = 1.0f / (max / (type == DANU_TYPE_Q4_0 ? -8.0f : -16.0f));
            v = (double)x[e] * id + (type == DANU_TYPE_Q4_0 ? 8.5 : 16.5);
            break; }
        default: {
            float mx = -INFINITY;
            for (int j = 0; j < 32; j++) mx = fmaxf(mx, x[j]);
            float id = 1.0f / ((mx - mn) / (type == DANU_TYPE_Q4_1 ? 15.0f : 31.0f));
            v = (double)(x[e] - mn) * id + 0.5;
            break; }
        }
        if (!near(v, floor(v + 0.5))) return 0;
    }
    return 1;
}

/* The tie detector itself: it must accept a flip at an exact tie and
 * reject a flip anywhere else, or the assertion built on it is hollow. */
START_TEST(test_tie_detector)
{
    float x[32];
    for (int j = 0; j < 32; j++) x[j] = (float)(j % 7) * 0.25f - 0.75f;
    x[0] = 127.0f;      /* d = 1, id = 1 exactly */
    x[5] = 2.5f;        /* x*id = 2.5: a roundf tie */
    dn_block_q8_0 ours, theirs;
    ck_assert_int_eq(dn_quantize_row(DANU_TYPE_Q8_0, x, &ours, 32), 0);
    ck_assert_int_eq(ours.qs[5], 3);
    theirs = ours;
    theirs.qs[5] = 2;
    ck_assert_int_eq(legacy_tie_explained(DANU_TYPE_Q8_0, x, (uint8_t *)&ours, (uint8_t *)&theirs), 1);
    theirs = ours;
    theirs.qs[6] ^= 1;  /* x = 0.25 * something, far from a .5 boundary */
    ck_assert_int_eq(legacy_tie_explained(DANU_TYPE_Q8_0, x, (uint8_t *)&ours, (uint8_t *)&theirs), 0);
    theirs = ours;
    theirs.d ^= 1;      /* d = 1.0 is exact in fp16: no tie */
    ck_assert_int_eq(legacy_tie_explained(DANU_TYPE_Q8_0, x, (uint8_t *)&ours, (uint8_t *)&theirs), 0);
    /* q4_0: x*id + 8.5 exactly an integer is the truncation boundary */
    for (int j = 0; j < 32; j++) x[j] = 0.1f * (float)(j % 3);
    x[1] = -8.0f;       /* d = 1, id = 1 */
    x[2] = 0.5f;        /* 0.5 + 8.5 = 9.0: boundary between 8 and 9 */
    dn_block_q4_0 o4, t4;
    ck_assert_int_eq(dn_quantize_row(DANU_TYPE_Q4_0, x, &o4, 32), 0);
    ck_assert_int_eq(o4.qs[2] & 15, 9);
    t4 = o4;
    t4.qs[2] = (uint8_t)((t4.qs[2] & 0xf0) | 8);
    ck_assert_int_eq(legacy_tie_explained(DANU_TYPE_Q4_0, x, (uint8_t *)&o4, (uint8_t *)&t4), 1);
    t4 = o4;
    t4.qs[3] ^= 1;
    ck_assert_int_eq(legacy_tie_explained(DANU_TYPE_Q4_0, x, (uint8_t *)&o4, (uint8_t *)&t4), 0);
}
END_TEST

typedef struct {
    int32_t type;
    int64_t blocks, identical, mismatch_tie, mismatch_other;
    double err_ours, err_theirs, sumsq;
} type_stats;

static type_stats *stats_for(type_stats *st, int *n, int32_t type)
{
    for (int k = 0; k < *n; k++) if (st[k].type == type) return &st[k];
    memset(&st[*n], 0, sizeof st[*n]);
    st[*n].type = type;
    return &st[(*n)++];
}

static void compare_file(const char *variant)
{
    char rel[128];
    snprintf(rel, sizeof rel, "gguf-llamacpp/tiny-q-%s.gguf", variant);
    size_t len = 0;
    uint8_t *data = tu_read(tu_data(rel), &len);
    ck_assert_msg(data != NULL, "cannot read %s", rel);
    dn_gguf *g = NULL;
    ck_assert_int_eq(dn_gguf_open(dn_alloc_libc(), data, len, rel, &g), DANU_OK);

    type_stats st[8];
    int n_st = 0, n_known = 0;
    float *src = malloc(TQ_FFN * sizeof *src), *yo = malloc(TQ_FFN * sizeof *yo), *yt = malloc(TQ_FFN * sizeof *yt);
    uint8_t *ours = malloc(TQ_FFN * 4);
    for (int64_t ti = 0; ti < dn_gguf_n_tensors(g); ti++) {
        const dn_tensor_desc *td = dn_gguf_tensor(g, ti);
        tq_source s;
        if (!tq_lookup(td->name, &s)) continue;
        n_known++;
        const int64_t cols = td->dims[td->n_dims - 1];
        const int64_t rows = td->n_dims == 2 ? td->dims[0] : 1;
        ck_assert(cols <= TQ_FFN);
        const uint64_t rb = dn_type_row_bytes(td->type, (uint64_t)cols);
        ck_assert_msg(rb > 0 && rb * (uint64_t)rows == td->nbytes, "%s: size", td->name);
        const dn_type_info *info = dn_type_get(td->type);
        const int bs = (int)info->block_size, ts = (int)info->type_size;
        type_stats *ts_ = stats_for(st, &n_st, td->type);
        for (int64_t r = 0; r < rows; r++) {
            const uint8_t *theirs = td->data + r * rb;
            tq_source_row(&s, r, cols, src);
            ck_assert_int_eq(dn_quantize_row(td->type, src, ours, cols), 0);
            ck_assert_int_eq(dn_dequantize_row(td->type, ours, yo, cols), 0);
            ck_assert_int_eq(dn_dequantize_row(td->type, theirs, yt, cols), 0);
            for (int64_t c = 0; c < cols; c++) {
                ts_->err_ours += ((double)yo[c] - src[c]) * ((double)yo[c] - src[c]);
                ts_->err_theirs += ((double)yt[c] - src[c]) * ((double)yt[c] - src[c]);
                ts_->sumsq += (double)src[c] * src[c];
            }
            const int nb = (int)(cols / bs);
            for (int k = 0; k < nb; k++) {
                const uint8_t *o = ours + k * ts, *t = theirs + k * ts;
                ts_->blocks++;
                if (!memcmp(o, t, (size_t)ts)) { ts_->identical++; continue; }
                if (is_legacy(td->type) && legacy_tie_explained(td->type, src + k * bs, o, t)) ts_->mismatch_tie++;
                else ts_->mismatch_other++;
            }
        }
    }
    ck_assert_int_eq(n_known, 3 + 9 * TQ_LAYERS);
    for (int k = 0; k < n_st; k++) {
        type_stats *x = &st[k];
        double ro = sqrt(x->err_ours / x->sumsq), rt = sqrt(x->err_theirs / x->sumsq);
        printf("tiny-q-%-7s %-5s blocks %7lld identical %7lld (%.4f%%) tie-mismatch %lld other %lld"
               "  relRMSE ours %.6e llama.cpp %.6e\n",
               variant, dn_type_get(x->type)->name, (long long)x->blocks, (long long)x->identical,
               100.0 * (double)x->identical / (double)x->blocks, (long long)x->mismatch_tie,
               (long long)x->mismatch_other, ro, rt);
        if (is_legacy(x->type) || !dn_type_get(x->type)->is_quantized) {
            ck_assert_msg(x->mismatch_other == 0, "%s %s: %lld blocks differ beyond rounding ties",
                          variant, dn_type_get(x->type)->name, (long long)x->mismatch_other);
        } else {
            ck_assert_msg(ro <= rt * 1.002, "%s %s: ours %g worse than llama.cpp %g",
                          variant, dn_type_get(x->type)->name, ro, rt);
            ck_assert_msg(x->identical >= x->blocks * 0.99, "%s %s: only %lld/%lld identical",
                          variant, dn_type_get(x->type)->name, (long long)x->identical, (long long)x->blocks);
        }
    }
    fflush(stdout);
    free(src); free(yo); free(yt); free(ours);
    dn_gguf_close(g);
    free(data);
}

static const char *const variants[] = { "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K_S", "Q4_K_M", "Q5_K_M", "Q6_K" };

START_TEST(test_llamacpp_blocks)
{
    compare_file(variants[_i]);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("quant");
    TCase *tc = tcase_create("formats");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_block_layout);
    tcase_add_test(tc, test_dequant_matches_definition);
    tcase_add_test(tc, test_synth_generator_checksums);
    tcase_add_test(tc, test_f16_bf16_rounding);
    tcase_add_test(tc, test_q8_activation_formats);
    tcase_add_test(tc, test_edge_cases);
    tcase_add_test(tc, test_round_trip_rmse);
    suite_add_tcase(s, tc);
    TCase *tl = tcase_create("llamacpp");
    tcase_set_timeout(tl, 300);
    tcase_add_test(tl, test_tie_detector);
    tcase_add_loop_test(tl, test_llamacpp_blocks, 0, (int)(sizeof variants / sizeof variants[0]));
    suite_add_tcase(s, tl);
    int failed = tu_run(s);
    return failed ? 1 : 0;
}
