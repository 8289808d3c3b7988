/* gguf_model.h - what a llama.cpp-style GGUF of a Llama/Mistral model needs,
 * shared by the synthetic writer (synth.c) and the quantizer (quantize.c):
 * HF -> GGUF tensor names, the converter's q/k row permutation, llama_ftype
 * numbers, an ordered metadata list (so keys can be moved the way
 * llama-quantize moves them before anything is encoded), the metadata
 * convert_hf_to_gguf.py writes, and a free-space check. */
#ifndef DN_GGUF_MODEL_H
#define DN_GGUF_MODEL_H
#include <stddef.h>
#include <stdint.h>
#include "danu.h"
#include "common/alloc.h"
#include "common/log.h"
#include "format/gguf.h"

/* ---- tensor names ---- */

/* The nine tensors of a decoder layer, in the spec's (and the converter's)
 * order: HF suffix after "model.layers.N." and GGUF suffix after "blk.N.". */
extern const char *const dn_llama_layer_hf[9];
extern const char *const dn_llama_layer_gguf[9];
enum { DN_LLAMA_ATTN_NORM = 0, DN_LLAMA_ATTN_Q = 1, DN_LLAMA_ATTN_K = 2, DN_LLAMA_ATTN_V = 3,
       DN_LLAMA_ATTN_OUT = 4, DN_LLAMA_FFN_NORM = 5, DN_LLAMA_FFN_GATE = 6, DN_LLAMA_FFN_UP = 7,
       DN_LLAMA_FFN_DOWN = 8,
       /* the whole-model tensors */
       DN_LLAMA_TOKEN_EMBD = 9, DN_LLAMA_OUTPUT_NORM = 10, DN_LLAMA_OUTPUT = 11 };

/* The one table of tensor names: the full name of tensor `which` (DN_LLAMA_*)
 * of layer `layer` (ignored for the whole-model tensors) as format
 * (DANU_FORMAT_HF or DANU_FORMAT_GGUF) names it. 0 if it does not fit cap. */
int dn_llama_tensor_name(int32_t format, int which, int layer, char *out, size_t cap);

/* GGUF name of an HF tensor ("model.layers.3.self_attn.q_proj.weight" ->
 * "blk.3.attn_q.weight"). Returns 1 when mapped; *layer gets the layer (-1
 * for token_embd/output_norm/output) and *which the DN_LLAMA_* index (-1
 * outside layers). 0 for an unknown name or a name that does not fit cap. */
int dn_llama_gguf_name(const char *hf, char *out, size_t cap, int *layer, int *which);

/* The converter permutes the rows of q and k per head so that RoPE rotates
 * adjacent pairs: output row g of a head of D rows is HF row
 * h*D + (g%D & 1)*(D/2) + (g%D)/2. */
static inline int64_t dn_llama_permuted_row(int64_t g, int64_t rows_per_head)
{
    int64_t D = rows_per_head, h = g / D, w = g % D;
    return h * D + (w & 1) * (D / 2) + w / 2;
}

/* llama_ftype of a file whose matrices are all `type` (F32 0, F16 1, Q4_0 2,
 * Q4_1 3, Q8_0 7, Q5_0 8, Q5_1 9, Q4_K -> Q4_K_S 14, Q5_K -> Q5_K_S 16,
 * Q6_K 18, BF16 32). */
/* The type a tensor with rows of cols values is stored in when `type`'s
 * blocks do not divide its rows: llama.cpp's fallback for the K-quants
 * (q4_K -> q5_0, q5_K -> q5_1, q6_K -> q8_0), then f16 when those blocks do
 * not divide them either. llama.cpp refuses such rows for the 32-value
 * types (q4_0 ... q8_0); libdanu stores them in f16 instead, so the quantizer
 * and the synthetic writer handle any shape. Returns type itself when its
 * blocks fit. */
int32_t dn_llama_fallback_type(int32_t type, int64_t cols);
/* A first-generation H2O-Danube GGUF carries no sliding-window key (the
 * converter never wrote one; llama.cpp never applied the window to it):
 * recognise it by name (general.name/basename/finetune) or by its exact
 * shape. */
struct dn_config;
int dn_llama_is_danube(const dn_gguf *g, const struct dn_config *c);
uint32_t dn_llama_ftype(int32_t type);

/* ---- an ordered metadata list ---- */

/* One key. Values are borrowed (static text, the caller's arrays, or a
 * source GGUF that stays open) until the list is written. */
typedef struct dn_meta {
    const char *key;
    int32_t type;                 /* DN_GGUF_* of the value                    */
    uint64_t u;                   /* U32/I32 (as int32 bits)/U64/BOOL          */
    float f;                      /* F32                                       */
    const char *s;                /* STRING                                    */
    uint64_t len;
    int32_t elem_type;            /* ARRAY: element type and count            */
    uint64_t count;
    const void *arr;              /* numeric elements, host layout             */
    const char *const *strs;      /* string elements + lengths                 */
    const size_t *lens;
    const dn_gguf *src;           /* non-NULL: copy key's value from this file */
} dn_meta;

typedef struct dn_meta_list {
    const dn_alloc *a;
    dn_meta *v;
    int64_t n, cap;
} dn_meta_list;

void dn_meta_init(dn_meta_list *l, const dn_alloc *a);
void dn_meta_free(dn_meta_list *l);
int64_t dn_meta_find(const dn_meta_list *l, const char *key);   /* index or -1 */
/* Insert at pos (0..n; n appends). An existing key of that name is removed first. */
danu_status dn_meta_insert(dn_meta_list *l, int64_t pos, const dn_meta *kv);
static inline danu_status dn_meta_append(dn_meta_list *l, const dn_meta *kv) { return dn_meta_insert(l, l->n, kv); }
/* Replace the value of an existing key in place, or append. */
danu_status dn_meta_put(dn_meta_list *l, const dn_meta *kv);
void dn_meta_remove(dn_meta_list *l, const char *key);
/* Every key of a GGUF, in file order, as references to it. */
danu_status dn_meta_from_gguf(dn_meta_list *l, const dn_gguf *g);
/* Encode the list into w. A copied key whose scalar type the writer cannot
 * encode (u8, i8, u16, i16, i64, f64) or an array of arrays is left out
 * with a warning on lg. */
danu_status dn_meta_write(const dn_meta_list *l, dn_gguf_writer *w, const dn_logger *lg);

dn_meta dn_meta_u32(const char *key, uint32_t v);
dn_meta dn_meta_f32(const char *key, float v);
dn_meta dn_meta_bool(const char *key, int v);
dn_meta dn_meta_str(const char *key, const char *s, size_t len);

/* ---- the converter's metadata ---- */

/* What convert_hf_to_gguf.py (LlamaModel, used for MistralForCausalLM)
 * writes, plus two keys of ours: general.alignment and, when window > 0,
 * llama.attention.sliding_window. */
typedef struct dn_llama_meta {
    const char *name;             /* general.name */
    size_t name_len;
    int32_t n_layers, max_ctx, hidden, ffn, heads, kv_heads, head_dim, window, vocab;
    float rope_theta, rms_eps;
    int has_rope_theta;           /* config.json has rope_theta: llama.rope.freq_base   */
    int has_head_dim;             /* config.json has head_dim: attention.key/value_length */
    uint32_t file_type;           /* general.file_type, in the converter's position */
    /* tokenizer.ggml.*: vocab pieces (not NUL-terminated), scores, SentencePiece types */
    const char *const *pieces;
    const size_t *lens;
    const float *scores;
    const int32_t *types;
    int32_t bos, eos, unk, pad;   /* -1: key left out */
    int add_bos, add_eos;         /* -1: key left out */
    const char *chat_template;    /* NULL: key left out */
    size_t chat_template_len;
} dn_llama_meta;

/* Append the converter's keys, in its order, to l (values borrowed from m). */
danu_status dn_llama_converter_kv(dn_meta_list *l, const dn_llama_meta *m);

/* IO error (with both numbers) when the file system holding out_path (its
 * parent directory) has less than `need` bytes free. */
danu_status dn_check_free_space(const dn_alloc *a, const char *out_path, uint64_t need);
#endif
