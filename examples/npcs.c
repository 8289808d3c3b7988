/* npcs.c - eight characters of one scene talking at once in a 60 Hz game
 * loop. The scene (a system prompt every character shares) is evaluated
 * once, as a loading screen would; each character is a fork of that
 * context (a copy of its cache: no second evaluation) given its own
 * persona line; then one danu_batch_step per frame advances all of them in
 * a single forward pass, which reads the weights once for the eight. Each
 * character's text is printed as it arrives, prefixed by its name.
 *
 *   npcs MODEL [--max-tokens N] [--temp T]
 *
 * With --temp 0 each reply is what `danu chat --system SCENE -p PERSONA
 * --greedy` prints for that character alone.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "danu.h"

#define N_NPCS 8
#define FRAME_NS 16666667LL     /* 60 Hz */
#define GEN_BUDGET_NS 8000000LL /* at most half a frame for the model */

static const char *scene =
    "The market square of Eldham at dusk. Lanterns are being lit, a cart has lost a wheel, "
    "and a stranger with a sword has just walked in. Every villager answers in one short sentence.";

static const struct { const char *name, *persona; } cast[N_NPCS] = {
    { "Brom", "You are Brom, the blacksmith. Greet the stranger." },
    { "Ilsa", "You are Ilsa, the baker. Offer the stranger some bread." },
    { "Odo", "You are Odo, the guard captain. Ask the stranger's business." },
    { "Mirel", "You are Mirel, the herbalist. Warn about the forest." },
    { "Tam", "You are Tam, a boy of ten. Ask about the sword." },
    { "Gerda", "You are Gerda, the innkeeper. Offer a room." },
    { "Finn", "You are Finn, the carter. Complain about the wheel." },
    { "Sable", "You are Sable, a thief. Whisper something sly." },
};

static long long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int fail(const char *what, danu_status s)
{
    fprintf(stderr, "npcs: %s: %s: %s\n", what, danu_strerror(s), danu_last_error());
    return 1;
}

/* Text on one line: backslash, newline and other control bytes escaped. */
static void print_escaped(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\') fputs("\\\\", stdout);
        else if (c == '\n') fputs("\\n", stdout);
        else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else putchar(c);
    }
}

typedef struct npc {
    danu_context *ctx;
    char reply[4096];   /* everything said so far */
    size_t len;
    int tokens, talking;
    const char *ending;
} npc;

static void say(npc *p, int i, const char *text, size_t len)
{
    if (len == 0) return;
    printf("[%s] ", cast[i].name);   /* the speech bubble grows */
    print_escaped(text, len);
    putchar('\n');
    if (p->len + len < sizeof p->reply) {
        memcpy(p->reply + p->len, text, len);
        p->len += len;
    }
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    int max_tokens = 48;
    double temp = 0.8;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--max-tokens") && i + 1 < argc) max_tokens = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--temp") && i + 1 < argc) temp = atof(argv[++i]);
        else if (!path && argv[i][0] != '-') path = argv[i];
        else { path = NULL; break; }
    }
    if (!path || max_tokens < 1) { fprintf(stderr, "usage: npcs MODEL [--max-tokens N] [--temp T]\n"); return 2; }

    danu_options *o = NULL;
    danu_status s = danu_options_create(NULL, &o);
    if (s != DANU_OK) return fail("options", s);
    danu_options_set_float(o, DANU_OPT_TEMPERATURE, temp);
    danu_options_set_int(o, DANU_OPT_N_THREADS, 2);   /* leave cores to the game */
    danu_model *model = NULL;
    if ((s = danu_model_load(path, o, &model)) != DANU_OK) return fail("load", s);
    /* Every character holds its own KV cache: size it for one conversation
     * (scene, persona, reply) rather than the model's whole window. A small
     * N_BATCH keeps each context's own scratch small too: the batch has its
     * own, and the characters' work all goes through it. */
    int64_t train_ctx = 0;
    danu_model_get_int(model, DANU_INFO_CONTEXT_LENGTH, &train_ctx);
    danu_options_set_int(o, DANU_OPT_N_CTX, train_ctx < 512 ? train_ctx : 512);
    danu_options_set_int(o, DANU_OPT_N_BATCH, 64);
    danu_context *shared = NULL;
    danu_batch *batch = NULL;
    if ((s = danu_context_create(model, o, &shared)) != DANU_OK) return fail("context", s);
    if ((s = danu_batch_create(model, N_NPCS, o, &batch)) != DANU_OK) return fail("batch", s);
    danu_options_free(o);

    /* Loading screen: the scene, once, for everyone. */
    printf("scene: %s\n", scene);
    const char *system_role = "system", *user_role = "user";
    long long t0 = now_ns();
    if ((s = danu_context_chat_append(shared, &system_role, &scene, 1, 0)) != DANU_OK) return fail("scene", s);
    const double scene_ms = (double)(now_ns() - t0) / 1e6;

    /* Eight characters: forks of the scene, each with its persona queued
     * (chat_append_begin: evaluated by the batch, not now). */
    static npc npcs[N_NPCS];
    t0 = now_ns();
    for (int i = 0; i < N_NPCS; i++)
        if ((s = danu_context_fork(shared, &npcs[i].ctx)) != DANU_OK) return fail("fork", s);
    const double fork_ms = (double)(now_ns() - t0) / 1e6;
    for (int i = 0; i < N_NPCS; i++) {
        printf("%s: %s\n", cast[i].name, cast[i].persona);
        danu_context_set_int(npcs[i].ctx, DANU_OPT_SEED, i + 1);   /* each its own dice */
        s = danu_context_chat_append_begin(npcs[i].ctx, &user_role, &cast[i].persona, 1, 1);
        if (s != DANU_OK) return fail("persona", s);
        npcs[i].talking = 1;
    }

    /* The game loop: one batch step per frame when it fits the budget
     * (or after three frames without one), then sleep to the next frame. */
    static char text[N_NPCS][512];
    long frames = 0, batch_steps = 0, late = 0, skipped = 0, total_tokens = 0;
    double step_ns = 0, busy_ns = 0;   /* running average and total cost of a batch step */
    int talking = N_NPCS;
    const long long gen_start = now_ns();
    long long next = gen_start;
    for (frames = 0; talking > 0; frames++) {
        const long long start = now_ns();
        /* ... the game's own update would run here ... */
        if ((double)(GEN_BUDGET_NS - (now_ns() - start)) > step_ns || skipped >= 3) {
            danu_batch_item items[N_NPCS];
            int who[N_NPCS], n = 0;
            for (int i = 0; i < N_NPCS; i++) {
                if (!npcs[i].talking) continue;
                items[n] = (danu_batch_item){ .struct_size = sizeof(danu_batch_item), .ctx = npcs[i].ctx,
                                              .text = text[i], .cap = sizeof text[i] };
                who[n++] = i;
            }
            const long long t1 = now_ns();
            if ((s = danu_batch_step(batch, items, (size_t)n)) != DANU_OK) return fail("batch step", s);
            const double dt = (double)(now_ns() - t1);
            busy_ns += dt;
            step_ns = batch_steps++ ? 0.8 * step_ns + 0.2 * dt : dt;
            skipped = 0;
            for (int k = 0; k < n; k++) {
                npc *p = &npcs[who[k]];
                const danu_batch_item *it = &items[k];
                if (it->status == DANU_IN_PROGRESS) continue;   /* still reading its persona */
                if (it->status != DANU_OK) {
                    fprintf(stderr, "npcs: %s: %s: %s\n", cast[who[k]].name, danu_strerror(it->status),
                            danu_last_error());
                    p->ending = "error";
                } else {
                    say(p, who[k], it->text, it->len);
                    if (it->reason < 0) {
                        p->tokens++;
                        total_tokens++;
                    }
                    if (it->reason == DANU_STOP_EOS) p->ending = "end of text";
                    else if (it->reason >= 0) p->ending = "stopped";
                    else if (p->tokens >= max_tokens) {
                        /* our own limit: take what the context held back */
                        size_t len = 0;
                        danu_context_step_finish(p->ctx, text[who[k]], sizeof text[0], &len);
                        say(p, who[k], text[who[k]], len);
                        p->ending = "token limit";
                    }
                }
                if (p->ending) {
                    p->talking = 0;
                    talking--;
                }
            }
        } else {
            skipped++;
        }
        fflush(stdout);
        next += FRAME_NS;   /* fixed timestep */
        if (now_ns() > next) { late++; next = now_ns(); continue; }
        struct timespec ts = { (time_t)(next / 1000000000LL), (long)(next % 1000000000LL) };
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
    }
    const double gen_s = (double)(now_ns() - gen_start) / 1e9;

    printf("--- replies\n");
    for (int i = 0; i < N_NPCS; i++) {
        printf("%s said (%s, %d tokens): ", cast[i].name, npcs[i].ending, npcs[i].tokens);
        print_escaped(npcs[i].reply, npcs[i].len);
        putchar('\n');
    }
    printf("shared prompt: %zu tokens evaluated in %.2f ms\n", danu_context_n_tokens(shared), scene_ms);
    printf("fork: %d characters in %.3f ms (%.1f MB each)\n", N_NPCS, fork_ms,
           (double)danu_context_memory_size(npcs[0].ctx) / 1e6);
    printf("generation: %ld tokens in %.2f s, %ld frames (%ld late), %ld batch steps: %.1f tokens/s in the loop, "
           "%.1f tokens/s of step time\n", total_tokens, gen_s, frames, late, batch_steps,
           gen_s > 0 ? (double)total_tokens / gen_s : 0.0, busy_ns > 0 ? (double)total_tokens / (busy_ns / 1e9) : 0.0);
    for (int i = 0; i < N_NPCS; i++) danu_context_free(npcs[i].ctx);
    danu_batch_free(batch);
    danu_context_free(shared);
    danu_model_free(model);
    return 0;
}
