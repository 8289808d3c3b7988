/* avx512.c - kernels for AVX-512 F/BW/VL/DQ + VNNI + BF16 (Zen 4 and 5, Ice Lake
 * server and later). Compiled only with those flags, called only after
 * dispatch.c has seen them in cpuid and the OS enabling ZMM state.
 *
 * Every dot product is an NR x NT register tile (weight rows x tokens):
 * vec_dot and matvec are 1x1 tiles (one sequential weight stream is what
 * the prefetchers serve best), gemm 2x8, 3x6 or 4x4 tiles (each weight
 * block unpacked once for several tokens). Per-token work (activation quantization and the
 * layouts the tiles want) is done once in act_prepare ("extras"), not per
 * tile. Quantized blocks: weights become unsigned bytes (q + bias), the
 * bias times sum(x) enters as the initial accumulator, vpdpbusd does the
 * 8-bit products and lanes are reduced before touching floats, once per 8
 * blocks; K-quant sub-block scales are applied in the integer domain by
 * vpdpwssd so floats are touched once per 256. On Zen 5 vpdpbusd,
 * vpdpwssd, vdpbf16ps, vmulps and vfmaddps share one pair of pipes (one
 * 512-bit op per cycle), which is what the op counts here minimize. */
#include <immintrin.h>
#include "kernels/kernels_internal.h"
#include "kernels/avx512_internal.h"

/* Register tiles are at most MR x MT; gemm calls take up to GEMM_MAX rows
 * and tokens and walk them in each type's own tile shape. Each output is
 * computed in the same order whatever the tile shape (a token evaluated
 * alone and in a batch give identical bits). */
enum { MR = 8, MT = 8, GEMM_MAX = 24 };

/* ------------------------------------------------------------------ */
/* small helpers                                                       */
/* ------------------------------------------------------------------ */

AI float fp16(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* Bytes [off, off+64) of a span of `len` bytes, masked so nothing past the
 * span (possibly the end of a mapped weight row) is touched. */
AI __m512i load_window(const uint8_t *p, int off, int len)
{
    if (off >= len) return _mm512_setzero_si512();
    if (off + 64 <= len) return _mm512_loadu_si512(p + off);
    return _mm512_maskz_loadu_epi8((__mmask64)(~0ull >> (64 - (len - off))), p + off);
}

/* Word indices of the fp16 fields at byte 0 and 2 of 8 blocks S bytes
 * apart (lanes 0..7 and 8..15), modulo the 64 words of a 128-byte window. */
#define SCW(S, l) (short)((((S) / 2) * ((l) & 7) + (((l) >> 3) & 1)) & 63)
#define SCIDX(S) { SCW(S, 0), SCW(S, 1), SCW(S, 2), SCW(S, 3), SCW(S, 4), SCW(S, 5), SCW(S, 6), \
    SCW(S, 7), SCW(S, 8), SCW(S, 9), SCW(S, 10), SCW(S, 11), SCW(S, 12), SCW(S, 13), SCW(S, 14), \
    SCW(S, 15), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }
static const short scidx_q4_0[32] = SCIDX(sizeof(dn_block_q4_0)), scidx_q4_1[32] = SCIDX(sizeof(dn_block_q4_1)),
                   scidx_q5_0[32] = SCIDX(sizeof(dn_block_q5_0)), scidx_q5_1[32] = SCIDX(sizeof(dn_block_q5_1)),
                   scidx_q8_0[32] = SCIDX(sizeof(dn_block_q8_0)), scidx_q8_1[32] = SCIDX(sizeof(dn_block_q8_1));

/* The two fp16 fields (d, and m or s) at the start of 8 blocks `stride`
 * bytes apart as floats: lanes 0..7 = d, lanes 8..15 = the second field
 * (only meaningful with want_m).
 * vpermt2w over 128-byte windows: scalar loads or vpgatherdd cost far
 * more. Blocks at or past nblk read as zero. */
AI __m512 load_scales8(const uint8_t *p, int stride, int nblk, int want_m)
{
    const short *tab = stride == (int)sizeof(dn_block_q4_0) ? scidx_q4_0 : stride == (int)sizeof(dn_block_q4_1) ? scidx_q4_1
                     : stride == (int)sizeof(dn_block_q5_0) ? scidx_q5_0 : stride == (int)sizeof(dn_block_q5_1) ? scidx_q5_1
                     : stride == (int)sizeof(dn_block_q8_0) ? scidx_q8_0 : scidx_q8_1;
    const __m512i idx = _mm512_loadu_si512(tab);
    const int len = stride * nblk;
    __m512i v = _mm512_permutex2var_epi16(load_window(p, 0, len), idx, load_window(p, 64, len));
    if ((stride / 2) * 7 + want_m >= 64) {   /* a wanted field lies past 128 bytes */
        __mmask32 fromb = 0;
        for (int l = 0; l < 16; l++)
            if ((stride / 2) * (l & 7) + ((l >> 3) & 1) >= 64) fromb |= 1u << l;
        const __m512i hi = _mm512_permutex2var_epi16(load_window(p, 128, len), idx, load_window(p, 192, len));
        v = _mm512_mask_mov_epi16(v, fromb, hi);
    }
    if (nblk < 8) {
        const uint32_t k = (1u << nblk) - 1;
        v = _mm512_maskz_mov_epi16((__mmask32)(k | k << 8), v);
    }
    if (!want_m) return _mm512_zextps256_ps512(_mm256_cvtph_ps(_mm512_castsi512_si128(v)));
    return _mm512_cvtph_ps(_mm512_castsi512_si256(v));
}

/* ------------------------------------------------------------------ */
/* 32-element block types                                              */
/* ------------------------------------------------------------------ */

/* kinds, block sizes and field offsets: kernels_internal.h */
/* bias that makes weights unsigned for vpdpbusd; removed as bias*sum(x) */
AI int wbias(int kind) { return kind == K_Q4_0 ? 8 : kind == K_Q5_0 ? 16 : kind == K_Q8_0 ? 128 : 0; }

/* 32 bytes of block a and of block b (zero when absent) in one register. */
AI __m512i load_2x256(const uint8_t *a, const uint8_t *b, int has_a, int has_b)
{
    if (!has_a) return _mm512_setzero_si512();
    __m512i z = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)a));
    if (has_b) z = _mm512_inserti64x4(z, _mm256_loadu_si256((const __m256i *)b), 1);
    return z;
}

/* Two consecutive weight blocks as 64 unsigned bytes in element order
 * (a missing block reads nothing and contributes zero). */
AI __m512i unpack_pair(int kind, const uint8_t *a, int has_a, int has_b)
{
    const uint8_t *b = a + wbytes(kind);
    if (!has_a) return _mm512_setzero_si512();
    if (kind == K_Q8_0)
        return _mm512_xor_si512(load_2x256(a + wqs(kind), b + wqs(kind), 1, has_b), _mm512_set1_epi8((char)0x80));
    const int qoff = wqs(kind);
    /* 128-bit lanes [A, A, B, B] by broadcasts (load port, no shuffle);
     * lanes 1 and 3 take the high nibbles */
    __m512i z = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(a + qoff)));
    if (has_b) z = _mm512_mask_broadcast_i32x4(z, 0xFF00, _mm_loadu_si128((const __m128i *)(b + qoff)));
    else z = _mm512_maskz_mov_epi32(0x00FF, z);
    z = _mm512_srlv_epi64(z, _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0));
    z = _mm512_and_si512(z, _mm512_set1_epi8(0x0F));
    if (kind == K_Q5_0 || kind == K_Q5_1) {
        const int hoff = wqh(kind);
        uint64_t h = dn_ld_u32(a + hoff);
        if (has_b) h |= (uint64_t)dn_ld_u32(b + hoff) << 32;
        z = _mm512_mask_add_epi8(z, (__mmask64)h, z, _mm512_set1_epi8(16));
    }
    return z;
}

/* [a0+a1, a2+a3, b0+b1, b2+b3] in every 128-bit lane: a horizontal add
 * by two in-lane shuffles, off the multiply pipes (on Zen 5 vpdpbusd,
 * vpdpwssd, vmulps and vfmaddps share one pair of them). */
AI __m512i hadd_pairs(__m512i a, __m512i b)
{
    const __m512 fa = _mm512_castsi512_ps(a), fb = _mm512_castsi512_ps(b);
    return _mm512_add_epi32(_mm512_castps_si512(_mm512_shuffle_ps(fa, fb, _MM_SHUFFLE(2, 0, 2, 0))),
                            _mm512_castps_si512(_mm512_shuffle_ps(fa, fb, _MM_SHUFFLE(3, 1, 3, 1))));
}

/* Sum the 8 dword lanes of every block of four pair registers (8 blocks)
 * down to 2 lanes per block in one register: lane 4L+j holds the sum of
 * 128-bit lane L of I[j], i.e. half of block 2j + L/2. When lanes and
 * pair sums fit int16 (i16, see group32) vpackssdw + vpdpwssd with ones
 * (measured faster), else in-lane shuffles and adds. */
AI __m512i reduce4(__m512i i0, __m512i i1, __m512i i2, __m512i i3, __m512i init, int i16)
{
    if (i16) {
        const __m512i ones = _mm512_set1_epi16(1);
        const __m512i y01 = _mm512_dpwssd_epi32(_mm512_setzero_si512(), _mm512_packs_epi32(i0, i1), ones);
        const __m512i y23 = _mm512_dpwssd_epi32(_mm512_setzero_si512(), _mm512_packs_epi32(i2, i3), ones);
        return _mm512_dpwssd_epi32(init, _mm512_packs_epi32(y01, y23), ones);
    }
    return _mm512_add_epi32(hadd_pairs(hadd_pairs(i0, i1), hadd_pairs(i2, i3)), init);
}

/* lane 4L+j <- block 2j + L/2 of a dense [b0..b7] vector */
AI __m512 spread_red(__m512 dense)
{
    return _mm512_permutexvar_ps(_mm512_set_epi32(7, 5, 3, 1, 7, 5, 3, 1, 6, 4, 2, 0, 6, 4, 2, 0), dense);
}

/* ISA extras of a prepared q8_0 / q8_1 row (see act_prepare below), per
 * group of 8 blocks:
 *   q8_0: qs[256] | DX spread for reduce4 (16 f32) | -sum(x) reduced (16 i32)
 *         | per-block sums and d for the x16 kernels (avx512_internal.h)
 *   q8_1: qs[256] | DX spread for reduce4 | dx (lanes 0..7) and s (8..15) */
enum { XG_Q8_0 = DN_XG_Q8_0, XE_QS = 0, XE_DXR = 256, XE_NSUM = 320, XG_Q8_1 = 384, XE_XS = 320 };

AI const uint8_t *xextras(int xb, const uint8_t *x, int64_t n)
{
    return x + ((xb * (n / 32) + 63) & ~(int64_t)63);
}

/* One group of 8 blocks starting at group g of every row; a tail group
 * (nblk < 8) runs the same code with the missing blocks as zeros. Weights
 * are unsigned (q + bias), the bias times sum(x) is the initial value, and
 * floats are touched once per 8 blocks. q4_0/q4_1/q5_0/q5_1 dword lanes,
 * biased q <= 31 times |x| <= 127, stay <= 4*31*127 = 15748 (int16: the
 * pack path of reduce4); q8_0 (w + 128 <= 255) takes the shuffle path. */
AI void group32(int kind, int NR, int NT, int64_t g, int nblk,
                const uint8_t *const *wp, const uint8_t *const *xe, __m512 F[MR][MT])
{
    const int WB = wbytes(kind), XG = has_min(kind) ? XG_Q8_1 : XG_Q8_0;
    const int shift = kind == K_Q4_0 ? 3 : kind == K_Q5_0 ? 4 : 7;
    UNROLL for (int r = 0; r < NR; r++) {
        const uint8_t *w = wp[r] + g * 8 * WB;
        const __m512 WS = load_scales8(w, WB, nblk, has_min(kind));
        __m512i wq[4];
        UNROLL for (int p = 0; p < 4; p++) wq[p] = unpack_pair(kind, w + 2 * p * WB, 2 * p < nblk, 2 * p + 1 < nblk);
        const __m512 DW = spread_red(WS);
        UNROLL for (int t = 0; t < NT; t++) {
            const uint8_t *xg = xe[t] + g * XG;
            const __m512i z = _mm512_setzero_si512();
            /* -bias * sum(x), reduced like the products */
            const __m512i init = wbias(kind)
                ? _mm512_slli_epi32(_mm512_loadu_si512(xg + XE_NSUM), shift) : z;
            const __m512i R = reduce4(_mm512_dpbusd_epi32(z, wq[0], _mm512_loadu_si512(xg + XE_QS)),
                                      _mm512_dpbusd_epi32(z, wq[1], _mm512_loadu_si512(xg + XE_QS + 64)),
                                      _mm512_dpbusd_epi32(z, wq[2], _mm512_loadu_si512(xg + XE_QS + 128)),
                                      _mm512_dpbusd_epi32(z, wq[3], _mm512_loadu_si512(xg + XE_QS + 192)),
                                      init, kind != K_Q8_0);
            F[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(R),
                                      _mm512_mul_ps(DW, _mm512_loadu_ps((const float *)(xg + XE_DXR))), F[r][t]);
            /* + m * s per block (lanes 8..15 of both scale vectors) */
            if (has_min(kind))
                F[r][t] = _mm512_mask3_fmadd_ps(WS, _mm512_loadu_ps((const float *)(xg + XE_XS)), F[r][t], 0xFF00);
        }
    }
}

AI void tile32(int kind, int NR, int NT, int64_t n, const uint8_t *const *wp,
               const uint8_t *const *xp, float *out)
{
    __m512 F[MR][MT];
    const uint8_t *xe[MT];
    UNROLL for (int t = 0; t < NT; t++) xe[t] = xextras(xbytes(kind), xp[t], n);
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int t = 0; t < NT; t++) F[r][t] = _mm512_setzero_ps();
    const int64_t nb = n / 32;
    int64_t g = 0;
    for (; 8 * g + 8 <= nb; g++) group32(kind, NR, NT, g, 8, wp, xe, F);
    if (8 * g < nb) group32(kind, NR, NT, g, (int)(nb - 8 * g), wp, xe, F);
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int t = 0; t < NT; t++)
        out[r * MT + t] = _mm512_reduce_add_ps(F[r][t]);
}

/* Extras of one prepared row (layout above), from its finished blocks. */
static void make_extras(int xb, uint8_t *row, int64_t n)
{
    uint8_t *e = (uint8_t *)xextras(xb, row, n);
    const int XG = xb == (int)sizeof(dn_block_q8_1) ? XG_Q8_1 : XG_Q8_0;
    const int xqs = xb - DN_QK8_0;   /* qs ends both q8_0 and q8_1 blocks */
    const int64_t nb = n / 32;
    for (int64_t g = 0; 8 * g < nb; g++, e += XG) {
        const int nblk = nb - 8 * g >= 8 ? 8 : (int)(nb - 8 * g);
        const uint8_t *x = row + g * 8 * xb;
        const __m512 XS = nblk == 8 ? load_scales8(x, xb, 8, 1) : load_scales8(x, xb, nblk, 1);
        __m512i X[4];
        for (int p = 0; p < 4; p++) {
            X[p] = load_2x256(x + 2 * p * xb + xqs, x + (2 * p + 1) * xb + xqs,
                              2 * p < nblk, 2 * p + 1 < nblk);
            _mm512_storeu_si512(e + XE_QS + 64 * p, X[p]);
        }
        _mm512_storeu_ps((float *)(e + XE_DXR), spread_red(XS));
        if (xb == (int)sizeof(dn_block_q8_1)) {
            _mm512_storeu_ps((float *)(e + XE_XS), XS);
            continue;
        }
        const __m512i z = _mm512_setzero_si512(), ones = _mm512_set1_epi8(1);
        const __m512i s0 = _mm512_dpbusd_epi32(z, ones, X[0]), s1 = _mm512_dpbusd_epi32(z, ones, X[1]);
        const __m512i s2 = _mm512_dpbusd_epi32(z, ones, X[2]), s3 = _mm512_dpbusd_epi32(z, ones, X[3]);
        _mm512_storeu_si512(e + XE_NSUM, _mm512_sub_epi32(z, reduce4(s0, s1, s2, s3, z, 1)));
        /* per block: -sum(qs) (lanes 0..7 of s_p hold block 2p, 8..15 block 2p+1) */
        int32_t *ns8 = (int32_t *)(e + DN_XE_NS8), *ns128 = (int32_t *)(e + DN_XE_NS128);
        float *dx = (float *)(e + DN_XE_DX);
        const __m512i sp[4] = { s0, s1, s2, s3 };
        for (int j = 0; j < 8; j++) {
            const int32_t sum = _mm512_mask_reduce_add_epi32(j & 1 ? 0xFF00 : 0x00FF, sp[j / 2]);
            ns8[j] = -8 * sum;
            ns128[j] = -128 * sum;
            dx[j] = j < nblk ? fp16(x + j * xb) : 0.0f;
        }
    }
}

/* ------------------------------------------------------------------ */
/* K-quants: 256-element super-blocks against q8_K                     */
/* ------------------------------------------------------------------ */

/* Lanes 0..7 = v[2c], 8..15 = v[2c+1] (int32). */
AI __m512i pick_pair(__m512i v, int c)
{
    return _mm512_permutexvar_epi32(_mm512_set_epi32(2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1,
                                                     2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1,
                                                     2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c), v);
}

/* Lanes 4j..4j+3 = v[4c+j] (int32): Q6_K scales, one per 16 elements. */
AI __m512i pick_quad(__m512i v, int c)
{
    const int a = 4 * c;
    return _mm512_permutexvar_epi32(_mm512_set_epi32(a + 3, a + 3, a + 3, a + 3, a + 2, a + 2, a + 2, a + 2,
                                                     a + 1, a + 1, a + 1, a + 1, a, a, a, a), v);
}

AI void superblock(int kind, int NR, int NT, int64_t i, const uint8_t *const *wp,
                   const uint8_t *const *xp, __m512 F[MR][MT])
{
    const int WB = kbytes(kind);
    __m512 DX[MT];
    __m512i BS[MT];
    UNROLL for (int t = 0; t < NT; t++) {
        const uint8_t *x = xp[t] + i * Q8K_BYTES;
        float dx;
        memcpy(&dx, x, 4);
        DX[t] = _mm512_set1_ps(dx);
        /* bsums in both halves: q6_K pairs the low half with its scales,
         * q4_K/q5_K the high half with the mins */
        BS[t] = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x + Q8K_BSUMS)));
    }
    UNROLL for (int r = 0; r < NR; r++) {
        const uint8_t *w = wp[r] + i * WB;
        __m512i wq[4], scv[4], mcorr;
        __m512 D;
        if (kind == K_Q6_K) {
            D = _mm512_set1_ps(fp16(w + Q6K_D));
            const __m128i sc8 = _mm_loadu_si128((const __m128i *)(w + Q6K_SCALES));
            /* signed scales as int16 pairs (sc, 0): vpdpwssd multiplies both
             * halves of each dword, so the high half must be 0, not -1 */
            const __m512i sc32 = _mm512_and_si512(_mm512_cvtepi8_epi32(sc8), _mm512_set1_epi32(0xFFFF));
            UNROLL for (int c = 0; c < 4; c++) scv[c] = pick_quad(sc32, c);
            /* -32 * scale per 16 elements, paired with bsums: the q - 32 offset */
            mcorr = _mm512_zextsi256_si512(_mm256_mullo_epi16(_mm256_cvtepi8_epi16(sc8), _mm256_set1_epi16(-32)));
            UNROLL for (int c = 0; c < 4; c++) {
                const int h = c / 2;
                const __m512i L = _mm512_loadu_si512(w + Q6K_QL + 64 * h);
                const __m512i H = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(w + Q6K_QH + 32 * h)));
                __m512i lo, hi;
                if (c % 2 == 0) {
                    lo = _mm512_and_si512(L, _mm512_set1_epi8(0x0F));
                    hi = _mm512_sllv_epi64(H, _mm512_set_epi64(2, 2, 2, 2, 4, 4, 4, 4));
                } else {
                    lo = _mm512_and_si512(_mm512_srli_epi16(L, 4), _mm512_set1_epi8(0x0F));
                    hi = _mm512_srlv_epi64(H, _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0));
                }
                wq[c] = _mm512_or_si512(lo, _mm512_and_si512(hi, _mm512_set1_epi8(0x30)));
            }
        } else {
            /* lanes 0..7 scale the folded sub-block sums, 8..15 the mins */
            D = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(fp16(w)), _mm512_set1_ps(-fp16(w + KQ_DMIN)));
            uint64_t sc, mn;
            dn_k_unpack_scales(w + KQ_SCALES, &sc, &mn);
            const __m512i sc32 = _mm512_cvtepu8_epi32(_mm_cvtsi64_si128((long long)sc));
            UNROLL for (int c = 0; c < 4; c++) scv[c] = pick_pair(sc32, c);
            /* each min covers two 16-element bsums */
            const __m128i m16 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)mn));
            mcorr = _mm512_inserti64x4(_mm512_setzero_si512(),
                                       _mm256_set_m128i(_mm_unpackhi_epi16(m16, m16), _mm_unpacklo_epi16(m16, m16)), 1);
            const uint8_t *qs = w + kqs(kind);
            __m512i QH = _mm512_setzero_si512();
            if (kind == K_Q5_K) QH = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(w + Q5K_QH)));
            UNROLL for (int c = 0; c < 4; c++) {
                __m512i z = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(qs + 32 * c)));
                z = _mm512_srlv_epi64(z, _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0));
                z = _mm512_and_si512(z, _mm512_set1_epi8(0x0F));
                if (kind == K_Q5_K) {
                    const __m512i sel = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * c))),
                                                           _mm256_set1_epi8((char)(1 << (2 * c + 1))), 1);
                    z = _mm512_mask_add_epi8(z, _mm512_test_epi8_mask(QH, sel), z, _mm512_set1_epi8(16));
                }
                wq[c] = z;
            }
        }
        UNROLL for (int t = 0; t < NT; t++) {
            const uint8_t *xq = xp[t] + i * Q8K_BYTES + Q8K_QS;
            __m512i I = _mm512_setzero_si512();
            UNROLL for (int c = 0; c < 4; c++) {
                __m512i P = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq[c],
                                                _mm512_loadu_si512(xq + 64 * c));
                I = _mm512_dpwssd_epi32(I, P, scv[c]);
            }
            if (kind == K_Q6_K) {
                I = _mm512_dpwssd_epi32(I, mcorr, BS[t]);
            } else {
                /* fold the sub-block sums into lanes 0..7 and put the mins
                 * (with their own scale) in 8..15: one conversion, one fma */
                const __m256i fold = _mm256_add_epi32(_mm512_castsi512_si256(I), _mm512_extracti64x4_epi64(I, 1));
                I = _mm512_dpwssd_epi32(_mm512_zextsi256_si512(fold), mcorr, BS[t]);
            }
            F[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(I), _mm512_mul_ps(D, DX[t]), F[r][t]);
        }
    }
}

AI void tileK(int kind, int NR, int NT, int64_t n, const uint8_t *const *wp,
              const uint8_t *const *xp, float *out)
{
    __m512 F[MR][MT];
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int t = 0; t < NT; t++) F[r][t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / DN_QK_K; i++) superblock(kind, NR, NT, i, wp, xp, F);
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int t = 0; t < NT; t++)
        out[r * MT + t] = _mm512_reduce_add_ps(F[r][t]);
}

/* ------------------------------------------------------------------ */
/* float weights                                                       */
/* ------------------------------------------------------------------ */

/* Float weights: per step every token's slice is loaded once into
 * registers, each weight row slice once, then NR x NT fused products.
 * part (bf16 only): 0 multiplies by the activation's hi row, 1 by its lo
 * row (see dn_act_bf16_avx512). */
AI void step_f(int kind, int NR, int NT, const uint8_t *const *wp, const uint8_t *const *xp, size_t xoff,
               int64_t j, __mmask32 m, int full, __m512 F[MR][MT])
{
    if (kind == K_BF16) {
        __m512bh X[MT];
        UNROLL for (int t = 0; t < NT; t++)
            X[t] = (__m512bh)(full ? _mm512_loadu_si512(xp[t] + xoff + 2 * j)
                                   : _mm512_maskz_loadu_epi16(m, xp[t] + xoff + 2 * j));
        UNROLL for (int r = 0; r < NR; r++) {
            const __m512bh wv = (__m512bh)(full ? _mm512_loadu_si512(wp[r] + 2 * j)
                                                : _mm512_maskz_loadu_epi16(m, wp[r] + 2 * j));
            UNROLL for (int t = 0; t < NT; t++) F[r][t] = _mm512_dpbf16_ps(F[r][t], wv, X[t]);
        }
        return;
    }
    const __mmask16 m16 = (__mmask16)m;
    __m512 X[MT];
    UNROLL for (int t = 0; t < NT; t++)
        X[t] = full ? _mm512_loadu_ps((const float *)xp[t] + j) : _mm512_maskz_loadu_ps(m16, (const float *)xp[t] + j);
    UNROLL for (int r = 0; r < NR; r++) {
        __m512 wv;
        if (kind == K_F32) wv = full ? _mm512_loadu_ps((const float *)wp[r] + j) : _mm512_maskz_loadu_ps(m16, wp[r] + 4 * j);
        else wv = _mm512_cvtph_ps(full ? _mm256_loadu_si256((const __m256i *)(wp[r] + 2 * j))
                                       : _mm256_maskz_loadu_epi16(m16, wp[r] + 2 * j));
        UNROLL for (int t = 0; t < NT; t++) F[r][t] = _mm512_fmadd_ps(wv, X[t], F[r][t]);
    }
}

/* One pass over the row (full steps with plain loads, masked ones cost
 * more on Zen 5; a ragged last step masked) into F. */
AI void pass_f(int kind, int NR, int NT, int64_t n, const uint8_t *const *wp, const uint8_t *const *xp,
               size_t xoff, __m512 F[MR][MT])
{
    const int S = kind == K_BF16 ? 32 : 16;
    int64_t j = 0;
    for (; j + S <= n; j += S) step_f(kind, NR, NT, wp, xp, xoff, j, (__mmask32)~0u, 1, F);
    if (j < n) step_f(kind, NR, NT, wp, xp, xoff, j, (__mmask32)((1u << (n - j)) - 1), 0, F);
}

/* bf16: vdpbf16ps on pairs, the activation as hi + lo bf16 rows, so the
 * products are exact and x is carried to ~2^-17: an f32 dot product at
 * vdpbf16ps cost with no widening of the weights. The hi and lo sums are
 * two partials added at the end, whatever the tile: a matvec tile runs
 * them as two interleaved chains (hiding the latency), a gemm tile as two
 * passes, and a token alone gets bit-identical results to the same token
 * in a batch. */
AI void tileF(int kind, int NR, int NT, int64_t n, const uint8_t *const *wp,
              const uint8_t *const *xp, float *out)
{
    __m512 F[MR][MT], L[MR][MT];
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int t = 0; t < NT; t++)
        F[r][t] = L[r][t] = _mm512_setzero_ps();
    const size_t lo = ((size_t)n * 2 + 63) & ~(size_t)63;
    if (kind != K_BF16) {
        pass_f(kind, NR, NT, n, wp, xp, 0, F);
    } else if (NR * NT == 1) {
        int64_t j = 0;
        for (; j + 32 <= n; j += 32) {
            step_f(kind, 1, 1, wp, xp, 0, j, (__mmask32)~0u, 1, F);
            step_f(kind, 1, 1, wp, xp, lo, j, (__mmask32)~0u, 1, L);
        }
        if (j < n) {
            step_f(kind, 1, 1, wp, xp, 0, j, (__mmask32)((1u << (n - j)) - 1), 0, F);
            step_f(kind, 1, 1, wp, xp, lo, j, (__mmask32)((1u << (n - j)) - 1), 0, L);
        }
    } else {
        pass_f(kind, NR, NT, n, wp, xp, 0, F);
        pass_f(kind, NR, NT, n, wp, xp, lo, L);
    }
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int t = 0; t < NT; t++)
        out[r * MT + t] = _mm512_reduce_add_ps(kind == K_BF16 ? _mm512_add_ps(F[r][t], L[r][t]) : F[r][t]);
}

/* ------------------------------------------------------------------ */
/* entry points: vec_dot (1x1) and gemm (4x1 / 4x4 tiles, padded)      */
/* ------------------------------------------------------------------ */

/* Edge tiles repeat their last row/token (DN_DEFINE_TILED): simpler than a
 * kernel per shape, and rare (a matrix edge). Tokens go in TT-wide tiles (a
 * TV x 1 tile for a lone token: matvec), rows in TR. */
#define DEFINE_TYPE(NAME, ATYPE, TILE, KIND, TR, TT, TV) \
    DN_DEFINE_TILED(dn_vec_dot_##NAME##_##ATYPE##_avx512, dn_gemm_##NAME##_##ATYPE##_avx512, TILE, KIND, TR, TT, TV)

/* tile shapes (rows x tokens for prompts, rows x 1 for a single token),
 * measured on Zen 5 */
DEFINE_TYPE(q4_0, q8_0, tile32, K_Q4_0, 2, 8, 1)
DEFINE_TYPE(q4_1, q8_1, tile32, K_Q4_1, 2, 8, 1)
DEFINE_TYPE(q5_0, q8_0, tile32, K_Q5_0, 2, 8, 1)
DEFINE_TYPE(q5_1, q8_1, tile32, K_Q5_1, 2, 8, 1)
DEFINE_TYPE(q8_0, q8_0, tile32, K_Q8_0, 3, 6, 1)
DEFINE_TYPE(q4_K, q8_K, tileK, K_Q4_K, 3, 6, 1)
DEFINE_TYPE(q5_K, q8_K, tileK, K_Q5_K, 3, 6, 1)
DEFINE_TYPE(q6_K, q8_K, tileK, K_Q6_K, 2, 8, 1)
DEFINE_TYPE(f32, f32, tileF, K_F32, 4, 4, 1)
DEFINE_TYPE(f16, f32, tileF, K_F16, 4, 4, 1)
/* BF16 weights: plain bf16 activations moved full-size Danube logits by
 * 6e-3 of the largest (3x the golden tolerance), so activations come as a
 * bf16 hi + lo pair: f32-exact to ~2^-17 at vdpbf16ps speed. */
DEFINE_TYPE(bf16, bf16, tileF, K_BF16, 4, 6, 1)

/* ------------------------------------------------------------------ */
/* activation quantizers (byte-identical to quant.c's reference)     */
/* ------------------------------------------------------------------ */

/* roundf: half away from zero, exactly (|v| - trunc|v| is exact). */
AI __m512i round_away(__m512 v)
{
    const __m512 a = _mm512_abs_ps(v);
    __m512 t = _mm512_roundscale_ps(a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __mmask16 up = _mm512_cmp_ps_mask(_mm512_sub_ps(a, t), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    t = _mm512_mask_add_ps(t, up, t, _mm512_set1_ps(1.0f));
    const __mmask16 neg = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ);
    return _mm512_cvttps_epi32(_mm512_mask_sub_ps(t, neg, _mm512_setzero_ps(), t));
}

/* One q8 block of 32: stores qs and fp16 d, returns d as float (q8_1's s
 * is computed from the unrounded d, as in quant.c). */
AI float q8_block32(const float *x, int8_t *qs, uint16_t *dh, int *sum)
{
    const __m512 a = _mm512_loadu_ps(x), b = _mm512_loadu_ps(x + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    const __m512 vid = _mm512_set1_ps(id);
    const __m512i qa = round_away(_mm512_mul_ps(a, vid)), qb = round_away(_mm512_mul_ps(b, vid));
    _mm_storeu_si128((__m128i *)qs, _mm512_cvtepi32_epi8(qa));
    _mm_storeu_si128((__m128i *)(qs + 16), _mm512_cvtepi32_epi8(qb));
    *dh = dn_f32_to_fp16(d);
    if (sum) *sum = _mm512_reduce_add_epi32(_mm512_add_epi32(qa, qb));
    return d;
}

static void dn_act_q8_0_avx512(const float *x, void *out, int64_t n)
{
    dn_block_q8_0 *y = out;
    for (int64_t b = 0; b < n / 32; b++) q8_block32(x + 32 * b, y[b].qs, &y[b].d, NULL);
    make_extras((int)sizeof *y, out, n);
}

static void dn_act_q8_1_avx512(const float *x, void *out, int64_t n)
{
    dn_block_q8_1 *y = out;
    for (int64_t b = 0; b < n / 32; b++) {
        int sum;
        const float d = q8_block32(x + 32 * b, y[b].qs, &y[b].d, &sum);
        y[b].s = dn_f32_to_fp16((float)sum * d);
    }
    make_extras((int)sizeof *y, out, n);
}

static void dn_act_q8_K_avx512(const float *x, void *out, int64_t n)
{
    dn_block_q8_K *y = out;
    for (int64_t b = 0; b < n / DN_QK_K; b++, x += DN_QK_K) {
        __m512 m = _mm512_setzero_ps();
        for (int j = 0; j < DN_QK_K; j += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + j)));
        const float amax = _mm512_reduce_max_ps(m);
        if (amax == 0.0f) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        /* the first element reaching amax gives the sign (as quant.c's loop) */
        float max = 0.0f;
        for (int j = 0; j < DN_QK_K; j += 16) {
            const __mmask16 k = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(x + j)),
                                                   _mm512_set1_ps(amax), _CMP_EQ_OQ);
            if (k) { max = x[j + __builtin_ctz(k)]; break; }
        }
        const float iscale = -127.0f / max;
        const __m512 vs = _mm512_set1_ps(iscale);
        for (int g = 0; g < DN_QK_K / 16; g++) {
            __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 16 * g), vs));
            q = _mm512_min_epi32(q, _mm512_set1_epi32(127));
            _mm_storeu_si128((__m128i *)(y[b].qs + 16 * g), _mm512_cvtepi32_epi8(q));
            y[b].bsums[g] = (int16_t)_mm512_reduce_add_epi32(q);
        }
        y[b].d = 1.0f / iscale;
    }
}

/* Same integer rounding as dn_f32_to_bf16 (vcvtneps2bf16 would flush
 * denormals, the scalar conversion does not). */
/* f32 -> bf16 bits, rounded to nearest even (NaN kept quiet), exactly as
 * dn_f32_to_bf16 (vcvtneps2bf16 would flush denormals) */
AI __m512i bf16_rne(__m512i u)
{
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
    const __mmask16 nan = _mm512_cmp_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                                _mm512_set1_epi32(0x7f800000), _MM_CMPINT_NLE);
    return _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40)));
}

/* bf16 activations as two rows: hi = bf16(x) (the standard row, identical
 * to scalar) and, in the extras, lo = bf16(x - hi) (x - hi is exact). */
static void dn_act_bf16_avx512(const float *x, void *out, int64_t n)
{
    uint16_t *y = out, *ylo = (uint16_t *)((uint8_t *)out + (((size_t)n * 2 + 63) & ~(size_t)63));
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        const __m512i hi = bf16_rne(_mm512_castps_si512(v));
        const __m512 rest = _mm512_sub_ps(v, _mm512_castsi512_ps(_mm512_slli_epi32(hi, 16)));
        const __m512i lo = bf16_rne(_mm512_castps_si512(rest));
        _mm256_mask_storeu_epi16(y + i, m, _mm512_cvtepi32_epi16(hi));
        _mm256_mask_storeu_epi16(ylo + i, m, _mm512_cvtepi32_epi16(lo));
    }
}

/* ------------------------------------------------------------------ */
/* elementwise                                                         */
/* ------------------------------------------------------------------ */

static void dn_rmsnorm_avx512(float *out, const float *x, const float *w, int64_t n, float eps)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
        s0 = _mm512_fmadd_ps(a, a, s0);
        s1 = _mm512_fmadd_ps(b, b, s1);
    }
    for (; i < n; i += 16) {
        const __m512 a = _mm512_maskz_loadu_ps(tail_mask(n - i), x + i);
        s0 = _mm512_fmadd_ps(a, a, s0);
    }
    const double ss = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    const float scale = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
    const __m512 vs = _mm512_set1_ps(scale);
    for (i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        const __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vs),
                                       _mm512_maskz_loadu_ps(m, w + i));
        _mm512_mask_storeu_ps(out + i, m, v);
    }
}

static void dn_silu_mul_avx512(float *gate, const float *up, int64_t n)
{
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        const __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
        const __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), g));
        const __m512 s = _mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
        _mm512_mask_storeu_ps(gate + i, m, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(m, up + i)));
    }
}

static void dn_add_avx512(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + i),
                                                      _mm512_maskz_loadu_ps(m, x + i)));
    }
}

/* Two chains over whole vectors, a mask on the tail only; NaN tracked
 * apart (maxps returns its second operand when either is NaN). */
static float dn_max_avx512(const float *x, int64_t n)
{
    __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0;
    __mmask16 nan = 0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
        nan |= _mm512_cmp_ps_mask(a, b, _CMP_UNORD_Q);
        m0 = _mm512_max_ps(m0, a);
        m1 = _mm512_max_ps(m1, b);
    }
    for (; i < n; i += 16) {
        const __m512 v = _mm512_mask_loadu_ps(m0, tail_mask(n - i), x + i);
        nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        m0 = _mm512_max_ps(m0, v);
    }
    return nan ? NAN : _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
}

/* Masks on the last n % 16 only: the same lanes add the same values as a
 * masked loop, so the same bits. */
static void dn_softmax_avx512(float *x, int64_t n)
{
    if (n <= 0) return;
    const __m512 vmax = _mm512_set1_ps(dn_max_avx512(x, n));
    const int64_t body = n & ~(int64_t)15;
    const __mmask16 m = tail_mask(n - body);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t i = 0; i < body; i += 16) {
        const __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), vmax));
        sum = _mm512_add_ps(sum, e);
        _mm512_storeu_ps(x + i, e);
    }
    if (body < n) {
        const __m512 e = _mm512_maskz_mov_ps(m, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + body), vmax)));
        sum = _mm512_add_ps(sum, e);
        _mm512_mask_storeu_ps(x + body, m, e);
    }
    const __m512 inv = _mm512_set1_ps((float)(1.0 / (double)_mm512_reduce_add_ps(sum)));
    for (int64_t i = 0; i < body; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), inv));
    if (body < n) _mm512_mask_storeu_ps(x + body, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + body), inv));
}

const dn_kernels dn_kernels_avx512_table = {
    .isa = DN_ISA_AVX512,
    .name = "avx512",
    .act_type = {
        DN_WEIGHT_TYPES(DN_ACT_ENTRY, bf16) DN_X16_ACT_ENTRIES
        [DN_TYPE_BF16_X16] = DANU_TYPE_BF16,
        [DN_TYPE_BF16_X16F] = DANU_TYPE_BF16,   /* the same rows; its gemm skips the lo row */
    },
    .act_prepare = {
        [DANU_TYPE_BF16] = dn_act_bf16_avx512, [DANU_TYPE_Q8_0] = dn_act_q8_0_avx512,
        [DN_TYPE_Q8_1] = dn_act_q8_1_avx512, [DN_TYPE_Q8_K] = dn_act_q8_K_avx512,
    },
#define VEC_DOT(T, W, A) [T] = dn_vec_dot_##W##_##A##_avx512,
#define GEMM(T, W, A) [T] = dn_gemm_##W##_##A##_avx512,
    .vec_dot = { DN_WEIGHT_TYPES(VEC_DOT, bf16) },
    .gemm = {
        DN_WEIGHT_TYPES(GEMM, bf16)
        [DN_TYPE_BF16_X16] = dn_gemm_bf16x16_avx512, [DN_TYPE_BF16_X16F] = dn_gemm_bf16x16f_avx512,
        [DN_TYPE_Q4_0_X16] = dn_gemm_q4_0x16_q8_0_avx512, [DN_TYPE_Q8_0_X16] = dn_gemm_q8_0x16_q8_0_avx512,
        [DN_TYPE_Q4_K_X16] = dn_gemm_q4_Kx16_q8_K_avx512, [DN_TYPE_Q6_K_X16] = dn_gemm_q6_Kx16_q8_K_avx512,
    },
#undef VEC_DOT
#undef GEMM
    .repack = { [DANU_TYPE_BF16] = DN_TYPE_BF16_X16,
                [DANU_TYPE_Q4_0] = DN_TYPE_Q4_0_X16, [DANU_TYPE_Q8_0] = DN_TYPE_Q8_0_X16,
                [DANU_TYPE_Q4_K] = DN_TYPE_Q4_K_X16, [DANU_TYPE_Q6_K] = DN_TYPE_Q6_K_X16 },
    .gemm_nr = GEMM_MAX, .gemm_nt = GEMM_MAX,
    .act_extra = { [DANU_TYPE_BF16] = 512, [DANU_TYPE_Q8_0] = XG_Q8_0, [DN_TYPE_Q8_1] = XG_Q8_1 },
    .rmsnorm = dn_rmsnorm_avx512, .silu_mul = dn_silu_mul_avx512, .add = dn_add_avx512,
    .softmax = dn_softmax_avx512, .max = dn_max_avx512,
    .att_scores = dn_att_scores_avx512, .att_values = dn_att_values_avx512,
    .att_q8_weights = dn_att_q8_weights_avx512,
    .att_q8_values = dn_att_q8_values_avx512,
    .kv_quantize = dn_kv_quantize_avx512,
};

DN_LINES_TABLE(dn_kernels_avx512_lines_table, DN_ISA_AVX512, "avx512", dn_gemm_q4_0x16_q8_0_avx512_lines,
               dn_gemm_q8_0x16_q8_0_avx512_lines, dn_gemm_q4_Kx16_q8_K_avx512_lines, dn_gemm_q6_Kx16_q8_K_avx512_lines);
