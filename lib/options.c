/* options.c - defaults, bounds, names and types of every option key. A key
 * set through the setter of the other type is refused with UNSUPPORTED
 * (danu.h), for option bags and live contexts alike. */
#include <string.h>
#include <math.h>
#include "options.h"
#include "common/error.h"

typedef struct param_def {
    danu_param key;
    const char *name;
    int is_float;
    double min, max;
} param_def;

static const param_def params[] = {
    { DANU_OPT_USE_MMAP, "use_mmap", 0, 0, 1 },
    { DANU_OPT_SLIDING_WINDOW, "sliding_window", 0, -1, 1 << 24 },
    { DANU_OPT_VALIDATE, "validate", 0, 0, 1 },
    { DANU_OPT_REPACK, "repack", 0, -1, 1 },
    { DANU_OPT_N_CTX, "n_ctx", 0, 0, 1 << 24 },
    { DANU_OPT_KV_TYPE, "kv_type", 0, 0, 2 },
    { DANU_OPT_SEED, "seed", 0, 0, 9007199254740991.0 },
    { DANU_OPT_N_BATCH, "n_batch", 0, 1, 4096 },
    { DANU_OPT_ON_FULL, "on_full", 0, 0, 1 },
    { DANU_OPT_N_KEEP, "n_keep", 0, 0, 1 << 24 },
    { DANU_OPT_KV_HUGE_PAGES, "kv_huge_pages", 0, 0, 1 },
    { DANU_OPT_TEMPERATURE, "temperature", 1, 0, 100 },
    { DANU_OPT_TOP_K, "top_k", 0, 0, 1 << 22 },
    { DANU_OPT_TOP_P, "top_p", 1, 0, 1 },
    { DANU_OPT_MIN_P, "min_p", 1, 0, 1 },
    { DANU_OPT_REPEAT_PENALTY, "repeat_penalty", 1, 0.01, 100 },
    { DANU_OPT_REPEAT_LAST_N, "repeat_last_n", 0, -1, 1 << 24 },
    { DANU_OPT_FREQUENCY_PENALTY, "frequency_penalty", 1, -100, 100 },
    { DANU_OPT_PRESENCE_PENALTY, "presence_penalty", 1, -100, 100 },
    { DANU_OPT_IGNORE_EOS, "ignore_eos", 0, 0, 1 },
    { DANU_OPT_N_THREADS, "n_threads", 0, 0, 256 },
    { DANU_OPT_ISA, "isa", 0, 0, 5 },
    { DANU_OPT_FAST_BF16, "fast_bf16", 0, 0, 1 },
};

static const param_def *find_param(danu_param key)
{
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++)
        if (params[i].key == key) return &params[i];
    return NULL;
}

danu_status dn_param_bounds(danu_param key, double *min, double *max)
{
    const param_def *p = find_param(key);
    DN_CHECK(p, DANU_ERR_UNSUPPORTED, "unknown option key %d", key);
    if (min) *min = p->min;
    if (max) *max = p->max;
    return DANU_OK;
}

danu_param dn_param_from_name(const char *name)
{
    for (size_t i = 0; name && i < sizeof params / sizeof params[0]; i++)
        if (!strcmp(params[i].name, name)) return params[i].key;
    return -1;
}

void dn_options_defaults(struct danu_options *o)
{
    memset(o, 0, sizeof *o);
    o->alloc = *dn_alloc_libc();
    o->use_mmap = 1;
    o->sliding_window = -1;
    o->repack = DANU_REPACK_AUTO;
    o->n_ctx = 0;
    o->kv_type = DANU_KV_F16;
    o->kv_huge_pages = 1;
    o->n_batch = 512;
    o->on_full = DANU_FULL_ERROR;
    dn_sampler_params_default(&o->sampling);
    o->n_threads = 0;
    o->pool = NULL;
    o->isa = DANU_ISA_AUTO;
    o->fast_bf16 = 0;
}

danu_status dn_options_set_int(struct danu_options *o, danu_param key, int64_t v)
{
    const param_def *p = find_param(key);
    DN_CHECK(p, DANU_ERR_UNSUPPORTED, "unknown option key %d", key);
    /* each key has one type; the other setter is refused, never converted */
    DN_CHECK(!p->is_float, DANU_ERR_UNSUPPORTED, "option %s (%d) is a float key: set it with the _set_float call",
             p->name, key);
    DN_CHECK((double)v >= p->min && (double)v <= p->max, DANU_ERR_INVALID_ARG, "option %s = %lld is outside %g..%g",
             p->name, (long long)v, p->min, p->max);
    int32_t i = (int32_t)v;
    switch (key) {
    case DANU_OPT_USE_MMAP: o->use_mmap = i; break;
    case DANU_OPT_SLIDING_WINDOW: o->sliding_window = i; break;
    case DANU_OPT_VALIDATE: o->validate = i; break;
    case DANU_OPT_REPACK: o->repack = i; break;
    case DANU_OPT_N_CTX: o->n_ctx = i; break;
    case DANU_OPT_KV_TYPE: o->kv_type = i; break;
    case DANU_OPT_SEED: o->seed = (uint64_t)v; break;
    case DANU_OPT_N_BATCH: o->n_batch = i; break;
    case DANU_OPT_ON_FULL: o->on_full = i; break;
    case DANU_OPT_N_KEEP: o->n_keep = i; break;
    case DANU_OPT_KV_HUGE_PAGES: o->kv_huge_pages = i; break;
    case DANU_OPT_TOP_K: o->sampling.top_k = i; break;
    case DANU_OPT_REPEAT_LAST_N: o->sampling.repeat_last_n = i; break;
    case DANU_OPT_IGNORE_EOS: o->ignore_eos = i; break;
    case DANU_OPT_N_THREADS: o->n_threads = i; break;
    case DANU_OPT_ISA: o->isa = i; break;
    case DANU_OPT_FAST_BF16: o->fast_bf16 = i; break;
    default: return dn_seterr(DANU_ERR_INTERNAL, "option %s has no setter", p->name);
    }
    return DANU_OK;
}

danu_status dn_options_set_float(struct danu_options *o, danu_param key, double v)
{
    const param_def *p = find_param(key);
    DN_CHECK(p, DANU_ERR_UNSUPPORTED, "unknown option key %d", key);
    DN_CHECK(p->is_float, DANU_ERR_UNSUPPORTED, "option %s (%d) is an integer key: set it with the _set_int call",
             p->name, key);
    DN_CHECK(isfinite(v) && v >= p->min && v <= p->max, DANU_ERR_INVALID_ARG, "option %s = %g is outside %g..%g",
             p->name, v, p->min, p->max);
    float f = (float)v;
    switch (key) {
    case DANU_OPT_TEMPERATURE: o->sampling.temperature = f; break;
    case DANU_OPT_TOP_P: o->sampling.top_p = f; break;
    case DANU_OPT_MIN_P: o->sampling.min_p = f; break;
    case DANU_OPT_REPEAT_PENALTY: o->sampling.repeat_penalty = f; break;
    case DANU_OPT_FREQUENCY_PENALTY: o->sampling.frequency_penalty = f; break;
    case DANU_OPT_PRESENCE_PENALTY: o->sampling.presence_penalty = f; break;
    default: return dn_seterr(DANU_ERR_INTERNAL, "option %s has no setter", p->name);
    }
    return DANU_OK;
}
