/* types.c - the table of storage types: name, block size, block bytes. */
#include "quant/quant.h"

static const dn_type_info type_table[DN_TYPE_COUNT] = {
    [DANU_TYPE_F32]  = { "f32", 1, 4, 0 },
    [DANU_TYPE_F16]  = { "f16", 1, 2, 0 },
    [DANU_TYPE_BF16] = { "bf16", 1, 2, 0 },
    [DANU_TYPE_Q4_0] = { "q4_0", DN_QK4_0, sizeof(dn_block_q4_0), 1 },
    [DANU_TYPE_Q4_1] = { "q4_1", DN_QK4_1, sizeof(dn_block_q4_1), 1 },
    [DANU_TYPE_Q5_0] = { "q5_0", DN_QK5_0, sizeof(dn_block_q5_0), 1 },
    [DANU_TYPE_Q5_1] = { "q5_1", DN_QK5_1, sizeof(dn_block_q5_1), 1 },
    [DANU_TYPE_Q8_0] = { "q8_0", DN_QK8_0, sizeof(dn_block_q8_0), 1 },
    [DN_TYPE_Q8_1]   = { "q8_1", DN_QK8_1, sizeof(dn_block_q8_1), 1 },
    [DANU_TYPE_Q4_K] = { "q4_K", DN_QK_K, sizeof(dn_block_q4_K), 1 },
    [DANU_TYPE_Q5_K] = { "q5_K", DN_QK_K, sizeof(dn_block_q5_K), 1 },
    [DANU_TYPE_Q6_K] = { "q6_K", DN_QK_K, sizeof(dn_block_q6_K), 1 },
    [DN_TYPE_Q8_K]   = { "q8_K", DN_QK_K, sizeof(dn_block_q8_K), 1 },
    /* repacked row groups (repack.c): bytes are one row's share */
    [DN_TYPE_Q4_0_X16] = { "q4_0x16", DN_QK4_0, sizeof(dn_block_q4_0x16) / 16, 1 },
    [DN_TYPE_Q8_0_X16] = { "q8_0x16", DN_QK8_0, sizeof(dn_block_q8_0x16) / 16, 1 },
    [DN_TYPE_Q4_K_X16] = { "q4_Kx16", DN_QK_K, sizeof(dn_block_q4_Kx16) / 16, 1 },
    [DN_TYPE_Q6_K_X16] = { "q6_Kx16", DN_QK_K, sizeof(dn_block_q6_Kx16) / 16, 1 },
    /* block of 2: one pair per row, the unit of vdpbf16ps (not quantized) */
    [DN_TYPE_BF16_X16] = { "bf16x16", 2, 4, 0 },
    [DN_TYPE_BF16_X16F] = { "bf16x16f", 2, 4, 0 },
};

const dn_type_info *dn_type_get(int32_t type)
{
    if (type < 0 || type >= DN_TYPE_COUNT || !type_table[type].name) return NULL;
    return &type_table[type];
}

int dn_type_is_weight(int32_t type)
{
    return dn_type_get(type) && type != DN_TYPE_Q8_1 && type != DN_TYPE_Q8_K && type < DN_TYPE_Q4_0_X16;
}

uint32_t dn_type_block_size(int32_t type)
{
    const dn_type_info *t = dn_type_get(type);
    return t ? t->block_size : 0;
}

uint64_t dn_type_row_bytes(int32_t type, uint64_t n)
{
    const dn_type_info *t = dn_type_get(type);
    if (!t || n % t->block_size) return 0;
    uint64_t r;
    if (__builtin_mul_overflow(n / t->block_size, (uint64_t)t->type_size, &r)) return 0;
    return r;
}
