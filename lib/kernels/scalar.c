/* scalar.c - portable C kernels: the DN_ISA_SCALAR table and the fallback
 * for every slot an ISA file leaves empty. Quantized weights meet
 * quantized activations (q4_0.q8_0, q4_1.q8_1, q4_K.q8_K, ...) and each
 * block is an exact integer dot product scaled once, as in ggml. */
#include <math.h>
#include "kernels/kernels_internal.h"

/* ---------------- activation quantizers ---------------- */

/* quant.c's reference quantizers (ggml's quantize_row_*_ref), the one
 * definition of each activation format: f32 copy, bf16, q8_0 (d = max|x|
 * / 127, q rounded half away from zero), q8_1 (q8_0 plus s = d * sum(q),
 * which folds the q4_1/q5_1 minimum into one multiply per block), q8_K
 * (float d from the signed extreme, q rounded to nearest even, bsums of
 * 16). The ISA quantizers are tested byte for byte against these. */
#define ACT_REF(NAME, TYPE) \
    static void dn_act_##NAME##_scalar(const float *x, void *out, int64_t n) \
    { (void)dn_quantize_row(TYPE, x, out, n); }
ACT_REF(f32, DANU_TYPE_F32)
ACT_REF(bf16, DANU_TYPE_BF16)
ACT_REF(q8_0, DANU_TYPE_Q8_0)
ACT_REF(q8_1, DN_TYPE_Q8_1)
ACT_REF(q8_K, DN_TYPE_Q8_K)
#undef ACT_REF

/* ---------------- float weights ---------------- */

static float dn_vec_dot_f32_f32_scalar(int64_t n, const void *w, const void *x)
{
    const float *a = w, *b = x;
    float s[4] = {0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int j = 0; j < 4; j++) s[j] += a[i + j] * b[i + j];
    for (; i < n; i++) s[0] += a[i] * b[i];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

/* f16 (f16 = 1) or bf16 weights */
static float dot_half(int f16, int64_t n, const uint16_t *a, const float *b)
{
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += (f16 ? dn_fp16_to_f32(a[i]) : dn_bf16_to_f32(a[i])) * b[i];
    return s;
}

static float dn_vec_dot_f16_f32_scalar(int64_t n, const void *w, const void *x) { return dot_half(1, n, w, x); }
static float dn_vec_dot_bf16_f32_scalar(int64_t n, const void *w, const void *x) { return dot_half(0, n, w, x); }

/* ---------------- 32-element blocks ---------------- */

/* Block i of a weight row as 32 integer quants in element order (element
 * j < 16 in the low nibble of qs[j], j + 16 in the high one, q5: the 5th
 * bit from bit j of qh), centred for the symmetric types, with its d and
 * m (0 for the types without a minimum). */
static void block32(int32_t type, const void *w, int64_t i, int v[32], float *d, float *m)
{
    const uint8_t *qs;
    uint32_t qh = 0;
    int bias = 0;
    *m = 0.0f;
    switch (type) {
    case DANU_TYPE_Q8_0: {
        const dn_block_q8_0 *b = (const dn_block_q8_0 *)w + i;
        *d = dn_fp16_to_f32(b->d);
        for (int j = 0; j < 32; j++) v[j] = b->qs[j];
        return;
    }
    case DANU_TYPE_Q4_0: {
        const dn_block_q4_0 *b = (const dn_block_q4_0 *)w + i;
        *d = dn_fp16_to_f32(b->d);
        qs = b->qs, bias = 8;
        break;
    }
    case DANU_TYPE_Q4_1: {
        const dn_block_q4_1 *b = (const dn_block_q4_1 *)w + i;
        *d = dn_fp16_to_f32(b->d), *m = dn_fp16_to_f32(b->m);
        qs = b->qs;
        break;
    }
    case DANU_TYPE_Q5_0: {
        const dn_block_q5_0 *b = (const dn_block_q5_0 *)w + i;
        *d = dn_fp16_to_f32(b->d);
        qs = b->qs, qh = dn_ld_u32(b->qh), bias = 16;
        break;
    }
    default: {
        const dn_block_q5_1 *b = (const dn_block_q5_1 *)w + i;
        *d = dn_fp16_to_f32(b->d), *m = dn_fp16_to_f32(b->m);
        qs = b->qs, qh = dn_ld_u32(b->qh);
        break;
    }
    }
    for (int j = 0; j < 16; j++) {
        v[j] = ((qs[j] & 0xF) | (int)(((qh >> j) & 1u) << 4)) - bias;
        v[j + 16] = ((qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4)) - bias;
    }
}

/* Against q8_0 (q4_0, q5_0, q8_0) or q8_1 (q4_1, q5_1: + m * s). */
static float dot32(int32_t type, int64_t n, const void *w, const void *x)
{
    const int with_min = type == DANU_TYPE_Q4_1 || type == DANU_TYPE_Q5_1;
    float s = 0.0f;
    for (int64_t i = 0; i < n / 32; i++) {
        int v[32];
        float dw, mw, dx, sx = 0.0f;
        const int8_t *q;
        block32(type, w, i, v, &dw, &mw);
        if (with_min) {
            const dn_block_q8_1 *b = (const dn_block_q8_1 *)x + i;
            q = b->qs, dx = dn_fp16_to_f32(b->d), sx = dn_fp16_to_f32(b->s);
        } else {
            const dn_block_q8_0 *b = (const dn_block_q8_0 *)x + i;
            q = b->qs, dx = dn_fp16_to_f32(b->d);
        }
        int sum = 0;
        for (int j = 0; j < 32; j++) sum += v[j] * q[j];
        float t = (float)sum * (dw * dx);
        if (with_min) t += mw * sx;
        s += t;
    }
    return s;
}

#define DOT32(W, A, T) \
    static float dn_vec_dot_##W##_##A##_scalar(int64_t n, const void *w, const void *x) \
    { return dot32(T, n, w, x); }
DOT32(q8_0, q8_0, DANU_TYPE_Q8_0)
DOT32(q4_0, q8_0, DANU_TYPE_Q4_0)
DOT32(q4_1, q8_1, DANU_TYPE_Q4_1)
DOT32(q5_0, q8_0, DANU_TYPE_Q5_0)
DOT32(q5_1, q8_1, DANU_TYPE_Q5_1)
#undef DOT32

/* ---------------- K-quants (256-element super-blocks) ---------------- */

/* q4_K and q5_K (the same head: d, dmin, packed scales; q5_K: the 5th bit
 * of element l of chunk c is bit 2c (low nibbles) or 2c + 1 (high) of qh[l]). */
static float dot_q45_K(int32_t type, int64_t n, const void *w, const void *x)
{
    const dn_block_q8_K *b = x;
    float s = 0.0f;
    for (int64_t i = 0; i < n / DN_QK_K; i++) {
        uint16_t d, dmin;
        const uint8_t *scales, *q, *qh = NULL;
        if (type == DANU_TYPE_Q4_K) {
            const dn_block_q4_K *a = (const dn_block_q4_K *)w + i;
            d = a->d, dmin = a->dmin, scales = a->scales, q = a->qs;
        } else {
            const dn_block_q5_K *a = (const dn_block_q5_K *)w + i;
            d = a->d, dmin = a->dmin, scales = a->scales, q = a->qs, qh = a->qh;
        }
        uint8_t sc[8], mn[8];
        dn_k_scales_mins(scales, sc, mn);
        const int8_t *y = b[i].qs;
        int sumi = 0, summ = 0;
        for (int c = 0; c < 4; c++, q += 32, y += 64) {
            int s0 = 0, s1 = 0;
            for (int l = 0; l < 32; l++) {
                const int h0 = qh ? ((qh[l] >> (2 * c)) & 1) << 4 : 0;
                const int h1 = qh ? ((qh[l] >> (2 * c + 1)) & 1) << 4 : 0;
                s0 += ((q[l] & 0xF) | h0) * y[l];
                s1 += ((q[l] >> 4) | h1) * y[l + 32];
            }
            sumi += sc[2 * c] * s0 + sc[2 * c + 1] * s1;
        }
        for (int j = 0; j < 8; j++) summ += mn[j] * (b[i].bsums[2 * j] + b[i].bsums[2 * j + 1]);
        s += b[i].d * (dn_fp16_to_f32(d) * (float)sumi - dn_fp16_to_f32(dmin) * (float)summ);
    }
    return s;
}

static float dn_vec_dot_q4_K_q8_K_scalar(int64_t n, const void *w, const void *x)
{
    return dot_q45_K(DANU_TYPE_Q4_K, n, w, x);
}

static float dn_vec_dot_q5_K_q8_K_scalar(int64_t n, const void *w, const void *x)
{
    return dot_q45_K(DANU_TYPE_Q5_K, n, w, x);
}

static float dn_vec_dot_q6_K_q8_K_scalar(int64_t n, const void *w, const void *x)
{
    const dn_block_q6_K *a = w;
    const dn_block_q8_K *b = x;
    float s = 0.0f;
    for (int64_t i = 0; i < n / DN_QK_K; i++) {
        const uint8_t *ql = a[i].ql, *qh = a[i].qh;
        const int8_t *sc = a[i].scales, *y = b[i].qs;
        int sumi = 0;
        /* two halves of 128; in each, 4 quarter-rows of 32 from ql nibbles
         * and 2-bit qh fields, 16 elements per scale */
        for (int h = 0; h < 2; h++, ql += 64, qh += 32, sc += 8, y += 128) {
            int sub[8] = {0};
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                sub[is + 0] += q1 * y[l];
                sub[is + 2] += q2 * y[l + 32];
                sub[is + 4] += q3 * y[l + 64];
                sub[is + 6] += q4 * y[l + 96];
            }
            for (int j = 0; j < 8; j++) sumi += sc[j] * sub[j];
        }
        s += b[i].d * dn_fp16_to_f32(a[i].d) * (float)sumi;
    }
    return s;
}

/* ---------------- elementwise ---------------- */

static void dn_rmsnorm_scalar(float *out, const float *x, const float *w, int64_t n, float eps)
{
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    const float scale = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

static void dn_silu_mul_scalar(float *gate, const float *up, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

static void dn_add_scalar(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

static float dn_max_scalar(const float *x, int64_t n)
{
    float m = x[0];
    for (int64_t i = 0; i < n; i++) {
        if (x[i] != x[i]) return x[i];
        if (x[i] > m) m = x[i];
    }
    return m;
}

static void dn_softmax_scalar(float *x, int64_t n)
{
    if (n <= 0) return;
    float max = x[0];
    for (int64_t i = 1; i < n; i++) max = fmaxf(max, x[i]);
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

/* ---- attention over the cache layout (kernels.h) ---------------------------- */

/* Element x of a K tile or V row as float (Q8: the integer; the scale is
 * applied once per score or per weight, as every table does). */
static inline float kv_elem(const void *base, size_t x, int type)
{
    if (type == DN_KV_F32) return ((const float *)base)[x];
    if (type == DN_KV_F16) return dn_fp16_to_f32(((const uint16_t *)base)[x]);
    return (float)((const int8_t *)base)[x];
}

/* Q8 scores of rows i0..i0+nq-1 of r for the run's keys in tile t */
static void att_q8_tile_scalar(int nq, const dn_att_q8 *r, int i0, const uint8_t *tile, int t, int lane, int nk,
                               const float *ksc, float *s, size_t ss)
{
    for (int l = 16 * t; l < 16 * t + 16; l++) {
        if (l < lane || l >= lane + nk) continue;   /* outside the run */
        for (int i = 0; i < nq; i++) {
            int32_t acc = 0;
            for (int d = 0; d < r->hd4; d++) acc += r->q[i0 + i][d] * ((int)tile[dn_kv_k_offset(DN_KV_Q8, d, l % 16)] - 128);
            s[(size_t)i * ss + (l - lane)] = ((float)acc * ksc[l]) * r->sc[i0 + i];
        }
    }
}

static void dn_att_scores_scalar(int hd, int nq, const float *q, size_t qs, const void *k, int lane, int nk, int type,
                                 const float *ksc, float *s, size_t ss)
{
    const size_t tb = dn_kv_tile_bytes(hd, type);
    if (type == DN_KV_Q8) {
#define TILE(NQ, R, I, T, S) att_q8_tile_scalar(NQ, R, I, (const uint8_t *)k + (size_t)(T) * tb, T, lane, nk, ksc, S, ss)
        DN_ATT_Q8_SCORES(TILE, dn_kv_quantize, hd, nq, q, qs, lane, nk, s, ss);
#undef TILE
        return;
    }
    const size_t eb = type == DN_KV_F32 ? 4 : 2;
    for (int j = 0; j < nk; j++) {
        const int l = lane + j;
        const uint8_t *tile = (const uint8_t *)k + (size_t)(l / DN_KV_TILE) * tb;
        for (int i = 0; i < nq; i++) {
            float acc = 0.0f;
            for (int d = 0; d < hd; d++)
                acc += q[(size_t)i * qs + d] * kv_elem(tile, dn_kv_k_offset(type, d, l % DN_KV_TILE) / eb, type);
            s[(size_t)i * ss + j] = acc;
        }
    }
}

static void dn_att_values_scalar(int hd, int nq, const float *p, size_t ps, const void *v, int nk, int type, float *out,
                                 size_t os)
{
    for (int j = 0; j < nk; j++)
        for (int i = 0; i < nq; i++) {
            const float w = p[(size_t)i * ps + j];
            for (int d = 0; d < hd; d++) out[(size_t)i * os + d] += w * kv_elem(v, (size_t)j * hd + d, type);
        }
}

static int64_t dn_att_q8_weights_scalar(const float *s, float m, const float *vsc, int n, float c, uint8_t *hi, uint8_t *lo)
{
    int64_t sum = 0;
    for (int j = 0; j < n; j++) {
        const float e = expf(s[j] - m), t = e * vsc[j] * c;
        const int32_t w = t < (float)DN_ATT_W_MAX ? dn_round_even(t) : DN_ATT_W_MAX;
        hi[j] = (uint8_t)(w >> DN_ATT_W_SHIFT);
        lo[j] = (uint8_t)(w & ((1 << DN_ATT_W_SHIFT) - 1));
        sum += dn_round_even(e * (float)(1 << DN_ATT_E_SHIFT));
    }
    return sum;
}

static void dn_att_q8_values_scalar(int hd, int nq, const uint8_t *w, size_t ws, const void *v, int lane, int nk,
                                    int64_t *acc)
{
    const int8_t *vt = v;
    for (int j = 0; j < nk; j++) {
        const int l = lane + j, at = lane % 4 + j;   /* tile lane, weight byte */
        const int8_t *tile = vt + (size_t)(l / DN_KV_TILE) * DN_KV_TILE * hd;
        for (int i = 0; i < nq; i++)
            for (int b = 0; b < 2; b++) {
                const int32_t wt = w[(size_t)(2 * i + b) * ws + at];
                int64_t *a = acc + (size_t)(2 * i + b) * hd;
                for (int d = 0; d < hd; d++) a[d] += wt * tile[dn_kv_v_offset(DN_KV_Q8, hd, d, l % DN_KV_TILE)];
            }
    }
}

const dn_kernels dn_kernels_scalar_table = {
    .isa = DN_ISA_SCALAR,
    .name = "scalar",
    .act_type = { DN_WEIGHT_TYPES(DN_ACT_ENTRY, f32) },
    .act_prepare = {
        [DANU_TYPE_F32] = dn_act_f32_scalar, [DANU_TYPE_BF16] = dn_act_bf16_scalar,
        [DANU_TYPE_Q8_0] = dn_act_q8_0_scalar, [DN_TYPE_Q8_1] = dn_act_q8_1_scalar, [DN_TYPE_Q8_K] = dn_act_q8_K_scalar,
    },
#define VEC_DOT(T, W, A) [T] = dn_vec_dot_##W##_##A##_scalar,
    .vec_dot = { DN_WEIGHT_TYPES(VEC_DOT, f32) },
#undef VEC_DOT
    .rmsnorm = dn_rmsnorm_scalar, .silu_mul = dn_silu_mul_scalar, .add = dn_add_scalar,
    .softmax = dn_softmax_scalar, .max = dn_max_scalar, .att_scores = dn_att_scores_scalar, .att_values = dn_att_values_scalar,
    .kv_quantize = dn_kv_quantize, .att_q8_weights = dn_att_q8_weights_scalar,
    .att_q8_values = dn_att_q8_values_scalar,
};
