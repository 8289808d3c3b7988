/* rows.c - row-wise elementwise steps of a batch (norms, SwiGLU) through
 * the kernel table, split over the thread pool by rows for prompts; a few
 * rows stay on the calling thread. Every row is computed alone, so the
 * split never changes a bit. */
#include "kernels/kernels.h"

typedef struct rows_job {
    const dn_kernels *k;
    float *out;
    const float *in, *w;    /* w: NULL for SwiGLU */
    int64_t n, width;
    float eps;
} rows_job;

static void rmsnorm_task(void *arg, int ith, int nth)
{
    const rows_job *j = arg;
    for (int64_t t = j->n * ith / nth; t < j->n * (ith + 1) / nth; t++)
        j->k->rmsnorm(j->out + t * j->width, j->in + t * j->width, j->w, j->width, j->eps);
}

static void swiglu_task(void *arg, int ith, int nth)
{
    const rows_job *j = arg;
    for (int64_t t = j->n * ith / nth; t < j->n * (ith + 1) / nth; t++)
        j->k->silu_mul(j->out + t * j->width, j->in + t * j->width, j->width);
}

void dn_rmsnorm_rows(const dn_kernels *k, dn_pool *pool, float *out, const float *x, const float *w, int64_t n,
                     int64_t width, float eps)
{
    rows_job j = { k, out, x, w, n, width, eps };
    dn_run_rows(pool, rmsnorm_task, &j, n);
}

void dn_swiglu_rows(const dn_kernels *k, dn_pool *pool, float *gate, const float *up, int64_t n, int64_t width)
{
    rows_job j = { k, gate, up, NULL, n, width, 0.0f };
    dn_run_rows(pool, swiglu_task, &j, n);
}
