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

/* every weight type against f32 activations */
#define REF_DOT(T, W, A) \
    static float dn_vec_dot_##W##_f32_reference(int64_t n, const void *w, const void *x) \
    { return ref_dot(T, n, w, x); }
DN_WEIGHT_TYPES(REF_DOT, f32)
#undef REF_DOT
#define ACT_F32(T, W, A) [T] = DANU_TYPE_F32,
#define VEC_DOT(T, W, A) [T] = dn_vec_dot_##W##_f32_reference,

static void dn_act_f32_reference(const float *x, void *out, int64_t n)
{
    (void)dn_quantize_row(DANU_TYPE_F32, x, out, n);
}

/* Elementwise slots are left to scalar (already exact enough). */
const dn_kernels dn_kernels_reference_table = {
    .isa = DN_ISA_REFERENCE,
    .name = "reference",
    .act_type = { DN_WEIGHT_TYPES(ACT_F32, f32) },
    .act_prepare = { [DANU_TYPE_F32] = dn_act_f32_reference },
    .vec_dot = { DN_WEIGHT_TYPES(VEC_DOT, f32) },
};
