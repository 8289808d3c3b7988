/* attention.h - the attention step of a decoder layer and what feeds it:
 * RoPE from a per-batch cos/sin table, the batch's K/V staged in the cache,
 * and attention over the cached window in tiles, split over the pool. */
#ifndef DN_ATTENTION_H
#define DN_ATTENTION_H
#include "model/forward.h"

/* Floats of attention work space per thread for rows of score_len scores. */
size_t dn_attention_floats(const dn_config *c, int32_t score_len);

/* s->rope[t] = cos then sin of (pos0 + t) * inv_freq[j], j < head_dim/2, for
 * t < n: the angle is formed in double, as the float64 reference does. */
void dn_rope_table(const danu_model *m, dn_scratch *s, const dn_team *team, int n, int64_t pos0);

/* Rotate s->q [n][heads*hd] and s->k [n][kv*hd] by the table, then store
 * s->k and s->v into the cache's staging rows 0..n-1 of this layer. */
void dn_rope_stage(const danu_model *m, dn_kvcache *kv, dn_scratch *s, const dn_team *team, int layer, int n);

/* s->xb [n][heads*hd] = softmax(q k^T / sqrt(hd)) v per head, for the
 * queries s->q of positions pos0..pos0+n-1 against the cached positions of
 * their windows (ring before pos0, staging rows from pos0 on). */
void dn_attention(const danu_model *m, const dn_kvcache *kv, dn_scratch *s, const dn_team *team, int layer, int n,
                  int64_t pos0);
#endif
