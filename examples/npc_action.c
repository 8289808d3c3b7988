/* npc_action.c - a character picks an action each turn, as JSON a game can
 * act on, inside a fixed-timestep game loop.
 *
 * The JSON Schema below (an action from five verbs, a target, something to
 * say) is compiled once for the model's vocabulary
 * (danu_constraint_from_json_schema) and attached to the context: every
 * reply is then one JSON value valid under it, whatever the model. Each
 * turn the game describes what happens (a chat message queued with
 * danu_context_chat_append_begin), and each 60 Hz frame spends at most a
 * budget (default 4 ms) on the model - the message first
 * (danu_context_work), then the reply token by token
 * (danu_context_step_sliced). The reply ends by itself once the JSON is
 * closed (DANU_STOP_GRAMMAR); danu_context_constraint_state confirms it is
 * complete before the game would act on it. Nothing is parsed here: the
 * JSON is printed as it came.
 *
 *   npc_action [MODEL] [--turns N] [--budget-us US] [--temp T] [--seed S]
 *
 * Without MODEL it uses the small synthetic model `danu run` writes to
 * ~/.cache/danu (random weights: the strings are gibberish, but the JSON is
 * valid), writing it first if needed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include "danu.h"

#define FRAME_NS 16666667LL   /* 60 Hz */
#define MAX_REPLY_TOKENS 160  /* a safety net: the schema bounds every string */

static const char *schema =
    "{\"type\": \"object\","
    " \"properties\": {"
    "  \"action\": {\"enum\": [\"attack\", \"defend\", \"talk\", \"trade\", \"flee\"]},"
    "  \"target\": {\"type\": \"string\", \"maxLength\": 20},"
    "  \"say\": {\"type\": \"string\", \"maxLength\": 60}},"
    " \"required\": [\"action\", \"target\"]}";

static const char *persona =
    "You are Kara, a ranger guarding a camp in the woods. Each turn, answer with your action as JSON: "
    "{\"action\": attack|defend|talk|trade|flee, \"target\": who or what, \"say\": optional words}.";

static const char *events[] = {
    "A wolf circles the camp, growling.",
    "A merchant with a heavy cart asks for shelter.",
    "Bandits shout from the tree line and light torches.",
    "The wolf comes back with two more.",
    "A child wanders in, lost and crying.",
    "Dawn breaks; the bandits are gone.",
};
#define N_EVENTS (sizeof events / sizeof events[0])

static long long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int fail(const char *what, danu_status s)
{
    fprintf(stderr, "npc_action: %s: %s: %s\n", what, danu_strerror(s), danu_last_error());
    return 1;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The synthetic model of `danu run` (XDG_CACHE_HOME or ~/.cache, danu/),
 * written with the tokenizer of the source tree when missing. */
static char *default_model(void)
{
    static char path[4096];
    const char *base = getenv("XDG_CACHE_HOME");
    char dir[3900];
    if (base && *base) snprintf(dir, sizeof dir, "%s/danu", base);
    else snprintf(dir, sizeof dir, "%s/.cache/danu", getenv("HOME") ? getenv("HOME") : "/tmp");
    snprintf(path, sizeof path, "%s/synthetic-tiny-a-seed7.gguf", dir);
    struct stat st;
    if (stat(path, &st) == 0) return path;
#ifdef NPC_ACTION_TOKENIZER
    for (char *q = dir + 1; *q; q++)   /* mkdir -p */
        if (*q == '/') { *q = 0; mkdir(dir, 0755); *q = '/'; }
    mkdir(dir, 0755);
    FILE *f = fopen(NPC_ACTION_TOKENIZER, "rb");
    char *spm = NULL;
    long n = -1;
    if (f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (spm = malloc((size_t)n)) && fread(spm, 1, (size_t)n, f) != (size_t)n)
        n = -1;
    if (f) fclose(f);
    if (spm && n > 0) {
        fprintf(stderr, "npc_action: no model given: writing a small synthetic model (random weights) to %s\n", path);
        danu_status s = danu_synth_write("tiny-a", 7, DANU_FORMAT_GGUF, DANU_TYPE_BF16, spm, (size_t)n, path, NULL);
        free(spm);
        if (s == DANU_OK) return path;
        fail("synth", s);
        return NULL;
    }
    free(spm);
#endif
    fprintf(stderr, "npc_action: no model given and no %s (run `danu run` once, or give MODEL)\n", path);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    long turns = 3, budget_us = 4000, seed = 1;
    double temp = 0.8;
    int bad = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--turns") && i + 1 < argc) turns = atol(argv[++i]);
        else if (!strcmp(argv[i], "--budget-us") && i + 1 < argc) budget_us = atol(argv[++i]);
        else if (!strcmp(argv[i], "--temp") && i + 1 < argc) temp = atof(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = atol(argv[++i]);
        else if (!path && argv[i][0] != '-') path = argv[i];
        else bad = 1;
    }
    if (bad || turns < 1 || turns > (long)N_EVENTS || budget_us < 0 || seed < 0) {
        fprintf(stderr, "usage: npc_action [MODEL] [--turns N (1-%zu)] [--budget-us US] [--temp T] [--seed S]\n",
                N_EVENTS);
        return 2;
    }
    if (!path && !(path = default_model())) return 1;

    danu_options *o = NULL;
    danu_model *model = NULL;
    danu_context *ctx = NULL;
    danu_status s = danu_options_create(NULL, &o);
    if (s != DANU_OK) return fail("options", s);
    danu_options_set_float(o, DANU_OPT_TEMPERATURE, temp);
    danu_options_set_int(o, DANU_OPT_SEED, seed);
    danu_options_set_int(o, DANU_OPT_N_THREADS, 2);   /* leave cores to the game */
    if ((s = danu_model_load(path, o, &model)) != DANU_OK) return fail("load", s);
    int64_t train_ctx = 0;
    danu_model_get_int(model, DANU_INFO_CONTEXT_LENGTH, &train_ctx);
    danu_options_set_int(o, DANU_OPT_N_CTX, train_ctx < 2048 ? train_ctx : 2048);
    danu_options_set_int(o, DANU_OPT_ON_FULL, DANU_FULL_SHIFT);   /* a long game drops old turns */
    if ((s = danu_context_create(model, o, &ctx)) != DANU_OK) return fail("context", s);
    danu_options_free(o);

    /* The schema, compiled once (a loading screen's work); the context
     * keeps its own reference, so ours goes at once. */
    long long t0 = now_ns();
    danu_constraint *action = NULL;
    s = danu_constraint_from_json_schema(danu_model_tokenizer(model), schema, strlen(schema), 0, &action);
    if (s != DANU_OK) return fail("schema", s);
    const double compile_ms = (double)(now_ns() - t0) / 1e6;
    s = danu_context_set_constraint(ctx, action);
    danu_constraint_free(action);
    if (s != DANU_OK) return fail("set constraint", s);
    printf("schema: %s\n", schema);
    printf("schema compiled in %.2f ms\n", compile_ms);

    size_t cap = 1024;
    double *model_ms = malloc(cap * sizeof *model_ms);   /* the model's time in each frame it worked */
    if (!model_ms) return 1;
    long frames = 0, late = 0, worked = 0, complete = 0;
    const long long budget_ns = budget_us * 1000LL;
    long long next = now_ns();
    for (long turn = 0; turn < turns; turn++) {
        /* The game's turn: what happens, as a chat message, queued. The
         * first turn carries the persona as the system prompt. An
         * assistant turn left open (the JSON ended it, not EOS) is closed
         * by the library first. */
        const char *roles[] = { "system", "user" };
        const char *texts[] = { persona, events[turn] };
        int first = turn == 0;
        s = danu_context_chat_append_begin(ctx, roles + !first, texts + !first, first ? 2 : 1, 1);
        if (s != DANU_OK) return fail("turn", s);
        printf("turn %ld: %s\n", turn + 1, events[turn]);

        char reply[2048];
        size_t reply_len = 0;
        long tokens = 0, turn_frames = 0;
        int32_t why = -1;
        int prompt_done = 0;
        while (why < 0) {   /* the frames of this turn */
            /* ... the game's own update would run here ... */
            long long spent = 0;
            for (int one = 1; why < 0 && (one || budget_ns - spent >= 1000); one = 0) {
                long long t1 = now_ns();
                int64_t left_us = spent < budget_ns ? (budget_ns - spent) / 1000 : 0;
                if (!prompt_done) {
                    s = danu_context_work(ctx, left_us);
                    prompt_done = s == DANU_OK;
                } else {
                    danu_token id;
                    char piece[512];
                    size_t len = 0;
                    s = danu_context_step_sliced(ctx, left_us, &id, piece, sizeof piece, &len, &why);
                    if (s == DANU_OK) {
                        if (reply_len + len < sizeof reply) {
                            memcpy(reply + reply_len, piece, len);
                            reply_len += len;
                        }
                        if (why < 0 && ++tokens == MAX_REPLY_TOKENS) {
                            danu_context_step_finish(ctx, piece, sizeof piece, &len);
                            why = DANU_STOP_LENGTH;
                        }
                    }
                }
                spent += now_ns() - t1;
                if (s != DANU_OK && s != DANU_IN_PROGRESS) return fail("model", s);
                if (s == DANU_IN_PROGRESS) break;   /* the budget is used */
            }
            if (spent > 0) {
                if ((size_t)worked == cap) {
                    double *more = realloc(model_ms, 2 * cap * sizeof *model_ms);
                    if (!more) return 1;
                    model_ms = more;
                    cap *= 2;
                }
                model_ms[worked++] = spent / 1e6;
            }
            frames++;
            turn_frames++;
            next += FRAME_NS;   /* fixed timestep: sleep to the next deadline */
            if (now_ns() > next) { late++; next = now_ns(); continue; }
            struct timespec ts = { (time_t)(next / 1000000000LL), (long)(next % 1000000000LL) };
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        }

        /* Act only on a complete value: the state says so without parsing. */
        int32_t state = DANU_CONSTRAINT_NONE;
        danu_context_constraint_state(ctx, &state);
        int ok = state == DANU_CONSTRAINT_COMPLETE || state == DANU_CONSTRAINT_FINISHED;
        complete += ok;
        reply[reply_len] = 0;
        printf("Kara: %s\n", reply);
        printf("turn %ld: %s (%s), %ld tokens in %ld frames\n", turn + 1, ok ? "complete" : "INCOMPLETE",
               why == DANU_STOP_GRAMMAR ? "the JSON closed" : why == DANU_STOP_EOS ? "end of text" : "token limit",
               tokens, turn_frames);
        fflush(stdout);
    }

    qsort(model_ms, (size_t)worked, sizeof *model_ms, by_value);
#define PCT(p) (worked ? model_ms[(long)((p) * (worked - 1) + 0.5)] : 0.0)
    printf("model time per frame (%ld frames): p50 %.2f ms, p99 %.2f ms, max %.2f ms (budget %.2f ms)\n", worked,
           PCT(0.50), PCT(0.99), PCT(1.0), budget_us / 1000.0);
    printf("turns %ld, complete %ld, frames %ld, late frames %ld\n", turns, complete, frames, late);
    free(model_ms);
    danu_context_free(ctx);
    danu_model_free(model);
    return complete == turns ? 0 : 1;
}
