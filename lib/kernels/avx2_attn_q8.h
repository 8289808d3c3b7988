/* avx2_attn_q8.h - the Q8 kernels of the 256-bit attention slots that
 * differ between AVX2 and AVX-VNNI (scores and values), included by
 * avx2_attn.c (AVX2: vpmaddubsw) and avx2vnni_attn.c (DN_ATT_VNNI 1:
 * vpdpbusd), which define DN_ATT_VNNI first.
 *
 * Scores: a Q8 K tile (kernels.h) is 4 dimensions x 16 keys per 64 bytes, each
 * byte the code + 128. Per 32-byte half (8 keys) and 4 query codes:
 *  - VNNI: one vpdpbusd(acc, key bytes, query bytes) adds (k + 128) q;
 *    the sums start at -128 sum(q) (dn_att_q8 bias).
 *  - AVX2: vpmaddubsw cannot take (k + 128) q (pairs reach 2 * 255 * 127,
 *    past int16), so the key bytes are flipped back to signed codes once
 *    per half and each row multiplies |q| by k with q's sign (pairs <=
 *    2 * 127 * 127), then vpmaddwd by 1 to int32.
 * Both give the exact int32 dot product of the codes, so the two levels'
 * scores are bit-identical (and equal the scalar table's). K tiles are
 * fetched DN_ATT_PF_Q8_TILES ahead, into L2 (DN_ATT_FETCH): on avx2vnni
 * that took the scores of a token after 4096 positions, cache in DRAM,
 * from 3.3-4.5 to 2.8 ms on one core, about their time with the cache in
 * L3 (plain AVX2 is bound by its arithmetic there, 4.0 ms either way).
 *
 * Values (att_q8_values): a V group is 4 keys x hd dimensions, 32 bytes
 * for 8 dimensions (a dword of 4 signed codes each) against the dword of
 * the group's 4 weights (0..127) broadcast: VNNI one vpdpbusd, AVX2
 * vpmaddubsw (pairs <= 2 * 127 * 127, no saturation) then vpmaddwd by 1.
 * Both are exact, so every table gets the same sums. */
#ifndef DN_ATT_VNNI
#error "define DN_ATT_VNNI (0 or 1) before including avx2_attn_q8.h"
#endif

/* lanes < left set (left >= 8: all) for maskload/maskstore */
AI __m256i lane_mask(int left)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(left), idx);
}

/* acc += per key lane the dot product of its 4 codes with the 4 codes qb
 * (broadcast); kb the stored bytes, ks the same flipped to signed codes */
AI __m256i att_dot4(__m256i acc, __m256i kb, __m256i ks, __m256i qb)
{
#if DN_ATT_VNNI
    (void)ks;
    return _mm256_dpbusd_avx_epi32(acc, kb, qb);
#else
    (void)kb;
    const __m256i pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(qb), _mm256_sign_epi8(ks, qb));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
#endif
}

/* Store the 16 scores r0|r1 of tile t, keeping lanes lane..lane+nk-1 of the run. */
AI void att_store16(__m256 r0, __m256 r1, int t, int lane, int nk, float *s)
{
    const int first = 16 * t;
    const int a = lane > first ? lane - first : 0, b = lane + nk - first < 16 ? lane + nk - first : 16;
    float *dst = s + (first + a - lane);
    if (a == 0 && b == 16) {
        _mm256_storeu_ps(dst, r0);
        _mm256_storeu_ps(dst + 8, r1);
    } else {   /* a partial tile at either end of the run */
        float buf[16];
        _mm256_storeu_ps(buf, r0);
        _mm256_storeu_ps(buf + 8, r1);
        memcpy(dst, buf + a, sizeof(float) * (size_t)(b - a));
    }
}

/* Rows i0..i0+NQ-1 of r against tile t. */
AI void att_q8_tile(int NQ, const dn_att_q8 *r, int i0, const uint8_t *k, size_t tb, int t, int lane, int nk,
                    const float *ksc, float *s, size_t ss)
{
    const uint8_t *tile = k + (size_t)t * tb;
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    __m256i acc[4][2];
    UNROLL for (int i = 0; i < NQ; i++) acc[i][0] = acc[i][1] = _mm256_set1_epi32(DN_ATT_VNNI ? -r->bias[i0 + i] : 0);
    for (int c = 0; c < r->hd4; c += 4) {
        DN_ATT_FETCH(DN_FETCH_ADDR(tile, DN_ATT_PF_Q8_TILES * tb + 16 * (size_t)c));
        const __m256i kb0 = _mm256_loadu_si256((const __m256i *)(const void *)(tile + 16 * (size_t)c));
        const __m256i kb1 = _mm256_loadu_si256((const __m256i *)(const void *)(tile + 16 * (size_t)c + 32));
        const __m256i ks0 = _mm256_xor_si256(kb0, flip), ks1 = _mm256_xor_si256(kb1, flip);
        UNROLL for (int i = 0; i < NQ; i++) {
            const __m256i qb = _mm256_set1_epi32((int)dn_ld_u32(&r->q[i0 + i][c]));
            acc[i][0] = att_dot4(acc[i][0], kb0, ks0, qb);
            acc[i][1] = att_dot4(acc[i][1], kb1, ks1, qb);
        }
    }
    const float *sc = ksc + 16 * t;
    UNROLL for (int i = 0; i < NQ; i++) {
        const __m256 qsc = _mm256_set1_ps(r->sc[i0 + i]);
        const __m256 r0 = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(acc[i][0]), _mm256_loadu_ps(sc)), qsc);
        const __m256 r1 = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(acc[i][1]), _mm256_loadu_ps(sc + 8)), qsc);
        att_store16(r0, r1, t, lane, nk, s + (size_t)i * ss);
    }
}

/* dn_kv_quantize 8 lanes at a time (the rest one by one), each lane
 * through dn_kv_code's operations, so the same bits (test_kernels); see
 * dn_kv_quantize_avx512. */
AI float kv_quantize_avx2(const float *x, int n, int8_t *q)
{
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)), zero = _mm256_setzero_ps();
    __m256 mx = zero;
    int i = 0;
    for (; i + 8 <= n; i += 8) mx = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + i), absm), mx);
    float lanes[8], amax = 0.0f;
    _mm256_storeu_ps(lanes, mx);
    for (int j = 0; j < 8; j++) if (lanes[j] > amax) amax = lanes[j];
    for (int j = i; j < n; j++) if (fabsf(x[j]) > amax) amax = fabsf(x[j]);
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    const __m256 vinv = _mm256_set1_ps(inv), half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    for (i = 0; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), vinv), a = _mm256_and_ps(v, absm);
        const __m256 t = _mm256_round_ps(a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        __m256 r = _mm256_add_ps(t, _mm256_and_ps(_mm256_cmp_ps(_mm256_sub_ps(a, t), half, _CMP_GE_OQ), one));
        r = _mm256_and_ps(_mm256_min_ps(r, _mm256_set1_ps(127.0f)), _mm256_cmp_ps(v, v, _CMP_ORD_Q));
        r = _mm256_blendv_ps(r, _mm256_sub_ps(zero, r), _mm256_cmp_ps(v, zero, _CMP_LT_OQ));
        const __m256i w = _mm256_cvttps_epi32(r);
        const __m128i h = _mm_packs_epi32(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
        _mm_storel_epi64((__m128i *)(void *)(q + i), _mm_packs_epi16(h, h));
    }
    for (; i < n; i++) q[i] = dn_kv_code(x[i] * inv);
    return amax / 127.0f;
}

/* att_scores for a Q8 cache */
AI void att_scores_q8(int hd, int nq, const float *q, size_t qs, const uint8_t *k, int lane, int nk,
                      const float *ksc, float *s, size_t ss)
{
    const size_t tb = dn_kv_tile_bytes(hd, DN_KV_Q8);
#define TILE(NQ, R, I, T, S) att_q8_tile(NQ, R, I, k, tb, T, lane, nk, ksc, S, ss)
    DN_ATT_Q8_SCORES(TILE, kv_quantize_avx2, hd, nq, q, qs, lane, nk, s, ss);
#undef TILE
}

/* ---- Q8 values as integer sums (kernels.h att_q8_values) ---------------- */

/* acc += per dimension lane the 4 products of the weight bytes wb (one
 * group's 4 keys, broadcast) with that dimension's 4 codes vb (ones: 1 in
 * every int16). In asm: GCC 12 copies the accumulators around the
 * intrinsics in this loop (register moves and stack stores each step),
 * not around the asm; {vex} asks for the AVX-VNNI encoding, not
 * AVX512-VNNI's. */
AI __m256i att_wdot4(__m256i acc, __m256i wb, __m256i vb, __m256i ones)
{
#if DN_ATT_VNNI
    (void)ones;
    __asm__("%{vex%} vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(wb), "x"(vb));
#else
    __m256i t;
    __asm__("vpmaddubsw %3, %2, %1\n\t"
            "vpmaddwd %4, %1, %1\n\t"
            "vpaddd %1, %0, %0"
            : "+x"(acc), "=&x"(t) : "x"(wb), "x"(vb), "x"(ones));
#endif
    return acc;
}

/* Keys in chunks of VQ_GROUPS groups of 4: the int32 sums stay below
 * 127 * 127 * 4 * 64 < 2^22 before they go to the int64 acc, and a chunk's
 * V (20 KB at hd 80) stays in L1 while each row pair reads each of its
 * dimension blocks again.
 * Every pass fetches a share of the next chunk's V (dn_pf_stream), as
 * avx512_attn.c does: from DRAM a token's values took 4.83-5.58 -> 3.33-3.76
 * ms (avx2vnni), 7.64-8.46 -> 5.37-7.03 (avx2) against each block's first
 * row pair fetching its own bytes 32 groups ahead (2026-12-06).
 * VQ_CHUNKS (at most 3): 8-dimension vectors a pass, 2 rows x 2 planes x
 * 3 sums in 12 of the 16 ymm registers with VNNI; AVX2 needs two more for
 * its product and the ones, so 2 rows x 2 planes x 2. */
enum { VQ_GROUPS = 64, VQ_CHUNKS = DN_ATT_VNNI ? 3 : 2 };

/* Plane rows 0..P-1 of w and acc (P/2 query rows: hi, lo, hi, ...),
 * dimensions d0 .. d0 + 8 C (the last vector `last` wide: PART when
 * last < 8, its bytes loaded under a dword mask), ng groups from vg
 * (weights of group g at byte 4 g of each plane) */
AI void att_q8_vblock(int P, int C, int PART, int hd, const uint8_t *w, size_t ws, const uint8_t *vg, int ng, int d0,
                      int last, dn_pf_stream *pf, int64_t *acc)
{
    const size_t gb = 4 * (size_t)hd;
    const __m256i tail = lane_mask(last), ones = _mm256_set1_epi16(1);
    __m256i a[4][3];
    UNROLL for (int p = 0; p < P; p++) UNROLL for (int c = 0; c < C; c++) a[p][c] = _mm256_setzero_si256();
    const uint8_t *g = vg + 4 * (size_t)d0;
    for (int i = 0; i < ng; i++, g += gb) {
        dn_pf_step(pf, gb, 1);
        __m256i x[3];
        UNROLL for (int c = 0; c < C; c++)
            x[c] = PART && c == C - 1 ? _mm256_maskload_epi32((const int *)(const void *)(g + 32 * c), tail)
                                      : _mm256_loadu_si256((const __m256i *)(const void *)(g + 32 * c));
        UNROLL for (int p = 0; p < P; p++) {
            const __m256i wb = _mm256_set1_epi32((int)dn_ld_u32(w + (size_t)p * ws + 4 * (size_t)i));
            UNROLL for (int c = 0; c < C; c++) a[p][c] = att_wdot4(a[p][c], wb, x[c], ones);
        }
    }
    const __m256i lanes64 = _mm256_setr_epi64x(0, 1, 2, 3);
    UNROLL for (int p = 0; p < P; p++) UNROLL for (int c = 0; c < C; c++) {
        int64_t *o = acc + (size_t)p * hd + d0 + 8 * c;
        long long *o0 = (long long *)o, *o1 = (long long *)(o + 4);
        const __m256i s0 = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(a[p][c]));
        const __m256i s1 = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(a[p][c], 1));
        if (PART && c == C - 1) {   /* last (2, 4 or 6) dimensions */
            const __m256i k0 = _mm256_cmpgt_epi64(_mm256_set1_epi64x(last), lanes64);
            const __m256i k1 = _mm256_cmpgt_epi64(_mm256_set1_epi64x(last - 4), lanes64);
            _mm256_maskstore_epi64(o0, k0, _mm256_add_epi64(_mm256_maskload_epi64(o0, k0), s0));
            _mm256_maskstore_epi64(o1, k1, _mm256_add_epi64(_mm256_maskload_epi64(o1, k1), s1));
        } else {
            const __m256i t0 = _mm256_loadu_si256((const __m256i *)(const void *)o0);
            const __m256i t1 = _mm256_loadu_si256((const __m256i *)(const void *)o1);
            _mm256_storeu_si256((__m256i *)(void *)o0, _mm256_add_epi64(t0, s0));
            _mm256_storeu_si256((__m256i *)(void *)o1, _mm256_add_epi64(t1, s1));
        }
    }
}

#define VB(P, C, PART) att_q8_vblock(P, C, PART, hd, w, ws, vg, ng, d0, last, pf, acc)
AI void att_q8_vrows(int P, int nc, int hd, const uint8_t *w, size_t ws, const uint8_t *vg, int ng, int d0, int last,
                     dn_pf_stream *pf, int64_t *acc)
{
    if (last == 8) {   /* whole vectors: no masks in the loop */
        if (nc == 1) VB(P, 1, 0);
        else if (nc == 2 || VQ_CHUNKS == 2) VB(P, 2, 0);
        else VB(P, 3, 0);
    } else {
        if (nc == 1) VB(P, 1, 1);
        else if (nc == 2 || VQ_CHUNKS == 2) VB(P, 2, 1);
        else VB(P, 3, 1);
    }
}
#undef VB

/* att_q8_values: per chunk of keys, the dimensions in blocks of up to
 * VQ_CHUNKS vectors (sizes as even as they go: hd 80 is 3, 3, 2, 2), per
 * block the rows two at a time. */
AI void att_q8_values(int hd, int nq, const uint8_t *w, size_t ws, const uint8_t *v, int lane, int nk, int64_t *acc)
{
    const size_t gb = 4 * (size_t)hd;
    const int groups = (lane % 4 + nk + 3) / 4;
    const uint8_t *v0 = v + (size_t)(lane / 4) * gb;   /* the group of the first key */
    const int nch = (hd + 7) / 8, nb = (nch + VQ_CHUNKS - 1) / VQ_CHUNKS;
    dn_pf_stream pf = dn_pf_stream_at(v0, groups, VQ_GROUPS, gb, nb * ((nq + 1) / 2));   /* passes: blocks x row pairs */
    for (int g0 = 0; g0 < groups; g0 += VQ_GROUPS) {
        const int ng = groups - g0 < VQ_GROUPS ? groups - g0 : VQ_GROUPS;
        const uint8_t *vg = v0 + (size_t)g0 * gb;
        for (int b = 0, c0 = 0; b < nb; b++) {
            const int nc = nch / nb + (b < nch % nb), d0 = 8 * c0;
            const int last = c0 + nc == nch ? hd - 8 * (nch - 1) : 8;
            for (int r = 0; r < 2 * nq; r += 4) {   /* plane rows: hi and lo of each query row */
                const uint8_t *wr = w + (size_t)r * ws + 4 * (size_t)g0;
                int64_t *ar = acc + (size_t)r * hd;
                if (2 * nq - r >= 4) att_q8_vrows(4, nc, hd, wr, ws, vg, ng, d0, last, &pf, ar);
                else att_q8_vrows(2, nc, hd, wr, ws, vg, ng, d0, last, &pf, ar);
            }
            c0 += nc;
        }
    }
}
