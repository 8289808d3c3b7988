/* kvcache.c - allocation, staging and commit of the K/V rings. */
#include <string.h>
#include "model/kvcache.h"
#include "common/bytes.h"
#include "common/error.h"

danu_status dn_kv_init(dn_kvcache *kv, const dn_alloc *a, int32_t n_layers, int32_t kv_dim, int32_t cap,
                       int32_t n_batch, int32_t type)
{
    memset(kv, 0, sizeof *kv);
    kv->a = a;
    kv->n_layers = n_layers;
    kv->kv_dim = kv_dim;
    kv->cap = cap;
    kv->n_batch = n_batch;
    kv->type = type;
    kv->elem = type == DANU_KV_F32 ? 4 : 2;
    size_t ring, stage;
    if (__builtin_mul_overflow((size_t)n_layers * (size_t)kv_dim * kv->elem, (size_t)cap, &ring) ||
        __builtin_mul_overflow((size_t)n_layers * (size_t)kv_dim * kv->elem, (size_t)n_batch, &stage))
        return dn_seterr(DANU_ERR_INVALID_ARG, "KV cache size overflows");
    kv->k = dn_malloc_aligned(a, ring);
    kv->v = dn_malloc_aligned(a, ring);
    kv->sk = dn_malloc_aligned(a, stage);
    kv->sv = dn_malloc_aligned(a, stage);
    if (!kv->k || !kv->v || !kv->sk || !kv->sv) {
        dn_kv_free(kv);
        return dn_seterr(DANU_ERR_NOMEM, "cannot allocate a KV cache of 2 x %zu bytes", ring);
    }
    return DANU_OK;
}

size_t dn_kv_alloc_bytes(int32_t n_layers, int32_t kv_dim, int32_t cap, int32_t n_batch, int32_t type)
{
    size_t row = (size_t)n_layers * (size_t)kv_dim * (type == DANU_KV_F32 ? 4 : 2);
    return 2 * dn_aligned_bytes(row * (size_t)cap) + 2 * dn_aligned_bytes(row * (size_t)n_batch);
}

void dn_kv_free(dn_kvcache *kv)
{
    if (!kv->a) return;
    dn_free_aligned(kv->a, kv->k);
    dn_free_aligned(kv->a, kv->v);
    dn_free_aligned(kv->a, kv->sk);
    dn_free_aligned(kv->a, kv->sv);
    kv->k = kv->v = kv->sk = kv->sv = NULL;
}

size_t dn_kv_bytes(const dn_kvcache *kv)
{
    return (size_t)2 * kv->n_layers * kv->kv_dim * kv->elem * ((size_t)kv->cap + (size_t)kv->n_batch);
}

void dn_kv_store(const dn_kvcache *kv, uint8_t *dst, const float *src, int n)
{
    if (kv->type == DANU_KV_F32) {
        memcpy(dst, src, (size_t)n * 4);
        return;
    }
    uint16_t *h = (uint16_t *)(void *)dst;
    for (int i = 0; i < n; i++) h[i] = dn_f32_to_fp16(src[i]);
}

void dn_kv_commit(dn_kvcache *kv, int64_t pos0, int n)
{
    size_t row = (size_t)kv->kv_dim * kv->elem;
    int first = n > kv->cap ? n - kv->cap : 0;   /* older rows would be overwritten anyway */
    for (int l = 0; l < kv->n_layers; l++)
        for (int i = first; i < n; i++) {
            memcpy(dn_kv_k(kv, l, pos0 + i), dn_kv_sk(kv, l, i), row);
            memcpy(dn_kv_v(kv, l, pos0 + i), dn_kv_sv(kv, l, i), row);
        }
}
