/* neon_dot.c - the NEON kernels with the ARMv8.2 dot product (SDOT) for
 * 8-bit products; compiled with +dotprod and chosen only when AT_HWCAP has
 * ASIMDDP. Code shared with neon.c through neon_internal.h; the x16 gemms
 * (neon_x16.h) make the loader repack q4_0, q8_0, q4_K and q6_K. */
#define DN_NEON_DOT 1
#define NEON_SUFFIX neon_dot
#define NEON_X16_ACT DN_X16_ACT_ENTRIES
#define NEON_X16_GEMM DN_X16_ENTRIES_GEMM(neon_dot)
#define NEON_X16_REPACK DN_X16_ENTRIES_REPACK
#include "kernels/neon_internal.h"
#include "kernels/neon_x16.h"

DN_X16_GEMMS(neon_dot)

const dn_kernels dn_kernels_neon_dot_table = NEON_TABLE(DN_ISA_NEON_DOT, "neon_dot");
