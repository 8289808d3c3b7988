/* avx512.c - kernels for DN_ISA_AVX512 (being written; empty slots come from scalar). */
#include "kernels/kernels_internal.h"

const dn_kernels dn_kernels_avx512_table = { .isa = DN_ISA_AVX512, .name = "avx512" };
