/* main.c - `danu COMMAND ...`: dispatch and the helpers every command uses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include "cli.h"

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
    if (s == DANU_OK && progress && isatty(2)) s = danu_options_set_progress(o, progress_cb, NULL);
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
    const char *base = getenv("XDG_CACHE_HOME");
    char dir[4096], *path = malloc(4200);
    if (!path) return NULL;
    if (base && *base) snprintf(dir, sizeof dir, "%s/danu", base);
    else snprintf(dir, sizeof dir, "%s/.cache/danu", getenv("HOME") ? getenv("HOME") : "/tmp");
    for (char *q = dir + 1; *q; q++)   /* mkdir -p */
        if (*q == '/') { *q = 0; mkdir(dir, 0755); *q = '/'; }
    mkdir(dir, 0755);
    snprintf(path, 4200, "%s/synthetic-tiny-a-seed7.gguf", dir);
    struct stat st;
    if (stat(path, &st) == 0) return path;
    fprintf(stderr, "danu %s: no model given (-m): writing a small synthetic model (tiny-a, random weights, so the\n"
                    "      text will be gibberish) to %s\n", cli_cmd, path);
    danu_status s = danu_synth_write("tiny-a", 7, DANU_FORMAT_GGUF, DANU_TYPE_BF16, danu_cli_tokenizer_model,
                                     danu_cli_tokenizer_model_len, path, NULL);
    if (s != DANU_OK) { cli_fail("synth", s); free(path); return NULL; }
    return path;
}

uint64_t cli_peak_rss(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)ru.ru_maxrss * 1024;
}

uint64_t cli_current_rss(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, res = 0;
    if (f) { if (fscanf(f, "%llu %llu", &size, &res) != 2) res = 0; fclose(f); }
    return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
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
