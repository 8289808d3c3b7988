/* config.c - hyperparameters from an HF config.json or GGUF llama.* keys,
 * with one set of sanity checks for both. */
#include <string.h>
#include <math.h>
#include "model/model.h"
#include "common/error.h"

static int json_int_or(const dn_json *o, const char *key, int64_t dflt, int64_t *out)
{
    const dn_json *v = dn_json_get(o, key);
    if (!v || v->type == DN_JSON_NULL) { *out = dflt; return 1; }
    if (v->type != DN_JSON_NUMBER || !v->is_integer) return 0;
    *out = v->integer;
    return 1;
}

static danu_status need_int(const dn_json *o, const char *key, const char *what, int32_t *out)
{
    int64_t v;
    if (!dn_json_get_int(o, key, &v))
        return dn_seterr(DANU_ERR_FORMAT, "%s: config.json needs an integer \"%s\"", what, key);
    if (v < 0 || v > INT32_MAX)
        return dn_seterr(DANU_ERR_FORMAT, "%s: config.json \"%s\" = %lld is out of range", what, key, (long long)v);
    *out = (int32_t)v;
    return DANU_OK;
}

/* bos/eos may be a number or a list (take the first). */
static int32_t token_id(const dn_json *o, const char *key, int32_t dflt)
{
    const dn_json *v = dn_json_get(o, key);
    if (v && v->type == DN_JSON_ARRAY && v->n > 0) v = &v->items[0];
    if (v && v->type == DN_JSON_NUMBER && v->is_integer && v->integer >= 0 && v->integer <= INT32_MAX)
        return (int32_t)v->integer;
    return dflt;
}

danu_status dn_config_from_hf(const dn_json *j, const char *what, dn_config *c)
{
    memset(c, 0, sizeof *c);
    if (!j || j->type != DN_JSON_OBJECT) return dn_seterr(DANU_ERR_FORMAT, "%s: config.json is not an object", what);
    const dn_json *arch = dn_json_get(j, "architectures");
    const char *model_type = dn_json_get_str(j, "model_type");
    int ok = 0;
    if (arch && arch->type == DN_JSON_ARRAY) {
        for (size_t i = 0; i < arch->n; i++)
            if (arch->items[i].type == DN_JSON_STRING &&
                (!strcmp(arch->items[i].str, "MistralForCausalLM") || !strcmp(arch->items[i].str, "LlamaForCausalLM")))
                ok = 1;
    } else if (model_type && (!strcmp(model_type, "mistral") || !strcmp(model_type, "llama"))) {
        ok = 1;
    }
    if (!ok) return dn_seterr(DANU_ERR_UNSUPPORTED, "%s: architecture is not MistralForCausalLM or LlamaForCausalLM", what);

    DN_TRY(need_int(j, "vocab_size", what, &c->vocab));
    DN_TRY(need_int(j, "hidden_size", what, &c->hidden));
    DN_TRY(need_int(j, "num_hidden_layers", what, &c->n_layers));
    DN_TRY(need_int(j, "num_attention_heads", what, &c->n_heads));
    DN_TRY(need_int(j, "intermediate_size", what, &c->ffn));
    int64_t v;
    if (!json_int_or(j, "num_key_value_heads", c->n_heads, &v) || v <= 0 || v > INT32_MAX)
        return dn_seterr(DANU_ERR_FORMAT, "%s: bad num_key_value_heads", what);
    c->n_kv_heads = (int32_t)v;
    if (c->n_heads <= 0) return dn_seterr(DANU_ERR_FORMAT, "%s: num_attention_heads must be positive", what);
    if (!json_int_or(j, "head_dim", c->hidden / c->n_heads, &v) || v <= 0 || v > 4096)
        return dn_seterr(DANU_ERR_FORMAT, "%s: bad head_dim", what);
    c->head_dim = (int32_t)v;
    if (!json_int_or(j, "max_position_embeddings", 4096, &v) || v <= 0 || v > (1 << 24))
        return dn_seterr(DANU_ERR_FORMAT, "%s: bad max_position_embeddings", what);
    c->max_ctx = (int32_t)v;
    if (!json_int_or(j, "sliding_window", 0, &v) || v < 0 || v > INT32_MAX)
        return dn_seterr(DANU_ERR_FORMAT, "%s: bad sliding_window", what);
    c->window = (int32_t)v;

    double d = 1e-6;
    const dn_json *eps = dn_json_get(j, "rms_norm_eps");
    if (eps && !dn_json_get_num(j, "rms_norm_eps", &d)) return dn_seterr(DANU_ERR_FORMAT, "%s: bad rms_norm_eps", what);
    c->rms_eps = (float)d;
    /* rope_theta: top level (transformers 4), inside rope_parameters (5), or 10000 */
    d = 10000.0;
    const dn_json *rp = dn_json_get(j, "rope_parameters");
    if (dn_json_get(j, "rope_theta")) {
        if (!dn_json_get_num(j, "rope_theta", &d)) return dn_seterr(DANU_ERR_FORMAT, "%s: bad rope_theta", what);
    } else if (rp && rp->type == DN_JSON_OBJECT && dn_json_get(rp, "rope_theta")) {
        if (!dn_json_get_num(rp, "rope_theta", &d)) return dn_seterr(DANU_ERR_FORMAT, "%s: bad rope_parameters.rope_theta", what);
    }
    c->rope_theta = (float)d;
    /* RoPE scaling variants change the math: refuse rather than compute wrong logits */
    const dn_json *rs = dn_json_get(j, "rope_scaling");
    const dn_json *scal = rs && rs->type == DN_JSON_OBJECT ? rs : (rp && rp->type == DN_JSON_OBJECT ? rp : NULL);
    if (rs && rs->type != DN_JSON_NULL && rs->type != DN_JSON_OBJECT)
        return dn_seterr(DANU_ERR_FORMAT, "%s: bad rope_scaling", what);
    if (scal) {
        const char *t = dn_json_get_str(scal, "rope_type");
        if (!t) t = dn_json_get_str(scal, "type");
        if (t && strcmp(t, "default") != 0)
            return dn_seterr(DANU_ERR_UNSUPPORTED, "%s: rope scaling type \"%s\" is not supported", what, t);
    }
    int tied = 0;
    if (dn_json_get(j, "tie_word_embeddings") && !dn_json_get_bool(j, "tie_word_embeddings", &tied))
        return dn_seterr(DANU_ERR_FORMAT, "%s: bad tie_word_embeddings", what);
    c->tied = tied;
    const char *act = dn_json_get_str(j, "hidden_act");
    if (act && strcmp(act, "silu") != 0)
        return dn_seterr(DANU_ERR_UNSUPPORTED, "%s: hidden_act \"%s\" is not supported (silu only)", what, act);
    c->bos = token_id(j, "bos_token_id", 1);
    c->eos = token_id(j, "eos_token_id", 2);
    c->rope_interleaved = 0;
    return dn_config_check(c, what);
}

static danu_status gguf_need(const dn_gguf *g, const char *key, const char *what, int32_t *out)
{
    int64_t v;
    if (!dn_gguf_get_i64(g, key, &v)) return dn_seterr(DANU_ERR_FORMAT, "%s: missing integer key %s", what, key);
    if (v < 0 || v > INT32_MAX) return dn_seterr(DANU_ERR_FORMAT, "%s: %s = %lld is out of range", what, key, (long long)v);
    *out = (int32_t)v;
    return DANU_OK;
}

danu_status dn_config_from_gguf(const dn_gguf *g, const char *what, dn_config *c)
{
    memset(c, 0, sizeof *c);
    const char *arch;
    uint64_t alen;
    if (!dn_gguf_get_str(g, "general.architecture", &arch, &alen))
        return dn_seterr(DANU_ERR_FORMAT, "%s: missing general.architecture", what);
    if (!(alen == 5 && !memcmp(arch, "llama", 5)))
        return dn_seterr(DANU_ERR_UNSUPPORTED, "%s: architecture \"%.*s\" is not supported (llama only)", what,
                         (int)(alen > 64 ? 64 : alen), arch);
    DN_TRY(gguf_need(g, "llama.embedding_length", what, &c->hidden));
    DN_TRY(gguf_need(g, "llama.block_count", what, &c->n_layers));
    DN_TRY(gguf_need(g, "llama.attention.head_count", what, &c->n_heads));
    DN_TRY(gguf_need(g, "llama.feed_forward_length", what, &c->ffn));
    DN_TRY(gguf_need(g, "llama.context_length", what, &c->max_ctx));
    int64_t v;
    c->n_kv_heads = dn_gguf_get_i64(g, "llama.attention.head_count_kv", &v) && v > 0 && v <= INT32_MAX ? (int32_t)v : c->n_heads;
    if (c->n_heads <= 0) return dn_seterr(DANU_ERR_FORMAT, "%s: llama.attention.head_count must be positive", what);
    c->head_dim = c->hidden / c->n_heads;
    if (dn_gguf_get_i64(g, "llama.attention.key_length", &v)) {
        if (v <= 0 || v > 4096) return dn_seterr(DANU_ERR_FORMAT, "%s: bad llama.attention.key_length", what);
        c->head_dim = (int32_t)v;
    } else if (dn_gguf_get_i64(g, "llama.rope.dimension_count", &v) && v > 0 && v <= 4096) {
        c->head_dim = (int32_t)v;
    }
    if (dn_gguf_get_i64(g, "llama.rope.dimension_count", &v) && v != c->head_dim)
        return dn_seterr(DANU_ERR_UNSUPPORTED, "%s: partial rotary (rope.dimension_count %lld != head_dim %d)", what,
                         (long long)v, c->head_dim);
    double d;
    c->rope_theta = dn_gguf_get_f64(g, "llama.rope.freq_base", &d) ? (float)d : 10000.0f;
    c->rms_eps = dn_gguf_get_f64(g, "llama.attention.layer_norm_rms_epsilon", &d) ? (float)d : 1e-5f;
    if (dn_gguf_get_i64(g, "llama.attention.sliding_window", &v)) {
        if (v < 0 || v > INT32_MAX) return dn_seterr(DANU_ERR_FORMAT, "%s: bad llama.attention.sliding_window", what);
        c->window = (int32_t)v;
    }
    const char *st;
    uint64_t sl;
    if (dn_gguf_get_str(g, "llama.rope.scaling.type", &st, &sl) && !(sl == 4 && !memcmp(st, "none", 4)))
        return dn_seterr(DANU_ERR_UNSUPPORTED, "%s: rope scaling \"%.*s\" is not supported", what, (int)(sl > 32 ? 32 : sl), st);
    uint64_t n_tok;
    int32_t et;
    if (dn_gguf_get_i64(g, "llama.vocab_size", &v) && v > 0 && v <= INT32_MAX) c->vocab = (int32_t)v;
    else if (dn_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n_tok) && n_tok > 0 && n_tok <= INT32_MAX) c->vocab = (int32_t)n_tok;
    else return dn_seterr(DANU_ERR_FORMAT, "%s: cannot tell the vocabulary size", what);
    c->bos = dn_gguf_get_i64(g, "tokenizer.ggml.bos_token_id", &v) && v >= 0 && v < c->vocab ? (int32_t)v : 1;
    c->eos = dn_gguf_get_i64(g, "tokenizer.ggml.eos_token_id", &v) && v >= 0 && v < c->vocab ? (int32_t)v : 2;
    c->tied = dn_gguf_find_tensor(g, "output.weight") == NULL;
    c->rope_interleaved = 1;
    return dn_config_check(c, what);
}

danu_status dn_config_check(const dn_config *c, const char *what)
{
    DN_CHECK(c->vocab > 0 && c->vocab <= (1 << 22), DANU_ERR_FORMAT, "%s: vocabulary size %d is out of range", what, c->vocab);
    DN_CHECK(c->hidden > 0 && c->hidden <= (1 << 16), DANU_ERR_FORMAT, "%s: hidden size %d is out of range", what, c->hidden);
    DN_CHECK(c->n_layers > 0 && c->n_layers <= 1024, DANU_ERR_FORMAT, "%s: layer count %d is out of range", what, c->n_layers);
    DN_CHECK(c->n_heads > 0 && c->n_heads <= 1024, DANU_ERR_FORMAT, "%s: head count %d is out of range", what, c->n_heads);
    DN_CHECK(c->n_kv_heads > 0 && c->n_heads % c->n_kv_heads == 0, DANU_ERR_FORMAT,
             "%s: %d heads are not a multiple of %d kv heads", what, c->n_heads, c->n_kv_heads);
    DN_CHECK(c->head_dim > 0 && c->head_dim % 2 == 0 && c->head_dim <= 1024, DANU_ERR_FORMAT,
             "%s: head_dim %d must be even and at most 1024", what, c->head_dim);
    DN_CHECK(c->ffn > 0 && c->ffn <= (1 << 20), DANU_ERR_FORMAT, "%s: ffn size %d is out of range", what, c->ffn);
    DN_CHECK(c->max_ctx > 0 && c->max_ctx <= (1 << 24), DANU_ERR_FORMAT, "%s: context length %d is out of range", what, c->max_ctx);
    DN_CHECK(c->window >= 0, DANU_ERR_FORMAT, "%s: negative sliding window", what);
    DN_CHECK(isfinite(c->rope_theta) && c->rope_theta > 0, DANU_ERR_FORMAT, "%s: rope theta must be positive", what);
    DN_CHECK(isfinite(c->rms_eps) && c->rms_eps > 0 && c->rms_eps < 1, DANU_ERR_FORMAT, "%s: rms eps out of range", what);
    DN_CHECK(c->bos >= 0 && c->bos < c->vocab && c->eos >= 0 && c->eos < c->vocab, DANU_ERR_FORMAT,
             "%s: bos/eos ids outside the vocabulary", what);
    return DANU_OK;
}
