/* cmd_bench.c - `danu bench`: prompt processing (ppN) and generation (tgN)
 * speed like llama-bench, plus resident memory and the share of the memory
 * bandwidth ceiling that generation reaches. The ceiling is measured in the
 * same run, right next to each generation test, because on a shared host it
 * moves from minute to minute. */
#include <pthread.h>
#include <math.h>
#include <stdio.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"

#if defined(__x86_64__)
#include <immintrin.h>
/* One AVX2 reader: 4 independent accumulators keep the loads in flight. */
__attribute__((target("avx2"))) static uint64_t read_avx2(const uint8_t *p, size_t n)
{
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 128 <= n; i += 128) {
        a0 = _mm256_xor_si256(a0, _mm256_load_si256((const __m256i *)(const void *)(p + i)));
        a1 = _mm256_xor_si256(a1, _mm256_load_si256((const __m256i *)(const void *)(p + i + 32)));
        a2 = _mm256_xor_si256(a2, _mm256_load_si256((const __m256i *)(const void *)(p + i + 64)));
        a3 = _mm256_xor_si256(a3, _mm256_load_si256((const __m256i *)(const void *)(p + i + 96)));
    }
    a0 = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
    return (uint64_t)_mm256_extract_epi64(a0, 0) ^ (uint64_t)_mm256_extract_epi64(a0, 3);
}
#endif

static uint64_t read_plain(const uint8_t *p, size_t n)
{
    uint64_t a[8] = { 0 };
    for (size_t i = 0; i + 64 <= n; i += 64)
        for (int k = 0; k < 8; k++) { uint64_t v; memcpy(&v, p + i + 8 * k, 8); a[k] ^= v; }
    return a[0] ^ a[1] ^ a[2] ^ a[3] ^ a[4] ^ a[5] ^ a[6] ^ a[7];
}

typedef struct bw_job { const uint8_t *p; size_t n; int reps; uint64_t sink; } bw_job;

static void *bw_main(void *arg)
{
    bw_job *j = arg;
    for (int r = 0; r < j->reps; r++) {
#if defined(__x86_64__)
        if (__builtin_cpu_supports("avx2")) { j->sink ^= read_avx2(j->p, j->n); continue; }
#endif
        j->sink ^= read_plain(j->p, j->n);
    }
    return NULL;
}

/* Read bandwidth of `threads` readers over a buffer much larger than the caches. */
static double measure_bandwidth(uint8_t *buf, size_t size, int threads)
{
    pthread_t t[64];
    bw_job j[64];
    size_t part = size / (size_t)threads & ~(size_t)127;
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = cli_now();
        for (int i = 0; i < threads; i++) {
            j[i] = (bw_job){ buf + (size_t)i * part, part, 2, 0 };
            pthread_create(&t[i], NULL, bw_main, &j[i]);
        }
        for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
        double gbs = (double)part * threads * 2 / (cli_now() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    return best;
}

static void stats(const double *v, int n, double *mean, double *sd)
{
    double s = 0, q = 0;
    for (int i = 0; i < n; i++) s += v[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) q += (v[i] - *mean) * (v[i] - *mean);
    *sd = n > 1 ? sqrt(q / (n - 1)) : 0;
}

int cmd_bench(int argc, char **argv)
{
    const char *model = NULL, *threads_s = "1,2";
    int64_t pp = 512, tg = 128, reps = 3, depth = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int lf, bad = 0;
        if (cli_is_flag(a, "-h", "--help")) {
            printf("usage: danu bench -m MODEL [-p 512] [-n 128] [-d 0] [-t 1,2] [-r 3] [load options]\n"
                   "  ppN: tokens/s evaluating an N-token prompt as one batch; tgN: tokens/s generating N\n"
                   "  tokens one at a time; -d D runs both after D tokens already in the context (\"@ dD\",\n"
                   "  as llama-bench -d: attention over a long context). Also prints peak RSS and, for\n"
                   "  generation, the bytes read per token (weights + KV) times tokens/s against the memory\n"
                   "  read bandwidth measured in the same run.\n"
                   "  -p N, -n N, -d N   0..1048576;  -r N   repetitions, 1..64\n"
                   "  -t LIST            thread counts, each 1..64, comma-separated\n"
                   CLI_LOAD_HELP);
            return 0;
        } else if (cli_is_flag(a, "-m", "--model") && v) model = argv[++i];
        else if (cli_is_flag(a, "-p", NULL)) { bad = cli_parse_int(a, v, 0, 1 << 20, &pp); i++; }
        else if (cli_is_flag(a, "-n", NULL)) { bad = cli_parse_int(a, v, 0, 1 << 20, &tg); i++; }
        else if (cli_is_flag(a, "-d", "--depth")) { bad = cli_parse_int(a, v, 0, 1 << 20, &depth); i++; }
        else if (cli_is_flag(a, "-r", "--reps")) { bad = cli_parse_int(a, v, 1, 64, &reps); i++; }
        else if (cli_is_flag(a, "-t", "--threads")) { threads_s = v ? v : ""; i++; }
        else if (cli_is_flag(a, "-v", "--verbose")) continue;
        else if ((lf = cli_flag(argc, argv, &i, CLI_LOAD)) != 0) bad = lf < 0;
        else { cli_err("unexpected argument %s", a); return EXIT_USAGE; }
        if (bad) return EXIT_USAGE;
    }
    if (!model) { cli_err("need -m MODEL"); return EXIT_USAGE; }
    /* -t 1,2,4: each count 1..64 (the bandwidth probe runs one reader per thread) */
    int threads[16], nt = 0;
    for (const char *s = threads_s;;) {
        size_t len = strcspn(s, ",");
        char one[32];
        int64_t t;
        snprintf(one, sizeof one, "%.*s", (int)(len < 31 ? len : 31), s);
        if (nt == 16 || len > 30 || cli_parse_int("-t", one, 1, 64, &t)) {
            if (nt == 16) cli_err("-t takes at most 16 thread counts");
            return EXIT_USAGE;
        }
        threads[nt++] = (int)t;
        if (!s[len]) break;
        s += len + 1;
    }
    danu_options *o = cli_options(1);
    danu_model *m = cli_load(model, o);
    danu_options_free(o);
    if (!m) return EXIT_FAIL;
    int64_t vocab, wbytes, ft, layers, kvh, hd, window, isa;
    danu_model_get_int(m, DANU_INFO_VOCAB, &vocab);
    danu_model_get_int(m, DANU_INFO_WEIGHT_BYTES, &wbytes);
    danu_model_get_int(m, DANU_INFO_FILE_TYPE, &ft);
    danu_model_get_int(m, DANU_INFO_LAYERS, &layers);
    danu_model_get_int(m, DANU_INFO_KV_HEADS, &kvh);
    danu_model_get_int(m, DANU_INFO_HEAD_DIM, &hd);
    danu_model_get_int(m, DANU_INFO_SLIDING_WINDOW, &window);
    danu_model_get_int(m, DANU_INFO_ISA, &isa);
    /* bytes streamed per generated token: every matrix once (the embedding
     * table only contributes one row, so count it out when untied) */
    int64_t tied, hidden;
    danu_model_get_int(m, DANU_INFO_TIED_EMBEDDINGS, &tied);
    danu_model_get_int(m, DANU_INFO_HIDDEN, &hidden);
    double per_token = (double)wbytes;
    {
        /* subtract the embedding table's bytes: find it in the tensor list */
        int64_t n;
        danu_model_get_int(m, DANU_INFO_TENSOR_COUNT, &n);
        for (int64_t i = 0; i < n && !tied; i++) {
            const char *name;
            int32_t type, nd;
            int64_t dims[4];
            danu_model_tensor(m, i, &name, &type, &nd, dims);
            if (!strcmp(name, "token_embd.weight") || !strcmp(name, "model.embed_tokens.weight")) {
                static const double bits[64] = { [0] = 32, [1] = 16, [30] = 16, [2] = 4.5, [3] = 5, [6] = 5.5, [7] = 6,
                                                 [8] = 8.5, [12] = 4.5, [13] = 5.5, [14] = 6.5625 };
                per_token -= (double)dims[0] * (double)dims[1] * bits[type & 63] / 8;
            }
        }
    }
    static const char *isa_names[] = { "reference", "scalar", "avx2", "avx512", "neon" };
    /* the bandwidth probe's buffer is resident too: RSS figures subtract it */
    size_t bw_size = (size_t)1 << 30;
    /* on huge pages where the kernel allows them, as the repacked weights
     * are: the ceiling is the best this machine reads, not a TLB-bound one */
    uint8_t *bw_buf = aligned_alloc((size_t)2 << 20, bw_size);
#ifdef MADV_HUGEPAGE
    if (bw_buf) (void)madvise(bw_buf, bw_size, MADV_HUGEPAGE);
#endif
    if (bw_buf) memset(bw_buf, 1, bw_size);
    double probe_mb = bw_buf ? bw_size / 1e6 : 0;
    int64_t repacked = 0;
    danu_model_get_int(m, DANU_INFO_REPACKED_MATRICES, &repacked);
    printf("model: %s  (%.2f GiB of weights, %.3g GB read per generated token, kernels %s, %lld matrices repacked%s)\n",
           model, (double)wbytes / (1 << 30), per_token / 1e9, isa_names[isa >= 0 && isa <= 4 ? isa : 1],
           (long long)repacked, cli_opt_given(DANU_OPT_FAST_BF16, NULL) ? ", fast bf16" : "");
    printf("| %-7s | %-13s | %18s | %9s | %10s | %8s | %6s |\n", "threads", "test", "t/s", "RSS MB", "GB/s eff", "ceil GB/s", "ratio");
    printf("|---------|---------------|--------------------|-----------|------------|----------|--------|\n");
    const int np = pp > depth ? pp : depth;
    danu_token *prompt = malloc(sizeof(danu_token) * (size_t)(np > 0 ? np : 1));
    for (int i = 0; i < np; i++) prompt[i] = (danu_token)(1 + (i * 7919 + 17) % (vocab - 1));
    char at[32] = "";
    if (depth) snprintf(at, sizeof at, " @ d%lld", (long long)depth);
    int rc = 0;
    for (int ti = 0; ti < nt; ti++) {
        danu_options *co = cli_options(0);
        danu_context *c = NULL;
        danu_status s = co ? DANU_OK : DANU_ERR_NOMEM;
        if (!s) s = danu_options_set_int(co, DANU_OPT_N_THREADS, threads[ti]);
        if (!s) s = danu_options_set_int(co, DANU_OPT_N_CTX, depth + pp + tg + 8);
        if (!s) s = danu_options_set_float(co, DANU_OPT_TEMPERATURE, 0.0);
        if (!s) s = danu_options_set_int(co, DANU_OPT_IGNORE_EOS, 1);
        if (!s) s = danu_context_create(m, co, &c);
        danu_options_free(co);
        if (s) { rc = cli_fail("context", s); break; }
        double v[64];
        /* -d: fill the context once, keep its state, restore it before each run */
        void *state = NULL;
        size_t state_len = 0;
        if (depth > 0) {
            s = danu_context_eval(c, prompt, (size_t)depth, NULL);
            state_len = danu_context_state_size(c);
            state = s ? NULL : malloc(state_len);
            if (!s && !state) s = DANU_ERR_NOMEM;
            if (!s) s = danu_context_state_save(c, state, state_len, &state_len);
            if (s) { rc = cli_fail("depth", s); danu_context_free(c); break; }
        }
#define RESET() (depth > 0 ? danu_context_state_load(c, state, state_len) : danu_context_clear(c))
        if (pp > 0) {
            if (!depth) danu_context_eval(c, prompt, (size_t)(pp < 16 ? pp : 16), NULL);   /* warm-up: page in the weights */
            for (int r = 0; r < reps && r < 64; r++) {
                RESET();
                double t0 = cli_now();
                s = danu_context_eval(c, prompt, (size_t)pp, NULL);
                v[r] = pp / (cli_now() - t0);
                if (s) { rc = cli_fail("eval", s); break; }
            }
            double mean, sd;
            stats(v, reps, &mean, &sd);
            char name[48];
            snprintf(name, sizeof name, "pp%lld%s", (long long)pp, at);
            printf("| %7d | %-13s | %9.2f ± %6.2f | %9.0f | %10s | %8s | %6s |\n", threads[ti], name, mean, sd,
                   cli_current_rss() / 1e6 - probe_mb, "", "", "");
            fflush(stdout);
        }
        if (tg > 0 && !rc) {
            double ceil_sum = 0;
            for (int r = 0; r < reps && r < 64; r++) {
                if (bw_buf) ceil_sum += measure_bandwidth(bw_buf, bw_size, threads[ti]);
                RESET();
                danu_token bos = 1;
                if (!depth) danu_context_eval(c, &bos, 1, NULL);
                double t0 = cli_now();
                for (int i = 0; i < tg && !s; i++) {
                    danu_token t;
                    s = danu_context_sample(c, &t);
                    if (!s) s = danu_context_eval(c, &t, 1, NULL);
                }
                v[r] = tg / (cli_now() - t0);
                if (s) { rc = cli_fail("generate", s); break; }
            }
            double mean, sd, ceil = ceil_sum / reps;
            stats(v, reps, &mean, &sd);
            /* KV read per token (f16 K and V of the positions in the window) */
            const double ctx_mid = depth + tg / 2.0;
            double kv = 2.0 * layers * kvh * hd * 2 * (ctx_mid < (window ? window : 1e9) ? ctx_mid : window);
            double eff = mean * (per_token + kv) / 1e9;
            char name[48];
            snprintf(name, sizeof name, "tg%lld%s", (long long)tg, at);
            printf("| %7d | %-13s | %9.2f ± %6.2f | %9.0f | %10.1f | %8.1f | %5.0f%% |\n", threads[ti], name, mean, sd,
                   cli_current_rss() / 1e6 - probe_mb, eff, ceil, ceil > 0 ? 100 * eff / ceil : 0);
            fflush(stdout);
        }
#undef RESET
        free(state);
        danu_context_free(c);
    }
    free(prompt);
    free(bw_buf);
    danu_model_free(m);
    (void)ft; (void)hidden;
    return rc;
}
