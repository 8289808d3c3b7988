/* repack.c - the row-interleaved ("x16") weight layouts and their lossless
 * conversion from the GGUF block layouts.
 *
 * Why: a matrix-vector product over GGUF blocks reads one row at a time and
 * must sum each row's products horizontally. With 16 rows interleaved four
 * bytes at a time, one 64-byte vector holds 4 weights of each of 16 rows;
 * an int8 dot-product instruction against 4 broadcast activation bytes then
 * yields 16 row sums directly, and each scale is applied once per 16 rows.
 *
 * Layouts, per block column of a 16-row group (column = 32 elements for
 * q4_0/q8_0, 256 for q4_K/q6_K, 2 for bf16; structs dn_block_*x16 in
 * quant.h); "chunk k" is 64 bytes holding bytes 4k..4k+3 of row 0, then
 * of row 1, ... row 15 of the named array:
 *   q4_0x16 (288 B):  d[16] f16 | qs chunks 0..3 (nibbles as in q4_0)
 *   q8_0x16 (544 B):  d[16] f16 | qs chunks 0..7, each byte q + 128 (u8)
 *   q4_Kx16 (2368 B): d[16] f16 | dmin[16] f16 | sc[8][16] u8 | m[8][16] u8 |
 *                     qs chunks 0..31 (sc/m: 6-bit scale/min of sub-block j, row r)
 *   q6_Kx16 (3360 B): d[16] f16 | scales[16][16] i8 | ql chunks 0..31 | qh chunks 0..15
 *   bf16x16 (64 B):   chunk 0 = elements 2c, 2c+1 (one vdpbf16ps pair) of rows
 *                     0..15; a group is the plain sequence of its n/2 chunks
 *                     (bf16x16f: the same bytes, only other kernels)
 * Column c of a group starts at c * 16 * (block bytes per row). */
#include <stddef.h>
#include <string.h>
#include "quant/quant.h"

/* field offsets: OX of an x16 column, OB of a GGUF block */
#define OX(T, f) offsetof(dn_block_##T##x16, f)
#define OB(T, f) offsetof(dn_block_##T, f)

int32_t dn_x16_base(int32_t type)
{
    switch (type) {
    case DN_TYPE_Q4_0_X16: return DANU_TYPE_Q4_0;
    case DN_TYPE_Q8_0_X16: return DANU_TYPE_Q8_0;
    case DN_TYPE_Q4_K_X16: return DANU_TYPE_Q4_K;
    case DN_TYPE_Q6_K_X16: return DANU_TYPE_Q6_K;
    case DN_TYPE_BF16_X16:
    case DN_TYPE_BF16_X16F: return DANU_TYPE_BF16;
    default: return -1;
    }
}

int32_t dn_x16_of(int32_t base)
{
    switch (base) {
    case DANU_TYPE_Q4_0: return DN_TYPE_Q4_0_X16;
    case DANU_TYPE_Q8_0: return DN_TYPE_Q8_0_X16;
    case DANU_TYPE_Q4_K: return DN_TYPE_Q4_K_X16;
    case DANU_TYPE_Q6_K: return DN_TYPE_Q6_K_X16;
    case DANU_TYPE_BF16: return DN_TYPE_BF16_X16;
    default: return -1;
    }
}

/* chunks of `nbytes` bytes of array `a` of 16 rows: interleave / gather */
static void put_chunks(uint8_t *dst, const uint8_t *const rows[16], size_t off, int nbytes, uint8_t xor)
{
    const uint32_t x4 = xor * 0x01010101u;   /* four bytes at a time: the load-time copy is ~3x faster */
    for (int k = 0; k < nbytes / 4; k++)
        for (int r = 0; r < 16; r++) {
            uint32_t v;
            memcpy(&v, rows[r] + off + 4 * k, 4);
            v ^= x4;
            memcpy(dst + 64 * k + 4 * r, &v, 4);
        }
}

static void get_chunks(uint8_t *out, const uint8_t *src, int r, int nbytes, uint8_t xor)
{
    for (int k = 0; k < nbytes / 4; k++)
        for (int b = 0; b < 4; b++) out[4 * k + b] = src[64 * k + 4 * r + b] ^ xor;
}

static void put_u16(uint8_t *dst, const uint8_t *const rows[16], size_t off)
{
    for (int r = 0; r < 16; r++) memcpy(dst + 2 * r, rows[r] + off, 2);
}

int dn_x16_repack(int32_t xt, const void *src, size_t stride, void *dst, int64_t n)
{
    const int32_t bt = dn_x16_base(xt);
    const uint32_t bs = dn_type_block_size(xt);
    if (bt < 0 || !src || !dst || n <= 0 || n % bs) return -1;
    /* base-type bytes of one block column (bf16: 2 elements of 1-element blocks) */
    const size_t bb = (size_t)dn_type_row_bytes(bt, bs), xb = dn_type_get(xt)->type_size;
    if (bt == DANU_TYPE_BF16) {
        /* 4-byte chunks only: row by row, without the per-column setup
         * (a column is just 4 bytes here: the generic loop took seconds) */
        for (int r = 0; r < 16; r++) {
            const uint8_t *s = (const uint8_t *)src + (size_t)r * stride;
            uint8_t *o = (uint8_t *)dst + 4 * (size_t)r;
            for (int64_t k = 0; k < n / 2; k++) memcpy(o + 64 * (size_t)k, s + 4 * (size_t)k, 4);
        }
        return 0;
    }
    for (int64_t c = 0; c < n / bs; c++) {
        const uint8_t *rows[16];
        for (int r = 0; r < 16; r++) rows[r] = (const uint8_t *)src + (size_t)r * stride + (size_t)c * bb;
        uint8_t *o = (uint8_t *)dst + (size_t)c * 16 * xb;
        switch (xt) {
        case DN_TYPE_Q4_0_X16:
            put_u16(o + OX(q4_0, d), rows, OB(q4_0, d));
            put_chunks(o + OX(q4_0, qs), rows, OB(q4_0, qs), DN_QK4_0 / 2, 0);
            break;
        case DN_TYPE_Q8_0_X16:
            put_u16(o + OX(q8_0, d), rows, OB(q8_0, d));
            put_chunks(o + OX(q8_0, qs), rows, OB(q8_0, qs), DN_QK8_0, 0x80);
            break;
        case DN_TYPE_Q4_K_X16: {
            dn_block_q4_Kx16 *x = (dn_block_q4_Kx16 *)o;
            put_u16(o + OX(q4_K, d), rows, OB(q4_K, d));
            put_u16(o + OX(q4_K, dmin), rows, OB(q4_K, dmin));
            for (int r = 0; r < 16; r++) {
                uint8_t sc[8], m[8];
                dn_k_scales_mins(rows[r] + OB(q4_K, scales), sc, m);
                for (int j = 0; j < 8; j++) {
                    x->sc[j][r] = sc[j];
                    x->m[j][r] = m[j];
                }
            }
            put_chunks(o + OX(q4_K, qs), rows, OB(q4_K, qs), DN_QK_K / 2, 0);
            break;
        }
        case DN_TYPE_Q6_K_X16: {
            dn_block_q6_Kx16 *x = (dn_block_q6_Kx16 *)o;
            put_u16(o + OX(q6_K, d), rows, OB(q6_K, d));
            for (int r = 0; r < 16; r++)
                for (int j = 0; j < DN_QK_K / 16; j++) x->scales[j][r] = (int8_t)rows[r][OB(q6_K, scales) + j];
            put_chunks(o + OX(q6_K, ql), rows, OB(q6_K, ql), DN_QK_K / 2, 0);
            put_chunks(o + OX(q6_K, qh), rows, OB(q6_K, qh), DN_QK_K / 4, 0);
            break;
        }
        }
    }
    return 0;
}

int dn_x16_extract_block(int32_t xt, const void *group, int64_t n, int r, int64_t c, void *out)
{
    const int32_t bt = dn_x16_base(xt);
    const uint32_t bs = dn_type_block_size(xt);
    if (bt < 0 || !group || !out || r < 0 || r > 15 || n <= 0 || n % bs || c < 0 || c >= n / bs) return -1;
    const size_t xb = dn_type_get(xt)->type_size;
    const uint8_t *o = (const uint8_t *)group + (size_t)c * 16 * xb;
    uint8_t *b = out;
    switch (xt) {
    case DN_TYPE_Q4_0_X16:
        memcpy(b + OB(q4_0, d), o + OX(q4_0, d) + 2 * r, 2);
        get_chunks(b + OB(q4_0, qs), o + OX(q4_0, qs), r, DN_QK4_0 / 2, 0);
        break;
    case DN_TYPE_Q8_0_X16:
        memcpy(b + OB(q8_0, d), o + OX(q8_0, d) + 2 * r, 2);
        get_chunks(b + OB(q8_0, qs), o + OX(q8_0, qs), r, DN_QK8_0, 0x80);
        break;
    case DN_TYPE_Q4_K_X16: {
        const dn_block_q4_Kx16 *x = (const dn_block_q4_Kx16 *)o;
        uint8_t sc[8], m[8];
        memcpy(b + OB(q4_K, d), o + OX(q4_K, d) + 2 * r, 2);
        memcpy(b + OB(q4_K, dmin), o + OX(q4_K, dmin) + 2 * r, 2);
        for (int j = 0; j < 8; j++) { sc[j] = x->sc[j][r]; m[j] = x->m[j][r]; }
        dn_k_pack_scales(sc, m, b + OB(q4_K, scales));
        get_chunks(b + OB(q4_K, qs), o + OX(q4_K, qs), r, DN_QK_K / 2, 0);
        break;
    }
    case DN_TYPE_Q6_K_X16: {
        const dn_block_q6_Kx16 *x = (const dn_block_q6_Kx16 *)o;
        memcpy(b + OB(q6_K, d), o + OX(q6_K, d) + 2 * r, 2);
        for (int j = 0; j < DN_QK_K / 16; j++) b[OB(q6_K, scales) + j] = (uint8_t)x->scales[j][r];
        get_chunks(b + OB(q6_K, ql), o + OX(q6_K, ql), r, DN_QK_K / 2, 0);
        get_chunks(b + OB(q6_K, qh), o + OX(q6_K, qh), r, DN_QK_K / 4, 0);
        break;
    }
    case DN_TYPE_BF16_X16:
    case DN_TYPE_BF16_X16F:
        get_chunks(b, o, r, 4, 0);
        break;
    }
    return 0;
}
