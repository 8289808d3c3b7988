/* matmul.c - matrix x activations on top of the dispatch table: prepares
 * activation rows once, then walks row tiles x token tiles so that each
 * weight tile is reused across a block of tokens held in L2. */
#include <string.h>
#include "kernels/kernels_internal.h"

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

void dn_prepare_acts(const dn_kernels *k, int32_t wtype, const float *X, int64_t n_tok,
                     int64_t cols, void *Xq)
{
    const size_t rb = dn_act_row_bytes(k, wtype, cols);
    if (!rb) return;
    dn_act_fn f = k->act_prepare[k->act_type[wtype]];
    if (!f) return;
    for (int64_t t = 0; t < n_tok; t++)
        f(X + t * cols, (uint8_t *)Xq + (size_t)t * rb, cols);
}

/* x16 matrix on a table without its gemm: block by block through the base
 * type's plain dot (tests and the scalar/reference levels). */
static void x16_fallback(const dn_kernels *k, const dn_matrix *W, const uint8_t *x, size_t xrb,
                         int64_t n_tok, float *Y, int64_t ldy, int64_t r0, int64_t r1)
{
    const int32_t wt = W->type, at = k->act_type[wt];
    const int64_t n = W->cols, bs = dn_type_block_size(wt);
    const size_t group = 16 * (size_t)W->row_bytes;
    dn_vec_dot_fn vd = k->vec_dot[wt];
    uint8_t blk[256];   /* one base block (q6_K: 210 bytes) */
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *g = (const uint8_t *)W->data + (size_t)(r / 16) * group;
        for (int64_t t = 0; t < n_tok; t++) Y[t * ldy + r] = 0.0f;
        /* each block extracted once for all tokens; every sum still runs
         * over the blocks in order */
        for (int64_t c = 0; c < n / bs; c++) {
            if (dn_x16_extract_block(wt, g, n, (int)(r % 16), c, blk) != 0) return;
            const size_t xo = (size_t)dn_type_row_bytes(at, (uint64_t)(c * bs));
            for (int64_t t = 0; t < n_tok; t++) Y[t * ldy + r] += vd(bs, blk, x + (size_t)t * xrb + xo);
        }
    }
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

void dn_matmul_rows(const dn_kernels *k, const dn_matrix *W, const void *Xq, int64_t n_tok,
                    float *Y, int64_t ldy, int64_t r0, int64_t r1)
{
    const int32_t wt = W->type;
    if (wt < 0 || wt >= DN_TYPE_COUNT || r0 >= r1 || n_tok <= 0) return;
    if (dn_x16_base(wt) >= 0) {
        /* row groups (rows % 16 == 0); callers split at multiples of 16 */
        const size_t xrb = dn_act_row_bytes(k, wt, W->cols), group = 16 * (size_t)W->row_bytes;
        if (!xrb) return;
        if (!k->gemm[wt]) {
            x16_fallback(k, W, Xq, xrb, n_tok, Y, ldy, r0, r1);
            return;
        }
        if (r0 % 16 || r1 % 16) {
            /* a range off the group boundaries: partial groups at the ends */
            const int64_t a = (r0 + 15) / 16 * 16, b = r1 / 16 * 16;
            if (a > b) { x16_partial_group(k, W, Xq, xrb, n_tok, Y, ldy, r0, r1); return; }
            if (r0 < a) x16_partial_group(k, W, Xq, xrb, n_tok, Y, ldy, r0, a);
            if (b < r1) x16_partial_group(k, W, Xq, xrb, n_tok, Y, ldy, b, r1);
            r0 = a;
            r1 = b;
            if (r0 >= r1) return;
        }
        /* token blocks keep the prepared activations in L2 */
        int64_t tb = (int64_t)(ACT_BLOCK_BYTES / xrb);
        if (tb < 1) tb = 1;
        for (int64_t t0 = 0; t0 < n_tok; t0 += tb) {
            const int64_t t1 = t0 + tb < n_tok ? t0 + tb : n_tok;
            k->gemm[wt](W->cols, (const uint8_t *)W->data + (size_t)(r0 / 16) * group, group, (int)(r1 - r0),
                        (const uint8_t *)Xq + (size_t)t0 * xrb, xrb, (int)(t1 - t0), Y + t0 * ldy + r0, (size_t)ldy);
        }
        return;
    }
    const int64_t n = W->cols;
    const size_t wrb = (size_t)W->row_bytes, xrb = dn_act_row_bytes(k, wt, n);
    const uint8_t *w = W->data, *x = Xq;
    dn_vec_dot_fn vd = k->vec_dot[wt];
    /* the gemm also serves one token: its row tiles share activation work */
    dn_gemm_fn g = k->gemm[wt];
    if (!vd || !xrb) return;

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
}
