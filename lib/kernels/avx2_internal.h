/* avx2_internal.h - what the AVX2 files (avx2.c and the x16 kernel files,
 * all built with the same flags) share: the layout of the q8_0 activation
 * extras that avx2.c writes and the x16 kernels read, and the x16 gemm
 * entry points avx2.c puts in its table (avx2_x16.c: q4_0x16, q8_0x16;
 * avx2_x16k.c: q4_Kx16, q6_Kx16), and the attention slots (avx2_attn.c). */
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

DN_GEMM_DECL(dn_gemm_q4_0x16_q8_0_avx2);
DN_GEMM_DECL(dn_gemm_q8_0x16_q8_0_avx2);
/* avx2_x16k.c: against plain q8_K rows */
DN_GEMM_DECL(dn_gemm_q4_Kx16_q8_K_avx2);
DN_GEMM_DECL(dn_gemm_q6_Kx16_q8_K_avx2);

/* avx2_attn.c: the attention slots of the table (kernels.h) */
void dn_att_scores_avx2(int hd, int nq, const float *q, size_t qs, const void *k, int lane, int nk, int type,
                          const float *ksc, float *s, size_t ss);
void dn_att_values_avx2(int hd, int nq, const float *p, size_t ps, const void *v, int nk, int type, const float *vsc,
                          float *out, size_t os);
#endif
