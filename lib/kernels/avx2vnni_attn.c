/* avx2vnni_attn.c - the attention slots for AVX2 + AVX-VNNI that differ
 * from avx2: Q8 scores and Q8 values through vpdpbusd on ymm
 * (avx2_attn_q8.h), the other types as the avx2 level. Same flags as
 * avx2vnni_x16.c. */
#include <immintrin.h>
#include "kernels/kernels_internal.h"
#include "kernels/avx2_internal.h"

#define DN_ATT_VNNI 1
#include "kernels/avx2_attn_q8.h"

void dn_att_scores_avx2vnni(int hd, int nq, const float *q, size_t qs, const void *k, int lane, int nk, int type,
                            const float *ksc, float *s, size_t ss)
{
    if (type == DN_KV_Q8) att_scores_q8(hd, nq, q, qs, k, lane, nk, ksc, s, ss);
    else dn_att_scores_avx2(hd, nq, q, qs, k, lane, nk, type, ksc, s, ss);
}

void dn_att_q8_values_avx2vnni(int hd, int nq, const uint8_t *w, size_t ws, const void *v, int lane, int nk,
                               int64_t *acc)
{
    att_q8_values(hd, nq, w, ws, v, lane, nk, acc);
}
