/* test_threads.c - thread pools and work in slices (danu.h "Thread pools
 * (0.2)" and "Work in slices (0.2)"): a host job system makes libdanu start
 * no thread and gives the logits of the default pool, whatever order it runs
 * the items in; contexts on one model, and models on one explicit pool, run
 * concurrently and give what one context alone gives; a pool freed before
 * its users still works; sliced evaluation (eval_begin, prompt_begin,
 * chat_append_begin + danu_context_work, step_sliced) is bit-identical to
 * the blocking calls for any budget and thread count; and the statuses of
 * the edge cases (budget 0 and negative, nothing pending, calls refused
 * while work is pending, abort between slices, clear and free with work
 * pending). No timing assertions: budgets only change how the work is cut. */
#include <check.h>
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "danu.h"
#include "testutil.h"
#include "golden.h"

static char *tmp;
static const char *tiny_a_path, *tiny_b_path;

#define N_CTX 256
#define MAX_IDS 128

static const char *story = "Once upon a time, in a small village by the sea, there lived an old blacksmith named "
                           "Brom. Every morning he lit the forge and mended the swords of travellers.";

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

/* Threads of this process now (Linux: entries of /proc/self/task). */
static int thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

/* The thread count once threads that were joined have left /proc (a joined
 * thread can still be listed for a moment while the kernel finishes its
 * exit): waits up to 2 s for the count to drop to at most `want`. */
static int threads_settled(int want)
{
    int n = thread_count();
    for (int i = 0; i < 2000 && n > want; i++) {
        struct timespec ts = { 0, 1000000L };
        nanosleep(&ts, NULL);
        n = thread_count();
    }
    return n;
}

static danu_model *load_model(const char *path, danu_pool *pool, tu_counter *count)
{
    danu_allocator al = { sizeof al, tu_count_malloc, tu_count_realloc, tu_count_free, count };
    danu_options *o = NULL;
    CHECK_OK(danu_options_create(count ? &al : NULL, &o));
    CHECK_OK(danu_options_set_pool(o, pool));
    danu_model *m = NULL;
    CHECK_OK(danu_model_load(path, o, &m));
    danu_options_free(o);
    return m;
}

/* A greedy context: threads 0 = the options' default, n_batch 0 = default. */
static danu_context *make_ctx(danu_model *m, danu_pool *pool, int threads, int n_batch)
{
    danu_options *o = NULL;
    CHECK_OK(danu_options_create(NULL, &o));
    CHECK_OK(danu_options_set_pool(o, pool));
    if (threads) CHECK_OK(danu_options_set_int(o, DANU_OPT_N_THREADS, threads));
    if (n_batch) CHECK_OK(danu_options_set_int(o, DANU_OPT_N_BATCH, n_batch));
    CHECK_OK(danu_options_set_int(o, DANU_OPT_N_CTX, N_CTX));
    CHECK_OK(danu_options_set_float(o, DANU_OPT_TEMPERATURE, 0.0));
    CHECK_OK(danu_options_set_int(o, DANU_OPT_IGNORE_EOS, 1));
    danu_context *c = NULL;
    CHECK_OK(danu_context_create(m, o, &c));
    danu_options_free(o);
    return c;
}

static size_t encode(danu_model *m, const char *text, danu_token *ids)
{
    size_t n = 0;
    CHECK_OK(danu_tokenizer_encode(danu_model_tokenizer(m), text, strlen(text), DANU_TOKENIZE_ADD_BOS, ids, MAX_IDS,
                                   &n));
    return n;
}

static size_t vocab_of(const danu_model *m)
{
    int64_t v = 0;
    CHECK_OK(danu_model_get_int(m, DANU_INFO_VOCAB, &v));
    return (size_t)v;
}

/* Both contexts hold the same tokens and bit-identical logits. */
static void check_same(danu_context *c, danu_context *ref, size_t vocab, const char *what)
{
    const size_t n = danu_context_n_tokens(ref);
    CHECK(danu_context_n_tokens(c) == n, "%s: %zu tokens, reference %zu", what, danu_context_n_tokens(c), n);
    CHECK(!memcmp(danu_context_tokens(c), danu_context_tokens(ref), n * sizeof(danu_token)), "%s: other tokens", what);
    const float *a = danu_context_logits(c), *b = danu_context_logits(ref);
    CHECK(a && b, "%s: no logits", what);
    for (size_t i = 0; i < vocab; i++)
        CHECK(!memcmp(&a[i], &b[i], sizeof a[i]), "%s: logit %zu is %.9g, reference %.9g", what, i, a[i], b[i]);
}

/* n greedy tokens by generate. */
typedef struct ids_out { danu_token ids[64]; int n; char text[4096]; size_t len; } ids_out;

static int32_t collect_cb(void *user, danu_token id, const char *text, size_t len)
{
    ids_out *o = user;
    if (id >= 0 && o->n < 64) o->ids[o->n++] = id;
    if (o->len + len < sizeof o->text) { memcpy(o->text + o->len, text, len); o->len += len; o->text[o->len] = 0; }
    return 0;
}

static void generate(danu_context *c, int n, ids_out *out)
{
    memset(out, 0, sizeof *out);
    int32_t why = -1;
    CHECK_OK(danu_context_generate(c, n, collect_cb, out, &why));
    CHECK(why == DANU_STOP_LENGTH && out->n == n, "generate: reason %d, %d tokens", why, out->n);
}

/* Run the pending work with budget_us per call until it finishes; the
 * pending count never grows. Returns the number of calls. */
static long work_all(danu_context *c, int64_t budget_us)
{
    long calls = 0;
    size_t pending = danu_context_pending(c);
    danu_status s;
    do {
        s = danu_context_work(c, budget_us);
        calls++;
        CHECK(s == DANU_IN_PROGRESS || s == DANU_OK, "work(%lld): status %d: %s", (long long)budget_us, s,
              tu_last_error());
        const size_t now = danu_context_pending(c);
        CHECK(now <= pending, "pending grew from %zu to %zu", pending, now);
        pending = now;
        CHECK(calls < 1000000, "work(%lld) never finishes", (long long)budget_us);
    } while (s == DANU_IN_PROGRESS);
    CHECK(danu_context_pending(c) == 0, "finished with %zu pending", danu_context_pending(c));
    return calls;
}

/* ------------------------------------------------------------------ */
/* A host job system: a fixed worker set that the test creates itself  */
/* ------------------------------------------------------------------ */

enum { JS_WORKERS, JS_SERIAL, JS_REVERSE };

typedef struct batch {
    danu_job_fn job;
    void *data;
    int32_t n, next, done;
    struct batch *link;
} batch;

typedef struct jobsys {
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    batch *head;            /* batches with items nobody took yet */
    int stop, n_workers, mode;
    pthread_t th[4];
    /* what libdanu asked for, under mu */
    long calls;
    int32_t min_items, max_items;
    int max_threads, min_threads;
} jobsys;

static void js_unlink(jobsys *js, batch *b)
{
    for (batch **p = &js->head; *p; p = &(*p)->link)
        if (*p == b) { *p = b->link; return; }
}

/* Take one item of b and run it; called and returns with mu held. */
static void js_run_one(jobsys *js, batch *b)
{
    const int32_t i = b->next++;
    if (b->next == b->n) js_unlink(js, b);
    pthread_mutex_unlock(&js->mu);
    b->job(b->data, i);
    pthread_mutex_lock(&js->mu);
    if (++b->done == b->n) pthread_cond_broadcast(&js->done);
}

static void *js_worker(void *arg)
{
    jobsys *js = arg;
    pthread_mutex_lock(&js->mu);
    for (;;) {
        while (!js->stop && !js->head) pthread_cond_wait(&js->work, &js->mu);
        if (!js->head) break;
        js_run_one(js, js->head);
    }
    pthread_mutex_unlock(&js->mu);
    return NULL;
}

static void js_parallel_for(void *user, danu_job_fn job, void *data, int32_t n)
{
    jobsys *js = user;
    const int threads = thread_count();
    pthread_mutex_lock(&js->mu);
    js->calls++;
    if (n < js->min_items) js->min_items = n;
    if (n > js->max_items) js->max_items = n;
    if (threads > js->max_threads) js->max_threads = threads;
    if (threads < js->min_threads) js->min_threads = threads;
    pthread_mutex_unlock(&js->mu);
    if (n <= 0) return;
    if (js->mode == JS_SERIAL) {
        for (int32_t i = 0; i < n; i++) job(data, i);
        return;
    }
    if (js->mode == JS_REVERSE) {
        for (int32_t i = n - 1; i >= 0; i--) job(data, i);
        return;
    }
    batch b = { job, data, n, 0, 0, NULL };
    pthread_mutex_lock(&js->mu);
    b.link = js->head;
    js->head = &b;
    pthread_cond_broadcast(&js->work);
    while (b.next < b.n) js_run_one(js, &b);   /* the caller works too */
    while (b.done < b.n) pthread_cond_wait(&js->done, &js->mu);
    pthread_mutex_unlock(&js->mu);
}

static void js_start(jobsys *js, int mode, int n_workers)
{
    memset(js, 0, sizeof *js);
    pthread_mutex_init(&js->mu, NULL);
    pthread_cond_init(&js->work, NULL);
    pthread_cond_init(&js->done, NULL);
    js->mode = mode;
    js->min_items = INT32_MAX;
    js->min_threads = 1 << 30;
    for (int i = 0; i < n_workers; i++) ck_assert_int_eq(pthread_create(&js->th[i], NULL, js_worker, js), 0);
    js->n_workers = n_workers;
}

static void js_stop(jobsys *js)
{
    pthread_mutex_lock(&js->mu);
    js->stop = 1;
    pthread_cond_broadcast(&js->work);
    pthread_mutex_unlock(&js->mu);
    for (int i = 0; i < js->n_workers; i++) pthread_join(js->th[i], NULL);
    pthread_cond_destroy(&js->work);
    pthread_cond_destroy(&js->done);
    pthread_mutex_destroy(&js->mu);
}

static danu_pool *host_pool(jobsys *js, int items)
{
    danu_options *o = NULL;
    CHECK_OK(danu_options_create(NULL, &o));
    CHECK_OK(danu_options_set_int(o, DANU_OPT_N_THREADS, items));
    danu_pool *p = NULL;
    CHECK_OK(danu_pool_create_host(o, js_parallel_for, js, &p));
    danu_options_free(o);
    return p;
}

/* Reference run on the model's own pool: logits after the prompt, then 16
 * greedy ids. */
typedef struct reference { float *logits; ids_out gen; size_t vocab; } reference;

static void reference_run(const char *path, const danu_token *ids, size_t n, reference *r)
{
    danu_model *m = load_model(path, NULL, NULL);
    danu_context *c = make_ctx(m, NULL, 0, 0);
    r->vocab = vocab_of(m);
    CHECK_OK(danu_context_eval(c, ids, n, NULL));
    r->logits = malloc(r->vocab * sizeof(float));
    memcpy(r->logits, danu_context_logits(c), r->vocab * sizeof(float));
    generate(c, 16, &r->gen);
    danu_context_free(c);
    danu_model_free(m);
}

static void check_logits(const float *got, const float *want, size_t vocab, const char *what)
{
    CHECK(got != NULL, "%s: no logits", what);
    for (size_t i = 0; i < vocab; i++)
        CHECK(!memcmp(&got[i], &want[i], sizeof got[i]), "%s: logit %zu is %.9g, reference %.9g", what, i, got[i],
              want[i]);
}

/* ------------------------------------------------------------------ */
/* Pools                                                               */
/* ------------------------------------------------------------------ */

/* Creating, sizing and freeing pools; the argument errors. */
START_TEST(test_pool_api)
{
    danu_options *o = NULL;
    CHECK_OK(danu_options_create(NULL, &o));
    CHECK_OK(danu_options_set_int(o, DANU_OPT_N_THREADS, 2));
    danu_pool *p = NULL, *h = NULL;
    jobsys js;
    js_start(&js, JS_SERIAL, 0);
    ck_assert_int_eq(danu_pool_create(o, NULL), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(danu_pool_create_host(o, NULL, &js, &h), DANU_ERR_INVALID_ARG);
    ck_assert_ptr_null(h);
    ck_assert_int_eq(danu_pool_create_host(o, js_parallel_for, &js, NULL), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(danu_options_set_pool(NULL, NULL), DANU_ERR_INVALID_ARG);
    CHECK_OK(danu_pool_create(o, &p));
    ck_assert_int_eq(danu_pool_size(p), 2);
    CHECK_OK(danu_options_set_int(o, DANU_OPT_N_THREADS, 3));
    CHECK_OK(danu_pool_create_host(o, js_parallel_for, &js, &h));
    ck_assert_int_eq(danu_pool_size(h), 3);
    ck_assert_int_eq(danu_pool_size(NULL), 0);
    CHECK_OK(danu_options_set_pool(o, p));
    CHECK_OK(danu_options_set_pool(o, h));
    CHECK_OK(danu_options_set_pool(o, NULL));
    danu_options_free(o);
    danu_pool *d = NULL;   /* NULL options: the defaults (every core) */
    CHECK_OK(danu_pool_create(NULL, &d));
    ck_assert_int_ge(danu_pool_size(d), 1);
    danu_pool_free(d);
    danu_pool_free(p);
    danu_pool_free(h);
    danu_pool_free(NULL);
    ck_assert_int_eq(js.calls, 0);
    js_stop(&js);
}
END_TEST

/* On a host job system (2 workers + the calling thread, created before the
 * baseline) libdanu starts no thread: not at load, not in a context, not
 * during evaluation, generation or sliced work; the callback gets 1..3
 * items, and the logits and greedy tokens equal the model's own pool's. */
START_TEST(test_host_pool_starts_no_thread)
{
    danu_token ids[MAX_IDS];
    size_t n;
    {
        danu_model *m = load_model(tiny_a_path, NULL, NULL);
        n = encode(m, story, ids);
        danu_model_free(m);
    }
    reference ref;
    reference_run(tiny_a_path, ids, n, &ref);

    jobsys js;
    js_start(&js, JS_WORKERS, 2);
    const int base = threads_settled(3);   /* this thread and the 2 workers */
    ck_assert_int_ge(base, 3);
    danu_pool *pool = host_pool(&js, 3);
    ck_assert_int_eq(thread_count(), base);
    danu_model *m = load_model(tiny_a_path, pool, NULL);
    ck_assert_int_eq(thread_count(), base);
    danu_context *c = make_ctx(m, pool, 0, 0);
    ck_assert_int_eq(thread_count(), base);
    CHECK_OK(danu_context_eval(c, ids, n, NULL));
    ck_assert_int_eq(thread_count(), base);
    check_logits(danu_context_logits(c), ref.logits, ref.vocab, "host pool eval");
    ids_out gen;
    generate(c, 16, &gen);
    ck_assert_mem_eq(gen.ids, ref.gen.ids, sizeof gen.ids);
    ck_assert_int_eq(thread_count(), base);
    const long calls_blocking = js.calls;
    ck_assert_int_gt(calls_blocking, 0);

    /* the same through slices, and a context that inherits the model's pool */
    danu_context *s = make_ctx(m, NULL, 0, 8);
    CHECK_OK(danu_context_eval_begin(s, ids, n));
    work_all(s, 0);
    ck_assert_int_eq(thread_count(), base);
    check_logits(danu_context_logits(s), ref.logits, ref.vocab, "host pool, sliced eval");
    danu_token id;
    char text[256];
    size_t len;
    int32_t why;
    for (int i = 0; i < 4; i++) {
        danu_status st;
        while ((st = danu_context_step_sliced(s, 0, &id, text, sizeof text, &len, &why)) == DANU_IN_PROGRESS) {}
        ck_assert_int_eq(st, DANU_OK);
        ck_assert_int_eq(id, ref.gen.ids[i]);
    }
    ck_assert_int_gt(js.calls, calls_blocking);
    ck_assert_int_eq(thread_count(), base);

    danu_context_free(s);
    danu_context_free(c);
    danu_model_free(m);
    danu_pool_free(pool);
    ck_assert_int_eq(threads_settled(base), base);
    pthread_mutex_lock(&js.mu);
    CHECK(js.min_items >= 1 && js.max_items <= 3, "items per call %d..%d, not within 1..3", js.min_items,
          js.max_items);
    CHECK(js.min_threads == base && js.max_threads == base, "threads during the callback %d..%d, baseline %d",
          js.min_threads, js.max_threads, base);
    pthread_mutex_unlock(&js.mu);
    js_stop(&js);
    free(ref.logits);
}
END_TEST

/* A host that runs every item on the calling thread, in order or in
 * reverse, gets the same results. */
START_TEST(test_host_pool_serial_and_reverse)
{
    danu_token ids[MAX_IDS];
    size_t n;
    {
        danu_model *m = load_model(tiny_a_path, NULL, NULL);
        n = encode(m, story, ids);
        danu_model_free(m);
    }
    reference ref;
    reference_run(tiny_a_path, ids, n, &ref);
    for (int mode = JS_SERIAL; mode <= JS_REVERSE; mode++) {
        jobsys js;
        js_start(&js, mode, 0);
        const int base = threads_settled(1);
        danu_pool *pool = host_pool(&js, 4);
        danu_model *m = load_model(tiny_a_path, pool, NULL);
        danu_pool_free(pool);   /* the model keeps its reference */
        danu_context *c = make_ctx(m, NULL, 4, 16);
        CHECK_OK(danu_context_eval(c, ids, n, NULL));
        check_logits(danu_context_logits(c), ref.logits, ref.vocab, mode == JS_SERIAL ? "serial" : "reverse");
        ids_out gen;
        generate(c, 16, &gen);
        ck_assert_mem_eq(gen.ids, ref.gen.ids, sizeof gen.ids);
        ck_assert_int_eq(thread_count(), base);
        danu_context_free(c);
        danu_model_free(m);
        ck_assert_int_gt(js.calls, 0);
        CHECK(js.min_items >= 1 && js.max_items <= 4, "items per call %d..%d", js.min_items, js.max_items);
        js_stop(&js);
    }
    free(ref.logits);
}
END_TEST

typedef struct runner {
    danu_model *m;
    danu_context *c;        /* NULL: the runner creates (and frees) its own */
    pthread_barrier_t *start;
    const danu_token *ids;
    size_t n;
    ids_out gen;
    danu_status st;
} runner;

static void *runner_main(void *arg)
{
    runner *r = arg;
    danu_context *c = r->c;
    danu_options *o = NULL;
    r->st = DANU_OK;
    if (!c) {   /* no Check assertions off the test's thread: statuses are reported */
        danu_options_create(NULL, &o);
        danu_options_set_int(o, DANU_OPT_N_THREADS, 2);
        danu_options_set_int(o, DANU_OPT_N_CTX, N_CTX);
        danu_options_set_float(o, DANU_OPT_TEMPERATURE, 0.0);
        danu_options_set_int(o, DANU_OPT_IGNORE_EOS, 1);
    }
    if (r->start) pthread_barrier_wait(r->start);
    if (!c && (r->st = danu_context_create(r->m, o, &c)) != DANU_OK) goto out;
    if ((r->st = danu_context_eval(c, r->ids, r->n, NULL)) != DANU_OK) goto out;
    memset(&r->gen, 0, sizeof r->gen);
    int32_t why;
    r->st = danu_context_generate(c, 16, collect_cb, &r->gen, &why);
out:
    if (!r->c) danu_context_free(c);
    danu_options_free(o);
    return NULL;
}

/* Four contexts on one model (its own pool, started by whichever context
 * comes first), each created and driven on its own thread at the same time,
 * generate what each prompt gives on a context alone. */
START_TEST(test_model_pool_shared_by_contexts)
{
    danu_model *m = load_model(tiny_a_path, NULL, NULL);
    static const char *prompts[4] = { "The capital of France is", "Once upon a time",
                                      "The blacksmith mended the sword and", "Water boils at" };
    danu_token ids[4][MAX_IDS];
    size_t n[4];
    runner alone[4], together[4];
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 4);
    for (int i = 0; i < 4; i++) {
        n[i] = encode(m, prompts[i], ids[i]);
        alone[i] = (runner){ m, NULL, NULL, ids[i], n[i], { { 0 }, 0, "", 0 }, 0 };
        together[i] = alone[i];
        together[i].start = &bar;
        runner_main(&alone[i]);
        CHECK(alone[i].st == DANU_OK && alone[i].gen.n == 16, "alone %d: status %d", i, alone[i].st);
    }
    pthread_t th[4];
    for (int i = 0; i < 4; i++) ck_assert_int_eq(pthread_create(&th[i], NULL, runner_main, &together[i]), 0);
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&bar);
    for (int i = 0; i < 4; i++) {
        CHECK(together[i].st == DANU_OK, "context %d: status %d", i, together[i].st);
        ck_assert_mem_eq(together[i].gen.ids, alone[i].gen.ids, sizeof alone[i].gen.ids);
        ck_assert_str_eq(together[i].gen.text, alone[i].gen.text);
    }
    danu_model_free(m);
}
END_TEST

/* Contexts on a host pool may enter the host's parallel-for from several
 * threads at once: three contexts driven concurrently on the test's job
 * system give what each gives alone, and no thread is started. */
START_TEST(test_host_pool_concurrent_contexts)
{
    jobsys js;
    js_start(&js, JS_WORKERS, 2);
    const int base = threads_settled(3);
    danu_pool *pool = host_pool(&js, 3);
    danu_model *m = load_model(tiny_a_path, pool, NULL);
    danu_pool_free(pool);
    static const char *prompts[3] = { "The capital of France is", "Once upon a time", "Water boils at" };
    danu_token ids[3][MAX_IDS];
    runner alone[3], together[3];
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 3);
    for (int i = 0; i < 3; i++) {
        const size_t n = encode(m, prompts[i], ids[i]);
        alone[i] = (runner){ m, NULL, NULL, ids[i], n, { { 0 }, 0, "", 0 }, 0 };
        together[i] = alone[i];
        together[i].start = &bar;
        runner_main(&alone[i]);
        CHECK(alone[i].st == DANU_OK && alone[i].gen.n == 16, "alone %d: status %d", i, alone[i].st);
    }
    pthread_t th[3];
    for (int i = 0; i < 3; i++) ck_assert_int_eq(pthread_create(&th[i], NULL, runner_main, &together[i]), 0);
    for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&bar);
    for (int i = 0; i < 3; i++) {
        CHECK(together[i].st == DANU_OK, "context %d: status %d", i, together[i].st);
        ck_assert_mem_eq(together[i].gen.ids, alone[i].gen.ids, sizeof alone[i].gen.ids);
    }
    danu_model_free(m);
    ck_assert_int_eq(threads_settled(base), base);
    pthread_mutex_lock(&js.mu);
    CHECK(js.calls > 0 && js.min_items >= 1 && js.max_items <= 3, "%ld calls, items %d..%d", js.calls,
          js.min_items, js.max_items);
    CHECK(js.max_threads <= base + 3, "threads during the callback up to %d: baseline %d + 3 runners",
          js.max_threads, base);
    pthread_mutex_unlock(&js.mu);
    js_stop(&js);
}
END_TEST

/* One explicit pool shared by two models (tiny-a and tiny-b), released by
 * the caller before the contexts run: contexts of both models run on it at
 * once and give the results of their models' own pools; the process gains
 * at most the pool's threads. */
START_TEST(test_explicit_pool_shared_by_models)
{
    danu_token ids_a[MAX_IDS], ids_b[24];
    size_t na;
    {
        danu_model *m = load_model(tiny_a_path, NULL, NULL);
        na = encode(m, story, ids_a);
        danu_model_free(m);
    }
    for (int i = 0; i < 24; i++) ids_b[i] = (danu_token)(1 + (i * 37) % 1000);
    reference ra, rb;
    reference_run(tiny_a_path, ids_a, na, &ra);
    reference_run(tiny_b_path, ids_b, 24, &rb);

    const int base = threads_settled(1);
    danu_options *o = NULL;
    CHECK_OK(danu_options_create(NULL, &o));
    CHECK_OK(danu_options_set_int(o, DANU_OPT_N_THREADS, 2));
    danu_pool *pool = NULL;
    CHECK_OK(danu_pool_create(o, &pool));
    danu_options_free(o);
    const int size = danu_pool_size(pool);
    danu_model *ma = load_model(tiny_a_path, pool, NULL), *mb = load_model(tiny_b_path, pool, NULL);
    danu_context *ca = make_ctx(ma, NULL, 0, 0), *cb = make_ctx(mb, NULL, 0, 0);
    danu_pool_free(pool);   /* the models and contexts hold it */
    runner a = { ma, ca, NULL, ids_a, na, { { 0 }, 0, "", 0 }, 0 }, b = { mb, cb, NULL, ids_b, 24, { { 0 }, 0, "", 0 },
                                                                           0 };
    pthread_t ta, tb;
    ck_assert_int_eq(pthread_create(&ta, NULL, runner_main, &a), 0);
    ck_assert_int_eq(pthread_create(&tb, NULL, runner_main, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK(a.st == DANU_OK && b.st == DANU_OK, "statuses %d %d", a.st, b.st);
    ck_assert_mem_eq(a.gen.ids, ra.gen.ids, sizeof a.gen.ids);
    ck_assert_mem_eq(b.gen.ids, rb.gen.ids, sizeof b.gen.ids);
    const int during = thread_count();
    CHECK(during - base <= size, "%d threads added by a pool of %d", during - base, size);
    /* again on this thread: the logits after the prompt */
    CHECK_OK(danu_context_clear(ca));
    CHECK_OK(danu_context_eval(ca, ids_a, na, NULL));
    check_logits(danu_context_logits(ca), ra.logits, ra.vocab, "tiny-a on the shared pool");
    CHECK_OK(danu_context_clear(cb));
    CHECK_OK(danu_context_eval(cb, ids_b, 24, NULL));
    check_logits(danu_context_logits(cb), rb.logits, rb.vocab, "tiny-b on the shared pool");
    danu_context_free(ca);
    danu_model_free(ma);
    CHECK_OK(danu_context_clear(cb));   /* one model gone, the other still runs on the pool */
    CHECK_OK(danu_context_eval(cb, ids_b, 24, NULL));
    check_logits(danu_context_logits(cb), rb.logits, rb.vocab, "tiny-b after tiny-a is freed");
    danu_context_free(cb);
    danu_model_free(mb);
    ck_assert_int_eq(threads_settled(base), base);   /* the last user joined the pool's threads */
    free(ra.logits);
    free(rb.logits);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Work in slices                                                      */
/* ------------------------------------------------------------------ */

/* eval_begin + work equals eval, bit for bit, for budgets 0, 100 us and
 * 1 s at 1 and 2 threads; so does the generation that follows, and a
 * second sliced eval on top of the cache. */
START_TEST(test_sliced_eval_equals_eval)
{
    danu_model *m = load_model(tiny_a_path, NULL, NULL);
    const size_t vocab = vocab_of(m);
    int64_t layers = 0;
    CHECK_OK(danu_model_get_int(m, DANU_INFO_LAYERS, &layers));
    danu_token ids[MAX_IDS];
    const size_t n = encode(m, story, ids);
    ck_assert_uint_gt(n, 32);   /* past tiny-a's window of 32 */
    static const int64_t budgets[] = { 0, 100, 1000000 };
    for (int threads = 1; threads <= 2; threads++) {
        danu_context *ref = make_ctx(m, NULL, threads, 16);
        CHECK_OK(danu_context_eval(ref, ids, n - 5, NULL));
        for (size_t b = 0; b < sizeof budgets / sizeof budgets[0]; b++) {
            char what[64];
            snprintf(what, sizeof what, "%d threads, budget %lld", threads, (long long)budgets[b]);
            danu_context *c = make_ctx(m, NULL, threads, 16);
            CHECK_OK(danu_context_eval_begin(c, ids, n - 5));
            ck_assert_uint_eq(danu_context_pending(c), n - 5);
            const long calls = work_all(c, budgets[b]);
            if (budgets[b] == 0)   /* one unit per call: at least one per layer of each batch */
                CHECK(calls >= (long)((n - 5 + 15) / 16) * layers, "%s: %ld calls", what, calls);
            check_same(c, ref, vocab, what);
            danu_context_free(c);
        }
        /* on top of the cache, and then generation */
        danu_context *c = make_ctx(m, NULL, threads, 16);
        CHECK_OK(danu_context_eval_begin(c, ids, n - 5));
        work_all(c, 100);
        CHECK_OK(danu_context_eval_begin(c, ids + n - 5, 5));
        ck_assert_uint_eq(danu_context_pending(c), 5);
        work_all(c, 0);
        danu_context *whole = make_ctx(m, NULL, threads, 16);
        CHECK_OK(danu_context_eval(whole, ids, n - 5, NULL));
        CHECK_OK(danu_context_eval(whole, ids + n - 5, 5, NULL));
        check_same(c, whole, vocab, "second sliced eval");
        ids_out g1, g2;
        generate(c, 12, &g1);
        generate(whole, 12, &g2);
        ck_assert_mem_eq(g1.ids, g2.ids, sizeof g1.ids);
        danu_context_free(whole);
        danu_context_free(c);
        danu_context_free(ref);
    }
    danu_model_free(m);
}
END_TEST

/* prompt_begin keeps the same prefix as prompt and ends with the same
 * cache and logits. */
START_TEST(test_sliced_prompt_equals_prompt)
{
    danu_model *m = load_model(tiny_a_path, NULL, NULL);
    const size_t vocab = vocab_of(m);
    danu_token a[MAX_IDS], b[MAX_IDS];
    const size_t na = encode(m, "The blacksmith mended the sword", a);
    const size_t nb = encode(m, "The blacksmith mended the shield and the helmet", b);
    for (int threads = 1; threads <= 2; threads++) {
        danu_context *c = make_ctx(m, NULL, threads, 4), *ref = make_ctx(m, NULL, threads, 4);
        CHECK_OK(danu_context_eval(c, a, na, NULL));
        CHECK_OK(danu_context_eval(ref, a, na, NULL));
        size_t reused = 1000, reused_ref = 2000;
        CHECK_OK(danu_context_prompt_begin(c, b, nb, &reused));
        CHECK_OK(danu_context_prompt(ref, b, nb, &reused_ref));
        ck_assert_uint_eq(reused, reused_ref);
        ck_assert_uint_gt(reused, 0);
        ck_assert_uint_eq(danu_context_pending(c), nb - reused);
        work_all(c, 0);
        check_same(c, ref, vocab, "prompt_begin");
        /* the whole prompt again: only the last token is evaluated */
        CHECK_OK(danu_context_prompt_begin(c, b, nb, &reused));
        CHECK_OK(danu_context_prompt(ref, b, nb, &reused_ref));
        ck_assert_uint_eq(reused, reused_ref);
        work_all(c, 100);
        check_same(c, ref, vocab, "prompt_begin of the cached prompt");
        ck_assert_int_eq(danu_context_prompt_begin(c, b, 0, NULL), DANU_ERR_INVALID_ARG);
        ck_assert_uint_eq(danu_context_pending(c), 0);
        danu_context_free(c);
        danu_context_free(ref);
    }
    danu_model_free(m);
}
END_TEST

static const char *roles1[] = { "system", "user" };
static const char *texts1[] = { "You are Brom, the village blacksmith. Answer in one sentence.",
                                "Can you mend my sword?" };
static const char *roles2[] = { "user" };
static const char *texts2[] = { "How much will it cost?" };

/* chat_append_begin + work equals chat_append, also for a second turn after
 * an assistant turn left open (closed with EOS first). */
START_TEST(test_sliced_chat_append_equals_chat_append)
{
    danu_model *m = load_model(tiny_a_path, NULL, NULL);
    const size_t vocab = vocab_of(m);
    for (int threads = 1; threads <= 2; threads++) {
        danu_context *c = make_ctx(m, NULL, threads, 8), *ref = make_ctx(m, NULL, threads, 8);
        CHECK_OK(danu_context_chat_append_begin(c, roles1, texts1, 2, 1));
        ck_assert_uint_gt(danu_context_pending(c), 0);
        CHECK_OK(danu_context_chat_append(ref, roles1, texts1, 2, 1));
        ck_assert_uint_eq(danu_context_pending(c), danu_context_n_tokens(ref));
        work_all(c, threads == 1 ? 0 : 100);
        check_same(c, ref, vocab, "chat_append_begin");
        ids_out g1, g2;
        generate(c, 6, &g1);
        generate(ref, 6, &g2);
        ck_assert_mem_eq(g1.ids, g2.ids, sizeof g1.ids);
        CHECK_OK(danu_context_chat_append_begin(c, roles2, texts2, 1, 1));
        CHECK_OK(danu_context_chat_append(ref, roles2, texts2, 1, 1));
        work_all(c, 1000000);
        check_same(c, ref, vocab, "second chat_append_begin");
        ck_assert_int_eq(danu_context_chat_append_begin(c, roles2, NULL, 1, 1), DANU_ERR_INVALID_ARG);
        ck_assert_uint_eq(danu_context_pending(c), 0);
        danu_context_free(c);
        danu_context_free(ref);
    }
    danu_model_free(m);
}
END_TEST

typedef struct stepped { danu_token ids[64]; int n; char text[4096]; size_t len; int32_t why; } stepped;

static void add_text(stepped *s, const char *t, size_t len)
{
    CHECK(s->len + len < sizeof s->text, "text too long");
    memcpy(s->text + s->len, t, len);
    s->len += len;
    s->text[s->len] = 0;
}

/* Up to max steps by danu_context_step (budget < 0) or step_sliced. */
static void run_steps(danu_context *c, int max, int64_t budget, stepped *out)
{
    memset(out, 0, sizeof *out);
    out->why = -1;
    char text[512];
    for (int i = 0; i < max && out->why < 0; i++) {
        danu_token id = -7;
        size_t len = 99;
        int32_t why = 99;
        danu_status st;
        if (budget < 0) {
            st = danu_context_step(c, &id, text, sizeof text, &len, &why);
        } else {
            long calls = 0;
            while ((st = danu_context_step_sliced(c, budget, &id, text, sizeof text, &len, &why)) ==
                   DANU_IN_PROGRESS) {
                CHECK(why == -1 && len == 0, "IN_PROGRESS with reason %d, %zu bytes", why, len);
                CHECK(id >= -1 && id < 32000, "IN_PROGRESS with id %d", id);
                CHECK(++calls < 100000, "step_sliced never finishes");
                id = -7, len = 99, why = 99;
            }
        }
        CHECK(st == DANU_OK, "step %d (budget %lld): status %d: %s", i, (long long)budget, st, tu_last_error());
        out->ids[out->n++] = id;
        add_text(out, text, len);
        out->why = why;
    }
    size_t len;
    CHECK_OK(danu_context_step_finish(c, text, sizeof text, &len));
    add_text(out, text, len);
}

/* step_sliced gives the ids, text and reason danu_context_step gives, for
 * any budget, also straight after a chat_append_begin (whose work it
 * finishes first), with and without EOS ending the reply. */
START_TEST(test_step_sliced_equals_step)
{
    danu_model *m = load_model(tiny_a_path, NULL, NULL);
    static const int64_t budgets[] = { 0, 100, 1000000 };
    for (int eos = 0; eos <= 1; eos++) {
        danu_context *ref = make_ctx(m, NULL, 2, 0);
        CHECK_OK(danu_context_set_int(ref, DANU_OPT_IGNORE_EOS, !eos));
        CHECK_OK(danu_context_add_stop_string(ref, "\n\n"));
        CHECK_OK(danu_context_chat_append(ref, roles1, texts1, 2, 1));
        stepped want;
        run_steps(ref, 24, -1, &want);
        ck_assert_int_gt(want.n, 0);
        for (size_t b = 0; b < sizeof budgets / sizeof budgets[0]; b++) {
            for (int begin = 0; begin <= 1; begin++) {
                danu_context *c = make_ctx(m, NULL, 2, 0);
                CHECK_OK(danu_context_set_int(c, DANU_OPT_IGNORE_EOS, !eos));
                CHECK_OK(danu_context_add_stop_string(c, "\n\n"));
                if (begin) CHECK_OK(danu_context_chat_append_begin(c, roles1, texts1, 2, 1));
                else CHECK_OK(danu_context_chat_append(c, roles1, texts1, 2, 1));
                stepped got;
                run_steps(c, 24, budgets[b], &got);
                CHECK(got.n == want.n && !memcmp(got.ids, want.ids, sizeof got.ids),
                      "budget %lld, begin %d: other ids (%d steps, %d expected)", (long long)budgets[b], begin, got.n,
                      want.n);
                ck_assert_str_eq(got.text, want.text);
                ck_assert_int_eq(got.why, want.why);
                ck_assert_uint_eq(danu_context_n_tokens(c), danu_context_n_tokens(ref));
                ck_assert_uint_eq(danu_context_pending(c), 0);
                danu_context_free(c);
            }
        }
        danu_context_free(ref);
    }
    danu_model_free(m);
}
END_TEST

/* The statuses of the edge cases: a negative budget, nothing pending,
 * queuing nothing, a bad token, and every call that is refused while work
 * is pending (which then still finishes correctly); pending counts down one
 * unit per budget-0 call. */
START_TEST(test_work_statuses)
{
    danu_model *m = load_model(tiny_a_path, NULL, NULL);
    const size_t vocab = vocab_of(m);
    danu_token ids[MAX_IDS];
    const size_t n = encode(m, story, ids);
    danu_context *c = make_ctx(m, NULL, 2, 8), *ref = make_ctx(m, NULL, 2, 8);

    ck_assert_int_eq(danu_context_work(NULL, 0), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(danu_context_work(c, -1), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(danu_context_work(c, 0), DANU_OK);   /* nothing pending */
    ck_assert_int_eq(danu_context_work(c, 1000000), DANU_OK);
    ck_assert_uint_eq(danu_context_pending(NULL), 0);
    ck_assert_uint_eq(danu_context_pending(c), 0);
    ck_assert_int_eq(danu_context_eval_begin(NULL, ids, n), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(danu_context_eval_begin(c, NULL, 3), DANU_ERR_INVALID_ARG);
    CHECK_OK(danu_context_eval_begin(c, ids, 0));   /* nothing queued */
    ck_assert_uint_eq(danu_context_pending(c), 0);
    ck_assert_int_eq(danu_context_work(c, 0), DANU_OK);
    const danu_token bad[3] = { 1, 32000, 2 };
    ck_assert_int_eq(danu_context_eval_begin(c, bad, 3), DANU_ERR_BAD_TOKEN);
    ck_assert_uint_eq(danu_context_pending(c), 0);
    ck_assert_uint_eq(danu_context_n_tokens(c), 0);
    danu_token id;
    char text[64];
    size_t len;
    int32_t why;
    /* no logits yet */
    ck_assert_int_eq(danu_context_step_sliced(c, 0, &id, text, sizeof text, &len, &why), DANU_ERR_STATE);

    /* a few tokens cached, then work queued and one slice run */
    CHECK_OK(danu_context_eval(c, ids, 4, NULL));
    CHECK_OK(danu_context_eval(ref, ids, 4, NULL));
    ck_assert_int_eq(danu_context_step_sliced(c, -1, &id, text, sizeof text, &len, &why), DANU_ERR_INVALID_ARG);
    ck_assert_uint_eq(danu_context_pending(c), 0);
    ck_assert_uint_eq(danu_context_n_tokens(c), 4);
    size_t state_len = danu_context_state_size(ref);
    void *state = malloc(state_len);
    CHECK_OK(danu_context_state_save(ref, state, state_len, &state_len));
    CHECK_OK(danu_context_eval_begin(c, ids + 4, n - 4));
    ck_assert_uint_eq(danu_context_pending(c), n - 4);
    ck_assert_int_eq(danu_context_work(c, 0), DANU_IN_PROGRESS);
    const size_t pending = danu_context_pending(c);
    ck_assert_uint_gt(pending, 0);
    ck_assert_uint_le(pending, n - 4);

    /* refused while pending, and changing nothing */
    size_t reused;
    danu_token sampled;
    ck_assert_int_eq(danu_context_eval(c, ids, 2, NULL), DANU_ERR_STATE);
    ck_assert_int_eq(danu_context_prompt(c, ids, 2, &reused), DANU_ERR_STATE);
    ck_assert_int_eq(danu_context_step(c, &id, text, sizeof text, &len, &why), DANU_ERR_STATE);
    ck_assert_int_eq(danu_context_generate(c, 4, NULL, NULL, &why), DANU_ERR_STATE);
    ck_assert_int_eq(danu_context_sample(c, &sampled), DANU_ERR_STATE);
    ck_assert_int_eq(danu_context_chat_append(c, roles2, texts2, 1, 1), DANU_ERR_STATE);
    ck_assert_int_eq(danu_context_rewind(c, danu_context_n_tokens(c)), DANU_ERR_STATE);
    ck_assert_int_eq(danu_context_state_save(c, state, state_len, &len), DANU_ERR_STATE);
    ck_assert_int_eq(danu_context_state_load(c, state, state_len), DANU_ERR_STATE);
    ck_assert_int_eq(danu_context_eval_begin(c, ids, 2), DANU_ERR_STATE);
    ck_assert_int_eq(danu_context_prompt_begin(c, ids, 2, &reused), DANU_ERR_STATE);
    ck_assert_int_eq(danu_context_chat_append_begin(c, roles2, texts2, 1, 1), DANU_ERR_STATE);
    ck_assert_uint_eq(danu_context_pending(c), pending);

    /* the rest, one unit per call: pending never grows and reaches 0 */
    work_all(c, 0);
    CHECK_OK(danu_context_eval(ref, ids + 4, n - 4, NULL));
    check_same(c, ref, vocab, "work after refused calls");
    ck_assert_int_eq(danu_context_work(c, 0), DANU_OK);
    ck_assert_int_eq(danu_context_work(c, -5), DANU_ERR_INVALID_ARG);
    /* and everything works again */
    CHECK_OK(danu_context_rewind(c, n - 1));   /* past tiny-a's window: only the last one */
    CHECK_OK(danu_context_state_load(c, state, state_len));
    CHECK_OK(danu_context_eval(c, ids + 4, n - 4, NULL));
    check_same(c, ref, vocab, "eval after the sliced work");
    free(state);
    danu_context_free(c);
    danu_context_free(ref);
    danu_model_free(m);
}
END_TEST

/* An abort between slices: the next work returns ABORTED, nothing is
 * pending, the batches finished before stay cached and correct (evaluating
 * the rest gives the uninterrupted logits). An abort before the *_begin
 * call is not counted. A sliced step aborted mid-way leaves the context as
 * before the token: stepping on gives the uninterrupted ids. */
START_TEST(test_abort_between_slices)
{
    danu_model *m = load_model(tiny_a_path, NULL, NULL);
    const size_t vocab = vocab_of(m);
    danu_token ids[MAX_IDS];
    const size_t n = encode(m, story, ids);
    danu_context *c = make_ctx(m, NULL, 2, 8), *ref = make_ctx(m, NULL, 2, 8);
    CHECK_OK(danu_context_eval(ref, ids, n, NULL));

    CHECK_OK(danu_context_eval_begin(c, ids, n));
    for (int i = 0; i < 6; i++) ck_assert_int_eq(danu_context_work(c, 0), DANU_IN_PROGRESS);
    danu_context_abort(c);
    ck_assert_int_eq(danu_context_work(c, 0), DANU_ERR_ABORTED);
    ck_assert_uint_eq(danu_context_pending(c), 0);
    ck_assert_int_eq(danu_context_work(c, 0), DANU_OK);
    const size_t k = danu_context_n_tokens(c);
    ck_assert_uint_lt(k, n);
    ck_assert_mem_eq(danu_context_tokens(c), ids, k * sizeof(danu_token));
    CHECK_OK(danu_context_eval(c, ids + k, n - k, NULL));
    check_same(c, ref, vocab, "eval after an aborted sliced eval");

    /* an abort while idle is forgotten by the next *_begin */
    CHECK_OK(danu_context_clear(c));
    danu_context_abort(c);
    CHECK_OK(danu_context_eval_begin(c, ids, n));
    work_all(c, 0);
    check_same(c, ref, vocab, "sliced eval after an idle abort");

    /* a sliced step aborted after its first slice */
    stepped want;
    run_steps(ref, 6, -1, &want);
    danu_token id;
    char text[512];
    size_t len;
    int32_t why;
    const size_t before = danu_context_n_tokens(c);
    ck_assert_int_eq(danu_context_step_sliced(c, 0, &id, text, sizeof text, &len, &why), DANU_IN_PROGRESS);
    danu_context_abort(c);
    ck_assert_int_eq(danu_context_step_sliced(c, 0, &id, text, sizeof text, &len, &why), DANU_ERR_ABORTED);
    ck_assert_int_eq(why, DANU_STOP_ABORTED);
    ck_assert_uint_eq(danu_context_pending(c), 0);
    ck_assert_uint_eq(danu_context_n_tokens(c), before);
    ck_assert_ptr_nonnull(danu_context_logits(c));
    stepped got;
    run_steps(c, 6, 0, &got);
    ck_assert_mem_eq(got.ids, want.ids, sizeof got.ids);
    ck_assert_str_eq(got.text, want.text);
    danu_context_free(c);
    danu_context_free(ref);
    danu_model_free(m);
}
END_TEST

/* An abort stops the pending work at the next slice wherever it arrives:
 * after each unit of a sliced eval (the layers of every batch and the parts
 * of the output layer) and of a sliced step. */
START_TEST(test_abort_at_every_slice)
{
    danu_model *m = load_model(tiny_a_path, NULL, NULL);
    const size_t vocab = vocab_of(m);
    danu_token ids[MAX_IDS];
    const size_t n = encode(m, "The blacksmith mended the sword", ids);
    danu_context *c = make_ctx(m, NULL, 2, 0), *ref = make_ctx(m, NULL, 2, 0);
    CHECK_OK(danu_context_eval(ref, ids, n, NULL));
    int units = 0;
    for (int k = 1;; k++) {   /* the eval: abort after k slices */
        CHECK_OK(danu_context_clear(c));
        CHECK_OK(danu_context_eval_begin(c, ids, n));
        danu_status st = DANU_IN_PROGRESS;
        for (int i = 0; i < k && st == DANU_IN_PROGRESS; i++) st = danu_context_work(c, 0);
        if (st == DANU_OK) break;   /* k slices finished it */
        ck_assert_int_eq(st, DANU_IN_PROGRESS);
        danu_context_abort(c);
        st = danu_context_work(c, 0);
        CHECK(st == DANU_ERR_ABORTED, "eval aborted after %d slices: work returns %d, %zu pending", k, st,
              danu_context_pending(c));
        ck_assert_uint_eq(danu_context_pending(c), 0);
        units = k;
    }
    ck_assert_int_gt(units, 0);
    CHECK_OK(danu_context_clear(c));
    CHECK_OK(danu_context_eval(c, ids, n, NULL));
    check_same(c, ref, vocab, "eval after the aborted ones");
    stepped want;
    run_steps(ref, 1, -1, &want);
    danu_token id;
    char text[512];
    size_t len;
    int32_t why;
    for (int k = 1;; k++) {   /* a step: abort after k slices */
        danu_status st = DANU_IN_PROGRESS;
        for (int i = 0; i < k && st == DANU_IN_PROGRESS; i++)
            st = danu_context_step_sliced(c, 0, &id, text, sizeof text, &len, &why);
        if (st == DANU_OK) break;
        ck_assert_int_eq(st, DANU_IN_PROGRESS);
        danu_context_abort(c);
        st = danu_context_step_sliced(c, 0, &id, text, sizeof text, &len, &why);
        CHECK(st == DANU_ERR_ABORTED && why == DANU_STOP_ABORTED, "step aborted after %d slices: %d, reason %d, "
              "%zu pending", k, st, why, danu_context_pending(c));
        ck_assert_uint_eq(danu_context_pending(c), 0);
        ck_assert_uint_eq(danu_context_n_tokens(c), n);
    }
    ck_assert_int_eq(id, want.ids[0]);   /* the uninterrupted step's token */
    danu_context_free(c);
    danu_context_free(ref);
    danu_model_free(m);
}
END_TEST

/* clear drops the pending work; the context then evaluates correctly. */
START_TEST(test_clear_drops_pending)
{
    danu_model *m = load_model(tiny_a_path, NULL, NULL);
    const size_t vocab = vocab_of(m);
    danu_token ids[MAX_IDS];
    const size_t n = encode(m, story, ids);
    danu_context *c = make_ctx(m, NULL, 1, 8), *ref = make_ctx(m, NULL, 1, 8);
    CHECK_OK(danu_context_eval(ref, ids, n, NULL));
    CHECK_OK(danu_context_eval_begin(c, ids, n));
    ck_assert_int_eq(danu_context_work(c, 0), DANU_IN_PROGRESS);
    CHECK_OK(danu_context_clear(c));
    ck_assert_uint_eq(danu_context_pending(c), 0);
    ck_assert_uint_eq(danu_context_n_tokens(c), 0);
    ck_assert_ptr_null(danu_context_logits(c));
    ck_assert_int_eq(danu_context_work(c, 0), DANU_OK);
    CHECK_OK(danu_context_eval(c, ids, n, NULL));
    check_same(c, ref, vocab, "eval after clear");
    /* a sliced step in flight is dropped too */
    danu_token id;
    char text[512];
    size_t len;
    int32_t why;
    ck_assert_int_eq(danu_context_step_sliced(c, 0, &id, text, sizeof text, &len, &why), DANU_IN_PROGRESS);
    ck_assert_uint_eq(danu_context_pending(c), 1);
    CHECK_OK(danu_context_clear(c));
    ck_assert_uint_eq(danu_context_pending(c), 0);
    CHECK_OK(danu_context_eval_begin(c, ids, n));
    work_all(c, 1000000);
    check_same(c, ref, vocab, "sliced eval after clear");
    danu_context_free(c);
    danu_context_free(ref);
    danu_model_free(m);
}
END_TEST

/* Freeing a context with work pending (eval, chat, a sliced step) returns
 * every byte to the allocator. */
START_TEST(test_free_with_pending)
{
    tu_counter count = { 0, 0, 0 };
    danu_model *m = load_model(tiny_a_path, NULL, &count);
    danu_token ids[MAX_IDS];
    const size_t n = encode(m, story, ids);
    for (int what = 0; what < 3; what++) {
        danu_context *c = make_ctx(m, NULL, 2, 8);
        if (what == 0) {
            CHECK_OK(danu_context_eval_begin(c, ids, n));
            ck_assert_int_eq(danu_context_work(c, 0), DANU_IN_PROGRESS);
        } else if (what == 1) {
            CHECK_OK(danu_context_chat_append_begin(c, roles1, texts1, 2, 1));
        } else {
            CHECK_OK(danu_context_eval(c, ids, n, NULL));
            danu_token id;
            char text[64];
            size_t len;
            int32_t why;
            ck_assert_int_eq(danu_context_step_sliced(c, 0, &id, text, sizeof text, &len, &why), DANU_IN_PROGRESS);
        }
        ck_assert_uint_gt(danu_context_pending(c), 0);
        danu_context_free(c);
    }
    danu_model_free(m);
    ck_assert_int_eq(count.live, 0);
}
END_TEST

typedef struct slicer { danu_context *c; danu_status st; } slicer;

static void *slice_main(void *arg)
{
    slicer *s = arg;
    s->st = danu_context_work(s->c, 0);
    return NULL;
}

/* Successive slices may run on different threads (one at a time). */
START_TEST(test_slices_on_different_threads)
{
    danu_model *m = load_model(tiny_a_path, NULL, NULL);
    const size_t vocab = vocab_of(m);
    danu_token ids[MAX_IDS];
    const size_t n = encode(m, story, ids);
    danu_context *c = make_ctx(m, NULL, 2, 8), *ref = make_ctx(m, NULL, 2, 8);
    CHECK_OK(danu_context_eval(ref, ids, n, NULL));
    CHECK_OK(danu_context_eval_begin(c, ids, n));
    slicer s = { c, DANU_IN_PROGRESS };
    for (int i = 0; s.st == DANU_IN_PROGRESS; i++) {
        pthread_t t;
        ck_assert_int_eq(pthread_create(&t, NULL, slice_main, &s), 0);
        pthread_join(t, NULL);
        ck_assert_int_lt(i, 100000);
    }
    ck_assert_int_eq(s.st, DANU_OK);
    check_same(c, ref, vocab, "slices on other threads");
    danu_context_free(c);
    danu_context_free(ref);
    danu_model_free(m);
}
END_TEST

int main(void)
{
    tmp = tu_tmpdir("threads");
    tiny_a_path = gd_synth(tmp, "tiny-a", 7, DANU_FORMAT_GGUF, DANU_TYPE_BF16);
    tiny_b_path = gd_synth(tmp, "tiny-b", 11, DANU_FORMAT_GGUF, DANU_TYPE_BF16);
    if (!tiny_a_path || !tiny_b_path) {
        fprintf(stderr, "cannot synthesize the test models: %s\n", danu_last_error());
        return 1;
    }
    Suite *s = suite_create("threads");
    TCase *tc = tcase_create("threads");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_pool_api);
    tcase_add_test(tc, test_host_pool_starts_no_thread);
    tcase_add_test(tc, test_host_pool_serial_and_reverse);
    tcase_add_test(tc, test_model_pool_shared_by_contexts);
    tcase_add_test(tc, test_host_pool_concurrent_contexts);
    tcase_add_test(tc, test_explicit_pool_shared_by_models);
    tcase_add_test(tc, test_sliced_eval_equals_eval);
    tcase_add_test(tc, test_sliced_prompt_equals_prompt);
    tcase_add_test(tc, test_sliced_chat_append_equals_chat_append);
    tcase_add_test(tc, test_step_sliced_equals_step);
    tcase_add_test(tc, test_work_statuses);
    tcase_add_test(tc, test_abort_between_slices);
    tcase_add_test(tc, test_abort_at_every_slice);
    tcase_add_test(tc, test_clear_drops_pending);
    tcase_add_test(tc, test_free_with_pending);
    tcase_add_test(tc, test_slices_on_different_threads);
    suite_add_tcase(s, tc);
    int failed = tu_run(s);
    tu_rmtree(tmp);
    free(tmp);
    return failed ? 1 : 0;
}
