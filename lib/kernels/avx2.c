/* avx2.c - kernels for DN_ISA_AVX2 (being written; empty slots come from scalar). */
#include "kernels/kernels_internal.h"

const dn_kernels dn_kernels_avx2_table = { .isa = DN_ISA_AVX2, .name = "avx2" };
