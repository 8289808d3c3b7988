/* test_batch.c - many contexts at once (danu.h "Many contexts at once"):
 * a context stepped inside batches of any size and mix produces exactly
 * the tokens and text it produces alone; danu_batch_generate equals
 * danu_context_generate per context; forks and copies continue as the
 * original; bad calls leave every context as it was; per-context errors
 * (no logits, full, a step-driven generation, an abort) stay that
 * context's; a step allocates nothing; items are walked with the caller's
 * struct_size. Every expectation is a single-context call's output. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "danu.h"
#include "testutil.h"
#include "golden.h"

static char *tmp;
static const char *tiny_a_path;

enum { MAXC = 8, MAX_IDS = 256, TEXT_CAP = 8192 };

/* ---- what a context is given and how it generates ------------------------- */

enum { PROMPT_EVAL, PROMPT_EVAL_BEGIN, PROMPT_CHAT_BEGIN, PROMPT_PROMPT_BEGIN };

typedef struct spec {
    const char *prompt;     /* text (a user message for PROMPT_CHAT_BEGIN) */
    double temp;            /* 0 = greedy, else seeded sampling */
    int64_t seed;
    int max;                /* most tokens appended */
    int join;               /* batch step at which it joins */
    int kind;               /* PROMPT_*: how its prompt is given */
    float eos_bias;         /* added to EOS's logit (0: none): stops it at EOS */
    const char *stop;       /* a stop string, or NULL */
    int n_ctx, shift;       /* 0 = the model's; DANU_FULL_SHIFT with n_keep 4 when shift */
    int kv_type;            /* DANU_KV_*; 0: the default f16 */
} spec;

/* What a context produced: every id a step returned (EOS included), the
 * concatenated text (step_finish's included), the final reason. */
typedef struct run {
    danu_token ids[MAX_IDS];
    int n_ids, n_appended;
    char text[TEXT_CAP];
    size_t len;
    int32_t reason;
} run;

static void run_text(run *r, const char *t, size_t len)
{
    ck_assert_uint_lt(r->len + len, sizeof r->text);
    memcpy(r->text + r->len, t, len);
    r->len += len;
    r->text[r->len] = 0;
}

static danu_model *load_a(void)
{
    danu_model *m = NULL;
    CHECK_OK(danu_model_load(tiny_a_path, NULL, &m));
    return m;
}

static danu_token eos_of(danu_model *m)
{
    int64_t eos = -1;
    CHECK_OK(danu_model_get_int(m, DANU_INFO_EOS, &eos));
    return (danu_token)eos;
}

static size_t encode(danu_model *m, const char *text, danu_token *ids, size_t cap)
{
    size_t n = 0;
    CHECK_OK(danu_tokenizer_encode(danu_model_tokenizer(m), text, strlen(text), DANU_TOKENIZE_ADD_BOS, ids, cap, &n));
    return n;
}

static danu_context *make_ctx(danu_model *m, const spec *s, int threads, int n_ctx)
{
    danu_options *o = NULL;
    CHECK_OK(danu_options_create(NULL, &o));
    CHECK_OK(danu_options_set_float(o, DANU_OPT_TEMPERATURE, s->temp));
    CHECK_OK(danu_options_set_int(o, DANU_OPT_SEED, s->seed));
    CHECK_OK(danu_options_set_int(o, DANU_OPT_N_THREADS, threads));
    CHECK_OK(danu_options_set_int(o, DANU_OPT_N_CTX, s->n_ctx ? s->n_ctx : n_ctx));
    if (s->kv_type) CHECK_OK(danu_options_set_int(o, DANU_OPT_KV_TYPE, s->kv_type));
    if (s->shift) {
        CHECK_OK(danu_options_set_int(o, DANU_OPT_ON_FULL, DANU_FULL_SHIFT));
        CHECK_OK(danu_options_set_int(o, DANU_OPT_N_KEEP, 4));
        CHECK_OK(danu_options_set_int(o, DANU_OPT_IGNORE_EOS, 1));
    }
    danu_context *c = NULL;
    CHECK_OK(danu_context_create(m, o, &c));
    danu_options_free(o);
    if (s->eos_bias != 0.0f) CHECK_OK(danu_context_set_logit_bias(c, eos_of(m), s->eos_bias));
    if (s->stop) CHECK_OK(danu_context_add_stop_string(c, s->stop));
    return c;
}

static const char *chat_roles[1] = { "user" };

/* The prompt, evaluated now (blocking) or queued (a *_begin call). */
static void give_prompt(danu_model *m, danu_context *c, const spec *s, int queued)
{
    if (s->kind == PROMPT_CHAT_BEGIN) {
        const char *contents[1] = { s->prompt };
        if (queued) CHECK_OK(danu_context_chat_append_begin(c, chat_roles, contents, 1, 1));
        else CHECK_OK(danu_context_chat_append(c, chat_roles, contents, 1, 1));
        return;
    }
    danu_token ids[512];
    const size_t n = encode(m, s->prompt, ids, 512);
    if (s->kind == PROMPT_PROMPT_BEGIN) {
        size_t reused = 99;
        if (queued) CHECK_OK(danu_context_prompt_begin(c, ids, n, &reused));
        else CHECK_OK(danu_context_prompt(c, ids, n, &reused));
        ck_assert_uint_eq(reused, 0);
        return;
    }
    if (queued) CHECK_OK(danu_context_eval_begin(c, ids, n));
    else CHECK_OK(danu_context_eval(c, ids, n, NULL));
}

/* One danu_context_step's outputs into r; 1 when the generation ended. */
static int take_step(run *r, danu_status st, danu_token id, const char *text, size_t len, int32_t why, int max)
{
    CHECK(st == DANU_OK, "step: status %d (%s): %s", st, danu_strerror(st), tu_last_error());
    ck_assert_int_lt(r->n_ids, MAX_IDS);
    r->ids[r->n_ids++] = id;
    run_text(r, text, len);
    if (why >= 0) { r->reason = why; return 1; }
    return ++r->n_appended >= max;
}

static void finish(danu_context *c, run *r)
{
    char text[1024];
    size_t len = 0;
    CHECK_OK(danu_context_step_finish(c, text, sizeof text, &len));
    run_text(r, text, len);
    r->reason = DANU_STOP_LENGTH;
}

/* The reference: the context alone, danu_context_step until it stops. */
static void reference(danu_model *m, const spec *s, int threads, run *r)
{
    memset(r, 0, sizeof *r);
    r->reason = -1;
    danu_context *c = make_ctx(m, s, threads, 0);
    give_prompt(m, c, s, 0);
    char text[1024];
    for (;;) {
        danu_token id;
        size_t len;
        int32_t why;
        danu_status st = danu_context_step(c, &id, text, sizeof text, &len, &why);
        if (take_step(r, st, id, text, len, why, s->max)) break;
    }
    if (r->reason < 0) finish(c, r);
    danu_context_free(c);
}

static void check_same(const run *got, const run *want, const char *what, int i)
{
    CHECK(got->reason == want->reason, "%s, context %d: reason %d, alone %d", what, i, got->reason, want->reason);
    CHECK(got->n_ids == want->n_ids, "%s, context %d: %d ids, alone %d", what, i, got->n_ids, want->n_ids);
    for (int k = 0; k < got->n_ids; k++)
        CHECK(got->ids[k] == want->ids[k], "%s, context %d: id %d is %d, alone %d", what, i, k, got->ids[k],
              want->ids[k]);
    CHECK(got->len == want->len && memcmp(got->text, want->text, got->len) == 0,
          "%s, context %d: text \"%s\", alone \"%s\"", what, i, got->text, want->text);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

/* The contexts stepped together: each joins at its step (a queued prompt
 * is given then), leaves when it stops; the items' order is shuffled
 * every step. Returns how many items reported IN_PROGRESS. */
static int run_batch(danu_model *m, const spec *sp, int n, int threads, int n_batch, run *out)
{
    danu_options *o = NULL;
    CHECK_OK(danu_options_create(NULL, &o));
    CHECK_OK(danu_options_set_int(o, DANU_OPT_N_THREADS, threads));
    CHECK_OK(danu_options_set_int(o, DANU_OPT_N_BATCH, n_batch));
    danu_batch *b = NULL;
    CHECK_OK(danu_batch_create(m, MAXC, o, &b));
    danu_options_free(o);
    danu_context *c[MAXC];
    int done[MAXC] = { 0 }, joined[MAXC] = { 0 };
    danu_token inflight[MAXC];
    static char text[MAXC][1024];
    for (int i = 0; i < MAXC; i++) inflight[i] = -1;
    for (int i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof out[i]);
        out[i].reason = -1;
        c[i] = make_ctx(m, &sp[i], threads, 0);
        if (sp[i].kind == PROMPT_EVAL) give_prompt(m, c[i], &sp[i], 0);
    }
    int left = n, progressed = 0;
    for (int t = 0; left > 0; t++) {
        CHECK(t < 2000, "the batch does not end");
        danu_batch_item items[MAXC];
        int who[MAXC], k = 0;
        for (int i = 0; i < n; i++) {
            if (done[i] || sp[i].join > t) continue;
            if (!joined[i]) {
                joined[i] = 1;
                if (sp[i].kind != PROMPT_EVAL) give_prompt(m, c[i], &sp[i], 1);
            }
            who[k++] = i;
        }
        for (int j = k - 1; j > 0; j--) {   /* any order */
            int r = (int)(tu_rand_u32(&rng_state) % (uint32_t)(j + 1)), x = who[j];
            who[j] = who[r];
            who[r] = x;
        }
        if (k == 0) continue;
        for (int j = 0; j < k; j++)
            items[j] = (danu_batch_item){ .struct_size = sizeof(danu_batch_item), .ctx = c[who[j]],
                                          .text = text[who[j]], .cap = sizeof text[0] };
        CHECK_OK(danu_batch_step(b, items, (size_t)k));
        for (int j = 0; j < k; j++) {
            const danu_batch_item *it = &items[j];
            const int i = who[j];
            if (it->status == DANU_IN_PROGRESS) {
                /* no token yet; a step in flight (its token's evaluation, after a
                 * context shift, takes several passes) shows its sampled id */
                CHECK(it->len == 0 && it->reason == -1, "IN_PROGRESS with text or a reason");
                CHECK(it->id == -1 || inflight[i] == -1 || it->id == inflight[i], "the id in flight changed");
                inflight[i] = it->id;
                progressed++;
                continue;
            }
            CHECK(inflight[i] == -1 || it->id == inflight[i], "context %d: step in flight with id %d ended with id %d",
                  i, inflight[i], it->id);
            inflight[i] = -1;
            if (take_step(&out[i], it->status, it->id, it->text, it->len, it->reason, sp[i].max)) {
                if (out[i].reason < 0) finish(c[i], &out[i]);
                done[i] = 1;
                left--;
            }
        }
    }
    for (int i = 0; i < n; i++) danu_context_free(c[i]);
    danu_batch_free(b);
    return progressed;
}

/* ---- determinism ------------------------------------------------------------ */

static const spec mix[MAXC] = {
    /* prompt                         temp  seed max join kind             eos   stop  n_ctx shift f32 */
    { "The capital of France is",     0.0,  0,  24, 0, PROMPT_EVAL,       0,    NULL, 0, 0, 0 },
    { "Once upon a time",             0.9,  11, 30, 0, PROMPT_EVAL,       0,    NULL, 0, 0, 0 },
    { "In the beginning there was a", 0.9,  12, 40, 0, PROMPT_EVAL_BEGIN, 0,    NULL, 0, 0, 0 },
    { "Tell me a story about a cat",  0.0,  0,  18, 3, PROMPT_PROMPT_BEGIN, 0,  NULL, 0, 0, 0 },
    { "Hello",                        0.9,  13, 60, 1, PROMPT_EVAL,       9.0f, NULL, 0, 0, 0 },
    { "What is the answer?",          0.9,  14, 20, 5, PROMPT_CHAT_BEGIN, 0,    NULL, 0, 0, 0 },
    { "A long, long time ago, in a galaxy far away, there lived a", 0.0, 0, 12, 2, PROMPT_EVAL_BEGIN, 0, NULL, 0, 0, 0 },
    { "Numbers: one two three four",  0.9,  15, 50, 7, PROMPT_EVAL,       8.0f, NULL, 0, 0, 0 },
};

/* A context inside batches of 1..8 with any mix of others (generating,
 * with queued prompts, joining later, stopping at EOS or at their own
 * max) makes exactly the ids and text it makes alone: 1 and 2 threads,
 * greedy and seeded sampling, prompts whole or in pieces across steps. */
START_TEST(test_batch_equals_alone)
{
    danu_model *m = load_a();
    static run want[MAXC], got[MAXC];
    for (int threads = 1; threads <= 2; threads++) {
        for (int i = 0; i < MAXC; i++) reference(m, &mix[i], threads, &want[i]);
        int eos_stops = 0, length_stops = 0;
        for (int i = 0; i < MAXC; i++) {
            eos_stops += want[i].reason == DANU_STOP_EOS;
            length_stops += want[i].reason == DANU_STOP_LENGTH;
        }
        CHECK(eos_stops >= 1 && length_stops >= 1, "the mix should stop at EOS (%d) and at max (%d)", eos_stops,
              length_stops);
        const int n_batches[] = { 512, 7 };
        for (int nb = 0; nb < 2; nb++) {
            char what[128];
            /* all eight together */
            const int progressed = run_batch(m, mix, MAXC, threads, n_batches[nb], got);
            /* the queued prompts were advanced in pieces, across steps, when n_batch is small */
            CHECK(progressed >= (n_batches[nb] < 100 ? 6 : 3), "%d IN_PROGRESS items", progressed);
            snprintf(what, sizeof what, "8 contexts, %d threads, n_batch %d", threads, n_batches[nb]);
            for (int i = 0; i < MAXC; i++) check_same(&got[i], &want[i], what, i);
            /* each alone in a batch of one */
            for (int i = 0; i < MAXC; i++) {
                spec s = mix[i];
                s.join = 0;
                run_batch(m, &s, 1, threads, n_batches[nb], got);
                snprintf(what, sizeof what, "batch of 1, %d threads, n_batch %d", threads, n_batches[nb]);
                check_same(&got[0], &want[i], what, i);
            }
            /* three of them */
            spec three[3] = { mix[2], mix[5], mix[4] };
            three[0].join = 2;
            three[1].join = 0;
            run_batch(m, three, 3, threads, n_batches[nb], got);
            snprintf(what, sizeof what, "3 contexts, %d threads, n_batch %d", threads, n_batches[nb]);
            check_same(&got[0], &want[2], what, 0);
            check_same(&got[1], &want[5], what, 1);
            check_same(&got[2], &want[4], what, 2);
        }
    }
    danu_model_free(m);
}
END_TEST

/* A stop string ends a context inside a batch where it ends alone. */
START_TEST(test_batch_stop_string)
{
    danu_model *m = load_a();
    run want[2], got[2];
    spec s[2] = { mix[0], mix[1] };
    reference(m, &s[0], 1, &want[0]);
    ck_assert_uint_gt(want[0].len, 12);
    static char stop[8];
    memcpy(stop, want[0].text + want[0].len / 2, 3);   /* three bytes from the middle of its text */
    stop[3] = 0;
    s[0].stop = stop;
    reference(m, &s[0], 1, &want[0]);
    reference(m, &s[1], 1, &want[1]);
    ck_assert_int_eq(want[0].reason, DANU_STOP_STRING);
    run_batch(m, s, 2, 1, 512, got);
    check_same(&got[0], &want[0], "stop string", 0);
    check_same(&got[1], &want[1], "stop string", 1);
    danu_model_free(m);
}
END_TEST

/* A context that fills up under DANU_FULL_SHIFT (the cache is shifted and
 * re-evaluated inside a step) makes in a batch the ids and text it makes
 * alone, beside contexts that do not shift. */
START_TEST(test_batch_context_shift)
{
    danu_model *m = load_a();
    spec s[3] = { mix[0], mix[1], mix[2] };
    s[0].n_ctx = 40;
    s[0].shift = 1;
    s[0].max = 90;
    s[1].n_ctx = 48;
    s[1].shift = 1;
    s[1].max = 100;
    s[1].eos_bias = 0;
    s[1].kv_type = DANU_KV_Q8_0;   /* a shift re-evaluates into an 8-bit cache */
    run want[3], got[3];
    for (int i = 0; i < 3; i++) reference(m, &s[i], 1, &want[i]);
    ck_assert_int_eq(want[0].n_appended, 90);
    const int n_batches[] = { 512, 7 };
    for (int nb = 0; nb < 2; nb++) {   /* n_batch 7: the shift takes several passes */
        run_batch(m, s, 3, 1, n_batches[nb], got);
        for (int i = 0; i < 3; i++) check_same(&got[i], &want[i], n_batches[nb] > 8 ? "shift" : "shift, n_batch 7", i);
    }
    danu_model_free(m);
}
END_TEST

/* Contexts with different KV cache types and sizes share a pass: each
 * makes what it makes alone. */
START_TEST(test_batch_mixed_contexts)
{
    danu_model *m = load_a();
    spec s[4] = { mix[0], mix[1], mix[2], mix[6] };
    s[0].kv_type = DANU_KV_F32;
    s[1].kv_type = DANU_KV_Q8_0;
    s[2].n_ctx = 64;
    s[3].n_ctx = 20;   /* below the window: a ring of 20 */
    s[3].max = 30;     /* ends full */
    s[3].join = 0;
    run want[4], got[4];
    for (int i = 0; i < 3; i++) reference(m, &s[i], 2, &want[i]);
    /* the full one, alone: steps until CONTEXT_FULL */
    {
        memset(&want[3], 0, sizeof want[3]);
        danu_context *c = make_ctx(m, &s[3], 2, 0);
        give_prompt(m, c, &s[3], 0);
        char text[1024];
        for (;;) {
            danu_token id;
            size_t len;
            int32_t why;
            const danu_status st = danu_context_step(c, &id, text, sizeof text, &len, &why);
            if (st == DANU_ERR_CONTEXT_FULL) { want[3].reason = why; break; }
            CHECK(!take_step(&want[3], st, id, text, len, why, s[3].max), "the small context did not fill up");
        }
        ck_assert_int_eq(want[3].reason, DANU_STOP_FULL);
        ck_assert_uint_eq(danu_context_n_tokens(c), 20);
        danu_context_free(c);
    }
    danu_options *o = NULL;
    CHECK_OK(danu_options_create(NULL, &o));
    CHECK_OK(danu_options_set_int(o, DANU_OPT_N_THREADS, 2));
    danu_batch *b = NULL;
    CHECK_OK(danu_batch_create(m, 4, o, &b));
    danu_options_free(o);
    danu_context *c[4];
    static char text[4][1024];
    int done[4] = { 0 }, left = 4;
    for (int i = 0; i < 4; i++) {
        memset(&got[i], 0, sizeof got[i]);
        c[i] = make_ctx(m, &s[i], 2, 0);
        give_prompt(m, c[i], &s[i], 0);
    }
    while (left > 0) {
        danu_batch_item it[4];
        int who[4], k = 0;
        for (int i = 0; i < 4; i++)
            if (!done[i]) {
                who[k] = i;
                it[k++] = (danu_batch_item){ .struct_size = sizeof it[0], .ctx = c[i], .text = text[i], .cap = 1024 };
            }
        CHECK_OK(danu_batch_step(b, it, (size_t)k));
        for (int j = 0; j < k; j++) {
            const int i = who[j];
            if (it[j].status == DANU_ERR_CONTEXT_FULL) {
                ck_assert_int_eq(i, 3);
                got[i].reason = it[j].reason;
                done[i] = 1;
                left--;
                continue;
            }
            if (take_step(&got[i], it[j].status, it[j].id, it[j].text, it[j].len, it[j].reason, s[i].max)) {
                if (got[i].reason < 0) finish(c[i], &got[i]);
                done[i] = 1;
                left--;
            }
        }
    }
    for (int i = 0; i < 4; i++) {
        check_same(&got[i], &want[i], "mixed KV types and sizes", i);
        danu_context_free(c[i]);
    }
    danu_batch_free(b);
    danu_model_free(m);
}
END_TEST

/* An item reported OK is a finished step, as danu_context_step's: no work
 * left pending, so step_finish, state_save and copy work right after it.
 * Under DANU_FULL_SHIFT the step that shifts re-queues the kept tokens;
 * the step stays in flight (IN_PROGRESS) until all of them went in. */
START_TEST(test_shift_step_is_finished)
{
    danu_model *m = load_a();
    spec s = mix[0];
    s.n_ctx = 40;
    s.shift = 1;
    for (int small = 0; small <= 1; small++) {
        danu_context *c = make_ctx(m, &s, 1, 0);
        give_prompt(m, c, &s, 0);
        danu_options *o = NULL;
        CHECK_OK(danu_options_create(NULL, &o));
        CHECK_OK(danu_options_set_int(o, DANU_OPT_N_BATCH, small ? 1 : 512));
        danu_batch *b = NULL;
        CHECK_OK(danu_batch_create(m, 1, o, &b));
        danu_options_free(o);
        char text[1024];
        int tokens = 0, in_flight = 0;
        for (int k = 0; tokens < 60; k++) {
            CHECK(k < 2000, "no end");
            danu_batch_item it = { sizeof it, c, text, sizeof text, 0, 0, 0, 0 };
            CHECK_OK(danu_batch_step(b, &it, 1));
            if (it.status == DANU_IN_PROGRESS) {
                CHECK(small, "step %d: IN_PROGRESS with a pass of 512 tokens", k);
                ck_assert_int_eq(it.id, -1);   /* no token yet: its id comes with the OK */
                in_flight++;
                continue;
            }
            CHECK(it.status == DANU_OK, "step %d: status %d", k, it.status);
            ck_assert_int_ge(it.id, 0);
            tokens++;
            CHECK(danu_context_pending(c) == 0, "n_batch %d, step %d reported OK with %zu tokens pending (n_tokens %zu)", small ? 1 : 512, k,
                  danu_context_pending(c), danu_context_n_tokens(c));
            ck_assert_ptr_nonnull(danu_context_logits(c));
            if (tokens % 10 == 0) {   /* a caller's own limit can end it at any OK */
                size_t len;
                CHECK_OK(danu_context_step_finish(c, text, sizeof text, &len));
            }
        }
        CHECK(small == (in_flight > 0), "%d passes with a step in flight", in_flight);
        danu_context_free(c);
        danu_batch_free(b);
    }
    danu_model_free(m);
}
END_TEST

/* ---- danu_batch_generate ------------------------------------------------------ */

typedef struct gen_log {
    run r[MAXC];
    int stop_after[MAXC];   /* the callback returns nonzero at this many calls (0: never) */
    int calls[MAXC];
} gen_log;

static int32_t batch_cb(void *user, size_t index, danu_token id, const char *text, size_t len)
{
    gen_log *g = user;
    ck_assert_uint_lt(index, MAXC);
    run *r = &g->r[index];
    ck_assert_int_lt(r->n_ids, MAX_IDS);
    r->ids[r->n_ids++] = id;
    run_text(r, text, len);
    ck_assert_uint_eq(strlen(text), len);
    return ++g->calls[index] == g->stop_after[index];
}

typedef struct one_log { gen_log *g; size_t index; } one_log;

static int32_t single_cb(void *user, danu_token id, const char *text, size_t len)
{
    one_log *l = user;
    return batch_cb(l->g, l->index, id, text, len);
}

/* danu_batch_generate gives each context the callbacks (ids, text) and
 * reason that danu_context_generate gives it alone: greedy and seeded, a
 * queued prompt, EOS, a stop string, a callback that stops, max_tokens. */
START_TEST(test_batch_generate_equals_generate)
{
    danu_model *m = load_a();
    spec s[6] = { mix[0], mix[1], mix[2], mix[4], mix[5], mix[7] };
    s[0].stop = NULL;
    for (int threads = 1; threads <= 2; threads++) {
        static gen_log want, got;
        memset(&want, 0, sizeof want);
        memset(&got, 0, sizeof got);
        want.stop_after[1] = got.stop_after[1] = 5;
        int32_t want_reason[6], got_reason[6];
        const int max_tokens = 40;
        /* a stop string in context 0's greedy text */
        {
            danu_context *c = make_ctx(m, &s[0], threads, 0);
            give_prompt(m, c, &s[0], 0);
            gen_log probe;
            memset(&probe, 0, sizeof probe);
            one_log l = { &probe, 0 };
            int32_t why;
            CHECK_OK(danu_context_generate(c, max_tokens, single_cb, &l, &why));
            ck_assert_uint_gt(probe.r[0].len, 12);
            static char stop[8];
            memcpy(stop, probe.r[0].text + probe.r[0].len / 2, 3);
            s[0].stop = stop;
            danu_context_free(c);
        }
        danu_context *c[6];
        for (int i = 0; i < 6; i++) {
            danu_context *a = make_ctx(m, &s[i], threads, 0);
            give_prompt(m, a, &s[i], 0);
            one_log l = { &want, (size_t)i };
            danu_status st = danu_context_generate(a, max_tokens, single_cb, &l, &want_reason[i]);
            CHECK(st == DANU_OK, "generate %d: %s", i, danu_strerror(st));
            danu_context_free(a);
            c[i] = make_ctx(m, &s[i], threads, 0);
            give_prompt(m, c[i], &s[i], s[i].kind != PROMPT_EVAL);
        }
        ck_assert_int_eq(want_reason[0], DANU_STOP_STRING);
        ck_assert_int_eq(want_reason[1], DANU_STOP_CALLBACK);
        int eos = 0, len = 0;
        for (int i = 0; i < 6; i++) {
            eos += want_reason[i] == DANU_STOP_EOS;
            len += want_reason[i] == DANU_STOP_LENGTH;
        }
        CHECK(eos >= 1 && len >= 1, "the mix should stop at EOS (%d) and at max_tokens (%d)", eos, len);
        danu_options *o = NULL;
        CHECK_OK(danu_options_create(NULL, &o));
        CHECK_OK(danu_options_set_int(o, DANU_OPT_N_THREADS, threads));
        CHECK_OK(danu_options_set_int(o, DANU_OPT_N_BATCH, 5));   /* the queued prompts take several passes */
        danu_batch *b = NULL;
        CHECK_OK(danu_batch_create(m, MAXC, o, &b));
        danu_options_free(o);
        CHECK_OK(danu_batch_generate(b, c, 6, max_tokens, batch_cb, &got, got_reason));
        for (int i = 0; i < 6; i++) {
            got.r[i].reason = got_reason[i];
            want.r[i].reason = want_reason[i];
            check_same(&got.r[i], &want.r[i], threads == 1 ? "batch_generate, 1 thread" : "batch_generate, 2 threads",
                       i);
        }
        /* max_tokens 0: nothing generated, every reason LENGTH */
        int32_t r0[6] = { -1, -1, -1, -1, -1, -1 };
        const size_t n_before = danu_context_n_tokens(c[2]);
        CHECK_OK(danu_batch_generate(b, c, 6, 0, NULL, NULL, r0));
        for (int i = 0; i < 6; i++) ck_assert_int_eq(r0[i], DANU_STOP_LENGTH);
        ck_assert_uint_eq(danu_context_n_tokens(c[2]), n_before);
        /* a context without logits and without queued work: STATE, nothing generated */
        danu_context *fresh = make_ctx(m, &s[0], threads, 0);
        danu_context *two[2] = { c[2], fresh };
        ck_assert_int_eq(danu_batch_generate(b, two, 2, 4, NULL, NULL, NULL), DANU_ERR_STATE);
        ck_assert_uint_eq(danu_context_n_tokens(c[2]), n_before);
        ck_assert_int_eq(danu_batch_generate(b, two, 2, -1, NULL, NULL, NULL), DANU_ERR_INVALID_ARG);
        danu_context_free(fresh);
        for (int i = 0; i < 6; i++) danu_context_free(c[i]);
        danu_batch_free(b);
    }
    danu_model_free(m);
}
END_TEST

/* ---- fork and copy -------------------------------------------------------------- */

static const char *long_text =
    "The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single step. "
    "All that glitters is not gold. Where there is a will there is a way. The early bird catches the worm. "
    "Actions speak louder than words. Practice makes perfect. Knowledge is power, and time is money. "
    "Fortune favors the bold, and the pen is mightier than the sword. Better late than never, they say, "
    "but the best time to plant a tree was twenty years ago.";

static size_t vocab_of(danu_model *m)
{
    int64_t v = 0;
    CHECK_OK(danu_model_get_int(m, DANU_INFO_VOCAB, &v));
    return (size_t)v;
}

static void steps(danu_context *c, int n, run *r)
{
    memset(r, 0, sizeof *r);
    r->reason = -1;
    char text[1024];
    for (int i = 0; i < n; i++) {
        danu_token id;
        size_t len;
        int32_t why;
        danu_status st = danu_context_step(c, &id, text, sizeof text, &len, &why);
        if (take_step(r, st, id, text, len, why, n)) break;
    }
    if (r->reason < 0) finish(c, r);
}

static void same_state(danu_context *a, danu_context *b, size_t vocab, const char *what)
{
    CHECK(danu_context_n_tokens(a) == danu_context_n_tokens(b), "%s: %zu tokens vs %zu", what,
          danu_context_n_tokens(a), danu_context_n_tokens(b));
    CHECK(memcmp(danu_context_tokens(a), danu_context_tokens(b), danu_context_n_tokens(a) * sizeof(danu_token)) == 0,
          "%s: tokens differ", what);
    const float *la = danu_context_logits(a), *lb = danu_context_logits(b);
    CHECK(la && lb, "%s: no logits", what);
    CHECK(memcmp(la, lb, vocab * sizeof(float)) == 0, "%s: logits differ", what);
}

/* Snapshot of a context's visible state, to check it did not change. */
typedef struct snap { size_t n; danu_token tokens[600]; int has_logits; float *logits; } snap;

static void take_snap(danu_context *c, size_t vocab, snap *s)
{
    s->n = danu_context_n_tokens(c);
    ck_assert_uint_le(s->n, 600);
    memcpy(s->tokens, danu_context_tokens(c), s->n * sizeof(danu_token));
    const float *l = danu_context_logits(c);
    s->has_logits = l != NULL;
    s->logits = malloc(vocab * sizeof(float));
    if (l) memcpy(s->logits, l, vocab * sizeof(float));
}

static void check_snap(danu_context *c, size_t vocab, const snap *s, const char *what)
{
    CHECK(danu_context_n_tokens(c) == s->n, "%s: n_tokens %zu, was %zu", what, danu_context_n_tokens(c), s->n);
    CHECK(memcmp(danu_context_tokens(c), s->tokens, s->n * sizeof(danu_token)) == 0, "%s: tokens changed", what);
    const float *l = danu_context_logits(c);
    CHECK((l != NULL) == s->has_logits, "%s: logits appeared or went", what);
    if (l) CHECK(memcmp(l, s->logits, vocab * sizeof(float)) == 0, "%s: logits changed", what);
}

static void free_snap(snap *s) { free(s->logits); }

/* A fork after a 100+ token prompt (the sliding-window ring has wrapped)
 * has the original's tokens and logits bit for bit, and continues as the
 * original does: greedy, and seeded (the sampler's state is copied). */
START_TEST(test_fork_continues_as_original)
{
    danu_model *m = load_a();
    const size_t vocab = vocab_of(m);
    danu_token ids[512];
    const size_t n = encode(m, long_text, ids, 512);
    CHECK(n > 100, "the long prompt has only %zu tokens", n);
    for (int seeded = 0; seeded <= 1; seeded++) {
        spec s = { NULL, seeded ? 0.9 : 0.0, 77, 0, 0, 0, 0, NULL, 0, 0, 0 };
        danu_context *orig = make_ctx(m, &s, 2, 0);
        CHECK_OK(danu_context_eval(orig, ids, n, NULL));
        danu_context *f = NULL;
        CHECK_OK(danu_context_fork(orig, &f));
        ck_assert_ptr_nonnull(f);
        same_state(f, orig, vocab, "fork");
        ck_assert_uint_eq(danu_context_memory_size(f), danu_context_memory_size(orig));
        run a, b;
        steps(orig, 30, &a);
        steps(f, 30, &b);
        check_same(&b, &a, seeded ? "fork, seeded" : "fork, greedy", 0);
        same_state(f, orig, vocab, "fork after 30 steps");
        /* a fork of a fork, in a batch with the original */
        danu_context *g = NULL;
        CHECK_OK(danu_context_fork(f, &g));
        steps(orig, 10, &a);
        danu_batch *bt = NULL;
        CHECK_OK(danu_batch_create(m, 2, NULL, &bt));
        run r;
        memset(&r, 0, sizeof r);
        char text[1024];
        for (int i = 0; i < 10; i++) {
            danu_batch_item it = { sizeof it, g, text, sizeof text, 0, 0, 0, 0 };
            CHECK_OK(danu_batch_step(bt, &it, 1));
            if (take_step(&r, it.status, it.id, it.text, it.len, it.reason, 10)) break;
        }
        finish(g, &r);
        check_same(&r, &a, "fork of a fork, in a batch", 0);
        danu_batch_free(bt);
        danu_context_free(g);
        danu_context_free(f);
        danu_context_free(orig);
    }
    danu_model_free(m);
}
END_TEST

/* danu_context_copy onto a context with another history makes it the
 * source (tokens, logits, continuation); the refused copies (another
 * model, itself, another KV type, n_ctx too small, work pending on either)
 * leave dst exactly as it was. */
START_TEST(test_copy)
{
    danu_model *m = load_a(), *m2 = load_a();
    const size_t vocab = vocab_of(m);
    danu_token ids[512], other[64];
    const size_t n = encode(m, long_text, ids, 512);
    const size_t n_other = encode(m, "Something else entirely", other, 64);
    spec s = { NULL, 0.9, 5, 0, 0, 0, 0, NULL, 0, 0, 0 };
    danu_context *src = make_ctx(m, &s, 1, 0);
    CHECK_OK(danu_context_eval(src, ids, n, NULL));
    spec sd = { NULL, 0.0, 99, 0, 0, 0, 0, NULL, 0, 0, 0 };
    danu_context *dst = make_ctx(m, &sd, 2, 300);
    CHECK_OK(danu_context_eval(dst, other, n_other, NULL));
    /* refused: dst unchanged */
    danu_context *on_m2 = make_ctx(m2, &sd, 1, 0);
    CHECK_OK(danu_context_eval(on_m2, ids, n, NULL));
    danu_options *o = NULL;
    CHECK_OK(danu_options_create(NULL, &o));
    CHECK_OK(danu_options_set_int(o, DANU_OPT_KV_TYPE, DANU_KV_F32));
    danu_context *f32 = NULL;
    CHECK_OK(danu_context_create(m, o, &f32));
    CHECK_OK(danu_context_eval(f32, other, n_other, NULL));
    CHECK_OK(danu_options_set_int(o, DANU_OPT_KV_TYPE, DANU_KV_F16));
    CHECK_OK(danu_options_set_int(o, DANU_OPT_N_CTX, 64));
    danu_context *small = NULL;
    CHECK_OK(danu_context_create(m, o, &small));
    CHECK_OK(danu_context_eval(small, other, n_other, NULL));
    danu_options_free(o);
    snap sn, sf, ss, ssrc;
    take_snap(dst, vocab, &sn);
    take_snap(f32, vocab, &sf);
    take_snap(small, vocab, &ss);
    take_snap(src, vocab, &ssrc);
    ck_assert_int_eq(danu_context_copy(dst, on_m2), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(danu_context_copy(on_m2, src), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(danu_context_copy(dst, dst), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(danu_context_copy(f32, src), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(danu_context_copy(small, src), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(danu_context_copy(NULL, src), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(danu_context_copy(dst, NULL), DANU_ERR_INVALID_ARG);
    check_snap(dst, vocab, &sn, "copy from another model");
    check_snap(f32, vocab, &sf, "copy onto another KV type");
    check_snap(small, vocab, &ss, "copy onto a small n_ctx");
    /* work pending on src, then on dst: STATE */
    CHECK_OK(danu_context_eval_begin(src, other, 2));
    ck_assert_int_eq(danu_context_copy(dst, src), DANU_ERR_STATE);
    danu_context *fk = (danu_context *)1;
    ck_assert_int_eq(danu_context_fork(src, &fk), DANU_ERR_STATE);
    ck_assert_ptr_null(fk);
    check_snap(dst, vocab, &sn, "copy from a context with work pending");
    CHECK_OK(danu_context_clear(src));
    CHECK_OK(danu_context_eval(src, ids, n, NULL));
    check_snap(src, vocab, &ssrc, "src re-evaluated");
    CHECK_OK(danu_context_eval_begin(dst, ids, 3));
    ck_assert_int_eq(danu_context_copy(dst, src), DANU_ERR_STATE);
    ck_assert_int_eq(danu_context_pending(dst), 3);
    CHECK_OK(danu_context_clear(dst));
    CHECK_OK(danu_context_eval(dst, other, n_other, NULL));
    check_snap(dst, vocab, &sn, "dst re-evaluated");
    /* the copy: dst becomes src (its sampling settings and sampler state too) */
    CHECK_OK(danu_context_copy(dst, src));
    same_state(dst, src, vocab, "copy");
    check_snap(src, vocab, &ssrc, "the copied context");
    run a, b;
    steps(src, 25, &a);
    steps(dst, 25, &b);
    check_same(&b, &a, "copy, seeded", 0);
    /* copied back onto a fork of the original prompt's context: greedy continuation equal */
    CHECK_OK(danu_context_set_float(src, DANU_OPT_TEMPERATURE, 0.0));
    CHECK_OK(danu_context_copy(dst, src));
    steps(src, 10, &a);
    steps(dst, 10, &b);
    check_same(&b, &a, "copy, greedy", 0);
    free_snap(&sn);
    free_snap(&sf);
    free_snap(&ss);
    free_snap(&ssrc);
    danu_context_free(small);
    danu_context_free(f32);
    danu_context_free(on_m2);
    danu_context_free(dst);
    danu_context_free(src);
    danu_model_free(m2);
    danu_model_free(m);
}
END_TEST

/* ---- bad input and per-context errors ------------------------------------------- */

/* Three seeded generating contexts and their alone references. */
typedef struct trio {
    danu_context *c[3];
    run want[3], got[3];
    char text[3][1024];
} trio;

static const spec trio_spec[3] = {
    { "The capital of France is", 0.9, 21, 12, 0, PROMPT_EVAL, 0, NULL, 0, 0, 0 },
    { "Once upon a time", 0.0, 0, 12, 0, PROMPT_EVAL, 0, NULL, 0, 0, 0 },
    { "Hello there", 0.9, 23, 12, 0, PROMPT_EVAL, 0, NULL, 0, 0, 0 },
};

static void trio_make(danu_model *m, trio *t)
{
    memset(t, 0, sizeof *t);
    for (int i = 0; i < 3; i++) {
        reference(m, &trio_spec[i], 1, &t->want[i]);
        CHECK(t->want[i].reason == DANU_STOP_LENGTH, "trio context %d stopped early", i);
        t->c[i] = make_ctx(m, &trio_spec[i], 1, 0);
        give_prompt(m, t->c[i], &trio_spec[i], 0);
        t->got[i].reason = -1;
    }
}

static void trio_item(trio *t, int i, danu_batch_item *it)
{
    *it = (danu_batch_item){ .struct_size = sizeof *it, .ctx = t->c[i], .text = t->text[i], .cap = sizeof t->text[i] };
}

/* The outcome of a trio context's item: its step, as it would be alone. */
static void trio_take(trio *t, int i, const danu_batch_item *it)
{
    take_step(&t->got[i], it->status, it->id, it->text, it->len, it->reason, 12);
}

static void trio_end(trio *t, int steps_left)
{
    for (int s = 0; s < steps_left; s++)
        for (int i = 0; i < 3; i++) {
            char text[1024];
            danu_token id;
            size_t len;
            int32_t why;
            danu_status st = danu_context_step(t->c[i], &id, text, sizeof text, &len, &why);
            take_step(&t->got[i], st, id, text, len, why, 12);
        }
    for (int i = 0; i < 3; i++) {
        finish(t->c[i], &t->got[i]);
        check_same(&t->got[i], &t->want[i], "a trio context", i);
        danu_context_free(t->c[i]);
    }
}

/* Refused calls (n 0 or above max, NULL context, a struct_size too small,
 * a context of another model, one context twice, no text buffer) return
 * INVALID_ARG and leave every context as it was: afterwards each makes
 * the ids and text it makes alone. */
START_TEST(test_bad_calls_change_nothing)
{
    danu_model *m = load_a(), *m2 = load_a();
    const size_t vocab = vocab_of(m);
    trio t;
    trio_make(m, &t);
    danu_context *other = make_ctx(m2, &trio_spec[0], 1, 0);
    give_prompt(m2, other, &trio_spec[0], 0);
    danu_batch *b = NULL;
    CHECK_OK(danu_batch_create(m, 3, NULL, &b));
    ck_assert_uint_gt(danu_batch_memory_size(b), 0);
    snap before[3];
    for (int i = 0; i < 3; i++) take_snap(t.c[i], vocab, &before[i]);
    for (int round = 0; round < 2; round++) {   /* before any step and in mid-generation */
        danu_batch_item it[4];
        for (int i = 0; i < 3; i++) trio_item(&t, i, &it[i]);
        trio_item(&t, 0, &it[3]);
        ck_assert_int_eq(danu_batch_step(b, it, 0), DANU_ERR_INVALID_ARG);
        ck_assert_int_eq(danu_batch_step(b, it, 4), DANU_ERR_INVALID_ARG);   /* above max (and a repeat) */
        ck_assert_int_eq(danu_batch_step(NULL, it, 3), DANU_ERR_INVALID_ARG);
        ck_assert_int_eq(danu_batch_step(b, NULL, 3), DANU_ERR_INVALID_ARG);
        it[1].ctx = NULL;
        ck_assert_int_eq(danu_batch_step(b, it, 3), DANU_ERR_INVALID_ARG);
        it[1].ctx = t.c[0];
        ck_assert_int_eq(danu_batch_step(b, it, 3), DANU_ERR_INVALID_ARG);   /* the same context twice */
        it[1].ctx = other;
        ck_assert_int_eq(danu_batch_step(b, it, 3), DANU_ERR_INVALID_ARG);   /* another model */
        trio_item(&t, 1, &it[1]);
        it[2].text = NULL;
        ck_assert_int_eq(danu_batch_step(b, it, 3), DANU_ERR_INVALID_ARG);
        trio_item(&t, 2, &it[2]);
        it[2].cap = 0;
        ck_assert_int_eq(danu_batch_step(b, it, 3), DANU_ERR_INVALID_ARG);
        trio_item(&t, 2, &it[2]);
        for (size_t small = 0; small < sizeof(danu_batch_item); small += 8) {
            for (int i = 0; i < 3; i++) it[i].struct_size = small;
            ck_assert_int_eq(danu_batch_step(b, it, 3), DANU_ERR_INVALID_ARG);
        }
        for (int i = 0; i < 3; i++) {
            char what[64];
            snprintf(what, sizeof what, "refused calls, round %d, context %d", round, i);
            check_snap(t.c[i], vocab, &before[i], what);
            free_snap(&before[i]);
        }
        /* then three good steps */
        for (int s = 0; s < 3; s++) {
            for (int i = 0; i < 3; i++) trio_item(&t, i, &it[i]);
            CHECK_OK(danu_batch_step(b, it, 3));
            for (int i = 0; i < 3; i++) trio_take(&t, i, &it[i]);
        }
        for (int i = 0; i < 3; i++) take_snap(t.c[i], vocab, &before[i]);
    }
    for (int i = 0; i < 3; i++) free_snap(&before[i]);
    trio_end(&t, 6);
    danu_batch_free(b);
    danu_context_free(other);
    danu_model_free(m2);
    danu_model_free(m);
}
END_TEST

/* Errors of one context stay its own: no logits (STATE), full (CONTEXT_FULL,
 * reason FULL), a generation driven by danu_context_step (STATE); the
 * others step as they would alone. */
START_TEST(test_per_context_errors)
{
    danu_model *m = load_a();
    const size_t vocab = vocab_of(m);
    trio t;
    trio_make(m, &t);
    danu_batch *b = NULL;
    CHECK_OK(danu_batch_create(m, 4, NULL, &b));
    danu_context *x[4];
    spec g = { "Hi", 0.0, 0, 0, 0, PROMPT_EVAL, 0, NULL, 0, 0, 0 };
    x[0] = make_ctx(m, &g, 1, 0);   /* no logits */
    danu_token ids[64];
    const size_t n = encode(m, "Four or five tokens", ids, 64);
    x[1] = make_ctx(m, &g, 1, (int)n);   /* full after its prompt */
    CHECK_OK(danu_context_eval(x[1], ids, n, NULL));
    x[2] = make_ctx(m, &g, 1, 0);   /* in a generation driven by danu_context_step */
    CHECK_OK(danu_context_eval(x[2], ids, n, NULL));
    char tx[1024];
    danu_token id;
    size_t len;
    int32_t why;
    CHECK_OK(danu_context_step(x[2], &id, tx, sizeof tx, &len, &why));
    x[3] = make_ctx(m, &g, 1, 0);   /* a sliced step in flight */
    CHECK_OK(danu_context_eval(x[3], ids, n, NULL));
    const danu_status sl = danu_context_step_sliced(x[3], 0, &id, tx, sizeof tx, &len, &why);
    const int n_bad = sl == DANU_IN_PROGRESS ? 4 : 3;   /* a step that fits one slice has nothing in flight */
    const danu_status want_status[4] = { DANU_ERR_STATE, DANU_ERR_CONTEXT_FULL, DANU_ERR_STATE, DANU_ERR_STATE };
    const int32_t want_reason[4] = { -1, DANU_STOP_FULL, -1, -1 };
    for (int k = 0; k < n_bad; k++) {
        snap sx;
        take_snap(x[k], vocab, &sx);
        for (int pi = 0; pi < 3; pi++) {
            const int pos = pi == 2 ? 3 : pi;   /* the bad one first, between, last */
            danu_batch_item it[4];
            int j = 0;
            for (int i = 0; i < 3; i++) {
                if (i == pos) {
                    it[j++] = (danu_batch_item){ .struct_size = sizeof it[0], .ctx = x[k], .text = tx, .cap = sizeof tx };
                }
                trio_item(&t, i, &it[j++]);
            }
            if (pos == 3)
                it[j++] = (danu_batch_item){ .struct_size = sizeof it[0], .ctx = x[k], .text = tx, .cap = sizeof tx };
            CHECK_OK(danu_batch_step(b, it, 4));
            for (int i = 0, jj = 0; jj < 4; jj++) {
                if (it[jj].ctx == x[k]) {
                    CHECK(it[jj].status == want_status[k], "bad context %d: status %d, want %d", k, it[jj].status,
                          want_status[k]);
                    ck_assert_int_eq(it[jj].reason, want_reason[k]);
                    ck_assert_uint_eq(it[jj].len, 0);
                    continue;
                }
                trio_take(&t, i++, &it[jj]);
            }
            check_snap(x[k], vocab, &sx, "the context in error");
        }
        free_snap(&sx);
    }
    trio_end(&t, 12 - 3 * n_bad);
    /* the step-driven generation, ended, steps in a batch again */
    CHECK_OK(danu_context_step_finish(x[2], tx, sizeof tx, &len));
    danu_batch_item one = { sizeof one, x[2], tx, sizeof tx, 0, 0, 0, 0 };
    CHECK_OK(danu_batch_step(b, &one, 1));
    ck_assert_int_eq(one.status, DANU_OK);
    for (int k = 0; k < 4; k++) danu_context_free(x[k]);
    danu_batch_free(b);
    danu_model_free(m);
}
END_TEST

/* danu_context_abort on one context before a step: that item is ABORTED
 * with reason ABORTED and its token not appended; the others step as they
 * would alone; the aborted context then goes on as one aborted alone
 * (seeded: the aborted sample used the sampler) and, greedy, as one never
 * aborted. */
START_TEST(test_abort_one_context)
{
    danu_model *m = load_a();
    const size_t vocab = vocab_of(m);
    for (int greedy = 0; greedy <= 1; greedy++) {
        spec s[3] = { trio_spec[0], trio_spec[1], trio_spec[2] };
        s[0].temp = greedy ? 0.0 : 0.9;
        const int at = 4;   /* the step that is aborted */
        /* alone: four steps, an aborted step, eight more */
        run want[3], got[3];
        danu_context *c[3];
        for (int i = 0; i < 3; i++) {
            reference(m, &s[i], 1, &want[i]);
            memset(&got[i], 0, sizeof got[i]);
            c[i] = make_ctx(m, &s[i], 1, 0);
            give_prompt(m, c[i], &s[i], 0);
        }
        run alone;
        memset(&alone, 0, sizeof alone);
        {
            danu_context *a = make_ctx(m, &s[0], 1, 0);
            give_prompt(m, a, &s[0], 0);
            char tx[1024];
            for (int k = 0; k < 12; k++) {
                danu_token id;
                size_t len;
                int32_t why;
                if (k == at) {
                    danu_context_abort(a);
                    ck_assert_int_eq(danu_context_step(a, &id, tx, sizeof tx, &len, &why), DANU_ERR_ABORTED);
                    ck_assert_int_eq(why, DANU_STOP_ABORTED);
                }
                const danu_status st = danu_context_step(a, &id, tx, sizeof tx, &len, &why);
                take_step(&alone, st, id, tx, len, why, 100);
            }
            finish(a, &alone);
            danu_context_free(a);
        }
        danu_batch *b = NULL;
        CHECK_OK(danu_batch_create(m, 3, NULL, &b));
        static char text[3][1024];
        for (int k = 0; k < 12 + 1; k++) {
            /* the others take 12 steps, the aborted context 12 and the aborted one */
            const int n_items = k == 12 ? 1 : 3;
            danu_batch_item it[3];
            for (int i = 0; i < 3; i++)
                it[i] = (danu_batch_item){ .struct_size = sizeof it[0], .ctx = c[i], .text = text[i], .cap = 1024 };
            snap sa;
            take_snap(c[0], vocab, &sa);
            if (k == at) danu_context_abort(c[0]);
            CHECK_OK(danu_batch_step(b, it, (size_t)n_items));
            for (int i = 0; i < n_items; i++) {
                if (i == 0 && k == at) {
                    ck_assert_int_eq(it[0].status, DANU_ERR_ABORTED);
                    ck_assert_int_eq(it[0].reason, DANU_STOP_ABORTED);
                    check_snap(c[0], vocab, &sa, "the aborted context");
                    continue;
                }
                take_step(&got[i], it[i].status, it[i].id, it[i].text, it[i].len, it[i].reason, 100);
            }
            free_snap(&sa);
        }
        for (int i = 0; i < 3; i++) finish(c[i], &got[i]);
        for (int i = 1; i < 3; i++) {
            got[i].reason = DANU_STOP_LENGTH;
            check_same(&got[i], &want[i], "the others of an abort", i);
        }
        check_same(&got[0], &alone, "aborted in a batch vs aborted alone", 0);
        if (greedy) {
            ck_assert_int_eq(memcmp(got[0].ids, want[0].ids, 12 * sizeof(danu_token)), 0);
        }
        /* an abort while all of a batch's contexts are aborted */
        for (int i = 0; i < 3; i++) danu_context_abort(c[i]);
        danu_batch_item it[3];
        for (int i = 0; i < 3; i++)
            it[i] = (danu_batch_item){ .struct_size = sizeof it[0], .ctx = c[i], .text = text[i], .cap = 1024 };
        const size_t n0 = danu_context_n_tokens(c[0]);
        CHECK_OK(danu_batch_step(b, it, 3));
        for (int i = 0; i < 3; i++) ck_assert_int_eq(it[i].status, DANU_ERR_ABORTED);
        ck_assert_uint_eq(danu_context_n_tokens(c[0]), n0);
        CHECK_OK(danu_batch_step(b, it, 3));   /* the abort was used up */
        for (int i = 0; i < 3; i++) ck_assert_int_eq(it[i].status, DANU_OK);
        for (int i = 0; i < 3; i++) danu_context_free(c[i]);
        danu_batch_free(b);
    }
    danu_model_free(m);
}
END_TEST

/* A text buffer too small for a step's text: that item is
 * BUFFER_TOO_SMALL with the length needed and keeps the text for later,
 * as danu_context_step does alone; the token is appended either way. */
START_TEST(test_small_text_buffer)
{
    danu_model *m = load_a();
    typedef struct rec { danu_status st[16]; danu_token id[16]; size_t len[16]; run r; } rec;
    static rec alone[2], batched[2];
    memset(alone, 0, sizeof alone);
    memset(batched, 0, sizeof batched);
    danu_context *a[2], *c[2];
    for (int i = 0; i < 2; i++) {
        a[i] = make_ctx(m, &trio_spec[i], 1, 0);
        c[i] = make_ctx(m, &trio_spec[i], 1, 0);
        give_prompt(m, a[i], &trio_spec[i], 0);
        give_prompt(m, c[i], &trio_spec[i], 0);
    }
    danu_batch *b = NULL;
    CHECK_OK(danu_batch_create(m, 2, NULL, &b));
    static char text[2][1024];
    int small = 0;
    for (int k = 0; k < 16; k++) {
        danu_batch_item it[2];
        for (int i = 0; i < 2; i++) {
            const size_t cap = (k + i) % 4 == 1 || (k + i) % 4 == 2 ? 1 : sizeof text[i];
            int32_t why;
            alone[i].st[k] = danu_context_step(a[i], &alone[i].id[k], text[i], cap, &alone[i].len[k], &why);
            ck_assert_int_eq(why, -1);
            if (alone[i].st[k] == DANU_OK) run_text(&alone[i].r, text[i], alone[i].len[k]);
            small += alone[i].st[k] == DANU_ERR_BUFFER_TOO_SMALL;
            it[i] = (danu_batch_item){ .struct_size = sizeof it[0], .ctx = c[i], .text = text[i], .cap = cap };
        }
        CHECK_OK(danu_batch_step(b, it, 2));
        for (int i = 0; i < 2; i++) {
            batched[i].st[k] = it[i].status;
            batched[i].id[k] = it[i].id;
            batched[i].len[k] = it[i].len;
            ck_assert_int_eq(it[i].reason, -1);
            if (it[i].status == DANU_OK) run_text(&batched[i].r, it[i].text, it[i].len);
            CHECK(batched[i].st[k] == alone[i].st[k] && batched[i].id[k] == alone[i].id[k] &&
                  batched[i].len[k] == alone[i].len[k], "context %d, step %d: status %d id %d len %zu, alone %d %d %zu",
                  i, k, batched[i].st[k], batched[i].id[k], batched[i].len[k], alone[i].st[k], alone[i].id[k],
                  alone[i].len[k]);
        }
    }
    CHECK(small >= 4, "only %d steps had text that did not fit", small);
    for (int i = 0; i < 2; i++) {
        finish(a[i], &alone[i].r);
        finish(c[i], &batched[i].r);
        check_same(&batched[i].r, &alone[i].r, "small buffers", i);
        ck_assert_uint_eq(danu_context_n_tokens(c[i]), danu_context_n_tokens(a[i]));
        danu_context_free(a[i]);
        danu_context_free(c[i]);
    }
    danu_batch_free(b);
    danu_model_free(m);
}
END_TEST

/* ---- memory -------------------------------------------------------------------------- */

/* danu_batch_memory_size is every byte a batch takes from the allocator
 * (several shapes), and its steps and danu_batch_generate allocate
 * nothing: generation and queued prompt work alike. */
START_TEST(test_batch_step_allocates_nothing)
{
    tu_bytes cnt = { 0, 0, 0 };
    danu_allocator al = { sizeof al, tu_bytes_malloc, tu_bytes_realloc, tu_bytes_free, &cnt };
    danu_options *o = NULL;
    CHECK_OK(danu_options_create(&al, &o));
    danu_model *m = NULL;
    CHECK_OK(danu_model_load(tiny_a_path, o, &m));
    CHECK_OK(danu_options_set_int(o, DANU_OPT_N_THREADS, 2));
    CHECK_OK(danu_options_set_int(o, DANU_OPT_N_BATCH, 6));
    CHECK_OK(danu_options_set_int(o, DANU_OPT_IGNORE_EOS, 1));
    danu_context *c[4];
    for (int i = 0; i < 4; i++) CHECK_OK(danu_context_create(m, o, &c[i]));
    CHECK_OK(danu_context_add_stop_string(c[1], "\x01never"));
    static const int shapes[][3] = { { 1, 512, 1 }, { 4, 6, 2 }, { 8, 512, 2 }, { 64, 16, 1 } };   /* max, n_batch, threads */
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        danu_options *bo = NULL;
        CHECK_OK(danu_options_create(NULL, &bo));
        CHECK_OK(danu_options_set_int(bo, DANU_OPT_N_BATCH, shapes[k][1]));
        CHECK_OK(danu_options_set_int(bo, DANU_OPT_N_THREADS, shapes[k][2]));
        const long long live = cnt.live;
        danu_batch *bk = NULL;
        CHECK_OK(danu_batch_create(m, shapes[k][0], bo, &bk));
        ck_assert_uint_gt(danu_batch_memory_size(bk), 0);
        CHECK((long long)danu_batch_memory_size(bk) == cnt.live - live, "shape %zu: memory_size %zu, allocator %lld", k,
              danu_batch_memory_size(bk), cnt.live - live);
        danu_batch_free(bk);
        ck_assert_int_eq(cnt.live, live);
        danu_options_free(bo);
    }
    danu_batch *b = NULL;
    CHECK_OK(danu_batch_create(m, 4, o, &b));
    danu_token ids[256];
    const size_t n = encode(m, long_text, ids, 256);
    CHECK_OK(danu_context_eval(c[0], ids, 10, NULL));
    CHECK_OK(danu_context_eval(c[1], ids, 20, NULL));
    CHECK_OK(danu_context_eval_begin(c[2], ids, n));
    CHECK_OK(danu_context_eval_begin(c[3], ids + 5, 30));
    const long long calls = cnt.calls;
    char text[4][256];
    int progressed = 0, tokens = 0;
    for (int s = 0; s < 40; s++) {
        danu_batch_item it[4];
        for (int i = 0; i < 4; i++)
            it[i] = (danu_batch_item){ .struct_size = sizeof it[0], .ctx = c[i], .text = text[i], .cap = sizeof text[i] };
        CHECK_OK(danu_batch_step(b, it, 4));
        for (int i = 0; i < 4; i++) {
            ck_assert(it[i].status == DANU_OK || it[i].status == DANU_IN_PROGRESS);
            progressed += it[i].status == DANU_IN_PROGRESS;
            tokens += it[i].status == DANU_OK;
        }
    }
    ck_assert_int_gt(progressed, 4);
    ck_assert_int_gt(tokens, 100);
    int32_t reasons[4];
    CHECK_OK(danu_batch_generate(b, c, 4, 30, NULL, NULL, reasons));
    CHECK(cnt.calls == calls, "steps made %lld allocation calls", cnt.calls - calls);
    danu_batch_free(b);
    for (int i = 0; i < 4; i++) danu_context_free(c[i]);
    danu_model_free(m);
    danu_options_free(o);
    ck_assert_int_eq(cnt.live, 0);
    ck_assert_int_eq(cnt.blocks, 0);
}
END_TEST

/* ---- versioned items -------------------------------------------------------------------- */

/* A caller's newer item struct (extra members at the end): the array is
 * walked with its struct_size, the extra members untouched. */
typedef struct newer_item {
    danu_batch_item base;
    uint64_t extra[3];
} newer_item;

START_TEST(test_items_walked_with_struct_size)
{
    danu_model *m = load_a();
    trio t;
    trio_make(m, &t);
    danu_batch *b = NULL;
    CHECK_OK(danu_batch_create(m, 3, NULL, &b));
    newer_item it[3];
    for (int s = 0; s < 12; s++) {
        for (int i = 0; i < 3; i++) {
            trio_item(&t, i, &it[i].base);
            it[i].base.struct_size = sizeof(newer_item);
            it[i].base.status = 0x5555;
            for (int e = 0; e < 3; e++) it[i].extra[e] = 0xabcdef0123456789ull + (uint64_t)(i * 3 + e);
        }
        CHECK_OK(danu_batch_step(b, &it[0].base, 3));
        for (int i = 0; i < 3; i++) {
            for (int e = 0; e < 3; e++) ck_assert(it[i].extra[e] == 0xabcdef0123456789ull + (uint64_t)(i * 3 + e));
            ck_assert_uint_eq(it[i].base.struct_size, sizeof(newer_item));
            take_step(&t.got[i], it[i].base.status, it[i].base.id, it[i].base.text, it[i].base.len, it[i].base.reason,
                      100);
        }
    }
    trio_end(&t, 0);
    danu_batch_free(b);
    danu_model_free(m);
}
END_TEST

/* danu_batch_create's refusals and memory size. */
START_TEST(test_batch_create_args)
{
    danu_model *m = load_a();
    danu_batch *b = (danu_batch *)1;
    ck_assert_int_eq(danu_batch_create(m, 0, NULL, &b), DANU_ERR_INVALID_ARG);
    ck_assert_ptr_null(b);
    ck_assert_int_eq(danu_batch_create(m, 4097, NULL, &b), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(danu_batch_create(NULL, 2, NULL, &b), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(danu_batch_create(m, 2, NULL, NULL), DANU_ERR_INVALID_ARG);
    ck_assert_uint_eq(danu_batch_memory_size(NULL), 0);
    danu_batch *b1 = NULL, *b8 = NULL;
    CHECK_OK(danu_batch_create(m, 1, NULL, &b1));
    CHECK_OK(danu_batch_create(m, 8, NULL, &b8));
    ck_assert_uint_gt(danu_batch_memory_size(b1), 0);
    ck_assert_uint_gt(danu_batch_memory_size(b8), danu_batch_memory_size(b1));
    danu_batch_free(b1);
    danu_batch_free(b8);
    danu_batch_free(NULL);
    danu_model_free(m);
}
END_TEST

int main(void)
{
    tmp = tu_tmpdir("batch");
    tiny_a_path = gd_synth(tmp, "tiny-a", 7, DANU_FORMAT_GGUF, DANU_TYPE_BF16);
    if (!tiny_a_path) {
        fprintf(stderr, "cannot synthesize tiny-a: %s\n", danu_last_error());
        return 1;
    }
    Suite *s = suite_create("batch");
    TCase *tc = tcase_create("batch");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_batch_equals_alone);
    tcase_add_test(tc, test_batch_stop_string);
    tcase_add_test(tc, test_batch_context_shift);
    tcase_add_test(tc, test_batch_mixed_contexts);
    tcase_add_test(tc, test_batch_generate_equals_generate);
    tcase_add_test(tc, test_fork_continues_as_original);
    tcase_add_test(tc, test_copy);
    tcase_add_test(tc, test_bad_calls_change_nothing);
    tcase_add_test(tc, test_per_context_errors);
    tcase_add_test(tc, test_abort_one_context);
    tcase_add_test(tc, test_small_text_buffer);
    tcase_add_test(tc, test_batch_step_allocates_nothing);
    tcase_add_test(tc, test_items_walked_with_struct_size);
    tcase_add_test(tc, test_batch_create_args);
    tcase_add_test(tc, test_shift_step_is_finished);
    suite_add_tcase(s, tc);
    int failed = tu_run(s);
    tu_rmtree(tmp);
    free(tmp);
    return failed ? 1 : 0;
}
