/* neon_dot.c - kernels for DN_ISA_NEON_DOT (being written; empty slots come from scalar). */
#include "kernels/kernels_internal.h"

const dn_kernels dn_kernels_neon_dot_table = { .isa = DN_ISA_NEON_DOT, .name = "neon_dot" };
