/* avx2.c - kernels for AVX2 + FMA + F16C (Haswell and later, Zen 1-3).
 * Compiled only with those flags, called only after dispatch.c has seen
 * them in cpuid and the OS enabling YMM state.
 *
 * Same shape as avx512.c with 16 ymm registers: every dot product is an
 * NR x NT register tile (vec_dot and matvec 1x1, gemm 2x4 or 2x2).
 * 8-bit products go through vpmaddubsw (unsigned weights x signed
 * activations; every sum of two stays inside int16 for these types, see
 * each kernel) and vpmaddwd, which for K-quants also applies the integer
 * sub-block scales. */
#include <immintrin.h>
#include "kernels/kernels_internal.h"
#include "kernels/avx2_internal.h"

enum { MR = 4, MT = 4, GEMM_MAX = 24 };

/* ------------------------------------------------------------------ */
/* helpers                                                             */
/* ------------------------------------------------------------------ */

AI float fp16(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

AI float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AI float hmax8(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

AI int hsum8i(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

/* The fp16 field at byte `off` of up to 8 blocks `stride` bytes apart, as
 * floats (missing blocks read as zero). */
AI __m256 load_scales8(const uint8_t *p, int stride, int off, int nblk)
{
    uint64_t q[2] = { 0, 0 };
    UNROLL for (int i = 0; i < 8; i++) {
        uint16_t h = 0;
        if (i < nblk) memcpy(&h, p + i * stride + off, 2);
        q[i / 4] |= (uint64_t)h << (16 * (i % 4));
    }
    return _mm256_cvtph_ps(_mm_set_epi64x((long long)q[1], (long long)q[0]));
}

/* element j of v broadcast to all lanes */
AI __m256 lane(__m256 v, int j)
{
    return _mm256_permutevar8x32_ps(v, _mm256_set1_epi32(j));
}

/* ------------------------------------------------------------------ */
/* 32-element block types                                              */
/* ------------------------------------------------------------------ */

/* kinds, block sizes and field offsets: kernels_internal.h */
AI int wbias(int kind) { return kind == K_Q4_0 ? 8 : kind == K_Q5_0 ? 16 : 0; }

/* One weight block as 32 unsigned bytes in element order (q8_0: |w|, the
 * sign goes onto the activations). */
AI __m256i unpack_block(int kind, const uint8_t *a)
{
    if (kind == K_Q8_0) return _mm256_loadu_si256((const __m256i *)(a + wqs(kind)));
    const __m128i q = _mm_loadu_si128((const __m128i *)(a + wqs(kind)));
    __m256i z = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
    z = _mm256_and_si256(z, _mm256_set1_epi8(0x0F));
    if (kind == K_Q5_0 || kind == K_Q5_1) {
        /* bit j of qh -> byte j: spread the 4 bytes, select each bit */
        const uint32_t qh = dn_ld_u32(a + wqh(kind));
        __m256i h = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh),
                                        _mm256_set_epi64x(0x0303030303030303ll, 0x0202020202020202ll,
                                                          0x0101010101010101ll, 0));
        const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
        h = _mm256_cmpeq_epi8(_mm256_and_si256(h, bit), bit);
        z = _mm256_or_si256(z, _mm256_and_si256(h, _mm256_set1_epi8(0x10)));
    }
    return z;
}

/* Up to 8 blocks (one group) from block b of each row. Per row and token
 * the block's products: maddubs pairs stay in int16 (q4: 2*15*127,
 * q5: 2*31*127, |q8_0| <= 127 (128): 2*128*127 < 32768). */
AI void group32(int kind, int NR, int NT, int64_t b, int nblk,
                const uint8_t *const *wp, const uint8_t *const *xp, __m256 F[MR][MT])
{
    const int WB = wbytes(kind), XB = xbytes(kind);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 DX[MT], S8[MT], DW[MR], M8[MR];
    UNROLL for (int t = 0; t < NT; t++) {
        DX[t] = load_scales8(xp[t] + b * XB, XB, 0, nblk);
        if (has_min(kind)) S8[t] = load_scales8(xp[t] + b * XB, XB, DN_BLK_M, nblk);
    }
    UNROLL for (int r = 0; r < NR; r++) {
        DW[r] = load_scales8(wp[r] + b * WB, WB, 0, nblk);
        if (has_min(kind)) {
            M8[r] = load_scales8(wp[r] + b * WB, WB, DN_BLK_M, nblk);
            UNROLL for (int t = 0; t < NT; t++) F[r][t] = _mm256_fmadd_ps(M8[r], S8[t], F[r][t]);
        }
    }
    for (int j = 0; j < nblk; j++) {
        __m256i X[MT], CB[MT];
        UNROLL for (int t = 0; t < NT; t++) {
            X[t] = _mm256_loadu_si256((const __m256i *)(xp[t] + (b + j) * XB + xqs(kind)));
            if (wbias(kind)) CB[t] = _mm256_maddubs_epi16(_mm256_set1_epi8((char)wbias(kind)), X[t]);
        }
        UNROLL for (int r = 0; r < NR; r++) {
            const __m256i wq = unpack_block(kind, wp[r] + (b + j) * WB);
            const __m256i aw = kind == K_Q8_0 ? _mm256_sign_epi8(wq, wq) : wq;
            const __m256 dw = lane(DW[r], j);
            UNROLL for (int t = 0; t < NT; t++) {
                __m256i p = _mm256_maddubs_epi16(aw, kind == K_Q8_0 ? _mm256_sign_epi8(X[t], wq) : X[t]);
                if (wbias(kind)) p = _mm256_sub_epi16(p, CB[t]);
                const __m256 s = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));
                F[r][t] = _mm256_fmadd_ps(s, _mm256_mul_ps(dw, lane(DX[t], j)), F[r][t]);
            }
        }
    }
}

AI void tile32(int kind, int NR, int NT, int64_t n, const uint8_t *const *wp,
               const uint8_t *const *xp, float *out)
{
    __m256 F[MR][MT];
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int t = 0; t < NT; t++) F[r][t] = _mm256_setzero_ps();
    const int64_t nb = n / 32;
    int64_t b = 0;
    for (; b + 8 <= nb; b += 8) group32(kind, NR, NT, b, 8, wp, xp, F);
    if (b < nb) group32(kind, NR, NT, b, (int)(nb - b), wp, xp, F);
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int t = 0; t < NT; t++) out[r * MT + t] = hsum8(F[r][t]);
}

/* ------------------------------------------------------------------ */
/* K-quants                                                            */
/* ------------------------------------------------------------------ */

/* Sub-block j (32 elements) of a K-quant super-block as unsigned bytes;
 * its int16 scale vector goes to *scv (q6_K: two scales, 16 elements each). */
AI __m256i k_sub(int kind, const uint8_t *w, int j, const int16_t *sc16)
{
    if (kind == K_Q6_K) {
        const int h = j / 4, k = j % 4;
        const __m256i L = _mm256_loadu_si256((const __m256i *)(w + Q6K_QL + 64 * h + 32 * (k & 1)));
        const __m256i lo = k < 2 ? _mm256_and_si256(L, _mm256_set1_epi8(0x0F))
                                 : _mm256_and_si256(_mm256_srli_epi16(L, 4), _mm256_set1_epi8(0x0F));
        const __m256i H = _mm256_loadu_si256((const __m256i *)(w + Q6K_QH + 32 * h));
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(H, 2 * k), _mm256_set1_epi8(3));
        (void)sc16;
        return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
    }
    const uint8_t *qs = w + kqs(kind) + 32 * (j / 2);
    const __m256i q = _mm256_loadu_si256((const __m256i *)qs);
    __m256i z = (j & 1) ? _mm256_srli_epi16(q, 4) : q;
    z = _mm256_and_si256(z, _mm256_set1_epi8(0x0F));
    if (kind == K_Q5_K) {
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(w + Q5K_QH));
        const __m256i hb = _mm256_and_si256(_mm256_srli_epi16(qh, j), _mm256_set1_epi8(1));
        z = _mm256_or_si256(z, _mm256_slli_epi16(hb, 4));
    }
    return z;
}

/* q4_K/q5_K products: 2*31*127 fits int16; q6_K: 2*63*127. vpmaddwd with
 * the sub-block scales (< 64 / |q6 scale| <= 128) then sums into int32. */
AI void superblock(int kind, int NR, int NT, int64_t i, const uint8_t *const *wp,
                   const uint8_t *const *xp, __m256 F[MR][MT])
{
    const int WB = kbytes(kind);
    __m256i I[MR][MT];
    int16_t scs[MR][16];
    float d[MR], dmin[MR];
    __m256i mins[MR];
    UNROLL for (int r = 0; r < NR; r++) {
        const uint8_t *w = wp[r] + i * WB;
        if (kind == K_Q6_K) {
            d[r] = fp16(w + Q6K_D);
            for (int j = 0; j < 16; j++) scs[r][j] = (int8_t)w[Q6K_SCALES + j];
            mins[r] = _mm256_mullo_epi16(_mm256_loadu_si256((const __m256i *)scs[r]), _mm256_set1_epi16(-32));
        } else {
            d[r] = fp16(w);
            dmin[r] = fp16(w + KQ_DMIN);
            uint64_t sc, mn;
            dn_k_unpack_scales(w + KQ_SCALES, &sc, &mn);
            for (int j = 0; j < 8; j++) scs[r][j] = (int16_t)((sc >> (8 * j)) & 0xFF);
            const __m128i m16 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)mn));
            mins[r] = _mm256_set_m128i(_mm_unpackhi_epi16(m16, m16), _mm_unpacklo_epi16(m16, m16));
        }
        UNROLL for (int t = 0; t < NT; t++) I[r][t] = _mm256_setzero_si256();
    }
    for (int j = 0; j < 8; j++) {
        UNROLL for (int r = 0; r < NR; r++) {
            const uint8_t *w = wp[r] + i * WB;
            const __m256i wq = k_sub(kind, w, j, scs[r]);
            /* q6_K: elements 0..15 and 16..31 of sub-block j have scales 2j, 2j+1 */
            const __m256i scv = kind == K_Q6_K
                ? _mm256_set_m128i(_mm_set1_epi16(scs[r][2 * j + 1]), _mm_set1_epi16(scs[r][2 * j]))
                : _mm256_set1_epi16(scs[r][j]);
            UNROLL for (int t = 0; t < NT; t++) {
                const __m256i x = _mm256_loadu_si256((const __m256i *)(xp[t] + i * Q8K_BYTES + Q8K_QS + 32 * j));
                I[r][t] = _mm256_add_epi32(I[r][t], _mm256_madd_epi16(_mm256_maddubs_epi16(wq, x), scv));
            }
        }
    }
    UNROLL for (int t = 0; t < NT; t++) {
        const uint8_t *x = xp[t] + i * Q8K_BYTES;
        float dx;
        memcpy(&dx, x, 4);
        const __m256i bs = _mm256_loadu_si256((const __m256i *)(x + Q8K_BSUMS));
        UNROLL for (int r = 0; r < NR; r++) {
            const __m256i M = _mm256_madd_epi16(mins[r], bs);
            if (kind == K_Q6_K) {
                /* q - 32: -32 * scale * bsum folded into the integer sum */
                F[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(I[r][t], M)),
                                          _mm256_set1_ps(d[r] * dx), F[r][t]);
            } else {
                F[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(I[r][t]), _mm256_set1_ps(d[r] * dx), F[r][t]);
                F[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(M), _mm256_set1_ps(-dmin[r] * dx), F[r][t]);
            }
        }
    }
}

AI void tileK(int kind, int NR, int NT, int64_t n, const uint8_t *const *wp,
              const uint8_t *const *xp, float *out)
{
    __m256 F[MR][MT];
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int t = 0; t < NT; t++) F[r][t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / DN_QK_K; i++) superblock(kind, NR, NT, i, wp, xp, F);
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int t = 0; t < NT; t++) out[r * MT + t] = hsum8(F[r][t]);
}

/* ------------------------------------------------------------------ */
/* float weights (f32 activations)                                     */
/* ------------------------------------------------------------------ */

AI __m256 load_w8(int kind, const uint8_t *w, int64_t j)
{
    if (kind == K_F32) return _mm256_loadu_ps((const float *)w + j);
    const __m128i h = _mm_loadu_si128((const __m128i *)(w + 2 * j));
    if (kind == K_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* One accumulator per output whatever the tile shape, so a token evaluated
 * alone gets bit-identical results to the same token in a batch. */
AI void tileF(int kind, int NR, int NT, int64_t n, const uint8_t *const *wp,
              const uint8_t *const *xp, float *out)
{
    __m256 F[MR][MT];
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int t = 0; t < NT; t++) F[r][t] = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 X[MT];
        UNROLL for (int t = 0; t < NT; t++) X[t] = _mm256_loadu_ps((const float *)xp[t] + j);
        UNROLL for (int r = 0; r < NR; r++) {
            const __m256 wv = load_w8(kind, wp[r], j);
            UNROLL for (int t = 0; t < NT; t++) F[r][t] = _mm256_fmadd_ps(wv, X[t], F[r][t]);
        }
    }
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int t = 0; t < NT; t++) {
        float s = hsum8(F[r][t]);
        /* ragged tail: a few products, added last */
        for (int64_t k = j; k < n; k++) {
            float wv;
            if (kind == K_F32) memcpy(&wv, wp[r] + 4 * k, 4);
            else {
                uint16_t h;
                memcpy(&h, wp[r] + 2 * k, 2);
                wv = kind == K_F16 ? dn_fp16_to_f32(h) : dn_bf16_to_f32(h);
            }
            s += wv * ((const float *)xp[t])[k];
        }
        out[r * MT + t] = s;
    }
}

/* ------------------------------------------------------------------ */
/* entry points                                                        */
/* ------------------------------------------------------------------ */

#define DEFINE_TYPE(NAME, ATYPE, TILE, KIND, TR, TT, TV) \
    DN_DEFINE_TILED(dn_vec_dot_##NAME##_##ATYPE##_avx2, dn_gemm_##NAME##_##ATYPE##_avx2, TILE, KIND, TR, TT, TV)

DEFINE_TYPE(q4_0, q8_0, tile32, K_Q4_0, 2, 4, 1)
DEFINE_TYPE(q4_1, q8_1, tile32, K_Q4_1, 2, 4, 1)
DEFINE_TYPE(q5_0, q8_0, tile32, K_Q5_0, 2, 4, 1)
DEFINE_TYPE(q5_1, q8_1, tile32, K_Q5_1, 2, 4, 1)
DEFINE_TYPE(q8_0, q8_0, tile32, K_Q8_0, 2, 4, 1)
DEFINE_TYPE(q4_K, q8_K, tileK, K_Q4_K, 2, 2, 1)
DEFINE_TYPE(q5_K, q8_K, tileK, K_Q5_K, 2, 2, 1)
DEFINE_TYPE(q6_K, q8_K, tileK, K_Q6_K, 2, 2, 1)
DEFINE_TYPE(f32, f32, tileF, K_F32, 3, 4, 1)
DEFINE_TYPE(f16, f32, tileF, K_F16, 3, 4, 1)
DEFINE_TYPE(bf16, f32, tileF, K_BF16, 3, 4, 1)

/* ------------------------------------------------------------------ */
/* activation quantizers (byte-identical to quant.c's reference)     */
/* ------------------------------------------------------------------ */

/* roundf: half away from zero, exactly (|v| - trunc|v| is exact). */
AI __m256i round_away(__m256 v)
{
    const __m256 sign = _mm256_and_ps(v, _mm256_set1_ps(-0.0f));
    const __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
    __m256 t = _mm256_round_ps(a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 up = _mm256_cmp_ps(_mm256_sub_ps(a, t), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    t = _mm256_add_ps(t, _mm256_and_ps(up, _mm256_set1_ps(1.0f)));
    return _mm256_cvttps_epi32(_mm256_or_ps(t, sign));
}

/* 32 int32 (four registers, in order) to 32 int8 */
AI __m256i pack32(__m256i a, __m256i b, __m256i c, __m256i d)
{
    const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    return _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

AI float q8_block32(const float *x, int8_t *qs, uint16_t *dh, int *sum)
{
    __m256 v[4], m = _mm256_setzero_ps();
    for (int i = 0; i < 4; i++) {
        v[i] = _mm256_loadu_ps(x + 8 * i);
        m = _mm256_max_ps(m, _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v[i]));
    }
    const float amax = hmax8(m);
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    __m256i q[4];
    for (int i = 0; i < 4; i++) q[i] = round_away(_mm256_mul_ps(v[i], _mm256_set1_ps(id)));
    _mm256_storeu_si256((__m256i *)qs, pack32(q[0], q[1], q[2], q[3]));
    *dh = dn_f32_to_fp16(d);
    if (sum) *sum = hsum8i(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
    return d;
}

/* q8_0 blocks, then the extras of the x16 kernels (avx2_internal.h): the
 * per-block q4_0 bias sum and d as f32, once per token. */
static void dn_act_q8_0_avx2(const float *x, void *out, int64_t n)
{
    dn_block_q8_0 *y = out;
    const int64_t nb = n / DN_QK8_0;
    uint8_t *e = (uint8_t *)out + dn_a2_extras_at(nb);
    memset(e, 0, (size_t)(nb + 7) / 8 * DN_A2_XG);
    for (int64_t b = 0; b < nb; b++) {
        int sum;
        q8_block32(x + 32 * b, y[b].qs, &y[b].d, &sum);
        uint8_t *eb = e + dn_a2_extras_block(b);
        const int32_t ns8 = -8 * sum;
        const float dx = _cvtsh_ss(y[b].d);
        memcpy(eb + DN_A2_NS8, &ns8, 4);
        memcpy(eb + DN_A2_DX, &dx, 4);
    }
}

static void dn_act_q8_1_avx2(const float *x, void *out, int64_t n)
{
    dn_block_q8_1 *y = out;
    for (int64_t b = 0; b < n / 32; b++) {
        int sum;
        const float d = q8_block32(x + 32 * b, y[b].qs, &y[b].d, &sum);
        y[b].s = dn_f32_to_fp16((float)sum * d);
    }
}

static void dn_act_q8_K_avx2(const float *x, void *out, int64_t n)
{
    dn_block_q8_K *y = out;
    for (int64_t b = 0; b < n / DN_QK_K; b++, x += DN_QK_K) {
        /* the first element of largest magnitude gives the sign (as quant.c) */
        float amax = 0.0f, max = 0.0f;
        __m256 m = _mm256_setzero_ps();
        for (int j = 0; j < DN_QK_K; j += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_loadu_ps(x + j)));
        amax = hmax8(m);
        if (amax == 0.0f) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        for (int j = 0; j < DN_QK_K; j++)
            if (fabsf(x[j]) == amax) { max = x[j]; break; }
        const float iscale = -127.0f / max;
        const __m256 vs = _mm256_set1_ps(iscale);
        for (int g = 0; g < DN_QK_K / 32; g++) {
            __m256i q[4];
            for (int i = 0; i < 4; i++) {
                q[i] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 32 * g + 8 * i), vs));
                q[i] = _mm256_min_epi32(q[i], _mm256_set1_epi32(127));
            }
            _mm256_storeu_si256((__m256i *)(y[b].qs + 32 * g), pack32(q[0], q[1], q[2], q[3]));
            y[b].bsums[2 * g] = (int16_t)hsum8i(_mm256_add_epi32(q[0], q[1]));
            y[b].bsums[2 * g + 1] = (int16_t)hsum8i(_mm256_add_epi32(q[2], q[3]));
        }
        y[b].d = 1.0f / iscale;
    }
}

/* ------------------------------------------------------------------ */
/* elementwise                                                         */
/* ------------------------------------------------------------------ */

/* 0/-1 lanes for the first `left` (clamped to 8) elements */
AI __m256i tail_mask(int64_t left)
{
    const int k = left >= 8 ? 8 : (int)left;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static void dn_rmsnorm_avx2(float *out, const float *x, const float *w, int64_t n, float eps)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
        s0 = _mm256_fmadd_ps(a, a, s0);
        s1 = _mm256_fmadd_ps(b, b, s1);
    }
    for (; i < n; i += 8) {
        const __m256 a = _mm256_maskload_ps(x + i, tail_mask(n - i));
        s0 = _mm256_fmadd_ps(a, a, s0);
    }
    const double ss = hsum8(_mm256_add_ps(s0, s1));
    const __m256 vs = _mm256_set1_ps((float)(1.0 / sqrt(ss / (double)n + (double)eps)));
    for (i = 0; i < n; i += 8) {
        const __m256i m = tail_mask(n - i);
        _mm256_maskstore_ps(out + i, m, _mm256_mul_ps(_mm256_mul_ps(_mm256_maskload_ps(x + i, m), vs),
                                                      _mm256_maskload_ps(w + i, m)));
    }
}

static void dn_silu_mul_avx2(float *gate, const float *up, int64_t n)
{
    for (int64_t i = 0; i < n; i += 8) {
        const __m256i m = tail_mask(n - i);
        const __m256 g = _mm256_maskload_ps(gate + i, m);
        const __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), g));
        const __m256 s = _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
        _mm256_maskstore_ps(gate + i, m, _mm256_mul_ps(s, _mm256_maskload_ps(up + i, m)));
    }
}

static void dn_add_avx2(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i += 8) {
        const __m256i m = tail_mask(n - i);
        _mm256_maskstore_ps(y + i, m, _mm256_add_ps(_mm256_maskload_ps(y + i, m), _mm256_maskload_ps(x + i, m)));
    }
}

/* 8 halves, zero-filled past n (no 16-bit masked load in AVX2) */
AI __m256 load_h8(const uint16_t *p, int64_t left)
{
    if (left >= 8) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    uint16_t tmp[8] = { 0 };
    memcpy(tmp, p, (size_t)left * 2);
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)tmp));
}

/* The largest element, two chains; the tail's masked lanes hold -inf.
 * NaN is tracked apart (maxps returns its second operand when either is
 * NaN). */
static float dn_max_avx2(const float *x, int64_t n)
{
    __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0, nan = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(a, b, _CMP_UNORD_Q));
        m0 = _mm256_max_ps(m0, a);
        m1 = _mm256_max_ps(m1, b);
    }
    for (; i < n; i += 8) {
        const __m256i k = tail_mask(n - i);
        const __m256 v = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), _mm256_maskload_ps(x + i, k), _mm256_castsi256_ps(k));
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        m0 = _mm256_max_ps(m0, v);
    }
    return _mm256_movemask_ps(nan) ? NAN : hmax8(_mm256_max_ps(m0, m1));
}

/* Masked loads and stores only on the last n % 8 (AMD's vmaskmovps store
 * is slow): the same lanes add the same values, so the same bits. */
static void dn_softmax_avx2(float *x, int64_t n)
{
    if (n <= 0) return;
    const __m256 vmax = _mm256_set1_ps(dn_max_avx2(x, n));
    const int64_t body = n & ~(int64_t)7;
    __m256 sum = _mm256_setzero_ps();
    for (int64_t i = 0; i < body; i += 8) {
        const __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmax));
        sum = _mm256_add_ps(sum, e);
        _mm256_storeu_ps(x + i, e);
    }
    const __m256i m = tail_mask(n - body);
    if (body < n) {
        const __m256 e = _mm256_and_ps(exp256(_mm256_sub_ps(_mm256_maskload_ps(x + body, m), vmax)), _mm256_castsi256_ps(m));
        sum = _mm256_add_ps(sum, e);
        _mm256_maskstore_ps(x + body, m, e);
    }
    const __m256 inv = _mm256_set1_ps((float)(1.0 / (double)hsum8(sum)));
    for (int64_t i = 0; i < body; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    if (body < n) _mm256_maskstore_ps(x + body, m, _mm256_mul_ps(_mm256_maskload_ps(x + body, m), inv));
}

const dn_kernels dn_kernels_avx2_table = {
    .isa = DN_ISA_AVX2,
    .name = "avx2",
    .act_type = { DN_WEIGHT_TYPES(DN_ACT_ENTRY, f32) DN_X16_ACT_ENTRIES },
    .act_prepare = {
        [DANU_TYPE_Q8_0] = dn_act_q8_0_avx2, [DN_TYPE_Q8_1] = dn_act_q8_1_avx2,
        [DN_TYPE_Q8_K] = dn_act_q8_K_avx2,
    },
#define VEC_DOT(T, W, A) [T] = dn_vec_dot_##W##_##A##_avx2,
#define GEMM(T, W, A) [T] = dn_gemm_##W##_##A##_avx2,
    .vec_dot = { DN_WEIGHT_TYPES(VEC_DOT, f32) },
    .gemm = {
        DN_WEIGHT_TYPES(GEMM, f32)
        [DN_TYPE_Q4_0_X16] = dn_gemm_q4_0x16_q8_0_avx2, [DN_TYPE_Q8_0_X16] = dn_gemm_q8_0x16_q8_0_avx2,
        [DN_TYPE_Q4_K_X16] = dn_gemm_q4_Kx16_q8_K_avx2, [DN_TYPE_Q6_K_X16] = dn_gemm_q6_Kx16_q8_K_avx2,
    },
#undef VEC_DOT
#undef GEMM
    .gemm_nr = GEMM_MAX, .gemm_nt = GEMM_MAX,
    .act_extra = { [DANU_TYPE_Q8_0] = DN_A2_XG },
    /* x16 measured faster (kernels_bench --shapes, Zen 5 forced to AVX2):
     * 64 tokens q4_0 3.6x, q8_0 1.9x, q4_K 1.9x, q6_K 3x; one token from
     * DRAM q4_0 2x, q4_K 1.2x, q8_0 and q6_K at the bandwidth either way */
    .repack = { [DANU_TYPE_Q4_0] = DN_TYPE_Q4_0_X16, [DANU_TYPE_Q8_0] = DN_TYPE_Q8_0_X16,
                [DANU_TYPE_Q4_K] = DN_TYPE_Q4_K_X16, [DANU_TYPE_Q6_K] = DN_TYPE_Q6_K_X16 },
    .rmsnorm = dn_rmsnorm_avx2, .silu_mul = dn_silu_mul_avx2, .add = dn_add_avx2,
    .softmax = dn_softmax_avx2, .max = dn_max_avx2,
    .att_scores = dn_att_scores_avx2, .att_values = dn_att_values_avx2,
    .att_q8_weights = dn_att_q8_weights_avx2,
    .att_q8_values = dn_att_q8_values_avx2,
    .kv_quantize = dn_kv_quantize_avx2,
};

DN_LINES_TABLE(dn_kernels_avx2_lines_table, DN_ISA_AVX2, "avx2", dn_gemm_q4_0x16_q8_0_avx2_lines, dn_gemm_q8_0x16_q8_0_avx2_lines,
               dn_gemm_q4_Kx16_q8_K_avx2_lines, dn_gemm_q6_Kx16_q8_K_avx2_lines);
