/* matmul.c - matrix x activations on top of the dispatch table: prepares
 * activation rows once, then walks row tiles x token tiles so that each
 * weight tile is reused across a block of tokens held in L2; dn_matmul
 * splits that over the team's pool in chunks. */
#include <stdatomic.h>
#include <string.h>
#include "kernels/kernels_internal.h"
#include "common/error.h"

/* Prepared activations of one token block (~1 MiB) stay in L2 while every
 * weight row of the range streams through once per block. */
enum { ACT_BLOCK_BYTES = 1024 * 1024, ACT_ROW_ALIGN = 64 };

size_t dn_act_row_bytes(const dn_kernels *k, int32_t wtype, int64_t cols)
{
    if (!k || wtype < 0 || wtype >= DN_TYPE_COUNT) return 0;
    return dn_act_bytes(k, k->act_type[wtype], cols);
}

size_t dn_act_bytes(const dn_kernels *k, int32_t at, int64_t cols)
{
    if (!k || at < 0 || at >= DN_TYPE_COUNT || cols <= 0) return 0;
    uint64_t b = dn_type_row_bytes(at, (uint64_t)cols);
    if (!b) return 0;
    /* rows (and their ISA extras) start on cache lines */
    b = (b + ACT_ROW_ALIGN - 1) / ACT_ROW_ALIGN * ACT_ROW_ALIGN;
    b += (uint64_t)k->act_extra[at] * (uint64_t)((cols + 255) / 256);
    return (size_t)((b + ACT_ROW_ALIGN - 1) / ACT_ROW_ALIGN * ACT_ROW_ALIGN);
}

static danu_status no_kernel(const dn_kernels *k, int32_t wtype, const char *what)
{
    return dn_seterr(DANU_ERR_INTERNAL, "the %s kernel table has no %s for weight type %d", k ? k->name : "NULL",
                     what, (int)wtype);
}

danu_status dn_prepare_acts(const dn_kernels *k, int32_t wtype, const float *X, int64_t n_tok,
                            int64_t cols, void *Xq)
{
    const size_t rb = dn_act_row_bytes(k, wtype, cols);
    dn_act_fn f = rb ? k->act_prepare[k->act_type[wtype]] : NULL;
    if (!f) return no_kernel(k, wtype, "activation preparation");
    for (int64_t t = 0; t < n_tok; t++)
        f(X + t * cols, (uint8_t *)Xq + (size_t)t * rb, cols);
    return DANU_OK;
}

/* x16 matrix on a table without its gemm: block by block through the base
 * type's plain dot (tests and the scalar/reference levels). */
static danu_status x16_fallback(const dn_kernels *k, const dn_matrix *W, const uint8_t *x, size_t xrb,
                                int64_t n_tok, float *Y, int64_t ldy, int64_t r0, int64_t r1)
{
    const int32_t wt = W->type, at = k->act_type[wt];
    const int64_t n = W->cols, bs = dn_type_block_size(wt);
    const size_t group = 16 * (size_t)W->row_bytes;
    dn_vec_dot_fn vd = k->vec_dot[wt];
    uint8_t blk[256];   /* one base block (q6_K: 210 bytes) */
    if (!vd) return no_kernel(k, wt, "dot product");
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *g = (const uint8_t *)W->data + (size_t)(r / 16) * group;
        for (int64_t t = 0; t < n_tok; t++) Y[t * ldy + r] = 0.0f;
        /* each block extracted once for all tokens; every sum still runs
         * over the blocks in order */
        for (int64_t c = 0; c < n / bs; c++) {
            if (dn_x16_extract_block(wt, g, n, (int)(r % 16), c, blk) != 0)
                return dn_seterr(DANU_ERR_INTERNAL, "cannot extract block %lld of row %lld of an x16 matrix of type %d",
                                 (long long)c, (long long)r, (int)wt);
            const size_t xo = (size_t)dn_type_row_bytes(at, (uint64_t)(c * bs));
            for (int64_t t = 0; t < n_tok; t++) Y[t * ldy + r] += vd(bs, blk, x + (size_t)t * xrb + xo);
        }
    }
    return DANU_OK;
}

/* Rows r0..r1 inside one 16-row group of an x16 matrix with a gemm: the
 * whole group per token into a bounce buffer (only for callers that split
 * a matrix off its group boundaries; the forward pass never does). */
static void x16_partial_group(const dn_kernels *k, const dn_matrix *W, const uint8_t *x, size_t xrb,
                              int64_t n_tok, float *Y, int64_t ldy, int64_t r0, int64_t r1)
{
    const size_t group = 16 * (size_t)W->row_bytes;
    const int64_t g0 = r0 / 16 * 16;
    float tmp[16];
    for (int64_t t = 0; t < n_tok; t++) {
        k->gemm[W->type](W->cols, (const uint8_t *)W->data + (size_t)(g0 / 16) * group, group, 16,
                         x + (size_t)t * xrb, xrb, 1, tmp, 16);
        for (int64_t r = r0; r < r1; r++) Y[t * ldy + r] = tmp[r - g0];
    }
}

danu_status dn_matmul_rows(const dn_kernels *k, const dn_matrix *W, const void *Xq, int64_t n_tok,
                           float *Y, int64_t ldy, int64_t r0, int64_t r1)
{
    const int32_t wt = W->type;
    if (wt < 0 || wt >= DN_TYPE_COUNT) return no_kernel(k, wt, "slot");
    if (r0 >= r1 || n_tok <= 0) return DANU_OK;
    if (dn_x16_base(wt) >= 0) {
        /* row groups (rows % 16 == 0); callers split at multiples of 16 */
        const size_t xrb = dn_act_row_bytes(k, wt, W->cols), group = 16 * (size_t)W->row_bytes;
        if (!xrb) return no_kernel(k, wt, "activation type");
        if (!k->gemm[wt]) return x16_fallback(k, W, Xq, xrb, n_tok, Y, ldy, r0, r1);
        if (r0 % 16 || r1 % 16) {
            /* a range off the group boundaries: partial groups at the ends */
            const int64_t a = (r0 + 15) / 16 * 16, b = r1 / 16 * 16;
            if (a > b) { x16_partial_group(k, W, Xq, xrb, n_tok, Y, ldy, r0, r1); return DANU_OK; }
            if (r0 < a) x16_partial_group(k, W, Xq, xrb, n_tok, Y, ldy, r0, a);
            if (b < r1) x16_partial_group(k, W, Xq, xrb, n_tok, Y, ldy, b, r1);
            r0 = a;
            r1 = b;
            if (r0 >= r1) return DANU_OK;
        }
        /* token blocks keep the prepared activations in L2 */
        int64_t tb = (int64_t)(ACT_BLOCK_BYTES / xrb);
        if (tb < 1) tb = 1;
        for (int64_t t0 = 0; t0 < n_tok; t0 += tb) {
            const int64_t t1 = t0 + tb < n_tok ? t0 + tb : n_tok;
            k->gemm[wt](W->cols, (const uint8_t *)W->data + (size_t)(r0 / 16) * group, group, (int)(r1 - r0),
                        (const uint8_t *)Xq + (size_t)t0 * xrb, xrb, (int)(t1 - t0), Y + t0 * ldy + r0, (size_t)ldy);
        }
        return DANU_OK;
    }
    const int64_t n = W->cols;
    const size_t wrb = (size_t)W->row_bytes, xrb = dn_act_row_bytes(k, wt, n);
    const uint8_t *w = W->data, *x = Xq;
    dn_vec_dot_fn vd = k->vec_dot[wt];
    /* the gemm also serves one token: its row tiles share activation work */
    dn_gemm_fn g = k->gemm[wt];
    if (!vd || !xrb) return no_kernel(k, wt, vd ? "activation type" : "dot product");

    /* token block: whole gemm tiles, about ACT_BLOCK_BYTES of activations */
    int64_t tb = (int64_t)(ACT_BLOCK_BYTES / xrb);
    if (g && k->gemm_nt > 1) tb = tb < k->gemm_nt ? k->gemm_nt : tb - tb % k->gemm_nt;
    if (tb < 1) tb = 1;

    for (int64_t t0 = 0; t0 < n_tok; t0 += tb) {
        const int64_t t1 = t0 + tb < n_tok ? t0 + tb : n_tok;
        if (g) {
            const int nr = k->gemm_nr, nt = k->gemm_nt;
            for (int64_t r = r0; r < r1; r += nr) {
                const int rr = (int)(r1 - r < nr ? r1 - r : nr);
                for (int64_t t = t0; t < t1; t += nt) {
                    const int tt = (int)(t1 - t < nt ? t1 - t : nt);
                    g(n, w + (size_t)r * wrb, wrb, rr, x + (size_t)t * xrb, xrb, tt,
                      Y + t * ldy + r, (size_t)ldy);
                }
            }
        } else {
            for (int64_t r = r0; r < r1; r++) {
                const uint8_t *wr = w + (size_t)r * wrb;
                for (int64_t t = t0; t < t1; t++)
                    Y[t * ldy + r] = vd(n, wr, x + (size_t)t * xrb);
            }
        }
    }
    return DANU_OK;
}

/* ---- over the thread pool ---------------------------------------------- */

/* First failure of a job: status, matrix (-1: activation preparation) and
 * the thread that hit it (its message is recorded on that thread). */
typedef struct mm_fail {
    atomic_int status;
    int mat, ith;   /* ith: the lane (0: the caller) */
} mm_fail;

static void fail(mm_fail *f, danu_status st, int mat, int ith)
{
    int ok = DANU_OK;
    if (atomic_compare_exchange_strong(&f->status, &ok, (int)st)) {
        f->mat = mat;
        f->ith = ith;
    }
}

typedef struct mm_job {
    const dn_kernels *k;
    int n;                       /* matrices (1..3) */
    const dn_matrix *const *W;
    const void *Xq[3];
    float *const *Y;
    int64_t n_tok;
    int64_t groups, chunks;      /* 16-row groups of all matrices, chunks they are cut into */
    mm_fail *fail;
} mm_job;

/* The matrices' rows, cut into groups of 16 counted from the start of each
 * matrix (a matrix's last group may be short), form one range of groups
 * cut into chunks: tiles stay whole and every cut is a multiple of 16
 * within its matrix, as the repacked x16 row groups need. */
static void mm_chunk(void *arg, int64_t chunk, int lane)
{
    const mm_job *j = arg;
    const int64_t c0 = j->groups * chunk / j->chunks, c1 = j->groups * (chunk + 1) / j->chunks;
    int64_t base = 0;   /* first group of matrix i */
    for (int i = 0; i < j->n && base < c1; i++) {
        const int64_t rows = j->W[i]->rows, n = (rows + 15) / 16;
        const int64_t a = c0 > base ? c0 - base : 0, b = c1 - base < n ? c1 - base : n;
        if (a < b) {
            danu_status st = dn_matmul_rows(j->k, j->W[i], j->Xq[i], j->n_tok, j->Y[i], rows, 16 * a,
                                            16 * b < rows ? 16 * b : rows);
            if (st != DANU_OK) fail(j->fail, st, i, lane);
        }
        base += n;
    }
}

/* Activation rows converted once per distinct activation type, split by
 * token rows when the batch is large enough to be worth it. */
typedef struct prep_job {
    const dn_kernels *k;
    int n;
    int32_t wtype[3];
    int64_t cols;
    const float *X;
    void *dst[3];
    mm_fail *fail;
} prep_job;

static void prep_rows(void *arg, int64_t t0, int64_t t1, int lane)
{
    const prep_job *j = arg;
    for (int i = 0; i < j->n && t0 < t1; i++) {
        size_t rb = dn_act_row_bytes(j->k, j->wtype[i], j->cols);
        danu_status st = dn_prepare_acts(j->k, j->wtype[i], j->X + t0 * j->cols, t1 - t0, j->cols,
                                         (uint8_t *)j->dst[i] + (size_t)t0 * rb);
        if (st != DANU_OK) fail(j->fail, st, -1, lane);
    }
}

static danu_status failed(const mm_fail *f, const dn_kernels *k, const dn_matrix *const *W)
{
    const danu_status st = (danu_status)atomic_load(&f->status);
    if (st == DANU_OK || f->ith == 0) return st;   /* the caller's own message stands */
    if (f->mat < 0) return dn_seterr(st, "preparing activations for weight type %d on the %s kernel table failed "
                                     "on worker thread %d", (int)W[0]->type, k->name, f->ith);
    return dn_seterr(st, "matrix product %d (weight type %d, %lld x %lld) failed on worker thread %d of the %s kernel "
                     "table", f->mat, (int)W[f->mat]->type, (long long)W[f->mat]->rows, (long long)W[f->mat]->cols,
                     f->ith, k->name);
}

danu_status dn_matmul(const dn_kernels *k, const dn_team *team, int n_mats, const dn_matrix *const *W, const float *X,
                      int64_t n_tok, float *const *Y, void *const act[3])
{
    if (n_mats < 1 || n_mats > 3)
        return dn_seterr(DANU_ERR_INTERNAL, "dn_matmul: %d matrices (1 to 3 share an input)", n_mats);
    mm_fail f = { .status = DANU_OK };
    mm_job j = { .k = k, .n = n_mats, .W = W, .Y = Y, .n_tok = n_tok, .fail = &f };
    prep_job p = { .k = k, .cols = W[0]->cols, .X = X, .fail = &f };
    uint64_t bytes = 0;   /* weight bytes streamed */
    int32_t prepared[3] = { -1, -1, -1 };
    for (int i = 0; i < n_mats; i++) {
        const int32_t wt = W[i]->type;
        if (wt < 0 || wt >= DN_TYPE_COUNT || W[i]->cols != W[0]->cols)
            return dn_seterr(DANU_ERR_INTERNAL, "dn_matmul: matrix %d has type %d and %lld columns", i, (int)wt,
                             (long long)W[i]->cols);
        const int32_t at = k->act_type[wt];
        int slot = 0;
        while (prepared[slot] != -1 && prepared[slot] != at) slot++;
        if (prepared[slot] == -1) {
            prepared[slot] = at;
            p.wtype[p.n] = wt;
            p.dst[p.n++] = act[slot];
        }
        j.Xq[i] = act[slot];
        j.groups += (W[i]->rows + 15) / 16;
        bytes += (uint64_t)W[i]->rows * W[i]->row_bytes;
    }
    /* small products stay on the caller: a hand-off costs more than they do */
    if (team && !team->split_small && bytes * (uint64_t)n_tok < DN_SPLIT_MIN_BYTES) team = NULL;
    dn_run_rows(team, prep_rows, &p, n_tok);
    danu_status st = failed(&f, k, W);
    if (st != DANU_OK) return st;
    j.chunks = dn_team_chunks(team, j.groups);
    dn_team_for(team, j.chunks, mm_chunk, &j);
    return failed(&f, k, W);
}
