/* quant.h - weight storage types: block layouts exactly as GGUF defines
 * them, a table of sizes, and the scalar reference conversions (dequantize
 * any row to f32; quantize f32 to any type the way ggml's
 * quantize_row_*_ref does). The reference stays the oracle for fast kernels. */
#ifndef DN_QUANT_H
#define DN_QUANT_H
#include <stdint.h>
#include <stddef.h>
#include "danu.h"

/* Internal-only activation types (GGUF numbers, never stored as weights here). */
enum { DN_TYPE_Q8_1 = 9, DN_TYPE_Q8_K = 15, DN_TYPE_COUNT = 40 };

/* Internal-only repacked weight types (never in files; ids above GGUF's own
 * in use). Weights of 16 consecutive rows are interleaved so that a SIMD
 * kernel loads 4 bytes of each of the 16 rows in one 64-byte vector and
 * accumulates 16 rows at once, without horizontal sums (see repack.c for
 * the exact layouts). A matrix in an x16 type has rows % 16 == 0; row
 * group g (rows 16g..16g+15) starts at g * 16 * row_bytes, and
 * dn_type_row_bytes gives the bytes of one row's share of a group. */
enum {
    DN_TYPE_Q4_0_X16 = 32,   /* 16 x q4_0: 288 bytes per 32 columns (== 16 blocks) */
    DN_TYPE_Q8_0_X16 = 33,   /* 16 x q8_0: 544 bytes per 32 columns, qs stored + 128 */
    DN_TYPE_Q4_K_X16 = 34,   /* 16 x q4_K: 2368 bytes per 256 columns (scales unpacked) */
    DN_TYPE_Q6_K_X16 = 35,   /* 16 x q6_K: 3360 bytes per 256 columns (== 16 blocks) */
    DN_TYPE_BF16_X16 = 36,   /* 16 x bf16: 64 bytes per 2 columns (a pair of each row) */
    /* the same bytes as BF16_X16; its kernels multiply by bf16-rounded
     * activations only (DANU_OPT_FAST_BF16: half the work, less exact) */
    DN_TYPE_BF16_X16F = 37
};

#define DN_QK4_0 32
#define DN_QK4_1 32
#define DN_QK5_0 32
#define DN_QK5_1 32
#define DN_QK8_0 32
#define DN_QK8_1 32
#define DN_QK_K 256
#define DN_K_SCALE_SIZE 12

/* fp16 fields are raw IEEE half bits (uint16_t). */
typedef struct { uint16_t d; uint8_t qs[DN_QK4_0 / 2]; } dn_block_q4_0;
typedef struct { uint16_t d, m; uint8_t qs[DN_QK4_1 / 2]; } dn_block_q4_1;
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[DN_QK5_0 / 2]; } dn_block_q5_0;
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[DN_QK5_1 / 2]; } dn_block_q5_1;
typedef struct { uint16_t d; int8_t qs[DN_QK8_0]; } dn_block_q8_0;
typedef struct { uint16_t d, s; int8_t qs[DN_QK8_1]; } dn_block_q8_1;   /* s = d * sum(qs) */
typedef struct { uint16_t d, dmin; uint8_t scales[DN_K_SCALE_SIZE]; uint8_t qs[DN_QK_K / 2]; } dn_block_q4_K;
typedef struct { uint16_t d, dmin; uint8_t scales[DN_K_SCALE_SIZE]; uint8_t qh[DN_QK_K / 8]; uint8_t qs[DN_QK_K / 2]; } dn_block_q5_K;
typedef struct { uint8_t ql[DN_QK_K / 2]; uint8_t qh[DN_QK_K / 4]; int8_t scales[DN_QK_K / 16]; uint16_t d; } dn_block_q6_K;
typedef struct { float d; int8_t qs[DN_QK_K]; int16_t bsums[DN_QK_K / 16]; } dn_block_q8_K;

_Static_assert(sizeof(dn_block_q4_0) == 18, "q4_0 block");
_Static_assert(sizeof(dn_block_q4_1) == 20, "q4_1 block");
_Static_assert(sizeof(dn_block_q5_0) == 22, "q5_0 block");
_Static_assert(sizeof(dn_block_q5_1) == 24, "q5_1 block");
_Static_assert(sizeof(dn_block_q8_0) == 34, "q8_0 block");
_Static_assert(sizeof(dn_block_q8_1) == 36, "q8_1 block");
_Static_assert(sizeof(dn_block_q4_K) == 144, "q4_K block");
_Static_assert(sizeof(dn_block_q5_K) == 176, "q5_K block");
_Static_assert(sizeof(dn_block_q6_K) == 210, "q6_K block");
_Static_assert(sizeof(dn_block_q8_K) == 292, "q8_K block");

/* One block column of a 16-row group of the x16 types (repack.c): the
 * rows' scales, then "chunks" of 64 bytes, chunk k holding bytes
 * 4k..4k+3 of the named array of row 0, then of row 1, ... row 15.
 * Column c of a group starts at c * sizeof(block). */
typedef struct { uint16_t d[16]; uint8_t qs[DN_QK4_0 / 8][64]; } dn_block_q4_0x16;
typedef struct { uint16_t d[16]; uint8_t qs[DN_QK8_0 / 4][64]; } dn_block_q8_0x16;   /* bytes q + 128 */
typedef struct {
    uint16_t d[16], dmin[16];
    uint8_t sc[8][16], m[8][16];   /* 6-bit scale / min of sub-block j, row r: unpacked */
    uint8_t qs[DN_QK_K / 8][64];
} dn_block_q4_Kx16;
typedef struct {
    uint16_t d[16];
    int8_t scales[DN_QK_K / 16][16];   /* scale j of row r */
    uint8_t ql[DN_QK_K / 8][64], qh[DN_QK_K / 16][64];
} dn_block_q6_Kx16;

_Static_assert(sizeof(dn_block_q4_0x16) == 288, "q4_0x16 column");
_Static_assert(sizeof(dn_block_q8_0x16) == 544, "q8_0x16 column");
_Static_assert(sizeof(dn_block_q4_Kx16) == 2368, "q4_Kx16 column");
_Static_assert(sizeof(dn_block_q6_Kx16) == 3360, "q6_Kx16 column");

/* The 12 packed scale bytes of a q4_K/q5_K super-block: 8 six-bit scales
 * and 8 six-bit mins, one pair per 32-element sub-block j. Sub-blocks 0..3
 * keep scale and min in the low 6 bits of bytes j and j + 4; sub-blocks
 * 4..7 put their low 4 bits in byte j + 4 (scale low nibble, min high
 * nibble) and their top 2 bits in bits 6..7 of bytes j - 4 (scale) and j
 * (min). The one statement of this packing: every reader and writer
 * (quant.c, repack.c, scalar.c and the ISA kernels) goes through these.
 *
 * Unpacked four sub-blocks at a time (a SIMD-within-a-register form the
 * vector kernels want): byte j of *sc / *mn is the scale / min of
 * sub-block j. */
static inline void dn_k_unpack_scales(const uint8_t q[DN_K_SCALE_SIZE], uint64_t *sc, uint64_t *mn)
{
    const uint32_t u0 = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
    const uint32_t u1 = (uint32_t)q[4] | (uint32_t)q[5] << 8 | (uint32_t)q[6] << 16 | (uint32_t)q[7] << 24;
    const uint32_t u2 = (uint32_t)q[8] | (uint32_t)q[9] << 8 | (uint32_t)q[10] << 16 | (uint32_t)q[11] << 24;
    const uint32_t sc_lo = u0 & 0x3f3f3f3fu, mn_lo = u1 & 0x3f3f3f3fu;
    const uint32_t sc_hi = (u2 & 0x0f0f0f0fu) | (((u0 >> 6) & 0x03030303u) << 4);
    const uint32_t mn_hi = ((u2 >> 4) & 0x0f0f0f0fu) | (((u1 >> 6) & 0x03030303u) << 4);
    *sc = sc_lo | (uint64_t)sc_hi << 32;
    *mn = mn_lo | (uint64_t)mn_hi << 32;
}

/* The same as two arrays: sc[j], m[j] for sub-blocks j = 0..7. */
static inline void dn_k_scales_mins(const uint8_t q[DN_K_SCALE_SIZE], uint8_t sc[8], uint8_t m[8])
{
    uint64_t s, n;
    dn_k_unpack_scales(q, &s, &n);
    for (int j = 0; j < 8; j++) {
        sc[j] = (uint8_t)(s >> (8 * j));
        m[j] = (uint8_t)(n >> (8 * j));
    }
}

/* The inverse: 8 scales and 8 mins (each < 64) into the 12 bytes. */
static inline void dn_k_pack_scales(const uint8_t sc[8], const uint8_t m[8], uint8_t q[DN_K_SCALE_SIZE])
{
    for (int j = 0; j < 4; j++) {
        q[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        q[j + 4] = (uint8_t)((m[j] & 63) | ((m[j + 4] >> 4) << 6));
        q[j + 8] = (uint8_t)((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
    }
}

typedef struct dn_type_info {
    const char *name;      /* "q4_0", "bf16", ...                 */
    uint32_t block_size;   /* elements per block (1 for floats)   */
    uint32_t type_size;    /* bytes per block                     */
    int is_quantized;
} dn_type_info;

/* NULL for a type number libdanu does not know (as a weight or activation). */
const dn_type_info *dn_type_get(int32_t type);
/* 1 if `type` may be stored as a weight (the 11 public types). */
int dn_type_is_weight(int32_t type);
/* Bytes of a row of n elements; 0 if the type is unknown or n is not a
 * multiple of its block size (or on overflow). */
uint64_t dn_type_row_bytes(int32_t type, uint64_t n);
uint32_t dn_type_block_size(int32_t type);

/* Reference conversions, plain C. n must be a multiple of the block size.
 * dequantize works for every weight type and Q8_0/Q8_1/Q8_K;
 * quantize implements ggml's quantize_row_*_ref for every weight type and
 * the activation types (Q8_0, Q8_1, Q8_K). Return 0, or -1 for a bad type/n. */
int dn_dequantize_row(int32_t type, const void *src, float *dst, int64_t n);
int dn_quantize_row(int32_t type, const float *src, void *dst, int64_t n);

/* Repacked types (repack.c). dn_x16_base: the stored type an x16 type
 * repacks (-1 if `type` is not an x16 type); dn_x16_of: the x16 type of a
 * stored type (-1 if none). */
int32_t dn_x16_base(int32_t type);
int32_t dn_x16_of(int32_t base);
/* 16 rows of n elements in the base type, rows src_stride bytes apart ->
 * one row group of x16type at dst (16 * dn_type_row_bytes(x16type, n)
 * bytes). Lossless. Returns 0, or -1 for a bad type/n. */
int dn_x16_repack(int32_t x16type, const void *src, size_t src_stride, void *dst, int64_t n);
/* Inverse for one block: block column c (of block_size elements) of row r
 * (0..15) of the group at `group` (rows of n elements), written in the base
 * type's block layout to out. Returns 0, or -1. */
int dn_x16_extract_block(int32_t x16type, const void *group, int64_t n, int r, int64_t c, void *out);
#endif
