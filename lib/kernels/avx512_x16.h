/* avx512_x16.h - what avx512.c shares with avx512_x16.c: the x16 gemm
 * entry points and the part of the q8_0 activation extras they read. */
#ifndef DN_AVX512_X16_H
#define DN_AVX512_X16_H
#include <stddef.h>
#include <stdint.h>

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

void dn_gemm_q4_0x16_q8_0_avx512(int64_t n, const void *w, size_t w_stride, int nr,
                                 const void *x, size_t x_stride, int nt, float *y, size_t ldy);
void dn_gemm_q8_0x16_q8_0_avx512(int64_t n, const void *w, size_t w_stride, int nr,
                                 const void *x, size_t x_stride, int nt, float *y, size_t ldy);
#endif
