/* avx2_attn_q8.h - the Q8 score kernel of the 256-bit attention slots,
 * included by avx2_attn.c (AVX2: vpmaddubsw) and avx2vnni_attn.c
 * (DN_ATT_VNNI 1: vpdpbusd), which define DN_ATT_VNNI first.
 *
 * A Q8 K tile (kernels.h) is 4 dimensions x 16 keys per 64 bytes, each
 * byte the code + 128. Per 32-byte half (8 keys) and 4 query codes:
 *  - VNNI: one vpdpbusd(acc, key bytes, query bytes) adds (k + 128) q;
 *    the sums start at -128 sum(q) (dn_att_q8 bias).
 *  - AVX2: vpmaddubsw cannot take (k + 128) q (pairs reach 2 * 255 * 127,
 *    past int16), so the key bytes are flipped back to signed codes once
 *    per half and each row multiplies |q| by k with q's sign (pairs <=
 *    2 * 127 * 127), then vpmaddwd by 1 to int32.
 * Both give the exact int32 dot product of the codes, so the two levels'
 * scores are bit-identical (and equal the scalar table's). K tiles are
 * fetched DN_ATT_PF_Q8_TILES ahead: on avx2vnni that took the scores of a
 * token after 4096 positions, cache in DRAM, from 3.3-4.5 to 2.8 ms on
 * one core, about their time with the cache in L3 (plain AVX2 is bound by
 * its arithmetic there, 4.0 ms either way). */
#ifndef DN_ATT_VNNI
#error "define DN_ATT_VNNI (0 or 1) before including avx2_attn_q8.h"
#endif

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
        _mm_prefetch((const char *)tile + DN_ATT_PF_Q8_TILES * tb + 16 * (size_t)c, _MM_HINT_T0);
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
