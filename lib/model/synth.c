/* synth.c - synthetic-weight models (spec: synthetic-model.md). Every weight
 * is a pure function of (seed, tensor index, element index), so a model of
 * any size is generated and streamed to disk one chunk of rows at a time, as
 * an HF directory (config.json + model.safetensors + tokenizer files) or as
 * a GGUF file laid out the way llama.cpp's converter writes it. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/attr.h"
#include "model/synth.h"
#include "model/gguf_model.h"
#include "common/bytes.h"
#include "common/error.h"
#include "common/os.h"
#include "common/threadpool.h"
#include "format/gguf.h"
#include "format/safetensors.h"
#include "format/spm.h"
#include "quant/quant.h"
#include "text/tokenizer.h"

/* ------------------------------------------------------------------ */
/* Configurations and the value function                               */
/* ------------------------------------------------------------------ */

static const dn_synth_config configs[] = {
    /* name          vocab  hidden heads kv hd  ffn   L   window max_ctx theta    eps   tied */
    { "danube-1.8b", 32000, 2560, 32, 8, 80, 6912, 24, 4096, 16384, 10000.0f, 1e-5f, 0 },
    { "tiny-a",      32000, 160,  2,  1, 80, 432,  2,  32,   512,   10000.0f, 1e-5f, 0 },
    { "tiny-b",      1024,  256,  8,  2, 32, 688,  2,  8,    256,   10000.0f, 1e-5f, 1 },
    { "tiny-q",      1024,  256,  4,  2, 64, 768,  2,  16,   256,   10000.0f, 1e-5f, 0 },
};

const dn_synth_config *dn_synth_config_find(const char *name)
{
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++)
        if (!strcmp(configs[i].name, name)) return &configs[i];
    return NULL;
}

static inline uint64_t synth_key(uint64_t seed, uint64_t t, uint64_t i)
{
    return (seed << 48) | (t << 32) | i;
}

/* splitmix64 finaliser, then the top 24 bits as a float in [-1, 1). */
static inline float synth_unit(uint64_t key)
{
    uint64_t z = key + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z = z ^ (z >> 31);
    float u = (float)(z >> 40) * 0x1p-24f;   /* exact */
    return u * 2.0f - 1.0f;                    /* exact: no rounding to fuse */
}

static float linear_scale(int64_t fan_in)
{
    return (float)sqrt(3.0 / (double)fan_in);
}

/* The float32 weight before bf16 rounding. r * s is one multiply, which no
 * compiler can fuse with anything. For norms, r * 2^-4 is exact, so even a
 * fused r * 0.0625f + 1.0f rounds once exactly like the two-step form; the
 * volatile makes the two separate operations explicit anyway (norms are
 * small, the cost does not matter). */
static inline float synth_f32(uint64_t key, int kind, float scale)
{
    float r = synth_unit(key);
    if (kind == DN_SYNTH_LINEAR) return r * scale;
    if (kind == DN_SYNTH_NORM) {
        volatile float p = r * 0.0625f;
        return p + 1.0f;
    }
    return r;
}

/* Spec rounding: ties to even on the float32 bits (values are never NaN). */
static inline uint16_t round_bf16(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, 4);
    return (uint16_t)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

uint16_t dn_synth_value_bf16(uint64_t seed, uint64_t t, uint64_t i, int kind, int64_t fan_in)
{
    float scale = kind == DN_SYNTH_LINEAR && fan_in > 0 ? linear_scale(fan_in) : 0.0f;
    return round_bf16(synth_f32(synth_key(seed, t, i), kind, scale));
}

/* ------------------------------------------------------------------ */
/* Tensor list                                                         */
/* ------------------------------------------------------------------ */

typedef struct synth_tensor {
    char hf_name[64];
    char gguf_name[40];
    uint64_t t;             /* spec index */
    int kind;               /* DN_SYNTH_* */
    int64_t fan_in;
    int32_t n_dims;         /* 1 (norm) or 2 */
    int64_t rows, cols;     /* rows = 1 for norms */
    int permute;            /* GGUF q/k: rows are permuted per head */
    int32_t out_type;       /* storage type in the file being written */
    uint64_t out_bytes;
    uint64_t file_bytes;    /* out_bytes plus alignment padding (GGUF) */
} synth_tensor;

static int64_t n_synth_tensors(const dn_synth_config *c)
{
    return 2 + 9 * (int64_t)c->layers + (c->tied ? 0 : 1);
}

static void set_tensor(synth_tensor *d, uint64_t t, int kind, int64_t rows, int64_t cols, int64_t fan_in)
{
    d->t = t;
    d->kind = kind;
    d->fan_in = fan_in;
    d->n_dims = kind == DN_SYNTH_NORM ? 1 : 2;
    d->rows = kind == DN_SYNTH_NORM ? 1 : rows;
    d->cols = cols;
}

static void name_tensor(synth_tensor *t, int which, int layer)
{
    dn_llama_tensor_name(DANU_FORMAT_HF, which, layer, t->hf_name, sizeof t->hf_name);
    dn_llama_tensor_name(DANU_FORMAT_GGUF, which, layer, t->gguf_name, sizeof t->gguf_name);
}

/* Fill the spec's tensor list, in spec order (which is also the order
 * llama.cpp's converter writes the GGUF tensors in). */
static void build_tensors(const dn_synth_config *c, synth_tensor *d)
{
    int64_t H = c->hidden, Q = (int64_t)c->heads * c->head_dim, KV = (int64_t)c->kv_heads * c->head_dim;
    int64_t F = c->ffn, V = c->vocab;
    int64_t k = 0;
    name_tensor(&d[k], DN_LLAMA_TOKEN_EMBD, 0);
    set_tensor(&d[k++], 0, DN_SYNTH_EMBED, V, H, 0);
    for (int32_t l = 0; l < c->layers; l++) {
        uint64_t b = 1 + 9 * (uint64_t)l;
        const int64_t shape[9][3] = {   /* rows, cols, fan_in */
            { 1, H, 0 }, { Q, H, H }, { KV, H, H }, { KV, H, H }, { H, Q, Q },
            { 1, H, 0 }, { F, H, H }, { F, H, H }, { H, F, F },
        };
        for (int j = 0; j < 9; j++, k++) {
            name_tensor(&d[k], j, (int)l);
            int kind = (j == 0 || j == 5) ? DN_SYNTH_NORM : DN_SYNTH_LINEAR;
            set_tensor(&d[k], b + (uint64_t)j, kind, shape[j][0], shape[j][1], shape[j][2]);
            d[k].permute = j == 1 || j == 2;
        }
    }
    uint64_t t = 1 + 9 * (uint64_t)c->layers;
    name_tensor(&d[k], DN_LLAMA_OUTPUT_NORM, 0);
    set_tensor(&d[k++], t, DN_SYNTH_NORM, 1, H, 0);
    if (!c->tied) {
        name_tensor(&d[k], DN_LLAMA_OUTPUT, 0);
        set_tensor(&d[k++], t + 1, DN_SYNTH_LINEAR, V, H, H);
    }
}

/* ------------------------------------------------------------------ */
/* Generating rows                                                     */
/* ------------------------------------------------------------------ */

/* Rows generated per step: about 4 Mi elements, so memory stays a few MB
 * whatever the tensor size. */
#define CHUNK_ELEMS ((int64_t)1 << 22)

/* bf16 values of rows [r0, r0 + nr) of tensor d into out. With permute, row
 * g of the output is HF row h*D + s*(D/2) + j for g = h*D + 2*j + s: the
 * llama.cpp layout that rotates adjacent pairs. */
static void gen_rows(uint64_t seed, const synth_tensor *d, int64_t r0, int64_t nr, int permute,
                     int32_t head_dim, uint16_t *out)
{
    float scale = d->kind == DN_SYNTH_LINEAR ? linear_scale(d->fan_in) : 0.0f;
    uint64_t base = synth_key(seed, d->t, 0);
    for (int64_t r = 0; r < nr; r++) {
        int64_t g = r0 + r, src = g;
        if (permute) {
            int64_t D = head_dim, h = g / D, w = g % D;
            src = h * D + (w & 1) * (D / 2) + w / 2;
        }
        uint64_t row = base | (uint64_t)(src * d->cols);
        uint16_t *o = out + r * d->cols;
        for (int64_t c = 0; c < d->cols; c++) o[c] = round_bf16(synth_f32(row + (uint64_t)c, d->kind, scale));
    }
}

/* Convert nr rows of bf16 values to the storage type. row_f32 holds one row. */
static danu_status convert_rows(const synth_tensor *d, const uint16_t *src, int64_t nr, uint8_t *dst,
                                float *row_f32)
{
    int64_t n = nr * d->cols;
    switch (d->out_type) {
    case DANU_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) dn_wr_u16(dst + 2 * i, src[i]);
        return DANU_OK;
    case DANU_TYPE_F16:
        for (int64_t i = 0; i < n; i++) dn_wr_u16(dst + 2 * i, dn_f32_to_fp16(dn_bf16_to_f32(src[i])));
        return DANU_OK;
    case DANU_TYPE_F32:
        for (int64_t i = 0; i < n; i++) dn_wr_f32(dst + 4 * i, dn_bf16_to_f32(src[i]));
        return DANU_OK;
    default: {
        uint64_t rb = dn_type_row_bytes(d->out_type, (uint64_t)d->cols);
        for (int64_t r = 0; r < nr; r++) {
            for (int64_t c = 0; c < d->cols; c++) row_f32[c] = dn_bf16_to_f32(src[r * d->cols + c]);
            if (dn_quantize_row(d->out_type, row_f32, dst + (uint64_t)r * rb, d->cols) != 0)
                return dn_seterr(DANU_ERR_INTERNAL, "synth: cannot quantize %s to %s", d->gguf_name,
                                 dn_type_get(d->out_type)->name);
        }
        return DANU_OK;
    }
    }
}

/* ------------------------------------------------------------------ */
/* Files                                                               */
/* ------------------------------------------------------------------ */

/* A growable text buffer for the small JSON files. */
typedef struct sbuf {
    const dn_alloc *a;
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = dn_realloc(b->a, b->p, cap);
        if (!p) { b->oom = 1; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...) DN_PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= sizeof tmp) { b->oom = 1; return; }
    sb_put(b, tmp, (size_t)k);
}

static void sb_json_str(sbuf *b, const char *s)
{
    sb_puts(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') { char e[2] = { '\\', (char)*p }; sb_put(b, e, 2); }
        else if (*p == '\n') sb_puts(b, "\\n");
        else if (*p < 0x20) sb_printf(b, "\\u%04x", *p);
        else sb_put(b, (const char *)p, 1);
    }
    sb_puts(b, "\"");
}

/* Shortest decimal that reads back as the same float, written the way
 * Python's repr does ("1e-05", "10000.0", "0.02"). */
static void sb_float(sbuf *b, float v)
{
    char tmp[64];
    int digits = 1;
    for (; digits < 9; digits++) {
        snprintf(tmp, sizeof tmp, "%.*e", digits - 1, (double)v);
        if (strtof(tmp, NULL) == v) break;
    }
    snprintf(tmp, sizeof tmp, "%.*e", digits - 1, (double)v);
    int exp10 = atoi(strchr(tmp, 'e') + 1);
    if (exp10 >= -4 && exp10 < 16) {
        int decimals = digits - 1 - exp10;
        snprintf(tmp, sizeof tmp, "%.*f", decimals > 0 ? decimals : 0, (double)v);
        if (decimals <= 0) strcat(tmp, ".0");
    }
    sb_puts(b, tmp);
}

static danu_status write_file(const char *path, const void *data, size_t len)
{
    FILE *f = dn_fopen(path, "wb");
    if (!f) return dn_seterr(DANU_ERR_IO, "%s: cannot create: %s", path, dn_os_error());
    size_t w = len ? fwrite(data, 1, len, f) : 0;
    int bad = w != len;
    if (fclose(f) != 0) bad = 1;
    if (bad) return dn_seterr(DANU_ERR_IO, "%s: write failed: %s", path, dn_os_error());
    return DANU_OK;
}

static const char danube_chat_template[] =
    "{% for message in messages %}{% if message['role'] == 'user' %}{{ '<|prompt|>' + message['content'] + eos_token }}"
    "{% elif message['role'] == 'system' %}{{ '<|system|>' + message['content'] + eos_token }}"
    "{% elif message['role'] == 'assistant' %}{{ '<|answer|>'  + message['content'] + eos_token }}{% endif %}"
    "{% if loop.last and add_generation_prompt %}{{ '<|answer|>' }}{% endif %}{% endfor %}";

static int is_danube(const dn_synth_config *c) { return !strcmp(c->name, "danube-1.8b"); }

/* The real Danube configs carry pad_token_id 0; synthetic tiny ones none. */
static int32_t pad_id(const dn_synth_config *c) { return is_danube(c) ? 0 : -1; }

static const char *torch_dtype(int32_t type)
{
    return type == DANU_TYPE_F16 ? "float16" : type == DANU_TYPE_F32 ? "float32" : "bfloat16";
}

static void config_json(sbuf *b, const dn_synth_config *c, int32_t type)
{
    sb_puts(b, "{\n  \"architectures\": [\n    \"MistralForCausalLM\"\n  ],\n");
    sb_puts(b, "  \"attention_dropout\": 0.0,\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2,\n");
    sb_printf(b, "  \"head_dim\": %d,\n", (int)c->head_dim);
    sb_puts(b, "  \"hidden_act\": \"silu\",\n");
    sb_printf(b, "  \"hidden_size\": %d,\n", (int)c->hidden);
    sb_puts(b, "  \"initializer_range\": 0.02,\n");
    sb_printf(b, "  \"intermediate_size\": %d,\n", (int)c->ffn);
    sb_printf(b, "  \"max_position_embeddings\": %d,\n", (int)c->max_ctx);
    sb_puts(b, "  \"model_type\": \"mistral\",\n");
    sb_printf(b, "  \"num_attention_heads\": %d,\n", (int)c->heads);
    sb_printf(b, "  \"num_hidden_layers\": %d,\n", (int)c->layers);
    sb_printf(b, "  \"num_key_value_heads\": %d,\n", (int)c->kv_heads);
    if (pad_id(c) >= 0) sb_printf(b, "  \"pad_token_id\": %d,\n", (int)pad_id(c));
    else sb_puts(b, "  \"pad_token_id\": null,\n");
    sb_puts(b, "  \"rms_norm_eps\": ");
    sb_float(b, c->rms_eps);
    sb_puts(b, ",\n  \"rope_theta\": ");
    sb_float(b, c->rope_theta);
    if (c->window > 0) sb_printf(b, ",\n  \"sliding_window\": %d,\n", (int)c->window);
    else sb_puts(b, ",\n  \"sliding_window\": null,\n");
    sb_printf(b, "  \"tie_word_embeddings\": %s,\n", c->tied ? "true" : "false");
    sb_printf(b, "  \"torch_dtype\": \"%s\",\n", torch_dtype(type));
    sb_puts(b, "  \"transformers_version\": \"4.36.1\",\n  \"use_cache\": true,\n");
    sb_printf(b, "  \"vocab_size\": %d\n}\n", (int)c->vocab);
}

static void generation_config_json(sbuf *b, const dn_synth_config *c)
{
    sb_puts(b, "{\n  \"_from_model_config\": true,\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2,\n");
    if (pad_id(c) >= 0) sb_printf(b, "  \"pad_token_id\": %d,\n", (int)pad_id(c));
    sb_puts(b, "  \"transformers_version\": \"4.36.1\"\n}\n");
}

static void tokenizer_config_json(sbuf *b)
{
    sb_puts(b, "{\n  \"add_bos_token\": true,\n  \"add_eos_token\": false,\n  \"bos_token\": \"<s>\",\n"
               "  \"eos_token\": \"</s>\",\n  \"unk_token\": \"<unk>\",\n  \"pad_token\": \"<unk>\",\n"
               "  \"chat_template\": ");
    sb_json_str(b, danube_chat_template);
    sb_puts(b, ",\n  \"clean_up_tokenization_spaces\": false,\n"
               "  \"model_max_length\": 1000000000000000019884624838656,\n"
               "  \"tokenizer_class\": \"LlamaTokenizer\",\n  \"sp_model_kwargs\": {},\n"
               "  \"legacy\": false,\n  \"use_default_system_prompt\": false\n}\n");
}

/* ------------------------------------------------------------------ */
/* The writer                                                          */
/* ------------------------------------------------------------------ */

typedef struct job {
    const dn_alloc *a;
    const dn_synth_request *req;
    const dn_synth_config *c;
    synth_tensor *t;
    int64_t n_t;
    danu_tokenizer *tok;
    char *final_path;          /* OUT without trailing slashes */
    char *tmp_path;            /* OUT.tmp */
    uint16_t *chunk;           /* CHUNK_ELEMS bf16 values */
    float *row_f32;            /* one row per thread, for quantizing */
    int64_t row_cap;           /* floats per thread in row_f32 */
    dn_pool *pool;             /* generation + quantization of a chunk's rows */
    uint8_t *out;              /* converted bytes: a chunk (HF) or a tensor (GGUF) */
    size_t out_cap;
    uint64_t total, done;      /* tensor bytes, for progress */
} job;

/* Put the file name in front of a message recorded by a lower layer (the
 * message is copied first: it lives in the buffer dn_seterr writes). */
static danu_status prefix_error(danu_status s, const char *where)
{
    char msg[512];
    snprintf(msg, sizeof msg, "%s", dn_lasterr());
    return dn_seterr(s, "%s: %s", where, msg);
}

static danu_status report_progress(job *j, uint64_t bytes)
{
    j->done += bytes;
    if (!j->req->progress) return DANU_OK;
    float frac = j->total ? (float)((double)j->done / (double)j->total) : 1.0f;
    if (j->req->progress(j->req->progress_user, frac) != 0)
        return dn_seterr(DANU_ERR_CANCELLED, "%s: cancelled by the progress callback", j->req->out_path);
    return DANU_OK;
}

static danu_status ensure_out(job *j, size_t n)
{
    if (n <= j->out_cap) return DANU_OK;
    dn_free(j->a, j->out);
    j->out = dn_malloc(j->a, n);
    j->out_cap = j->out ? n : 0;
    if (!j->out) return dn_seterr(DANU_ERR_NOMEM, "%s: cannot allocate %zu bytes", j->req->out_path, n);
    return DANU_OK;
}

/* Rows of tensor d per generation step. */
static int64_t chunk_rows(const synth_tensor *d)
{
    int64_t r = CHUNK_ELEMS / d->cols;
    if (r < 1) r = 1;
    return r < d->rows ? r : d->rows;
}

/* Rows [r, r + nr) of d generated and converted into dst, split over the
 * pool: K-type quantization of a full-size model is minutes on one core. */
typedef struct gc_task {
    job *j;
    const synth_tensor *d;
    int64_t r, nr;
    int permute;
    uint8_t *dst;
    danu_status st[64];
} gc_task;

static void gc_run(void *arg, int ith, int nth)
{
    gc_task *g = arg;
    const synth_tensor *d = g->d;
    int64_t a = g->nr * ith / nth, b = g->nr * (ith + 1) / nth;
    g->st[ith] = DANU_OK;
    if (a >= b) return;
    uint16_t *src = g->j->chunk + a * d->cols;
    gen_rows(g->j->req->seed, d, g->r + a, b - a, g->permute, g->j->c->head_dim, src);
    uint64_t rb = dn_type_row_bytes(d->out_type, (uint64_t)d->cols);
    g->st[ith] = convert_rows(d, src, b - a, g->dst + (uint64_t)a * rb, g->j->row_f32 + (int64_t)ith * g->j->row_cap);
}

static danu_status gen_convert(job *j, const synth_tensor *d, int64_t r, int64_t nr, int permute, uint8_t *dst)
{
    gc_task g = { .j = j, .d = d, .r = r, .nr = nr, .permute = permute, .dst = dst };
    dn_pool_run(j->pool, gc_run, &g);
    for (int i = 0; i < dn_pool_size(j->pool); i++) DN_TRY(g.st[i]);
    return DANU_OK;
}

/* --- HF directory --- */

static const char *const hf_files[] = {
    "config.json", "generation_config.json", "tokenizer_config.json", "tokenizer.model", "model.safetensors"
};

static void remove_tmp_hf(job *j)
{
    for (size_t i = 0; i < sizeof hf_files / sizeof hf_files[0]; i++) {
        char *p = dn_path_join(j->a, j->tmp_path, hf_files[i]);
        if (p) dn_remove(p);
        dn_free(j->a, p);
    }
    dn_rmdir(j->tmp_path);
}

static danu_status write_small_file(job *j, const char *name, const void *data, size_t len)
{
    char *p = dn_path_join(j->a, j->tmp_path, name);
    if (!p) return dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", j->req->out_path);
    danu_status s = write_file(p, data, len);
    dn_free(j->a, p);
    return s;
}

enum { JSON_CONFIG, JSON_GENERATION, JSON_TOKENIZER };

static danu_status write_json_file(job *j, const char *name, int which)
{
    sbuf b = { j->a, NULL, 0, 0, 0 };
    if (which == JSON_CONFIG) config_json(&b, j->c, j->req->type);
    else if (which == JSON_GENERATION) generation_config_json(&b, j->c);
    else tokenizer_config_json(&b);
    danu_status s = b.oom ? dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", j->req->out_path)
                          : write_small_file(j, name, b.p, b.len);
    dn_free(j->a, b.p);
    return s;
}

static danu_status write_safetensors(job *j, FILE *f, const char *path)
{
    dn_st_entry *e = dn_calloc(j->a, (size_t)j->n_t, sizeof *e);
    if (!e) return dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", path);
    for (int64_t i = 0; i < j->n_t; i++) {
        e[i].name = j->t[i].hf_name;
        e[i].type = j->t[i].out_type;
        e[i].n_dims = j->t[i].n_dims;
        if (j->t[i].n_dims == 1) e[i].dims[0] = j->t[i].cols;
        else { e[i].dims[0] = j->t[i].rows; e[i].dims[1] = j->t[i].cols; }
    }
    danu_status s = dn_safetensors_write_header(f, e, j->n_t);
    dn_free(j->a, e);
    if (s != DANU_OK) return prefix_error(s, path);
    for (int64_t i = 0; i < j->n_t; i++) {
        const synth_tensor *d = &j->t[i];
        int64_t step = chunk_rows(d);
        size_t esz = dn_type_get(d->out_type)->type_size;
        for (int64_t r = 0; r < d->rows; r += step) {
            int64_t nr = d->rows - r < step ? d->rows - r : step;
            size_t nb = (size_t)(nr * d->cols) * esz;
            DN_TRY(ensure_out(j, nb));
            DN_TRY(gen_convert(j, d, r, nr, 0, j->out));
            if (fwrite(j->out, 1, nb, f) != nb)
                return dn_seterr(DANU_ERR_IO, "%s: write failed in %s: %s", path, d->hf_name, dn_os_error());
        }
        DN_TRY(report_progress(j, d->file_bytes));
    }
    return DANU_OK;
}

static danu_status write_hf(job *j)
{
    const dn_synth_request *q = j->req;
    if (dn_mkdir(j->tmp_path) != 0)
        return dn_seterr(DANU_ERR_IO, "%s: cannot create directory: %s", j->tmp_path, dn_os_error());
    danu_status s = write_json_file(j, "config.json", JSON_CONFIG);
    if (s == DANU_OK) s = write_json_file(j, "generation_config.json", JSON_GENERATION);
    if (s == DANU_OK) s = write_json_file(j, "tokenizer_config.json", JSON_TOKENIZER);
    if (s == DANU_OK) {
        if (j->c->vocab < dn_tokenizer_n_vocab(j->tok)) {
            uint8_t *spm = NULL;
            size_t spm_len = 0;
            s = dn_spm_truncate(j->a, q->spm, q->spm_len, j->c->vocab, &spm, &spm_len);
            if (s == DANU_OK) s = write_small_file(j, "tokenizer.model", spm, spm_len);
            dn_free(j->a, spm);
        } else {
            s = write_small_file(j, "tokenizer.model", q->spm, q->spm_len);
        }
    }
    if (s == DANU_OK) {
        char *path = dn_path_join(j->a, j->tmp_path, "model.safetensors");
        FILE *f = path ? dn_fopen(path, "wb") : NULL;
        if (!path) s = dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", q->out_path);
        else if (!f) s = dn_seterr(DANU_ERR_IO, "%s: cannot create: %s", path, dn_os_error());
        else {
            s = write_safetensors(j, f, path);
            if (fclose(f) != 0 && s == DANU_OK) s = dn_seterr(DANU_ERR_IO, "%s: write failed: %s", path, dn_os_error());
        }
        dn_free(j->a, path);
    }
    if (s == DANU_OK) s = dn_publish(j->tmp_path, j->final_path, 0);
    if (s != DANU_OK) remove_tmp_hf(j);
    return s;
}

/* --- GGUF file --- */

/* The converter's metadata (model/gguf_model.c), then the tensor table. */
static danu_status gguf_metadata(job *j, dn_gguf_writer *w)
{
    const dn_synth_config *c = j->c;
    const char *name = is_danube(c) ? "H2O Danube 1.8B" : c->name;
    size_t n = (size_t)c->vocab;
    const char **pieces = dn_calloc(j->a, n, sizeof *pieces);
    size_t *lens = dn_calloc(j->a, n, sizeof *lens);
    float *scores = dn_calloc(j->a, n, sizeof *scores);
    int32_t *types = dn_calloc(j->a, n, sizeof *types);
    danu_status s = DANU_OK;
    if (!pieces || !lens || !scores || !types) s = dn_seterr(DANU_ERR_NOMEM, "vocabulary arrays: out of memory");
    for (size_t i = 0; s == DANU_OK && i < n; i++) {
        pieces[i] = dn_tokenizer_piece(j->tok, (int32_t)i, &lens[i]);
        scores[i] = dn_tokenizer_score(j->tok, (int32_t)i);
        types[i] = dn_tokenizer_type(j->tok, (int32_t)i);
    }
    dn_llama_meta m = {
        .name = name, .name_len = strlen(name),
        .n_layers = c->layers, .max_ctx = c->max_ctx, .hidden = c->hidden, .ffn = c->ffn, .heads = c->heads,
        .kv_heads = c->kv_heads, .head_dim = c->head_dim, .window = c->window, .vocab = c->vocab,
        .rope_theta = c->rope_theta, .rms_eps = c->rms_eps, .has_rope_theta = 1, .has_head_dim = 1,
        .file_type = dn_llama_ftype(j->req->type),
        .pieces = pieces, .lens = lens, .scores = scores, .types = types,
        .bos = dn_tokenizer_bos(j->tok), .eos = dn_tokenizer_eos(j->tok), .unk = dn_tokenizer_unk(j->tok),
        .pad = pad_id(c), .add_bos = 1, .add_eos = 0,
        .chat_template = is_danube(c) ? danube_chat_template : NULL,
        .chat_template_len = is_danube(c) ? sizeof danube_chat_template - 1 : 0,
    };
    dn_meta_list l;
    dn_meta_init(&l, j->a);
    if (s == DANU_OK) s = dn_llama_converter_kv(&l, &m);
    if (s == DANU_OK) s = dn_meta_write(&l, w, NULL);
    dn_meta_free(&l);
    dn_free(j->a, pieces);
    dn_free(j->a, lens);
    dn_free(j->a, scores);
    dn_free(j->a, types);
    DN_TRY(s);
    for (int64_t i = 0; i < j->n_t; i++) {
        const synth_tensor *d = &j->t[i];
        int64_t dims[2] = { d->rows, d->cols };
        if (d->n_dims == 1) dims[0] = d->cols;
        DN_TRY(dn_gguf_w_tensor(w, d->gguf_name, d->out_type, d->n_dims, dims));
    }
    return DANU_OK;
}

static danu_status gguf_tensors(job *j, dn_gguf_writer *w, FILE *f)
{
    for (int64_t i = 0; i < j->n_t; i++) {
        const synth_tensor *d = &j->t[i];
        int64_t step = chunk_rows(d);
        uint64_t rb = d->out_bytes / (uint64_t)d->rows;
        /* dn_gguf_w_data takes a whole tensor, so the converted tensor is
         * held in memory; the bf16 source is still made chunk by chunk. */
        DN_TRY(ensure_out(j, (size_t)d->out_bytes));
        for (int64_t r = 0; r < d->rows; r += step) {
            int64_t nr = d->rows - r < step ? d->rows - r : step;
            DN_TRY(gen_convert(j, d, r, nr, d->permute, j->out + (uint64_t)r * rb));
        }
        danu_status s = dn_gguf_w_data(w, f, j->out, d->out_bytes);
        if (s != DANU_OK) return prefix_error(s, j->tmp_path);
        DN_TRY(report_progress(j, d->file_bytes));
    }
    return DANU_OK;
}

static danu_status write_gguf(job *j)
{
    const dn_synth_request *q = j->req;
    dn_gguf_writer *w = NULL;
    danu_status s = dn_gguf_writer_create(j->a, 32, &w);
    if (s == DANU_OK) s = gguf_metadata(j, w);
    if (s != DANU_OK) {
        dn_gguf_writer_free(w);
        return prefix_error(s, q->out_path);
    }
    FILE *f = dn_fopen(j->tmp_path, "wbx");
    if (!f) {
        dn_gguf_writer_free(w);
        return dn_seterr(DANU_ERR_IO, "%s: cannot create: %s", j->tmp_path, dn_os_error());
    }
    s = dn_gguf_w_begin(w, f);
    if (s != DANU_OK) s = prefix_error(s, j->tmp_path);
    if (s == DANU_OK) s = gguf_tensors(j, w, f);
    if (s == DANU_OK && (s = dn_gguf_w_end(w, f)) != DANU_OK) s = prefix_error(s, j->tmp_path);
    if (fclose(f) != 0 && s == DANU_OK) s = dn_seterr(DANU_ERR_IO, "%s: write failed: %s", j->tmp_path, dn_os_error());
    dn_gguf_writer_free(w);
    if (s == DANU_OK) s = dn_publish(j->tmp_path, j->final_path, 0);
    if (s != DANU_OK) dn_remove(j->tmp_path);
    return s;
}

/* ------------------------------------------------------------------ */
/* Entry point                                                         */
/* ------------------------------------------------------------------ */

static danu_status check_request(const dn_synth_request *q)
{
    if (!q || !q->cfg || !q->out_path || !q->out_path[0] || !q->spm || !q->spm_len)
        return dn_seterr(DANU_ERR_INVALID_ARG, "synth: request needs a config, an output path and tokenizer bytes");
    const dn_synth_config *c = q->cfg;
    const char *what = q->out_path;
    DN_CHECK(c->name && c->vocab > 0 && c->hidden > 0 && c->heads > 0 && c->kv_heads > 0 && c->head_dim > 0 &&
             c->ffn > 0 && c->layers > 0 && c->window >= 0 && c->max_ctx > 0,
             DANU_ERR_INVALID_ARG, "%s: synthetic config has a non-positive size", what);
    DN_CHECK(c->heads % c->kv_heads == 0, DANU_ERR_INVALID_ARG,
             "%s: %d heads is not a multiple of %d kv heads", what, (int)c->heads, (int)c->kv_heads);
    DN_CHECK(c->head_dim % 2 == 0, DANU_ERR_INVALID_ARG, "%s: head_dim %d is odd", what, (int)c->head_dim);
    /* The key packs t into 16 bits and the element index into 32. */
    DN_CHECK(n_synth_tensors(c) < 65536, DANU_ERR_UNSUPPORTED, "%s: too many layers (%d)", what, (int)c->layers);
    int64_t biggest = (int64_t)c->vocab * c->hidden, q_size = (int64_t)c->heads * c->head_dim * c->hidden;
    int64_t f_size = (int64_t)c->ffn * c->hidden;
    if (q_size > biggest) biggest = q_size;
    if (f_size > biggest) biggest = f_size;
    DN_CHECK(biggest <= (int64_t)UINT32_MAX + 1, DANU_ERR_UNSUPPORTED,
             "%s: a tensor of %" PRId64 " elements exceeds the synthetic key's 2^32", what, biggest);
    if (q->format == DN_SYNTH_HF) {
        DN_CHECK(q->type == DANU_TYPE_BF16 || q->type == DANU_TYPE_F16 || q->type == DANU_TYPE_F32,
                 DANU_ERR_UNSUPPORTED, "%s: HF checkpoints store bf16, f16 or f32, not type %d", what,
                 (int)q->type);
    } else if (q->format == DN_SYNTH_GGUF) {
        DN_CHECK(dn_type_is_weight(q->type), DANU_ERR_UNSUPPORTED, "%s: type %d is not a weight type", what,
                 (int)q->type);
    } else {
        return dn_seterr(DANU_ERR_INVALID_ARG, "%s: unknown format %d", what, q->format);
    }
    return DANU_OK;
}

/* Storage type of each tensor and the total bytes to write. */
static uint64_t plan_types(job *j)
{
    const dn_synth_request *q = j->req;
    uint64_t total = 0;
    for (int64_t i = 0; i < j->n_t; i++) {
        synth_tensor *d = &j->t[i];
        int32_t type = q->type;
        if (q->format == DN_SYNTH_GGUF) {
            if (d->kind == DN_SYNTH_NORM) type = DANU_TYPE_F32;
            else if ((type = dn_llama_fallback_type(q->type, d->cols)) != q->type)
                dn_log(&q->log, DANU_LOG_WARN, "%s: rows of %lld values do not fit %s blocks: using %s", d->gguf_name,
                       (long long)d->cols, dn_type_get(q->type)->name, dn_type_get(type)->name);
        }
        d->out_type = type;
        d->out_bytes = dn_type_row_bytes(type, (uint64_t)d->cols) * (uint64_t)d->rows;
        d->file_bytes = q->format == DN_SYNTH_GGUF ? (d->out_bytes + 31) / 32 * 32 : d->out_bytes;
        total += d->file_bytes;
    }
    return total;
}

static void job_free(job *j)
{
    dn_free(j->a, j->t);
    dn_tokenizer_free(j->tok);
    dn_free(j->a, j->tmp_path);
    dn_free(j->a, j->final_path);
    dn_free(j->a, j->chunk);
    dn_free(j->a, j->row_f32);
    dn_free(j->a, j->out);
    dn_pool_free(j->pool);
}

danu_status dn_synth_write(const dn_alloc *a, const dn_synth_request *req)
{
    if (!a) return dn_seterr(DANU_ERR_INVALID_ARG, "synth: no allocator");
    DN_TRY(check_request(req));
    const dn_synth_config *c = req->cfg;
    const char *out = req->out_path;
    if (dn_path_exists(out))
        return dn_seterr(DANU_ERR_IO, "%s: already exists; not overwriting it", out);

    job j;
    memset(&j, 0, sizeof j);
    j.a = a;
    j.req = req;
    j.c = c;
    danu_status s = DANU_OK;
    size_t olen = strlen(out);
    while (olen > 1 && dn_is_sep(out[olen - 1])) olen--;   /* "model/" names the directory "model" */
    j.n_t = n_synth_tensors(c);
    j.t = dn_calloc(a, (size_t)j.n_t, sizeof *j.t);
    j.final_path = dn_strndup(a, out, olen);
    j.tmp_path = j.final_path ? dn_tmp_path(a, j.final_path) : NULL;
    int64_t max_cols = c->hidden > c->ffn ? c->hidden : c->ffn;
    if ((int64_t)c->heads * c->head_dim > max_cols) max_cols = (int64_t)c->heads * c->head_dim;
    /* a chunk is at least one row */
    j.chunk = dn_malloc(a, (size_t)(max_cols > CHUNK_ELEMS ? max_cols : CHUNK_ELEMS) * sizeof(uint16_t));
    int nth = dn_cpu_count();
    if (nth > 64) nth = 64;
    if (nth < 1) nth = 1;
    j.row_cap = max_cols;
    j.row_f32 = dn_malloc(a, (size_t)nth * (size_t)max_cols * sizeof(float));
    if (j.row_f32 && dn_pool_create(a, nth, &j.pool) != DANU_OK) j.pool = NULL;
    if (!j.t || !j.tmp_path || !j.final_path || !j.chunk || !j.row_f32 || !j.pool) {
        job_free(&j);
        return dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", out);
    }
    build_tensors(c, j.t);
    j.total = plan_types(&j);

    s = dn_tokenizer_from_spm(a, req->spm, req->spm_len, "tokenizer.model", &j.tok);
    if (s == DANU_OK && dn_tokenizer_n_vocab(j.tok) < c->vocab)
        s = dn_seterr(DANU_ERR_INVALID_ARG, "%s: vocabulary of %d is larger than the tokenizer's %d pieces", out,
                      (int)c->vocab, (int)dn_tokenizer_n_vocab(j.tok));
    if (s == DANU_OK && dn_path_exists(j.tmp_path))
        s = dn_seterr(DANU_ERR_IO, "%s: exists (left by an interrupted run?); remove it first", j.tmp_path);
    /* Header, vocabulary and small files: a generous few MB on top. */
    if (s == DANU_OK) s = dn_check_free_space(a, j.final_path, j.total + req->spm_len + ((uint64_t)c->vocab * 64) + (4u << 20));
    if (s == DANU_OK) s = req->format == DN_SYNTH_HF ? write_hf(&j) : write_gguf(&j);
    job_free(&j);
    return s;
}
