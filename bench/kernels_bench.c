/* kernels_bench.c - single-thread throughput of the matmul kernels.
 *
 *   kernels_bench [reference|scalar|avx2|avx512|neon] [type ...]
 *
 * Per weight type: GFLOP/s (2*rows*cols*tokens / time, activation
 * preparation included) of 2560x2560 and 6912x2560 matrices times 512
 * tokens, and matvec (1 token) GB/s of weight bytes for 6912x2560, both
 * from cache-cold memory (rotating through copies totalling >= 256 MiB, as
 * a model's layers do) and hot (one matrix again and again, L2/L3). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "kernels/kernels.h"

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

/* rows x cols weights: 64 distinct quantized rows repeated (quantizing
 * millions of K-quant elements would dominate the run). */
static uint8_t *make_weights(int32_t type, int64_t rows, int64_t cols, uint64_t *rb)
{
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
    double best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t = now();
        dn_prepare_acts(k, type, X, ntok, cols, xq);
        dn_matmul_rows(k, &W, xq, ntok, Y, rows, 0, rows);
        t = now() - t;
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

int main(int argc, char **argv)
{
    static const int32_t types[] = {
        DANU_TYPE_F32, DANU_TYPE_F16, DANU_TYPE_BF16, DANU_TYPE_Q8_0, DANU_TYPE_Q4_0,
        DANU_TYPE_Q4_1, DANU_TYPE_Q5_0, DANU_TYPE_Q5_1, DANU_TYPE_Q4_K, DANU_TYPE_Q5_K,
        DANU_TYPE_Q6_K,
    };
    const dn_kernels *k = dn_kernels_get(DANU_ISA_AUTO);
    int argi = 1;
    if (argc > 1) {
        static const struct { const char *name; int isa; } isas[] = {
            { "reference", DN_ISA_REFERENCE }, { "scalar", DN_ISA_SCALAR }, { "avx2", DN_ISA_AVX2 },
            { "avx512", DN_ISA_AVX512 }, { "neon", DN_ISA_NEON }, { "neon_dot", DN_ISA_NEON_DOT },
        };
        for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++)
            if (!strcmp(argv[1], isas[i].name)) {
                k = dn_kernels_for_isa(isas[i].isa);
                argi = 2;
                if (!k) { fprintf(stderr, "%s: not available here\n", argv[1]); return 1; }
            }
    }
    printf("kernels: %s (one thread)\n", k->name);
    printf("%-6s %14s %14s %15s %14s\n", "type", "2560x2560x512", "6912x2560x512", "matvec cold", "matvec hot");
    printf("%-6s %14s %14s %15s %14s\n", "", "GFLOP/s", "GFLOP/s", "GB/s", "GB/s");
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        const char *name = dn_type_get(types[i])->name;
        if (argi < argc) {
            int want = 0;
            for (int a = argi; a < argc; a++) want |= !strcmp(argv[a], name);
            if (!want) continue;
        }
        const double g1 = bench_gemm(k, types[i], 2560, 2560, 512);
        const double g2 = bench_gemm(k, types[i], 6912, 2560, 512);
        double cold, hot;
        bench_matvec(k, types[i], 6912, 2560, &cold, &hot);
        printf("%-6s %14.1f %14.1f %15.1f %14.1f\n", name, g1, g2, cold, hot);
        fflush(stdout);
    }
    return 0;
}
