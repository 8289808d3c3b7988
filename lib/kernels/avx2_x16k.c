/* avx2_x16k.c - gemm kernels for the row-interleaved K-quant weights
 * q4_Kx16 and q6_Kx16 (layouts in quant/repack.c) against plain q8_K
 * activations, AVX2 + FMA + F16C (no VNNI). Same flags as avx2.c.
 *
 * As in avx2_x16.c, each 32-byte half of a 64-byte chunk (4 weights of
 * rows 0..7 or 8..15) meets 4 broadcast activation bytes in vpmaddubsw;
 * the products of a sub-block add up in int16 as far as they fit, and
 * one vpmaddwd against the rows' sub-block scales (each repeated in both
 * int16 halves of its lane) both widens and scales them.
 *  - q4_K: 8 chunks per 32-element sub-block, 16 nibble x int8 products
 *    per int16 lane (|sum| <= 16 * 15 * 128 = 30720). The mins term
 *    sum_j m_j (bsums[2j] + bsums[2j+1]) is 4 vpmaddwd of (m_2i, m_2i+1)
 *    row pairs against the broadcast pair of token sums.
 *  - q6_K: see q6x_block.
 * Floats are touched once per 256 elements, as in the AVX-512 kernels
 * (q4_K: d * I - dmin * M, times d_x; q6_K: I times d * d_x), in the same
 * order for every tile shape: a token alone and in a batch get identical
 * bits. */
#include <immintrin.h>
#include "kernels/kernels_internal.h"
#include "kernels/avx2_internal.h"


enum {
    /* tokens per tile, measured: q4_K 3 (2 and 4 alike); q6_K one row half
     * at a time with 4 (147 GFLOP/s; both halves with 2: 117), except a
     * single token: both halves in one pass (21 instead of 12 GB/s) */
    MAXT = 4, TN_K4 = 3, TN_K6 = 4
};

/* see avx2_x16.c: keeps GCC from reassociating the int16 sums into a tree */
AI __m256i opaque(__m256i v)
{
    __asm__("" : "+x"(v));
    return v;
}

AI __m256i bcast4(const uint8_t *p) { return _mm256_set1_epi32((int)dn_ld_u32(p)); }

/* 8 bytes (one per row of a half) as int16 pairs: lane i = p[i] | p[i] << 16 */
AI __m256i scale_pairs(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    const __m256i dup = _mm256_setr_epi8(0, -1, 0, -1, 1, -1, 1, -1, 2, -1, 2, -1, 3, -1, 3, -1,
                                         4, -1, 4, -1, 5, -1, 5, -1, 6, -1, 6, -1, 7, -1, 7, -1);
    return _mm256_shuffle_epi8(_mm256_set1_epi64x((long long)v), dup);
}

/* Two 8-byte rows a, b as int16 pairs: lane i = a[i] | b[i] << 16 */
AI __m256i two_pairs(const uint8_t *a, const uint8_t *b)
{
    uint64_t u, v;
    memcpy(&u, a, 8);
    memcpy(&v, b, 8);
    const __m256i mix = _mm256_setr_epi8(0, -1, 8, -1, 1, -1, 9, -1, 2, -1, 10, -1, 3, -1, 11, -1,
                                         4, -1, 12, -1, 5, -1, 13, -1, 6, -1, 14, -1, 7, -1, 15, -1);
    const __m128i ab = _mm_set_epi64x((long long)v, (long long)u);
    return _mm256_shuffle_epi8(_mm256_set_m128i(ab, ab), mix);
}

/* One 256-column block c of a q4_Kx16 group against NT tokens (q8_K
 * blocks at xb[t]), added to F[h][t] (h: rows 8h..8h+7). */
AI void q4x_block(int NT, const uint8_t *c, const uint8_t *const *xb, __m256 F[2][MAXT])
{
    __m256i I[2][MAXT];
    UNROLL for (int h = 0; h < 2; h++) UNROLL for (int t = 0; t < NT; t++) I[h][t] = _mm256_setzero_si256();
    for (int jp = 0; jp < 4; jp++) UNROLL for (int odd = 0; odd < 2; odd++) {
        const int j = 2 * jp + odd;
        const int xo = Q8K_QS + 32 * j;
        UNROLL for (int h = 0; h < 2; h++) {
            __m256i S[MAXT];
            UNROLL for (int t = 0; t < NT; t++) S[t] = _mm256_setzero_si256();
            UNROLL for (int k = 0; k < 8; k++) {
                const __m256i W = dn_a2_q4x_codes(c, jp, odd, k, h);
                UNROLL for (int t = 0; t < NT; t++)
                    S[t] = opaque(_mm256_add_epi16(S[t], _mm256_maddubs_epi16(W, bcast4(xb[t] + xo + 4 * k))));
            }
            const __m256i SC = scale_pairs(c + Q4X_SC + 16 * j + 8 * h);
            UNROLL for (int t = 0; t < NT; t++) I[h][t] = _mm256_add_epi32(I[h][t], _mm256_madd_epi16(S[t], SC));
        }
    }
    /* mins: the token's s_j (avx2_internal.h) as int16 */
    int16_t s[MAXT][8];
    UNROLL for (int t = 0; t < NT; t++) dn_a2_q8k_min_sums(xb[t], s[t]);
    UNROLL for (int h = 0; h < 2; h++) {
        __m256i M[MAXT];
        UNROLL for (int t = 0; t < NT; t++) M[t] = _mm256_setzero_si256();
        UNROLL for (int i = 0; i < 4; i++) {
            const __m256i mm = two_pairs(c + Q4X_M + 32 * i + 8 * h, c + Q4X_M + 32 * i + 16 + 8 * h);
            UNROLL for (int t = 0; t < NT; t++)
                M[t] = _mm256_add_epi32(M[t], _mm256_madd_epi16(mm, bcast4((const uint8_t *)&s[t][2 * i])));
        }
        const __m256 D = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(c + 16 * h)));
        const __m256 Dm = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(c + Q4X_DMIN + 16 * h)));
        UNROLL for (int t = 0; t < NT; t++) {
            float dx;
            memcpy(&dx, xb[t], 4);
            __m256 T = _mm256_mul_ps(_mm256_cvtepi32_ps(I[h][t]), D);
            T = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(M[t]), Dm, T);
            F[h][t] = _mm256_fmadd_ps(T, _mm256_set1_ps(dx), F[h][t]);
        }
    }
}

/* Two rows a, b of 8 signed bytes as int16 pairs: lane i = a[i] | b[i] << 16
 * (a == b: each scale in both halves of its lane) */
AI __m256i i8_pairs(const uint8_t *a, const uint8_t *b)
{
    const __m128i va = _mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)a));
    const __m128i vb = _mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)b));
    return _mm256_set_m128i(_mm_unpackhi_epi16(va, vb), _mm_unpacklo_epi16(va, vb));
}

/* One 256-column block c of a q6_Kx16 group, rows 8h0..8h0+8NH-1,
 * against NT tokens. Sub-block j (16 elements) = half H, quarter qd,
 * sixteen mh: its 4 chunks m = 4mh..4mh+3 (dn_a2_q6x_codes). q = 0..63:
 * two chunks' products add up in int16 (8 x 63 x 128 would not), vpmaddwd
 * with the scale widens each pair.
 * The -32 offset is -32 sum_j sc_j bsums[j]: 8 vpmaddwd of scale pairs
 * against broadcast bsums pairs per token. */
AI void q6x_block(int NH, int NT, int h0, const uint8_t *c, const uint8_t *const *xb, __m256 F[2][MAXT])
{
    __m256i I[2][MAXT];
    UNROLL for (int h = 0; h < NH; h++) UNROLL for (int t = 0; t < NT; t++) I[h][t] = _mm256_setzero_si256();
    for (int H = 0; H < 2; H++) for (int mh = 0; mh < 2; mh++) UNROLL for (int qd = 0; qd < 4; qd++) {
        const int j = 8 * H + 2 * qd + mh;
        const int xo = Q8K_QS + 16 * j;
        UNROLL for (int h = h0; h < h0 + NH; h++) {
            const __m256i SC = i8_pairs(c + Q6X_SC + 16 * j + 8 * h, c + Q6X_SC + 16 * j + 8 * h);
            __m256i P[MAXT];
            UNROLL for (int k = 0; k < 4; k++) {
                const __m256i W = dn_a2_q6x_codes(c, H, qd, 4 * mh + k, h);
                UNROLL for (int t = 0; t < NT; t++) {
                    const __m256i p = _mm256_maddubs_epi16(W, bcast4(xb[t] + xo + 4 * k));
                    if (k % 2 == 0) {
                        P[t] = p;
                    } else {
                        P[t] = _mm256_add_epi16(P[t], p);
                        I[h - h0][t] = opaque(_mm256_add_epi32(I[h - h0][t], _mm256_madd_epi16(P[t], SC)));
                    }
                }
            }
        }
    }
    UNROLL for (int h = h0; h < h0 + NH; h++) {
        __m256i O[MAXT];
        UNROLL for (int t = 0; t < NT; t++) O[t] = _mm256_setzero_si256();
        UNROLL for (int i = 0; i < 8; i++) {
            const __m256i sp = i8_pairs(c + Q6X_SC + 32 * i + 8 * h, c + Q6X_SC + 32 * i + 16 + 8 * h);
            UNROLL for (int t = 0; t < NT; t++)
                O[t] = _mm256_add_epi32(O[t], _mm256_madd_epi16(sp, bcast4(xb[t] + Q8K_BSUMS + 4 * i)));
        }
        const __m256 D = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(c + 16 * h)));
        UNROLL for (int t = 0; t < NT; t++) {
            float dx;
            memcpy(&dx, xb[t], 4);
            const __m256i A = _mm256_sub_epi32(I[h - h0][t], _mm256_slli_epi32(O[t], 5));
            F[h - h0][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(A), _mm256_mul_ps(D, _mm256_set1_ps(dx)), F[h - h0][t]);
        }
    }
}

enum { K4, K6 };

/* One row group g (rows 8h0 .. 8h0 + 8NH - 1) x NT tokens (q8_K rows xs
 * apart) over nb blocks. */
AI void tile(int kind, int fetch, int NH, int NT, int h0, int64_t nb, const uint8_t *g, const uint8_t *x, size_t xs,
             float *y, size_t ldy)
{
    __m256 F[2][MAXT];
    UNROLL for (int h = 0; h < NH; h++) UNROLL for (int t = 0; t < NT; t++) F[h][t] = _mm256_setzero_ps();
    const int CB = kind == K4 ? Q4X : Q6X;   /* bytes of a super-block of the group */
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *xb[MAXT];
        UNROLL for (int t = 0; t < NT; t++) xb[t] = x + (size_t)t * xs + (size_t)i * Q8K_BYTES;
        if (NT == 1 && h0 == 0) {   /* one token streams */
            DN_PAGE_AHEAD(g + (size_t)i * CB, CB);
            DN_FETCH_BLOCK_AHEAD(fetch, g, i, CB);
        }
        if (kind == K4) q4x_block(NT, g + (size_t)i * CB, xb, F);
        else q6x_block(NH, NT, h0, g + (size_t)i * CB, xb, F);
    }
    UNROLL for (int h = 0; h < NH; h++) UNROLL for (int t = 0; t < NT; t++)
        _mm256_storeu_ps(y + (size_t)t * ldy + 8 * (h0 + h), F[h][t]);
}

/* Each row group against token tiles (the group's weights, 24 / 34 KB
 * at 2560 columns, stay in L1/L2 across the tiles). */
AI void run(int kind, int fetch, int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs,
            int nt, float *y, size_t ldy)
{
    const int64_t nb = n / DN_QK_K;
    const int tmax = kind == K4 ? TN_K4 : TN_K6;
    for (int g = 0; g < nr / 16; g++) {
        const uint8_t *wg = (const uint8_t *)w + (size_t)g * ws;
        if (kind == K6 && nt == 1) {
            tile(K6, fetch, 2, 1, 0, nb, wg, x, xs, y + 16 * g, ldy);
            continue;
        }
        for (int t0 = 0; t0 < nt; t0 += tmax) {
            const int m = nt - t0 < tmax ? nt - t0 : tmax;
            const uint8_t *xt = (const uint8_t *)x + (size_t)t0 * xs;
            float *yt = y + (size_t)t0 * ldy + 16 * g;
            if (kind == K4) {
                switch (m) {
                case 1: tile(K4, fetch, 2, 1, 0, nb, wg, xt, xs, yt, ldy); break;
                case 2: tile(K4, DN_FETCH_PAGE, 2, 2, 0, nb, wg, xt, xs, yt, ldy); break;
                default: tile(K4, DN_FETCH_PAGE, 2, TN_K4, 0, nb, wg, xt, xs, yt, ldy); break;
                }
                continue;
            }
            for (int h0 = 0; h0 < 2; h0++) {
                switch (m) {
                case 1: tile(K6, DN_FETCH_PAGE, 1, 1, h0, nb, wg, xt, xs, yt, ldy); break;
                case 2: tile(K6, DN_FETCH_PAGE, 1, 2, h0, nb, wg, xt, xs, yt, ldy); break;
                case 3: tile(K6, DN_FETCH_PAGE, 1, 3, h0, nb, wg, xt, xs, yt, ldy); break;
                default: tile(K6, DN_FETCH_PAGE, 1, TN_K6, h0, nb, wg, xt, xs, yt, ldy); break;
                }
            }
        }
    }
}

void dn_gemm_q4_Kx16_q8_K_avx2(int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs,
                               int nt, float *y, size_t ldy)
{
    run(K4, DN_FETCH_PAGE, n, w, ws, nr, x, xs, nt, y, ldy);
}

void dn_gemm_q6_Kx16_q8_K_avx2(int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs,
                               int nt, float *y, size_t ldy)
{
    run(K6, DN_FETCH_PAGE, n, w, ws, nr, x, xs, nt, y, ldy);
}

/* DN_FETCH_LINES: one token fetches its blocks into L2 (kernels_internal.h) */
void dn_gemm_q4_Kx16_q8_K_avx2_lines(int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs,
                                     int nt, float *y, size_t ldy)
{
    if (nt > 1) dn_gemm_q4_Kx16_q8_K_avx2(n, w, ws, nr, x, xs, nt, y, ldy);
    else run(K4, DN_FETCH_LINES, n, w, ws, nr, x, xs, 1, y, ldy);
}

void dn_gemm_q6_Kx16_q8_K_avx2_lines(int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs,
                                     int nt, float *y, size_t ldy)
{
    if (nt > 1) dn_gemm_q6_Kx16_q8_K_avx2(n, w, ws, nr, x, xs, nt, y, ldy);
    else run(K6, DN_FETCH_LINES, n, w, ws, nr, x, xs, 1, y, ldy);
}
