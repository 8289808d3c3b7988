/* neon.c - kernels for DN_ISA_NEON (being written; empty slots come from scalar). */
#include "kernels/kernels_internal.h"

const dn_kernels dn_kernels_neon_table = { .isa = DN_ISA_NEON, .name = "neon" };
