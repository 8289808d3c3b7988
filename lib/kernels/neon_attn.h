/* neon_attn.h - the attention slots (kernels.h) for AArch64 AdvSIMD,
 * included by neon_internal.h (static, named through NK).
 *
 * K comes in tiles of 16 positions (kvcache.h). f16/f32: one query row
 * gets a tile's 16 scores from 4 FMAs per dimension, four rows at a time
 * (16 accumulators). Q8: 4 dimensions of 4 keys per 16 bytes, the bytes
 * flipped back to signed codes (xor 0x80) and one SDOT per 4 keys and row
 * (without the dot product extension: SMULL and pairwise adds, the same
 * exact int32 sums). Values (f16/f32): each V row chunk is converted once
 * per 4 query rows whose outputs stay in registers; Q8 (att_q8_*): SDOT of
 * 4 dimensions of a group of 4 keys against the group's 4 integer weights
 * (SMULL and pairwise adds without dot product), int32 sums in registers
 * for a chunk of keys, then added to the int64 sums. Every score is the
 * same operations whatever the tile (a sequential fma over d from 0, lanes
 * of FMLA, single rounding, as fmaf; Q8: an exact int32 sum, then two
 * multiplies), every output element a sequential fma over the keys in
 * order (Q8 values: an exact integer sum), so a row alone or in a batch,
 * with the keys in one call or several, gets the same bits. */
#ifndef DN_NEON_ATTN_H
#define DN_NEON_ATTN_H

/* 4 floats from element x of an f16 or f32 tile or row */
AI float32x4_t att_ld4(int type, const uint8_t *base, size_t x)
{
    if (type == DN_KV_F16) return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)(const void *)base + x)));
    return vld1q_f32((const float *)(const void *)base + x);
}

/* 2 floats from element x (lanes 2, 3 zero); reads 2 only */
AI float32x4_t att_ld2(int type, const uint8_t *base, size_t x)
{
    if (type == DN_KV_F16) {
        uint32_t w;
        memcpy(&w, base + 2 * x, 4);
        return vcvt_f32_f16(vreinterpret_f16_u64(vcreate_u64(w)));
    }
    return vcombine_f32(vld1_f32((const float *)(const void *)base + x), vdup_n_f32(0.0f));
}

/* Store the 16 scores o (4 vectors) of tile t, keeping lanes lane..lane+nk-1 of the run. */
AI void att_store16(const float32x4_t o[4], int t, int lane, int nk, float *s)
{
    const int first = 16 * t;
    const int a = lane > first ? lane - first : 0, b = lane + nk - first < 16 ? lane + nk - first : 16;
    float buf[16];
    float *dst = s + (first + a - lane);
    float *x = a == 0 && b == 16 ? dst : buf;   /* a partial tile at either end of the run goes through buf */
    UNROLL for (int c = 0; c < 4; c++) vst1q_f32(x + 4 * c, o[c]);
    if (x == buf) memcpy(dst, buf + a, sizeof(float) * (size_t)(b - a));
}

/* Scores of NQ rows for tile t of an f16 or f32 cache (dimension d at
 * tile + 16 d elements). */
AI void att_scores_tile(int NQ, int type, int hd, const float *q, size_t qs, const uint8_t *k, int t, int lane, int nk,
                        float *s, size_t ss)
{
    const uint8_t *tile = k + (size_t)t * dn_kv_tile_bytes(hd, type);
    float32x4_t acc[4][4];
    UNROLL for (int i = 0; i < NQ; i++) UNROLL for (int c = 0; c < 4; c++) acc[i][c] = vdupq_n_f32(0.0f);
    int d = 0;
    for (; d + 4 <= hd; d += 4) {
        float32x4_t qv[4], kv[4];
        UNROLL for (int i = 0; i < NQ; i++) qv[i] = vld1q_f32(q + i * qs + d);
#define ATT_SCORE_STEP(E) \
        UNROLL for (int c = 0; c < 4; c++) kv[c] = att_ld4(type, tile, 16 * (size_t)(d + E) + 4 * c); \
        UNROLL for (int i = 0; i < NQ; i++) UNROLL for (int c = 0; c < 4; c++) \
            acc[i][c] = vfmaq_laneq_f32(acc[i][c], kv[c], qv[i], E);
        ATT_SCORE_STEP(0) ATT_SCORE_STEP(1) ATT_SCORE_STEP(2) ATT_SCORE_STEP(3)
#undef ATT_SCORE_STEP
    }
    for (; d < hd; d++) {
        float32x4_t kv[4];
        UNROLL for (int c = 0; c < 4; c++) kv[c] = att_ld4(type, tile, 16 * (size_t)d + 4 * c);
        UNROLL for (int i = 0; i < NQ; i++) UNROLL for (int c = 0; c < 4; c++)
            acc[i][c] = vfmaq_n_f32(acc[i][c], kv[c], q[i * qs + d]);
    }
    UNROLL for (int i = 0; i < NQ; i++) att_store16(acc[i], t, lane, nk, s + (size_t)i * ss);
}

/* acc + per key the dot product of its 4 codes (k: 4 keys) with the 4 codes in each lane of q */
AI int32x4_t att_sdot(int32x4_t acc, int8x16_t k, int8x16_t q)
{
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(acc, k, q);
#else
    const int32x4_t lo = vpaddlq_s16(vmull_s8(vget_low_s8(k), vget_low_s8(q)));   /* |k q| <= 127 * 127 */
    const int32x4_t hi = vpaddlq_s16(vmull_high_s8(k, q));
    return vaddq_s32(acc, vpaddq_s32(lo, hi));
#endif
}

/* Rows i0..i0+NQ-1 of r against tile t of a Q8 cache. */
AI void att_scores_tile_q8(int NQ, const dn_att_q8 *r, int i0, const uint8_t *k, size_t tb, int t, int lane, int nk,
                           const float *ksc, float *s, size_t ss)
{
    const uint8_t *tile = k + (size_t)t * tb;
    const uint8x16_t flip = vdupq_n_u8(0x80);
    int32x4_t acc[4][4];
    UNROLL for (int i = 0; i < NQ; i++) UNROLL for (int c = 0; c < 4; c++) acc[i][c] = vdupq_n_s32(0);
    for (int d = 0; d < r->hd4; d += 4) {
        int8x16_t kv[4];
        UNROLL for (int c = 0; c < 4; c++) kv[c] = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(tile + 16 * (size_t)d + 16 * c), flip));
        UNROLL for (int i = 0; i < NQ; i++) {
            const int8x16_t qv = vreinterpretq_s8_u32(vdupq_n_u32(dn_ld_u32(&r->q[i0 + i][d])));
            UNROLL for (int c = 0; c < 4; c++) acc[i][c] = att_sdot(acc[i][c], kv[c], qv);
        }
    }
    UNROLL for (int i = 0; i < NQ; i++) {
        float32x4_t o[4];
        UNROLL for (int c = 0; c < 4; c++)
            o[c] = vmulq_n_f32(vmulq_f32(vcvtq_f32_s32(acc[i][c]), vld1q_f32(ksc + 16 * t + 4 * c)), r->sc[i0 + i]);
        att_store16(o, t, lane, nk, s + (size_t)i * ss);
    }
}

AI void att_scores_all(int type, int hd, int nq, const float *q, size_t qs, const uint8_t *k, int lane, int nk,
                       float *s, size_t ss)
{
    const int tiles = (lane + nk + 15) / 16;
    for (int t = 0; t < tiles; t++)
        for (int i = 0; i < nq; i += 4) {
            const float *qi = q + (size_t)i * qs;
            float *si = s + (size_t)i * ss;
            switch (nq - i) {
            case 1: att_scores_tile(1, type, hd, qi, qs, k, t, lane, nk, si, ss); break;
            case 2: att_scores_tile(2, type, hd, qi, qs, k, t, lane, nk, si, ss); break;
            case 3: att_scores_tile(3, type, hd, qi, qs, k, t, lane, nk, si, ss); break;
            default: att_scores_tile(4, type, hd, qi, qs, k, t, lane, nk, si, ss); break;
            }
        }
}

AI void att_scores_q8(int hd, int nq, const float *q, size_t qs, const uint8_t *k, int lane, int nk, const float *ksc,
                      float *s, size_t ss)
{
    const size_t tb = dn_kv_tile_bytes(hd, DN_KV_Q8);
#define TILE(NQ, R, I, T, S) att_scores_tile_q8(NQ, R, I, k, tb, T, lane, nk, ksc, S, ss)
    DN_ATT_Q8_SCORES(TILE, dn_kv_quantize, hd, nq, q, qs, lane, nk, s, ss);
#undef TILE
}

static void NK(dn_att_scores_)(int hd, int nq, const float *q, size_t qs, const void *k, int lane, int nk, int type,
                               const float *ksc, float *s, size_t ss)
{
    if (type == DN_KV_F16) att_scores_all(DN_KV_F16, hd, nq, q, qs, k, lane, nk, s, ss);
    else if (type == DN_KV_F32) att_scores_all(DN_KV_F32, hd, nq, q, qs, k, lane, nk, s, ss);
    else att_scores_q8(hd, nq, q, qs, k, lane, nk, ksc, s, ss);
}

/* NQ output rows, dimensions d0 .. d0 + 4 NV, over nk keys in order */
AI void att_values_tile(int NQ, int NV, int type, int hd, const float *p, size_t ps, const uint8_t *v, int nk,
                        float *out, size_t os, int d0)
{
    float32x4_t acc[4][4];
    UNROLL for (int i = 0; i < NQ; i++) UNROLL for (int c = 0; c < NV; c++)
        acc[i][c] = vld1q_f32(out + i * os + d0 + 4 * c);
    int j = 0;
    for (; j + 4 <= nk; j += 4) {
        float32x4_t pv[4], x[4];
        UNROLL for (int i = 0; i < NQ; i++) pv[i] = vld1q_f32(p + i * ps + j);
#define ATT_VALUE_STEP(E) \
        UNROLL for (int c = 0; c < NV; c++) x[c] = att_ld4(type, v, (size_t)(j + E) * hd + d0 + 4 * c); \
        UNROLL for (int i = 0; i < NQ; i++) UNROLL for (int c = 0; c < NV; c++) \
            acc[i][c] = vfmaq_laneq_f32(acc[i][c], x[c], pv[i], E);
        ATT_VALUE_STEP(0) ATT_VALUE_STEP(1) ATT_VALUE_STEP(2) ATT_VALUE_STEP(3)
#undef ATT_VALUE_STEP
    }
    for (; j < nk; j++) {
        float32x4_t x[4];
        UNROLL for (int c = 0; c < NV; c++) x[c] = att_ld4(type, v, (size_t)j * hd + d0 + 4 * c);
        UNROLL for (int i = 0; i < NQ; i++) {
            const float w = p[i * ps + j];
            UNROLL for (int c = 0; c < NV; c++) acc[i][c] = vfmaq_n_f32(acc[i][c], x[c], w);
        }
    }
    UNROLL for (int i = 0; i < NQ; i++) UNROLL for (int c = 0; c < NV; c++)
        vst1q_f32(out + i * os + d0 + 4 * c, acc[i][c]);
}

/* NQ output rows, the two dimensions d0, d0 + 1 (the tail of an hd that is
 * not a multiple of 4) */
AI void att_values_tail2(int NQ, int type, int hd, const float *p, size_t ps, const uint8_t *v, int nk, float *out,
                         size_t os, int d0)
{
    float32x2_t acc[4];
    UNROLL for (int i = 0; i < NQ; i++) acc[i] = vld1_f32(out + i * os + d0);
    for (int j = 0; j < nk; j++) {
        const float32x2_t x = vget_low_f32(att_ld2(type, v, (size_t)j * hd + d0));
        UNROLL for (int i = 0; i < NQ; i++) acc[i] = vfma_n_f32(acc[i], x, p[i * ps + j]);
    }
    UNROLL for (int i = 0; i < NQ; i++) vst1_f32(out + i * os + d0, acc[i]);
}

#define AVT(NV) att_values_tile(NQ, NV, type, hd, p, ps, v, nk, out, os, d0)
AI void att_values_rows(int NQ, int type, int hd, const float *p, size_t ps, const uint8_t *v, int nk, float *out,
                        size_t os)
{
    /* the hd / 4 full vectors in chunks of at most 4 (4 rows x 4 vectors of
     * accumulators, 4 of weights, 4 of V: no spills), sizes as even as
     * possible */
    const int nvec = hd / 4, nch = (nvec + 3) / 4;
    int d0 = 0;
    for (int ch = 0; ch < nch; ch++) {
        const int nv = nvec / nch + (ch < nvec % nch);
        switch (nv) {
        case 1: AVT(1); break;
        case 2: AVT(2); break;
        case 3: AVT(3); break;
        default: AVT(4); break;
        }
        d0 += 4 * nv;
    }
    if (d0 < hd) att_values_tail2(NQ, type, hd, p, ps, v, nk, out, os, d0);
}
#undef AVT

AI void att_values_all(int type, int hd, int nq, const float *p, size_t ps, const uint8_t *v, int nk, float *out,
                       size_t os)
{
    for (int i = 0; i < nq; i += 4)
        switch (nq - i) {
        case 1: att_values_rows(1, type, hd, p + i * ps, ps, v, nk, out + i * os, os); break;
        case 2: att_values_rows(2, type, hd, p + i * ps, ps, v, nk, out + i * os, os); break;
        case 3: att_values_rows(3, type, hd, p + i * ps, ps, v, nk, out + i * os, os); break;
        default: att_values_rows(4, type, hd, p + i * ps, ps, v, nk, out + i * os, os); break;
        }
}

static void NK(dn_att_values_)(int hd, int nq, const float *p, size_t ps, const void *v, int nk, int type, float *out,
                               size_t os)
{
    if (type == DN_KV_F16) att_values_all(DN_KV_F16, hd, nq, p, ps, v, nk, out, os);
    else att_values_all(DN_KV_F32, hd, nq, p, ps, v, nk, out, os);
}

/* ---- Q8 values as exact integer sums (kernels.h att_q8_*) ---------------- */

/* att_q8_weights, 8 keys a step. FCVTNS rounds to nearest even whatever
 * FPCR's mode, as dn_round_even; (e * vsc) * c as two multiplies, as
 * scalar.c. w < 2^14 narrows to 16 bits, then SHRN gives hi and XTN of
 * w & 127 lo. The denominator's counts widen pairwise into int64. */
static int64_t NK(dn_att_q8_weights_)(const float *s, float m, const float *vsc, int n, float c, uint8_t *hi, uint8_t *lo)
{
    const float32x4_t mm = vdupq_n_f32(m);
    int64x2_t sum = vdupq_n_s64(0);
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        uint16x4_t h[2];
        UNROLL for (int k = 0; k < 2; k++) {
            const float32x4_t e = exp4(vsubq_f32(vld1q_f32(s + j + 4 * k), mm));
            const float32x4_t t = vmulq_n_f32(vmulq_f32(e, vld1q_f32(vsc + j + 4 * k)), c);
            h[k] = vmovn_u32(vreinterpretq_u32_s32(vminq_s32(vcvtnq_s32_f32(t), vdupq_n_s32(DN_ATT_W_MAX))));
            sum = vpadalq_s32(sum, vcvtnq_s32_f32(vmulq_n_f32(e, (float)(1 << DN_ATT_E_SHIFT))));
        }
        const uint16x8_t w = vcombine_u16(h[0], h[1]);
        vst1_u8(hi + j, vshrn_n_u16(w, DN_ATT_W_SHIFT));
        vst1_u8(lo + j, vmovn_u16(vandq_u16(w, vdupq_n_u16((1 << DN_ATT_W_SHIFT) - 1))));
    }
    int64_t total = vaddvq_s64(sum);
    if (j < n) {   /* the last n % 8 keys through the same lanes, padded with e = 0 */
        float ts[8], tv[8];
        uint8_t th[8], tl[8];
        for (int i = 0; i < 8; i++) {
            ts[i] = j + i < n ? s[j + i] : -INFINITY;
            tv[i] = j + i < n ? vsc[j + i] : 0.0f;
        }
        total += NK(dn_att_q8_weights_)(ts, m, tv, 8, c, th, tl);
        memcpy(hi + j, th, (size_t)(n - j));
        memcpy(lo + j, tl, (size_t)(n - j));
    }
    return total;
}

/* att_q8_values. A V group (4 keys, dn_kv_v_offset) holds 4 dimensions of
 * its 4 keys in each 16 bytes; against the group's 4 weight bytes of a
 * plane in every lane, SDOT adds the 4 dimensions' sums over the 4 keys.
 * One load brings a plane's weights for 4 groups and SDOT (by element)
 * takes each group's 4 bytes from it. Baseline NEON: SMULL of one group,
 * SMLAL of the next, SADALP into two sums per 4 dimensions, lanes
 * (dimension, key pair), that one ADDP folds at the end. Products are at
 * most 127 * 127 in size, so two fit int16 and the int32 sums of a chunk
 * of keys (Q8V_GROUPS groups: < 127 * 127 * 4 * 64 < 2^23) are exact
 * before they go to the int64 acc. SDOT: rows Q8V_ROWS at a time,
 * Q8V_ND(NR) chunks of 4 dimensions for NR rows, so that 2 NR planes of
 * sums, their weights and a V load fit the 32 registers (one chunk more
 * and GCC 12 spills). Baseline: 1 row x 2 chunks, 8 sums; wider blocks
 * spill as GCC schedules the SMULLs of a step ahead of their SADALPs. */
#if DN_NEON_DOT
enum { Q8V_ACCS = 1, Q8V_ROWS = 3 };
#define Q8V_ND(NR) ((NR) == 1 ? 12 : (NR) == 2 ? 5 : 3)
#define Q8V_DOT1(A, X, W) ((A)[0] = vdotq_laneq_s32((A)[0], X, W, 0))
#define Q8V_DOT2(A, X0, X1, W, E0, E1) ((A)[0] = vdotq_laneq_s32(vdotq_laneq_s32((A)[0], X0, W, E0), X1, W, E1))
#define Q8V_SUM(A) ((A)[0])
#else
enum { Q8V_ACCS = 2, Q8V_ROWS = 1 };
#define Q8V_ND(NR) 2
#define Q8V_LANE(W, E) vreinterpretq_s8_s32(vdupq_laneq_s32(vreinterpretq_s32_s8(W), E))
#define Q8V_DOT1(A, X, W) ((A)[0] = vpadalq_s16((A)[0], vmull_s8(vget_low_s8(X), vget_low_s8(W))), \
                           (A)[1] = vpadalq_s16((A)[1], vmull_high_s8(X, W)))
#define Q8V_DOT2(A, X0, X1, W, E0, E1) \
    ((A)[0] = vpadalq_s16((A)[0], vmlal_s8(vmull_s8(vget_low_s8(X0), vget_low_s8(Q8V_LANE(W, E0))), vget_low_s8(X1), \
                                           vget_low_s8(Q8V_LANE(W, E1)))), \
     (A)[1] = vpadalq_s16((A)[1], vmlal_high_s8(vmull_high_s8(X0, Q8V_LANE(W, E0)), X1, Q8V_LANE(W, E1))))
#define Q8V_SUM(A) vpaddq_s32((A)[0], (A)[1])
#endif

/* Keys in chunks of at most Q8V_GROUPS groups, fewer for a wide head so a
 * chunk's V (<= 32 KB) stays in L1 for the blocks after the first; every
 * block fetches a share of the next chunk (dn_pf_stream), in address
 * order, as avx512_attn.c's values do. */
enum { Q8V_GROUPS = 64, Q8V_SUMS = 24 };

/* NP planes (w, acc: the first; ws and hd apart), dimensions d0 .. d0 +
 * 4 ND (HALF: ND 1, the last 2 dimensions of an hd = 2 mod 4, 8 bytes a
 * group read), over the ng groups from vg, stepping the V fetches pf.
 * The sums are one flat array (at most Q8V_SUMS) that GCC keeps in
 * registers. */
AI void q8v_block(int NP, int ND, int HALF, int hd, const uint8_t *w, size_t ws, const int8_t *vg, int ng, int d0,
                  dn_pf_stream *pf, int64_t *acc)
{
    const size_t gb = 4 * (size_t)hd;
    int32x4_t a[Q8V_SUMS];
    int8x16_t wv[6];
    UNROLL for (int k = 0; k < NP * ND * Q8V_ACCS; k++) a[k] = vdupq_n_s32(0);
    const int8_t *g = vg + 4 * (size_t)d0;
#define Q8V_LD(G, c) (HALF ? vcombine_s8(vld1_s8((G) + 16 * (c)), vdup_n_s8(0)) : vld1q_s8((G) + 16 * (c)))
#define Q8V_PAIR(E0, E1, G0, G1) \
    UNROLL for (int c = 0; c < ND; c++) { \
        const int8x16_t x0 = Q8V_LD(G0, c), x1 = Q8V_LD(G1, c); \
        UNROLL for (int p = 0; p < NP; p++) Q8V_DOT2(&a[(p * ND + c) * Q8V_ACCS], x0, x1, wv[p], E0, E1); \
    }
    int i = 0;
    for (; i + 4 <= ng; i += 4, g += 4 * gb) {
        dn_pf_step(pf, 4 * gb, 0);
        UNROLL for (int p = 0; p < NP; p++) wv[p] = vld1q_s8((const int8_t *)w + p * ws + 4 * (size_t)i);
        Q8V_PAIR(0, 1, g, g + gb) Q8V_PAIR(2, 3, g + 2 * gb, g + 3 * gb)
    }
    for (; i < ng; i++, g += gb) {   /* the last groups: one weight dword in every lane */
        dn_pf_step(pf, gb, 0);
        UNROLL for (int p = 0; p < NP; p++) wv[p] = vreinterpretq_s8_u32(vdupq_n_u32(dn_ld_u32(w + p * ws + 4 * (size_t)i)));
        UNROLL for (int c = 0; c < ND; c++) {
            const int8x16_t x = Q8V_LD(g, c);
            UNROLL for (int p = 0; p < NP; p++) Q8V_DOT1(&a[(p * ND + c) * Q8V_ACCS], x, wv[p]);
        }
    }
#undef Q8V_PAIR
#undef Q8V_LD
    UNROLL for (int p = 0; p < NP; p++) UNROLL for (int c = 0; c < ND; c++) {
        const int32x4_t s = Q8V_SUM(&a[(p * ND + c) * Q8V_ACCS]);
        int64_t *o = acc + p * (size_t)hd + d0 + 4 * c;
        vst1q_s64(o, vaddw_s32(vld1q_s64(o), vget_low_s32(s)));
        if (!HALF) vst1q_s64(o + 2, vaddw_high_s32(vld1q_s64(o + 2), s));
    }
}

/* NR rows: the hd / 4 chunks of 4 dimensions in blocks of at most
 * Q8V_ND(NR), sizes as even as possible, then the last 2 dimensions of an
 * hd = 2 mod 4 (hd is even). Below the most, nd < mx lets the compiler
 * drop the cases from mx on (no copies of the widest block). */
#define Q8VB(ND) case ND: q8v_block(2 * NR, (ND) < mx ? (ND) : 1, 0, hd, w, ws, vg, ng, d0, pf, acc); break
AI void q8v_rows(int NR, int hd, const uint8_t *w, size_t ws, const int8_t *vg, int ng, dn_pf_stream *pf, int64_t *acc)
{
    const int mx = Q8V_ND(NR), full = hd / 4, nb = (full + mx - 1) / mx;
    int d0 = 0;
    for (int b = 0; b < nb; b++) {
        const int nd = full / nb + (b < full % nb);
        if (nd >= mx) q8v_block(2 * NR, mx, 0, hd, w, ws, vg, ng, d0, pf, acc);
        else switch (nd) {
            Q8VB(1); Q8VB(2); Q8VB(3); Q8VB(4); Q8VB(5); Q8VB(6);
            Q8VB(7); Q8VB(8); Q8VB(9); Q8VB(10); Q8VB(11);
        }
        d0 += 4 * nd;
    }
    if (d0 < hd) q8v_block(2 * NR, 1, 1, hd, w, ws, vg, ng, d0, pf, acc);
}
#undef Q8VB

/* the blocks q8v_rows makes for NR rows */
static inline int q8v_blocks(int NR, int hd)
{
    const int mx = Q8V_ND(NR), full = hd / 4;
    (void)NR;   /* baseline: one width for every NR */
    return (full + mx - 1) / mx + (4 * full < hd);
}

static void NK(dn_att_q8_values_)(int hd, int nq, const uint8_t *w, size_t ws, const void *v, int lane, int nk,
                                  int64_t *acc)
{
    const size_t gb = 4 * (size_t)hd;
    const int groups = (lane % 4 + nk + 3) / 4, nb = (nq + Q8V_ROWS - 1) / Q8V_ROWS;
    const int cg = 8192 / hd >= Q8V_GROUPS ? Q8V_GROUPS : 8192 / hd < 4 ? 4 : (8192 / hd) & ~3;
    const int8_t *v0 = (const int8_t *)v + (size_t)(lane / 4) * gb;   /* the group of the first key */
    int sweeps = 0;   /* passes over a chunk: the blocks of every row block */
    for (int b = 0; b < nb; b++) sweeps += q8v_blocks(nq / nb + (b < nq % nb), hd);
    dn_pf_stream pf = dn_pf_stream_at(v0, groups, cg, gb, sweeps);
    for (int g0 = 0; g0 < groups; g0 += cg) {
        const int ng = groups - g0 < cg ? groups - g0 : cg;
        const int8_t *vg = v0 + (size_t)g0 * gb;
        for (int b = 0, r = 0; b < nb; b++) {   /* row blocks as even as possible */
            const int nr = nq / nb + (b < nq % nb);
            const uint8_t *wr = w + (size_t)(2 * r) * ws + 4 * (size_t)g0;
            int64_t *ar = acc + (size_t)(2 * r) * hd;
            switch (nr) {
#if DN_NEON_DOT
            case 3: q8v_rows(3, hd, wr, ws, vg, ng, &pf, ar); break;
            case 2: q8v_rows(2, hd, wr, ws, vg, ng, &pf, ar); break;
#endif
            default: q8v_rows(1, hd, wr, ws, vg, ng, &pf, ar); break;
            }
            r += nr;
        }
    }
}
#endif
