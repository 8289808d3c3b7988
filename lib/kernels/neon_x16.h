/* neon_x16.h - gemm kernels for the row-interleaved weights q4_0x16,
 * q8_0x16, q4_Kx16 and q6_Kx16 (layouts in quant/repack.c) on AArch64,
 * included by neon_dot.c (SDOT) and neon_i8mm.c (DN_NEON_I8MM 1: SMMLA
 * for groups of 4 tokens, SDOT for the 1..3 left). Everything static.
 *
 * Both use the x86 x16 bytes as they are, so the loader's repack is the
 * same on every ISA:
 *  - SDOT by element: 16 bytes of a 64-byte chunk hold 4 weights of 4
 *    rows (a "quad"); vdotq_laneq_s32 against lane k of 16 activation
 *    bytes adds 4 products into each row's int32 lane, so one activation
 *    load serves 4 chunks and no horizontal sums are needed.
 *  - SMMLA wants 2 rows x 8 consecutive bytes: zip1/zip2 (32-bit) of the
 *    same quad of two consecutive chunks is exactly that, one instruction
 *    per register shared by all tokens of the tile. The 2 x 2 result
 *    [r.t0, r.t1, r'.t0, r'.t1] keeps that order through the float steps
 *    (scales duplicated to match) and is transposed once at the end.
 * The integer sums are exact, and per block (q4_0, q8_0) or super-block
 * (q4_K, q6_K) the float steps are scalar.c's, unfused (the build's
 * -std=c11 keeps GCC from contracting here and in scalar.c), in its order: (float)sum * (d_w * d_x) added to the row's
 * sum; q4_K d_x * (d * I - dmin * M); q6_K (d_x * d) * I. So every tile
 * shape, and either instruction, gives the scalar per-block fallback's
 * bits (tests/test_x16_neon.c compares them with memcmp). */
#ifndef DN_NEON_X16_H
#define DN_NEON_X16_H
#include <arm_neon.h>
#include "kernels/kernels_internal.h"

#ifndef DN_NEON_I8MM
#define DN_NEON_I8MM 0
#endif

enum { XQ4_0, XQ8_0, XQ4_K, XQ6_K };
/* tokens per SDOT tile (16 rows: F is 4 x XT registers) and token pairs
 * per SMMLA tile */
enum { XT_MAX = 4, XT_32 = 4, XT_K = 2, XP_MAX = 2 };
enum { Q80_BYTES = sizeof(dn_block_q8_0), Q80_QS = offsetof(dn_block_q8_0, qs) };
/* K-quant quads and sub-block loops stay rolled: GCC otherwise flattens a
 * whole super-block and spills (q4_K, one token: 231 stores a column) */
#define NOUNROLL _Pragma("GCC unroll 1")

AI int x16_col_bytes(int kind)
{
    return kind == XQ4_0 ? (int)sizeof(dn_block_q4_0x16) : kind == XQ8_0 ? (int)sizeof(dn_block_q8_0x16)
         : kind == XQ4_K ? Q4X : Q6X;
}
AI int x16_block_elems(int kind) { return kind == XQ4_0 || kind == XQ8_0 ? 32 : DN_QK_K; }
AI int x16_act_bytes(int kind) { return kind == XQ4_0 || kind == XQ8_0 ? Q80_BYTES : Q8K_BYTES; }

/* ---- helpers (lanes as literals: valid at any optimization level) ---- */

/* a + chunks w[0..3] of one quad against activation lanes 0..3 of x */
AI int32x4_t dot4l(int32x4_t a, const int8x16_t *w, int8x16_t x)
{
    a = vdotq_laneq_s32(a, w[0], x, 0);
    a = vdotq_laneq_s32(a, w[1], x, 1);
    a = vdotq_laneq_s32(a, w[2], x, 2);
    return vdotq_laneq_s32(a, w[3], x, 3);
}

AI int32x4_t mlal_lane8(int32x4_t acc, int16x4_t a, int16x8_t v, int l)
{
    switch (l) {
    case 0: return vmlal_laneq_s16(acc, a, v, 0);
    case 1: return vmlal_laneq_s16(acc, a, v, 1);
    case 2: return vmlal_laneq_s16(acc, a, v, 2);
    case 3: return vmlal_laneq_s16(acc, a, v, 3);
    case 4: return vmlal_laneq_s16(acc, a, v, 4);
    case 5: return vmlal_laneq_s16(acc, a, v, 5);
    case 6: return vmlal_laneq_s16(acc, a, v, 6);
    default: return vmlal_laneq_s16(acc, a, v, 7);
    }
}

AI int8x16_t s8(uint8x16_t v) { return vreinterpretq_s8_u8(v); }
AI int8x16_t ld_s8(const uint8_t *p) { return vreinterpretq_s8_u8(vld1q_u8(p)); }
/* 4 bytes at any address in the low half */
AI uint8x8_t ld4b(const uint8_t *p) { return vreinterpret_u8_u32(vdup_n_u32(dn_ld_u32(p))); }
/* 4 unsigned / signed bytes widened */
AI int32x4_t u8x4_s32(const uint8_t *p)
{
    return vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(vmovl_u8(ld4b(p)))));
}
AI int16x4_t s8x4_s16(const uint8_t *p) { return vget_low_s16(vmovl_s8(vreinterpret_s8_u8(ld4b(p)))); }
AI int16x4_t u8x4_s16(const uint8_t *p) { return vreinterpret_s16_u16(vget_low_u16(vmovl_u8(ld4b(p)))); }
/* 16 fp16 at p (any address) as 4 x 4 floats */
AI void ld_h16(const uint8_t *p, float32x4_t out[4])
{
    const float16x8_t a = vreinterpretq_f16_u8(vld1q_u8(p)), b = vreinterpretq_f16_u8(vld1q_u8(p + 16));
    out[0] = vcvt_f32_f16(vget_low_f16(a));
    out[1] = vcvt_high_f32_f16(a);
    out[2] = vcvt_f32_f16(vget_low_f16(b));
    out[3] = vcvt_high_f32_f16(b);
}
/* one fp16 (exact, as dn_fp16_to_f32) */
AI float h2f(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}
AI float ldf(const uint8_t *p) { float f; memcpy(&f, p, 4); return f; }
/* q8_K bsums as int16 (16) */
AI void ld_bsums(const uint8_t *xb, int16x8_t b[2])
{
    b[0] = vreinterpretq_s16_u8(vld1q_u8(xb + Q8K_BSUMS));
    b[1] = vreinterpretq_s16_u8(vld1q_u8(xb + Q8K_BSUMS + 16));
}

/* q4_0x16 chunk bytes as signed nibbles times 16: x ^ 0x88 holds v - 8 in
 * two's complement per nibble; shl 4 / and 0xF0 move it to the top */
AI void q4_nib(uint8x16_t raw, int8x16_t *lo, int8x16_t *hi)
{
    const uint8x16_t v = veorq_u8(raw, vdupq_n_u8(0x88));
    *lo = s8(vshlq_n_u8(v, 4));
    *hi = s8(vandq_u8(v, vdupq_n_u8(0xF0)));
}

/* q6_Kx16: the four 6-bit codes (0..63) of ql bytes L1 (chunk 16H + m),
 * L2 (16H + 8 + m) and qh byte Q (8H + m): elements 128H + 32qd + 4m.. for
 * qd = 0..3 (q1..q4 of scalar.c) */
AI void q6_codes(uint8x16_t L1, uint8x16_t L2, uint8x16_t Q, uint8x16_t out[4])
{
    const uint8x16_t m33 = vdupq_n_u8(0x33);
    const uint8x16_t qa = vandq_u8(Q, m33), qb = vandq_u8(vshrq_n_u8(Q, 2), m33);
    out[0] = vsliq_n_u8(L1, qa, 4);   /* low nibble | bits 0,1 << 4 */
    out[1] = vsliq_n_u8(L2, qb, 4);   /* low nibble | bits 2,3 << 4 */
    out[2] = vsriq_n_u8(qa, L1, 4);   /* high nibble | bits 4,5 */
    out[3] = vsriq_n_u8(qb, L2, 4);   /* high nibble | bits 6,7 */
}

/* ------------------------------------------------------------------ */
/* SDOT: one column of a row group against NT tokens, F[quad][token]   */
/* ------------------------------------------------------------------ */

AI void col_dot(int kind, int NT, const uint8_t *c, const uint8_t *const *xb, float32x4_t F[4][XT_MAX])
{
    if (kind == XQ4_0 || kind == XQ8_0) {
        int8x16_t xa[XT_MAX], xc[XT_MAX];
        float dx[XT_MAX];
        UNROLL for (int t = 0; t < NT; t++) {
            xa[t] = ld_s8(xb[t] + Q80_QS);
            xc[t] = ld_s8(xb[t] + Q80_QS + 16);
            dx[t] = h2f(xb[t]);
        }
        float32x4_t DW[4];
        ld_h16(c, DW);
        UNROLL for (int q = 0; q < 4; q++) {
            int8x16_t wa[4], wc[4];
            UNROLL for (int k = 0; k < 4; k++) {
                if (kind == XQ4_0) {
                    /* chunk k: low nibbles elements 4k.., high ones 16 + 4k.. */
                    q4_nib(vld1q_u8(c + X_QS + 64 * k + 16 * q), &wa[k], &wc[k]);
                } else {
                    wa[k] = s8(veorq_u8(vld1q_u8(c + X_QS + 64 * k + 16 * q), vdupq_n_u8(0x80)));
                    wc[k] = s8(veorq_u8(vld1q_u8(c + X_QS + 64 * (k + 4) + 16 * q), vdupq_n_u8(0x80)));
                }
            }
            UNROLL for (int t = 0; t < NT; t++) {
                const int32x4_t S = dot4l(dot4l(vdupq_n_s32(0), wa, xa[t]), wc, xc[t]);
                /* q4_0 sums are 16x: scvtf #4 divides exactly */
                const float32x4_t s = kind == XQ4_0 ? vcvtq_n_f32_s32(S, 4) : vcvtq_f32_s32(S);
                F[q][t] = vaddq_f32(F[q][t], vmulq_f32(s, vmulq_n_f32(DW[q], dx[t])));
            }
        }
        return;
    }
    float dx[XT_MAX];
    int16x8_t bs[XT_MAX][2];
    UNROLL for (int t = 0; t < NT; t++) {
        dx[t] = ldf(xb[t]);
        ld_bsums(xb[t], bs[t]);
    }
    float32x4_t D[4];
    ld_h16(c, D);
    if (kind == XQ4_K) {
        float32x4_t DM[4];
        ld_h16(c + Q4X_DMIN, DM);
        int16x8_t b2[XT_MAX];   /* bsums of each 32-element sub-block */
        UNROLL for (int t = 0; t < NT; t++) b2[t] = vpaddq_s16(bs[t][0], bs[t][1]);
        NOUNROLL for (int q = 0; q < 4; q++) {
            int32x4_t I[XT_MAX], M[XT_MAX];
            UNROLL for (int t = 0; t < NT; t++) I[t] = M[t] = vdupq_n_s32(0);
            /* pointers, not int offsets: GCC keeps constant immediates */
            const uint8_t *qs = c + Q4X_QS + 16 * q, *scp = c + Q4X_SC + 4 * q, *xo[XT_MAX];
            UNROLL for (int t = 0; t < NT; t++) xo[t] = xb[t] + Q8K_QS;
            NOUNROLL for (int jp = 0; jp < 4; jp++, qs += 512, scp += 32) {
                /* sub-blocks 2jp (low nibbles) and 2jp + 1 (high) of chunks 8jp.. */
                int8x16_t lo[8], hi[8];
                UNROLL for (int i = 0; i < 8; i++) {
                    const uint8x16_t r = vld1q_u8(qs + 64 * i);
                    lo[i] = s8(vandq_u8(r, vdupq_n_u8(0x0F)));
                    hi[i] = s8(vshrq_n_u8(r, 4));
                }
                const int32x4_t s0 = u8x4_s32(scp), s1 = u8x4_s32(scp + 16);
                UNROLL for (int t = 0; t < NT; t++) {
                    const uint8_t *x = xo[t] + 64 * jp;
                    const int32x4_t a = dot4l(dot4l(vdupq_n_s32(0), lo, ld_s8(x)), lo + 4, ld_s8(x + 16));
                    const int32x4_t b = dot4l(dot4l(vdupq_n_s32(0), hi, ld_s8(x + 32)), hi + 4, ld_s8(x + 48));
                    I[t] = vmlaq_s32(vmlaq_s32(I[t], a, s0), b, s1);
                }
            }
            UNROLL for (int j = 0; j < 8; j++) {
                const int16x4_t m = u8x4_s16(c + Q4X_M + 16 * j + 4 * q);
                UNROLL for (int t = 0; t < NT; t++) M[t] = mlal_lane8(M[t], m, b2[t], j);
            }
            UNROLL for (int t = 0; t < NT; t++) {
                const float32x4_t T = vsubq_f32(vmulq_f32(D[q], vcvtq_f32_s32(I[t])), vmulq_f32(DM[q], vcvtq_f32_s32(M[t])));
                F[q][t] = vaddq_f32(F[q][t], vmulq_n_f32(T, dx[t]));
            }
        }
        return;
    }
    /* q6_K: codes 0..63 as they are; the -32 offset is -32 sum_j sc_j bsums_j */
    NOUNROLL for (int q = 0; q < 4; q++) {
        int32x4_t I[XT_MAX], O[XT_MAX];
        UNROLL for (int t = 0; t < NT; t++) I[t] = O[t] = vdupq_n_s32(0);
        NOUNROLL for (int hm = 0; hm < 4; hm++) {
            /* half H = hm / 2, sixteen mh = hm % 2: ql chunks 16H + 4mh + k
             * and + 8, qh chunks 8H + 4mh + k; sub-block j = 8H + mh + 2qd */
            const int H = hm >> 1, mh = hm & 1;
            const uint8_t *ql = c + Q6X_QL + 64 * (16 * H + 4 * mh) + 16 * q;
            const uint8_t *qh = c + Q6X_QH + 64 * (8 * H + 4 * mh) + 16 * q;
            const uint8_t *scp = c + Q6X_SC + 16 * (8 * H + mh) + 4 * q;
            const size_t xo = Q8K_QS + 16 * (size_t)(8 * H + mh);
            int8x16_t w[4][4];   /* [qd][k] */
            UNROLL for (int k = 0; k < 4; k++) {
                uint8x16_t v[4];
                q6_codes(vld1q_u8(ql + 64 * k), vld1q_u8(ql + 512 + 64 * k), vld1q_u8(qh + 64 * k), v);
                UNROLL for (int qd = 0; qd < 4; qd++) w[qd][k] = s8(v[qd]);
            }
            UNROLL for (int qd = 0; qd < 4; qd++) {
                const int32x4_t sc = vmovl_s16(s8x4_s16(scp + 32 * qd));
                UNROLL for (int t = 0; t < NT; t++)
                    I[t] = vmlaq_s32(I[t], dot4l(vdupq_n_s32(0), w[qd], ld_s8(xb[t] + xo + 32 * qd)), sc);
            }
        }
        UNROLL for (int j = 0; j < 16; j++) {
            const int16x4_t sc = s8x4_s16(c + Q6X_SC + 16 * j + 4 * q);
            UNROLL for (int t = 0; t < NT; t++) O[t] = mlal_lane8(O[t], sc, bs[t][j / 8], j % 8);
        }
        UNROLL for (int t = 0; t < NT; t++) {
            const int32x4_t A = vsubq_s32(I[t], vshlq_n_s32(O[t], 5));
            F[q][t] = vaddq_f32(F[q][t], vmulq_f32(vmulq_n_f32(D[q], dx[t]), vcvtq_f32_s32(A)));
        }
    }
}

/* One row group x NT tokens (rows xs apart) over nb columns. */
AI void tile_dot(int kind, int NT, int64_t nb, const uint8_t *g, const uint8_t *x, size_t xs, float *y, size_t ldy)
{
    const int CB = x16_col_bytes(kind), AB = x16_act_bytes(kind);
    float32x4_t F[4][XT_MAX];
    UNROLL for (int q = 0; q < 4; q++) UNROLL for (int t = 0; t < NT; t++) F[q][t] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *xb[XT_MAX];
        UNROLL for (int t = 0; t < NT; t++) xb[t] = x + (size_t)t * xs + (size_t)b * AB;
        col_dot(kind, NT, g + (size_t)b * CB, xb, F);
    }
    UNROLL for (int q = 0; q < 4; q++) UNROLL for (int t = 0; t < NT; t++) vst1q_f32(y + (size_t)t * ldy + 4 * q, F[q][t]);
}

AI void tile_dot_n(int kind, int m, int64_t nb, const uint8_t *g, const uint8_t *x, size_t xs, float *y, size_t ldy)
{
    switch (m) {
    case 1: tile_dot(kind, 1, nb, g, x, xs, y, ldy); break;
    case 2: tile_dot(kind, 2, nb, g, x, xs, y, ldy); break;
    case 3: tile_dot(kind, 3, nb, g, x, xs, y, ldy); break;
    default: tile_dot(kind, 4, nb, g, x, xs, y, ldy); break;
    }
}

#if DN_NEON_I8MM
/* ------------------------------------------------------------------ */
/* SMMLA: one column against TP token pairs, F[pair row p][token pair]  */
/* lanes [2p.t0, 2p.t1, 2p+1.t0, 2p+1.t1]                               */
/* ------------------------------------------------------------------ */

/* rows 4q, 4q + 1 (*a) and 4q + 2, 4q + 3 (*b), 8 bytes each, from the
 * quads of two consecutive chunks */
AI void zip_rows(uint8x16_t c0, uint8x16_t c1, uint8x16_t *a, uint8x16_t *b)
{
    const uint32x4_t u = vreinterpretq_u32_u8(c0), v = vreinterpretq_u32_u8(c1);
    *a = vreinterpretq_u8_u32(vzip1q_u32(u, v));
    *b = vreinterpretq_u8_u32(vzip2q_u32(u, v));
}

/* 16 activation bytes of tokens t0, t1 as two SMMLA operands (elements
 * 0..7 and 8..15 of both) */
AI void zip_tok(const uint8_t *p0, const uint8_t *p1, int8x16_t out[2])
{
    const uint64x2_t a = vreinterpretq_u64_u8(vld1q_u8(p0)), b = vreinterpretq_u64_u8(vld1q_u8(p1));
    out[0] = vreinterpretq_s8_u64(vzip1q_u64(a, b));
    out[1] = vreinterpretq_s8_u64(vzip2q_u64(a, b));
}

/* [v0, v0, v1, v1] and [v2, v2, v3, v3]: a row value for the 2 x 2 layout */
AI void dup_f(float32x4_t v, float32x4_t out[2]) { out[0] = vzip1q_f32(v, v); out[1] = vzip2q_f32(v, v); }
AI void dup_s(int32x4_t v, int32x4_t out[2]) { out[0] = vzip1q_s32(v, v); out[1] = vzip2q_s32(v, v); }
/* [a, b, a, b] */
AI float32x4_t pair_f(float a, float b)
{
    const float32x2_t v = vset_lane_f32(b, vdup_n_f32(a), 1);
    return vcombine_f32(v, v);
}
AI int32x4_t mm(int32x4_t acc, uint8x16_t w, int8x16_t x) { return vmmlaq_s32(acc, s8(w), x); }

AI void col_mm(int kind, int TP, const uint8_t *c, const uint8_t *const *xb, float32x4_t F[8][XP_MAX])
{
    if (kind == XQ4_0 || kind == XQ8_0) {
        int8x16_t X[XP_MAX][4];   /* elements 8i..8i+7 of both tokens */
        float32x4_t DX[XP_MAX];
        UNROLL for (int p = 0; p < TP; p++) {
            zip_tok(xb[2 * p] + Q80_QS, xb[2 * p + 1] + Q80_QS, X[p]);
            zip_tok(xb[2 * p] + Q80_QS + 16, xb[2 * p + 1] + Q80_QS + 16, X[p] + 2);
            DX[p] = pair_f(h2f(xb[2 * p]), h2f(xb[2 * p + 1]));
        }
        float32x4_t DW[4];
        ld_h16(c, DW);
        UNROLL for (int q = 0; q < 4; q++) {
            uint8x16_t A[4], B[4];   /* A[i]: rows 4q, 4q + 1, elements 8i.. */
            if (kind == XQ4_0) {
                uint8x16_t a[2], b[2];
                zip_rows(vld1q_u8(c + X_QS + 16 * q), vld1q_u8(c + X_QS + 64 + 16 * q), &a[0], &b[0]);
                zip_rows(vld1q_u8(c + X_QS + 128 + 16 * q), vld1q_u8(c + X_QS + 192 + 16 * q), &a[1], &b[1]);
                UNROLL for (int i = 0; i < 2; i++) {
                    int8x16_t l, h;
                    q4_nib(a[i], &l, &h);
                    A[i] = vreinterpretq_u8_s8(l), A[i + 2] = vreinterpretq_u8_s8(h);
                    q4_nib(b[i], &l, &h);
                    B[i] = vreinterpretq_u8_s8(l), B[i + 2] = vreinterpretq_u8_s8(h);
                }
            } else {
                UNROLL for (int i = 0; i < 4; i++) {
                    zip_rows(vld1q_u8(c + X_QS + 128 * i + 16 * q), vld1q_u8(c + X_QS + 128 * i + 64 + 16 * q),
                             &A[i], &B[i]);
                    A[i] = veorq_u8(A[i], vdupq_n_u8(0x80));
                    B[i] = veorq_u8(B[i], vdupq_n_u8(0x80));
                }
            }
            float32x4_t dd[2];
            dup_f(DW[q], dd);
            UNROLL for (int p = 0; p < TP; p++) {
                int32x4_t SA = vdupq_n_s32(0), SB = vdupq_n_s32(0);
                UNROLL for (int i = 0; i < 4; i++) {
                    SA = mm(SA, A[i], X[p][i]);
                    SB = mm(SB, B[i], X[p][i]);
                }
                const float32x4_t fa = kind == XQ4_0 ? vcvtq_n_f32_s32(SA, 4) : vcvtq_f32_s32(SA);
                const float32x4_t fb = kind == XQ4_0 ? vcvtq_n_f32_s32(SB, 4) : vcvtq_f32_s32(SB);
                F[2 * q][p] = vaddq_f32(F[2 * q][p], vmulq_f32(fa, vmulq_f32(dd[0], DX[p])));
                F[2 * q + 1][p] = vaddq_f32(F[2 * q + 1][p], vmulq_f32(fb, vmulq_f32(dd[1], DX[p])));
            }
        }
        return;
    }
    float32x4_t DX[XP_MAX];
    int16x8_t bs[2 * XP_MAX][2];
    UNROLL for (int p = 0; p < TP; p++) DX[p] = pair_f(ldf(xb[2 * p]), ldf(xb[2 * p + 1]));
    UNROLL for (int t = 0; t < 2 * TP; t++) ld_bsums(xb[t], bs[t]);
    float32x4_t D[4];
    ld_h16(c, D);
    /* one quad (pair rows 2q, 2q + 1) through the whole super-block at a
     * time: few accumulators live; the activation zips are redone per
     * quad (L1 loads and one zip per register) */
    if (kind == XQ4_K) {
        float32x4_t DM[4];
        ld_h16(c + Q4X_DMIN, DM);
        int16x8_t b2[2 * XP_MAX];
        UNROLL for (int t = 0; t < 2 * TP; t++) b2[t] = vpaddq_s16(bs[t][0], bs[t][1]);
        NOUNROLL for (int q = 0; q < 4; q++) {
            int32x4_t IA[XP_MAX], IB[XP_MAX];
            UNROLL for (int p = 0; p < TP; p++) IA[p] = IB[p] = vdupq_n_s32(0);
            const uint8_t *qs = c + Q4X_QS + 16 * q, *scp = c + Q4X_SC + 4 * q;
            NOUNROLL for (int jp = 0; jp < 4; jp++, qs += 512, scp += 32) {
                uint8x16_t A[4], B[4];
                UNROLL for (int i = 0; i < 4; i++) zip_rows(vld1q_u8(qs + 128 * i), vld1q_u8(qs + 128 * i + 64), &A[i], &B[i]);
                int32x4_t s0[2], s1[2];
                dup_s(u8x4_s32(scp), s0);
                dup_s(u8x4_s32(scp + 16), s1);
                UNROLL for (int p = 0; p < TP; p++) {
                    /* sub-blocks 2jp (low nibbles) and 2jp + 1 (high) */
                    const uint8_t *x0 = xb[2 * p] + Q8K_QS + 64 * jp, *x1 = xb[2 * p + 1] + Q8K_QS + 64 * jp;
                    int8x16_t XL[4], XH[4];
                    zip_tok(x0, x1, XL);
                    zip_tok(x0 + 16, x1 + 16, XL + 2);
                    zip_tok(x0 + 32, x1 + 32, XH);
                    zip_tok(x0 + 48, x1 + 48, XH + 2);
                    int32x4_t la = vdupq_n_s32(0), lb = la, ha = la, hb = la;
                    UNROLL for (int i = 0; i < 4; i++) {
                        la = mm(la, vandq_u8(A[i], vdupq_n_u8(0x0F)), XL[i]);
                        lb = mm(lb, vandq_u8(B[i], vdupq_n_u8(0x0F)), XL[i]);
                        ha = mm(ha, vshrq_n_u8(A[i], 4), XH[i]);
                        hb = mm(hb, vshrq_n_u8(B[i], 4), XH[i]);
                    }
                    IA[p] = vmlaq_s32(vmlaq_s32(IA[p], la, s0[0]), ha, s1[0]);
                    IB[p] = vmlaq_s32(vmlaq_s32(IB[p], lb, s0[1]), hb, s1[1]);
                }
            }
            /* mins per token in row order (as col_dot), then zipped to pairs */
            int32x4_t M[2 * XP_MAX];
            UNROLL for (int t = 0; t < 2 * TP; t++) M[t] = vdupq_n_s32(0);
            UNROLL for (int j = 0; j < 8; j++) {
                const int16x4_t m = u8x4_s16(c + Q4X_M + 16 * j + 4 * q);
                UNROLL for (int t = 0; t < 2 * TP; t++) M[t] = mlal_lane8(M[t], m, b2[t], j);
            }
            float32x4_t dd[2], dm[2];
            dup_f(D[q], dd);
            dup_f(DM[q], dm);
            UNROLL for (int p = 0; p < TP; p++) {
                const int32x4_t ma = vzip1q_s32(M[2 * p], M[2 * p + 1]), mb = vzip2q_s32(M[2 * p], M[2 * p + 1]);
                const float32x4_t Ta = vsubq_f32(vmulq_f32(dd[0], vcvtq_f32_s32(IA[p])), vmulq_f32(dm[0], vcvtq_f32_s32(ma)));
                const float32x4_t Tb = vsubq_f32(vmulq_f32(dd[1], vcvtq_f32_s32(IB[p])), vmulq_f32(dm[1], vcvtq_f32_s32(mb)));
                F[2 * q][p] = vaddq_f32(F[2 * q][p], vmulq_f32(Ta, DX[p]));
                F[2 * q + 1][p] = vaddq_f32(F[2 * q + 1][p], vmulq_f32(Tb, DX[p]));
            }
        }
        return;
    }
    /* q6_K */
    NOUNROLL for (int q = 0; q < 4; q++) {
        int32x4_t IA[XP_MAX], IB[XP_MAX];
        UNROLL for (int p = 0; p < TP; p++) IA[p] = IB[p] = vdupq_n_s32(0);
        NOUNROLL for (int hm = 0; hm < 4; hm++) {
            const int H = hm >> 1, mh = hm & 1;   /* as in col_dot */
            const uint8_t *ql = c + Q6X_QL + 64 * (16 * H + 4 * mh) + 16 * q;
            const uint8_t *qh = c + Q6X_QH + 64 * (8 * H + 4 * mh) + 16 * q;
            const uint8_t *scp = c + Q6X_SC + 16 * (8 * H + mh) + 4 * q;
            const size_t xo = Q8K_QS + 16 * (size_t)(8 * H + mh);
            /* chunks 2i, 2i + 1 zipped before the codes are cut out
             * (bytewise, so the order of the two steps does not matter) */
            uint8x16_t A[4][2], B[4][2];   /* [qd][i] */
            UNROLL for (int i = 0; i < 2; i++) {
                uint8x16_t l1a, l1b, l2a, l2b, qa, qb;
                zip_rows(vld1q_u8(ql + 128 * i), vld1q_u8(ql + 128 * i + 64), &l1a, &l1b);
                zip_rows(vld1q_u8(ql + 512 + 128 * i), vld1q_u8(ql + 512 + 128 * i + 64), &l2a, &l2b);
                zip_rows(vld1q_u8(qh + 128 * i), vld1q_u8(qh + 128 * i + 64), &qa, &qb);
                uint8x16_t va[4], vb[4];
                q6_codes(l1a, l2a, qa, va);
                q6_codes(l1b, l2b, qb, vb);
                UNROLL for (int qd = 0; qd < 4; qd++) { A[qd][i] = va[qd]; B[qd][i] = vb[qd]; }
            }
            UNROLL for (int qd = 0; qd < 4; qd++) {
                int32x4_t sc[2];
                dup_s(vmovl_s16(s8x4_s16(scp + 32 * qd)), sc);
                UNROLL for (int p = 0; p < TP; p++) {
                    int8x16_t X[2];
                    zip_tok(xb[2 * p] + xo + 32 * qd, xb[2 * p + 1] + xo + 32 * qd, X);
                    const int32x4_t sa = mm(mm(vdupq_n_s32(0), A[qd][0], X[0]), A[qd][1], X[1]);
                    const int32x4_t sb = mm(mm(vdupq_n_s32(0), B[qd][0], X[0]), B[qd][1], X[1]);
                    IA[p] = vmlaq_s32(IA[p], sa, sc[0]);
                    IB[p] = vmlaq_s32(IB[p], sb, sc[1]);
                }
            }
        }
        int32x4_t O[2 * XP_MAX];
        UNROLL for (int t = 0; t < 2 * TP; t++) O[t] = vdupq_n_s32(0);
        UNROLL for (int j = 0; j < 16; j++) {
            const int16x4_t sc = s8x4_s16(c + Q6X_SC + 16 * j + 4 * q);
            UNROLL for (int t = 0; t < 2 * TP; t++) O[t] = mlal_lane8(O[t], sc, bs[t][j / 8], j % 8);
        }
        float32x4_t dd[2];
        dup_f(D[q], dd);
        UNROLL for (int p = 0; p < TP; p++) {
            const int32x4_t oa = vzip1q_s32(O[2 * p], O[2 * p + 1]), ob = vzip2q_s32(O[2 * p], O[2 * p + 1]);
            const int32x4_t Aa = vsubq_s32(IA[p], vshlq_n_s32(oa, 5));
            const int32x4_t Ab = vsubq_s32(IB[p], vshlq_n_s32(ob, 5));
            F[2 * q][p] = vaddq_f32(F[2 * q][p], vmulq_f32(vmulq_f32(DX[p], dd[0]), vcvtq_f32_s32(Aa)));
            F[2 * q + 1][p] = vaddq_f32(F[2 * q + 1][p], vmulq_f32(vmulq_f32(DX[p], dd[1]), vcvtq_f32_s32(Ab)));
        }
    }
}

/* One row group x 2TP tokens over nb columns. */
AI void tile_mm(int kind, int TP, int64_t nb, const uint8_t *g, const uint8_t *x, size_t xs, float *y, size_t ldy)
{
    const int CB = x16_col_bytes(kind), AB = x16_act_bytes(kind);
    float32x4_t F[8][XP_MAX];
    UNROLL for (int r = 0; r < 8; r++) UNROLL for (int p = 0; p < TP; p++) F[r][p] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *xb[2 * XP_MAX];
        UNROLL for (int t = 0; t < 2 * TP; t++) xb[t] = x + (size_t)t * xs + (size_t)b * AB;
        col_mm(kind, TP, g + (size_t)b * CB, xb, F);
    }
    UNROLL for (int p = 0; p < TP; p++) UNROLL for (int q = 0; q < 4; q++) {
        vst1q_f32(y + (size_t)(2 * p) * ldy + 4 * q, vuzp1q_f32(F[2 * q][p], F[2 * q + 1][p]));
        vst1q_f32(y + (size_t)(2 * p + 1) * ldy + 4 * q, vuzp2q_f32(F[2 * q][p], F[2 * q + 1][p]));
    }
}
#endif

/* Each row group against token tiles (the group's weights stay in L1/L2
 * across them): SMMLA on pairs where built with it, SDOT for the rest. */
AI void x16_gemm(int kind, int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs, int nt,
                 float *y, size_t ldy)
{
    const int64_t nb = n / x16_block_elems(kind);
    const int tmax = kind == XQ4_0 || kind == XQ8_0 ? XT_32 : XT_K;
    for (int g = 0; g < nr / 16; g++) {
        const uint8_t *wg = (const uint8_t *)w + (size_t)g * ws;
        int t0 = 0;
#if DN_NEON_I8MM
        /* SMMLA on 4 tokens at a time; on 2 it takes more instructions per
         * column than SDOT (counted from the generated code: the zips of
         * weights and activations and the 2 x 2 scales), so the 1..3 left
         * take the SDOT tile */
        for (; nt - t0 >= 2 * XP_MAX; t0 += 2 * XP_MAX)
            tile_mm(kind, XP_MAX, nb, wg, (const uint8_t *)x + (size_t)t0 * xs, xs, y + (size_t)t0 * ldy + 16 * g, ldy);
#endif
        for (; t0 < nt; t0 += tmax) {
            const int m = nt - t0 < tmax ? nt - t0 : tmax;
            tile_dot_n(kind, m, nb, wg, (const uint8_t *)x + (size_t)t0 * xs, xs, y + (size_t)t0 * ldy + 16 * g, ldy);
        }
    }
}

#define DN_X16_GEMMS(SUFFIX) \
    static DN_GEMM_DECL(dn_gemm_q4_0x16_q8_0_##SUFFIX) { x16_gemm(XQ4_0, n, w, w_stride, nr, x, x_stride, nt, y, ldy); } \
    static DN_GEMM_DECL(dn_gemm_q8_0x16_q8_0_##SUFFIX) { x16_gemm(XQ8_0, n, w, w_stride, nr, x, x_stride, nt, y, ldy); } \
    static DN_GEMM_DECL(dn_gemm_q4_Kx16_q8_K_##SUFFIX) { x16_gemm(XQ4_K, n, w, w_stride, nr, x, x_stride, nt, y, ldy); } \
    static DN_GEMM_DECL(dn_gemm_q6_Kx16_q8_K_##SUFFIX) { x16_gemm(XQ6_K, n, w, w_stride, nr, x, x_stride, nt, y, ldy); }

/* the table entries: gemms and the loader's repack map (activations:
 * DN_X16_ACT_ENTRIES) */
#define DN_X16_ENTRIES_GEMM(SUFFIX) \
    [DN_TYPE_Q4_0_X16] = dn_gemm_q4_0x16_q8_0_##SUFFIX, [DN_TYPE_Q8_0_X16] = dn_gemm_q8_0x16_q8_0_##SUFFIX, \
    [DN_TYPE_Q4_K_X16] = dn_gemm_q4_Kx16_q8_K_##SUFFIX, [DN_TYPE_Q6_K_X16] = dn_gemm_q6_Kx16_q8_K_##SUFFIX,
#define DN_X16_ENTRIES_REPACK \
    [DANU_TYPE_Q4_0] = DN_TYPE_Q4_0_X16, [DANU_TYPE_Q8_0] = DN_TYPE_Q8_0_X16, \
    [DANU_TYPE_Q4_K] = DN_TYPE_Q4_K_X16, [DANU_TYPE_Q6_K] = DN_TYPE_Q6_K_X16,
#endif
