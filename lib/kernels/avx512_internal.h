/* avx512_internal.h - what the AVX-512 files (avx512.c and the x16 kernel
 * files, all built with the same flags) share: broadcast dot-product
 * helpers, exp, the x16 gemm entry points avx512.c puts in its
 * table, and the part of the q8_0 activation extras the x16 kernels read. */
#ifndef DN_AVX512_INTERNAL_H
#define DN_AVX512_INTERNAL_H
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include "kernels/kernels_internal.h"


/* acc += w . broadcast(4 bytes at p), the broadcast embedded in the
 * instruction: GCC 12 emits a separate vpbroadcastd for the intrinsics
 * (measured 2-6 % slower). The memory operand tells GCC what the asm reads. */
typedef int32_t __attribute__((may_alias)) dn_i32_alias;
AI __m512i dpbusd_b(__m512i acc, __m512i w, const void *p)
{
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*(const dn_i32_alias *)p));
    return acc;
}
AI __m512i dpwssd_b(__m512i acc, __m512i w, const void *p)
{
    __asm__("vpdpwssd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*(const dn_i32_alias *)p));
    return acc;
}

/* e^x to ~1 ulp (softmax, silu, the Q8 attention weights): x = n ln2 + r, |r| <= ln2/2, degree-7 Taylor in Horner
 * form, 2^n applied by vscalefps (correct overflow, underflow, denormals). */
AI __m512 exp512(__m512 x)
{
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(89.0f)), _mm512_set1_ps(-104.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

AI __mmask16 tail_mask(int64_t left) { return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1); }

/* Extras of a prepared q8_0 row (avx512.c make_extras), per group of 8
 * blocks (256 elements), DN_XG_Q8_0 bytes from the next 64-byte boundary
 * after the blocks: bytes 0..383 serve the GGUF-layout kernels (qs of the
 * 8 blocks at 32 * block, 32-byte aligned; reduced scales and sums), then
 * per block j = 0..7, for the x16 kernels:
 *   NS8[j]   (i32)  -8 * sum(qs)    q4_0 bias times the block's sum
 *   NS128[j] (i32)  -128 * sum(qs)  q8_0 bias (weights stored q + 128)
 *   DX[j]    (f32)  d of the block
 * Blocks past the end of the row read as zero. */
enum { DN_XG_Q8_0 = 512, DN_XE_QS = 0, DN_XE_NS8 = 384, DN_XE_NS128 = 416, DN_XE_DX = 448 };

/* x16 gemms (signature of dn_gemm_fn): avx512_x16.c against q8_0 rows,
 * avx512_x16k.c against plain q8_K rows, avx512_bf16x16.c against bf16 rows
 * (exact hi + lo, and the fast hi-only variant). */
DN_GEMM_DECL(dn_gemm_q4_0x16_q8_0_avx512);
DN_GEMM_DECL(dn_gemm_q8_0x16_q8_0_avx512);
DN_GEMM_DECL(dn_gemm_q4_0x16_q8_0_avx512_lines);   /* DN_FETCH_LINES (kernels.h) */
DN_GEMM_DECL(dn_gemm_q8_0x16_q8_0_avx512_lines);
DN_GEMM_DECL(dn_gemm_q4_Kx16_q8_K_avx512);
DN_GEMM_DECL(dn_gemm_q6_Kx16_q8_K_avx512);
DN_GEMM_DECL(dn_gemm_q4_Kx16_q8_K_avx512_lines);   /* DN_FETCH_LINES */
DN_GEMM_DECL(dn_gemm_q6_Kx16_q8_K_avx512_lines);
DN_GEMM_DECL(dn_gemm_bf16x16_avx512);
DN_GEMM_DECL(dn_gemm_bf16x16f_avx512);

/* avx512_attn.c: the attention slots of the table (kernels.h) */
float dn_kv_quantize_avx512(const float *x, int n, int8_t *q);
void dn_att_scores_avx512(int hd, int nq, const float *q, size_t qs, const void *k, int lane, int nk, int type,
                          const float *ksc, float *s, size_t ss);
void dn_att_values_avx512(int hd, int nq, const float *p, size_t ps, const void *v, int nk, int type, float *out,
                          size_t os);
int64_t dn_att_q8_weights_avx512(const float *s, float m, const float *vsc, int n, float c, uint8_t *hi, uint8_t *lo);
void dn_att_q8_values_avx512(int hd, int nq, const uint8_t *w, size_t ws, const void *v, int lane, int nk, int64_t *acc);
#endif
