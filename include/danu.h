/*
 * danu.h - libdanu, a dependency-free C library that runs H2O-Danube-shaped
 * language models (Mistral/Llama decoders) on CPUs.
 *
 * OBJECTS AND LIFETIMES
 *   danu_options    settings bag used when loading a model or creating a
 *                   context. Created by the caller, freed by the caller; the
 *                   library copies what it needs, so it may be freed at once.
 *   danu_model      weights + tokenizer, immutable after load. Share one
 *                   model between any number of contexts on any threads.
 *                   Free it only after every context made from it is freed.
 *   danu_tokenizer  borrowed from a model (danu_model_tokenizer) or loaded
 *                   on its own from a tokenizer.model file.
 *   danu_context    KV cache, scratch, sampler state, token history. Used by
 *                   one thread at a time; danu_context_abort() is the only
 *                   call allowed from another thread while it runs.
 *   danu_decoder    streaming detokenizer (complete UTF-8 only).
 *
 * ERRORS
 *   Every fallible call returns a danu_status (DANU_OK == 0). The detail of
 *   the last failure on the calling thread (what is wrong and where: file,
 *   tensor, offset) is danu_last_error(); it is library-owned and valid until
 *   the next danu call on that thread. A failed call leaves the objects passed
 *   to it usable. Free functions accept NULL (harmless no-op). The library
 *   never prints, exits or aborts; messages go to the log callback set on the
 *   options (default: silent).
 *
 * MEMORY
 *   Every allocation goes through the danu_allocator set on the options (libc
 *   when none). Contexts inherit the model's allocator. Text and token
 *   results go into caller buffers; calls report the size needed.
 *
 * VERSIONS AND STABILITY
 *   DANU_VERSION_NUMBER = MAJOR*10000 + MINOR*100 + PATCH. Everything in this
 *   header is stable ABI within a major version (see ABI.md; nothing is
 *   experimental in 0.1):
 *   functions never change signature, enums only gain values, visible structs
 *   carry struct_size and only grow at the end. Changed behaviour gets a new
 *   name (_v2).
 */
#ifndef DANU_H
#define DANU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DANU_VERSION_MAJOR 0
#define DANU_VERSION_MINOR 1
#define DANU_VERSION_PATCH 0
#define DANU_VERSION_NUMBER \
    (DANU_VERSION_MAJOR * 10000 + DANU_VERSION_MINOR * 100 + DANU_VERSION_PATCH)
#define DANU_VERSION_STRING "0.1.0"

#if defined(_WIN32) && defined(DANU_BUILDING_DLL)
#  define DANU_API __declspec(dllexport)
#elif defined(__GNUC__)
#  define DANU_API __attribute__((visibility("default")))
#else
#  define DANU_API
#endif

/* ------------------------------------------------------------------ */
/* Versions and errors                                                 */
/* ------------------------------------------------------------------ */

/** Runtime version: DANU_VERSION_NUMBER of the library actually loaded. @since 0.1 */
DANU_API uint32_t danu_version_number(void);
/** Runtime version as "MAJOR.MINOR.PATCH"; static storage. @since 0.1 */
DANU_API const char *danu_version_string(void);

/** Status codes. Values are pinned and never reused. */
typedef int32_t danu_status;
enum {
    DANU_OK = 0,
    DANU_ERR_INVALID_ARG = 1,   /* NULL handle, out-of-range value, bad key     */
    DANU_ERR_NOMEM = 2,         /* an allocation failed                        */
    DANU_ERR_IO = 3,            /* open/read/write/mmap failed                 */
    DANU_ERR_FORMAT = 4,        /* file is corrupt, truncated or inconsistent  */
    DANU_ERR_UNSUPPORTED = 5,   /* valid but not supported (type, arch, key)   */
    DANU_ERR_CANCELLED = 6,     /* a progress callback asked to stop           */
    DANU_ERR_ABORTED = 7,       /* danu_context_abort() stopped the work       */
    DANU_ERR_CONTEXT_FULL = 8,  /* no room left in the context                 */
    DANU_ERR_BAD_TOKEN = 9,     /* token id < 0 or >= vocabulary size          */
    DANU_ERR_BAD_UTF8 = 10,     /* text is not valid UTF-8                     */
    DANU_ERR_STATE = 11,        /* not possible in the object's current state  */
    DANU_ERR_BUFFER_TOO_SMALL = 12, /* caller buffer too small; size reported  */
    DANU_ERR_INTERNAL = 13      /* a bug in libdanu                            */
};

/** Static text for a status ("invalid argument", ...). Never NULL. @since 0.1 */
DANU_API const char *danu_strerror(danu_status status);
/** Detail of the last failure on this thread ("" when none). Valid until the
 *  next danu call on this thread. @since 0.1 */
DANU_API const char *danu_last_error(void);

/* ------------------------------------------------------------------ */
/* Allocator, logging, progress                                        */
/* ------------------------------------------------------------------ */

/** Allocator hooks. struct_size = sizeof(danu_allocator) of the caller's
 *  header; members are only appended. All three functions are required.
 *  realloc_fn(user, NULL, n) must behave as malloc_fn. */
typedef struct danu_allocator {
    uint32_t struct_size;
    void *(*malloc_fn)(void *user, size_t size);
    void *(*realloc_fn)(void *user, void *ptr, size_t size);
    void (*free_fn)(void *user, void *ptr);
    void *user;
} danu_allocator;

enum { DANU_LOG_ERROR = 0, DANU_LOG_WARN = 1, DANU_LOG_INFO = 2, DANU_LOG_DEBUG = 3 };
/** Log callback: level, NUL-terminated message (no trailing newline). */
typedef void (*danu_log_fn)(void *user, int32_t level, const char *message);
/** Progress callback: fraction in [0,1]. Return nonzero to cancel. */
typedef int32_t (*danu_progress_fn)(void *user, float fraction);

/* ------------------------------------------------------------------ */
/* Options                                                             */
/* ------------------------------------------------------------------ */

typedef struct danu_options danu_options;

/** Option keys, grouped by hundreds: 100 load, 200 context, 300 sampling,
 *  400 threads/kernels. Each key has one type (int or float). */
typedef int32_t danu_param;
enum {
    /* load */
    DANU_OPT_USE_MMAP = 100,        /* int 0/1, default 1                        */
    DANU_OPT_SLIDING_WINDOW = 101,  /* int: -1 auto (default), 0 none, >0 window */
    DANU_OPT_VALIDATE = 102,        /* int 0/1: scan weights for NaN/Inf (0)     */
    DANU_OPT_REPACK = 103,          /* int: -1 auto (default), 0 off, 1 on       */
    /* context */
    DANU_OPT_N_CTX = 200,           /* int: tokens, 0 = model maximum (default)  */
    DANU_OPT_KV_TYPE = 201,         /* int: DANU_KV_F16 (default) or DANU_KV_F32 */
    DANU_OPT_SEED = 202,            /* int: sampler seed, default 0              */
    DANU_OPT_N_BATCH = 203,         /* int: prompt tokens per forward, 512       */
    DANU_OPT_ON_FULL = 204,         /* int: DANU_FULL_ERROR (default)/_SHIFT     */
    DANU_OPT_N_KEEP = 205,          /* int: tokens kept at the front on shift    */
    /* sampling (also settable on a live context) */
    DANU_OPT_TEMPERATURE = 300,     /* float, default 0.8; 0 = greedy            */
    DANU_OPT_TOP_K = 301,           /* int, default 40; 0 = off                  */
    DANU_OPT_TOP_P = 302,           /* float, default 0.95; 1 = off              */
    DANU_OPT_MIN_P = 303,           /* float, default 0.05; 0 = off              */
    DANU_OPT_REPEAT_PENALTY = 304,  /* float, default 1.0 = off                  */
    DANU_OPT_REPEAT_LAST_N = 305,   /* int, default 64; -1 = whole history       */
    DANU_OPT_FREQUENCY_PENALTY = 306, /* float, default 0                        */
    DANU_OPT_PRESENCE_PENALTY = 307,  /* float, default 0                        */
    DANU_OPT_IGNORE_EOS = 308,      /* int 0/1, default 0                        */
    /* threads and kernels */
    DANU_OPT_N_THREADS = 400,       /* int, default: online cores (max 64)       */
    DANU_OPT_ISA = 401,             /* int: DANU_ISA_* cap, default AUTO          */
    DANU_OPT_FAST_BF16 = 402        /* int 0/1: faster, less exact bf16 (0)      */
};
/* DANU_OPT_REPACK: weight matrices can be copied at load into a row-
 * interleaved layout that the SIMD kernels read faster (lossless: the same
 * numbers in another order). auto (-1) repacks the matrices whose storage
 * type the chosen kernels have a fast repacked kernel for, and only when the
 * file is memory-mapped: the mapped pages of a repacked matrix are released,
 * so resident memory stays about the file size. on (1) repacks every matrix
 * whose type has a repacked form (q4_0, q8_0, q4_K, q6_K, bf16 with rows a
 * multiple of 16), even where only a slow fallback computes it, and also
 * when the file was read into memory (which then holds both copies). off (0)
 * uses the weights as stored. DANU_INFO_REPACKED_* report what was done. */
enum { DANU_REPACK_AUTO = -1, DANU_REPACK_OFF = 0, DANU_REPACK_ON = 1 };
/* DANU_OPT_FAST_BF16 (applies at model load, like DANU_OPT_ISA; default 0):
 * by default bf16 weights multiply activations split exactly into two bf16
 * parts (two vdpbf16ps per pair), which keeps full-size logits within ~4e-4
 * of the largest of transformers' float64 result. 1 multiplies them by the
 * activations rounded to bf16 instead, as llama.cpp does: one vdpbf16ps per
 * pair, ~1.8x faster prompt processing (full-size bf16 pp512 on Zen 4: 29
 * -> 53 tokens/s on 1 thread, 54 -> 96 on 2), but the logits move by up to
 * ~7e-3 of the largest (mean KL ~2e-5). Generation, bound by memory, is
 * unchanged. It acts only on the bf16 matrices repacked at load
 * (DANU_OPT_REPACK auto or on) for the AVX-512 kernels: with repack off,
 * other kernels or other weight types it changes nothing. */
enum { DANU_KV_F16 = 0, DANU_KV_F32 = 1 };
enum { DANU_FULL_ERROR = 0, DANU_FULL_SHIFT = 1 };
enum {
    DANU_ISA_AUTO = 0, DANU_ISA_SCALAR = 1, DANU_ISA_AVX2 = 2,
    DANU_ISA_AVX512 = 3, DANU_ISA_NEON = 4
};

/** CONSTRUCTOR. Options with every default. alloc may be NULL (libc); it is
 *  copied and becomes the allocator of what is created with these options.
 *  Errors: INVALID_ARG (out NULL, bad allocator), NOMEM. @since 0.1 */
DANU_API danu_status danu_options_create(const danu_allocator *alloc, danu_options **out);
/** DESTRUCTOR. NULL is a no-op. @since 0.1 */
DANU_API void danu_options_free(danu_options *opts);
/** METHOD. Set an int/float key. UNSUPPORTED for an unknown key or the wrong
 *  type, INVALID_ARG for a value out of bounds. @since 0.1 */
DANU_API danu_status danu_options_set_int(danu_options *opts, danu_param key, int64_t value);
DANU_API danu_status danu_options_set_float(danu_options *opts, danu_param key, double value);
/** METHOD. Callbacks (fn NULL removes). The log callback may be called from
 *  any thread that runs library work for the object. @since 0.1 */
DANU_API danu_status danu_options_set_log(danu_options *opts, danu_log_fn fn, void *user);
DANU_API danu_status danu_options_set_progress(danu_options *opts, danu_progress_fn fn, void *user);
/** Bounds of a key: min and max as doubles. UNSUPPORTED if unknown. @since 0.1 */
DANU_API danu_status danu_param_bounds(danu_param key, double *min, double *max);
/** Key by name ("n_ctx", "temperature", ...), -1 if unknown. @since 0.1 */
DANU_API danu_param danu_param_from_name(const char *name);

/* ------------------------------------------------------------------ */
/* Model                                                               */
/* ------------------------------------------------------------------ */

typedef struct danu_model danu_model;
typedef struct danu_tokenizer danu_tokenizer;
typedef struct danu_context danu_context;
typedef int32_t danu_token;

enum { DANU_FORMAT_HF = 1, DANU_FORMAT_GGUF = 2 };

/** Weight types; numbers equal GGUF's ggml_type. */
enum {
    DANU_TYPE_F32 = 0, DANU_TYPE_F16 = 1, DANU_TYPE_Q4_0 = 2, DANU_TYPE_Q4_1 = 3,
    DANU_TYPE_Q5_0 = 6, DANU_TYPE_Q5_1 = 7, DANU_TYPE_Q8_0 = 8,
    DANU_TYPE_Q4_K = 12, DANU_TYPE_Q5_K = 13, DANU_TYPE_Q6_K = 14,
    DANU_TYPE_BF16 = 30
};
/** Name of a weight type ("q4_0"), or "unknown". @since 0.1 */
DANU_API const char *danu_type_name(int32_t type);

/** CONSTRUCTOR. Load a model from an HF directory (config.json, safetensors,
 *  tokenizer.model) or a .gguf file. Weights are used in place from a
 *  read-only mapping where possible. opts may be NULL.
 *  Errors: INVALID_ARG, IO, FORMAT (message names file, tensor, offset),
 *  UNSUPPORTED, NOMEM, CANCELLED. *out is NULL on error. Thread-safe. @since 0.1 */
DANU_API danu_status danu_model_load(const char *path, const danu_options *opts, danu_model **out);
/** DESTRUCTOR. NULL is a no-op. @since 0.1 */
DANU_API void danu_model_free(danu_model *model);

/** Model facts (integers). */
typedef int32_t danu_info;
enum {
    DANU_INFO_VOCAB = 1, DANU_INFO_HIDDEN = 2, DANU_INFO_LAYERS = 3,
    DANU_INFO_HEADS = 4, DANU_INFO_KV_HEADS = 5, DANU_INFO_HEAD_DIM = 6,
    DANU_INFO_FFN = 7, DANU_INFO_CONTEXT_LENGTH = 8, DANU_INFO_SLIDING_WINDOW = 9,
    DANU_INFO_BOS = 10, DANU_INFO_EOS = 11, DANU_INFO_UNK = 12,
    DANU_INFO_FORMAT = 13, DANU_INFO_TENSOR_COUNT = 14, DANU_INFO_WEIGHT_BYTES = 15,
    DANU_INFO_TIED_EMBEDDINGS = 16, DANU_INFO_ISA = 17, DANU_INFO_FILE_TYPE = 18,
    DANU_INFO_REPACKED_MATRICES = 19, /* matrices repacked at load (DANU_OPT_REPACK) */
    DANU_INFO_REPACKED_BYTES = 20,    /* bytes of their repacked copies            */
    /* float facts, through danu_model_get_float */
    DANU_INFO_ROPE_THETA = 100, DANU_INFO_RMS_EPS = 101
};
/** METHOD. Read an integer / float fact. UNSUPPORTED for an unknown key. @since 0.1 */
DANU_API danu_status danu_model_get_int(const danu_model *model, danu_info key, int64_t *out);
DANU_API danu_status danu_model_get_float(const danu_model *model, danu_info key, double *out);
/** METHOD. Tensor i (0 <= i < TENSOR_COUNT): name as stored (borrowed, lives
 *  as long as the model), type, number of dims and dims outermost first
 *  (PyTorch order; dims must hold 4). Any out pointer may be NULL. @since 0.1 */
DANU_API danu_status danu_model_tensor(const danu_model *model, int64_t i, const char **name,
                                       int32_t *type, int32_t *n_dims, int64_t *dims);
/** METHOD. The model's tokenizer, borrowed (lives as long as the model). */
DANU_API const danu_tokenizer *danu_model_tokenizer(const danu_model *model);

/* ------------------------------------------------------------------ */
/* Tokenizer                                                           */
/* ------------------------------------------------------------------ */

enum {
    DANU_TOKENIZE_ADD_BOS = 1,       /* prepend BOS                          */
    DANU_TOKENIZE_ADD_EOS = 2,       /* append EOS                           */
    DANU_TOKENIZE_PARSE_SPECIAL = 4  /* "<s>", "</s>", "<unk>" become ids    */
};

/** CONSTRUCTOR. Load a bare SentencePiece tokenizer.model. @since 0.1 */
DANU_API danu_status danu_tokenizer_load(const char *path, const danu_options *opts,
                                         danu_tokenizer **out);
/** DESTRUCTOR for tokenizers from danu_tokenizer_load only. NULL no-op. */
DANU_API void danu_tokenizer_free(danu_tokenizer *tok);
DANU_API int32_t danu_tokenizer_vocab_size(const danu_tokenizer *tok);

/** METHOD. Encode UTF-8 text (len bytes, need not be NUL-terminated).
 *  Writes up to cap ids to out and the number of ids to *n_out; returns
 *  BUFFER_TOO_SMALL when cap < *n_out (out then holds the first cap). out may
 *  be NULL when cap is 0. Errors: BAD_UTF8 (offset in message). Thread-safe. */
DANU_API danu_status danu_tokenizer_encode(const danu_tokenizer *tok, const char *text, size_t len,
                                           uint32_t flags, danu_token *out, size_t cap,
                                           size_t *n_out);
/** METHOD. Decode ids as SentencePiece decodes a whole sequence. Writes up to
 *  cap bytes plus a NUL when room; *len_out = text length without NUL;
 *  BUFFER_TOO_SMALL when cap <= *len_out. Errors: BAD_TOKEN. Thread-safe. */
DANU_API danu_status danu_tokenizer_decode(const danu_tokenizer *tok, const danu_token *ids, size_t n,
                                           char *out, size_t cap, size_t *len_out);
/** METHOD. The stored piece of one id (U+2581 for spaces, "<0x0A>" bytes). */
DANU_API danu_status danu_tokenizer_piece(const danu_tokenizer *tok, danu_token id,
                                          const char **piece, size_t *len);

/** Danube chat format: n messages, roles "system", "user", "assistant".
 *  BOS, then <|system|>..</s> <|prompt|>..</s> <|answer|>..</s>, then
 *  <|answer|> when add_reply_prompt. Same buffer rules as encode. */
DANU_API danu_status danu_chat_encode(const danu_tokenizer *tok, const char *const *roles,
                                      const char *const *contents, size_t n,
                                      int32_t add_reply_prompt, danu_token *out, size_t cap,
                                      size_t *n_out);

typedef struct danu_decoder danu_decoder;
/** CONSTRUCTOR. Streaming decoder over a tokenizer (which must outlive it). */
DANU_API danu_status danu_decoder_create(const danu_tokenizer *tok, danu_decoder **out);
DANU_API void danu_decoder_free(danu_decoder *dec);
/** METHOD. Push one id; the complete UTF-8 text it finishes goes to out
 *  (NUL-terminated, *len_out bytes). cap >= 64 always suffices. */
DANU_API danu_status danu_decoder_push(danu_decoder *dec, danu_token id, char *out, size_t cap,
                                       size_t *len_out);
/** METHOD. Emit what is pending (an incomplete UTF-8 tail becomes U+FFFD) and
 *  reset to the start-of-text state. */
DANU_API danu_status danu_decoder_flush(danu_decoder *dec, char *out, size_t cap, size_t *len_out);

/* ------------------------------------------------------------------ */
/* Context, evaluation, KV cache                                        */
/* ------------------------------------------------------------------ */

/** CONSTRUCTOR. A context on a model (which must outlive it). opts may be
 *  NULL. Allocates the KV cache and scratch once; evaluation allocates
 *  nothing. Errors: INVALID_ARG (n_ctx above the model's), NOMEM. */
DANU_API danu_status danu_context_create(danu_model *model, const danu_options *opts,
                                         danu_context **out);
DANU_API void danu_context_free(danu_context *ctx);
/** METHOD. Sticky settings on a live context (sampling, threads, ON_FULL). */
DANU_API danu_status danu_context_set_int(danu_context *ctx, danu_param key, int64_t value);
DANU_API danu_status danu_context_set_float(danu_context *ctx, danu_param key, double value);
/** METHOD. Bias added to one token's logit when sampling (0 removes). */
DANU_API danu_status danu_context_set_logit_bias(danu_context *ctx, danu_token id, float bias);
/** METHOD. Bytes of KV cache and scratch held by the context. */
DANU_API size_t danu_context_memory_size(const danu_context *ctx);
DANU_API danu_status danu_context_memory_estimate(const danu_model *model, const danu_options *opts, size_t *out);

/** METHOD. Append tokens to the cache and compute them as one batch (split
 *  into N_BATCH pieces). Afterwards danu_context_logits() is the last row.
 *  all_logits, if not NULL, receives n * vocab floats (every position).
 *  Errors: BAD_TOKEN, CONTEXT_FULL (nothing appended), ABORTED (the cache
 *  holds the tokens of the batches finished before the abort). */
DANU_API danu_status danu_context_eval(danu_context *ctx, const danu_token *tokens, size_t n,
                                       float *all_logits);
/** METHOD. Make the cache hold exactly `tokens`, reusing the longest common
 *  prefix already cached and evaluating only the tail (at least the last
 *  token is evaluated so logits are fresh). *n_reused may be NULL. */
DANU_API danu_status danu_context_prompt(danu_context *ctx, const danu_token *tokens, size_t n,
                                         size_t *n_reused);
/** METHOD. Logits of the last evaluated position (vocab floats), borrowed until
 *  the next call that evaluates; NULL before any evaluation. */
DANU_API const float *danu_context_logits(const danu_context *ctx);
/** METHOD. Tokens in the cache, and a borrowed view of their ids. */
DANU_API size_t danu_context_n_tokens(const danu_context *ctx);
DANU_API const danu_token *danu_context_tokens(const danu_context *ctx);
/** METHOD. Forget everything (keeps settings). */
DANU_API danu_status danu_context_clear(danu_context *ctx);
/** METHOD. Keep the first n tokens (logits are invalid until the next
 *  evaluation). A model with a sliding window W keeps only the last W
 *  positions per layer: while at most W tokens are cached any n works; once
 *  more are cached the ring has overwritten older positions and only
 *  n >= n_tokens - 1 is possible. Otherwise STATE, and the context is
 *  unchanged. Models without a window can always rewind. */
DANU_API danu_status danu_context_rewind(danu_context *ctx, size_t n);
/** METHOD. Ask running work on ctx to stop; safe from any thread. The work
 *  (eval, prompt, generate, chat_append) returns ABORTED within one layer's
 *  work, the cache holding the batches finished before. An abort while the
 *  context is idle is forgotten when the next of those calls starts. For
 *  danu_context_step, which a caller runs in its own loop, an abort that
 *  arrives between two steps stops the next step (which returns ABORTED and
 *  uses the abort up). During a context shift (DANU_FULL_SHIFT) an abort
 *  leaves the cache holding the kept tokens re-evaluated so far. */
DANU_API void danu_context_abort(danu_context *ctx);

/* ------------------------------------------------------------------ */
/* Sampling and generation                                              */
/* ------------------------------------------------------------------ */

/** METHOD. Sample one id from the current logits with the context's sampling
 *  settings and history (does not append it). */
DANU_API danu_status danu_context_sample(danu_context *ctx, danu_token *out);

/** Token callback: id and the UTF-8 text it completes (may be empty).
 *  Return nonzero to stop. */
typedef int32_t (*danu_token_fn)(void *user, danu_token id, const char *text, size_t len);

enum {
    DANU_STOP_LENGTH = 0,   /* produced max_tokens        */
    DANU_STOP_EOS = 1,      /* sampled EOS                */
    DANU_STOP_STRING = 2,   /* a stop string appeared     */
    DANU_STOP_CALLBACK = 3, /* the callback returned != 0 */
    DANU_STOP_ABORTED = 4,  /* danu_context_abort()       */
    DANU_STOP_FULL = 5      /* context full (ON_FULL=ERROR) */
};

/** METHOD. Add / clear stop strings (the stop string itself is not emitted). */
DANU_API danu_status danu_context_add_stop_string(danu_context *ctx, const char *s);
DANU_API danu_status danu_context_clear_stop_strings(danu_context *ctx);

/** METHOD. From the current state (the last evaluated logits), sample and
 *  append up to max_tokens tokens, calling fn for each. *reason (may be NULL)
 *  says why it stopped. EOS is not appended to the cache. */
DANU_API danu_status danu_context_generate(danu_context *ctx, int32_t max_tokens, danu_token_fn fn,
                                           void *user, int32_t *reason);
/** METHOD. One step of generation, bounded work for game loops: sample a
 *  token, evaluate it, and write its text (NUL-terminated) to out. *id_out
 *  receives the id; *reason is set when this step ended generation (-1 when
 *  it goes on). */
DANU_API danu_status danu_context_step(danu_context *ctx, danu_token *id_out, char *out,
                                       size_t cap, size_t *len_out, int32_t *reason);
/** METHOD. End a generation driven by danu_context_step before a step
 *  reported a reason (the caller stops stepping, e.g. after its own token
 *  budget): writes the text held back so far (an unfinished UTF-8 character,
 *  or the start of a possible stop string) to out, NUL-terminated, and
 *  resets the step state; *len_out = 0 when nothing is pending. Steps then
 *  and text of generate() concatenate to the same text. BUFFER_TOO_SMALL
 *  keeps the text for a retry and sets *len_out to its length. @since 0.1 */
DANU_API danu_status danu_context_step_finish(danu_context *ctx, char *out, size_t cap, size_t *len_out);

/** METHOD. Append chat messages (Danube format) to the cache; with
 *  add_reply_prompt the assistant turn is opened. The first call on an empty
 *  context adds BOS. */
DANU_API danu_status danu_context_chat_append(danu_context *ctx, const char *const *roles,
                                              const char *const *contents, size_t n,
                                              int32_t add_reply_prompt);

/* ------------------------------------------------------------------ */
/* State                                                                */
/* ------------------------------------------------------------------ */

/** METHOD. Bytes needed to save the context's state. */
DANU_API size_t danu_context_state_size(const danu_context *ctx);
/** METHOD. Save state (versioned, tied to the model's shape) to buf. */
DANU_API danu_status danu_context_state_save(const danu_context *ctx, void *buf, size_t cap,
                                             size_t *written);
/** METHOD. Restore state; FORMAT for corrupt data or another model's state
 *  (the context is left unchanged on failure). */
DANU_API danu_status danu_context_state_load(danu_context *ctx, const void *buf, size_t len);
DANU_API danu_status danu_context_state_save_file(const danu_context *ctx, const char *path);
DANU_API danu_status danu_context_state_load_file(danu_context *ctx, const char *path);

/* ------------------------------------------------------------------ */
/* Tools: synthetic models                                              */
/* ------------------------------------------------------------------ */

/** Write a synthetic-weight model whose every weight is a formula of
 *  (seed, tensor, element) (see the project's synthetic-model spec).
 *  config: "danube-1.8b", "tiny-a", "tiny-b" or "tiny-q". format:
 *  DANU_FORMAT_HF (out_path is a new directory) or DANU_FORMAT_GGUF (a new
 *  file). type: storage type of the matrices (bf16, f16, f32; GGUF also the
 *  quantized types). tokenizer_model: the bytes of a Llama 2 tokenizer.model.
 *  opts may be NULL (progress callback and allocator are used). Errors:
 *  INVALID_ARG (unknown config), IO (out_path exists, disk full: free
 *  space is checked first), CANCELLED. Thread-safe. @since 0.1 */
DANU_API danu_status danu_synth_write(const char *config, uint64_t seed, int32_t format, int32_t type,
                                      const void *tokenizer_model, size_t tokenizer_len,
                                      const char *out_path, const danu_options *opts);

/* ------------------------------------------------------------------ */
/* Tools: conversion and quantization                                   */
/* ------------------------------------------------------------------ */

/** Convert a model (HF directory or GGUF) into a GGUF v3 file as llama.cpp's
 *  converter and quantizer write it. type: "f16", "bf16", "q8_0", "q4_0",
 *  "q4_1", "q5_0", "q5_1", "q4_k", "q5_k", "q6_k", "q4_k_m" or "q5_k_m"
 *  (the _m mixes follow llama.cpp's choice of higher types for some tensors).
 *  Streams tensor by tensor, uses DANU_OPT_N_THREADS threads, reports
 *  progress through the options' callback (nonzero cancels), writes
 *  OUTPUT.tmp and renames it at the end. Errors: INVALID_ARG (unknown type,
 *  output exists), IO, FORMAT, UNSUPPORTED, CANCELLED. Thread-safe. @since 0.1 */
DANU_API danu_status danu_quantize(const char *input, const char *output, const char *type,
                                   const danu_options *opts);

#ifdef __cplusplus
}
#endif
#endif /* DANU_H */
