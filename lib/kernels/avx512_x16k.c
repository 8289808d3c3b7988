/* avx512_x16k.c - gemm kernels for the row-interleaved K-quant weights
 * q4_Kx16 and q6_Kx16 (layouts in quant/repack.c) against q8_K
 * activations, AVX-512 VNNI. Same flags as avx512.c.
 *
 * One 64-byte chunk holds 4 consecutive weights of each of 16 rows, so
 * vpdpbusd(acc, unsigned weights, broadcast 4 activation bytes) leaves row
 * r's partial sum in lane r: no horizontal sums. Per sub-block (q4_K: 32
 * elements, q6_K: 16) the int32 sums are multiplied by the rows' scales
 * (one vpmulld per 16 rows) and summed over the super-block in int32;
 * floats are touched once per 256 elements (one convert and fma per token).
 *  - q4_K: nibbles 0..15; the mins term sum_j m_j s_j (s_j: the sub-block's
 *    sum of x, from the q8_K bsums) is 4 vpdpwssd per token and block,
 *    scaled by dmin.
 *  - q6_K: q = 0..63 (ql nibble | 2 qh bits at bits 4..5); the -32 offset
 *    enters as the initial accumulator -32 * bsum of the sub-block.
 * Tiles are one row group x NT tokens (NT <= 6 for q4_K, 8 for q6_K):
 * each unpacked weight vector feeds NT tokens, with ~200 KiB of row groups
 * kept in L2 for all the token tiles (read into it in address order,
 * touch()). A single token streams the groups, fetching ahead
 * (DN_FETCH_BLOCK_AHEAD). The
 * same float operations produce every output whatever the tile, so a
 * token alone and in a batch get identical bits.
 * Zen 5, one core: ~340 GOP/s (q4_K) and ~300 GOP/s (q6_K) for 512-token
 * products (2.3-2.6x the GGUF-layout kernels of avx512.c; vpdpbusd, vpmulld,
 * vpdpwssd and vpternlogd share one pipe pair, 1 zmm op per cycle, which is
 * what the op counts here minimize); one token runs at the DRAM read
 * bandwidth. */
#include <immintrin.h>
#include "kernels/kernels_internal.h"
#include "kernels/avx512_internal.h"


enum {
    TMAX = 8,                   /* most tokens per tile (registers: NT int + NT float accumulators) */
    TN_K4 = 6, TN_K6 = 8,       /* tokens per tile, measured (q4_K spills at 8) */
    WBLOCK = 192 * 1024         /* weights of the row groups walked per token tile (L2) */
};

AI __m512i ld(const uint8_t *p) { return _mm512_loadu_si512(p); }
AI __m512i u8x16(const uint8_t *p) { return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p)); }
AI __m512i i8x16(const uint8_t *p) { return _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)); }
AI __m512 f16x16(const uint8_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
AI float ldf(const uint8_t *p) { float f; memcpy(&f, p, 4); return f; }

/* One 256-column block of a q4_Kx16 group (c) against NT tokens (q8_K
 * blocks at xb[t]), added to F[t]. */
AI void q4x_block(int NT, const uint8_t *c, const uint8_t *const *xb, __m512 *F)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512i I[TMAX], M[TMAX];
    UNROLL for (int t = 0; t < NT; t++) I[t] = _mm512_setzero_si512();
    UNROLL for (int j = 0; j < 8; j++) {
        /* sub-block j: the low (j even) or high nibbles of chunks 8(j/2)..+7 */
        const uint8_t *q = c + Q4X_QS + 512 * (j / 2);
        __m512i W[8];
        UNROLL for (int k = 0; k < 8; k++)
            W[k] = _mm512_and_si512(j % 2 ? _mm512_srli_epi16(ld(q + 64 * k), 4) : ld(q + 64 * k), m4);
        const __m512i S = u8x16(c + Q4X_SC + 16 * j);
        const int xo = Q8K_QS + 32 * j;
        UNROLL for (int t = 0; t < NT; t++) {
            /* two chains of 4 (latency), |sum| <= 32 * 15 * 127 */
            __m512i P0 = _mm512_setzero_si512(), P1 = _mm512_setzero_si512();
            UNROLL for (int k = 0; k < 8; k += 2) {
                P0 = dpbusd_b(P0, W[k], xb[t] + xo + 4 * k);
                P1 = dpbusd_b(P1, W[k + 1], xb[t] + xo + 4 * k + 4);
            }
            I[t] = _mm512_add_epi32(I[t], _mm512_mullo_epi32(_mm512_add_epi32(P0, P1), S));
        }
    }
    /* mins: sum_j m_j s_j, s_j = bsums[2j] + bsums[2j+1] (|s_j| <= 4064),
     * as int16 pairs (m_2i, m_2i+1) . (s_2i, s_2i+1): 4 vpdpwssd per token
     * instead of 8 against the bsums themselves (+3%) */
    int32_t s[TMAX][4] __attribute__((aligned(16)));
    UNROLL for (int t = 0; t < NT; t++) {
        const __m128i lo = _mm_loadu_si128((const __m128i *)(xb[t] + Q8K_BSUMS));
        const __m128i hi = _mm_loadu_si128((const __m128i *)(xb[t] + Q8K_BSUMS + 16));
        _mm_store_si128((__m128i *)s[t], _mm_hadd_epi16(lo, hi));
        M[t] = _mm512_setzero_si512();
    }
    UNROLL for (int i = 0; i < 4; i++) {
        const __m512i mm = _mm512_or_si512(u8x16(c + Q4X_M + 32 * i), _mm512_slli_epi32(u8x16(c + Q4X_M + 32 * i + 16), 16));
        UNROLL for (int t = 0; t < NT; t++) M[t] = dpwssd_b(M[t], mm, &s[t][i]);
    }
    const __m512 D = f16x16(c), Dm = f16x16(c + Q4X_DMIN);
    UNROLL for (int t = 0; t < NT; t++) {
        __m512 T = _mm512_mul_ps(_mm512_cvtepi32_ps(I[t]), D);
        T = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(M[t]), Dm, T);
        F[t] = _mm512_fmadd_ps(T, _mm512_set1_ps(ldf(xb[t])), F[t]);
    }
}

/* One 256-column block of a q6_Kx16 group against NT tokens. Sub-block j
 * (16 elements) = half h, quarter qd, sixteen mh: its 4 chunks come from ql
 * chunks 16h + 8(qd&1) + m (low nibbles for qd < 2, high otherwise) and qh
 * chunks 8h + m (bits 2qd, 2qd+1), m = 4mh..4mh+3. Unpacking one
 * sub-block at a time (not the 4 sharing qh chunks) needs fewer registers:
 * 5% faster despite the repeated qh shifts. */
AI void q6x_block(int NT, const uint8_t *c, const uint8_t *const *xb, __m512 *F)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    __m512i I[TMAX];
    UNROLL for (int t = 0; t < NT; t++) I[t] = _mm512_setzero_si512();
    UNROLL for (int h = 0; h < 2; h++) UNROLL for (int mh = 0; mh < 2; mh++) UNROLL for (int qd = 0; qd < 4; qd++) {
        const int j = 8 * h + 2 * qd + mh;
        __m512i W[4];
        UNROLL for (int k = 0; k < 4; k++) {
            const int m = 4 * mh + k;
            const __m512i L = ld(c + Q6X_QL + 64 * (16 * h + 8 * (qd & 1) + m));
            const __m512i H = ld(c + Q6X_QH + 64 * (8 * h + m));
            const __m512i lo = qd < 2 ? L : _mm512_srli_epi16(L, 4);
            const __m512i hi = qd == 0 ? _mm512_slli_epi16(H, 4) : qd == 1 ? _mm512_slli_epi16(H, 2)
                             : qd == 2 ? H : _mm512_srli_epi16(H, 2);
            W[k] = _mm512_ternarylogic_epi32(lo, _mm512_and_si512(hi, m30), m4, 0xEC);   /* lo & 0x0F | hi */
        }
        const __m512i S = i8x16(c + Q6X_SC + 16 * j);
        const int xo = Q8K_QS + 16 * j;
        UNROLL for (int t = 0; t < NT; t++) {
            int16_t bs;
            memcpy(&bs, xb[t] + Q8K_BSUMS + 2 * j, 2);
            /* q - 32: start from -32 * sum(x) of the sub-block; |P| <= 16 * 63 * 127 */
            __m512i P = _mm512_set1_epi32(-32 * bs);
            UNROLL for (int k = 0; k < 4; k++) P = dpbusd_b(P, W[k], xb[t] + xo + 4 * k);
            I[t] = _mm512_add_epi32(I[t], _mm512_mullo_epi32(P, S));
        }
    }
    const __m512 D = f16x16(c);
    UNROLL for (int t = 0; t < NT; t++)
        F[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(I[t]), _mm512_mul_ps(D, _mm512_set1_ps(ldf(xb[t]))), F[t]);
}

enum { K4, K6 };

/* Reads [p, p + len) in ascending order. The kernels walk a block column
 * out of address order (q6_K: ql and qh chunks 2 KiB apart, chunks
 * revisited), which defeats the hardware prefetchers; touching the row
 * groups of a token tile in order first lets them stream ahead, and the
 * kernel's loads then hit L2. (One token used to touch each block too;
 * fetching two blocks ahead with prefetch instructions beats that since
 * the page-ahead fetch, DN_FETCH_BLOCK_AHEAD.) */
AI void touch(const uint8_t *p, size_t len)
{
    __m512i d = _mm512_setzero_si512();
    for (size_t o = 0; o + 64 <= len; o += 64) d = _mm512_or_si512(d, ld(p + o));
    __asm__ volatile("" : : "v"(d));
}

/* One row group (g) x NT tokens over nb blocks: y[t * ldy + lane]. */
AI void tile(int kind, int fetch, int NT, int64_t nb, const uint8_t *g, const uint8_t *x, size_t xs, float *y,
             size_t ldy)
{
    const int CB = kind == K4 ? Q4X : Q6X;
    __m512 F[TMAX];
    UNROLL for (int t = 0; t < NT; t++) F[t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        if (NT == 1) {   /* one token streams */
            DN_PAGE_AHEAD(g + (size_t)i * CB, CB);
            DN_FETCH_BLOCK_AHEAD(fetch, g, i, CB);
        }
        const uint8_t *xb[TMAX];
        UNROLL for (int t = 0; t < NT; t++) xb[t] = x + (size_t)t * xs + (size_t)i * Q8K_BYTES;
        if (kind == K4) q4x_block(NT, g + (size_t)i * CB, xb, F);
        else q6x_block(NT, g + (size_t)i * CB, xb, F);
    }
    UNROLL for (int t = 0; t < NT; t++) _mm512_storeu_ps(y + (size_t)t * ldy, F[t]);
}

typedef void (*tile_fn)(int64_t nb, const uint8_t *g, const uint8_t *x, size_t xs, float *y, size_t ldy);
#define TILE_FN(KIND, NT) \
    static void tile_##KIND##_##NT(int64_t nb, const uint8_t *g, const uint8_t *x, size_t xs, float *y, size_t ldy) \
    { tile(KIND, DN_FETCH_PAGE, NT, nb, g, x, xs, y, ldy); }
#define TILE_FNS6(KIND) TILE_FN(KIND, 1) TILE_FN(KIND, 2) TILE_FN(KIND, 3) TILE_FN(KIND, 4) \
    TILE_FN(KIND, 5) TILE_FN(KIND, 6)
TILE_FNS6(K4)
TILE_FNS6(K6) TILE_FN(K6, 7) TILE_FN(K6, 8)
_Static_assert(TN_K4 == 6 && TN_K6 == 8 && TN_K6 <= TMAX, "tile tables");
static const tile_fn tiles_k4[TN_K4 + 1] = { NULL, tile_K4_1, tile_K4_2, tile_K4_3, tile_K4_4,
                                             tile_K4_5, tile_K4_6 };
static const tile_fn tiles_k6[TN_K6 + 1] = { NULL, tile_K6_1, tile_K6_2, tile_K6_3, tile_K6_4,
                                             tile_K6_5, tile_K6_6, tile_K6_7, tile_K6_8 };

/* Blocks of row groups whose weights stay in L2 while the token tiles
 * (as even as possible, at most tmax tokens) walk them; one token (a
 * matrix-vector product) streams group after group. */
static void run(const tile_fn *tiles, int tmax, size_t cb, int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs,
                int nt, float *y, size_t ldy)
{
    const int64_t nb = n / DN_QK_K;
    const int ng = nr / 16;
    const uint8_t *W = w, *X = x;
    int gb = (int)(WBLOCK / ws);
    if (gb < 1 || nt == 1) gb = 1;
    const int ntiles = (nt + tmax - 1) / tmax;
    for (int g0 = 0; g0 < ng; g0 += gb) {
        const int g1 = g0 + gb < ng ? g0 + gb : ng;
        /* into L2 in address order, once for all the token tiles */
        if (nt > 1)
            for (int g = g0; g < g1; g++) touch(W + (size_t)g * ws, (size_t)nb * cb);
        for (int i = 0, t = 0; i < ntiles; i++) {
            const int tt = (nt - t) / (ntiles - i);
            for (int g = g0; g < g1; g++)
                tiles[tt](nb, W + (size_t)g * ws, X + (size_t)t * xs, xs, y + (size_t)t * ldy + 16 * g, ldy);
            t += tt;
        }
    }
}

void dn_gemm_q4_Kx16_q8_K_avx512(int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs,
                                 int nt, float *y, size_t ldy)
{
    run(tiles_k4, TN_K4, Q4X, n, w, ws, nr, x, xs, nt, y, ldy);
}

void dn_gemm_q6_Kx16_q8_K_avx512(int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs,
                                 int nt, float *y, size_t ldy)
{
    run(tiles_k6, TN_K6, Q6X, n, w, ws, nr, x, xs, nt, y, ldy);
}

/* DN_FETCH_LINES: one token (group after group) fetches its blocks into
 * L2 (kernels_internal.h); several take the page entry point */
AI void gemm_lines(int kind, dn_gemm_fn page, int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs,
                   int nt, float *y, size_t ldy)
{
    if (nt > 1) {
        page(n, w, ws, nr, x, xs, nt, y, ldy);
        return;
    }
    for (int g = 0; g < nr / 16; g++)
        tile(kind, DN_FETCH_LINES, 1, n / DN_QK_K, (const uint8_t *)w + (size_t)g * ws, x, xs, y + 16 * g, ldy);
}

DN_GEMM_DECL(dn_gemm_q4_Kx16_q8_K_avx512_lines)
{
    gemm_lines(K4, dn_gemm_q4_Kx16_q8_K_avx512, n, w, w_stride, nr, x, x_stride, nt, y, ldy);
}

DN_GEMM_DECL(dn_gemm_q6_Kx16_q8_K_avx512_lines)
{
    gemm_lines(K6, dn_gemm_q6_Kx16_q8_K_avx512, n, w, w_stride, nr, x, x_stride, nt, y, ldy);
}
