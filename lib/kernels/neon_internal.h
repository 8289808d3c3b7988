/* neon_internal.h - the AArch64 AdvSIMD kernels, included by neon.c
 * (baseline ARMv8-A, DN_NEON_DOT 0) and neon_dot.c (+dotprod, DN_NEON_DOT 1)
 * so the two tables differ only in the 8-bit dot product primitive.
 * Everything here is static; NEON_SUFFIX names the kernels.
 *
 * Quantized weights stay signed (q - 8, q - 16, q - 32 ...) since AArch64
 * multiplies signed bytes directly; every 8-bit dot product is exact in
 * int32 and each block (or K sub-block, through its integer scale) is
 * converted to float once, as in scalar.c. */
#ifndef DN_NEON_INTERNAL_H
#define DN_NEON_INTERNAL_H
#include <arm_neon.h>
#include "kernels/kernels_internal.h"

#define NCAT2(a, b) a##b
#define NCAT(a, b) NCAT2(a, b)
#define NK(name) NCAT(name, NEON_SUFFIX)

enum { MR = 4, MT = 4, GEMM_MAX = 24 };

/* ------------------------------------------------------------------ */
/* helpers                                                             */
/* ------------------------------------------------------------------ */

AI float fp16v(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return dn_fp16_to_f32(h);
}

/* acc + sum of products of 16 signed bytes, grouped in 4 int32 lanes. With
 * |a| <= 128 and |b| <= 127 (activations never reach -128) two products
 * fit int16 in the baseline path. */
AI int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b)
{
#if DN_NEON_DOT
    return vdotq_s32(acc, a, b);
#else
    int16x8_t p = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    p = vmlal_high_s8(p, a, b);
    return vpadalq_s16(acc, p);
#endif
}

/* ------------------------------------------------------------------ */
/* 32-element blocks                                                   */
/* ------------------------------------------------------------------ */

/* kinds, block sizes and field offsets: kernels_internal.h */

/* Bits 0..15 of h as 16 bytes of 0 / 0x10 (element j gets bit j). */
AI uint8x16_t hbits16(uint32_t h)
{
    static const uint8_t bit[16] = { 1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128 };
    const uint8x16_t v = vcombine_u8(vdup_n_u8((uint8_t)h), vdup_n_u8((uint8_t)(h >> 8)));
    return vandq_u8(vtstq_u8(v, vld1q_u8(bit)), vdupq_n_u8(0x10));
}

/* One weight block as two registers of signed values in element order. */
AI void unpack_block(int kind, const uint8_t *a, int8x16_t *lo, int8x16_t *hi)
{
    if (kind == K_Q8_0) {
        *lo = vld1q_s8((const int8_t *)a + wqs(kind));
        *hi = vld1q_s8((const int8_t *)a + wqs(kind) + 16);
        return;
    }
    const uint8x16_t q = vld1q_u8(a + wqs(kind));
    uint8x16_t l = vandq_u8(q, vdupq_n_u8(0x0F)), h = vshrq_n_u8(q, 4);
    if (kind == K_Q5_0 || kind == K_Q5_1) {
        const uint32_t qh = dn_ld_u32(a + wqh(kind));
        l = vorrq_u8(l, hbits16(qh));
        h = vorrq_u8(h, hbits16(qh >> 16));
    }
    const int bias = kind == K_Q4_0 ? 8 : kind == K_Q5_0 ? 16 : 0;
    *lo = vsubq_s8(vreinterpretq_s8_u8(l), vdupq_n_s8((int8_t)bias));
    *hi = vsubq_s8(vreinterpretq_s8_u8(h), vdupq_n_s8((int8_t)bias));
}

AI void tile32(int kind, int NR, int NT, int64_t n, const uint8_t *const *wp,
               const uint8_t *const *xp, float *out)
{
    const int WB = wbytes(kind), XB = xbytes(kind);
    float32x4_t F[MR][MT];
    float M[MR][MT];
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int t = 0; t < NT; t++) {
        F[r][t] = vdupq_n_f32(0.0f);
        M[r][t] = 0.0f;
    }
    for (int64_t b = 0; b < n / 32; b++) {
        int8x16_t xl[MT], xh[MT];
        float dx[MT], sx[MT];
        UNROLL for (int t = 0; t < NT; t++) {
            const uint8_t *x = xp[t] + b * XB;
            xl[t] = vld1q_s8((const int8_t *)x + xqs(kind));
            xh[t] = vld1q_s8((const int8_t *)x + xqs(kind) + 16);
            dx[t] = fp16v(x);
            sx[t] = has_min(kind) ? fp16v(x + DN_BLK_M) : 0.0f;
        }
        UNROLL for (int r = 0; r < NR; r++) {
            const uint8_t *w = wp[r] + b * WB;
            int8x16_t wl, wh;
            unpack_block(kind, w, &wl, &wh);
            const float dw = fp16v(w), mw = has_min(kind) ? fp16v(w + DN_BLK_M) : 0.0f;
            UNROLL for (int t = 0; t < NT; t++) {
                const int32x4_t s = dot16(dot16(vdupq_n_s32(0), wl, xl[t]), wh, xh[t]);
                F[r][t] = vfmaq_n_f32(F[r][t], vcvtq_f32_s32(s), dw * dx[t]);
                if (has_min(kind)) M[r][t] += mw * sx[t];
            }
        }
    }
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int t = 0; t < NT; t++)
        out[r * MT + t] = vaddvq_f32(F[r][t]) + M[r][t];
}

/* ------------------------------------------------------------------ */
/* K-quants                                                            */
/* ------------------------------------------------------------------ */

/* Sub-block j (32 elements; q6_K: two 16-element scale groups) as signed
 * bytes in element order. */
AI void k_sub(int kind, const uint8_t *w, int j, int8x16_t *lo, int8x16_t *hi)
{
    if (kind == K_Q6_K) {
        const int h = j / 4, k = j % 4;
        const uint8_t *ql = w + Q6K_QL + 64 * h + 32 * (k & 1), *qh = w + Q6K_QH + 32 * h;
        uint8x16_t l0 = vld1q_u8(ql), l1 = vld1q_u8(ql + 16);
        l0 = k < 2 ? vandq_u8(l0, vdupq_n_u8(0x0F)) : vshrq_n_u8(l0, 4);
        l1 = k < 2 ? vandq_u8(l1, vdupq_n_u8(0x0F)) : vshrq_n_u8(l1, 4);
        const int8x16_t sh = vdupq_n_s8((int8_t)(-2 * k));
        const uint8x16_t h0 = vandq_u8(vshlq_u8(vld1q_u8(qh), sh), vdupq_n_u8(3));
        const uint8x16_t h1 = vandq_u8(vshlq_u8(vld1q_u8(qh + 16), sh), vdupq_n_u8(3));
        *lo = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(l0, vshlq_n_u8(h0, 4))), vdupq_n_s8(32));
        *hi = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(l1, vshlq_n_u8(h1, 4))), vdupq_n_s8(32));
        return;
    }
    const uint8_t *qs = w + kqs(kind) + 32 * (j / 2);
    uint8x16_t l0 = vld1q_u8(qs), l1 = vld1q_u8(qs + 16);
    l0 = (j & 1) ? vshrq_n_u8(l0, 4) : vandq_u8(l0, vdupq_n_u8(0x0F));
    l1 = (j & 1) ? vshrq_n_u8(l1, 4) : vandq_u8(l1, vdupq_n_u8(0x0F));
    if (kind == K_Q5_K) {
        const uint8x16_t bit = vdupq_n_u8((uint8_t)(1u << j));
        l0 = vorrq_u8(l0, vandq_u8(vtstq_u8(vld1q_u8(w + Q5K_QH), bit), vdupq_n_u8(0x10)));
        l1 = vorrq_u8(l1, vandq_u8(vtstq_u8(vld1q_u8(w + Q5K_QH + 16), bit), vdupq_n_u8(0x10)));
    }
    *lo = vreinterpretq_s8_u8(l0);
    *hi = vreinterpretq_s8_u8(l1);
}

AI void tileK(int kind, int NR, int NT, int64_t n, const uint8_t *const *wp,
              const uint8_t *const *xp, float *out)
{
    const int WB = kbytes(kind);
    float acc[MR][MT];
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int t = 0; t < NT; t++) acc[r][t] = 0.0f;
    for (int64_t i = 0; i < n / DN_QK_K; i++) {
        int32x4_t I[MR][MT];
        int16_t sc[MR][16];
        int16x8_t mins[MR];
        float d[MR], dmin[MR];
        UNROLL for (int r = 0; r < NR; r++) {
            const uint8_t *w = wp[r] + i * WB;
            if (kind == K_Q6_K) {
                d[r] = fp16v(w + Q6K_D);
                dmin[r] = 0.0f;
                for (int j = 0; j < 16; j++) sc[r][j] = (int8_t)w[Q6K_SCALES + j];
                mins[r] = vdupq_n_s16(0);
            } else {
                uint8_t s8[8], m8[8];
                dn_k_scales_mins(w + KQ_SCALES, s8, m8);
                for (int j = 0; j < 8; j++) sc[r][j] = s8[j];
                mins[r] = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(m8)));
                d[r] = fp16v(w);
                dmin[r] = fp16v(w + KQ_DMIN);
            }
            UNROLL for (int t = 0; t < NT; t++) I[r][t] = vdupq_n_s32(0);
        }
        for (int j = 0; j < 8; j++) {
            int8x16_t xl[MT], xh[MT];
            UNROLL for (int t = 0; t < NT; t++) {
                const int8_t *x = (const int8_t *)xp[t] + i * Q8K_BYTES + Q8K_QS + 32 * j;
                xl[t] = vld1q_s8(x);
                xh[t] = vld1q_s8(x + 16);
            }
            UNROLL for (int r = 0; r < NR; r++) {
                int8x16_t wl, wh;
                k_sub(kind, wp[r] + i * WB, j, &wl, &wh);
                UNROLL for (int t = 0; t < NT; t++) {
                    if (kind == K_Q6_K) {
                        I[r][t] = vmlaq_n_s32(I[r][t], dot16(vdupq_n_s32(0), wl, xl[t]), sc[r][2 * j]);
                        I[r][t] = vmlaq_n_s32(I[r][t], dot16(vdupq_n_s32(0), wh, xh[t]), sc[r][2 * j + 1]);
                    } else {
                        I[r][t] = vmlaq_n_s32(I[r][t], dot16(dot16(vdupq_n_s32(0), wl, xl[t]), wh, xh[t]), sc[r][j]);
                    }
                }
            }
        }
        UNROLL for (int t = 0; t < NT; t++) {
            const uint8_t *x = xp[t] + i * Q8K_BYTES;
            float dx;
            memcpy(&dx, x, 4);
            int16_t bs[16];
            memcpy(bs, x + Q8K_BSUMS, 32);
            /* sums of the two 16-element halves of each sub-block */
            const int16x8_t b2 = vpaddq_s16(vld1q_s16(bs), vld1q_s16(bs + 8));
            UNROLL for (int r = 0; r < NR; r++) {
                const int32_t sumi = vaddvq_s32(I[r][t]);
                int32_t summ = 0;
                if (kind != K_Q6_K) {
                    const int32x4_t m = vmlal_high_s16(vmull_s16(vget_low_s16(mins[r]), vget_low_s16(b2)),
                                                       mins[r], b2);
                    summ = vaddvq_s32(m);
                }
                acc[r][t] += dx * (d[r] * (float)sumi - dmin[r] * (float)summ);
            }
        }
    }
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int t = 0; t < NT; t++) out[r * MT + t] = acc[r][t];
}

/* ------------------------------------------------------------------ */
/* float weights (f32 activations)                                     */
/* ------------------------------------------------------------------ */

AI float32x4_t load_w4(int kind, const uint8_t *w, int64_t j)
{
    if (kind == K_F32) return vld1q_f32((const float *)w + j);
    const uint16x4_t h = vld1_u16((const uint16_t *)(w + 2 * j));
    if (kind == K_F16) return vcvt_f32_f16(vreinterpret_f16_u16(h));
    return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
}

AI float load_w1(int kind, const uint8_t *w, int64_t j)
{
    if (kind == K_F32) { float f; memcpy(&f, w + 4 * j, 4); return f; }
    uint16_t h;
    memcpy(&h, w + 2 * j, 2);
    return kind == K_F16 ? dn_fp16_to_f32(h) : dn_bf16_to_f32(h);
}

AI void tileF(int kind, int NR, int NT, int64_t n, const uint8_t *const *wp,
              const uint8_t *const *xp, float *out)
{
    float32x4_t F[MR][MT];
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int t = 0; t < NT; t++) F[r][t] = vdupq_n_f32(0.0f);
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
        float32x4_t X[MT];
        UNROLL for (int t = 0; t < NT; t++) X[t] = vld1q_f32((const float *)xp[t] + j);
        UNROLL for (int r = 0; r < NR; r++) {
            const float32x4_t wv = load_w4(kind, wp[r], j);
            UNROLL for (int t = 0; t < NT; t++) F[r][t] = vfmaq_f32(F[r][t], wv, X[t]);
        }
    }
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int t = 0; t < NT; t++) {
        float s = vaddvq_f32(F[r][t]);
        for (int64_t k = j; k < n; k++) s += load_w1(kind, wp[r], k) * ((const float *)xp[t])[k];
        out[r * MT + t] = s;
    }
}

/* ------------------------------------------------------------------ */
/* entry points                                                        */
/* ------------------------------------------------------------------ */

#define NEON_DEFINE_TYPE(NAME, ATYPE, TILE, KIND, TR, TT, TV) \
    DN_DEFINE_TILED(NK(dn_vec_dot_##NAME##_##ATYPE##_), NK(dn_gemm_##NAME##_##ATYPE##_), TILE, KIND, TR, TT, TV)

NEON_DEFINE_TYPE(q4_0, q8_0, tile32, K_Q4_0, 2, 4, 4)
NEON_DEFINE_TYPE(q4_1, q8_1, tile32, K_Q4_1, 2, 4, 4)
NEON_DEFINE_TYPE(q5_0, q8_0, tile32, K_Q5_0, 2, 4, 4)
NEON_DEFINE_TYPE(q5_1, q8_1, tile32, K_Q5_1, 2, 4, 4)
NEON_DEFINE_TYPE(q8_0, q8_0, tile32, K_Q8_0, 2, 4, 4)
NEON_DEFINE_TYPE(q4_K, q8_K, tileK, K_Q4_K, 2, 2, 2)
NEON_DEFINE_TYPE(q5_K, q8_K, tileK, K_Q5_K, 2, 2, 2)
NEON_DEFINE_TYPE(q6_K, q8_K, tileK, K_Q6_K, 2, 2, 2)
NEON_DEFINE_TYPE(f32, f32, tileF, K_F32, 4, 4, 4)
NEON_DEFINE_TYPE(f16, f32, tileF, K_F16, 4, 4, 4)
NEON_DEFINE_TYPE(bf16, f32, tileF, K_BF16, 4, 4, 4)

/* ------------------------------------------------------------------ */
/* activation quantizers (byte-identical to quant.c's reference)     */
/* ------------------------------------------------------------------ */

/* 16 int32 (four registers) to 16 int8; values are within int8 already */
AI int8x16_t narrow16(int32x4_t a, int32x4_t b, int32x4_t c, int32x4_t d)
{
    const int16x8_t ab = vcombine_s16(vqmovn_s32(a), vqmovn_s32(b));
    const int16x8_t cd = vcombine_s16(vqmovn_s32(c), vqmovn_s32(d));
    return vcombine_s8(vqmovn_s16(ab), vqmovn_s16(cd));
}

/* q8_0 block: FCVTAS rounds half away from zero, exactly like roundf */
AI float q8_block32(const float *x, int8_t *qs, uint16_t *dh, int *sum)
{
    float32x4_t v[8], m = vdupq_n_f32(0.0f);
    for (int i = 0; i < 8; i++) {
        v[i] = vld1q_f32(x + 4 * i);
        m = vmaxq_f32(m, vabsq_f32(v[i]));
    }
    const float amax = vmaxvq_f32(m);
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    int32x4_t q[8];
    int32x4_t s = vdupq_n_s32(0);
    for (int i = 0; i < 8; i++) {
        q[i] = vcvtaq_s32_f32(vmulq_n_f32(v[i], id));
        s = vaddq_s32(s, q[i]);
    }
    vst1q_s8(qs, narrow16(q[0], q[1], q[2], q[3]));
    vst1q_s8(qs + 16, narrow16(q[4], q[5], q[6], q[7]));
    *dh = dn_f32_to_fp16(d);
    if (sum) *sum = vaddvq_s32(s);
    return d;
}

static void NK(dn_act_q8_0_)(const float *x, void *out, int64_t n)
{
    dn_block_q8_0 *y = out;
    for (int64_t b = 0; b < n / 32; b++) q8_block32(x + 32 * b, y[b].qs, &y[b].d, NULL);
}

static void NK(dn_act_q8_1_)(const float *x, void *out, int64_t n)
{
    dn_block_q8_1 *y = out;
    for (int64_t b = 0; b < n / 32; b++) {
        int sum;
        const float d = q8_block32(x + 32 * b, y[b].qs, &y[b].d, &sum);
        y[b].s = dn_f32_to_fp16((float)sum * d);
    }
}

/* q8_K: FCVTNS rounds to nearest even, as quant.c's round_even */
static void NK(dn_act_q8_K_)(const float *x, void *out, int64_t n)
{
    dn_block_q8_K *y = out;
    for (int64_t b = 0; b < n / DN_QK_K; b++, x += DN_QK_K) {
        float32x4_t m = vdupq_n_f32(0.0f);
        for (int j = 0; j < DN_QK_K; j += 4) m = vmaxq_f32(m, vabsq_f32(vld1q_f32(x + j)));
        const float amax = vmaxvq_f32(m);
        if (amax == 0.0f) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        float max = 0.0f;
        for (int j = 0; j < DN_QK_K; j++)
            if (fabsf(x[j]) == amax) { max = x[j]; break; }
        const float iscale = -127.0f / max;
        for (int g = 0; g < DN_QK_K / 16; g++) {
            int32x4_t q[4];
            for (int i = 0; i < 4; i++)
                q[i] = vminq_s32(vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + 16 * g + 4 * i), iscale)),
                                 vdupq_n_s32(127));
            vst1q_s8(y[b].qs + 16 * g, narrow16(q[0], q[1], q[2], q[3]));
            y[b].bsums[g] = (int16_t)vaddvq_s32(vaddq_s32(vaddq_s32(q[0], q[1]), vaddq_s32(q[2], q[3])));
        }
        y[b].d = 1.0f / iscale;
    }
}

/* ------------------------------------------------------------------ */
/* elementwise                                                         */
/* ------------------------------------------------------------------ */

/* e^x to ~1 ulp (same scheme as the x86 files): x = n ln2 + r, degree-7
 * Taylor in r, 2^n as two exponent-field factors (denormals, inf). */
AI float32x4_t exp4(float32x4_t x)
{
    x = vmaxq_f32(vminq_f32(x, vdupq_n_f32(89.0f)), vdupq_n_f32(-104.0f));
    const float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693145751953125f));
    r = vfmsq_f32(r, n, vdupq_n_f32(1.428606765330187e-06f));
    float32x4_t p = vdupq_n_f32(1.0f / 5040);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 720), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 120), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 24), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 6), p, r);
    p = vfmaq_f32(vdupq_n_f32(0.5f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    const int32x4_t ni = vcvtq_s32_f32(n);
    const int32x4_t n1 = vshrq_n_s32(ni, 1), n2 = vsubq_s32(ni, n1);
    const float32x4_t f1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n1, vdupq_n_s32(127)), 23));
    const float32x4_t f2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n2, vdupq_n_s32(127)), 23));
    return vmulq_f32(vmulq_f32(p, f1), f2);
}

/* The scalar tails of these loops handle n % 4 elements the same way. */
static void NK(dn_rmsnorm_)(float *out, const float *x, const float *w, int64_t n, float eps)
{
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float32x4_t a = vld1q_f32(x + i), b = vld1q_f32(x + i + 4);
        s0 = vfmaq_f32(s0, a, a);
        s1 = vfmaq_f32(s1, b, b);
    }
    float ss = vaddvq_f32(vaddq_f32(s0, s1));
    for (; i < n; i++) ss += x[i] * x[i];
    const float scale = (float)(1.0 / sqrt((double)ss / (double)n + (double)eps));
    for (i = 0; i + 4 <= n; i += 4)
        vst1q_f32(out + i, vmulq_f32(vmulq_n_f32(vld1q_f32(x + i), scale), vld1q_f32(w + i)));
    for (; i < n; i++) out[i] = x[i] * scale * w[i];
}

static void NK(dn_silu_mul_)(float *gate, const float *up, int64_t n)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t g = vld1q_f32(gate + i);
        const float32x4_t s = vdivq_f32(g, vaddq_f32(vdupq_n_f32(1.0f), exp4(vnegq_f32(g))));
        vst1q_f32(gate + i, vmulq_f32(s, vld1q_f32(up + i)));
    }
    if (i < n) {
        float g[4] = { 0 }, u[4] = { 0 };
        memcpy(g, gate + i, sizeof(float) * (size_t)(n - i));
        memcpy(u, up + i, sizeof(float) * (size_t)(n - i));
        const float32x4_t gv = vld1q_f32(g);
        const float32x4_t s = vdivq_f32(gv, vaddq_f32(vdupq_n_f32(1.0f), exp4(vnegq_f32(gv))));
        vst1q_f32(g, vmulq_f32(s, vld1q_f32(u)));
        memcpy(gate + i, g, sizeof(float) * (size_t)(n - i));
    }
}

static void NK(dn_add_)(float *y, const float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vaddq_f32(vld1q_f32(y + i), vld1q_f32(x + i)));
    for (; i < n; i++) y[i] += x[i];
}

/* FMAX gives NaN when either input is one, so a NaN reaches the result. */
static float NK(dn_max_)(const float *x, int64_t n)
{
    float r = x[0];
    int64_t i = 0;
    if (n >= 4) {
        float32x4_t m = vld1q_f32(x);
        for (i = 4; i + 4 <= n; i += 4) m = vmaxq_f32(m, vld1q_f32(x + i));
        r = vmaxvq_f32(m);
    }
    for (; i < n; i++) r = x[i] != x[i] || r != r ? NAN : x[i] > r ? x[i] : r;
    return r;
}

static void NK(dn_softmax_)(float *x, int64_t n)
{
    if (n <= 0) return;
    const float max = NK(dn_max_)(x, n);
    int64_t i;
    float32x4_t s = vdupq_n_f32(0.0f);
    for (i = 0; i + 4 <= n; i += 4) {
        const float32x4_t e = exp4(vsubq_f32(vld1q_f32(x + i), vdupq_n_f32(max)));
        s = vaddq_f32(s, e);
        vst1q_f32(x + i, e);
    }
    float sum = vaddvq_f32(s);
    if (i < n) {
        float t[4] = { 0 };
        memcpy(t, x + i, sizeof(float) * (size_t)(n - i));
        float32x4_t e = exp4(vsubq_f32(vld1q_f32(t), vdupq_n_f32(max)));
        vst1q_f32(t, e);
        for (int64_t k = 0; k < n - i; k++) sum += t[k];
        memcpy(x + i, t, sizeof(float) * (size_t)(n - i));
    }
    const float inv = (float)(1.0 / (double)sum);
    for (i = 0; i + 4 <= n; i += 4) vst1q_f32(x + i, vmulq_n_f32(vld1q_f32(x + i), inv));
    for (; i < n; i++) x[i] *= inv;
}

static void NK(dn_act_bf16_)(const float *x, void *out, int64_t n)
{
    uint16_t *y = out;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        /* round to nearest even on the integer bits, NaN kept quiet */
        const uint32x4_t u = vreinterpretq_u32_f32(vld1q_f32(x + i));
        const uint32x4_t lsb = vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1));
        uint32x4_t r = vshrq_n_u32(vaddq_u32(vaddq_u32(u, vdupq_n_u32(0x7fff)), lsb), 16);
        const uint32x4_t nan = vcgtq_u32(vandq_u32(u, vdupq_n_u32(0x7fffffff)), vdupq_n_u32(0x7f800000));
        r = vbslq_u32(nan, vorrq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(0x40)), r);
        vst1_u16(y + i, vmovn_u32(r));
    }
    for (; i < n; i++) y[i] = dn_f32_to_bf16(x[i]);
}

#include "kernels/neon_attn.h"

/* The x16 entries (activation types, gemms, the loader's repack map):
 * neon_dot.c defines them from neon_x16.h; baseline NEON has none. */
#ifndef NEON_X16_ACT
#define NEON_X16_ACT
#define NEON_X16_GEMM
#define NEON_X16_REPACK
#endif
#define NEON_VEC_DOT(T, W, A) [T] = NK(dn_vec_dot_##W##_##A##_),
#define NEON_GEMM(T, W, A) [T] = NK(dn_gemm_##W##_##A##_),
#define NEON_TABLE(ISA, NAME) { \
    .isa = ISA, \
    .name = NAME, \
    .act_type = { DN_WEIGHT_TYPES(DN_ACT_ENTRY, f32) NEON_X16_ACT }, \
    .act_prepare = { \
        [DANU_TYPE_BF16] = NK(dn_act_bf16_), [DANU_TYPE_Q8_0] = NK(dn_act_q8_0_), \
        [DN_TYPE_Q8_1] = NK(dn_act_q8_1_), [DN_TYPE_Q8_K] = NK(dn_act_q8_K_), \
    }, \
    .vec_dot = { DN_WEIGHT_TYPES(NEON_VEC_DOT, f32) }, \
    .gemm = { DN_WEIGHT_TYPES(NEON_GEMM, f32) NEON_X16_GEMM }, \
    .repack = { NEON_X16_REPACK }, \
    .gemm_nr = GEMM_MAX, .gemm_nt = GEMM_MAX, \
    .rmsnorm = NK(dn_rmsnorm_), .silu_mul = NK(dn_silu_mul_), .add = NK(dn_add_), \
    .softmax = NK(dn_softmax_), .max = NK(dn_max_), \
    .att_scores = NK(dn_att_scores_), .att_values = NK(dn_att_values_), \
    .att_q8_weights = NK(dn_att_q8_weights_), \
    .att_q8_values = NK(dn_att_q8_values_), \
}
#endif
