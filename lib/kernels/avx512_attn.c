/* avx512_attn.c - attention over a run of cached keys/values for several
 * query rows at once (the heads of one KV group, several tokens of a
 * prompt), AVX-512F. Same flags as avx512.c.
 *
 * Scores: 16 keys are transposed (f16 keys as 16-bit elements) and
 * converted into tmp (dimension-major),
 * so one query gets 16 scores in one vector with one FMA per dimension: no
 * horizontal sums, and each K row is read once for every query of the
 * call instead of once per head and token. Values: each V row is converted
 * once per 4 query rows whose outputs stay in registers.
 * Every score is a sequential fma over d from 0, every output element a
 * sequential fma over the keys in order: the same operations whatever the
 * number of query rows or keys per call, so a token alone and in a batch
 * get identical bits. */
#include <immintrin.h>
#include "kernels/kernels_internal.h"
#include "kernels/avx512_internal.h"

AI __mmask16 mask_of(int left) { return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1); }

/* 16 floats of a cache row from element d0 (f16 or f32), lanes >= left zero */
AI __m512 load_row(const uint8_t *row, int f16, int d0, int left)
{
    const __mmask16 m = mask_of(left);
    return f16 ? _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)(const void *)row + d0))
               : _mm512_maskz_loadu_ps(m, (const float *)(const void *)row + d0);
}

/* In-register transpose of a 16 x 16 block: r[i][j] -> r[j][i]. */
AI void transpose16(__m512 r[16])
{
    __m512 t[16], u[16];
    UNROLL for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* u[4g + e]: element e (+4, +8, +12 per 128-bit lane) of rows 4g..4g+3 */
    UNROLL for (int g = 0; g < 4; g++) {
        const __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 2]);
        const __m512d c = _mm512_castps_pd(t[4 * g + 1]), d = _mm512_castps_pd(t[4 * g + 3]);
        u[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
        u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
        u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
    }
    UNROLL for (int e = 0; e < 4; e++) {
        const __m512 v0 = _mm512_shuffle_f32x4(u[e], u[4 + e], 0x88), v1 = _mm512_shuffle_f32x4(u[e], u[4 + e], 0xDD);
        const __m512 w0 = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0x88), w1 = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0xDD);
        r[e] = _mm512_shuffle_f32x4(v0, w0, 0x88);
        r[8 + e] = _mm512_shuffle_f32x4(v0, w0, 0xDD);
        r[4 + e] = _mm512_shuffle_f32x4(v1, w1, 0x88);
        r[12 + e] = _mm512_shuffle_f32x4(v1, w1, 0xDD);
    }
}

/* The same for 16 rows of 16 halves: transposed as 16-bit elements in
 * 256-bit registers (half the shuffle work of 32-bit zmm), then widened:
 * out[e] = the 16 rows' element e as floats. */
AI void transpose16_f16(__m256i a[16], __m512 out[16])
{
    __m256i b[16], c[16], d[8], e[8];
    UNROLL for (int i = 0; i < 16; i += 2) {   /* 32-bit units: rows i, i+1 at one element */
        b[i] = _mm256_unpacklo_epi16(a[i], a[i + 1]);
        b[i + 1] = _mm256_unpackhi_epi16(a[i], a[i + 1]);
    }
    UNROLL for (int i = 0; i < 16; i += 4) {   /* 64-bit units: rows i..i+3 at one element */
        c[i] = _mm256_unpacklo_epi32(b[i], b[i + 2]);
        c[i + 1] = _mm256_unpackhi_epi32(b[i], b[i + 2]);
        c[i + 2] = _mm256_unpacklo_epi32(b[i + 1], b[i + 3]);
        c[i + 3] = _mm256_unpackhi_epi32(b[i + 1], b[i + 3]);
    }
    UNROLL for (int k = 0; k < 4; k++) {       /* 128-bit lanes: 8 rows at one element (e, e + 8) */
        d[2 * k] = _mm256_unpacklo_epi64(c[k], c[4 + k]);
        d[2 * k + 1] = _mm256_unpackhi_epi64(c[k], c[4 + k]);
        e[2 * k] = _mm256_unpacklo_epi64(c[8 + k], c[12 + k]);
        e[2 * k + 1] = _mm256_unpackhi_epi64(c[8 + k], c[12 + k]);
    }
    UNROLL for (int x = 0; x < 8; x++) {
        out[x] = _mm512_cvtph_ps(_mm256_permute2x128_si256(d[x], e[x], 0x20));
        out[x + 8] = _mm512_cvtph_ps(_mm256_permute2x128_si256(d[x], e[x], 0x31));
    }
}

/* NQ query rows against the 16 keys transposed in kt: s rows get nj scores */
AI void scores_tile(int NQ, int hd, const float *q, size_t qs, const float *kt, float *s, size_t ss, int nj)
{
    __m512 acc[4];
    UNROLL for (int i = 0; i < NQ; i++) acc[i] = _mm512_setzero_ps();
    for (int d = 0; d < hd; d++) {
        const __m512 k = _mm512_load_ps(kt + 16 * d);
        UNROLL for (int i = 0; i < NQ; i++) acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(q[i * qs + d]), k, acc[i]);
    }
    UNROLL for (int i = 0; i < NQ; i++) _mm512_mask_storeu_ps(s + i * ss, mask_of(nj), acc[i]);
}

void dn_att_scores_avx512(int hd, int nq, const float *q, size_t qs, const void *k, size_t ks, int nk, int f16,
                          float *s, size_t ss, float *tmp)
{
    const uint8_t *kb = k;
    for (int j0 = 0; j0 < nk; j0 += 16) {
        const int nj = nk - j0 < 16 ? nk - j0 : 16;
        for (int d0 = 0; d0 < hd; d0 += 16) {
            __m512 r[16];
            if (f16) {
                __m256i h[16];
                const __mmask16 m = mask_of(hd - d0);
                UNROLL for (int j = 0; j < 16; j++)
                    h[j] = j < nj ? _mm256_maskz_loadu_epi16(m, (const uint16_t *)(const void *)(kb + (size_t)(j0 + j) * ks) + d0)
                                  : _mm256_setzero_si256();
                transpose16_f16(h, r);
            } else {
                UNROLL for (int j = 0; j < 16; j++)
                    r[j] = j < nj ? load_row(kb + (size_t)(j0 + j) * ks, 0, d0, hd - d0) : _mm512_setzero_ps();
                transpose16(r);
            }
            const int nd = hd - d0 < 16 ? hd - d0 : 16;
            for (int d = 0; d < nd; d++) _mm512_store_ps(tmp + 16 * (d0 + d), r[d]);
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

/* NQ output rows, dimensions d0 .. d0 + 16 NV (the last vector nd_last wide) */
AI void values_tile(int NQ, int NV, const float *p, size_t ps, const uint8_t *v, size_t vs, int nk, int f16,
                    float *out, size_t os, int d0, int nd_last)
{
    __m512 acc[4][5];
    UNROLL for (int i = 0; i < NQ; i++) UNROLL for (int c = 0; c < NV; c++)
        acc[i][c] = _mm512_maskz_loadu_ps(c == NV - 1 ? mask_of(nd_last) : 0xFFFF, out + i * os + d0 + 16 * c);
    for (int j = 0; j < nk; j++) {
        const uint8_t *row = v + (size_t)j * vs;
        __m512 x[5];
        UNROLL for (int c = 0; c < NV; c++) x[c] = load_row(row, f16, d0 + 16 * c, c == NV - 1 ? nd_last : 16);
        UNROLL for (int i = 0; i < NQ; i++) {
            const __m512 w = _mm512_set1_ps(p[i * ps + j]);
            UNROLL for (int c = 0; c < NV; c++) acc[i][c] = _mm512_fmadd_ps(w, x[c], acc[i][c]);
        }
    }
    UNROLL for (int i = 0; i < NQ; i++) UNROLL for (int c = 0; c < NV; c++)
        _mm512_mask_storeu_ps(out + i * os + d0 + 16 * c, c == NV - 1 ? mask_of(nd_last) : 0xFFFF, acc[i][c]);
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

void dn_att_values_avx512(int hd, int nq, const float *p, size_t ps, const void *v, size_t vs, int nk, int f16,
                          float *out, size_t os)
{
    const uint8_t *vb = v;
    for (int d0 = 0; d0 < hd; d0 += 80) {           /* 5 vectors x 4 rows of accumulators */
        const int nd = hd - d0 < 80 ? hd - d0 : 80, nv = (nd + 15) / 16, last = nd - 16 * (nv - 1);
        int i = 0;
        for (; i + 4 <= nq; i += 4) values_rows(4, nv, p, ps, vb, vs, nk, f16, out, os, d0, last, i);
        switch (nq - i) {
        case 3: values_rows(3, nv, p, ps, vb, vs, nk, f16, out, os, d0, last, i); break;
        case 2: values_rows(2, nv, p, ps, vb, vs, nk, f16, out, os, d0, last, i); break;
        case 1: values_rows(1, nv, p, ps, vb, vs, nk, f16, out, os, d0, last, i); break;
        default: break;
        }
    }
}
