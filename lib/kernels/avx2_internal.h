/* avx2_internal.h - what the AVX2 files (avx2.c and the x16 kernel files,
 * all built with the same flags) share: the layout of the q8_0 activation
 * extras that avx2.c writes and the x16 kernels read, and the x16 gemm
 * entry points avx2.c puts in its table (avx2_x16.c: q4_0x16, q8_0x16;
 * avx2_x16k.c: q4_Kx16, q6_Kx16), the attention slots (avx2_attn.c), and
 * the layout helpers of the x16 K-quant kernels (avx2_x16k.c,
 * avx2vnni_x16.c) and the exp of avx2.c's and avx2_attn.c's kernels. */
#ifndef DN_AVX2_INTERNAL_H
#define DN_AVX2_INTERNAL_H
#include <stddef.h>
#include <stdint.h>
#include "kernels/kernels_internal.h"

/* Extras of a prepared q8_0 row (avx2.c dn_act_q8_0_avx2), per group of 8
 * blocks (256 elements), DN_A2_XG bytes from the next 64-byte boundary
 * after the blocks; per block j = 0..7:
 *   NS8[j] (i32)  -8 * sum(qs): the q4_0 nibble bias times the block's sum
 *   DX[j]  (f32)  d of the block (the stored fp16, widened)
 * Blocks past the end of the row read as zero. */
enum { DN_A2_XG = 64, DN_A2_NS8 = 0, DN_A2_DX = 32 };
/* where a prepared row of nb q8_0 blocks has its extras */
static inline size_t dn_a2_extras_at(int64_t nb)
{
    return (size_t)(((int64_t)sizeof(dn_block_q8_0) * nb + 63) & ~(int64_t)63);
}
/* where block b's entries sit in those extras (add DN_A2_NS8 / DN_A2_DX) */
static inline size_t dn_a2_extras_block(int64_t b) { return (size_t)(b >> 3) * DN_A2_XG + 4 * (size_t)(b & 7); }

DN_GEMM_DECL(dn_gemm_q4_0x16_q8_0_avx2);
DN_GEMM_DECL(dn_gemm_q8_0x16_q8_0_avx2);
DN_GEMM_DECL(dn_gemm_q4_0x16_q8_0_avx2_lines);   /* DN_FETCH_LINES (kernels.h) */
DN_GEMM_DECL(dn_gemm_q8_0x16_q8_0_avx2_lines);
/* avx2_x16k.c: against plain q8_K rows */
DN_GEMM_DECL(dn_gemm_q4_Kx16_q8_K_avx2);
DN_GEMM_DECL(dn_gemm_q6_Kx16_q8_K_avx2);
DN_GEMM_DECL(dn_gemm_q4_Kx16_q8_K_avx2_lines);   /* DN_FETCH_LINES */
DN_GEMM_DECL(dn_gemm_q6_Kx16_q8_K_avx2_lines);

#if defined(__AVX2__)
#include <immintrin.h>
#include <string.h>
/* The x16 K-quant kernels (avx2_x16k.c, avx2vnni_x16.c; built with the
 * AVX2 flags): where the codes of a block sit in the layouts of
 * quant/repack.c, and the token sums of the q4_K mins term. */

/* Chunk k (0..7) of q4_K sub-block j = 2jp + odd of the q4_Kx16 block c,
 * rows 8h..8h+7 (4 consecutive codes 0..15 each): the low (odd = 0) or
 * high nibbles of chunk 8jp + k. */
AI __m256i dn_a2_q4x_codes(const uint8_t *c, int jp, int odd, int k, int h)
{
    const __m256i L = _mm256_loadu_si256((const __m256i *)(c + Q4X_QS + 512 * jp + 64 * k + 32 * h));
    return _mm256_and_si256(odd ? _mm256_srli_epi16(L, 4) : L, _mm256_set1_epi8(0x0F));
}

/* Chunk m (0..7) of quarter qd (0..3) of half H (0..1) of the q6_Kx16
 * block c, rows 8h..8h+7 (4 consecutive codes 0..63 each): the low (qd <
 * 2) or high nibbles of ql chunk 16H + 8(qd&1) + m and bits 2qd, 2qd+1 of
 * qh chunk 8H + m. */
AI __m256i dn_a2_q6x_codes(const uint8_t *c, int H, int qd, int m, int h)
{
    const __m256i L = _mm256_loadu_si256((const __m256i *)(c + Q6X_QL + 64 * (16 * H + 8 * (qd & 1) + m) + 32 * h));
    const __m256i Q = _mm256_loadu_si256((const __m256i *)(c + Q6X_QH + 64 * (8 * H + m) + 32 * h));
    const __m256i lo = _mm256_and_si256(qd < 2 ? L : _mm256_srli_epi16(L, 4), _mm256_set1_epi8(0x0F));
    const __m256i hi = qd == 0 ? _mm256_slli_epi16(Q, 4) : qd == 1 ? _mm256_slli_epi16(Q, 2)
                     : qd == 2 ? Q : _mm256_srli_epi16(Q, 2);
    return _mm256_or_si256(lo, _mm256_and_si256(hi, _mm256_set1_epi8(0x30)));
}

/* q4_0x16 prompts on Intel (avx2_x16.c, avx2vnni_x16.c; their tables
 * for DN_FETCH_LINES): each row group's nibbles are unpacked once per
 * DN_A2_UB block columns into bytes in the q8_0x16 layout (quant.h: the
 * low nibbles of chunk k become chunk k, the high ones chunk 4 + k) that
 * every token tile then reads, instead of every tile shifting and masking
 * them again: vpsrlw competes with the multiplies for Intel's ports 0 and
 * 1. tile(ns, u, xq, xe, y, ldy, m, first) runs m = 2 or 3 tokens (their
 * q8_0 blocks and extras at xq[t], xe[t], both from the slice's first
 * column) over the ns unpacked columns u, starting from zero when first
 * and from y's values otherwise, so each output's float steps keep their
 * order and the bits are those of the packed tiles. nt >= 2; the slice
 * lives on the stack (17 KB). */
enum { DN_A2_UB = 32 };   /* a multiple of the extras' 8 blocks */
typedef void (*dn_a2_utile_fn)(int64_t ns, const uint8_t *u, const uint8_t *const *xq, const uint8_t *const *xe,
                               float *y, size_t ldy, int m, int first);
AI void dn_a2_q4x16_sliced(dn_a2_utile_fn tile, int64_t n, const uint8_t *w, size_t ws, int nr, const uint8_t *x,
                           size_t xs, int nt, float *y, size_t ldy)
{
    uint8_t u[DN_A2_UB * sizeof(dn_block_q8_0x16)];
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const int64_t nb = n / 32;
    const size_t eoff = dn_a2_extras_at(nb);
    const int ntiles = (nt + 2) / 3;   /* tiles of 2 or 3 tokens, as even as can be */
    for (int g = 0; g < nr / 16; g++) {
        const uint8_t *wg = w + (size_t)g * ws;
        for (int64_t b0 = 0; b0 < nb; b0 += DN_A2_UB) {
            const int64_t ns = nb - b0 < DN_A2_UB ? nb - b0 : DN_A2_UB;
            for (int64_t b = 0; b < ns; b++) {
                const uint8_t *s = wg + (size_t)(b0 + b) * sizeof(dn_block_q4_0x16);
                uint8_t *d = u + (size_t)b * sizeof(dn_block_q8_0x16);
                memcpy(d, s, X_QS);   /* the rows' scales */
                for (int k = 0; k < 4; k++) for (int h = 0; h < 2; h++) {
                    const __m256i v = _mm256_loadu_si256((const __m256i *)(s + X_QS + 64 * k + 32 * h));
                    _mm256_storeu_si256((__m256i *)(d + X_QS + 64 * k + 32 * h), _mm256_and_si256(v, m4));
                    _mm256_storeu_si256((__m256i *)(d + X_QS + 64 * (4 + k) + 32 * h),
                                       _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
                }
            }
            for (int i = 0, t = 0; i < ntiles; i++) {
                const int m = (nt - t) / (ntiles - i);
                const uint8_t *xq[3], *xe[3];
                for (int j = 0; j < m; j++) {
                    const uint8_t *row = x + (size_t)(t + j) * xs;
                    xq[j] = row + (size_t)b0 * sizeof(dn_block_q8_0);
                    xe[j] = row + eoff + dn_a2_extras_block(b0);
                }
                tile(ns, u, xq, xe, y + (size_t)t * ldy + 16 * g, ldy, m, b0 == 0);
                t += m;
            }
        }
    }
}

/* e^x to ~1 ulp (softmax, silu, the Q8 attention weights): x = n ln2 + r, |r| <= ln2/2, degree-7 Taylor (Horner);
 * 2^n as two exponent-field factors so results down to the denormal range
 * and overflow to inf come out as expf's do. */
AI __m256 exp256(__m256 x)
{
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(89.0f)), _mm256_set1_ps(-104.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-06f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    const __m256 f1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, _mm256_set1_epi32(127)), 23));
    const __m256 f2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, _mm256_set1_epi32(127)), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, f1), f2);
}

/* The q4_K mins term's token sums of the q8_K block xb: s[j] = bsums[2j] +
 * bsums[2j+1] (|s[j]| <= 4064) */
AI void dn_a2_q8k_min_sums(const uint8_t *xb, int16_t s[8])
{
    const __m128i lo = _mm_loadu_si128((const __m128i *)(xb + Q8K_BSUMS));
    const __m128i hi = _mm_loadu_si128((const __m128i *)(xb + Q8K_BSUMS + 16));
    _mm_storeu_si128((__m128i *)s, _mm_hadd_epi16(lo, hi));
}
#endif

/* avx2_attn.c: the attention slots of the table (kernels.h) */
float dn_kv_quantize_avx2(const float *x, int n, int8_t *q);
void dn_att_scores_avx2(int hd, int nq, const float *q, size_t qs, const void *k, int lane, int nk, int type,
                          const float *ksc, float *s, size_t ss);
void dn_att_values_avx2(int hd, int nq, const float *p, size_t ps, const void *v, int nk, int type, float *out,
                        size_t os);
int64_t dn_att_q8_weights_avx2(const float *s, float m, const float *vsc, int n, float c, uint8_t *hi, uint8_t *lo);
void dn_att_q8_values_avx2(int hd, int nq, const uint8_t *w, size_t ws, const void *v, int lane, int nk, int64_t *acc);
/* avx2vnni_attn.c: Q8 scores and values with vpdpbusd, the rest as avx2 */
void dn_att_scores_avx2vnni(int hd, int nq, const float *q, size_t qs, const void *k, int lane, int nk, int type,
                            const float *ksc, float *s, size_t ss);
void dn_att_q8_values_avx2vnni(int hd, int nq, const uint8_t *w, size_t ws, const void *v, int lane, int nk,
                               int64_t *acc);
#endif
