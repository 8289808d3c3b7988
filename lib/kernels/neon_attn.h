/* neon_attn.h - the attention slots (kernels.h) for AArch64 AdvSIMD,
 * included by neon_internal.h (static, named through NK).
 *
 * K comes in tiles of 16 positions (kvcache.h). f16/f32: one query row
 * gets a tile's 16 scores from 4 FMAs per dimension, four rows at a time
 * (16 accumulators). Q8: 4 dimensions of 4 keys per 16 bytes, the bytes
 * flipped back to signed codes (xor 0x80) and one SDOT per 4 keys and row
 * (without the dot product extension: SMULL and pairwise adds, the same
 * exact int32 sums). Values: each V row chunk is converted once per 4
 * query rows whose outputs stay in registers. Every score is the same
 * operations whatever the tile (a sequential fma over d from 0, lanes of
 * FMLA, single rounding, as fmaf; Q8: an exact int32 sum, then two
 * multiplies), every output element a sequential fma over the keys in
 * order, so a row alone or in a batch, with the keys in one call or
 * several, gets the same bits. */
#ifndef DN_NEON_ATTN_H
#define DN_NEON_ATTN_H


/* 4 floats from element x of a tile or row */
AI float32x4_t att_ld4(int type, const uint8_t *base, size_t x)
{
    if (type == DN_KV_F16) return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)(const void *)base + x)));
    if (type == DN_KV_F32) return vld1q_f32((const float *)(const void *)base + x);
    int32_t w;
    memcpy(&w, base + x, 4);
    const int16x8_t h = vmovl_s8(vreinterpret_s8_s32(vdup_n_s32(w)));
    return vcvtq_f32_s32(vmovl_s16(vget_low_s16(h)));
}

/* 2 floats from element x (lanes 2, 3 zero); reads 2 only */
AI float32x4_t att_ld2(int type, const uint8_t *base, size_t x)
{
    if (type == DN_KV_F16) {
        uint32_t w;
        memcpy(&w, base + 2 * x, 4);
        return vcvt_f32_f16(vreinterpret_f16_u64(vcreate_u64(w)));
    }
    if (type == DN_KV_F32) return vcombine_f32(vld1_f32((const float *)(const void *)base + x), vdup_n_f32(0.0f));
    const int8_t *b = (const int8_t *)(const void *)base + x;
    const float t[4] = { (float)b[0], (float)b[1], 0.0f, 0.0f };
    return vld1q_f32(t);
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

/* The weight of key j in a row of probabilities p: p[j], times the scale for Q8 */
AI float att_w(int type, const float *p, const float *vsc, int j) { return type == DN_KV_Q8 ? p[j] * vsc[j] : p[j]; }

/* NQ output rows, dimensions d0 .. d0 + 4 NV, over nk keys in order */
AI void att_values_tile(int NQ, int NV, int type, int hd, const float *p, size_t ps, const uint8_t *v, int nk,
                        const float *vsc, float *out, size_t os, int d0)
{
    float32x4_t acc[4][4];
    UNROLL for (int i = 0; i < NQ; i++) UNROLL for (int c = 0; c < NV; c++)
        acc[i][c] = vld1q_f32(out + i * os + d0 + 4 * c);
    int j = 0;
    for (; j + 4 <= nk; j += 4) {
        float32x4_t pv[4], x[4];
        UNROLL for (int i = 0; i < NQ; i++)
            pv[i] = type == DN_KV_Q8 ? vmulq_f32(vld1q_f32(p + i * ps + j), vld1q_f32(vsc + j)) : vld1q_f32(p + i * ps + j);
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
            const float w = att_w(type, p + i * ps, vsc, j);
            UNROLL for (int c = 0; c < NV; c++) acc[i][c] = vfmaq_n_f32(acc[i][c], x[c], w);
        }
    }
    UNROLL for (int i = 0; i < NQ; i++) UNROLL for (int c = 0; c < NV; c++)
        vst1q_f32(out + i * os + d0 + 4 * c, acc[i][c]);
}

/* NQ output rows, the two dimensions d0, d0 + 1 (the tail of an hd that is
 * not a multiple of 4) */
AI void att_values_tail2(int NQ, int type, int hd, const float *p, size_t ps, const uint8_t *v, int nk,
                         const float *vsc, float *out, size_t os, int d0)
{
    float32x2_t acc[4];
    UNROLL for (int i = 0; i < NQ; i++) acc[i] = vld1_f32(out + i * os + d0);
    for (int j = 0; j < nk; j++) {
        const float32x2_t x = vget_low_f32(att_ld2(type, v, (size_t)j * hd + d0));
        UNROLL for (int i = 0; i < NQ; i++) acc[i] = vfma_n_f32(acc[i], x, att_w(type, p + i * ps, vsc, j));
    }
    UNROLL for (int i = 0; i < NQ; i++) vst1_f32(out + i * os + d0, acc[i]);
}

#define AVT(NV) att_values_tile(NQ, NV, type, hd, p, ps, v, nk, vsc, out, os, d0)
AI void att_values_rows(int NQ, int type, int hd, const float *p, size_t ps, const uint8_t *v, int nk,
                        const float *vsc, float *out, size_t os)
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
    if (d0 < hd) att_values_tail2(NQ, type, hd, p, ps, v, nk, vsc, out, os, d0);
}
#undef AVT

AI void att_values_all(int type, int hd, int nq, const float *p, size_t ps, const uint8_t *v, int nk,
                       const float *vsc, float *out, size_t os)
{
    for (int i = 0; i < nq; i += 4)
        switch (nq - i) {
        case 1: att_values_rows(1, type, hd, p + i * ps, ps, v, nk, vsc, out + i * os, os); break;
        case 2: att_values_rows(2, type, hd, p + i * ps, ps, v, nk, vsc, out + i * os, os); break;
        case 3: att_values_rows(3, type, hd, p + i * ps, ps, v, nk, vsc, out + i * os, os); break;
        default: att_values_rows(4, type, hd, p + i * ps, ps, v, nk, vsc, out + i * os, os); break;
        }
}

static void NK(dn_att_values_)(int hd, int nq, const float *p, size_t ps, const void *v, int nk, int type,
                               const float *vsc, float *out, size_t os)
{
    if (type == DN_KV_F16) att_values_all(DN_KV_F16, hd, nq, p, ps, v, nk, vsc, out, os);
    else if (type == DN_KV_F32) att_values_all(DN_KV_F32, hd, nq, p, ps, v, nk, vsc, out, os);
    else att_values_all(DN_KV_Q8, hd, nq, p, ps, v, nk, vsc, out, os);
}
#endif
