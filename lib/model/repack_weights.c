/* repack_weights.c - copy weight matrices into the row-interleaved x16
 * layouts at load (DANU_OPT_REPACK), so the kernels that have an x16 gemm
 * read 16 rows per vector load. The copies share one buffer, 2 MiB aligned
 * with huge pages requested (weights are streamed once per token: fewer TLB
 * misses); the mapped source pages of each repacked matrix are released so
 * resident memory stays about the file size. The token embedding is never
 * repacked: the embedding lookup reads its rows directly. */
#include <stdatomic.h>
#include <string.h>
#include "model/model.h"
#include "options.h"
#include "common/error.h"
#include "common/threadpool.h"

/* Below this many bytes a thread pool costs more than it saves. */
enum { PARALLEL_BYTES = 32 << 20, BUF_ALIGN = 2 << 20, MAT_ALIGN = 64 };

/* Matrix i of the repackable set: 7 per layer, then the output matrix
 * (NULL when it is the tied token embedding). */
static dn_matrix *matrix_at(danu_model *m, int64_t i)
{
    const int64_t per = 7, nl = m->cfg.n_layers;
    if (i < per * nl) {
        dn_layer *L = &m->layers[i / per];
        dn_matrix *mats[7] = { &L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down };
        return mats[i % per];
    }
    if (m->cfg.tied || m->output.data == m->tok_embd.data) return NULL;
    return &m->output;
}

/* 1 if p lies in a memory-mapped source file (its pages can be dropped). */
static int in_mapping(const danu_model *m, const void *p)
{
    const uint8_t *q = p;
    if (m->format == DANU_FORMAT_GGUF)
        return m->gguf_map.is_mmap && q >= m->gguf_map.data && q < m->gguf_map.data + m->gguf_map.size;
    for (int32_t s = 0; m->hf_open && s < m->hf.n_shards; s++) {
        const dn_mapping *mp = &m->hf.shards[s];
        if (q >= mp->data && q < mp->data + mp->size) return mp->is_mmap;
    }
    return 0;
}

/* The x16 type matrix w becomes under the options, or -1 to keep it as
 * stored. */
static int32_t target_of(const danu_model *m, const dn_matrix *w, const struct danu_options *o)
{
    const int mode = o->repack;
    if (!w || mode == DANU_REPACK_OFF || w->rows % 16) return -1;
    const int32_t t = w->type;
    if (t < 0 || t >= DN_TYPE_COUNT || dn_x16_of(t) < 0) return -1;
    int32_t xt = -1;
    if (mode == DANU_REPACK_ON) xt = dn_x16_of(t);
    /* auto: only where the kernels gain, and only a mapped file (a file read
     * into memory would then be held twice) */
    else if (m->kern->repack[t] && in_mapping(m, w->data)) xt = m->kern->repack[t];
    if (xt < 0 || dn_x16_base(xt) != t || !dn_type_row_bytes(xt, (uint64_t)w->cols)) return -1;
    /* DANU_OPT_FAST_BF16: the same bytes under the type whose gemm skips the
     * activations' lo row, where this table has that gemm */
    if (xt == DN_TYPE_BF16_X16 && o->fast_bf16 && m->kern->gemm[DN_TYPE_BF16_X16F]) xt = DN_TYPE_BF16_X16F;
    return xt;
}

static uint64_t copy_bytes(const dn_matrix *w, int32_t xt)
{
    uint64_t b = dn_type_row_bytes(xt, (uint64_t)w->cols) * (uint64_t)w->rows;
    return (b + MAT_ALIGN - 1) / MAT_ALIGN * MAT_ALIGN;
}

typedef struct repack_job {
    const dn_matrix *w;
    int32_t xt;
    uint64_t dst_row_bytes;
    uint8_t *dst;
    atomic_int failed;           /* set by a worker: a bug (types were checked) */
} repack_job;

/* Row groups of one matrix split evenly over the threads. */
static void repack_task(void *arg, int ith, int nth)
{
    repack_job *j = arg;
    const int64_t groups = j->w->rows / 16, g0 = groups * ith / nth, g1 = groups * (ith + 1) / nth;
    const size_t src_group = 16 * (size_t)j->w->row_bytes, dst_group = 16 * (size_t)j->dst_row_bytes;
    for (int64_t g = g0; g < g1; g++)
        if (dn_x16_repack(j->xt, (const uint8_t *)j->w->data + (size_t)g * src_group, (size_t)j->w->row_bytes,
                          j->dst + (size_t)g * dst_group, j->w->cols) != 0)
            atomic_store_explicit(&j->failed, 1, memory_order_relaxed);
}

danu_status dn_model_repack(danu_model *m, const struct danu_options *o, float p0)
{
    const int64_t n = 7 * (int64_t)m->cfg.n_layers + 1;
    uint64_t total = 0;
    int32_t count = 0;
    for (int64_t i = 0; i < n; i++) {
        const dn_matrix *w = matrix_at(m, i);
        const int32_t xt = target_of(m, w, o);
        if (xt >= 0) { total += copy_bytes(w, xt); count++; }
    }
    if (!count) return DANU_OK;
    DN_CHECK(total <= (uint64_t)SIZE_MAX - BUF_ALIGN, DANU_ERR_NOMEM, "cannot repack %llu bytes of weights",
             (unsigned long long)total);
    const uint64_t t0 = dn_time_ns();
    uint8_t *buf = dn_malloc_aligned_to(&m->alloc, (size_t)total, BUF_ALIGN);
    DN_CHECK(buf, DANU_ERR_NOMEM, "cannot allocate %.1f MB for the repacked weights (DANU_OPT_REPACK=0 avoids it)",
             (double)total / 1e6);
    m->repack_buf = buf;
    dn_mem_hugepages(buf, (size_t)total);

    /* on the model's pool (the caller's, or its own whose workers start here) */
    dn_pool *pool = total >= PARALLEL_BYTES ? m->pool : NULL;
    const int used = dn_pool_size(pool);

    danu_status s = DANU_OK;
    uint64_t off = 0;
    int fast = 0;
    for (int64_t i = 0; i < n && s == DANU_OK; i++) {
        dn_matrix *w = matrix_at(m, i);
        const int32_t xt = target_of(m, w, o);
        if (xt < 0) continue;
        repack_job j = { w, xt, dn_type_row_bytes(xt, (uint64_t)w->cols), buf + off, 0 };
        if (pool) dn_pool_run(pool, repack_task, &j);
        else repack_task(&j, 0, 1);
        if (atomic_load(&j.failed)) { s = dn_seterr(DANU_ERR_INTERNAL, "repacking a %lld x %lld %s matrix failed", (long long)w->rows,
                                      (long long)w->cols, dn_type_get(w->type)->name); break; }
        if (in_mapping(m, w->data)) dn_mem_release(w->data, (size_t)(w->row_bytes * (uint64_t)w->rows));
        w->data = buf + off;
        w->type = xt;
        w->row_bytes = j.dst_row_bytes;
        off += copy_bytes(w, xt);
        fast |= xt == DN_TYPE_BF16_X16F;
        m->repacked_matrices++;
        m->repacked_bytes += w->row_bytes * (uint64_t)w->rows;
        /* load progress: the repack is most of a mapped load's work */
        if (o->progress && o->progress(o->progress_user, p0 + (0.99f - p0) * (float)((double)off / (double)total)))
            s = dn_seterr(DANU_ERR_CANCELLED, "load cancelled");
    }
    if (s == DANU_OK)
        dn_log(&m->log, DANU_LOG_INFO, "repacked %d weight matrices (%.1f MB) for the %s kernels%s in %.2f s (%d threads)",
               m->repacked_matrices, (double)m->repacked_bytes / 1e6, m->kern->name,
               fast ? " (fast bf16: bf16-rounded activations)" : "", (double)(dn_time_ns() - t0) / 1e9, used);
    return s;
}
