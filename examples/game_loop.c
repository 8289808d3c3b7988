/* game_loop.c - an NPC reply generated inside a fixed-timestep game loop, on
 * the game's own job system.
 *
 * libdanu starts no thread here: its parallel work runs on a small worker
 * set the "engine" owns (danu_pool_create_host), and its evaluation is cut
 * into frame-sized slices (danu_context_chat_append_begin,
 * danu_context_work, danu_context_step_sliced). Each 60 Hz frame updates
 * the game, spends at most a budget (default 4 ms) on the model - first the
 * prompt, then the reply, token by token - renders the text that arrived,
 * and sleeps until the frame ends. The reply can be cancelled mid-way
 * (Enter on a terminal, or --cancel-after FRAMES into the reply): it is then
 * removed from the context. At the end it prints how long the model took
 * per frame. --budget-us 0 runs one slice (one layer) per frame.
 *
 *   game_loop MODEL [--budget-us US] [--workers N] [--max-frames N]
 *                   [--cancel-after FRAMES] [--temp T]
 */
#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "danu.h"

#define FRAME_NS 16666667LL  /* 60 Hz */
#define MAX_WORKERS 16
#define REPLY_TOKENS 64      /* an NPC says a sentence or two */

/* ---- The engine's job system --------------------------------------- */
/* A stand-in for an engine's job system: worker threads started before
 * the model is loaded, which run the items of a parallel-for together with
 * the thread that asked for it. libdanu hands it each parallel step of an
 * evaluation (danu_parallel_for_fn); one step runs at a time. */
typedef struct jobs {
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    danu_job_fn job;
    void *data;
    int32_t n, next, running;   /* the step's items: count, next to hand out, running */
    int busy, quit, n_workers;
    pthread_t workers[MAX_WORKERS];
} jobs;

static void run_items(jobs *js)   /* called with js->mu held */
{
    while (js->next < js->n) {
        int32_t item = js->next++;
        js->running++;
        pthread_mutex_unlock(&js->mu);
        js->job(js->data, item);
        pthread_mutex_lock(&js->mu);
        js->running--;
    }
    if (js->running == 0) pthread_cond_broadcast(&js->done);
}

static void *worker_main(void *arg)
{
    jobs *js = arg;
    pthread_mutex_lock(&js->mu);
    while (!js->quit) {
        run_items(js);
        if (!js->quit) pthread_cond_wait(&js->wake, &js->mu);
    }
    pthread_mutex_unlock(&js->mu);
    return NULL;
}

static void parallel_for(void *user, danu_job_fn job, void *data, int32_t n_items)
{
    jobs *js = user;
    pthread_mutex_lock(&js->mu);
    while (js->busy) pthread_cond_wait(&js->done, &js->mu);   /* another context's step first */
    js->busy = 1;
    js->job = job, js->data = data, js->n = n_items, js->next = 0;
    pthread_cond_broadcast(&js->wake);
    run_items(js);                                            /* this thread helps */
    while (js->running > 0) pthread_cond_wait(&js->done, &js->mu);
    js->busy = 0;
    pthread_cond_broadcast(&js->done);
    pthread_mutex_unlock(&js->mu);
}

static int jobs_start(jobs *js, int n_workers)
{
    memset(js, 0, sizeof *js);
    pthread_mutex_init(&js->mu, NULL);
    pthread_cond_init(&js->wake, NULL);
    pthread_cond_init(&js->done, NULL);
    for (; js->n_workers < n_workers; js->n_workers++)
        if (pthread_create(&js->workers[js->n_workers], NULL, worker_main, js) != 0) return -1;
    return 0;
}

static void jobs_stop(jobs *js)
{
    pthread_mutex_lock(&js->mu);
    js->quit = 1;
    pthread_cond_broadcast(&js->wake);
    pthread_mutex_unlock(&js->mu);
    for (int i = 0; i < js->n_workers; i++) pthread_join(js->workers[i], NULL);
}

/* ---- Helpers ------------------------------------------------------- */

static long long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int fail(const char *what, danu_status s)
{
    fprintf(stderr, "game_loop: %s: %s: %s\n", what, danu_strerror(s), danu_last_error());
    return 1;
}

/* Threads of this process (Linux: /proc/self/task; -1 elsewhere). */
static int count_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Enter on a terminal cancels; a pipe or /dev/null never does. */
static int key_pressed(void)
{
    if (!isatty(0)) return 0;
    struct pollfd p = { 0, POLLIN, 0 };
    if (poll(&p, 1, 0) <= 0) return 0;
    char buf[64];
    return read(0, buf, sizeof buf) >= 0;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

enum { PROMPT, REPLY, RESTORE, DONE };   /* what the model is doing */

/* Cancel: forget the half evaluated prompt (clear drops pending work), or
 * drop the token in flight and the half reply. A sliding-window model may
 * have overwritten what the rewind needs: the prompt is then evaluated
 * again, in the next frames. */
static danu_status cancel(danu_context *ctx, int *phase, const danu_token *prompt, size_t n_prompt)
{
    danu_token id;
    char text[512];
    size_t len;
    int32_t why;
    if (*phase == PROMPT) { *phase = DONE; return danu_context_clear(ctx); }
    if (danu_context_pending(ctx) > 0) {
        danu_context_abort(ctx);   /* the token in flight stops at the next slice (DANU_ERR_ABORTED) */
        while (danu_context_step_sliced(ctx, 0, &id, text, sizeof text, &len, &why) == DANU_IN_PROGRESS) {}
    }
    (void)danu_context_step_finish(ctx, text, sizeof text, &len);   /* text held back goes too */
    if (danu_context_rewind(ctx, n_prompt) == DANU_OK) { *phase = DONE; return DANU_OK; }
    *phase = RESTORE;
    return danu_context_prompt_begin(ctx, prompt, n_prompt, NULL);
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    long cancel_after = -1, max_frames = 600, budget_us = 4000, n_workers = 2;
    double temp = 0.0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--budget-us") && i + 1 < argc) budget_us = atol(argv[++i]);
        else if (!strcmp(argv[i], "--workers") && i + 1 < argc) n_workers = atol(argv[++i]);
        else if (!strcmp(argv[i], "--max-frames") && i + 1 < argc) max_frames = atol(argv[++i]);
        else if (!strcmp(argv[i], "--cancel-after") && i + 1 < argc) cancel_after = atol(argv[++i]);
        else if (!strcmp(argv[i], "--temp") && i + 1 < argc) temp = atof(argv[++i]);
        else if (!path && argv[i][0] != '-') path = argv[i];
        else path = NULL, i = argc;
    }
    if (!path || budget_us < 0 || n_workers < 0 || n_workers > MAX_WORKERS || max_frames < 1) {
        fprintf(stderr, "usage: game_loop MODEL [--budget-us US] [--workers N (0-%d)] [--max-frames N]\n"
                        "                 [--cancel-after FRAMES] [--temp T]\n", MAX_WORKERS);
        return 2;
    }

    /* The engine's workers exist before libdanu is involved. */
    jobs js;
    if (jobs_start(&js, (int)n_workers) != 0) { fprintf(stderr, "game_loop: cannot start workers\n"); return 1; }
    const int threads_before = count_threads();

    danu_options *o = NULL;
    danu_pool *pool = NULL;
    danu_model *model = NULL;
    danu_context *ctx = NULL;
    danu_status s = danu_options_create(NULL, &o);
    if (s != DANU_OK) return fail("options", s);
    danu_options_set_float(o, DANU_OPT_TEMPERATURE, temp);
    danu_options_set_int(o, DANU_OPT_N_THREADS, n_workers + 1);   /* items per parallel step */
    if ((s = danu_pool_create_host(o, parallel_for, &js, &pool)) != DANU_OK) return fail("pool", s);
    danu_options_set_pool(o, pool);
    if ((s = danu_model_load(path, o, &model)) != DANU_OK) return fail("load", s);
    int64_t train_ctx = 0;   /* the window the model was trained for caps the cache */
    danu_model_get_int(model, DANU_INFO_CONTEXT_LENGTH, &train_ctx);
    danu_options_set_int(o, DANU_OPT_N_CTX, train_ctx < 1024 ? train_ctx : 1024);
    if ((s = danu_context_create(model, o, &ctx)) != DANU_OK) return fail("context", s);
    danu_options_free(o);
    danu_pool_free(pool);   /* the model and the context hold it */

    /* The player talks to the blacksmith: the prompt is queued now and
     * evaluated in the frames' budgets, then the reply is generated. */
    const char *roles[] = { "system", "user" };
    const char *texts[] = { "You are Brom, the village blacksmith. Answer in one sentence.",
                            "Can you mend my sword?" };
    if ((s = danu_context_chat_append_begin(ctx, roles, texts, 2, 1)) != DANU_OK) return fail("prompt", s);

    int phase = PROMPT, cancelled = 0;
    long tokens = 0, late = 0, frame, worked = 0, reply_frame = -1;
    danu_token *prompt = NULL;    /* the prompt's ids, to re-evaluate it after a cancel */
    size_t n_prompt = 0;
    double npc_x = 0, *model_ms = calloc((size_t)max_frames, sizeof *model_ms);
    if (!model_ms) return 1;
    const long long budget_ns = budget_us * 1000LL;
    long long next = now_ns();
    for (frame = 0; frame < max_frames && phase != DONE; frame++) {
        npc_x += 1.5 / 60.0;               /* game update: the NPC walks at 1.5 units/s */

        long long spent = 0, t0 = now_ns();   /* time in libdanu this frame */
        if ((phase == PROMPT || phase == REPLY) &&
            (key_pressed() || (cancel_after >= 0 && reply_frame >= 0 && frame - reply_frame >= cancel_after))) {
            int was = phase;
            if ((s = cancel(ctx, &phase, prompt, n_prompt)) != DANU_OK) return fail("cancel", s);
            cancelled = 1;
            printf("\nframe %ld: %s cancelled after %ld tokens\n", frame, was == REPLY ? "reply" : "prompt", tokens);
            spent = now_ns() - t0;
        }
        /* The model's share: slices until the budget is used (at least one).
         * A slice that returns DANU_IN_PROGRESS used what it could of it. */
        for (int first = 1; phase != DONE && (first || budget_ns - spent >= 1000); first = 0) {
            t0 = now_ns();
            int64_t left_us = spent < budget_ns ? (budget_ns - spent) / 1000 : 0;
            danu_token id;
            char piece[512];
            size_t len = 0;
            int32_t why = -1;
            if (phase == PROMPT || phase == RESTORE) {
                s = danu_context_work(ctx, left_us);
                if (s == DANU_OK && phase == RESTORE) phase = DONE;
                if (s == DANU_OK && phase == PROMPT) {
                    phase = REPLY;
                    reply_frame = frame;
                    n_prompt = danu_context_n_tokens(ctx);
                    if (!(prompt = malloc(n_prompt * sizeof *prompt))) return 1;
                    memcpy(prompt, danu_context_tokens(ctx), n_prompt * sizeof *prompt);
                    printf("frame %ld: prompt evaluated (%zu tokens)\nBrom: ", frame, n_prompt);
                }
            } else {
                s = danu_context_step_sliced(ctx, left_us, &id, piece, sizeof piece, &len, &why);
                if (s == DANU_OK || why >= 0) {
                    fwrite(piece, 1, len, stdout);   /* render: the speech bubble grows */
                    if (why < 0 && ++tokens == REPLY_TOKENS) {
                        danu_context_step_finish(ctx, piece, sizeof piece, &len);   /* text held back */
                        fwrite(piece, 1, len, stdout);
                        why = DANU_STOP_LENGTH;
                    }
                    if (why >= 0) {
                        phase = DONE;
                        printf("\nframe %ld: reply finished (%s) after %ld tokens\n", frame,
                               why == DANU_STOP_EOS ? "end of text" : "stopped", tokens);
                    }
                }
            }
            spent += now_ns() - t0;
            if (s != DANU_OK && s != DANU_IN_PROGRESS && why < 0) return fail("model", s);
            if (s == DANU_IN_PROGRESS) break;
        }
        if (spent > 0) model_ms[worked++] = spent / 1e6;
        if (frame % 30 == 0)
            fprintf(stderr, "[frame %ld, npc x %.2f, %ld tokens, model %.2f ms]\n", frame, npc_x, tokens, spent / 1e6);
        fflush(stdout);

        next += FRAME_NS;                  /* fixed timestep: sleep to the next deadline */
        if (now_ns() > next) { late++; next = now_ns(); continue; }
        struct timespec ts = { (time_t)(next / 1000000000LL), (long)(next % 1000000000LL) };
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
    }

    /* The model's share of the frames it worked in, and the budget overruns. */
    long over = 0;
    double over_max = 0, over_sum = 0, budget_ms = budget_us / 1000.0;
    for (long i = 0; i < worked; i++)
        if (model_ms[i] > budget_ms) {
            over++;
            over_sum += model_ms[i] - budget_ms;
            if (model_ms[i] - budget_ms > over_max) over_max = model_ms[i] - budget_ms;
        }
    qsort(model_ms, (size_t)worked, sizeof *model_ms, by_value);
#define PCT(p) (worked ? model_ms[(long)((p) * (worked - 1) + 0.5)] : 0.0)
    printf("model time per frame (%ld frames): p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms\n", worked,
           PCT(0.50), PCT(0.90), PCT(0.99), PCT(1.0));
    printf("over the %.2f ms budget: %ld frames, by up to %.2f ms (mean %.2f ms)\n", budget_ms, over, over_max,
           over ? over_sum / over : 0.0);
    const int threads_after = count_threads();
    printf("threads: %d before the model (main + %ld workers), %d after: libdanu started %d\n", threads_before,
           n_workers, threads_after, threads_after - threads_before);
    printf("frames %ld, tokens %ld, late frames %ld, cancelled %s, context %zu tokens (prompt %zu)\n", frame, tokens,
           late, cancelled ? "yes" : "no", danu_context_n_tokens(ctx), n_prompt);
    free(model_ms);
    free(prompt);
    danu_context_free(ctx);
    danu_model_free(model);
    jobs_stop(&js);
    return 0;
}
