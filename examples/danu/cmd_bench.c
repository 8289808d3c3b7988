/* cmd_bench.c - `danu bench`: prompt processing (ppN) and generation (tgN)
 * speed like llama-bench, plus resident memory and the share of the memory
 * bandwidth ceiling that generation reaches. The ceiling is measured in the
 * same run, right next to each generation test, because on a shared host it
 * moves from minute to minute. On a busy machine (issue 16): --busy N
 * spinning threads of its own, --contexts N contexts measuring at once on
 * one model (the shared pool, or --pool own), and --slice-us U the wall
 * time of every call of sliced work. */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "common/os.h"
#include "common/os_thread.h"
#include "common/os_cpu.h"

#if defined(__x86_64__)
#include <immintrin.h>
/* One AVX2 reader: 4 independent accumulators keep the loads in flight,
 * and the next 4 KB page's first line is fetched a page ahead: the
 * hardware prefetcher stops at page boundaries, and with the fetch this
 * loop reads ~1.2x faster on Zen 5 (the kernels do the same, so the
 * ceiling must too). */
__attribute__((target("avx2"))) static uint64_t read_avx2(const uint8_t *p, size_t n)
{
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 128 <= n; i += 128) {
        if (!(i & 4095)) __builtin_prefetch(p + i + 4096);
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
    for (size_t i = 0; i + 64 <= n; i += 64) {
        if (!(i & 4095)) __builtin_prefetch(p + i + 4096);
        for (int k = 0; k < 8; k++) { uint64_t v; memcpy(&v, p + i + 8 * k, 8); a[k] ^= v; }
    }
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
    dn_thread t[64];
    bw_job j[64];
    size_t part = size / (size_t)threads & ~(size_t)127;
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = cli_now();
        for (int i = 0; i < threads; i++) {
            j[i] = (bw_job){ buf + (size_t)i * part, part, 2, 0 };
            dn_thread_create(&t[i], bw_main, &j[i]);
        }
        for (int i = 0; i < threads; i++) dn_thread_join(&t[i]);
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

/* ---- --busy N: spinning threads of this program, as a game's own ---- */

static atomic_int busy_stop;

static void *busy_main(void *arg)
{
    (void)arg;
    volatile uint64_t spins = 0;   /* pure CPU: no memory traffic beyond one line */
    while (!atomic_load_explicit(&busy_stop, memory_order_relaxed)) spins++;
    return NULL;
}

/* ---- --slice-us U: the wall time of every slice call, in ms ---- */

typedef struct timings { double *v; size_t n, cap; } timings;

static int timings_add(timings *t, double ms)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 256;
        double *v = realloc(t->v, cap * sizeof *v);
        if (!v) return -1;
        t->v = v;
        t->cap = cap;
    }
    t->v[t->n++] = ms;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v. */
static double pct(const double *v, size_t n, double q)
{
    size_t k = (size_t)ceil(q * (double)n);
    return n ? v[k ? k - 1 : 0] : 0;
}

/* ---- one application thread per context (--contexts N) ---- */

enum { PHASE_QUIT = -1, PHASE_PP = 0, PHASE_TG = 1 };

typedef struct bench_run bench_run;
typedef struct bench_ctx {
    danu_context *c;
    void *state;          /* -d: the filled context, restored before each run */
    size_t state_len;
    double v[64];         /* tokens/s of each repetition of the phase */
    timings slices;       /* --slice-us: per-call ms of the phase */
    danu_status s;        /* first error, and what failed */
    const char *what;
    dn_thread th;
    bench_run *run;
} bench_ctx;

struct bench_run {
    dn_barrier start, end;
    int phase, rep;
    int64_t pp, tg, depth, slice_us;
    const danu_token *prompt;
};

static danu_status work_all(bench_ctx *b, int64_t us)
{
    for (;;) {
        double t0 = cli_now();
        danu_status s = danu_context_work(b->c, us);
        if (timings_add(&b->slices, (cli_now() - t0) * 1e3)) return DANU_ERR_NOMEM;
        if (s != DANU_IN_PROGRESS) return s;
    }
}

/* One repetition of a phase on one context. */
static void run_rep(bench_ctx *b, int phase, int rep)
{
    const bench_run *R = b->run;
    danu_context *c = b->c;
    danu_status s = R->depth > 0 ? danu_context_state_load(c, b->state, b->state_len) : danu_context_clear(c);
    if (s) { b->s = s; b->what = "reset"; return; }
    if (phase == PHASE_PP) {
        double t0 = cli_now();
        if (R->slice_us < 0) s = danu_context_eval(c, R->prompt, (size_t)R->pp, NULL);
        else {
            s = danu_context_eval_begin(c, R->prompt, (size_t)R->pp);
            if (!s) s = work_all(b, R->slice_us);
        }
        b->v[rep] = (double)R->pp / (cli_now() - t0);
        if (s) { b->s = s; b->what = "eval"; }
        return;
    }
    danu_token bos = 1;
    if (!R->depth && (s = danu_context_eval(c, &bos, 1, NULL)) != DANU_OK) { b->s = s; b->what = "eval"; return; }
    double t0 = cli_now();
    int64_t made = 0;
    for (int32_t why = -1; made < R->tg && !s && why < 0; made++) {
        danu_token t;
        if (R->slice_us < 0) {
            s = danu_context_sample(c, &t);
            if (!s) s = danu_context_eval(c, &t, 1, NULL);
            continue;
        }
        char text[256];
        size_t len;
        do {
            double t1 = cli_now();
            s = danu_context_step_sliced(c, R->slice_us, &t, text, sizeof text, &len, &why);
            if (timings_add(&b->slices, (cli_now() - t1) * 1e3)) s = DANU_ERR_NOMEM;
        } while (s == DANU_IN_PROGRESS);
    }
    b->v[rep] = (double)made / (cli_now() - t0);
    if (R->slice_us >= 0 && !s) {
        char rest[2048];
        size_t len;
        s = danu_context_step_finish(c, rest, sizeof rest, &len);
    }
    if (s) { b->s = s; b->what = "generate"; }
}

static void *ctx_main(void *arg)
{
    bench_ctx *b = arg;
    bench_run *R = b->run;
    for (;;) {
        dn_barrier_wait(&R->start);
        if (R->phase == PHASE_QUIT) return NULL;
        if (!b->s) run_rep(b, R->phase, R->rep);
        dn_barrier_wait(&R->end);
    }
}

/* One table row; slices (NULL: none) adds the slice columns. */
static void print_row(const char *thr, const char *name, double mean, double sd, double rss_mb, const char *bw,
                      const timings *slices)
{
    printf("| %7s | %-13s | %9.2f ± %6.2f | %9.0f | %s |", thr, name, mean, sd, rss_mb, bw);
    if (slices) {
        qsort(slices->v, slices->n, sizeof *slices->v, cmp_double);
        const double *v = slices->v;
        size_t n = slices->n;
        printf(" %6zu | %6.3f | %6.3f | %6.3f | %6.3f |", n, pct(v, n, 0.5), pct(v, n, 0.9), pct(v, n, 0.99),
               n ? v[n - 1] : 0.0);
    }
    printf("\n");
}

/* The rows of a phase: one per context and their sum when there are several. */
static void print_phase(bench_ctx *bc, int n_ctx, int threads, int reps, const char *test, double rss_mb,
                        const char *bw_sum, const char *bw_blank, int slicing)
{
    double sums[64], mean, sd;
    char thr[32], name[64];
    timings all = { 0 };
    for (int r = 0; r < reps; r++) {
        sums[r] = 0;
        for (int k = 0; k < n_ctx; k++) sums[r] += bc[k].v[r];
    }
    if (n_ctx == 1) {
        stats(bc[0].v, reps, &mean, &sd);
        snprintf(thr, sizeof thr, "%d", threads);
        print_row(thr, test, mean, sd, rss_mb, bw_sum, slicing ? &bc[0].slices : NULL);
        return;
    }
    for (int k = 0; k < n_ctx; k++) {
        stats(bc[k].v, reps, &mean, &sd);
        snprintf(thr, sizeof thr, "%d", threads);
        snprintf(name, sizeof name, "%s ctx%d", test, k);
        print_row(thr, name, mean, sd, rss_mb, bw_blank, slicing ? &bc[k].slices : NULL);
        for (size_t i = 0; slicing && i < bc[k].slices.n; i++) timings_add(&all, bc[k].slices.v[i]);
    }
    stats(sums, reps, &mean, &sd);
    snprintf(thr, sizeof thr, "%dx%d", n_ctx, threads);
    snprintf(name, sizeof name, "%s sum", test);
    print_row(thr, name, mean, sd, rss_mb, bw_sum, slicing ? &all : NULL);
    free(all.v);
}

/* ---- --seqs S1,S2,...: many sequences in one batch (issue 17) ---- */

/* As llama.cpp's llama-batched-bench with a shared prompt: one context
 * evaluates the -p prompt (after -d tokens of depth, restored untimed), S-1
 * forks copy it, then all S generate -n tokens each through danu_batch_step,
 * one forward pass per token of every sequence. */
typedef struct seqs_cfg {
    danu_model *m;
    const int *threads;
    int nt;
    const int64_t *seqs;
    int ns;
    int64_t pp, tg, depth, reps;
    int own_pool;
    const danu_token *prompt;
} seqs_cfg;

typedef struct seqs_rep { double t_pp, t_fork, t_tg; int64_t made; } seqs_rep;

/* One repetition with S sequences: c0 reset, prompt, forks, generation. */
static int seqs_once(const seqs_cfg *C, danu_context *c0, const void *state, size_t state_len, danu_batch *b,
                     int S, danu_context **ctxs, danu_batch_item *items, char (*text)[256], seqs_rep *out,
                     double *rss_mb)
{
    int rc = 0, forked = 0;
    danu_status s = state ? danu_context_state_load(c0, state, state_len) : danu_context_clear(c0);
    if (s) return cli_fail("reset", s);
    double t0 = cli_now();
    if (C->pp > 0) s = danu_context_eval(c0, C->prompt, (size_t)C->pp, NULL);
    double t1 = cli_now();
    danu_token bos = 1;
    if (!s && C->pp == 0 && !state) s = danu_context_eval(c0, &bos, 1, NULL);   /* logits to sample from */
    if (s) return cli_fail("eval", s);
    ctxs[0] = c0;
    double t2 = cli_now();
    for (forked = 1; forked < S && !s; forked++) s = danu_context_fork(c0, &ctxs[forked]);
    double t3 = cli_now();
    if (s) { rc = cli_fail("fork", s); forked--; }
    int64_t made = 0;
    double t4 = cli_now();
    for (int64_t step = 0; step < C->tg && !rc; step++) {
        for (int k = 0; k < S; k++)
            items[k] = (danu_batch_item){ .struct_size = sizeof(danu_batch_item), .ctx = ctxs[k], .text = text[k],
                                          .cap = sizeof text[k] };
        s = danu_batch_step(b, items, (size_t)S);
        if (s) { rc = cli_fail("batch step", s); break; }
        for (int k = 0; k < S && !rc; k++) {
            if (items[k].status == DANU_OK && items[k].id >= 0) made++;
            else if (items[k].status != DANU_IN_PROGRESS) {
                char what[64];
                snprintf(what, sizeof what, "batch step (sequence %d)", k);
                rc = cli_fail(what, items[k].status == DANU_OK ? DANU_ERR_INTERNAL : items[k].status);
            }
        }
    }
    double t5 = cli_now();
    double rss = cli_current_rss() / 1e6;   /* every sequence's cache still held */
    if (rss > *rss_mb) *rss_mb = rss;
    for (int k = 1; k < forked; k++) danu_context_free(ctxs[k]);
    *out = (seqs_rep){ t1 - t0, t3 - t2, t5 - t4, made };
    return rc;
}

static int bench_seqs(const seqs_cfg *C)
{
    int max_s = 1, rc = 0;
    for (int i = 0; i < C->ns; i++) if (C->seqs[i] > max_s) max_s = (int)C->seqs[i];
    /* room for depth + prompt + generation (+ BOS), rounded up: the caches stay small */
    int64_t n_ctx = (C->depth + C->pp + C->tg + 1 + 63) / 64 * 64;
    danu_context **ctxs = calloc((size_t)max_s, sizeof *ctxs);
    danu_batch_item *items = calloc((size_t)max_s, sizeof *items);
    char (*text)[256] = calloc((size_t)max_s, sizeof *text);
    seqs_rep *reps = calloc((size_t)C->reps, sizeof *reps);
    if (!ctxs || !items || !text || !reps) rc = cli_fail("bench", DANU_ERR_NOMEM);
    char at[32] = "";
    if (C->depth) snprintf(at, sizeof at, " @ d%lld", (long long)C->depth);
    if (!rc) {
        printf("seqs: one context evaluates the %lld-token prompt (PP)%s, S-1 forks copy it (danu_context_fork), then "
               "the S sequences generate %lld tokens each together (danu_batch_step, EOS ignored); n_ctx %lld, "
               "%lld repetition%s\n", (long long)C->pp, C->depth ? " after the depth (restored, untimed)" : "",
               (long long)C->tg, (long long)n_ctx, (long long)C->reps, C->reps == 1 ? "" : "s");
        printf("  N_KV = PP + S*TG (as llama-batched-bench with a shared prompt); T = T_PP + T_TG (fork separate); "
               "S_TG = S*TG / T_TG, mean ± sd over repetitions; gen = tokens the batch steps returned; "
               "xS1 = S_TG / S_TG of S=1; xPP = S_TG / S_PP\n");
        printf("| %-7s | %6s | %5s | %4s | %6s | %8s | %9s | %8s | %8s | %18s | %8s | %9s | %6s | %8s | %8s | %8s | "
               "%6s | %5s |\n", "threads", "PP", "TG", "S", "N_KV", "T_PP s", "S_PP t/s", "fork ms", "T_TG s",
               "S_TG t/s", "T s", "S t/s", "gen", "RSS MB", "ctx MB", "batch MB", "xS1", "xPP");
        printf("|---------|--------|-------|------|--------|----------|-----------|----------|----------|"
               "--------------------|----------|-----------|--------|----------|----------|----------|--------|"
               "-------|\n");
        fflush(stdout);
    }
    for (int ti = 0; ti < C->nt && !rc; ti++) {
        danu_options *co = cli_options(0);
        danu_pool *pool = NULL;
        danu_context *c0 = NULL;
        danu_batch *b = NULL;
        void *state = NULL;
        size_t state_len = 0;
        danu_status s = co && !cli_apply(co, CLI_KV) ? DANU_OK : DANU_ERR_INVALID_ARG;
        if (!s) s = danu_options_set_int(co, DANU_OPT_N_THREADS, C->threads[ti]);
        if (!s && C->own_pool) s = danu_pool_create(co, &pool);
        if (!s && C->own_pool) s = danu_options_set_pool(co, pool);
        if (!s) s = danu_batch_create(C->m, max_s, co, &b);
        if (s) rc = cli_fail("batch", s);
        if (!s) s = danu_options_set_int(co, DANU_OPT_N_CTX, n_ctx);
        if (!s) s = danu_options_set_float(co, DANU_OPT_TEMPERATURE, 0.0);
        if (!s) s = danu_options_set_int(co, DANU_OPT_IGNORE_EOS, 1);
        if (!s) s = danu_context_create(C->m, co, &c0);
        danu_pool_free(pool);   /* the batch and the contexts hold their own references */
        danu_options_free(co);
        if (s && !rc) rc = cli_fail("context", s);
        /* -d: fill the context once, keep its state, restore it before each run */
        if (!rc && C->depth > 0) {
            s = danu_context_eval(c0, C->prompt, (size_t)C->depth, NULL);
            state_len = s ? 0 : danu_context_state_size(c0);
            state = s ? NULL : malloc(state_len);
            if (!s && !state) s = DANU_ERR_NOMEM;
            if (!s) s = danu_context_state_save(c0, state, state_len, &state_len);
            if (s) rc = cli_fail("depth", s);
        }
        /* warm-up: page in the weights */
        if (!rc && C->pp > 0 && !C->depth) danu_context_eval(c0, C->prompt, (size_t)(C->pp < 16 ? C->pp : 16), NULL);
        double tg1 = 0;   /* S_TG of S=1 with these threads, once measured */
        for (int si = 0; si < C->ns && !rc; si++) {
            int S = (int)C->seqs[si];
            double rss_mb = 0, tg_rate[64], sum_pp = 0, sum_fork = 0, sum_tg = 0, mean, sd;
            int64_t made = -1;
            for (int r = 0; r < C->reps && !rc; r++) {
                rc = seqs_once(C, c0, state, state_len, b, S, ctxs, items, text, &reps[r], &rss_mb);
                sum_pp += reps[r].t_pp;
                sum_fork += reps[r].t_fork;
                sum_tg += reps[r].t_tg;
                tg_rate[r] = reps[r].t_tg > 0 ? (double)reps[r].made / reps[r].t_tg : 0;
                if (made < 0 || reps[r].made < made) made = reps[r].made;   /* the fewest of any repetition */
            }
            if (rc) break;
            double n = (double)C->reps, t_pp = sum_pp / n, t_fork = sum_fork / n, t_tg = sum_tg / n;
            stats(tg_rate, (int)C->reps, &mean, &sd);
            double s_pp = t_pp > 0 && C->pp > 0 ? (double)C->pp / t_pp : 0;
            int64_t n_kv = C->pp + (int64_t)S * C->tg;
            double t_all = t_pp + t_tg;
            size_t ctx_bytes = danu_context_memory_size(c0) * (size_t)S;   /* the forks are c0's size */
            if (S == 1) tg1 = mean;
            char x1[16] = "-", xpp[16] = "-", pps[32];
            if (tg1 > 0 && C->tg > 0) snprintf(x1, sizeof x1, "%.3g", mean / tg1);
            if (s_pp > 0 && C->tg > 0) snprintf(xpp, sizeof xpp, "%.3g", mean / s_pp);
            snprintf(pps, sizeof pps, "%lld%s", (long long)C->pp, at);
            printf("| %7d | %6s | %5lld | %4d | %6lld | %8.3f | %9.2f | %8.2f | %8.3f | %9.2f ± %6.2f | %8.3f | %9.2f | "
                   "%6lld | %8.0f | %8.1f | %8.1f | %6s | %5s |\n", C->threads[ti], pps, (long long)C->tg, S,
                   (long long)n_kv, t_pp, s_pp, t_fork * 1e3, t_tg, mean, sd, t_all,
                   t_all > 0 ? (double)n_kv / t_all : 0, (long long)made, rss_mb, ctx_bytes / 1e6,
                   danu_batch_memory_size(b) / 1e6, x1, xpp);
            fflush(stdout);
        }
        free(state);
        danu_context_free(c0);
        danu_batch_free(b);
    }
    free(ctxs);
    free(items);
    free(text);
    free(reps);
    return rc;
}

/* The KV cache type the contexts get (--kv-type; DANU_KV_F16 when not given). */
static int bench_kv_type(void)
{
    double v = DANU_KV_F16;
    cli_opt_given(DANU_OPT_KV_TYPE, &v);
    return v >= DANU_KV_F16 && v <= DANU_KV_Q8_0 ? (int)v : DANU_KV_F16;
}

/* The CPU the figures come from, as cpuid names it (x86-64): the brand
 * string a VM may shorten, and family/model, which tell the core (AMD
 * family 25: Zen 3/4, 26: Zen 5; this README's figures once named the
 * wrong one). Elsewhere only the core count. */
static void print_cpu(void)
{
#ifdef DN_HAVE_CPUID
    uint32_t r[4];
    char brand[49] = "";
    dn_cpuid(0x80000000u, 0, r);
    if (r[0] >= 0x80000004u) {
        for (uint32_t i = 0; i < 3; i++) {
            dn_cpuid(0x80000002u + i, 0, r);
            memcpy(brand + 16 * i, r, 16);
        }
        brand[48] = 0;
        for (int i = 47; i >= 0 && (brand[i] == ' ' || brand[i] == 0); i--) brand[i] = 0;
    }
    const char *b = brand;
    while (*b == ' ') b++;
    dn_cpuid(1, 0, r);
    const uint32_t base = (r[0] >> 8) & 0xF, fam = base == 0xF ? base + ((r[0] >> 20) & 0xFF) : base;
    const uint32_t model = (r[0] >> 4 & 0xF) | (base == 0xF || base == 6 ? (r[0] >> 16 & 0xF) << 4 : 0);
    printf("cpu: %s (family %u model %u), %d cores for this process\n", *b ? b : "unnamed", fam, model, dn_cpu_count());
#else
    printf("cpu: %d cores for this process\n", dn_cpu_count());
#endif
}

int cmd_bench(int argc, char **argv)
{
    const char *model = NULL, *threads_s = "1,2";
    int64_t pp = 512, tg = 128, reps = 3, depth = 0, busy = 0, n_ctx = 1, slice_us = -1;
    int own_pool = 0, n_seqs = 0;
    int64_t seqs[16];
    cli_cons cons;
    memset(&cons, 0, sizeof cons);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int lf, bad = 0;
        if (cli_is_flag(a, "-h", "--help")) {
            printf("usage: danu bench -m MODEL [-p 512] [-n 128] [-d 0] [-t 1,2] [-r 3] [--busy N]\n"
                   "                  [--contexts N] [--pool shared|own] [--slice-us U] [--seqs 1,2,4,8]\n"
                   "                  [--kv-type f16|f32|q8_0] [--kv-huge-pages on|off] [load options]\n"
                   "       danu bench -m MODEL --grammar F | --json-schema F | --choice A ... | --choice-file F\n"
                   "                  [-n 128] [-t 1,2] [-r 3]\n"
                   "  ppN: tokens/s evaluating an N-token prompt as one batch; tgN: tokens/s generating N\n"
                   "  tokens one at a time; -d D runs both after D tokens already in the context (\"@ dD\",\n"
                   "  as llama-bench -d: attention over a long context). Also prints peak RSS and, for\n"
                   "  generation, the bytes read per token (weights + KV) times tokens/s against the memory\n"
                   "  read bandwidth measured in the same run, and the CPU (cpuid brand, family, model).\n"
                   "  -p N, -n N, -d N   0..1048576;  -r N   repetitions, 1..64\n"
                   "  -t LIST            thread counts, each 1..64, comma-separated\n"
                   "  --busy N           N threads of this program spin (pure CPU) from the first\n"
                   "                     measurement to the last, as a game's threads would; 0..256\n"
                   "  --contexts N       N contexts on the model, each driven by its own thread, all\n"
                   "                     measuring at once: a row per context and their sum; 1..64\n"
                   "  --pool shared|own  shared: the model's one pool (the default); own: a pool per\n"
                   "                     context (danu_pool_create with that -t)\n"
                   "  --slice-us U       prompts through danu_context_eval_begin + danu_context_work and\n"
                   "                     generation through danu_context_step_sliced, U microseconds per\n"
                   "                     call; adds the calls and the p50/p90/p99/max of their wall time\n"
                   "                     in ms; 0..60000000 (0: one unit, a layer, per call)\n"
                   "  --seqs LIST        as llama-batched-bench: for each S (1..4096, comma-separated) one\n"
                   "                     context evaluates the -p prompt (after -d), S-1 forks copy it\n"
                   "                     (danu_context_fork, timed apart), then the S sequences generate -n\n"
                   "                     tokens each in one batch (danu_batch_step, EOS ignored). Columns:\n"
                   "                     PP, TG, S, N_KV = PP + S*TG, T_PP, S_PP, fork ms, T_TG, S_TG (all\n"
                   "                     S*TG tokens / T_TG), T = T_PP + T_TG, S = N_KV / T, gen (tokens\n"
                   "                     returned), RSS, the contexts' and the batch's memory, and S_TG\n"
                   "                     against S=1's (xS1) and against S_PP (xPP). Not with --contexts\n"
                   "                     or --slice-us\n"
                   "  --grammar F, --grammar-file F [--grammar-root NAME], --json-schema F\n"
                   "  [--schema-spaces], --choice TEXT (repeatable), --choice-file F (a line each)\n"
                   "                     the cost of a constraint instead of the table above: its compile\n"
                   "                     time (median of 7), the time of each token's mask (mean, p50,\n"
                   "                     p99, max in us: -r generations of up to -n tokens with the\n"
                   "                     constraint, replayed through one matcher of the library, reset\n"
                   "                     between them, on one thread), and tokens/s of the same\n"
                   "                     generations with and without it (default sampler, the same seeds,\n"
                   "                     as many tokens) per -t thread count, with their ratio\n"
                   CLI_LOAD_HELP);
            return 0;
        } else if (cli_is_flag(a, "-m", "--model") && v) model = argv[++i];
        else if (cli_is_flag(a, "-p", NULL)) { bad = cli_parse_int(a, v, 0, 1 << 20, &pp); i++; }
        else if (cli_is_flag(a, "-n", NULL)) { bad = cli_parse_int(a, v, 0, 1 << 20, &tg); i++; }
        else if (cli_is_flag(a, "-d", "--depth")) { bad = cli_parse_int(a, v, 0, 1 << 20, &depth); i++; }
        else if (cli_is_flag(a, "-r", "--reps")) { bad = cli_parse_int(a, v, 1, 64, &reps); i++; }
        else if (cli_is_flag(a, "-t", "--threads")) { threads_s = v ? v : ""; i++; }
        else if (cli_is_flag(a, NULL, "--busy")) { bad = cli_parse_int(a, v, 0, 256, &busy); i++; }
        else if (cli_is_flag(a, NULL, "--contexts")) { bad = cli_parse_int(a, v, 1, 64, &n_ctx); i++; }
        else if (cli_is_flag(a, NULL, "--slice-us")) { bad = cli_parse_int(a, v, 0, 60e6, &slice_us); i++; }
        else if (cli_is_flag(a, NULL, "--seqs")) {
            n_seqs = cli_parse_int_list(a, v, 1, 4096, seqs, 16);
            bad = n_seqs < 0;
            i++;
        }
        else if (cli_is_flag(a, NULL, "--pool")) {
            own_pool = v && !strcmp(v, "own");
            if (!v || (!own_pool && strcmp(v, "shared"))) {
                cli_err("--pool takes one of: shared own, not \"%s\"", v ? v : "");
                return EXIT_USAGE;
            }
            i++;
        }
        else if (cli_is_flag(a, "-v", "--verbose")) continue;
        else if ((lf = cli_cons_flag(argc, argv, &i, &cons)) != 0) bad = lf < 0;
        else if ((lf = cli_flag(argc, argv, &i, CLI_LOAD | CLI_KV)) != 0) bad = lf < 0;
        else { cli_err("unexpected argument %s", a); return EXIT_USAGE; }
        if (bad) return EXIT_USAGE;
    }
    if (!model) { cli_err("need -m MODEL"); return EXIT_USAGE; }
    if (cli_cons_check(&cons)) return EXIT_USAGE;
    if (cli_cons_given(&cons) && (n_seqs > 0 || n_ctx > 1 || slice_us >= 0 || busy > 0 || depth > 0)) {
        cli_err("a constraint (--grammar, --json-schema, --choice) cannot be combined with %s",
                n_seqs > 0 ? "--seqs" : n_ctx > 1 ? "--contexts" : slice_us >= 0 ? "--slice-us" : busy ? "--busy"
                                                                                                   : "-d");
        return EXIT_USAGE;
    }
    if (n_seqs > 0 && (n_ctx > 1 || slice_us >= 0)) {
        cli_err("--seqs cannot be combined with %s", n_ctx > 1 ? "--contexts" : "--slice-us");
        return EXIT_USAGE;
    }
    /* -t 1,2,4: each count 1..64 (the bandwidth probe runs one reader per thread) */
    int threads[16], nt = 0;
    {
        int64_t t[16];
        if ((nt = cli_parse_int_list("-t", threads_s, 1, 64, t, 16)) < 0) return EXIT_USAGE;
        for (int k = 0; k < nt; k++) threads[k] = (int)t[k];
    }
    danu_options *o = cli_options(1);
    danu_model *m = cli_load(model, o);
    danu_options_free(o);
    if (!m) return EXIT_FAIL;
    if (cli_cons_given(&cons)) {
        printf("model: %s\n", model);
        int rc = cli_bench_grammar(m, &cons, threads, nt, tg, reps);
        danu_model_free(m);
        return rc;
    }
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
    static const char *isa_names[] = { "reference", "scalar", "avx2", "avx512", "neon", "avx2vnni" };
    /* the bandwidth probe's buffer is resident too: RSS figures subtract it */
    size_t bw_size = n_seqs ? 0 : (size_t)1 << 30;   /* --seqs: no bandwidth column */
    /* on huge pages where the kernel allows them, as the repacked weights
     * are: the ceiling is the best this machine reads, not a TLB-bound one */
    uint8_t *bw_buf = bw_size ? dn_malloc_aligned_to(dn_alloc_libc(), bw_size, (size_t)2 << 20) : NULL;
    if (bw_buf) dn_mem_hugepages(bw_buf, bw_size);
    if (bw_buf) memset(bw_buf, 1, bw_size);
    double probe_mb = bw_buf ? bw_size / 1e6 : 0;
    int64_t repacked = 0;
    danu_model_get_int(m, DANU_INFO_REPACKED_MATRICES, &repacked);
    printf("model: %s  (%.2f GiB of weights, %.3g GB read per generated token, kernels %s, %lld matrices repacked%s, "
           "KV cache %s)\n",
           model, (double)wbytes / (1 << 30), per_token / 1e9, isa_names[isa >= 0 && isa <= 5 ? isa : 1],
           (long long)repacked, cli_opt_given(DANU_OPT_FAST_BF16, NULL) ? ", fast bf16" : "",
           cli_flag_word("--kv-type", bench_kv_type()));
    print_cpu();
    if (busy)
        printf("busy: %lld spinning thread%s of this program run from the first measurement to the last (pure CPU)\n",
               (long long)busy, busy == 1 ? "" : "s");
    if (n_seqs && own_pool)
        printf("pool: one per thread count for the batch and its contexts (danu_pool_create with that -t)\n");
    else if (n_ctx > 1 || own_pool)
        printf("contexts: %lld on the model at once, each driven by its own thread; pool: %s; rows per context "
               "and their sum (threads CxT)\n", (long long)n_ctx,
               own_pool ? "one per context (danu_pool_create with its -t)" : "the model's shared pool");
    if (slice_us >= 0)
        printf("slices: prompts through danu_context_eval_begin + danu_context_work, generation through "
               "danu_context_step_sliced, %lld us per call; wall time per call in ms\n", (long long)slice_us);
    if (!n_seqs) {
        const char *slice_head = slice_us >= 0 ? " slices | p50 ms | p90 ms | p99 ms | max ms |" : "";
        const char *slice_rule = slice_us >= 0 ? "--------|--------|--------|--------|--------|" : "";
        printf("| %-7s | %-13s | %18s | %9s | %10s | %8s | %6s |%s\n", "threads", "test", "t/s", "RSS MB", "GB/s eff",
               "ceil GB/s", "ratio", slice_head);
        printf("|---------|---------------|--------------------|-----------|------------|----------|--------|%s\n",
               slice_rule);
    }
    fflush(stdout);
    const int np = pp > depth ? pp : depth;
    danu_token *prompt = malloc(sizeof(danu_token) * (size_t)(np > 0 ? np : 1));
    for (int i = 0; i < np; i++) prompt[i] = (danu_token)(1 + (i * 7919 + 17) % (vocab - 1));
    char at[32] = "";
    if (depth) snprintf(at, sizeof at, " @ d%lld", (long long)depth);
    bench_ctx *bc = calloc((size_t)n_ctx, sizeof *bc);
    bench_run run = { .pp = pp, .tg = tg, .depth = depth, .slice_us = slice_us, .prompt = prompt };
    int rc = 0;
    if (!prompt || !bc) { rc = cli_fail("bench", DANU_ERR_NOMEM); nt = 0; }
    /* --busy: started before the first measurement, joined after the last */
    dn_thread busy_th[256];
    int n_busy = 0;
    atomic_store(&busy_stop, 0);
    while (n_busy < busy && !dn_thread_create(&busy_th[n_busy], busy_main, NULL)) n_busy++;
    if (n_busy < busy) { cli_err("cannot start %lld busy threads", (long long)busy); rc = EXIT_FAIL; nt = 0; }
    if (n_seqs && !rc) {
        seqs_cfg sc = { .m = m, .threads = threads, .nt = nt, .seqs = seqs, .ns = n_seqs, .pp = pp, .tg = tg,
                        .depth = depth, .reps = reps, .own_pool = own_pool, .prompt = prompt };
        rc = bench_seqs(&sc);
        nt = 0;   /* not the ppN/tgN table */
    }
    for (int ti = 0; ti < nt && !rc; ti++) {
        int made = 0;
        danu_status s = DANU_OK;
        for (; made < n_ctx && !s; made++) {
            bench_ctx *b = &bc[made];
            memset(b, 0, sizeof *b);
            b->run = &run;
            danu_options *co = cli_options(0);
            danu_pool *pool = NULL;
            s = co && !cli_apply(co, CLI_KV) ? DANU_OK : DANU_ERR_INVALID_ARG;
            if (!s) s = danu_options_set_int(co, DANU_OPT_N_THREADS, threads[ti]);
            if (!s && own_pool) s = danu_pool_create(co, &pool);
            if (!s && own_pool) s = danu_options_set_pool(co, pool);
            if (!s) s = danu_options_set_int(co, DANU_OPT_N_CTX, depth + pp + tg + 8);
            if (!s) s = danu_options_set_float(co, DANU_OPT_TEMPERATURE, 0.0);
            if (!s) s = danu_options_set_int(co, DANU_OPT_IGNORE_EOS, 1);
            if (!s) s = danu_context_create(m, co, &b->c);
            danu_pool_free(pool);   /* the context holds its own reference */
            danu_options_free(co);
            if (s) { rc = cli_fail("context", s); break; }
            /* -d: fill the context once, keep its state, restore it before each run */
            if (depth > 0) {
                s = danu_context_eval(b->c, prompt, (size_t)depth, NULL);
                b->state_len = danu_context_state_size(b->c);
                b->state = s ? NULL : malloc(b->state_len);
                if (!s && !b->state) s = DANU_ERR_NOMEM;
                if (!s) s = danu_context_state_save(b->c, b->state, b->state_len, &b->state_len);
                if (s) { rc = cli_fail("depth", s); made++; break; }
            }
            /* warm-up: page in the weights */
            if (pp > 0 && !depth) danu_context_eval(b->c, prompt, (size_t)(pp < 16 ? pp : 16), NULL);
        }
        int started = 0;
        if (!rc) {
            dn_barrier_init(&run.start, (unsigned)n_ctx + 1);
            dn_barrier_init(&run.end, (unsigned)n_ctx + 1);
            while (started < n_ctx && !dn_thread_create(&bc[started].th, ctx_main, &bc[started])) started++;
            if (started < n_ctx) {   /* the started ones wait at a barrier that can never fill */
                cli_err("cannot start %lld context threads", (long long)n_ctx);
                exit(EXIT_FAIL);
            }
        }
        for (int phase = PHASE_PP; phase <= PHASE_TG && !rc && started; phase++) {
            if ((phase == PHASE_PP ? pp : tg) <= 0) continue;
            double ceil_sum = 0;
            int readers = threads[ti] * (int)n_ctx < 64 ? threads[ti] * (int)n_ctx : 64;
            for (int r = 0; r < reps; r++) {
                if (phase == PHASE_TG && bw_buf) ceil_sum += measure_bandwidth(bw_buf, bw_size, readers);
                run.phase = phase;
                run.rep = r;
                dn_barrier_wait(&run.start);   /* every context runs repetition r */
                dn_barrier_wait(&run.end);
                for (int k = 0; k < n_ctx && !rc; k++)
                    if (bc[k].s) rc = cli_fail(bc[k].what, bc[k].s);
                if (rc) break;
            }
            if (rc) break;
            char name[48], bw[64];
            snprintf(name, sizeof name, "%s%lld%s", phase == PHASE_PP ? "pp" : "tg",
                     (long long)(phase == PHASE_PP ? pp : tg), at);
            char blank[64];
            snprintf(blank, sizeof blank, "%10s | %8s | %6s", "", "", "");
            if (phase == PHASE_PP) snprintf(bw, sizeof bw, "%s", blank);
            else {
                double sums = 0, ceil = ceil_sum / reps;
                for (int r = 0; r < reps; r++)
                    for (int k = 0; k < n_ctx; k++) sums += bc[k].v[r];
                /* KV read per token: K and V of the positions in the window,
                 * in the cache's type (q8_0: a byte and a 4-byte scale per head row) */
                const double ctx_mid = depth + tg / 2.0;
                const int kv_type = bench_kv_type();
                const double row = kv_type == DANU_KV_F32 ? 4.0 * hd : kv_type == DANU_KV_Q8_0 ? hd + 4.0 : 2.0 * hd;
                double kv = 2.0 * layers * kvh * row * (ctx_mid < (window ? window : 1e9) ? ctx_mid : window);
                double eff = sums / reps * (per_token + kv) / 1e9;
                snprintf(bw, sizeof bw, "%10.1f | %8.1f | %5.0f%%", eff, ceil, ceil > 0 ? 100 * eff / ceil : 0);
            }
            print_phase(bc, (int)n_ctx, threads[ti], (int)reps, name, cli_current_rss() / 1e6 - probe_mb, bw, blank,
                        slice_us >= 0);
            fflush(stdout);
            for (int k = 0; k < n_ctx; k++) bc[k].slices.n = 0;
        }
        if (started) {
            run.phase = PHASE_QUIT;
            dn_barrier_wait(&run.start);
            for (int k = 0; k < started; k++) dn_thread_join(&bc[k].th);
            dn_barrier_destroy(&run.start);
            dn_barrier_destroy(&run.end);
        }
        for (int k = 0; k < made; k++) {
            free(bc[k].state);
            free(bc[k].slices.v);
            danu_context_free(bc[k].c);
            memset(&bc[k], 0, sizeof bc[k]);
        }
    }
    atomic_store(&busy_stop, 1);
    for (int k = 0; k < n_busy; k++) dn_thread_join(&busy_th[k]);
    free(bc);
    free(prompt);
    dn_free_aligned(dn_alloc_libc(), bw_buf);
    danu_model_free(m);
    (void)ft; (void)hidden;
    return rc;
}
