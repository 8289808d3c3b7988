/* options.h - the settings bag behind danu_options. */
#ifndef DN_OPTIONS_H
#define DN_OPTIONS_H
#include "danu.h"
#include "common/alloc.h"
#include "common/log.h"
#include "common/os.h"
#include "gen/sampler.h"

struct danu_options {
    dn_alloc alloc;
    dn_logger log;
    danu_progress_fn progress;
    void *progress_user;
    /* load */
    int use_mmap;
    int sliding_window;      /* -1 auto, 0 none, > 0 override */
    int validate;
    int repack;              /* DANU_REPACK_AUTO / _OFF / _ON */
    /* context */
    int32_t n_ctx, kv_type, n_batch, on_full, n_keep;
    int kv_huge_pages;       /* DANU_OPT_KV_HUGE_PAGES: ask for huge pages under the KV cache */
    uint64_t seed;
    /* sampling */
    dn_sampler_params sampling;
    int ignore_eos;
    /* threads and kernels */
    int32_t n_threads, isa;
    int fast_bf16;           /* DANU_OPT_FAST_BF16: bf16 weights x bf16-rounded activations */
    danu_pool *pool;         /* danu_options_set_pool: a reference of the bag's own; copies borrow it */
};

void dn_options_defaults(struct danu_options *o);
/* DANU_OPT_N_THREADS, 0 meaning the cores this process may run on. */
static inline int32_t dn_options_threads(const struct danu_options *o)
{
    return o->n_threads > 0 ? o->n_threads : dn_cpu_count();
}
/* Set a key on the option bag (shared by options and live contexts). Each key
 * has one type: the setter of the other type returns DANU_ERR_UNSUPPORTED
 * naming the key, and never converts. */
danu_status dn_options_set_int(struct danu_options *o, danu_param key, int64_t v);
danu_status dn_options_set_float(struct danu_options *o, danu_param key, double v);
danu_status dn_param_bounds(danu_param key, double *min, double *max);
danu_param dn_param_from_name(const char *name);
#endif
