/* soak.c - long-running use of one model by several threads: each thread
 * keeps creating contexts, chatting, generating (greedy and sampled, with
 * stop strings), saving and restoring state, rewinding and reusing
 * prefixes, then freeing everything, for SECONDS. The main thread samples
 * the resident set from /proc/self/statm; the run fails if RSS after the
 * warm-up grew by more than LIMIT percent by the end, or if a greedy
 * generation ever differs from the first one (memory corruption).
 *
 *   soak [SECONDS=60] [THREADS=3] [MODEL=synthetic tiny-a] [LIMIT_PCT=5]
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "danu.h"

#ifndef DN_TEST_DATA
#define DN_TEST_DATA "tests/data"
#endif

static danu_model *model;
static double deadline;
static atomic_long n_contexts, n_generations, n_tokens, n_states, n_errors;
static danu_token ref[24];
static int n_ref;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double rss_mb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &res) != 2) res = 0;
        fclose(f);
    }
    return (double)res * (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0);
}

#define CHECK(call) do { danu_status s_ = (call); if (s_ != DANU_OK) { \
        fprintf(stderr, "soak: %s: %s (%s)\n", #call, danu_strerror(s_), danu_last_error()); \
        atomic_fetch_add(&n_errors, 1); goto out; } } while (0)

typedef struct collect { danu_token ids[64]; int n; long all; } collect;
static int32_t on_token(void *user, danu_token id, const char *text, size_t len)
{
    (void)text; (void)len;
    collect *c = user;
    if (id >= 0 && c->n < 64) c->ids[c->n++] = id;
    if (id >= 0) c->all++;
    return 0;
}

static danu_context *make_ctx(double temp, uint64_t seed)
{
    danu_options *o;
    danu_context *c = NULL;
    if (danu_options_create(NULL, &o) != DANU_OK) return NULL;
    danu_options_set_int(o, DANU_OPT_N_CTX, 256);
    danu_options_set_int(o, DANU_OPT_N_THREADS, 1);
    danu_options_set_int(o, DANU_OPT_IGNORE_EOS, 1);
    danu_options_set_int(o, DANU_OPT_ON_FULL, DANU_FULL_SHIFT);
    danu_options_set_int(o, DANU_OPT_N_KEEP, 8);
    danu_options_set_float(o, DANU_OPT_TEMPERATURE, temp);
    danu_options_set_int(o, DANU_OPT_SEED, (int64_t)seed);
    if (danu_context_create(model, o, &c) != DANU_OK) c = NULL;
    danu_options_free(o);
    return c;
}

/* The greedy answer to a fixed chat: every thread must get the same ids. */
static int greedy_once(danu_token *out)
{
    danu_context *c = make_ctx(0.0, 0);
    if (!c) return -1;
    const char *roles[1] = { "user" }, *msgs[1] = { "Why is the sky blue?" };
    collect col = { { 0 }, 0, 0 };
    int32_t why;
    int n = -1;
    if (danu_context_chat_append(c, roles, msgs, 1, 1) == DANU_OK &&
        danu_context_generate(c, 24, on_token, &col, &why) == DANU_OK) {
        memcpy(out, col.ids, sizeof(danu_token) * (size_t)col.n);
        n = col.n;
    }
    danu_context_free(c);
    return n;
}

static void *worker(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg * 7919;
    static const char *const topics[] = { "Tell me about the sea.", "What is a prime number?", "Write a haiku.",
                                          "List three colours.", "\xc3\x89t\xc3\xa9 \xe2\x98\x80 \xf0\x9f\x98\x80?" };
    for (uint64_t it = 0; now() < deadline; it++) {
        danu_context *a = NULL, *b = NULL;
        uint8_t *state = NULL;
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        if (it % 5 == 0) {   /* determinism under concurrency */
            danu_token got[24];
            int n = greedy_once(got);
            if (n != n_ref || memcmp(got, ref, sizeof(danu_token) * (size_t)n_ref) != 0) {
                fprintf(stderr, "soak: greedy generation differs from the first one\n");
                atomic_fetch_add(&n_errors, 1);
            }
            atomic_fetch_add(&n_contexts, 1);
            atomic_fetch_add(&n_generations, 1);
            atomic_fetch_add(&n_tokens, n);
        }
        a = make_ctx(0.3 + (double)(seed >> 60) / 16.0, seed);
        if (!a) { atomic_fetch_add(&n_errors, 1); goto out; }
        atomic_fetch_add(&n_contexts, 1);
        const char *roles[2] = { "system", "user" };
        const char *msgs[2] = { "You are brief.", topics[seed % 5] };
        CHECK(danu_context_chat_append(a, roles, msgs, 2, 1));
        if (seed & 1) CHECK(danu_context_add_stop_string(a, "\n\n"));
        collect col = { { 0 }, 0, 0 };
        int32_t why;
        CHECK(danu_context_generate(a, 16 + (int32_t)(seed % 32), on_token, &col, &why));
        atomic_fetch_add(&n_generations, 1);
        atomic_fetch_add(&n_tokens, col.all);
        /* state out, into a fresh context, and on */
        size_t sz = danu_context_state_size(a), w;
        state = malloc(sz);
        if (!state) goto out;
        CHECK(danu_context_state_save(a, state, sz, &w));
        b = make_ctx(0.8, seed + 1);
        if (!b) { atomic_fetch_add(&n_errors, 1); goto out; }
        atomic_fetch_add(&n_contexts, 1);
        CHECK(danu_context_state_load(b, state, sz));
        atomic_fetch_add(&n_states, 1);
        const char *more[1] = { "And then?" };
        CHECK(danu_context_chat_append(b, roles + 1, more, 1, 1));
        col.n = 0;
        col.all = 0;
        CHECK(danu_context_generate(b, 200, on_token, &col, &why));   /* long enough to shift */
        atomic_fetch_add(&n_generations, 1);
        atomic_fetch_add(&n_tokens, col.all);
        /* prefix reuse after a rewind */
        size_t n = danu_context_n_tokens(b), reused;
        danu_token *hist = malloc(n * sizeof *hist + 4);
        if (!hist) goto out;
        memcpy(hist, danu_context_tokens(b), n * sizeof *hist);
        hist[n] = 450;
        danu_status ps = danu_context_prompt(b, hist, n + 1, &reused);
        free(hist);
        CHECK(ps);
        CHECK(danu_context_clear(b));
        CHECK(danu_context_state_load(b, state, sz));
        atomic_fetch_add(&n_states, 1);
    out:
        free(state);
        danu_context_free(a);
        danu_context_free(b);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 60;
    int threads = argc > 2 ? atoi(argv[2]) : 3;
    const char *path = argc > 3 && *argv[3] ? argv[3] : NULL;
    double limit = argc > 4 ? atof(argv[4]) : 5.0;
    char dir[256] = "", file[512];
    if (!path) {
        snprintf(dir, sizeof dir, "%s/danu-soak-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        if (!mkdtemp(dir)) { perror("mkdtemp"); return 2; }
        snprintf(file, sizeof file, "%s/tiny-a.gguf", dir);
        FILE *f = fopen(DN_TEST_DATA "/llama2-tokenizer/tokenizer.model", "rb");
        if (!f) { perror("tokenizer.model"); return 2; }
        static uint8_t spm[1 << 20];
        size_t n = fread(spm, 1, sizeof spm, f);
        fclose(f);
        if (danu_synth_write("tiny-a", 7, DANU_FORMAT_GGUF, DANU_TYPE_BF16, spm, n, file, NULL) != DANU_OK) {
            fprintf(stderr, "soak: synth: %s\n", danu_last_error());
            return 2;
        }
        path = file;
    }
    if (danu_model_load(path, NULL, &model) != DANU_OK) {
        fprintf(stderr, "soak: %s: %s\n", path, danu_last_error());
        return 2;
    }
    n_ref = greedy_once(ref);
    if (n_ref <= 0) { fprintf(stderr, "soak: reference generation failed: %s\n", danu_last_error()); return 2; }
    double t0 = now(), rss0 = rss_mb();
    deadline = t0 + seconds;
    pthread_t *th = calloc((size_t)threads, sizeof *th);
    for (int i = 0; i < threads; i++) pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)(i + 1));
    /* warm-up: the first tenth of the run (at most 10 s) fills the heaps */
    double warm = seconds / 10 < 10 ? seconds / 10 : 10, rss_start = 0, rss_max = 0, rss_end = 0;
    printf("soak: %s, %d threads, %.0f s; RSS before the threads %.1f MB\n", path, threads, seconds, rss0);
    double next = t0 + warm;
    while (now() < deadline) {
        double t = now();
        if (t >= next) {
            double r = rss_mb();
            if (rss_start == 0) rss_start = r;
            if (r > rss_max) rss_max = r;
            printf("soak: %6.1f s  RSS %7.1f MB  contexts %ld  generations %ld  tokens %ld  state loads %ld\n", t - t0,
                   r, atomic_load(&n_contexts), atomic_load(&n_generations), atomic_load(&n_tokens),
                   atomic_load(&n_states));
            fflush(stdout);
            next += 5;
        }
        usleep(100000);
    }
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    rss_end = rss_mb();
    free(th);
    double growth = rss_start > 0 ? (rss_end - rss_start) / rss_start * 100 : 0;
    printf("soak: done in %.1f s: %ld contexts, %ld generations, %ld tokens, %ld state loads, %ld errors\n",
           now() - t0, atomic_load(&n_contexts), atomic_load(&n_generations), atomic_load(&n_tokens),
           atomic_load(&n_states), atomic_load(&n_errors));
    printf("soak: RSS start (after %.0f s warm-up) %.1f MB, end %.1f MB, max %.1f MB, growth %+.2f%% (limit %.1f%%)\n",
           warm, rss_start, rss_end, rss_max, growth, limit);
    danu_model_free(model);
    if (dir[0]) {
        unlink(file);
        rmdir(dir);
    }
    int fail = atomic_load(&n_errors) > 0 || growth > limit;
    printf("soak: %s\n", fail ? "FAIL" : "ok");
    return fail ? 1 : 0;
}
