/* state.c - a context's state as bytes: save, load, and the file forms.
 *
 * Layout, version 1 (little-endian):
 *   "DANUSTAT", u32 version,
 *   u32 header[8] = { n_layers, kv_dim, vocab, hidden, window, cap, kv_type, has_logits },
 *   u64 model fingerprint, u64 n_tokens, i32 tokens[n_tokens],
 *   f32 logits[vocab] if has_logits, u64 rng[4],
 *   per layer, the K then V row of each cached position, oldest first
 *   (kvcache.c dn_kv_save_row: per KV head, head_dim f16 or f32 values, or
 *   for kv_type DANU_KV_Q8_0 an f32 scale then head_dim int8),
 *   u64 FNV-1a of everything before it. */
#include <string.h>
#include "gen/context.h"
#include "common/error.h"
#include "common/bytes.h"
#include "common/os.h"

#define STATE_MAGIC "DANUSTAT"
#define STATE_VERSION 1u
enum {
    OFF_VERSION = 8, OFF_HEADER = 12, HEADER_WORDS = 8,
    OFF_FINGERPRINT = OFF_HEADER + 4 * HEADER_WORDS, OFF_N_TOKENS = OFF_FINGERPRINT + 8,
    OFF_TOKENS = OFF_N_TOKENS + 8,
    RNG_BYTES = 32, CHECKSUM_BYTES = 8
};

/* Bytes of a version-1 state: the one place the layout's size is stated. */
static size_t state_bytes(uint64_t n_tokens, int has_logits, int32_t vocab, int32_t n_layers, size_t rows,
                          size_t row_bytes)
{
    return OFF_TOKENS + (size_t)n_tokens * 4 + (has_logits ? (size_t)vocab * 4 : 0) + RNG_BYTES +
           (size_t)n_layers * 2 * rows * row_bytes + CHECKSUM_BYTES;
}

/* The fields of the model a saved cache depends on, hashed one by one in
 * the order version 1 fixed (the 0.1 release hashed the config struct's
 * bytes, which are these fields in this order). New config fields do not
 * join this list: they would invalidate every saved state. */
static uint64_t model_fingerprint(const danu_model *m)
{
    const dn_config *c = &m->cfg;
    const int32_t ints[9] = { c->vocab, c->hidden, c->n_layers, c->n_heads, c->n_kv_heads,
                              c->head_dim, c->ffn, c->max_ctx, c->window };
    const int32_t tail[4] = { c->tied, c->bos, c->eos, c->rope_interleaved };
    uint8_t b[4];
    uint64_t h = DN_FNV1A_INIT;
    for (int i = 0; i < 9; i++) { dn_wr_u32(b, (uint32_t)ints[i]); h = dn_fnv1a(h, b, 4); }
    dn_wr_f32(b, c->rope_theta); h = dn_fnv1a(h, b, 4);
    dn_wr_f32(b, c->rms_eps); h = dn_fnv1a(h, b, 4);
    for (int i = 0; i < 4; i++) { dn_wr_u32(b, (uint32_t)tail[i]); h = dn_fnv1a(h, b, 4); }
    size_t n = m->tok_embd.row_bytes < 256 ? (size_t)m->tok_embd.row_bytes : 256;
    h ^= dn_fnv1a(DN_FNV1A_INIT, m->tok_embd.data, n);
    /* the stored bytes, not a repacked copy: a state stays loadable
     * whatever DANU_OPT_REPACK the model was loaded with */
    h ^= dn_fnv1a(DN_FNV1A_INIT, m->wq0_stored, m->wq0_stored_bytes < 256 ? (size_t)m->wq0_stored_bytes : 256) * 31;
    return h;
}

static size_t cached_rows(const danu_context *c)
{
    return c->n_tokens < (size_t)c->cap ? c->n_tokens : (size_t)c->cap;
}

size_t dn_context_state_size(const danu_context *c)
{
    return state_bytes(c->n_tokens, c->has_logits, c->model->cfg.vocab, c->model->cfg.n_layers, cached_rows(c),
                       dn_kv_row_bytes(&c->kv));
}

danu_status dn_context_state_save(const danu_context *c, uint8_t *buf, size_t cap, size_t *written)
{
    size_t need = dn_context_state_size(c);
    if (written) *written = need;
    DN_CHECK(cap >= need, DANU_ERR_BUFFER_TOO_SMALL, "state needs %zu bytes, buffer has %zu", need, cap);
    const dn_config *cfg = &c->model->cfg;
    memcpy(buf, STATE_MAGIC, 8);
    dn_wr_u32(buf + OFF_VERSION, STATE_VERSION);
    const uint32_t hdr[HEADER_WORDS] = { (uint32_t)cfg->n_layers, (uint32_t)c->kv.kv_dim, (uint32_t)cfg->vocab,
                                         (uint32_t)cfg->hidden, (uint32_t)cfg->window, (uint32_t)c->cap,
                                         (uint32_t)c->kv.type, (uint32_t)c->has_logits };
    for (int i = 0; i < HEADER_WORDS; i++) dn_wr_u32(buf + OFF_HEADER + 4 * i, hdr[i]);
    dn_wr_u64(buf + OFF_FINGERPRINT, model_fingerprint(c->model));
    dn_wr_u64(buf + OFF_N_TOKENS, c->n_tokens);
    uint8_t *p = buf + OFF_TOKENS;
    for (size_t i = 0; i < c->n_tokens; i++) { dn_wr_u32(p, (uint32_t)c->tokens[i]); p += 4; }
    if (c->has_logits) for (int32_t i = 0; i < cfg->vocab; i++) { dn_wr_f32(p, c->logits[i]); p += 4; }
    for (int i = 0; i < 4; i++) { dn_wr_u64(p, c->sampler.rng[i]); p += 8; }
    size_t rows = cached_rows(c), row = dn_kv_row_bytes(&c->kv);
    for (int l = 0; l < cfg->n_layers; l++)
        for (size_t r = 0; r < rows; r++) {
            int64_t pos = (int64_t)(c->n_tokens - rows + r);
            dn_kv_save_row(&c->kv, l, pos, 0, p); p += row;
            dn_kv_save_row(&c->kv, l, pos, 1, p); p += row;
        }
    dn_wr_u64(p, dn_fnv1a(DN_FNV1A_INIT, buf, (size_t)(p - buf)));
    return DANU_OK;
}

/* What a checked state holds: its header, its token count, the cached
 * positions it carries per layer and how many of them this context keeps. */
typedef struct state_view {
    uint32_t hdr[HEADER_WORDS];
    uint64_t n;
    size_t saved_rows, need_rows;
} state_view;

/* Everything a load checks before it touches the context. */
static danu_status check_state(const danu_context *c, const uint8_t *buf, size_t len, state_view *v)
{
    uint32_t *hdr = v->hdr;
    const dn_config *cfg = &c->model->cfg;
    DN_CHECK(len >= state_bytes(0, 0, 0, 0, 0, 0), DANU_ERR_FORMAT, "state: %zu bytes is too short", len);
    DN_CHECK(!memcmp(buf, STATE_MAGIC, 8), DANU_ERR_FORMAT, "state: bad magic");
    DN_CHECK(dn_rd_u32(buf + OFF_VERSION) == STATE_VERSION, DANU_ERR_FORMAT, "state: version %u is not supported",
             dn_rd_u32(buf + OFF_VERSION));
    DN_CHECK(dn_rd_u64(buf + len - CHECKSUM_BYTES) == dn_fnv1a(DN_FNV1A_INIT, buf, len - CHECKSUM_BYTES),
             DANU_ERR_FORMAT, "state: checksum mismatch (corrupt data)");
    for (int i = 0; i < HEADER_WORDS; i++) hdr[i] = dn_rd_u32(buf + OFF_HEADER + 4 * i);
    DN_CHECK(hdr[0] == (uint32_t)cfg->n_layers && hdr[1] == (uint32_t)c->kv.kv_dim && hdr[2] == (uint32_t)cfg->vocab &&
             hdr[3] == (uint32_t)cfg->hidden && hdr[4] == (uint32_t)cfg->window &&
             dn_rd_u64(buf + OFF_FINGERPRINT) == model_fingerprint(c->model),
             DANU_ERR_FORMAT, "state: saved from another model");
    DN_CHECK(hdr[6] == (uint32_t)c->kv.type, DANU_ERR_FORMAT, "state: KV type %u differs from this context's %d", hdr[6],
             c->kv.type);
    DN_CHECK(hdr[7] <= 1, DANU_ERR_FORMAT, "state: bad logits flag");
    const uint64_t n = v->n = dn_rd_u64(buf + OFF_N_TOKENS);
    DN_CHECK(n <= (uint64_t)c->n_ctx, DANU_ERR_FORMAT, "state: %llu tokens exceed n_ctx %d", (unsigned long long)n,
             c->n_ctx);
    const size_t saved_rows = v->saved_rows = n < hdr[5] ? (size_t)n : (size_t)hdr[5];
    const size_t need_rows = v->need_rows = n < (uint64_t)c->cap ? (size_t)n : (size_t)c->cap;
    DN_CHECK(saved_rows >= need_rows, DANU_ERR_FORMAT, "state: holds %zu cached positions, this context needs %zu",
             saved_rows, need_rows);
    size_t expect = state_bytes(n, (int)hdr[7], cfg->vocab, cfg->n_layers, saved_rows, dn_kv_row_bytes(&c->kv));
    DN_CHECK(len == expect, DANU_ERR_FORMAT, "state: %zu bytes, expected %zu", len, expect);
    for (uint64_t i = 0; i < n; i++) {
        int32_t t = (int32_t)dn_rd_u32(buf + OFF_TOKENS + 4 * i);
        DN_CHECK(t >= 0 && t < cfg->vocab, DANU_ERR_FORMAT, "state: token %llu has bad id %d", (unsigned long long)i, t);
    }
    return DANU_OK;
}

danu_status dn_context_state_load(danu_context *c, const uint8_t *buf, size_t len)
{
    const dn_config *cfg = &c->model->cfg;
    state_view v = { { 0 }, 0, 0, 0 };
    DN_TRY(check_state(c, buf, len, &v));
    const uint64_t n = v.n;
    const size_t saved_rows = v.saved_rows, need_rows = v.need_rows;
    dn_context_clear(c);   /* everything checked: from here on the load cannot fail */
    const uint8_t *p = buf + OFF_TOKENS;
    for (uint64_t i = 0; i < n; i++) { c->tokens[i] = (int32_t)dn_rd_u32(p); p += 4; }
    if (v.hdr[7]) for (int32_t i = 0; i < cfg->vocab; i++) { c->logits[i] = dn_rd_f32(p); p += 4; }
    for (int i = 0; i < 4; i++) { c->sampler.rng[i] = dn_rd_u64(p); p += 8; }
    size_t row = dn_kv_row_bytes(&c->kv);
    for (int l = 0; l < cfg->n_layers; l++)
        for (size_t r = 0; r < saved_rows; r++) {
            int64_t pos = (int64_t)(n - saved_rows + r);
            if (r >= saved_rows - need_rows) {
                dn_kv_load_row(&c->kv, l, pos, 0, p);
                dn_kv_load_row(&c->kv, l, pos, 1, p + row);
            }
            p += 2 * row;
        }
    c->n_tokens = (size_t)n;
    c->has_logits = (int)v.hdr[7];
    return DANU_OK;
}

/* Written to PATH.tmp and renamed over PATH: a crash or a full disk never
 * leaves a half-written state where a good one was. */
danu_status dn_context_state_save_file(const danu_context *c, const char *path)
{
    size_t n = dn_context_state_size(c);
    uint8_t *buf = dn_malloc(&c->alloc, n);
    DN_CHECK(buf, DANU_ERR_NOMEM, "cannot allocate %zu bytes for the state", n);
    danu_status s = dn_context_state_save(c, buf, n, NULL);
    if (s == DANU_OK) s = dn_write_file_atomic(&c->alloc, path, buf, n);
    dn_free(&c->alloc, buf);
    return s;
}

danu_status dn_context_state_load_file(danu_context *c, const char *path)
{
    char *buf = NULL;
    size_t len = 0;
    DN_TRY(dn_read_file(path, &c->alloc, (size_t)1 << 40, &buf, &len));
    danu_status s = dn_context_state_load(c, (const uint8_t *)buf, len);
    dn_free(&c->alloc, buf);
    return s;
}
