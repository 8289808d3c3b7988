/* chat.c - a Danube chat REPL: one user message per line on stdin, the
 * assistant's reply streamed to stdout. The context keeps the conversation,
 * so each turn evaluates only the new message.
 *
 *   chat MODEL [--system TEXT] [-n MAX_REPLY_TOKENS]
 *
 * "/reset" forgets the conversation; end of input (Ctrl-D) quits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "danu.h"

static int fail(const char *what, danu_status s)
{
    fprintf(stderr, "chat: %s: %s: %s\n", what, danu_strerror(s), danu_last_error());
    return 1;
}

static int32_t print_piece(void *user, danu_token id, const char *text, size_t len)
{
    (void)user; (void)id;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    const char *model_path = NULL, *system = NULL;
    int max_reply = 256;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--system") && i + 1 < argc) system = argv[++i];
        else if (!strcmp(argv[i], "-n") && i + 1 < argc) max_reply = atoi(argv[++i]);
        else if (!model_path && argv[i][0] != '-') model_path = argv[i];
        else { fprintf(stderr, "usage: chat MODEL [--system TEXT] [-n MAX_REPLY_TOKENS]\n"); return 2; }
    }
    if (!model_path) { fprintf(stderr, "usage: chat MODEL [--system TEXT] [-n MAX_REPLY_TOKENS]\n"); return 2; }

    danu_options *opts = NULL;
    danu_status s = danu_options_create(NULL, &opts);
    if (s != DANU_OK) return fail("options", s);
    /* Danube chat settings: mild sampling, a repetition penalty, and a context
     * that drops old turns (keeping the system prompt) instead of failing. */
    danu_options_set_float(opts, DANU_OPT_TEMPERATURE, 0.7);
    danu_options_set_float(opts, DANU_OPT_REPEAT_PENALTY, 1.1);
    danu_options_set_int(opts, DANU_OPT_ON_FULL, DANU_FULL_SHIFT);

    danu_model *model = NULL;
    danu_context *ctx = NULL;
    if ((s = danu_model_load(model_path, opts, &model)) != DANU_OK) return fail("load", s);
    int64_t train_ctx = 0;   /* the window the model was trained for caps the cache */
    danu_model_get_int(model, DANU_INFO_CONTEXT_LENGTH, &train_ctx);
    danu_options_set_int(opts, DANU_OPT_N_CTX, train_ctx < 4096 ? train_ctx : 4096);
    if ((s = danu_context_create(model, opts, &ctx)) != DANU_OK) return fail("context", s);
    danu_options_free(opts);

    int interactive = isatty(0);
    int first = 1;
    char line[4096];
    for (;;) {
        if (interactive) { printf("> "); fflush(stdout); }
        if (!fgets(line, sizeof line, stdin)) break;
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0]) continue;
        if (!strcmp(line, "/reset")) {
            danu_context_clear(ctx);
            first = 1;
            printf("[conversation cleared]\n");
            continue;
        }
        /* The first turn carries the system prompt; chat_append adds BOS on
         * an empty context and closes an unfinished assistant turn. */
        const char *roles[2] = { "system", "user" };
        const char *contents[2] = { system, line };
        int with_system = first && system;
        s = danu_context_chat_append(ctx, roles + !with_system, contents + !with_system, with_system ? 2 : 1, 1);
        if (s != DANU_OK) return fail("chat", s);
        first = 0;

        printf("assistant: ");
        int32_t why = 0;
        s = danu_context_generate(ctx, max_reply, print_piece, NULL, &why);
        printf("\n");
        if (s != DANU_OK) return fail("generate", s);
        if (why == DANU_STOP_LENGTH) fprintf(stderr, "[reply cut at %d tokens]\n", max_reply);
    }
    danu_context_free(ctx);
    danu_model_free(model);
    return 0;
}
