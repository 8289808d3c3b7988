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
 *   experimental yet):
 *   functions never change signature, enums only gain values, visible structs
 *   carry struct_size and only grow at the end. Changed behaviour gets a new
 *   name (_v2). Each function says since which version it exists (@since);
 *   check danu_version_number() before calling one newer than 0.1.
 *
 * HOW A FUNCTION IS DOCUMENTED
 *   Every DANU_API function has a block of this shape (tests/abi/hdrcheck.py
 *   fails the build's ABI test when a part is missing):
 *     TAG. One-line summary. TAG is CONSTRUCTOR (makes an object the caller
 *          frees), DESTRUCTOR (frees one), METHOD (works on the object in its
 *          first parameter) or FUNCTION (no object).
 *     @param name   each parameter: meaning, and whether it may be NULL (a
 *                   pointer that is not said to allow NULL must not be NULL).
 *     @return       the result (none for void functions); for a danu_status,
 *                   every status other than OK the call returns and why
 *                   (Errors:). DANU_ERR_INTERNAL (a
 *                   bug in libdanu) is possible from any call returning a
 *                   danu_status and is not listed.
 *     Thread:       who may call it when (see OBJECTS AND LIFETIMES).
 *     @since        the version that added it.
 *   Pointers returned or written to out parameters say who owns them and how
 *   long they stay valid; ABI.md has the same rules as one table.
 */
#ifndef DANU_H
#define DANU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DANU_VERSION_MAJOR 0
#define DANU_VERSION_MINOR 2
#define DANU_VERSION_PATCH 0
#define DANU_VERSION_NUMBER \
    (DANU_VERSION_MAJOR * 10000 + DANU_VERSION_MINOR * 100 + DANU_VERSION_PATCH)
#define DANU_VERSION_STRING "0.2.0"

#if defined(_WIN32)
#  if defined(DANU_BUILDING_DLL)
#    define DANU_API __declspec(dllexport)
#  else
#    define DANU_API   /* danu.dll through its import library, or static */
#  endif
#elif defined(__GNUC__)
#  define DANU_API __attribute__((visibility("default")))
#else
#  define DANU_API
#endif

/* ------------------------------------------------------------------ */
/* Versions and errors                                                 */
/* ------------------------------------------------------------------ */

/** FUNCTION. Version number of the library actually loaded.
 *  @return DANU_VERSION_NUMBER of the library it was built from (compare with
 *          the header's to use functions of a newer minor version).
 *  Thread: any thread.
 *  @since 0.1 */
DANU_API uint32_t danu_version_number(void);
/** FUNCTION. Version of the library actually loaded, as text.
 *  @return "MAJOR.MINOR.PATCH"; static storage, never NULL, never freed.
 *  Thread: any thread.
 *  @since 0.1 */
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
    DANU_ERR_INTERNAL = 13,     /* a bug in libdanu                            */
    DANU_IN_PROGRESS = 14       /* not an error: sliced work remains (0.2)     */
};

/** FUNCTION. Short description of a status ("invalid argument", ...).
 *  @param status any value; unknown values give "unknown status".
 *  @return static text, never NULL, never freed.
 *  Thread: any thread.
 *  @since 0.1 */
DANU_API const char *danu_strerror(danu_status status);
/** FUNCTION. Detail of the last failure on the calling thread.
 *  @return what failed and where (file, tensor, offset, token, key); "" when
 *          nothing failed yet. Library-owned, never NULL; valid until the next
 *          danu call on this thread (copy it to keep it).
 *  Thread: any thread; each thread has its own.
 *  @since 0.1 */
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
/** Log callback (danu_options_set_log). user: the pointer given with it;
 *  level: DANU_LOG_*; message: NUL-terminated, no trailing newline, valid
 *  only during the call (copy it). Called on any thread that runs library
 *  work for the model or context, so it must be thread-safe; it must not call
 *  into the object being worked on. */
typedef void (*danu_log_fn)(void *user, int32_t level, const char *message);
/** Progress callback (danu_options_set_progress) of danu_model_load,
 *  danu_synth_write and danu_quantize, called on the thread that made that
 *  call. fraction: in [0,1], not decreasing. Return nonzero to cancel: the
 *  call then stops and returns DANU_ERR_CANCELLED, leaving nothing behind. */
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
    DANU_OPT_KV_TYPE = 201,         /* int: DANU_KV_F16 (default), _F32, _Q8_0   */
    DANU_OPT_SEED = 202,            /* int: sampler seed, default 0              */
    DANU_OPT_N_BATCH = 203,         /* int: prompt tokens per forward, 512       */
    DANU_OPT_ON_FULL = 204,         /* int: DANU_FULL_ERROR (default)/_SHIFT     */
    DANU_OPT_N_KEEP = 205,          /* int: tokens kept at the front on shift    */
    DANU_OPT_KV_HUGE_PAGES = 206,   /* int 0/1: KV cache on huge pages (1), 0.2  */
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
    DANU_OPT_N_THREADS = 400,       /* int: threads (lanes of the pool), 0 = cores */
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
 * pair, ~1.8x faster prompt processing (full-size bf16 pp512 on Zen 5: 29
 * -> 53 tokens/s on 1 thread, 54 -> 96 on 2), but the logits move by up to
 * ~7e-3 of the largest (mean KL ~2e-5). Generation, bound by memory, is
 * unchanged. It acts only on the bf16 matrices repacked at load
 * (DANU_OPT_REPACK auto or on) for the AVX-512 kernels: with repack off,
 * other kernels or other weight types it changes nothing. */
/* DANU_OPT_KV_TYPE: how a context stores its cached keys and values.
 * F16 (default) keeps them as half floats; F32 as floats (twice the memory,
 * for checks). Q8_0 keeps 8-bit integers with one float scale per KV head
 * and position (scale = max |x| / 127): 1.05 bytes per value instead of 2,
 * so a Danube character at a full 4096-token window needs 126 MiB instead
 * of 240 MiB, and decoding after a long context reads half the cache
 * bytes, scores the keys with int8 dot products (each query head
 * quantized the same way) and sums the values exactly in integers (each
 * unnormalized probability times the row's scale as a 14-bit integer, the
 * softmax's denominator an exact integer too). Its logits differ a little
 * from F16's (mean KL divergence below 1e-3 on the test models); every cache operation (state save/load,
 * rewind, fork, shift) works with every type, but a state loads only into a
 * context of the type that saved it. */
enum { DANU_KV_F16 = 0, DANU_KV_F32 = 1, DANU_KV_Q8_0 = 2 };
/* DANU_OPT_KV_HUGE_PAGES (0.2; default 1): 1 asks the kernel to back a
 * context's KV cache with huge pages (Linux transparent huge pages, where
 * the system allows them on request; elsewhere it does nothing). Decoding
 * after a long context reads the whole cache per token, and on 4 KiB pages
 * every page of it costs a TLB miss: on Zen 5, tg32 after 4096 tokens ran
 * 1.1-1.2x faster at one thread with them (medians; two threads: within
 * the noise). The price is residency: each layer and head keeps its own
 * run of positions, so the first evaluation touches every huge page of the
 * cache and makes it resident at once, where 4 KiB pages grow with the
 * conversation. The allocation is the same (danu_context_memory_size);
 * memory the allocator touched before handing it over (a debug fill, a
 * reused heap block) stays on small pages. 0 makes no request: many
 * contexts that stay short and should hold only the memory they touched
 * want 0. */
enum { DANU_FULL_ERROR = 0, DANU_FULL_SHIFT = 1 };
/* DANU_ISA_*: kernel levels for DANU_OPT_ISA (a cap: the best level the CPU
 * runs that is not above it) and DANU_INFO_ISA (the level in use). The
 * values are append-only names, not an order: the levels rank scalar <
 * avx2 < avx2vnni < avx512 (x86-64) and scalar < neon (AArch64).
 * AVX2VNNI is AVX2 + FMA + F16C with AVX-VNNI (VEX vpdpbusd on 256 bits:
 * Intel Core 12th gen and later without AVX-512, Zen 5); it serves as a
 * cap on any x86-64 CPU (AVX2 kernels where AVX-VNNI is absent). */
enum {
    DANU_ISA_AUTO = 0, DANU_ISA_SCALAR = 1, DANU_ISA_AVX2 = 2,
    DANU_ISA_AVX512 = 3, DANU_ISA_NEON = 4, DANU_ISA_AVX2VNNI = 5
};

/** CONSTRUCTOR. A new options bag holding every default.
 *  @param alloc allocator hooks, copied; NULL = libc. They become the
 *               allocator of everything created with these options (its
 *               functions and user must outlive those objects).
 *  @param out   receives the options (free with danu_options_free); set to
 *               NULL on error.
 *  @return OK. Errors: INVALID_ARG (out NULL; alloc->struct_size below the
 *          0.1 size, or a hook NULL), NOMEM.
 *  Thread: any thread.
 *  @since 0.1 */
DANU_API danu_status danu_options_create(const danu_allocator *alloc, danu_options **out);
/** DESTRUCTOR. Free an options bag; what was created with it is unaffected.
 *  @param opts the options, or NULL (no-op).
 *  Thread: the thread that owns opts.
 *  @since 0.1 */
DANU_API void danu_options_free(danu_options *opts);
/** METHOD. Set an integer key (see the DANU_OPT_* list for each key's type).
 *  @param opts  the options.
 *  @param key   a DANU_OPT_* integer key.
 *  @param value within danu_param_bounds(key).
 *  @return OK. Errors: INVALID_ARG (opts NULL, value out of bounds),
 *          UNSUPPORTED (unknown key, or a float key: never converted; the
 *          message names the key and its type). opts is unchanged on error.
 *  Thread: one thread at a time per options bag.
 *  @since 0.1 */
DANU_API danu_status danu_options_set_int(danu_options *opts, danu_param key, int64_t value);
/** METHOD. Set a float key (see the DANU_OPT_* list for each key's type).
 *  @param opts  the options.
 *  @param key   a DANU_OPT_* float key.
 *  @param value finite and within danu_param_bounds(key).
 *  @return OK. Errors: INVALID_ARG (opts NULL, value not finite or out of
 *          bounds), UNSUPPORTED (unknown key, or an integer key: never
 *          converted; the message names the key and its type). opts is
 *          unchanged on error.
 *  Thread: one thread at a time per options bag.
 *  @since 0.1 */
DANU_API danu_status danu_options_set_float(danu_options *opts, danu_param key, double value);
/** METHOD. Set or remove the log callback of what is created with opts.
 *  @param opts the options.
 *  @param fn   the callback (danu_log_fn), or NULL to remove it (silent).
 *  @param user passed back to fn; may be NULL. fn and user must stay valid
 *              until the last model/context created with opts is freed.
 *  @return OK. Errors: INVALID_ARG (opts NULL).
 *  Thread: one thread at a time per options bag.
 *  @since 0.1 */
DANU_API danu_status danu_options_set_log(danu_options *opts, danu_log_fn fn, void *user);
/** METHOD. Set or remove the progress/cancel callback (danu_progress_fn).
 *  @param opts the options.
 *  @param fn   the callback, or NULL to remove it.
 *  @param user passed back to fn; may be NULL. Valid until the end of the
 *              load, synth or quantize call that uses opts.
 *  @return OK. Errors: INVALID_ARG (opts NULL).
 *  Thread: one thread at a time per options bag.
 *  @since 0.1 */
DANU_API danu_status danu_options_set_progress(danu_options *opts, danu_progress_fn fn, void *user);
/** Thread pools (0.2). A pool runs the parallel parts of evaluation:
 *  matrix products, attention, norms. Every model has one of its own,
 *  started on its first context and shared by all its contexts (so eight
 *  contexts on a 2-core machine still run on 2 threads, not 16); an
 *  application can instead create one pool and hand it to several models
 *  with danu_options_set_pool, or hand libdanu its own job system
 *  (danu_pool_create_host) so that libdanu starts no thread at all.
 *  Work is cut into many small chunks that any participating thread takes
 *  as it gets there, the calling thread included, so a worker the system
 *  has descheduled delays a call by at most the chunk it holds. Idle
 *  workers spin a few microseconds, then yield, then sleep. */
typedef struct danu_pool danu_pool;
/** One work item of a host job system: run item `item` of the batch `data`
 *  (passed through unchanged from the danu_parallel_for_fn call). */
typedef void (*danu_job_fn)(void *data, int32_t item);
/** The host's parallel-for: call job(data, i) exactly once for each i in
 *  0..n_items-1, on any threads, in any order, concurrently or one after
 *  the other (the calling thread may run them all), and return only after
 *  every call has returned. Items never wait for one another, so running
 *  them in sequence cannot deadlock. Running an item twice or not at all
 *  is a caller bug libdanu cannot detect (results are then wrong). n_items
 *  is at most the pool's DANU_OPT_N_THREADS. The callback may be entered
 *  by several threads at once when several contexts evaluate at once. */
typedef void (*danu_parallel_for_fn)(void *user, danu_job_fn job, void *data, int32_t n_items);

/** CONSTRUCTOR. A pool of worker threads that models and contexts share
 *  (see danu_options_set_pool). Workers start when first needed.
 *  @param opts DANU_OPT_N_THREADS (threads including the caller's; 0 =
 *              the cores this process may run on), the allocator and the
 *              log callback; NULL = defaults.
 *  @param out  receives the pool (release with danu_pool_free); NULL on
 *              error.
 *  @return OK. Errors: INVALID_ARG (out NULL), NOMEM.
 *  Thread: any thread.
 *  @since 0.2 */
DANU_API danu_status danu_pool_create(const danu_options *opts, danu_pool **out);
/** CONSTRUCTOR. A pool that runs on the host application's job system:
 *  each parallel step of evaluation becomes one call of fn with up to
 *  DANU_OPT_N_THREADS items; libdanu starts no thread.
 *  @param opts DANU_OPT_N_THREADS (most items per call, the workers the
 *              host lends; 0 = the cores this process may run on), the
 *              allocator; NULL = defaults.
 *  @param fn   the host's parallel-for (danu_parallel_for_fn contract).
 *  @param user passed back to fn; fn and user must stay valid until the
 *              pool is destroyed.
 *  @param out  receives the pool (release with danu_pool_free).
 *  @return OK. Errors: INVALID_ARG (fn or out NULL), NOMEM.
 *  Thread: any thread.
 *  @since 0.2 */
DANU_API danu_status danu_pool_create_host(const danu_options *opts, danu_parallel_for_fn fn, void *user,
                                           danu_pool **out);
/** DESTRUCTOR. Release the caller's reference: the pool (and its threads,
 *  joined) goes when it and every model and context using it are freed.
 *  @param pool the pool, or NULL (no-op).
 *  Thread: any thread.
 *  @since 0.2 */
DANU_API void danu_pool_free(danu_pool *pool);
/** FUNCTION. Threads a pool runs work on (host pools: the items per call).
 *  @param pool the pool.
 *  @return the count, or 0 when pool is NULL.
 *  Thread: any thread.
 *  @since 0.2 */
DANU_API int32_t danu_pool_size(const danu_pool *pool);
/** METHOD. Run what is created with opts on pool instead of the model's
 *  own pool: a model loaded with it repacks on it and gives it to its
 *  contexts; a context created with it uses it. A context uses at most
 *  DANU_OPT_N_THREADS of the pool's threads (0: all of them).
 *  @param opts the options.
 *  @param pool the pool (each object created keeps a reference), or NULL
 *              for the default.
 *  @return OK. Errors: INVALID_ARG (opts NULL).
 *  Thread: one thread at a time per options bag.
 *  @since 0.2 */
DANU_API danu_status danu_options_set_pool(danu_options *opts, danu_pool *pool);

/** FUNCTION. Smallest and largest value a key accepts.
 *  @param key a DANU_OPT_* key.
 *  @param min receives the minimum; may be NULL.
 *  @param max receives the maximum; may be NULL.
 *  @return OK. Errors: UNSUPPORTED (unknown key: doubles as a feature probe).
 *  Thread: any thread.
 *  @since 0.1 */
DANU_API danu_status danu_param_bounds(danu_param key, double *min, double *max);
/** FUNCTION. The key of an option name.
 *  @param name lower-case name as in the DANU_OPT_* list without the prefix
 *              ("n_ctx", "temperature"); NULL gives -1.
 *  @return the key, or -1 when the name is unknown.
 *  Thread: any thread.
 *  @since 0.1 */
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
/** FUNCTION. Name of a weight type.
 *  @param type a DANU_TYPE_* value.
 *  @return "q4_0", "bf16", ...; "unknown" for other values. Static, never NULL.
 *  Thread: any thread.
 *  @since 0.1 */
DANU_API const char *danu_type_name(int32_t type);

/** CONSTRUCTOR. Load a model from an HF directory (config.json, safetensors,
 *  tokenizer.model) or a .gguf file. Weights are used in place from a
 *  read-only mapping where possible.
 *  @param path the directory or file; not NULL or empty.
 *  @param opts load options (DANU_OPT_USE_MMAP, _SLIDING_WINDOW, _VALIDATE,
 *              _REPACK, _ISA, _FAST_BF16), allocator, log and progress; NULL
 *              = defaults. Copied: it may be freed after the call.
 *  @param out  receives the model (free with danu_model_free after its
 *              contexts); set to NULL on error.
 *  @return OK. Errors: INVALID_ARG (path or out NULL, path empty), IO (cannot
 *          open, read or map), FORMAT (corrupt or inconsistent file; the
 *          message names file, tensor, offset), UNSUPPORTED (architecture,
 *          tensor type or tokenizer kind not supported), NOMEM, CANCELLED
 *          (the progress callback returned nonzero).
 *  Thread: any thread; loads may run concurrently.
 *  @since 0.1 */
DANU_API danu_status danu_model_load(const char *path, const danu_options *opts, danu_model **out);
/** DESTRUCTOR. Free a model, its weights, mapping and tokenizer.
 *  @param model the model, or NULL (no-op). Every context on it must be
 *               freed first; pointers it handed out become invalid.
 *  Thread: any thread, once no other thread uses the model.
 *  @since 0.1 */
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
/** METHOD. Read an integer fact of the model.
 *  @param model the model.
 *  @param key   an integer DANU_INFO_* key (below 100).
 *  @param out   receives the value.
 *  @return OK. Errors: INVALID_ARG (model or out NULL), UNSUPPORTED (unknown
 *          key or a float fact).
 *  Thread: any thread (the model is immutable).
 *  @since 0.1 */
DANU_API danu_status danu_model_get_int(const danu_model *model, danu_info key, int64_t *out);
/** METHOD. Read a float fact of the model (DANU_INFO_ROPE_THETA, _RMS_EPS).
 *  @param model the model.
 *  @param key   a float DANU_INFO_* key (100 and up).
 *  @param out   receives the value.
 *  @return OK. Errors: INVALID_ARG (model or out NULL), UNSUPPORTED (unknown
 *          key or an integer fact).
 *  Thread: any thread (the model is immutable).
 *  @since 0.1 */
DANU_API danu_status danu_model_get_float(const danu_model *model, danu_info key, double *out);
/** METHOD. Describe tensor i of the model file.
 *  @param model  the model.
 *  @param i      0 <= i < DANU_INFO_TENSOR_COUNT.
 *  @param name   receives the name as stored: borrowed from the model, valid
 *                until it is freed. May be NULL.
 *  @param type   receives the DANU_TYPE_* storage type. May be NULL.
 *  @param n_dims receives the number of dims (1..4). May be NULL.
 *  @param dims   receives 4 dims, outermost first (PyTorch order), unused ones
 *                1. May be NULL; else it must hold 4.
 *  @return OK. Errors: INVALID_ARG (model NULL, i out of range).
 *  Thread: any thread (the model is immutable).
 *  @since 0.1 */
DANU_API danu_status danu_model_tensor(const danu_model *model, int64_t i, const char **name,
                                       int32_t *type, int32_t *n_dims, int64_t *dims);
/** METHOD. The model's tokenizer.
 *  @param model the model; may be NULL.
 *  @return borrowed from the model, valid until it is freed (never pass it to
 *          danu_tokenizer_free); NULL when model is NULL or the files had no
 *          tokenizer (then only token ids can be used).
 *  Thread: any thread (the model is immutable).
 *  @since 0.1 */
DANU_API const danu_tokenizer *danu_model_tokenizer(const danu_model *model);

/* ------------------------------------------------------------------ */
/* Tokenizer                                                           */
/* ------------------------------------------------------------------ */

enum {
    DANU_TOKENIZE_ADD_BOS = 1,       /* prepend BOS (also before a "<s>" that
                                        PARSE_SPECIAL turned into BOS, as
                                        SentencePiece does; the danu CLI adds
                                        it only when the text has none)     */
    DANU_TOKENIZE_ADD_EOS = 2,       /* append EOS                           */
    DANU_TOKENIZE_PARSE_SPECIAL = 4  /* "<s>", "</s>", "<unk>" become ids    */
};

/** CONSTRUCTOR. Load a bare SentencePiece tokenizer.model (BPE).
 *  @param path the file; not NULL.
 *  @param opts only its allocator is used; NULL = libc.
 *  @param out  receives the tokenizer (free with danu_tokenizer_free); set to
 *              NULL on error.
 *  @return OK. Errors: INVALID_ARG (path or out NULL), IO, FORMAT (corrupt
 *          protobuf or vocabulary), UNSUPPORTED (not BPE, normalization rules,
 *          whitespace as suffix), NOMEM.
 *  Thread: any thread.
 *  @since 0.1 */
DANU_API danu_status danu_tokenizer_load(const char *path, const danu_options *opts,
                                         danu_tokenizer **out);
/** DESTRUCTOR. Free a tokenizer from danu_tokenizer_load.
 *  @param tok the tokenizer, or NULL (no-op). Never a model's tokenizer;
 *             decoders over it must be freed first.
 *  Thread: any thread, once no other thread uses tok.
 *  @since 0.1 */
DANU_API void danu_tokenizer_free(danu_tokenizer *tok);
/** METHOD. Number of pieces in the vocabulary.
 *  @param tok the tokenizer; may be NULL.
 *  @return the vocabulary size; 0 when tok is NULL.
 *  Thread: any thread (tokenizers are immutable).
 *  @since 0.1 */
DANU_API int32_t danu_tokenizer_vocab_size(const danu_tokenizer *tok);

/** METHOD. Encode UTF-8 text into token ids.
 *  @param tok   the tokenizer.
 *  @param text  len bytes of UTF-8, need not be NUL-terminated; NULL only
 *               when len is 0.
 *  @param len   bytes of text.
 *  @param flags DANU_TOKENIZE_* bits; other bits are refused.
 *  @param out   receives up to cap ids (the first cap when more); NULL only
 *               when cap is 0 (to ask for the count).
 *  @param cap   capacity of out in ids.
 *  @param n_out receives the number of ids of the whole text; may be NULL.
 *  @return OK. Errors: INVALID_ARG (tok NULL, text or out NULL with a nonzero
 *          size, unknown flags, text too long), BAD_UTF8 (byte offset in the
 *          message), BUFFER_TOO_SMALL (cap < *n_out), NOMEM.
 *  Thread: any thread, concurrently on one tokenizer.
 *  @since 0.1 */
DANU_API danu_status danu_tokenizer_encode(const danu_tokenizer *tok, const char *text, size_t len,
                                           uint32_t flags, danu_token *out, size_t cap,
                                           size_t *n_out);
/** METHOD. Decode ids as SentencePiece decodes a whole sequence.
 *  @param tok     the tokenizer.
 *  @param ids     n ids; NULL only when n is 0.
 *  @param n       number of ids.
 *  @param out     receives the text and a NUL; when it does not fit, its first
 *                 cap - 1 bytes and a NUL. NULL only when cap is 0.
 *  @param cap     capacity of out in bytes.
 *  @param len_out receives the text length without the NUL; may be NULL.
 *  @return OK. Errors: INVALID_ARG (tok NULL, ids or out NULL with a nonzero
 *          size), BAD_TOKEN (an id outside the vocabulary), BUFFER_TOO_SMALL
 *          (cap <= *len_out), NOMEM.
 *  Thread: any thread, concurrently on one tokenizer.
 *  @since 0.1 */
DANU_API danu_status danu_tokenizer_decode(const danu_tokenizer *tok, const danu_token *ids, size_t n,
                                           char *out, size_t cap, size_t *len_out);
/** METHOD. The stored piece of one id (U+2581 for spaces, "<0x0A>" bytes).
 *  @param tok   the tokenizer.
 *  @param id    0 <= id < vocabulary size.
 *  @param piece receives the piece: borrowed from the tokenizer (or its
 *               model) until it is freed; not NUL-terminated, read len bytes.
 *  @param len   receives the piece's length in bytes.
 *  @return OK. Errors: INVALID_ARG (tok, piece or len NULL), BAD_TOKEN.
 *  Thread: any thread, concurrently on one tokenizer.
 *  @since 0.1 */
DANU_API danu_status danu_tokenizer_piece(const danu_tokenizer *tok, danu_token id,
                                          const char **piece, size_t *len);

/** FUNCTION. Encode chat messages in the Danube chat format: BOS, then
 *  per message <|system|>, <|prompt|> or <|answer|>, its text and EOS, then
 *  <|answer|> when add_reply_prompt.
 *  @param tok              the tokenizer.
 *  @param roles            n roles: "system", "user" or "assistant"; NULL
 *                          only when n is 0.
 *  @param contents         n UTF-8 texts, NUL-terminated; NULL only when n
 *                          is 0.
 *  @param n                number of messages.
 *  @param add_reply_prompt nonzero: open the assistant's turn at the end.
 *  @param out              as in danu_tokenizer_encode.
 *  @param cap              as in danu_tokenizer_encode.
 *  @param n_out            as in danu_tokenizer_encode; may be NULL.
 *  @return OK. Errors: INVALID_ARG (tok NULL, an array or entry NULL, unknown
 *          role, out NULL with cap > 0), BAD_UTF8, UNSUPPORTED (the tokenizer
 *          has no EOS piece), BUFFER_TOO_SMALL (cap < *n_out), NOMEM.
 *  Thread: any thread, concurrently on one tokenizer.
 *  @since 0.1 */
DANU_API danu_status danu_chat_encode(const danu_tokenizer *tok, const char *const *roles,
                                      const char *const *contents, size_t n,
                                      int32_t add_reply_prompt, danu_token *out, size_t cap,
                                      size_t *n_out);

typedef struct danu_decoder danu_decoder;
/** CONSTRUCTOR. A streaming decoder: ids in, complete UTF-8 text out.
 *  @param tok the tokenizer; borrowed, it must outlive the decoder.
 *  @param out receives the decoder (free with danu_decoder_free); set to
 *             NULL on error.
 *  @return OK. Errors: INVALID_ARG (tok or out NULL), NOMEM.
 *  Thread: any thread.
 *  @since 0.1 */
DANU_API danu_status danu_decoder_create(const danu_tokenizer *tok, danu_decoder **out);
/** DESTRUCTOR. Free a decoder.
 *  @param dec the decoder, or NULL (no-op).
 *  Thread: the thread using dec.
 *  @since 0.1 */
DANU_API void danu_decoder_free(danu_decoder *dec);
/** METHOD. Push one id and get the complete UTF-8 text it finishes (an
 *  unfinished character stays pending).
 *  @param dec     the decoder.
 *  @param id      0 <= id < vocabulary size.
 *  @param out     receives the text, NUL-terminated; cap >= 64 always
 *                 suffices.
 *  @param cap     capacity of out in bytes, > 0.
 *  @param len_out receives the text length without the NUL.
 *  @return OK. Errors: INVALID_ARG (dec, out or len_out NULL, cap 0),
 *          BAD_TOKEN, BUFFER_TOO_SMALL (*len_out = bytes needed without the
 *          NUL; the decoder is unchanged, push the id again).
 *  Thread: one thread at a time per decoder.
 *  @since 0.1 */
DANU_API danu_status danu_decoder_push(danu_decoder *dec, danu_token id, char *out, size_t cap,
                                       size_t *len_out);
/** METHOD. Emit what is pending (an incomplete UTF-8 tail becomes U+FFFD) and
 *  reset to the start-of-text state.
 *  @param dec     the decoder.
 *  @param out     receives the text, NUL-terminated.
 *  @param cap     capacity of out in bytes, > 0 (64 always suffices).
 *  @param len_out receives the text length without the NUL.
 *  @return OK. Errors: INVALID_ARG (dec, out or len_out NULL, cap 0),
 *          BUFFER_TOO_SMALL (the decoder is unchanged).
 *  Thread: one thread at a time per decoder.
 *  @since 0.1 */
DANU_API danu_status danu_decoder_flush(danu_decoder *dec, char *out, size_t cap, size_t *len_out);

/* ------------------------------------------------------------------ */
/* Context, evaluation, KV cache                                        */
/* ------------------------------------------------------------------ */

/** CONSTRUCTOR. A context on a model: KV cache, scratch, token history,
 *  logits and sampler. Allocates the KV cache and scratch once; evaluation
 *  allocates nothing.
 *  @param model the model; borrowed, it must outlive the context.
 *  @param opts  context, sampling and thread options (DANU_OPT_N_CTX, _KV_TYPE,
 *               _SEED, _N_BATCH, _ON_FULL, _N_KEEP, 300s, _N_THREADS, _ISA) and
 *               a log callback (else the model's); NULL = defaults. Copied.
 *               The allocator is the model's, whatever opts holds.
 *  @param out   receives the context (free with danu_context_free); set to
 *               NULL on error.
 *  @return OK. Errors: INVALID_ARG (model or out NULL, n_ctx above the model's
 *          context length, n_keep >= n_ctx), NOMEM.
 *  Thread: any thread; contexts on one model may be created concurrently.
 *  @since 0.1 */
DANU_API danu_status danu_context_create(danu_model *model, const danu_options *opts,
                                         danu_context **out);
/** DESTRUCTOR. Free a context and everything it holds.
 *  @param ctx the context, or NULL (no-op). No call on it (not even
 *             danu_context_abort) may run or follow.
 *  Thread: the thread using ctx.
 *  @since 0.1 */
DANU_API void danu_context_free(danu_context *ctx);
/** METHOD. Change an integer setting of a live context; it sticks for later
 *  calls. Live keys: DANU_OPT_SEED (reseeds the sampler), _ON_FULL, _N_KEEP,
 *  _TOP_K, _REPEAT_LAST_N, _IGNORE_EOS.
 *  @param ctx   the context.
 *  @param key   one of those integer keys.
 *  @param value within danu_param_bounds(key).
 *  @return OK. Errors: INVALID_ARG (ctx NULL, value out of bounds, n_keep >=
 *          n_ctx), UNSUPPORTED (unknown key, a key fixed at creation (100s,
 *          N_CTX, KV_TYPE, N_BATCH, 400s), or a float key: never converted;
 *          the message names the key and its type). ctx is unchanged on error.
 *  Thread: the thread using ctx.
 *  @since 0.1 */
DANU_API danu_status danu_context_set_int(danu_context *ctx, danu_param key, int64_t value);
/** METHOD. Change a float sampling setting of a live context; it sticks.
 *  Live keys: DANU_OPT_TEMPERATURE, _TOP_P, _MIN_P, _REPEAT_PENALTY,
 *  _FREQUENCY_PENALTY, _PRESENCE_PENALTY.
 *  @param ctx   the context.
 *  @param key   one of those float keys.
 *  @param value finite and within danu_param_bounds(key).
 *  @return OK. Errors: INVALID_ARG (ctx NULL, value not finite or out of
 *          bounds), UNSUPPORTED (unknown key, a key fixed at creation, or an
 *          integer key: never converted; the message names the key and its
 *          type). ctx is unchanged on error.
 *  Thread: the thread using ctx.
 *  @since 0.1 */
DANU_API danu_status danu_context_set_float(danu_context *ctx, danu_param key, double value);
/** METHOD. Bias added to one token's logit when sampling (sticky).
 *  @param ctx  the context.
 *  @param id   0 <= id < vocabulary size.
 *  @param bias added to the logit; 0 removes it; not NaN.
 *  @return OK. Errors: INVALID_ARG (ctx NULL, bias NaN), BAD_TOKEN.
 *  Thread: the thread using ctx.
 *  @since 0.1 */
DANU_API danu_status danu_context_set_logit_bias(danu_context *ctx, danu_token id, float bias);
/** METHOD. Memory held by a context.
 *  @param ctx the context; may be NULL.
 *  @return every byte the context took from its allocator (KV cache,
 *          scratch, thread pool, token history, logits, sampler, streaming
 *          decoder, text buffer, stop strings; worker thread stacks are the
 *          system's and not counted); 0 when ctx is NULL.
 *  Thread: the thread using ctx.
 *  @since 0.1 */
DANU_API size_t danu_context_memory_size(const danu_context *ctx);
/** METHOD. Bytes a context created with these options on this model would
 *  hold (KV cache, scratch, token history, logits, sampler), before creating
 *  it; equals danu_context_memory_size of such a context (before stop
 *  strings are added).
 *  @param model the model.
 *  @param opts  the options danu_context_create would get; NULL = defaults.
 *  @param out   receives the byte count.
 *  @return OK. Errors: INVALID_ARG (model or out NULL, n_ctx above the
 *          model's, n_keep >= n_ctx).
 *  Thread: any thread (the model is immutable).
 *  @since 0.2 */
DANU_API danu_status danu_context_memory_estimate(const danu_model *model, const danu_options *opts,
                                                  size_t *out);

/** METHOD. Append tokens to the cache and compute them as one batch (split
 *  into N_BATCH pieces). Afterwards danu_context_logits() is the last row.
 *  @param ctx        the context.
 *  @param tokens     n ids; NULL only when n is 0 (a no-op).
 *  @param n          number of tokens.
 *  @param all_logits NULL, or room for n * vocab floats: receives the logits
 *                    of every position, row by row.
 *  @return OK. Errors: INVALID_ARG (ctx NULL, tokens NULL with n > 0),
 *          BAD_TOKEN (nothing appended), CONTEXT_FULL (nothing appended;
 *          with ON_FULL=SHIFT only when the tokens do not fit beside n_keep or
 *          all_logits is given), ABORTED (the cache holds the batches finished
 *          before the abort; when none had, the context is exactly as
 *          before the call, logits included). A context shift allocates
 *          nothing.
 *  Thread: the thread using ctx.
 *  @since 0.1 */
DANU_API danu_status danu_context_eval(danu_context *ctx, const danu_token *tokens, size_t n,
                                       float *all_logits);
/** METHOD. Make the cache hold exactly `tokens`, reusing the longest common
 *  prefix already cached and evaluating only the tail (at least the last
 *  token is evaluated so logits are fresh). A prefix the sliding-window ring
 *  cannot rewind to is recomputed from the start.
 *  @param ctx      the context.
 *  @param tokens   n ids.
 *  @param n        number of tokens, > 0.
 *  @param n_reused receives how many cached tokens were kept; may be NULL.
 *  @return OK. Errors: INVALID_ARG (ctx or tokens NULL, n 0), BAD_TOKEN
 *          (the cache is unchanged), CONTEXT_FULL, ABORTED (as for
 *          danu_context_eval).
 *  Thread: the thread using ctx.
 *  @since 0.1 */
DANU_API danu_status danu_context_prompt(danu_context *ctx, const danu_token *tokens, size_t n,
                                         size_t *n_reused);
/** METHOD. Logits of the last evaluated position.
 *  @param ctx the context; may be NULL.
 *  @return vocab floats, borrowed from ctx until the next call that evaluates
 *          or clears (eval, prompt, step, generate, chat_append, clear,
 *          rewind, state_load); NULL when ctx is NULL or there are no
 *          current logits (nothing evaluated since the last clear or rewind).
 *  Thread: the thread using ctx.
 *  @since 0.1 */
DANU_API const float *danu_context_logits(const danu_context *ctx);
/** METHOD. Number of tokens in the cache.
 *  @param ctx the context; may be NULL.
 *  @return the count; 0 when ctx is NULL.
 *  Thread: the thread using ctx.
 *  @since 0.1 */
DANU_API size_t danu_context_n_tokens(const danu_context *ctx);
/** METHOD. The ids in the cache, oldest first.
 *  @param ctx the context; may be NULL.
 *  @return danu_context_n_tokens(ctx) ids, borrowed from ctx until the next
 *          call that changes the cache (as for danu_context_logits); NULL when
 *          ctx is NULL.
 *  Thread: the thread using ctx.
 *  @since 0.1 */
DANU_API const danu_token *danu_context_tokens(const danu_context *ctx);
/** METHOD. Forget every cached token and a generation in progress; settings,
 *  logit biases and stop strings stay.
 *  @param ctx the context.
 *  @return OK. Errors: INVALID_ARG (ctx NULL).
 *  Thread: the thread using ctx.
 *  @since 0.1 */
DANU_API danu_status danu_context_clear(danu_context *ctx);
/** METHOD. Keep the first n tokens (logits are invalid until the next
 *  evaluation). A model with a sliding window W keeps only the last W
 *  positions per layer: while at most W tokens are cached any n works; once
 *  more are cached the ring has overwritten older positions and only
 *  n >= n_tokens - 1 is possible. Models without a window can always rewind.
 *  @param ctx the context.
 *  @param n   tokens to keep, <= danu_context_n_tokens(ctx).
 *  @return OK. Errors: INVALID_ARG (ctx NULL, n above the count), STATE (the
 *          ring no longer holds what position n needs; ctx is unchanged).
 *  Thread: the thread using ctx.
 *  @since 0.1 */
DANU_API danu_status danu_context_rewind(danu_context *ctx, size_t n);
/** METHOD. Ask running work on ctx to stop. The work (eval, prompt,
 *  generate, chat_append) returns ABORTED within one layer's work, the cache
 *  holding the batches finished before. An abort while the context is idle is
 *  forgotten when the next of those calls starts. For danu_context_step,
 *  which a caller runs in its own loop, an abort that arrives between two
 *  steps stops the next step (which returns ABORTED and uses the abort up).
 *  During a context shift (DANU_FULL_SHIFT) an abort leaves the cache holding
 *  the kept tokens re-evaluated so far. An abort during generation leaves the
 *  context as it was before the aborted token, logits included: generate or
 *  step can go on from there (greedy decoding then gives the tokens an
 *  uninterrupted run gives).
 *  @param ctx the context, or NULL (no-op).
 *  Thread: any thread, also while another thread runs work on ctx (the only
 *          such call); not during or after danu_context_free.
 *  @since 0.1 */
DANU_API void danu_context_abort(danu_context *ctx);

/* ------------------------------------------------------------------ */
/* Sampling and generation                                              */
/* ------------------------------------------------------------------ */

/** METHOD. Sample one id from the current logits with the context's sampling
 *  settings, logit biases and history (does not append it; advances the
 *  sampler's random state).
 *  @param ctx the context.
 *  @param out receives the id.
 *  @return OK. Errors: INVALID_ARG (ctx or out NULL), STATE (no logits:
 *          evaluate first).
 *  Thread: the thread using ctx.
 *  @since 0.1 */
DANU_API danu_status danu_context_sample(danu_context *ctx, danu_token *out);

/** Token callback of danu_context_generate. user: the pointer given to
 *  generate. text (len bytes, also NUL-terminated) is valid only during the
 *  call (copy it); it is complete UTF-8, and the texts of all calls
 *  concatenate to the generated text. Calls, in order:
 *  - one per token appended to the cache, with its id and the text that
 *    became final (may be empty: an unfinished UTF-8 character or the start
 *    of a possible stop string is held back);
 *  - a stop string completed (DANU_STOP_STRING): the id of the token that
 *    completed it, with the text before the stop string (no call when that is
 *    empty); the rest is dropped;
 *  - id -1 once at the end, with the final flushed text (everything held back,
 *    an unfinished character as U+FFFD), when the generation ended by EOS
 *    (DANU_STOP_EOS; EOS is neither appended nor shown), by max_tokens
 *    (DANU_STOP_LENGTH) or by the callback (DANU_STOP_CALLBACK); no call
 *    when that text is empty;
 *  - context full (DANU_STOP_FULL): the id of the sampled token that did not
 *    fit, with the flushed text (no call when empty);
 *  - ABORTED: no further call (held-back text is dropped).
 *  Return nonzero to stop after this token (DANU_STOP_CALLBACK); the return
 *  value of the final id -1 call is ignored. Runs on the thread that called
 *  generate; it must not call into the same context. */
typedef int32_t (*danu_token_fn)(void *user, danu_token id, const char *text, size_t len);

enum {
    DANU_STOP_LENGTH = 0,   /* produced max_tokens        */
    DANU_STOP_EOS = 1,      /* sampled EOS                */
    DANU_STOP_STRING = 2,   /* a stop string appeared     */
    DANU_STOP_CALLBACK = 3, /* the callback returned != 0 */
    DANU_STOP_ABORTED = 4,  /* danu_context_abort()       */
    DANU_STOP_FULL = 5,     /* context full (ON_FULL=ERROR) */
    DANU_STOP_GRAMMAR = 6   /* the constraint is complete and nothing can follow (0.2) */
};

/** METHOD. Add a stop string for generate and step: generation ends when the
 *  generated text contains it; the stop string itself is not emitted.
 *  @param ctx the context.
 *  @param s   NUL-terminated, not empty; copied.
 *  @return OK. Errors: INVALID_ARG (ctx or s NULL, s empty), NOMEM.
 *  Thread: the thread using ctx.
 *  @since 0.1 */
DANU_API danu_status danu_context_add_stop_string(danu_context *ctx, const char *s);
/** METHOD. Remove every stop string.
 *  @param ctx the context.
 *  @return OK. Errors: INVALID_ARG (ctx NULL).
 *  Thread: the thread using ctx.
 *  @since 0.1 */
DANU_API danu_status danu_context_clear_stop_strings(danu_context *ctx);

/* ------------------------------------------------------------------ */
/* Constrained output: grammars, JSON Schema, choices (0.2)             */
/* ------------------------------------------------------------------ */

/* A constraint restricts generated text to a language: a GBNF grammar
 * (llama.cpp's grammar format), a JSON Schema (converted to a grammar), or a
 * list of strings. It is compiled once for a tokenizer's vocabulary into an
 * immutable, reference-counted object that any number of contexts on any
 * threads may use at once.
 *
 * With a constraint attached, each sampled token keeps the generated text a
 * prefix of a string of the language. Sampling order: penalties, logit bias,
 * then the constraint's mask (disallowed tokens get -inf), then greedy or
 * top-k, temperature, top-p, min-p. EOS is allowed only where the text is a
 * complete string of the language; a generation whose text is complete and
 * admits no continuation ends with DANU_STOP_GRAMMAR (the text is final:
 * nothing is held back for the next step). Text is matched as the token
 * decoder produces it: a token's bytes, with byte-fallback tokens and UTF-8
 * characters split across tokens handled exactly (no token that would make
 * the text invalid UTF-8 is ever allowed). Stop strings still apply. */
typedef struct danu_constraint danu_constraint;

/* danu_context_constraint_state values. */
enum {
    DANU_CONSTRAINT_NONE = 0,       /* no constraint attached                   */
    DANU_CONSTRAINT_OPEN = 1,       /* the text so far is not yet complete      */
    DANU_CONSTRAINT_COMPLETE = 2,   /* complete; it may also continue           */
    DANU_CONSTRAINT_FINISHED = 3    /* complete and nothing can follow          */
};

/* Flags of the JSON Schema calls. */
enum {
    DANU_SCHEMA_SPACES = 1   /* allow a space or newline+indent between JSON tokens (default: compact) */
};

/** CONSTRUCTOR. Compile a GBNF grammar (the format of llama.cpp's grammars:
 *  rules "name ::= ...", alternatives |, sequences, groups ( ), ? * +,
 *  {m}, {m,}, {m,n}, "literals", [character classes] with ranges and ^,
 *  . for any character, escapes (a backslash then n, r, t, a quote, a
 *  backslash, a bracket, xHH, uHHHH or UHHHHHHHH), # comments).
 *  @param tok  the vocabulary to compile for (danu_model_tokenizer or a
 *              loaded tokenizer); only read during the call.
 *  @param gbnf the grammar text, UTF-8, len bytes (need not be
 *              NUL-terminated).
 *  @param len  its length in bytes.
 *  @param root the start rule's name, NUL-terminated; NULL means "root".
 *  @param out  receives the constraint; NULL on error.
 *  @return OK. Errors: INVALID_ARG (NULL argument, a syntax error: the
 *          message gives line and column; an undefined rule, left recursion,
 *          a rule matching nothing, no root rule), BAD_UTF8, UNSUPPORTED (a
 *          grammar too large: over 2^20 elements after expanding
 *          repetitions), NOMEM.
 *  Thread: any thread.
 *  @since 0.2 */
DANU_API danu_status danu_constraint_from_grammar(const danu_tokenizer *tok, const char *gbnf, size_t len,
                                                  const char *root, danu_constraint **out);
/** CONSTRUCTOR. Compile a JSON Schema: the output is one JSON value valid
 *  under the schema, compact unless DANU_SCHEMA_SPACES. Supported: type
 *  (one or a list; absent: taken from the other keywords), properties
 *  (generated in the schema's order, required ones always, optional ones
 *  optionally), required, additionalProperties (with properties: false or
 *  absent means no other members; without: true or absent is any object,
 *  a schema a map of such values), enum, const, items (a schema, or false
 *  for []), minItems, maxItems, minLength, maxLength (characters; an escape
 *  is one), minimum/maximum/exclusiveMinimum/exclusiveMaximum for integers
 *  (exact, up to 16 digits), $defs/definitions with $ref "#", "#/$defs/NAME"
 *  or "#/definitions/NAME" (recursion allowed), anyOf, oneOf (generated as
 *  anyOf), allOf of one schema. Numbers are bounded (16 digits per part, a
 *  2-digit exponent) so generation cannot run away. Annotations (title,
 *  description, $schema, $id, default, examples, $comment, readOnly,
 *  writeOnly, deprecated) are ignored; any other keyword is refused.
 *  @param tok    the vocabulary (as danu_constraint_from_grammar).
 *  @param schema the schema as JSON text, len bytes.
 *  @param len    its length in bytes.
 *  @param flags  0 or DANU_SCHEMA_SPACES.
 *  @param out    receives the constraint; NULL on error.
 *  @return OK. Errors: INVALID_ARG (NULL argument, unknown flag bits, the
 *          text is not JSON, a schema value of the wrong type, a $ref to a
 *          missing definition, minimum above maximum), UNSUPPORTED (a
 *          keyword that cannot be honoured: the message names it and its
 *          JSON path), BAD_UTF8, NOMEM.
 *  Thread: any thread.
 *  @since 0.2 */
DANU_API danu_status danu_constraint_from_json_schema(const danu_tokenizer *tok, const char *schema, size_t len,
                                                      uint32_t flags, danu_constraint **out);
/** CONSTRUCTOR. A constraint whose language is exactly the given strings
 *  (the cheapest constraint: an action list).
 *  @param tok     the vocabulary (as danu_constraint_from_grammar).
 *  @param choices n NUL-terminated UTF-8 strings, not empty.
 *  @param n       1 or more.
 *  @param out     receives the constraint; NULL on error.
 *  @return OK. Errors: INVALID_ARG (NULL argument, n 0, an empty string),
 *          BAD_UTF8, NOMEM.
 *  Thread: any thread.
 *  @since 0.2 */
DANU_API danu_status danu_constraint_from_choices(const danu_tokenizer *tok, const char *const *choices, size_t n,
                                                  danu_constraint **out);
/** DESTRUCTOR. Drop the caller's reference; contexts it is attached to keep
 *  theirs, so it may be freed right after danu_context_set_constraint.
 *  @param c the constraint; NULL is ignored.
 *  Thread: any thread.
 *  @since 0.2 */
DANU_API void danu_constraint_free(danu_constraint *c);
/** FUNCTION. The GBNF grammar a JSON Schema compiles to (to read, edit, or
 *  compile with danu_constraint_from_grammar).
 *  @param schema  the schema as JSON text, len bytes.
 *  @param len     its length in bytes.
 *  @param flags   0 or DANU_SCHEMA_SPACES.
 *  @param out     buffer for the grammar, NUL-terminated; may be NULL when
 *                 cap is 0.
 *  @param cap     its capacity in bytes.
 *  @param len_out receives the grammar's length without the NUL (also when
 *                 it does not fit).
 *  @return OK. Errors: those of danu_constraint_from_json_schema,
 *          BUFFER_TOO_SMALL (cap <= *len_out).
 *  Thread: any thread.
 *  @since 0.2 */
DANU_API danu_status danu_json_schema_to_grammar(const char *schema, size_t len, uint32_t flags, char *out,
                                                 size_t cap, size_t *len_out);
/** METHOD. Attach a constraint to a context (it takes a reference), or
 *  remove it (NULL). The text generated from the next step on (step,
 *  step_sliced, generate, batch calls) is matched from the language's
 *  start, and so is each later generation's; danu_context_sample applies
 *  the mask of the current point without advancing it.
 *  @param ctx the context.
 *  @param c   a constraint compiled for the vocabulary of ctx's model, or
 *             NULL to remove.
 *  @return OK. Errors: INVALID_ARG (ctx NULL, c compiled for another
 *          vocabulary), STATE (work pending: a *_begin call or a sliced
 *          step in flight), NOMEM. On error the context keeps what it had.
 *  Thread: the thread using ctx.
 *  @since 0.2 */
DANU_API danu_status danu_context_set_constraint(danu_context *ctx, danu_constraint *c);
/** METHOD. Where the constrained generation stands.
 *  @param ctx   the context.
 *  @param state receives a DANU_CONSTRAINT_* value.
 *  @return OK. Errors: INVALID_ARG (NULL argument).
 *  Thread: the thread using ctx.
 *  @since 0.2 */
DANU_API danu_status danu_context_constraint_state(const danu_context *ctx, int32_t *state);

/** METHOD. From the current state (the last evaluated logits), sample and
 *  append up to max_tokens tokens, calling fn for each (see danu_token_fn).
 *  EOS is not appended to the cache.
 *  @param ctx        the context.
 *  @param max_tokens >= 0; 0 returns at once (reason LENGTH).
 *  @param fn         token callback; may be NULL.
 *  @param user       passed to fn; may be NULL.
 *  @param reason     receives a DANU_STOP_* (LENGTH when the call fails
 *                    before generating); may be NULL.
 *  @return OK when it stopped by LENGTH, EOS, STRING or CALLBACK. Errors:
 *          INVALID_ARG (ctx NULL, max_tokens < 0), STATE (no logits: evaluate
 *          first), CONTEXT_FULL (reason FULL), ABORTED (reason ABORTED),
 *          BUFFER_TOO_SMALL (over 1023 bytes of text held back at once,
 *          possible only with stop strings that long). Allocates nothing.
 *  Thread: the thread using ctx.
 *  @since 0.1 */
DANU_API danu_status danu_context_generate(danu_context *ctx, int32_t max_tokens, danu_token_fn fn,
                                           void *user, int32_t *reason);
/** METHOD. One step of generation, bounded work for game loops: sample a
 *  token, evaluate it, and write the text that became final. The text of all
 *  steps (and danu_context_step_finish) concatenates to what generate's
 *  callback would receive.
 *  @param ctx    the context.
 *  @param id_out receives the sampled id (EOS included; -1 when the step
 *                failed before sampling).
 *  @param out    receives the text, NUL-terminated (may be empty).
 *  @param cap    capacity of out in bytes, > 0.
 *  @param len_out receives the text length without the NUL.
 *  @param reason receives -1 while generation goes on, else the DANU_STOP_*
 *                that ended it (EOS: not appended, out holds the flushed
 *                text; STRING: out holds the text before the stop string).
 *  @return OK. Errors: INVALID_ARG (a pointer NULL, cap 0), STATE (no logits),
 *          CONTEXT_FULL (reason FULL, the token is not appended), ABORTED
 *          (reason ABORTED, the token is not appended), BUFFER_TOO_SMALL
 *          (*len_out = bytes needed; the text stays held for the next step
 *          or, also on the step that ends generation, for
 *          danu_context_step_finish; a step refuses to start, with *id_out
 *          -1 and nothing sampled, once about 1 KiB beyond the longest stop
 *          string is held back: take it with danu_context_step_finish).
 *          Allocates nothing.
 *  Thread: the thread using ctx.
 *  @since 0.1 */
DANU_API danu_status danu_context_step(danu_context *ctx, danu_token *id_out, char *out,
                                       size_t cap, size_t *len_out, int32_t *reason);
/** METHOD. End a generation driven by danu_context_step before a step
 *  reported a reason (the caller stops stepping, e.g. after its own token
 *  budget), or after a step that ended it returned BUFFER_TOO_SMALL: writes
 *  the text held back so far (an unfinished UTF-8 character, the start of a
 *  possible stop string, text that did not fit earlier buffers) and resets
 *  the step state.
 *  @param ctx     the context.
 *  @param out     receives the text, NUL-terminated.
 *  @param cap     capacity of out in bytes, > 0.
 *  @param len_out receives the text length (0 when nothing is pending).
 *  @return OK. Errors: INVALID_ARG (a pointer NULL, cap 0), BUFFER_TOO_SMALL
 *          (keeps the text for a retry; *len_out = its length).
 *  Thread: the thread using ctx.
 *  @since 0.2 (added after the 0.1.0 baseline) */
DANU_API danu_status danu_context_step_finish(danu_context *ctx, char *out, size_t cap, size_t *len_out);

/** METHOD. Append chat messages (Danube format, see danu_chat_encode) to the
 *  cache and evaluate them. The first call on an empty context adds BOS; an
 *  assistant turn left open (generation stopped before EOS) is closed with
 *  EOS first.
 *  @param ctx              the context.
 *  @param roles            n roles ("system", "user", "assistant"); NULL only
 *                          when n is 0.
 *  @param contents         n NUL-terminated UTF-8 texts; NULL only when n is 0.
 *  @param n                number of messages.
 *  @param add_reply_prompt nonzero: open the assistant's turn.
 *  @return OK. Errors: INVALID_ARG (ctx, an array or entry NULL, unknown role),
 *          BAD_UTF8, UNSUPPORTED (the model has no tokenizer or no EOS piece),
 *          CONTEXT_FULL, ABORTED (as for danu_context_eval), NOMEM.
 *  Thread: the thread using ctx.
 *  @since 0.1 */
DANU_API danu_status danu_context_chat_append(danu_context *ctx, const char *const *roles,
                                              const char *const *contents, size_t n,
                                              int32_t add_reply_prompt);

/* ------------------------------------------------------------------ */
/* Work in slices (0.2)                                                 */
/* ------------------------------------------------------------------ */

/** Evaluation split into frame-sized slices, for game loops and job
 *  systems that cannot block for a whole prompt: a *_begin call checks its
 *  input and queues the evaluation without running it; danu_context_work
 *  then advances it for about a time budget per call, stopping at a layer
 *  boundary. Results are bit-identical to the blocking calls. While work
 *  is pending, the other calls that evaluate, sample or change the cache
 *  (eval, prompt, step, generate, chat_append, rewind, state save/load,
 *  another *_begin) return DANU_ERR_STATE; danu_context_clear and
 *  danu_context_free drop the pending work, danu_context_abort cancels it
 *  at the next slice. */

/** METHOD. Queue the evaluation of tokens (danu_context_eval without
 *  all_logits, run by danu_context_work).
 *  @param ctx    the context; no work pending.
 *  @param tokens n ids, copied; NULL only when n is 0.
 *  @param n      number of tokens (0: nothing is queued).
 *  @return OK (queued). Errors: INVALID_ARG, BAD_TOKEN, CONTEXT_FULL (as
 *          danu_context_eval; under DANU_FULL_SHIFT the shift is queued
 *          too), STATE (work pending). Nothing is queued on error.
 *  Thread: the thread using ctx.
 *  @since 0.2 */
DANU_API danu_status danu_context_eval_begin(danu_context *ctx, const danu_token *tokens, size_t n);
/** METHOD. Queue danu_context_prompt: the cached prefix shared with
 *  tokens is kept, the rest is queued.
 *  @param ctx      the context; no work pending.
 *  @param tokens   n ids, copied.
 *  @param n        number of tokens, > 0.
 *  @param n_reused receives the prefix kept; may be NULL.
 *  @return OK (queued). Errors: as danu_context_prompt, STATE (work pending).
 *  Thread: the thread using ctx.
 *  @since 0.2 */
DANU_API danu_status danu_context_prompt_begin(danu_context *ctx, const danu_token *tokens, size_t n,
                                               size_t *n_reused);
/** METHOD. Queue danu_context_chat_append: the messages are encoded now,
 *  their evaluation is queued.
 *  @param ctx              the context; no work pending.
 *  @param roles            n roles, as danu_context_chat_append.
 *  @param contents         n NUL-terminated UTF-8 texts.
 *  @param n                number of messages.
 *  @param add_reply_prompt nonzero: open the assistant's turn.
 *  @return OK (queued). Errors: as danu_context_chat_append, STATE (work
 *          pending).
 *  Thread: the thread using ctx.
 *  @since 0.2 */
DANU_API danu_status danu_context_chat_append_begin(danu_context *ctx, const char *const *roles,
                                                    const char *const *contents, size_t n,
                                                    int32_t add_reply_prompt);
/** METHOD. Advance the pending evaluation for about budget_us
 *  microseconds. Each call runs at least one unit (one decoder layer of
 *  the current batch, or a part of the output layer), then starts another
 *  only while the time spent plus the last unit's time fits the budget, so
 *  a call overruns by at most one unit. Prompts are cut into batches small
 *  enough for the budget (never above DANU_OPT_N_BATCH).
 *  @param ctx       the context.
 *  @param budget_us time to spend, >= 0 (0: exactly one unit).
 *  @return IN_PROGRESS (work remains: call again), OK (finished, or
 *          nothing was pending). Errors: INVALID_ARG (ctx NULL, budget
 *          negative), ABORTED (danu_context_abort since the *_begin call:
 *          the pending work is dropped; tokens of batches finished before
 *          stay cached), NOMEM, INTERNAL. After an error nothing is pending.
 *  Thread: the thread using ctx (any thread, one at a time: a job system
 *          may run successive slices on different threads).
 *  @since 0.2 */
DANU_API danu_status danu_context_work(danu_context *ctx, int64_t budget_us);
/** FUNCTION. Tokens of the pending work not evaluated yet.
 *  @param ctx the context.
 *  @return the count (a step in flight counts 1); 0 when nothing is
 *          pending or ctx is NULL.
 *  Thread: the thread using ctx.
 *  @since 0.2 */
DANU_API size_t danu_context_pending(const danu_context *ctx);
/** METHOD. danu_context_step in slices: the first call samples the next
 *  token and queues its evaluation; each call advances the pending work as
 *  danu_context_work(ctx, budget_us) does (finishing first any work queued
 *  before by a *_begin call), and returns IN_PROGRESS until the token is
 *  evaluated. The call that finishes returns what danu_context_step
 *  returns, with the same outputs.
 *  Outputs are written by the finishing call; IN_PROGRESS leaves *reason
 *  -1, *len_out 0 and *id_out the sampled id (or -1 before sampling).
 *  @param ctx       the context.
 *  @param budget_us as danu_context_work.
 *  @param id_out    receives the sampled id, as danu_context_step.
 *  @param out       receives the text, NUL-terminated.
 *  @param cap       capacity of out in bytes, > 0.
 *  @param len_out   receives the text length without the NUL.
 *  @param reason    receives -1, or the DANU_STOP_* that ended generation.
 *  @return IN_PROGRESS, OK. Errors: those of danu_context_step (the
 *          token's evaluation aborted: ABORTED with reason ABORTED) and
 *          INVALID_ARG (budget negative); work queued before that fails
 *          returns its error.
 *  Thread: the thread using ctx.
 *  @since 0.2 */
DANU_API danu_status danu_context_step_sliced(danu_context *ctx, int64_t budget_us, danu_token *id_out,
                                              char *out, size_t cap, size_t *len_out, int32_t *reason);

/* ------------------------------------------------------------------ */
/* Many contexts at once (0.2)                                          */
/* ------------------------------------------------------------------ */

/** A batch advances many contexts of one model in one forward pass: the
 *  weights are read once for all of them (generation is bound by memory
 *  bandwidth, so 8 contexts decode several times faster together than one
 *  after another), while each context keeps its own cache, history,
 *  sampler and stop strings, and produces exactly the tokens it would
 *  produce alone. The batch holds the pass's scratch, sized once at
 *  creation for the most contexts and tokens it will carry. */
typedef struct danu_batch danu_batch;

/** CONSTRUCTOR. A batch for up to max_contexts contexts of model.
 *  @param model        the model; borrowed, it must outlive the batch.
 *  @param max_contexts most contexts per call, >= 1.
 *  @param opts         DANU_OPT_N_BATCH (most tokens per pass, default
 *                      512; raised to max_contexts), DANU_OPT_N_THREADS,
 *                      a pool (danu_options_set_pool; default the
 *                      model's), a log callback; NULL = defaults.
 *  @param out          receives the batch (free with danu_batch_free);
 *                      NULL on error.
 *  @return OK. Errors: INVALID_ARG (model or out NULL, max_contexts < 1
 *          or above 4096), NOMEM.
 *  Thread: any thread.
 *  @since 0.2 */
DANU_API danu_status danu_batch_create(danu_model *model, int32_t max_contexts, const danu_options *opts,
                                       danu_batch **out);
/** DESTRUCTOR. Free a batch; its contexts are unaffected.
 *  @param batch the batch, or NULL (no-op).
 *  Thread: the thread using batch.
 *  @since 0.2 */
DANU_API void danu_batch_free(danu_batch *batch);
/** FUNCTION. Bytes the batch holds (its scratch and per-context slots).
 *  @param batch the batch.
 *  @return the byte count, 0 when batch is NULL.
 *  Thread: any thread.
 *  @since 0.2 */
DANU_API size_t danu_batch_memory_size(const danu_batch *batch);

/** One context's part of a danu_batch_step call. The caller sets
 *  struct_size, ctx, text and cap; the call sets the rest. Arrays of items
 *  are walked with a stride of items[0].struct_size, so a caller built
 *  against an older header keeps working. */
typedef struct danu_batch_item {
    size_t struct_size;     /* sizeof(danu_batch_item) of the caller's header */
    danu_context *ctx;      /* in: the context                               */
    char *text;             /* in: buffer for the step's text (NUL-terminated) */
    size_t cap;             /* in: its capacity in bytes, > 0                */
    size_t len;             /* out: text length without the NUL              */
    danu_token id;          /* out: the sampled id, -1 when none             */
    int32_t reason;         /* out: -1, or the DANU_STOP_* that ended it     */
    danu_status status;     /* out: this context's outcome (see danu_batch_step) */
} danu_batch_item;

/** METHOD. One step of every listed context in one forward pass: a context
 *  with queued work (a danu_context_*_begin call) evaluates its next part
 *  of it (the pass carries at most DANU_OPT_N_BATCH tokens; each generating
 *  context 1, the rest shared evenly by the prompts); every other context
 *  samples a token and evaluates it, as danu_context_step does.
 *  @param batch the batch.
 *  @param items n items (see danu_batch_item), each with a different
 *               context of the batch's model.
 *  @param n     1..max_contexts.
 *  @return OK: the pass ran; each item's status tells its outcome: OK (a
 *          step as danu_context_step: id, text, reason), IN_PROGRESS
 *          (queued work advanced; no token yet), or that step's error for
 *          this context alone: STATE (no logits; a sliced step in flight;
 *          a generation driven by danu_context_step), CONTEXT_FULL (reason
 *          FULL), ABORTED (danu_context_abort on that context: its token
 *          is not appended, reason ABORTED; the others finish the pass),
 *          BUFFER_TOO_SMALL. Errors: (of the call itself; every context is
 *          left as it was) INVALID_ARG (batch or items NULL, n 0 or above
 *          max_contexts, struct_size too small, a context NULL, of another
 *          model, or listed twice), INTERNAL.
 *  Thread: the thread using batch and its contexts; one call at a time per
 *          batch, and a context in one batch call at a time.
 *  @since 0.2 */
DANU_API danu_status danu_batch_step(danu_batch *batch, danu_batch_item *items, size_t n);

/** Callback of danu_batch_generate: text of context `index` (its position
 *  in the ctxs array) became final. id is the token that produced it, or
 *  -1 for text flushed at the end. Return nonzero to stop that context
 *  (DANU_STOP_CALLBACK). Runs on the calling thread. */
typedef int32_t (*danu_batch_token_fn)(void *user, size_t index, danu_token id, const char *text, size_t len);

/** METHOD. Generate with many contexts together until each has stopped:
 *  queued work first (in the same passes), then up to max_tokens tokens
 *  each, as danu_context_generate does for one context.
 *  @param batch      the batch.
 *  @param ctxs       n different contexts of the batch's model.
 *  @param n          1..max_contexts.
 *  @param max_tokens most tokens per context, >= 0.
 *  @param fn         receives text as it becomes final; may be NULL.
 *  @param user       passed to fn.
 *  @param reasons    receives n DANU_STOP_* values (LENGTH, EOS, STRING,
 *                    CALLBACK, ABORTED, FULL); may be NULL.
 *  @return OK (each context's ending is in reasons). Errors: INVALID_ARG
 *          (as danu_batch_step, max_tokens negative), STATE (a context has
 *          no logits and no queued work; nothing is generated then),
 *          INTERNAL.
 *  Thread: as danu_batch_step.
 *  @since 0.2 */
DANU_API danu_status danu_batch_generate(danu_batch *batch, danu_context *const *ctxs, size_t n, int32_t max_tokens,
                                         danu_batch_token_fn fn, void *user, int32_t *reasons);

/** METHOD. Make dst a copy of src: the cached tokens and their K/V rows,
 *  the logits, sampling settings and sampler state (stop strings and
 *  logit biases stay dst's). A long shared prompt is evaluated once and
 *  copied to many contexts; the copy costs a memory copy of the used
 *  cache rows.
 *  @param dst a context of src's model, different from src, with n_ctx >=
 *             src's token count, the same KV type and (once src's ring
 *             wrapped) the same number of cached positions.
 *  @param src the context copied; unchanged.
 *  @return OK. Errors: INVALID_ARG (NULL, dst == src, another model, KV
 *          type or ring size differ, n_ctx too small), STATE (work pending
 *          on either). dst is unchanged on error.
 *  Thread: the threads using dst and src, neither running anything else.
 *  @since 0.2 */
DANU_API danu_status danu_context_copy(danu_context *dst, const danu_context *src);
/** CONSTRUCTOR. A new context with src's options (n_ctx, KV type, batch,
 *  threads, pool) holding a copy of src (danu_context_copy).
 *  @param src the context; unchanged.
 *  @param out receives the new context; NULL on error.
 *  @return OK. Errors: INVALID_ARG (NULL), STATE (work pending on src),
 *          NOMEM.
 *  Thread: the thread using src.
 *  @since 0.2 */
DANU_API danu_status danu_context_fork(const danu_context *src, danu_context **out);

/* ------------------------------------------------------------------ */
/* State                                                                */
/* ------------------------------------------------------------------ */

/** METHOD. Bytes danu_context_state_save needs now (it grows with the
 *  number of cached tokens).
 *  @param ctx the context; may be NULL.
 *  @return the size; 0 when ctx is NULL.
 *  Thread: the thread using ctx.
 *  @since 0.1 */
DANU_API size_t danu_context_state_size(const danu_context *ctx);
/** METHOD. Save the state (tokens, cached K/V, logits, sampler random state;
 *  versioned, tied to the model's shape and the KV type) to a buffer.
 *  @param ctx     the context.
 *  @param buf     receives the state; NULL only when cap is 0.
 *  @param cap     capacity of buf in bytes.
 *  @param written receives the state's size (also when it does not fit); may
 *                 be NULL.
 *  @return OK. Errors: INVALID_ARG (ctx NULL, buf NULL with cap > 0),
 *          BUFFER_TOO_SMALL (cap below danu_context_state_size).
 *  Thread: the thread using ctx.
 *  @since 0.1 */
DANU_API danu_status danu_context_state_save(const danu_context *ctx, void *buf, size_t cap,
                                             size_t *written);
/** METHOD. Restore a state saved by danu_context_state_save.
 *  @param ctx the context: on the same model shape, with the same KV type and
 *             an n_ctx that holds the saved tokens.
 *  @param buf len bytes of state.
 *  @param len its size.
 *  @return OK. Errors: INVALID_ARG (ctx or buf NULL), FORMAT (corrupt data,
 *          another model's or KV type's state, too many tokens; ctx is left
 *          unchanged).
 *  Thread: the thread using ctx.
 *  @since 0.1 */
DANU_API danu_status danu_context_state_load(danu_context *ctx, const void *buf, size_t len);
/** METHOD. Save the state to a file (created or replaced).
 *  @param ctx  the context.
 *  @param path the file.
 *  @return OK. Errors: INVALID_ARG (ctx or path NULL), NOMEM, IO.
 *  Thread: the thread using ctx.
 *  @since 0.1 */
DANU_API danu_status danu_context_state_save_file(const danu_context *ctx, const char *path);
/** METHOD. Restore the state from a file written by
 *  danu_context_state_save_file.
 *  @param ctx  the context (as for danu_context_state_load).
 *  @param path the file.
 *  @return OK. Errors: INVALID_ARG (ctx or path NULL), IO, NOMEM, FORMAT (ctx
 *          is left unchanged).
 *  Thread: the thread using ctx.
 *  @since 0.1 */
DANU_API danu_status danu_context_state_load_file(danu_context *ctx, const char *path);

/* ------------------------------------------------------------------ */
/* Tools: synthetic models                                              */
/* ------------------------------------------------------------------ */

/** FUNCTION. Write a synthetic-weight model whose every weight is a formula
 *  of (seed, tensor, element) (see the project's synthetic-model spec).
 *  @param config          "danube-1.8b", "tiny-a", "tiny-b" or "tiny-q".
 *  @param seed            seed of the formulas.
 *  @param format          DANU_FORMAT_HF (out_path is a new directory) or
 *                         DANU_FORMAT_GGUF (a new file).
 *  @param type            storage type of the matrices (bf16, f16, f32; GGUF
 *                         also the quantized types).
 *  @param tokenizer_model the bytes of a Llama 2 tokenizer.model; read
 *                         during the call only.
 *  @param tokenizer_len   its size, > 0.
 *  @param out_path        where to write; must not exist.
 *  @param opts            progress callback and allocator; NULL = defaults.
 *  @return OK. Errors: INVALID_ARG (a pointer NULL, unknown config or format),
 *          UNSUPPORTED (type not possible in that format), IO (out_path
 *          exists, disk full: free space is checked first), NOMEM, CANCELLED.
 *  Thread: any thread.
 *  @since 0.1 */
DANU_API danu_status danu_synth_write(const char *config, uint64_t seed, int32_t format, int32_t type,
                                      const void *tokenizer_model, size_t tokenizer_len,
                                      const char *out_path, const danu_options *opts);

/* ------------------------------------------------------------------ */
/* Tools: conversion and quantization                                   */
/* ------------------------------------------------------------------ */

/** FUNCTION. Convert a model (HF directory or GGUF) into a GGUF v3 file as
 *  llama.cpp's converter and quantizer write it. Streams tensor by tensor,
 *  writes OUTPUT.tmp and renames it at the end.
 *  @param input  HF directory or .gguf file; not NULL or empty.
 *  @param output the new file; must not exist.
 *  @param type   "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1",
 *                "q4_k", "q5_k", "q6_k", "q4_k_m" or "q5_k_m" (the _m mixes
 *                follow llama.cpp's choice of higher types for some tensors).
 *  @param opts   DANU_OPT_N_THREADS, _USE_MMAP, allocator, log and progress
 *                (nonzero cancels); NULL = defaults.
 *  @return OK. Errors: INVALID_ARG (a pointer NULL or empty, unknown type,
 *          output exists), IO, FORMAT, UNSUPPORTED, NOMEM, CANCELLED.
 *  Thread: any thread.
 *  @since 0.1 */
DANU_API danu_status danu_quantize(const char *input, const char *output, const char *type,
                                   const danu_options *opts);

#ifdef __cplusplus
}
#endif
#endif /* DANU_H */
