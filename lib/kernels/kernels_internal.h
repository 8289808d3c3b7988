/* kernels_internal.h - what the ISA files share with dispatch.c: their
 * tables and a few static inline helpers for the block formats. Only
 * declarations and static inline here (each ISA file has its own flags). */
#ifndef DN_KERNELS_INTERNAL_H
#define DN_KERNELS_INTERNAL_H
#include <math.h>
#include <string.h>
#include "kernels/kernels.h"
#include "common/bytes.h"

/* Kernel bodies are written as small always-inline pieces with constant
 * tile shapes; UNROLL makes the compiler flatten their register loops. */
#define AI static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")
/* Declares a tile kernel with the dn_gemm_fn signature (kernels.h). */
#define DN_GEMM_DECL(NAME) void NAME(int64_t n, const void *w, size_t w_stride, int nr, const void *x, \
                                     size_t x_stride, int nt, float *y, size_t ldy)

/* Per-ISA tables; empty slots are filled from the scalar table at detection. */
extern const dn_kernels dn_kernels_reference_table;
extern const dn_kernels dn_kernels_scalar_table;
extern const dn_kernels dn_kernels_avx2_table;
extern const dn_kernels dn_kernels_avx512_table;
extern const dn_kernels dn_kernels_neon_table;
extern const dn_kernels dn_kernels_neon_dot_table;

static inline uint32_t dn_ld_u32(const void *p) { uint32_t v; memcpy(&v, p, 4); return v; }

/* The two entry points of a weight type on top of an ISA's register-tile
 * function TILE(KIND, rows, tokens, n, wp, xp, out) (out[i * MT + j] =
 * row i . token j; MR, MT are the including file's maximum tile): the dot
 * of one row, and the gemm that walks TR x TT tiles (TV rows for a single
 * token). Edge tiles repeat their last row/token and drop the extra results. */
#define DN_DEFINE_TILED(VEC_DOT, GEMM, TILE, KIND, TR, TT, TV) \
    static float VEC_DOT(int64_t n, const void *w, const void *x) \
    { \
        const uint8_t *wp[1] = { w }, *xp[1] = { x }; \
        float out[MR * MT]; \
        TILE(KIND, 1, 1, n, wp, xp, out); \
        return out[0]; \
    } \
    static void GEMM(int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs, int nt, \
                     float *y, size_t ldy) \
    { \
        const int tr = nt == 1 ? TV : TR; \
        for (int r = 0; r < nr; r += tr) { \
            const int rr = nr - r < tr ? nr - r : tr; \
            const uint8_t *wp[MR]; \
            for (int i = 0; i < tr; i++) \
                wp[i] = (const uint8_t *)w + (size_t)(r + (i < rr ? i : rr - 1)) * ws; \
            for (int t = 0; t < nt; t += TT) { \
                const int tt = nt - t < TT ? nt - t : TT; \
                const uint8_t *xp[MT]; \
                for (int j = 0; j < TT; j++) \
                    xp[j] = (const uint8_t *)x + (size_t)(t + (j < tt ? j : tt - 1)) * xs; \
                float out[MR * MT] = { 0 }; \
                if (nt == 1) TILE(KIND, TV, 1, n, wp, xp, out); \
                else TILE(KIND, TR, TT, n, wp, xp, out); \
                for (int j = 0; j < tt; j++) \
                    for (int i = 0; i < rr; i++) y[(size_t)(t + j) * ldy + r + i] = out[i * MT + j]; \
            } \
        } \
    }
#endif
