/* test_context.c - contexts, the KV cache, generation and state, through the
 * public API: goldens for greedy generation (ring buffer wrapping while
 * decoding), save/load, rewind, prefix reuse, concurrency, abort, full
 * context, stop strings and streaming text. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "danu.h"
#include "testutil.h"
#include "golden.h"

static char *tmp;
static danu_model *tiny_a, *tiny_b;

static danu_context *ctx_with(danu_model *m, int threads, double temp, uint64_t seed, int n_ctx)
{
    danu_options *o;
    danu_options_create(NULL, &o);
    danu_options_set_int(o, DANU_OPT_N_THREADS, threads);
    danu_options_set_float(o, DANU_OPT_TEMPERATURE, temp);
    danu_options_set_int(o, DANU_OPT_SEED, (int64_t)seed);
    danu_options_set_int(o, DANU_OPT_IGNORE_EOS, 1);
    if (n_ctx) danu_options_set_int(o, DANU_OPT_N_CTX, n_ctx);
    danu_context *c = NULL;
    CHECK_OK(danu_context_create(m, o, &c));
    danu_options_free(o);
    return c;
}

typedef struct collect { danu_token ids[4096]; int n; char text[65536]; size_t len; } collect;

static int32_t collect_cb(void *user, danu_token id, const char *text, size_t len)
{
    collect *c = user;
    if (id >= 0 && c->n < 4096) c->ids[c->n++] = id;
    if (c->len + len < sizeof c->text) { memcpy(c->text + c->len, text, len); c->len += len; c->text[c->len] = 0; }
    return 0;
}

/* generate() equals the goldens' greedy lists, repetition penalty included. */
START_TEST(test_context_generate_goldens)
{
    static const char *cases[] = { "tiny-a.capital-long", "tiny-a.capital-rep", "tiny-b.rand100", "tiny-q.rand100",
                                   "tiny-q.short" };
    danu_model *tq = NULL;
    ck_assert_int_eq(danu_model_load(gd_synth(tmp, "tiny-q", 17, DANU_FORMAT_GGUF, DANU_TYPE_BF16), NULL, &tq), DANU_OK);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tu_golden g;
        tu_golden_need(cases[i], &g);
        danu_model *m = cases[i][5] == 'a' ? tiny_a : cases[i][5] == 'b' ? tiny_b : tq;
        danu_context *c = ctx_with(m, 2, 0.0, 0, 0);
        danu_context_set_float(c, DANU_OPT_REPEAT_PENALTY, g.repetition_penalty);
        danu_context_set_int(c, DANU_OPT_REPEAT_LAST_N, -1);
        ck_assert_int_eq(danu_context_eval(c, g.prompt, (size_t)g.n_prompt, NULL), DANU_OK);
        collect *col = calloc(1, sizeof *col);
        int32_t why;
        ck_assert_int_eq(danu_context_generate(c, g.n_greedy, collect_cb, col, &why), DANU_OK);
        ck_assert_int_eq(why, DANU_STOP_LENGTH);
        ck_assert_int_eq(col->n, g.n_greedy);
        for (int k = 0; k < g.n_greedy; k++)
            ck_assert_msg(col->ids[k] == g.greedy[k], "%s token %d: %d != golden %d", cases[i], k, col->ids[k], g.greedy[k]);
        /* the streamed text is the decode of the generated ids (after the prompt) */
        char dec[65536];
        size_t dl;
        danu_token *all = malloc(sizeof(danu_token) * (size_t)(g.n_prompt + g.n_greedy));
        memcpy(all, g.prompt, sizeof(danu_token) * (size_t)g.n_prompt);
        memcpy(all + g.n_prompt, col->ids, sizeof(danu_token) * (size_t)g.n_greedy);
        char pre[65536];
        size_t pl;
        ck_assert_int_eq(danu_tokenizer_decode(danu_model_tokenizer(m), all, (size_t)g.n_prompt, pre, sizeof pre, &pl), DANU_OK);
        ck_assert_int_eq(danu_tokenizer_decode(danu_model_tokenizer(m), all, (size_t)(g.n_prompt + g.n_greedy), dec, sizeof dec, &dl), DANU_OK);
        ck_assert_msg(dl == pl + col->len && !memcmp(dec + pl, col->text, col->len), "%s: streamed text differs", cases[i]);
        free(all);
        free(col);
        danu_context_free(c);
    }
    danu_model_free(tq);
}
END_TEST

static void gen_ids(danu_context *c, int n, danu_token *out)
{
    collect *col = calloc(1, sizeof *col);
    int32_t why;
    ck_assert_int_eq(danu_context_generate(c, n, collect_cb, col, &why), DANU_OK);
    ck_assert_int_eq(col->n, n);
    memcpy(out, col->ids, sizeof(danu_token) * (size_t)n);
    free(col);
}

/* A context that evaluated 30 tokens of tiny-b.rand100 (temperature temp,
 * seed 42) and its saved state (malloc'd, *sz bytes). */
static danu_context *saved_state(double temp, uint8_t **buf, size_t *sz)
{
    tu_golden g;
    tu_golden_need("tiny-b.rand100", &g);
    danu_context *a = ctx_with(tiny_b, 1, temp, 42, 0);
    ck_assert_int_eq(danu_context_eval(a, g.prompt, 30, NULL), DANU_OK);
    size_t w;
    *sz = danu_context_state_size(a);
    *buf = malloc(*sz);
    ck_assert_int_eq(danu_context_state_save(a, *buf, *sz, &w), DANU_OK);
    ck_assert_uint_eq(w, *sz);
    return a;
}

/* A state loaded into another context (other seed and thread count)
 * continues exactly as the saved one, greedy and sampled. */
START_TEST(test_context_state_roundtrip)
{
    for (int temp = 0; temp < 2; temp++) {
        uint8_t *buf;
        size_t sz;
        danu_context *a = saved_state(temp ? 0.9 : 0.0, &buf, &sz);
        danu_token x[40], y[40];
        gen_ids(a, 40, x);
        danu_context *b = ctx_with(tiny_b, 2, temp ? 0.9 : 0.0, 7, 0);
        ck_assert_int_eq(danu_context_state_load(b, buf, sz), DANU_OK);
        ck_assert_uint_eq(danu_context_n_tokens(b), 30);
        gen_ids(b, 40, y);
        ck_assert_mem_eq(x, y, sizeof x);
        free(buf);
        danu_context_free(a);
        danu_context_free(b);
    }
}
END_TEST

/* Corrupt or truncated state is rejected with a message and leaves the
 * context as it was. */
START_TEST(test_context_state_rejects_corrupt)
{
    uint8_t *buf;
    size_t sz;
    danu_context *a = saved_state(0.0, &buf, &sz);
    danu_context *b = ctx_with(tiny_b, 2, 0.0, 7, 0);
    ck_assert_int_eq(danu_context_state_load(b, buf, sz), DANU_OK);
    danu_token x[40], y[40];
    gen_ids(a, 40, x);
    const size_t before = danu_context_n_tokens(b);
    for (size_t k = 0; k < sz; k += sz / 97 + 1) {
        buf[k] ^= 0x5a;
        ck_assert_int_eq(danu_context_state_load(b, buf, sz), DANU_ERR_FORMAT);
        ck_assert_msg(strlen(danu_last_error()) > 0, "byte %zu: no message", k);
        buf[k] ^= 0x5a;
    }
    ck_assert_int_eq(danu_context_state_load(b, buf, sz - 9), DANU_ERR_FORMAT);
    ck_assert_uint_eq(danu_context_n_tokens(b), before);
    gen_ids(b, 40, y);   /* unchanged: continues as the saved context */
    ck_assert_mem_eq(x, y, sizeof x);
    free(buf);
    danu_context_free(a);
    danu_context_free(b);
}
END_TEST

/* Another model's context refuses the state. */
START_TEST(test_context_state_rejects_other_model)
{
    uint8_t *buf;
    size_t sz;
    danu_context *a = saved_state(0.0, &buf, &sz);
    danu_context *other = ctx_with(tiny_a, 1, 0.0, 0, 0);
    ck_assert_int_eq(danu_context_state_load(other, buf, sz), DANU_ERR_FORMAT);
    ck_assert_uint_eq(danu_context_n_tokens(other), 0);
    danu_context_free(other);
    free(buf);
    danu_context_free(a);
}
END_TEST

/* State saved to a file and loaded into a cleared context continues as the
 * saved one. */
START_TEST(test_context_state_file_roundtrip)
{
    uint8_t *buf;
    size_t sz;
    danu_context *a = saved_state(0.0, &buf, &sz);
    danu_token x[40], y[40];
    gen_ids(a, 40, x);
    danu_context *b = ctx_with(tiny_b, 2, 0.0, 7, 0);
    char path[1024];
    snprintf(path, sizeof path, "%s/state.bin", tmp);
    ck_assert_int_eq(danu_context_state_load(b, buf, sz), DANU_OK);
    ck_assert_int_eq(danu_context_state_save_file(b, path), DANU_OK);
    danu_context_clear(b);
    ck_assert_uint_eq(danu_context_n_tokens(b), 0);
    ck_assert_int_eq(danu_context_state_load_file(b, path), DANU_OK);
    ck_assert_uint_eq(danu_context_n_tokens(b), 30);
    gen_ids(b, 40, y);
    ck_assert_mem_eq(x, y, sizeof x);
    free(buf);
    danu_context_free(a);
    danu_context_free(b);
}
END_TEST

/* Rewind then regenerate gives the same tokens as the first run. */
START_TEST(test_context_rewind_regenerates)
{
    tu_golden g;
    tu_golden_need("tiny-a.capital-long", &g);
    danu_context *a = ctx_with(tiny_a, 1, 0.0, 0, 0);
    ck_assert_int_eq(danu_context_eval(a, g.prompt, (size_t)g.n_prompt, NULL), DANU_OK);
    danu_token x[20], y[20];
    gen_ids(a, 20, x);
    ck_assert_int_eq(danu_context_rewind(a, (size_t)g.n_prompt - 1), DANU_OK);
    ck_assert_int_eq(danu_context_eval(a, &g.prompt[g.n_prompt - 1], 1, NULL), DANU_OK);
    gen_ids(a, 20, y);
    ck_assert_mem_eq(x, y, sizeof x);
    danu_context_free(a);
}
END_TEST

/* Prefix reuse: b holds prompt + 20 generated tokens; a new prompt sharing
 * the prompt prefix evaluates only the tail and gives a fresh run's logits. */
START_TEST(test_context_prefix_reuse)
{
    tu_golden g;
    tu_golden_need("tiny-a.capital-long", &g);
    danu_context *b = ctx_with(tiny_a, 1, 0.0, 0, 0);
    danu_token y[20];
    ck_assert_int_eq(danu_context_eval(b, g.prompt, (size_t)g.n_prompt, NULL), DANU_OK);
    gen_ids(b, 20, y);
    danu_token p2[64];
    memcpy(p2, g.prompt, sizeof(danu_token) * (size_t)g.n_prompt);
    p2[g.n_prompt] = 450; p2[g.n_prompt + 1] = 7483;
    size_t reused;
    ck_assert_int_eq(danu_context_prompt(b, p2, (size_t)g.n_prompt + 2, &reused), DANU_OK);
    ck_assert_uint_eq(reused, (size_t)g.n_prompt);
    danu_context *f = ctx_with(tiny_a, 1, 0.0, 0, 0);
    ck_assert_int_eq(danu_context_eval(f, p2, (size_t)g.n_prompt + 2, NULL), DANU_OK);
    ck_assert_mem_eq(danu_context_logits(b), danu_context_logits(f), 32000 * sizeof(float));
    danu_context_free(b); danu_context_free(f);
}
END_TEST

/* With a wrapped ring (window 32), a deep rewind is refused and changes
 * nothing; a rewind within the window works. */
START_TEST(test_context_deep_rewind_refused)
{
    danu_context *f = ctx_with(tiny_a, 1, 0.0, 0, 0);
    danu_token many[100];
    for (int i = 0; i < 100; i++) many[i] = (danu_token)(100 + i * 37 % 3000);
    ck_assert_int_eq(danu_context_eval(f, many, 100, NULL), DANU_OK);
    ck_assert_int_eq(danu_context_rewind(f, 10), DANU_ERR_STATE);
    ck_assert_uint_eq(danu_context_n_tokens(f), 100);
    ck_assert_int_eq(danu_context_rewind(f, 99), DANU_OK);
    ck_assert_uint_eq(danu_context_n_tokens(f), 99);
    danu_context_free(f);
}
END_TEST

typedef struct thr { danu_model *m; int threads; uint64_t seed; const tu_golden *g; danu_token out[48]; } thr;

static void *thr_main(void *arg)
{
    thr *t = arg;
    danu_context *c = ctx_with(t->m, t->threads, 1.5, t->seed, 0);
    CHECK_OK(danu_context_eval(c, t->g->prompt, 20, NULL));
    gen_ids(c, 48, t->out);
    danu_context_free(c);
    return NULL;
}

/* Two threads on one model at once == one after the other; the same seed gives
 * the same tokens with 1 or 2 worker threads. */
START_TEST(test_context_concurrency_and_seed)
{
    tu_golden g;
    tu_golden_need("tiny-a.story", &g);
    thr a = { tiny_a, 1, 5, &g, {0} }, b = { tiny_a, 2, 6, &g, {0} }, a2 = { tiny_a, 2, 5, &g, {0} },
        b2 = { tiny_a, 1, 6, &g, {0} };
    thr_main(&a2);
    thr_main(&b2);
    pthread_t ta, tb;
    pthread_create(&ta, NULL, thr_main, &a);
    pthread_create(&tb, NULL, thr_main, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    ck_assert_mem_eq(a.out, a2.out, sizeof a.out);
    ck_assert_mem_eq(b.out, b2.out, sizeof b.out);
    ck_assert(memcmp(a.out, b.out, sizeof a.out) != 0);
}
END_TEST

static double cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Slow stage (a time window): an idle library gives its cores back: after a
 * generation and after an aborted one, the context's workers sleep. Over 400 ms of wall time the
 * process may use a little CPU for the workers' last short spin, not the
 * 400+ ms a worker still spinning would (the pool keeps them spinning
 * during a forward pass only). */
static int32_t abort_cb(void *user, danu_token id, const char *text, size_t len)
{
    (void)id, (void)text, (void)len;
    danu_context_abort(user);   /* stops the next forward pass at its first layer */
    return 0;
}

START_TEST(test_context_idle_workers)
{
    danu_context *c = ctx_with(tiny_a, 2, 0.0, 1, 0);
    danu_token ids[8];
    const danu_token prompt[4] = { 1, 415, 5565, 302 };
    for (int round = 0; round < 2; round++) {
        ck_assert_int_eq(danu_context_eval(c, prompt, 4, NULL), DANU_OK);
        gen_ids(c, 8, ids);
        if (round == 1) {   /* end the second round with a generation aborted mid-pass */
            int32_t why;
            ck_assert_int_eq(danu_context_generate(c, 8, abort_cb, c, &why), DANU_ERR_ABORTED);
        }
        double c0 = cpu_seconds();
        struct timespec ts = { 0, 400000000L };
        nanosleep(&ts, NULL);
        double used = cpu_seconds() - c0;
        ck_assert_msg(used < 0.1, "round %d: %.3f s of CPU while idle for 0.4 s", round, used);
        danu_context_clear(c);
    }
    danu_context_free(c);
}
END_TEST

typedef struct ab { danu_context *c; int delay_ms; } ab;
static void *abort_main(void *arg)
{
    ab *x = arg;
    struct timespec ts = { 0, x->delay_ms * 1000000L };
    nanosleep(&ts, NULL);
    danu_context_abort(x->c);
    return NULL;
}

START_TEST(test_context_abort)
{
    danu_context *c = ctx_with(tiny_a, 2, 0.0, 0, 512);
    tu_golden g;
    tu_golden_need("tiny-a.capital", &g);
    ck_assert_int_eq(danu_context_eval(c, g.prompt, (size_t)g.n_prompt, NULL), DANU_OK);
    danu_context_set_int(c, DANU_OPT_ON_FULL, DANU_FULL_SHIFT);   /* never ends by itself */
    ab x = { c, 30 };
    pthread_t t;
    pthread_create(&t, NULL, abort_main, &x);
    int32_t why;
    danu_status s = danu_context_generate(c, 100000, NULL, NULL, &why);
    pthread_join(t, NULL);
    ck_assert_int_eq(s, DANU_ERR_ABORTED);
    ck_assert_int_eq(why, DANU_STOP_ABORTED);
    /* still usable and consistent: continuing equals a fresh run on the same tokens */
    size_t n = danu_context_n_tokens(c);
    ck_assert(n >= (size_t)g.n_prompt && n < 512);
    danu_token *hist = malloc(n * sizeof *hist);
    memcpy(hist, danu_context_tokens(c), n * sizeof *hist);
    danu_token next = 0, fresh = 1;
    danu_context *f = ctx_with(tiny_a, 1, 0.0, 0, 512);
    ck_assert_int_eq(danu_context_eval(f, hist, n, NULL), DANU_OK);
    ck_assert_int_eq(danu_context_rewind(c, n - 1), DANU_OK);
    ck_assert_int_eq(danu_context_eval(c, &hist[n - 1], 1, NULL), DANU_OK);
    ck_assert_int_eq(danu_context_sample(c, &next), DANU_OK);
    ck_assert_int_eq(danu_context_sample(f, &fresh), DANU_OK);
    ck_assert_int_eq(next, fresh);
    free(hist);
    danu_context_free(c);
    danu_context_free(f);
}
END_TEST

/* A full context refuses more tokens (eval and generate) and keeps what it had. */
START_TEST(test_context_full_refuses)
{
    danu_context *c = ctx_with(tiny_b, 1, 0.0, 0, 40);
    danu_token t[40];
    for (int i = 0; i < 40; i++) t[i] = (danu_token)(3 + i * 11 % 1000);
    ck_assert_int_eq(danu_context_eval(c, t, 30, NULL), DANU_OK);
    ck_assert_int_eq(danu_context_eval(c, t, 11, NULL), DANU_ERR_CONTEXT_FULL);
    ck_assert_uint_eq(danu_context_n_tokens(c), 30);
    int32_t why;
    ck_assert_int_eq(danu_context_generate(c, 50, NULL, NULL, &why), DANU_ERR_CONTEXT_FULL);
    ck_assert_int_eq(why, DANU_STOP_FULL);
    ck_assert_uint_eq(danu_context_n_tokens(c), 40);
    danu_context_free(c);
}
END_TEST

/* On full with DANU_FULL_SHIFT: keep 4, drop the oldest of the rest; the
 * result equals evaluating the kept tokens fresh. */
START_TEST(test_context_full_shift)
{
    danu_context *c = ctx_with(tiny_b, 1, 0.0, 0, 40);
    danu_token t[40];
    for (int i = 0; i < 40; i++) t[i] = (danu_token)(3 + i * 11 % 1000);
    ck_assert_int_eq(danu_context_eval(c, t, 40, NULL), DANU_OK);
    int32_t why;
    ck_assert_int_eq(danu_context_set_int(c, DANU_OPT_ON_FULL, DANU_FULL_SHIFT), DANU_OK);
    ck_assert_int_eq(danu_context_set_int(c, DANU_OPT_N_KEEP, 4), DANU_OK);
    ck_assert_int_eq(danu_context_generate(c, 10, NULL, NULL, &why), DANU_OK);
    ck_assert_int_eq(why, DANU_STOP_LENGTH);
    size_t n = danu_context_n_tokens(c);
    ck_assert(n <= 40 && n > 4);
    danu_context *f = ctx_with(tiny_b, 1, 0.0, 0, 40);
    ck_assert_int_eq(danu_context_eval(f, danu_context_tokens(c), n, NULL), DANU_OK);
    ck_assert_mem_eq(danu_context_logits(c), danu_context_logits(f), 1024 * sizeof(float));
    danu_context_free(c);
    danu_context_free(f);
}
END_TEST

/* The 8-bit KV cache through every cache operation (tiny-a: window 32,
 * so the ring wraps): a run's logits equal a fresh context's over the same
 * tokens in one batch (a token alone equals a token in a batch); a saved
 * state continues identically in another context (2 threads), and its
 * fork too; it is refused by an f16 context; a rewound token evaluated
 * again gives the same logits; a shift on a full context gives a fresh
 * run's logits. */
START_TEST(test_context_kv_q8_operations)
{
    tu_golden g;
    tu_golden_need("tiny-a.capital-long", &g);
    danu_options *o;
    danu_options_create(NULL, &o);
    danu_options_set_float(o, DANU_OPT_TEMPERATURE, 0.0);
    danu_options_set_int(o, DANU_OPT_IGNORE_EOS, 1);
    danu_options_set_int(o, DANU_OPT_KV_TYPE, DANU_KV_Q8_0);
    danu_context *a = NULL, *b = NULL, *f = NULL, *d = NULL, *h = NULL;
    CHECK_OK(danu_context_create(tiny_a, o, &a));
    danu_options_set_int(o, DANU_OPT_N_THREADS, 2);
    CHECK_OK(danu_context_create(tiny_a, o, &b));
    CHECK_OK(danu_context_create(tiny_a, o, &f));
    ck_assert_int_eq(danu_context_eval(a, g.prompt, (size_t)g.n_prompt, NULL), DANU_OK);
    size_t sz = danu_context_state_size(a), w;
    uint8_t *buf = malloc(sz);
    CHECK_OK(danu_context_state_save(a, buf, sz, &w));
    danu_token x[40], y[40], z[40];
    gen_ids(a, 40, x);   /* prompt + 40 > window 32: the ring wraps */
    const size_t n = danu_context_n_tokens(a);
    ck_assert_int_eq(danu_context_eval(f, danu_context_tokens(a), n, NULL), DANU_OK);
    ck_assert_mem_eq(danu_context_logits(a), danu_context_logits(f), 32000 * sizeof(float));
    CHECK_OK(danu_context_state_load(b, buf, sz));
    CHECK_OK(danu_context_fork(b, &d));
    gen_ids(b, 40, y);
    gen_ids(d, 40, z);
    ck_assert_mem_eq(x, y, sizeof x);
    ck_assert_mem_eq(x, z, sizeof x);
    h = ctx_with(tiny_a, 1, 0.0, 0, 0);   /* f16 */
    ck_assert_int_eq(danu_context_state_load(h, buf, sz), DANU_ERR_FORMAT);
    ck_assert_int_eq(danu_context_rewind(a, n - 1), DANU_OK);   /* as deep as a wrapped ring allows */
    ck_assert_int_eq(danu_context_eval(a, danu_context_tokens(f) + (n - 1), 1, NULL), DANU_OK);
    ck_assert_mem_eq(danu_context_logits(a), danu_context_logits(f), 32000 * sizeof(float));
    danu_context_free(d);
    d = NULL;
    danu_options_set_int(o, DANU_OPT_N_CTX, 40);
    danu_options_set_int(o, DANU_OPT_ON_FULL, DANU_FULL_SHIFT);
    danu_options_set_int(o, DANU_OPT_N_KEEP, 4);
    CHECK_OK(danu_context_create(tiny_a, o, &d));
    ck_assert_int_eq(danu_context_eval(d, danu_context_tokens(f), 40, NULL), DANU_OK);
    int32_t why;
    ck_assert_int_eq(danu_context_generate(d, 10, NULL, NULL, &why), DANU_OK);
    const size_t m = danu_context_n_tokens(d);
    ck_assert(m <= 40 && m > 4);
    danu_context_free(f);
    f = NULL;
    CHECK_OK(danu_context_create(tiny_a, o, &f));
    ck_assert_int_eq(danu_context_eval(f, danu_context_tokens(d), m, NULL), DANU_OK);
    ck_assert_mem_eq(danu_context_logits(d), danu_context_logits(f), 32000 * sizeof(float));
    danu_options_free(o);
    free(buf);
    danu_context_free(a); danu_context_free(b); danu_context_free(f); danu_context_free(d); danu_context_free(h);
}
END_TEST

/* Ids outside the vocabulary are refused and nothing is evaluated. */
START_TEST(test_context_bad_token_ids)
{
    danu_context *f = ctx_with(tiny_b, 1, 0.0, 0, 40);
    danu_token bad[2] = { 5, 1024 };
    ck_assert_int_eq(danu_context_eval(f, bad, 2, NULL), DANU_ERR_BAD_TOKEN);
    bad[1] = -1;
    ck_assert_int_eq(danu_context_eval(f, bad, 2, NULL), DANU_ERR_BAD_TOKEN);
    ck_assert_uint_eq(danu_context_n_tokens(f), 0);
    danu_context_free(f);
}
END_TEST

/* A stop string from the middle of the text: the emitted text ends right
 * before it and generation reports DANU_STOP_STRING. */
START_TEST(test_context_stop_string)
{
    danu_context *c = ctx_with(tiny_a, 1, 0.0, 0, 0);
    tu_golden g;
    tu_golden_need("tiny-a.capital-long", &g);
    ck_assert_int_eq(danu_context_eval(c, g.prompt, (size_t)g.n_prompt, NULL), DANU_OK);
    collect *full = calloc(1, sizeof *full), *cut = calloc(1, sizeof *cut);
    int32_t why;
    ck_assert_int_eq(danu_context_generate(c, 30, collect_cb, full, &why), DANU_OK);
    ck_assert(full->len > 12);
    /* stop at a string from the middle of that text: emitted text ends right before it */
    char stop[8];
    memcpy(stop, full->text + full->len / 2, 4);
    stop[4] = 0;
    const char *at = strstr(full->text, stop);
    danu_context_clear(c);
    ck_assert_int_eq(danu_context_eval(c, g.prompt, (size_t)g.n_prompt, NULL), DANU_OK);
    ck_assert_int_eq(danu_context_add_stop_string(c, stop), DANU_OK);
    ck_assert_int_eq(danu_context_generate(c, 30, collect_cb, cut, &why), DANU_OK);
    ck_assert_int_eq(why, DANU_STOP_STRING);
    ck_assert_uint_eq(cut->len, (size_t)(at - full->text));
    ck_assert_mem_eq(cut->text, full->text, cut->len);
    free(full); free(cut);
    danu_context_free(c);
}
END_TEST

/* Steps stopped early: a stop string that starts with the text's last two
 * bytes but never completes holds them back; step_finish hands them over,
 * and steps + finish equal generate()'s text. */
START_TEST(test_context_step_finish_releases_held_text)
{
    danu_context *c = ctx_with(tiny_a, 1, 0.0, 0, 0);
    tu_golden g;
    tu_golden_need("tiny-a.capital-long", &g);
    ck_assert_int_eq(danu_context_eval(c, g.prompt, (size_t)g.n_prompt, NULL), DANU_OK);
    collect *full = calloc(1, sizeof *full), *cut = calloc(1, sizeof *cut);
    int32_t why;
    ck_assert_int_eq(danu_context_generate(c, 20, collect_cb, full, &why), DANU_OK);
    ck_assert_int_eq(why, DANU_STOP_LENGTH);
    ck_assert(full->len >= 2);
    char never[8] = { full->text[full->len - 2], full->text[full->len - 1], 1, 2, 3, 0 };
    danu_context_clear(c);
    ck_assert_int_eq(danu_context_eval(c, g.prompt, (size_t)g.n_prompt, NULL), DANU_OK);
    ck_assert_int_eq(danu_context_add_stop_string(c, never), DANU_OK);
    memset(cut, 0, sizeof *cut);
    for (int i = 0; i < 20; i++) {
        danu_token id;
        char piece[256];
        size_t pl;
        ck_assert_int_eq(danu_context_step(c, &id, piece, sizeof piece, &pl, &why), DANU_OK);
        ck_assert_int_eq(why, -1);
        collect_cb(cut, id, piece, pl);
    }
    ck_assert_uint_lt(cut->len, full->len);   /* the tail is held back */
    char small[1], rest[256];
    size_t need, rl;
    ck_assert_int_eq(danu_context_step_finish(c, small, sizeof small, &need), DANU_ERR_BUFFER_TOO_SMALL);
    ck_assert_uint_eq(need, full->len - cut->len);
    ck_assert_int_eq(danu_context_step_finish(c, rest, sizeof rest, &rl), DANU_OK);
    ck_assert_uint_eq(rl, need);
    collect_cb(cut, -1, rest, rl);
    ck_assert_uint_eq(cut->len, full->len);
    ck_assert_mem_eq(cut->text, full->text, full->len);
    ck_assert_int_eq(danu_context_step_finish(c, rest, sizeof rest, &rl), DANU_OK);   /* nothing pending now */
    ck_assert_uint_eq(rl, 0);
    free(full); free(cut);
    danu_context_free(c);
}
END_TEST

/* Chat: the appended ids are the chat format's; a second turn closes the
 * open answer with </s> and appends the tail of the whole conversation
 * encoded at once. */
START_TEST(test_context_chat_append)
{
    danu_context *c = ctx_with(tiny_a, 1, 0.0, 0, 0);
    int32_t why;
    const char *roles[1] = { "user" }, *msg[1] = { "Why is the sky blue?" };
    ck_assert_int_eq(danu_context_chat_append(c, roles, msg, 1, 1), DANU_OK);
    danu_token ids[256];
    size_t n;
    ck_assert_int_eq(danu_chat_encode(danu_model_tokenizer(tiny_a), roles, msg, 1, 1, ids, 256, &n), DANU_OK);
    ck_assert_uint_eq(danu_context_n_tokens(c), n);
    ck_assert_mem_eq(danu_context_tokens(c), ids, n * sizeof(danu_token));
    ck_assert_int_eq(ids[0], 1);
    ck_assert_int_eq(danu_context_generate(c, 8, NULL, NULL, &why), DANU_OK);
    size_t after = danu_context_n_tokens(c);
    const char *m2[1] = { "And at night?" };
    ck_assert_int_eq(danu_context_chat_append(c, roles, m2, 1, 1), DANU_OK);
    ck_assert(danu_context_n_tokens(c) > after + 1);
    ck_assert_int_eq(danu_context_tokens(c)[after], 2);   /* the open answer was closed with </s> */
    /* the new turn follows an EOS: no dummy-prefix space, as HF tokenizes the whole conversation;
     * its ids are the tail of the two-turn conversation encoded at once */
    const char *r3[3] = { "user", "assistant", "user" }, *m3[3] = { "Why is the sky blue?", "x", "And at night?" };
    danu_token conv[512];
    size_t nc;
    ck_assert_int_eq(danu_chat_encode(danu_model_tokenizer(tiny_a), r3, m3, 3, 1, conv, 512, &nc), DANU_OK);
    size_t tail = danu_context_n_tokens(c) - after - 1;
    ck_assert_uint_lt(tail, nc);
    ck_assert_mem_eq(danu_context_tokens(c) + after + 1, conv + nc - tail, tail * sizeof(danu_token));
    danu_context_free(c);
}
END_TEST

int main(int argc, char **argv)
{
    const int slow = tu_slow_stage(argc, argv);
    tmp = tu_tmpdir("context");
    const char *pa = gd_synth(tmp, "tiny-a", 7, DANU_FORMAT_GGUF, DANU_TYPE_BF16);
    const char *pb = gd_synth(tmp, "tiny-b", 11, DANU_FORMAT_HF, DANU_TYPE_BF16);
    if (!pa || !pb || danu_model_load(pa, NULL, &tiny_a) != DANU_OK || danu_model_load(pb, NULL, &tiny_b) != DANU_OK) {
        fprintf(stderr, "cannot prepare the test models: %s\n", danu_last_error());
        return 1;
    }
    Suite *s = suite_create(slow ? "context_slow" : "context");
    TCase *tc = tcase_create(slow ? "slow" : "context");
    tcase_set_timeout(tc, 600);
    if (slow) {
        tcase_add_test(tc, test_context_idle_workers);
    } else {
        tcase_add_test(tc, test_context_generate_goldens);
        tcase_add_test(tc, test_context_state_roundtrip);
        tcase_add_test(tc, test_context_state_rejects_corrupt);
        tcase_add_test(tc, test_context_state_rejects_other_model);
        tcase_add_test(tc, test_context_state_file_roundtrip);
        tcase_add_test(tc, test_context_rewind_regenerates);
        tcase_add_test(tc, test_context_prefix_reuse);
        tcase_add_test(tc, test_context_deep_rewind_refused);
        tcase_add_test(tc, test_context_concurrency_and_seed);
        tcase_add_test(tc, test_context_abort);
        tcase_add_test(tc, test_context_full_refuses);
        tcase_add_test(tc, test_context_full_shift);
        tcase_add_test(tc, test_context_kv_q8_operations);
        tcase_add_test(tc, test_context_bad_token_ids);
        tcase_add_test(tc, test_context_stop_string);
        tcase_add_test(tc, test_context_step_finish_releases_held_text);
        tcase_add_test(tc, test_context_chat_append);
    }
    suite_add_tcase(s, tc);
    int failed = tu_run(s);
    danu_model_free(tiny_a);
    danu_model_free(tiny_b);
    tu_rmtree(tmp);
    free(tmp);
    return failed ? 1 : 0;
}
