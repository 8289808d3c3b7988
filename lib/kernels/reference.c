/* reference.c - the exact oracle (DN_ISA_REFERENCE): activations stay f32,
 * weight rows are dequantized with the scalar reference conversion and the
 * dot product is accumulated in double. Slow; tests and debugging only. */
#include "kernels/kernels_internal.h"

enum { REF_CHUNK = 256 };   /* a multiple of every block size */

static float ref_dot(int32_t type, int64_t n, const void *w, const float *x)
{
    float buf[REF_CHUNK];
    double s = 0.0;
    for (int64_t i = 0; i < n; i += REF_CHUNK) {
        const int64_t m = n - i < REF_CHUNK ? n - i : REF_CHUNK;
        const uint8_t *src = (const uint8_t *)w + dn_type_row_bytes(type, (uint64_t)i);
        if (dn_dequantize_row(type, src, buf, m) != 0) return __builtin_nanf("");
        for (int64_t j = 0; j < m; j++) s += (double)buf[j] * x[i + j];
    }
    return (float)s;
}

#define REF_DOT(T, NAME) \
    static float dn_vec_dot_##NAME##_f32_reference(int64_t n, const void *w, const void *x) \
    { return ref_dot(T, n, w, x); }
REF_DOT(DANU_TYPE_F32, f32)
REF_DOT(DANU_TYPE_F16, f16)
REF_DOT(DANU_TYPE_BF16, bf16)
REF_DOT(DANU_TYPE_Q4_0, q4_0)
REF_DOT(DANU_TYPE_Q4_1, q4_1)
REF_DOT(DANU_TYPE_Q5_0, q5_0)
REF_DOT(DANU_TYPE_Q5_1, q5_1)
REF_DOT(DANU_TYPE_Q8_0, q8_0)
REF_DOT(DANU_TYPE_Q4_K, q4_K)
REF_DOT(DANU_TYPE_Q5_K, q5_K)
REF_DOT(DANU_TYPE_Q6_K, q6_K)

static void dn_act_f32_reference(const float *x, void *out, int64_t n)
{
    (void)dn_quantize_row(DANU_TYPE_F32, x, out, n);
}

/* Elementwise slots are left to scalar (already exact enough). */
const dn_kernels dn_kernels_reference_table = {
    .isa = DN_ISA_REFERENCE,
    .name = "reference",
    .act_type = {
        [DANU_TYPE_F32] = DANU_TYPE_F32, [DANU_TYPE_F16] = DANU_TYPE_F32,
        [DANU_TYPE_BF16] = DANU_TYPE_F32, [DANU_TYPE_Q4_0] = DANU_TYPE_F32,
        [DANU_TYPE_Q4_1] = DANU_TYPE_F32, [DANU_TYPE_Q5_0] = DANU_TYPE_F32,
        [DANU_TYPE_Q5_1] = DANU_TYPE_F32, [DANU_TYPE_Q8_0] = DANU_TYPE_F32,
        [DANU_TYPE_Q4_K] = DANU_TYPE_F32, [DANU_TYPE_Q5_K] = DANU_TYPE_F32,
        [DANU_TYPE_Q6_K] = DANU_TYPE_F32,
    },
    .act_prepare = { [DANU_TYPE_F32] = dn_act_f32_reference },
    .vec_dot = {
        [DANU_TYPE_F32] = dn_vec_dot_f32_f32_reference,
        [DANU_TYPE_F16] = dn_vec_dot_f16_f32_reference,
        [DANU_TYPE_BF16] = dn_vec_dot_bf16_f32_reference,
        [DANU_TYPE_Q4_0] = dn_vec_dot_q4_0_f32_reference,
        [DANU_TYPE_Q4_1] = dn_vec_dot_q4_1_f32_reference,
        [DANU_TYPE_Q5_0] = dn_vec_dot_q5_0_f32_reference,
        [DANU_TYPE_Q5_1] = dn_vec_dot_q5_1_f32_reference,
        [DANU_TYPE_Q8_0] = dn_vec_dot_q8_0_f32_reference,
        [DANU_TYPE_Q4_K] = dn_vec_dot_q4_K_f32_reference,
        [DANU_TYPE_Q5_K] = dn_vec_dot_q5_K_f32_reference,
        [DANU_TYPE_Q6_K] = dn_vec_dot_q6_K_f32_reference,
    },
};
