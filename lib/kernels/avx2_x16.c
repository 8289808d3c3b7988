/* avx2_x16.c - gemm kernels for the row-interleaved weight types q4_0x16
 * and q8_0x16 (layouts in quant/repack.c) against q8_0 activations, AVX2 +
 * FMA + F16C (no VNNI). Same flags as avx2.c.
 *
 * A 64-byte chunk holds 4 weights of each of 16 rows: its two 32-byte
 * halves (rows 0..7, rows 8..15) each meet 4 broadcast activation bytes
 * in vpmaddubsw, so every int32 lane gathers one row's products without
 * horizontal sums, and each scale is applied once per 8 rows.
 *  - q4_0x16: nibbles 0..15 unsigned. All 8 vpmaddubsw of a block (16
 *    products per int16 lane, |sum| <= 16 * 15 * 128 = 30720) add up in
 *    int16, one vpmaddwd widens them; the bias 8 times the block's
 *    activation sum comes from the AVX2 extras (avx2_internal.h).
 *  - q8_0x16: stored q + 128 would overflow vpmaddubsw pairs
 *    (2 * 255 * 127), so the byte goes back to signed q and the sign moves
 *    onto the activation: |q| * sign(x, q), pairs <= 2 * 128 * 127; each
 *    product pair widens through vpmaddwd at once.
 * Per block, row half and token: a convert, d_w[8] * d_x and an fma, the
 * float operations of the AVX-512 x16 kernels, in the same order for every
 * tile shape: a token alone and in a batch get identical bits. */
#include <immintrin.h>
#include "kernels/kernels_internal.h"
#include "kernels/avx2_internal.h"


enum { X4, X8, XU };   /* q4_0x16, q8_0x16, q4_0x16 unpacked (tile_u) */
/* Tokens per tile: 2 halves x 3 tokens of int and float accumulators plus
 * the weights fill the 16 ymm registers (2 x 2, 1 x 4, 1 x 5, 1 x 6 and
 * 2 x 3 measured: 2 x 3 best for q4_0, all alike for q8_0). */
enum { MAXT = 3, Q8_0_BYTES = sizeof(dn_block_q8_0), Q8_0_QS = offsetof(dn_block_q8_0, qs) };

/* bytes of one block column of a row group: d[16] f16 then the chunks
 * (quant.h; they start at X_QS in both types) */
AI int colbytes(int kind) { return kind == X4 ? (int)sizeof(dn_block_q4_0x16) : (int)sizeof(dn_block_q8_0x16); }

/* v as is, but opaque to the optimizer: GCC otherwise reassociates the
 * int16 accumulation into a tree of all a block's products and spills
 * most of them (q4_0: 160 instead of 224 GFLOP/s). */
AI __m256i opaque(__m256i v)
{
    __asm__("" : "+x"(v));
    return v;
}

/* 4 activation bytes in every int32 lane */
AI __m256i bcast4(const uint8_t *p) { return _mm256_set1_epi32((int)dn_ld_u32(p)); }

/* One row group (two halves h of 8 rows) x NT tokens (q8_0 rows xq[t],
 * their extras xe[t]) over all nb block columns: y[t * ldy + 8 * h + lane]. */
AI void tile(int kind, int fetch, int NT, int64_t nb, const uint8_t *w,
             const uint8_t *const *xq, const uint8_t *const *xe, float *y, size_t ldy, int first)
{
    const int CB = colbytes(kind);
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    __m256 F[2][MAXT];
    UNROLL for (int h = 0; h < 2; h++) UNROLL for (int t = 0; t < NT; t++)
        F[h][t] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(y + t * ldy + 8 * h);
    for (int64_t b = 0; b < nb; b++, w += CB) {
        if (NT == 1) DN_STREAM_AHEAD(fetch, w, CB);
        const size_t qo = (size_t)b * Q8_0_BYTES + Q8_0_QS;
        const size_t eo = dn_a2_extras_block(b);
        __m256i A[2][MAXT];
        if (kind != X8) {
            /* chunk k: low nibbles are elements 4k.., high ones 16 + 4k..
             * (XU: already unpacked into chunks k and 4 + k) */
            __m256i S[2][MAXT];
            UNROLL for (int h = 0; h < 2; h++) UNROLL for (int t = 0; t < NT; t++) S[h][t] = _mm256_setzero_si256();
            UNROLL for (int k = 0; k < 4; k++) {
                UNROLL for (int h = 0; h < 2; h++) {
                    const __m256i W = _mm256_loadu_si256((const __m256i *)(w + X_QS + 64 * k + 32 * h));
                    const __m256i lo = kind == XU ? W : _mm256_and_si256(W, m4);
                    const __m256i hi = kind == XU ? _mm256_loadu_si256((const __m256i *)(w + X_QS + 64 * (4 + k) + 32 * h))
                                                  : _mm256_and_si256(_mm256_srli_epi16(W, 4), m4);
                    UNROLL for (int t = 0; t < NT; t++) {
                        const __m256i p = _mm256_maddubs_epi16(lo, bcast4(xq[t] + qo + 4 * k));
                        const __m256i q = _mm256_maddubs_epi16(hi, bcast4(xq[t] + qo + 16 + 4 * k));
                        S[h][t] = opaque(_mm256_add_epi16(S[h][t], _mm256_add_epi16(p, q)));
                    }
                }
            }
            UNROLL for (int t = 0; t < NT; t++) {
                const __m256i bias = _mm256_set1_epi32((int)dn_ld_u32(xe[t] + eo + DN_A2_NS8));
                UNROLL for (int h = 0; h < 2; h++) A[h][t] = _mm256_add_epi32(_mm256_madd_epi16(S[h][t], ones), bias);
            }
        } else {
            UNROLL for (int h = 0; h < 2; h++) UNROLL for (int t = 0; t < NT; t++) A[h][t] = _mm256_setzero_si256();
            UNROLL for (int k = 0; k < 8; k++) {
                UNROLL for (int h = 0; h < 2; h++) {
                    const __m256i W = _mm256_xor_si256(
                        _mm256_loadu_si256((const __m256i *)(w + X_QS + 64 * k + 32 * h)), _mm256_set1_epi8(-128));
                    const __m256i aw = _mm256_abs_epi8(W);
                    UNROLL for (int t = 0; t < NT; t++) {
                        const __m256i p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(bcast4(xq[t] + qo + 4 * k), W));
                        A[h][t] = opaque(_mm256_add_epi32(A[h][t], _mm256_madd_epi16(p, ones)));
                    }
                }
            }
        }
        UNROLL for (int h = 0; h < 2; h++) {
            const __m256 DW = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + 16 * h)));
            UNROLL for (int t = 0; t < NT; t++) {
                float dx;
                memcpy(&dx, xe[t] + eo + DN_A2_DX, 4);
                F[h][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(A[h][t]), _mm256_mul_ps(DW, _mm256_set1_ps(dx)), F[h][t]);
            }
        }
    }
    UNROLL for (int h = 0; h < 2; h++) UNROLL for (int t = 0; t < NT; t++)
        _mm256_storeu_ps(y + t * ldy + 8 * h, F[h][t]);
}

/* Each row group against token tiles of up to MAXT (the group's weights,
 * 23 KB at 2560 columns, stay in L1/L2 across the tiles); for one token a
 * single sequential weight stream. */
AI void gemm_x16(int kind, int fetch, int64_t n, const uint8_t *w, size_t ws, int nr, const uint8_t *x,
                 size_t xs, int nt, float *y, size_t ldy)
{
    const int64_t nb = n / 32;
    const size_t eoff = dn_a2_extras_at(nb);
    const uint8_t *xq[MAXT], *xe[MAXT];
    for (int g = 0; g < nr / 16; g++) {
        const uint8_t *wg = w + g * ws;
        float *yg = y + 16 * g;
        for (int t0 = 0; t0 < nt; t0 += MAXT) {
            const int m = nt - t0 < MAXT ? nt - t0 : MAXT;
            for (int t = 0; t < m; t++) {
                xq[t] = x + (size_t)(t0 + t) * xs;
                xe[t] = xq[t] + eoff;
            }
            float *yt = yg + (size_t)t0 * ldy;
            switch (m) {
            case 1: tile(kind, fetch, 1, nb, wg, xq, xe, yt, ldy, 1); break;
            case 2: tile(kind, fetch, 2, nb, wg, xq, xe, yt, ldy, 1); break;
            default: tile(kind, fetch, 3, nb, wg, xq, xe, yt, ldy, 1); break;
            }
        }
    }
}

/* q4_0x16 for several tokens on Intel: unpacked slices
 * (dn_a2_q4x16_sliced) through the same tile without its shift and masks.
 * Family 6 model 167, 512 tokens (kernels_bench, 2026-12-07): 207-208
 * GFLOP/s against 184-188 for the packed tiles. */
static void tile_u(int64_t ns, const uint8_t *u, const uint8_t *const *xq, const uint8_t *const *xe, float *y,
                   size_t ldy, int m, int first)
{
    if (m == 3) tile(XU, DN_FETCH_PAGE, 3, ns, u, xq, xe, y, ldy, first);
    else tile(XU, DN_FETCH_PAGE, 2, ns, u, xq, xe, y, ldy, first);
}

DN_GEMM_DECL(dn_gemm_q4_0x16_q8_0_avx2) { gemm_x16(X4, DN_FETCH_PAGE, n, w, w_stride, nr, x, x_stride, nt, y, ldy); }
/* Intel (DN_FETCH_LINES): one token fetches lines ahead, several take
 * unpacked slices */
DN_GEMM_DECL(dn_gemm_q4_0x16_q8_0_avx2_lines)
{
    if (nt > 1) dn_a2_q4x16_sliced(tile_u, n, w, w_stride, nr, x, x_stride, nt, y, ldy);
    else gemm_x16(X4, DN_FETCH_LINES, n, w, w_stride, nr, x, x_stride, 1, y, ldy);
}
DN_X16_GEMM_PAIR(dn_gemm_q8_0x16_q8_0_avx2, X8)
