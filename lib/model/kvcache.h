/* kvcache.h - per-layer K/V ring buffers. A layer with sliding window W
 * keeps only the last cap >= W positions (slot = position % cap); a batch
 * being evaluated writes its K/V to a staging area first and is committed to
 * the ring only when every layer finished, so an aborted batch leaves the
 * cache exactly as it was. */
#ifndef DN_KVCACHE_H
#define DN_KVCACHE_H
#include <stdint.h>
#include <stddef.h>
#include "danu.h"
#include "common/alloc.h"

typedef struct dn_kvcache {
    const dn_alloc *a;
    int32_t n_layers, kv_dim;
    int32_t cap;          /* positions kept per layer */
    int32_t n_batch;      /* staging rows per layer */
    int32_t type;         /* DANU_KV_F16 or DANU_KV_F32 */
    size_t elem;          /* bytes per element */
    uint8_t *k, *v;       /* [n_layers][cap][kv_dim] */
    uint8_t *sk, *sv;     /* [n_layers][n_batch][kv_dim] staging */
} dn_kvcache;

danu_status dn_kv_init(dn_kvcache *kv, const dn_alloc *a, int32_t n_layers, int32_t kv_dim, int32_t cap,
                       int32_t n_batch, int32_t type);
void dn_kv_free(dn_kvcache *kv);
size_t dn_kv_bytes(const dn_kvcache *kv);   /* ring + staging */
/* Bytes dn_kv_init with these arguments takes from the allocator. */
size_t dn_kv_alloc_bytes(int32_t n_layers, int32_t kv_dim, int32_t cap, int32_t n_batch, int32_t type);

static inline uint8_t *dn_kv_k(const dn_kvcache *kv, int layer, int64_t pos)
{ return kv->k + (((size_t)layer * (size_t)kv->cap + (size_t)(pos % kv->cap)) * (size_t)kv->kv_dim) * kv->elem; }
static inline uint8_t *dn_kv_v(const dn_kvcache *kv, int layer, int64_t pos)
{ return kv->v + (((size_t)layer * (size_t)kv->cap + (size_t)(pos % kv->cap)) * (size_t)kv->kv_dim) * kv->elem; }
static inline uint8_t *dn_kv_sk(const dn_kvcache *kv, int layer, int row)
{ return kv->sk + (((size_t)layer * (size_t)kv->n_batch + (size_t)row) * (size_t)kv->kv_dim) * kv->elem; }
static inline uint8_t *dn_kv_sv(const dn_kvcache *kv, int layer, int row)
{ return kv->sv + (((size_t)layer * (size_t)kv->n_batch + (size_t)row) * (size_t)kv->kv_dim) * kv->elem; }

/* Store n f32 values into (part of) a K/V row, in the cache's type. */
void dn_kv_store(const dn_kvcache *kv, uint8_t *dst, const float *src, int n);
/* Copy staged rows 0..n-1 (positions pos0..pos0+n-1) into the rings. */
void dn_kv_commit(dn_kvcache *kv, int64_t pos0, int n);
#endif
