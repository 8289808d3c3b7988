/* avx512_attn.c - attention over a run of cached keys/values for several
 * query rows at once (the heads of one KV group, several tokens of a
 * prompt), AVX-512F (+ VNNI for Q8 scores). Same flags as avx512.c.
 *
 * Scores: the cache stores K in tiles of 16 positions (kvcache.h), so one
 * load gives a dimension of 16 keys (f16/f32; one FMA per dimension gives
 * a query 16 scores) or 4 dimensions of 16 keys (Q8; one vpdpbusd against
 * 4 bytes of the quantized query): no transposes, no horizontal sums, and
 * a decoding step streams K at memory speed. One tile at a time, its
 * lines in address order: stepping through two tiles side by side (two
 * streams 1.3-2.5 KB apart) left the hardware prefetcher behind, and one
 * tile a step decoded after 4096 positions 1-9 % faster (f16 KV) and
 * 1-2.5 % faster (Q8), alternating in one process (2026-12-06). Up to four
 * query rows are in flight, two sums each (8 independent chains); Q8 does
 * 4x the multiply-adds per instruction of f32. Values: f16/f32 convert
 * each V row once per 4 query rows whose outputs stay in registers; Q8
 * multiplies 4 keys' codes by 4 integer weights per vpdpbusd (V tiles
 * hold 16 dimensions of 4 keys per 64 bytes), half the instructions of
 * the float FMAs it replaced, and the weights come straight from the
 * scores (the softmax's exp fused in, no probability rows). Every score is the same operations whatever
 * the tile (f16/f32: fma chains over the even and the odd d from 0, then
 * their sum; Q8: an exact int32 sum, then two multiplies), every f16/f32
 * output element a sequential fma over the keys in order, every Q8 one an
 * exact integer sum, so a token alone and in a batch get identical bits. */
#include <immintrin.h>
#include "kernels/kernels_internal.h"
#include "kernels/avx512_internal.h"

/* Software prefetch distances. Decoding streams each head's keys, then
 * its values, from DRAM on one core, faster than the hardware prefetcher
 * keeps up with. A microbenchmark (24 layers x 8 heads after 4096
 * positions, the cache in DRAM, one core) measured:
 * - Q8: K tiles 16 ahead (16 x 1280 bytes for Danube), V rows 128 ahead
 *   (x 80 bytes): attention 10.7-11.6 -> 7.3-7.7 ms a token (2026-12-05);
 * - f16: K tiles 6 ahead (6 x 2560 bytes): scores 13-17 -> 7.2-7.3 ms
 *   (2 and 4 tiles ahead: 7.2-10.4); V rows 48 ahead (x 160 bytes):
 *   values 5.9 -> 4.9-5.3 ms (16 ahead: 5.2-5.4, 128: 4.7-6.4), 2026-12-06.
 * Rechecked once the scores took one tile a step, decoding alternating in
 * one process: f16 6 tiles ahead against 3 and 10, Q8 16 against 8, the
 * same or better at 1 and 2 threads (2026-12-06). These fetches go into
 * L1: into L2, as the AVX2 levels' do (kernels_internal.h), decoding
 * after 4096 positions ran alike (f16 cache) or 2-3 % faster (Q8) at one
 * thread and 1-4 % slower at two (three rounds each, 2026-12-07). */
enum { PF_ROWS_F16 = 48, PF_TILES = DN_ATT_PF_Q8_TILES };

AI __mmask16 mask_of(int left) { return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1); }

/* Dimension d of the 16 keys of a tile (f16 or f32). */
AI __m512 load_keys(const uint8_t *tile, int type, int d)
{
    if (type == DN_KV_F16) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(tile + 32 * (size_t)d)));
    return _mm512_loadu_ps((const float *)(const void *)tile + 16 * (size_t)d);
}

/* 16 floats of a V row from element d0 (lanes >= left zero, not read) */
AI __m512 load_row(const uint8_t *row, int type, int d0, int left)
{
    const __mmask16 m = mask_of(left);
    if (type == DN_KV_F16) return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)(const void *)row + d0));
    if (type == DN_KV_F32) return _mm512_maskz_loadu_ps(m, (const float *)(const void *)row + d0);
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, (const int8_t *)(const void *)row + d0)));
}

/* Store r, the scores of tile t for one row, keeping lanes lane..lane+nk-1 of the run. */
AI void store_scores(__m512 r, int t, int lane, int nk, float *s)
{
    const int first = 16 * t;                                       /* lane index of the tile's lane 0 */
    const int a = lane > first ? lane - first : 0, b = lane + nk - first < 16 ? lane + nk - first : 16;
    float *dst = s + (first + a - lane);
    if (a == 0 && b == 16) _mm512_storeu_ps(dst, r);
    else _mm512_mask_storeu_ps(dst, mask_of(b - a), _mm512_maskz_compress_ps((__mmask16)(mask_of(b) & ~mask_of(a)), r));
}

/* Scores of NQ rows for tile t, f16/f32: two fma chains per row, over
 * the even and the odd dimensions, added at the end (8 chains in flight
 * for 4 rows; one chain each left decoding 1-3 % slower, 2026-12-06).
 * Prompts take 8 rows a pass, 16 chains, each converted K vector used 8
 * times: a 512-token prompt after 3584 positions 1.04-1.05x faster than
 * 4 rows (one thread, 2026-12-07); values stay at 4 rows x 5 vectors (8
 * rows x 3 vectors in two passes was no faster). */
enum { SCORE_NQ = 8 };
AI void scores_tile(int NQ, int type, int hd, const float *q, size_t qs, const uint8_t *k, size_t tb, int t, int lane,
                    int nk, float *s, size_t ss)
{
    __m512 acc[SCORE_NQ][2];
    UNROLL for (int i = 0; i < NQ; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    const uint8_t *tile = k + (size_t)t * tb;
    for (int d = 0; d < hd; d += 2) {   /* head_dim is even (config.c) */
        if (type == DN_KV_F16)   /* a line is 2 dimensions */
            _mm_prefetch((const char *)DN_FETCH_ADDR(tile, (size_t)DN_ATT_PF_F16_TILES * tb + 32 * (size_t)d), _MM_HINT_T0);
        const __m512 k0 = load_keys(tile, type, d), k1 = load_keys(tile, type, d + 1);
        UNROLL for (int i = 0; i < NQ; i++) {
            acc[i][0] = _mm512_fmadd_ps(_mm512_set1_ps(q[(size_t)i * qs + d]), k0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(_mm512_set1_ps(q[(size_t)i * qs + d + 1]), k1, acc[i][1]);
        }
    }
    UNROLL for (int i = 0; i < NQ; i++) store_scores(_mm512_add_ps(acc[i][0], acc[i][1]), t, lane, nk, s + (size_t)i * ss);
}

/* The same for Q8: rows i0.. of r (quantized queries), int32 sums of
 * (k + 128) * q from -bias, i.e. exact sums of k * q, in two halves
 * (even and odd groups of 4 dimensions; integer sums, so the split
 * changes no bit). */
AI void scores_tile_q8(int NQ, const dn_att_q8 *r, int i0, const uint8_t *k, size_t tb, int t, int lane, int nk,
                       const float *ksc, float *s, size_t ss)
{
    __m512i acc[4][2];
    UNROLL for (int i = 0; i < NQ; i++) { acc[i][0] = _mm512_set1_epi32(-r->bias[i0 + i]); acc[i][1] = _mm512_setzero_si512(); }
    const uint8_t *tile = k + (size_t)t * tb;
    const size_t ahead = (size_t)PF_TILES * tb;   /* bytes on from tile: may lie past the cache */
    int c = 0;
    for (; c + 8 <= r->hd4; c += 8) {
        _mm_prefetch((const char *)DN_FETCH_ADDR(tile, ahead + 16 * (size_t)c), _MM_HINT_T0);
        _mm_prefetch((const char *)DN_FETCH_ADDR(tile, ahead + 16 * (size_t)c + 64), _MM_HINT_T0);
        const __m512i k0 = _mm512_loadu_si512(tile + 16 * (size_t)c), k1 = _mm512_loadu_si512(tile + 16 * (size_t)c + 64);
        UNROLL for (int i = 0; i < NQ; i++) {
            acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], k0, _mm512_set1_epi32((int)dn_ld_u32(&r->q[i0 + i][c])));
            acc[i][1] = _mm512_dpbusd_epi32(acc[i][1], k1, _mm512_set1_epi32((int)dn_ld_u32(&r->q[i0 + i][c + 4])));
        }
    }
    if (c < r->hd4) {   /* hd4 an odd multiple of 4 */
        _mm_prefetch((const char *)DN_FETCH_ADDR(tile, ahead + 16 * (size_t)c), _MM_HINT_T0);
        const __m512i k0 = _mm512_loadu_si512(tile + 16 * (size_t)c);
        UNROLL for (int i = 0; i < NQ; i++)
            acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], k0, _mm512_set1_epi32((int)dn_ld_u32(&r->q[i0 + i][c])));
    }
    const __m512 sc = _mm512_loadu_ps(ksc + 16 * t);
    UNROLL for (int i = 0; i < NQ; i++) {
        const __m512 x = _mm512_cvtepi32_ps(_mm512_add_epi32(acc[i][0], acc[i][1]));
        store_scores(_mm512_mul_ps(_mm512_mul_ps(x, sc), _mm512_set1_ps(r->sc[i0 + i])), t, lane, nk, s + (size_t)i * ss);
    }
}

/* f16/f32: a tile at a time, up to SCORE_NQ rows at a time */
AI void scores_typed(int type, int hd, int nq, const float *q, size_t qs, const uint8_t *k, int lane, int nk, float *s,
                     size_t ss)
{
    const size_t tb = dn_kv_tile_bytes(hd, type);
    const int tiles = (lane + nk + 15) / 16;
    for (int t = 0; t < tiles; t++)
        for (int i = 0; i < nq; i += SCORE_NQ) {
            const float *qi = q + (size_t)i * qs;
            float *si = s + (size_t)i * ss;
            switch (nq - i) {
#define ST(NQ) scores_tile(NQ, type, hd, qi, qs, k, tb, t, lane, nk, si, ss); break
            case 1: ST(1); case 2: ST(2); case 3: ST(3); case 4: ST(4);
            case 5: ST(5); case 6: ST(6); case 7: ST(7); default: ST(8);
#undef ST
            }
        }
}

/* dn_kv_quantize 16 lanes at a time, each lane through dn_kv_code's
 * operations (truncate, add 1 where |v| - trunc >= 0.5, clamp to 127,
 * NaN 0, sign), so the codes and the scale are the same bits
 * (test_kernels). max(|x|, m) keeps m where x is NaN, as the scalar
 * compare skips it. Quantizing the queries and the staged K/V rows one
 * by one took ~2 ns an element, ~0.35 ms of a decoded token (2026-12-06). */
float dn_kv_quantize_avx512(const float *x, int n, int8_t *q)
{
    const __m512 absm = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff)), zero = _mm512_setzero_ps();
    __m512 mx = zero;
    for (int i = 0; i < n; i += 16)
        mx = _mm512_max_ps(_mm512_and_ps(_mm512_maskz_loadu_ps(mask_of(n - i), x + i), absm), mx);
    const float amax = _mm512_reduce_max_ps(mx), inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    const __m512 vinv = _mm512_set1_ps(inv), half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
    for (int i = 0; i < n; i += 16) {
        const __mmask16 m = mask_of(n - i);
        const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vinv), a = _mm512_and_ps(v, absm);
        const __m512 t = _mm512_roundscale_ps(a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        __m512 r = _mm512_mask_add_ps(t, _mm512_cmp_ps_mask(_mm512_sub_ps(a, t), half, _CMP_GE_OQ), t, one);
        r = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), _mm512_min_ps(r, _mm512_set1_ps(127.0f)));
        r = _mm512_mask_sub_ps(r, _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ), zero, r);
        _mm_mask_storeu_epi8(q + i, m, _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(r)));
    }
    return amax / 127.0f;
}

/* Q8: the shared outer loop (kernels_internal.h), a tile a step */
static void scores_q8(int hd, int nq, const float *q, size_t qs, const uint8_t *k, int lane, int nk, const float *ksc,
                      float *s, size_t ss)
{
    const size_t tb = dn_kv_tile_bytes(hd, DN_KV_Q8);
#define TILE(NQ, R, I, T, S) scores_tile_q8(NQ, R, I, k, tb, T, lane, nk, ksc, S, ss)
    DN_ATT_Q8_SCORES(TILE, dn_kv_quantize_avx512, hd, nq, q, qs, lane, nk, s, ss);
#undef TILE
}

void dn_att_scores_avx512(int hd, int nq, const float *q, size_t qs, const void *k, int lane, int nk, int type,
                          const float *ksc, float *s, size_t ss)
{
    if (type == DN_KV_F16) scores_typed(DN_KV_F16, hd, nq, q, qs, k, lane, nk, s, ss);
    else if (type == DN_KV_F32) scores_typed(DN_KV_F32, hd, nq, q, qs, k, lane, nk, s, ss);
    else scores_q8(hd, nq, q, qs, k, lane, nk, ksc, s, ss);
}

/* NQ output rows, dimensions d0 .. d0 + 16 NV (the last vector nd_last
 * wide), keys 0..nk-1 of v with weights w[i * ws + j] */
AI void values_tile(int NQ, int NV, int type, int hd, const float *w, size_t ws, const uint8_t *v, int nk, float *out,
                    size_t os, int d0, int nd_last)
{
    const size_t vs = (size_t)hd * dn_kv_elem_bytes(type);
    __m512 acc[4][5];
    UNROLL for (int i = 0; i < NQ; i++) UNROLL for (int c = 0; c < NV; c++)
        acc[i][c] = _mm512_maskz_loadu_ps(c == NV - 1 ? mask_of(nd_last) : 0xFFFF, out + i * os + d0 + 16 * c);
    for (int j = 0; j < nk; j++) {
        const uint8_t *row = v + (size_t)j * vs;
        if (type == DN_KV_F16 && d0 == 0) {   /* Danube: 160-byte rows, 2.5 lines each; two fetches cover them */
            _mm_prefetch((const char *)DN_FETCH_ADDR(row, PF_ROWS_F16 * vs), _MM_HINT_T0);
            _mm_prefetch((const char *)DN_FETCH_ADDR(row, PF_ROWS_F16 * vs + 96), _MM_HINT_T0);
        }
        __m512 x[5];
        UNROLL for (int c = 0; c < NV; c++) x[c] = load_row(row, type, d0 + 16 * c, c == NV - 1 ? nd_last : 16);
        UNROLL for (int i = 0; i < NQ; i++) {
            const __m512 wv = _mm512_set1_ps(w[i * ws + j]);
            UNROLL for (int c = 0; c < NV; c++) acc[i][c] = _mm512_fmadd_ps(wv, x[c], acc[i][c]);
        }
    }
    UNROLL for (int i = 0; i < NQ; i++) UNROLL for (int c = 0; c < NV; c++)
        _mm512_mask_storeu_ps(out + i * os + d0 + 16 * c, c == NV - 1 ? mask_of(nd_last) : 0xFFFF, acc[i][c]);
}

#define VT(NQ, NV) values_tile(NQ, NV, type, hd, w, ws, v, nk, out, os, d0, last)
AI void values_rows(int NQ, int type, int nv, int hd, const float *w, size_t ws, const uint8_t *v, int nk, float *out,
                    size_t os, int d0, int last)
{
    switch (nv) {
    case 1: VT(NQ, 1); break;
    case 2: VT(NQ, 2); break;
    case 3: VT(NQ, 3); break;
    case 4: VT(NQ, 4); break;
    default: VT(NQ, 5); break;
    }
}
#undef VT

AI void values_typed(int type, int hd, int nq, const float *p, size_t ps, const uint8_t *v, int nk, float *out,
                     size_t os)
{
    for (int i0 = 0; i0 < nq; i0 += 4) {
        const int m = nq - i0 < 4 ? nq - i0 : 4;
        const float *w = p + (size_t)i0 * ps;
        float *o = out + (size_t)i0 * os;
        for (int d0 = 0; d0 < hd; d0 += 80) {   /* 5 vectors x 4 rows of accumulators */
            const int nd = hd - d0 < 80 ? hd - d0 : 80, nv = (nd + 15) / 16, last = nd - 16 * (nv - 1);
            switch (m) {
            case 1: values_rows(1, type, nv, hd, w, ps, v, nk, o, os, d0, last); break;
            case 2: values_rows(2, type, nv, hd, w, ps, v, nk, o, os, d0, last); break;
            case 3: values_rows(3, type, nv, hd, w, ps, v, nk, o, os, d0, last); break;
            default: values_rows(4, type, nv, hd, w, ps, v, nk, o, os, d0, last); break;
            }
        }
    }
}

void dn_att_values_avx512(int hd, int nq, const float *p, size_t ps, const void *v, int nk, int type, float *out,
                          size_t os)
{
    if (type == DN_KV_F16) values_typed(DN_KV_F16, hd, nq, p, ps, v, nk, out, os);
    else values_typed(DN_KV_F32, hd, nq, p, ps, v, nk, out, os);
}

/* ---- Q8 values as integer sums (kernels.h att_q8_*) ----------------------- */

/* The weights (stored) and the denominator's counts (added to sum) of 16
 * keys from their exps e (lanes past the mask: e = 0, stored nowhere),
 * rounded to nearest-even explicitly whatever MXCSR says. The counts are
 * >= 0: their even and odd lanes widen in place to int64. */
AI __m512i q8_weights16(__m512 e, const float *vsc, __m512 c, __mmask16 k, uint8_t *hi, uint8_t *lo, __m512i sum)
{
    const __m512 t = _mm512_min_ps(_mm512_mul_ps(_mm512_mul_ps(e, _mm512_maskz_loadu_ps(k, vsc)), c),
                                   _mm512_set1_ps((float)DN_ATT_W_MAX));
    const __m512i w = _mm512_cvt_roundps_epi32(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_mask_storeu_epi8(hi, k, _mm512_cvtepi32_epi8(_mm512_srli_epi32(w, DN_ATT_W_SHIFT)));
    _mm_mask_storeu_epi8(lo, k, _mm512_cvtepi32_epi8(_mm512_and_si512(w, _mm512_set1_epi32((1 << DN_ATT_W_SHIFT) - 1))));
    const __m512i u = _mm512_cvt_roundps_epi32(_mm512_mul_ps(e, _mm512_set1_ps((float)(1 << DN_ATT_E_SHIFT))),
                                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    sum = _mm512_add_epi64(sum, _mm512_and_si512(u, _mm512_set1_epi64(0xFFFFFFFF)));
    return _mm512_add_epi64(sum, _mm512_srli_epi64(u, 32));
}

/* The exps of a chunk of 256 keys first, into L1, then their weights and
 * counts, masks only on the last 16. In one loop the exp's long
 * dependency chain left too few steps in flight: 24 layers x 32 rows x
 * 4096 keys took 1.15-1.19 ms with the row max (softmax, then weights:
 * 1.13-1.19), split 0.80 (2026-12-06, alternating in one process). */
int64_t dn_att_q8_weights_avx512(const float *s, float m, const float *vsc, int n, float c, uint8_t *hi, uint8_t *lo)
{
    const __m512 cc = _mm512_set1_ps(c), mm = _mm512_set1_ps(m);
    __m512i sum = _mm512_setzero_si512();
    _Alignas(64) float eb[256];
    for (int j = 0; j < n; j += 256) {
        const int len = n - j < 256 ? n - j : 256;
        int i = 0;
        for (; i + 16 <= len; i += 16) _mm512_store_ps(eb + i, exp512(_mm512_sub_ps(_mm512_loadu_ps(s + j + i), mm)));
        if (i < len) {
            const __mmask16 k = mask_of(len - i);
            _mm512_store_ps(eb + i, _mm512_maskz_mov_ps(k, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + j + i), mm))));
        }
        for (i = 0; i + 16 <= len; i += 16)
            sum = q8_weights16(_mm512_load_ps(eb + i), vsc + j + i, cc, 0xFFFF, hi + j + i, lo + j + i, sum);
        if (i < len) sum = q8_weights16(_mm512_load_ps(eb + i), vsc + j + i, cc, mask_of(len - i), hi + j + i, lo + j + i, sum);
    }
    return _mm512_reduce_add_epi64(sum);
}

/* Keys in chunks of Q8_GROUPS groups of 4 (int32 sums stay below
 * 127 * 127 * 4 * 64 < 2^22, then go to the int64 acc). The next chunk's
 * V is fetched a little in every step of every pass (dn_pf_stream):
 * fetched 32 groups ahead by the first pass only, the bus idled in the
 * other three. kernels_bench --attention, one core, old and new builds
 * alternating, a token's values from DRAM 3.38-3.79 -> 2.54-2.84 ms, from
 * L2 1.82-1.94 -> 1.63-1.75 (the first pass no longer issues 5 fetches a
 * step); the stream starting one chunk ahead beat half a chunk, 1.5 and
 * none (2026-12-06). */
enum { Q8_GROUPS = 64 };

/* Rows NR (1 or 2) of acc, dimensions d0 .. d0 + 16 NV (NV <= 3, the last
 * vector nd_last wide), ng groups from vg */
AI void values_q8_tile(int NR, int NV, int hd, const uint8_t *w, size_t ws, const uint8_t *vg, int ng, int d0, int nd_last,
                       dn_pf_stream *pf, int64_t *acc)
{
    const size_t gb = (size_t)hd * 4;
    const __mmask16 ml = mask_of(nd_last);
    __m512i a[2][2][3];
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int b = 0; b < 2; b++) UNROLL for (int c = 0; c < NV; c++)
        a[r][b][c] = _mm512_setzero_si512();
    const uint8_t *g = vg + 4 * (size_t)d0;
    dn_pf_stream f = *pf;   /* in registers, not stored back every step */
    for (int i = 0; i < ng; i++, g += gb) {
        dn_pf_step(&f, gb, 0);
        __m512i x[3];
        UNROLL for (int c = 0; c < NV; c++) x[c] = _mm512_maskz_loadu_epi32(c == NV - 1 ? ml : 0xFFFF, g + 64 * c);
        UNROLL for (int r = 0; r < NR; r++) UNROLL for (int b = 0; b < 2; b++) {
            const __m512i u = _mm512_set1_epi32((int)dn_ld_u32(w + (size_t)(2 * r + b) * ws + 4 * (size_t)i));
            UNROLL for (int c = 0; c < NV; c++) a[r][b][c] = _mm512_dpbusd_epi32(a[r][b][c], u, x[c]);
        }
    }
    *pf = f;
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int b = 0; b < 2; b++) UNROLL for (int c = 0; c < NV; c++) {
        int64_t *o = acc + (size_t)(2 * r + b) * hd + d0 + 16 * c;
        const int n = c == NV - 1 ? nd_last : 16;
        const __m512i lo8 = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(a[r][b][c], 0));
        const __m512i hi8 = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(a[r][b][c], 1));
        const __mmask8 k0 = (__mmask8)(n >= 8 ? 0xFF : (1u << n) - 1), k1 = (__mmask8)(n >= 16 ? 0xFF : n > 8 ? (1u << (n - 8)) - 1 : 0);
        _mm512_mask_storeu_epi64(o, k0, _mm512_add_epi64(_mm512_maskz_loadu_epi64(k0, o), lo8));
        _mm512_mask_storeu_epi64(o + 8, k1, _mm512_add_epi64(_mm512_maskz_loadu_epi64(k1, o + 8), hi8));
    }
}

/* One function a shape. Inlined side by side into one body, GCC 12
 * copied 9 of the 12 sums around the vpdpbusd twice a step (18 vmovdqa64
 * per 12 vpdpbusd in objdump; with an asm vpdpbusd too). Alone, with the
 * intrinsic, the epilogue's low half taken by an extract rather than a
 * cast and the fetch stream in a local, the loop is the 12 vpdpbusd, the
 * loads and the fetch: from L2 a token's values 1.60-1.65 -> 1.50-1.55
 * ms (kernels_bench --attention, alternating, 2026-12-06). */
#define QF(NR, NV) \
    static __attribute__((noinline)) void values_q8_##NR##x##NV(int hd, const uint8_t *w, size_t ws, const uint8_t *vg, \
                                                              int ng, int d0, int last, dn_pf_stream *pf, int64_t *acc) \
    { values_q8_tile(NR, NV, hd, w, ws, vg, ng, d0, last, pf, acc); }
QF(1, 1) QF(1, 2) QF(1, 3) QF(2, 1) QF(2, 2) QF(2, 3)
#undef QF

AI void values_q8_rows(int NR, int nv, int hd, const uint8_t *w, size_t ws, const uint8_t *vg, int ng, int d0, int last,
                       dn_pf_stream *pf, int64_t *acc)
{
    void (*const shape[2][3])(int, const uint8_t *, size_t, const uint8_t *, int, int, int, dn_pf_stream *, int64_t *) = {
        { values_q8_1x1, values_q8_1x2, values_q8_1x3 }, { values_q8_2x1, values_q8_2x2, values_q8_2x3 } };
    shape[NR - 1][nv - 1](hd, w, ws, vg, ng, d0, last, pf, acc);
}

void dn_att_q8_values_avx512(int hd, int nq, const uint8_t *w, size_t ws, const void *v, int lane, int nk, int64_t *acc)
{
    const size_t gb = (size_t)hd * 4;
    const int groups = (lane % 4 + nk + 3) / 4;
    const uint8_t *v0 = (const uint8_t *)v + (size_t)(lane / 4) * gb;   /* the group of the first key */
    const int sweeps = (hd + 47) / 48 * ((nq + 1) / 2);   /* passes over a chunk: below */
    dn_pf_stream pf = dn_pf_stream_at(v0, groups, Q8_GROUPS, gb, sweeps);
    for (int g0 = 0; g0 < groups; g0 += Q8_GROUPS) {
        const int ng = groups - g0 < Q8_GROUPS ? groups - g0 : Q8_GROUPS;
        const uint8_t *vg = v0 + (size_t)g0 * gb;
        /* 3 vectors x 2 rows x 2 planes of sums a pass (12 + 3 codes + a
         * weight in registers): with 5 vectors (20 sums) GCC copied sums
         * and spilled 6 to the stack every step, and from L2 a token's
         * values took 2.2-2.3 ms against 1.9-2.0 (from DRAM no different,
         * 2026-12-06) */
        for (int d0 = 0; d0 < hd; d0 += 48) {
            const int nd = hd - d0 < 48 ? hd - d0 : 48, nv = (nd + 15) / 16, last = nd - 16 * (nv - 1);
            for (int r = 0; r < nq; r += 2) {
                const uint8_t *wr = w + (size_t)(2 * r) * ws + 4 * (size_t)g0;
                int64_t *ar = acc + (size_t)(2 * r) * hd;
                if (nq - r >= 2) values_q8_rows(2, nv, hd, wr, ws, vg, ng, d0, last, &pf, ar);
                else values_q8_rows(1, nv, hd, wr, ws, vg, ng, d0, last, &pf, ar);
            }
        }
    }
}
