/* avx512_bf16x16.c - BF16 weights repacked 16 rows at a time
 * (DN_TYPE_BF16_X16 and its fast twin DN_TYPE_BF16_X16F, layout in
 * quant/repack.c) on AVX-512 BF16.
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
 * token tile passes over them.
 *
 * The fast variant (DN_TYPE_BF16_X16F, DANU_OPT_FAST_BF16) is the same code
 * without the lo row: one vdpbf16ps per pair against bf16(x), half the
 * work, with the activations' rounding (relative 2^-8 each) left in the
 * result. Both variants are one always-inline body with F constant. */
#include <immintrin.h>
#include "kernels/kernels_internal.h"
#include "kernels/avx512_internal.h"


/* Tile shapes, measured on Zen 5:
 * - one token: 4 groups side by side reach the DRAM read ceiling, and 2.3x
 *   the plain-layout matvec from L2; 2 or 8 groups are slower from cache,
 *   and software prefetch only slowed the hardware streams down;
 * - tokens: 2 x 6, 3 x 4, 4 x 3 and 2 x 4 tiles all run at ~98% of the
 *   vdpbf16ps peak (16..24 independent accumulators), 1 x 8 at 95%.
 * The fast variant (hi row only) has half the accumulators per tile, so
 * it takes larger tiles: 3 x 8 (24 chains, 3 weight + 8 broadcast loads
 * per 24 vdpbf16ps) ran at 1.96x the exact kernel, 2 x 6 at only 1.75x
 * (load-bound: 8 loads per 12), 4 x 6 and 2 x 12 at 1.9x. One token is
 * DRAM-bound either way: 4 (or 6) groups match the exact kernel, 8 groups
 * generated 7% slower. With the pair broadcast embedded in vdpbf16ps
 * (dpbf16_b) the fast prompt path gained ~2%; 3 x 8, 4 x 6, 4 x 7, 2 x 12
 * and 3 x 9 then all measured within noise (58.5-61 tokens/s, pp512).
 * Row blocks of ROW_BLOCK_BYTES of weights are reused from L2 by every
 * token tile (192 KiB .. 768 KiB measured alike). */
enum {
    G1 = 4, GT = 2, TT = 6,        /* exact: hi and lo rows */
    G1F = 4, GTF = 3, TTF = 8,     /* fast: hi row only     */
    GMAX = 8, TMAX = 12, ROW_BLOCK_BYTES = 384 * 1024
};

/* acc += w . broadcast(the bf16 pair at p), the broadcast embedded in the
 * instruction as dpbusd_b does (GCC emits a separate vpbroadcastd) */
AI __m512 dpbf16_b(__m512 acc, __m512bh w, const void *p)
{
    __asm__("vdpbf16ps %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*(const dn_i32_alias *)p));
    return acc;
}

/* G groups (ws bytes apart) x T tokens (xs bytes apart, lo row at +lo)
 * over K chunks; y[t * ldy + 16 g + lane]. F (fast): the hi row alone. */
AI void tile(const int F, const int G, const int T, int64_t K, const uint8_t *w, size_t ws,
             const uint8_t *x, size_t xs, size_t lo, float *y, size_t ldy)
{
    __m512 H[GMAX][TMAX], L[GMAX][TMAX];
    UNROLL for (int g = 0; g < G; g++) UNROLL for (int t = 0; t < T; t++)
        H[g][t] = L[g][t] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        __m512bh W[GMAX];
        if (T == 1) UNROLL for (int g = 0; g < G; g++) DN_PAGE_AHEAD(w + (size_t)g * ws + 64 * (size_t)k, 64);
        UNROLL for (int g = 0; g < G; g++)
            W[g] = (__m512bh)_mm512_loadu_si512(w + (size_t)g * ws + 64 * (size_t)k);
        UNROLL for (int t = 0; t < T; t++) {
            const uint8_t *p = x + (size_t)t * xs + 4 * (size_t)k;
            if (F) {   /* the pair broadcast inside each instruction (see dpbf16_b) */
                UNROLL for (int g = 0; g < G; g++) H[g][t] = dpbf16_b(H[g][t], W[g], p);
                continue;
            }
            const __m512bh a = (__m512bh)_mm512_set1_epi32((int)dn_ld_u32(p));
            UNROLL for (int g = 0; g < G; g++) H[g][t] = _mm512_dpbf16_ps(H[g][t], W[g], a);
            if (!F) {
                const __m512bh b = (__m512bh)_mm512_set1_epi32((int)dn_ld_u32(p + lo));
                UNROLL for (int g = 0; g < G; g++) L[g][t] = _mm512_dpbf16_ps(L[g][t], W[g], b);
            }
        }
    }
    UNROLL for (int g = 0; g < G; g++) UNROLL for (int t = 0; t < T; t++)
        _mm512_storeu_ps(y + (size_t)t * ldy + 16 * g, F ? H[g][t] : _mm512_add_ps(H[g][t], L[g][t]));
}

/* tt <= TTX tokens of G groups, the token count as a constant */
AI void tile_t(const int F, const int G, const int TTX, int tt, int64_t K, const uint8_t *w, size_t ws,
               const uint8_t *x, size_t xs, size_t lo, float *y, size_t ldy)
{
#define TC(T) case T: if (T <= TTX) tile(F, G, T, K, w, ws, x, xs, lo, y, ldy); break;
    switch (tt) { TC(1) TC(2) TC(3) TC(4) TC(5) TC(6) TC(7) TC(8) TC(9) TC(10) TC(11) TC(12) }
#undef TC
}

/* a tile of gg <= GTX groups x tt <= TTX tokens: whole GTX-group tiles, or
 * the last groups one by one */
AI void tile_gt(const int F, const int GTX, const int TTX, int gg, int tt, int64_t K, const uint8_t *w,
                size_t ws, const uint8_t *x, size_t xs, size_t lo, float *y, size_t ldy)
{
    if (gg == GTX) { tile_t(F, GTX, TTX, tt, K, w, ws, x, xs, lo, y, ldy); return; }
    for (int g = 0; g < gg; g++) tile_t(F, 1, TTX, tt, K, w + (size_t)g * ws, ws, x, xs, lo, y + 16 * g, ldy);
}

/* one token: G1X groups at a time, then the last 1..G1X-1 together */
AI void matvec(const int F, const int G1X, int ng, int64_t K, const uint8_t *w, size_t ws, const uint8_t *x,
               size_t lo, float *y)
{
    int g = 0;
    for (; g + G1X <= ng; g += G1X) tile(F, G1X, 1, K, w + (size_t)g * ws, ws, x, 0, lo, y + 16 * g, 0);
    const uint8_t *wg = w + (size_t)g * ws;
#define GC(G) case G: if (G < G1X) tile(F, G, 1, K, wg, ws, x, 0, lo, y + 16 * g, 0); break;
    switch (ng - g) { GC(1) GC(2) GC(3) GC(4) GC(5) GC(6) GC(7) }
#undef GC
}

/* the gemm of both entry points; F as in tile */
AI void gemm(const int F, int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs, int nt,
             float *y, size_t ldy)
{
    const int64_t K = n / 2;
    const int ng = nr / 16;
    const size_t lo = ((size_t)n * 2 + 63) & ~(size_t)63;
    const uint8_t *wb = w, *xb = x;
    const int G1X = F ? G1F : G1, GTX = F ? GTF : GT, TTX = F ? TTF : TT;
    _Static_assert(G1 <= GMAX && G1F <= GMAX && GT <= GMAX && GTF <= GMAX && TT <= TMAX && TTF <= TMAX, "tiles");
    if (nt == 1) {
        matvec(F, G1X, ng, K, wb, ws, xb, lo, y);
        return;
    }
    /* row blocks stay in L2 while the token tiles pass over them */
    int rb = (int)(ROW_BLOCK_BYTES / ws);
    rb = rb < GTX ? GTX : rb - rb % GTX;
    for (int g0 = 0; g0 < ng; g0 += rb) {
        const int g1 = ng - g0 < rb ? ng : g0 + rb;
        for (int t = 0; t < nt; t += TTX) {
            const int tt = nt - t < TTX ? nt - t : TTX;
            for (int g = g0; g < g1; g += GTX) {
                const int gg = g1 - g < GTX ? g1 - g : GTX;
                tile_gt(F, GTX, TTX, gg, tt, K, wb + (size_t)g * ws, ws, xb + (size_t)t * xs, xs, lo,
                        y + (size_t)t * ldy + 16 * g, ldy);
            }
        }
    }
}

/* the table entries (declared in avx512_internal.h): DN_TYPE_BF16_X16 (hi
 * and lo rows) and DN_TYPE_BF16_X16F (hi row only) */
void dn_gemm_bf16x16_avx512(int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs,
                            int nt, float *y, size_t ldy)
{
    gemm(0, n, w, ws, nr, x, xs, nt, y, ldy);
}

void dn_gemm_bf16x16f_avx512(int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs,
                             int nt, float *y, size_t ldy)
{
    gemm(1, n, w, ws, nr, x, xs, nt, y, ldy);
}
