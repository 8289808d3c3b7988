/* simple.c - load a model, generate from a prompt, stream the text to stdout.
 *
 *   simple MODEL [PROMPT] [N_TOKENS] [TEMPERATURE]
 *
 * MODEL is an HF directory or a .gguf file. TEMPERATURE 0 is greedy decoding
 * (the same text every run). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "danu.h"

static int fail(const char *what, danu_status s)
{
    fprintf(stderr, "simple: %s: %s: %s\n", what, danu_strerror(s), danu_last_error());
    return 1;
}

/* Called for every piece of text; returning nonzero would stop generation. */
static int32_t print_piece(void *user, danu_token id, const char *text, size_t len)
{
    (void)user; (void)id;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: simple MODEL [PROMPT] [N_TOKENS] [TEMPERATURE]\n");
        return 2;
    }
    const char *prompt = argc > 2 ? argv[2] : "The capital of France is";
    int n_tokens = argc > 3 ? atoi(argv[3]) : 64;
    double temperature = argc > 4 ? atof(argv[4]) : 0.8;

    /* Options are copied by the calls that use them, so one bag serves both. */
    danu_options *opts = NULL;
    danu_status s = danu_options_create(NULL, &opts);
    if (s != DANU_OK) return fail("options", s);
    danu_options_set_float(opts, DANU_OPT_TEMPERATURE, temperature);

    danu_model *model = NULL;
    danu_context *ctx = NULL;
    if ((s = danu_model_load(argv[1], opts, &model)) != DANU_OK) return fail("load", s);
    int64_t train_ctx = 0;   /* the window the model was trained for caps the cache */
    danu_model_get_int(model, DANU_INFO_CONTEXT_LENGTH, &train_ctx);
    danu_options_set_int(opts, DANU_OPT_N_CTX, train_ctx < 2048 ? train_ctx : 2048);
    if ((s = danu_context_create(model, opts, &ctx)) != DANU_OK) return fail("context", s);
    danu_options_free(opts);

    /* Text to ids: the call reports how many it needs, so ask once for the size. */
    const danu_tokenizer *tok = danu_model_tokenizer(model);
    size_t n = 0;
    danu_tokenizer_encode(tok, prompt, strlen(prompt), DANU_TOKENIZE_ADD_BOS, NULL, 0, &n);
    danu_token *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids) return 1;
    s = danu_tokenizer_encode(tok, prompt, strlen(prompt), DANU_TOKENIZE_ADD_BOS, ids, n, &n);
    if (s != DANU_OK) return fail("encode", s);

    /* Evaluate the prompt, then sample and stream up to n_tokens tokens. */
    if ((s = danu_context_eval(ctx, ids, n, NULL)) != DANU_OK) return fail("eval", s);
    printf("%s", prompt);
    int32_t why = 0;
    s = danu_context_generate(ctx, n_tokens, print_piece, NULL, &why);
    printf("\n");
    if (s != DANU_OK) return fail("generate", s);
    fprintf(stderr, "[%zu tokens in the context, stopped by %s]\n", danu_context_n_tokens(ctx),
            why == DANU_STOP_EOS ? "end of text" : "length");

    free(ids);
    danu_context_free(ctx);
    danu_model_free(model);
    return 0;
}
