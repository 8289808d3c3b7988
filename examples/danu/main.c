/* main.c - `danu COMMAND ...`: dispatch and the helpers every command uses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "common/os.h"   /* the library's os layer: POSIX and Windows alike */

int cli_verbose;

static const struct { const char *name; int (*fn)(int, char **); const char *help; } commands[] = {
    { "run", cmd_run, "generate text from a prompt, streamed to stdout" },
    { "chat", cmd_chat, "interactive Danube chat" },
    { "generate", cmd_generate, "generate token ids from token ids (debugging)" },
    { "eval", cmd_eval, "write the logits of a token sequence (debugging)" },
    { "tokenize", cmd_tokenize, "text to token ids" },
    { "detokenize", cmd_detokenize, "token ids to text" },
    { "info", cmd_info, "describe a model file or directory" },
    { "synth", cmd_synth, "write a synthetic-weight model" },
    { "quantize", cmd_quantize, "convert an HF checkpoint or GGUF to a (quantized) GGUF" },
    { "bench", cmd_bench, "measure prompt and generation speed" },
    { "grammar", cmd_grammar, "print the GBNF grammar a JSON Schema compiles to" },
};

static void usage(FILE *f)
{
    fprintf(f, "usage: danu COMMAND [options]   (danu COMMAND --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\nexit codes: 0 success, 1 failure (message on stderr), 2 bad usage\nlibdanu %s\n",
            danu_version_string());
}

int cli_is_flag(const char *arg, const char *s, const char *l)
{
    return (s && !strcmp(arg, s)) || (l && !strcmp(arg, l));
}

int cli_fail(const char *what, danu_status s)
{
    const char *d = danu_last_error();
    if (*d) cli_err("%s", d);   /* the detail names what failed, and where */
    else cli_err("%s: %s", what, danu_strerror(s));
    return EXIT_FAIL;
}

static void log_cb(void *user, int32_t level, const char *msg)
{
    (void)user;
    if (level == DANU_LOG_WARN) cli_err("warning: %s", msg);
    else if (level < DANU_LOG_WARN || cli_verbose) cli_err("%s", msg);
}

static int progress_cb(void *user, float f)
{
    (void)user;
    int w = 40, n = (int)(f * w + 0.5f);
    fprintf(stderr, "\r[%.*s%*s] %3d%%", n, "========================================", w - n, "", (int)(f * 100 + 0.5f));
    if (f >= 1.0f) fprintf(stderr, "\r%*s\r", w + 8, "");
    return 0;
}

danu_options *cli_options(int progress)
{
    danu_options *o = NULL;
    danu_status s = danu_options_create(NULL, &o);
    if (s == DANU_OK) s = danu_options_set_log(o, log_cb, NULL);
    if (s == DANU_OK && progress && dn_isatty(stderr)) s = danu_options_set_progress(o, progress_cb, NULL);
    if (s != DANU_OK) { cli_fail("options", s); danu_options_free(o); return NULL; }
    return o;
}

danu_model *cli_load(const char *path, danu_options *o)
{
    danu_model *m = NULL;
    if (!o || cli_apply(o, CLI_LOAD)) return NULL;
    danu_status s = danu_model_load(path, o, &m);
    if (s != DANU_OK) { cli_fail(path, s); return NULL; }
    return m;
}

long cli_parse_ids(const char *s, danu_token **out)
{
    size_t cap = 16, n = 0;
    danu_token *ids = malloc(cap * sizeof *ids);
    while (ids && *s) {
        while (*s == ' ' || *s == ',' || *s == '\n' || *s == '\t' || *s == '\r') s++;
        if (!*s) break;
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < INT32_MIN || v > INT32_MAX) { free(ids); return -1; }
        if (n == cap) { cap *= 2; danu_token *t = realloc(ids, cap * sizeof *ids); if (!t) { free(ids); return -1; } ids = t; }
        ids[n++] = (danu_token)v;
        s = end;
    }
    *out = ids;
    return ids ? (long)n : -1;
}

char *cli_default_model(void)
{
    char *base = dn_cache_dir(dn_alloc_libc());
    char dir[4096], *path = malloc(4200);
    if (!path || !base) { free(path); free(base); return NULL; }
    snprintf(dir, sizeof dir, "%s/danu", base);
    free(base);
    for (char *q = dir + 1; *q; q++)   /* mkdir -p */
        if (dn_is_sep(*q)) { char c = *q; *q = 0; dn_mkdir(dir); *q = c; }
    dn_mkdir(dir);
    snprintf(path, 4200, "%s/synthetic-tiny-a-seed7.gguf", dir);
    if (dn_path_exists(path)) return path;
    fprintf(stderr, "danu %s: no model given (-m): writing a small synthetic model (tiny-a, random weights, so the\n"
                    "      text will be gibberish) to %s\n", cli_cmd, path);
    danu_status s = danu_synth_write("tiny-a", 7, DANU_FORMAT_GGUF, DANU_TYPE_BF16, danu_cli_tokenizer_model,
                                     danu_cli_tokenizer_model_len, path, NULL);
    if (s != DANU_OK) { cli_fail("synth", s); free(path); return NULL; }
    return path;
}

uint64_t cli_peak_rss(void) { return dn_peak_rss(); }
uint64_t cli_current_rss(void) { return dn_current_rss(); }
double cli_now(void) { return (double)dn_time_ns() * 1e-9; }

int main(int argc, char **argv)
{
    dn_args_utf8(dn_alloc_libc(), &argc, &argv);   /* Windows: paths beyond the ANSI code page */
    dn_stdio_utf8();                               /* Windows: the model's bytes, unchanged */
    if (argc < 2 || cli_is_flag(argv[1], "-h", "--help")) { usage(argc < 2 ? stderr : stdout); return argc < 2 ? EXIT_USAGE : 0; }
    if (!strcmp(argv[1], "--version")) { printf("danu %s\n", danu_version_string()); return 0; }
    for (int i = 2; i < argc; i++)
        if (cli_is_flag(argv[i], "-v", "--verbose")) cli_verbose = 1;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            cli_cmd = commands[i].name;
            return commands[i].fn(argc - 1, argv + 1);
        }
    fprintf(stderr, "danu: unknown command \"%s\"\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
