/* neon_attn.h - the attention slots (kernels.h) for AArch64 AdvSIMD,
 * included by neon_internal.h (static, named through NK).
 *
 * K comes in tiles of 16 positions, dimension-major (kvcache.h): one query
 * row gets a tile's 16 scores from 4 FMAs per dimension, four rows at a
 * time (16 accumulators). Values: each V row chunk is converted once per 4
 * query rows whose outputs stay in registers. Every score is a sequential
 * fma over d from 0 (then times the key's scale for Q8), every output
 * element a sequential fma over the keys in order (lanes of FMLA, single
 * rounding, as fmaf), so a row alone or in a batch, with the keys in one
 * call or several, gets the same bits. */
#ifndef DN_NEON_ATTN_H
#define DN_NEON_ATTN_H

AI size_t att_elem(int type) { return type == DN_KV_F32 ? 4 : type == DN_KV_F16 ? 2 : 1; }

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

/* Scores of NQ rows for tile t (dimension d of it at tile + 16 d elements),
 * lanes lane..lane+nk-1 of the run kept. */
AI void att_scores_tile(int NQ, int type, int hd, const float *q, size_t qs, const uint8_t *k, int t, int lane, int nk,
                        const float *ksc, float *s, size_t ss)
{
    const uint8_t *tile = k + (size_t)t * (size_t)hd * 16 * att_elem(type);
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
    const int first = 16 * t;
    const int a = lane > first ? lane - first : 0, b = lane + nk - first < 16 ? lane + nk - first : 16;
    UNROLL for (int i = 0; i < NQ; i++) {
        float buf[16];
        float *dst = s + (size_t)i * ss + (first + a - lane);
        float *o = a == 0 && b == 16 ? dst : buf;   /* a partial tile at either end of the run goes through buf */
        UNROLL for (int c = 0; c < 4; c++)
            vst1q_f32(o + 4 * c, type == DN_KV_Q8 ? vmulq_f32(acc[i][c], vld1q_f32(ksc + first + 4 * c)) : acc[i][c]);
        if (o == buf) memcpy(dst, buf + a, sizeof(float) * (size_t)(b - a));
    }
}

AI void att_scores_all(int type, int hd, int nq, const float *q, size_t qs, const uint8_t *k, int lane, int nk,
                       const float *ksc, float *s, size_t ss)
{
    const int tiles = (lane + nk + 15) / 16;
    for (int t = 0; t < tiles; t++)
        for (int i = 0; i < nq; i += 4) {
            const float *qi = q + (size_t)i * qs;
            float *si = s + (size_t)i * ss;
            switch (nq - i) {
            case 1: att_scores_tile(1, type, hd, qi, qs, k, t, lane, nk, ksc, si, ss); break;
            case 2: att_scores_tile(2, type, hd, qi, qs, k, t, lane, nk, ksc, si, ss); break;
            case 3: att_scores_tile(3, type, hd, qi, qs, k, t, lane, nk, ksc, si, ss); break;
            default: att_scores_tile(4, type, hd, qi, qs, k, t, lane, nk, ksc, si, ss); break;
            }
        }
}

static void NK(dn_att_scores_)(int hd, int nq, const float *q, size_t qs, const void *k, int lane, int nk, int type,
                               const float *ksc, float *s, size_t ss)
{
    if (type == DN_KV_F16) att_scores_all(DN_KV_F16, hd, nq, q, qs, k, lane, nk, ksc, s, ss);
    else if (type == DN_KV_F32) att_scores_all(DN_KV_F32, hd, nq, q, qs, k, lane, nk, ksc, s, ss);
    else att_scores_all(DN_KV_Q8, hd, nq, q, qs, k, lane, nk, ksc, s, ss);
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
