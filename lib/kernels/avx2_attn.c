/* avx2_attn.c - the attention slots (kernels.h) for AVX2 + FMA + F16C, the
 * 8-lane version of avx512_attn.c: scores transpose 8 keys at a time into
 * tmp so a query row gets 8 scores from one FMA per dimension; values keep
 * 2 query rows x 5 vectors of outputs in registers while each V row is
 * converted once. Every score is a sequential fma over d from 0 and every
 * output element a sequential fma over the keys in order, whatever the
 * tile, so a token alone and in a batch get identical bits. */
#include <immintrin.h>
#include "kernels/kernels_internal.h"
#include "kernels/avx2_internal.h"


/* lanes < left set (left >= 8: all) for maskload/maskstore */
AI __m256i lane_mask(int left)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(left), idx);
}

/* 8 floats of a cache row from element d0, lanes >= left zero (not read) */
AI __m256 load_row(const uint8_t *row, int f16, int d0, int left)
{
    if (f16) {
        const uint16_t *h = (const uint16_t *)(const void *)row + d0;
        if (left >= 8) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)h));
        uint16_t t[8] = { 0 };
        memcpy(t, h, sizeof(uint16_t) * (size_t)left);
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)t));
    }
    const float *f = (const float *)(const void *)row + d0;
    return left >= 8 ? _mm256_loadu_ps(f) : _mm256_maskload_ps(f, lane_mask(left));
}

/* In-register transpose of an 8 x 8 block. */
AI void transpose8(__m256 r[8])
{
    __m256 t[8], u[8];
    UNROLL for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    UNROLL for (int g = 0; g < 2; g++) {
        u[4 * g + 0] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
        u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
    UNROLL for (int e = 0; e < 4; e++) {
        r[e] = _mm256_permute2f128_ps(u[e], u[4 + e], 0x20);
        r[4 + e] = _mm256_permute2f128_ps(u[e], u[4 + e], 0x31);
    }
}

AI void scores_tile(int NQ, int hd, const float *q, size_t qs, const float *kt, float *s, size_t ss, int nj)
{
    __m256 acc[4];
    UNROLL for (int i = 0; i < NQ; i++) acc[i] = _mm256_setzero_ps();
    for (int d = 0; d < hd; d++) {
        const __m256 k = _mm256_load_ps(kt + 8 * d);
        UNROLL for (int i = 0; i < NQ; i++) acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(q[i * qs + d]), k, acc[i]);
    }
    UNROLL for (int i = 0; i < NQ; i++) {
        if (nj >= 8) _mm256_storeu_ps(s + i * ss, acc[i]);
        else _mm256_maskstore_ps(s + i * ss, lane_mask(nj), acc[i]);
    }
}

void dn_att_scores_avx2(int hd, int nq, const float *q, size_t qs, const void *k, size_t ks, int nk, int f16,
                        float *s, size_t ss, float *tmp)
{
    const uint8_t *kb = k;
    for (int j0 = 0; j0 < nk; j0 += 8) {
        const int nj = nk - j0 < 8 ? nk - j0 : 8;
        for (int d0 = 0; d0 < hd; d0 += 8) {
            __m256 r[8];
            UNROLL for (int j = 0; j < 8; j++)
                r[j] = j < nj ? load_row(kb + (size_t)(j0 + j) * ks, f16, d0, hd - d0) : _mm256_setzero_ps();
            transpose8(r);
            const int nd = hd - d0 < 8 ? hd - d0 : 8;
            for (int d = 0; d < nd; d++) _mm256_store_ps(tmp + 8 * (d0 + d), r[d]);
        }
        int i = 0;
        for (; i + 4 <= nq; i += 4) scores_tile(4, hd, q + i * qs, qs, tmp, s + i * ss + j0, ss, nj);
        switch (nq - i) {
        case 3: scores_tile(3, hd, q + i * qs, qs, tmp, s + i * ss + j0, ss, nj); break;
        case 2: scores_tile(2, hd, q + i * qs, qs, tmp, s + i * ss + j0, ss, nj); break;
        case 1: scores_tile(1, hd, q + i * qs, qs, tmp, s + i * ss + j0, ss, nj); break;
        default: break;
        }
    }
}

/* NQ output rows, dimensions d0 .. d0 + 8 NV (the last vector nd_last wide) */
AI void values_tile(int NQ, int NV, const float *p, size_t ps, const uint8_t *v, size_t vs, int nk, int f16,
                    float *out, size_t os, int d0, int nd_last)
{
    __m256 acc[2][5];
    UNROLL for (int i = 0; i < NQ; i++) UNROLL for (int c = 0; c < NV; c++) {
        const float *o = out + i * os + d0 + 8 * c;
        acc[i][c] = c == NV - 1 && nd_last < 8 ? _mm256_maskload_ps(o, lane_mask(nd_last)) : _mm256_loadu_ps(o);
    }
    for (int j = 0; j < nk; j++) {
        const uint8_t *row = v + (size_t)j * vs;
        __m256 x[5];
        UNROLL for (int c = 0; c < NV; c++) x[c] = load_row(row, f16, d0 + 8 * c, c == NV - 1 ? nd_last : 8);
        UNROLL for (int i = 0; i < NQ; i++) {
            const __m256 w = _mm256_set1_ps(p[i * ps + j]);
            UNROLL for (int c = 0; c < NV; c++) acc[i][c] = _mm256_fmadd_ps(w, x[c], acc[i][c]);
        }
    }
    UNROLL for (int i = 0; i < NQ; i++) UNROLL for (int c = 0; c < NV; c++) {
        float *o = out + i * os + d0 + 8 * c;
        if (c == NV - 1 && nd_last < 8) _mm256_maskstore_ps(o, lane_mask(nd_last), acc[i][c]);
        else _mm256_storeu_ps(o, acc[i][c]);
    }
}

#define VT(NQ, NV) values_tile(NQ, NV, p + i * ps, ps, vb, vs, nk, f16, out + i * os, os, d0, last)
AI void values_rows(int NQ, int nv, const float *p, size_t ps, const uint8_t *vb, size_t vs, int nk, int f16,
                    float *out, size_t os, int d0, int last, int i)
{
    switch (nv) {
    case 1: VT(NQ, 1); break;
    case 2: VT(NQ, 2); break;
    case 3: VT(NQ, 3); break;
    case 4: VT(NQ, 4); break;
    default: VT(NQ, 5); break;
    }
}
#undef VT

void dn_att_values_avx2(int hd, int nq, const float *p, size_t ps, const void *v, size_t vs, int nk, int f16,
                        float *out, size_t os)
{
    const uint8_t *vb = v;
    for (int d0 = 0; d0 < hd; d0 += 40) {           /* 5 vectors x 2 rows of accumulators */
        const int nd = hd - d0 < 40 ? hd - d0 : 40, nv = (nd + 7) / 8, last = nd - 8 * (nv - 1);
        int i = 0;
        for (; i + 2 <= nq; i += 2) values_rows(2, nv, p, ps, vb, vs, nk, f16, out, os, d0, last, i);
        if (i < nq) values_rows(1, nv, p, ps, vb, vs, nk, f16, out, os, d0, last, i);
    }
}
