/* rows.c - row-wise elementwise steps of a batch (norms, SwiGLU) through
 * the kernel table, split over the team by rows for prompts; a few rows
 * stay on the calling thread. Every row is computed alone, so the split
 * never changes a bit. */
#include "kernels/kernels.h"

typedef struct rows_split { dn_rows_fn fn; void *arg; int64_t n, chunks; } rows_split;

static void rows_chunk(void *arg, int64_t c, int lane)
{
    const rows_split *r = arg;
    r->fn(r->arg, r->n * c / r->chunks, r->n * (c + 1) / r->chunks, lane);
}

void dn_run_rows(const dn_team *team, dn_rows_fn fn, void *arg, int64_t n)
{
    if (n < DN_SPLIT_MIN_ROWS || dn_team_lanes(team) < 2) { fn(arg, 0, n, 0); return; }
    rows_split r = { fn, arg, n, dn_team_chunks(team, n) };
    dn_team_for(team, r.chunks, rows_chunk, &r);
}

typedef struct rows_job {
    const dn_kernels *k;
    float *out;
    const float *in, *w;    /* w: NULL for SwiGLU */
    int64_t width;
    float eps;
} rows_job;

static void rmsnorm_rows(void *arg, int64_t t0, int64_t t1, int lane)
{
    (void)lane;
    const rows_job *j = arg;
    for (int64_t t = t0; t < t1; t++)
        j->k->rmsnorm(j->out + t * j->width, j->in + t * j->width, j->w, j->width, j->eps);
}

static void swiglu_rows(void *arg, int64_t t0, int64_t t1, int lane)
{
    (void)lane;
    const rows_job *j = arg;
    for (int64_t t = t0; t < t1; t++)
        j->k->silu_mul(j->out + t * j->width, j->in + t * j->width, j->width);
}

void dn_rmsnorm_rows(const dn_kernels *k, const dn_team *team, float *out, const float *x, const float *w, int64_t n,
                     int64_t width, float eps)
{
    rows_job j = { k, out, x, w, width, eps };
    dn_run_rows(team, rmsnorm_rows, &j, n);
}

void dn_swiglu_rows(const dn_kernels *k, const dn_team *team, float *gate, const float *up, int64_t n, int64_t width)
{
    rows_job j = { k, gate, up, NULL, width, 0.0f };
    dn_run_rows(team, swiglu_rows, &j, n);
}
