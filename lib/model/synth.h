/* synth.h - synthetic-weight models (shared spec synthetic-model.md): every
 * weight is a pure function of (seed, tensor index, element index). */
#ifndef DN_SYNTH_H
#define DN_SYNTH_H
#include <stdint.h>
#include "danu.h"
#include "common/alloc.h"
#include "common/log.h"

typedef struct dn_synth_config {
    const char *name;           /* "danube-1.8b", "tiny-a", ... */
    int32_t vocab, hidden, heads, kv_heads, head_dim, ffn, layers;
    int32_t window;             /* 0 = none */
    int32_t max_ctx;
    float rope_theta, rms_eps;
    int tied;
} dn_synth_config;

enum { DN_SYNTH_EMBED = 0, DN_SYNTH_NORM = 1, DN_SYNTH_LINEAR = 2 };

/* The spec's value of element i of tensor t, already rounded to bf16 (returned
 * as the bf16 bits). kind = DN_SYNTH_*; fan_in used for LINEAR. */
uint16_t dn_synth_value_bf16(uint64_t seed, uint64_t t, uint64_t i, int kind, int64_t fan_in);

/* Built-in configurations by name (danube-1.8b, tiny-a, tiny-b, tiny-q);
 * NULL if unknown. */
const dn_synth_config *dn_synth_config_find(const char *name);

enum { DN_SYNTH_HF = 1, DN_SYNTH_GGUF = 2 };

typedef struct dn_synth_request {
    const dn_synth_config *cfg;
    uint64_t seed;
    int format;                 /* DN_SYNTH_HF (directory) or DN_SYNTH_GGUF (file) */
    int32_t type;               /* matrix storage: DANU_TYPE_BF16/F16/F32 (HF and GGUF);
                                   GGUF also any quantized weight type */
    const char *out_path;
    const uint8_t *spm;         /* Llama 2 tokenizer.model bytes (required) */
    size_t spm_len;
    danu_progress_fn progress;  /* may be NULL */
    void *progress_user;
    dn_logger log;              /* fallback types are logged (fn may be NULL) */
} dn_synth_request;

/* Write the model. HF: out_path is a directory (created) with config.json,
 * model.safetensors (tensors in spec order, HF names), tokenizer.model
 * (truncated to vocab pieces), tokenizer_config.json, generation_config.json.
 * GGUF: a v3 file as llama.cpp's converter writes it (arch llama, q/k rows
 * permuted, norms F32, llama.* keys incl. sliding_window when set,
 * tokenizer.ggml.* from the tokenizer model, chat template for danube).
 * Streams tensor by tensor; writes to OUT.tmp then renames. */
danu_status dn_synth_write(const dn_alloc *a, const dn_synth_request *req);
#endif
