/* avx512_bf16x16.c - BF16 weights repacked 16 rows at a time
 * (DN_TYPE_BF16_X16, layout in quant/repack.c) on AVX-512 BF16.
 *
 * Chunk k of a row group is one vector holding the pair (2k, 2k+1) of each
 * of its 16 rows. vdpbf16ps of that vector against one activation pair
 * broadcast to all lanes adds the pair's products to 16 row sums at once:
 * no horizontal sums, and one weight load serves every token of a tile.
 * The activations are what dn_act_bf16_avx512 prepares (hi row bf16(x),
 * then from the next 64-byte boundary the lo row bf16(x - hi)); a pair is
 * the 4 bytes at 4k of either row, a plain broadcast load, so that layout
 * serves unchanged. Each weight vector thus feeds 2 * nt products.
 *
 * Every (group, token) sums hi and lo products in two accumulators over k
 * in order and adds them at the end, whatever the tile: a token alone gets
 * the same bits as in a batch. One token (generation) runs G1 groups side
 * by side so 2 * G1 chains hide the vdpbf16ps latency and G1 weight streams
 * keep loads in flight; several tokens run GT groups x TT tokens tiles
 * (2 * GT * TT accumulators) over row blocks that stay in L2 while every
 * token tile passes over them. */
#include <immintrin.h>
#include "kernels/kernels_internal.h"

#define AI static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")

/* Tile shapes, measured on Zen 4:
 * - one token: 4 groups side by side reach the DRAM read ceiling, and 2.3x
 *   the plain-layout matvec from L2; 2 or 8 groups are slower from cache,
 *   and software prefetch only slowed the hardware streams down;
 * - tokens: 2 x 6, 3 x 4, 4 x 3 and 2 x 4 tiles all run at ~98% of the
 *   vdpbf16ps peak (16..24 independent accumulators), 1 x 8 at 95%.
 * Row blocks of ROW_BLOCK_BYTES of weights are reused from L2 by every
 * token tile (192 KiB .. 768 KiB measured alike). */
enum { G1 = 4, GT = 2, TT = 6, ROW_BLOCK_BYTES = 384 * 1024 };

/* G groups (ws bytes apart) x T tokens (xs bytes apart, lo row at +lo)
 * over K chunks; y[t * ldy + 16 g + lane]. */
AI void tile(const int G, const int T, int64_t K, const uint8_t *w, size_t ws,
             const uint8_t *x, size_t xs, size_t lo, float *y, size_t ldy)
{
    __m512 H[G1][TT], L[G1][TT];
    UNROLL for (int g = 0; g < G; g++) UNROLL for (int t = 0; t < T; t++)
        H[g][t] = L[g][t] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        __m512bh W[G1];
        UNROLL for (int g = 0; g < G; g++)
            W[g] = (__m512bh)_mm512_loadu_si512(w + (size_t)g * ws + 64 * (size_t)k);
        UNROLL for (int t = 0; t < T; t++) {
            const uint8_t *p = x + (size_t)t * xs + 4 * (size_t)k;
            const __m512bh a = (__m512bh)_mm512_set1_epi32((int)dn_ld_u32(p));
            const __m512bh b = (__m512bh)_mm512_set1_epi32((int)dn_ld_u32(p + lo));
            UNROLL for (int g = 0; g < G; g++) {
                H[g][t] = _mm512_dpbf16_ps(H[g][t], W[g], a);
                L[g][t] = _mm512_dpbf16_ps(L[g][t], W[g], b);
            }
        }
    }
    UNROLL for (int g = 0; g < G; g++) UNROLL for (int t = 0; t < T; t++)
        _mm512_storeu_ps(y + (size_t)t * ldy + 16 * g, _mm512_add_ps(H[g][t], L[g][t]));
}

/* a tile of gg <= GT groups x tt <= TT tokens, shapes as constants */
static void tile_gt(int gg, int tt, int64_t K, const uint8_t *w, size_t ws,
                    const uint8_t *x, size_t xs, size_t lo, float *y, size_t ldy)
{
#define TC(G, T) case T: tile(G, T, K, w, ws, x, xs, lo, y, ldy); break;
    _Static_assert(GT == 2 && TT == 6, "cases below");
    if (gg == 2) switch (tt) { TC(2, 1) TC(2, 2) TC(2, 3) TC(2, 4) TC(2, 5) TC(2, 6) }
    else switch (tt) { TC(1, 1) TC(1, 2) TC(1, 3) TC(1, 4) TC(1, 5) TC(1, 6) }
#undef TC
}

/* one token: G1 groups at a time, then the last 1..G1-1 together */
static void matvec(int ng, int64_t K, const uint8_t *w, size_t ws, const uint8_t *x, size_t lo, float *y)
{
    int g = 0;
    for (; g + G1 <= ng; g += G1) tile(G1, 1, K, w + (size_t)g * ws, ws, x, 0, lo, y + 16 * g, 0);
    const uint8_t *wg = w + (size_t)g * ws;
    _Static_assert(G1 == 4, "cases below");
    switch (ng - g) {
    case 1: tile(1, 1, K, wg, ws, x, 0, lo, y + 16 * g, 0); break;
    case 2: tile(2, 1, K, wg, ws, x, 0, lo, y + 16 * g, 0); break;
    case 3: tile(3, 1, K, wg, ws, x, 0, lo, y + 16 * g, 0); break;
    }
}

/* the table entry (avx512.c declares it too) */
void dn_gemm_bf16x16_avx512(int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs,
                            int nt, float *y, size_t ldy);

void dn_gemm_bf16x16_avx512(int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs,
                            int nt, float *y, size_t ldy)
{
    const int64_t K = n / 2;
    const int ng = nr / 16;
    const size_t lo = ((size_t)n * 2 + 63) & ~(size_t)63;
    const uint8_t *wb = w, *xb = x;
    if (nt == 1) {
        matvec(ng, K, wb, ws, xb, lo, y);
        return;
    }
    /* row blocks stay in L2 while the token tiles pass over them */
    int rb = (int)(ROW_BLOCK_BYTES / ws);
    rb = rb < GT ? GT : rb - rb % GT;
    for (int g0 = 0; g0 < ng; g0 += rb) {
        const int g1 = ng - g0 < rb ? ng : g0 + rb;
        for (int t = 0; t < nt; t += TT) {
            const int tt = nt - t < TT ? nt - t : TT;
            for (int g = g0; g < g1; g += GT) {
                const int gg = g1 - g < GT ? g1 - g : GT;
                tile_gt(gg, tt, K, wb + (size_t)g * ws, ws, xb + (size_t)t * xs, xs, lo,
                        y + (size_t)t * ldy + 16 * g, ldy);
            }
        }
    }
}
