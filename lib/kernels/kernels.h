/* kernels.h - the compute primitives behind one dispatch table. The forward
 * pass only calls through a dn_kernels; each ISA file fills the slots it
 * accelerates and the rest fall back to scalar. */
#ifndef DN_KERNELS_H
#define DN_KERNELS_H
#include <stdint.h>
#include <stddef.h>
#include <math.h>
#include "danu.h"
#include "quant/quant.h"
#include "common/threadpool.h"

enum {
    DN_ISA_REFERENCE = 0,  /* exact oracle: weights dequantized to f32, f32 dot */
    DN_ISA_SCALAR = DANU_ISA_SCALAR,
    DN_ISA_AVX2 = DANU_ISA_AVX2,
    DN_ISA_AVX512 = DANU_ISA_AVX512,
    DN_ISA_NEON = DANU_ISA_NEON,
    DN_ISA_AVX2VNNI = DANU_ISA_AVX2VNNI,  /* ranks between avx2 and avx512 (dispatch.c) */
    DN_ISA_NEON_DOT = 6,   /* internal: NEON + dotprod; DANU_ISA=neon picks it when present */
    DN_ISA_NEON_I8MM = 7   /* internal: neon_dot + i8mm (x16 gemms with SMMLA), ranks above neon_dot */
};

/* KV cache element types, as DANU_KV_* (kvcache.c checks they agree), and
 * the positions per K tile. */
enum { DN_KV_F16 = 0, DN_KV_F32 = 1, DN_KV_Q8 = 2, DN_KV_TILE = 16 };
/* Bytes of one cached element (a V row is head_dim of them). */
static inline size_t dn_kv_elem_bytes(int type) { return type == DN_KV_F32 ? 4 : type == DN_KV_F16 ? 2 : 1; }

/* A K tile holds DN_KV_TILE positions (lanes) of one head. f16 / f32:
 * dimension-major, element d of lane l at 16 d + l, so one load gives a
 * dimension of 16 keys. Q8: groups of 4 dimensions, byte (d / 4) * 64 +
 * 4 l + d % 4, head_dim padded to a multiple of 4, each byte the int8 code
 * plus 128: one 64-byte load is 4 dimensions of 16 keys, the unsigned
 * operand of vpdpbusd against 4 query bytes (sdot after an xor on Arm). */
static inline size_t dn_kv_tile_bytes(int hd, int type)
{
    return type == DN_KV_Q8 ? (size_t)((hd + 3) & ~3) * DN_KV_TILE : (size_t)hd * DN_KV_TILE * dn_kv_elem_bytes(type);
}
static inline size_t dn_kv_k_offset(int type, int d, int lane)
{
    return type == DN_KV_Q8 ? (size_t)(d / 4) * 4 * DN_KV_TILE + 4 * (size_t)lane + (size_t)(d % 4)
                            : ((size_t)d * DN_KV_TILE + (size_t)lane) * dn_kv_elem_bytes(type);
}

/* V of 16 positions (a tile, as K's) of one head. f16 / f32: rows of
 * head_dim elements, lane after lane. Q8: 4 groups of 4 lanes, each group
 * head_dim x 4 bytes, byte 4 d + l % 4 the signed code of lane l's
 * dimension d: one 64-byte load is 16 dimensions of 4 keys, the signed
 * operand of vpdpbusd / sdot against 4 weight bytes (att_q8_values). */
static inline size_t dn_kv_v_offset(int type, int hd, int d, int lane)
{
    return type == DN_KV_Q8 ? ((size_t)(lane / 4) * (size_t)hd + (size_t)d) * 4 + (size_t)(lane % 4)
                            : ((size_t)lane * (size_t)hd + (size_t)d) * dn_kv_elem_bytes(type);
}

/* Q8 values weigh each cached row by an integer w = round(e * scale * c)
 * (e = exp(score - max), att_q8_weights) <= DN_ATT_W_MAX (14 bits) held
 * as two 7-bit planes, hi = w >> 7 and
 * lo = w & 127, so that every ISA's 8-bit dot product (u8 x s8 or s8 x s8,
 * 4 products summed without saturation) multiplies them by the codes. */
enum { DN_ATT_W_MAX = 16383, DN_ATT_W_SHIFT = 7 };
/* The softmax's denominator as an exact integer: each e = exp(s - max) <=
 * 1 counts round(e * 2^29), 2^-30 at most off (relative to the largest,
 * which counts 2^29 exactly), and int64 holds any number of keys. */
enum { DN_ATT_E_SHIFT = 29 };

/* Round to nearest, ties to even, of 0 <= x < 2^31 (from 2^23 on floats
 * are integers), whatever the FPU's rounding mode (the SIMD tables round
 * the same way explicitly). */
static inline int32_t dn_round_even(float x)
{
    const int32_t t = (int32_t)x;
    const float f = x - (float)t;   /* exact */
    return t + (f > 0.5f || (f == 0.5f && (t & 1)));
}

/* The code of one element, v = x * 127 / max|x|: roundf (half away from
 * zero) inline, without a libm call per element (1.2 % of a token after
 * 4096 positions, 2026-12-06): |v| < 127 truncates exactly through int,
 * |v| - trunc is exact. The SIMD quantizers (kv_quantize in the tables)
 * do these operations lane-wise. */
static inline int8_t dn_kv_code(float v)
{
    const float a = fabsf(v);
    const int r = v != v ? 0 : a >= 127.0f ? 127 : (int)a + (a - (float)(int)a >= 0.5f);
    return (int8_t)(v < 0.0f ? -r : r);
}

/* Q8 rows (cached K and V rows, and the query rows the Q8 score kernels
 * take): n values as int8 codes q with one scale, x ~ scale * q, scale =
 * max|x| / 127, q = round(x * 127 / max|x|) (NaN: 0; all zero: scale 0).
 * Returns the scale. The definition: every table's kv_quantize gives
 * these bits (test_kernels), so every table quantizes a query alike. */
static inline float dn_kv_quantize(const float *x, int n, int8_t *q)
{
    float amax = 0.0f;
    for (int i = 0; i < n; i++) {
        const float a = fabsf(x[i]);
        if (a > amax) amax = a;   /* skips NaN, as fmaxf would */
    }
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    for (int i = 0; i < n; i++) q[i] = dn_kv_code(x[i] * inv);
    return amax / 127.0f;
}

/* A weight matrix: rows x cols, row-major, rows stored in `type`. */
typedef struct dn_matrix {
    const void *data;
    int32_t type;
    int64_t rows, cols;
    uint64_t row_bytes;
} dn_matrix;

/* dot(weight row of n elements in its storage type, activation row prepared
 * in act_type[wtype]) */
typedef float (*dn_vec_dot_fn)(int64_t n, const void *w, const void *x);
/* Prepare (quantize/convert) one f32 activation row of n elements: the
 * blocks of its activation type, then (when act_extra[type] > 0) from the
 * next 64-byte boundary an ISA-private copy laid out for the kernels
 * (act_extra bytes per 256 elements), computed once per token instead of
 * once per weight tile. BF16 activations with extras: the extras start
 * with the residual row bf16(x - hi) (hi + lo carries x to ~2^-17). */
typedef void (*dn_act_fn)(const float *x, void *out, int64_t n);
/* Tile: y[t*ldy + r] = dot(w row r, x row t) for r < nr <= gemm_nr,
 * t < nt <= gemm_nt; rows of w are w_stride bytes apart, prepared
 * activation rows x_stride bytes apart. The kernel tiles internally. */
typedef void (*dn_gemm_fn)(int64_t n, const void *w, size_t w_stride, int nr,
                           const void *x, size_t x_stride, int nt, float *y, size_t ldy);
/* For the repacked x16 weight types (quant.h) gemm[x16] has the same
 * signature with other bounds: w is the first of nr / 16 row groups,
 * w_stride the bytes from one group to the next (16 * row bytes), nr any
 * multiple of 16 and nt any count >= 1 (the kernel tiles both itself).
 * A table without gemm[x16] still computes x16 matrices: matmul.c then
 * extracts blocks and calls vec_dot[x16], which dispatch.c sets to the
 * base type's plain-block dot (scalar, or reference for that table). */

/* How the one-token x16 gemms fetch their weight stream ahead (the
 * hardware prefetchers differ: kernels_internal.h, DN_STREAM_AHEAD).
 * dispatch.c picks one per CPU; DANU_FETCH=page|lines overrides it. The
 * lines tables also carry prompt tiles tuned on Intel (avx2, avx2vnni:
 * q4_0 from unpacked slices; avx2vnni: q4_K broadcasts). */
enum { DN_FETCH_PAGE = 0, DN_FETCH_LINES = 1 };

typedef struct dn_kernels {
    int isa;
    const char *name;
    int32_t act_type[DN_TYPE_COUNT];      /* activation partner per weight type */
    dn_act_fn act_prepare[DN_TYPE_COUNT]; /* indexed by ACTIVATION type        */
    dn_vec_dot_fn vec_dot[DN_TYPE_COUNT]; /* indexed by weight type            */
    dn_gemm_fn gemm[DN_TYPE_COUNT];       /* optional tile kernel (NULL: loop) */
    int gemm_nr, gemm_nt;                 /* max tile shape of gemm            */
    int fetch;                            /* DN_FETCH_*: one token's x16 weight fetches */
    uint16_t act_extra[DN_TYPE_COUNT];    /* extra prepared bytes per 256, by ACTIVATION type */
    /* Stored type -> x16 type the loader repacks it into by default
     * (DANU_OPT_REPACK auto) because this table has a fast gemm for it;
     * 0 = keep the stored layout. */
    uint8_t repack[DN_TYPE_COUNT];
    /* elementwise */
    void (*rmsnorm)(float *out, const float *x, const float *w, int64_t n, float eps);
    void (*silu_mul)(float *gate, const float *up, int64_t n);          /* gate = silu(gate)*up */
    void (*add)(float *y, const float *x, int64_t n);                   /* y += x  */
    void (*softmax)(float *x, int64_t n);                               /* in place, max-subtracted */
    float (*max)(const float *x, int64_t n);                            /* largest x[i], NaN if one is; n >= 1 */
    /* Attention of nq query rows (f32, qs floats apart, hd even as
     * config.c requires) that share one KV head, over nk consecutive
     * cached positions of that head, stored as kvcache.h lays them out
     * (type DN_KV_F16, DN_KV_F32 or DN_KV_Q8):
     * K in tiles (dn_kv_tile_bytes, dn_kv_k_offset above), tiles
     * consecutive, the first key in lane `lane` of the first tile; V
     * (att_values, f16 / f32 only) as rows of hd elements, consecutive.
     * Q8 K rows carry one scale each (ksc, indexed like the keys:
     * ksc[lane + j] for key j; NULL otherwise).
     * att_scores writes s[i*ss + j] = q_i . k_j; att_values adds
     * sum_j p[i*ps + j] * v_j to out row i (os floats apart). Every output
     * is the same sequence of float operations whatever nq and however the
     * keys are split into calls (a token alone and in a batch get
     * identical bits). f16 / f32 scores: fma chains over d from 0 in an
     * order each table fixes (sequential; avx512: even and odd d apart,
     * then their sum), so tables agree to rounding, not to the bit.
     * Q8 scores: the query row quantized as the cache's rows are
     * (dn_kv_quantize, scale qsc), the exact int32 dot product I of the
     * codes, then ((float)I * ksc[lane + j]) * qsc. att_values (f16 and
     * f32 only): a sequential fma over the keys in order. */
    void (*att_scores)(int hd, int nq, const float *q, size_t qs, const void *k, int lane, int nk, int type,
                       const float *ksc, float *s, size_t ss);
    void (*att_values)(int hd, int nq, const float *p, size_t ps, const void *v, int nk, int type, float *out, size_t os);
    /* Q8 values, as exact integer sums (attention.c scales them once).
     * att_q8_weights fuses the softmax into the weights of one query row:
     * for its scores s[0..n), their maximum m (finite) and the keys' V
     * scales vsc, e_j = exp(s_j - m) by the table's exp (as its softmax),
     * w_j = min(round-even((e_j * vsc[j]) * c), DN_ATT_W_MAX) written as
     * hi[j] = w_j >> 7, lo[j] = w_j & 127 (nothing else); it returns
     * sum_j round-even(e_j * 2^DN_ATT_E_SHIFT), the softmax's denominator
     * as an integer, so any split of the keys gives the same total.
     * att_q8_values: for the nk positions from lane `lane` of V tile v
     * (dn_kv_v_offset), acc[(2 i + b) hd + d] += sum_j plane_b[j] code_j[d],
     * row i's planes at w + 2 i ws (hi) and w + (2 i + 1) ws (lo), key j's
     * bytes at lane % 4 + j, zeros before them and after up to a multiple
     * of 4. Integer sums: any split of the keys or rows gives the same
     * result. */
    int64_t (*att_q8_weights)(const float *s, float m, const float *vsc, int n, float c, uint8_t *hi, uint8_t *lo);
    void (*att_q8_values)(int hd, int nq, const uint8_t *w, size_t ws, const void *v, int lane, int nk, int64_t *acc);
    /* dn_kv_quantize, the same bits, for the Q8 cache's K and V rows (the
     * table's Q8 score kernels call the same function on their queries). */
    float (*kv_quantize)(const float *x, int n, int8_t *q);
} dn_kernels;

/* The table for an ISA level, capped by `max_isa` (DANU_ISA_AUTO = best the
 * CPU supports; DANU_ISA_SCALAR etc.; the env var DANU_ISA=scalar|avx2|
 * avx2vnni|avx512|neon|reference caps further). Levels rank scalar < avx2 <
 * avx2vnni < avx512 and scalar < neon (< neon_dot < neon_i8mm), whatever their values. Never NULL: falls back to scalar.
 * Detection runs once (dn_once_run); tables are const. */
const dn_kernels *dn_kernels_get(int max_isa);
/* Level-specific tables, NULL when not compiled in or not supported by the
 * CPU (used by tests to compare every level with the reference). */
const dn_kernels *dn_kernels_for_isa(int isa);
/* Every level-specific table this CPU runs (dn_kernels_for_isa non-NULL),
 * from the reference (when with_reference) and scalar up; out holds >= 8.
 * Returns how many. */
int dn_kernels_all(const dn_kernels **out, int with_reference);
/* *out = *k with the x16 gemms of fetch (DN_FETCH_*) laid over it, as
 * dispatch.c does at detection for the CPU's own (tests run both on any
 * CPU). Returns 0 when k's level has no such variant (out = *k then). */
int dn_kernels_with_fetch(const dn_kernels *k, int fetch, dn_kernels *out);
/* The public DANU_ISA_* level a table answers to (neon_dot, neon_i8mm: neon). */
int dn_kernels_public_isa(const dn_kernels *k);

/* Bytes of one prepared activation row of `cols` elements for weight type
 * (a multiple of 64; the blocks of act_type[wtype] come first). */
size_t dn_act_row_bytes(const dn_kernels *k, int32_t wtype, int64_t cols);
/* The same by activation type: what act_prepare[atype] writes for cols. */
size_t dn_act_bytes(const dn_kernels *k, int32_t atype, int64_t cols);
/* Y[t*ldy + r] = W[r,:] . X[t,:] for t < n_tok, r0 <= r < r1, where Xq holds
 * n_tok prepared rows (dn_act_row_bytes apart). Threads call this on
 * disjoint row ranges. DANU_ERR_INTERNAL (message recorded on the calling
 * thread, Y untouched or partly written) when the table has no kernel for
 * W's type. */
danu_status dn_matmul_rows(const dn_kernels *k, const dn_matrix *W, const void *Xq, int64_t n_tok,
                           float *Y, int64_t ldy, int64_t r0, int64_t r1);
/* Prepare n_tok activation rows (rows of X are cols floats apart).
 * DANU_ERR_INTERNAL when the table cannot prepare wtype's activations. */
danu_status dn_prepare_acts(const dn_kernels *k, int32_t wtype, const float *X, int64_t n_tok,
                            int64_t cols, void *Xq);

/* Batches of at least this many rows are split over the pool by rows;
 * smaller ones stay on the calling thread (the results are the same bits). */
enum { DN_SPLIT_MIN_ROWS = 8 };
/* Matrix products streaming fewer weight bytes x tokens stay on the caller. */
enum { DN_SPLIT_MIN_BYTES = 256 * 1024 };
/* fn(arg, r0, r1, lane) over rows 0..n-1 in chunks on the team when n rows
 * are worth splitting, else fn(arg, 0, n, 0) on the caller. */
typedef void (*dn_rows_fn)(void *arg, int64_t r0, int64_t r1, int lane);
void dn_run_rows(const dn_team *team, dn_rows_fn fn, void *arg, int64_t n);

/* The threaded matrix product: Y[i][t][r] = W[i][r,:] . X[t,:] for up to
 * three matrices of the same width sharing the input X (n_tok rows of
 * W[0]->cols floats), Y[i] rows W[i]->rows floats apart. act[0..2] are
 * work buffers of n_tok prepared rows each (the widest dn_act_row_bytes of
 * any type in use); X is prepared once per distinct activation type. Rows
 * are split over the pool (NULL: the calling thread) in whole groups of 16;
 * the bits do not depend on the thread count. A failure on any thread
 * returns DANU_ERR_INTERNAL with its message on the calling thread. */
danu_status dn_matmul(const dn_kernels *k, const dn_team *team, int n_mats, const dn_matrix *const *W, const float *X,
                      int64_t n_tok, float *const *Y, void *const act[3]);
/* out[t] = rmsnorm(x[t]) * w for n rows of width floats (rows.c). */
void dn_rmsnorm_rows(const dn_kernels *k, const dn_team *team, float *out, const float *x, const float *w, int64_t n,
                     int64_t width, float eps);
/* gate[t] = silu(gate[t]) * up[t] for n rows of width floats (rows.c). */
void dn_swiglu_rows(const dn_kernels *k, const dn_team *team, float *gate, const float *up, int64_t n, int64_t width);
#endif
