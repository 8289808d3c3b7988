/* avx2_attn.c - the attention slots (kernels.h) for AVX2 + FMA + F16C, the
 * 8-lane version of avx512_attn.c: K comes in tiles of 16 positions
 * (kvcache.h). f16/f32: a query row gets a tile's 16 scores from two FMAs
 * per dimension, four rows at a time (8 independent chains); Q8: integer
 * dot products of the codes (avx2_attn_q8.h). Values: 4 query rows x 16
 * dimensions of outputs in registers, keys in chunks that stay in L1; Q8
 * values as exact integer sums of 7-bit weights times the codes
 * (avx2_attn_q8.h). Every score is the same operations whatever the tile
 * (a sequential fma over d from 0; Q8: an exact int32 sum, then two
 * multiplies) and every output element a sequential fma over the keys in
 * order, so a token alone and in a batch get identical bits. */
#include <immintrin.h>
#include "kernels/kernels_internal.h"
#include "kernels/avx2_internal.h"

#define DN_ATT_VNNI 0
#include "kernels/avx2_attn_q8.h"


/* 8 floats of an f16 or f32 V row from element d0, lanes >= left zero (not read) */
AI __m256 load_row(const uint8_t *row, int type, int d0, int left)
{
    if (type == DN_KV_F32) {
        const float *f = (const float *)(const void *)row + d0;
        return left >= 8 ? _mm256_loadu_ps(f) : _mm256_maskload_ps(f, lane_mask(left));
    }
    const uint8_t *src = row + (size_t)d0 * 2;
    uint8_t t[16] = { 0 };
    if (left < 8) src = memcpy(t, src, 2 * (size_t)left);
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)src));
}

/* Dimension d, lanes 8h..8h+7, of the 16 keys of an f16 or f32 tile. */
AI __m256 load_keys(const uint8_t *tile, int type, int d, int h)
{
    if (type == DN_KV_F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(tile + 32 * (size_t)d + 16 * h)));
    return _mm256_loadu_ps((const float *)(const void *)tile + 16 * (size_t)d + 8 * h);
}

/* Scores of NQ rows for tile t, lanes lane..lane+nk-1 of the run kept. */
AI void scores_tile(int NQ, int type, int hd, const float *q, size_t qs, const uint8_t *k, size_t tb, int t, int lane,
                    int nk, float *s, size_t ss)
{
    __m256 acc[4][2];
    UNROLL for (int i = 0; i < NQ; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    const uint8_t *tile = k + (size_t)t * tb;
    for (int d = 0; d < hd; d++) {
        const __m256 k0 = load_keys(tile, type, d, 0), k1 = load_keys(tile, type, d, 1);
        UNROLL for (int i = 0; i < NQ; i++) {
            const __m256 qv = _mm256_set1_ps(q[(size_t)i * qs + d]);
            acc[i][0] = _mm256_fmadd_ps(qv, k0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(qv, k1, acc[i][1]);
        }
    }
    UNROLL for (int i = 0; i < NQ; i++) att_store16(acc[i][0], acc[i][1], t, lane, nk, s + (size_t)i * ss);
}

AI void scores_typed(int type, int hd, int nq, const float *q, size_t qs, const uint8_t *k, int lane, int nk,
                     float *s, size_t ss)
{
    const size_t tb = dn_kv_tile_bytes(hd, type);
    const int tiles = (lane + nk + 15) / 16;
    for (int t = 0; t < tiles; t++)
        for (int i = 0; i < nq; i += 4) {
            const float *qi = q + (size_t)i * qs;
            float *si = s + (size_t)i * ss;
            switch (nq - i) {
            case 1: scores_tile(1, type, hd, qi, qs, k, tb, t, lane, nk, si, ss); break;
            case 2: scores_tile(2, type, hd, qi, qs, k, tb, t, lane, nk, si, ss); break;
            case 3: scores_tile(3, type, hd, qi, qs, k, tb, t, lane, nk, si, ss); break;
            default: scores_tile(4, type, hd, qi, qs, k, tb, t, lane, nk, si, ss); break;
            }
        }
}

float dn_kv_quantize_avx2(const float *x, int n, int8_t *q) { return kv_quantize_avx2(x, n, q); }

void dn_att_scores_avx2(int hd, int nq, const float *q, size_t qs, const void *k, int lane, int nk, int type,
                        const float *ksc, float *s, size_t ss)
{
    if (type == DN_KV_F16) scores_typed(DN_KV_F16, hd, nq, q, qs, k, lane, nk, s, ss);
    else if (type == DN_KV_F32) scores_typed(DN_KV_F32, hd, nq, q, qs, k, lane, nk, s, ss);
    else att_scores_q8(hd, nq, q, qs, k, lane, nk, ksc, s, ss);
}

/* Values (f16 / f32; Q8 goes through the att_q8 slots): keys in chunks
 * of VCHUNK; per chunk, 4 query rows x 16 dimensions of outputs in
 * registers (8 accumulators) while each V row's 16 elements are converted
 * once for all 4 rows, pass after pass over the dimensions with the
 * chunk's rows in L1, and the next chunk's lines fetched during those
 * passes. Before (2 rows x 40 dimensions, one long stream, every V
 * element converted twice for a KV group's 4 query heads), the f16 values
 * of a token after 4096 positions, 24 layers x 8 heads, cache in DRAM,
 * one core, took 9.6-10.9 ms; now 7.3-8.0, about their time with the
 * cache in L3 (2026-12-06). */
enum { VCHUNK = 128 };

/* NQ output rows, dimensions d0 .. d0 + 8 NV (the last vector nd_last
 * wide), keys 0..nk-1 of the chunk v with weights w[i * ws + j] */
AI void values_tile(int NQ, int NV, int type, const float *w, size_t ws, const uint8_t *v, size_t vs, int nk,
                    float *out, size_t os, int d0, int nd_last, const uint8_t *pf, int pf_lines)
{
    __m256 acc[4][2];
    UNROLL for (int i = 0; i < NQ; i++) UNROLL for (int c = 0; c < NV; c++) {
        const float *o = out + i * os + d0 + 8 * c;
        acc[i][c] = c == NV - 1 && nd_last < 8 ? _mm256_maskload_ps(o, lane_mask(nd_last)) : _mm256_loadu_ps(o);
    }
    for (int j = 0; j < nk; j++) {
        const uint8_t *row = v + (size_t)j * vs;
        if (j < pf_lines) _mm_prefetch((const char *)pf + 64 * (size_t)j, _MM_HINT_T0);
        __m256 x[2];
        UNROLL for (int c = 0; c < NV; c++) x[c] = load_row(row, type, d0 + 8 * c, c == NV - 1 ? nd_last : 8);
        UNROLL for (int i = 0; i < NQ; i++) {
            const __m256 wv = _mm256_broadcast_ss(w + i * ws + j);
            UNROLL for (int c = 0; c < NV; c++) acc[i][c] = _mm256_fmadd_ps(wv, x[c], acc[i][c]);
        }
    }
    UNROLL for (int i = 0; i < NQ; i++) UNROLL for (int c = 0; c < NV; c++) {
        float *o = out + i * os + d0 + 8 * c;
        if (c == NV - 1 && nd_last < 8) _mm256_maskstore_ps(o, lane_mask(nd_last), acc[i][c]);
        else _mm256_storeu_ps(o, acc[i][c]);
    }
}

#define VT(NQ, NV, L) values_tile(NQ, NV, type, w, ws, v, vs, nk, out, os, d0, L, pf, pf_lines)
AI void values_rows(int NQ, int type, int nv, const float *w, size_t ws, const uint8_t *v, size_t vs, int nk,
                    float *out, size_t os, int d0, int last, const uint8_t *pf, int pf_lines)
{
    if (nv == 2 && last == 8) VT(NQ, 2, 8);   /* whole vectors: no masks in the loop */
    else if (nv == 2) VT(NQ, 2, last);
    else VT(NQ, 1, last);
}
#undef VT

/* The lines pass b over a chunk of n keys fetches of the next chunk
 * (next bytes at nc): its lines b n .. b n + n - 1, those that exist. */
AI int pass_lines(const uint8_t *nc, int64_t next, int b, int n, const uint8_t **pf)
{
    const int64_t first = (int64_t)b * n * 64, left = next > first ? (next - first + 63) / 64 : 0;
    *pf = nc + first;
    return (int)(left < n ? left : n);
}

AI void values_typed(int type, int hd, int nq, const float *p, size_t ps, const uint8_t *v, int nk, float *out,
                     size_t os)
{
    const size_t vs = (size_t)hd * dn_kv_elem_bytes(type);
    for (int i0 = 0; i0 < nq; i0 += 4) {
        const int m = nq - i0 < 4 ? nq - i0 : 4;
        float *o = out + (size_t)i0 * os;
        for (int j0 = 0; j0 < nk; j0 += VCHUNK) {
            const int n = nk - j0 < VCHUNK ? nk - j0 : VCHUNK;
            const float *w = p + (size_t)i0 * ps + j0;
            const uint8_t *vc = v + (size_t)j0 * vs;
            /* the next chunk's lines, spread over this chunk's passes */
            const int64_t next = (int64_t)(nk - j0 - n < VCHUNK ? nk - j0 - n : VCHUNK) * (int64_t)vs;
            for (int d0 = 0; d0 < hd; d0 += 16) {
                const int nd = hd - d0 < 16 ? hd - d0 : 16, nv = (nd + 7) / 8, last = nd - 8 * (nv - 1);
                const uint8_t *pf;
                const int pf_lines = pass_lines(vc + (size_t)n * vs, next, d0 / 16, n, &pf);
                switch (m) {
                case 1: values_rows(1, type, nv, w, ps, vc, vs, n, o, os, d0, last, pf, pf_lines); break;
                case 2: values_rows(2, type, nv, w, ps, vc, vs, n, o, os, d0, last, pf, pf_lines); break;
                case 3: values_rows(3, type, nv, w, ps, vc, vs, n, o, os, d0, last, pf, pf_lines); break;
                default: values_rows(4, type, nv, w, ps, vc, vs, n, o, os, d0, last, pf, pf_lines); break;
                }
            }
        }
    }
}

void dn_att_values_avx2(int hd, int nq, const float *p, size_t ps, const void *v, int nk, int type, const float *vsc,
                        float *out, size_t os)
{
    (void)vsc;   /* f16 / f32 only: Q8 goes through the att_q8 slots */
    if (type == DN_KV_F16) values_typed(DN_KV_F16, hd, nq, p, ps, v, nk, out, os);
    else values_typed(DN_KV_F32, hd, nq, p, ps, v, nk, out, os);
}

/* ---- Q8 values as integer sums (kernels.h att_q8_*) ----------------------- */

float dn_att_q8_wmax_avx2(const float *p, const float *vsc, int n)
{
    __m256 m = _mm256_setzero_ps(), nan = _mm256_setzero_ps();
    for (int j = 0; j < n; j += 8) {
        const __m256i k = lane_mask(n - j);   /* lanes past n: 0 * 0 */
        const __m256 t = _mm256_mul_ps(_mm256_maskload_ps(p + j, k), _mm256_maskload_ps(vsc + j, k));
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(t, t, _CMP_UNORD_Q));
        m = _mm256_max_ps(t, m);   /* keeps m unless t > m: the lanes stay >= +0 and never NaN */
    }
    if (_mm256_movemask_ps(nan)) return NAN;
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
}

/* The weights of 8 keys, bytes 0..7 hi and 8..15 lo: (p * vsc) * c as
 * scalar multiplies it, clamped before rounding (the same as after: 16383
 * is an integer), rounded to nearest-even whatever the MXCSR mode. */
AI __m128i q8_weights8(__m256 p, __m256 vsc, __m256 c)
{
    const __m256 t = _mm256_min_ps(_mm256_mul_ps(_mm256_mul_ps(p, vsc), c), _mm256_set1_ps((float)DN_ATT_W_MAX));
    const __m256i w = _mm256_cvtps_epi32(_mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    const __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
    const __m128i low = _mm_set1_epi16((1 << DN_ATT_W_SHIFT) - 1);
    return _mm_packus_epi16(_mm_srli_epi16(w16, DN_ATT_W_SHIFT), _mm_and_si128(w16, low));
}

void dn_att_q8_weights_avx2(const float *p, const float *vsc, int n, float c, int pad, uint8_t *hi, uint8_t *lo)
{
    const __m256 cc = _mm256_set1_ps(c);
    memset(hi, 0, (size_t)pad);
    memset(lo, 0, (size_t)pad);
    hi += pad;
    lo += pad;
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m128i b = q8_weights8(_mm256_loadu_ps(p + j), _mm256_loadu_ps(vsc + j), cc);
        _mm_storel_epi64((__m128i *)(void *)(hi + j), b);
        _mm_storel_epi64((__m128i *)(void *)(lo + j), _mm_unpackhi_epi64(b, b));
    }
    /* the last n % 8 keys and the zeros up to a multiple of 4 from the
     * planes' start: at most 7 + 3 bytes, the masked lanes give 0 */
    const int rest = ((pad + n + 3) & ~3) - pad - j;
    if (rest > 0) {
        const __m256i k = lane_mask(n - j);
        const __m128i b = q8_weights8(_mm256_maskload_ps(p + j, k), _mm256_maskload_ps(vsc + j, k), cc);
        uint8_t bh[16] = { 0 }, bl[16] = { 0 };
        _mm_storel_epi64((__m128i *)(void *)bh, b);
        _mm_storel_epi64((__m128i *)(void *)bl, _mm_unpackhi_epi64(b, b));
        memcpy(hi + j, bh, (size_t)rest);
        memcpy(lo + j, bl, (size_t)rest);
    }
}

void dn_att_q8_values_avx2(int hd, int nq, const uint8_t *w, size_t ws, const void *v, int lane, int nk, int64_t *acc)
{
    att_q8_values(hd, nq, w, ws, v, lane, nk, acc);
}
