/* gguf_model.c - shared pieces of llama.cpp-style Llama/Mistral GGUFs:
 * tensor names, llama_ftype, the ordered metadata list and its encoder, the
 * converter's metadata, and a free-space check. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model/gguf_model.h"
#include "model/model.h"
#include "quant/quant.h"
#include "common/error.h"
#include "common/bytes.h"
#include "common/os.h"

/* ------------------------------------------------------------------ */
/* Tensor names                                                        */
/* ------------------------------------------------------------------ */

const char *const dn_llama_layer_hf[9] = {
    "input_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "post_attention_layernorm", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"
};
const char *const dn_llama_layer_gguf[9] = {
    "attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"
};

/* GGUF [0] and HF [1] names of token_embd, output_norm and output. */
static const char *const whole_names[2][3] = {
    { "token_embd.weight", "output_norm.weight", "output.weight" },
    { "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight" },
};

static int put_name(char *out, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (n + 1 > cap) return 0;
    memcpy(out, s, n + 1);
    return 1;
}

int dn_llama_tensor_name(int32_t format, int which, int layer, char *out, size_t cap)
{
    int hf = format == DANU_FORMAT_HF;
    if (which >= DN_LLAMA_TOKEN_EMBD && which <= DN_LLAMA_OUTPUT)
        return put_name(out, cap, whole_names[hf][which - DN_LLAMA_TOKEN_EMBD]);
    if (which < 0 || which > DN_LLAMA_FFN_DOWN) return 0;
    int k = hf ? snprintf(out, cap, "model.layers.%d.%s.weight", layer, dn_llama_layer_hf[which])
               : snprintf(out, cap, "blk.%d.%s.weight", layer, dn_llama_layer_gguf[which]);
    return k >= 0 && (size_t)k < cap;
}

int dn_llama_gguf_name(const char *hf, char *out, size_t cap, int *layer, int *which)
{
    *layer = -1;
    *which = -1;
    for (int i = 0; i < 3; i++)
        if (!strcmp(hf, whole_names[1][i])) return put_name(out, cap, whole_names[0][i]);
    static const char prefix[] = "model.layers.";
    if (strncmp(hf, prefix, sizeof prefix - 1) != 0) return 0;
    const char *p = hf + sizeof prefix - 1;
    long l = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9' && digits < 6) { l = l * 10 + (*p++ - '0'); digits++; }
    if (!digits || *p != '.' || (digits > 1 && p[-digits] == '0')) return 0;
    p++;
    for (int j = 0; j < 9; j++) {
        size_t n = strlen(dn_llama_layer_hf[j]);
        if (!strncmp(p, dn_llama_layer_hf[j], n) && !strcmp(p + n, ".weight")) {
            int k = snprintf(out, cap, "blk.%ld.%s.weight", l, dn_llama_layer_gguf[j]);
            if (k < 0 || (size_t)k >= cap) return 0;
            *layer = (int)l;
            *which = j;
            return 1;
        }
    }
    return 0;
}

int dn_llama_is_danube(const dn_gguf *g, const dn_config *c)
{
    static const char *keys[] = { "general.name", "general.basename", "general.finetune" };
    for (int i = 0; i < 3; i++) {
        const char *s;
        uint64_t n;
        if (dn_gguf_get_str(g, keys[i], &s, &n))
            for (uint64_t k = 0; k + 6 <= n; k++)
                if (!dn_ascii_ncasecmp(s + k, "danube", 6)) return 1;
    }
    return c->vocab == 32000 && c->hidden == 2560 && c->n_layers == 24 && c->n_heads == 32 && c->n_kv_heads == 8 &&
           c->ffn == 6912 && c->max_ctx == 16384;
}

int32_t dn_llama_fallback_type(int32_t type, int64_t cols)
{
    if (cols % dn_type_block_size(type) == 0) return type;
    int32_t fb = type == DANU_TYPE_Q4_K ? DANU_TYPE_Q5_0 : type == DANU_TYPE_Q5_K ? DANU_TYPE_Q5_1
               : type == DANU_TYPE_Q6_K ? DANU_TYPE_Q8_0 : DANU_TYPE_F16;
    return cols % dn_type_block_size(fb) == 0 ? fb : DANU_TYPE_F16;
}

uint32_t dn_llama_ftype(int32_t type)
{
    switch (type) {
    case DANU_TYPE_F32: return 0;
    case DANU_TYPE_F16: return 1;
    case DANU_TYPE_Q4_0: return 2;
    case DANU_TYPE_Q4_1: return 3;
    case DANU_TYPE_Q8_0: return 7;
    case DANU_TYPE_Q5_0: return 8;
    case DANU_TYPE_Q5_1: return 9;
    case DANU_TYPE_Q4_K: return 14;   /* Q4_K_S: every matrix q4_K */
    case DANU_TYPE_Q5_K: return 16;   /* Q5_K_S */
    case DANU_TYPE_Q6_K: return 18;
    default: return 32;               /* BF16 */
    }
}

/* ------------------------------------------------------------------ */
/* Metadata list                                                       */
/* ------------------------------------------------------------------ */

void dn_meta_init(dn_meta_list *l, const dn_alloc *a)
{
    memset(l, 0, sizeof *l);
    l->a = a;
}

void dn_meta_free(dn_meta_list *l)
{
    if (l->a) dn_free(l->a, l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

int64_t dn_meta_find(const dn_meta_list *l, const char *key)
{
    for (int64_t i = 0; i < l->n; i++)
        if (!strcmp(l->v[i].key, key)) return i;
    return -1;
}

void dn_meta_remove(dn_meta_list *l, const char *key)
{
    int64_t i = dn_meta_find(l, key);
    if (i < 0) return;
    memmove(&l->v[i], &l->v[i + 1], (size_t)(l->n - i - 1) * sizeof *l->v);
    l->n--;
}

danu_status dn_meta_insert(dn_meta_list *l, int64_t pos, const dn_meta *kv)
{
    int64_t old = dn_meta_find(l, kv->key);
    if (old >= 0) {
        dn_meta_remove(l, kv->key);
        if (pos > old) pos--;
    }
    if (pos < 0 || pos > l->n) pos = l->n;
    if (l->n == l->cap) {
        int64_t cap = l->cap ? l->cap * 2 : 64;
        dn_meta *v = dn_realloc(l->a, l->v, (size_t)cap * sizeof *v);
        if (!v) return dn_seterr(DANU_ERR_NOMEM, "gguf metadata: out of memory");
        l->v = v;
        l->cap = cap;
    }
    memmove(&l->v[pos + 1], &l->v[pos], (size_t)(l->n - pos) * sizeof *l->v);
    l->v[pos] = *kv;
    l->n++;
    return DANU_OK;
}

danu_status dn_meta_put(dn_meta_list *l, const dn_meta *kv)
{
    int64_t i = dn_meta_find(l, kv->key);
    if (i < 0) return dn_meta_append(l, kv);
    l->v[i] = *kv;
    return DANU_OK;
}

danu_status dn_meta_from_gguf(dn_meta_list *l, const dn_gguf *g)
{
    for (int64_t i = 0; i < dn_gguf_n_kv(g); i++) {
        dn_meta kv;
        memset(&kv, 0, sizeof kv);
        kv.key = dn_gguf_key(g, i);
        kv.type = dn_gguf_kv_type(g, i);
        kv.src = g;
        DN_TRY(dn_meta_append(l, &kv));
    }
    return DANU_OK;
}

dn_meta dn_meta_u32(const char *key, uint32_t v)
{
    dn_meta kv;
    memset(&kv, 0, sizeof kv);
    kv.key = key;
    kv.type = DN_GGUF_U32;
    kv.u = v;
    return kv;
}

dn_meta dn_meta_f32(const char *key, float v)
{
    dn_meta kv = dn_meta_u32(key, 0);
    kv.type = DN_GGUF_F32;
    kv.f = v;
    return kv;
}

dn_meta dn_meta_bool(const char *key, int v)
{
    dn_meta kv = dn_meta_u32(key, v ? 1 : 0);
    kv.type = DN_GGUF_BOOL;
    return kv;
}

dn_meta dn_meta_str(const char *key, const char *s, size_t len)
{
    dn_meta kv = dn_meta_u32(key, 0);
    kv.type = DN_GGUF_STRING;
    kv.s = s;
    kv.len = len;
    return kv;
}


/* Store v as one element of type t (host layout) at p. */
static void store_elem(uint8_t *p, int32_t t, int64_t iv, double fv)
{
    switch (t) {
    case DN_GGUF_U8: case DN_GGUF_I8: case DN_GGUF_BOOL: { uint8_t x = (uint8_t)iv; memcpy(p, &x, 1); break; }
    case DN_GGUF_U16: case DN_GGUF_I16: { uint16_t x = (uint16_t)iv; memcpy(p, &x, 2); break; }
    case DN_GGUF_U32: case DN_GGUF_I32: { uint32_t x = (uint32_t)iv; memcpy(p, &x, 4); break; }
    case DN_GGUF_U64: case DN_GGUF_I64: { uint64_t x = (uint64_t)iv; memcpy(p, &x, 8); break; }
    case DN_GGUF_F32: { float x = (float)fv; memcpy(p, &x, 4); break; }
    default: { memcpy(p, &fv, 8); break; }
    }
}

/* Copy key's array value from its source file. *skipped = 1 when an element
 * cannot be read back exactly (u64 above INT64_MAX, bool elements). */
static danu_status copy_array(const dn_meta *kv, dn_gguf_writer *w, const dn_alloc *a, int *skipped)
{
    int32_t et;
    uint64_t n;
    if (!dn_gguf_get_arr(kv->src, kv->key, &et, &n))
        return dn_seterr(DANU_ERR_INTERNAL, "gguf metadata: cannot read array %s", kv->key);
    if (et == DN_GGUF_STRING) {
        if (n > SIZE_MAX / sizeof(char *)) return dn_seterr(DANU_ERR_NOMEM, "gguf metadata: %s too large", kv->key);
        const char **s = dn_malloc(a, (size_t)n * sizeof *s);
        size_t *lens = dn_malloc(a, (size_t)n * sizeof *lens);
        danu_status st = s && lens ? DANU_OK : dn_seterr(DANU_ERR_NOMEM, "gguf metadata: out of memory for %s", kv->key);
        for (uint64_t i = 0; st == DANU_OK && i < n; i++) {
            uint64_t len;
            if (!dn_gguf_arr_str(kv->src, kv->key, i, &s[i], &len))
                st = dn_seterr(DANU_ERR_INTERNAL, "gguf metadata: cannot read %s[%llu]", kv->key, (unsigned long long)i);
            else lens[i] = (size_t)len;
        }
        if (st == DANU_OK) st = dn_gguf_w_arr_str(w, kv->key, s, lens, n);
        dn_free(a, s);
        dn_free(a, lens);
        return st;
    }
    uint32_t sz = dn_gguf_value_size(et);
    if (!sz || et == DN_GGUF_BOOL) { *skipped = 1; return DANU_OK; }
    if (n > SIZE_MAX / sz) return dn_seterr(DANU_ERR_NOMEM, "gguf metadata: %s too large", kv->key);
    uint8_t *buf = dn_malloc(a, (size_t)n * sz);
    if (!buf) return dn_seterr(DANU_ERR_NOMEM, "gguf metadata: out of memory for %s", kv->key);
    for (uint64_t i = 0; i < n && !*skipped; i++) {
        int64_t iv = 0;
        double fv = 0;
        int ok = et == DN_GGUF_F32 || et == DN_GGUF_F64 ? dn_gguf_arr_f64(kv->src, kv->key, i, &fv)
                                                        : dn_gguf_arr_i64(kv->src, kv->key, i, &iv);
        if (!ok) *skipped = 1;
        else store_elem(buf + i * sz, et, iv, fv);
    }
    danu_status st = *skipped ? DANU_OK : dn_gguf_w_arr(w, kv->key, et, buf, n);
    dn_free(a, buf);
    return st;
}

/* Encode a key whose value lives in a source GGUF. */
static danu_status copy_kv(const dn_meta *kv, dn_gguf_writer *w, const dn_alloc *a, int *skipped)
{
    const dn_gguf *g = kv->src;
    uint64_t u;
    int64_t i;
    double d;
    int b;
    const char *s;
    switch (kv->type) {
    case DN_GGUF_U32:
        if (dn_gguf_get_u64(g, kv->key, &u)) return dn_gguf_w_u32(w, kv->key, (uint32_t)u);
        break;
    case DN_GGUF_I32:
        if (dn_gguf_get_i64(g, kv->key, &i)) return dn_gguf_w_i32(w, kv->key, (int32_t)i);
        break;
    case DN_GGUF_U64:
        if (dn_gguf_get_u64(g, kv->key, &u)) return dn_gguf_w_u64(w, kv->key, u);
        break;
    case DN_GGUF_F32:
        if (dn_gguf_get_f64(g, kv->key, &d)) return dn_gguf_w_f32(w, kv->key, (float)d);
        break;
    case DN_GGUF_BOOL:
        if (dn_gguf_get_bool(g, kv->key, &b)) return dn_gguf_w_bool(w, kv->key, b);
        break;
    case DN_GGUF_STRING:
        if (dn_gguf_get_str(g, kv->key, &s, &u)) return dn_gguf_w_str(w, kv->key, s, (size_t)u);
        break;
    case DN_GGUF_ARRAY:
        return copy_array(kv, w, a, skipped);
    case DN_GGUF_U8: case DN_GGUF_U16:
        if (dn_gguf_get_u64(g, kv->key, &u)) return dn_gguf_w_scalar(w, kv->key, kv->type, (int64_t)u, 0);
        break;
    case DN_GGUF_I8: case DN_GGUF_I16: case DN_GGUF_I64:
        if (dn_gguf_get_i64(g, kv->key, &i)) return dn_gguf_w_scalar(w, kv->key, kv->type, i, 0);
        break;
    case DN_GGUF_F64:
        if (dn_gguf_get_f64(g, kv->key, &d)) return dn_gguf_w_scalar(w, kv->key, kv->type, 0, d);
        break;
    default:
        break;
    }
    *skipped = 1;   /* a value the reader would not give back as its type */
    return DANU_OK;
}

danu_status dn_meta_write(const dn_meta_list *l, dn_gguf_writer *w, const dn_logger *lg)
{
    for (int64_t k = 0; k < l->n; k++) {
        const dn_meta *kv = &l->v[k];
        if (kv->src) {
            int skipped = 0;
            DN_TRY(copy_kv(kv, w, l->a, &skipped));
            if (skipped && lg)
                dn_log(lg, DANU_LOG_WARN, "metadata key %s (GGUF type %d) cannot be copied; left out", kv->key,
                       (int)kv->type);
            continue;
        }
        switch (kv->type) {
        case DN_GGUF_U32: DN_TRY(dn_gguf_w_u32(w, kv->key, (uint32_t)kv->u)); break;
        case DN_GGUF_I32: DN_TRY(dn_gguf_w_i32(w, kv->key, (int32_t)(uint32_t)kv->u)); break;
        case DN_GGUF_U64: DN_TRY(dn_gguf_w_u64(w, kv->key, kv->u)); break;
        case DN_GGUF_F32: DN_TRY(dn_gguf_w_f32(w, kv->key, kv->f)); break;
        case DN_GGUF_BOOL: DN_TRY(dn_gguf_w_bool(w, kv->key, (int)kv->u)); break;
        case DN_GGUF_STRING: DN_TRY(dn_gguf_w_str(w, kv->key, kv->s, (size_t)kv->len)); break;
        case DN_GGUF_ARRAY:
            if (kv->elem_type == DN_GGUF_STRING) DN_TRY(dn_gguf_w_arr_str(w, kv->key, kv->strs, kv->lens, kv->count));
            else DN_TRY(dn_gguf_w_arr(w, kv->key, kv->elem_type, kv->arr, kv->count));
            break;
        default:
            return dn_seterr(DANU_ERR_INTERNAL, "gguf metadata: key %s has type %d", kv->key, (int)kv->type);
        }
    }
    return DANU_OK;
}

/* ------------------------------------------------------------------ */
/* The converter's metadata                                            */
/* ------------------------------------------------------------------ */

static dn_meta arr_kv(const char *key, int32_t elem_type, const void *data, uint64_t n)
{
    dn_meta kv = dn_meta_u32(key, 0);
    kv.type = DN_GGUF_ARRAY;
    kv.elem_type = elem_type;
    kv.arr = data;
    kv.count = n;
    return kv;
}

danu_status dn_llama_converter_kv(dn_meta_list *l, const dn_llama_meta *m)
{
    dn_meta kv;
#define ADD(expr) do { kv = (expr); DN_TRY(dn_meta_append(l, &kv)); } while (0)
    ADD(dn_meta_str("general.architecture", "llama", 5));
    ADD(dn_meta_str("general.type", "model", 5));
    ADD(dn_meta_str("general.name", m->name, m->name_len));
    ADD(dn_meta_u32("general.alignment", 32));
    ADD(dn_meta_u32("llama.block_count", (uint32_t)m->n_layers));
    ADD(dn_meta_u32("llama.context_length", (uint32_t)m->max_ctx));
    ADD(dn_meta_u32("llama.embedding_length", (uint32_t)m->hidden));
    ADD(dn_meta_u32("llama.feed_forward_length", (uint32_t)m->ffn));
    ADD(dn_meta_u32("llama.attention.head_count", (uint32_t)m->heads));
    ADD(dn_meta_u32("llama.attention.head_count_kv", (uint32_t)m->kv_heads));
    if (m->has_rope_theta) ADD(dn_meta_f32("llama.rope.freq_base", m->rope_theta));
    ADD(dn_meta_f32("llama.attention.layer_norm_rms_epsilon", m->rms_eps));
    if (m->has_head_dim) {
        ADD(dn_meta_u32("llama.attention.key_length", (uint32_t)m->head_dim));
        ADD(dn_meta_u32("llama.attention.value_length", (uint32_t)m->head_dim));
    }
    if (m->window > 0) ADD(dn_meta_u32("llama.attention.sliding_window", (uint32_t)m->window));
    ADD(dn_meta_u32("general.file_type", m->file_type));
    ADD(dn_meta_u32("llama.vocab_size", (uint32_t)m->vocab));
    ADD(dn_meta_u32("llama.rope.dimension_count", (uint32_t)m->head_dim));
    ADD(dn_meta_str("tokenizer.ggml.model", "llama", 5));
    ADD(dn_meta_str("tokenizer.ggml.pre", "default", 7));
    kv = arr_kv("tokenizer.ggml.tokens", DN_GGUF_STRING, NULL, (uint64_t)m->vocab);
    kv.strs = m->pieces;
    kv.lens = m->lens;
    DN_TRY(dn_meta_append(l, &kv));
    ADD(arr_kv("tokenizer.ggml.scores", DN_GGUF_F32, m->scores, (uint64_t)m->vocab));
    ADD(arr_kv("tokenizer.ggml.token_type", DN_GGUF_I32, m->types, (uint64_t)m->vocab));
    if (m->bos >= 0) ADD(dn_meta_u32("tokenizer.ggml.bos_token_id", (uint32_t)m->bos));
    if (m->eos >= 0) ADD(dn_meta_u32("tokenizer.ggml.eos_token_id", (uint32_t)m->eos));
    if (m->unk >= 0) ADD(dn_meta_u32("tokenizer.ggml.unknown_token_id", (uint32_t)m->unk));
    if (m->pad >= 0) ADD(dn_meta_u32("tokenizer.ggml.padding_token_id", (uint32_t)m->pad));
    if (m->add_bos >= 0) ADD(dn_meta_bool("tokenizer.ggml.add_bos_token", m->add_bos));
    if (m->add_eos >= 0) ADD(dn_meta_bool("tokenizer.ggml.add_eos_token", m->add_eos));
    if (m->chat_template) ADD(dn_meta_str("tokenizer.chat_template", m->chat_template, m->chat_template_len));
    ADD(dn_meta_u32("general.quantization_version", 2));
#undef ADD
    return DANU_OK;
}

/* ------------------------------------------------------------------ */
/* Free space                                                          */
/* ------------------------------------------------------------------ */

danu_status dn_check_free_space(const dn_alloc *a, const char *out_path, uint64_t need)
{
    char *parent = dn_path_parent(a, out_path);
    if (!parent) return dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", out_path);
    uint64_t avail = 0;
    danu_status s = dn_disk_free(parent, &avail);
    if (s != DANU_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", dn_lasterr());
        s = dn_seterr(s, "%s: %s", out_path, why);
    } else if (avail < need) {
        s = dn_seterr(DANU_ERR_IO, "%s: not enough disk space: %.1f MB needed, %.1f MB free in %s", out_path,
                      (double)need / 1e6, (double)avail / 1e6, parent);
    }
    dn_free(a, parent);
    return s;
}
