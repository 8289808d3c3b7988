/* test_x16_avx2vnni.c - the AVX-VNNI x16 gemm kernels (avx2vnni_x16.c:
 * q4_0x16, q8_0x16, q4_Kx16, q6_Kx16) through the cases of
 * test_x16_avx2.c (exact oracle, scalar fallback, every token count 1..12
 * and tile tail, split row ranges, odd strides, extreme codes and scales,
 * a token alone equals its bits in a batch), plus: the same bits as the
 * avx2 table (the integer sums are exact in both and the float steps are
 * the same). Skipped (exit 77) without AVX-VNNI or under DANU_ISA below
 * avx2vnni. */
#define X16_ISA DN_ISA_AVX2VNNI
#define X16_NAME "avx2vnni"
#include "test_x16_avx2.c"
