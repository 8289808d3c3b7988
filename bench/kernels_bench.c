/* kernels_bench.c - single-thread throughput of the matmul kernels.
 *
 *   kernels_bench [--shapes|--attention] [reference|scalar|avx2|avx2vnni|avx512|neon] [type ...]
 *
 * Per weight type: GFLOP/s (2*rows*cols*tokens / time, activation
 * preparation included) of 2560x2560 and 6912x2560 matrices times 512
 * tokens, and matvec (1 token) GB/s of weight bytes for 6912x2560, both
 * from cache-cold memory (rotating through copies totalling >= 256 MiB, as
 * a model's layers do) and hot (one matrix again and again, L2/L3).
 * Types with a repacked x16 form that the table has a gemm for also get a
 * row for it (q4_0x16 ...; bf16: bf16x16 and the fast bf16x16f of
 * DANU_OPT_FAST_BF16), and a first line measures the read bandwidth
 * ceiling of one thread (a plain vector sum over 512 MiB).
 * --shapes: instead, per type and each danube matrix shape (2560x2560,
 * 6912x2560, 2560x6912), cold matvec GB/s (decode) and GFLOP/s of 64
 * tokens (a short prompt).
 * --attention: instead, one decoded token's attention after 4096
 * positions as attention.c runs it for danube (24 layers x 8 KV heads, 4
 * query rows of head_dim 80 each), per cache type (f16, q8_0) and phase
 * (scores; softmax, or for Q8 the maxima and the fused weights; values),
 * ms a token: cold, every head's K/V at its own place (126-252 MB, from
 * DRAM), and hot, one head's again and again (L2). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include "kernels/kernels_internal.h"   /* DN_PAGE_AHEAD */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);   /* robust on a shared machine */
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng = 88172645463325252ull;
static float rnd(void)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 40) / 16777216.0 * 2.0 - 1.0);
}

static uint8_t *make_weights(int32_t type, int64_t rows, int64_t cols, uint64_t *rb);

/* x16 types: the base type's weights repacked group by group */
static uint8_t *make_x16(int32_t xt, int64_t rows, int64_t cols, uint64_t *rb)
{
    uint64_t brb;
    uint8_t *b = make_weights(dn_x16_base(xt), rows, cols, &brb);
    *rb = dn_type_row_bytes(xt, (uint64_t)cols);   /* q4_K: scales unpacked */
    uint8_t *w = malloc(*rb * rows);
    for (int64_t g = 0; g < rows / 16; g++) dn_x16_repack(xt, b + g * 16 * brb, brb, w + g * 16 * *rb, cols);
    free(b);
    return w;
}

/* rows x cols weights: 64 distinct quantized rows repeated (quantizing
 * millions of K-quant elements would dominate the run). */
static uint8_t *make_weights(int32_t type, int64_t rows, int64_t cols, uint64_t *rb)
{
    if (dn_x16_base(type) >= 0) return make_x16(type, rows, cols, rb);
    *rb = dn_type_row_bytes(type, (uint64_t)cols);
    uint8_t *w = malloc(*rb * rows);
    float *src = malloc(sizeof(float) * cols);
    for (int64_t r = 0; r < rows; r++) {
        if (r < 64) {
            for (int64_t c = 0; c < cols; c++) src[c] = rnd() * 0.05f;
            dn_quantize_row(type, src, w + r * *rb, cols);
        } else {
            memcpy(w + r * *rb, w + (r % 64) * *rb, *rb);
        }
    }
    free(src);
    return w;
}

static double bench_gemm(const dn_kernels *k, int32_t type, int64_t rows, int64_t cols, int64_t ntok)
{
    uint64_t rb;
    uint8_t *w = make_weights(type, rows, cols, &rb);
    float *X = malloc(sizeof(float) * ntok * cols), *Y = malloc(sizeof(float) * ntok * rows);
    for (int64_t i = 0; i < ntok * cols; i++) X[i] = rnd();
    void *xq = malloc(dn_act_row_bytes(k, type, cols) * ntok);
    dn_matrix W = { .data = w, .type = type, .rows = rows, .cols = cols, .row_bytes = rb };
    double best = 1e30, total = 0;
    /* best of 3, or of as many as fit 0.3 s for short runs (noisy host) */
    for (int rep = 0; rep < 3 || (total < 0.3 && rep < 100); rep++) {
        double t = now();
        dn_prepare_acts(k, type, X, ntok, cols, xq);
        dn_matmul_rows(k, &W, xq, ntok, Y, rows, 0, rows);
        t = now() - t;
        total += t;
        if (t < best) best = t;
        if (t > 2.0) break;   /* slow tables: one run is enough */
    }
    free(w); free(X); free(Y); free(xq);
    return 2.0 * rows * cols * ntok / best * 1e-9;
}

static void bench_matvec(const dn_kernels *k, int32_t type, int64_t rows, int64_t cols,
                         double *cold, double *hot)
{
    uint64_t rb;
    uint8_t *w0 = make_weights(type, rows, cols, &rb);
    const size_t bytes = rb * rows;
    int ncopy = (int)((256u << 20) / bytes) + 1;
    uint8_t **ws = malloc(sizeof *ws * ncopy);
    for (int i = 0; i < ncopy; i++) {
        ws[i] = malloc(bytes);
        memcpy(ws[i], w0, bytes);
    }
    float *x = malloc(sizeof(float) * cols), *y = malloc(sizeof(float) * rows);
    for (int64_t i = 0; i < cols; i++) x[i] = rnd();
    void *xq = malloc(dn_act_row_bytes(k, type, cols));
    dn_prepare_acts(k, type, x, 1, cols, xq);
    dn_matrix W = { .type = type, .rows = rows, .cols = cols, .row_bytes = rb };
    /* cold: each call streams a different copy from memory */
    int calls = 0;
    double t = now(), el;
    do {
        W.data = ws[calls % ncopy];
        dn_matmul_rows(k, &W, xq, 1, y, rows, 0, rows);
        calls++;
        el = now() - t;
    } while (el < 1.0 && (calls < 2 * ncopy || el < 0.3));
    *cold = (double)bytes * calls / el * 1e-9;
    W.data = ws[0];
    calls = 0;
    t = now();
    do {
        dn_matmul_rows(k, &W, xq, 1, y, rows, 0, rows);
        calls++;
        el = now() - t;
    } while (el < 0.5);
    *hot = (double)bytes * calls / el * 1e-9;
    for (int i = 0; i < ncopy; i++) free(ws[i]);
    free(ws); free(w0); free(x); free(y); free(xq);
}

/* Single-thread read bandwidth: sum of 512 MiB of 64-byte vectors (four
 * independent accumulators, the next 4 KB page fetched ahead as the
 * kernels do, DN_PAGE_AHEAD; words elsewhere), the ceiling for cold
 * matvec (intrinsic loads may alias the words). */
#if defined(__x86_64__)
__attribute__((target("avx512f"))) static double sum_avx512(const float *p, size_t n)
{
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < n; i += 64) {
        DN_PAGE_AHEAD(p + i, 256);   /* as the kernels fetch the next page */
        a0 = _mm512_add_ps(a0, _mm512_loadu_ps(p + i));
        a1 = _mm512_add_ps(a1, _mm512_loadu_ps(p + i + 16));
        a2 = _mm512_add_ps(a2, _mm512_loadu_ps(p + i + 32));
        a3 = _mm512_add_ps(a3, _mm512_loadu_ps(p + i + 48));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}
#endif

static double read_bandwidth(void)
{
    const size_t n = (512u << 20) / sizeof(uint64_t);
    uint64_t *p = malloc(n * sizeof *p);
    if (!p) return 0;
    for (size_t i = 0; i < n; i++) p[i] = i & 7;
    double best = 0;
    volatile double sink = 0;   /* keeps the sum alive */
    for (int rep = 0; rep < 3; rep++) {
        const double t = now();
        double s = 0;
#if defined(__x86_64__)
        if (__builtin_cpu_supports("avx512f")) s = sum_avx512((const float *)p, 2 * n);
        else
#endif
        {   /* integer words, four chains: adds never limit the stream */
            uint64_t a[4] = { 0, 0, 0, 0 };
            for (size_t i = 0; i < n; i += 4) {
                DN_PAGE_AHEAD(p + i, 32);
                for (int j = 0; j < 4; j++) a[j] += p[i + j];
            }
            s = (double)(a[0] + a[1] + a[2] + a[3]);
        }
        const double gbs = n * sizeof *p / (now() - t) * 1e-9;
        sink = sink + s;
        if (gbs > best) best = gbs;
    }
    free(p);
    return best;
}

static void bench_row(const dn_kernels *k, int32_t type, const char *name)
{
    const double g1 = bench_gemm(k, type, 2560, 2560, 512);
    const double g2 = bench_gemm(k, type, 6912, 2560, 512);
    double cold, hot;
    bench_matvec(k, type, 6912, 2560, &cold, &hot);
    printf("%-8s %14.1f %14.1f %15.1f %14.1f\n", name, g1, g2, cold, hot);
    fflush(stdout);
}

/* --attention. Phases of ~5 us: a monotonic clock read through the vDSO
 * (the thread CPU clock is a system call, ~0.5 us, which doubled them). */
enum { AT_HEADS = 192, AT_POS = 4096, AT_HD = 80, AT_NQ = 4 };

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void bench_attention(const dn_kernels *k, int type, const char *name)
{
    const size_t kb = dn_kv_tile_bytes(AT_HD, type) * (AT_POS / DN_KV_TILE);
    const size_t vb = dn_kv_v_offset(type, AT_HD, 0, DN_KV_TILE) * (AT_POS / DN_KV_TILE);
    const size_t ws = AT_POS + 64;
    uint8_t *K = malloc(kb * AT_HEADS), *V = malloc(vb * AT_HEADS), *w = malloc(ws * 2 * AT_NQ);
    float *ks = malloc(sizeof(float) * AT_POS), *vs = malloc(sizeof(float) * AT_POS);
    float *q = malloc(sizeof(float) * AT_NQ * AT_HD), *sc = malloc(sizeof(float) * AT_NQ * AT_POS);
    float *out = malloc(sizeof(float) * AT_NQ * AT_HD);
    int64_t *acc = malloc(sizeof(int64_t) * 2 * AT_NQ * AT_HD);
    if (!K || !V || !w || !ks || !vs || !q || !sc || !out || !acc) { fprintf(stderr, "out of memory\n"); exit(1); }
    if (type == DN_KV_Q8)
        for (size_t i = 0; i < kb * AT_HEADS; i++) K[i] = (uint8_t)(rnd() * 127 + 128);
    else
        for (size_t i = 0; i < kb * AT_HEADS / 2; i++) ((uint16_t *)K)[i] = dn_f32_to_fp16(rnd());
    if (type == DN_KV_Q8)
        for (size_t i = 0; i < vb * AT_HEADS; i++) V[i] = (uint8_t)(int8_t)(rnd() * 127);
    else
        for (size_t i = 0; i < vb * AT_HEADS / 2; i++) ((uint16_t *)V)[i] = dn_f32_to_fp16(rnd());
    for (int i = 0; i < AT_POS; i++) { ks[i] = 0.02f + rnd() * 0.01f; vs[i] = 0.02f + rnd() * 0.01f; }
    for (int i = 0; i < AT_NQ * AT_HD; i++) q[i] = rnd();
    for (int hot = 0; hot < 2; hot++) {
        double best[3] = { 1e9, 1e9, 1e9 };
        for (int rep = 0; rep < 5; rep++) {
            double t[3] = { 0, 0, 0 };
            for (int h = 0; h < AT_HEADS; h++) {
                const uint8_t *Kh = K + (hot ? 0 : (size_t)h * kb), *Vh = V + (hot ? 0 : (size_t)h * vb);
                double t0 = wall();
                k->att_scores(AT_HD, AT_NQ, q, AT_HD, Kh, 0, AT_POS, type, type == DN_KV_Q8 ? ks : NULL, sc, AT_POS);
                double t1 = wall();
                if (type == DN_KV_Q8) {
                    const float c = (float)DN_ATT_W_MAX / k->max(vs, AT_POS);
                    for (int r = 0; r < AT_NQ; r++) {
                        const float *row = sc + (size_t)r * AT_POS;
                        (void)k->att_q8_weights(row, k->max(row, AT_POS), vs, AT_POS, c, w + (size_t)(2 * r) * ws,
                                                w + (size_t)(2 * r + 1) * ws);
                    }
                } else {
                    for (int r = 0; r < AT_NQ; r++) k->softmax(sc + (size_t)r * AT_POS, AT_POS);
                }
                double t2 = wall();
                if (type == DN_KV_Q8) {
                    memset(acc, 0, sizeof(int64_t) * 2 * AT_NQ * AT_HD);
                    k->att_q8_values(AT_HD, AT_NQ, w, ws, Vh, 0, AT_POS, acc);
                } else {
                    memset(out, 0, sizeof(float) * AT_NQ * AT_HD);
                    k->att_values(AT_HD, AT_NQ, sc, AT_POS, Vh, AT_POS, type, out, AT_HD);
                }
                double t3 = wall();
                t[0] += t1 - t0; t[1] += t2 - t1; t[2] += t3 - t2;
            }
            for (int i = 0; i < 3; i++) if (t[i] < best[i]) best[i] = t[i];
        }
        const double tot = best[0] + best[1] + best[2], bytes = (double)AT_HEADS * (double)(kb + vb);
        printf("%-6s %-5s %8.2f %9.2f %8.2f %8.2f %9.1f\n", name, hot ? "hot" : "cold", best[0] * 1e3, best[1] * 1e3,
               best[2] * 1e3, tot * 1e3, bytes / tot * 1e-9);
        fflush(stdout);
    }
    free(K); free(V); free(w); free(ks); free(vs); free(q); free(sc); free(out); free(acc);
}

/* --shapes: the three matrix shapes of a danube layer */
static void shape_rows(const dn_kernels *k, int32_t type, const char *name)
{
    static const int64_t shapes[][2] = { { 2560, 2560 }, { 6912, 2560 }, { 2560, 6912 } };
    for (int i = 0; i < 3; i++) {
        double cold, hot;
        bench_matvec(k, type, shapes[i][0], shapes[i][1], &cold, &hot);
        const double g = bench_gemm(k, type, shapes[i][0], shapes[i][1], 64);
        printf("%-8s %5ldx%-5ld %12.1f %12.1f\n", name, (long)shapes[i][0], (long)shapes[i][1], cold, g);
        fflush(stdout);
    }
}

int main(int argc, char **argv)
{
    static const int32_t types[] = {
        DANU_TYPE_F32, DANU_TYPE_F16, DANU_TYPE_BF16, DANU_TYPE_Q8_0, DANU_TYPE_Q4_0,
        DANU_TYPE_Q4_1, DANU_TYPE_Q5_0, DANU_TYPE_Q5_1, DANU_TYPE_Q4_K, DANU_TYPE_Q5_K,
        DANU_TYPE_Q6_K,
    };
    const dn_kernels *k = dn_kernels_get(DANU_ISA_AUTO);
    int argi = 1;
    const int by_shape = argc > 1 && !strcmp(argv[1], "--shapes");
    const int attention = argc > 1 && !strcmp(argv[1], "--attention");
    if (by_shape || attention) argi++;
    if (argc > argi) {
        static const struct { const char *name; int isa; } isas[] = {
            { "reference", DN_ISA_REFERENCE }, { "scalar", DN_ISA_SCALAR }, { "avx2", DN_ISA_AVX2 },
            { "avx2vnni", DN_ISA_AVX2VNNI }, { "avx512", DN_ISA_AVX512 }, { "neon", DN_ISA_NEON }, { "neon_dot", DN_ISA_NEON_DOT },
            { "neon_i8mm", DN_ISA_NEON_I8MM },
        };
        for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++)
            if (!strcmp(argv[argi], isas[i].name)) {
                k = dn_kernels_for_isa(isas[i].isa);
                if (!k) { fprintf(stderr, "%s: not available here\n", argv[argi]); return 1; }
                argi++;
                break;
            }
    }
    printf("kernels: %s, fetch %s (one thread; DANU_FETCH=page|lines to choose)\n", k->name,
           k->fetch == DN_FETCH_LINES ? "lines" : "page");
    printf("read bandwidth ceiling (512 MiB sum): %.1f GB/s\n", read_bandwidth());
    if (attention) {
        printf("one token's attention after %d positions, %d heads x %d rows, ms (GB/s: K and V bytes / total)\n", AT_POS,
               AT_HEADS, AT_NQ);
        printf("%-6s %-5s %8s %9s %8s %8s %9s\n", "cache", "", "scores", "softmax", "values", "total", "GB/s");
        bench_attention(k, DN_KV_F16, "f16");
        bench_attention(k, DN_KV_Q8, "q8_0");
        return 0;
    }
    if (by_shape) {
        printf("%-8s %-11s %12s %12s\n", "type", "rows x cols", "matvec cold", "64 tokens");
        printf("%-8s %-11s %12s %12s\n", "", "", "GB/s", "GFLOP/s");
    } else {
        printf("%-8s %14s %14s %15s %14s\n", "type", "2560x2560x512", "6912x2560x512", "matvec cold", "matvec hot");
        printf("%-8s %14s %14s %15s %14s\n", "", "GFLOP/s", "GFLOP/s", "GB/s", "GB/s");
    }
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        const char *name = dn_type_get(types[i])->name;
        if (argi < argc) {
            int want = 0;
            for (int a = argi; a < argc; a++) want |= !strcmp(argv[a], name);
            if (!want) continue;
        }
        void (*row)(const dn_kernels *, int32_t, const char *) = by_shape ? shape_rows : bench_row;
        row(k, types[i], name);
        /* every x16 form of the type (bf16: exact and fast) */
        for (int32_t xt = 0; xt < DN_TYPE_COUNT; xt++)
            if (dn_x16_base(xt) == types[i] && k->gemm[xt]) row(k, xt, dn_type_get(xt)->name);
    }
    return 0;
}
