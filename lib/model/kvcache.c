/* kvcache.c - allocation, staging, commit and copies of the K/V rings, in
 * the tiled layout kvcache.h describes. */
#include <math.h>
#include <string.h>
#include "model/kvcache.h"
#include "kernels/kernels.h"
#include "common/bytes.h"
#include "common/error.h"
#include "common/os.h"

_Static_assert((int)DN_KV_F16 == (int)DANU_KV_F16 && (int)DN_KV_F32 == (int)DANU_KV_F32 &&
               (int)DN_KV_Q8 == (int)DANU_KV_Q8_0,
               "kernels.h names the KV types as danu.h does");

static int32_t round_tile(int32_t n) { return (n + DN_KV_TILE - 1) / DN_KV_TILE * DN_KV_TILE; }

/* Bytes of one area's K array, V array, and one scale array. */
static int area_sizes(int32_t n_layers, int32_t n_heads, int32_t head_dim, int32_t slots, int32_t type, size_t *k_b,
                      size_t *v_b, size_t *sc_b)
{
    const size_t rows = (size_t)n_layers * (size_t)n_heads;
    *sc_b = type == DANU_KV_Q8_0 ? rows * (size_t)slots * sizeof(float) : 0;
    return __builtin_mul_overflow(rows * dn_kv_tile_bytes(head_dim, type), (size_t)(slots / DN_KV_TILE), k_b) ||
           __builtin_mul_overflow(rows * (size_t)head_dim * dn_kv_elem_bytes(type), (size_t)slots, v_b);
}

/* huge: ask for huge pages (decoding reads every position of every layer
 * and head per token: on 4 KiB pages that is a TLB miss per page). */
static int area_init(dn_kv_area *ar, const dn_alloc *a, const dn_kvcache *kv, int32_t slots, int huge)
{
    size_t kb, vb, sb;
    ar->slots = slots;
    if (area_sizes(kv->n_layers, kv->n_heads, kv->head_dim, slots, kv->type, &kb, &vb, &sb)) return 0;
    ar->k = dn_malloc_aligned(a, kb);
    ar->v = dn_malloc_aligned(a, vb);
    if (huge && ar->k) dn_mem_hugepages(ar->k, kb);
    if (huge && ar->v) dn_mem_hugepages(ar->v, vb);
    if (sb) {
        ar->ks = dn_malloc_aligned(a, sb);
        ar->vs = dn_malloc_aligned(a, sb);
    }
    return ar->k && ar->v && (!sb || (ar->ks && ar->vs));
}

static void area_free(const dn_alloc *a, dn_kv_area *ar)
{
    dn_free_aligned(a, ar->k);
    dn_free_aligned(a, ar->v);
    dn_free_aligned(a, ar->ks);
    dn_free_aligned(a, ar->vs);
    memset(ar, 0, sizeof *ar);
}

danu_status dn_kv_init(dn_kvcache *kv, const dn_alloc *a, int32_t n_layers, int32_t n_heads, int32_t head_dim,
                       int32_t cap, int32_t n_batch, int32_t type, int huge_pages)
{
    memset(kv, 0, sizeof *kv);
    DN_CHECK(type == DANU_KV_F16 || type == DANU_KV_F32 || type == DANU_KV_Q8_0, DANU_ERR_INVALID_ARG,
             "KV type %d is none of DANU_KV_F16, DANU_KV_F32, DANU_KV_Q8_0", type);
    DN_CHECK(cap > 0 && n_batch > 0 && cap <= INT32_MAX - DN_KV_TILE && n_batch <= INT32_MAX - DN_KV_TILE,
             DANU_ERR_INVALID_ARG, "KV cache of %d positions and %d staging rows", cap, n_batch);
    kv->a = a;
    kv->n_layers = n_layers;
    kv->n_heads = n_heads;
    kv->head_dim = head_dim;
    kv->kv_dim = n_heads * head_dim;
    kv->cap = cap;
    kv->n_batch = n_batch;
    kv->type = type;
    kv->elem = dn_kv_elem_bytes(type);
    if (!area_init(&kv->ring, a, kv, round_tile(cap), huge_pages) ||
        !area_init(&kv->stage, a, kv, round_tile(n_batch), huge_pages)) {
        const size_t want = dn_kv_alloc_bytes(n_layers, n_heads, head_dim, cap, n_batch, type);
        dn_kv_free(kv);
        return want ? dn_seterr(DANU_ERR_NOMEM, "cannot allocate a KV cache of %zu bytes", want)
                    : dn_seterr(DANU_ERR_INVALID_ARG, "KV cache size overflows");
    }
    return DANU_OK;
}

size_t dn_kv_alloc_bytes(int32_t n_layers, int32_t n_heads, int32_t head_dim, int32_t cap, int32_t n_batch, int32_t type)
{
    size_t total = 0;
    const int32_t slots[2] = { round_tile(cap), round_tile(n_batch) };
    for (int i = 0; i < 2; i++) {
        size_t kb, vb, sb;
        if (area_sizes(n_layers, n_heads, head_dim, slots[i], type, &kb, &vb, &sb)) return 0;
        total += dn_aligned_bytes(kb) + dn_aligned_bytes(vb) + (sb ? 2 * dn_aligned_bytes(sb) : 0);
    }
    return total;
}

void dn_kv_free(dn_kvcache *kv)
{
    if (!kv->a) return;
    area_free(kv->a, &kv->ring);
    area_free(kv->a, &kv->stage);
}

size_t dn_kv_bytes(const dn_kvcache *kv)
{
    size_t kb = 0, vb = 0, sb = 0, total = 0;
    const dn_kv_area *ar[2] = { &kv->ring, &kv->stage };
    for (int i = 0; i < 2; i++) {
        area_sizes(kv->n_layers, kv->n_heads, kv->head_dim, ar[i]->slots, kv->type, &kb, &vb, &sb);
        total += kb + vb + 2 * sb;
    }
    return total;
}

/* ---- addressing ------------------------------------------------------------- */

static size_t row_index(const dn_kvcache *kv, const dn_kv_area *ar, int layer, int head, int32_t slot)
{
    return ((size_t)layer * (size_t)kv->n_heads + (size_t)head) * (size_t)ar->slots + (size_t)slot;
}

/* The K tile holding slot (its lane: slot % 16). */
static uint8_t *k_tile(const dn_kvcache *kv, const dn_kv_area *ar, int layer, int head, int32_t slot)
{
    const size_t tile = row_index(kv, ar, layer, head, slot) / DN_KV_TILE;   /* slots is a multiple of 16 */
    return ar->k + tile * dn_kv_tile_bytes(kv->head_dim, kv->type);
}

static uint8_t *v_at(const dn_kvcache *kv, const dn_kv_area *ar, int layer, int head, int32_t slot)
{
    return ar->v + row_index(kv, ar, layer, head, slot) * (size_t)kv->head_dim * kv->elem;
}

/* The V tile holding slot (its lane: slot % 16), every type: f16/f32 tiles
 * are 16 consecutive rows. */
static uint8_t *v_tile(const dn_kvcache *kv, const dn_kv_area *ar, int layer, int head, int32_t slot)
{
    return v_at(kv, ar, layer, head, slot - slot % DN_KV_TILE);
}

dn_kv_span dn_kv_span_at(const dn_kvcache *kv, const dn_kv_area *ar, int layer, int head, int32_t slot)
{
    const int lane = slot % DN_KV_TILE;
    const size_t r = row_index(kv, ar, layer, head, slot);
    uint8_t *v = kv->type == DANU_KV_Q8_0 ? v_tile(kv, ar, layer, head, slot) : v_at(kv, ar, layer, head, slot);
    dn_kv_span sp = { k_tile(kv, ar, layer, head, slot), v,
                      ar->ks ? ar->ks + r - lane : NULL, ar->vs ? ar->vs + r : NULL, lane };
    return sp;
}

/* ---- K lanes ------------------------------------------------------------------ */

/* Within a tile a lane's elements sit in rows of 16 lanes: a row is one
 * dimension (f16/f32: lane_b = the element size) or 4 (Q8: 4 bytes per
 * lane, head_dim padded to a multiple of 4); kernels.h dn_kv_k_offset. */
static size_t lane_bytes(const dn_kvcache *kv) { return kv->type == DANU_KV_Q8_0 ? 4 : kv->elem; }
static int tile_rows(const dn_kvcache *kv) { return kv->type == DANU_KV_Q8_0 ? (kv->head_dim + 3) / 4 : kv->head_dim; }

/* K of n lanes from lane la of tile src to lane lb of tile dst: runs of
 * n lanes per row when the lanes line up, whole tiles when all 16 do. */
static void k_copy_lanes(const dn_kvcache *kv, uint8_t *dst, int lb, const uint8_t *src, int la, int n)
{
    const size_t e = lane_bytes(kv), row = DN_KV_TILE * e;
    const int rows = tile_rows(kv);
    if (la == 0 && lb == 0 && n == DN_KV_TILE) {
        memcpy(dst, src, (size_t)rows * row);
        return;
    }
    for (int r = 0; r < rows; r++)
        if (la == lb) memcpy(dst + r * row + (size_t)lb * e, src + r * row + (size_t)la * e, (size_t)n * e);
        else for (int i = 0; i < n; i++) memcpy(dst + r * row + (size_t)(lb + i) * e, src + r * row + (size_t)(la + i) * e, e);
}

/* One lane's K as a row of head_dim elements (the state-file order, Q8 as
 * signed codes), gathered from the tile ... */
static void k_lane_gather(const dn_kvcache *kv, const uint8_t *tile, int lane, uint8_t *row)
{
    const int q8 = kv->type == DANU_KV_Q8_0;
    for (int d = 0; d < kv->head_dim; d++) {
        memcpy(row + (size_t)d * kv->elem, tile + dn_kv_k_offset(kv->type, d, lane), kv->elem);
        if (q8) row[d] ^= 0x80;   /* stored: code + 128 */
    }
}

/* ... or scattered into it (for Q8 the padding dimensions get code 0). */
static void k_lane_scatter(const dn_kvcache *kv, uint8_t *tile, int lane, const uint8_t *row)
{
    const int q8 = kv->type == DANU_KV_Q8_0, hd = kv->head_dim, dims = q8 ? (hd + 3) & ~3 : hd;
    for (int d = 0; d < dims; d++) {
        uint8_t *t = tile + dn_kv_k_offset(kv->type, d, lane);
        if (d < hd) memcpy(t, row + (size_t)d * kv->elem, kv->elem);
        else *t = 0;
        if (q8) *t ^= 0x80;
    }
}

/* ---- V lanes ------------------------------------------------------------------ */

static size_t v_off(const dn_kvcache *kv, int d, int lane) { return dn_kv_v_offset(kv->type, kv->head_dim, d, lane); }

/* Whether dn_kv_v_offset lays a lane's elements out as one row and lane
 * l + 1's row right after lane l's (f16/f32; Q8 interleaves 4 lanes): then
 * a row, or a run of lanes, is one memcpy. */
static int v_rows(const dn_kvcache *kv)
{
    return v_off(kv, 1, 0) == kv->elem && v_off(kv, 0, 1) == (size_t)kv->head_dim * kv->elem;
}

/* One element; Q8's byte without a memcpy call (the per-token commit). */
static void elem_copy(uint8_t *dst, const uint8_t *src, size_t e)
{
    if (e == 1) *dst = *src;
    else memcpy(dst, src, e);
}

/* V of n lanes from lane la of tile src to lane lb of tile dst: one run
 * when rows are contiguous or whole tiles move, else element by element. */
static void v_copy_lanes(const dn_kvcache *kv, uint8_t *dst, int lb, const uint8_t *src, int la, int n)
{
    const int hd = kv->head_dim;
    if (v_rows(kv) || (la == 0 && lb == 0 && n == DN_KV_TILE)) {
        memcpy(dst + v_off(kv, 0, lb), src + v_off(kv, 0, la), (size_t)n * (size_t)hd * kv->elem);
        return;
    }
    for (int i = 0; i < n; i++)
        for (int d = 0; d < hd; d++) elem_copy(dst + v_off(kv, d, lb + i), src + v_off(kv, d, la + i), kv->elem);
}

/* One lane's V as a row of head_dim elements (the state-file order, Q8 as
 * signed codes, as stored), gathered from the tile or scattered into it. */
static void v_lane_gather(const dn_kvcache *kv, const uint8_t *tile, int lane, uint8_t *row)
{
    const size_t e = kv->elem;
    if (v_rows(kv)) memcpy(row, tile + v_off(kv, 0, lane), (size_t)kv->head_dim * e);
    else for (int d = 0; d < kv->head_dim; d++) elem_copy(row + (size_t)d * e, tile + v_off(kv, d, lane), e);
}

static void v_lane_scatter(const dn_kvcache *kv, uint8_t *tile, int lane, const uint8_t *row)
{
    const size_t e = kv->elem;
    if (v_rows(kv)) memcpy(tile + v_off(kv, 0, lane), row, (size_t)kv->head_dim * e);
    else for (int d = 0; d < kv->head_dim; d++) elem_copy(tile + v_off(kv, d, lane), row + (size_t)d * e, e);
}

/* ---- stores and copies -------------------------------------------------------- */

void dn_kv_stage(const dn_kvcache *kv, const dn_kernels *kern, int layer, int row, int head, const float *k, const float *v)
{
    const dn_kv_area *st = &kv->stage;
    const int hd = kv->head_dim, lane = row % DN_KV_TILE;
    uint8_t krow[4 * 1024], vrow[4 * 1024];   /* head_dim <= 1024 (config.c) */
    if (kv->type == DANU_KV_Q8_0) {
        const size_t r = row_index(kv, st, layer, head, row);
        st->ks[r] = kern->kv_quantize(k, hd, (int8_t *)krow);
        st->vs[r] = kern->kv_quantize(v, hd, (int8_t *)vrow);
    } else if (kv->type == DANU_KV_F16) {
        for (int d = 0; d < hd; d++) {
            const uint16_t hk = dn_f32_to_fp16(k[d]), hv = dn_f32_to_fp16(v[d]);
            memcpy(krow + 2 * (size_t)d, &hk, 2);
            memcpy(vrow + 2 * (size_t)d, &hv, 2);
        }
    } else {
        memcpy(krow, k, sizeof(float) * (size_t)hd);
        memcpy(vrow, v, sizeof(float) * (size_t)hd);
    }
    k_lane_scatter(kv, k_tile(kv, st, layer, head, row), lane, krow);
    v_lane_scatter(kv, v_tile(kv, st, layer, head, row), lane, vrow);
}

void dn_kv_commit(dn_kvcache *kv, int64_t pos0, int n)
{
    const int first = n > kv->cap ? n - kv->cap : 0;   /* older rows would be overwritten anyway */
    const dn_kv_area *S = &kv->stage, *R = &kv->ring;
    for (int l = 0; l < kv->n_layers; l++)
        for (int h = 0; h < kv->n_heads; h++)
            for (int i = first, len; i < n; i += len) {
                /* a run of rows in one staging tile and one ring tile, not wrapping */
                const int32_t slot = (int32_t)((pos0 + i) % kv->cap);
                const int la = i % DN_KV_TILE, lb = slot % DN_KV_TILE;
                len = n - i;
                if (len > DN_KV_TILE - la) len = DN_KV_TILE - la;
                if (len > DN_KV_TILE - lb) len = DN_KV_TILE - lb;
                if (len > kv->cap - slot) len = kv->cap - slot;
                k_copy_lanes(kv, k_tile(kv, R, l, h, slot), lb, k_tile(kv, S, l, h, i), la, len);
                v_copy_lanes(kv, v_tile(kv, R, l, h, slot), lb, v_tile(kv, S, l, h, i), la, len);
                if (S->ks) {   /* Q8: the rows' scales */
                    const size_t rs = row_index(kv, S, l, h, i), rr = row_index(kv, R, l, h, slot);
                    memcpy(R->ks + rr, S->ks + rs, sizeof(float) * (size_t)len);
                    memcpy(R->vs + rr, S->vs + rs, sizeof(float) * (size_t)len);
                }
            }
}

void dn_kv_copy(dn_kvcache *dst, const dn_kvcache *src, int32_t slots)
{
    const int32_t tiles = (slots + DN_KV_TILE - 1) / DN_KV_TILE;
    const size_t tile_b = dn_kv_tile_bytes(src->head_dim, src->type), row_b = (size_t)src->head_dim * src->elem;
    for (int l = 0; l < src->n_layers; l++)
        for (int h = 0; h < src->n_heads; h++) {
            const dn_kv_area *A = &src->ring, *B = &dst->ring;
            memcpy(k_tile(dst, B, l, h, 0), k_tile(src, A, l, h, 0), (size_t)tiles * tile_b);
            memcpy(v_at(dst, B, l, h, 0), v_at(src, A, l, h, 0), (size_t)tiles * DN_KV_TILE * row_b);   /* whole tiles */
            if (A->ks) {
                memcpy(B->ks + row_index(dst, B, l, h, 0), A->ks + row_index(src, A, l, h, 0), (size_t)slots * 4);
                memcpy(B->vs + row_index(dst, B, l, h, 0), A->vs + row_index(src, A, l, h, 0), (size_t)slots * 4);
            }
        }
}

/* ---- state rows ------------------------------------------------------------ */

size_t dn_kv_row_bytes(const dn_kvcache *kv)
{
    return (size_t)kv->kv_dim * kv->elem + (kv->type == DANU_KV_Q8_0 ? 4 * (size_t)kv->n_heads : 0);
}

/* Per head: the Q8 scale, then the K (which 0) or V (1) row, from the
 * ring to out (save) or from in to the ring (load: in not NULL). */
static void state_row(const dn_kvcache *kv, int layer, int64_t pos, int which, const uint8_t *in, uint8_t *out)
{
    const dn_kv_area *R = &kv->ring;
    const int32_t slot = (int32_t)(pos % kv->cap);
    const int lane = slot % DN_KV_TILE;
    const size_t row_b = (size_t)kv->head_dim * kv->elem, sc_b = R->ks ? 4 : 0;
    for (int h = 0; h < kv->n_heads; h++) {
        const size_t at = (size_t)h * (sc_b + row_b);   /* this head's bytes in the state row */
        float *sc = R->ks ? &(which ? R->vs : R->ks)[row_index(kv, R, layer, h, slot)] : NULL;
        uint8_t *tile = which ? v_tile(kv, R, layer, h, slot) : k_tile(kv, R, layer, h, slot);
        if (in) {
            if (sc) memcpy(sc, in + at, 4);
            (which ? v_lane_scatter : k_lane_scatter)(kv, tile, lane, in + at + sc_b);
        } else {
            if (sc) memcpy(out + at, sc, 4);
            (which ? v_lane_gather : k_lane_gather)(kv, tile, lane, out + at + sc_b);
        }
    }
}

void dn_kv_save_row(const dn_kvcache *kv, int layer, int64_t pos, int which, uint8_t *out)
{
    state_row(kv, layer, pos, which, NULL, out);
}

void dn_kv_load_row(dn_kvcache *kv, int layer, int64_t pos, int which, const uint8_t *in)
{
    state_row(kv, layer, pos, which, in, NULL);
}
