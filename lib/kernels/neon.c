/* neon.c - kernels for baseline AArch64 AdvSIMD (every ARMv8-A core). The
 * code lives in neon_internal.h, shared with neon_dot.c, which swaps in the
 * SDOT instruction where the CPU has it. */
#define DN_NEON_DOT 0
#define NEON_SUFFIX neon
#include "kernels/neon_internal.h"

const dn_kernels dn_kernels_neon_table = NEON_TABLE(DN_ISA_NEON, "neon");
