/* kernels_internal.h - what the ISA files share with dispatch.c: their
 * tables and a few static inline helpers for the block formats. Only
 * declarations and static inline here (each ISA file has its own flags). */
#ifndef DN_KERNELS_INTERNAL_H
#define DN_KERNELS_INTERNAL_H
#include <math.h>
#include <string.h>
#include "kernels/kernels.h"
#include "common/bytes.h"

/* Per-ISA tables; empty slots are filled from the scalar table at detection. */
extern const dn_kernels dn_kernels_reference_table;
extern const dn_kernels dn_kernels_scalar_table;
extern const dn_kernels dn_kernels_avx2_table;
extern const dn_kernels dn_kernels_avx512_table;
extern const dn_kernels dn_kernels_neon_table;
extern const dn_kernels dn_kernels_neon_dot_table;

/* 6-bit scale and min of sub-block j of a Q4_K/Q5_K super-block: the first
 * four pairs sit in the low 6 bits of bytes 0..7, the last four are split
 * between bytes 8..11 (low 4 bits) and the top 2 bits of bytes 0..7. */
static inline void dn_k_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* All eight scales and mins at once (sc[0..7], m[0..7]). */
static inline void dn_k_scales_mins(const uint8_t *q, uint8_t *sc, uint8_t *m)
{
    for (int j = 0; j < 8; j++) dn_k_scale_min(j, q, &sc[j], &m[j]);
}

static inline uint32_t dn_ld_u32(const void *p) { uint32_t v; memcpy(&v, p, 4); return v; }
#endif
