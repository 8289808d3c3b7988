/* avx2vnni_x16.c - the x16 gemm kernels (q4_0x16, q8_0x16 against q8_0
 * rows with the AVX2 extras; q4_Kx16, q6_Kx16 against plain q8_K rows)
 * for AVX2 + AVX-VNNI: the VEX-encoded vpdpbusd / vpdpwssd on ymm of
 * Alder Lake and later Intel client cores (no AVX-512) and Zen 5. Built
 * with -mavx2 -mfma -mf16c -mavxvnni and no AVX-512 flag.
 *
 * The layouts are those of avx2_x16.c / avx2_x16k.c: each 32-byte half of
 * a 64-byte chunk holds 4 consecutive weights of rows 0..7 or 8..15, so
 * vpdpbusd(acc, unsigned weights, 4 broadcast activation bytes) adds 4
 * products to each row's int32 lane. vpdpbusd accumulates in int32, so
 * the int16 bounds of the vpmaddubsw kernels (and their workarounds: the
 * sign trick of q8_0, the int16 pair sums of q6_K) are gone:
 *  - q4_0x16: nibbles 0..15; the accumulator starts at the extras' NS8
 *    (-8 * the block's activation sum).
 *  - q8_0x16: the stored bytes q + 128 as they are; the accumulator
 *    starts at 16 * NS8 = -128 * the sum.
 *  - q4_Kx16: per 32-element sub-block an int32 sum (|P| <= 32 * 15 *
 *    128), times the rows' scales (vpmulld), summed over the super-block;
 *    sub-blocks 2i and 2i+1 (the low and high nibbles of the same bytes)
 *    in one pass. The mins term is 4 vpdpwssd of (m_2i, m_2i+1) pairs per
 *    token.
 *  - q6_Kx16: q = 0..63 per 16-element sub-block, the accumulator starts
 *    at -32 * the sub-block's bsum; times the signed scale (vpmulld).
 * The integer sums equal those of the AVX2 kernels (both exact), and the
 * float operations (convert, scale product, fma; q4_K: d * I - dmin * M
 * times d_x) are the AVX2 ones in the same order, so the results are
 * bit-identical to the avx2 level's, and the same in every tile shape: a
 * token alone and in a batch get identical bits.
 * Tiles: q4_0 and q8_0 take both row halves x 1-3 tokens (one token: a
 * single weight stream); q4_K and q6_K one half x 2-5 tokens, see the enum
 * below, and one token alone takes the AVX2 kernels (the entry points).
 * The table dispatch.c picks on Intel (DN_FETCH_LINES) prompts q4_0 from
 * unpacked slices and q4_K with every activation a memory broadcast
 * (tile_u, q4x_block): Intel has vpsrlw and vpshufd share ports 0
 * and 1 with vpdpbusd and does 3 loads a cycle; its one-token q4_0 is
 * the AVX2 kernel's (measured below).
 *
 * What bounds them (Zen 5, measured with dependency-free loops): vpdpbusd,
 * vpdpwssd, vpmulld, vpmaddubsw, vmulps and vfmadd all issue to the same
 * two pipes (2 a cycle together), vector loads and vpbroadcastd from
 * memory go 2 a cycle, vpand / vpsrlw / vpshufd / vcvtdq2ps run beside
 * them. Per 8 rows, token and q4_0 / q8_0 block: 8 vpdpbusd + vmulps +
 * vfmadd on those two pipes (the AVX2 kernels: 8 vpmaddubsw + vpmaddwd +
 * the same two), so q4_0 at ~320 GFLOP/s (6912x2560x512) runs at 85-90%
 * of that bound at the measured clock. The float pair (d_w * d_x, fma) is
 * the least any order of the float steps needs: each output's block needs
 * both scale products, so giving up the avx2 bits would not shorten it. */
#include <immintrin.h>
#include "kernels/kernels_internal.h"
#include "kernels/avx2_internal.h"


/* q4_0x16, q8_0x16, q4_Kx16, q6_Kx16; XU: q4_0x16 unpacked to bytes
 * (tile_u), KB: q4_Kx16 with every activation broadcast from memory
 * (q4x_block) */
enum { X4, X8, K4, K6, XU, KB };
enum {
    MAXT = 6,              /* most tokens per tile */
    /* Tiles of several tokens (kernels_bench, Zen 5 at 512 tokens): q4_0
     * and q8_0 both row halves x 3 tokens (q4_0 ~300 GFLOP/s; one half x
     * 4: ~255, two int chains per accumulator: no gain); the K-quants one
     * row half x 4 (q4_K ~265; both halves x 3: ~245) or 5 (q6_K ~185,
     * bound by unpacking the 6-bit codes; 4: ~172). Re-measured after the
     * one-load chunks and q4_K's paired sub-blocks (interleaved A/B runs,
     * 6912x2560x512): q4_0 2 or 4 tokens 11% / 20% slower than 3; q4_K 3
     * tokens within 1% of 4, 5 tokens 14% slower (spills); q6_K with
     * paired quarters (qd, qd + 2) 10-25% slower at 3-5 tokens */
    T32 = 3, TK4 = 4, TK6 = 5,
    /* Intel (family 6 model 167, AVX-VNNI forced, kernels_bench at 512
     * tokens, 2026-12-07): q4_K with every activation broadcast from
     * memory x 5 tokens 230-236 GFLOP/s, x 4 225-230, x 6 222-224, x 3
     * 215-220; the shuffles above x 4 208-215 */
    TKB = 5,
    Q8_0_BYTES = sizeof(dn_block_q8_0), Q8_0_QS = offsetof(dn_block_q8_0, qs)
};

/* acc += w . 4 activation bytes at p broadcast to every int32 lane */
AI __m256i dpb(__m256i acc, __m256i w, const uint8_t *p)
{
    return _mm256_dpbusd_avx_epi32(acc, w, _mm256_set1_epi32((int)dn_ld_u32(p)));
}
AI __m256i dpw(__m256i acc, __m256i w, const void *p)
{
    return _mm256_dpwssd_avx_epi32(acc, w, _mm256_set1_epi32((int)dn_ld_u32(p)));
}
/* int32 element i of each 128-bit lane of x, in every lane (vpshufd: a
 * shuffle pipe instead of a load port) */
AI __m256i bsh(__m256i x, int i)
{
    return i == 0 ? _mm256_shuffle_epi32(x, 0x00) : i == 1 ? _mm256_shuffle_epi32(x, 0x55)
         : i == 2 ? _mm256_shuffle_epi32(x, 0xAA) : _mm256_shuffle_epi32(x, 0xFF);
}
AI __m256i ld(const uint8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }
AI __m256 f16x8(const uint8_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
AI float ldf(const uint8_t *p) { float f; memcpy(&f, p, 4); return f; }

/* bytes of one block column of a q4_0x16 / q8_0x16 row group */
AI int colbytes(int kind) { return kind == X4 ? (int)sizeof(dn_block_q4_0x16) : (int)sizeof(dn_block_q8_0x16); }

/* ------------------------------------------------------------------ */
/* q4_0x16, q8_0x16                                                    */
/* ------------------------------------------------------------------ */

/* Row halves h0..h0+NH-1 of one group x NT tokens (q8_0 rows xq[t], their
 * extras xe[t]) over nb block columns: y[t * ldy + 8 * h + lane]. */
AI void tile32(int kind, int fetch, int NH, int NT, int h0, int64_t nb, const uint8_t *w,
               const uint8_t *const *xq, const uint8_t *const *xe, float *y, size_t ldy, int first)
{
    const int CB = colbytes(kind);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 F[2][MAXT];
    UNROLL for (int h = 0; h < NH; h++) UNROLL for (int t = 0; t < NT; t++)
        F[h][t] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(y + (size_t)t * ldy + 8 * (h0 + h));
    for (int64_t b = 0; b < nb; b++, w += CB) {
        if (NT == 1 && h0 == 0) DN_STREAM_AHEAD(fetch, w, CB);
        const size_t qo = (size_t)b * Q8_0_BYTES + Q8_0_QS;
        const size_t eo = dn_a2_extras_block(b);
        __m256i A[2][MAXT];
        UNROLL for (int t = 0; t < NT; t++) {
            /* the bias times the block's sum: -8 (q4_0) or -128 (q8_0)
             * times sum(qs), |sum| <= 32 * 128 */
            const int32_t ns8 = (int32_t)dn_ld_u32(xe[t] + eo + DN_A2_NS8);
            const __m256i bias = _mm256_set1_epi32(kind == X8 ? 16 * ns8 : ns8);
            UNROLL for (int h = 0; h < NH; h++) A[h][t] = bias;
        }
        if (kind == X4) {
            /* chunk k: low nibbles are elements 4k.., high ones 16 + 4k.. */
            UNROLL for (int k = 0; k < 4; k++) UNROLL for (int h = 0; h < NH; h++) {
                __m256i W = ld(w + X_QS + 64 * k + 32 * (h0 + h));
                __asm__("" : "+x"(W));   /* one load for both nibbles */
                const __m256i lo = _mm256_and_si256(W, m4);
                const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(W, 4), m4);
                UNROLL for (int t = 0; t < NT; t++) {
                    A[h][t] = dpb(A[h][t], lo, xq[t] + qo + 4 * k);
                    A[h][t] = dpb(A[h][t], hi, xq[t] + qo + 16 + 4 * k);
                }
            }
        } else {   /* q8_0, or q4_0 unpacked (XU): the bytes as they are */
            UNROLL for (int k = 0; k < 8; k++) UNROLL for (int h = 0; h < NH; h++) {
                const __m256i W = ld(w + X_QS + 64 * k + 32 * (h0 + h));
                UNROLL for (int t = 0; t < NT; t++) A[h][t] = dpb(A[h][t], W, xq[t] + qo + 4 * k);
            }
        }
        /* the float steps of avx2_x16.c, in its order */
        UNROLL for (int h = 0; h < NH; h++) {
            const __m256 DW = f16x8(w + 16 * (h0 + h));
            UNROLL for (int t = 0; t < NT; t++) {
                const float dx = ldf(xe[t] + eo + DN_A2_DX);
                F[h][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(A[h][t]), _mm256_mul_ps(DW, _mm256_set1_ps(dx)), F[h][t]);
            }
        }
    }
    UNROLL for (int h = 0; h < NH; h++) UNROLL for (int t = 0; t < NT; t++)
        _mm256_storeu_ps(y + (size_t)t * ldy + 8 * (h0 + h), F[h][t]);
}

/* ------------------------------------------------------------------ */
/* q4_Kx16, q6_Kx16                                                    */
/* ------------------------------------------------------------------ */

/* Two 8-byte rows a, b as int16 pairs: lane i = a[i] | b[i] << 16 */
AI __m256i u8_pairs(const uint8_t *a, const uint8_t *b)
{
    const __m256i va = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)a));
    const __m256i vb = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)b));
    return _mm256_or_si256(va, _mm256_slli_epi32(vb, 16));
}

/* One 256-column block c of a q4_Kx16 group, row halves h0..h0+NH-1,
 * against NT tokens (q8_K blocks at xb[t]), added to F[h][t]. */
AI void q4x_block(int bcast, int NH, int NT, int h0, const uint8_t *c, const uint8_t *const *xb, __m256 F[2][MAXT])
{
    __m256i I[2][MAXT];
    UNROLL for (int h = 0; h < NH; h++) UNROLL for (int t = 0; t < NT; t++) I[h][t] = _mm256_setzero_si256();
    /* sub-blocks 2jp (low nibbles) and 2jp + 1 (high nibbles of the same
     * bytes) together: one load per chunk, 2 * NT independent chains. The
     * 4 activation bytes: odd tokens take them from one 16-byte broadcast
     * per 4 chunks and vpshufd, even ones a vpbroadcastd each (Zen 5 does
     * 2 vector loads a cycle, as many as vpdpbusd: all broadcasts from
     * memory bound the loop by the load ports, all by shuffle spill).
     * bcast: every token a vpbroadcastd, for Intel cores (3 loads a cycle,
     * and vpshufd would take port 1 from vpdpbusd) */
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int jp = 0; jp < 4; jp++) {
        const int xo = Q8K_QS + 64 * jp;
        UNROLL for (int h = 0; h < NH; h++) {
            __m256i P0[MAXT], P1[MAXT];
            UNROLL for (int t = 0; t < NT; t++) P0[t] = P1[t] = _mm256_setzero_si256();
            __m256i X0[MAXT], X1[MAXT];
            UNROLL for (int k = 0; k < 8; k++) {
                __m256i L = ld(c + Q4X_QS + 512 * jp + 64 * k + 32 * (h0 + h));
                __asm__("" : "+x"(L));   /* one load for both nibbles */
                const __m256i lo = _mm256_and_si256(L, m4), hi = _mm256_and_si256(_mm256_srli_epi16(L, 4), m4);
                UNROLL for (int t = 0; t < NT; t++) {
                    if ((t & 1) && !bcast) {
                        if ((k & 3) == 0) {
                            X0[t] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(xb[t] + xo + 4 * k)));
                            X1[t] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(xb[t] + xo + 32 + 4 * k)));
                        }
                        P0[t] = _mm256_dpbusd_avx_epi32(P0[t], lo, bsh(X0[t], k & 3));
                        P1[t] = _mm256_dpbusd_avx_epi32(P1[t], hi, bsh(X1[t], k & 3));
                    } else {
                        P0[t] = dpb(P0[t], lo, xb[t] + xo + 4 * k);
                        P1[t] = dpb(P1[t], hi, xb[t] + xo + 32 + 4 * k);
                    }
                }
            }
            const uint8_t *sc = c + Q4X_SC + 32 * jp + 8 * (h0 + h);
            const __m256i S0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)sc));
            const __m256i S1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(sc + 16)));
            UNROLL for (int t = 0; t < NT; t++)
                I[h][t] = _mm256_add_epi32(I[h][t], _mm256_add_epi32(_mm256_mullo_epi32(P0[t], S0), _mm256_mullo_epi32(P1[t], S1)));
        }
    }
    /* mins: the token's s_j (avx2_internal.h) as int16 pairs */
    int16_t s[MAXT][8];
    UNROLL for (int t = 0; t < NT; t++) dn_a2_q8k_min_sums(xb[t], s[t]);
    UNROLL for (int h = h0; h < h0 + NH; h++) {
        __m256i M[MAXT];
        UNROLL for (int t = 0; t < NT; t++) M[t] = _mm256_setzero_si256();
        UNROLL for (int i = 0; i < 4; i++) {
            const __m256i mm = u8_pairs(c + Q4X_M + 32 * i + 8 * h, c + Q4X_M + 32 * i + 16 + 8 * h);
            UNROLL for (int t = 0; t < NT; t++) M[t] = dpw(M[t], mm, &s[t][2 * i]);
        }
        /* the float steps of avx2_x16k.c, in its order */
        const __m256 D = f16x8(c + 16 * h), Dm = f16x8(c + Q4X_DMIN + 16 * h);
        UNROLL for (int t = 0; t < NT; t++) {
            __m256 T = _mm256_mul_ps(_mm256_cvtepi32_ps(I[h - h0][t]), D);
            T = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(M[t]), Dm, T);
            F[h - h0][t] = _mm256_fmadd_ps(T, _mm256_set1_ps(ldf(xb[t])), F[h - h0][t]);
        }
    }
}

/* One 256-column block c of a q6_Kx16 group, row halves h0..h0+NH-1,
 * against NT tokens. Sub-block j (16 elements) = half H, quarter qd,
 * sixteen mh: its 4 chunks m = 4mh..4mh+3 (dn_a2_q6x_codes). */
AI void q6x_block(int NH, int NT, int h0, const uint8_t *c, const uint8_t *const *xb, __m256 F[2][MAXT])
{
    __m256i I[2][MAXT];
    UNROLL for (int h = 0; h < NH; h++) UNROLL for (int t = 0; t < NT; t++) I[h][t] = _mm256_setzero_si256();
    for (int H = 0; H < 2; H++) for (int mh = 0; mh < 2; mh++) UNROLL for (int qd = 0; qd < 4; qd++) {
        const int j = 8 * H + 2 * qd + mh;
        const int xo = Q8K_QS + 16 * j;
        UNROLL for (int h = h0; h < h0 + NH; h++) {
            __m256i P[MAXT];   /* |P| <= 16 * 63 * 128 */
            UNROLL for (int t = 0; t < NT; t++) P[t] = _mm256_setzero_si256();
            UNROLL for (int k = 0; k < 4; k++) {
                const __m256i W = dn_a2_q6x_codes(c, H, qd, 4 * mh + k, h);
                UNROLL for (int t = 0; t < NT; t++) P[t] = dpb(P[t], W, xb[t] + xo + 4 * k);
            }
            const __m256i S = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(c + Q6X_SC + 16 * j + 8 * h)));
            UNROLL for (int t = 0; t < NT; t++) I[h - h0][t] = _mm256_add_epi32(I[h - h0][t], _mm256_mullo_epi32(P[t], S));
        }
    }
    UNROLL for (int h = h0; h < h0 + NH; h++) {
        /* the -32 offset: -32 sum_j sc_j bsums[j], 8 vpdpwssd of scale
         * pairs (sub-blocks 2i, 2i+1) against bsums pairs per token */
        __m256i O[MAXT];
        UNROLL for (int t = 0; t < NT; t++) O[t] = _mm256_setzero_si256();
        UNROLL for (int i = 0; i < 8; i++) {
            const __m256i sa = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(c + Q6X_SC + 32 * i + 8 * h)));
            const __m256i sb = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(c + Q6X_SC + 32 * i + 16 + 8 * h)));
            const __m256i sp = _mm256_or_si256(_mm256_and_si256(sa, _mm256_set1_epi32(0xFFFF)), _mm256_slli_epi32(sb, 16));
            UNROLL for (int t = 0; t < NT; t++) O[t] = dpw(O[t], sp, xb[t] + Q8K_BSUMS + 4 * i);
        }
        /* the float steps of avx2_x16k.c, in its order */
        const __m256 D = f16x8(c + 16 * h);
        UNROLL for (int t = 0; t < NT; t++) {
            const __m256i A = _mm256_sub_epi32(I[h - h0][t], _mm256_slli_epi32(O[t], 5));
            F[h - h0][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(A), _mm256_mul_ps(D, _mm256_set1_ps(ldf(xb[t]))), F[h - h0][t]);
        }
    }
}

/* Row halves h0..h0+NH-1 of group g x NT tokens (q8_K rows xs apart)
 * over nb super-blocks. */
AI void tileK(int kind, int NH, int NT, int h0, int64_t nb, const uint8_t *g, const uint8_t *x, size_t xs,
              float *y, size_t ldy)
{
    __m256 F[2][MAXT];
    UNROLL for (int h = 0; h < NH; h++) UNROLL for (int t = 0; t < NT; t++) F[h][t] = _mm256_setzero_ps();
    const int CB = kind == K6 ? Q6X : Q4X;   /* bytes of a super-block of the group */
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *xb[MAXT];
        UNROLL for (int t = 0; t < NT; t++) xb[t] = x + (size_t)t * xs + (size_t)i * Q8K_BYTES;
        if (kind != K6) q4x_block(kind == KB, NH, NT, h0, g + (size_t)i * CB, xb, F);
        else q6x_block(NH, NT, h0, g + (size_t)i * CB, xb, F);
    }
    UNROLL for (int h = 0; h < NH; h++) UNROLL for (int t = 0; t < NT; t++)
        _mm256_storeu_ps(y + (size_t)t * ldy + 8 * (h0 + h), F[h][t]);
}

/* ------------------------------------------------------------------ */
/* entry points                                                        */
/* ------------------------------------------------------------------ */

/* One tile: row halves h0..h0+NH-1 of the group at w against NT tokens
 * starting at x (rows xs apart), results from y. */
typedef void (*tile_fn)(int64_t n, const uint8_t *w, const uint8_t *x, size_t xs, int h0, float *y, size_t ldy);

AI void tile_any(int kind, int fetch, int NH, int NT, int64_t n, const uint8_t *w, const uint8_t *x, size_t xs, int h0,
                 float *y, size_t ldy)
{
    if (kind == X4 || kind == X8) {
        const int64_t nb = n / 32;
        const size_t eoff = dn_a2_extras_at(nb);
        const uint8_t *xq[MAXT], *xe[MAXT];
        UNROLL for (int t = 0; t < NT; t++) {
            xq[t] = x + (size_t)t * xs;
            xe[t] = xq[t] + eoff;
        }
        tile32(kind, fetch, NH, NT, h0, nb, w, xq, xe, y, ldy, 1);
    } else {
        tileK(kind, NH, NT, h0, n / DN_QK_K, w, x, xs, y, ldy);
    }
}

#define TILE_FN(KIND, NH, NT) TILE_FN_F(KIND, NH, NT, DN_FETCH_PAGE, )
#define TILE_FN_F(KIND, NH, NT, FETCH, SUFFIX) \
    static void KIND##_##NT##SUFFIX(int64_t n, const uint8_t *w, const uint8_t *x, size_t xs, int h0, float *y, \
                                    size_t ldy) \
    { tile_any(KIND, FETCH, NH, NT, n, w, x, xs, h0, y, ldy); }
#define TILE_FNS(KIND, NH) TILE_FN(KIND, NH, 2) TILE_FN(KIND, NH, 3) TILE_FN(KIND, NH, 4) \
    TILE_FN(KIND, NH, 5) TILE_FN(KIND, NH, 6)
#define TILES(KIND, ONE) { NULL, ONE, KIND##_2, KIND##_3, KIND##_4, KIND##_5, KIND##_6 }
_Static_assert(MAXT == 6 && T32 <= MAXT && TK4 <= MAXT && TKB <= MAXT && TK6 <= MAXT, "tile tables");
/* tiles[m]: m tokens; q4_0, q8_0: both row halves; q4_K, q6_K: one half,
 * from 2 tokens (one token takes the AVX2 kernels, see run) */
TILE_FN(X4, 2, 1) TILE_FNS(X4, 2)
TILE_FN(X8, 2, 1) TILE_FNS(X8, 2) TILE_FN_F(X8, 2, 1, DN_FETCH_LINES, L)
TILE_FNS(K4, 1)
TILE_FNS(KB, 1)
TILE_FNS(K6, 1)
/* the DN_FETCH_LINES table's: X8_1L fetches lines ahead, KB (q4_K) broadcasts */
static const tile_fn tiles_X4[] = TILES(X4, X4_1), tiles_X8[] = TILES(X8, X8_1),
                     tiles_X8L[] = TILES(X8, X8_1L),
                     tiles_K4[] = TILES(K4, NULL), tiles_KB[] = TILES(KB, NULL), tiles_K6[] = TILES(K6, NULL);

/* Each group (23-34 KB at 2560 columns, in L1/L2) against token tiles as
 * even as possible (at least 2 tokens each when nt > 1), nh row halves at
 * a time; one token (both halves of q4_0, q8_0): one pass over each group,
 * a single sequential weight stream.
 * one: the gemm a single token takes instead, or NULL. The K-quants for
 * one token take the AVX2 kernels (the same bits): a matrix-vector product
 * streams the weights from memory either way, and full-size Q4_K_M
 * generation on one thread measured 0.87-0.93x with the VNNI tiles (Zen 5,
 * 4 interleaved rounds). With the AVX2 kernels it still measured
 * 0.85-1.02x in 2 rounds, so the cause lies elsewhere (open). */
static void run(const tile_fn *tiles, int nh, int tmax, dn_gemm_fn one, int64_t n, const void *w, size_t ws,
                int nr, const void *x, size_t xs, int nt, float *y, size_t ldy)
{
    if (nt == 1 && one) {
        one(n, w, ws, nr, x, xs, nt, y, ldy);
        return;
    }
    const uint8_t *W = w, *X = x;
    const int ntiles = (nt + tmax - 1) / tmax;
    for (int g = 0; g < nr / 16; g++) {
        const uint8_t *wg = W + (size_t)g * ws;
        for (int i = 0, t = 0; i < ntiles; i++) {
            const int tt = (nt - t) / (ntiles - i);
            for (int h0 = 0; h0 < 2; h0 += nh)
                tiles[tt](n, wg, X + (size_t)t * xs, xs, h0, y + (size_t)t * ldy + 16 * g, ldy);
            t += tt;
        }
    }
}

/* q4_0x16 for several tokens on Intel: unpacked slices
 * (dn_a2_q4x16_sliced) through the q8_0 loop with the q4_0 bias (kind
 * XU). Family 6 model 167, 512 tokens (kernels_bench, 2026-12-07):
 * 267-277 GFLOP/s against 247-252 for the X4 tiles; slices of 8 / 16 / 24
 * / 48 / 80 columns: 255 / 264-270 / 267-271 / 273-279 / 277-280 against
 * 32's 273-276. Each accumulator split into two chains: 0.76-0.85x. */
static void tile_u(int64_t ns, const uint8_t *u, const uint8_t *const *xq, const uint8_t *const *xe, float *y,
                   size_t ldy, int m, int first)
{
    if (m == 3) tile32(XU, DN_FETCH_PAGE, 2, 3, 0, ns, u, xq, xe, y, ldy, first);
    else tile32(XU, DN_FETCH_PAGE, 2, 2, 0, ns, u, xq, xe, y, ldy, first);
}

/* the entry points: each runs its tiles, nh row halves at a time */
#define GEMM(NAME, TILES, NH, TMAX, ONE) \
    DN_GEMM_DECL(NAME) { run(TILES, NH, TMAX, ONE, n, w, w_stride, nr, x, x_stride, nt, y, ldy); }
GEMM(dn_gemm_q4_0x16_q8_0_avx2vnni, tiles_X4, 2, T32, NULL)
GEMM(dn_gemm_q8_0x16_q8_0_avx2vnni, tiles_X8, 2, T32, NULL)
/* Intel: several tokens take unpacked slices, one the AVX2 kernel with
 * lines ahead (the same bits; family 6 model 167, tg64 Q4_0, 3 rounds
 * interleaved: 14.14-14.20 tokens/s at 1 thread against 13.42-13.59 with
 * the X4 tile, 2 threads 25.4-26.2 against 25.2-25.8; kernels_bench one
 * token from DRAM 13.4-13.6 GB/s against 12.9-13.1) */
DN_GEMM_DECL(dn_gemm_q4_0x16_q8_0_avx2vnni_lines)
{
    if (nt > 1) dn_a2_q4x16_sliced(tile_u, n, w, w_stride, nr, x, x_stride, nt, y, ldy);
    else dn_gemm_q4_0x16_q8_0_avx2_lines(n, w, w_stride, nr, x, x_stride, nt, y, ldy);
}
GEMM(dn_gemm_q8_0x16_q8_0_avx2vnni_lines, tiles_X8L, 2, T32, NULL)
GEMM(dn_gemm_q4_Kx16_q8_K_avx2vnni, tiles_K4, 1, TK4, dn_gemm_q4_Kx16_q8_K_avx2)
GEMM(dn_gemm_q4_Kx16_q8_K_avx2vnni_lines, tiles_KB, 1, TKB, dn_gemm_q4_Kx16_q8_K_avx2_lines)
GEMM(dn_gemm_q6_Kx16_q8_K_avx2vnni, tiles_K6, 1, TK6, dn_gemm_q6_Kx16_q8_K_avx2)
GEMM(dn_gemm_q6_Kx16_q8_K_avx2vnni_lines, tiles_K6, 1, TK6, dn_gemm_q6_Kx16_q8_K_avx2_lines)
#undef GEMM

/* The avx2vnni table: only what differs from avx2 (dispatch.c starts from
 * the completed avx2 table and lays these slots over it). */
const dn_kernels dn_kernels_avx2vnni_table = {
    .isa = DN_ISA_AVX2VNNI,
    .name = "avx2vnni",
    .gemm = {
        [DN_TYPE_Q4_0_X16] = dn_gemm_q4_0x16_q8_0_avx2vnni,
        [DN_TYPE_Q8_0_X16] = dn_gemm_q8_0x16_q8_0_avx2vnni,
        [DN_TYPE_Q4_K_X16] = dn_gemm_q4_Kx16_q8_K_avx2vnni,
        [DN_TYPE_Q6_K_X16] = dn_gemm_q6_Kx16_q8_K_avx2vnni,
    },
    .att_scores = dn_att_scores_avx2vnni,
    .att_q8_values = dn_att_q8_values_avx2vnni,
};

/* The DN_FETCH_LINES table, which dispatch.c picks on Intel: besides the
 * line fetch of one token, the prompt tiles that suit Intel's ports (q4_0
 * unpacked, q4_K broadcasts; Zen 5 keeps the tiles measured there). */
DN_LINES_TABLE(dn_kernels_avx2vnni_lines_table, DN_ISA_AVX2VNNI, "avx2vnni", dn_gemm_q4_0x16_q8_0_avx2vnni_lines,
               dn_gemm_q8_0x16_q8_0_avx2vnni_lines, dn_gemm_q4_Kx16_q8_K_avx2vnni_lines,
               dn_gemm_q6_Kx16_q8_K_avx2vnni_lines);
