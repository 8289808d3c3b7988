/* avx512_x16k.h - the x16 K-quant gemm entry points (avx512_x16k.c) that
 * avx512.c puts in its table. Activations are plain q8_K rows. */
#ifndef DN_AVX512_X16K_H
#define DN_AVX512_X16K_H
#include <stddef.h>
#include <stdint.h>

void dn_gemm_q4_Kx16_q8_K_avx512(int64_t n, const void *w, size_t w_stride, int nr,
                                 const void *x, size_t x_stride, int nt, float *y, size_t ldy);
void dn_gemm_q6_Kx16_q8_K_avx512(int64_t n, const void *w, size_t w_stride, int nr,
                                 const void *x, size_t x_stride, int nt, float *y, size_t ldy);
#endif
