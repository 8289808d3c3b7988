/* kernels_internal.h - what the ISA files share with dispatch.c: their
 * tables and a few static inline helpers for the block formats. Only
 * declarations and static inline here (each ISA file has its own flags). */
#ifndef DN_KERNELS_INTERNAL_H
#define DN_KERNELS_INTERNAL_H
#include <math.h>
#include <stddef.h>
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
/* only the slots that differ from avx2 (dispatch.c lays them over it) */
extern const dn_kernels dn_kernels_avx2vnni_table;
/* only the x16 gemms of DN_FETCH_LINES (dispatch.c lays them over their
 * level's table where the CPU wants them, dn_kernels_with_fetch) */
extern const dn_kernels dn_kernels_avx2_lines_table;
extern const dn_kernels dn_kernels_avx2vnni_lines_table;
extern const dn_kernels dn_kernels_avx512_lines_table;
extern const dn_kernels dn_kernels_neon_table;
extern const dn_kernels dn_kernels_neon_dot_table;
/* only the x16 slots (dispatch.c lays them over neon_dot) */
extern const dn_kernels dn_kernels_neon_i8mm_table;

static inline uint32_t dn_ld_u32(const void *p) { uint32_t v; memcpy(&v, p, 4); return v; }

/* The address n bytes past p, for a prefetch only: formed as an integer
 * (GCC and Clang map it back to the address), since p + n can point past
 * the end of the weights, which is undefined as pointer arithmetic. The
 * prefetch instruction never faults. */
#define DN_FETCH_ADDR(p, n) ((const void *)((uintptr_t)(p) + (uintptr_t)(n)))

/* A weight stream at p, advancing step (< 4096) bytes a call: when p
 * enters a 4 KB page, fetch p + 4096, a line at the start of the next.
 * The hardware prefetcher stops at each 4 KB page and starts again only
 * after misses in the next one; one fetch a page ahead keeps it going. On one
 * Zen 5 core, cold weights: the one-token q4_0x16 kernel 0.85 -> 1.12x
 * the rate of a plain read loop (which itself reads 1.21x faster with the
 * same fetch), 2026-12-06. */
#define DN_PAGE_AHEAD(p, step)                                                                          \
    do {                                                                                                \
        if (((uintptr_t)(p) & 4095) < (uintptr_t)(step)) __builtin_prefetch(DN_FETCH_ADDR(p, 4096));    \
    } while (0)

/* A one-token weight stream of blocks of cb bytes at p, by the table's
 * fetch (kernels.h). DN_FETCH_PAGE: DN_PAGE_AHEAD, best on Zen 5 (above).
 * DN_FETCH_LINES: every line DN_LINES_AHEAD bytes on, into L2 (the T1
 * hint). On an Intel core the hardware prefetcher alone keeps too few
 * lines in flight once the kernel computes between its loads:
 *  - Xeon family 6 model 207, 2026-12-07: the AVX-512 q4_0x16 one-token
 *    kernel streamed 9.2-10.9 GB/s from DRAM with the page fetch and
 *    12-13.7 with lines 4 KB on (into L1; T1 measured alike there),
 *    against 15 for a plain read loop (which no fetch changes there);
 *  - Xeon family 6 model 167, the same day: into L1 the lines helped the
 *    AVX-512 kernel (8.9 GB/s with the page fetch, 10.3-10.4) but held
 *    the AVX2-width ones below the page fetch (avx2vnni q4_0x16 8.9-9.4,
 *    8.0-8.2); into L2 11.5-11.7 and 10.7-10.8, and Q4_0 generation
 *    1.03-1.09x (avx512) and 1.23-1.28x (avx2vnni) faster at one thread
 *    than into L1 (a likely reason, not measured: a fetch into L1 holds
 *    one of the core's few L1 miss buffers until its line arrives). */
enum { DN_LINES_AHEAD = 4096 };
#define DN_STREAM_AHEAD(fetch, p, cb)                                                                   \
    do {                                                                                                \
        if ((fetch) == DN_FETCH_LINES)                                                                  \
            for (int l_ = 0; l_ < (int)(cb); l_ += 64)                                                  \
                __builtin_prefetch(DN_FETCH_ADDR(p, DN_LINES_AHEAD + l_), 0, 2);                        \
        else                                                                                            \
            DN_PAGE_AHEAD(p, cb);                                                                       \
    } while (0)

/* The q4_0x16 and q8_0x16 entry points of an ISA file with kinds X4, X8
 * and gemm_x16(kind, fetch, n, w, ws, nr, x, xs, nt, y, ldy): the page
 * ones (its table's) and the lines ones (its lines table's, dispatch.c),
 * where one token fetches lines ahead (nt = 1 constant: only the
 * one-token tile is compiled in) and two or more call the page one. */
#define DN_X16_GEMM_PAIR(NAME, KIND)                                                                  \
    DN_GEMM_DECL(NAME) { gemm_x16(KIND, DN_FETCH_PAGE, n, w, w_stride, nr, x, x_stride, nt, y, ldy); } \
    DN_GEMM_DECL(NAME##_lines)                                                                        \
    {                                                                                                 \
        if (nt > 1) NAME(n, w, w_stride, nr, x, x_stride, nt, y, ldy);                               \
        else gemm_x16(KIND, DN_FETCH_LINES, n, w, w_stride, nr, x, x_stride, 1, y, ldy);             \
    }
#define DN_X16_GEMMS(ISA)                                 \
    DN_X16_GEMM_PAIR(dn_gemm_q4_0x16_q8_0_##ISA, X4)      \
    DN_X16_GEMM_PAIR(dn_gemm_q8_0x16_q8_0_##ISA, X8)

/* A level's DN_FETCH_LINES table: only its x16 gemms whose one token
 * fetches lines ahead into L2 (and, at avx2 and avx2vnni, the prompt
 * tiles tuned on Intel: avx2_internal.h, avx2vnni_x16.c); dispatch.c lays
 * them over the level's table on Intel, dn_kernels_with_fetch. */
#define DN_LINES_TABLE(VAR, ISA, NAME, Q4, Q8, K4, K6)                                              \
    const dn_kernels VAR = {                                                                        \
        .isa = ISA, .name = NAME, .fetch = DN_FETCH_LINES,                                          \
        .gemm = { [DN_TYPE_Q4_0_X16] = Q4, [DN_TYPE_Q8_0_X16] = Q8,                                \
                  [DN_TYPE_Q4_K_X16] = K4, [DN_TYPE_Q6_K_X16] = K6 },                              \
    }

/* One token's stream of K-quant x16 super-blocks (q4_Kx16, q6_Kx16: 2.3
 * and 3.3 KB, whose lines the kernels read out of address order): fetch
 * every line of the block DN_KQ_AHEAD on, block i of the stream at base.
 * AVX-512, one core, 1 GiB cold, against a plain read loop: q4_K 0.52-0.57x
 * -> 0.90x, q6_K 0.60x -> 0.87-0.90x (those had touched each block in
 * order before use; 1 block ahead: 0.79-0.87x, 3: 0.80-0.90x), 2026-12-06
 * (Zen 5, into L1). With the table's fetch DN_FETCH_LINES (Intel) into L2,
 * as the lines of DN_STREAM_AHEAD: on family 6 model 167 (kernels_bench,
 * one token from DRAM, 2026-12-07) q4_Kx16 7.5-7.8 -> 10.7-11.1 GB/s at
 * avx2, 11.4 -> 12.3-12.5 at avx512, q6_Kx16 8.3-8.9 -> 9.1-9.4 and 11.2
 * -> 11.2-11.6 (3 or 4 blocks ahead into L2: alike). */
enum { DN_KQ_AHEAD = 2 };
#define DN_FETCH_BLOCK_AHEAD(fetch, base, i, cb)                                                         \
    do {                                                                                                \
        const size_t b_ = (size_t)((i) + DN_KQ_AHEAD) * (size_t)(cb);                                   \
        for (int o_ = 0; o_ < (int)(cb); o_ += 64) {                                                    \
            if ((fetch) == DN_FETCH_LINES) __builtin_prefetch(DN_FETCH_ADDR(base, b_ + o_), 0, 2);      \
            else __builtin_prefetch(DN_FETCH_ADDR(base, b_ + o_));                                      \
        }                                                                                               \
    } while (0)

/* The AVX2 levels' attention fetches (K tiles ahead, the next chunk or
 * rows of V) go into L2 (the T1 hint), as DN_STREAM_AHEAD's lines do: a
 * fetch into L1 holds one of the core's few L1 miss buffers until its
 * line comes. One token's attention after 4096 positions, 24 layers x 8
 * heads, cache in DRAM, one core of a Xeon family 6 model 167
 * (kernels_bench --attention, 2026-12-07, 3-4 alternating runs each):
 * Q8 scores 6.7-7.6 -> 5.8-6.2 ms, f16 values 14.2-18.0 -> 12.8-14.9.
 * AVX-512 keeps L1 (avx512_attn.c says why); NEON too, not measured on
 * Arm hardware. */
#define DN_ATT_FETCH(p) __builtin_prefetch((p), 0, 2)

/* f16 K tiles the score kernels fetch ahead of the one they work on (a
 * line per two dimensions): 6 x 2560 bytes for Danube, the distance
 * avx512_attn.c measured best. The AVX2 levels fetched none before: f16
 * scores of the token above 18.5-20.2 -> 9.7-12.5 ms (2026-12-07). */
enum { DN_ATT_PF_F16_TILES = 6 };

/* The Q8 values kernels read a chunk of V several times over (one sweep
 * per block of dimensions and rows, the chunk in L1 after the first).
 * Fetching the next chunk only from the first sweep left the bus idle in
 * the others: per step (a group of gb bytes, in any sweep) this stream
 * fetches gb / sweeps bytes of the next chunk, so the chunk's reads are
 * spread evenly over its time. */
typedef struct dn_pf_stream {
    const char *base;      /* the first byte the stream may fetch */
    size_t at, len;        /* offset of the next line to fetch, bytes there are */
    size_t credit, cost;   /* bytes earned, bytes a line costs (64 x sweeps) */
} dn_pf_stream;

/* The stream over a run of `groups` groups of gb bytes from v0, read in
 * chunks of `chunk` groups: it starts one chunk ahead (measured best in
 * avx512_attn.c) and fetches nothing past the run. */
static inline dn_pf_stream dn_pf_stream_at(const void *v0, int groups, int chunk, size_t gb, int sweeps)
{
    const size_t start = (size_t)(groups < chunk ? groups : chunk) * gb, end = (size_t)groups * gb;
    dn_pf_stream s = {(const char *)v0 + start, 0, end - start, 0, 64 * (size_t)(sweeps > 0 ? sweeps : 1)};
    return s;
}

/* offsets, not pointers: the stream runs past the end (no fetches there);
 * into_l2: DN_ATT_FETCH (the AVX2 levels), else into L1 */
static inline void dn_pf_step(dn_pf_stream *s, size_t gb, int into_l2)
{
    for (s->credit += gb; s->credit >= s->cost; s->credit -= s->cost, s->at += 64)
        if (s->at < s->len) {
            if (into_l2) DN_ATT_FETCH(s->base + s->at);
            else __builtin_prefetch(s->base + s->at);
        }
}

/* Up to 16 query rows (an attention work item) for the Q8 score kernels (kernels.h att_scores):
 * codes hd4 = hd rounded up to 4 apart, zero padded (the tile's padding
 * bytes then add nothing), their scales, and bias = 128 * the sum of the
 * codes, which the +128 of the stored K bytes adds to an unsigned x signed
 * dot product (vpdpbusd) and the kernels start their sums from minus. */
enum { DN_ATT_QROWS = 16 };
typedef struct dn_att_q8 {
    int8_t q[DN_ATT_QROWS][1024];   /* head_dim <= 1024 (config.c) */
    float sc[DN_ATT_QROWS];
    int32_t bias[DN_ATT_QROWS];
    int hd4;
} dn_att_q8;

static inline void dn_att_q8_rows(dn_att_q8 *r, int hd, int n, const float *q, size_t qs,
                                  float (*quant)(const float *, int, int8_t *))
{
    r->hd4 = (hd + 3) & ~3;
    for (int i = 0; i < n; i++) {
        r->sc[i] = quant(q + (size_t)i * qs, hd, r->q[i]);
        int32_t sum = 0;
        for (int d = 0; d < hd; d++) sum += r->q[i][d];
        for (int d = hd; d < r->hd4; d++) r->q[i][d] = 0;
        r->bias[i] = 128 * sum;
    }
}

/* Q8 K tiles the score kernels fetch ahead of the one they work on:
 * about 20 KB for Danube, past what the hardware prefetcher covers when
 * one core streams a head's keys from DRAM (measured in avx512_attn.c and
 * avx2_attn_q8.h). */
enum { DN_ATT_PF_Q8_TILES = 16 };

/* The Q8 score kernels' outer loop: groups of up to 16 rows quantized
 * once, then a tile at a time (its lines in address order, which the
 * hardware prefetcher follows) for the group's rows 4 at a time, so a
 * tile is loaded once per 4 rows. TILE(NQ, r, i, t, s) is the ISA's
 * kernel for rows i..i+NQ-1 of r against tile t, scores to row pointer s;
 * QUANT the ISA's dn_kv_quantize (the same bits). */
#define DN_ATT_Q8_SCORES(TILE, QUANT, hd, nq, q, qs, lane, nk, s, ss)                                          \
    do {                                                                                                \
        const int tiles_ = ((lane) + (nk) + 15) / 16;                                                   \
        dn_att_q8 r_;                                                                                   \
        for (int g_ = 0; g_ < (nq); g_ += DN_ATT_QROWS) {                                               \
            const int m_ = (nq) - g_ < DN_ATT_QROWS ? (nq) - g_ : DN_ATT_QROWS;                         \
            dn_att_q8_rows(&r_, (hd), m_, (q) + (size_t)g_ * (qs), (qs), QUANT);                        \
            for (int t_ = 0; t_ < tiles_; t_++)                                                         \
                for (int i_ = 0; i_ < m_; i_ += 4) {                                                    \
                    float *s_ = (s) + (size_t)(g_ + i_) * (ss);                                         \
                    switch (m_ - i_) {                                                                  \
                    case 1: TILE(1, &r_, i_, t_, s_); break;                                            \
                    case 2: TILE(2, &r_, i_, t_, s_); break;                                            \
                    case 3: TILE(3, &r_, i_, t_, s_); break;                                            \
                    default: TILE(4, &r_, i_, t_, s_); break;                                           \
                    }                                                                                   \
                }                                                                                       \
        }                                                                                               \
    } while (0)

/* ------------------------------------------------------------------ */
/* Block geometry for the ISA tile kernels, which walk blocks as bytes  */
/* (rows at any offset, several block types through one tile body):    */
/* every size and field offset comes from the structs of quant.h.      */
/* ------------------------------------------------------------------ */

/* 32-element weight types (KIND of tile32) and their activation partner:
 * q8_1 for the types with a minimum, q8_0 for the others. */
enum { K_Q4_0, K_Q4_1, K_Q5_0, K_Q5_1, K_Q8_0 };
AI int wbytes(int kind)
{
    return kind == K_Q4_0 ? (int)sizeof(dn_block_q4_0) : kind == K_Q4_1 ? (int)sizeof(dn_block_q4_1)
         : kind == K_Q5_0 ? (int)sizeof(dn_block_q5_0) : kind == K_Q5_1 ? (int)sizeof(dn_block_q5_1)
         : (int)sizeof(dn_block_q8_0);
}
AI int has_min(int kind) { return kind == K_Q4_1 || kind == K_Q5_1; }
AI int xbytes(int kind) { return has_min(kind) ? (int)sizeof(dn_block_q8_1) : (int)sizeof(dn_block_q8_0); }
/* qs of a weight block; qh of the q5 kinds; qs of the activation block */
AI int wqs(int kind)
{
    return kind == K_Q4_0 ? (int)offsetof(dn_block_q4_0, qs) : kind == K_Q4_1 ? (int)offsetof(dn_block_q4_1, qs)
         : kind == K_Q5_0 ? (int)offsetof(dn_block_q5_0, qs) : kind == K_Q5_1 ? (int)offsetof(dn_block_q5_1, qs)
         : (int)offsetof(dn_block_q8_0, qs);
}
AI int wqh(int kind) { return kind == K_Q5_0 ? (int)offsetof(dn_block_q5_0, qh) : (int)offsetof(dn_block_q5_1, qh); }
AI int xqs(int kind) { return has_min(kind) ? (int)offsetof(dn_block_q8_1, qs) : (int)offsetof(dn_block_q8_0, qs); }
/* The kernels read the fp16 d of all these blocks at byte 0 and the second
 * fp16 field (m of q4_1/q5_1, s of q8_1) at byte 2 (DN_BLK_M); qs ends
 * every block. */
enum { DN_BLK_M = offsetof(dn_block_q4_1, m) };
_Static_assert(offsetof(dn_block_q4_0, d) == 0 && offsetof(dn_block_q8_0, d) == 0 &&
               offsetof(dn_block_q5_0, d) == 0 && offsetof(dn_block_q8_1, d) == 0, "d first");
_Static_assert(offsetof(dn_block_q5_1, m) == DN_BLK_M && offsetof(dn_block_q8_1, s) == DN_BLK_M, "m, s second");
_Static_assert(offsetof(dn_block_q8_0, qs) + DN_QK8_0 == sizeof(dn_block_q8_0) &&
               offsetof(dn_block_q8_1, qs) + DN_QK8_1 == sizeof(dn_block_q8_1), "qs last");

/* K-quant super-blocks (KIND of tileK) against q8_K. */
enum { K_Q4_K, K_Q5_K, K_Q6_K };
AI int kbytes(int kind)
{
    return kind == K_Q4_K ? (int)sizeof(dn_block_q4_K) : kind == K_Q5_K ? (int)sizeof(dn_block_q5_K)
         : (int)sizeof(dn_block_q6_K);
}
/* q4_K/q5_K fields (d, dmin, scales lead both structs alike) */
AI int kqs(int kind) { return kind == K_Q4_K ? (int)offsetof(dn_block_q4_K, qs) : (int)offsetof(dn_block_q5_K, qs); }
enum {
    KQ_DMIN = offsetof(dn_block_q4_K, dmin), KQ_SCALES = offsetof(dn_block_q4_K, scales),
    Q5K_QH = offsetof(dn_block_q5_K, qh),
    Q6K_QL = offsetof(dn_block_q6_K, ql), Q6K_QH = offsetof(dn_block_q6_K, qh),
    Q6K_SCALES = offsetof(dn_block_q6_K, scales), Q6K_D = offsetof(dn_block_q6_K, d),
    Q8K_BYTES = sizeof(dn_block_q8_K), Q8K_QS = offsetof(dn_block_q8_K, qs),
    Q8K_BSUMS = offsetof(dn_block_q8_K, bsums),
};
_Static_assert(offsetof(dn_block_q5_K, dmin) == KQ_DMIN && offsetof(dn_block_q5_K, scales) == KQ_SCALES &&
               offsetof(dn_block_q4_K, d) == 0 && offsetof(dn_block_q5_K, d) == 0 &&
               offsetof(dn_block_q8_K, d) == 0, "K-quant heads alike");

/* The x16 column layouts (quant.h) as the x16 kernels address them:
 * q4_0x16 and q8_0x16 (their chunks both start at X_QS), q4_Kx16, q6_Kx16. */
enum {
    X_QS = offsetof(dn_block_q4_0x16, qs),
    Q4X = sizeof(dn_block_q4_Kx16), Q4X_DMIN = offsetof(dn_block_q4_Kx16, dmin),
    Q4X_SC = offsetof(dn_block_q4_Kx16, sc), Q4X_M = offsetof(dn_block_q4_Kx16, m),
    Q4X_QS = offsetof(dn_block_q4_Kx16, qs),
    Q6X = sizeof(dn_block_q6_Kx16), Q6X_SC = offsetof(dn_block_q6_Kx16, scales),
    Q6X_QL = offsetof(dn_block_q6_Kx16, ql), Q6X_QH = offsetof(dn_block_q6_Kx16, qh),
};
_Static_assert(offsetof(dn_block_q8_0x16, qs) == X_QS, "x16 qs");

/* float weight kinds (KIND of tileF) */
enum { K_F32, K_F16, K_BF16 };

/* The eleven stored weight types with their activation partner (ggml's
 * vec_dot_type: q4_0.q8_0, q4_1.q8_1, q4_K.q8_K, ...), for the tables:
 * X(type id, weight name, activation name). bf16 weights meet BF16_ACT
 * (f32; avx512: bf16 as a hi + lo pair). DN_ACT_ENTRY makes the .act_type
 * entries, each ISA file its own .vec_dot/.gemm entry from the names. */
#define DN_WEIGHT_TYPES(X, BF16_ACT) \
    X(DANU_TYPE_F32, f32, f32) X(DANU_TYPE_F16, f16, f32) X(DANU_TYPE_BF16, bf16, BF16_ACT) \
    X(DANU_TYPE_Q8_0, q8_0, q8_0) X(DANU_TYPE_Q4_0, q4_0, q8_0) X(DANU_TYPE_Q4_1, q4_1, q8_1) \
    X(DANU_TYPE_Q5_0, q5_0, q8_0) X(DANU_TYPE_Q5_1, q5_1, q8_1) X(DANU_TYPE_Q4_K, q4_K, q8_K) \
    X(DANU_TYPE_Q5_K, q5_K, q8_K) X(DANU_TYPE_Q6_K, q6_K, q8_K)
enum { DN_ACT_f32 = DANU_TYPE_F32, DN_ACT_bf16 = DANU_TYPE_BF16, DN_ACT_q8_0 = DANU_TYPE_Q8_0,
       DN_ACT_q8_1 = DN_TYPE_Q8_1, DN_ACT_q8_K = DN_TYPE_Q8_K };
#define DN_ACT_ENTRY(T, W, A) [T] = DN_ACT_##A,
/* the x16 types meet their base types' activations */
#define DN_X16_ACT_ENTRIES \
    [DN_TYPE_Q4_0_X16] = DANU_TYPE_Q8_0, [DN_TYPE_Q8_0_X16] = DANU_TYPE_Q8_0, \
    [DN_TYPE_Q4_K_X16] = DN_TYPE_Q8_K, [DN_TYPE_Q6_K_X16] = DN_TYPE_Q8_K,

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
