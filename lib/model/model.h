/* model.h - a loaded model: hyperparameters, typed views of the weights
 * (pointers into the mapped file where the stored layout is used as is),
 * the tokenizer, and the kernel table chosen for this CPU. */
#ifndef DN_MODEL_H
#define DN_MODEL_H
#include <stdint.h>
#include "danu.h"
#include "common/alloc.h"
#include "common/log.h"
#include "common/os.h"
#include "common/threadpool.h"
#include "common/json.h"
#include "format/tensor.h"
#include "format/gguf.h"
#include "format/safetensors.h"
#include "kernels/kernels.h"
#include "text/tokenizer.h"

typedef struct dn_config {
    int32_t vocab;           /* vocab_size                  | llama.vocab_size / tokens   */
    int32_t hidden;          /* hidden_size                 | llama.embedding_length      */
    int32_t n_layers;        /* num_hidden_layers           | llama.block_count           */
    int32_t n_heads;         /* num_attention_heads         | llama.attention.head_count  */
    int32_t n_kv_heads;      /* num_key_value_heads         | ...head_count_kv            */
    int32_t head_dim;        /* head_dim or hidden/heads    | llama.attention.key_length  */
    int32_t ffn;             /* intermediate_size           | llama.feed_forward_length   */
    int32_t max_ctx;         /* max_position_embeddings     | llama.context_length        */
    int32_t window;          /* sliding_window, 0 = none    | llama.attention.sliding_window */
    float rope_theta;        /* rope_theta (or rope_parameters) | llama.rope.freq_base    */
    float rms_eps;           /* rms_norm_eps                | ...layer_norm_rms_epsilon   */
    int tied;                /* tie_word_embeddings         | no output.weight            */
    int32_t bos, eos;        /* bos_token_id, eos_token_id  | tokenizer.ggml.*_token_id   */
    int rope_interleaved;    /* 0: HF rotate-half rows; 1: llama.cpp permuted (GGUF)    */
} dn_config;

typedef struct dn_layer {
    const float *attn_norm;  /* [hidden] f32 copy */
    dn_matrix wq;            /* [heads*hd, hidden] */
    dn_matrix wk;            /* [kv*hd, hidden]    */
    dn_matrix wv;            /* [kv*hd, hidden]    */
    dn_matrix wo;            /* [hidden, heads*hd] */
    const float *ffn_norm;   /* [hidden] f32 copy */
    dn_matrix w_gate;        /* [ffn, hidden]      */
    dn_matrix w_up;          /* [ffn, hidden]      */
    dn_matrix w_down;        /* [hidden, ffn]      */
} dn_layer;

struct danu_model {
    dn_alloc alloc;
    dn_logger log;
    dn_config cfg;
    int format;                   /* DANU_FORMAT_HF / DANU_FORMAT_GGUF */
    int32_t file_type;            /* GGUF general.file_type, or the main matrix type */
    /* sources: exactly one of hf / gguf is open */
    dn_hfdir hf;
    int hf_open;
    dn_mapping gguf_map;
    dn_gguf *gguf;
    const dn_tensor_desc *tensors; /* table of the open source */
    int64_t n_tensors;
    /* weights */
    dn_matrix tok_embd;           /* [vocab, hidden] */
    dn_layer *layers;             /* [n_layers] */
    const float *out_norm;        /* [hidden] */
    dn_matrix output;             /* [vocab, hidden] (token_embd when tied) */
    float *norms;                 /* f32 copies of all norm vectors */
    uint64_t weight_bytes;
    /* matrices repacked into x16 layouts (repack_weights.c) live here */
    void *repack_buf;
    uint64_t repacked_bytes;
    int32_t repacked_matrices;
    const void *wq0_stored;       /* layers[0].wq row 0 as stored (state fingerprint) */
    uint64_t wq0_stored_bytes;
    danu_tokenizer *tok;
    const dn_kernels *kern;
    int isa_cap;
    dn_pool *pool;                /* contexts' default pool (a reference) */
    int pool_owned;               /* created for this model: grows to its contexts' thread counts */
};

danu_status dn_config_from_hf(const dn_json *cfg, const char *what, dn_config *c);
danu_status dn_config_from_gguf(const dn_gguf *g, const char *what, dn_config *c);
/* Sanity limits on the numbers (positive, divisible, not absurd). */
danu_status dn_config_check(const dn_config *c, const char *what);

danu_status dn_model_load(const char *path, const struct danu_options *o, danu_model **out);
/* Repack the layer and output matrices into the x16 layouts per
 * o->repack and the model's kernel table (repack_weights.c). On error
 * some matrices may already point into m->repack_buf: free the model.
 * Load progress is reported from p0 up to 0.99. */
danu_status dn_model_repack(danu_model *m, const struct danu_options *o, float p0);
void dn_model_free(danu_model *m);
/* Lanes of a pool that a context or batch created with o on m uses. */
int32_t dn_model_lanes(const danu_model *m, const struct danu_options *o);
/* Its team of `lanes`: o's pool or the model's (which grows to it), with a
 * reference the caller drops with dn_pool_free(team.pool). */
dn_team dn_model_team(danu_model *m, const struct danu_options *o, int32_t lanes, dn_adapt *adapt);
#endif
