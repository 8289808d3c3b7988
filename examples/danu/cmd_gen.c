/* cmd_gen.c - `danu eval`, `danu generate`, `danu run` and `danu chat`:
 * the same context and generation path the library offers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"

/* Options shared by the generating commands. */
typedef struct gen_args {
    const char *model, *prompt, *tokens, *out, *system;
    int n, greedy, print_ids, all, threads, n_ctx, kv_f32, ignore_eos;
    double temp, top_p, min_p, repeat_penalty;
    long top_k, seed, repeat_last_n;
} gen_args;

static int parse_gen(int argc, char **argv, gen_args *a, const char *cmd, const char *help)
{
    memset(a, 0, sizeof *a);
    a->n = 128;
    a->temp = 0.8; a->top_p = 0.95; a->min_p = 0.05; a->repeat_penalty = 1.0;
    a->top_k = 40; a->repeat_last_n = 64;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        int more = i + 1 < argc, lf;
        if (cli_is_flag(s, "-h", "--help")) { printf("%s", help); return 1; }
        else if (cli_is_flag(s, "-m", "--model") && more) a->model = argv[++i];
        else if (cli_is_flag(s, "-p", "--prompt") && more) a->prompt = argv[++i];
        else if (cli_is_flag(s, NULL, "--tokens") && more) a->tokens = argv[++i];
        else if (cli_is_flag(s, "-o", "--output") && more) a->out = argv[++i];
        else if (cli_is_flag(s, NULL, "--system") && more) a->system = argv[++i];
        else if (cli_is_flag(s, "-n", "--n-predict") && more) a->n = atoi(argv[++i]);
        else if (cli_is_flag(s, "-t", "--threads") && more) a->threads = atoi(argv[++i]);
        else if (cli_is_flag(s, "-c", "--ctx-size") && more) a->n_ctx = atoi(argv[++i]);
        else if (cli_is_flag(s, NULL, "--temp") && more) a->temp = atof(argv[++i]);
        else if (cli_is_flag(s, NULL, "--top-k") && more) a->top_k = atol(argv[++i]);
        else if (cli_is_flag(s, NULL, "--top-p") && more) a->top_p = atof(argv[++i]);
        else if (cli_is_flag(s, NULL, "--min-p") && more) a->min_p = atof(argv[++i]);
        else if (cli_is_flag(s, NULL, "--repeat-penalty") && more) a->repeat_penalty = atof(argv[++i]);
        else if (cli_is_flag(s, NULL, "--repeat-last-n") && more) a->repeat_last_n = atol(argv[++i]);
        else if (cli_is_flag(s, NULL, "--seed") && more) a->seed = atol(argv[++i]);
        else if (cli_is_flag(s, NULL, "--greedy")) a->greedy = 1;
        else if (cli_is_flag(s, NULL, "--print-ids")) a->print_ids = 1;
        else if (cli_is_flag(s, NULL, "--all")) a->all = 1;
        else if (cli_is_flag(s, NULL, "--kv-f32")) a->kv_f32 = 1;
        else if (cli_is_flag(s, NULL, "--ignore-eos")) a->ignore_eos = 1;
        else if (cli_is_flag(s, "-v", "--verbose")) continue;
        else if ((lf = cli_load_flag(argc, argv, &i)) != 0) { if (lf < 0) return -1; }
        else { fprintf(stderr, "danu %s: unexpected argument %s (see --help)\n", cmd, s); return -1; }
    }
    return 0;
}

#define COMMON_HELP \
    "  -m MODEL          HF directory or .gguf file\n" \
    "  -t N              threads (default: all cores)\n" \
    "  -c N              context size (default: the model's)\n" \
    "  --kv-f32          keep the KV cache in f32 (default f16)\n" \
    CLI_LOAD_HELP
#define SAMPLING_HELP \
    "  -n N              tokens to generate (default 128)\n" \
    "  --greedy          always pick the most likely token (same as --temp 0)\n" \
    "  --temp T --top-k K --top-p P --min-p M --seed S\n" \
    "  --repeat-penalty R --repeat-last-n N   (Danube chat uses 1.1)\n" \
    "  --ignore-eos      keep going past the end-of-sequence token\n"

static danu_context *make_context(danu_model *m, const gen_args *a)
{
    danu_options *o = cli_options(0);
    if (a->threads > 0) danu_options_set_int(o, DANU_OPT_N_THREADS, a->threads);
    if (a->n_ctx > 0) danu_options_set_int(o, DANU_OPT_N_CTX, a->n_ctx);
    if (a->kv_f32) danu_options_set_int(o, DANU_OPT_KV_TYPE, DANU_KV_F32);
    danu_options_set_float(o, DANU_OPT_TEMPERATURE, a->greedy ? 0.0 : a->temp);
    danu_options_set_int(o, DANU_OPT_TOP_K, a->top_k);
    danu_options_set_float(o, DANU_OPT_TOP_P, a->top_p);
    danu_options_set_float(o, DANU_OPT_MIN_P, a->min_p);
    danu_options_set_float(o, DANU_OPT_REPEAT_PENALTY, a->repeat_penalty);
    danu_options_set_int(o, DANU_OPT_REPEAT_LAST_N, a->repeat_last_n);
    danu_options_set_int(o, DANU_OPT_SEED, a->seed);
    danu_options_set_int(o, DANU_OPT_IGNORE_EOS, a->ignore_eos);
    danu_context *c = NULL;
    danu_status s = danu_context_create(m, o, &c);
    danu_options_free(o);
    if (s != DANU_OK) { cli_fail("context", s); return NULL; }
    return c;
}

static danu_model *load_model(const gen_args *a, char **owned)
{
    *owned = NULL;
    const char *path = a->model;
    if (!path) {
        *owned = cli_default_model();
        if (!*owned) return NULL;
        path = *owned;
    }
    danu_options *o = cli_options(1);
    danu_model *m = cli_load(path, o);
    danu_options_free(o);
    return m;
}

int cmd_eval(int argc, char **argv)
{
    gen_args a;
    int r = parse_gen(argc, argv, &a, "eval",
        "usage: danu eval -m MODEL --tokens \"1 450 7483\" [--all] -o OUT.f32\n"
        "  Writes float32 little-endian logits of the last position (every position with --all),\n"
        "  row after row.\n" COMMON_HELP);
    if (r) return r > 0 ? 0 : EXIT_USAGE;
    if (!a.model || !a.tokens || !a.out) { fprintf(stderr, "danu eval: need -m, --tokens and -o\n"); return EXIT_USAGE; }
    danu_token *ids = NULL;
    long n = cli_parse_ids(a.tokens, &ids);
    if (n <= 0) { fprintf(stderr, "danu eval: bad --tokens\n"); free(ids); return EXIT_USAGE; }
    char *owned;
    danu_model *m = load_model(&a, &owned);
    if (!m) { free(ids); return EXIT_FAIL; }
    int rc = EXIT_FAIL;
    danu_context *c = make_context(m, &a);
    int64_t vocab = 0;
    danu_model_get_int(m, DANU_INFO_VOCAB, &vocab);
    float *all = a.all ? malloc((size_t)n * (size_t)vocab * sizeof(float)) : NULL;
    if (c) {
        danu_status s = danu_context_eval(c, ids, (size_t)n, all);
        if (s != DANU_OK) cli_fail("eval", s);
        else {
            FILE *f = fopen(a.out, "wb");
            const float *rows = all ? all : danu_context_logits(c);
            size_t count = (size_t)(all ? n : 1) * (size_t)vocab;
            if (f && fwrite(rows, sizeof(float), count, f) == count && fclose(f) == 0) rc = 0;
            else fprintf(stderr, "danu eval: cannot write %s\n", a.out);
        }
    }
    free(all);
    danu_context_free(c);
    danu_model_free(m);
    free(ids);
    free(owned);
    return rc;
}

int cmd_generate(int argc, char **argv)
{
    gen_args a;
    int r = parse_gen(argc, argv, &a, "generate",
        "usage: danu generate -m MODEL --tokens \"IDS\" -n N [--greedy] [--print-ids]\n"
        "  Feeds the ids and generates N tokens; prints the generated ids (space-separated) with\n"
        "  --print-ids, else the text.\n" COMMON_HELP SAMPLING_HELP);
    if (r) return r > 0 ? 0 : EXIT_USAGE;
    if (!a.model || !a.tokens) { fprintf(stderr, "danu generate: need -m and --tokens\n"); return EXIT_USAGE; }
    danu_token *ids = NULL;
    long n = cli_parse_ids(a.tokens, &ids);
    if (n <= 0) { fprintf(stderr, "danu generate: bad --tokens\n"); free(ids); return EXIT_USAGE; }
    char *owned;
    danu_model *m = load_model(&a, &owned);
    if (!m) { free(ids); return EXIT_FAIL; }
    int rc = EXIT_FAIL;
    danu_context *c = make_context(m, &a);
    if (c) {
        danu_status s = danu_context_eval(c, ids, (size_t)n, NULL);
        if (s != DANU_OK) cli_fail("eval", s);
        else {
            int first = 1;
            rc = 0;
            for (int i = 0; i < a.n; i++) {
                danu_token t;
                char text[512];
                size_t len;
                int32_t why;
                s = danu_context_step(c, &t, text, sizeof text, &len, &why);
                if (s != DANU_OK) { rc = cli_fail("generate", s); break; }
                if (a.print_ids) { if (why != DANU_STOP_EOS || a.ignore_eos) printf(first ? "%d" : " %d", t); first = 0; }
                else fwrite(text, 1, len, stdout);
                fflush(stdout);
                if (why >= 0) break;
            }
            printf("\n");
        }
    }
    danu_context_free(c);
    danu_model_free(m);
    free(ids);
    free(owned);
    return rc;
}

static int32_t stream_cb(void *user, danu_token id, const char *text, size_t len)
{
    (void)user; (void)id;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

int cmd_run(int argc, char **argv)
{
    gen_args a;
    int r = parse_gen(argc, argv, &a, "run",
        "usage: danu run [-m MODEL] [-p PROMPT] [-n N] [--temp T --top-k K --top-p P --min-p M\n"
        "                --repeat-penalty R --seed S]\n"
        "  Streams generated text to stdout. Without -m, a small synthetic model is written to\n"
        "  ~/.cache/danu first (random weights: the text is gibberish, but everything runs).\n"
        COMMON_HELP SAMPLING_HELP);
    if (r) return r > 0 ? 0 : EXIT_USAGE;
    if (!a.prompt) a.prompt = "The capital of France is";
    char *owned;
    danu_model *m = load_model(&a, &owned);
    if (!m) return EXIT_FAIL;
    int rc = EXIT_FAIL;
    const danu_tokenizer *tok = danu_model_tokenizer(m);
    danu_context *c = tok ? make_context(m, &a) : NULL;
    if (!tok) fprintf(stderr, "danu run: the model has no tokenizer\n");
    if (c) {
        size_t n = 0, len = strlen(a.prompt);
        danu_tokenizer_encode(tok, a.prompt, len, DANU_TOKENIZE_ADD_BOS, NULL, 0, &n);
        danu_token *ids = malloc((n + 1) * sizeof *ids);
        danu_status s = danu_tokenizer_encode(tok, a.prompt, len, DANU_TOKENIZE_ADD_BOS, ids, n, &n);
        double t0 = cli_now();
        if (s == DANU_OK) s = danu_context_prompt(c, ids, n, NULL);
        double t1 = cli_now();
        if (s != DANU_OK) cli_fail("prompt", s);
        else {
            printf("%s", a.prompt);
            fflush(stdout);
            int32_t why;
            size_t before = danu_context_n_tokens(c);
            s = danu_context_generate(c, a.n, stream_cb, NULL, &why);
            double t2 = cli_now();
            printf("\n");
            fflush(stdout);
            if (s != DANU_OK) cli_fail("generate", s);
            else rc = 0;
            size_t made = danu_context_n_tokens(c) - before;
            fprintf(stderr, "danu run: prompt %zu tokens in %.2f s (%.1f tok/s), generated %zu tokens in %.2f s "
                    "(%.1f tok/s), peak RSS %.0f MB\n", n, t1 - t0, n / (t1 - t0 + 1e-9), made, t2 - t1,
                    made / (t2 - t1 + 1e-9), cli_peak_rss() / 1e6);
        }
        free(ids);
    }
    danu_context_free(c);
    danu_model_free(m);
    free(owned);
    return rc;
}

int cmd_chat(int argc, char **argv)
{
    gen_args a;
    int r = parse_gen(argc, argv, &a, "chat",
        "usage: danu chat [-m MODEL] [--system TEXT] [-n N] [sampling options]\n"
        "  Interactive chat in the H2O-Danube format (<|prompt|>...</s><|answer|>). Each turn reuses\n"
        "  the cache. Type an empty line or end input (Ctrl-D) to quit. -p TEXT sends one message\n"
        "  without reading stdin.\n" COMMON_HELP SAMPLING_HELP);
    if (r) return r > 0 ? 0 : EXIT_USAGE;
    if (a.repeat_penalty == 1.0) a.repeat_penalty = 1.1;   /* Danube chat's generation_config */
    char *owned;
    danu_model *m = load_model(&a, &owned);
    if (!m) return EXIT_FAIL;
    danu_context *c = danu_model_tokenizer(m) ? make_context(m, &a) : NULL;
    int rc = c ? 0 : EXIT_FAIL;
    if (c && a.system) {
        const char *role = "system";
        danu_status s = danu_context_chat_append(c, &role, (const char *const *)&a.system, 1, 0);
        if (s != DANU_OK) rc = cli_fail("chat", s);
    }
    char line[8192];
    int interactive = !a.prompt;
    while (c && rc == 0) {
        const char *msg = a.prompt;
        if (interactive) {
            fprintf(stderr, "> ");
            if (!fgets(line, sizeof line, stdin)) break;
            line[strcspn(line, "\n")] = 0;
            if (!line[0]) break;
            msg = line;
        }
        const char *role = "user";
        danu_status s = danu_context_chat_append(c, &role, &msg, 1, 1);
        int32_t why;
        if (s == DANU_OK) s = danu_context_generate(c, a.n, stream_cb, NULL, &why);
        printf("\n");
        if (s != DANU_OK) rc = cli_fail("chat", s);
        if (!interactive) break;
    }
    danu_context_free(c);
    danu_model_free(m);
    free(owned);
    return rc;
}
