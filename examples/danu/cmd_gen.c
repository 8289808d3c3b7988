/* cmd_gen.c - `danu eval`, `danu generate`, `danu run` and `danu chat`:
 * the same context and generation path the library offers. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "common/os.h"

/* Options shared by the generating commands (the load, context and
 * sampling options go through cli_flag). */
typedef struct gen_args {
    const char *model, *prompt, *file, *tokens, *out, *system;
    int64_t n, slice_us;   /* slice_us -1: not sliced (run --slice-us) */
    int print_ids, all, special;
    cli_cons cons;         /* run: --grammar-file, --json-schema, --choice, --choice-file */
} gen_args;

static int parse_gen(int argc, char **argv, gen_args *a, const char *help, int groups)
{
    memset(a, 0, sizeof *a);
    a->n = 128;
    a->slice_us = -1;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        int more = i + 1 < argc, lf;
        if (cli_is_flag(s, "-h", "--help")) { printf("%s", help); return 1; }
        else if (cli_is_flag(s, "-m", "--model") && more) a->model = argv[++i];
        else if (cli_is_flag(s, "-p", "--prompt") && more) a->prompt = argv[++i];
        else if (cli_is_flag(s, "-f", "--file") && more) a->file = argv[++i];
        else if (cli_is_flag(s, NULL, "--tokens") && more) a->tokens = argv[++i];
        else if (cli_is_flag(s, "-o", "--output") && more) a->out = argv[++i];
        else if (cli_is_flag(s, NULL, "--system") && more) a->system = argv[++i];
        else if (cli_is_flag(s, "-n", "--n-predict") && (groups & CLI_SAMPLE)) {
            if (cli_parse_int(s, more ? argv[++i] : NULL, 0, INT32_MAX, &a->n)) return -1;
        }
        else if (cli_is_flag(s, NULL, "--slice-us") && !strcmp(cli_cmd, "run")) {
            if (cli_parse_int(s, more ? argv[++i] : NULL, 0, 60e6, &a->slice_us)) return -1;
        }
        else if (cli_is_flag(s, NULL, "--special")) a->special = 1;
        else if (cli_is_flag(s, NULL, "--print-ids")) a->print_ids = 1;
        else if (cli_is_flag(s, NULL, "--all")) a->all = 1;
        else if (cli_is_flag(s, "-v", "--verbose")) continue;
        else if (!strcmp(cli_cmd, "run") && (lf = cli_cons_flag(argc, argv, &i, &a->cons)) != 0) {
            if (lf < 0) return -1;
        }
        else if ((lf = cli_flag(argc, argv, &i, groups)) != 0) { if (lf < 0) return -1; }
        else { cli_err("unexpected argument %s (see --help)", s); return -1; }
    }
    if (cli_cons_check(&a->cons)) return -1;
    double keep, ctx;
    if (cli_opt_given(DANU_OPT_N_KEEP, &keep) && cli_opt_given(DANU_OPT_N_CTX, &ctx) && ctx > 0 && keep >= ctx) {
        cli_err("--n-keep %.0f must be below -c %.0f", keep, ctx);
        return -1;
    }
    return 0;
}

#define COMMON_HELP \
    "  -m MODEL          HF directory or .gguf file\n" \
    CLI_LOAD_HELP CLI_CTX_HELP
#define SAMPLING_HELP \
    "  -n N              tokens to generate (default 128)\n" \
    "  --greedy          always pick the most likely token (same as --temp 0)\n" \
    "  --temp T (0.8) --top-k K (40) --top-p P (0.95) --min-p M (0.05) --seed S (0)\n" \
    "  --repeat-penalty R (1.0) --repeat-last-n N (64) --frequency-penalty F (0)\n" \
    "  --presence-penalty P (0)   the library's defaults in (); for an HF directory\n" \
    "                    with a generation_config.json its temperature, top_k, top_p,\n" \
    "                    min_p and repetition_penalty are the defaults instead (the\n" \
    "                    Danube chat model's sets repetition_penalty 1.1); GGUF files\n" \
    "                    have none. A flag always wins; -v says which values apply.\n" \
    "  --ignore-eos      keep going past the end-of-sequence token\n"

static danu_context *make_context(danu_model *m)
{
    danu_options *o = cli_options(0);
    danu_context *c = NULL;
    if (!o) return NULL;
    if (cli_apply(o, CLI_CTX | CLI_SAMPLE)) { danu_options_free(o); return NULL; }
    danu_status s = danu_context_create(m, o, &c);
    danu_options_free(o);
    if (s != DANU_OK) { cli_fail("context", s); return NULL; }
    return c;
}

static danu_model *load_model(const gen_args *a, char **owned, int sampling)
{
    *owned = NULL;
    const char *path = a->model;
    if (!path) {
        *owned = cli_default_model();
        if (!*owned) return NULL;
        path = *owned;
    }
    if (sampling) cli_generation_config(path);
    danu_options *o = cli_options(1);
    danu_model *m = cli_load(path, o);
    danu_options_free(o);
    return m;
}

int cmd_eval(int argc, char **argv)
{
    gen_args a;
    int r = parse_gen(argc, argv, &a,
        "usage: danu eval -m MODEL --tokens \"1 450 7483\" [--all] -o OUT.f32\n"
        "  Writes float32 little-endian logits of the last position (every position with --all),\n"
        "  row after row.\n" COMMON_HELP, CLI_LOAD | CLI_CTX);
    if (r) return r > 0 ? 0 : EXIT_USAGE;
    if (!a.model || !a.tokens || !a.out) { cli_err("need -m, --tokens and -o"); return EXIT_USAGE; }
    danu_token *ids = NULL;
    long n = cli_parse_ids(a.tokens, &ids);
    if (n <= 0) { cli_err("--tokens takes token ids (\"1 450 7483\")"); free(ids); return EXIT_USAGE; }
    char *owned;
    danu_model *m = load_model(&a, &owned, 0);
    if (!m) { free(ids); return EXIT_FAIL; }
    int rc = EXIT_FAIL;
    danu_context *c = make_context(m);
    int64_t vocab = 0;
    danu_model_get_int(m, DANU_INFO_VOCAB, &vocab);
    float *all = a.all ? malloc((size_t)n * (size_t)vocab * sizeof(float)) : NULL;
    if (c) {
        danu_status s = danu_context_eval(c, ids, (size_t)n, all);
        if (s != DANU_OK) cli_fail("eval", s);
        else {
            FILE *f = dn_fopen(a.out, "wb");
            const float *rows = all ? all : danu_context_logits(c);
            size_t count = (size_t)(all ? n : 1) * (size_t)vocab;
            if (f && fwrite(rows, sizeof(float), count, f) == count && fclose(f) == 0) rc = 0;
            else cli_err("cannot write %s", a.out);
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
    int r = parse_gen(argc, argv, &a,
        "usage: danu generate -m MODEL --tokens \"IDS\" -n N [--greedy] [--print-ids]\n"
        "  Feeds the ids and generates N tokens; prints the generated ids (space-separated) with\n"
        "  --print-ids, else the text.\n" COMMON_HELP SAMPLING_HELP, CLI_LOAD | CLI_CTX | CLI_SAMPLE);
    if (r) return r > 0 ? 0 : EXIT_USAGE;
    if (!a.model || !a.tokens) { cli_err("need -m and --tokens"); return EXIT_USAGE; }
    danu_token *ids = NULL;
    long n = cli_parse_ids(a.tokens, &ids);
    if (n <= 0) { cli_err("--tokens takes token ids (\"1 450 7483\")"); free(ids); return EXIT_USAGE; }
    char *owned;
    danu_model *m = load_model(&a, &owned, 1);
    if (!m) { free(ids); return EXIT_FAIL; }
    int rc = EXIT_FAIL;
    danu_context *c = make_context(m);
    double ignore_eos = 0;
    cli_opt_given(DANU_OPT_IGNORE_EOS, &ignore_eos);
    if (c) {
        danu_status s = danu_context_eval(c, ids, (size_t)n, NULL);
        if (s != DANU_OK) cli_fail("eval", s);
        else {
            int first = 1;
            rc = 0;
            for (int64_t i = 0; i < a.n; i++) {
                danu_token t;
                char text[512];
                size_t len;
                int32_t why;
                s = danu_context_step(c, &t, text, sizeof text, &len, &why);
                if (s != DANU_OK) { rc = cli_fail("generate", s); break; }
                if (a.print_ids) { if (why != DANU_STOP_EOS || ignore_eos) printf(first ? "%d" : " %d", t); first = 0; }
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

/* --slice-us: how many calls of sliced work ran and the longest. */
typedef struct slice_stats { int64_t calls; double total_ms, max_ms; } slice_stats;

/* Call with t0 taken before the call it times (arguments have no order). */
static danu_status timed(slice_stats *st, double t0, danu_status s)
{
    double ms = (cli_now() - t0) * 1e3;
    st->calls++;
    st->total_ms += ms;
    if (ms > st->max_ms) st->max_ms = ms;
    return s;
}

/* The prompt in batches of -b tokens, a progress line per batch on a terminal;
 * with --slice-us queued whole (danu_context_eval_begin) and run in slices of
 * that many microseconds (danu_context_work). */
static danu_status eval_prompt(danu_context *c, const danu_token *ids, size_t n, int64_t slice_us, slice_stats *st)
{
    double b = 512;
    cli_opt_given(DANU_OPT_N_BATCH, &b);
    size_t batch = (size_t)b, done = 0;
    int show = n > batch && dn_isatty(stderr);
    danu_status s = DANU_OK;
    if (slice_us >= 0) {
        size_t last = 0;
        s = danu_context_eval_begin(c, ids, n);
        while (s == DANU_OK) {
            double t0 = cli_now();
            s = timed(st, t0, danu_context_work(c, slice_us));
            done = n - danu_context_pending(c);
            if (show && (done != last || s != DANU_IN_PROGRESS)) fprintf(stderr, "\rdanu run: prompt %zu/%zu tokens", done, n);
            last = done;
            if (s == DANU_IN_PROGRESS) s = DANU_OK;
            else break;
        }
        if (show) fprintf(stderr, "\n");
        return s;
    }
    while (done < n && s == DANU_OK) {
        size_t k = n - done < batch ? n - done : batch;
        s = danu_context_eval(c, ids + done, k, NULL);
        done += k;
        if (show) fprintf(stderr, "\rdanu run: prompt %zu/%zu tokens", done, n);
    }
    if (show) fprintf(stderr, "\n");
    return s;
}

/* danu_context_generate through danu_context_step_sliced: the same tokens
 * and text, in calls of about slice_us microseconds. */
static danu_status generate_sliced(danu_context *c, int64_t max_tokens, int64_t slice_us, slice_stats *st,
                                   int32_t *reason)
{
    char text[4096];
    size_t len = 0;
    int32_t why = -1;
    danu_status s = DANU_OK;
    for (int64_t i = 0; i < max_tokens && why < 0 && s == DANU_OK; i++) {
        danu_token t;
        do {
            double t0 = cli_now();
            s = timed(st, t0, danu_context_step_sliced(c, slice_us, &t, text, sizeof text, &len, &why));
        } while (s == DANU_IN_PROGRESS);
        if (s == DANU_OK) { fwrite(text, 1, len, stdout); fflush(stdout); }
    }
    if (s == DANU_OK && why < 0) {   /* stopped by -n: the text held back, as generate flushes it */
        s = danu_context_step_finish(c, text, sizeof text, &len);
        if (s == DANU_OK) fwrite(text, 1, len, stdout);
    }
    *reason = why < 0 ? DANU_STOP_LENGTH : why;
    return s;
}

int cmd_run(int argc, char **argv)
{
    gen_args a;
    int r = parse_gen(argc, argv, &a,
        "usage: danu run [-m MODEL] [-p PROMPT | -f FILE] [-n N] [--special] [options]\n"
        "  Streams generated text to stdout. Without -m, a small synthetic model is written to\n"
        "  ~/.cache/danu (Windows: %LOCALAPPDATA%\\danu) first (random weights: the text is\n"
        "  gibberish, but everything runs).\n"
        "  -f FILE           read the prompt from FILE (- for stdin); on a terminal, a long\n"
        "                    prompt shows its progress batch by batch\n"
        "  --special         <s>, </s>, <unk> in the prompt become their ids\n"
        "  --slice-us U      evaluate the prompt and generate in calls of about U microseconds\n"
        "                    (danu_context_eval_begin + danu_context_work, danu_context_step_sliced,\n"
        "                    as a game loop would): the same text; also prints the calls and the\n"
        "                    longest. 0..60000000 (0: one unit, a layer, per call)\n"
        CLI_CONS_HELP COMMON_HELP SAMPLING_HELP, CLI_LOAD | CLI_CTX | CLI_SAMPLE);
    if (r) return r > 0 ? 0 : EXIT_USAGE;
    if (a.prompt && a.file) { cli_err("give -p or -f, not both"); return EXIT_USAGE; }
    char *text = NULL;
    size_t len = 0;
    if (a.file) {
        text = cli_read_all(a.file, &len);
        if (!text) { cli_err("cannot read %s", a.file); return EXIT_FAIL; }
    } else {
        text = strdup(a.prompt ? a.prompt : "The capital of France is");
        len = text ? strlen(text) : 0;
        if (!text) return cli_fail("prompt", DANU_ERR_NOMEM);
    }
    if (cli_cons_load(&a.cons)) { free(text); return EXIT_FAIL; }
    char *owned;
    danu_model *m = load_model(&a, &owned, 1);
    if (!m) { free(text); cli_cons_free(&a.cons); return EXIT_FAIL; }
    int rc = EXIT_FAIL;
    const danu_tokenizer *tok = danu_model_tokenizer(m);
    danu_context *c = tok ? make_context(m) : NULL;
    if (!tok) cli_err("the model has no tokenizer");
    if (c && cli_cons_given(&a.cons)) {   /* the context keeps its own reference */
        danu_constraint *k = NULL;
        danu_status s = DANU_OK;
        if (cli_cons_compile(tok, &a.cons, &k) || (s = danu_context_set_constraint(c, k)) != DANU_OK) {
            if (s) cli_fail("constraint", s);
            danu_context_free(c);
            c = NULL;
        }
        danu_constraint_free(k);
    }
    if (c) {
        size_t n = 0;
        danu_token *ids = NULL;
        uint32_t flags = a.special ? DANU_TOKENIZE_PARSE_SPECIAL : 0;
        danu_status s = cli_encode(tok, text, len, flags, 1, &ids, &n);
        slice_stats st = { 0, 0, 0 };
        double t0 = cli_now();
        if (s == DANU_OK) s = eval_prompt(c, ids, n, a.slice_us, &st);
        double t1 = cli_now();
        if (s != DANU_OK) cli_fail("prompt", s);
        else {
            fwrite(text, 1, len, stdout);
            fflush(stdout);
            int32_t why = -1;
            size_t before = danu_context_n_tokens(c);
            if (a.slice_us >= 0) s = generate_sliced(c, a.n, a.slice_us, &st, &why);
            else s = danu_context_generate(c, (int32_t)a.n, stream_cb, NULL, &why);
            double t2 = cli_now();
            printf("\n");
            fflush(stdout);
            if (s != DANU_OK) cli_fail("generate", s);
            else rc = 0;
            size_t made = danu_context_n_tokens(c) - before;
            cli_err("prompt %zu tokens in %.2f s (%.1f tok/s), generated %zu tokens in %.2f s (%.1f tok/s), "
                    "peak RSS %.0f MB", n, t1 - t0, n / (t1 - t0 + 1e-9), made, t2 - t1, made / (t2 - t1 + 1e-9),
                    cli_peak_rss() / 1e6);
            if (a.slice_us >= 0)
                cli_err("%lld calls of sliced work with a budget of %lld us: mean %.3f ms, longest %.3f ms",
                        (long long)st.calls, (long long)a.slice_us, st.calls ? st.total_ms / st.calls : 0, st.max_ms);
            if (cli_cons_given(&a.cons)) {
                int32_t state = DANU_CONSTRAINT_NONE;
                static const char *states[] = { "none", "open (incomplete: raise -n)", "complete", "finished" };
                danu_context_constraint_state(c, &state);
                cli_err("constraint: stopped by %s, the text is %s", s == DANU_OK ? cli_stop_name(why) : "an error",
                        states[state >= 0 && state <= 3 ? state : 0]);
            }
        }
        free(ids);
    }
    danu_context_free(c);
    danu_model_free(m);
    free(owned);
    free(text);
    cli_cons_free(&a.cons);
    return rc;
}

/* Ctrl-C in chat: stops the reply (or the prompt evaluation) running, not
 * the program; at the prompt it ends the chat. danu_context_abort is one
 * lock-free atomic store (lib/api.c), safe in a signal handler (and from
 * the thread Windows runs the handler on); the token callback also checks
 * the flag, for a Ctrl-C that comes before generation starts (which
 * forgets earlier aborts). */
static atomic_int interrupted;
static danu_context *chat_ctx;

static void on_interrupt(void)
{
    atomic_store(&interrupted, 1);
    danu_context_abort(chat_ctx);
}

static int32_t chat_cb(void *user, danu_token id, const char *text, size_t len)
{
    stream_cb(user, id, text, len);
    return atomic_load(&interrupted);
}

/* One line of f, its newline included, into *line (grown as needed): its
 * length, or -1 at the end of the input or when the read fails (Ctrl-C at
 * the prompt). getline is POSIX only. */
static long read_line(char **line, size_t *cap, FILE *f)
{
    size_t n = 0;
    for (;;) {
        if (*cap - n < 2) {
            size_t c = *cap ? 2 * *cap : 256;
            char *t = realloc(*line, c);
            if (!t) return -1;
            *line = t;
            *cap = c;
        }
        if (!fgets(*line + n, (int)(*cap - n < INT32_MAX ? *cap - n : INT32_MAX), f)) return n ? (long)n : -1;
        n += strlen(*line + n);
        if (n && (*line)[n - 1] == '\n') return (long)n;
    }
}

/* Offset of the first byte of s that is not UTF-8, or len. */
static size_t utf8_bad(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint32_t c = s[i], n, min;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) { n = 1; min = 0x80; c &= 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { n = 2; min = 0x800; c &= 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { n = 3; min = 0x10000; c &= 0x07; }
        else return i;
        if (len - i <= n) return i;
        for (uint32_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            c = c << 6 | (s[i + k] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return i;
        i += n + 1;
    }
    return len;
}

int cmd_chat(int argc, char **argv)
{
    gen_args a;
    int r = parse_gen(argc, argv, &a,
        "usage: danu chat [-m MODEL] [--system TEXT] [-n N] [options]\n"
        "  Interactive chat in the H2O-Danube format (<|prompt|>...</s><|answer|>). Each turn reuses\n"
        "  the cache; a full context drops the older half of the conversation, keeping the system\n"
        "  prompt (--on-full error stops instead). Ctrl-C stops a reply; Ctrl-C at the prompt, an\n"
        "  empty line or the end of input (Ctrl-D) quits. -p TEXT sends one message without\n"
        "  reading stdin.\n" COMMON_HELP SAMPLING_HELP, CLI_LOAD | CLI_CTX | CLI_SAMPLE);
    if (r) return r > 0 ? 0 : EXIT_USAGE;
    if (!cli_opt_given(DANU_OPT_ON_FULL, NULL)) cli_set_opt(DANU_OPT_ON_FULL, CLI_CTX, DANU_FULL_SHIFT, "chat");
    int keep_given = cli_opt_given(DANU_OPT_N_KEEP, NULL);
    if (!keep_given) cli_set_opt(DANU_OPT_N_KEEP, CLI_CTX, 1, "chat");   /* BOS */
    char *owned;
    danu_model *m = load_model(&a, &owned, 1);
    if (!m) return EXIT_FAIL;
    danu_context *c = danu_model_tokenizer(m) ? make_context(m) : NULL;
    if (m && !danu_model_tokenizer(m)) cli_err("the model has no tokenizer");
    int rc = c ? 0 : EXIT_FAIL;
    if (c && a.system) {
        const char *role = "system";
        danu_status s = danu_context_chat_append(c, &role, (const char *const *)&a.system, 1, 0);
        if (s == DANU_OK && !keep_given)   /* a shift keeps the system prompt */
            s = danu_context_set_int(c, DANU_OPT_N_KEEP, (int64_t)danu_context_n_tokens(c));
        if (s != DANU_OK) rc = cli_fail("system", s);
    }
    chat_ctx = c;
    dn_on_interrupt(on_interrupt);   /* Ctrl-C at the prompt ends the read */
    char *line = NULL;
    size_t cap = 0;
    long line_no = 0;
    int interactive = !a.prompt;
    while (c && rc == 0) {
        const char *msg = a.prompt;
        if (interactive) {
            atomic_store(&interrupted, 0);
            fprintf(stderr, "> ");
            long got = read_line(&line, &cap, stdin);
            if (got < 0) { if (atomic_load(&interrupted)) fprintf(stderr, "\n"); break; }
            line_no++;
            line[strcspn(line, "\r\n")] = 0;
            if (!line[0]) break;
            size_t bad = utf8_bad((const unsigned char *)line, strlen(line));
            if (bad != strlen(line)) {
                cli_err("line %ld is not valid UTF-8 (byte %zu); not sent", line_no, bad);
                continue;
            }
            msg = line;
        }
        const char *role = "user";
        danu_status s = danu_context_chat_append(c, &role, &msg, 1, 1);
        int32_t why = DANU_STOP_LENGTH;
        if (s == DANU_OK && !atomic_load(&interrupted)) s = danu_context_generate(c, (int32_t)a.n, chat_cb, NULL, &why);
        printf("\n");
        fflush(stdout);
        if (atomic_load(&interrupted) || s == DANU_ERR_ABORTED || why == DANU_STOP_ABORTED) cli_err("[reply stopped]");
        else if (s == DANU_ERR_BAD_UTF8 || s == DANU_ERR_CONTEXT_FULL)   /* the chat goes on */
            rc = interactive ? (cli_fail("chat", s), 0) : cli_fail("chat", s);
        else if (s != DANU_OK) rc = cli_fail("chat", s);
        if (!interactive) break;
    }
    dn_on_interrupt(NULL);
    free(line);
    danu_context_free(c);
    danu_model_free(m);
    free(owned);
    return rc;
}
