/* test_forward_parts.c - the pieces under forward.c, each on its own:
 *  - the RoPE cos/sin table against a double-precision oracle, the rotation
 *    and K/V staging against a plain oracle, at 1 and 2 threads;
 *  - rmsnorm rows and SwiGLU rows below and above the thread threshold
 *    give the same bits as the single-thread path;
 *  - dn_matmul through pools of 1 and 2 threads gives the same bits as on
 *    the calling thread, for every weight type (x16 too) and table;
 *  - a missing kernel surfaces as DANU_ERR_INTERNAL with a message on the
 *    calling thread (from a worker too), through dn_forward to the API, and
 *    leaves the cache as it was. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "danu.h"
#include "testutil.h"
#include "golden.h"
#include "common/bytes.h"
#include "common/error.h"
#include "model/model.h"
#include "model/forward.h"
#include "model/attention.h"
#include "kernels/kernels.h"

static char *tmp;
#define N(a) (int)(sizeof a / sizeof a[0])

/* A model with a config and a kernel table only: enough for the scratch,
 * RoPE and attention staging. */
static danu_model fake_model(int interleaved)
{
    danu_model m;
    memset(&m, 0, sizeof m);
    m.cfg = (dn_config){ .vocab = 64, .hidden = 64, .n_layers = 1, .n_heads = 4, .n_kv_heads = 2, .head_dim = 16,
                         .ffn = 96, .max_ctx = 256, .rope_theta = 10000.0f, .rms_eps = 1e-5f,
                         .rope_interleaved = interleaved };
    m.kern = dn_kernels_get(DANU_ISA_AUTO);
    return m;
}

/* n lanes of a pool of their own */
static dn_team *pool_of(int n)
{
    dn_team *t = malloc(sizeof *t);
    ck_assert_ptr_nonnull(t);
    t->lanes = n;
    t->split_small = 1;   /* the test's shapes are small: split them anyway */
    t->adapt = NULL;
    ck_assert_int_eq(dn_pool_create(dn_alloc_libc(), n, &t->pool), DANU_OK);
    return t;
}

static void team_free(dn_team *t)
{
    dn_pool_free(t->pool);
    free(t);
}

START_TEST(test_forward_parts_rope_table)
{
    danu_model m = fake_model(0);
    const dn_config *c = &m.cfg;
    const int hd = c->head_dim, half = hd / 2, nb = 24;
    dn_scratch s;
    ck_assert_int_eq(dn_scratch_init(&s, dn_alloc_libc(), &m, nb, 2, 64), DANU_OK);
    dn_team *pool = pool_of(2);
    float *one = malloc(sizeof(float) * nb * hd);
    static const int64_t pos0s[] = { 0, 7, 4093, 100000 };
    static const int ns[] = { 1, 3, 8, 24 };
    for (int a = 0; a < N(pos0s); a++)
        for (int b = 0; b < N(ns); b++) {
            const int64_t pos0 = pos0s[a];
            const int n = ns[b];
            dn_rope_table(&m, &s, NULL, n, pos0);
            memcpy(one, s.rope, sizeof(float) * n * hd);
            dn_rope_table(&m, &s, pool, n, pos0);
            ck_assert_msg(!memcmp(one, s.rope, sizeof(float) * n * hd), "pos0 %lld n %d: 1 and 2 threads differ",
                          (long long)pos0, n);
            for (int t = 0; t < n; t++)
                for (int j = 0; j < half; j++) {
                    const double inv = pow((double)c->rope_theta, -2.0 * j / hd), p = (double)(pos0 + t);
                    /* exactly the definition: angle in double from the float frequency */
                    const double ang = p * (double)(float)inv;
                    const float cf = s.rope[(size_t)t * hd + j], sf = s.rope[(size_t)t * hd + half + j];
                    ck_assert(cf == (float)cos(ang) && sf == (float)sin(ang));
                    /* and near the float64 oracle: rounding the frequency to
                     * float moves the angle by at most p * inv * 2^-24 */
                    const double tol = 0x1p-24 + p * inv * 0x1p-24 * 1.01;
                    ck_assert_msg(fabs(cf - cos(p * inv)) <= tol && fabs(sf - sin(p * inv)) <= tol,
                                  "pos %lld j %d: %.9g %.9g vs %.9g %.9g", (long long)(pos0 + t), j, cf, sf,
                                  cos(p * inv), sin(p * inv));
                }
        }
    free(one);
    team_free(pool);
    dn_scratch_free(&s);
}
END_TEST

/* Bytes of the V array of a one-layer cache's staging area, and of its K
 * array (Q8 tiles pad head_dim to a multiple of 4; kernels.h). */
static size_t stage_bytes(const dn_kvcache *kv)
{
    return (size_t)kv->n_heads * (size_t)kv->stage.slots * (size_t)kv->head_dim * kv->elem;
}
static size_t stage_k_bytes(const dn_kvcache *kv)
{
    return (size_t)kv->n_heads * (size_t)(kv->stage.slots / DN_KV_TILE) * dn_kv_tile_bytes(kv->head_dim, kv->type);
}

/* q and k rotated by the table (both pair layouts), k and v staged in the
 * cache's type (f16, f32, q8_0: read back through a commit and the state
 * row form); one and two threads give the same bytes, one token and a
 * batch. */
START_TEST(test_forward_parts_rope_stage)
{
    dn_team *pool = pool_of(2);
    uint64_t rng = 99;
    for (int inter = 0; inter < 2; inter++)
        for (int kvt = 0; kvt < 6; kvt++) {   /* head_dim 16, then 18 (Q8 tiles pad it to 20) */
            const int32_t kv_type = kvt % 3 == 0 ? DANU_KV_F16 : kvt % 3 == 1 ? DANU_KV_F32 : DANU_KV_Q8_0;
            danu_model m = fake_model(inter);
            m.cfg.head_dim = kvt < 3 ? 16 : 18;
            const dn_config *c = &m.cfg;
            const int hd = c->head_dim, half = hd / 2, qd = c->n_heads * hd, kvd = c->n_kv_heads * hd, nb = 20;
            dn_scratch s;
            dn_kvcache kv;
            ck_assert_int_eq(dn_scratch_init(&s, dn_alloc_libc(), &m, nb, 2, 64), DANU_OK);
            ck_assert_int_eq(dn_kv_init(&kv, dn_alloc_libc(), 1, c->n_kv_heads, hd, 64, nb, kv_type, 0), DANU_OK);
            float *q0 = malloc(sizeof(float) * nb * qd), *k0 = malloc(sizeof(float) * nb * kvd);
            float *q1 = malloc(sizeof(float) * nb * qd), *k1 = malloc(sizeof(float) * nb * kvd);
            const size_t stage = stage_bytes(&kv), stage_k = stage_k_bytes(&kv);
            uint8_t *sk1 = malloc(stage_k), *sv1 = malloc(stage), *row = malloc(dn_kv_row_bytes(&kv));
            static const int ns[] = { 1, 5, 20 };
            for (int b = 0; b < N(ns); b++) {
                const int n = ns[b];
                const int64_t pos0 = 37 * b;
                for (int i = 0; i < nb * qd; i++) q0[i] = tu_rand_act(&rng);
                for (int i = 0; i < nb * kvd; i++) k0[i] = tu_rand_act(&rng), s.v[i] = tu_rand_act(&rng);
                dn_rope_table(&m, &s, pool, n, pos0);
                for (int th = 0; th < 2; th++) {
                    memcpy(s.q, q0, sizeof(float) * nb * qd);
                    memcpy(s.k, k0, sizeof(float) * nb * kvd);
                    memset(kv.stage.k, 0, stage_k);
                    memset(kv.stage.v, 0, stage);
                    dn_rope_stage(&m, &kv, &s, th ? pool : NULL, 0, n);
                    if (th == 0) {
                        memcpy(q1, s.q, sizeof(float) * nb * qd);
                        memcpy(k1, s.k, sizeof(float) * nb * kvd);
                        memcpy(sk1, kv.stage.k, stage_k);
                        memcpy(sv1, kv.stage.v, stage);
                        continue;
                    }
                    ck_assert(!memcmp(q1, s.q, sizeof(float) * nb * qd) && !memcmp(k1, s.k, sizeof(float) * nb * kvd));
                    ck_assert(!memcmp(sk1, kv.stage.k, stage_k) && !memcmp(sv1, kv.stage.v, stage));
                }
                dn_kv_commit(&kv, 0, n);   /* staged row t -> position t, read back as a state row */
                for (int t = 0; t < n; t++) {
                    const float *cs = s.rope + (size_t)t * hd;
                    for (int which = 0; which < 2; which++) {
                        const int heads = which ? c->n_kv_heads : c->n_heads, w = heads * hd;
                        const float *in = (which ? k0 : q0) + (size_t)t * w, *out = (which ? s.k : s.q) + (size_t)t * w;
                        for (int h = 0; h < heads; h++)
                            for (int j = 0; j < half; j++) {
                                const int i0 = h * hd + (inter ? 2 * j : j), i1 = h * hd + (inter ? 2 * j + 1 : j + half);
                                const double ca = cs[j], sa = cs[half + j], a = in[i0], bb = in[i1];
                                const double e0 = a * ca - bb * sa, e1 = a * sa + bb * ca;
                                const double tol = 2e-7 * (fabs(a) + fabs(bb));
                                ck_assert_msg(fabs(out[i0] - e0) <= tol && fabs(out[i1] - e1) <= tol,
                                              "inter %d t %d h %d j %d", inter, t, h, j);
                                /* the rotation as float operations, bit for bit */
                                ck_assert(out[i0] == in[i0] * cs[j] - in[i1] * cs[half + j]);
                                ck_assert(out[i1] == in[i0] * cs[half + j] + in[i1] * cs[j]);
                            }
                    }
                    for (int which = 0; which < 2; which++) {
                        dn_kv_save_row(&kv, 0, t, which, row);
                        const uint8_t *r = row;
                        for (int h = 0; h < c->n_kv_heads; h++) {
                            const float *x = (which ? s.v : s.k) + (size_t)t * kvd + (size_t)h * hd;
                            float scale = 0, amax = 0;
                            if (kv_type == DANU_KV_Q8_0) {
                                memcpy(&scale, r, 4);
                                r += 4;
                                for (int i = 0; i < hd; i++) amax = fmaxf(amax, fabsf(x[i]));
                                ck_assert_msg(scale == amax / 127.0f, "q8 scale t %d h %d", t, h);
                            }
                            for (int i = 0; i < hd; i++) {
                                if (kv_type == DANU_KV_F32) {
                                    float f;
                                    memcpy(&f, r + 4 * i, 4);
                                    ck_assert(f == x[i]);
                                } else if (kv_type == DANU_KV_F16) {
                                    uint16_t hv;
                                    memcpy(&hv, r + 2 * i, 2);
                                    ck_assert(hv == dn_f32_to_fp16(x[i]));
                                } else {   /* within half a step of the 255-level grid */
                                    const double back = (double)scale * (int8_t)r[i];
                                    ck_assert_msg(fabs(back - x[i]) <= 0.5 * scale * (1 + 1e-5) + 1e-30,
                                                  "q8 t %d h %d i %d: %g vs %g", t, h, i, back, x[i]);
                                }
                            }
                            r += (size_t)hd * kv.elem;
                        }
                    }
                }
            }
            free(q0); free(k0); free(q1); free(k1); free(sk1); free(sv1); free(row);
            dn_kv_free(&kv);
            dn_scratch_free(&s);
        }
    team_free(pool);
}
END_TEST

START_TEST(test_forward_parts_rows)
{
    const dn_kernels *ks[8];
    const int nk = dn_kernels_all(ks, 1);
    dn_team *pool = pool_of(2);
    enum { NB = 24, W = 72 };
    static const int ns[] = { 1, DN_SPLIT_MIN_ROWS - 1, DN_SPLIT_MIN_ROWS, NB };
    uint64_t rng = 5;
    float *x = malloc(sizeof(float) * NB * W), *up = malloc(sizeof(float) * NB * W), w[W];
    float *a = malloc(sizeof(float) * NB * W), *b = malloc(sizeof(float) * NB * W), *r = malloc(sizeof(float) * NB * W);
    for (int i = 0; i < NB * W; i++) x[i] = tu_rand_act(&rng), up[i] = tu_rand_act(&rng);
    for (int i = 0; i < W; i++) w[i] = 1.0f + 0.25f * tu_rand_unit(&rng);
    for (int i = 0; i < nk; i++)
        for (int q = 0; q < N(ns); q++) {
            const int n = ns[q];
            for (int t = 0; t < n; t++) ks[i]->rmsnorm(r + t * W, x + t * W, w, W, 1e-5f);
            dn_rmsnorm_rows(ks[i], NULL, a, x, w, n, W, 1e-5f);
            dn_rmsnorm_rows(ks[i], pool, b, x, w, n, W, 1e-5f);
            ck_assert_msg(!memcmp(a, r, sizeof(float) * n * W) && !memcmp(b, r, sizeof(float) * n * W),
                          "%s rmsnorm rows n %d", ks[i]->name, n);
            memcpy(r, x, sizeof(float) * NB * W);
            for (int t = 0; t < n; t++) ks[i]->silu_mul(r + t * W, up + t * W, W);
            memcpy(a, x, sizeof(float) * NB * W);
            memcpy(b, x, sizeof(float) * NB * W);
            dn_swiglu_rows(ks[i], NULL, a, up, n, W);
            dn_swiglu_rows(ks[i], pool, b, up, n, W);
            ck_assert_msg(!memcmp(a, r, sizeof(float) * NB * W) && !memcmp(b, r, sizeof(float) * NB * W),
                          "%s swiglu rows n %d", ks[i]->name, n);
        }
    free(x); free(up); free(a); free(b); free(r);
    team_free(pool);
}
END_TEST

/* A random matrix of `type` (x16 types: repacked from their base type). */
static void *make_matrix(dn_matrix *W, int32_t type, int64_t rows, int64_t cols, uint64_t *rng)
{
    const int32_t base = dn_x16_base(type) >= 0 ? dn_x16_base(type) : type;
    const uint64_t rb = dn_type_row_bytes(base, (uint64_t)cols);
    uint8_t *plain = malloc(rb * rows);
    float *row = malloc(sizeof(float) * cols);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < cols; i++) row[i] = tu_rand_unit(rng) * 0.1f;
        ck_assert_int_eq(dn_quantize_row(base, row, plain + r * rb, cols), 0);
    }
    free(row);
    *W = (dn_matrix){ .data = plain, .type = type, .rows = rows, .cols = cols, .row_bytes = rb };
    if (type == base) return plain;
    const uint64_t xrb = dn_type_row_bytes(type, (uint64_t)cols);
    uint8_t *x = dn_malloc_aligned(dn_alloc_libc(), xrb * rows);
    for (int64_t g = 0; g < rows / 16; g++)
        ck_assert_int_eq(dn_x16_repack(type, plain + g * 16 * rb, rb, x + g * 16 * xrb, cols), 0);
    free(plain);
    W->data = x;
    W->row_bytes = xrb;
    return x;
}

static void free_matrix(const dn_matrix *W)
{
    if (dn_x16_base(W->type) >= 0) dn_free_aligned(dn_alloc_libc(), (void *)W->data);
    else free((void *)W->data);
}

START_TEST(test_forward_parts_matmul_threads)
{
    static const int32_t types[] = { DANU_TYPE_F32, DANU_TYPE_F16, DANU_TYPE_BF16, DANU_TYPE_Q8_0, DANU_TYPE_Q4_0,
                                     DANU_TYPE_Q4_K, DANU_TYPE_Q6_K, DN_TYPE_Q4_0_X16, DN_TYPE_Q8_0_X16,
                                     DN_TYPE_Q4_K_X16, DN_TYPE_Q6_K_X16, DN_TYPE_BF16_X16 };
    static const int ntoks[] = { 1, 5, 13 };
    enum { COLS = 256, NT = 13 };
    const dn_kernels *ks[8];
    const int nk = dn_kernels_all(ks, 0);
    dn_team *p1 = pool_of(1), *p2 = pool_of(2);
    uint64_t rng = 17;
    float *X = malloc(sizeof(float) * NT * COLS);
    for (int i = 0; i < NT * COLS; i++) X[i] = tu_rand_act(&rng);
    for (int ti = 0; ti < N(types); ti++) {
        const int32_t type = types[ti];
        const int x16 = dn_x16_base(type) >= 0;
        /* three matrices sharing X; the middle one mixes in another type */
        const int64_t rows[3] = { 48, x16 ? 32 : 40, 16 };
        dn_matrix W[3];
        make_matrix(&W[0], type, rows[0], COLS, &rng);
        make_matrix(&W[1], x16 ? type : DANU_TYPE_Q8_0, rows[1], COLS, &rng);
        make_matrix(&W[2], type, rows[2], COLS, &rng);
        const dn_matrix *Wp[3] = { &W[0], &W[1], &W[2] };
        for (int i = 0; i < nk; i++) {
            size_t most = 0;
            for (int m = 0; m < 3; m++) {
                size_t b = dn_act_row_bytes(ks[i], W[m].type, COLS);
                if (b > most) most = b;
            }
            void *act[3];
            for (int a = 0; a < 3; a++) act[a] = dn_malloc_aligned(dn_alloc_libc(), most * NT);
            float *Y[3][3];   /* [pool][matrix] */
            for (int pi = 0; pi < 3; pi++)
                for (int m = 0; m < 3; m++) Y[pi][m] = malloc(sizeof(float) * NT * rows[m]);
            for (int q = 0; q < N(ntoks); q++) {
                dn_team *pools[3] = { NULL, p1, p2 };
                for (int pi = 0; pi < 3; pi++) {
                    for (int m = 0; m < 3; m++) memset(Y[pi][m], 0xff, sizeof(float) * NT * rows[m]);
                    ck_assert_int_eq(dn_matmul(ks[i], pools[pi], 3, Wp, X, ntoks[q], Y[pi], act), DANU_OK);
                }
                for (int m = 0; m < 3; m++)
                    ck_assert_msg(!memcmp(Y[0][m], Y[1][m], sizeof(float) * ntoks[q] * rows[m]) &&
                                  !memcmp(Y[0][m], Y[2][m], sizeof(float) * ntoks[q] * rows[m]),
                                  "%s type %d matrix %d n_tok %d: bits differ across thread counts", ks[i]->name,
                                  (int)type, m, ntoks[q]);
                /* and the single matrix on its own is the same product */
                ck_assert_int_eq(dn_matmul(ks[i], p2, 1, Wp + 2, X, ntoks[q], Y[1] + 2, act), DANU_OK);
                ck_assert(!memcmp(Y[0][2], Y[1][2], sizeof(float) * ntoks[q] * rows[2]));
            }
            for (int pi = 0; pi < 3; pi++)
                for (int m = 0; m < 3; m++) free(Y[pi][m]);
            for (int a = 0; a < 3; a++) dn_free_aligned(dn_alloc_libc(), act[a]);
        }
        for (int m = 0; m < 3; m++) free_matrix(&W[m]);
    }
    free(X);
    team_free(p1);
    team_free(p2);
}
END_TEST

/* A table with a slot emptied: the failure is returned, with a message on
 * the calling thread, whichever thread hit it. */
START_TEST(test_forward_parts_matmul_missing_kernel)
{
    enum { COLS = 64, NT = 20 };
    dn_kernels bad = *dn_kernels_get(DANU_ISA_AUTO);
    bad.vec_dot[DANU_TYPE_Q8_0] = NULL;
    bad.gemm[DANU_TYPE_Q8_0] = NULL;
    dn_team *p2 = pool_of(2);
    uint64_t rng = 3;
    dn_matrix W[2];
    make_matrix(&W[0], DANU_TYPE_F32, 32, COLS, &rng);
    make_matrix(&W[1], DANU_TYPE_Q8_0, 32, COLS, &rng);  /* no kernel: whichever lane takes these rows fails */
    const dn_matrix *Wp[2] = { &W[0], &W[1] };
    float *X = calloc(NT * COLS, sizeof(float)), *Y0 = malloc(sizeof(float) * NT * 32),
          *Y1 = malloc(sizeof(float) * NT * 32);
    float *Y[2] = { Y0, Y1 };
    void *act[3];
    for (int a = 0; a < 3; a++) act[a] = dn_malloc_aligned(dn_alloc_libc(), 4096 * NT);
    for (int nt = 1; nt <= NT; nt += NT - 1) {
        dn_clearerr();
        ck_assert_int_eq(dn_matmul(&bad, p2, 2, Wp, X, nt, Y, act), DANU_ERR_INTERNAL);
        ck_assert_msg(strstr(dn_lasterr(), "weight type 8"), "message: %s", dn_lasterr());
        dn_clearerr();
        ck_assert_int_eq(dn_matmul(&bad, NULL, 2, Wp, X, nt, Y, act), DANU_ERR_INTERNAL);
        ck_assert_msg(strstr(dn_lasterr(), "no dot product for weight type 8"), "message: %s", dn_lasterr());
        ck_assert_int_eq(dn_matmul_rows(&bad, &W[1], act[0], nt, Y1, 32, 0, 32), DANU_ERR_INTERNAL);
    }
    /* activation preparation missing (split over the pool for a batch) */
    dn_kernels noprep = *dn_kernels_get(DANU_ISA_AUTO);
    noprep.act_prepare[noprep.act_type[DANU_TYPE_Q8_0]] = NULL;
    dn_clearerr();
    ck_assert_int_eq(dn_matmul(&noprep, p2, 1, Wp + 1, X, NT, Y, act), DANU_ERR_INTERNAL);
    ck_assert(dn_lasterr()[0] != '\0');
    ck_assert_int_eq(dn_prepare_acts(&noprep, DANU_TYPE_Q8_0, X, 1, COLS, act[0]), DANU_ERR_INTERNAL);
    /* a type number outside the table */
    dn_matrix odd = W[0];
    odd.type = DN_TYPE_COUNT;
    const dn_matrix *Wo[1] = { &odd };
    ck_assert_int_eq(dn_matmul(&bad, p2, 1, Wo, X, 1, Y, act), DANU_ERR_INTERNAL);
    ck_assert_int_eq(dn_matmul(&bad, p2, 4, Wp, X, 1, Y, act), DANU_ERR_INTERNAL);
    for (int a = 0; a < 3; a++) dn_free_aligned(dn_alloc_libc(), act[a]);
    free(X); free(Y0); free(Y1);
    free_matrix(&W[0]);
    free_matrix(&W[1]);
    team_free(p2);
}
END_TEST

/* Through dn_forward to danu_context_eval: INTERNAL with a message, nothing
 * appended; with the table restored the same tokens give the bits of an
 * untouched context. */
START_TEST(test_forward_parts_internal_error_api)
{
    const char *p = gd_synth(tmp, "tiny-b", 11, DANU_FORMAT_GGUF, DANU_TYPE_Q8_0);
    ck_assert_ptr_nonnull(p);
    danu_model *m = NULL;
    ck_assert_int_eq(danu_model_load(p, NULL, &m), DANU_OK);
    const int vocab = m->cfg.vocab;
    for (int threads = 1; threads <= 2; threads++) {
        danu_options *o;
        ck_assert_int_eq(danu_options_create(NULL, &o), DANU_OK);
        danu_options_set_int(o, DANU_OPT_N_THREADS, threads);
        danu_options_set_int(o, DANU_OPT_N_CTX, 64);
        danu_context *a = NULL, *b = NULL;
        ck_assert_int_eq(danu_context_create(m, o, &a), DANU_OK);
        ck_assert_int_eq(danu_context_create(m, o, &b), DANU_OK);
        danu_options_free(o);
        static const danu_token first[] = { 1, 450, 700, 12, 99 }, next[] = { 5, 6, 7, 8, 9, 10, 11, 12, 13 };
        ck_assert_int_eq(danu_context_eval(a, first, N(first), NULL), DANU_OK);
        ck_assert_int_eq(danu_context_eval(b, first, N(first), NULL), DANU_OK);

        const dn_kernels *good = m->kern;
        dn_kernels bad = *good;
        memset(bad.vec_dot, 0, sizeof bad.vec_dot);
        memset(bad.gemm, 0, sizeof bad.gemm);
        m->kern = &bad;
        for (int n = 1; n <= N(next); n += N(next) - 1) {
            ck_assert_int_eq(danu_context_eval(a, next, (size_t)n, NULL), DANU_ERR_INTERNAL);
            ck_assert_msg(strlen(danu_last_error()) > 0, "no message");
            ck_assert_uint_eq(danu_context_n_tokens(a), N(first));
        }
        m->kern = good;

        float *la = malloc(sizeof(float) * vocab * N(next)), *lb = malloc(sizeof(float) * vocab * N(next));
        ck_assert_int_eq(danu_context_eval(a, next, N(next), la), DANU_OK);
        ck_assert_int_eq(danu_context_eval(b, next, N(next), lb), DANU_OK);
        ck_assert_msg(!memcmp(la, lb, sizeof(float) * vocab * N(next)), "threads %d: the failed pass changed the cache",
                      threads);
        free(la);
        free(lb);
        danu_context_free(a);
        danu_context_free(b);
    }
    danu_model_free(m);
}
END_TEST

#if defined(__linux__)
#include <malloc.h>
/* AnonHugePages (kB) summed over the mappings of /proc/self/smaps that
 * overlap [p, p + n) (a madvise splits the mapping: the hint covers only
 * its whole 2 MiB units), -1 if none does. */
static long anon_huge_kb(const void *p, size_t n)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    const uintptr_t lo = (uintptr_t)p, hi = lo + n;
    char line[512];
    int inside = 0, found = 0;
    long sum = 0, kb;
    while (fgets(line, sizeof line, f)) {
        unsigned long a, b;
        const char *dash = strchr(line, '-'), *sp = strchr(line, ' ');
        if (dash && sp && dash < sp && sscanf(line, "%lx-%lx ", &a, &b) == 2) {
            inside = a < hi && b > lo;
            found |= inside;
        } else if (inside && sscanf(line, "AnonHugePages: %ld kB", &kb) == 1) {
            sum += kb;
        }
    }
    fclose(f);
    return found ? sum : -1;
}

/* The system's THP mode: 'a'lways, 'm'advise, 'n'ever, 0 unknown. */
static char thp_mode(void)
{
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    char buf[128] = { 0 };
    if (!f) return 0;
    if (!fgets(buf, sizeof buf, f)) buf[0] = 0;
    fclose(f);
    return strstr(buf, "[always]") ? 'a' : strstr(buf, "[madvise]") ? 'm' : strstr(buf, "[never]") ? 'n' : 0;
}
#endif

/* DANU_OPT_KV_HUGE_PAGES reaches the kernel: a Danube-shaped cache (4
 * layers, 8 KV heads of 80, 16384 positions: 42-168 MB per array, above
 * glibc's largest mmap threshold, so each array is fresh memory as a full-
 * size model's are) holds huge pages after one position is committed when
 * asked for them, and none when not (where the system gives them only on
 * request). The kernel's own accounting is the reference. */
START_TEST(test_forward_parts_kv_huge_pages)
{
#if defined(__linux__)
    const char mode = thp_mode();
    if (mode != 'a' && mode != 'm') {
        fprintf(stderr, "kv_huge_pages: transparent huge pages unavailable here (mode %c): not checked\n",
                mode ? mode : '?');
        return;
    }
    /* meson sets MALLOC_PERTURB_, and glibc then fills each block in
     * malloc, which makes every page resident on 4 KiB pages before the
     * hint (as any allocator that touches its blocks would): off here */
    mallopt(M_PERTURB, 0);
    float k[80], v[80];
    for (int i = 0; i < 80; i++) k[i] = v[i] = (float)i / 80;
    for (int huge = 0; huge < 2; huge++)
        for (int type = 0; type < 3; type++) {
            dn_kvcache kv;
            ck_assert_int_eq(dn_kv_init(&kv, dn_alloc_libc(), 4, 8, 80, 16384, 4, type, huge), DANU_OK);
            for (int l = 0; l < 4; l++)
                for (int h = 0; h < 8; h++) dn_kv_stage(&kv, dn_kernels_get(DANU_ISA_AUTO), l, 0, h, k, v);
            dn_kv_commit(&kv, 0, 1);
            /* the first 8 MB of each array (separate allocations: no other
             * array is counted) */
            const long kk = anon_huge_kb(kv.ring.k, 8u << 20), vk = anon_huge_kb(kv.ring.v, 8u << 20);
            ck_assert_msg(kk >= 0 && vk >= 0, "the ring's arrays are in no mapping of /proc/self/smaps");
            if (huge)
                ck_assert_msg(kk >= 2048 && vk >= 2048, "type %d: asked for huge pages, the ring holds %ld / %ld kB",
                              type, kk, vk);
            else if (mode == 'm')
                ck_assert_msg(kk == 0 && vk == 0, "type %d: no huge pages asked for, the ring holds %ld / %ld kB",
                              type, kk, vk);
            dn_kv_free(&kv);
        }
#endif
}
END_TEST

int main(void)
{
    tmp = tu_tmpdir("forward_parts");
    Suite *s = suite_create("forward_parts");
    TCase *tc = tcase_create("parts");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_forward_parts_rope_table);
    tcase_add_test(tc, test_forward_parts_rope_stage);
    tcase_add_test(tc, test_forward_parts_kv_huge_pages);
    tcase_add_test(tc, test_forward_parts_rows);
    tcase_add_test(tc, test_forward_parts_matmul_threads);
    tcase_add_test(tc, test_forward_parts_matmul_missing_kernel);
    tcase_add_test(tc, test_forward_parts_internal_error_api);
    suite_add_tcase(s, tc);
    int failed = tu_run(s);
    tu_rmtree(tmp);
    free(tmp);
    return failed ? 1 : 0;
}
