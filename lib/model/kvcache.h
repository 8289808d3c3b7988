/* kvcache.h - per-layer K/V rings. A layer with sliding window W keeps only
 * the last cap >= W positions (slot = position % cap); a batch being
 * evaluated writes its K/V to a staging area first and is committed to the
 * ring only when every layer finished, so an aborted batch leaves the cache
 * exactly as it was.
 *
 * Layout (ring and staging alike), per layer and KV head:
 *   K  tiles of DN_KV_TILE (16) slots, the slot's lane slot % 16 (kernels.h
 *      dn_kv_k_offset): f16/f32 dimension-major, element d at 16 d + lane,
 *      so decode attention reads a dimension of 16 keys with one load; Q8
 *      4 dimensions x 16 lanes per 64 bytes, each byte the code + 128, the
 *      operand of one vpdpbusd / sdot against 4 query codes. No transposes
 *      in the kernels (kernels.h att_scores).
 *   V  f16/f32: rows of hd elements, slot after slot. Q8: tiles of 16
 *      slots as groups of 4, hd x 4 signed codes each (dn_kv_v_offset),
 *      the operand of one vpdpbusd / sdot against 4 weights per dimension.
 * Elements are f16, f32, or int8 (DANU_KV_Q8_0) with one f32 scale per
 * (slot, head) row of K and of V (dn_kv_quantize: x = scale * q, scale =
 * max|x| / 127). */
#ifndef DN_KVCACHE_H
#define DN_KVCACHE_H
#include <stdint.h>
#include <stddef.h>
#include "danu.h"
#include "common/alloc.h"
#include "kernels/kernels.h"

typedef struct dn_kv_area {
    uint8_t *k, *v;       /* [n_layers][n_heads] x (slots/16 K tiles | slots V rows) */
    float *ks, *vs;       /* Q8: [n_layers][n_heads][slots] scales; else NULL */
    int32_t slots;        /* per layer and head, a multiple of DN_KV_TILE */
} dn_kv_area;

typedef struct dn_kvcache {
    const dn_alloc *a;
    int32_t n_layers, n_heads, head_dim, kv_dim;   /* n_heads: KV heads; kv_dim = n_heads * head_dim */
    int32_t cap;          /* positions kept per layer */
    int32_t n_batch;      /* staging rows per layer */
    int32_t type;         /* DANU_KV_F16, DANU_KV_F32 or DANU_KV_Q8_0 */
    size_t elem;          /* bytes per element */
    dn_kv_area ring, stage;
} dn_kvcache;

/* huge_pages: ask for huge pages under the K/V arrays (DANU_OPT_KV_HUGE_PAGES). */
danu_status dn_kv_init(dn_kvcache *kv, const dn_alloc *a, int32_t n_layers, int32_t n_heads, int32_t head_dim,
                       int32_t cap, int32_t n_batch, int32_t type, int huge_pages);
void dn_kv_free(dn_kvcache *kv);
size_t dn_kv_bytes(const dn_kvcache *kv);   /* ring + staging */
/* Bytes dn_kv_init with these arguments takes from the allocator. */
size_t dn_kv_alloc_bytes(int32_t n_layers, int32_t n_heads, int32_t head_dim, int32_t cap, int32_t n_batch, int32_t type);

/* Where a run of positions of one layer and head starts, for the attention
 * kernels: the K tile holding `slot` and the slot's lane in it, the V row
 * (Q8: the V tile, the same lane),
 * and the Q8 scales (ks at the tile's first slot, vs at the slot). */
typedef struct dn_kv_span { const uint8_t *k, *v; const float *ks, *vs; int lane; } dn_kv_span;
dn_kv_span dn_kv_span_at(const dn_kvcache *kv, const dn_kv_area *ar, int layer, int head, int32_t slot);

/* Store head `head` of a batch row's rotated k and its v (hd floats each)
 * into staging row `row` of `layer`, in the cache's type (Q8 through
 * kern->kv_quantize). */
void dn_kv_stage(const dn_kvcache *kv, const dn_kernels *kern, int layer, int row, int head, const float *k,
                 const float *v);
/* Copy staged rows 0..n-1 (positions pos0..pos0+n-1) into the rings. */
void dn_kv_commit(dn_kvcache *kv, int64_t pos0, int n);
/* Copy ring slots 0..slots-1 of every layer and head from src (same shape). */
void dn_kv_copy(dn_kvcache *dst, const dn_kvcache *src, int32_t slots);

/* A cached position's K (which 0) or V (which 1) row of a layer as bytes,
 * for state files: per head, hd elements (f16/f32) or an f32 scale then hd
 * int8 (Q8), little-endian as the host. dn_kv_row_bytes is its size. */
size_t dn_kv_row_bytes(const dn_kvcache *kv);
void dn_kv_save_row(const dn_kvcache *kv, int layer, int64_t pos, int which, uint8_t *out);
void dn_kv_load_row(dn_kvcache *kv, int layer, int64_t pos, int which, const uint8_t *in);
#endif
