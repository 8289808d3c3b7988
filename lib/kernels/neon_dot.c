/* neon_dot.c - the NEON kernels with the ARMv8.2 dot product (SDOT) for
 * 8-bit products; compiled with +dotprod and chosen only when AT_HWCAP has
 * ASIMDDP. Code shared with neon.c through neon_internal.h. */
#define DN_NEON_DOT 1
#define NEON_SUFFIX neon_dot
#include "kernels/neon_internal.h"

const dn_kernels dn_kernels_neon_dot_table = NEON_TABLE(DN_ISA_NEON_DOT, "neon_dot");
