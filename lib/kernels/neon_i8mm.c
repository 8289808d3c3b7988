/* neon_i8mm.c - the x16 gemms with the ARMv8.6 int8 matrix multiply
 * (SMMLA, FEAT_I8MM) for groups of 4 tokens and SDOT for the rest
 * (neon_x16.h); compiled with +dotprod+i8mm and chosen only when the
 * system reports both. Only the slots that differ from neon_dot:
 * dispatch.c lays them over that table. */
#define DN_NEON_I8MM 1
#include "kernels/neon_x16.h"

DN_X16_GEMMS(neon_i8mm)

const dn_kernels dn_kernels_neon_i8mm_table = {
    .isa = DN_ISA_NEON_I8MM,
    .name = "neon_i8mm",
    .act_type = { DN_X16_ACT_ENTRIES },
    .gemm = { DN_X16_ENTRIES_GEMM(neon_i8mm) },
    .repack = { DN_X16_ENTRIES_REPACK },
};
