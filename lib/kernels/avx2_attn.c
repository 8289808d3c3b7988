/* avx2_attn.c - the attention slots (kernels.h) for AVX2 + FMA + F16C, the
 * 8-lane version of avx512_attn.c: K comes in tiles of 16 positions
 * (kvcache.h). f16/f32: a query row gets a tile's 16 scores from two FMAs
 * per dimension, six rows at a time (12 independent chains), f16 tiles
 * fetched DN_ATT_PF_F16_TILES ahead (kernels_internal.h); Q8: integer
 * dot products of the codes (avx2_attn_q8.h). Values: 6 query rows x 16
 * dimensions of outputs in registers, keys in chunks that stay in L1; Q8
 * values as exact integer sums of 7-bit weights (the softmax's exp
 * fused into making them) times the codes (avx2_attn_q8.h). Every score
 * is the same operations whatever the tile (a sequential fma over d from
 * 0; Q8: an exact int32 sum, then two multiplies), every f16/f32 output
 * element a sequential fma over the keys in order and every Q8 one an
 * exact integer sum, so a token alone and in a batch get identical bits. */
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

/* Query rows per pass over a K tile or a V chunk: 12 accumulator chains
 * (4-cycle FMAs, two a cycle: 8 chains left no slack) and each converted
 * K/V vector used 6 times. A 512-token prompt after 3584 positions, one
 * thread: 37.2-37.3 -> 39.0-39.3 tokens/s against 4 rows (scores and
 * values both gain; 2026-12-07). Decoding (4 rows) is unchanged. */
enum { ATT_NQ = 6 };

/* Scores of NQ rows for tile t, lanes lane..lane+nk-1 of the run kept. */
AI void scores_tile(int NQ, int type, int hd, const float *q, size_t qs, const uint8_t *k, size_t tb, int t, int lane,
                    int nk, float *s, size_t ss)
{
    __m256 acc[ATT_NQ][2];
    UNROLL for (int i = 0; i < NQ; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    const uint8_t *tile = k + (size_t)t * tb;
    for (int d = 0; d < hd; d += 2) {   /* head_dim is even (config.c); f16: a line per 2 dimensions */
        if (type == DN_KV_F16) DN_ATT_FETCH(DN_FETCH_ADDR(tile, DN_ATT_PF_F16_TILES * tb + 32 * (size_t)d));
        UNROLL for (int e = d; e < d + 2; e++) {
            const __m256 k0 = load_keys(tile, type, e, 0), k1 = load_keys(tile, type, e, 1);
            UNROLL for (int i = 0; i < NQ; i++) {
                const __m256 qv = _mm256_set1_ps(q[(size_t)i * qs + e]);
                acc[i][0] = _mm256_fmadd_ps(qv, k0, acc[i][0]);
                acc[i][1] = _mm256_fmadd_ps(qv, k1, acc[i][1]);
            }
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
        for (int i = 0; i < nq; i += ATT_NQ) {
            const float *qi = q + (size_t)i * qs;
            float *si = s + (size_t)i * ss;
            switch (nq - i) {
            case 1: scores_tile(1, type, hd, qi, qs, k, tb, t, lane, nk, si, ss); break;
            case 2: scores_tile(2, type, hd, qi, qs, k, tb, t, lane, nk, si, ss); break;
            case 3: scores_tile(3, type, hd, qi, qs, k, tb, t, lane, nk, si, ss); break;
            case 4: scores_tile(4, type, hd, qi, qs, k, tb, t, lane, nk, si, ss); break;
            case 5: scores_tile(5, type, hd, qi, qs, k, tb, t, lane, nk, si, ss); break;
            default: scores_tile(6, type, hd, qi, qs, k, tb, t, lane, nk, si, ss); break;
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
 * of VCHUNK; per chunk, up to ATT_NQ query rows x 16 dimensions of outputs
 * in registers (12 accumulators) while each V row's 16 elements are
 * converted once for all those rows, pass after pass over the dimensions with the
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
    __m256 acc[ATT_NQ][2];
    UNROLL for (int i = 0; i < NQ; i++) UNROLL for (int c = 0; c < NV; c++) {
        const float *o = out + i * os + d0 + 8 * c;
        acc[i][c] = c == NV - 1 && nd_last < 8 ? _mm256_maskload_ps(o, lane_mask(nd_last)) : _mm256_loadu_ps(o);
    }
    for (int j = 0; j < nk; j++) {
        const uint8_t *row = v + (size_t)j * vs;
        if (j < pf_lines) DN_ATT_FETCH(pf + 64 * (size_t)j);
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
    for (int i0 = 0; i0 < nq; i0 += ATT_NQ) {
        const int m = nq - i0 < ATT_NQ ? nq - i0 : ATT_NQ;
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
                case 4: values_rows(4, type, nv, w, ps, vc, vs, n, o, os, d0, last, pf, pf_lines); break;
                case 5: values_rows(5, type, nv, w, ps, vc, vs, n, o, os, d0, last, pf, pf_lines); break;
                default: values_rows(6, type, nv, w, ps, vc, vs, n, o, os, d0, last, pf, pf_lines); break;
                }
            }
        }
    }
}

void dn_att_values_avx2(int hd, int nq, const float *p, size_t ps, const void *v, int nk, int type, float *out,
                        size_t os)
{
    if (type == DN_KV_F16) values_typed(DN_KV_F16, hd, nq, p, ps, v, nk, out, os);
    else values_typed(DN_KV_F32, hd, nq, p, ps, v, nk, out, os);
}

/* ---- Q8 values as integer sums (kernels.h att_q8_*) ----------------------- */

/* The weights of 8 keys, bytes 0..7 hi and 8..15 lo: (e * vsc) * c as
 * scalar multiplies it, clamped before rounding (the same as after: 16383
 * is an integer), rounded to nearest-even whatever the MXCSR mode. */
AI __m128i q8_weights8(__m256 e, __m256 vsc, __m256 c)
{
    const __m256 t = _mm256_min_ps(_mm256_mul_ps(_mm256_mul_ps(e, vsc), c), _mm256_set1_ps((float)DN_ATT_W_MAX));
    const __m256i w = _mm256_cvtps_epi32(_mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    const __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
    const __m128i low = _mm_set1_epi16((1 << DN_ATT_W_SHIFT) - 1);
    return _mm_packus_epi16(_mm_srli_epi16(w16, DN_ATT_W_SHIFT), _mm_and_si128(w16, low));
}

/* sum + round-even(e * 2^DN_ATT_E_SHIFT) of 8 lanes in int64: the counts
 * are >= 0, so their even and odd lanes widen in place. */
AI __m256i e_counts(__m256i sum, __m256 e)
{
    const __m256 t = _mm256_mul_ps(e, _mm256_set1_ps((float)(1 << DN_ATT_E_SHIFT)));
    const __m256i u = _mm256_cvtps_epi32(_mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    sum = _mm256_add_epi64(sum, _mm256_and_si256(u, _mm256_set1_epi64x(0xFFFFFFFF)));
    return _mm256_add_epi64(sum, _mm256_srli_epi64(u, 32));
}

/* The exps of a chunk of 128 keys first, into L1, then their weights and
 * counts, masks only on the last 8. In one loop the exp's long dependency
 * chain left too few steps in flight: 24 layers x 32 rows x 4096 keys
 * took 3.45-3.55 ms with the row max (softmax, then weights: 2.98-3.15),
 * split 1.98 (2026-12-06, alternating in one process). */
int64_t dn_att_q8_weights_avx2(const float *s, float m, const float *vsc, int n, float c, uint8_t *hi, uint8_t *lo)
{
    const __m256 cc = _mm256_set1_ps(c), mm = _mm256_set1_ps(m);
    __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
    _Alignas(32) float eb[128];
    for (int j = 0; j < n; j += 128) {
        const int len = n - j < 128 ? n - j : 128;
        int i = 0;
        for (; i + 8 <= len; i += 8) _mm256_store_ps(eb + i, exp256(_mm256_sub_ps(_mm256_loadu_ps(s + j + i), mm)));
        if (i < len) {   /* the masked lanes' e is 0 */
            const __m256i k = lane_mask(len - i);
            _mm256_store_ps(eb + i, _mm256_and_ps(exp256(_mm256_sub_ps(_mm256_maskload_ps(s + j + i, k), mm)),
                                                  _mm256_castsi256_ps(k)));
        }
        for (i = 0; i + 16 <= len; i += 16) {
            const __m256 e0 = _mm256_load_ps(eb + i), e1 = _mm256_load_ps(eb + i + 8);
            const __m128i b0 = q8_weights8(e0, _mm256_loadu_ps(vsc + j + i), cc);
            const __m128i b1 = q8_weights8(e1, _mm256_loadu_ps(vsc + j + i + 8), cc);
            _mm_storeu_si128((__m128i *)(void *)(hi + j + i), _mm_unpacklo_epi64(b0, b1));
            _mm_storeu_si128((__m128i *)(void *)(lo + j + i), _mm_unpackhi_epi64(b0, b1));
            s0 = e_counts(s0, e0);
            s1 = e_counts(s1, e1);
        }
        for (; i < len; i += 8) {   /* up to 15 keys through a buffer: lanes past len are 0 */
            const __m256i k = lane_mask(len - i);
            const __m256 e = _mm256_and_ps(_mm256_load_ps(eb + i), _mm256_castsi256_ps(k));
            const __m128i b = q8_weights8(e, _mm256_maskload_ps(vsc + j + i, k), cc);
            uint8_t bh[8], bl[8];
            const int r = len - i < 8 ? len - i : 8;
            _mm_storel_epi64((__m128i *)(void *)bh, b);
            _mm_storel_epi64((__m128i *)(void *)bl, _mm_unpackhi_epi64(b, b));
            memcpy(hi + j + i, bh, (size_t)r);
            memcpy(lo + j + i, bl, (size_t)r);
            s0 = e_counts(s0, e);
        }
    }
    const __m256i sum = _mm256_add_epi64(s0, s1);
    const __m128i h = _mm_add_epi64(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
    return _mm_cvtsi128_si64(_mm_add_epi64(h, _mm_unpackhi_epi64(h, h)));
}

void dn_att_q8_values_avx2(int hd, int nq, const uint8_t *w, size_t ws, const void *v, int lane, int nk, int64_t *acc)
{
    att_q8_values(hd, nq, w, ws, v, lane, nk, acc);
}
