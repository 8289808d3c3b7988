/* game_loop.c - an NPC reply generated inside a fixed-timestep game loop,
 * without background threads: each 60 Hz frame updates the game, then spends
 * what is left of its time budget on at most one danu_context_step (one
 * token), renders, and sleeps until the next frame. The reply can be
 * cancelled mid-way (Enter on a terminal, or --cancel-after N frames); the
 * context is then rewound so the half reply leaves no trace.
 *
 *   game_loop MODEL [--cancel-after FRAMES] [--max-frames N] [--temp T]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <poll.h>
#include <unistd.h>
#include "danu.h"

#define FRAME_NS 16666667L   /* 60 Hz */
#define GEN_BUDGET_NS 8000000L /* at most half a frame for the model */

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

/* Enter on a terminal cancels; a pipe or /dev/null never does. */
static int key_pressed(void)
{
    if (!isatty(0)) return 0;
    struct pollfd p = { 0, POLLIN, 0 };
    if (poll(&p, 1, 0) <= 0) return 0;
    char buf[64];
    return read(0, buf, sizeof buf) >= 0;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    long cancel_after = -1, max_frames = 600;
    double temp = 0.0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--cancel-after") && i + 1 < argc) cancel_after = atol(argv[++i]);
        else if (!strcmp(argv[i], "--max-frames") && i + 1 < argc) max_frames = atol(argv[++i]);
        else if (!strcmp(argv[i], "--temp") && i + 1 < argc) temp = atof(argv[++i]);
        else if (!path) path = argv[i];
    }
    if (!path) { fprintf(stderr, "usage: game_loop MODEL [--cancel-after FRAMES] [--max-frames N] [--temp T]\n"); return 2; }

    danu_options *o = NULL;
    danu_status s = danu_options_create(NULL, &o);
    if (s != DANU_OK) return fail("options", s);
    danu_options_set_float(o, DANU_OPT_TEMPERATURE, temp);
    danu_options_set_int(o, DANU_OPT_N_THREADS, 2);   /* leave cores to the game */
    danu_model *model = NULL;
    danu_context *ctx = NULL;
    if ((s = danu_model_load(path, o, &model)) != DANU_OK) return fail("load", s);
    int64_t train_ctx = 0;   /* the window the model was trained for caps the cache */
    danu_model_get_int(model, DANU_INFO_CONTEXT_LENGTH, &train_ctx);
    danu_options_set_int(o, DANU_OPT_N_CTX, train_ctx < 1024 ? train_ctx : 1024);
    if ((s = danu_context_create(model, o, &ctx)) != DANU_OK) return fail("context", s);
    danu_options_free(o);

    /* The player talks to the blacksmith: the prompt is evaluated up front
     * (a loading screen would hide this); the reply is generated per frame. */
    const char *roles[] = { "system", "user" };
    const char *texts[] = { "You are Brom, the village blacksmith. Answer in one sentence.",
                            "Can you mend my sword?" };
    if ((s = danu_context_chat_append(ctx, roles, texts, 2, 1)) != DANU_OK) return fail("prompt", s);
    size_t reply_start = danu_context_n_tokens(ctx);
    /* A snapshot to return to when the reply is cancelled: rewinding is cheaper
     * but a sliding-window model may already have overwritten what it needs. */
    size_t snap_len = danu_context_state_size(ctx);
    void *snap = malloc(snap_len);
    if (!snap) return 1;
    if ((s = danu_context_state_save(ctx, snap, snap_len, &snap_len)) != DANU_OK) return fail("snapshot", s);

    int talking = 1, cancelled = 0;
    long steps = 0, late = 0, frame = 0, skipped = 0;
    double npc_x = 0, step_ns = 0;         /* running average cost of one step */
    long long next = now_ns();
    for (frame = 0; frame < max_frames; frame++) {
        long long start = now_ns();
        npc_x += 1.5 / 60.0;               /* game update: the NPC walks at 1.5 units/s */

        if (talking && (key_pressed() || (cancel_after >= 0 && frame >= cancel_after))) {
            char held[512];
            size_t held_len;
            /* end the stepped generation: what it held back goes with the reply */
            (void)danu_context_step_finish(ctx, held, sizeof held, &held_len);
            if (danu_context_rewind(ctx, reply_start) != DANU_OK &&      /* forget the half reply */
                (s = danu_context_state_load(ctx, snap, snap_len)) != DANU_OK)
                return fail("restore", s);
            talking = 0;
            cancelled = 1;
            printf("\nframe %ld: reply cancelled after %ld steps\n", frame, steps);
        }
        /* One token when it fits in the budget, or after three frames without one. */
        long long left = GEN_BUDGET_NS - (now_ns() - start);
        if (talking && (left > step_ns || skipped >= 3)) {
            danu_token id;
            char piece[512];
            size_t len = 0;
            int32_t why;
            long long t0 = now_ns();
            s = danu_context_step(ctx, &id, piece, sizeof piece, &len, &why);
            long long dt = now_ns() - t0;
            step_ns = steps ? 0.8 * step_ns + 0.2 * (double)dt : (double)dt;
            steps++;
            skipped = 0;
            if (s != DANU_OK && why < 0) return fail("step", s);
            fwrite(piece, 1, len, stdout);   /* render: the speech bubble grows */
            if (why >= 0) {
                talking = 0;
                printf("\nframe %ld: reply finished (%s) after %ld steps\n", frame,
                       why == DANU_STOP_EOS ? "end of text" : "stopped", steps);
            }
        } else if (talking) {
            skipped++;
        }
        if (frame % 30 == 0) fprintf(stderr, "[frame %ld, npc x %.2f, %ld tokens, %.2f ms/step]\n", frame, npc_x,
                                     steps, step_ns / 1e6);
        fflush(stdout);
        if (!talking && frame > 0 && (cancelled || steps > 0)) break;

        next += FRAME_NS;                  /* fixed timestep: sleep to the next deadline */
        if (now_ns() > next) { late++; next = now_ns(); continue; }
        struct timespec ts = { (time_t)(next / 1000000000LL), (long)(next % 1000000000LL) };
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
    }
    printf("frames %ld, steps %ld, late frames %ld, cancelled %s, context %zu tokens (prompt %zu)\n", frame + 1,
           steps, late, cancelled ? "yes" : "no", danu_context_n_tokens(ctx), reply_start);
    free(snap);
    danu_context_free(ctx);
    danu_model_free(model);
    return 0;
}
