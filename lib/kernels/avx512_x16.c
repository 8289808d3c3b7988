/* avx512_x16.c - gemm kernels for the row-interleaved weight types
 * q4_0x16 and q8_0x16 (layouts in quant/repack.c) against q8_0
 * activations, AVX-512 VNNI. Same flags as avx512.c.
 *
 * One 64-byte chunk holds 4 weights of each of 16 rows, so
 * vpdpbusd(acc, chunk, broadcast 4 activation bytes) adds 4 products to
 * each row's lane: no horizontal sums, 16 row results per vector. Weights
 * are unsigned (q4_0 nibbles 0..15, q8_0 stored q + 128); the bias times
 * the block's activation sum, precomputed per token in the extras
 * (avx512_internal.h), is the accumulator's initial value, and per block and
 * token a convert, a multiply (d_w[16] * d_x) and an fma apply the scales:
 * 2 float ops per 8 vpdpbusd on the same pipes, ~80% of the int8 peak.
 * Tiles are one row group x up to 8 tokens (each unpacked chunk feeds
 * every token of the tile). Every output's float operations are the same
 * in every tile shape, so a token alone and in a batch get identical bits. */
#include <immintrin.h>
#include "kernels/kernels_internal.h"
#include "kernels/avx512_internal.h"


enum { X4, X8 };   /* q4_0x16, q8_0x16 */
enum { MAXT = 8, PF_MIN_TOKENS = 2, PF_BLOCKS = 16 };

/* bytes of one block column of a row group: d[16] f16 then the chunks
 * (quant.h; they start at X_QS in both types) */
AI int colbytes(int kind) { return kind == X4 ? (int)sizeof(dn_block_q4_0x16) : (int)sizeof(dn_block_q8_0x16); }

/* One row group x NT tokens (extras at xe[t]) over all nb block columns:
 * y[t * ldy + lane]. The accumulators of a block start fresh, so blocks
 * overlap in the pipeline; only the fma into F chains across them. */
AI void tile(int kind, int fetch, int NT, int64_t nb, const uint8_t *w, const uint8_t *const *xe, float *y,
             size_t ldy)
{
    const int CB = colbytes(kind);
    const int NS = kind == X4 ? DN_XE_NS8 : DN_XE_NS128;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512 F[MAXT];
    UNROLL for (int t = 0; t < NT; t++) F[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++, w += CB) {
        /* several tokens make the tile compute-bound: fetch the weights
         * PF_BLOCKS ahead so the DRAM stream overlaps the int8 work; one
         * token as the CPU's fetch says (DN_STREAM_AHEAD) */
        if (NT >= PF_MIN_TOKENS)
            for (int l = 0; l < CB; l += 64) _mm_prefetch((const char *)DN_FETCH_ADDR(w, PF_BLOCKS * CB + l), _MM_HINT_T0);
        else DN_STREAM_AHEAD(fetch, w, CB);
        /* this block's activation extras: qs at qo, sums and d_x at so */
        const size_t qo = (size_t)(b >> 3) * DN_XG_Q8_0 + 32 * (size_t)(b & 7);
        const size_t so = (size_t)(b >> 3) * DN_XG_Q8_0 + 4 * (size_t)(b & 7);
        __m512i A[MAXT];
        UNROLL for (int t = 0; t < NT; t++) A[t] = _mm512_set1_epi32((int)dn_ld_u32(xe[t] + so + NS));
        if (kind == X4) {
            /* chunk k: low nibbles are elements 4k.., high ones 16 + 4k.. */
            UNROLL for (int k = 0; k < 4; k++) {
                const __m512i W = _mm512_loadu_si512(w + X_QS + 64 * k);
                const __m512i lo = _mm512_and_si512(W, m4);
                const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(W, 4), m4);
                UNROLL for (int t = 0; t < NT; t++) {
                    A[t] = dpbusd_b(A[t], lo, xe[t] + qo + 4 * k);
                    A[t] = dpbusd_b(A[t], hi, xe[t] + qo + 16 + 4 * k);
                }
            }
        } else {
            UNROLL for (int k = 0; k < 8; k++) {
                const __m512i W = _mm512_loadu_si512(w + X_QS + 64 * k);
                UNROLL for (int t = 0; t < NT; t++) A[t] = dpbusd_b(A[t], W, xe[t] + qo + 4 * k);
            }
        }
        /* d_w[16] * d_x: with the convert on another pipe, mul + fma are
         * the only float work competing with vpdpbusd (2 per 8 of them) */
        const __m512 DW = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)w));
        UNROLL for (int t = 0; t < NT; t++) {
            float dx;
            memcpy(&dx, xe[t] + so + DN_XE_DX, 4);
            F[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(A[t]), _mm512_mul_ps(DW, _mm512_set1_ps(dx)), F[t]);
        }
    }
    UNROLL for (int t = 0; t < NT; t++) _mm512_storeu_ps(y + t * ldy, F[t]);
}

/* Each row group against token tiles of up to 8 (the group's weights stay
 * in L1/L2 across the tiles). Tile shape hardly matters for prompts (2 x 4,
 * 2 x 6, 4 x 4 measured the same: the float work bounds them); for one
 * token a single sequential weight stream beat two or four interleaved
 * streams (measured from DRAM on Zen 5, where fetches a few KB ahead lost
 * to the page fetch; on Intel they win: DN_STREAM_AHEAD). */
AI void gemm_x16(int kind, int fetch, int64_t n, const uint8_t *w, size_t ws, int nr, const uint8_t *x,
                 size_t xs, int nt, float *y, size_t ldy)
{
    const int64_t nb = n / 32;
    const size_t eoff = (size_t)(((int64_t)sizeof(dn_block_q8_0) * nb + 63) & ~(int64_t)63);
    const uint8_t *xe[MAXT];
    for (int g = 0; g < nr / 16; g++) {
        const uint8_t *wg = w + g * ws;
        float *yg = y + 16 * g;
        for (int t0 = 0; t0 < nt; t0 += MAXT) {
            const int m = nt - t0 < MAXT ? nt - t0 : MAXT;
            for (int t = 0; t < m; t++) xe[t] = x + (size_t)(t0 + t) * xs + eoff;
            float *yt = yg + (size_t)t0 * ldy;
            switch (m) {
            case 1: tile(kind, fetch, 1, nb, wg, xe, yt, ldy); break;
            case 2: tile(kind, fetch, 2, nb, wg, xe, yt, ldy); break;
            case 3: tile(kind, fetch, 3, nb, wg, xe, yt, ldy); break;
            case 4: tile(kind, fetch, 4, nb, wg, xe, yt, ldy); break;
            case 5: tile(kind, fetch, 5, nb, wg, xe, yt, ldy); break;
            case 6: tile(kind, fetch, 6, nb, wg, xe, yt, ldy); break;
            case 7: tile(kind, fetch, 7, nb, wg, xe, yt, ldy); break;
            default: tile(kind, fetch, 8, nb, wg, xe, yt, ldy); break;
            }
        }
    }
}

DN_X16_GEMMS(avx512)
