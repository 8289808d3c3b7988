/* quant.c - scalar reference conversions between f32 and every storage type.
 *
 * Dequantize follows the GGUF block definitions. Quantize reproduces ggml's
 * quantize_row_*_ref bit for bit: same scale choice, same fp16 rounding of
 * the scales and the same order of float operations. That last point is why
 * expressions below are written out operation by operation and why this file
 * must be built without FMA contraction (the build uses -std=c11, which makes
 * GCC default to -ffp-contract=off; dn_quant gets no -m flags).
 *
 * Blocks are copied through local structs with memcpy so that rows may sit
 * at any alignment inside a mapped file. */
#include <math.h>
#include <float.h>
#include <string.h>
#include "quant/quant.h"
#include "common/bytes.h"

/* ------------------------------------------------------------------ */
/* Rounding helpers                                                    */
/* ------------------------------------------------------------------ */

/* Round to nearest, ties to even, for |v| <= 2^22: adding 1.5*2^23 pushes
 * the fraction out of the mantissa, which the FPU rounds in its default mode.
 * ggml's K-quant code rounds exactly this way (not with roundf). */
static inline int round_even(float v)
{
    float t = v + 12582912.0f;
    int32_t bits;
    memcpy(&bits, &t, sizeof bits);
    return (bits & 0x007fffff) - 0x00400000;
}

/* C conversion float -> int (truncation) without undefined behaviour for
 * NaN or out-of-range input, which only arise from non-finite data. */
static inline int trunc_int(float v)
{
    if (!(v > -2147483520.0f && v < 2147483520.0f)) return 0;
    return (int)v;
}

/* roundf to int8 the way ggml's q8 quantizers store it. */
static inline int8_t round_away_i8(float v)
{
    float r = roundf(v);
    if (!(r >= -128.0f && r <= 127.0f)) return r > 0 ? 127 : (r < 0 ? -128 : 0);
    return (int8_t)r;
}

static inline int clamp_int(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* ------------------------------------------------------------------ */
/* Dequantize                                                          */
/* ------------------------------------------------------------------ */

/* q4_0, q4_1, q5_0, q5_1: element j < 16 in the low nibble of qs[j], j + 16
 * in the high one; q5 takes the 5th bit of element j from bit j of qh.
 * Without a minimum q is centred (q - 8, q - 16): y = (q - bias) * d; with
 * one y = q * d + m. */
static void deq_32(int32_t type, const uint8_t *src, float *y, int64_t nb)
{
    const size_t bytes = dn_type_get(type)->type_size;
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const uint8_t *qs;
        uint32_t qh = 0;
        int bias = 0, has_m = 0;
        float d, m = 0.0f;
        union { dn_block_q4_0 q4_0; dn_block_q4_1 q4_1; dn_block_q5_0 q5_0; dn_block_q5_1 q5_1; } b;
        memcpy(&b, src + (size_t)i * bytes, bytes);
        switch (type) {
        case DANU_TYPE_Q4_0: d = dn_fp16_to_f32(b.q4_0.d), qs = b.q4_0.qs, bias = 8; break;
        case DANU_TYPE_Q4_1:
            d = dn_fp16_to_f32(b.q4_1.d), m = dn_fp16_to_f32(b.q4_1.m), qs = b.q4_1.qs, has_m = 1;
            break;
        case DANU_TYPE_Q5_0: d = dn_fp16_to_f32(b.q5_0.d), qs = b.q5_0.qs, qh = dn_rd_u32(b.q5_0.qh), bias = 16; break;
        default:
            d = dn_fp16_to_f32(b.q5_1.d), m = dn_fp16_to_f32(b.q5_1.m), qs = b.q5_1.qs, qh = dn_rd_u32(b.q5_1.qh);
            has_m = 1;
            break;
        }
        for (int j = 0; j < 16; j++) {
            const int lo = (qs[j] & 0x0f) | (int)(((qh >> j) & 1u) << 4);
            const int hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
            if (has_m) {
                y[j] = (float)lo * d + m;
                y[j + 16] = (float)hi * d + m;
            } else {
                y[j] = (float)(lo - bias) * d;
                y[j + 16] = (float)(hi - bias) * d;
            }
        }
    }
}

/* q8_0, q8_1: y = q * d (q8_1's s is not needed) */
static void deq_q8(int32_t type, const uint8_t *src, float *y, int64_t nb)
{
    const size_t bytes = dn_type_get(type)->type_size;
    for (int64_t i = 0; i < nb; i++, y += 32) {
        union { dn_block_q8_0 q8_0; dn_block_q8_1 q8_1; } b;
        memcpy(&b, src + (size_t)i * bytes, bytes);
        const int8_t *qs = type == DANU_TYPE_Q8_0 ? b.q8_0.qs : b.q8_1.qs;
        const float d = dn_fp16_to_f32(b.q8_0.d);   /* d leads both */
        for (int j = 0; j < 32; j++) y[j] = (float)qs[j] * d;
    }
}

/* Q4_K, Q5_K: 4 chunks of 64 elements; chunk c uses qs[32c..32c+31], low
 * nibbles for sub-block 2c, high nibbles for sub-block 2c+1. Q5_K adds a
 * 5th bit: element l of chunk c gets bit 2c (low half) or 2c+1 (high half)
 * of qh[l]. */
static void deq_q45_K(int32_t type, const uint8_t *src, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++) {
        /* the two structs share their head: d, dmin, scales */
        union { dn_block_q4_K q4; dn_block_q5_K q5; } b;
        const size_t bytes = type == DANU_TYPE_Q4_K ? sizeof b.q4 : sizeof b.q5;
        memcpy(&b, src + (size_t)i * bytes, bytes);
        const uint8_t *qs = type == DANU_TYPE_Q4_K ? b.q4.qs : b.q5.qs;
        const uint8_t *qh = type == DANU_TYPE_Q4_K ? NULL : b.q5.qh;
        const float d = dn_fp16_to_f32(b.q4.d), dmin = dn_fp16_to_f32(b.q4.dmin);
        uint8_t sc[8], mn[8];
        dn_k_scales_mins(b.q4.scales, sc, mn);
        for (int c = 0; c < 4; c++) {
            const uint8_t *q = qs + 32 * c;
            const float d1 = d * (float)sc[2 * c], m1 = dmin * (float)mn[2 * c];
            const float d2 = d * (float)sc[2 * c + 1], m2 = dmin * (float)mn[2 * c + 1];
            for (int l = 0; l < 32; l++) {
                const int v = (q[l] & 0x0f) | (qh ? ((qh[l] >> (2 * c)) & 1) << 4 : 0);
                *y++ = d1 * (float)v - m1;
            }
            for (int l = 0; l < 32; l++) {
                const int v = (q[l] >> 4) | (qh ? ((qh[l] >> (2 * c + 1)) & 1) << 4 : 0);
                *y++ = d2 * (float)v - m2;
            }
        }
    }
}

/* Q6_K: 2 halves of 128; in half h, element 32k+l (k = 0..3) takes its low
 * nibble from ql[64h + l + 32(k&1)] (low nibble for k<2, high for k>=2) and
 * its top 2 bits from qh[32h + l] bits 2k..2k+1; scale index 8h + 2k + l/16. */
static void deq_q6_K(const uint8_t *src, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++) {
        dn_block_q6_K b;
        memcpy(&b, src + i * (int64_t)sizeof b, sizeof b);
        const float d = dn_fp16_to_f32(b.d);
        for (int h = 0; h < 2; h++, y += 128) {
            const uint8_t *ql = b.ql + 64 * h, *qh = b.qh + 32 * h;
            const int8_t *sc = b.scales + 8 * h;
            for (int l = 0; l < 32; l++) {
                for (int k = 0; k < 4; k++) {
                    int lo = k < 2 ? (ql[l + 32 * k] & 0x0f) : (ql[l + 32 * (k - 2)] >> 4);
                    int q = (lo | (((qh[l] >> (2 * k)) & 3) << 4)) - 32;
                    y[32 * k + l] = d * (float)sc[2 * k + l / 16] * (float)q;
                }
            }
        }
    }
}

static void deq_q8_K(const uint8_t *src, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += DN_QK_K) {
        dn_block_q8_K b;
        memcpy(&b, src + i * (int64_t)sizeof b, sizeof b);
        for (int j = 0; j < DN_QK_K; j++) y[j] = b.d * (float)b.qs[j];
    }
}

int dn_dequantize_row(int32_t type, const void *src, float *dst, int64_t n)
{
    const dn_type_info *t = dn_type_get(type);
    if (!t || n < 0 || n % t->block_size) return -1;
    if (n == 0) return 0;
    if (!src || !dst) return -1;
    const uint8_t *s = src;
    const int64_t nb = n / t->block_size;
    switch (type) {
    case DANU_TYPE_F32: memcpy(dst, s, (size_t)n * sizeof(float)); return 0;
    case DANU_TYPE_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h; memcpy(&h, s + 2 * i, 2);
            dst[i] = dn_fp16_to_f32(h);
        }
        return 0;
    case DANU_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h; memcpy(&h, s + 2 * i, 2);
            dst[i] = dn_bf16_to_f32(h);
        }
        return 0;
    case DANU_TYPE_Q4_0:
    case DANU_TYPE_Q4_1:
    case DANU_TYPE_Q5_0:
    case DANU_TYPE_Q5_1: deq_32(type, s, dst, nb); return 0;
    case DANU_TYPE_Q8_0:
    case DN_TYPE_Q8_1:   deq_q8(type, s, dst, nb); return 0;
    case DANU_TYPE_Q4_K:
    case DANU_TYPE_Q5_K: deq_q45_K(type, s, dst, nb); return 0;
    case DANU_TYPE_Q6_K: deq_q6_K(s, dst, nb); return 0;
    case DN_TYPE_Q8_K:   deq_q8_K(s, dst, nb); return 0;
    default: return -1;
    }
}

/* ------------------------------------------------------------------ */
/* Quantize: 32-element types                                          */
/* ------------------------------------------------------------------ */

/* The element of largest magnitude, with its sign (first one on ties). */
static float signed_absmax(const float *x, int n)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
    }
    return max;
}

static void min_max(const float *x, int n, float *mn, float *mx)
{
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    *mn = lo; *mx = hi;
}

static float absmax(const float *x, int n)
{
    float amax = 0.0f;
    for (int j = 0; j < n; j++) amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
    return amax;
}

/* q4_0, q4_1, q5_0, q5_1 (ggml's quantize_row_q{4,5}_{0,1}_ref).
 * Symmetric (q4_0, q5_0): the largest-magnitude value maps to -8 / -16, so
 * d keeps the opposite sign of that value; q = trunc(x/d + 8.5 | 16.5).
 * With a minimum (q4_1, q5_1): d = (max - min) / 15 | 31, m = min,
 * q = trunc((x - m)/d + 0.5). q is capped at 15 | 31, except for q5_1,
 * which ggml stores uncapped. Element j < 16 goes to the low nibble of
 * qs[j], j + 16 to the high one (4-bit: stored unmasked, as ggml); q5
 * puts the 5th bit of element j in bit j of qh. */
static void quant_32(int32_t type, const float *x, uint8_t *dst, int64_t nb)
{
    const int five = type == DANU_TYPE_Q5_0 || type == DANU_TYPE_Q5_1;
    const int with_min = type == DANU_TYPE_Q4_1 || type == DANU_TYPE_Q5_1;
    const int nmax = five ? 31 : 15;
    const float add = with_min ? 0.5f : five ? 16.5f : 8.5f;
    const size_t bytes = dn_type_get(type)->type_size;
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float d, mn = 0.0f, mx;
        if (with_min) {
            min_max(x, 32, &mn, &mx);
            d = (mx - mn) / (float)nmax;
        } else {
            d = signed_absmax(x, 32) / (five ? -16.0f : -8.0f);
        }
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint8_t qs[16];
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            const float x0 = (with_min ? x[j] - mn : x[j]) * id;
            const float x1 = (with_min ? x[j + 16] - mn : x[j + 16]) * id;
            int q0 = trunc_int(x0 + add), q1 = trunc_int(x1 + add);
            if (type != DANU_TYPE_Q5_1) {
                q0 = clamp_int(q0, -128, nmax);
                q1 = clamp_int(q1, -128, nmax);
            }
            q0 &= 0xff, q1 &= 0xff;
            if (!five) {
                qs[j] = (uint8_t)(q0 | (q1 << 4));
                continue;
            }
            qs[j] = (uint8_t)((q0 & 0x0f) | ((q1 & 0x0f) << 4));
            qh |= (uint32_t)((q0 >> 4) & 1) << j;
            qh |= (uint32_t)((q1 >> 4) & 1) << (j + 16);
        }
        union { dn_block_q4_0 q4_0; dn_block_q4_1 q4_1; dn_block_q5_0 q5_0; dn_block_q5_1 q5_1; } b;
        const uint16_t dh = dn_f32_to_fp16(d);
        switch (type) {
        case DANU_TYPE_Q4_0: b.q4_0.d = dh, memcpy(b.q4_0.qs, qs, 16); break;
        case DANU_TYPE_Q4_1: b.q4_1.d = dh, b.q4_1.m = dn_f32_to_fp16(mn), memcpy(b.q4_1.qs, qs, 16); break;
        case DANU_TYPE_Q5_0: b.q5_0.d = dh, dn_wr_u32(b.q5_0.qh, qh), memcpy(b.q5_0.qs, qs, 16); break;
        default:
            b.q5_1.d = dh, b.q5_1.m = dn_f32_to_fp16(mn), dn_wr_u32(b.q5_1.qh, qh), memcpy(b.q5_1.qs, qs, 16);
            break;
        }
        memcpy(dst + (size_t)i * bytes, &b, bytes);
    }
}

/* q8_0: d = max|x| / 127, q = round(x / d) half away from zero; q8_1 adds
 * s = d * sum(q), with the unrounded d. */
static void quant_q8(int32_t type, const float *x, uint8_t *dst, int64_t nb)
{
    const size_t bytes = dn_type_get(type)->type_size;
    for (int64_t i = 0; i < nb; i++, x += 32) {
        const float d = absmax(x, 32) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        int8_t qs[32];
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            qs[j] = round_away_i8(x[j] * id);
            sum += qs[j];
        }
        union { dn_block_q8_0 q8_0; dn_block_q8_1 q8_1; } b;
        if (type == DANU_TYPE_Q8_0) {
            b.q8_0.d = dn_f32_to_fp16(d);
            memcpy(b.q8_0.qs, qs, 32);
        } else {
            b.q8_1.d = dn_f32_to_fp16(d);
            b.q8_1.s = dn_f32_to_fp16((float)sum * d);
            memcpy(b.q8_1.qs, qs, 32);
        }
        memcpy(dst + (size_t)i * bytes, &b, bytes);
    }
}

/* ------------------------------------------------------------------ */
/* Quantize: K types                                                   */
/* ------------------------------------------------------------------ */

/* Asymmetric fit of n values to x ~ scale*L - min_out, L in [0, nmax],
 * minimising the weighted squared error: start from the plain min/max grid,
 * then try nstep+1 slightly different grids, solve the 2x2 least-squares
 * system for (scale, min) on each and keep the best. Offset min is never
 * positive (so the min written out, -min, is >= 0). Returns scale. */
static float fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L,
                           float *min_out, float rmin, float rdelta, int nstep)
{
    uint8_t Ltry[32];
    float min = x[0], max = x[0];
    float sum_w = w[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *min_out = -min;
        return 0.0f;
    }
    float iscale = (float)nmax / (max - min);
    float scale = 1.0f / iscale;
    float best_err = 0.0f;
    for (int i = 0; i < n; i++) {
        int l = clamp_int(round_even(iscale * (x[i] - min)), 0, nmax);
        L[i] = (uint8_t)l;
        float diff = scale * (float)l + min - x[i];
        best_err += w[i] * (diff * diff);
    }
    /* As in ggml, each trial grid starts from the best offset found so far
     * (min is updated inside the loop), not from the data minimum. */
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
        for (int i = 0; i < n; i++) {
            int l = clamp_int(round_even(iscale * (x[i] - min)), 0, nmax);
            Ltry[i] = (uint8_t)l;
            const float fl = (float)l;
            sum_l += w[i] * fl;
            sum_l2 += w[i] * fl * fl;
            sum_xl += w[i] * fl * x[i];
        }
        const float det = sum_w * sum_l2 - sum_l * sum_l;
        if (det > 0) {
            float s = (sum_w * sum_xl - sum_x * sum_l) / det;
            float m = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if (m > 0) {
                m = 0;
                s = sum_xl / sum_l2;
            }
            float err = 0.0f;
            for (int i = 0; i < n; i++) {
                float diff = s * (float)Ltry[i] + m - x[i];
                err += w[i] * (diff * diff);
            }
            if (err < best_err) {
                memcpy(L, Ltry, (size_t)n);
                best_err = err;
                scale = s;
                min = m;
            }
        }
    }
    *min_out = -min;
    return scale;
}

/* Shared body of Q4_K and Q5_K: per 32-element sub-block fit (scale, min),
 * quantize the 8 scales and 8 mins to 6 bits against the super-block's
 * largest, then requantize every element against the stored scales.
 * L receives 0..nmax per element; scales/d/dmin are written to the block. */
static void k_fit_superblock(const float *x, int nmax, float rmin, int nstep,
                             uint8_t scales_out[DN_K_SCALE_SIZE], uint16_t *d_out,
                             uint16_t *dmin_out, uint8_t L[DN_QK_K])
{
    float scales[DN_QK_K / 32], mins[DN_QK_K / 32], w[32];
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < DN_QK_K / 32; j++) {
        const float *xs = x + 32 * j;
        float sum_x2 = 0.0f;
        for (int l = 0; l < 32; l++) sum_x2 += xs[l] * xs[l];
        const float av_x = sqrtf(sum_x2 / 32.0f);
        for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(xs[l]);
        scales[j] = fit_scale_min(32, nmax, xs, w, L + 32 * j, &mins[j], rmin, 0.1f, nstep);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    uint8_t ls[DN_QK_K / 32], lm[DN_QK_K / 32];
    for (int j = 0; j < DN_QK_K / 32; j++) {
        /* ggml stores the rounded value into a uint8_t, then caps it at 63 */
        ls[j] = (uint8_t)round_even(inv_scale * scales[j]);
        lm[j] = (uint8_t)round_even(inv_min * mins[j]);
        if (ls[j] > 63) ls[j] = 63;
        if (lm[j] > 63) lm[j] = 63;
    }
    dn_k_pack_scales(ls, lm, scales_out);
    *d_out = dn_f32_to_fp16(max_scale / 63.0f);
    *dmin_out = dn_f32_to_fp16(max_min / 63.0f);

    const float d_all = dn_fp16_to_f32(*d_out), dmin_all = dn_fp16_to_f32(*dmin_out);
    uint8_t sc[DN_QK_K / 32], mn[DN_QK_K / 32];
    dn_k_scales_mins(scales_out, sc, mn);
    for (int j = 0; j < DN_QK_K / 32; j++) {
        const float d = d_all * (float)sc[j];
        if (d == 0.0f) continue;   /* keep the fit's own L, as ggml does */
        const float dm = dmin_all * (float)mn[j];
        for (int l = 0; l < 32; l++)
            L[32 * j + l] = (uint8_t)clamp_int(round_even((x[32 * j + l] + dm) / d), 0, nmax);
    }
}

static void quant_q4_K(const float *x, uint8_t *dst, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += DN_QK_K) {
        dn_block_q4_K b;
        uint8_t L[DN_QK_K];
        k_fit_superblock(x, 15, -1.0f, 20, b.scales, &b.d, &b.dmin, L);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                b.qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
        memcpy(dst + i * (int64_t)sizeof b, &b, sizeof b);
    }
}

static void quant_q5_K(const float *x, uint8_t *dst, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += DN_QK_K) {
        dn_block_q5_K b;
        uint8_t L[DN_QK_K];
        k_fit_superblock(x, 31, -0.5f, 15, b.scales, &b.d, &b.dmin, L);
        memset(b.qh, 0, sizeof b.qh);
        for (int c = 0; c < 4; c++) {
            for (int l = 0; l < 32; l++) {
                const int lo = L[64 * c + l], hi = L[64 * c + 32 + l];
                b.qs[32 * c + l] = (uint8_t)((lo & 0x0f) | ((hi & 0x0f) << 4));
                b.qh[l] |= (uint8_t)(((lo >> 4) & 1) << (2 * c));
                b.qh[l] |= (uint8_t)(((hi >> 4) & 1) << (2 * c + 1));
            }
        }
        memcpy(dst + i * (int64_t)sizeof b, &b, sizeof b);
    }
}

/* Magnitude threshold under which a group counts as all zero (ggml's). */
#define GROUP_EPS 1e-15f

/* Symmetric fit of n values to x ~ scale*l, l in [-nmax, nmax-1], weights
 * x^2: the largest-magnitude value maps to -nmax; then 18 nearby grids are
 * tried and the one maximising (sum w x l)^2 / sum w l^2 wins, with its
 * least-squares scale. L receives l + nmax. Returns scale. */
static float fit_symmetric(int n, int nmax, const float *x, int8_t *L)
{
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > amax) { amax = fabsf(x[i]); max = x[i]; }
    }
    if (amax < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = (float)-nmax / max;
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; i++) {
        const int l = clamp_int(round_even(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        const float w = x[i] * x[i], fl = (float)l;
        sumlx += w * x[i] * fl;
        suml2 += w * fl * fl;
    }
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        sumlx = suml2 = 0.0f;
        for (int i = 0; i < n; i++) {
            const int l = clamp_int(round_even(iscale * x[i]), -nmax, nmax - 1);
            const float w = x[i] * x[i], fl = (float)l;
            sumlx += w * x[i] * fl;
            suml2 += w * fl * fl;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++)
                L[i] = (int8_t)(nmax + clamp_int(round_even(iscale * x[i]), -nmax, nmax - 1));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

static void quant_q6_K(const float *x, uint8_t *dst, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += DN_QK_K) {
        dn_block_q6_K b;
        int8_t L[DN_QK_K];
        float scales[DN_QK_K / 16];
        float max_scale = 0.0f, max_abs_scale = 0.0f;
        for (int j = 0; j < DN_QK_K / 16; j++) {
            scales[j] = fit_symmetric(16, 32, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > max_abs_scale) {
                max_abs_scale = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        memset(&b, 0, sizeof b);
        if (max_abs_scale < GROUP_EPS) {
            memcpy(dst + i * (int64_t)sizeof b, &b, sizeof b);
            continue;
        }
        const float iscale = -128.0f / max_scale;
        b.d = dn_f32_to_fp16(1.0f / iscale);
        for (int j = 0; j < DN_QK_K / 16; j++) {
            int s = round_even(iscale * scales[j]);
            /* ggml caps at 127 only; the int8 store wraps anything below -128 */
            b.scales[j] = (int8_t)(uint8_t)(s > 127 ? 127 : s);
        }
        const float d_all = dn_fp16_to_f32(b.d);
        for (int j = 0; j < DN_QK_K / 16; j++) {
            const float d = d_all * (float)b.scales[j];
            if (d == 0.0f) continue;   /* keep the fit's own L, as ggml does */
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (int8_t)(clamp_int(round_even(x[16 * j + l] / d), -32, 31) + 32);
        }
        for (int h = 0; h < 2; h++) {
            const int8_t *Lh = L + 128 * h;
            uint8_t *ql = b.ql + 64 * h, *qh = b.qh + 32 * h;
            for (int l = 0; l < 32; l++) {
                const int q0 = Lh[l], q1 = Lh[l + 32], q2 = Lh[l + 64], q3 = Lh[l + 96];
                ql[l] = (uint8_t)((q0 & 0x0f) | ((q2 & 0x0f) << 4));
                ql[l + 32] = (uint8_t)((q1 & 0x0f) | ((q3 & 0x0f) << 4));
                qh[l] = (uint8_t)(((q0 >> 4) & 3) | (((q1 >> 4) & 3) << 2) |
                                  (((q2 >> 4) & 3) << 4) | (((q3 >> 4) & 3) << 6));
            }
        }
        memcpy(dst + i * (int64_t)sizeof b, &b, sizeof b);
    }
}

/* Activations for K-type dot products: d is a plain float, the largest-
 * magnitude value maps to -127 (the cap at 127 only guards a rounding
 * overshoot), bsums = sums of 16. An all-zero block is all zeros here,
 * bsums included (ggml leaves its bsums unwritten). */
static void quant_q8_K(const float *x, uint8_t *dst, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += DN_QK_K) {
        dn_block_q8_K b;
        memset(&b, 0, sizeof b);
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < DN_QK_K; j++) {
            if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }
        }
        if (amax != 0.0f) {
            const float iscale = -127.0f / max;
            for (int j = 0; j < DN_QK_K; j++) {
                const int v = round_even(iscale * x[j]);
                b.qs[j] = (int8_t)(uint8_t)(v > 127 ? 127 : v);
            }
            for (int g = 0; g < DN_QK_K / 16; g++) {
                int sum = 0;
                for (int l = 0; l < 16; l++) sum += b.qs[16 * g + l];
                b.bsums[g] = (int16_t)sum;
            }
            b.d = 1.0f / iscale;
        }
        memcpy(dst + i * (int64_t)sizeof b, &b, sizeof b);
    }
}

int dn_quantize_row(int32_t type, const float *src, void *dst, int64_t n)
{
    const dn_type_info *t = dn_type_get(type);
    if (!t || n < 0 || n % t->block_size) return -1;
    if (n == 0) return 0;
    if (!src || !dst) return -1;
    uint8_t *d = dst;
    const int64_t nb = n / t->block_size;
    switch (type) {
    case DANU_TYPE_F32: memcpy(d, src, (size_t)n * sizeof(float)); return 0;
    case DANU_TYPE_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = dn_f32_to_fp16(src[i]);
            memcpy(d + 2 * i, &h, 2);
        }
        return 0;
    case DANU_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = dn_f32_to_bf16(src[i]);
            memcpy(d + 2 * i, &h, 2);
        }
        return 0;
    case DANU_TYPE_Q4_0:
    case DANU_TYPE_Q4_1:
    case DANU_TYPE_Q5_0:
    case DANU_TYPE_Q5_1: quant_32(type, src, d, nb); return 0;
    case DANU_TYPE_Q8_0:
    case DN_TYPE_Q8_1:   quant_q8(type, src, d, nb); return 0;
    case DANU_TYPE_Q4_K: quant_q4_K(src, d, nb); return 0;
    case DANU_TYPE_Q5_K: quant_q5_K(src, d, nb); return 0;
    case DANU_TYPE_Q6_K: quant_q6_K(src, d, nb); return 0;
    case DN_TYPE_Q8_K:   quant_q8_K(src, d, nb); return 0;
    default: return -1;
    }
}
