/* kvcache.c - allocation, staging, commit and copies of the K/V rings, in
 * the tiled layout kvcache.h describes. */
#include <math.h>
#include <string.h>
#include "model/kvcache.h"
#include "kernels/kernels.h"
#include "common/bytes.h"
#include "common/error.h"

_Static_assert((int)DN_KV_F16 == (int)DANU_KV_F16 && (int)DN_KV_F32 == (int)DANU_KV_F32 &&
               (int)DN_KV_Q8 == (int)DANU_KV_Q8_0,
               "kernels.h names the KV types as danu.h does");

static size_t elem_of(int32_t type) { return type == DANU_KV_F32 ? 4 : type == DANU_KV_F16 ? 2 : 1; }
static int32_t round_tile(int32_t n) { return (n + DN_KV_TILE - 1) / DN_KV_TILE * DN_KV_TILE; }

/* Bytes of one area's K (= V) array and of one scale array. */
static int area_sizes(int32_t n_layers, int32_t n_heads, int32_t head_dim, int32_t slots, int32_t type, size_t *kv_b,
                      size_t *sc_b)
{
    const size_t rows = (size_t)n_layers * (size_t)n_heads;
    *sc_b = type == DANU_KV_Q8_0 ? rows * (size_t)slots * sizeof(float) : 0;
    return __builtin_mul_overflow(rows * (size_t)head_dim * elem_of(type), (size_t)slots, kv_b);
}

static int area_init(dn_kv_area *ar, const dn_alloc *a, const dn_kvcache *kv, int32_t slots)
{
    size_t kb, sb;
    ar->slots = slots;
    if (area_sizes(kv->n_layers, kv->n_heads, kv->head_dim, slots, kv->type, &kb, &sb)) return 0;
    ar->k = dn_malloc_aligned(a, kb);
    ar->v = dn_malloc_aligned(a, kb);
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
                       int32_t cap, int32_t n_batch, int32_t type)
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
    kv->elem = elem_of(type);
    if (!area_init(&kv->ring, a, kv, round_tile(cap)) || !area_init(&kv->stage, a, kv, round_tile(n_batch))) {
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
        size_t kb, sb;
        if (area_sizes(n_layers, n_heads, head_dim, slots[i], type, &kb, &sb)) return 0;
        total += 2 * dn_aligned_bytes(kb) + (sb ? 2 * dn_aligned_bytes(sb) : 0);
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
    size_t kb, sb, total = 0;
    const dn_kv_area *ar[2] = { &kv->ring, &kv->stage };
    for (int i = 0; i < 2; i++) {
        area_sizes(kv->n_layers, kv->n_heads, kv->head_dim, ar[i]->slots, kv->type, &kb, &sb);
        total += 2 * (kb + sb);
    }
    return total;
}

/* ---- addressing ------------------------------------------------------------- */

static size_t row_index(const dn_kvcache *kv, const dn_kv_area *ar, int layer, int head, int32_t slot)
{
    return ((size_t)layer * (size_t)kv->n_heads + (size_t)head) * (size_t)ar->slots + (size_t)slot;
}

/* Element d of slot's K is at k_at(...) + 16 d elements. */
static uint8_t *k_at(const dn_kvcache *kv, const dn_kv_area *ar, int layer, int head, int32_t slot)
{
    const size_t tile = row_index(kv, ar, layer, head, slot) / DN_KV_TILE;   /* slots is a multiple of 16 */
    return ar->k + (tile * (size_t)kv->head_dim * DN_KV_TILE + (size_t)(slot % DN_KV_TILE)) * kv->elem;
}

static uint8_t *v_at(const dn_kvcache *kv, const dn_kv_area *ar, int layer, int head, int32_t slot)
{
    return ar->v + row_index(kv, ar, layer, head, slot) * (size_t)kv->head_dim * kv->elem;
}

dn_kv_span dn_kv_span_at(const dn_kvcache *kv, const dn_kv_area *ar, int layer, int head, int32_t slot)
{
    const int lane = slot % DN_KV_TILE;
    const size_t r = row_index(kv, ar, layer, head, slot);
    dn_kv_span sp = { k_at(kv, ar, layer, head, slot) - (size_t)lane * kv->elem, v_at(kv, ar, layer, head, slot),
                      ar->ks ? ar->ks + r - lane : NULL, ar->vs ? ar->vs + r : NULL, lane };
    return sp;
}

/* ---- stores and copies -------------------------------------------------------- */

/* n floats as the cache's elements, `stride` elements apart; Q8 returns
 * the scale. */
static float put_elems(const dn_kvcache *kv, uint8_t *dst, size_t stride, const float *x, int n)
{
    if (kv->type == DANU_KV_F32) {
        for (int i = 0; i < n; i++) memcpy(dst + (size_t)i * stride * 4, &x[i], 4);
        return 1.0f;
    }
    if (kv->type == DANU_KV_F16) {
        for (int i = 0; i < n; i++) {
            const uint16_t h = dn_f32_to_fp16(x[i]);
            memcpy(dst + (size_t)i * stride * 2, &h, 2);
        }
        return 1.0f;
    }
    float amax = 0.0f;
    for (int i = 0; i < n; i++) amax = fmaxf(amax, fabsf(x[i]));
    const float scale = amax / 127.0f, inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    for (int i = 0; i < n; i++) {
        const float r = roundf(x[i] * inv);
        dst[(size_t)i * stride] = (uint8_t)(int8_t)(r != r ? 0 : r > 127.0f ? 127 : r < -127.0f ? -127 : (int)r);   /* NaN: 0 */
    }
    return scale;
}

void dn_kv_stage(const dn_kvcache *kv, int layer, int row, int head, const float *k, const float *v)
{
    const dn_kv_area *st = &kv->stage;
    const float sk = put_elems(kv, k_at(kv, st, layer, head, row), DN_KV_TILE, k, kv->head_dim);
    const float sv = put_elems(kv, v_at(kv, st, layer, head, row), 1, v, kv->head_dim);
    if (st->ks) {
        const size_t r = row_index(kv, st, layer, head, row);
        st->ks[r] = sk;
        st->vs[r] = sv;
    }
}

/* Slot a of area A to slot b of area B, one layer and head: K element by
 * element (tile lanes), the V row, the scales. */
static void move_slot(const dn_kvcache *kv, const dn_kv_area *A, int32_t a, const dn_kv_area *B, int32_t b, int layer,
                      int head)
{
    const uint8_t *ks = k_at(kv, A, layer, head, a);
    uint8_t *kd = k_at(kv, B, layer, head, b);
    const size_t step = DN_KV_TILE * kv->elem;
    for (int d = 0; d < kv->head_dim; d++) memcpy(kd + (size_t)d * step, ks + (size_t)d * step, kv->elem);
    memcpy(v_at(kv, B, layer, head, b), v_at(kv, A, layer, head, a), (size_t)kv->head_dim * kv->elem);
    if (A->ks) {
        const size_t ra = row_index(kv, A, layer, head, a), rb = row_index(kv, B, layer, head, b);
        B->ks[rb] = A->ks[ra];
        B->vs[rb] = A->vs[ra];
    }
}

void dn_kv_commit(dn_kvcache *kv, int64_t pos0, int n)
{
    const int first = n > kv->cap ? n - kv->cap : 0;   /* older rows would be overwritten anyway */
    for (int l = 0; l < kv->n_layers; l++)
        for (int h = 0; h < kv->n_heads; h++)
            for (int i = first; i < n; i++) move_slot(kv, &kv->stage, i, &kv->ring, (int32_t)((pos0 + i) % kv->cap), l, h);
}

void dn_kv_copy(dn_kvcache *dst, const dn_kvcache *src, int32_t slots)
{
    const int32_t tiles = (slots + DN_KV_TILE - 1) / DN_KV_TILE;
    const size_t tile_b = (size_t)src->head_dim * DN_KV_TILE * src->elem, row_b = (size_t)src->head_dim * src->elem;
    for (int l = 0; l < src->n_layers; l++)
        for (int h = 0; h < src->n_heads; h++) {
            const dn_kv_area *A = &src->ring, *B = &dst->ring;
            memcpy(k_at(dst, B, l, h, 0), k_at(src, A, l, h, 0), (size_t)tiles * tile_b);
            memcpy(v_at(dst, B, l, h, 0), v_at(src, A, l, h, 0), (size_t)slots * row_b);
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

void dn_kv_save_row(const dn_kvcache *kv, int layer, int64_t pos, int which, uint8_t *out)
{
    const dn_kv_area *R = &kv->ring;
    const int32_t slot = (int32_t)(pos % kv->cap);
    const size_t step = DN_KV_TILE * kv->elem;
    for (int h = 0; h < kv->n_heads; h++) {
        if (R->ks) {
            memcpy(out, &(which ? R->vs : R->ks)[row_index(kv, R, layer, h, slot)], 4);
            out += 4;
        }
        if (which) {
            memcpy(out, v_at(kv, R, layer, h, slot), (size_t)kv->head_dim * kv->elem);
        } else {
            const uint8_t *k = k_at(kv, R, layer, h, slot);
            for (int d = 0; d < kv->head_dim; d++) memcpy(out + (size_t)d * kv->elem, k + (size_t)d * step, kv->elem);
        }
        out += (size_t)kv->head_dim * kv->elem;
    }
}

void dn_kv_load_row(dn_kvcache *kv, int layer, int64_t pos, int which, const uint8_t *in)
{
    const dn_kv_area *R = &kv->ring;
    const int32_t slot = (int32_t)(pos % kv->cap);
    const size_t step = DN_KV_TILE * kv->elem;
    for (int h = 0; h < kv->n_heads; h++) {
        if (R->ks) {
            memcpy(&(which ? R->vs : R->ks)[row_index(kv, R, layer, h, slot)], in, 4);
            in += 4;
        }
        if (which) {
            memcpy(v_at(kv, R, layer, h, slot), in, (size_t)kv->head_dim * kv->elem);
        } else {
            uint8_t *k = k_at(kv, R, layer, h, slot);
            for (int d = 0; d < kv->head_dim; d++) memcpy(k + (size_t)d * step, in + (size_t)d * kv->elem, kv->elem);
        }
        in += (size_t)kv->head_dim * kv->elem;
    }
}
